//! One model turn of a session, sized to fit its model: the request is
//! assembled within the window (compacting first when the prompt estimate
//! passes the threshold), and `max_tokens` is the least of the configured
//! output, the model's own output limit and what is left of its window
//! after the prompt — never below the output reserve (reasoning models
//! spend output on thinking): a conversation that leaves less room is
//! compacted first.
//!
//! What the server says wins over the tables: a context-length error that
//! names the window and the prompt's size, or the model's output limit, is
//! retried with a `max_tokens` that fits (not compacted), and the session
//! remembers the numbers. A provider that counts far fewer prompt tokens
//! than were sent (Ollama cuts the prompt at its `num_ctx` without a word)
//! is warned about once per run.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::Session;
use super::compaction::CompactReason;
use super::estimate::Prefix;
use crate::config::ModelLimits;
use crate::events::Event;
use crate::hooks::{Decision, HookPoint};
use crate::memory::context::Window;
use crate::memory::tokens::{self, Measure};
use crate::provider::{
    FinishReason, Fit, Message, ModelRequest, ProviderError, StreamEvent, ToolCall,
};

/// How many times one turn adopts what a context-length error said about
/// the room before it gives up on fitting.
const MAX_REFITS: u32 = 2;

/// Our token counts are OpenAI's tokenizer; other models' tokenizers count
/// up to about a tenth more for the same text, so the room left for output
/// is computed against the count plus this share.
const TOKENIZER_MARGIN_PERCENT: u64 = 10;

/// `tokens` as counted here, plus the share other tokenizers may count
/// beyond it.
pub(super) fn with_tokenizer_margin(tokens: u64) -> u64 {
    tokens + tokens * TOKENIZER_MARGIN_PERCENT / 100
}

/// What the session's previous request sent, since its last compaction
/// (nothing yet: the conversation's first 0 messages).
#[derive(Debug)]
pub(super) enum Previous {
    /// The conversation's first `n` messages (held as a count, so the
    /// conversation is not shared and never copied to grow).
    Conversation(usize),
    /// What a `pre-model-request` hook reshaped it into.
    Reshaped(Arc<Vec<Message>>),
}

impl Default for Previous {
    fn default() -> Self {
        Previous::Conversation(0)
    }
}

/// One streamed model turn.
pub(super) struct ModelTurn {
    pub text: String,
    pub calls: Vec<ToolCall>,
    pub finish: Option<FinishReason>,
    /// The `max_tokens` the request carried.
    pub max_tokens: u32,
}

impl ModelTurn {
    /// Cut at the output limit before the model said or asked anything:
    /// not an answer.
    pub fn is_empty_cut(&self) -> bool {
        self.finish == Some(FinishReason::Length)
            && self.text.trim().is_empty()
            && self.calls.is_empty()
    }
}

impl Session {
    /// One model turn inside the model's limits. With `boost`, the output
    /// budget is doubled (a turn was cut empty at the limit).
    pub(super) async fn model_turn(
        &mut self,
        cancel: &CancellationToken,
        boost: bool,
    ) -> Result<ModelTurn, ProviderError> {
        let memory_on = self.runtime.memory.enabled();
        let mut compacted = false;
        let mut refits = 0;
        loop {
            let limits = self.limits();
            let window = self.window(&limits);
            let messages = if memory_on {
                self.request_messages(&window, !compacted, cancel).await?
            } else {
                self.messages.clone()
            };
            let max_tokens = match self.output_budget(&limits, boost).await {
                Some(max_tokens) => max_tokens,
                None if memory_on && !compacted => {
                    self.compact(&window, CompactReason::Threshold, cancel)
                        .await;
                    compacted = true;
                    continue;
                }
                // Nothing left to compact: ask for the reserve and let the
                // server say how much room there really is.
                None => self.output_reserve(&limits),
            };
            let sent = self.messages.len();
            match self.stream_turn(messages, max_tokens, cancel).await {
                Err(ProviderError::ContextLength { fit: Some(fit), .. }) if refits < MAX_REFITS => {
                    refits += 1;
                    self.learn(fit, sent);
                }
                Err(ProviderError::ContextLength { .. }) if memory_on && !compacted => {
                    self.compact(&window, CompactReason::ContextLength, cancel)
                        .await;
                    compacted = true;
                }
                Err(ProviderError::ContextLength {
                    provider,
                    message,
                    fit,
                }) => {
                    return Err(ProviderError::ContextLength {
                        provider,
                        message: format!(
                            "{message} (still too long after fitting the request; set a smaller \
                             models.\"{}\".context_window in orch.json or split the task)",
                            self.setup.model
                        ),
                        fit,
                    });
                }
                Err(err) => return Err(err),
                Ok((turn, reported_input)) => {
                    if let Some(input) = reported_input {
                        self.check_truncation(input);
                        // The conversation the provider just counted
                        // (compactions included; the reply is not pushed yet).
                        self.estimator.reported(input, sent);
                    }
                    self.runtime
                        .memory
                        .observe(&self.id, &turn.text, &turn.calls);
                    return Ok(turn);
                }
            }
        }
    }

    /// The model's limits: the tables (an unknown model is warned about
    /// once per run), narrowed by what its server said.
    fn limits(&self) -> ModelLimits {
        let (limits, warning) = self.runtime.memory.limits(&self.setup.model);
        if let Some(message) = warning {
            self.warn(message);
        }
        match self.learned {
            Some(learned) => ModelLimits {
                context_window: limits.context_window.min(learned.context_window),
                max_output: limits.max_output.min(learned.max_output),
            },
            None => limits,
        }
    }

    fn window(&self, limits: &ModelLimits) -> Window {
        let config = self.runtime.memory.config();
        Window::new(
            *limits,
            self.output_reserve(limits),
            config.compact_threshold,
            config.tail_share,
        )
    }

    /// The least output a request leaves room for.
    fn output_reserve(&self, limits: &ModelLimits) -> u32 {
        self.setup
            .policy
            .min_output_tokens
            .min(self.setup.max_output_tokens)
            .min(limits.max_output)
            .max(1)
    }

    /// `max_tokens` for the next request, or `None` when the prompt leaves
    /// less than the output reserve.
    async fn output_budget(&mut self, limits: &ModelLimits, boost: bool) -> Option<u32> {
        let configured = if boost {
            self.setup.max_output_tokens.saturating_mul(2)
        } else {
            self.setup.max_output_tokens
        };
        let cap = configured.min(limits.max_output).max(1);
        let window = u64::from(limits.context_window);
        // The bound needs no token tables: when it leaves room, nothing is
        // counted.
        let bound = self.estimate(Measure::Bound);
        if window.saturating_sub(bound) >= u64::from(cap) {
            return Some(cap);
        }
        if !tokens::loaded() {
            let _ = tokio::task::spawn_blocking(tokens::load).await;
        }
        let counted = self.estimate(Measure::Tokens);
        let prompt = with_tokenizer_margin(counted);
        let room = window.saturating_sub(prompt);
        let reserve = u64::from(self.output_reserve(limits));
        (room >= reserve).then(|| room.min(u64::from(cap)) as u32)
    }

    /// The output budget a request asked again after an empty cut gets
    /// (`None`: the conversation is compacted first, so it is not known yet).
    pub(super) async fn boosted_budget(&mut self) -> Option<u32> {
        let limits = self.limits();
        self.output_budget(&limits, true).await
    }

    /// Adopt what a context-length error said: the window and the prompt's
    /// size as the server counts them, or the model's output limit.
    fn learn(&mut self, fit: Fit, sent: usize) {
        let mut learned = self.learned.unwrap_or(ModelLimits {
            context_window: u32::MAX,
            max_output: u32::MAX,
        });
        match fit {
            Fit::Window { window, prompt } => {
                learned.context_window = learned.context_window.min(saturate(window));
                self.estimator.reported(prompt, sent);
            }
            Fit::Output { max_output } => {
                learned.max_output = learned.max_output.min(saturate(max_output).max(1));
            }
        }
        self.learned = Some(learned);
        let (table, _) = self.runtime.memory.limits(&self.setup.model);
        if learned.context_window < table.context_window || learned.max_output < table.max_output {
            let key = format!("{} server limits", self.setup.model);
            let message = format!(
                "model \"{}\" has a window of {} tokens and writes at most {} per turn, as its server says (orch assumed {} and {}); set models.\"{}\" in orch.json to match",
                self.setup.model,
                learned.context_window.min(table.context_window),
                learned.max_output.min(table.max_output),
                table.context_window,
                table.max_output,
                self.setup.model
            );
            if let Some(message) = self.runtime.memory.warn_once(&key, message) {
                self.warn(message);
            }
        }
    }

    /// A provider that counted far fewer prompt tokens than were sent cut
    /// the prompt (Ollama does at its `num_ctx`): say so once per run. The
    /// byte length of the request decides, without token tables: no text
    /// takes more than `BYTES_PER_TOKEN_MAX` bytes a token, so a count that
    /// far below the bytes is a cut prompt.
    fn check_truncation(&mut self, reported: u64) {
        const BYTES_PER_TOKEN_MAX: u64 = 6;
        const SMALL: u64 = 4096;
        let bytes = self.estimate(Measure::Bound);
        if bytes <= reported.saturating_mul(BYTES_PER_TOKEN_MAX) + SMALL {
            return;
        }
        let key = format!("{} truncation", self.setup.model);
        let message = format!(
            "the provider counted {reported} prompt tokens for a request of {bytes} bytes (at least {} tokens): it is cutting the prompt. \
             Ollama does this at its context size (num_ctx, 2048-4096 by default): raise it for \"{}\" \
             (OLLAMA_CONTEXT_LENGTH, or PARAMETER num_ctx in a Modelfile) and set models.\"{}\".context_window to match",
            bytes / BYTES_PER_TOKEN_MAX,
            self.setup.model,
            self.setup.model
        );
        if let Some(message) = self.runtime.memory.warn_once(&key, message) {
            self.warn(message);
        }
    }

    /// The prompt estimate of the next request: exact tokens or the
    /// table-free bound, or the provider's own count of the last request
    /// plus what was added since, if larger.
    pub(super) fn estimate(&mut self, measure: Measure) -> u64 {
        let tools = self.router.registry.specs();
        let prefix = Prefix {
            system: &self.setup.agent.prompt,
            tools: &tools,
        };
        self.estimator.prompt(measure, &prefix, &self.messages)
    }

    /// The messages of the next request: the conversation (its memory
    /// block included), compacted first if `may_compact` and the estimate
    /// passes the threshold, then offered to the `pre-model-request` hook.
    /// Without a hook that reshapes, the request shares the conversation:
    /// it is the previous request plus what was added since.
    async fn request_messages(
        &mut self,
        window: &Window,
        may_compact: bool,
        cancel: &CancellationToken,
    ) -> Result<Arc<Vec<Message>>, ProviderError> {
        // The bound needs no token tables: when it fits, nothing is counted.
        if may_compact && window.needs_compaction(self.estimate(Measure::Bound)) && {
            if !tokens::loaded() {
                let _ = tokio::task::spawn_blocking(tokens::load).await;
            }
            window.needs_compaction(self.estimate(Measure::Tokens))
        } {
            self.compact(window, CompactReason::Threshold, cancel).await;
        }
        let messages = self.messages.clone();
        let previous =
            std::mem::replace(&mut self.previous, Previous::Conversation(messages.len()));
        let hooks = self.runtime.hooks.clone();
        if !hooks.wants(HookPoint::PreModelRequest) {
            return Ok(messages);
        }
        let payload = serde_json::json!({
            "session": self.id,
            "agent": self.setup.agent.name,
            "model": self.setup.model,
            "messages": *messages,
        });
        match hooks.call(HookPoint::PreModelRequest, payload).await {
            Decision::Continue => Ok(messages),
            Decision::Modify(value) => {
                match serde_json::from_value::<Vec<Message>>(value["messages"].clone()) {
                    Ok(reshaped) => {
                        self.warn_uncached_reshape(&previous, &reshaped);
                        let reshaped = Arc::new(reshaped);
                        self.previous = Previous::Reshaped(reshaped.clone());
                        Ok(reshaped)
                    }
                    Err(err) => {
                        self.warn(format!(
                            "hook pre-model-request: ignored a reshaped context that is not a message list: {err}"
                        ));
                        Ok(messages)
                    }
                }
            }
            Decision::Block(reason) => Err(ProviderError::Fatal {
                provider: self.runtime.client.provider(),
                status: None,
                message: format!("blocked by hook pre-model-request: {reason}"),
            }),
        }
    }

    /// A `pre-model-request` answer whose request does not start with the
    /// previous request (since the last compaction) makes the provider
    /// read the rest afresh, on every request it does so: said once per
    /// run (plugins that shorten the conversation do it at `pre-compact`,
    /// where it holds).
    fn warn_uncached_reshape(&self, previous: &Previous, reshaped: &[Message]) {
        let extends = match previous {
            Previous::Conversation(sent) => self
                .messages
                .get(..*sent)
                .is_none_or(|prefix| reshaped.starts_with(prefix)),
            Previous::Reshaped(sent) => reshaped.starts_with(sent),
        };
        if extends {
            return;
        }
        let message = "a plugin's pre-model-request hook changed messages an earlier request carried: \
                       each such request is read without the provider's prompt cache (a plugin that \
                       shortens the conversation should do it at pre-compact, where it holds)"
            .to_string();
        if let Some(message) = self
            .runtime
            .memory
            .warn_once("pre-model-request reshape", message)
        {
            self.warn(message);
        }
    }

    /// Stream one model turn with `messages`, emitting events as it goes;
    /// the turn and the prompt tokens the provider counted, when it said.
    /// A `Retry` that discards the partial turn starts the text and calls
    /// over.
    async fn stream_turn(
        &mut self,
        messages: Arc<Vec<Message>>,
        max_tokens: u32,
        cancel: &CancellationToken,
    ) -> Result<(ModelTurn, Option<u64>), ProviderError> {
        let events = self.runtime.events.clone();
        let tools = self.router.registry.specs();
        events.emit(Event::ModelRequest {
            session: self.id.clone(),
            turn: self.turns,
            messages: messages.len(),
            tools: tools.len(),
        });
        let request = ModelRequest {
            agent: self.setup.agent.name.clone(),
            session: self.id.clone(),
            model: self.setup.model.clone(),
            system: self.setup.agent.prompt.clone(),
            messages,
            tools,
            max_output_tokens: max_tokens,
            continued: true,
        };
        let started = Instant::now();
        let mut stream = self.runtime.client.stream(request, cancel.child_token());
        let mut text = String::new();
        let mut calls = Vec::new();
        let mut usage = None;
        let mut finish = None;
        loop {
            let item = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(ProviderError::Cancelled),
                item = stream.next() => item,
            };
            let Some(item) = item else { break };
            match item? {
                StreamEvent::TextDelta(delta) => {
                    text.push_str(&delta);
                    events.emit(Event::TextDelta {
                        session: self.id.clone(),
                        text: delta,
                    });
                }
                StreamEvent::ToolCall(call) => calls.push(call),
                StreamEvent::Usage(turn_usage) => usage = Some(turn_usage),
                StreamEvent::Finish(reason) => finish = Some(reason),
                StreamEvent::Retry {
                    attempt,
                    delay,
                    reason,
                    discard,
                } => {
                    let discarded = if discard {
                        let bytes = text.len()
                            + calls
                                .iter()
                                .map(|call: &ToolCall| call.name.len() + call.arguments.len())
                                .sum::<usize>();
                        text.clear();
                        calls.clear();
                        usage = None;
                        finish = None;
                        bytes as u64
                    } else {
                        0
                    };
                    events.emit(Event::ModelRetry {
                        session: self.id.clone(),
                        attempt,
                        delay_ms: delay.as_millis() as u64,
                        reason,
                        discarded_bytes: discarded,
                    });
                }
            }
        }
        if let Some(turn_usage) = usage {
            self.usage.add(&turn_usage);
            events.emit(Event::Usage {
                session: self.id.clone(),
                agent: self.setup.agent.name.clone(),
                usage: turn_usage,
            });
        }
        if finish == Some(FinishReason::Length) && calls.is_empty() && !text.trim().is_empty() {
            self.warn(format!(
                "the model's reply was cut at {max_tokens} output tokens (max_tokens)"
            ));
        }
        events.emit(Event::ModelResponse {
            session: self.id.clone(),
            turn: self.turns,
            finish: finish.clone(),
            tool_calls: calls.len(),
            latency_ms: started.elapsed().as_millis() as u64,
        });
        let reported = usage.map(|u| u.input);
        Ok((
            ModelTurn {
                text,
                calls,
                finish,
                max_tokens,
            },
            reported,
        ))
    }
}

/// A server's count as a `u32` token limit.
fn saturate(count: u64) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}

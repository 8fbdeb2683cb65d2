//! One agent conversation and its turn loop: system prompt + messages go to
//! the model, the tool calls it asks for run (read-only ones concurrently),
//! their results go back, until the model ends its turn or a cap stops it.
//!
//! The session knows tools only through `ToolRouter` and models only through
//! `ModelClient`; every message is flushed to its transcript as it completes.

pub mod pool;
pub mod tasks;
mod transcript;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use futures::future::join_all;
use tokio_util::sync::CancellationToken;

use crate::agents::Agent;
use crate::config::ToolsConfig;
use crate::events::{Event, EventBus, SessionOutcome};
use crate::hooks::{Decision, HookPoint, Hooks};
use crate::memory::context::{self, Window};
use crate::memory::{Memory, compact, tokens};
use crate::provider::{
    FinishReason, Message, ModelClient, ModelRequest, ProviderError, StreamEvent, ToolCall, Usage,
};
use crate::tools::permissions::Permissions;
use crate::tools::{ToolContext, ToolOutput, ToolRegistry, ToolRouter};
pub use transcript::Transcript;

/// What every session in this process shares.
#[derive(Clone)]
pub struct Runtime {
    /// The canonical project root.
    pub root: Arc<PathBuf>,
    pub client: Arc<dyn ModelClient>,
    /// Every tool that exists; each session sees its agent's subset.
    pub tools: ToolRegistry,
    pub permissions: Arc<Permissions>,
    pub events: Arc<EventBus>,
    pub limits: Arc<ToolsConfig>,
    /// Memory tiers and context budgets (`Memory::default()` is off: every
    /// request carries the full history).
    pub memory: Arc<Memory>,
    /// Plugin hooks (`hooks::NoHooks` until the plugin host exists).
    pub hooks: Arc<dyn Hooks>,
}

impl Runtime {
    pub fn sessions_dir(&self) -> PathBuf {
        self.root.join(".opencode").join("sessions")
    }
}

/// How one session is set up.
#[derive(Debug, Clone)]
pub struct SessionSetup {
    pub agent: Agent,
    pub model: String,
    pub max_turns: u32,
    pub max_output_tokens: u32,
    /// Stop once this many tokens (input + output) were used; `None` = no cap.
    pub token_budget: Option<u64>,
    /// Stop when the model makes the same tool call (name and arguments)
    /// this many times in a row; `None` = never.
    pub repeat_limit: Option<u32>,
}

/// How a session's run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionReport {
    pub session: String,
    pub agent: String,
    pub outcome: SessionOutcome,
    /// The model's last text (its answer when the outcome is `Completed`).
    pub final_text: String,
    pub turns: u32,
    pub usage: Usage,
    pub error: Option<String>,
}

pub struct Session {
    id: String,
    setup: SessionSetup,
    runtime: Runtime,
    router: ToolRouter,
    messages: Vec<Message>,
    transcript: Transcript,
    turns: u32,
    usage: Usage,
    /// The last tool call made and how many times in a row it was made.
    last_call: Option<(String, String)>,
    repeats: u32,
    /// Token counts of `messages` (tiktoken), kept as the conversation grows.
    counts: tokens::Counts,
    /// Tokens of the system prompt and tool list, which never change.
    prefix_tokens: Option<u64>,
    /// Byte length of the same prefix: an upper bound on its tokens.
    prefix_bytes: Option<u64>,
    /// The provider-reported prompt size of the last request, and how many
    /// conversation messages that request carried.
    reported: Option<(u64, usize)>,
}

impl Session {
    pub fn new(runtime: Runtime, setup: SessionSetup) -> std::io::Result<Session> {
        let id = new_session_id(&setup.agent.name);
        let transcript = Transcript::create(
            &runtime.sessions_dir(),
            &id,
            &setup.agent.name,
            &setup.model,
        )?;
        Ok(Session::assemble(
            runtime,
            setup,
            id,
            transcript,
            Vec::new(),
        ))
    }

    /// Reopen the session `id` from its transcript after an interruption:
    /// the conversation since its last reset comes back; a tool call whose
    /// result was never recorded gets a result saying it was interrupted, so
    /// the model re-checks instead of assuming.
    pub fn restore(runtime: Runtime, setup: SessionSetup, id: &str) -> std::io::Result<Session> {
        let (transcript, mut messages) = Transcript::reopen(&runtime.sessions_dir(), id)?;
        patch_interrupted_calls(&mut messages);
        Ok(Session::assemble(
            runtime,
            setup,
            id.to_string(),
            transcript,
            messages,
        ))
    }

    fn assemble(
        runtime: Runtime,
        setup: SessionSetup,
        id: String,
        transcript: Transcript,
        messages: Vec<Message>,
    ) -> Session {
        let router = ToolRouter::new(
            runtime
                .tools
                .subset(setup.agent.tools.iter().map(String::as_str)),
            runtime.permissions.clone(),
            runtime.events.clone(),
            runtime.hooks.clone(),
        );
        runtime.events.emit(Event::SessionStarted {
            session: id.clone(),
            agent: setup.agent.name.clone(),
            provider: runtime.client.provider().into(),
            model: setup.model.clone(),
        });
        Session {
            id,
            setup,
            runtime,
            router,
            messages,
            transcript,
            turns: 0,
            usage: Usage::default(),
            last_call: None,
            repeats: 0,
            counts: tokens::Counts::default(),
            prefix_tokens: None,
            prefix_bytes: None,
            reported: None,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn agent(&self) -> &str {
        &self.setup.agent.name
    }

    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Back to the bare system prefix for the next task: the conversation,
    /// turn count and usage start over; the transcript records the reset.
    pub fn reset(&mut self) {
        self.messages.clear();
        self.turns = 0;
        self.usage = Usage::default();
        self.last_call = None;
        self.repeats = 0;
        self.counts.clear();
        self.reported = None;
        // The Task tier belongs to one task.
        self.runtime.memory.end_session(&self.id);
        if let Err(err) = self.transcript.mark_reset() {
            self.runtime.events.emit(Event::Warning {
                session: Some(self.id.clone()),
                message: format!("transcript {}: {err}", self.transcript.path().display()),
            });
        }
    }

    /// Give the session a user message and run turns until the model ends
    /// its turn, a cap is reached, the provider fails, or `cancel` fires.
    /// Caps (`max_turns`, `token_budget`) apply to each run; the report's
    /// turns and usage are this run's.
    pub async fn run(&mut self, prompt: &str, cancel: &CancellationToken) -> SessionReport {
        self.push(Message::user(prompt));
        self.proceed(cancel).await
    }

    /// Run turns from where the conversation stands (after `restore`). A
    /// conversation that already ends with the model's answer is complete
    /// without another model call.
    pub async fn proceed(&mut self, cancel: &CancellationToken) -> SessionReport {
        self.turns = 0;
        self.usage = Usage::default();
        let (outcome, final_text, error) = match self.messages.last() {
            Some(Message::Assistant { text, tool_calls }) if tool_calls.is_empty() => {
                (SessionOutcome::Completed, text.clone(), None)
            }
            _ => self.turn_loop(cancel).await,
        };
        self.runtime.events.emit(Event::SessionFinished {
            session: self.id.clone(),
            agent: self.setup.agent.name.clone(),
            outcome,
            turns: self.turns,
            usage: self.usage,
            error: error.clone(),
        });
        SessionReport {
            session: self.id.clone(),
            agent: self.setup.agent.name.clone(),
            outcome,
            final_text,
            turns: self.turns,
            usage: self.usage,
            error,
        }
    }

    async fn turn_loop(
        &mut self,
        cancel: &CancellationToken,
    ) -> (SessionOutcome, String, Option<String>) {
        loop {
            if cancel.is_cancelled() {
                return (SessionOutcome::Cancelled, String::new(), None);
            }
            if self.turns >= self.setup.max_turns {
                let message = format!("stopped after {} model turns (max_turns)", self.turns);
                return (SessionOutcome::MaxTurns, String::new(), Some(message));
            }
            if let Some(budget) = self.setup.token_budget
                && self.usage.total() >= budget
            {
                let message = format!(
                    "token budget spent: {} of {budget} tokens used",
                    self.usage.total()
                );
                return (SessionOutcome::BudgetExceeded, String::new(), Some(message));
            }
            self.turns += 1;
            let turn = match self.model_turn(cancel).await {
                Ok(turn) => turn,
                Err(ProviderError::Cancelled) => {
                    return (SessionOutcome::Cancelled, String::new(), None);
                }
                Err(err) => return (SessionOutcome::Failed, String::new(), Some(err.to_string())),
            };
            let ModelTurn { text, calls, .. } = turn;
            self.push(Message::Assistant {
                text: text.clone(),
                tool_calls: calls.clone(),
            });
            if calls.is_empty() {
                return (SessionOutcome::Completed, text, None);
            }
            if let Some(message) = self.count_repeats(&calls) {
                return (SessionOutcome::Repeating, text, Some(message));
            }
            let mut outputs = self.run_tools(&calls, cancel).await;
            if let Some(last) = calls.last() {
                let ctx = self.tool_context(last, cancel);
                self.router.after_turn(&calls, &mut outputs, &ctx).await;
            }
            for (call, output) in calls.iter().zip(outputs) {
                self.push(Message::Tool {
                    call_id: call.id.clone(),
                    name: call.name.clone(),
                    content: output.content,
                    is_error: output.is_error,
                });
            }
        }
    }

    /// One model turn inside the model's window: with memory on, the
    /// request is assembled by `memory::context` (compacting first when the
    /// estimate passes the threshold), and a context-length error from the
    /// provider triggers exactly one compaction and one retry.
    async fn model_turn(&mut self, cancel: &CancellationToken) -> Result<ModelTurn, ProviderError> {
        if !self.runtime.memory.enabled() {
            let messages = self.messages.clone();
            return self.stream_turn(messages, cancel).await;
        }
        let window = self.window();
        let messages = self.request_messages(&window, true, cancel).await?;
        let turn = match self.stream_turn(messages, cancel).await {
            Err(ProviderError::ContextLength { .. }) => {
                self.compact(&window, CompactReason::ContextLength, cancel)
                    .await;
                let messages = self.request_messages(&window, false, cancel).await?;
                self.stream_turn(messages, cancel).await.map_err(|err| match err {
                    ProviderError::ContextLength { provider, message } => {
                        ProviderError::ContextLength {
                            provider,
                            message: format!(
                                "{message} (still too long after compacting once; set a smaller \
                                 models.\"{}\".context_window in orch.json or split the task)",
                                self.setup.model
                            ),
                        }
                    }
                    other => other,
                })
            }
            other => other,
        }?;
        // The conversation the provider just counted (compactions included;
        // the reply is not pushed yet).
        if let Some(input) = turn.reported_input {
            self.reported = Some((input, self.messages.len()));
        }
        self.runtime
            .memory
            .observe(&self.id, &turn.text, &turn.calls);
        Ok(turn)
    }

    /// The window of this session's model; an unknown model is warned
    /// about once per process.
    fn window(&self) -> Window {
        let memory = &self.runtime.memory;
        let (limits, warning) = memory.limits(&self.setup.model);
        if let Some(message) = warning {
            self.runtime.events.emit(Event::Warning {
                session: Some(self.id.clone()),
                message,
            });
        }
        Window::new(
            limits,
            self.setup.max_output_tokens,
            memory.config().compact_threshold,
            memory.config().tail_share,
        )
    }

    /// The prompt estimate of the next request with `memory_tokens` of
    /// memory block: tiktoken counts, or the provider's own count of the
    /// last request plus what was added since, whichever is larger.
    fn estimate(&mut self, memory_tokens: u64) -> u64 {
        let prefix = match self.prefix_tokens {
            Some(prefix) => prefix,
            None => {
                let prefix = tokens::count(&self.setup.agent.prompt)
                    + tokens::tools(&self.router.registry.specs());
                self.prefix_tokens = Some(prefix);
                prefix
            }
        };
        let counts = self.counts.of(&self.messages);
        let counted = prefix + memory_tokens + counts.iter().sum::<u64>();
        let reported = self
            .reported
            .filter(|&(_, sent)| sent <= counts.len())
            .map(|(input, sent)| input + counts[sent..].iter().sum::<u64>());
        counted.max(reported.unwrap_or(0))
    }

    /// An upper bound on `estimate` from byte lengths alone (no token
    /// tables): when even this is under the threshold, nothing is counted.
    fn estimate_at_most(&mut self, block: Option<&str>) -> u64 {
        let prefix = match self.prefix_bytes {
            Some(prefix) => prefix,
            None => {
                let prefix = tokens::at_most(&self.setup.agent.prompt)
                    + self
                        .router
                        .registry
                        .specs()
                        .iter()
                        .map(|spec| {
                            tokens::at_most(&spec.name)
                                + tokens::at_most(&spec.description)
                                + spec.parameters.to_string().len() as u64
                        })
                        .sum::<u64>();
                self.prefix_bytes = Some(prefix);
                prefix
            }
        };
        let messages: Vec<u64> = self.messages.iter().map(tokens::message_at_most).collect();
        let counted = prefix + block.map_or(0, tokens::at_most) + messages.iter().sum::<u64>();
        let reported = self
            .reported
            .filter(|&(_, sent)| sent <= messages.len())
            .map(|(input, sent)| input + messages[sent..].iter().sum::<u64>());
        counted.max(reported.unwrap_or(0))
    }

    /// The messages of the next request: memory block, then conversation;
    /// compacted first if `may_compact` and the estimate passes the
    /// threshold; then offered to the `pre-model-request` hook.
    async fn request_messages(
        &mut self,
        window: &Window,
        may_compact: bool,
        cancel: &CancellationToken,
    ) -> Result<Vec<Message>, ProviderError> {
        let mut block = self.runtime.memory.render(&self.id);
        if may_compact
            && window.needs_compaction(self.estimate_at_most(block.as_deref()))
            && window.needs_compaction(self.estimate(block.as_deref().map_or(0, tokens::count)))
        {
            self.compact(window, CompactReason::Threshold, cancel).await;
            block = self.runtime.memory.render(&self.id);
        }
        let messages = context::assemble(block, &self.messages);
        let hooks = self.runtime.hooks.clone();
        if !hooks.wants(HookPoint::PreModelRequest) {
            return Ok(messages);
        }
        let payload = serde_json::json!({
            "session": self.id,
            "agent": self.setup.agent.name,
            "model": self.setup.model,
            "messages": messages,
        });
        match hooks.call(HookPoint::PreModelRequest, payload).await {
            Decision::Continue => Ok(messages),
            Decision::Modify(value) => {
                match serde_json::from_value::<Vec<Message>>(value["messages"].clone()) {
                    Ok(reshaped) => Ok(reshaped),
                    Err(err) => {
                        self.runtime.events.emit(Event::Warning {
                            session: Some(self.id.clone()),
                            message: format!(
                                "hook pre-model-request: ignored a reshaped context that is not a message list: {err}"
                            ),
                        });
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

    /// Compact the conversation (`memory::compact` plans it): clear old
    /// tool outputs, then, if that is not enough, replace the older part
    /// (never the task, never the recent tail, never between a tool call and
    /// its results) with a summary written by the model. Without a summary
    /// the older part is dropped with a note: a mission never fails because
    /// a summary could not be written.
    async fn compact(
        &mut self,
        window: &Window,
        reason: CompactReason,
        cancel: &CancellationToken,
    ) {
        let block_tokens = self
            .runtime
            .memory
            .render(&self.id)
            .as_deref()
            .map_or(0, tokens::count);
        let before = self.estimate(block_tokens);
        let overhead = self.prefix_tokens.unwrap_or(0) + block_tokens;
        let counts = self.counts.of(&self.messages).to_vec();
        let conversation: u64 = counts.iter().sum();
        let mut target = window.target.saturating_sub(overhead);
        let mut tail = window.tail;
        if reason == CompactReason::ContextLength {
            // The provider counts more than the estimate says: whatever the
            // estimate, halve the conversation.
            target = target.min(conversation / 2);
            tail = tail.min(target / 2);
        }
        let hooks = self.runtime.hooks.clone();
        let mut instruction = SUMMARY_INSTRUCTION.to_string();
        if hooks.wants(HookPoint::PreCompact) {
            let payload = serde_json::json!({
                "session": self.id,
                "agent": self.setup.agent.name,
                "reason": reason.name(),
                "tokens": before,
                "window": window.usable,
            });
            match hooks.call(HookPoint::PreCompact, payload).await {
                Decision::Continue => {}
                Decision::Modify(value) => {
                    if let Some(text) = value["instruction"].as_str() {
                        instruction = text.to_string();
                    }
                }
                Decision::Block(why) => {
                    self.runtime.events.emit(Event::Warning {
                        session: Some(self.id.clone()),
                        message: format!("hook pre-compact blocked compaction: {why}"),
                    });
                    return;
                }
            }
        }
        // One tool output taking more than half of the room (a huge file, a
        // long log) cannot be kept whole on a small model: cut its middle.
        let cut = self.cut_oversized_outputs(&counts, window.usable / 2);
        let counts = if cut > 0 {
            self.counts.clear();
            self.counts.of(&self.messages).to_vec()
        } else {
            counts
        };
        let pruned_tokens = tokens::count(compact::PRUNED) + tokens::PER_MESSAGE;
        let plan = compact::plan(&self.messages, &counts, target, tail, pruned_tokens);
        if plan.is_empty() && cut == 0 {
            return;
        }
        for &index in &plan.prune {
            if let Message::Tool { content, .. } = &mut self.messages[index] {
                *content = compact::PRUNED.to_string();
            }
        }
        let mut summarized = 0;
        let mut summary = false;
        if let Some(range) = plan.summarize.clone() {
            summarized = range.len();
            let written = self
                .summarize(&self.messages[range.clone()], &instruction, window, cancel)
                .await;
            summary = written.is_some();
            let note = match written {
                Some(text) => format!(
                    "[summary of {summarized} earlier messages, written to fit the context window]\n{text}"
                ),
                None => format!(
                    "[{summarized} earlier messages were dropped to fit the context window; no summary was available. \
                     Check the plan and the files before relying on what they said.]"
                ),
            };
            self.messages.splice(range, [Message::user(note)]);
        }
        self.counts.clear();
        self.reported = None;
        self.rewrite_transcript();
        let after = self.estimate(block_tokens);
        self.runtime.events.emit(Event::ContextCompacted {
            session: self.id.clone(),
            agent: self.setup.agent.name.clone(),
            reason: reason.name().into(),
            tokens_before: before,
            tokens_after: after,
            pruned: plan.prune.len(),
            summarized,
            summary,
        });
    }

    /// Cut the middle out of tool outputs over `limit` tokens, keeping their
    /// start and end; returns how many were cut.
    fn cut_oversized_outputs(&mut self, counts: &[u64], limit: u64) -> usize {
        let mut cut = 0;
        for (message, &count) in self.messages.iter_mut().zip(counts) {
            let Message::Tool { content, .. } = message else {
                continue;
            };
            if count <= limit || limit == 0 {
                continue;
            }
            // Keep about `limit` tokens, at a conservative 3 bytes a token.
            let keep = (limit as usize).saturating_mul(3) / 2;
            let mut head_end = keep.min(content.len());
            while !content.is_char_boundary(head_end) {
                head_end -= 1;
            }
            let mut tail_start = content.len().saturating_sub(keep).max(head_end);
            while !content.is_char_boundary(tail_start) {
                tail_start += 1;
            }
            let removed = tail_start - head_end;
            *content = format!(
                "{}\n[… {removed} bytes cut to fit the context window …]\n{}",
                &content[..head_end],
                &content[tail_start..]
            );
            cut += 1;
        }
        cut
    }

    /// Ask the model for a summary of `head` through the same client, as
    /// the agent `Compactor` (scripts answer it under that name). `None`
    /// (with a warning) when no summary comes back.
    async fn summarize(
        &self,
        head: &[Message],
        instruction: &str,
        window: &Window,
        cancel: &CancellationToken,
    ) -> Option<String> {
        let mut text = String::new();
        let pinned = self.runtime.memory.pinned(&self.id);
        if !pinned.is_empty() {
            text.push_str("Decisions that must survive (pinned memory):\n");
            for entry in &pinned {
                text.push_str(&format!("- [{}] {}\n", entry.id, entry.text));
            }
            text.push('\n');
        }
        text.push_str("The conversation to summarize:\n");
        for message in head {
            text.push_str(&transcript_line(message));
        }
        // The summary request must fit the window too: keep its end.
        let max_chars = (window.usable as usize).saturating_mul(2);
        if text.len() > max_chars {
            let mut cut = text.len() - max_chars;
            while !text.is_char_boundary(cut) {
                cut += 1;
            }
            text.replace_range(..cut, "[…]\n");
        }
        let request = ModelRequest {
            agent: COMPACTOR.into(),
            model: self.setup.model.clone(),
            system: instruction.to_string(),
            messages: vec![Message::user(text)],
            tools: Vec::new(),
            max_output_tokens: self.setup.max_output_tokens.min(SUMMARY_MAX_TOKENS),
        };
        let mut stream = self.runtime.client.stream(request, cancel.child_token());
        let mut summary = String::new();
        let mut failure = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(StreamEvent::TextDelta(delta)) => summary.push_str(&delta),
                Ok(StreamEvent::Usage(usage)) => self.runtime.events.emit(Event::Usage {
                    session: self.id.clone(),
                    agent: self.setup.agent.name.clone(),
                    usage,
                }),
                Ok(_) => {}
                Err(err) => {
                    failure = Some(err.to_string());
                    break;
                }
            }
        }
        if failure.is_none() && summary.trim().is_empty() {
            failure = Some("the model returned an empty summary".into());
        }
        match failure {
            None => Some(summary.trim().to_string()),
            Some(err) => {
                self.runtime.events.emit(Event::Warning {
                    session: Some(self.id.clone()),
                    message: format!(
                        "compaction without a summary (older messages dropped): {err}"
                    ),
                });
                None
            }
        }
    }

    /// After a compaction the transcript restarts with the compacted
    /// conversation, so `orch resume` restores what the model last saw.
    fn rewrite_transcript(&mut self) {
        let mut result = self.transcript.mark_reset();
        for message in &self.messages {
            if result.is_err() {
                break;
            }
            result = self.transcript.append(message);
        }
        if let Err(err) = result {
            self.runtime.events.emit(Event::Warning {
                session: Some(self.id.clone()),
                message: format!("transcript {}: {err}", self.transcript.path().display()),
            });
        }
    }

    /// Stream one model turn with `messages`, emitting events as it goes.
    async fn stream_turn(
        &mut self,
        messages: Vec<Message>,
        cancel: &CancellationToken,
    ) -> Result<ModelTurn, ProviderError> {
        let events = &self.runtime.events;
        let tools = self.router.registry.specs();
        events.emit(Event::ModelRequest {
            session: self.id.clone(),
            turn: self.turns,
            messages: messages.len(),
            tools: tools.len(),
        });
        let request = ModelRequest {
            agent: self.setup.agent.name.clone(),
            model: self.setup.model.clone(),
            system: self.setup.agent.prompt.clone(),
            messages,
            tools,
            max_output_tokens: self.setup.max_output_tokens,
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
                } => events.emit(Event::ModelRetry {
                    session: self.id.clone(),
                    attempt,
                    delay_ms: delay.as_millis() as u64,
                    reason,
                }),
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
        if finish == Some(FinishReason::Length) && calls.is_empty() {
            events.emit(Event::Warning {
                session: Some(self.id.clone()),
                message: format!(
                    "the model's reply was cut at {} output tokens (max_output_tokens)",
                    self.setup.max_output_tokens
                ),
            });
        }
        events.emit(Event::ModelResponse {
            session: self.id.clone(),
            turn: self.turns,
            finish,
            tool_calls: calls.len(),
            latency_ms: started.elapsed().as_millis() as u64,
        });
        Ok(ModelTurn {
            text,
            calls,
            reported_input: usage.map(|u| u.input),
        })
    }

    /// Run the calls of one turn. Consecutive read-only calls run together;
    /// any other call runs alone, in the order the model gave. Results come
    /// back in call order.
    async fn run_tools(&self, calls: &[ToolCall], cancel: &CancellationToken) -> Vec<ToolOutput> {
        let mut outputs = Vec::with_capacity(calls.len());
        let mut start = 0;
        while start < calls.len() {
            let end = if self.router.is_read_only(&calls[start]) {
                start
                    + calls[start..]
                        .iter()
                        .take_while(|call| self.router.is_read_only(call))
                        .count()
            } else {
                start + 1
            };
            let batch = calls[start..end].iter().map(|call| async move {
                let ctx = self.tool_context(call, cancel);
                self.router.call(call, &ctx).await
            });
            outputs.extend(join_all(batch).await);
            start = end;
        }
        outputs
    }

    /// Track identical consecutive tool calls; the message when the limit
    /// is reached.
    fn count_repeats(&mut self, calls: &[ToolCall]) -> Option<String> {
        let limit = self.setup.repeat_limit?;
        for call in calls {
            let signature = (call.name.clone(), canonical_arguments(&call.arguments));
            if self.last_call.as_ref() == Some(&signature) {
                self.repeats += 1;
            } else {
                self.last_call = Some(signature);
                self.repeats = 1;
            }
            if self.repeats >= limit {
                return Some(format!(
                    "the same tool call ({} {}) was made {} times in a row",
                    call.name,
                    preview_arguments(&call.arguments),
                    self.repeats
                ));
            }
        }
        None
    }

    fn tool_context(&self, call: &ToolCall, cancel: &CancellationToken) -> ToolContext {
        ToolContext {
            root: self.runtime.root.clone(),
            session: self.id.clone(),
            agent: self.setup.agent.name.clone(),
            call_id: call.id.clone(),
            cancel: cancel.child_token(),
            limits: self.runtime.limits.clone(),
        }
    }

    fn push(&mut self, message: Message) {
        if let Err(err) = self.transcript.append(&message) {
            self.runtime.events.emit(Event::Warning {
                session: Some(self.id.clone()),
                message: format!("transcript {}: {err}", self.transcript.path().display()),
            });
        }
        self.messages.push(message);
    }
}

struct ModelTurn {
    text: String,
    calls: Vec<ToolCall>,
    /// The prompt tokens the provider counted, when it said.
    reported_input: Option<u64>,
}

/// The agent name summary requests are sent as.
pub const COMPACTOR: &str = "Compactor";

/// The most output tokens a summary may take.
const SUMMARY_MAX_TOKENS: u32 = 2048;

/// The summarization instruction (the `pre-compact` hook may replace it).
const SUMMARY_INSTRUCTION: &str = "You compact a coding agent's conversation so it can continue \
within its context window. Write a concise summary of the conversation you are given: the task, \
decisions made and why, files created or changed (paths), commands run and their outcome, what \
is done and what remains. Keep every pinned decision. Plain text, no preamble.";

/// Why a conversation is compacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CompactReason {
    /// The estimate passed `memory.compact_threshold` of the window.
    Threshold,
    /// The provider refused the prompt as too long.
    ContextLength,
}

impl CompactReason {
    fn name(self) -> &'static str {
        match self {
            CompactReason::Threshold => "threshold",
            CompactReason::ContextLength => "context_length",
        }
    }
}

/// One message as the summarizer reads it; tool outputs are cut to their
/// first 2000 characters.
fn transcript_line(message: &Message) -> String {
    const TOOL_OUTPUT_CHARS: usize = 2000;
    match message {
        Message::User { text } => format!("user: {text}\n"),
        Message::Assistant { text, tool_calls } => {
            let mut line = format!("assistant: {text}\n");
            for call in tool_calls {
                line.push_str(&format!("  called {} {}\n", call.name, call.arguments));
            }
            line
        }
        Message::Tool { name, content, .. } => {
            let cut: String = content.chars().take(TOOL_OUTPUT_CHARS).collect();
            let more = if cut.len() < content.len() {
                " […]"
            } else {
                ""
            };
            format!("{name} result: {cut}{more}\n")
        }
    }
}

/// Give every tool call of the last assistant message a result: the ones
/// recorded keep theirs, the missing ones say they were interrupted.
fn patch_interrupted_calls(messages: &mut Vec<Message>) {
    let Some(last_assistant) = messages
        .iter()
        .rposition(|m| matches!(m, Message::Assistant { .. }))
    else {
        return;
    };
    let Message::Assistant { tool_calls, .. } = &messages[last_assistant] else {
        return;
    };
    let answered: Vec<String> = messages[last_assistant + 1..]
        .iter()
        .filter_map(|m| match m {
            Message::Tool { call_id, .. } => Some(call_id.clone()),
            _ => None,
        })
        .collect();
    let missing: Vec<Message> = tool_calls
        .iter()
        .filter(|call| !answered.contains(&call.id))
        .map(|call| Message::Tool {
            call_id: call.id.clone(),
            name: call.name.clone(),
            content: "interrupted: orch stopped before this call's result was recorded; check the current state before repeating it".into(),
            is_error: true,
        })
        .collect();
    messages.extend(missing);
}

/// Arguments in a canonical form, so `{"a":1, "b":2}` and `{"b":2,"a":1}`
/// count as the same call.
fn canonical_arguments(raw: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(value) => sorted(value).to_string(),
        Err(_) => raw.trim().to_string(),
    }
}

fn sorted(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(sorted).collect())
        }
        other => other,
    }
}

fn preview_arguments(raw: &str) -> String {
    let mut text: String = raw.chars().take(120).collect();
    if text.len() < raw.len() {
        text.push('…');
    }
    text
}

/// `worker-m3k9q1-7f2a`: agent, time in base 36, a random suffix. Sortable
/// by creation time within an agent, unique across concurrent processes.
fn new_session_id(agent: &str) -> String {
    crate::events::unique_id(&agent.to_ascii_lowercase())
}

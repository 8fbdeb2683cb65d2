//! One agent conversation and its turn loop: system prompt + messages go to
//! the model, the tool calls it asks for run (read-only ones concurrently),
//! their results go back, until the model ends its turn or a cap stops it.
//!
//! The session knows tools only through `ToolRouter` and models only through
//! `ModelClient`; every message is flushed to its transcript as it completes.

mod compaction;
mod estimate;
pub mod pool;
mod repeats;
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
use crate::memory::Memory;
use crate::memory::context::{self, Window};
use crate::memory::tokens::{self, Measure};
use crate::provider::{
    FinishReason, Message, ModelClient, ModelRequest, ProviderError, StreamEvent, ToolCall, Usage,
};
use crate::tools::permissions::Permissions;
use crate::tools::{ToolContext, ToolOutput, ToolRegistry, ToolRouter};
pub use compaction::COMPACTOR;
use compaction::CompactReason;
use estimate::{Estimator, Prefix};
use repeats::RepeatGuard;
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
    repeats: RepeatGuard,
    /// The prompt estimate's memory of this conversation.
    estimator: Estimator,
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
        transcript::patch_interrupted_calls(&mut messages);
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
        let repeats = RepeatGuard::new(setup.repeat_limit);
        Session {
            id,
            setup,
            runtime,
            router,
            messages,
            transcript,
            turns: 0,
            usage: Usage::default(),
            repeats,
            estimator: Estimator::default(),
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
        self.repeats.reset();
        self.estimator.forget_conversation();
        // The Task tier belongs to one task.
        self.runtime.memory.end_session(&self.id);
        if let Err(err) = self.transcript.mark_reset() {
            let path = self.transcript.path().display().to_string();
            self.warn(format!("transcript {path}: {err}"));
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
            if let Some(message) = self.repeats.observe(&calls) {
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
            self.estimator.reported(input, self.messages.len());
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
            self.warn(message);
        }
        Window::new(
            limits,
            self.setup.max_output_tokens,
            memory.config().compact_threshold,
            memory.config().tail_share,
        )
    }

    /// The prompt estimate of the next request with `block` as its memory
    /// block: exact tokens or the table-free bound, or the provider's own
    /// count of the last request plus what was added since, if larger.
    fn estimate(&mut self, measure: Measure, block: Option<&str>) -> u64 {
        let tools = self.router.registry.specs();
        let prefix = Prefix {
            system: &self.setup.agent.prompt,
            tools: &tools,
        };
        self.estimator
            .prompt(measure, &prefix, block, &self.messages)
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
        // The bound needs no token tables: when it fits, nothing is counted.
        if may_compact
            && window.needs_compaction(self.estimate(Measure::Bound, block.as_deref()))
            && {
                if !tokens::loaded() {
                    let _ = tokio::task::spawn_blocking(tokens::load).await;
                }
                window.needs_compaction(self.estimate(Measure::Tokens, block.as_deref()))
            }
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

    fn tool_context(&self, call: &ToolCall, cancel: &CancellationToken) -> ToolContext {
        ToolContext {
            root: self.runtime.root.clone(),
            session: self.id.clone(),
            agent: self.setup.agent.name.clone(),
            role: self.setup.agent.role,
            call_id: call.id.clone(),
            cancel: cancel.child_token(),
            limits: self.runtime.limits.clone(),
        }
    }

    fn push(&mut self, message: Message) {
        if let Err(err) = self.transcript.append(&message) {
            let path = self.transcript.path().display().to_string();
            self.warn(format!("transcript {path}: {err}"));
        }
        self.messages.push(message);
    }

    /// A warning about this session on the bus.
    fn warn(&self, message: String) {
        self.runtime.events.emit(Event::Warning {
            session: Some(self.id.clone()),
            message,
        });
    }
}

struct ModelTurn {
    text: String,
    calls: Vec<ToolCall>,
    /// The prompt tokens the provider counted, when it said.
    reported_input: Option<u64>,
}

/// `worker-m3k9q1-7f2a`: agent, time in base 36, a random suffix. Sortable
/// by creation time within an agent, unique across concurrent processes.
fn new_session_id(agent: &str) -> String {
    crate::events::unique_id(&agent.to_ascii_lowercase())
}

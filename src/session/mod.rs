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
        let router = ToolRouter {
            registry: runtime
                .tools
                .subset(setup.agent.tools.iter().map(String::as_str)),
            permissions: runtime.permissions.clone(),
            events: runtime.events.clone(),
        };
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
            let ModelTurn { text, calls } = turn;
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
            let outputs = self.run_tools(&calls, cancel).await;
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

    /// Stream one model turn, emitting events as it goes.
    async fn model_turn(&mut self, cancel: &CancellationToken) -> Result<ModelTurn, ProviderError> {
        let events = &self.runtime.events;
        let tools = self.router.registry.specs();
        events.emit(Event::ModelRequest {
            session: self.id.clone(),
            turn: self.turns,
            messages: self.messages.len(),
            tools: tools.len(),
        });
        let request = ModelRequest {
            agent: self.setup.agent.name.clone(),
            model: self.setup.model.clone(),
            system: self.setup.agent.prompt.clone(),
            messages: self.messages.clone(),
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
        Ok(ModelTurn { text, calls })
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

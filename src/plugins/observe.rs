//! The hook points that observe what already happened — `mission-start`,
//! `mission-end`, `iteration`, `session-start`, `session-end`,
//! `todo-updated`, `post-model-response` — answered from the event bus's
//! live stream. They cannot change the past: a `modify` or `block` there is
//! reported and ignored. The stream is lossy by design (a slow plugin makes
//! the observer skip events, and says so); nothing correct depends on it.

use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::PluginHost;
use crate::events::{Event, EventBus};
use crate::hooks::Decision;

/// Keeps observing while it lives; dropping it stops its task.
pub struct PluginObserver {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PluginObserver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PluginHost {
    /// Call the observing hook points from `events`. Needs a tokio runtime.
    pub fn observe(&self, events: &EventBus) -> PluginObserver {
        let mut stream = events.subscribe();
        let host = self.clone();
        let task = tokio::spawn(async move {
            loop {
                let envelope = match stream.recv().await {
                    Ok(envelope) => envelope,
                    Err(RecvError::Lagged(missed)) => {
                        host.inner.services.warn(format!(
                            "plugin hooks skipped {missed} events: a plugin answers too slowly"
                        ));
                        continue;
                    }
                    Err(RecvError::Closed) => return,
                };
                let Some((point, payload)) = observed(&envelope.event) else {
                    continue;
                };
                if !host.listens(point) {
                    continue;
                }
                if let decision @ (Decision::Modify(_) | Decision::Block(_)) =
                    host.hook(point, payload).await
                {
                    let word = match decision {
                        Decision::Block(_) => "block",
                        _ => "modify",
                    };
                    host.inner.services.warn(format!(
                        "hook {point}: a plugin answered {word}, but {point} only observes; ignored"
                    ));
                }
            }
        });
        PluginObserver { task }
    }
}

/// The observing hook point an event is, with its payload.
fn observed(event: &Event) -> Option<(&'static str, Value)> {
    match event {
        Event::MissionStarted {
            mission,
            goal,
            resumed,
            ..
        } => Some((
            "mission-start",
            json!({"mission": mission, "goal": goal, "resumed": resumed}),
        )),
        Event::MissionFinished {
            mission,
            outcome,
            reason,
            iterations,
            ..
        } => Some((
            "mission-end",
            json!({"mission": mission, "outcome": outcome, "reason": reason, "iterations": iterations}),
        )),
        Event::GateChecked {
            mission,
            iteration,
            passed,
            open_items,
            ..
        } => Some((
            "iteration",
            json!({"mission": mission, "iteration": iteration, "passed": passed, "open-items": open_items}),
        )),
        Event::SessionStarted {
            session,
            agent,
            model,
            ..
        } => Some((
            "session-start",
            json!({"session": session, "agent": agent, "model": model}),
        )),
        Event::SessionFinished {
            session,
            agent,
            outcome,
            turns,
            ..
        } => Some((
            "session-end",
            json!({"session": session, "agent": agent, "outcome": outcome, "turns": turns}),
        )),
        Event::PlanUpdated { counts } => Some(("todo-updated", json!({"counts": counts}))),
        Event::ModelResponse {
            session,
            turn,
            finish,
            tool_calls,
            ..
        } => Some((
            "post-model-response",
            json!({"session": session, "turn": turn, "finish": finish, "tool-calls": tool_calls}),
        )),
        Event::ModelRequest { .. }
        | Event::TextDelta { .. }
        | Event::ModelRetry { .. }
        | Event::Usage { .. }
        | Event::ToolCallBegin { .. }
        | Event::ToolCallEnd { .. }
        | Event::ApprovalRequested { .. }
        | Event::ApprovalResolved { .. }
        | Event::Warning { .. }
        | Event::ToolsChanged { .. }
        | Event::PluginLog { .. }
        | Event::PluginMetric { .. }
        | Event::TaskQueued { .. }
        | Event::TaskStarted { .. }
        | Event::TaskFinished { .. }
        | Event::TaskReported { .. }
        | Event::TaskLanded { .. }
        | Event::ContextCompacted { .. }
        | Event::MemoryEvicted { .. }
        | Event::BackgroundStarted { .. }
        | Event::BackgroundFinished { .. } => None,
    }
}

//! One served mission's child process, followed: its JSONL events become
//! MCP logging notifications (what is worth telling a client, at which
//! level), its stderr goes to the server's, its exit is recorded.

use std::collections::BTreeMap;
use std::io::Write as _;

#[allow(deprecated)]
use rmcp::model::LoggingLevel;
use rmcp::{Peer, RoleServer};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{DRAIN_GRACE, MAX_LINE, Run, STDERR_TAIL, Server};
use crate::cli::status::request_cancel;
use crate::events::{ApprovedBy, Envelope, Event, MissionOutcome, TaskStatus};

/// Reads one child: its events become notifications, its stderr goes to
/// ours, its exit is recorded.
pub(super) struct Follow {
    server: Server,
    peer: Peer<RoleServer>,
    /// Told the mission's id, or why it did not start.
    started: Option<oneshot::Sender<Result<String, String>>>,
    mission: Option<String>,
    /// Task descriptions by task id, for the task notifications (and the
    /// tool of each call waiting for approval, by `call <id>`).
    descriptions: BTreeMap<String, String>,
    /// A `mission_finished` event came.
    finished: bool,
}

impl Follow {
    /// Follow the child of `server` that will tell `started` its mission's
    /// id (or why it did not start), notifying `peer`.
    pub(super) fn new(
        server: Server,
        peer: Peer<RoleServer>,
        started: oneshot::Sender<Result<String, String>>,
    ) -> Follow {
        Follow {
            server,
            peer,
            started: Some(started),
            mission: None,
            descriptions: BTreeMap::new(),
            finished: false,
        }
    }

    pub(super) async fn run(
        mut self,
        mut child: crate::process::Started,
        abandon: CancellationToken,
    ) {
        let shared = self.server.shared.clone();
        let (Some(stdout), Some(stderr)) = (child.take_stdout(), child.take_stderr()) else {
            return;
        };
        let mut stdout = Lines::new(stdout);
        let mut stderr = Lines::new(stderr);
        let mut tail = String::new();
        let (mut out_done, mut err_done) = (false, false);
        let mut status = None;
        let mut drain_until = None;
        let mut closing_seen = false;
        while !(out_done && err_done && status.is_some()) {
            tokio::select! {
                line = stdout.next(), if !out_done => match line {
                    Some(line) => self.event(&line).await,
                    None => out_done = true,
                },
                line = stderr.next(), if !err_done => match line {
                    Some(line) => {
                        let text = String::from_utf8_lossy(&line);
                        say(&text);
                        keep_tail(&mut tail, &text);
                    }
                    None => err_done = true,
                },
                exit = child.wait(), if status.is_none() => {
                    status = Some(exit);
                    drain_until = Some(tokio::time::Instant::now() + DRAIN_GRACE);
                },
                () = sleep_until(drain_until), if drain_until.is_some() => break,
                () = shared.closing.cancelled(), if !closing_seen => {
                    closing_seen = true;
                    if let Some(id) = &self.mission {
                        let _ = request_cancel(&shared.root, id);
                    }
                },
                () = abandon.cancelled() => return,
                () = shared.abandon.cancelled() => return,
            }
        }
        let (exit_code, signal) = match &status {
            Some(Ok(status)) => {
                use std::os::unix::process::ExitStatusExt as _;
                (status.code(), status.signal())
            }
            _ => (None, None),
        };
        let ended = match (exit_code, signal) {
            (Some(code), _) => format!("exit {code}"),
            (None, Some(signal)) => format!("signal {signal}"),
            (None, None) => "unknown exit".into(),
        };
        if let Some(started) = self.started.take() {
            let why = tail.trim();
            let _ = started.send(Err(if why.is_empty() {
                format!("the mission did not start ({ended})")
            } else {
                format!("the mission did not start ({ended}): {why}")
            }));
            return;
        }
        let Some(id) = self.mission.clone() else {
            return;
        };
        shared.runs.lock().expect("runs lock").insert(
            id.clone(),
            Run {
                exit_code,
                signal,
                exited: true,
            },
        );
        if !self.finished {
            #[allow(deprecated)]
            self.server
                .notify(
                    &self.peer,
                    LoggingLevel::Error,
                    json!({
                        "mission": id,
                        "type": "process_ended",
                        "message": format!(
                            "mission {id}: its process ended before the mission finished ({ended}): {}",
                            tail.trim()
                        ),
                    }),
                )
                .await;
        }
    }

    /// One line of the child's stdout.
    async fn event(&mut self, line: &[u8]) {
        let Ok(envelope) = serde_json::from_slice::<Envelope>(line) else {
            return;
        };
        if let Event::MissionStarted { mission, .. } = &envelope.event {
            self.mission = Some(mission.clone());
            self.server
                .shared
                .runs
                .lock()
                .expect("runs lock")
                .insert(mission.clone(), Run::default());
            if let Some(started) = self.started.take() {
                let _ = started.send(Ok(mission.clone()));
            }
            if self.server.shared.closing.is_cancelled() {
                let _ = request_cancel(&self.server.shared.root, mission);
            }
        }
        if let Event::MissionFinished { .. } = &envelope.event {
            self.finished = true;
        }
        let Some(mission) = self.mission.clone() else {
            return;
        };
        if let Some((level, message, extra)) = notice(&envelope.event, &mut self.descriptions) {
            let mut data = json!({
                "mission": mission,
                "type": event_type(&envelope),
                "message": message,
            });
            if let (Value::Object(data), Value::Object(extra)) = (&mut data, extra) {
                data.extend(extra);
            }
            self.server.notify(&self.peer, level, data).await;
        }
    }
}

/// What the client is told of one event: its level, a line for people and
/// the facts behind it; `None` for what is too fine-grained to notify
/// (streamed text, every model turn).
#[allow(deprecated)]
fn notice(
    event: &Event,
    descriptions: &mut BTreeMap<String, String>,
) -> Option<(LoggingLevel, String, Value)> {
    use LoggingLevel::{Debug, Info, Warning};
    let described = |descriptions: &BTreeMap<String, String>, task: &str| {
        descriptions
            .get(task)
            .map_or(task.to_string(), |description| {
                format!("{task} ({description})")
            })
    };
    Some(match event {
        Event::MissionStarted {
            mission,
            goal,
            max_iterations,
            ..
        } => (
            Info,
            format!("mission {mission} started: {goal}"),
            json!({"max_iterations": max_iterations}),
        ),
        Event::PlanUpdated { counts } => (
            Info,
            format!(
                "plan: {}/{} done, {} in progress, {} failed",
                counts.done, counts.total, counts.in_progress, counts.failed
            ),
            json!({"plan": counts}),
        ),
        Event::GateChecked {
            iteration,
            passed,
            open_items,
            verify,
            note,
            ..
        } => {
            let failing: Vec<&str> = verify
                .iter()
                .filter(|result| !result.passed)
                .map(|result| result.command.as_str())
                .collect();
            let mut message = format!(
                "iteration {iteration}: completion gate {}",
                if *passed { "passed" } else { "failed" }
            );
            if !open_items.is_empty() {
                message.push_str(&format!("; open: {}", open_items.join(", ")));
            }
            if !failing.is_empty() {
                message.push_str(&format!("; failing: {}", failing.join(", ")));
            }
            if let Some(note) = note {
                message.push_str(&format!("; {note}"));
            }
            (
                Info,
                message,
                json!({"iteration": iteration, "passed": passed}),
            )
        }
        Event::MissionFinished {
            mission,
            outcome,
            reason,
            iterations,
            cost_usd,
            ..
        } => {
            let word = match outcome {
                MissionOutcome::Complete => "complete",
                MissionOutcome::Stopped => "stopped",
                MissionOutcome::Cancelled => "cancelled",
            };
            (
                if *outcome == MissionOutcome::Complete {
                    Info
                } else {
                    Warning
                },
                format!("mission {mission} {word}: {reason}"),
                json!({"outcome": outcome, "reason": reason, "iterations": iterations, "cost_usd": cost_usd}),
            )
        }
        Event::TaskQueued {
            task, description, ..
        } => {
            descriptions.insert(task.clone(), description.clone());
            return None;
        }
        Event::TaskStarted { task, agent, .. } => (
            Info,
            format!("{agent} started {}", described(descriptions, task)),
            json!({"task": task, "agent": agent}),
        ),
        Event::TaskFinished {
            task,
            agent,
            status,
            error,
            ..
        } => (
            if *status == TaskStatus::Failed {
                Warning
            } else {
                Info
            },
            format!(
                "{agent} {} {}{}",
                status.name(),
                described(descriptions, task),
                error
                    .as_deref()
                    .map_or(String::new(), |error| format!(": {error}"))
            ),
            json!({"task": task, "agent": agent, "status": status}),
        ),
        Event::TaskLanded {
            task,
            files,
            conflicts,
            ..
        } => {
            if conflicts.is_empty() {
                (
                    Info,
                    format!("{task} landed: {}", files.join(", ")),
                    json!({"task": task}),
                )
            } else {
                (
                    Warning,
                    format!("{task} conflicts in {}", conflicts.join(", ")),
                    json!({"task": task}),
                )
            }
        }
        Event::Warning { message, .. } => (Warning, message.clone(), json!({})),
        Event::ToolsChanged {
            source,
            added,
            removed,
            note,
        } => (
            Info,
            crate::monitor::tools_line(source, added, removed, note.as_deref()),
            json!({"source": source, "added": added, "removed": removed}),
        ),
        Event::ApprovalRequested { call_id, tool, .. } => {
            descriptions.insert(format!("call {call_id}"), tool.clone());
            return None;
        }
        Event::ApprovalResolved {
            call_id,
            approved: false,
            by: ApprovedBy::Headless,
            ..
        } => {
            let tool = descriptions
                .remove(&format!("call {call_id}"))
                .unwrap_or_else(|| "a tool call".into());
            (
                Warning,
                format!(
                    "{tool} needed approval and was denied: missions served over MCP run without prompts"
                ),
                json!({"tool": tool}),
            )
        }
        Event::ToolCallBegin { tool, .. } => (Debug, format!("tool {tool}"), json!({"tool": tool})),
        Event::BackgroundFinished {
            job,
            status,
            exit_code,
        } => (
            Debug,
            format!("background job {job} {status}"),
            json!({"job": job, "exit_code": exit_code}),
        ),
        Event::ApprovalResolved { .. }
        | Event::SessionStarted { .. }
        | Event::ModelRequest { .. }
        | Event::TextDelta { .. }
        | Event::ModelRetry { .. }
        | Event::ModelResponse { .. }
        | Event::Usage { .. }
        | Event::ToolCallEnd { .. }
        | Event::TaskReported { .. }
        | Event::SessionFinished { .. }
        | Event::ContextCompacted { .. }
        | Event::MemoryEvicted { .. }
        | Event::BackgroundStarted { .. }
        | Event::PluginLog { .. }
        | Event::PluginMetric { .. } => return None,
    })
}

/// The event's `type` as the JSONL has it.
fn event_type(envelope: &Envelope) -> String {
    serde_json::to_value(&envelope.event)
        .ok()
        .and_then(|value| value["type"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[allow(deprecated)]
pub(super) fn severity(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A line for people, on stderr (stdout carries only JSON-RPC).
pub(super) fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{}", line.trim_end());
}

/// Keep the last `STDERR_TAIL` bytes of the child's stderr.
fn keep_tail(tail: &mut String, line: &str) {
    tail.push_str(line.trim_end());
    tail.push('\n');
    if tail.len() > STDERR_TAIL {
        let cut = crate::text::tail(tail, STDERR_TAIL).to_string();
        *tail = cut;
    }
}

/// The lines of a child's stream, each at most `MAX_LINE` bytes (the rest
/// of a longer one is dropped). Cancel-safe: what was read stays here.
pub(super) struct Lines<R> {
    reader: BufReader<R>,
    line: Vec<u8>,
    /// The current line passed `MAX_LINE`: skip to its end.
    skipping: bool,
}

impl<R: AsyncRead + Unpin> Lines<R> {
    fn new(reader: R) -> Self {
        Lines {
            reader: BufReader::new(reader),
            line: Vec::new(),
            skipping: false,
        }
    }

    /// The next line without its newline; `None` at end of file.
    async fn next(&mut self) -> Option<Vec<u8>> {
        loop {
            let buf = match self.reader.fill_buf().await {
                Ok(buf) => buf,
                Err(_) => return None,
            };
            if buf.is_empty() {
                if self.line.is_empty() || self.skipping {
                    return None;
                }
                return Some(std::mem::take(&mut self.line));
            }
            let (part, end) = match buf.iter().position(|&byte| byte == b'\n') {
                Some(at) => (&buf[..at], Some(at + 1)),
                None => (buf, None),
            };
            if !self.skipping {
                let room = MAX_LINE.saturating_sub(self.line.len());
                self.line.extend_from_slice(&part[..part.len().min(room)]);
                self.skipping = part.len() > room;
            }
            let used = end.unwrap_or(buf.len());
            self.reader.consume(used);
            if end.is_some() {
                self.skipping = false;
                return Some(std::mem::take(&mut self.line));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn long_lines_are_cut_and_the_next_line_is_whole() {
        let mut input = vec![b'a'; MAX_LINE + 10];
        input.extend_from_slice(b"\nnext\nlast");
        let mut lines = Lines::new(&input[..]);
        assert_eq!(lines.next().await.unwrap().len(), MAX_LINE);
        assert_eq!(lines.next().await.unwrap(), b"next");
        assert_eq!(lines.next().await.unwrap(), b"last");
        assert_eq!(lines.next().await, None);
    }
}

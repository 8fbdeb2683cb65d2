//! Plain progress lines for terminals and pipes: the model's text as it
//! streams, one line per tool call, a summary when a session or the
//! mission ends (tokens, the share read from prompt caches, cost).

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use super::metrics::usage_text;
use crate::events::{Envelope, Event, EventSink, SessionOutcome};
use crate::text::strip_controls;

/// How much to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

pub struct Plain<W: Write + Send> {
    state: Mutex<State<W>>,
    verbosity: Verbosity,
    color: bool,
    /// While the live view owns the terminal, lines are not printed (the
    /// sessions' names are still learnt, for when printing resumes).
    muted: AtomicBool,
}

struct State<W> {
    out: W,
    /// Whether the cursor sits at the start of a line.
    at_line_start: bool,
    /// The session whose text was printed last.
    speaker: Option<String>,
    /// Agent name of each session, for labelling its text.
    agents: std::collections::HashMap<String, String>,
}

impl<W: Write + Send> Plain<W> {
    pub fn new(out: W, verbosity: Verbosity, color: bool) -> Self {
        Plain {
            state: Mutex::new(State {
                out,
                at_line_start: true,
                speaker: None,
                agents: Default::default(),
            }),
            verbosity,
            color,
            muted: AtomicBool::new(false),
        }
    }

    /// Stop or resume printing.
    pub fn set_muted(&self, muted: bool) {
        self.muted.store(muted, Ordering::SeqCst);
    }

    fn dim(&self, text: &str) -> String {
        let text = strip_controls(text);
        if self.color {
            format!("\x1b[2m{text}\x1b[0m")
        } else {
            text
        }
    }

    fn bold(&self, text: &str) -> String {
        let text = strip_controls(text);
        if self.color {
            format!("\x1b[1m{text}\x1b[0m")
        } else {
            text
        }
    }

    fn red(&self, text: &str) -> String {
        let text = strip_controls(text);
        if self.color {
            format!("\x1b[31m{text}\x1b[0m")
        } else {
            text
        }
    }
}

impl<W: Write + Send> EventSink for Plain<W> {
    fn write(&self, envelope: &Envelope) {
        let quiet = self.verbosity == Verbosity::Quiet;
        let verbose = self.verbosity == Verbosity::Verbose;
        let mut state = self.state.lock().expect("plain writer lock");
        let line = |state: &mut State<W>, text: String| {
            let lead = if state.at_line_start { "" } else { "\n" };
            let _ = writeln!(state.out, "{lead}{text}");
            state.at_line_start = true;
            state.speaker = None;
        };
        if let Event::SessionStarted { session, agent, .. } = &envelope.event {
            state.agents.insert(session.clone(), agent.clone());
        }
        if self.muted.load(Ordering::SeqCst) {
            return;
        }
        match &envelope.event {
            Event::SessionStarted {
                agent,
                provider,
                model,
                session,
            } => {
                if !quiet {
                    line(
                        &mut state,
                        self.dim(&format!("● {agent} ({provider}/{model}) session {session}")),
                    );
                }
            }
            Event::TextDelta { session, text } => {
                if text.is_empty() {
                    return;
                }
                if state.speaker.as_deref() != Some(session.as_str()) || state.at_line_start {
                    let lead = if state.at_line_start { "" } else { "\n" };
                    let agent = state.agents.get(session).cloned().unwrap_or_default();
                    let _ = write!(state.out, "{lead}{}", self.bold(&format!("{agent}: ")));
                    state.speaker = Some(session.clone());
                }
                // Model text cannot move the cursor, retitle or clear the
                // terminal: control characters other than newline and tab go.
                let _ = write!(state.out, "{}", strip_controls(text));
                state.at_line_start = text.ends_with('\n');
            }
            Event::ToolCallBegin {
                tool, arguments, ..
            } => {
                if !quiet {
                    line(
                        &mut state,
                        self.dim(&format!("→ {tool} {}", summarize(tool, arguments))),
                    );
                }
            }
            Event::ToolCallEnd {
                tool, ok, preview, ..
            } => {
                if !ok && !quiet {
                    let first = preview.lines().next().unwrap_or_default();
                    line(&mut state, self.red(&format!("  ✗ {tool}: {first}")));
                } else if verbose {
                    line(&mut state, self.dim(&format!("  ✓ {tool}: {preview}")));
                }
            }
            Event::ModelRetry {
                attempt,
                delay_ms,
                reason,
                ..
            } => {
                if !quiet {
                    line(
                        &mut state,
                        self.dim(&format!(
                            "  retrying in {:.1}s (attempt {attempt}): {reason}",
                            *delay_ms as f64 / 1000.0
                        )),
                    );
                }
            }
            Event::ApprovalResolved {
                approved: false,
                by: crate::events::ApprovedBy::Headless,
                call_id,
                ..
            } => {
                if !quiet {
                    line(
                        &mut state,
                        self.red(&format!("  ✗ denied {call_id}: approval needs a terminal")),
                    );
                }
            }
            Event::MissionStarted {
                mission,
                goal,
                max_iterations,
                resumed,
                sandbox,
                ..
            } => {
                let verb = if *resumed { "resumed" } else { "started" };
                let sandbox = if sandbox.is_empty() {
                    String::new()
                } else {
                    format!("; sandbox: {sandbox}")
                };
                line(
                    &mut state,
                    strip_controls(&format!(
                        "◆ mission {mission} {verb}: {goal} (at most {max_iterations} iterations{sandbox})"
                    )),
                );
            }
            Event::PlanUpdated { counts } => {
                if !quiet {
                    let mut text = format!("  plan: {}/{} done", counts.done, counts.total);
                    if counts.in_progress > 0 {
                        text.push_str(&format!(", {} in progress", counts.in_progress));
                    }
                    if counts.failed > 0 {
                        text.push_str(&format!(", {} failed", counts.failed));
                    }
                    line(&mut state, self.dim(&text));
                }
            }
            Event::GateChecked {
                iteration,
                passed,
                open_items,
                sync_issues,
                verify,
                note,
                ..
            } => {
                if *passed {
                    let checks: Vec<&str> = verify.iter().map(|v| v.command.as_str()).collect();
                    let checked = if checks.is_empty() {
                        String::new()
                    } else {
                        format!("; {} passed", checks.join(", "))
                    };
                    line(
                        &mut state,
                        format!("✓ gate passed at iteration {iteration}: plan done{checked}"),
                    );
                } else {
                    let mut reasons = Vec::new();
                    if let Some(note) = note {
                        reasons.push(note.clone());
                    }
                    if !open_items.is_empty() {
                        let ids: Vec<&str> = open_items
                            .iter()
                            .map(|item| item.split(' ').next().unwrap_or(item))
                            .take(6)
                            .collect();
                        reasons.push(format!(
                            "{} item(s) open ({})",
                            open_items.len(),
                            ids.join(", ")
                        ));
                    }
                    if !sync_issues.is_empty() {
                        reasons.push(format!("{} sync issue(s)", sync_issues.len()));
                    }
                    for failed in verify.iter().filter(|v| !v.passed) {
                        let code = failed
                            .exit_code
                            .map_or("no exit code".to_string(), |c| format!("exit {c}"));
                        reasons.push(format!("`{}` failed ({code})", failed.command));
                    }
                    line(
                        &mut state,
                        self.red(&format!(
                            "✗ gate failed at iteration {iteration}: {}",
                            reasons.join("; ")
                        )),
                    );
                    if verbose {
                        for failed in verify.iter().filter(|v| !v.passed) {
                            line(&mut state, self.dim(&failed.output_tail));
                        }
                    }
                }
            }
            Event::MissionFinished {
                mission,
                outcome,
                reason,
                iterations,
                usage,
                cost_usd,
            } => {
                let what = match outcome {
                    crate::events::MissionOutcome::Complete => "complete",
                    crate::events::MissionOutcome::Stopped => "stopped",
                    crate::events::MissionOutcome::Cancelled => "cancelled",
                };
                line(
                    &mut state,
                    strip_controls(&format!(
                        "◆ mission {mission} {what} after {iterations} iteration{}: {reason}",
                        if *iterations == 1 { "" } else { "s" },
                    )),
                );
                let cost = cost_usd.map_or_else(
                    || "unknown (no pricing)".to_string(),
                    |c| format!("${c:.4}"),
                );
                line(
                    &mut state,
                    format!(
                        "  tokens: {}; cost {cost}",
                        usage_text(usage, |n| n.to_string())
                    ),
                );
            }
            Event::TaskQueued {
                task,
                agent,
                description,
                background,
                ..
            } => {
                if !quiet {
                    let mode = if *background { "background" } else { "waits" };
                    line(
                        &mut state,
                        strip_controls(&format!("⇢ {task} → {agent} ({mode}): {description}")),
                    );
                }
            }
            Event::TaskStarted {
                task,
                agent,
                session,
                reused,
                ..
            } => {
                if verbose {
                    let how = if *reused { "reused" } else { "new" };
                    line(
                        &mut state,
                        self.dim(&format!(
                            "  {task} {agent} running in {how} session {session}"
                        )),
                    );
                }
            }
            Event::TaskFinished {
                task,
                agent,
                status,
                error,
                ..
            } => {
                if !quiet {
                    let mut text = format!("⇠ {task} {agent} {}", status.name());
                    if let Some(error) = error {
                        text.push_str(&format!(": {error}"));
                    }
                    line(&mut state, strip_controls(&text));
                }
            }
            Event::Warning { message, .. } => {
                line(&mut state, self.red(&format!("warning: {message}")))
            }
            Event::ToolsChanged {
                source,
                added,
                removed,
                note,
            } => line(
                &mut state,
                strip_controls(&super::tools_line(source, added, removed, note.as_deref())),
            ),
            Event::SessionFinished {
                agent,
                outcome,
                turns,
                usage,
                error,
                ..
            } => {
                let what = match outcome {
                    SessionOutcome::Completed => "done",
                    SessionOutcome::MaxTurns => "stopped at max turns",
                    SessionOutcome::BudgetExceeded => "stopped: token budget spent",
                    SessionOutcome::Repeating => "stopped: repeating itself",
                    SessionOutcome::Failed => "failed",
                    SessionOutcome::Cancelled => "cancelled",
                };
                let mut text = format!(
                    "{} {agent} {what} after {turns} turn{}; tokens {}",
                    if *outcome == SessionOutcome::Completed {
                        "✓"
                    } else {
                        "✗"
                    },
                    if *turns == 1 { "" } else { "s" },
                    usage_text(usage, |n| n.to_string())
                );
                if let Some(error) = error {
                    text.push_str(&format!(": {error}"));
                }
                if !quiet || *outcome != SessionOutcome::Completed {
                    line(&mut state, strip_controls(&text));
                }
            }
            Event::ContextCompacted {
                agent,
                reason,
                tokens_before,
                tokens_after,
                ..
            } => {
                if !quiet {
                    line(
                        &mut state,
                        format!(
                            "{agent}: context compacted ({reason}): {tokens_before} → {tokens_after} tokens"
                        ),
                    );
                }
            }
            Event::BackgroundStarted {
                job,
                label,
                command,
                ..
            } => {
                if !quiet {
                    let name = if label.is_empty() { command } else { label };
                    line(
                        &mut state,
                        self.dim(&format!("  ⇢ {job} in the background: {name}")),
                    );
                }
            }
            Event::BackgroundFinished {
                job,
                status,
                exit_code,
            } => {
                if verbose || (!quiet && status != "done") {
                    let code = exit_code.map_or(String::new(), |c| format!(" (exit {c})"));
                    line(&mut state, self.dim(&format!("  ⇠ {job} {status}{code}")));
                }
            }
            Event::PluginLog {
                plugin,
                level,
                message,
            } => {
                let text = format!("plugin {plugin} {level}: {message}");
                match level.as_str() {
                    "warn" | "error" => line(&mut state, self.red(&text)),
                    "info" if verbose => line(&mut state, self.dim(&text)),
                    _ => {}
                }
            }
            Event::ModelRequest { .. }
            | Event::ModelResponse { .. }
            | Event::Usage { .. }
            | Event::ApprovalRequested { .. }
            | Event::ApprovalResolved { .. }
            | Event::MemoryEvicted { .. }
            | Event::TaskReported { .. }
            | Event::PluginMetric { .. } => {}
            Event::TaskLanded {
                task,
                files,
                conflicts,
                item,
            } => {
                if !quiet {
                    let text = super::landing_line(task, files, conflicts, item.as_deref());
                    line(&mut state, strip_controls(&text));
                }
            }
        }
        let _ = state.out.flush();
    }
}

/// The one argument worth showing for a tool call.
fn summarize(tool: &str, arguments: &Value) -> String {
    let field = |name: &str| match arguments.get(name) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let text = match tool {
        "bash" => field("command"),
        "glob" | "grep" | "ast_search" | "ast_replace" | "sed_replace" => field("pattern"),
        "mgrep" => field("patterns"),
        "http" => {
            let method = field("method");
            let method = if method.is_empty() {
                "GET".into()
            } else {
                method
            };
            format!("{method} {}", field("url"))
        }
        "update_todo" => format!("{} → {}", field("id"), field("status")),
        "add_todo" => {
            let id = field("id");
            if id.is_empty() {
                field("text")
            } else {
                format!("{id}: {}", field("text"))
            }
        }
        "delegate_task" => format!("{}: {}", field("agent"), field("description")),
        "get_task_result" | "cancel_task" => field("task_id"),
        _ => field("path"),
    };
    let shown = crate::text::preview(&crate::text::one_line(&text), 100);
    if text.lines().nth(1).is_some() && !shown.ends_with('…') {
        return format!("{shown}…");
    }
    shown
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::events::MissionOutcome;
    use crate::provider::Usage;

    /// A writer the test reads back after the sink wrote to it.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn printed(events: Vec<Event>) -> String {
        let out = Shared::default();
        let plain = Plain::new(out.clone(), Verbosity::Quiet, false);
        for (i, event) in events.into_iter().enumerate() {
            plain.write(&Envelope {
                seq: i as u64 + 1,
                ts_ms: 1,
                event,
            });
        }
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn session_and_mission_ends_say_tokens_cache_share_and_cost() {
        let usage = Usage {
            input: 6600,
            output: 180,
            cached_input: 2500,
            cache_write: 1000,
            reasoning: 0,
        };
        let finished = |cost_usd| Event::MissionFinished {
            mission: "m-1".into(),
            outcome: MissionOutcome::Complete,
            reason: "all done".into(),
            iterations: 2,
            usage,
            cost_usd,
        };
        let text = printed(vec![
            Event::SessionFinished {
                session: "w1".into(),
                agent: "Worker".into(),
                outcome: SessionOutcome::Failed,
                turns: 1,
                usage,
                error: Some("provider gone".into()),
            },
            finished(Some(0.011)),
            finished(None),
        ]);
        assert_eq!(
            text,
            "\
✗ Worker failed after 1 turn; tokens 6600 in (38% cached, 1000 written), 180 out: provider gone
◆ mission m-1 complete after 2 iterations: all done
  tokens: 6600 in (38% cached, 1000 written), 180 out; cost $0.0110
◆ mission m-1 complete after 2 iterations: all done
  tokens: 6600 in (38% cached, 1000 written), 180 out; cost unknown (no pricing)
"
        );
    }
}

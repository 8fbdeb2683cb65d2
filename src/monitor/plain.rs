//! Plain progress lines for terminals and pipes: the model's text as it
//! streams, one line per tool call, a summary when a session ends.

use std::io::Write;
use std::sync::Mutex;

use serde_json::Value;

use crate::events::{Envelope, Event, EventSink, SessionOutcome};

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
}

struct State<W> {
    out: W,
    /// Whether the cursor sits at the start of a line.
    at_line_start: bool,
}

impl<W: Write + Send> Plain<W> {
    pub fn new(out: W, verbosity: Verbosity, color: bool) -> Self {
        Plain {
            state: Mutex::new(State {
                out,
                at_line_start: true,
            }),
            verbosity,
            color,
        }
    }

    fn dim(&self, text: &str) -> String {
        if self.color {
            format!("\x1b[2m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn red(&self, text: &str) -> String {
        if self.color {
            format!("\x1b[31m{text}\x1b[0m")
        } else {
            text.to_string()
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
        };
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
            Event::TextDelta { text, .. } => {
                let _ = write!(state.out, "{text}");
                if !text.is_empty() {
                    state.at_line_start = text.ends_with('\n');
                }
            }
            Event::ToolCallBegin {
                tool, arguments, ..
            } => {
                if !quiet {
                    line(&mut state, self.dim(&format!("→ {tool} {}", summarize(tool, arguments))));
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
                    line(&mut state, self.red(&format!("  ✗ denied {call_id}: approval needs a terminal")));
                }
            }
            Event::Warning { message, .. } => line(&mut state, self.red(&format!("warning: {message}"))),
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
                    SessionOutcome::Failed => "failed",
                    SessionOutcome::Cancelled => "cancelled",
                };
                let mut text = format!(
                    "{} {agent} {what} after {turns} turn{} ({} tokens in, {} out)",
                    if *outcome == SessionOutcome::Completed { "✓" } else { "✗" },
                    if *turns == 1 { "" } else { "s" },
                    usage.input,
                    usage.output
                );
                if let Some(error) = error {
                    text.push_str(&format!(": {error}"));
                }
                if !quiet || *outcome != SessionOutcome::Completed {
                    line(&mut state, text);
                }
            }
            Event::ModelRequest { .. }
            | Event::ModelResponse { .. }
            | Event::Usage { .. }
            | Event::ApprovalRequested { .. }
            | Event::ApprovalResolved { .. } => {}
        }
        let _ = state.out.flush();
    }
}

/// The one argument worth showing for a tool call.
fn summarize(tool: &str, arguments: &Value) -> String {
    let field = match tool {
        "bash" => "command",
        "glob" | "grep" => "pattern",
        _ => "path",
    };
    let text = match arguments.get(field) {
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
        None => return String::new(),
    };
    let first = text.lines().next().unwrap_or_default();
    let mut shown: String = first.chars().take(100).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    shown
}

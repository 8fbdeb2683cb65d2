//! Token counting with tiktoken's `o200k_base` tables (embedded in the
//! binary, so counting works offline). The tables are parsed on first use,
//! not at startup, so commands that never count (`orch --version`) do not
//! pay for them. For models that are not OpenAI's the count is an estimate;
//! provider-reported usage is preferred wherever a turn has reported one.
//! Whoever counts first, the parse never holds an async worker (see
//! `off_workers`).

use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

use crate::provider::{Message, ToolSpec};

/// Tokens a chat format spends around each message (role, separators).
pub const PER_MESSAGE: u64 = 4;

static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();

fn bpe() -> Option<&'static CoreBPE> {
    off_workers(&BPE, || tiktoken_rs::o200k_base().ok()).as_ref()
}

/// `cell`'s value, made by `init` if it is not there yet. `init` is CPU
/// work that must not hold an async worker: called on a worker of a
/// multi-threaded runtime (a count reached from a session or compaction),
/// the runtime is told first (`block_in_place`) and hands the worker's
/// other tasks to another thread; only the task that needs the value waits.
fn off_workers<T>(cell: &OnceLock<T>, init: impl FnOnce() -> T) -> &T {
    if let Some(value) = cell.get() {
        return value;
    }
    let multi_threaded = tokio::runtime::Handle::try_current()
        .is_ok_and(|handle| handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_threaded {
        tokio::task::block_in_place(|| cell.get_or_init(init))
    } else {
        cell.get_or_init(init)
    }
}

/// Whether the tables are parsed yet (counting is cheap from then on).
pub fn loaded() -> bool {
    BPE.get().is_some()
}

/// Parse the tables now (a few hundred milliseconds of CPU): async callers
/// run this off their workers before the first count.
pub fn load() {
    bpe();
}

/// Tokens in `text`. Falls back to 4 bytes a token if the tables cannot load.
pub fn count(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    match bpe() {
        Some(bpe) => bpe.encode_ordinary(text).len() as u64,
        None => text.len().div_ceil(4) as u64,
    }
}

/// An upper bound on `count(text)` that needs no tables: a byte-level BPE
/// token covers at least one byte. Callers compare it with a limit first and
/// count exactly only when the bound does not settle the question, so runs
/// that stay small never load the tables (tens of MiB).
pub fn at_most(text: &str) -> u64 {
    text.len() as u64
}

/// How request parts are measured: exact token counts, or the byte-length
/// bound that needs no tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// `count`: tiktoken's tables (loaded on first use).
    Tokens,
    /// `at_most`: an upper bound on `Tokens`, free to compute.
    Bound,
}

impl Measure {
    pub fn text(self, text: &str) -> u64 {
        match self {
            Measure::Tokens => count(text),
            Measure::Bound => at_most(text),
        }
    }

    /// One message in a request, overheads included.
    pub fn message(self, message: &Message) -> u64 {
        PER_MESSAGE
            + match message {
                Message::User { text } => self.text(text),
                Message::Assistant { text, tool_calls } => {
                    self.text(text)
                        + tool_calls
                            .iter()
                            .map(|call| {
                                self.text(&call.name) + self.text(&call.arguments) + PER_MESSAGE
                            })
                            .sum::<u64>()
                }
                Message::Tool { name, content, .. } => self.text(name) + self.text(content),
            }
    }

    /// The tool list in a request.
    pub fn tools(self, specs: &[ToolSpec]) -> u64 {
        specs
            .iter()
            .map(|spec| {
                self.text(&spec.name)
                    + self.text(&spec.description)
                    + self.text(&spec.parameters.to_string())
            })
            .sum()
    }
}

/// Tokens one message costs in a request.
pub fn message(message: &Message) -> u64 {
    Measure::Tokens.message(message)
}

/// Tokens the tool list costs in a request.
pub fn tools(specs: &[ToolSpec]) -> u64 {
    Measure::Tokens.tools(specs)
}

/// Per-message measures of a growing conversation, computed once per
/// message. Conversations only grow between compactions and resets, which
/// call `clear`.
#[derive(Debug, Clone)]
pub struct Counts {
    measure: Measure,
    counts: Vec<u64>,
}

impl Default for Counts {
    fn default() -> Self {
        Counts::new(Measure::Tokens)
    }
}

impl Counts {
    pub fn new(measure: Measure) -> Counts {
        Counts {
            measure,
            counts: Vec::new(),
        }
    }

    /// The measure of every message, computing the ones not seen yet.
    pub fn of(&mut self, messages: &[Message]) -> &[u64] {
        if self.counts.len() > messages.len() {
            self.counts.clear();
        }
        for message in &messages[self.counts.len()..] {
            self.counts.push(self.measure.message(message));
        }
        &self.counts
    }

    pub fn total(&mut self, messages: &[Message]) -> u64 {
        self.of(messages).iter().sum()
    }

    pub fn clear(&mut self) {
        self.counts.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_load_on_a_worker_leaves_the_other_tasks_running() {
        static TABLES: OnceLock<bool> = OnceLock::new();
        // One worker: if the load held it, nothing else could run.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let other_ran = runtime.block_on(async {
            tokio::spawn(async {
                *off_workers(&TABLES, || {
                    // The load lasts until another task has run meanwhile
                    // (or gives up, which fails the test).
                    let (ran, wait) = std::sync::mpsc::channel();
                    tokio::spawn(async move { ran.send(()) });
                    wait.recv_timeout(std::time::Duration::from_secs(30))
                        .is_ok()
                })
            })
            .await
            .unwrap()
        });
        assert!(other_ran, "the load held the only worker");
    }

    #[test]
    fn counts_with_the_o200k_tables() {
        assert_eq!(count(""), 0);
        assert_eq!(count("hello world"), 2);
        let user = Message::user("hello world");
        assert_eq!(message(&user), 6);
    }

    #[test]
    fn the_bound_is_never_below_the_count() {
        let call = crate::provider::ToolCall {
            id: "c1".into(),
            name: "read".into(),
            arguments: r#"{"path":"src/lib.rs"}"#.into(),
        };
        let messages = [
            Message::user("Écris une fonction qui additionne deux nombres 😀"),
            Message::Assistant {
                text: "Reading it first.".into(),
                tool_calls: vec![call],
            },
            Message::Tool {
                call_id: "c1".into(),
                name: "read".into(),
                content: "fn add(a: i32, b: i32) -> i32 { a + b }\n".repeat(20),
                is_error: false,
            },
        ];
        for message in &messages {
            assert!(Measure::Bound.message(message) >= Measure::Tokens.message(message));
        }
        let spec = ToolSpec {
            name: "read".into(),
            description: "Read a file".into(),
            parameters: serde_json::json!({"type": "object"}),
        };
        assert!(Measure::Bound.tools(std::slice::from_ref(&spec)) >= tools(&[spec]));
    }

    #[test]
    fn the_cache_counts_new_messages_only_and_resets_on_shrink() {
        let mut counts = Counts::default();
        let mut messages = vec![Message::user("hello world")];
        assert_eq!(counts.total(&messages), 6);
        messages.push(Message::user("hello"));
        assert_eq!(counts.of(&messages).len(), 2);
        messages.truncate(1);
        assert_eq!(counts.total(&messages), 6);
    }
}

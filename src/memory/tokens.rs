//! Token counting with tiktoken's `o200k_base` tables (embedded in the
//! binary, so counting works offline). The tables are parsed on first use,
//! not at startup, so commands that never count (`orch --version`) do not
//! pay for them. For models that are not OpenAI's the count is an estimate;
//! provider-reported usage is preferred wherever a turn has reported one.

use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

use crate::provider::{Message, ToolSpec};

/// Tokens a chat format spends around each message (role, separators).
pub const PER_MESSAGE: u64 = 4;

fn bpe() -> Option<&'static CoreBPE> {
    static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::o200k_base().ok()).as_ref()
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

/// `at_most` for a whole message, overheads included.
pub fn message_at_most(message: &Message) -> u64 {
    PER_MESSAGE
        + match message {
            Message::User { text } => at_most(text),
            Message::Assistant { text, tool_calls } => {
                at_most(text)
                    + tool_calls
                        .iter()
                        .map(|call| at_most(&call.name) + at_most(&call.arguments) + PER_MESSAGE)
                        .sum::<u64>()
            }
            Message::Tool { name, content, .. } => at_most(name) + at_most(content),
        }
}

/// Tokens one message costs in a request.
pub fn message(message: &Message) -> u64 {
    PER_MESSAGE
        + match message {
            Message::User { text } => count(text),
            Message::Assistant { text, tool_calls } => {
                count(text)
                    + tool_calls
                        .iter()
                        .map(|call| count(&call.name) + count(&call.arguments) + PER_MESSAGE)
                        .sum::<u64>()
            }
            Message::Tool { name, content, .. } => count(name) + count(content),
        }
}

/// Tokens the tool list costs in a request.
pub fn tools(specs: &[ToolSpec]) -> u64 {
    specs
        .iter()
        .map(|spec| {
            count(&spec.name) + count(&spec.description) + count(&spec.parameters.to_string())
        })
        .sum()
}

/// Token counts of a growing conversation, computed once per message.
/// Conversations only grow between compactions and resets, which call
/// `clear`.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    counts: Vec<u64>,
}

impl Counts {
    /// The count of every message, computing the ones not seen yet.
    pub fn of(&mut self, messages: &[Message]) -> &[u64] {
        if self.counts.len() > messages.len() {
            self.counts.clear();
        }
        for message in &messages[self.counts.len()..] {
            self.counts.push(self::message(message));
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
    fn counts_with_the_o200k_tables() {
        assert_eq!(count(""), 0);
        assert_eq!(count("hello world"), 2);
        let user = Message::user("hello world");
        assert_eq!(message(&user), 6);
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

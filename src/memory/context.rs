//! Context assembly: what one model request carries, inside the model's
//! window. The system prompt and tool list come first and never change
//! (provider prompt caches key on that prefix); the memory block follows as
//! a leading user message, then the conversation.
//!
//! Why a leading message and not text appended to the latest user turn:
//! the block is rendered in a stable order and only changes when the set of
//! entries shown changes (a `remember`, an eviction), so on most turns the
//! cached prefix runs through it and on into the conversation; appending to
//! the latest turn would instead move with every turn, and putting it last
//! would sit between a tool call's results and the model's answer.

use crate::config::ModelLimits;
use crate::provider::Message;

/// Marks the memory message, so it is recognizable and never confused with
/// the user's own words.
pub const MEMORY_OPEN: &str = "<memory>";

/// The memory message's text around the rendered tiers.
pub fn memory_block(sections: &str) -> String {
    format!(
        "{MEMORY_OPEN}\nNotes kept by `remember` across turns and missions. Cite an entry's id \
         (e.g. [m3]) when you rely on it; `recall` searches them.\n\n{sections}</memory>"
    )
}

/// The messages of one request: the memory block (if any), then the
/// conversation.
pub fn assemble(memory: Option<String>, conversation: &[Message]) -> Vec<Message> {
    let mut messages = Vec::with_capacity(conversation.len() + 1);
    if let Some(block) = memory {
        messages.push(Message::user(block));
    }
    messages.extend_from_slice(conversation);
    messages
}

/// The token room of one request and when to compact.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// `context window - output reserve`: what the prompt may use.
    pub usable: u64,
    /// Compact when the prompt estimate passes this.
    pub threshold: u64,
    /// Compaction aims for this, so it does not fire again on the next turn.
    pub target: u64,
    /// Recent conversation kept verbatim by compaction.
    pub tail: u64,
}

impl Window {
    /// The window for a model with `limits`, a request asking for up to
    /// `max_output` tokens, a `threshold` and `tail_share` in (0, 1].
    pub fn new(limits: ModelLimits, max_output: u32, threshold: f64, tail_share: f64) -> Window {
        let reserve = u64::from(max_output.min(limits.max_output));
        let usable = u64::from(limits.context_window).saturating_sub(reserve);
        let threshold = (usable as f64 * threshold) as u64;
        Window {
            usable,
            threshold,
            target: threshold / 2,
            tail: (usable as f64 * tail_share) as u64,
        }
    }

    /// Whether a prompt of `estimate` tokens should be compacted first.
    pub fn needs_compaction(&self, estimate: u64) -> bool {
        estimate > self.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_reserves_output_and_applies_the_threshold() {
        let limits = ModelLimits {
            context_window: 8192,
            max_output: 2048,
        };
        // The request's own output cap is smaller: that is the reserve.
        let window = Window::new(limits, 1024, 0.8, 0.25);
        assert_eq!(window.usable, 7168);
        assert_eq!(window.threshold, 5734);
        assert_eq!(window.target, 2867);
        assert_eq!(window.tail, 1792);
        assert!(!window.needs_compaction(5734));
        assert!(window.needs_compaction(5735));
        let window = Window::new(limits, 8192, 0.8, 0.25);
        assert_eq!(window.usable, 6144);
    }

    #[test]
    fn the_memory_block_leads_and_the_conversation_follows() {
        let conversation = vec![Message::user("task")];
        assert_eq!(assemble(None, &conversation), conversation);
        let messages = assemble(
            Some(memory_block("## Task memory\n- [m1] x\n")),
            &conversation,
        );
        assert_eq!(messages.len(), 2);
        assert!(messages[0].text().starts_with(MEMORY_OPEN));
        assert!(messages[0].text().ends_with("</memory>"));
        assert_eq!(messages[1], conversation[0]);
    }
}

//! Context assembly: what one model request carries, inside the model's
//! window. The system prompt and tool list come first and never change
//! within a session (provider prompt caches key on that prefix); then the
//! conversation, in which the memory block is a user message of its own.
//!
//! Where the block sits: a session's requests grow by appending (each is
//! the previous one plus new messages), so the provider's cache reads all
//! that was sent before. The block is therefore part of the conversation
//! and changes only where the conversation is rewritten or grows anyway:
//! when a run starts and the block differs from the one the conversation
//! last showed, the new one is added there, at the end, invalidating
//! nothing cached; a compaction, which rewrites the conversation, drops the
//! older blocks and leads with the current one. Between those points
//! `remember` and decay change what the next block will show, not what
//! this request carries.

use crate::config::ModelLimits;
use crate::provider::Message;

/// Marks the memory message, so it is recognizable and never confused with
/// the user's own words.
pub const MEMORY_OPEN: &str = "<memory>";

/// How every memory message begins: the mark and the first words, so a
/// user's own message that starts with the tag is not taken for one.
const MEMORY_HEAD: &str = "<memory>\nNotes kept by `remember` across turns and missions.";

/// The memory message's text around the rendered tiers.
pub fn memory_block(sections: &str) -> String {
    format!(
        "{MEMORY_HEAD} Cite an entry's id (e.g. [m3]) when you rely on it; `recall` searches \
         them.\n\n{sections}</memory>"
    )
}

/// Whether `message` is a memory block.
pub fn is_block(message: &Message) -> bool {
    matches!(message, Message::User { text } if text.starts_with(MEMORY_HEAD))
}

/// The block the conversation showed last, if any.
pub fn last_block(conversation: &[Message]) -> Option<&str> {
    conversation
        .iter()
        .rev()
        .find(|message| is_block(message))
        .map(Message::text)
}

/// A rewritten conversation's memory: the older blocks go and `block`, the
/// current one, leads.
pub fn lead_with(conversation: &mut Vec<Message>, block: Option<String>) {
    conversation.retain(|message| !is_block(message));
    if let Some(block) = block {
        conversation.insert(0, Message::user(block));
    }
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
    fn the_last_block_is_found_and_a_rewrite_leads_with_the_current_one() {
        let old = memory_block("## Task memory\n- [m1] x\n");
        let newer = memory_block("## Task memory\n- [m1] x\n- [m2] y\n");
        let mut conversation = vec![
            Message::user(&old),
            Message::user("task"),
            Message::Assistant {
                text: "done".into(),
                tool_calls: Vec::new(),
            },
            Message::user(&newer),
            Message::user("next task"),
        ];
        assert!(is_block(&conversation[0]) && !is_block(&conversation[1]));
        // A user's own words that start with the tag are not a block.
        assert!(!is_block(&Message::user(
            "<memory> tags in templates/*.html must be renamed"
        )));
        assert_eq!(last_block(&conversation), Some(newer.as_str()));
        assert_eq!(last_block(&conversation[..3]), Some(old.as_str()));
        assert_eq!(last_block(&conversation[1..3]), None);
        let current = memory_block("## Task memory\n- [m2] y\n");
        lead_with(&mut conversation, Some(current.clone()));
        assert_eq!(conversation.len(), 4);
        assert_eq!(conversation[0].text(), current);
        assert_eq!(conversation[1].text(), "task");
        assert_eq!(conversation[3].text(), "next task");
        lead_with(&mut conversation, None);
        assert_eq!(conversation.len(), 3);
        assert_eq!(last_block(&conversation), None);
    }
}

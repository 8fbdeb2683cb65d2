//! The compaction planner: which messages of a conversation to prune (old
//! tool outputs, cleared first) and which to summarize, so the estimate
//! gets under a target. Pure; the session carries the plan out.
//!
//! Invariants (tested): an assistant message's tool calls and their results
//! are never separated (a summarized range and the kept tail both start at
//! a non-tool message); the leading memory block, the first message after
//! it (the task) and the recent tail are kept verbatim; nothing is planned
//! when the estimate already fits.

use std::ops::Range;

use crate::provider::Message;

/// What an old tool output is replaced with.
pub const PRUNED: &str =
    "[old tool output cleared to save context; run the tool again if you need it]";

/// What to do to a conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Tool messages whose content is replaced by `PRUNED`, oldest first.
    pub prune: Vec<usize>,
    /// Messages replaced by one summary message, when pruning is not enough.
    pub summarize: Option<Range<usize>>,
    /// The estimate after pruning (before any summary).
    pub after_prune: u64,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.prune.is_empty() && self.summarize.is_none()
    }
}

/// Plan to bring `counts` (tokens per message, beside `messages`) to at
/// most `target` tokens, keeping at least the last `tail` tokens verbatim.
/// `pruned_tokens` is what one pruned tool message costs.
pub fn plan(
    messages: &[Message],
    counts: &[u64],
    target: u64,
    tail: u64,
    pruned_tokens: u64,
) -> Plan {
    let total: u64 = counts.iter().sum();
    if total <= target || messages.is_empty() {
        return Plan {
            after_prune: total,
            ..Plan::default()
        };
    }
    let blocks = messages
        .iter()
        .take_while(|message| super::context::is_block(message))
        .count();
    let head = blocks + usize::from(matches!(messages.get(blocks), Some(Message::User { .. })));
    let tail_start = tail_start(messages, counts, tail).max(head);
    let mut estimate = total;
    let mut prune = Vec::new();
    for index in head..tail_start {
        if estimate <= target {
            break;
        }
        if let Message::Tool { content, .. } = &messages[index]
            && content != PRUNED
            && counts[index] > pruned_tokens
        {
            estimate -= counts[index] - pruned_tokens;
            prune.push(index);
        }
    }
    let summarize = (estimate > target && tail_start > head).then_some(head..tail_start);
    Plan {
        prune,
        summarize,
        after_prune: estimate,
    }
}

/// Where the kept tail starts: as many recent messages as fit in `tail`
/// tokens (at least the last one), moved back to a message that is not a
/// tool result so no call is separated from its results.
fn tail_start(messages: &[Message], counts: &[u64], tail: u64) -> usize {
    let mut start = messages.len();
    let mut used = 0;
    while start > 0 && (start == messages.len() || used + counts[start - 1] <= tail) {
        used += counts[start - 1];
        start -= 1;
    }
    while start > 0 && matches!(messages[start], Message::Tool { .. }) {
        start -= 1;
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ToolCall;

    fn user(text: &str) -> Message {
        Message::user(text)
    }

    fn call(id: &str) -> Message {
        Message::Assistant {
            text: String::new(),
            tool_calls: vec![ToolCall {
                id: id.into(),
                name: "read".into(),
                arguments: "{}".into(),
            }],
        }
    }

    fn result(id: &str) -> Message {
        Message::Tool {
            call_id: id.into(),
            name: "read".into(),
            content: "x".repeat(100),
            is_error: false,
        }
    }

    fn answer() -> Message {
        Message::Assistant {
            text: "done".into(),
            tool_calls: vec![],
        }
    }

    /// task, then n rounds of (call, result), then an answer.
    fn conversation(rounds: usize) -> (Vec<Message>, Vec<u64>) {
        let mut messages = vec![user("task")];
        let mut counts = vec![10];
        for i in 0..rounds {
            messages.push(call(&format!("c{i}")));
            counts.push(10);
            messages.push(result(&format!("c{i}")));
            counts.push(100);
        }
        messages.push(answer());
        counts.push(10);
        (messages, counts)
    }

    fn check_invariants(messages: &[Message], plan: &Plan) {
        if let Some(range) = &plan.summarize {
            assert!(range.start >= 1, "the task is kept");
            assert!(!matches!(messages[range.start], Message::Tool { .. }));
            if range.end < messages.len() {
                assert!(!matches!(messages[range.end], Message::Tool { .. }));
            }
        }
        for &i in &plan.prune {
            assert!(matches!(messages[i], Message::Tool { .. }));
        }
    }

    #[test]
    fn nothing_when_it_fits() {
        let (messages, counts) = conversation(3);
        let plan = plan(&messages, &counts, 10_000, 100, 12);
        assert!(plan.is_empty());
        assert_eq!(plan.after_prune, 350);
    }

    #[test]
    fn prunes_old_tool_outputs_first_and_keeps_the_tail() {
        // 10 + 5 * 110 + 10 = 570 tokens.
        let (messages, counts) = conversation(5);
        let plan = plan(&messages, &counts, 400, 130, 12);
        // The tail (last call, its result, the answer) is untouched; the
        // two oldest results are enough: 570 - 2 * 88 = 394.
        assert_eq!(plan.prune, vec![2, 4]);
        assert_eq!(plan.summarize, None);
        assert_eq!(plan.after_prune, 394);
        check_invariants(&messages, &plan);
    }

    #[test]
    fn summarizes_when_pruning_is_not_enough() {
        let (messages, counts) = conversation(5);
        let plan = plan(&messages, &counts, 150, 130, 12);
        assert_eq!(plan.prune, vec![2, 4, 6, 8]);
        // The tail starts at the last call (index 9), never at its result.
        assert_eq!(plan.summarize, Some(1..9));
        check_invariants(&messages, &plan);
    }

    #[test]
    fn a_leading_memory_block_and_the_task_are_both_kept() {
        let (mut messages, mut counts) = conversation(10);
        messages.insert(0, user(&crate::memory::context::memory_block("- [m1] x\n")));
        counts.insert(0, 30);
        let plan = plan(&messages, &counts, 100, 30, 5);
        let range = plan.summarize.expect("summarized");
        assert_eq!(range.start, 2, "the block and the task stay: {range:?}");
        assert!(plan.prune.iter().all(|&index| index >= 2));
    }

    #[test]
    fn never_splits_a_call_from_its_results() {
        // A tail budget that would start inside a (call, result, result) group.
        let mut messages = vec![user("task"), call("a")];
        let mut counts = vec![10, 10];
        for _ in 0..3 {
            messages.push(result("a"));
            counts.push(100);
        }
        messages.push(answer());
        counts.push(10);
        for tail in 0..400 {
            let plan = plan(&messages, &counts, 50, tail, 12);
            check_invariants(&messages, &plan);
        }
    }

    #[test]
    fn random_conversations_keep_the_invariants() {
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..300 {
            let (messages, counts) = conversation(rng.usize(0..12));
            let target = rng.u64(0..1500);
            let tail = rng.u64(0..600);
            let plan = plan(&messages, &counts, target, tail, 12);
            check_invariants(&messages, &plan);
            // The last message is always kept verbatim.
            if let Some(range) = &plan.summarize {
                assert!(range.end < messages.len());
            }
            assert!(!plan.prune.contains(&(messages.len() - 1)));
        }
    }
}

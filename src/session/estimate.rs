//! The prompt estimate of a session's next request: its fixed prefix (system
//! prompt and tool list) and the conversation (memory block included), measured
//! either as exact tokens or as the byte bound that needs no token tables.
//! The provider's own count of the last request, plus what was added since,
//! is trusted when it is larger.

use crate::memory::tokens::{Counts, Measure};
use crate::provider::{Message, ToolSpec};

/// What a session remembers between estimates: per-message token counts
/// (computed once per message), the prefix under each measure (it never
/// changes within a session), and the provider's last count.
#[derive(Debug)]
pub struct Estimator {
    counts: Counts,
    bounds: Counts,
    prefix_tokens: Option<u64>,
    prefix_bound: Option<u64>,
    /// The provider-reported prompt size of the last request, and how many
    /// conversation messages that request carried.
    reported: Option<(u64, usize)>,
}

/// The part of every request that is the same from turn to turn; measured
/// once.
pub struct Prefix<'a> {
    pub system: &'a str,
    pub tools: &'a [ToolSpec],
}

impl Default for Estimator {
    fn default() -> Self {
        Estimator {
            counts: Counts::new(Measure::Tokens),
            bounds: Counts::new(Measure::Bound),
            prefix_tokens: None,
            prefix_bound: None,
            reported: None,
        }
    }
}

impl Estimator {
    /// The estimate of a request with `messages` as its conversation.
    pub fn prompt(&mut self, measure: Measure, prefix: &Prefix<'_>, messages: &[Message]) -> u64 {
        let slot = match measure {
            Measure::Tokens => &mut self.prefix_tokens,
            Measure::Bound => &mut self.prefix_bound,
        };
        let fixed =
            *slot.get_or_insert_with(|| measure.text(prefix.system) + measure.tools(prefix.tools));
        let per_message: &[u64] = match measure {
            Measure::Tokens => self.counts.of(messages),
            Measure::Bound => self.bounds.of(messages),
        };
        let counted = fixed + per_message.iter().sum::<u64>();
        let reported = self
            .reported
            .filter(|&(_, sent)| sent <= per_message.len())
            .map(|(input, sent)| input + per_message[sent..].iter().sum::<u64>());
        counted.max(reported.unwrap_or(0))
    }

    /// Token counts of each message (for the compaction planner).
    pub fn counts(&mut self, messages: &[Message]) -> Vec<u64> {
        self.counts.of(messages).to_vec()
    }

    /// The prefix's tokens, once a token estimate has counted it.
    pub fn prefix_tokens(&self) -> u64 {
        self.prefix_tokens.unwrap_or(0)
    }

    /// The tool list changed (a compaction rebuilt it): measure the prefix
    /// again.
    pub fn forget_prefix(&mut self) {
        self.prefix_tokens = None;
        self.prefix_bound = None;
    }

    /// The provider counted `input` prompt tokens for a request that
    /// carried `sent` conversation messages.
    pub fn reported(&mut self, input: u64, sent: usize) {
        self.reported = Some((input, sent));
    }

    /// The conversation was rewritten (compaction) or started over (reset):
    /// per-message counts and the provider's count no longer apply.
    pub fn forget_conversation(&mut self) {
        self.counts.clear();
        self.bounds.clear();
        self.reported = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::tokens;

    fn conversation() -> Vec<Message> {
        vec![
            Message::user("Add a function that adds two numbers."),
            Message::Assistant {
                text: "Done.".into(),
                tool_calls: Vec::new(),
            },
        ]
    }

    #[test]
    fn the_bound_is_an_upper_bound_of_the_count() {
        let tools = [ToolSpec {
            name: "read".into(),
            description: "Read a file".into(),
            parameters: serde_json::json!({"type": "object"}),
        }];
        let prefix = Prefix {
            system: "You are a Worker.",
            tools: &tools,
        };
        let messages = conversation();
        let mut estimator = Estimator::default();
        let exact = estimator.prompt(Measure::Tokens, &prefix, &messages);
        let bound = estimator.prompt(Measure::Bound, &prefix, &messages);
        assert!(bound >= exact, "{bound} < {exact}");
        let expected = tokens::count(prefix.system)
            + tokens::tools(&tools)
            + messages.iter().map(tokens::message).sum::<u64>();
        assert_eq!(exact, expected);
        assert_eq!(
            estimator.prefix_tokens(),
            tokens::count(prefix.system) + tokens::tools(&tools)
        );
    }

    #[test]
    fn a_larger_provider_count_wins_and_is_forgotten_with_the_conversation() {
        let prefix = Prefix {
            system: "s",
            tools: &[],
        };
        let mut messages = conversation();
        let mut estimator = Estimator::default();
        let counted = estimator.prompt(Measure::Tokens, &prefix, &messages);
        // The provider saw the first message only and counted far more.
        estimator.reported(10_000, 1);
        let second = tokens::message(&messages[1]);
        assert_eq!(
            estimator.prompt(Measure::Tokens, &prefix, &messages),
            10_000 + second
        );
        // A smaller provider count does not lower the estimate.
        estimator.reported(1, 2);
        assert_eq!(
            estimator.prompt(Measure::Tokens, &prefix, &messages),
            counted
        );
        // A count for more messages than the conversation now has is ignored.
        estimator.reported(10_000, 2);
        messages.truncate(1);
        estimator.forget_conversation();
        estimator.reported(10_000, 5);
        assert!(estimator.prompt(Measure::Tokens, &prefix, &messages) < 10_000);
    }
}

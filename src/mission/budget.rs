//! The mission's token and dollar budgets. They are checked on the emitting
//! task as each model turn's usage is emitted (a quick sink of the bus), so a
//! spent budget has stopped the mission before any session can start another
//! turn; the state file, folded on the recorder thread, may still be behind.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use super::guards::StopSignal;
use super::state::{MissionState, cost_of};
use crate::events::{Envelope, Event, EventSink, MissionOutcome};
use crate::models::Prices;
use crate::provider::Usage;

pub struct Budget {
    tokens: Option<u64>,
    usd: Option<f64>,
    stop: Arc<StopSignal>,
    pricing: Prices,
    spent: Mutex<Spent>,
}

/// What the mission has used so far, as much of the state as the budgets
/// need: its tokens, and per model what its sessions used.
struct Spent {
    tokens: u64,
    model_of: HashMap<String, String>,
    by_model: BTreeMap<String, Usage>,
}

impl Budget {
    /// A guard for the budgets that are set (`None` when neither is),
    /// counting from what `so_far` (a resumed mission's state) already used.
    pub fn new(
        tokens: Option<u64>,
        usd: Option<f64>,
        stop: Arc<StopSignal>,
        pricing: Prices,
        so_far: &MissionState,
    ) -> Option<Budget> {
        if tokens.is_none() && usd.is_none() {
            return None;
        }
        let spent = Spent {
            tokens: so_far.usage.total(),
            model_of: so_far
                .sessions
                .iter()
                .map(|(id, session)| (id.clone(), session.model.clone()))
                .collect(),
            by_model: so_far.usage_by_model.clone(),
        };
        let budget = Budget {
            tokens,
            usd,
            stop,
            pricing,
            spent: Mutex::new(spent),
        };
        // A resumed mission that had spent a budget makes no turn more.
        budget.check(&budget.spent.lock().expect("budget lock"));
        Some(budget)
    }

    /// Pull the stop when what was spent is past a budget.
    fn check(&self, spent: &Spent) {
        if let Some(limit) = self.tokens
            && spent.tokens > limit
        {
            self.stop.trigger(
                MissionOutcome::Stopped,
                format!(
                    "token budget spent: {} of {limit} tokens used",
                    spent.tokens
                ),
            );
        }
        if let (Some(limit), Some(cost)) = (self.usd, cost_of(&spent.by_model, &self.pricing))
            && cost > limit
        {
            self.stop.trigger(
                MissionOutcome::Stopped,
                format!("dollar budget spent: ${cost:.4} of ${limit:.4}"),
            );
        }
    }
}

impl EventSink for Budget {
    fn write(&self, envelope: &Envelope) {
        let mut spent = self.spent.lock().expect("budget lock");
        match &envelope.event {
            Event::SessionStarted { session, model, .. } => {
                spent.model_of.insert(session.clone(), model.clone());
            }
            Event::Usage { session, usage, .. } => {
                spent.tokens += usage.total();
                if let Some(model) = spent.model_of.get(session).cloned() {
                    spent.by_model.entry(model).or_default().add(usage);
                }
                self.check(&spent);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mission::state::cost_tests::{pricing, usage};

    fn emit(sink: &dyn EventSink, event: Event) {
        sink.write(&Envelope {
            seq: 1,
            ts_ms: 1,
            event,
        });
    }

    fn started(session: &str, model: &str) -> Event {
        Event::SessionStarted {
            session: session.into(),
            agent: "Commander".into(),
            provider: "openai".into(),
            model: model.into(),
        }
    }

    fn used(session: &str, usage: Usage) -> Event {
        Event::Usage {
            session: session.into(),
            agent: "Commander".into(),
            usage,
        }
    }

    fn state() -> MissionState {
        MissionState::new("m-1", "g", 5, "commander-1")
    }

    #[test]
    fn no_budget_no_guard() {
        let stop = Arc::new(StopSignal::new());
        assert!(Budget::new(None, None, stop, pricing("big"), &state()).is_none());
    }

    #[test]
    fn a_dollar_budget_counts_cache_reads_and_writes_at_their_prices() {
        let stop = Arc::new(StopSignal::new());
        let budget = Budget::new(None, Some(0.05), stop.clone(), pricing("big"), &state()).unwrap();
        emit(&budget, started("c1", "big"));
        // 40 000 tokens read from the cache: $0.04 (at the input price it
        // would be $0.40, past the budget).
        emit(&budget, used("c1", usage(40_000, 40_000, 0)));
        assert!(stop.reason().is_none());
        // 900 tokens written to it: $0.01125 more, past $0.05 (at the input
        // price, $0.009 more would still be within it). The stop is pulled
        // by the emit itself.
        emit(&budget, used("c1", usage(900, 0, 900)));
        let (outcome, reason) = stop.reason().expect("the budget stopped the mission");
        assert_eq!(outcome, MissionOutcome::Stopped);
        assert!(stop.token().is_cancelled());
        assert!(
            reason.starts_with("dollar budget spent: $0.051"),
            "{reason}"
        );
        assert!(reason.ends_with(" of $0.0500"), "{reason}");
    }

    #[test]
    fn a_resumed_mission_counts_from_what_it_used_before() {
        let mut before = state();
        for event in [started("c1", "big"), used("c1", usage(90, 0, 0))] {
            before.apply(&Envelope {
                seq: 1,
                ts_ms: 1,
                event,
            });
        }
        let stop = Arc::new(StopSignal::new());
        let budget = Budget::new(Some(100), None, stop.clone(), pricing("big"), &before).unwrap();
        // The resumed Commander's session goes on without a new start.
        emit(&budget, used("c1", usage(10, 0, 0)));
        assert!(stop.reason().is_none(), "100 of 100 is not past the budget");
        emit(&budget, used("c1", usage(1, 0, 0)));
        let (_, reason) = stop.reason().expect("past the budget");
        assert_eq!(reason, "token budget spent: 101 of 100 tokens used");

        // Dollars, too: a model whose price is known only from the old state.
        let stop = Arc::new(StopSignal::new());
        let budget =
            Budget::new(None, Some(0.000_9), stop.clone(), pricing("big"), &before).unwrap();
        emit(&budget, used("c1", usage(10, 0, 0)));
        let (_, reason) = stop.reason().expect("past the dollar budget");
        assert!(
            reason.starts_with("dollar budget spent: $0.0010"),
            "{reason}"
        );
    }
}

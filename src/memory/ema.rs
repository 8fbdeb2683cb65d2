//! The relevance rule of memory entries: a score kept as an exponential
//! moving average (EMA) of use signals, decayed at every step, with
//! eviction below a threshold. Pure functions; the constants below are the
//! defaults `memory.ema_alpha` and `memory.evict_below` start from.
//!
//! The rule, per step of the entry's tier (its pace: a model turn of the
//! session for the Task tier, a mission iteration for the Mission tier, a
//! mission for the Project tier; the System tier takes no steps):
//!
//! ```text
//! signal = the strongest use signal the entry got since the last step (0 if none)
//! score  = ALPHA * signal + (1 - ALPHA) * score
//! evict when !pinned && score < EVICT_BELOW
//! ```
//!
//! An unused entry therefore decays geometrically: with `ALPHA = 0.3` and a
//! fresh entry at `INITIAL_SCORE = 1.0`, its score after `n` idle steps is
//! `0.7^n`, which crosses `EVICT_BELOW = 0.1` at the 7th (`0.7^6 ≈ 0.118`,
//! `0.7^7 ≈ 0.082`). One use per step keeps an entry at its level; a signal
//! of 1.0 lifts a decayed entry by 30 % of the distance to 1.

/// Weight of a step's signal in the new score (the EMA's α).
pub const ALPHA: f64 = 0.3;
/// Unpinned entries scoring below this after an update are evicted.
pub const EVICT_BELOW: f64 = 0.1;
/// A new entry's score: just remembered counts as just used.
pub const INITIAL_SCORE: f64 = 1.0;

/// How an entry was used; the strongest use in a step is its signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// `recall` returned it.
    Recalled,
    /// The model's reply cites it (its id, or most of its key words).
    Cited,
    /// A tool call touched a file the entry names.
    FileTouched,
}

impl Use {
    /// The signal strength in `[0, 1]`.
    pub fn signal(self) -> f64 {
        match self {
            Use::Recalled | Use::Cited => 1.0,
            // Touching a file is weaker evidence than the model using the entry.
            Use::FileTouched => 0.6,
        }
    }
}

/// The EMA constants in force.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    pub alpha: f64,
    pub evict_below: f64,
}

impl Default for Rule {
    fn default() -> Self {
        Rule {
            alpha: ALPHA,
            evict_below: EVICT_BELOW,
        }
    }
}

impl Rule {
    /// One step's update of a score given the step's signal.
    pub fn update(&self, score: f64, signal: f64) -> f64 {
        self.alpha * signal + (1.0 - self.alpha) * score
    }

    /// Whether an entry with this score and pin flag is evicted.
    pub fn evicts(&self, score: f64, pinned: bool) -> bool {
        !pinned && score < self.evict_below
    }
}

/// The part of an entry the rule reads and writes.
pub trait Scored {
    fn score(&self) -> f64;
    fn set_score(&mut self, score: f64);
    /// The strongest signal since the last step; cleared by `step`.
    fn take_signal(&mut self) -> f64;
    fn pinned(&self) -> bool;
}

/// One step for `entries`: update every score with its signal,
/// then remove and return the evicted entries (in their original order).
pub fn step<T: Scored>(rule: &Rule, entries: &mut Vec<T>) -> Vec<T> {
    for entry in entries.iter_mut() {
        let signal = entry.take_signal();
        let score = rule.update(entry.score(), signal);
        entry.set_score(score);
    }
    let (kept, evicted): (Vec<T>, Vec<T>) = std::mem::take(entries)
        .into_iter()
        .partition(|entry| !rule.evicts(entry.score(), entry.pinned()));
    *entries = kept;
    evicted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct E {
        name: &'static str,
        score: f64,
        signal: f64,
        pinned: bool,
    }

    impl Scored for E {
        fn score(&self) -> f64 {
            self.score
        }
        fn set_score(&mut self, score: f64) {
            self.score = score;
        }
        fn take_signal(&mut self) -> f64 {
            std::mem::take(&mut self.signal)
        }
        fn pinned(&self) -> bool {
            self.pinned
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn update_is_the_documented_ema() {
        let rule = Rule::default();
        let table = [
            // (score, signal, expected)
            (1.0, 0.0, 0.7),
            (0.7, 0.0, 0.49),
            (0.49, 1.0, 0.643),
            (0.5, 0.6, 0.53),
            (0.0, 1.0, 0.3),
            (1.0, 1.0, 1.0),
        ];
        for (score, signal, expected) in table {
            let got = rule.update(score, signal);
            assert!(
                close(got, expected),
                "{score} {signal}: {got} != {expected}"
            );
        }
    }

    #[test]
    fn an_unused_entry_is_evicted_at_the_seventh_iteration() {
        let rule = Rule::default();
        let mut entries = vec![E {
            name: "idle",
            score: INITIAL_SCORE,
            signal: 0.0,
            pinned: false,
        }];
        let expected = [0.7, 0.49, 0.343, 0.2401, 0.16807, 0.117649];
        for want in expected {
            assert!(step(&rule, &mut entries).is_empty());
            assert!(
                close(entries[0].score, want),
                "{} != {want}",
                entries[0].score
            );
        }
        let evicted = step(&rule, &mut entries);
        assert_eq!(evicted.len(), 1);
        assert!(close(evicted[0].score, 0.0823543));
        assert!(entries.is_empty());
    }

    #[test]
    fn use_keeps_an_entry_and_pinned_entries_never_go() {
        let rule = Rule::default();
        let mut entries = vec![
            E {
                name: "used",
                score: 0.2,
                signal: 0.0,
                pinned: false,
            },
            E {
                name: "core",
                score: 0.0,
                signal: 0.0,
                pinned: true,
            },
            E {
                name: "stale",
                score: 0.12,
                signal: 0.0,
                pinned: false,
            },
        ];
        entries[0].signal = Use::Recalled.signal();
        let evicted = step(&rule, &mut entries);
        assert_eq!(
            evicted.iter().map(|e| e.name).collect::<Vec<_>>(),
            ["stale"]
        );
        assert!(close(evicted[0].score, 0.084));
        assert_eq!(
            entries.iter().map(|e| e.name).collect::<Vec<_>>(),
            ["used", "core"]
        );
        assert!(close(entries[0].score, 0.44));
        assert!(close(entries[1].score, 0.0));
        // The signal was consumed: the next iteration decays.
        step(&rule, &mut entries);
        assert!(close(entries[0].score, 0.308));
    }

    #[test]
    fn file_touch_is_a_weaker_signal() {
        assert_eq!(Use::FileTouched.signal(), 0.6);
        assert_eq!(Use::Cited.signal(), 1.0);
        let rule = Rule {
            alpha: 0.5,
            evict_below: 0.25,
        };
        assert!(close(rule.update(0.0, Use::FileTouched.signal()), 0.3));
        assert!(rule.evicts(0.2, false));
        assert!(!rule.evicts(0.2, true));
        assert!(!rule.evicts(0.25, false));
    }
}

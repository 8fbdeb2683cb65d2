//! The budget fitter: which memory entries of one tier go into a request
//! within the tier's token budget. Pinned entries first, then by score,
//! then newest; the chosen entries keep their original order so the
//! rendered block stays byte-identical while the set does not change.

/// What the fitter knows of an entry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub tokens: u64,
    pub score: f64,
    pub pinned: bool,
}

/// Indices of the candidates kept within `budget`, in their original
/// order. Greedy by priority; an entry that does not fit is skipped and
/// smaller, lower-priority ones may still fit.
pub fn fit(candidates: &[Candidate], budget: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&candidates[a], &candidates[b]);
        y.pinned
            .cmp(&x.pinned)
            .then(y.score.total_cmp(&x.score))
            .then(b.cmp(&a))
    });
    let mut used = 0;
    let mut kept = Vec::new();
    for index in order {
        let tokens = candidates[index].tokens;
        if used + tokens <= budget {
            used += tokens;
            kept.push(index);
        }
    }
    kept.sort_unstable();
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(tokens: u64, score: f64, pinned: bool) -> Candidate {
        Candidate {
            tokens,
            score,
            pinned,
        }
    }

    #[test]
    fn fits_by_priority_and_keeps_order() {
        let table: &[(&[Candidate], u64, &[usize])] = &[
            (&[], 100, &[]),
            (
                &[c(50, 0.1, false), c(50, 0.9, false), c(50, 0.5, false)],
                100,
                &[1, 2],
            ),
            (
                &[c(50, 0.1, true), c(50, 0.9, false), c(50, 0.5, false)],
                100,
                &[0, 1],
            ),
            // Equal scores: the newest wins.
            (&[c(60, 0.5, false), c(60, 0.5, false)], 100, &[1]),
            // A large high scorer is skipped; smaller ones still fit.
            (
                &[c(120, 1.0, false), c(30, 0.2, false), c(30, 0.1, false)],
                100,
                &[1, 2],
            ),
            (&[c(10, 1.0, false)], 0, &[]),
        ];
        for (candidates, budget, expected) in table {
            assert_eq!(
                fit(candidates, *budget),
                *expected,
                "{candidates:?} in {budget}"
            );
        }
    }

    #[test]
    fn never_exceeds_the_budget() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..500 {
            let candidates: Vec<Candidate> = (0..rng.usize(0..12))
                .map(|_| c(rng.u64(1..80), rng.f64(), rng.bool()))
                .collect();
            let budget = rng.u64(0..300);
            let kept = fit(&candidates, budget);
            let used: u64 = kept.iter().map(|&i| candidates[i].tokens).sum();
            assert!(used <= budget);
            assert!(kept.windows(2).all(|w| w[0] < w[1]));
        }
    }
}

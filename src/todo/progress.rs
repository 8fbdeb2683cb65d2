//! How far the plan is: counts per status at every depth, and the items
//! that stand between the mission and its completion gate.
//!
//! The rule the gate applies: the plan is complete only when it has at least
//! one item and every item, at every depth, is `[x]`. An in-progress `[/]`
//! or failed `[-]` item blocks exactly like a pending one.

use std::fmt;

use serde::Serialize;

use super::{Plan, Status};

/// Items per status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub pending: usize,
    pub in_progress: usize,
    pub done: usize,
    pub failed: usize,
}

impl Counts {
    pub fn total(&self) -> usize {
        self.pending + self.in_progress + self.done + self.failed
    }

    fn count(&mut self, status: Status) {
        match status {
            Status::Pending => self.pending += 1,
            Status::InProgress => self.in_progress += 1,
            Status::Done => self.done += 1,
            Status::Failed => self.failed += 1,
        }
    }
}

/// `3/7 done, 1 in progress, 1 failed` (zero counts other than done are
/// left out; pending is what remains).
impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} done", self.done, self.total())?;
        if self.in_progress > 0 {
            write!(f, ", {} in progress", self.in_progress)?;
        }
        if self.failed > 0 {
            write!(f, ", {} failed", self.failed)?;
        }
        Ok(())
    }
}

/// An item that is not done yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blocker {
    pub id: Option<String>,
    pub text: String,
    pub status: Status,
    /// 1-based line number in the file.
    pub line: usize,
    pub depth: usize,
}

/// `T1.2 (in progress): text`, or `line 7 (pending): text` without an ID.
impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.id {
            Some(id) => write!(f, "{id} ({}): {}", self.status, self.text),
            None => write!(f, "line {} ({}): {}", self.line, self.status, self.text),
        }
    }
}

/// The plan's progress, as the completion gate and `read_todo` see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// All items, at every depth.
    pub counts: Counts,
    /// `by_depth[d]` counts the items nested `d` levels deep.
    pub by_depth: Vec<Counts>,
    /// Every item that is not `[x]`, in file order.
    pub blockers: Vec<Blocker>,
}

impl Progress {
    /// True when there is at least one item and every item is done.
    pub fn is_complete(&self) -> bool {
        self.counts.total() > 0 && self.blockers.is_empty()
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.counts.fmt(f)
    }
}

impl Plan {
    pub fn progress(&self) -> Progress {
        let mut counts = Counts::default();
        let mut by_depth: Vec<Counts> = Vec::new();
        let mut blockers = Vec::new();
        for item in self.items() {
            counts.count(item.status);
            if by_depth.len() <= item.depth {
                by_depth.resize(item.depth + 1, Counts::default());
            }
            by_depth[item.depth].count(item.status);
            if item.status != Status::Done {
                blockers.push(Blocker {
                    id: item.id.clone(),
                    text: item.text.clone(),
                    status: item.status,
                    line: item.line,
                    depth: item.depth,
                });
            }
        }
        Progress {
            counts,
            by_depth,
            blockers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_needs_every_item_done_at_every_depth() {
        let cases = [
            ("empty file", "", false, "0/0 done"),
            (
                "prose only",
                "# Mission: m\nsome text\n- plain bullet\n",
                false,
                "0/0 done",
            ),
            ("one done", "- [x] T1: a\n", true, "1/1 done"),
            (
                "capital X",
                "- [X] T1: a\n  * [x] T1.1: b\n",
                true,
                "2/2 done",
            ),
            // The reference bug: an indented pending item, `[/]` and `[-]`
            // were invisible to the gate.
            (
                "indented pending",
                "- [x] S1.1.1: a\n  - [ ] sub\n",
                false,
                "1/2 done",
            ),
            (
                "in progress blocks",
                "- [x] T1: a\n- [/] T2: b\n",
                false,
                "1/2 done, 1 in progress",
            ),
            (
                "failed blocks",
                "- [x] T1: a\n      - [-] T1.1: b\n",
                false,
                "1/2 done, 1 failed",
            ),
            (
                "fenced example does not count",
                "- [x] T1: a\n```\n- [ ] T2: example\n```\n",
                true,
                "1/1 done",
            ),
        ];
        for (name, text, complete, summary) in cases {
            let progress = Plan::parse(text).progress();
            assert_eq!(progress.is_complete(), complete, "{name}");
            assert_eq!(progress.to_string(), summary, "{name}");
        }
    }

    #[test]
    fn counts_per_depth_and_blockers_in_file_order() {
        let text = concat!(
            "## T1: group\n",
            "- [x] T1.1: done\n",
            "  - [/] T1.1.1: working\n",
            "    - [-] T1.1.1.1: failed\n",
            "      - [ ] deep pending without id\n",
            "- [ ] T1.2: pending\n",
            "  - [x] T1.2.1: done\n",
        );
        let progress = Plan::parse(text).progress();
        assert_eq!(
            progress.counts,
            Counts {
                pending: 2,
                in_progress: 1,
                done: 2,
                failed: 1
            }
        );
        let per_depth: Vec<(usize, usize)> = progress
            .by_depth
            .iter()
            .map(|c| (c.done, c.total()))
            .collect();
        assert_eq!(per_depth, vec![(1, 2), (1, 2), (0, 1), (0, 1)]);
        let blockers: Vec<String> = progress.blockers.iter().map(ToString::to_string).collect();
        assert_eq!(
            blockers,
            vec![
                "T1.1.1 (in progress): working",
                "T1.1.1.1 (failed): failed",
                "line 5 (pending): deep pending without id",
                "T1.2 (pending): pending",
            ]
        );
        assert_eq!(progress.to_string(), "2/6 done, 1 in progress, 1 failed");
    }
}

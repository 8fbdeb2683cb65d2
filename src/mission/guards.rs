//! Mission guards that need state across iterations: the no-progress
//! breaker and the workspace fingerprint it compares, and the stop signal
//! every guard (and a cancel) pulls.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use tokio_util::sync::CancellationToken;

use crate::events::MissionOutcome;

/// Stops the mission once, keeping the first reason given.
#[derive(Default)]
pub struct StopSignal {
    token: CancellationToken,
    reason: Mutex<Option<(MissionOutcome, String)>>,
}

impl StopSignal {
    pub fn new() -> Self {
        Self::default()
    }

    /// The token sessions and tasks watch.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    pub fn trigger(&self, outcome: MissionOutcome, reason: impl Into<String>) {
        let mut slot = self.reason.lock().expect("stop reason lock");
        if slot.is_none() {
            *slot = Some((outcome, reason.into()));
        }
        drop(slot);
        self.token.cancel();
    }

    pub fn reason(&self) -> Option<(MissionOutcome, String)> {
        self.reason.lock().expect("stop reason lock").clone()
    }
}

/// Counts iterations in a row that changed neither the plan nor the workspace.
#[derive(Debug)]
pub struct ProgressGuard {
    limit: u32,
    last: Option<u64>,
    unchanged: u32,
}

impl ProgressGuard {
    pub fn new(limit: u32) -> Self {
        ProgressGuard {
            limit,
            last: None,
            unchanged: 0,
        }
    }

    /// Record this iteration's fingerprint; true when the mission has now
    /// gone `limit` iterations without any change.
    pub fn observe(&mut self, fingerprint: u64) -> bool {
        if self.last == Some(fingerprint) {
            self.unchanged += 1;
        } else {
            self.unchanged = 0;
            self.last = Some(fingerprint);
        }
        self.unchanged >= self.limit
    }

    pub fn unchanged(&self) -> u32 {
        self.unchanged
    }
}

/// A hash of the plan text and of every workspace file's path, size and
/// modification time, walked by `walk::workspace` (the project's ignore
/// rules; `.git`, `.opencode` and dependency folders left out, so
/// transcripts, journals and installs do not count as progress). Blocking:
/// callers run it off the async workers.
pub fn fingerprint(root: &Path, plan_text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    plan_text.hash(&mut hasher);
    let mut entries: Vec<(String, u64, u128)> = crate::walk::workspace(root)
        .build()
        .flatten()
        .filter(|entry| entry.file_type().is_some_and(|t| t.is_file()))
        .filter_map(|entry| {
            let meta = entry.metadata().ok()?;
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            Some((
                entry.path().to_string_lossy().into_owned(),
                meta.len(),
                modified,
            ))
        })
        .collect();
    entries.sort();
    entries.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_progress_fires_after_limit_unchanged_iterations() {
        let mut guard = ProgressGuard::new(3);
        // baseline, then three unchanged iterations
        assert!(!guard.observe(1));
        assert!(!guard.observe(1));
        assert!(!guard.observe(1));
        assert!(guard.observe(1));
        // any change resets the count
        let mut guard = ProgressGuard::new(3);
        for fp in [1, 1, 1, 2, 2, 2] {
            assert!(!guard.observe(fp));
        }
        assert!(guard.observe(2));
    }

    #[test]
    fn fingerprint_sees_files_and_plan_but_not_opencode() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "a").unwrap();
        let first = fingerprint(dir.path(), "plan");
        assert_eq!(first, fingerprint(dir.path(), "plan"));
        assert_ne!(first, fingerprint(dir.path(), "plan changed"));
        std::fs::create_dir_all(dir.path().join(".opencode/sessions")).unwrap();
        std::fs::write(dir.path().join(".opencode/sessions/x.jsonl"), "{}").unwrap();
        assert_eq!(first, fingerprint(dir.path(), "plan"));
        std::fs::write(dir.path().join("b.txt"), "b").unwrap();
        assert_ne!(first, fingerprint(dir.path(), "plan"));
    }

    #[test]
    fn the_first_stop_reason_wins() {
        let stop = StopSignal::new();
        assert!(stop.reason().is_none());
        stop.trigger(MissionOutcome::Stopped, "token budget spent");
        stop.trigger(MissionOutcome::Cancelled, "ctrl-c");
        assert!(stop.token().is_cancelled());
        assert_eq!(
            stop.reason(),
            Some((MissionOutcome::Stopped, "token budget spent".into()))
        );
    }
}

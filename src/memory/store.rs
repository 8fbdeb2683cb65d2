//! The tier files: `.opencode/memory/project.json` (System and Project
//! tiers) and a mission's `memory.json` (its Mission tier), read whole and
//! replaced whole (`files::replace`), so a crash leaves the old file or the
//! new one. The user edits them with `orch memory` (`edit`); a process that
//! holds the tiers merges such an edit before it writes (`merge`), so a
//! running mission never undoes what the user forgot or pinned.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Entry, MemoryError};
use crate::config::TierBudgets;
use crate::files::{self, Durability};

/// `<root>/.opencode/memory/project.json`.
pub fn project_file(root: &Path) -> PathBuf {
    root.join(".opencode").join("memory").join("project.json")
}

/// The Mission tier's file in a mission's directory.
pub fn mission_file(mission_dir: &Path) -> PathBuf {
    mission_dir.join("memory.json")
}

/// How a tier file looks on disk.
#[derive(Debug, Default, Deserialize)]
struct TierFile {
    #[serde(default)]
    entries: Vec<Entry>,
}

#[derive(Serialize)]
struct TierFileOut<'a> {
    entries: &'a [Entry],
}

/// The entries of `file`, in file order; a missing file has none.
pub fn read(file: &Path) -> Result<Vec<Entry>, MemoryError> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(file_error(file, err.to_string())),
    };
    serde_json::from_str::<TierFile>(&text)
        .map(|parsed| parsed.entries)
        .map_err(|err| {
            file_error(
                file,
                format!(
                    "expected orch's memory JSON, {{\"entries\": [{{\"id\", \"text\", \"source\", \"tier\", \"score\", …}}]}}: {err}"
                ),
            )
        })
}

/// Replace `file` with `entries` (synced: agents and the user wrote them).
pub fn write(file: &Path, entries: &[Entry]) -> Result<(), MemoryError> {
    let bytes = serde_json::to_vec_pretty(&TierFileOut { entries })
        .map_err(|err| file_error(file, err.to_string()))?;
    files::replace(file, &bytes, Durability::Synced)
        .map_err(|err| file_error(file, err.to_string()))
}

fn file_error(file: &Path, message: String) -> MemoryError {
    MemoryError::File {
        path: file.display().to_string(),
        message,
    }
}

/// Bring edits made to a tier file by someone else into the entries a
/// process holds, before the process replaces the file. `known` are the ids
/// the file held when this process last read or wrote it; `disk` is what
/// it holds now.
///
/// - an id the file lost since was forgotten by the user: it goes;
/// - an id the file gained was written by someone else: it comes in (ids
///   are numbered on from it);
/// - an entry in both keeps the file's pin flag (only the user changes a
///   pin after an entry is written) and this process's score and signal;
/// - an id this process evicted stays gone.
/// - an id both hold for different entries (two processes numbered on
///   from the same file) is the other's: this process's entry takes the
///   next free id.
pub(super) fn merge(entries: &mut Vec<Entry>, known: &BTreeSet<String>, disk: Vec<Entry>) {
    let number = |id: &str| id.strip_prefix('m').and_then(|n| n.parse::<u64>().ok());
    let mut top = entries
        .iter()
        .chain(&disk)
        .filter_map(|e| number(&e.id))
        .max()
        .unwrap_or(0);
    for entry in entries.iter_mut() {
        let taken = disk.iter().any(|other| {
            other.id == entry.id
                && (other.text != entry.text || other.created_ms != entry.created_ms)
        });
        if taken {
            top += 1;
            entry.id = format!("m{top}");
        }
    }
    let pins: BTreeMap<&str, bool> = disk.iter().map(|e| (e.id.as_str(), e.pinned)).collect();
    entries.retain_mut(|entry| match pins.get(entry.id.as_str()) {
        Some(&pinned) => {
            entry.pinned = pinned;
            true
        }
        None => !known.contains(&entry.id),
    });
    let held: BTreeSet<String> = entries.iter().map(|e| e.id.clone()).collect();
    entries.extend(
        disk.into_iter()
            .filter(|e| !known.contains(&e.id) && !held.contains(&e.id)),
    );
}

/// Run `f` holding the advisory lock of tier file `file` (`<file>.lock`
/// beside it): every read, merge and replace of one file, by any process
/// or thread (each opens the lock afresh, and `flock` excludes separate
/// opens), goes one at a time, so neither an engine nor `orch memory`
/// undoes the other. Taken before the memory's own locks, never after.
pub(super) fn locked<T>(
    file: &Path,
    f: impl FnOnce() -> Result<T, MemoryError>,
) -> Result<T, MemoryError> {
    use std::os::fd::AsRawFd;
    let mut name = file.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|err| file_error(file, err.to_string()))?;
    }
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|err| file_error(&path, err.to_string()))?;
    // SAFETY: flock on a descriptor this function owns; it is released when
    // `lock` is closed.
    while unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(file_error(&path, format!("cannot lock: {err}")));
        }
    }
    let result = f();
    drop(lock);
    result
}

/// What the user does to one entry with `orch memory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    Forget,
    Pin,
    Unpin,
}

/// Apply `edit` to entry `id` of `file` and replace the file; the entry as
/// it was (forget) or is now. `Ok(None)` when the file has no such entry,
/// and then nothing is written. Pinning is refused, as `remember` refuses
/// it, when the tier's pinned entries would pass its budget; a file that
/// cannot be read is an error and stays as it is.
pub fn edit(
    file: &Path,
    id: &str,
    edit: Edit,
    budgets: &TierBudgets,
) -> Result<Option<Entry>, MemoryError> {
    locked(file, || edit_unlocked(file, id, edit, budgets))
}

fn edit_unlocked(
    file: &Path,
    id: &str,
    edit: Edit,
    budgets: &TierBudgets,
) -> Result<Option<Entry>, MemoryError> {
    let mut entries = read(file)?;
    let Some(index) = entries.iter().position(|e| e.id == id) else {
        return Ok(None);
    };
    let entry = match edit {
        Edit::Forget => entries.remove(index),
        Edit::Unpin => {
            entries[index].pinned = false;
            entries[index].clone()
        }
        Edit::Pin => {
            let entry = &entries[index];
            if !entry.pinned {
                let tier = entry.tier;
                let pinned = entries.iter().filter(|e| e.pinned && e.tier == tier);
                super::pinned_fit(pinned, entry, super::tier_budget(budgets, tier)).map_err(
                    |message| MemoryError::Refused {
                        message: format!("pin {id}: {message}"),
                    },
                )?;
            }
            entries[index].pinned = true;
            entries[index].clone()
        }
    };
    write(file, &entries)?;
    Ok(Some(entry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::Tier;

    fn entry(id: &str, pinned: bool) -> Entry {
        Entry {
            id: id.into(),
            text: format!("note {id}"),
            source: "Worker".into(),
            tier: Tier::Project,
            pinned,
            score: 0.5,
            created_ms: 1,
            mission: None,
            signal: 0.0,
        }
    }

    fn ids(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.id.as_str()).collect()
    }

    #[test]
    fn merging_keeps_the_users_forget_and_pin_and_others_entries() {
        let known: BTreeSet<String> = ["m1", "m2", "m3", "m4"].map(String::from).into();
        // This process: m1..m3 as loaded (m3 rescored), m4 evicted, m5 new.
        let mut held = vec![entry("m1", false), entry("m2", false), entry("m3", true)];
        held[2].score = 0.9;
        held.push(entry("m5", false));
        // The file now: m1 pinned by the user, m2 forgotten, m3 unpinned,
        // m4 still there (this process evicted it), m6 from another process.
        let disk = vec![
            entry("m1", true),
            entry("m3", false),
            entry("m4", false),
            entry("m6", false),
        ];
        merge(&mut held, &known, disk);
        assert_eq!(ids(&held), ["m1", "m3", "m5", "m6"]);
        assert!(held[0].pinned);
        assert!(!held[1].pinned);
        assert_eq!(held[1].score, 0.9);
    }

    #[test]
    fn edits_forget_pin_and_unpin_and_leave_a_file_without_the_id_alone() {
        let dir = tempfile::tempdir().unwrap();
        let file = project_file(dir.path());
        write(&file, &[entry("m1", false), entry("m2", true)]).unwrap();
        let budgets = TierBudgets::default();
        let pinned = edit(&file, "m1", Edit::Pin, &budgets).unwrap().unwrap();
        assert!(pinned.pinned);
        let unpinned = edit(&file, "m2", Edit::Unpin, &budgets).unwrap().unwrap();
        assert!(!unpinned.pinned);
        let now = read(&file).unwrap();
        assert_eq!(
            now.iter()
                .map(|e| (e.id.as_str(), e.pinned))
                .collect::<Vec<_>>(),
            [("m1", true), ("m2", false)]
        );
        assert_eq!(
            edit(&file, "m2", Edit::Forget, &budgets)
                .unwrap()
                .unwrap()
                .id,
            "m2"
        );
        assert_eq!(ids(&read(&file).unwrap()), ["m1"]);
        let before = std::fs::read(&file).unwrap();
        assert!(edit(&file, "m9", Edit::Forget, &budgets).unwrap().is_none());
        assert_eq!(std::fs::read(&file).unwrap(), before);
    }

    #[test]
    fn pinning_past_the_tiers_budget_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let file = project_file(dir.path());
        let mut long = entry("m2", false);
        long.text = "word ".repeat(30);
        write(&file, &[entry("m1", true), long]).unwrap();
        let before = std::fs::read(&file).unwrap();
        let budgets = TierBudgets {
            project: 30,
            ..TierBudgets::default()
        };
        let err = edit(&file, "m2", Edit::Pin, &budgets).unwrap_err();
        assert!(matches!(err, MemoryError::Refused { .. }));
        assert!(
            err.to_string()
                .starts_with("pin m2: pinned entries of the project tier would take"),
            "{err}"
        );
        assert_eq!(std::fs::read(&file).unwrap(), before);
    }

    #[test]
    fn a_corrupt_file_is_named_with_what_was_expected_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let file = project_file(dir.path());
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "{\"entries\": [oops").unwrap();
        let err = edit(&file, "m1", Edit::Forget, &TierBudgets::default()).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(&file.display().to_string()), "{message}");
        assert!(message.contains("expected orch's memory JSON"), "{message}");
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "{\"entries\": [oops"
        );
    }

    #[test]
    fn an_old_file_without_origin_or_signal_loads() {
        let dir = tempfile::tempdir().unwrap();
        let file = project_file(dir.path());
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(
            &file,
            r#"{"entries":[{"id":"m1","text":"use axum","source":"Commander","tier":"project","score":0.7,"created_ms":5}]}"#,
        )
        .unwrap();
        let entries = read(&file).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].mission, None);
        assert_eq!(entries[0].signal, 0.0);
        assert!(!entries[0].pinned);
    }
}

//! Where the engine keeps what under a project: the folders of `.opencode/`
//! that belong to orch (missions, task worktrees and their build folders)
//! and which paths agents' file tools may not write. Plain path rules, so
//! every module can ask them without depending on the ones that use them.

use std::path::{Path, PathBuf};

/// The folder of every mission's records.
pub fn missions(root: &Path) -> PathBuf {
    root.join(".opencode").join("missions")
}

/// The folder of one mission's records (state, journal, memory, conflicts).
pub fn mission(root: &Path, id: &str) -> PathBuf {
    missions(root).join(id)
}

/// The folder of `mission`'s task worktrees (and their build folders).
pub fn worktrees(root: &Path, mission: &str) -> PathBuf {
    root.join(".opencode").join("worktrees").join(mission)
}

/// Where processes working in `root` build (`CARGO_TARGET_DIR`), when
/// `root` is a task's worktree (`.opencode/worktrees/<mission>/<task>`):
/// `<task>.target` beside it, outside what its snapshots see.
pub fn build_dir(root: &Path) -> Option<PathBuf> {
    let mission = root.parent()?;
    let worktrees = mission.parent()?;
    let engine = worktrees.parent()?;
    if worktrees.file_name()? != "worktrees" || engine.file_name()? != ".opencode" {
        return None;
    }
    let mut name = root.file_name()?.to_os_string();
    name.push(".target");
    Some(mission.join(name))
}

/// Why `inner` (relative to the project root) is not for agents to write,
/// or `None` when it is.
pub fn engine_owned(inner: &Path) -> Option<&'static str> {
    let mut parts = inner.components().map(|part| part.as_os_str());
    // Case-insensitive, for file systems that are.
    let top = parts.next()?.to_str()?;
    if top.eq_ignore_ascii_case(".git") {
        return Some("`.git/` is git's own; agents' file tools cannot write it");
    }
    if !top.eq_ignore_ascii_case(".opencode") {
        return None;
    }
    let next = parts.next();
    Some(match next.and_then(|name| name.to_str()) {
        Some("todo.md") if parts.next().is_none() => {
            "the plan belongs to orch; change it with update_todo (status) or add_todo (new items)"
        }
        Some("sync-issues.md") if parts.next().is_none() => {
            "sync issues belong to orch; the Reviewer records and resolves them with sync_issues"
        }
        _ => {
            "`.opencode/` belongs to orch (its config, the plan, records and caches); agents cannot write it"
        }
    })
}

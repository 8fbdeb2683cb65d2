//! `orch diff` and `orch undo`: what the last mission changed in the
//! project, against the checkpoint taken when it started.

use anyhow::anyhow;

use super::{Cli, exit};
use crate::mission::state;
use crate::worktree::MissionChange;

/// The last mission's change, with its id.
fn last_change(cli: &Cli) -> anyhow::Result<Option<(String, MissionChange)>> {
    let root = super::project_root(cli.dir.as_deref())?;
    let Some(id) = state::latest_mission(&root) else {
        println!("no mission has run in {}", root.display());
        return Ok(None);
    };
    // With worktrees the mission knows the files its tasks landed: only
    // those are its doing (the user may have edited others meanwhile).
    let only = state::read_state(&root, &id).ok().and_then(|saved| {
        saved
            .tasks
            .values()
            .any(|task| task.worktree.is_some())
            .then(|| {
                saved
                    .tasks
                    .values()
                    .flat_map(|task| task.landed.iter().cloned())
                    .collect()
            })
    });
    let change = MissionChange::of(&root, &id, only).map_err(|err| anyhow!(err))?;
    Ok(Some((id, change)))
}

pub fn diff(cli: &Cli, stat: bool) -> anyhow::Result<u8> {
    let Some((id, change)) = last_change(cli)? else {
        return Ok(exit::COMPLETE);
    };
    if cli.json {
        let files = change.files().map_err(|err| anyhow!(err))?;
        println!(
            "{}",
            serde_json::json!({"mission": id, "ended": change.ended, "files": files})
        );
        return Ok(exit::COMPLETE);
    }
    let text = change.diff(stat).map_err(|err| anyhow!(err))?;
    let until = if change.ended {
        "its end"
    } else {
        "now (it has not ended)"
    };
    eprintln!("mission {id}: its start to {until}");
    if text.is_empty() {
        eprintln!("no file changed");
    }
    // On a terminal, nothing in a file can steer it; piped, the patch
    // stays byte for byte (`orch diff | git apply -R`).
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        print!("{}", crate::text::printable(&text));
    } else {
        print!("{text}");
    }
    Ok(exit::COMPLETE)
}

pub fn undo(cli: &Cli) -> anyhow::Result<u8> {
    let root = super::project_root(cli.dir.as_deref())?;
    if let Some(running) = super::status::running_mission(&root) {
        eprintln!(
            "mission {} is running; cancel it first (orch cancel)",
            running.id
        );
        return Ok(exit::UNFINISHED);
    }
    let Some((id, change)) = last_change(cli)? else {
        return Ok(exit::COMPLETE);
    };
    match change.undo() {
        Ok(files) if files.is_empty() => {
            println!("mission {id} changed no file");
            Ok(exit::COMPLETE)
        }
        Ok(files) => {
            println!(
                "restored {} file(s) as they were before mission {id}: {}",
                files.len(),
                files.join(", ")
            );
            Ok(exit::COMPLETE)
        }
        Err(why) => {
            eprintln!("orch undo: {why}");
            Ok(exit::UNFINISHED)
        }
    }
}

/// The marker of a mission the user abandoned: `orch resume` refuses it.
pub(super) fn abandoned(root: &std::path::Path, id: &str) -> bool {
    state::MissionPaths::new(root, id)
        .dir
        .join("abandoned")
        .exists()
}

/// Delete what the last unfinished mission left: its worktrees, with the
/// work in them that never landed, and its refs.
pub fn abandon(cli: &Cli) -> anyhow::Result<u8> {
    let root = super::project_root(cli.dir.as_deref())?;
    if let Some(running) = super::status::running_mission(&root) {
        eprintln!(
            "mission {} is running; cancel it first (orch cancel)",
            running.id
        );
        return Ok(exit::UNFINISHED);
    }
    let Some(id) = state::latest_mission(&root) else {
        println!("no mission has run in {}", root.display());
        return Ok(exit::COMPLETE);
    };
    let tasks = abandon_mission(&root, &id)?;
    if tasks.is_empty() {
        println!("abandoned mission {id}; it had no unmerged work");
    } else {
        println!(
            "abandoned mission {id}; deleted the unmerged work of {}",
            tasks.join(", ")
        );
    }
    Ok(exit::COMPLETE)
}

/// Abandon mission `id`: its worktrees and refs go, and it is marked so
/// `orch resume` leaves it alone. The tasks whose work was deleted.
pub(super) fn abandon_mission(root: &std::path::Path, id: &str) -> anyhow::Result<Vec<String>> {
    let tasks = crate::worktree::abandon(root, id).map_err(|err| anyhow!(err))?;
    let dir = state::MissionPaths::new(root, id).dir;
    if dir.is_dir() {
        crate::files::replace(
            &dir.join("abandoned"),
            b"abandoned by `orch abandon`\n",
            crate::files::Durability::Synced,
        )?;
    }
    Ok(tasks)
}

//! `orch memory`: what the project remembers, for its user — every stored
//! entry (the System and Project tiers, the last mission's Mission tier)
//! with its tier, score, origin and pin — and the user's changes to one
//! entry (forget, pin, unpin), written the way the engine writes memory.
//! A running mission takes such a change in before it next writes.

use std::path::{Path, PathBuf};

use anyhow::bail;

use super::{Cli, MemoryCommand, exit};
use crate::memory::store::{self, Edit};
use crate::memory::{Entry, Tier};
use crate::mission::state::{self, MissionPaths};
use crate::text;

/// Characters of an entry's text on its line.
const TEXT_CHARS: usize = 72;

pub fn command(cli: &Cli, command: Option<&MemoryCommand>) -> anyhow::Result<u8> {
    let root = super::project_root(cli.dir.as_deref())?;
    match command {
        None | Some(MemoryCommand::List) => list(cli, &root),
        Some(MemoryCommand::Add { text, tier, pin }) => add(cli, &root, text, tier, *pin),
        Some(MemoryCommand::Forget { id }) => edit(cli, &root, id, Edit::Forget),
        Some(MemoryCommand::Pin { id }) => edit(cli, &root, id, Edit::Pin),
        Some(MemoryCommand::Unpin { id }) => edit(cli, &root, id, Edit::Unpin),
    }
}

/// The files holding stored entries: the project's, then the last
/// mission's (when a mission has run).
fn files(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![store::project_file(root)];
    if let Some(id) = state::latest_mission(root) {
        files.push(store::mission_file(&MissionPaths::new(root, &id).dir));
    }
    files
}

/// `orch memory [list]`: a table, or the entries as JSON with `--json`.
fn list(cli: &Cli, root: &Path) -> anyhow::Result<u8> {
    let mut entries = Vec::new();
    for file in files(root) {
        entries.extend(store::read(&file)?);
    }
    // Tier order, each tier in the order it was written (a stable sort).
    entries.sort_by_key(|entry| entry.tier);
    if cli.json {
        println!("{}", serde_json::to_string(&entries)?);
    } else if entries.is_empty() {
        println!("no memory entries in {}", root.display());
    } else {
        print!("{}", table(&entries));
    }
    Ok(exit::COMPLETE)
}

/// One line per entry under a header, columns padded to their widest
/// cell; the text last, on one line and shortened. Text that agents wrote
/// is shown without control characters.
fn table(entries: &[Entry]) -> String {
    let rows: Vec<[String; 7]> = entries
        .iter()
        .map(|entry| {
            [
                text::one_line(&entry.id),
                entry.tier.name().to_string(),
                format!("{:.2}", entry.score),
                if entry.pinned { "yes" } else { "-" }.to_string(),
                text::one_line(&entry.source),
                entry
                    .mission
                    .as_deref()
                    .map_or("-".to_string(), text::one_line),
                shown(&entry.text),
            ]
        })
        .collect();
    let header = ["ID", "TIER", "SCORE", "PINNED", "AGENT", "MISSION", "TEXT"].map(String::from);
    let mut widths = [0usize; 7];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            if index + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[index]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// An entry's text as the list and the messages show it: one line,
/// control characters out, shortened.
fn shown(entry_text: &str) -> String {
    text::preview(
        &text::one_line(&text::squash_spaces(entry_text)),
        TEXT_CHARS,
    )
}

/// `orch memory add TEXT [--tier system|project] [--pin]`: an entry the
/// user wrote, through the same path (budgets, lock, merge) as `remember`.
fn add(cli: &Cli, root: &Path, text: &str, tier: &str, pin: bool) -> anyhow::Result<u8> {
    let tier = match Tier::parse(tier.trim()) {
        Some(tier @ (Tier::System | Tier::Project)) => tier,
        _ => bail!(
            "--tier {:?}: expected `project` or `system` (mission and task memory belong to running agents)",
            text::one_line(tier)
        ),
    };
    let config = crate::config::load(root, &cli.overrides())?.memory;
    let memory = crate::memory::Memory::open(
        root,
        crate::config::MemoryConfig {
            enabled: true,
            ..config
        },
        Default::default(),
    )?;
    for file in files(root) {
        memory.number_after(&store::read(&file)?);
    }
    let entry = memory
        .remember("user", "user", text, Some(tier), pin)
        .map_err(|message| anyhow::anyhow!(message))?;
    println!(
        "remembered {} ({} tier{}): {}",
        entry.id,
        tier.name(),
        if pin { ", pinned" } else { "" },
        shown(&entry.text)
    );
    Ok(exit::COMPLETE)
}

/// `orch memory forget|pin|unpin ID`: the first file holding `id` is
/// changed and replaced; an id no file holds is an error naming them.
fn edit(cli: &Cli, root: &Path, id: &str, edit: Edit) -> anyhow::Result<u8> {
    let id = id.trim();
    // Pinning is held to the tier budgets the engine uses.
    let budgets = match edit {
        Edit::Pin => crate::config::load(root, &cli.overrides())?.memory.budgets,
        Edit::Forget | Edit::Unpin => Default::default(),
    };
    let files = files(root);
    for file in &files {
        if let Some(entry) = store::edit(file, id, edit, &budgets)? {
            let done = match edit {
                Edit::Forget => "forgot",
                Edit::Pin => "pinned",
                Edit::Unpin => "unpinned",
            };
            println!(
                "{done} {id} ({} tier): {}",
                entry.tier.name(),
                shown(&entry.text)
            );
            return Ok(exit::COMPLETE);
        }
    }
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    bail!(
        "no memory entry {:?} in {} (`orch memory` lists the ids)",
        text::one_line(id),
        names.join(" or ")
    )
}

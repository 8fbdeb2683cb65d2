//! Frontends that fold the event stream: the live terminal view (`view`
//! folds, `render` draws, `live` runs it on the bus or a followed journal),
//! plain progress lines, JSONL, the metrics fold, and the desktop
//! notification when a mission ends. They observe; they never influence a
//! session or a mission.

pub mod follow;
pub mod jsonl;
pub mod live;
pub mod metrics;
pub mod notify;
pub mod plain;
pub mod render;
pub mod terminal;
pub mod view;

/// The one line that says how the live tools changed (`tools_changed`).
pub fn tools_line(
    source: &str,
    added: &[String],
    removed: &[String],
    note: Option<&str>,
) -> String {
    let mut parts = Vec::new();
    if !added.is_empty() {
        parts.push(format!("added {}", added.join(", ")));
    }
    if !removed.is_empty() {
        parts.push(format!("removed {}", removed.join(", ")));
    }
    if let Some(note) = note {
        parts.push(crate::text::preview(&crate::text::squash_spaces(note), 120));
    }
    format!("tools ({source}): {}", parts.join("; "))
}

/// The one line that says what became of a task's change (`task_landed`).
pub fn landing_line(
    task: &str,
    files: &[String],
    conflicts: &[String],
    item: Option<&str>,
) -> String {
    if conflicts.is_empty() {
        format!("⇣ {task} landed: {}", files.join(", "))
    } else {
        format!(
            "⇣ {task} conflicts in {}; nothing landed ({})",
            conflicts.join(", "),
            item.map_or("no plan item".to_string(), |item| format!(
                "plan item {item}"
            ))
        )
    }
}

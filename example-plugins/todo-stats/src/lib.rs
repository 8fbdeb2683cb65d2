//! todo-stats: a tool plugin. `todo_stats` reads the plan through the host and
//! answers how many items are done, in progress and open, and which are next.

use orch_plugin_sdk::{Manifest, Plugin, ToolSpec, export_plugin, host};

struct TodoStats;

impl Plugin for TodoStats {
    fn manifest() -> Manifest {
        Manifest::new("todo-stats", "0.1.0")
            .description("Plan progress at a glance")
            .tool(ToolSpec::new(
                "todo_stats",
                "Count the plan's items in .opencode/todo.md by state and list the next open ones.",
                r#"{"type":"object","properties":{"next":{"type":"integer","minimum":0,"description":"how many open items to list (default 3)"}}}"#,
            ))
    }

    fn call_tool(name: &str, args_json: &str) -> Result<String, String> {
        if name != "todo_stats" {
            return Err(format!("todo-stats has no tool named {name:?}"));
        }
        let next = number_field(args_json, "next").unwrap_or(3);
        let todo = host::read_todo()?;
        Ok(summarize(&todo, next))
    }
}

/// Reads `"field": N` from a flat JSON object without a JSON parser (keeps
/// this plugin tiny).
fn number_field(json: &str, field: &str) -> Option<usize> {
    let key = format!("\"{field}\"");
    let rest = json.split_once(&key)?.1.trim_start().strip_prefix(':')?;
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn summarize(todo: &str, next: usize) -> String {
    let (mut done, mut doing, mut open) = (0, 0, Vec::new());
    for line in todo.lines().map(str::trim_start) {
        if let Some(rest) = line.strip_prefix("- [x]") {
            let _ = rest;
            done += 1;
        } else if line.starts_with("- [~]") || line.starts_with("- [-]") {
            doing += 1;
        } else if let Some(rest) = line.strip_prefix("- [ ]") {
            open.push(rest.trim().to_string());
        }
    }
    let total = done + doing + open.len();
    let mut out = format!(
        "{done}/{total} done, {doing} in progress, {} open",
        open.len()
    );
    for item in open.iter().take(next) {
        out.push_str("\nnext: ");
        out.push_str(item);
    }
    out
}

export_plugin!(TodoStats);

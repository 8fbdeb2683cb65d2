//! diff: a unified diff of two files in the project, two texts, or a file
//! and a text (to preview a change before writing it). Reads files under
//! `/project`, so comparing files needs a `read` grant.

use std::time::Duration;

use orch_plugin_sdk::{Manifest, Plugin, ToolSpec, export_plugin, project};
use serde_json::Value;
use similar::{ChangeTag, TextDiff};

struct Diff;

/// The largest file compared.
const MAX_FILE: u64 = 4 << 20;
/// Long diffs fall back to a coarser (still correct) result after this.
const DIFF_DEADLINE: Duration = Duration::from_secs(5);

const PARAMETERS: &str = r#"{
  "type": "object",
  "properties": {
    "a_path": {"type": "string", "description": "the old side: a file relative to the project root"},
    "a_text": {"type": "string", "description": "the old side as text (instead of a_path)"},
    "b_path": {"type": "string", "description": "the new side: a file relative to the project root"},
    "b_text": {"type": "string", "description": "the new side as text (instead of b_path)"},
    "context": {"type": "integer", "minimum": 0, "description": "unchanged lines around each change (default 3)"}
  }
}"#;

impl Plugin for Diff {
    fn manifest() -> Manifest {
        Manifest::new("diff", "0.1.0")
            .description("Unified diffs of files and texts")
            .capability("project-read")
            .tool(ToolSpec::new(
                "diff",
                "Show a unified diff between two files in the project, two texts, or a file and a text. Give a_path or a_text for the old side and b_path or b_text for the new side.",
                PARAMETERS,
            ))
    }

    fn call_tool(name: &str, args_json: &str) -> Result<String, String> {
        if name != "diff" {
            return Err(format!("diff has no tool named {name:?}"));
        }
        let args: Value =
            serde_json::from_str(args_json).map_err(|err| format!("arguments: {err}"))?;
        let (a_name, a) = side(&args, "a")?;
        let (b_name, b) = side(&args, "b")?;
        let context = args["context"].as_u64().unwrap_or(3) as usize;
        Ok(unified(&a_name, &a, &b_name, &b, context))
    }
}

/// One side's label and text, from `<which>_path` or `<which>_text`.
fn side(args: &Value, which: &str) -> Result<(String, String), String> {
    let path = args[format!("{which}_path")].as_str();
    let text = args[format!("{which}_text")].as_str();
    match (path, text) {
        (Some(path), None) => Ok((path.to_string(), project::read_text(path, MAX_FILE)?)),
        (None, Some(text)) => Ok((format!("{which} (text)"), text.to_string())),
        (Some(_), Some(_)) => Err(format!("give {which}_path or {which}_text, not both")),
        (None, None) => Err(format!(
            "missing the {} side: give {which}_path (a file in the project) or {which}_text",
            if which == "a" { "old" } else { "new" }
        )),
    }
}

/// The unified diff, with a one-line summary first.
fn unified(a_name: &str, a: &str, b_name: &str, b: &str, context: usize) -> String {
    if a == b {
        return "no differences".into();
    }
    let diff = TextDiff::configure()
        .timeout(DIFF_DEADLINE)
        .diff_lines(a, b);
    let (mut added, mut removed) = (0, 0);
    for change in diff.iter_all_changes() {
        match change.tag() {
            ChangeTag::Insert => added += 1,
            ChangeTag::Delete => removed += 1,
            ChangeTag::Equal => {}
        }
    }
    let body = diff
        .unified_diff()
        .context_radius(context)
        .header(a_name, b_name)
        .to_string();
    format!("{added} lines added, {removed} removed\n{body}")
}

export_plugin!(Diff);

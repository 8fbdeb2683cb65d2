//! `sed_replace`: a regex replace across the project's files, written
//! under `rewrite`'s compare-and-swap rules and shown as a unified diff.

use std::path::Path;

use async_trait::async_trait;
use regex::Regex;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::rewrite::{self, Change, Skipped};
use super::search::FilePattern;
use super::search::Target;
use super::seen::Seen;
use super::{Tool, ToolContext, ToolOutput, parse_args, run_blocking};
use crate::provider::ToolSpec;

pub struct SedReplace;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SedArgs {
    pattern: String,
    replacement: String,
    path: Option<String>,
    glob: Option<String>,
    dry_run: Option<bool>,
    max_files: Option<u64>,
}

#[async_trait]
impl Tool for SedReplace {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "sed_replace".into(),
            description: "Regex replace across files (Rust syntax over each whole file, (?m) for ^/$ per line; $1 or ${name} in replacement), skipping .gitignore'd and binary files. Shows a unified diff; dry_run writes nothing.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "pattern": {"type": "string", "description": "Regular expression"},
                    "replacement": {"type": "string", "description": "Replacement text; $1, ${name} insert capture groups, $$ a dollar"},
                    "path": {"type": "string", "description": "File or directory (default: the root)"},
                    "glob": {"type": "string", "description": "Only files matching this glob, e.g. *.rs"},
                    "dry_run": {"type": "boolean", "description": "Show the diff, write nothing"},
                    "max_files": {"type": "integer", "minimum": 1, "description": "default 100; more writes nothing"}
                },
                "required": ["pattern", "replacement"],
                "additionalProperties": false
            }),
        }
    }

    fn edited_path(&self, args: &Value) -> Option<String> {
        rewrite::edited_path(args)
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> ToolOutput {
        let args: SedArgs = match parse_args("sed_replace", args) {
            Ok(args) => args,
            Err(output) => return output,
        };
        let root = ctx.root.clone();
        let seen = ctx.seen.clone();
        let cancel = ctx.cancel.clone();
        run_blocking(move || sed_replace(&root, &args, &seen, &cancel)).await
    }
}

fn sed_replace(
    root: &Path,
    args: &SedArgs,
    seen: &Seen,
    cancel: &CancellationToken,
) -> Result<String, String> {
    if args.pattern.is_empty() {
        return Err("pattern must not be empty".into());
    }
    let regex = Regex::new(&args.pattern)
        .map_err(|err| format!("invalid regex {:?}: {err}", args.pattern))?;
    let target = Target::resolve(root, args.path.as_deref(), true)?;
    let filter = args
        .glob
        .as_deref()
        .map(|glob| FilePattern::new(root, glob))
        .transpose()?;
    let keep = |under: &Path| filter.as_ref().is_none_or(|f| f.is_match(under));
    let files = target.files(root, true, &keep, cancel)?;

    let mut changes = Vec::new();
    let mut skipped = Skipped::default();
    let mut budget = 0;
    for path in files {
        if cancel.is_cancelled() {
            return Err("cancelled".into());
        }
        let source = match rewrite::load(root, &path) {
            Ok(source) => source,
            Err(skip) => {
                skipped.add(skip);
                continue;
            }
        };
        let Some((after, replacements)) = replace_bounded(&regex, &source, &args.replacement)?
        else {
            continue;
        };
        rewrite::within_budget("sed_replace", &source.shown, after.len(), &mut budget)?;
        if after != source.text {
            changes.push(Change {
                source,
                after,
                replacements,
            });
        }
    }
    if changes.is_empty() {
        return Ok(format!(
            "no changes: {:?} matches nothing it would change in {}\n{}",
            args.pattern,
            target.shown,
            skipped.note()
        ));
    }
    rewrite::apply(
        "sed_replace",
        changes,
        seen,
        args.dry_run.unwrap_or(false),
        rewrite::max_files(args.max_files),
        &skipped,
    )
}

/// `source` with every match of `regex` replaced by `replacement` (`$1`
/// expanded), and how many replacements: `None` when nothing matches. The
/// new text is built step by step and given up once it outgrows
/// [`rewrite::MAX_FILE_BYTES`] — a pattern matching the empty string
/// before every character would otherwise multiply the file.
fn replace_bounded(
    regex: &regex::Regex,
    source: &rewrite::Source,
    replacement: &str,
) -> Result<Option<(String, usize)>, String> {
    let text = source.text.as_str();
    let mut after = String::new();
    let mut last = 0;
    let mut count = 0;
    for caps in regex.captures_iter(text) {
        let found = caps.get(0).expect("group 0 is the whole match");
        after.push_str(&text[last..found.start()]);
        caps.expand(replacement, &mut after);
        last = found.end();
        count += 1;
        if after.len() as u64 > rewrite::MAX_FILE_BYTES {
            return Err(format!(
                "sed_replace would make {} larger than {} bytes; nothing was written (check that the pattern cannot match the empty string)",
                source.shown,
                rewrite::MAX_FILE_BYTES
            ));
        }
    }
    if count == 0 {
        return Ok(None);
    }
    after.push_str(&text[last..]);
    Ok(Some((after, count)))
}

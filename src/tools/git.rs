//! Read-only git tools: `git_status` and `git_diff`.
//!
//! They run the `git` binary (no shell) rather than a Rust git library: the
//! user's own git reads their config, attributes and worktree layout exactly
//! as they see it, and a git library would add minutes of build time for two
//! read-only commands. Output is capped (the head is kept: the start of a
//! diff is what explains it).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::process::Command;

use super::fs::parse_args;
use super::path::{relative, resolve};
use super::{Tool, ToolContext, ToolOutput};
use crate::provider::ToolSpec;

const GIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Run `git <args>` in `root`; the output capped at `cap` bytes.
async fn git(root: &Path, args: &[&str], cap: usize, ctx: &ToolContext) -> ToolOutput {
    let mut command = Command::new("git");
    command
        .arg("-C")
        .arg(root)
        .args(["--no-pager", "-c", "color.ui=never"])
        .args(args)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::select! {
        output = tokio::time::timeout(GIT_TIMEOUT, command.output()) => output,
        _ = ctx.cancel.cancelled() => return ToolOutput::error("cancelled"),
    };
    let output = match output {
        Err(_) => {
            return ToolOutput::error(format!(
                "git did not answer within {} s",
                GIT_TIMEOUT.as_secs()
            ));
        }
        Ok(Err(err)) if err.kind() == std::io::ErrorKind::NotFound => {
            return ToolOutput::error("git is not installed on this machine");
        }
        Ok(Err(err)) => return ToolOutput::error(format!("could not run git: {err}")),
        Ok(Ok(output)) => output,
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let message = if stderr.contains("not a git repository") {
            "the project is not a git repository".to_string()
        } else {
            format!("git failed: {}", stderr.trim())
        };
        return ToolOutput::error(message);
    }
    let text = String::from_utf8_lossy(&output.stdout);
    if text.len() <= cap {
        return ToolOutput::ok(if text.trim().is_empty() {
            "(nothing)".to_string()
        } else {
            text.into_owned()
        });
    }
    let mut cut = cap;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    ToolOutput::ok(format!(
        "{}\n[… {} more bytes not shown; narrow it with path]",
        &text[..cut],
        text.len() - cut
    ))
}

pub struct GitStatus;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[async_trait]
impl Tool for GitStatus {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "git_status".into(),
            description: "The branch and the changed, staged and untracked files (git status --short --branch).".into(),
            parameters: json!({"type": "object", "properties": {}, "additionalProperties": false}),
        }
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> ToolOutput {
        if let Err(output) = parse_args::<NoArgs>("git_status", args) {
            return output;
        }
        git(
            &ctx.root,
            &["status", "--short", "--branch"],
            ctx.limits.bash_output_bytes,
            ctx,
        )
        .await
    }
}

pub struct GitDiff;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DiffArgs {
    #[serde(default)]
    staged: bool,
    path: Option<String>,
}

#[async_trait]
impl Tool for GitDiff {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "git_diff".into(),
            description: "The uncommitted changes as a unified diff; staged=true shows what is staged; path narrows it.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "staged": {"type": "boolean"},
                    "path": {"type": "string"}
                },
                "additionalProperties": false
            }),
        }
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> ToolOutput {
        let args: DiffArgs = match parse_args("git_diff", args) {
            Ok(args) => args,
            Err(output) => return output,
        };
        let mut git_args = vec!["diff", "--no-ext-diff"];
        if args.staged {
            git_args.push("--staged");
        }
        let path = match args.path.as_deref() {
            Some(path) => match resolve(&ctx.root, path) {
                Ok(resolved) => Some(relative(&ctx.root, &resolved)),
                Err(message) => return ToolOutput::error(message),
            },
            None => None,
        };
        if let Some(path) = &path {
            git_args.push("--");
            git_args.push(path);
        }
        git(&ctx.root, &git_args, ctx.limits.bash_output_bytes, ctx).await
    }
}

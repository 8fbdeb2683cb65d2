//! Read-only git tools: `git_status` and `git_diff`.
//!
//! They run the `git` binary (no shell) rather than a Rust git library: the
//! user's own git reads their config, attributes and worktree layout exactly
//! as they see it, and a git library would add minutes of build time for two
//! read-only commands. Output is capped while it is read (the head is kept:
//! the start of a diff is what explains it).

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::path::{relative, resolve};
use super::{Tool, ToolContext, ToolOutput, parse_args};
use crate::process::{self, Job, Keep, Program, scrubbed_env};
use crate::provider::ToolSpec;

const GIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Run `git <args>` in `root` through the process launcher; the output's
/// head kept, at most `cap` bytes of it read into memory.
async fn git(root: &Path, args: &[&str], cap: usize, ctx: &ToolContext) -> ToolOutput {
    // No command a repository's config names runs (fsmonitor, hooks,
    // external diff, textconv); and git runs in the sandbox's read profile.
    let mut argv: Vec<OsString> = [
        "--no-pager",
        "-c",
        "color.ui=never",
        "-c",
        "core.fsmonitor=false",
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "diff.external=",
    ]
    .iter()
    .chain(args)
    .map(OsString::from)
    .collect();
    argv.insert(0, OsString::from(root));
    argv.insert(0, OsString::from("-C"));
    let mut env = scrubbed_env(std::env::vars_os());
    env.push(("GIT_OPTIONAL_LOCKS".into(), "0".into()));
    let job = Job {
        program: Program::Exec("git".as_ref(), &argv),
        root,
        timeout: GIT_TIMEOUT,
        cancel: &ctx.cancel,
        keep: Keep::Head(cap),
        env,
        live: None,
        sandbox: Some(crate::sandbox::Profile::Read),
    };
    let run = match process::run(job).await {
        Ok(run) => run,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return ToolOutput::error("git is not installed on this machine");
        }
        Err(err) => return ToolOutput::error(format!("could not run git: {err}")),
    };
    if run.cancelled {
        return ToolOutput::error("cancelled");
    }
    if run.timed_out {
        return ToolOutput::error(format!(
            "git did not answer within {} s",
            GIT_TIMEOUT.as_secs()
        ));
    }
    if run.exit_code != Some(0) {
        // stderr shares the pipe: the output is git's message.
        let message = if run.output.contains("not a git repository") {
            "the project is not a git repository".to_string()
        } else {
            format!("git failed: {}", run.output.trim())
        };
        return ToolOutput::error(message);
    }
    if run.omitted == 0 {
        return ToolOutput::ok(if run.output.trim().is_empty() {
            "(nothing)".to_string()
        } else {
            run.output
        });
    }
    ToolOutput::ok(format!(
        "{}\n[… {} more bytes not shown; narrow it with path]",
        run.output, run.omitted
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

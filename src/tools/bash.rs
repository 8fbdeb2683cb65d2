//! The `bash` tool: one shell command in the project root, bounded in time
//! and output, leaving nothing behind.
//!
//! The command runs through the process launcher (`crate::process`) as
//! `bash -c` (or `sh -c` where bash is missing) in its own process group,
//! with stdin closed and the provider secrets removed from its environment.
//! stdout and stderr share one pipe, so the output keeps the order the
//! command wrote it in; only the tail (`bash_output_bytes`) is kept.
//!
//! Outcomes, as the model sees them:
//! - the command exits: its output, then `exit code N`. A non-zero exit is
//!   *not* an error result: `grep` finding nothing or a failing test run is
//!   information for the model, not a tool failure.
//! - it runs past its timeout, or the call is cancelled: the whole process
//!   group gets SIGKILL and the result is an error saying so, with the
//!   output so far.
//! - the shell cannot start: an error result.
//!
//! When the command returns, its process group is killed, so background
//! jobs (`cmd &`) never outlive the call; a job that still holds the output
//! pipe open gets a short grace period and then cannot stall the tool.

use std::ffi::OsString;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Tool, ToolContext, ToolOutput, parse_args};
use crate::process::{self, Finished, Job, Keep, Program, Shell, scrubbed_env};
use crate::provider::ToolSpec;

pub struct Bash;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BashArgs {
    command: String,
    timeout_ms: Option<u64>,
}

#[async_trait]
impl Tool for Bash {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "bash".into(),
            description: "Run a shell command (bash -c) in the project root. Returns stdout and stderr interleaved (tail kept) and the exit code. Background jobs are killed when it returns.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "command": {"type": "string", "description": "The command line"},
                    "timeout_ms": {"type": "integer", "minimum": 1, "description": "Kill the command after this many milliseconds"}
                },
                "required": ["command"],
                "additionalProperties": false
            }),
        }
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> ToolOutput {
        self.call_in_env(args, ctx, std::env::vars_os().collect())
            .await
    }
}

impl Bash {
    /// `call` with `env` standing in for the inherited environment (it is
    /// scrubbed the same way), so tests can check secrets do not leak
    /// without changing the test process's own environment.
    pub async fn call_in_env(
        &self,
        args: Value,
        ctx: &ToolContext,
        env: Vec<(OsString, OsString)>,
    ) -> ToolOutput {
        let args: BashArgs = match parse_args("bash", args) {
            Ok(args) => args,
            Err(output) => return output,
        };
        if args.command.trim().is_empty() {
            return ToolOutput::error("command is empty");
        }
        let timeout_ms = args
            .timeout_ms
            .unwrap_or(ctx.limits.bash_timeout_ms)
            .min(ctx.limits.bash_max_timeout_ms)
            .max(1);
        let timeout = Duration::from_millis(timeout_ms);
        let job = Job {
            program: Program::Shell(Shell::Bash, &args.command),
            root: &ctx.root,
            timeout,
            cancel: &ctx.cancel,
            keep: Keep::Tail(ctx.limits.bash_output_bytes),
            env: scrubbed_env(env),
            live: None,
            sandbox: ctx.sandbox,
        };
        match process::run(job).await {
            Ok(run) => {
                let mut output = tool_output(&run, timeout);
                if let Some(sandbox) = crate::sandbox::current()
                    && let Some(profile) = ctx.sandbox
                    && run.exit_code != Some(0)
                    && blocked(&run.output)
                {
                    output.content.push('\n');
                    output
                        .content
                        .push_str(&sandbox.explain(profile, &ctx.root));
                }
                output
            }
            Err(err) => ToolOutput::error(format!("could not start the shell: {err}")),
        }
    }
}

/// Whether failed output looks like the sandbox refused something.
fn blocked(output: &str) -> bool {
    [
        "Read-only file system",
        "Permission denied",
        "Operation not permitted",
        "Network is unreachable",
        "Connection refused",
    ]
    .iter()
    .any(|sign| output.contains(sign))
}

/// The tool result for a finished run: the output, what happened, and the
/// exit code last.
fn tool_output(run: &Finished, timeout: Duration) -> ToolOutput {
    let mut out = if run.output.is_empty() {
        "(no output)\n".to_string()
    } else {
        run.output.clone()
    };
    if !out.ends_with('\n') {
        out.push('\n');
    }
    if run.timed_out {
        out.push_str(&format!(
            "[timed out after {} ms; the command and its process group were killed]\n",
            timeout.as_millis()
        ));
    }
    if run.cancelled {
        out.push_str("[cancelled; the command and its process group were killed]\n");
    }
    if run.killed_leftovers {
        out.push_str("[background processes the command left running were killed]\n");
    }
    match (run.exit_code, run.signal) {
        (Some(code), _) => out.push_str(&format!("exit code {code}")),
        (None, Some(signal)) => out.push_str(&format!("killed by signal {signal}, no exit code")),
        (None, None) => out.push_str("exit status unknown: the shell did not exit"),
    }
    if run.timed_out || run.cancelled || run.exit_code.is_none() {
        ToolOutput::error(out)
    } else {
        ToolOutput::ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(exit_code: Option<i32>, signal: Option<i32>) -> Finished {
        Finished {
            output: String::new(),
            omitted: 0,
            exit_code,
            signal,
            timed_out: false,
            cancelled: false,
            killed_leftovers: false,
        }
    }

    #[test]
    fn exit_codes_are_reported() {
        let timeout = Duration::from_secs(1);
        let ok = tool_output(&ended(Some(0), None), timeout);
        assert!(!ok.is_error);
        assert_eq!(ok.content, "(no output)\nexit code 0");
        let failed = tool_output(&ended(Some(3), None), timeout);
        assert!(
            !failed.is_error,
            "a non-zero exit is information, not a tool error"
        );
        assert!(failed.content.ends_with("exit code 3"));
        let signalled = tool_output(&ended(None, Some(9)), timeout);
        assert!(signalled.is_error);
        assert!(
            signalled
                .content
                .ends_with("killed by signal 9, no exit code")
        );
    }
}

//! The `bash` tool: one shell command in the project root, bounded in time
//! and output, leaving nothing behind.
//!
//! The command runs as `bash -c` (or `sh -c` where bash is missing) in its
//! own process group, with stdin closed and the provider secrets removed
//! from its environment. stdout and stderr share one pipe, so the output
//! keeps the order the command wrote it in; only the tail
//! (`bash_output_bytes`) is kept.
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
//!
//! `run_shell` is the same machinery under `sh -c` with a structured
//! result, for the engine's own commands (the completion gate's `verify`).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::fs::parse_args;
use super::{Tool, ToolContext, ToolOutput};
use crate::provider::ToolSpec;

/// How long output is still read after the shell exits, for background jobs
/// that hold the pipe open.
const DRAIN_GRACE: Duration = Duration::from_millis(200);
/// How long to wait for the shell to be reaped after SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);

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
            shell: Shell::Bash,
            command: &args.command,
            root: &ctx.root,
            timeout,
            cancel: &ctx.cancel,
            output_bytes: ctx.limits.bash_output_bytes,
            env: scrubbed_env(env),
            live: None,
        };
        match run(job).await {
            Ok(run) => tool_output(&run, timeout),
            Err(err) => ToolOutput::error(format!("could not start the shell: {err}")),
        }
    }
}

/// How one shell command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellRun {
    /// stdout and stderr interleaved; only the tail, led by an
    /// `[… N bytes of earlier output omitted]` line when it was cut.
    pub output: String,
    /// The exit code; `None` when a signal ended the shell or it never
    /// exited.
    pub exit_code: Option<i32>,
    /// The signal that ended the shell, if one did.
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub cancelled: bool,
    /// Processes the command left running after it exited were killed.
    pub killed_leftovers: bool,
}

/// Run `command` with `sh -c` in `root`, with the bash tool's guarantees:
/// its own process group, killed on timeout, on cancellation and when the
/// command returns; stdin closed; provider secrets removed from the
/// environment; only the last `output_bytes` of output kept. `Err` means
/// the shell could not start.
pub async fn run_shell(
    command: &str,
    root: &Path,
    timeout: Duration,
    cancel: &CancellationToken,
    output_bytes: usize,
) -> io::Result<ShellRun> {
    run(Job {
        shell: Shell::Sh,
        command,
        root,
        timeout,
        cancel,
        output_bytes,
        env: scrubbed_env(std::env::vars_os()),
        live: None,
    })
    .await
}

/// Whether an environment variable holds a provider secret that commands
/// must not see: every `*_API_KEY` and `ANTHROPIC_AUTH_TOKEN`.
pub fn is_secret(name: &OsStr) -> bool {
    let name = name.to_string_lossy().to_ascii_uppercase();
    name.ends_with("_API_KEY") || name == "ANTHROPIC_AUTH_TOKEN"
}

/// `env` without the provider secrets.
pub fn scrubbed_env(
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    env.into_iter()
        .filter(|(name, _)| !is_secret(name))
        .collect()
}

#[derive(Clone, Copy)]
pub(crate) enum Shell {
    /// bash, or sh where bash is missing: what the model expects.
    Bash,
    /// POSIX sh: what verification commands are specified to run under.
    Sh,
}

pub(crate) struct Job<'a> {
    pub(crate) shell: Shell,
    pub(crate) command: &'a str,
    pub(crate) root: &'a Path,
    pub(crate) timeout: Duration,
    pub(crate) cancel: &'a CancellationToken,
    pub(crate) output_bytes: usize,
    pub(crate) env: Vec<(OsString, OsString)>,
    /// Where output also goes as it arrives, for callers that read it
    /// while the command runs (background jobs).
    pub(crate) live: Option<&'a std::sync::Mutex<Tail>>,
}

pub(crate) async fn run(job: Job<'_>) -> io::Result<ShellRun> {
    let (mut child, mut output) = spawn_shell(job.shell, job.command, job.root, &job.env)?;
    let Some(pid) = child.id() else {
        return Err(io::Error::other(
            "the shell exited before it could be tracked",
        ));
    };
    let group = ProcessGroup::new(pid as libc::pid_t);
    let mut tail = Tail::new(job.output_bytes.max(1));
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = Instant::now() + job.timeout;
    let (mut timed_out, mut cancelled) = (false, false);
    let mut status: Option<io::Result<ExitStatus>> = None;
    let mut eof = false;
    // Set once the shell has exited or been killed: reading stops then,
    // even if a stray process keeps the pipe open.
    let mut give_up_at: Option<Instant> = None;

    while !(eof && status.is_some()) {
        let stopping = timed_out || cancelled || status.is_some();
        tokio::select! {
            read = output.read(&mut buf), if !eof => match read {
                Ok(0) | Err(_) => eof = true,
                Ok(n) => {
                    // One tail: the caller's live one when given, else ours.
                    match job.live {
                        Some(live) => live.lock().expect("live output lock").push(&buf[..n]),
                        None => tail.push(&buf[..n]),
                    }
                }
            },
            exit = child.wait(), if status.is_none() => {
                status = Some(exit);
                let drained = Instant::now() + DRAIN_GRACE;
                give_up_at = Some(give_up_at.map_or(drained, |at| at.min(drained)));
            },
            () = sleep_until(deadline), if !stopping => {
                group.kill();
                timed_out = true;
                give_up_at = Some(Instant::now() + KILL_GRACE);
            },
            () = job.cancel.cancelled(), if !stopping => {
                group.kill();
                cancelled = true;
                give_up_at = Some(Instant::now() + KILL_GRACE);
            },
            () = sleep_until(give_up_at.unwrap_or(deadline)), if give_up_at.is_some() => break,
        }
    }
    // Whatever the command left running in its group goes with it.
    let leftovers = group.finish();
    let (exit_code, signal) = match &status {
        Some(Ok(status)) => (status.code(), status.signal()),
        _ => (None, None),
    };
    Ok(ShellRun {
        output: match job.live {
            Some(live) => live.lock().expect("live output lock").snapshot(),
            None => tail.finish(),
        },
        exit_code,
        signal,
        timed_out,
        cancelled,
        killed_leftovers: leftovers && !timed_out && !cancelled,
    })
}

/// The tool result for a finished run: the output, what happened, and the
/// exit code last.
fn tool_output(run: &ShellRun, timeout: Duration) -> ToolOutput {
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

/// Start `command` under `shell`; bash falls back to sh where it is missing.
fn spawn_shell(
    shell: Shell,
    command: &str,
    root: &Path,
    env: &[(OsString, OsString)],
) -> io::Result<(Child, pipe::Receiver)> {
    let sh = Path::new("sh");
    match shell {
        Shell::Sh => spawn(sh, command, root, env),
        Shell::Bash => match spawn(Path::new("bash"), command, root, env) {
            Err(err) if err.kind() == io::ErrorKind::NotFound && root.is_dir() => {
                spawn(sh, command, root, env)
            }
            other => other,
        },
    }
}

fn spawn(
    shell: &Path,
    command: &str,
    root: &Path,
    env: &[(OsString, OsString)],
) -> io::Result<(Child, pipe::Receiver)> {
    let (sender, receiver) = pipe::pipe()?;
    let stdout: OwnedFd = sender.into_blocking_fd()?;
    let stderr = stdout.try_clone()?;
    let mut cmd = Command::new(shell);
    cmd.arg("-c")
        .arg(command)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .env_clear()
        .envs(env.iter().map(|(name, value)| (name, value)))
        .process_group(0)
        .kill_on_drop(true);
    let child = cmd.spawn()?;
    // The command keeps our copies of the pipe's write end until dropped;
    // without this the read side would never see end of file.
    drop(cmd);
    Ok((child, receiver))
}

/// The command's process group (its id is the shell's pid). Killed when
/// dropped too, so an abandoned call leaves nothing running.
struct ProcessGroup {
    id: libc::pid_t,
    armed: bool,
}

/// Every process group a command runs in right now, so a forced exit
/// (a second Ctrl-C) can still take them down: destructors do not run then.
static LIVE_GROUPS: std::sync::Mutex<Vec<libc::pid_t>> = std::sync::Mutex::new(Vec::new());

/// SIGKILL every command's process group still running. For the moment
/// before a forced exit; normal shutdown kills each group on its own.
pub fn kill_every_group() {
    let groups = LIVE_GROUPS.lock().map(|g| g.clone()).unwrap_or_default();
    for id in groups {
        // SAFETY: killpg has no memory-safety preconditions.
        unsafe { libc::killpg(id, libc::SIGKILL) };
    }
}

impl ProcessGroup {
    fn new(id: libc::pid_t) -> Self {
        if let Ok(mut groups) = LIVE_GROUPS.lock() {
            groups.push(id);
        }
        ProcessGroup { id, armed: true }
    }

    /// SIGKILL every process in the group; whether any was there.
    fn kill(&self) -> bool {
        // SAFETY: killpg has no memory-safety preconditions; a group that
        // no longer exists only yields ESRCH.
        unsafe { libc::killpg(self.id, libc::SIGKILL) == 0 }
    }

    /// The last kill, once the call is over; dropping it then does nothing.
    fn finish(mut self) -> bool {
        self.armed = false;
        self.kill()
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if self.armed {
            self.kill();
        }
        if let Ok(mut groups) = LIVE_GROUPS.lock() {
            groups.retain(|&id| id != self.id);
        }
    }
}

/// The last `cap` bytes of a stream, and how many came before them.
pub(crate) struct Tail {
    cap: usize,
    buf: Vec<u8>,
    dropped: u64,
}

impl Tail {
    pub(crate) fn new(cap: usize) -> Self {
        Tail {
            cap,
            buf: Vec::new(),
            dropped: 0,
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        // Trim in batches so a chatty command does not shift the buffer on
        // every read.
        if self.buf.len() >= self.cap.saturating_mul(2).max(64 * 1024) {
            self.trim();
        }
    }

    fn trim(&mut self) {
        if self.buf.len() > self.cap {
            let excess = self.buf.len() - self.cap;
            self.buf.drain(..excess);
            self.dropped += excess as u64;
        }
    }

    /// The kept text so far (see `finish`), leaving the tail as it is.
    pub(crate) fn snapshot(&self) -> String {
        let mut copy = Tail {
            cap: self.cap,
            buf: self.buf.clone(),
            dropped: self.dropped,
        };
        copy.trim();
        copy.finish()
    }

    /// The kept text, starting on a character boundary, led by a note
    /// saying how much came before it.
    fn finish(mut self) -> String {
        self.trim();
        if self.dropped == 0 {
            return String::from_utf8_lossy(&self.buf).into_owned();
        }
        let partial = self
            .buf
            .iter()
            .take(3)
            .take_while(|&&byte| byte & 0xC0 == 0x80)
            .count();
        let omitted = self.dropped + partial as u64;
        format!(
            "[… {omitted} bytes of earlier output omitted]\n{}",
            String::from_utf8_lossy(&self.buf[partial..])
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_recognised() {
        for name in [
            "OPENAI_API_KEY",
            "ANTHROPIC_API_KEY",
            "groq_api_key",
            "ANTHROPIC_AUTH_TOKEN",
        ] {
            assert!(is_secret(OsStr::new(name)), "{name}");
        }
        for name in [
            "PATH",
            "HOME",
            "API_KEY_FILE",
            "MY_API_KEYS",
            "GITHUB_TOKEN_X",
        ] {
            assert!(!is_secret(OsStr::new(name)), "{name}");
        }
    }

    #[test]
    fn tail_keeps_the_end() {
        let mut tail = Tail::new(4);
        tail.push(b"abcdef");
        tail.push(b"gh");
        assert_eq!(tail.finish(), "[… 4 bytes of earlier output omitted]\nefgh");

        let mut tail = Tail::new(10);
        tail.push(b"short");
        assert_eq!(tail.finish(), "short");
    }

    #[test]
    fn tail_starts_on_a_character_boundary() {
        let mut tail = Tail::new(3);
        tail.push("aé".as_bytes());
        tail.push(b"bc");
        // "aé" is 3 bytes; keeping 3 of "a\xC3\xA9bc" would start mid-"é".
        assert_eq!(tail.finish(), "[… 3 bytes of earlier output omitted]\nbc");
    }

    fn ended(exit_code: Option<i32>, signal: Option<i32>) -> ShellRun {
        ShellRun {
            output: String::new(),
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

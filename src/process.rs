//! The one launcher for every process orch starts: the `bash` tool,
//! background jobs, the completion gate's verification, diagnostics, git,
//! the desktop notifier, MCP servers (long-lived, spoken to on
//! stdin/stdout: [`spawn_server`]) and the missions `orch mcp serve` runs
//! ([`start`]: a long-lived child whose output is read as it comes).
//!
//! Each process runs in its own process group with stdin closed, the
//! environment it is given (callers pass [`scrubbed_env`] so provider
//! secrets never reach a command), bounded in time and output: stdout and
//! stderr share one pipe, so output keeps the order it was written in, and
//! only a bounded part of it (the tail or the head) is kept while it is read.
//! On timeout, on cancellation and when the process returns, its whole group
//! gets SIGKILL, so nothing it started outlives the call; every group still
//! running is listed for a forced exit ([`kill_every_group`]).
//!
//! Nothing outlives orch either, however it ends. `PR_SET_PDEATHSIG` cannot
//! promise that (it follows the thread that spawned, and grandchildren do
//! not inherit it), so orch starts one watchdog: a small `sh` in its own
//! process group that reads, from a pipe only orch holds the write end of,
//! which groups are alive (`add`/`del` lines). When orch dies — SIGKILL
//! included — the kernel closes that pipe, the watchdog reads end of file
//! and kills every group still listed, grandchildren included. And every
//! live group is recorded with what identifies it beyond its number (the
//! leader's start time and the boot id: [`GroupRecord`]), so a later run can
//! kill what a killed orch left behind without ever touching an unrelated
//! process that reused the number ([`reap`]).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

/// How long output is still read after the process exits, for background
/// jobs that hold the pipe open.
const DRAIN_GRACE: Duration = Duration::from_millis(200);
/// How long to wait for the process to be reaped after SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// What to start.
#[derive(Clone, Copy)]
pub enum Program<'a> {
    /// A command line under a shell.
    Shell(Shell, &'a str),
    /// A program and its arguments, no shell.
    Exec(&'a OsStr, &'a [OsString]),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shell {
    /// bash, or sh where bash is missing: what the model expects.
    Bash,
    /// POSIX sh: what verification commands are specified to run under.
    Sh,
}

/// Which part of the output is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// The last bytes (a build log ends with what matters).
    Tail(usize),
    /// The first bytes (a diff starts with what explains it).
    Head(usize),
}

/// One process to run.
pub struct Job<'a> {
    pub program: Program<'a>,
    pub root: &'a Path,
    pub timeout: Duration,
    pub cancel: &'a CancellationToken,
    pub keep: Keep,
    pub env: Vec<(OsString, OsString)>,
    /// Where output goes instead, as it arrives, for callers that read it
    /// while the process runs (background jobs).
    pub live: Option<&'a Mutex<Tail>>,
    /// Run inside the OS sandbox in force ([`crate::sandbox`]) with this
    /// file profile; `None` for orch's own helpers (git, the notifier).
    pub sandbox: Option<crate::sandbox::Profile>,
}

impl<'a> Job<'a> {
    /// `command` under `shell` in `root`, with the inherited environment
    /// minus provider secrets, keeping the last `output_bytes` of output.
    pub fn shell(
        shell: Shell,
        command: &'a str,
        root: &'a Path,
        timeout: Duration,
        cancel: &'a CancellationToken,
        output_bytes: usize,
    ) -> Job<'a> {
        Job {
            program: Program::Shell(shell, command),
            root,
            timeout,
            cancel,
            keep: Keep::Tail(output_bytes),
            env: scrubbed_env(std::env::vars_os()),
            live: None,
            sandbox: Some(crate::sandbox::Profile::Write),
        }
    }
}

/// How one process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// stdout and stderr interleaved, bounded as the job asked: a cut tail
    /// is led by an `[… N bytes of earlier output omitted]` line; a cut head
    /// is not marked (see `omitted`).
    pub output: String,
    /// Bytes of output not kept.
    pub omitted: u64,
    /// The exit code; `None` when a signal ended the process or it never
    /// exited.
    pub exit_code: Option<i32>,
    /// The signal that ended the process, if one did.
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub cancelled: bool,
    /// Processes the command left running after it exited were killed.
    pub killed_leftovers: bool,
}

/// Whether an environment variable is one commands must not see
/// ([`crate::secrets`]: API keys, tokens, passwords and the like).
pub fn is_secret(name: &OsStr) -> bool {
    crate::secrets::is_secret_name(&name.to_string_lossy())
}

/// `env` without the secrets.
pub fn scrubbed_env(
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    env.into_iter()
        .filter(|(name, _)| !is_secret(name))
        .collect()
}

/// Run `job` to its end (see the module docs). `Err` means the process could
/// not start; `ErrorKind::NotFound` when the program does not exist.
pub async fn run(job: Job<'_>) -> io::Result<Finished> {
    let sandbox = job.sandbox.zip(crate::sandbox::current());
    let (mut child, mut output) = spawn(job.program, job.root, &job.env, sandbox.as_ref())?;
    let Some(pid) = child.id() else {
        return Err(io::Error::other(
            "the process exited before it could be tracked",
        ));
    };
    let group = ProcessGroup::new(pid as libc::pid_t);
    if job.sandbox.is_some() {
        group.mark_agents();
    }
    let mut kept = Capture::new(job.keep);
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = Instant::now() + job.timeout;
    let (mut timed_out, mut cancelled) = (false, false);
    let mut status: Option<io::Result<ExitStatus>> = None;
    let mut eof = false;
    // Set once the process has exited or been killed: reading stops then,
    // even if a stray process keeps the pipe open.
    let mut give_up_at: Option<Instant> = None;

    while !(eof && status.is_some()) {
        let stopping = timed_out || cancelled || status.is_some();
        tokio::select! {
            read = output.read(&mut buf), if !eof => match read {
                Ok(0) | Err(_) => eof = true,
                Ok(n) => match job.live {
                    Some(live) => live.lock().expect("live output lock").push(&buf[..n]),
                    None => kept.push(&buf[..n]),
                },
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
    let (output, omitted) = match job.live {
        Some(live) => {
            let live = live.lock().expect("live output lock");
            (live.snapshot(), live.dropped)
        }
        None => kept.finish(),
    };
    Ok(Finished {
        output,
        omitted,
        exit_code,
        signal,
        timed_out,
        cancelled,
        killed_leftovers: leftovers && !timed_out && !cancelled,
    })
}

/// A long-lived child spoken to on its stdin and stdout (an MCP server):
/// its own process group, listed for a forced exit like every group orch
/// runs, killed with everything it started when this is dropped. Its
/// stderr is read as it comes and only the last bytes are kept, for error
/// messages.
pub struct Server {
    child: Child,
    stdin: Option<tokio::process::ChildStdin>,
    stdout: Option<tokio::process::ChildStdout>,
    stderr: std::sync::Arc<Mutex<Tail>>,
    reader: tokio::task::JoinHandle<()>,
    group: ProcessGroup,
}

impl Server {
    /// The pipes, once: (what the server writes, what it reads).
    pub fn take_io(&mut self) -> Option<(tokio::process::ChildStdout, tokio::process::ChildStdin)> {
        Some((self.stdout.take()?, self.stdin.take()?))
    }

    /// The last bytes the server wrote on stderr.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .map(|tail| tail.snapshot())
            .unwrap_or_default()
    }

    /// Wait until the server exits.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// SIGKILL the server's whole group.
    pub fn kill(&self) {
        self.group.kill();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Start `program` as a [`Server`] in `cwd`, with `env` as its whole
/// environment (callers pass [`scrubbed_env`] plus what the server's
/// configuration sets), outside the OS sandbox: servers reach the network
/// and act for the user (`docs/security.md`).
pub fn spawn_server(
    program: &OsStr,
    args: &[OsString],
    cwd: &Path,
    env: &[(OsString, OsString)],
    stderr_bytes: usize,
) -> io::Result<Server> {
    let (mut child, group) = spawn_group(program, args, cwd, env, Stdio::piped())?;
    let stderr = std::sync::Arc::new(Mutex::new(Tail::new(stderr_bytes.max(1))));
    let reader = match child.stderr.take() {
        Some(mut pipe) => {
            let tail = stderr.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8 * 1024];
                while let Ok(n @ 1..) = pipe.read(&mut buf).await {
                    if let Ok(mut tail) = tail.lock() {
                        tail.push(&buf[..n]);
                    }
                }
            })
        }
        None => tokio::spawn(async {}),
    };
    Ok(Server {
        stdin: child.stdin.take(),
        stdout: child.stdout.take(),
        child,
        stderr,
        reader,
        group,
    })
}

/// A long-lived child whose output its caller reads as it comes (orch's own
/// missions under `orch mcp serve`), started by [`start`]: its own process
/// group, recorded and watched like every other (it dies with orch however
/// orch ends), stdin closed, stdout and stderr two pipes of their own for
/// the caller to take. Dropping it kills the group.
pub struct Started {
    child: Child,
    group: Option<ProcessGroup>,
}

/// Start `program` with `args` in `root` with exactly `env`, outside the
/// sandbox (a program that sets up its own, such as orch itself). `Err`
/// means it could not start.
pub fn start(
    program: &OsStr,
    args: &[OsString],
    root: &Path,
    env: &[(OsString, OsString)],
) -> io::Result<Started> {
    let (child, group) = spawn_group(program, args, root, env, Stdio::null())?;
    Ok(Started {
        child,
        group: Some(group),
    })
}

/// A long-lived child in `cwd` with exactly `env`, stdout and stderr piped,
/// in its own process group, recorded and watched from the moment it runs.
fn spawn_group(
    program: &OsStr,
    args: &[OsString],
    cwd: &Path,
    env: &[(OsString, OsString)],
    stdin: Stdio,
) -> io::Result<(Child, ProcessGroup)> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_clear()
        .envs(env.iter().map(|(name, value)| (name, value)))
        .process_group(0)
        .kill_on_drop(true);
    let child = cmd.spawn()?;
    let Some(pid) = child.id() else {
        return Err(io::Error::other(
            "the process exited before it could be tracked",
        ));
    };
    Ok((child, ProcessGroup::new(pid as libc::pid_t)))
}

impl Started {
    /// The child's stdout, once.
    pub fn take_stdout(&mut self) -> Option<tokio::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// The child's stderr, once.
    pub fn take_stderr(&mut self) -> Option<tokio::process::ChildStderr> {
        self.child.stderr.take()
    }

    /// Wait for the child to exit; whatever it left running in its group
    /// is killed then.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        let status = self.child.wait().await;
        if let Some(group) = self.group.take() {
            group.finish();
        }
        status
    }
}

/// One of orch's own short commands (the engine's git, copying a build
/// folder), run to its end from blocking code by [`run_helper`]: outside
/// the sandbox, in its own recorded process group (killed with whatever it
/// left when it returns, listed for a forced exit, watched in case orch
/// dies), stdin given bytes or closed, stdout and stderr apart.
pub struct Helper<'a> {
    pub program: &'a OsStr,
    pub args: &'a [OsString],
    pub cwd: &'a Path,
    /// The whole environment (callers start from [`scrubbed_env`]).
    pub env: Vec<(OsString, OsString)>,
    /// Written to stdin, which is then closed; `None`: stdin closed.
    pub stdin: Option<Vec<u8>>,
    /// Past this the group is killed and the call is an error.
    pub timeout: Duration,
    /// Stdout is wanted whole (a tree id, a blob, a patch): past this many
    /// bytes the group is killed and the call is an error, never a cut
    /// result. Only the last `STDERR_BYTES` of stderr are kept.
    pub max_stdout: usize,
}

/// What of a helper's stderr is kept (for error messages).
const HELPER_STDERR_BYTES: usize = 64 * 1024;

/// Run `helper` to its end, its pipes served on the calling thread (no
/// thread is started). `Err` when it could not start, ran past its timeout
/// (`ErrorKind::TimedOut`) or wrote more than `max_stdout` bytes
/// (`ErrorKind::FileTooLarge`); otherwise its status and output. Something
/// it started that left its group and holds its pipes is not waited for
/// beyond [`HELPER_DRAIN`].
pub fn run_helper(helper: Helper<'_>) -> io::Result<std::process::Output> {
    use std::os::unix::process::CommandExt as _;
    let mut command = std::process::Command::new(helper.program);
    command
        .args(helper.args)
        .current_dir(helper.cwd)
        .env_clear()
        .envs(helper.env.iter().map(|(name, value)| (name, value)))
        .stdin(if helper.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = command.spawn()?;
    let group = ProcessGroup::new(child.id() as libc::pid_t);
    let name = helper.program.to_string_lossy().into_owned();
    let pipes = HelperPipes {
        stdin: child
            .stdin
            .take()
            .zip(helper.stdin)
            .map(|(pipe, bytes)| (pipe, bytes, 0)),
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
    };
    let ended = pipes.run(&child, &group, helper.timeout, helper.max_stdout);
    if !matches!(ended, Ended::Done { .. }) {
        // Killed with its group; by pid too, in case it left the group.
        let _ = child.kill();
    }
    let status = child.wait();
    group.finish();
    let (stdout, stderr) = match ended {
        Ended::Done { stdout, stderr } => (stdout, stderr),
        Ended::TimedOut => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{name} ran past {}s and was killed",
                    helper.timeout.as_secs()
                ),
            ));
        }
        Ended::TooMuch => {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!(
                    "{name} wrote more than {} bytes and was killed",
                    helper.max_stdout
                ),
            ));
        }
        Ended::Failed(err) => {
            return Err(io::Error::new(
                err.kind(),
                format!("reading the output of {name} failed: {err}"),
            ));
        }
    };
    Ok(std::process::Output {
        status: status?,
        stdout,
        stderr: stderr.snapshot().into_bytes(),
    })
}

/// How long the pipes of a helper that has exited are still read when
/// something it started outside its group keeps them open.
const HELPER_DRAIN: Duration = Duration::from_millis(500);

/// Reads of one pipe (of up to 64 KiB each) between two checks of the
/// clock.
const HELPER_READS: usize = 16;

/// A helper's pipes, served on the calling thread with `poll(2)`: stdin fed,
/// stdout kept whole, the end of stderr kept, the child's exit watched.
struct HelperPipes {
    stdin: Option<(std::process::ChildStdin, Vec<u8>, usize)>,
    stdout: Option<std::process::ChildStdout>,
    stderr: Option<std::process::ChildStderr>,
}

enum Ended {
    Done { stdout: Vec<u8>, stderr: Tail },
    TimedOut,
    TooMuch,
    Failed(io::Error),
}

impl HelperPipes {
    /// Serve the pipes until the child has exited and they reached their
    /// end (the group is killed once the child exits, so what it left
    /// closes them too), the timeout passes, or stdout grows past `max`.
    /// After a kill the pipes are read (and dropped) to their end too, so
    /// what the group ran is gone when this returns, short of something
    /// that left the group: the pipes are read for at most
    /// [`HELPER_DRAIN`] after the exit or the kill. The child is left to be
    /// reaped.
    fn run(
        mut self,
        child: &std::process::Child,
        group: &ProcessGroup,
        timeout: Duration,
        max: usize,
    ) -> Ended {
        use std::io::{Read as _, Write as _};
        use std::os::fd::{AsFd as _, AsRawFd as _};
        use std::time::Instant;
        let deadline = Instant::now() + timeout;
        let pidfd = pidfd_open(child.id() as libc::pid_t);
        for fd in [
            self.stdin.as_ref().map(|(pipe, ..)| pipe.as_raw_fd()),
            self.stdout.as_ref().map(|pipe| pipe.as_raw_fd()),
            self.stderr.as_ref().map(|pipe| pipe.as_raw_fd()),
        ]
        .into_iter()
        .flatten()
        {
            if let Err(err) = set_nonblocking(fd) {
                group.kill();
                return Ended::Failed(err);
            }
        }
        let mut stdout = Vec::new();
        let mut stderr = Tail::new(HELPER_STDERR_BYTES);
        let mut buf = vec![0u8; 64 * 1024];
        let mut exited_at: Option<Instant> = None;
        // Why the group was killed before its end, and when.
        let mut cut: Option<(Ended, Instant)> = None;
        let cut_short = |cut: &mut Option<(Ended, Instant)>, why: Ended| {
            group.kill();
            cut.get_or_insert((why, Instant::now()));
        };
        loop {
            if exited_at.is_none() && exited(child, pidfd.as_ref()) {
                // Whatever it left running in its group goes too, so the
                // pipes reach their end.
                group.kill();
                exited_at = Some(Instant::now());
            }
            let ended = self.stdout.is_none() && self.stderr.is_none();
            match cut.take() {
                Some((why, _)) if ended => return why,
                None if ended && exited_at.is_some() => return Ended::Done { stdout, stderr },
                taken => cut = taken,
            }
            let now = Instant::now();
            // Once it has exited only the drain below bounds the wait.
            if now >= deadline && exited_at.is_none() {
                cut_short(&mut cut, Ended::TimedOut);
            }
            if exited_at.is_some() || cut.is_some() {
                self.stdin = None;
            }
            // Held open by something outside the group: what the helper
            // itself wrote has been read by now.
            let drain_from = cut.as_ref().map(|(_, at)| *at).or(exited_at);
            let mut until = deadline;
            if let Some(at) = drain_from {
                if now >= at + HELPER_DRAIN {
                    return match cut {
                        Some((why, _)) => why,
                        None => Ended::Done { stdout, stderr },
                    };
                }
                until = at + HELPER_DRAIN;
            }
            let mut fds = Vec::with_capacity(4);
            let mut watch = |fd: Option<i32>, events| {
                if let Some(fd) = fd {
                    fds.push(libc::pollfd {
                        fd,
                        events,
                        revents: 0,
                    });
                }
            };
            watch(self.stdout.as_ref().map(|p| p.as_raw_fd()), libc::POLLIN);
            watch(self.stderr.as_ref().map(|p| p.as_raw_fd()), libc::POLLIN);
            watch(
                self.stdin.as_ref().map(|(p, ..)| p.as_raw_fd()),
                libc::POLLOUT,
            );
            let exit_fd = match (&pidfd, exited_at) {
                (Some(pidfd), None) => Some(pidfd.as_fd().as_raw_fd()),
                _ => None,
            };
            watch(exit_fd, libc::POLLIN);
            // Without a pidfd (kernels before 5.3) the exit is checked
            // every 10 ms.
            let mut wait = until.saturating_duration_since(now);
            if pidfd.is_none() && exited_at.is_none() {
                wait = wait.min(Duration::from_millis(10));
            }
            let millis = wait.as_millis().clamp(1, i32::MAX as u128) as i32;
            // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs.
            let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis) };
            if ready < 0 {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    cut_short(&mut cut, Ended::Failed(err));
                    return cut.map_or(Ended::Done { stdout, stderr }, |(why, _)| why);
                }
                continue;
            }
            // A bounded number of reads a pass, so a writer that never
            // pauses still lets the deadline and the drain be checked.
            let mut reads = 0;
            while let Some(pipe) = self.stdout.as_mut()
                && reads < HELPER_READS
            {
                reads += 1;
                match pipe.read(&mut buf) {
                    Ok(0) => self.stdout = None,
                    // After a kill what comes is read only to reach the end.
                    Ok(_) if cut.is_some() => {}
                    Ok(n) if stdout.len() + n > max => cut_short(&mut cut, Ended::TooMuch),
                    Ok(n) => stdout.extend_from_slice(&buf[..n]),
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    // Stdout is wanted whole: a failed read fails the call
                    // rather than passing for its end.
                    Err(err) => {
                        self.stdout = None;
                        cut_short(&mut cut, Ended::Failed(err));
                    }
                }
            }
            let mut reads = 0;
            while let Some(pipe) = self.stderr.as_mut()
                && reads < HELPER_READS
            {
                reads += 1;
                match pipe.read(&mut buf) {
                    Ok(0) => self.stderr = None,
                    Ok(n) => stderr.push(&buf[..n]),
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => self.stderr = None,
                }
            }
            while let Some((pipe, bytes, written)) = self.stdin.as_mut() {
                if *written == bytes.len() {
                    // All given: closing it is the end of input.
                    self.stdin = None;
                    break;
                }
                match pipe.write(&bytes[*written..]) {
                    Ok(n) => *written += n,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    // It stopped reading; its exit status tells.
                    Err(_) => self.stdin = None,
                }
            }
        }
    }
}

/// A descriptor that becomes readable when process `pid` exits (Linux 5.3+).
fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    use std::os::fd::FromRawFd as _;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; nothing else is touched.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a non-negative result is a descriptor this call owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether the child has exited (not reaped: `try_wait` would reap it, so
/// the pidfd is asked, or `waitid` with `WNOWAIT`).
fn exited(child: &std::process::Child, pidfd: Option<&OwnedFd>) -> bool {
    use std::os::fd::AsRawFd as _;
    if let Some(pidfd) = pidfd {
        let mut fd = libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no wait.
        return unsafe { libc::poll(&mut fd, 1, 0) } == 1;
    }
    // SAFETY: `info` is a valid siginfo_t for waitid to fill; WNOWAIT
    // leaves the child to be reaped by `Child::wait`.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(
            libc::P_PID,
            child.id() as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        ) == 0
            && info.si_pid() != 0
    }
}

fn set_nonblocking(fd: i32) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor this process owns.
    let set = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
    };
    if set {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Start `program`; bash falls back to sh where it is missing.
fn spawn(
    program: Program<'_>,
    root: &Path,
    env: &[(OsString, OsString)],
    sandbox: Option<&(crate::sandbox::Profile, crate::sandbox::Sandbox)>,
) -> io::Result<(Child, pipe::Receiver)> {
    let one = |name: &OsStr, args: &[OsString]| match sandbox {
        Some((profile, sandbox)) => {
            let (helper, wrapped) = sandbox.wrap(*profile, root, name, args);
            spawn_one(&helper, &wrapped, root, env)
        }
        None => spawn_one(name, args, root, env),
    };
    match program {
        Program::Shell(Shell::Sh, line) => one("sh".as_ref(), &shell_args(line)),
        Program::Shell(Shell::Bash, line) => {
            // Under the sandbox the helper reports a missing program as
            // exit 127, so bash is looked up here first.
            let bash = sandbox.is_none() || which("bash");
            match one(if bash { "bash" } else { "sh" }.as_ref(), &shell_args(line)) {
                Err(err) if err.kind() == io::ErrorKind::NotFound && root.is_dir() => {
                    one("sh".as_ref(), &shell_args(line))
                }
                other => other,
            }
        }
        Program::Exec(name, args) => one(name, args),
    }
}

/// Whether `program` is on the PATH.
fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

fn shell_args(line: &str) -> [OsString; 2] {
    ["-c".into(), line.into()]
}

fn spawn_one(
    program: &OsStr,
    args: &[OsString],
    root: &Path,
    env: &[(OsString, OsString)],
) -> io::Result<(Child, pipe::Receiver)> {
    let (sender, receiver) = pipe::pipe()?;
    let stdout: OwnedFd = sender.into_blocking_fd()?;
    let stderr = stdout.try_clone()?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .env_clear()
        .envs(env.iter().map(|(name, value)| (name, value)))
        .process_group(0)
        .kill_on_drop(true);
    // A task's worktree builds into a folder of its own: worktrees of one
    // crate would otherwise overwrite each other's artifacts.
    if let Some(dir) = crate::paths::build_dir(root) {
        cmd.env("CARGO_TARGET_DIR", dir);
    }
    let child = cmd.spawn()?;
    // The command keeps our copies of the pipe's write end until dropped;
    // without this the read side would never see end of file.
    drop(cmd);
    Ok((child, receiver))
}

/// A process group (its id is the leader's pid). Killed when dropped too,
/// so an abandoned call leaves nothing running.
struct ProcessGroup {
    id: libc::pid_t,
    armed: bool,
}

/// Every process group running right now, so a forced exit (a second
/// Ctrl-C) can still take them down: destructors do not run then.
static LIVE_GROUPS: Mutex<Vec<GroupRecord>> = Mutex::new(Vec::new());

/// The process groups of commands agents started (`bash`, background jobs,
/// verification, diagnostics: jobs run with a sandbox profile), running
/// right now; not orch's own helpers or MCP servers.
static AGENT_GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// The process group ids of [`AGENT_GROUPS`]: which processes a tool that
/// serves the mission's own servers (`http`) may count as the mission's.
pub fn agent_groups() -> Vec<i32> {
    AGENT_GROUPS.lock().map(|g| g.clone()).unwrap_or_default()
}

/// SIGKILL every process group still running. For the moment before a
/// forced exit; normal shutdown kills each group on its own.
pub fn kill_every_group() {
    for record in live_groups() {
        // SAFETY: killpg has no memory-safety preconditions.
        unsafe { libc::killpg(record.pgid, libc::SIGKILL) };
    }
}

/// A process group orch started, identified beyond its number.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupRecord {
    pub pgid: i32,
    /// The leader's start time, in clock ticks since boot (`/proc/<pid>/stat`).
    pub started: u64,
    /// `/proc/sys/kernel/random/boot_id`: a start time means nothing across
    /// boots.
    pub boot_id: String,
}

impl GroupRecord {
    fn of(pgid: i32) -> GroupRecord {
        GroupRecord {
            pgid,
            started: start_time(pgid).unwrap_or(0),
            boot_id: boot_id(),
        }
    }
}

/// The process groups orch runs right now.
pub fn live_groups() -> Vec<GroupRecord> {
    LIVE_GROUPS.lock().map(|g| g.clone()).unwrap_or_default()
}

/// How many times [`LIVE_GROUPS`] changed, and the wake-up of those who
/// record it (the mission state lists the groups, so `orch resume` can kill
/// what a killed orch left: it must hear of a group when it starts, not at
/// the next event, which a long blocking command may never bring).
static GROUP_CHANGES: (Mutex<u64>, std::sync::Condvar) = (Mutex::new(0), std::sync::Condvar::new());

fn groups_changed() {
    let (count, wake) = &GROUP_CHANGES;
    if let Ok(mut count) = count.lock() {
        *count += 1;
        wake.notify_all();
    }
}

/// Wait up to `limit` for the live groups to change after change number
/// `seen`; the number of the latest change (`seen` when none came).
pub fn wait_for_group_change(seen: u64, limit: std::time::Duration) -> u64 {
    let (count, wake) = &GROUP_CHANGES;
    let Ok(guard) = count.lock() else {
        return seen;
    };
    match wake.wait_timeout_while(guard, limit, |count| *count == seen) {
        Ok((count, _)) => *count,
        Err(_) => seen,
    }
}

/// Kill the groups of `records` that are still the ones recorded (a run of
/// orch that was killed left them); how many were killed. A group counts as
/// the recorded one when the boot is the same and either its leader still
/// runs with the recorded start time, or the leader is gone but members of
/// the group remain (a process group id cannot be reused while any member
/// lives). Anything else is left alone.
pub fn reap(records: &[GroupRecord]) -> usize {
    let boot = boot_id();
    let mut killed = 0;
    for record in records {
        if record.boot_id != boot || record.pgid <= 1 {
            continue;
        }
        let ours = match start_time(record.pgid) {
            Some(started) => started == record.started,
            None => group_has_members(record.pgid),
        };
        // SAFETY: killpg has no memory-safety preconditions.
        if ours && unsafe { libc::killpg(record.pgid, libc::SIGKILL) } == 0 {
            killed += 1;
        }
    }
    killed
}

/// Field 22 of `/proc/<pid>/stat`: when the process started.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count
    // from the last ')'.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// Whether any process is in process group `pgid` (field 5 of its stat).
fn group_has_members(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
            return false;
        };
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .nth(2)?
                    .parse::<i32>()
                    .ok()
            })
            == Some(pgid)
    })
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_string())
        .unwrap_or_default()
}

/// The watchdog's script: the live groups come in as `add N` / `del N`
/// lines; at end of file (orch is gone), every group left is killed.
const WATCHDOG: &str = r#"trap '' HUP INT TERM PIPE
groups=""
while read -r verb group; do
  case "$verb" in
    add) groups="$groups $group" ;;
    del) kept=""; for g in $groups; do [ "$g" = "$group" ] || kept="$kept $g"; done; groups="$kept" ;;
  esac
done
for g in $groups; do kill -KILL "-$g" 2>/dev/null; done
"#;

/// The write end of the watchdog's pipe (close-on-exec: no child holds
/// it), started on first use; `None` where it could not start.
fn watchdog() -> Option<&'static Mutex<std::fs::File>> {
    static PIPE: std::sync::OnceLock<Option<Mutex<std::fs::File>>> = std::sync::OnceLock::new();
    PIPE.get_or_init(|| start_watchdog().ok().map(Mutex::new))
        .as_ref()
}

fn start_watchdog() -> io::Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    use std::os::unix::process::CommandExt as _;
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned here.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    std::process::Command::new("sh")
        .args(["-c", WATCHDOG])
        .stdin(Stdio::from(read))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()?;
    Ok(std::fs::File::from(write))
}

/// Tell the watchdog a group started (`add`) or ended (`del`).
fn tell_watchdog(verb: &str, pgid: i32) {
    use std::io::Write as _;
    if let Some(pipe) = watchdog()
        && let Ok(mut pipe) = pipe.lock()
    {
        let _ = pipe.write_all(format!("{verb} {pgid}\n").as_bytes());
    }
}

impl ProcessGroup {
    fn new(id: libc::pid_t) -> Self {
        tell_watchdog("add", id);
        if let Ok(mut groups) = LIVE_GROUPS.lock() {
            groups.push(GroupRecord::of(id));
        }
        groups_changed();
        ProcessGroup { id, armed: true }
    }

    /// Count this group among the agents' commands until it ends.
    fn mark_agents(&self) {
        if let Ok(mut groups) = AGENT_GROUPS.lock() {
            groups.push(self.id);
        }
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
            groups.retain(|record| record.pgid != self.id);
        }
        if let Ok(mut groups) = AGENT_GROUPS.lock() {
            groups.retain(|pgid| *pgid != self.id);
        }
        groups_changed();
        tell_watchdog("del", self.id);
    }
}

/// The bounded part of a stream being kept.
enum Capture {
    Tail(Tail),
    Head {
        cap: usize,
        buf: Vec<u8>,
        dropped: u64,
    },
}

impl Capture {
    fn new(keep: Keep) -> Capture {
        match keep {
            Keep::Tail(cap) => Capture::Tail(Tail::new(cap.max(1))),
            Keep::Head(cap) => Capture::Head {
                cap,
                buf: Vec::new(),
                dropped: 0,
            },
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        match self {
            Capture::Tail(tail) => tail.push(bytes),
            Capture::Head { cap, buf, dropped } => {
                let room = cap.saturating_sub(buf.len()).min(bytes.len());
                buf.extend_from_slice(&bytes[..room]);
                *dropped += (bytes.len() - room) as u64;
            }
        }
    }

    fn finish(self) -> (String, u64) {
        match self {
            Capture::Tail(tail) => {
                let dropped = tail.dropped;
                (tail.finish(), dropped)
            }
            Capture::Head { buf, dropped, .. } => {
                // A character cut at the end is dropped whole, not mangled.
                let valid = match std::str::from_utf8(&buf) {
                    Err(err) if err.error_len().is_none() => err.valid_up_to(),
                    _ => buf.len(),
                };
                let text = String::from_utf8_lossy(&buf[..valid]).into_owned();
                (text, dropped + (buf.len() - valid) as u64)
            }
        }
    }
}

/// The last `cap` bytes of a stream, and how many came before them.
pub struct Tail {
    cap: usize,
    buf: Vec<u8>,
    dropped: u64,
}

impl Tail {
    pub fn new(cap: usize) -> Self {
        Tail {
            cap,
            buf: Vec::new(),
            dropped: 0,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
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
    pub fn snapshot(&self) -> String {
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

    fn helper<'a>(args: &'a [OsString], cwd: &'a Path, stdin: Option<&[u8]>) -> Helper<'a> {
        Helper {
            program: OsStr::new("sh"),
            args,
            cwd,
            env: scrubbed_env(std::env::vars_os()),
            stdin: stdin.map(<[u8]>::to_vec),
            timeout: Duration::from_secs(60),
            max_stdout: 1024,
        }
    }

    /// Whether process `pid` still runs (a zombie has ended).
    fn running(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| Some(stat.rsplit_once(')')?.1.trim_start().starts_with('Z')))
            .is_some_and(|zombie| !zombie)
    }

    #[test]
    fn a_helper_gets_its_stdin_and_keeps_stdout_and_stderr_apart() {
        let dir = tempfile::tempdir().unwrap();
        let args = ["-c".into(), "cat; echo oops >&2; exit 3".into()];
        let output = run_helper(helper(&args, dir.path(), Some(b"in\n"))).unwrap();
        assert_eq!(output.stdout, b"in\n");
        assert_eq!(output.stderr, b"oops\n");
        assert_eq!(output.status.code(), Some(3));
    }

    #[test]
    fn a_helper_past_its_timeout_is_killed_with_what_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let args = ["-c".into(), "sleep 120 & echo $! > pid; wait".into()];
        let mut job = helper(&args, dir.path(), None);
        job.timeout = Duration::from_millis(500);
        let err = run_helper(job).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        let pid: i32 = std::fs::read_to_string(dir.path().join("pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Killed: its pipe closes as it exits, a moment before it is a
        // zombie, so it is given a little while to get there.
        let killed_by = std::time::Instant::now() + Duration::from_secs(5);
        while running(pid) && std::time::Instant::now() < killed_by {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!running(pid), "the helper's child {pid} outlived it");
    }

    #[test]
    fn a_helper_fed_and_read_a_megabyte_at_once_does_not_deadlock() {
        let dir = tempfile::tempdir().unwrap();
        let args = ["-c".into(), "cat; echo end >&2".into()];
        let input: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
        let mut job = helper(&args, dir.path(), Some(&input));
        job.max_stdout = 2 << 20;
        let output = run_helper(job).unwrap();
        assert!(output.stdout == input, "{} bytes back", output.stdout.len());
        assert_eq!(output.stderr, b"end\n");
        assert!(output.status.success());
    }

    #[test]
    fn a_helper_whose_escaped_child_keeps_its_pipes_open_still_returns() {
        let dir = tempfile::tempdir().unwrap();
        // The child leaves the group (setsid) holding stdout and stderr.
        let args = [
            "-c".into(),
            "setsid sh -c 'echo $$ > pid.new; mv pid.new pid; exec sleep 60' & \
             while [ ! -e pid ]; do sleep 0.01; done; echo done; exit 4"
                .into(),
        ];
        let (sender, receiver) = std::sync::mpsc::channel();
        let run = {
            let (args, cwd) = (args.to_vec(), dir.path().to_path_buf());
            std::thread::spawn(move || {
                let job = helper(&args, &cwd, None);
                let _ = sender.send(run_helper(job));
            })
        };
        let output = receiver
            .recv_timeout(Duration::from_secs(20))
            .expect("run_helper returned")
            .unwrap();
        run.join().unwrap();
        assert_eq!(output.stdout, b"done\n");
        assert_eq!(output.status.code(), Some(4));
        let pid: i32 = std::fs::read_to_string(dir.path().join("pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }

    #[test]
    fn a_helper_writing_past_its_bound_fails_instead_of_being_cut() {
        let dir = tempfile::tempdir().unwrap();
        let args = ["-c".into(), "head -c 100000 /dev/zero; sleep 120".into()];
        let err = run_helper(helper(&args, dir.path(), None)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge, "{err}");
        assert!(err.to_string().contains("more than 1024 bytes"), "{err}");
    }

    #[test]
    fn secrets_are_recognised() {
        for name in [
            "OPENAI_API_KEY",
            "ANTHROPIC_API_KEY",
            "groq_api_key",
            "ANTHROPIC_AUTH_TOKEN",
            "GITHUB_TOKEN",
            "MY_API_KEYS",
        ] {
            assert!(is_secret(OsStr::new(name)), "{name}");
        }
        for name in ["PATH", "HOME", "CARGO_HOME", "KEYBOARD_LAYOUT"] {
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

    #[test]
    fn head_keeps_the_start_while_reading_and_counts_the_rest() {
        let mut head = Capture::new(Keep::Head(4));
        head.push("aé".as_bytes());
        head.push(b"bcdef");
        // "aéb" is exactly 4 bytes.
        assert_eq!(head.finish(), ("aéb".to_string(), 4));
        let mut head = Capture::new(Keep::Head(2));
        head.push("aé".as_bytes());
        // The cut `é` is dropped whole and counted.
        assert_eq!(head.finish(), ("a".to_string(), 2));
    }

    #[tokio::test]
    async fn a_program_runs_without_a_shell_and_its_output_is_bounded_while_read() {
        let dir = tempfile::tempdir().unwrap();
        let cancel = CancellationToken::new();
        let args: Vec<OsString> = vec!["-c".into(), "yes | head -c 100000".into()];
        let finished = run(Job {
            program: Program::Exec("sh".as_ref(), &args),
            root: dir.path(),
            timeout: Duration::from_secs(10),
            cancel: &cancel,
            keep: Keep::Head(10),
            env: scrubbed_env(std::env::vars_os()),
            live: None,
            sandbox: None,
        })
        .await
        .unwrap();
        assert_eq!(finished.output, "y\ny\ny\ny\ny\n");
        assert_eq!(finished.omitted, 99_990);
        assert_eq!(finished.exit_code, Some(0));

        let missing = run(Job {
            program: Program::Exec("orch-no-such-program".as_ref(), &[]),
            ..Job::shell(
                Shell::Sh,
                "",
                dir.path(),
                Duration::from_secs(1),
                &cancel,
                10,
            )
        })
        .await
        .unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }
}

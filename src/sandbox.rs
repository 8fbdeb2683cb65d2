//! The OS sandbox around the processes orch starts for agents and checks
//! (bash, background jobs, verify, diagnostics), Linux only.
//!
//! The launcher does not fork into a sandbox itself (allocating between
//! fork and exec in a threaded process is unsafe); it runs orch again as a
//! small single-threaded helper, `orch __sandbox <spec> -- <program> <args>`,
//! which sets the sandbox up and then execs the program:
//!
//! 1. the run's user and network namespace (held by `orch __sandbox-net`,
//!    loopback up, shared by every sandboxed process of the run; unless
//!    `sandbox.network`), then a mount namespace of its own;
//! 2. mounts made private, then `.git/`, `.opencode/` and the user's orch
//!    config bind-mounted read-only (Landlock cannot carve a subtree out of
//!    a writable root), the user session's sockets (`$XDG_RUNTIME_DIR`,
//!    Docker's, `$SSH_AUTH_SOCK`) covered;
//! 3. servers and clients of one run talk over its loopback; nothing
//!    reaches the host's network or its loopback;
//! 4. Landlock: writes only beneath the writable roots (the task's root for
//!    writing roles, the temp directories, toolchain caches,
//!    `sandbox.writable_roots`), reads everywhere; `no_new_privs`.
//!
//! What is and is not defended: docs/security.md.

use std::ffi::{CString, OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use crate::config::SandboxMode;

/// Which file profile a process gets: an agent that may write files gets
/// the task's root; a read-only one (orchestrator, planner, reviewer, a
/// custom agent without `canWrite`) does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Write,
    Read,
}

impl Profile {
    /// The profile of `agent`'s processes, from what its tool set allows.
    pub fn of(agent: &crate::agents::Agent) -> Profile {
        if agent.capabilities().write {
            Profile::Write
        } else {
            Profile::Read
        }
    }
}

/// What the helper sets up, passed to it as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    /// Writes allowed beneath these.
    pub writable: Vec<PathBuf>,
    /// Mounted read-only (inside a writable root or not).
    pub read_only: Vec<PathBuf>,
    /// Inside a read-only mount, mounted writable again (a read-only
    /// project's build output).
    #[serde(default)]
    pub writable_again: Vec<PathBuf>,
    /// Covered: a directory by an empty tmpfs, a file or socket by /dev/null.
    pub hidden: Vec<PathBuf>,
    /// Keep the host's network.
    pub network: bool,
    /// Join the network namespace of this process (the run's holder), so
    /// every command of a mission shares one loopback; `None`: a namespace
    /// of this command's own.
    #[serde(default)]
    pub netns: Option<u32>,
}

/// The sandbox of this run, as decided at start.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub mode: SandboxMode,
    /// The orch binary that acts as the helper (this process's own, unless
    /// a program embedding the library names one).
    helper: PathBuf,
    root: PathBuf,
    caches: Vec<PathBuf>,
    writable_roots: Vec<PathBuf>,
    read_only: Vec<PathBuf>,
    hidden: Vec<PathBuf>,
    network: bool,
}

static CURRENT: RwLock<Option<Sandbox>> = RwLock::new(None);

/// Use `sandbox` for every sandboxed process from now on (`None`: none).
pub fn install(sandbox: Option<Sandbox>) {
    *CURRENT.write().expect("sandbox lock") = sandbox;
}

/// The sandbox in force, if any.
pub fn current() -> Option<Sandbox> {
    CURRENT
        .read()
        .expect("sandbox lock")
        .clone()
        .filter(|sandbox| sandbox.mode != SandboxMode::Off)
}

impl Sandbox {
    /// The sandbox for the project at `root`.
    pub fn new(
        mode: SandboxMode,
        root: &Path,
        writable_roots: &[PathBuf],
        network: bool,
    ) -> Sandbox {
        let home = dirs::home_dir();
        let env_dir = |name: &str| std::env::var_os(name).map(PathBuf::from);
        // Only where toolchains keep downloads and builds: never their
        // binaries, `~/.cargo/env`, config files or installed toolchains,
        // which run later outside the sandbox.
        let mut caches: Vec<PathBuf> = Vec::new();
        let cargo_home =
            env_dir("CARGO_HOME").or_else(|| home.as_ref().map(|home| home.join(".cargo")));
        if let Some(cargo) = &cargo_home {
            caches.push(cargo.join("registry"));
            caches.push(cargo.join("git"));
        }
        if let Some(home) = &home {
            for dir in [
                ".cache",
                ".npm/_cacache",
                ".local/share/pnpm/store",
                "go/pkg/mod",
            ] {
                caches.push(home.join(dir));
            }
        }
        for name in [
            "CARGO_TARGET_DIR",
            "GOCACHE",
            "GOMODCACHE",
            "npm_config_cache",
            "PIP_CACHE_DIR",
            "XDG_CACHE_HOME",
        ] {
            // Named by the user for a toolchain's output, so made now
            // if missing: a rule needs a directory that exists, and the
            // toolchain inside could not create it beneath a parent it
            // may not write.
            if let Some(dir) = env_dir(name) {
                let _ = std::fs::create_dir_all(&dir);
                caches.push(dir);
            }
        }
        // A project's own build output is a toolchain cache too: a
        // reviewer's `cargo test` builds into it (made for a Rust project,
        // whose reviewer may not write the root).
        let target = root.join("target");
        if std::env::var_os("CARGO_TARGET_DIR").is_none() && root.join("Cargo.toml").is_file() {
            let _ = std::fs::create_dir_all(&target);
        }
        caches.push(target);
        let mut read_only = vec![root.join(".git"), root.join(".opencode")];
        read_only.extend(dirs::config_dir().map(|dir| dir.join("orch")));
        let mut hidden: Vec<PathBuf> = Vec::new();
        // orch's own compiled-plugin cache and its key: native code the
        // next run loads. Made now if missing, so a command cannot create
        // it with a key of its own choosing.
        if let Some(dir) = dirs::cache_dir().map(|dir| dir.join("orch")) {
            use std::os::unix::fs::DirBuilderExt;
            let _ = std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir);
            hidden.push(dir);
        }
        // The user session's sockets: agents, buses, multiplexers, X.
        hidden.extend(env_dir("XDG_RUNTIME_DIR"));
        hidden.extend(env_dir("SSH_AUTH_SOCK"));
        if let Some(tmux) = std::env::var("TMUX")
            .ok()
            .and_then(|value| value.split(',').next().map(PathBuf::from))
        {
            hidden.extend(tmux.parent().map(Path::to_path_buf));
        }
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        for path in [
            format!("/tmp/tmux-{uid}"),
            "/tmp/.X11-unix".to_string(),
            "/var/run/screen".to_string(),
            "/run/screen".to_string(),
        ] {
            hidden.push(PathBuf::from(path));
        }
        hidden.push(PathBuf::from("/var/run/docker.sock"));
        hidden.push(PathBuf::from("/run/docker.sock"));
        Sandbox {
            mode,
            helper: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe")),
            root: root.to_path_buf(),
            caches,
            writable_roots: writable_roots.to_vec(),
            read_only,
            hidden,
            network,
        }
    }

    /// Use the orch binary at `path` as the helper (benchmarks and tools
    /// that embed the library are not orch themselves).
    pub fn with_helper(mut self, path: impl Into<PathBuf>) -> Sandbox {
        self.helper = path.into();
        self
    }

    /// What the helper sets up for a process of `profile` working in
    /// `root`: the project's root, or a task's worktree inside it.
    pub fn spec(&self, profile: Profile, root: &Path) -> Spec {
        // Devices: the harmless ones only (never a terminal).
        let mut writable: Vec<PathBuf> = ["/dev/null", "/dev/zero", "/dev/full", "/dev/shm"]
            .iter()
            .map(PathBuf::from)
            .collect();
        writable.extend(std::env::var_os("TMPDIR").map(PathBuf::from));
        writable.push(std::env::temp_dir());
        writable.push(PathBuf::from("/tmp"));
        writable.push(PathBuf::from("/var/tmp"));
        // A folder inside the project may have become a link (an agent can
        // make `target` point anywhere): such a one is left out, or a rule
        // on it would open wherever it points.
        let caches: Vec<&PathBuf> = self
            .caches
            .iter()
            .chain(&self.writable_roots)
            .filter(|path| !linked_inside(&self.root, path))
            .collect();
        writable.extend(caches.iter().map(|path| (*path).clone()));
        let mut read_only = self.read_only.clone();
        let mut writable_again = Vec::new();
        let writer = profile == Profile::Write && self.mode == SandboxMode::WorkspaceWrite;
        if writer && root == self.root {
            writable.push(self.root.clone());
        } else {
            // A project beneath a writable folder (the temp directory) is
            // mounted read-only, its caches writable again.
            read_only.insert(0, self.root.clone());
            writable_again.extend(
                caches
                    .iter()
                    .filter(|path| path.starts_with(&self.root) && **path != &self.root)
                    .map(|path| (*path).clone()),
            );
        }
        if root != self.root {
            // A task's worktree (beneath the project's read-only
            // `.opencode/`): a writer may write it, not the user's tree;
            // its git link and engine folder stay read-only.
            if writer {
                writable.push(root.to_path_buf());
                writable_again.push(root.to_path_buf());
                if let Some(build) = crate::paths::build_dir(root) {
                    writable.push(build.clone());
                    writable_again.push(build);
                }
            }
            read_only.push(root.join(".git"));
            read_only.push(root.join(".opencode"));
        }
        writable.sort();
        writable.dedup();
        Spec {
            writable,
            read_only,
            writable_again,
            hidden: self.hidden.clone(),
            network: self.network,
            netns: if self.network {
                None
            } else {
                network_holder(&self.helper)
            },
        }
    }

    /// The program and arguments that run `program args` inside the
    /// sandbox of `profile`.
    pub fn wrap(
        &self,
        profile: Profile,
        root: &Path,
        program: &OsStr,
        args: &[OsString],
    ) -> (OsString, Vec<OsString>) {
        let exe = self.helper.clone().into_os_string();
        let spec = serde_json::to_string(&self.spec(profile, root)).expect("a spec serializes");
        let mut wrapped: Vec<OsString> = vec![
            HELPER.into(),
            spec.into(),
            "--".into(),
            program.to_os_string(),
        ];
        wrapped.extend(args.iter().cloned());
        (exe, wrapped)
    }

    /// The orch binary that acts as the helper.
    pub fn helper(&self) -> &Path {
        &self.helper
    }

    /// Whether sandboxed processes share the run's network namespace
    /// (held by `orch __sandbox-net`) rather than the host's network.
    pub fn isolates_network(&self) -> bool {
        self.mode != SandboxMode::Off && !self.network
    }

    /// A sentence for the model when a sandboxed command failed on a path.
    pub fn explain(&self, profile: Profile, root: &Path) -> String {
        let writes = if profile == Profile::Write && self.mode == SandboxMode::WorkspaceWrite {
            format!("{} (not .git/ or .opencode/)", root.display())
        } else {
            "nowhere in the project (this agent's role is read-only)".to_string()
        };
        let network = if self.network {
            "the network is open"
        } else {
            "network: loopback of this command only"
        };
        format!(
            "{BLOCKED} this command may write in {writes}, the temp directory and toolchain caches; {network}]"
        )
    }
}

/// Whether `path`, inside `root`, is or goes through a symbolic link.
fn linked_inside(root: &Path, path: &Path) -> bool {
    let Ok(relative) = path.strip_prefix(root) else {
        return false;
    };
    let mut current = root.to_path_buf();
    relative.components().any(|part| {
        current.push(part);
        std::fs::symlink_metadata(&current).is_ok_and(|meta| meta.file_type().is_symlink())
    })
}

/// How the note on a command the sandbox refused begins.
pub const BLOCKED: &str = "[blocked by orch's sandbox:";

/// The first argument that makes orch the sandbox helper.
pub const HELPER: &str = "__sandbox";

/// The first argument that makes orch the holder of a run's network
/// namespace.
pub const NET_HOLDER: &str = "__sandbox-net";

/// The run's network holder: started on first use, it keeps one user and
/// network namespace (loopback up) alive for as long as orch holds its
/// stdin, and ends when orch does (the pipe closes, SIGKILL included).
static HOLDER: std::sync::Mutex<Option<(std::process::Child, u32)>> = std::sync::Mutex::new(None);

/// The holder's pid, starting it if needed; `None` when it cannot run
/// (each command then gets a namespace of its own).
fn network_holder(helper: &Path) -> Option<u32> {
    let mut holder = HOLDER.lock().ok()?;
    if let Some((child, pid)) = holder.as_mut() {
        if matches!(child.try_wait(), Ok(None)) {
            return Some(*pid);
        }
        *holder = None;
    }
    use std::io::BufRead;
    let mut child = std::process::Command::new(helper)
        .arg(NET_HOLDER)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let mut ready = String::new();
    std::io::BufReader::new(child.stdout.take()?)
        .read_line(&mut ready)
        .ok()?;
    if ready.trim() != "ready" {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    let pid = child.id();
    *holder = Some((child, pid));
    Some(pid)
}

/// The pid of the run's network holder when it runs, without starting it:
/// every process that lives in its namespace, and only those, belong to
/// this run. `None` when no sandboxed command has needed it yet.
pub fn running_holder() -> Option<u32> {
    let mut holder = HOLDER.lock().ok()?;
    let (child, pid) = holder.as_mut()?;
    matches!(child.try_wait(), Ok(None)).then_some(*pid)
}

/// Enter the user and network namespaces of the run's holder `pid`, so
/// this process reaches the run's loopback (orch's helpers that talk to
/// what commands started there).
///
/// # Safety
///
/// The calling process must be single-threaded: the kernel refuses a
/// threaded process entering a user namespace.
pub unsafe fn enter_run_network(pid: u32) -> Result<(), String> {
    // SAFETY: single-threaded, as the caller promised.
    unsafe { join_network(pid) }
}

/// Whether the kernel lets this process build the sandbox: runs the helper
/// once on `true`.
pub fn probe(sandbox: &Sandbox) -> Result<(), String> {
    let root = sandbox.root.clone();
    let (program, args) = sandbox.wrap(Profile::Write, &root, OsStr::new("true"), &[]);
    let output = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|err| format!("cannot start the sandbox helper: {err}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

/// When orch runs as the helper (`orch __sandbox SPEC -- PROGRAM ARGS…`):
/// set the sandbox up and exec the program; never returns then. `None`
/// when this is not the helper.
pub fn helper_main() -> Option<std::process::ExitCode> {
    let mut args = std::env::args_os().skip(1);
    let first = args.next();
    if first.as_deref() == Some(OsStr::new(NET_HOLDER)) {
        return Some(hold_network());
    }
    if first.as_deref() != Some(OsStr::new(HELPER)) {
        return None;
    }
    let fail = |message: String| {
        eprintln!("orch sandbox: {message}");
        Some(std::process::ExitCode::from(126))
    };
    let Some(spec) = args.next() else {
        return fail("no spec".into());
    };
    let spec: Spec = match serde_json::from_str(&spec.to_string_lossy()) {
        Ok(spec) => spec,
        Err(err) => return fail(format!("bad spec: {err}")),
    };
    if args.next().as_deref() != Some(OsStr::new("--")) {
        return fail("expected -- before the program".into());
    }
    let Some(program) = args.next() else {
        return fail("no program".into());
    };
    if let Err(err) = enter(&spec) {
        return fail(err);
    }
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new(&program).args(args).exec();
    eprintln!(
        "orch sandbox: cannot run {}: {err}",
        program.to_string_lossy()
    );
    Some(std::process::ExitCode::from(127))
}

/// The network holder: a user and network namespace with loopback up,
/// kept until stdin closes.
fn hold_network() -> std::process::ExitCode {
    // SAFETY: single-threaded; plain syscalls on this process.
    let made = unsafe {
        let (uid, gid) = (libc::geteuid(), libc::getegid());
        if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) != 0 {
            Err(last_error("unshare (user and network namespaces)"))
        } else {
            map_ids(uid, gid).and_then(|()| loopback_up())
        }
    };
    if let Err(err) = made {
        eprintln!("orch sandbox: {err}");
        return std::process::ExitCode::from(126);
    }
    println!("ready");
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
    std::process::ExitCode::SUCCESS
}

/// Map `uid` and `gid` to themselves in a new user namespace.
fn map_ids(uid: libc::uid_t, gid: libc::gid_t) -> Result<(), String> {
    std::fs::write("/proc/self/setgroups", "deny").map_err(|err| format!("setgroups: {err}"))?;
    std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1"))
        .map_err(|err| format!("uid_map: {err}"))?;
    std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1"))
        .map_err(|err| format!("gid_map: {err}"))
}

/// Enter the user and network namespaces of process `pid`.
unsafe fn join_network(pid: u32) -> Result<(), String> {
    for (kind, flag) in [("user", libc::CLONE_NEWUSER), ("net", libc::CLONE_NEWNET)] {
        let path = c_path(Path::new(&format!("/proc/{pid}/ns/{kind}")))?;
        // SAFETY: a path this function built; the fd is closed below.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(last_error(&format!("opening the run's {kind} namespace")));
            }
            let joined = libc::setns(fd, flag);
            libc::close(fd);
            if joined != 0 {
                return Err(last_error(&format!("joining the run's {kind} namespace")));
            }
        }
    }
    Ok(())
}

fn last_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn c_path(path: &Path) -> Result<CString, String> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("{} has a NUL byte", path.display()))
}

/// Build the sandbox around this (single-threaded) process.
fn enter(spec: &Spec) -> Result<(), String> {
    // SAFETY: plain syscalls on this process; it is single-threaded (the
    // helper has started nothing), as unshare(CLONE_NEWUSER) requires.
    unsafe {
        let uid = libc::geteuid();
        let gid = libc::getegid();
        match spec.netns {
            // The run's shared namespaces (ids mapped by the holder), then
            // a mount namespace of this command's own.
            Some(pid) if !spec.network => {
                join_network(pid)?;
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return Err(last_error("unshare (mount namespace)"));
                }
            }
            _ => {
                let mut flags = libc::CLONE_NEWUSER | libc::CLONE_NEWNS;
                if !spec.network {
                    flags |= libc::CLONE_NEWNET;
                }
                if libc::unshare(flags) != 0 {
                    return Err(last_error("unshare (user, mount and network namespaces)"));
                }
                map_ids(uid, gid)?;
            }
        }
        let root = c_path(Path::new("/"))?;
        if libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return Err(last_error("making mounts private"));
        }
        for path in &spec.read_only {
            if path.exists() {
                bind(path, true)?;
            }
        }
        for path in &spec.writable_again {
            if path.exists() {
                bind(path, false)?;
            }
        }
        // What must stay read-only inside a folder made writable again.
        for path in &spec.read_only {
            let inside = spec
                .writable_again
                .iter()
                .any(|again| path.starts_with(again) && path != again);
            if inside && path.exists() {
                bind(path, true)?;
            }
        }
        // The working directory was entered before these mounts: enter it
        // again through them, or relative paths would bypass a read-only
        // mount of the folder it is in.
        if let Ok(cwd) = std::env::current_dir() {
            std::env::set_current_dir(&cwd)
                .map_err(|err| format!("entering {} again: {err}", cwd.display()))?;
        }
        for path in &spec.hidden {
            if std::fs::symlink_metadata(path).is_ok() {
                hide(path)?;
            }
        }
        if !spec.network && spec.netns.is_none() {
            loopback_up()?;
        }
        // Give up the controlling terminal: nothing in the sandbox can open
        // /dev/tty to write to it or push keystrokes into it.
        let tty = CString::new("/dev/tty").expect("no NUL");
        let fd = libc::open(
            tty.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if fd >= 0 {
            libc::ioctl(fd, libc::TIOCNOTTY);
            libc::close(fd);
        }
    }
    restrict_writes(&spec.writable)
}

/// Bind `path` onto itself, read-only or writable, keeping the flags the
/// kernel locks for an unprivileged namespace (nosuid, nodev, noexec).
unsafe fn bind(path: &Path, read_only: bool) -> Result<(), String> {
    let target = c_path(path)?;
    let shown = path.display();
    // SAFETY: valid C strings; mount(2) touches only this namespace.
    unsafe {
        if libc::mount(
            target.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        ) != 0
        {
            return Err(last_error(&format!("bind-mounting {shown}")));
        }
        let mut stat: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(target.as_ptr(), &mut stat) != 0 {
            return Err(last_error(&format!("statvfs {shown}")));
        }
        let mut flags = libc::MS_BIND | libc::MS_REMOUNT;
        if read_only {
            flags |= libc::MS_RDONLY;
        }
        for (st, ms) in [
            (libc::ST_NOSUID, libc::MS_NOSUID),
            (libc::ST_NODEV, libc::MS_NODEV),
            (libc::ST_NOEXEC, libc::MS_NOEXEC),
            (libc::ST_NOATIME, libc::MS_NOATIME),
            (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
            (libc::ST_RELATIME, libc::MS_RELATIME),
        ] {
            if stat.f_flag & st != 0 {
                flags |= ms;
            }
        }
        if libc::mount(
            std::ptr::null(),
            target.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        ) != 0
        {
            let made = if read_only { "read-only" } else { "writable" };
            return Err(last_error(&format!("making {shown} {made}")));
        }
    }
    Ok(())
}

/// Cover `path`: a directory with an empty tmpfs, anything else with
/// /dev/null.
unsafe fn hide(path: &Path) -> Result<(), String> {
    let target = c_path(path)?;
    let shown = path.display();
    // SAFETY: valid C strings; mount(2) touches only this namespace.
    unsafe {
        if path.is_dir() {
            let fs = CString::new("tmpfs").expect("no NUL");
            let options = CString::new("size=64k,mode=700").expect("no NUL");
            if libc::mount(
                fs.as_ptr(),
                target.as_ptr(),
                fs.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                options.as_ptr().cast(),
            ) != 0
            {
                return Err(last_error(&format!("covering {shown}")));
            }
        } else {
            let null = CString::new("/dev/null").expect("no NUL");
            if libc::mount(
                null.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ) != 0
            {
                return Err(last_error(&format!("covering {shown}")));
            }
        }
    }
    Ok(())
}

/// Bring `lo` up in this (new) network namespace.
unsafe fn loopback_up() -> Result<(), String> {
    // SAFETY: an ioctl on a socket this function owns, with a zeroed,
    // NUL-terminated ifreq.
    unsafe {
        let socket = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if socket < 0 {
            return Err(last_error("socket for loopback"));
        }
        let mut request: libc::ifreq = std::mem::zeroed();
        for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
            *slot = *byte as libc::c_char;
        }
        let result = if libc::ioctl(socket, libc::SIOCGIFFLAGS, &mut request) != 0 {
            Err(last_error("reading loopback flags"))
        } else {
            request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(socket, libc::SIOCSIFFLAGS, &request) != 0 {
                Err(last_error("bringing loopback up"))
            } else {
                Ok(())
            }
        };
        libc::close(socket);
        result
    }
}

/// Landlock: writes only beneath `writable`; reads anywhere.
fn restrict_writes(writable: &[PathBuf]) -> Result<(), String> {
    use landlock::{
        ABI, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, path_beneath_rules,
    };
    let abi = ABI::V5;
    let existing: Vec<&PathBuf> = writable.iter().filter(|path| path.exists()).collect();
    let status = Ruleset::default()
        .handle_access(AccessFs::from_write(abi))
        .and_then(|ruleset| ruleset.create())
        .and_then(|ruleset| {
            ruleset.add_rules(path_beneath_rules(existing, AccessFs::from_write(abi)))
        })
        .and_then(|ruleset| ruleset.restrict_self())
        .map_err(|err| format!("Landlock: {err}"))?;
    match status.ruleset {
        RulesetStatus::NotEnforced => Err("Landlock is not available in this kernel".into()),
        RulesetStatus::FullyEnforced | RulesetStatus::PartiallyEnforced => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_gets_the_root_a_reader_does_not() {
        let root = PathBuf::from("/work/project");
        // With the host's network: no namespace holder is started here.
        let sandbox = Sandbox::new(
            SandboxMode::WorkspaceWrite,
            &root,
            &[PathBuf::from("/opt/extra")],
            true,
        );
        let write = sandbox.spec(Profile::Write, &root);
        assert!(write.writable.contains(&root));
        assert!(write.writable.contains(&PathBuf::from("/opt/extra")));
        assert!(write.read_only.contains(&root.join(".git")));
        assert!(write.read_only.contains(&root.join(".opencode")));
        let read = sandbox.spec(Profile::Read, &root);
        assert!(!read.writable.contains(&root));
        assert!(read.writable.contains(&root.join("target")));
        let read_only_mode = Sandbox::new(SandboxMode::ReadOnly, &root, &[], true);
        assert!(
            !read_only_mode
                .spec(Profile::Write, &root)
                .writable
                .contains(&root)
        );
    }
}

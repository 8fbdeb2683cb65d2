//! Nothing outlives orch: SIGTERM (a CI cancel) and SIGHUP (a closed
//! terminal, through a real pseudo-terminal, with plain lines and under the
//! live view) stop a mission cleanly with
//! exit 143 and 129, state persisted and every process killed; after
//! SIGKILL the watchdog kills what was running, grandchildren included; a
//! blocking command's group is in the state as soon as it starts, and when
//! the watchdog died too, `orch resume` kills it; the next run kills what
//! its state recorded, but never a process that only reuses a recorded
//! number.

use std::os::unix::process::CommandExt as _;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::project::{Project, call, run};

/// A mission whose Worker starts a background job and then blocks in
/// `bash`; both write the pids of what they started.
fn busy_mission(project: &Project) {
    project.write(
        ".opencode/orch.json",
        &json!({"verify": [], "notifications": false}).to_string(),
    );
    project.write(
        "run.json",
        &json!({"agents": {
            "Commander": [
                {"when": "Mission goal", "tool_calls": [call("delegate_task", json!({"agent": "Worker", "description": "busy", "prompt": "Work for a long time", "background": false}))]},
                {"text": "Done."}
            ],
            "Worker": [
                {"tool_calls": [call("run_background", json!({"command": "sleep 300 & echo $! > job-child.pid; sleep 300", "label": "server"}))]},
                {"tool_calls": [call("bash", json!({"command": "sleep 300 & echo $! > bash-child.pid; echo $$ > bash.pid; sleep 300"}))]},
                {"text": "Finished."}
            ]
        }})
        .to_string(),
    );
}

/// Wait for `file` to hold a pid; the pid.
fn pid_in(project: &Project, file: &str) -> i32 {
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(project.file(file))
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{file} never appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` runs (a zombie waiting to be reaped runs nothing).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.split_whitespace().next() != Some("Z"))
    })
}

/// Wait up to `limit` for every pid of `pids` to be gone.
fn all_gone(pids: &[i32], limit: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if pids.iter().all(|&pid| !alive(pid)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    panic!("orch did not exit within {limit:?}");
}

fn state(project: &Project) -> Value {
    let latest = project.read(".opencode/missions/latest");
    serde_json::from_str(&project.read(&format!(".opencode/missions/{}/state.json", latest.trim())))
        .unwrap()
}

fn spawn(project: &Project) -> Child {
    project
        .orch()
        .args([
            "--provider",
            "scripted",
            "--script",
            "run.json",
            "task",
            "busy",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn sigterm_stops_the_mission_cleanly_with_143_and_kills_every_process() {
    let project = Project::new();
    busy_mission(&project);
    let mut orch = spawn(&project);
    let pids = [
        pid_in(&project, "job-child.pid"),
        pid_in(&project, "bash-child.pid"),
        pid_in(&project, "bash.pid"),
    ];
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(orch.id() as i32, libc::SIGTERM) };
    assert_eq!(wait_exit(&mut orch, Duration::from_secs(20)), Some(143));
    assert!(
        all_gone(&pids, Duration::from_secs(5)),
        "{pids:?} outlived orch"
    );
    let state = state(&project);
    assert_eq!(state["status"], "cancelled", "{state}");
    assert_eq!(state["processes"], json!([]), "{state}");
}

#[test]
fn closing_the_terminal_stops_the_mission_cleanly_with_129() {
    hang_up("dumb");
}

/// With a terminal that can show it, the live view runs in raw mode when
/// the terminal goes away.
#[test]
fn closing_the_terminal_under_the_live_view_stops_the_mission_cleanly_with_129() {
    hang_up("xterm-256color");
}

/// Run the busy mission on a real pseudo-terminal of type `term`, close the
/// terminal and check the mission stopped cleanly.
fn hang_up(term: &str) {
    let project = Project::new();
    busy_mission(&project);
    let (mut master, mut slave) = (0, 0);
    let size = libc::winsize {
        ws_row: 24,
        ws_col: 80,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty fills the two descriptors; the name and termios may be null.
    let opened = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
    // orch must not inherit the master side, or closing ours hangs nothing up.
    // SAFETY: setting a flag on descriptors this test owns.
    unsafe {
        libc::fcntl(master, libc::F_SETFD, libc::FD_CLOEXEC);
        libc::fcntl(slave, libc::F_SETFD, libc::FD_CLOEXEC);
    }
    let tty = || {
        // SAFETY: `slave` is open; the close-on-exec copy is owned by the
        // Stdio it becomes.
        Stdio::from(unsafe {
            std::os::fd::OwnedFd::from_raw_fd(libc::fcntl(slave, libc::F_DUPFD_CLOEXEC, 3))
        })
    };
    use std::os::fd::FromRawFd as _;
    let mut command = project.orch();
    command
        .env("TERM", term)
        .args([
            "--provider",
            "scripted",
            "--script",
            "run.json",
            "task",
            "busy",
        ])
        .stdin(tty())
        .stdout(tty())
        .stderr(std::fs::File::create(project.file("stderr.log")).unwrap());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut orch = command.spawn().unwrap();
    // SAFETY: the parent's copy of the slave side is not needed any more;
    // the master side is read without blocking, as a terminal would.
    unsafe {
        libc::close(slave);
        libc::fcntl(master, libc::F_SETFL, libc::O_NONBLOCK);
    }
    let mut screen = Vec::new();
    let drain = |screen: &mut Vec<u8>| {
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: reading into a local buffer from an open descriptor.
            let read = unsafe { libc::read(master, buf.as_mut_ptr().cast(), buf.len()) };
            if read <= 0 {
                break;
            }
            screen.extend_from_slice(&buf[..read as usize]);
        }
    };
    // The live view shows on the alternate screen; a dumb terminal gets
    // plain lines.
    let live = term != "dumb";
    let alternate_screen = b"\x1b[?1049h";
    let started = Instant::now();
    loop {
        drain(&mut screen);
        let busy = ["job-child.pid", "bash-child.pid", "bash.pid"]
            .iter()
            .all(|file| project.file(file).exists());
        let shown = screen
            .windows(alternate_screen.len())
            .any(|w| w == alternate_screen);
        if busy && shown == live {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the Worker never got busy, or the screen is not the expected one:\n{}",
            String::from_utf8_lossy(&screen)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pids = [
        pid_in(&project, "job-child.pid"),
        pid_in(&project, "bash-child.pid"),
        pid_in(&project, "bash.pid"),
    ];
    // Hang up: the terminal goes away and the kernel sends SIGHUP; every
    // later write of orch to it fails.
    // SAFETY: closing the last descriptor of the master side.
    unsafe { libc::close(master) };
    assert_eq!(
        wait_exit(&mut orch, Duration::from_secs(20)),
        Some(129),
        "{}",
        project.read("stderr.log")
    );
    assert!(
        all_gone(&pids, Duration::from_secs(5)),
        "{pids:?} outlived orch"
    );
    let state = state(&project);
    assert_eq!(state["status"], "cancelled", "{state}");
    assert_eq!(state["processes"], json!([]), "{state}");
}

#[test]
fn after_sigkill_the_watchdog_kills_every_process_grandchildren_included() {
    let project = Project::new();
    busy_mission(&project);
    let mut orch = spawn(&project);
    let pids = [
        pid_in(&project, "job-child.pid"),
        pid_in(&project, "bash-child.pid"),
        pid_in(&project, "bash.pid"),
    ];
    orch.kill().unwrap();
    orch.wait().unwrap();
    assert!(
        all_gone(&pids, Duration::from_secs(5)),
        "{pids:?} outlived a SIGKILLed orch"
    );
}

/// A process in a new process group of its own (its pid is the group id).
fn lone_group() -> Child {
    let mut command = std::process::Command::new("sleep");
    command.arg("300").process_group(0);
    command.spawn().unwrap()
}

fn start_time(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn the_next_run_kills_what_a_killed_run_left_but_never_a_reused_number() {
    let project = Project::trusted();
    project.write(
        ".opencode/orch.json",
        &json!({"verify": [], "notifications": false}).to_string(),
    );
    project.write(
        "run.json",
        &json!({"agents": {"Commander": [
            {"when": "Mission goal", "text": "Nothing to do."},
            {"when": "Mission goal", "text": "Nothing to do."}
        ]}})
        .to_string(),
    );
    let scripted = [
        "--provider",
        "scripted",
        "--script",
        "run.json",
        "--max-iterations",
        "1",
    ];
    let (output, _, _) = run(project.orch().args(scripted).args(["task", "first"]));
    assert_eq!(output.status.code(), Some(1));
    let mut left = lone_group();
    let mut unrelated = lone_group();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    // The state of a run that was killed: its process gone, two groups
    // recorded — one really its own, one whose number a newer process has.
    let latest = project.read(".opencode/missions/latest");
    let path = format!(".opencode/missions/{}/state.json", latest.trim());
    let mut saved: Value = serde_json::from_str(&project.read(&path)).unwrap();
    saved["status"] = "running".into();
    saved["pid"] = 999_999_999u32.into();
    saved["processes"] = json!([
        {"pgid": left.id(), "started": start_time(left.id() as i32), "boot_id": boot.trim()},
        {"pgid": unrelated.id(), "started": start_time(unrelated.id() as i32) - 1, "boot_id": boot.trim()}
    ]);
    project.write(&path, &saved.to_string());
    let (output, stdout, stderr) = run(project.orch().args(scripted).args(["task", "second"]));
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("killed 1 process group that a stopped run of mission"),
        "{stdout}"
    );
    let started = Instant::now();
    while left.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the left-behind group was not killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        unrelated.try_wait().unwrap().is_none(),
        "an unrelated process was killed"
    );
    unrelated.kill().unwrap();
    unrelated.wait().unwrap();
}

/// The pid of orch's watchdog: its child running the watchdog script.
fn watchdog_of(orch: u32) -> i32 {
    let started = Instant::now();
    loop {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            let parent = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    stat.rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(1)?
                        .parse::<u32>()
                        .ok()
                });
            let script = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if parent == Some(orch)
                && String::from_utf8_lossy(&script).contains("while read -r verb group")
            {
                return pid;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "orch {orch} has no watchdog"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_blocking_command_is_recorded_at_once_and_resume_kills_what_a_killed_run_left() {
    let project = Project::trusted();
    project.write(
        ".opencode/orch.json",
        &json!({"verify": [], "notifications": false}).to_string(),
    );
    project.write(
        "run.json",
        &json!({"agents": {
            "Commander": [
                {"when": "Mission goal", "tool_calls": [
                    call("add_todo", json!({"id": "T1", "text": "the tests ran"})),
                    call("delegate_task", json!({"agent": "Worker", "description": "tests", "prompt": "Run the long tests", "background": true}))]},
                {"when": "started task_1", "text": "Waiting for the Worker."},
                {"when": "resumed", "text": "Waiting for the Worker again."},
                {"when": "(Worker", "tool_calls": [call("delegate_task", json!({"agent": "Reviewer", "description": "review", "prompt": "Review T1", "background": false}))]},
                {"when": "Approved", "text": "Done."}
            ],
            "Reviewer": [
                {"when": "Review T1", "tool_calls": [call("update_todo", json!({"id": "T1", "status": "completed"}))]},
                {"when": "T1", "text": "Approved T1."}
            ],
            "Worker": [
                {"when": "Run the long tests", "tool_calls": [call("bash", json!({"command": "sleep 60 & echo $! > bash-child.pid; echo $$ > bash.pid; sleep 60"}))]},
                {"when": "interrupted", "text": "The tests were interrupted; stopping here."}
            ]
        }})
        .to_string(),
    );
    let scripted = ["--provider", "scripted", "--script", "run.json"];
    let mut orch = project
        .orch()
        .args(scripted)
        .args(["task", "Run the tests"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pids = [
        pid_in(&project, "bash-child.pid"),
        pid_in(&project, "bash.pid"),
    ];
    // SAFETY: getpgid has no memory-safety preconditions.
    let pgid = unsafe { libc::getpgid(pids[1]) };
    assert!(pgid > 0, "the command's group");
    // Nothing happens in the mission while the command blocks: the group
    // must reach the state file without a later event bringing it there.
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let recorded = json!({"pgid": pgid, "started": start_time(pgid), "boot_id": boot.trim()});
    let started = Instant::now();
    while !state(&project)["processes"]
        .as_array()
        .is_some_and(|groups| groups.contains(&recorded))
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{recorded} never reached the state: {}",
            state(&project)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Kill orch so that nothing cleans up: its watchdog first.
    let watchdog = watchdog_of(orch.id());
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(watchdog, libc::SIGKILL) };
    assert!(all_gone(&[watchdog], Duration::from_secs(5)));
    orch.kill().unwrap();
    orch.wait().unwrap();
    assert!(
        pids.iter().all(|&pid| alive(pid)),
        "the command died with orch; nothing is left to reap"
    );

    let (output, stdout, stderr) = run(project.orch().args(scripted).arg("resume"));
    assert!(
        all_gone(&pids, Duration::from_secs(5)),
        "{pids:?} outlived the resume\n{stdout}{stderr}"
    );
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("process group") && stdout.contains("left running"),
        "{stdout}"
    );
    let state = state(&project);
    assert_eq!(state["status"], "complete", "{state}");
    assert_eq!(state["processes"], json!([]), "{state}");
}

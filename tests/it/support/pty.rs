//! A process on a real pseudo-terminal, answered the way a person would:
//! wait for a prompt, type a line.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// How long to wait for a prompt before the test fails (the run is slow on
/// a loaded machine; this bounds a hang, it measures nothing).
const PATIENCE: Duration = Duration::from_secs(120);

pub struct Pty {
    master: File,
    child: Child,
    chunks: Receiver<Vec<u8>>,
    /// Everything the terminal showed so far.
    pub screen: String,
    /// Where the next `expect` starts looking.
    seen: usize,
}

impl Pty {
    /// Start `command` with a new session whose controlling terminal, and
    /// standard input, output and error, are a new pseudo-terminal.
    pub fn spawn(command: &mut Command) -> Pty {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty writes two descriptors into the given pointers;
        // the name, termios and window size are optional.
        let opened = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened and are owned here.
        let (master, slave) = unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let io = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup the terminal"));
        command
            .stdin(io(&slave))
            .stdout(io(&slave))
            .stderr(io(&slave));
        // SAFETY: setsid and ioctl are async-signal-safe; standard input is
        // the terminal by the time this runs.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("start on the terminal");
        drop(slave);
        let mut reader = master.try_clone().expect("dup the terminal");
        let (send, chunks) = channel();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            // EIO once the last process on the terminal is gone.
            while let Ok(read @ 1..) = reader.read(&mut buffer) {
                if send.send(buffer[..read].to_vec()).is_err() {
                    break;
                }
            }
        });
        Pty {
            master,
            child,
            chunks,
            screen: String::new(),
            seen: 0,
        }
    }

    /// Wait until the terminal shows `text` (after what an earlier
    /// `expect` matched).
    pub fn expect(&mut self, text: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(at) = self.screen[self.seen..].find(text) {
                self.seen += at + text.len();
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.chunks.recv_timeout(left) {
                Ok(chunk) => self.screen.push_str(&String::from_utf8_lossy(&chunk)),
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "the terminal never showed {text:?}; it shows:\n{}",
                        self.screen
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "the terminal closed before {text:?}; it showed:\n{}",
                        self.screen
                    )
                }
            }
        }
    }

    /// Type `line` and Enter.
    pub fn send_line(&mut self, line: &str) {
        self.master
            .write_all(format!("{line}\r").as_bytes())
            .expect("type on the terminal");
    }

    /// Wait for the process to end; what the terminal showed.
    pub fn finish(mut self) -> (ExitStatus, String) {
        let status = self.child.wait().expect("wait for the process");
        while let Ok(chunk) = self.chunks.recv_timeout(Duration::from_millis(500)) {
            self.screen.push_str(&String::from_utf8_lossy(&chunk));
        }
        (status, self.screen)
    }
}

//! The terminal while the live view owns it: raw mode and the alternate
//! screen go on in `enter`, and come off on every way out — the guard's
//! drop (normal exit, `q`, an error) and a panic hook (a panic anywhere in
//! the process), so a crash never leaves the user's shell in raw mode.
//! Keys and resizes are read on a blocking thread and sent to the loop.

use std::io::{self, Stdout};
use std::sync::Arc;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event as TermEvent, KeyEvent, KeyEventKind};
use ratatui::crossterm::{cursor, execute, terminal};
use tokio::sync::mpsc;

/// Whether the terminal is in the live view's mode right now.
static ACTIVE: AtomicBool = AtomicBool::new(false);
static PANIC_HOOK: Once = Once::new();

pub type Screen = Terminal<CrosstermBackend<Stdout>>;

/// Whether the live view can run here: stdin and stdout are terminals and
/// the terminal is not `dumb`.
pub fn supports_live_view() -> bool {
    use std::io::IsTerminal;
    io::stdin().is_terminal()
        && io::stdout().is_terminal()
        && std::env::var("TERM").map_or(true, |term| term != "dumb")
}

/// The terminal in raw mode on the alternate screen; dropping it restores
/// the terminal.
pub struct Guard {
    pub screen: Screen,
}

impl Drop for Guard {
    fn drop(&mut self) {
        restore();
    }
}

/// Take the terminal over.
pub fn enter() -> io::Result<Guard> {
    PANIC_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // Restore first, so the panic message lands on a sane screen.
            restore();
            previous(info);
        }));
    });
    terminal::enable_raw_mode()?;
    ACTIVE.store(true, Ordering::SeqCst);
    let mut stdout = io::stdout();
    if let Err(err) = execute!(stdout, terminal::EnterAlternateScreen, cursor::Hide) {
        restore();
        return Err(err);
    }
    match Terminal::new(CrosstermBackend::new(stdout)) {
        Ok(screen) => Ok(Guard { screen }),
        Err(err) => {
            restore();
            Err(err)
        }
    }
}

/// Leave raw mode and the alternate screen, if the live view had them.
pub fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = execute!(io::stdout(), terminal::LeaveAlternateScreen, cursor::Show);
        let _ = terminal::disable_raw_mode();
    }
}

/// Whether the terminal is still the live view's (a panic elsewhere in the
/// process restores it; the view then gives up the screen).
pub fn is_active() -> bool {
    ACTIVE.load(Ordering::SeqCst)
}

/// What the person did at the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Key(KeyEvent),
    Resize,
}

/// The thread reading keys, with its channel.
pub struct Keys {
    pub inputs: mpsc::Receiver<Input>,
    stop: Arc<AtomicBool>,
    ended: tokio::sync::oneshot::Receiver<()>,
}

/// How long [`Keys::stop`] waits for the reader to notice (it looks every
/// 50 ms); past it the reader is left to end on its own.
const STOP_PATIENCE: Duration = Duration::from_millis(500);

impl Keys {
    pub fn spawn() -> Keys {
        let (sender, inputs) = mpsc::channel(64);
        let (ended_tx, ended) = tokio::sync::oneshot::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        // A thread of its own, not the runtime's blocking pool: a reader
        // stuck in the terminal library must never hold up orch's exit.
        let spawned = std::thread::Builder::new()
            .name("orch-keys".into())
            .spawn(move || {
                read_keys(&stopping, &sender);
                let _ = ended_tx.send(());
            });
        if spawned.is_err() {
            // No keys then; `inputs` reports closed at once.
            stop.store(true, Ordering::SeqCst);
        }
        Keys {
            inputs,
            stop,
            ended,
        }
    }

    /// Stop reading keys (so the terminal is free for a prompt or a shell).
    pub async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        drop(self.inputs);
        let _ = tokio::time::timeout(STOP_PATIENCE, self.ended).await;
    }
}

/// Send keys and resizes until `stop`, the receiver goes or the terminal
/// hangs up. The terminal is polled here first: crossterm retries a read of
/// a hung-up terminal forever (it returns end of file or EIO), so it is
/// asked only when input is waiting and the terminal is still there.
fn read_keys(stop: &AtomicBool, sender: &mpsc::Sender<Input>) {
    use std::os::fd::AsRawFd as _;
    let stdin = io::stdin().as_raw_fd();
    while !stop.load(Ordering::SeqCst) {
        let mut fd = libc::pollfd {
            fd: stdin,
            events: libc::POLLIN,
            revents: 0,
        };
        // Short polls, so stopping never waits long for a key.
        // SAFETY: one valid pollfd, for the length given.
        let ready = unsafe { libc::poll(&mut fd, 1, 50) };
        if ready < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if fd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
            return;
        }
        // A resize arrives as a signal crossterm watches, not as input.
        match event::poll(if ready == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(1)
        }) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(_) => return,
        }
        let input = match event::read() {
            Ok(TermEvent::Key(key)) if key.kind != KeyEventKind::Release => Input::Key(key),
            Ok(TermEvent::Resize(..)) => Input::Resize,
            Ok(_) => continue,
            Err(_) => return,
        };
        if sender.blocking_send(input).is_err() {
            return;
        }
    }
}

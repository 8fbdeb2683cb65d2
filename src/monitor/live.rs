//! The live view's loop: fold events from a feed (the bus's live broadcast
//! in the process running the mission, or the journal for `orch monitor`)
//! into the view, redraw at most every 100 ms, and handle keys. It observes
//! only: `c` cancels through the CLI's cancellation token, the same path as
//! Ctrl-C, and `q` hands the terminal back to plain progress lines.

use std::io::{Stdout, Write as _};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::follow::{FollowEnd, FollowStep, Follower};
use super::plain::Plain;
use super::render::{Ui, render};
use super::terminal::{self, Input, Keys};
use super::view::View;
use crate::events::{Envelope, Event, EventBus, EventSink, now_ms};
use crate::models::Prices;
use crate::tools::permissions::{ApprovalRequest, Prompter, TerminalPrompter};

/// The shortest time between two frames.
const FRAME: Duration = Duration::from_millis(100);

/// Log lines one PgUp/PgDn scrolls.
const PAGE: usize = 10;

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAction {
    None,
    Redraw,
    /// Cancel the mission (confirmed, or Ctrl-C).
    Cancel,
    /// Leave the view; the mission goes on.
    Leave,
    /// Ctrl-C twice: exit at once.
    ForceQuit,
}

/// What a key does to the screen's state. Pure, so it is tested without a
/// terminal.
pub fn on_key(ui: &mut Ui, key: KeyEvent, cancelling: bool, finished: bool) -> KeyAction {
    let ctrl_c = key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c');
    if ctrl_c {
        ui.confirm_cancel = false;
        return match (ui.read_only, cancelling) {
            (true, _) => KeyAction::Leave,
            (false, false) => KeyAction::Cancel,
            (false, true) => KeyAction::ForceQuit,
        };
    }
    if ui.confirm_cancel {
        ui.confirm_cancel = false;
        return match key.code {
            KeyCode::Char('y') | KeyCode::Char('Y') => KeyAction::Cancel,
            _ => KeyAction::Redraw,
        };
    }
    match key.code {
        KeyCode::Char('q') | KeyCode::Esc => KeyAction::Leave,
        KeyCode::Char('c') if !ui.read_only && !finished && !cancelling => {
            ui.confirm_cancel = true;
            KeyAction::Redraw
        }
        KeyCode::Up | KeyCode::Char('k') => scroll(ui, 1, true),
        KeyCode::Down | KeyCode::Char('j') => scroll(ui, 1, false),
        KeyCode::PageUp => scroll(ui, PAGE, true),
        KeyCode::PageDown => scroll(ui, PAGE, false),
        KeyCode::Home => {
            ui.scroll = usize::MAX / 2;
            KeyAction::Redraw
        }
        KeyCode::End => {
            ui.scroll = 0;
            KeyAction::Redraw
        }
        _ => KeyAction::None,
    }
}

fn scroll(ui: &mut Ui, lines: usize, back: bool) -> KeyAction {
    ui.scroll = if back {
        ui.scroll.saturating_add(lines)
    } else {
        ui.scroll.saturating_sub(lines)
    };
    KeyAction::Redraw
}

/// Where the view's events come from.
pub enum Feed {
    /// The bus of this process (lossy: a lagging view skips events).
    Bus(broadcast::Receiver<Arc<Envelope>>),
    /// A mission journal, followed from another process.
    Journal(Follower),
}

enum FeedItem {
    Event(Arc<Envelope>),
    Skipped,
    End(Option<FollowEnd>),
}

impl Feed {
    async fn next(&mut self) -> FeedItem {
        match self {
            Feed::Bus(receiver) => match receiver.recv().await {
                Ok(envelope) => FeedItem::Event(envelope),
                Err(broadcast::error::RecvError::Lagged(_)) => FeedItem::Skipped,
                Err(broadcast::error::RecvError::Closed) => FeedItem::End(None),
            },
            Feed::Journal(follower) => match follower.next().await {
                Ok(FollowStep::Line(_, Some(envelope))) => FeedItem::Event(Arc::new(*envelope)),
                Ok(FollowStep::Line(_, None)) => FeedItem::Skipped,
                Ok(FollowStep::End(end)) => FeedItem::End(Some(end)),
                Err(_) => FeedItem::End(Some(FollowEnd::ProcessGone)),
            },
        }
    }

    /// Events already waiting on the bus (a journal is read to its end by
    /// the caller's last `next`).
    fn drain(&mut self, view: &mut View, last: &mut Option<Arc<Envelope>>) {
        if let Feed::Bus(receiver) = self {
            loop {
                match receiver.try_recv() {
                    Ok(envelope) => {
                        view.apply(&envelope);
                        remember_finish(last, &envelope);
                    }
                    Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                    Err(_) => break,
                }
            }
        }
    }
}

fn remember_finish(last: &mut Option<Arc<Envelope>>, envelope: &Arc<Envelope>) {
    match envelope.event {
        Event::MissionFinished { .. } => *last = Some(envelope.clone()),
        Event::MissionStarted { .. } => *last = None,
        _ => {}
    }
}

/// Why the screen closed.
#[derive(Debug)]
pub enum Closed {
    /// The owner asked (the mission ended in this process).
    Stopped,
    /// The feed ended (the journal's mission finished, or its process is gone).
    FeedEnded(Option<FollowEnd>),
    /// `q`: the person left the view.
    Left,
    /// An approval prompt needs the terminal.
    ForApproval,
    /// Something else restored the terminal (a panic elsewhere) or drawing
    /// failed.
    Lost,
    /// The terminal could not be taken over; nothing was shown.
    Unavailable,
}

/// What the screen ended with: why, and the mission's last
/// `mission_finished` event, if it ended.
pub struct Ending {
    pub closed: Closed,
    pub finished: Option<Arc<Envelope>>,
}

/// Whether the live view is on screen, shared with the approval prompter.
#[derive(Default)]
pub struct Showing {
    on: Mutex<bool>,
    changed: Condvar,
    /// Asks the screen to give the terminal up.
    leave: Notify,
}

impl Showing {
    fn set(&self, on: bool) {
        *self.on.lock().expect("showing lock") = on;
        self.changed.notify_all();
    }
}

/// Run the screen until `stop` fires, the feed ends, or the person leaves.
/// `cancel` is the mission's cancellation (absent for a read-only view).
pub async fn run_screen(
    mut feed: Feed,
    view: &mut View,
    mut ui: Ui,
    stop: CancellationToken,
    cancel: Option<CancellationToken>,
    showing: Arc<Showing>,
) -> Ending {
    let mut last: Option<Arc<Envelope>> = None;
    let mut guard = match terminal::enter() {
        Ok(guard) => guard,
        Err(_) => {
            return Ending {
                closed: Closed::Unavailable,
                finished: None,
            };
        }
    };
    showing.set(true);
    let mut keys = Keys::spawn();
    let mut tick = tokio::time::interval(FRAME);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut dirty = true;
    let mut drawn_second = 0;
    let mut cancelling = false;
    let mut keys_open = true;
    let closed = loop {
        tokio::select! {
            () = stop.cancelled() => {
                feed.drain(view, &mut last);
                break Closed::Stopped;
            }
            fed = feed.next() => match fed {
                FeedItem::Event(envelope) => {
                    view.apply(&envelope);
                    remember_finish(&mut last, &envelope);
                    dirty = true;
                }
                FeedItem::Skipped => {}
                FeedItem::End(end) => break Closed::FeedEnded(end),
            },
            input = keys.inputs.recv(), if keys_open => match input {
                Some(Input::Key(key)) => {
                    match on_key(&mut ui, key, cancelling, view.finished.is_some()) {
                        KeyAction::None => {}
                        KeyAction::Redraw => dirty = true,
                        KeyAction::Cancel => {
                            if let Some(cancel) = &cancel {
                                cancel.cancel();
                                cancelling = true;
                                ui.notice = Some("cancelling… (Ctrl-C again to force)".into());
                                dirty = true;
                            }
                        }
                        KeyAction::Leave => break Closed::Left,
                        KeyAction::ForceQuit => {
                            terminal::restore();
                            crate::process::kill_every_group();
                            std::process::exit(130);
                        }
                    }
                }
                Some(Input::Resize) => dirty = true,
                None => keys_open = false,
            },
            () = showing.leave.notified() => break Closed::ForApproval,
            _ = tick.tick() => {
                if !terminal::is_active() {
                    break Closed::Lost;
                }
                let now = now_ms();
                if dirty || now / 1000 != drawn_second {
                    view.refresh_plan();
                    let drawn = guard.screen.draw(|frame| render(frame, view, &ui, now));
                    if drawn.is_err() {
                        break Closed::Lost;
                    }
                    dirty = false;
                    drawn_second = now / 1000;
                }
            }
        }
    };
    if matches!(closed, Closed::Stopped | Closed::FeedEnded(_)) {
        // The last events since the previous frame, drawn once.
        view.refresh_plan();
        let _ = guard
            .screen
            .draw(|frame| render(frame, view, &ui, now_ms()));
    }
    keys.stop().await;
    drop(guard);
    showing.set(false);
    Ending {
        closed,
        finished: last,
    }
}

/// The live view in the process that runs the mission (`task`, `demo`,
/// `resume`). Created with the bus, before the first event, so the view
/// misses nothing; plain progress lines are printed until it starts and
/// muted while it shows.
pub struct Live {
    receiver: Mutex<Option<broadcast::Receiver<Arc<Envelope>>>>,
    plain: Arc<Plain<Stdout>>,
    color: bool,
    showing: Arc<Showing>,
}

impl Live {
    pub fn new(bus: &EventBus, plain: Arc<Plain<Stdout>>, color: bool) -> Live {
        Live {
            receiver: Mutex::new(Some(bus.subscribe())),
            plain,
            color,
            showing: Arc::new(Showing::default()),
        }
    }

    /// Asks approvals on the terminal after the view has given it up.
    pub fn prompter(&self) -> Arc<dyn Prompter> {
        Arc::new(LivePrompter {
            showing: self.showing.clone(),
        })
    }

    /// Show the view until `LiveRun::finish`. `root` is the project (for
    /// the plan), `cancel` the mission's cancellation. Only the first call
    /// starts a view.
    pub fn start(
        &self,
        root: PathBuf,
        pricing: Prices,
        cancel: CancellationToken,
    ) -> Option<LiveRun> {
        let receiver = self.receiver.lock().expect("live receiver lock").take()?;
        self.plain.set_muted(true);
        let stop = CancellationToken::new();
        let ui = Ui {
            color: self.color,
            ..Ui::default()
        };
        let plain = self.plain.clone();
        let showing = self.showing.clone();
        let screen_stop = stop.clone();
        let task = tokio::spawn(async move {
            let mut view = View::new(Some(root), pricing);
            let ending = run_screen(
                Feed::Bus(receiver),
                &mut view,
                ui,
                screen_stop,
                Some(cancel),
                showing,
            )
            .await;
            plain.set_muted(false);
            match ending.closed {
                Closed::Left | Closed::ForApproval | Closed::Lost => {
                    // The terminal may be gone (a hang-up): never panic here.
                    let _ = writeln!(std::io::stdout(), "{}", left_note(&view, &ending.closed));
                }
                Closed::Stopped | Closed::FeedEnded(_) | Closed::Unavailable => {}
            }
            ending
        });
        Some(LiveRun {
            stop,
            task: Some(task),
            plain: self.plain.clone(),
        })
    }
}

/// One line saying where the mission stands as the view closes early.
fn left_note(view: &View, closed: &Closed) -> String {
    let why = match closed {
        Closed::ForApproval => "left the live view to ask for an approval",
        Closed::Lost => "the live view stopped",
        Closed::Left | Closed::Stopped | Closed::FeedEnded(_) | Closed::Unavailable => {
            "left the live view"
        }
    };
    let plan = view.progress().map_or(String::new(), |(done, total)| {
        format!(", plan {done}/{total} done")
    });
    format!(
        "{why}; the mission goes on (iteration {}/{}{plan}), progress follows as lines; Ctrl-C cancels",
        view.iteration, view.max_iterations
    )
}

/// A running live view.
pub struct LiveRun {
    stop: CancellationToken,
    task: Option<JoinHandle<Ending>>,
    plain: Arc<Plain<Stdout>>,
}

impl LiveRun {
    /// Close the view (the mission has ended) and print the mission's last
    /// line as plain output would have, so it stays on the screen.
    pub async fn finish(mut self) {
        self.stop.cancel();
        let Some(task) = self.task.take() else {
            return;
        };
        match task.await {
            Ok(Ending {
                closed: Closed::Stopped | Closed::FeedEnded(_),
                finished: Some(last),
            }) => self.plain.write(&last),
            Ok(_) => {}
            Err(_) => {
                // The view panicked; its hook restored the terminal.
                terminal::restore();
                self.plain.set_muted(false);
            }
        }
    }
}

impl Drop for LiveRun {
    fn drop(&mut self) {
        // Dropped without `finish` (an error path): the view closes itself.
        self.stop.cancel();
    }
}

/// Approval prompts while the live view may be showing: the view gives the
/// terminal back first, then the terminal prompt asks as usual.
struct LivePrompter {
    showing: Arc<Showing>,
}

impl Prompter for LivePrompter {
    fn confirm(&self, request: &ApprovalRequest) -> std::io::Result<bool> {
        let on = self.showing.on.lock().expect("showing lock");
        if *on {
            self.showing.leave.notify_one();
            // Bounded: a view that cannot answer must not hang the session.
            let _ = self
                .showing
                .changed
                .wait_timeout_while(on, Duration::from_secs(5), |on| *on)
                .expect("showing lock");
        } else {
            drop(on);
        }
        TerminalPrompter.confirm(request)
    }
}

#[cfg(test)]
mod tests {
    use ratatui::crossterm::event::{KeyEventKind, KeyEventState};

    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent {
            code,
            modifiers: KeyModifiers::NONE,
            kind: KeyEventKind::Press,
            state: KeyEventState::NONE,
        }
    }

    fn ctrl_c() -> KeyEvent {
        KeyEvent {
            modifiers: KeyModifiers::CONTROL,
            ..key(KeyCode::Char('c'))
        }
    }

    #[test]
    fn cancel_needs_confirmation_and_q_leaves() {
        let mut ui = Ui::default();
        assert_eq!(
            on_key(&mut ui, key(KeyCode::Char('c')), false, false),
            KeyAction::Redraw
        );
        assert!(ui.confirm_cancel);
        // Anything but y keeps the mission running.
        assert_eq!(
            on_key(&mut ui, key(KeyCode::Char('n')), false, false),
            KeyAction::Redraw
        );
        assert!(!ui.confirm_cancel);
        on_key(&mut ui, key(KeyCode::Char('c')), false, false);
        assert_eq!(
            on_key(&mut ui, key(KeyCode::Char('y')), false, false),
            KeyAction::Cancel
        );
        assert_eq!(
            on_key(&mut ui, key(KeyCode::Char('q')), true, false),
            KeyAction::Leave
        );
        // No cancel once the mission ended or is being cancelled.
        assert_eq!(
            on_key(&mut ui, key(KeyCode::Char('c')), false, true),
            KeyAction::None
        );
        assert_eq!(
            on_key(&mut ui, key(KeyCode::Char('c')), true, false),
            KeyAction::None
        );
    }

    #[test]
    fn ctrl_c_cancels_then_forces_and_read_only_views_only_leave() {
        let mut ui = Ui::default();
        assert_eq!(on_key(&mut ui, ctrl_c(), false, false), KeyAction::Cancel);
        assert_eq!(on_key(&mut ui, ctrl_c(), true, false), KeyAction::ForceQuit);
        let mut read_only = Ui {
            read_only: true,
            ..Ui::default()
        };
        assert_eq!(
            on_key(&mut read_only, ctrl_c(), false, false),
            KeyAction::Leave
        );
        assert_eq!(
            on_key(&mut read_only, key(KeyCode::Char('c')), false, false),
            KeyAction::None
        );
        assert!(!read_only.confirm_cancel);
    }

    #[test]
    fn arrows_and_pages_scroll_the_log() {
        let mut ui = Ui::default();
        on_key(&mut ui, key(KeyCode::PageUp), false, false);
        on_key(&mut ui, key(KeyCode::Up), false, false);
        assert_eq!(ui.scroll, PAGE + 1);
        on_key(&mut ui, key(KeyCode::Down), false, false);
        on_key(&mut ui, key(KeyCode::PageDown), false, false);
        on_key(&mut ui, key(KeyCode::PageDown), false, false);
        assert_eq!(ui.scroll, 0);
        on_key(&mut ui, key(KeyCode::Home), false, false);
        assert!(ui.scroll > 1000);
        on_key(&mut ui, key(KeyCode::End), false, false);
        assert_eq!(ui.scroll, 0);
    }
}

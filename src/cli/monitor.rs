//! `orch monitor`: follow the mission running in this project from another
//! terminal, read-only, by reading its journal as it grows; and
//! `orch metrics`: the last mission's numbers, folded from its journal.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use tokio_util::sync::CancellationToken;

use super::{Cli, exit};
use crate::config::{self, Overrides};
use crate::events::{Envelope, Event, EventSink, MissionOutcome};
use crate::mission::state::{self, MissionPaths, MissionStatus};
use crate::monitor::follow::{FollowEnd, FollowStep, Follower, JournalTail};
use crate::monitor::live::{Closed, Feed, Showing, run_screen};
use crate::monitor::metrics::{Metrics, render_text};
use crate::monitor::plain::{Plain, Verbosity};
use crate::monitor::render::Ui;
use crate::monitor::terminal;
use crate::monitor::view::View;

pub async fn monitor(cli: &Cli) -> anyhow::Result<u8> {
    let root = super::project_root(cli.dir.as_deref())?;
    let Some(id) = state::latest_mission(&root) else {
        println!(
            "no mission is running in {}: none has run here yet (`orch task \"<goal>\"` starts one)",
            root.display()
        );
        return Ok(exit::UNFINISHED);
    };
    let saved = state::read_state(&root, &id).map_err(|err| anyhow!(err))?;
    let running = saved.status == MissionStatus::Running && super::status::alive(saved.pid);
    if !running {
        let what = match saved.status {
            MissionStatus::Running => format!(
                "was interrupted (its process {} is gone; `orch resume` continues it)",
                saved.pid
            ),
            MissionStatus::Complete => "is complete".into(),
            MissionStatus::Stopped => "stopped".into(),
            MissionStatus::Cancelled => "was cancelled".into(),
        };
        println!(
            "no mission is running in {}: the last one, {id}, {what}; `orch status` and `orch metrics` show it",
            root.display()
        );
        return Ok(exit::UNFINISHED);
    }
    let journal = MissionPaths::new(&root, &id).journal();
    let tail =
        JournalTail::open(&journal).with_context(|| format!("opening {}", journal.display()))?;
    let pid = saved.pid;
    let follower = Follower::new(tail, Box::new(move || super::status::alive(pid)));
    if cli.json {
        return follow_json(follower).await;
    }
    let color = std::env::var_os("NO_COLOR").is_none();
    if terminal::supports_live_view() {
        return follow_live(&root, &id, pid, follower, color).await;
    }
    println!(
        "following mission {id} (process {pid}) in {}; Ctrl-C stops following, not the mission",
        root.display()
    );
    let plain = Plain::new(std::io::stdout(), verbosity(cli), false);
    let mut finished = None;
    let mut follower = follower;
    loop {
        match follower.next().await? {
            FollowStep::Line(_, Some(envelope)) => {
                remember(&mut finished, &envelope);
                plain.write(&envelope);
            }
            FollowStep::Line(_, None) => {}
            FollowStep::End(end) => return Ok(end_code(&id, pid, end, finished)),
        }
    }
}

fn verbosity(cli: &Cli) -> Verbosity {
    if cli.quiet {
        Verbosity::Quiet
    } else if cli.verbose {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    }
}

fn remember(finished: &mut Option<MissionOutcome>, envelope: &Envelope) {
    match &envelope.event {
        Event::MissionFinished { outcome, .. } => *finished = Some(*outcome),
        Event::MissionStarted { .. } => *finished = None,
        _ => {}
    }
}

/// The monitor exits as the mission did: 0 complete, 1 stopped or gone,
/// 130 cancelled.
fn end_code(id: &str, pid: u32, end: FollowEnd, finished: Option<MissionOutcome>) -> u8 {
    match (end, finished) {
        (FollowEnd::Finished, Some(MissionOutcome::Complete)) => exit::COMPLETE,
        (FollowEnd::Finished, Some(MissionOutcome::Cancelled)) => exit::INTERRUPTED,
        (FollowEnd::Finished, _) => exit::UNFINISHED,
        (FollowEnd::ProcessGone, _) => {
            println!(
                "mission {id} ended without finishing: its process {pid} is gone; `orch resume` continues it"
            );
            exit::UNFINISHED
        }
    }
}

/// `--json`: the journal's lines as they are, one per line.
async fn follow_json(mut follower: Follower) -> anyhow::Result<u8> {
    let mut finished = None;
    let mut stdout = std::io::stdout();
    loop {
        match follower.next().await? {
            FollowStep::Line(line, envelope) => {
                if let Some(envelope) = &envelope {
                    remember(&mut finished, envelope);
                }
                // A closed stdout (`| head`) ends following quietly.
                if writeln!(stdout, "{line}")
                    .and_then(|()| stdout.flush())
                    .is_err()
                {
                    return Ok(exit::COMPLETE);
                }
            }
            FollowStep::End(FollowEnd::Finished) => {
                return Ok(match finished {
                    Some(MissionOutcome::Complete) => exit::COMPLETE,
                    Some(MissionOutcome::Cancelled) => exit::INTERRUPTED,
                    _ => exit::UNFINISHED,
                });
            }
            FollowStep::End(FollowEnd::ProcessGone) => return Ok(exit::UNFINISHED),
        }
    }
}

/// The read-only live view, fed by the journal.
async fn follow_live(
    root: &Path,
    id: &str,
    pid: u32,
    follower: Follower,
    color: bool,
) -> anyhow::Result<u8> {
    let pricing = config::load(root, &Overrides::default())
        .map(|config| super::prices(&config))
        .unwrap_or_default();
    let mut view = View::new(Some(root.to_path_buf()), pricing);
    let ui = Ui {
        read_only: true,
        color,
        ..Ui::default()
    };
    let ending = run_screen(
        Feed::Journal(follower),
        &mut view,
        ui,
        CancellationToken::new(),
        None,
        Arc::new(Showing::default()),
    )
    .await;
    let outcome = view.finished.as_ref().map(|(outcome, _, _)| *outcome);
    Ok(match ending.closed {
        Closed::FeedEnded(end) => {
            if let Some(last) = &ending.finished {
                Plain::new(std::io::stdout(), Verbosity::Normal, color).write(last);
            }
            end_code(id, pid, end.unwrap_or(FollowEnd::ProcessGone), outcome)
        }
        Closed::Left | Closed::Stopped | Closed::ForApproval | Closed::Lost => {
            println!("stopped following mission {id}; it goes on (`orch monitor` attaches again)");
            exit::COMPLETE
        }
        Closed::Unavailable => {
            return Err(anyhow!(
                "cannot take over the terminal for the live view; `orch monitor | cat` prints plain lines"
            ));
        }
    })
}

pub fn metrics(cli: &Cli) -> anyhow::Result<u8> {
    let root = super::project_root(cli.dir.as_deref())?;
    let Some(id) = state::latest_mission(&root) else {
        println!("no mission has run in {}", root.display());
        return Ok(exit::COMPLETE);
    };
    let config = config::load(&root, &Overrides::default())?;
    let journal = MissionPaths::new(&root, &id).journal();
    let file =
        std::fs::File::open(&journal).with_context(|| format!("reading {}", journal.display()))?;
    let mut metrics = Metrics::new(super::prices(&config));
    // Streamed, a line at a time: a journal of an hour-long mission is not
    // loaded whole. A torn last line (a killed mission) or an event type
    // this build does not know is skipped.
    for line in std::io::BufRead::lines(std::io::BufReader::new(file)) {
        let line = line.with_context(|| format!("reading {}", journal.display()))?;
        if let Ok(envelope) = serde_json::from_str::<Envelope>(&line) {
            metrics.apply(&envelope);
        }
    }
    let report = metrics.report();
    if cli.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", render_text(&report));
    }
    Ok(exit::COMPLETE)
}

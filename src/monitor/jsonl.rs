//! `--json`: one JSON object per event on stdout. The lines come from the
//! command's journal, followed on a thread of their own as `orch monitor`
//! follows it: a reader of stdout that stalls holds up only that thread —
//! never a session, never the journal — and nothing piles up in memory (the
//! journal on disk is the buffer). Streamed text arrives as the journal has
//! it: one `text_delta` per session every moment, not one per token.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::follow::JournalTail;
use crate::events::{Envelope, EventSink};

/// How often the journal is checked for new lines when no write woke the
/// thread (a journal another process appends to, or a missed wake-up).
const POLL: Duration = Duration::from_millis(20);

/// The `--json` output of one command.
#[derive(Default)]
pub struct JsonOut {
    follow: Mutex<Option<Following>>,
}

struct Following {
    /// Set when the command ends: read to the end of the journal, then stop.
    ending: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl JsonOut {
    pub fn new() -> JsonOut {
        JsonOut::default()
    }

    /// Print the lines of `journal` from byte `from` on, as they are
    /// written (one journal per command; a second call is ignored). The
    /// sink returned, recorded after the journal, wakes the printing thread
    /// as each line is written.
    pub fn follow(&self, journal: &Path, from: u64) -> std::io::Result<Option<Arc<dyn EventSink>>> {
        let mut follow = self.follow.lock().expect("json output lock");
        if follow.is_some() {
            return Ok(None);
        }
        let mut tail = JournalTail::open(journal)?;
        tail.skip(from)?;
        let ending = Arc::new(AtomicBool::new(false));
        let stop = ending.clone();
        let thread = std::thread::Builder::new()
            .name("orch-json".into())
            .spawn(move || copy(tail, stop))?;
        let wake = Wake(thread.thread().clone());
        *follow = Some(Following { ending, thread });
        Ok(Some(Arc::new(wake)))
    }

    /// The command ended and its journal is complete: print what is left,
    /// waiting at most `limit` for a slow reader of stdout.
    pub fn finish(&self, limit: Duration) {
        let Some(following) = self.follow.lock().expect("json output lock").take() else {
            return;
        };
        following.ending.store(true, Ordering::SeqCst);
        following.thread.thread().unpark();
        let started = Instant::now();
        while !following.thread.is_finished() && started.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn copy(mut tail: JournalTail, ending: Arc<AtomicBool>) {
    let stdout = std::io::stdout();
    loop {
        // Read the flag first: lines written before it was set are read
        // below, before stopping.
        let last_round = ending.load(Ordering::SeqCst);
        let Ok(lines) = tail.read_lines() else {
            return;
        };
        if !lines.is_empty() {
            let mut out = stdout.lock();
            for line in &lines {
                // A closed stdout (`| head`) ends the output, not the command.
                if writeln!(out, "{line}").is_err() {
                    return;
                }
            }
            if out.flush().is_err() {
                return;
            }
        } else if last_round {
            return;
        } else {
            std::thread::park_timeout(POLL);
        }
    }
}

/// Recorded after the journal: a line is on disk when this sees its event.
struct Wake(std::thread::Thread);

impl EventSink for Wake {
    fn write(&self, _: &Envelope) {
        self.0.unpark();
    }
}

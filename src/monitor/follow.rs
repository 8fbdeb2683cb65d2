//! Following a mission's journal (`.opencode/missions/<id>/events.jsonl`)
//! from another process, as `orch monitor` does: read the lines already
//! there, then new ones as they are appended. A torn last line (the writer
//! is mid-write, or was killed mid-write) waits for its end; a line that is
//! not a known event is passed on raw and skipped by folds.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::time::Duration;

use crate::events::{Envelope, Event};

/// How often the journal is polled for new lines.
const POLL: Duration = Duration::from_millis(100);

/// New complete lines of a file that grows at its end.
pub struct JournalTail {
    file: File,
    /// Bytes after the last newline read so far.
    partial: Vec<u8>,
}

impl JournalTail {
    pub fn open(path: &Path) -> io::Result<JournalTail> {
        Ok(JournalTail {
            file: File::open(path)?,
            partial: Vec::new(),
        })
    }

    /// Start reading at byte `offset` (what was there before is not this
    /// run's).
    pub fn skip(&mut self, offset: u64) -> io::Result<()> {
        use std::io::Seek as _;
        self.file.seek(io::SeekFrom::Start(offset))?;
        Ok(())
    }

    /// Complete lines appended since the last call, without their newline,
    /// read at most [`CHUNK`] bytes at a time: after a stall the backlog is
    /// taken in steps (call again until it returns none), so memory stays
    /// bounded by the chunk and the longest line, not by the backlog.
    pub fn read_lines(&mut self) -> io::Result<Vec<String>> {
        loop {
            let before = self.partial.len();
            let read = (&mut self.file)
                .take(CHUNK as u64)
                .read_to_end(&mut self.partial)?;
            if read == 0 {
                return Ok(Vec::new());
            }
            // What was kept from before holds no newline.
            let Some(end) = self.partial[before..].iter().rposition(|&b| b == b'\n') else {
                // One line longer than a chunk: read on to its end.
                continue;
            };
            let rest = self.partial.split_off(before + end + 1);
            let complete = std::mem::replace(&mut self.partial, rest);
            return Ok(complete[..complete.len() - 1]
                .split(|&b| b == b'\n')
                .map(|line| {
                    String::from_utf8_lossy(line)
                        .trim_end_matches('\r')
                        .to_string()
                })
                .filter(|line| !line.trim().is_empty())
                .collect());
        }
    }
}

/// The most bytes one [`JournalTail::read_lines`] reads.
const CHUNK: usize = 256 * 1024;

/// Why following stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowEnd {
    /// The journal's last run ended with `mission_finished`.
    Finished,
    /// The mission's process is gone and it never wrote `mission_finished`
    /// (killed or crashed; `orch resume` continues it).
    ProcessGone,
}

/// One step of following.
#[derive(Debug, Clone, PartialEq)]
pub enum FollowStep {
    /// A journal line, and the event in it when it is one this build knows.
    Line(String, Option<Box<Envelope>>),
    End(FollowEnd),
}

/// Follows one journal until its mission finishes or its process is gone.
pub struct Follower {
    tail: JournalTail,
    queue: VecDeque<String>,
    /// The last mission event read was `mission_finished` (a resumed
    /// mission's journal has an earlier one, followed by `mission_started`).
    finished: bool,
    alive: Box<dyn Fn() -> bool + Send>,
}

impl Follower {
    /// `alive` says whether the mission's process still runs.
    pub fn new(tail: JournalTail, alive: Box<dyn Fn() -> bool + Send>) -> Follower {
        Follower {
            tail,
            queue: VecDeque::new(),
            finished: false,
            alive,
        }
    }

    /// The next line, waiting for one to be appended. Cancel-safe: lines
    /// read are queued before the only await.
    pub async fn next(&mut self) -> io::Result<FollowStep> {
        loop {
            if let Some(line) = self.queue.pop_front() {
                let envelope = serde_json::from_str::<Envelope>(&line).ok().map(Box::new);
                match envelope.as_ref().map(|e| &e.event) {
                    Some(Event::MissionFinished { .. }) => self.finished = true,
                    Some(Event::MissionStarted { .. }) => self.finished = false,
                    _ => {}
                }
                return Ok(FollowStep::Line(line, envelope));
            }
            let lines = self.tail.read_lines()?;
            if !lines.is_empty() {
                self.queue.extend(lines);
                continue;
            }
            if self.finished {
                return Ok(FollowStep::End(FollowEnd::Finished));
            }
            if !(self.alive)() {
                // Its last lines may have landed after the read above.
                let lines = self.tail.read_lines()?;
                if lines.is_empty() {
                    return Ok(FollowStep::End(FollowEnd::ProcessGone));
                }
                self.queue.extend(lines);
                continue;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    fn line(seq: u64, event: &str) -> String {
        format!("{{\"seq\":{seq},\"ts_ms\":1,{event}}}\n")
    }

    #[test]
    fn complete_lines_only_and_torn_lines_wait_for_their_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut file = File::create(&path).unwrap();
        let mut tail = JournalTail::open(&path).unwrap();
        assert!(tail.read_lines().unwrap().is_empty());
        file.write_all(b"one\ntwo\nthr").unwrap();
        assert_eq!(tail.read_lines().unwrap(), ["one", "two"]);
        assert!(tail.read_lines().unwrap().is_empty());
        file.write_all(b"ee\r\n\nfour\n").unwrap();
        assert_eq!(tail.read_lines().unwrap(), ["three", "four"]);
    }

    #[test]
    fn a_backlog_is_read_a_chunk_at_a_time_in_order_and_a_long_line_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut file = File::create(&path).unwrap();
        let mut written = Vec::new();
        let mut text = String::new();
        for i in 0..40_000 {
            written.push(format!("line {i:06} {}", "x".repeat(90)));
        }
        // A line longer than a chunk, in the middle.
        written.insert(20_000, "y".repeat(CHUNK * 2 + 7));
        for line in &written {
            text.push_str(line);
            text.push('\n');
        }
        file.write_all(text.as_bytes()).unwrap();
        let mut tail = JournalTail::open(&path).unwrap();
        let mut read = Vec::new();
        let mut calls = 0;
        loop {
            let lines = tail.read_lines().unwrap();
            if lines.is_empty() {
                break;
            }
            calls += 1;
            // At most a chunk and the line it cut (kept from the call
            // before), besides the line that was longer than a chunk.
            let bytes: usize = lines
                .iter()
                .filter(|l| l.len() <= CHUNK)
                .map(|l| l.len() + 1)
                .sum();
            assert!(
                bytes <= CHUNK + 100,
                "{} lines, {bytes} bytes in one call",
                lines.len()
            );
            read.extend(lines);
        }
        // The long line takes three chunks in one call.
        assert!(calls + 2 >= text.len() / CHUNK, "{calls} calls");
        assert_eq!(read.len(), written.len());
        assert!(read == written, "lines lost or out of order");
    }

    #[tokio::test]
    async fn following_stops_at_mission_finished_or_when_the_process_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut file = File::create(&path).unwrap();
        let warning = r#""type":"warning","message":"w""#;
        let finished = r#""type":"mission_finished","mission":"m","outcome":"cancelled","reason":"r","iterations":1,"usage":{"input":0,"output":0,"cached_input":0,"cache_write":0}"#;
        let started = r#""type":"mission_started","mission":"m","goal":"g","root":"/","max_iterations":3,"commander_session":"c","resumed":true"#;
        // A cancelled run, then a resume that is still going.
        for (seq, event) in [(1, warning), (2, finished), (3, started)] {
            file.write_all(line(seq, event).as_bytes()).unwrap();
        }
        file.write_all(b"{\"seq\":4,\"ts_ms\":1,\"type\":\"some_future_event\"}\n{\"seq\":5")
            .unwrap();
        let alive = Arc::new(AtomicBool::new(true));
        let flag = alive.clone();
        let mut follower = Follower::new(
            JournalTail::open(&path).unwrap(),
            Box::new(move || flag.load(Ordering::SeqCst)),
        );
        let mut seen = Vec::new();
        for _ in 0..4 {
            match follower.next().await.unwrap() {
                FollowStep::Line(_, envelope) => seen.push(envelope.map(|e| e.seq)),
                FollowStep::End(end) => panic!("ended early: {end:?}"),
            }
        }
        // The unknown event type is passed on raw, not parsed.
        assert_eq!(seen, [Some(1), Some(2), Some(3), None]);
        // The torn line completes; the resumed run finishes.
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            file.write_all(format!(",\"ts_ms\":1,{warning}}}\n").as_bytes())
                .unwrap();
            file.write_all(line(6, finished).as_bytes()).unwrap();
            file
        });
        let next = follower.next().await.unwrap();
        assert!(
            matches!(next, FollowStep::Line(_, Some(ref e)) if e.seq == 5),
            "{next:?}"
        );
        let next = follower.next().await.unwrap();
        assert!(
            matches!(next, FollowStep::Line(_, Some(ref e)) if e.seq == 6),
            "{next:?}"
        );
        assert_eq!(
            follower.next().await.unwrap(),
            FollowStep::End(FollowEnd::Finished)
        );
        let mut file = writer.await.unwrap();

        // A journal whose process died mid-run ends as gone.
        file.write_all(line(7, started).as_bytes()).unwrap();
        let flag = alive.clone();
        let mut follower = Follower::new(
            JournalTail::open(&path).unwrap(),
            Box::new(move || flag.load(Ordering::SeqCst)),
        );
        let mut count = 0;
        let end = loop {
            match follower.next().await.unwrap() {
                FollowStep::Line(..) => count += 1,
                FollowStep::End(end) => break end,
            }
            if count == 7 {
                alive.store(false, Ordering::SeqCst);
            }
        };
        assert_eq!((count, end), (7, FollowEnd::ProcessGone));
    }
}

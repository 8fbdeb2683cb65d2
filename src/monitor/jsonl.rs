//! `--json`: one JSON object per event on stdout, flushed per line.

use std::io::Write;
use std::sync::Mutex;

use crate::events::{Envelope, EventSink};

pub struct JsonLines<W: Write + Send> {
    out: Mutex<W>,
}

impl<W: Write + Send> JsonLines<W> {
    pub fn new(out: W) -> Self {
        JsonLines {
            out: Mutex::new(out),
        }
    }
}

impl<W: Write + Send> EventSink for JsonLines<W> {
    fn write(&self, envelope: &Envelope) {
        let Ok(mut line) = serde_json::to_vec(envelope) else {
            return;
        };
        line.push(b'\n');
        let mut out = self.out.lock().expect("jsonl writer lock");
        // A closed stdout (e.g. `| head`) must not stop the engine.
        let _ = out.write_all(&line).and_then(|()| out.flush());
    }
}

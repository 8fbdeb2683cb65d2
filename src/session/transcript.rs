//! A session's transcript: `.opencode/sessions/<id>.jsonl`, one JSON object a
//! line — a header, then every message as it completes.
//!
//! Each line is written with one `write` call, so a crash leaves at most a
//! torn last line, which readers skip.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::events::now_ms;
use crate::provider::Message;

pub struct Transcript {
    file: File,
    path: PathBuf,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line<'a> {
    Session {
        id: &'a str,
        agent: &'a str,
        model: &'a str,
        ts_ms: u64,
    },
    Message {
        ts_ms: u64,
        message: &'a Message,
    },
    /// The session was returned to its pool and starts over from its system prefix.
    Reset {
        ts_ms: u64,
    },
}

impl Transcript {
    pub fn create(dir: &Path, id: &str, agent: &str, model: &str) -> std::io::Result<Transcript> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{id}.jsonl"));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let mut transcript = Transcript { file, path };
        transcript.write_line(&Line::Session {
            id,
            agent,
            model,
            ts_ms: now_ms(),
        })?;
        Ok(transcript)
    }

    /// Open an existing transcript for appending and read back the
    /// conversation since its last reset. A torn last line (a crash
    /// mid-write) is ignored.
    pub fn reopen(dir: &Path, id: &str) -> std::io::Result<(Transcript, Vec<Message>)> {
        let path = dir.join(format!("{id}.jsonl"));
        let text = std::fs::read_to_string(&path)?;
        let mut messages = Vec::new();
        for line in text.lines() {
            let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            match value.get("type").and_then(|t| t.as_str()) {
                Some("reset") => messages.clear(),
                Some("message") => {
                    if let Some(message) = value
                        .get("message")
                        .and_then(|m| serde_json::from_value::<Message>(m.clone()).ok())
                    {
                        messages.push(message);
                    }
                }
                _ => {}
            }
        }
        let mut file = OpenOptions::new().append(true).open(&path)?;
        // A torn last line must not glue itself to the next one.
        if !text.is_empty() && !text.ends_with('\n') {
            file.write_all(b"\n")?;
        }
        Ok((Transcript { file, path }, messages))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn append(&mut self, message: &Message) -> std::io::Result<()> {
        self.write_line(&Line::Message {
            ts_ms: now_ms(),
            message,
        })
    }

    pub fn mark_reset(&mut self) -> std::io::Result<()> {
        self.write_line(&Line::Reset { ts_ms: now_ms() })
    }

    fn write_line(&mut self, line: &Line<'_>) -> std::io::Result<()> {
        let mut bytes = serde_json::to_vec(line).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        self.file.write_all(&bytes)
    }
}

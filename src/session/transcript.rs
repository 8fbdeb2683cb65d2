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

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn append(&mut self, message: &Message) -> std::io::Result<()> {
        self.write_line(&Line::Message {
            ts_ms: now_ms(),
            message,
        })
    }

    fn write_line(&mut self, line: &Line<'_>) -> std::io::Result<()> {
        let mut bytes = serde_json::to_vec(line).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        self.file.write_all(&bytes)
    }
}

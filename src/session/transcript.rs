//! A session's transcript: `.opencode/sessions/<id>.jsonl`, one JSON object a
//! line — a header, then every message as it completes.
//!
//! Each line is written with one `write` call, so a crash leaves at most a
//! torn last line, which readers skip. A conversation read back is made
//! valid again before it is sent: a tool call without a recorded result gets
//! one saying it was interrupted.

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
        let mut text = serde_json::to_string(line).map_err(std::io::Error::other)?;
        crate::secrets::redact_in(&mut text);
        text.push('\n');
        self.file.write_all(text.as_bytes())
    }
}

/// Give every tool call of the last assistant message a result: the ones
/// recorded keep theirs, the missing ones say they were interrupted.
pub fn patch_interrupted_calls(messages: &mut Vec<Message>) {
    let Some(last_assistant) = messages
        .iter()
        .rposition(|m| matches!(m, Message::Assistant { .. }))
    else {
        return;
    };
    let Message::Assistant { tool_calls, .. } = &messages[last_assistant] else {
        return;
    };
    let answered: Vec<String> = messages[last_assistant + 1..]
        .iter()
        .filter_map(|m| match m {
            Message::Tool { call_id, .. } => Some(call_id.clone()),
            _ => None,
        })
        .collect();
    let missing: Vec<Message> = tool_calls
        .iter()
        .filter(|call| !answered.contains(&call.id))
        .map(|call| Message::Tool {
            call_id: call.id.clone(),
            name: call.name.clone(),
            content: "interrupted: orch stopped before this call's result was recorded; check the current state before repeating it".into(),
            is_error: true,
        })
        .collect();
    messages.extend(missing);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ToolCall;

    fn call(id: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: "bash".into(),
            arguments: r#"{"command":"cargo test"}"#.into(),
        }
    }

    #[test]
    fn only_unanswered_calls_of_the_last_turn_are_patched_in_order() {
        let answered = Message::Tool {
            call_id: "c1".into(),
            name: "bash".into(),
            content: "ok".into(),
            is_error: false,
        };
        let mut messages = vec![
            Message::user("go"),
            Message::Assistant {
                text: String::new(),
                tool_calls: vec![call("c1"), call("c2"), call("c3")],
            },
            answered.clone(),
        ];
        patch_interrupted_calls(&mut messages);
        let ids: Vec<&str> = messages[2..]
            .iter()
            .map(|m| match m {
                Message::Tool { call_id, .. } => call_id.as_str(),
                _ => panic!("{m:?}"),
            })
            .collect();
        assert_eq!(ids, ["c1", "c2", "c3"]);
        assert_eq!(messages[2], answered);
        let Message::Tool {
            content, is_error, ..
        } = &messages[3]
        else {
            panic!()
        };
        assert!(
            *is_error && content.starts_with("interrupted:"),
            "{content}"
        );

        // A finished conversation is left alone.
        let mut done = vec![
            Message::user("go"),
            Message::Assistant {
                text: "done".into(),
                tool_calls: Vec::new(),
            },
        ];
        let before = done.clone();
        patch_interrupted_calls(&mut done);
        assert_eq!(done, before);
    }

    #[test]
    fn a_reopened_transcript_starts_after_its_last_reset_and_skips_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut transcript = Transcript::create(dir.path(), "w1", "Worker", "m").unwrap();
        transcript.append(&Message::user("first task")).unwrap();
        transcript.mark_reset().unwrap();
        transcript.append(&Message::user("second task")).unwrap();
        drop(transcript);
        let path = dir.path().join("w1.jsonl");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(r#"{"type":"message","message":{"role":"us"#);
        std::fs::write(&path, text).unwrap();
        let (mut reopened, messages) = Transcript::reopen(dir.path(), "w1").unwrap();
        assert_eq!(messages, vec![Message::user("second task")]);
        reopened.append(&Message::user("third")).unwrap();
        let (_, messages) = Transcript::reopen(dir.path(), "w1").unwrap();
        assert_eq!(
            messages,
            vec![Message::user("second task"), Message::user("third")]
        );
    }
}

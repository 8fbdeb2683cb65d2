//! Frontends that fold the event stream: plain progress lines and JSONL.
//! They observe; they never influence a session or a mission.

pub mod jsonl;
pub mod plain;

//! The plan: `.opencode/todo.md` parsed into items and groups, edited with
//! minimal changes, summarized for the completion gate, and written by one
//! writer at a time.
//!
//! - [`Plan`] is a pure parser/serializer: unknown lines are kept byte for
//!   byte, so a plan that was not edited serializes to exactly the text it
//!   was parsed from, and an edit changes only the lines it must.
//! - [`Plan::set_status`] and [`Plan::add`] are the pure operations behind
//!   `update_todo` and `add_todo`; IDs are matched exactly.
//! - [`Plan::progress`] is what the completion gate asks: counts at every
//!   depth and the items that are not done yet.
//! - [`SyncIssues`] counts open items in `.opencode/sync-issues.md`.
//! - [`TodoStore`] owns the file for one project: it serializes updates,
//!   re-reads the file before each one (a human's edit is kept) and writes
//!   atomically.
//!
//! This module knows nothing about agents; who may mark an item done is the
//! `update_todo` tool's rule.

mod edit;
mod parse;
mod progress;
mod store;
mod sync;

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use edit::{NewItem, StatusChange};
pub use parse::{Group, Item, Meta, Plan};
pub use progress::{Blocker, Counts, Progress};
pub use store::{Added, TodoStore, Updated};
pub use sync::{SyncIssue, SyncIssues};

/// The state of one plan item, written as a marker between brackets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// `[ ]`
    Pending,
    /// `[/]`
    InProgress,
    /// `[x]` (or `[X]`)
    Done,
    /// `[-]`
    Failed,
}

impl Status {
    /// The status a marker character stands for, if it is one.
    pub fn from_marker(marker: char) -> Option<Status> {
        match marker {
            ' ' => Some(Status::Pending),
            '/' => Some(Status::InProgress),
            'x' | 'X' => Some(Status::Done),
            '-' => Some(Status::Failed),
            _ => None,
        }
    }

    /// The character written between the brackets.
    pub fn marker(self) -> char {
        match self {
            Status::Pending => ' ',
            Status::InProgress => '/',
            Status::Done => 'x',
            Status::Failed => '-',
        }
    }

    /// The status named by `update_todo`'s `status` argument
    /// (`pending`, `progress`, `completed`, `failed`).
    pub fn from_tool_name(name: &str) -> Option<Status> {
        match name {
            "pending" => Some(Status::Pending),
            "progress" => Some(Status::InProgress),
            "completed" => Some(Status::Done),
            "failed" => Some(Status::Failed),
            _ => None,
        }
    }

    /// The name `update_todo` uses for this status.
    pub fn tool_name(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::InProgress => "progress",
            Status::Done => "completed",
            Status::Failed => "failed",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Pending => "pending",
            Status::InProgress => "in progress",
            Status::Done => "done",
            Status::Failed => "failed",
        })
    }
}

/// Why a plan operation did not happen. Every message is a sentence an agent
/// can act on.
#[derive(Debug, thiserror::Error)]
pub enum TodoError {
    #[error("no item has ID {id:?}; known IDs include {}", list_or_none(known))]
    UnknownId { id: String, known: Vec<String> },
    #[error(
        "ID {id:?} is used by several items (lines {}); make the IDs unique before updating it",
        join_numbers(lines)
    )]
    DuplicateId { id: String, lines: Vec<usize> },
    #[error("{id:?} is a group heading (line {line}), not an item; update the items under it")]
    GroupHeading { id: String, line: usize },
    #[error("ID {id:?} is already used (line {line}); choose another ID or leave it out")]
    IdTaken { id: String, line: usize },
    #[error("{0}")]
    Invalid(String),
    #[error("no plan yet: {} does not exist", path.display())]
    NoPlan { path: PathBuf },
    #[error("{} is not UTF-8 text", path.display())]
    NotText { path: PathBuf },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} kept changing while it was being updated ({attempts} attempts); try again", path.display())]
    Contended { path: PathBuf, attempts: u32 },
}

fn list_or_none(ids: &[String]) -> String {
    if ids.is_empty() {
        "none (the plan has no addressable items)".into()
    } else {
        ids.join(", ")
    }
}

fn join_numbers(numbers: &[usize]) -> String {
    numbers
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_and_tool_names_round_trip() {
        for status in [
            Status::Pending,
            Status::InProgress,
            Status::Done,
            Status::Failed,
        ] {
            assert_eq!(Status::from_marker(status.marker()), Some(status));
            assert_eq!(Status::from_tool_name(status.tool_name()), Some(status));
        }
        assert_eq!(Status::from_marker('X'), Some(Status::Done));
        assert_eq!(Status::from_marker('?'), None);
        assert_eq!(Status::from_tool_name("done"), None);
    }

    #[test]
    fn errors_read_as_sentences() {
        let err = TodoError::UnknownId {
            id: "T9".into(),
            known: vec!["T1".into(), "T2".into()],
        };
        assert_eq!(
            err.to_string(),
            "no item has ID \"T9\"; known IDs include T1, T2"
        );
        let err = TodoError::DuplicateId {
            id: "T1".into(),
            lines: vec![3, 7],
        };
        assert_eq!(
            err.to_string(),
            "ID \"T1\" is used by several items (lines 3, 7); make the IDs unique before updating it"
        );
    }
}

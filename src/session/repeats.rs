//! The repetition breaker, judged as a person would: a session is stopped
//! only when it makes the same tool call (name and arguments, in any key
//! order) and gets the same result `limit` times in a row within one run —
//! it is going round in circles and learning nothing. A repeat counts only
//! within a run: a new message (the engine's continuation, a task result)
//! is new context. Status tools never count: reading the plan or polling a
//! background job again is how a model waits, not a loop — and when a
//! status tool answers differently than it did last time, that is new
//! context too (`sleep 5`, poll, `sleep 5`, poll is waiting, not a loop).

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use serde_json::Value;

use crate::provider::ToolCall;

/// Read-only status tools: calling them again is expected.
pub const STATUS_TOOLS: &[&str] = &[
    "read_todo",
    "list_tasks",
    "get_task_result",
    "check_background",
    "list_background",
    "git_status",
    "git_diff",
    "show_metrics",
    "recall",
    "list_agents",
];

#[derive(Debug, Default)]
pub struct RepeatGuard {
    /// `None`: never stop.
    limit: Option<u32>,
    /// The last call made (name, canonical arguments, hash of its result)
    /// and how many times in a row it was made with that result.
    last: Option<(String, String, u64)>,
    repeats: u32,
    /// The last result of each status call (name and arguments).
    status: HashMap<(String, String), u64>,
}

impl RepeatGuard {
    pub fn new(limit: Option<u32>) -> RepeatGuard {
        RepeatGuard {
            limit,
            ..RepeatGuard::default()
        }
    }

    /// Count the calls of one turn and their results, in order; the reason
    /// to stop when the limit is reached.
    pub fn observe(&mut self, calls: &[ToolCall], results: &[String]) -> Option<String> {
        let limit = self.limit?;
        for (call, result) in calls.iter().zip(results) {
            let mut hasher = DefaultHasher::new();
            result.hash(&mut hasher);
            let result = hasher.finish();
            let arguments = canonical_arguments(&call.arguments);
            if STATUS_TOOLS.contains(&call.name.as_str()) {
                let before = self.status.insert((call.name.clone(), arguments), result);
                if before.is_some_and(|before| before != result) {
                    self.last = None;
                    self.repeats = 0;
                }
                continue;
            }
            let signature = (call.name.clone(), arguments, result);
            if self.last.as_ref() == Some(&signature) {
                self.repeats += 1;
            } else {
                self.last = Some(signature);
                self.repeats = 1;
            }
            if self.repeats >= limit {
                return Some(format!(
                    "the same tool call ({} {}) got the same result {} times in a row",
                    call.name,
                    crate::text::preview(&call.arguments, 120),
                    self.repeats
                ));
            }
        }
        None
    }

    /// Start counting afresh (a new run: new context).
    pub fn reset(&mut self) {
        self.last = None;
        self.repeats = 0;
        self.status.clear();
    }
}

/// Arguments in a canonical form, so `{"a":1, "b":2}` and `{"b":2,"a":1}`
/// count as the same call.
fn canonical_arguments(raw: &str) -> String {
    match serde_json::from_str::<Value>(raw) {
        Ok(value) => sorted(value).to_string(),
        Err(_) => raw.trim().to_string(),
    }
}

fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, arguments: &str) -> ToolCall {
        ToolCall {
            id: "c".into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    fn same(guard: &mut RepeatGuard, name: &str, arguments: &str, result: &str) -> Option<String> {
        guard.observe(&[call(name, arguments)], &[result.to_string()])
    }

    #[test]
    fn the_same_call_with_the_same_result_stops_at_the_limit() {
        let mut guard = RepeatGuard::new(Some(3));
        assert_eq!(
            same(&mut guard, "read", r#"{"path":"a","limit":5}"#, "x"),
            None
        );
        assert_eq!(
            same(&mut guard, "read", r#"{"limit":5, "path":"a"}"#, "x"),
            None
        );
        assert_eq!(
            same(&mut guard, "read", r#"{"path":"a","limit":5}"#, "x").as_deref(),
            Some(
                r#"the same tool call (read {"path":"a","limit":5}) got the same result 3 times in a row"#
            )
        );
    }

    #[test]
    fn a_different_result_is_progress() {
        let mut guard = RepeatGuard::new(Some(2));
        // A test run whose output changes is not a loop.
        assert_eq!(
            same(
                &mut guard,
                "bash",
                r#"{"command":"cargo test"}"#,
                "1 failed"
            ),
            None
        );
        assert_eq!(
            same(
                &mut guard,
                "bash",
                r#"{"command":"cargo test"}"#,
                "0 failed"
            ),
            None
        );
        assert!(
            same(
                &mut guard,
                "bash",
                r#"{"command":"cargo test"}"#,
                "0 failed"
            )
            .is_some()
        );
    }

    #[test]
    fn status_tools_never_count_and_a_new_run_starts_over() {
        let mut guard = RepeatGuard::new(Some(2));
        for _ in 0..10 {
            assert_eq!(same(&mut guard, "read_todo", "{}", "- [ ] T1: a"), None);
            assert_eq!(
                same(
                    &mut guard,
                    "check_background",
                    r#"{"id":"bg_1"}"#,
                    "running"
                ),
                None
            );
        }
        assert_eq!(same(&mut guard, "bash", r#"{"command":"ls"}"#, "a"), None);
        guard.reset();
        assert_eq!(same(&mut guard, "bash", r#"{"command":"ls"}"#, "a"), None);
        // Status calls in between neither count nor break the streak...
        assert_eq!(same(&mut guard, "read_todo", "{}", "plan"), None);
        assert!(same(&mut guard, "bash", r#"{"command":"ls"}"#, "a").is_some());
        // ...unless what they say changed: waiting between polls is not a loop.
        let mut guard = RepeatGuard::new(Some(2));
        let sleep = r#"{"command":"sleep 1"}"#;
        assert_eq!(
            same(
                &mut guard,
                "check_background",
                r#"{"id":"bg_1"}"#,
                "running for 0.1 s"
            ),
            None
        );
        assert_eq!(same(&mut guard, "bash", sleep, "exit code 0"), None);
        assert_eq!(
            same(
                &mut guard,
                "check_background",
                r#"{"id":"bg_1"}"#,
                "running for 1.2 s"
            ),
            None
        );
        assert_eq!(same(&mut guard, "bash", sleep, "exit code 0"), None);
        assert_eq!(
            same(
                &mut guard,
                "check_background",
                r#"{"id":"bg_1"}"#,
                "running for 1.2 s"
            ),
            None
        );
        assert!(same(&mut guard, "bash", sleep, "exit code 0").is_some());
        // Two identical calls in one turn count too.
        let mut guard = RepeatGuard::new(Some(2));
        let twice = [call("grep", "not json"), call("grep", " not json ")];
        let results = ["none".to_string(), "none".to_string()];
        assert!(guard.observe(&twice, &results).is_some());
        assert_eq!(RepeatGuard::new(None).observe(&twice, &results), None);
    }
}

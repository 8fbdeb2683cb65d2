//! The repetition breaker: a session that makes the same tool call (name and
//! arguments, in any key order) `limit` times in a row is stopped, since a
//! model in a loop would otherwise spend its whole budget.

use serde_json::Value;

use crate::provider::ToolCall;

#[derive(Debug, Default)]
pub struct RepeatGuard {
    /// `None`: never stop.
    limit: Option<u32>,
    /// The last call made and how many times in a row it was made.
    last: Option<(String, String)>,
    repeats: u32,
}

impl RepeatGuard {
    pub fn new(limit: Option<u32>) -> RepeatGuard {
        RepeatGuard {
            limit,
            ..RepeatGuard::default()
        }
    }

    /// Count the calls of one turn, in order; the reason to stop when the
    /// limit is reached.
    pub fn observe(&mut self, calls: &[ToolCall]) -> Option<String> {
        let limit = self.limit?;
        for call in calls {
            let signature = (call.name.clone(), canonical_arguments(&call.arguments));
            if self.last.as_ref() == Some(&signature) {
                self.repeats += 1;
            } else {
                self.last = Some(signature);
                self.repeats = 1;
            }
            if self.repeats >= limit {
                return Some(format!(
                    "the same tool call ({} {}) was made {} times in a row",
                    call.name,
                    crate::text::preview(&call.arguments, 120),
                    self.repeats
                ));
            }
        }
        None
    }

    /// Start counting afresh (a new task for a pooled session).
    pub fn reset(&mut self) {
        self.last = None;
        self.repeats = 0;
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

    #[test]
    fn the_same_call_in_any_key_order_stops_at_the_limit() {
        let mut guard = RepeatGuard::new(Some(3));
        assert_eq!(
            guard.observe(&[call("read", r#"{"path":"a","limit":5}"#)]),
            None
        );
        assert_eq!(
            guard.observe(&[call("read", r#"{"limit":5, "path":"a"}"#)]),
            None
        );
        let stop = guard.observe(&[call("read", r#"{"path":"a","limit":5}"#)]);
        assert_eq!(
            stop.as_deref(),
            Some(r#"the same tool call (read {"path":"a","limit":5}) was made 3 times in a row"#)
        );
    }

    #[test]
    fn another_call_in_between_or_a_reset_starts_over() {
        let mut guard = RepeatGuard::new(Some(2));
        assert_eq!(guard.observe(&[call("bash", r#"{"command":"ls"}"#)]), None);
        assert_eq!(guard.observe(&[call("bash", r#"{"command":"pwd"}"#)]), None);
        guard.reset();
        assert_eq!(guard.observe(&[call("bash", r#"{"command":"pwd"}"#)]), None);
        // Two identical calls in one turn count too.
        let twice = [call("grep", "not json"), call("grep", " not json ")];
        assert!(guard.observe(&twice).is_some());
        assert_eq!(RepeatGuard::new(None).observe(&twice), None);
    }
}

//! Plugins answering the engine's hook points: every plugin subscribed to a
//! point is asked in file order, one hook call per plugin at a time; the
//! first `block` wins, `modify` answers chain into the payload, and a fault
//! counts as `continue`.

use async_trait::async_trait;
use serde_json::Value;

use super::bindings::{self, Decision, HookEvent, HookPoint};
use super::state::sanitize;
use super::{Fault, Loaded, PluginHost};
use crate::hooks::{self, Hooks};
use std::sync::Arc;
use std::sync::atomic::Ordering;

impl PluginHost {
    /// Ask every plugin subscribed to `point` (by contract name), in file
    /// order. The first `block` wins; `modify`s chain: the fields a plugin
    /// returns replace those of the payload, so the next plugin sees the
    /// whole payload with the change (`session`, `call`, `tool` stay). A
    /// fault counts as `continue`.
    pub async fn hook(&self, point: &str, payload: Value) -> hooks::Decision {
        let Some(point) = bindings::hook_point(point) else {
            return hooks::Decision::Continue;
        };
        let plugins: Vec<Arc<Loaded>> = self
            .read()
            .values()
            .filter(|p| p.hooks.contains(&point) && !p.disabled.load(Ordering::Relaxed))
            .cloned()
            .collect();
        let mut current = payload;
        let mut modified = false;
        for plugin in plugins {
            match self.hook_one(&plugin, point, &current).await {
                Ok(hooks::Decision::Continue) => {}
                Ok(hooks::Decision::Modify(value)) => {
                    match (&mut current, value) {
                        (Value::Object(fields), Value::Object(changed)) => fields.extend(changed),
                        (current, value) => *current = value,
                    }
                    modified = true;
                }
                Ok(block @ hooks::Decision::Block(_)) => return block,
                Err(Fault(reason)) => {
                    let message = format!(
                        "plugin \"{}\": hook {}: {reason}",
                        plugin.info.file,
                        bindings::hook_name(point)
                    );
                    self.fault(&plugin, &message);
                }
            }
        }
        if modified {
            hooks::Decision::Modify(current)
        } else {
            hooks::Decision::Continue
        }
    }

    async fn hook_one(
        &self,
        plugin: &Loaded,
        point: HookPoint,
        payload: &Value,
    ) -> Result<hooks::Decision, Fault> {
        let event = HookEvent {
            point,
            payload: payload.to_string(),
        };
        let deadline = self.inner.limits.hook_deadline;
        let _turn = plugin.hook_turn.lock().await;
        let answer = self
            .run(plugin, deadline, async |guest, store| {
                guest.call_on_hook(store, &event).await
            })
            .await?;
        match answer {
            Err(message) => Err(Fault(format!(
                "returned an error: {}",
                sanitize(&message, 500)
            ))),
            Ok(Decision::Continue) => Ok(hooks::Decision::Continue),
            Ok(Decision::Block(reason)) => Ok(hooks::Decision::Block(sanitize(&reason, 2_000))),
            Ok(Decision::Modify(json)) => {
                if json.len() > self.inner.limits.max_output.max(payload_size(payload) * 2) {
                    return Err(Fault(format!(
                        "modify answer of {} bytes is over the output cap",
                        json.len()
                    )));
                }
                serde_json::from_str(&json)
                    .map(hooks::Decision::Modify)
                    .map_err(|err| Fault(format!("modify answer is not valid JSON: {err}")))
            }
        }
    }
}

fn payload_size(payload: &Value) -> usize {
    match payload {
        Value::Null => 0,
        other => other.to_string().len(),
    }
}

#[async_trait]
impl Hooks for PluginHost {
    fn wants(&self, point: hooks::HookPoint) -> bool {
        self.listens(point.name())
    }

    async fn call(&self, point: hooks::HookPoint, payload: Value) -> hooks::Decision {
        self.hook(point.name(), payload).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_point_names_round_trip() {
        for name in [
            "mission-start",
            "mission-end",
            "iteration",
            "session-start",
            "session-end",
            "pre-tool-use",
            "post-tool-use",
            "pre-model-request",
            "post-model-response",
            "todo-updated",
            "pre-compact",
        ] {
            let point = bindings::hook_point(name).unwrap();
            assert_eq!(bindings::hook_name(point), name);
        }
        assert!(bindings::hook_point("pre-everything").is_none());
        for point in [
            hooks::HookPoint::PreModelRequest,
            hooks::HookPoint::PreCompact,
            hooks::HookPoint::PreToolUse,
            hooks::HookPoint::PostToolUse,
        ] {
            assert!(bindings::hook_point(point.name()).is_some());
        }
    }
}

//! memory-gate: keeps model requests lean. Before each model request it
//! shortens old tool outputs beyond a size (the recent tail stays intact) and
//! returns the reshaped messages; after each tool call it notes large outputs
//! as a metric. It never blocks.

use orch_plugin_sdk::{Decision, HookEvent, HookPoint, Manifest, Plugin, export_plugin, host};
use serde_json::{Value, json};

struct MemoryGate;

/// Tool outputs longer than this (in bytes) are shortened unless recent.
const MAX_OLD_OUTPUT: usize = 2_000;
/// The last messages are never touched.
const KEEP_TAIL: usize = 6;

impl Plugin for MemoryGate {
    fn manifest() -> Manifest {
        Manifest::new("memory-gate", "0.1.0")
            .description("Shortens old tool outputs before model requests")
            .hook(HookPoint::PreModelRequest)
            .hook(HookPoint::PostToolUse)
    }

    fn on_hook(event: HookEvent) -> Result<Decision, String> {
        let payload: Value = serde_json::from_str(&event.payload)
            .map_err(|err| format!("hook payload is not JSON: {err}"))?;
        match event.point {
            HookPoint::PreModelRequest => Ok(gate(payload)),
            HookPoint::PostToolUse => {
                let size = payload["output"].as_str().map_or(0, str::len);
                if size > MAX_OLD_OUTPUT {
                    host::record_metric("memory-gate.large-output-bytes", size as f64);
                }
                Ok(Decision::Continue)
            }
            _ => Ok(Decision::Continue),
        }
    }
}

/// Shorten every tool message's text beyond `MAX_OLD_OUTPUT` outside the tail.
fn gate(mut payload: Value) -> Decision {
    let Some(messages) = payload["messages"].as_array_mut() else {
        return Decision::Continue;
    };
    let old = messages.len().saturating_sub(KEEP_TAIL);
    let mut changed = 0;
    for message in messages.iter_mut().take(old) {
        if message["role"] != "tool" {
            continue;
        }
        for field in ["content", "text", "output"] {
            if let Some(text) = message[field].as_str()
                && text.len() > MAX_OLD_OUTPUT
            {
                let mut cut = MAX_OLD_OUTPUT;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                let short = format!(
                    "{}\n[memory-gate: {} more bytes of this old tool output dropped]",
                    &text[..cut],
                    text.len() - cut
                );
                message[field] = Value::String(short);
                changed += 1;
            }
        }
    }
    if changed == 0 {
        return Decision::Continue;
    }
    host::record_metric("memory-gate.shortened", changed as f64);
    Decision::Modify(json!({ "messages": messages }).to_string())
}

export_plugin!(MemoryGate);

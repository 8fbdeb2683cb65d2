//! metrics: counts tool calls and failures per tool through the pre/post-tool-use
//! hooks (kept in the plugin's key-value store) and shows them with the tool
//! `plugin_metrics` (the built-in `show_metrics` is the engine's own fold).

use orch_plugin_sdk::{
    Decision, HookEvent, HookPoint, Manifest, Plugin, ToolSpec, export_plugin, host,
};
use serde_json::{Map, Value, json};

struct Metrics;

const KEY: &str = "counts";

impl Plugin for Metrics {
    fn manifest() -> Manifest {
        Manifest::new("metrics", "0.1.0")
            .description("Tool call counts per tool")
            .hook(HookPoint::PreToolUse)
            .hook(HookPoint::PostToolUse)
            .tool(ToolSpec::new(
                "plugin_metrics",
                "Show how often each tool was called in this run and how often it failed.",
                r#"{"type":"object","properties":{}}"#,
            ))
    }

    fn call_tool(name: &str, _args_json: &str) -> Result<String, String> {
        if name != "plugin_metrics" {
            return Err(format!("metrics has no tool named {name:?}"));
        }
        Ok(Value::Object(counts()).to_string())
    }

    fn on_hook(event: HookEvent) -> Result<Decision, String> {
        let payload: Value = serde_json::from_str(&event.payload)
            .map_err(|err| format!("hook payload is not JSON: {err}"))?;
        let tool = payload["tool"].as_str().unwrap_or("?").to_string();
        let mut counts = counts();
        let entry = counts
            .entry(tool.clone())
            .or_insert_with(|| json!({"calls": 0, "failures": 0}));
        match event.point {
            HookPoint::PreToolUse => {
                entry["calls"] = json!(entry["calls"].as_u64().unwrap_or(0) + 1);
                host::record_metric(&format!("tool.{tool}.calls"), 1.0);
            }
            HookPoint::PostToolUse if payload["is-error"].as_bool() == Some(true) => {
                entry["failures"] = json!(entry["failures"].as_u64().unwrap_or(0) + 1);
                host::record_metric(&format!("tool.{tool}.failures"), 1.0);
            }
            _ => {}
        }
        host::kv_set(KEY, &Value::Object(counts).to_string())?;
        Ok(Decision::Continue)
    }
}

fn counts() -> Map<String, Value> {
    host::kv_get(KEY)
        .and_then(|text| serde_json::from_str::<Map<String, Value>>(&text).ok())
        .unwrap_or_default()
}

export_plugin!(Metrics);

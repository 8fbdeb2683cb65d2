//! metrics: per-tool call counts, failures and timings, measured between the
//! `pre-tool-use` and `post-tool-use` hooks of each call (matched by call
//! id), kept in the plugin's key-value store, shown by the tool
//! `plugin_metrics` (the built-in `show_metrics` is the engine's own fold)
//! and written to `metrics.json` in its data folder
//! (`.opencode/plugin-data/metrics/`) when the plugin is granted one.

use std::time::{SystemTime, UNIX_EPOCH};

use orch_plugin_sdk::{
    Decision, HookEvent, HookPoint, LogLevel, Manifest, Plugin, ToolSpec, export_plugin, host,
};
use serde_json::{Map, Value, json};

struct Metrics;

/// Per tool: `{calls, failures, total_ms, max_ms}`.
const TOOLS: &str = "tools";
/// Per call id: when its `pre-tool-use` was seen (ms since the epoch).
const STARTS: &str = "starts";
/// A start older than this never got its `post-tool-use` (the call was
/// refused before it ran) and is dropped.
const STALE_MS: f64 = 10.0 * 60.0 * 1000.0;
const FILE: &str = "/data/metrics.json";
/// Set once writing the file failed (no data folder granted).
const NO_FILE: &str = "no-file";

impl Plugin for Metrics {
    fn manifest() -> Manifest {
        Manifest::new("metrics", "0.2.0")
            .description("Tool call counts, failures and timings per tool")
            .capability("data")
            .hook(HookPoint::PreToolUse)
            .hook(HookPoint::PostToolUse)
            .tool(ToolSpec::new(
                "plugin_metrics",
                "Show, per tool, how often it was called in this run, how often it failed and how long it took (mean and max ms).",
                r#"{"type":"object","properties":{}}"#,
            ))
    }

    fn call_tool(name: &str, _args_json: &str) -> Result<String, String> {
        if name != "plugin_metrics" {
            return Err(format!("metrics has no tool named {name:?}"));
        }
        Ok(report(&load(TOOLS)).to_string())
    }

    fn on_hook(event: HookEvent) -> Result<Decision, String> {
        let payload: Value = serde_json::from_str(&event.payload)
            .map_err(|err| format!("hook payload is not JSON: {err}"))?;
        // Call ids are unique within a session only (some servers number
        // them per response).
        let call = format!(
            "{}/{}",
            payload["session"].as_str().unwrap_or(""),
            payload["call"].as_str().unwrap_or("")
        );
        let now = now_ms();
        match event.point {
            HookPoint::PreToolUse => {
                let mut starts = load(STARTS);
                starts.retain(|_, at| now - at.as_f64().unwrap_or(0.0) < STALE_MS);
                starts.insert(call, json!(now));
                save(STARTS, &starts)?;
            }
            HookPoint::PostToolUse => {
                let mut starts = load(STARTS);
                let took = starts
                    .remove(&call)
                    .and_then(|at| at.as_f64())
                    .map(|at| (now - at).max(0.0));
                save(STARTS, &starts)?;
                let tool = payload["tool"].as_str().unwrap_or("?").to_string();
                let failed = payload["is-error"].as_bool() == Some(true);
                let mut tools = load(TOOLS);
                let entry = tools.entry(tool.clone()).or_insert_with(
                    || json!({"calls": 0, "failures": 0, "total_ms": 0.0, "max_ms": 0.0}),
                );
                bump(entry, "calls", 1.0);
                host::record_metric(&format!("tool.{tool}.calls"), 1.0);
                if failed {
                    bump(entry, "failures", 1.0);
                    host::record_metric(&format!("tool.{tool}.failures"), 1.0);
                }
                if let Some(ms) = took {
                    bump(entry, "total_ms", ms);
                    if ms > entry["max_ms"].as_f64().unwrap_or(0.0) {
                        entry["max_ms"] = json!(ms);
                    }
                    host::record_metric(&format!("tool.{tool}.ms"), ms);
                }
                save(TOOLS, &tools)?;
                write_file(&tools);
            }
            _ => {}
        }
        Ok(Decision::Continue)
    }
}

/// Write the report of `tools` to `/data/metrics.json` (temp file +
/// rename, so a reader never sees half of it). Without a data folder
/// the write fails: that is said once, and the numbers stay in the store,
/// where `plugin_metrics` shows them.
fn write_file(tools: &Map<String, Value>) {
    if host::kv_get(NO_FILE).is_some() {
        return;
    }
    let report = report(tools);
    let tmp = format!("{FILE}.tmp");
    let written =
        std::fs::write(&tmp, format!("{report:#}\n")).and_then(|()| std::fs::rename(&tmp, FILE));
    if let Err(err) = written {
        let _ = host::kv_set(NO_FILE, "1");
        host::log(
            LogLevel::Info,
            &format!(
                "not writing metrics.json ({err}); grant the plugin \"data\": true to get it in .opencode/plugin-data/metrics/"
            ),
        );
    }
}

/// What the tool shows and the file holds: counts and mean/max times.
fn report(tools: &Map<String, Value>) -> Value {
    let tools: Map<String, Value> = tools
        .iter()
        .map(|(name, entry)| {
            let calls = entry["calls"].as_f64().unwrap_or(0.0);
            let total = entry["total_ms"].as_f64().unwrap_or(0.0);
            let mean = if calls > 0.0 { total / calls } else { 0.0 };
            (
                name.clone(),
                json!({
                    "calls": calls as u64,
                    "failures": entry["failures"].as_u64().unwrap_or(0),
                    "mean_ms": round(mean),
                    "max_ms": round(entry["max_ms"].as_f64().unwrap_or(0.0)),
                }),
            )
        })
        .collect();
    json!({ "tools": tools })
}

fn bump(entry: &mut Value, key: &str, by: f64) {
    let value = entry[key].as_f64().unwrap_or(0.0) + by;
    entry[key] = if key == "calls" || key == "failures" {
        json!(value as u64)
    } else {
        json!(value)
    };
}

fn round(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

fn load(key: &str) -> Map<String, Value> {
    host::kv_get(key)
        .and_then(|text| serde_json::from_str::<Map<String, Value>>(&text).ok())
        .unwrap_or_default()
}

fn save(key: &str, map: &Map<String, Value>) -> Result<(), String> {
    let text = serde_json::to_string(map).map_err(|err| err.to_string())?;
    host::kv_set(key, &text)
}

export_plugin!(Metrics);

//! contract-0-1-0: a plugin built against `orch:plugin@0.1.0` (its WIT kept
//! in `wit/` as released), which a host speaking a later 0.1 version must
//! still load and run: a tool that logs, uses the key-value store and
//! fetches through `net`.

wit_bindgen::generate!({ path: "wit", world: "plugin" });

use exports::orch::plugin::guest::Guest;
use orch::plugin::host::{kv_get, kv_set, log};
use orch::plugin::net::fetch;
use orch::plugin::types::{Decision, HookEvent, LogLevel, PluginManifest, ToolSpec};

struct Released;

impl Guest for Released {
    fn manifest() -> PluginManifest {
        PluginManifest {
            name: "released".into(),
            version: "0.1.0".into(),
            description: "built for orch:plugin@0.1.0".into(),
            tools: vec![ToolSpec {
                name: "released_fetch".into(),
                description: "Fetch a URL and count the calls".into(),
                parameters:
                    r#"{"type":"object","properties":{"url":{"type":"string"}},"required":["url"]}"#
                        .into(),
            }],
            hooks: Vec::new(),
            agents: Vec::new(),
            capabilities: Vec::new(),
        }
    }

    fn call_tool(_name: String, args_json: String) -> Result<String, String> {
        let calls: u32 = kv_get("calls").and_then(|n| n.parse().ok()).unwrap_or(0) + 1;
        kv_set("calls", &calls.to_string())?;
        log(LogLevel::Info, &format!("call {calls}"));
        // The arguments are {"url": "..."}; a plugin this small reads them by hand.
        let url = args_json
            .split("\"url\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .ok_or("missing url")?;
        let response = fetch(url, 4096)?;
        Ok(format!(
            "call {calls}: {} {}",
            response.status, response.body
        ))
    }

    fn on_hook(_event: HookEvent) -> Result<Decision, String> {
        Ok(Decision::Continue)
    }
}

export!(Released);

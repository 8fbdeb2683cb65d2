//! old-version: a plugin built against `orch:plugin@0.0.9`, which the host
//! must refuse by name.

wit_bindgen::generate!({ path: "wit", world: "plugin" });

use exports::orch::plugin::guest::Guest;
use orch::plugin::types::{Decision, HookEvent, PluginManifest};

struct Old;

impl Guest for Old {
    fn manifest() -> PluginManifest {
        PluginManifest {
            name: "old".into(),
            version: "0.0.9".into(),
            description: String::new(),
            tools: Vec::new(),
            hooks: Vec::new(),
            agents: Vec::new(),
            capabilities: Vec::new(),
        }
    }

    fn call_tool(_name: String, _args_json: String) -> Result<String, String> {
        Err("old".into())
    }

    fn on_hook(_event: HookEvent) -> Result<Decision, String> {
        Ok(Decision::Continue)
    }
}

export!(Old);

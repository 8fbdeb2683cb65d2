//! {{name}}: an orch plugin (written by `orch plugins new`). Its tool
//! `{{snake}}` counts the words of a text; its `pre-compact` hook counts
//! compactions in the plugin's key-value store. Change both to your needs.

use orch_plugin_sdk::{
    Decision, HookEvent, HookPoint, LogLevel, Manifest, Plugin, ToolSpec, export_plugin, host,
};
use serde_json::Value;

struct {{camel}};

impl Plugin for {{camel}} {
    fn manifest() -> Manifest {
        Manifest::new("{{name}}", "0.1.0")
            .description("Counts the words of a text")
            .tool(ToolSpec::new(
                "{{snake}}",
                "Count the words of a text.",
                r#"{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}"#,
            ))
            .hook(HookPoint::PreCompact)
    }

    fn call_tool(name: &str, args_json: &str) -> Result<String, String> {
        if name != "{{snake}}" {
            return Err(format!("{{name}} has no tool named {name:?}"));
        }
        let args: Value = serde_json::from_str(args_json)
            .map_err(|err| format!("{name}: the arguments are not JSON: {err}"))?;
        let Some(text) = args.get("text").and_then(Value::as_str) else {
            return Err(format!("{name} needs a string argument `text`"));
        };
        host::record_metric("{{name}}.calls", 1.0);
        Ok(text.split_whitespace().count().to_string())
    }

    fn on_hook(event: HookEvent) -> Result<Decision, String> {
        if event.point == HookPoint::PreCompact {
            let count: u64 = host::kv_get("compactions")
                .and_then(|text| text.parse().ok())
                .unwrap_or(0);
            host::kv_set("compactions", &(count + 1).to_string())?;
            host::log(LogLevel::Info, &format!("compaction {}", count + 1));
        }
        Ok(Decision::Continue)
    }
}

export_plugin!({{camel}});

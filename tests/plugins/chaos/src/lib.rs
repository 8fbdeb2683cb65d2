//! chaos: a plugin that misbehaves on request, for the host's security tests.
//! Each tool is one attack: loop forever, grab memory, return or print too
//! much, read or write files, answer a hook with broken JSON, rewrite
//! or block a shell command.

use orch_plugin_sdk::{
    Decision, HookEvent, HookPoint, Manifest, Plugin, ToolSpec, export_plugin, host,
};
use serde_json::Value;

struct Chaos;

const ANY: &str = r#"{"type":"object"}"#;

impl Plugin for Chaos {
    fn manifest() -> Manifest {
        let mut manifest = Manifest::new("chaos", "0.1.0")
            .hook(HookPoint::PreModelRequest)
            .hook(HookPoint::PreCompact)
            .hook(HookPoint::SessionStart)
            .hook(HookPoint::PreToolUse);
        for name in [
            "spin", "grab", "huge", "flood", "read", "write", "echo", "kv", "panic", "request",
            "config",
        ] {
            manifest = manifest.tool(ToolSpec::new(name, "misbehave", ANY));
        }
        manifest
    }

    fn call_tool(name: &str, args_json: &str) -> Result<String, String> {
        let args: Value = serde_json::from_str(args_json).map_err(|err| err.to_string())?;
        let number = |key: &str| args[key].as_u64().unwrap_or(0) as usize;
        let text = |key: &str| args[key].as_str().unwrap_or("").to_string();
        match name {
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "grab" => {
                let mut blocks = Vec::new();
                for _ in 0..number("mib") {
                    blocks.push(vec![1u8; 1 << 20]);
                }
                Ok(format!("grabbed {} MiB", blocks.len()))
            }
            "huge" => Ok("x".repeat(number("bytes"))),
            "flood" => {
                let line = "flood ".repeat(100);
                for _ in 0..number("lines") {
                    println!("{line}");
                }
                Ok("flooded".into())
            }
            "read" => std::fs::read_to_string(text("path")).map_err(|err| err.to_string()),
            "write" => std::fs::write(text("path"), text("content"))
                .map(|()| "written".to_string())
                .map_err(|err| err.to_string()),
            "echo" => Ok(args_json.to_string()),
            // Send a request with the plugin's own headers (trying to
            // override what the host injects) and return all it got back.
            "request" => {
                let headers = args["headers"]
                    .as_object()
                    .map(|map| {
                        map.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                let response =
                    orch_plugin_sdk::net::request(&orch_plugin_sdk::net::OutgoingRequest {
                        method: text("method"),
                        url: text("url"),
                        headers,
                        body: args["body"].as_str().map(str::to_string),
                        max_bytes: 65536,
                    })?;
                Ok(format!(
                    "{} {}\n{}",
                    response.status, response.url, response.body
                ))
            }
            // What the plugin can learn of its grant.
            "config" => Ok(host::config()),
            "kv" => {
                let count = host::kv_get("count")
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
                    + 1;
                host::kv_set("count", &count.to_string())?;
                Ok(count.to_string())
            }
            "get" => Ok(host::kv_get(&text("key")).unwrap_or_default()),
            "panic" => panic!("chaos asked to panic"),
            other => Err(format!("no tool {other}")),
        }
    }

    fn on_hook(event: HookEvent) -> Result<Decision, String> {
        match event.point {
            HookPoint::PreModelRequest => Ok(Decision::Modify("{not json".into())),
            HookPoint::PreCompact => Ok(Decision::Block("chaos says no".into())),
            HookPoint::SessionStart => {
                host::kv_set("session-start", &event.payload)?;
                Ok(Decision::Block("too late to block".into()))
            }
            // A string argument carrying `#rewrite:<new value>` is rewritten
            // to the new value (a bash command, a file path); a command with
            // `#block` is refused; `#bad-rewrite` answers a rewrite whose
            // `args` is not an object.
            HookPoint::PreToolUse => {
                let payload: Value =
                    serde_json::from_str(&event.payload).map_err(|err| err.to_string())?;
                let mut args = payload["args"].clone();
                let mut rewrote = false;
                if let Some(fields) = args.as_object_mut() {
                    for value in fields.values_mut() {
                        if let Some((_, new)) =
                            value.as_str().and_then(|s| s.split_once("#rewrite:"))
                        {
                            *value = Value::String(new.to_string());
                            rewrote = true;
                        }
                    }
                }
                let command = payload["args"]["command"].as_str().unwrap_or("");
                if rewrote {
                    Ok(Decision::Modify(
                        serde_json::json!({ "args": args }).to_string(),
                    ))
                } else if command.contains("#block") {
                    Ok(Decision::Block("chaos blocks this command".into()))
                } else if command.contains("#bad-rewrite") {
                    Ok(Decision::Modify(r#"{"args": "echo lost"}"#.into()))
                } else {
                    Ok(Decision::Continue)
                }
            }
            _ => Ok(Decision::Continue),
        }
    }
}

export_plugin!(Chaos);

//! `ToolRouter` edge cases: bad arguments and unknown tools come back as
//! error results for the model, never as panics.

use orch::config::PermissionConfig;
use orch::events::Event;
use orch::provider::ToolCall;
use serde_json::json;

use super::{Fixture, assert_error, assert_ok, call, call_raw, drain};

#[tokio::test]
async fn malformed_json_is_an_error_result_for_every_tool() {
    let fx = Fixture::new();
    let router = fx.router(PermissionConfig::default());
    let names: Vec<String> = router.registry.names().map(str::to_string).collect();
    for name in names {
        for raw in ["{\"path\": ", "not json", "{\"command\": \"ls\"}}"] {
            let output = call_raw(&router, &fx.ctx(), &name, raw).await;
            assert_error(&output, "are not valid JSON");
        }
        // Valid JSON of the wrong shape reaches the tool, which says so.
        let output = call_raw(&router, &fx.ctx(), &name, "[1, 2]").await;
        assert_error(&output, &format!("invalid arguments for {name}"));
    }
}

#[tokio::test]
async fn unknown_tools_are_an_error_result() {
    let fx = Fixture::new();
    let router = fx.router(PermissionConfig::default());
    let output = call(&router, &fx.ctx(), "delete_everything", json!({})).await;
    assert_error(&output, "unknown tool \"delete_everything\"");
    assert!(output.content.contains("read"), "lists the available tools");
}

#[tokio::test]
async fn empty_arguments_mean_no_arguments() {
    let fx = Fixture::new();
    fx.write("a.txt", "");
    let router = fx.router(PermissionConfig::default());
    let output = call_raw(&router, &fx.ctx(), "list", "").await;
    assert_ok(&output);
    assert_eq!(output.content, "a.txt\n");
}

#[tokio::test]
async fn calls_emit_begin_and_end_events() {
    let fx = Fixture::new();
    let router = fx.router(PermissionConfig::default());
    let mut events = router.events.subscribe();
    let output = call(&router, &fx.ctx(), "read", json!({ "path": "missing.txt" })).await;
    assert!(output.is_error);
    let events = drain(&mut events);
    assert!(matches!(
        events.as_slice(),
        [
            Event::ToolCallBegin { tool, .. },
            Event::ToolCallEnd { ok: false, .. }
        ] if tool == "read"
    ));
}

#[test]
fn read_only_tools_are_marked() {
    let fx = Fixture::new();
    let router = fx.router(PermissionConfig::default());
    let is_read_only = |name: &str| {
        router.is_read_only(&ToolCall {
            id: "c".into(),
            name: name.into(),
            arguments: "{}".into(),
        })
    };
    for name in ["read", "list", "glob", "grep"] {
        assert!(is_read_only(name), "{name}");
    }
    for name in ["write", "edit", "bash", "nope"] {
        assert!(!is_read_only(name), "{name}");
    }
}

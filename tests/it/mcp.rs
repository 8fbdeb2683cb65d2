//! MCP servers through the hub and the real `orch` binary: server-everything
//! (stdio and streamable HTTP) and a small Python server (`mcp/server.py`)
//! that answers, writes, floods, dies, hangs and changes its tool list.
//! The servers are installed by `.ci/run` under `<target>/mcp-servers/`;
//! without them these tests say they were skipped.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orch::config::{McpServer, PermissionConfig};
use orch::events::{Envelope, Event, EventBus, EventSink};
use orch::mcp::{McpHub, ServerState};
use orch::provider::ToolCall;
use orch::tools::permissions::Permissions;
use orch::tools::{Tool, ToolRegistry, ToolRouter};
use serde_json::json;

use crate::support::project::{Project, run};
use crate::tools::Fixture;

/// Where `.ci/run` installs the test servers.
pub(crate) fn servers_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("mcp-servers")
}

pub(crate) fn python() -> Option<PathBuf> {
    Some(servers_dir().join("venv/bin/python")).filter(|path| path.is_file())
}

fn everything() -> Option<PathBuf> {
    Some(
        servers_dir()
            .join("node/node_modules/@modelcontextprotocol/server-everything/dist/index.js"),
    )
    .filter(|path| path.is_file())
}

pub(crate) fn script() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/mcp/server.py").to_string()
}

fn stdio(command: &str, args: &[&str], timeout_ms: u64) -> McpServer {
    McpServer {
        command: Some(command.into()),
        args: args.iter().map(|arg| arg.to_string()).collect(),
        timeout_ms,
        ..McpServer::default()
    }
}

fn python_server(python: &std::path::Path) -> McpServer {
    stdio(python.to_str().unwrap(), &[&script()], 30_000)
}

/// Every warning emitted on the bus.
#[derive(Default)]
struct Warnings(Mutex<Vec<String>>);

impl EventSink for Warnings {
    fn write(&self, envelope: &Envelope) {
        if let Event::Warning { message, .. } = &envelope.event {
            self.0.lock().unwrap().push(message.clone());
        }
    }
}

impl Warnings {
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    fn any(&self, parts: &[&str]) -> bool {
        self.all()
            .iter()
            .any(|warning| parts.iter().all(|part| warning.contains(part)))
    }
}

fn bus() -> (Arc<EventBus>, Arc<Warnings>) {
    let events = Arc::new(EventBus::new());
    let warnings = Arc::new(Warnings::default());
    events.add_sink(warnings.clone());
    (events, warnings)
}

fn tool(hub: &McpHub, name: &str) -> Option<(Arc<dyn Tool>, bool)> {
    hub.tools()
        .into_iter()
        .find(|(tool, _)| tool.spec().name == name)
}

fn state(hub: &McpHub, server: &str) -> ServerState {
    hub.status()
        .into_iter()
        .find(|status| status.name == server)
        .unwrap()
        .state
}

/// Wait (bounded) until `done` holds, re-checking at every tool-set change.
async fn until(hub: &McpHub, what: &str, done: impl Fn() -> bool) {
    let mut changes = hub.changes();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => {}
            _ => panic!("timed out waiting until {what}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_starts_servers_in_parallel_offers_their_tools_and_survives_their_failures() {
    let (Some(python), Some(everything)) = (python(), everything()) else {
        crate::support::skipped_unless_ci(
            "mcp::the_hub_starts_servers_in_parallel_offers_their_tools_and_survives_their_failures",
            "the MCP test servers are not installed under <target>/mcp-servers (see .ci/run)",
        );
        return;
    };
    let fixture = Fixture::new();
    let (events, warnings) = bus();
    let servers = vec![
        (
            "everything".to_string(),
            stdio("node", &[everything.to_str().unwrap(), "stdio"], 30_000),
        ),
        ("py".to_string(), python_server(&python)),
        (
            "hang".to_string(),
            stdio(python.to_str().unwrap(), &[&script(), "hang"], 1_500),
        ),
        (
            "missing".to_string(),
            stdio("orch-no-such-mcp-server", &[], 30_000),
        ),
        (
            "off".to_string(),
            McpServer {
                enabled: false,
                ..stdio("orch-no-such-mcp-server", &[], 30_000)
            },
        ),
    ];
    let hub = McpHub::start(servers, fixture.root.clone(), events).await;

    // The two that cannot start are one warning each, naming them and why.
    assert!(
        warnings.any(&["\"hang\"", "did not start within 1500 ms"]),
        "{:?}",
        warnings.all()
    );
    assert!(
        warnings.any(&["\"missing\"", "\"orch-no-such-mcp-server\" not found"]),
        "{:?}",
        warnings.all()
    );
    assert!(matches!(state(&hub, "hang"), ServerState::Failed(_)));
    assert!(matches!(state(&hub, "off"), ServerState::Disabled(_)));
    assert_eq!(state(&hub, "py"), ServerState::Running);
    assert_eq!(state(&hub, "everything"), ServerState::Running);

    // The broken schema is left out with a warning; the rest is offered.
    assert!(
        warnings.any(&["\"py\"", "\"broken\"", "not offered"]),
        "{:?}",
        warnings.all()
    );
    let names: Vec<String> = hub.tools().iter().map(|(t, _)| t.spec().name).collect();
    for name in [
        "mcp__py__echo",
        "mcp__py__touch",
        "mcp__everything__echo",
        "mcp__everything__get-sum",
    ] {
        assert!(names.contains(&name.to_string()), "{name} in {names:?}");
    }
    assert!(!names.iter().any(|name| name.contains("broken")));
    let (echo, writes) = tool(&hub, "mcp__py__echo").unwrap();
    assert!(!writes && echo.read_only());
    assert_eq!(echo.spec().parameters["type"], "object");
    assert!(echo.spec().parameters.get("$schema").is_none());
    let (touch, writes) = tool(&hub, "mcp__py__touch").unwrap();
    assert!(writes && !touch.read_only() && touch.asks_by_default());

    // Calls come back as text.
    let ctx = fixture.ctx();
    let out = echo.call(json!({"text": "hello there"}), &ctx).await;
    assert_eq!((out.content.as_str(), out.is_error), ("hello there", false));
    let (echo2, _) = tool(&hub, "mcp__everything__echo").unwrap();
    let out = echo2.call(json!({"message": "hi"}), &ctx).await;
    assert!(!out.is_error && out.content.contains("hi"), "{out:?}");
    let (image, _) = tool(&hub, "mcp__everything__get-tiny-image").unwrap();
    let out = image.call(json!({}), &ctx).await;
    assert!(out.content.contains("[image, image/png, "), "{out:?}");

    // The client's root is the project root.
    let (roots, _) = tool(&hub, "mcp__py__roots").unwrap();
    let out = roots.call(json!({}), &ctx).await;
    assert_eq!(out.content, format!("file://{}", fixture.root.display()));

    // Ten megabytes come back bounded.
    let (big, _) = tool(&hub, "mcp__py__big").unwrap();
    let out = big.call(json!({}), &ctx).await;
    assert!(!out.is_error);
    assert!(
        out.content.len() <= fixture.limits.bash_output_bytes + 100,
        "{}",
        out.content.len()
    );
    assert!(
        out.content.ends_with("more bytes of output omitted]"),
        "{}",
        orch::text::tail(&out.content, 80)
    );

    // tools/list_changed brings the new tool in and says so.
    let (grow, _) = tool(&hub, "mcp__py__grow").unwrap();
    let before = *hub.changes().borrow();
    assert_eq!(grow.call(json!({}), &ctx).await.content, "grown");
    until(&hub, "the grown tool is offered", || {
        tool(&hub, "mcp__py__grown").is_some()
    })
    .await;
    assert!(*hub.changes().borrow() > before);

    // A server that dies mid-call: the call is an error naming it, the
    // server starts again once...
    let (die, _) = tool(&hub, "mcp__py__die").unwrap();
    let out = die.call(json!({}), &ctx).await;
    assert!(
        out.is_error && out.content.contains("MCP server \"py\""),
        "{out:?}"
    );
    until(&hub, "py runs again", || {
        state(&hub, "py") == ServerState::Running && tool(&hub, "mcp__py__die").is_some()
    })
    .await;
    assert!(
        warnings.any(&["\"py\" stopped", "starting it again"]),
        "{:?}",
        warnings.all()
    );
    let (echo, _) = tool(&hub, "mcp__py__echo").unwrap();
    assert_eq!(
        echo.call(json!({"text": "back"}), &ctx).await.content,
        "back"
    );
    // ...and the second death disables it.
    let (die, _) = tool(&hub, "mcp__py__die").unwrap();
    let out = die.call(json!({}), &ctx).await;
    assert!(out.is_error && out.content.contains("\"py\""), "{out:?}");
    until(&hub, "py is disabled", || {
        matches!(state(&hub, "py"), ServerState::Disabled(_))
    })
    .await;
    assert!(
        warnings.any(&["\"py\" stopped again", "disabled"]),
        "{:?}",
        warnings.all()
    );
    assert!(tool(&hub, "mcp__py__echo").is_none());
    // A tool object taken before says why it cannot run.
    let out = echo.call(json!({"text": "x"}), &ctx).await;
    assert!(
        out.is_error && out.content.contains("\"py\" is not running"),
        "{out:?}"
    );
    // The other server is untouched.
    assert_eq!(state(&hub, "everything"), ServerState::Running);

    hub.shutdown().await;
    assert!(hub.tools().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_write_tools_ask_by_default_and_headless_denial_names_the_rule_to_add() {
    let Some(python) = python() else {
        crate::support::skipped_unless_ci(
            "mcp::mcp_write_tools_ask_by_default_and_headless_denial_names_the_rule_to_add",
            "the MCP test servers are not installed under <target>/mcp-servers (see .ci/run)",
        );
        return;
    };
    let fixture = Fixture::new();
    let (events, _) = bus();
    let hub = McpHub::start(
        vec![("py".to_string(), python_server(&python))],
        fixture.root.clone(),
        events,
    )
    .await;
    let mut registry = ToolRegistry::new();
    for (tool, _) in hub.tools() {
        registry.insert(tool);
    }
    let call = |name: &str, arguments: serde_json::Value| ToolCall {
        id: "c1".into(),
        name: name.into(),
        arguments: arguments.to_string(),
    };
    let headless = fixture.router_with(
        registry.clone(),
        Permissions::new(PermissionConfig::default(), false),
    );
    let out = headless
        .call(
            &call("mcp__py__touch", json!({"name": "made"})),
            &fixture.ctx(),
        )
        .await;
    assert!(out.is_error, "{out:?}");
    assert!(
        out.content.contains("\"mcp__py__*\": \"allow\""),
        "{}",
        out.content
    );
    assert!(!fixture.root.join("made").exists());
    // Read-only tools need no rule.
    let out = headless
        .call(
            &call("mcp__py__echo", json!({"text": "free"})),
            &fixture.ctx(),
        )
        .await;
    assert_eq!(out.content, "free");

    let mut rules = PermissionConfig::default();
    rules
        .tools
        .insert("mcp__py__*".into(), orch::config::Action::Allow);
    let allowed: ToolRouter = fixture.router_with(registry, Permissions::new(rules, false));
    let out = allowed
        .call(
            &call("mcp__py__touch", json!({"name": "made"})),
            &fixture.ctx(),
        )
        .await;
    assert_eq!(out.content, "done", "{out:?}");
    assert!(fixture.root.join("made").exists());
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_bounded_by_its_timeout_and_ends_at_cancellation() {
    let Some(python) = python() else {
        crate::support::skipped_unless_ci(
            "mcp::a_call_is_bounded_by_its_timeout_and_ends_at_cancellation",
            "the MCP test servers are not installed under <target>/mcp-servers (see .ci/run)",
        );
        return;
    };
    let fixture = Fixture::new();
    let (events, _) = bus();
    let hub = McpHub::start(
        vec![(
            "py".to_string(),
            McpServer {
                call_timeout_ms: 500,
                ..python_server(&python)
            },
        )],
        fixture.root.clone(),
        events,
    )
    .await;
    let (slow, _) = tool(&hub, "mcp__py__slow").unwrap();
    let out = slow.call(json!({}), &fixture.ctx()).await;
    assert!(out.is_error, "{out:?}");
    assert!(
        out.content
            .contains("MCP server \"py\" did not answer the call to slow within 500 ms"),
        "{}",
        out.content
    );
    let ctx = fixture.ctx();
    let cancel = ctx.cancel.clone();
    let call = tokio::spawn(async move { slow.call(json!({}), &ctx).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    cancel.cancel();
    let out = call.await.unwrap();
    assert!(out.is_error && out.content.contains("cancelled"), "{out:?}");
    // The server is still there for the next call.
    let (echo, _) = tool(&hub, "mcp__py__echo").unwrap();
    let out = echo
        .call(json!({"text": "still here"}), &Fixture::new().ctx())
        .await;
    assert_eq!(out.content, "still here");
    hub.shutdown().await;
}

/// A free loopback port (bound, read, released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamable_http_servers_work_and_an_unset_header_variable_is_named() {
    let Some(everything) = everything() else {
        crate::support::skipped_unless_ci(
            "mcp::streamable_http_servers_work_and_an_unset_header_variable_is_named",
            "the MCP test servers are not installed under <target>/mcp-servers (see .ci/run)",
        );
        return;
    };
    let port = free_port();
    let mut server = tokio::process::Command::new("node")
        .arg(&everything)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the HTTP server did not listen"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = format!("http://127.0.0.1:{port}/mcp");
    let http = |headers: &[(&str, &str)]| McpServer {
        url: Some(url.clone()),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        timeout_ms: 30_000,
        ..McpServer::default()
    };
    let fixture = Fixture::new();
    let (events, warnings) = bus();
    let hub = McpHub::start(
        vec![
            ("web".to_string(), http(&[("X-Orch-Home", "${HOME}")])),
            (
                "nokey".to_string(),
                http(&[("Authorization", "Bearer ${ORCH_TEST_UNSET_MCP_TOKEN}")]),
            ),
        ],
        fixture.root.clone(),
        events,
    )
    .await;
    assert_eq!(
        state(&hub, "web"),
        ServerState::Running,
        "{:?}",
        warnings.all()
    );
    assert!(
        warnings.any(&[
            "\"nokey\"",
            "header Authorization",
            "ORCH_TEST_UNSET_MCP_TOKEN",
            "not set"
        ]),
        "{:?}",
        warnings.all()
    );
    let (echo, _) = tool(&hub, "mcp__web__echo").unwrap();
    let out = echo
        .call(json!({"message": "over http"}), &fixture.ctx())
        .await;
    assert!(
        !out.is_error && out.content.contains("over http"),
        "{out:?}"
    );
    hub.shutdown().await;
    let _ = server.kill().await;
}

#[test]
fn orch_mcp_check_and_list_start_servers_and_show_their_tools() {
    let Some(python) = python() else {
        crate::support::skipped_unless_ci(
            "mcp::orch_mcp_check_and_list_start_servers_and_show_their_tools",
            "the MCP test servers are not installed under <target>/mcp-servers (see .ci/run)",
        );
        return;
    };
    let project = Project::new();
    project.write_user_config(
        &json!({"mcp": {"servers": {
            "py": {"command": python, "args": [script()]},
            "gone": {"command": "orch-no-such-mcp-server"},
        }}})
        .to_string(),
    );
    let (output, stdout, stderr) = run(project.orch().args(["mcp", "check", "py"]));
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("py (stdio): running"), "{stdout}");
    assert!(stdout.contains("  mcp__py__echo  read-only"), "{stdout}");
    assert!(stdout.contains("  mcp__py__touch  write"), "{stdout}");
    assert!(stderr.contains("\"broken\" is not offered"), "{stderr}");

    let (output, stdout, stderr) = run(project.orch().args(["mcp", "check", "gone"]));
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("gone (stdio): failed: command \"orch-no-such-mcp-server\" not found"),
        "{stdout}"
    );

    let (output, _, stderr) = run(project.orch().args(["mcp", "check", "nope"]));
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no MCP server named \"nope\""), "{stderr}");
    assert!(stderr.contains("gone, py"), "{stderr}");

    // A project's .mcp.json counts only once the project is trusted.
    let mcp_json = json!({"mcpServers": {
        "claude": {"command": python, "args": [script()]},
        "old": {"type": "sse", "url": "https://example.test/sse"},
    }})
    .to_string();
    project.write(".mcp.json", &mcp_json);
    let (output, stdout, stderr) = run(project.orch().args(["mcp", "list"]));
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains(".mcp.json is ignored"), "{stderr}");
    assert!(!stdout.contains("claude"), "{stdout}");
    assert!(stdout.contains("gone (stdio): failed"), "{stdout}");
    assert!(stdout.contains("py (stdio): running"), "{stdout}");

    let trusted = Project::trusted();
    trusted.write(".mcp.json", &mcp_json);
    let (output, stdout, stderr) = run(trusted.orch().args(["--json", "mcp", "list"]));
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("MCP server \"old\" is not used"),
        "{stderr}"
    );
    assert!(stderr.contains("SSE"), "{stderr}");
    let list: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(list[0]["name"], "claude");
    assert_eq!(list[0]["running"], true);
    assert!(
        list[0]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "mcp__claude__echo" && t["read_only"] == true)
    );
}

#[test]
fn orch_mcp_import_copies_claude_and_codex_servers_without_printing_secrets() {
    let project = Project::new();
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join(".claude.json"),
        json!({"numStartups": 1, "mcpServers": {
            "github": {"command": "npx", "args": ["-y", "server-github"], "env": {"GITHUB_TOKEN": "ghp_secretvalue123"}},
            "old": {"type": "sse", "url": "https://example.test/sse"},
            "kept": {"command": "other"},
        }})
        .to_string(),
    )
    .unwrap();
    std::fs::create_dir_all(home.path().join(".codex")).unwrap();
    std::fs::write(
        home.path().join(".codex/config.toml"),
        "[mcp_servers.docs]\nurl = \"https://example.test/mcp\"\nbearer_token_env_var = \"DOCS_TOKEN\"\n",
    )
    .unwrap();
    project
        .write_user_config(r#"{"model": "m", "mcp": {"servers": {"kept": {"command": "mine"}}}}"#);
    let (output, stdout, stderr) = run(project
        .orch()
        .env("HOME", home.path())
        .args(["mcp", "import"]));
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("added github (stdio, from ~/.claude.json)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("added docs (http, from ~/.codex/config.toml)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("skipped kept (from ~/.claude.json): orch.json already has"),
        "{stdout}"
    );
    assert!(
        stdout.contains("skipped old") && stdout.contains("SSE"),
        "{stdout}"
    );
    assert!(!stdout.contains("ghp_secretvalue123") && !stderr.contains("ghp_secretvalue123"));

    // The user's orch.json keeps what it had and loads.
    let (output, stdout, stderr) = run(project.orch().args(["mcp", "check", "kept"]));
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("command \"mine\" not found"), "{stdout}");
    let (output, _, stderr) = run(project.orch().args(["mcp", "check", "docs"]));
    // DOCS_TOKEN is not set: named, and the server does not start.
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("DOCS_TOKEN"), "{stderr}");
}

/// A scripted mission whose Worker calls an MCP tool: its result reaches the
/// model (the script's next reply waits for it) and the mission completes.
#[test]
fn a_scripted_mission_calls_an_mcp_tool_and_its_result_reaches_the_model() {
    let Some(python) = python() else {
        crate::support::skipped_unless_ci(
            "a_scripted_mission_calls_an_mcp_tool_and_its_result_reaches_the_model",
            "the MCP test servers are not installed under <target>/mcp-servers (see .ci/run)",
        );
        return;
    };
    let project = Project::trusted();
    project.write(
        ".opencode/orch.json",
        &json!({
            "notifications": false,
            "mcp": {"servers": {"py": {"command": python, "args": [script()], "timeout_ms": 30000}}},
        })
        .to_string(),
    );
    let call = crate::support::project::call;
    let script = json!({"agents": {
        "Commander": [
            {"when": "Mission goal", "tool_calls": [
                call("add_todo", json!({"id": "T1", "text": "the server says hello"})),
                call("delegate_task", json!({"agent": "Worker", "description": "T1", "prompt": "Task T1: ask the server", "background": false}))]},
            {"when": "T1 done", "tool_calls": [call("delegate_task", json!({"agent": "Reviewer", "description": "review T1", "prompt": "Review T1", "background": false}))]},
            {"when": "Approved T1", "text": "Done."}
        ],
        "Worker": [
            {"when": "Task T1", "tool_calls": [call("mcp__py__echo", json!({"text": "hello-from-mcp"}))]},
            {"when": "hello-from-mcp", "text": "T1 done."}
        ],
        "Reviewer": [
            {"when": "Review T1", "tool_calls": [call("mcp__py__echo", json!({"text": "review-echo"})), call("update_todo", json!({"id": "T1", "status": "completed"}))]},
            {"when": "review-echo", "text": "Approved T1."}
        ]
    }});
    project.write("run.json", &script.to_string());
    let (output, stdout, stderr) = run(project.scripted().args(["task", "Ask the MCP server"]));
    assert_eq!(output.status.code(), Some(0), "{stderr}\n{stdout}");
    let ends: Vec<serde_json::Value> = crate::support::project::events(&stdout)
        .into_iter()
        .filter(|e| e["type"] == "tool_call_end" && e["tool"] == "mcp__py__echo")
        .collect();
    assert_eq!(ends.len(), 2, "{stdout}");
    assert!(ends.iter().all(|e| e["ok"] == true), "{ends:?}");
}

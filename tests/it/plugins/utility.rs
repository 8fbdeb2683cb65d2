//! What the example plugins do: the utility tools `jq` and `diff` over
//! project files (a `read` grant) and `webfetch` through the host's `net`
//! import, which reaches only allow-listed hosts — checked against a real
//! loopback HTTP server that records what reached it; memory-gate and
//! metrics in a real mission.

use super::*;
use crate::support::http::{Reply, Server};
use crate::support::project::call;

/// `config` with `file` granted project read access and `fetch` hosts.
fn grant(config: &mut PluginsConfig, name: &str, project: Option<ProjectAccess>, fetch: &[&str]) {
    config.grants.insert(
        format!("{name}.wasm"),
        PluginGrant {
            sha256: sha256_hex(&std::fs::read(guest(name)).unwrap()),
            project,
            data: false,
            memory_mib: None,
            fetch: fetch.iter().map(|host| host.to_string()).collect(),
            headers: Default::default(),
            config: None,
        },
    );
}

#[tokio::test]
async fn jq_queries_project_json_files_and_explains_bad_queries_and_missing_grants() {
    let project = project_with(&["jq"]);
    project.write(
        "package.json",
        r#"{"name": "web", "dependencies": {"react": "^19", "zod": "^3"}, "scripts": {"test": "vitest"}}"#,
    );
    project.write(
        "logs/events.jsonl",
        "{\"level\":\"info\",\"id\":1}\n{\"level\":\"error\",\"id\":2}\n{\"level\":\"error\",\"id\":3}\n",
    );
    let jq = |args: serde_json::Value| args.to_string();

    // No grant: the plugin cannot see the project, and says how to fix it.
    let (host, _, problems) = super::host(&project, &no_user_dir()).await;
    assert!(problems.is_empty(), "{problems:?}");
    let err = host
        .call_tool(
            "jq.wasm",
            "jq",
            &jq(json!({"path": "package.json", "query": ".name"})),
        )
        .await
        .unwrap_err();
    assert!(
        err.contains("no access to the project") && err.contains("\"project\": \"read\""),
        "{err}"
    );

    let mut config = no_user_dir();
    grant(&mut config, "jq", Some(ProjectAccess::Read), &[]);
    let (host, _, _) = super::host(&project, &config).await;
    let call = |args: serde_json::Value| {
        let host = host.clone();
        async move { host.call_tool("jq.wasm", "jq", &args.to_string()).await }
    };
    assert_eq!(
        call(json!({"path": "package.json", "query": ".dependencies | keys"}))
            .await
            .unwrap(),
        r#"["react","zod"]"#
    );
    assert_eq!(
        call(json!({"path": "./package.json", "query": ".scripts.test", "raw": true}))
            .await
            .unwrap(),
        "vitest"
    );
    // JSON Lines: the filter runs over every value.
    assert_eq!(
        call(json!({"path": "logs/events.jsonl", "query": "select(.level == \"error\") | .id"}))
            .await
            .unwrap(),
        "2\n3"
    );
    assert_eq!(
        call(json!({"json": "[1,2,3,4]", "query": ".[]", "limit": 2}))
            .await
            .unwrap(),
        "1\n2\n… 2 more results (raise \"limit\" to see them)"
    );
    let err = call(json!({"path": "package.json", "query": ".name |"}))
        .await
        .unwrap_err();
    assert!(err.starts_with("jq: the query does not parse"), "{err}");
    let err = call(json!({"path": "package.json", "query": "nosuchfn"}))
        .await
        .unwrap_err();
    assert!(
        err.contains("undefined") && err.contains("nosuchfn"),
        "{err}"
    );
    let err = call(json!({"path": "missing.json", "query": "."}))
        .await
        .unwrap_err();
    assert!(err.starts_with("cannot read missing.json"), "{err}");
    // The read grant is a read grant, and it ends at the project root.
    let err = call(json!({"path": "../../etc/passwd", "query": "."}))
        .await
        .unwrap_err();
    assert!(err.starts_with("cannot read ../../etc/passwd"), "{err}");
}

#[tokio::test]
async fn diff_compares_files_and_texts() {
    let project = project_with(&["diff"]);
    project.write("old.rs", "fn main() {\n    println!(\"hi\");\n}\n");
    project.write("new.rs", "fn main() {\n    println!(\"hello\");\n}\n");
    let mut config = no_user_dir();
    grant(&mut config, "diff", Some(ProjectAccess::Read), &[]);
    let (host, _, _) = super::host(&project, &config).await;
    let diff = |args: serde_json::Value| {
        let host = host.clone();
        async move { host.call_tool("diff.wasm", "diff", &args.to_string()).await }
    };
    assert_eq!(
        diff(json!({"a_path": "old.rs", "b_path": "new.rs", "context": 1}))
            .await
            .unwrap(),
        "1 lines added, 1 removed\n--- old.rs\n+++ new.rs\n@@ -1,3 +1,3 @@\n fn main() {\n-    println!(\"hi\");\n+    println!(\"hello\");\n }\n"
    );
    // A file against a text: preview a change before writing it.
    let preview = diff(json!({"a_path": "new.rs", "b_text": "fn main() {}\n"}))
        .await
        .unwrap();
    assert!(
        preview.starts_with("1 lines added, 3 removed\n--- new.rs\n+++ b (text)\n"),
        "{preview}"
    );
    assert_eq!(
        diff(json!({"a_text": "same\n", "b_text": "same\n"}))
            .await
            .unwrap(),
        "no differences"
    );
    let err = diff(json!({"a_path": "old.rs"})).await.unwrap_err();
    assert_eq!(
        err,
        "missing the new side: give b_path (a file in the project) or b_text"
    );
}

const PAGE: &str = r#"<!doctype html><html><head><title>Guide &amp; Notes</title>
<style>body { color: red }</style><script>var secret = "do not show";</script></head>
<body><h1>Install</h1><p>Run <code>cargo&nbsp;add</code> first.</p>
<ul><li>one</li><li>two</li></ul><p>See <a href="https://docs.rs/x">the docs</a>.</p>
<!-- a comment --></body></html>"#;

/// No `</head>`, a self-closing `<svg/>`, a bare `<` and an apostrophe,
/// a `data-href` before the real `href`.
const MINIFIED: &str = "<html><head><title>Mini</title><body><p>logo <svg viewBox='0 0 1 1'/> after</p><p>if x < 3 it's fine</p><p>see <a data-href='/x' href='https://example.com/real'>docs</a></p>";

#[tokio::test]
async fn webfetch_reaches_only_allow_listed_hosts_through_the_host() {
    let project = project_with(&["webfetch"]);
    let server = Server::start(vec![
        Reply::body(200, "text/html; charset=utf-8", PAGE),
        Reply::body(200, "application/json", &"x".repeat(10_000)),
        Reply::body(302, "text/plain", "").header("location", "http://localhost/page"),
        Reply::body(404, "text/plain", "no such page"),
        Reply::body(200, "text/html", MINIFIED),
    ])
    .await;
    let base = server.url();
    let port = base.rsplit(':').next().unwrap().to_string();
    let fetch = |host: &PluginHost, args: serde_json::Value| {
        let host = host.clone();
        async move {
            host.call_tool("webfetch.wasm", "webfetch", &args.to_string())
                .await
        }
    };

    // Installed but allowed nothing: deny by default, nothing reaches the server.
    let (host, _, _) = super::host(&project, &no_user_dir()).await;
    let err = fetch(&host, json!({"url": format!("{base}/page")}))
        .await
        .unwrap_err();
    assert!(
        err.starts_with("fetch refused: plugin \"webfetch.wasm\" is allowed no hosts"),
        "{err}"
    );
    assert!(server.requests().is_empty());

    let mut config = no_user_dir();
    grant(
        &mut config,
        "webfetch",
        None,
        &[&format!("127.0.0.1:{port}")],
    );
    let (host, _, _) = super::host(&project, &config).await;

    let page = fetch(&host, json!({"url": format!("{base}/page")}))
        .await
        .unwrap();
    assert!(
        page.starts_with(&format!(
            "200 {base}/page (text/html; charset=utf-8)\n\n# Guide & Notes\n"
        )),
        "{page}"
    );
    assert!(page.contains("# Install\n"), "{page}");
    assert!(page.contains("Run cargo add first."), "{page}");
    assert!(page.contains("- one\n- two\n"), "{page}");
    assert!(page.contains("See the docs (https://docs.rs/x)."), "{page}");
    assert!(
        !page.contains("secret") && !page.contains("color"),
        "{page}"
    );
    assert!(!page.contains("comment"), "{page}");

    let big = fetch(
        &host,
        json!({"url": format!("{base}/big"), "max_bytes": 1000}),
    )
    .await
    .unwrap();
    assert!(
        big.contains(&format!("\n\n{}\n\n[truncated", "x".repeat(1000))),
        "{big}"
    );

    // The same server under another name is another host: refused.
    let err = fetch(
        &host,
        json!({"url": format!("http://localhost:{port}/page")}),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        format!(
            "fetch refused: localhost:{port} is not on the hosts allowed for plugin \"webfetch.wasm\" (plugins.grants.\"webfetch.wasm\".fetch in .opencode/orch.json)"
        )
    );
    // A redirect is followed only to allowed hosts.
    let err = fetch(&host, json!({"url": format!("{base}/away")}))
        .await
        .unwrap_err();
    assert!(
        err.starts_with("fetch refused: localhost is not on the hosts allowed"),
        "{err}"
    );
    let err = fetch(&host, json!({"url": "file:///etc/passwd"}))
        .await
        .unwrap_err();
    assert!(err.contains("only http and https"), "{err}");

    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        ["/page", "/big", "/away"],
        "nothing else reached the server"
    );
    let seen = server.requests();
    assert!(
        seen[0].header("user-agent").unwrap().starts_with("orch/"),
        "{:?}",
        seen[0].headers
    );

    // An error status is a tool error with what the server said.
    let err = fetch(&host, json!({"url": format!("{base}/missing")}))
        .await
        .unwrap_err();
    assert!(
        err.starts_with(&format!("404 {base}/missing")) && err.contains("no such page"),
        "{err}"
    );

    // Pages that cut corners still read whole.
    let page = fetch(&host, json!({"url": format!("{base}/min")}))
        .await
        .unwrap();
    let text = page.split_once("\n\n").unwrap().1;
    assert_eq!(
        text,
        "# Mini\n\nlogo after\nif x < 3 it's fine\nsee docs (https://example.com/real)"
    );
}

#[tokio::test]
async fn a_fetch_that_outlasts_its_time_cap_is_stopped() {
    let project = project_with(&["webfetch"]);
    let server = Server::start(vec![Reply::silence()]).await;
    let base = server.url();
    let mut config = PluginsConfig {
        fetch_timeout_ms: 300,
        ..no_user_dir()
    };
    grant(&mut config, "webfetch", None, &["127.0.0.1"]);
    let (host, _, _) = super::host(&project, &config).await;
    let err = host
        .call_tool(
            "webfetch.wasm",
            "webfetch",
            &json!({"url": format!("{base}/slow")}).to_string(),
        )
        .await
        .unwrap_err();
    assert_eq!(err, format!("fetch of {base}/slow timed out after 300 ms"));
    // The fetch's own cap stopped it, not the tool deadline: no fault.
    assert!(!host.is_disabled("webfetch.wasm"));
}

#[tokio::test]
async fn metrics_writes_its_numbers_to_its_data_folder_never_the_project() {
    let project = project_with(&["metrics"]);
    let mut config = no_user_dir();
    grant(&mut config, "metrics", Some(ProjectAccess::ReadWrite), &[]);
    let (host, warnings, _) = super::host(&project, &config).await;
    for point in ["pre-tool-use", "post-tool-use"] {
        host.hook(
            point,
            json!({"session": "s", "call": "c9", "tool": "read", "args": {}, "output": "", "is-error": false}),
        )
        .await;
    }
    // `read-write`, as older configs grant it, reads the project and gives
    // the plugin its own folder: the report lands there.
    assert!(!project.file(".opencode/metrics.json").exists());
    let written: serde_json::Value =
        serde_json::from_str(&project.read(".opencode/plugin-data/metrics/metrics.json")).unwrap();
    assert_eq!(written["tools"]["read"]["calls"], 1);
    assert_eq!(written["tools"]["read"]["failures"], 0);
    assert!(written["tools"]["read"]["max_ms"].as_f64().unwrap() >= 0.0);
    assert!(warnings.all().is_empty(), "{:?}", warnings.all());
}

#[tokio::test]
async fn memory_gate_hides_unrelated_memory_from_a_large_block() {
    let project = project_with(&["memory_gate"]);
    let (host, _, _) = super::host(&project, &no_user_dir()).await;
    let filler = "x".repeat(250);
    let mut block = String::from("<memory>\nNotes kept by `remember`.\n\n## Project memory\n");
    block.push_str("- [m1, pinned] Never commit secrets\n");
    for i in 2..=13 {
        let topic = if i % 4 == 0 { "parser" } else { "styling" };
        block.push_str(&format!("- [m{i}] the {topic} module note {filler}\n"));
    }
    block.push_str("</memory>");
    let messages = json!([
        {"role": "user", "text": block},
        {"role": "user", "text": "Fix the parser bug in src/parser.rs"},
    ]);
    let decision = host
        .hook(
            "pre-compact",
            json!({"session": "s", "reason": "threshold", "messages": messages}),
        )
        .await;
    let Decision::Modify(reshaped) = decision else {
        panic!("memory-gate did not gate the block: {decision:?}");
    };
    let gated = reshaped["messages"][0]["text"].as_str().unwrap();
    assert!(
        gated.contains("- [m1, pinned] Never commit secrets"),
        "{gated}"
    );
    // The three parser notes stay, then the first unrelated ones up to 8.
    for id in ["m4", "m8", "m12", "m2", "m3", "m5", "m6", "m7"] {
        assert!(gated.contains(&format!("- [{id}] ")), "{id}: {gated}");
    }
    for id in ["m9", "m10", "m11", "m13"] {
        assert!(!gated.contains(&format!("- [{id}] ")), "{id}: {gated}");
    }
    assert!(gated.ends_with(
        "[memory-gate: 4 entries not related to the current work are hidden; `recall` finds them]\n</memory>"
    ), "{gated}");
    assert_eq!(
        reshaped["messages"][1]["text"],
        "Fix the parser bug in src/parser.rs"
    );

    // A small block passes whole: nothing to reshape.
    let small = json!([{"role": "user", "text": "<memory>\n- [m1] one\n</memory>"}]);
    assert_eq!(
        host.hook(
            "pre-compact",
            json!({"session": "s", "reason": "threshold", "messages": small})
        )
        .await,
        Decision::Continue
    );
}

/// A scripted `orch task` with memory-gate and metrics installed: metrics
/// times the Worker's tool calls into its data folder, memory-gate
/// remembers the command that verified the project, once.
#[test]
fn memory_gate_and_metrics_work_in_a_real_mission() {
    let project = project_with(&["memory_gate", "metrics"]);
    project.write("Makefile", "test:\n\t@echo all tests pass\n");
    let sha = sha256_hex(&std::fs::read(guest("metrics")).unwrap());
    project.write(
        ".opencode/orch.json",
        &json!({
            "verify": ["make test"],
            "plugins": {"user_dir": false, "grants": {"metrics.wasm": {"sha256": sha, "data": true}}}
        })
        .to_string(),
    );
    let script = json!({"agents": {
        "Commander": [
            {"when": "Mission goal", "tool_calls": [
                call("add_todo", json!({"id": "T1", "text": "the tests pass"})),
                call("delegate_task", json!({"agent": "Worker", "description": "T1", "prompt": "Task T1: run the tests", "background": false}))]},
            {"when": "T1 done", "tool_calls": [call("delegate_task", json!({"agent": "Reviewer", "description": "review T1", "prompt": "Review T1", "background": false}))]},
            {"when": "Approved T1", "text": "Done."}
        ],
        "Worker": [
            {"when": "Task T1", "tool_calls": [call("bash", json!({"command": "make test"}))]},
            {"when": "all tests pass", "text": "T1 done."}
        ],
        "Reviewer": [
            {"when": "Review T1", "tool_calls": [call("update_todo", json!({"id": "T1", "status": "completed"}))]},
            {"when": "done", "text": "Approved T1."}
        ]
    }});
    project.write("run.json", &script.to_string());
    for _ in 0..2 {
        let (output, stdout, stderr) = run(project.scripted().args(["task", "Test mission"]));
        assert_eq!(
            output.status.code(),
            Some(0),
            "stdout:\n{stdout}\nstderr:\n{stderr}"
        );
        let warnings: Vec<serde_json::Value> = events(&stdout)
            .into_iter()
            .filter(|e| e["type"] == "warning")
            .collect();
        assert!(warnings.is_empty(), "{warnings:?}");
    }
    let metrics: serde_json::Value =
        serde_json::from_str(&project.read(".opencode/plugin-data/metrics/metrics.json")).unwrap();
    for tool in ["bash", "add_todo", "delegate_task", "update_todo"] {
        assert!(
            metrics["tools"][tool]["calls"]
                .as_u64()
                .is_some_and(|n| n >= 1),
            "{tool}: {metrics}"
        );
    }
    assert_eq!(metrics["tools"]["bash"]["failures"], 0);
    // What the plugins recorded reaches `orch metrics` as events.
    let (output, stdout, stderr) = run(project.orch().arg("metrics"));
    assert!(output.status.success(), "{stderr}");
    let row = stdout
        .lines()
        .find(|line| line.starts_with("metrics.wasm") && line.contains(" tool.bash.calls "))
        .unwrap_or_else(|| panic!("no plugin metric row in:\n{stdout}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells,
        ["metrics.wasm", "tool.bash.calls", "1", "1"],
        "{row}"
    );
    let memory = project.read(".opencode/memory/project.json");
    assert_eq!(
        memory
            .matches("Verified with `make test` (it passed)")
            .count(),
        1,
        "remembered once across two missions: {memory}"
    );
}

/// A failing build or test command is not remembered as a passing one, and
/// a passing one is remembered once, without counting as a use of the
/// memory it looked through.
#[tokio::test]
async fn memory_gate_remembers_only_commands_that_passed() {
    use orch::config::MemoryConfig;
    use orch::memory::{Memory, Tier};

    let project = project_with(&["memory_gate"]);
    let (host, _, _) = super::host(&project, &no_user_dir()).await;
    let memory = Arc::new(
        Memory::open(project.path(), MemoryConfig::default(), Default::default()).unwrap(),
    );
    host.attach_memory(memory.clone());
    let ran = |command: &str, output: &str| json!({"session": "s", "call": "c", "tool": "bash", "args": {"command": command}, "output": output, "is-error": false});
    host.hook(
        "post-tool-use",
        ran("cargo test", "test result: FAILED\nexit code 101"),
    )
    .await;
    assert!(memory.entries("s", Tier::Project).is_empty());
    for _ in 0..2 {
        host.hook(
            "post-tool-use",
            ran("cargo test", "test result: ok\nexit code 0"),
        )
        .await;
    }
    host.hook("post-tool-use", ran("ls", "src\nexit code 0"))
        .await;
    let kept: Vec<String> = memory
        .entries("s", Tier::Project)
        .into_iter()
        .map(|entry| entry.text)
        .collect();
    assert_eq!(kept, ["Verified with `cargo test` (it passed)"]);
    assert!(!host.is_disabled("memory_gate.wasm"));
}

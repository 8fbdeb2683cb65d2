//! `orch mcp serve`: the real binary as an MCP server, driven by the Python
//! `mcp` SDK's client (a whole session: a mission to its verified end, a
//! refused second one, a cancel, an unknown id) and by raw JSON-RPC lines.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{Value, json};

use crate::support::project::{Project, call};

/// The venv with the `mcp` SDK (`mcp==1.30.0`), where `.ci/run` installs it.
fn python() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let target = if target.is_absolute() {
        target
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(target)
    };
    let python = target.join("mcp-servers/venv/bin/python");
    python.is_file().then_some(python)
}

/// Mission "Greet": one item, written by a Worker, approved by the
/// Reviewer; the Commander's first turn takes 1.5 s, so the mission is
/// still running when `run_mission` has returned. Mission "Sleep": a Worker
/// running a 5 s command that then writes `outlived.txt`, for the cancels.
fn script() -> Value {
    json!({"agents": {
        "Commander": [
            {"when": "Greet the world", "latency_ms": 1500, "tool_calls": [
                call("add_todo", json!({"id": "T1", "text": "greeting.txt says hello"})),
                call("delegate_task", json!({"agent": "Worker", "description": "T1", "prompt": "Task T1: write greeting.txt", "background": false}))]},
            {"when": "T1 written", "tool_calls": [call("delegate_task", json!({"agent": "Reviewer", "description": "review T1", "prompt": "Review T1", "background": false}))]},
            {"when": "Approved T1", "text": "Done."},
            {"when": "Sleep a while", "tool_calls": [call("delegate_task", json!({"agent": "Worker", "description": "sleep", "prompt": "Task sleep", "background": false}))]}
        ],
        "Worker": [
            {"when": "Task T1", "tool_calls": [call("write", json!({"path": "greeting.txt", "content": "hello\n"}))]},
            {"when": "greeting.txt", "text": "T1 written."},
            {"when": "Task sleep", "tool_calls": [call("bash", json!({"command": "sleep 5; touch outlived.txt"}))]}
        ],
        "Reviewer": [
            {"when": "Review T1", "tool_calls": [call("update_todo", json!({"id": "T1", "status": "completed"}))]},
            {"when": "done", "text": "Approved T1."}
        ]
    }})
}

#[test]
fn an_mcp_client_runs_follows_refuses_and_cancels_missions() {
    let Some(python) = python() else {
        crate::support::skipped_unless_ci(
            "mcp_serve::an_mcp_client_runs_follows_refuses_and_cancels_missions",
            "no Python mcp SDK at <target>/mcp-servers/venv (see .ci/run)",
        );
        return;
    };
    let project = Project::trusted();
    project.write(".opencode/orch.json", &json!({"verify": []}).to_string());
    project.write("run.json", &script().to_string());
    let logs = tempfile::tempdir().unwrap();
    let stdout_log = logs.path().join("stdout.log");
    let exit_file = logs.path().join("exit");
    // The environment `orch()` gives a test run (its own config dirs,
    // headless, no keys), handed to the client, which hands it on.
    let template = project.orch();
    let mut command = Command::new(python);
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/it/mcp_serve/client.py"
        ))
        .arg(env!("CARGO_BIN_EXE_orch"))
        .arg(project.path())
        .arg(project.file("run.json"))
        .arg(&stdout_log)
        .arg(&exit_file);
    for (name, value) in template.get_envs() {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    let output = command.output().expect("run the Python MCP client");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the client failed:\n{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("the client's report ({err}):\n{stderr}"));
    let context = format!("{report:#}\nserver stderr:\n{stderr}");

    assert_eq!(
        report["tools"],
        json!([
            "cancel_mission",
            "mission_status",
            "read_plan",
            "run_mission"
        ])
    );
    // run_mission answered with the id while the mission still ran.
    let first = &report["first"];
    assert_eq!(first["error"], false, "{context}");
    let id = first["structured"]["mission"].as_str().unwrap();
    assert!(id.starts_with("m-"), "{context}");
    assert_eq!(
        report["status_at_once"]["structured"]["status"], "running",
        "{context}"
    );
    assert!(
        !report["logs_when_first_returned"]
            .as_array()
            .unwrap()
            .iter()
            .any(|log| log["data"]["type"] == "mission_finished"),
        "{context}"
    );
    // The call's progress token got its notification.
    assert_eq!(
        report["progress"][0]["message"],
        format!("mission {id} started"),
        "{context}"
    );
    // Progress came as logging notifications: the plan growing and being
    // done, the gate, the end.
    let of_first: Vec<&Value> = report["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|log| log["data"]["mission"] == id)
        .collect();
    let kinds: Vec<&str> = of_first
        .iter()
        .map(|log| log["data"]["type"].as_str().unwrap())
        .collect();
    for kind in [
        "mission_started",
        "plan_updated",
        "task_started",
        "task_finished",
        "gate_checked",
        "mission_finished",
    ] {
        assert!(
            kinds.contains(&kind),
            "no {kind} notification: {kinds:?}\n{context}"
        );
    }
    assert!(
        of_first
            .iter()
            .any(|log| log["data"]["plan"]["done"] == 1 && log["data"]["plan"]["total"] == 1),
        "{context}"
    );
    let end = of_first.last().unwrap();
    assert_eq!(end["data"]["type"], "mission_finished", "{context}");
    assert_eq!(end["data"]["outcome"], "complete", "{context}");
    assert_eq!(end["level"], "info", "{context}");

    let status = &report["first_final"]["structured"];
    assert_eq!(status["status"], "complete", "{context}");
    assert_eq!(status["plan"]["done"], 1, "{context}");
    assert_eq!(status["plan"]["total"], 1, "{context}");
    assert_eq!(status["last_gate"]["passed"], true, "{context}");
    assert!(status["iteration"].as_u64().unwrap() >= 1, "{context}");
    let plan = report["plan"]["text"].as_str().unwrap();
    assert!(plan.contains("- [x] T1: greeting.txt says hello"), "{plan}");
    assert!(!plan.contains("- [ ]"), "{plan}");
    assert_eq!(project.read("greeting.txt"), "hello\n");

    assert_eq!(report["unknown"]["error"], true, "{context}");
    assert!(
        report["unknown"]["text"]
            .as_str()
            .unwrap()
            .contains("unknown mission id \"m-nosuchmission\""),
        "{context}"
    );

    // A second mission while one runs is refused, naming the running one.
    let long = report["long"]["structured"]["mission"].as_str().unwrap();
    let refused = &report["refused"];
    assert_eq!(refused["error"], true, "{context}");
    let why = refused["text"].as_str().unwrap();
    assert!(
        why.contains(&format!(
            "mission {long} is already running in this project"
        )),
        "{context}"
    );
    // The cancel stopped it cleanly, as `orch cancel` does.
    let cancel = &report["cancel"]["structured"];
    assert_eq!(cancel["status"], "cancelled", "{context}");
    assert_eq!(cancel["reason"], "cancelled by `orch cancel`", "{context}");
    assert_eq!(
        report["long_final"]["structured"]["status"], "cancelled",
        "{context}"
    );
    // Its notifications end with its end, told as a cancel.
    let of_long: Vec<&Value> = report["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|log| log["data"]["mission"] == long)
        .collect();
    let end = of_long.last().unwrap();
    assert_eq!(end["data"]["type"], "mission_finished", "{context}");
    assert_eq!(end["data"]["outcome"], "cancelled", "{context}");
    assert_eq!(end["level"], "warning", "{context}");

    // Every byte the server wrote on stdout was JSON-RPC, and the client
    // read no malformed message.
    assert_eq!(report["bad_messages"], json!([]), "{context}");
    let stdout = std::fs::read_to_string(&stdout_log).unwrap();
    assert!(stdout.lines().count() > 10, "{stdout}");
    for line in stdout.lines() {
        let message: Value = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("not JSON on stdout ({err}): {line}"));
        assert_eq!(message["jsonrpc"], "2.0", "{line}");
    }
    // The server exited 0 once the client closed its stdin.
    assert_eq!(
        std::fs::read_to_string(&exit_file).unwrap().trim(),
        "0",
        "{context}"
    );
}

/// `orch mcp serve` spoken to in raw JSON-RPC lines.
struct Raw {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: std::io::Lines<BufReader<ChildStdout>>,
}

impl Raw {
    /// Start the server with `args` and initialize the session.
    fn start(project: &Project, args: &[&str]) -> Raw {
        let mut child = project
            .orch()
            .args(["mcp", "serve"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut raw = Raw {
            stdin: child.stdin.take(),
            lines: BufReader::new(child.stdout.take().unwrap()).lines(),
            child,
        };
        raw.send(
            json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"}}}),
        );
        let reply = raw.next().expect("the initialize reply");
        assert_eq!(reply["id"], 0, "{reply}");
        assert_eq!(reply["result"]["serverInfo"]["name"], "orch", "{reply}");
        assert!(
            reply["result"]["capabilities"]["logging"].is_object(),
            "{reply}"
        );
        raw.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        raw
    }

    fn send(&mut self, message: Value) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{message}").unwrap();
        stdin.flush().unwrap();
    }

    fn call(&mut self, id: u64, tool: &str, arguments: Value) {
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments}}));
    }

    /// The next message on stdout, which must be a JSON-RPC line; `None` at
    /// its end.
    fn next(&mut self) -> Option<Value> {
        let line = self.lines.next()?.unwrap();
        let message: Value = serde_json::from_str(&line)
            .unwrap_or_else(|err| panic!("not JSON on stdout ({err}): {line}"));
        assert_eq!(message["jsonrpc"], "2.0", "{line}");
        Some(message)
    }

    /// Close stdin, read stdout to its end (JSON-RPC only), and return the
    /// exit code and stderr.
    fn close(mut self) -> (Option<i32>, String) {
        drop(self.stdin.take());
        while self.next().is_some() {}
        let status = self.child.wait().unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut self.child.stderr.take().unwrap(), &mut stderr).unwrap();
        (status.code(), stderr)
    }
}

#[test]
fn raw_json_rpc_lines_get_only_json_rpc_back_and_closing_stdin_exits_0() {
    let project = Project::new();
    let mut raw = Raw::start(&project, &[]);
    raw.send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}));
    raw.call(3, "read_plan", json!({"id": "m-gone"}));
    raw.call(4, "run_mission", json!({"goal": ""}));
    let mut by_id = std::collections::BTreeMap::new();
    while by_id.len() < 3 {
        let message = raw.next().expect("a reply");
        if let Some(id) = message["id"].as_u64() {
            by_id.insert(id, message);
        }
    }
    let (code, stderr) = raw.close();
    assert_eq!(code, Some(0), "{stderr}");

    let names: Vec<&str> = by_id[&2]["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "run_mission",
            "mission_status",
            "cancel_mission",
            "read_plan"
        ]
    );
    let unknown = &by_id[&3]["result"];
    assert_eq!(unknown["isError"], true);
    assert!(
        unknown["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("unknown mission id \"m-gone\""),
        "{unknown}"
    );
    let empty = &by_id[&4]["result"];
    assert_eq!(empty["isError"], true);
    assert!(
        empty["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("run_mission: goal is empty"),
        "{empty}"
    );
}

/// Read until a logging notification of `kind` comes; every one before it
/// is returned too.
fn until(raw: &mut Raw, kind: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let message = raw
            .next()
            .unwrap_or_else(|| panic!("no {kind} notification: {seen:#?}"));
        if message["method"] == "notifications/message" {
            let data = message["params"]["data"].clone();
            let done = data["type"] == kind;
            seen.push(message);
            if done {
                return seen;
            }
        } else {
            seen.push(message);
        }
    }
}

#[test]
fn a_client_that_goes_away_leaves_its_mission_cancelled_and_nothing_running() {
    let project = Project::trusted();
    project.write(".opencode/orch.json", &json!({"verify": []}).to_string());
    project.write("run.json", &script().to_string());
    let mut raw = Raw::start(
        &project,
        &["--provider", "scripted", "--script", "run.json"],
    );
    raw.call(2, "run_mission", json!({"goal": "Sleep a while"}));
    // Wait until the Worker's command runs and run_mission has answered
    // (its answer waits for the mission's state file, so the mission's
    // first notifications may come before it).
    let mut seen = until(&mut raw, "task_started");
    while !seen.iter().any(|message| message["id"] == 2) {
        seen.push(raw.next().expect("run_mission's answer"));
    }
    let reply = seen.iter().find(|message| message["id"] == 2).unwrap();
    assert_eq!(reply["result"]["isError"], false, "{reply}");
    let mission = reply["result"]["structuredContent"]["mission"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, stderr) = raw.close();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("the client has gone"), "{stderr}");
    let state: Value =
        serde_json::from_str(&project.read(&format!(".opencode/missions/{mission}/state.json")))
            .unwrap();
    assert_eq!(state["status"], "cancelled", "{state}");
    // The Worker's command went with it: had it lived, it would have
    // written its file by now.
    std::thread::sleep(std::time::Duration::from_secs(6));
    assert!(!project.file("outlived.txt").exists());
}

#[test]
fn served_missions_never_prompt_an_action_needing_approval_is_denied_and_told() {
    let project = Project::trusted();
    project.write(
        ".opencode/orch.json",
        &json!({"verify": [], "permissions": {"tools": {"write": "ask"}}}).to_string(),
    );
    project.write("run.json", &script().to_string());
    let mut raw = Raw::start(
        &project,
        &["--provider", "scripted", "--script", "run.json"],
    );
    raw.call(2, "run_mission", json!({"goal": "Greet the world"}));
    let seen = until(&mut raw, "task_finished");
    let denied = seen
        .iter()
        .find(|message| message["params"]["data"]["type"] == "approval_resolved")
        .unwrap_or_else(|| panic!("no denial notification: {seen:#?}"));
    assert_eq!(denied["params"]["level"], "warning", "{denied}");
    assert_eq!(
        denied["params"]["data"]["message"],
        "write needed approval and was denied: missions served over MCP run without prompts"
    );
    assert!(!project.file("greeting.txt").exists());
    let (code, stderr) = raw.close();
    assert_eq!(code, Some(0), "{stderr}");
}

//! Tools that arrive while a session runs, end to end: the real `orch run`
//! binary against a loopback model that keeps Anthropic's prompt cache
//! (`support/prompt_cache.rs`). A plugin dropped into `.opencode/plugins/`,
//! a tool an MCP server adds (`tools/list_changed`) and a skill installed
//! mid-session are announced in the conversation and used by the same
//! session — through `call_tool` and by their own names — while every
//! request stays its previous one plus new messages (the tool list never
//! changes).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::support::http::{Recorded, Reply, Server};
use crate::support::project::{Project, call, events};
use crate::support::prompt_cache::{Billed, CacheRules, PromptCache};
use crate::support::sim::{Usage, Wire, bill, turn_reply};

/// Polls a model makes before it gives up waiting for the tool.
const POLLS: usize = 100;

/// A model that asks the MCP server to grow a tool, polls with `bash` until
/// it was told of the plugin, the grown tool and the skill, then uses each.
struct Waiter {
    cache: PromptCache,
    /// Done once, when the first request arrives: drops the plugin in.
    on_first: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    polls: AtomicUsize,
    sent: Mutex<Vec<(Value, Billed)>>,
}

fn last_message(body: &Value) -> String {
    body["messages"]
        .as_array()
        .and_then(|messages| messages.last())
        .map(Value::to_string)
        .unwrap_or_default()
}

impl Waiter {
    fn answer(&self, request: &Recorded) -> Reply {
        let billed = match bill(&self.cache, Wire::Anthropic, &request.body) {
            Ok(billed) => billed,
            Err((_, refused)) => return refused,
        };
        self.sent
            .lock()
            .unwrap()
            .push((request.body.clone(), billed));
        if let Some(drop_in) = self.on_first.lock().unwrap().take() {
            drop_in();
        }
        let usage = Usage {
            prompt: billed,
            max_tokens: 4096,
        };
        let last = last_message(&request.body);
        let all = request.body["messages"].to_string();
        let reply = |text: &str, calls: &[(String, Value)]| {
            let salt = self.polls.load(Ordering::SeqCst) as u64;
            turn_reply(Wire::Anthropic, text, calls, usage, salt)
        };
        let call = |name: &str, args: Value| vec![(name.to_string(), args)];
        if last.contains("SKILL-MARKER") {
            return reply("All of them worked.", &[]);
        }
        if last.contains("the grown tool answers") {
            return reply(
                "Loading the new skill.",
                &call("skill", json!({"name": "deploy-notes"})),
            );
        }
        if last.contains("+second") {
            return reply(
                "Now the tool the server grew.",
                &call("call_tool", json!({"name": "mcp__py__grown"})),
            );
        }
        if last.contains("+first") {
            return reply(
                "Calling it by its name now.",
                &call("diff", json!({"a_text": "one\n", "b_text": "second\n"})),
            );
        }
        let told = all.contains("- diff (plugins)")
            && all.contains("- mcp__py__grown (mcp)")
            && all.contains("- deploy-notes: Notes on deploying");
        if told && !all.contains("+first") {
            return reply(
                "Everything arrived.",
                &call(
                    "call_tool",
                    json!({"name": "diff", "arguments": {"a_text": "one\n", "b_text": "first\n"}}),
                ),
            );
        }
        if !all.contains("\"grown\"") && !all.contains("mcp__py__grow\"") {
            return reply("Growing a tool.", &call("mcp__py__grow", json!({})));
        }
        let poll = self.polls.fetch_add(1, Ordering::SeqCst);
        if poll >= POLLS {
            return reply("The new tools never arrived.", &[]);
        }
        reply(
            "Waiting for the new tools.",
            &call(
                "bash",
                json!({"command": format!("sleep 0.2; echo poll {poll}")}),
            ),
        )
    }
}

/// A trusted project with one plugin installed (so the run watches the
/// plugin folder), and that folder.
fn project_with_a_plugin() -> (Project, std::path::PathBuf) {
    let project = Project::trusted();
    let plugins = project.file(".opencode/plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(
        crate::plugins::guest("todo_stats"),
        plugins.join("todo_stats.wasm"),
    )
    .unwrap();
    (project, plugins)
}

#[tokio::test]
async fn a_plugin_an_mcp_tool_and_a_skill_added_mid_session_are_used_from_the_cache() {
    let Some(python) = crate::mcp::python() else {
        crate::support::skipped_unless_ci(
            "a_plugin_an_mcp_tool_and_a_skill_added_mid_session_are_used_from_the_cache",
            "the MCP test servers are not installed under <target>/mcp-servers (see .ci/run)",
        );
        return;
    };
    let (project, plugins) = project_with_a_plugin();
    project.write(
        ".opencode/orch.json",
        &json!({
            "notifications": false,
            "plugins": {"user_dir": false},
            "mcp": {"servers": {"py": {"command": python, "args": [crate::mcp::script()], "timeout_ms": 30000}}},
            "permissions": {"tools": {"mcp__py__*": "allow"}},
        })
        .to_string(),
    );
    let diff = crate::plugins::guest("diff");
    let target = plugins.join("diff.wasm");
    let skill = project.file(".claude/skills/deploy-notes/SKILL.md");
    let waiter = Arc::new(Waiter {
        cache: PromptCache::new(CacheRules::default()),
        on_first: Mutex::new(Some(Box::new(move || {
            std::fs::copy(diff, target).unwrap();
            std::fs::create_dir_all(skill.parent().unwrap()).unwrap();
            std::fs::write(
                &skill,
                "---\nname: deploy-notes\ndescription: Notes on deploying this project\n---\nSKILL-MARKER: deploy with make release.\n",
            )
            .unwrap();
        }))),
        polls: AtomicUsize::new(0),
        sent: Mutex::default(),
    });
    let shared = waiter.clone();
    let server = Server::responding(move |request| shared.answer(request)).await;
    let mut command = tokio::process::Command::from(project.orch());
    command
        .env("ANTHROPIC_BASE_URL", server.url())
        .env("ANTHROPIC_API_KEY", "sk-ant-test")
        .args(["--provider", "anthropic", "--model", "claude-sonnet-4-5"])
        .args(["--json", "run", "--agent", "Worker", "Compare two texts."]);
    let output = command.output().await.expect("run orch");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}\n{stdout}");
    let events = events(&stdout);
    let changed: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "tools_changed")
        .collect();
    assert!(
        changed
            .iter()
            .any(|e| e["source"] == "plugins" && e["added"] == json!(["diff"])),
        "{changed:?}"
    );
    let sent = waiter.sent.lock().unwrap().clone();
    let finals: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "session_finished")
        .collect();
    assert_eq!(finals.len(), 1, "{finals:?}");
    assert_eq!(finals[0]["outcome"], "completed", "{finals:?}");
    // Each came back to the model: the diff through call_tool and by its
    // own name, the grown MCP tool, the skill's instructions.
    let last = last_message(&sent.last().unwrap().0);
    assert!(last.contains("SKILL-MARKER"), "{last}");
    for marker in ["+first", "+second", "the grown tool answers"] {
        assert!(
            sent.iter()
                .any(|(body, _)| last_message(body).contains(marker)),
            "{marker} reached the model"
        );
    }
    assert!(
        changed
            .iter()
            .any(|e| e["source"] == "mcp" && e["added"] == json!(["mcp__py__grown"])),
        "{changed:?}"
    );
    // The tool list never changed: the plugin's tool was never added to it.
    let tools: Vec<&Value> = sent.iter().map(|(body, _)| &body["tools"]).collect();
    assert!(tools.windows(2).all(|pair| pair[0] == pair[1]));
    let names: Vec<&str> = tools[0]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|tool| tool["name"].as_str())
        .collect();
    assert!(
        names.contains(&"call_tool") && names.contains(&"find_tools"),
        "{names:?}"
    );
    assert!(!names.contains(&"diff"), "{names:?}");
    assert!(!names.contains(&"mcp__py__grown"), "{names:?}");
    assert!(
        names.contains(&"mcp__py__grow"),
        "offered from the start: {names:?}"
    );
    // Append-only: no request rewrote an earlier one, and each read all the
    // previous one sent from the cache.
    let stats = waiter.cache.stats();
    assert!(stats.rewrites.is_empty(), "{:?}", stats.rewrites);
    let misses: Vec<usize> = (1..sent.len())
        .filter(|&at| sent[at].1.cache_read < sent[at - 1].1.input)
        .collect();
    assert!(
        misses.is_empty(),
        "requests that missed the cache: {misses:?} of {:?}",
        sent.iter().map(|(_, billed)| billed).collect::<Vec<_>>()
    );
}

/// An agent a plugin defines, dropped in while the mission runs: the
/// Commander hears of it and delegates to it in the same mission.
#[tokio::test]
async fn an_agent_a_plugin_adds_mid_mission_is_delegated_to_in_that_mission() {
    use tokio::io::AsyncBufReadExt;

    let (project, plugins) = project_with_a_plugin();
    project.write(
        ".opencode/orch.json",
        &json!({"notifications": false, "plugins": {"user_dir": false}, "worktrees": false})
            .to_string(),
    );
    let poll = json!({"when": "Reviewer:", "latency_ms": 200, "tool_calls": [call("list_agents", json!({}))]});
    let mut commander = vec![
        json!({"when": "Mission goal", "tool_calls": [
            call("add_todo", json!({"id": "T1", "text": "the docs are written"})),
            call("list_agents", json!({}))]}),
        json!({"when": "Agents defined since", "tool_calls": [call("delegate_task", json!({
            "agent": "DocWriter", "description": "T1", "prompt": "Task T1: write the docs", "background": false}))]}),
        json!({"when": "docs written", "tool_calls": [call("delegate_task", json!({
            "agent": "Reviewer", "description": "review T1", "prompt": "Review T1", "background": false}))]}),
        json!({"when": "Approved T1", "text": "Done."}),
    ];
    commander.extend(std::iter::repeat_n(poll, 100));
    let script = json!({"agents": {
        "Commander": commander,
        "DocWriter": [{"when": "Task T1", "text": "T1: docs written."}],
        "Reviewer": [
            {"when": "Review T1", "tool_calls": [call("update_todo", json!({"id": "T1", "status": "completed"}))]},
            {"when": "T1", "text": "Approved T1."}
        ]
    }});
    project.write("run.json", &script.to_string());
    let mut command = tokio::process::Command::from(project.scripted());
    command
        .args(["task", "Document the project"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("start orch");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    let mut dropped = false;
    while let Some(line) = lines.next_line().await.unwrap() {
        // Only once the Commander runs: the agent is new to the mission.
        if !dropped && line.contains("\"session_started\"") {
            std::fs::copy(
                crate::plugins::guest("doc_writer"),
                plugins.join("doc_writer.wasm"),
            )
            .unwrap();
            dropped = true;
        }
        stdout.push_str(&line);
        stdout.push('\n');
    }
    let output = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}\n{stdout}");
    let events = events(&stdout);
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "tools_changed" && e["source"] == "agents"),
        "{stdout}"
    );
    let ran: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "task_finished" && e["agent"] == "DocWriter")
        .collect();
    assert_eq!(ran.len(), 1, "{stdout}");
}

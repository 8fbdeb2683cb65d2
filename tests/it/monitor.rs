//! The monitor through the real binary: the live view on a pseudo-terminal
//! (under `script`), `orch monitor` following a journal while it is written,
//! `orch metrics` and `show_metrics` agreeing with the events, the event
//! schema's round trip, and the notification when a mission ends.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use orch::events::PoolStats;
use orch::events::{
    ApprovedBy, Envelope, Event, MissionOutcome, PlanCounts, SessionOutcome, TaskStatus,
    VerifyResult,
};
use orch::mission::state::MissionState;
use orch::provider::{FinishReason, Usage};

use crate::support::project::{Project, call, events, run};

/// A small mission: the Commander plans two items and delegates, a Worker
/// writes two files, the Reviewer approves, the Commander reads its
/// metrics and finishes. `latency_ms` per model turn.
fn mission_script(latency_ms: u64) -> Value {
    json!({"agents": {
        "Commander": [
            {"when": "Mission goal", "text": "Planning.", "tool_calls": [
                call("add_todo", json!({"id": "T1", "text": "greeting.txt says hello"})),
                call("add_todo", json!({"id": "T2", "text": "farewell.txt says bye"})),
                call("delegate_task", json!({"agent": "Worker", "description": "T1 and T2", "prompt": "Task T1: write greeting.txt", "background": false}))]},
            {"when": "T1 done", "tool_calls": [call("delegate_task", json!({"agent": "Reviewer", "description": "review T1 and T2", "prompt": "Review T1", "background": false}))]},
            {"when": "Approved", "tool_calls": [call("show_metrics", json!({}))]},
            {"when": "tools:", "text": "Done."}
        ],
        "Worker": [
            {"when": "Task T1", "tool_calls": [call("write", json!({"path": "greeting.txt", "content": "hello\n"}))]},
            {"when": "greeting.txt", "tool_calls": [call("write", json!({"path": "farewell.txt", "content": "bye\n"}))]},
            {"when": "farewell.txt", "text": "T1 done."}
        ],
        "Reviewer": [
            {"when": "Review T1", "tool_calls": [call("read", json!({"path": "greeting.txt"}))]},
            {"when": "hello", "tool_calls": [
                call("update_todo", json!({"id": "T1", "status": "completed"})),
                call("update_todo", json!({"id": "T2", "status": "completed"}))]},
            {"when": "T2", "text": "Approved T1 and T2."}
        ]
    }, "latency_ms": latency_ms})
}

/// A project with the mission script, no verification, and `config` merged
/// into its orch.json.
fn project(latency_ms: u64, config: Value) -> Project {
    let project = Project::trusted();
    let mut orch = json!({"verify": []});
    if let (Some(base), Value::Object(extra)) = (orch.as_object_mut(), config) {
        base.extend(extra);
    }
    project.write(".opencode/orch.json", &orch.to_string());
    project.write("run.json", &mission_script(latency_ms).to_string());
    project
}

fn task_args(command: &mut Command) -> &mut Command {
    command.args([
        "--provider",
        "scripted",
        "--script",
        "run.json",
        "task",
        "Say hello",
    ])
}

/// Wait for `child`, killing it after `limit` so a hang fails the test
/// instead of stalling the suite.
fn wait(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for orch") {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("orch did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn output_of(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(out) = child.stdout.as_mut() {
        out.read_to_string(&mut text).expect("read stdout");
    }
    text
}

/// Just enough of a terminal to replay what the live view drew: cursor
/// moves (`ESC [ row ; col H`), clears (`ESC [ 2 J`) and text; every other
/// escape sequence is skipped. Returns the screen as it was when the view
/// left the alternate screen.
fn screen_when_the_view_closed(output: &str, rows: usize, cols: usize) -> Vec<String> {
    let end = output
        .find("\x1b[?1049l")
        .expect("the view left the alternate screen");
    let start = output
        .find("\x1b[?1049h")
        .expect("the view entered the alternate screen");
    let mut grid = vec![vec![' '; cols]; rows];
    let (mut row, mut col) = (0usize, 0usize);
    let mut chars = output[start..end].chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                Some('[') => {
                    let mut params = String::new();
                    let mut last = ' ';
                    for next in chars.by_ref() {
                        if ('@'..='~').contains(&next) {
                            last = next;
                            break;
                        }
                        params.push(next);
                    }
                    match last {
                        'H' => {
                            let mut parts =
                                params.split(';').map(|p| p.parse::<usize>().unwrap_or(1));
                            row = parts.next().unwrap_or(1).saturating_sub(1);
                            col = parts.next().unwrap_or(1).saturating_sub(1);
                        }
                        'J' if params == "2" => grid = vec![vec![' '; cols]; rows],
                        _ => {}
                    }
                }
                Some(']') => {
                    for next in chars.by_ref() {
                        if next == '\x07' {
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\r' => col = 0,
            '\n' => row += 1,
            c if c.is_control() => {}
            c => {
                if row < rows && col < cols {
                    grid[row][col] = c;
                }
                col += 1;
            }
        }
    }
    grid.into_iter()
        .map(|line| line.into_iter().collect::<String>().trim_end().to_string())
        .collect()
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[test]
fn the_live_view_shows_agents_and_progress_on_a_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        panic!("the pseudo-terminal test needs `script` (util-linux)");
    }
    let project = project(150, json!({}));
    // `script` gives orch a pseudo-terminal for stdin and stdout; its size
    // is set inside, since the test itself has no terminal.
    let mut orch = project.orch();
    task_args(&mut orch);
    let line: Vec<String> = std::iter::once(orch.get_program())
        .chain(orch.get_args())
        .map(|part| shell_quote(&part.to_string_lossy()))
        .collect();
    let mut command = Command::new("script");
    command
        .args([
            "-qfec",
            &format!("stty rows 30 cols 110; exec {}", line.join(" ")),
            "/dev/null",
        ])
        .current_dir(project.path())
        .env("TERM", "xterm-256color")
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    for (key, value) in orch.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    let mut child = command.spawn().expect("run script");
    let output = {
        let mut out = child.stdout.take().expect("stdout");
        let mut bytes = Vec::new();
        out.read_to_end(&mut bytes).expect("read the terminal");
        String::from_utf8_lossy(&bytes).into_owned()
    };
    assert_eq!(
        wait(&mut child, Duration::from_secs(60)),
        Some(0),
        "{output}"
    );
    let screen = screen_when_the_view_closed(&output, 30, 110);
    let text = screen.join("\n");
    // The last frame: every agent by name with its state, the plan done,
    // the numbers from the events.
    assert!(screen[0].contains("orch · mission m-"), "{text}");
    assert!(text.contains("goal Say hello"), "{text}");
    assert!(
        text.contains("complete: all 2 plan items are done"),
        "{text}"
    );
    assert!(text.contains("Plan · 2/2 done"), "{text}");
    assert!(text.contains("100%"), "{text}");
    assert!(text.contains("[x] T1: greeting.txt says hello"), "{text}");
    for agent in ["Commander", "Worker", "Reviewer"] {
        assert!(text.contains(agent), "{agent} missing:\n{text}");
    }
    assert!(text.contains("Worker     done"), "{text}");
    assert!(text.contains("tools 10/10 ok"), "{text}");
    assert!(text.contains("⇢ task_1 → Worker: T1 and T2"), "{text}");
    // Back on the normal screen, the mission's last line stays.
    let after = &output[output.find("\x1b[?1049l").unwrap()..];
    assert!(after.contains("complete after 1 iteration"), "{after}");
}

/// A mission directory that looks running (its pid is this test process)
/// with a journal the test writes itself.
fn fake_mission(project: &Project, lines: &[&str]) -> std::fs::File {
    let dir = project.file(".opencode/missions/m-fake");
    std::fs::create_dir_all(&dir).unwrap();
    let state = MissionState::new("m-fake", "Follow me", 5, "commander-1");
    std::fs::write(dir.join("state.json"), serde_json::to_vec(&state).unwrap()).unwrap();
    project.write(".opencode/missions/latest", "m-fake\n");
    let mut journal = std::fs::File::create(dir.join("events.jsonl")).unwrap();
    for line in lines {
        writeln!(journal, "{line}").unwrap();
    }
    journal
}

const STARTED: &str = r#"{"seq":1,"ts_ms":1000,"type":"mission_started","mission":"m-fake","goal":"Follow me","root":"/nowhere","max_iterations":5,"commander_session":"commander-1","resumed":false}"#;
const SESSION: &str = r#"{"seq":2,"ts_ms":1001,"type":"session_started","session":"commander-1","agent":"Commander","provider":"scripted","model":"scripted"}"#;
const QUEUED: &str = r#"{"seq":3,"ts_ms":1002,"type":"task_queued","task":"t1","agent":"Worker","description":"write it","background":true,"parent":"commander-1","prompt":"write it"}"#;
const WARNING: &str = r#"{"seq":4,"ts_ms":1003,"type":"warning","message":"torn in two"}"#;
const FINISHED: &str = r#"{"seq":5,"ts_ms":1004,"type":"mission_finished","mission":"m-fake","outcome":"complete","reason":"all done","iterations":1,"usage":{"input":10,"output":2,"cached_input":0,"cache_write":0}}"#;

/// Follow the fake journal with `args`, appending the rest of it (a torn
/// line among them) while orch reads.
fn follow_fake(args: &[&str]) -> (Option<i32>, String) {
    let project = Project::new();
    let mut journal = fake_mission(&project, &[STARTED, SESSION]);
    let mut child = project
        .orch()
        .arg("monitor")
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("run orch monitor");
    std::thread::sleep(Duration::from_millis(300));
    writeln!(journal, "{QUEUED}").unwrap();
    let (head, tail) = WARNING.split_at(30);
    write!(journal, "{head}").unwrap();
    journal.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    writeln!(journal, "{tail}").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    writeln!(journal, "{FINISHED}").unwrap();
    let code = wait(&mut child, Duration::from_secs(20));
    (code, output_of(&mut child))
}

#[test]
fn monitor_follows_a_journal_while_it_is_written() {
    let (code, stdout) = follow_fake(&[]);
    assert_eq!(code, Some(0), "{stdout}");
    let expected = [
        "following mission m-fake",
        "◆ mission m-fake started: Follow me",
        "⇢ t1 → Worker (background): write it",
        "warning: torn in two",
        "◆ mission m-fake complete after 1 iteration: all done",
    ];
    let mut rest = stdout.as_str();
    for line in expected {
        let at = rest
            .find(line)
            .unwrap_or_else(|| panic!("{line:?} missing or out of order in:\n{stdout}"));
        rest = &rest[at..];
    }

    // --json: the journal's lines, exactly, the torn one whole.
    let (code, stdout) = follow_fake(&["--json"]);
    assert_eq!(code, Some(0), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, [STARTED, SESSION, QUEUED, WARNING, FINISHED]);
}

#[test]
fn monitor_says_when_no_mission_is_running() {
    let project = project(0, json!({}));
    let (output, stdout, _) = run(project.orch().arg("monitor"));
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout.contains("no mission is running in"), "{stdout}");
    assert!(stdout.contains("none has run here yet"), "{stdout}");

    let (output, _, stderr) = run(task_args(&mut project.orch()));
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let (output, stdout, _) = run(project.orch().arg("monitor"));
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout.contains("no mission is running"), "{stdout}");
    assert!(stdout.contains("is complete"), "{stdout}");

    // A journal whose process is gone (pid 0 is never alive) is not
    // followed either, and says how to go on.
    let id = project.read(".opencode/missions/latest").trim().to_string();
    let path = format!(".opencode/missions/{id}/state.json");
    let mut saved: Value = serde_json::from_str(&project.read(&path)).unwrap();
    saved["status"] = json!("running");
    saved["pid"] = json!(0);
    project.write(&path, &saved.to_string());
    let (output, stdout, _) = run(project.orch().arg("monitor"));
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout.contains("`orch resume` continues it"), "{stdout}");
}

#[test]
fn monitor_attaches_to_a_real_mission_from_another_process() {
    let project = project(400, json!({}));
    let mut mission = task_args(&mut project.orch())
        .arg("--json")
        .stdout(Stdio::null())
        .spawn()
        .expect("run orch task");
    // Attach once the mission has recorded itself as running.
    let deadline = Instant::now() + Duration::from_secs(20);
    let id = loop {
        let latest = std::fs::read_to_string(project.file(".opencode/missions/latest"));
        if let Ok(id) = latest {
            let id = id.trim().to_string();
            if project
                .file(&format!(".opencode/missions/{id}/state.json"))
                .exists()
            {
                break id;
            }
        }
        assert!(Instant::now() < deadline, "the mission never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut monitor = project
        .orch()
        .args(["monitor", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run orch monitor");
    let followed = output_of(&mut monitor);
    assert_eq!(
        wait(&mut monitor, Duration::from_secs(30)),
        Some(0),
        "{followed}"
    );
    assert_eq!(wait(&mut mission, Duration::from_secs(30)), Some(0));
    let journal = project.read(&format!(".opencode/missions/{id}/events.jsonl"));
    assert_eq!(followed, journal);
    let last: Value = serde_json::from_str(followed.lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "mission_finished");
}

fn count(events: &[Value], kind: &str) -> u64 {
    events.iter().filter(|e| e["type"] == kind).count() as u64
}

#[test]
fn metrics_and_show_metrics_agree_with_the_events() {
    let pricing = json!({"pricing": {"scripted": {"input": 2.0, "output": 10.0}}});
    let project = project(0, pricing);
    let (output, stdout, stderr) = run(task_args(&mut project.orch()).arg("--json"));
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let events = events(&stdout);

    let (output, stdout, _) = run(project.orch().args(["metrics", "--json"]));
    assert_eq!(output.status.code(), Some(0));
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["outcome"], "complete");
    assert_eq!(report["model"]["requests"], count(&events, "model_request"));
    assert_eq!(
        report["model"]["responses"],
        count(&events, "model_response")
    );
    assert_eq!(
        report["tool_calls"]["calls"],
        count(&events, "tool_call_end")
    );
    assert_eq!(report["tool_calls"]["failures"], 0);
    let used = |field: &str| -> u64 {
        events
            .iter()
            .filter(|e| e["type"] == "usage")
            .map(|e| e["usage"][field].as_u64().unwrap())
            .sum()
    };
    assert_eq!(report["usage"]["input"], used("input"));
    assert_eq!(report["usage"]["output"], used("output"));
    let cost = (used("input") as f64 * 2.0 + used("output") as f64 * 10.0) / 1e6;
    assert!(
        (report["cost_usd"].as_f64().unwrap() - cost).abs() < 1e-9,
        "{report}"
    );
    // The mission's own cost says the same.
    let finished = events
        .iter()
        .find(|e| e["type"] == "mission_finished")
        .unwrap();
    assert!((finished["cost_usd"].as_f64().unwrap() - cost).abs() < 1e-9);
    let agents: Vec<&str> = report["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["agent"].as_str().unwrap())
        .collect();
    assert_eq!(agents, ["Commander", "Reviewer", "Worker"]);
    let write = report["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tool"] == "write")
        .unwrap();
    assert_eq!(write["calls"], 2);
    assert_eq!(write["success_rate"], 1.0);
    assert_eq!(
        report["sessions"].as_array().unwrap().len() as u64,
        count(&events, "session_started")
    );

    // The Commander read the same numbers, live, through show_metrics.
    let shown = events
        .iter()
        .find(|e| e["type"] == "tool_call_end" && e["tool"] == "show_metrics")
        .expect("the Commander called show_metrics");
    assert_eq!(shown["ok"], true);
    let preview = shown["preview"].as_str().unwrap();
    assert!(preview.starts_with("mission m-"), "{preview}");
    assert!(preview.contains(": running"), "{preview}");

    let (output, stdout, _) = run(project.orch().arg("metrics"));
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout.contains(": complete"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("write ") && l.contains("100.0%")),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("cost ${cost:.4}")), "{stdout}");

    let empty = Project::new();
    let (output, stdout, _) = run(empty.orch().arg("metrics"));
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout.contains("no mission has run"), "{stdout}");
}

/// One event of every type. The match makes a new variant fail to compile
/// here until it is added to the list (and to docs/events.md).
fn one_of_each() -> Vec<Event> {
    let usage = Usage {
        input: 5,
        output: 2,
        cached_input: 1,
        cache_write: 0,
        reasoning: 0,
    };
    let all = vec![
        Event::MissionStarted {
            mission: "m".into(),
            pid: 1,
            sandbox: String::new(),
            goal: "g".into(),
            root: "/r".into(),
            max_iterations: 3,
            commander_session: "c".into(),
            resumed: true,
            budget_tokens: None,
            budget_usd: None,
        },
        Event::PlanUpdated {
            counts: PlanCounts {
                total: 3,
                done: 1,
                in_progress: 1,
                failed: 0,
            },
        },
        Event::GateChecked {
            mission: "m".into(),
            iteration: 2,
            passed: false,
            open_items: vec!["T1 (pending): x".into()],
            sync_issues: vec!["issue".into()],
            verify: vec![VerifyResult {
                command: "cargo test".into(),
                passed: false,
                exit_code: None,
                duration_ms: 9,
                output_tail: "tail".into(),
            }],
            note: Some("no plan yet".into()),
        },
        Event::MissionFinished {
            mission: "m".into(),
            outcome: MissionOutcome::Stopped,
            reason: "r".into(),
            iterations: 2,
            usage,
            cost_usd: Some(0.5),
        },
        Event::SessionStarted {
            session: "s".into(),
            agent: "Worker".into(),
            provider: "openai".into(),
            model: "m".into(),
        },
        Event::ModelRequest {
            session: "s".into(),
            turn: 1,
            messages: 2,
            tools: 3,
        },
        Event::TextDelta {
            session: "s".into(),
            text: "hi\u{1b}[31m".into(),
        },
        Event::ModelRetry {
            session: "s".into(),
            attempt: 1,
            delay_ms: 500,
            reason: "429".into(),
            discarded_bytes: 0,
        },
        Event::ModelResponse {
            session: "s".into(),
            turn: 1,
            finish: Some(FinishReason::Other("pause".into())),
            tool_calls: 1,
            latency_ms: 40,
        },
        Event::Usage {
            session: "s".into(),
            agent: "Worker".into(),
            usage,
        },
        Event::ToolCallBegin {
            session: "s".into(),
            call_id: "c1".into(),
            tool: "bash".into(),
            arguments: json!({"command": "ls"}),
        },
        Event::ToolCallEnd {
            session: "s".into(),
            call_id: "c1".into(),
            tool: "bash".into(),
            ok: false,
            duration_ms: 7,
            preview: "no".into(),
        },
        Event::ApprovalRequested {
            session: "s".into(),
            call_id: "c1".into(),
            tool: "bash".into(),
            detail: "ls".into(),
        },
        Event::ApprovalResolved {
            session: "s".into(),
            call_id: "c1".into(),
            approved: false,
            by: ApprovedBy::Headless,
        },
        Event::Warning {
            session: Some("s".into()),
            message: "w".into(),
        },
        Event::TaskQueued {
            task: "t".into(),
            agent: "Worker".into(),
            description: "d".into(),
            background: true,
            parent: "c".into(),
            prompt: "p".into(),
        },
        Event::TaskStarted {
            task: "t".into(),
            agent: "Worker".into(),
            session: "s".into(),
            reused: true,
            pool: PoolStats {
                creations: 1,
                reuse_hits: 2,
                evictions: 3,
                idle: 4,
            },
            worktree: Some(".opencode/worktrees/m/t".into()),
        },
        Event::TaskLanded {
            task: "t".into(),
            files: vec!["src/lib.rs".into()],
            conflicts: vec![],
            item: None,
        },
        Event::TaskFinished {
            task: "t".into(),
            agent: "Worker".into(),
            status: TaskStatus::Failed,
            error: Some("e".into()),
            result: None,
            turns: 0,
        },
        Event::SessionFinished {
            session: "s".into(),
            agent: "Worker".into(),
            outcome: SessionOutcome::BudgetExceeded,
            turns: 4,
            usage,
            error: None,
        },
        Event::ContextCompacted {
            session: "s".into(),
            agent: "Worker".into(),
            reason: "threshold".into(),
            tokens_before: 5000,
            tokens_after: 2000,
            pruned: 3,
            summarized: 4,
            summary: true,
        },
        Event::MemoryEvicted {
            entries: vec!["mission:m3".into()],
        },
        Event::BackgroundStarted {
            session: "worker-1".into(),
            job: "bg_1".into(),
            label: "dev server".into(),
            command: "npm run dev".into(),
        },
        Event::BackgroundFinished {
            job: "bg_1".into(),
            status: "killed".into(),
            exit_code: None,
        },
        Event::PluginLog {
            plugin: "p.wasm".into(),
            level: "warn".into(),
            message: "m".into(),
        },
        Event::PluginMetric {
            plugin: "p.wasm".into(),
            name: "n".into(),
            value: 1.5,
        },
        Event::TaskReported {
            task: "task_1".into(),
        },
        Event::ToolsChanged {
            source: "mcp".into(),
            added: vec!["mcp__gh__search".into()],
            removed: Vec::new(),
            note: None,
        },
    ];
    for event in &all {
        match event {
            Event::MissionStarted { .. }
            | Event::PlanUpdated { .. }
            | Event::GateChecked { .. }
            | Event::MissionFinished { .. }
            | Event::SessionStarted { .. }
            | Event::ModelRequest { .. }
            | Event::TextDelta { .. }
            | Event::ModelRetry { .. }
            | Event::ModelResponse { .. }
            | Event::Usage { .. }
            | Event::ToolCallBegin { .. }
            | Event::ToolCallEnd { .. }
            | Event::ApprovalRequested { .. }
            | Event::ApprovalResolved { .. }
            | Event::Warning { .. }
            | Event::ToolsChanged { .. }
            | Event::TaskQueued { .. }
            | Event::TaskStarted { .. }
            | Event::TaskFinished { .. }
            | Event::TaskReported { .. }
            | Event::TaskLanded { .. }
            | Event::SessionFinished { .. }
            | Event::ContextCompacted { .. }
            | Event::MemoryEvicted { .. }
            | Event::BackgroundStarted { .. }
            | Event::BackgroundFinished { .. }
            | Event::PluginLog { .. }
            | Event::PluginMetric { .. } => {}
        }
    }
    all
}

#[test]
fn the_event_schema_round_trips_and_matches_the_docs() {
    let mut types = BTreeSet::new();
    for (i, event) in one_of_each().into_iter().enumerate() {
        let envelope = Envelope {
            seq: i as u64 + 1,
            ts_ms: 1_795_000_000_000,
            event,
        };
        let line = serde_json::to_string(&envelope).unwrap();
        assert!(!line.contains('\n'), "{line}");
        let back: Envelope = serde_json::from_str(&line).unwrap();
        assert_eq!(back, envelope, "{line}");
        let value: Value = serde_json::from_str(&line).unwrap();
        types.insert(value["type"].as_str().unwrap().to_string());
    }
    // Every type is documented, and the docs name no other.
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/events.md"))
            .unwrap();
    let documented: BTreeSet<String> = docs
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .filter(|name| !["seq", "ts_ms", "type"].contains(name))
        .map(str::to_string)
        .collect();
    assert_eq!(types, documented);

    // A real mission's stream: every line parses and serializes back to the
    // same JSON, and the journal holds the same lines as stdout.
    let project = project(0, json!({}));
    let (output, stdout, stderr) = run(task_args(&mut project.orch()).arg("--json"));
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    for line in stdout.lines() {
        let envelope: Envelope =
            serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}"));
        let again: Value = serde_json::to_value(&envelope).unwrap();
        assert_eq!(
            again,
            serde_json::from_str::<Value>(line).unwrap(),
            "{line}"
        );
    }
    let id = project.read(".opencode/missions/latest").trim().to_string();
    assert_eq!(
        project.read(&format!(".opencode/missions/{id}/events.jsonl")),
        stdout
    );
}

/// A `notify-send` that records its arguments, one per line.
fn fake_notifier(project: &Project) -> (std::ffi::OsString, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let bin = project.file("fake-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = project.file("notified.txt");
    let script = bin.join("notify-send");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {}\n",
            shell_quote(&log.to_string_lossy())
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    (path, log)
}

#[test]
fn a_finished_mission_notifies_unless_ci_or_turned_off() {
    if std::env::consts::OS != "linux" {
        crate::support::skipped(
            "monitor::a_finished_mission_notifies_unless_ci_or_turned_off",
            "the fake notifier is notify-send, which orch uses on Linux only",
        );
        return;
    }
    let project = project(0, json!({}));
    let (path, log) = fake_notifier(&project);
    let notify = |project: &Project, ci: bool| {
        let mut command = project.orch();
        command
            .env("PATH", &path)
            .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent");
        if !ci {
            command.env_remove("CI");
        }
        let (output, _, stderr) = run(task_args(&mut command));
        assert_eq!(output.status.code(), Some(0), "{stderr}");
    };
    notify(&project, true);
    assert!(!log.exists(), "CI must not notify");
    notify(&project, false);
    let args = std::fs::read_to_string(&log).expect("the notifier ran");
    let args: Vec<&str> = args.lines().collect();
    assert_eq!(
        args[..3],
        ["--app-name=orch", "--", "orch: mission complete"]
    );
    assert_eq!(args[3], "Say hello");
    assert!(args[4].starts_with("all 2 plan items are done"), "{args:?}");

    std::fs::remove_file(&log).unwrap();
    project.write(
        ".opencode/orch.json",
        &json!({"verify": [], "notifications": false}).to_string(),
    );
    notify(&project, false);
    assert!(!log.exists(), "notifications: false must not notify");
}

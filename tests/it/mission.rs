//! Scripted missions through the real `orch` binary: the happy path with
//! parallel Workers, rejection and redo, verification failing then passing,
//! every guard, plan edge cases, cancel, resume after SIGKILL, custom agents.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::log::compact_log;
use crate::support::project::{Project, call, events, run};

/// Write `script` and run `orch task` on it with `--json`.
fn task(project: &Project, script: &Value, extra: &[&str]) -> (Option<i32>, Vec<Value>, String) {
    project.write("run.json", &script.to_string());
    let mut command = project.scripted();
    command.args(extra);
    command.args(["task", "Test mission"]);
    let (output, stdout, stderr) = run(&mut command);
    (output.status.code(), events(&stdout), stderr)
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

fn finished(events: &[Value]) -> &Value {
    of_type(events, "mission_finished")
        .last()
        .copied()
        .expect("a mission_finished event")
}

fn verify(project: &Project, commands: &[&str]) {
    project.write(
        ".opencode/orch.json",
        &json!({"verify": commands}).to_string(),
    );
}

#[test]
fn demo_runs_a_whole_mission_with_parallel_workers() {
    let project = Project::new();
    let (output, stdout, stderr) = run(project.orch().arg("demo"));
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let dir = stdout
        .lines()
        .find_map(|line| line.strip_prefix("the demo project is at "))
        .expect("the demo says where its project is");
    let dir = Path::new(dir.trim());
    let lines = std::fs::read_to_string(dir.join("src/lines.rs")).unwrap();
    assert!(lines.contains("max_by_key"), "{lines}");
    let plan = std::fs::read_to_string(dir.join(".opencode/todo.md")).unwrap();
    assert_eq!(plan.matches("- [x] ").count(), 3, "{plan}");
    // The project's own tests really pass now.
    let test = Command::new("cargo")
        .args(["test", "--quiet"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "{}",
        String::from_utf8_lossy(&test.stderr)
    );
    std::fs::remove_dir_all(dir).unwrap();

    let (output, stdout, _) = run(project.orch().args(["demo", "--json"]));
    assert_eq!(output.status.code(), Some(0));
    let events = events(&stdout);
    let root = of_type(&events, "mission_started")[0]["root"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_dir_all(root).unwrap();
    assert_eq!(finished(&events)["outcome"], "complete");
    insta::assert_snapshot!("demo", compact_log(&events));
    // The two Workers ran at the same time.
    let worker_events: Vec<&str> = events
        .iter()
        .filter(|e| {
            e["agent"] == "Worker" && (e["type"] == "task_started" || e["type"] == "task_finished")
        })
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        &worker_events[..2],
        ["task_started", "task_started"],
        "{worker_events:?}"
    );
    // The engine's verification failed first, with evidence, then passed.
    let gates = of_type(&events, "gate_checked");
    assert_eq!(gates.len(), 2);
    assert_eq!(gates[0]["passed"], false);
    let failed = &gates[0]["verify"].as_array().unwrap().last().unwrap();
    assert_eq!(failed["command"], "cargo test");
    assert!(
        failed["output_tail"]
            .as_str()
            .unwrap()
            .contains("finds_the_longest_line")
    );
    assert_eq!(gates[1]["passed"], true);
    // A Reviewer session came back from the pool for the second review.
    let reviews: Vec<bool> = events
        .iter()
        .filter(|e| e["type"] == "task_started" && e["agent"] == "Reviewer")
        .map(|e| e["reused"].as_bool().unwrap())
        .collect();
    assert_eq!(reviews, [false, true]);
}

#[test]
fn a_rejected_item_is_redone_until_the_reviewer_approves() {
    let project = Project::trusted();
    verify(&project, &["grep -qx hello greeting.txt"]);
    let script = json!({"agents": {
        "Commander": [
            {"when": "Mission goal", "tool_calls": [
                call("add_todo", json!({"id": "T1", "text": "greeting.txt says hello"})),
                call("delegate_task", json!({"agent": "Worker", "description": "T1", "prompt": "Task T1: write greeting.txt", "background": false}))]},
            {"when": "T1 done", "tool_calls": [call("delegate_task", json!({"agent": "Reviewer", "description": "review T1", "prompt": "Review T1", "background": false}))]},
            {"when": "Rejected T1", "text": "The Reviewer rejected T1."},
            {"when": "T1 (failed)", "tool_calls": [call("delegate_task", json!({"agent": "Worker", "description": "T1 again", "prompt": "Task T1 again: fix the typo", "background": false}))]},
            {"when": "T1 fixed", "tool_calls": [call("delegate_task", json!({"agent": "Reviewer", "description": "review T1 again", "prompt": "Review T1 again", "background": false}))]},
            {"when": "Approved T1", "text": "Done."}
        ],
        "Worker": [
            {"when": "Task T1: write", "tool_calls": [call("write", json!({"path": "greeting.txt", "content": "helo\n"}))]},
            {"when": "greeting.txt", "text": "T1 done."},
            {"when": "again", "tool_calls": [call("edit", json!({"path": "greeting.txt", "old": "helo", "new": "hello"}))]},
            {"when": "edited greeting.txt", "text": "T1 fixed."}
        ],
        "Reviewer": [
            {"when": "Review T1", "tool_calls": [call("read", json!({"path": "greeting.txt"}))]},
            {"when": "helo", "tool_calls": [call("update_todo", json!({"id": "T1", "status": "failed"}))]},
            {"when": "failed", "text": "Rejected T1: it says helo."},
            {"when": "again", "tool_calls": [call("read", json!({"path": "greeting.txt"}))]},
            {"when": "hello", "tool_calls": [call("update_todo", json!({"id": "T1", "status": "completed"}))]},
            {"when": "done", "text": "Approved T1."}
        ]
    }});
    let (code, events, stderr) = task(&project, &script, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    insta::assert_snapshot!("rejection_and_redo", compact_log(&events));
    let gates = of_type(&events, "gate_checked");
    assert_eq!(gates.len(), 2);
    assert_eq!(
        gates[0]["open_items"],
        json!(["T1 (failed): greeting.txt says hello"])
    );
    assert_eq!(gates[1]["passed"], true);
    assert_eq!(project.read("greeting.txt"), "hello\n");
    assert!(
        project
            .read(".opencode/todo.md")
            .contains("- [x] T1: greeting.txt says hello")
    );
}

/// A Commander that only ever ends its turn, for the guards.
fn idle_commander(extra: usize) -> Value {
    let mut replies = vec![json!({"when": "Mission goal", "text": "Nothing to do."})];
    for _ in 0..extra {
        replies.push(json!({"when": "not complete", "text": "Still nothing."}));
    }
    json!({"agents": {"Commander": replies}})
}

#[test]
fn max_iterations_stops_with_its_reason() {
    let project = Project::trusted();
    verify(&project, &[]);
    let (code, events, _) = task(&project, &idle_commander(5), &["--max-iterations", "2"]);
    assert_eq!(code, Some(1));
    insta::assert_snapshot!("guard_max_iterations", compact_log(&events));
    let end = finished(&events);
    assert_eq!(end["outcome"], "stopped");
    assert_eq!(end["iterations"], 2);
    assert!(
        end["reason"]
            .as_str()
            .unwrap()
            .contains("max iterations reached (2)"),
        "{end}"
    );
    // The gate said why each time: there is no plan item.
    let gate = of_type(&events, "gate_checked")[0];
    assert!(
        gate["note"].as_str().unwrap().contains("no items"),
        "{gate}"
    );
}

#[test]
fn no_progress_stops_with_its_reason() {
    let project = Project::trusted();
    verify(&project, &[]);
    let (code, events, _) = task(&project, &idle_commander(10), &[]);
    assert_eq!(code, Some(1));
    let end = finished(&events);
    assert_eq!(end["iterations"], 4, "{end}");
    assert!(
        end["reason"].as_str().unwrap().starts_with("no progress"),
        "{end}"
    );
}

#[test]
fn rereading_the_plan_on_every_wake_up_and_polling_a_job_are_not_repetition() {
    let project = Project::trusted();
    verify(&project, &["test -f done.txt"]);
    let read_todo = || call("read_todo", json!({}));
    let script = json!({"agents": {
        "Commander": [
            {"when": "Mission goal", "tool_calls": [read_todo(),
                call("add_todo", json!({"id": "T1", "text": "done.txt exists"})),
                call("delegate_task", json!({"agent": "Worker", "description": "T1", "prompt": "Task T1: create done.txt", "background": true}))]},
            {"when": "started task_1", "text": "Waiting for T1."},
            {"when": "task_1", "tool_calls": [read_todo(),
                call("delegate_task", json!({"agent": "Reviewer", "description": "review T1", "prompt": "Review T1", "background": true}))]},
            {"when": "started task_2", "text": "Waiting for the review."},
            {"when": "task_2", "tool_calls": [read_todo()]},
            {"when": "T1", "text": "All done."}
        ],
        "Worker": [
            {"tool_calls": [call("run_background", json!({"command": "sleep 0.3; touch done.txt", "label": "make"}))]},
            {"tool_calls": [call("check_background", json!({"id": "bg_1"}))]},
            {"tool_calls": [call("check_background", json!({"id": "bg_1"}))]},
            {"tool_calls": [call("check_background", json!({"id": "bg_1"}))]},
            {"tool_calls": [call("bash", json!({"command": "sleep 0.5; test -f done.txt && echo ok"}))]},
            {"text": "T1 done: done.txt exists."}
        ],
        "Reviewer": [
            {"tool_calls": [call("bash", json!({"command": "test -f done.txt && echo ok"}))]},
            {"tool_calls": [call("update_todo", json!({"id": "T1", "status": "completed"}))]},
            {"text": "Approved T1."}
        ]
    }});
    let (code, events, stderr) = task(&project, &script, &[]);
    assert_eq!(code, Some(0), "{stderr}\n{}", compact_log(&events));
    assert_eq!(finished(&events)["outcome"], "complete");
}

#[test]
fn the_same_call_with_the_same_result_stops_the_mission_and_every_call_keeps_its_result() {
    let project = Project::trusted();
    verify(&project, &[]);
    project.write("notes.txt", "stuck\n");
    let same = json!({"tool_calls": [call("grep", json!({"pattern": "stuck"}))]});
    let script = json!({"agents": {"Commander": [same, same, same, same]}});
    let (code, events, _) = task(&project, &script, &[]);
    assert_eq!(code, Some(1));
    let reason = finished(&events)["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("repeating itself"), "{reason}");
    assert!(
        reason.contains(r#"(grep {"pattern":"stuck"}) got the same result 3 times in a row"#),
        "{reason}"
    );
    // The third call has its result in the transcript: the conversation
    // stays valid for `orch resume`.
    let results = project.tool_results();
    assert_eq!(results.len(), 3, "{results:?}");
    assert!(results.iter().all(|r| r.contains("stuck")), "{results:?}");
}

#[test]
fn wall_clock_and_budgets_stop_with_their_reasons() {
    let project = Project::trusted();
    project.write(
        ".opencode/orch.json",
        r#"{"verify": [], "mission": {"max_wall_secs": 1}}"#,
    );
    let slow = json!({"agents": {"Commander": [{"latency_ms": 10000, "text": "late"}]}});
    let started = Instant::now();
    let (code, events, _) = task(&project, &slow, &[]);
    assert_eq!(code, Some(1));
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "the guard did not interrupt the model call"
    );
    assert_eq!(
        finished(&events)["reason"],
        "wall-clock limit reached (1 s)"
    );

    let busy = json!({"tool_calls": [call("list", json!({}))]});
    let script = json!({"agents": {"Commander": [busy, {"tool_calls": [call("glob", json!({"pattern": "*"}))]}, {"text": "done"}]}});
    let project = Project::trusted();
    verify(&project, &[]);
    let (code, events, _) = task(&project, &script, &["--budget-tokens", "100"]);
    assert_eq!(code, Some(1));
    let reason = finished(&events)["reason"].as_str().unwrap().to_string();
    assert!(reason.starts_with("token budget spent"), "{reason}");
    // The first turn spends the budget, and no session starts another: the
    // budget is checked as the usage is emitted, not when it is recorded.
    assert_eq!(of_type(&events, "model_request").len(), 1);
    // Resumed with the same budget, it is spent before any turn.
    let (output, stdout, stderr) =
        run(project
            .scripted()
            .args(["--budget-tokens", "100", "resume"]));
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    let resumed = crate::support::project::events(&stdout);
    let reason = finished(&resumed)["reason"].as_str().unwrap().to_string();
    assert!(reason.starts_with("token budget spent"), "{reason}");
    assert_eq!(of_type(&resumed, "model_request").len(), 0, "{stdout}");

    let project = Project::trusted();
    project.write(
        ".opencode/orch.json",
        r#"{"verify": [], "pricing": {"scripted": {"input": 1000.0, "output": 1000.0}}}"#,
    );
    let (code, events, _) = task(&project, &script, &["--budget-usd", "0.01"]);
    assert_eq!(code, Some(1));
    let end = finished(&events);
    assert!(
        end["reason"]
            .as_str()
            .unwrap()
            .starts_with("dollar budget spent"),
        "{end}"
    );
    assert!(end["cost_usd"].as_f64().unwrap() > 0.01, "{end}");
    assert_eq!(of_type(&events, "model_request").len(), 1);
}

#[test]
fn nested_items_and_a_human_edit_during_the_run_are_honoured() {
    let project = Project::trusted();
    verify(&project, &[]);
    let script = json!({"agents": {
        "Commander": [
            {"when": "Mission goal", "tool_calls": [
                call("add_todo", json!({"id": "T1", "text": "first"})),
                call("add_todo", json!({"parent": "T1", "text": "first, nested"})),
                call("add_todo", json!({"id": "T2", "text": "second"})),
                call("delegate_task", json!({"agent": "Worker", "description": "slow work", "prompt": "Task W: work slowly", "background": true}))]},
            {"when": "started task_1", "text": "Waiting."},
            {"when": "Background task", "tool_calls": [call("delegate_task", json!({"agent": "Reviewer", "description": "mark T1 and T2", "prompt": "Mark T1 and T2", "background": false}))]},
            {"when": "Marked T1 and T2", "text": "Both marked."},
            {"when": "not complete", "tool_calls": [call("delegate_task", json!({"agent": "Reviewer", "description": "mark the rest", "prompt": "Mark T1.1 and H1", "background": false}))]},
            {"when": "Marked the rest", "text": "All marked."}
        ],
        "Worker": [{"when": "Task W", "latency_ms": 1500, "text": "Worked."}],
        "Reviewer": [
            {"when": "Mark T1 and T2", "tool_calls": [
                call("update_todo", json!({"id": "T1", "status": "completed"})),
                call("update_todo", json!({"id": "T2", "status": "completed"}))]},
            {"when": "T2", "text": "Marked T1 and T2."},
            {"when": "Mark T1.1 and H1", "tool_calls": [
                call("update_todo", json!({"id": "T1.1", "status": "completed"})),
                call("update_todo", json!({"id": "H1", "status": "completed"}))]},
            {"when": "H1", "text": "Marked the rest."}
        ]
    }});
    project.write("run.json", &script.to_string());
    let child = project
        .orch()
        .args([
            "--json",
            "--provider",
            "scripted",
            "--script",
            "run.json",
            "task",
            "Edge cases",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // While the Worker is busy, a person adds an item to the plan.
    wait_for(&project, "task_started", Duration::from_secs(20));
    let plan_path = project.file(".opencode/todo.md");
    let mut plan = std::fs::read_to_string(&plan_path).unwrap();
    plan.push_str("- [ ] H1: added by a person\n");
    std::fs::write(&plan_path, plan).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let events = events(&String::from_utf8_lossy(&output.stdout));
    let gates = of_type(&events, "gate_checked");
    // T1 done did not touch T1.1; the person's H1 was kept and counted.
    assert_eq!(
        gates[0]["open_items"],
        json!([
            "T1.1 (pending): first, nested",
            "H1 (pending): added by a person"
        ])
    );
    assert_eq!(gates[1]["passed"], true);
    let plan = project.read(".opencode/todo.md");
    assert!(plan.contains("  - [x] T1.1: first, nested"), "{plan}");
    assert!(plan.contains("- [x] H1: added by a person"), "{plan}");
}

/// The newest mission's journal.
fn journal(project: &Project) -> Option<String> {
    let latest = std::fs::read_to_string(project.file(".opencode/missions/latest")).ok()?;
    std::fs::read_to_string(project.file(&format!(
        ".opencode/missions/{}/events.jsonl",
        latest.trim()
    )))
    .ok()
}

/// Wait until the journal has `count` events containing `needle`.
fn wait_for_count(project: &Project, needle: &str, count: usize, timeout: Duration) {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if journal(project).is_some_and(|text| text.matches(needle).count() >= count) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no {needle} ×{count} in the journal after {timeout:?}");
}

fn wait_for(project: &Project, kind: &str, timeout: Duration) {
    wait_for_count(project, &format!("\"type\":\"{kind}\""), 1, timeout);
}

fn spawn_task(project: &Project, goal: &str) -> Child {
    project
        .orch()
        .args([
            "--provider",
            "scripted",
            "--script",
            "run.json",
            "task",
            goal,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A mission whose replies all wait for something, so any process (the
/// first or a resumed one) finds the right reply wherever it picks up.
fn resumable_script() -> Value {
    json!({"agents": {
        "Commander": [
            {"when": "Mission goal", "latency_ms": 800, "tool_calls": [
                call("add_todo", json!({"id": "T1", "text": "a.txt exists"})),
                call("add_todo", json!({"id": "T2", "text": "b.txt exists"})),
                call("delegate_task", json!({"agent": "Worker", "description": "T1", "prompt": "Task T1: write a.txt", "background": true})),
                call("delegate_task", json!({"agent": "Worker", "description": "T2", "prompt": "Task T2: write b.txt", "background": true}))]},
            {"when": "started task_2", "text": "Waiting for the Workers."},
            {"when": "resumed", "text": "Continuing after the interruption."},
            {"when": "still running", "text": "Waiting for the other Worker."},
            {"when": "(Worker", "tool_calls": [call("delegate_task", json!({"agent": "Reviewer", "description": "review", "prompt": "Review T1 and T2", "background": false}))]},
            {"when": "Approved", "text": "Done."}
        ],
        "Worker": [
            {"when": "Task T1", "latency_ms": 1500, "tool_calls": [call("write", json!({"path": "a.txt", "content": "a"}))]},
            {"when": "a.txt", "text": "T1 written."},
            {"when": "Task T2", "latency_ms": 1500, "tool_calls": [call("write", json!({"path": "b.txt", "content": "b"}))]},
            {"when": "b.txt", "text": "T2 written."}
        ],
        "Reviewer": [
            {"when": "Review T1", "tool_calls": [call("update_todo", json!({"id": "T1", "status": "completed"}))]},
            // Killed after T1 was written but before its result reached the
            // transcript, the model is told the call was interrupted.
            {"when": "interrupted", "tool_calls": [call("update_todo", json!({"id": "T1", "status": "completed"}))]},
            {"when": "T1", "latency_ms": 1500, "tool_calls": [call("update_todo", json!({"id": "T2", "status": "completed"}))]},
            {"when": "T2 (line", "text": "Approved T1 and T2."}
        ]
    }})
}

fn kill_and_resume(wait: impl FnOnce(&Project)) {
    kill_tamper_and_resume(wait, |_| {});
}

/// `kill_and_resume`, with `tamper` changing what the killed process left.
fn kill_tamper_and_resume(wait: impl FnOnce(&Project), tamper: impl FnOnce(&Project)) {
    let project = Project::trusted();
    verify(&project, &["test -f a.txt", "test -f b.txt"]);
    project.write("run.json", &resumable_script().to_string());
    let mut child = spawn_task(&project, "Write a.txt and b.txt");
    wait(&project);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    tamper(&project);

    // Nothing is torn: the state and the plan parse.
    let latest = project.read(".opencode/missions/latest");
    let state: Value = serde_json::from_str(
        &project.read(&format!(".opencode/missions/{}/state.json", latest.trim())),
    )
    .unwrap();
    assert_eq!(state["status"], "running");
    let before = project.read(".opencode/todo.md");

    let (output, stdout, stderr) = run(project.scripted().args(["resume"]));
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let events = events(&stdout);
    assert_eq!(finished(&events)["outcome"], "complete");
    assert_eq!(of_type(&events, "mission_started")[0]["resumed"], true);
    assert_eq!(project.read("a.txt"), "a");
    assert_eq!(project.read("b.txt"), "b");
    let after = project.read(".opencode/todo.md");
    // Completed items stayed completed.
    for line in before.lines().filter(|l| l.starts_with("- [x]")) {
        assert!(after.contains(line), "{line} was lost:\n{after}");
    }
    assert_eq!(after.matches("- [x]").count(), 2, "{after}");
}

#[test]
fn resume_after_sigkill_during_the_first_commander_turn() {
    kill_and_resume(|project| wait_for(project, "model_request", Duration::from_secs(20)));
}

#[test]
fn resume_after_sigkill_while_workers_run() {
    kill_and_resume(|project| {
        wait_for_count(
            project,
            "\"type\":\"task_started\"",
            2,
            Duration::from_secs(20),
        )
    });
}

#[test]
fn resume_after_sigkill_before_a_task_wrote_its_first_message() {
    kill_tamper_and_resume(
        |project| {
            wait_for_count(
                project,
                "\"type\":\"task_started\"",
                2,
                Duration::from_secs(20),
            )
        },
        |project| {
            // The kill landed after a Worker's transcript was created but
            // before its task prompt was written: only the header is left.
            let sessions = project.file(".opencode/sessions");
            let worker = std::fs::read_dir(sessions)
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("worker-")
                })
                .expect("a Worker transcript");
            let text = std::fs::read_to_string(&worker).unwrap();
            let header = text.lines().next().unwrap();
            std::fs::write(&worker, format!("{header}\n")).unwrap();
        },
    );
}

#[test]
fn resume_after_sigkill_between_two_reviewer_updates() {
    kill_and_resume(|project| {
        let started = Instant::now();
        while !std::fs::read_to_string(project.file(".opencode/todo.md"))
            .is_ok_and(|plan| plan.contains("- [x] T1"))
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "T1 never completed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    });
}

#[test]
fn orch_cancel_from_another_process_stops_the_mission() {
    let project = Project::trusted();
    verify(&project, &[]);
    let script = json!({"agents": {
        "Commander": [{"tool_calls": [call("delegate_task", json!({"agent": "Worker", "description": "sleep", "prompt": "sleep", "background": false}))]}],
        "Worker": [{"tool_calls": [call("bash", json!({"command": "echo started; sleep 30"}))]}]
    }});
    project.write("run.json", &script.to_string());
    let mut child = spawn_task(&project, "Sleep");
    wait_for(&project, "tool_call_begin", Duration::from_secs(20));
    let (output, stdout, _) = run(project.orch().arg("cancel"));
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("cancelled"), "{stdout}");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let (_, status_text, _) = run(project.orch().arg("status"));
    assert!(status_text.contains(": cancelled"), "{status_text}");
    assert!(
        status_text.contains("reason: cancelled by `orch cancel`"),
        "{status_text}"
    );
    // A second cancel finds nothing running.
    let (_, stdout, _) = run(project.orch().arg("cancel"));
    assert!(stdout.contains("is not running"), "{stdout}");
}

#[test]
fn ctrl_c_cancels_cleanly_with_exit_130() {
    let project = Project::trusted();
    verify(&project, &[]);
    let script = json!({"agents": {"Commander": [{"latency_ms": 20000, "text": "late"}]}});
    project.write("run.json", &script.to_string());
    let mut child = spawn_task(&project, "Wait");
    wait_for(&project, "model_request", Duration::from_secs(20));
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let latest = project.read(".opencode/missions/latest");
    let state: Value = serde_json::from_str(
        &project.read(&format!(".opencode/missions/{}/state.json", latest.trim())),
    )
    .unwrap();
    assert_eq!(state["status"], "cancelled");
}

#[test]
fn custom_agents_load_with_their_tool_limits_and_bad_entries_are_named() {
    let project = Project::trusted();
    verify(&project, &[]);
    project.write(
        ".opencode/agents.json",
        &json!({
            "Auditor": {"id": "Auditor", "description": "reads, never writes", "systemPrompt": "You audit code.", "canWrite": false, "canBash": false},
            "Broken": {"id": "Broken", "description": "x", "systemPrompt": "x", "canWrite": "no", "canBash": true}
        })
        .to_string(),
    );
    let (output, stdout, stderr) = run(project.orch().args(["agents", "--json"]));
    assert!(output.status.success());
    let agents: Value = serde_json::from_str(&stdout).unwrap();
    let names: Vec<&str> = agents
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Commander", "Planner", "Worker", "Reviewer", "Auditor"]
    );
    assert!(
        stderr.contains(".opencode/agents.json: agent \"Broken\": key \"canWrite\""),
        "{stderr}"
    );

    let script = json!({"agents": {
        "Commander": [
            {"when": "Mission goal", "tool_calls": [call("delegate_task", json!({"agent": "auditor", "description": "audit", "prompt": "Audit and note findings", "background": false}))]},
            {"when": "(Auditor", "text": "Audited."},
            {"when": "not complete", "text": "Stopping here."}
        ],
        "Auditor": [
            {"tool_calls": [call("write", json!({"path": "notes.txt", "content": "x"}))]},
            {"when": "unknown tool", "text": "I cannot write; findings: none."}
        ]
    }});
    let (code, events, _) = task(&project, &script, &["--max-iterations", "1"]);
    assert_eq!(code, Some(1));
    assert!(!project.file("notes.txt").exists());
    let denied = of_type(&events, "tool_call_end")
        .into_iter()
        .find(|e| e["tool"] == "write")
        .expect("the Auditor tried to write");
    assert_eq!(denied["ok"], false);
    // The custom agent ran as itself, with its own prompt.
    let started = of_type(&events, "session_started");
    assert!(started.iter().any(|e| e["agent"] == "Auditor"));
}

/// The rule "only the reviewer marks items completed" follows the role an
/// agent was given, not its name: a custom agent with the reviewer's role
/// marks an item completed; one without it, whatever its name says, is told
/// no and the plan stays as it was.
#[test]
fn a_custom_agent_with_the_reviewer_role_marks_items_done_and_one_without_it_cannot() {
    let project = Project::trusted();
    verify(&project, &[]);
    project.write(
        ".opencode/agents.json",
        &json!({
            "QA": {"id": "QA", "description": "verifies work", "systemPrompt": "You verify.", "canWrite": false, "canBash": false, "role": "reviewer", "tools": ["read", "read_todo", "update_todo"]},
            "ReviewerBot": {"id": "ReviewerBot", "description": "named like one", "systemPrompt": "You verify.", "canWrite": false, "canBash": false, "tools": ["read", "read_todo", "update_todo"]}
        })
        .to_string(),
    );
    let plan = "# Plan\n\n- [ ] T1: greeting.txt says hello\n";
    let mark = json!({"agents": {
        "QA": [
            {"tool_calls": [call("update_todo", json!({"id": "T1", "status": "completed"}))]},
            {"text": "Verified T1."}
        ],
        "ReviewerBot": [
            {"tool_calls": [call("update_todo", json!({"id": "T1", "status": "completed"}))]},
            {"text": "Could not mark it."}
        ]
    }});
    project.write("run.json", &mark.to_string());
    let attempt = |agent: &str| {
        project.write(".opencode/todo.md", plan);
        let mut command = project.orch();
        command
            .args(["--provider", "scripted", "--script", "run.json"])
            .args(["run", "--agent", agent, "Verify T1"]);
        let (output, stdout, stderr) = run(&mut command);
        assert!(output.status.success(), "{stdout}\n{stderr}");
        let results = project.tool_results();
        let dir = project.file(".opencode/sessions");
        std::fs::remove_dir_all(dir).unwrap();
        (project.read(".opencode/todo.md"), results)
    };

    let (after, results) = attempt("ReviewerBot");
    assert!(
        after.contains("- [ ] T1: greeting.txt says hello"),
        "{after}"
    );
    assert!(
        results[0].contains("only the Reviewer marks items completed"),
        "{results:?}"
    );

    let (after, results) = attempt("QA");
    assert!(
        after.contains("- [x] T1: greeting.txt says hello"),
        "{after}\n{results:?}"
    );
}

#[test]
fn plan_writes_the_todo_and_status_reports_the_mission() {
    let project = Project::trusted();
    project.write(
        "run.json",
        &json!({"agents": {"Planner": [
            {"tool_calls": [
                call("add_todo", json!({"id": "T1", "text": "first", "meta": {"file": "src/a.rs", "size": "S"}})),
                call("add_todo", json!({"id": "T2", "text": "second", "meta": {"depends": "T1"}}))]},
            {"text": "Plan written."}]}})
        .to_string(),
    );
    let (output, _, stderr) = run(project.orch().args([
        "--provider",
        "scripted",
        "--script",
        "run.json",
        "plan",
        "Two steps",
    ]));
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let plan = project.read(".opencode/todo.md");
    assert_eq!(
        plan,
        "# Mission: Two steps\n- [ ] T1: first | file:src/a.rs | size:S\n- [ ] T2: second | depends:T1\n"
    );

    let (_, stdout, _) = run(project.orch().arg("status"));
    assert!(stdout.contains("no mission has run"), "{stdout}");
    verify(&project, &[]);
    let (code, _, _) = task(&project, &idle_commander(1), &["--max-iterations", "1"]);
    assert_eq!(code, Some(1));
    let (_, stdout, _) = run(project.orch().arg("status"));
    assert!(stdout.contains(": stopped"), "{stdout}");
    assert!(stdout.contains("iteration 1 of 1"), "{stdout}");
    assert!(stdout.contains("sessions:\n  commander-"), "{stdout}");
    let (_, stdout, _) = run(project.orch().args(["status", "--json"]));
    let state: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(state["status"], "stopped");
    assert_eq!(state["last_gate"]["passed"], false);
    // The plan `orch plan` wrote is the plan `orch task` worked on.
    assert_eq!(
        state["last_gate"]["open_items"],
        json!(["T1 (pending): first", "T2 (pending): second"])
    );
}

#[test]
fn init_writes_a_commented_config_that_loads() {
    let project = Project::trusted();
    let (output, stdout, _) = run(project.orch().arg("init"));
    assert!(output.status.success(), "{stdout}");
    let config = project.read(".opencode/orch.json");
    assert!(config.starts_with("// orch configuration"));
    assert!(project.file(".opencode/plugins").is_dir());
    // The commented file is valid configuration for the next command.
    project.write("run.json", r#"{"agents":{"Worker":[{"text":"ok"}]}}"#);
    let (output, _, stderr) = run(project.orch().args([
        "--provider",
        "scripted",
        "--script",
        "run.json",
        "run",
        "hi",
    ]));
    assert!(output.status.success(), "{stderr}");
    let (_, stdout, _) = run(project.orch().arg("init"));
    assert!(stdout.contains("left as it is"), "{stdout}");
}

#[test]
fn admission_queues_tasks_before_any_session_exists() {
    let project = Project::trusted();
    let both_queued = "for i in $(seq 1 1200); do [ \"$(cat .opencode/missions/*/events.jsonl 2>/dev/null | grep -c task_queued)\" -ge 2 ] && echo both queued && break; sleep 0.05; done";
    project.write(
        ".opencode/orch.json",
        r#"{"verify": [], "concurrency": {"global": 8, "per_agent": 4, "agents": {"worker": 1}}}"#,
    );
    let script = json!({"agents": {
        "Commander": [
            {"when": "Mission goal", "tool_calls": [
                call("delegate_task", json!({"agent": "Worker", "description": "first", "prompt": "Job one", "background": true})),
                call("delegate_task", json!({"agent": "Worker", "description": "second", "prompt": "Job two", "background": true}))]},
            {"when": "started task_2", "text": "Waiting."},
            {"when": "still running", "text": "Waiting."},
            {"when": "Background task", "text": "Both done."},
            {"when": "not complete", "text": "Stopping."}
        ],
        // Whichever task runs first ends only once both are queued in the
        // journal: the order below follows from causes, not from timing.
        "Worker": [
            {"when": "Job", "tool_calls": [call("bash", json!({"command": both_queued}))]},
            {"when": "Job", "tool_calls": [call("bash", json!({"command": both_queued}))]},
            {"when": "both queued", "text": "Done."},
            {"when": "both queued", "text": "Done."}
        ]
    }});
    let (code, events, _) = task(&project, &script, &["--max-iterations", "1"]);
    assert_eq!(code, Some(1));
    let order: Vec<String> = events
        .iter()
        .filter(|e| {
            [
                "task_queued",
                "task_started",
                "task_finished",
                "session_started",
            ]
            .contains(&e["type"].as_str().unwrap())
                && (e["agent"] == "Worker")
        })
        .map(|e| {
            format!(
                "{} {}",
                e["type"].as_str().unwrap(),
                e["task"].as_str().unwrap_or("-")
            )
        })
        .collect();
    // With one Worker slot, one task waits as a record — queued while the
    // other runs, started only after it finished, and no session is created
    // for it: it gets the other one's from the pool. The two calls of one
    // turn run side by side, so either may take the slot first.
    let at = |entry: &str| {
        order
            .iter()
            .position(|e| e == entry)
            .unwrap_or_else(|| panic!("no {entry} in {order:?}"))
    };
    let (first, waiting) = if at("task_started task_1") < at("task_started task_2") {
        ("task_1", "task_2")
    } else {
        ("task_2", "task_1")
    };
    assert!(
        at(&format!("task_queued {waiting}")) < at(&format!("task_finished {first}")),
        "{order:?}"
    );
    assert!(
        at(&format!("task_finished {first}")) < at(&format!("task_started {waiting}")),
        "{order:?}"
    );
    assert_eq!(
        order
            .iter()
            .filter(|e| e.starts_with("session_started"))
            .count(),
        1,
        "{order:?}"
    );
    // Each Worker saw both tasks queued before it ended.
    let ended = of_type(&events, "task_finished");
    assert_eq!(ended.len(), 2);
    for end in ended {
        assert_eq!(end["status"], "completed", "{end}");
        assert_eq!(end["result"], "Done.", "{end}");
    }
    // The second task reused the first one's session from the pool.
    let started = of_type(&events, "task_started");
    assert_eq!(started[1]["reused"], true);
    assert_eq!(started[1]["pool"]["reuse_hits"], 1);
}

#[test]
fn background_jobs_die_with_the_mission() {
    let project = Project::trusted();
    verify(&project, &[]);
    let script = json!({"agents": {
        "Commander": [
            {"when": "Mission goal", "tool_calls": [call("delegate_task", json!({"agent": "Worker", "description": "server", "prompt": "Start the server", "background": false}))]},
            {"when": "server up", "text": "Stopping here."}
        ],
        "Worker": [
            {"tool_calls": [call("run_background", json!({"command": "sleep 300 & echo $! > bg.pid; sleep 300", "label": "server"}))]},
            // Give the job's shell time to write its pid before the mission ends.
            {"when": "started bg_1", "latency_ms": 500, "text": "server up"}
        ]
    }});
    let (code, events, _) = task(&project, &script, &["--max-iterations", "1"]);
    assert_eq!(code, Some(1));
    let started = Instant::now();
    while !project.file("bg.pid").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the job never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid: i32 = project.read("bg.pid").trim().parse().unwrap();
    let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.split(' ').nth(2) != Some("Z"));
    assert!(
        !alive,
        "the background job's child {pid} outlived the mission"
    );
    let finished = of_type(&events, "background_finished");
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0]["status"], "killed");
    let (_, status, _) = run(project.orch().arg("status"));
    assert!(
        status.contains("background jobs:\n  bg_1  killed  server"),
        "{status}"
    );
}

#[test]
fn a_dollar_budget_needs_a_price_for_every_model_or_the_mission_does_not_start() {
    let project = Project::trusted();
    let (output, _, stderr) = run(project
        .orch()
        .env("OPENAI_BASE_URL", "https://models.example.invalid/v1")
        .args([
            "--model",
            "mystery-coder-7b",
            "--budget-usd",
            "2",
            "task",
            "x",
        ]));
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            r#""mystery-coder-7b" has none: set pricing."mystery-coder-7b" in .opencode/orch.json"#
        ),
        "{stderr}"
    );
    // It says how old the built-in prices are.
    assert!(
        stderr.contains(&format!("as of {}", orch::models::PRICES_AS_OF)),
        "{stderr}"
    );
    // An open-weight model that only others host has no built-in price.
    let (output, _, stderr) = run(project
        .orch()
        .env(
            "OPENAI_BASE_URL",
            "https://openrouter.example.invalid/api/v1",
        )
        .args([
            "--model",
            "qwen/qwen3-32b",
            "--budget-usd",
            "2",
            "task",
            "x",
        ]));
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(r#"set pricing."qwen/qwen3-32b" in .opencode/orch.json"#),
        "{stderr}"
    );
    // Nothing started: no mission was recorded.
    assert!(!project.file(".opencode/missions").exists());
    // A model with a known price needs nothing more (the request then fails
    // for lack of a reachable server, after the mission started: exit 1).
    project.write(
        ".opencode/orch.json",
        &json!({"retry": {"max_attempts": 1, "turn_retries": 0}}).to_string(),
    );
    let (output, _, stderr) = run(project
        .orch()
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .args([
            "--model",
            "gpt-4.1-mini",
            "--budget-usd",
            "2",
            "--max-iterations",
            "1",
            "task",
            "x",
        ]));
    assert!(!stderr.contains("pricing"), "{stderr}");
    assert_eq!(output.status.code(), Some(1), "{stderr}");
}

#[test]
fn a_failure_after_the_mission_started_exits_1() {
    let project = Project::new();
    // The mission's folder cannot be created: `missions` is a file.
    project.write(".opencode/missions", "not a folder");
    project.write("run.json", &idle_commander(0).to_string());
    let (output, _, stderr) = run(project.orch().args([
        "--provider",
        "scripted",
        "--script",
        "run.json",
        "task",
        "x",
    ]));
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error: mission m-"), "{stderr}");
    assert!(stderr.contains("stopped: creating"), "{stderr}");
}

#[test]
fn an_unreadable_sync_issues_file_fails_the_gate_naming_it() {
    let project = Project::trusted();
    verify(&project, &["true"]);
    std::fs::create_dir_all(project.file(".opencode")).unwrap();
    std::fs::write(
        project.file(".opencode/sync-issues.md"),
        b"# Sync\n- [ ] \xff\xfe broken\n",
    )
    .unwrap();
    let script = json!({"agents": {
        "Commander": [
            {"when": "Mission goal", "tool_calls": [
                call("add_todo", json!({"id": "T1", "text": "nothing to do"})),
                call("delegate_task", json!({"agent": "Reviewer", "description": "T1", "prompt": "Approve T1", "background": false}))]},
            {"when": "Approved", "text": "Done."},
            {"when": "not complete", "text": "Still done."}
        ],
        "Reviewer": [
            {"tool_calls": [call("update_todo", json!({"id": "T1", "status": "completed"}))]},
            {"text": "Approved T1."}
        ]
    }});
    let (code, events, stderr) = task(&project, &script, &["--max-iterations", "2"]);
    assert_eq!(code, Some(1), "{stderr}");
    let gate = of_type(&events, "gate_checked")[0];
    assert_eq!(gate["passed"], false);
    let note = gate["note"].as_str().unwrap_or_default();
    assert!(note.contains("sync-issues.md is not UTF-8 text"), "{gate}");
    // The plan was done, but the gate never guessed: no verification ran.
    assert_eq!(gate["verify"], json!([]));
}

#[test]
fn status_shows_the_budgets_beside_what_was_spent() {
    let project = Project::trusted();
    verify(&project, &[]);
    let (code, events, _) = task(
        &project,
        &idle_commander(1),
        &[
            "--max-iterations",
            "1",
            "--budget-tokens",
            "100000",
            "--budget-usd",
            "2",
        ],
    );
    assert_eq!(code, Some(1));
    let started = of_type(&events, "mission_started")[0];
    assert_eq!(started["budget_tokens"], 100000);
    assert_eq!(started["budget_usd"], 2.0);
    let (output, stdout, _) = run(project.orch().arg("status"));
    assert!(output.status.success());
    assert!(stdout.contains("token budget: "), "{stdout}");
    assert!(stdout.contains(" of 100000 used"), "{stdout}");
    // The scripted provider is free: the spend is known, and zero.
    assert!(
        stdout.contains("dollar budget: $0.0000 of $2.00 spent"),
        "{stdout}"
    );
}

#[test]
fn status_and_metrics_show_the_cache_share_and_what_the_cache_cost() {
    let project = Project::trusted();
    project.write(
        ".opencode/orch.json",
        &json!({"verify": [], "pricing": {"scripted": {
            "input": 2.0, "output": 10.0, "cached_input": 0.2, "cache_write": 2.5
        }}})
        .to_string(),
    );
    // Every turn reports its tokens: the Commander writes its prompt to the
    // cache, then reads from it; so does the Reviewer.
    let usage = |input: u64, cached_input: u64, cache_write: u64, output: u64| json!({"input": input, "cached_input": cached_input, "cache_write": cache_write, "output": output});
    let script = json!({"agents": {
        "Commander": [
            {"when": "Mission goal", "usage": usage(2000, 0, 1000, 100), "tool_calls": [
                call("add_todo", json!({"id": "T1", "text": "nothing to do"})),
                call("delegate_task", json!({"agent": "Reviewer", "description": "T1", "prompt": "Approve T1", "background": false}))]},
            {"when": "Approved", "usage": usage(2400, 1500, 0, 20), "text": "Done."}
        ],
        "Reviewer": [
            {"usage": usage(1000, 0, 0, 50), "tool_calls": [call("update_todo", json!({"id": "T1", "status": "completed"}))]},
            {"usage": usage(1200, 1000, 0, 10), "text": "Approved T1."}
        ]
    }});
    let (code, events, stderr) = task(&project, &script, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    // Commander: 1 900 plain at $2, 1 500 cached at $0.20, 1 000 written
    // at $2.50, 120 out at $10 per million: $0.0078. Reviewer: 1 200 plain,
    // 1 000 cached, 60 out: $0.0032. At the input price the cache would
    // have cost $0.0150 in all.
    let cost = finished(&events)["cost_usd"].as_f64().unwrap();
    assert!((cost - 0.011).abs() < 1e-9, "{cost}");

    let (output, stdout, _) = run(project.orch().arg("status"));
    assert!(output.status.success());
    for line in [
        "tokens: 6600 in (38% cached, 1000 written), 180 out; cost $0.0110\n",
        "  Commander: 4400 in (34% cached, 1000 written), 120 out; cost $0.0078\n",
        "  Reviewer: 2200 in (45% cached), 60 out; cost $0.0032\n",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from:\n{stdout}");
    }

    let (output, stdout, _) = run(project.orch().arg("metrics"));
    assert!(output.status.success());
    assert!(
        stdout.contains("tokens: 6600 in (38% cached, 1000 written), 180 out; cost $0.0110\n"),
        "{stdout}"
    );
    // The agent table's last columns: in, cached, out, cost.
    let row = |agent: &str| -> Vec<&str> {
        stdout
            .lines()
            .find(|line| line.starts_with(&format!("{agent} ")))
            .unwrap_or_else(|| panic!("no {agent} row in:\n{stdout}"))
            .split_whitespace()
            .collect()
    };
    assert!(
        row("agent").ends_with(&["in", "cached", "out", "cost"]),
        "{stdout}"
    );
    assert!(
        row("Commander").ends_with(&["4400", "34%", "120", "$0.0078"]),
        "{stdout}"
    );
    assert!(
        row("Reviewer").ends_with(&["2200", "45%", "60", "$0.0032"]),
        "{stdout}"
    );

    let (_, stdout, _) = run(project.orch().args(["metrics", "--json"]));
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        report["usage"],
        json!({"input": 6600, "output": 180, "cached_input": 2500, "cache_write": 1000})
    );
}

#[test]
fn a_json_reader_that_stalls_never_holds_the_mission_back() {
    let project = Project::trusted();
    project.write(
        ".opencode/orch.json",
        &json!({"verify": [], "session": {"max_turns": 500}}).to_string(),
    );
    let mut worker = Vec::new();
    for i in 0..400 {
        project.write(&format!("notes/{i}.txt"), &format!("note {i}\n"));
        worker.push(json!({"text": format!("Reading note {i}."), "tool_calls": [call("read", json!({"path": format!("notes/{i}.txt")}))]}));
    }
    worker.push(json!({"text": "Read them all."}));
    let script = json!({"agents": {
        "Commander": [
            {"when": "Mission goal", "tool_calls": [call("delegate_task", json!({"agent": "Worker", "description": "read", "prompt": "Read every note", "background": false}))]},
            {"text": "Done."}
        ],
        "Worker": worker
    }});
    project.write("run.json", &script.to_string());
    let mut orch = project
        .orch()
        .args([
            "--json",
            "--provider",
            "scripted",
            "--script",
            "run.json",
            "--max-iterations",
            "1",
            "task",
            "read",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Nobody reads stdout: the pipe fills after 64 KiB, and the mission
    // must still run to its end.
    wait_for(&project, "mission_finished", Duration::from_secs(60));
    let journal = journal(&project).unwrap();
    assert!(journal.len() > 200 * 1024, "{} bytes", journal.len());
    let mut stdout = String::new();
    std::io::Read::read_to_string(orch.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    assert_eq!(orch.wait().unwrap().code(), Some(1));
    // Late, but whole: every journal line, in order.
    let printed: Vec<&str> = stdout.lines().collect();
    let recorded: Vec<&str> = journal.lines().collect();
    assert_eq!(printed.len(), recorded.len());
    assert_eq!(printed.last(), recorded.last());
    assert!(
        printed
            .last()
            .unwrap()
            .contains("\"type\":\"mission_finished\"")
    );
}

/// With `--json`, stdout shows only the journal: a journal or state file
/// that cannot be written is said on stderr, once each, naming the file.
/// Files stop growing past a size limit (RLIMIT_FSIZE, with SIGXFSZ
/// ignored: a write past it fails with EFBIG) that the journal and the
/// state file of this mission pass, but the plan and the transcript do not.
#[test]
fn under_json_a_journal_or_state_file_that_cannot_be_written_is_said_once_on_stderr() {
    use std::os::unix::process::CommandExt as _;
    let project = Project::trusted();
    verify(&project, &[]);
    project.write(
        "run.json",
        &json!({"agents": {"Commander": [{"text": "Nothing to do."}, {"text": "Still nothing."}]}})
            .to_string(),
    );
    let mut command = project.orch();
    command.args([
        "--json",
        "--provider",
        "scripted",
        "--script",
        "run.json",
        "--max-iterations",
        "1",
        "task",
        "Look",
    ]);
    // SAFETY: setrlimit and signal are async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 1200,
                rlim_max: 1200,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let (output, stdout, stderr) = run(&mut command);
    assert!(output.status.code().is_some(), "{stderr}");
    let said = |file: &str| {
        stderr
            .lines()
            .filter(|line| line.starts_with("warning: ") && line.contains(file))
            .count()
    };
    assert_eq!(
        said("events.jsonl: "),
        1,
        "stderr:\n{stderr}\nstdout:\n{stdout}"
    );
    assert_eq!(
        said("state.json: "),
        1,
        "stderr:\n{stderr}\nstdout:\n{stdout}"
    );
}

/// A task that finished while the Commander was busy (its result recorded,
/// not yet delivered: results wait for the Commander to be idle) when orch
/// was SIGKILLed: after `orch resume` the Commander's first request holds
/// the result with the resume note saying it is not run again, and the
/// task's side effect happened once.
#[test]
fn a_result_that_finished_before_the_kill_reaches_the_commander_after_resume() {
    let project = Project::trusted();
    verify(&project, &[]);
    let script = json!({"agents": {
        "Commander": [
            {"when": "Mission goal", "tool_calls": [call("delegate_task", json!({"agent": "Worker", "description": "T1", "prompt": "Task T1: append to effects.txt", "background": true}))]},
            // Only a request holding the Worker's result and the note
            // saying it is not run again gets this reply.
            {"when": "MARKER-T1-RESULT", "text": "Got the result of T1."},
            // Busy while the Worker finishes; the kill lands in this turn.
            {"when": "started task_1", "latency_ms": 60000, "text": "Still thinking."}
        ],
        "Worker": [
            {"when": "Task T1", "tool_calls": [call("bash", json!({"command": "echo T1 >> effects.txt"}))]},
            {"when": "exit code", "text": "MARKER-T1-RESULT: appended once."}
        ]
    }});
    project.write("run.json", &script.to_string());
    let mut child = spawn_task(&project, "Append T1");
    wait_for(&project, "task_finished", Duration::from_secs(30));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(project.read("effects.txt"), "T1\n");
    let before = journal(&project).unwrap();
    assert!(
        !before.contains("Got the result of T1"),
        "the result reached the Commander before the kill:\n{before}"
    );

    let (_, stdout, stderr) = run(project.scripted().args(["--max-iterations", "1", "resume"]));
    let events = events(&stdout);
    let resumed = events
        .iter()
        .position(|e| e["type"] == "mission_started" && e["resumed"] == true)
        .unwrap_or_else(|| panic!("no resumed mission:\n{stdout}\n{stderr}"));
    let commander = events[resumed]["commander_session"].clone();
    // What the Commander said after the resume, turn by turn: its first
    // request already held the result, with the resume note.
    let mut said: Vec<String> = Vec::new();
    for event in &events[resumed..] {
        if event["session"] != commander {
            continue;
        }
        if event["type"] == "model_request" {
            said.push(String::new());
        } else if event["type"] == "text_delta"
            && let Some(last) = said.last_mut()
        {
            last.push_str(event["text"].as_str().unwrap_or_default());
        }
    }
    assert_eq!(said, ["Got the result of T1."], "{stdout}\n{stderr}");
    // On record as delivered only once the message carrying it was in the
    // Commander's transcript (its request went out with it): killed before
    // that, the next resume would hand it over again, never lose it.
    let after = &events[resumed..];
    let asked = after
        .iter()
        .position(|e| e["type"] == "model_request" && e["session"] == commander)
        .expect("the resumed Commander asked its model");
    let reported = after
        .iter()
        .position(|e| e["type"] == "task_reported" && e["task"] == "task_1")
        .unwrap_or_else(|| panic!("task_1 was never reported:\n{stdout}"));
    assert!(asked < reported, "{stdout}");
    // The resume note and the result are one message.
    let transcript = std::fs::read_to_string(project.file(&format!(
        ".opencode/sessions/{}.jsonl",
        commander.as_str().unwrap()
    )))
    .unwrap();
    assert!(
        transcript
            .lines()
            .any(|line| line.contains("has been resumed")
                && line.contains("they are not run again")
                && line.contains("MARKER-T1-RESULT")),
        "{transcript}"
    );
    // Not run again.
    assert_eq!(project.read("effects.txt"), "T1\n");
    assert!(
        !events[resumed..]
            .iter()
            .any(|e| e["type"] == "task_started" && e["task"] == "task_1"),
        "task_1 ran again:\n{stdout}"
    );
}

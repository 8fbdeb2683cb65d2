//! A mission's events folded into a compact, deterministic log for snapshot
//! tests: the mission's own timeline (the Commander's tool calls, gate
//! checks, the end) in order, then one block per task, sorted by task id,
//! with that task's tool calls in order. Times, ids of sessions and token
//! counts are left out; parallel tasks are separate blocks, so the log does
//! not depend on how their events interleave.

use std::collections::BTreeMap;

use serde_json::Value;

/// The log of `events` (one mission run's `--json` output).
pub fn compact_log(events: &[Value]) -> String {
    let mut timeline = Vec::new();
    let mut commander = String::new();
    // session → task id; task id → (agent, description, lines)
    let mut session_task: BTreeMap<String, String> = BTreeMap::new();
    let mut tasks: Tasks = BTreeMap::new();
    let mut calls: BTreeMap<(String, String), usize> = BTreeMap::new();
    let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
    for event in events {
        let session = text(&event["session"]);
        match event["type"].as_str().unwrap_or_default() {
            "mission_started" => {
                commander = text(&event["commander_session"]);
                let resumed = if event["resumed"] == true {
                    " (resumed)"
                } else {
                    ""
                };
                timeline.push(format!("mission started{resumed}"));
            }
            "task_queued" => {
                tasks.entry(text(&event["task"])).or_insert_with(|| {
                    (
                        text(&event["agent"]),
                        text(&event["description"]),
                        Vec::new(),
                    )
                });
            }
            "task_started" => {
                let task = text(&event["task"]);
                session_task.insert(session.clone(), task.clone());
                let pooled = if event["reused"] == true {
                    " (pooled session)"
                } else {
                    ""
                };
                if let Some(entry) = tasks.get_mut(&task) {
                    entry.2.push(format!("started{pooled}"));
                }
            }
            "task_finished" => {
                if let Some(entry) = tasks.get_mut(&text(&event["task"])) {
                    let error = event["error"]
                        .as_str()
                        .map_or(String::new(), |e| format!(": {e}"));
                    entry
                        .2
                        .push(format!("finished {}{error}", text(&event["status"])));
                }
            }
            "tool_call_begin" => {
                // A call's line takes its place when it begins (calls of one
                // batch begin in order but may end in any order).
                let line = format!(
                    "{} {}",
                    text(&event["tool"]),
                    summary(&text(&event["tool"]), &event["arguments"])
                )
                .trim_end()
                .to_string();
                let lines = lines_of(
                    &session,
                    &commander,
                    &mut timeline,
                    &session_task,
                    &mut tasks,
                );
                if let Some(lines) = lines {
                    let prefix = if session == commander {
                        "Commander: "
                    } else {
                        ""
                    };
                    lines.push(format!("{prefix}{line}"));
                    calls.insert((session.clone(), text(&event["call_id"])), lines.len() - 1);
                }
            }
            "tool_call_end" => {
                let outcome = if event["ok"] == true {
                    "ok".to_string()
                } else {
                    format!("error: {}", first_line(&text(&event["preview"])))
                };
                let Some(at) = calls.remove(&(session.clone(), text(&event["call_id"]))) else {
                    continue;
                };
                let lines = lines_of(
                    &session,
                    &commander,
                    &mut timeline,
                    &session_task,
                    &mut tasks,
                );
                if let Some(line) = lines.and_then(|lines| lines.get_mut(at)) {
                    line.push_str(&format!(" → {outcome}"));
                }
            }
            "gate_checked" => {
                let iteration = &event["iteration"];
                if event["passed"] == true {
                    timeline.push(format!("gate {iteration}: passed"));
                    continue;
                }
                let mut why: Vec<String> = Vec::new();
                if let Some(note) = event["note"].as_str() {
                    why.push(note.to_string());
                }
                for item in event["open_items"].as_array().into_iter().flatten() {
                    why.push(format!("open {}", text(item)));
                }
                for issue in event["sync_issues"].as_array().into_iter().flatten() {
                    why.push(format!("sync issue {}", text(issue)));
                }
                for check in event["verify"].as_array().into_iter().flatten() {
                    if check["passed"] != true {
                        why.push(format!("`{}` failed", text(&check["command"])));
                    }
                }
                timeline.push(format!("gate {iteration}: failed — {}", why.join("; ")));
            }
            // Whether this machine can build the OS sandbox is not the
            // mission's behaviour: its fallback warning stays out of logs.
            "warning"
                if text(&event["message"]).starts_with("commands run without orch's sandbox") => {}
            "warning" => {
                let line = format!("warning: {}", first_line(&text(&event["message"])));
                match session_task
                    .get(&session)
                    .and_then(|task| tasks.get_mut(task))
                {
                    Some(entry) => entry.2.push(line),
                    None => timeline.push(line),
                }
            }
            "mission_finished" => timeline.push(format!(
                "mission {} after {} iterations: {}",
                text(&event["outcome"]),
                event["iterations"],
                text(&event["reason"])
            )),
            _ => {}
        }
    }
    let mut log = timeline.join("\n");
    for (task, (agent, description, lines)) in tasks {
        log.push_str(&format!("\n\n{task} {agent}: {description}"));
        for line in lines {
            log.push_str(&format!("\n  {line}"));
        }
    }
    log.push('\n');
    log
}

type Tasks = BTreeMap<String, (String, String, Vec<String>)>;

/// Where a session's lines go: the timeline for the Commander, its task's
/// block for a task's session.
fn lines_of<'a>(
    session: &str,
    commander: &str,
    timeline: &'a mut Vec<String>,
    session_task: &BTreeMap<String, String>,
    tasks: &'a mut Tasks,
) -> Option<&'a mut Vec<String>> {
    if session == commander {
        return Some(timeline);
    }
    let task = session_task.get(session)?;
    tasks.get_mut(task).map(|entry| &mut entry.2)
}

/// The argument worth showing for a call of `tool`.
fn summary(tool: &str, arguments: &Value) -> String {
    let field = |name: &str| arguments[name].as_str().unwrap_or_default().to_string();
    match tool {
        "delegate_task" => {
            let background = if arguments["background"] == true {
                " (background)"
            } else {
                ""
            };
            format!("{}: {}{background}", field("agent"), field("description"))
        }
        "update_todo" => format!("{} → {}", field("id"), field("status")),
        "add_todo" => format!("{} {}", field("id"), field("text")),
        "bash" | "run_background" => first_line(&field("command")),
        "read" | "write" | "edit" | "list" => field("path"),
        "get_task_result" | "cancel_task" => field("task_id"),
        _ => match arguments {
            Value::Object(fields) if fields.is_empty() => String::new(),
            Value::Null => String::new(),
            other => other.to_string(),
        },
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_string()
}

//! Mission benchmarks (run with `cargo bench --bench mission`), each on the
//! real `orch` binary (release build):
//!
//! - continuation delay: from the Commander going idle (its `session_finished`
//!   event) to the continuation reaching the model (its next `model_request`),
//!   over 60 failing gate checks; stdout lines are timestamped as they arrive;
//! - 100 parallel Workers, 10 turns each, against a loopback OpenAI-compatible
//!   server that answers every request after 200 ms: wall time from the first
//!   Worker starting to the last finishing, and peak RSS;
//! - the first Commander request for a trivial task (bytes), and whether the
//!   system prompt and tool list stay byte-identical across iterations;
//! - peak RSS of a scripted `orch task` with four sessions.
//!
//! Prints numbers; asserts nothing about time.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn orch() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_orch"));
    command.env("CI", "1");
    for var in [
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "ORCH_PROVIDER",
        "ORCH_MODEL",
        "OPENAI_BASE_URL",
    ] {
        command.env_remove(var);
    }
    command
}

fn main() {
    println!("orch mission benchmarks");
    // Peak RSS is the largest child so far: measure the small run first.
    peak_rss_of_task();
    continuation_delay();
    parallel_workers();
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn continuation_delay() {
    let dir = tempfile::tempdir().expect("temp dir");
    let iterations = 60;
    let mut replies = vec![json!({"when": "Mission goal", "text": "Waiting."})];
    for _ in 0..iterations {
        replies.push(json!({"when": "not complete", "text": "Still waiting."}));
    }
    std::fs::write(
        dir.path().join("run.json"),
        json!({"agents": {"Commander": replies}}).to_string(),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join(".opencode")).unwrap();
    std::fs::write(
        dir.path().join(".opencode/orch.json"),
        json!({"verify": [], "mission": {"max_iterations": iterations, "no_progress_iterations": 1000}}).to_string(),
    )
    .unwrap();
    let mut child = orch()
        .arg("-C")
        .arg(dir.path())
        .args(["--json", "--provider", "scripted", "--script"])
        .arg(dir.path().join("run.json"))
        .args(["task", "Nothing to do"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run orch");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut idle_at: Option<Instant> = None;
    let mut delays = Vec::new();
    for line in stdout.lines() {
        let now = Instant::now();
        let Ok(event) = serde_json::from_str::<Value>(&line.expect("line")) else {
            continue;
        };
        let commander = event["session"]
            .as_str()
            .is_some_and(|s| s.starts_with("commander-"));
        match event["type"].as_str() {
            Some("session_finished") if commander => idle_at = Some(now),
            Some("model_request") if commander => {
                if let Some(at) = idle_at.take() {
                    delays.push(now - at);
                }
            }
            _ => {}
        }
    }
    child.wait().expect("orch exits");
    delays.sort();
    println!(
        "continuation delay (Commander idle -> continuation sent, gate included): median {:?}, p95 {:?}, max {:?} ({} iterations)",
        percentile(&delays, 0.5),
        percentile(&delays, 0.95),
        delays.last().unwrap(),
        delays.len()
    );
}

/// What the loopback provider saw.
#[derive(Default)]
struct Seen {
    commander_requests: Vec<Value>,
}

const WORKERS: usize = 100;
const WORKER_TURNS: usize = 10;
const LATENCY: Duration = Duration::from_millis(200);

/// An OpenAI-compatible streaming reply.
fn sse(text: &str, tool_calls: &[(String, Value)]) -> String {
    let mut body = String::new();
    if !text.is_empty() {
        body.push_str(&format!(
            "data: {}\n\n",
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": null}]})
        ));
    }
    for (i, (name, args)) in tool_calls.iter().enumerate() {
        body.push_str(&format!(
            "data: {}\n\n",
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": i, "id": format!("call_{i}"), "type": "function", "function": {"name": name, "arguments": args.to_string()}}]}, "finish_reason": null}]})
        ));
    }
    let finish = if tool_calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    body.push_str(&format!(
        "data: {}\n\n",
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    ));
    body.push_str(&format!(
        "data: {}\n\ndata: [DONE]\n\n",
        json!({"choices": [], "usage": {"prompt_tokens": 1000, "completion_tokens": 20, "total_tokens": 1020}})
    ));
    body
}

fn reply_for(request: &Value, seen: &Mutex<Seen>) -> String {
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let system = messages
        .first()
        .and_then(|m| m["content"].as_str())
        .unwrap_or("");
    let last = messages.last().map(|m| m.to_string()).unwrap_or_default();
    if system.contains("You are the Commander") {
        let first = {
            let mut seen = seen.lock().unwrap();
            seen.commander_requests.push(request.clone());
            seen.commander_requests.len() == 1
        };
        if first {
            let calls: Vec<(String, Value)> = (0..WORKERS)
                .map(|i| {
                    ("delegate_task".to_string(), json!({"agent": "Worker", "description": format!("job {i}"), "prompt": format!("Job {i}: look around"), "background": true}))
                })
                .collect();
            return sse("Starting the Workers.", &calls);
        }
        if last.contains("still running") || last.contains("started task_") {
            return sse("Waiting.", &[]);
        }
        return sse("All Workers reported.", &[]);
    }
    let turns = messages.iter().filter(|m| m["role"] == "assistant").count();
    if turns + 1 < WORKER_TURNS {
        // A different call every turn, as a real agent's would be (the
        // repetition breaker stops identical calls).
        sse(
            "",
            &[(
                "grep".to_string(),
                json!({"pattern": format!("turn {turns}")}),
            )],
        )
    } else {
        sse("Looked around.", &[])
    }
}

async fn serve(listener: TcpListener, seen: Arc<Mutex<Seen>>) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            return;
        };
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut buffer = Vec::new();
            let mut chunk = [0u8; 64 * 1024];
            let body = loop {
                let Ok(n) = socket.read(&mut chunk).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                buffer.extend_from_slice(&chunk[..n]);
                let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buffer.len() >= end + 4 + length {
                    break buffer[end + 4..end + 4 + length].to_vec();
                }
            };
            let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let reply = reply_for(&request, &seen);
            tokio::time::sleep(LATENCY).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                reply.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}

fn parallel_workers() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Seen::default()));
    runtime.spawn(serve(listener, seen.clone()));

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".opencode")).unwrap();
    std::fs::write(dir.path().join("README.md"), "bench project\n").unwrap();
    std::fs::write(
        dir.path().join(".opencode/orch.json"),
        json!({
            "provider": "openai",
            "model": "bench",
            "openai": {"base_url": url},
            "verify": [],
            "mission": {"max_iterations": 3},
            "concurrency": {"global": WORKERS, "per_agent": WORKERS}
        })
        .to_string(),
    )
    .unwrap();
    let mut child = orch()
        .arg("-C")
        .arg(dir.path())
        .args(["--json", "task", "Run 100 Workers"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run orch");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first_start: Option<Instant> = None;
    let mut last_finish: Option<Instant> = None;
    let mut finished = 0;
    let mut requests = 0;
    let mut failures = Vec::new();
    let mut request_times: std::collections::HashMap<String, Vec<Instant>> = Default::default();
    let mut model_latencies = Vec::new();
    let mut tool_times = Vec::new();
    for line in stdout.lines() {
        let now = Instant::now();
        let Ok(event) = serde_json::from_str::<Value>(&line.unwrap()) else {
            continue;
        };
        let worker = event["agent"] == "Worker"
            || event["session"]
                .as_str()
                .is_some_and(|s| s.starts_with("worker-"));
        if !worker {
            continue;
        }
        match event["type"].as_str() {
            Some("task_started") => {
                first_start.get_or_insert(now);
            }
            Some("task_finished") => {
                if event["status"] == "completed" {
                    finished += 1;
                } else if failures.len() < 3 {
                    failures.push(event.to_string());
                }
                last_finish = Some(now);
            }
            Some("model_response") => {
                model_latencies.push(Duration::from_millis(
                    event["latency_ms"].as_u64().unwrap_or(0),
                ));
            }
            Some("tool_call_end") => {
                tool_times.push(Duration::from_millis(
                    event["duration_ms"].as_u64().unwrap_or(0),
                ));
            }
            Some("model_request") => {
                requests += 1;
                let session = event["session"].as_str().unwrap_or("").to_string();
                request_times.entry(session).or_default().push(now);
            }
            _ => {}
        }
    }
    child.wait().unwrap();
    let rss = children_max_rss_mib();
    let wall = last_finish.unwrap() - first_start.unwrap();
    println!(
        "{WORKERS} parallel Workers x {WORKER_TURNS} turns, 200 ms provider latency: wall {wall:?} (ideal {:?}), {finished} completed, {requests} Worker model requests, peak RSS {rss:.1} MiB",
        LATENCY * WORKER_TURNS as u32
    );
    for failure in failures {
        println!("  failed: {failure}");
    }
    let firsts: Vec<Instant> = request_times.values().map(|t| t[0]).collect();
    let spread = *firsts.iter().max().unwrap() - *firsts.iter().min().unwrap();
    let mut gaps: Vec<Duration> = request_times
        .values()
        .flat_map(|times| times.windows(2).map(|w| w[1] - w[0]))
        .collect();
    gaps.sort();
    println!(
        "  first requests spread over {spread:?}; gap between a Worker's turns: median {:?}, p95 {:?} (200 ms of it is the provider)",
        percentile(&gaps, 0.5),
        percentile(&gaps, 0.95)
    );
    model_latencies.sort();
    tool_times.sort();
    println!(
        "  model turn as the engine saw it: median {:?}, p95 {:?}; tool calls: median {:?}, p95 {:?}",
        percentile(&model_latencies, 0.5),
        percentile(&model_latencies, 0.95),
        percentile(&tool_times, 0.5),
        percentile(&tool_times, 0.95)
    );
    let seen = seen.lock().unwrap();
    let first = &seen.commander_requests[0];
    println!(
        "first Commander request: {} bytes (system prompt {} bytes, {} tools)",
        first.to_string().len(),
        first["messages"][0]["content"].as_str().unwrap_or("").len(),
        first["tools"].as_array().map_or(0, Vec::len)
    );
    let prefix = |r: &Value| (r["messages"][0].to_string(), r["tools"].to_string());
    let identical = seen
        .commander_requests
        .iter()
        .all(|r| prefix(r) == prefix(first));
    println!(
        "system prompt and tool list byte-identical across {} Commander requests: {}",
        seen.commander_requests.len(),
        if identical { "yes" } else { "NO" }
    );
}

fn children_max_rss_mib() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    usage.ru_maxrss as f64 / 1024.0
}

fn peak_rss_of_task() {
    let dir = tempfile::tempdir().unwrap();
    let call = |name: &str, args: Value| json!({"name": name, "arguments": args});
    let script = json!({"agents": {
        "Commander": [
            {"when": "Mission goal", "tool_calls": [
                call("delegate_task", json!({"agent": "Planner", "description": "plan", "prompt": "Plan it", "background": false}))]},
            {"when": "Planned", "tool_calls": [
                call("delegate_task", json!({"agent": "Worker", "description": "a", "prompt": "Job A", "background": true})),
                call("delegate_task", json!({"agent": "Worker", "description": "b", "prompt": "Job B", "background": true}))]},
            {"when": "started task_3", "text": "Waiting."},
            {"when": "still running", "text": "Waiting."},
            {"when": "Background task", "text": "Done."}
        ],
        "Planner": [
            {"tool_calls": [call("add_todo", json!({"id": "T1", "text": "a"})), call("add_todo", json!({"id": "T2", "text": "b"}))]},
            {"text": "Planned."}
        ],
        "Worker": [
            {"when": "Job A", "tool_calls": [call("write", json!({"path": "a.txt", "content": "a"})), call("bash", json!({"command": "cat a.txt"}))]},
            {"when": "Job B", "tool_calls": [call("write", json!({"path": "b.txt", "content": "b"})), call("grep", json!({"pattern": "b"}))]},
            {"when": "a.txt", "text": "A done."},
            {"when": "b.txt", "text": "B done."}
        ]
    }});
    std::fs::write(dir.path().join("run.json"), script.to_string()).unwrap();
    std::fs::create_dir_all(dir.path().join(".opencode")).unwrap();
    std::fs::write(
        dir.path().join(".opencode/orch.json"),
        r#"{"verify": [], "mission": {"max_iterations": 1}}"#,
    )
    .unwrap();
    let before = children_max_rss_mib();
    let status = orch()
        .arg("-C")
        .arg(dir.path())
        .args(["--provider", "scripted", "--script"])
        .arg(dir.path().join("run.json"))
        .args(["task", "Four sessions"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    let after = children_max_rss_mib();
    println!(
        "peak RSS of a scripted `orch task` (Commander, Planner, 2 Workers; exit {}): {:.1} MiB{}",
        status.code().unwrap_or(-1),
        after,
        if after <= before {
            " (at most: an earlier child used more)"
        } else {
            ""
        }
    );
}

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

/// `orch --json` in `dir` on the scripted provider with `dir/run.json`,
/// running `args`, stdout piped.
fn scripted(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut command = orch();
    command
        .arg("-C")
        .arg(dir)
        .args(["--json", "--provider", "scripted", "--script"])
        .arg(dir.join("run.json"))
        .args(args)
        .stdout(Stdio::piped());
    command
}

fn orch() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_orch"));
    // The benchmark's projects are its own: their settings apply.
    command.env("CI", "1").env("ORCH_TRUST_PROJECT", "1");
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
    let one = scripted_workers(1);
    let thousand = scripted_workers(THOUSAND);
    println!(
        "  each Worker session beyond the first: {:?} CPU, {:.0} KiB of peak RSS",
        (thousand.cpu.saturating_sub(one.cpu)) / (THOUSAND as u32 - 1),
        (thousand.peak_rss_mib - one.peak_rss_mib) * 1024.0 / (THOUSAND - 1) as f64
    );
    stalled_json_reader();
    resume_pickup();
}

/// What one child used, from `wait4`: CPU time and peak RSS.
struct Used {
    code: i32,
    cpu: Duration,
    peak_rss_mib: f64,
}

/// Wait for `child` and say what it used (std's `wait` does not tell).
fn wait_measured(child: std::process::Child) -> Used {
    let pid = child.id() as libc::pid_t;
    // The Child is not waited on again: wait4 reaps it here.
    std::mem::forget(child);
    let mut status = 0;
    // SAFETY: wait4 only writes into the status and the struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::wait4(pid, &mut status, 0, &mut usage);
        usage
    };
    let time =
        |t: libc::timeval| Duration::from_micros(t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64);
    Used {
        code: if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        },
        cpu: time(usage.ru_utime) + time(usage.ru_stime),
        peak_rss_mib: usage.ru_maxrss as f64 / 1024.0,
    }
}

const THOUSAND: usize = 1000;
const SCRIPTED_TURNS: usize = 10;
const SCRIPTED_LATENCY_MS: u64 = 200;

/// A Commander that starts `workers` background Workers at once, each
/// taking `turns` turns (a `read` each, then a last word), waiting for
/// their reports.
fn fan_out_script(workers: usize, turns: usize) -> Value {
    let delegations: Vec<Value> = (0..workers)
        .map(|i| json!({"name": "delegate_task", "arguments": {"agent": "Worker", "description": format!("job {i}"), "prompt": format!("Job {i}: look around"), "background": true}}))
        .collect();
    let mut commander = vec![
        json!({"when": "Mission goal", "text": "Starting the Workers.", "tool_calls": delegations}),
    ];
    commander
        .extend((0..workers + 10).map(|_| json!({"when": "ackground task", "text": "Waiting."})));
    commander.extend((0..10).map(|_| json!({"text": "Done."})));
    let mut worker = Vec::new();
    for step in 1..=turns {
        let when = if step == 1 {
            "Job ".to_string()
        } else {
            format!("step{:03}", step - 1)
        };
        for _ in 0..workers {
            worker.push(if step < turns {
                json!({"when": when, "tool_calls": [{"name": "read", "arguments": {"path": format!("step{step:03}")}}]})
            } else {
                json!({"when": when, "text": "Looked around."})
            });
        }
    }
    json!({"agents": {"Commander": commander, "Worker": worker}, "latency_ms": SCRIPTED_LATENCY_MS})
}

/// Sessions raised tenfold: `workers` Workers x 10 turns on the scripted
/// provider at 200 ms a turn. Wall time from the first Worker starting to
/// the last finishing (event timestamps), the process's CPU time and peak
/// RSS, and both per session.
fn scripted_workers(workers: usize) -> Used {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".opencode")).unwrap();
    std::fs::write(
        dir.path().join("run.json"),
        fan_out_script(workers, SCRIPTED_TURNS).to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join(".opencode/orch.json"),
        json!({"verify": [], "mission": {"max_iterations": 1}, "concurrency": {"global": workers, "per_agent": workers}}).to_string(),
    )
    .unwrap();
    let mut child = scripted(dir.path(), &["task", "Run the Workers"])
        .spawn()
        .expect("run orch");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (mut first, mut last, mut completed, mut events) = (u64::MAX, 0, 0, 0);
    for line in stdout.lines() {
        let Ok(event) = serde_json::from_str::<Value>(&line.unwrap()) else {
            continue;
        };
        events += 1;
        if event["agent"] != "Worker" {
            continue;
        }
        let at = event["ts_ms"].as_u64().unwrap_or(0);
        match event["type"].as_str() {
            Some("task_started") => first = first.min(at),
            Some("task_finished") => {
                last = last.max(at);
                if event["status"] == "completed" {
                    completed += 1;
                }
            }
            _ => {}
        }
    }
    let used = wait_measured(child);
    let wall = Duration::from_millis(last.saturating_sub(first));
    let floor = Duration::from_millis(SCRIPTED_LATENCY_MS * SCRIPTED_TURNS as u64);
    println!(
        "{workers} scripted Worker(s) x {SCRIPTED_TURNS} turns, {SCRIPTED_LATENCY_MS} ms a turn: wall {wall:?} ({:.2} x the {floor:?} floor), {completed} completed, {events} events, exit {}; CPU {:?}, peak RSS {:.1} MiB",
        wall.as_secs_f64() / floor.as_secs_f64(),
        used.code,
        used.cpu,
        used.peak_rss_mib,
    );
    used
}

/// The journal and `--json` with a reader that does not read for a second:
/// a scripted `orch run` of 2 000 turns, its duration taken from its own
/// journal (first event to `session_finished`), with the reader draining at
/// once, stalled for 1 s, and without `--json` at all.
fn stalled_json_reader() {
    const TURNS: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    let mut replies: Vec<Value> = (1..TURNS)
        .map(|i| json!({"tool_calls": [{"name": "read", "arguments": {"path": format!("file{i}")}}]}))
        .collect();
    replies.push(json!({"text": "Read them all."}));
    std::fs::write(
        dir.path().join("run.json"),
        json!({"agents": {"Worker": replies}}).to_string(),
    )
    .unwrap();
    let run = |json_out: bool, stall: Duration| -> (Duration, usize) {
        let runs = dir.path().join(".opencode/runs");
        let _ = std::fs::remove_dir_all(&runs);
        let mut command = orch();
        command.arg("-C").arg(dir.path());
        if json_out {
            command.arg("--json");
        }
        let mut child = command
            .args(["--provider", "scripted", "--script"])
            .arg(dir.path().join("run.json"))
            .args(["run", "--max-turns", "5000", "Read every file"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("run orch");
        let mut stdout = child.stdout.take().unwrap();
        std::thread::sleep(stall);
        std::io::copy(&mut stdout, &mut std::io::sink()).unwrap();
        child.wait().unwrap();
        let journal = std::fs::read_dir(&runs)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
            .join("events.jsonl");
        let events: Vec<Value> = std::fs::read_to_string(journal)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let start = events[0]["ts_ms"].as_u64().unwrap();
        let end = events
            .iter()
            .find(|e| e["type"] == "session_finished")
            .and_then(|e| e["ts_ms"].as_u64())
            .unwrap();
        (Duration::from_millis(end - start), events.len())
    };
    let (plain, _) = run(false, Duration::ZERO);
    let (drained, events) = run(true, Duration::ZERO);
    let (stalled, _) = run(true, Duration::from_secs(1));
    let per_event = |d: Duration| d / events as u32;
    println!(
        "durable records, {TURNS}-turn scripted `orch run` ({events} events): without --json {plain:?} ({:?} an event), --json read at once {drained:?} ({:?} an event), --json reader stalled 1 s {stalled:?} ({:?} an event)",
        per_event(plain),
        per_event(drained),
        per_event(stalled)
    );
}

/// How long `orch resume` takes to pick up a mission killed after about
/// 1 000 events with 10 sessions (Commander and 9 Workers): from spawning
/// it to the first model request of the resumed run, and to its
/// `mission_started`.
fn resume_pickup() {
    const WORKERS: usize = 9;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".opencode")).unwrap();
    let mut script = fan_out_script(WORKERS, 60);
    script["latency_ms"] = json!(20);
    std::fs::write(dir.path().join("run.json"), script.to_string()).unwrap();
    std::fs::write(
        dir.path().join(".opencode/orch.json"),
        json!({"verify": [], "mission": {"max_iterations": 1}, "concurrency": {"global": WORKERS, "per_agent": WORKERS}}).to_string(),
    )
    .unwrap();
    let command = |args: &[&str]| scripted(dir.path(), args);
    let mut first = command(&["task", "Run the Workers"])
        .spawn()
        .expect("run orch");
    let mut lines = 0;
    let mut sessions = std::collections::BTreeSet::new();
    for line in BufReader::new(first.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        lines += 1;
        if let Ok(event) = serde_json::from_str::<Value>(&line)
            && let Some(session) = event["session"].as_str()
        {
            sessions.insert(session.to_string());
        }
        if lines >= 1000 {
            break;
        }
    }
    // SIGKILL: nothing is flushed or cleaned up.
    first.kill().unwrap();
    first.wait().unwrap();
    let started = Instant::now();
    let mut resumed = command(&["resume"]).spawn().expect("resume orch");
    let (mut mission_started, mut first_request) = (None, None);
    for line in BufReader::new(resumed.stdout.take().unwrap()).lines() {
        let Ok(event) = serde_json::from_str::<Value>(&line.unwrap()) else {
            continue;
        };
        match event["type"].as_str() {
            Some("mission_started") => {
                mission_started = mission_started.or(Some(started.elapsed()))
            }
            Some("model_request") => {
                first_request = Some(started.elapsed());
                break;
            }
            _ => {}
        }
    }
    resumed.kill().unwrap();
    resumed.wait().unwrap();
    println!(
        "orch resume of a mission killed after {lines} events and {} sessions: mission_started after {:?}, first model request after {:?}",
        sessions.len(),
        mission_started.unwrap_or_default(),
        first_request.unwrap_or_default()
    );
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
    let mut child = scripted(dir.path(), &["task", "Nothing to do"])
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

//! Engine benchmarks (run with `cargo bench --bench engine`):
//!
//! - engine overhead per model turn: one session, the scripted provider at
//!   zero latency, no tools, 2 000 turns; each turn timed on its own;
//! - `orch --version` start-up: the release binary, spawned 200 times;
//! - peak RSS of a scripted `orch run` (getrusage of the child);
//! - the OS sandbox per command: `sh -c true` spawned directly and through
//!   orch's sandbox helper, 200 times each;
//! - permission rules on a 64-command pipeline, 2 000 decisions;
//! - the records' cost per event: 100 000 events emitted on a bus without
//!   records and on one recording the journal (the emitter's time per event,
//!   and the time until the recorder thread has written them all).
//!
//! Prints medians and percentiles; asserts nothing (targets live in the
//! README and DESIGN §10, not in tests).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orch::agents::AgentRegistry;
use orch::config::{PermissionConfig, ToolsConfig};
use orch::events::{Event, EventBus, SessionOutcome};
use orch::mission::state::Journal;
use orch::provider::scripted::{Script, ScriptedClient};
use orch::session::{Runtime, Session, SessionSetup};
use orch::tools::ToolRegistry;
use orch::tools::permissions::Permissions;
use tokio_util::sync::CancellationToken;

const TURNS: usize = 2000;

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    println!("orch engine benchmarks");
    turn_overhead(dir.path());
    peak_rss(dir.path());
    startup();
    sandbox_cost(dir.path());
    rule_evaluation();
    record_cost(dir.path());
}

fn record_cost(root: &Path) {
    const EVENTS: usize = 100_000;
    for recorded in [false, true] {
        let bus = Arc::new(EventBus::new());
        let path = root.join(format!("record-cost-{recorded}.jsonl"));
        if recorded {
            let journal = Journal::open(&path, &bus).expect("journal");
            bus.add_recorded(vec![Arc::new(journal)]);
        }
        let started = Instant::now();
        for i in 0..EVENTS {
            bus.emit(Event::ToolCallEnd {
                session: "worker-1".into(),
                call_id: format!("call_{i}"),
                tool: "read".into(),
                ok: true,
                duration_ms: 3,
                preview: "pub fn parse(input: &str) -> Result<Plan, Error> {".into(),
            });
        }
        let emitted = started.elapsed();
        bus.flush_blocking(Duration::from_secs(120));
        let written = started.elapsed();
        let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
        println!(
            "records per event ({}): emitting {:?}, written {:?} ({EVENTS} events, {bytes} journal bytes)",
            if recorded {
                "journal recorded"
            } else {
                "no records"
            },
            emitted / EVENTS as u32,
            written / EVENTS as u32,
        );
    }
}

fn sandbox_cost(root: &Path) {
    let sandbox =
        orch::sandbox::Sandbox::new(orch::config::SandboxMode::WorkspaceWrite, root, &[], false)
            .with_helper(orch_binary());
    if let Err(reason) = orch::sandbox::probe(&sandbox) {
        println!("sandbox per command: skipped, the sandbox cannot be built here ({reason})");
        return;
    }
    let args: Vec<std::ffi::OsString> = vec!["-c".into(), "true".into()];
    let (helper, wrapped) = sandbox.wrap(orch::sandbox::Profile::Write, root, "sh".as_ref(), &args);
    let time = |program: &std::ffi::OsStr, args: &[std::ffi::OsString]| {
        (0..200)
            .map(|_| {
                let started = Instant::now();
                let status = Command::new(program)
                    .args(args)
                    .current_dir(root)
                    .status()
                    .expect("spawn");
                assert!(status.success());
                started.elapsed()
            })
            .collect::<Vec<_>>()
    };
    report(
        "`sh -c true` without the sandbox",
        time("sh".as_ref(), &args),
    );
    report(
        "`sh -c true` inside the sandbox (helper, namespaces, mounts, Landlock)",
        time(&helper, &wrapped),
    );
}

fn rule_evaluation() {
    let config: PermissionConfig = serde_json::from_value(serde_json::json!({
        "bash": {"*": "ask", "git push*": "deny", "cargo *": "allow", "grep *": "allow", "sed *": "allow", "rm -rf *": "deny"}
    }))
    .expect("rules");
    let permissions = Permissions::new(config, false);
    let stages: Vec<String> = (0..64)
        .map(|i| match i % 4 {
            0 => format!("grep -n pattern{i} src/file{i}.rs"),
            1 => format!("sed -e 's/a{i}/b/' 2>/dev/null"),
            2 => "cargo metadata --format-version 1".to_string(),
            _ => format!("$(echo sub{i})"),
        })
        .collect();
    let line = serde_json::json!({ "command": stages.join(" | ") });
    let samples: Vec<Duration> = (0..2000)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(permissions.decide("bash", &line));
            started.elapsed()
        })
        .collect();
    report("permission rules on a 64-command pipeline", samples);
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name}: median {:?}, p95 {:?}, min {:?} ({} samples)",
        percentile(&samples, 0.5),
        percentile(&samples, 0.95),
        samples[0],
        samples.len()
    );
}

fn turn_overhead(root: &Path) {
    let replies: Vec<String> = (0..TURNS)
        .map(|i| format!(r#"{{"text":"reply {i}: the change is done and tested."}}"#))
        .collect();
    let script = format!(r#"{{"agents":{{"Worker":[{}]}}}}"#, replies.join(","));
    let client = Arc::new(ScriptedClient::new(
        Script::parse(&script, "bench").expect("script"),
    ));
    let events = Arc::new(EventBus::new());
    // The records a mission keeps: the journal, written on the recorder
    // thread (`--json` output follows it from there).
    let journal = Journal::open(&root.join("events.jsonl"), &events).expect("journal");
    events.add_recorded(vec![Arc::new(journal)]);
    let runtime = Runtime {
        root: Arc::new(root.canonicalize().expect("root")),
        client,
        tools: ToolRegistry::builtins(),
        permissions: Permissions::new(PermissionConfig::default(), false),
        events,
        limits: Arc::new(ToolsConfig::default()),
        memory: Arc::default(),
        hooks: Arc::new(orch::hooks::NoHooks),
        live: Default::default(),
    };
    let mut agent = AgentRegistry::builtin()
        .find("Worker")
        .expect("worker")
        .clone();
    // "No tools": the request carries none and the model calls none.
    agent.tools.clear();
    let setup = SessionSetup {
        agent,
        model: "scripted".into(),
        max_turns: u32::MAX,
        max_output_tokens: 1000,
        token_budget: None,
        repeat_limit: None,
        policy: Default::default(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let samples = rt.block_on(async {
        let mut session = Session::new(runtime, setup).expect("session");
        let cancel = CancellationToken::new();
        let mut samples = Vec::with_capacity(TURNS);
        for _ in 0..TURNS {
            let started = Instant::now();
            let report = session.run("next step", &cancel).await;
            samples.push(started.elapsed());
            assert_eq!(report.outcome, SessionOutcome::Completed);
        }
        samples
    });
    report(
        "engine overhead per model turn (scripted, 0 ms latency, no tools)",
        samples,
    );
}

fn orch_binary() -> &'static str {
    env!("CARGO_BIN_EXE_orch")
}

fn startup() {
    let mut samples = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        let status = Command::new(orch_binary())
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run orch --version");
        samples.push(started.elapsed());
        assert!(status.success());
    }
    report("orch --version (process start to exit)", samples);
}

fn peak_rss(root: &Path) {
    let project = root.join("rss-project");
    std::fs::create_dir_all(project.join("src")).expect("project");
    std::fs::write(project.join("src/lib.rs"), "pub fn one() -> i32 { 1 }\n").expect("lib");
    std::fs::write(
        project.join("run.json"),
        r#"{"agents":{"Worker":[
            {"tool_calls":[{"name":"read","arguments":{"path":"src/lib.rs"}},{"name":"grep","arguments":{"pattern":"fn"}}]},
            {"tool_calls":[{"name":"edit","arguments":{"path":"src/lib.rs","old":"1 }","new":"2 }"}}]},
            {"tool_calls":[{"name":"bash","arguments":{"command":"cat src/lib.rs"}}]},
            {"text":"done"}]}}"#,
    )
    .expect("script");
    let status = Command::new(orch_binary())
        .args(["-C"])
        .arg(&project)
        .args(["--provider", "scripted", "--script"])
        .arg(project.join("run.json"))
        .args(["run", "--agent", "worker", "change one to two"])
        .env("CI", "1")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run orch");
    assert!(status.success());
    // SAFETY: getrusage only writes into the struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    println!(
        "peak RSS of a scripted `orch run` (4 turns, read/grep/edit/bash): {:.1} MiB",
        usage.ru_maxrss as f64 / 1024.0
    );
}

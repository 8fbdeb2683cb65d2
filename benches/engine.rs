//! Engine benchmarks (run with `cargo bench --bench engine`):
//!
//! - engine overhead per model turn: one session, the scripted provider at
//!   zero latency, no tools, 2 000 turns; each turn timed on its own;
//! - `orch --version` start-up: the release binary, spawned 200 times;
//! - peak RSS of a scripted `orch run` (getrusage of the child).
//!
//! Prints medians and percentiles; asserts nothing (targets live in the
//! README and DESIGN §10, not in tests).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orch::agents::AgentRegistry;
use orch::config::{PermissionConfig, ToolsConfig};
use orch::events::{EventBus, SessionOutcome};
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

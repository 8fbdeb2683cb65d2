//! Memory benchmark (run with `cargo bench --bench memory`): one scripted
//! mission of 40+ model turns run twice through the real mission loop —
//! once with memory gating and compaction on, once with memory off (the
//! naive baseline that sends the full history every turn) — summing the
//! prompt tokens of every request (tiktoken `o200k_base`, the same counter
//! for both runs; summary requests count too). The Commander reads a large
//! source file per plan item, on a model with a 16 k window (a small local
//! model) and again with 32 k. Every run must end with the same files, the
//! same plan and the same mission result as the baseline.
//!
//! Prints numbers; asserts only that the outcomes match.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orch::agents::AgentRegistry;
use orch::config::{
    ConcurrencyConfig, MemoryConfig, MissionConfig, ModelLimits, PermissionConfig, PoolConfig,
    ToolsConfig,
};
use orch::events::{Event, EventBus, MissionOutcome};
use orch::hooks::NoHooks;
use orch::memory::{Memory, tokens};
use orch::mission::guards::StopSignal;
use orch::mission::state::{MissionPaths, MissionState, StateSink};
use orch::mission::{Mission, Start};
use orch::provider::scripted::{Script, ScriptedClient};
use orch::provider::{EventStream, ModelClient, ModelRequest};
use orch::session::tasks::{SetupFor, Tasks};
use orch::session::{Runtime, Session, SessionSetup};
use orch::todo::TodoStore;
use orch::tools::ToolRegistry;
use orch::tools::background::{BackgroundJobs, JobLimits};
use orch::tools::permissions::Permissions;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Plan items; each costs the Commander 3 turns and a Worker 2.
const ITEMS: usize = 8;
/// Lines of each source file the Commander reads (about 12 tokens a line).
const FILE_LINES: usize = 220;
const MODEL: &str = "bench-model";
/// The Commander's model window in the main run, and a roomier one.
const WINDOWS: [u32; 2] = [16_384, 32_768];

/// Counts the prompt tokens of every request, then lets the script answer.
struct Counting {
    inner: ScriptedClient,
    prompt_tokens: AtomicU64,
    requests: AtomicUsize,
    largest: AtomicU64,
    by_agent: Mutex<BTreeMap<String, u64>>,
}

impl ModelClient for Counting {
    fn provider(&self) -> &'static str {
        "scripted"
    }

    fn stream(&self, request: ModelRequest, cancel: CancellationToken) -> EventStream {
        let prompt = tokens::count(&request.system)
            + tokens::tools(&request.tools)
            + request.messages.iter().map(tokens::message).sum::<u64>();
        self.prompt_tokens.fetch_add(prompt, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.largest.fetch_max(prompt, Ordering::Relaxed);
        *self
            .by_agent
            .lock()
            .expect("lock")
            .entry(request.agent.clone())
            .or_default() += prompt;
        self.inner.stream(request, cancel)
    }
}

fn call(name: &str, arguments: Value) -> Value {
    json!({"name": name, "arguments": arguments})
}

fn script() -> String {
    let mut commander = vec![json!({
        "text": "Planning the work and recording the architecture decision.",
        "tool_calls": (1..=ITEMS)
            .map(|k| call("add_todo", json!({"id": format!("T{k}"), "text": format!("Port module {k} to src/out_{k}.rs")})))
            .chain([call("remember", json!({"text": "architecture: every ported module lives in its own file src/out_N.rs", "tier": "project", "pin": true}))])
            .collect::<Vec<_>>()
    })];
    for k in 1..=ITEMS {
        commander.push(json!({
            "text": format!("Reading module {k} before delegating."),
            "tool_calls": [call("read", json!({"path": format!("src/module_{k}.rs")}))]
        }));
        commander.push(json!({
            "text": format!("Module {k} is understood; a Worker ports it."),
            "tool_calls": [call("delegate_task", json!({"agent": "Worker", "description": format!("port {k}"), "prompt": format!("Write src/out_{k}.rs with the ported module {k}."), "background": false}))]
        }));
        commander.push(json!({
            "text": format!("Checking the port of module {k}."),
            "tool_calls": [call("read", json!({"path": format!("src/out_{k}.rs")}))]
        }));
    }
    commander.push(json!({
        "text": "Every module is ported; the Reviewer verifies.",
        "tool_calls": [call("delegate_task", json!({"agent": "Reviewer", "description": "review", "prompt": "Verify every port and mark the items done.", "background": false}))]
    }));
    commander.push(json!({"text": "Mission complete: all modules ported and reviewed."}));
    let mut worker = Vec::new();
    for k in 1..=ITEMS {
        worker.push(json!({
            "tool_calls": [call("write", json!({"path": format!("src/out_{k}.rs"), "content": format!("//! Ported module {k}.\npub fn run_{k}() -> u32 {{ {k} }}\n")}))]
        }));
        worker.push(json!({"text": format!("src/out_{k}.rs written.")}));
    }
    let reviewer = vec![
        json!({"tool_calls": (1..=ITEMS).map(|k| call("update_todo", json!({"id": format!("T{k}"), "status": "completed"}))).collect::<Vec<_>>()}),
        json!({"text": "All items verified and marked done."}),
    ];
    let compactor: Vec<Value> = (0..40)
        .map(|_| json!({"text": "Summary: the plan has one item per module; modules are read, ported by Workers into src/out_N.rs and checked; continue with the next module."}))
        .collect();
    json!({"agents": {"Commander": commander, "Worker": worker, "Reviewer": reviewer, "Compactor": compactor}}).to_string()
}

fn project(root: &Path) {
    std::fs::create_dir_all(root.join("src")).expect("src");
    std::fs::create_dir_all(root.join(".opencode")).expect(".opencode");
    for k in 1..=ITEMS {
        let body: String = (0..FILE_LINES)
            .map(|line| {
                format!("    let value_{line} = compute_{k}(input, {line}) + offset_{line};\n")
            })
            .collect();
        std::fs::write(
            root.join(format!("src/module_{k}.rs")),
            format!("//! Module {k}.\npub fn module_{k}(input: u32) -> u32 {{\n{body}    0\n}}\n"),
        )
        .expect("module");
    }
    std::fs::write(
        root.join(".opencode/todo.md"),
        "# Mission: Port the modules\n",
    )
    .expect("todo");
}

struct Run {
    prompt_tokens: u64,
    requests: usize,
    largest: u64,
    by_agent: BTreeMap<String, u64>,
    compactions: usize,
    outcome: MissionOutcome,
    files: BTreeMap<String, String>,
    plan: String,
}

fn files(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(root.join("src")).expect("src").flatten() {
        out.insert(
            entry.file_name().to_string_lossy().into_owned(),
            std::fs::read_to_string(entry.path()).expect("file"),
        );
    }
    out
}

async fn run(memory_on: bool, window: u32) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().canonicalize().expect("root");
    project(&root);
    let client = Arc::new(Counting {
        inner: ScriptedClient::new(Script::parse(&script(), "bench").expect("script")),
        prompt_tokens: AtomicU64::new(0),
        requests: AtomicUsize::new(0),
        largest: AtomicU64::new(0),
        by_agent: Mutex::default(),
    });
    let events = Arc::new(EventBus::new());
    let compactions = Arc::new(AtomicUsize::new(0));
    struct Count(Arc<AtomicUsize>);
    impl orch::events::EventSink for Count {
        fn write(&self, envelope: &orch::events::Envelope) {
            if matches!(envelope.event, Event::ContextCompacted { .. }) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    events.add_sink(Arc::new(Count(compactions.clone())));
    let memory = Arc::new(
        Memory::open(
            &root,
            MemoryConfig {
                enabled: memory_on,
                ..MemoryConfig::default()
            },
            BTreeMap::from([(
                MODEL.to_string(),
                ModelLimits {
                    context_window: window,
                    max_output: 2_048,
                },
            )]),
        )
        .expect("memory"),
    );
    let todo = Arc::new(TodoStore::new(&root));
    let mut tools = ToolRegistry::builtins();
    for tool in orch::tools::todo::tools(todo.clone(), Some(events.clone())) {
        tools.insert(tool);
    }
    for tool in orch::tools::memory::tools(memory.clone()) {
        tools.insert(tool);
    }
    let runtime = Runtime {
        root: Arc::new(root.clone()),
        client: client.clone(),
        tools,
        permissions: Permissions::new(PermissionConfig::default(), false),
        events: events.clone(),
        limits: Arc::new(ToolsConfig::default()),
        memory: memory.clone(),
        hooks: Arc::new(NoHooks),
    };
    let id = "m-bench";
    let paths = MissionPaths::new(&root, id);
    memory.attach_mission(&paths.dir).expect("mission memory");
    let agents = AgentRegistry::builtin();
    let setup_for: SetupFor = Arc::new(|agent| SessionSetup {
        agent: agent.clone(),
        model: MODEL.into(),
        max_turns: 100,
        max_output_tokens: 2048,
        token_budget: None,
        repeat_limit: None,
        policy: Default::default(),
    });
    let stop = Arc::new(StopSignal::new());
    let tasks = Tasks::new(
        runtime,
        agents.clone(),
        setup_for.clone(),
        ConcurrencyConfig::default(),
        PoolConfig::default(),
        1,
        stop.token().clone(),
    );
    let state = Arc::new(StateSink::new(
        &paths,
        MissionState::new(id, "port", 5, ""),
        orch::models::Prices::default(),
    ));
    events.add_sink(state.clone());
    let commander = Session::new(
        tasks.runtime().clone(),
        setup_for(agents.find("Commander").expect("commander")),
    )
    .expect("commander session");
    // The mission's agents start no background jobs here.
    let jobs = BackgroundJobs::new(
        JobLimits {
            max_running: 1,
            output_bytes: 1000,
            default_timeout: Duration::from_secs(10),
            max_timeout: Duration::from_secs(10),
        },
        events.clone(),
    );
    let mission = Mission {
        id: id.into(),
        root: root.clone(),
        config: MissionConfig {
            max_iterations: 5,
            ..MissionConfig::default()
        },
        verify: Vec::new(),
        events,
        tasks,
        todo,
        state,
        paths,
        stop,
        jobs,
    };
    let report = mission
        .run(
            commander,
            Start::Message(
                "Mission goal: port every module in src/ to its own output file.".into(),
            ),
            0,
            CancellationToken::new(),
        )
        .await;
    Run {
        prompt_tokens: client.prompt_tokens.load(Ordering::Relaxed),
        requests: client.requests.load(Ordering::Relaxed),
        largest: client.largest.load(Ordering::Relaxed),
        by_agent: client.by_agent.lock().expect("lock").clone(),
        compactions: compactions.load(Ordering::Relaxed),
        outcome: report.outcome,
        files: files(&root),
        plan: std::fs::read_to_string(root.join(".opencode/todo.md")).expect("plan"),
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let started = std::time::Instant::now();
    tokens::count("warm up the tables");
    println!(
        "orch memory benchmark: one scripted mission, {ITEMS} plan items (tiktoken tables loaded in {:?})",
        started.elapsed()
    );
    let naive = runtime.block_on(run(false, WINDOWS[0]));
    print("naive (full history)", &naive);
    for window in WINDOWS {
        let gated = runtime.block_on(run(true, window));
        print(&format!("memory, {window}-token window"), &gated);
        let saving = 100.0 * (1.0 - gated.prompt_tokens as f64 / naive.prompt_tokens as f64);
        let same = naive.files == gated.files
            && naive.plan == gated.plan
            && naive.outcome == gated.outcome;
        println!(
            "{:>30}  prompt tokens saved: {saving:.1} % (target >= 40 %); same outcome (files, plan, mission result): {}",
            "",
            if same { "yes" } else { "NO" }
        );
        assert!(
            same,
            "the runs ended differently:\nnaive plan:\n{}\ngated plan:\n{}",
            naive.plan, gated.plan
        );
    }
}

fn print(name: &str, run: &Run) {
    println!(
        "{name:>30}: {} prompt tokens over {} requests (largest {}, {} compactions), outcome {:?}, by agent {:?}",
        run.prompt_tokens, run.requests, run.largest, run.compactions, run.outcome, run.by_agent
    );
}

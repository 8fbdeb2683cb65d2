//! Memory and prompt-cache benchmark (run with `cargo bench --bench
//! memory`): one scripted mission of 45 model turns through the real
//! mission loop, billed by a provider prompt cache simulated as Anthropic
//! documents it (`tests/it/support/prompt_cache.rs`: breakpoints, the
//! 20-block lookback, the minimum cacheable length, the TTL), in dollars at
//! Claude Sonnet 4.5's list prices ($3 per million input tokens, $0.30 read
//! from the cache, $3.75 written to it, $15 output). Tokens are counted
//! with tiktoken `o200k_base`; every request counts, summaries included.
//!
//! The Commander reads a large source file per plan item. Each window
//! (16 k and 32 k: small local models; 200 k: the model's own) runs:
//! - full history: memory off, the whole conversation every turn;
//! - before: the request shape orch had before requests were built for the
//!   cache, reproduced here: the memory block rendered afresh at the front
//!   of every request, memory-gate's shortening of old tool outputs
//!   applied to every request, one conversation breakpoint at the end;
//! - now: what orch sends (append-only requests, the memory block carried
//!   in the conversation, memory-gate at compaction, breakpoints at the
//!   previous request's end and the new end);
//!
//! "before" and "now" each with memory-gate on (the real plugin for "now")
//! and off. Every run must end with the same files, plan and mission
//! result as the full-history run.
//!
//! Prints numbers; asserts only that the outcomes match.

// The benchmark bills the Anthropic wire only; the OpenAI half and the
// tests' helpers go unused here.
#[allow(dead_code)]
#[path = "../tests/it/support/prompt_cache.rs"]
mod prompt_cache;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use orch::agents::AgentRegistry;
use orch::config::{
    ConcurrencyConfig, MemoryConfig, MissionConfig, ModelLimits, PermissionConfig, PoolConfig,
    ToolsConfig,
};
use orch::events::{Event, EventBus, MissionOutcome};
use orch::hooks::{Hooks, NoHooks};
use orch::memory::{Memory, context, tokens};
use orch::mission::guards::StopSignal;
use orch::mission::state::{MissionPaths, MissionState, StateSink};
use orch::mission::{Mission, Start};
use orch::provider::scripted::{Script, ScriptedClient};
use orch::provider::{EventStream, Message, ModelClient, ModelRequest, StreamEvent, Usage};
use orch::session::tasks::{SetupFor, Tasks};
use orch::session::{Runtime, Session, SessionSetup};
use orch::todo::TodoStore;
use orch::tools::ToolRegistry;
use orch::tools::background::{BackgroundJobs, JobLimits};
use orch::tools::permissions::Permissions;
use prompt_cache::{CacheRules, PromptCache};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Plan items; each costs the Commander 3 turns and a Worker 2.
const ITEMS: usize = 8;
/// Lines of each source file the Commander reads (about 12 tokens a line).
const FILE_LINES: usize = 220;
/// Priced and cached as Claude Sonnet 4.5; its window is set per run.
const MODEL: &str = "claude-sonnet-4-5";
/// The model's window in each run: small local models', and its own.
const WINDOWS: [u32; 3] = [16_384, 32_768, 200_000];

/// How requests are shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    FullHistory,
    Before,
    Now,
}

/// Bills every request through the simulated cache, then lets the script
/// answer; "before" requests are reshaped as orch used to send them.
struct Billing {
    inner: ScriptedClient,
    cache: PromptCache,
    shape: Shape,
    /// memory-gate's per-request shortening, for "before".
    gate_before: bool,
    memory: Arc<Memory>,
    usage: Arc<Mutex<Usage>>,
    requests: AtomicUsize,
    window: u32,
}

/// memory-gate's shortening as it was applied to every request.
const GATE_MAX_OLD_OUTPUT: usize = 2_000;
const GATE_KEEP_TAIL: usize = 6;

impl Billing {
    /// The request as orch built it before: the memory block rendered for
    /// this request at the front, old outputs shortened per request.
    fn before(&self, mut request: ModelRequest, window: u32) -> ModelRequest {
        if request.agent == orch::session::COMPACTOR {
            return summary_before(request, window);
        }
        let mut messages: Vec<Message> = request
            .messages
            .iter()
            .filter(|message| !context::is_block(message))
            .cloned()
            .collect();
        if let Some(block) = self.memory.render(&request.session) {
            messages.insert(0, Message::user(block));
        }
        if self.gate_before {
            let old = messages.len().saturating_sub(GATE_KEEP_TAIL);
            for message in messages.iter_mut().take(old) {
                if let Message::Tool { content, .. } = message
                    && content.len() > GATE_MAX_OLD_OUTPUT
                {
                    let mut cut = GATE_MAX_OLD_OUTPUT;
                    while !content.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    *content = format!(
                        "{}\n[memory-gate: {} more bytes of this old tool output dropped]",
                        &content[..cut],
                        content.len() - cut
                    );
                }
            }
        }
        request.messages = Arc::new(messages);
        request
    }
}

/// A summary request as orch sent it before: apart from the session, its
/// instruction as the system prompt and the older part of the conversation
/// (all but the kept tail, a quarter of the usable window) rendered as one
/// transcript message of at most twice the usable window in characters,
/// tool outputs cut to 2 000 characters.
fn summary_before(request: ModelRequest, window: u32) -> ModelRequest {
    let Some((ask, conversation)) = request.messages.split_last() else {
        return request;
    };
    let Some(at) = ask.text().find("\n\n") else {
        return request;
    };
    let instruction = ask.text()[at + 2..].to_string();
    let usable = u64::from(window) - 2_048;
    let mut kept = 0;
    let mut head = conversation.len();
    while head > 1 && kept < usable / 4 {
        head -= 1;
        kept += tokens::message(&conversation[head]);
    }
    while head > 1 && matches!(conversation[head], Message::Tool { .. }) {
        head -= 1;
    }
    let mut text = String::from("The conversation to summarize:\n");
    for message in &conversation[..head] {
        match message {
            Message::User { text: said } => text.push_str(&format!("user: {said}\n")),
            Message::Assistant {
                text: said,
                tool_calls,
            } => {
                text.push_str(&format!("assistant: {said}\n"));
                for call in tool_calls {
                    text.push_str(&format!("  called {} {}\n", call.name, call.arguments));
                }
            }
            Message::Tool { name, content, .. } => {
                let cut: String = content.chars().take(2_000).collect();
                text.push_str(&format!("{name} result: {cut}\n"));
            }
        }
    }
    let max_chars = usable as usize * 2;
    if text.len() > max_chars {
        let mut from = text.len() - max_chars;
        while !text.is_char_boundary(from) {
            from += 1;
        }
        text = format!("[…]\n{}", &text[from..]);
    }
    ModelRequest {
        session: format!("{}-compactor", request.session),
        system: instruction,
        messages: Arc::new(vec![Message::user(text)]),
        tools: Vec::new().into(),
        // It marked its end like any request.
        continued: true,
        ..request
    }
}

/// The breakpoints orch placed before: the system block, the last tool and
/// the conversation's last block.
fn breakpoints_before(body: &mut Value) {
    for message in body["messages"].as_array_mut().into_iter().flatten() {
        for block in message["content"].as_array_mut().into_iter().flatten() {
            if let Some(block) = block.as_object_mut() {
                block.remove("cache_control");
            }
        }
    }
    let ephemeral = json!({"type": "ephemeral"});
    if let Some(last) = body["messages"]
        .as_array_mut()
        .and_then(|messages| messages.last_mut())
        .and_then(|message| message["content"].as_array_mut())
        .and_then(|blocks| blocks.last_mut())
    {
        last["cache_control"] = ephemeral.clone();
    }
    if let Some(last) = body["tools"]
        .as_array_mut()
        .and_then(|tools| tools.last_mut())
    {
        last["cache_control"] = ephemeral;
    }
}

impl ModelClient for Billing {
    fn provider(&self) -> &'static str {
        "scripted"
    }

    fn stream(&self, request: ModelRequest, cancel: CancellationToken) -> EventStream {
        let request = if self.shape == Shape::Before {
            self.before(request, self.window)
        } else {
            request
        };
        let mut body = orch::provider::anthropic::request_body(&request);
        if self.shape == Shape::Before {
            breakpoints_before(&mut body);
        }
        let billed = self.cache.anthropic(&body).expect("a valid request");
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.usage.lock().expect("usage").add(&Usage {
            input: billed.input,
            output: 0,
            cached_input: billed.cache_read,
            cache_write: billed.cache_write,
            reasoning: 0,
        });
        let usage = self.usage.clone();
        // The script's own usage says what the turn wrote.
        Box::pin(self.inner.stream(request, cancel).inspect(move |event| {
            if let Ok(StreamEvent::Usage(turn)) = event {
                usage.lock().expect("usage").output += turn.output;
            }
        }))
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
        // Each Worker writes its port and remembers what it learned, as
        // agents do: the memory every session shows changes mid-mission.
        worker.push(json!({
            "tool_calls": [
                call("write", json!({"path": format!("src/out_{k}.rs"), "content": format!("//! Ported module {k}.\npub fn run_{k}() -> u32 {{ {k} }}\n")})),
                call("remember", json!({"text": format!("module {k} is ported to src/out_{k}.rs; run_{k} returns {k}"), "tier": "mission"}))
            ]
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
    usage: Usage,
    requests: usize,
    compactions: usize,
    outcome: MissionOutcome,
    files: BTreeMap<String, String>,
    plan: String,
}

impl Run {
    fn cost(&self) -> f64 {
        let price = orch::models::Prices::default()
            .get(MODEL)
            .expect("a list price");
        self.usage.cost(&price)
    }

    fn cached_share(&self) -> f64 {
        self.usage.cached_input as f64 / self.usage.input.max(1) as f64
    }
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

async fn run(shape: Shape, gate: bool, window: u32) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().canonicalize().expect("root");
    project(&root);
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
                enabled: shape != Shape::FullHistory,
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
    let client = Arc::new(Billing {
        inner: ScriptedClient::new(Script::parse(&script(), "bench").expect("script")),
        cache: PromptCache::new(CacheRules {
            count: tokens::count,
            ..CacheRules::default()
        }),
        shape,
        gate_before: gate && shape == Shape::Before,
        memory: memory.clone(),
        usage: Arc::default(),
        requests: AtomicUsize::new(0),
        window,
    });
    let hooks: Arc<dyn Hooks> = if gate && shape == Shape::Now {
        memory_gate(&root, events.clone()).await
    } else {
        Arc::new(NoHooks)
    };
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
        hooks,
        live: Default::default(),
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
        usage: *client.usage.lock().expect("usage"),
        requests: client.requests.load(Ordering::Relaxed),
        compactions: compactions.load(Ordering::Relaxed),
        outcome: report.outcome,
        files: files(&root),
        plan: std::fs::read_to_string(root.join(".opencode/todo.md")).expect("plan"),
    }
}

/// The bundled memory-gate, loaded as `orch init` installs it.
async fn memory_gate(root: &Path, events: Arc<EventBus>) -> Arc<dyn Hooks> {
    let (file, bytes) = orch::plugins::bundled::PLUGINS
        .iter()
        .find(|(file, _)| *file == "memory_gate.wasm")
        .expect("memory-gate is bundled (rustup target add wasm32-wasip2)");
    let plugins = root.join(".opencode/plugins");
    std::fs::create_dir_all(&plugins).expect("plugins dir");
    std::fs::write(plugins.join(file), bytes).expect("plugin");
    let config = orch::config::PluginsConfig {
        user_dir: false,
        ..Default::default()
    };
    let cache = orch::plugins::CodeCache::open(&root.join("code-cache")).expect("code cache");
    let host = orch::plugins::PluginHost::with_cache(root, &config, events, None, Some(cache))
        .expect("plugin host");
    let problems = host.load_dirs(&[plugins]).await;
    assert!(problems.is_empty(), "{problems:?}");
    Arc::new(host)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let started = std::time::Instant::now();
    tokens::count("warm up the tables");
    println!(
        "orch memory benchmark: one scripted mission, {ITEMS} plan items, billed as {MODEL} with a prompt cache (tiktoken tables loaded in {:?})",
        started.elapsed()
    );
    println!(
        "{:>34}  {:>8} {:>10} {:>7} {:>9} {:>7} {:>11} {:>9}",
        "", "requests", "input", "cached", "written", "output", "compactions", "cost"
    );
    for window in WINDOWS {
        println!("{window}-token window");
        let full = runtime.block_on(run(Shape::FullHistory, false, window));
        print("full history", &full);
        for (shape, gate) in [
            (Shape::Before, false),
            (Shape::Before, true),
            (Shape::Now, false),
            (Shape::Now, true),
        ] {
            let run = runtime.block_on(run(shape, gate, window));
            let name = format!(
                "{} memory-gate {}",
                if shape == Shape::Now {
                    "now,"
                } else {
                    "before,"
                },
                if gate { "on" } else { "off" }
            );
            print(&name, &run);
            let same =
                full.files == run.files && full.plan == run.plan && full.outcome == run.outcome;
            assert!(
                same,
                "{name}: the runs ended differently:\nfull history plan:\n{}\nthis plan:\n{}",
                full.plan, run.plan
            );
        }
    }
}

fn print(name: &str, run: &Run) {
    println!(
        "{name:>34}  {:>8} {:>10} {:>6.1}% {:>9} {:>7} {:>11} {:>8.4}$",
        run.requests,
        run.usage.input,
        100.0 * run.cached_share(),
        run.usage.cache_write,
        run.usage.output,
        run.compactions,
        run.cost(),
    );
    assert_ne!(run.outcome, MissionOutcome::Cancelled);
}

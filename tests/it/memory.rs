//! Memory and context budgets on real sessions: every request stays inside
//! a small model window, compaction keeps calls with their results, the
//! recent tail and pinned entries, summaries come through the same client
//! (or are skipped with a warning), a context-length error compacts once and
//! retries once, hooks can reshape or block, and project memory survives a
//! restart.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use orch::agents::{Agent, AgentSource};
use orch::config::{MemoryConfig, ModelLimits, PermissionConfig, ToolsConfig};
use orch::events::{Event, EventBus, SessionOutcome};
use orch::hooks::{Decision, HookPoint, Hooks, NoHooks};
use orch::memory::{Memory, Tier, tokens};
use orch::provider::scripted::{Script, ScriptedClient};
use orch::provider::{EventStream, Message, ModelClient, ModelRequest, ProviderError, ToolSpec};
use orch::session::{COMPACTOR, Runtime, Session, SessionReport, SessionSetup};
use orch::tools::permissions::Permissions;
use orch::tools::{Tool, ToolContext, ToolOutput, ToolRegistry};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Returns `size` tokens of text for any `part`.
struct Big;

#[async_trait]
impl Tool for Big {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "big".into(),
            description: "a large output".into(),
            parameters: json!({"type": "object", "properties": {"part": {"type": "integer"}, "size": {"type": "integer"}}}),
        }
    }

    async fn call(&self, args: Value, _ctx: &ToolContext) -> ToolOutput {
        let part = args["part"].as_u64().unwrap_or(0);
        let size = args["size"].as_u64().unwrap_or(1500) as usize;
        ToolOutput::ok(format!("part {part}:{}", " word".repeat(size)))
    }
}

/// Records every request; fails the agent requests whose index (0-based,
/// summary requests not counted) is in `fail_at` with a context-length
/// error.
struct Recording {
    inner: ScriptedClient,
    requests: Mutex<Vec<ModelRequest>>,
    fail_at: BTreeSet<usize>,
    fail_always: bool,
    /// Refuse a summary asked of the session's own conversation as too
    /// long (a provider whose tokenizer counts more).
    refuse_in_place: std::sync::atomic::AtomicBool,
}

impl Recording {
    fn agent_requests(&self) -> Vec<ModelRequest> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.agent != COMPACTOR)
            .cloned()
            .collect()
    }
}

impl ModelClient for Recording {
    fn provider(&self) -> &'static str {
        "scripted"
    }

    fn stream(&self, request: ModelRequest, cancel: CancellationToken) -> EventStream {
        let index = self
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.agent != COMPACTOR)
            .count();
        let summary = request.agent == COMPACTOR;
        self.requests.lock().unwrap().push(request.clone());
        let in_place = summary && !request.session.ends_with("-compactor");
        let refused = in_place
            && self
                .refuse_in_place
                .load(std::sync::atomic::Ordering::Relaxed);
        if refused || !summary && (self.fail_always || self.fail_at.contains(&index)) {
            return Box::pin(futures::stream::once(async {
                Err(ProviderError::ContextLength {
                    provider: "scripted",
                    message: "prompt is too long".into(),
                    fit: None,
                })
            }));
        }
        self.inner.stream(request, cancel)
    }
}

/// A model with room for a few large turns: 20000 tokens.
const MID: ModelLimits = ModelLimits {
    context_window: 20000,
    max_output: 1000,
};

/// A small local model: 6000 tokens, 1000 of them for output.
const TINY: ModelLimits = ModelLimits {
    context_window: 6000,
    max_output: 1000,
};

struct Harness {
    _dir: tempfile::TempDir,
    runtime: Runtime,
    client: Arc<Recording>,
    log: Arc<Mutex<Vec<Event>>>,
}

struct Log(Arc<Mutex<Vec<Event>>>);

impl orch::events::EventSink for Log {
    fn write(&self, envelope: &orch::events::Envelope) {
        self.0.lock().unwrap().push(envelope.event.clone());
    }
}

fn harness(script: &str, fail_at: &[usize], fail_always: bool, hooks: Arc<dyn Hooks>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let client = Arc::new(Recording {
        inner: ScriptedClient::new(Script::parse(script, "test").unwrap()),
        requests: Mutex::default(),
        fail_at: fail_at.iter().copied().collect(),
        fail_always,
        refuse_in_place: Default::default(),
    });
    let memory = Arc::new(
        Memory::open(
            &root,
            MemoryConfig::default(),
            BTreeMap::from([("tiny".to_string(), TINY), ("mid".to_string(), MID)]),
        )
        .unwrap(),
    );
    let mut tools = ToolRegistry::new();
    tools.insert(Arc::new(Big));
    for tool in orch::tools::memory::tools(memory.clone()) {
        tools.insert(tool);
    }
    let events = Arc::new(EventBus::new());
    let log = Arc::new(Mutex::new(Vec::new()));
    events.add_sink(Arc::new(Log(log.clone())));
    let runtime = Runtime {
        root: Arc::new(root),
        client: client.clone(),
        tools,
        permissions: Permissions::new(PermissionConfig::default(), false),
        events,
        limits: Arc::new(ToolsConfig::default()),
        memory,
        hooks,
        live: Default::default(),
    };
    Harness {
        _dir: dir,
        runtime,
        client,
        log,
    }
}

fn setup(model: &str) -> SessionSetup {
    SessionSetup {
        agent: Agent {
            name: "Worker".into(),
            role: orch::agents::Role::Worker,
            description: "test".into(),
            prompt: "You are a test worker.".into(),
            tools: vec!["big".into(), "remember".into(), "recall".into()],
            model: None,
            source: AgentSource::Builtin,
        },
        model: model.into(),
        max_turns: 100,
        max_output_tokens: 1000,
        token_budget: None,
        repeat_limit: None,
        policy: Default::default(),
    }
}

/// `n` turns each calling `big` once, then an answer.
fn big_reads(n: usize, size: usize, extra_text: usize) -> Vec<Value> {
    let mut replies: Vec<Value> = (0..n)
        .map(|i| {
            json!({"text": format!("reading part {i}.{}", " thinking".repeat(extra_text)),
                   "tool_calls": [{"name": "big", "arguments": {"part": i, "size": size}}]})
        })
        .collect();
    replies.push(json!({"text": "all parts read"}));
    replies
}

fn script(worker: Vec<Value>, compactor: Option<Vec<Value>>) -> String {
    let mut agents = json!({ "Worker": worker });
    if let Some(replies) = compactor {
        agents[COMPACTOR] = Value::Array(replies);
    }
    json!({ "agents": agents }).to_string()
}

async fn run(h: &Harness, model: &str) -> (Session, SessionReport) {
    let mut session = Session::new(h.runtime.clone(), setup(model)).unwrap();
    let report = session
        .run("Read every part.", &CancellationToken::new())
        .await;
    (session, report)
}

fn estimate(request: &ModelRequest) -> u64 {
    tokens::count(&request.system)
        + tokens::tools(&request.tools)
        + request.messages.iter().map(tokens::message).sum::<u64>()
}

/// Every tool result follows the assistant message that made its call, in
/// the same request, and every call has its result.
fn assert_pairs_intact(request: &ModelRequest) {
    let mut open: BTreeSet<String> = BTreeSet::new();
    for message in request.messages.iter() {
        match message {
            Message::Assistant { tool_calls, .. } => {
                assert!(open.is_empty(), "calls without results: {open:?}");
                open = tool_calls.iter().map(|c| c.id.clone()).collect();
            }
            Message::Tool { call_id, .. } => {
                assert!(open.remove(call_id), "a result without its call: {call_id}");
            }
            Message::User { .. } => assert!(open.is_empty(), "calls without results: {open:?}"),
        }
    }
}

fn compactions(h: &Harness) -> Vec<Event> {
    h.log
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, Event::ContextCompacted { .. }))
        .cloned()
        .collect()
}

fn warnings(h: &Harness) -> Vec<String> {
    h.log
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::Warning { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn every_request_fits_a_small_window_with_pairs_tail_and_pinned_kept() {
    let h = harness(
        &script(big_reads(14, 1500, 0), None),
        &[],
        false,
        Arc::new(NoHooks),
    );
    h.runtime
        .memory
        .remember(
            "any",
            "user",
            "errors are thiserror enums",
            Some(Tier::Project),
            true,
        )
        .unwrap();
    let (session, report) = run(&h, "tiny").await;
    assert_eq!(report.outcome, SessionOutcome::Completed, "{report:?}");
    assert_eq!(report.final_text, "all parts read");
    let requests = h.client.agent_requests();
    assert_eq!(requests.len(), 15);
    let usable = u64::from(TINY.context_window - TINY.max_output);
    for (i, request) in requests.iter().enumerate() {
        let tokens = estimate(request);
        assert!(tokens <= usable, "request {i}: {tokens} tokens > {usable}");
        assert_pairs_intact(request);
        // Pinned memory leads every request.
        assert!(
            request.messages[0]
                .text()
                .contains("[m1, pinned] errors are thiserror enums")
        );
        // The task is kept.
        assert_eq!(request.messages[1].text(), "Read every part.");
        // The tail is kept verbatim: the newest tool result is whole.
        if i > 0 {
            let last = request.messages.last().unwrap();
            assert!(
                last.text().starts_with(&format!("part {}:", i - 1)),
                "request {i}"
            );
            assert_eq!(
                last.text(),
                format!("part {}:{}", i - 1, " word".repeat(1500))
            );
        }
    }
    let events = compactions(&h);
    assert!(!events.is_empty());
    for event in &events {
        let Event::ContextCompacted {
            reason,
            tokens_before,
            tokens_after,
            pruned,
            ..
        } = event
        else {
            unreachable!()
        };
        assert_eq!(reason, "threshold");
        assert!(tokens_after < tokens_before);
        assert!(*pruned > 0);
    }
    // Old outputs were cleared in place, their calls kept.
    assert!(requests.iter().any(|r| {
        r.messages
            .iter()
            .any(|m| m.text() == orch::memory::compact::PRUNED)
    }));
    assert_eq!(session.messages().last().unwrap().text(), "all parts read");
}

#[tokio::test]
async fn long_assistant_turns_are_summarized_through_the_same_client() {
    let compactor = vec![json!({"text": "Summary: parts 0 to 5 were read."}); 30];
    let h = harness(
        &script(big_reads(12, 20, 700), Some(compactor)),
        &[],
        false,
        Arc::new(NoHooks),
    );
    let (_, report) = run(&h, "tiny").await;
    assert_eq!(report.outcome, SessionOutcome::Completed, "{report:?}");
    let summaries = summary_requests(&h);
    assert!(!summaries.is_empty());
    assert!(summaries[0].tools.is_empty());
    assert!(summaries[0].messages[0].text().contains("reading part 0"));
    let requests = h.client.agent_requests();
    let usable = u64::from(TINY.context_window - TINY.max_output);
    for request in &requests {
        assert!(estimate(request) <= usable);
        assert_pairs_intact(request);
    }
    let last = requests.last().unwrap();
    assert!(
        last.messages
            .iter()
            .any(|m| m.text().contains("Summary: parts 0 to 5 were read.")),
        "{:?}",
        last.messages
    );
    assert!(compactions(&h).iter().any(|e| matches!(
        e,
        Event::ContextCompacted { summary: true, summarized, .. } if *summarized > 0
    )));
}

#[tokio::test]
async fn without_a_summary_reply_older_messages_are_dropped_with_a_warning() {
    let h = harness(
        &script(big_reads(12, 20, 700), None),
        &[],
        false,
        Arc::new(NoHooks),
    );
    let (_, report) = run(&h, "tiny").await;
    assert_eq!(report.outcome, SessionOutcome::Completed, "{report:?}");
    assert!(
        warnings(&h)
            .iter()
            .any(|w| w.starts_with("compaction without a summary"))
    );
    let usable = u64::from(TINY.context_window - TINY.max_output);
    for request in h.client.agent_requests() {
        assert!(estimate(&request) <= usable);
        assert_pairs_intact(&request);
    }
    assert!(compactions(&h).iter().any(|e| matches!(
        e,
        Event::ContextCompacted { summary: false, summarized, .. } if *summarized > 0
    )));
}

#[tokio::test]
async fn a_context_length_error_compacts_once_and_retries_once() {
    // A roomy model, so only the provider's refusal triggers compaction.
    let h = harness(
        &script(big_reads(4, 500, 0), None),
        &[3],
        false,
        Arc::new(NoHooks),
    );
    let (_, report) = run(&h, "gpt-4o").await;
    assert_eq!(report.outcome, SessionOutcome::Completed, "{report:?}");
    let requests = h.client.agent_requests();
    // Four reads and the answer, plus the one retried request.
    assert_eq!(requests.len(), 6);
    assert!(estimate(&requests[4]) < estimate(&requests[3]));
    let events = compactions(&h);
    assert_eq!(events.len(), 1);
    assert!(
        matches!(&events[0], Event::ContextCompacted { reason, .. } if reason == "context_length")
    );
}

#[tokio::test]
async fn a_second_context_length_error_fails_the_session_clearly() {
    let h = harness(
        &script(big_reads(4, 500, 0), None),
        &[],
        true,
        Arc::new(NoHooks),
    );
    let (_, report) = run(&h, "gpt-4o").await;
    assert_eq!(report.outcome, SessionOutcome::Failed);
    let error = report.error.unwrap();
    assert!(error.contains("context length exceeded"), "{error}");
    assert!(
        error.contains("still too long after fitting the request"),
        "{error}"
    );
    // Exactly one retry, never a loop.
    assert_eq!(h.client.agent_requests().len(), 2);
}

/// Adds a message to every request and blocks every compaction.
struct Shaper {
    calls: Mutex<Vec<&'static str>>,
}

#[async_trait]
impl Hooks for Shaper {
    fn wants(&self, point: HookPoint) -> bool {
        !matches!(point, HookPoint::PreToolUse | HookPoint::PostToolUse)
    }

    async fn call(&self, point: HookPoint, payload: Value) -> Decision {
        self.calls.lock().unwrap().push(point.name());
        match point {
            HookPoint::PreModelRequest => {
                let mut messages = payload["messages"].as_array().cloned().unwrap();
                messages.push(json!({"role": "user", "text": "shaped by a hook"}));
                Decision::Modify(json!({ "messages": messages }))
            }
            HookPoint::PreCompact => Decision::Block("keep everything".into()),
            HookPoint::PreToolUse | HookPoint::PostToolUse => Decision::Continue,
        }
    }
}

#[tokio::test]
async fn hooks_reshape_requests_and_may_block_compaction() {
    let hooks = Arc::new(Shaper {
        calls: Mutex::default(),
    });
    let h = harness(
        &script(big_reads(4, 500, 0), None),
        &[1],
        false,
        hooks.clone(),
    );
    let (_, report) = run(&h, "gpt-4o").await;
    assert_eq!(report.outcome, SessionOutcome::Completed, "{report:?}");
    for request in h.client.agent_requests() {
        assert_eq!(request.messages.last().unwrap().text(), "shaped by a hook");
    }
    assert!(compactions(&h).is_empty());
    assert!(
        warnings(&h)
            .iter()
            .any(|w| w == "hook pre-compact blocked compaction: keep everything")
    );
    assert!(hooks.calls.lock().unwrap().contains(&"pre-compact"));
}

#[tokio::test]
async fn remember_and_recall_through_the_tools_and_an_unknown_model_is_warned_once() {
    let worker = vec![
        json!({"tool_calls": [{"name": "remember", "arguments": {"text": "the parser lives in src/parse.rs", "tier": "task"}}]}),
        json!({"tool_calls": [{"name": "recall", "arguments": {"query": "parser"}}]}),
        json!({"text": "done"}),
        json!({"text": "next run"}),
        json!({"text": "second session"}),
    ];
    let h = harness(&script(worker, None), &[], false, Arc::new(NoHooks));
    let (mut session, report) = run(&h, "mystery-7b").await;
    assert_eq!(report.outcome, SessionOutcome::Completed, "{report:?}");
    let recalled = session
        .messages()
        .iter()
        .find(|m| matches!(m, Message::Tool { name, .. } if name == "recall"))
        .unwrap();
    assert!(
        recalled.text().contains("the parser lives in src/parse.rs"),
        "{}",
        recalled.text()
    );
    let requests = h.client.agent_requests();
    // Remembered mid-run: the requests of this run stay as they were sent
    // (each the previous one plus new messages); the block shows at the
    // next run, appended before its message.
    assert!(
        requests
            .iter()
            .flat_map(|request| request.messages.iter())
            .all(|message| !message.text().contains("## Task memory"))
    );
    session.run("and now?", &CancellationToken::new()).await;
    let requests = h.client.agent_requests();
    let (before, next) = (&requests[2], &requests[3]);
    assert_eq!(next.messages[..before.messages.len()], before.messages[..]);
    let added: Vec<&str> = next.messages[before.messages.len()..]
        .iter()
        .map(Message::text)
        .collect();
    assert_eq!(added.len(), 3, "{added:?}");
    assert_eq!(added[0], "done");
    assert!(
        added[1].starts_with("<memory>") && added[1].contains("## Task memory"),
        "{added:?}"
    );
    assert_eq!(added[2], "and now?");
    // A second session of the same unknown model is not warned again.
    let mut other = Session::new(h.runtime.clone(), setup("mystery-7b")).unwrap();
    other.run("again", &CancellationToken::new()).await;
    let unknown: Vec<String> = warnings(&h)
        .into_iter()
        .filter(|w| w.contains("no known context window"))
        .collect();
    assert_eq!(unknown.len(), 1, "{unknown:?}");
    assert!(unknown[0].contains("assuming 32768 tokens"), "{unknown:?}");
    // It names the key that describes the model.
    assert!(
        unknown[0].contains(r#"set models."mystery-7b" in orch.json"#),
        "{unknown:?}"
    );
    // Its Task tier is its own.
    assert_eq!(requests.len(), 4);
    let last = h.client.agent_requests().pop().unwrap();
    assert!(!last.messages[0].text().contains("<memory>"));
}

#[test]
fn project_memory_survives_a_restart_and_mission_memory_a_resume() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mission_dir = root.join(".opencode/missions/m-1");
    {
        let memory = Memory::open(root, MemoryConfig::default(), BTreeMap::new()).unwrap();
        memory.attach_mission(&mission_dir).unwrap();
        memory
            .remember(
                "s",
                "Commander",
                "use axum for HTTP",
                Some(Tier::Project),
                true,
            )
            .unwrap();
        memory
            .remember(
                "s",
                "Commander",
                "the API is versioned under /v1",
                Some(Tier::Project),
                false,
            )
            .unwrap();
        memory
            .remember(
                "s",
                "Worker",
                "T1 needs a migration",
                Some(Tier::Mission),
                false,
            )
            .unwrap();
        memory
            .remember("s", "Worker", "scratch note", Some(Tier::Task), false)
            .unwrap();
        memory.end_iteration();
    }
    assert!(root.join(".opencode/memory/project.json").exists());
    let memory = Memory::open(root, MemoryConfig::default(), BTreeMap::new()).unwrap();
    let project = memory.entries("s", Tier::Project);
    assert_eq!(project.len(), 2);
    assert!(project[0].pinned);
    assert_eq!(project[0].text, "use axum for HTTP");
    // An iteration is not the Project tier's pace: its score is as written.
    assert!((project[1].score - 1.0).abs() < 1e-12);
    // A new mission starts with an empty Mission tier; the same one resumes.
    assert!(memory.entries("s", Tier::Mission).is_empty());
    assert!(memory.entries("s", Tier::Task).is_empty());
    memory.attach_mission(&mission_dir).unwrap();
    let mission = memory.entries("s", Tier::Mission);
    assert_eq!(mission[0].text, "T1 needs a migration");
    // The Mission tier's decay at that iteration was persisted.
    assert!((mission[0].score - 0.7).abs() < 1e-12);
    // Ids go on from the highest stored one (the Task entry m4 was not stored).
    let next = memory
        .remember("s", "u", "another", Some(Tier::Project), false)
        .unwrap();
    assert_eq!(next.id, "m4");
    // Idle missions of one iteration each evict the unpinned entries; the
    // pinned one stays.
    let mut evicted = Vec::new();
    for _ in 0..7 {
        evicted.extend(memory.begin_mission().unwrap());
        evicted.extend(memory.end_iteration());
    }
    // m3 was at 0.7 already (evicted at the 6th iteration), the Project
    // entries m2 and m4 at 1.0 (evicted when the 7th mission starts).
    let ids: Vec<String> = evicted.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids, vec!["m3", "m2", "m4"]);
    let left: Vec<String> = memory
        .entries("s", Tier::Project)
        .into_iter()
        .map(|e| e.text)
        .collect();
    assert_eq!(left, vec!["use axum for HTTP"]);
    let reopened = Memory::open(root, MemoryConfig::default(), BTreeMap::new()).unwrap();
    assert_eq!(reopened.entries("s", Tier::Project).len(), 1);
    drop(dir);
}

#[tokio::test]
async fn one_tool_output_larger_than_the_window_is_cut_to_fit() {
    let h = harness(
        &script(big_reads(2, 9000, 0), None),
        &[],
        false,
        Arc::new(NoHooks),
    );
    let (_, report) = run(&h, "tiny").await;
    assert_eq!(report.outcome, SessionOutcome::Completed, "{report:?}");
    let usable = u64::from(TINY.context_window - TINY.max_output);
    for request in h.client.agent_requests() {
        assert!(estimate(&request) <= usable, "{}", estimate(&request));
        assert_pairs_intact(&request);
    }
    let last = h.client.agent_requests().pop().unwrap();
    let output = last.messages.last().unwrap().text();
    assert!(output.starts_with("part 1: word"));
    assert!(output.contains("bytes cut to fit the context window"));
    assert!(output.ends_with(" word"));
}

/// A session whose second run brings a large message: the compaction it
/// needs summarizes a range that ends past the last answer.
async fn second_run_compacts(refuse_in_place: bool) -> (Harness, Session) {
    let mut worker = big_reads(10, 5, 450);
    worker.truncate(10);
    worker.push(json!({"text": "FINAL-FINDING: the bug is in parse.rs line 42"}));
    worker.push(json!({"text": "second run done"}));
    let h = harness(
        &script(worker, Some(vec![json!({"text": "a summary"})])),
        &[],
        false,
        Arc::new(NoHooks),
    );
    h.client
        .refuse_in_place
        .store(refuse_in_place, std::sync::atomic::Ordering::Relaxed);
    let mut session = Session::new(h.runtime.clone(), setup("mid")).unwrap();
    session
        .run("Read every part.", &CancellationToken::new())
        .await;
    assert!(compactions(&h).is_empty());
    let next = format!("Next step:{}", " detail".repeat(5200));
    let report = session.run(&next, &CancellationToken::new()).await;
    assert_eq!(report.outcome, SessionOutcome::Completed, "{report:?}");
    assert_eq!(compactions(&h).len(), 1);
    (h, session)
}

fn summary_requests(h: &Harness) -> Vec<ModelRequest> {
    h.client
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.agent == COMPACTOR)
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_summary_is_asked_of_the_whole_conversation_and_apart_when_that_is_refused() {
    let (h, session) = second_run_compacts(false).await;
    let asked = summary_requests(&h);
    assert_eq!(asked.len(), 1);
    let summary = &asked[0];
    // The session's own request plus one message: read from the cache,
    // nothing written, every message seen (the last answer included).
    assert_eq!(summary.session, session.id());
    assert_eq!(summary.system, "You are a test worker.");
    assert!(!summary.continued);
    assert!(!summary.tools.is_empty());
    let last_request = h.client.agent_requests().pop().unwrap();
    assert!(
        summary
            .messages
            .last()
            .unwrap()
            .text()
            .starts_with(orch::session::SUMMARY_REQUEST)
    );
    assert!(
        summary
            .messages
            .iter()
            .any(|m| m.text().contains("FINAL-FINDING"))
    );
    assert!(summary.messages.len() > last_request.messages.len() / 2);
    assert!(
        session
            .messages()
            .iter()
            .any(|m| m.text().starts_with("[summary of"))
    );

    // A provider that refuses it: the older part is summarized apart, not
    // dropped.
    let (h, session) = second_run_compacts(true).await;
    let asked = summary_requests(&h);
    assert_eq!(asked.len(), 2, "in place, then apart");
    assert!(asked[1].session.ends_with("-compactor"));
    assert_eq!(asked[1].messages.len(), 1);
    assert!(
        session
            .messages()
            .iter()
            .any(|m| m.text().starts_with("[summary of"))
    );
    assert!(
        !warnings(&h)
            .iter()
            .any(|w| w.contains("compaction without a summary")),
        "{:?}",
        warnings(&h)
    );
}

#[tokio::test]
async fn a_task_that_starts_with_the_memory_tag_survives_compaction() {
    let h = harness(
        &script(
            big_reads(14, 600, 0),
            Some(vec![json!({"text": "a summary"}); 4]),
        ),
        &[],
        false,
        Arc::new(NoHooks),
    );
    let mut session = Session::new(h.runtime.clone(), setup("tiny")).unwrap();
    let task =
        "<memory> tags in templates/*.html must be renamed to <recall>; read every part first.";
    session.run(task, &CancellationToken::new()).await;
    assert!(!compactions(&h).is_empty());
    let last = h.client.agent_requests().pop().unwrap();
    assert!(last.messages.iter().any(|m| m.text() == task));
}

/// Gates the memory block at compaction, as memory-gate does.
struct GateBlock;

#[async_trait]
impl Hooks for GateBlock {
    fn wants(&self, point: HookPoint) -> bool {
        point == HookPoint::PreCompact
    }

    async fn call(&self, _point: HookPoint, mut payload: Value) -> Decision {
        for message in payload["messages"].as_array_mut().unwrap() {
            if let Some(text) = message["text"].as_str()
                && text.starts_with("<memory>")
            {
                message["text"] = text.replace("the HTTP layer is axum", "[gated]").into();
            }
        }
        Decision::Modify(json!({"messages": payload["messages"]}))
    }
}

#[tokio::test]
async fn a_block_gated_at_compaction_stays_gated_and_single_at_the_next_run() {
    let mut worker = big_reads(14, 600, 0);
    worker.push(json!({"text": "second run done"}));
    let h = harness(
        &script(worker, Some(vec![json!({"text": "a summary"}); 4])),
        &[],
        false,
        Arc::new(GateBlock),
    );
    h.runtime
        .memory
        .remember(
            "x",
            "user",
            "the HTTP layer is axum",
            Some(Tier::Project),
            false,
        )
        .unwrap();
    let mut session = Session::new(h.runtime.clone(), setup("tiny")).unwrap();
    session
        .run("Read every part.", &CancellationToken::new())
        .await;
    assert!(!compactions(&h).is_empty());
    session.run("and now?", &CancellationToken::new()).await;
    let last = h.client.agent_requests().pop().unwrap();
    let blocks: Vec<&str> = last
        .messages
        .iter()
        .map(Message::text)
        .filter(|text| text.starts_with("<memory>"))
        .collect();
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    assert!(blocks[0].contains("[gated]"), "{blocks:?}");
}

/// Two processes on one project (a mission and an `orch run`) number their
/// entries on from the same file: neither loses the other's entry, and
/// their ids stay apart.
#[test]
fn two_processes_remembering_keep_both_entries() {
    let dir = tempfile::tempdir().unwrap();
    let open = || Memory::open(dir.path(), MemoryConfig::default(), BTreeMap::new()).unwrap();
    let (a, b) = (open(), open());
    let first = a
        .remember("s", "Worker", "from process A", Some(Tier::Project), false)
        .unwrap();
    b.remember("s", "Worker", "from process B", Some(Tier::Project), false)
        .unwrap();
    // Each writes again (an iteration's scores), in the other order.
    a.remember("s", "Worker", "A again", Some(Tier::Project), false)
        .unwrap();
    let file = dir.path().join(".opencode/memory/project.json");
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let entries = stored["entries"].as_array().unwrap();
    let texts: BTreeSet<&str> = entries
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        BTreeSet::from(["from process A", "from process B", "A again"])
    );
    let ids: BTreeSet<&str> = entries.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "{entries:?}");
    // A's first entry kept its id: the model may have cited it.
    assert!(
        entries
            .iter()
            .any(|e| e["id"] == first.id.as_str() && e["text"] == "from process A")
    );
}

/// Rewrites the first message of every request: the same way each time,
/// or numbered, so each request differs from the last at its start.
struct Rewriter {
    numbered: bool,
    calls: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl Hooks for Rewriter {
    fn wants(&self, point: HookPoint) -> bool {
        point == HookPoint::PreModelRequest
    }

    async fn call(&self, _point: HookPoint, mut payload: Value) -> Decision {
        let call = self
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        payload["messages"][0]["text"] = if self.numbered {
            format!("Read every part (request {call}).").into()
        } else {
            "Read every part, briefly.".into()
        };
        Decision::Modify(json!({ "messages": payload["messages"] }))
    }
}

#[tokio::test]
async fn a_request_hook_that_rewrites_what_was_sent_is_warned_about_once() {
    for numbered in [false, true] {
        let hook = Arc::new(Rewriter {
            numbered,
            calls: Default::default(),
        });
        let h = harness(&script(big_reads(3, 5, 0), None), &[], false, hook);
        let (_, report) = run(&h, "gpt-4o").await;
        assert_eq!(report.outcome, SessionOutcome::Completed, "{report:?}");
        let requests = h.client.agent_requests();
        assert!(requests.len() >= 3);
        // The rewrite applies to each request; the same rewrite every
        // time still extends the previous request, a changing one does
        // not: said once.
        assert!(
            requests
                .iter()
                .all(|r| r.messages[0].text().starts_with("Read every part"))
        );
        let warned = warnings(&h)
            .into_iter()
            .filter(|w| {
                w.contains("pre-model-request hook changed messages an earlier request carried")
            })
            .count();
        assert_eq!(warned, usize::from(numbered), "numbered: {numbered}");
    }
}

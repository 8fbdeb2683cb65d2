//! The session turn loop on the scripted provider with test tools: parallel
//! read-only calls, ordered results, tool errors as data, caps, cancellation,
//! and a transcript flushed per message.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use orch::agents::{Agent, AgentSource};
use orch::config::{PermissionConfig, ToolsConfig};
use orch::events::{Event, EventBus, SessionOutcome};
use orch::provider::scripted::{Script, ScriptedClient};
use orch::provider::{EventStream, Message, ModelClient, ModelRequest, ToolSpec};
use orch::session::{Runtime, Session, SessionReport, SessionSetup};
use orch::tools::permissions::Permissions;
use orch::tools::{Tool, ToolContext, ToolOutput, ToolRegistry};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// A tool that sleeps, counting how many of its calls overlap.
struct Probe {
    name: &'static str,
    read_only: bool,
    in_flight: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    order: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl Tool for Probe {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name.into(),
            description: "test probe".into(),
            parameters: json!({"type": "object", "properties": {"tag": {"type": "string"}}}),
        }
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> ToolOutput {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let tag = args["tag"].as_str().unwrap_or("").to_string();
        self.order.lock().unwrap().push(format!("start {tag}"));
        let slept = tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(if tag == "slow" { 10_000 } else { 40 })) => true,
            _ = ctx.cancel.cancelled() => false,
        };
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if slept {
            ToolOutput::ok(format!("probe {tag}"))
        } else {
            ToolOutput::error("probe cancelled")
        }
    }
}

/// Records every request and how many lines the transcript had at that time.
struct Recording {
    inner: ScriptedClient,
    requests: Mutex<Vec<ModelRequest>>,
    transcript_lines: Mutex<Vec<usize>>,
    sessions_dir: PathBuf,
}

impl ModelClient for Recording {
    fn provider(&self) -> &'static str {
        "scripted"
    }

    fn stream(&self, request: ModelRequest, cancel: CancellationToken) -> EventStream {
        let lines = std::fs::read_dir(&self.sessions_dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| {
                        std::fs::read_to_string(e.path())
                            .unwrap_or_default()
                            .lines()
                            .count()
                    })
                    .sum()
            })
            .unwrap_or(0);
        self.transcript_lines.lock().unwrap().push(lines);
        self.requests.lock().unwrap().push(request.clone());
        self.inner.stream(request, cancel)
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    runtime: Runtime,
    client: Arc<Recording>,
    events: Arc<EventBus>,
    peak_read: Arc<AtomicUsize>,
    peak_write: Arc<AtomicUsize>,
    order: Arc<Mutex<Vec<String>>>,
}

fn harness(script: &str) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let client = Arc::new(Recording {
        inner: ScriptedClient::new(Script::parse(script, "test").unwrap()),
        requests: Mutex::default(),
        transcript_lines: Mutex::default(),
        sessions_dir: root.join(".opencode/sessions"),
    });
    let order = Arc::new(Mutex::new(Vec::new()));
    let peak_read = Arc::new(AtomicUsize::new(0));
    let peak_write = Arc::new(AtomicUsize::new(0));
    let mut tools = ToolRegistry::new();
    tools.insert(Arc::new(Probe {
        name: "look",
        read_only: true,
        in_flight: Arc::default(),
        peak: peak_read.clone(),
        order: order.clone(),
    }));
    tools.insert(Arc::new(Probe {
        name: "change",
        read_only: false,
        in_flight: Arc::default(),
        peak: peak_write.clone(),
        order: order.clone(),
    }));
    let events = Arc::new(EventBus::new());
    let runtime = Runtime {
        root: Arc::new(root),
        client: client.clone(),
        tools,
        permissions: Permissions::new(PermissionConfig::default(), false),
        events: events.clone(),
        limits: Arc::new(ToolsConfig::default()),
        memory: Arc::default(),
        hooks: Arc::new(orch::hooks::NoHooks),
        live: Default::default(),
    };
    Harness {
        _dir: dir,
        runtime,
        client,
        events,
        peak_read,
        peak_write,
        order,
    }
}

fn setup(max_turns: u32, token_budget: Option<u64>) -> SessionSetup {
    SessionSetup {
        agent: Agent {
            name: "Worker".into(),
            role: orch::agents::Role::Worker,
            description: "test".into(),
            prompt: "You are a test.".into(),
            tools: vec!["look".into(), "change".into()],
            model: None,
            source: AgentSource::Builtin,
        },
        model: "scripted".into(),
        max_turns,
        max_output_tokens: 1000,
        token_budget,
        repeat_limit: None,
        policy: Default::default(),
    }
}

async fn run(h: &Harness, setup: SessionSetup, cancel: &CancellationToken) -> SessionReport {
    let mut session = Session::new(h.runtime.clone(), setup).unwrap();
    session.run("go", cancel).await
}

fn tool_messages(request: &ModelRequest) -> Vec<(String, String, bool)> {
    request
        .messages
        .iter()
        .filter_map(|m| match m {
            Message::Tool {
                call_id,
                content,
                is_error,
                ..
            } => Some((call_id.clone(), content.clone(), *is_error)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn read_only_calls_overlap_and_others_run_alone_in_order() {
    let h = harness(
        r#"{"agents":{"Worker":[
          {"tool_calls":[
            {"name":"look","arguments":{"tag":"a"}},
            {"name":"look","arguments":{"tag":"b"}},
            {"name":"look","arguments":{"tag":"c"}},
            {"name":"change","arguments":{"tag":"d"}},
            {"name":"change","arguments":{"tag":"e"}},
            {"name":"look","arguments":{"tag":"f"}}]},
          {"text":"all done"}]}}"#,
    );
    let report = run(&h, setup(10, None), &CancellationToken::new()).await;
    assert_eq!(report.outcome, SessionOutcome::Completed);
    assert_eq!(report.final_text, "all done");
    assert_eq!(h.peak_read.load(Ordering::SeqCst), 3);
    assert_eq!(h.peak_write.load(Ordering::SeqCst), 1);
    let order = h.order.lock().unwrap().clone();
    assert_eq!(&order[3..], ["start d", "start e", "start f"]);

    // Results go back in call order, each with its call's id.
    let requests = h.client.requests.lock().unwrap();
    let results = tool_messages(&requests[1]);
    let contents: Vec<&str> = results.iter().map(|(_, c, _)| c.as_str()).collect();
    assert_eq!(
        contents,
        [
            "probe a", "probe b", "probe c", "probe d", "probe e", "probe f"
        ]
    );
    let ids: Vec<&str> = results.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "call_0_0", "call_0_1", "call_0_2", "call_0_3", "call_0_4", "call_0_5"
        ]
    );
    // The system prefix and tool list are identical from turn to turn.
    assert_eq!(requests[0].system, requests[1].system);
    assert_eq!(requests[0].tools, requests[1].tools);
}

#[tokio::test]
async fn bad_arguments_and_unknown_tools_go_back_to_the_model() {
    let h = harness(
        r#"{"agents":{"Worker":[
          {"tool_calls":[
            {"name":"look","arguments":"{\"tag\": \"a\""},
            {"name":"bash","arguments":{"command":"ls"}}]},
          {"text":"recovered"}]}}"#,
    );
    let report = run(&h, setup(10, None), &CancellationToken::new()).await;
    assert_eq!(report.outcome, SessionOutcome::Completed);
    let requests = h.client.requests.lock().unwrap();
    let results = tool_messages(&requests[1]);
    assert!(
        results[0].2 && results[0].1.contains("not valid JSON"),
        "{:?}",
        results[0]
    );
    // The agent's tool set is enforced: bash exists nowhere in this registry,
    // and the model is told which tools it has.
    assert!(results[1].2, "{:?}", results[1]);
    assert!(
        results[1].1.contains("unknown tool \"bash\""),
        "{}",
        results[1].1
    );
    assert!(results[1].1.contains("change, look"), "{}", results[1].1);
}

#[tokio::test]
async fn transcript_is_flushed_before_the_next_model_turn() {
    let h = harness(
        r#"{"agents":{"Worker":[
          {"tool_calls":[{"name":"look","arguments":{"tag":"a"}},{"name":"look","arguments":{"tag":"b"}}]},
          {"text":"done"}]}}"#,
    );
    run(&h, setup(10, None), &CancellationToken::new()).await;
    // Header + user before turn 1; + assistant + two tool results before turn 2.
    assert_eq!(*h.client.transcript_lines.lock().unwrap(), [2, 5]);
}

#[tokio::test]
async fn max_turns_and_token_budget_stop_the_session() {
    let call = r#"{"tool_calls":[{"name":"look","arguments":{"tag":"x"}}]}"#;
    let script = format!(r#"{{"agents":{{"Worker":[{call},{call},{call},{call}]}}}}"#);
    let h = harness(&script);
    let report = run(&h, setup(2, None), &CancellationToken::new()).await;
    assert_eq!(report.outcome, SessionOutcome::MaxTurns);
    assert_eq!(report.turns, 2);

    let h = harness(&script);
    let report = run(&h, setup(10, Some(1)), &CancellationToken::new()).await;
    assert_eq!(report.outcome, SessionOutcome::BudgetExceeded);
    assert_eq!(report.turns, 1);
    assert!(report.error.unwrap().contains("token budget spent"));
}

#[tokio::test]
async fn repeats_count_within_one_run_and_a_new_message_starts_them_over() {
    let look = r#"{"tool_calls":[{"name":"look","arguments":{"tag":"a"}}]}"#;
    // Two runs of two looks each: four in a row over the session, never
    // three within a run. A third run looks three times.
    let script = format!(
        r#"{{"agents":{{"Worker":[{look},{look},{{"text":"first done"}},{look},{look},{{"text":"second done"}},{look},{look},{look},{{"text":"never"}}]}}}}"#
    );
    let h = harness(&script);
    let mut session = Session::new(
        h.runtime.clone(),
        SessionSetup {
            repeat_limit: Some(3),
            ..setup(20, None)
        },
    )
    .unwrap();
    let cancel = CancellationToken::new();
    let first = session.run("look once", &cancel).await;
    assert_eq!(
        first.outcome,
        SessionOutcome::Completed,
        "{:?}",
        first.error
    );
    // The same call with the same result again, in a new run: new context.
    let second = session.run("look again", &cancel).await;
    assert_eq!(
        (second.outcome, second.final_text.as_str()),
        (SessionOutcome::Completed, "second done"),
        "{:?}",
        second.error
    );
    // Within one run the guard still stops the third look.
    let third = session.run("and again", &cancel).await;
    assert_eq!(
        third.outcome,
        SessionOutcome::Repeating,
        "{:?}",
        third.error
    );
    assert!(
        third.error.unwrap_or_default().contains("3 times in a row"),
        "the guard names the repeat"
    );
}

#[tokio::test]
async fn cancelling_stops_a_running_tool_and_the_session() {
    let h = harness(
        r#"{"agents":{"Worker":[
          {"tool_calls":[{"name":"change","arguments":{"tag":"slow"}}]},
          {"text":"never reached"}]}}"#,
    );
    let mut live = h.events.subscribe();
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        while let Ok(envelope) = live.recv().await {
            if matches!(envelope.event, Event::ToolCallBegin { .. }) {
                trigger.cancel();
            }
        }
    });
    let report = tokio::time::timeout(Duration::from_secs(5), run(&h, setup(10, None), &cancel))
        .await
        .expect("cancellation ends the session promptly");
    assert_eq!(report.outcome, SessionOutcome::Cancelled);
    assert_eq!(h.client.requests.lock().unwrap().len(), 1);
}

/// With a dollar budget, a task never starts on a model without a price:
/// an agent added mid-mission (a plugin's) whose model has none is refused,
/// and the delegating agent is told which key to set.
#[tokio::test]
async fn with_a_dollar_budget_an_agent_whose_model_has_no_price_gets_no_task() {
    use orch::agents::{AgentRegistry, Role};
    use orch::models::Prices;
    use orch::session::tasks::{SetupFor, Tasks};

    let delegate = |agent: &str| {
        json!({"tool_calls": [{"name": "delegate_task", "arguments": {
            "agent": agent, "description": "T1", "prompt": "Task T1: write the docs",
            "background": false}}]})
    };
    let script = json!({"agents": {
        "Commander": [delegate("DocWriter"), delegate("Scribe"), {"text": "done"}],
        "Scribe": [{"text": "T1: docs written."}],
        "DocWriter": [{"text": "T1: docs written."}]
    }});
    let h = harness(&script.to_string());
    let setup_for: SetupFor = Arc::new(|agent: &Agent| SessionSetup {
        agent: agent.clone(),
        model: agent
            .model
            .clone()
            .unwrap_or_else(|| "claude-sonnet-4-5".into()),
        max_turns: 10,
        max_output_tokens: 1000,
        token_budget: None,
        repeat_limit: None,
        policy: Default::default(),
    });
    let cancel = CancellationToken::new();
    let tasks = Tasks::new(
        h.runtime.clone(),
        AgentRegistry::builtin(),
        setup_for.clone(),
        Default::default(),
        Default::default(),
        2,
        cancel.clone(),
    );
    // Prices as for a hosted provider: nothing is free.
    tasks.keep_budget_with(Prices::new(Default::default(), false));
    let writer = |name: &str, model: &str| Agent {
        name: name.into(),
        role: Role::Custom,
        description: "writes docs".into(),
        prompt: "You write docs.".into(),
        tools: vec!["look".into()],
        model: Some(model.into()),
        source: AgentSource::Builtin,
    };
    let added = tasks.add_agents([
        writer("DocWriter", "qwen/qwen3-32b"),
        writer("Scribe", "claude-haiku-4-5"),
    ]);
    assert_eq!(added.len(), 2);
    let commander = AgentRegistry::builtin().find("Commander").unwrap().clone();
    let mut session = Session::new(tasks.runtime().clone(), setup_for(&commander)).unwrap();
    let report = session.run("Mission goal: docs", &cancel).await;
    assert_eq!(
        report.outcome,
        SessionOutcome::Completed,
        "{:?}",
        report.error
    );

    {
        let requests = h.client.requests.lock().unwrap();
        // The Commander's last request holds both delegations' results.
        let last = requests
            .iter()
            .rev()
            .find(|request| request.agent == "Commander")
            .unwrap();
        let answers = tool_messages(last);
        assert_eq!(answers.len(), 2, "{answers:?}");
        let (_, message, is_error) = &answers[0];
        assert!(is_error, "{message}");
        assert!(message.contains("has no price"), "{message}");
        assert!(message.contains(r#"model "qwen/qwen3-32b""#), "{message}");
        assert!(message.contains(r#"pricing."qwen/qwen3-32b""#), "{message}");
        let (_, ran, is_error) = &answers[1];
        assert!(!is_error && ran.contains("docs written"), "{ran}");
        // No session of it ever asked its model; the priced agent's task ran.
        assert!(requests.iter().all(|request| request.agent != "DocWriter"));
        assert!(requests.iter().any(|request| request.agent == "Scribe"));
    }

    // A resumed mission takes an unfinished task of it up again no more
    // than a new one: it ends failed, saying why, and is reported.
    let unfinished = orch::session::tasks::RestoredTask {
        agent: "DocWriter".into(),
        description: "docs".into(),
        prompt: "Write the docs".into(),
        status: orch::events::TaskStatus::Running,
        background: true,
        session: None,
        result: None,
        error: None,
        turns: 0,
        reported: false,
    };
    tasks.restore("task_9", unfinished, "commander-x").unwrap();
    let (report, running) = tasks.take_reports("commander-x").await;
    let report = report.expect("the refused task is reported").message;
    assert_eq!(running, 0, "{report}");
    assert!(report.contains("task_9 (DocWriter"), "{report}");
    assert!(report.contains(r#"pricing."qwen/qwen3-32b""#), "{report}");
    let requests = h.client.requests.lock().unwrap();
    assert!(requests.iter().all(|request| request.agent != "DocWriter"));
}

//! Requests that fit the model, against a loopback OpenAI-compatible server:
//! `max_tokens` never exceeds what the model writes or what its window has
//! left; a server that names the room in a context-length error is refitted,
//! not compacted; an empty turn cut at the output limit is asked again,
//! with a larger budget where the model allows one (twice fails the
//! session); a provider that counts far
//! fewer prompt tokens than were sent is warned about, naming `num_ctx`;
//! transient failures past the transport are taken up again from the
//! conversation.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orch::agents::{AgentRegistry, Role};
use orch::config::{MemoryConfig, ModelLimits, PermissionConfig, RetryConfig, Secret, ToolsConfig};
use orch::events::{Event, EventBus, SessionOutcome};
use orch::hooks::NoHooks;
use orch::memory::Memory;
use orch::provider::HttpSettings;
use orch::provider::openai::OpenAiClient;
use orch::session::{Runtime, Session, SessionSetup, TurnPolicy};
use orch::tools::ToolRegistry;
use orch::tools::permissions::Permissions;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::support::http::{Reply, Server};

struct Log(Arc<Mutex<Vec<Event>>>);

impl orch::events::EventSink for Log {
    fn write(&self, envelope: &orch::events::Envelope) {
        self.0.lock().unwrap().push(envelope.event.clone());
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    runtime: Runtime,
    log: Arc<Mutex<Vec<Event>>>,
}

impl Harness {
    fn warnings(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|event| match event {
                Event::Warning { message, .. } => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    fn compactions(&self) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|event| matches!(event, Event::ContextCompacted { .. }))
            .count()
    }
}

fn harness(server: &Server, models: BTreeMap<String, ModelLimits>, retry: RetryConfig) -> Harness {
    harness_with(server, models, retry, MemoryConfig::default())
}

fn harness_with(
    server: &Server,
    models: BTreeMap<String, ModelLimits>,
    retry: RetryConfig,
    memory: MemoryConfig,
) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let client = Arc::new(OpenAiClient::new(HttpSettings {
        base_url: format!("{}/v1", server.url()),
        api_key: Some(Secret::new("sk-test-0123456789")),
        retry,
        stream_idle_timeout: Duration::from_millis(500),
        turn_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
    }));
    let events = Arc::new(EventBus::new());
    let log = Arc::new(Mutex::new(Vec::new()));
    events.add_sink(Arc::new(Log(log.clone())));
    let runtime = Runtime {
        root: Arc::new(root),
        client,
        tools: ToolRegistry::builtins(),
        permissions: Permissions::new(PermissionConfig::default(), false),
        events,
        limits: Arc::new(ToolsConfig::default()),
        memory: Arc::new(Memory::in_memory(memory).with_models(models)),
        hooks: Arc::new(NoHooks),
        live: Default::default(),
    };
    Harness {
        _dir: dir,
        runtime,
        log,
    }
}

fn quick_retries(max_attempts: u32) -> RetryConfig {
    RetryConfig {
        max_attempts,
        base_delay_ms: 1,
        max_delay_ms: 5,
        deadline_ms: 30_000,
        max_retry_after_ms: 5_000,
        turn_retries: 0,
    }
}

fn setup(model: &str, max_output_tokens: u32, policy: TurnPolicy) -> SessionSetup {
    let mut agent = AgentRegistry::builtin().find("Worker").unwrap().clone();
    agent.tools = vec!["read".into()];
    assert_eq!(agent.role, Role::Worker);
    SessionSetup {
        agent,
        model: model.into(),
        max_turns: 10,
        max_output_tokens,
        token_budget: None,
        repeat_limit: None,
        policy,
    }
}

fn answer(text: &str, finish: &str, prompt_tokens: u64) -> Reply {
    let chunks = [
        json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]}),
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}),
        json!({"choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 5, "total_tokens": prompt_tokens + 5}}),
    ];
    let mut body: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    body.push_str("data: [DONE]\n\n");
    Reply::sse(&body, 32)
}

fn max_tokens(server: &Server, index: usize) -> u64 {
    let body: &Value = &server.requests()[index].body;
    body["max_tokens"]
        .as_u64()
        .or_else(|| body["max_completion_tokens"].as_u64())
        .expect("a max_tokens field")
}

#[tokio::test]
async fn max_tokens_never_exceeds_the_models_output_limit() {
    let server = Server::start(vec![answer("ok", "stop", 20), answer("ok", "stop", 20)]).await;
    let h = harness(&server, BTreeMap::new(), quick_retries(1));
    // gpt-4-turbo writes at most 4096 tokens; 8192 is configured.
    let mut session = Session::new(
        h.runtime.clone(),
        setup("gpt-4-turbo", 8192, TurnPolicy::default()),
    )
    .unwrap();
    let report = session.run("hello", &CancellationToken::new()).await;
    assert_eq!(
        report.outcome,
        SessionOutcome::Completed,
        "{:?}",
        report.error
    );
    assert_eq!(max_tokens(&server, 0), 4096);
    // A model with room for the configured output gets it.
    let mut session = Session::new(
        h.runtime.clone(),
        setup("gpt-4.1-mini", 8192, TurnPolicy::default()),
    )
    .unwrap();
    session.run("hello", &CancellationToken::new()).await;
    assert_eq!(max_tokens(&server, 1), 8192);
}

#[tokio::test]
async fn max_tokens_is_what_the_window_has_left_after_the_prompt() {
    let server = Server::start(vec![answer("ok", "stop", 3000)]).await;
    let models = BTreeMap::from([(
        "small-local".to_string(),
        ModelLimits {
            context_window: 6000,
            max_output: 4000,
        },
    )]);
    let h = harness(&server, models, quick_retries(1));
    // About 2 000 tokens of prompt in a 6 000-token window: less than the
    // configured 4 000 are left for output, more than the 1 000 reserve.
    let prompt = "count these words please ".repeat(400);
    let policy = TurnPolicy {
        min_output_tokens: 1000,
        ..TurnPolicy::default()
    };
    let mut session = Session::new(h.runtime.clone(), setup("small-local", 4000, policy)).unwrap();
    let report = session.run(&prompt, &CancellationToken::new()).await;
    assert_eq!(
        report.outcome,
        SessionOutcome::Completed,
        "{:?}",
        report.error
    );
    let sent = max_tokens(&server, 0);
    assert!((1000..4000).contains(&sent), "{sent}");
    assert_eq!(h.compactions(), 0);
}

#[tokio::test]
async fn a_prompt_that_leaves_less_than_the_output_reserve_is_compacted_first() {
    // The threshold is as late as it goes (the whole usable window), so
    // only the room left for output can call for the compaction: the
    // prompt below fits the window minus the 4 000-token reserve as
    // counted, but not with the margin other tokenizers may count more.
    let server = Server::responding(|_| answer("ok", "stop", 100)).await;
    let models = BTreeMap::from([(
        "big-local".to_string(),
        ModelLimits {
            context_window: 200_000,
            max_output: 8_000,
        },
    )]);
    let memory = MemoryConfig {
        compact_threshold: 1.0,
        ..MemoryConfig::default()
    };
    let h = harness_with(&server, models, quick_retries(1), memory);
    let policy = TurnPolicy {
        min_output_tokens: 4_000,
        ..TurnPolicy::default()
    };
    let mut session = Session::new(h.runtime.clone(), setup("big-local", 8_000, policy)).unwrap();
    let cancel = CancellationToken::new();
    // About 4 tokens a repetition: 150 000, then 35 000 more.
    let long = "count these words please ".repeat(37_500);
    let more = "and these words as well ".repeat(8_750);
    for prompt in ["hello", long.as_str()] {
        let report = session.run(prompt, &cancel).await;
        assert_eq!(
            report.outcome,
            SessionOutcome::Completed,
            "{:?}",
            report.error
        );
    }
    assert_eq!(h.compactions(), 0, "the conversation fit so far");
    let sent = server.requests().len();
    assert_eq!(max_tokens(&server, sent - 1), 8_000);
    let report = session.run(&more, &cancel).await;
    assert_eq!(
        report.outcome,
        SessionOutcome::Completed,
        "{:?}",
        report.error
    );
    assert_eq!(h.compactions(), 1, "{:?}", h.warnings());
    // The turn went out compacted, with its whole output budget.
    let last = server.requests().len() - 1;
    let body = server.requests()[last].body.to_string();
    assert!(
        !body.contains(&long[..1000]),
        "the long message was compacted"
    );
    assert!(body.contains(&more[..1000]), "the recent message was kept");
    assert_eq!(max_tokens(&server, last), 8_000);
}

#[tokio::test]
async fn a_context_length_error_that_names_the_room_is_refitted_not_compacted() {
    // vLLM with a max_model_len of 4096: the room is 4096 - 1000.
    let refusal = json!({"object": "error", "message": "This model's maximum context length is 4096 tokens. However, you requested 9192 tokens (1000 in the messages, 8192 in the completion). Please reduce the length of the messages or completion.", "type": "BadRequestError", "param": null, "code": 400});
    let server = Server::start(vec![
        Reply::json(400, &refusal),
        answer("fits now", "stop", 1000),
        answer("and again", "stop", 1000),
    ])
    .await;
    let h = harness(&server, BTreeMap::new(), quick_retries(1));
    let mut session = Session::new(
        h.runtime.clone(),
        setup("qwen2.5-coder:7b", 8192, TurnPolicy::default()),
    )
    .unwrap();
    let report = session.run("hello", &CancellationToken::new()).await;
    assert_eq!(
        report.outcome,
        SessionOutcome::Completed,
        "{:?}",
        report.error
    );
    assert_eq!(report.final_text, "fits now");
    assert_eq!(max_tokens(&server, 0), 8192);
    let refitted = max_tokens(&server, 1);
    assert!((2048..=3096).contains(&refitted), "{refitted}");
    assert_eq!(h.compactions(), 0, "a refit is not a compaction");
    // The session remembers the server's window, and says so once.
    session.run("more", &CancellationToken::new()).await;
    assert!(max_tokens(&server, 2) <= 3096);
    let told: Vec<String> = h
        .warnings()
        .into_iter()
        .filter(|w| w.contains("as its server says"))
        .collect();
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0].contains("window of 4096 tokens"), "{told:?}");
    assert!(told[0].contains(r#"models."qwen2.5-coder:7b""#), "{told:?}");
}

#[tokio::test]
async fn an_empty_turn_cut_at_the_limit_is_asked_again_with_more_room_and_twice_fails() {
    let empty = || {
        let body = format!(
            "data: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
            json!({"choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": null}]}),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}),
        );
        Reply::sse(&body, 16)
    };
    let server = Server::start(vec![
        empty(),
        answer("thought it through", "stop", 20),
        empty(),
        empty(),
    ])
    .await;
    let h = harness(&server, BTreeMap::new(), quick_retries(1));
    let mut session = Session::new(
        h.runtime.clone(),
        setup("gpt-4.1-mini", 2000, TurnPolicy::default()),
    )
    .unwrap();
    let report = session.run("hello", &CancellationToken::new()).await;
    assert_eq!(
        report.outcome,
        SessionOutcome::Completed,
        "{:?}",
        report.error
    );
    assert_eq!(report.final_text, "thought it through");
    assert_eq!(
        (max_tokens(&server, 0), max_tokens(&server, 1)),
        (2000, 4000)
    );
    assert!(
        h.warnings()
            .iter()
            .any(|w| w.ends_with("asking again with a larger output budget (4000 tokens)")),
        "{:?}",
        h.warnings()
    );
    // No empty assistant message ever reached the conversation.
    assert!(
        session
            .messages()
            .iter()
            .all(|m| !matches!(m, orch::provider::Message::Assistant { text, tool_calls } if text.is_empty() && tool_calls.is_empty()))
    );
    let report = session.run("again", &CancellationToken::new()).await;
    assert_eq!(report.outcome, SessionOutcome::Failed);
    assert!(
        report
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("no text and no tool call, twice"),
        "{:?}",
        report.error
    );
}

#[tokio::test]
async fn an_empty_cut_at_the_models_own_limit_is_asked_again_at_the_same_budget_and_says_so() {
    let empty = || {
        let body = format!(
            "data: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
            json!({"choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": null}]}),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}),
        );
        Reply::sse(&body, 16)
    };
    let server = Server::start(vec![empty(), answer("there it is", "stop", 20)]).await;
    let h = harness(&server, BTreeMap::new(), quick_retries(1));
    // gpt-4-turbo writes at most 4096 tokens, the budget asked already.
    let mut session = Session::new(
        h.runtime.clone(),
        setup("gpt-4-turbo", 4096, TurnPolicy::default()),
    )
    .unwrap();
    let report = session.run("hello", &CancellationToken::new()).await;
    assert_eq!(
        report.outcome,
        SessionOutcome::Completed,
        "{:?}",
        report.error
    );
    assert_eq!(report.final_text, "there it is");
    assert_eq!(
        (max_tokens(&server, 0), max_tokens(&server, 1)),
        (4096, 4096)
    );
    let cut: Vec<String> = h
        .warnings()
        .into_iter()
        .filter(|w| w.contains("no text and no tool call"))
        .collect();
    assert_eq!(cut.len(), 1, "{cut:?}");
    assert!(
        cut[0].ends_with("asking once more at the same output budget, the most this model writes or its window leaves"),
        "{cut:?}"
    );
    assert!(!cut[0].contains("larger"), "{cut:?}");
}

#[tokio::test]
async fn a_provider_that_cuts_the_prompt_is_warned_about_once_naming_num_ctx() {
    // Ollama with its default num_ctx counts 2048 of a much longer prompt.
    let server = Server::start(vec![answer("ok", "stop", 2048), answer("ok", "stop", 2048)]).await;
    let h = harness(&server, BTreeMap::new(), quick_retries(1));
    let long = "fn main() { println!(\"hello\"); }\n".repeat(600);
    let mut session = Session::new(
        h.runtime.clone(),
        setup("qwen2.5-coder:14b", 4096, TurnPolicy::default()),
    )
    .unwrap();
    session.run(&long, &CancellationToken::new()).await;
    session.run(&long, &CancellationToken::new()).await;
    let told: Vec<String> = h
        .warnings()
        .into_iter()
        .filter(|w| w.contains("num_ctx"))
        .collect();
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0].contains("counted 2048 prompt tokens"), "{told:?}");
    // A provider that counts what was sent is not warned about.
    let server = Server::start(vec![answer("ok", "stop", 20)]).await;
    let h = harness(&server, BTreeMap::new(), quick_retries(1));
    let mut session = Session::new(
        h.runtime.clone(),
        setup("qwen2.5-coder:14b", 4096, TurnPolicy::default()),
    )
    .unwrap();
    session.run("short", &CancellationToken::new()).await;
    assert!(h.warnings().iter().all(|w| !w.contains("num_ctx")));
}

#[tokio::test]
async fn a_turn_that_fails_past_the_transport_is_taken_up_again_from_the_conversation() {
    let overloaded = || {
        Reply::json(
            529,
            &json!({"error": {"message": "The server is overloaded", "type": "server_error"}}),
        )
    };
    let server = Server::start(vec![
        overloaded(),
        overloaded(),
        answer("made it", "stop", 20),
    ])
    .await;
    let h = harness(&server, BTreeMap::new(), quick_retries(1));
    let policy = TurnPolicy {
        turn_retries: 3,
        turn_retry_base: Duration::from_millis(10),
        turn_retry_max: Duration::from_millis(50),
        ..TurnPolicy::default()
    };
    let mut session = Session::new(h.runtime.clone(), setup("gpt-4.1-mini", 2000, policy)).unwrap();
    let report = session.run("hello", &CancellationToken::new()).await;
    assert_eq!(
        report.outcome,
        SessionOutcome::Completed,
        "{:?}",
        report.error
    );
    assert_eq!(report.final_text, "made it");
    assert_eq!(report.turns, 1, "only the failed turn was taken up again");
    // The same request each time: the conversation was not touched.
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].body["messages"], requests[2].body["messages"]);
    let told: Vec<String> = h
        .warnings()
        .into_iter()
        .filter(|w| w.contains("taking the turn up again"))
        .collect();
    assert_eq!(told.len(), 2, "{told:?}");
    // Without turn retries the failure ends the session.
    let server = Server::start(vec![overloaded()]).await;
    let h = harness(&server, BTreeMap::new(), quick_retries(1));
    let policy = TurnPolicy {
        turn_retries: 0,
        ..TurnPolicy::default()
    };
    let mut session = Session::new(h.runtime.clone(), setup("gpt-4.1-mini", 2000, policy)).unwrap();
    let report = session.run("hello", &CancellationToken::new()).await;
    assert_eq!(report.outcome, SessionOutcome::Failed);
}

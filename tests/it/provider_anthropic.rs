//! Anthropic provider against a loopback server.

use std::time::Duration;

use futures::StreamExt;
use orch::config::{RetryConfig, Secret};
use orch::provider::anthropic::AnthropicClient;
use orch::provider::{
    FinishReason, HttpSettings, Message, ModelClient, ModelRequest, ProviderError, StreamEvent,
    ToolCall, ToolSpec, Usage,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::support::http::{End, Reply, Server};

const KEY: &str = "sk-ant-test-0123456789abcdef";

fn settings(server: &Server) -> HttpSettings {
    HttpSettings {
        base_url: server.url(),
        api_key: Some(Secret::new(KEY)),
        retry: RetryConfig {
            max_attempts: 3,
            base_delay_ms: 1,
            max_delay_ms: 5,
            deadline_ms: 30_000,
            max_retry_after_ms: 5_000,
            turn_retries: 0,
        },
        stream_idle_timeout: Duration::from_millis(200),
        turn_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
    }
}

fn request() -> ModelRequest {
    ModelRequest {
        agent: "Worker".into(),
        session: "s1".into(),
        model: "claude-test".into(),
        system: "You are a coding agent.".into(),
        messages: vec![Message::user("Say hello")].into(),
        tools: vec![].into(),
        max_output_tokens: 2048,
        continued: true,
    }
}

fn tools() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: "read".into(),
            description: "Read a file".into(),
            parameters: json!({"type":"object","properties":{"path":{"type":"string"}},"required":["path"]}),
        },
        ToolSpec {
            name: "bash".into(),
            description: "Run a command".into(),
            parameters: json!({"type":"object","properties":{"command":{"type":"string"}}}),
        },
    ]
}

/// What one turn produced.
#[derive(Debug)]
struct Turn {
    events: Vec<StreamEvent>,
    error: Option<ProviderError>,
}

impl Turn {
    fn text(&self) -> String {
        self.events
            .iter()
            .filter_map(|event| match event {
                StreamEvent::TextDelta(text) => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The text a consumer keeps: what streamed after the last retry that
    /// discarded a partial turn.
    fn kept_text(&self) -> String {
        let start = self
            .events
            .iter()
            .rposition(|event| matches!(event, StreamEvent::Retry { discard: true, .. }))
            .map_or(0, |at| at + 1);
        self.events[start..]
            .iter()
            .filter_map(|event| match event {
                StreamEvent::TextDelta(text) => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// How many retries discarded a partial turn.
    fn discards(&self) -> usize {
        self.events
            .iter()
            .filter(|event| matches!(event, StreamEvent::Retry { discard: true, .. }))
            .count()
    }

    fn calls(&self) -> Vec<ToolCall> {
        self.events
            .iter()
            .filter_map(|event| match event {
                StreamEvent::ToolCall(call) => Some(call.clone()),
                _ => None,
            })
            .collect()
    }

    fn retries(&self) -> Vec<(u32, Duration, String)> {
        self.events
            .iter()
            .filter_map(|event| match event {
                StreamEvent::Retry {
                    attempt,
                    delay,
                    reason,
                    ..
                } => Some((*attempt, *delay, reason.clone())),
                _ => None,
            })
            .collect()
    }

    fn finish(&self) -> Option<FinishReason> {
        self.events.iter().find_map(|event| match event {
            StreamEvent::Finish(reason) => Some(reason.clone()),
            _ => None,
        })
    }

    fn usage(&self) -> Option<Usage> {
        self.events.iter().find_map(|event| match event {
            StreamEvent::Usage(usage) => Some(*usage),
            _ => None,
        })
    }
}

async fn turn(server: &Server, request: ModelRequest) -> Turn {
    let client = AnthropicClient::new(settings(server));
    let mut stream = client.stream(request, CancellationToken::new());
    let mut turn = Turn {
        events: Vec::new(),
        error: None,
    };
    let collect = async {
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => turn.events.push(event),
                Err(error) => {
                    turn.error = Some(error);
                    break;
                }
            }
        }
    };
    // A guard against hangs, not a performance assertion.
    tokio::time::timeout(Duration::from_secs(20), collect)
        .await
        .expect("the turn ends");
    for text in turn
        .error
        .iter()
        .map(|error| format!("{error} {error:?}"))
        .chain([format!("{client:?}")])
    {
        assert!(!text.contains(KEY), "key leaked into: {text}");
    }
    turn
}

/// Named SSE events, the name taken from each payload's `type`.
fn sse(events: &[Value]) -> String {
    events
        .iter()
        .map(|event| {
            format!(
                "event: {}\ndata: {event}\n\n",
                event["type"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn message_start() -> Value {
    json!({"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","content":[],
           "model":"claude-test","stop_reason":null,"stop_sequence":null,
           "usage":{"input_tokens":849,"cache_creation_input_tokens":120,"cache_read_input_tokens":1800,"output_tokens":1}}})
}

fn text_start(index: u64) -> Value {
    json!({"type":"content_block_start","index":index,"content_block":{"type":"text","text":""}})
}

fn text_delta(index: u64, text: &str) -> Value {
    json!({"type":"content_block_delta","index":index,"delta":{"type":"text_delta","text":text}})
}

fn tool_start(index: u64, id: &str, name: &str) -> Value {
    json!({"type":"content_block_start","index":index,"content_block":{"type":"tool_use","id":id,"name":name,"input":{}}})
}

fn json_delta(index: u64, partial: &str) -> Value {
    json!({"type":"content_block_delta","index":index,"delta":{"type":"input_json_delta","partial_json":partial}})
}

fn block_stop(index: u64) -> Value {
    json!({"type":"content_block_stop","index":index})
}

fn message_delta(reason: &str, output: u64) -> Value {
    json!({"type":"message_delta","delta":{"stop_reason":reason,"stop_sequence":null},
           "usage":{"input_tokens":849,"cache_creation_input_tokens":120,"cache_read_input_tokens":1800,"output_tokens":output}})
}

fn ping() -> Value {
    json!({"type":"ping"})
}

fn message_stop() -> Value {
    json!({"type":"message_stop"})
}

fn hello() -> String {
    sse(&[
        message_start(),
        text_start(0),
        text_delta(0, "Hello"),
        text_delta(0, ", world"),
        block_stop(0),
        message_delta("end_turn", 5),
        message_stop(),
    ])
}

fn error_body(kind: &str, message: &str) -> Value {
    json!({"type":"error","error":{"type":kind,"message":message},"request_id":"req_011"})
}

#[tokio::test]
async fn streams_text_with_usage_and_sends_the_cached_prefix() {
    let body = sse(&[
        message_start(),
        json!({"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}),
        json!({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let me think."}}),
        block_stop(0),
        ping(),
        text_start(1),
        text_delta(1, "Grüße, "),
        ping(),
        text_delta(1, "wörld 🦀"),
        block_stop(1),
        message_delta("end_turn", 47),
        message_stop(),
    ]);
    let server = Server::start(vec![Reply::sse(&body, 7)]).await;
    let turn = turn(&server, request()).await;

    assert!(turn.error.is_none(), "{:?}", turn.error);
    assert_eq!(turn.text(), "Grüße, wörld 🦀");
    assert_eq!(
        turn.usage(),
        Some(Usage {
            input: 849 + 1800 + 120,
            output: 47,
            cached_input: 1800,
            cache_write: 120,
            reasoning: 0,
        })
    );
    assert_eq!(turn.finish(), Some(FinishReason::Stop));
    assert!(matches!(turn.events.last(), Some(StreamEvent::Finish(_))));

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some(KEY));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert_eq!(sent.body["model"], "claude-test");
    assert_eq!(sent.body["max_tokens"], 2048);
    assert_eq!(sent.body["stream"], true);
    assert_eq!(
        sent.body["system"],
        json!([{"type": "text", "text": "You are a coding agent.", "cache_control": {"type": "ephemeral"}}])
    );
    assert_eq!(
        sent.body["messages"],
        json!([{"role": "user", "content": [
            {"type": "text", "text": "Say hello", "cache_control": {"type": "ephemeral"}},
        ]}])
    );
    assert!(sent.body.get("tools").is_none());
}

#[tokio::test]
async fn parallel_tool_use_and_the_history_sent_back() {
    let body = sse(&[
        message_start(),
        text_start(0),
        text_delta(0, "Checking both."),
        block_stop(0),
        tool_start(1, "toolu_01", "read"),
        json_delta(1, ""),
        json_delta(1, "{\"path\": \"src/"),
        json_delta(1, "main.rs\"}"),
        block_stop(1),
        tool_start(2, "toolu_02", "bash"),
        json_delta(2, "{\"command\": \"cargo test\"}"),
        block_stop(2),
        tool_start(3, "toolu_03", "list_agents"),
        block_stop(3),
        message_delta("tool_use", 90),
        message_stop(),
    ]);
    let server = Server::start(vec![Reply::sse(&body, 13)]).await;
    let mut request = request();
    request.tools = tools().into();
    request.messages = vec![
        Message::user("Fix the build"),
        Message::Assistant {
            text: "Looking.".into(),
            tool_calls: vec![
                ToolCall {
                    id: "toolu_a".into(),
                    name: "read".into(),
                    arguments: "{\"path\":\"Cargo.toml\"}".into(),
                },
                ToolCall {
                    id: "toolu_b".into(),
                    name: "bash".into(),
                    arguments: "{\"command\": ".into(),
                },
            ],
        },
        Message::Tool {
            call_id: "toolu_a".into(),
            name: "read".into(),
            content: "[package]".into(),
            is_error: false,
        },
        Message::Tool {
            call_id: "toolu_b".into(),
            name: "bash".into(),
            content: "invalid arguments: EOF while parsing".into(),
            is_error: true,
        },
        Message::user("Keep going."),
    ]
    .into();
    let turn = turn(&server, request).await;

    assert!(turn.error.is_none(), "{:?}", turn.error);
    assert_eq!(turn.text(), "Checking both.");
    assert_eq!(
        turn.calls(),
        vec![
            ToolCall {
                id: "toolu_01".into(),
                name: "read".into(),
                arguments: "{\"path\": \"src/main.rs\"}".into(),
            },
            ToolCall {
                id: "toolu_02".into(),
                name: "bash".into(),
                arguments: "{\"command\": \"cargo test\"}".into(),
            },
            ToolCall {
                id: "toolu_03".into(),
                name: "list_agents".into(),
                arguments: "{}".into(),
            },
        ]
    );
    assert_eq!(turn.finish(), Some(FinishReason::ToolCalls));

    let sent = &server.requests()[0].body;
    assert_eq!(
        sent["tools"],
        json!([
            {"name": "read", "description": "Read a file",
             "input_schema": {"type":"object","properties":{"path":{"type":"string"}},"required":["path"]}},
            {"name": "bash", "description": "Run a command",
             "input_schema": {"type":"object","properties":{"command":{"type":"string"}}}},
        ])
    );
    // Breakpoints: the system block (tools included), the end of the
    // request that produced the last assistant message, and the new end.
    assert_eq!(
        sent["system"][0]["cache_control"],
        json!({"type": "ephemeral"})
    );
    assert_eq!(
        sent["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "Fix the build", "cache_control": {"type": "ephemeral"}}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Looking."},
                {"type": "tool_use", "id": "toolu_a", "name": "read", "input": {"path": "Cargo.toml"}},
                {"type": "tool_use", "id": "toolu_b", "name": "bash", "input": {}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_a", "is_error": false, "content": "[package]"},
                {"type": "tool_result", "tool_use_id": "toolu_b", "is_error": true,
                 "content": "invalid arguments: EOF while parsing"},
                {"type": "text", "text": "Keep going.", "cache_control": {"type": "ephemeral"}},
            ]},
        ])
    );
}

#[tokio::test]
async fn malformed_tool_json_and_unknown_tools_pass_through() {
    let body = sse(&[
        message_start(),
        tool_start(0, "toolu_bad", "write"),
        json_delta(0, "{\"path\": \"a.rs\", \"content\": \"unterminated"),
        block_stop(0),
        tool_start(1, "toolu_ghost", "teleport"),
        json_delta(1, "{\"to\": \"mars\"}"),
        block_stop(1),
        message_delta("tool_use", 30),
        message_stop(),
    ]);
    let server = Server::start(vec![Reply::sse(&body, 9)]).await;
    let mut request = request();
    request.tools = tools().into();
    let turn = turn(&server, request).await;

    assert!(turn.error.is_none(), "{:?}", turn.error);
    assert_eq!(
        turn.calls(),
        vec![
            ToolCall {
                id: "toolu_bad".into(),
                name: "write".into(),
                arguments: "{\"path\": \"a.rs\", \"content\": \"unterminated".into(),
            },
            ToolCall {
                id: "toolu_ghost".into(),
                name: "teleport".into(),
                arguments: "{\"to\": \"mars\"}".into(),
            },
        ]
    );
}

#[tokio::test]
async fn overloaded_529_then_success() {
    let server = Server::start(vec![
        Reply::json(529, &error_body("overloaded_error", "Overloaded")),
        Reply::sse(&hello(), 5),
    ])
    .await;
    let turn = turn(&server, request()).await;

    assert!(turn.error.is_none(), "{:?}", turn.error);
    let retries = turn.retries();
    assert_eq!(retries.len(), 1);
    assert_eq!(retries[0].0, 2);
    assert!(retries[0].1 <= Duration::from_millis(5));
    assert!(retries[0].2.contains("http 529"), "{}", retries[0].2);
    assert!(
        retries[0].2.contains("overloaded_error"),
        "{}",
        retries[0].2
    );
    assert_eq!(turn.text(), "Hello, world");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn rate_limit_with_retry_after_then_api_error_then_success() {
    let server = Server::start(vec![
        Reply::json(
            429,
            &error_body(
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit",
            ),
        )
        .header("retry-after", "0.03"),
        Reply::json(500, &error_body("api_error", "Internal server error"))
            .header("retry-after-ms", "7"),
        Reply::sse(&hello(), 64),
    ])
    .await;
    let turn = turn(&server, request()).await;

    assert!(turn.error.is_none(), "{:?}", turn.error);
    let delays: Vec<Duration> = turn.retries().into_iter().map(|retry| retry.1).collect();
    assert_eq!(
        delays,
        [Duration::from_millis(30), Duration::from_millis(7)]
    );
    assert_eq!(turn.text(), "Hello, world");
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn mid_stream_overloaded_before_content_is_retried() {
    let body = sse(&[
        message_start(),
        ping(),
        json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}),
    ]);
    let server = Server::start(vec![Reply::sse(&body, 10), Reply::sse(&hello(), 10)]).await;
    let turn = turn(&server, request()).await;

    assert!(turn.error.is_none(), "{:?}", turn.error);
    let retries = turn.retries();
    assert_eq!(retries.len(), 1);
    assert!(
        retries[0].2.contains("overloaded_error"),
        "{}",
        retries[0].2
    );
    assert_eq!(turn.text(), "Hello, world");
    assert_eq!(turn.usage().map(|usage| usage.output), Some(5));
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn mid_stream_overloaded_after_content_starts_the_turn_over() {
    let body = sse(&[
        message_start(),
        text_start(0),
        text_delta(0, "Half an ans"),
        json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}),
    ]);
    let server = Server::start(vec![Reply::sse(&body, 10), Reply::sse(&hello(), 10)]).await;
    let turn = turn(&server, request()).await;

    assert!(turn.error.is_none(), "{:?}", turn.error);
    assert_eq!(turn.discards(), 1);
    assert!(
        turn.retries()[0].2.contains("Overloaded"),
        "{:?}",
        turn.retries()
    );
    assert_eq!(turn.kept_text(), "Hello, world");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn authentication_error_is_not_retried() {
    let server = Server::start(vec![
        Reply::json(
            401,
            &error_body("authentication_error", &format!("invalid x-api-key {KEY}")),
        ),
        Reply::sse(&hello(), 64),
    ])
    .await;
    let turn = turn(&server, request()).await;

    let error = turn.error.as_ref().expect("401 fails");
    assert!(
        matches!(
            error,
            ProviderError::Auth {
                status: Some(401),
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("invalid x-api-key"));
    assert!(turn.retries().is_empty());
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn empty_credit_balance_is_not_retried() {
    let server = Server::start(vec![
        Reply::json(
            400,
            &error_body(
                "invalid_request_error",
                "Your credit balance is too low to access the Anthropic API.",
            ),
        ),
        Reply::sse(&hello(), 64),
    ])
    .await;
    let turn = turn(&server, request()).await;

    assert!(
        matches!(turn.error, Some(ProviderError::Auth { .. })),
        "{:?}",
        turn.error
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn prompt_too_long_is_a_context_length_error() {
    let server = Server::start(vec![
        Reply::json(
            400,
            &error_body(
                "invalid_request_error",
                "prompt is too long: 208000 tokens > 200000 maximum",
            ),
        ),
        Reply::sse(&hello(), 64),
    ])
    .await;
    let turn = turn(&server, request()).await;

    let error = turn.error.as_ref().expect("context error");
    assert!(
        matches!(error, ProviderError::ContextLength { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("prompt is too long"));
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn context_window_stop_reason_is_a_context_length_error() {
    let body = sse(&[
        message_start(),
        text_start(0),
        text_delta(0, "Partial"),
        block_stop(0),
        message_delta("model_context_window_exceeded", 10),
        message_stop(),
    ]);
    let server = Server::start(vec![Reply::sse(&body, 64)]).await;
    let turn = turn(&server, request()).await;

    assert_eq!(turn.text(), "Partial");
    assert!(
        matches!(turn.error, Some(ProviderError::ContextLength { .. })),
        "{:?}",
        turn.error
    );
}

#[tokio::test]
async fn stop_reasons_map_to_finish_reasons() {
    for (reason, expected) in [
        ("max_tokens", FinishReason::Length),
        ("refusal", FinishReason::ContentFilter),
        ("stop_sequence", FinishReason::Stop),
        ("pause_turn", FinishReason::Other("pause_turn".into())),
    ] {
        let body = sse(&[
            message_start(),
            text_start(0),
            text_delta(0, "x"),
            block_stop(0),
            message_delta(reason, 2),
            message_stop(),
        ]);
        let server = Server::start(vec![Reply::sse(&body, 64)]).await;
        let turn = turn(&server, request()).await;
        assert!(turn.error.is_none(), "{reason}: {:?}", turn.error);
        assert_eq!(turn.finish(), Some(expected), "{reason}");
    }
}

#[tokio::test]
async fn connection_cut_after_content_starts_the_turn_over() {
    let body = [
        sse(&[message_start(), text_start(0), text_delta(0, "Hello")]),
        "event: content_block_delta\ndata: {\"type\":\"content_block_de".to_string(),
    ]
    .concat();
    let server = Server::start(vec![
        Reply::sse(&body, 12)
            .gap(Duration::from_millis(2))
            .end(End::Close),
        Reply::sse(&hello(), 64),
    ])
    .await;
    let turn = turn(&server, request()).await;

    assert!(turn.error.is_none(), "{:?}", turn.error);
    assert_eq!(turn.discards(), 1);
    assert_eq!(turn.kept_text(), "Hello, world");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn reset_before_any_content_is_retried() {
    let body = sse(&[message_start(), ping()]);
    let server = Server::start(vec![
        Reply::sse(&body, 16)
            .gap(Duration::from_millis(5))
            .end(End::Reset),
        Reply::sse(&hello(), 16),
    ])
    .await;
    let turn = turn(&server, request()).await;

    assert!(turn.error.is_none(), "{:?}", turn.error);
    assert_eq!(turn.retries().len(), 1);
    assert_eq!(turn.text(), "Hello, world");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn stalled_stream_after_content_starts_the_turn_over() {
    let body = sse(&[message_start(), text_start(0), text_delta(0, "Thinking")]);
    let server = Server::start(vec![
        Reply::sse(&body, 64).end(End::Stall),
        Reply::sse(&hello(), 64),
    ])
    .await;
    let turn = turn(&server, request()).await;

    assert!(turn.error.is_none(), "{:?}", turn.error);
    assert_eq!(turn.discards(), 1);
    assert!(
        turn.retries()[0].2.contains("stalled"),
        "{:?}",
        turn.retries()
    );
    assert_eq!(turn.kept_text(), "Hello, world");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn stalled_stream_before_content_is_retried() {
    let body = sse(&[message_start(), ping()]);
    let server = Server::start(vec![
        Reply::sse(&body, 64).end(End::Stall),
        Reply::sse(&hello(), 64),
    ])
    .await;
    let turn = turn(&server, request()).await;

    assert!(turn.error.is_none(), "{:?}", turn.error);
    assert_eq!(turn.retries().len(), 1);
    assert!(
        turn.retries()[0].2.contains("stalled"),
        "{}",
        turn.retries()[0].2
    );
    assert_eq!(turn.text(), "Hello, world");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn no_response_at_all_counts_as_a_stall_and_is_retried() {
    // The server reads the request and never sends a status line: waiting
    // for the response head is covered by the idle timeout too.
    let server = Server::start(vec![Reply::silence(), Reply::sse(&hello(), 64)]).await;
    let turn = turn(&server, request()).await;

    assert!(turn.error.is_none(), "{:?}", turn.error);
    assert_eq!(turn.retries().len(), 1);
    assert!(
        turn.retries()[0].2.contains("stalled"),
        "{}",
        turn.retries()[0].2
    );
    assert_eq!(turn.text(), "Hello, world");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn stop_reason_without_message_stop_still_completes() {
    let body = sse(&[
        message_start(),
        text_start(0),
        text_delta(0, "done"),
        block_stop(0),
        message_delta("end_turn", 3),
    ]);
    let server = Server::start(vec![Reply::sse(&body, 64).end(End::Close)]).await;
    let turn = turn(&server, request()).await;

    assert!(turn.error.is_none(), "{:?}", turn.error);
    assert_eq!(turn.text(), "done");
    assert_eq!(turn.finish(), Some(FinishReason::Stop));
    assert_eq!(turn.usage().map(|usage| usage.output), Some(3));
}

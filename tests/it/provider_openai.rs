//! OpenAI-compatible provider against a loopback server.

use std::time::Duration;

use futures::StreamExt;
use orch::config::{RetryConfig, Secret};
use orch::provider::openai::OpenAiClient;
use orch::provider::{
    FinishReason, HttpSettings, Message, ModelClient, ModelRequest, ProviderError, StreamEvent,
    ToolCall, ToolSpec, Usage,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::support::http::{End, Reply, Server};

const KEY: &str = "sk-test-0123456789abcdef";

fn settings(server: &Server, key: Option<&str>) -> HttpSettings {
    HttpSettings {
        base_url: format!("{}/v1", server.url()),
        api_key: key.map(Secret::new),
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

fn tools() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: "read".into(),
            description: "Read a file".into(),
            parameters: json!({"type":"object","properties":{"path":{"type":"string"}},"required":["path"]}),
        },
        ToolSpec {
            name: "grep".into(),
            description: "Search files".into(),
            parameters: json!({"type":"object","properties":{"pattern":{"type":"string"}}}),
        },
    ]
}

fn request() -> ModelRequest {
    ModelRequest {
        agent: "Worker".into(),
        session: "s1".into(),
        model: "gpt-test".into(),
        system: "You are a coding agent.".into(),
        messages: vec![Message::user("Say hello")].into(),
        tools: vec![].into(),
        max_output_tokens: 1024,
        continued: true,
    }
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

async fn run(client: &OpenAiClient, request: ModelRequest, cancel: CancellationToken) -> Turn {
    let mut stream = client.stream(request, cancel);
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
    if turn.error.is_none() {
        assert!(
            stream.next().await.is_none(),
            "nothing follows the end of a turn"
        );
    }
    turn
}

async fn turn(server: &Server, key: Option<&str>, request: ModelRequest) -> Turn {
    let client = OpenAiClient::new(settings(server, key));
    run(&client, request, CancellationToken::new()).await
}

/// An SSE body: one `data:` event per chunk, then `[DONE]`.
fn sse(chunks: &[Value]) -> String {
    let mut body: String = chunks
        .iter()
        .map(|chunk| format!("data: {chunk}\n\n"))
        .collect();
    body.push_str("data: [DONE]\n\n");
    body
}

fn text_chunk(text: &str) -> Value {
    json!({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-test",
           "choices":[{"index":0,"delta":{"content":text},"finish_reason":null}],"usage":null})
}

fn finish_chunk(reason: &str) -> Value {
    json!({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-test",
           "choices":[{"index":0,"delta":{},"finish_reason":reason}],"usage":null})
}

fn usage_chunk(prompt: u64, completion: u64, cached: u64) -> Value {
    json!({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-test","choices":[],
           "usage":{"prompt_tokens":prompt,"completion_tokens":completion,"total_tokens":prompt + completion,
                    "prompt_tokens_details":{"cached_tokens":cached}}})
}

fn tool_chunk(index: u64, id: Option<&str>, name: Option<&str>, arguments: &str) -> Value {
    let mut call = json!({"index": index, "function": {"arguments": arguments}});
    if let Some(id) = id {
        call["id"] = id.into();
        call["type"] = "function".into();
    }
    if let Some(name) = name {
        call["function"]["name"] = name.into();
    }
    json!({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-test",
           "choices":[{"index":0,"delta":{"tool_calls":[call]},"finish_reason":null}]})
}

fn hello() -> String {
    sse(&[
        text_chunk("Hello"),
        text_chunk(", world"),
        finish_chunk("stop"),
        usage_chunk(12, 3, 0),
    ])
}

fn error_body(message: &str, kind: &str, code: &str) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

#[tokio::test]
async fn streams_text_and_usage_through_every_quirk() {
    // Keep-alive comments, a data-only ping, `finish_reason: ""`, `usage: {}`,
    // a chunk without id/object, CRLF line endings, multi-byte text, and a
    // usage chunk carrying a dummy choice — all cut into 7-byte pieces.
    let body = [
        ": OPENROUTER PROCESSING\r\n\r\n".to_string(),
        format!(
            "data: {}\r\n\r\n",
            json!({"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]})
        ),
        "data: :ping\r\n\r\n".into(),
        format!(
            "data: {}\r\n\r\n",
            json!({"choices":[{"index":0,"delta":{"content":"Grüße, "},"finish_reason":""}],"usage":{}})
        ),
        format!("data: {}\r\n\r\n", text_chunk("wörld 🦀")),
        format!("data: {}\r\n\r\n", finish_chunk("stop")),
        format!(
            "data: {}\r\n\r\n",
            json!({"id":"c1","choices":[{"index":0,"delta":{}}],"usage":{"prompt_tokens":120,"completion_tokens":9,"total_tokens":129,"prompt_tokens_details":{"cached_tokens":100}}})
        ),
        "data: [DONE]\r\n\r\n".into(),
    ]
    .concat();
    let server = Server::start(vec![Reply::sse(&body, 7)]).await;
    let turn = turn(&server, Some(KEY), request()).await;

    assert!(turn.error.is_none(), "{:?}", turn.error);
    assert_eq!(turn.text(), "Grüße, wörld 🦀");
    assert_eq!(
        turn.usage(),
        Some(Usage {
            input: 120,
            output: 9,
            cached_input: 100,
            cache_write: 0,
            reasoning: 0,
        })
    );
    assert_eq!(turn.finish(), Some(FinishReason::Stop));
    assert!(turn.retries().is_empty());
    assert!(matches!(turn.events.last(), Some(StreamEvent::Finish(_))));

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert_eq!(sent.body["model"], "gpt-test");
    assert_eq!(sent.body["stream"], true);
    assert_eq!(sent.body["stream_options"], json!({"include_usage": true}));
    assert_eq!(sent.body["max_tokens"], 1024);
    assert_eq!(
        sent.body["messages"],
        json!([
            {"role": "system", "content": "You are a coding agent."},
            {"role": "user", "content": "Say hello"},
        ])
    );
    assert!(
        sent.body.get("tools").is_none(),
        "no tools key without tools"
    );
}

#[tokio::test]
async fn parallel_tool_calls_and_the_echoed_history() {
    let body = sse(&[
        tool_chunk(0, Some("call_a"), Some("read"), ""),
        tool_chunk(1, Some("call_b"), Some("grep"), ""),
        tool_chunk(0, None, None, "{\"path\":"),
        tool_chunk(1, None, None, "{\"pattern\":\"fn main\"}"),
        tool_chunk(0, None, None, "\"src/main.rs\"}"),
        finish_chunk("tool_calls"),
        usage_chunk(40, 20, 0),
    ]);
    let server = Server::start(vec![Reply::sse(&body, 11)]).await;
    let mut request = request();
    request.tools = tools().into();
    request.messages = vec![
        Message::user("Look around"),
        Message::Assistant {
            text: "Listing first.".into(),
            tool_calls: vec![ToolCall {
                id: "call_prev".into(),
                name: "list".into(),
                arguments: "{\"path\": \"src\"}".into(),
            }],
        },
        Message::Tool {
            call_id: "call_prev".into(),
            name: "list".into(),
            content: "main.rs\nlib.rs".into(),
            is_error: false,
        },
    ]
    .into();
    let turn = turn(&server, Some(KEY), request).await;

    assert!(turn.error.is_none(), "{:?}", turn.error);
    assert_eq!(
        turn.calls(),
        vec![
            ToolCall {
                id: "call_a".into(),
                name: "read".into(),
                arguments: "{\"path\":\"src/main.rs\"}".into(),
            },
            ToolCall {
                id: "call_b".into(),
                name: "grep".into(),
                arguments: "{\"pattern\":\"fn main\"}".into(),
            },
        ]
    );
    assert_eq!(turn.finish(), Some(FinishReason::ToolCalls));
    assert_eq!(turn.usage().map(|usage| usage.total()), Some(60));

    let sent = &server.requests()[0].body;
    assert_eq!(
        sent["tools"],
        json!([
            {"type": "function", "function": {"name": "read", "description": "Read a file",
              "parameters": {"type":"object","properties":{"path":{"type":"string"}},"required":["path"]}}},
            {"type": "function", "function": {"name": "grep", "description": "Search files",
              "parameters": {"type":"object","properties":{"pattern":{"type":"string"}}}}},
        ])
    );
    assert_eq!(
        sent["messages"],
        json!([
            {"role": "system", "content": "You are a coding agent."},
            {"role": "user", "content": "Look around"},
            {"role": "assistant", "content": "Listing first.", "tool_calls": [
                {"id": "call_prev", "type": "function",
                 "function": {"name": "list", "arguments": "{\"path\": \"src\"}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_prev", "content": "main.rs\nlib.rs"},
        ])
    );
}

#[tokio::test]
async fn ollama_without_key_same_index_new_ids_and_stop_with_calls() {
    let body = sse(&[
        tool_chunk(0, Some("call_1"), Some("read"), "{\"path\":\"a.rs\"}"),
        tool_chunk(0, Some("call_2"), Some("read"), "{\"path\":\"b.rs\"}"),
        finish_chunk("stop"),
    ]);
    let server = Server::start(vec![Reply::sse(&body, 5)]).await;
    let turn = turn(&server, None, request()).await;

    assert!(turn.error.is_none(), "{:?}", turn.error);
    let ids: Vec<String> = turn.calls().into_iter().map(|call| call.id).collect();
    assert_eq!(ids, ["call_1", "call_2"]);
    assert_eq!(turn.calls()[1].arguments, "{\"path\":\"b.rs\"}");
    assert_eq!(turn.finish(), Some(FinishReason::ToolCalls));
    assert_eq!(turn.usage(), None, "this server sent no usage");
    let sent = &server.requests()[0];
    assert_eq!(sent.header("authorization"), None);
}

#[tokio::test]
async fn malformed_arguments_and_unknown_tools_pass_through() {
    let body = sse(&[
        tool_chunk(
            0,
            Some("call_bad"),
            Some("write"),
            "{\"path\": \"a.rs\", \"content\": ",
        ),
        tool_chunk(1, Some("call_ghost"), Some("teleport"), "{\"to\":\"mars\"}"),
        finish_chunk("tool_calls"),
    ]);
    let server = Server::start(vec![Reply::sse(&body, 9)]).await;
    let mut request = request();
    request.tools = tools().into();
    let turn = turn(&server, Some(KEY), request).await;

    assert!(turn.error.is_none(), "{:?}", turn.error);
    assert_eq!(
        turn.calls(),
        vec![
            ToolCall {
                id: "call_bad".into(),
                name: "write".into(),
                arguments: "{\"path\": \"a.rs\", \"content\": ".into(),
            },
            ToolCall {
                id: "call_ghost".into(),
                name: "teleport".into(),
                arguments: "{\"to\":\"mars\"}".into(),
            },
        ]
    );
}

#[tokio::test]
async fn rate_limit_with_retry_after_ms_then_success() {
    let server = Server::start(vec![
        Reply::json(
            429,
            &error_body(
                "Rate limit reached for gpt-test",
                "requests",
                "rate_limit_exceeded",
            ),
        )
        .header("retry-after-ms", "15")
        .header("retry-after", "3"),
        Reply::sse(&hello(), 6),
    ])
    .await;
    let turn = turn(&server, Some(KEY), request()).await;

    assert!(turn.error.is_none(), "{:?}", turn.error);
    let retries = turn.retries();
    assert_eq!(retries.len(), 1);
    assert_eq!(retries[0].0, 2);
    assert_eq!(retries[0].1, Duration::from_millis(15));
    assert!(retries[0].2.contains("http 429"), "{}", retries[0].2);
    assert_eq!(turn.text(), "Hello, world");
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].body, requests[1].body,
        "a retry resends the same request"
    );
}

#[tokio::test]
async fn one_sessions_retry_after_holds_back_every_session_of_the_client() {
    // The first request of all gets a 429 asking for 0.4 s; every other
    // request is answered at once.
    let asked = Duration::from_millis(400);
    let answered = std::sync::atomic::AtomicUsize::new(0);
    let server = Server::responding(move |_| {
        if answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Reply::json(
                429,
                &error_body("slow down", "requests", "rate_limit_exceeded"),
            )
            .header("retry-after", "0.4")
        } else {
            Reply::sse(&hello(), 64)
        }
    })
    .await;
    let client = OpenAiClient::new(settings(&server, Some(KEY)));
    let second = ModelRequest {
        session: "s2".into(),
        messages: vec![Message::user("Say goodbye")].into(),
        ..request()
    };

    // Session one runs until the 429 has been seen and its retry announced.
    let mut first = client.stream(request(), CancellationToken::new());
    let announced = tokio::time::timeout(Duration::from_secs(10), first.next())
        .await
        .expect("the retry is announced");
    assert!(
        matches!(announced, Some(Ok(StreamEvent::Retry { .. }))),
        "{announced:?}"
    );
    // Session two, on the same client, starts only now; it never saw a 429.
    let (one, two) = tokio::join!(
        async {
            let mut events = Vec::new();
            while let Some(item) = first.next().await {
                events.push(item.expect("session one ends well"));
            }
            events
        },
        run(&client, second, CancellationToken::new()),
    );
    assert!(matches!(
        one.last(),
        Some(StreamEvent::Usage(_) | StreamEvent::Finish(_))
    ));
    assert!(two.error.is_none(), "{:?}", two.error);
    assert!(two.retries().is_empty(), "session two was never refused");

    let requests = server.requests();
    assert_eq!(requests.len(), 3, "one refused request and one per session");
    let refused = &requests[0];
    assert!(refused.body.to_string().contains("Say hello"));
    let seconds = requests
        .iter()
        .filter(|seen| seen.body.to_string().contains("Say goodbye"))
        .collect::<Vec<_>>();
    assert_eq!(seconds.len(), 1);
    // Session two's only request reached the server no sooner than the
    // retry-after the first session was given.
    let waited = seconds[0].at.duration_since(refused.at);
    assert!(waited >= asked, "session two asked after {waited:?}");
}

#[tokio::test]
async fn rate_limit_with_fractional_retry_after_seconds() {
    let server = Server::start(vec![
        Reply::json(
            429,
            &error_body("slow down", "requests", "rate_limit_exceeded"),
        )
        .header("retry-after", "0.02"),
        Reply::sse(&hello(), 64),
    ])
    .await;
    let turn = turn(&server, Some(KEY), request()).await;

    assert!(turn.error.is_none(), "{:?}", turn.error);
    assert_eq!(turn.retries()[0].1, Duration::from_millis(20));
    assert_eq!(turn.text(), "Hello, world");
}

#[tokio::test]
async fn retry_after_beyond_the_cap_fails_fast() {
    let server = Server::start(vec![
        Reply::json(
            429,
            &error_body("slow down", "requests", "rate_limit_exceeded"),
        )
        .header("retry-after", "3600"),
        Reply::sse(&hello(), 64),
    ])
    .await;
    let turn = turn(&server, Some(KEY), request()).await;

    assert!(matches!(
        turn.error,
        Some(ProviderError::Transient {
            status: Some(429),
            ..
        })
    ));
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn server_error_then_success() {
    let server = Server::start(vec![
        Reply::json(
            500,
            &error_body("The server had an error", "server_error", ""),
        ),
        Reply::json(503, &json!({"error": {"message": "Slow down"}})),
        Reply::sse(&hello(), 3),
    ])
    .await;
    let turn = turn(&server, Some(KEY), request()).await;

    assert!(turn.error.is_none(), "{:?}", turn.error);
    let retries = turn.retries();
    assert_eq!(
        retries.iter().map(|retry| retry.0).collect::<Vec<_>>(),
        [2, 3]
    );
    assert!(
        retries
            .iter()
            .all(|retry| retry.1 <= Duration::from_millis(5))
    );
    assert!(retries[0].2.contains("http 500"));
    assert!(retries[1].2.contains("http 503"));
    assert_eq!(turn.text(), "Hello, world");
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn gives_up_after_max_attempts() {
    let failure = || Reply::json(502, &json!({"error": {"message": "bad gateway"}}));
    let server = Server::start(vec![
        failure(),
        failure(),
        failure(),
        Reply::sse(&hello(), 64),
    ])
    .await;
    let turn = turn(&server, Some(KEY), request()).await;

    assert_eq!(turn.retries().len(), 2);
    assert!(matches!(
        turn.error,
        Some(ProviderError::Transient {
            status: Some(502),
            ..
        })
    ));
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn unauthorized_is_not_retried_and_never_shows_the_key() {
    let server = Server::start(vec![
        Reply::json(
            401,
            &error_body(
                &format!("Incorrect API key provided: {KEY}."),
                "invalid_request_error",
                "invalid_api_key",
            ),
        ),
        Reply::sse(&hello(), 64),
    ])
    .await;
    let client = OpenAiClient::new(settings(&server, Some(KEY)));
    let turn = run(&client, request(), CancellationToken::new()).await;

    let error = turn.error.as_ref().expect("401 fails the turn");
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
    assert!(turn.retries().is_empty());
    assert_eq!(server.requests().len(), 1);
    for text in [
        error.to_string(),
        format!("{error:?}"),
        format!("{client:?}"),
    ] {
        assert!(!text.contains(KEY), "key leaked into: {text}");
    }
    assert!(error.to_string().contains("Incorrect API key provided"));
}

#[tokio::test]
async fn quota_exhausted_is_not_retried() {
    let server = Server::start(vec![
        Reply::json(
            429,
            &error_body(
                "You exceeded your current quota, please check your plan and billing details.",
                "insufficient_quota",
                "insufficient_quota",
            ),
        )
        .header("retry-after", "1"),
        Reply::sse(&hello(), 64),
    ])
    .await;
    let turn = turn(&server, Some(KEY), request()).await;

    assert!(
        matches!(
            turn.error,
            Some(ProviderError::Auth {
                status: Some(429),
                ..
            })
        ),
        "{:?}",
        turn.error
    );
    assert!(turn.retries().is_empty());
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn context_length_is_classified_and_not_retried() {
    let server = Server::start(vec![
        Reply::json(
            400,
            &error_body(
                "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.",
                "invalid_request_error",
                "context_length_exceeded",
            ),
        ),
        Reply::sse(&hello(), 64),
    ])
    .await;
    let turn = turn(&server, Some(KEY), request()).await;

    let error = turn.error.as_ref().expect("context error");
    assert!(
        matches!(error, ProviderError::ContextLength { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("maximum context length"));
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn bad_request_is_fatal() {
    let server = Server::start(vec![Reply::json(
        400,
        &error_body(
            "Invalid 'messages[1].role'",
            "invalid_request_error",
            "invalid_value",
        ),
    )])
    .await;
    let turn = turn(&server, Some(KEY), request()).await;

    assert!(matches!(
        turn.error,
        Some(ProviderError::Fatal {
            status: Some(400),
            ..
        })
    ));
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn connection_cut_after_content_starts_the_turn_over() {
    let body = format!(
        "data: {}\n\ndata: {}\n\ndata: {{\"choi",
        text_chunk("Hello"),
        text_chunk(", wor")
    );
    let server = Server::start(vec![
        Reply::sse(&body, 10)
            .gap(Duration::from_millis(2))
            .end(End::Close),
        Reply::sse(&hello(), 64),
    ])
    .await;
    let turn = turn(&server, Some(KEY), request()).await;

    // What streamed before the cut is void; the whole turn comes again.
    assert!(turn.error.is_none(), "{:?}", turn.error);
    assert_eq!(turn.discards(), 1);
    assert_eq!(turn.kept_text(), "Hello, world");
    assert_eq!(turn.finish(), Some(FinishReason::Stop));
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn reset_before_any_content_is_retried() {
    let server = Server::start(vec![
        Reply::sse(": keep-alive\n\ndata: {\"id\":\"c1\",\"cho", 8)
            .gap(Duration::from_millis(5))
            .end(End::Reset),
        Reply::sse(&hello(), 4),
    ])
    .await;
    let turn = turn(&server, Some(KEY), request()).await;

    assert!(turn.error.is_none(), "{:?}", turn.error);
    assert_eq!(turn.retries().len(), 1);
    assert_eq!(turn.text(), "Hello, world");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn tool_fragments_cut_before_the_finish_are_retried() {
    // Tool calls are emitted only once complete, so a turn cut while their
    // arguments stream has shown the caller nothing and can start over.
    let body = format!(
        "data: {}\n\n",
        tool_chunk(0, Some("call_a"), Some("read"), "{\"pa")
    );
    let server = Server::start(vec![
        Reply::sse(&body, 16).end(End::Close),
        Reply::sse(
            &sse(&[
                tool_chunk(0, Some("call_b"), Some("read"), "{\"path\":\"x\"}"),
                finish_chunk("tool_calls"),
            ]),
            16,
        ),
    ])
    .await;
    let turn = turn(&server, Some(KEY), request()).await;

    assert!(turn.error.is_none(), "{:?}", turn.error);
    assert_eq!(turn.retries().len(), 1);
    assert_eq!(turn.calls().len(), 1);
    assert_eq!(turn.calls()[0].id, "call_b");
}

#[tokio::test]
async fn stalled_stream_after_content_starts_the_turn_over() {
    let body = format!("data: {}\n\n", text_chunk("Thinking"));
    let server = Server::start(vec![
        Reply::sse(&body, 64).end(End::Stall),
        Reply::sse(&hello(), 64),
    ])
    .await;
    let turn = turn(&server, Some(KEY), request()).await;

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
async fn when_retries_stop_the_error_says_which_limit_ran_out() {
    let server = Server::start(vec![
        Reply::sse(": processing\n\n", 64).end(End::Stall),
        Reply::sse(": processing\n\n", 64).end(End::Stall),
        Reply::sse(": processing\n\n", 64).end(End::Stall),
    ])
    .await;
    let turn = turn(&server, Some(KEY), request()).await;
    let error = turn.error.expect("the stalls end the turn").to_string();
    assert!(
        error.contains("stream stalled: no data for 0.2 s (session.stream_idle_timeout_ms)"),
        "{error}"
    );
    assert!(
        error.contains("gave up after 3 attempts (retry.max_attempts)"),
        "{error}"
    );
}

#[tokio::test]
async fn stalled_stream_before_content_is_retried() {
    let server = Server::start(vec![
        Reply::sse(": processing\n\n", 64).end(End::Stall),
        Reply::sse(&hello(), 64),
    ])
    .await;
    let turn = turn(&server, Some(KEY), request()).await;

    assert!(turn.error.is_none(), "{:?}", turn.error);
    let retries = turn.retries();
    assert_eq!(retries.len(), 1);
    assert!(retries[0].2.contains("stalled"), "{}", retries[0].2);
    assert_eq!(turn.text(), "Hello, world");
}

#[tokio::test]
async fn finish_without_done_still_completes() {
    let body = [
        "data: ",
        &text_chunk("ok").to_string(),
        "\n\ndata: ",
        &finish_chunk("length").to_string(),
        "\n\n",
    ]
    .concat();
    let server = Server::start(vec![Reply::sse(&body, 64).end(End::Close)]).await;
    let turn = turn(&server, Some(KEY), request()).await;

    assert!(turn.error.is_none(), "{:?}", turn.error);
    assert_eq!(turn.text(), "ok");
    assert_eq!(turn.finish(), Some(FinishReason::Length));
}

#[tokio::test]
async fn openrouter_error_events_before_and_after_content_are_retried() {
    let upstream_error = json!({"error": {"code": 502, "message": "Provider disconnected"}});
    let server = Server::start(vec![
        Reply::sse(&sse(std::slice::from_ref(&upstream_error)), 64),
        Reply::sse(&sse(&[text_chunk("partial"), upstream_error]), 64),
        Reply::sse(&hello(), 64),
    ])
    .await;
    let turn = turn(&server, Some(KEY), request()).await;

    assert!(turn.error.is_none(), "{:?}", turn.error);
    assert_eq!(turn.retries().len(), 2);
    assert!(turn.retries()[0].2.contains("Provider disconnected"));
    // The first failed before content, the second after it.
    assert_eq!(turn.discards(), 1);
    assert_eq!(turn.kept_text(), "Hello, world");
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn cancel_interrupts_the_retry_wait() {
    let server = Server::start(vec![
        Reply::json(
            429,
            &error_body("slow down", "requests", "rate_limit_exceeded"),
        )
        .header("retry-after-ms", "4000"),
        Reply::sse(&hello(), 64),
    ])
    .await;
    let client = OpenAiClient::new(settings(&server, Some(KEY)));
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        trigger.cancel();
    });
    let turn = run(&client, request(), cancel).await;
    canceller.await.expect("canceller ran");

    assert_eq!(turn.retries().len(), 1);
    assert_eq!(turn.retries()[0].1, Duration::from_millis(4000));
    assert!(matches!(turn.error, Some(ProviderError::Cancelled)));
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn cancel_interrupts_a_silent_stream() {
    let server = Server::start(vec![Reply::sse("", 64).end(End::Stall)]).await;
    let mut long_idle = settings(&server, Some(KEY));
    long_idle.stream_idle_timeout = Duration::from_secs(60);
    let client = OpenAiClient::new(long_idle);
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        trigger.cancel();
    });
    let turn = run(&client, request(), cancel).await;
    canceller.await.expect("canceller ran");

    assert!(matches!(turn.error, Some(ProviderError::Cancelled)));
}

#[tokio::test]
async fn compatible_servers_get_max_tokens() {
    // Only the loopback host can be reached here; the OpenAI-host rule is
    // covered by the unit tests. This checks the compatible default.
    let server = Server::start(vec![Reply::sse(&hello(), 64)]).await;
    let turn = turn(&server, None, request()).await;
    assert!(turn.error.is_none());
    let body = &server.requests()[0].body;
    assert_eq!(body["max_tokens"], 1024);
    assert!(body.get("max_completion_tokens").is_none());
}

#[tokio::test]
async fn a_server_that_ignores_stream_true_still_works() {
    let completion = json!({
        "id": "chatcmpl-123", "object": "chat.completion", "created": 1, "model": "gpt-test",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hello, world"}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
    });
    let server = Server::start(vec![Reply::json(200, &completion)]).await;
    let turn = turn(&server, Some(KEY), request()).await;

    assert!(turn.error.is_none(), "{:?}", turn.error);
    assert_eq!(turn.text(), "Hello, world");
    assert_eq!(turn.usage().map(|usage| usage.total()), Some(12));
    assert_eq!(turn.finish(), Some(FinishReason::Stop));
}

#[tokio::test]
async fn an_error_document_with_status_200_is_classified() {
    let server = Server::start(vec![
        Reply::json(
            200,
            &error_body("upstream overloaded", "server_error", "server_error"),
        ),
        Reply::sse(&hello(), 64),
    ])
    .await;
    let turn = turn(&server, Some(KEY), request()).await;

    assert!(turn.error.is_none(), "{:?}", turn.error);
    assert_eq!(turn.retries().len(), 1);
    assert!(turn.retries()[0].2.contains("upstream overloaded"));
    assert_eq!(turn.text(), "Hello, world");
}

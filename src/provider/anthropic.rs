//! Anthropic Messages client: streamed turns with `tool_use` blocks, prompt
//! caching of the stable prefix, and Anthropic's usage accounting normalized.
//!
//! The request marks three cache breakpoints (of the four allowed): the last
//! tool, the system block, and the last block of the conversation. Tools and
//! system are the stable prefix every turn of an agent shares; the moving
//! breakpoint at the end lets the next turn of the same conversation read
//! everything before it from the cache instead of paying for it again.

use std::fmt;

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::http::{Decoder, Prepared, Transport};
use super::retry::{ServerHints, classify_anthropic};
use super::sse::SseEvent;
use super::{
    EventStream, FinishReason, HttpSettings, Message, ModelClient, ModelRequest, ProviderError,
    StreamEvent, ToolCall, Usage,
};

const PROVIDER: &str = "anthropic";
const API_VERSION: &str = "2023-06-01";

pub struct AnthropicClient {
    transport: Transport,
    url: String,
}

impl fmt::Debug for AnthropicClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnthropicClient")
            .field("url", &self.url)
            .field("transport", &self.transport)
            .finish()
    }
}

impl AnthropicClient {
    /// `settings.base_url` is without the version path, e.g.
    /// `https://api.anthropic.com`.
    pub fn new(settings: HttpSettings) -> Self {
        AnthropicClient {
            url: format!("{}/v1/messages", settings.base_url.trim_end_matches('/')),
            transport: Transport::new(PROVIDER, &settings),
        }
    }

    fn headers(&self) -> Result<HeaderMap, ProviderError> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        headers.insert(
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(API_VERSION),
        );
        if let Some(key) = self.transport.key() {
            let mut value =
                HeaderValue::from_str(key.expose()).map_err(|_| ProviderError::Fatal {
                    provider: PROVIDER,
                    status: None,
                    message: "the api key contains characters not allowed in an http header".into(),
                })?;
            value.set_sensitive(true);
            headers.insert(HeaderName::from_static("x-api-key"), value);
        }
        Ok(headers)
    }
}

impl ModelClient for AnthropicClient {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn stream(&self, request: ModelRequest, cancel: CancellationToken) -> EventStream {
        let prepared = self.headers().and_then(|headers| {
            let body = serde_json::to_vec(&request_body(&request)).map_err(|err| {
                ProviderError::Fatal {
                    provider: PROVIDER,
                    status: None,
                    message: format!("cannot encode the request: {err}"),
                }
            })?;
            Ok(Prepared {
                url: self.url.clone(),
                headers,
                body: Bytes::from(body),
            })
        });
        match prepared {
            Ok(prepared) => self.transport.stream(
                prepared,
                classify_anthropic,
                AnthropicDecoder::default,
                cancel,
            ),
            Err(err) => Box::pin(futures::stream::iter([Err(err)])),
        }
    }
}

fn ephemeral() -> Value {
    json!({ "type": "ephemeral" })
}

/// The Messages request for one turn, with its prompt-cache breakpoints
/// (see `messages` for the conversation's).
///
/// A cached prefix runs tools → system → messages, so the system block's
/// breakpoint caches the tool list too, shared by every session of an
/// agent and kept by a session the pool hands out again; without a system
/// prompt, the last tool carries it. Public so benchmarks bill exactly
/// what is sent.
pub fn request_body(request: &ModelRequest) -> Value {
    let mut body = json!({
        "model": request.model,
        "max_tokens": request.max_output_tokens,
        "stream": true,
        "messages": messages(&request.messages, request.continued),
    });
    if !request.system.is_empty() {
        body["system"] = json!([{
            "type": "text",
            "text": request.system,
            "cache_control": ephemeral(),
        }]);
    }
    if !request.tools.is_empty() {
        let mut tools: Vec<Value> = request
            .tools
            .iter()
            .map(|tool| {
                let schema = if tool.parameters.is_object() {
                    tool.parameters.clone()
                } else {
                    json!({ "type": "object", "properties": {} })
                };
                json!({ "name": tool.name, "description": tool.description, "input_schema": schema })
            })
            .collect();
        if request.system.is_empty()
            && let Some(last) = tools.last_mut()
        {
            last["cache_control"] = ephemeral();
        }
        body["tools"] = tools.into();
    }
    body
}

/// The conversation as Anthropic wants it: roles alternate, so consecutive
/// same-role content merges into one message (all results of one tool round
/// become one `user` message, tool results first); empty text is left out,
/// since the API rejects empty text blocks.
///
/// Two breakpoints: the end of the conversation (written for the next
/// request), and the end of what the request that produced the latest
/// assistant message carried — the session's previous request, whose end
/// was cached then. Reading at that exact block, not by the server's
/// lookback of about 20 blocks, hits however many tool results the last
/// round added. With the system block that makes three of the four
/// breakpoints a request may carry. A request nothing will extend
/// (`continued` false: a summary asked of the conversation) marks no end:
/// it reads what the previous request cached and writes nothing, since its
/// end is never read again.
fn messages(list: &[Message], continued: bool) -> Vec<Value> {
    let previous_end = list
        .iter()
        .rposition(|message| matches!(message, Message::Assistant { .. }));
    let mut merged: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (index, message) in list.iter().enumerate() {
        let (role, blocks) = match message {
            Message::User { text } => ("user", text_block(text).into_iter().collect()),
            Message::Assistant { text, tool_calls } => {
                let mut blocks: Vec<Value> = text_block(text).into_iter().collect();
                blocks.extend(tool_calls.iter().map(|call| {
                    json!({
                        "type": "tool_use",
                        "id": call.id,
                        "name": call.name,
                        "input": tool_input(&call.arguments),
                    })
                }));
                ("assistant", blocks)
            }
            Message::Tool {
                call_id,
                content,
                is_error,
                ..
            } => {
                let mut block = json!({
                    "type": "tool_result",
                    "tool_use_id": call_id,
                    "is_error": is_error,
                });
                if !content.is_empty() {
                    block["content"] = content.as_str().into();
                }
                ("user", vec![block])
            }
        };
        if !blocks.is_empty() {
            match merged.last_mut() {
                Some((last_role, last)) if *last_role == role => last.extend(blocks),
                _ => merged.push((role, blocks)),
            }
        }
        if Some(index + 1) == previous_end
            && let Some(last) = merged.last_mut().and_then(|(_, blocks)| blocks.last_mut())
        {
            last["cache_control"] = ephemeral();
        }
    }
    for (role, blocks) in &mut merged {
        if *role == "user" {
            // Stable: tool results keep their order, then the rest.
            blocks.sort_by_key(|block| block["type"] != "tool_result");
        }
    }
    if continued && let Some(last) = merged.last_mut().and_then(|(_, blocks)| blocks.last_mut()) {
        last["cache_control"] = ephemeral();
    }
    merged
        .into_iter()
        .map(|(role, content)| json!({ "role": role, "content": content }))
        .collect()
}

fn text_block(text: &str) -> Option<Value> {
    (!text.trim().is_empty()).then(|| json!({ "type": "text", "text": text }))
}

/// `tool_use.input` must be an object; arguments the model got wrong are sent
/// as `{}` (the model already saw the parse error as the tool's result).
fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(map)) => Value::Object(map),
        _ => Value::Object(Map::new()),
    }
}

/// A `tool_use` block being streamed.
#[derive(Debug)]
struct ToolBlock {
    index: u64,
    id: String,
    name: String,
    /// `input_json_delta` pieces, concatenated.
    json: String,
    /// The `input` of `content_block_start`, used when no delta follows.
    initial: Option<String>,
}

impl ToolBlock {
    fn into_call(self) -> ToolCall {
        let arguments = if !self.json.trim().is_empty() {
            self.json
        } else {
            self.initial.unwrap_or_else(|| "{}".to_string())
        };
        ToolCall {
            id: self.id,
            name: self.name,
            arguments,
        }
    }
}

/// Anthropic's usage fields as they arrive: `message_start` sets them,
/// `message_delta` overwrites the ones it carries (they are cumulative).
#[derive(Debug, Default, Clone, Copy)]
struct RawUsage {
    input: u64,
    output: u64,
    cache_read: u64,
    cache_creation: u64,
}

impl RawUsage {
    fn update(&mut self, usage: &Value) {
        let count = |key: &str| usage.get(key).and_then(Value::as_u64);
        if let Some(value) = count("input_tokens") {
            self.input = value;
        }
        if let Some(value) = count("output_tokens") {
            self.output = value;
        }
        if let Some(value) = count("cache_read_input_tokens") {
            self.cache_read = value;
        }
        if let Some(value) = count("cache_creation_input_tokens") {
            self.cache_creation = value;
        }
    }

    /// Anthropic counts cache reads and writes beside `input_tokens`; the
    /// normalized `input` counts every prompt token.
    fn normalized(&self) -> Usage {
        Usage {
            input: self.input + self.cache_read + self.cache_creation,
            output: self.output,
            cached_input: self.cache_read,
            cache_write: self.cache_creation,
            reasoning: 0,
        }
    }
}

/// Decodes a Messages stream: text and `tool_use` blocks, cumulative usage,
/// the stop reason, and mid-stream `error` events.
#[derive(Debug, Default)]
struct AnthropicDecoder {
    tools: Vec<ToolBlock>,
    usage: Option<RawUsage>,
    stop_reason: Option<String>,
    tool_calls: usize,
    done: bool,
}

impl Decoder for AnthropicDecoder {
    fn event(&mut self, event: SseEvent) -> Result<Vec<StreamEvent>, ProviderError> {
        let data = event.data.trim();
        if !data.starts_with('{') {
            return Ok(Vec::new());
        }
        let value: Value = serde_json::from_str(data).map_err(|err| ProviderError::Transient {
            provider: PROVIDER,
            status: None,
            message: format!("malformed stream event: {err}"),
            retry_after: None,
        })?;
        // The event name always equals the JSON `type`; either will do.
        let kind = value
            .get("type")
            .and_then(Value::as_str)
            .or(event.event.as_deref())
            .unwrap_or_default();
        let index = value.get("index").and_then(Value::as_u64).unwrap_or(0);
        let mut out = Vec::new();
        match kind {
            "message_start" => {
                if let Some(usage) = value.pointer("/message/usage") {
                    self.usage.get_or_insert_default().update(usage);
                }
            }
            "content_block_start" => {
                let block = value.get("content_block").unwrap_or(&Value::Null);
                let text = |key: &str| {
                    block
                        .get(key)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let initial = text("text");
                        if !initial.is_empty() {
                            out.push(StreamEvent::TextDelta(initial));
                        }
                    }
                    Some("tool_use") => {
                        let initial = block
                            .get("input")
                            .filter(|input| input.as_object().is_some_and(|map| !map.is_empty()))
                            .map(Value::to_string);
                        self.tools.push(ToolBlock {
                            index,
                            id: text("id"),
                            name: text("name"),
                            json: String::new(),
                            initial,
                        });
                    }
                    // Thinking and server-side tool blocks are not part of
                    // the turn the session sees.
                    _ => {}
                }
            }
            "content_block_delta" => {
                let delta = value.get("delta").unwrap_or(&Value::Null);
                let piece = |key: &str| delta.get(key).and_then(Value::as_str).unwrap_or_default();
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") if !piece("text").is_empty() => {
                        out.push(StreamEvent::TextDelta(piece("text").to_string()));
                    }
                    Some("input_json_delta") => {
                        if let Some(tool) = self.tools.iter_mut().find(|tool| tool.index == index) {
                            tool.json.push_str(piece("partial_json"));
                        }
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                if let Some(at) = self.tools.iter().position(|tool| tool.index == index) {
                    out.push(StreamEvent::ToolCall(self.tools.remove(at).into_call()));
                    self.tool_calls += 1;
                }
            }
            "message_delta" => {
                if let Some(usage) = value.get("usage") {
                    self.usage.get_or_insert_default().update(usage);
                }
                let reason = value.pointer("/delta/stop_reason").and_then(Value::as_str);
                if let Some(reason) = reason {
                    self.stop(reason)?;
                }
            }
            // A server that ignored `stream: true` answers with the whole
            // message at once.
            "message" => {
                if let Some(usage) = value.get("usage") {
                    self.usage.get_or_insert_default().update(usage);
                }
                let blocks = value.get("content").and_then(Value::as_array);
                for block in blocks.into_iter().flatten() {
                    let field =
                        |key: &str| block.get(key).and_then(Value::as_str).unwrap_or_default();
                    match field("type") {
                        "text" if !field("text").is_empty() => {
                            out.push(StreamEvent::TextDelta(field("text").to_string()));
                        }
                        "tool_use" => {
                            let input = block.get("input").map(Value::to_string);
                            out.push(StreamEvent::ToolCall(ToolCall {
                                id: field("id").to_string(),
                                name: field("name").to_string(),
                                arguments: input.unwrap_or_else(|| "{}".to_string()),
                            }));
                            self.tool_calls += 1;
                        }
                        _ => {}
                    }
                }
                if let Some(reason) = value.get("stop_reason").and_then(Value::as_str) {
                    self.stop(reason)?;
                }
                self.done = true;
                out.extend(self.close());
            }
            "message_stop" => {
                self.done = true;
                out.extend(self.close());
            }
            "error" => return Err(classify_anthropic(None, data, ServerHints::default())),
            // `ping`, and event types newer than this client.
            _ => {}
        }
        Ok(out)
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn end(&mut self) -> Option<Vec<StreamEvent>> {
        // With the stop reason in hand only `message_stop` was lost.
        self.stop_reason.is_some().then(|| {
            self.done = true;
            self.close()
        })
    }
}

impl AnthropicDecoder {
    /// Record the stop reason; running out of context window is an error the
    /// caller acts on (compact, then try again), not a way to finish.
    fn stop(&mut self, reason: &str) -> Result<(), ProviderError> {
        if reason == "model_context_window_exceeded" {
            return Err(ProviderError::ContextLength {
                provider: PROVIDER,
                message: "the model stopped at its context window \
                          (model_context_window_exceeded)"
                    .into(),
                fit: None,
            });
        }
        self.stop_reason = Some(reason.to_string());
        Ok(())
    }

    /// Closing events: tool blocks never closed, usage, finish.
    fn close(&mut self) -> Vec<StreamEvent> {
        let mut out: Vec<StreamEvent> = self
            .tools
            .drain(..)
            .map(|tool| StreamEvent::ToolCall(tool.into_call()))
            .collect();
        self.tool_calls += out.len();
        if let Some(usage) = self.usage {
            out.push(StreamEvent::Usage(usage.normalized()));
        }
        out.push(StreamEvent::Finish(finish_reason(
            self.stop_reason.as_deref(),
            self.tool_calls > 0,
        )));
        out
    }
}

fn finish_reason(reason: Option<&str>, has_tool_calls: bool) -> FinishReason {
    match reason {
        Some("tool_use") => FinishReason::ToolCalls,
        None if has_tool_calls => FinishReason::ToolCalls,
        None | Some("end_turn") | Some("stop_sequence") => FinishReason::Stop,
        Some("max_tokens") => FinishReason::Length,
        Some("refusal") => FinishReason::ContentFilter,
        Some(other) => FinishReason::Other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ToolSpec;

    fn named(json: Value) -> SseEvent {
        SseEvent {
            event: json["type"].as_str().map(str::to_string),
            data: json.to_string(),
        }
    }

    fn run(events: Vec<SseEvent>) -> Result<Vec<StreamEvent>, ProviderError> {
        let mut decoder = AnthropicDecoder::default();
        let mut out = Vec::new();
        for event in events {
            out.extend(decoder.event(event)?);
            if decoder.is_done() {
                return Ok(out);
            }
        }
        decoder
            .end()
            .map(|tail| [out, tail].concat())
            .ok_or(ProviderError::Cancelled)
    }

    fn message_start() -> SseEvent {
        named(
            json!({"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","content":[],"model":"claude","stop_reason":null,"usage":{"input_tokens":849,"cache_creation_input_tokens":100,"cache_read_input_tokens":1800,"output_tokens":1}}}),
        )
    }

    fn message_delta(reason: &str, output: u64) -> SseEvent {
        named(
            json!({"type":"message_delta","delta":{"stop_reason":reason,"stop_sequence":null},"usage":{"output_tokens":output}}),
        )
    }

    fn stop() -> SseEvent {
        named(json!({"type":"message_stop"}))
    }

    fn tool_start(index: u64, id: &str, name: &str) -> SseEvent {
        named(
            json!({"type":"content_block_start","index":index,"content_block":{"type":"tool_use","id":id,"name":name,"input":{}}}),
        )
    }

    fn json_delta(index: u64, partial: &str) -> SseEvent {
        named(
            json!({"type":"content_block_delta","index":index,"delta":{"type":"input_json_delta","partial_json":partial}}),
        )
    }

    fn block_stop(index: u64) -> SseEvent {
        named(json!({"type":"content_block_stop","index":index}))
    }

    fn call(id: &str, name: &str, arguments: &str) -> StreamEvent {
        StreamEvent::ToolCall(ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        })
    }

    #[test]
    fn text_with_thinking_and_pings_and_cumulative_usage() {
        let events = vec![
            message_start(),
            named(
                json!({"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}),
            ),
            named(
                json!({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}),
            ),
            named(
                json!({"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"sig"}}),
            ),
            block_stop(0),
            named(json!({"type":"ping"})),
            named(
                json!({"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}),
            ),
            named(
                json!({"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Hi "}}),
            ),
            named(
                json!({"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"there"}}),
            ),
            block_stop(1),
            message_delta("end_turn", 47),
            stop(),
        ];
        assert_eq!(
            run(events).expect("decodes"),
            vec![
                StreamEvent::TextDelta("Hi ".into()),
                StreamEvent::TextDelta("there".into()),
                StreamEvent::Usage(Usage {
                    input: 849 + 1800 + 100,
                    output: 47,
                    cached_input: 1800,
                    cache_write: 100,
                    reasoning: 0,
                }),
                StreamEvent::Finish(FinishReason::Stop),
            ]
        );
    }

    #[test]
    fn message_delta_usage_overwrites_what_it_carries() {
        let events = vec![
            message_start(),
            named(
                json!({"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":900,"cache_read_input_tokens":0,"output_tokens":12}}),
            ),
            stop(),
        ];
        let out = run(events).expect("decodes");
        assert_eq!(
            out[0],
            StreamEvent::Usage(Usage {
                input: 900 + 100,
                output: 12,
                cached_input: 0,
                cache_write: 100,
                reasoning: 0,
            })
        );
    }

    #[test]
    fn tool_use_blocks_assemble_per_index() {
        let events = vec![
            message_start(),
            named(
                json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
            ),
            named(
                json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Reading."}}),
            ),
            block_stop(0),
            tool_start(1, "toolu_01", "read"),
            json_delta(1, ""),
            json_delta(1, "{\"path\": "),
            json_delta(1, "\"a.rs\"}"),
            block_stop(1),
            tool_start(2, "toolu_02", "read_todo"),
            block_stop(2),
            tool_start(3, "toolu_03", "write"),
            json_delta(3, "{\"path\": \"b"),
            block_stop(3),
            message_delta("tool_use", 80),
            stop(),
        ];
        let out = run(events).expect("decodes");
        assert_eq!(
            out[..4],
            [
                StreamEvent::TextDelta("Reading.".into()),
                call("toolu_01", "read", "{\"path\": \"a.rs\"}"),
                call("toolu_02", "read_todo", "{}"),
                call("toolu_03", "write", "{\"path\": \"b"),
            ]
        );
        assert_eq!(out[5], StreamEvent::Finish(FinishReason::ToolCalls));
    }

    #[test]
    fn whole_input_at_block_start_is_kept() {
        let events = vec![
            named(
                json!({"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t1","name":"list","input":{"path":"src"}}}),
            ),
            block_stop(0),
            message_delta("tool_use", 3),
            stop(),
        ];
        assert_eq!(
            run(events).expect("decodes")[0],
            call("t1", "list", "{\"path\":\"src\"}")
        );
    }

    #[test]
    fn a_whole_message_decodes_like_a_stream() {
        let message = json!({
            "id": "msg_01", "type": "message", "role": "assistant", "model": "claude",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "I'll read the file."},
                {"type": "tool_use", "id": "toolu_01", "name": "read", "input": {"path": "src/main.rs"}},
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 472, "output_tokens": 35,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1800},
        });
        assert_eq!(
            run(vec![SseEvent {
                event: None,
                data: message.to_string()
            }])
            .expect("decodes"),
            vec![
                StreamEvent::TextDelta("I'll read the file.".into()),
                call("toolu_01", "read", "{\"path\":\"src/main.rs\"}"),
                StreamEvent::Usage(Usage {
                    input: 472 + 1800,
                    output: 35,
                    cached_input: 1800,
                    cache_write: 0,
                    reasoning: 0,
                }),
                StreamEvent::Finish(FinishReason::ToolCalls),
            ]
        );
    }

    #[test]
    fn stop_reason_table() {
        let table = [
            (Some("end_turn"), false, FinishReason::Stop),
            (Some("stop_sequence"), false, FinishReason::Stop),
            (Some("tool_use"), true, FinishReason::ToolCalls),
            (Some("max_tokens"), false, FinishReason::Length),
            (Some("refusal"), false, FinishReason::ContentFilter),
            (
                Some("pause_turn"),
                false,
                FinishReason::Other("pause_turn".into()),
            ),
            (None, true, FinishReason::ToolCalls),
            (None, false, FinishReason::Stop),
        ];
        for (reason, calls, expected) in table {
            assert_eq!(finish_reason(reason, calls), expected, "{reason:?}");
        }
    }

    #[test]
    fn context_window_stop_is_an_error() {
        let error = run(vec![
            message_start(),
            message_delta("model_context_window_exceeded", 5),
        ])
        .expect_err("context error");
        assert!(
            matches!(error, ProviderError::ContextLength { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn error_event_is_classified() {
        let error = run(vec![
            message_start(),
            named(
                json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}),
            ),
        ])
        .expect_err("error event");
        assert!(
            matches!(error, ProviderError::Transient { status: None, .. }),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "anthropic: error event in stream: Overloaded (overloaded_error)"
        );
    }

    #[test]
    fn cut_before_stop_reason_is_not_a_turn() {
        let mut decoder = AnthropicDecoder::default();
        decoder.event(message_start()).expect("decodes");
        assert_eq!(decoder.end(), None);
    }

    fn request() -> ModelRequest {
        ModelRequest {
            agent: "Worker".into(),
            session: "s1".into(),
            model: "claude-sonnet-4-5".into(),
            system: "You are a coding agent.".into(),
            messages: vec![
                Message::user("Open two files"),
                Message::Assistant {
                    text: "Reading.".into(),
                    tool_calls: vec![
                        ToolCall {
                            id: "toolu_01".into(),
                            name: "read".into(),
                            arguments: "{\"path\":\"a.rs\"}".into(),
                        },
                        ToolCall {
                            id: "toolu_02".into(),
                            name: "read".into(),
                            arguments: "{\"path\": ".into(),
                        },
                    ],
                },
                Message::Tool {
                    call_id: "toolu_01".into(),
                    name: "read".into(),
                    content: "fn a() {}".into(),
                    is_error: false,
                },
                Message::Tool {
                    call_id: "toolu_02".into(),
                    name: "read".into(),
                    content: "invalid arguments: EOF while parsing".into(),
                    is_error: true,
                },
                Message::user("Now fix it."),
            ]
            .into(),
            tools: vec![
                ToolSpec {
                    name: "read".into(),
                    description: "Read a file".into(),
                    parameters: json!({"type":"object","properties":{"path":{"type":"string"}}}),
                },
                ToolSpec {
                    name: "read_todo".into(),
                    description: "Read the plan".into(),
                    parameters: Value::Null,
                },
            ]
            .into(),
            max_output_tokens: 2048,
            continued: true,
        }
    }

    #[test]
    fn request_body_shape() {
        assert_eq!(
            request_body(&request()),
            json!({
                "model": "claude-sonnet-4-5",
                "max_tokens": 2048,
                "stream": true,
                "system": [{"type": "text", "text": "You are a coding agent.", "cache_control": {"type": "ephemeral"}}],
                "tools": [
                    {"name": "read", "description": "Read a file", "input_schema": {"type":"object","properties":{"path":{"type":"string"}}}},
                    {"name": "read_todo", "description": "Read the plan", "input_schema": {"type":"object","properties":{}}},
                ],
                "messages": [
                    // The previous request ended here: it is read back.
                    {"role": "user", "content": [{"type": "text", "text": "Open two files", "cache_control": {"type": "ephemeral"}}]},
                    {"role": "assistant", "content": [
                        {"type": "text", "text": "Reading."},
                        {"type": "tool_use", "id": "toolu_01", "name": "read", "input": {"path": "a.rs"}},
                        {"type": "tool_use", "id": "toolu_02", "name": "read", "input": {}},
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_01", "is_error": false, "content": "fn a() {}"},
                        {"type": "tool_result", "tool_use_id": "toolu_02", "is_error": true, "content": "invalid arguments: EOF while parsing"},
                        {"type": "text", "text": "Now fix it.", "cache_control": {"type": "ephemeral"}},
                    ]},
                ],
            })
        );
    }

    #[test]
    fn tool_results_go_first_and_empty_text_is_dropped() {
        let list = vec![
            Message::user("go"),
            Message::Assistant {
                text: String::new(),
                tool_calls: vec![ToolCall {
                    id: "t1".into(),
                    name: "bash".into(),
                    arguments: "{}".into(),
                }],
            },
            Message::user("also this"),
            Message::Tool {
                call_id: "t1".into(),
                name: "bash".into(),
                content: String::new(),
                is_error: false,
            },
            Message::Assistant {
                text: " ".into(),
                tool_calls: vec![],
            },
        ];
        let out = messages(&list, true);
        assert_eq!(out.len(), 3);
        assert_eq!(out[1]["content"].as_array().map(Vec::len), Some(1));
        assert_eq!(
            out[2]["content"],
            json!([
                // The request that produced the last assistant message ended here.
                {"type": "tool_result", "tool_use_id": "t1", "is_error": false, "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "also this", "cache_control": {"type": "ephemeral"}},
            ])
        );
    }

    /// Where the breakpoints of a request are: (top-level key, index) for
    /// `system` and `tools`, (message, block) for the conversation.
    fn breakpoints(body: &Value) -> Vec<String> {
        let mut found = Vec::new();
        for key in ["system", "tools"] {
            for (at, block) in body[key].as_array().into_iter().flatten().enumerate() {
                if block.get("cache_control").is_some() {
                    found.push(format!("{key}[{at}]"));
                }
            }
        }
        for (at, message) in body["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            for (block_at, block) in message["content"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                if block.get("cache_control").is_some() {
                    found.push(format!("messages[{at}][{block_at}]"));
                }
            }
        }
        found
    }

    #[test]
    fn a_round_of_many_tool_results_still_reads_the_previous_end() {
        // Thirty parallel reads: more blocks than the server looks back
        // from the last breakpoint.
        let calls: Vec<ToolCall> = (0..30)
            .map(|k| ToolCall {
                id: format!("t{k}"),
                name: "read".into(),
                arguments: format!("{{\"path\":\"f{k}.rs\"}}"),
            })
            .collect();
        let mut list = vec![
            Message::user("task"),
            Message::Assistant {
                text: "Reading everything.".into(),
                tool_calls: calls.clone(),
            },
        ];
        list.extend(calls.iter().map(|call| Message::Tool {
            call_id: call.id.clone(),
            name: "read".into(),
            content: format!("contents of {}", call.id),
            is_error: false,
        }));
        let mut request = request();
        request.messages = list.clone().into();
        let body = request_body(&request);
        assert_eq!(
            breakpoints(&body),
            ["system[0]", "messages[0][0]", "messages[2][29]"],
            "the system (tools included), the previous request's end, the new end"
        );
        // The next turn answers: the breakpoint moves to the end of this
        // request, still at most four in all.
        list.push(Message::Assistant {
            text: "Done.".into(),
            tool_calls: vec![],
        });
        list.push(Message::user("next"));
        request.messages = list.into();
        assert_eq!(
            breakpoints(&request_body(&request)),
            ["system[0]", "messages[2][29]", "messages[4][0]"]
        );
        // A summary asked of the conversation reads what the previous
        // request cached and writes nothing.
        request.continued = false;
        assert_eq!(
            breakpoints(&request_body(&request)),
            ["system[0]", "messages[2][29]"]
        );
        request.continued = true;
        // Without a system prompt the last tool holds the prefix.
        request.system.clear();
        assert_eq!(breakpoints(&request_body(&request))[0], "tools[1]");
    }
}

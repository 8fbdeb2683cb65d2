//! OpenAI-compatible Chat Completions client: OpenAI itself and the servers
//! that copy its wire format (OpenRouter, Groq, DeepSeek, GLM, Ollama, vLLM,
//! llama.cpp, LM Studio), each with its own quirks tolerated by the decoder.
//!
//! Tool calls stream as fragments keyed by `index`; their arguments are
//! accumulated as text and emitted once, when the model signals the end of the
//! turn. The arguments are never parsed here: malformed JSON is the model's
//! mistake, and the session reports it back to the model.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::http::{Decoder, Prepared, Transport};
use super::retry::{ServerHints, classify_openai};
use super::sse::SseEvent;
use super::{
    EventStream, FinishReason, HttpSettings, Message, ModelClient, ModelRequest, ProviderError,
    StreamEvent, ToolCall, Usage,
};

const PROVIDER: &str = "openai";

pub struct OpenAiClient {
    transport: Transport,
    url: String,
    /// OpenAI's own API: it wants `max_completion_tokens` (reasoning models
    /// reject `max_tokens`) and takes a `prompt_cache_key`; the compatible
    /// servers only know `max_tokens`, and some refuse fields they do not
    /// know.
    own_api: bool,
}

impl fmt::Debug for OpenAiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiClient")
            .field("url", &self.url)
            .field("transport", &self.transport)
            .finish()
    }
}

impl OpenAiClient {
    /// `settings.base_url` includes the version path, e.g.
    /// `https://api.openai.com/v1` or `http://localhost:11434/v1`.
    pub fn new(settings: HttpSettings) -> Self {
        let base = settings.base_url.trim_end_matches('/');
        let is_openai = reqwest::Url::parse(base)
            .ok()
            .and_then(|url| url.host_str().map(|host| host == "api.openai.com"))
            .unwrap_or(false);
        OpenAiClient {
            url: format!("{base}/chat/completions"),
            own_api: is_openai,
            transport: Transport::new(PROVIDER, &settings),
        }
    }

    fn headers(&self) -> Result<HeaderMap, ProviderError> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        // Local servers (Ollama, llama.cpp) need no key; sending none keeps a
        // proxy in front of them from seeing a bogus one.
        if let Some(key) = self.transport.key() {
            let mut value =
                HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
                    ProviderError::Fatal {
                        provider: PROVIDER,
                        status: None,
                        message: "the api key contains characters not allowed in an http header"
                            .into(),
                    }
                })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        Ok(headers)
    }
}

impl ModelClient for OpenAiClient {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn stream(&self, request: ModelRequest, cancel: CancellationToken) -> EventStream {
        let prepared = self.headers().and_then(|headers| {
            let body =
                serde_json::to_vec(&request_body(&request, self.own_api)).map_err(|err| {
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
            Ok(prepared) => {
                self.transport
                    .stream(prepared, classify_openai, OpenAiDecoder::default, cancel)
            }
            Err(err) => Box::pin(futures::stream::iter([Err(err)])),
        }
    }
}

/// The Chat Completions request for one turn; `own_api` for OpenAI's own
/// API.
fn request_body(request: &ModelRequest, own_api: bool) -> Value {
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if !request.system.is_empty() {
        messages.push(json!({ "role": "system", "content": request.system }));
    }
    for message in request.messages.iter() {
        messages.push(match message {
            Message::User { text } => json!({ "role": "user", "content": text }),
            Message::Assistant { text, tool_calls } if tool_calls.is_empty() => {
                json!({ "role": "assistant", "content": text })
            }
            Message::Assistant { text, tool_calls } => {
                let calls: Vec<Value> = tool_calls
                    .iter()
                    .map(|call| {
                        json!({
                            "id": call.id,
                            "type": "function",
                            "function": { "name": call.name, "arguments": echo_arguments(&call.arguments) },
                        })
                    })
                    .collect();
                let content = if text.is_empty() {
                    Value::Null
                } else {
                    Value::from(text.as_str())
                };
                json!({ "role": "assistant", "content": content, "tool_calls": calls })
            }
            Message::Tool {
                call_id, content, ..
            } => json!({ "role": "tool", "tool_call_id": call_id, "content": content }),
        });
    }
    let mut body = json!({
        "model": request.model,
        "messages": messages,
        "stream": true,
        "stream_options": { "include_usage": true },
    });
    if own_api {
        body["max_completion_tokens"] = request.max_output_tokens.into();
        // One key per session, as Codex sends: its requests are routed to
        // where its prefix is cached.
        body["prompt_cache_key"] = request.session.as_str().into();
    } else {
        body["max_tokens"] = request.max_output_tokens.into();
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|tool| {
                json!({
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": tool.parameters,
                    },
                })
            })
            .collect();
    }
    body
}

/// Arguments as the model streamed them, except that "nothing" becomes `{}`:
/// strict servers reject an empty arguments string on the way back in.
fn echo_arguments(arguments: &str) -> &str {
    if arguments.trim().is_empty() {
        "{}"
    } else {
        arguments
    }
}

/// Decodes a Chat Completions stream, tolerating the compatible servers'
/// deviations: keep-alives in `data:`, `finish_reason: ""`, `usage: {}`,
/// missing ids, a usage chunk with a dummy choice, `stop` with tool calls,
/// and OpenRouter's mid-stream `{"error":...}` events.
#[derive(Debug, Default)]
struct OpenAiDecoder {
    calls: ToolCalls,
    /// Tool calls emitted so far in this turn.
    emitted_calls: usize,
    finish: Option<String>,
    usage: Option<Usage>,
    done: bool,
}

impl Decoder for OpenAiDecoder {
    fn event(&mut self, event: SseEvent) -> Result<Vec<StreamEvent>, ProviderError> {
        if event.is_done() {
            self.done = true;
            return Ok(self.close());
        }
        let data = event.data.trim();
        if !data.starts_with('{') {
            // `data: :ping` and other data-only keep-alives.
            return Ok(Vec::new());
        }
        let chunk: Value = serde_json::from_str(data).map_err(|err| ProviderError::Transient {
            provider: PROVIDER,
            status: None,
            message: format!("malformed stream chunk: {err}"),
            retry_after: None,
        })?;
        if chunk.get("error").is_some_and(|error| !error.is_null()) {
            return Err(classify_openai(None, data, ServerHints::default()));
        }
        if let Some(usage) = chunk.get("usage").and_then(parse_usage) {
            self.usage = Some(usage);
        }
        let mut out = Vec::new();
        let choices = chunk.get("choices").and_then(Value::as_array);
        for choice in choices.into_iter().flatten() {
            // With `n > 1` other choices exist; a turn is choice 0.
            if choice.get("index").and_then(Value::as_u64).unwrap_or(0) != 0 {
                continue;
            }
            // A server that ignored `stream: true` sends one `message`
            // holding everything a stream's deltas would have.
            let whole = choice.get("delta").is_none();
            let delta = choice.get("delta").or_else(|| choice.get("message"));
            let text = delta
                .and_then(|delta| delta.get("content"))
                .and_then(Value::as_str);
            if let Some(text) = text.filter(|text| !text.is_empty()) {
                out.push(StreamEvent::TextDelta(text.to_string()));
            }
            let fragments = delta
                .and_then(|delta| delta.get("tool_calls"))
                .and_then(Value::as_array);
            for (position, fragment) in fragments.into_iter().flatten().enumerate() {
                if whole && fragment.get("index").is_none() {
                    // Complete calls side by side: their position is their index.
                    let mut fragment = fragment.clone();
                    fragment["index"] = position.into();
                    self.calls.push(&fragment);
                } else {
                    self.calls.push(fragment);
                }
            }
            let reason = choice.get("finish_reason").and_then(Value::as_str);
            if let Some(reason) = reason.filter(|reason| !reason.is_empty()) {
                self.finish = Some(reason.to_string());
                // The arguments are complete: hand the calls over now rather
                // than waiting for the usage chunk and `[DONE]`.
                out.extend(self.take_calls());
            }
        }
        Ok(out)
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn end(&mut self) -> Option<Vec<StreamEvent>> {
        // A stream cut after the finish reason lost at most the usage chunk
        // and `[DONE]`; the turn itself is whole.
        self.finish.is_some().then(|| {
            self.done = true;
            self.close()
        })
    }
}

impl OpenAiDecoder {
    fn take_calls(&mut self) -> Vec<StreamEvent> {
        let calls = self.calls.take();
        self.emitted_calls += calls.len();
        calls.into_iter().map(StreamEvent::ToolCall).collect()
    }

    /// The closing events: any calls not yet emitted, usage, finish.
    fn close(&mut self) -> Vec<StreamEvent> {
        let mut out = self.take_calls();
        if let Some(usage) = self.usage.take() {
            out.push(StreamEvent::Usage(usage));
        }
        out.push(StreamEvent::Finish(finish_reason(
            self.finish.as_deref(),
            self.emitted_calls > 0,
        )));
        out
    }
}

/// Some servers say `stop` while returning tool calls, so the presence of
/// calls decides a tool turn, not the reason alone.
fn finish_reason(reason: Option<&str>, has_tool_calls: bool) -> FinishReason {
    if has_tool_calls {
        return FinishReason::ToolCalls;
    }
    match reason {
        // `tool_calls` with no call in sight: the model produced nothing to run.
        None | Some("stop") | Some("tool_calls") | Some("function_call") => FinishReason::Stop,
        Some("length") => FinishReason::Length,
        Some("content_filter") => FinishReason::ContentFilter,
        Some(other) => FinishReason::Other(other.to_string()),
    }
}

/// Usage from a chunk; `usage: {}` and `usage: null` carry nothing.
fn parse_usage(usage: &Value) -> Option<Usage> {
    let count = |pointer: &str| usage.pointer(pointer).and_then(Value::as_u64);
    let input = count("/prompt_tokens");
    let output = count("/completion_tokens");
    if input.is_none() && output.is_none() {
        return None;
    }
    Some(Usage {
        input: input.unwrap_or(0),
        output: output.unwrap_or(0),
        // DeepSeek reports its cache hits under its own name.
        cached_input: count("/prompt_tokens_details/cached_tokens")
            .or_else(|| count("/prompt_cache_hit_tokens"))
            .unwrap_or(0),
        cache_write: 0,
        reasoning: count("/completion_tokens_details/reasoning_tokens").unwrap_or(0),
    })
}

/// Tool-call fragments assembled into calls.
///
/// Fragments are keyed by `index` (OpenAI sends `id` and name only in the
/// first fragment of an index). Two servers bend this: Ollama gives every
/// parallel call `index: 0` and tells them apart by `id`, and LM Studio (and
/// some Kimi hosts) send a fresh `id` with every fragment of the same call. So
/// a new `id` at an index already seen starts a new call only when the call
/// there already looks finished — its arguments parse as JSON — or the
/// fragment names a different function; otherwise it continues the call.
#[derive(Debug, Default)]
struct ToolCalls {
    slots: Vec<Slot>,
    /// Slots before this were emitted already.
    emitted: usize,
}

#[derive(Debug, Default)]
struct Slot {
    index: Option<u64>,
    id: String,
    name: String,
    arguments: String,
}

impl ToolCalls {
    fn push(&mut self, fragment: &Value) {
        let index = fragment.get("index").and_then(Value::as_u64);
        let id = fragment
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty());
        let function = fragment.get("function");
        let name = function
            .and_then(|function| function.get("name"))
            .and_then(Value::as_str)
            .filter(|name| !name.is_empty());
        let arguments: Option<Cow<'_, str>> =
            match function.and_then(|function| function.get("arguments")) {
                Some(Value::String(text)) => Some(Cow::Borrowed(text)),
                None | Some(Value::Null) => None,
                // Some servers send the arguments as an object.
                Some(other) => Some(Cow::Owned(other.to_string())),
            };

        let at = self.find(index, id, name);
        let slot = match at {
            Some(at) => &mut self.slots[at],
            None => {
                self.slots.push(Slot {
                    index,
                    ..Slot::default()
                });
                self.slots.last_mut().expect("a slot was just pushed")
            }
        };
        if slot.id.is_empty()
            && let Some(id) = id
        {
            slot.id = id.to_string();
        }
        if slot.name.is_empty()
            && let Some(name) = name
        {
            slot.name = name.to_string();
        }
        if let Some(arguments) = arguments {
            slot.arguments.push_str(&arguments);
        }
    }

    /// The open slot this fragment continues, if any.
    fn find(&self, index: Option<u64>, id: Option<&str>, name: Option<&str>) -> Option<usize> {
        let open = &self.slots[self.emitted..];
        let last = open.len().checked_sub(1);
        let at = match (index, id) {
            (Some(index), _) => open.iter().rposition(|slot| slot.index == Some(index))?,
            (None, Some(id)) => open.iter().rposition(|slot| slot.id == id).or(last)?,
            (None, None) => last?,
        };
        let slot = &open[at];
        let new_id = id.is_some_and(|id| !slot.id.is_empty() && slot.id != id);
        let named_again = name.is_some() && !slot.name.is_empty();
        if new_id || named_again {
            let finished = !slot.arguments.trim().is_empty()
                && serde_json::from_str::<serde::de::IgnoredAny>(&slot.arguments).is_ok();
            let other_function = name.is_some_and(|name| slot.name != name);
            if finished || other_function {
                return None;
            }
        }
        Some(self.emitted + at)
    }

    /// The calls assembled since the last `take`, in the order they began.
    fn take(&mut self) -> Vec<ToolCall> {
        let start = self.emitted;
        self.emitted = self.slots.len();
        self.slots[start..]
            .iter()
            .enumerate()
            .filter(|(_, slot)| !(slot.name.is_empty() && slot.arguments.is_empty()))
            .map(|(offset, slot)| ToolCall {
                id: if slot.id.is_empty() {
                    format!("call_{}", start + offset)
                } else {
                    slot.id.clone()
                },
                name: slot.name.clone(),
                arguments: if slot.arguments.trim().is_empty() {
                    "{}".to_string()
                } else {
                    slot.arguments.clone()
                },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ToolSpec;

    fn data(json: Value) -> SseEvent {
        SseEvent {
            event: None,
            data: json.to_string(),
        }
    }

    fn raw(text: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: text.to_string(),
        }
    }

    fn run(events: Vec<SseEvent>) -> Result<Vec<StreamEvent>, ProviderError> {
        let mut decoder = OpenAiDecoder::default();
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

    fn call(id: &str, name: &str, arguments: &str) -> StreamEvent {
        StreamEvent::ToolCall(ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        })
    }

    fn text(text: &str) -> StreamEvent {
        StreamEvent::TextDelta(text.into())
    }

    fn fragment(index: u64, id: Option<&str>, name: Option<&str>, arguments: &str) -> SseEvent {
        let mut call = json!({ "index": index, "function": { "arguments": arguments } });
        if let Some(id) = id {
            call["id"] = id.into();
            call["type"] = "function".into();
        }
        if let Some(name) = name {
            call["function"]["name"] = name.into();
        }
        data(
            json!({ "choices": [{ "index": 0, "delta": { "tool_calls": [call] }, "finish_reason": null }] }),
        )
    }

    fn finish(reason: &str) -> SseEvent {
        data(json!({ "choices": [{ "index": 0, "delta": {}, "finish_reason": reason }] }))
    }

    #[test]
    fn text_usage_and_quirks() {
        let events = vec![
            data(
                json!({"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}),
            ),
            raw(":ping"),
            data(
                json!({"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":""}],"usage":{}}),
            ),
            data(json!({"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]})),
            data(json!({"choices":[{"index":1,"delta":{"content":"other choice"}}]})),
            data(json!({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})),
            data(
                json!({"choices":[{"index":0,"delta":{}}],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18,"prompt_tokens_details":{"cached_tokens":4}}}),
            ),
            raw("[DONE]"),
        ];
        assert_eq!(
            run(events).expect("decodes"),
            vec![
                text("Hel"),
                text("lo"),
                StreamEvent::Usage(Usage {
                    input: 11,
                    output: 7,
                    cached_input: 4,
                    cache_write: 0,
                    reasoning: 0
                }),
                StreamEvent::Finish(FinishReason::Stop),
            ]
        );
    }

    #[test]
    fn openai_parallel_calls_by_index() {
        let events = vec![
            fragment(0, Some("call_a"), Some("read"), ""),
            fragment(1, Some("call_b"), Some("grep"), ""),
            fragment(0, None, None, "{\"pa"),
            fragment(1, None, None, "{\"pattern\":"),
            fragment(0, None, None, "th\":\"a.rs\"}"),
            fragment(1, None, None, "\"fn\"}"),
            finish("tool_calls"),
            raw("[DONE]"),
        ];
        assert_eq!(
            run(events).expect("decodes"),
            vec![
                call("call_a", "read", "{\"path\":\"a.rs\"}"),
                call("call_b", "grep", "{\"pattern\":\"fn\"}"),
                StreamEvent::Finish(FinishReason::ToolCalls),
            ]
        );
    }

    #[test]
    fn ollama_reuses_index_zero_with_new_ids() {
        let events = vec![
            fragment(0, Some("call_1"), Some("bash"), "{\"command\":\"ls\"}"),
            fragment(0, Some("call_2"), Some("bash"), "{\"command\":\"ls -l\"}"),
            finish("stop"),
            raw("[DONE]"),
        ];
        assert_eq!(
            run(events).expect("decodes"),
            vec![
                call("call_1", "bash", "{\"command\":\"ls\"}"),
                call("call_2", "bash", "{\"command\":\"ls -l\"}"),
                StreamEvent::Finish(FinishReason::ToolCalls),
            ]
        );
    }

    #[test]
    fn lm_studio_fresh_id_per_fragment_is_one_call() {
        let events = vec![
            fragment(0, Some("id1"), Some("read"), ""),
            fragment(0, Some("id2"), None, "{\"path\""),
            fragment(0, Some("id3"), Some("read"), ":\"x\"}"),
            finish("tool_calls"),
            raw("[DONE]"),
        ];
        assert_eq!(
            run(events).expect("decodes"),
            vec![
                call("id1", "read", "{\"path\":\"x\"}"),
                StreamEvent::Finish(FinishReason::ToolCalls),
            ]
        );
    }

    #[test]
    fn odd_fragments_still_make_calls() {
        let events = vec![
            // Arguments as an object, no id, no index.
            data(
                json!({"choices":[{"delta":{"tool_calls":[{"function":{"name":"list","arguments":{"path":"src"}}}]}}]}),
            ),
            // A call with no arguments at all.
            fragment(1, Some("c2"), Some("read_todo"), ""),
            // Malformed JSON is passed through untouched.
            fragment(2, Some("c3"), Some("write"), "{\"path\": \"a\", "),
            raw("[DONE]"),
        ];
        assert_eq!(
            run(events).expect("decodes"),
            vec![
                call("call_0", "list", "{\"path\":\"src\"}"),
                call("c2", "read_todo", "{}"),
                call("c3", "write", "{\"path\": \"a\", "),
                StreamEvent::Finish(FinishReason::ToolCalls),
            ]
        );
    }

    #[test]
    fn calls_are_emitted_at_the_finish_reason() {
        let mut decoder = OpenAiDecoder::default();
        decoder
            .event(fragment(0, Some("c1"), Some("read"), "{}"))
            .expect("decodes");
        assert_eq!(
            decoder.event(finish("tool_calls")).expect("decodes"),
            vec![call("c1", "read", "{}")]
        );
        assert!(!decoder.is_done());
        assert_eq!(
            decoder.event(raw("[DONE]")).expect("decodes"),
            vec![StreamEvent::Finish(FinishReason::ToolCalls)]
        );
        assert!(decoder.is_done());
    }

    #[test]
    fn a_whole_completion_decodes_like_a_stream() {
        let completion = json!({
            "id": "chatcmpl-123", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "Reading.",
                "tool_calls": [
                    {"id": "call_a", "type": "function", "function": {"name": "read", "arguments": "{\"path\": "}},
                    {"id": "call_b", "type": "function", "function": {"name": "read", "arguments": "{\"path\":\"b\"}"}},
                ],
            }}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        });
        assert_eq!(
            run(vec![data(completion)]).expect("decodes"),
            vec![
                text("Reading."),
                call("call_a", "read", "{\"path\": "),
                call("call_b", "read", "{\"path\":\"b\"}"),
                StreamEvent::Usage(Usage {
                    input: 11,
                    output: 7,
                    cached_input: 0,
                    cache_write: 0,
                    reasoning: 0
                }),
                StreamEvent::Finish(FinishReason::ToolCalls),
            ]
        );
    }

    #[test]
    fn finish_reason_table() {
        let table = [
            (None, false, FinishReason::Stop),
            (Some("stop"), false, FinishReason::Stop),
            (Some("stop"), true, FinishReason::ToolCalls),
            (Some("tool_calls"), true, FinishReason::ToolCalls),
            (Some("tool_calls"), false, FinishReason::Stop),
            (Some("length"), false, FinishReason::Length),
            (Some("content_filter"), false, FinishReason::ContentFilter),
            (Some("eos"), false, FinishReason::Other("eos".into())),
        ];
        for (reason, calls, expected) in table {
            assert_eq!(finish_reason(reason, calls), expected, "{reason:?} {calls}");
        }
    }

    #[test]
    fn usage_table() {
        let table = [
            (json!({}), None),
            (json!(null), None),
            (
                json!({"prompt_tokens": 5, "completion_tokens": 2}),
                Some((5, 2, 0, 0)),
            ),
            (
                json!({"prompt_tokens": 50, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 40}}),
                Some((50, 2, 40, 0)),
            ),
            (
                json!({"prompt_tokens": 50, "completion_tokens": 2, "prompt_cache_hit_tokens": 30}),
                Some((50, 2, 30, 0)),
            ),
            (
                json!({"prompt_tokens": 9, "completion_tokens": 700, "completion_tokens_details": {"reasoning_tokens": 640}}),
                Some((9, 700, 0, 640)),
            ),
        ];
        for (value, expected) in table {
            let usage =
                parse_usage(&value).map(|u| (u.input, u.output, u.cached_input, u.reasoning));
            assert_eq!(usage, expected, "{value}");
        }
    }

    #[test]
    fn mid_stream_error_is_classified() {
        let error = run(vec![
            data(json!({"choices":[{"index":0,"delta":{"content":"x"}}]})),
            data(json!({"error":{"code":502,"message":"Provider disconnected"}})),
        ])
        .expect_err("error event ends the turn");
        assert!(
            matches!(
                error,
                ProviderError::Transient {
                    status: Some(502),
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn malformed_chunk_is_transient() {
        let error = run(vec![raw("{\"choices\": [")]).expect_err("bad chunk");
        assert!(
            matches!(error, ProviderError::Transient { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn cut_stream_before_finish_is_not_a_turn() {
        let mut decoder = OpenAiDecoder::default();
        decoder
            .event(data(
                json!({"choices":[{"index":0,"delta":{"content":"x"}}]}),
            ))
            .expect("decodes");
        assert_eq!(decoder.end(), None);
        let mut decoder = OpenAiDecoder::default();
        decoder.event(finish("stop")).expect("decodes");
        assert_eq!(
            decoder.end(),
            Some(vec![StreamEvent::Finish(FinishReason::Stop)])
        );
    }

    fn request() -> ModelRequest {
        ModelRequest {
            agent: "Worker".into(),
            session: "s1".into(),
            model: "gpt-4o".into(),
            system: "You are a coding agent.".into(),
            messages: vec![
                Message::user("Open src/main.rs"),
                Message::Assistant {
                    text: String::new(),
                    tool_calls: vec![
                        ToolCall {
                            id: "call_abc".into(),
                            name: "read".into(),
                            arguments: "{\"path\":\"src/main.rs\"}".into(),
                        },
                        ToolCall {
                            id: "call_def".into(),
                            name: "list".into(),
                            arguments: String::new(),
                        },
                    ],
                },
                Message::Tool {
                    call_id: "call_abc".into(),
                    name: "read".into(),
                    content: "fn main() {}".into(),
                    is_error: false,
                },
                Message::Assistant {
                    text: "Done.".into(),
                    tool_calls: vec![],
                },
            ]
            .into(),
            tools: vec![ToolSpec {
                name: "read".into(),
                description: "Read a file".into(),
                parameters: json!({"type":"object","properties":{"path":{"type":"string"}},"required":["path"]}),
            }].into(),
            max_output_tokens: 4096,
            continued: true,
        }
    }

    #[test]
    fn request_body_shape() {
        let body = request_body(&request(), false);
        assert_eq!(
            body,
            json!({
                "model": "gpt-4o",
                "messages": [
                    {"role": "system", "content": "You are a coding agent."},
                    {"role": "user", "content": "Open src/main.rs"},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_abc", "type": "function", "function": {"name": "read", "arguments": "{\"path\":\"src/main.rs\"}"}},
                        {"id": "call_def", "type": "function", "function": {"name": "list", "arguments": "{}"}},
                    ]},
                    {"role": "tool", "tool_call_id": "call_abc", "content": "fn main() {}"},
                    {"role": "assistant", "content": "Done."},
                ],
                "stream": true,
                "stream_options": {"include_usage": true},
                "max_tokens": 4096,
                "tools": [{"type": "function", "function": {
                    "name": "read",
                    "description": "Read a file",
                    "parameters": {"type":"object","properties":{"path":{"type":"string"}},"required":["path"]},
                }}],
            })
        );
    }

    #[test]
    fn no_system_no_tools_keys_when_empty() {
        let mut request = request();
        request.system.clear();
        request.tools = Vec::new().into();
        let body = request_body(&request, true);
        assert_eq!(body["messages"][0]["role"], "user");
        assert!(body.get("tools").is_none());
        assert_eq!(body["max_completion_tokens"], 4096);
        assert!(body.get("max_tokens").is_none());
        assert_eq!(body["prompt_cache_key"], "s1", "one cache key per session");
    }

    #[test]
    fn max_tokens_field_follows_the_host() {
        let settings = |url: &str| HttpSettings {
            base_url: url.into(),
            api_key: None,
            retry: Default::default(),
            stream_idle_timeout: std::time::Duration::from_secs(1),
            turn_timeout: std::time::Duration::from_secs(10),
            connect_timeout: std::time::Duration::from_secs(1),
        };
        let openai = OpenAiClient::new(settings("https://api.openai.com/v1/"));
        assert!(openai.own_api);
        assert_eq!(openai.url, "https://api.openai.com/v1/chat/completions");
        let ollama = OpenAiClient::new(settings("http://localhost:11434/v1"));
        assert!(!ollama.own_api);
    }
}

//! The scripted provider: deterministic replies from a script file, so
//! missions, tests and `orch demo` run offline and reproducibly.
//!
//! Script format (DESIGN §4): `{"agents": {"Worker": [reply, ...]}, "latency_ms": 0}`.
//! Each agent's replies are consumed in order. A reply with `"when"` is used
//! only when the messages since the model's last turn contain that substring;
//! the first unused reply that fits is taken. A script that has no fitting
//! reply left fails the turn with an error naming the agent — never a hang.
//!
//! A turn reports tokens estimated from sizes (4 bytes a token). A reply's
//! `"usage"` (`{"input"?, "output"?, "cached_input"?, "cache_write"?,
//! "reasoning"?}`) reports those counts instead, each missing count
//! estimated (`input`, `output`) or 0 (the rest): a script can show prompt
//! cache hits.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{
    EventStream, FinishReason, Message, ModelClient, ModelRequest, ProviderError, StreamEvent,
    ToolCall, Usage,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    pub agents: BTreeMap<String, Vec<Reply>>,
    /// Delay before every reply, unless the reply sets its own.
    #[serde(default)]
    pub latency_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    #[serde(default)]
    pub when: Option<String>,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub tool_calls: Vec<ScriptedCall>,
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// Token counts to report instead of the estimate.
    #[serde(default)]
    pub usage: Option<ScriptedUsage>,
}

/// What a reply reports as its usage; `input` and `output` default to the
/// estimate.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScriptedUsage {
    pub input: Option<u64>,
    pub output: Option<u64>,
    pub cached_input: u64,
    pub cache_write: u64,
    pub reasoning: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedCall {
    pub name: String,
    /// A JSON object, or a string sent verbatim (to script malformed arguments).
    #[serde(default)]
    pub arguments: Value,
}

impl Script {
    pub fn parse(text: &str, source: &str) -> Result<Script, String> {
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de)
            .map_err(|err| format!("script {source}: key \"{}\": {}", err.path(), err.inner()))
    }

    pub fn load(path: &Path) -> Result<Script, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| format!("script {}: {err}", path.display()))?;
        Script::parse(&text, &path.display().to_string())
    }
}

/// One agent's replies, grouped by their `when` (in order of first use), so
/// finding the first unused reply that fits looks at each condition once,
/// not at every reply: a script for a thousand sessions stays cheap.
struct AgentReplies {
    replies: Vec<Reply>,
    /// Each distinct `when` and the indices of its unused replies, in order.
    groups: Vec<(Option<String>, std::collections::VecDeque<usize>)>,
}

impl AgentReplies {
    fn new(replies: Vec<Reply>) -> AgentReplies {
        let mut groups: Vec<(Option<String>, std::collections::VecDeque<usize>)> = Vec::new();
        for (i, reply) in replies.iter().enumerate() {
            match groups.iter_mut().find(|(when, _)| *when == reply.when) {
                Some((_, unused)) => unused.push_back(i),
                None => groups.push((reply.when.clone(), [i].into())),
            }
        }
        AgentReplies { replies, groups }
    }

    /// The first unused reply whose condition `fits`, taken.
    fn take(&mut self, fits: impl Fn(Option<&str>) -> bool) -> Option<Reply> {
        let group = self
            .groups
            .iter_mut()
            .filter(|(when, unused)| !unused.is_empty() && fits(when.as_deref()))
            .min_by_key(|(_, unused)| unused[0])?;
        let i = group.1.pop_front()?;
        Some(self.replies[i].clone())
    }

    /// The conditions the unused replies wait for.
    fn waiting_for(&self) -> Vec<&str> {
        self.groups
            .iter()
            .filter(|(_, unused)| !unused.is_empty())
            .filter_map(|(when, _)| when.as_deref())
            .collect()
    }
}

pub struct ScriptedClient {
    /// Keyed by lowercase agent name.
    agents: Mutex<BTreeMap<String, AgentReplies>>,
    latency: Duration,
    calls: std::sync::atomic::AtomicU64,
    /// The size of each tool's spec, measured once (usage is estimated
    /// from sizes).
    tool_bytes: Mutex<BTreeMap<String, usize>>,
}

impl ScriptedClient {
    pub fn new(script: Script) -> Self {
        let agents = script
            .agents
            .into_iter()
            .map(|(name, replies)| (name.to_ascii_lowercase(), AgentReplies::new(replies)))
            .collect();
        ScriptedClient {
            agents: Mutex::new(agents),
            latency: Duration::from_millis(script.latency_ms),
            calls: Default::default(),
            tool_bytes: Default::default(),
        }
    }

    fn tools_bytes(&self, tools: &[super::ToolSpec]) -> usize {
        let mut sizes = self.tool_bytes.lock().expect("tool size lock");
        tools
            .iter()
            .map(|tool| {
                *sizes
                    .entry(tool.name.clone())
                    .or_insert_with(|| tool.description.len() + tool.parameters.to_string().len())
            })
            .sum()
    }

    /// Take the next fitting reply for this request's agent.
    fn next_reply(&self, request: &ModelRequest) -> Result<Reply, ProviderError> {
        let recent = recent_text(&request.messages);
        let mut agents = self.agents.lock().expect("script lock");
        let Some(entry) = agents.get_mut(&request.agent.to_ascii_lowercase()) else {
            return Err(ProviderError::Script(format!(
                "the script has no replies for agent \"{}\"",
                request.agent
            )));
        };
        let fits = |when: Option<&str>| match when {
            Some(needle) => recent.iter().any(|text| text.contains(needle)),
            None => true,
        };
        if let Some(reply) = entry.take(fits) {
            return Ok(reply);
        }
        let left = entry.waiting_for();
        Err(ProviderError::Script(if left.is_empty() {
            format!(
                "agent \"{}\" has used all {} scripted replies",
                request.agent,
                entry.replies.len()
            )
        } else {
            format!(
                "no scripted reply for agent \"{}\" fits: the ones left wait for {}",
                request.agent,
                left.iter()
                    .map(|w| format!("\"{w}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }))
    }
}

/// The texts the model has not answered yet: every message after its last turn.
fn recent_text(messages: &[Message]) -> Vec<&str> {
    let start = messages
        .iter()
        .rposition(|m| matches!(m, Message::Assistant { .. }))
        .map_or(0, |i| i + 1);
    messages[start..].iter().map(Message::text).collect()
}

/// A rough token estimate (4 bytes a token) so budgets work offline.
fn estimate_tokens(bytes: usize) -> u64 {
    bytes.div_ceil(4) as u64
}

impl ModelClient for ScriptedClient {
    fn provider(&self) -> &'static str {
        "scripted"
    }

    fn stream(&self, request: ModelRequest, cancel: CancellationToken) -> EventStream {
        let n = self
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let reply = self.next_reply(&request);
        let default_latency = self.latency;
        let prompt_bytes = request.system.len()
            + request
                .messages
                .iter()
                .map(|m| m.text().len())
                .sum::<usize>()
            + self.tools_bytes(&request.tools);
        Box::pin(async_stream::stream! {
            let reply = match reply {
                Ok(reply) => reply,
                Err(err) => {
                    yield Err(err);
                    return;
                }
            };
            let latency = reply.latency_ms.map(Duration::from_millis).unwrap_or(default_latency);
            if !latency.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(latency) => {}
                    _ = cancel.cancelled() => {
                        yield Err(ProviderError::Cancelled);
                        return;
                    }
                }
            }
            let mut output_bytes = reply.text.len();
            if !reply.text.is_empty() {
                yield Ok(StreamEvent::TextDelta(reply.text.clone()));
            }
            for (i, call) in reply.tool_calls.iter().enumerate() {
                let arguments = match &call.arguments {
                    Value::String(raw) => raw.clone(),
                    Value::Null => "{}".to_string(),
                    other => other.to_string(),
                };
                output_bytes += arguments.len();
                yield Ok(StreamEvent::ToolCall(ToolCall {
                    id: format!("call_{n}_{i}"),
                    name: call.name.clone(),
                    arguments,
                }));
            }
            let told = reply.usage.unwrap_or_default();
            yield Ok(StreamEvent::Usage(Usage {
                input: told.input.unwrap_or_else(|| estimate_tokens(prompt_bytes)),
                output: told.output.unwrap_or_else(|| estimate_tokens(output_bytes)),
                cached_input: told.cached_input,
                cache_write: told.cache_write,
                reasoning: told.reasoning,
            }));
            yield Ok(StreamEvent::Finish(if reply.tool_calls.is_empty() {
                FinishReason::Stop
            } else {
                FinishReason::ToolCalls
            }));
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn request(agent: &str, messages: Vec<Message>) -> ModelRequest {
        ModelRequest {
            agent: agent.into(),
            session: "s1".into(),
            model: "scripted".into(),
            system: String::new(),
            messages: messages.into(),
            tools: vec![].into(),
            max_output_tokens: 100,
            continued: true,
        }
    }

    async fn collect(
        client: &ScriptedClient,
        req: ModelRequest,
    ) -> Vec<Result<StreamEvent, String>> {
        client
            .stream(req, CancellationToken::new())
            .map(|e| e.map_err(|e| e.to_string()))
            .collect()
            .await
    }

    fn script(json: &str) -> ScriptedClient {
        ScriptedClient::new(Script::parse(json, "test").unwrap())
    }

    #[tokio::test]
    async fn replies_in_order_per_agent_case_insensitive() {
        let client = script(r#"{"agents":{"Worker":[{"text":"one"},{"text":"two"}]}}"#);
        let first = collect(&client, request("worker", vec![Message::user("go")])).await;
        assert_eq!(first[0], Ok(StreamEvent::TextDelta("one".into())));
        let second = collect(&client, request("WORKER", vec![Message::user("go")])).await;
        assert_eq!(second[0], Ok(StreamEvent::TextDelta("two".into())));
        let third = collect(&client, request("Worker", vec![Message::user("go")])).await;
        assert_eq!(
            third,
            vec![Err(
                "scripted provider: agent \"Worker\" has used all 2 scripted replies".into()
            )]
        );
    }

    #[tokio::test]
    async fn when_waits_for_its_substring() {
        let client = script(
            r#"{"agents":{"Commander":[{"when":"all done","text":"finished"},{"text":"working"}]}}"#,
        );
        let events = collect(&client, request("Commander", vec![Message::user("start")])).await;
        assert_eq!(events[0], Ok(StreamEvent::TextDelta("working".into())));
        let events = collect(&client, request("Commander", vec![Message::user("start")])).await;
        assert_eq!(
            events,
            vec![Err("scripted provider: no scripted reply for agent \"Commander\" fits: the ones left wait for \"all done\"".into())]
        );
        let events = collect(
            &client,
            request("Commander", vec![Message::user("it is all done")]),
        )
        .await;
        assert_eq!(events[0], Ok(StreamEvent::TextDelta("finished".into())));
    }

    #[tokio::test]
    async fn tool_calls_keep_raw_string_arguments() {
        let client = script(
            r#"{"agents":{"Worker":[{"tool_calls":[{"name":"read","arguments":{"path":"a"}},{"name":"edit","arguments":"{broken"}]}]}}"#,
        );
        let events = collect(&client, request("Worker", vec![Message::user("go")])).await;
        let calls: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Ok(StreamEvent::ToolCall(call)) => {
                    Some((call.name.as_str(), call.arguments.as_str()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            calls,
            vec![("read", r#"{"path":"a"}"#), ("edit", "{broken")]
        );
        assert_eq!(
            events.last(),
            Some(&Ok(StreamEvent::Finish(FinishReason::ToolCalls)))
        );
    }

    #[tokio::test]
    async fn a_reply_reports_its_scripted_usage_and_estimates_what_it_leaves_out() {
        let client = script(
            r#"{"agents":{"Worker":[
                {"text":"one","usage":{"input":2000,"output":30,"cached_input":1500,"cache_write":400}},
                {"text":"hello","usage":{"cached_input":1}},
                {"text":"three"}]}}"#,
        );
        let mut reported = Vec::new();
        for _ in 0..3 {
            let events = collect(&client, request("Worker", vec![Message::user("go")])).await;
            reported.extend(events.into_iter().filter_map(|e| match e {
                Ok(StreamEvent::Usage(usage)) => Some(usage),
                _ => None,
            }));
        }
        let usage = |input, output, cached_input, cache_write| Usage {
            input,
            output,
            cached_input,
            cache_write,
            reasoning: 0,
        };
        // "go" is one token, "hello" two, "three" two (4 bytes a token).
        assert_eq!(
            reported,
            [
                usage(2000, 30, 1500, 400),
                usage(1, 2, 1, 0),
                usage(1, 2, 0, 0)
            ]
        );
        let err = Script::parse(
            r#"{"agents":{"Worker":[{"usage":{"cached":1}}]}}"#,
            "run.json",
        )
        .err()
        .unwrap();
        assert!(
            err.starts_with("script run.json: key \"agents.Worker[0].usage"),
            "{err}"
        );
    }

    #[test]
    fn bad_script_names_the_key() {
        let err = Script::parse(r#"{"agents":{"Worker":[{"txt":"x"}]}}"#, "run.json")
            .err()
            .unwrap();
        assert!(
            err.starts_with("script run.json: key \"agents.Worker[0]"),
            "{err}"
        );
        assert!(err.contains("unknown field `txt`"), "{err}");
    }
}

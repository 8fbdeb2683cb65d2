//! Model providers: one `ModelClient` trait that streams a model turn, and the
//! OpenAI-compatible, Anthropic and scripted clients behind it.
//!
//! Everything above this module sees a model as a stream of `StreamEvent`s; only
//! this module knows HTTP, SSE, wire formats and retry rules.

pub mod anthropic;
mod http;
pub mod openai;
pub mod retry;
pub mod scripted;
pub mod sse;
pub use http::client_builder;

/// An error and its sources on one line (also for the plugins' fetches).
pub(crate) use http::chain as error_chain;

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// One message of a conversation, provider-neutral.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Message {
    User {
        text: String,
    },
    Assistant {
        #[serde(default, skip_serializing_if = "String::is_empty")]
        text: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
    },
    Tool {
        call_id: String,
        name: String,
        content: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
}

impl Message {
    pub fn user(text: impl Into<String>) -> Self {
        Message::User { text: text.into() }
    }

    /// The text a scripted `when` or a human reader would look at.
    pub fn text(&self) -> &str {
        match self {
            Message::User { text } | Message::Assistant { text, .. } => text,
            Message::Tool { content, .. } => content,
        }
    }
}

/// A tool call as the model produced it. `arguments` is kept as the raw JSON
/// text the model streamed: it may be malformed, and that is reported back to
/// the model rather than lost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// A tool as the model sees it: name, description, JSON Schema of its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: serde_json::Value,
}

/// Everything a provider needs for one model turn.
#[derive(Debug, Clone)]
pub struct ModelRequest {
    /// The agent this turn is for (the scripted provider keys replies by it).
    pub agent: String,
    /// The session it belongs to: OpenAI's `prompt_cache_key`, so one
    /// session's requests reach the machine holding its cached prefix.
    pub session: String,
    pub model: String,
    /// The stable system prefix. Providers that support prompt caching mark it.
    pub system: String,
    /// Shared with the session that sent it: a request does not copy the
    /// conversation.
    pub messages: std::sync::Arc<Vec<Message>>,
    /// Shared by every request of a session.
    pub tools: std::sync::Arc<[ToolSpec]>,
    pub max_output_tokens: u32,
    /// Whether the session goes on from this request (its next request
    /// extends it), so its end is worth writing to the provider's cache; a
    /// one-off request (a summary) only reads what is cached.
    pub continued: bool,
}

/// Token usage of one model turn, normalized across providers.
///
/// `input` counts every prompt token, cached or not; `cached_input` and
/// `cache_write` say how many of those were read from or written to a prompt
/// cache (OpenAI reports cached tokens inside the prompt count, Anthropic
/// reports them beside it; both end up here the same way). `reasoning`
/// counts the output tokens a reasoning model spent thinking, where the
/// provider says (they are part of `output` and billed as output).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cached_input: u64,
    pub cache_write: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reasoning: u64,
}

fn is_zero(count: &u64) -> bool {
    *count == 0
}

impl Usage {
    pub fn add(&mut self, other: &Usage) {
        self.input += other.input;
        self.output += other.output;
        self.cached_input += other.cached_input;
        self.cache_write += other.cache_write;
        self.reasoning += other.reasoning;
    }

    pub fn total(&self) -> u64 {
        self.input + self.output
    }

    /// The share of prompt tokens read from a prompt cache, 0..=1 (cached
    /// tokens beyond `input` count as `input`, as `cost` prices them);
    /// `None` without prompt tokens.
    pub fn cache_hit_ratio(&self) -> Option<f64> {
        (self.input > 0).then(|| self.cached_input.min(self.input) as f64 / self.input as f64)
    }

    /// What these tokens cost at `price`, in US dollars.
    pub fn cost(&self, price: &crate::config::Price) -> f64 {
        let cached = self.cached_input.min(self.input);
        let written = self.cache_write.min(self.input - cached);
        let plain = self.input - cached - written;
        (plain as f64 * price.input
            + cached as f64 * price.cached_input.unwrap_or(price.input)
            + written as f64 * price.cache_write.unwrap_or(price.input)
            + self.output as f64 * price.output)
            / 1_000_000.0
    }
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its turn.
    Stop,
    /// The model asked for tools.
    ToolCalls,
    /// Output was cut at the output-token limit.
    Length,
    /// The provider refused or filtered the output.
    ContentFilter,
    /// Anything else the provider said, kept verbatim.
    Other(String),
}

/// One piece of a streamed model turn.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    TextDelta(String),
    /// A complete tool call (arguments fully assembled).
    ToolCall(ToolCall),
    Usage(Usage),
    Finish(FinishReason),
    /// An attempt failed; another follows after `delay`. With `discard`,
    /// content of the failed attempt had already streamed: everything this
    /// turn yielded so far is void and the turn starts over.
    Retry {
        attempt: u32,
        delay: Duration,
        reason: String,
        discard: bool,
    },
}

/// What went wrong talking to a model. Variants are the caller's decisions:
/// retry, compact, give up, or tell the user.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Transient: rate limit, overload, 5xx, connection trouble. Retryable.
    #[error("{provider}: {message}")]
    Transient {
        provider: &'static str,
        status: Option<u16>,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The request does not fit the model. With `fit` the server said how
    /// much room there is, and a smaller `max_tokens` may be enough;
    /// without it, compact and try once more.
    #[error("{provider}: context length exceeded: {message}")]
    ContextLength {
        provider: &'static str,
        message: String,
        fit: Option<Fit>,
    },
    /// Bad key, no permission, quota or billing exhausted: never retried.
    #[error("{provider}: {message}")]
    Auth {
        provider: &'static str,
        status: Option<u16>,
        message: String,
    },
    /// The request itself is wrong (400, 404, 413...): never retried.
    #[error("{provider}: {message}")]
    Fatal {
        provider: &'static str,
        status: Option<u16>,
        message: String,
    },
    /// No event arrived within the stream idle timeout.
    #[error("{provider}: stream stalled: no data for {} s (session.stream_idle_timeout_ms)", idle.as_secs_f32())]
    Stalled {
        provider: &'static str,
        idle: Duration,
    },
    /// The scripted provider has no reply left for this agent.
    #[error("scripted provider: {0}")]
    Script(String),
    /// The turn was cancelled.
    #[error("cancelled")]
    Cancelled,
}

/// What a context-length error said about the room a request has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// The window holds `window` tokens, of which the prompt took `prompt`
    /// (as the server counted them): the output may use the rest.
    Window { window: u64, prompt: u64 },
    /// The model writes at most `max_output` tokens in one turn.
    Output { max_output: u64 },
}

impl ProviderError {
    /// Whether a fresh attempt might succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ProviderError::Transient { .. } | ProviderError::Stalled { .. }
        )
    }

    /// The error with `note` added to what it says (a transient one; others
    /// are returned as they are).
    pub fn with_note(self, note: &str) -> ProviderError {
        match self {
            ProviderError::Transient {
                provider,
                status,
                message,
                retry_after,
            } => ProviderError::Transient {
                provider,
                status,
                message: format!("{message}; {note}"),
                retry_after,
            },
            ProviderError::Stalled { provider, idle } => ProviderError::Transient {
                provider,
                status: None,
                message: format!(
                    "stream stalled: no data for {} s (session.stream_idle_timeout_ms); {note}",
                    idle.as_secs_f32()
                ),
                retry_after: None,
            },
            other => other,
        }
    }

    /// A server-requested delay before the next attempt, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Connection settings shared by the HTTP providers.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Base URL as configured (OpenAI: including `/v1`; Anthropic: without it).
    pub base_url: String,
    pub api_key: Option<crate::config::Secret>,
    pub retry: crate::config::RetryConfig,
    pub stream_idle_timeout: Duration,
    /// The longest one streamed turn may take, keep-alives or not.
    pub turn_timeout: Duration,
    pub connect_timeout: Duration,
}

pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, ProviderError>> + Send>>;

/// One model, one streamed turn at a time (many turns may run concurrently).
///
/// Implementations handle their own retries (only before the first streamed
/// event) and their own idle timeouts; the stream ends after a `Finish` event
/// or with an error.
pub trait ModelClient: Send + Sync {
    /// Provider name for events and errors ("openai", "anthropic", "scripted").
    fn provider(&self) -> &'static str;

    /// Start one model turn. Cancelling `cancel` ends the stream promptly with
    /// `ProviderError::Cancelled`.
    fn stream(&self, request: ModelRequest, cancel: CancellationToken) -> EventStream;
}

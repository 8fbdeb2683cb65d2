//! The HTTP side shared by the OpenAI and Anthropic clients: one connection
//! pool per client, the SSE body reader with its idle timeout, and the
//! retrying stream that turns attempts into one model turn.
//!
//! A failure before any content is retried quietly (the caller sees a
//! `Retry` notice). A retryable failure after content had streamed is
//! retried too, but the turn starts over: the notice carries `discard`, and
//! the caller drops what it received of the failed attempt (text already
//! shown stays on screen, but never reaches the conversation), so a second
//! attempt's answer is never glued to the first one's beginning.
//!
//! Every session of one client shares its back-off: a server's
//! `retry-after` pauses every request of that client (one provider, one
//! key) until then, instead of each session burning its own attempts
//! against a rate limit that applies to all of them.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use tokio_util::sync::CancellationToken;

use super::retry::{ServerHints, decide, why_not};
use super::sse::{SseEvent, SseParser, TooLong};
use super::{EventStream, HttpSettings, ProviderError, StreamEvent};
use crate::config::{RetryConfig, Secret};

/// Error bodies are read up to this size; the rest is not worth waiting for.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// A whole (non-streamed) JSON response is read up to this size.
const JSON_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// Keys shorter than this are placeholders (local servers ignore them) and are
/// not scrubbed from messages, where replacing them would garble the text.
const REDACT_MIN_KEY_LEN: usize = 8;

/// A wire format's stream decoder: SSE events in, model-turn events out.
/// Implementations are pure state machines; IO stays here.
pub(crate) trait Decoder: Send + 'static {
    /// Decode one SSE event. An `Err` ends the turn (a mid-stream error event).
    fn event(&mut self, event: SseEvent) -> Result<Vec<StreamEvent>, ProviderError>;

    /// The turn is complete; nothing more is read.
    fn is_done(&self) -> bool;

    /// The body ended or broke before `is_done`. `Some` with the closing
    /// events if enough arrived to call the turn finished (say the finish
    /// reason came but the terminator did not), `None` if the turn was cut.
    fn end(&mut self) -> Option<Vec<StreamEvent>>;
}

/// How a provider reads an error body (or a mid-stream error event).
pub(crate) type Classifier = fn(Option<u16>, &str, ServerHints) -> ProviderError;

/// One model request, ready to be sent as many times as the retry policy allows.
#[derive(Clone)]
pub(crate) struct Prepared {
    pub url: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The HTTP client of one provider client object: a connection pool with a
/// connect timeout but no total timeout (a streamed turn may rightly last
/// minutes; the idle timeout catches a dead stream instead).
#[derive(Clone)]
pub(crate) struct Transport {
    provider: &'static str,
    /// The client, or why it could not be built (reported on every turn
    /// rather than panicking in a constructor).
    client: Result<reqwest::Client, String>,
    key: Option<Secret>,
    retry: RetryConfig,
    idle: Duration,
    /// The longest one attempt's stream may take.
    turn: Duration,
    /// The back-off every session of this client shares.
    pause: Pause,
}

/// When the server may be asked again: set by a `retry-after`, honoured by
/// every attempt of every session that shares it.
#[derive(Clone, Default)]
pub(crate) struct Pause(Arc<Mutex<Option<Instant>>>);

impl Pause {
    /// How long to wait before the next request, if a pause is on.
    fn remaining(&self) -> Option<Duration> {
        let until = (*self.0.lock().expect("pause lock"))?;
        until
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
    }

    /// Hold every request back for `delay` from now (a longer pause that is
    /// already on stays).
    fn hold(&self, delay: Duration) {
        let until = Instant::now() + delay;
        let mut current = self.0.lock().expect("pause lock");
        if current.is_none_or(|at| at < until) {
            *current = Some(until);
        }
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("provider", &self.provider)
            .field("key", &self.key)
            .field("retry", &self.retry)
            .field("idle", &self.idle)
            .finish_non_exhaustive()
    }
}

/// The one way orch starts building an HTTP client (models, plugin
/// fetches, MCP servers): rustls with ring, the system's roots.
pub fn client_builder() -> reqwest::ClientBuilder {
    static PROVIDER: std::sync::Once = std::sync::Once::new();
    PROVIDER.call_once(|| {
        // Fails only when a provider is already installed, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
}

impl Transport {
    pub fn new(provider: &'static str, settings: &HttpSettings) -> Self {
        let client = client_builder()
            .connect_timeout(settings.connect_timeout)
            .build()
            .map_err(|err| format!("cannot build the http client: {}", chain(&err)));
        Transport {
            provider,
            client,
            key: settings.api_key.clone().filter(|key| !key.is_empty()),
            retry: settings.retry.clone(),
            idle: settings.stream_idle_timeout,
            turn: settings.turn_timeout,
            pause: Pause::default(),
        }
    }

    /// The API key, if one is configured and non-empty.
    pub fn key(&self) -> Option<&Secret> {
        self.key.as_ref()
    }

    /// Run one model turn: send `prepared`, decode its SSE body with a fresh
    /// decoder per attempt, retry before the first content event.
    pub fn stream<D: Decoder>(
        &self,
        prepared: Prepared,
        classify: Classifier,
        new_decoder: fn() -> D,
        cancel: CancellationToken,
    ) -> EventStream {
        let client = match &self.client {
            Ok(client) => client.clone(),
            Err(message) => {
                let error = ProviderError::Fatal {
                    provider: self.provider,
                    status: None,
                    message: message.clone(),
                };
                return Box::pin(futures::stream::iter([Err(error)]));
            }
        };
        let (provider, idle, turn, key) = (self.provider, self.idle, self.turn, self.key.clone());
        let attempt = move || {
            let (client, prepared, key) = (client.clone(), prepared.clone(), key.clone());
            async move {
                let scrub = move |error: ProviderError| redact_error(error, key.as_ref());
                let response = send(&client, &prepared, idle, provider)
                    .await
                    .map_err(&scrub)?;
                let status = response.status();
                if !status.is_success() {
                    let hints = ServerHints::from_headers(response.headers(), SystemTime::now());
                    let body = read_error_body(response, idle).await;
                    return Err(scrub(classify(Some(status.as_u16()), &body, hints)));
                }
                let events = decode(response, new_decoder(), idle, turn, provider)
                    .map(move |item| item.map_err(&scrub));
                Ok(Box::pin(events) as EventStream)
            }
        };
        retrying(self.retry.clone(), self.pause.clone(), cancel, attempt)
    }
}

async fn send(
    client: &reqwest::Client,
    prepared: &Prepared,
    idle: Duration,
    provider: &'static str,
) -> Result<reqwest::Response, ProviderError> {
    let request = client
        .post(&prepared.url)
        .headers(prepared.headers.clone())
        .body(prepared.body.clone())
        .send();
    // Waiting for the response head counts as idleness too: a server that
    // accepts the connection and never answers is as stuck as a silent stream.
    match tokio::time::timeout(idle, request).await {
        Err(_) => Err(ProviderError::Stalled { provider, idle }),
        Ok(Err(err)) if err.is_builder() => Err(ProviderError::Fatal {
            provider,
            status: None,
            message: format!("invalid request: {}", chain(&err)),
        }),
        Ok(Err(err)) => Err(transport_error(provider, "request failed", &err)),
        Ok(Ok(response)) => Ok(response),
    }
}

/// The body of an error response, as far as it arrives in time.
async fn read_error_body(response: reqwest::Response, idle: Duration) -> String {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while body.len() < ERROR_BODY_LIMIT {
        match tokio::time::timeout(idle, chunks.next()).await {
            Ok(Some(Ok(bytes))) => body.extend_from_slice(&bytes),
            _ => break,
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

fn transport_error(provider: &'static str, what: &str, err: &reqwest::Error) -> ProviderError {
    ProviderError::Transient {
        provider,
        status: None,
        message: format!("{what}: {}", chain(err)),
        retry_after: None,
    }
}

/// An error and its sources on one line (reqwest's own message is only the
/// outermost layer, "error sending request").
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

/// Read a 2xx body through `decoder`, failing with `Stalled` when no bytes
/// arrive for `idle` (keep-alive comments count as bytes: a server that says it
/// is still working is not stalled).
///
/// A server that ignored `stream: true` and answered with one JSON document
/// (some compatible servers and proxies do) gets that document handed to the
/// decoder as a single event once it is complete.
fn decode<D: Decoder>(
    response: reqwest::Response,
    mut decoder: D,
    idle: Duration,
    turn: Duration,
    provider: &'static str,
) -> EventStream {
    let whole_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim_start().starts_with("application/json"));
    Box::pin(async_stream::stream! {
        let mut body = response.bytes_stream();
        let mut parser = SseParser::new();
        let mut document = Vec::new();
        let deadline = tokio::time::Instant::now() + turn;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let next = tokio::time::timeout(idle.min(left), body.next()).await;
            let (events, cut) = match next {
                Err(_) if left <= idle => (
                    Vec::new(),
                    Some(Some(ProviderError::Transient {
                        provider,
                        status: None,
                        message: format!(
                            "the turn streamed past its {} s deadline (session.turn_timeout_ms) without finishing",
                            turn.as_secs()
                        ),
                        retry_after: None,
                    })),
                ),
                Ok(Some(Ok(_))) if whole_json && document.len() > JSON_BODY_LIMIT => (
                    Vec::new(),
                    Some(Some(ProviderError::Fatal {
                        provider,
                        status: None,
                        message: format!("response body larger than {JSON_BODY_LIMIT} bytes"),
                    })),
                ),
                Ok(Some(Ok(bytes))) if whole_json => {
                    document.extend_from_slice(&bytes);
                    (Vec::new(), None)
                }
                Ok(Some(Ok(bytes))) => match parser.feed(&bytes) {
                    Ok(events) => (events, None),
                    Err(TooLong { limit }) => (
                        Vec::new(),
                        Some(Some(ProviderError::Fatal {
                            provider,
                            status: None,
                            message: format!(
                                "the stream sent a line or event larger than {limit} bytes"
                            ),
                        })),
                    ),
                },
                Ok(None) if whole_json => {
                    let data = String::from_utf8_lossy(&document).into_owned();
                    (vec![SseEvent { event: None, data }], Some(None))
                }
                Ok(None) => (parser.finish().into_iter().collect(), Some(None)),
                Ok(Some(Err(err))) => (
                    Vec::new(),
                    Some(Some(transport_error(provider, "connection lost mid-stream", &err))),
                ),
                Err(_) => (Vec::new(), Some(Some(ProviderError::Stalled { provider, idle }))),
            };
            for event in events {
                match decoder.event(event) {
                    Ok(out) => {
                        for item in out {
                            yield Ok(item);
                        }
                    }
                    Err(err) => {
                        yield Err(err);
                        return;
                    }
                }
                if decoder.is_done() {
                    return;
                }
            }
            let Some(cause) = cut else { continue };
            match decoder.end() {
                Some(out) => {
                    for item in out {
                        yield Ok(item);
                    }
                }
                None => {
                    yield Err(cause.unwrap_or(ProviderError::Transient {
                        provider,
                        status: None,
                        message: "connection closed before the turn finished".into(),
                        retry_after: None,
                    }));
                }
            }
            return;
        }
    })
}

/// Whether an event is content the caller may already have shown.
fn is_content(event: &StreamEvent) -> bool {
    matches!(event, StreamEvent::TextDelta(_) | StreamEvent::ToolCall(_))
}

/// Turn attempts into one model turn. `attempt` sends one request and returns
/// its event stream (or why it failed before streaming). Retryable failures
/// are retried per [`decide`], each announced with a `Retry` event whose
/// `attempt` is the number of the attempt about to start (2 for the first
/// retry) and whose `discard` says content of the failed attempt had
/// streamed. Before each attempt the shared `pause` is waited out, and a
/// server's `retry-after` extends it for everyone. Cancellation ends the
/// stream with `Cancelled` promptly, whether it comes while connecting,
/// streaming or sleeping.
pub(crate) fn retrying<F, Fut>(
    config: RetryConfig,
    pause: Pause,
    cancel: CancellationToken,
    mut attempt: F,
) -> EventStream
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<EventStream, ProviderError>> + Send + 'static,
{
    Box::pin(async_stream::stream! {
        let started = Instant::now();
        let mut number = 1u32;
        loop {
            if let Some(wait) = pause.remaining() {
                let cancelled = tokio::select! {
                    biased;
                    _ = cancel.cancelled() => true,
                    _ = tokio::time::sleep(wait) => false,
                };
                if cancelled {
                    yield Err(ProviderError::Cancelled);
                    return;
                }
            }
            let outcome = tokio::select! {
                biased;
                _ = cancel.cancelled() => None,
                outcome = attempt() => Some(outcome),
            };
            let (failure, streamed_content) = match outcome {
                None => {
                    yield Err(ProviderError::Cancelled);
                    return;
                }
                Some(Err(err)) => (err, false),
                Some(Ok(mut events)) => {
                    let mut streamed_content = false;
                    loop {
                        let next = tokio::select! {
                            biased;
                            _ = cancel.cancelled() => Some(Err(ProviderError::Cancelled)),
                            next = events.next() => next,
                        };
                        match next {
                            None => return,
                            Some(Ok(event)) => {
                                streamed_content |= is_content(&event);
                                yield Ok(event);
                            }
                            Some(Err(err)) if matches!(err, ProviderError::Cancelled) => {
                                yield Err(err);
                                return;
                            }
                            Some(Err(err)) => break (err, streamed_content),
                        }
                    }
                }
            };
            let Some(delay) = decide(&config, number, started.elapsed(), &failure, fastrand::f64())
            else {
                yield Err(if failure.is_retryable() {
                    let why = why_not(&config, number, started.elapsed(), &failure);
                    failure.with_note(&why)
                } else {
                    failure
                });
                return;
            };
            if let Some(asked) = failure.retry_after() {
                pause.hold(asked);
            }
            number += 1;
            yield Ok(StreamEvent::Retry {
                attempt: number,
                delay,
                reason: failure.to_string(),
                discard: streamed_content,
            });
            let cancelled = tokio::select! {
                biased;
                _ = cancel.cancelled() => true,
                _ = tokio::time::sleep(delay) => false,
            };
            if cancelled {
                yield Err(ProviderError::Cancelled);
                return;
            }
        }
    })
}

/// Remove the API key from any text a server or library produced.
pub(crate) fn redact(text: &str, key: Option<&Secret>) -> String {
    match key {
        Some(key) if key.expose().len() >= REDACT_MIN_KEY_LEN => {
            text.replace(key.expose(), "[redacted]")
        }
        _ => text.to_string(),
    }
}

/// [`redact`] applied to every message an error carries.
pub(crate) fn redact_error(error: ProviderError, key: Option<&Secret>) -> ProviderError {
    match error {
        ProviderError::Transient {
            provider,
            status,
            message,
            retry_after,
        } => ProviderError::Transient {
            provider,
            status,
            message: redact(&message, key),
            retry_after,
        },
        ProviderError::ContextLength {
            provider,
            message,
            fit,
        } => ProviderError::ContextLength {
            provider,
            message: redact(&message, key),
            fit,
        },
        ProviderError::Auth {
            provider,
            status,
            message,
        } => ProviderError::Auth {
            provider,
            status,
            message: redact(&message, key),
        },
        ProviderError::Fatal {
            provider,
            status,
            message,
        } => ProviderError::Fatal {
            provider,
            status,
            message: redact(&message, key),
        },
        ProviderError::Script(message) => ProviderError::Script(redact(&message, key)),
        error @ (ProviderError::Stalled { .. } | ProviderError::Cancelled) => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{FinishReason, ToolCall};
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicU32, Ordering};

    type Attempt = Result<Vec<Result<StreamEvent, ProviderError>>, ProviderError>;

    fn config() -> RetryConfig {
        RetryConfig {
            max_attempts: 3,
            base_delay_ms: 1,
            max_delay_ms: 2,
            deadline_ms: 10_000,
            max_retry_after_ms: 120_000,
            turn_retries: 0,
        }
    }

    fn transient(retry_after: Option<Duration>) -> ProviderError {
        ProviderError::Transient {
            provider: "openai",
            status: Some(503),
            message: "http 503".into(),
            retry_after,
        }
    }

    /// Run the driver over scripted attempts; returns what it yielded and
    /// how many attempts it started.
    async fn run(
        config: RetryConfig,
        attempts: Vec<Attempt>,
        cancel: CancellationToken,
    ) -> (Vec<Result<StreamEvent, ProviderError>>, u32) {
        run_with_pause(config, Pause::default(), attempts, cancel).await
    }

    async fn run_with_pause(
        config: RetryConfig,
        pause: Pause,
        attempts: Vec<Attempt>,
        cancel: CancellationToken,
    ) -> (Vec<Result<StreamEvent, ProviderError>>, u32) {
        let script = Arc::new(Mutex::new(VecDeque::from(attempts)));
        let started = Arc::new(AtomicU32::new(0));
        let counter = started.clone();
        let stream = retrying(config, pause, cancel, move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let next = script.lock().expect("script lock").pop_front();
            async move {
                match next {
                    Some(Ok(events)) => Ok(Box::pin(futures::stream::iter(events)) as EventStream),
                    Some(Err(err)) => Err(err),
                    None => Ok(Box::pin(futures::stream::pending()) as EventStream),
                }
            }
        });
        let items = tokio::time::timeout(Duration::from_secs(10), stream.collect::<Vec<_>>())
            .await
            .expect("the driver finishes");
        (items, started.load(Ordering::SeqCst))
    }

    fn text(text: &str) -> Result<StreamEvent, ProviderError> {
        Ok(StreamEvent::TextDelta(text.into()))
    }

    fn finish() -> Result<StreamEvent, ProviderError> {
        Ok(StreamEvent::Finish(FinishReason::Stop))
    }

    #[tokio::test]
    async fn retries_failures_before_content_with_notices() {
        let (items, attempts) = run(
            config(),
            vec![
                Err(transient(Some(Duration::from_millis(3)))),
                Ok(vec![Err(transient(Some(Duration::from_millis(4))))]),
                Ok(vec![text("hi"), finish()]),
            ],
            CancellationToken::new(),
        )
        .await;
        assert_eq!(attempts, 3);
        let items: Vec<StreamEvent> = items
            .into_iter()
            .map(|item| item.expect("no error"))
            .collect();
        assert_eq!(
            items,
            vec![
                StreamEvent::Retry {
                    attempt: 2,
                    delay: Duration::from_millis(3),
                    reason: "openai: http 503".into(),
                    discard: false,
                },
                StreamEvent::Retry {
                    attempt: 3,
                    delay: Duration::from_millis(4),
                    reason: "openai: http 503".into(),
                    discard: false,
                },
                StreamEvent::TextDelta("hi".into()),
                StreamEvent::Finish(FinishReason::Stop),
            ]
        );
    }

    #[tokio::test]
    async fn a_failure_after_content_starts_the_turn_over_with_a_discard_notice() {
        let call = ToolCall {
            id: "c1".into(),
            name: "read".into(),
            arguments: "{}".into(),
        };
        for content in [
            StreamEvent::TextDelta("partial".into()),
            StreamEvent::ToolCall(call),
        ] {
            let (items, attempts) = run(
                config(),
                vec![
                    Ok(vec![Ok(content.clone()), Err(transient(None))]),
                    Ok(vec![text("whole"), finish()]),
                ],
                CancellationToken::new(),
            )
            .await;
            assert_eq!(attempts, 2);
            let items: Vec<StreamEvent> = items.into_iter().map(Result::unwrap).collect();
            assert_eq!(items.len(), 4, "{items:?}");
            assert_eq!(items[0], content);
            assert!(matches!(
                items[1],
                StreamEvent::Retry {
                    attempt: 2,
                    discard: true,
                    ..
                }
            ));
            assert_eq!(items[2], StreamEvent::TextDelta("whole".into()));
        }
        // A failure that is not retryable still ends the turn.
        let fatal = ProviderError::Fatal {
            provider: "openai",
            status: None,
            message: "bad".into(),
        };
        let (items, attempts) = run(
            config(),
            vec![Ok(vec![text("partial"), Err(fatal)])],
            CancellationToken::new(),
        )
        .await;
        assert_eq!(attempts, 1);
        assert!(matches!(items[1], Err(ProviderError::Fatal { .. })));
    }

    #[tokio::test]
    async fn one_sessions_retry_after_pauses_every_session_of_the_client() {
        let pause = Pause::default();
        let asked = Duration::from_millis(300);
        let (items, _) = run_with_pause(
            config(),
            pause.clone(),
            vec![Err(transient(Some(asked))), Ok(vec![text("ok"), finish()])],
            CancellationToken::new(),
        )
        .await;
        assert!(matches!(items.last(), Some(Ok(StreamEvent::Finish(_)))));
        // A later session of the same client that never saw the 429 waits
        // out what is left of the pause before its own first request.
        pause.hold(asked);
        let started = Instant::now();
        let (_, attempts) = run_with_pause(
            config(),
            pause.clone(),
            vec![Ok(vec![text("ok"), finish()])],
            CancellationToken::new(),
        )
        .await;
        assert_eq!(attempts, 1);
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "{:?}",
            started.elapsed()
        );
        // A shorter retry-after never shortens a pause already on.
        pause.hold(Duration::from_secs(60));
        pause.hold(Duration::from_millis(1));
        assert!(pause.remaining().unwrap() > Duration::from_secs(50));
    }

    #[tokio::test]
    async fn usage_before_a_failure_does_not_count_as_content() {
        let (items, attempts) = run(
            config(),
            vec![
                Ok(vec![
                    Ok(StreamEvent::Usage(Default::default())),
                    Err(transient(None)),
                ]),
                Ok(vec![text("ok"), finish()]),
            ],
            CancellationToken::new(),
        )
        .await;
        assert_eq!(attempts, 2);
        assert!(matches!(
            items[1],
            Ok(StreamEvent::Retry { attempt: 2, .. })
        ));
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts_with_the_last_error() {
        let (items, attempts) = run(
            config(),
            vec![
                Err(transient(None)),
                Err(transient(None)),
                Err(ProviderError::Stalled {
                    provider: "openai",
                    idle: Duration::from_millis(5),
                }),
            ],
            CancellationToken::new(),
        )
        .await;
        assert_eq!(attempts, 3);
        assert_eq!(items.len(), 3);
        // The last error, saying which limit ran out; still retryable for
        // the session's own turn retries.
        let Err(last) = &items[2] else {
            panic!("{:?}", items[2])
        };
        assert!(last.is_retryable());
        let text = last.to_string();
        assert!(text.contains("stream stalled"), "{text}");
        assert!(text.contains("(retry.max_attempts)"), "{text}");
    }

    #[tokio::test]
    async fn terminal_errors_end_the_turn_at_once() {
        let (items, attempts) = run(
            config(),
            vec![Err(ProviderError::Auth {
                provider: "openai",
                status: Some(401),
                message: "http 401".into(),
            })],
            CancellationToken::new(),
        )
        .await;
        assert_eq!(attempts, 1);
        assert!(matches!(
            items.as_slice(),
            [Err(ProviderError::Auth { .. })]
        ));
    }

    #[tokio::test]
    async fn cancel_interrupts_the_retry_sleep() {
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        let canceller = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            trigger.cancel();
        });
        let config = RetryConfig {
            deadline_ms: 120_000,
            ..config()
        };
        let (items, attempts) = run(
            config,
            vec![Err(transient(Some(Duration::from_secs(60))))],
            cancel,
        )
        .await;
        canceller.await.expect("canceller ran");
        assert_eq!(attempts, 1);
        assert!(matches!(items[0], Ok(StreamEvent::Retry { .. })));
        assert!(matches!(items[1], Err(ProviderError::Cancelled)));
        assert_eq!(items.len(), 2);
    }

    #[tokio::test]
    async fn cancel_interrupts_a_silent_stream() {
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        let canceller = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            trigger.cancel();
        });
        // No scripted attempt: the driver gets a stream that never yields.
        let (items, _) = run(config(), vec![], cancel).await;
        canceller.await.expect("canceller ran");
        assert!(matches!(items.as_slice(), [Err(ProviderError::Cancelled)]));
    }

    #[test]
    fn redaction_scrubs_keys_from_every_message() {
        let key = Secret::new("sk-live-0123456789");
        let error = ProviderError::Auth {
            provider: "openai",
            status: Some(401),
            message: "http 401: Incorrect API key provided: sk-live-0123456789".into(),
        };
        let error = redact_error(error, Some(&key));
        assert_eq!(
            error.to_string(),
            "openai: http 401: Incorrect API key provided: [redacted]"
        );
        assert_eq!(
            redact("key x in text", Some(&Secret::new("x"))),
            "key x in text"
        );
        assert_eq!(redact("no key", None), "no key");
    }
}

//! The retry policy for model requests, and how a provider's failure becomes
//! a retry decision.
//!
//! Everything here is pure: [`decide`] turns (config, attempt, time spent,
//! error, a jitter draw) into "wait this long" or "give up"; the header parsers
//! read what the server asked for; the classifiers turn an HTTP status and
//! error body (or a mid-stream error event) into a [`ProviderError`] variant,
//! which is the caller's decision. The retrying stream that applies them lives
//! in `provider::http`.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::{Fit, ProviderError};
use crate::config::RetryConfig;

/// Whether to try again, and after how long.
///
/// `attempt` counts the attempts made so far, the failed one included (the
/// first failure is attempt 1). `elapsed` is the time since the first attempt
/// started. `jitter` is a uniform draw from `[0, 1]` (values outside are
/// clamped), passed in so the policy stays a function.
///
/// Only retryable errors are retried, at most `max_attempts` attempts in all,
/// and no retry starts later than `deadline_ms` after the first attempt. A
/// server-requested delay is honoured exactly unless it exceeds
/// `max_retry_after_ms`, in which case waiting is pointless and we fail fast
/// (a scheduler above can re-queue the work). Otherwise the delay is full
/// jitter over an exponential ceiling: `jitter × min(max_delay, base × 2^(attempt-1))`.
pub fn decide(
    config: &RetryConfig,
    attempt: u32,
    elapsed: Duration,
    error: &ProviderError,
    jitter: f64,
) -> Option<Duration> {
    if !error.is_retryable() || attempt >= config.max_attempts {
        return None;
    }
    let delay = match error.retry_after() {
        Some(asked) if asked > Duration::from_millis(config.max_retry_after_ms) => return None,
        Some(asked) if !asked.is_zero() => asked,
        _ => backoff(config, attempt, jitter),
    };
    if elapsed.saturating_add(delay) > Duration::from_millis(config.deadline_ms) {
        return None;
    }
    Some(delay)
}

/// Why [`decide`] said no to a retryable error, naming the limit that ran
/// out, for the error the caller finally sees.
pub fn why_not(
    config: &RetryConfig,
    attempt: u32,
    elapsed: Duration,
    error: &ProviderError,
) -> String {
    if attempt >= config.max_attempts {
        return format!("gave up after {attempt} attempts (retry.max_attempts)");
    }
    if let Some(asked) = error.retry_after()
        && asked > Duration::from_millis(config.max_retry_after_ms)
    {
        return format!(
            "the server asked to wait {} s, longer than retry.max_retry_after_ms",
            asked.as_secs()
        );
    }
    format!(
        "gave up after {attempt} attempts in {} s: the retry deadline (retry.deadline_ms, {} s) ran out",
        elapsed.as_secs(),
        config.deadline_ms / 1000
    )
}

/// The full-jitter backoff after failed attempt number `attempt` (1-based).
pub fn backoff(config: &RetryConfig, attempt: u32, jitter: f64) -> Duration {
    let exponent = attempt.saturating_sub(1);
    let ceiling = config
        .base_delay_ms
        .saturating_mul(2u64.saturating_pow(exponent))
        .min(config.max_delay_ms);
    let jitter = if jitter.is_nan() {
        1.0
    } else {
        jitter.clamp(0.0, 1.0)
    };
    Duration::from_millis((ceiling as f64 * jitter) as u64)
}

/// What the server said about retrying, read from response headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerHints {
    /// From `retry-after-ms`, else `retry-after`.
    pub retry_after: Option<Duration>,
    /// From `x-should-retry`: the server's override of our classification.
    pub should_retry: Option<bool>,
}

impl ServerHints {
    /// Read the hints from response headers; `now` resolves an HTTP-date.
    pub fn from_headers(headers: &reqwest::header::HeaderMap, now: SystemTime) -> Self {
        let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        let retry_after = text("retry-after-ms")
            .and_then(parse_retry_after_ms)
            .or_else(|| text("retry-after").and_then(|value| parse_retry_after(value, now)));
        ServerHints {
            retry_after,
            should_retry: text("x-should-retry").and_then(parse_should_retry),
        }
    }
}

/// `retry-after-ms: 1500` (OpenAI's and the Stainless SDKs' header; fractional
/// milliseconds are accepted).
pub fn parse_retry_after_ms(value: &str) -> Option<Duration> {
    let millis: f64 = value.trim().parse().ok()?;
    nanos(millis * 1e6)
}

/// `retry-after: 2`, `retry-after: 0.5` or `retry-after: <HTTP-date>`.
/// A date in the past means "now".
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return nanos(seconds * 1e9);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A parsed count of nanoseconds, rounded so `0.02` seconds is exactly 20 ms;
/// negative, infinite or absurd values mean nothing.
fn nanos(value: f64) -> Option<Duration> {
    (value.is_finite() && value >= 0.0 && value < u64::MAX as f64)
        .then(|| Duration::from_nanos(value.round() as u64))
}

/// `x-should-retry: true|false`.
pub fn parse_should_retry(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// The fields of an error body that classification looks at.
#[derive(Debug, Default)]
struct ErrorBody {
    kind: String,
    code: String,
    message: String,
    /// What the body says about the room a request has, when it says.
    fit: Option<Fit>,
}

impl ErrorBody {
    /// Both providers nest the useful part under `error`; OpenAI's `code` may
    /// be a string or (OpenRouter) a number.
    fn parse(body: &str) -> ErrorBody {
        let Ok(value) = serde_json::from_str::<Value>(body) else {
            return ErrorBody {
                message: excerpt(body),
                fit: fit_in(body),
                ..ErrorBody::default()
            };
        };
        let error = value.get("error").unwrap_or(&value);
        let text = |key: &str| match error.get(key) {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Number(number)) => number.to_string(),
            _ => String::new(),
        };
        let message = match error {
            Value::String(text) => text.clone(),
            _ => text("message"),
        };
        // llama.cpp's server gives the counts as fields of the error.
        let counted = |key: &str| error.get(key).and_then(Value::as_u64);
        let fit = match (counted("n_ctx"), counted("n_prompt_tokens")) {
            (Some(window), Some(prompt)) => Some(Fit::Window { window, prompt }),
            _ => fit_in(&message),
        };
        ErrorBody {
            kind: text("type"),
            code: text("code"),
            message: excerpt(&message),
            fit,
        }
    }

    /// `what: message (code)` with the empty parts left out.
    fn describe(&self, what: &str) -> String {
        let mut out = what.to_string();
        if !self.message.is_empty() {
            out.push_str(": ");
            out.push_str(&self.message);
        }
        let tag = if self.code.is_empty() {
            &self.kind
        } else {
            &self.code
        };
        if !tag.is_empty() {
            out.push_str(&format!(" ({tag})"));
        }
        out
    }
}

/// A server message shortened for an error line: whitespace collapsed, at
/// most 300 characters.
fn excerpt(text: &str) -> String {
    const LIMIT: usize = 300;
    crate::text::preview(&crate::text::squash_spaces(text), LIMIT)
}

/// What an error message says about the room a request has:
///
/// - OpenAI, vLLM: "maximum context length is 8192 tokens. However, you
///   requested 10000 tokens (2000 in the messages, 8000 in the completion)"
///   or "... maximum context length is 4096 tokens and your request has 1200
///   input tokens";
/// - Anthropic: "input length and `max_tokens` exceed context limit:
///   197000 + 8192 > 200000";
/// - an output cap: "supports at most 4096 completion tokens" (OpenAI),
///   "max_tokens: 64000 > 32000, which is the maximum allowed number of
///   output tokens" (Anthropic).
pub fn fit_in(message: &str) -> Option<Fit> {
    let lower = message.to_ascii_lowercase();
    if let Some(window) = number_after(&lower, "maximum context length is ") {
        let prompt = number_after(&lower, "tokens (")
            .filter(|_| lower.contains(" in the messages"))
            .or_else(|| number_after(&lower, "your request has "));
        return prompt.map(|prompt| Fit::Window { window, prompt });
    }
    if let Some(rest) = lower.split("exceed context limit:").nth(1) {
        let numbers = numbers(rest);
        if let [prompt, _, window, ..] = numbers[..] {
            return Some(Fit::Window { window, prompt });
        }
    }
    if let Some(max_output) =
        number_after(&lower, "supports at most ").filter(|_| lower.contains("completion tokens"))
    {
        return Some(Fit::Output { max_output });
    }
    if lower.contains("maximum allowed number of output tokens")
        && let Some(rest) = lower.split("max_tokens:").nth(1)
        && let [_, max_output, ..] = numbers(rest)[..]
    {
        return Some(Fit::Output { max_output });
    }
    None
}

/// The number right after `needle` in `text`.
fn number_after(text: &str, needle: &str) -> Option<u64> {
    let rest = &text[text.find(needle)? + needle.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The first few whole numbers in `text`, in order.
fn numbers(text: &str) -> Vec<u64> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|part| !part.is_empty())
        .take(4)
        .filter_map(|part| part.parse().ok())
        .collect()
}

/// The decision classes, before they become a `ProviderError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Transient,
    ContextLength,
    Auth,
    Fatal,
}

fn build(
    provider: &'static str,
    class: Class,
    status: Option<u16>,
    message: String,
    hints: ServerHints,
    fit: Option<Fit>,
) -> ProviderError {
    // The server's explicit word wins over our reading of the status, except
    // that a bad key or an overlong prompt never gets better by retrying.
    let class = match (class, hints.should_retry) {
        (Class::Transient, Some(false)) => Class::Fatal,
        (Class::Fatal, Some(true)) => Class::Transient,
        (class, _) => class,
    };
    match class {
        Class::Transient => ProviderError::Transient {
            provider,
            status,
            message,
            retry_after: hints.retry_after,
        },
        Class::ContextLength => ProviderError::ContextLength {
            provider,
            message,
            fit,
        },
        Class::Auth => ProviderError::Auth {
            provider,
            status,
            message,
        },
        Class::Fatal => ProviderError::Fatal {
            provider,
            status,
            message,
        },
    }
}

/// The decision for an HTTP status alone.
fn class_of_status(status: u16) -> Class {
    match status {
        401..=403 => Class::Auth,
        408 | 409 | 429 | 500..=599 => Class::Transient,
        _ => Class::Fatal,
    }
}

fn what(status: Option<u16>) -> String {
    match status {
        Some(status) => format!("http {status}"),
        None => "error event in stream".to_string(),
    }
}

/// OpenAI-compatible error codes meaning the account cannot pay: retrying
/// only burns the deadline.
const OPENAI_QUOTA_CODES: &[&str] = &[
    "insufficient_quota",
    "billing_hard_limit_reached",
    "billing_not_active",
    "credit_balance_exhausted",
    "access_terminated",
];

/// Classify an OpenAI-compatible error: an HTTP status with its body, or
/// (`status: None`) an `{"error":{...}}` object streamed after HTTP 200, as
/// OpenRouter does.
pub fn classify_openai(status: Option<u16>, body: &str, hints: ServerHints) -> ProviderError {
    let error = ErrorBody::parse(body);
    // OpenRouter puts the upstream HTTP status in a numeric `code`.
    let status = status.or_else(|| error.code.parse::<u16>().ok());
    let message = error.describe(&what(status));
    let lower = error.message.to_ascii_lowercase();
    let is_quota = [&error.code, &error.kind].iter().any(|tag| {
        OPENAI_QUOTA_CODES.contains(&tag.as_str()) || tag.ends_with("_spend_limit_exceeded")
    });
    let class = if error.code == "context_length_exceeded"
        || lower.contains("maximum context length")
        || lower.contains("context_length_exceeded")
        || lower.contains("exceeds the context window")
        || lower.contains("exceeds the available context size")
        || matches!(error.fit, Some(Fit::Output { .. }))
    {
        Class::ContextLength
    } else if is_quota {
        Class::Auth
    } else if let Some(status) = status {
        class_of_status(status)
    } else if error.kind == "invalid_request_error" {
        Class::Fatal
    } else {
        // A failure reported mid-stream without a status is the upstream
        // model server falling over.
        Class::Transient
    };
    build("openai", class, status, message, hints, error.fit)
}

/// Classify an Anthropic error: an HTTP status with its body, or
/// (`status: None`) the data of a mid-stream `event: error`. The inner
/// `error.type` decides; the status is the fallback (overloads sometimes
/// arrive as 429, and a mid-stream `overloaded_error` is a 529 after the fact).
pub fn classify_anthropic(status: Option<u16>, body: &str, hints: ServerHints) -> ProviderError {
    let error = ErrorBody::parse(body);
    let message = error.describe(&what(status));
    let lower = error.message.to_ascii_lowercase();
    let class = if lower.contains("prompt is too long")
        || lower.contains("exceed context limit")
        || lower.contains("context window")
        || matches!(error.fit, Some(Fit::Output { .. }))
    {
        Class::ContextLength
    } else if lower.contains("credit balance") {
        // Anthropic reports an empty balance as a 400 invalid_request_error.
        Class::Auth
    } else {
        match error.kind.as_str() {
            "overloaded_error" | "rate_limit_error" | "api_error" | "timeout_error"
            | "conflict_error" => Class::Transient,
            "authentication_error" | "permission_error" | "billing_error" => Class::Auth,
            "invalid_request_error" | "not_found_error" | "request_too_large" => Class::Fatal,
            _ => match status {
                Some(status) => class_of_status(status),
                None => Class::Transient,
            },
        }
    };
    build("anthropic", class, status, message, hints, error.fit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RetryConfig {
        RetryConfig {
            max_attempts: 9,
            base_delay_ms: 500,
            max_delay_ms: 30_000,
            deadline_ms: 180_000,
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

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn decide_table() {
        let stalled = ProviderError::Stalled {
            provider: "openai",
            idle: ms(100),
        };
        let auth = ProviderError::Auth {
            provider: "openai",
            status: Some(401),
            message: "http 401".into(),
        };
        let quota = classify_openai(
            Some(429),
            r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#,
            ServerHints::default(),
        );
        let context = ProviderError::ContextLength {
            provider: "anthropic",
            message: "prompt is too long".into(),
            fit: None,
        };
        let fatal = ProviderError::Fatal {
            provider: "openai",
            status: Some(400),
            message: "http 400".into(),
        };
        // (case, attempt, elapsed ms, error, jitter, expected delay)
        type Row = (&'static str, u32, u64, ProviderError, f64, Option<Duration>);
        #[rustfmt::skip]
        let table: Vec<Row> = vec![
            ("first retry, full jitter", 1, 0, transient(None), 0.5, Some(ms(250))),
            ("first retry, top of range", 1, 0, transient(None), 1.0, Some(ms(500))),
            ("zero jitter retries at once", 1, 0, transient(None), 0.0, Some(ms(0))),
            ("ceiling doubles", 3, 0, transient(None), 1.0, Some(ms(2000))),
            ("ceiling doubles, jittered", 4, 0, transient(None), 0.25, Some(ms(1000))),
            ("capped at max_delay", 8, 0, transient(None), 1.0, Some(ms(30_000))),
            ("cap before jitter", 8, 0, transient(None), 0.5, Some(ms(15_000))),
            ("jitter above one is clamped", 2, 0, transient(None), 7.0, Some(ms(1000))),
            ("jitter below zero is clamped", 2, 0, transient(None), -1.0, Some(ms(0))),
            ("stalled is retried", 1, 0, stalled, 0.5, Some(ms(250))),
            ("last attempt used", 9, 0, transient(None), 0.5, None),
            ("past max attempts", 12, 0, transient(None), 0.5, None),
            ("retry-after honoured exactly", 1, 0, transient(Some(ms(7_500))), 0.5, Some(ms(7_500))),
            ("retry-after at the cap", 1, 0, transient(Some(ms(120_000))), 0.5, Some(ms(120_000))),
            ("retry-after over the cap fails fast", 1, 0, transient(Some(ms(120_001))), 0.5, None),
            ("retry-after zero falls back to backoff", 2, 0, transient(Some(ms(0))), 0.5, Some(ms(500))),
            ("deadline not reached", 1, 179_000, transient(None), 1.0, Some(ms(500))),
            ("retry would start after the deadline", 1, 179_600, transient(None), 1.0, None),
            ("retry-after past the deadline", 1, 170_000, transient(Some(ms(20_000))), 0.5, None),
            ("auth never retried", 1, 0, auth, 0.5, None),
            ("quota never retried", 1, 0, quota, 0.5, None),
            ("context length never retried", 1, 0, context, 0.5, None),
            ("fatal never retried", 1, 0, fatal, 0.5, None),
            ("cancelled never retried", 1, 0, ProviderError::Cancelled, 0.5, None),
        ];
        for (name, attempt, elapsed, error, jitter, expected) in table {
            assert_eq!(
                decide(&config(), attempt, ms(elapsed), &error, jitter),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn backoff_caps_and_survives_huge_attempts() {
        let config = RetryConfig {
            max_delay_ms: 3_000,
            ..config()
        };
        assert_eq!(backoff(&config, 3, 1.0), ms(2_000));
        assert_eq!(backoff(&config, 4, 1.0), ms(3_000));
        assert_eq!(backoff(&config, 200, 1.0), ms(3_000));
        assert_eq!(backoff(&config, 0, 1.0), ms(500));
        assert_eq!(backoff(&config, 1, f64::NAN), ms(500));
    }

    #[test]
    fn header_parsing_table() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").expect("valid date");
        let table: Vec<(&str, &str, Option<Duration>)> = vec![
            ("retry-after-ms", "1500", Some(ms(1500))),
            ("retry-after-ms", " 250 ", Some(ms(250))),
            (
                "retry-after-ms",
                "12.5",
                Some(Duration::from_micros(12_500)),
            ),
            ("retry-after-ms", "-3", None),
            ("retry-after-ms", "soon", None),
            ("retry-after", "2", Some(ms(2000))),
            ("retry-after", "0.25", Some(ms(250))),
            ("retry-after", "0", Some(ms(0))),
            ("retry-after", "-1", None),
            (
                "retry-after",
                "Wed, 21 Oct 2015 07:28:30 GMT",
                Some(ms(30_000)),
            ),
            ("retry-after", "Wed, 21 Oct 2015 07:27:00 GMT", Some(ms(0))),
            ("retry-after", "tomorrow", None),
            ("retry-after", "inf", None),
        ];
        for (header, value, expected) in table {
            let parsed = match header {
                "retry-after-ms" => parse_retry_after_ms(value),
                _ => parse_retry_after(value, now),
            };
            assert_eq!(parsed, expected, "{header}: {value}");
        }
        assert_eq!(parse_should_retry("true"), Some(true));
        assert_eq!(parse_should_retry(" False "), Some(false));
        assert_eq!(parse_should_retry("maybe"), None);
    }

    #[test]
    fn hints_prefer_retry_after_ms() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("retry-after", "3".parse().expect("valid header"));
        let now = SystemTime::UNIX_EPOCH;
        assert_eq!(
            ServerHints::from_headers(&headers, now).retry_after,
            Some(ms(3000))
        );
        headers.insert("retry-after-ms", "40".parse().expect("valid header"));
        headers.insert("x-should-retry", "false".parse().expect("valid header"));
        assert_eq!(
            ServerHints::from_headers(&headers, now),
            ServerHints {
                retry_after: Some(ms(40)),
                should_retry: Some(false),
            }
        );
    }

    /// The variant name, for table comparisons.
    fn class(error: &ProviderError) -> &'static str {
        match error {
            ProviderError::Transient { .. } => "transient",
            ProviderError::ContextLength { .. } => "context",
            ProviderError::Auth { .. } => "auth",
            ProviderError::Fatal { .. } => "fatal",
            ProviderError::Stalled { .. } => "stalled",
            ProviderError::Script(_) => "script",
            ProviderError::Cancelled => "cancelled",
        }
    }

    #[test]
    fn openai_classification_table() {
        #[rustfmt::skip]
        let table: Vec<(Option<u16>, &str, &str)> = vec![
            (Some(429), r#"{"error":{"message":"Rate limit reached for gpt-4o","type":"requests","code":"rate_limit_exceeded"}}"#, "transient"),
            (Some(429), r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#, "auth"),
            (Some(429), r#"{"error":{"message":"out of credit","code":"credit_balance_exhausted"}}"#, "auth"),
            (Some(429), r#"{"error":{"message":"spend limit","code":"organization_spend_limit_exceeded"}}"#, "auth"),
            (Some(429), "", "transient"),
            (Some(400), r#"{"error":{"message":"This model's maximum context length is 128000 tokens.","type":"invalid_request_error","code":"context_length_exceeded"}}"#, "context"),
            (Some(400), r#"{"error":{"message":"This model's maximum context length is 8192 tokens. However, you requested 9000 tokens","type":"BadRequestError","code":400}}"#, "context"),
            (Some(400), r#"{"error":{"message":"Invalid 'messages[1].role'","type":"invalid_request_error","code":null}}"#, "fatal"),
            (Some(401), r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#, "auth"),
            (Some(402), r#"{"error":{"message":"Insufficient credits","code":402}}"#, "auth"),
            (Some(403), r#"{"error":{"message":"Country, region, or territory not supported","code":"unsupported_country_region_territory"}}"#, "auth"),
            (Some(404), r#"{"error":{"message":"The model `gpt-9` does not exist","code":"model_not_found"}}"#, "fatal"),
            (Some(413), "request entity too large", "fatal"),
            (Some(408), "", "transient"),
            (Some(409), "", "transient"),
            (Some(500), r#"{"error":{"message":"The server had an error","type":"server_error"}}"#, "transient"),
            (Some(502), "<html>bad gateway</html>", "transient"),
            (Some(503), r#"{"error":{"message":"Slow down"}}"#, "transient"),
            (None, r#"{"error":{"code":502,"message":"Provider disconnected"}}"#, "transient"),
            (None, r#"{"error":{"code":"server_error","message":"Provider returned error"}}"#, "transient"),
            (None, r#"{"error":{"code":400,"message":"bad tool schema"}}"#, "fatal"),
            (None, r#"{"error":{"type":"invalid_request_error","message":"bad"}}"#, "fatal"),
        ];
        for (status, body, expected) in table {
            let error = classify_openai(status, body, ServerHints::default());
            assert_eq!(class(&error), expected, "{status:?} {body}");
            assert!(error.to_string().starts_with("openai: "), "{error}");
        }
    }

    #[test]
    fn anthropic_classification_table() {
        let body = |kind: &str, message: &str| {
            format!(
                r#"{{"type":"error","error":{{"type":"{kind}","message":"{message}"}},"request_id":"req_1"}}"#
            )
        };
        #[rustfmt::skip]
        let table: Vec<(Option<u16>, String, &str)> = vec![
            (Some(529), body("overloaded_error", "Overloaded"), "transient"),
            (Some(429), body("overloaded_error", "Overloaded"), "transient"),
            (Some(429), body("rate_limit_error", "Number of requests has exceeded your rate limit"), "transient"),
            (Some(500), body("api_error", "Internal server error"), "transient"),
            (Some(504), body("timeout_error", "Request timed out"), "transient"),
            (Some(409), body("conflict_error", "Conflict"), "transient"),
            (Some(400), body("invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"), "context"),
            (Some(400), body("invalid_request_error", "input length and `max_tokens` exceed context limit: 190000 + 20000 > 200000"), "context"),
            (Some(400), body("invalid_request_error", "Your credit balance is too low to access the Anthropic API."), "auth"),
            (Some(400), body("invalid_request_error", "messages: roles must alternate"), "fatal"),
            (Some(401), body("authentication_error", "invalid x-api-key"), "auth"),
            (Some(402), body("billing_error", "payment required"), "auth"),
            (Some(403), body("permission_error", "no access"), "auth"),
            (Some(404), body("not_found_error", "model: claude-9"), "fatal"),
            (Some(413), body("request_too_large", "Request exceeds the maximum allowed number of bytes."), "fatal"),
            (Some(529), String::new(), "transient"),
            (Some(503), "upstream connect error".into(), "transient"),
            (Some(401), String::new(), "auth"),
            (None, body("overloaded_error", "Overloaded"), "transient"),
            (None, body("api_error", "Internal server error"), "transient"),
            (None, body("invalid_request_error", "bad"), "fatal"),
        ];
        for (status, body, expected) in table {
            let error = classify_anthropic(status, &body, ServerHints::default());
            assert_eq!(class(&error), expected, "{status:?} {body}");
            assert!(error.to_string().starts_with("anthropic: "), "{error}");
        }
    }

    #[test]
    fn classification_carries_status_message_and_retry_after() {
        let hints = ServerHints {
            retry_after: Some(ms(1200)),
            should_retry: None,
        };
        let error = classify_anthropic(
            Some(529),
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            hints,
        );
        assert_eq!(error.retry_after(), Some(ms(1200)));
        assert_eq!(
            error.to_string(),
            "anthropic: http 529: Overloaded (overloaded_error)"
        );
        let error = classify_openai(
            None,
            r#"{"error":{"code":502,"message":"Provider disconnected"}}"#,
            hints,
        );
        assert!(matches!(
            error,
            ProviderError::Transient {
                status: Some(502),
                ..
            }
        ));
        assert_eq!(
            error.to_string(),
            "openai: http 502: Provider disconnected (502)"
        );
        let error = classify_openai(Some(502), "", ServerHints::default());
        assert_eq!(error.to_string(), "openai: http 502");
    }

    #[test]
    fn server_override_flips_transient_and_fatal_but_not_auth() {
        let no = ServerHints {
            retry_after: None,
            should_retry: Some(false),
        };
        let yes = ServerHints {
            retry_after: None,
            should_retry: Some(true),
        };
        assert_eq!(class(&classify_openai(Some(503), "", no)), "fatal");
        assert_eq!(class(&classify_openai(Some(400), "", yes)), "transient");
        assert_eq!(class(&classify_openai(Some(401), "", yes)), "auth");
        assert_eq!(
            class(&classify_openai(
                Some(400),
                r#"{"error":{"code":"context_length_exceeded","message":"too long"}}"#,
                yes
            )),
            "context"
        );
    }

    #[test]
    fn long_bodies_are_shortened() {
        let body = "x".repeat(5000);
        let error = classify_openai(Some(500), &body, ServerHints::default());
        let text = error.to_string();
        assert!(text.chars().count() < 400, "{text}");
        assert!(text.ends_with('…'));
    }

    #[test]
    fn context_length_errors_say_how_much_room_there_is() {
        let cases: [(&str, Option<Fit>); 7] = [
            (
                "This model's maximum context length is 8192 tokens. However, you requested 10000 tokens (2000 in the messages, 8000 in the completion). Please reduce the length of the messages or completion.",
                Some(Fit::Window {
                    window: 8192,
                    prompt: 2000,
                }),
            ),
            (
                "'max_tokens' or 'max_completion_tokens' is too large: 8192. This model's maximum context length is 4096 tokens and your request has 1200 input tokens (8192 > 4096 - 1200).",
                Some(Fit::Window {
                    window: 4096,
                    prompt: 1200,
                }),
            ),
            (
                "input length and `max_tokens` exceed context limit: 197000 + 8192 > 200000, decrease input length or `max_tokens` and try again",
                Some(Fit::Window {
                    window: 200000,
                    prompt: 197000,
                }),
            ),
            (
                "max_tokens is too large: 8192. This model supports at most 4096 completion tokens, whereas you provided 8192.",
                Some(Fit::Output { max_output: 4096 }),
            ),
            (
                "max_tokens: 64000 > 32000, which is the maximum allowed number of output tokens for claude-opus-4-1-20250805",
                Some(Fit::Output { max_output: 32000 }),
            ),
            ("This model's maximum context length is 8192 tokens.", None),
            ("prompt is too long: 210000 tokens > 200000 maximum", None),
        ];
        for (message, fit) in cases {
            assert_eq!(fit_in(message), fit, "{message}");
        }
    }

    #[test]
    fn fits_travel_with_the_classified_error() {
        let openai = classify_openai(
            Some(400),
            r#"{"error":{"message":"This model's maximum context length is 32768 tokens. However, you requested 40000 tokens (31000 in the messages, 9000 in the completion).","type":"BadRequestError","code":400}}"#,
            ServerHints::default(),
        );
        assert!(
            matches!(
                openai,
                ProviderError::ContextLength {
                    fit: Some(Fit::Window {
                        window: 32768,
                        prompt: 31000
                    }),
                    ..
                }
            ),
            "{openai:?}"
        );
        let llama = classify_openai(
            Some(400),
            r#"{"error":{"code":400,"message":"the request exceeds the available context size, try increasing it","type":"exceed_context_size_error","n_prompt_tokens":5000,"n_ctx":4096}}"#,
            ServerHints::default(),
        );
        assert!(
            matches!(
                llama,
                ProviderError::ContextLength {
                    fit: Some(Fit::Window {
                        window: 4096,
                        prompt: 5000
                    }),
                    ..
                }
            ),
            "{llama:?}"
        );
        let output = classify_openai(
            Some(400),
            r#"{"error":{"message":"max_tokens is too large: 8192. This model supports at most 4096 completion tokens, whereas you provided 8192.","type":"invalid_request_error","param":"max_tokens","code":null}}"#,
            ServerHints::default(),
        );
        assert!(
            matches!(
                output,
                ProviderError::ContextLength {
                    fit: Some(Fit::Output { max_output: 4096 }),
                    ..
                }
            ),
            "{output:?}"
        );
        let anthropic = classify_anthropic(
            Some(400),
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"input length and `max_tokens` exceed context limit: 197000 + 8192 > 200000, decrease input length or `max_tokens` and try again"}}"#,
            ServerHints::default(),
        );
        assert!(
            matches!(
                anthropic,
                ProviderError::ContextLength {
                    fit: Some(Fit::Window {
                        window: 200000,
                        prompt: 197000
                    }),
                    ..
                }
            ),
            "{anthropic:?}"
        );
    }

    #[test]
    fn two_stalls_at_the_default_timeouts_are_still_retried_and_a_third_says_why_not() {
        let config = RetryConfig::default();
        let stalled = ProviderError::Stalled {
            provider: "openai",
            idle: Duration::from_millis(120_000),
        };
        // Two idle timeouts have passed: the third attempt still starts.
        assert!(decide(&config, 2, Duration::from_secs(240), &stalled, 1.0).is_some());
        let past = Duration::from_secs(299);
        assert_eq!(decide(&config, 3, past, &stalled, 1.0), None);
        assert_eq!(
            why_not(&config, 3, past, &stalled),
            "gave up after 3 attempts in 299 s: the retry deadline (retry.deadline_ms, 300 s) ran out"
        );
        assert_eq!(
            why_not(&config, 5, past, &stalled),
            "gave up after 5 attempts (retry.max_attempts)"
        );
    }
}

//! Value checks beyond types: what must be positive, what is a share in
//! (0, 1], which URLs are URLs. An error names the source, the key and what
//! was expected.

use super::{Config, ConfigError};

pub(super) fn validate(config: &Config, source_name: &str) -> Result<(), ConfigError> {
    let positive = [
        ("session.max_turns", config.session.max_turns as u64),
        (
            "session.max_output_tokens",
            config.session.max_output_tokens as u64,
        ),
        (
            "session.stream_idle_timeout_ms",
            config.session.stream_idle_timeout_ms,
        ),
        ("session.turn_timeout_ms", config.session.turn_timeout_ms),
        ("retry.max_attempts", config.retry.max_attempts as u64),
        ("tools.bash_timeout_ms", config.tools.bash_timeout_ms),
        (
            "tools.bash_output_bytes",
            config.tools.bash_output_bytes as u64,
        ),
        ("tools.max_entries", config.tools.max_entries as u64),
        (
            "mission.max_iterations",
            config.mission.max_iterations as u64,
        ),
        (
            "mission.no_progress_iterations",
            config.mission.no_progress_iterations as u64,
        ),
        ("mission.repeat_limit", config.mission.repeat_limit as u64),
        (
            "mission.verify_timeout_ms",
            config.mission.verify_timeout_ms,
        ),
        ("concurrency.global", config.concurrency.global as u64),
        ("concurrency.per_agent", config.concurrency.per_agent as u64),
        (
            "plugins.fetch_max_bytes",
            config.plugins.fetch_max_bytes as u64,
        ),
        ("plugins.fetch_timeout_ms", config.plugins.fetch_timeout_ms),
    ];
    for (key, value) in positive {
        if value == 0 {
            return Err(ConfigError::Invalid {
                source_name: source_name.into(),
                key: key.into(),
                message: "expected a number greater than 0".into(),
            });
        }
    }
    for (key, value) in [
        ("memory.compact_threshold", config.memory.compact_threshold),
        ("memory.tail_share", config.memory.tail_share),
        ("memory.ema_alpha", config.memory.ema_alpha),
        ("memory.evict_below", config.memory.evict_below),
    ] {
        if !(value > 0.0 && value <= 1.0) {
            return Err(ConfigError::Invalid {
                source_name: source_name.into(),
                key: key.into(),
                message: format!("expected a number in (0, 1], got {value}"),
            });
        }
    }
    for (model, limits) in &config.models {
        if limits.max_output == 0 || limits.max_output >= limits.context_window {
            return Err(ConfigError::Invalid {
                source_name: source_name.into(),
                key: format!("models.{model}"),
                message: format!(
                    "expected 0 < max_output < context_window, got max_output {} and context_window {}",
                    limits.max_output, limits.context_window
                ),
            });
        }
    }
    for (file, grant) in &config.plugins.grants {
        for (i, entry) in grant.fetch.iter().enumerate() {
            if let Err(message) = super::HostPattern::parse(entry) {
                return Err(ConfigError::Invalid {
                    source_name: source_name.into(),
                    key: format!("plugins.grants.{file}.fetch[{i}]"),
                    message,
                });
            }
        }
    }
    for (name, url) in [
        ("openai.base_url", &config.openai.base_url),
        ("anthropic.base_url", &config.anthropic.base_url),
    ] {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                source_name: source_name.into(),
                key: name.into(),
                message: format!("expected an http:// or https:// URL, got \"{url}\""),
            });
        }
    }
    Ok(())
}

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
        ("tools.http.max_bytes", config.tools.http.max_bytes as u64),
        ("tools.http.timeout_ms", config.tools.http.timeout_ms),
        (
            "tools.http.max_timeout_ms",
            config.tools.http.max_timeout_ms,
        ),
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
        (
            "mission.max_goal_bytes",
            config.mission.max_goal_bytes as u64,
        ),
        (
            "mission.budget_tokens",
            config.mission.budget_tokens.unwrap_or(1),
        ),
        (
            "mission.max_wall_secs",
            config.mission.max_wall_secs.unwrap_or(1),
        ),
        ("pool.max_reuse", u64::from(config.pool.max_reuse)),
        (
            "session.connect_timeout_ms",
            config.session.connect_timeout_ms,
        ),
        ("tools.read_max_bytes", config.tools.read_max_bytes as u64),
        ("tools.background_max", config.tools.background_max as u64),
        ("diagnostics.timeout_ms", config.diagnostics.timeout_ms),
        ("plugins.hook_timeout_ms", config.plugins.hook_timeout_ms),
        ("plugins.tool_timeout_ms", config.plugins.tool_timeout_ms),
        ("plugins.memory_mib", config.plugins.memory_mib),
        ("plugins.max_faults", u64::from(config.plugins.max_faults)),
        (
            "tools.bash_max_timeout_ms",
            config.tools.bash_max_timeout_ms,
        ),
        (
            "tools.background_timeout_ms",
            config.tools.background_timeout_ms,
        ),
        (
            "tools.background_max_timeout_ms",
            config.tools.background_max_timeout_ms,
        ),
        (
            "tools.background_output_bytes",
            config.tools.background_output_bytes as u64,
        ),
        (
            "mission.verify_output_bytes",
            config.mission.verify_output_bytes as u64,
        ),
        (
            "tools.read_default_lines",
            config.tools.read_default_lines as u64,
        ),
        (
            "plugins.max_output_bytes",
            config.plugins.max_output_bytes as u64,
        ),
        (
            "plugins.max_stdio_bytes",
            config.plugins.max_stdio_bytes as u64,
        ),
        ("retry.base_delay_ms", config.retry.base_delay_ms),
        ("diagnostics.max", config.diagnostics.max as u64),
    ];
    // A key of these maps names an agent or a model: an empty one names
    // nothing and would never apply.
    let maps = [
        ("agents", config.agents.keys().collect::<Vec<_>>()),
        (
            "concurrency.agents",
            config.concurrency.agents.keys().collect(),
        ),
        (
            "concurrency.models",
            config.concurrency.models.keys().collect(),
        ),
        ("pricing", config.pricing.keys().collect()),
        ("models", config.models.keys().collect()),
    ];
    for (map, keys) in maps {
        if keys.iter().any(|name| name.trim().is_empty()) {
            return Err(ConfigError::Invalid {
                source_name: source_name.into(),
                key: map.into(),
                message: format!(
                    "expected {} names as keys, got an empty one",
                    if map.ends_with("agents") {
                        "agent"
                    } else {
                        "model"
                    }
                ),
            });
        }
    }
    let named: Vec<(String, u64)> = config
        .concurrency
        .agents
        .iter()
        .map(|(name, cap)| (format!("concurrency.agents.{name}"), *cap as u64))
        .chain(
            config
                .concurrency
                .models
                .iter()
                .map(|(name, cap)| (format!("concurrency.models.{name}"), *cap as u64)),
        )
        .collect();
    let positive = positive
        .iter()
        .map(|(key, value)| (key.to_string(), *value))
        .chain(named);
    for (key, value) in positive {
        if value == 0 {
            return Err(ConfigError::Invalid {
                source_name: source_name.into(),
                key,
                message: "expected a number greater than 0".into(),
            });
        }
    }
    for (name, server) in &config.mcp.servers {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            source_name: source_name.into(),
            key: format!("mcp.servers.{name}{key}"),
            message,
        };
        if name.trim().is_empty() {
            return Err(invalid(
                "",
                "expected a server name, got an empty one".into(),
            ));
        }
        server.transport().map_err(|message| invalid("", message))?;
        if server.timeout_ms == 0 {
            return Err(invalid(
                ".timeout_ms",
                "expected a number greater than 0".into(),
            ));
        }
        if server.call_timeout_ms == 0 {
            return Err(invalid(
                ".call_timeout_ms",
                "expected a number greater than 0".into(),
            ));
        }
    }
    if let Some(usd) = config.mission.budget_usd
        && !(usd.is_finite() && usd > 0.0)
    {
        return Err(ConfigError::Invalid {
            source_name: source_name.into(),
            key: "mission.budget_usd".into(),
            message: format!("expected an amount of US dollars greater than 0, got {usd}"),
        });
    }
    for (model, price) in &config.pricing {
        for (field, value) in [
            ("input", Some(price.input)),
            ("output", Some(price.output)),
            ("cached_input", price.cached_input),
            ("cache_write", price.cache_write),
        ] {
            if let Some(value) = value
                && !(value.is_finite() && value >= 0.0)
            {
                return Err(ConfigError::Invalid {
                    source_name: source_name.into(),
                    key: format!("pricing.{model}.{field}"),
                    message: format!(
                        "expected US dollars per million tokens, 0 or more, got {value}"
                    ),
                });
            }
        }
    }
    let names = std::iter::once(("model".to_string(), config.model.as_deref())).chain(
        config
            .agents
            .iter()
            .map(|(agent, settings)| (format!("agents.{agent}.model"), settings.model.as_deref())),
    );
    for (key, name) in names {
        if name.is_some_and(|name| name.trim().is_empty()) {
            return Err(ConfigError::Invalid {
                source_name: source_name.into(),
                key,
                message: "expected a model name, got an empty one".into(),
            });
        }
    }
    for (agent, settings) in &config.agents {
        for (field, value) in [
            ("max_turns", settings.max_turns),
            ("max_output_tokens", settings.max_output_tokens),
        ] {
            if value == Some(0) {
                return Err(ConfigError::Invalid {
                    source_name: source_name.into(),
                    key: format!("agents.{agent}.{field}"),
                    message: "expected a number greater than 0".into(),
                });
            }
        }
    }
    let share = config.skills.catalog_share;
    if !(0.0..=0.5).contains(&share) {
        return Err(ConfigError::Invalid {
            source_name: source_name.into(),
            key: "skills.catalog_share".into(),
            message: format!(
                "expected a number in [0, 0.5] (0 turns the skill catalog off), got {share}"
            ),
        });
    }
    for (key, value) in [
        ("memory.compact_threshold", config.memory.compact_threshold),
        ("memory.tail_share", config.memory.tail_share),
        ("memory.ema_alpha", config.memory.ema_alpha),
        ("memory.evict_below", config.memory.evict_below),
        ("tools.defer_share", config.tools.defer_share),
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
    for (i, entry) in config.tools.http.allow.iter().enumerate() {
        if let Err(message) = super::HostPattern::parse(entry) {
            return Err(ConfigError::Invalid {
                source_name: source_name.into(),
                key: format!("tools.http.allow[{i}]"),
                message,
            });
        }
    }
    for (file, grant) in &config.plugins.grants {
        if let Err((key, message)) = grant.check() {
            return Err(ConfigError::Invalid {
                source_name: source_name.into(),
                key: format!("plugins.grants.{file}.{key}"),
                message,
            });
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

/// Checks between keys, on the configuration as merged: one file may set
/// one of the keys and another file the other.
pub(super) fn validate_whole(config: &Config, source_name: &str) -> Result<(), ConfigError> {
    // Two stalled attempts must fit the retry deadline, or a second stall
    // always ends the turn without saying why.
    let two_stalls = config.session.stream_idle_timeout_ms.saturating_mul(2);
    if config.retry.deadline_ms < two_stalls {
        return Err(ConfigError::Invalid {
            source_name: source_name.into(),
            key: "retry.deadline_ms".into(),
            message: format!(
                "expected at least twice session.stream_idle_timeout_ms ({two_stalls}), got {}; a stalled stream would otherwise never be retried",
                config.retry.deadline_ms
            ),
        });
    }
    Ok(())
}

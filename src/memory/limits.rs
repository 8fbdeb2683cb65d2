//! Context window and output limit of a model: the configured `models`
//! table first (exact name, then the longest `prefix*` key), then built-in
//! defaults for well-known families, then a conservative default that the
//! caller warns about once.

use std::collections::BTreeMap;

use crate::config::ModelLimits;

/// For models nobody described: small enough for most local models.
pub const UNKNOWN: ModelLimits = ModelLimits {
    context_window: 8_192,
    max_output: 2_048,
};

/// Family defaults, matched by name prefix (the first that matches wins,
/// so longer prefixes come first). Local sizes are the common defaults of
/// Ollama/llama.cpp model cards, not the largest a model supports.
const FAMILIES: &[(&str, u32, u32)] = &[
    ("gpt-4.1", 1_047_576, 32_768),
    ("gpt-4o", 128_000, 16_384),
    ("gpt-4-turbo", 128_000, 4_096),
    ("gpt-4", 8_192, 4_096),
    ("gpt-5", 400_000, 128_000),
    ("gpt-3.5", 16_385, 4_096),
    ("o1", 200_000, 100_000),
    ("o3", 200_000, 100_000),
    ("o4", 200_000, 100_000),
    ("claude-", 200_000, 32_000),
    ("llama3", 128_000, 4_096),
    ("llama-3", 128_000, 4_096),
    ("llama", 8_192, 2_048),
    ("qwen2.5-coder", 32_768, 8_192),
    ("qwen", 32_768, 8_192),
    ("mistral", 32_768, 8_192),
    ("mixtral", 32_768, 8_192),
    ("codestral", 32_768, 8_192),
    ("deepseek", 64_000, 8_192),
    ("gemma", 8_192, 2_048),
    ("phi", 16_384, 4_096),
    // The scripted provider counts nothing against a real window.
    ("scripted", 128_000, 8_192),
];

/// The limits of `model` and whether they are known (configured or a
/// known family).
pub fn resolve(model: &str, configured: &BTreeMap<String, ModelLimits>) -> (ModelLimits, bool) {
    if let Some(limits) = configured.get(model) {
        return (*limits, true);
    }
    let prefixed = configured
        .iter()
        .filter_map(|(key, limits)| Some((key.strip_suffix('*')?, limits)))
        .filter(|(prefix, _)| model.starts_with(prefix))
        .max_by_key(|(prefix, _)| prefix.len());
    if let Some((_, limits)) = prefixed {
        return (*limits, true);
    }
    // Provider-qualified names ("openai/gpt-4o", "ollama/qwen2.5") match
    // on their last part.
    let bare = model
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .to_ascii_lowercase();
    FAMILIES
        .iter()
        .find(|(prefix, _, _)| bare.starts_with(prefix))
        .map(|&(_, context_window, max_output)| {
            (
                ModelLimits {
                    context_window,
                    max_output,
                },
                true,
            )
        })
        .unwrap_or((UNKNOWN, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_then_families_then_the_conservative_default() {
        let mut configured = BTreeMap::new();
        configured.insert(
            "my-local".to_string(),
            ModelLimits {
                context_window: 4096,
                max_output: 512,
            },
        );
        configured.insert(
            "qwen3*".to_string(),
            ModelLimits {
                context_window: 40_960,
                max_output: 4096,
            },
        );
        assert_eq!(resolve("my-local", &configured).0.context_window, 4096);
        assert_eq!(resolve("qwen3:8b", &configured).0.context_window, 40_960);
        assert_eq!(resolve("qwen2.5:7b", &configured).0.context_window, 32_768);
        assert_eq!(
            resolve("gpt-4o-mini", &configured).0.context_window,
            128_000
        );
        assert_eq!(resolve("gpt-4.1-mini", &configured).0.max_output, 32_768);
        assert_eq!(
            resolve("claude-sonnet-4-5", &configured).0.context_window,
            200_000
        );
        assert_eq!(
            resolve("openrouter/deepseek-chat", &configured)
                .0
                .context_window,
            64_000
        );
        assert_eq!(resolve("mystery-7b", &configured), (UNKNOWN, false));
    }
}

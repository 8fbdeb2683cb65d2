//! What orch knows about a model from its name: its context window and
//! output limit (requests and memory are sized by them) and its list price
//! (cost and `--budget-usd` use it).
//!
//! Configured entries win (`models` and `pricing` in orch.json: the exact
//! name, then the longest `prefix*` key). Then the built-in family tables,
//! matched by the longest prefix of the name as people write it for
//! OpenAI, Anthropic, OpenRouter, Ollama or vLLM: lowercase, a
//! `provider/` prefix dropped, `.` read as `-` (`anthropic/claude-sonnet-4.5`
//! and `claude-sonnet-4-5` are one model, so are `qwen2.5-coder:14b` and
//! `qwen2-5-coder-14b`; `:` reads as `-` too). A model in neither gets a conservative window, and a
//! price only when it runs on a local endpoint (free) or the scripted
//! provider.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{ModelLimits, Price};

/// For models nobody described: enough for the code models people run
/// locally today, small enough not to overrun most of them.
pub const UNKNOWN: ModelLimits = ModelLimits {
    context_window: 32_768,
    max_output: 4_096,
};

/// When the built-in prices were last brought up to date. Providers change
/// prices; `pricing` in orch.json overrides any of them.
pub const PRICES_AS_OF: &str = "2026-12";

/// Windows and output limits by family prefix (normalized as the module
/// docs say), from the providers' model pages. Local families list the
/// model's own window; a local server may run it smaller (Ollama's
/// `num_ctx`), which orch notices and warns about.
const LIMITS: &[(&str, u32, u32)] = &[
    // OpenAI
    ("gpt-5-pro", 400_000, 272_000),
    ("gpt-5", 400_000, 128_000),
    ("gpt-4-1", 1_047_576, 32_768),
    ("gpt-4o-2024-05-13", 128_000, 4_096),
    ("gpt-4o", 128_000, 16_384),
    ("chatgpt-4o", 128_000, 16_384),
    ("gpt-4-turbo", 128_000, 4_096),
    ("gpt-4", 8_192, 4_096),
    ("gpt-3-5", 16_385, 4_096),
    ("o1-mini", 128_000, 65_536),
    ("o1", 200_000, 100_000),
    ("o3", 200_000, 100_000),
    ("o4-mini", 200_000, 100_000),
    ("codex-mini", 200_000, 100_000),
    ("gpt-oss", 131_072, 32_768),
    // Anthropic
    ("claude-3-haiku", 200_000, 4_096),
    ("claude-3-opus", 200_000, 4_096),
    ("claude-3-sonnet", 200_000, 4_096),
    ("claude-3-5", 200_000, 8_192),
    ("claude-3-7", 200_000, 64_000),
    ("claude-sonnet-4", 200_000, 64_000),
    ("claude-haiku-4", 200_000, 64_000),
    ("claude-opus-4", 200_000, 32_000),
    ("claude-opus-4-5", 200_000, 64_000),
    ("claude-", 200_000, 8_192),
    // Google
    ("gemini-3", 1_048_576, 65_536),
    ("gemini-2-5", 1_048_576, 65_536),
    ("gemini-2-0", 1_048_576, 8_192),
    ("gemini-1-5-pro", 2_097_152, 8_192),
    ("gemini-1-5", 1_048_576, 8_192),
    ("gemini", 1_048_576, 8_192),
    ("gemma3", 131_072, 8_192),
    ("gemma-3", 131_072, 8_192),
    ("gemma", 8_192, 2_048),
    // Meta
    ("llama4", 1_048_576, 16_384),
    ("llama-4", 1_048_576, 16_384),
    ("llama3-1", 131_072, 8_192),
    ("llama3-2", 131_072, 8_192),
    ("llama3-3", 131_072, 8_192),
    ("llama-3-1", 131_072, 8_192),
    ("llama-3-2", 131_072, 8_192),
    ("llama-3-3", 131_072, 8_192),
    ("llama3", 8_192, 4_096),
    ("llama-3", 8_192, 4_096),
    ("llama", 4_096, 2_048),
    // Alibaba
    ("qwen3-coder", 262_144, 65_536),
    ("qwen3", 40_960, 32_768),
    ("qwen-3", 40_960, 32_768),
    ("qwen2-5-coder", 32_768, 8_192),
    ("qwen-2-5-coder", 32_768, 8_192),
    ("qwen2-5", 32_768, 8_192),
    ("qwen-2-5", 32_768, 8_192),
    ("qwq", 131_072, 32_768),
    ("qwen", 32_768, 8_192),
    // DeepSeek
    ("deepseek-reasoner", 131_072, 65_536),
    ("deepseek-r1", 131_072, 32_768),
    ("deepseek-chat", 131_072, 8_192),
    ("deepseek-v3", 131_072, 8_192),
    ("deepseek-coder", 131_072, 8_192),
    ("deepseek", 131_072, 8_192),
    // Mistral
    ("devstral", 131_072, 32_768),
    ("codestral", 262_144, 32_768),
    ("magistral", 131_072, 40_960),
    ("mistral-large", 131_072, 32_768),
    ("mistral-medium", 131_072, 32_768),
    ("mistral-small", 131_072, 32_768),
    ("mistral-nemo", 131_072, 8_192),
    ("open-mistral-nemo", 131_072, 8_192),
    ("mistral", 32_768, 8_192),
    ("mixtral", 32_768, 8_192),
    ("open-mixtral", 32_768, 8_192),
    // Zhipu, Moonshot
    ("glm-4-6", 202_752, 131_072),
    ("glm-4-5", 131_072, 98_304),
    ("glm4", 131_072, 8_192),
    ("glm", 131_072, 16_384),
    ("kimi-k2", 262_144, 16_384),
    ("kimi", 131_072, 16_384),
    // Microsoft
    ("phi4", 16_384, 4_096),
    ("phi-4", 16_384, 4_096),
    ("phi", 16_384, 4_096),
    // The scripted provider counts nothing against a real window.
    ("scripted", 128_000, 8_192),
];

/// List prices in US dollars per million tokens by family prefix: input,
/// output, cached input (a cache read), cache write (Anthropic's 5-minute
/// write). `None` means the provider bills that like plain input.
#[allow(clippy::type_complexity)]
///
/// The prices a vendor lists for its own API: an open-weight model that
/// only others host (Qwen, Llama) costs what its host charges, so it has
/// no row and a dollar budget asks for its `pricing` entry (the few rows
/// below for such models carry one host's price). A variant
/// that costs more than its family (`o3-pro`, `gpt-4o-2024-05-13`) has a
/// row of its own, or the longest prefix would price it as the cheaper
/// model.
const PRICES: &[(&str, f64, f64, Option<f64>, Option<f64>)] = &[
    // OpenAI
    ("gpt-5-pro", 15.00, 120.00, None, None),
    ("gpt-5-nano", 0.05, 0.40, Some(0.005), None),
    ("gpt-5-mini", 0.25, 2.00, Some(0.025), None),
    ("gpt-5", 1.25, 10.00, Some(0.125), None),
    ("gpt-4-1-nano", 0.10, 0.40, Some(0.025), None),
    ("gpt-4-1-mini", 0.40, 1.60, Some(0.10), None),
    ("gpt-4-1", 2.00, 8.00, Some(0.50), None),
    ("gpt-4o-mini", 0.15, 0.60, Some(0.075), None),
    ("gpt-4o-2024-05-13", 5.00, 15.00, None, None),
    ("gpt-4o", 2.50, 10.00, Some(1.25), None),
    ("gpt-4o-realtime", 5.00, 20.00, Some(2.50), None),
    ("gpt-4o-mini-realtime", 0.60, 2.40, Some(0.30), None),
    ("gpt-4-turbo", 10.00, 30.00, None, None),
    ("gpt-4", 30.00, 60.00, None, None),
    ("gpt-3-5", 0.50, 1.50, None, None),
    ("o1-mini", 1.10, 4.40, Some(0.55), None),
    ("o1-pro", 150.00, 600.00, None, None),
    ("o1", 15.00, 60.00, Some(7.50), None),
    ("o3-mini", 1.10, 4.40, Some(0.55), None),
    ("o3-pro", 20.00, 80.00, None, None),
    ("o3", 2.00, 8.00, Some(0.50), None),
    ("o3-deep-research", 10.00, 40.00, Some(2.50), None),
    ("o4-mini", 1.10, 4.40, Some(0.275), None),
    ("o4-mini-deep-research", 2.00, 8.00, Some(0.50), None),
    ("codex-mini", 1.50, 6.00, Some(0.375), None),
    ("gpt-oss-120b", 0.15, 0.60, None, None),
    ("gpt-oss-20b", 0.07, 0.30, None, None),
    // Anthropic
    ("claude-opus-4-5", 5.00, 25.00, Some(0.50), Some(6.25)),
    ("claude-opus-4", 15.00, 75.00, Some(1.50), Some(18.75)),
    ("claude-3-opus", 15.00, 75.00, Some(1.50), Some(18.75)),
    ("claude-sonnet-4", 3.00, 15.00, Some(0.30), Some(3.75)),
    ("claude-3-7-sonnet", 3.00, 15.00, Some(0.30), Some(3.75)),
    ("claude-3-5-sonnet", 3.00, 15.00, Some(0.30), Some(3.75)),
    ("claude-haiku-4", 1.00, 5.00, Some(0.10), Some(1.25)),
    ("claude-3-5-haiku", 0.80, 4.00, Some(0.08), Some(1.00)),
    ("claude-3-haiku", 0.25, 1.25, Some(0.03), Some(0.30)),
    // Google
    ("gemini-3-pro", 2.00, 12.00, Some(0.20), None),
    ("gemini-2-5-pro", 1.25, 10.00, Some(0.125), None),
    ("gemini-2-5-flash-lite", 0.10, 0.40, Some(0.01), None),
    ("gemini-2-5-flash", 0.30, 2.50, Some(0.03), None),
    ("gemini-2-0-flash", 0.10, 0.40, Some(0.025), None),
    ("gemini-1-5-pro", 1.25, 5.00, None, None),
    ("gemini-1-5-flash", 0.075, 0.30, None, None),
    // DeepSeek
    ("deepseek-chat", 0.28, 0.42, Some(0.028), None),
    ("deepseek-reasoner", 0.28, 0.42, Some(0.028), None),
    // Mistral
    ("mistral-large", 2.00, 6.00, None, None),
    ("mistral-medium", 0.40, 2.00, None, None),
    ("mistral-small", 0.10, 0.30, None, None),
    ("devstral-medium", 0.40, 2.00, None, None),
    ("devstral-small", 0.10, 0.30, None, None),
    ("codestral", 0.30, 0.90, None, None),
    ("magistral-medium", 2.00, 5.00, None, None),
    ("magistral-small", 0.50, 1.50, None, None),
    ("open-mistral-nemo", 0.15, 0.15, None, None),
    ("mistral-nemo", 0.15, 0.15, None, None),
    ("open-mixtral-8x7b", 0.70, 0.70, None, None),
    ("mixtral-8x7b", 0.70, 0.70, None, None),
    // Zhipu, Moonshot, Alibaba, Meta (hosted)
    ("glm-4-6", 0.60, 2.20, Some(0.11), None),
    ("glm-4-5-air", 0.20, 1.10, Some(0.03), None),
    ("glm-4-5", 0.60, 2.20, Some(0.11), None),
    ("kimi-k2", 0.60, 2.50, Some(0.15), None),
    ("qwen3-coder", 0.22, 0.95, None, None),
    ("llama-3-3-70b", 0.59, 0.79, None, None),
    ("llama-3-1-8b", 0.05, 0.08, None, None),
];

/// A model name as the tables match it (see the module docs).
fn normalized(model: &str) -> String {
    let bare = model.rsplit('/').next().unwrap_or(model);
    bare.to_ascii_lowercase().replace(['.', ':'], "-")
}

/// The entry of `table` whose key is the longest prefix of `name`.
fn longest_prefix<'a, T>(table: impl IntoIterator<Item = (&'a str, T)>, name: &str) -> Option<T> {
    table
        .into_iter()
        .filter(|(prefix, _)| name.starts_with(prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, value)| value)
}

/// A configured value for `model`: its exact name, else the longest
/// `prefix*` key.
fn configured<T: Copy>(table: &BTreeMap<String, T>, model: &str) -> Option<T> {
    if let Some(value) = table.get(model) {
        return Some(*value);
    }
    longest_prefix(
        table
            .iter()
            .filter_map(|(key, value)| Some((key.strip_suffix('*')?, *value))),
        model,
    )
}

/// The limits of `model`, and whether they are known (configured or a
/// known family); unknown models get [`UNKNOWN`].
pub fn limits(
    model: &str,
    configured_limits: &BTreeMap<String, ModelLimits>,
) -> (ModelLimits, bool) {
    if let Some(limits) = configured(configured_limits, model) {
        return (limits, true);
    }
    let name = normalized(model);
    longest_prefix(
        LIMITS.iter().map(|&(prefix, context_window, max_output)| {
            (
                prefix,
                ModelLimits {
                    context_window,
                    max_output,
                },
            )
        }),
        &name,
    )
    .map_or((UNKNOWN, false), |limits| (limits, true))
}

/// The prices a run uses: `pricing` from orch.json over the built-in
/// table; everything free when the models run locally (a local endpoint or
/// the scripted provider). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Prices {
    configured: Arc<BTreeMap<String, Price>>,
    free: bool,
}

impl Prices {
    pub fn new(configured: BTreeMap<String, Price>, free: bool) -> Prices {
        Prices {
            configured: Arc::new(configured),
            free,
        }
    }

    /// Whether every model is priced at 0 (a local endpoint).
    pub fn free(&self) -> bool {
        self.free
    }

    /// The price of `model`, if it has one.
    pub fn get(&self, model: &str) -> Option<Price> {
        if let Some(price) = configured(&self.configured, model) {
            return Some(price);
        }
        if self.free {
            return Some(Price {
                input: 0.0,
                output: 0.0,
                cached_input: None,
                cache_write: None,
            });
        }
        let name = normalized(model);
        longest_prefix(
            PRICES
                .iter()
                .map(|&(prefix, input, output, cached_input, cache_write)| {
                    (
                        prefix,
                        Price {
                            input,
                            output,
                            cached_input,
                            cache_write,
                        },
                    )
                }),
            &name,
        )
    }
}

/// Whether `base_url` points at this machine or a private network: a local
/// model server (Ollama, llama.cpp, vLLM, LM Studio), whose tokens cost
/// nothing per token.
pub fn is_local_endpoint(base_url: &str) -> bool {
    let Ok(url) = url::Url::parse(base_url) else {
        return false;
    };
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback() || ip.is_private() || ip.is_unspecified(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback() || ip.is_unspecified(),
        Some(url::Host::Domain(name)) => {
            let name = name.to_ascii_lowercase();
            name == "localhost"
                || name.ends_with(".localhost")
                || name.ends_with(".local")
                || name == "host.docker.internal"
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(model: &str) -> (u32, u32, bool) {
        let (limits, known) = limits(model, &BTreeMap::new());
        (limits.context_window, limits.max_output, known)
    }

    #[test]
    fn families_match_by_the_longest_prefix_of_the_name_people_write() {
        let table = [
            ("gpt-4.1-mini", (1_047_576, 32_768)),
            ("gpt-4o-mini", (128_000, 16_384)),
            ("gpt-4-turbo", (128_000, 4_096)),
            ("gpt-5-codex", (400_000, 128_000)),
            ("o3-mini", (200_000, 100_000)),
            ("claude-3-haiku-20240307", (200_000, 4_096)),
            ("claude-3-5-sonnet-latest", (200_000, 8_192)),
            ("claude-3-7-sonnet-20250219", (200_000, 64_000)),
            ("claude-sonnet-4-5", (200_000, 64_000)),
            ("anthropic/claude-sonnet-4.5", (200_000, 64_000)),
            ("claude-opus-4-1", (200_000, 32_000)),
            ("google/gemini-2.5-pro", (1_048_576, 65_536)),
            ("llama3.1:8b", (131_072, 8_192)),
            ("meta-llama/llama-3.3-70b-instruct", (131_072, 8_192)),
            ("qwen2.5-coder:14b", (32_768, 8_192)),
            ("qwen/qwen3-coder", (262_144, 65_536)),
            ("qwen3:8b", (40_960, 32_768)),
            ("deepseek/deepseek-chat-v3.1", (131_072, 8_192)),
            ("deepseek-reasoner", (131_072, 65_536)),
            ("devstral:24b", (131_072, 32_768)),
            ("mistralai/devstral-medium", (131_072, 32_768)),
            ("gpt-oss:20b", (131_072, 32_768)),
            ("openai/gpt-oss-120b", (131_072, 32_768)),
            ("z-ai/glm-4.6", (202_752, 131_072)),
            ("moonshotai/kimi-k2", (262_144, 16_384)),
        ];
        for (model, (context, output)) in table {
            assert_eq!(window(model), (context, output, true), "{model}");
        }
        assert_eq!(window("mystery-7b"), (32_768, 4_096, false));
    }

    #[test]
    fn configured_limits_win_exact_then_longest_prefix() {
        let mut configured = BTreeMap::new();
        let limits_of = |context_window, max_output| ModelLimits {
            context_window,
            max_output,
        };
        configured.insert("my-local".to_string(), limits_of(4096, 512));
        configured.insert("qwen3*".to_string(), limits_of(65_536, 8192));
        configured.insert("qwen3-coder*".to_string(), limits_of(131_072, 8192));
        assert_eq!(
            limits("my-local", &configured),
            (limits_of(4096, 512), true)
        );
        assert_eq!(limits("qwen3:8b", &configured).0, limits_of(65_536, 8192));
        assert_eq!(
            limits("qwen3-coder:30b", &configured).0,
            limits_of(131_072, 8192)
        );
    }

    #[test]
    fn prices_come_from_config_then_the_table_and_local_endpoints_are_free() {
        let prices = Prices::new(BTreeMap::new(), false);
        let sonnet = prices.get("claude-sonnet-4-5-20250929").unwrap();
        assert_eq!((sonnet.input, sonnet.output), (3.0, 15.0));
        assert_eq!(sonnet.cached_input, Some(0.30));
        assert_eq!(prices.get("openai/gpt-4.1-mini").unwrap().input, 0.40);
        assert_eq!(prices.get("gpt-4.1").unwrap().input, 2.00);
        assert!(prices.get("qwen2.5-coder:14b").is_none());
        let mut configured = BTreeMap::new();
        configured.insert(
            "qwen2.5-coder*".to_string(),
            Price {
                input: 0.1,
                output: 0.2,
                cached_input: None,
                cache_write: None,
            },
        );
        assert_eq!(
            Prices::new(configured, false)
                .get("qwen2.5-coder:14b")
                .unwrap()
                .output,
            0.2
        );
        let local = Prices::new(BTreeMap::new(), true);
        assert_eq!(local.get("qwen2.5-coder:14b").unwrap().input, 0.0);
        for url in [
            "http://localhost:11434/v1",
            "http://127.0.0.1:8080/v1",
            "http://[::1]:8000/v1",
            "http://192.168.1.20:8000/v1",
            "http://gpu-box.local:8000/v1",
        ] {
            assert!(is_local_endpoint(url), "{url}");
        }
        for url in [
            "https://api.openai.com/v1",
            "https://openrouter.ai/api/v1",
            "not a url",
        ] {
            assert!(!is_local_endpoint(url), "{url}");
        }
    }

    #[test]
    fn dearer_variants_have_their_own_price_not_their_familys() {
        let prices = Prices::new(BTreeMap::new(), false);
        let price = |model: &str| {
            let price = prices
                .get(model)
                .unwrap_or_else(|| panic!("{model} has a price"));
            (price.input, price.output)
        };
        let table = [
            // Each beside the family it would otherwise be priced as.
            ("o3-pro", (20.0, 80.0)),
            ("o3-pro-2025-06-10", (20.0, 80.0)),
            ("o3", (2.0, 8.0)),
            ("o1-pro", (150.0, 600.0)),
            ("o1", (15.0, 60.0)),
            ("gpt-5-pro", (15.0, 120.0)),
            ("openai/gpt-5-pro", (15.0, 120.0)),
            ("gpt-5", (1.25, 10.0)),
            ("gpt-4o-2024-05-13", (5.0, 15.0)),
            ("gpt-4o-2024-08-06", (2.5, 10.0)),
            ("o3-deep-research", (10.0, 40.0)),
            ("o4-mini-deep-research-2025-06-26", (2.0, 8.0)),
            ("o4-mini", (1.1, 4.4)),
            ("gpt-4o-realtime-preview", (5.0, 20.0)),
            ("gpt-4o-mini-realtime-preview", (0.6, 2.4)),
            ("gpt-4o-mini", (0.15, 0.6)),
            // Families that had a window and no price.
            ("deepseek/deepseek-chat-v3.1", (0.28, 0.42)),
            ("deepseek-reasoner", (0.28, 0.42)),
            ("gemini-3-pro-preview", (2.0, 12.0)),
            ("google/gemini-3-pro-preview", (2.0, 12.0)),
            ("codex-mini-latest", (1.5, 6.0)),
            ("mixtral-8x7b", (0.7, 0.7)),
            ("open-mixtral-8x7b", (0.7, 0.7)),
            ("open-mistral-nemo", (0.15, 0.15)),
            ("magistral-medium-latest", (2.0, 5.0)),
            ("magistral-small-2509", (0.5, 1.5)),
        ];
        for (model, expected) in table {
            assert_eq!(price(model), expected, "{model}");
        }
        // Open-weight families only others host have no built-in price.
        // DeepSeek's own API names its models deepseek-chat and
        // deepseek-reasoner; deepseek-r1 and deepseek-v3 are the names of
        // other hosts, at their prices.
        for model in [
            "deepseek/deepseek-r1",
            "deepseek-ai/DeepSeek-V3",
            "deepseek-r1:14b",
            "qwen/qwen3-32b",
            "qwen2.5-coder:14b",
            "meta-llama/llama-3.1-405b-instruct",
        ] {
            assert!(prices.get(model).is_none(), "{model}");
        }
        // The first gpt-4o wrote at most 4096 tokens.
        assert_eq!(window("gpt-4o-2024-05-13"), (128_000, 4_096, true));
        assert_eq!(window("gpt-5-pro"), (400_000, 272_000, true));
        assert_eq!(window("open-mistral-nemo"), (131_072, 8_192, true));
    }

    #[test]
    fn the_docs_give_the_date_of_the_built_in_prices() {
        let docs = include_str!("../docs/config.md");
        assert!(
            docs.contains(&format!("as of {PRICES_AS_OF}")),
            "docs/config.md names the date of the built-in prices, {PRICES_AS_OF}"
        );
    }
}

//! Typed configuration, loaded and validated once.
//!
//! Layers, lowest precedence first: built-in defaults, the user file
//! (`<config dir>/orch/orch.json`), the project file (`.opencode/orch.json`),
//! environment variables, command-line flags. Each file is validated on its
//! own, so an error names the file, the key and what was expected; then the
//! layers are merged key by key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Which model provider runs the agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Openai,
    Anthropic,
    Scripted,
}

impl ProviderKind {
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "openai" => Some(ProviderKind::Openai),
            "anthropic" => Some(ProviderKind::Anthropic),
            "scripted" => Some(ProviderKind::Scripted),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Scripted => "scripted",
        }
    }
}

/// An API key. Its `Debug` and `Display` never show the value, so a key
/// cannot leak through a log line or an error message.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `openai`, `anthropic` or `scripted`. Unset: chosen from the keys in the environment.
    pub provider: Option<ProviderKind>,
    /// Default model for every agent.
    pub model: Option<String>,
    pub openai: OpenAiConfig,
    pub anthropic: AnthropicConfig,
    /// The scripted provider's script file (relative to the project root).
    pub script: Option<PathBuf>,
    /// Per-agent settings, keyed by agent name (case-insensitive).
    pub agents: BTreeMap<String, AgentSettings>,
    pub session: SessionConfig,
    pub retry: RetryConfig,
    pub tools: ToolsConfig,
    pub permissions: PermissionConfig,
    pub mission: MissionConfig,
    /// Shell command lines the completion gate runs (`sh -c`, project root,
    /// exit 0 passes). Unset: detected from the project (Cargo, npm, pytest,
    /// go, make). An empty list turns verification off.
    pub verify: Option<Vec<String>>,
    pub concurrency: ConcurrencyConfig,
    pub pool: PoolConfig,
    /// Prices per model name, for cost accounting and `--budget-usd`.
    pub pricing: BTreeMap<String, Price>,
    /// The project's fast check after edits and on demand.
    pub diagnostics: DiagnosticsConfig,
    /// A desktop notification when a mission ends (unset: on; never in CI).
    pub notifications: Option<bool>,
    /// Memory tiers, context assembly and compaction (`docs/memory.md`).
    pub memory: MemoryConfig,
    /// Context window and output limit per model name; a key ending in `*`
    /// matches names starting with the rest. Unlisted models get the
    /// built-in family defaults (`memory::limits`).
    pub models: BTreeMap<String, ModelLimits>,
    /// The wasm plugin host: limits and per-plugin grants (`docs/plugins.md`).
    pub plugins: PluginsConfig,
}

/// Plugin limits and grants. Nothing is granted unless listed here.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Load plugins at all.
    pub enabled: bool,
    /// Also load `~/.config/orch/plugins/*.wasm` (the user-level folder).
    pub user_dir: bool,
    /// Wall-clock deadline of one hook call.
    pub hook_timeout_ms: u64,
    /// Wall-clock deadline of one tool call.
    pub tool_timeout_ms: u64,
    /// Linear memory cap per call, in MiB.
    pub memory_mib: u64,
    /// The most bytes of a tool result or hook answer that are kept.
    pub max_output_bytes: usize,
    /// The most bytes of stdout and of stderr captured per call.
    pub max_stdio_bytes: usize,
    /// Faults (traps, timeouts, bad answers) before a plugin is disabled for the run.
    pub max_faults: u32,
    /// The most body bytes one `fetch` by a plugin keeps.
    pub fetch_max_bytes: usize,
    /// Wall-clock limit of one `fetch` by a plugin, redirects included.
    pub fetch_timeout_ms: u64,
    /// Grants keyed by plugin file name (`notes.wasm`).
    pub grants: BTreeMap<String, PluginGrant>,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            enabled: true,
            user_dir: true,
            hook_timeout_ms: 1_000,
            tool_timeout_ms: 30_000,
            memory_mib: 64,
            max_output_bytes: 256 * 1024,
            max_stdio_bytes: 64 * 1024,
            max_faults: 3,
            fetch_max_bytes: 1 << 20,
            fetch_timeout_ms: 15_000,
            grants: BTreeMap::new(),
        }
    }
}

/// What one plugin file is granted. The grant holds only while the file's
/// sha256 matches `sha256` (`orch plugins list` prints it).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginGrant {
    pub sha256: String,
    /// The project root, mounted at `/project`: `read` or `read-write`.
    #[serde(default)]
    pub project: Option<ProjectAccess>,
    /// A memory cap for this plugin instead of `plugins.memory_mib`.
    #[serde(default)]
    pub memory_mib: Option<u64>,
    /// Hosts the plugin may `fetch` from: `docs.rs` (any port),
    /// `127.0.0.1:8080` (that port only) or `*.python.org` (subdomains).
    /// Empty: no network at all.
    #[serde(default)]
    pub fetch: Vec<String>,
}

/// Access to the project root granted to a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProjectAccess {
    Read,
    ReadWrite,
}

/// The fast check after edits (`diagnostics`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiagnosticsConfig {
    /// Check after every turn that wrote or edited files.
    pub after_edits: bool,
    /// Shell command lines to run instead of the detected checkers.
    pub commands: Option<Vec<String>>,
    /// Timeout of one check.
    pub timeout_ms: u64,
    /// Findings shown per check.
    pub max: usize,
}

impl Default for DiagnosticsConfig {
    fn default() -> Self {
        DiagnosticsConfig {
            after_edits: true,
            commands: None,
            timeout_ms: 60_000,
            max: 10,
        }
    }
}

/// One model's limits, in tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelLimits {
    /// Prompt and output together.
    pub context_window: u32,
    /// The most output tokens the model produces in one turn.
    pub max_output: u32,
}

/// Token budgets of the four memory tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierBudgets {
    pub system: u32,
    pub project: u32,
    pub mission: u32,
    pub task: u32,
}

impl Default for TierBudgets {
    fn default() -> Self {
        TierBudgets {
            system: 500,
            project: 1500,
            mission: 1500,
            task: 1000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Memory tiers, gating and compaction; off sends the full history.
    pub enabled: bool,
    pub budgets: TierBudgets,
    /// Compact when the prompt estimate passes this share of
    /// `context window - output reserve`.
    pub compact_threshold: f64,
    /// Share of `context window - output reserve` kept verbatim as the
    /// recent tail when compacting.
    pub tail_share: f64,
    /// Weight of the newest use signal in a memory entry's score (the EMA
    /// smoothing factor).
    pub ema_alpha: f64,
    /// Unpinned entries whose score falls below this are evicted.
    pub evict_below: f64,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            enabled: true,
            budgets: TierBudgets::default(),
            compact_threshold: 0.8,
            tail_share: 0.25,
            ema_alpha: 0.3,
            evict_below: 0.1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MissionConfig {
    /// Commander iterations (idle turn + gate check) before the mission stops.
    pub max_iterations: u32,
    /// Iterations in a row with the plan and the workspace unchanged before
    /// the mission stops for lack of progress.
    pub no_progress_iterations: u32,
    /// The same tool call (name and arguments) this many times in a row
    /// stops the session that makes it.
    pub repeat_limit: u32,
    /// Wall-clock limit for a mission, in seconds; unset = none.
    pub max_wall_secs: Option<u64>,
    /// Token budget (input + output, every session); unset = none.
    pub budget_tokens: Option<u64>,
    /// Dollar budget (needs `pricing` for the models used); unset = none.
    pub budget_usd: Option<f64>,
    /// Timeout for one verification command.
    pub verify_timeout_ms: u64,
    /// Output kept from a failing verification command (the tail), in bytes.
    pub verify_output_bytes: usize,
    /// How deep delegation may go: 1 = only the Commander delegates.
    pub max_depth: u32,
}

impl Default for MissionConfig {
    fn default() -> Self {
        MissionConfig {
            max_iterations: 25,
            no_progress_iterations: 3,
            repeat_limit: 3,
            max_wall_secs: None,
            budget_tokens: None,
            budget_usd: None,
            verify_timeout_ms: 600_000,
            verify_output_bytes: 4000,
            max_depth: 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConcurrencyConfig {
    /// Sessions running at once across every agent (delegated tasks).
    pub global: usize,
    /// Default cap per agent.
    pub per_agent: usize,
    /// Caps for named agents (case-insensitive), overriding `per_agent`.
    pub agents: BTreeMap<String, usize>,
    /// Caps per model name; models not listed share only the global cap.
    pub models: BTreeMap<String, usize>,
}

impl Default for ConcurrencyConfig {
    fn default() -> Self {
        ConcurrencyConfig {
            global: 8,
            per_agent: 4,
            agents: BTreeMap::new(),
            models: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// Finished sessions kept per agent for reuse.
    pub max_idle_per_agent: usize,
    /// A pooled session unused this long is dropped.
    pub idle_timeout_secs: u64,
    /// A session is reused at most this many times.
    pub max_reuse: u32,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_idle_per_agent: 4,
            idle_timeout_secs: 300,
            max_reuse: 10,
        }
    }
}

/// US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Cached prompt tokens; defaults to `input`.
    #[serde(default)]
    pub cached_input: Option<f64>,
    /// Prompt-cache writes; defaults to `input`.
    #[serde(default)]
    pub cache_write: Option<f64>,
}

impl Price {
    /// Cost of `usage` in US dollars.
    pub fn cost(&self, usage: &crate::provider::Usage) -> f64 {
        let cached = usage.cached_input.min(usage.input);
        let written = usage.cache_write.min(usage.input - cached);
        let plain = usage.input - cached - written;
        (plain as f64 * self.input
            + cached as f64 * self.cached_input.unwrap_or(self.input)
            + written as f64 * self.cache_write.unwrap_or(self.input)
            + usage.output as f64 * self.output)
            / 1_000_000.0
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAiConfig {
    /// Base URL including the version path, e.g. `http://localhost:11434/v1`.
    pub base_url: String,
    /// Prefer the `OPENAI_API_KEY` environment variable to a key in a file.
    pub api_key: Option<Secret>,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig {
            base_url: "https://api.openai.com/v1".into(),
            api_key: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnthropicConfig {
    /// Base URL without the version path, e.g. `https://api.anthropic.com`.
    pub base_url: String,
    pub api_key: Option<Secret>,
}

impl Default for AnthropicConfig {
    fn default() -> Self {
        AnthropicConfig {
            base_url: "https://api.anthropic.com".into(),
            api_key: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSettings {
    pub model: Option<String>,
    pub max_turns: Option<u32>,
    pub max_output_tokens: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// Model turns one session may take before it stops.
    pub max_turns: u32,
    /// Output-token limit sent with every request.
    pub max_output_tokens: u32,
    /// Fail a model turn when the stream is silent this long.
    pub stream_idle_timeout_ms: u64,
    /// TCP connect timeout for provider requests.
    pub connect_timeout_ms: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_turns: 50,
            max_output_tokens: 8192,
            stream_idle_timeout_ms: 120_000,
            connect_timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts per model turn, the first included.
    pub max_attempts: u32,
    /// First backoff; doubles each attempt, with full jitter.
    pub base_delay_ms: u64,
    /// Cap on one backoff.
    pub max_delay_ms: u64,
    /// No retry starts after this long since the first attempt.
    pub deadline_ms: u64,
    /// A server-requested `retry-after` longer than this fails fast instead.
    pub max_retry_after_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 5,
            base_delay_ms: 500,
            max_delay_ms: 30_000,
            deadline_ms: 180_000,
            max_retry_after_ms: 120_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToolsConfig {
    /// `bash` default timeout when the model gives none.
    pub bash_timeout_ms: u64,
    /// Upper bound on a model-requested `bash` timeout.
    pub bash_max_timeout_ms: u64,
    /// `bash` output kept (the tail), in bytes.
    pub bash_output_bytes: usize,
    /// `read`: largest file read whole, in bytes.
    pub read_max_bytes: usize,
    /// `read`: lines returned when no limit is given.
    pub read_default_lines: usize,
    /// `glob` and `list`: most entries returned.
    pub max_entries: usize,
    /// `grep`: most matching lines returned when the model gives no `max`.
    pub grep_max_matches: usize,
    /// Background jobs running at once.
    pub background_max: usize,
    /// Output kept per background job (the tail), in bytes.
    pub background_output_bytes: usize,
    /// Background job timeout when the model gives none.
    pub background_timeout_ms: u64,
    /// Upper bound on a requested background job timeout.
    pub background_max_timeout_ms: u64,
}

impl Default for ToolsConfig {
    fn default() -> Self {
        ToolsConfig {
            bash_timeout_ms: 120_000,
            bash_max_timeout_ms: 600_000,
            bash_output_bytes: 30_000,
            read_max_bytes: 256 * 1024,
            read_default_lines: 2000,
            max_entries: 1000,
            grep_max_matches: 200,
            background_max: 5,
            background_output_bytes: 64 * 1024,
            background_timeout_ms: 30 * 60 * 1000,
            background_max_timeout_ms: 4 * 60 * 60 * 1000,
        }
    }
}

/// What to do when a tool is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Ask,
    Deny,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PermissionConfig {
    /// Per tool name: allow, ask or deny. Tools not listed are allowed.
    pub tools: BTreeMap<String, Action>,
    /// `bash` command patterns (`*` matches anything) in order; the last
    /// pattern matching a command decides. Unmatched commands follow
    /// `tools.bash`.
    #[serde(deserialize_with = "ordered_rules")]
    pub bash: Vec<(String, Action)>,
}

/// A JSON object read in file order (serde_json keeps insertion order with
/// `preserve_order`), so "last match wins" means what the user wrote.
fn ordered_rules<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<(String, Action)>, D::Error> {
    let map = serde_json::Map::<String, Value>::deserialize(de)?;
    map.into_iter()
        .map(|(pattern, action)| {
            Action::deserialize(action)
                .map(|action| (pattern.clone(), action))
                .map_err(|err| serde::de::Error::custom(format!("pattern \"{pattern}\": {err}")))
        })
        .collect()
}

/// A configuration problem, naming where it is and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {message}")]
    Read { file: String, message: String },
    #[error("{source_name}: key \"{key}\": {message}")]
    Invalid {
        source_name: String,
        key: String,
        message: String,
    },
}

/// Values from the command line (highest precedence).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub provider: Option<String>,
    pub model: Option<String>,
    pub script: Option<PathBuf>,
}

/// Load every layer for the project at `root`.
pub fn load(root: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
    let user = dirs::config_dir().map(|dir| dir.join("orch").join("orch.json"));
    let project = root.join(".opencode").join("orch.json");
    let env: BTreeMap<String, String> = std::env::vars().collect();
    load_from(user.as_deref(), &project, &env, overrides)
}

/// `load` with every input explicit, for tests.
pub fn load_from(
    user_file: Option<&Path>,
    project_file: &Path,
    env: &BTreeMap<String, String>,
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    let mut merged = Value::Object(Default::default());
    for file in user_file.into_iter().chain([project_file]) {
        if let Some(layer) = read_layer(file)? {
            merge(&mut merged, layer);
        }
    }
    merge(&mut merged, env_layer(env)?);
    merge(&mut merged, override_layer(overrides)?);
    let mut config = parse_layer("configuration", merged)?;
    // Keys from the environment are used only when no file or flag set one.
    if config.openai.api_key.is_none() {
        config.openai.api_key = env.get("OPENAI_API_KEY").map(Secret::new);
    }
    if config.anthropic.api_key.is_none() {
        config.anthropic.api_key = env.get("ANTHROPIC_API_KEY").map(Secret::new);
    }
    validate(&config, "configuration")?;
    Ok(config)
}

fn read_layer(file: &Path) -> Result<Option<Value>, ConfigError> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(ConfigError::Read {
                file: file.display().to_string(),
                message: err.to_string(),
            });
        }
    };
    let value: Value =
        serde_json::from_str(&strip_comments(&text)).map_err(|err| ConfigError::Read {
            file: file.display().to_string(),
            message: format!("not valid JSON: {err}"),
        })?;
    // Validate this file alone so the error can name it.
    let name = file.display().to_string();
    validate(&parse_layer(&name, value.clone())?, &name)?;
    Ok(Some(value))
}

/// `//` and `/* */` comments replaced by spaces (so error positions stay
/// right); text inside strings is left alone.
pub fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => {
                    if let Some(escaped) = chars.next() {
                        out.push(escaped);
                    }
                }
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for next in chars.by_ref() {
                    if next == '\n' {
                        out.push('\n');
                        break;
                    }
                    out.push(' ');
                }
            }
            ('/', Some('*')) => {
                chars.next();
                out.push_str("  ");
                let mut last = ' ';
                for next in chars.by_ref() {
                    out.push(if next == '\n' { '\n' } else { ' ' });
                    if last == '*' && next == '/' {
                        break;
                    }
                    last = next;
                }
            }
            _ => out.push(c),
        }
    }
    out
}

fn parse_layer(source_name: &str, value: Value) -> Result<Config, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let key = err.path().to_string();
        ConfigError::Invalid {
            source_name: source_name.to_string(),
            key: if key == "." {
                "(top level)".into()
            } else {
                key
            },
            message: err.into_inner().to_string(),
        }
    })
}

/// Environment variables that configure orch, as a config layer.
fn env_layer(env: &BTreeMap<String, String>) -> Result<Value, ConfigError> {
    let mut layer = serde_json::Map::new();
    if let Some(provider) = env.get("ORCH_PROVIDER") {
        check_provider("environment variable ORCH_PROVIDER", provider)?;
        layer.insert("provider".into(), provider.to_ascii_lowercase().into());
    }
    if let Some(model) = env.get("ORCH_MODEL") {
        layer.insert("model".into(), model.clone().into());
    }
    for var in ["OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"] {
        if let Some(url) = env.get(var)
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::Invalid {
                source_name: format!("environment variable {var}"),
                key: "base_url".into(),
                message: format!("expected an http:// or https:// URL, got \"{url}\""),
            });
        }
    }
    if let Some(url) = env.get("OPENAI_BASE_URL") {
        layer.insert("openai".into(), serde_json::json!({ "base_url": url }));
    }
    if let Some(url) = env.get("ANTHROPIC_BASE_URL") {
        layer.insert("anthropic".into(), serde_json::json!({ "base_url": url }));
    }
    Ok(Value::Object(layer))
}

fn override_layer(overrides: &Overrides) -> Result<Value, ConfigError> {
    let mut layer = serde_json::Map::new();
    if let Some(provider) = &overrides.provider {
        check_provider("flag --provider", provider)?;
        layer.insert("provider".into(), provider.to_ascii_lowercase().into());
    }
    if let Some(model) = &overrides.model {
        layer.insert("model".into(), model.clone().into());
    }
    if let Some(script) = &overrides.script {
        layer.insert("script".into(), script.display().to_string().into());
    }
    Ok(Value::Object(layer))
}

fn check_provider(source_name: &str, value: &str) -> Result<(), ConfigError> {
    match ProviderKind::parse(value) {
        Some(_) => Ok(()),
        None => Err(ConfigError::Invalid {
            source_name: source_name.into(),
            key: "provider".into(),
            message: format!(
                "unknown provider \"{value}\", expected openai, anthropic or scripted"
            ),
        }),
    }
}

/// Overlay `layer` onto `base`: objects merge key by key, anything else replaces.
fn merge(base: &mut Value, layer: Value) {
    match (base, layer) {
        (Value::Object(base), Value::Object(layer)) => {
            for (key, value) in layer {
                match base.get_mut(&key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        merge(existing, value)
                    }
                    _ => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, layer) => *base = layer,
    }
}

fn validate(config: &Config, source_name: &str) -> Result<(), ConfigError> {
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
            if let Err(message) = crate::plugins::net::HostPattern::parse(entry) {
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

impl Config {
    /// The price of `model`, if the pricing table has it.
    pub fn price(&self, model: &str) -> Option<Price> {
        self.pricing.get(model).copied()
    }

    /// Whether a mission's end may raise a desktop notification.
    pub fn notifications(&self) -> bool {
        self.notifications.unwrap_or(true)
    }

    /// Settings for `agent`, matched case-insensitively.
    pub fn agent(&self, agent: &str) -> AgentSettings {
        self.agents
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(agent))
            .map(|(_, settings)| settings.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let dir = tempfile::tempdir().unwrap();
        let config = load_from(
            None,
            &dir.path().join("none.json"),
            &env(&[]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(config.provider, None);
        assert_eq!(config.session.max_turns, 50);
        assert_eq!(config.retry, RetryConfig::default());
    }

    #[test]
    fn layers_apply_user_project_env_flags_in_that_order() {
        let dir = tempfile::tempdir().unwrap();
        let user = write(
            dir.path(),
            "user.json",
            r#"{"model":"user-model","session":{"max_turns":7,"max_output_tokens":100},"provider":"anthropic"}"#,
        );
        let project = write(
            dir.path(),
            "project.json",
            r#"{"model":"project-model","session":{"max_turns":9}}"#,
        );
        let config = load_from(Some(&user), &project, &env(&[]), &Overrides::default()).unwrap();
        assert_eq!(config.model.as_deref(), Some("project-model"));
        assert_eq!(config.session.max_turns, 9);
        // Nested objects merge key by key: the user's other session key stays.
        assert_eq!(config.session.max_output_tokens, 100);
        assert_eq!(config.provider, Some(ProviderKind::Anthropic));

        let vars = env(&[("ORCH_MODEL", "env-model"), ("ORCH_PROVIDER", "OpenAI")]);
        let config = load_from(Some(&user), &project, &vars, &Overrides::default()).unwrap();
        assert_eq!(config.model.as_deref(), Some("env-model"));
        assert_eq!(config.provider, Some(ProviderKind::Openai));

        let flags = Overrides {
            provider: Some("scripted".into()),
            model: Some("flag-model".into()),
            script: None,
        };
        let config = load_from(Some(&user), &project, &vars, &flags).unwrap();
        assert_eq!(config.model.as_deref(), Some("flag-model"));
        assert_eq!(config.provider, Some(ProviderKind::Scripted));
    }

    #[test]
    fn errors_name_the_file_the_key_and_what_was_expected() {
        let dir = tempfile::tempdir().unwrap();
        let project = write(
            dir.path(),
            "orch.json",
            r#"{"retry":{"max_attempts":"five"}}"#,
        );
        let err = load_from(None, &project, &env(&[]), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("orch.json"), "{err}");
        assert!(err.contains("key \"retry.max_attempts\""), "{err}");
        assert!(err.contains("expected u32"), "{err}");

        let project = write(dir.path(), "typo.json", r#"{"sesion":{}}"#);
        let err = load_from(None, &project, &env(&[]), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("typo.json"), "{err}");
        assert!(err.contains("unknown field `sesion`"), "{err}");

        let project = write(dir.path(), "zero.json", r#"{"session":{"max_turns":0}}"#);
        let err = load_from(None, &project, &env(&[]), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("zero.json: key \"session.max_turns\""),
            "{err}"
        );
        assert!(err.contains("greater than 0"), "{err}");

        let project = write(dir.path(), "broken.json", "{ not json");
        let err = load_from(None, &project, &env(&[]), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("broken.json: not valid JSON"), "{err}");
    }

    #[test]
    fn bad_env_and_flag_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.json");
        let err = load_from(
            None,
            &missing,
            &env(&[("ORCH_PROVIDER", "gemini")]),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("environment variable ORCH_PROVIDER"), "{err}");
        assert!(
            err.contains("expected openai, anthropic or scripted"),
            "{err}"
        );

        let err = load_from(
            None,
            &missing,
            &env(&[("OPENAI_BASE_URL", "localhost:11434")]),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("environment variable OPENAI_BASE_URL"),
            "{err}"
        );
    }

    #[test]
    fn keys_come_from_the_environment_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let vars = env(&[("OPENAI_API_KEY", "sk-very-secret")]);
        let config = load_from(
            None,
            &dir.path().join("none.json"),
            &vars,
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            config.openai.api_key.as_ref().map(Secret::expose),
            Some("sk-very-secret")
        );
        assert!(!format!("{config:?}").contains("sk-very-secret"));
    }

    #[test]
    fn comments_are_allowed_and_strings_kept() {
        let text =
            "// top\n{ /* block\n */ \"model\": \"a//b\", // trailing\n \"script\": \"x/*y*/z\" }";
        let value: Value = serde_json::from_str(&strip_comments(text)).unwrap();
        assert_eq!(value["model"], "a//b");
        assert_eq!(value["script"], "x/*y*/z");
    }

    #[test]
    fn bash_rules_keep_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let project = write(
            dir.path(),
            "orch.json",
            r#"{"permissions":{"bash":{"*":"allow","git push*":"ask","rm *":"deny"}}}"#,
        );
        let config = load_from(None, &project, &env(&[]), &Overrides::default()).unwrap();
        let patterns: Vec<&str> = config
            .permissions
            .bash
            .iter()
            .map(|(p, _)| p.as_str())
            .collect();
        assert_eq!(patterns, vec!["*", "git push*", "rm *"]);
        assert_eq!(config.permissions.bash[1].1, Action::Ask);
    }
}

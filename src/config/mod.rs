//! Typed configuration, loaded and validated once (`load.rs` reads and
//! merges the layers, `validate.rs` checks values, `jsonc.rs` strips
//! comments). This file holds the types: every key of `orch.json`, with its
//! default.

mod grants;
mod jsonc;
mod load;
pub mod trust;
mod validate;

pub use grants::{HeaderValue, HostPattern, PluginGrant, ProjectAccess, plugin_data_dir};
pub use jsonc::strip_comments;
pub use load::{MCP_JSON, Overrides, load, load_from, mcp_entry, read_mcp_json};
pub use trust::{ProjectTrust, Surface, TrustStore};

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};
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
    /// built-in family defaults (`models`).
    pub models: BTreeMap<String, ModelLimits>,
    /// The wasm plugin host: limits and per-plugin grants (`docs/plugins.md`).
    pub plugins: PluginsConfig,
    /// What the processes orch starts may see (`docs/security.md`).
    pub sandbox: SandboxConfig,
    /// In a git repository, each writing task works in a worktree of its
    /// own, merged back when it completes (unset: on; `docs/worktrees.md`).
    pub worktrees: Option<bool>,
    /// MCP servers whose tools agents get (`docs/mcp.md`).
    pub mcp: McpConfig,
    /// Agent Skills (`docs/skills.md`).
    pub skills: SkillsConfig,
    /// Whether the project's own settings and files apply (not a key).
    #[serde(skip)]
    pub trust: ProjectTrust,
}

/// Agent Skills: how much of a system prompt their catalog may take.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SkillsConfig {
    /// The catalog's share of the model's context window (at about 4 bytes
    /// a token); 0 leaves the catalog and the `skill` tool out.
    pub catalog_share: f64,
}

impl Default for SkillsConfig {
    fn default() -> Self {
        SkillsConfig {
            catalog_share: 0.02,
        }
    }
}

/// The boundary around every process orch starts.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// `workspace-write` (unset: the default, where the kernel allows it),
    /// `read-only` or `off`.
    pub mode: Option<SandboxMode>,
    /// Give sandboxed processes the host's network (default: loopback only).
    pub network: bool,
    /// More directories sandboxed processes may write in.
    pub writable_roots: Vec<PathBuf>,
    /// Environment variable names passed on although they look secret.
    pub env_keep: Vec<String>,
    /// More environment variable names to remove (and whose values to redact).
    pub env_remove: Vec<String>,
}

/// `sandbox.mode` and `--sandbox`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxMode {
    /// Writes in the task's root, temp and toolchain caches.
    WorkspaceWrite,
    /// Writes only in temp and toolchain caches.
    ReadOnly,
    /// No sandbox.
    Off,
}

impl SandboxMode {
    pub fn parse(text: &str) -> Option<SandboxMode> {
        match text.trim() {
            "workspace-write" => Some(SandboxMode::WorkspaceWrite),
            "read-only" => Some(SandboxMode::ReadOnly),
            "off" => Some(SandboxMode::Off),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SandboxMode::WorkspaceWrite => "workspace-write",
            SandboxMode::ReadOnly => "read-only",
            SandboxMode::Off => "off",
        }
    }
}

/// MCP servers, by name (`docs/mcp.md`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpConfig {
    pub servers: BTreeMap<String, McpServer>,
    /// Entries of a trusted project's `.mcp.json` that were not taken, one
    /// message each (naming the file and the server), for a warning.
    #[serde(skip)]
    pub skipped: Vec<String>,
}

/// One MCP server as configured: a command speaking MCP on stdin/stdout,
/// or a streamable HTTP endpoint. Checked at load (`validate.rs`): exactly
/// one of `command` and `url`, no SSE.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpServer {
    /// `stdio` or `http` (`streamable-http` too); unset: from `command`/`url`.
    /// `sse` is refused: the old SSE transport is not supported.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub command: Option<String>,
    pub args: Vec<String>,
    /// Variables set for the server (the only secrets it sees; `${VAR}`
    /// takes a value from orch's environment).
    pub env: BTreeMap<String, String>,
    /// Where the server runs (relative to the project root); unset: the root.
    pub cwd: Option<PathBuf>,
    pub url: Option<String>,
    /// HTTP headers; `${VAR}` in a value takes it from the environment.
    pub headers: BTreeMap<String, String>,
    pub enabled: bool,
    /// How long starting (process, handshake, tool list) may take.
    pub timeout_ms: u64,
    /// How long one tool call may take.
    pub call_timeout_ms: u64,
}

impl Default for McpServer {
    fn default() -> Self {
        McpServer {
            kind: None,
            command: None,
            args: Vec::new(),
            env: BTreeMap::new(),
            cwd: None,
            url: None,
            headers: BTreeMap::new(),
            enabled: true,
            timeout_ms: 10_000,
            call_timeout_ms: 120_000,
        }
    }
}

/// How orch reaches an MCP server (from a validated [`McpServer`]).
#[derive(Debug, Clone, PartialEq)]
pub enum McpTransport<'a> {
    Stdio {
        command: &'a str,
        args: &'a [String],
    },
    Http {
        url: &'a str,
    },
}

impl McpServer {
    /// The transport, or what is wrong with the entry (for `validate`).
    pub fn transport(&self) -> Result<McpTransport<'_>, String> {
        match (self.kind.as_deref(), &self.command, &self.url) {
            (Some("sse"), _, _) => Err(
                "the SSE transport is not supported; use the server's streamable HTTP endpoint (\"type\": \"http\") or its stdio command".into(),
            ),
            (Some(kind), _, _) if !matches!(kind, "stdio" | "http" | "streamable-http" | "streamableHttp") => Err(format!(
                "unknown type \"{kind}\", expected \"stdio\" or \"http\""
            )),
            (_, Some(_), Some(_)) => Err("set either \"command\" (stdio) or \"url\" (http), not both".into()),
            (Some("stdio") | None, Some(command), None) if !command.trim().is_empty() => {
                Ok(McpTransport::Stdio { command, args: &self.args })
            }
            (Some("http" | "streamable-http" | "streamableHttp") | None, None, Some(url))
                if url.starts_with("http://") || url.starts_with("https://") =>
            {
                Ok(McpTransport::Http { url })
            }
            (_, None, Some(url)) => Err(format!("expected an http:// or https:// URL in \"url\", got \"{url}\"")),
            (Some("http" | "streamable-http" | "streamableHttp"), Some(_), None) => {
                Err("an http server needs \"url\", not \"command\"".into())
            }
            _ => Err("expected \"command\" (a program speaking MCP on stdin/stdout) or \"url\" (a streamable HTTP endpoint)".into()),
        }
    }

    pub fn transport_name(&self) -> &'static str {
        match self.transport() {
            Ok(McpTransport::Http { .. }) => "http",
            _ => "stdio",
        }
    }
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
    /// The largest goal taken from the command line, in bytes.
    pub max_goal_bytes: usize,
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
            max_goal_bytes: 16 * 1024,
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
    /// The least output a request leaves room for (reasoning models spend
    /// output on thinking): a prompt that leaves less is compacted first.
    pub min_output_tokens: u32,
    /// Fail a model turn when the stream is silent this long.
    pub stream_idle_timeout_ms: u64,
    /// Fail a model turn that streams longer than this, however often the
    /// server says it is still working (keep-alive comments).
    pub turn_timeout_ms: u64,
    /// TCP connect timeout for provider requests.
    pub connect_timeout_ms: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_turns: 50,
            max_output_tokens: 8192,
            min_output_tokens: 2048,
            stream_idle_timeout_ms: 120_000,
            turn_timeout_ms: 600_000,
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
    /// Times a session takes a turn up again after it failed for a
    /// transient cause and the attempts above ran out (waiting from
    /// `base_delay_ms`, doubling, up to `max_delay_ms`); the task or the
    /// Commander goes on from its transcript instead of failing.
    pub turn_retries: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 5,
            base_delay_ms: 500,
            max_delay_ms: 30_000,
            deadline_ms: 300_000,
            max_retry_after_ms: 120_000,
            turn_retries: 3,
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
    /// The share of a model's window the schemas of live tools (plugins,
    /// MCP servers) may take in a session's tool list; past it they are
    /// listed by name only and reached through `find_tools` and `call_tool`.
    pub defer_share: f64,
    /// The `http` tool (`docs/tools.md`).
    pub http: HttpConfig,
}

/// The `http` tool: what it reaches beyond the mission's own servers, and
/// its limits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Hosts reached from orch's own network besides the ports the
    /// mission's processes listen on: `api.example.com` (any port),
    /// `127.0.0.1:9000` (that port only), `*.internal.test` (subdomains).
    /// A listed name that resolves to an internal address is refused unless
    /// that address is listed too.
    pub allow: Vec<String>,
    /// Response body bytes kept.
    pub max_bytes: usize,
    /// Timeout of one request when the model gives none, redirects included.
    pub timeout_ms: u64,
    /// Upper bound on a requested timeout.
    pub max_timeout_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            allow: Vec::new(),
            max_bytes: 64 * 1024,
            timeout_ms: 30_000,
            max_timeout_ms: 120_000,
        }
    }
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
            defer_share: 0.02,
            http: HttpConfig::default(),
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

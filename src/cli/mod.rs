//! The command-line edge: parse arguments, load configuration, wire the
//! engine to a frontend, and map outcomes to exit codes (DESIGN §2):
//! 0 complete, 1 stopped unfinished, 2 usage or configuration error,
//! 130 interrupted.

mod agents;
mod args;
mod changes;
mod commands;
mod demo;
mod init;
mod mcp;
mod mcp_serve;
mod memory;
mod mission;
mod monitor;
mod plugins;
mod run;
mod scaffold;
mod skills;
mod status;
mod trust;

use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

pub use args::{Cli, Command, McpCommand, MemoryCommand, PluginsCommand};

use crate::agents::Agent;
use crate::config::{self, Config, Overrides, ProviderKind};
use crate::events::{Detached, EventBus, EventSink};
use crate::hooks::NoHooks;
use crate::memory::Memory;
use crate::mission::state::Journal;
use crate::models::Prices;
use crate::monitor::live::{Live, LiveRun};
use crate::monitor::metrics::MetricsSink;
use crate::monitor::{jsonl::JsonOut, plain::Plain, plain::Verbosity, terminal};
use crate::provider::anthropic::AnthropicClient;
use crate::provider::openai::OpenAiClient;
use crate::provider::scripted::{Script, ScriptedClient};
use crate::provider::{HttpSettings, ModelClient};
use crate::session::{Runtime, SessionSetup, TurnPolicy};
use crate::todo::TodoStore;
use crate::tools::ToolRegistry;
use crate::tools::background::{BackgroundJobs, JobLimits};
use crate::tools::metrics::ShowMetrics;
use crate::tools::permissions::{Permissions, Prompter, TerminalPrompter};

/// Exit codes of DESIGN §2.
pub mod exit {
    pub const COMPLETE: u8 = 0;
    pub const UNFINISHED: u8 = 1;
    pub const USAGE: u8 = 2;
    /// Ctrl-C (SIGINT).
    pub const INTERRUPTED: u8 = 130;
    /// SIGTERM.
    pub const TERMINATED: u8 = 143;
    /// SIGHUP.
    pub const HUNG_UP: u8 = 129;
}

/// Context on an error that happened after a mission started (its files
/// exist): it exits 1, like any unfinished mission. Every other error of a
/// command is a usage or configuration error before anything ran (exit 2).
#[derive(Debug)]
pub struct AfterStart(pub String);

impl std::fmt::Display for AfterStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "mission {} stopped", self.0)
    }
}

/// The runtime every command runs on. Timers and I/O are checked every 8
/// task polls (tokio's default is 61): a plugin guest runs for up to one
/// epoch tick (10 ms) per poll before it yields, so with every worker busy
/// in a guest a stream or a timer still waits at most about 80 ms.
pub fn runtime_builder() -> tokio::runtime::Builder {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().event_interval(8);
    builder
}

pub fn main() -> ExitCode {
    // orch re-executed as the sandbox helper: set up, exec, never return.
    if let Some(code) = crate::sandbox::helper_main() {
        return code;
    }
    // orch re-executed to send one `http` request inside the run's network.
    if let Some(code) = crate::tools::http::helper_main() {
        return code;
    }
    // Nothing orch starts may read its memory (keys) through /proc.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let cli = Cli::parse();
    let runtime = match runtime_builder().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            let _ = writeln!(
                std::io::stderr(),
                "error: cannot start the async runtime: {err}"
            );
            return ExitCode::from(exit::UNFINISHED);
        }
    };
    let code = runtime.block_on(dispatch(cli));
    // Sessions and tools own their tasks; nothing must keep the process alive.
    runtime.shutdown_timeout(Duration::from_millis(100));
    ExitCode::from(code)
}

async fn dispatch(cli: Cli) -> u8 {
    let result = match &cli.command {
        Command::Run(args) => run::run(&cli, args).await,
        Command::Task(args) => mission::task(&cli, args).await,
        Command::Plan(args) => mission::plan(&cli, args).await,
        Command::Resume => mission::resume(&cli).await,
        Command::Status => status::status(&cli),
        Command::Cancel => status::cancel(&cli).await,
        Command::Diff(args) => changes::diff(&cli, args.stat),
        Command::Undo => changes::undo(&cli),
        Command::Abandon => changes::abandon(&cli),
        Command::Monitor => monitor::monitor(&cli).await,
        Command::Metrics => monitor::metrics(&cli),
        Command::Agents => agents::agents(&cli),
        Command::Demo => mission::demo(&cli).await,
        Command::Init => init::init(&cli),
        Command::Plugins(command) => plugins::command(&cli, command).await,
        Command::Mcp(command) => mcp::command(&cli, command).await,
        Command::Trust(args) => trust::trust(&cli, args.revoke),
        Command::Memory(args) => memory::command(&cli, args.command.as_ref()),
        Command::Skills => skills::skills(&cli),
        Command::Commands => commands::list(&cli),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "error: {err:#}");
            if err.downcast_ref::<AfterStart>().is_some() {
                exit::UNFINISHED
            } else {
                exit::USAGE
            }
        }
    }
}

/// Everything a command needs, resolved once from flags, env and files.
pub struct Project {
    pub root: PathBuf,
    pub config: Config,
    pub events: Arc<EventBus>,
    /// A person can answer prompts (stdin and stdout are terminals, no
    /// `--json`, `CI` unset).
    pub interactive: bool,
    pub cancel: CancellationToken,
    /// The live terminal view, when this command shows one: `task`, `demo`
    /// and `resume`, with stdin and stdout terminals, no `--json`, and a
    /// `TERM` that is not `dumb`.
    pub live: Option<Live>,
    /// The metrics fold of this run, behind the `show_metrics` tool.
    pub metrics: Arc<MetricsSink>,
    /// Background jobs started by this run's agents; killed when it ends.
    pub jobs: Arc<BackgroundJobs>,
    /// The plugin host, started on first use (none without plugins).
    plugins: std::sync::OnceLock<Option<crate::plugins::PluginHost>>,
    /// Hot reload of the plugin folders while this command runs.
    plugin_watcher: std::sync::OnceLock<Option<crate::plugins::PluginWatcher>>,
    /// The observing hook points (mission, session, iteration, todo).
    plugin_observer: std::sync::OnceLock<crate::plugins::PluginObserver>,
    live_tools: std::sync::OnceLock<Arc<crate::tools::live::LiveTools>>,
    /// The run's MCP servers, and the task that follows their tool lists.
    mcp: std::sync::OnceLock<(crate::mcp::McpHub, AbortOnDropHandle<()>)>,
    /// The task that notices skills installed during the run.
    skills_follower: std::sync::OnceLock<AbortOnDropHandle<()>>,
    /// The task that makes agents plugins add during a mission delegable.
    agents_follower: std::sync::OnceLock<AbortOnDropHandle<()>>,
    /// The signal listener behind `cancel`, owned for the command's life.
    _ctrl_c: AbortOnDropHandle<()>,
    /// `--json`: the journal followed onto stdout.
    pub json: Option<JsonOut>,
    /// Plain lines, written on their own thread.
    plain: Option<Arc<Detached>>,
}

/// Events queued for the plain output before it counts as behind.
const PLAIN_QUEUE: usize = 8192;

/// How long a command's end waits for its records and output.
const FINISH_LIMIT: Duration = Duration::from_secs(30);

impl Drop for Project {
    /// The command's end: every event recorded, the output written (a
    /// stalled reader of stdout is waited for at most `FINISH_LIMIT`).
    fn drop(&mut self) {
        self.events.flush_blocking(FINISH_LIMIT);
        if let Some(plain) = &self.plain {
            plain.drain(FINISH_LIMIT);
        }
        if let Some(json) = &self.json {
            json.finish(FINISH_LIMIT);
        }
    }
}

/// How a journal or state file that cannot be written is said: one line on
/// stderr in every output mode (with `--json` stdout shows only the journal,
/// which may be the file failing), except while the live view owns the
/// screen, which shows the warning event instead.
pub fn record_alarm() -> crate::mission::state::Alarm {
    Arc::new(|message: &str| {
        if terminal::is_active() {
            return false;
        }
        let _ = writeln!(std::io::stderr(), "warning: {message}");
        true
    })
}

impl Project {
    pub fn load(cli: &Cli) -> anyhow::Result<Project> {
        let root = project_root(cli.dir.as_deref())?;
        let overrides = cli.overrides();
        let interactive = !cli.json
            && std::io::stdin().is_terminal()
            && std::io::stdout().is_terminal()
            && std::env::var_os("CI").is_none();
        let config = config::load(&root, &overrides)?;
        let (config, untrusted) = trust::settle(&root, config, interactive, || {
            Ok(config::load(&root, &overrides)?)
        })?;
        crate::secrets::install(
            [&config.openai.api_key, &config.anthropic.api_key]
                .into_iter()
                .flatten()
                .map(|key| key.expose()),
            &config.sandbox.env_keep,
            &config.sandbox.env_remove,
            std::env::vars(),
        );
        let events = Arc::new(EventBus::new());
        let metrics = Arc::new(MetricsSink::new(prices(&config)));
        events.add_sink(metrics.clone());
        let mut live = None;
        let mut json = None;
        let mut plain_output = None;
        if cli.json {
            json = Some(JsonOut::new());
        } else {
            let verbosity = if cli.quiet {
                Verbosity::Quiet
            } else if cli.verbose {
                Verbosity::Verbose
            } else {
                Verbosity::Normal
            };
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            let plain = Arc::new(Plain::new(std::io::stdout(), verbosity, color));
            let detached = Detached::new(plain.clone(), PLAIN_QUEUE);
            events.add_sink(detached.clone());
            plain_output = Some(detached);
            let mission = matches!(
                cli.command,
                Command::Task(_) | Command::Demo | Command::Resume
            );
            if mission && terminal::supports_live_view() {
                live = Some(Live::new(&events, plain, color));
            }
        }
        let jobs = BackgroundJobs::new(
            JobLimits {
                max_running: config.tools.background_max,
                output_bytes: config.tools.background_output_bytes,
                default_timeout: Duration::from_millis(config.tools.background_timeout_ms),
                max_timeout: Duration::from_millis(config.tools.background_max_timeout_ms),
            },
            events.clone(),
        );
        if let Some(warning) = untrusted {
            events.emit(crate::events::Event::Warning {
                session: None,
                message: warning,
            });
        }
        if runs_commands(&cli.command)
            && let Some(warning) = install_sandbox(cli, &root, &config)?
        {
            events.emit(crate::events::Event::Warning {
                session: None,
                message: warning,
            });
        }
        let (cancel, ctrl_c) = cancel_on_signals();
        Ok(Project {
            root,
            config,
            events,
            interactive,
            cancel,
            live,
            metrics,
            jobs,
            plugins: std::sync::OnceLock::new(),
            plugin_watcher: std::sync::OnceLock::new(),
            plugin_observer: std::sync::OnceLock::new(),
            live_tools: std::sync::OnceLock::new(),
            mcp: std::sync::OnceLock::new(),
            skills_follower: std::sync::OnceLock::new(),
            agents_follower: std::sync::OnceLock::new(),
            _ctrl_c: ctrl_c,
            json,
            plain: plain_output,
        })
    }

    /// Record this command's events into the journal at `path` (and into
    /// `sinks`, on the same recorder thread), and with `--json` print them
    /// from there. Events emitted so far are recorded first.
    pub fn record_into(&self, path: &Path, sinks: Vec<Arc<dyn EventSink>>) -> anyhow::Result<()> {
        let from = std::fs::metadata(path).map_or(0, |meta| meta.len());
        let journal = Journal::open(path, &self.events)
            .with_context(|| format!("opening {}", path.display()))?
            .alarm(record_alarm());
        let mut recorded: Vec<Arc<dyn EventSink>> = vec![Arc::new(journal)];
        recorded.extend(sinks);
        if let Some(json) = &self.json {
            let wake = json
                .follow(path, from)
                .with_context(|| format!("following {} for --json", path.display()))?;
            recorded.extend(wake);
        }
        self.events.add_recorded(recorded);
        Ok(())
    }

    /// Show the live view, if this command has one, until `LiveRun::finish`.
    pub fn start_live(&self) -> Option<LiveRun> {
        self.live
            .as_ref()?
            .start(self.root.clone(), prices(&self.config), self.cancel.clone())
    }

    /// Who asks a person to approve a call: the live view's prompter gives
    /// the terminal back first.
    fn prompter(&self) -> Arc<dyn Prompter> {
        match &self.live {
            Some(live) => live.prompter(),
            None => Arc::new(TerminalPrompter),
        }
    }

    /// The model client for this run, chosen from config and environment.
    pub fn model_client(&self) -> anyhow::Result<Arc<dyn ModelClient>> {
        let config = &self.config;
        let kind = match config.provider {
            Some(kind) => kind,
            None => auto_provider(config).ok_or_else(|| {
                anyhow!(
                    "no model provider configured: set OPENAI_API_KEY (or OPENAI_BASE_URL for a local \
                     server such as Ollama), or ANTHROPIC_API_KEY, or run offline with \
                     --provider scripted --script FILE"
                )
            })?,
        };
        let http = |base_url: &str, api_key| HttpSettings {
            base_url: base_url.to_string(),
            api_key,
            retry: config.retry.clone(),
            stream_idle_timeout: Duration::from_millis(config.session.stream_idle_timeout_ms),
            turn_timeout: Duration::from_millis(config.session.turn_timeout_ms),
            connect_timeout: Duration::from_millis(config.session.connect_timeout_ms),
        };
        Ok(match kind {
            ProviderKind::Openai => {
                // A local or compatible server may need no key; OpenAI's own does.
                let default_url =
                    config.openai.base_url == config::OpenAiConfig::default().base_url;
                if default_url
                    && config
                        .openai
                        .api_key
                        .as_ref()
                        .is_none_or(|key| key.is_empty())
                {
                    return Err(anyhow!(
                        "provider openai needs an API key for {}: set OPENAI_API_KEY, or set OPENAI_BASE_URL (or openai.base_url in orch.json) for a local or compatible server",
                        config.openai.base_url
                    ));
                }
                Arc::new(OpenAiClient::new(http(
                    &config.openai.base_url,
                    config.openai.api_key.clone(),
                )))
            }
            ProviderKind::Anthropic => {
                // As for OpenAI: a proxy at another URL may hold the key itself.
                let default_url =
                    config.anthropic.base_url == config::AnthropicConfig::default().base_url;
                if default_url
                    && config
                        .anthropic
                        .api_key
                        .as_ref()
                        .is_none_or(|key| key.is_empty())
                {
                    return Err(anyhow!(
                        "provider anthropic needs an API key for {}: set ANTHROPIC_API_KEY or anthropic.api_key in orch.json, or set ANTHROPIC_BASE_URL (or anthropic.base_url) for a local proxy",
                        config.anthropic.base_url
                    ));
                }
                Arc::new(AnthropicClient::new(http(
                    &config.anthropic.base_url,
                    config.anthropic.api_key.clone(),
                )))
            }
            ProviderKind::Scripted => {
                let path = config.script.as_ref().ok_or_else(|| {
                    anyhow!("provider scripted needs a script: pass --script FILE or set \"script\" in orch.json")
                })?;
                let path = self.root.join(path);
                Arc::new(ScriptedClient::new(
                    Script::load(&path).map_err(|e| anyhow!(e))?,
                ))
            }
        })
    }

    /// How a session for `agent` is set up: the model from
    /// `agents.<name>.model`, else the agent's own, else `default_model`;
    /// caps from the agent's settings, else the session defaults.
    pub fn setup(&self, agent: &Agent, default_model: &str) -> SessionSetup {
        session_setup(&self.config, agent, default_model)
    }

    /// The engine's shared parts for this project: built-in and plan tools,
    /// permissions, the bus.
    pub async fn runtime(&self, client: Arc<dyn ModelClient>) -> (Runtime, Arc<TodoStore>) {
        let todo = Arc::new(TodoStore::new(&self.root));
        let mut tools = ToolRegistry::builtins();
        for tool in crate::tools::todo::tools(todo.clone(), Some(self.events.clone())) {
            tools.insert(tool);
        }
        tools.insert(Arc::new(ShowMetrics(self.metrics.clone())));
        tools.insert(Arc::new(crate::tools::skill::SkillTool::new(
            crate::skills::Sources::of(&self.root, self.config.trust.trusted),
        )));
        tools.set_checker(Arc::new(crate::tools::diagnostics::Checker::new(
            self.config.diagnostics.clone(),
        )));
        for tool in self.jobs.tools() {
            tools.insert(tool);
        }
        tools.insert(Arc::new(crate::tools::http::Http));
        let memory = self.memory();
        for tool in crate::tools::memory::tools(memory.clone()) {
            tools.insert(tool);
        }
        let mut hooks: Arc<dyn crate::hooks::Hooks> = Arc::new(NoHooks);
        let live = self.live_tools();
        if let Some(host) = self.plugin_host() {
            host.attach_memory(memory.clone());
            // The delegation tools join later (`Tasks` adds them); the
            // session's own `call_tool` and `find_tools` are taken too.
            let taken: Vec<String> = tools
                .names()
                .chain(crate::agents::DELEGATION_TOOLS.iter().copied())
                .chain([
                    crate::tools::live::CALL_TOOL,
                    crate::tools::live::FIND_TOOLS,
                ])
                .map(str::to_string)
                .collect();
            self.warn(host.attach_live(live.clone(), taken));
            if tokio::runtime::Handle::try_current().is_ok() {
                self.plugin_watcher.get_or_init(|| {
                    let dirs = crate::plugins::PluginHost::dirs(
                        &self.root,
                        &self.config.plugins,
                        self.config.trust.trusted,
                    );
                    host.watch(&dirs)
                        .map_err(|problem| self.warn([problem]))
                        .ok()
                });
                self.plugin_observer
                    .get_or_init(|| host.observe(&self.events));
            }
            hooks = Arc::new(host);
        }
        // The skills' baseline first: a skill installed while MCP servers
        // start is then news.
        self.follow_skills(&live).await;
        self.start_mcp(&live).await;
        let runtime = Runtime {
            root: Arc::new(self.root.clone()),
            client,
            tools,
            permissions: Permissions::with_prompter(
                self.config.permissions.clone(),
                self.interactive,
                self.prompter(),
            ),
            events: self.events.clone(),
            limits: Arc::new(self.config.tools.clone()),
            memory,
            hooks,
            live,
        };
        (runtime, todo)
    }

    /// Start the configured MCP servers (in parallel, each within its
    /// timeout; one that fails is a warning) and offer their tools in
    /// `live`, now and whenever a server's tool list changes. Once a run.
    async fn start_mcp(&self, live: &Arc<crate::tools::live::LiveTools>) {
        if self.config.mcp.servers.is_empty() && self.config.mcp.skipped.is_empty() {
            return;
        }
        if self.mcp.get().is_some() {
            return;
        }
        let hub = crate::mcp::McpHub::from_config(
            &self.config.mcp,
            self.root.clone(),
            self.events.clone(),
        )
        .await;
        self.warn(live.set_source("mcp", hub.tools()));
        let mut changes = hub.changes();
        let watched = hub.clone();
        let live = live.clone();
        let events = self.events.clone();
        let follow = tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                for message in live.set_source("mcp", watched.tools()) {
                    events.emit(crate::events::Event::Warning {
                        session: None,
                        message,
                    });
                }
            }
        });
        let _ = self.mcp.set((hub, AbortOnDropHandle::new(follow)));
    }

    /// Tell running sessions about skills installed while the run goes on
    /// (a look every two seconds): their catalogs stay as they started, so
    /// a new skill is a notice, loaded by name with `skill` (offered as a
    /// live tool when no skill existed at the start). Once a run.
    async fn follow_skills(&self, live: &Arc<crate::tools::live::LiveTools>) {
        if self.config.skills.catalog_share <= 0.0 || self.skills_follower.get().is_some() {
            return;
        }
        let sources = crate::skills::Sources::of(&self.root, self.config.trust.trusted);
        let scan = {
            let sources = sources.clone();
            move || sources.scan()
        };
        let Ok(first) = tokio::task::spawn_blocking(scan.clone()).await else {
            return;
        };
        let mut known: std::collections::BTreeSet<String> =
            first.names().into_iter().map(str::to_string).collect();
        let mut offered = !known.is_empty();
        let live = live.clone();
        let follow = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Ok(now) = tokio::task::spawn_blocking(scan.clone()).await else {
                    return;
                };
                let added: Vec<&crate::skills::Skill> = now
                    .skills
                    .iter()
                    .filter(|skill| !known.contains(&skill.name))
                    .collect();
                if added.is_empty() {
                    continue;
                }
                if !offered {
                    offered = true;
                    let tool: Arc<dyn crate::tools::Tool> =
                        Arc::new(crate::tools::skill::SkillTool::new(sources.clone()));
                    live.set_source("skills", vec![(tool, false)]);
                }
                let lines: Vec<String> = added
                    .iter()
                    .map(|skill| {
                        format!(
                            "- {}: {}",
                            skill.name,
                            crate::text::preview(
                                &crate::text::squash_spaces(&skill.description),
                                200
                            )
                        )
                    })
                    .collect();
                live.note(
                    "skills",
                    format!(
                        "Skills installed since this conversation started (load one with skill(name), or call_tool(\"skill\", {{\"name\": …}}) if you do not have skill):\n{}",
                        lines.join("\n")
                    ),
                );
                known.extend(added.iter().map(|skill| skill.name.clone()));
            }
        });
        let _ = self.skills_follower.set(AbortOnDropHandle::new(follow));
    }

    /// Make agents that plugins added while the mission runs delegable
    /// (their names checked against `agents`, the ones it started with),
    /// and tell running sessions. Once a run.
    pub fn follow_plugin_agents(
        &self,
        tasks: &Arc<crate::session::tasks::Tasks>,
        agents: &crate::agents::AgentRegistry,
    ) {
        let Some(host) = self.plugin_host() else {
            return;
        };
        if self.agents_follower.get().is_some() {
            return;
        }
        let live = self.live_tools();
        let mut changes = live.subscribe();
        let tasks = Arc::downgrade(tasks);
        let agents = agents.clone();
        let follow = tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let Some(tasks) = tasks.upgrade() else {
                    return;
                };
                let mut now = agents.clone();
                let _ = plugins::add_host_agents(&host, &mut now);
                let fresh: Vec<crate::agents::Agent> = now
                    .iter()
                    .filter(|agent| agents.find(&agent.name).is_none())
                    .cloned()
                    .collect();
                let added = tasks.add_agents(fresh);
                if added.is_empty() {
                    continue;
                }
                let lines: Vec<String> = added
                    .iter()
                    .map(|agent| {
                        format!(
                            "- {} ({}): {}",
                            agent.name,
                            agent.source.describe(),
                            crate::text::squash_spaces(&agent.description)
                        )
                    })
                    .collect();
                live.note(
                    "agents",
                    format!(
                        "Agents defined since this conversation started (delegate_task can start them):\n{}",
                        lines.join("\n")
                    ),
                );
            }
        });
        let _ = self.agents_follower.set(AbortOnDropHandle::new(follow));
    }

    /// The tools whose sources change while this run goes on (plugins, MCP
    /// servers), one set for the run.
    pub fn live_tools(&self) -> Arc<crate::tools::live::LiveTools> {
        self.live_tools
            .get_or_init(|| {
                Arc::new(crate::tools::live::LiveTools::new(Some(
                    self.events.clone(),
                )))
            })
            .clone()
    }

    /// The plugin host with this project's plugins loaded, started once;
    /// none when plugins are off or there are none. Plugins that fail to
    /// load are reported as warnings and skipped.
    pub fn plugin_host(&self) -> Option<crate::plugins::PluginHost> {
        self.plugins
            .get_or_init(|| {
                let (host, problems) = plugins::start(&self.root, &self.config, &self.events);
                self.warn(problems);
                host
            })
            .clone()
    }

    /// The agent registry: built-ins, the project's custom agents and the
    /// agents plugins define; problems come back as warnings.
    pub fn agents(&self) -> (crate::agents::AgentRegistry, Vec<String>) {
        let (mut agents, mut warnings) =
            crate::agents::AgentRegistry::load(&self.root, self.config.trust.trusted);
        if let Some(host) = self.plugin_host() {
            warnings.extend(plugins::add_host_agents(&host, &mut agents));
            let tools: Vec<(String, bool)> = host
                .plugins()
                .iter()
                .flat_map(|plugin| {
                    let writes = plugin.project == Some(crate::config::ProjectAccess::ReadWrite);
                    plugin
                        .tools
                        .iter()
                        .map(move |tool| (tool.name.clone(), writes))
                })
                .collect();
            agents.offer_tools(&tools);
        }
        warnings.extend(self.offer_skills(&mut agents));
        (agents, warnings)
    }

    /// The skill catalog in the system prompt of every agent that does the
    /// work (never the Commander's), each sized to its model's window, and
    /// the `skill` tool with it; nothing when no skill is installed or
    /// `skills.catalog_share` is 0. Returns the skills' problems.
    fn offer_skills(&self, agents: &mut crate::agents::AgentRegistry) -> Vec<String> {
        let share = self.config.skills.catalog_share;
        if share <= 0.0 {
            return Vec::new();
        }
        let skills = crate::skills::scan(&self.root, self.config.trust.trusted);
        if !skills.skills.is_empty() {
            // An agent whose model is not known yet gets the unknown model's window.
            let default_model = self.default_model().unwrap_or_default();
            agents.offer_skills(|agent| {
                let model = session_setup(&self.config, agent, &default_model).model;
                let (limits, _) = crate::models::limits(&model, &self.config.models);
                skills.catalog(crate::skills::catalog_bytes(limits.context_window, share))
            });
        }
        skills.warnings()
    }

    /// The project's memory (System and Project tiers from
    /// `.opencode/memory/`). A broken memory file is reported and set
    /// aside for this run, never a reason not to run.
    fn memory(&self) -> Arc<Memory> {
        let config = self.config.memory.clone();
        match Memory::open(&self.root, config.clone(), self.config.models.clone()) {
            Ok(memory) => Arc::new(memory),
            Err(err) => {
                self.warn([format!("{err}; the project memory is not used in this run")]);
                Arc::new(Memory::in_memory(config).with_models(self.config.models.clone()))
            }
        }
    }

    /// Report problems that did not stop anything (a bad agents.json entry...).
    pub fn warn(&self, messages: impl IntoIterator<Item = String>) {
        for message in messages {
            self.events.emit(crate::events::Event::Warning {
                session: None,
                message,
            });
        }
    }

    /// The model agents use unless configured otherwise: `model` from
    /// config, env or flags, else the provider's default.
    pub fn default_model(&self) -> anyhow::Result<String> {
        if let Some(model) = self.config.model.clone() {
            return Ok(model);
        }
        match self.config.provider.or_else(|| auto_provider(&self.config)) {
            Some(ProviderKind::Anthropic) => Ok("claude-sonnet-4-5".into()),
            Some(ProviderKind::Scripted) => Ok("scripted".into()),
            Some(ProviderKind::Openai)
                if self.config.openai.base_url.contains("api.openai.com") =>
            {
                Ok("gpt-4.1-mini".into())
            }
            _ => Err(anyhow!(
                "no model configured for {}: set ORCH_MODEL, pass --model, or set \"model\" in orch.json",
                self.config.openai.base_url
            )),
        }
    }
}

/// How a session for `agent` is set up under `config` (see `Project::setup`).
pub(crate) fn session_setup(config: &Config, agent: &Agent, default_model: &str) -> SessionSetup {
    let settings = config.agent(&agent.name);
    SessionSetup {
        model: settings
            .model
            .clone()
            .or(agent.model.clone())
            .unwrap_or_else(|| default_model.to_string()),
        max_turns: settings.max_turns.unwrap_or(config.session.max_turns),
        max_output_tokens: settings
            .max_output_tokens
            .unwrap_or(config.session.max_output_tokens),
        token_budget: None,
        repeat_limit: Some(config.mission.repeat_limit),
        policy: TurnPolicy {
            min_output_tokens: config.session.min_output_tokens,
            turn_retries: config.retry.turn_retries,
            turn_retry_base: Duration::from_millis(config.retry.base_delay_ms),
            turn_retry_max: Duration::from_millis(config.retry.max_delay_ms),
        },
        agent: agent.clone(),
    }
}

/// The prices of this configuration: `pricing` over the built-in table, and
/// nothing to pay when the models run locally (the scripted provider, or an
/// OpenAI-compatible server on this machine or a private network).
pub(crate) fn prices(config: &Config) -> Prices {
    let free = match config.provider.or_else(|| auto_provider(config)) {
        Some(ProviderKind::Scripted) => true,
        Some(ProviderKind::Openai) => crate::models::is_local_endpoint(&config.openai.base_url),
        Some(ProviderKind::Anthropic) | None => false,
    };
    Prices::new(config.pricing.clone(), free)
}

/// Anthropic when its key is set, else OpenAI when a key or a base URL is.
fn auto_provider(config: &Config) -> Option<ProviderKind> {
    if config
        .anthropic
        .api_key
        .as_ref()
        .is_some_and(|k| !k.is_empty())
    {
        Some(ProviderKind::Anthropic)
    } else if config
        .openai
        .api_key
        .as_ref()
        .is_some_and(|k| !k.is_empty())
        || config.openai.base_url != config::OpenAiConfig::default().base_url
    {
        Some(ProviderKind::Openai)
    } else {
        None
    }
}

fn project_root(dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    let dir = match dir {
        Some(dir) => dir.to_path_buf(),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let root = dir
        .canonicalize()
        .with_context(|| format!("project root {}", dir.display()))?;
    if !root.is_dir() {
        return Err(anyhow!("project root {} is not a directory", dir.display()));
    }
    Ok(root)
}

/// Whether `command` starts agents' or checks' processes.
fn runs_commands(command: &Command) -> bool {
    matches!(
        command,
        Command::Task(_) | Command::Plan(_) | Command::Run(_) | Command::Resume | Command::Demo
    )
}

/// Decide and install the OS sandbox for this run. A mode asked for
/// explicitly (flag or config) that the kernel cannot enforce is an error;
/// the default one falls back to none with the warning returned.
fn install_sandbox(
    cli: &Cli,
    root: &Path,
    config: &crate::config::Config,
) -> anyhow::Result<Option<String>> {
    use crate::config::SandboxMode;
    use crate::sandbox::{self, Sandbox};
    let requested = cli.sandbox.or(config.sandbox.mode);
    let mode = requested.unwrap_or(SandboxMode::WorkspaceWrite);
    if mode == SandboxMode::Off {
        sandbox::install(None);
        return Ok(None);
    }
    let chosen = Sandbox::new(
        mode,
        root,
        &config.sandbox.writable_roots,
        config.sandbox.network,
    );
    match sandbox::probe(&chosen) {
        Ok(()) => {
            sandbox::install(Some(chosen));
            Ok(None)
        }
        Err(reason) if requested.is_some() => Err(anyhow!(
            "sandbox mode {} cannot be enforced here: {reason}",
            mode.name()
        )),
        Err(reason) => {
            sandbox::install(None);
            Ok(Some(format!(
                "commands run without orch's sandbox (sandbox: off): it cannot be set up here ({reason}); set \"sandbox\": {{\"mode\": \"off\"}} to silence this"
            )))
        }
    }
}

impl Cli {
    /// What the flags say about the configuration.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            provider: self.provider.clone(),
            model: self.model.clone(),
            script: self.script.as_ref().map(|path| absolute_from_cwd(path)),
            trust_project: self.trust_project,
        }
    }
}

fn absolute_from_cwd(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    std::env::current_dir()
        .map(|cwd| cwd.join(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

/// The first Ctrl-C cancels cleanly; a second one exits at once.
/// The signal that interrupted this command (0: none yet).
static INTERRUPTED_BY: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// The exit code of an interrupted command: 130 for Ctrl-C (SIGINT), 143
/// for SIGTERM (a CI cancel), 129 for SIGHUP (a closed terminal).
pub fn interrupted_code() -> u8 {
    match INTERRUPTED_BY.load(std::sync::atomic::Ordering::SeqCst) {
        libc::SIGTERM => exit::TERMINATED,
        libc::SIGHUP => exit::HUNG_UP,
        _ => exit::INTERRUPTED,
    }
}

/// The command's interrupt handler: the first Ctrl-C, SIGTERM or SIGHUP
/// cancels the returned token (a clean stop: state persisted, processes
/// killed), a second one of any of them forces the exit. Nothing on this
/// path depends on the terminal: after a hang-up every write to it fails,
/// and a failed write is ignored. The handle owns the listener; dropping it
/// (with the `Project`) stops listening.
fn cancel_on_signals() -> (CancellationToken, AbortOnDropHandle<()>) {
    use tokio::signal::unix::{SignalKind, signal};
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    let listener = tokio::spawn(async move {
        let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return;
        };
        let next = async |int: &mut tokio::signal::unix::Signal,
                          term: &mut tokio::signal::unix::Signal,
                          hup: &mut tokio::signal::unix::Signal| {
            tokio::select! {
                _ = int.recv() => libc::SIGINT,
                _ = term.recv() => libc::SIGTERM,
                _ = hup.recv() => libc::SIGHUP,
            }
        };
        let first = next(&mut int, &mut term, &mut hup).await;
        INTERRUPTED_BY.store(first, std::sync::atomic::Ordering::SeqCst);
        let _ = writeln!(std::io::stderr(), "\ncancelling… (Ctrl-C again to force)");
        token.cancel();
        next(&mut int, &mut term, &mut hup).await;
        crate::process::kill_every_group();
        std::process::exit(i32::from(interrupted_code()));
    });
    (cancel, AbortOnDropHandle::new(listener))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::provider::Usage;

    #[test]
    fn cache_prices_in_orch_json_reach_the_cost() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join(".opencode/orch.json");
        std::fs::create_dir_all(project.parent().unwrap()).unwrap();
        let load = |pricing: &str| {
            std::fs::write(&project, format!(r#"{{"pricing": {pricing}}}"#)).unwrap();
            let trusted = Overrides {
                trust_project: true,
                ..Overrides::default()
            };
            let config = config::load_from(None, &project, &BTreeMap::new(), &trusted).unwrap();
            prices(&config)
        };
        // 1M prompt tokens: 0.1M plain, 0.6M read from the cache, 0.3M
        // written to it; 0.1M output.
        let usage = Usage {
            input: 1_000_000,
            output: 100_000,
            cached_input: 600_000,
            cache_write: 300_000,
            reasoning: 0,
        };
        let cost = |prices: Prices| usage.cost(&prices.get("claude-sonnet-4-5").unwrap());
        let about = |cost: f64, expected: f64| assert!((cost - expected).abs() < 1e-9, "{cost}");
        // The built-in list price: $3 input, $0.30 a cache read, $3.75 a
        // cache write, $15 output.
        about(cost(load("{}")), 0.3 + 0.18 + 1.125 + 1.5);
        about(
            cost(load(
                r#"{"claude-sonnet*": {"input": 4, "output": 20, "cached_input": 0.5, "cache_write": 6}}"#,
            )),
            0.4 + 0.3 + 1.8 + 2.0,
        );
        // Without cache prices, cache reads and writes cost what input does.
        about(
            cost(load(r#"{"claude-sonnet*": {"input": 4, "output": 20}}"#)),
            4.0 + 2.0,
        );
    }
}

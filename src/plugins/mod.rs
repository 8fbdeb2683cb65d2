//! The wasm plugin host (DESIGN §7): loads `.wasm` components that speak the
//! WIT contract `orch:plugin@0.1.0`, runs each call in a fresh `Store` under
//! a wall-clock deadline (epoch interruption plus a tokio timeout), a memory
//! cap and output caps, with WASI denied by default, and offers what plugins
//! define as `Tool`s, hook answers (`hooks::Hooks`) and agents.
//!
//! Only this module names wasmtime; WIT-generated types stop here. A broken
//! plugin is skipped with a warning naming its file, and a plugin that
//! faults `max_faults` times is disabled for the run; the mission goes on.

mod bindings;
pub mod bundled;
mod engine;
pub mod net;
mod observe;
mod state;
mod watch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use wasmtime::Store;
use wasmtime::component::Linker;

use crate::config::{PluginGrant, PluginsConfig, ProjectAccess};
use crate::events::EventBus;
use crate::hooks::{self, Hooks};
use crate::memory::Memory;
use crate::provider::ToolSpec;
use crate::tools::{Tool, ToolContext, ToolOutput};
use bindings::{Decision, HookEvent, HookPoint, Manifest, PluginPre};
use state::{CallSetup, Services, StoreState, sanitize};

pub use engine::sha256_hex;
pub use observe::PluginObserver;
pub use watch::PluginWatcher;

/// Why a plugin could not be loaded or the host could not start.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin host: {0}")]
    Engine(String),
    #[error("plugin \"{file}\": {reason}")]
    Invalid { file: String, reason: String },
}

/// A plugin-defined agent, in the engine's words.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginAgent {
    pub name: String,
    pub description: String,
    pub prompt: String,
    pub tools: Vec<String>,
    /// The plugin file that defines it.
    pub plugin: String,
}

/// What a loaded plugin is and offers.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    pub file: String,
    pub path: PathBuf,
    pub sha256: String,
    pub name: String,
    pub version: String,
    pub description: String,
    pub tools: Vec<ToolSpec>,
    /// Hook points, by contract name (`pre-tool-use`).
    pub hooks: Vec<String>,
    pub agents: Vec<PluginAgent>,
    pub capabilities: Vec<String>,
    /// The project access granted (a grant whose hash matches).
    pub project: Option<ProjectAccess>,
    /// The hosts it may fetch from, as granted.
    pub fetch: Vec<String>,
    /// Loaded from the compiled-code cache rather than compiled.
    pub cached: bool,
}

/// One loaded plugin: its pre-instantiated component and its fault count.
struct Loaded {
    info: PluginInfo,
    pre: PluginPre<StoreState>,
    hooks: Vec<HookPoint>,
    setup: CallSetup,
    faults: AtomicU32,
    disabled: AtomicBool,
    /// Hook calls of one plugin run one at a time, so a hook's
    /// read-modify-write of its key-value store is never interleaved with
    /// another session's (tool calls stay concurrent).
    hook_turn: tokio::sync::Mutex<()>,
}

/// Limits taken from `PluginsConfig`, validated once.
#[derive(Debug, Clone)]
struct Limits {
    hook_deadline: Duration,
    tool_deadline: Duration,
    max_output: usize,
    max_faults: u32,
}

/// The plugin host of one run. Cheap to clone.
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<Inner>,
}

struct Inner {
    engine: &'static wasmtime::Engine,
    linker: Linker<StoreState>,
    services: Arc<Services>,
    config: PluginsConfig,
    limits: Limits,
    cache_dir: Option<PathBuf>,
    /// Keyed by file name; replaced whole on (re)load, so a call in flight
    /// finishes on the version it started with.
    plugins: RwLock<BTreeMap<String, Arc<Loaded>>>,
}

/// A call's outcome that is the plugin's fault.
#[derive(Debug)]
struct Fault(String);

impl PluginHost {
    /// A host for the project at `root`; compiled code is cached under
    /// `root/.opencode/cache/plugins/`.
    pub fn new(
        root: &Path,
        config: &PluginsConfig,
        events: Arc<EventBus>,
        memory: Option<Arc<Memory>>,
    ) -> Result<PluginHost, PluginError> {
        let engine = engine::engine()?;
        let linker = engine::linker(engine)?;
        Ok(PluginHost {
            inner: Arc::new(Inner {
                engine,
                linker,
                services: Arc::new(Services::new(
                    root.to_path_buf(),
                    events,
                    memory,
                    net::Fetcher::new(
                        config.fetch_max_bytes,
                        Duration::from_millis(config.fetch_timeout_ms.max(1)),
                    ),
                )),
                limits: Limits {
                    hook_deadline: Duration::from_millis(config.hook_timeout_ms.max(1)),
                    tool_deadline: Duration::from_millis(config.tool_timeout_ms.max(1)),
                    max_output: config.max_output_bytes.max(1024),
                    max_faults: config.max_faults.max(1),
                },
                config: config.clone(),
                cache_dir: Some(engine::cache_dir(root)),
                plugins: RwLock::default(),
            }),
        })
    }

    /// The folders plugins load from: `.opencode/plugins/` of the project,
    /// then the user-level `~/.config/orch/plugins/` (when enabled).
    pub fn dirs(root: &Path, config: &PluginsConfig) -> Vec<PathBuf> {
        let mut dirs = vec![root.join(".opencode").join("plugins")];
        if config.user_dir
            && let Some(dir) = dirs::config_dir()
        {
            dirs.push(dir.join("orch").join("plugins"));
        }
        dirs
    }

    /// Load every `*.wasm` in `dirs` (sorted by name; a project plugin wins
    /// over a user one with the same file name). Returns one message per
    /// plugin that was skipped, naming it and why.
    pub async fn load_dirs(&self, dirs: &[PathBuf]) -> Vec<String> {
        let mut problems = Vec::new();
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut paths: Vec<PathBuf> = entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| path.extension().is_some_and(|ext| ext == "wasm"))
                .collect();
            paths.sort();
            for path in paths {
                let file = engine::file_name(&path);
                if self.read().contains_key(&file) {
                    continue;
                }
                if let Err(err) = self.load(&path).await {
                    problems.push(format!("{err}; skipped"));
                }
            }
        }
        problems
    }

    /// `load_dirs` from synchronous code (the CLI's wiring): runs the loads
    /// on a scoped thread with its own small runtime, so it works inside or
    /// outside an async context.
    pub fn load_dirs_blocking(&self, dirs: &[PathBuf]) -> Vec<String> {
        std::thread::scope(|scope| {
            let loading = scope.spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|err| {
                        format!("plugin host: cannot start a runtime to load plugins: {err}")
                    })?;
                Ok::<_, String>(runtime.block_on(self.load_dirs(dirs)))
            });
            match loading.join() {
                Ok(Ok(problems)) => problems,
                Ok(Err(problem)) => vec![problem],
                Err(_) => vec!["plugin host: loading plugins failed unexpectedly".to_string()],
            }
        })
    }

    /// Whether any `*.wasm` file exists in `dirs` (no engine is started
    /// for a project without plugins).
    pub fn any_in(dirs: &[PathBuf]) -> bool {
        dirs.iter().any(|dir| {
            std::fs::read_dir(dir).is_ok_and(|entries| {
                entries
                    .filter_map(Result::ok)
                    .any(|entry| entry.path().extension().is_some_and(|ext| ext == "wasm"))
            })
        })
    }

    /// Load (or replace) one plugin file. On failure an already loaded
    /// version of the same file stays active.
    pub async fn load(&self, path: &Path) -> Result<PluginInfo, PluginError> {
        let file = engine::file_name(path);
        let compiled = engine::compile(
            self.inner.engine,
            &self.inner.linker,
            path,
            self.inner.cache_dir.as_deref(),
        )
        .await?;
        let grant = self.grant(&file, &compiled.sha256);
        let project = grant.as_ref().and_then(|grant| grant.project);
        let memory_mib = grant.as_ref().and_then(|grant| grant.memory_mib);
        let fetch = grant.map(|grant| grant.fetch).unwrap_or_default();
        let setup = CallSetup {
            memory_bytes: (memory_mib.unwrap_or(self.inner.config.memory_mib).max(1) as usize)
                << 20,
            stdio_bytes: self.inner.config.max_stdio_bytes,
            project,
            // Entries were checked when the configuration loaded.
            fetch: fetch
                .iter()
                .filter_map(|entry| net::HostPattern::parse(entry).ok())
                .collect(),
        };
        let manifest =
            self.manifest(&file, &compiled.pre, &setup)
                .await
                .map_err(|Fault(reason)| PluginError::Invalid {
                    file: file.clone(),
                    reason,
                })?;
        let info = validate(&file, path, &compiled.sha256, manifest.clone(), project).map_err(
            |reason| PluginError::Invalid {
                file: file.clone(),
                reason,
            },
        )?;
        let info = PluginInfo {
            cached: compiled.cached,
            fetch,
            ..info
        };
        let loaded = Arc::new(Loaded {
            info: info.clone(),
            pre: compiled.pre,
            hooks: manifest.hooks,
            setup,
            faults: AtomicU32::new(0),
            disabled: AtomicBool::new(false),
            hook_turn: tokio::sync::Mutex::new(()),
        });
        self.inner
            .plugins
            .write()
            .expect("plugins lock")
            .insert(file, loaded);
        Ok(info)
    }

    /// Give plugins the run's memory (`memory-recall`, `memory-remember`);
    /// the first one attached stays.
    pub fn attach_memory(&self, memory: Arc<Memory>) {
        let _ = self.inner.services.memory.set(memory);
    }

    /// Forget a plugin (its file was deleted). Calls in flight finish.
    pub fn unload(&self, file: &str) -> bool {
        self.inner
            .plugins
            .write()
            .expect("plugins lock")
            .remove(file)
            .is_some()
    }

    /// The loaded plugins, by file name.
    pub fn plugins(&self) -> Vec<PluginInfo> {
        self.read().values().map(|p| p.info.clone()).collect()
    }

    /// Whether an active plugin subscribes to hook point `point` (contract name).
    pub fn listens(&self, point: &str) -> bool {
        let Some(point) = bindings::hook_point(point) else {
            return false;
        };
        self.read()
            .values()
            .any(|p| p.hooks.contains(&point) && !p.disabled.load(Ordering::Relaxed))
    }

    /// Whether a plugin was disabled after too many faults.
    pub fn is_disabled(&self, file: &str) -> bool {
        self.read()
            .get(file)
            .is_some_and(|p| p.disabled.load(Ordering::Relaxed))
    }

    /// Metrics plugins recorded (`plugin/name` → sum).
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        self.inner.services.metrics()
    }

    /// A `Tool` for each plugin tool. A name that clashes with `taken` (the
    /// built-in tools) or with an earlier plugin's tool is refused with a
    /// message naming both.
    pub fn tools(&self, taken: &[String]) -> (Vec<Arc<dyn Tool>>, Vec<String>) {
        let mut tools: Vec<Arc<dyn Tool>> = Vec::new();
        let mut problems = Vec::new();
        let mut owners: BTreeMap<String, String> = BTreeMap::new();
        for plugin in self.read().values() {
            for spec in &plugin.info.tools {
                if taken.contains(&spec.name) {
                    problems.push(format!(
                        "plugin \"{}\": tool \"{}\" clashes with the built-in tool of that name; not registered",
                        plugin.info.file, spec.name
                    ));
                } else if let Some(owner) = owners.get(&spec.name) {
                    problems.push(format!(
                        "plugin \"{}\": tool \"{}\" is already defined by plugin \"{owner}\"; not registered",
                        plugin.info.file, spec.name
                    ));
                } else {
                    owners.insert(spec.name.clone(), plugin.info.file.clone());
                    tools.push(Arc::new(PluginTool {
                        host: self.clone(),
                        file: plugin.info.file.clone(),
                        spec: spec.clone(),
                    }));
                }
            }
        }
        (tools, problems)
    }

    /// The agents plugins define.
    pub fn agents(&self) -> Vec<PluginAgent> {
        self.read()
            .values()
            .flat_map(|p| p.info.agents.clone())
            .collect()
    }

    /// Run plugin `file`'s tool `name` in a fresh instance. `Err` is a tool
    /// error for the model (the plugin's own, or its fault).
    pub async fn call_tool(
        &self,
        file: &str,
        name: &str,
        args_json: &str,
    ) -> Result<String, String> {
        let Some(plugin) = self.active(file) else {
            return Err(format!("plugin \"{file}\" is not loaded or is disabled"));
        };
        let deadline = self.inner.limits.tool_deadline;
        let result = self
            .run(&plugin, deadline, async |guest, store| {
                guest.call_call_tool(store, name, args_json).await
            })
            .await;
        match result {
            Ok(Ok(text)) => Ok(self.cap(text)),
            Ok(Err(message)) => Err(self.cap(message)),
            Err(Fault(reason)) => {
                let message = format!("plugin \"{file}\": tool {name}: {reason}");
                self.fault(&plugin, &message);
                Err(message)
            }
        }
    }

    /// Ask every plugin subscribed to `point` (by contract name), in file
    /// order. The first `block` wins; `modify`s chain: the fields a plugin
    /// returns replace those of the payload, so the next plugin sees the
    /// whole payload with the change (`session`, `call`, `tool` stay). A
    /// fault counts as `continue`.
    pub async fn hook(&self, point: &str, payload: Value) -> hooks::Decision {
        let Some(point) = bindings::hook_point(point) else {
            return hooks::Decision::Continue;
        };
        let plugins: Vec<Arc<Loaded>> = self
            .read()
            .values()
            .filter(|p| p.hooks.contains(&point) && !p.disabled.load(Ordering::Relaxed))
            .cloned()
            .collect();
        let mut current = payload;
        let mut modified = false;
        for plugin in plugins {
            match self.hook_one(&plugin, point, &current).await {
                Ok(hooks::Decision::Continue) => {}
                Ok(hooks::Decision::Modify(value)) => {
                    match (&mut current, value) {
                        (Value::Object(fields), Value::Object(changed)) => fields.extend(changed),
                        (current, value) => *current = value,
                    }
                    modified = true;
                }
                Ok(block @ hooks::Decision::Block(_)) => return block,
                Err(Fault(reason)) => {
                    let message = format!(
                        "plugin \"{}\": hook {}: {reason}",
                        plugin.info.file,
                        bindings::hook_name(point)
                    );
                    self.fault(&plugin, &message);
                }
            }
        }
        if modified {
            hooks::Decision::Modify(current)
        } else {
            hooks::Decision::Continue
        }
    }

    async fn hook_one(
        &self,
        plugin: &Loaded,
        point: HookPoint,
        payload: &Value,
    ) -> Result<hooks::Decision, Fault> {
        let event = HookEvent {
            point,
            payload: payload.to_string(),
        };
        let deadline = self.inner.limits.hook_deadline;
        let _turn = plugin.hook_turn.lock().await;
        let answer = self
            .run(plugin, deadline, async |guest, store| {
                guest.call_on_hook(store, &event).await
            })
            .await?;
        match answer {
            Err(message) => Err(Fault(format!(
                "returned an error: {}",
                sanitize(&message, 500)
            ))),
            Ok(Decision::Continue) => Ok(hooks::Decision::Continue),
            Ok(Decision::Block(reason)) => Ok(hooks::Decision::Block(sanitize(&reason, 2_000))),
            Ok(Decision::Modify(json)) => {
                if json.len() > self.inner.limits.max_output.max(payload_size(payload) * 2) {
                    return Err(Fault(format!(
                        "modify answer of {} bytes is over the output cap",
                        json.len()
                    )));
                }
                serde_json::from_str(&json)
                    .map(hooks::Decision::Modify)
                    .map_err(|err| Fault(format!("modify answer is not valid JSON: {err}")))
            }
        }
    }

    /// Instantiate `plugin` in a fresh store and run `call` under `deadline`.
    async fn run<R>(
        &self,
        plugin: &Loaded,
        deadline: Duration,
        call: impl AsyncFnOnce(
            &bindings::exports::orch::plugin::guest::Guest,
            &mut Store<StoreState>,
        ) -> wasmtime::Result<R>,
    ) -> Result<R, Fault> {
        let name: Arc<str> = plugin.info.name.as_str().into();
        run_in_store(
            self.inner.engine,
            &plugin.pre,
            &plugin.info.file,
            name,
            self.inner.services.clone(),
            &plugin.setup,
            deadline,
            call,
        )
        .await
    }

    async fn manifest(
        &self,
        file: &str,
        pre: &PluginPre<StoreState>,
        setup: &CallSetup,
    ) -> Result<Manifest, Fault> {
        run_in_store(
            self.inner.engine,
            pre,
            file,
            Arc::from(""),
            self.inner.services.clone(),
            setup,
            // Once per load, off the hot path: the generous tool deadline,
            // so a busy machine does not turn a slow start into a refusal.
            self.inner.limits.tool_deadline,
            async |guest, store| guest.call_manifest(store).await,
        )
        .await
    }

    fn fault(&self, plugin: &Loaded, message: &str) {
        self.inner.services.warn(message.to_string());
        let faults = plugin.faults.fetch_add(1, Ordering::Relaxed) + 1;
        if faults >= self.inner.limits.max_faults && !plugin.disabled.swap(true, Ordering::Relaxed)
        {
            self.inner.services.warn(format!(
                "plugin \"{}\" is disabled for the rest of this run after {faults} faults",
                plugin.info.file
            ));
        }
    }

    fn cap(&self, mut text: String) -> String {
        let max = self.inner.limits.max_output;
        if text.len() <= max {
            return text;
        }
        let total = text.len();
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(&format!(
            "\n[output truncated: {} of {total} bytes dropped by the plugin output cap]",
            total - cut
        ));
        text
    }

    fn active(&self, file: &str) -> Option<Arc<Loaded>> {
        self.read()
            .get(file)
            .filter(|p| !p.disabled.load(Ordering::Relaxed))
            .cloned()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Loaded>>> {
        self.inner.plugins.read().expect("plugins lock")
    }

    /// The grant for `file` if its hash matches, else none (with a warning
    /// when a grant exists for another hash).
    fn grant(&self, file: &str, sha256: &str) -> Option<PluginGrant> {
        let grant = self.inner.config.grants.get(file)?;
        if !grant.sha256.eq_ignore_ascii_case(sha256) {
            self.inner.services.warn(format!(
                "plugin \"{file}\": its grant in orch.json is for sha256 {}, but the file's is {sha256}; nothing is granted",
                grant.sha256
            ));
            return None;
        }
        Some(grant.clone())
    }
}

fn payload_size(payload: &Value) -> usize {
    match payload {
        Value::Null => 0,
        other => other.to_string().len(),
    }
}

/// One call in one fresh `Store`, owned by the calling task until it ends.
#[allow(clippy::too_many_arguments)]
async fn run_in_store<R>(
    engine: &'static wasmtime::Engine,
    pre: &PluginPre<StoreState>,
    file: &str,
    name: Arc<str>,
    services: Arc<Services>,
    setup: &CallSetup,
    deadline: Duration,
    call: impl AsyncFnOnce(
        &bindings::exports::orch::plugin::guest::Guest,
        &mut Store<StoreState>,
    ) -> wasmtime::Result<R>,
) -> Result<R, Fault> {
    let state = StoreState::new(Arc::from(file), name, services, setup).map_err(|err| {
        Fault(format!(
            "cannot set up its sandbox: {}",
            engine::chain(&err)
        ))
    })?;
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limits);
    store.set_hostcall_fuel(16 << 20);
    store.set_epoch_deadline(ticks(deadline));
    store.epoch_deadline_trap();
    // Epochs stop guest code; the timeout also stops a call stuck in a host
    // import, which epochs cannot interrupt.
    let work = async {
        let plugin = pre.instantiate_async(&mut store).await?;
        call(plugin.orch_plugin_guest(), &mut store).await
    };
    let result = tokio::time::timeout(deadline + Duration::from_millis(500), work).await;
    store.data().drain_stdio();
    match result {
        Err(_) => Err(Fault(format!(
            "did not finish within its {} ms deadline",
            deadline.as_millis()
        ))),
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(Fault(describe_trap(&err, deadline, setup))),
    }
}

/// A warm instance of one plugin: one `Store`, owned by whoever holds this
/// (one task), for callers that make many calls in a row (benchmarks, a
/// hot hook). Every call gets a fresh deadline; after a fault the instance
/// is poisoned and should be dropped.
pub struct PluginInstance {
    store: Store<StoreState>,
    plugin: bindings::Plugin,
    deadline: Duration,
}

impl PluginHost {
    /// Instantiate plugin `file` once, for repeated calls.
    pub async fn instance(&self, file: &str) -> Result<PluginInstance, String> {
        let plugin = self
            .active(file)
            .ok_or_else(|| format!("plugin \"{file}\" is not loaded or is disabled"))?;
        let state = StoreState::new(
            Arc::from(file),
            plugin.info.name.as_str().into(),
            self.inner.services.clone(),
            &plugin.setup,
        )
        .map_err(|err| engine::chain(&err))?;
        let mut store = Store::new(self.inner.engine, state);
        store.limiter(|state| &mut state.limits);
        store.set_hostcall_fuel(16 << 20);
        store.epoch_deadline_trap();
        let deadline = self.inner.limits.hook_deadline;
        store.set_epoch_deadline(ticks(deadline));
        let instance = plugin
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|err| engine::chain(&err))?;
        Ok(PluginInstance {
            store,
            plugin: instance,
            deadline,
        })
    }
}

impl PluginInstance {
    /// Call `on-hook` at `point` (contract name) with a JSON payload text;
    /// returns the decision as `continue`, `modify:<json>` or `block:<reason>`.
    pub async fn on_hook(&mut self, point: &str, payload: &str) -> Result<String, String> {
        let point =
            bindings::hook_point(point).ok_or_else(|| format!("unknown hook point {point}"))?;
        self.store.set_epoch_deadline(ticks(self.deadline));
        let event = HookEvent {
            point,
            payload: payload.to_string(),
        };
        let answer = self
            .plugin
            .orch_plugin_guest()
            .call_on_hook(&mut self.store, &event)
            .await
            .map_err(|err| engine::chain(&err))?;
        Ok(match answer? {
            Decision::Continue => "continue".to_string(),
            Decision::Modify(json) => format!("modify:{json}"),
            Decision::Block(reason) => format!("block:{reason}"),
        })
    }

    /// Call `call-tool` once in this instance.
    pub async fn call_tool(&mut self, name: &str, args_json: &str) -> Result<String, String> {
        self.store.set_epoch_deadline(ticks(self.deadline));
        self.plugin
            .orch_plugin_guest()
            .call_call_tool(&mut self.store, name, args_json)
            .await
            .map_err(|err| engine::chain(&err))?
    }
}

/// Epoch ticks for a deadline (one more, so a deadline is never cut short).
fn ticks(deadline: Duration) -> u64 {
    (deadline.as_millis() / engine::EPOCH_TICK.as_millis()) as u64 + 1
}

/// Why a call failed, in words.
fn describe_trap(err: &wasmtime::Error, deadline: Duration, setup: &CallSetup) -> String {
    if let Some(trap) = err.downcast_ref::<wasmtime::Trap>() {
        match trap {
            wasmtime::Trap::Interrupt => {
                return format!("stopped at its {} ms deadline", deadline.as_millis());
            }
            wasmtime::Trap::UnreachableCodeReached => {
                return format!("crashed (panic or out of memory): {}", engine::chain(err));
            }
            _ => {}
        }
    }
    let text = engine::chain(err);
    if text.contains("forcing trap when growing memory") {
        return format!(
            "exceeded its memory cap of {} MiB",
            setup.memory_bytes >> 20
        );
    }
    format!("trapped: {text}")
}

/// Check a manifest and turn it into engine words.
fn validate(
    file: &str,
    path: &Path,
    sha256: &str,
    manifest: Manifest,
    project: Option<ProjectAccess>,
) -> Result<PluginInfo, String> {
    let valid_name = |name: &str| {
        !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if !valid_name(&manifest.name) {
        return Err(format!(
            "manifest name {:?} is not 1-64 letters, digits, '-' or '_'",
            manifest.name
        ));
    }
    let mut tools = Vec::new();
    for tool in manifest.tools {
        if !valid_name(&tool.name) {
            return Err(format!(
                "tool name {:?} is not 1-64 letters, digits, '-' or '_'",
                tool.name
            ));
        }
        let parameters: Value = serde_json::from_str(&tool.parameters).map_err(|err| {
            format!(
                "tool {}: parameters are not a JSON Schema: {err}",
                tool.name
            )
        })?;
        if !parameters.is_object() {
            return Err(format!(
                "tool {}: parameters must be a JSON Schema object",
                tool.name
            ));
        }
        tools.push(ToolSpec {
            name: tool.name,
            description: tool.description,
            parameters,
        });
    }
    let agents = manifest
        .agents
        .into_iter()
        .map(|agent| {
            if valid_name(&agent.name) {
                Ok(PluginAgent {
                    name: agent.name,
                    description: agent.description,
                    prompt: agent.prompt,
                    tools: agent.tools,
                    plugin: file.to_string(),
                })
            } else {
                Err(format!("agent name {:?} is not valid", agent.name))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PluginInfo {
        file: file.to_string(),
        path: path.to_path_buf(),
        sha256: sha256.to_string(),
        name: manifest.name,
        version: manifest.version,
        description: manifest.description,
        tools,
        hooks: manifest
            .hooks
            .iter()
            .map(|point| bindings::hook_name(*point).to_string())
            .collect(),
        agents,
        capabilities: manifest.capabilities,
        project,
        fetch: Vec::new(),
        cached: false,
    })
}

/// A plugin's tool, as agents see it. Each call looks the plugin up again,
/// so a reload takes effect between calls.
struct PluginTool {
    host: PluginHost,
    file: String,
    spec: ToolSpec,
}

#[async_trait]
impl Tool for PluginTool {
    fn spec(&self) -> ToolSpec {
        self.spec.clone()
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> ToolOutput {
        let args = args.to_string();
        let call = self.host.call_tool(&self.file, &self.spec.name, &args);
        tokio::select! {
            result = call => match result {
                Ok(text) => ToolOutput::ok(text),
                Err(message) => ToolOutput::error(message),
            },
            () = ctx.cancel.cancelled() => ToolOutput::error("cancelled"),
        }
    }
}

#[async_trait]
impl Hooks for PluginHost {
    fn wants(&self, point: hooks::HookPoint) -> bool {
        self.listens(point.name())
    }

    async fn call(&self, point: hooks::HookPoint, payload: Value) -> hooks::Decision {
        self.hook(point.name(), payload).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bindings::orch::plugin::types::{AgentSpec, ToolSpec as WitToolSpec};

    fn manifest(name: &str, tool: &str, parameters: &str) -> Manifest {
        Manifest {
            name: name.into(),
            version: "1".into(),
            description: String::new(),
            tools: vec![WitToolSpec {
                name: tool.into(),
                description: "d".into(),
                parameters: parameters.into(),
            }],
            hooks: vec![HookPoint::PreCompact],
            agents: vec![AgentSpec {
                name: "Helper".into(),
                description: "h".into(),
                prompt: "p".into(),
                tools: vec!["read".into()],
            }],
            capabilities: Vec::new(),
        }
    }

    fn check(manifest: Manifest) -> Result<PluginInfo, String> {
        validate("p.wasm", Path::new("p.wasm"), "ab", manifest, None)
    }

    #[test]
    fn a_valid_manifest_becomes_engine_words() {
        let info = check(manifest("notes", "note_add", r#"{"type":"object"}"#)).unwrap();
        assert_eq!(info.tools[0].parameters["type"], "object");
        assert_eq!(info.hooks, ["pre-compact"]);
        assert_eq!(info.agents[0].plugin, "p.wasm");
    }

    #[test]
    fn bad_names_and_schemas_are_refused_with_the_reason() {
        let cases = [
            (
                manifest("", "t", "{}"),
                "manifest name \"\" is not 1-64 letters, digits, '-' or '_'",
            ),
            (
                manifest("a b", "t", "{}"),
                "manifest name \"a b\" is not 1-64 letters, digits, '-' or '_'",
            ),
            (
                manifest("ok", "t/x", "{}"),
                "tool name \"t/x\" is not 1-64 letters, digits, '-' or '_'",
            ),
            (
                manifest("ok", "t", "[]"),
                "tool t: parameters must be a JSON Schema object",
            ),
        ];
        for (manifest, expected) in cases {
            assert_eq!(check(manifest).unwrap_err(), expected);
        }
        let err = check(manifest("ok", "t", "{nope")).unwrap_err();
        assert!(
            err.starts_with("tool t: parameters are not a JSON Schema:"),
            "{err}"
        );
    }

    #[test]
    fn hook_point_names_round_trip() {
        for name in [
            "mission-start",
            "mission-end",
            "iteration",
            "session-start",
            "session-end",
            "pre-tool-use",
            "post-tool-use",
            "pre-model-request",
            "post-model-response",
            "todo-updated",
            "pre-compact",
        ] {
            let point = bindings::hook_point(name).unwrap();
            assert_eq!(bindings::hook_name(point), name);
        }
        assert!(bindings::hook_point("pre-everything").is_none());
        for point in [
            hooks::HookPoint::PreModelRequest,
            hooks::HookPoint::PreCompact,
            hooks::HookPoint::PreToolUse,
            hooks::HookPoint::PostToolUse,
        ] {
            assert!(bindings::hook_point(point.name()).is_some());
        }
    }

    #[test]
    fn plugin_text_is_stripped_of_escapes_and_capped() {
        assert_eq!(sanitize("a\u{1b}[31mred\u{7}\nnext", 100), "a[31mred\nnext");
        assert_eq!(sanitize("abcdef", 3), "abc…");
    }
}

//! The wasm plugin host (DESIGN §7): loads `.wasm` components that speak the
//! WIT contract `orch:plugin@0.1.1` (and 0.1.0), runs each call in a fresh `Store` under
//! a wall-clock deadline (epoch interruption plus a tokio timeout), a memory
//! cap and output caps, with WASI denied by default, and offers what plugins
//! define as `Tool`s, hook answers (`hooks::Hooks`) and agents.
//!
//! Only this module names wasmtime; WIT-generated types stop here. A broken
//! plugin is skipped with a warning naming its file, and a plugin that
//! faults `max_faults` times is disabled for the run; the mission goes on.
//!
//! This file is the host's registry (loading, grants, faults); `call.rs`
//! runs plugin code, `tool.rs` offers plugin tools, `hook.rs` asks hook
//! points, `manifest.rs` checks manifests.

mod bindings;
pub mod bundled;
mod cache;
mod call;
mod engine;
mod hook;
mod manifest;
pub mod net;
mod observe;
mod state;
mod tool;
mod watch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use wasmtime::component::Linker;

use crate::config::{PluginGrant, PluginsConfig, ProjectAccess};
use crate::events::EventBus;
use crate::memory::Memory;
use crate::provider::ToolSpec;
use crate::tools::live::LiveTools;
use bindings::{HookPoint, PluginPre};
use state::{CallSetup, Services, StoreState};

pub use crate::files::sha256_hex;
pub use cache::CodeCache;
pub use call::PluginInstance;
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
    /// Granted its own data folder.
    pub data: bool,
    /// The hosts it may fetch from, as granted.
    pub fetch: Vec<String>,
    /// The contract version it was built for (`0.1.0`, `0.1.1`).
    pub contract: String,
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
    /// This user's compiled-code cache (none: compiled on every start).
    cache: Option<CodeCache>,
    /// Keyed by file name; replaced whole on (re)load, so a call in flight
    /// finishes on the version it started with.
    plugins: RwLock<BTreeMap<String, Arc<Loaded>>>,
    /// Where the plugins' tools are offered, with the names they may not
    /// take (the engine's own tools), once the engine's runtime exists.
    live: std::sync::OnceLock<(Arc<LiveTools>, Vec<String>)>,
}

/// A call's outcome that is the plugin's fault.
#[derive(Debug)]
struct Fault(String);

impl PluginHost {
    /// A host for the project at `root`; compiled code is cached in the
    /// user's cache directory (`cache::CodeCache`).
    pub fn new(
        root: &Path,
        config: &PluginsConfig,
        events: Arc<EventBus>,
        memory: Option<Arc<Memory>>,
    ) -> Result<PluginHost, PluginError> {
        let cache = match CodeCache::of_user() {
            Ok(cache) => Some(cache),
            Err(reason) => {
                events.emit(crate::events::Event::Warning {
                    session: None,
                    message: format!(
                        "compiled plugins are not cached: {reason}; each start compiles them again"
                    ),
                });
                None
            }
        };
        PluginHost::with_cache(root, config, events, memory, cache)
    }

    /// [`new`](Self::new) with the compiled-code cache given (tests use a
    /// temporary one).
    pub fn with_cache(
        root: &Path,
        config: &PluginsConfig,
        events: Arc<EventBus>,
        memory: Option<Arc<Memory>>,
        cache: Option<CodeCache>,
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
                cache,
                plugins: RwLock::default(),
                live: std::sync::OnceLock::new(),
            }),
        })
    }

    /// The folders plugins load from: `.opencode/plugins/` of the project
    /// (when the project is trusted), then the user-level
    /// `~/.config/orch/plugins/` (when enabled).
    pub fn dirs(root: &Path, config: &PluginsConfig, project_trusted: bool) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        if project_trusted {
            dirs.push(root.join(".opencode").join("plugins"));
        }
        if config.user_dir
            && let Some(dir) = dirs::config_dir()
        {
            dirs.push(dir.join("orch").join("plugins"));
        }
        dirs
    }

    /// Load every `*.wasm` in `dirs` (sorted by name; a project plugin wins
    /// over a user one with the same file name). Each file is read once;
    /// all are compiled (or loaded from the cache) at once, saying so on
    /// stderr when several need compiling (the first start after an install
    /// or an upgrade), then activated in order. Returns one message per
    /// plugin that was skipped, naming it and why.
    pub async fn load_dirs(&self, dirs: &[PathBuf]) -> Vec<String> {
        let mut problems = Vec::new();
        let mut sources: Vec<(PathBuf, engine::Source)> = Vec::new();
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
                let taken = self.read().contains_key(&file)
                    || sources.iter().any(|(_, source)| source.file == file);
                if taken {
                    continue;
                }
                match engine::read(&path).await {
                    Ok(source) => sources.push((path, source)),
                    Err(err) => problems.push(format!("{err}; skipped")),
                }
            }
        }
        if let Some(cache) = &self.inner.cache {
            let missing: Vec<&str> = sources
                .iter()
                .filter(|(_, source)| {
                    !cache
                        .dir()
                        .join(source.cache_name(self.inner.engine))
                        .is_file()
                })
                .map(|(_, source)| source.file.as_str())
                .collect();
            if missing.len() > 1 {
                eprintln!(
                    "compiling {} plugins for this orch, once per user: {}",
                    missing.len(),
                    missing.join(", ")
                );
            }
        }
        let (paths, sources): (Vec<PathBuf>, Vec<engine::Source>) = sources.into_iter().unzip();
        let compiled =
            futures::future::join_all(sources.into_iter().map(|source| self.compile(source))).await;
        for (path, compiled) in paths.iter().zip(compiled) {
            if let Err(err) = async { self.activate(path, compiled?).await }.await {
                problems.push(format!("{err}; skipped"));
            }
        }
        problems
    }

    async fn compile(&self, source: engine::Source) -> Result<engine::Compiled, PluginError> {
        engine::compile(
            self.inner.engine,
            &self.inner.linker,
            source,
            self.inner.cache.as_ref(),
        )
        .await
    }

    /// `load_dirs` from synchronous code (the CLI's wiring): runs the loads
    /// on a scoped thread with its own small runtime, so it works inside or
    /// outside an async context. Inside a multi-threaded runtime the waiting
    /// worker is handed over first (`block_in_place`), so compiling plugins
    /// never holds an async worker.
    pub fn load_dirs_blocking(&self, dirs: &[PathBuf]) -> Vec<String> {
        let on_worker = tokio::runtime::Handle::try_current().is_ok_and(|handle| {
            handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
        });
        if on_worker {
            tokio::task::block_in_place(|| self.load_on_own_thread(dirs))
        } else {
            self.load_on_own_thread(dirs)
        }
    }

    fn load_on_own_thread(&self, dirs: &[PathBuf]) -> Vec<String> {
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
        let compiled = self.compile(engine::read(path).await?).await?;
        self.activate(path, compiled).await
    }

    /// Make compiled plugin code at `path` active: its grant, its manifest
    /// checked, its tools and hooks offered.
    async fn activate(
        &self,
        path: &Path,
        compiled: engine::Compiled,
    ) -> Result<PluginInfo, PluginError> {
        let file = engine::file_name(path);
        let grant = self.grant(&file, &compiled.sha256);
        let project = grant.as_ref().and_then(|grant| grant.project);
        let data = match grant.as_ref().filter(|grant| grant.keeps_data()) {
            Some(_) => {
                let dir = crate::config::plugin_data_dir(&self.inner.services.root, &file);
                std::fs::create_dir_all(&dir).map_err(|err| PluginError::Invalid {
                    file: file.clone(),
                    reason: format!("cannot create its data folder {}: {err}", dir.display()),
                })?;
                Some(dir)
            }
            None => None,
        };
        let memory_mib = grant.as_ref().and_then(|grant| grant.memory_mib);
        let reach = grant
            .as_ref()
            .map(|grant| self.reach(&file, grant))
            .unwrap_or_default();
        let plugin_config = grant
            .as_ref()
            .and_then(|grant| grant.config.as_ref())
            .map_or_else(|| "{}".to_string(), |config| config.to_string());
        let fetch = grant.map(|grant| grant.fetch).unwrap_or_default();
        let setup = CallSetup {
            memory_bytes: (memory_mib.unwrap_or(self.inner.config.memory_mib).max(1) as usize)
                << 20,
            stdio_bytes: self.inner.config.max_stdio_bytes,
            project,
            data,
            reach,
            config: plugin_config.into(),
        };
        let manifest =
            self.manifest(&file, &compiled.pre, &setup)
                .await
                .map_err(|Fault(reason)| PluginError::Invalid {
                    file: file.clone(),
                    reason,
                })?;
        let info = manifest::validate(&file, path, &compiled.sha256, manifest.clone(), project)
            .map_err(|reason| PluginError::Invalid {
                file: file.clone(),
                reason,
            })?;
        let info = PluginInfo {
            cached: compiled.cached,
            contract: compiled.contract,
            data: setup.data.is_some(),
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

    /// What the grant lets `file` reach: its allow list, and the headers
    /// injected for its hosts with `${VAR}` references read from the
    /// environment now. An unset variable is a warning naming the plugin
    /// and the variable, and that header is left out; values read are
    /// registered with the secrets redaction.
    fn reach(&self, file: &str, grant: &PluginGrant) -> net::Reach {
        // Entries were checked when the configuration loaded.
        let allow: Vec<crate::config::HostPattern> = grant
            .fetch
            .iter()
            .filter_map(|entry| crate::config::HostPattern::parse(entry).ok())
            .collect();
        let mut inject = Vec::new();
        for (host, headers) in &grant.headers {
            let Ok(pattern) = crate::config::HostPattern::parse(host) else {
                continue;
            };
            let mut entry = net::Injected {
                host: pattern,
                headers: Vec::new(),
                secrets: Vec::new(),
            };
            for (name, template) in headers {
                let Ok(value) = crate::config::HeaderValue::parse(template) else {
                    continue;
                };
                let mut read = Vec::new();
                let expanded = value.expand(|var| {
                    let found = std::env::var(var).ok().filter(|value| !value.is_empty());
                    read.extend(found.clone());
                    found
                });
                match expanded {
                    Ok(expanded) => {
                        entry.headers.push((name.clone(), expanded));
                        entry.secrets.extend(read);
                    }
                    Err(missing) => self.inner.services.warn(format!(
                        "plugin \"{file}\": the environment variable {} for its header {name} to {host} is not set; requests to {host} go without it",
                        missing.join(", ")
                    )),
                }
            }
            crate::secrets::register(entry.secrets.iter().cloned());
            inject.push(entry);
        }
        net::Reach {
            allow: allow.into(),
            inject: inject.into(),
        }
    }

    /// Give plugins the run's memory (`memory-recall`, `memory-remember`);
    /// the first one attached stays.
    pub fn attach_memory(&self, memory: Arc<Memory>) {
        let _ = self.inner.services.memory.set(memory);
    }

    /// Offer the plugins' tools in `live` (names in `taken` are the engine's
    /// own and refused), now and after every reload; the problems (clashes)
    /// come back. The first one attached stays.
    pub fn attach_live(&self, live: Arc<LiveTools>, taken: Vec<String>) -> Vec<String> {
        let _ = self.inner.live.set((live, taken));
        self.publish()
    }

    /// Offer the loaded plugins' tools as they are now (after a load or
    /// unload): a tool writes when its plugin holds a read-write grant.
    fn publish(&self) -> Vec<String> {
        let Some((live, taken)) = self.inner.live.get() else {
            return Vec::new();
        };
        let (tools, mut problems) = self.tools(taken);
        problems.extend(live.set_source("plugins", tools));
        problems
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

    /// The agents plugins define.
    pub fn agents(&self) -> Vec<PluginAgent> {
        self.read()
            .values()
            .flat_map(|p| p.info.agents.clone())
            .collect()
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

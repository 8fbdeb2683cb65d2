//! What one plugin call's `Store` holds (WASI context, limits, the plugin's
//! identity) and the host imports of the contract, answered from the
//! engine's parts shared by every call (`Services`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::{LogLevel, MemoryEntry, orch};
use super::net::{Fetcher, Outgoing, Reach};
use crate::config::ProjectAccess;
use crate::events::{Event, EventBus};
use crate::memory::{Memory, Tier};

/// Caps of the per-plugin key-value store.
const KV_MAX_KEY: usize = 256;
const KV_MAX_VALUE: usize = 64 * 1024;
const KV_MAX_KEYS: usize = 1024;

/// The engine's parts plugins may reach through host imports, shared by
/// every call of every plugin.
pub struct Services {
    pub root: PathBuf,
    pub events: Arc<EventBus>,
    /// The run's memory, once the engine's runtime exists.
    pub memory: std::sync::OnceLock<Arc<Memory>>,
    /// Per plugin name: its key-value store (kept for the run).
    kv: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
    /// Per `plugin/name`: the sum of recorded values.
    metrics: Mutex<BTreeMap<String, f64>>,
    /// Outbound HTTP for plugins granted hosts.
    pub fetcher: Fetcher,
}

impl Services {
    pub fn new(
        root: PathBuf,
        events: Arc<EventBus>,
        memory: Option<Arc<Memory>>,
        fetcher: Fetcher,
    ) -> Services {
        let cell = std::sync::OnceLock::new();
        if let Some(memory) = memory {
            let _ = cell.set(memory);
        }
        Services {
            root,
            events,
            memory: cell,
            kv: Mutex::default(),
            metrics: Mutex::default(),
            fetcher,
        }
    }

    /// The metrics plugins recorded, as `plugin/name` → sum.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        self.metrics.lock().expect("metrics lock").clone()
    }

    pub fn warn(&self, message: String) {
        self.events.emit(Event::Warning {
            session: None,
            message,
        });
    }
}

/// Limits and grants of one call.
#[derive(Clone)]
pub struct CallSetup {
    pub memory_bytes: usize,
    pub stdio_bytes: usize,
    pub project: Option<ProjectAccess>,
    /// The plugin's own folder, mounted read-write at `/data`.
    pub data: Option<std::path::PathBuf>,
    /// The hosts `fetch` may reach (empty: none) and the headers injected.
    pub reach: Reach,
    /// The grant's `config`, as JSON text (`{}` without one).
    pub config: Arc<str>,
}

/// What one store of a plugin may hold: its memories and tables together
/// within one byte cap (a plugin with two memories gets no more than one
/// with a single memory), and bounded counts of instances, tables and
/// memories. Growing past the cap traps the call.
#[derive(Debug)]
pub struct PluginLimits {
    cap: usize,
    used: usize,
    /// Set when a growth was refused, for the fault message.
    pub exceeded: bool,
}

/// What a table element is counted as against the cap.
const TABLE_ELEMENT_BYTES: usize = 16;

impl PluginLimits {
    pub fn new(cap: usize) -> PluginLimits {
        PluginLimits {
            cap,
            used: 0,
            exceeded: false,
        }
    }

    fn grow(&mut self, more: usize) -> wasmtime::Result<bool> {
        match self
            .used
            .checked_add(more)
            .filter(|total| *total <= self.cap)
        {
            Some(total) => {
                self.used = total;
                Ok(true)
            }
            None => {
                self.exceeded = true;
                Err(wasmtime::Error::msg(format!(
                    "the plugin's memories and tables would take more than its cap of {} MiB",
                    self.cap >> 20
                )))
            }
        }
    }
}

impl ResourceLimiter for PluginLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(desired.saturating_sub(current))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(
            desired
                .saturating_sub(current)
                .saturating_mul(TABLE_ELEMENT_BYTES),
        )
    }

    fn instances(&self) -> usize {
        1_000
    }

    fn tables(&self) -> usize {
        1_000
    }

    fn memories(&self) -> usize {
        100
    }
}

/// The data of one `Store`: one call (or one warm instance) of one plugin.
pub struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limits: PluginLimits,
    /// The plugin's file name, for messages.
    pub file: Arc<str>,
    /// The plugin's manifest name, the key of its key-value store (empty
    /// while the manifest is being read).
    pub name: Arc<str>,
    pub services: Arc<Services>,
    reach: Reach,
    config: Arc<str>,
    pub stdout: MemoryOutputPipe,
    pub stderr: MemoryOutputPipe,
}

impl StoreState {
    /// A deny-by-default WASI context: no env, args, stdin, sockets or
    /// preopens, unless the project is granted; stdout/stderr captured.
    pub fn new(
        file: Arc<str>,
        name: Arc<str>,
        services: Arc<Services>,
        setup: &CallSetup,
    ) -> wasmtime::Result<StoreState> {
        let stdout = MemoryOutputPipe::new(setup.stdio_bytes);
        let stderr = MemoryOutputPipe::new(setup.stdio_bytes);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdout.clone())
            .stderr(stderr.clone())
            .max_random_size(64 * 1024)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        // The project is read-only to every plugin; what a plugin keeps goes
        // in its own folder.
        if setup.project.is_some() {
            wasi.preopened_dir(&services.root, "/project", FsPerms::ReadOnly)?;
        }
        if let Some(data) = &setup.data {
            wasi.preopened_dir(data, "/data", FsPerms::ReadWrite)?;
        }
        let mut table = ResourceTable::new();
        table.set_max_capacity(10_000);
        Ok(StoreState {
            wasi: wasi.build(),
            table,
            limits: PluginLimits::new(setup.memory_bytes),
            file,
            name,
            services,
            reach: setup.reach.clone(),
            config: setup.config.clone(),
            stdout,
            stderr,
        })
    }

    fn log_line(&self, level: &str, message: &str) {
        self.services.events.emit(Event::PluginLog {
            plugin: self.file.to_string(),
            level: level.to_string(),
            message: sanitize(message, 2_000),
        });
    }

    /// Report what the guest wrote to stdout/stderr during the call.
    pub fn drain_stdio(&self) {
        for (stream, level, pipe) in [
            ("stdout", "info", &self.stdout),
            ("stderr", "warn", &self.stderr),
        ] {
            let bytes = pipe.contents();
            if !bytes.is_empty() {
                let text = String::from_utf8_lossy(&bytes);
                self.log_line(level, &format!("{stream}: {}", text.trim_end()));
            }
        }
    }
}

/// Strip control characters (terminal escapes) and cap the length.
pub fn sanitize(text: &str, max: usize) -> String {
    crate::text::preview(&crate::text::strip_controls(text), max)
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl orch::plugin::types::Host for StoreState {}

impl orch::plugin::host::Host for StoreState {
    fn log(&mut self, level: LogLevel, message: String) {
        let level = match level {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        };
        self.log_line(level, &message);
    }

    fn kv_get(&mut self, key: String) -> Option<String> {
        let kv = self.services.kv.lock().expect("kv lock");
        kv.get(&*self.name)?.get(&key).cloned()
    }

    fn kv_set(&mut self, key: String, value: String) -> Result<(), String> {
        if key.len() > KV_MAX_KEY || value.len() > KV_MAX_VALUE {
            return Err(format!(
                "kv-set: keys are at most {KV_MAX_KEY} bytes and values at most {KV_MAX_VALUE}"
            ));
        }
        let mut kv = self.services.kv.lock().expect("kv lock");
        let store = kv.entry(self.name.to_string()).or_default();
        if store.len() >= KV_MAX_KEYS && !store.contains_key(&key) {
            return Err(format!("kv-set: the store is full ({KV_MAX_KEYS} keys)"));
        }
        store.insert(key, value);
        Ok(())
    }

    fn kv_delete(&mut self, key: String) {
        let mut kv = self.services.kv.lock().expect("kv lock");
        if let Some(store) = kv.get_mut(&*self.name) {
            store.remove(&key);
        }
    }

    fn read_todo(&mut self) -> Result<String, String> {
        let path = self.services.root.join(".opencode").join("todo.md");
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(text),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(err) => Err(format!("read-todo: {err}")),
        }
    }

    fn memory_recall(&mut self, query: String, max: u32) -> Vec<MemoryEntry> {
        let Some(memory) = self.services.memory.get() else {
            return Vec::new();
        };
        let source = format!("plugin:{}", self.name);
        memory
            .find(&source, &query, max.min(100) as usize)
            .into_iter()
            .map(|entry| MemoryEntry {
                id: entry.id,
                tier: entry.tier.name().to_string(),
                text: entry.text,
                pinned: entry.pinned,
            })
            .collect()
    }

    fn memory_remember(
        &mut self,
        tier: Option<String>,
        text: String,
        pinned: bool,
    ) -> Result<String, String> {
        let Some(memory) = self.services.memory.get() else {
            return Err("memory-remember: memory is off in this run".into());
        };
        let tier = match tier.as_deref() {
            None => None,
            Some(name) => match Tier::parse(name) {
                Some(Tier::System) | None => {
                    return Err(format!(
                        "memory-remember: tier {name:?} is not one of project, mission, task"
                    ));
                }
                Some(tier) => Some(tier),
            },
        };
        let source = format!("plugin:{}", self.name);
        memory
            .remember(&source, &source, &text, tier, pinned)
            .map(|entry| entry.id)
    }

    fn record_metric(&mut self, name: String, value: f64) {
        if !value.is_finite() {
            return;
        }
        let name = sanitize(&name, 128);
        let key = format!("{}/{name}", self.name);
        *self
            .services
            .metrics
            .lock()
            .expect("metrics lock")
            .entry(key)
            .or_default() += value;
        self.services.events.emit(Event::PluginMetric {
            plugin: self.file.to_string(),
            name,
            value,
        });
    }

    fn config(&mut self) -> String {
        self.config.to_string()
    }
}

fn response(fetched: super::net::Fetched) -> orch::plugin::net::Response {
    orch::plugin::net::Response {
        status: fetched.status,
        url: fetched.url,
        content_type: fetched.content_type,
        body: fetched.body,
        truncated: fetched.truncated,
    }
}

impl orch::plugin::net::Host for StoreState {
    async fn fetch(
        &mut self,
        url: String,
        max_bytes: u32,
    ) -> Result<orch::plugin::net::Response, String> {
        self.services
            .fetcher
            .fetch(&self.file, &self.reach, &url, max_bytes)
            .await
            .map(response)
    }

    async fn request(
        &mut self,
        req: orch::plugin::net::OutgoingRequest,
    ) -> Result<orch::plugin::net::Response, String> {
        let outgoing = Outgoing {
            method: req.method,
            url: req.url,
            headers: req.headers,
            body: req.body,
            max_bytes: req.max_bytes,
        };
        self.services
            .fetcher
            .send(&self.file, &self.reach, outgoing)
            .await
            .map(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_text_is_stripped_of_escapes_and_capped() {
        assert_eq!(sanitize("a\u{1b}[31mred\u{7}\nnext", 100), "a[31mred\nnext");
        assert_eq!(sanitize("abcdef", 3), "abc…");
    }

    #[test]
    fn the_cap_holds_for_all_memories_and_tables_together() {
        let mut limits = PluginLimits::new(64 << 20);
        // Two memories of 30 MiB fit; growing the second to 40 MiB does not.
        assert!(limits.memory_growing(0, 30 << 20, None).unwrap());
        assert!(limits.memory_growing(0, 30 << 20, None).unwrap());
        assert!(limits.memory_growing(30 << 20, 40 << 20, None).is_err());
        assert!(limits.exceeded);
        // Table elements count against the same cap.
        let mut limits = PluginLimits::new(1 << 20);
        assert!(limits.table_growing(0, 1 << 20, None).is_err());
    }

    /// A real guest with two linear memories, each far below the cap,
    /// cannot grow them past it together.
    #[test]
    fn a_guest_with_two_memories_shares_one_cap() {
        use wasmtime::{Engine, Instance, Module, Store};
        // (module (memory 1) (memory 1)
        //   (func (export "g0") (param i32) (result i32) local.get 0 memory.grow 0)
        //   (func (export "g1") (param i32) (result i32) local.get 0 memory.grow 1))
        let wasm: &[u8] = &[
            0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
            0x01, 0x06, 0x01, 0x60, 0x01, 0x7f, 0x01, 0x7f, // type: (i32) -> i32
            0x03, 0x03, 0x02, 0x00, 0x00, // two functions of it
            0x05, 0x05, 0x02, 0x00, 0x01, 0x00, 0x01, // two memories of one page
            0x07, 0x0b, 0x02, 0x02, b'g', b'0', 0x00, 0x00, 0x02, b'g', b'1', 0x00, 0x01, 0x0a,
            0x0f, 0x02, // code: two bodies
            0x06, 0x00, 0x20, 0x00, 0x40, 0x00, 0x0b, // local.get 0; memory.grow 0
            0x06, 0x00, 0x20, 0x00, 0x40, 0x01, 0x0b, // local.get 0; memory.grow 1
        ];
        const PAGE: usize = 64 << 10;
        let engine = Engine::default();
        let module = Module::new(&engine, wasm).expect("a valid two-memory module");
        let mut store = Store::new(&engine, PluginLimits::new(8 * PAGE));
        store.limiter(|limits| limits);
        let instance = Instance::new(&mut store, &module, &[]).expect("instantiate");
        let g0 = instance
            .get_typed_func::<i32, i32>(&mut store, "g0")
            .unwrap();
        let g1 = instance
            .get_typed_func::<i32, i32>(&mut store, "g1")
            .unwrap();
        // 2 pages at start; 3 more in one memory and 3 in the other: 8.
        assert_eq!(g0.call(&mut store, 3).unwrap(), 1);
        assert_eq!(g1.call(&mut store, 3).unwrap(), 1);
        assert_eq!(store.data().used, 8 * PAGE);
        assert!(!store.data().exceeded);
        // Each memory holds 4 pages, half the cap, yet one more page traps.
        let refused = g1.call(&mut store, 1);
        assert!(refused.is_err(), "{refused:?}");
        assert!(store.data().exceeded);
        assert_eq!(store.data().used, 8 * PAGE);
    }
}

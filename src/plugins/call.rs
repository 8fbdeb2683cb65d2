//! Running plugin code: each call instantiates the component in a fresh
//! `Store` owned by the calling task, under the call's deadline (epoch ticks
//! plus a tokio timeout for a call stuck in a host import), the memory cap
//! and the output caps; a trap becomes a `Fault` in words. `PluginInstance`
//! keeps one warm store for callers that make many calls in a row.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::Store;

use super::bindings::{self, Decision, HookEvent, Manifest, PluginPre};
use super::engine;
use super::state::{CallSetup, Services, StoreState};
use super::{Fault, Loaded, PluginHost};

impl PluginHost {
    /// Instantiate `plugin` in a fresh store and run `call` under `deadline`.
    pub(super) async fn run<R>(
        &self,
        plugin: &Loaded,
        deadline: Duration,
        call: impl AsyncFnOnce(
            &bindings::exports::orch::plugin::guest::Guest,
            &mut Store<StoreState>,
        ) -> wasmtime::Result<R>,
    ) -> Result<R, Fault> {
        StoreCall {
            engine: self.inner.engine,
            pre: &plugin.pre,
            file: &plugin.info.file,
            name: plugin.info.name.as_str().into(),
            services: self.inner.services.clone(),
            setup: &plugin.setup,
            deadline,
        }
        .run(call)
        .await
    }

    pub(super) async fn manifest(
        &self,
        file: &str,
        pre: &PluginPre<StoreState>,
        setup: &CallSetup,
    ) -> Result<Manifest, Fault> {
        StoreCall {
            engine: self.inner.engine,
            pre,
            file,
            name: Arc::from(""),
            services: self.inner.services.clone(),
            setup,
            // Once per load, off the hot path: the generous tool deadline,
            // so a busy machine does not turn a slow start into a refusal.
            deadline: self.inner.limits.tool_deadline,
        }
        .run(async |guest, store| guest.call_manifest(store).await)
        .await
    }

    pub(super) fn cap(&self, mut text: String) -> String {
        let total = text.len();
        let dropped = crate::text::truncate(&mut text, self.inner.limits.max_output);
        if dropped > 0 {
            text.push_str(&format!(
                "\n[output truncated: {dropped} of {total} bytes dropped by the plugin output cap]"
            ));
        }
        text
    }
}

/// One call in one fresh `Store`: which component, for whom, under which
/// sandbox and deadline.
struct StoreCall<'a> {
    engine: &'static wasmtime::Engine,
    pre: &'a PluginPre<StoreState>,
    file: &'a str,
    /// The plugin's manifest name (empty while the manifest is read).
    name: Arc<str>,
    services: Arc<Services>,
    setup: &'a CallSetup,
    deadline: Duration,
}

impl StoreCall<'_> {
    /// Run `call` in its own store, owned by the calling task until it ends.
    async fn run<R>(
        self,
        call: impl AsyncFnOnce(
            &bindings::exports::orch::plugin::guest::Guest,
            &mut Store<StoreState>,
        ) -> wasmtime::Result<R>,
    ) -> Result<R, Fault> {
        let StoreCall {
            engine,
            pre,
            file,
            name,
            services,
            setup,
            deadline,
        } = self;
        let state = StoreState::new(Arc::from(file), name, services, setup).map_err(|err| {
            Fault(format!(
                "cannot set up its sandbox: {}",
                engine::chain(&err)
            ))
        })?;
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.limits);
        store.set_hostcall_fuel(16 << 20);
        // Busy guest code yields to the runtime at every epoch tick, so a
        // spinning plugin never holds an async worker; the wall-clock
        // timeout ends the call (guest code or a host import alike).
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        let work = async {
            let plugin = pre.instantiate_async(&mut store).await?;
            call(plugin.orch_plugin_guest(), &mut store).await
        };
        let result = tokio::time::timeout(deadline, work).await;
        store.data().drain_stdio();
        match result {
            Err(_) => Err(Fault(format!(
                "stopped at its {} ms deadline",
                deadline.as_millis()
            ))),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(Fault(describe_trap(&err, deadline, setup))),
        }
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
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        let deadline = self.inner.limits.hook_deadline;
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
        let event = HookEvent {
            point,
            payload: payload.to_string(),
        };
        let call = self
            .plugin
            .orch_plugin_guest()
            .call_on_hook(&mut self.store, &event);
        let answer = tokio::time::timeout(self.deadline, call)
            .await
            .map_err(|_| format!("stopped at its {} ms deadline", self.deadline.as_millis()))?
            .map_err(|err| engine::chain(&err))?;
        Ok(match answer? {
            Decision::Continue => "continue".to_string(),
            Decision::Modify(json) => format!("modify:{json}"),
            Decision::Block(reason) => format!("block:{reason}"),
        })
    }

    /// Call `call-tool` once in this instance.
    pub async fn call_tool(&mut self, name: &str, args_json: &str) -> Result<String, String> {
        let call = self
            .plugin
            .orch_plugin_guest()
            .call_call_tool(&mut self.store, name, args_json);
        tokio::time::timeout(self.deadline, call)
            .await
            .map_err(|_| format!("stopped at its {} ms deadline", self.deadline.as_millis()))?
            .map_err(|err| engine::chain(&err))?
    }
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
    if text.contains("forcing trap when growing memory") || text.contains("more than its cap") {
        return format!(
            "exceeded its memory cap of {} MiB",
            setup.memory_bytes >> 20
        );
    }
    format!("trapped: {text}")
}

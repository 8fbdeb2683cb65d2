//! The one wasmtime `Engine` (epoch interruption, ticked every 10 ms by a
//! thread that holds only a weak reference), the linker with WASI p2 and the
//! contract's host imports, the compiled-code cache and the load pipeline:
//! read, hash, compile or load from cache, check the contract version,
//! pre-instantiate.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use crate::files::sha256_hex;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use super::PluginError;
use super::bindings::{CONTRACT_VERSION, GUEST_INTERFACE, LOADABLE_VERSIONS, Plugin, PluginPre};
use super::cache::CodeCache;
use super::state::StoreState;

/// How often the epoch advances: the granularity of every deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The process-wide engine. The ticker thread ends when the engine is gone.
pub fn engine() -> Result<&'static Engine, PluginError> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let mut config = Config::new();
            config.wasm_component_model(true);
            // jco's QuickJS components use the component-model async builtins.
            config.wasm_component_model_async(true);
            config.epoch_interruption(true);
            let engine = Engine::new(&config).map_err(|err| err.to_string())?;
            let weak = engine.weak();
            std::thread::Builder::new()
                .name("orch-plugin-epoch".into())
                .spawn(move || {
                    while let Some(engine) = weak.upgrade() {
                        engine.increment_epoch();
                        drop(engine);
                        std::thread::sleep(EPOCH_TICK);
                    }
                })
                .map_err(|err| err.to_string())?;
            Ok(engine)
        })
        .as_ref()
        .map_err(|err| PluginError::Engine(err.clone()))
}

/// The linker every plugin is instantiated with: all of WASI p2 (every
/// toolchain imports some of it; the context grants nothing) plus `host`.
pub fn linker(engine: &Engine) -> Result<Linker<StoreState>, PluginError> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)
        .map_err(|err| PluginError::Engine(err.to_string()))?;
    Plugin::add_to_linker::<StoreState, HasSelf<StoreState>>(&mut linker, |state| state)
        .map_err(|err| PluginError::Engine(err.to_string()))?;
    Ok(linker)
}

/// A component ready to instantiate, with what identifies its file.
pub struct Compiled {
    pub pre: PluginPre<StoreState>,
    /// The contract version its `guest` export carries (`0.1.0`).
    pub contract: String,
    pub sha256: String,
    /// Whether it came from the compiled-code cache.
    pub cached: bool,
}

/// What makes compiled code loadable by this engine: wasmtime's
/// compatibility hash (version, target, settings).
fn engine_key(engine: &Engine) -> String {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// A plugin file read once: its bytes and their hash.
pub struct Source {
    pub file: String,
    bytes: Vec<u8>,
    pub sha256: String,
}

impl Source {
    /// The name its compiled code has in the cache of `engine`.
    pub fn cache_name(&self, engine: &Engine) -> String {
        format!("{}-{}.cwasm", self.sha256, engine_key(engine))
    }
}

/// Read the plugin file at `path`, refusing precompiled code.
pub async fn read(path: &Path) -> Result<Source, PluginError> {
    let file = file_name(path);
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|err| PluginError::Invalid {
            file: file.clone(),
            reason: format!("cannot read {}: {err}", path.display()),
        })?;
    if Engine::detect_precompiled(&bytes).is_some() {
        return Err(PluginError::Invalid {
            file,
            reason: "is precompiled code; only .wasm components are loaded (orch compiles and caches them itself)".into(),
        });
    }
    let sha256 = sha256_hex(&bytes);
    Ok(Source {
        file,
        bytes,
        sha256,
    })
}

/// Compile `source` (or load its compiled code from `cache`), check that
/// it speaks this contract version, and pre-instantiate it.
pub async fn compile(
    engine: &'static Engine,
    linker: &Linker<StoreState>,
    source: Source,
    cache: Option<&CodeCache>,
) -> Result<Compiled, PluginError> {
    let name = source.cache_name(engine);
    let Source {
        file,
        bytes,
        sha256,
    } = source;
    let fail = |reason: String| PluginError::Invalid {
        file: file.clone(),
        reason,
    };
    let key = engine_key(engine);
    let mut cached = false;
    let mut component = None;
    if let Some(code) = cache.and_then(|cache| cache.load(&name)) {
        // SAFETY: the bytes carry a tag made with this user's private key
        // over this name (the component's hash and the engine's
        // compatibility hash): only `precompile_component` below, in an orch
        // run by this user, produced them.
        if let Ok(loaded) = unsafe { Component::deserialize(engine, &code) } {
            component = Some(loaded);
            cached = true;
        }
    }
    let component = match component {
        Some(component) => component,
        None => {
            let compiled = tokio::task::spawn_blocking(move || engine.precompile_component(&bytes))
                .await
                .map_err(|err| fail(format!("compilation stopped: {err}")))?
                .map_err(|err| fail(format!("is not a valid component: {}", chain(&err))))?;
            if let Some(cache) = cache {
                cache.store(&name, &compiled);
                prune_cache(&cache.dir().join(&name), &key, MAX_CACHED);
            }
            // SAFETY: these bytes were produced just now by this engine.
            unsafe { Component::deserialize(engine, &compiled) }
                .map_err(|err| fail(format!("cannot load its compiled code: {}", chain(&err))))?
        }
    };
    let contract = check_version(engine, &component).map_err(&fail)?;
    let pre = linker.instantiate_pre(&component).map_err(|err| {
        fail(format!(
            "imports something orch does not provide: {}",
            chain(&err)
        ))
    })?;
    let pre = PluginPre::new(pre)
        .map_err(|err| fail(format!("does not export the contract: {}", chain(&err))))?;
    Ok(Compiled {
        pre,
        contract,
        sha256,
        cached,
    })
}

/// Compiled components kept in the user's cache; older ones go.
const MAX_CACHED: usize = 32;

/// Bound the cache next to `kept` (just written): drop compiled code for
/// another engine (another orch build cannot load it), leftovers of
/// interrupted writes, and beyond `max` files the least recently used
/// (a load from the cache refreshes a file's modification time).
/// Runs only after a compile, which is rare; failures are ignored (the
/// cache is an optimization).
fn prune_cache(kept: &Path, engine_key: &str, max: usize) {
    let Some(dir) = kept.parent() else { return };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let suffix = format!("-{engine_key}.cwasm");
    let mut current = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path == kept {
            continue;
        }
        let stale_tmp = name.contains(".tmp")
            && entry
                .metadata()
                .and_then(|meta| meta.modified())
                .is_ok_and(|at| at.elapsed().unwrap_or_default().as_secs() > 3600);
        if (name.ends_with(".cwasm") && !name.ends_with(&suffix)) || stale_tmp {
            let _ = std::fs::remove_file(&path);
        } else if name.ends_with(&suffix) {
            let modified = entry.metadata().and_then(|meta| meta.modified()).ok();
            current.push((modified, path));
        }
    }
    // Newest first; the one just written counts as the newest.
    current.sort_by_key(|entry| std::cmp::Reverse(entry.0));
    for (_, path) in current.into_iter().skip(max.saturating_sub(1)) {
        let _ = std::fs::remove_file(path);
    }
}

/// Refuse a component built for a contract version this host cannot load,
/// naming both; the version of its `guest` export otherwise.
fn check_version(engine: &Engine, component: &Component) -> Result<String, String> {
    let ty = component.component_type();
    let refused = |version: &str| {
        format!(
            "is built for orch:plugin@{version}; this orch supports orch:plugin@{}",
            LOADABLE_VERSIONS.join(" and @")
        )
    };
    for (name, _) in ty.imports(engine).chain(ty.exports(engine)) {
        if let Some(version) = contract_version(name)
            && !LOADABLE_VERSIONS.contains(&version)
        {
            return Err(refused(version));
        }
    }
    let exported = ty.exports(engine).find_map(|(name, _)| {
        name.strip_prefix(GUEST_INTERFACE)
            .and_then(|rest| rest.strip_prefix('@'))
            .filter(|version| LOADABLE_VERSIONS.contains(version))
            .map(str::to_string)
    });
    if let Some(version) = exported {
        return Ok(version);
    }
    Err(format!(
        "missing export {GUEST_INTERFACE}@{CONTRACT_VERSION} (not an orch plugin, or built for another contract?)"
    ))
}

/// `0.0.9` from `orch:plugin/guest@0.0.9` (any `orch:plugin/` interface).
fn contract_version(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("orch:plugin/")?;
    Some(rest.split_once('@')?.1)
}

/// A wasmtime error with its causes, on one line.
pub fn chain(err: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// The file name a plugin is reported by.
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_keeps_this_engines_newest_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name);
        let touch = |name: &str, age_secs: u64| {
            let file = std::fs::File::create(at(name)).unwrap();
            let when = std::time::SystemTime::now() - Duration::from_secs(age_secs);
            file.set_modified(when).unwrap();
        };
        touch("old-otherengine.cwasm", 0);
        touch("a-k1.cwasm", 30);
        touch("b-k1.cwasm", 20);
        touch("c-k1.cwasm", 10);
        touch("d-k1.cwasm.tmp7", 7200);
        touch("e-k1.cwasm.tmp8", 5);
        touch("notes.txt", 0);
        touch("new-k1.cwasm", 0);
        prune_cache(&at("new-k1.cwasm"), "k1", 3);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "b-k1.cwasm",
                "c-k1.cwasm",
                "e-k1.cwasm.tmp8",
                "new-k1.cwasm",
                "notes.txt"
            ]
        );
    }
}

//! Hot reload: watches the plugin folders and adds, replaces or removes
//! plugins while a run goes on. Events are debounced; a file whose hash did
//! not change is skipped; calls in flight finish on the version they started
//! with (they hold its `Arc`); a broken replacement keeps the old version
//! and says why.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};

use super::{PluginHost, engine};

/// Quiet time after the last file event before reloading.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// Keeps watching while it lives; dropping it stops the watch and its task.
pub struct PluginWatcher {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PluginWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn is_plugin(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "wasm")
}

impl PluginHost {
    /// Watch `dirs` (those that exist) and reload plugins as their files
    /// change. Needs a tokio runtime.
    pub fn watch(&self, dirs: &[PathBuf]) -> Result<PluginWatcher, String> {
        let (sender, mut changes) = tokio::sync::mpsc::channel::<PathBuf>(256);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if let Ok(event) = event {
                    for path in event.paths.into_iter().filter(|path| is_plugin(path)) {
                        // A full channel only drops duplicates of pending reloads.
                        let _ = sender.try_send(path);
                    }
                }
            })
            .map_err(|err| format!("plugin host: cannot watch the plugin folders: {err}"))?;
        for dir in dirs.iter().filter(|dir| dir.is_dir()) {
            watcher
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|err| format!("plugin host: cannot watch {}: {err}", dir.display()))?;
        }
        let host = self.clone();
        let task = tokio::spawn(async move {
            while let Some(first) = changes.recv().await {
                let mut changed = BTreeSet::from([first]);
                loop {
                    match tokio::time::timeout(DEBOUNCE, changes.recv()).await {
                        Ok(Some(path)) => {
                            changed.insert(path);
                        }
                        Ok(None) => return,
                        Err(_) => break,
                    }
                }
                for path in changed {
                    host.reload(&path).await;
                }
            }
        });
        Ok(PluginWatcher {
            _watcher: watcher,
            task,
        })
    }

    /// Bring plugin `path` up to date with its file: load a new one,
    /// replace a changed one, forget a deleted one. Reports what happened
    /// as a warning event naming the file.
    pub async fn reload(&self, path: &Path) {
        let file = engine::file_name(path);
        let services = &self.inner.services;
        let Ok(bytes) = tokio::fs::read(path).await else {
            if self.unload(&file) {
                services.warn(format!(
                    "plugin \"{file}\" was removed; its tools and hooks are gone"
                ));
                for problem in self.publish() {
                    services.warn(problem);
                }
            }
            return;
        };
        let sha256 = crate::files::sha256_hex(&bytes);
        let current = self.read().get(&file).map(|p| p.info.sha256.clone());
        if current.as_deref() == Some(sha256.as_str()) {
            return;
        }
        match self.load(path).await {
            Ok(info) if current.is_some() => services.warn(format!(
                "plugin \"{file}\" was replaced by {} {}",
                info.name, info.version
            )),
            Ok(info) => services.warn(format!(
                "plugin \"{file}\" was added: {} {} (its tools reach running sessions now, its hooks apply now)",
                info.name, info.version
            )),
            Err(err) if current.is_some() => {
                services.warn(format!("{err}; the previous version stays active"));
            }
            Err(err) => services.warn(format!("{err}; skipped")),
        }
        for problem in self.publish() {
            services.warn(problem);
        }
    }
}

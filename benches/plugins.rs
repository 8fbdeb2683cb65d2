//! Plugin host benchmark (run with `cargo bench --bench plugins`): the
//! memory-gate example plugin (Rust, wasm32-wasip2) answering
//! `pre-model-request` with a ~1 KB payload — warm (one instance, many
//! calls) and fresh (a new Store and instance per call, as the engine
//! does) — plus loading it from the compiled-code cache and compiling it
//! cold. Builds the example plugins first if needed (needs
//! `rustup target add wasm32-wasip2`). Prints numbers; asserts nothing
//! about time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orch::config::PluginsConfig;
use orch::events::EventBus;
use orch::plugins::PluginHost;
use serde_json::json;

fn build_guests() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = root.join("target").join("wasm-plugins");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
        ])
        .arg("--manifest-path")
        .arg(root.join("example-plugins").join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .expect("run cargo");
    assert!(status.success(), "building example-plugins failed");
    target.join("wasm32-wasip2").join("release")
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    println!(
        "{what:<44} n={:<6} median {:>10.1?}  p90 {:>10.1?}  min {:>10.1?}",
        samples.len(),
        at(0.5),
        at(0.9),
        samples[0]
    );
}

fn project(wasm: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp project");
    let plugins = dir.path().join(".opencode").join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugins dir");
    std::fs::copy(wasm, plugins.join("memory_gate.wasm")).expect("copy plugin");
    dir
}

fn host(root: &Path) -> PluginHost {
    let config = PluginsConfig {
        user_dir: false,
        ..PluginsConfig::default()
    };
    PluginHost::new(root, &config, Arc::new(EventBus::new()), None).expect("plugin host")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let wasm = build_guests().join("memory_gate.wasm");
    println!(
        "memory_gate.wasm: {} bytes",
        std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0)
    );

    let mut cold = Vec::new();
    for _ in 0..3 {
        let dir = project(&wasm);
        let host = host(dir.path());
        let started = Instant::now();
        host.load(&dir.path().join(".opencode/plugins/memory_gate.wasm"))
            .await
            .expect("load");
        cold.push(started.elapsed());
    }
    report("cold compile + validate (no cache)", cold);

    let dir = project(&wasm);
    let path = dir.path().join(".opencode/plugins/memory_gate.wasm");
    host(dir.path()).load(&path).await.expect("first load");
    let mut cached = Vec::new();
    for _ in 0..20 {
        let host = host(dir.path());
        let started = Instant::now();
        let info = host.load(&path).await.expect("cached load");
        cached.push(started.elapsed());
        assert!(info.cached);
    }
    report("load from cache + validate", cached);

    // ~1 KB of messages, none long enough for the gate to change anything.
    let messages: Vec<_> = (0..8)
        .map(|i| json!({"role": "user", "text": format!("message {i}: {}", "x".repeat(100))}))
        .collect();
    let payload = json!({"session": "s1", "agent": "Worker", "model": "m", "messages": messages});
    let text = payload.to_string();
    println!("hook payload: {} bytes", text.len());

    let host = host(dir.path());
    host.load(&path).await.expect("load");
    let mut instance = host.instance("memory_gate.wasm").await.expect("instance");
    for _ in 0..200 {
        instance
            .on_hook("pre-model-request", &text)
            .await
            .expect("warm-up");
    }
    let mut warm = Vec::new();
    for _ in 0..5_000 {
        let started = Instant::now();
        let answer = instance.on_hook("pre-model-request", &text).await;
        warm.push(started.elapsed());
        assert_eq!(answer.as_deref(), Ok("continue"));
    }
    report("warm hook call, 1 KB payload", warm);

    let mut fresh = Vec::new();
    for _ in 0..1_000 {
        let started = Instant::now();
        let decision = host.hook("pre-model-request", payload.clone()).await;
        fresh.push(started.elapsed());
        assert_eq!(decision, orch::hooks::Decision::Continue);
    }
    report("fresh-instance hook call, 1 KB payload", fresh);
}

//! Plugin host benchmark (run with `cargo bench --bench plugins`), for each
//! example plugin: a warm call (one instance, many calls), a fresh-instance
//! call (a new Store and instance per call, as the engine does), loading
//! from the compiled-code cache and compiling cold.
//!
//! - memory-gate (Rust, wasm32-wasip2): `pre-compact` with a ~1 KB
//!   payload of messages. Built first if needed (needs `rustup target add
//!   wasm32-wasip2`).
//! - word-stats (Python, componentize-py) and slugify (JavaScript, jco with
//!   the QuickJS backend): their tool with a ~1 KB argument, and their
//!   `pre-compact` hook with the payload the engine sends. Built with the
//!   tools `.ci/run` installs under `target/plugin-tools/`, into the same
//!   files the tests use; skipped (with a line saying so) without them.
//!
//! Prints numbers; asserts nothing about time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orch::config::PluginsConfig;
use orch::events::EventBus;
use orch::hooks::Decision;
use orch::plugins::PluginHost;
use serde_json::{Value, json};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn build_rust_guests() -> PathBuf {
    let target = root().join("target").join("wasm-plugins");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
        ])
        .arg("--manifest-path")
        .arg(root().join("example-plugins").join("Cargo.toml"))
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

/// Build `example-plugins/<source>` into `target/wasm-plugins/polyglot/<output>`
/// (where the tests put it) with `tool` from `target/plugin-tools/` (under
/// `CARGO_TARGET_DIR` when set, as `.ci/run` installs it), unless the output
/// is newer than its sources. `Err` says why it was skipped.
fn build_polyglot(source: &str, output: &str, tool: &str) -> Result<PathBuf, String> {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root().join(dir),
        _ => root().join("target"),
    };
    let tools = target.join("plugin-tools");
    let wit = root().join("wit");
    let source = root().join("example-plugins").join(source);
    let out = root().join("target").join("wasm-plugins").join("polyglot");
    let wasm = out.join(output);
    let newer = |a: &Path, b: &Path| {
        let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
        matches!((modified(a), modified(b)), (Some(a), Some(b)) if a > b)
    };
    if newer(&wasm, &source) && newer(&wasm, &wit.join("plugin.wit")) {
        return Ok(wasm);
    }
    let exe = tools.join(tool);
    if !exe.exists() {
        return Err(format!("{} is not installed (see .ci/run)", exe.display()));
    }
    std::fs::create_dir_all(&out).map_err(|err| err.to_string())?;
    let mut command = Command::new(&exe);
    if tool.ends_with("componentize-py") {
        let dir = source.parent().expect("source folder");
        command
            .arg("-d")
            .arg(&wit)
            .args(["-w", "plugin", "componentize", "-p"]);
        command
            .arg(dir)
            .arg("app")
            .arg("-o")
            .arg(&wasm)
            .current_dir(&out);
    } else {
        command
            .arg("componentize")
            .arg(&source)
            .arg("--wit")
            .arg(&wit);
        command.args(["-n", "plugin", "--backend", "quickjs", "-o"]);
        command.arg(&wasm).current_dir(tools.join("js"));
    }
    match command.status() {
        Ok(status) if status.success() => Ok(wasm),
        Ok(status) => Err(format!("{} failed ({status})", exe.display())),
        Err(err) => Err(format!("cannot run {}: {err}", exe.display())),
    }
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    println!(
        "  {what:<46} n={:<6} median {:>10.1?}  p90 {:>10.1?}  min {:>10.1?}",
        samples.len(),
        at(0.5),
        at(0.9),
        samples[0]
    );
}

fn project(wasm: &Path, file: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp project");
    let plugins = dir.path().join(".opencode").join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugins dir");
    std::fs::copy(wasm, plugins.join(file)).expect("copy plugin");
    dir
}

fn host(root: &Path) -> PluginHost {
    let config = PluginsConfig {
        user_dir: false,
        // Deadlines are not what is measured; a busy machine must not
        // turn a slow call into a fault.
        hook_timeout_ms: 10_000,
        ..PluginsConfig::default()
    };
    // Each benchmark project has a compiled-code cache of its own.
    let cache = orch::plugins::CodeCache::open(&root.join("code-cache")).expect("code cache");
    PluginHost::with_cache(root, &config, Arc::new(EventBus::new()), None, Some(cache))
        .expect("plugin host")
}

/// How many samples of each measurement one plugin gets.
struct Samples {
    cold: usize,
    cached: usize,
    warm: usize,
    fresh: usize,
}

/// Measure cold compiles and cached loads of `wasm` (as `file`); returns
/// its project (cache filled) and a host with it loaded.
async fn loads(wasm: &Path, file: &str, n: &Samples) -> (tempfile::TempDir, PluginHost) {
    println!(
        "{file}: {} bytes",
        std::fs::metadata(wasm).map(|m| m.len()).unwrap_or(0)
    );
    let path = |dir: &tempfile::TempDir| dir.path().join(".opencode/plugins").join(file);
    let mut cold = Vec::new();
    for _ in 0..n.cold {
        let dir = project(wasm, file);
        let host = host(dir.path());
        let started = Instant::now();
        let info = host.load(&path(&dir)).await.expect("load");
        cold.push(started.elapsed());
        assert!(!info.cached);
    }
    report("cold compile + validate (no cache)", cold);

    let dir = project(wasm, file);
    host(dir.path())
        .load(&path(&dir))
        .await
        .expect("first load");
    let mut cached = Vec::new();
    for _ in 0..n.cached {
        let host = host(dir.path());
        let started = Instant::now();
        let info = host.load(&path(&dir)).await.expect("cached load");
        cached.push(started.elapsed());
        assert!(info.cached);
    }
    report("load from cache + validate", cached);

    let host = host(dir.path());
    host.load(&path(&dir)).await.expect("load");
    (dir, host)
}

/// Warm and fresh-instance `on-hook` calls at `point`; every answer must be
/// `expect` (`continue`, `block:<reason>` or `modify:<json>`).
async fn hook_calls(
    host: &PluginHost,
    file: &str,
    (point, payload): (&str, &Value),
    expect: &str,
    n: &Samples,
) {
    let text = payload.to_string();
    let mut instance = host.instance(file).await.expect("instance");
    for _ in 0..n.warm / 20 + 10 {
        instance.on_hook(point, &text).await.expect("warm-up");
    }
    let mut warm = Vec::new();
    for _ in 0..n.warm {
        let started = Instant::now();
        let answer = instance.on_hook(point, &text).await;
        warm.push(started.elapsed());
        assert_eq!(answer.as_deref(), Ok(expect));
    }
    report(
        &format!("warm {point} hook, {} B payload", text.len()),
        warm,
    );

    let mut fresh = Vec::new();
    for _ in 0..n.fresh {
        let started = Instant::now();
        let decision = host.hook(point, payload.clone()).await;
        fresh.push(started.elapsed());
        let answer = match decision {
            Decision::Continue => "continue".to_string(),
            Decision::Block(reason) => format!("block:{reason}"),
            Decision::Modify(value) => format!("modify:{value}"),
        };
        assert_eq!(answer, expect);
    }
    // A fault answers `continue` too, and repeated faults disable the plugin.
    assert!(!host.is_disabled(file), "{file} faulted");
    report(&format!("fresh-instance {point} hook"), fresh);
}

/// Warm and fresh-instance calls of tool `name`; every answer must be `expect`.
async fn tool_calls(
    host: &PluginHost,
    file: &str,
    (name, args): (&str, &str),
    expect: &str,
    n: &Samples,
) {
    let mut instance = host.instance(file).await.expect("instance");
    for _ in 0..n.warm / 20 + 10 {
        instance.call_tool(name, args).await.expect("warm-up");
    }
    let mut warm = Vec::new();
    for _ in 0..n.warm {
        let started = Instant::now();
        let answer = instance.call_tool(name, args).await;
        warm.push(started.elapsed());
        assert_eq!(answer.as_deref(), Ok(expect));
    }
    report(&format!("warm tool call, {} B argument", args.len()), warm);

    let mut fresh = Vec::new();
    for _ in 0..n.fresh {
        let started = Instant::now();
        let answer = host.call_tool(file, name, args).await;
        fresh.push(started.elapsed());
        assert_eq!(answer.as_deref(), Ok(expect));
    }
    report("fresh-instance tool call", fresh);
}

/// `title` as `js_slugify` turns it into a slug (ASCII titles).
fn slug(title: &str) -> String {
    let lower = title.to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .collect();
    words.join("-")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // pre-compact with ~1 KB of messages, none long enough for the gate to
    // change anything.
    let messages: Vec<_> = (0..8)
        .map(|i| json!({"role": "user", "text": format!("message {i}: {}", "x".repeat(100))}))
        .collect();
    let gated = json!({
        "session": "s1", "agent": "Worker", "reason": "threshold", "tokens": 14_000, "window": 16_000,
        "messages": messages
    });
    // pre-compact: what the engine sends.
    let compact = json!({
        "session": "s1", "agent": "Worker", "reason": "window", "tokens": 14_000, "window": 16_000
    });

    println!("== memory-gate (Rust)");
    let wasm = build_rust_guests().join("memory_gate.wasm");
    let n = Samples {
        cold: 3,
        cached: 20,
        warm: 5_000,
        fresh: 1_000,
    };
    let (_dir, host) = loads(&wasm, "memory_gate.wasm", &n).await;
    hook_calls(
        &host,
        "memory_gate.wasm",
        ("pre-compact", &gated),
        "continue",
        &n,
    )
    .await;

    println!("== word-stats (Python, componentize-py)");
    match build_polyglot(
        "python/app.py",
        "word_stats.wasm",
        "venv/bin/componentize-py",
    ) {
        Err(why) => println!("  skipped: {why}"),
        Ok(wasm) => {
            let n = Samples {
                cold: 3,
                cached: 10,
                warm: 2_000,
                fresh: 200,
            };
            let (_dir, host) = loads(&wasm, "word_stats.wasm", &n).await;
            let text: Vec<String> = (0..16)
                .map(|i| format!("line {i}: the quick brown fox jumps over the lazy dog, again"))
                .collect();
            let text = text.join("\n");
            let stats = json!({
                "words": text.split_whitespace().count(),
                "lines": text.lines().count(),
                "chars": text.len(),
            });
            // Python's json.dumps puts a space after `:` and `,`.
            let expect = stats.to_string().replace(':', ": ").replace(',', ", ");
            let args = json!({ "text": text }).to_string();
            tool_calls(
                &host,
                "word_stats.wasm",
                ("py_word_stats", &args),
                &expect,
                &n,
            )
            .await;
            hook_calls(
                &host,
                "word_stats.wasm",
                ("pre-compact", &compact),
                "continue",
                &n,
            )
            .await;
        }
    }

    println!("== slugify (JavaScript, jco QuickJS)");
    match build_polyglot(
        "javascript/app.js",
        "slugify.wasm",
        "js/node_modules/.bin/jco",
    ) {
        Err(why) => println!("  skipped: {why}"),
        Ok(wasm) => {
            let n = Samples {
                cold: 3,
                cached: 20,
                warm: 2_000,
                fresh: 500,
            };
            let (_dir, host) = loads(&wasm, "slugify.wasm", &n).await;
            let title: Vec<String> = (0..32)
                .map(|i| format!("Part {i}: Plugins, Benchmarked! "))
                .collect();
            let title = title.concat();
            let args = json!({ "title": title }).to_string();
            tool_calls(
                &host,
                "slugify.wasm",
                ("js_slugify", &args),
                &slug(&title),
                &n,
            )
            .await;
            hook_calls(
                &host,
                "slugify.wasm",
                ("pre-compact", &compact),
                "continue",
                &n,
            )
            .await;
        }
    }
}

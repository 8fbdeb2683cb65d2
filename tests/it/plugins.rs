//! The plugin host with real wasm components: the example plugins (tools,
//! hooks, agents), the compiled-code cache, the contract version check, and
//! the sandbox against a guest that misbehaves on request (`tests/plugins/`).
//!
//! The guests are built for wasm32-wasip2 once per test run (cargo's own
//! lock serializes concurrent runs; unchanged guests rebuild in well under a
//! second). `rustup target add wasm32-wasip2` must have run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use orch::config::{PluginGrant, PluginsConfig, ProjectAccess};
use orch::events::{Envelope, Event, EventBus, EventSink};
use orch::hooks::Decision;
use orch::plugins::{PluginHost, sha256_hex};
use serde_json::{Value, json};

use crate::support::project::{Project, events, run};

mod search;
mod utility;

/// The folder with every built guest `.wasm`.
fn guests() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let target = root.join("target").join("wasm-plugins");
        for workspace in ["example-plugins", "tests/plugins"] {
            let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["build", "--release", "--locked", "--target", "wasm32-wasip2"])
                .arg("--manifest-path")
                .arg(root.join(workspace).join("Cargo.toml"))
                .arg("--target-dir")
                .arg(&target)
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_TARGET_DIR")
                .env_remove("CARGO_BUILD_TARGET")
                .status()
                .expect("run cargo to build the guest plugins");
            assert!(
                status.success(),
                "building {workspace} for wasm32-wasip2 failed (did `rustup target add wasm32-wasip2` run?)"
            );
        }
        target.join("wasm32-wasip2").join("release")
    })
}

pub(crate) fn guest(name: &str) -> PathBuf {
    guests().join(format!("{name}.wasm"))
}

/// Collects warning messages, and plugin log lines apart.
#[derive(Default)]
struct Warnings {
    warnings: Mutex<Vec<String>>,
    logs: Mutex<Vec<String>>,
}

impl EventSink for Warnings {
    fn write(&self, envelope: &Envelope) {
        match &envelope.event {
            Event::Warning { message, .. } => self.warnings.lock().unwrap().push(message.clone()),
            Event::PluginLog {
                plugin,
                level,
                message,
            } => self
                .logs
                .lock()
                .unwrap()
                .push(format!("{plugin} {level}: {message}")),
            _ => {}
        }
    }
}

impl Warnings {
    fn all(&self) -> Vec<String> {
        self.warnings.lock().unwrap().clone()
    }

    /// Plugin log lines as `file level: message`.
    fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }
}

/// A project with `plugins` copied into `.opencode/plugins/`.
fn project_with(plugins: &[&str]) -> Project {
    let project = Project::trusted();
    let dir = project.file(".opencode/plugins");
    std::fs::create_dir_all(&dir).unwrap();
    for name in plugins {
        std::fs::copy(guest(name), dir.join(format!("{name}.wasm"))).unwrap();
    }
    project
}

async fn host(
    project: &Project,
    config: &PluginsConfig,
) -> (PluginHost, Arc<Warnings>, Vec<String>) {
    let events = Arc::new(EventBus::new());
    let warnings = Arc::new(Warnings::default());
    events.add_sink(warnings.clone());
    let host = PluginHost::with_cache(
        project.path(),
        config,
        events,
        None,
        Some(project.code_cache()),
    )
    .unwrap();
    let problems = host.load_dirs(&[project.file(".opencode/plugins")]).await;
    (host, warnings, problems)
}

fn no_user_dir() -> PluginsConfig {
    PluginsConfig {
        user_dir: false,
        ..PluginsConfig::default()
    }
}

#[tokio::test]
async fn example_plugins_load_with_their_tools_hooks_and_agents() {
    let project = project_with(&["todo_stats", "metrics", "memory_gate", "doc_writer"]);
    project.write(
        ".opencode/todo.md",
        "# Plan\n- [x] one\n- [ ] two\n- [ ] three\n",
    );
    let (host, _warnings, problems) = host(&project, &no_user_dir()).await;
    assert!(problems.is_empty(), "{problems:?}");
    let names: Vec<String> = host.plugins().iter().map(|p| p.name.clone()).collect();
    assert_eq!(
        names,
        ["doc-writer", "memory-gate", "metrics", "todo-stats"]
    );

    let answer = host
        .call_tool("todo_stats.wasm", "todo_stats", r#"{"next":1}"#)
        .await
        .unwrap();
    assert_eq!(answer, "1/3 done, 0 in progress, 2 open\nnext: two");

    let agents = host.agents();
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0].name, "DocWriter");
    assert!(agents[0].tools.contains(&"write".to_string()));

    // metrics times each call from its pre- to its post-tool-use hook
    // (matched by call id) and shows the counts.
    for call in ["c1", "c2"] {
        let decision = host
            .hook(
                "pre-tool-use",
                json!({"session": "s1", "call": call, "tool": "grep", "args": {}}),
            )
            .await;
        assert_eq!(decision, Decision::Continue);
    }
    for (call, failed) in [("c1", true), ("c2", false)] {
        host.hook(
            "post-tool-use",
            json!({"session": "s1", "call": call, "tool": "grep", "output": "x", "is-error": failed}),
        )
        .await;
    }
    let shown = host
        .call_tool("metrics.wasm", "plugin_metrics", "{}")
        .await
        .unwrap();
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let grep = &shown["tools"]["grep"];
    assert_eq!((&grep["calls"], &grep["failures"]), (&json!(2), &json!(1)));
    let (mean, max) = (
        grep["mean_ms"].as_f64().unwrap(),
        grep["max_ms"].as_f64().unwrap(),
    );
    assert!(0.0 <= mean && mean <= max, "{grep}");
    assert_eq!(host.metrics()["metrics/tool.grep.calls"], 2.0);
    assert_eq!(host.metrics()["metrics/tool.grep.failures"], 1.0);
    // Without a data folder granted it has nowhere to write.
    assert!(
        !project
            .file(".opencode/plugin-data/metrics/metrics.json")
            .exists()
    );

    // memory-gate shortens an old, long tool output and leaves the tail,
    // when the conversation is compacted; never before a request.
    let long = "y".repeat(10_000);
    let mut messages = vec![json!({"role": "user", "text": "go"})];
    messages.push(json!({"role": "tool", "call_id": "c1", "name": "read", "content": long}));
    for i in 0..6 {
        messages.push(json!({"role": "user", "text": format!("m{i}")}));
    }
    let before_request = host
        .hook(
            "pre-model-request",
            json!({"session": "s1", "messages": messages}),
        )
        .await;
    assert!(
        matches!(before_request, Decision::Continue),
        "{before_request:?}"
    );
    let compacting = |messages: &Value| -> Value {
        json!({"session": "s1", "agent": "Worker", "reason": "threshold", "tokens": 9000, "window": 8000, "messages": messages})
    };
    let decision = host.hook("pre-compact", compacting(&json!(messages))).await;
    let Decision::Modify(reshaped) = decision else {
        panic!("memory-gate did not reshape: {decision:?}");
    };
    let content = reshaped["messages"][1]["content"].as_str().unwrap();
    assert!(content.len() < 2_200, "{}", content.len());
    assert!(content.contains("memory-gate: 8000 more bytes"));
    assert_eq!(reshaped["messages"].as_array().unwrap().len(), 8);
    assert!(
        reshaped.get("instruction").is_none(),
        "the engine keeps its summary instruction"
    );
    // Shortened once: the next compaction leaves it as it is.
    let again = host
        .hook("pre-compact", compacting(&reshaped["messages"]))
        .await;
    assert!(matches!(again, Decision::Continue), "{again:?}");
}

#[tokio::test]
async fn plugin_tools_register_and_clashes_with_builtins_are_refused() {
    let project = project_with(&["chaos", "todo_stats"]);
    let (host, _warnings, problems) = host(&project, &no_user_dir()).await;
    assert!(problems.is_empty(), "{problems:?}");
    let builtins: Vec<String> = ["read", "write", "bash"].map(String::from).to_vec();
    let (tools, problems) = host.tools(&builtins);
    let names: Vec<String> = tools.iter().map(|(tool, _)| tool.spec().name).collect();
    assert!(names.contains(&"todo_stats".to_string()));
    assert!(names.contains(&"spin".to_string()));
    assert!(!names.contains(&"read".to_string()));
    assert!(
        problems.iter().any(|p| p
            == "plugin \"chaos.wasm\": tool \"read\" clashes with the built-in tool of that name; not registered"),
        "{problems:?}"
    );
    let todo = tools
        .iter()
        .find(|(t, _)| t.spec().name == "todo_stats")
        .unwrap();
    assert_eq!(todo.0.spec().parameters["type"], "object");
}

#[tokio::test]
async fn compiled_code_is_cached_and_reused() {
    let project = project_with(&["todo_stats"]);
    let (first, _, _) = host(&project, &no_user_dir()).await;
    let sha = sha256_hex(&std::fs::read(guest("todo_stats")).unwrap());
    assert_eq!(first.plugins()[0].sha256, sha);
    let cached: Vec<_> = std::fs::read_dir(project.code_cache_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".cwasm"))
        .collect();
    assert_eq!(cached.len(), 1);
    assert!(cached[0].starts_with(&sha));
    // Nothing is kept in the project.
    assert!(!project.file(".opencode/cache").exists());
    let (second, _, _) = host(&project, &no_user_dir()).await;
    assert!(second.plugins()[0].cached);
    assert!(
        second
            .call_tool("todo_stats.wasm", "todo_stats", "{}")
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_plugin_for_another_contract_version_is_refused_by_name() {
    let project = project_with(&["old_version", "todo_stats"]);
    let (host, _, problems) = host(&project, &no_user_dir()).await;
    assert_eq!(
        problems,
        [
            "plugin \"old_version.wasm\": is built for orch:plugin@0.0.9; this orch supports orch:plugin@0.1.0 and @0.1.1; skipped"
        ]
    );
    assert_eq!(host.plugins().len(), 1, "the good plugin still loads");
}

#[tokio::test]
async fn garbage_and_precompiled_files_are_refused() {
    let project = project_with(&[]);
    project.write(".opencode/plugins/garbage.wasm", "not wasm at all");
    let (host, _, problems) = host(&project, &no_user_dir()).await;
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].starts_with("plugin \"garbage.wasm\": is not a valid component"),
        "{problems:?}"
    );
    // A compiled artifact dropped into the plugins folder is never loaded.
    let other = project_with(&["todo_stats"]);
    let (_h, _, _) = host_for(&other).await;
    let compiled = std::fs::read_dir(other.code_cache_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|ext| ext == "cwasm"))
        .unwrap();
    // The native code itself, without the cache's header and tag.
    let native = std::fs::read(&compiled).unwrap()[8 + 32..].to_vec();
    std::fs::write(project.file(".opencode/plugins/sneaky.wasm"), native).unwrap();
    let problems = host.load_dirs(&[project.file(".opencode/plugins")]).await;
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("plugin \"sneaky.wasm\": is precompiled code")),
        "{problems:?}"
    );
}

/// Native code planted where compiled plugins are looked for — the old
/// project cache, the user cache under the right name, another user's
/// tag — is never loaded: orch compiles the real plugin instead.
#[tokio::test]
async fn planted_compiled_code_is_never_loaded() {
    // The artifact to plant: chaos compiled by orch (a valid .cwasm whose
    // tools are not todo_stats's), in a project of its own.
    let donor = project_with(&["chaos"]);
    let (_donor_host, _, _) = host_for(&donor).await;
    let planted = std::fs::read_dir(donor.code_cache_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|ext| ext == "cwasm"))
        .unwrap();
    let planted_bytes = std::fs::read(&planted).unwrap();

    let project = project_with(&["todo_stats"]);
    let (first, _, _) = host_for(&project).await;
    let real = std::fs::read_dir(project.code_cache_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|ext| ext == "cwasm"))
        .unwrap();
    drop(first);
    let name = real.file_name().unwrap().to_owned();
    // The donor's artifact, tagged with the donor's key, under the real
    // name in this user's cache and in the old project cache.
    std::fs::write(&real, &planted_bytes).unwrap();
    std::fs::create_dir_all(project.file(".opencode/cache/plugins")).unwrap();
    std::fs::write(
        project.file(".opencode/cache/plugins").join(&name),
        &planted_bytes,
    )
    .unwrap();
    let (host, _, problems) = host_for(&project).await;
    assert!(problems.is_empty(), "{problems:?}");
    let info = &host.plugins()[0];
    assert!(!info.cached, "the planted artifact was loaded");
    let tools: Vec<&str> = info.tools.iter().map(|tool| tool.name.as_str()).collect();
    assert_eq!(tools, ["todo_stats"]);
    // Recompiled and re-signed: the next start loads it from the cache.
    let (again, _, _) = host_for(&project).await;
    assert!(again.plugins()[0].cached);
}

async fn host_for(project: &Project) -> (PluginHost, Arc<Warnings>, Vec<String>) {
    host(project, &no_user_dir()).await
}

/// Two spinning plugin calls on orch's runtime with two workers (this
/// machine's) hold neither: a timer on the same runtime keeps ticking, and
/// a call dropped mid-spin (Ctrl-C) lets go at once.
#[test]
fn spinning_plugins_never_hold_the_runtime() {
    let runtime = orch::cli::runtime_builder()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(spinning_plugins());
}

async fn spinning_plugins() {
    let project = project_with(&["chaos"]);
    let config = PluginsConfig {
        tool_timeout_ms: 3_000,
        ..no_user_dir()
    };
    let (host, _, _) = host(&project, &config).await;
    let spins: Vec<_> = (0..2)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move { host.call_tool("chaos.wasm", "spin", "{}").await })
        })
        .collect();
    // A stream, the live view and queued tasks all need the workers: a
    // ticking task stands in for them.
    let mut longest = std::time::Duration::ZERO;
    let mut last = std::time::Instant::now();
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        longest = longest.max(last.elapsed());
        last = std::time::Instant::now();
    }
    assert!(
        longest < std::time::Duration::from_millis(500),
        "the runtime stalled for {longest:?} while plugins spun"
    );
    for spin in spins {
        let err = spin.await.unwrap().unwrap_err();
        assert!(err.ends_with("stopped at its 3000 ms deadline"), "{err}");
    }
    // Cancelled mid-spin: the call ends when it is dropped.
    let started = std::time::Instant::now();
    let dropped = tokio::time::timeout(
        std::time::Duration::from_millis(100),
        host.call_tool("chaos.wasm", "spin", "{}"),
    )
    .await;
    assert!(dropped.is_err());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "a dropped call took {:?} to let go",
        started.elapsed()
    );
}

/// Ctrl-C in a real run whose Worker called two spinning plugin tools: the
/// run ends at once (exit 130), not at the tools' 30 s deadline.
#[test]
fn ctrl_c_ends_a_run_whose_plugin_tools_spin() {
    use std::io::BufRead;
    let project = project_with(&["chaos"]);
    let spin = json!({"name": "spin", "arguments": {}});
    project.write(
        "run.json",
        &json!({"agents": {"Worker": [{"tool_calls": [spin, spin]}, {"text": "done"}]}})
            .to_string(),
    );
    let mut child = project
        .orch()
        .args([
            "--json",
            "--provider",
            "scripted",
            "--script",
            "run.json",
            "run",
            "--agent",
            "worker",
            "go",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let begun = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|line| line.contains("\"tool_call_begin\"") && line.contains("\"spin\""));
    assert!(begun, "the spin tool never started");
    // Let both calls get going on the runtime.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let sent = std::time::Instant::now();
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    let took = sent.elapsed();
    assert_eq!(status.code(), Some(130));
    assert!(
        took < std::time::Duration::from_secs(5),
        "Ctrl-C took {took:?} to end the run (the tools' deadline is 30 s)"
    );
}

#[tokio::test]
async fn an_infinite_loop_is_stopped_at_its_deadline_and_the_host_stays_healthy() {
    let project = project_with(&["chaos"]);
    let config = PluginsConfig {
        tool_timeout_ms: 200,
        ..no_user_dir()
    };
    let (host, warnings, _) = host(&project, &config).await;
    let err = host
        .call_tool("chaos.wasm", "spin", "{}")
        .await
        .unwrap_err();
    assert_eq!(
        err,
        "plugin \"chaos.wasm\": tool spin: stopped at its 200 ms deadline"
    );
    assert!(warnings.all().contains(&err));
    assert_eq!(
        host.call_tool("chaos.wasm", "echo", r#"{"a":1}"#)
            .await
            .unwrap(),
        r#"{"a":1}"#
    );
}

#[tokio::test]
async fn a_memory_grab_over_the_cap_traps_cleanly() {
    let project = project_with(&["chaos"]);
    let config = PluginsConfig {
        memory_mib: 16,
        ..no_user_dir()
    };
    let (host, _, _) = host(&project, &config).await;
    let err = host
        .call_tool("chaos.wasm", "grab", r#"{"mib":64}"#)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        "plugin \"chaos.wasm\": tool grab: exceeded its memory cap of 16 MiB"
    );
    assert_eq!(
        host.call_tool("chaos.wasm", "grab", r#"{"mib":4}"#)
            .await
            .unwrap(),
        "grabbed 4 MiB"
    );

    // A grant raises the cap for that plugin only.
    let mut config = PluginsConfig {
        memory_mib: 16,
        ..no_user_dir()
    };
    config.grants.insert(
        "chaos.wasm".into(),
        PluginGrant {
            sha256: sha256_hex(&std::fs::read(guest("chaos")).unwrap()),
            project: None,
            data: false,
            memory_mib: Some(128),
            fetch: Vec::new(),
            headers: Default::default(),
            config: None,
        },
    );
    let (host, _, _) = host_with(&project, &config).await;
    assert_eq!(
        host.call_tool("chaos.wasm", "grab", r#"{"mib":64}"#)
            .await
            .unwrap(),
        "grabbed 64 MiB"
    );
}

#[tokio::test]
async fn huge_results_and_stdout_floods_are_capped() {
    let project = project_with(&["chaos"]);
    let config = PluginsConfig {
        max_output_bytes: 4096,
        max_stdio_bytes: 1024,
        ..no_user_dir()
    };
    let (host, warnings, _) = host(&project, &config).await;
    let text = host
        .call_tool("chaos.wasm", "huge", r#"{"bytes":3000000}"#)
        .await
        .unwrap();
    assert!(text.len() < 4096 + 200, "{}", text.len());
    assert!(text.ends_with(
        "[output truncated: 2995904 of 3000000 bytes dropped by the plugin output cap]"
    ));

    let answer = host
        .call_tool("chaos.wasm", "flood", r#"{"lines":10000}"#)
        .await;
    // The guest sees a failed write once the pipe is full (Rust's println!
    // then panics), but the host keeps at most the cap.
    let logged: Vec<String> = warnings
        .logs()
        .into_iter()
        .filter(|w| w.starts_with("chaos.wasm info: stdout: flood flood"))
        .collect();
    assert_eq!(logged.len(), 1, "{:?}", warnings.logs());
    assert!(logged[0].len() < 1100, "{}", logged[0].len());
    if let Err(err) = answer {
        assert!(
            err.starts_with("plugin \"chaos.wasm\": tool flood: crashed"),
            "{err}"
        );
    }
    assert!(host.call_tool("chaos.wasm", "echo", "{}").await.is_ok());
}

#[tokio::test]
async fn files_are_denied_without_a_grant_and_escapes_from_a_grant_are_denied() {
    let project = project_with(&["chaos"]);
    project.write("notes.txt", "granted text");
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
    std::os::unix::fs::symlink(outside.path(), project.file("escape")).unwrap();

    let (host, _, _) = host(&project, &no_user_dir()).await;
    let read = |path: &str| json!({"path": path}).to_string();
    let denied = host
        .call_tool("chaos.wasm", "read", &read("/project/notes.txt"))
        .await
        .unwrap_err();
    assert!(!denied.contains("granted text"), "{denied}");

    let sha = sha256_hex(&std::fs::read(guest("chaos")).unwrap());
    let mut config = no_user_dir();
    config.grants.insert(
        "chaos.wasm".into(),
        PluginGrant {
            sha256: sha.clone(),
            project: Some(ProjectAccess::Read),
            data: false,
            memory_mib: None,
            fetch: Vec::new(),
            headers: Default::default(),
            config: None,
        },
    );
    let (granted, _, _) = host_with(&project, &config).await;
    assert_eq!(
        granted
            .call_tool("chaos.wasm", "read", &read("/project/notes.txt"))
            .await
            .unwrap(),
        "granted text"
    );
    for escape in [
        "/project/../../../../etc/passwd",
        "/project/escape/secret.txt",
        "/etc/passwd",
        outside.path().join("secret.txt").to_str().unwrap(),
    ] {
        let err = granted
            .call_tool("chaos.wasm", "read", &read(escape))
            .await
            .unwrap_err();
        assert!(
            !err.contains("secret") && !err.contains("root:"),
            "{escape}: {err}"
        );
    }
    let write = json!({"path": "/project/new.txt", "content": "x"}).to_string();
    assert!(
        granted
            .call_tool("chaos.wasm", "write", &write)
            .await
            .is_err()
    );
    assert!(!project.file("new.txt").exists());

    // A grant for another hash grants nothing, and says so.
    let mut stale = no_user_dir();
    stale.grants.insert(
        "chaos.wasm".into(),
        PluginGrant {
            sha256: "00".repeat(32),
            project: Some(ProjectAccess::ReadWrite),
            data: false,
            memory_mib: None,
            fetch: Vec::new(),
            headers: Default::default(),
            config: None,
        },
    );
    let (stale_host, warnings, _) = host_with(&project, &stale).await;
    assert!(
        stale_host
            .call_tool("chaos.wasm", "write", &write)
            .await
            .is_err()
    );
    assert!(
        warnings
            .all()
            .iter()
            .any(|w| w.contains("nothing is granted"))
    );

    let mut rw = no_user_dir();
    rw.grants.insert(
        "chaos.wasm".into(),
        PluginGrant {
            sha256: sha,
            project: Some(ProjectAccess::ReadWrite),
            data: false,
            memory_mib: None,
            fetch: Vec::new(),
            headers: Default::default(),
            config: None,
        },
    );
    // `read-write` no longer writes the project: the plugin reads it and
    // keeps its files in its own folder, where nothing else writes.
    let (rw_host, _, _) = host_with(&project, &rw).await;
    assert!(
        rw_host
            .call_tool("chaos.wasm", "write", &write)
            .await
            .is_err()
    );
    assert!(!project.file("new.txt").exists());
    let kept = json!({"path": "/data/kept.txt", "content": "x"}).to_string();
    rw_host
        .call_tool("chaos.wasm", "write", &kept)
        .await
        .unwrap();
    assert_eq!(project.read(".opencode/plugin-data/chaos/kept.txt"), "x");
    let escape_write = json!({"path": "/project/escape/planted.txt", "content": "x"}).to_string();
    assert!(
        rw_host
            .call_tool("chaos.wasm", "write", &escape_write)
            .await
            .is_err()
    );
    assert!(!outside.path().join("planted.txt").exists());
}

async fn host_with(
    project: &Project,
    config: &PluginsConfig,
) -> (PluginHost, Arc<Warnings>, Vec<String>) {
    host(project, config).await
}

#[tokio::test]
async fn malformed_hook_answers_are_faults_and_three_faults_disable_the_plugin() {
    let project = project_with(&["chaos"]);
    let (host, warnings, _) = host(&project, &no_user_dir()).await;
    let payload = json!({"session": "s", "messages": []});
    assert_eq!(
        host.hook("pre-compact", json!({})).await,
        Decision::Block("chaos says no".into())
    );
    for _ in 0..3 {
        assert_eq!(
            host.hook("pre-model-request", payload.clone()).await,
            Decision::Continue
        );
    }
    let all = warnings.all();
    assert!(
        all[0].starts_with(
            "plugin \"chaos.wasm\": hook pre-model-request: modify answer is not valid JSON"
        ),
        "{all:?}"
    );
    assert!(all.contains(
        &"plugin \"chaos.wasm\" is disabled for the rest of this run after 3 faults".to_string()
    ));
    assert!(host.is_disabled("chaos.wasm"));
    // Disabled: no more hook calls, tool calls say so.
    assert_eq!(
        host.hook("pre-compact", json!({})).await,
        Decision::Continue
    );
    let err = host
        .call_tool("chaos.wasm", "echo", "{}")
        .await
        .unwrap_err();
    assert_eq!(err, "plugin \"chaos.wasm\" is not loaded or is disabled");
}

#[tokio::test]
async fn a_panicking_tool_is_a_tool_error_and_the_key_value_store_persists_between_calls() {
    let project = project_with(&["chaos"]);
    let (host, _, _) = host(&project, &no_user_dir()).await;
    let err = host
        .call_tool("chaos.wasm", "panic", "{}")
        .await
        .unwrap_err();
    assert!(
        err.starts_with("plugin \"chaos.wasm\": tool panic: crashed"),
        "{err}"
    );
    assert_eq!(host.call_tool("chaos.wasm", "kv", "{}").await.unwrap(), "1");
    assert_eq!(host.call_tool("chaos.wasm", "kv", "{}").await.unwrap(), "2");
}

/// `pre-tool-use` runs ahead of the permission check: a rewrite runs only
/// when the rewritten call is allowed, a block is a tool error, and a
/// rewrite without `args` is ignored with a warning.
#[tokio::test]
async fn pre_tool_use_rewrites_run_only_when_the_rewritten_call_is_allowed() {
    use orch::config::{Action, PermissionConfig};
    use orch::provider::ToolCall;
    use orch::tools::permissions::Permissions;
    use orch::tools::{ToolContext, ToolRegistry, ToolRouter};

    // chaos rewrites; metrics, next in file order, times the call from
    // the payload chaos changed (its session and call id stay).
    let project = project_with(&["chaos", "metrics"]);
    let (host, warnings, _) = host(&project, &no_user_dir()).await;
    let plugins = host.clone();
    // Only `echo …` commands may run.
    let rules = PermissionConfig {
        tools: [("bash".to_string(), Action::Deny)].into(),
        bash: vec![("echo *".to_string(), Action::Allow)],
    };
    let router = ToolRouter::new(
        ToolRegistry::builtins(),
        Permissions::new(rules, false),
        Arc::new(EventBus::new()),
        Arc::new(host),
    );
    let mut events = router.events.subscribe();
    let ctx = ToolContext {
        root: Arc::new(project.path().to_path_buf()),
        session: "s1".into(),
        agent: "Worker".into(),
        role: orch::agents::Role::Worker,
        call_id: "c1".into(),
        cancel: Default::default(),
        limits: Arc::new(Default::default()),
        sandbox: Some(orch::sandbox::Profile::Write),
        may_write: true,
        seen: Default::default(),
    };
    let bash = |command: &str| ToolCall {
        id: "c1".into(),
        name: "bash".into(),
        arguments: json!({ "command": command }).to_string(),
    };

    let output = router
        .call(&bash("echo original #rewrite:echo rewritten"), &ctx)
        .await;
    assert!(!output.is_error, "{}", output.content);
    assert!(output.content.contains("rewritten"), "{}", output.content);
    assert!(!output.content.contains("original"), "{}", output.content);
    // The begin event shows the arguments that ran.
    let begun: Vec<_> = std::iter::from_fn(|| events.try_recv().ok())
        .filter_map(|envelope| match &envelope.event {
            Event::ToolCallBegin { arguments, .. } => Some(arguments.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(begun, [json!({"command": "echo rewritten"})]);
    let shown: serde_json::Value = serde_json::from_str(
        &plugins
            .call_tool("metrics.wasm", "plugin_metrics", "{}")
            .await
            .unwrap(),
    )
    .unwrap();
    let timed = &shown["tools"]["bash"];
    assert_eq!(timed["calls"], 1, "{shown}");
    assert!(timed["max_ms"].as_f64().unwrap() > 0.0, "{shown}");

    // An allowed command rewritten into a denied one does not run.
    let output = router
        .call(&bash("echo harmless #rewrite:touch pwned"), &ctx)
        .await;
    assert!(output.is_error, "{}", output.content);
    assert!(output.content.contains("says deny"), "{}", output.content);
    assert!(!project.file("pwned").exists());
    // Nor does one rewritten into the built-in destructive list.
    let output = router.call(&bash("echo hi #rewrite:rm -rf /"), &ctx).await;
    assert!(
        output.is_error && output.content.contains("destructive"),
        "{}",
        output.content
    );

    let output = router.call(&bash("echo no #block"), &ctx).await;
    assert_eq!(
        output.content,
        "blocked by a plugin hook (pre-tool-use): chaos blocks this command"
    );

    let output = router.call(&bash("echo kept #bad-rewrite"), &ctx).await;
    assert!(output.content.contains("kept"), "{}", output.content);
    let ignored: Vec<String> = std::iter::from_fn(|| events.try_recv().ok())
        .filter_map(|envelope| match &envelope.event {
            Event::Warning { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        ignored,
        ["hook pre-tool-use: ignored a rewrite of bash's arguments without an object \"args\""]
    );
    assert!(warnings.all().is_empty(), "{:?}", warnings.all());
}

#[test]
fn orch_lists_and_checks_plugins_and_agents_use_plugin_tools() {
    let project = project_with(&["todo_stats", "doc_writer", "metrics"]);
    project.write(".opencode/todo.md", "# Plan\n- [x] one\n- [ ] two\n");
    let (output, stdout, stderr) = run(project.orch().args(["plugins", "list"]));
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.contains("todo-stats 0.1.0 (todo_stats.wasm): Plan progress at a glance"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  tool todo_stats: Count the plan's items"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  agent DocWriter: Writes and updates documentation"),
        "{stdout}"
    );
    assert!(stdout.contains("  granted: nothing"), "{stdout}");

    // A grant in orch.json, tied to the file's hash.
    let sha = sha256_hex(&std::fs::read(guest("todo_stats")).unwrap());
    project.write(
        ".opencode/orch.json",
        &json!({"plugins": {"grants": {"todo_stats.wasm": {"sha256": sha, "project": "read"}}}})
            .to_string(),
    );
    let (output, stdout, stderr) = run(project.orch().args(["plugins", "list"]));
    assert!(output.status.success(), "{stderr}");
    let todo_stats = stdout.split("todo-stats 0.1.0").nth(1).unwrap();
    assert!(
        todo_stats.contains(&format!("  sha256: {sha}\n  granted: project read-only")),
        "{stdout}"
    );

    let (output, stdout, _) = run(project.orch().args(["agents"]));
    assert!(output.status.success());
    assert!(
        stdout.contains("DocWriter (plugin doc_writer.wasm): Writes and updates documentation"),
        "{stdout}"
    );

    let (output, _, stderr) = run(project
        .orch()
        .arg("plugins")
        .arg("check")
        .arg(guest("old_version")));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.contains("plugin \"old_version.wasm\": is built for orch:plugin@0.0.9; this orch supports orch:plugin@0.1.0 and @0.1.1"),
        "{stderr}"
    );

    // The plugin agent runs and calls the plugin tool through the registry.
    project.write(
        "run.json",
        r#"{"agents":{"DocWriter":[
          {"tool_calls":[{"name":"todo_stats","arguments":{"next":1}}]},
          {"tool_calls":[{"name":"plugin_metrics","arguments":{}}]},
          {"text":"Plan checked."}]}}"#,
    );
    let (output, stdout, stderr) = run(project
        .orch()
        .args([
            "--json",
            "--provider",
            "scripted",
            "--script",
            "run.json",
            "run",
            "--agent",
            "DocWriter",
        ])
        .arg("How far is the plan?"));
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let ends: Vec<serde_json::Value> = events(&stdout)
        .into_iter()
        .filter(|e| e["type"] == "tool_call_end")
        .collect();
    assert_eq!(ends.len(), 2, "{stdout}");
    assert_eq!(ends[0]["tool"], "todo_stats");
    assert_eq!(ends[0]["ok"], true);
    let first = ends[0]["preview"].as_str().unwrap();
    assert!(first.contains("1/2 done, 0 in progress, 1 open"), "{first}");
    // The metrics plugin saw the call through the pre/post-tool-use hooks.
    assert_eq!(ends[1]["tool"], "plugin_metrics");
    let second = ends[1]["preview"].as_str().unwrap();
    assert!(
        second.contains(r#""todo_stats":{"calls":1,"failures":0,"#),
        "{second}"
    );
}

/// Wait until `check` holds (file events and the event stream arrive
/// asynchronously; a loaded 2-core machine may take a while).
async fn eventually(what: &str, warnings: &Warnings, mut check: impl FnMut() -> bool) {
    for _ in 0..600 {
        if check() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "timed out waiting until {what}; warnings: {:?}",
        warnings.all()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_are_added_replaced_and_removed_while_running() {
    let project = project_with(&["todo_stats"]);
    let dir = project.file(".opencode/plugins");
    let (host, warnings, _) = host(&project, &no_user_dir()).await;
    let _watcher = host.watch(std::slice::from_ref(&dir)).unwrap();
    let names = |host: &PluginHost| -> Vec<String> {
        host.plugins().iter().map(|p| p.file.clone()).collect()
    };

    std::fs::copy(guest("metrics"), dir.join("metrics.wasm")).unwrap();
    eventually("metrics.wasm is loaded", &warnings, || {
        names(&host).contains(&"metrics.wasm".to_string())
    })
    .await;
    assert!(
        host.call_tool("metrics.wasm", "plugin_metrics", "{}")
            .await
            .is_ok()
    );

    // Rewriting the same bytes changes nothing.
    let before = warnings.all().len();
    std::fs::copy(guest("metrics"), dir.join("metrics.wasm")).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(warnings.all().len(), before, "{:?}", warnings.all());

    // A broken replacement keeps the old version and says why.
    std::fs::write(dir.join("todo_stats.wasm"), b"broken").unwrap();
    eventually("the broken replacement is reported", &warnings, || {
        warnings.all().iter().any(|w| {
            w.starts_with("plugin \"todo_stats.wasm\": is not a valid component")
                && w.ends_with("; the previous version stays active")
        })
    })
    .await;
    assert!(
        host.call_tool("todo_stats.wasm", "todo_stats", "{}")
            .await
            .is_ok()
    );

    // A real replacement takes over (doc-writer under the old file name).
    std::fs::copy(guest("doc_writer"), dir.join("todo_stats.wasm")).unwrap();
    eventually("the replacement is active", &warnings, || {
        host.plugins()
            .iter()
            .any(|p| p.file == "todo_stats.wasm" && p.name == "doc-writer")
    })
    .await;

    std::fs::remove_file(dir.join("metrics.wasm")).unwrap();
    eventually("metrics.wasm is gone", &warnings, || {
        !names(&host).contains(&"metrics.wasm".to_string())
    })
    .await;
    assert!(
        host.call_tool("metrics.wasm", "plugin_metrics", "{}")
            .await
            .is_err()
    );
}

/// The Python and JavaScript example plugins, built with componentize-py and
/// jco (QuickJS) from `<target dir>/plugin-tools/` (`.ci/run` installs them
/// there). Without those tools the test is skipped locally and fails under CI.
fn polyglot_guests() -> Option<(PathBuf, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (componentize_py, jco) =
        crate::support::plugin_toolchains("plugins (Python and JavaScript plugins)")?;
    let out = root.join("target").join("wasm-plugins").join("polyglot");
    std::fs::create_dir_all(&out).unwrap();
    let python = out.join("word_stats.wasm");
    let javascript = out.join("slugify.wasm");
    let wit = root.join("wit");
    let python_source = root.join("example-plugins/python/app.py");
    let javascript_source = root.join("example-plugins/javascript/app.js");
    let contract = wit.join("plugin.wit");
    if fresh(&python, &[&python_source, &contract])
        && fresh(&javascript, &[&javascript_source, &contract])
    {
        return Some((python, javascript));
    }
    let status = Command::new(&componentize_py)
        .arg("-d")
        .arg(&wit)
        .args(["-w", "plugin", "componentize", "-p"])
        .arg(root.join("example-plugins/python"))
        .arg("app")
        .arg("-o")
        .arg(&python)
        .current_dir(&out)
        .status()
        .expect("run componentize-py");
    assert!(status.success(), "componentize-py failed");
    let status = Command::new(&jco)
        .arg("componentize")
        .arg(root.join("example-plugins/javascript/app.js"))
        .arg("--wit")
        .arg(&wit)
        .args(["-n", "plugin", "--backend", "quickjs", "-o"])
        .arg(&javascript)
        .current_dir(&out)
        .status()
        .expect("run jco");
    assert!(status.success(), "jco componentize failed");
    Some((python, javascript))
}

/// Whether `output` exists and is newer than every one of `sources`.
fn fresh(output: &Path, sources: &[&Path]) -> bool {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let Some(built) = modified(output) else {
        return false;
    };
    sources
        .iter()
        .all(|source| modified(source).is_some_and(|time| time < built))
}

#[tokio::test]
async fn python_and_javascript_plugins_load_through_the_same_contract() {
    let Some((python, javascript)) = polyglot_guests() else {
        return;
    };
    let project = project_with(&[]);
    let dir = project.file(".opencode/plugins");
    std::fs::copy(&python, dir.join("word_stats.wasm")).unwrap();
    std::fs::copy(&javascript, dir.join("slugify.wasm")).unwrap();
    let config = PluginsConfig {
        hook_timeout_ms: 10_000,
        ..no_user_dir()
    };
    let (host, warnings, problems) = host(&project, &config).await;
    assert!(problems.is_empty(), "{problems:?}");
    let names: Vec<String> = host.plugins().iter().map(|p| p.name.clone()).collect();
    assert_eq!(names, ["slugify", "word-stats"]);

    let stats = host
        .call_tool(
            "word_stats.wasm",
            "py_word_stats",
            r#"{"text":"one two\nthree"}"#,
        )
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stats).unwrap(),
        json!({"words": 3, "lines": 2, "chars": 13})
    );
    let err = host
        .call_tool("word_stats.wasm", "py_word_stats", "{}")
        .await
        .unwrap_err();
    assert_eq!(err, "py_word_stats needs a string argument `text`");
    assert_eq!(host.metrics()["word-stats/word-stats.calls"], 1.0);

    assert_eq!(
        host.call_tool(
            "slugify.wasm",
            "js_slugify",
            r#"{"title":"Hello, Plugin World!"}"#
        )
        .await
        .unwrap(),
        "hello-plugin-world"
    );
    assert!(
        warnings
            .logs()
            .contains(&"slugify.wasm info: slugify 20 characters".to_string()),
        "{:?}",
        warnings.logs()
    );
    assert_eq!(
        host.hook("pre-compact", json!({"reason": "forbidden"}))
            .await,
        Decision::Block("slugify: compaction forbidden by request".into())
    );
    assert_eq!(
        host.hook("pre-compact", json!({"reason": "window"})).await,
        Decision::Continue
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observing_hook_points_are_called_from_the_event_bus_and_cannot_block() {
    let project = project_with(&["chaos"]);
    let events = Arc::new(EventBus::new());
    let warnings = Arc::new(Warnings::default());
    events.add_sink(warnings.clone());
    let host = PluginHost::with_cache(
        project.path(),
        &no_user_dir(),
        events.clone(),
        None,
        Some(project.code_cache()),
    )
    .unwrap();
    assert!(
        host.load_dirs(&[project.file(".opencode/plugins")])
            .await
            .is_empty()
    );
    let _observer = host.observe(&events);
    events.emit(Event::SessionStarted {
        session: "s7".into(),
        agent: "Worker".into(),
        provider: "scripted".into(),
        model: "m".into(),
    });
    eventually("session-start reached the plugin", &warnings, || {
        warnings.all().contains(
            &"hook session-start: a plugin answered block, but session-start only observes; ignored"
                .to_string(),
        )
    })
    .await;
    let seen = host
        .call_tool("chaos.wasm", "get", r#"{"key":"session-start"}"#)
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&seen).unwrap(),
        json!({"session": "s7", "agent": "Worker", "model": "m"})
    );
}

/// Diagnostics after an edit look at the path that was written, also when
/// a `pre-tool-use` hook rewrote it.
#[test]
fn diagnostics_check_the_path_a_hook_rewrote() {
    let project = project_with(&["chaos"]);
    project.write(
        "run.json",
        &json!({"agents": {"Worker": [
            {"tool_calls": [{"name": "write", "arguments": {"path": "notes.txt#rewrite:bad.py", "content": "def f(:\n"}}]},
            {"text": "done"}
        ]}})
        .to_string(),
    );
    let (output, _, stderr) = run(project.scripted().args(["run", "go"]));
    assert!(output.status.success(), "{stderr}");
    assert!(project.file("bad.py").exists());
    assert!(!project.file("notes.txt#rewrite:bad.py").exists());
    let result = &project.tool_results()[0];
    assert!(
        result.contains("[diagnostics: py_compile — 1 finding(s) in bad.py")
            && !result.contains("notes.txt"),
        "{result}"
    );
}

#[test]
fn a_plugins_agent_writes_only_when_its_plugin_is_granted_read_write() {
    let project = project_with(&["doc_writer"]);
    let tools_of_doc_writer = |project: &Project| {
        let (output, stdout, stderr) = run(project.orch().args(["--json", "agents"]));
        assert!(output.status.success(), "{stderr}");
        let agents: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
        let agent = agents.iter().find(|a| a["name"] == "DocWriter").unwrap();
        let tools: Vec<String> = agent["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        (tools, stderr)
    };
    let (tools, stderr) = tools_of_doc_writer(&project);
    assert!(!tools.contains(&"write".to_string()), "{tools:?}");
    assert!(tools.contains(&"read".to_string()), "{tools:?}");
    assert!(
        stderr.contains("agent \"DocWriter\" does not get write"),
        "{stderr}"
    );

    let sha = sha256_hex(&std::fs::read(guest("doc_writer")).unwrap());
    project.write(
        ".opencode/orch.json",
        &json!({"plugins": {"user_dir": false, "grants": {"doc_writer.wasm": {"sha256": sha, "project": "read-write"}}}})
            .to_string(),
    );
    let (tools, stderr) = tools_of_doc_writer(&project);
    assert!(tools.contains(&"write".to_string()), "{tools:?}");
    assert!(!stderr.contains("does not get"), "{stderr}");
}

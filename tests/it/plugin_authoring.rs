//! Writing a plugin as a new author does, by the docs: `orch plugins new`
//! in a folder outside any orch checkout, the build commands it prints, then
//! `orch plugins check` and a call of its tool through the host. The
//! scaffolds are the sources `docs/plugins.md` shows (a unit test in
//! `src/cli/scaffold.rs` keeps them equal), so this builds the docs'
//! examples too. And `orch plugins list` with two plugins offering one tool.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use orch::config::PluginsConfig;
use orch::events::EventBus;
use orch::hooks::Decision;
use orch::plugins::PluginHost;
use serde_json::json;

use crate::support::project::{Project, run};

/// `orch plugins new word-count --lang LANG` in `project` (a temporary
/// folder, never inside the repository); the plugin's folder and the
/// commands it printed, one per line.
fn scaffold(project: &Project, lang: &str) -> (PathBuf, Vec<String>) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .canonicalize()
        .unwrap();
    assert!(
        !project.path().canonicalize().unwrap().starts_with(&repo),
        "the scaffold must be written outside the orch checkout"
    );
    let (output, stdout, stderr) =
        run(project
            .orch()
            .args(["plugins", "new", "word-count", "--lang", lang]));
    assert!(output.status.success(), "{stderr}");
    let dir = project.file("word-count");
    assert!(dir.join("wit/plugin.wit").is_file(), "{stdout}");
    let commands = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("  "))
        .map(str::to_string)
        .collect();
    (dir, commands)
}

/// `orch plugins check FILE` exits 0 and names the plugin and its tool.
fn check(project: &Project, wasm: &Path) {
    let (output, stdout, stderr) = run(project.orch().arg("plugins").arg("check").arg(wasm));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("ok: speaks orch:plugin@0.1.1"), "{stdout}");
    assert!(
        stdout.contains("word-count 0.1.0 (word_count.wasm): Counts the words of a text"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  tool word_count: Count the words of a text."),
        "{stdout}"
    );
}

/// Load `wasm` in a host and call what the scaffold offers: the tool with
/// text split by newlines and tabs, its error for bad arguments, the metric
/// it records and its `pre-compact` hook.
async fn call(project: &Project, wasm: &Path) {
    let config = PluginsConfig {
        user_dir: false,
        hook_timeout_ms: 10_000,
        tool_timeout_ms: 60_000,
        ..PluginsConfig::default()
    };
    let host = PluginHost::with_cache(
        project.path(),
        &config,
        Arc::new(EventBus::new()),
        None,
        Some(project.code_cache()),
    )
    .unwrap();
    let info = host.load(wasm).await.unwrap();
    assert_eq!(info.file, "word_count.wasm");
    let count = |args: serde_json::Value| {
        let host = host.clone();
        async move {
            host.call_tool("word_count.wasm", "word_count", &args.to_string())
                .await
        }
    };
    assert_eq!(
        count(json!({"text": "one\ntwo\tthree"})).await.unwrap(),
        "3"
    );
    assert_eq!(count(json!({"text": "  "})).await.unwrap(), "0");
    assert_eq!(
        count(json!({"words": "one"})).await.unwrap_err(),
        "word_count needs a string argument `text`"
    );
    assert_eq!(
        host.call_tool("word_count.wasm", "word_count", "not json")
            .await
            .unwrap_err()
            .split(':')
            .take(2)
            .collect::<Vec<_>>(),
        ["word_count", " the arguments are not JSON"]
    );
    assert_eq!(host.metrics()["word-count/word-count.calls"], 2.0);
    assert_eq!(
        host.hook("pre-compact", json!({"reason": "window"})).await,
        Decision::Continue
    );
}

/// Cargo for a wasm build with the outer `cargo test`'s flags and target
/// removed, into `target` (shared between runs: only the plugin recompiles).
fn cargo_wasm(dir: &Path, target: &Path) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_plugin_from_orch_plugins_new_builds_anywhere_and_loads() {
    let project = Project::trusted();
    let (dir, commands) = scaffold(&project, "rust");
    assert_eq!(
        commands,
        [
            "rustup target add wasm32-wasip2",
            "cargo build --target wasm32-wasip2 --release",
            "orch plugins check target/wasm32-wasip2/release/word_count.wasm",
        ]
    );
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(manifest.contains(r#"orch-plugin-sdk = { path = "sdk" }"#));

    // A second scaffold of the same name is refused, and the first one kept.
    let (output, _, stderr) =
        run(project
            .orch()
            .args(["plugins", "new", "word-count", "--lang", "python"]));
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("word-count already exists"), "{stderr}");
    assert!(!dir.join("app.py").exists());

    // The printed build command, run in the plugin's folder.
    let target = crate::support::target_dir().join("plugin-scaffolds");
    let output = cargo_wasm(&dir, &target)
        .args(["build", "--target", "wasm32-wasip2", "--release"])
        .output()
        .expect("run cargo");
    assert!(
        output.status.success(),
        "building the Rust scaffold failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let wasm = target.join("wasm32-wasip2/release/word_count.wasm");
    let installed = project.file(".opencode/plugins/word_count.wasm");
    std::fs::create_dir_all(installed.parent().unwrap()).unwrap();
    std::fs::copy(&wasm, &installed).unwrap();
    check(&project, &installed);
    call(&project, &installed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_javascript_plugins_from_orch_plugins_new_build_and_load() {
    let Some((componentize_py, jco)) =
        crate::support::plugin_toolchains("plugin_authoring (Python and JavaScript scaffolds)")
    else {
        return;
    };
    for (lang, tool, install) in [
        (
            "python",
            &componentize_py,
            ".venv/bin/pip install -r requirements.txt",
        ),
        ("js", &jco, "npm install --no-audit --no-fund"),
    ] {
        let project = Project::trusted();
        let (dir, commands) = scaffold(&project, lang);
        // The pinned install, then the build; its tool is the one
        // `.ci/run` installed from the same pins.
        assert!(commands.iter().any(|c| c == install), "{commands:?}");
        let build = &commands[commands.len() - 2];
        let (program, args) = build.split_once(' ').unwrap();
        assert!(
            program.ends_with("componentize-py") || program == "npx",
            "{build}"
        );
        let args: Vec<&str> = args.split(' ').skip_while(|arg| *arg == "jco").collect();
        let output = Command::new(tool)
            .args(&args)
            .current_dir(&dir)
            .output()
            .expect("run the plugin toolchain");
        assert!(
            output.status.success(),
            "`{build}` failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            commands.last().unwrap(),
            "orch plugins check word_count.wasm"
        );
        let wasm = dir.join("word_count.wasm");
        check(&project, &wasm);
        call(&project, &wasm).await;
    }
}

#[test]
fn plugins_list_flags_a_tool_two_plugins_offer() {
    let project = Project::trusted();
    let dir = project.file(".opencode/plugins");
    std::fs::create_dir_all(&dir).unwrap();
    let todo_stats = crate::plugins::guest("todo_stats");
    std::fs::copy(&todo_stats, dir.join("todo_stats.wasm")).unwrap();
    std::fs::copy(&todo_stats, dir.join("todo_stats_copy.wasm")).unwrap();

    let (output, stdout, stderr) = run(project.orch().args(["plugins", "list"]));
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "warning: plugins \"todo_stats.wasm\" and \"todo_stats_copy.wasm\" both offer a tool named \"todo_stats\"; agents get only the one of \"todo_stats.wasm\""
        ),
        "{stderr}"
    );
    // The copy's tool line is followed by the flag naming the first plugin.
    let copy: Vec<&str> = stdout
        .split("(todo_stats_copy.wasm)")
        .nth(1)
        .unwrap()
        .lines()
        .collect();
    let tool = copy
        .iter()
        .position(|line| line.starts_with("  tool todo_stats: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(
        copy[tool + 1],
        "    NOT OFFERED: plugin \"todo_stats.wasm\" already offers a tool named \"todo_stats\"",
        "{stdout}"
    );
    let first = stdout
        .split("(todo_stats.wasm)")
        .nth(1)
        .unwrap()
        .split("(todo_stats_copy.wasm)")
        .next()
        .unwrap();
    assert!(!first.contains("NOT OFFERED"), "{stdout}");

    let (output, stdout, _) = run(project.orch().args(["--json", "plugins", "list"]));
    assert!(output.status.success());
    let list: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(list[0]["tools"][0].get("shadowed_by"), None);
    assert_eq!(list[1]["file"], "todo_stats_copy.wasm");
    assert_eq!(list[1]["tools"][0]["shadowed_by"], "todo_stats.wasm");

    // One plugin alone: nothing flagged.
    std::fs::remove_file(dir.join("todo_stats_copy.wasm")).unwrap();
    let (output, stdout, stderr) = run(project.orch().args(["plugins", "list"]));
    assert!(output.status.success());
    assert!(!stdout.contains("NOT OFFERED") && !stderr.contains("both offer"));
}

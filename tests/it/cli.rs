//! The real `orch` binary: files it changes, exit codes, the JSONL stream,
//! configuration errors and layering, `orch init` and the bundled plugins.

use std::path::PathBuf;
use std::time::SystemTime;

use orch::config::ProjectAccess;
use orch::plugins::{bundled, sha256_hex};
use serde_json::Value;

use crate::support::project::{Project, events, run, types};

const ADD_SCRIPT: &str = r#"{"agents":{"Worker":[
  {"text":"Reading first.","tool_calls":[
     {"name":"list","arguments":{}},
     {"name":"write","arguments":{"path":"src/lib.rs","content":"pub fn add(a: i64, b: i64) -> i64 {\n    a + b\n}\n"}}]},
  {"tool_calls":[{"name":"edit","arguments":{"path":"src/lib.rs","old":"    a + b\n}\n","new":"    a + b\n}\n\n#[test]\nfn adds() {\n    assert_eq!(add(2, 3), 5);\n}\n"}}]},
  {"text":"Added add(a, b) with a unit test."}
]}}"#;

#[test]
fn scripted_run_edits_files_and_exits_zero() {
    let project = Project::new();
    project.write("run.json", ADD_SCRIPT);
    let (output, stdout, stderr) = run(project
        .orch()
        .args([
            "--provider",
            "scripted",
            "--script",
            "run.json",
            "run",
            "--agent",
            "worker",
        ])
        .arg("Add add(a, b) to src/lib.rs with a unit test"));
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let lib = project.read("src/lib.rs");
    assert!(lib.contains("pub fn add(a: i64, b: i64) -> i64"), "{lib}");
    assert!(lib.contains("assert_eq!(add(2, 3), 5);"), "{lib}");
    assert!(
        stdout.contains("Added add(a, b) with a unit test."),
        "{stdout}"
    );
    assert!(stdout.contains("→ write src/lib.rs"), "{stdout}");

    // The transcript holds the header and every message, in order.
    let sessions: Vec<_> = std::fs::read_dir(project.file(".opencode/sessions"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(sessions.len(), 1);
    let transcript = std::fs::read_to_string(&sessions[0]).unwrap();
    let roles: Vec<String> = transcript
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| {
            v["message"]["role"]
                .as_str()
                .unwrap_or("header")
                .to_string()
        })
        .collect();
    assert_eq!(
        roles,
        [
            "header",
            "user",
            "assistant",
            "tool",
            "tool",
            "assistant",
            "tool",
            "assistant"
        ]
    );
}

#[test]
fn json_flag_after_the_subcommand_prints_one_event_per_line() {
    let project = Project::new();
    project.write("run.json", ADD_SCRIPT);
    let (output, stdout, stderr) = run(project.orch().args([
        "run",
        "--json",
        "--provider",
        "scripted",
        "--script",
        "run.json",
        "--agent",
        "Worker",
        "go",
    ]));
    assert!(output.status.success(), "{stderr}");
    let events = events(&stdout);
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let types = types(&events);
    assert_eq!(types.first().map(String::as_str), Some("session_started"));
    assert_eq!(types.last().map(String::as_str), Some("session_finished"));
    assert_eq!(types.iter().filter(|t| *t == "tool_call_begin").count(), 3);
    assert_eq!(types.iter().filter(|t| *t == "tool_call_end").count(), 3);
    assert_eq!(types.iter().filter(|t| *t == "model_request").count(), 3);
    let finished = events.last().unwrap();
    assert_eq!(finished["outcome"], "completed");
    assert_eq!(finished["turns"], 3);
    let write_end = events
        .iter()
        .find(|e| e["type"] == "tool_call_end" && e["tool"] == "write")
        .unwrap();
    assert_eq!(write_end["ok"], true);
}

#[test]
fn version_prints_the_crate_version() {
    let project = Project::new();
    let (output, stdout, _) = run(project.orch().arg("--version"));
    assert!(output.status.success());
    assert_eq!(stdout.trim(), format!("orch {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn usage_and_config_errors_exit_two_and_say_what_is_wrong() {
    let project = Project::trusted();
    project.write("run.json", ADD_SCRIPT);

    let (output, _, stderr) = run(project.orch().args(["run", "--agent", "Worker", "go"]));
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("no model provider configured"), "{stderr}");

    let (output, _, stderr) = run(project.orch().args([
        "--provider",
        "scripted",
        "--script",
        "run.json",
        "run",
        "--agent",
        "nobody",
        "go",
    ]));
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("unknown agent \"nobody\""), "{stderr}");
    assert!(stderr.contains("Worker"), "{stderr}");

    let (output, _, stderr) = run(project.orch().args(["--provider", "gemini", "run", "go"]));
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("unknown provider \"gemini\""), "{stderr}");

    let (output, _, _) = run(project.orch().args(["fly"]));
    assert_eq!(output.status.code(), Some(2));

    project.write(
        ".opencode/orch.json",
        r#"{"session": {"max_turns": "many"}}"#,
    );
    let (output, _, stderr) = run(project.orch().args([
        "--provider",
        "scripted",
        "--script",
        "run.json",
        "run",
        "go",
    ]));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.contains(".opencode/orch.json: key \"session.max_turns\""),
        "{stderr}"
    );

    project.write(".opencode/orch.json", "{}");
    project.write(
        "bad.json",
        r#"{"agents":{"Worker":[{"text":"x","tool_calls":[{"nam":"read"}]}]}}"#,
    );
    let (output, _, stderr) = run(project.orch().args([
        "--provider",
        "scripted",
        "--script",
        "bad.json",
        "run",
        "go",
    ]));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.contains("bad.json: key \"agents.Worker[0].tool_calls[0]"),
        "{stderr}"
    );
}

#[test]
fn a_script_that_runs_out_stops_with_exit_one_and_says_why() {
    let project = Project::new();
    project.write(
        "short.json",
        r#"{"agents":{"Worker":[{"tool_calls":[{"name":"list","arguments":{}}]}]}}"#,
    );
    let (output, stdout, _) = run(project.orch().args([
        "--provider",
        "scripted",
        "--script",
        "short.json",
        "run",
        "go",
    ]));
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout.contains("Worker failed after 2 turns"), "{stdout}");
    assert!(
        stdout.contains("has used all 1 scripted replies"),
        "{stdout}"
    );
}

#[test]
fn max_turns_stops_the_session_with_exit_one() {
    let project = Project::new();
    let looping = r#"{"tool_calls":[{"name":"list","arguments":{}}]}"#;
    project.write(
        "loop.json",
        &format!(r#"{{"agents":{{"Worker":[{looping},{looping},{looping},{looping}]}}}}"#),
    );
    let (output, stdout, _) = run(project.orch().args([
        "--provider",
        "scripted",
        "--script",
        "loop.json",
        "run",
        "--max-turns",
        "2",
        "go",
    ]));
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout.contains("stopped after 2 model turns (max_turns)"),
        "{stdout}"
    );
}

#[test]
fn project_config_env_and_flags_layer_in_order() {
    let project = Project::trusted();
    project.write(
        "a.json",
        r#"{"agents":{"Worker":[{"text":"from script a"}]}}"#,
    );
    project.write(
        "b.json",
        r#"{"agents":{"Worker":[{"text":"from script b"}]}}"#,
    );
    project.write_user_config(r#"{"provider":"openai","model":"user-model"}"#);
    project.write(
        ".opencode/orch.json",
        r#"{"provider":"scripted","script":"a.json"}"#,
    );

    let (output, stdout, stderr) = run(project.orch().args(["run", "go"]));
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("from script a"), "{stdout}");
    // The user file's model applies where the project file is silent.
    assert!(stdout.contains("(scripted/user-model)"), "{stdout}");

    let (output, stdout, _) = run(project
        .orch()
        .env("ORCH_MODEL", "env-model")
        .args(["run", "go"]));
    assert!(output.status.success());
    assert!(stdout.contains("(scripted/env-model)"), "{stdout}");

    let (output, stdout, _) = run(project.orch().env("ORCH_MODEL", "env-model").args([
        "--model",
        "flag-model",
        "--script",
        "b.json",
        "run",
        "go",
    ]));
    assert!(output.status.success());
    assert!(stdout.contains("from script b"), "{stdout}");
    assert!(stdout.contains("(scripted/flag-model)"), "{stdout}");
}

#[test]
fn ask_rules_deny_without_a_terminal_and_tell_the_model() {
    let project = Project::trusted();
    project.write(
        ".opencode/orch.json",
        r#"{"permissions":{"tools":{"write":"ask"}}}"#,
    );
    project.write(
        "run.json",
        r#"{"agents":{"Worker":[
          {"tool_calls":[{"name":"write","arguments":{"path":"x.txt","content":"x"}}]},
          {"when":"denied","text":"I could not write x.txt."}]}}"#,
    );
    let (output, stdout, stderr) = run(project.scripted().args(["run", "go"]));
    assert!(output.status.success(), "{stderr}");
    assert!(!project.file("x.txt").exists());
    let events = events(&stdout);
    let resolved = events
        .iter()
        .find(|e| e["type"] == "approval_resolved")
        .expect("an approval_resolved event");
    assert_eq!(resolved["approved"], false);
    assert_eq!(resolved["by"], "headless");
    let end = events
        .iter()
        .find(|e| e["type"] == "tool_call_end")
        .unwrap();
    assert_eq!(end["ok"], false);
}

#[test]
fn api_keys_never_reach_output_transcripts_or_errors() {
    let project = Project::trusted();
    let key = "sk-test-0123456789abcdef-secret";
    // Nothing listens on port 9: the provider fails at once, without retries.
    project.write(
        ".opencode/orch.json",
        r#"{"retry": {"max_attempts": 1}, "session": {"connect_timeout_ms": 2000}}"#,
    );
    let (output, stdout, stderr) = run(project
        .orch()
        .env("OPENAI_API_KEY", key)
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .args(["--model", "m", "--json", "run", "hello"]));
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let finished = events(&stdout).pop().unwrap();
    assert_eq!(finished["outcome"], "failed");
    assert!(!stdout.contains(key) && !stderr.contains(key));
    for entry in std::fs::read_dir(project.file(".opencode/sessions")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(!text.contains(key));
    }
}

/// The bundled plugins, asserting there are some: an empty bundle means the
/// wasm32-wasip2 build failed when orch was built.
fn bundled_plugins() -> &'static [(&'static str, &'static [u8])] {
    assert!(
        !bundled::PLUGINS.is_empty(),
        "this orch was built without its bundled plugins: {}",
        bundled::MISSING.unwrap_or("no reason recorded")
    );
    bundled::PLUGINS
}

/// Every file under `.opencode/` with its bytes and modification time.
fn snapshot(project: &Project) -> Vec<(PathBuf, Vec<u8>, SystemTime)> {
    let mut files = Vec::new();
    let mut dirs = vec![project.file(".opencode")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
                files.push((path.clone(), std::fs::read(&path).unwrap(), modified));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn init_installs_the_bundled_plugins_and_grants_what_they_need() {
    let plugins = bundled_plugins();
    let project = Project::trusted();
    let (output, stdout, stderr) = run(project.orch().arg("init"));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for (file, bytes) in plugins {
        let path = project.file(&format!(".opencode/plugins/{file}"));
        assert_eq!(std::fs::read(&path).unwrap(), *bytes, "{file}");
        assert!(
            stdout.contains(&format!("installed {}", path.display())),
            "{stdout}"
        );
    }

    // `orch plugins list` loads every one of them, each with the access
    // orch.json grants it (bound to the installed file's sha256).
    let (output, stdout, stderr) = run(project.orch().args(["--json", "plugins", "list"]));
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let listed: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    let mut files: Vec<&str> = listed.iter().map(|p| p["file"].as_str().unwrap()).collect();
    files.sort();
    let bundled: Vec<&str> = plugins.iter().map(|(file, _)| *file).collect();
    assert_eq!(files, bundled);
    for (file, bytes) in plugins {
        let plugin = listed.iter().find(|p| p["file"] == *file).unwrap();
        assert_eq!(plugin["sha256"], sha256_hex(bytes), "{file}");
        let needs = bundled::needs(file);
        let granted = match (
            needs.and_then(|needs| needs.project),
            needs.is_some_and(|needs| needs.data),
        ) {
            (Some(ProjectAccess::Read), false) => "project read-only",
            (Some(ProjectAccess::ReadWrite), false) => {
                "project read-only, its agents write through orch's tools; its own data folder"
            }
            (None, true) => "its own data folder",
            (Some(_), true) => unreachable!("no bundled plugin needs both"),
            (None, false) => "nothing",
        };
        assert_eq!(plugin["granted"], granted, "{file}");
    }
    let metrics = listed.iter().find(|p| p["file"] == "metrics.wasm");
    assert_eq!(metrics.unwrap()["granted"], "its own data folder");
    let (_, stdout, _) = run(project.orch().args(["plugins", "list"]));
    assert!(stdout.contains("granted: its own data folder"), "{stdout}");
}

#[test]
fn a_second_init_leaves_everything_as_it_is() {
    let plugins = bundled_plugins();
    let project = Project::trusted();
    let (output, _, stderr) = run(project.orch().arg("init"));
    assert!(output.status.success(), "{stderr}");
    let before = snapshot(&project);
    let (output, stdout, stderr) = run(project.orch().arg("init"));
    assert!(output.status.success(), "{stderr}");
    assert_eq!(snapshot(&project), before);
    for (file, _) in plugins {
        let path = project.file(&format!(".opencode/plugins/{file}"));
        assert!(
            stdout.contains(&format!("{} is up to date", path.display())),
            "{stdout}"
        );
    }
    assert!(stdout.contains("exists; left as it is"), "{stdout}");
    // The grants init wrote are there: nothing to add.
    assert!(!stdout.contains("add to"), "{stdout}");
    assert!(!stdout.contains("installed"), "{stdout}");
}

#[test]
fn init_keeps_the_users_plugin_and_config_and_prints_the_missing_grants() {
    let plugins = bundled_plugins();
    let project = Project::trusted();
    project.write(".opencode/orch.json", r#"{"verify": []}"#);
    project.write(".opencode/plugins/metrics.wasm", "my own metrics plugin");
    let (output, stdout, stderr) = run(project.orch().arg("init"));
    assert!(output.status.success(), "{stderr}");
    assert_eq!(project.read(".opencode/orch.json"), r#"{"verify": []}"#);
    assert_eq!(
        project.read(".opencode/plugins/metrics.wasm"),
        "my own metrics plugin"
    );
    let kept = project.file(".opencode/plugins/metrics.wasm");
    assert!(
        stdout.contains(&format!("kept {}: it differs", kept.display())),
        "{stdout}"
    );
    // The grants to add name the file, its sha256 and the access; none for
    // the kept file, whose content orch does not know.
    for (file, bytes) in plugins {
        let Some(needs) = bundled::needs(file) else {
            continue;
        };
        let line = stdout
            .lines()
            .find(|line| line.contains(&format!("\"{file}\"")));
        if *file == "metrics.wasm" {
            assert!(line.is_none(), "{stdout}");
            continue;
        }
        let line = line.unwrap_or_else(|| panic!("no grant line for {file}:\n{stdout}"));
        assert!(line.contains(&sha256_hex(bytes)), "{line}");
        assert!(line.contains(needs.why), "{line}");
        match needs.project {
            Some(ProjectAccess::Read) => assert!(line.contains(r#""project": "read""#), "{line}"),
            Some(ProjectAccess::ReadWrite) => {
                assert!(line.contains(r#""project": "read-write""#), "{line}")
            }
            None => assert!(!line.contains("\"project\""), "{line}"),
        }
        assert_eq!(line.contains(r#""data": true"#), needs.data, "{line}");
        assert_eq!(needs.fetch, line.contains(r#""fetch": []"#), "{line}");
    }
}

#[test]
fn every_flag_and_value_is_checked_before_anything_runs() {
    let project = Project::trusted();
    project.write("run.json", r#"{"agents":{}}"#);
    let scripted = ["--provider", "scripted", "--script", "run.json"];
    let big_goal = "x".repeat(100_000);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--max-iterations", "0", "task", "g"],
            "--max-iterations",
        ),
        (vec!["--budget-usd", "NaN", "task", "g"], "greater than 0"),
        (vec!["--budget-usd=-1", "task", "g"], "--budget-usd"),
        (vec!["--budget-tokens", "0", "task", "g"], "--budget-tokens"),
        (vec!["--model", "", "task", "g"], "empty"),
        (vec!["run", "--max-turns", "0", "p"], "--max-turns"),
        (vec!["task", &big_goal], "mission.max_goal_bytes"),
    ];
    for (args, expected) in cases {
        let (output, stdout, stderr) = run(project.orch().args(scripted).args(&args));
        let shown: Vec<&str> = args.iter().map(|a| &a[..a.len().min(20)]).collect();
        assert_eq!(output.status.code(), Some(2), "{shown:?}: {stderr}");
        assert!(stderr.contains(expected), "{shown:?}: {stderr}");
        assert!(stdout.is_empty(), "{shown:?}: {stdout}");
    }
    // Nothing started: no mission folder, no plan.
    assert!(!project.file(".opencode/missions").exists());
    assert!(!project.file(".opencode/todo.md").exists());
    // Configured values are checked alike, naming the file and the key.
    project.write(".opencode/orch.json", r#"{"mission":{"budget_usd":-1}}"#);
    let (output, _, stderr) = run(project.orch().args(scripted).args(["task", "g"]));
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(r#"key "mission.budget_usd""#), "{stderr}");
    project.write(
        ".opencode/orch.json",
        r#"{"agents":{"Worker":{"model":" "}}}"#,
    );
    let (output, _, stderr) = run(project.orch().args(scripted).args(["task", "g"]));
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(r#"key "agents.Worker.model""#), "{stderr}");
    project.write(
        ".opencode/orch.json",
        r#"{"session":{"stream_idle_timeout_ms":200000}}"#,
    );
    let (output, _, stderr) = run(project.orch().args(scripted).args(["task", "g"]));
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(r#"key "retry.deadline_ms""#), "{stderr}");
    // A 0 that would break what it sizes, and empty names as keys.
    for (config, key, expected) in [
        (
            r#"{"tools":{"bash_max_timeout_ms":0}}"#,
            "tools.bash_max_timeout_ms",
            "greater than 0",
        ),
        (
            r#"{"tools":{"background_timeout_ms":0}}"#,
            "tools.background_timeout_ms",
            "greater than 0",
        ),
        (
            r#"{"tools":{"background_max_timeout_ms":0}}"#,
            "tools.background_max_timeout_ms",
            "greater than 0",
        ),
        (
            r#"{"tools":{"background_output_bytes":0}}"#,
            "tools.background_output_bytes",
            "greater than 0",
        ),
        (
            r#"{"tools":{"read_default_lines":0}}"#,
            "tools.read_default_lines",
            "greater than 0",
        ),
        (
            r#"{"mission":{"verify_output_bytes":0}}"#,
            "mission.verify_output_bytes",
            "greater than 0",
        ),
        (
            r#"{"plugins":{"max_output_bytes":0}}"#,
            "plugins.max_output_bytes",
            "greater than 0",
        ),
        (
            r#"{"plugins":{"max_stdio_bytes":0}}"#,
            "plugins.max_stdio_bytes",
            "greater than 0",
        ),
        (
            r#"{"retry":{"base_delay_ms":0}}"#,
            "retry.base_delay_ms",
            "greater than 0",
        ),
        (
            r#"{"diagnostics":{"max":0}}"#,
            "diagnostics.max",
            "greater than 0",
        ),
        (
            r#"{"agents":{"":{"model":"m"}}}"#,
            "agents",
            "expected agent names as keys, got an empty one",
        ),
        (
            r#"{"concurrency":{"agents":{" ":1}}}"#,
            "concurrency.agents",
            "agent names",
        ),
        (
            r#"{"concurrency":{"models":{"":1}}}"#,
            "concurrency.models",
            "model names",
        ),
        (
            r#"{"pricing":{"":{"input":1,"output":1}}}"#,
            "pricing",
            "model names",
        ),
        (
            r#"{"models":{"":{"context_window":1000,"max_output":100}}}"#,
            "models",
            "model names",
        ),
    ] {
        project.write(".opencode/orch.json", config);
        let (output, stdout, stderr) = run(project.orch().args(scripted).args(["task", "g"]));
        assert_eq!(output.status.code(), Some(2), "{config}: {stderr}");
        assert!(stderr.contains("orch.json"), "{config}: {stderr}");
        assert!(
            stderr.contains(&format!("key \"{key}\"")),
            "{config}: {stderr}"
        );
        assert!(stderr.contains(expected), "{config}: {stderr}");
        assert!(stdout.is_empty(), "{config}: {stdout}");
    }
    assert!(!project.file(".opencode/missions").exists());
}

#[test]
fn a_provider_without_key_or_base_url_fails_at_start_for_both_wire_formats() {
    let project = Project::trusted();
    for provider in ["openai", "anthropic"] {
        let (output, stdout, stderr) =
            run(project.orch().args(["--provider", provider, "task", "g"]));
        assert_eq!(output.status.code(), Some(2), "{provider}: {stderr}");
        assert!(
            stderr.contains(&format!("provider {provider} needs an API key")),
            "{stderr}"
        );
        assert!(stdout.is_empty());
    }
    assert!(!project.file(".opencode/missions").exists());
    project.write(
        ".opencode/orch.json",
        r#"{"retry":{"max_attempts":1,"turn_retries":0}}"#,
    );
    // A local server or proxy needs no key, for either wire format.
    for (provider, variable) in [
        ("openai", "OPENAI_BASE_URL"),
        ("anthropic", "ANTHROPIC_BASE_URL"),
    ] {
        let (output, stdout, stderr) = run(project
            .orch()
            .env(variable, "http://127.0.0.1:9/v1")
            .args(["--provider", provider, "--model", "m", "plan", "g"]));
        assert!(!stderr.contains("needs an API key"), "{provider}: {stderr}");
        // It went as far as the server (which is not there).
        assert!(
            stdout.contains("127.0.0.1:9") || stderr.contains("127.0.0.1:9"),
            "{provider}: {stdout}{stderr}"
        );
        assert_ne!(output.status.code(), Some(0));
    }
}

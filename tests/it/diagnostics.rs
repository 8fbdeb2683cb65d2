//! Diagnostics after edits, through the real binary on real Rust and Python
//! projects: a broken edit's result carries the checker's findings, and the
//! fix's result says the file is clean.

use serde_json::{Value, json};

use crate::support::project::{Project, call, run};

/// Run the scripted Worker to its end; its tool results.
fn run_worker(project: &Project, script: &Value) -> Vec<String> {
    project.write("run.json", &script.to_string());
    let (output, _, stderr) = run(project.orch().args([
        "--provider",
        "scripted",
        "--script",
        "run.json",
        "run",
        "go",
    ]));
    assert!(output.status.success(), "{stderr}");
    project.tool_results()
}

fn edit(path: &str, old: &str, new: &str) -> Value {
    json!({"tool_calls": [{"name": "edit", "arguments": {"path": path, "old": old, "new": new}}]})
}

#[test]
fn a_broken_rust_edit_shows_cargo_check_findings_until_fixed() {
    let project = Project::new();
    project
        .write(
            "Cargo.toml",
            "[package]\nname = \"diag\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
        )
        .write(
            "src/lib.rs",
            "pub fn double(x: i32) -> i32 {\n    x * 2\n}\n",
        );
    let script = json!({"agents": {"Worker": [
        {"tool_calls": [call("read", json!({"path": "src/lib.rs"}))]},
        edit("src/lib.rs", "x * 2", "y * 2"),
        edit("src/lib.rs", "y * 2", "x * 2"),
        {"text": "fixed"}
    ]}});
    let results = run_worker(&project, &script);
    // The first result is the read before the edits.
    let results = &results[1..];
    assert!(
        results[0].contains("[diagnostics: cargo check — 1 finding(s) in src/lib.rs]"),
        "{}",
        results[0]
    );
    assert!(
        results[0].contains("src/lib.rs:2:5: error[E0425]"),
        "{}",
        results[0]
    );
    assert!(
        results[1].ends_with("[diagnostics: cargo check — no problems in src/lib.rs]"),
        "{}",
        results[1]
    );
}

#[test]
fn a_broken_python_edit_shows_py_compile_findings_until_fixed() {
    let project = Project::new();
    project.write("app.py", "def greet(name):\n    return 'hi ' + name\n");
    let script = json!({"agents": {"Worker": [
        {"tool_calls": [call("read", json!({"path": "app.py"}))]},
        edit("app.py", "def greet(name):", "def greet(name)"),
        edit("app.py", "def greet(name)\n", "def greet(name):\n"),
        {"text": "fixed"}
    ]}});
    let results = run_worker(&project, &script);
    // The first result is the read before the edits.
    let results = &results[1..];
    assert!(
        results[0].contains("[diagnostics: py_compile — "),
        "{}",
        results[0]
    );
    assert!(results[0].contains("app.py"), "{}", results[0]);
    assert!(
        results[0].contains("SyntaxError") || results[0].contains("line 1"),
        "{}",
        results[0]
    );
    assert!(
        results[1].ends_with("[diagnostics: py_compile — no problems in app.py]"),
        "{}",
        results[1]
    );
}

#[test]
fn missing_checkers_are_a_note_and_diagnostics_can_be_turned_off() {
    let project = Project::trusted();
    project.write(
        ".opencode/orch.json",
        r#"{"diagnostics": {"commands": ["definitely-not-a-checker x.txt"]}}"#,
    );
    let script = json!({"agents": {"Worker": [
        {"tool_calls": [{"name": "write", "arguments": {"path": "x.txt", "content": "x"}}]},
        {"text": "done"}
    ]}});
    let results = run_worker(&project, &script);
    assert!(
        results[0].contains("[diagnostics: definitely-not-a-checker x.txt"),
        "{}",
        results[0]
    );
    assert!(results[0].contains("not found"), "{}", results[0]);

    let project = Project::trusted();
    project.write(
        ".opencode/orch.json",
        r#"{"diagnostics": {"after_edits": false}}"#,
    );
    project.write("Cargo.toml", "[package]\n");
    assert!(!run_worker(&project, &script)[0].contains("diagnostics"));
}

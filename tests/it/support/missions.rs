//! The simulated missions' projects and settings: a small real Rust
//! library and a small real Python package for the simulated team to
//! complete, orch's settings for them, and running `orch task` against the
//! simulator. Shared by the tests (`tests/it/sim.rs`) and the benchmark
//! (`benches/sim.rs`).

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::project::{Project, events};
use super::sim::{Fault, Item, Sim, Wire, Work};

/// The small Rust library the team completes: three modules with failing
/// tests and `todo!()` bodies.
pub fn rust_project(project: &Project) -> Work {
    project.write(
        "Cargo.toml",
        "[package]\nname = \"simcalc\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n",
    );
    project.write(
        "src/lib.rs",
        "pub mod add;\npub mod stats;\npub mod words;\n",
    );
    let stub = |signature: &str, test: &str| {
        format!("{signature} {{\n    todo!()\n}}\n\n#[cfg(test)]\nmod tests {{\n{test}}}\n")
    };
    project.write(
        "src/add.rs",
        &stub("pub fn add(a: i64, b: i64) -> i64", ADD_TEST),
    );
    project.write(
        "src/words.rs",
        &stub("pub fn count_words(text: &str) -> usize", WORDS_TEST),
    );
    project.write(
        "src/stats.rs",
        &stub("pub fn mean(values: &[f64]) -> Option<f64>", STATS_TEST),
    );
    project.write(".gitignore", "/target\n");
    commit_all(project);
    Work {
        items: vec![
            Item {
                id: "T1",
                text: "implement add(a, b) in src/add.rs",
                file: "src/add.rs",
                content: RUST_ADD,
                test: "cargo test --quiet add:: 2>&1 | tail -n 5",
            },
            Item {
                id: "T2",
                text: "implement count_words(text) in src/words.rs",
                file: "src/words.rs",
                content: RUST_WORDS,
                test: "cargo test --quiet words:: 2>&1 | tail -n 5",
            },
            Item {
                id: "T3",
                text: "implement mean(values) in src/stats.rs",
                file: "src/stats.rs",
                content: RUST_STATS,
                test: "cargo test --quiet stats:: 2>&1 | tail -n 5",
            },
        ],
        test_all: "cargo test --quiet 2>&1 | tail -n 5",
        overview: "src/lib.rs",
    }
}

const ADD_TEST: &str = "    #[test]\n    fn adds() {\n        assert_eq!(super::add(2, 3), 5);\n        assert_eq!(super::add(-2, 2), 0);\n    }\n";
const WORDS_TEST: &str = "    #[test]\n    fn counts_words() {\n        assert_eq!(super::count_words(\"\"), 0);\n        assert_eq!(super::count_words(\"  one  two\\tthree \"), 3);\n    }\n";
const STATS_TEST: &str = "    #[test]\n    fn means() {\n        assert_eq!(super::mean(&[]), None);\n        assert_eq!(super::mean(&[1.0, 2.0, 6.0]), Some(3.0));\n    }\n";

const RUST_ADD: &str = "pub fn add(a: i64, b: i64) -> i64 {\n    a + b\n}\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn adds() {\n        assert_eq!(super::add(2, 3), 5);\n        assert_eq!(super::add(-2, 2), 0);\n    }\n}\n";
const RUST_WORDS: &str = "pub fn count_words(text: &str) -> usize {\n    text.split_whitespace().count()\n}\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn counts_words() {\n        assert_eq!(super::count_words(\"\"), 0);\n        assert_eq!(super::count_words(\"  one  two\\tthree \"), 3);\n    }\n}\n";
const RUST_STATS: &str = "pub fn mean(values: &[f64]) -> Option<f64> {\n    if values.is_empty() {\n        return None;\n    }\n    Some(values.iter().sum::<f64>() / values.len() as f64)\n}\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn means() {\n        assert_eq!(super::mean(&[]), None);\n        assert_eq!(super::mean(&[1.0, 2.0, 6.0]), Some(3.0));\n    }\n}\n";

/// The small Python package the team completes: three modules raising
/// `NotImplementedError`, with pytest tests that fail until they are done.
pub fn python_project(project: &Project) -> Work {
    project.write("pytest.ini", "[pytest]\ntestpaths = tests\n");
    project.write("calc/__init__.py", "\"\"\"A small calculator.\"\"\"\n");
    project.write(
        "calc/add.py",
        "def add(a, b):\n    raise NotImplementedError\n",
    );
    project.write(
        "calc/words.py",
        "def count_words(text):\n    raise NotImplementedError\n",
    );
    project.write(
        "calc/stats.py",
        "def mean(values):\n    raise NotImplementedError\n",
    );
    project.write(
        "tests/test_add.py",
        "from calc.add import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n    assert add(-2, 2) == 0\n",
    );
    project.write(
        "tests/test_words.py",
        "from calc.words import count_words\n\n\ndef test_count_words():\n    assert count_words(\"\") == 0\n    assert count_words(\"  one  two\\tthree \") == 3\n",
    );
    project.write(
        "tests/test_stats.py",
        "from calc.stats import mean\n\n\ndef test_mean():\n    assert mean([]) is None\n    assert mean([1.0, 2.0, 6.0]) == 3.0\n",
    );
    project.write(".gitignore", "__pycache__/\n.pytest_cache/\n");
    commit_all(project);
    Work {
        items: vec![
            Item {
                id: "T1",
                text: "implement add(a, b) in calc/add.py",
                file: "calc/add.py",
                content: "def add(a, b):\n    return a + b\n",
                test: "python3 -m pytest -q tests/test_add.py 2>&1 | tail -n 3",
            },
            Item {
                id: "T2",
                text: "implement count_words(text) in calc/words.py",
                file: "calc/words.py",
                content: "def count_words(text):\n    return len(text.split())\n",
                test: "python3 -m pytest -q tests/test_words.py 2>&1 | tail -n 3",
            },
            Item {
                id: "T3",
                text: "implement mean(values) in calc/stats.py",
                file: "calc/stats.py",
                content: "def mean(values):\n    if not values:\n        return None\n    return sum(values) / len(values)\n",
                test: "python3 -m pytest -q tests/test_stats.py 2>&1 | tail -n 3",
            },
        ],
        test_all: "python3 -m pytest -q 2>&1 | tail -n 3",
        overview: "calc/__init__.py",
    }
}

/// Make the project a git repository with everything committed, as a
/// user's checkout is: the team's writing tasks then work in worktrees of
/// their own.
fn commit_all(project: &Project) {
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "-A", "--", ".", ":(exclude).opencode"],
        &[
            "-c",
            "core.hooksPath=/dev/null",
            "commit",
            "-q",
            "-m",
            "start",
        ],
    ] {
        let output = std::process::Command::new("git")
            .current_dir(project.path())
            .args(args)
            .env("GIT_AUTHOR_NAME", "user")
            .env("GIT_AUTHOR_EMAIL", "user@example.com")
            .env("GIT_COMMITTER_NAME", "user")
            .env("GIT_COMMITTER_EMAIL", "user@example.com")
            .output()
            .expect("git");
        assert!(output.status.success(), "git {args:?}: {output:?}");
    }
}

/// Each task's side effect: the lines of `effects/<item>.log`, sorted.
pub fn effects(project: &Project) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_dir(project.file("effects"))
        .map(|entries| {
            entries
                .flatten()
                .flat_map(|entry| {
                    std::fs::read_to_string(entry.path())
                        .unwrap_or_default()
                        .lines()
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                .collect()
        })
        .unwrap_or_default();
    lines.sort();
    lines
}

/// The faults of `seed`: none for the first two (the baseline), then a
/// different mix for each.
pub fn faults(seed: u64) -> BTreeSet<Fault> {
    const ALL: [Fault; 6] = [
        Fault::ResetAfterContent,
        Fault::ErrorAfterContent,
        Fault::CutCommander,
        Fault::TwoStalls,
        Fault::Storm429,
        Fault::EmptyLengthCut,
    ];
    if seed < 2 {
        return BTreeSet::new();
    }
    ALL.iter()
        .enumerate()
        .filter(|(bit, _)| !(seed * 37 + *bit as u64 * 11).is_multiple_of(3))
        .map(|(_, fault)| *fault)
        .collect()
}

/// orch's settings for simulated missions: short idle timeouts and
/// back-offs so faults cost milliseconds, not minutes.
pub fn sim_config() -> Value {
    json!({
        "session": {"stream_idle_timeout_ms": 400, "max_turns": 80},
        "retry": {"max_attempts": 8, "base_delay_ms": 20, "max_delay_ms": 300, "deadline_ms": 30000, "turn_retries": 4},
        "mission": {"max_iterations": 12},
        "notifications": false
    })
}

/// The result of one simulated mission.
pub struct Outcome {
    pub code: Option<i32>,
    pub events: Vec<Value>,
    pub stderr: String,
}

/// Run `orch task` in `project` against `sim`.
/// `orch <args>` in `project`, pointed at `sim` speaking `wire`.
pub fn orch(project: &Project, sim: &Sim, wire: Wire, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::from(project.orch());
    // Each project builds in its own `target/`: cargo names the artifacts
    // of a crate the same wherever it lives, so projects sharing one build
    // folder would run each other's stale builds.
    command.env("CARGO_TARGET_DIR", project.path().join("target"));
    match wire {
        Wire::OpenAi => {
            command
                .env("OPENAI_BASE_URL", sim.base_url())
                .args(["--model", "qwen2.5-coder:14b"]);
        }
        Wire::Anthropic => {
            command
                .env("ANTHROPIC_BASE_URL", sim.base_url())
                .env("ANTHROPIC_API_KEY", "sk-ant-simulated-key")
                .args(["--provider", "anthropic", "--model", "claude-sonnet-4-5"]);
        }
    }
    command.args(args);
    command
}

/// Run `orch task` in `project` against `sim` to its end.
pub async fn mission(project: &Project, sim: &Sim, wire: Wire, extra: &[&str]) -> Outcome {
    let mut command = orch(project, sim, wire, &["--json"]);
    command
        .args(extra)
        .args(["task", "Implement the calculator"]);
    let output = command.output().await.expect("run orch");
    Outcome {
        code: output.status.code(),
        events: events(&String::from_utf8_lossy(&output.stdout)),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

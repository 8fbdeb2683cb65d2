//! Worktree benchmarks (run with `cargo bench --bench worktree`):
//!
//! - builds: a crate with dependencies from the local cargo registry
//!   (`itoa`, `serde`, `serde_json`); an incremental `cargo check` in the
//!   project after touching one file, against the first `cargo check` in a
//!   fresh task worktree (its build folder seeded from the project's), and
//!   the disk a worktree and its build folder take;
//! - merge-back: from a task's completion to its one-file change landing in
//!   the project (`Worktrees::land`), 20 times;
//! - a mission of 10 parallel scripted Workers, each editing its own module
//!   of a 40-module crate, with and without worktrees: wall time.
//!
//! Prints medians; asserts nothing.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use orch::paths::build_dir;
use orch::worktree::{Landing, Worktrees, disk_usage};
use serde_json::json;

fn main() {
    println!("orch worktree benchmarks");
    builds();
    merge_back();
    missions();
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("git");
    assert!(status.success(), "git {args:?}");
}

/// A git repository holding a crate of `modules` modules.
fn crate_repo(dir: &Path, modules: usize, dependencies: &str) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"benchcrate\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n{dependencies}"
        ),
    )
    .unwrap();
    std::fs::write(dir.join(".gitignore"), "/target\n").unwrap();
    let mut lib = String::new();
    for m in 0..modules {
        lib.push_str(&format!("pub mod m{m:02};\n"));
        std::fs::write(
            dir.join(format!("src/m{m:02}.rs")),
            format!("pub fn f{m:02}() -> u32 {{\n    {m}\n}}\n"),
        )
        .unwrap();
    }
    std::fs::write(dir.join("src/lib.rs"), lib).unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["add", "-A"]);
    git(
        dir,
        &[
            "-c",
            "core.hooksPath=/dev/null",
            "commit",
            "-q",
            "-m",
            "start",
        ],
    );
}

fn cargo_check(dir: &Path, target: &Path) -> Option<Duration> {
    let started = Instant::now();
    let status = Command::new("cargo")
        .args(["check", "--offline", "--quiet"])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .ok()?;
    status.success().then(|| started.elapsed())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

fn builds() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    crate_repo(
        &root,
        20,
        "itoa = \"1\"\nserde = { version = \"1\", features = [\"derive\"] }\nserde_json = \"1\"\n",
    );
    let target = root.join("target");
    if Command::new("cargo")
        .args(["generate-lockfile", "--offline"])
        .current_dir(&root)
        .status()
        .map_or(true, |status| !status.success())
        || cargo_check(&root, &target).is_none()
    {
        println!("builds: skipped, the dependencies are not in the local cargo registry");
        return;
    }
    // Incremental: touch one module, check again.
    let mut incremental = Vec::new();
    for round in 0..5 {
        std::fs::write(
            root.join("src/m00.rs"),
            format!("pub fn f00() -> u32 {{\n    {round}\n}}\n"),
        )
        .unwrap();
        incremental.extend(cargo_check(&root, &target));
    }
    git(&root, &["checkout", "-q", "--", "src/m00.rs"]);
    // SAFETY: the benchmark is single-threaded here.
    unsafe { std::env::set_var("CARGO_TARGET_DIR", &target) };
    let mut fresh = Vec::new();
    let mut disk = 0;
    let worktrees = Worktrees::new(&root, "m-bench").expect("a repository");
    for task in 0..3 {
        let tree = worktrees.start(&format!("task_{task}"), "").unwrap();
        let build = build_dir(&tree.path).unwrap();
        fresh.extend(cargo_check(&tree.path, &build));
        disk = disk_usage(&tree.path) + disk_usage(&build);
        worktrees.remove(&tree).unwrap();
    }
    worktrees.clean_up().unwrap();
    let (inc, first) = (median(&mut incremental), median(&mut fresh));
    println!(
        "builds: incremental cargo check in the project {inc:.2?}, first cargo check in a fresh worktree {first:.2?} ({:.1}x), a worktree and its build folder {}",
        first.as_secs_f64() / inc.as_secs_f64(),
        mib(disk)
    );
}

fn merge_back() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    crate_repo(&root, 40, "");
    let worktrees = Worktrees::new(&root, "m-bench").unwrap();
    let mut samples = Vec::new();
    for round in 0..20 {
        let task = format!("task_{round}");
        let tree = worktrees.start(&task, "").unwrap();
        std::fs::write(
            tree.path.join(format!("src/m{:02}.rs", round % 40)),
            format!("pub fn f() -> u32 {{\n    {}\n}}\n", round + 100),
        )
        .unwrap();
        let started = Instant::now();
        let landed = worktrees.land(&task, &tree).unwrap();
        samples.push(started.elapsed());
        assert!(matches!(landed, Landing::Landed(_)));
        worktrees.remove(&tree).unwrap();
    }
    worktrees.clean_up().unwrap();
    println!(
        "merge-back: a task's completion to its change landing, median {:.1?} (20 tasks, 40-module crate)",
        median(&mut samples)
    );
}

fn missions() {
    const WORKERS: usize = 10;
    let mut commander = vec![
        json!({"when": "Mission goal", "tool_calls": (0..WORKERS).map(|w| json!({"name": "delegate_task", "arguments": {"agent": "Worker", "description": format!("module {w:02}"), "prompt": format!("Job f{w:02}()"), "background": true}})).collect::<Vec<_>>()}),
    ];
    for _ in 0..(WORKERS * 2) {
        commander.push(json!({"when": "Background task", "text": "Noted."}));
        commander.push(json!({"when": "started task_", "text": "Waiting."}));
    }
    commander.push(json!({"when": "not complete", "text": "Stopping."}));
    let mut worker = Vec::new();
    for w in 0..WORKERS {
        worker.push(json!({"when": format!("Job f{w:02}()"), "tool_calls": [{"name": "read", "arguments": {"path": format!("src/m{w:02}.rs")}}]}));
        worker.push(json!({"when": format!("pub fn f{w:02}()"), "tool_calls": [{"name": "edit", "arguments": {"path": format!("src/m{w:02}.rs"), "old": format!("    {w}\n"), "new": format!("    {}\n", w + 1000)}}]}));
        worker.push(json!({"when": format!("edited src/m{w:02}.rs"), "text": "Done."}));
    }
    let script = json!({"agents": {"Commander": commander, "Worker": worker}});
    for worktrees in [false, true] {
        let mut samples = Vec::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let root = std::fs::canonicalize(dir.path()).unwrap();
            crate_repo(&root, 40, "");
            std::fs::create_dir_all(root.join(".opencode")).unwrap();
            std::fs::write(
                root.join(".opencode/orch.json"),
                json!({"verify": [], "worktrees": worktrees, "notifications": false}).to_string(),
            )
            .unwrap();
            std::fs::write(root.join("run.json"), script.to_string()).unwrap();
            let home = tempfile::tempdir().unwrap();
            let started = Instant::now();
            let output = Command::new(env!("CARGO_BIN_EXE_orch"))
                .current_dir(&root)
                .args([
                    "--provider",
                    "scripted",
                    "--script",
                    "run.json",
                    "--max-iterations",
                    "1",
                    "task",
                    "Ten modules",
                ])
                .env("CI", "1")
                .env("ORCH_TRUST_PROJECT", "1")
                .env("XDG_CONFIG_HOME", home.path())
                .env("XDG_CACHE_HOME", home.path().join("cache"))
                .output()
                .expect("orch");
            samples.push(started.elapsed());
            let landed = (0..WORKERS)
                .filter(|w| {
                    std::fs::read_to_string(root.join(format!("src/m{w:02}.rs")))
                        .is_ok_and(|text| text.contains(&format!("{}", w + 1000)))
                })
                .count();
            assert_eq!(
                landed,
                WORKERS,
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        println!(
            "mission of {WORKERS} parallel Workers, {}: median {} ms (5 runs)",
            if worktrees {
                "each in its own worktree"
            } else {
                "sharing the tree"
            },
            median(&mut samples).as_millis()
        );
    }
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

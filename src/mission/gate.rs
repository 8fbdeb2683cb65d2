//! The completion gate: the plan is done at every depth, no sync issue is
//! open, and the project's own checks pass. The checks are the `verify`
//! commands of orch.json, else detected from the project. When the gate
//! fails, `continuation` says exactly what failed, so the Commander's next
//! turn starts from evidence.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::events::{PlanCounts, VerifyResult};
use crate::process::{self, Job, Shell};
use crate::todo::{Plan, SyncIssues};

/// The gate's verdict and the evidence behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct GateReport {
    pub passed: bool,
    pub counts: PlanCounts,
    /// `ID (status): text` for every item not done.
    pub open_items: Vec<String>,
    pub sync_issues: Vec<String>,
    pub verify: Vec<VerifyResult>,
    /// Why the plan cannot count as done regardless of its items (no plan,
    /// no items).
    pub note: Option<String>,
    /// Files the gate could not read, with the error: the gate never
    /// guesses what they say.
    pub unreadable: Vec<String>,
}

/// Plan counts for events.
pub fn plan_counts(plan: &Plan) -> PlanCounts {
    (&plan.progress().counts).into()
}

/// The pure part of the gate: the plan and the sync issues as they were
/// read (`Ok(None)`: the file does not exist; `Err`: it could not be read,
/// which fails the gate). Verification is not part of it: it runs only once
/// this part passes.
pub fn check_plan(
    plan: Result<Option<&Plan>, String>,
    sync: Result<Option<&SyncIssues>, String>,
) -> GateReport {
    let mut unreadable = Vec::new();
    let (counts, open_items, note) = match plan {
        Err(err) => {
            unreadable.push(err);
            (PlanCounts::default(), Vec::new(), None)
        }
        Ok(None) => (
            PlanCounts::default(),
            Vec::new(),
            Some("there is no plan yet: .opencode/todo.md does not exist".to_string()),
        ),
        Ok(Some(plan)) => {
            let progress = plan.progress();
            let note = (progress.counts.total() == 0)
                .then(|| "the plan in .opencode/todo.md has no items".to_string());
            (
                plan_counts(plan),
                progress.blockers.iter().map(|b| b.to_string()).collect(),
                note,
            )
        }
    };
    let sync_issues: Vec<String> = match sync {
        Err(err) => {
            unreadable.push(err);
            Vec::new()
        }
        Ok(sync) => sync
            .map(|s| {
                s.open
                    .iter()
                    .map(|i| format!("line {}: {}", i.line, i.text))
                    .collect()
            })
            .unwrap_or_default(),
    };
    GateReport {
        passed: note.is_none()
            && unreadable.is_empty()
            && open_items.is_empty()
            && sync_issues.is_empty(),
        counts,
        open_items,
        sync_issues,
        verify: Vec::new(),
        note,
        unreadable,
    }
}

/// The commands that verify this project: configured ones, else detected.
pub fn verify_commands(root: &Path, configured: Option<&[String]>) -> Vec<String> {
    if let Some(commands) = configured {
        return commands.to_vec();
    }
    detect(root)
}

/// Cargo, npm, pytest, go and make, in that order of preference.
pub fn detect(root: &Path) -> Vec<String> {
    let exists = |name: &str| root.join(name).exists();
    if exists("Cargo.toml") {
        return vec!["cargo build".into(), "cargo test".into()];
    }
    if let Ok(text) = std::fs::read_to_string(root.join("package.json"))
        && let Ok(manifest) = serde_json::from_str::<serde_json::Value>(&text)
        && let Some(test) = manifest["scripts"]["test"].as_str()
        // npm init's placeholder only fails.
        && !test.contains("no test specified")
    {
        return vec!["npm test".into()];
    }
    let pytest_config = exists("pytest.ini")
        || exists("conftest.py")
        || std::fs::read_to_string(root.join("pyproject.toml"))
            .is_ok_and(|text| text.contains("[tool.pytest"))
        || std::fs::read_to_string(root.join("setup.cfg"))
            .is_ok_and(|text| text.contains("[tool:pytest]"));
    if pytest_config || exists("tests") && has_python_tests(&root.join("tests")) {
        return vec!["python3 -m pytest -q".into()];
    }
    if exists("go.mod") {
        return vec!["go test ./...".into()];
    }
    for makefile in ["Makefile", "makefile", "GNUmakefile"] {
        if let Ok(text) = std::fs::read_to_string(root.join(makefile))
            && text.lines().any(|line| line.starts_with("test:"))
        {
            return vec!["make test".into()];
        }
    }
    Vec::new()
}

fn has_python_tests(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with("test_") && name.ends_with(".py")
        })
    })
}

/// Run the commands in order, stopping at the first failure.
pub async fn run_verification(
    root: &Path,
    commands: &[String],
    timeout: Duration,
    output_bytes: usize,
    cancel: &CancellationToken,
) -> Vec<VerifyResult> {
    let mut results = Vec::new();
    for command in commands {
        let started = Instant::now();
        // Configured commands obey only the built-in deny list: the gate
        // must stay passable whatever the permission rules say.
        if let Some(why) = crate::tools::permissions::destructive(command) {
            results.push(VerifyResult {
                command: command.clone(),
                passed: false,
                exit_code: None,
                duration_ms: 0,
                output_tail: format!("not run: it {why} (orch's built-in deny list)"),
            });
            break;
        }
        let job = Job::shell(Shell::Sh, command, root, timeout, cancel, output_bytes);
        let result = match process::run(job).await {
            Ok(run) => {
                let passed = run.exit_code == Some(0) && !run.timed_out && !run.cancelled;
                let mut tail = String::new();
                if !passed {
                    tail = run.output;
                    if run.timed_out {
                        tail.push_str(&format!("\n[timed out after {} ms]", timeout.as_millis()));
                    }
                }
                VerifyResult {
                    command: command.clone(),
                    passed,
                    exit_code: run.exit_code,
                    duration_ms: started.elapsed().as_millis() as u64,
                    output_tail: tail,
                }
            }
            Err(err) => VerifyResult {
                command: command.clone(),
                passed: false,
                exit_code: None,
                duration_ms: started.elapsed().as_millis() as u64,
                output_tail: format!("could not start: {err}"),
            },
        };
        let passed = result.passed;
        results.push(result);
        if !passed || cancel.is_cancelled() {
            break;
        }
    }
    results
}

/// The one message the Commander gets when the gate fails.
pub fn continuation(report: &GateReport, iteration: u32, max_iterations: u32) -> String {
    let mut text = format!(
        "The mission is not complete yet: the engine's completion gate failed (iteration {iteration} of {max_iterations}).\n"
    );
    if let Some(note) = &report.note {
        text.push_str(&format!("\n- {note}. Have the Planner write the plan.\n"));
    }
    for problem in &report.unreadable {
        text.push_str(&format!(
            "\n- {problem}. The gate cannot pass while it cannot read this file; restore it (or ask the user).\n"
        ));
    }
    if !report.open_items.is_empty() {
        text.push_str(&format!(
            "\nPlan items not done ({} of {}):\n",
            report.open_items.len(),
            report.counts.total
        ));
        for item in &report.open_items {
            text.push_str(&format!("- {item}\n"));
        }
    }
    if !report.sync_issues.is_empty() {
        text.push_str("\nOpen sync issues in .opencode/sync-issues.md:\n");
        for issue in &report.sync_issues {
            text.push_str(&format!("- {issue}\n"));
        }
    }
    for result in report.verify.iter().filter(|r| !r.passed) {
        let status = match result.exit_code {
            Some(code) => format!("exited with code {code}"),
            None => "did not finish".to_string(),
        };
        text.push_str(&format!(
            "\nVerification failed: `{}` {status}. The end of its output:\n```\n{}\n```\n",
            result.command,
            result.output_tail.trim_end()
        ));
    }
    text.push_str(
        "\nContinue: delegate what remains (Workers fix, the Reviewer verifies and marks items done), then end your turn.",
    );
    // Verification output is a process's: a secret it printed stays here.
    crate::secrets::redact(&text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(text: &str) -> Plan {
        Plan::parse(text)
    }

    #[test]
    fn every_item_at_every_depth_must_be_done() {
        let cases = [
            ("# Mission: x\n- [x] T1: a\n- [x] T2: b\n", true),
            ("- [x] T1: a\n  - [ ] T1.1: nested\n", false),
            ("- [x] T1: a\n- [/] T2: b\n", false),
            ("- [x] T1: a\n- [-] T2: b\n", false),
            ("# Mission: nothing planned\n", false),
        ];
        for (text, passed) in cases {
            let report = check_plan(Ok(Some(&plan(text))), Ok(None));
            assert_eq!(report.passed, passed, "{text}");
        }
        assert!(!check_plan(Ok(None), Ok(None)).passed);
        // An unreadable plan or sync-issues file fails, naming the error.
        let done = plan("- [x] T1: a\n");
        let report = check_plan(
            Err("cannot read .opencode/todo.md: denied".into()),
            Ok(None),
        );
        assert!(!report.passed);
        assert_eq!(report.unreadable, ["cannot read .opencode/todo.md: denied"]);
        let report = check_plan(
            Ok(Some(&done)),
            Err("sync-issues.md is not UTF-8 text".into()),
        );
        assert!(!report.passed);
        assert_eq!(report.unreadable, ["sync-issues.md is not UTF-8 text"]);
    }

    #[test]
    fn open_sync_issues_block() {
        let done = plan("- [x] T1: a\n");
        let sync =
            SyncIssues::parse("# Sync Issues\n- [ ] SYNC-1: api mismatch\n- [x] SYNC-2: fixed\n");
        let report = check_plan(Ok(Some(&done)), Ok(Some(&sync)));
        assert!(!report.passed);
        assert_eq!(report.sync_issues, ["line 2: SYNC-1: api mismatch"]);
        let clean = SyncIssues::parse("# Sync Issues\n\nNo open issues.\n");
        assert!(check_plan(Ok(Some(&done)), Ok(Some(&clean))).passed);
    }

    #[test]
    fn continuation_names_items_and_failing_commands() {
        let mut report = check_plan(
            Ok(Some(&plan("- [x] T1: a\n- [-] T2: add mul\n"))),
            Ok(None),
        );
        report.verify.push(VerifyResult {
            command: "cargo test".into(),
            passed: false,
            exit_code: Some(101),
            duration_ms: 10,
            output_tail: "test mul ... FAILED".into(),
        });
        report
            .unreadable
            .push("cannot read .opencode/sync-issues.md: permission denied".into());
        let text = continuation(&report, 2, 25);
        assert!(
            text.contains(
                "cannot read .opencode/sync-issues.md: permission denied. The gate cannot pass"
            ),
            "{text}"
        );
        assert!(text.contains("iteration 2 of 25"), "{text}");
        assert!(text.contains("- T2 (failed): add mul"), "{text}");
        assert!(text.contains("`cargo test` exited with code 101"), "{text}");
        assert!(text.contains("test mul ... FAILED"), "{text}");
    }

    #[test]
    fn detects_the_project_kind() {
        let dir = tempfile::tempdir().unwrap();
        assert!(detect(dir.path()).is_empty());
        std::fs::write(
            dir.path().join("Makefile"),
            "build:\n\tcc x.c\ntest:\n\t./run\n",
        )
        .unwrap();
        assert_eq!(detect(dir.path()), ["make test"]);
        std::fs::write(dir.path().join("go.mod"), "module x\n").unwrap();
        assert_eq!(detect(dir.path()), ["go test ./..."]);
        std::fs::write(
            dir.path().join("package.json"),
            r#"{"scripts":{"test":"echo \"Error: no test specified\" && exit 1"}}"#,
        )
        .unwrap();
        assert_eq!(detect(dir.path()), ["go test ./..."]);
        std::fs::write(
            dir.path().join("package.json"),
            r#"{"scripts":{"test":"vitest run"}}"#,
        )
        .unwrap();
        assert_eq!(detect(dir.path()), ["npm test"]);
        std::fs::write(dir.path().join("Cargo.toml"), "[package]\n").unwrap();
        assert_eq!(detect(dir.path()), ["cargo build", "cargo test"]);
        assert_eq!(
            verify_commands(dir.path(), Some(&["true".to_string()])),
            ["true"]
        );
        assert!(verify_commands(dir.path(), Some(&[])).is_empty());
    }
}

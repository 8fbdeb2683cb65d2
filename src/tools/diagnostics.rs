//! Diagnostics after edits: after a turn that wrote or edited files, the
//! project's fast checker runs once for all of them and its first findings
//! about those files are appended to the last edit's result, so a broken edit
//! is fixed in the next turn instead of discovered at the end. The
//! `diagnostics` tool runs the same check on demand.
//!
//! Checkers are detected from the project and the touched files — `cargo
//! check` (Rust), `tsc --noEmit` when a tsconfig exists and tsc is installed
//! (TypeScript/JavaScript), `python3 -m py_compile` plus `ruff` when
//! installed (Python), `go vet` (Go) — or configured in orch.json. A checker
//! that is not installed is skipped with a one-line note, never an error.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::path::{relative, resolve};
use super::{Tool, ToolContext, ToolOutput, parse_args};
use crate::config::DiagnosticsConfig;
use crate::process::{self, Job, Shell};
use crate::provider::ToolSpec;

/// One check to run.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Check {
    /// What the report calls it (`cargo check`).
    name: String,
    /// The shell command line.
    command: String,
}

/// Runs the project's checkers for touched files.
pub struct Checker {
    config: DiagnosticsConfig,
}

impl Checker {
    pub fn new(config: DiagnosticsConfig) -> Self {
        Checker { config }
    }

    /// Whether edits are followed by a check.
    pub fn after_edits(&self) -> bool {
        self.config.after_edits
    }

    /// Check the tree the calling session works in (`ctx.root`: the project,
    /// or its task's worktree) for `touched` (relative paths), in the
    /// caller's sandbox profile; the report to show the model, or `None`
    /// when nothing applies to these files.
    pub async fn check(&self, ctx: &super::ToolContext, touched: &[String]) -> Option<String> {
        let (checks, notes) = self.plan(&ctx.root, touched);
        if checks.is_empty() && notes.is_empty() {
            return None;
        }
        let mut report = notes;
        for check in checks {
            report.push(self.run(ctx, &check, touched).await);
        }
        Some(report.join("\n"))
    }

    /// The checks for these files, and notes for checkers that are missing.
    fn plan(&self, root: &Path, touched: &[String]) -> (Vec<Check>, Vec<String>) {
        if let Some(commands) = &self.config.commands {
            let checks = commands
                .iter()
                .map(|command| Check {
                    name: command.clone(),
                    command: command.clone(),
                })
                .collect();
            return (checks, Vec::new());
        }
        let has = |ext: &[&str]| {
            touched.iter().any(|path| {
                Path::new(path)
                    .extension()
                    .is_some_and(|e| ext.iter().any(|x| e == *x))
            })
        };
        let exists = |name: &str| root.join(name).exists();
        let mut checks = Vec::new();
        let mut notes = Vec::new();
        // A check that needs `tool` on PATH; a note when it is missing.
        let mut need = |tool: Option<&str>, name: &str, command: String| match tool {
            Some(tool) if !installed(tool) => {
                notes.push(format!("[diagnostics skipped: {tool} is not installed]"));
            }
            _ => checks.push(Check {
                name: name.into(),
                command,
            }),
        };
        if has(&["rs"]) && exists("Cargo.toml") {
            need(
                Some("cargo"),
                "cargo check",
                "cargo check --quiet --message-format short --color never".into(),
            );
        }
        if has(&["ts", "tsx", "js", "jsx", "mts", "cts"]) && exists("tsconfig.json") {
            if root.join("node_modules/.bin/tsc").exists() {
                need(
                    None,
                    "tsc",
                    "node_modules/.bin/tsc --noEmit --pretty false".into(),
                );
            } else {
                need(Some("tsc"), "tsc", "tsc --noEmit --pretty false".into());
            }
        }
        let python: Vec<&String> = touched.iter().filter(|p| p.ends_with(".py")).collect();
        if !python.is_empty() {
            let files = python
                .iter()
                .map(|p| quote(p))
                .collect::<Vec<_>>()
                .join(" ");
            need(
                Some("python3"),
                "py_compile",
                format!("python3 -m py_compile {files}"),
            );
            if installed("ruff") {
                need(
                    None,
                    "ruff",
                    format!("ruff check --output-format concise --no-cache {files}"),
                );
            }
        }
        if has(&["go"]) && exists("go.mod") {
            need(Some("go"), "go vet", "go vet ./...".into());
        }
        (checks, notes)
    }

    async fn run(&self, ctx: &super::ToolContext, check: &Check, touched: &[String]) -> String {
        if let Some(why) = super::permissions::destructive(&check.command) {
            return format!(
                "[diagnostics: {} not run: it {why} (orch's built-in deny list)]",
                check.name
            );
        }
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let mut job = Job::shell(
            Shell::Sh,
            &check.command,
            &ctx.root,
            timeout,
            &ctx.cancel,
            64 * 1024,
        );
        job.sandbox = ctx.sandbox;
        let run = match process::run(job).await {
            Ok(run) => run,
            Err(err) => return format!("[diagnostics: {} could not start: {err}]", check.name),
        };
        if run.timed_out {
            return format!(
                "[diagnostics: {} did not finish within {} s]",
                check.name,
                timeout.as_secs()
            );
        }
        if run.cancelled {
            return format!("[diagnostics: {} cancelled]", check.name);
        }
        summarize(
            &check.name,
            &run.output,
            run.exit_code == Some(0),
            touched,
            self.config.max,
        )
    }
}

/// The report for one check: its findings about `touched` first, then how
/// many others there are.
fn summarize(name: &str, output: &str, passed: bool, touched: &[String], max: usize) -> String {
    let files = touched.join(", ");
    // A checker's own closing summary ("could not compile", "generated 2
    // warnings") is not a finding.
    let finding = |line: &str| {
        let lower = line.to_ascii_lowercase();
        let summary = lower.contains("could not compile") || lower.contains(" generated ");
        !summary
            && (lower.contains("error")
                || lower.contains("warning")
                || line.contains(": E")
                || line.contains(": F"))
    };
    let mine: Vec<&str> = output
        .lines()
        .filter(|line| touched.iter().any(|path| line.contains(path.as_str())))
        .collect();
    let elsewhere = output
        .lines()
        .filter(|line| finding(line) && !touched.iter().any(|path| line.contains(path.as_str())))
        .count();
    if mine.is_empty() {
        return if passed {
            format!("[diagnostics: {name} — no problems in {files}]")
        } else {
            let first = output
                .lines()
                .find(|line| !line.trim().is_empty())
                .unwrap_or("no output");
            format!(
                "[diagnostics: {name} failed, nothing in {files}; {elsewhere} finding(s) elsewhere, first: {}]",
                first.trim()
            )
        };
    }
    let mut report = format!(
        "[diagnostics: {name} — {} finding(s) in {files}{}]\n",
        mine.len(),
        if elsewhere > 0 {
            format!(", {elsewhere} elsewhere")
        } else {
            String::new()
        }
    );
    for line in mine.iter().take(max) {
        report.push_str(line.trim_end());
        report.push('\n');
    }
    if mine.len() > max {
        report.push_str(&format!("[… {} more]\n", mine.len() - max));
    }
    report.trim_end().to_string()
}

/// Whether `program` is on PATH.
fn installed(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            let candidate = dir.join(program);
            candidate.is_file()
                && std::fs::metadata(&candidate).is_ok_and(|m| {
                    std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
                })
        })
    })
}

/// `path` as one shell word.
fn quote(path: &str) -> String {
    format!("'{}'", path.replace('\'', "'\\''"))
}

/// `diagnostics(path?)`: the project's fast check, on demand.
pub struct Diagnostics(pub std::sync::Arc<Checker>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    path: Option<String>,
}

#[async_trait]
impl Tool for Diagnostics {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "diagnostics".into(),
            description: "Run the project's fast checker (cargo check, tsc, py_compile/ruff, go vet, or the configured one) and report findings, for one file or the whole project.".into(),
            parameters: json!({
                "type": "object",
                "properties": {"path": {"type": "string"}},
                "additionalProperties": false
            }),
        }
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> ToolOutput {
        let args: Args = match parse_args("diagnostics", args) {
            Ok(args) => args,
            Err(output) => return output,
        };
        let touched = match args.path {
            Some(path) => match resolve(&ctx.root, &path) {
                Ok(resolved) => vec![relative(&ctx.root, &resolved)],
                Err(message) => return ToolOutput::error(message),
            },
            None => project_sources(&ctx.root),
        };
        match self.0.check(ctx, &touched).await {
            Some(report) => ToolOutput::ok(report),
            None => ToolOutput::ok(
                "no checker applies to this project (configure `diagnostics.commands` in orch.json)",
            ),
        }
    }
}

/// Representative files of the whole project, so every checker that applies
/// runs: one per language found at the top levels.
fn project_sources(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in crate::walk::project(root)
        .max_depth(Some(3))
        .build()
        .flatten()
    {
        let path = entry.path();
        let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
            continue;
        };
        if ["rs", "ts", "tsx", "js", "py", "go"].contains(&ext)
            && !found
                .iter()
                .any(|f: &String| f.ends_with(&format!(".{ext}")))
        {
            found.push(relative(root, path));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touched(paths: &[&str]) -> Vec<String> {
        paths.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn findings_about_touched_files_come_first_and_are_capped() {
        let output = "src/lib.rs:3:5: error[E0425]: cannot find value `x`\n\
                      src/lib.rs:9:1: warning: unused import\n\
                      src/other.rs:1:1: error: broken elsewhere\n\
                      error: could not compile `demo`\n";
        let report = summarize("cargo check", output, false, &touched(&["src/lib.rs"]), 1);
        assert_eq!(
            report,
            "[diagnostics: cargo check — 2 finding(s) in src/lib.rs, 1 elsewhere]\n\
             src/lib.rs:3:5: error[E0425]: cannot find value `x`\n[… 1 more]"
        );
        let clean = summarize("cargo check", "", true, &touched(&["src/lib.rs"]), 10);
        assert_eq!(
            clean,
            "[diagnostics: cargo check — no problems in src/lib.rs]"
        );
        let other = summarize(
            "cargo check",
            "src/other.rs:1:1: error: x\n",
            false,
            &touched(&["src/lib.rs"]),
            10,
        );
        assert!(
            other.starts_with(
                "[diagnostics: cargo check failed, nothing in src/lib.rs; 1 finding(s) elsewhere"
            ),
            "{other}"
        );
    }

    #[test]
    fn checks_follow_the_touched_files_and_the_project() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Cargo.toml"), "[package]\n").unwrap();
        let checker = Checker::new(DiagnosticsConfig::default());
        let (checks, _) = checker.plan(dir.path(), &touched(&["src/lib.rs"]));
        assert_eq!(checks[0].name, "cargo check");
        let (checks, _) = checker.plan(dir.path(), &touched(&["README.md"]));
        assert!(checks.is_empty());
        let (checks, _) = checker.plan(dir.path(), &touched(&["it's.py"]));
        assert_eq!(checks[0].command, "python3 -m py_compile 'it'\\''s.py'");
        let configured = Checker::new(DiagnosticsConfig {
            commands: Some(vec!["make lint".into()]),
            ..DiagnosticsConfig::default()
        });
        let (checks, _) = configured.plan(dir.path(), &touched(&["README.md"]));
        assert_eq!(
            checks,
            [Check {
                name: "make lint".into(),
                command: "make lint".into()
            }]
        );
    }
}

//! The one way orch walks a project's files, with one set of rules: ignore
//! files (`.gitignore`, `.ignore`) honoured with or without a git
//! repository; hidden files included; links not followed; entries in name
//! order so results are stable; and never what is not the project itself —
//! `.git`, the engine's own records under `.opencode/`, and dependency and
//! build folders (`node_modules`, `.venv`, `__pycache__`, a Cargo `target`),
//! which are large and are walked by nobody's intent even where no ignore
//! file names them.
//!
//! Two walks do without it, on purpose: the trust hash
//! (`config/trust.rs`) must see every file of the folders it covers,
//! ignored or not, or an ignored file could change what runs without
//! changing the hash; and command discovery (`commands.rs`) reads a config
//! folder (`.claude/commands/`), which ignore files do not govern.

use std::path::Path;

use ignore::{DirEntry, WalkBuilder};

/// Folders under `.opencode/` that hold the engine's records: transcripts,
/// mission and run journals, caches, memory, worktrees.
const ENGINE_RECORDS: &[&str] = &[
    "sessions",
    "missions",
    "runs",
    "cache",
    "memory",
    "worktrees",
];

/// Dependency and build folders skipped wherever they are.
const DEPENDENCIES: &[&str] = &["node_modules", ".venv", "__pycache__"];

/// A walker over `dir` for the file tools: the project as a person sees it,
/// with the plan and the config under `.opencode/` visible.
pub fn project(dir: &Path) -> WalkBuilder {
    builder(dir, false)
}

/// A walker over the workspace only: like [`project`], without anything
/// under `.opencode/` (the engine's folder is not work done on the project).
pub fn workspace(dir: &Path) -> WalkBuilder {
    builder(dir, true)
}

fn builder(dir: &Path, without_engine_folder: bool) -> WalkBuilder {
    let mut builder = WalkBuilder::new(dir);
    builder
        .hidden(false)
        .require_git(false)
        .follow_links(false)
        .filter_entry(move |entry| !skipped(entry, without_engine_folder))
        .sort_by_file_name(|a, b| a.cmp(b));
    builder
}

fn skipped(entry: &DirEntry, without_engine_folder: bool) -> bool {
    if !entry.file_type().is_some_and(|t| t.is_dir()) {
        return false;
    }
    let name = entry.file_name();
    if name == ".git" || DEPENDENCIES.iter().any(|dir| name == *dir) {
        return true;
    }
    if name == ".opencode" {
        return without_engine_folder;
    }
    let parent = entry.path().parent();
    if name == "target" && parent.is_some_and(|dir| dir.join("Cargo.toml").is_file()) {
        return true;
    }
    let in_opencode = parent
        .and_then(Path::file_name)
        .is_some_and(|parent| parent == ".opencode");
    in_opencode && ENGINE_RECORDS.iter().any(|dir| name == *dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walked(builder: WalkBuilder, root: &Path) -> Vec<String> {
        builder
            .build()
            .flatten()
            .filter(|entry| entry.file_type().is_some_and(|t| t.is_file()))
            .map(|entry| {
                entry
                    .path()
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }

    #[test]
    fn skips_what_is_not_the_project_even_without_git_or_ignore_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for file in [
            "Cargo.toml",
            "src/lib.rs",
            "target/debug/big.rlib",
            "web/node_modules/x/index.js",
            "web/app.js",
            ".venv/lib/site.py",
            "py/__pycache__/m.pyc",
            "docs/target/notes.md",
            ".git/HEAD",
            ".opencode/todo.md",
            ".opencode/orch.json",
            ".opencode/sessions/worker.jsonl",
            ".opencode/missions/m1/events.jsonl",
            ".opencode/worktrees/t1/src/lib.rs",
            ".env",
        ] {
            let path = root.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "x").unwrap();
        }
        std::fs::write(root.join(".gitignore"), "*.log\n").unwrap();
        std::fs::write(root.join("debug.log"), "x").unwrap();
        assert_eq!(
            walked(project(root), root),
            [
                ".env",
                ".gitignore",
                ".opencode/orch.json",
                ".opencode/todo.md",
                "Cargo.toml",
                "docs/target/notes.md",
                "src/lib.rs",
                "web/app.js",
            ]
        );
        assert_eq!(
            walked(workspace(root), root),
            [
                ".env",
                ".gitignore",
                "Cargo.toml",
                "docs/target/notes.md",
                "src/lib.rs",
                "web/app.js",
            ]
        );
    }
}

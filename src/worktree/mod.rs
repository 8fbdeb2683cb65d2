//! A git worktree per writing task, merged back by the engine.
//!
//! In a git repository each task of an agent that may write runs in a
//! worktree of its own under `.opencode/worktrees/<mission>/<task>/`
//! (excluded in `.git/info/exclude`), detached at a snapshot of the user's
//! working tree taken when the task starts: tracked files and untracked
//! ones that are not ignored, the user's uncommitted changes included,
//! `.opencode/` left out. Its commits live under hidden refs
//! (`refs/orch/<mission>/<task>/…`), never a branch.
//!
//! When the task completes, its tree is merged three-way (`git merge-tree
//! --write-tree`) against the base it started from and a fresh snapshot
//! of the user's tree, and the result lands in the user's tree at once —
//! a compare-and-swap per file, all or nothing: if any file the landing
//! changes is no longer what the snapshot saw (the user edited it just
//! then), the merge is done again on a new snapshot. So the user's tree is
//! the mission's integrated state, which the Reviewer and the completion
//! gate see. A conflicting merge lands nothing; it is reported with its
//! files and hunks, and the conflicted tree is kept under the task's refs
//! for a Worker to resolve.
//!
//! The user's branch, HEAD, index, stash and hooks are never touched (see
//! `git.rs`).

pub mod git;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use git::{Change, Git, Merge};

use crate::files::{self, Durability};
use crate::paths;

/// The worktrees of one mission.
pub struct Worktrees {
    git: Git,
    root: PathBuf,
    mission: String,
    /// One merge-back at a time.
    merging: Mutex<()>,
    /// One `git worktree` change at a time: git's own bookkeeping of
    /// worktrees is not safe against a concurrent add or remove.
    admin: Mutex<()>,
    /// Conflicts waiting for a Worker, by the plan item made for each.
    pending: Mutex<Vec<Pending>>,
}

/// A conflict waiting for the task that resolves it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Pending {
    item: String,
    commit: String,
    files: Vec<String>,
}

/// A task's worktree.
#[derive(Debug, Clone)]
pub struct TaskTree {
    pub path: PathBuf,
    /// The snapshot it started from.
    pub base: String,
    /// When it resolves a conflict: the files that held conflict markers,
    /// and the plan item the conflict was given.
    pub resolves: Option<(String, Vec<String>)>,
}

/// What became of a completed task's change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Landing {
    /// The task changed nothing.
    Nothing,
    /// These files changed in the user's tree.
    Landed(Vec<String>),
    /// Nothing landed: a conflict it was to resolve still has its markers.
    Refused(String),
    /// Nothing landed: the change conflicts in these files.
    Conflict {
        files: Vec<Conflicted>,
        /// The commit holding both sides, conflict markers in the files.
        commit: String,
    },
}

/// One conflicted file and where its conflicts are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflicted {
    pub path: String,
    /// Line ranges of the conflict hunks in the conflicted file.
    pub hunks: Vec<(usize, usize)>,
}

/// Installed dependencies a worktree shares with the project, read-only,
/// through a link: a Worker's tests find them; installing more there is
/// refused by the sandbox (the project's tree is not the task's to write).
pub const SHARED: [&str; 3] = ["node_modules", ".venv", "venv"];

/// Why this machine's git cannot merge tasks back (older than 2.40, which
/// brought `git merge-tree --write-tree --merge-base`), if it cannot.
pub fn old_git() -> Option<String> {
    static VERSION: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    VERSION
        .get_or_init(|| {
            let output = helper("git", &["--version".into()], Path::new("/"), 60)
                .ok()
                .filter(|output| output.status.success())?;
            let text = String::from_utf8_lossy(&output.stdout).into_owned();
            let version = text.split_whitespace().nth(2)?.to_string();
            let mut parts = version.split('.').map(|part| part.parse::<u32>().unwrap_or(0));
            let (major, minor) = (parts.next()?, parts.next().unwrap_or(0));
            ((major, minor) < (2, 40)).then(|| {
                format!("git {version} is older than 2.40: writing tasks share the project's tree (no worktrees)")
            })
        })
        .clone()
}

/// Run one of the engine's own commands in `cwd` through the launcher,
/// stopped after `timeout_secs`.
fn helper(
    program: &str,
    args: &[std::ffi::OsString],
    cwd: &Path,
    timeout_secs: u64,
) -> std::io::Result<std::process::Output> {
    crate::process::run_helper(crate::process::Helper {
        program: program.as_ref(),
        args,
        cwd,
        env: crate::process::scrubbed_env(std::env::vars_os()),
        stdin: None,
        timeout: std::time::Duration::from_secs(timeout_secs),
        max_stdout: 64 * 1024,
    })
}

/// Seed a worktree's build folder from the project's: the compiled
/// dependencies and their fingerprints (copies, never links: cargo
/// rewrites fingerprint files in place), so its first build does not start
/// from nothing. The project's own crates rebuild, their sources being
/// newer. Best effort: without a project build there is nothing to copy.
fn seed_build(project: &Path, build: &Path) {
    let source = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project.join("target"));
    let (from, to) = (source.join("debug"), build.join("debug"));
    if !from.is_dir() || std::fs::create_dir_all(&to).is_err() {
        return;
    }
    for part in ["deps", "build", ".fingerprint"] {
        if from.join(part).is_dir() {
            let args = [
                "-a".into(),
                "--reflink=auto".into(),
                from.join(part).into_os_string(),
                to.clone().into_os_string(),
            ];
            let _ = helper("cp", &args, project, 1800);
        }
    }
}

/// The bytes under `path`, links not followed.
pub fn disk_usage(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| disk_usage(&entry.path()))
                .sum()
        })
        .unwrap_or(0)
}

/// A path the engine never lands: the folders agents may not write either
/// (its own and git's).
fn engine_path(path: &str) -> bool {
    paths::engine_owned(Path::new(path)).is_some()
}

impl Worktrees {
    /// The worktrees of `mission` in the project at `root`, when `root` is
    /// the top of a git working tree.
    pub fn new(root: &Path, mission: &str) -> Option<Worktrees> {
        if old_git().is_some() {
            return None;
        }
        let worktrees = Worktrees {
            git: Git::at_top(root)?,
            root: root.to_path_buf(),
            mission: mission.to_string(),
            merging: Mutex::new(()),
            admin: Mutex::new(()),
            pending: Mutex::default(),
        };
        // A resumed mission's conflicts still wait for their Workers.
        if let Ok(text) = std::fs::read_to_string(worktrees.pending_path())
            && let Ok(pending) = serde_json::from_str::<Vec<Pending>>(&text)
        {
            *worktrees.pending.lock().expect("pending conflicts lock") = pending;
        }
        Some(worktrees)
    }

    /// The folder of the mission's worktrees.
    pub fn dir(&self) -> PathBuf {
        paths::worktrees(&self.root, &self.mission)
    }

    fn ref_name(&self, task: &str, what: &str) -> String {
        format!("refs/orch/{}/{task}/{what}", self.mission)
    }

    /// Give the conflict kept in `commit` (files `files`) to the plan item
    /// `item`: the task whose brief names that item starts from both sides.
    pub fn await_resolution(&self, item: &str, commit: &str, files: Vec<String>) {
        let mut pending = self.pending.lock().expect("pending conflicts lock");
        pending.push(Pending {
            item: item.to_string(),
            commit: commit.to_string(),
            files,
        });
        self.keep_pending(&pending);
    }

    /// Where the conflicts waiting for a Worker are kept, so a resumed
    /// mission still starts their Workers from both sides.
    fn pending_path(&self) -> PathBuf {
        paths::mission(&self.root, &self.mission).join("conflicts.json")
    }

    fn keep_pending(&self, pending: &[Pending]) {
        let path = self.pending_path();
        if let Some(parent) = path.parent()
            && parent.is_dir()
        {
            let text = serde_json::to_string(pending).unwrap_or_default();
            let _ = files::replace(&path, text.as_bytes(), Durability::Crash);
        }
    }

    /// The worktree of `task` (whose brief is `brief`): made from a new
    /// snapshot of the user's tree — or from a conflict's two sides when the
    /// brief names the plan item of one — or found again when an
    /// interrupted run left it.
    pub fn start(&self, task: &str, brief: &str) -> Result<TaskTree, String> {
        let path = self.dir().join(task);
        let resolving = self
            .pending
            .lock()
            .expect("pending conflicts lock")
            .iter()
            .find(|pending| names_item(brief, &pending.item))
            .cloned();
        let resolves = resolving
            .as_ref()
            .map(|pending| (pending.item.clone(), pending.files.clone()));
        if path.join(".git").exists()
            && let Some(base) = self.git.get_ref(&self.ref_name(task, "base"))
        {
            return Ok(TaskTree {
                path,
                base,
                resolves,
            });
        }
        self.exclude()?;
        let (base, start) = match &resolving {
            // The tree as it was when the conflict came up, and both sides
            // merged into it with markers.
            Some(pending) => (
                self.git
                    .run(&["rev-parse", &format!("{}^1", pending.commit)])?
                    .trim()
                    .to_string(),
                pending.commit.clone(),
            ),
            None => {
                let base = self.git.snapshot(
                    None,
                    &format!("orch {}: the tree {task} starts from", self.mission),
                )?;
                (base.clone(), base)
            }
        };
        {
            let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
            // A worktree without its base ref was being made when orch was
            // killed: it may be half checked out, so it is made again.
            if path.exists() {
                self.git.remove_worktree(&path)?;
            }
            std::fs::create_dir_all(self.dir())
                .map_err(|err| format!("creating {}: {err}", self.dir().display()))?;
            self.git.add_worktree(&path, &start)?;
        }
        self.include_ignored(&path)?;
        for name in SHARED {
            let (project, here) = (self.root.join(name), path.join(name));
            let installed = std::fs::symlink_metadata(&project).is_ok_and(|meta| meta.is_dir());
            if installed && std::fs::symlink_metadata(&here).is_err() {
                std::os::unix::fs::symlink(&project, &here)
                    .map_err(|err| format!("linking {name} into the worktree: {err}"))?;
            }
        }
        if let Some(build) = paths::build_dir(&path) {
            let _ = std::fs::create_dir_all(&build);
            if path.join("Cargo.toml").is_file() {
                seed_build(&self.root, &build);
            }
        }
        // Last: the ref says the worktree is whole.
        self.git.set_ref(&self.ref_name(task, "base"), &base)?;
        Ok(TaskTree {
            path,
            base,
            resolves,
        })
    }

    /// Copy into the worktree at `path` the files the project's
    /// `.worktreeinclude` names (gitignore patterns) that are not part of a
    /// snapshot: ignored files a task needs, such as a `.env` or generated
    /// sources. They stay ignored, so they never land back.
    fn include_ignored(&self, path: &Path) -> Result<(), String> {
        if !self.root.join(".worktreeinclude").is_file() {
            return Ok(());
        }
        let listed = self.git.run(&[
            "ls-files",
            "-z",
            "--others",
            "--ignored",
            "--exclude-from=.worktreeinclude",
            "--",
            ".",
            ":(top,exclude).opencode",
        ])?;
        for file in listed.split('\0').filter(|file| !file.is_empty()) {
            let (from, to) = (self.root.join(file), path.join(file));
            if engine_path(file) || to.exists() {
                continue;
            }
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|err| format!("creating {}: {err}", parent.display()))?;
            }
            let copied = match std::fs::read_link(&from) {
                Ok(target) => std::os::unix::fs::symlink(target, &to),
                Err(_) => std::fs::copy(&from, &to).map(drop),
            };
            copied.map_err(|err| format!("copying {file} into the worktree: {err}"))?;
        }
        Ok(())
    }

    /// Keep the worktrees out of the user's `git status` and `git add -A`.
    fn exclude(&self) -> Result<(), String> {
        let path = self.git.run(&["rev-parse", "--git-path", "info/exclude"])?;
        let path = self.root.join(path.trim());
        let line = "/.opencode/worktrees/";
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.lines().any(|l| l.trim() == line) {
            return Ok(());
        }
        let mut text = text;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(line);
        text.push('\n');
        // The user's file: replaced whole, its permissions kept.
        files::replace(&path, text.as_bytes(), Durability::Synced)
            .map_err(|err| format!("writing {}: {err}", path.display()))
    }

    /// Merge a completed task's change into the user's tree.
    pub fn land(&self, task: &str, tree: &TaskTree) -> Result<Landing, String> {
        let _merging = self.merging.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((item, files)) = &tree.resolves {
            let marked: Vec<&String> = files
                .iter()
                .filter(|file| {
                    std::fs::read_to_string(tree.path.join(file))
                        .is_ok_and(|text| has_conflict_markers(&text))
                })
                .collect();
            if !marked.is_empty() {
                let marked: Vec<&str> = marked.iter().map(|file| file.as_str()).collect();
                return Ok(Landing::Refused(format!(
                    "{task} was to resolve the conflict of plan item {item}, but {} still hold conflict markers (<<<<<<< … >>>>>>>); nothing landed",
                    marked.join(", ")
                )));
            }
        }
        let result = self.record(task, tree, "changed")?;
        if self.git.tree_of(&result)? == self.git.tree_of(&tree.base)? {
            return Ok(Landing::Nothing);
        }
        // A file the user changes between the snapshot and the landing
        // makes the landing refuse; the merge is then made again.
        for _ in 0..5 {
            let current = self.git.snapshot(
                None,
                &format!("orch {}: the tree before {task} lands", self.mission),
            )?;
            match self.git.merge(&tree.base, &current, &result)? {
                Merge::Clean { tree: merged } => {
                    let changes: Vec<Change> = self
                        .git
                        .changes(&current, &merged)?
                        .into_iter()
                        .filter(|change| !engine_path(&change.path))
                        .collect();
                    if write_changes(&self.git, &self.root, &changes)?.is_empty() {
                        if let Some((item, _)) = &tree.resolves {
                            let mut pending = self.pending.lock().expect("pending conflicts lock");
                            pending.retain(|pending| pending.item != *item);
                            self.keep_pending(&pending);
                        }
                        return Ok(Landing::Landed(
                            changes.into_iter().map(|change| change.path).collect(),
                        ));
                    }
                }
                Merge::Conflict {
                    tree: merged,
                    files,
                    ..
                } => {
                    let commit = self.git.commit_tree(
                        &merged,
                        &[&current, &result],
                        &format!(
                            "orch {}: {task}'s change against the tree, in conflict",
                            self.mission
                        ),
                    )?;
                    self.git
                        .set_ref(&self.ref_name(task, "conflict"), &commit)?;
                    let files = files
                        .into_iter()
                        .map(|path| {
                            let text = self
                                .git
                                .run(&["cat-file", "-p", &format!("{merged}:{path}")])
                                .unwrap_or_default();
                            Conflicted {
                                hunks: hunks(&text),
                                path,
                            }
                        })
                        .collect();
                    return Ok(Landing::Conflict { files, commit });
                }
            }
        }
        Err(format!(
            "{task}'s change could not land: the files it changes kept changing under it"
        ))
    }

    /// Keep a failed `task`'s worktree as it is, its change recorded under
    /// the task's `result` ref; it never lands.
    pub fn keep(&self, task: &str, tree: &TaskTree) -> Result<(), String> {
        self.record(task, tree, "changed before it failed")
            .map(drop)
    }

    /// Commit what `task` changed in its worktree, under its `result` ref
    /// (`what` ends the commit's message: "what task_3 changed").
    fn record(&self, task: &str, tree: &TaskTree, what: &str) -> Result<String, String> {
        let result = self.git.in_dir(&tree.path).snapshot(
            Some(&tree.base),
            &format!("orch {}: what {task} {what}", self.mission),
        )?;
        self.git.set_ref(&self.ref_name(task, "result"), &result)?;
        Ok(result)
    }

    /// Remove `task`'s worktree and its build folder (its refs stay until
    /// the mission ends).
    pub fn remove(&self, tree: &TaskTree) -> Result<(), String> {
        if let Some(build) = paths::build_dir(&tree.path) {
            let _ = std::fs::remove_dir_all(build);
        }
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        self.git.remove_worktree(&tree.path)
    }

    /// The mission is over: every worktree and ref of it goes.
    pub fn clean_up(&self) -> Result<(), String> {
        let dir = self.dir();
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|ext| ext == "target") {
                    let _ = std::fs::remove_dir_all(&path);
                } else {
                    self.git.remove_worktree(&path)?;
                }
            }
        }
        let _ = std::fs::remove_dir(&dir);
        self.git
            .delete_refs(&format!("refs/orch/{}/", self.mission))
    }
}

/// Whether `brief` names plan item `item` as a whole ID (`T3` is neither
/// `T31` nor `T3.1`).
fn names_item(brief: &str, item: &str) -> bool {
    brief.match_indices(item).any(|(at, _)| {
        let before = brief[..at].chars().next_back();
        let mut after = brief[at + item.len()..].chars();
        let next = after.next();
        let child = next == Some('.') && after.next().is_some_and(char::is_alphanumeric);
        !before.is_some_and(char::is_alphanumeric)
            && !next.is_some_and(char::is_alphanumeric)
            && !child
    })
}

/// The tasks of `mission` whose worktrees hold work that has not landed
/// (an interrupted or abandoned run left them).
pub fn unmerged(root: &Path, mission: &str) -> Vec<String> {
    let mut tasks: Vec<String> = std::fs::read_dir(paths::worktrees(root, mission))
        .map(|entries| {
            entries
                .flatten()
                .filter(|entry| entry.path().join(".git").exists())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    tasks.sort();
    tasks
}

/// Delete every worktree and task ref of `mission`; the tasks whose
/// unmerged work went with them.
pub fn abandon(root: &Path, mission: &str) -> Result<Vec<String>, String> {
    let tasks = unmerged(root, mission);
    if let Some(worktrees) = Worktrees::new(root, mission) {
        worktrees.clean_up()?;
    }
    Ok(tasks)
}

/// The ref of checkpoint `name` (`start`, `end`) of `mission`: snapshots of
/// the user's tree that `orch diff` and `orch undo` compare.
fn checkpoint_ref(mission: &str, name: &str) -> String {
    format!("refs/orch/checkpoints/{mission}/{name}")
}

/// Forget checkpoint `name` of `mission` (a resumed mission's old end).
pub fn forget_checkpoint(root: &Path, mission: &str, name: &str) {
    if let Some(git) = Git::at_top(root) {
        let _ = git.run(&["update-ref", "-d", &checkpoint_ref(mission, name)]);
    }
}

/// Record the user's tree as checkpoint `name` of `mission`, in a git
/// repository (`Ok(None)` elsewhere).
pub fn checkpoint(root: &Path, mission: &str, name: &str) -> Result<Option<String>, String> {
    let Some(git) = Git::at_top(root) else {
        return Ok(None);
    };
    let commit = git.snapshot(None, &format!("orch {mission}: the tree at its {name}"))?;
    git.set_ref(&checkpoint_ref(mission, name), &commit)?;
    Ok(Some(commit))
}

/// What a mission changed: from its start checkpoint to its end one (or to
/// the tree as it is, for a mission that has not ended).
pub struct MissionChange {
    git: Git,
    root: PathBuf,
    pub start: String,
    pub end: String,
    /// Whether `end` is the mission's own end checkpoint.
    pub ended: bool,
    /// The only paths that count, when the mission knows which files its
    /// tasks landed (its writing tasks ran in worktrees): what else
    /// changed between the checkpoints was not the mission's doing.
    only: Option<std::collections::BTreeSet<String>>,
}

impl MissionChange {
    pub fn of(
        root: &Path,
        mission: &str,
        only: Option<std::collections::BTreeSet<String>>,
    ) -> Result<MissionChange, String> {
        let git = Git::at_top(root).ok_or_else(|| {
            format!(
                "{} is not the top of a git repository: orch keeps no checkpoints here",
                root.display()
            )
        })?;
        let start = git.get_ref(&checkpoint_ref(mission, "start")).ok_or_else(|| {
            format!("mission {mission} has no start checkpoint (it ran before orch kept them, or outside git)")
        })?;
        let (end, ended) = match git.get_ref(&checkpoint_ref(mission, "end")) {
            Some(end) => (end, true),
            None => (
                git.snapshot(None, &format!("orch {mission}: the tree now"))?,
                false,
            ),
        };
        Ok(MissionChange {
            git,
            root: root.to_path_buf(),
            start,
            end,
            ended,
            only,
        })
    }

    fn counts(&self, path: &str) -> bool {
        !engine_path(path) && self.only.as_ref().is_none_or(|only| only.contains(path))
    }

    /// The patch (or its summary).
    pub fn diff(&self, stat: bool) -> Result<String, String> {
        let files = self.files()?;
        if files.is_empty() {
            return Ok(String::new());
        }
        let mut args = vec!["diff", "--no-color", "--no-ext-diff"];
        // `--binary` implies the patch: only without `--stat`.
        args.push(if stat { "--stat" } else { "--binary" });
        args.extend([self.start.as_str(), self.end.as_str(), "--"]);
        let paths: Vec<String> = files
            .iter()
            .map(|file| format!(":(literal){file}"))
            .collect();
        args.extend(paths.iter().map(String::as_str));
        self.git.run(&args)
    }

    /// The files the mission changed.
    pub fn files(&self) -> Result<Vec<String>, String> {
        Ok(self
            .git
            .changes(&self.start, &self.end)?
            .into_iter()
            .map(|change| change.path)
            .filter(|path| self.counts(path))
            .collect())
    }

    /// Put every file the mission changed back as it was at its start —
    /// all or nothing: `Err` names the files changed since the mission
    /// ended, and then nothing is written.
    pub fn undo(&self) -> Result<Vec<String>, String> {
        let back: Vec<Change> = self
            .git
            .changes(&self.end, &self.start)?
            .into_iter()
            .filter(|change| self.counts(&change.path))
            .collect();
        let differing = write_changes(&self.git, &self.root, &back)?;
        if !differing.is_empty() {
            return Err(format!(
                "changed since the mission ended, so nothing was undone: {}",
                differing.join(", ")
            ));
        }
        Ok(back.into_iter().map(|change| change.path).collect())
    }
}

/// The line ranges of conflict hunks in a file with conflict markers.
fn hunks(text: &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut start = None;
    for (number, line) in text.lines().enumerate() {
        if line.starts_with("<<<<<<<") {
            start = Some(number + 1);
        } else if line.starts_with(">>>>>>>")
            && let Some(first) = start.take()
        {
            found.push((first, number + 1));
        }
    }
    found
}

/// Whether the conflict markers of a merge are still in `text`.
pub fn has_conflict_markers(text: &str) -> bool {
    let mut open = false;
    for line in text.lines() {
        if line.starts_with("<<<<<<< ") || line == "<<<<<<<" {
            open = true;
        } else if open && (line.starts_with(">>>>>>> ") || line == ">>>>>>>") {
            return true;
        }
    }
    false
}

/// What the path is in the user's tree now, as git would record it:
/// `None` when it does not exist.
fn on_disk(path: &Path) -> Result<Option<(bool, Vec<u8>)>, String> {
    match std::fs::symlink_metadata(path) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(format!("{}: {err}", path.display())),
        Ok(meta) if meta.file_type().is_symlink() => {
            let target =
                std::fs::read_link(path).map_err(|err| format!("{}: {err}", path.display()))?;
            Ok(Some((true, target.into_os_string().into_encoded_bytes())))
        }
        Ok(meta) if meta.is_dir() => Ok(Some((false, Vec::new()))),
        Ok(_) => std::fs::read(path)
            .map(|bytes| Some((false, bytes)))
            .map_err(|err| format!("{}: {err}", path.display())),
    }
}

/// Apply `changes` to the files under `root` if every one of them is still
/// what the change starts from; otherwise nothing is written and the paths
/// that are not come back.
fn write_changes(git: &Git, root: &Path, changes: &[Change]) -> Result<Vec<String>, String> {
    use std::os::unix::fs::PermissionsExt;
    // Submodule pointers are not files to write.
    let changes: Vec<&Change> = changes
        .iter()
        .filter(|change| change.old_mode != "160000" && change.new_mode != "160000")
        .collect();
    let mut paths: Vec<PathBuf> = changes
        .iter()
        .map(|change| root.join(&change.path))
        .collect();
    paths.sort();
    let locks: Vec<_> = paths.iter().map(|path| files::lock(path)).collect();
    let guards: Vec<_> = locks.iter().map(|lock| lock.hold()).collect();
    for change in &changes {
        beneath_without_links(root, &change.path)?;
        // A folder where the change has a file (or a file on the way to
        // one) is a change of kind orch does not land.
        let at = root.join(&change.path);
        if std::fs::symlink_metadata(&at).is_ok_and(|meta| meta.is_dir())
            || at
                .ancestors()
                .skip(1)
                .take_while(|dir| *dir != root)
                .any(|dir| std::fs::symlink_metadata(dir).is_ok_and(|meta| !meta.is_dir()))
        {
            return Err(format!(
                "{:?} changes between a file and a folder, which orch does not land; nothing was written",
                change.path
            ));
        }
    }
    // Regular files are compared as git sees them (clean filters and
    // line endings applied), all in one `git hash-object`.
    let regular: Vec<&str> = changes
        .iter()
        .filter(|change| {
            !matches!(change.old_mode.as_str(), git::NO_MODE | "120000")
                && std::fs::symlink_metadata(root.join(&change.path))
                    .is_ok_and(|meta| meta.is_file())
        })
        .map(|change| change.path.as_str())
        .collect();
    let hashed: std::collections::HashMap<&str, String> = regular
        .iter()
        .copied()
        .zip(git.hash_files(&regular)?)
        .collect();
    let mut writes = Vec::new();
    let mut differing = Vec::new();
    for change in &changes {
        let path = root.join(&change.path);
        let same = match change.old_mode.as_str() {
            git::NO_MODE => on_disk(&path)?.is_none(),
            "120000" => on_disk(&path)? == Some((true, git.blob(&change.old_oid)?)),
            _ => hashed.get(change.path.as_str()) == Some(&change.old_oid),
        };
        if !same {
            differing.push(change.path.clone());
            continue;
        }
        let new = match change.new_mode.as_str() {
            git::NO_MODE => None,
            "120000" => Some(git.blob(&change.new_oid)?),
            _ => Some(git.checkout_bytes(&change.new_oid, &change.path)?),
        };
        writes.push((path, change.new_mode.as_str(), new));
    }
    if !differing.is_empty() {
        return Ok(differing);
    }
    for (path, mode, bytes) in writes {
        let shown = path.display().to_string();
        match (mode, bytes) {
            (_, None) => {
                std::fs::remove_file(&path).map_err(|err| format!("removing {shown}: {err}"))?;
                remove_empty_parents(root, &path);
            }
            ("120000", Some(target)) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|err| format!("{shown}: {err}"))?;
                }
                let _ = std::fs::remove_file(&path);
                let target = std::ffi::OsString::from_vec(target);
                std::os::unix::fs::symlink(&target, &path)
                    .map_err(|err| format!("linking {shown}: {err}"))?;
            }
            (mode, Some(bytes)) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|err| format!("{shown}: {err}"))?;
                }
                if std::fs::symlink_metadata(&path).is_ok_and(|meta| meta.file_type().is_symlink())
                {
                    let _ = std::fs::remove_file(&path);
                }
                // The file keeps its permissions (a new one gets the
                // umask's); git records only whether it is executable.
                files::replace(&path, &bytes, Durability::Synced)
                    .map_err(|err| format!("writing {shown}: {err}"))?;
                let current = std::fs::metadata(&path)
                    .map_err(|err| format!("{shown}: {err}"))?
                    .permissions()
                    .mode();
                let bits = if mode == "100755" {
                    current | ((current & 0o444) >> 2)
                } else {
                    current & !0o111
                };
                if bits != current {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(bits))
                        .map_err(|err| format!("{shown}: {err}"))?;
                }
            }
        }
    }
    drop(guards);
    Ok(Vec::new())
}

use std::os::unix::ffi::OsStringExt;

/// Refuse a path whose folders below `root` include a symbolic link (or
/// `..`): writing through it could reach outside the project.
fn beneath_without_links(root: &Path, relative: &str) -> Result<(), String> {
    let mut dir = root.to_path_buf();
    let parts: Vec<&str> = relative.split('/').collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        if part.is_empty() || *part == "." || *part == ".." {
            return Err(format!(
                "{relative:?} is not a plain path inside the project"
            ));
        }
        dir.push(part);
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(format!(
                    "{relative:?} goes through the link {}; nothing was written",
                    dir.display()
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Remove the folders a deletion left empty, up to `root`.
fn remove_empty_parents(root: &Path, path: &Path) {
    let mut dir = path.parent();
    while let Some(current) = dir {
        if current == root || std::fs::remove_dir(current).is_err() {
            break;
        }
        dir = current.parent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hunks_and_markers() {
        let text = "a\n<<<<<<< ours\nb\n=======\nc\n>>>>>>> theirs\nd\n";
        assert_eq!(hunks(text), vec![(2, 6)]);
        assert!(has_conflict_markers(text));
        assert!(!has_conflict_markers("a\n<<<<<<< not closed\n"));
        assert!(engine_path(".opencode/todo.md"));
        assert!(engine_path(".GIT/config"));
        assert!(!engine_path("src/.opencode.rs"));
        assert!(names_item("Resolve T3: the conflict", "T3"));
        assert!(names_item("T3.", "T3"));
        assert!(!names_item("T31 and T3.1", "T3"));
    }
}

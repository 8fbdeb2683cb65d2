//! Task worktrees and the engine's merge-back, on real repositories with
//! the real `git`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use orch::worktree::{Landing, TaskTree, Worktrees};

/// A repository with one commit, user settings of its own, and a hook that
/// would leave a marker if anything ran it.
struct Repo {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "user")
        .env("GIT_AUTHOR_EMAIL", "user@example.com")
        .env("GIT_COMMITTER_NAME", "user")
        .env("GIT_COMMITTER_EMAIL", "user@example.com")
        .output()
        .expect("git");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

impl Repo {
    fn empty() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        git(&root, &["init", "-q", "-b", "main"]);
        let hooks = root.join(".git/hooks");
        for hook in [
            "post-checkout",
            "pre-commit",
            "post-commit",
            "reference-transaction",
        ] {
            let path = hooks.join(hook);
            std::fs::write(
                &path,
                format!(
                    "#!/bin/sh\necho {hook} >> \"{}/hook-ran\"\n",
                    root.display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Repo { _dir: dir, root }
    }

    fn new() -> Repo {
        let repo = Repo::empty();
        repo.write(".gitignore", "target/\n");
        repo.write("src/lib.rs", LIB);
        repo.write("README.md", "# demo\n");
        repo.commit("start");
        repo
    }

    /// Commit everything, as the user would (their hooks not run).
    fn commit(&self, message: &str) {
        git(&self.root, &["add", "-A"]);
        git(
            &self.root,
            &[
                "-c",
                "core.hooksPath=/dev/null",
                "commit",
                "-q",
                "-m",
                message,
            ],
        );
    }

    fn write(&self, relative: &str, text: &str) {
        let path = self.root.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.root.join(relative)).unwrap()
    }

    /// What the user's git shows of its own state.
    fn state(&self) -> (String, String, String, String) {
        (
            git(&self.root, &["rev-parse", "HEAD"]),
            git(&self.root, &["status", "--porcelain=v1", "-uall"]),
            git(&self.root, &["branch", "--list"]),
            git(&self.root, &["stash", "list"]),
        )
    }
}

const LIB: &str = "pub fn one() -> i32 {\n    1\n}\n\npub fn two() -> i32 {\n    2\n}\n\npub fn three() -> i32 {\n    3\n}\n";

fn edit(tree: &TaskTree, relative: &str, from: &str, to: &str) {
    let path = tree.path.join(relative);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from:?} not in {text}");
    std::fs::write(&path, text.replace(from, to)).unwrap();
}

#[test]
fn two_tasks_on_one_file_both_land_and_the_users_git_is_untouched() {
    let repo = Repo::new();
    // The user's uncommitted change and an untracked file: Workers start
    // from them, and they stay.
    repo.write("README.md", "# demo\n\nuser's note\n");
    repo.write("notes.txt", "untracked\n");
    repo.write("target/big.bin", "ignored build output\n");
    let before = repo.state();
    let trees = Worktrees::new(&repo.root, "m1").expect("a git repository");
    let a = trees.start("task_1", "").unwrap();
    let b = trees.start("task_2", "").unwrap();
    assert_eq!(
        std::fs::read_to_string(a.path.join("README.md")).unwrap(),
        "# demo\n\nuser's note\n"
    );
    assert!(a.path.join("notes.txt").exists());
    assert!(!a.path.join("target/big.bin").exists());
    assert!(!a.path.join(".opencode").exists());
    edit(&a, "src/lib.rs", "    1\n", "    10\n");
    edit(&b, "src/lib.rs", "    3\n", "    30\n");
    assert_eq!(
        trees.land("task_1", &a).unwrap(),
        Landing::Landed(vec!["src/lib.rs".into()])
    );
    assert_eq!(
        trees.land("task_2", &b).unwrap(),
        Landing::Landed(vec!["src/lib.rs".into()])
    );
    let lib = repo.read("src/lib.rs");
    assert!(
        lib.contains("    10\n") && lib.contains("    30\n"),
        "{lib}"
    );
    assert_eq!(repo.read("README.md"), "# demo\n\nuser's note\n");
    trees.remove(&a).unwrap();
    trees.remove(&b).unwrap();
    trees.clean_up().unwrap();
    // HEAD, branches and stash as they were; the status differs only by
    // the landed file; no hook ran; no worktree or ref is left.
    let after = repo.state();
    assert_eq!(before.0, after.0);
    assert_eq!(before.2, after.2);
    assert_eq!(before.3, after.3);
    assert_eq!(after.1, " M README.md\n M src/lib.rs\n?? notes.txt\n");
    assert!(!repo.root.join("hook-ran").exists(), "a hook ran");
    assert_eq!(git(&repo.root, &["worktree", "list"]).lines().count(), 1);
    assert_eq!(git(&repo.root, &["for-each-ref", "refs/orch/"]), "");
    // The user's own index was never written.
    assert_eq!(git(&repo.root, &["diff", "--cached", "--name-only"]), "");
}

#[test]
fn the_same_lines_conflict_and_nothing_of_the_second_lands() {
    let repo = Repo::new();
    let trees = Worktrees::new(&repo.root, "m2").unwrap();
    let a = trees.start("task_1", "").unwrap();
    let b = trees.start("task_2", "").unwrap();
    edit(&a, "src/lib.rs", "    2\n", "    20\n");
    edit(&b, "src/lib.rs", "    2\n", "    22\n");
    std::fs::write(b.path.join("extra.rs"), "// b's other file\n").unwrap();
    assert!(matches!(
        trees.land("task_1", &a).unwrap(),
        Landing::Landed(_)
    ));
    let landed = repo.read("src/lib.rs");
    let Landing::Conflict { files, commit } = trees.land("task_2", &b).unwrap() else {
        panic!("no conflict");
    };
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].path, "src/lib.rs");
    assert_eq!(files[0].hunks.len(), 1, "{files:?}");
    // Nothing of task_2 reached the user's tree.
    assert_eq!(repo.read("src/lib.rs"), landed);
    assert!(!repo.root.join("extra.rs").exists());
    // Both sides are kept for a Worker to resolve.
    let both = git(&repo.root, &["show", &format!("{commit}:src/lib.rs")]);
    assert!(
        both.contains("<<<<<<<") && both.contains("20") && both.contains("22"),
        "{both}"
    );
    assert!(orch::worktree::has_conflict_markers(&both));
    // A Worker resolves it, from both sides: markers left in are refused.
    std::fs::create_dir_all(repo.root.join(".opencode/missions/m2")).unwrap();
    trees.await_resolution("T9", &commit, vec!["src/lib.rs".into()]);
    // As after `orch resume`: the conflict is still known.
    let trees = Worktrees::new(&repo.root, "m2").unwrap();
    let fix = trees
        .start("task_3", "Resolve plan item T9: the conflict")
        .unwrap();
    let text = std::fs::read_to_string(fix.path.join("src/lib.rs")).unwrap();
    assert!(text.contains("<<<<<<<"), "{text}");
    let Landing::Refused(why) = trees.land("task_3", &fix).unwrap() else {
        panic!("markers were accepted");
    };
    assert!(
        why.contains("src/lib.rs still hold conflict markers"),
        "{why}"
    );
    assert_eq!(repo.read("src/lib.rs"), landed);
    let resolved: String = text
        .lines()
        .filter(|line| {
            !line.starts_with("<<<<<<<")
                && !line.starts_with("=======")
                && !line.starts_with(">>>>>>>")
                && !line.contains("    20")
        })
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(fix.path.join("src/lib.rs"), &resolved).unwrap();
    let Landing::Landed(files) = trees.land("task_3", &fix).unwrap() else {
        panic!("the resolution did not land");
    };
    assert!(files.contains(&"src/lib.rs".to_string()), "{files:?}");
    let lib = repo.read("src/lib.rs");
    assert!(
        lib.contains("    22\n") && !lib.contains("    20\n"),
        "{lib}"
    );
    // b's other file came with the resolution: nothing of b was dropped.
    assert_eq!(repo.read("extra.rs"), "// b's other file\n");
    trees.clean_up().unwrap();
}

#[test]
fn deletions_renames_binaries_modes_and_links_survive_the_merge() {
    let repo = Repo::new();
    repo.write("old/name.txt", "moving\n");
    repo.write("gone.txt", "deleted\n");
    repo.commit("more");
    let trees = Worktrees::new(&repo.root, "m3").unwrap();
    let t = trees.start("task_1", "").unwrap();
    std::fs::create_dir_all(t.path.join("new")).unwrap();
    std::fs::rename(t.path.join("old/name.txt"), t.path.join("new/name.txt")).unwrap();
    std::fs::remove_file(t.path.join("gone.txt")).unwrap();
    let binary: Vec<u8> = (0..=255u8).chain([0, 0, 1]).collect();
    std::fs::write(t.path.join("blob.bin"), &binary).unwrap();
    std::fs::write(t.path.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(
        t.path.join("run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("src/lib.rs", t.path.join("lib-link")).unwrap();
    let Landing::Landed(mut files) = trees.land("task_1", &t).unwrap() else {
        panic!("not landed");
    };
    files.sort();
    assert_eq!(
        files,
        [
            "blob.bin",
            "gone.txt",
            "lib-link",
            "new/name.txt",
            "old/name.txt",
            "run.sh"
        ]
    );
    assert!(!repo.root.join("old").exists(), "an emptied folder stayed");
    assert!(!repo.root.join("gone.txt").exists());
    assert_eq!(repo.read("new/name.txt"), "moving\n");
    assert_eq!(std::fs::read(repo.root.join("blob.bin")).unwrap(), binary);
    let mode = std::fs::metadata(repo.root.join("run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "{mode:o}");
    assert_eq!(
        std::fs::read_link(repo.root.join("lib-link")).unwrap(),
        Path::new("src/lib.rs")
    );
    trees.clean_up().unwrap();
}

#[test]
fn a_user_edit_made_while_the_task_ran_is_kept() {
    let repo = Repo::new();
    let trees = Worktrees::new(&repo.root, "m4").unwrap();
    let t = trees.start("task_1", "").unwrap();
    edit(&t, "src/lib.rs", "    3\n", "    33\n");
    // The user edits the same file elsewhere, and another file.
    let lib = repo.read("src/lib.rs").replace("    1\n", "    111\n");
    repo.write("src/lib.rs", &lib);
    repo.write("README.md", "# mine\n");
    assert!(matches!(
        trees.land("task_1", &t).unwrap(),
        Landing::Landed(_)
    ));
    let lib = repo.read("src/lib.rs");
    assert!(
        lib.contains("    111\n") && lib.contains("    33\n"),
        "{lib}"
    );
    assert_eq!(repo.read("README.md"), "# mine\n");
    trees.clean_up().unwrap();
}

#[test]
fn a_repository_without_commits_works() {
    let repo = Repo::empty();
    repo.write("a.txt", "first\n");
    let trees = Worktrees::new(&repo.root, "m5").unwrap();
    let t = trees.start("task_1", "").unwrap();
    assert_eq!(
        std::fs::read_to_string(t.path.join("a.txt")).unwrap(),
        "first\n"
    );
    std::fs::write(t.path.join("a.txt"), "second\n").unwrap();
    assert_eq!(
        trees.land("task_1", &t).unwrap(),
        Landing::Landed(vec!["a.txt".into()])
    );
    assert_eq!(repo.read("a.txt"), "second\n");
    // Still no commit on the user's side.
    assert!(
        Command::new("git")
            .current_dir(&repo.root)
            .args(["rev-parse", "--verify", "-q", "HEAD"])
            .output()
            .unwrap()
            .stdout
            .is_empty()
    );
    trees.clean_up().unwrap();
    assert!(!repo.root.join("hook-ran").exists());
}

#[test]
fn the_users_exclude_file_gains_one_line_replaced_whole_with_its_mode() {
    use std::os::unix::fs::MetadataExt;
    let repo = Repo::new();
    let exclude = repo.root.join(".git/info/exclude");
    repo.write(".git/info/exclude", "# mine\n*.log");
    std::fs::set_permissions(&exclude, std::fs::Permissions::from_mode(0o640)).unwrap();
    let before = std::fs::metadata(&exclude).unwrap().ino();
    let trees = Worktrees::new(&repo.root, "m-ex").unwrap();
    trees.start("task_1", "").unwrap();
    assert_eq!(
        repo.read(".git/info/exclude"),
        "# mine\n*.log\n/.opencode/worktrees/\n"
    );
    let meta = std::fs::metadata(&exclude).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    // Renamed into place, never rewritten where a reader could see half.
    assert_ne!(meta.ino(), before);
    let leftovers: Vec<_> = std::fs::read_dir(exclude.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    trees.start("task_2", "").unwrap();
    assert_eq!(
        repo.read(".git/info/exclude")
            .matches("/.opencode/worktrees/")
            .count(),
        1
    );
    trees.clean_up().unwrap();
}

#[test]
fn a_task_that_changed_nothing_lands_nothing_and_a_found_worktree_is_reused() {
    let repo = Repo::new();
    let trees = Worktrees::new(&repo.root, "m6").unwrap();
    let t = trees.start("task_1", "").unwrap();
    std::fs::write(t.path.join("wip.txt"), "half done\n").unwrap();
    // An interrupted run comes back to the same worktree and its work.
    let again = trees.start("task_1", "").unwrap();
    assert_eq!(again.path, t.path);
    assert_eq!(again.base, t.base);
    assert!(again.path.join("wip.txt").exists());
    std::fs::remove_file(t.path.join("wip.txt")).unwrap();
    assert_eq!(trees.land("task_1", &t).unwrap(), Landing::Nothing);
    trees.clean_up().unwrap();
    assert!(!t.path.exists());
}

#[test]
fn ignored_files_named_in_worktreeinclude_are_copied_and_never_land() {
    let repo = Repo::new();
    repo.write(".gitignore", "target/\n.env\ngenerated/\n");
    repo.write(".worktreeinclude", ".env\n");
    repo.write(".env", "TOKEN=local\n");
    repo.write("generated/big.rs", "// not asked for\n");
    let trees = Worktrees::new(&repo.root, "m7").unwrap();
    let t = trees.start("task_1", "").unwrap();
    assert_eq!(
        std::fs::read_to_string(t.path.join(".env")).unwrap(),
        "TOKEN=local\n"
    );
    assert!(!t.path.join("generated").exists());
    std::fs::write(t.path.join(".env"), "TOKEN=changed by the task\n").unwrap();
    edit(&t, "src/lib.rs", "    1\n", "    11\n");
    assert_eq!(
        trees.land("task_1", &t).unwrap(),
        Landing::Landed(vec!["src/lib.rs".into()])
    );
    assert_eq!(repo.read(".env"), "TOKEN=local\n");
    trees.clean_up().unwrap();
}

#[test]
fn a_repository_with_a_submodule_works_and_the_submodule_is_left_alone() {
    let lib = Repo::new();
    let repo = Repo::new();
    git(
        &repo.root,
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            lib.root.to_str().unwrap(),
            "vendor/lib",
        ],
    );
    git(
        &repo.root,
        &[
            "-c",
            "core.hooksPath=/dev/null",
            "commit",
            "-q",
            "-m",
            "submodule",
        ],
    );
    let sub_head = git(&repo.root.join("vendor/lib"), &["rev-parse", "HEAD"]);
    let trees = Worktrees::new(&repo.root, "m8").unwrap();
    let t = trees.start("task_1", "").unwrap();
    edit(&t, "src/lib.rs", "    2\n", "    222\n");
    assert_eq!(
        trees.land("task_1", &t).unwrap(),
        Landing::Landed(vec!["src/lib.rs".into()])
    );
    assert!(repo.read("src/lib.rs").contains("    222\n"));
    assert_eq!(
        git(&repo.root.join("vendor/lib"), &["rev-parse", "HEAD"]),
        sub_head
    );
    assert!(repo.root.join("vendor/lib/src/lib.rs").exists());
    trees.clean_up().unwrap();
    assert_eq!(
        git(&repo.root, &["status", "--porcelain"]),
        " M src/lib.rs\n"
    );
}

#[test]
fn landing_never_writes_through_a_link_in_the_users_tree() {
    let repo = Repo::new();
    let elsewhere = tempfile::tempdir().unwrap();
    repo.write(".gitignore", "target/\ndata\n");
    std::os::unix::fs::symlink(elsewhere.path(), repo.root.join("data")).unwrap();
    let trees = Worktrees::new(&repo.root, "m9").unwrap();
    let t = trees.start("task_1", "").unwrap();
    // The task un-ignores `data` and adds a file beneath it.
    std::fs::write(t.path.join(".gitignore"), "target/\n").unwrap();
    std::fs::create_dir_all(t.path.join("data")).unwrap();
    std::fs::write(t.path.join("data/pwned.txt"), "x\n").unwrap();
    let refused = trees.land("task_1", &t).unwrap_err();
    assert!(refused.contains("goes through the link"), "{refused}");
    assert!(!elsewhere.path().join("pwned.txt").exists());
    assert_eq!(repo.read(".gitignore"), "target/\ndata\n");
    trees.clean_up().unwrap();
}

#[test]
fn unusual_names_modes_and_an_ignored_engine_folder() {
    let repo = Repo::new();
    repo.write("café.md", "a\nb\nc\n");
    repo.write("secret.env", "KEY=1\n");
    std::fs::set_permissions(
        repo.root.join("secret.env"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    repo.commit("more");
    // The user ignores orch's folder (here, or in a global excludes file).
    repo.write(".gitignore", "target/\n.opencode/\n");
    std::fs::create_dir_all(repo.root.join(".opencode")).unwrap();
    let trees = Worktrees::new(&repo.root, "m10").unwrap();
    let a = trees.start("task_1", "").unwrap();
    let b = trees.start("task_2", "").unwrap();
    edit(&a, "café.md", "b\n", "B1\n");
    edit(&a, "secret.env", "KEY=1", "KEY=2");
    edit(&b, "café.md", "b\n", "B2\n");
    assert!(matches!(
        trees.land("task_1", &a).unwrap(),
        Landing::Landed(_)
    ));
    // A landed file keeps its permissions.
    let mode = std::fs::metadata(repo.root.join("secret.env"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let Landing::Conflict { files, .. } = trees.land("task_2", &b).unwrap() else {
        panic!("no conflict");
    };
    assert_eq!(files[0].path, "café.md");
    assert_eq!(files[0].hunks.len(), 1, "{files:?}");
    assert!(!repo.read("café.md").contains("<<<<<<<"));
    trees.clean_up().unwrap();
}

#[test]
fn undo_takes_back_only_what_the_missions_tasks_landed() {
    let repo = Repo::new();
    repo.write("notes.md", "v1\n");
    std::fs::create_dir_all(repo.root.join(".opencode/missions/m11")).unwrap();
    orch::worktree::checkpoint(&repo.root, "m11", "start").unwrap();
    let trees = Worktrees::new(&repo.root, "m11").unwrap();
    let t = trees.start("task_1", "").unwrap();
    edit(&t, "src/lib.rs", "    1\n", "    100\n");
    // The user works on other files while the mission runs.
    repo.write("notes.md", "v2\n");
    repo.write("mine.txt", "new\n");
    let Landing::Landed(landed) = trees.land("task_1", &t).unwrap() else {
        panic!("not landed");
    };
    orch::worktree::checkpoint(&repo.root, "m11", "end").unwrap();
    let change =
        orch::worktree::MissionChange::of(&repo.root, "m11", Some(landed.into_iter().collect()))
            .unwrap();
    assert_eq!(change.files().unwrap(), ["src/lib.rs"]);
    assert_eq!(change.undo().unwrap(), ["src/lib.rs"]);
    assert_eq!(repo.read("src/lib.rs"), LIB);
    assert_eq!(repo.read("notes.md"), "v2\n");
    assert_eq!(repo.read("mine.txt"), "new\n");
    trees.clean_up().unwrap();
}

#[test]
fn line_ending_attributes_are_kept_when_a_change_lands() {
    let repo = Repo::new();
    repo.write(".gitattributes", "*.bat text eol=crlf\n");
    repo.write("run.bat", "@echo off\r\necho one\r\n");
    repo.commit("bat");
    let trees = Worktrees::new(&repo.root, "m12").unwrap();
    let t = trees.start("task_1", "").unwrap();
    assert_eq!(
        std::fs::read_to_string(t.path.join("run.bat")).unwrap(),
        "@echo off\r\necho one\r\n"
    );
    std::fs::write(t.path.join("run.bat"), "@echo off\r\necho two\r\n").unwrap();
    std::fs::write(t.path.join("new.bat"), "echo new\n").unwrap();
    let Landing::Landed(mut files) = trees.land("task_1", &t).unwrap() else {
        panic!("not landed");
    };
    files.sort();
    assert_eq!(files, ["new.bat", "run.bat"]);
    assert_eq!(repo.read("run.bat"), "@echo off\r\necho two\r\n");
    assert_eq!(repo.read("new.bat"), "echo new\r\n");
    trees.clean_up().unwrap();
}

#[test]
fn installed_dependencies_are_shared_with_a_worktree_and_never_land() {
    let repo = Repo::new();
    repo.write(".gitignore", "target/\nnode_modules/\n.venv/\n");
    repo.commit("ignore");
    repo.write("node_modules/left-pad/index.js", "module.exports = 1;\n");
    repo.write(".venv/pyvenv.cfg", "home = /usr/bin\n");
    let trees = Worktrees::new(&repo.root, "m13").unwrap();
    let t = trees.start("task_1", "").unwrap();
    assert_eq!(
        std::fs::read_to_string(t.path.join("node_modules/left-pad/index.js")).unwrap(),
        "module.exports = 1;\n"
    );
    assert!(t.path.join(".venv/pyvenv.cfg").exists());
    edit(&t, "src/lib.rs", "    1\n", "    7\n");
    assert_eq!(
        trees.land("task_1", &t).unwrap(),
        Landing::Landed(vec!["src/lib.rs".into()])
    );
    assert!(repo.root.join("node_modules/left-pad/index.js").is_file());
    assert!(
        !std::fs::symlink_metadata(repo.root.join("node_modules"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    trees.clean_up().unwrap();
}

// Missions in a git repository, with scripted agents.

use crate::support::project::{Project, call, events, run};
use serde_json::{Value, json};

/// A trusted project that is a git repository with `src/lib.rs` committed.
fn repository() -> Project {
    let project = Project::trusted();
    project.write(".opencode/orch.json", r#"{"verify": []}"#);
    project.write("src/lib.rs", LIB);
    git(project.path(), &["init", "-q", "-b", "main"]);
    git(project.path(), &["add", "src"]);
    git(
        project.path(),
        &[
            "-c",
            "core.hooksPath=/dev/null",
            "commit",
            "-q",
            "-m",
            "start",
        ],
    );
    project
}

/// `orch task` with `script`, stopping after the first gate: exit code and
/// events.
fn mission(project: &Project, script: &Value) -> (Option<i32>, Vec<Value>, String) {
    mission_with(project, script, &["--max-iterations", "1"])
}

/// `orch task` with `script` and `flags`: exit code and events.
fn mission_with(
    project: &Project,
    script: &Value,
    flags: &[&str],
) -> (Option<i32>, Vec<Value>, String) {
    project.write("run.json", &script.to_string());
    let (output, stdout, stderr) =
        run(project.scripted().args(flags).args(["task", "Two changes"]));
    (output.status.code(), events(&stdout), stderr)
}

fn commander() -> Value {
    json!([
        {"when": "Mission goal", "tool_calls": [
            call("delegate_task", json!({"agent": "Worker", "description": "first", "prompt": "Job one", "background": true})),
            call("delegate_task", json!({"agent": "Worker", "description": "second", "prompt": "Job two", "background": true}))]},
        {"when": "started task_2", "text": "Waiting."},
        {"when": "Background task", "text": "Noted."},
        {"when": "Background task", "text": "Noted."},
        {"when": "not complete", "text": "Stopping."}
    ])
}

/// A Worker's command that waits until both tasks have started (so both
/// worktrees exist before either change lands), then says `word`.
fn both_started(project: &Project, word: &str) -> Value {
    let journal = project.path().join(".opencode/missions");
    call(
        "bash",
        json!({"command": format!(
            "for i in $(seq 1 1200); do [ \"$(cat {}/*/events.jsonl 2>/dev/null | grep -c '\"task_started\"')\" -ge 2 ] && echo {word} && break; sleep 0.05; done",
            journal.display()
        )}),
    )
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

#[test]
fn two_parallel_workers_editing_one_file_both_land() {
    let project = repository();
    let head = git(project.path(), &["rev-parse", "HEAD"]);
    let script = json!({"agents": {
        "Commander": commander(),
        "Worker": [
            {"when": "Job one", "tool_calls": [call("read", json!({"path": "src/lib.rs", "limit": 3}))]},
            {"when": "Job two", "tool_calls": [call("read", json!({"path": "src/lib.rs", "offset": 9}))]},
            {"when": "lines 1-3", "tool_calls": [call("edit", json!({"path": "src/lib.rs", "old": "    1\n", "new": "    10\n"}))]},
            {"when": "pub fn three", "tool_calls": [call("edit", json!({"path": "src/lib.rs", "old": "    3\n", "new": "    30\n"}))]},
            {"when": "at line 2", "tool_calls": [both_started(&project, "one-waited")]},
            {"when": "at line 10", "tool_calls": [both_started(&project, "two-waited")]},
            {"when": "one-waited", "text": "One done."},
            {"when": "two-waited", "text": "Two done."}
        ]
    }});
    let (code, events, stderr) = mission(&project, &script);
    assert_eq!(code, Some(1), "{stderr}");
    // Each Worker worked in a worktree of its own...
    let started: Vec<&Value> = of_type(&events, "task_started");
    assert_eq!(started.len(), 2);
    for start in &started {
        let tree = start["worktree"].as_str().unwrap_or_default();
        assert!(tree.starts_with(".opencode/worktrees/"), "{start}");
    }
    // ...and both changes landed in the project.
    let landed = of_type(&events, "task_landed");
    assert_eq!(landed.len(), 2, "{events:?}");
    for land in landed {
        assert_eq!(land["files"], json!(["src/lib.rs"]), "{land}");
    }
    let lib = project.read("src/lib.rs");
    assert!(
        lib.contains("    10\n") && lib.contains("    30\n"),
        "{lib}"
    );
    // The Workers' results say so.
    let finished = of_type(&events, "task_finished");
    assert!(
        finished.iter().all(|f| f["result"]
            .as_str()
            .unwrap()
            .contains("landed in the project: src/lib.rs")),
        "{finished:?}"
    );
    // The user's HEAD, index and branches are as they were; no worktree is
    // left behind.
    assert_eq!(git(project.path(), &["rev-parse", "HEAD"]), head);
    assert_eq!(
        git(project.path(), &["diff", "--cached", "--name-only"]),
        ""
    );
    assert_eq!(git(project.path(), &["branch", "--list"]), "* main\n");
    assert_eq!(
        git(project.path(), &["worktree", "list"]).lines().count(),
        1
    );
    let status = git(project.path(), &["status", "--porcelain", "-uall"]);
    assert!(!status.contains("worktrees"), "{status}");
    // `orch diff` shows what the mission changed; `orch undo` takes it back.
    let (output, diff, _) = run(project.orch().arg("diff"));
    assert!(output.status.success());
    assert!(diff.contains("-    1\n+    10\n"), "{diff}");
    assert!(diff.contains("+    30\n"), "{diff}");
    let (output, stdout, stderr) = run(project.orch().arg("undo"));
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("restored 1 file(s)"), "{stdout}");
    assert_eq!(project.read("src/lib.rs"), LIB);
}

#[test]
fn undo_refuses_when_the_user_changed_a_file_since() {
    let project = repository();
    project.write("notes.md", "mine\n");
    let script = json!({"agents": {
        "Commander": [
            {"when": "Mission goal", "tool_calls": [
                call("delegate_task", json!({"agent": "Worker", "description": "one", "prompt": "Job one", "background": false}))]},
            {"when": "one", "text": "Done."},
            {"when": "not complete", "text": "Stopping."}
        ],
        "Worker": [
            {"when": "Job one", "tool_calls": [
                call("read", json!({"path": "src/lib.rs"})),
                call("write", json!({"path": "src/new.rs", "content": "pub fn new() {}\n"}))]},
            {"when": "created src/new.rs", "tool_calls": [call("edit", json!({"path": "src/lib.rs", "old": "    2\n", "new": "    2000\n"}))]},
            {"when": "edited", "text": "Done."}
        ]
    }});
    let (code, _, stderr) = mission(&project, &script);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(project.read("src/lib.rs").contains("2000"));
    assert!(project.file("src/new.rs").exists());
    let (_, stat, _) = run(project.orch().args(["diff", "--stat"]));
    assert!(
        stat.contains("src/lib.rs") && stat.contains("src/new.rs"),
        "{stat}"
    );
    assert!(!stat.contains("notes.md"), "{stat}");
    assert!(!stat.contains("@@"), "--stat printed the patch: {stat}");
    // The user edits a file the mission changed: undo refuses, names it,
    // and writes nothing.
    let edited = project
        .read("src/lib.rs")
        .replace("    3\n", "    3 // mine\n");
    project.write("src/lib.rs", &edited);
    let (output, _, stderr) = run(project.orch().arg("undo"));
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("changed since the mission ended"),
        "{stderr}"
    );
    assert!(stderr.contains("src/lib.rs"), "{stderr}");
    assert_eq!(project.read("src/lib.rs"), edited);
    assert!(project.file("src/new.rs").exists());
    // Their edit undone by hand, undo takes the mission back, and only it.
    project.write("src/lib.rs", &edited.replace("    3 // mine\n", "    3\n"));
    let (output, stdout, stderr) = run(project.orch().arg("undo"));
    assert!(output.status.success(), "{stdout}{stderr}");
    assert_eq!(project.read("src/lib.rs"), LIB);
    assert!(!project.file("src/new.rs").exists());
    assert_eq!(project.read("notes.md"), "mine\n");
}

#[test]
fn workers_on_the_same_lines_conflict_and_the_conflict_becomes_a_plan_item() {
    let project = repository();
    let script = json!({"agents": {
        "Commander": commander(),
        "Worker": [
            {"when": "Job one", "tool_calls": [call("read", json!({"path": "src/lib.rs", "limit": 6}))]},
            {"when": "Job two", "tool_calls": [call("read", json!({"path": "src/lib.rs", "offset": 5}))]},
            {"when": "lines 1-6", "tool_calls": [call("edit", json!({"path": "src/lib.rs", "old": "    2\n", "new": "    20\n"}))]},
            {"when": "pub fn three", "tool_calls": [call("edit", json!({"path": "src/lib.rs", "old": "pub fn two() -> i32 {\n    2\n", "new": "pub fn two() -> i32 {\n    22\n"}))]},
            {"when": "at line 6", "tool_calls": [both_started(&project, "one-waited")]},
            {"when": "at line 5", "tool_calls": [both_started(&project, "two-waited")]},
            {"when": "one-waited", "text": "One done."},
            {"when": "two-waited", "text": "Two done."}
        ]
    }});
    let (code, events, stderr) = mission(&project, &script);
    assert_eq!(code, Some(1), "{stderr}");
    let landed = of_type(&events, "task_landed");
    assert_eq!(landed.len(), 2, "{events:?}");
    let conflict = landed
        .iter()
        .find(|l| l["conflicts"].is_array())
        .expect("one task conflicts");
    assert_eq!(conflict["conflicts"], json!(["src/lib.rs"]));
    let item = conflict["item"].as_str().expect("a plan item for it");
    // Exactly one side is in the project; the other waits in the plan.
    let lib = project.read("src/lib.rs");
    assert!(
        lib.contains("    20\n") != lib.contains("    22\n"),
        "{lib}"
    );
    assert!(!lib.contains("<<<<<<<"), "{lib}");
    let plan = project.read(".opencode/todo.md");
    assert!(
        plan.contains(item) && plan.contains("Resolve the merge conflict of task_"),
        "{plan}"
    );
    let told = of_type(&events, "task_finished")
        .into_iter()
        .filter_map(|f| f["result"].as_str())
        .find(|r| r.contains("conflicts with work that landed first"))
        .expect("the Commander is told")
        .to_string();
    assert!(told.contains("src/lib.rs (lines "), "{told}");
    assert!(
        told.contains(&format!("plan item {item} was added")),
        "{told}"
    );
    // `orch status` says what landed and what conflicts.
    let (_, status, _) = run(project.orch().arg("status"));
    assert!(status.contains("landed: src/lib.rs"), "{status}");
    assert!(
        status.contains(&format!(
            "conflicts in src/lib.rs; nothing landed (plan item {item})"
        )),
        "{status}"
    );
}

#[test]
fn a_failed_worker_leaves_the_users_tree_byte_identical() {
    let project = repository();
    // The user's own uncommitted change is there at the start.
    project.write("src/lib.rs", &LIB.replace("    2\n", "    2 // mine\n"));
    project.write("run.json", "{}");
    // What the user's git shows, orch's own records aside.
    let status = || {
        git(project.path(), &["status", "--porcelain", "-uall"])
            .lines()
            .filter(|line| !line.contains(".opencode/"))
            .map(|line| format!("{line}\n"))
            .collect::<String>()
    };
    let before = status();
    let lib_before = project.read("src/lib.rs");
    let script = json!({"agents": {
        "Commander": [
            {"when": "Mission goal", "tool_calls": [
                call("delegate_task", json!({"agent": "Worker", "description": "doomed", "prompt": "Job one", "background": false}))]},
            {"when": "doomed", "text": "It failed."},
            {"when": "not complete", "text": "Stopping."}
        ],
        // Sees the user's change, writes, then has nothing left to say: the
        // turn fails and so does the task.
        "Worker": [
            {"when": "Job one", "tool_calls": [call("read", json!({"path": "src/lib.rs"}))]},
            {"when": "mine", "tool_calls": [
                call("write", json!({"path": "src/lib.rs", "content": "broken\n"})),
                call("write", json!({"path": "new.txt", "content": "stray\n"}))]}
        ]
    }});
    let (code, events, stderr) = mission(&project, &script);
    assert_eq!(code, Some(1), "{stderr}");
    let finished = of_type(&events, "task_finished");
    assert_eq!(finished[0]["status"], "failed", "{finished:?}");
    assert!(of_type(&events, "task_landed").is_empty());
    assert_eq!(project.read("src/lib.rs"), lib_before);
    assert!(!project.file("new.txt").exists());
    assert_eq!(status(), before);
    assert_eq!(
        git(project.path(), &["worktree", "list"]).lines().count(),
        1
    );
    // With --keep-worktrees the failed task's worktree stays, its change
    // recorded under its ref, and still nothing lands.
    let (code, events, stderr) = mission_with(
        &project,
        &script,
        &["--keep-worktrees", "--max-iterations", "1"],
    );
    assert_eq!(code, Some(1), "{stderr}");
    let mission = events
        .iter()
        .find(|e| e["type"] == "mission_started")
        .map(|e| e["mission"].as_str().unwrap().to_string())
        .unwrap();
    let kept = project.file(&format!(".opencode/worktrees/{mission}/task_1"));
    assert_eq!(
        std::fs::read_to_string(kept.join("new.txt")).unwrap(),
        "stray\n"
    );
    let result = git(
        project.path(),
        &[
            "show",
            &format!("refs/orch/{mission}/task_1/result:new.txt"),
        ],
    );
    assert_eq!(result, "stray\n");
    assert!(!project.file("new.txt").exists());
    assert_eq!(project.read("src/lib.rs"), lib_before);
}

#[test]
fn a_killed_missions_unmerged_work_is_never_deleted_without_asking() {
    let project = repository();
    let script = json!({"agents": {
        "Commander": [
            {"when": "Mission goal", "tool_calls": [
                call("delegate_task", json!({"agent": "Worker", "description": "slow", "prompt": "Job one", "background": false}))]},
            {"text": "Done."}
        ],
        "Worker": [
            {"when": "Job one", "tool_calls": [call("write", json!({"path": "half.rs", "content": "// half done\n"}))]},
            {"when": "created half.rs", "tool_calls": [call("bash", json!({"command": "sleep 60"}))]},
            {"text": "Done."}
        ]
    }});
    project.write("run.json", &script.to_string());
    let mut child = project
        .orch()
        .args([
            "--provider",
            "scripted",
            "--script",
            "run.json",
            "task",
            "Slow",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let journal = || {
        std::fs::read_dir(project.file(".opencode/missions"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| {
                std::fs::read_to_string(entry.path().join("events.jsonl")).unwrap_or_default()
            })
            .collect::<String>()
    };
    let started = std::time::Instant::now();
    while !journal().contains("sleep 60") {
        assert!(
            started.elapsed().as_secs() < 60,
            "the Worker never got to its command"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The half-done work is in its worktree, not in the project.
    assert!(!project.file("half.rs").exists());
    let mission = project.read(".opencode/missions/latest").trim().to_string();
    let tree = project.file(&format!(".opencode/worktrees/{mission}/task_1"));
    assert_eq!(
        std::fs::read_to_string(tree.join("half.rs")).unwrap(),
        "// half done\n"
    );
    // Headless, a new mission refuses to delete it, and says what to do.
    let (output, _, stderr) = run(project.orch().args([
        "--provider",
        "scripted",
        "--script",
        "run.json",
        "task",
        "Other",
    ]));
    assert!(!output.status.success());
    assert!(
        stderr.contains("unmerged work in the worktrees of task_1")
            && stderr.contains("orch resume")
            && stderr.contains("orch abandon"),
        "{stderr}"
    );
    assert!(tree.join("half.rs").exists());
    // `orch abandon` says what it deletes, and leaves git clean.
    let (output, stdout, stderr) = run(project.orch().arg("abandon"));
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.contains("deleted the unmerged work of task_1"),
        "{stdout}"
    );
    assert!(!tree.exists());
    assert_eq!(
        git(project.path(), &["worktree", "list"]).lines().count(),
        1
    );
    assert_eq!(
        git(
            project.path(),
            &["for-each-ref", &format!("refs/orch/{mission}/")]
        ),
        ""
    );
    let (output, _, stderr) = run(project.orch().arg("resume"));
    assert!(!output.status.success());
    assert!(stderr.contains("was abandoned"), "{stderr}");
}

#[test]
fn a_workers_checks_and_background_jobs_work_in_its_worktree() {
    let project = repository();
    project.write(
        "Cargo.toml",
        "[package]\nname = \"wt\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    );
    project.write(".gitignore", "/target\n");
    git(
        project.path(),
        &["add", "-A", "--", ".", ":(exclude).opencode"],
    );
    git(
        project.path(),
        &[
            "-c",
            "core.hooksPath=/dev/null",
            "commit",
            "-q",
            "-m",
            "crate",
        ],
    );
    let script = json!({"agents": {
        "Commander": [
            {"when": "Mission goal", "tool_calls": [
                call("delegate_task", json!({"agent": "Worker", "description": "one", "prompt": "Job one", "background": false}))]},
            {"when": "one", "text": "Done."},
            {"when": "not complete", "text": "Stopping."}
        ],
        "Worker": [
            {"when": "Job one", "tool_calls": [call("read", json!({"path": "src/lib.rs"}))]},
            {"when": "pub fn one", "tool_calls": [call("edit", json!({"path": "src/lib.rs", "old": "    1\n", "new": "    \"one\"\n"}))]},
            {"when": "edited src/lib.rs", "tool_calls": [call("run_background", json!({"command": "echo from the job > from-bg.txt"}))]},
            {"when": "started bg_", "tool_calls": [call("bash", json!({"command": "sleep 0.5; cat from-bg.txt"}))]},
            {"when": "from the job", "text": "Done."}
        ]
    }});
    let (code, events, stderr) = mission(&project, &script);
    assert_eq!(code, Some(1), "{stderr}");
    // The edit's diagnostics checked the worktree, where the error is.
    let worker = std::fs::read_dir(project.file(".opencode/sessions"))
        .unwrap()
        .flatten()
        .find(|entry| entry.file_name().to_string_lossy().starts_with("worker-"))
        .expect("the Worker's transcript");
    let transcript = std::fs::read_to_string(worker.path()).unwrap();
    let edit = transcript
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter_map(|line| line["message"]["content"].as_str().map(str::to_string))
        .find(|content| content.starts_with("edited src/lib.rs"))
        .expect("the edit's result");
    assert!(
        edit.contains("[diagnostics: cargo check") && edit.contains("src/lib.rs:2"),
        "{edit}"
    );
    // The job wrote the worktree, and its file came with the landing.
    let landed = of_type(&events, "task_landed");
    assert_eq!(landed.len(), 1, "{events:?}");
    let files = landed[0]["files"].to_string();
    assert!(
        files.contains("from-bg.txt") && files.contains("src/lib.rs"),
        "{files}"
    );
    assert_eq!(project.read("from-bg.txt"), "from the job\n");
}

/// The whole way: two Workers on the same lines, the conflict becomes a
/// plan item, a Worker resolves it from both sides, the Reviewer verifies,
/// the gate passes, and the mission leaves no worktree or task ref behind.
#[test]
fn a_conflict_is_resolved_by_a_worker_and_the_gate_passes() {
    let project = repository();
    let script = json!({"agents": {
        "Commander": [
            {"when": "Mission goal", "tool_calls": [
                call("delegate_task", json!({"agent": "Worker", "description": "first", "prompt": "Job one", "background": true})),
                call("delegate_task", json!({"agent": "Worker", "description": "second", "prompt": "Job two", "background": true}))]},
            {"when": "started task_2", "text": "Waiting."},
            {"when": "conflicts with work that landed first", "tool_calls": [
                call("delegate_task", json!({"agent": "Worker", "description": "resolve", "prompt": "Resolve plan item T1: keep the second change", "background": false}))]},
            {"when": "Background task", "text": "Noted."},
            {"when": "Resolved.", "tool_calls": [
                call("delegate_task", json!({"agent": "Reviewer", "description": "review", "prompt": "Review T1", "background": false}))]},
            {"when": "Verified.", "text": "All done."},
            {"when": "Background task", "text": "Noted."}
        ],
        "Worker": [
            {"when": "Job one", "tool_calls": [call("read", json!({"path": "src/lib.rs", "limit": 6}))]},
            {"when": "Job two", "tool_calls": [call("read", json!({"path": "src/lib.rs", "offset": 5}))]},
            {"when": "lines 1-6", "tool_calls": [call("edit", json!({"path": "src/lib.rs", "old": "    2\n", "new": "    20\n"}))]},
            {"when": "pub fn three", "tool_calls": [call("edit", json!({"path": "src/lib.rs", "old": "pub fn two() -> i32 {\n    2\n", "new": "pub fn two() -> i32 {\n    22\n"}))]},
            {"when": "at line 6", "tool_calls": [both_started(&project, "one-waited")]},
            {"when": "at line 5", "tool_calls": [both_started(&project, "two-waited")]},
            {"when": "one-waited", "text": "One done."},
            {"when": "two-waited", "text": "Two done."},
            {"when": "Resolve plan item T1", "tool_calls": [call("read", json!({"path": "src/lib.rs"}))]},
            {"when": "<<<<<<<", "tool_calls": [call("write", json!({"path": "src/lib.rs", "content": LIB.replace("    2\n", "    22\n")}))]},
            {"when": "overwrote src/lib.rs", "text": "Resolved."}
        ],
        "Reviewer": [
            {"when": "Review T1", "tool_calls": [call("update_todo", json!({"id": "T1", "status": "completed"}))]},
            {"when": "T1", "text": "Verified."}
        ]
    }});
    let (code, events, stderr) = mission_with(&project, &script, &["--max-iterations", "2"]);
    assert_eq!(code, Some(0), "{stderr}\n{events:?}");
    let lib = project.read("src/lib.rs");
    assert_eq!(lib, LIB.replace("    2\n", "    22\n"));
    // One change landed, the other conflicted; the resolution lands what
    // is left of the second change (nothing, when the second landed first).
    let landed = of_type(&events, "task_landed");
    assert!(landed.len() >= 2, "{landed:?}");
    assert_eq!(
        landed.iter().filter(|l| l["conflicts"].is_array()).count(),
        1,
        "{landed:?}"
    );
    assert_eq!(
        git(project.path(), &["worktree", "list"]).lines().count(),
        1
    );
    let mission = of_type(&events, "mission_started")[0]["mission"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        git(
            project.path(),
            &["for-each-ref", &format!("refs/orch/{mission}/")]
        ),
        ""
    );
}

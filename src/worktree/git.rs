//! The engine's own git commands: snapshots of a working tree that never
//! touch the user's index, hidden refs, worktrees, three-way merges of
//! trees, and blobs.
//!
//! Every command runs with hooks, fsmonitor and signing off, without a
//! terminal prompt, and with a fixed identity, so nothing of the user's
//! repository configuration runs code or asks anything; these are the
//! engine's own actions and run outside the sandbox (which keeps `.git/`
//! read-only for agents' commands). They start through the launcher
//! (`process::run_helper`): their own recorded process group, secret-named
//! variables removed, a timeout and a bound on what they write.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The repository of one working tree.
#[derive(Debug, Clone)]
pub struct Git {
    dir: PathBuf,
}

/// One path's change between two trees (`git diff-tree -r`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    /// `000000` when the path did not exist.
    pub old_mode: String,
    pub new_mode: String,
    pub old_oid: String,
    pub new_oid: String,
}

/// A three-way merge of trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merge {
    Clean {
        tree: String,
    },
    /// `tree` holds the conflicted files with conflict markers.
    Conflict {
        tree: String,
        files: Vec<String>,
        messages: String,
    },
}

/// What every engine git command runs with: hooks, fsmonitor and signing
/// off, no advice.
const SETTINGS: [&str; 10] = [
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "commit.gpgSign=false",
    "-c",
    "tag.gpgSign=false",
    "-c",
    "advice.detachedHead=false",
];

/// No terminal prompt, no editor, and orch's own identity.
const IDENTITY: [(&str, &str); 6] = [
    ("GIT_TERMINAL_PROMPT", "0"),
    ("GIT_AUTHOR_NAME", "orch"),
    ("GIT_AUTHOR_EMAIL", "orch@localhost"),
    ("GIT_COMMITTER_NAME", "orch"),
    ("GIT_COMMITTER_EMAIL", "orch@localhost"),
    ("GIT_EDITOR", "true"),
];

/// Variables of the caller's that would point git elsewhere.
const CLEARED: [&str; 3] = ["GIT_INDEX_FILE", "GIT_DIR", "GIT_WORK_TREE"];

/// A git step that runs longer than this is stuck (a filter waiting on
/// something, a locked repository); it is killed and the step fails.
const TIMEOUT: Duration = Duration::from_secs(600);

/// The most a git command may write on stdout. Outputs are wanted whole —
/// a tree id, a blob to land, the patch `orch diff` prints — so this is a
/// bound against runaway memory, far above any change a mission makes;
/// past it the step fails with that said rather than cutting the output.
pub const MAX_OUTPUT: usize = 1 << 30;

/// The all-zero object id git uses for "no object".
pub const NO_MODE: &str = "000000";

impl Git {
    /// The repository whose top-level working tree is `root`, if it is one.
    pub fn at_top(root: &Path) -> Option<Git> {
        let git = Git {
            dir: root.to_path_buf(),
        };
        let top = git.run(&["rev-parse", "--show-toplevel"]).ok()?;
        let top = std::fs::canonicalize(top.trim()).ok()?;
        (top == std::fs::canonicalize(root).ok()?).then_some(git)
    }

    /// The same repository, working in `dir` (a worktree of it).
    pub fn in_dir(&self, dir: &Path) -> Git {
        Git {
            dir: dir.to_path_buf(),
        }
    }

    /// Run git with `args` and `env` on top of the engine's settings,
    /// `stdin` written to it, through the launcher.
    fn launch(
        &self,
        args: &[&str],
        env: &[(&str, &OsStr)],
        stdin: Option<Vec<u8>>,
    ) -> Result<Output, String> {
        let mut all: Vec<OsString> = SETTINGS.iter().map(OsString::from).collect();
        all.extend(args.iter().map(OsString::from));
        crate::process::run_helper(crate::process::Helper {
            program: OsStr::new("git"),
            args: &all,
            cwd: &self.dir,
            env: environment(std::env::vars_os(), env),
            stdin,
            timeout: TIMEOUT,
            max_stdout: MAX_OUTPUT,
        })
        .map_err(|err| format!("git {}: {err}", args.join(" ")))
    }

    fn output(&self, args: &[&str], env: &[(&str, &OsStr)]) -> Result<Output, String> {
        self.launch(args, env, None)
    }

    fn run_with(&self, args: &[&str], env: &[(&str, &OsStr)]) -> Result<String, String> {
        let output = self.output(args, env)?;
        if !output.status.success() {
            return Err(format!(
                "git {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        String::from_utf8(output.stdout).map_err(|_| format!("git {}: not UTF-8", args.join(" ")))
    }

    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        self.run_with(args, &[])
    }

    /// The commit HEAD names, if any (a repository without commits has none).
    pub fn head(&self) -> Option<String> {
        self.run(&["rev-parse", "--verify", "-q", "HEAD^{commit}"])
            .ok()
            .map(|oid| oid.trim().to_string())
    }

    fn git_path(&self, name: &str) -> Result<PathBuf, String> {
        let path = self.run(&["rev-parse", "--git-path", name])?;
        Ok(self.dir.join(path.trim()))
    }

    /// Commit the working tree as it is — tracked files, and untracked ones
    /// that are not ignored — with `parent` (HEAD when `None` and there is
    /// one), without touching the user's index: a private copy of it is
    /// used and removed.
    pub fn snapshot(&self, parent: Option<&str>, message: &str) -> Result<String, String> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let index = self.git_path("index")?;
        let private = self.git_path(&format!(
            "orch-snapshot-{}-{}.index",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ))?;
        let head = self.head();
        let result = (|| {
            // The user's index as a starting point keeps its file stat
            // data, so only changed files are read again.
            if index.exists() {
                std::fs::copy(&index, &private)
                    .map_err(|err| format!("copying the index: {err}"))?;
                // Git trusts an entry's stat data only when the file is
                // older than the index; a file changed in the same clock
                // tick as the index was written keeps its size and time.
                // The copy keeps the index's time, so such "racily clean"
                // files are read again as git would.
                keep_mtime(&index, &private)
                    .map_err(|err| format!("copying the index's time: {err}"))?;
            }
            let env = [("GIT_INDEX_FILE", private.as_os_str())];
            if !index.exists()
                && let Some(head) = &head
            {
                self.run_with(&["read-tree", head], &env)?;
            }
            // orch's own folder is never part of a snapshot (naming it
            // when the user ignores it already would make `add` fail).
            let ignored = self
                .output(&["check-ignore", "-q", ".opencode"], &[])
                .is_ok_and(|output| output.status.success());
            let mut add = vec!["add", "-A", "--", "."];
            if !ignored {
                add.push(":(top,exclude).opencode");
            }
            // A worktree's links to the project's installed dependencies
            // are not the task's work.
            let shared: Vec<String> = super::SHARED
                .iter()
                .filter(|name| {
                    std::fs::symlink_metadata(self.dir.join(name))
                        .is_ok_and(|meta| meta.file_type().is_symlink())
                })
                .map(|name| format!(":(top,exclude){name}"))
                .collect();
            add.extend(shared.iter().map(String::as_str));
            self.run_with(&add, &env)?;
            let tree = self.run_with(&["write-tree"], &env)?;
            let tree = tree.trim();
            let parent = parent.map(str::to_string).or(head);
            let mut args = vec!["commit-tree", tree, "-m", message];
            if let Some(parent) = &parent {
                args.extend(["-p", parent]);
            }
            Ok(self.run(&args)?.trim().to_string())
        })();
        let _ = std::fs::remove_file(&private);
        result
    }

    /// A commit of `tree` with `parents`.
    pub fn commit_tree(
        &self,
        tree: &str,
        parents: &[&str],
        message: &str,
    ) -> Result<String, String> {
        let mut args = vec!["commit-tree", tree, "-m", message];
        for parent in parents {
            args.extend(["-p", parent]);
        }
        Ok(self.run(&args)?.trim().to_string())
    }

    pub fn tree_of(&self, commit: &str) -> Result<String, String> {
        Ok(self
            .run(&["rev-parse", &format!("{commit}^{{tree}}")])?
            .trim()
            .to_string())
    }

    pub fn set_ref(&self, name: &str, oid: &str) -> Result<(), String> {
        self.run(&["update-ref", name, oid]).map(drop)
    }

    pub fn get_ref(&self, name: &str) -> Option<String> {
        self.run(&["rev-parse", "--verify", "-q", name])
            .ok()
            .map(|oid| oid.trim().to_string())
    }

    /// Delete every ref under `prefix` (`refs/orch/<mission>/`).
    pub fn delete_refs(&self, prefix: &str) -> Result<(), String> {
        let refs = self.run(&["for-each-ref", "--format=%(refname)", prefix])?;
        for name in refs.lines().filter(|line| !line.is_empty()) {
            self.run(&["update-ref", "-d", name])?;
        }
        Ok(())
    }

    /// Check `commit` out, detached, in a new worktree at `path`.
    pub fn add_worktree(&self, path: &Path, commit: &str) -> Result<(), String> {
        let shown = path.to_string_lossy();
        self.run(&["worktree", "add", "--detach", "--force", &shown, commit])
            .map(drop)
    }

    /// Remove the worktree at `path` with whatever it holds.
    pub fn remove_worktree(&self, path: &Path) -> Result<(), String> {
        let shown = path.to_string_lossy();
        let removed = self.run(&["worktree", "remove", "--force", "--force", &shown]);
        if removed.is_err() && path.exists() {
            std::fs::remove_dir_all(path).map_err(|err| format!("removing {shown}: {err}"))?;
        }
        self.run(&["worktree", "prune"]).map(drop)
    }

    /// Merge `theirs` into `ours` against `base` (all commits or trees).
    pub fn merge(&self, base: &str, ours: &str, theirs: &str) -> Result<Merge, String> {
        let base_arg = format!("--merge-base={base}");
        // NUL-separated: names as they are, never quoted.
        let args = [
            "merge-tree",
            "--write-tree",
            "--name-only",
            "-z",
            &base_arg,
            ours,
            theirs,
        ];
        let output = self.output(&args, &[])?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        // The tree, the conflicted names, an empty field, then messages.
        let mut fields = text.split('\0');
        let tree = fields.next().unwrap_or_default().trim().to_string();
        let mut names = Vec::new();
        for field in fields.by_ref() {
            if field.is_empty() {
                break;
            }
            names.push(field.to_string());
        }
        let messages = fields
            .filter(|field| !field.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        match output.status.code() {
            Some(0) => Ok(Merge::Clean { tree }),
            Some(1) => {
                let mut files = names;
                files.dedup();
                Ok(Merge::Conflict {
                    tree,
                    files,
                    messages,
                })
            }
            _ => Err(format!(
                "git merge-tree failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )),
        }
    }

    /// Every path that differs between trees (or commits) `from` and `to`.
    pub fn changes(&self, from: &str, to: &str) -> Result<Vec<Change>, String> {
        let text = self.run(&["diff-tree", "-r", "-z", "--no-renames", from, to])?;
        let mut fields = text.split('\0');
        let mut changes = Vec::new();
        while let Some(meta) = fields.next() {
            let meta = meta.trim_start_matches(':');
            if meta.is_empty() {
                continue;
            }
            let parts: Vec<&str> = meta.split(' ').collect();
            let path = fields.next().unwrap_or_default();
            if parts.len() < 5 {
                return Err(format!("git diff-tree: cannot read {meta:?}"));
            }
            changes.push(Change {
                path: path.to_string(),
                old_mode: parts[0].to_string(),
                new_mode: parts[1].to_string(),
                old_oid: parts[2].to_string(),
                new_oid: parts[3].to_string(),
            });
        }
        Ok(changes)
    }

    /// The object ids the files at `paths` (relative, in this working
    /// tree) would get, through the clean filters and line-ending
    /// conversion their attributes choose: comparable with a tree's ids.
    pub fn hash_files(&self, paths: &[&str]) -> Result<Vec<String>, String> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let mut input = String::new();
        for path in paths {
            input.push_str(path);
            input.push('\n');
        }
        let output = self.launch(
            &["hash-object", "--stdin-paths"],
            &[],
            Some(input.into_bytes()),
        )?;
        if !output.status.success() {
            return Err(format!(
                "git hash-object failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_string)
            .collect())
    }

    /// The bytes blob `oid` has as a file at `path` in the working tree:
    /// through the smudge filters and line-ending conversion its
    /// attributes choose.
    pub fn checkout_bytes(&self, oid: &str, path: &str) -> Result<Vec<u8>, String> {
        let at = format!("--path={path}");
        let output = self.output(&["cat-file", "--filters", &at, oid], &[])?;
        if !output.status.success() {
            return Err(format!(
                "git cat-file --filters {oid} ({path}): {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(output.stdout)
    }

    /// The bytes of blob `oid`.
    pub fn blob(&self, oid: &str) -> Result<Vec<u8>, String> {
        let output = self.output(&["cat-file", "blob", oid], &[])?;
        if !output.status.success() {
            return Err(format!(
                "git cat-file blob {oid}: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(output.stdout)
    }
}

/// What an engine git command sees of `inherited`: no secret-named
/// variables, nothing that points git elsewhere, orch's identity, then
/// `env`.
fn environment(
    inherited: impl IntoIterator<Item = (OsString, OsString)>,
    env: &[(&str, &OsStr)],
) -> Vec<(OsString, OsString)> {
    let set = IDENTITY.iter().map(|(name, _)| *name);
    let ours: Vec<&str> = CLEARED
        .into_iter()
        .chain(set)
        .chain(env.iter().map(|(name, _)| *name))
        .collect();
    // The user's git configuration from the environment stays whole: it is
    // git's own, and a part of it makes git refuse to run.
    let mut vars: Vec<(OsString, OsString)> = inherited
        .into_iter()
        .filter(|(name, _)| {
            !crate::process::is_secret(name)
                || crate::secrets::is_git_config_name(&name.to_string_lossy())
        })
        .filter(|(name, _)| !ours.iter().any(|own| name == own))
        .collect();
    vars.extend(
        IDENTITY
            .iter()
            .map(|(name, value)| (name.into(), value.into())),
    );
    vars.extend(
        env.iter()
            .map(|(name, value)| (name.into(), (*value).into())),
    );
    vars
}

/// Give `copy` the modification time of `original`.
fn keep_mtime(original: &Path, copy: &Path) -> std::io::Result<()> {
    let modified = std::fs::metadata(original)?.modified()?;
    std::fs::File::options()
        .write(true)
        .open(copy)?
        .set_modified(modified)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_never_sees_secrets_or_a_callers_repository_settings() {
        let inherited = [
            ("PATH", "/usr/bin"),
            ("OPENAI_API_KEY", "sk-live"),
            ("GITHUB_TOKEN", "ghp"),
            ("GIT_DIR", "/elsewhere/.git"),
            ("GIT_AUTHOR_NAME", "user"),
            ("GIT_INDEX_FILE", "/elsewhere/index"),
        ]
        .map(|(name, value)| (OsString::from(name), OsString::from(value)));
        let private = OsStr::new("/tmp/private-index");
        let vars = environment(inherited, &[("GIT_INDEX_FILE", private)]);
        let get = |name: &str| -> Vec<&OsString> {
            vars.iter()
                .filter(|(set, _)| set == name)
                .map(|(_, value)| value)
                .collect()
        };
        assert_eq!(get("PATH"), ["/usr/bin"]);
        for gone in ["OPENAI_API_KEY", "GITHUB_TOKEN", "GIT_DIR"] {
            assert!(get(gone).is_empty(), "{gone}: {vars:?}");
        }
        assert_eq!(get("GIT_AUTHOR_NAME"), ["orch"]);
        assert_eq!(get("GIT_INDEX_FILE"), [private]);
        assert_eq!(get("GIT_TERMINAL_PROMPT"), ["0"]);
    }

    /// Configuration passed as `GIT_CONFIG_COUNT` and its pairs (CI and
    /// containers set `safe.directory` so) reaches git whole: git refuses
    /// to run when a counted key is missing.
    #[test]
    fn git_configuration_from_the_environment_stays_whole() {
        let inherited = [
            ("GIT_CONFIG_COUNT", "1"),
            ("GIT_CONFIG_KEY_0", "safe.directory"),
            ("GIT_CONFIG_VALUE_0", "*"),
        ]
        .map(|(name, value)| (OsString::from(name), OsString::from(value)));
        let vars = environment(inherited, &[]);
        let dir = tempfile::tempdir().unwrap();
        let output = std::process::Command::new("git")
            .args(["init", "-q"])
            .arg(dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(vars.iter().map(|(name, value)| (name, value)))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        for name in ["GIT_CONFIG_COUNT", "GIT_CONFIG_KEY_0", "GIT_CONFIG_VALUE_0"] {
            assert!(vars.iter().any(|(set, _)| set == name), "{name}: {vars:?}");
        }
    }
}

//! Multi-file rewrites, shared by `ast_replace` and `sed_replace` (which
//! find their files through `search::Target`): how such a tool loads them,
//! and how a set of new whole-file contents is checked, written and shown
//! as a unified diff.
//!
//! The write rules are `edit`'s, per file: under the file's lock the file
//! must still hold exactly what the tool read (compare and swap), and a file
//! the session saw as something else must not be overwritten (it changed
//! since the session last read it). Unlike `edit`, a file the session never
//! read may be rewritten: the tool read it itself and shows the diff. A
//! refused file is reported; the other files are still written.

use std::fs;
use std::path::{Path, PathBuf};

use super::path::relative;
use super::seen::{Fingerprint, Seen};
use crate::files::{self, Durability};
use similar::TextDiff;

/// Largest file a multi-file tool loads (the same limit as `edit`).
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Files one call may change when the model gives no `max_files`.
pub const DEFAULT_MAX_FILES: usize = 100;
/// Upper bound on a model-requested `max_files`.
pub const HARD_MAX_FILES: usize = 2000;
/// Bytes of diff shown for one file.
const DIFF_FILE_MAX_BYTES: usize = 8 * 1024;
/// Bytes of diff shown for one call, all files together.
const DIFF_MAX_BYTES: usize = 40 * 1024;

/// A text file as a multi-file tool read it.
pub struct Source {
    pub path: PathBuf,
    pub shown: String,
    pub text: String,
    fingerprint: Fingerprint,
}

/// Why a file was not looked into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    Binary,
    TooLarge,
    NotUtf8,
    Unreadable,
    Link,
}

/// Read the file at `path` if it is text a tool may work on: a regular
/// file, not a link (it is opened without following one, so a file swapped
/// for a link after the walk is not read through it), read up to the cap
/// (a file that grows past it is too large, whatever its size was a moment
/// before).
pub fn load(root: &Path, path: &Path) -> Result<Source, Skip> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|err| {
            if err.raw_os_error() == Some(libc::ELOOP) {
                Skip::Link
            } else {
                Skip::Unreadable
            }
        })?;
    let meta = file.metadata().map_err(|_| Skip::Unreadable)?;
    if !meta.is_file() {
        return Err(Skip::Unreadable);
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(Skip::TooLarge);
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|_| Skip::Unreadable)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Skip::TooLarge);
    }
    if bytes.contains(&0) {
        return Err(Skip::Binary);
    }
    let fingerprint = Fingerprint::of_bytes(&bytes);
    let text = String::from_utf8(bytes).map_err(|_| Skip::NotUtf8)?;
    Ok(Source {
        path: path.to_path_buf(),
        shown: relative(root, path),
        text,
        fingerprint,
    })
}

/// Files a call left out, counted by reason, for the note under its output.
#[derive(Debug, Default)]
pub struct Skipped {
    binary: usize,
    too_large: usize,
    not_utf8: usize,
    unreadable: usize,
    links: usize,
}

impl Skipped {
    pub fn add(&mut self, skip: Skip) {
        match skip {
            Skip::Binary => self.binary += 1,
            Skip::TooLarge => self.too_large += 1,
            Skip::NotUtf8 => self.not_utf8 += 1,
            Skip::Unreadable => self.unreadable += 1,
            Skip::Link => self.links += 1,
        }
    }

    /// `[skipped 2 binary files, 1 file over 16777216 bytes]`, or nothing.
    pub fn note(&self) -> String {
        let plural = |n: usize| if n == 1 { "file" } else { "files" };
        let mut parts = Vec::new();
        if self.binary > 0 {
            parts.push(format!("{} binary {}", self.binary, plural(self.binary)));
        }
        if self.too_large > 0 {
            parts.push(format!(
                "{} {} over {MAX_FILE_BYTES} bytes",
                self.too_large,
                plural(self.too_large)
            ));
        }
        if self.not_utf8 > 0 {
            parts.push(format!(
                "{} {} not UTF-8",
                self.not_utf8,
                plural(self.not_utf8)
            ));
        }
        if self.unreadable > 0 {
            parts.push(format!(
                "{} unreadable {}",
                self.unreadable,
                plural(self.unreadable)
            ));
        }
        if self.links > 0 {
            let links = if self.links == 1 { "link" } else { "links" };
            parts.push(format!("{} {links} (not followed)", self.links));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("[skipped {}]\n", parts.join(", "))
        }
    }
}

/// One file's new content, and how many replacements made it.
pub struct Change {
    pub source: Source,
    pub after: String,
    pub replacements: usize,
}

/// What a multi-file tool reports as edited for the turn's diagnostics:
/// its `path` (the root when absent), unless the call was a dry run.
pub fn edited_path(args: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    if args.get("dry_run").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    Some(
        args.get("path")
            .and_then(Value::as_str)
            .unwrap_or(".")
            .to_string(),
    )
}

/// Time one file's diff may take before it settles for a less minimal one.
const DIFF_DEADLINE: std::time::Duration = std::time::Duration::from_millis(500);

/// The most text one call may hold as new file contents, all files
/// together: past it the call writes nothing.
pub const MAX_CALL_BYTES: usize = 64 * 1024 * 1024;

/// Count `after`, one file's new content, against the call's budget of
/// [`MAX_CALL_BYTES`] (each file's own at most [`MAX_FILE_BYTES`]).
pub fn within_budget(
    tool: &str,
    shown: &str,
    after: usize,
    total: &mut usize,
) -> Result<(), String> {
    if after as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "{tool} would make {shown} larger than {MAX_FILE_BYTES} bytes; nothing was written (check that the pattern cannot match the empty string)"
        ));
    }
    *total += after;
    if *total > MAX_CALL_BYTES {
        return Err(format!(
            "{tool} would rewrite more than {MAX_CALL_BYTES} bytes of files in one call; narrow path or glob (nothing was written)"
        ));
    }
    Ok(())
}

/// How the model's `max_files` is read: the default when absent, within
/// 1..=[`HARD_MAX_FILES`].
pub fn max_files(requested: Option<u64>) -> usize {
    super::search::requested_max(requested, DEFAULT_MAX_FILES, HARD_MAX_FILES)
}

/// Write `changes` (or, for a dry run, only check them) and describe what
/// happened: a summary line, each file's unified diff (capped), the files
/// refused and why, and `skipped`. Changes that leave a file as it was are
/// dropped by the caller; more than `max_files` changes write nothing.
pub fn apply(
    tool: &str,
    changes: Vec<Change>,
    seen: &Seen,
    dry_run: bool,
    max_files: usize,
    skipped: &Skipped,
) -> Result<String, String> {
    if changes.len() > max_files {
        return Err(format!(
            "{tool} would change {} files, more than max_files ({max_files}); narrow path (or the pattern), or raise max_files (nothing was written)",
            changes.len()
        ));
    }
    let mut written: Vec<&Change> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    for change in &changes {
        match commit(tool, change, seen, dry_run) {
            Ok(()) => written.push(change),
            Err(why) => refused.push(format!("{}: {why}", change.source.shown)),
        }
    }

    let replacements: usize = written.iter().map(|change| change.replacements).sum();
    let files = |n: usize| if n == 1 { "file" } else { "files" };
    let mut out = if dry_run {
        format!(
            "dry run: would change {} {} ({replacements} replacements); nothing was written\n",
            written.len(),
            files(written.len())
        )
    } else {
        format!(
            "changed {} {} ({replacements} replacements)\n",
            written.len(),
            files(written.len())
        )
    };
    let mut diff_bytes = 0;
    let mut not_shown = 0;
    for change in &written {
        let diff = unified_diff(&change.source.shown, &change.source.text, &change.after);
        if diff_bytes + diff.len().min(DIFF_FILE_MAX_BYTES) > DIFF_MAX_BYTES {
            not_shown += 1;
            continue;
        }
        let shown = if diff.len() > DIFF_FILE_MAX_BYTES {
            let head = crate::text::head(&diff, DIFF_FILE_MAX_BYTES);
            let head = &head[..head.rfind('\n').map_or(0, |at| at + 1)];
            format!(
                "{head}[… diff of {} cut at {DIFF_FILE_MAX_BYTES} bytes ({} in all)]\n",
                change.source.shown,
                diff.len()
            )
        } else {
            diff
        };
        diff_bytes += shown.len();
        out.push_str(&shown);
    }
    if not_shown > 0 {
        out.push_str(&format!(
            "[… diffs of {not_shown} more {} not shown; narrow path to see them]\n",
            files(not_shown)
        ));
    }
    if !refused.is_empty() {
        let verb = if dry_run { "would refuse" } else { "refused" };
        out.push_str(&format!(
            "{verb} {} {}:\n",
            refused.len(),
            files(refused.len())
        ));
        for line in refused {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out.push_str(&skipped.note());
    Ok(out)
}

/// Compare and swap one file under its lock; a dry run checks the same
/// rules and writes nothing.
fn commit(tool: &str, change: &Change, seen: &Seen, dry_run: bool) -> Result<(), String> {
    let path = &change.source.path;
    let lock = files::lock(path);
    let _held = lock.hold();
    let now = Fingerprint::of_file(path)
        .map_err(|err| format!("could not read it again before writing: {err}"))?;
    if now != Some(change.source.fingerprint) {
        return Err(format!(
            "changed while {tool} ran (another agent, a formatter or a command); not written, run {tool} again"
        ));
    }
    if seen.saw_otherwise(path, change.source.fingerprint) {
        return Err(format!(
            "changed since this session last read it (another agent, a formatter or a command changed it); read it again first, then {tool} (not written)"
        ));
    }
    if dry_run {
        return Ok(());
    }
    files::replace(path, change.after.as_bytes(), Durability::Synced)
        .map_err(|err| format!("cannot write it: {err}"))?;
    if let Some(written) = Fingerprint::of_written(path, change.after.as_bytes()) {
        seen.record(path, written);
    }
    Ok(())
}

/// The unified diff (three lines of context) from `before` to `after` of
/// the file shown as `shown`, with git's `a/` and `b/` headers.
pub fn unified_diff(shown: &str, before: &str, after: &str) -> String {
    // Past the deadline the diff is still correct, only less minimal: a
    // file rewritten throughout must not take minutes to show.
    TextDiff::configure()
        .deadline(std::time::Instant::now() + DIFF_DEADLINE)
        .diff_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{shown}"), &format!("b/{shown}"))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unified_diff_has_headers_and_hunks() {
        let diff = unified_diff("src/a.rs", "one\ntwo\nthree\n", "one\n2\nthree\n");
        assert_eq!(
            diff,
            "--- a/src/a.rs\n+++ b/src/a.rs\n@@ -1,3 +1,3 @@\n one\n-two\n+2\n three\n"
        );
    }

    #[test]
    fn a_dry_run_edits_nothing_for_diagnostics() {
        use serde_json::json;
        assert_eq!(edited_path(&json!({"pattern": "x"})), Some(".".into()));
        assert_eq!(
            edited_path(&json!({"path": "src/a.rs", "dry_run": false})),
            Some("src/a.rs".into())
        );
        assert_eq!(edited_path(&json!({"path": "src", "dry_run": true})), None);
    }

    #[test]
    fn max_files_is_bounded() {
        assert_eq!(max_files(None), DEFAULT_MAX_FILES);
        assert_eq!(max_files(Some(0)), 1);
        assert_eq!(max_files(Some(5)), 5);
        assert_eq!(max_files(Some(u64::MAX)), HARD_MAX_FILES);
    }

    #[test]
    fn skipped_files_are_counted_by_reason() {
        let mut skipped = Skipped::default();
        assert_eq!(skipped.note(), "");
        skipped.add(Skip::Binary);
        skipped.add(Skip::Binary);
        skipped.add(Skip::NotUtf8);
        assert_eq!(
            skipped.note(),
            "[skipped 2 binary files, 1 file not UTF-8]\n"
        );
    }

    #[test]
    fn a_file_changed_under_the_tool_is_refused_and_others_written() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        fs::write(root.join("a.txt"), "old a\n").unwrap();
        fs::write(root.join("b.txt"), "old b\n").unwrap();
        let change = |name: &str| {
            let source = load(&root, &root.join(name)).unwrap();
            let after = source.text.replace("old", "new");
            Change {
                source,
                after,
                replacements: 1,
            }
        };
        let changes = vec![change("a.txt"), change("b.txt")];
        // Changed after the tool read it, before it wrote.
        fs::write(root.join("b.txt"), "other b\n").unwrap();
        let seen = Seen::default();
        let out = apply(
            "sed_replace",
            changes,
            &seen,
            false,
            10,
            &Skipped::default(),
        )
        .unwrap();
        assert!(
            out.starts_with("changed 1 file (1 replacements)\n"),
            "{out}"
        );
        assert!(out.contains("+new a"), "{out}");
        assert!(
            out.contains("refused 1 file:\nb.txt: changed while sed_replace ran"),
            "{out}"
        );
        assert_eq!(fs::read_to_string(root.join("a.txt")).unwrap(), "new a\n");
        assert_eq!(fs::read_to_string(root.join("b.txt")).unwrap(), "other b\n");
        // What it wrote is what the session has now seen.
        assert!(!seen.saw_otherwise(&root.join("a.txt"), Fingerprint::of_bytes(b"new a\n")));
    }
}

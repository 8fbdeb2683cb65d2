//! Search tools: `glob` finds files by name, `grep` finds lines by regex,
//! `mgrep` by several regexes at once, grouped by pattern.
//!
//! Both walk the tree with ripgrep's `ignore` crate, so `.gitignore` (and
//! `.ignore`) rules apply even outside a git repository, `.git` itself is
//! skipped, and symbolic links are never followed out of the project. The
//! walks are blocking and run on tokio's blocking pool; they check the
//! call's cancellation token as they go.

use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use globset::{GlobBuilder, GlobMatcher};
use grep_regex::RegexMatcherBuilder;
use grep_searcher::{BinaryDetection, Searcher, SearcherBuilder, Sink, SinkMatch};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::path::{relative, resolve, resolve_writable};
use super::{Tool, ToolContext, ToolOutput, parse_args, run_blocking};
use crate::paths::engine_owned;
use crate::provider::ToolSpec;
use crate::walk;

/// Characters kept of one matching line in `grep` output.
const MAX_MATCH_CHARS: usize = 300;
/// Upper bound on a model-requested `grep` `max`, to keep one result small.
const GREP_HARD_MAX: usize = 2000;

/// Whether a walked entry is a file the tools may look into: a regular file,
/// or a link to a regular file inside the project.
pub(crate) fn searchable_file(root: &Path, entry: &ignore::DirEntry) -> bool {
    let Some(file_type) = entry.file_type() else {
        return false;
    };
    if file_type.is_file() {
        return true;
    }
    if !file_type.is_symlink() {
        return false;
    }
    match std::fs::canonicalize(entry.path()) {
        Ok(target) => target.starts_with(root) && target.is_file(),
        Err(_) => false,
    }
}

/// A file-name pattern as the tools understand it: without a `/` it matches
/// file names at any depth (`*.rs`); with one it matches the path relative
/// to the searched directory (`src/**/*.rs`).
pub(crate) struct FilePattern {
    matcher: GlobMatcher,
    whole_path: bool,
}

impl FilePattern {
    pub(crate) fn new(root: &Path, pattern: &str) -> Result<Self, String> {
        // Models sometimes send absolute or `./` patterns; both mean the root.
        let root_prefix = format!("{}/", root.display());
        let trimmed = pattern
            .strip_prefix(root_prefix.as_str())
            .unwrap_or(pattern)
            .trim_start_matches("./");
        if trimmed.is_empty() {
            return Err("the glob pattern is empty".into());
        }
        let glob = GlobBuilder::new(trimmed)
            .literal_separator(true)
            .build()
            .map_err(|err| format!("invalid glob pattern {pattern:?}: {}", err.kind()))?;
        Ok(FilePattern {
            matcher: glob.compile_matcher(),
            whole_path: trimmed.contains('/'),
        })
    }

    pub(crate) fn is_match(&self, relative_path: &Path) -> bool {
        if self.whole_path {
            self.matcher.is_match(relative_path)
        } else {
            relative_path
                .file_name()
                .is_some_and(|name| self.matcher.is_match(name))
        }
    }
}

pub struct Glob;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GlobArgs {
    pattern: String,
    path: Option<String>,
}

#[async_trait]
impl Tool for Glob {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "glob".into(),
            description: "Find files by glob, skipping .gitignore'd ones. A pattern without / matches file names at any depth (*.rs); with / it matches paths under path (src/**/*.rs).".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "pattern": {"type": "string", "description": "Glob pattern, e.g. *.rs or src/**/mod.rs"},
                    "path": {"type": "string", "description": "Directory to search (default: the project root)"}
                },
                "required": ["pattern"],
                "additionalProperties": false
            }),
        }
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> ToolOutput {
        let args: GlobArgs = match parse_args("glob", args) {
            Ok(args) => args,
            Err(output) => return output,
        };
        let root = ctx.root.clone();
        let max = ctx.limits.max_entries.max(1);
        let cancel = ctx.cancel.clone();
        run_blocking(move || glob_files(&root, &args, max, &cancel)).await
    }
}

fn glob_files(
    root: &Path,
    args: &GlobArgs,
    max: usize,
    cancel: &CancellationToken,
) -> Result<String, String> {
    let dir = resolve(root, args.path.as_deref().unwrap_or("."))?;
    let shown = relative(root, &dir);
    if !dir.is_dir() {
        return Err(format!("{shown:?} is not a directory"));
    }
    let pattern = FilePattern::new(root, &args.pattern)?;
    let mut found: Vec<String> = Vec::new();
    for entry in walk::project(&dir).build() {
        if cancel.is_cancelled() {
            return Err("cancelled".into());
        }
        let Ok(entry) = entry else { continue };
        let Ok(under_dir) = entry.path().strip_prefix(&dir) else {
            continue;
        };
        if pattern.is_match(under_dir) && searchable_file(root, &entry) {
            found.push(relative(root, entry.path()));
        }
    }
    if found.is_empty() {
        return Ok(format!("no files match {:?} in {shown}", args.pattern));
    }
    found.sort();
    let total = found.len();
    let mut out = String::new();
    for path in found.iter().take(max) {
        out.push_str(path);
        out.push('\n');
    }
    if total > max {
        out.push_str(&format!(
            "[… {} more files not shown ({total} in all); narrow the pattern or path]\n",
            total - max
        ));
    }
    Ok(out)
}

pub struct Grep;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrepArgs {
    pattern: String,
    path: Option<String>,
    glob: Option<String>,
    max: Option<u64>,
}

#[async_trait]
impl Tool for Grep {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "grep".into(),
            description: "Search file contents with a regex (Rust syntax; (?i) for case-insensitive), skipping .gitignore'd and binary files. Prints path:line: text.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "pattern": {"type": "string", "description": "Regular expression"},
                    "path": {"type": "string", "description": "File or directory to search (default: the project root)"},
                    "glob": {"type": "string", "description": "Only search files matching this glob, e.g. *.rs"},
                    "max": {"type": "integer", "minimum": 1, "description": "Most matching lines to return"}
                },
                "required": ["pattern"],
                "additionalProperties": false
            }),
        }
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> ToolOutput {
        let args: GrepArgs = match parse_args("grep", args) {
            Ok(args) => args,
            Err(output) => return output,
        };
        let root = ctx.root.clone();
        let default_max = ctx.limits.grep_max_matches.max(1);
        let cancel = ctx.cancel.clone();
        run_blocking(move || grep_files(&root, &args, default_max, &cancel)).await
    }
}

fn grep_files(
    root: &Path,
    args: &GrepArgs,
    default_max: usize,
    cancel: &CancellationToken,
) -> Result<String, String> {
    let Target {
        path: target,
        shown,
        is_dir,
    } = Target::resolve(root, args.path.as_deref(), false)?;
    let matcher = RegexMatcherBuilder::new()
        .line_terminator(Some(b'\n'))
        .build(&args.pattern)
        .map_err(|err| format!("invalid regex {:?}: {err}", args.pattern))?;
    let filter = args
        .glob
        .as_deref()
        .map(|glob| FilePattern::new(root, glob))
        .transpose()?;
    let max = requested_max(args.max, default_max, GREP_HARD_MAX.max(default_max));

    let files = files_under(root, &target, is_dir, filter);

    let mut searcher = line_searcher();
    let mut lines: Vec<String> = Vec::new();
    let mut more = false;
    for file in files {
        if cancel.is_cancelled() {
            return Err("cancelled".into());
        }
        // One past the cap, to know whether anything was left out.
        let Some(hits) = search_file(&mut searcher, &matcher, &file, max + 1 - lines.len()) else {
            continue;
        };
        let path = relative(root, &file);
        lines.extend(
            hits.into_iter()
                .map(|(line, text)| format!("{path}:{line}: {text}")),
        );
        if lines.len() > max {
            lines.truncate(max);
            more = true;
            break;
        }
    }
    if lines.is_empty() {
        return Ok(format!("no matches for {:?} in {shown}", args.pattern));
    }
    let mut out = lines.join("\n");
    out.push('\n');
    if more {
        out.push_str(&format!(
            "[… stopped at {max} matching lines; narrow the pattern, path or glob]\n"
        ));
    }
    Ok(out)
}

pub struct Mgrep;

/// Most patterns one `mgrep` call takes.
const MGREP_MAX_PATTERNS: usize = 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MgrepArgs {
    patterns: Vec<String>,
    path: Option<String>,
    glob: Option<String>,
    max: Option<u64>,
}

#[async_trait]
impl Tool for Mgrep {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "mgrep".into(),
            description: "grep with several regexes in one pass over the files; results grouped by pattern, each with its own cap.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "patterns": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": MGREP_MAX_PATTERNS, "description": "Regular expressions (Rust syntax)"},
                    "path": {"type": "string", "description": "File or directory to search (default: the project root)"},
                    "glob": {"type": "string", "description": "Only search files matching this glob, e.g. *.rs"},
                    "max": {"type": "integer", "minimum": 1, "description": "Most matching lines shown per pattern"}
                },
                "required": ["patterns"],
                "additionalProperties": false
            }),
        }
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> ToolOutput {
        let args: MgrepArgs = match parse_args("mgrep", args) {
            Ok(args) => args,
            Err(output) => return output,
        };
        let root = ctx.root.clone();
        let default_max = ctx.limits.grep_max_matches.max(1);
        let cancel = ctx.cancel.clone();
        run_blocking(move || mgrep_files(&root, &args, default_max, &cancel)).await
    }
}

fn mgrep_files(
    root: &Path,
    args: &MgrepArgs,
    default_max: usize,
    cancel: &CancellationToken,
) -> Result<String, String> {
    let patterns = &args.patterns;
    if patterns.is_empty() || patterns.len() > MGREP_MAX_PATTERNS {
        return Err(format!(
            "mgrep takes 1 to {MGREP_MAX_PATTERNS} patterns, got {}",
            patterns.len()
        ));
    }
    if let Some(index) = patterns.iter().position(|pattern| pattern.is_empty()) {
        return Err(format!("patterns[{index}] is empty"));
    }
    // Each pattern alone first, so an error names the one that is wrong.
    let mut set = Vec::with_capacity(patterns.len());
    for (index, pattern) in patterns.iter().enumerate() {
        let matcher = RegexMatcherBuilder::new()
            .line_terminator(Some(b'\n'))
            .build(pattern)
            .map_err(|err| format!("invalid regex patterns[{index}] {pattern:?}: {err}"))?;
        set.push(matcher);
    }
    let any = RegexMatcherBuilder::new()
        .line_terminator(Some(b'\n'))
        .build_many(patterns)
        .map_err(|err| format!("invalid regex in patterns: {err}"))?;
    let Target {
        path: target,
        shown,
        is_dir,
    } = Target::resolve(root, args.path.as_deref(), false)?;
    let filter = args
        .glob
        .as_deref()
        .map(|glob| FilePattern::new(root, glob))
        .transpose()?;
    // By default the grep cap is shared among the patterns.
    let max = requested_max(
        args.max,
        (default_max / patterns.len()).max(20),
        GREP_HARD_MAX / patterns.len(),
    );

    let mut groups: Vec<Group> = patterns.iter().map(|_| Group::default()).collect();
    let mut searcher = line_searcher();
    for file in files_under(root, &target, is_dir, filter) {
        if cancel.is_cancelled() {
            return Err("cancelled".into());
        }
        // Every group full and known to have more: nothing left to learn.
        if groups.iter().all(|group| group.more) {
            break;
        }
        let mut sink = Classify {
            patterns: &set,
            room: groups.iter().map(|group| group.room(max)).collect(),
            hits: Vec::new(),
            binary: false,
        };
        if searcher.search_path(&any, &file, &mut sink).is_err() || sink.binary {
            continue;
        }
        let path = relative(root, &file);
        let mut touched = vec![false; groups.len()];
        for (index, hit) in sink.hits {
            match hit {
                Some(text) => {
                    groups[index].hits.push(format!("{path}:{text}"));
                    touched[index] = true;
                }
                None => groups[index].more = true,
            }
        }
        for (group, touched) in groups.iter_mut().zip(touched) {
            group.files += usize::from(touched);
        }
    }
    let mut out = String::new();
    for (pattern, group) in patterns.iter().zip(&groups) {
        if group.hits.is_empty() {
            out.push_str(&format!("## {pattern:?}: no matches in {shown}\n"));
            continue;
        }
        let lines = if group.hits.len() == 1 {
            "line"
        } else {
            "lines"
        };
        let count = if group.more {
            format!("first {} {lines}", group.hits.len())
        } else {
            format!("{} {lines}", group.hits.len())
        };
        let files = if group.files == 1 { "file" } else { "files" };
        out.push_str(&format!(
            "## {pattern:?}: {count} in {} {files}\n",
            group.files
        ));
        for hit in &group.hits {
            out.push_str(hit);
            out.push('\n');
        }
        if group.more {
            out.push_str(&format!(
                "[… stopped at {max} lines for this pattern; narrow it, the path or the glob]\n"
            ));
        }
    }
    Ok(out)
}

/// One `mgrep` pattern's lines so far.
#[derive(Clone, Default)]
struct Group {
    hits: Vec<String>,
    files: usize,
    /// Whether a line past the cap matched.
    more: bool,
}

/// Sorts one file's matching lines by the patterns each matches; the
/// hits are taken only if the file turns out not to be binary, as in `grep`.
struct Classify<'a> {
    patterns: &'a [grep_regex::RegexMatcher],
    /// Lines each pattern may still show; `None` once a line past its cap
    /// matched.
    room: Vec<Option<usize>>,
    /// (pattern, `line: text`), or `None` for a line past the cap.
    hits: Vec<(usize, Option<String>)>,
    binary: bool,
}

impl Group {
    fn room(&self, max: usize) -> Option<usize> {
        (!self.more).then(|| max - self.hits.len())
    }
}

impl Sink for Classify<'_> {
    type Error = io::Error;

    fn matched(&mut self, _searcher: &Searcher, found: &SinkMatch<'_>) -> Result<bool, io::Error> {
        use grep_matcher::Matcher;
        // Each pattern sees the line as `grep` does, without its terminator
        // (so `foo$` matches a line ending in foo).
        let bytes = found.bytes();
        let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let line = found.line_number().unwrap_or(0);
        for (index, matcher) in self.patterns.iter().enumerate() {
            let Some(room) = self.room[index] else {
                continue;
            };
            if !matcher.is_match(bytes).unwrap_or(false) {
                continue;
            }
            if room == 0 {
                self.room[index] = None;
                self.hits.push((index, None));
                continue;
            }
            self.room[index] = Some(room - 1);
            let text = String::from_utf8_lossy(bytes);
            let text = crate::text::preview(text.trim_end_matches(['\n', '\r']), MAX_MATCH_CHARS);
            self.hits.push((index, Some(format!("{line}: {text}"))));
        }
        Ok(self.room.iter().any(Option::is_some))
    }

    fn binary_data(&mut self, _searcher: &Searcher, _offset: u64) -> Result<bool, io::Error> {
        self.binary = true;
        Ok(false)
    }
}

/// The file or folder a call works on: `path` resolved inside the project
/// (the root when absent); a folder is walked like `grep` walks it.
pub struct Target {
    pub path: PathBuf,
    pub shown: String,
    pub is_dir: bool,
}

impl Target {
    /// Resolve `path`; `writable` refuses what agents may not write
    /// (`.git/`, `.opencode/`).
    pub fn resolve(root: &Path, path: Option<&str>, writable: bool) -> Result<Target, String> {
        let given = path.unwrap_or(".");
        let path = if writable {
            resolve_writable(root, given)?
        } else {
            resolve(root, given)?
        };
        let shown = relative(root, &path);
        let meta = std::fs::metadata(&path).map_err(|_| format!("{shown:?} does not exist"))?;
        if !meta.is_dir() && !meta.is_file() {
            return Err(format!("{shown:?} is not a regular file or a directory"));
        }
        Ok(Target {
            is_dir: meta.is_dir(),
            path,
            shown,
        })
    }

    /// The files to look at: the target file itself, or the files under the
    /// target folder whose path below it passes `keep`, in name order. A
    /// walk for writing leaves out what agents may not write.
    pub fn files(
        &self,
        root: &Path,
        writable: bool,
        keep: &dyn Fn(&Path) -> bool,
        cancel: &CancellationToken,
    ) -> Result<Vec<PathBuf>, String> {
        if !self.is_dir {
            return Ok(vec![self.path.clone()]);
        }
        let walker = if writable {
            walk::workspace(&self.path)
        } else {
            walk::project(&self.path)
        };
        let mut found = Vec::new();
        for entry in walker.build() {
            if cancel.is_cancelled() {
                return Err("cancelled".into());
            }
            let Ok(entry) = entry else { continue };
            let under = entry
                .path()
                .strip_prefix(&self.path)
                .unwrap_or(entry.path());
            if !keep(under) || !searchable_file(root, &entry) {
                continue;
            }
            // A link is never rewritten: replacing it would turn it into a
            // copy (and its target is reached, if at all, by its own path).
            if writable && entry.path_is_symlink() {
                continue;
            }
            let inner = entry.path().strip_prefix(root).unwrap_or(entry.path());
            if writable && engine_owned(inner).is_some() {
                continue;
            }
            found.push(entry.into_path());
        }
        Ok(found)
    }
}

/// A count the model may ask for (`max`, `max_files`): `default` when it
/// gives none, else what it asked within 1..=`hard`.
pub(crate) fn requested_max(requested: Option<u64>, default: usize, hard: usize) -> usize {
    requested
        .map_or(default, |max| usize::try_from(max).unwrap_or(usize::MAX))
        .clamp(1, hard)
}

/// The files a search of `target` looks into: `target` itself when it is a
/// file, else the searchable files under it (matching `filter`, if any).
fn files_under<'a>(
    root: &'a Path,
    target: &Path,
    is_dir: bool,
    filter: Option<FilePattern>,
) -> Box<dyn Iterator<Item = PathBuf> + 'a> {
    if !is_dir {
        return Box::new(std::iter::once(target.to_path_buf()));
    }
    let dir = target.to_path_buf();
    Box::new(
        walk::project(target)
            .build()
            .filter_map(Result::ok)
            .filter(move |entry| {
                let under_dir = entry.path().strip_prefix(&dir).unwrap_or(entry.path());
                filter.as_ref().is_none_or(|f| f.is_match(under_dir))
                    && searchable_file(root, entry)
            })
            .map(ignore::DirEntry::into_path),
    )
}

/// A line searcher that numbers lines and gives up on binary files.
fn line_searcher() -> Searcher {
    SearcherBuilder::new()
        .binary_detection(BinaryDetection::quit(0))
        .line_number(true)
        .build()
}

/// At most `room` matching lines of `file` as (line number, previewed
/// text); `None` for a binary or unreadable file, skipped like ripgrep
/// skips them.
fn search_file(
    searcher: &mut Searcher,
    matcher: &grep_regex::RegexMatcher,
    file: &Path,
    room: usize,
) -> Option<Vec<(u64, String)>> {
    let mut sink = Collect {
        room,
        hits: Vec::new(),
        binary: false,
    };
    if searcher.search_path(matcher, file, &mut sink).is_err() || sink.binary {
        return None;
    }
    Some(sink.hits)
}

/// Collects one file's matching lines; a file found to be binary is dropped
/// whole, even if some lines matched before the binary data was seen.
struct Collect {
    room: usize,
    hits: Vec<(u64, String)>,
    binary: bool,
}

impl Sink for Collect {
    type Error = io::Error;

    fn matched(&mut self, _searcher: &Searcher, found: &SinkMatch<'_>) -> Result<bool, io::Error> {
        let text = String::from_utf8_lossy(found.bytes());
        let text = text.trim_end_matches(['\n', '\r']);
        let text = crate::text::preview(text, MAX_MATCH_CHARS);
        self.hits.push((found.line_number().unwrap_or(0), text));
        Ok(self.hits.len() < self.room)
    }

    fn binary_data(&mut self, _searcher: &Searcher, _offset: u64) -> Result<bool, io::Error> {
        self.binary = true;
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_patterns() {
        let root = Path::new("/p");
        let cases = [
            ("*.rs", "src/deep/a.rs", true),
            ("*.rs", "a.rs", true),
            ("*.rs", "a.rsx", false),
            ("src/*.rs", "src/a.rs", true),
            ("src/*.rs", "src/deep/a.rs", false),
            ("src/**/*.rs", "src/deep/a.rs", true),
            ("**/*.rs", "a.rs", true),
            ("./src/*.rs", "src/a.rs", true),
            ("/p/src/*.rs", "src/a.rs", true),
            ("Cargo.{toml,lock}", "Cargo.lock", true),
        ];
        for (pattern, path, want) in cases {
            let matcher = FilePattern::new(root, pattern).unwrap();
            assert_eq!(
                matcher.is_match(Path::new(path)),
                want,
                "{pattern} vs {path}"
            );
        }
    }

    #[test]
    fn bad_glob_is_a_sentence() {
        let err = FilePattern::new(Path::new("/p"), "src/[").err().unwrap();
        assert!(err.starts_with("invalid glob pattern \"src/[\""), "{err}");
        assert!(FilePattern::new(Path::new("/p"), "").is_err());
    }
}

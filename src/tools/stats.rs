//! `file_stats`: how big the tree is and where — files, lines and bytes per
//! extension and per folder, over the same .gitignore-aware walk as `grep`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::path::{relative, resolve};
use super::{Tool, ToolContext, ToolOutput, parse_args, run_blocking};
use crate::provider::ToolSpec;
use crate::walk;

/// Rows shown per table; the rest are summed into one line.
const MAX_ROWS: usize = 25;
/// Deepest folder level a call may group by.
const MAX_DEPTH: usize = 4;
/// Bytes looked at to decide a file is binary (a NUL in them), as git does.
const SNIFF_BYTES: usize = 8000;

pub struct FileStats;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatsArgs {
    path: Option<String>,
    depth: Option<u64>,
}

#[async_trait]
impl Tool for FileStats {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "file_stats".into(),
            description: "Count files, lines and bytes per extension and per folder, skipping .gitignore'd files (binary files count no lines).".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "Directory to count (default: the project root)"},
                    "depth": {"type": "integer", "minimum": 1, "maximum": MAX_DEPTH, "description": "Folder level to group by (default 1: the folders directly under path)"}
                },
                "additionalProperties": false
            }),
        }
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> ToolOutput {
        let args: StatsArgs = match parse_args("file_stats", args) {
            Ok(args) => args,
            Err(output) => return output,
        };
        let root = ctx.root.clone();
        let cancel = ctx.cancel.clone();
        run_blocking(move || file_stats(&root, &args, &cancel)).await
    }
}

/// Files, lines and bytes of one group.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Count {
    files: u64,
    lines: u64,
    bytes: u64,
    binary: u64,
}

impl Count {
    fn add(&mut self, other: Count) {
        self.files += other.files;
        self.lines += other.lines;
        self.bytes += other.bytes;
        self.binary += other.binary;
    }
}

fn file_stats(root: &Path, args: &StatsArgs, cancel: &CancellationToken) -> Result<String, String> {
    let dir = resolve(root, args.path.as_deref().unwrap_or("."))?;
    let shown = relative(root, &dir);
    if !dir.is_dir() {
        return Err(format!("{shown:?} is not a directory"));
    }
    let depth = match args.depth {
        None => 1,
        Some(depth) if (1..=MAX_DEPTH as u64).contains(&depth) => depth as usize,
        Some(depth) => {
            return Err(format!("depth must be 1 to {MAX_DEPTH}, got {depth}"));
        }
    };
    let mut total = Count::default();
    let mut by_extension: BTreeMap<String, Count> = BTreeMap::new();
    let mut by_folder: BTreeMap<String, Count> = BTreeMap::new();
    let mut unreadable = 0u64;
    for entry in walk::workspace(&dir).build() {
        if cancel.is_cancelled() {
            return Err("cancelled".into());
        }
        let Ok(entry) = entry else { continue };
        // Regular files only: a link is counted where it points, if at all.
        if !entry.file_type().is_some_and(|kind| kind.is_file()) {
            continue;
        }
        let path = entry.path();
        let Ok(count) = count_file(path) else {
            unreadable += 1;
            continue;
        };
        total.add(count);
        by_extension.entry(extension(path)).or_default().add(count);
        let under = path.strip_prefix(&dir).unwrap_or(path);
        by_folder
            .entry(folder(under, depth))
            .or_default()
            .add(count);
    }
    if total.files == 0 {
        return Ok(format!("no files in {shown} (after .gitignore)"));
    }
    let mut out = format!(
        "{shown}: {} in {} {}, {} {}",
        size(total.bytes),
        total.files,
        plural(total.files, "file"),
        total.lines,
        plural(total.lines, "line"),
    );
    if total.binary > 0 {
        out.push_str(&format!(" ({} binary)", total.binary));
    }
    if unreadable > 0 {
        out.push_str(&format!("; {unreadable} unreadable files skipped"));
    }
    out.push_str("\n\nby extension:\n");
    table(&mut out, by_extension);
    let level = if depth == 1 {
        "folder".to_string()
    } else {
        format!("folder (depth {depth})")
    };
    out.push_str(&format!("\nby {level}:\n"));
    table(&mut out, by_folder);
    Ok(out)
}

/// Count one file's lines and bytes, reading it in pieces (a NUL in its
/// first bytes makes it binary: no lines).
fn count_file(path: &Path) -> std::io::Result<Count> {
    let mut file = std::fs::File::open(path)?;
    let mut buffer = vec![0u8; 64 * 1024];
    let mut count = Count {
        files: 1,
        ..Count::default()
    };
    let mut last = b'\n';
    let mut binary = false;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        let chunk = &buffer[..read];
        if count.bytes < SNIFF_BYTES as u64 {
            let sniff = (SNIFF_BYTES - count.bytes as usize).min(read);
            binary |= chunk[..sniff].contains(&0);
        }
        count.bytes += read as u64;
        if !binary {
            count.lines += chunk.iter().filter(|&&byte| byte == b'\n').count() as u64;
        }
        last = chunk[read - 1];
    }
    if binary {
        count.lines = 0;
        count.binary = 1;
    } else if last != b'\n' {
        // A last line without its newline is still a line.
        count.lines += 1;
    }
    Ok(count)
}

/// `.rs`, or the file name for files such as `Makefile` and `.gitignore`.
fn extension(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy())
        .unwrap_or_default();
    match path.extension() {
        Some(ext) if !name.starts_with('.') || name[1..].contains('.') => {
            format!(".{}", ext.to_string_lossy())
        }
        _ => format!("{name} (no extension)"),
    }
}

/// The folder of `under` at `depth` levels (`src/tools/`), or `./` for
/// files above it.
fn folder(under: &Path, depth: usize) -> String {
    let parts: Vec<_> = under
        .parent()
        .map(|parent| parent.iter().take(depth).collect())
        .unwrap_or_default();
    if parts.is_empty() {
        return "./".into();
    }
    let mut shown = parts
        .iter()
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join("/");
    shown.push('/');
    shown
}

/// Rows sorted by lines (then bytes), largest first; past `MAX_ROWS` the
/// rest are summed.
fn table(out: &mut String, groups: BTreeMap<String, Count>) {
    let mut rows: Vec<(String, Count)> = groups.into_iter().collect();
    rows.sort_by(|a, b| {
        (b.1.lines, b.1.bytes)
            .cmp(&(a.1.lines, a.1.bytes))
            .then_with(|| a.0.cmp(&b.0))
    });
    let width = rows
        .iter()
        .take(MAX_ROWS)
        .map(|(name, _)| name.chars().count())
        .max()
        .unwrap_or(0)
        .max(5);
    let mut rest = Count::default();
    let others = rows.len().saturating_sub(MAX_ROWS);
    for (index, (name, count)) in rows.into_iter().enumerate() {
        if index >= MAX_ROWS {
            rest.add(count);
            continue;
        }
        out.push_str(&row(&name, count, width));
    }
    if others > 0 {
        out.push_str(&row(&format!("({others} more)"), rest, width));
    }
}

fn row(name: &str, count: Count, width: usize) -> String {
    let mut line = format!(
        "  {name:<width$}  {:>7} {}  {:>9}  {} {}",
        count.lines,
        plural(count.lines, "line"),
        size(count.bytes),
        count.files,
        plural(count.files, "file"),
    );
    if count.binary > 0 {
        line.push_str(&format!(" ({} binary)", count.binary));
    }
    line.push('\n');
    line
}

fn plural(count: u64, word: &str) -> String {
    if count == 1 {
        word.to_string()
    } else {
        format!("{word}s")
    }
}

/// Bytes for people: `812 B`, `14.2 KiB`, `3.1 MiB`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lines_bytes_and_binary_files() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("a.rs");
        std::fs::write(&text, "one\ntwo\nthree").unwrap();
        assert_eq!(
            count_file(&text).unwrap(),
            Count {
                files: 1,
                lines: 3,
                bytes: 13,
                binary: 0
            }
        );
        let empty = dir.path().join("e.txt");
        std::fs::write(&empty, "").unwrap();
        assert_eq!(count_file(&empty).unwrap().lines, 0);
        let binary = dir.path().join("b.bin");
        std::fs::write(&binary, b"\x00\x01\n\n\n").unwrap();
        let count = count_file(&binary).unwrap();
        assert_eq!((count.lines, count.bytes, count.binary), (0, 5, 1));
    }

    #[test]
    fn names_extensions_and_folders() {
        assert_eq!(extension(Path::new("src/main.rs")), ".rs");
        assert_eq!(extension(Path::new("Makefile")), "Makefile (no extension)");
        assert_eq!(
            extension(Path::new(".gitignore")),
            ".gitignore (no extension)"
        );
        assert_eq!(extension(Path::new(".eslintrc.json")), ".json");
        assert_eq!(folder(Path::new("src/tools/mod.rs"), 1), "src/");
        assert_eq!(folder(Path::new("src/tools/mod.rs"), 2), "src/tools/");
        assert_eq!(folder(Path::new("README.md"), 1), "./");
        assert_eq!(size(812), "812 B");
        assert_eq!(size(1536), "1.5 KiB");
    }
}

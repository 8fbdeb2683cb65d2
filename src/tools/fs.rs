//! File tools: `read`, `write`, `edit` and `list`, each confined to the
//! project root by `path::resolve`.
//!
//! Writes replace the file through `files::replace` (synced), so a crash
//! never leaves a torn file. Reads stream the
//! requested window of lines, so a huge file costs no more memory than the
//! output cap.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::path::{relative, resolve, resolve_writable};
use super::seen::{Fingerprint, Seen};
use super::{Tool, ToolContext, ToolOutput, parse_args, run_blocking};
use crate::config::ToolsConfig;
use crate::files::{self, Durability};
use crate::provider::ToolSpec;
use crate::walk;

/// Bytes kept of one line in `read` output; the rest is replaced by a note.
const MAX_LINE_BYTES: usize = 2000;
/// Bytes looked at for a NUL byte to decide a file is binary.
const BINARY_SNIFF_BYTES: usize = 8192;
/// Largest file `edit` loads whole.
const EDIT_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// An IO error on `shown` as a sentence for the model.
fn io_message(action: &str, shown: &str, err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::NotFound => format!("{shown:?} does not exist"),
        io::ErrorKind::PermissionDenied => format!("cannot {action} {shown:?}: permission denied"),
        _ => format!("cannot {action} {shown:?}: {err}"),
    }
}

pub struct Read;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadArgs {
    path: String,
    offset: Option<u64>,
    limit: Option<u64>,
}

#[async_trait]
impl Tool for Read {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "read".into(),
            description: "Read a text file as numbered lines. offset is the first line (1-based), limit the number of lines; a note says when more lines remain.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "File path relative to the project root"},
                    "offset": {"type": "integer", "minimum": 1, "description": "First line to read (1-based)"},
                    "limit": {"type": "integer", "minimum": 1, "description": "Number of lines to read"}
                },
                "required": ["path"],
                "additionalProperties": false
            }),
        }
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> ToolOutput {
        let args: ReadArgs = match parse_args("read", args) {
            Ok(args) => args,
            Err(output) => return output,
        };
        let root = ctx.root.clone();
        let limits = ctx.limits.clone();
        let seen = ctx.seen.clone();
        run_blocking(move || read_lines(&root, &args, &limits, &seen)).await
    }
}

fn read_lines(
    root: &Path,
    args: &ReadArgs,
    limits: &ToolsConfig,
    seen: &Seen,
) -> Result<String, String> {
    let path = resolve(root, &args.path)?;
    let shown = relative(root, &path);
    let meta = fs::metadata(&path).map_err(|err| io_message("read", &shown, &err))?;
    if meta.is_dir() {
        return Err(format!(
            "{shown:?} is a directory, not a file; use list to see its entries"
        ));
    }
    if !meta.is_file() {
        return Err(format!("{shown:?} is not a regular file"));
    }
    // Fingerprinted before the lines are read: a change in between makes
    // a later write refuse, never pass.
    seen.record_file(&path);
    let file = File::open(&path).map_err(|err| io_message("read", &shown, &err))?;
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let head = reader
        .fill_buf()
        .map_err(|err| io_message("read", &shown, &err))?;
    if head[..head.len().min(BINARY_SNIFF_BYTES)].contains(&0) {
        return Err(binary_message(&shown, meta.len()));
    }
    if head.is_empty() {
        return Ok(format!("{shown:?} is empty"));
    }

    let offset = args.offset.unwrap_or(1).max(1);
    let limit = args
        .limit
        .unwrap_or(limits.read_default_lines as u64)
        .max(1);
    let io_err = |err: io::Error| io_message("read", &shown, &err);
    let mut line = Vec::new();
    let mut number: u64 = 0;
    while number + 1 < offset {
        if next_line(&mut reader, 0, &mut line)
            .map_err(io_err)?
            .is_none()
        {
            return Err(format!(
                "offset {offset} is past the end of {shown:?}, which has {number} lines"
            ));
        }
        number += 1;
    }

    let mut out = String::new();
    let mut capped = false;
    while number + 1 < offset.saturating_add(limit) {
        let Some(full_len) = next_line(&mut reader, MAX_LINE_BYTES, &mut line).map_err(io_err)?
        else {
            break;
        };
        if line.contains(&0) {
            return Err(binary_message(&shown, meta.len()));
        }
        let mut text = String::from_utf8_lossy(&line).into_owned();
        if full_len > line.len() {
            text.push_str(&format!(" […line truncated, {full_len} bytes in all]"));
        }
        let entry = format!("{:>6}\t{text}\n", number + 1);
        if out.len() + entry.len() > limits.read_max_bytes && !out.is_empty() {
            capped = true;
            break;
        }
        out.push_str(&entry);
        number += 1;
    }
    if number < offset {
        return Err(format!(
            "offset {offset} is past the end of {shown:?}, which has {number} lines"
        ));
    }

    let more = capped
        || next_line(&mut reader, 0, &mut line)
            .map_err(io_err)?
            .is_some();
    if more {
        let why = if capped {
            format!(" (output reached the {} byte cap)", limits.read_max_bytes)
        } else {
            String::new()
        };
        // Counting the rest is cheap for files under the size cap; beyond
        // it only the size is reported, so a huge file is never scanned.
        let total = if meta.len() <= limits.read_max_bytes as u64 {
            // The line after the window has already been consumed.
            let mut total = number + 1;
            while next_line(&mut reader, 0, &mut line)
                .map_err(io_err)?
                .is_some()
            {
                total += 1;
            }
            format!("{total} lines")
        } else {
            format!("{} bytes", meta.len())
        };
        out.push_str(&format!(
            "[showing lines {offset}-{number} of {shown} ({total}){why}; continue with offset={}]\n",
            number + 1
        ));
    }
    Ok(out)
}

fn binary_message(shown: &str, len: u64) -> String {
    format!("{shown:?} looks like a binary file ({len} bytes); read only shows text files")
}

/// Read one line into `out`, keeping at most `keep` bytes of it and dropping
/// the line ending. Returns the line's full length, or `None` at end of file.
/// Memory stays bounded by `keep` however long the line is.
fn next_line(
    reader: &mut impl BufRead,
    keep: usize,
    out: &mut Vec<u8>,
) -> io::Result<Option<usize>> {
    out.clear();
    let mut total = 0;
    let mut seen_any = false;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            if !seen_any {
                return Ok(None);
            }
            break;
        }
        seen_any = true;
        let (chunk_len, used, done) = match buf.iter().position(|&byte| byte == b'\n') {
            Some(at) => (at, at + 1, true),
            None => (buf.len(), buf.len(), false),
        };
        let room = keep.saturating_sub(out.len()).min(chunk_len);
        out.extend_from_slice(&buf[..room]);
        total += chunk_len;
        reader.consume(used);
        if done {
            break;
        }
    }
    if out.len() == total && out.last() == Some(&b'\r') {
        out.pop();
        total -= 1;
    }
    Ok(Some(total))
}

pub struct Write;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteArgs {
    path: String,
    content: String,
}

#[async_trait]
impl Tool for Write {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "write".into(),
            description: "Create or overwrite a file with the given content; missing parent directories are created. Prefer edit to change part of an existing file.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "File path relative to the project root"},
                    "content": {"type": "string", "description": "The complete new file content"}
                },
                "required": ["path", "content"],
                "additionalProperties": false
            }),
        }
    }

    fn edited_path(&self, args: &Value) -> Option<String> {
        args.get("path").and_then(Value::as_str).map(str::to_string)
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> ToolOutput {
        let args: WriteArgs = match parse_args("write", args) {
            Ok(args) => args,
            Err(output) => return output,
        };
        let root = ctx.root.clone();
        let seen = ctx.seen.clone();
        run_blocking(move || write_file(&root, &args, &seen)).await
    }
}

fn write_file(root: &Path, args: &WriteArgs, seen: &Seen) -> Result<String, String> {
    let path = resolve_writable(root, &args.path)?;
    let shown = relative(root, &path);
    if path.is_dir() {
        return Err(format!(
            "{shown:?} is a directory; give the path of a file inside it"
        ));
    }
    let existed = files::lock(&path).with(|| {
        seen.check(&path, &shown, "write")?;
        let existed = path.exists();
        files::replace(&path, args.content.as_bytes(), Durability::Synced)
            .map_err(|err| io_message("write", &shown, &err))?;
        if let Some(written) = Fingerprint::of_written(&path, args.content.as_bytes()) {
            seen.record(&path, written);
        }
        Ok::<_, String>(existed)
    })?;
    let lines = args.content.lines().count();
    let verb = if existed { "overwrote" } else { "created" };
    Ok(format!(
        "{verb} {shown} ({lines} lines, {} bytes)",
        args.content.len()
    ))
}

pub struct Edit;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EditArgs {
    path: String,
    old: String,
    new: String,
    all: Option<bool>,
}

#[async_trait]
impl Tool for Edit {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "edit".into(),
            description: "Replace the exact text old with new in a file. old must match exactly once (include surrounding lines to make it unique) unless all is true.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "File path relative to the project root"},
                    "old": {"type": "string", "description": "Exact text to replace, including whitespace"},
                    "new": {"type": "string", "description": "Replacement text"},
                    "all": {"type": "boolean", "description": "Replace every match (default false)"}
                },
                "required": ["path", "old", "new"],
                "additionalProperties": false
            }),
        }
    }

    fn edited_path(&self, args: &Value) -> Option<String> {
        args.get("path").and_then(Value::as_str).map(str::to_string)
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> ToolOutput {
        let args: EditArgs = match parse_args("edit", args) {
            Ok(args) => args,
            Err(output) => return output,
        };
        let root = ctx.root.clone();
        let seen = ctx.seen.clone();
        run_blocking(move || {
            let path = resolve_writable(&root, &args.path)?;
            files::lock(&path).with(|| edit_file(&root, &path, &args, &seen))
        })
        .await
    }
}

/// Edit the file at `path` (resolved from `args.path`); call under its
/// lock.
fn edit_file(root: &Path, path: &Path, args: &EditArgs, seen: &Seen) -> Result<String, String> {
    if args.old.is_empty() {
        return Err("old must not be empty; to create a file use write".into());
    }
    if args.old == args.new {
        return Err("old and new are identical, so there is nothing to change".into());
    }
    let shown = relative(root, path);
    let meta = fs::metadata(path).map_err(|err| io_message("edit", &shown, &err))?;
    if meta.is_dir() {
        return Err(format!("{shown:?} is a directory, not a file"));
    }
    if meta.len() > EDIT_MAX_BYTES {
        return Err(format!(
            "{shown:?} is {} bytes, too large to edit (limit {EDIT_MAX_BYTES}); use bash for bulk changes",
            meta.len()
        ));
    }
    let bytes = fs::read(path).map_err(|err| io_message("edit", &shown, &err))?;
    seen.check_as(path, Some(Fingerprint::of_bytes(&bytes)), &shown, "edit")?;
    if bytes[..bytes.len().min(BINARY_SNIFF_BYTES)].contains(&0) {
        return Err(format!(
            "{shown:?} looks like a binary file; edit only changes text"
        ));
    }
    let content = String::from_utf8(bytes)
        .map_err(|_| format!("{shown:?} is not valid UTF-8 text, so edit cannot change it"))?;

    let (mut old, mut new) = (args.old.clone(), args.new.clone());
    let mut count = content.matches(old.as_str()).count();
    // Models write `\n`; a file with Windows line endings still matches.
    if count == 0 && content.contains("\r\n") && !old.contains('\r') {
        old = old.replace('\n', "\r\n");
        new = new.replace('\n', "\r\n");
        count = content.matches(old.as_str()).count();
    }
    let all = args.all.unwrap_or(false);
    if count == 0 {
        return Err(format!(
            "old text not found in {shown:?}; it must match exactly, including whitespace and indentation (read the file to copy the exact text)"
        ));
    }
    if count > 1 && !all {
        return Err(format!(
            "old text matches {count} places in {shown:?}; add surrounding lines to make it unique, or set all to true to replace every match"
        ));
    }
    let first = content.find(old.as_str()).unwrap_or(0);
    let line = content[..first].matches('\n').count() + 1;
    let updated = if all {
        content.replace(old.as_str(), &new)
    } else {
        content.replacen(old.as_str(), &new, 1)
    };
    files::replace(path, updated.as_bytes(), Durability::Synced)
        .map_err(|err| io_message("write", &shown, &err))?;
    seen.record(path, Fingerprint::of_bytes(updated.as_bytes()));
    let what = if count == 1 {
        "1 match".to_string()
    } else {
        format!("{count} matches")
    };
    Ok(format!(
        "edited {shown}: replaced {what}, first at line {line}"
    ))
}

pub struct List;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListArgs {
    path: Option<String>,
}

#[async_trait]
impl Tool for List {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "list".into(),
            description: "List one directory level (default: the project root), skipping .gitignore'd entries. Directories end with /; paths are relative to the project root.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "Directory relative to the project root"}
                },
                "additionalProperties": false
            }),
        }
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> ToolOutput {
        let args: ListArgs = match parse_args("list", args) {
            Ok(args) => args,
            Err(output) => return output,
        };
        let root = ctx.root.clone();
        let max = ctx.limits.max_entries.max(1);
        run_blocking(move || list_dir(&root, args.path.as_deref().unwrap_or("."), max)).await
    }
}

fn list_dir(root: &Path, path: &str, max: usize) -> Result<String, String> {
    let dir = resolve(root, path)?;
    let shown = relative(root, &dir);
    let meta = fs::metadata(&dir).map_err(|err| io_message("list", &shown, &err))?;
    if !meta.is_dir() {
        return Err(format!(
            "{shown:?} is a file, not a directory; use read to see it"
        ));
    }
    let mut entries: Vec<(PathBuf, bool)> = Vec::new();
    for entry in walk::project(&dir).max_depth(Some(1)).build() {
        let Ok(entry) = entry else { continue };
        if entry.depth() == 0 {
            continue;
        }
        // `is_dir` follows a link, so a link to a directory shows as one.
        let is_dir = entry.path().is_dir();
        entries.push((entry.into_path(), is_dir));
    }
    if entries.is_empty() {
        return Ok(format!("{shown} is empty (or every entry is ignored)"));
    }
    entries.sort();
    let total = entries.len();
    let mut out = String::new();
    for (entry, is_dir) in entries.iter().take(max) {
        out.push_str(&relative(root, entry));
        if *is_dir {
            out.push('/');
        }
        out.push('\n');
    }
    if total > max {
        out.push_str(&format!(
            "[… {} more entries not shown; list a subdirectory or use glob]\n",
            total - max
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn next_line_bounds_memory_and_strips_endings() {
        let mut reader = Cursor::new(b"short\r\nloooooong\nlast".to_vec());
        let mut line = Vec::new();
        assert_eq!(next_line(&mut reader, 100, &mut line).unwrap(), Some(5));
        assert_eq!(line, b"short");
        assert_eq!(next_line(&mut reader, 4, &mut line).unwrap(), Some(9));
        assert_eq!(line, b"looo");
        assert_eq!(next_line(&mut reader, 100, &mut line).unwrap(), Some(4));
        assert_eq!(line, b"last");
        assert_eq!(next_line(&mut reader, 100, &mut line).unwrap(), None);
    }

    #[test]
    fn next_line_handles_lines_longer_than_the_buffer() {
        let text = format!("{}\nnext\n", "x".repeat(10_000));
        let mut reader = BufReader::with_capacity(16, Cursor::new(text.into_bytes()));
        let mut line = Vec::new();
        assert_eq!(next_line(&mut reader, 10, &mut line).unwrap(), Some(10_000));
        assert_eq!(line.len(), 10);
        assert_eq!(next_line(&mut reader, 10, &mut line).unwrap(), Some(4));
        assert_eq!(line, b"next");
    }

    #[test]
    fn argument_errors_name_the_tool_and_field() {
        let err = parse_args::<ReadArgs>("read", json!({})).err().unwrap();
        assert!(err.is_error);
        assert!(
            err.content.contains("invalid arguments for read"),
            "{}",
            err.content
        );
        assert!(err.content.contains("path"), "{}", err.content);
        let err = parse_args::<ReadArgs>("read", json!({"path": "a", "bogus": 1}))
            .err()
            .unwrap();
        assert!(err.content.contains("bogus"), "{}", err.content);
    }
}

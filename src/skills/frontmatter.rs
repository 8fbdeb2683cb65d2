//! The YAML frontmatter of `SKILL.md` and command files, read by hand: the
//! small subset those files use. `key: value` lines with plain, single- or
//! double-quoted values, plain values continued on indented lines, and
//! folded (`>`) or literal (`|`) block scalars; nested maps (`metadata:`)
//! and lists are skipped whole. A byte-order mark and CRLF line ends are
//! accepted. Anything else is an error naming the line.

use std::collections::BTreeMap;

/// A file split into its frontmatter fields and its body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Document {
    /// Top-level scalar fields; keys whose value is a nested map or list
    /// are present with an empty value.
    pub fields: BTreeMap<String, String>,
    /// Everything after the closing `---` line, line ends as `\n`.
    pub body: String,
}

/// Split `text` into frontmatter and body. Without a first `---` line the
/// whole text is the body (`required` says whether that is an error).
pub fn parse(text: &str, required: bool) -> Result<Document, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let text = text.replace("\r\n", "\n");
    let mut lines = text.split('\n');
    if lines.next().map(str::trim_end) != Some("---") {
        if required {
            return Err("no frontmatter: the file must start with a `---` line".into());
        }
        return Ok(Document {
            fields: BTreeMap::new(),
            body: text,
        });
    }
    let rest: Vec<&str> = lines.collect();
    let Some(close) = rest.iter().position(|line| line.trim_end() == "---") else {
        return Err("frontmatter not closed: no `---` line after the first".into());
    };
    let fields = fields(&rest[..close])?;
    let body = rest[close + 1..].join("\n");
    Ok(Document { fields, body })
}

/// The `key: value` lines between the two `---` lines (line numbers in
/// errors count the first `---` as line 1).
fn fields(lines: &[&str]) -> Result<BTreeMap<String, String>, String> {
    let mut fields = BTreeMap::new();
    let mut at = 0;
    while at < lines.len() {
        let line = lines[at];
        let number = at + 2;
        at += 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            return Err(format!(
                "line {number}: unexpected indented line (expected `key: value`)"
            ));
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(format!(
                "line {number}: expected `key: value`, got {trimmed:?}"
            ));
        };
        let key = key.trim().to_string();
        if key.is_empty() || key.contains(' ') {
            return Err(format!(
                "line {number}: expected `key: value`, got {trimmed:?}"
            ));
        }
        // The lines that belong to this key: indented or blank ones.
        let start = at;
        while at < lines.len()
            && (lines[at].trim().is_empty() || lines[at].starts_with([' ', '\t']))
        {
            at += 1;
        }
        let more = &lines[start..at];
        let value = value.trim();
        let value = match value.chars().next() {
            Some('>' | '|') if is_block_header(value) => block(value, more),
            Some('"') => double_quoted(value).map_err(|why| format!("line {number}: {why}"))?,
            Some('\'') => single_quoted(value).map_err(|why| format!("line {number}: {why}"))?,
            // A nested map or list: present, not read.
            None => String::new(),
            Some(_) => plain(value, more),
        };
        if fields.insert(key.clone(), value).is_some() {
            return Err(format!("line {number}: key {key:?} appears twice"));
        }
    }
    Ok(fields)
}

/// `>`, `|`, with an optional chomping indicator (`-`, `+`) and indent digit.
fn is_block_header(value: &str) -> bool {
    let value = uncommented(value);
    let mut chars = value.chars();
    chars.next();
    chars.all(|c| c == '-' || c == '+' || c.is_ascii_digit())
}

/// A plain value without its trailing ` # comment`.
fn uncommented(value: &str) -> &str {
    match value.find(" #") {
        Some(cut) => value[..cut].trim_end(),
        None => value,
    }
}

/// A plain scalar, its indented continuation lines folded in with spaces.
fn plain(first: &str, more: &[&str]) -> String {
    let mut parts = vec![uncommented(first).to_string()];
    parts.extend(
        more.iter()
            .map(|line| uncommented(line.trim()).to_string())
            .filter(|line| !line.is_empty()),
    );
    parts.join(" ")
}

/// A folded (`>`) or literal (`|`) block: the indented lines with their
/// common indentation removed; folded joins lines of a paragraph with
/// spaces. Trailing line ends are dropped unless the header keeps them (`+`).
fn block(header: &str, lines: &[&str]) -> String {
    let indent = lines
        .iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start().len())
        .min()
        .unwrap_or(0);
    let lines: Vec<&str> = lines
        .iter()
        .map(|line| line.get(indent..).unwrap_or("").trim_end())
        .collect();
    let mut text = if header.starts_with('|') {
        lines.join("\n")
    } else {
        let mut text = String::new();
        let mut previous_blank = true;
        for line in &lines {
            if line.is_empty() {
                text.push('\n');
                previous_blank = true;
            } else if line.starts_with([' ', '\t']) {
                // More-indented lines stay as written (YAML keeps them).
                if !text.is_empty() && !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(line);
                text.push('\n');
                previous_blank = true;
            } else {
                if !previous_blank {
                    text.push(' ');
                }
                text.push_str(line);
                previous_blank = false;
            }
        }
        text
    };
    if header.contains('+') {
        if !text.ends_with('\n') {
            text.push('\n');
        }
    } else {
        let kept = text.trim_end_matches('\n').len();
        text.truncate(kept);
        if !header.contains('-') && !text.is_empty() {
            text.push('\n');
        }
    }
    text
}

fn double_quoted(value: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = value[1..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return after_quote(chars.as_str()).map(|()| out),
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('"') => out.push('"'),
                Some('\\') => out.push('\\'),
                Some('/') => out.push('/'),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => break,
            },
            c => out.push(c),
        }
    }
    Err("a double-quoted value is not closed on its line".into())
}

fn single_quoted(value: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = &value[1..];
    loop {
        let Some(quote) = rest.find('\'') else {
            return Err("a single-quoted value is not closed on its line".into());
        };
        out.push_str(&rest[..quote]);
        rest = &rest[quote + 1..];
        if let Some(after) = rest.strip_prefix('\'') {
            out.push('\'');
            rest = after;
        } else {
            return after_quote(rest).map(|()| out);
        }
    }
}

/// Only a comment may follow a closing quote.
fn after_quote(rest: &str) -> Result<(), String> {
    let rest = rest.trim();
    if rest.is_empty() || rest.starts_with('#') {
        Ok(())
    } else {
        Err(format!("unexpected {rest:?} after a quoted value"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(text: &str, key: &str) -> String {
        parse(text, true).unwrap().fields[key].clone()
    }

    #[test]
    fn plain_quoted_and_commented_values() {
        let doc = parse(
            "---\nname: pdf-tools\ndescription: \"Fill \\\"PDF\\\" forms: fast\" # why\nlicense: 'it''s MIT'\nallowed-tools: Bash Read # ignored\n---\n# Body\n",
            true,
        )
        .unwrap();
        assert_eq!(doc.fields["name"], "pdf-tools");
        assert_eq!(doc.fields["description"], "Fill \"PDF\" forms: fast");
        assert_eq!(doc.fields["license"], "it's MIT");
        assert_eq!(doc.fields["allowed-tools"], "Bash Read");
        assert_eq!(doc.body, "# Body\n");
    }

    #[test]
    fn crlf_and_a_byte_order_mark_are_accepted() {
        let doc = parse(
            "\u{feff}---\r\nname: x\r\ndescription: >\r\n  one\r\n  two\r\n---\r\nbody\r\nline\r\n",
            true,
        )
        .unwrap();
        assert_eq!(doc.fields["name"], "x");
        assert_eq!(doc.fields["description"], "one two\n");
        assert_eq!(doc.body, "body\nline\n");
    }

    #[test]
    fn folded_and_literal_blocks() {
        let folded = "---\ndescription: >-\n  Extracts text\n  from PDFs.\n\n  Use for forms.\nname: a\n---\n";
        assert_eq!(
            field(folded, "description"),
            "Extracts text from PDFs.\nUse for forms."
        );
        assert_eq!(field(folded, "name"), "a");
        let literal = "---\ndescription: |\n    line one\n      indented\n    line three\n\n---\n";
        assert_eq!(
            field(literal, "description"),
            "line one\n  indented\nline three\n"
        );
        let plain_continued = "---\ndescription: starts here\n  and goes on\nname: b\n---\n";
        assert_eq!(
            field(plain_continued, "description"),
            "starts here and goes on"
        );
    }

    #[test]
    fn nested_maps_are_present_but_not_read() {
        let doc = parse(
            "---\nname: a\nmetadata:\n  author: me\n  version: \"1.0\"\ndescription: d\n---\n",
            true,
        )
        .unwrap();
        assert_eq!(doc.fields["metadata"], "");
        assert_eq!(doc.fields["description"], "d");
    }

    #[test]
    fn broken_frontmatter_is_an_error_naming_the_problem() {
        assert!(
            parse("name: a\n", true)
                .unwrap_err()
                .contains("must start with a `---` line")
        );
        assert!(
            parse("---\nname: a\ndescription: b\n", true)
                .unwrap_err()
                .contains("not closed")
        );
        assert_eq!(
            parse("---\nname: a\nname: b\n---\n", true).unwrap_err(),
            "line 3: key \"name\" appears twice"
        );
        assert!(
            parse("---\njust words\n---\n", true)
                .unwrap_err()
                .starts_with("line 2: expected `key: value`")
        );
        assert!(
            parse("---\ndescription: \"open\n---\n", true)
                .unwrap_err()
                .contains("not closed on its line")
        );
    }

    #[test]
    fn optional_frontmatter_leaves_a_plain_file_whole() {
        let doc = parse("Fix issue $ARGUMENTS\n", false).unwrap();
        assert!(doc.fields.is_empty());
        assert_eq!(doc.body, "Fix issue $ARGUMENTS\n");
    }
}

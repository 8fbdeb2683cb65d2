//! Open issues in `.opencode/sync-issues.md`, the file where the Reviewer
//! records mismatches between parallel Workers' results.
//!
//! The rule, line by line (fenced code blocks are skipped whole):
//!
//! - A checklist line (`- [m] text`, any bullet, any indentation) is **open**
//!   unless its marker is `[x]` or `[X]`, which is resolved. So `[ ]`, `[/]`,
//!   `[-]` and any other one-character marker are open: an issue is closed
//!   only by checking it off.
//! - A plain list line (`- text`, `* text`, `+ text`, `1. text`) is **open**,
//!   unless it is nested under another list line (then it is a detail of
//!   that line, not an issue of its own) or it only says there is nothing
//!   (`none`, `n/a`, `nothing`, `no issues`, `no open issues`,
//!   `no sync issues`, case-insensitive, ignoring `*`, `_`, `.` and `!`
//!   around it).
//! - Everything else is **not** an issue: headings, blank lines, thematic
//!   breaks (`---`, `***`, `___`), table rows and prose such as
//!   "No open issues". Issues must be written as list items to count.
//!
//! opencode-orchestrator treated any non-heading line as an open issue, so
//! `- [x] resolved` or "No open issues" blocked completion forever; this rule
//! is what a person reading the file would conclude.

use serde::Serialize;

use super::parse::{Fence, indent_width, parse_heading};

/// Texts of a list line that say there are no issues.
const NOTHING: [&str; 6] = [
    "none",
    "n/a",
    "nothing",
    "no issues",
    "no open issues",
    "no sync issues",
];

/// One open issue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncIssue {
    /// 1-based line number in the file.
    pub line: usize,
    /// The line without its bullet and marker.
    pub text: String,
}

/// What `.opencode/sync-issues.md` says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncIssues {
    pub open: Vec<SyncIssue>,
    /// Checked-off (`[x]`) issues.
    pub resolved: usize,
}

impl SyncIssues {
    pub fn parse(text: &str) -> SyncIssues {
        let mut issues = SyncIssues::default();
        let mut fence: Option<Fence> = None;
        // Indentation of the list lines enclosing the current one.
        let mut open_lists: Vec<usize> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            if let Some(open) = fence {
                if open.closed_by(line) {
                    fence = None;
                }
                continue;
            }
            if let Some(open) = Fence::opened_by(line) {
                fence = Some(open);
                continue;
            }
            let width = indent_width(line);
            let Some(body) = list_body(line) else {
                if parse_heading(line).is_some() || (!line.trim().is_empty() && width == 0) {
                    open_lists.clear();
                }
                continue;
            };
            while open_lists.last().is_some_and(|&w| w >= width) {
                open_lists.pop();
            }
            let nested = !open_lists.is_empty();
            open_lists.push(width);
            match checkbox(body) {
                Some((marker, rest)) => {
                    if marker == 'x' || marker == 'X' {
                        issues.resolved += 1;
                    } else {
                        issues.open.push(SyncIssue {
                            line: index + 1,
                            text: rest.to_string(),
                        });
                    }
                }
                None if nested || says_nothing(body) => {}
                None => issues.open.push(SyncIssue {
                    line: index + 1,
                    text: body.to_string(),
                }),
            }
        }
        issues
    }

    /// No open issue.
    pub fn is_clean(&self) -> bool {
        self.open.is_empty()
    }
}

/// `text` with `issue` added as an open checklist line (a heading first
/// when the file is new).
pub fn add_issue(text: &str, issue: &str) -> String {
    let issue = issue.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = if text.trim().is_empty() {
        "# Sync issues\n\n".to_string()
    } else {
        text.to_string()
    };
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&format!("- [ ] {issue}\n"));
    out
}

/// `text` with the open issue on 1-based `line` checked off, or why not.
pub fn resolve_issue(text: &str, line: usize) -> Result<String, String> {
    let issues = SyncIssues::parse(text);
    let Some(issue) = issues.open.iter().find(|issue| issue.line == line) else {
        let open: Vec<String> = issues
            .open
            .iter()
            .map(|issue| format!("line {}: {}", issue.line, issue.text))
            .collect();
        return Err(if open.is_empty() {
            format!("there is no open sync issue on line {line}; none is open")
        } else {
            format!(
                "there is no open sync issue on line {line}; open: {}",
                open.join("; ")
            )
        });
    };
    let mut out = String::with_capacity(text.len() + 4);
    for (index, current) in text.split_inclusive('\n').enumerate() {
        if index + 1 == line {
            let indent = &current[..current.len() - current.trim_start().len()];
            let ending = if current.ends_with('\n') { "\n" } else { "" };
            out.push_str(&format!("{indent}- [x] {}{ending}", issue.text));
        } else {
            out.push_str(current);
        }
    }
    Ok(out)
}

/// The text after a list marker (`-`, `*`, `+`, `1.`, `1)`), or `None` for
/// a line that is not a list item (including thematic breaks).
fn list_body(line: &str) -> Option<&str> {
    let trimmed = line.trim();
    if is_thematic_break(trimmed) {
        return None;
    }
    let after = if let Some(rest) = trimmed.strip_prefix(['-', '*', '+']) {
        rest
    } else {
        let digits = trimmed.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        trimmed[digits..].strip_prefix(['.', ')'])?
    };
    if !after.is_empty() && !after.starts_with([' ', '\t']) {
        return None;
    }
    Some(after.trim())
}

/// `---`, `***`, `___` (three or more, spaces allowed between).
fn is_thematic_break(trimmed: &str) -> bool {
    let marks: String = trimmed.chars().filter(|c| !c.is_whitespace()).collect();
    marks.len() >= 3
        && ['-', '*', '_']
            .iter()
            .any(|mark| marks.chars().all(|c| c == *mark))
}

/// `[m] rest` → `(m, rest)` for any one-character marker.
fn checkbox(body: &str) -> Option<(char, &str)> {
    let rest = body.strip_prefix('[')?;
    let mut chars = rest.chars();
    let marker = chars.next()?;
    let after = chars.as_str().strip_prefix(']')?;
    if !after.is_empty() && !after.starts_with([' ', '\t']) {
        return None;
    }
    Some((marker, after.trim()))
}

fn says_nothing(body: &str) -> bool {
    let core = body.trim_matches(|c: char| matches!(c, '*' | '_' | '.' | '!') || c.is_whitespace());
    NOTHING
        .iter()
        .any(|phrase| phrase.eq_ignore_ascii_case(core))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_open_issues_by_the_documented_rule() {
        let cases: [(&str, &str, Vec<usize>, usize); 14] = [
            ("empty file", "", vec![], 0),
            ("title only", "# Sync Issues\n", vec![], 0),
            (
                "prose saying none",
                "# Sync Issues\n\nNo open issues\n",
                vec![],
                0,
            ),
            (
                "bullet saying none",
                "# Sync Issues\n- **None.**\n* n/a\n",
                vec![],
                0,
            ),
            (
                "resolved items",
                "- [x] SYNC-1: fixed\n  - [X] SYNC-2: fixed\n",
                vec![],
                2,
            ),
            (
                "unchecked, in progress and failed are open",
                "- [ ] SYNC-1: a\n- [/] SYNC-2: b\n    - [-] SYNC-3: c\n",
                vec![1, 2, 3],
                0,
            ),
            (
                "plain bullets are open",
                "- API mismatch\n* other\n1. third\n2) fourth\n",
                vec![1, 2, 3, 4],
                0,
            ),
            (
                "rules and headings",
                "---\n***\n_ _ _\n## Resolved\n",
                vec![],
                0,
            ),
            (
                "details under an issue are not issues",
                "- [x] SYNC-1: fixed\n  - detail of a resolved issue\n- [ ] SYNC-2: open\n  - detail\n    - more detail\n",
                vec![3],
                1,
            ),
            (
                "plain bullet after prose is top level",
                "- a\n  - detail\nprose\n  - b\n",
                vec![1, 4],
                0,
            ),
            (
                "fenced example",
                "```\n- [ ] not an issue\n```\n",
                vec![],
                0,
            ),
            (
                "table rows",
                "| id | state |\n| --- | --- |\n| SYNC-1 | open |\n",
                vec![],
                0,
            ),
            ("crlf", "# Sync Issues\r\n- [ ] SYNC-1: a\r\n", vec![2], 0),
            (
                "bold and links are prose",
                "**Note**: see [docs](x)\n",
                vec![],
                0,
            ),
        ];
        for (name, text, open_lines, resolved) in cases {
            let issues = SyncIssues::parse(text);
            let lines: Vec<usize> = issues.open.iter().map(|issue| issue.line).collect();
            assert_eq!(lines, open_lines, "{name}");
            assert_eq!(issues.resolved, resolved, "{name}");
            assert_eq!(issues.is_clean(), open_lines.is_empty(), "{name}");
        }
    }

    #[test]
    fn issue_text_drops_the_bullet_and_marker() {
        let issues = SyncIssues::parse("- [ ] SYNC-1: types differ\n- plain issue\n");
        let texts: Vec<&str> = issues.open.iter().map(|i| i.text.as_str()).collect();
        assert_eq!(texts, vec!["SYNC-1: types differ", "plain issue"]);
    }

    #[test]
    fn issues_are_added_open_and_resolved_by_line() {
        let text = add_issue("", "api  returns\nids as strings");
        assert_eq!(text, "# Sync issues\n\n- [ ] api returns ids as strings\n");
        let text = add_issue(&text, "two");
        let issues = SyncIssues::parse(&text);
        assert_eq!(issues.open.len(), 2);
        let text = resolve_issue(&text, 3).unwrap();
        let issues = SyncIssues::parse(&text);
        assert_eq!(issues.open.len(), 1);
        assert_eq!(issues.resolved, 1);
        assert!(
            text.contains("- [x] api returns ids as strings\n"),
            "{text}"
        );
        let err = resolve_issue(&text, 3).unwrap_err();
        assert!(err.contains("open: line 4: two"), "{err}");
        // A plain list line counts as open and is checked off the same way.
        let text = resolve_issue("- mismatch in T2\n", 1).unwrap();
        assert_eq!(text, "- [x] mismatch in T2\n");
    }
}

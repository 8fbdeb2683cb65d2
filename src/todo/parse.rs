//! Reading `.opencode/todo.md` into items and groups, and writing it back
//! byte for byte.
//!
//! The plan is kept as its lines, each with its own line ending; items and
//! groups point at lines. Lines the parser does not understand (prose,
//! tables, code, blank lines) are never touched, so serializing a plan
//! nobody edited gives back exactly the text it came from.
//!
//! The format, as the Planner writes it and humans edit it:
//!
//! - An **item** is a list line `- [m] ID: text | key:value | key:value` at
//!   any indentation, with `-`, `*` or `+` as the bullet. The marker `m` is
//!   one of `[ ]` pending, `[/]` in progress, `[x]`/`[X]` done, `[-]` failed;
//!   any other bracket content makes the line prose, not an item.
//! - The **ID** is the token before the first `:` (letters, digits, `.`, `-`,
//!   `_`; optionally wrapped in `**` or backticks) when a space or the end of
//!   the line follows the colon. An item without one still counts for
//!   completion but cannot be addressed.
//! - **Metadata** are the trailing ` | `-separated segments of the form
//!   `key:value` (or the bare flag `verified`); scanning stops at the first
//!   segment from the end that is neither, so a ` | ` inside the text stays
//!   text.
//! - A **group** is a Markdown heading (`## T1: Token service | agent:Worker`)
//!   with the same ID and metadata syntax. Items below it inherit its
//!   metadata; nested headings inherit from enclosing ones.
//! - **Nesting**: an item indented deeper than the item above it is that
//!   item's child, and inherits its metadata too. A heading or any non-blank,
//!   non-item line at column 0 ends the nesting.
//! - Lines inside fenced code blocks (```` ``` ```` or `~~~`) are never
//!   items or headings.

use std::fmt;

use super::{Status, TodoError};

/// Metadata keys that describe one line and are not passed down to the
/// items below it: a heading's `status` is its own progress note, and a
/// group's `size` is not the size of each of its items.
const NOT_INHERITED: [&str; 5] = ["status", "size", "verified", "evidence", "issue"];

/// Bare metadata segments (no `:value`) that are recognised as metadata.
const FLAGS: [&str; 1] = ["verified"];

/// The Unicode byte-order mark.
const BOM: char = '\u{feff}';

/// How many known IDs an unknown-ID error suggests.
const SUGGESTED_IDS: usize = 8;

/// How one line ends; kept per line so mixed endings survive a round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Eol {
    /// The last line of a file that does not end with a newline.
    None,
    Lf,
    CrLf,
}

impl Eol {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Eol::None => "",
            Eol::Lf => "\n",
            Eol::CrLf => "\r\n",
        }
    }
}

/// One line of the file: its text without the ending, and the ending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Line {
    pub(super) text: String,
    pub(super) eol: Eol,
}

/// `key:value` pairs in the order written. Keys are compared
/// case-insensitively; a bare flag has an empty value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    entries: Vec<(String, String)>,
}

impl Meta {
    pub fn new() -> Meta {
        Meta::default()
    }

    /// The value of `key`, compared case-insensitively.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Append `key:value` (no check for an existing key).
    pub fn push(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.entries.push((key.into(), value.into()));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn agent(&self) -> Option<&str> {
        self.get("agent")
    }

    /// The IDs in `depends`, split on commas.
    pub fn depends(&self) -> Vec<&str> {
        self.get("depends")
            .map(|value| {
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|id| !id.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn file(&self) -> Option<&str> {
        self.get("file")
    }

    pub fn size(&self) -> Option<&str> {
        self.get("size")
    }

    pub fn parallel_group(&self) -> Option<&str> {
        self.get("parallel-group")
    }

    /// `self` plus the inheritable entries of `from` whose keys `self` lacks.
    fn inherit(&self, from: Option<&Meta>) -> Meta {
        let mut merged = self.clone();
        for (key, value) in from.into_iter().flat_map(Meta::iter) {
            let per_line = NOT_INHERITED.iter().any(|k| k.eq_ignore_ascii_case(key));
            if !per_line && !merged.contains(key) {
                merged.push(key, value);
            }
        }
        merged
    }
}

/// Written as ` | key:value | flag`, the way it appears after an item's text.
impl fmt::Display for Meta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (key, value) in self.iter() {
            if value.is_empty() {
                write!(f, " | {key}")?;
            } else {
                write!(f, " | {key}:{value}")?;
            }
        }
        Ok(())
    }
}

/// One checklist line of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// 1-based line number in the file.
    pub line: usize,
    pub status: Status,
    pub id: Option<String>,
    /// The text after the ID, without metadata.
    pub text: String,
    /// The metadata written on this line.
    pub meta: Meta,
    /// This line's metadata plus what it inherits from its parent items and
    /// enclosing headings.
    pub effective: Meta,
    /// 0 for an item with no parent item, 1 for its children, and so on.
    pub depth: usize,
    /// Index of the parent item in [`Plan::items`].
    pub parent: Option<usize>,
    /// The parent item's ID, when it has one.
    pub parent_id: Option<String>,
    /// Index of the nearest heading above in [`Plan::groups`].
    pub group: Option<usize>,
    /// The leading whitespace, as written.
    pub(super) indent: String,
    /// The indentation in columns (a tab advances to the next multiple of 4).
    pub(super) width: usize,
    pub(super) bullet: char,
    /// Byte offset of the marker character within the line.
    pub(super) marker_at: usize,
}

impl Item {
    /// The indentation in columns.
    pub fn indent_width(&self) -> usize {
        self.width
    }
}

/// A heading: it groups the items below it until the next heading of the
/// same or a higher level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// 1-based line number in the file.
    pub line: usize,
    /// 1 for `#`, 2 for `##`, ...
    pub level: usize,
    pub id: Option<String>,
    /// The heading text after the ID, without metadata.
    pub title: String,
    pub meta: Meta,
    /// This heading's metadata plus what it inherits from enclosing headings.
    pub effective: Meta,
    /// Index of the enclosing heading in [`Plan::groups`].
    pub parent: Option<usize>,
}

/// The parsed plan. `to_string()` gives back the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub(super) lines: Vec<Line>,
    pub(super) items: Vec<Item>,
    pub(super) groups: Vec<Group>,
}

impl Default for Plan {
    fn default() -> Self {
        Plan::parse("")
    }
}

impl Plan {
    pub fn parse(text: &str) -> Plan {
        Plan::from_lines(split_lines(text))
    }

    /// Index the items and groups of `lines`.
    pub(super) fn from_lines(lines: Vec<Line>) -> Plan {
        let mut items: Vec<Item> = Vec::new();
        let mut groups: Vec<Group> = Vec::new();
        let mut fence: Option<Fence> = None;
        // The items that a deeper-indented item below would be nested in.
        let mut open_items: Vec<usize> = Vec::new();
        // The headings enclosing the current line, outermost first.
        let mut open_groups: Vec<usize> = Vec::new();

        for (index, line) in lines.iter().enumerate() {
            // A byte-order mark some editors put first is not part of the
            // line's content; offsets into the line account for it.
            let (text, offset) = match line.text.strip_prefix(BOM).filter(|_| index == 0) {
                Some(text) => (text, BOM.len_utf8()),
                None => (line.text.as_str(), 0),
            };
            if let Some(open) = fence {
                if open.closed_by(text) {
                    fence = None;
                }
                continue;
            }
            if let Some(open) = Fence::opened_by(text) {
                fence = Some(open);
                if indent_width(text) == 0 {
                    open_items.clear();
                }
                continue;
            }
            if let Some((level, rest)) = parse_heading(text) {
                open_items.clear();
                while open_groups
                    .last()
                    .is_some_and(|&g| groups[g].level >= level)
                {
                    open_groups.pop();
                }
                let parent = open_groups.last().copied();
                let (head, meta) = split_meta(rest);
                let (id, title) = split_id(head);
                let effective = meta.inherit(parent.map(|g| &groups[g].effective));
                open_groups.push(groups.len());
                groups.push(Group {
                    line: index + 1,
                    level,
                    id,
                    title: title.to_string(),
                    meta,
                    effective,
                    parent,
                });
                continue;
            }
            if let Some(parsed) = parse_item(text) {
                while open_items
                    .last()
                    .is_some_and(|&i| items[i].width >= parsed.width)
                {
                    open_items.pop();
                }
                let parent = open_items.last().copied();
                let group = open_groups.last().copied();
                let (head, meta) = split_meta(parsed.body);
                let (id, item_text) = split_id(head);
                let inherited = match (parent, group) {
                    (Some(p), _) => Some(&items[p].effective),
                    (None, Some(g)) => Some(&groups[g].effective),
                    (None, None) => None,
                };
                let effective = meta.inherit(inherited);
                open_items.push(items.len());
                items.push(Item {
                    line: index + 1,
                    status: parsed.status,
                    id,
                    text: item_text.to_string(),
                    meta,
                    effective,
                    depth: parent.map_or(0, |p| items[p].depth + 1),
                    parent,
                    parent_id: parent.and_then(|p| items[p].id.clone()),
                    group,
                    indent: parsed.indent.to_string(),
                    width: parsed.width,
                    bullet: parsed.bullet,
                    marker_at: offset + parsed.marker_at,
                });
                continue;
            }
            if !text.trim().is_empty() && indent_width(text) == 0 {
                open_items.clear();
            }
        }
        Plan {
            lines,
            items,
            groups,
        }
    }

    /// Every item, in file order.
    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// Every heading, in file order.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// The items whose parent is the item at `index`, in file order.
    pub fn children(&self, index: usize) -> impl Iterator<Item = &Item> {
        self.items
            .iter()
            .filter(move |item| item.parent == Some(index))
    }

    /// The item with exactly this ID. An ID used by several items, an ID
    /// that names a heading, and an unknown ID are errors that say so.
    pub fn item(&self, id: &str) -> Result<&Item, TodoError> {
        self.item_index(id).map(|index| &self.items[index])
    }

    pub(super) fn item_index(&self, id: &str) -> Result<usize, TodoError> {
        let matches: Vec<usize> = self
            .items
            .iter()
            .enumerate()
            .filter(|(_, item)| item.id.as_deref() == Some(id))
            .map(|(index, _)| index)
            .collect();
        match matches.as_slice() {
            [index] => Ok(*index),
            [] => match self.groups.iter().find(|g| g.id.as_deref() == Some(id)) {
                Some(group) => Err(TodoError::GroupHeading {
                    id: id.to_string(),
                    line: group.line,
                }),
                None => Err(TodoError::UnknownId {
                    id: id.to_string(),
                    known: self.suggest_ids(id),
                }),
            },
            several => Err(TodoError::DuplicateId {
                id: id.to_string(),
                lines: several.iter().map(|&i| self.items[i].line).collect(),
            }),
        }
    }

    /// Known item IDs most like `id` (longest shared prefix first), for an
    /// error message.
    fn suggest_ids(&self, id: &str) -> Vec<String> {
        let wanted = id.to_ascii_lowercase();
        let mut known: Vec<(usize, usize, &str)> = self
            .items
            .iter()
            .enumerate()
            .filter_map(|(order, item)| {
                let known = item.id.as_deref()?;
                let shared = known
                    .to_ascii_lowercase()
                    .chars()
                    .zip(wanted.chars())
                    .take_while(|(a, b)| a == b)
                    .count();
                Some((shared, order, known))
            })
            .collect();
        known.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut seen = std::collections::HashSet::new();
        known
            .into_iter()
            .filter(|(_, _, id)| seen.insert(*id))
            .take(SUGGESTED_IDS)
            .map(|(_, _, id)| id.to_string())
            .collect()
    }

    /// Every ID in the plan, items and headings, in file order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.items
            .iter()
            .filter_map(|item| item.id.as_deref())
            .chain(self.groups.iter().filter_map(|g| g.id.as_deref()))
    }

    /// The line ending new lines get: the first one the file uses, else LF.
    pub(super) fn newline(&self) -> Eol {
        self.lines
            .iter()
            .map(|line| line.eol)
            .find(|eol| *eol != Eol::None)
            .unwrap_or(Eol::Lf)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            f.write_str(&line.text)?;
            f.write_str(line.eol.as_str())?;
        }
        Ok(())
    }
}

/// Split `text` into lines, each keeping its own ending (`\r\n`, `\n`, or
/// none for a last line without a newline). A lone `\r` stays in the text.
pub(super) fn split_lines(text: &str) -> Vec<Line> {
    text.split_inclusive('\n')
        .map(|chunk| {
            if let Some(text) = chunk.strip_suffix("\r\n") {
                Line {
                    text: text.to_string(),
                    eol: Eol::CrLf,
                }
            } else if let Some(text) = chunk.strip_suffix('\n') {
                Line {
                    text: text.to_string(),
                    eol: Eol::Lf,
                }
            } else {
                Line {
                    text: chunk.to_string(),
                    eol: Eol::None,
                }
            }
        })
        .collect()
}

/// Indentation of `text` in columns; a tab advances to the next multiple of 4.
pub(super) fn indent_width(text: &str) -> usize {
    let mut width = 0;
    for ch in text.chars() {
        match ch {
            ' ' => width += 1,
            '\t' => width += 4 - width % 4,
            _ => break,
        }
    }
    width
}

/// An open fenced code block: its fence character and length.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fence {
    ch: char,
    len: usize,
}

impl Fence {
    pub(super) fn opened_by(text: &str) -> Option<Fence> {
        let trimmed = text.trim_start();
        let ch = trimmed.chars().next().filter(|c| *c == '`' || *c == '~')?;
        let len = trimmed.chars().take_while(|c| *c == ch).count();
        // A backtick fence's info string cannot hold a backtick, so
        // "``` inline ```" is text, not a fence.
        let info = &trimmed[len..];
        (len >= 3 && !(ch == '`' && info.contains('`'))).then_some(Fence { ch, len })
    }

    pub(super) fn closed_by(self, text: &str) -> bool {
        let trimmed = text.trim();
        let len = trimmed.chars().take_while(|c| *c == self.ch).count();
        len >= self.len && len == trimmed.chars().count()
    }
}

/// `## rest` → `(2, "rest")`: up to three spaces, 1–6 `#`, then a space or
/// the end of the line.
pub(super) fn parse_heading(text: &str) -> Option<(usize, &str)> {
    let rest = text.trim_start_matches(' ');
    if text.len() - rest.len() > 3 {
        return None;
    }
    let level = rest.chars().take_while(|c| *c == '#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let after = &rest[level..];
    if !after.is_empty() && !after.starts_with([' ', '\t']) {
        return None;
    }
    Some((level, after.trim()))
}

/// The parts of an item line.
struct ItemLine<'a> {
    indent: &'a str,
    width: usize,
    bullet: char,
    marker_at: usize,
    status: Status,
    body: &'a str,
}

/// `  - [x] body` → its indentation, bullet, marker and body; `None` when the
/// line is not a checklist item with a known marker.
fn parse_item(text: &str) -> Option<ItemLine<'_>> {
    let rest = text.trim_start_matches([' ', '\t']);
    let indent = &text[..text.len() - rest.len()];
    let bullet = rest
        .chars()
        .next()
        .filter(|c| matches!(c, '-' | '*' | '+'))?;
    let after_bullet = &rest[1..];
    let spaced = after_bullet.trim_start_matches([' ', '\t']);
    if spaced.len() == after_bullet.len() {
        return None;
    }
    let bytes = spaced.as_bytes();
    if bytes.len() < 3 || bytes[0] != b'[' || bytes[2] != b']' {
        return None;
    }
    // Every marker is ASCII, so when byte 1 is one, byte 3 starts a character.
    let status = Status::from_marker(char::from(bytes[1]))?;
    let after = &spaced[3..];
    if !after.is_empty() && !after.starts_with([' ', '\t']) {
        return None;
    }
    Some(ItemLine {
        indent,
        width: indent_width(text),
        bullet,
        marker_at: text.len() - spaced.len() + 1,
        status,
        body: after.trim(),
    })
}

/// Split trailing ` | key:value` segments off `body`.
fn split_meta(body: &str) -> (&str, Meta) {
    let separators: Vec<usize> = body.match_indices(" | ").map(|(at, _)| at).collect();
    let mut head_end = body.len();
    let mut entries = Vec::new();
    for &at in separators.iter().rev() {
        match meta_entry(&body[at + 3..head_end]) {
            Some(entry) => {
                entries.push(entry);
                head_end = at;
            }
            None => break,
        }
    }
    entries.reverse();
    (body[..head_end].trim_end(), Meta { entries })
}

/// `key:value` or a known bare flag, as an entry; `None` for anything else.
fn meta_entry(segment: &str) -> Option<(String, String)> {
    let segment = segment.trim();
    if let Some(flag) = FLAGS.iter().find(|f| f.eq_ignore_ascii_case(segment)) {
        return Some((flag.to_string(), String::new()));
    }
    let (key, value) = segment.split_once(':')?;
    is_meta_key(key).then(|| (key.to_string(), value.trim().to_string()))
}

pub(super) fn is_meta_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `T1.2: text` → `(Some("T1.2"), "text")`. The ID may be wrapped in `**` or
/// backticks; the colon must be followed by whitespace or the end.
fn split_id(head: &str) -> (Option<String>, &str) {
    let Some((token, after)) = head.split_once(':') else {
        return (None, head);
    };
    if !after.is_empty() && !after.starts_with([' ', '\t']) {
        return (None, head);
    }
    let bare = ["**", "`"]
        .iter()
        .find_map(|wrap| token.strip_prefix(wrap)?.strip_suffix(wrap))
        .unwrap_or(token);
    if is_id(bare) {
        (Some(bare.to_string()), after.trim())
    } else {
        (None, head)
    }
}

/// Letters, digits, `.`, `-` and `_`, starting with a letter or digit.
pub(super) fn is_id(token: &str) -> bool {
    token
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RICH: &str = concat!(
        "# Mission: Add JWT authentication\n",
        "\n",
        "Some prose about the mission, with a colon: here.\n",
        "\n",
        "## File Manifest\n",
        "| Action | File Path | Description |\n",
        "| --- | --- | --- |\n",
        "| CREATE | src/auth/token.rs | Token service |\n",
        "\n",
        "## T1: Token service | agent:Worker | parallel-group:1\n",
        "- [ ] T1.1: Create src/auth/token.rs | file:src/auth/token.rs | size:S\n",
        "  - [/] T1.1.1: Claims struct\n",
        "    * [x] T1.1.1.1: Serde derive\n",
        "      - [X] T1.1.1.1.1: Done with capital X\n",
        "- [-] T1.2: Benchmark signing | size:M | owner:alice\n",
        "- [ ] An item without an ID\n",
        "\n",
        "```markdown\n",
        "- [ ] T9: not an item, inside a fence\n",
        "## not a heading\n",
        "```\n",
        "\n",
        "- plain bullet, not an item\n",
        "- [?] unknown marker, not an item\n",
        "---\n",
        "Trailing prose without a newline",
    );

    fn ids(plan: &Plan) -> Vec<&str> {
        plan.items()
            .iter()
            .map(|item| item.id.as_deref().unwrap_or("-"))
            .collect()
    }

    #[test]
    fn round_trips_byte_for_byte() {
        let cases = [
            ("empty", String::new()),
            ("one line, no newline", "- [ ] T1: a".to_string()),
            ("only newlines", "\n\n\n".to_string()),
            ("rich, LF, no trailing newline", RICH.to_string()),
            ("rich, LF, trailing newline", format!("{RICH}\n")),
            ("rich, CRLF", RICH.replace('\n', "\r\n") + "\r\n"),
            (
                "mixed endings and a lone CR",
                "- [ ] T1: a\r\n- [x] T2: b\nprose\rmore\n\r\n".to_string(),
            ),
            ("byte-order mark", "\u{feff}- [ ] T1: a\n".to_string()),
            (
                "tabs, trailing spaces, unicode",
                "\t- [ ] T1: tâche  \n  * [x] T2: 完成\t\n".to_string(),
            ),
        ];
        for (name, text) in cases {
            assert_eq!(Plan::parse(&text).to_string(), text, "case {name}");
        }
    }

    #[test]
    fn every_marker_at_every_depth() {
        let text = "- [ ] A1: pending\n  - [/] A2: progress\n    - [x] A3: done\n      - [X] A4: done\n      - [-] A5: failed\n";
        let plan = Plan::parse(text);
        let seen: Vec<(&str, Status, usize)> = plan
            .items()
            .iter()
            .map(|i| (i.id.as_deref().unwrap_or("-"), i.status, i.depth))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("A1", Status::Pending, 0),
                ("A2", Status::InProgress, 1),
                ("A3", Status::Done, 2),
                ("A4", Status::Done, 3),
                ("A5", Status::Failed, 3),
            ]
        );
    }

    #[test]
    fn recognises_items_and_not_lookalikes() {
        let cases = [
            ("- [ ] T1: a", Some((Status::Pending, Some("T1"), "a"))),
            ("* [x] T1: a", Some((Status::Done, Some("T1"), "a"))),
            ("+ [/] T1: a", Some((Status::InProgress, Some("T1"), "a"))),
            ("      - [-] T1: a", Some((Status::Failed, Some("T1"), "a"))),
            ("\t- [ ] T1: a", Some((Status::Pending, Some("T1"), "a"))),
            ("- [ ]", Some((Status::Pending, None, ""))),
            (
                "- [ ] plain text",
                Some((Status::Pending, None, "plain text")),
            ),
            (
                "- [ ] **T1.2**: bold id",
                Some((Status::Pending, Some("T1.2"), "bold id")),
            ),
            (
                "- [ ] `S1`: code id",
                Some((Status::Pending, Some("S1"), "code id")),
            ),
            (
                "- [ ] see http://x.y",
                Some((Status::Pending, None, "see http://x.y")),
            ),
            (
                "- [ ] a b: not an id",
                Some((Status::Pending, None, "a b: not an id")),
            ),
            (
                "- [ ] T1:no space",
                Some((Status::Pending, None, "T1:no space")),
            ),
            ("- [ ] T1:", Some((Status::Pending, Some("T1"), ""))),
            ("-[ ] no space after bullet", None),
            ("- [ ]no space after marker", None),
            ("- [?] unknown marker", None),
            ("- [xx] two chars", None),
            ("- [link](url)", None),
            ("- plain bullet", None),
            ("---", None),
            ("**bold**", None),
            ("1. [ ] numbered", None),
            ("[ ] no bullet", None),
        ];
        for (line, expected) in cases {
            let plan = Plan::parse(line);
            let got = plan
                .items()
                .first()
                .map(|i| (i.status, i.id.as_deref(), i.text.as_str()));
            assert_eq!(got, expected, "line {line:?}");
        }
    }

    #[test]
    fn rich_file_items_groups_and_fences() {
        let plan = Plan::parse(RICH);
        assert_eq!(
            ids(&plan),
            vec!["T1.1", "T1.1.1", "T1.1.1.1", "T1.1.1.1.1", "T1.2", "-"]
        );
        let groups: Vec<(usize, Option<&str>, &str)> = plan
            .groups()
            .iter()
            .map(|g| (g.level, g.id.as_deref(), g.title.as_str()))
            .collect();
        assert_eq!(
            groups,
            vec![
                (1, Some("Mission"), "Add JWT authentication"),
                (2, None, "File Manifest"),
                (2, Some("T1"), "Token service"),
            ]
        );
        let item = &plan.items()[0];
        assert_eq!(item.line, 11);
        assert_eq!(item.text, "Create src/auth/token.rs");
    }

    #[test]
    fn nesting_gives_parents_and_depths() {
        let text = "- [ ] T1: root\n  - [ ] T1.1: child\n    - [ ] T1.1.1: grandchild\n  - [ ] T1.2: second child\n- [ ] T2: next root\n\t- [ ] T2.1: tab child\n";
        let plan = Plan::parse(text);
        let shape: Vec<(&str, Option<&str>, usize)> = plan
            .items()
            .iter()
            .map(|i| {
                (
                    i.id.as_deref().unwrap_or("-"),
                    i.parent_id.as_deref(),
                    i.depth,
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                ("T1", None, 0),
                ("T1.1", Some("T1"), 1),
                ("T1.1.1", Some("T1.1"), 2),
                ("T1.2", Some("T1"), 1),
                ("T2", None, 0),
                ("T2.1", Some("T2"), 1),
            ]
        );
        let children: Vec<&str> = plan.children(0).filter_map(|i| i.id.as_deref()).collect();
        assert_eq!(children, vec!["T1.1", "T1.2"]);
    }

    #[test]
    fn headings_and_column_zero_prose_end_nesting() {
        let text = "- [ ] A: a\n## G1: group\n  - [ ] B: after heading\n- [ ] C: c\nprose\n  - [ ] D: after prose\n- [ ] E: e\n\n  - [ ] F: blank line keeps nesting\n";
        let plan = Plan::parse(text);
        let parents: Vec<(&str, Option<&str>)> = plan
            .items()
            .iter()
            .map(|i| (i.id.as_deref().unwrap_or("-"), i.parent_id.as_deref()))
            .collect();
        assert_eq!(
            parents,
            vec![
                ("A", None),
                ("B", None),
                ("C", None),
                ("D", None),
                ("E", None),
                ("F", Some("E")),
            ]
        );
    }

    #[test]
    fn metadata_is_parsed_and_kept_in_order() {
        let plan = Plan::parse(
            "- [ ] T1: Create a | b thing | agent:Worker | depends:T0, T0.1 ,T0.2 | file:src/a.rs | size:S | parallel-group:2 | owner: alice | verified",
        );
        let item = &plan.items()[0];
        assert_eq!(item.text, "Create a | b thing");
        assert_eq!(item.meta.agent(), Some("Worker"));
        assert_eq!(item.meta.depends(), vec!["T0", "T0.1", "T0.2"]);
        assert_eq!(item.meta.file(), Some("src/a.rs"));
        assert_eq!(item.meta.size(), Some("S"));
        assert_eq!(item.meta.parallel_group(), Some("2"));
        assert_eq!(item.meta.get("OWNER"), Some("alice"));
        assert!(item.meta.contains("verified"));
        let keys: Vec<&str> = item.meta.iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            vec![
                "agent",
                "depends",
                "file",
                "size",
                "parallel-group",
                "owner",
                "verified"
            ]
        );
        assert_eq!(
            item.meta.to_string(),
            " | agent:Worker | depends:T0, T0.1 ,T0.2 | file:src/a.rs | size:S | parallel-group:2 | owner:alice | verified"
        );
    }

    #[test]
    fn text_with_pipes_stays_text() {
        let cases = [
            ("- [ ] T1: a | b", "a | b", 0),
            ("- [ ] T1: a || b | size:S", "a || b", 1),
            ("- [ ] T1: a | b c | size:S", "a | b c", 1),
            (
                "- [ ] T1: x | size:S | not meta",
                "x | size:S | not meta",
                0,
            ),
        ];
        for (line, text, metas) in cases {
            let plan = Plan::parse(line);
            let item = &plan.items()[0];
            assert_eq!(
                (item.text.as_str(), item.meta.len()),
                (text, metas),
                "{line:?}"
            );
        }
    }

    #[test]
    fn metadata_inherits_from_headings_and_parents() {
        let text = concat!(
            "# Mission: m | agent:Planner\n",
            "## T1: Token service | agent:Worker | parallel-group:1 | size:L | status: pending\n",
            "- [ ] T1.1: own agent | agent:Reviewer | size:S\n",
            "  - [ ] T1.1.1: inherits from parent item\n",
            "- [ ] T1.2: inherits from heading | depends:T1.1\n",
            "### T1.3: nested heading | file:src/x.rs\n",
            "- [ ] T1.3.1: inherits from both headings\n",
            "## T2: other group\n",
            "- [ ] T2.1: inherits from the mission heading\n",
        );
        let plan = Plan::parse(text);
        let effective = |id: &str| {
            let item = plan.item(id).expect("item exists");
            (
                item.effective.agent().map(str::to_string),
                item.effective.parallel_group().map(str::to_string),
                item.effective.size().map(str::to_string),
                item.effective.file().map(str::to_string),
                item.effective.get("status").map(str::to_string),
            )
        };
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            effective("T1.1"),
            (s("Reviewer"), s("1"), s("S"), None, None)
        );
        assert_eq!(
            effective("T1.1.1"),
            (s("Reviewer"), s("1"), None, None, None)
        );
        assert_eq!(effective("T1.2"), (s("Worker"), s("1"), None, None, None));
        assert_eq!(
            effective("T1.3.1"),
            (s("Worker"), s("1"), None, s("src/x.rs"), None)
        );
        assert_eq!(effective("T2.1"), (s("Planner"), None, None, None, None));
        let own = &plan.item("T1.2").expect("item exists").meta;
        assert_eq!(own.agent(), None);
        assert_eq!(own.depends(), vec!["T1.1"]);
        let group = &plan.groups()[1];
        assert_eq!(group.meta.get("status"), Some("pending"));
        assert_eq!(plan.item("T1.3.1").expect("item").group, Some(2));
    }

    #[test]
    fn lookup_is_exact() {
        let plan = Plan::parse(
            "## G1: group\n- [ ] T1: a\n- [ ] T1.1: b\n- [ ] T1.1.1: c\n- [ ] T1.10: d\n- [ ] D1: e\n- [ ] D1: f\n",
        );
        for id in ["T1", "T1.1", "T1.1.1", "T1.10"] {
            assert_eq!(plan.item(id).expect("exact match").id.as_deref(), Some(id));
        }
        match plan.item("T1.") {
            Err(TodoError::UnknownId { known, .. }) => {
                assert_eq!(known[..3], ["T1.1", "T1.1.1", "T1.10"]);
                assert!(known.len() <= SUGGESTED_IDS);
            }
            other => panic!("expected an unknown-ID error, got {other:?}"),
        }
        match plan.item("t1.1") {
            Err(TodoError::UnknownId { known, .. }) => assert_eq!(known[0], "T1.1"),
            other => panic!("expected an unknown-ID error, got {other:?}"),
        }
        match plan.item("D1") {
            Err(TodoError::DuplicateId { lines, .. }) => assert_eq!(lines, vec![6, 7]),
            other => panic!("expected a duplicate-ID error, got {other:?}"),
        }
        match plan.item("G1") {
            Err(TodoError::GroupHeading { line, .. }) => assert_eq!(line, 1),
            other => panic!("expected a group-heading error, got {other:?}"),
        }
    }

    #[test]
    fn a_byte_order_mark_does_not_hide_the_first_line() {
        let mut plan = Plan::parse("\u{feff}- [ ] T1: a\n- [ ] T2: b\n");
        assert_eq!(ids(&plan), vec!["T1", "T2"]);
        plan.set_status("T1", Status::Done).expect("known ID");
        assert_eq!(plan.to_string(), "\u{feff}- [x] T1: a\n- [ ] T2: b\n");
        let plan = Plan::parse("\u{feff}## T1: group | agent:Worker\n- [ ] T1.1: a\n");
        assert_eq!(plan.groups()[0].id.as_deref(), Some("T1"));
    }

    #[test]
    fn fences_hide_items_until_closed() {
        let text =
            "````\n```\n- [ ] A: inside\n```\n````\n- [ ] B: outside\n~~~\n- [ ] C: inside\n";
        let plan = Plan::parse(text);
        assert_eq!(ids(&plan), vec!["B"]);
    }
}

//! The two edits agents make to a plan: set one item's status, and add an
//! item. Both touch as little of the file as they can: a status change
//! rewrites one marker character, an addition inserts one line.

use super::parse::{Eol, Fence, Line, indent_width, is_id, is_meta_key, parse_heading};
use super::{Item, Meta, Plan, Status, TodoError};

/// What [`Plan::set_status`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    pub id: String,
    /// 1-based line number of the item.
    pub line: usize,
    pub from: Status,
    pub to: Status,
}

impl StatusChange {
    /// Whether the status actually changed (setting the current status is a
    /// no-op, not an error).
    pub fn changed(&self) -> bool {
        self.from != self.to
    }
}

/// An item to add with [`Plan::add`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewItem {
    /// The ID of the item (or group heading) to add under; `None` adds a
    /// top-level item after the last item of the plan.
    pub parent: Option<String>,
    /// The new item's ID; `None` generates one (`<parent>.<n>` or `T<n>`).
    pub id: Option<String>,
    pub text: String,
    pub meta: Meta,
}

/// Where a new item goes and how it is written.
struct Placement {
    /// Index in `lines` the new line is inserted at.
    at: usize,
    indent: String,
    bullet: char,
    /// Generated IDs are this prefix plus a number.
    id_prefix: String,
}

impl Plan {
    /// Set the status of the item whose ID is exactly `id`. Only that item's
    /// marker character changes; every other byte of the file stays.
    pub fn set_status(&mut self, id: &str, status: Status) -> Result<StatusChange, TodoError> {
        let index = self.item_index(id)?;
        let item = &mut self.items[index];
        let change = StatusChange {
            id: id.to_string(),
            line: item.line,
            from: item.status,
            to: status,
        };
        if change.changed() {
            let at = item.marker_at;
            let mut marker = [0u8; 4];
            self.lines[item.line - 1]
                .text
                .replace_range(at..at + 1, status.marker().encode_utf8(&mut marker));
            item.status = status;
        }
        Ok(change)
    }

    /// Add a pending item and return it as parsed from its new line.
    ///
    /// Under a parent item it goes after the parent's last descendant, at
    /// the indentation of the parent's existing children (or two spaces
    /// deeper than the parent), so sub-items stay in the order they were
    /// added. Under a group heading it goes after the group's last item.
    /// Without a parent it goes after the last item of the plan, or at the
    /// end of the file when there is none.
    pub fn add(&mut self, new: NewItem) -> Result<Item, TodoError> {
        let text = new.text.trim();
        check_text(text)?;
        check_meta(&new.meta)?;
        let placement = self.placement(new.parent.as_deref())?;
        let id = match new.id.as_deref().map(str::trim) {
            Some(id) => {
                if !is_id(id) {
                    return Err(TodoError::Invalid(format!(
                        "{id:?} is not a valid ID; use letters, digits, '.', '-' and '_', starting with a letter or digit (for example T1.2)"
                    )));
                }
                if let Some(line) = self.id_line(id) {
                    return Err(TodoError::IdTaken {
                        id: id.to_string(),
                        line,
                    });
                }
                id.to_string()
            }
            None => self.next_id(&placement.id_prefix),
        };
        let line = format!(
            "{}{} [ ] {id}: {text}{}",
            placement.indent, placement.bullet, new.meta
        );
        let mut lines = self.lines.clone();
        insert_line(&mut lines, placement.at, line, self.newline());
        let edited = Plan::from_lines(lines);
        // The line is an item unless it landed inside a code fence the file
        // never closes.
        let added = edited
            .items
            .iter()
            .find(|item| item.line == placement.at + 1)
            .cloned()
            .ok_or_else(|| {
                TodoError::Invalid(
                    "the new item would land inside a code fence that is never closed; close the fence in the plan first".into(),
                )
            })?;
        *self = edited;
        Ok(added)
    }

    fn placement(&self, parent: Option<&str>) -> Result<Placement, TodoError> {
        let Some(parent) = parent.map(str::trim) else {
            return Ok(self.top_level_placement());
        };
        match self.item_index(parent) {
            Ok(index) => Ok(self.child_placement(index, parent)),
            Err(TodoError::GroupHeading { .. }) => {
                let group = self
                    .groups
                    .iter()
                    .position(|g| g.id.as_deref() == Some(parent))
                    .expect("item_index reported a group heading with this ID");
                Ok(self.group_placement(group, parent))
            }
            Err(err) => Err(err),
        }
    }

    fn top_level_placement(&self) -> Placement {
        let id_prefix = "T".to_string();
        let Some(last) = self.items.last() else {
            return Placement {
                at: self.lines.len(),
                indent: String::new(),
                bullet: '-',
                id_prefix,
            };
        };
        let root = &self.items[self.root_of(self.items.len() - 1)];
        Placement {
            at: self.after_continuation(last.line - 1, root.width),
            indent: root.indent.clone(),
            bullet: root.bullet,
            id_prefix,
        }
    }

    fn child_placement(&self, parent: usize, parent_id: &str) -> Placement {
        let parent_item = &self.items[parent];
        let last = self.last_descendant(parent);
        let (indent, bullet) = match self.children(parent).last() {
            Some(child) => (child.indent.clone(), child.bullet),
            None => (format!("{}  ", parent_item.indent), parent_item.bullet),
        };
        Placement {
            at: self.after_continuation(self.items[last].line - 1, parent_item.width),
            indent,
            bullet,
            id_prefix: format!("{parent_id}."),
        }
    }

    fn group_placement(&self, group: usize, group_id: &str) -> Placement {
        let id_prefix = format!("{group_id}.");
        let last_root = self
            .items
            .iter()
            .rposition(|item| item.group == Some(group) && item.parent.is_none());
        match last_root {
            Some(root) => {
                let last = self.last_descendant(root);
                let root = &self.items[root];
                Placement {
                    at: self.after_continuation(self.items[last].line - 1, root.width),
                    indent: root.indent.clone(),
                    bullet: root.bullet,
                    id_prefix,
                }
            }
            None => Placement {
                at: self.groups[group].line,
                indent: String::new(),
                bullet: '-',
                id_prefix,
            },
        }
    }

    /// The index of the outermost ancestor of the item at `index`.
    fn root_of(&self, mut index: usize) -> usize {
        while let Some(parent) = self.items[index].parent {
            index = parent;
        }
        index
    }

    /// The last item nested (at any depth) under the item at `index`, or the
    /// item itself. Descendants follow their ancestor directly in file order.
    fn last_descendant(&self, index: usize) -> usize {
        let depth = self.items[index].depth;
        let mut last = index;
        for (next, item) in self.items.iter().enumerate().skip(index + 1) {
            if item.depth <= depth {
                break;
            }
            last = next;
        }
        last
    }

    /// The line index just after line `line` and the lines continuing it:
    /// non-blank, non-item, non-heading lines indented deeper than `width`.
    /// A code fence opened by such a line continues it up to its closing
    /// fence, whatever the indentation inside.
    fn after_continuation(&self, line: usize, width: usize) -> usize {
        let mut at = line + 1;
        while let Some(next) = self.lines.get(at) {
            let continues = !next.text.trim().is_empty()
                && indent_width(&next.text) > width
                && parse_heading(&next.text).is_none()
                && !self.items.iter().any(|item| item.line == at + 1);
            if !continues {
                break;
            }
            at += 1;
            if let Some(fence) = Fence::opened_by(&next.text) {
                while let Some(inside) = self.lines.get(at) {
                    at += 1;
                    if fence.closed_by(&inside.text) {
                        break;
                    }
                }
            }
        }
        at
    }

    /// The line of the item or heading using `id`.
    fn id_line(&self, id: &str) -> Option<usize> {
        self.items
            .iter()
            .filter(|item| item.id.as_deref() == Some(id))
            .map(|item| item.line)
            .chain(
                self.groups
                    .iter()
                    .filter(|g| g.id.as_deref() == Some(id))
                    .map(|g| g.line),
            )
            .next()
    }

    /// `prefix` plus one more than the largest number already used after
    /// it, skipping any ID that is taken.
    fn next_id(&self, prefix: &str) -> String {
        let largest = self
            .ids()
            .filter_map(|id| id.strip_prefix(prefix)?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        let mut number = largest + 1;
        loop {
            let candidate = format!("{prefix}{number}");
            if self.id_line(&candidate).is_none() {
                return candidate;
            }
            number += 1;
        }
    }
}

/// Insert `text` as a new line at index `at` of `lines`, ending it with
/// `newline`. A file without a trailing newline keeps having none.
fn insert_line(lines: &mut Vec<Line>, at: usize, text: String, newline: Eol) {
    if at == lines.len() {
        if let Some(last) = lines.last_mut()
            && last.eol == Eol::None
        {
            last.eol = newline;
            lines.push(Line {
                text,
                eol: Eol::None,
            });
            return;
        }
        lines.push(Line { text, eol: newline });
    } else {
        lines.insert(at, Line { text, eol: newline });
    }
}

fn check_text(text: &str) -> Result<(), TodoError> {
    if text.is_empty() {
        return Err(TodoError::Invalid(
            "the item text is empty; say what the item is".into(),
        ));
    }
    if text.contains(['\n', '\r']) {
        return Err(TodoError::Invalid(
            "the item text must be one line; add several items instead".into(),
        ));
    }
    if text.contains(" | ") {
        return Err(TodoError::Invalid(
            "the item text must not contain \" | \" (it separates metadata); pass metadata in meta"
                .into(),
        ));
    }
    Ok(())
}

fn check_meta(meta: &Meta) -> Result<(), TodoError> {
    for (key, value) in meta.iter() {
        if !is_meta_key(key) {
            return Err(TodoError::Invalid(format!(
                "metadata key {key:?} must be letters, digits, '-' or '_' (for example agent, depends, file, size, parallel-group)"
            )));
        }
        if value.trim().is_empty() && !key.eq_ignore_ascii_case("verified") {
            return Err(TodoError::Invalid(format!(
                "metadata {key:?} has an empty value; give it a value or leave it out"
            )));
        }
        if value.contains(['|', '\n', '\r']) {
            return Err(TodoError::Invalid(format!(
                "metadata {key:?} must be one line without '|'"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_item(parent: Option<&str>, id: Option<&str>, text: &str) -> NewItem {
        NewItem {
            parent: parent.map(str::to_string),
            id: id.map(str::to_string),
            text: text.to_string(),
            meta: Meta::new(),
        }
    }

    /// The lines of `after` that differ from `before`, compared line by line.
    fn changed_lines(before: &str, after: &str) -> Vec<(usize, String)> {
        let before: Vec<&str> = before.split_inclusive('\n').collect();
        after
            .split_inclusive('\n')
            .enumerate()
            .filter(|(i, line)| before.get(*i) != Some(line))
            .map(|(i, line)| (i + 1, line.to_string()))
            .collect()
    }

    const NEAR_IDS: &str = concat!(
        "# Mission: m\n",
        "## T1: group | agent:Worker\n",
        "- [ ] T1: top\n",
        "  - [ ] T1.1: one\n",
        "    - [ ] T1.1.1: one one\n",
        "  - [ ] T1.10: ten\n",
        "- [ ] T11: eleven\n",
        "- [ ] S1.1: sub\n",
        "  - [ ] S1.1.1: sub sub\n",
    );

    #[test]
    fn set_status_changes_exactly_one_marker() {
        let cases = [
            ("T1", Status::Done, 3, "- [x] T1: top\n"),
            ("T1.1", Status::InProgress, 4, "  - [/] T1.1: one\n"),
            ("T1.1.1", Status::Failed, 5, "    - [-] T1.1.1: one one\n"),
            ("T1.10", Status::Done, 6, "  - [x] T1.10: ten\n"),
            ("T11", Status::Done, 7, "- [x] T11: eleven\n"),
            ("S1.1", Status::Done, 8, "- [x] S1.1: sub\n"),
        ];
        for (id, status, line, expected) in cases {
            let mut plan = Plan::parse(NEAR_IDS);
            let change = plan.set_status(id, status).expect("known ID");
            assert_eq!(
                (change.line, change.from, change.to),
                (line, Status::Pending, status)
            );
            let after = plan.to_string();
            assert_eq!(
                changed_lines(NEAR_IDS, &after),
                vec![(line, expected.to_string())],
                "updating {id}"
            );
            assert_eq!(
                Plan::parse(&after).item(id).expect("still there").status,
                status
            );
        }
    }

    #[test]
    fn set_status_keeps_crlf_and_missing_final_newline() {
        let text = "- [ ] T1: a\r\n- [ ] T2: b";
        let mut plan = Plan::parse(text);
        plan.set_status("T2", Status::Done).expect("known ID");
        plan.set_status("T1", Status::InProgress).expect("known ID");
        assert_eq!(plan.to_string(), "- [/] T1: a\r\n- [x] T2: b");
    }

    #[test]
    fn set_status_to_the_same_status_changes_nothing() {
        let text = "- [X] T1: capital X\n";
        let mut plan = Plan::parse(text);
        let change = plan.set_status("T1", Status::Done).expect("known ID");
        assert!(!change.changed());
        assert_eq!(plan.to_string(), text);
    }

    #[test]
    fn set_status_refuses_unknown_duplicate_and_heading_ids() {
        let text = "## G1: group\n- [ ] T1: a\n- [ ] T1: again\n- [ ] T2: b\n";
        let mut plan = Plan::parse(text);
        let cases: [(&str, &str); 4] = [
            ("T1", "ID \"T1\" is used by several items (lines 2, 3)"),
            ("T3", "no item has ID \"T3\"; known IDs include"),
            ("G1", "\"G1\" is a group heading (line 1), not an item"),
            ("T", "no item has ID \"T\""),
        ];
        for (id, message) in cases {
            let err = plan
                .set_status(id, Status::Done)
                .expect_err("not a single item");
            assert!(err.to_string().starts_with(message), "{id}: {err}");
        }
        assert_eq!(plan.to_string(), text);
    }

    #[test]
    fn sub_items_are_added_in_order_at_every_depth() {
        let mut plan = Plan::parse("# Mission: m\n- [ ] T1: root\n- [ ] T2: other\n");
        for text in ["first", "second", "third"] {
            plan.add(new_item(Some("T1"), None, text))
                .expect("parent exists");
        }
        plan.add(new_item(Some("T1.2"), None, "second's child"))
            .expect("parent exists");
        plan.add(new_item(Some("T1.2.1"), None, "grandchild"))
            .expect("parent exists");
        plan.add(new_item(Some("T1.2"), None, "second's second child"))
            .expect("parent exists");
        plan.add(new_item(Some("T1"), None, "fourth"))
            .expect("parent exists");
        assert_eq!(
            plan.to_string(),
            concat!(
                "# Mission: m\n",
                "- [ ] T1: root\n",
                "  - [ ] T1.1: first\n",
                "  - [ ] T1.2: second\n",
                "    - [ ] T1.2.1: second's child\n",
                "      - [ ] T1.2.1.1: grandchild\n",
                "    - [ ] T1.2.2: second's second child\n",
                "  - [ ] T1.3: third\n",
                "  - [ ] T1.4: fourth\n",
                "- [ ] T2: other\n",
            )
        );
        let parents: Vec<(&str, Option<&str>)> = plan
            .items()
            .iter()
            .map(|i| (i.id.as_deref().unwrap_or("-"), i.parent_id.as_deref()))
            .collect();
        assert_eq!(parents[6], ("T1.3", Some("T1")));
        assert_eq!(parents[3], ("T1.2.1", Some("T1.2")));
    }

    #[test]
    fn children_follow_their_siblings_indentation_and_bullet() {
        let mut plan =
            Plan::parse("* [ ] A: root\n    * [ ] A.1: wide child\n      note for A.1\n\nprose\n");
        let added = plan
            .add(new_item(Some("A"), None, "next"))
            .expect("parent exists");
        assert_eq!(added.id.as_deref(), Some("A.2"));
        assert_eq!(added.parent_id.as_deref(), Some("A"));
        assert_eq!(
            plan.to_string(),
            "* [ ] A: root\n    * [ ] A.1: wide child\n      note for A.1\n    * [ ] A.2: next\n\nprose\n"
        );
    }

    #[test]
    fn top_level_items_go_after_the_last_item() {
        let cases = [
            ("", "- [ ] T1: new\n"),
            ("# Mission: m", "# Mission: m\n- [ ] T1: new"),
            ("# Mission: m\n", "# Mission: m\n- [ ] T1: new\n"),
            (
                "- [ ] T1: a\n  - [ ] T1.1: b\n\n## Notes\nprose\n",
                "- [ ] T1: a\n  - [ ] T1.1: b\n- [ ] T2: new\n\n## Notes\nprose\n",
            ),
            (
                "## T1: group\n- [x] T1.1: a\r\n- [ ] T1.2: b",
                "## T1: group\n- [x] T1.1: a\r\n- [ ] T1.2: b\n- [ ] T2: new",
            ),
            ("- [ ] T1: a\r\n", "- [ ] T1: a\r\n- [ ] T2: new\r\n"),
        ];
        for (before, after) in cases {
            let mut plan = Plan::parse(before);
            plan.add(new_item(None, None, "new")).expect("top level");
            assert_eq!(plan.to_string(), after, "adding to {before:?}");
        }
    }

    #[test]
    fn items_can_be_added_under_a_group_heading() {
        let text = "## T1: group | agent:Worker\n- [ ] T1.1: a\n  - [ ] T1.1.1: a child\n## T2: empty group\n\n## T3: last\n";
        let mut plan = Plan::parse(text);
        let added = plan
            .add(new_item(Some("T1"), None, "b"))
            .expect("group exists");
        assert_eq!(added.id.as_deref(), Some("T1.2"));
        assert_eq!(added.effective.agent(), Some("Worker"));
        let added = plan
            .add(new_item(Some("T2"), None, "c"))
            .expect("group exists");
        assert_eq!(added.id.as_deref(), Some("T2.1"));
        assert_eq!(
            plan.to_string(),
            "## T1: group | agent:Worker\n- [ ] T1.1: a\n  - [ ] T1.1.1: a child\n- [ ] T1.2: b\n## T2: empty group\n- [ ] T2.1: c\n\n## T3: last\n"
        );
    }

    #[test]
    fn generated_ids_never_collide() {
        let cases = [
            ("- [ ] T1: a\n- [ ] T2: b\n", None, "T3"),
            ("## T1: group\n## T4: group\n- [ ] T2: b\n", None, "T5"),
            ("- [ ] X: a\n", None, "T1"),
            (
                "- [ ] T1: a\n  - [ ] T1.1: b\n  - [ ] T1.3: c\n",
                Some("T1"),
                "T1.4",
            ),
            ("- [ ] T1: a\n- [ ] T1.1: elsewhere\n", Some("T1"), "T1.2"),
            ("- [ ] T1: a\n  - [ ] T1.10: b\n", Some("T1"), "T1.11"),
            ("- [ ] T1: a\n  - [ ] T1.x: b\n", Some("T1"), "T1.1"),
        ];
        for (text, parent, expected) in cases {
            let mut plan = Plan::parse(text);
            let added = plan.add(new_item(parent, None, "new")).expect("valid add");
            assert_eq!(added.id.as_deref(), Some(expected), "adding to {text:?}");
        }
    }

    #[test]
    fn given_ids_and_metadata_are_written_and_read_back() {
        let mut plan = Plan::parse("- [ ] T1: a\n");
        let mut meta = Meta::new();
        meta.push("agent", "Worker");
        meta.push("depends", "T1");
        meta.push("size", "S");
        let added = plan
            .add(NewItem {
                parent: Some("T1".into()),
                id: Some("S1.1".into()),
                text: "  Write tests: edge cases  ".into(),
                meta,
            })
            .expect("valid add");
        assert_eq!(added.id.as_deref(), Some("S1.1"));
        assert_eq!(added.text, "Write tests: edge cases");
        assert_eq!(added.meta.depends(), vec!["T1"]);
        assert_eq!(added.status, Status::Pending);
        assert_eq!(
            plan.to_string(),
            "- [ ] T1: a\n  - [ ] S1.1: Write tests: edge cases | agent:Worker | depends:T1 | size:S\n"
        );
    }

    #[test]
    fn invalid_additions_change_nothing() {
        let text = "## G1: group\n- [ ] T1: a\n- [ ] D: x\n- [ ] D: y\n";
        let with_meta = |key: &str, value: &str| {
            let mut meta = Meta::new();
            meta.push(key, value);
            NewItem {
                text: "ok".into(),
                meta,
                ..NewItem::default()
            }
        };
        let cases = [
            (
                new_item(None, Some("T1"), "dup"),
                "ID \"T1\" is already used (line 2)",
            ),
            (
                new_item(None, Some("G1"), "dup"),
                "ID \"G1\" is already used (line 1)",
            ),
            (
                new_item(None, Some("T 2"), "bad"),
                "\"T 2\" is not a valid ID",
            ),
            (
                new_item(Some("T9"), None, "orphan"),
                "no item has ID \"T9\"",
            ),
            (
                new_item(Some("D"), None, "ambiguous"),
                "ID \"D\" is used by several items",
            ),
            (new_item(None, None, "   "), "the item text is empty"),
            (
                new_item(None, None, "two\nlines"),
                "the item text must be one line",
            ),
            (
                new_item(None, None, "a | b"),
                "the item text must not contain",
            ),
            (with_meta("a b", "x"), "metadata key \"a b\""),
            (
                with_meta("size", ""),
                "metadata \"size\" has an empty value",
            ),
            (
                with_meta("file", "a|b"),
                "metadata \"file\" must be one line",
            ),
        ];
        for (new, message) in cases {
            let mut plan = Plan::parse(text);
            let err = plan.add(new).expect_err("invalid addition");
            assert!(err.to_string().starts_with(message), "{err}");
            assert_eq!(plan.to_string(), text);
        }
    }
}

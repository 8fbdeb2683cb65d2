//! The plan tools: `read_todo`, `update_todo`, `add_todo` and `sync_issues`,
//! all going through one project's [`TodoStore`].
//!
//! IDs are matched exactly, and only the Reviewer may mark an item
//! `completed`: everyone else reports their work and the Reviewer checks it
//! off after verifying. Every failure is a sentence for the model.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Tool, ToolContext, ToolOutput, parse_args};
use crate::events::{Event, EventBus};
use crate::provider::ToolSpec;
use crate::todo::{Group, Meta, NewItem, Plan, Status, TodoError, TodoStore};

/// The three plan tools, sharing `store`.
/// With `events`, every change is reported as `PlanUpdated`.
pub fn tools(store: Arc<TodoStore>, events: Option<Arc<EventBus>>) -> Vec<Arc<dyn Tool>> {
    vec![
        Arc::new(ReadTodo::new(store.clone())),
        Arc::new(UpdateTodo {
            store: store.clone(),
            events: events.clone(),
        }),
        Arc::new(AddTodo {
            store: store.clone(),
            events,
        }),
        Arc::new(SyncIssuesTool { store }),
    ]
}

fn report_plan(events: &Option<Arc<EventBus>>, plan: &Plan) {
    if let Some(events) = events {
        events.emit(Event::PlanUpdated {
            counts: (&plan.progress().counts).into(),
        });
    }
}

/// `read_todo`: the plan with statuses, IDs, metadata and a progress line.
pub struct ReadTodo {
    store: Arc<TodoStore>,
}

impl ReadTodo {
    pub fn new(store: Arc<TodoStore>) -> ReadTodo {
        ReadTodo { store }
    }
}

#[async_trait]
impl Tool for ReadTodo {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "read_todo".into(),
            description: "Read the plan (.opencode/todo.md): every item with its status ([ ] pending, [/] in progress, [x] done, [-] failed), ID and metadata, and the progress so far.".into(),
            parameters: json!({
                "type": "object",
                "properties": {},
                "additionalProperties": false
            }),
        }
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn call(&self, _args: Value, ctx: &ToolContext) -> ToolOutput {
        match self.store.read().await {
            Ok(plan) => ToolOutput::ok(render(&plan)),
            Err(err) => ToolOutput::error(message(&err, &ctx.root)),
        }
    }
}

/// `update_todo`: set one item's status by its exact ID.
pub struct UpdateTodo {
    store: Arc<TodoStore>,
    events: Option<Arc<EventBus>>,
}

impl UpdateTodo {
    pub fn new(store: Arc<TodoStore>) -> UpdateTodo {
        UpdateTodo {
            store,
            events: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateArgs {
    id: String,
    status: String,
}

#[async_trait]
impl Tool for UpdateTodo {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "update_todo".into(),
            description: "Set the status of one plan item, matched by its exact ID. Use progress when you start an item and failed when it cannot be done; only the Reviewer sets completed, after verifying the work.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "id": {"type": "string", "description": "The item's exact ID, e.g. T1.2"},
                    "status": {"type": "string", "enum": ["pending", "progress", "completed", "failed"]}
                },
                "required": ["id", "status"],
                "additionalProperties": false
            }),
        }
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> ToolOutput {
        let args: UpdateArgs = match parse_args("update_todo", args) {
            Ok(args) => args,
            Err(output) => return output,
        };
        let id = args.id.trim();
        let Some(status) = Status::from_tool_name(args.status.trim()) else {
            return ToolOutput::error(format!(
                "status {:?} is not one of pending, progress, completed, failed",
                args.status
            ));
        };
        if status == Status::Done && !ctx.role.marks_items_done() {
            return ToolOutput::error(format!(
                "only the Reviewer marks items completed, after verifying the work; set {id} to progress while you work on it (or failed if it cannot be done) and report what you did so the Reviewer can verify it"
            ));
        }
        match self.store.update(id, status, &ctx.agent).await {
            Ok(updated) => {
                if updated.change.changed() {
                    report_plan(&self.events, &updated.plan);
                }
                let change = &updated.change;
                let progress = updated.plan.progress();
                let head = if change.changed() {
                    format!(
                        "{} (line {}): {} → {}",
                        change.id, change.line, change.from, change.to
                    )
                } else {
                    format!("{} is already {}; nothing changed", change.id, change.to)
                };
                ToolOutput::ok(format!("{head}. Plan: {progress}"))
            }
            Err(err) => ToolOutput::error(message(&err, &ctx.root)),
        }
    }
}

/// `add_todo`: add a pending item, under a parent item or group in order.
pub struct AddTodo {
    store: Arc<TodoStore>,
    events: Option<Arc<EventBus>>,
}

impl AddTodo {
    pub fn new(store: Arc<TodoStore>) -> AddTodo {
        AddTodo {
            store,
            events: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddArgs {
    parent: Option<String>,
    id: Option<String>,
    text: String,
    meta: Option<Map<String, Value>>,
}

#[async_trait]
impl Tool for AddTodo {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "add_todo".into(),
            description: "Add a pending item to the plan. With parent (an item or group ID) it goes after the parent's existing sub-items, in order; without, after the last item. Leave out id to get the next free one.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "parent": {"type": "string", "description": "ID of the item or group to add under"},
                    "id": {"type": "string", "description": "ID for the new item, e.g. T1.3; generated when left out"},
                    "text": {"type": "string", "description": "What the item is, one line"},
                    "meta": {
                        "type": "object",
                        "description": "Metadata, e.g. {\"agent\": \"Worker\", \"depends\": \"T1.1\", \"file\": \"src/a.rs\", \"size\": \"S\"}",
                        "additionalProperties": {"type": "string"}
                    }
                },
                "required": ["text"],
                "additionalProperties": false
            }),
        }
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> ToolOutput {
        let args: AddArgs = match parse_args("add_todo", args) {
            Ok(args) => args,
            Err(output) => return output,
        };
        let meta = match meta_from_json(args.meta.unwrap_or_default()) {
            Ok(meta) => meta,
            Err(message) => return ToolOutput::error(message),
        };
        let new = NewItem {
            parent: args.parent.filter(|parent| !parent.trim().is_empty()),
            id: args.id.filter(|id| !id.trim().is_empty()),
            text: args.text,
            meta,
        };
        match self.store.add(new).await {
            Ok(added) => {
                report_plan(&self.events, &added.plan);
                let item = &added.item;
                let id = item.id.as_deref().unwrap_or("the item");
                let place = match &item.parent_id {
                    Some(parent) => format!(" under {parent}"),
                    None => item
                        .group
                        .and_then(|g| added.plan.groups()[g].id.as_deref())
                        .map(|group| format!(" in group {group}"))
                        .unwrap_or_default(),
                };
                ToolOutput::ok(format!(
                    "added {id}{place} at line {}: [ ] {id}: {}{}. Plan: {}",
                    item.line,
                    item.text,
                    item.meta,
                    added.plan.progress()
                ))
            }
            Err(err) => ToolOutput::error(message(&err, &ctx.root)),
        }
    }
}

/// `sync_issues`: the Reviewer's record of mismatches between Workers'
/// results (`.opencode/sync-issues.md`); the gate passes only when none is
/// open.
pub struct SyncIssuesTool {
    store: Arc<TodoStore>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncArgs {
    action: String,
    text: Option<String>,
    line: Option<usize>,
}

#[async_trait]
impl Tool for SyncIssuesTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "sync_issues".into(),
            description: "The open sync issues: mismatches between parallel Workers' results (an interface one changed and another uses, duplicated work). list shows them with their lines; add records one (text); resolve checks one off by its line once it is fixed. The mission cannot complete while one is open. Only the Reviewer adds and resolves.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "action": {"type": "string", "enum": ["list", "add", "resolve"]},
                    "text": {"type": "string", "description": "add: the mismatch, one line"},
                    "line": {"type": "integer", "minimum": 1, "description": "resolve: the issue's line, from list"}
                },
                "required": ["action"],
                "additionalProperties": false
            }),
        }
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> ToolOutput {
        let args: SyncArgs = match parse_args("sync_issues", args) {
            Ok(args) => args,
            Err(output) => return output,
        };
        let action = args.action.trim();
        if action != "list" && !ctx.role.marks_items_done() {
            return ToolOutput::error(
                "only the Reviewer records and resolves sync issues; report the mismatch in your result instead",
            );
        }
        let result = match (action, args.text, args.line) {
            ("list", _, _) => self
                .store
                .sync_issues()
                .await
                .map(Option::unwrap_or_default),
            ("add", Some(text), _) if !text.trim().is_empty() => {
                self.store.add_sync_issue(&text).await
            }
            ("add", _, _) => return ToolOutput::error("add needs text: the mismatch, one line"),
            ("resolve", _, Some(line)) => self.store.resolve_sync_issue(line).await,
            ("resolve", _, None) => {
                return ToolOutput::error("resolve needs line: the issue's line number from list");
            }
            (other, _, _) => {
                return ToolOutput::error(format!(
                    "action {other:?} is not one of list, add, resolve"
                ));
            }
        };
        match result {
            Ok(issues) if issues.open.is_empty() => ToolOutput::ok(format!(
                "No open sync issues ({} resolved).",
                issues.resolved
            )),
            Ok(issues) => {
                let mut out = format!("{} open sync issue(s):\n", issues.open.len());
                for issue in &issues.open {
                    out.push_str(&format!("- line {}: {}\n", issue.line, issue.text));
                }
                ToolOutput::ok(out)
            }
            Err(err) => ToolOutput::error(message(&err, &ctx.root)),
        }
    }
}

/// `meta` values as strings: strings as they are, numbers and booleans
/// written out, arrays of those joined with ", " (for `depends`).
fn meta_from_json(object: Map<String, Value>) -> Result<Meta, String> {
    let mut meta = Meta::new();
    for (key, value) in object {
        let text = match &value {
            Value::Array(values) => values
                .iter()
                .map(scalar)
                .collect::<Option<Vec<_>>>()
                .map(|values| values.join(", ")),
            other => scalar(other),
        };
        match text {
            Some(text) => meta.push(key, text),
            None => {
                return Err(format!(
                    "meta {key:?} must be a string (got {value}); for example {{\"{key}\": \"...\"}}"
                ));
            }
        }
    }
    Ok(meta)
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// The plan as compact text: a progress line, then each heading and item
/// (items indented by nesting depth) with their own metadata. Prose, tables
/// and code are left out; `read` shows the whole file.
fn render(plan: &Plan) -> String {
    let progress = plan.progress();
    let mut out = if progress.counts.total() == 0 {
        "Plan: no items yet.\n".to_string()
    } else if progress.is_complete() {
        format!("Plan: {progress}; every item is done.\n")
    } else {
        format!("Plan: {progress}.\n")
    };
    let mut groups = plan.groups().iter().peekable();
    for item in plan.items() {
        while let Some(group) = groups.next_if(|g| g.line < item.line) {
            push_heading(&mut out, group);
        }
        out.push_str(&"  ".repeat(item.depth));
        out.push('[');
        out.push(item.status.marker());
        out.push_str("] ");
        if let Some(id) = &item.id {
            out.push_str(id);
            out.push_str(": ");
        }
        out.push_str(&item.text);
        out.push_str(&item.meta.to_string());
        out.push('\n');
    }
    for group in groups {
        push_heading(&mut out, group);
    }
    out
}

fn push_heading(out: &mut String, group: &Group) {
    out.push_str(&"#".repeat(group.level));
    out.push(' ');
    if let Some(id) = &group.id {
        out.push_str(id);
        out.push_str(": ");
    }
    out.push_str(&group.title);
    out.push_str(&group.meta.to_string());
    out.push('\n');
}

/// A store error as a sentence for the model, with paths shown relative to
/// the project root.
fn message(err: &TodoError, root: &Path) -> String {
    match err {
        TodoError::NoPlan { path } => format!(
            "there is no plan yet ({} does not exist); the Planner writes it, or start one with add_todo",
            shown(path, root)
        ),
        TodoError::NotText { path } => format!(
            "{} is not UTF-8 text; fix or rewrite the file",
            shown(path, root)
        ),
        other => other.to_string(),
    }
}

fn shown(path: &Path, root: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_shows_headings_items_and_progress() {
        let plan = Plan::parse(concat!(
            "# Mission: m\n",
            "Prose that is left out.\n",
            "## T1: Token service | agent:Worker\n",
            "- [x] T1.1: done | size:S\n",
            "  - [/] T1.1.1: working\n",
            "- [-] untitled failure\n",
            "## Notes\n",
        ));
        assert_eq!(
            render(&plan),
            concat!(
                "Plan: 1/3 done, 1 in progress, 1 failed.\n",
                "# Mission: m\n",
                "## T1: Token service | agent:Worker\n",
                "[x] T1.1: done | size:S\n",
                "  [/] T1.1.1: working\n",
                "[-] untitled failure\n",
                "## Notes\n",
            )
        );
        assert_eq!(
            render(&Plan::parse("# Mission: m\n")),
            "Plan: no items yet.\n# Mission: m\n"
        );
        assert_eq!(
            render(&Plan::parse("- [x] T1: a\n")),
            "Plan: 1/1 done; every item is done.\n[x] T1: a\n"
        );
    }

    #[test]
    fn meta_values_become_strings() {
        let object = json!({"agent": "Worker", "depends": ["T1.1", "T1.2"], "parallel-group": 2, "verified": true});
        let Value::Object(object) = object else {
            panic!("an object literal");
        };
        let meta = meta_from_json(object).expect("convertible");
        assert_eq!(
            meta.to_string(),
            " | agent:Worker | depends:T1.1, T1.2 | parallel-group:2 | verified:true"
        );
        let Value::Object(bad) = json!({"file": {"path": "x"}}) else {
            panic!("an object literal");
        };
        let err = meta_from_json(bad).expect_err("nested object");
        assert!(err.starts_with("meta \"file\" must be a string"), "{err}");
    }
}

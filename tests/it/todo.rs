//! The plan on a real project directory: the single-writer store (atomic
//! writes, human edits kept, no lost update under concurrency) and the
//! `read_todo` / `update_todo` / `add_todo` tools called through
//! `ToolRouter` as a session would.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use orch::config::{PermissionConfig, ToolsConfig};
use orch::events::EventBus;
use orch::provider::ToolCall;
use orch::todo::{NewItem, Plan, Status, TodoError, TodoStore};
use orch::tools::permissions::Permissions;
use orch::tools::{ToolContext, ToolOutput, ToolRegistry, ToolRouter};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const PLAN: &str = concat!(
    "# Mission: Add JWT authentication\n",
    "\n",
    "| Action | File |\n",
    "| --- | --- |\n",
    "| CREATE | src/auth/token.rs |\n",
    "\n",
    "## T1: Token service | agent:Worker | parallel-group:1\n",
    "- [ ] T1.1: Create src/auth/token.rs | file:src/auth/token.rs | size:S\n",
    "  - [ ] T1.1.1: Claims struct\n",
    "- [ ] T1.10: Unit tests for token expiry | depends:T1.1\n",
    "- [ ] T1.2: Add jsonwebtoken dependency\n",
);

/// A temp project with a store for its `.opencode/todo.md`.
struct Project {
    _dir: tempfile::TempDir,
    root: PathBuf,
    store: Arc<TodoStore>,
}

impl Project {
    fn new() -> Project {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical temp dir");
        let store = Arc::new(TodoStore::new(&root));
        Project {
            _dir: dir,
            root,
            store,
        }
    }

    async fn with_plan(text: &str) -> Project {
        let project = Project::new();
        project.store.write_plan(text).await.expect("write plan");
        project
    }

    fn plan_text(&self) -> String {
        std::fs::read_to_string(self.store.path()).expect("read todo.md")
    }

    fn opencode_entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.root.join(".opencode"))
            .expect("list .opencode")
            .map(|entry| {
                entry
                    .expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    fn router(&self) -> ToolRouter {
        let mut registry = ToolRegistry::new();
        for tool in orch::tools::todo::tools(self.store.clone(), None) {
            registry.insert(tool);
        }
        ToolRouter::new(
            registry,
            Permissions::new(PermissionConfig::default(), false),
            Arc::new(EventBus::new()),
            Arc::new(orch::hooks::NoHooks),
        )
    }

    fn ctx(&self, agent: &str) -> ToolContext {
        ToolContext {
            root: Arc::new(self.root.clone()),
            session: format!("{agent}-session"),
            agent: agent.into(),
            role: orch::agents::AgentRegistry::builtin()
                .find(agent)
                .map_or(orch::agents::Role::Custom, |a| a.role),
            call_id: "call-1".into(),
            cancel: CancellationToken::new(),
            limits: Arc::new(ToolsConfig::default()),
            sandbox: Some(orch::sandbox::Profile::Write),
            may_write: true,
            seen: Default::default(),
        }
    }

    async fn call(&self, agent: &str, tool: &str, args: Value) -> ToolOutput {
        let call = ToolCall {
            id: "call-1".into(),
            name: tool.into(),
            arguments: args.to_string(),
        };
        self.router().call(&call, &self.ctx(agent)).await
    }
}

fn status_of(text: &str, id: &str) -> Status {
    Plan::parse(text).item(id).expect("item exists").status
}

fn file_mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn writes_are_atomic_and_leave_no_temp_files() {
    let project = Project::with_plan(PLAN).await;
    assert_eq!(project.plan_text(), PLAN);
    std::fs::set_permissions(project.store.path(), std::fs::Permissions::from_mode(0o640))
        .expect("chmod");

    project
        .store
        .update("T1.1", Status::InProgress, "Worker")
        .await
        .expect("update");
    project
        .store
        .add(NewItem {
            parent: Some("T1.1".into()),
            text: "Signing keys".into(),
            ..NewItem::default()
        })
        .await
        .expect("add");
    let failed = project
        .store
        .update("T9", Status::Done, "Reviewer")
        .await
        .expect_err("unknown ID");
    assert!(matches!(failed, TodoError::UnknownId { .. }));

    assert_eq!(project.opencode_entries(), vec!["todo.md"]);
    assert_eq!(file_mode(project.store.path()), 0o640);
    let text = project.plan_text();
    assert_eq!(status_of(&text, "T1.1"), Status::InProgress);
    assert!(text.contains("  - [ ] T1.1.1: Claims struct\n  - [ ] T1.1.2: Signing keys\n"));
}

#[tokio::test]
async fn an_update_changes_only_its_own_line() {
    let project = Project::with_plan(&PLAN.replace('\n', "\r\n")).await;
    project
        .store
        .update("T1.1", Status::Done, "Reviewer")
        .await
        .expect("update");
    let expected = PLAN
        .replace("- [ ] T1.1: Create", "- [x] T1.1: Create")
        .replace('\n', "\r\n");
    assert_eq!(project.plan_text(), expected);
}

#[tokio::test]
async fn a_human_edit_between_updates_is_kept() {
    let project = Project::with_plan(PLAN).await;
    project
        .store
        .update("T1.1", Status::InProgress, "Worker")
        .await
        .expect("first update");

    // A person edits the file in their editor while the mission runs.
    let edited = project.plan_text().replace(
        "Add jsonwebtoken dependency",
        "Add jsonwebtoken 9 dependency",
    ) + "\n## Notes\nWritten by a person.\n";
    std::fs::write(project.store.path(), &edited).expect("human edit");

    let updated = project
        .store
        .update("T1.2", Status::InProgress, "Worker")
        .await
        .expect("second update");
    assert_eq!(updated.change.line, 11);

    let text = project.plan_text();
    assert_eq!(
        text,
        edited.replace(
            "- [ ] T1.2: Add jsonwebtoken 9",
            "- [/] T1.2: Add jsonwebtoken 9"
        )
    );
    assert_eq!(status_of(&text, "T1.1"), Status::InProgress);
    assert!(text.ends_with("## Notes\nWritten by a person.\n"));
}

#[tokio::test]
async fn fifty_concurrent_updates_and_adds_all_land() {
    let mut plan = String::from("# Mission: concurrency\n## T1: items\n");
    for n in 1..=25 {
        plan.push_str(&format!("- [ ] T1.{n}: item {n}\n"));
    }
    plan.push_str("## P1: sub-tasks go here\n- [ ] P: parent\n");
    let project = Project::with_plan(&plan).await;

    let mut tasks = JoinSet::new();
    for n in 1..=25 {
        let store = project.store.clone();
        tasks.spawn(async move {
            store
                .update(&format!("T1.{n}"), Status::Done, "Reviewer")
                .await
                .map(|updated| updated.change.id)
        });
        let store = project.store.clone();
        tasks.spawn(async move {
            store
                .add(NewItem {
                    parent: Some("P".into()),
                    text: format!("sub-task {n}"),
                    ..NewItem::default()
                })
                .await
                .map(|added| added.item.id.unwrap_or_default())
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        results.push(joined.expect("task ran").expect("operation succeeded"));
    }
    assert_eq!(results.len(), 50);

    let final_plan = Plan::parse(&project.plan_text());
    for n in 1..=25 {
        let item = final_plan.item(&format!("T1.{n}")).expect("item kept");
        assert_eq!(item.status, Status::Done, "T1.{n}");
    }
    let mut added: Vec<(&str, &str)> = final_plan
        .items()
        .iter()
        .filter(|item| item.parent_id.as_deref() == Some("P"))
        .map(|item| (item.id.as_deref().unwrap_or("-"), item.text.as_str()))
        .collect();
    assert_eq!(added.len(), 25, "every add landed");
    // IDs were generated in the order the adds were applied, and each one
    // sits after the previous: the file order is the ID order.
    let ids: Vec<String> = (1..=25).map(|n| format!("P.{n}")).collect();
    assert_eq!(
        added
            .iter()
            .map(|(id, _)| id.to_string())
            .collect::<Vec<_>>(),
        ids
    );
    added.sort_by_key(|(_, text)| text.to_string());
    added.dedup_by_key(|(_, text)| text.to_string());
    assert_eq!(added.len(), 25, "each sub-task added once");
    assert_eq!(project.opencode_entries(), vec!["todo.md"]);
}

#[tokio::test]
async fn sync_issues_are_read_from_the_project() {
    let project = Project::with_plan(PLAN).await;
    assert_eq!(project.store.sync_issues().await.expect("read"), None);
    std::fs::write(
        project.store.sync_path(),
        "# Sync Issues\n\n- [x] SYNC-1: fixed\n- [ ] SYNC-2: token type differs\n",
    )
    .expect("write sync issues");
    let issues = project
        .store
        .sync_issues()
        .await
        .expect("read")
        .expect("file exists");
    assert_eq!(issues.resolved, 1);
    assert_eq!(issues.open.len(), 1);
    assert_eq!(issues.open[0].line, 4);
}

#[tokio::test]
async fn the_reviewer_records_and_resolves_sync_issues_through_the_tool() {
    let project = Project::with_plan(PLAN).await;
    let refused = project
        .call(
            "Worker",
            "sync_issues",
            json!({"action": "add", "text": "T1 and T2 disagree"}),
        )
        .await;
    assert!(refused.is_error);
    assert!(
        refused.content.starts_with("only the Reviewer"),
        "{}",
        refused.content
    );
    assert_eq!(project.store.sync_issues().await.unwrap(), None);

    let added = project
        .call(
            "Reviewer",
            "sync_issues",
            json!({"action": "add", "text": "src/a.rs returns i32, src/b.rs expects i64"}),
        )
        .await;
    assert!(!added.is_error, "{}", added.content);
    assert_eq!(
        added.content,
        "1 open sync issue(s):\n- line 3: src/a.rs returns i32, src/b.rs expects i64\n"
    );
    let listed = project
        .call("Worker", "sync_issues", json!({"action": "list"}))
        .await;
    assert_eq!(listed.content, added.content);
    let open = project.store.sync_issues().await.unwrap().unwrap();
    assert_eq!(open.open.len(), 1);

    let wrong = project
        .call(
            "Reviewer",
            "sync_issues",
            json!({"action": "resolve", "line": 1}),
        )
        .await;
    assert!(wrong.is_error);
    assert!(wrong.content.contains("open: line 3:"), "{}", wrong.content);
    let resolved = project
        .call(
            "Reviewer",
            "sync_issues",
            json!({"action": "resolve", "line": 3}),
        )
        .await;
    assert_eq!(resolved.content, "No open sync issues (1 resolved).");
    assert!(
        project
            .store
            .sync_issues()
            .await
            .unwrap()
            .unwrap()
            .is_clean()
    );
}

#[tokio::test]
async fn only_the_reviewer_marks_items_completed() {
    let project = Project::with_plan(PLAN).await;

    let refused = project
        .call(
            "Worker",
            "update_todo",
            json!({"id": "T1.1", "status": "completed"}),
        )
        .await;
    assert!(refused.is_error);
    assert!(
        refused
            .content
            .starts_with("only the Reviewer marks items completed, after verifying the work"),
        "{}",
        refused.content
    );
    assert_eq!(project.plan_text(), PLAN);

    let started = project
        .call(
            "Worker",
            "update_todo",
            json!({"id": "T1.1", "status": "progress"}),
        )
        .await;
    assert!(!started.is_error, "{}", started.content);
    assert_eq!(
        started.content,
        "T1.1 (line 8): pending → in progress. Plan: 0/4 done, 1 in progress"
    );

    for reviewer in ["Reviewer", "reviewer"] {
        let done = project
            .call(
                reviewer,
                "update_todo",
                json!({"id": "T1.1", "status": "completed"}),
            )
            .await;
        assert!(!done.is_error, "{}", done.content);
    }
    let text = project.plan_text();
    assert_eq!(status_of(&text, "T1.1"), Status::Done);
    // Exact IDs: neither the child T1.1.1 nor T1.10 moved.
    assert_eq!(status_of(&text, "T1.1.1"), Status::Pending);
    assert_eq!(status_of(&text, "T1.10"), Status::Pending);

    let again = project
        .call(
            "Reviewer",
            "update_todo",
            json!({"id": "T1.1", "status": "completed"}),
        )
        .await;
    assert_eq!(
        again.content,
        "T1.1 is already done; nothing changed. Plan: 1/4 done"
    );
}

#[tokio::test]
async fn update_todo_reports_bad_ids_and_statuses() {
    let project = Project::with_plan(&format!("{PLAN}- [ ] T1.2: duplicate\n")).await;
    let cases = [
        (
            json!({"id": "T1.3", "status": "progress"}),
            "no item has ID \"T1.3\"; known IDs include T1.1, T1.1.1, T1.10, T1.2",
        ),
        (
            json!({"id": "T1.2", "status": "progress"}),
            "ID \"T1.2\" is used by several items (lines 11, 12)",
        ),
        (
            json!({"id": "T1", "status": "progress"}),
            "\"T1\" is a group heading (line 7), not an item",
        ),
        (
            json!({"id": "T1.1", "status": "done"}),
            "status \"done\" is not one of pending, progress, completed, failed",
        ),
        (
            json!({"id": "T1.1"}),
            "invalid arguments for update_todo: missing field `status`",
        ),
    ];
    for (args, message) in cases {
        let output = project.call("Worker", "update_todo", args.clone()).await;
        assert!(output.is_error, "{args}");
        assert!(
            output.content.starts_with(message),
            "{args}: {}",
            output.content
        );
    }
}

#[tokio::test]
async fn read_todo_shows_the_plan_and_its_progress() {
    let project = Project::new();
    let missing = project.call("Worker", "read_todo", json!({})).await;
    assert!(missing.is_error);
    assert_eq!(
        missing.content,
        "there is no plan yet (.opencode/todo.md does not exist); the Planner writes it, or start one with add_todo"
    );

    project.store.write_plan(PLAN).await.expect("write plan");
    project
        .store
        .update("T1.1", Status::InProgress, "Worker")
        .await
        .expect("update");
    let call = ToolCall {
        id: "call-1".into(),
        name: "read_todo".into(),
        arguments: String::new(),
    };
    let output = project
        .router()
        .call(&call, &project.ctx("Commander"))
        .await;
    assert!(!output.is_error, "{}", output.content);
    assert_eq!(
        output.content,
        concat!(
            "Plan: 0/4 done, 1 in progress.\n",
            "# Mission: Add JWT authentication\n",
            "## T1: Token service | agent:Worker | parallel-group:1\n",
            "[/] T1.1: Create src/auth/token.rs | file:src/auth/token.rs | size:S\n",
            "  [ ] T1.1.1: Claims struct\n",
            "[ ] T1.10: Unit tests for token expiry | depends:T1.1\n",
            "[ ] T1.2: Add jsonwebtoken dependency\n",
        )
    );
    assert!(project.router().is_read_only(&call));
}

#[tokio::test]
async fn add_todo_appends_sub_items_in_order() {
    let project = Project::with_plan(PLAN).await;
    let first = project
        .call(
            "Commander",
            "add_todo",
            json!({"parent": "T1.1", "text": "Signing keys", "meta": {"size": "S", "depends": ["T1.1.1"]}}),
        )
        .await;
    assert!(!first.is_error, "{}", first.content);
    assert_eq!(
        first.content,
        "added T1.1.2 under T1.1 at line 10: [ ] T1.1.2: Signing keys | size:S | depends:T1.1.1. Plan: 0/5 done"
    );
    let second = project
        .call(
            "Worker",
            "add_todo",
            json!({"parent": "T1.1", "id": "S1", "text": "Key rotation"}),
        )
        .await;
    assert!(!second.is_error, "{}", second.content);
    let grouped = project
        .call(
            "Worker",
            "add_todo",
            json!({"parent": "T1", "text": "Docs"}),
        )
        .await;
    assert!(
        grouped
            .content
            .starts_with("added T1.11 in group T1 at line 14"),
        "{}",
        grouped.content
    );

    let text = project.plan_text();
    assert!(
        text.contains(concat!(
            "- [ ] T1.1: Create src/auth/token.rs | file:src/auth/token.rs | size:S\n",
            "  - [ ] T1.1.1: Claims struct\n",
            "  - [ ] T1.1.2: Signing keys | size:S | depends:T1.1.1\n",
            "  - [ ] S1: Key rotation\n",
            "- [ ] T1.10: Unit tests",
        )),
        "{text}"
    );
    assert!(text.ends_with("- [ ] T1.2: Add jsonwebtoken dependency\n- [ ] T1.11: Docs\n"));
    let plan = Plan::parse(&text);
    let docs = plan.item("T1.11").expect("added");
    assert_eq!(docs.effective.agent(), Some("Worker"));
    // The gate sees added sub-items: nothing is complete while they are open.
    assert_eq!(plan.progress().counts.total(), 7);

    let taken = project
        .call("Worker", "add_todo", json!({"id": "T1.1", "text": "again"}))
        .await;
    assert!(taken.is_error);
    assert_eq!(
        taken.content,
        "ID \"T1.1\" is already used (line 8); choose another ID or leave it out"
    );
    let orphan = project
        .call(
            "Worker",
            "add_todo",
            json!({"parent": "T7", "text": "orphan"}),
        )
        .await;
    assert!(orphan.is_error);
    assert!(
        orphan.content.starts_with("no item has ID \"T7\""),
        "{}",
        orphan.content
    );
}

#[tokio::test]
async fn parallel_workers_through_the_tools_lose_nothing() {
    let mut plan = String::from("# Mission: m\n");
    for n in 1..=20 {
        plan.push_str(&format!("- [ ] T{n}: item {n}\n"));
    }
    let project = Arc::new(Project::with_plan(&plan).await);
    let mut tasks = JoinSet::new();
    for n in 1..=20 {
        let project = project.clone();
        tasks.spawn(async move {
            let agent = if n % 2 == 0 { "Reviewer" } else { "Worker" };
            let status = if n % 2 == 0 { "completed" } else { "progress" };
            project
                .call(
                    agent,
                    "update_todo",
                    json!({"id": format!("T{n}"), "status": status}),
                )
                .await
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let output = joined.expect("task ran");
        assert!(!output.is_error, "{}", output.content);
    }
    let progress = Plan::parse(&project.plan_text()).progress();
    assert_eq!(progress.counts.done, 10);
    assert_eq!(progress.counts.in_progress, 10);
    assert!(!progress.is_complete());
}

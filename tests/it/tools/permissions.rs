//! Permission rules and approvals, through `ToolRouter` as a session sees
//! them.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use orch::config::{Action, PermissionConfig};
use orch::events::{ApprovedBy, Event, EventBus};
use orch::provider::ToolSpec;
use orch::tools::permissions::{ApprovalRequest, Permissions, Prompter};
use orch::tools::{Tool, ToolContext, ToolOutput, ToolRegistry};
use serde_json::{Value, json};

use super::{Fixture, assert_error, assert_ok, call, drain};

fn rules(tools: &[(&str, Action)], bash: &[(&str, Action)]) -> PermissionConfig {
    PermissionConfig {
        tools: tools
            .iter()
            .map(|(name, action)| (name.to_string(), *action))
            .collect(),
        bash: bash
            .iter()
            .map(|(pattern, action)| (pattern.to_string(), *action))
            .collect(),
    }
}

/// A prompter with a fixed answer that records what it was asked and how
/// many prompts were ever open at once.
struct Scripted {
    answer: io::Result<bool>,
    delay: Duration,
    asked: Mutex<Vec<ApprovalRequest>>,
    open: AtomicUsize,
    most_open: AtomicUsize,
}

impl Scripted {
    fn new(answer: io::Result<bool>) -> Arc<Scripted> {
        Scripted::slow(answer, Duration::from_millis(20))
    }

    fn slow(answer: io::Result<bool>, delay: Duration) -> Arc<Scripted> {
        Arc::new(Scripted {
            answer,
            delay,
            asked: Mutex::new(Vec::new()),
            open: AtomicUsize::new(0),
            most_open: AtomicUsize::new(0),
        })
    }

    fn asked(&self) -> Vec<ApprovalRequest> {
        self.asked.lock().unwrap().clone()
    }
}

impl Prompter for Scripted {
    fn confirm(&self, request: &ApprovalRequest) -> io::Result<bool> {
        let open = self.open.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_open.fetch_max(open, Ordering::SeqCst);
        std::thread::sleep(self.delay);
        self.asked.lock().unwrap().push(request.clone());
        self.open.fetch_sub(1, Ordering::SeqCst);
        match &self.answer {
            Ok(answer) => Ok(*answer),
            Err(err) => Err(io::Error::new(err.kind(), err.to_string())),
        }
    }
}

fn approvals(events: &[Event]) -> Vec<&Event> {
    events
        .iter()
        .filter(|event| {
            matches!(
                event,
                Event::ApprovalRequested { .. } | Event::ApprovalResolved { .. }
            )
        })
        .collect()
}

#[tokio::test]
async fn a_deny_rule_blocks_the_tool() {
    let fx = Fixture::new();
    let router = fx.router(rules(&[("write", Action::Deny)], &[]));
    let output = call(
        &router,
        &fx.ctx(),
        "write",
        json!({ "path": "a.txt", "content": "x" }),
    )
    .await;
    assert_error(&output, "\"write\" is not allowed here");
    assert!(!fx.path("a.txt").exists());
    // Other tools are unaffected.
    assert_ok(&call(&router, &fx.ctx(), "list", json!({})).await);
}

#[tokio::test]
async fn ask_without_a_terminal_denies_at_once_and_says_why() {
    let fx = Fixture::new();
    let router = fx.router(rules(&[("bash", Action::Ask)], &[]));
    let mut events = router.events.subscribe();
    let output = call(
        &router,
        &fx.ctx(),
        "bash",
        json!({ "command": "touch ran" }),
    )
    .await;
    assert_error(
        &output,
        "\"bash\" needs approval (rule: ask) but orch is running without a terminal (--json, no TTY or CI), so it was denied; try another approach",
    );
    assert!(!fx.path("ran").exists(), "the command must not run");
    let events = drain(&mut events);
    assert_eq!(
        approvals(&events),
        [
            &Event::ApprovalRequested {
                session: "s1".into(),
                call_id: "call-1".into(),
                tool: "bash".into(),
                detail: "touch ran".into(),
            },
            &Event::ApprovalResolved {
                session: "s1".into(),
                call_id: "call-1".into(),
                approved: false,
                by: ApprovedBy::Headless,
            },
        ]
    );
}

#[tokio::test]
async fn ask_with_a_yes_runs_the_call() {
    let fx = Fixture::new();
    let prompter = Scripted::new(Ok(true));
    let permissions =
        Permissions::with_prompter(rules(&[("bash", Action::Ask)], &[]), true, prompter.clone());
    let router = fx.router_with(ToolRegistry::builtins(), permissions);
    let mut events = router.events.subscribe();
    let output = call(
        &router,
        &fx.ctx(),
        "bash",
        json!({ "command": "touch ran" }),
    )
    .await;
    assert_ok(&output);
    assert!(fx.path("ran").exists());
    assert_eq!(
        prompter.asked(),
        [ApprovalRequest {
            session: "s1".into(),
            tool: "bash".into(),
            detail: "touch ran".into(),
        }]
    );
    let events = drain(&mut events);
    assert!(matches!(
        approvals(&events).as_slice(),
        [
            Event::ApprovalRequested { .. },
            Event::ApprovalResolved {
                approved: true,
                by: ApprovedBy::User,
                ..
            }
        ]
    ));
}

#[tokio::test]
async fn ask_with_a_no_denies_the_call() {
    let fx = Fixture::new();
    let prompter = Scripted::new(Ok(false));
    let permissions =
        Permissions::with_prompter(rules(&[("write", Action::Ask)], &[]), true, prompter);
    let router = fx.router_with(ToolRegistry::builtins(), permissions);
    let mut events = router.events.subscribe();
    let output = call(
        &router,
        &fx.ctx(),
        "write",
        json!({ "path": "a.txt", "content": "x" }),
    )
    .await;
    assert_error(&output, "the user denied this \"write\" call");
    assert!(!fx.path("a.txt").exists());
    let events = drain(&mut events);
    assert!(matches!(
        approvals(&events).as_slice(),
        [
            Event::ApprovalRequested { .. },
            Event::ApprovalResolved {
                approved: false,
                by: ApprovedBy::User,
                ..
            }
        ]
    ));
}

#[tokio::test]
async fn a_terminal_that_cannot_be_used_denies() {
    let fx = Fixture::new();
    let prompter = Scripted::new(Err(io::Error::new(io::ErrorKind::NotFound, "no /dev/tty")));
    let permissions =
        Permissions::with_prompter(rules(&[("write", Action::Ask)], &[]), true, prompter);
    let router = fx.router_with(ToolRegistry::builtins(), permissions);
    let output = call(
        &router,
        &fx.ctx(),
        "write",
        json!({ "path": "a.txt", "content": "x" }),
    )
    .await;
    assert_error(&output, "the terminal could not be used (no /dev/tty)");
}

#[tokio::test]
async fn concurrent_asks_prompt_one_at_a_time() {
    let fx = Fixture::new();
    let prompter = Scripted::new(Ok(true));
    let permissions = Permissions::with_prompter(
        rules(&[("write", Action::Ask)], &[]),
        true,
        prompter.clone(),
    );
    let router = fx.router_with(ToolRegistry::builtins(), permissions);
    let calls = (0..4).map(|n| {
        let mut ctx = fx.ctx();
        ctx.call_id = format!("call-{n}");
        let router = &router;
        async move {
            call(
                router,
                &ctx,
                "write",
                json!({ "path": format!("f{n}.txt"), "content": "x" }),
            )
            .await
        }
    });
    for output in futures::future::join_all(calls).await {
        assert_ok(&output);
    }
    assert_eq!(prompter.asked().len(), 4);
    assert_eq!(
        prompter.most_open.load(Ordering::SeqCst),
        1,
        "prompts overlapped"
    );
}

#[tokio::test]
async fn cancellation_ends_a_pending_approval() {
    let fx = Fixture::new();
    let prompter = Scripted::slow(Ok(true), Duration::from_millis(500));
    let permissions = Permissions::with_prompter(PermissionConfig::default(), true, prompter);
    let events = EventBus::new();
    let ctx = fx.ctx();
    let cancel = fx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        cancel.cancel();
    });
    let answer = permissions.ask(&events, &ctx, "bash", "sleep 1").await;
    assert_eq!(
        answer,
        Err("cancelled while waiting for approval".to_string())
    );
}

#[tokio::test]
async fn bash_patterns_last_match_wins() {
    let fx = Fixture::new();
    let ctx = fx.ctx();
    let router = fx.router(rules(
        &[],
        &[("*", Action::Deny), ("echo *", Action::Allow)],
    ));
    assert_ok(&call(&router, &ctx, "bash", json!({ "command": "echo allowed" })).await);
    let denied = call(&router, &ctx, "bash", json!({ "command": "touch ran" })).await;
    assert_error(&denied, "the bash rule \"*\" says deny");
    assert!(!fx.path("ran").exists());

    let reversed = fx.router(rules(
        &[],
        &[("echo *", Action::Allow), ("*", Action::Deny)],
    ));
    assert_error(
        &call(&reversed, &ctx, "bash", json!({ "command": "echo hi" })).await,
        "the bash rule \"*\" says deny",
    );

    // A pattern outranks the per-tool rule; unmatched commands fall back to it.
    let layered = fx.router(rules(
        &[("bash", Action::Deny)],
        &[("echo *", Action::Allow)],
    ));
    assert_ok(
        &call(
            &layered,
            &ctx,
            "bash",
            json!({ "command": "echo   spaced" }),
        )
        .await,
    );
    assert_error(
        &call(&layered, &ctx, "bash", json!({ "command": "touch ran" })).await,
        "the rule for \"bash\" says deny",
    );
}

/// Stands in for `bash` so a deny-list failure could never run a
/// destructive command on the machine running the tests.
struct RecordingBash {
    ran: Mutex<Vec<String>>,
}

#[async_trait]
impl Tool for RecordingBash {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "bash".into(),
            description: "records commands".into(),
            parameters: json!({ "type": "object" }),
        }
    }

    async fn call(&self, args: Value, _ctx: &ToolContext) -> ToolOutput {
        let command = args["command"].as_str().unwrap_or_default().to_string();
        self.ran.lock().unwrap().push(command);
        ToolOutput::ok("recorded")
    }
}

#[tokio::test]
async fn the_built_in_deny_list_wins_even_when_bash_is_allowed() {
    let fx = Fixture::new();
    let recorder = Arc::new(RecordingBash {
        ran: Mutex::new(Vec::new()),
    });
    let mut registry = ToolRegistry::builtins();
    registry.insert(recorder.clone());
    let permissions = Permissions::new(
        rules(
            &[("bash", Action::Allow)],
            &[("*", Action::Allow), ("rm *", Action::Allow)],
        ),
        false,
    );
    let router = fx.router_with(registry, permissions);
    let ctx = fx.ctx();
    for command in [
        "rm -rf /",
        "sudo rm -fr /",
        "rm -r -f /",
        "rm -rf ~",
        "rm -rf $HOME",
        ":(){ :|:& };:",
        "mkfs.ext4 /dev/sda1",
        "dd if=/dev/zero of=/dev/sda",
        "chmod -R 777 /",
    ] {
        let output = call(&router, &ctx, "bash", json!({ "command": command })).await;
        assert_error(&output, "built-in list of destructive commands");
    }
    assert!(
        recorder.ran.lock().unwrap().is_empty(),
        "a blocked command reached the tool"
    );

    let output = call(
        &router,
        &ctx,
        "bash",
        json!({ "command": "rm -rf ./build" }),
    )
    .await;
    assert_ok(&output);
    assert_eq!(*recorder.ran.lock().unwrap(), ["rm -rf ./build"]);
}

#[tokio::test]
async fn permissions_can_be_asked_directly() {
    let fx = Fixture::new();
    let permissions = Permissions::new(PermissionConfig::default(), false);
    let events = Arc::new(EventBus::new());
    let ctx: ToolContext = fx.ctx();
    let answer = permissions
        .ask(&events, &ctx, "write", "{\"path\":\"a\"}")
        .await;
    assert!(answer.unwrap_err().contains("without a terminal"));
}

//! Built-in tools on real files and processes: path safety, file and search
//! tools, bash, and permissions, called through `ToolRouter` as a session
//! would and directly.

#[cfg(feature = "ast")]
mod ast;
mod background;
mod bash;
mod escape;
mod files;
mod git;
mod permissions;
mod router;
mod search;
mod sed;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use orch::config::{PermissionConfig, ToolsConfig};
use orch::events::{Event, EventBus};
use orch::provider::ToolCall;
use orch::tools::permissions::Permissions;
use orch::tools::{ToolContext, ToolOutput, ToolRegistry, ToolRouter};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// A temp directory holding the project (`proj/`) and, beside it, files the
/// tools must never reach (`outside/secret.txt`).
pub struct Fixture {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub outside: PathBuf,
    pub limits: ToolsConfig,
    pub cancel: CancellationToken,
    /// What the fixture's one session has seen of each file.
    pub seen: Arc<orch::tools::seen::Seen>,
}

pub const SECRET: &str = "top secret\n";

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let base = std::fs::canonicalize(dir.path()).expect("canonical temp dir");
        let root = base.join("proj");
        let outside = base.join("outside");
        std::fs::create_dir_all(&root).expect("project dir");
        std::fs::create_dir_all(&outside).expect("outside dir");
        std::fs::write(outside.join("secret.txt"), SECRET).expect("secret file");
        Fixture {
            _dir: dir,
            root,
            outside,
            limits: ToolsConfig::default(),
            cancel: CancellationToken::new(),
            seen: Arc::default(),
        }
    }

    pub fn write(&self, relative: &str, text: &str) -> &Fixture {
        let path = self.root.join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("parent dirs");
        std::fs::write(path, text).expect("write fixture file");
        self
    }

    pub fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.root.join(relative))
            .unwrap_or_else(|err| panic!("read {relative}: {err}"))
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    pub fn ctx(&self) -> ToolContext {
        ToolContext {
            root: Arc::new(self.root.clone()),
            session: "s1".into(),
            agent: "Worker".into(),
            role: orch::agents::Role::Worker,
            call_id: "call-1".into(),
            cancel: self.cancel.clone(),
            limits: Arc::new(self.limits.clone()),
            sandbox: Some(orch::sandbox::Profile::Write),
            may_write: true,
            seen: self.seen.clone(),
        }
    }

    /// A router over the built-in tools with `rules`, headless.
    pub fn router(&self, rules: PermissionConfig) -> ToolRouter {
        self.router_with(ToolRegistry::builtins(), Permissions::new(rules, false))
    }

    pub fn router_with(&self, registry: ToolRegistry, permissions: Arc<Permissions>) -> ToolRouter {
        ToolRouter::new(
            registry,
            permissions,
            Arc::new(EventBus::new()),
            Arc::new(orch::hooks::NoHooks),
        )
    }

    /// Call `tool` through a default router, as a session would.
    pub async fn call(&self, tool: &str, args: Value) -> ToolOutput {
        call(
            &self.router(PermissionConfig::default()),
            &self.ctx(),
            tool,
            args,
        )
        .await
    }
}

pub async fn call(router: &ToolRouter, ctx: &ToolContext, tool: &str, args: Value) -> ToolOutput {
    call_raw(router, ctx, tool, &args.to_string()).await
}

pub async fn call_raw(
    router: &ToolRouter,
    ctx: &ToolContext,
    tool: &str,
    args: &str,
) -> ToolOutput {
    let call = ToolCall {
        id: ctx.call_id.clone(),
        name: tool.into(),
        arguments: args.into(),
    };
    router.call(&call, ctx).await
}

/// Every event emitted so far on a subscription.
pub fn drain(
    events: &mut tokio::sync::broadcast::Receiver<Arc<orch::events::Envelope>>,
) -> Vec<Event> {
    let mut out = Vec::new();
    while let Ok(envelope) = events.try_recv() {
        out.push(envelope.event.clone());
    }
    out
}

#[track_caller]
pub fn assert_ok(output: &ToolOutput) {
    assert!(
        !output.is_error,
        "expected success, got: {}",
        output.content
    );
}

#[track_caller]
pub fn assert_error(output: &ToolOutput, needle: &str) {
    assert!(
        output.is_error,
        "expected an error, got: {}",
        output.content
    );
    assert!(
        output.content.contains(needle),
        "expected the error to contain {needle:?}, got: {}",
        output.content
    );
}

/// Files directly in `dir`, sorted, for checking nothing was created.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
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

//! `orch mcp serve`: orch as an MCP server on stdin/stdout, so an MCP client
//! (Claude Code, Codex…) hands a whole verified mission to orch without
//! waiting on it inside one tool call.
//!
//! Each mission runs as a child process of this very binary, `orch task
//! GOAL --json` in the served project with the server's own global flags,
//! started through the one launcher (`process::start`: its own process
//! group, killed with orch however orch ends). A child rather than the
//! mission in this process: a mission's `Project` owns the process's signal
//! handling, its sandbox, its secrets and a frontend; as a child, each
//! mission is exactly `orch task` run headless (no prompts: approvals are
//! denied), the project's one-mission lock and `orch cancel`'s request file
//! work unchanged, and nothing the mission prints can reach this process's
//! stdout, which carries only JSON-RPC. The child's JSONL events are read
//! from its stdout and become MCP logging notifications; its stderr is
//! copied to ours. The state file and plan under `.opencode/` answer
//! `mission_status` and `read_plan`, as they answer `orch status`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::anyhow;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ProgressNotificationParam,
    ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::{RequestContext, ServerInitializeError};
use rmcp::{ErrorData as McpError, Peer, RoleServer, ServerHandler, ServiceExt as _};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[allow(deprecated)]
use rmcp::model::{LoggingLevel, LoggingMessageNotificationParam, SetLevelRequestParams};

use super::status::{alive, already_running, request_cancel, running_mission, status_word};
use super::{Cli, exit};
use crate::mission::gate;
use crate::mission::state::{self, MissionState, MissionStatus};

mod follow;
use follow::{Follow, say, severity};

/// How long `run_mission` waits for the child to report its mission id.
const START_LIMIT: Duration = Duration::from_secs(60);
/// How long `run_mission` waits for a started mission's state file.
const STATE_LIMIT: Duration = Duration::from_secs(5);
/// How long `cancel_mission` waits for the mission to stop.
const CANCEL_LIMIT: Duration = Duration::from_secs(15);
/// How long, once the client has gone, running missions get to stop
/// cleanly before their processes are killed.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(30);
/// How long the child's output is still read after it exited (a process it
/// left may hold the pipe open).
const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// The longest line read from a child; the rest of a longer one is dropped.
const MAX_LINE: usize = 1 << 20;
/// How much of the child's stderr is kept to explain a failed start.
const STDERR_TAIL: usize = 4096;

pub async fn serve(cli: &Cli) -> anyhow::Result<u8> {
    let root = super::project_root(cli.dir.as_deref())?;
    // A broken orch.json is a usage error now (exit 2), not a failure of
    // every mission the client starts later.
    crate::config::load(&root, &cli.overrides())?;
    let server = Server::new(root, cli);
    let (interrupted, _signals) = super::cancel_on_signals();
    let service = match server
        .clone()
        .serve_with_ct(rmcp::transport::stdio_pipes(), interrupted.child_token())
        .await
    {
        Ok(service) => Some(service),
        // The client went away (or a signal came) before initializing.
        Err(ServerInitializeError::ConnectionClosed(_) | ServerInitializeError::Cancelled) => None,
        Err(err) => {
            server.shutdown().await;
            return Err(anyhow!("mcp serve: {err}"));
        }
    };
    if let Some(service) = service {
        let _ = service.waiting().await;
    }
    server.shutdown().await;
    Ok(if interrupted.is_cancelled() {
        super::interrupted_code()
    } else {
        exit::COMPLETE
    })
}

/// The MCP server of one project.
#[derive(Clone)]
struct Server {
    shared: Arc<Shared>,
}

struct Shared {
    root: PathBuf,
    /// Global flags every mission's `orch task` gets: the server's own.
    flags: Vec<OsString>,
    max_iterations: Option<u32>,
    budget_usd: Option<f64>,
    /// The missions this server started, by id.
    runs: Mutex<BTreeMap<String, Run>>,
    /// One mission starts at a time, so two starts cannot both pass the
    /// project's one-mission check.
    starting: tokio::sync::Mutex<()>,
    /// The follow task of every child.
    tracker: TaskTracker,
    /// Cancelled when the client has gone: running missions are asked to
    /// stop cleanly.
    closing: CancellationToken,
    /// Cancelled when they took too long: their processes are killed.
    abandon: CancellationToken,
    /// The least severe logging notification the client wants.
    #[allow(deprecated)]
    level: Mutex<LoggingLevel>,
}

/// What this server knows of a mission it started beyond its state file.
#[derive(Debug, Clone, Default)]
struct Run {
    /// The child's exit code, once it exited (`None` while it runs, or
    /// when a signal ended it: see `signal`).
    exit_code: Option<i32>,
    signal: Option<i32>,
    exited: bool,
}

impl Server {
    fn new(root: PathBuf, cli: &Cli) -> Server {
        let mut flags: Vec<OsString> = vec!["--json".into(), "-C".into(), root.clone().into()];
        let mut flag = |name: &str, value: OsString| {
            flags.push(name.into());
            flags.push(value);
        };
        if let Some(provider) = &cli.provider {
            flag("--provider", provider.into());
        }
        if let Some(model) = &cli.model {
            flag("--model", model.into());
        }
        if let Some(script) = cli.overrides().script {
            flag("--script", script.into());
        }
        if let Some(tokens) = cli.budget_tokens {
            flag("--budget-tokens", tokens.to_string().into());
        }
        if let Some(mode) = cli.sandbox {
            flag("--sandbox", mode.name().into());
        }
        if cli.trust_project {
            flags.push("--trust-project".into());
        }
        if cli.keep_worktrees {
            flags.push("--keep-worktrees".into());
        }
        Server {
            shared: Arc::new(Shared {
                root,
                flags,
                max_iterations: cli.max_iterations,
                budget_usd: cli.budget_usd,
                runs: Mutex::new(BTreeMap::new()),
                starting: tokio::sync::Mutex::new(()),
                tracker: TaskTracker::new(),
                closing: CancellationToken::new(),
                abandon: CancellationToken::new(),
                #[allow(deprecated)]
                level: Mutex::new(LoggingLevel::Info),
            }),
        }
    }

    /// The client has gone: ask every mission still running to stop
    /// cleanly, wait for them, and kill what is left after
    /// `SHUTDOWN_LIMIT`.
    async fn shutdown(&self) {
        let shared = &self.shared;
        shared.closing.cancel();
        shared.tracker.close();
        if !shared.tracker.is_empty() {
            say(&format!(
                "orch mcp serve: the client has gone; stopping {} mission process{}",
                shared.tracker.len(),
                if shared.tracker.len() == 1 { "" } else { "es" }
            ));
        }
        if tokio::time::timeout(SHUTDOWN_LIMIT, shared.tracker.wait())
            .await
            .is_err()
        {
            say("orch mcp serve: missions still running; killing them");
            shared.abandon.cancel();
            shared.tracker.wait().await;
        }
    }

    fn run_of(&self, id: &str) -> Option<Run> {
        self.shared.runs.lock().expect("runs lock").get(id).cloned()
    }

    async fn run_mission(
        &self,
        args: &JsonObject,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResult, String> {
        let request = MissionRequest::parse(args)?;
        let shared = &self.shared;
        let _one_at_a_time = shared.starting.lock().await;
        if shared.closing.is_cancelled() {
            return Err("the server is shutting down".into());
        }
        if let Some(running) = running_mission(&shared.root) {
            return Err(format!(
                "{}, or cancel_mission with id {}",
                already_running(&running),
                running.id
            ));
        }
        let mut args = shared.flags.clone();
        if let Some(n) = request.max_iterations.or(shared.max_iterations) {
            args.extend(["--max-iterations".into(), n.to_string().into()]);
        }
        if let Some(usd) = request.budget_usd.or(shared.budget_usd) {
            args.extend(["--budget-usd".into(), usd.to_string().into()]);
        }
        args.extend(["task".into(), "--".into(), request.goal.clone().into()]);
        let exe = std::env::current_exe()
            .map_err(|err| format!("cannot find the orch binary to run the mission: {err}"))?;
        // The child is orch itself: it needs the provider keys this process
        // was given, and scrubs them from every command it runs in turn.
        let env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        let child = crate::process::start(exe.as_os_str(), &args, &shared.root, &env)
            .map_err(|err| format!("cannot start {}: {err}", exe.display()))?;
        let (started_tx, started_rx) = oneshot::channel();
        let follow = Follow::new(self.clone(), context.peer.clone(), started_tx);
        let abandon = CancellationToken::new();
        shared.tracker.spawn(follow.run(child, abandon.clone()));
        let id = match tokio::time::timeout(START_LIMIT, started_rx).await {
            Ok(Ok(Ok(id))) => id,
            Ok(Ok(Err(why))) => return Err(why),
            Ok(Err(_)) => return Err("the mission's process ended before it started".into()),
            Err(_) => {
                abandon.cancel();
                return Err(format!(
                    "the mission did not start within {} s; its process was killed",
                    START_LIMIT.as_secs()
                ));
            }
        };
        // The events come from the journal, which is written before the
        // state file: `mission_status` called right after this answers
        // from the state file.
        let recorded = tokio::time::Instant::now() + STATE_LIMIT;
        while (state::latest_mission(&shared.root).as_deref() != Some(id.as_str())
            || state::read_state(&shared.root, &id).is_err())
            && tokio::time::Instant::now() < recorded
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(token) = context.meta.get_progress_token() {
            let _ = context
                .peer
                .notify_progress(
                    ProgressNotificationParam::new(token, 0.0)
                        .with_message(format!("mission {id} started")),
                )
                .await;
        }
        Ok(CallToolResult::structured(json!({
            "mission": id,
            "status": "running",
            "root": shared.root.display().to_string(),
            "message": format!(
                "mission {id} started in {}; progress comes as notifications/message, \
                 mission_status tells where it is, cancel_mission stops it",
                shared.root.display()
            ),
        })))
    }

    fn mission_status(&self, args: &JsonObject) -> Result<CallToolResult, String> {
        let id = mission_id(args, "mission_status")?;
        let saved = self.known(&id)?;
        Ok(CallToolResult::structured(self.status_value(&saved)))
    }

    fn status_value(&self, saved: &MissionState) -> Value {
        let root = &self.shared.root;
        let run = self.run_of(&saved.id);
        let interrupted = saved.status == MissionStatus::Running
            && (!alive(saved.pid) || run.as_ref().is_some_and(|run| run.exited));
        let status = if interrupted {
            "interrupted"
        } else {
            status_word(saved.status)
        };
        // The plan file is the latest mission's; an earlier one's counts
        // are what its state recorded last.
        let plan = if state::latest_mission(root).as_deref() == Some(saved.id.as_str()) {
            std::fs::read_to_string(root.join(".opencode/todo.md"))
                .ok()
                .map(|text| gate::plan_counts(&crate::todo::Plan::parse(&text)))
        } else {
            saved.plan
        };
        let mut value = json!({
            "mission": saved.id,
            "goal": saved.goal,
            "status": status,
            "iteration": saved.iteration,
            "max_iterations": saved.max_iterations,
            "plan": plan,
            "usage": saved.usage,
            "cost_usd": saved.cost_usd,
            "reason": saved.reason,
            "last_gate": saved.last_gate.as_ref().map(|gate| json!({
                "iteration": gate.iteration,
                "passed": gate.passed,
                "open_items": gate.open_items,
                "sync_issues": gate.sync_issues,
            })),
        });
        if let Some(run) = run.filter(|run| run.exited) {
            value["exit_code"] = json!(run.exit_code);
            if let Some(signal) = run.signal {
                value["signal"] = json!(signal);
            }
        }
        value
    }

    async fn cancel_mission(&self, args: &JsonObject) -> Result<CallToolResult, String> {
        let id = mission_id(args, "cancel_mission")?;
        let saved = self.known(&id)?;
        let root = &self.shared.root;
        if saved.status != MissionStatus::Running || !alive(saved.pid) {
            let mut value = self.status_value(&saved);
            value["message"] = json!(format!("mission {id} is not running"));
            return Ok(CallToolResult::structured(value));
        }
        request_cancel(root, &id).map_err(|err| format!("{err:#}"))?;
        let deadline = tokio::time::Instant::now() + CANCEL_LIMIT;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = state::read_state(root, &id)?;
            let stopped = now.status != MissionStatus::Running || !alive(now.pid);
            if stopped || tokio::time::Instant::now() >= deadline {
                let mut value = self.status_value(&now);
                value["message"] = json!(if stopped {
                    format!("mission {id} {}", status_word(now.status))
                } else {
                    format!(
                        "mission {id} was asked to stop; it is still finishing its current step"
                    )
                });
                return Ok(CallToolResult::structured(value));
            }
        }
    }

    fn read_plan(&self, args: &JsonObject) -> Result<CallToolResult, String> {
        let id = mission_id(args, "read_plan")?;
        self.known(&id)?;
        let root = &self.shared.root;
        let latest = state::latest_mission(root).unwrap_or_default();
        if latest != id {
            return Err(format!(
                "the plan of mission {id} is gone: .opencode/todo.md now holds the plan of the \
                 project's latest mission, {latest}"
            ));
        }
        let path = root.join(".opencode/todo.md");
        let text = std::fs::read_to_string(&path)
            .map_err(|err| format!("reading {}: {err}", path.display()))?;
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]))
    }

    /// The state of mission `id` of this project, or the error naming it.
    fn known(&self, id: &str) -> Result<MissionState, String> {
        let root = &self.shared.root;
        let path = state::MissionPaths::new(root, id).state();
        if !path.exists() {
            return Err(format!(
                "unknown mission id \"{id}\": no mission with that id in {} ({} does not exist)",
                root.display(),
                path.display()
            ));
        }
        state::read_state(root, id)
    }

    /// Tell the client, as a logging notification at `level` (when the
    /// client wants that level).
    #[allow(deprecated)]
    async fn notify(&self, peer: &Peer<RoleServer>, level: LoggingLevel, data: Value) {
        let wanted = *self.shared.level.lock().expect("level lock");
        if severity(level) < severity(wanted) {
            return;
        }
        let _ = peer
            .notify_logging_message(
                LoggingMessageNotificationParam::new(level, data).with_logger("orch"),
            )
            .await;
    }
}

/// The arguments of `run_mission`.
#[derive(Debug, PartialEq)]
struct MissionRequest {
    goal: String,
    max_iterations: Option<u32>,
    budget_usd: Option<f64>,
}

impl MissionRequest {
    fn parse(args: &JsonObject) -> Result<MissionRequest, String> {
        known_arguments(
            args,
            "run_mission",
            &["goal", "max_iterations", "budget_usd"],
        )?;
        let goal = match args.get("goal") {
            Some(Value::String(goal)) if !goal.trim().is_empty() && goal.trim() != "-" => {
                goal.clone()
            }
            Some(Value::String(_)) => {
                return Err(
                    "run_mission: goal is empty; expected what the mission should achieve".into(),
                );
            }
            Some(other) => {
                return Err(format!("run_mission: goal must be a string, not {other}"));
            }
            None => {
                return Err(
                    "run_mission: goal is missing; expected what the mission should achieve".into(),
                );
            }
        };
        let max_iterations = match args.get("max_iterations") {
            None | Some(Value::Null) => None,
            Some(value) => Some(
                value
                    .as_u64()
                    .filter(|n| *n >= 1)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| {
                        format!("run_mission: max_iterations must be a whole number of at least 1, not {value}")
                    })?,
            ),
        };
        let budget_usd = match args.get("budget_usd") {
            None | Some(Value::Null) => None,
            Some(value) => Some(
                value
                    .as_f64()
                    .filter(|usd| usd.is_finite() && *usd > 0.0)
                    .ok_or_else(|| {
                        format!("run_mission: budget_usd must be a number of dollars above 0, not {value}")
                    })?,
            ),
        };
        Ok(MissionRequest {
            goal,
            max_iterations,
            budget_usd,
        })
    }
}

/// The `id` argument of `tool`: a mission id as orch makes them.
fn mission_id(args: &JsonObject, tool: &str) -> Result<String, String> {
    known_arguments(args, tool, &["id"])?;
    match args.get("id") {
        Some(Value::String(id))
            if !id.is_empty()
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
        {
            Ok(id.clone())
        }
        Some(Value::String(id)) => Err(format!(
            "unknown mission id \"{id}\": mission ids are letters, digits and dashes, such as m-…"
        )),
        Some(other) => Err(format!("{tool}: id must be a string, not {other}")),
        None => Err(format!(
            "{tool}: id is missing; expected a mission id from run_mission"
        )),
    }
}

fn known_arguments(args: &JsonObject, tool: &str, known: &[&str]) -> Result<(), String> {
    match args.keys().find(|key| !known.contains(&key.as_str())) {
        Some(key) => Err(format!(
            "{tool}: unknown argument \"{key}\"; expected {}",
            known.join(", ")
        )),
        None => Ok(()),
    }
}

fn tools() -> Vec<Tool> {
    let schema = |value: Value| -> Arc<JsonObject> {
        match value {
            Value::Object(object) => Arc::new(object),
            _ => unreachable!("tool schemas are objects"),
        }
    };
    let id = || {
        schema(json!({
            "type": "object",
            "properties": {"id": {"type": "string", "description": "The mission id run_mission returned."}},
            "required": ["id"],
            "additionalProperties": false,
        }))
    };
    vec![
        Tool::new(
            "run_mission",
            "Start an orch mission in the served project: the Commander plans, Workers \
             change the code, the Reviewer verifies, and the mission ends only when the plan \
             is done and the project's checks pass. Returns the mission id at once; progress \
             comes as logging notifications (notifications/message); poll mission_status until \
             its status is no longer running. One mission at a time per project; no prompts \
             (actions needing approval are denied).",
            schema(json!({
                "type": "object",
                "properties": {
                    "goal": {"type": "string", "description": "What the mission should achieve."},
                    "max_iterations": {"type": "integer", "minimum": 1, "description": "Most Commander iterations before the mission stops."},
                    "budget_usd": {"type": "number", "exclusiveMinimum": 0, "description": "Stop once this many US dollars were spent."},
                },
                "required": ["goal"],
                "additionalProperties": false,
            })),
        )
        .with_annotations(
            ToolAnnotations::with_title("Run an orch mission")
                .read_only(false)
                .destructive(true)
                .open_world(true),
        ),
        Tool::new(
            "mission_status",
            "Where a mission is: status (running, complete, stopped, cancelled, interrupted), \
             iteration, plan progress, tokens and cost, the last completion gate, and the \
             reason it ended.",
            id(),
        )
        .with_annotations(
            ToolAnnotations::with_title("Mission status")
                .read_only(true)
                .open_world(false),
        ),
        Tool::new(
            "cancel_mission",
            "Stop a running mission cleanly (like `orch cancel`): its state is saved, its \
             processes are stopped, and `orch resume` can continue it later.",
            id(),
        )
        .with_annotations(
            ToolAnnotations::with_title("Cancel a mission")
                .read_only(false)
                .destructive(false)
                .idempotent(true)
                .open_world(false),
        ),
        Tool::new(
            "read_plan",
            "The mission's plan: the text of .opencode/todo.md, items checked off as they are done.",
            id(),
        )
        .with_annotations(
            ToolAnnotations::with_title("Read a mission's plan")
                .read_only(true)
                .open_world(false),
        ),
    ]
}

impl ServerHandler for Server {
    #[allow(deprecated)]
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_logging()
                .build(),
        )
        .with_server_info(
            Implementation::new("orch", env!("CARGO_PKG_VERSION"))
                .with_title("orch: verified coding missions"),
        )
        .with_instructions(format!(
            "orch runs whole coding missions in {} to a verified finish. Start one with \
             run_mission (it returns at once), follow it through notifications and \
             mission_status, read its plan with read_plan, stop it with cancel_mission.",
            self.shared.root.display()
        ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tools().into_iter().find(|tool| tool.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let args = request.arguments.unwrap_or_default();
        let result = match request.name.as_ref() {
            "run_mission" => self.run_mission(&args, &context).await,
            "mission_status" => self.mission_status(&args),
            "cancel_mission" => self.cancel_mission(&args).await,
            "read_plan" => self.read_plan(&args),
            other => {
                return Err(McpError::invalid_params(
                    format!(
                        "unknown tool \"{other}\"; orch serves run_mission, mission_status, cancel_mission and read_plan"
                    ),
                    None,
                ));
            }
        };
        Ok(result
            .unwrap_or_else(|message| CallToolResult::error(vec![ContentBlock::text(message)]))
            .into())
    }

    #[allow(deprecated)]
    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        *self.shared.level.lock().expect("level lock") = request.level;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(value: Value) -> JsonObject {
        match value {
            Value::Object(object) => object,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn run_mission_arguments_are_checked_naming_the_field() {
        assert_eq!(
            MissionRequest::parse(&args(json!({"goal": "Add a flag", "max_iterations": 3})))
                .unwrap(),
            MissionRequest {
                goal: "Add a flag".into(),
                max_iterations: Some(3),
                budget_usd: None
            }
        );
        for (bad, expected) in [
            (json!({}), "goal is missing"),
            (json!({"goal": "  "}), "goal is empty"),
            (json!({"goal": "-"}), "goal is empty"),
            (json!({"goal": 3}), "goal must be a string"),
            (
                json!({"goal": "g", "max_iterations": 0}),
                "max_iterations must be",
            ),
            (
                json!({"goal": "g", "max_iterations": 1.5}),
                "max_iterations must be",
            ),
            (json!({"goal": "g", "budget_usd": -1}), "budget_usd must be"),
            (
                json!({"goal": "g", "budget": 1}),
                "unknown argument \"budget\"",
            ),
        ] {
            let err = MissionRequest::parse(&args(bad.clone())).unwrap_err();
            assert!(err.contains(expected), "{bad}: {err}");
        }
    }

    #[test]
    fn a_mission_id_is_never_a_path() {
        assert_eq!(
            mission_id(&args(json!({"id": "m-abc12"})), "t").unwrap(),
            "m-abc12"
        );
        for bad in ["../x", "a/b", "", "m.1"] {
            let err = mission_id(&args(json!({"id": bad})), "t").unwrap_err();
            assert!(err.contains("unknown mission id"), "{bad}: {err}");
        }
    }
}

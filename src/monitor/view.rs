//! The live view's model: a pure fold of events (`View::apply`) into what
//! the monitor shows — the mission header, the plan, every session and
//! queued task, the metrics, and a log of notable events. Rendering it is
//! `monitor::render`'s job; feeding it is the live loop's (bus or journal).

use std::collections::VecDeque;
use std::path::PathBuf;

use crate::events::{
    ApprovedBy, Envelope, Event, MissionOutcome, PlanCounts, PoolStats, SessionOutcome, TaskStatus,
};
use crate::models::Prices;
use crate::monitor::metrics::{Metrics, MetricsReport};
use crate::provider::Usage;
use crate::todo::{Plan, Status};

/// Log lines kept for scrolling back.
const LOG_CAPACITY: usize = 2000;

/// What a session is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activity {
    Idle,
    Thinking,
    Running(String),
    /// A tool call waits for a person's approval.
    Approval(String),
    Done,
    Failed(String),
    Cancelled,
}

impl Activity {
    pub fn label(&self) -> String {
        match self {
            Activity::Idle => "idle".into(),
            Activity::Thinking => "thinking".into(),
            Activity::Running(tool) => format!("running {tool}"),
            Activity::Approval(tool) => format!("asks to run {tool}"),
            Activity::Done => "done".into(),
            Activity::Failed(why) => format!("failed: {why}"),
            Activity::Cancelled => "cancelled".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionView {
    pub id: String,
    pub agent: String,
    pub activity: Activity,
    /// The task this session works on (or last worked on).
    pub task: Option<String>,
    pub usage: Usage,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    pub id: String,
    pub agent: String,
    pub description: String,
    pub status: TaskStatus,
    pub session: Option<String>,
    /// Whether it works in a worktree of its own.
    pub worktree: bool,
    /// What became of its change: `landed N files`, `conflict in …`.
    pub merge: Option<String>,
}

/// How much a log line matters, for its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Good,
    Warn,
    Bad,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub at_ms: u64,
    pub level: Level,
    pub text: String,
}

/// The last completion gate.
#[derive(Debug, Clone, PartialEq)]
pub struct GateView {
    pub iteration: u32,
    pub passed: bool,
    /// What failed, in a few words (empty when it passed).
    pub summary: Vec<String>,
}

/// The fold. Everything here comes from events, except the plan's items,
/// which come from `.opencode/todo.md` when a `plan_updated` event says it
/// changed (`plan_file_changed`, then `set_plan`).
#[derive(Debug, Clone)]
pub struct View {
    pub mission: Option<String>,
    pub goal: String,
    pub root: Option<PathBuf>,
    pub resumed: bool,
    pub started_ms: Option<u64>,
    /// Time of the newest event.
    pub last_ms: u64,
    pub iteration: u32,
    pub max_iterations: u32,
    /// The mission's budgets, shown beside what was spent.
    pub budget_tokens: Option<u64>,
    pub budget_usd: Option<f64>,
    pub commander: Option<String>,
    /// The OS sandbox the mission's commands run in (empty when the
    /// journal does not say).
    pub sandbox: String,
    /// Set once `mission_finished` arrives (and cleared by a resume).
    pub finished: Option<(MissionOutcome, String, u64)>,
    pub gate: Option<GateView>,
    /// Counts from the newest `plan_updated` event.
    pub counts: Option<PlanCounts>,
    /// The plan file as last read.
    pub plan: Option<Plan>,
    plan_stale: bool,
    pub sessions: Vec<SessionView>,
    pub tasks: Vec<TaskView>,
    pub pool: PoolStats,
    metrics: Metrics,
    pub log: VecDeque<LogLine>,
}

impl View {
    /// `root` is where the plan lives until a `mission_started` event names
    /// it; `pricing` turns tokens into dollars.
    pub fn new(root: Option<PathBuf>, pricing: Prices) -> Self {
        View {
            mission: None,
            goal: String::new(),
            plan_stale: root.is_some(),
            root,
            resumed: false,
            started_ms: None,
            last_ms: 0,
            iteration: 0,
            max_iterations: 0,
            budget_tokens: None,
            budget_usd: None,
            commander: None,
            sandbox: String::new(),
            finished: None,
            gate: None,
            counts: None,
            plan: None,
            sessions: Vec::new(),
            tasks: Vec::new(),
            pool: PoolStats::default(),
            metrics: Metrics::new(pricing),
            log: VecDeque::new(),
        }
    }

    pub fn metrics(&self) -> MetricsReport {
        self.metrics.report()
    }

    /// The plan file, when it should be read again (once per change).
    pub fn plan_file_changed(&mut self) -> Option<PathBuf> {
        if !self.plan_stale {
            return None;
        }
        self.plan_stale = false;
        self.root
            .as_deref()
            .map(|root| root.join(".opencode").join("todo.md"))
    }

    pub fn set_plan(&mut self, plan: Plan) {
        self.plan = Some(plan);
    }

    /// Read the plan file now if it changed; a missing file is no plan.
    pub fn refresh_plan(&mut self) {
        if let Some(path) = self.plan_file_changed() {
            match std::fs::read_to_string(&path) {
                Ok(text) => self.set_plan(Plan::parse(&text)),
                Err(_) => self.plan = None,
            }
        }
    }

    /// Plan progress: the file's counts when it was read, else the event's.
    pub fn progress(&self) -> Option<(usize, usize)> {
        if let Some(plan) = &self.plan {
            let items = plan.items();
            if !items.is_empty() {
                let done = items.iter().filter(|i| i.status == Status::Done).count();
                return Some((done, items.len()));
            }
        }
        self.counts
            .filter(|c| c.total > 0)
            .map(|c| (c.done, c.total))
    }

    /// Tasks waiting for an admission slot.
    pub fn queued(&self) -> usize {
        self.tasks
            .iter()
            .filter(|t| t.status == TaskStatus::Queued)
            .count()
    }

    /// Milliseconds since the mission started, at `now_ms` (or when it ended).
    pub fn elapsed_ms(&self, now_ms: u64) -> u64 {
        let end = self.finished.as_ref().map_or(now_ms, |(_, _, at)| *at);
        self.started_ms.map_or(0, |start| end.saturating_sub(start))
    }

    fn session_mut(&mut self, id: &str) -> Option<&mut SessionView> {
        self.sessions.iter_mut().find(|s| s.id == id)
    }

    fn agent_of(&self, session: &str) -> String {
        self.sessions
            .iter()
            .find(|s| s.id == session)
            .map_or_else(|| session.to_string(), |s| s.agent.clone())
    }

    fn task_mut(&mut self, id: &str) -> Option<&mut TaskView> {
        self.tasks.iter_mut().find(|t| t.id == id)
    }

    fn log(&mut self, at_ms: u64, level: Level, text: String) {
        if self.log.len() == LOG_CAPACITY {
            self.log.pop_front();
        }
        self.log.push_back(LogLine {
            at_ms,
            level,
            text: crate::text::one_line(&text),
        });
    }

    pub fn apply(&mut self, envelope: &Envelope) {
        self.metrics.apply(envelope);
        let at = envelope.ts_ms;
        self.last_ms = self.last_ms.max(at);
        match &envelope.event {
            Event::MissionStarted {
                mission,
                goal,
                root,
                max_iterations,
                commander_session,
                resumed,
                budget_tokens,
                budget_usd,
                sandbox,
                ..
            } => {
                self.sandbox = sandbox.clone();
                self.budget_tokens = *budget_tokens;
                self.budget_usd = *budget_usd;
                self.mission = Some(mission.clone());
                self.goal = goal.clone();
                self.root = Some(PathBuf::from(root));
                self.max_iterations = *max_iterations;
                self.commander = Some(commander_session.clone());
                self.resumed = *resumed;
                self.finished = None;
                self.started_ms.get_or_insert(at);
                self.plan_stale = true;
                let verb = if *resumed { "resumed" } else { "started" };
                self.log(at, Level::Info, format!("mission {mission} {verb}: {goal}"));
            }
            Event::PlanUpdated { counts } => {
                self.counts = Some(*counts);
                self.plan_stale = true;
            }
            Event::GateChecked {
                iteration,
                passed,
                open_items,
                sync_issues,
                verify,
                note,
                ..
            } => {
                self.iteration = *iteration;
                // The header gets counts; the log names the first open item.
                let mut summary = Vec::new();
                let mut failures = Vec::new();
                if let Some(note) = note {
                    summary.push(note.clone());
                    failures.push(note.clone());
                }
                if let Some(first) = open_items.first() {
                    summary.push(format!("{} open", plural(open_items.len(), "item")));
                    let more = if open_items.len() > 1 {
                        format!(" and {} more", open_items.len() - 1)
                    } else {
                        String::new()
                    };
                    failures.push(format!("open: {first}{more}"));
                }
                if !sync_issues.is_empty() {
                    let issues = plural(sync_issues.len(), "sync issue");
                    summary.push(issues.clone());
                    failures.push(issues);
                }
                for failed in verify.iter().filter(|v| !v.passed) {
                    let code = failed
                        .exit_code
                        .map_or("no exit code".to_string(), |c| format!("exit {c}"));
                    let text = format!("`{}` failed ({code})", failed.command);
                    summary.push(text.clone());
                    failures.push(text);
                }
                let (level, text) = if *passed {
                    (
                        Level::Good,
                        format!("✓ gate passed at iteration {iteration}"),
                    )
                } else {
                    (
                        Level::Bad,
                        format!(
                            "✗ gate failed at iteration {iteration}: {}",
                            failures.join("; ")
                        ),
                    )
                };
                self.log(at, level, text);
                self.gate = Some(GateView {
                    iteration: *iteration,
                    passed: *passed,
                    summary,
                });
            }
            Event::MissionFinished {
                outcome,
                reason,
                iterations,
                ..
            } => {
                self.iteration = *iterations;
                self.finished = Some((*outcome, reason.clone(), at));
                let level = match outcome {
                    MissionOutcome::Complete => Level::Good,
                    MissionOutcome::Stopped => Level::Bad,
                    MissionOutcome::Cancelled => Level::Warn,
                };
                self.log(
                    at,
                    level,
                    format!("mission {}: {reason}", outcome_word(*outcome)),
                );
            }
            Event::SessionStarted { session, agent, .. } => {
                if let Some(existing) = self.session_mut(session) {
                    existing.activity = Activity::Idle;
                } else {
                    self.sessions.push(SessionView {
                        id: session.clone(),
                        agent: agent.clone(),
                        activity: Activity::Idle,
                        task: None,
                        usage: Usage::default(),
                    });
                }
            }
            Event::ModelRequest { session, .. } => {
                if let Some(s) = self.session_mut(session) {
                    s.activity = Activity::Thinking;
                }
            }
            Event::ToolCallBegin { session, tool, .. } => {
                if let Some(s) = self.session_mut(session) {
                    s.activity = Activity::Running(tool.clone());
                }
            }
            Event::ToolCallEnd {
                session,
                tool,
                ok,
                preview,
                ..
            } => {
                if let Some(s) = self.session_mut(session) {
                    s.activity = Activity::Thinking;
                }
                if !ok {
                    let agent = self.agent_of(session);
                    let first = preview.lines().next().unwrap_or_default().to_string();
                    self.log(at, Level::Warn, format!("{agent}: ✗ {tool}: {first}"));
                }
            }
            Event::ModelRetry {
                session,
                attempt,
                delay_ms,
                reason,
                ..
            } => {
                let agent = self.agent_of(session);
                self.log(
                    at,
                    Level::Warn,
                    format!(
                        "{agent}: retrying in {:.1}s (attempt {attempt}): {reason}",
                        *delay_ms as f64 / 1000.0
                    ),
                );
            }
            Event::Usage { session, usage, .. } => {
                if let Some(s) = self.session_mut(session) {
                    s.usage.add(usage);
                }
            }
            Event::ApprovalRequested {
                session,
                tool,
                detail,
                ..
            } => {
                if let Some(s) = self.session_mut(session) {
                    s.activity = Activity::Approval(tool.clone());
                }
                let agent = self.agent_of(session);
                self.log(
                    at,
                    Level::Warn,
                    format!("{agent} asks to run {tool}: {detail}"),
                );
            }
            Event::ApprovalResolved {
                session,
                approved,
                by,
                ..
            } => {
                if let Some(s) = self.session_mut(session) {
                    s.activity = Activity::Thinking;
                }
                let agent = self.agent_of(session);
                let text = match (approved, by) {
                    (true, _) => format!("{agent}: approved"),
                    (false, ApprovedBy::User) => format!("{agent}: denied"),
                    (false, ApprovedBy::Headless) => {
                        format!("{agent}: denied (approval needs a terminal)")
                    }
                };
                let level = if *approved { Level::Info } else { Level::Warn };
                self.log(at, level, text);
            }
            Event::ToolsChanged {
                source,
                added,
                removed,
                note,
            } => {
                let text = super::tools_line(source, added, removed, note.as_deref());
                self.log(at, Level::Info, text);
            }
            Event::Warning { session, message } => {
                let text = match session {
                    Some(session) => format!("warning ({}): {message}", self.agent_of(session)),
                    None => format!("warning: {message}"),
                };
                self.log(at, Level::Warn, text);
            }
            Event::TaskQueued {
                task,
                agent,
                description,
                background,
                ..
            } => {
                self.tasks.push(TaskView {
                    id: task.clone(),
                    agent: agent.clone(),
                    description: description.clone(),
                    status: TaskStatus::Queued,
                    session: None,
                    worktree: false,
                    merge: None,
                });
                let mode = if *background { " (background)" } else { "" };
                self.log(
                    at,
                    Level::Info,
                    format!("⇢ {task} → {agent}{mode}: {description}"),
                );
            }
            Event::TaskStarted {
                task,
                session,
                pool,
                worktree,
                ..
            } => {
                self.pool = *pool;
                if let Some(t) = self.task_mut(task) {
                    t.status = TaskStatus::Running;
                    t.session = Some(session.clone());
                    t.worktree = worktree.is_some();
                }
                if let Some(s) = self.session_mut(session) {
                    s.task = Some(task.clone());
                }
            }
            Event::TaskFinished {
                task,
                agent,
                status,
                error,
                ..
            } => {
                if let Some(t) = self.task_mut(task) {
                    t.status = *status;
                }
                let mut text = format!("⇠ {task} {agent} {}", status.name());
                if let Some(error) = error {
                    text.push_str(&format!(": {error}"));
                }
                let level = match status {
                    TaskStatus::Completed => Level::Good,
                    TaskStatus::Failed => Level::Bad,
                    TaskStatus::Queued | TaskStatus::Running | TaskStatus::Cancelled => Level::Warn,
                };
                self.log(at, level, text);
            }
            Event::SessionFinished {
                session,
                agent,
                outcome,
                error,
                ..
            } => {
                let is_commander = self.commander.as_deref() == Some(session.as_str());
                let activity = match outcome {
                    SessionOutcome::Completed if is_commander => Activity::Idle,
                    SessionOutcome::Completed => Activity::Done,
                    SessionOutcome::Cancelled => Activity::Cancelled,
                    SessionOutcome::MaxTurns => Activity::Failed("max turns".into()),
                    SessionOutcome::BudgetExceeded => Activity::Failed("token budget".into()),
                    SessionOutcome::Repeating => Activity::Failed("repeating".into()),
                    SessionOutcome::Failed => Activity::Failed("error".into()),
                };
                if let Activity::Failed(why) = &activity {
                    let mut text = format!("✗ {agent} session {session} stopped: {why}");
                    if let Some(error) = error {
                        text.push_str(&format!(" ({error})"));
                    }
                    self.log(at, Level::Bad, text);
                }
                if let Some(s) = self.session_mut(session) {
                    s.activity = activity;
                }
            }
            Event::ContextCompacted {
                session,
                reason,
                tokens_before,
                tokens_after,
                ..
            } => {
                let text = format!(
                    "{}: context compacted ({reason}): {tokens_before} → {tokens_after} tokens",
                    self.agent_of(session)
                );
                self.log(at, Level::Info, text);
            }
            Event::TaskReported { .. } => {}
            Event::TaskLanded {
                task,
                files,
                conflicts,
                item,
            } => {
                let text = super::landing_line(task, files, conflicts, item.as_deref());
                let level = if conflicts.is_empty() {
                    Level::Info
                } else {
                    Level::Warn
                };
                if let Some(t) = self.task_mut(task) {
                    t.merge = Some(if conflicts.is_empty() {
                        format!("landed {} file(s)", files.len())
                    } else {
                        format!("conflict in {}", conflicts.join(", "))
                    });
                }
                self.log(at, level, text);
            }
            Event::MemoryEvicted { entries } => {
                let text = format!("memory: forgot {}", entries.join(", "));
                self.log(at, Level::Info, text);
            }
            Event::BackgroundStarted {
                job,
                label,
                command,
                ..
            } => {
                let name = if label.is_empty() { command } else { label };
                self.log(
                    at,
                    Level::Info,
                    format!("{job} started in the background: {name}"),
                );
            }
            Event::BackgroundFinished {
                job,
                status,
                exit_code,
            } => {
                let code = exit_code.map_or(String::new(), |c| format!(" (exit {c})"));
                let level = if status == "done" {
                    Level::Info
                } else {
                    Level::Warn
                };
                self.log(at, level, format!("{job} {status}{code}"));
            }
            Event::PluginLog {
                plugin,
                level,
                message,
            } => {
                let level = match level.as_str() {
                    "error" => Level::Bad,
                    "warn" => Level::Warn,
                    "info" => Level::Info,
                    _ => return,
                };
                self.log(at, level, format!("plugin {plugin}: {message}"));
            }
            Event::TextDelta { .. } | Event::ModelResponse { .. } | Event::PluginMetric { .. } => {}
        }
    }
}

pub fn outcome_word(outcome: MissionOutcome) -> &'static str {
    match outcome {
        MissionOutcome::Complete => "complete",
        MissionOutcome::Stopped => "stopped",
        MissionOutcome::Cancelled => "cancelled",
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

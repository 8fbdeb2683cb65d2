//! Delegated tasks: the `Delegator` behind `delegate_task` and friends.
//!
//! A task is recorded and queued at once; it waits for admission (global,
//! per-agent, per-model slots) before a session is taken from the pool; it
//! runs to its session's end; its result is kept for `get_task_result` and,
//! for background tasks, handed to the delegating session as a message the
//! next time that session is idle — never injected while it is busy.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::pool::{Admission, SessionPool};
use super::{Runtime, SessionSetup};
use crate::agents::{Agent, AgentRegistry};
use crate::config::{ConcurrencyConfig, PoolConfig};
use crate::events::PoolStats;
use crate::events::{Event, SessionOutcome, TaskStatus};
use crate::models::Prices;
use crate::provider::Usage;
use crate::todo::TodoStore;
use crate::tools::ToolContext;
use crate::tools::delegate::{DelegateRequest, Delegator};
use crate::worktree::{Landing, TaskTree, Worktrees};

/// How a session is set up for an agent (model, caps) — decided by the caller.
pub type SetupFor = Arc<dyn Fn(&Agent) -> SessionSetup + Send + Sync>;

/// A task as `status` and `list_tasks` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSummary {
    pub id: String,
    pub agent: String,
    pub description: String,
    pub status: TaskStatus,
    pub background: bool,
    pub session: Option<String>,
}

/// How a task's session begins.
enum Start {
    /// A session from the pool, given the task's prompt.
    Fresh,
    /// The task's own session, reopened from its transcript.
    Restore(String),
}

struct TaskRecord {
    summary: TaskSummary,
    parent: String,
    prompt: String,
    result: Option<String>,
    error: Option<String>,
    turns: u32,
    usage: Usage,
    cancel: CancellationToken,
    /// A background result not yet handed to the parent.
    unreported: bool,
}

pub struct Tasks {
    me: Weak<Tasks>,
    runtime: Runtime,
    /// Agents to delegate to: grows when a plugin defines one mid-mission.
    agents: std::sync::RwLock<AgentRegistry>,
    setup_for: SetupFor,
    pool: SessionPool,
    admission: Admission,
    max_depth: u32,
    tasks: Mutex<BTreeMap<u64, TaskRecord>>,
    /// Delegation depth of each session a task runs in (absent = 0).
    depths: Mutex<HashMap<String, u32>>,
    next_id: AtomicU64,
    tracker: TaskTracker,
    cancel: CancellationToken,
    changed: Notify,
    /// Worktrees for writing tasks, once the mission sets them up.
    isolation: std::sync::OnceLock<Isolation>,
    /// The prices a dollar budget is kept with, when the mission has one:
    /// a task whose model has none is refused.
    budget_prices: std::sync::OnceLock<Prices>,
}

/// A worktree per writing task, and the plan conflicts become items of.
struct Isolation {
    worktrees: Arc<Worktrees>,
    todo: Arc<TodoStore>,
    /// Keep a failed task's worktree (`--keep-worktrees`).
    keep_failed: bool,
    /// The background jobs, so a task's own stop before its worktree is
    /// merged or removed.
    jobs: Arc<crate::tools::background::BackgroundJobs>,
}

impl Tasks {
    /// `runtime.tools` must be the full registry; each task's session sees
    /// its agent's subset of it.
    pub fn new(
        runtime: Runtime,
        agents: AgentRegistry,
        setup_for: SetupFor,
        concurrency: ConcurrencyConfig,
        pool: PoolConfig,
        max_depth: u32,
        cancel: CancellationToken,
    ) -> Arc<Tasks> {
        Arc::new_cyclic(|me: &Weak<Tasks>| {
            let mut runtime = runtime;
            let delegator: Weak<dyn Delegator> = me.clone();
            for tool in crate::tools::delegate::tools(delegator) {
                runtime.tools.insert(tool);
            }
            Tasks {
                me: me.clone(),
                runtime,
                agents: std::sync::RwLock::new(agents),
                setup_for,
                pool: SessionPool::new(pool),
                admission: Admission::new(concurrency),
                max_depth,
                tasks: Mutex::default(),
                depths: Mutex::default(),
                next_id: AtomicU64::new(1),
                tracker: TaskTracker::new(),
                cancel,
                changed: Notify::new(),
                isolation: std::sync::OnceLock::new(),
                budget_prices: std::sync::OnceLock::new(),
            }
        })
    }

    /// Run each task of an agent that may write in a worktree of its own,
    /// merged back into the project when it completes; a conflict becomes
    /// an item of `todo`.
    pub fn isolate(
        &self,
        worktrees: Worktrees,
        todo: Arc<TodoStore>,
        keep_failed: bool,
        jobs: Arc<crate::tools::background::BackgroundJobs>,
    ) {
        let _ = self.isolation.set(Isolation {
            worktrees: Arc::new(worktrees),
            todo,
            keep_failed,
            jobs,
        });
    }

    /// The mission has a dollar budget, kept with `prices`: no task starts
    /// on a model without a price (an agent a plugin adds mid-mission was
    /// never checked when the mission started), since its spending could
    /// not be counted.
    pub fn keep_budget_with(&self, prices: Prices) {
        let _ = self.budget_prices.set(prices);
    }

    /// `Err` saying why when the mission keeps a dollar budget and
    /// `model`, the one `agent` runs on, has no price (what it spends could
    /// not be counted).
    fn priced(&self, agent: &Agent, model: &str) -> Result<(), String> {
        let Some(prices) = self.budget_prices.get() else {
            return Ok(());
        };
        if prices.get(model).is_some() {
            return Ok(());
        }
        Err(format!(
            "{} runs on model \"{model}\", which has no price, and this mission has a dollar budget (--budget-usd) that could not count what it spends: no task of {} starts until pricing.\"{model}\" is set in .opencode/orch.json; delegate to another agent",
            agent.name, agent.name
        ))
    }

    /// The mission's worktrees, when its writing tasks have them.
    pub fn worktrees(&self) -> Option<Arc<Worktrees>> {
        self.isolation
            .get()
            .map(|isolation| isolation.worktrees.clone())
    }

    /// The runtime with the delegation tools in its registry.
    fn agents(&self) -> std::sync::RwLockReadGuard<'_, AgentRegistry> {
        self.agents
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Agents defined while the mission runs (a plugin added): those whose
    /// names are free become delegable; the ones added come back.
    pub fn add_agents(&self, agents: impl IntoIterator<Item = Agent>) -> Vec<Agent> {
        let mut registry = self
            .agents
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        agents
            .into_iter()
            .filter(|agent| registry.add(agent.clone()).is_ok())
            .collect()
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Take a task of an interrupted mission up again, for `parent`: task
    /// numbers go on after it; a finished one is kept as it ended, its result
    /// handed over once the parent is idle unless it already was (never run
    /// again); an unfinished one becomes a background task that continues
    /// its session from its transcript (or starts over from its prompt if
    /// it never had one).
    pub fn restore(&self, id: &str, mut task: RestoredTask, parent: &str) -> Result<(), String> {
        let number = id
            .strip_prefix("task_")
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| format!("{id}: not a task id"))?;
        self.next_id.fetch_max(number + 1, Ordering::Relaxed);
        // An unfinished task is taken up again only where a new one would
        // start: with a dollar budget, its model must have a price.
        if !task.status.is_finished()
            && let Some(agent) = self.agents().find(&task.agent).cloned()
            && let Err(why) = self.priced(&agent, &(self.setup_for)(&agent).model)
        {
            task.status = TaskStatus::Failed;
            task.error = Some(why);
            task.reported = false;
        }
        if task.status.is_finished() {
            self.tasks.lock().expect("task table lock").insert(
                number,
                TaskRecord {
                    summary: TaskSummary {
                        id: id.to_string(),
                        agent: task.agent,
                        description: task.description,
                        status: task.status,
                        // Handed over like a background result.
                        background: task.background || !task.reported,
                        session: task.session,
                    },
                    parent: parent.to_string(),
                    prompt: task.prompt,
                    result: task.result,
                    error: task.error,
                    turns: task.turns,
                    usage: Usage::default(),
                    cancel: self.cancel.child_token(),
                    unreported: !task.reported,
                },
            );
            self.changed.notify_waiters();
            return Ok(());
        }
        let agent = self
            .agents()
            .find(&task.agent)
            .cloned()
            .ok_or_else(|| format!("{id}: agent \"{}\" no longer exists", task.agent))?;
        let me = self.me.upgrade().ok_or("the mission is shutting down")?;
        let cancel = self.enqueue(
            number,
            &agent,
            Delegated {
                description: &task.description,
                prompt: &task.prompt,
                background: true,
                parent,
            },
        );
        let setup = (self.setup_for)(&agent);
        let start = match task.session {
            Some(session) => Start::Restore(session),
            None => Start::Fresh,
        };
        self.tracker.spawn(async move {
            me.run_task(number, setup, 1, start, cancel).await;
        });
        Ok(())
    }

    /// Record task `number` as queued and say so; its cancellation token.
    fn enqueue(&self, number: u64, agent: &Agent, task: Delegated<'_>) -> CancellationToken {
        let id = format!("task_{number}");
        let cancel = self.cancel.child_token();
        self.tasks.lock().expect("task table lock").insert(
            number,
            TaskRecord {
                summary: TaskSummary {
                    id: id.clone(),
                    agent: agent.name.clone(),
                    description: task.description.to_string(),
                    status: TaskStatus::Queued,
                    background: task.background,
                    session: None,
                },
                parent: task.parent.to_string(),
                prompt: task.prompt.to_string(),
                result: None,
                error: None,
                turns: 0,
                usage: Usage::default(),
                cancel: cancel.clone(),
                unreported: false,
            },
        );
        self.runtime.events.emit(Event::TaskQueued {
            task: id,
            agent: agent.name.clone(),
            description: task.description.to_string(),
            background: task.background,
            parent: task.parent.to_string(),
            prompt: task.prompt.to_string(),
        });
        cancel
    }

    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    pub fn summaries(&self) -> Vec<TaskSummary> {
        self.tasks
            .lock()
            .expect("task table lock")
            .values()
            .map(|record| record.summary.clone())
            .collect()
    }

    /// Queued or running background tasks delegated by `parent`.
    pub fn pending_background(&self, parent: &str) -> usize {
        self.tasks
            .lock()
            .expect("task table lock")
            .values()
            .filter(|r| {
                r.parent == parent && r.summary.background && !r.summary.status.is_finished()
            })
            .count()
    }

    /// Wait until a background task of `parent` has ended, and return one
    /// message reporting every such task not reported yet. `None` when
    /// `parent` has no background task left to wait for.
    pub async fn next_report(&self, parent: &str) -> Option<Reports> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let (reports, waiting) = self.take_reports(parent).await;
            if reports.is_some() {
                return reports;
            }
            if waiting == 0 {
                return None;
            }
            changed.await;
        }
    }

    /// One message reporting every finished background task of `parent`
    /// not reported yet, without waiting; and how many of its background
    /// tasks are still running. The tasks are handed over once: call
    /// [`reported`](Self::reported) once the message is in the parent's
    /// transcript, so the record never says delivered before it was.
    pub async fn take_reports(&self, parent: &str) -> (Option<Reports>, usize) {
        let (lines, tasks, waiting) = {
            let mut records = self.tasks.lock().expect("task table lock");
            let (mut lines, mut tasks) = (Vec::new(), Vec::new());
            let mut waiting = 0;
            for record in records.values_mut() {
                if record.parent != parent || !record.summary.background {
                    continue;
                }
                if !record.summary.status.is_finished() {
                    waiting += 1;
                } else if record.unreported {
                    record.unreported = false;
                    lines.push(report(record));
                    tasks.push(record.summary.id.clone());
                }
            }
            (lines, tasks, waiting)
        };
        if lines.is_empty() {
            return (None, waiting);
        }
        // Their ends are on record before the report reaches the caller's
        // transcript.
        self.runtime.events.flush().await;
        let mut message = format!(
            "Background task{} finished:\n\n{}",
            if lines.len() == 1 { "" } else { "s" },
            lines.join("\n\n")
        );
        if waiting > 0 {
            message.push_str(&format!("\n\n{waiting} background task(s) still running."));
        }
        (Some(Reports { message, tasks }), waiting)
    }

    /// The reports of `tasks` reached their parent's transcript: on record.
    /// (Killed before this, a resume finds them there by their headers.)
    pub fn reported(&self, tasks: Vec<String>) {
        for task in tasks {
            self.runtime.events.emit(Event::TaskReported { task });
        }
    }

    /// Cancel every task and wait for all of them to end.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    fn depth_of(&self, session: &str) -> u32 {
        self.depths
            .lock()
            .expect("depth table lock")
            .get(session)
            .copied()
            .unwrap_or(0)
    }

    fn update(&self, number: u64, change: impl FnOnce(&mut TaskRecord)) {
        if let Some(record) = self.tasks.lock().expect("task table lock").get_mut(&number) {
            change(record);
        }
    }

    fn find(&self, task_id: &str) -> Result<u64, String> {
        let number = task_id
            .strip_prefix("task_")
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|n| self.tasks.lock().expect("task table lock").contains_key(n));
        number.ok_or_else(|| {
            format!("no task \"{task_id}\"; list_tasks shows the tasks of this mission")
        })
    }

    async fn run_task(
        &self,
        number: u64,
        setup: SessionSetup,
        depth: u32,
        start: Start,
        cancel: CancellationToken,
    ) {
        let (id, prompt, description) = {
            let tasks = self.tasks.lock().expect("task table lock");
            let record = &tasks[&number];
            (
                record.summary.id.clone(),
                record.prompt.clone(),
                record.summary.description.clone(),
            )
        };
        let agent = setup.agent.name.clone();
        let events = &self.runtime.events;
        let admitted = tokio::select! {
            admitted = self.admission.admit(&agent, &setup.model) => admitted,
            _ = cancel.cancelled() => {
                self.finish(number, &id, &agent, TaskStatus::Cancelled, None, None);
                return;
            }
        };
        let acquired = match &start {
            Start::Fresh => self.pool.acquire(&self.runtime, &setup),
            Start::Restore(id) => super::Session::restore(self.runtime.clone(), setup.clone(), id)
                .map(|session| (session, false)),
        };
        let (mut session, reused) = match acquired {
            Ok(pair) => pair,
            Err(err) => {
                let error = format!("cannot create a session: {err}");
                self.finish(number, &id, &agent, TaskStatus::Failed, None, Some(error));
                return;
            }
        };
        let session_id = session.id().to_string();
        let tree = self.worktree_for(&id, &prompt, &setup.agent).await;
        if let Some(tree) = &tree {
            session.set_root(Arc::new(tree.path.clone()));
        }
        self.depths
            .lock()
            .expect("depth table lock")
            .insert(session_id.clone(), depth);
        self.update(number, |record| {
            record.summary.status = TaskStatus::Running;
            record.summary.session = Some(session_id.clone());
        });
        events.emit(Event::TaskStarted {
            task: id.clone(),
            agent: agent.clone(),
            session: session_id.clone(),
            reused,
            pool: self.pool.stats(),
            worktree: tree.as_ref().map(|tree| {
                tree.path
                    .strip_prefix(&*self.runtime.root)
                    .unwrap_or(&tree.path)
                    .display()
                    .to_string()
            }),
        });
        // A session killed before its first message reached the transcript
        // reopens empty: it starts over from the task's prompt.
        let report = match start {
            Start::Restore(_) if !session.messages().is_empty() => session.proceed(&cancel).await,
            Start::Fresh | Start::Restore(_) => session.run(&prompt, &cancel).await,
        };
        self.update(number, |record| {
            record.turns = report.turns;
            record.usage = report.usage;
        });
        let mut status = match report.outcome {
            SessionOutcome::Completed => TaskStatus::Completed,
            SessionOutcome::Cancelled => TaskStatus::Cancelled,
            SessionOutcome::MaxTurns
            | SessionOutcome::BudgetExceeded
            | SessionOutcome::Repeating
            | SessionOutcome::Failed => TaskStatus::Failed,
        };
        session.set_root(self.runtime.root.clone());
        if status == TaskStatus::Completed {
            self.pool.release(session);
        }
        let (mut result, mut error) = (report.final_text, report.error);
        if let Some(tree) = tree {
            // Nothing the task started goes on writing its worktree.
            if let Some(isolation) = self.isolation.get() {
                isolation.jobs.kill_session(&session_id).await;
            }
            match self.merge_back(&id, &description, tree, status).await {
                Ok(Some(note)) => result = format!("{result}\n\n{note}"),
                Ok(None) => {}
                Err(why) => {
                    status = TaskStatus::Failed;
                    error = Some(why);
                }
            }
        }
        // On record as finished before its slot goes to the next task, so
        // no task is seen starting in a slot that is still taken.
        self.finish(number, &id, &agent, status, Some(result), error);
        drop(admitted);
    }

    /// The worktree task `id` runs in: one of its own when the mission
    /// isolates writing tasks and its agent may write. A worktree that
    /// cannot be made is a warning, and the task shares the project's tree.
    async fn worktree_for(&self, id: &str, prompt: &str, agent: &Agent) -> Option<TaskTree> {
        let isolation = self.isolation.get()?;
        if crate::sandbox::Profile::of(agent) != crate::sandbox::Profile::Write {
            return None;
        }
        let worktrees = isolation.worktrees.clone();
        let (task, brief) = (id.to_string(), prompt.to_string());
        let made = tokio::task::spawn_blocking(move || worktrees.start(&task, &brief))
            .await
            .map_err(|err| err.to_string())
            .and_then(|made| made);
        match made {
            Ok(tree) => Some(tree),
            Err(err) => {
                self.runtime.events.emit(Event::Warning {
                    session: None,
                    message: format!(
                        "{id} works in the project's own tree: its worktree could not be made ({err})"
                    ),
                });
                None
            }
        }
    }

    /// After task `id` ended with `status`: a completed task's change is
    /// merged into the project (what the delegating agent is told about it
    /// comes back); a failed one's never lands; a cancelled one keeps its
    /// worktree, so a resumed mission picks it up again.
    async fn merge_back(
        &self,
        id: &str,
        description: &str,
        tree: TaskTree,
        status: TaskStatus,
    ) -> Result<Option<String>, String> {
        let Some(isolation) = self.isolation.get() else {
            return Ok(None);
        };
        let blocking = |f: fn(&Worktrees, &str, &TaskTree) -> Result<Landing, String>| {
            let worktrees = isolation.worktrees.clone();
            let (task, tree) = (id.to_string(), tree.clone());
            async move {
                tokio::task::spawn_blocking(move || f(&worktrees, &task, &tree))
                    .await
                    .map_err(|err| err.to_string())
                    .and_then(|landed| landed)
            }
        };
        match status {
            TaskStatus::Cancelled => return Ok(None),
            TaskStatus::Completed => {}
            _ if isolation.keep_failed => {
                let kept =
                    blocking(|w, task, tree| w.keep(task, tree).map(|()| Landing::Nothing)).await;
                return Ok(kept
                    .err()
                    .map(|err| format!("[orch: its worktree could not be kept: {err}]")));
            }
            _ => {
                // What it did is kept under its ref until the mission ends.
                let _ = blocking(|w, task, tree| {
                    let _ = w.keep(task, tree);
                    w.remove(tree).map(|()| Landing::Nothing)
                })
                .await;
                return Ok(None);
            }
        }
        // Landed, conflicted (both sides are kept under the task's refs) or
        // refused: the worktree has served either way.
        let landing = blocking(|w, task, tree| {
            let landing = w.land(task, tree)?;
            match landing {
                Landing::Refused(_) => drop(w.remove(tree)),
                _ => w.remove(tree)?,
            }
            Ok(landing)
        })
        .await?;
        let events = &self.runtime.events;
        match landing {
            Landing::Nothing => Ok(Some("[orch: the task changed no file]".into())),
            Landing::Landed(files) => {
                events.emit(Event::TaskLanded {
                    task: id.to_string(),
                    files: files.clone(),
                    conflicts: Vec::new(),
                    item: None,
                });
                Ok(Some(format!(
                    "[orch: its change landed in the project: {}]",
                    files.join(", ")
                )))
            }
            Landing::Refused(why) => Err(why),
            Landing::Conflict { files, commit } => {
                let shown: Vec<String> = files
                    .iter()
                    .map(|file| {
                        let hunks: Vec<String> = file
                            .hunks
                            .iter()
                            .map(|(from, to)| format!("{from}-{to}"))
                            .collect();
                        format!("{} (lines {})", file.path, hunks.join(", "))
                    })
                    .collect();
                let paths: Vec<String> = files.iter().map(|file| file.path.clone()).collect();
                let added = isolation
                    .todo
                    .add(crate::todo::NewItem {
                        parent: None,
                        id: None,
                        text: format!(
                            "Resolve the merge conflict of {id} ({description}) in {}",
                            shown.join("; ")
                        ),
                        meta: Default::default(),
                    })
                    .await;
                let item = added.ok().and_then(|added| added.item.id);
                if let Some(item) = &item {
                    isolation
                        .worktrees
                        .await_resolution(item, &commit, paths.clone());
                }
                events.emit(Event::TaskLanded {
                    task: id.to_string(),
                    files: Vec::new(),
                    conflicts: paths,
                    item: item.clone(),
                });
                let next = match &item {
                    Some(item) => format!(
                        "plan item {item} was added for it: delegate it to a Worker naming {item}; its worktree will hold both sides with conflict markers to resolve"
                    ),
                    None => "the plan item for it could not be added".to_string(),
                };
                Ok(Some(format!(
                    "[orch: its change conflicts with work that landed first, in {}; nothing of it landed; {next}]",
                    shown.join("; ")
                )))
            }
        }
    }

    fn finish(
        &self,
        number: u64,
        id: &str,
        agent: &str,
        status: TaskStatus,
        result: Option<String>,
        error: Option<String>,
    ) {
        let mut turns = 0;
        self.update(number, |record| {
            record.summary.status = status;
            record.result = result.clone();
            record.error = error.clone();
            record.unreported = record.summary.background;
            turns = record.turns;
        });
        self.runtime.events.emit(Event::TaskFinished {
            task: id.to_string(),
            agent: agent.to_string(),
            status,
            error,
            result,
            turns,
        });
        self.changed.notify_waiters();
    }
}

/// One finished task as the delegating agent reads it.
fn report(record: &TaskRecord) -> String {
    let summary = &record.summary;
    let mut text = format!(
        "{} ({}, \"{}\"): {}",
        summary.id,
        summary.agent,
        summary.description,
        summary.status.name()
    );
    if record.turns > 0 {
        text.push_str(&format!(
            " after {} turn{}",
            record.turns,
            if record.turns == 1 { "" } else { "s" }
        ));
    }
    if let Some(error) = &record.error {
        text.push_str(&format!("\nerror: {error}"));
    }
    match record.result.as_deref().map(str::trim) {
        Some(result) if !result.is_empty() => text.push_str(&format!("\nresult:\n{result}")),
        _ => {}
    }
    text
}

/// A task of an interrupted mission, as its records left it.
#[derive(Debug, Clone)]
pub struct RestoredTask {
    pub agent: String,
    pub description: String,
    pub prompt: String,
    pub status: TaskStatus,
    pub background: bool,
    pub session: Option<String>,
    pub result: Option<String>,
    pub error: Option<String>,
    pub turns: u32,
    /// Its result already reached the delegating agent.
    pub reported: bool,
}

/// Finished background tasks handed to their parent as one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reports {
    pub message: String,
    /// Their ids, for [`Tasks::reported`].
    pub tasks: Vec<String>,
}

/// What a task was given when it was delegated.
struct Delegated<'a> {
    description: &'a str,
    prompt: &'a str,
    background: bool,
    /// The session that delegated it.
    parent: &'a str,
}

#[async_trait]
impl Delegator for Tasks {
    async fn delegate(
        &self,
        caller: &ToolContext,
        request: DelegateRequest,
    ) -> Result<String, String> {
        let agent = {
            let agents = self.agents();
            agents.find(&request.agent).cloned().ok_or_else(|| {
                format!(
                    "no agent \"{}\"; agents: {}",
                    request.agent,
                    agents.names().join(", ")
                )
            })?
        };
        if agent.name.eq_ignore_ascii_case(&caller.agent) {
            return Err(format!(
                "{} cannot delegate to itself; pick another agent",
                agent.name
            ));
        }
        let depth = self.depth_of(&caller.session) + 1;
        if depth > self.max_depth {
            return Err(format!(
                "delegation is limited to depth {}: {} cannot start tasks of its own; do the work or report back",
                self.max_depth, caller.agent
            ));
        }
        let me = self.me.upgrade().ok_or("the mission is shutting down")?;
        if self.cancel.is_cancelled() {
            return Err("the mission is stopping; no new tasks start".into());
        }
        let setup = (self.setup_for)(&agent);
        self.priced(&agent, &setup.model)?;
        let number = self.next_id.fetch_add(1, Ordering::Relaxed);
        let id = format!("task_{number}");
        let cancel = self.enqueue(
            number,
            &agent,
            Delegated {
                description: &request.description,
                prompt: &request.prompt,
                background: request.background,
                parent: &caller.session,
            },
        );
        let (done_tx, done_rx) = oneshot::channel();
        let task_cancel = cancel.clone();
        self.tracker.spawn(async move {
            me.run_task(number, setup, depth, Start::Fresh, task_cancel)
                .await;
            let _ = done_tx.send(());
        });
        if request.background {
            return Ok(format!(
                "started {id} ({}): {}. Its result arrives as a message when it ends; get_task_result(\"{id}\") shows its status meanwhile.",
                agent.name, request.description
            ));
        }
        tokio::select! {
            _ = done_rx => {}
            _ = caller.cancel.cancelled() => {
                cancel.cancel();
                return Err(format!("{id} was cancelled with the delegating call"));
            }
        }
        // Its end is on record before the caller's transcript has its result.
        self.runtime.events.flush().await;
        let tasks = self.tasks.lock().expect("task table lock");
        let record = &tasks[&number];
        let text = report(record);
        if record.summary.status == TaskStatus::Completed {
            Ok(text)
        } else {
            Err(text)
        }
    }

    fn task_result(&self, task_id: &str) -> Result<String, String> {
        let number = self.find(task_id)?;
        let mut tasks = self.tasks.lock().expect("task table lock");
        let record = tasks.get_mut(&number).ok_or("task vanished")?;
        Ok(match record.summary.status {
            TaskStatus::Queued => format!(
                "{task_id} ({}) is queued, waiting for a free slot",
                record.summary.agent
            ),
            TaskStatus::Running => format!(
                "{task_id} ({}) is running; no result yet{}",
                record.summary.agent,
                if record.summary.background {
                    " — it will arrive as a message when it ends"
                } else {
                    ""
                }
            ),
            _ => {
                record.unreported = false;
                report(record)
            }
        })
    }

    fn list_tasks(&self, status: Option<&str>) -> String {
        let tasks = self.tasks.lock().expect("task table lock");
        let rows: Vec<String> = tasks
            .values()
            .filter(|r| match status {
                None | Some("all") => true,
                Some(wanted) => r.summary.status.name() == wanted,
            })
            .map(|r| {
                format!(
                    "{}  {}  {}{}  {}",
                    r.summary.id,
                    r.summary.agent,
                    r.summary.status.name(),
                    if r.summary.background {
                        " (background)"
                    } else {
                        ""
                    },
                    r.summary.description
                )
            })
            .collect();
        if rows.is_empty() {
            "no tasks".into()
        } else {
            rows.join("\n")
        }
    }

    fn cancel_task(&self, task_id: &str) -> Result<String, String> {
        let number = self.find(task_id)?;
        let tasks = self.tasks.lock().expect("task table lock");
        let record = &tasks[&number];
        if record.summary.status.is_finished() {
            return Err(format!(
                "{task_id} already ended ({})",
                record.summary.status.name()
            ));
        }
        record.cancel.cancel();
        Ok(format!("cancelling {task_id}"))
    }

    fn list_agents(&self) -> String {
        self.agents()
            .iter()
            .map(|agent| {
                format!(
                    "{}: {} (tools: {})",
                    agent.name,
                    agent.description,
                    agent.tools.join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

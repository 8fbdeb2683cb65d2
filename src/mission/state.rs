//! A mission on disk: `.opencode/missions/<id>/state.json` (the state, a
//! fold of the mission's events, rewritten atomically) and `events.jsonl`
//! (every event, appended as it happens). `orch status`, `orch monitor`,
//! `orch cancel` and `orch resume` read these files; nothing else is needed
//! to pick a mission up again.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::events::{
    Envelope, Event, EventBus, EventSink, MissionOutcome, PlanCounts, PoolStats, TaskStatus,
    VerifyResult,
};
use crate::files::{self, Durability};
use crate::models::Prices;
use crate::process::GroupRecord;
use crate::provider::Usage;

/// Where a mission stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissionStatus {
    Running,
    Complete,
    Stopped,
    Cancelled,
}

/// One task as the state file keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskState {
    pub agent: String,
    pub description: String,
    pub status: TaskStatus,
    pub background: bool,
    pub parent: String,
    pub prompt: String,
    #[serde(default)]
    pub session: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    /// What a finished task answered.
    #[serde(default)]
    pub result: Option<String>,
    #[serde(default)]
    pub turns: u32,
    /// A finished background task's result reached the delegating agent.
    #[serde(default)]
    pub reported: bool,
    /// Its own worktree, relative to the project root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worktree: Option<String>,
    /// The files its change landed in the project.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub landed: Vec<String>,
    /// The files its change conflicts in (nothing landed), and the plan
    /// item made to resolve them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict_item: Option<String>,
}

/// A background job as the state file keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    pub label: String,
    pub command: String,
    /// `running`, `done`, `failed` or `killed`.
    pub status: String,
    #[serde(default)]
    pub exit_code: Option<i32>,
}

/// A session's last known activity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionState {
    pub agent: String,
    /// The model it talks to (usage per model, for cost).
    #[serde(default)]
    pub model: String,
    /// `thinking`, `running <tool>`, `idle`, or the outcome once finished.
    pub activity: String,
    pub usage: Usage,
}

/// The mission's state: what `orch status` shows and `orch resume` needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MissionState {
    pub id: String,
    pub goal: String,
    pub status: MissionStatus,
    #[serde(default)]
    pub reason: Option<String>,
    pub iteration: u32,
    pub max_iterations: u32,
    pub started_ms: u64,
    pub updated_ms: u64,
    /// The journal's number of the last event folded in: the journal's
    /// events after it bring this state up to date.
    #[serde(default)]
    pub seq: u64,
    /// The process running the mission (for `orch cancel` and stale checks).
    pub pid: u32,
    pub commander_session: String,
    pub tasks: BTreeMap<String, TaskState>,
    /// Background jobs started with `run_background`.
    #[serde(default)]
    pub jobs: BTreeMap<String, JobState>,
    pub sessions: BTreeMap<String, SessionState>,
    pub pool: PoolStats,
    pub usage: Usage,
    /// Usage per model, for cost.
    pub usage_by_model: BTreeMap<String, Usage>,
    /// Usage per agent (every session of that agent).
    #[serde(default)]
    pub usage_by_agent: BTreeMap<String, Usage>,
    #[serde(default)]
    pub cost_usd: Option<f64>,
    /// Cost per agent, written beside `cost_usd`; an agent one of whose
    /// models has no price is left out.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cost_by_agent: BTreeMap<String, f64>,
    #[serde(default)]
    pub plan: Option<PlanCounts>,
    #[serde(default)]
    pub last_gate: Option<GateSummary>,
    /// The token budget, when one is set.
    #[serde(default)]
    pub budget_tokens: Option<u64>,
    /// The dollar budget, when one is set.
    #[serde(default)]
    pub budget_usd: Option<f64>,
    /// The process groups the mission's commands ran in when this was
    /// written: a later run kills those a killed orch left behind.
    #[serde(default)]
    pub processes: Vec<GroupRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateSummary {
    pub iteration: u32,
    pub passed: bool,
    pub open_items: Vec<String>,
    pub sync_issues: Vec<String>,
    pub verify: Vec<VerifyResult>,
    #[serde(default)]
    pub note: Option<String>,
}

impl MissionState {
    pub fn new(id: &str, goal: &str, max_iterations: u32, commander_session: &str) -> Self {
        let now = crate::events::now_ms();
        MissionState {
            id: id.into(),
            goal: goal.into(),
            status: MissionStatus::Running,
            reason: None,
            iteration: 0,
            max_iterations,
            started_ms: now,
            updated_ms: now,
            seq: 0,
            pid: std::process::id(),
            commander_session: commander_session.into(),
            tasks: BTreeMap::new(),
            jobs: BTreeMap::new(),
            sessions: BTreeMap::new(),
            pool: PoolStats::default(),
            usage: Usage::default(),
            usage_by_model: BTreeMap::new(),
            usage_by_agent: BTreeMap::new(),
            cost_usd: None,
            cost_by_agent: BTreeMap::new(),
            plan: None,
            last_gate: None,
            budget_tokens: None,
            budget_usd: None,
            processes: Vec::new(),
        }
    }

    /// Tasks waiting for admission.
    pub fn queued(&self) -> usize {
        self.tasks
            .values()
            .filter(|t| t.status == TaskStatus::Queued)
            .count()
    }

    /// Fold one event in. Returns whether anything worth persisting changed.
    pub fn apply(&mut self, envelope: &Envelope) -> bool {
        self.updated_ms = envelope.ts_ms;
        self.seq = envelope.seq;
        match &envelope.event {
            Event::MissionStarted {
                max_iterations,
                commander_session,
                pid,
                ..
            } => {
                self.max_iterations = *max_iterations;
                self.commander_session = commander_session.clone();
                self.status = MissionStatus::Running;
                self.reason = None;
                // A journal written before events carried the pid says 0;
                // the checkpoint's number stands then.
                if *pid != 0 {
                    self.pid = *pid;
                }
            }
            Event::PlanUpdated { counts } => self.plan = Some(*counts),
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
                self.last_gate = Some(GateSummary {
                    iteration: *iteration,
                    passed: *passed,
                    open_items: open_items.clone(),
                    sync_issues: sync_issues.clone(),
                    verify: verify.clone(),
                    note: note.clone(),
                });
            }
            Event::MissionFinished {
                outcome,
                reason,
                iterations,
                ..
            } => {
                self.status = match outcome {
                    MissionOutcome::Complete => MissionStatus::Complete,
                    MissionOutcome::Stopped => MissionStatus::Stopped,
                    MissionOutcome::Cancelled => MissionStatus::Cancelled,
                };
                self.reason = Some(reason.clone());
                self.iteration = *iterations;
            }
            Event::TaskQueued {
                task,
                agent,
                description,
                background,
                parent,
                prompt,
            } => {
                self.tasks.insert(
                    task.clone(),
                    TaskState {
                        agent: agent.clone(),
                        description: description.clone(),
                        status: TaskStatus::Queued,
                        background: *background,
                        parent: parent.clone(),
                        prompt: prompt.clone(),
                        session: None,
                        error: None,
                        result: None,
                        turns: 0,
                        reported: false,
                        worktree: None,
                        landed: Vec::new(),
                        conflicts: Vec::new(),
                        conflict_item: None,
                    },
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
                if let Some(state) = self.tasks.get_mut(task) {
                    state.status = TaskStatus::Running;
                    state.session = Some(session.clone());
                    state.worktree = worktree.clone();
                }
            }
            Event::TaskFinished {
                task,
                status,
                error,
                result,
                turns,
                ..
            } => {
                if let Some(state) = self.tasks.get_mut(task) {
                    state.status = *status;
                    state.error = error.clone();
                    state.result = result.clone();
                    state.turns = *turns;
                }
            }
            Event::TaskReported { task } => {
                if let Some(state) = self.tasks.get_mut(task) {
                    state.reported = true;
                }
            }
            Event::TaskLanded {
                task,
                files,
                conflicts,
                item,
            } => {
                if let Some(state) = self.tasks.get_mut(task) {
                    state.landed = files.clone();
                    state.conflicts = conflicts.clone();
                    state.conflict_item = item.clone();
                }
            }
            Event::SessionStarted {
                session,
                agent,
                model,
                ..
            } => {
                self.sessions.insert(
                    session.clone(),
                    SessionState {
                        agent: agent.clone(),
                        model: model.clone(),
                        activity: "idle".into(),
                        usage: Usage::default(),
                    },
                );
            }
            Event::ModelRequest { session, .. } => {
                self.set_activity(session, "thinking".into());
                return false;
            }
            Event::ToolCallBegin { session, tool, .. } => {
                self.set_activity(session, format!("running {tool}"));
                return false;
            }
            Event::SessionFinished {
                session, outcome, ..
            } => {
                let activity = serde_json::to_value(outcome)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                self.set_activity(session, activity);
            }
            Event::Usage {
                session,
                agent,
                usage,
            } => {
                self.usage.add(usage);
                self.usage_by_agent
                    .entry(agent.clone())
                    .or_default()
                    .add(usage);
                if let Some(state) = self.sessions.get_mut(session) {
                    state.usage.add(usage);
                    self.usage_by_model
                        .entry(state.model.clone())
                        .or_default()
                        .add(usage);
                }
            }
            Event::TextDelta { .. }
            | Event::ModelRetry { .. }
            | Event::ModelResponse { .. }
            | Event::ToolCallEnd { .. }
            | Event::ApprovalRequested { .. }
            | Event::ApprovalResolved { .. }
            | Event::PluginLog { .. }
            | Event::PluginMetric { .. }
            | Event::Warning { .. }
            | Event::ToolsChanged { .. }
            | Event::ContextCompacted { .. }
            | Event::MemoryEvicted { .. } => return false,
            Event::BackgroundStarted {
                job,
                label,
                command,
                ..
            } => {
                self.jobs.insert(
                    job.clone(),
                    JobState {
                        label: label.clone(),
                        command: command.clone(),
                        status: "running".into(),
                        exit_code: None,
                    },
                );
            }
            Event::BackgroundFinished {
                job,
                status,
                exit_code,
            } => {
                if let Some(state) = self.jobs.get_mut(job) {
                    state.status = status.clone();
                    state.exit_code = *exit_code;
                }
            }
        }
        true
    }

    fn set_activity(&mut self, session: &str, activity: String) {
        if let Some(state) = self.sessions.get_mut(session) {
            state.activity = activity;
        }
    }

    /// Cost in US dollars from the per-model usage, when every model used
    /// has a price.
    pub fn cost(&self, pricing: &Prices) -> Option<f64> {
        cost_of(&self.usage_by_model, pricing)
    }

    /// Cost in US dollars per agent, from its sessions' usage at their
    /// models' prices; an agent one of whose models has no price is left out.
    fn agent_costs(&self, pricing: &Prices) -> BTreeMap<String, f64> {
        let mut costs: BTreeMap<&str, Option<f64>> = BTreeMap::new();
        for session in self.sessions.values() {
            let cost = pricing
                .get(&session.model)
                .map(|price| session.usage.cost(&price));
            let entry = costs.entry(&session.agent).or_insert(Some(0.0));
            *entry = entry.zip(cost).map(|(sum, cost)| sum + cost);
        }
        costs
            .into_iter()
            .filter_map(|(agent, cost)| Some((agent.to_string(), cost?)))
            .collect()
    }

    /// Write the costs at `pricing` into the state (`cost_usd`,
    /// `cost_by_agent`).
    fn price(&mut self, pricing: &Prices) {
        self.cost_usd = self.cost(pricing);
        self.cost_by_agent = self.agent_costs(pricing);
    }
}

/// Paths of one mission.
#[derive(Debug, Clone)]
pub struct MissionPaths {
    pub dir: PathBuf,
}

impl MissionPaths {
    pub fn new(root: &Path, id: &str) -> Self {
        MissionPaths {
            dir: crate::paths::mission(root, id),
        }
    }

    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    pub fn journal(&self) -> PathBuf {
        self.dir.join("events.jsonl")
    }

    /// Created by `orch cancel`; the running mission watches for it.
    pub fn cancel_request(&self) -> PathBuf {
        self.dir.join("cancel")
    }
}

/// The id of the newest mission of the project, from `missions/latest`.
pub fn latest_mission(root: &Path) -> Option<String> {
    let text = std::fs::read_to_string(crate::paths::missions(root).join("latest")).ok()?;
    let id = text.trim();
    (!id.is_empty()).then(|| id.to_string())
}

pub fn set_latest(root: &Path, id: &str) -> std::io::Result<()> {
    files::replace(
        &crate::paths::missions(root).join("latest"),
        format!("{id}\n").as_bytes(),
        Durability::Crash,
    )
}

/// The mission's state as of its last recorded event: the state file (a
/// checkpoint) with the journal's later events folded in.
pub fn read_state(root: &Path, id: &str) -> Result<MissionState, String> {
    let paths = MissionPaths::new(root, id);
    let path = paths.state();
    let text =
        std::fs::read_to_string(&path).map_err(|err| format!("{}: {err}", path.display()))?;
    let mut state: MissionState =
        serde_json::from_str(&text).map_err(|err| format!("{}: {err}", path.display()))?;
    for envelope in journal_after(&paths.journal(), state.seq) {
        state.apply(&envelope);
    }
    Ok(state)
}

/// The complete events of the journal at `path` numbered after `seq`, in
/// order. Read from the end, so a long journal costs only its tail; a torn
/// last line (a crash mid-write) is left out.
pub fn journal_after(path: &Path, seq: u64) -> Vec<Envelope> {
    use std::io::{Read as _, Seek as _};
    let Ok(mut file) = File::open(path) else {
        return Vec::new();
    };
    let length = file.metadata().map_or(0, |meta| meta.len());
    let mut span: u64 = 256 * 1024;
    loop {
        let start = length.saturating_sub(span);
        let mut tail = Vec::new();
        if file.seek(std::io::SeekFrom::Start(start)).is_err()
            || file.read_to_end(&mut tail).is_err()
        {
            return Vec::new();
        }
        let mut lines = tail.split(|&b| b == b'\n');
        if start > 0 {
            // The first line is cut by the window.
            lines.next();
        }
        let events: Vec<Envelope> = lines
            .filter_map(|line| serde_json::from_slice::<Envelope>(line).ok())
            .collect();
        let reaches_back = events.first().is_some_and(|first| first.seq <= seq + 1);
        if start == 0 || reaches_back {
            return events.into_iter().filter(|e| e.seq > seq).collect();
        }
        span *= 4;
    }
}

/// The state file is written at most this often (and when a mission starts
/// and ends): it is a checkpoint, and the journal holds every event since,
/// so [`read_state`] is exact whenever it is read.
const WRITE_INTERVAL: Duration = Duration::from_millis(200);

/// Cost in US dollars of usage per model, when every model has a price.
pub fn cost_of(usage_by_model: &BTreeMap<String, Usage>, pricing: &Prices) -> Option<f64> {
    let mut total = 0.0;
    for (model, usage) in usage_by_model {
        total += usage.cost(&pricing.get(model)?);
    }
    Some(total)
}

/// Folds events into `state.json`.
pub struct StateSink {
    path: PathBuf,
    inner: Mutex<StateInner>,
}

struct StateInner {
    /// Says once when the state file cannot be written.
    warn: Option<Warn>,
    state: MissionState,
    pricing: Prices,
    last_write: Option<Instant>,
    dirty: bool,
}

impl StateSink {
    pub fn new(paths: &MissionPaths, state: MissionState, pricing: Prices) -> Self {
        StateSink {
            path: paths.state(),
            inner: Mutex::new(StateInner {
                state,
                pricing,
                last_write: None,
                dirty: false,
                warn: None,
            }),
        }
    }

    /// Record the mission's budgets (shown beside what was spent; a
    /// [`Budget`](super::budget::Budget) enforces them).
    pub fn with_budgets(self, tokens: Option<u64>, usd: Option<f64>) -> Self {
        let mut inner = self.inner.lock().expect("state lock");
        inner.state.budget_tokens = tokens;
        inner.state.budget_usd = usd;
        drop(inner);
        self
    }

    /// Warn once on `events`, and through `alarm`, when the state file
    /// cannot be written.
    pub fn warning_on(self, events: &Arc<EventBus>, alarm: Option<Alarm>) -> Self {
        let mut warn = Warn::new(events, true);
        warn.alarm = alarm;
        self.inner.lock().expect("state lock").warn = Some(warn);
        self
    }

    pub fn snapshot(&self) -> MissionState {
        let inner = self.inner.lock().expect("state lock");
        let mut state = inner.state.clone();
        state.price(&inner.pricing);
        state
    }

    /// Write the current state now.
    pub fn persist(&self) -> std::io::Result<()> {
        let mut inner = self.inner.lock().expect("state lock");
        let StateInner { state, pricing, .. } = &mut *inner;
        state.price(pricing);
        inner.dirty = false;
        inner.last_write = Some(Instant::now());
        self.write(&mut inner.state)
    }

    /// Keep the process groups in the state file as they start and end,
    /// at the checkpoint cadence, while `sink` lives: a group started by a
    /// command that blocks for long (a `bash` running the tests) is recorded
    /// even when no event follows it. The thread ends soon after the sink.
    pub fn record_groups(sink: &Arc<StateSink>) -> std::io::Result<()> {
        let sink = Arc::downgrade(sink);
        std::thread::Builder::new()
            .name("orch-state-groups".into())
            .spawn(move || {
                let mut seen = 0;
                loop {
                    let latest =
                        crate::process::wait_for_group_change(seen, Duration::from_millis(500));
                    let Some(sink) = sink.upgrade() else {
                        return;
                    };
                    if latest == seen {
                        continue;
                    }
                    seen = latest;
                    let wait = sink
                        .inner
                        .lock()
                        .expect("state lock")
                        .last_write
                        .map_or(Duration::ZERO, |at| {
                            WRITE_INTERVAL.saturating_sub(at.elapsed())
                        });
                    std::thread::sleep(wait);
                    sink.flush_groups();
                }
            })
            .map(drop)
    }

    /// Write the state if the live groups differ from the ones it lists.
    fn flush_groups(&self) {
        let mut inner = self.inner.lock().expect("state lock");
        if inner.state.processes != crate::process::live_groups() {
            self.checkpoint(&mut inner);
        }
    }

    /// Write the state as it stands. A failed state write must not stop the
    /// mission (the journal still has every event); it is said once.
    fn checkpoint(&self, inner: &mut StateInner) {
        let StateInner {
            state,
            pricing,
            last_write,
            dirty,
            warn,
            ..
        } = inner;
        state.price(pricing);
        if let Err(err) = self.write(state)
            && let Some(warn) = warn
        {
            warn.once(format!("{}: {err}", self.path.display()));
        }
        *dirty = false;
        *last_write = Some(Instant::now());
    }

    fn write(&self, state: &mut MissionState) -> std::io::Result<()> {
        state.processes = crate::process::live_groups();
        let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
        files::replace(&self.path, &bytes, Durability::Crash)
    }
}

impl EventSink for StateSink {
    fn write(&self, envelope: &Envelope) {
        let mut inner = self.inner.lock().expect("state lock");
        let StateInner {
            state,
            last_write,
            dirty,
            ..
        } = &mut *inner;
        let changed = state.apply(envelope);
        *dirty |= changed;
        let important = matches!(
            envelope.event,
            Event::MissionStarted { .. } | Event::MissionFinished { .. }
        );
        let due = last_write.is_none_or(|at| at.elapsed() >= WRITE_INTERVAL);
        if *dirty && (important || due) {
            self.checkpoint(&mut inner);
        }
    }
}

/// Appends every event to `events.jsonl`, one line per event, each with a
/// single write, so a crash tears at most the last line. It runs on the
/// bus's recorder thread; a failed write is one warning naming the file.
pub struct Journal {
    file: Mutex<File>,
    path: PathBuf,
    warn: Warn,
}

impl Journal {
    pub fn open(path: &Path, events: &Arc<EventBus>) -> std::io::Result<Journal> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Journal {
            file: Mutex::new(file),
            path: path.to_path_buf(),
            warn: Warn::new(events, false),
        })
    }

    /// Say a failed write through `alarm` too.
    pub fn alarm(mut self, alarm: Alarm) -> Journal {
        self.warn.alarm = Some(alarm);
        self
    }
}

impl EventSink for Journal {
    fn write(&self, envelope: &Envelope) {
        let Ok(mut line) = serde_json::to_string(envelope) else {
            return;
        };
        crate::secrets::redact_in(&mut line);
        line.push('\n');
        if let Err(err) = self
            .file
            .lock()
            .expect("journal lock")
            .write_all(line.as_bytes())
        {
            self.warn.once(format!(
                "{}: {err}; later events are not recorded there",
                self.path.display()
            ));
        }
    }
}

/// Where a record that cannot be written is said besides the bus: the
/// journal may be the record failing, and `--json` shows only the journal,
/// so the command line gives a way out of the frontends (stderr). It returns
/// whether it said it (it does not while the live view owns the screen).
pub type Alarm = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// One warning the first time a record cannot be written: through the
/// alarm, and as an event on the bus (the warning itself is recorded too:
/// it must not loop).
struct Warn {
    events: std::sync::Weak<EventBus>,
    said: std::sync::atomic::AtomicBool,
    alarm: Option<Alarm>,
    /// Whether the event goes out even when the alarm said it: the state
    /// file's warning belongs in the journal; the journal's cannot go there.
    record: bool,
}

impl Warn {
    fn new(events: &Arc<EventBus>, record: bool) -> Warn {
        Warn {
            events: Arc::downgrade(events),
            said: std::sync::atomic::AtomicBool::new(false),
            alarm: None,
            record,
        }
    }

    fn once(&self, message: String) {
        if self.said.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let alarmed = self.alarm.as_ref().is_some_and(|alarm| alarm(&message));
        if (self.record || !alarmed)
            && let Some(events) = self.events.upgrade()
        {
            events.emit(Event::Warning {
                session: None,
                message,
            });
        }
    }
}

/// The sequence number of the last complete event of the journal at
/// `path` (0 when there is none): a resumed mission numbers on from it.
pub fn last_seq(path: &Path) -> u64 {
    use std::io::{Read as _, Seek as _};
    let Ok(mut file) = File::open(path) else {
        return 0;
    };
    let length = file.metadata().map_or(0, |meta| meta.len());
    let start = length.saturating_sub(256 * 1024);
    let mut tail = Vec::new();
    if file.seek(std::io::SeekFrom::Start(start)).is_err() || file.read_to_end(&mut tail).is_err() {
        return 0;
    }
    tail.split(|&b| b == b'\n')
        .filter_map(|line| serde_json::from_slice::<serde_json::Value>(line).ok())
        .filter_map(|value| value["seq"].as_u64())
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod journal_tests {
    use super::*;

    #[tokio::test]
    async fn a_journal_that_cannot_be_written_says_so_once_naming_the_file() {
        let events = Arc::new(EventBus::new());
        let mut live = events.subscribe();
        // Every write to /dev/full fails with "no space left".
        let journal = Journal::open(Path::new("/dev/full"), &events).unwrap();
        events.add_recorded(vec![Arc::new(journal)]);
        for _ in 0..5 {
            events.emit(Event::PlanUpdated {
                counts: PlanCounts::default(),
            });
        }
        events.flush().await;
        events.flush().await;
        let mut warnings = Vec::new();
        while let Ok(envelope) = live.try_recv() {
            if let Event::Warning { message, .. } = &envelope.event {
                warnings.push(message.clone());
            }
        }
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("/dev/full: "), "{warnings:?}");
    }

    #[tokio::test]
    async fn a_state_file_that_cannot_be_written_is_said_once_through_the_alarm_and_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let paths = MissionPaths::new(dir.path(), "m-1");
        // A directory where the state file goes: replacing it fails.
        std::fs::create_dir_all(paths.state().join("in-the-way")).unwrap();
        let events = Arc::new(EventBus::new());
        let mut live = events.subscribe();
        let said = Arc::new(Mutex::new(Vec::<String>::new()));
        let alarm: Alarm = {
            let said = said.clone();
            Arc::new(move |message: &str| {
                said.lock().unwrap().push(message.to_string());
                true
            })
        };
        let state = StateSink::new(
            &paths,
            MissionState::new("m-1", "g", 5, "commander-1"),
            Prices::default(),
        )
        .warning_on(&events, Some(alarm));
        events.add_recorded(vec![Arc::new(state)]);
        for task in ["task_1", "task_2"] {
            events.emit(queued(task));
            events.flush().await;
            // Past the write interval, so each event is written again.
            std::thread::sleep(WRITE_INTERVAL);
        }
        events.flush().await;
        let said = said.lock().unwrap().clone();
        assert_eq!(said.len(), 1, "{said:?}");
        let file = paths.state().display().to_string();
        assert!(said[0].starts_with(&format!("{file}: ")), "{said:?}");
        let mut warnings = Vec::new();
        while let Ok(envelope) = live.try_recv() {
            if let Event::Warning { message, .. } = &envelope.event {
                warnings.push(message.clone());
            }
        }
        assert_eq!(warnings, said, "the journal records it too");
    }

    #[test]
    fn the_last_sequence_number_is_read_from_the_journals_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        assert_eq!(last_seq(&path), 0);
        std::fs::write(
            &path,
            "{\"seq\":1,\"ts_ms\":1,\"type\":\"plan_updated\"}\n{\"seq\":7,\"ts_ms\":2,\"type\":\"x\"}\n{\"seq\":8,\"ts_",
        )
        .unwrap();
        assert_eq!(last_seq(&path), 7);
    }

    fn queued(task: &str) -> Event {
        Event::TaskQueued {
            task: task.into(),
            agent: "Worker".into(),
            description: format!("do {task}"),
            background: true,
            parent: "commander-1".into(),
            prompt: "p".into(),
        }
    }

    #[tokio::test]
    async fn the_state_read_back_is_the_checkpoint_and_every_event_the_journal_has_since() {
        let dir = tempfile::tempdir().unwrap();
        let paths = MissionPaths::new(dir.path(), "m-1");
        let events = Arc::new(EventBus::new());
        let journal = Journal::open(&paths.journal(), &events).unwrap();
        let state = StateSink::new(
            &paths,
            MissionState::new("m-1", "g", 5, "commander-1"),
            Prices::default(),
        );
        events.add_recorded(vec![Arc::new(journal), Arc::new(state)]);
        events.emit(Event::MissionStarted {
            mission: "m-1".into(),
            pid: 4242,
            sandbox: String::new(),
            goal: "g".into(),
            root: "/p".into(),
            max_iterations: 5,
            commander_session: "commander-1".into(),
            resumed: false,
            budget_tokens: None,
            budget_usd: None,
        });
        for task in ["task_1", "task_2", "task_3"] {
            events.emit(queued(task));
        }
        events.flush().await;
        // The checkpoint was written when the mission started; the tasks
        // came within the write interval and are in the journal only.
        let checkpoint: MissionState =
            serde_json::from_str(&std::fs::read_to_string(paths.state()).unwrap()).unwrap();
        assert!(checkpoint.tasks.is_empty(), "{:?}", checkpoint.tasks);
        let read = read_state(dir.path(), "m-1").unwrap();
        assert_eq!(
            read.tasks.keys().collect::<Vec<_>>(),
            ["task_1", "task_2", "task_3"]
        );
        assert_eq!(read.pid, 4242);
        // A line torn by a crash is left out; the events before it count.
        let mut file = OpenOptions::new()
            .append(true)
            .open(paths.journal())
            .unwrap();
        std::io::Write::write_all(&mut file, b"{\"seq\":99,\"ts_ms\":1,\"type\":\"task_qu")
            .unwrap();
        assert_eq!(read_state(dir.path(), "m-1").unwrap().tasks.len(), 3);
    }

    #[test]
    fn a_long_journal_is_read_from_its_end_as_far_back_as_needed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut text = String::new();
        for seq in 1..=20_000u64 {
            let envelope = Envelope {
                seq,
                ts_ms: seq,
                event: queued(&format!("task_{seq}")),
            };
            text.push_str(&serde_json::to_string(&envelope).unwrap());
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
        let seqs = |after| {
            journal_after(&path, after)
                .iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>()
        };
        assert_eq!(seqs(19_998), [19_999, 20_000]);
        // Far back: past several windows.
        let all = seqs(10);
        assert_eq!(all.len(), 19_990);
        assert_eq!(all.first(), Some(&11));
        assert!(seqs(20_000).is_empty());
    }
}

#[cfg(test)]
pub(super) mod cost_tests {
    use super::*;
    use crate::config::Price;

    /// `model` at $10 (input, output), $1 a cache read and $12.50 a cache
    /// write per million tokens; every other model unpriced.
    pub(in crate::mission) fn pricing(model: &str) -> Prices {
        Prices::new(
            BTreeMap::from([(
                model.to_string(),
                Price {
                    input: 10.0,
                    output: 10.0,
                    cached_input: Some(1.0),
                    cache_write: Some(12.5),
                },
            )]),
            false,
        )
    }

    pub(in crate::mission) fn usage(input: u64, cached_input: u64, cache_write: u64) -> Usage {
        Usage {
            input,
            output: 0,
            cached_input,
            cache_write,
            reasoning: 0,
        }
    }

    fn events(sink: &dyn EventSink, events: Vec<Event>) {
        for (i, event) in events.into_iter().enumerate() {
            sink.write(&Envelope {
                seq: i as u64 + 1,
                ts_ms: 1,
                event,
            });
        }
    }

    fn started(session: &str, agent: &str, model: &str) -> Event {
        Event::SessionStarted {
            session: session.into(),
            agent: agent.into(),
            provider: "openai".into(),
            model: model.into(),
        }
    }

    fn used(session: &str, agent: &str, usage: Usage) -> Event {
        Event::Usage {
            session: session.into(),
            agent: agent.into(),
            usage,
        }
    }

    fn sink(dir: &Path, pricing: Prices) -> StateSink {
        let paths = MissionPaths::new(dir, "m-1");
        std::fs::create_dir_all(&paths.dir).unwrap();
        StateSink::new(
            &paths,
            MissionState::new("m-1", "g", 5, "commander-1"),
            pricing,
        )
    }

    #[test]
    fn costs_per_agent_price_cache_reads_and_writes_and_leave_out_unpriced_agents() {
        let dir = tempfile::tempdir().unwrap();
        let sink = sink(dir.path(), pricing("big"));
        events(
            &sink,
            vec![
                started("c1", "Commander", "big"),
                started("w1", "Worker", "big"),
                started("r1", "Reviewer", "mystery"),
                used("c1", "Commander", usage(1_000_000, 0, 1_000_000)),
                used("c1", "Commander", usage(1_000_000, 1_000_000, 0)),
                used("w1", "Worker", usage(1_000_000, 500_000, 0)),
                used("r1", "Reviewer", usage(10, 0, 0)),
            ],
        );
        let state = sink.snapshot();
        // Commander: 1M written at 12.5 and 1M read at 1; Worker: 0.5M read
        // at 1 and 0.5M plain at 10.
        assert_eq!(
            state.cost_by_agent,
            BTreeMap::from([("Commander".to_string(), 13.5), ("Worker".to_string(), 5.5)])
        );
        // The mission's total is unknown while one model has no price.
        assert_eq!(state.cost_usd, None);
        sink.persist().unwrap();
        let saved = read_state(dir.path(), "m-1").unwrap();
        assert_eq!(saved.cost_by_agent, state.cost_by_agent);
    }
}

//! The typed event stream: every step of a session or mission emits one
//! `Event` on the `EventBus`. Frontends (plain lines, JSONL, journal, metrics,
//! tests) fold events; nothing in the engine formats output for humans.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::provider::{FinishReason, Usage};

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionOutcome {
    /// The model ended its turn with no tool calls.
    Completed,
    /// The session hit its max-turns cap.
    MaxTurns,
    /// The session's token budget was spent.
    BudgetExceeded,
    /// The model repeated the same tool call too many times in a row.
    Repeating,
    /// A provider error ended the session.
    Failed,
    Cancelled,
}

/// Who answered an approval request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovedBy {
    /// A person at the terminal.
    User,
    /// No terminal to ask: `ask` rules become `deny`.
    Headless,
}

/// Where a delegated task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Waiting for an admission slot; no session exists yet.
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl TaskStatus {
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }
}

/// How a mission ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissionOutcome {
    /// The completion gate passed.
    Complete,
    /// A guard stopped it (iterations, no progress, repetition, time,
    /// budget) or the Commander could not go on; the reason says which.
    Stopped,
    Cancelled,
}

/// One verification command as the completion gate ran it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyResult {
    pub command: String,
    pub passed: bool,
    /// `None` when it was killed (timeout) or could not start.
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    /// The end of its output, when it failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output_tail: String,
}

/// Plan counts carried by events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanCounts {
    pub total: usize,
    pub done: usize,
    pub in_progress: usize,
    pub failed: usize,
}

impl From<&crate::todo::Counts> for PlanCounts {
    fn from(counts: &crate::todo::Counts) -> Self {
        PlanCounts {
            total: counts.total(),
            done: counts.done,
            in_progress: counts.in_progress,
            failed: counts.failed,
        }
    }
}

/// Pool counters, shown by `orch status` and carried by task events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStats {
    /// Sessions created because none was idle.
    pub creations: u64,
    /// Tasks that got a pooled session.
    pub reuse_hits: u64,
    /// Sessions dropped for idling too long or reaching `max_reuse`.
    pub evictions: u64,
    /// Sessions idle in the pool now.
    pub idle: u64,
}

/// One thing that happened. Serialized with a `type` tag; the schema is
/// documented in `docs/events.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    MissionStarted {
        mission: String,
        goal: String,
        /// The project root the mission works in.
        root: String,
        max_iterations: u32,
        commander_session: String,
        /// True when `orch resume` picked the mission up again.
        resumed: bool,
        /// The token budget, when one is set.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        budget_tokens: Option<u64>,
        /// The dollar budget, when one is set.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        budget_usd: Option<f64>,
    },
    /// `.opencode/todo.md` changed.
    PlanUpdated {
        counts: PlanCounts,
    },
    /// The Commander went idle and the completion gate was checked.
    GateChecked {
        mission: String,
        iteration: u32,
        passed: bool,
        /// Plan items that are not done (`ID (status): text`).
        open_items: Vec<String>,
        sync_issues: Vec<String>,
        verify: Vec<VerifyResult>,
        /// Why the gate cannot pass whatever the items say (no plan yet...).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    MissionFinished {
        mission: String,
        outcome: MissionOutcome,
        reason: String,
        iterations: u32,
        usage: Usage,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost_usd: Option<f64>,
    },
    SessionStarted {
        session: String,
        agent: String,
        provider: String,
        model: String,
    },
    /// A model turn was sent (one request; retries are `ModelRetry`).
    ModelRequest {
        session: String,
        turn: u32,
        messages: usize,
        tools: usize,
    },
    TextDelta {
        session: String,
        text: String,
    },
    /// A model request failed and is sent again after `delay_ms`.
    ModelRetry {
        session: String,
        attempt: u32,
        delay_ms: u64,
        reason: String,
        /// Bytes of a partial turn that streamed before the failure and
        /// were discarded (0: it failed before any content).
        #[serde(default)]
        discarded_bytes: u64,
    },
    /// A model turn finished streaming.
    ModelResponse {
        session: String,
        turn: u32,
        finish: Option<FinishReason>,
        tool_calls: usize,
        latency_ms: u64,
    },
    Usage {
        session: String,
        agent: String,
        usage: Usage,
    },
    ToolCallBegin {
        session: String,
        call_id: String,
        tool: String,
        arguments: serde_json::Value,
    },
    ToolCallEnd {
        session: String,
        call_id: String,
        tool: String,
        ok: bool,
        duration_ms: u64,
        /// The first characters of the result, for display.
        preview: String,
    },
    ApprovalRequested {
        session: String,
        call_id: String,
        tool: String,
        detail: String,
    },
    ApprovalResolved {
        session: String,
        call_id: String,
        approved: bool,
        by: ApprovedBy,
    },
    Warning {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<String>,
        message: String,
    },
    /// A task was delegated and waits for admission.
    TaskQueued {
        task: String,
        agent: String,
        description: String,
        background: bool,
        /// The session that delegated it.
        parent: String,
        /// The task as given (kept so `orch resume` can restart it).
        prompt: String,
    },
    /// A task was admitted and has a session.
    TaskStarted {
        task: String,
        agent: String,
        session: String,
        /// Whether the session came from the pool.
        reused: bool,
        pool: PoolStats,
    },
    TaskFinished {
        task: String,
        agent: String,
        status: TaskStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    SessionFinished {
        session: String,
        agent: String,
        outcome: SessionOutcome,
        turns: u32,
        usage: Usage,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A session's conversation was compacted to fit its model's window.
    ContextCompacted {
        session: String,
        agent: String,
        /// `threshold` (the estimate passed `memory.compact_threshold`) or
        /// `context_length` (the provider refused the prompt).
        reason: String,
        /// Prompt estimate (tiktoken) before and after.
        tokens_before: u64,
        tokens_after: u64,
        /// Old tool outputs cleared.
        pruned: usize,
        /// Messages replaced by a summary (or dropped, without one).
        summarized: usize,
        /// Whether the model wrote a summary (false: pruned or dropped only).
        summary: bool,
    },
    /// Memory entries fell below the relevance threshold and were evicted.
    MemoryEvicted {
        /// `tier:id` of each evicted entry.
        entries: Vec<String>,
    },
    /// `run_background` started a job.
    BackgroundStarted {
        session: String,
        job: String,
        label: String,
        command: String,
    },
    /// A background job ended: `done` (exit 0), `failed`, or `killed`
    /// (timeout, `kill_background`, or its owner ending).
    BackgroundFinished {
        job: String,
        status: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
    },
    /// A plugin's log line: its `log` import (`debug`, `info`, `warn`,
    /// `error`) or what it printed during a call (`stdout` as `info`,
    /// `stderr` as `warn`). `plugin` is its file name.
    PluginLog {
        plugin: String,
        level: String,
        message: String,
    },
    /// A plugin recorded a number (`record-metric`): a counter increment
    /// or a measurement; `orch metrics` sums them per plugin and name.
    PluginMetric {
        plugin: String,
        name: String,
        value: f64,
    },
}

/// An event with its sequence number and wall-clock time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub ts_ms: u64,
    #[serde(flatten)]
    pub event: Event,
}

/// A subscriber that must see every event, in order (journal, JSONL stdout).
/// It is called on the emitting task, so it must be quick and must not block
/// on anything the engine holds.
pub trait EventSink: Send + Sync {
    fn write(&self, envelope: &Envelope);
}

/// The one bus. Durable sinks see every event synchronously; live subscribers
/// (TUI, tests) get a bounded broadcast and may lag without slowing the engine.
pub struct EventBus {
    seq: AtomicU64,
    sinks: Mutex<Vec<Arc<dyn EventSink>>>,
    live: broadcast::Sender<Arc<Envelope>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    pub fn new() -> Self {
        let (live, _) = broadcast::channel(4096);
        EventBus {
            seq: AtomicU64::new(0),
            sinks: Mutex::new(Vec::new()),
            live,
        }
    }

    pub fn add_sink(&self, sink: Arc<dyn EventSink>) {
        self.sinks.lock().expect("sink list lock").push(sink);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Envelope>> {
        self.live.subscribe()
    }

    pub fn emit(&self, event: Event) {
        // The sink lock also orders sequence numbers with writes, so every
        // sink sees events in `seq` order even when sessions emit concurrently.
        let sinks = self.sinks.lock().expect("sink list lock");
        let envelope = Envelope {
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            ts_ms: now_ms(),
            event,
        };
        for sink in sinks.iter() {
            sink.write(&envelope);
        }
        drop(sinks);
        // No live subscriber is not an error.
        let _ = self.live.send(Arc::new(envelope));
    }
}

/// `<prefix>-<time in base 36>-<4 random hex digits>`: sortable by creation
/// time, unique across concurrent processes.
pub fn unique_id(prefix: &str) -> String {
    let mut millis = now_ms();
    let mut digits = Vec::new();
    while millis > 0 {
        let digit = (millis % 36) as u8;
        digits.push(if digit < 10 {
            b'0' + digit
        } else {
            b'a' + digit - 10
        });
        millis /= 36;
    }
    digits.reverse();
    format!(
        "{prefix}-{}-{:04x}",
        String::from_utf8_lossy(&digits),
        fastrand::u16(..)
    )
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

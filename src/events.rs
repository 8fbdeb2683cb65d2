//! The typed event stream: every step of a session or mission emits one
//! `Event` on the `EventBus`. Frontends (plain lines, JSONL, journal, metrics,
//! tests) fold events; nothing in the engine formats output for humans.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
        /// The orch process running it (`orch cancel` signals it).
        #[serde(default)]
        pid: u32,
        /// The OS sandbox its commands run in: `workspace-write`,
        /// `read-only` or `off` (empty in journals from before).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        sandbox: String,
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
    /// The live tools changed while orch ran: a plugin added, replaced or
    /// removed, an MCP server's tool list changed, a skill or agent added.
    ToolsChanged {
        /// `plugins`, `mcp:<server>`, `skills`, `agents`.
        source: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        added: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        removed: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
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
        /// The task's own worktree, relative to the project root (writing
        /// tasks in a git repository).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        worktree: Option<String>,
    },
    /// A writing task's change was merged into the project: the files
    /// that changed there, or the files it conflicts in (then nothing
    /// landed, and `item` is the plan item made to resolve it).
    TaskLanded {
        task: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        files: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        conflicts: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item: Option<String>,
    },
    TaskFinished {
        task: String,
        agent: String,
        status: TaskStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// The agent's last text: what the delegating agent is told.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<String>,
        /// Model turns the task took.
        #[serde(default)]
        turns: u32,
    },
    /// A finished background task's result was handed to the agent that
    /// delegated it.
    TaskReported {
        task: String,
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

/// A subscriber that must see every event, in order.
///
/// Added with [`EventBus::add_sink`] it is called on the emitting task: it
/// must be quick and never block (in-memory folds such as metrics). Added
/// with [`EventBus::add_recorded`] it runs on the bus's recorder thread and
/// may write files (the journal, the state file); a slow disk then delays
/// only the records, never a session.
pub trait EventSink: Send + Sync {
    fn write(&self, envelope: &Envelope);
}

/// What the recorder thread is asked to do.
enum Record {
    Event(Arc<Envelope>),
    /// Start recording into these sinks, first with every event emitted so
    /// far and not yet recorded anywhere.
    Sinks(Vec<Arc<dyn EventSink>>),
    /// Called once everything sent before is recorded.
    Flush(Box<dyn FnOnce() + Send>),
}

/// Events emitted before any recorded sink exists are kept for the first
/// one, up to this many.
const UNRECORDED_MAX: usize = 10_000;

/// How long streamed text is gathered before it is recorded: token deltas
/// are journaled as one line per session per interval, not one per token.
const TEXT_INTERVAL: Duration = Duration::from_millis(100);

/// The one bus. Quick sinks see every event synchronously; recorded sinks
/// see every event, in order, on the recorder thread; live subscribers (the
/// live view, plugin hooks, tests) get a bounded broadcast and may lag
/// without slowing the engine.
pub struct EventBus {
    /// Held while a sequence number is assigned and the event handed on, so
    /// every sink sees events in `seq` order even when sessions emit
    /// concurrently.
    order: Mutex<Order>,
    live: broadcast::Sender<Arc<Envelope>>,
    /// A task record (queued, finished, reported) was emitted and may not
    /// be recorded yet: see [`EventBus::settle`].
    unsettled: std::sync::atomic::AtomicBool,
}

struct Order {
    seq: u64,
    sinks: Vec<Arc<dyn EventSink>>,
    recorder: Option<Recorder>,
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
            order: Mutex::new(Order {
                seq: 0,
                sinks: Vec::new(),
                recorder: None,
            }),
            live,
            unsettled: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Continue numbering after `seq` (a resumed mission's journal).
    pub fn continue_after(&self, seq: u64) {
        let mut order = self.order.lock().expect("event order lock");
        order.seq = order.seq.max(seq);
    }

    /// A quick sink, called on the emitting task (see [`EventSink`]).
    pub fn add_sink(&self, sink: Arc<dyn EventSink>) {
        self.order
            .lock()
            .expect("event order lock")
            .sinks
            .push(sink);
    }

    /// Sinks that write records, called in order on the recorder thread;
    /// the first ones added also get the events emitted before.
    pub fn add_recorded(&self, sinks: Vec<Arc<dyn EventSink>>) {
        let mut order = self.order.lock().expect("event order lock");
        let recorder = order.recorder.get_or_insert_with(start_recorder);
        let _ = recorder.send(Record::Sinks(sinks));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Envelope>> {
        self.live.subscribe()
    }

    pub fn emit(&self, event: Event) {
        let task_record = matches!(
            event,
            Event::TaskQueued { .. } | Event::TaskFinished { .. } | Event::TaskReported { .. }
        );
        let mut order = self.order.lock().expect("event order lock");
        order.seq += 1;
        let envelope = Arc::new(Envelope {
            seq: order.seq,
            ts_ms: now_ms(),
            event,
        });
        for sink in &order.sinks {
            sink.write(&envelope);
        }
        let recorder = order.recorder.get_or_insert_with(start_recorder);
        // The recorder thread outlives every emitter; a send cannot block.
        let _ = recorder.send(Record::Event(envelope.clone()));
        drop(order);
        // Queued before it is marked: a settle that sees the mark flushes
        // after it.
        if task_record {
            self.unsettled
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        // No live subscriber is not an error.
        let _ = self.live.send(envelope);
    }

    /// Wait until the task records emitted so far are recorded, if any is
    /// not yet: a transcript about to name a task (a delegation's result)
    /// never gets ahead of the journal a resume reads the tasks from. One
    /// wait covers every delegation of a turn.
    pub async fn settle(&self) {
        if self
            .unsettled
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            self.flush().await;
        }
    }

    /// Wait until every event emitted so far is recorded (before reading a
    /// state the records fold, or before the process exits).
    pub async fn flush(&self) {
        let (done, recorded) = tokio::sync::oneshot::channel();
        if self.ask_flush(Box::new(move || {
            let _ = done.send(());
        })) {
            let _ = recorded.await;
        }
    }

    /// [`flush`](Self::flush) from synchronous code (a command's end), waiting
    /// at most `limit`.
    pub fn flush_blocking(&self, limit: Duration) {
        let (done, recorded) = std::sync::mpsc::channel();
        if self.ask_flush(Box::new(move || {
            let _ = done.send(());
        })) {
            let _ = recorded.recv_timeout(limit);
        }
    }

    fn ask_flush(&self, done: Box<dyn FnOnce() + Send>) -> bool {
        let mut order = self.order.lock().expect("event order lock");
        let recorder = order.recorder.get_or_insert_with(start_recorder);
        recorder.send(Record::Flush(done)).is_ok()
    }
}

/// The queue between the emitters and the recorder thread. Emitting only
/// appends under a short lock; the recorder is woken (a syscall) only when
/// it sleeps, so a burst of events costs one wake-up, not one each.
struct Queue {
    records: Mutex<Vec<Record>>,
    /// The recorder is parked, or about to: the next push wakes it.
    sleeping: std::sync::atomic::AtomicBool,
    /// No emitter is left: the recorder finishes what is queued and ends.
    closed: std::sync::atomic::AtomicBool,
    recorder: std::thread::Thread,
}

/// The emitters' side of the recorder: pushing wakes it when it sleeps;
/// dropped (with the bus), it lets the recorder end.
/// Without a recorder thread (it could not be started) nothing is queued.
struct Recorder(Option<Arc<Queue>>);

impl Recorder {
    fn send(&self, record: Record) -> Result<(), ()> {
        use std::sync::atomic::Ordering::SeqCst;
        let Some(queue) = &self.0 else {
            return Err(());
        };
        // A flush is waited for: it wakes the recorder even mid-batch.
        let urgent = matches!(record, Record::Flush(_));
        queue
            .records
            .lock()
            .expect("record queue lock")
            .push(record);
        if queue.sleeping.swap(false, SeqCst) || urgent {
            queue.recorder.unpark();
        }
        Ok(())
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(queue) = &self.0 {
            queue
                .closed
                .store(true, std::sync::atomic::Ordering::SeqCst);
            queue.recorder.unpark();
        }
    }
}

/// How long the recorder waits for more events after a batch before it
/// sleeps until woken.
const BATCH_WAIT: Duration = Duration::from_millis(2);

/// The recorder thread: records every event into the recorded sinks in
/// order, gathering streamed text; it ends when the bus is dropped.
fn start_recorder() -> Recorder {
    let (handing, handed) = std::sync::mpsc::channel::<Arc<Queue>>();
    let spawned = std::thread::Builder::new()
        .name("orch-records".into())
        .spawn(move || {
            if let Ok(queue) = handed.recv() {
                record(&queue);
            }
        });
    // Without a thread nothing is recorded; emitting goes on.
    let Ok(handle) = spawned else {
        return Recorder(None);
    };
    let queue = Arc::new(Queue {
        records: Mutex::new(Vec::new()),
        sleeping: std::sync::atomic::AtomicBool::new(false),
        closed: std::sync::atomic::AtomicBool::new(false),
        recorder: handle.thread().clone(),
    });
    let _ = handing.send(queue.clone());
    Recorder(Some(queue))
}

fn record(queue: &Queue) {
    use std::sync::atomic::Ordering::SeqCst;
    let mut sinks: Vec<Arc<dyn EventSink>> = Vec::new();
    let mut unrecorded = Unrecorded::default();
    let mut text = Text::default();
    let mut text_since = std::time::Instant::now();
    loop {
        let batch = std::mem::take(&mut *queue.records.lock().expect("record queue lock"));
        let idle = batch.is_empty();
        for record in batch {
            match record {
                Record::Event(envelope) => match &envelope.event {
                    Event::TextDelta { .. } => {
                        if text.is_empty() {
                            text_since = std::time::Instant::now();
                        }
                        text.gather(&envelope);
                    }
                    _ => {
                        for gathered in text.take() {
                            deliver(&sinks, &mut unrecorded, gathered);
                        }
                        deliver(&sinks, &mut unrecorded, envelope);
                    }
                },
                Record::Sinks(added) => {
                    for envelope in unrecorded.take() {
                        for sink in &added {
                            sink.write(&envelope);
                        }
                    }
                    sinks.extend(added);
                }
                Record::Flush(done) => {
                    for gathered in text.take() {
                        deliver(&sinks, &mut unrecorded, gathered);
                    }
                    done();
                }
            }
        }
        if !text.is_empty() && text_since.elapsed() >= TEXT_INTERVAL {
            for gathered in text.take() {
                deliver(&sinks, &mut unrecorded, gathered);
            }
        }
        if !idle {
            std::thread::park_timeout(BATCH_WAIT);
            continue;
        }
        if queue.closed.load(SeqCst) {
            // Every push happened before the close: one more look finds
            // any that raced with the empty batch above.
            if !queue.records.lock().expect("record queue lock").is_empty() {
                continue;
            }
            for gathered in text.take() {
                deliver(&sinks, &mut unrecorded, gathered);
            }
            return;
        }
        // Nothing came: sleep until woken (or until gathered text is due),
        // after one more look so a push racing with this is not missed.
        queue.sleeping.store(true, SeqCst);
        if !queue.records.lock().expect("record queue lock").is_empty() {
            queue.sleeping.store(false, SeqCst);
            continue;
        }
        if text.is_empty() {
            std::thread::park();
        } else {
            std::thread::park_timeout(TEXT_INTERVAL);
        }
        queue.sleeping.store(false, SeqCst);
    }
}

/// Events emitted before any recorded sink exists: the first
/// [`UNRECORDED_MAX`], and what became of the rest.
#[derive(Default)]
struct Unrecorded {
    kept: Vec<Arc<Envelope>>,
    dropped: u64,
    /// The last event dropped: its sequence number and time are the
    /// warning's, which takes its place, so records stay in `seq` order.
    last_dropped: Option<(u64, u64)>,
}

impl Unrecorded {
    fn push(&mut self, envelope: Arc<Envelope>) {
        if self.kept.len() < UNRECORDED_MAX {
            self.kept.push(envelope);
        } else {
            self.dropped += 1;
            self.last_dropped = Some((envelope.seq, envelope.ts_ms));
        }
    }

    /// The events kept, then one warning saying how many were not.
    fn take(&mut self) -> Vec<Arc<Envelope>> {
        let mut kept = std::mem::take(&mut self.kept);
        if let Some((seq, ts_ms)) = self.last_dropped.take() {
            kept.push(Arc::new(Envelope {
                seq,
                ts_ms,
                event: Event::Warning {
                    session: None,
                    message: format!(
                        "{} events emitted before the journal opened are not recorded (the first {UNRECORDED_MAX} are)",
                        self.dropped
                    ),
                },
            }));
            self.dropped = 0;
        }
        kept
    }
}

/// Hand `envelope` to the recorded sinks, or keep it for the first ones.
fn deliver(sinks: &[Arc<dyn EventSink>], unrecorded: &mut Unrecorded, envelope: Arc<Envelope>) {
    if sinks.is_empty() {
        unrecorded.push(envelope);
    } else {
        for sink in sinks {
            sink.write(&envelope);
        }
    }
}

/// Streamed text gathered per session, to be recorded as one `TextDelta`
/// each (with the sequence number and time of its first piece, so records
/// stay in `seq` order).
#[derive(Default)]
struct Text {
    pending: Vec<Envelope>,
}

impl Text {
    fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    fn gather(&mut self, envelope: &Envelope) {
        let Event::TextDelta { session, text } = &envelope.event else {
            return;
        };
        for pending in &mut self.pending {
            if let Event::TextDelta {
                session: pending_session,
                text: pending_text,
            } = &mut pending.event
                && pending_session == session
            {
                pending_text.push_str(text);
                return;
            }
        }
        self.pending.push(envelope.clone());
    }

    fn take(&mut self) -> Vec<Arc<Envelope>> {
        self.pending.drain(..).map(Arc::new).collect()
    }
}

/// A sink that writes to something that may be slow (a terminal), on its
/// own thread behind a bounded queue: the emitter never waits. When the
/// queue is full, events are dropped and counted, and the sink is told how
/// many with a warning once it catches up — a lagging terminal loses lines,
/// the engine loses nothing.
pub struct Detached {
    queue: std::sync::mpsc::SyncSender<Arc<Envelope>>,
    /// Events not handed over since the writer last said so.
    dropped: Arc<std::sync::atomic::AtomicU64>,
    /// Events handed over and not yet written, and a wake-up for `drain`.
    pending: Arc<(Mutex<u64>, std::sync::Condvar)>,
}

impl Detached {
    pub fn new(sink: Arc<dyn EventSink>, capacity: usize) -> Arc<Detached> {
        let (queue, receiver) = std::sync::mpsc::sync_channel::<Arc<Envelope>>(capacity);
        let pending: Arc<(Mutex<u64>, std::sync::Condvar)> = Arc::default();
        let dropped: Arc<std::sync::atomic::AtomicU64> = Arc::default();
        let counter = pending.clone();
        let missed = dropped.clone();
        let _ = std::thread::Builder::new()
            .name("orch-output".into())
            .spawn(move || {
                for envelope in receiver {
                    sink.write(&envelope);
                    // What fell behind is said right after what was shown.
                    let dropped = missed.swap(0, std::sync::atomic::Ordering::SeqCst);
                    if dropped > 0 {
                        sink.write(&Envelope {
                            seq: envelope.seq,
                            ts_ms: envelope.ts_ms,
                            event: Event::Warning {
                                session: None,
                                message: format!(
                                    "{dropped} events were not shown: the output fell behind"
                                ),
                            },
                        });
                    }
                    let (count, done) = &*counter;
                    let mut count = count.lock().expect("output count lock");
                    *count = count.saturating_sub(1);
                    done.notify_all();
                }
            });
        Arc::new(Detached {
            queue,
            dropped,
            pending,
        })
    }

    /// Wait, at most `limit`, until every event handed over is written.
    pub fn drain(&self, limit: Duration) {
        let (count, done) = &*self.pending;
        let count = count.lock().expect("output count lock");
        let _ = done.wait_timeout_while(count, limit, |count| *count > 0);
    }
}

impl EventSink for Detached {
    fn write(&self, envelope: &Envelope) {
        let (count, _) = &*self.pending;
        *count.lock().expect("output count lock") += 1;
        if self.queue.try_send(Arc::new(envelope.clone())).is_err() {
            *count.lock().expect("output count lock") -= 1;
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect(Mutex<Vec<Envelope>>);

    impl EventSink for Collect {
        fn write(&self, envelope: &Envelope) {
            self.0.lock().unwrap().push(envelope.clone());
        }
    }

    fn delta(session: &str, text: &str) -> Event {
        Event::TextDelta {
            session: session.into(),
            text: text.into(),
        }
    }

    fn warning(message: &str) -> Event {
        Event::Warning {
            session: None,
            message: message.into(),
        }
    }

    #[tokio::test]
    async fn records_get_every_event_in_order_with_streamed_text_gathered() {
        let bus = EventBus::new();
        // Emitted before any record exists: kept for the first one.
        bus.emit(warning("early"));
        let records = Arc::new(Collect::default());
        bus.add_recorded(vec![records.clone()]);
        for piece in ["Hel", "lo", ", wor", "ld"] {
            bus.emit(delta("a", piece));
            bus.emit(delta("b", piece));
        }
        bus.emit(warning("after the text"));
        bus.emit(delta("a", "!"));
        bus.flush().await;
        let seen = records.0.lock().unwrap().clone();
        let summary: Vec<(u64, String)> = seen
            .iter()
            .map(|e| match &e.event {
                Event::TextDelta { session, text } => (e.seq, format!("{session}: {text}")),
                Event::Warning { message, .. } => (e.seq, message.clone()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            summary,
            [
                (1, "early".to_string()),
                (2, "a: Hello, world".to_string()),
                (3, "b: Hello, world".to_string()),
                (10, "after the text".to_string()),
                (11, "a: !".to_string()),
            ]
        );
    }

    #[tokio::test]
    async fn events_past_the_unrecorded_cap_are_said_once_with_their_count() {
        let bus = EventBus::new();
        let extra = 25;
        for i in 0..UNRECORDED_MAX + extra {
            bus.emit(warning(&format!("early {i}")));
        }
        let records = Arc::new(Collect::default());
        bus.add_recorded(vec![records.clone()]);
        bus.emit(warning("late"));
        bus.flush().await;
        let seen = records.0.lock().unwrap().clone();
        assert_eq!(seen.len(), UNRECORDED_MAX + 2);
        let said = &seen[UNRECORDED_MAX];
        let Event::Warning { message, .. } = &said.event else {
            panic!("{said:?}");
        };
        assert!(
            message.starts_with(&format!(
                "{extra} events emitted before the journal opened are not recorded"
            )),
            "{message}"
        );
        let seqs: Vec<u64> = seen.iter().map(|e| e.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        assert!(
            matches!(&seen[UNRECORDED_MAX + 1].event, Event::Warning { message, .. } if message == "late")
        );
    }

    #[test]
    fn a_detached_sink_never_holds_the_emitter_and_says_what_it_dropped() {
        struct Slow(Mutex<Vec<String>>, std::sync::Barrier);
        impl EventSink for Slow {
            fn write(&self, envelope: &Envelope) {
                if let Event::Warning { message, .. } = &envelope.event {
                    if message == "first" {
                        // Held until the emitter has gone on.
                        self.1.wait();
                    }
                    self.0.lock().unwrap().push(message.clone());
                }
            }
        }
        let slow = Arc::new(Slow(Mutex::default(), std::sync::Barrier::new(2)));
        let detached = Detached::new(slow.clone(), 2);
        let bus = EventBus::new();
        bus.add_sink(detached.clone());
        let started = std::time::Instant::now();
        for n in 0..50 {
            bus.emit(warning(if n == 0 { "first" } else { "more" }));
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        slow.1.wait();
        detached.drain(Duration::from_secs(5));
        bus.emit(warning("last"));
        detached.drain(Duration::from_secs(5));
        let written = slow.0.lock().unwrap().clone();
        assert_eq!(written.first().map(String::as_str), Some("first"));
        assert!(
            written
                .iter()
                .any(|m| m.ends_with("events were not shown: the output fell behind")),
            "{written:?}"
        );
        assert_eq!(written.last().map(String::as_str), Some("last"));
    }
}

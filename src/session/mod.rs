//! One agent conversation and its turn loop: system prompt + messages go to
//! the model, the tool calls it asks for run (read-only ones concurrently),
//! their results go back, until the model ends its turn or a cap stops it.
//!
//! The session knows tools only through `ToolRouter` and models only through
//! `ModelClient`; every message is flushed to its transcript as it completes.

mod compaction;
mod estimate;
pub mod pool;
mod repeats;
mod request;
pub mod tasks;
mod transcript;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use tokio_util::sync::CancellationToken;

use crate::agents::Agent;
use crate::config::{ModelLimits, ToolsConfig};
use crate::events::{Event, EventBus, SessionOutcome};
use crate::hooks::Hooks;
use crate::memory::{Memory, context};
use crate::provider::{Message, ModelClient, ProviderError, ToolCall, Usage};
use crate::tools::live::{self, LiveTools};
use crate::tools::permissions::Permissions;
use crate::tools::{ToolContext, ToolOutput, ToolRegistry, ToolRouter};
pub use compaction::{COMPACTOR, SUMMARY_REQUEST};
use estimate::Estimator;
use repeats::RepeatGuard;
pub use transcript::Transcript;

/// What every session in this process shares.
#[derive(Clone)]
pub struct Runtime {
    /// The canonical project root.
    pub root: Arc<PathBuf>,
    pub client: Arc<dyn ModelClient>,
    /// Every tool that exists; each session sees its agent's subset.
    pub tools: ToolRegistry,
    pub permissions: Arc<Permissions>,
    pub events: Arc<EventBus>,
    pub limits: Arc<ToolsConfig>,
    /// Memory tiers and context budgets (`Memory::default()` is off: every
    /// request carries the full history).
    pub memory: Arc<Memory>,
    /// Plugin hooks (`hooks::NoHooks` until the plugin host exists).
    pub hooks: Arc<dyn Hooks>,
    /// Tools whose sources change while orch runs (plugins, MCP servers).
    pub live: Arc<LiveTools>,
}

impl Runtime {
    pub fn sessions_dir(&self) -> PathBuf {
        self.root.join(".opencode").join("sessions")
    }
}

/// How one session is set up.
#[derive(Debug, Clone)]
pub struct SessionSetup {
    pub agent: Agent,
    pub model: String,
    pub max_turns: u32,
    pub max_output_tokens: u32,
    /// Stop once this many tokens (input + output) were used; `None` = no cap.
    pub token_budget: Option<u64>,
    /// Stop when the model makes the same tool call (name and arguments)
    /// with the same result this many times in a row; `None` = never.
    pub repeat_limit: Option<u32>,
    pub policy: TurnPolicy,
}

/// How a session sizes its requests and rides out provider failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnPolicy {
    /// The least output a request leaves room for; a prompt that leaves
    /// less is compacted first.
    pub min_output_tokens: u32,
    /// Times a turn that failed for a transient cause (after the
    /// transport's own retries) is taken up again.
    pub turn_retries: u32,
    /// The first wait before taking a failed turn up again; it doubles.
    pub turn_retry_base: Duration,
    /// The longest such wait.
    pub turn_retry_max: Duration,
}

impl Default for TurnPolicy {
    fn default() -> Self {
        TurnPolicy {
            min_output_tokens: 2048,
            turn_retries: 3,
            turn_retry_base: Duration::from_secs(2),
            turn_retry_max: Duration::from_secs(60),
        }
    }
}

/// How a session's run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionReport {
    pub session: String,
    pub agent: String,
    pub outcome: SessionOutcome,
    /// The model's last text (its answer when the outcome is `Completed`).
    pub final_text: String,
    pub turns: u32,
    pub usage: Usage,
    pub error: Option<String>,
}

pub struct Session {
    id: String,
    setup: SessionSetup,
    runtime: Runtime,
    router: ToolRouter,
    /// The conversation, shared with the request in flight (no copy per
    /// turn); changed only between requests, so a change never copies.
    messages: Arc<Vec<Message>>,
    transcript: Transcript,
    turns: u32,
    usage: Usage,
    repeats: RepeatGuard,
    /// The prompt estimate's memory of this conversation.
    estimator: Estimator,
    /// Limits the model's server reported, below the tables' (see
    /// `request.rs`).
    learned: Option<ModelLimits>,
    /// What this session last saw of each file.
    seen: Arc<crate::tools::seen::Seen>,
    /// Where its tools work: the project root, or its task's worktree.
    root: Arc<PathBuf>,
    /// The memory block as last rendered into the conversation (a plugin
    /// may have gated what the conversation shows of it).
    shown_block: Option<String>,
    /// What the previous request sent.
    previous: request::Previous,
    /// The live tools' version its last notice (or its start) is from.
    live_version: u64,
    /// The live version its tool list was built from (a compaction rebuilds
    /// it; the notes in between are still news).
    tools_version: u64,
}

impl Session {
    pub fn new(runtime: Runtime, setup: SessionSetup) -> std::io::Result<Session> {
        let id = new_session_id(&setup.agent.name);
        let transcript = Transcript::create(
            &runtime.sessions_dir(),
            &id,
            &setup.agent.name,
            &setup.model,
        )?;
        Ok(Session::assemble(
            runtime,
            setup,
            id,
            transcript,
            Vec::new(),
        ))
    }

    /// Reopen the session `id` from its transcript after an interruption:
    /// the conversation since its last reset comes back; a tool call whose
    /// result was never recorded gets a result saying it was interrupted
    /// (written to the transcript at once), so the model re-checks instead
    /// of assuming.
    pub fn restore(runtime: Runtime, setup: SessionSetup, id: &str) -> std::io::Result<Session> {
        let (mut transcript, mut messages) = Transcript::reopen(&runtime.sessions_dir(), id)?;
        let answered = messages.len();
        transcript::patch_interrupted_calls(&mut messages);
        // The answers are written before anything else happens: killed
        // again, the next resume finds every call answered.
        for message in &messages[answered..] {
            transcript.append(message)?;
        }
        Ok(Session::assemble(
            runtime,
            setup,
            id.to_string(),
            transcript,
            messages,
        ))
    }

    fn assemble(
        runtime: Runtime,
        setup: SessionSetup,
        id: String,
        transcript: Transcript,
        messages: Vec<Message>,
    ) -> Session {
        let (router, live_version) = tool_router(&runtime, &setup);
        runtime.events.emit(Event::SessionStarted {
            session: id.clone(),
            agent: setup.agent.name.clone(),
            provider: runtime.client.provider().into(),
            model: setup.model.clone(),
        });
        let repeats = RepeatGuard::new(setup.repeat_limit);
        let root = runtime.root.clone();
        let shown_block = context::last_block(&messages).map(str::to_string);
        Session {
            id,
            setup,
            runtime,
            router,
            messages: Arc::new(messages),
            transcript,
            seen: Arc::default(),
            root,
            turns: 0,
            usage: Usage::default(),
            repeats,
            estimator: Estimator::default(),
            learned: None,
            shown_block,
            previous: request::Previous::default(),
            live_version,
            tools_version: live_version,
        }
    }

    /// A new tool list, from the live tools as they are now: only where the
    /// request is rewritten anyway (a compaction).
    fn refresh_tools(&mut self) {
        let (router, version) = tool_router(&self.runtime, &self.setup);
        if router.registry.specs() != self.router.registry.specs() {
            self.estimator.forget_prefix();
        }
        self.router = router;
        self.tools_version = version;
    }

    /// What changed among the live tools since the session last looked, as
    /// text for its model (`None` when nothing it may use changed).
    fn tool_changes(&mut self) -> Option<String> {
        let live = &self.runtime.live;
        if live.version() == self.live_version {
            return None;
        }
        let (version, notice) = live.notice_since(
            self.live_version,
            self.tools_version.max(self.live_version),
            self.setup.agent.capabilities().write,
            self.router.registry.get(live::CALL_TOOL).is_some(),
        );
        self.live_version = version;
        self.tools_version = self.tools_version.max(version);
        notice
    }

    /// Work in `root` from now on (a task's worktree, or the project root
    /// again).
    pub fn set_root(&mut self, root: Arc<PathBuf>) {
        self.root = root;
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn agent(&self) -> &str {
        &self.setup.agent.name
    }

    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Back to the bare system prefix for the next task: the conversation,
    /// turn count and usage start over; the transcript records the reset.
    pub fn reset(&mut self) {
        self.conversation().clear();
        self.shown_block = None;
        self.previous = request::Previous::default();
        self.turns = 0;
        self.usage = Usage::default();
        self.repeats.reset();
        self.estimator.forget_conversation();
        // The Task tier belongs to one task.
        self.runtime.memory.end_session(&self.id);
        if let Err(err) = self.transcript.mark_reset() {
            let path = self.transcript.path().display().to_string();
            self.warn(format!("transcript {path}: {err}"));
        }
    }

    /// Give the session a user message and run turns until the model ends
    /// its turn, a cap is reached, the provider fails, or `cancel` fires.
    /// Caps (`max_turns`, `token_budget`) apply to each run; the report's
    /// turns and usage are this run's.
    pub async fn run(&mut self, prompt: &str, cancel: &CancellationToken) -> SessionReport {
        self.show_memory();
        match self.tool_changes() {
            Some(notice) => self.push(Message::user(format!("{notice}\n\n{prompt}"))),
            None => self.push(Message::user(prompt)),
        }
        self.proceed(cancel).await
    }

    /// Between runs the memory block catches up: when the block the session
    /// would show now differs from the one it last rendered into its
    /// conversation, the new one goes at the end, before the run's message,
    /// where it changes nothing an earlier request carried
    /// (`memory::context`).
    fn show_memory(&mut self) {
        let Some(block) = self.runtime.memory.render(&self.id) else {
            return;
        };
        if self.shown_block.as_deref() != Some(block.as_str()) {
            self.shown_block = Some(block.clone());
            self.push(Message::user(block));
        }
    }

    /// Run turns from where the conversation stands (after `restore`). A
    /// conversation that already ends with the model's answer is complete
    /// without another model call.
    pub async fn proceed(&mut self, cancel: &CancellationToken) -> SessionReport {
        self.turns = 0;
        self.usage = Usage::default();
        let (outcome, final_text, error) = match self.messages.last() {
            Some(Message::Assistant { text, tool_calls }) if tool_calls.is_empty() => {
                (SessionOutcome::Completed, text.clone(), None)
            }
            _ => self.turn_loop(cancel).await,
        };
        self.runtime.events.emit(Event::SessionFinished {
            session: self.id.clone(),
            agent: self.setup.agent.name.clone(),
            outcome,
            turns: self.turns,
            usage: self.usage,
            error: error.clone(),
        });
        SessionReport {
            session: self.id.clone(),
            agent: self.setup.agent.name.clone(),
            outcome,
            final_text,
            turns: self.turns,
            usage: self.usage,
            error,
        }
    }

    async fn turn_loop(
        &mut self,
        cancel: &CancellationToken,
    ) -> (SessionOutcome, String, Option<String>) {
        // A new run is new context: repeats count from here.
        self.repeats.reset();
        let mut empty_cuts = 0;
        let mut failures = 0;
        loop {
            if cancel.is_cancelled() {
                return (SessionOutcome::Cancelled, String::new(), None);
            }
            if self.turns >= self.setup.max_turns {
                let message = format!("stopped after {} model turns (max_turns)", self.turns);
                return (SessionOutcome::MaxTurns, String::new(), Some(message));
            }
            if let Some(budget) = self.setup.token_budget
                && self.usage.total() >= budget
            {
                let message = format!(
                    "token budget spent: {} of {budget} tokens used",
                    self.usage.total()
                );
                return (SessionOutcome::BudgetExceeded, String::new(), Some(message));
            }
            self.turns += 1;
            let turn = match self.model_turn(cancel, empty_cuts > 0).await {
                Ok(turn) => turn,
                Err(ProviderError::Cancelled) => {
                    return (SessionOutcome::Cancelled, String::new(), None);
                }
                Err(err) if err.is_retryable() && failures < self.setup.policy.turn_retries => {
                    failures += 1;
                    // Only the failed turn is taken up again; nothing of it
                    // reached the conversation.
                    self.turns -= 1;
                    if !self.wait_to_retry(&err, failures, cancel).await {
                        return (SessionOutcome::Cancelled, String::new(), None);
                    }
                    continue;
                }
                Err(err) => return (SessionOutcome::Failed, String::new(), Some(err.to_string())),
            };
            if turn.is_empty_cut() {
                empty_cuts += 1;
                if empty_cuts > 1 {
                    let message = format!(
                        "the model's turn was cut at its output limit ({} tokens) with no text and no tool call, twice",
                        turn.max_tokens
                    );
                    return (SessionOutcome::Failed, String::new(), Some(message));
                }
                // Never an empty assistant message in the conversation: the
                // same request goes again, with a larger output budget where
                // the model and its window allow one.
                let cut = format!(
                    "the model's turn was cut at {} output tokens with no text and no tool call",
                    turn.max_tokens
                );
                let again = match self.boosted_budget().await {
                    Some(next) if next > turn.max_tokens => {
                        format!("{cut}; asking again with a larger output budget ({next} tokens)")
                    }
                    Some(_) => format!(
                        "{cut}; asking once more at the same output budget, the most this model writes or its window leaves"
                    ),
                    None => format!("{cut}; asking once more after compacting the conversation"),
                };
                self.warn(again);
                continue;
            }
            empty_cuts = 0;
            failures = 0;
            let text = turn.text;
            let calls = turn.calls;
            self.push(Message::Assistant {
                text: text.clone(),
                tool_calls: calls.clone(),
            });
            if calls.is_empty() {
                return (SessionOutcome::Completed, text, None);
            }
            let mut outputs = self.run_tools(&calls, cancel).await;
            if let Some(last) = calls.last() {
                let ctx = self.tool_context(last, cancel);
                self.router.after_turn(&calls, &mut outputs, &ctx).await;
            }
            let results: Vec<String> = outputs.iter().map(|o| o.content.clone()).collect();
            // Tools that came or went meanwhile are news after this turn's
            // results: appended, so the request before stays its prefix.
            if let Some(notice) = self.tool_changes()
                && let Some(last) = outputs.last_mut()
            {
                last.content.push_str("\n\n");
                last.content.push_str(&notice);
            }
            // A task a result names is on record before the transcript has
            // it: a resume finds every task a conversation mentions.
            self.runtime.events.settle().await;
            // Every call gets its result before anything else happens, so
            // the conversation stays valid whatever comes next.
            for (call, output) in calls.iter().zip(outputs) {
                self.push(Message::Tool {
                    call_id: call.id.clone(),
                    name: call.name.clone(),
                    content: output.content,
                    is_error: output.is_error,
                });
            }
            if let Some(message) = self.repeats.observe(&calls, &results) {
                return (SessionOutcome::Repeating, text, Some(message));
            }
        }
    }

    /// Wait before taking turn `failure` up again after `err`; false when
    /// cancelled meanwhile.
    async fn wait_to_retry(
        &self,
        err: &ProviderError,
        failure: u32,
        cancel: &CancellationToken,
    ) -> bool {
        let policy = &self.setup.policy;
        let doubled = policy
            .turn_retry_base
            .saturating_mul(2u32.saturating_pow(failure - 1));
        let wait = err
            .retry_after()
            .unwrap_or_default()
            .max(doubled.min(policy.turn_retry_max));
        self.warn(format!(
            "the model call failed ({err}); taking the turn up again in {} s ({failure} of {})",
            wait.as_secs_f32().ceil() as u64,
            policy.turn_retries
        ));
        tokio::select! {
            _ = cancel.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }

    /// Run the calls of one turn. Consecutive read-only calls run together;
    /// any other call runs alone, in the order the model gave. Results come
    /// back in call order.
    async fn run_tools(&self, calls: &[ToolCall], cancel: &CancellationToken) -> Vec<ToolOutput> {
        let mut outputs = Vec::with_capacity(calls.len());
        let mut start = 0;
        while start < calls.len() {
            let end = if self.router.is_read_only(&calls[start]) {
                start
                    + calls[start..]
                        .iter()
                        .take_while(|call| self.router.is_read_only(call))
                        .count()
            } else {
                start + 1
            };
            let batch = calls[start..end].iter().map(|call| async move {
                let ctx = self.tool_context(call, cancel);
                self.router.call(call, &ctx).await
            });
            outputs.extend(join_all(batch).await);
            start = end;
        }
        outputs
    }

    fn tool_context(&self, call: &ToolCall, cancel: &CancellationToken) -> ToolContext {
        ToolContext {
            root: self.root.clone(),
            session: self.id.clone(),
            agent: self.setup.agent.name.clone(),
            role: self.setup.agent.role,
            call_id: call.id.clone(),
            cancel: cancel.child_token(),
            limits: self.runtime.limits.clone(),
            sandbox: Some(crate::sandbox::Profile::of(&self.setup.agent)),
            may_write: self.setup.agent.capabilities().write,
            seen: self.seen.clone(),
        }
    }

    fn push(&mut self, message: Message) {
        if let Err(err) = self.transcript.append(&message) {
            let path = self.transcript.path().display().to_string();
            self.warn(format!("transcript {path}: {err}"));
        }
        self.conversation().push(message);
    }

    /// The conversation, to change. The request that shared it has ended,
    /// so this does not copy.
    fn conversation(&mut self) -> &mut Vec<Message> {
        Arc::make_mut(&mut self.messages)
    }

    /// A warning about this session on the bus.
    fn warn(&self, message: String) {
        self.runtime.events.emit(Event::Warning {
            session: Some(self.id.clone()),
            message,
        });
    }
}

/// The router of a session of `setup.agent`: its own tools, the live tools
/// it may use (by schema, or past `tools.defer_share` of its model's window
/// by name only), and, when a source may offer tools in this run,
/// `call_tool` and `find_tools`; with the live version read.
fn tool_router(runtime: &Runtime, setup: &SessionSetup) -> (ToolRouter, u64) {
    let may_write = setup.agent.capabilities().write;
    let limits = runtime.memory.limits_of(&setup.model);
    let budget = (runtime.limits.defer_share * f64::from(limits.context_window) * 4.0) as usize;
    let offer = live::Offer::of(&runtime.live, may_write, budget);
    let mut registry = runtime
        .tools
        .subset(setup.agent.tools.iter().map(String::as_str));
    for tool in offer.direct {
        if registry.get(&tool.spec().name).is_none() {
            registry.insert(tool);
        }
    }
    if runtime.live.is_open() {
        registry.insert(Arc::new(live::CallTool::new(&offer.deferred)));
        registry.insert(Arc::new(live::FindTools {
            live: runtime.live.clone(),
            may_write,
        }));
    }
    let router = ToolRouter::new(
        registry,
        runtime.permissions.clone(),
        runtime.events.clone(),
        runtime.hooks.clone(),
    )
    .with_live(runtime.live.clone(), may_write);
    (router, offer.version)
}

/// `worker-m3k9q1-7f2a`: agent, time in base 36, a random suffix. Sortable
/// by creation time within an agent, unique across concurrent processes.
fn new_session_id(agent: &str) -> String {
    crate::events::unique_id(&agent.to_ascii_lowercase())
}

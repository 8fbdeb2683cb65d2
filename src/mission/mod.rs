//! The mission loop: the Commander works; whenever it goes idle — its turn
//! ends with no tool calls and none of its background tasks is still
//! running — the engine checks the completion gate. A failing gate sends the
//! Commander one continuation message saying exactly what failed; a passing
//! gate completes the mission; guards (iterations, no progress, repetition,
//! wall clock, budgets) stop it with a stated reason.
//!
//! The loop never prints and never talks HTTP: it sees the Commander as a
//! `Session`, delegated work through the `Tasks`, and reports through
//! events, which also become `state.json` and `events.jsonl`.

pub mod budget;
pub mod gate;
pub mod guards;
pub mod state;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::MissionConfig;
use crate::events::{Event, EventBus, MissionOutcome, SessionOutcome};
use crate::session::Session;
use crate::session::tasks::Tasks;
use crate::todo::{TodoError, TodoStore};
use gate::GateReport;
use guards::{ProgressGuard, StopSignal};
use state::{MissionPaths, StateSink};

/// How a mission ended, for the CLI's exit code.
#[derive(Debug, Clone, PartialEq)]
pub struct MissionReport {
    pub id: String,
    pub outcome: MissionOutcome,
    pub reason: String,
    pub iterations: u32,
}

/// One mission, wired and ready to run.
pub struct Mission {
    pub id: String,
    pub root: PathBuf,
    pub config: MissionConfig,
    /// The gate's checks (configured or detected).
    pub verify: Vec<String>,
    pub events: Arc<EventBus>,
    pub tasks: Arc<Tasks>,
    /// Background jobs the mission's agents started; killed when it ends.
    pub jobs: Arc<crate::tools::background::BackgroundJobs>,
    pub todo: Arc<TodoStore>,
    pub state: Arc<StateSink>,
    pub paths: MissionPaths,
    pub stop: Arc<StopSignal>,
}

/// Where the Commander starts.
pub enum Start {
    /// A new mission: this first message.
    Message(String),
    /// A resumed mission: continue the restored conversation, after telling
    /// the Commander what happened (if there is something to tell).
    Resume(Option<String>),
}

impl Mission {
    /// Run until the gate passes, a guard stops the mission, or `cancel`
    /// fires (Ctrl-C). `iteration` is where a resumed mission left off.
    pub async fn run(
        self,
        mut commander: Session,
        start: Start,
        mut iteration: u32,
        cancel: CancellationToken,
    ) -> MissionReport {
        let mut watchers = self.watch(cancel);
        let token = self.stop.token().clone();
        let mut progress = ProgressGuard::new(self.config.no_progress_iterations);
        // Tasks whose reports the next message carries.
        let mut delivering = Vec::new();
        let mut next = match start {
            Start::Message(text) => {
                self.begin_memory().await;
                Some(text)
            }
            Start::Resume(note) => {
                // Results that were in before the stop and never reached
                // the Commander come with the note, not a turn later (they
                // are not run again).
                match self.tasks.take_reports(commander.id()).await {
                    (Some(reports), _) => {
                        delivering = reports.tasks;
                        Some(format!(
                            "{}\n\nThese tasks had finished when the mission stopped; they are not run again.\n{}",
                            note.as_deref().unwrap_or("The mission was resumed."),
                            reports.message
                        ))
                    }
                    (None, _) => note,
                }
            }
        };
        let (outcome, reason) = loop {
            let report = match next.take() {
                Some(message) => commander.run(&message, &token).await,
                None => commander.proceed(&token).await,
            };
            // The reports it carried are in the Commander's transcript now.
            self.tasks.reported(std::mem::take(&mut delivering));
            if let Some(stop) = self.stop.reason() {
                break stop;
            }
            if let Some(stop) =
                commander_stop(report.outcome, report.turns, report.error.as_deref())
            {
                break stop;
            }
            // Idle, but background work may still report: hand results over
            // one message at a time, only now that the Commander is idle.
            let waited = tokio::select! {
                report = self.tasks.next_report(commander.id()) => report,
                _ = token.cancelled() => None,
            };
            if let Some(stop) = self.stop.reason() {
                break stop;
            }
            if let Some(reports) = waited {
                next = Some(reports.message);
                delivering = reports.tasks;
                continue;
            }
            iteration += 1;
            self.decay_memory().await;
            let gate = self.check_gate(iteration, &token).await;
            if let Some(stop) = self.stop.reason() {
                break stop;
            }
            if gate.passed {
                break (
                    MissionOutcome::Complete,
                    format!(
                        "all {} plan items are done{}",
                        gate.counts.total,
                        if self.verify.is_empty() {
                            ", no verification configured or detected".to_string()
                        } else {
                            format!(" and {} passed", self.verify.join(", "))
                        }
                    ),
                );
            }
            if iteration >= self.config.max_iterations {
                break (
                    MissionOutcome::Stopped,
                    format!(
                        "max iterations reached ({}) with the gate still failing",
                        self.config.max_iterations
                    ),
                );
            }
            let plan_text = tokio::fs::read_to_string(self.todo.path())
                .await
                .unwrap_or_default();
            let root = self.root.clone();
            // A walk of the whole workspace: off the async workers.
            let fingerprint =
                tokio::task::spawn_blocking(move || guards::fingerprint(&root, &plan_text))
                    .await
                    .unwrap_or_default();
            if progress.observe(fingerprint) {
                break (
                    MissionOutcome::Stopped,
                    format!(
                        "no progress: the plan and the workspace did not change for {} iterations",
                        progress.unchanged()
                    ),
                );
            }
            next = Some(gate::continuation(
                &gate,
                iteration,
                self.config.max_iterations,
            ));
        };
        watchers.abort_all();
        // Nothing outlives the mission: queued and running tasks and
        // background jobs stop now.
        self.tasks.shutdown().await;
        self.jobs.kill_all().await;
        // The end checkpoint and, for a complete mission, the removal of its
        // worktrees and refs (an unfinished one keeps them for `orch
        // resume`): git work, off the async workers.
        let (root, id) = (self.root.clone(), self.id.clone());
        let worktrees = self
            .tasks
            .worktrees()
            .filter(|_| outcome == MissionOutcome::Complete);
        let warnings = tokio::task::spawn_blocking(move || {
            let mut warnings = Vec::new();
            if let Err(err) = crate::worktree::checkpoint(&root, &id, "end") {
                warnings.push(format!(
                    "no end checkpoint for orch diff and orch undo: {err}"
                ));
            }
            if let Some(worktrees) = worktrees
                && let Err(err) = worktrees.clean_up()
            {
                warnings.push(format!("removing the mission's worktrees: {err}"));
            }
            warnings
        })
        .await
        .unwrap_or_else(|err| vec![format!("the end checkpoint and clean-up failed: {err}")]);
        for message in warnings {
            self.events.emit(Event::Warning {
                session: None,
                message,
            });
        }
        // The state folds the records: everything emitted so far first.
        self.events.flush().await;
        let snapshot = self.state.snapshot();
        self.events.emit(Event::MissionFinished {
            mission: self.id.clone(),
            outcome,
            reason: reason.clone(),
            iterations: iteration,
            usage: snapshot.usage,
            cost_usd: snapshot.cost_usd,
        });
        self.events.flush().await;
        if let Err(err) = self.state.persist() {
            self.events.emit(Event::Warning {
                session: None,
                message: format!("{}: {err}", self.paths.state().display()),
            });
        }
        let _ = std::fs::remove_file(self.paths.cancel_request());
        MissionReport {
            id: self.id,
            outcome,
            reason,
            iterations: iteration,
        }
    }

    /// The iteration boundary for memory: Mission scores take this
    /// iteration's use signals, and entries that faded out are evicted.
    async fn decay_memory(&self) {
        // Persisting the tiers writes and syncs files: off the async workers.
        let memory = self.tasks.runtime().memory.clone();
        let evicted = tokio::task::spawn_blocking(move || memory.end_iteration())
            .await
            .unwrap_or_default();
        self.report_evicted(&evicted);
    }

    /// A new mission's boundary for memory: Project scores take the use
    /// signals recorded since the last mission started. Not on a resume: it
    /// is the same mission.
    async fn begin_memory(&self) {
        let memory = self.tasks.runtime().memory.clone();
        match tokio::task::spawn_blocking(move || memory.begin_mission()).await {
            Ok(Ok(evicted)) => self.report_evicted(&evicted),
            Ok(Err(err)) => self.events.emit(Event::Warning {
                session: None,
                message: format!(
                    "{err}; the project memory's step at this mission's start is not saved"
                ),
            }),
            Err(_) => {}
        }
    }

    fn report_evicted(&self, evicted: &[crate::memory::Entry]) {
        if !evicted.is_empty() {
            self.events.emit(Event::MemoryEvicted {
                entries: evicted
                    .iter()
                    .map(|e| format!("{}:{}", e.tier.name(), e.id))
                    .collect(),
            });
        }
    }

    /// Check the gate and report it.
    async fn check_gate(&self, iteration: u32, token: &CancellationToken) -> GateReport {
        let plan = match self.todo.read().await {
            Ok(plan) => Ok(Some(plan)),
            Err(TodoError::NoPlan { .. }) => Ok(None),
            Err(err) => Err(err.to_string()),
        };
        let sync = self.todo.sync_issues().await.map_err(|err| err.to_string());
        let mut report = gate::check_plan(
            plan.as_ref().map(Option::as_ref).map_err(String::clone),
            sync.as_ref().map(Option::as_ref).map_err(String::clone),
        );
        // The project's checks run once the plan is done: a build and test
        // run per iteration while items are open would tell nothing new.
        if report.passed && !self.verify.is_empty() {
            report.verify = gate::run_verification(
                &self.root,
                &self.verify,
                Duration::from_millis(self.config.verify_timeout_ms),
                self.config.verify_output_bytes,
                token,
            )
            .await;
            if report.verify.iter().any(|v| !v.passed) {
                report.passed = false;
            }
        }
        self.events.emit(Event::PlanUpdated {
            counts: report.counts,
        });
        self.events.emit(Event::GateChecked {
            mission: self.id.clone(),
            iteration,
            passed: report.passed,
            open_items: report.open_items.clone(),
            sync_issues: report.sync_issues.clone(),
            verify: report.verify.clone(),
            note: report
                .note
                .iter()
                .chain(&report.unreadable)
                .cloned()
                .reduce(|all, one| format!("{all}; {one}")),
        });
        report
    }

    /// The watchers that stop the mission from outside the loop: Ctrl-C,
    /// `orch cancel` (a request file), and the wall-clock limit.
    fn watch(&self, cancel: CancellationToken) -> JoinSet<()> {
        let mut watchers = JoinSet::new();
        let stop = self.stop.clone();
        watchers.spawn(async move {
            cancel.cancelled().await;
            stop.trigger(MissionOutcome::Cancelled, "interrupted");
        });
        let stop = self.stop.clone();
        let request = self.paths.cancel_request();
        watchers.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if request.exists() {
                    stop.trigger(MissionOutcome::Cancelled, "cancelled by `orch cancel`");
                    return;
                }
            }
        });
        if let Some(secs) = self.config.max_wall_secs {
            let stop = self.stop.clone();
            watchers.spawn(async move {
                tokio::time::sleep(Duration::from_secs(secs)).await;
                stop.trigger(
                    MissionOutcome::Stopped,
                    format!("wall-clock limit reached ({secs} s)"),
                );
            });
        }
        watchers
    }
}

/// A Commander turn that did not end idle ends the mission.
fn commander_stop(
    outcome: SessionOutcome,
    turns: u32,
    error: Option<&str>,
) -> Option<(MissionOutcome, String)> {
    let error = error.unwrap_or("");
    match outcome {
        SessionOutcome::Completed => None,
        SessionOutcome::Cancelled => Some((MissionOutcome::Cancelled, "interrupted".into())),
        SessionOutcome::Repeating => Some((
            MissionOutcome::Stopped,
            format!("the Commander is repeating itself: {error}"),
        )),
        SessionOutcome::MaxTurns => Some((
            MissionOutcome::Stopped,
            format!(
                "the Commander took {turns} model turns without ending its turn (session.max_turns)"
            ),
        )),
        SessionOutcome::BudgetExceeded => Some((MissionOutcome::Stopped, error.to_string())),
        SessionOutcome::Failed => Some((
            MissionOutcome::Stopped,
            format!("the Commander's model call failed: {error}"),
        )),
    }
}

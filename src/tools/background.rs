//! Background jobs: `run_background`, `check_background`, `list_background`
//! and `kill_background`. Long commands (dev servers, slow test suites) run
//! in their own process groups while the agent goes on; their output tail is
//! kept; a cap bounds how many run at once; and every job is killed, whole
//! process group, when its owner (the mission, or the `orch run` session)
//! ends or is cancelled — nothing outlives orch.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Tool, ToolContext, ToolOutput, parse_args};
use crate::events::{Event, EventBus};
use crate::process::{self, Finished, Job, Keep, Program, Shell, Tail, scrubbed_env};
use crate::provider::ToolSpec;

/// Limits for background jobs.
#[derive(Debug, Clone, Copy)]
pub struct JobLimits {
    /// Jobs running at once.
    pub max_running: usize,
    /// Output kept per job (the tail), in bytes.
    pub output_bytes: usize,
    /// Timeout when the model gives none.
    pub default_timeout: Duration,
    /// Upper bound on a requested timeout.
    pub max_timeout: Duration,
}

/// Where a job stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum JobStatus {
    Running,
    Exited(i32),
    Killed(String),
}

impl JobStatus {
    fn word(&self) -> &'static str {
        match self {
            JobStatus::Running => "running",
            JobStatus::Exited(0) => "done",
            JobStatus::Exited(_) => "failed",
            JobStatus::Killed(_) => "killed",
        }
    }
}

struct JobEntry {
    id: String,
    label: String,
    command: String,
    started: Instant,
    output: Mutex<Tail>,
    status: Mutex<JobStatus>,
    ended: Mutex<Option<Instant>>,
    cancel: CancellationToken,
    /// The sandbox profile of the agent that started it.
    profile: Option<crate::sandbox::Profile>,
    /// Where it runs: the starting session's root (a task's worktree, or
    /// the project).
    root: PathBuf,
    /// The session that started it.
    session: String,
}

/// Every background job of one owner.
pub struct BackgroundJobs {
    limits: JobLimits,
    events: Arc<EventBus>,
    jobs: Mutex<BTreeMap<u64, Arc<JobEntry>>>,
    next: AtomicU64,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl BackgroundJobs {
    pub fn new(limits: JobLimits, events: Arc<EventBus>) -> Arc<Self> {
        Arc::new(BackgroundJobs {
            limits,
            events,
            jobs: Mutex::default(),
            next: AtomicU64::new(1),
            tracker: TaskTracker::new(),
            cancel: CancellationToken::new(),
        })
    }

    /// The four tools, sharing these jobs.
    pub fn tools(self: &Arc<Self>) -> Vec<Arc<dyn Tool>> {
        vec![
            Arc::new(RunBackground(self.clone())),
            Arc::new(CheckBackground(self.clone())),
            Arc::new(ListBackground(self.clone())),
            Arc::new(KillBackground(self.clone())),
        ]
    }

    /// Kill every job (whole process groups) and wait until all are reaped.
    /// Kill the jobs `session` started (its task is ending: nothing of it
    /// may go on writing its worktree), and wait for them to end.
    pub async fn kill_session(&self, session: &str) {
        let jobs: Vec<Arc<JobEntry>> = self
            .jobs
            .lock()
            .expect("job table lock")
            .values()
            .filter(|job| job.session == session)
            .cloned()
            .collect();
        for job in &jobs {
            job.cancel.cancel();
        }
        for job in jobs {
            while job.ended.lock().expect("job end lock").is_none() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    pub async fn kill_all(&self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    fn running(&self) -> usize {
        self.jobs
            .lock()
            .expect("job table lock")
            .values()
            .filter(|job| *job.status.lock().expect("job status lock") == JobStatus::Running)
            .count()
    }

    fn find(&self, id: &str) -> Result<Arc<JobEntry>, String> {
        let number = id.strip_prefix("bg_").and_then(|n| n.parse::<u64>().ok());
        number
            .and_then(|n| self.jobs.lock().expect("job table lock").get(&n).cloned())
            .ok_or_else(|| format!("no background job \"{id}\"; list_background shows them"))
    }

    fn start(
        self: &Arc<Self>,
        command: String,
        timeout: Duration,
        label: String,
        session: &str,
        profile: Option<crate::sandbox::Profile>,
        root: &std::path::Path,
    ) -> Result<String, String> {
        if self.cancel.is_cancelled() {
            return Err("orch is shutting down; no new background jobs start".into());
        }
        if self.running() >= self.limits.max_running {
            return Err(format!(
                "{} background jobs are already running (the most allowed); check or kill one first",
                self.limits.max_running
            ));
        }
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(JobEntry {
            id: format!("bg_{number}"),
            label,
            command,
            started: Instant::now(),
            output: Mutex::new(Tail::new(self.limits.output_bytes.max(1))),
            status: Mutex::new(JobStatus::Running),
            ended: Mutex::new(None),
            cancel: self.cancel.child_token(),
            profile,
            root: root.to_path_buf(),
            session: session.to_string(),
        });
        self.jobs
            .lock()
            .expect("job table lock")
            .insert(number, entry.clone());
        self.events.emit(Event::BackgroundStarted {
            session: session.to_string(),
            job: entry.id.clone(),
            label: entry.label.clone(),
            command: entry.command.clone(),
        });
        let jobs = self.clone();
        let job = entry.clone();
        self.tracker.spawn(async move {
            let outcome = process::run(Job {
                program: Program::Shell(Shell::Bash, &job.command),
                root: &job.root,
                timeout,
                cancel: &job.cancel,
                keep: Keep::Tail(jobs.limits.output_bytes),
                env: scrubbed_env(std::env::vars_os()),
                live: Some(&job.output),
                sandbox: job.profile,
            })
            .await;
            let status = finished_status(outcome, timeout);
            *job.ended.lock().expect("job end lock") = Some(Instant::now());
            *job.status.lock().expect("job status lock") = status.clone();
            let exit_code = match status {
                JobStatus::Exited(code) => Some(code),
                _ => None,
            };
            jobs.events.emit(Event::BackgroundFinished {
                job: job.id.clone(),
                status: status.word().to_string(),
                exit_code,
            });
        });
        Ok(entry.id.clone())
    }
}

fn finished_status(outcome: std::io::Result<Finished>, timeout: Duration) -> JobStatus {
    match outcome {
        Ok(run) if run.timed_out => {
            JobStatus::Killed(format!("timed out after {} ms", timeout.as_millis()))
        }
        Ok(run) if run.cancelled => JobStatus::Killed("killed".into()),
        Ok(run) => match (run.exit_code, run.signal) {
            (Some(code), _) => JobStatus::Exited(code),
            (None, Some(signal)) => JobStatus::Killed(format!("killed by signal {signal}")),
            (None, None) => JobStatus::Killed("ended without an exit status".into()),
        },
        Err(err) => JobStatus::Killed(format!("could not start: {err}")),
    }
}

fn describe(job: &JobEntry) -> String {
    let status = job.status.lock().expect("job status lock").clone();
    let ran = job
        .ended
        .lock()
        .expect("job end lock")
        .unwrap_or_else(Instant::now)
        .duration_since(job.started);
    let detail = match &status {
        JobStatus::Running => format!("running for {:.1} s", ran.as_secs_f64()),
        JobStatus::Exited(code) => {
            format!("exited with code {code} after {:.1} s", ran.as_secs_f64())
        }
        JobStatus::Killed(why) => format!("{why} after {:.1} s", ran.as_secs_f64()),
    };
    let label = if job.label.is_empty() {
        String::new()
    } else {
        format!(" [{}]", job.label)
    };
    format!(
        "{}{label} {}: {detail} — {}",
        job.id,
        status.word(),
        job.command
    )
}

fn tail_lines(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n")
}

pub struct RunBackground(Arc<BackgroundJobs>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunArgs {
    command: String,
    timeout_ms: Option<u64>,
    label: Option<String>,
}

#[async_trait]
impl Tool for RunBackground {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "run_background".into(),
            description: "Start a shell command in the background (dev servers, slow test suites) and return its job id at once. It is killed at its timeout and when the mission ends.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "command": {"type": "string"},
                    "timeout_ms": {"type": "integer", "minimum": 1},
                    "label": {"type": "string", "description": "a short name for the job"}
                },
                "required": ["command"],
                "additionalProperties": false
            }),
        }
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> ToolOutput {
        let args: RunArgs = match parse_args("run_background", args) {
            Ok(args) => args,
            Err(output) => return output,
        };
        if args.command.trim().is_empty() {
            return ToolOutput::error("command is empty");
        }
        let limits = self.0.limits;
        let timeout = args
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(limits.default_timeout)
            .min(limits.max_timeout);
        match self.0.start(
            args.command,
            timeout,
            args.label.unwrap_or_default(),
            &ctx.session,
            ctx.sandbox,
            &ctx.root,
        ) {
            Ok(id) => ToolOutput::ok(format!(
                "started {id} (timeout {} s); check_background(\"{id}\") shows its output",
                timeout.as_secs()
            )),
            Err(message) => ToolOutput::error(message),
        }
    }
}

pub struct CheckBackground(Arc<BackgroundJobs>);

#[async_trait]
impl Tool for CheckBackground {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "check_background".into(),
            description: "A background job's status and the last lines of its output.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "tail_lines": {"type": "integer", "minimum": 1}
                },
                "required": ["id"],
                "additionalProperties": false
            }),
        }
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn call(&self, args: Value, _ctx: &ToolContext) -> ToolOutput {
        let Some(id) = args.get("id").and_then(Value::as_str) else {
            return ToolOutput::error("missing required parameter \"id\"");
        };
        let lines = args.get("tail_lines").and_then(Value::as_u64).unwrap_or(50) as usize;
        match self.0.find(id) {
            Ok(job) => {
                let output = job.output.lock().expect("job output lock").snapshot();
                let shown = tail_lines(&output, lines.max(1));
                ToolOutput::ok(format!(
                    "{}\n{}",
                    describe(&job),
                    if shown.is_empty() {
                        "(no output yet)".to_string()
                    } else {
                        shown
                    }
                ))
            }
            Err(message) => ToolOutput::error(message),
        }
    }
}

pub struct ListBackground(Arc<BackgroundJobs>);

#[async_trait]
impl Tool for ListBackground {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "list_background".into(),
            description: "Background jobs with their status.".into(),
            parameters: json!({
                "type": "object",
                "properties": {"status": {"type": "string", "enum": ["all", "running", "done", "failed", "killed"]}},
                "additionalProperties": false
            }),
        }
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn call(&self, args: Value, _ctx: &ToolContext) -> ToolOutput {
        let wanted = args.get("status").and_then(Value::as_str).unwrap_or("all");
        let jobs: Vec<Arc<JobEntry>> = self
            .0
            .jobs
            .lock()
            .expect("job table lock")
            .values()
            .cloned()
            .collect();
        let rows: Vec<String> = jobs
            .iter()
            .filter(|job| {
                wanted == "all" || job.status.lock().expect("job status lock").word() == wanted
            })
            .map(|job| describe(job))
            .collect();
        ToolOutput::ok(if rows.is_empty() {
            "no background jobs".to_string()
        } else {
            rows.join("\n")
        })
    }
}

pub struct KillBackground(Arc<BackgroundJobs>);

#[async_trait]
impl Tool for KillBackground {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "kill_background".into(),
            description: "Stop a background job and everything it started.".into(),
            parameters: json!({
                "type": "object",
                "properties": {"id": {"type": "string"}},
                "required": ["id"],
                "additionalProperties": false
            }),
        }
    }

    async fn call(&self, args: Value, _ctx: &ToolContext) -> ToolOutput {
        let Some(id) = args.get("id").and_then(Value::as_str) else {
            return ToolOutput::error("missing required parameter \"id\"");
        };
        let job = match self.0.find(id) {
            Ok(job) => job,
            Err(message) => return ToolOutput::error(message),
        };
        if *job.status.lock().expect("job status lock") != JobStatus::Running {
            return ToolOutput::ok(format!("{} already ended: {}", job.id, describe(&job)));
        }
        job.cancel.cancel();
        // The runner reaps the group; wait briefly so the answer is final.
        for _ in 0..50 {
            if *job.status.lock().expect("job status lock") != JobStatus::Running {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ToolOutput::ok(describe(&job))
    }
}

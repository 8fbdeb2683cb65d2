//! `orch status` and `orch cancel`: the latest mission as its state file
//! says, read from another terminal, and a clean stop asked of it through
//! its cancel request file.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, anyhow};

use super::{Cli, exit};
use crate::mission::gate;
use crate::mission::state::{self, MissionPaths, MissionState, MissionStatus};
use crate::monitor::metrics::usage_text;

/// Whether process `pid` is alive.
pub(super) fn alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    pid != 0 && unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

/// The latest mission if its state says running and its process is alive.
pub(super) fn running_mission(root: &Path) -> Option<MissionState> {
    let id = state::latest_mission(root)?;
    let state = state::read_state(root, &id).ok()?;
    (state.status == MissionStatus::Running && alive(state.pid) && state.pid != std::process::id())
        .then_some(state)
}

/// Why a second mission does not start in a project while `running` runs.
pub(super) fn already_running(running: &MissionState) -> String {
    format!(
        "mission {} is already running in this project (process {}); `orch cancel` stops it",
        running.id, running.pid
    )
}

pub fn status(cli: &Cli) -> anyhow::Result<u8> {
    let root = super::project_root(cli.dir.as_deref())?;
    let Some(id) = state::latest_mission(&root) else {
        println!("no mission has run in {}", root.display());
        return Ok(exit::COMPLETE);
    };
    let mut saved = state::read_state(&root, &id).map_err(|err| anyhow!(err))?;
    let stale = saved.status == MissionStatus::Running && !alive(saved.pid);
    let plan = crate::todo::Plan::parse(
        &std::fs::read_to_string(root.join(".opencode/todo.md")).unwrap_or_default(),
    );
    saved.plan = Some(gate::plan_counts(&plan));
    if cli.json {
        let mut value = serde_json::to_value(&saved)?;
        value["process_alive"] =
            serde_json::Value::Bool(!stale && saved.status == MissionStatus::Running);
        println!("{}", serde_json::to_string(&value)?);
        return Ok(exit::COMPLETE);
    }
    print!("{}", render_status(&saved, stale));
    Ok(exit::COMPLETE)
}

fn render_status(saved: &MissionState, stale: bool) -> String {
    let mut out = String::new();
    let status = match saved.status {
        MissionStatus::Running if stale => {
            "interrupted (its process is gone; `orch resume` continues it)".to_string()
        }
        MissionStatus::Running => format!("running (process {})", saved.pid),
        MissionStatus::Complete => "complete".into(),
        MissionStatus::Stopped => "stopped".into(),
        MissionStatus::Cancelled => "cancelled".into(),
    };
    out.push_str(&format!("mission {}: {status}\n", saved.id));
    out.push_str(&format!("goal: {}\n", saved.goal));
    if let Some(reason) = &saved.reason {
        out.push_str(&format!("reason: {reason}\n"));
    }
    let elapsed = saved.updated_ms.saturating_sub(saved.started_ms) / 1000;
    out.push_str(&format!(
        "iteration {} of {}, {}m{:02}s\n",
        saved.iteration,
        saved.max_iterations,
        elapsed / 60,
        elapsed % 60
    ));
    if let Some(plan) = saved.plan {
        out.push_str(&format!(
            "plan: {}/{} done, {} in progress, {} failed\n",
            plan.done, plan.total, plan.in_progress, plan.failed
        ));
    }
    if let Some(gate) = &saved.last_gate {
        out.push_str(&format!(
            "last gate (iteration {}): {}\n",
            gate.iteration,
            if gate.passed { "passed" } else { "failed" }
        ));
    }
    let cost = saved.cost_usd.map_or_else(
        || "unknown (no pricing)".to_string(),
        |c| format!("${c:.4}"),
    );
    out.push_str(&format!(
        "tokens: {}; cost {cost}\n",
        usage_text(&saved.usage, |n| n.to_string())
    ));
    if let Some(limit) = saved.budget_tokens {
        out.push_str(&format!(
            "token budget: {} of {limit} used\n",
            saved.usage.total()
        ));
    }
    if let Some(limit) = saved.budget_usd {
        let spent = saved
            .cost_usd
            .map_or("an unknown amount".to_string(), |c| format!("${c:.4}"));
        out.push_str(&format!("dollar budget: {spent} of ${limit:.2} spent\n"));
    }
    for (agent, usage) in &saved.usage_by_agent {
        let cost = saved
            .cost_by_agent
            .get(agent)
            .map_or(String::new(), |c| format!("; cost ${c:.4}"));
        out.push_str(&format!(
            "  {agent}: {}{cost}\n",
            usage_text(usage, |n| n.to_string())
        ));
    }
    if saved.cost_usd.is_some() {
        out.push_str(&format!(
            "  (costs at list prices as of {}, where orch.json sets no pricing)\n",
            crate::models::PRICES_AS_OF
        ));
    }
    out.push_str(&format!(
        "queue: {} waiting; pool: {} created, {} reused, {} idle\n",
        saved.queued(),
        saved.pool.creations,
        saved.pool.reuse_hits,
        saved.pool.idle
    ));
    if !saved.sessions.is_empty() {
        out.push_str("sessions:\n");
        for (id, session) in &saved.sessions {
            out.push_str(&format!(
                "  {id}  {}  {}  {} tokens\n",
                session.agent,
                session.activity,
                session.usage.total()
            ));
        }
    }
    if !saved.tasks.is_empty() {
        out.push_str("tasks:\n");
        for (id, task) in &saved.tasks {
            out.push_str(&format!(
                "  {id}  {}  {}{}  {}\n",
                task.agent,
                task.status.name(),
                if task.background { " (background)" } else { "" },
                task.description
            ));
            if !task.landed.is_empty() {
                out.push_str(&format!("      landed: {}\n", task.landed.join(", ")));
            }
            if !task.conflicts.is_empty() {
                out.push_str(&format!(
                    "      conflicts in {}; nothing landed{}\n",
                    task.conflicts.join(", "),
                    task.conflict_item
                        .as_deref()
                        .map_or(String::new(), |item| format!(" (plan item {item})"))
                ));
            }
            if let Some(tree) = task
                .worktree
                .as_deref()
                .filter(|_| !task.status.is_finished())
            {
                out.push_str(&format!("      worktree: {tree}\n"));
            }
        }
    }
    if !saved.jobs.is_empty() {
        out.push_str("background jobs:\n");
        for (id, job) in &saved.jobs {
            let code = job
                .exit_code
                .map_or(String::new(), |c| format!(" (exit {c})"));
            let name = if job.label.is_empty() {
                &job.command
            } else {
                &job.label
            };
            out.push_str(&format!("  {id}  {}{code}  {name}\n", job.status));
        }
    }
    out
}

pub async fn cancel(cli: &Cli) -> anyhow::Result<u8> {
    let root = super::project_root(cli.dir.as_deref())?;
    let id = state::latest_mission(&root)
        .ok_or_else(|| anyhow!("no mission has run in {}", root.display()))?;
    let saved = state::read_state(&root, &id).map_err(|err| anyhow!(err))?;
    if saved.status != MissionStatus::Running {
        println!(
            "mission {id} is not running ({})",
            status_word(saved.status)
        );
        return Ok(exit::COMPLETE);
    }
    if !alive(saved.pid) {
        println!(
            "mission {id} is not running: its process {} is gone; `orch resume` continues it",
            saved.pid
        );
        return Ok(exit::COMPLETE);
    }
    request_cancel(&root, &id)?;
    println!("cancelling mission {id}…");
    for _ in 0..150 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        match state::read_state(&root, &id) {
            Ok(now) if now.status != MissionStatus::Running => {
                println!("mission {id} {}", status_word(now.status));
                return Ok(exit::COMPLETE);
            }
            _ if !alive(saved.pid) => {
                println!("mission {id} stopped");
                return Ok(exit::COMPLETE);
            }
            _ => {}
        }
    }
    println!("mission {id} was asked to stop; it is still finishing its current step");
    Ok(exit::UNFINISHED)
}

/// Ask mission `id` to stop cleanly: the request file its loop watches.
pub(super) fn request_cancel(root: &Path, id: &str) -> anyhow::Result<()> {
    let request = MissionPaths::new(root, id).cancel_request();
    crate::files::replace(&request, b"cancel\n", crate::files::Durability::Crash)
        .with_context(|| format!("writing {}", request.display()))
}

pub(super) fn status_word(status: MissionStatus) -> &'static str {
    match status {
        MissionStatus::Running => "running",
        MissionStatus::Complete => "complete",
        MissionStatus::Stopped => "stopped",
        MissionStatus::Cancelled => "cancelled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Usage;

    fn usage(input: u64, cached_input: u64, cache_write: u64, output: u64) -> Usage {
        Usage {
            input,
            output,
            cached_input,
            cache_write,
            reasoning: 0,
        }
    }

    #[test]
    fn status_shows_the_cache_share_and_the_cost_in_total_and_per_agent() {
        let mut saved = MissionState::new("m-1", "goal", 5, "commander-1");
        saved.status = MissionStatus::Complete;
        saved.usage = usage(6600, 2500, 1000, 180);
        saved.usage_by_agent = [
            ("Commander".to_string(), usage(4400, 1500, 1000, 120)),
            ("Reviewer".to_string(), usage(2200, 1000, 0, 60)),
            ("Worker".to_string(), usage(0, 0, 0, 0)),
        ]
        .into();
        saved.cost_usd = Some(0.011);
        // The Worker's model has no price: its line says no cost.
        saved.cost_by_agent = [
            ("Commander".to_string(), 0.0078),
            ("Reviewer".to_string(), 0.0032),
        ]
        .into();
        let text = render_status(&saved, false);
        let lines: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("tokens") || line.contains(" in"))
            .collect();
        assert_eq!(
            lines,
            [
                "tokens: 6600 in (38% cached, 1000 written), 180 out; cost $0.0110",
                "  Commander: 4400 in (34% cached, 1000 written), 120 out; cost $0.0078",
                "  Reviewer: 2200 in (45% cached), 60 out; cost $0.0032",
                "  Worker: 0 in, 0 out",
            ],
            "{text}"
        );

        // Costs say how old the built-in prices are.
        assert!(
            text.contains(&format!(
                "  (costs at list prices as of {}, where orch.json sets no pricing)\n",
                crate::models::PRICES_AS_OF
            )),
            "{text}"
        );

        saved.cost_usd = None;
        let text = render_status(&saved, false);
        assert!(
            text.contains("180 out; cost unknown (no pricing)\n"),
            "{text}"
        );
        assert!(!text.contains("list prices as of"), "{text}");
    }
}

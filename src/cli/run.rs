//! `orch run --agent NAME "<prompt>"`: one agent session, no mission loop.

use std::io::Read;

use anyhow::{Context as _, anyhow};

use super::{Cli, Project, exit};
use crate::events::SessionOutcome;
use crate::session::Session;

pub async fn run(cli: &Cli, args: &super::args::RunArgs) -> anyhow::Result<u8> {
    let mut ctx = Project::load(cli)?;
    let prompt = if args.prompt == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the prompt from standard input")?;
        text
    } else {
        args.prompt.clone()
    };
    let prompt = super::commands::expand_goal(cli, &mut ctx, &prompt, &args.args)?;
    // After the expansion: a command's model decides the agents' catalogs.
    let (agents, warnings) = ctx.agents();
    ctx.warn(warnings);
    let agent = agents.find(&args.agent).cloned().ok_or_else(|| {
        let names: Vec<&str> = agents.iter().map(|a| a.name.as_str()).collect();
        anyhow!(
            "unknown agent \"{}\"; agents: {}",
            args.agent,
            names.join(", ")
        )
    })?;
    let client = ctx.model_client()?;
    ctx.record_into(&journal_path(&ctx.root), Vec::new())?;
    let needs_default = ctx.config.agent(&agent.name).model.is_none() && agent.model.is_none();
    let default_model = if needs_default {
        ctx.default_model()?
    } else {
        String::new()
    };
    let mut setup = ctx.setup(&agent, &default_model);
    if let Some(max_turns) = args.max_turns {
        setup.max_turns = max_turns;
    }
    setup.token_budget = cli.budget_tokens;
    let (runtime, _todo) = ctx.runtime(client).await;
    let mut session = Session::new(runtime, setup).with_context(|| {
        format!(
            "cannot create the session transcript under {}",
            ctx.root.join(".opencode/sessions").display()
        )
    })?;
    let report = session.run(&prompt, &ctx.cancel).await;
    // Nothing the session started outlives it.
    ctx.jobs.kill_all().await;
    Ok(match report.outcome {
        SessionOutcome::Completed => exit::COMPLETE,
        SessionOutcome::Cancelled => super::interrupted_code(),
        SessionOutcome::MaxTurns
        | SessionOutcome::BudgetExceeded
        | SessionOutcome::Repeating
        | SessionOutcome::Failed => exit::UNFINISHED,
    })
}

/// Where a run outside a mission (`orch run`, `orch plan`) records its
/// events: `.opencode/runs/<id>/events.jsonl`.
pub(super) fn journal_path(root: &std::path::Path) -> std::path::PathBuf {
    root.join(".opencode")
        .join("runs")
        .join(crate::events::unique_id("r"))
        .join("events.jsonl")
}

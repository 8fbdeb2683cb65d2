//! `orch run --agent NAME "<prompt>"`: one agent session, no mission loop.

use std::io::Read;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};

use super::{Cli, Invocation, exit};
use crate::agents::AgentRegistry;
use crate::events::SessionOutcome;
use crate::session::{Runtime, Session, SessionSetup};
use crate::tools::ToolRegistry;
use crate::tools::permissions::Permissions;

pub async fn run(cli: &Cli, args: &super::args::RunArgs) -> anyhow::Result<u8> {
    let ctx = Invocation::load(cli)?;
    let agents = AgentRegistry::builtin();
    let agent = agents.find(&args.agent).cloned().ok_or_else(|| {
        let names: Vec<&str> = agents.iter().map(|a| a.name.as_str()).collect();
        anyhow!("unknown agent \"{}\"; agents: {}", args.agent, names.join(", "))
    })?;
    let prompt = if args.prompt == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the prompt from standard input")?;
        text
    } else {
        args.prompt.clone()
    };
    let client = ctx.model_client()?;
    let settings = ctx.config.agent(&agent.name);
    let setup = SessionSetup {
        model: ctx.model_for(&agent.name)?,
        max_turns: args
            .max_turns
            .or(settings.max_turns)
            .unwrap_or(ctx.config.session.max_turns),
        max_output_tokens: settings
            .max_output_tokens
            .unwrap_or(ctx.config.session.max_output_tokens),
        token_budget: cli.budget_tokens,
        agent,
    };
    let runtime = Runtime {
        root: Arc::new(ctx.root.clone()),
        client,
        tools: ToolRegistry::builtins(),
        permissions: Permissions::new(ctx.config.permissions.clone(), ctx.interactive),
        events: ctx.events.clone(),
        limits: Arc::new(ctx.config.tools.clone()),
    };
    let mut session = Session::new(runtime, setup).with_context(|| {
        format!("cannot create the session transcript under {}", ctx.root.join(".opencode/sessions").display())
    })?;
    let report = session.run(&prompt, &ctx.cancel).await;
    Ok(match report.outcome {
        SessionOutcome::Completed => exit::COMPLETE,
        SessionOutcome::Cancelled => exit::INTERRUPTED,
        SessionOutcome::MaxTurns | SessionOutcome::BudgetExceeded | SessionOutcome::Failed => {
            exit::UNFINISHED
        }
    })
}

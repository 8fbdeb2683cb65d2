//! `orch agents`: the built-in agents, the project's custom agents and the
//! agents plugins define, with their tools.

use super::{Cli, exit};
use crate::agents::AgentRegistry;

pub fn agents(cli: &Cli) -> anyhow::Result<u8> {
    let root = super::project_root(cli.dir.as_deref())?;
    let config = crate::config::load(&root, &cli.overrides())?;
    let (mut agents, mut warnings) = AgentRegistry::load(&root, config.trust.trusted);
    warnings.extend(super::plugins::add_agents(&root, &config, &mut agents));
    for warning in &warnings {
        eprintln!("warning: {warning}");
    }
    if cli.json {
        let list: Vec<serde_json::Value> = agents
            .iter()
            .map(|a| {
                serde_json::json!({
                    "name": a.name,
                    "source": match &a.source { crate::agents::AgentSource::Builtin => "builtin".to_string(), other => other.describe() },
                    "description": a.description,
                    "tools": a.tools,
                    "model": a.model,
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&list)?);
        return Ok(exit::COMPLETE);
    }
    for agent in agents.iter() {
        let source = agent.source.describe();
        println!("{} ({source}): {}", agent.name, agent.description);
        println!("  tools: {}", agent.tools.join(", "));
        if let Some(model) = &agent.model {
            println!("  model: {model}");
        }
    }
    Ok(exit::COMPLETE)
}

//! Custom commands on the command line: `orch commands` lists them, and a
//! goal or prompt starting with `/name` runs one (`crate::commands`).

use anyhow::bail;

use super::{Cli, Project, exit};
use crate::commands::{self, Commands};
use crate::skills::Problem;

/// `goal` (and the `extra` words after it on the command line) as the text
/// to run. `/name args…` is the command's prompt with the arguments put in,
/// and the command's `model` becomes the run's default model (a `--model`
/// flag wins); any other goal is itself, and words after it are refused.
pub(super) fn expand_goal(
    cli: &Cli,
    ctx: &mut Project,
    goal: &str,
    extra: &[String],
) -> anyhow::Result<String> {
    let Some(name) = commands::invoked(goal) else {
        if !extra.is_empty() {
            bail!(
                "unexpected words after the goal: {}; quote the goal (orch task \"fix the parser\"), or start it with /name to run a custom command (orch commands lists them)",
                extra.join(" ")
            );
        }
        return Ok(goal.to_string());
    };
    let trusted = ctx.config.trust.trusted;
    let found = commands::scan(&ctx.root, trusted);
    ctx.warn(found.warnings());
    let Some(command) = found.find(name) else {
        let theirs = !trusted && commands::scan(&ctx.root, true).find(name).is_some();
        if theirs {
            bail!(
                "/{name} is a command of this project, which is not trusted: run `orch trust` to review and trust it (or pass --trust-project for one run)"
            );
        }
        bail!("unknown command /{name}; {}", found.known());
    };
    let args: Vec<String> = goal
        .split_whitespace()
        .skip(1)
        .map(str::to_string)
        .chain(extra.iter().cloned())
        .collect();
    if cli.model.is_none()
        && let Some(model) = &command.model
    {
        ctx.config.model = Some(model.clone());
    }
    Ok(commands::expand(&command.body, &args))
}

/// `orch commands`: every custom command with its scope, description,
/// argument hint and file; invalid command files with the reason (exit 1
/// when there is one).
pub fn list(cli: &Cli) -> anyhow::Result<u8> {
    let root = super::project_root(cli.dir.as_deref())?;
    let config = crate::config::load(&root, &cli.overrides())?;
    let found: Commands = commands::scan(&root, config.trust.trusted);
    for dir in &found.ignored {
        eprintln!(
            "warning: the commands in {} are not used until you trust this project: run `orch trust` (or pass --trust-project for one run)",
            dir.display()
        );
    }
    if cli.json {
        let list: Vec<serde_json::Value> = found
            .commands
            .iter()
            .map(|command| {
                serde_json::json!({
                    "name": format!("/{}", command.name),
                    "scope": command.scope.name(),
                    "description": command.description,
                    "argument_hint": command.argument_hint,
                    "model": command.model,
                    "file": command.file,
                })
            })
            .collect();
        let invalid: Vec<serde_json::Value> = found.problems.iter().map(Problem::json).collect();
        println!(
            "{}",
            serde_json::json!({"commands": list, "invalid": invalid})
        );
    } else {
        if found.commands.is_empty() {
            println!("no custom commands found");
        }
        for command in &found.commands {
            let hint = command
                .argument_hint
                .as_deref()
                .map(|hint| format!(" {hint}"))
                .unwrap_or_default();
            let description = command
                .description
                .as_deref()
                .map(|text| format!(": {}", crate::text::one_line(text)))
                .unwrap_or_default();
            let model = command
                .model
                .as_deref()
                .map(|model| format!(" [model {model}]"))
                .unwrap_or_default();
            println!(
                "/{}{} ({}){description}{model}",
                command.name,
                crate::text::printable(&hint),
                command.scope.name(),
            );
            println!("  {}", command.file.display());
        }
        for (command, by) in &found.shadowed {
            println!(
                "not used: /{} in {} ({} has the same name)",
                command.name,
                command.file.display(),
                by.display()
            );
        }
        for problem in &found.problems {
            println!("invalid: {}: {}", problem.file.display(), problem.reason);
        }
    }
    Ok(if found.problems.is_empty() {
        exit::COMPLETE
    } else {
        exit::UNFINISHED
    })
}

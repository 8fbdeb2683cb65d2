//! `orch skills`: the Agent Skills agents can load (`crate::skills`), with
//! the folder each comes from, and every invalid `SKILL.md` with its reason.

use super::{Cli, exit};
use crate::skills::{Problem, Sources};

/// List the skills of this project and of the user; exit 1 when a
/// `SKILL.md` is invalid (DESIGN §2).
pub fn skills(cli: &Cli) -> anyhow::Result<u8> {
    let root = super::project_root(cli.dir.as_deref())?;
    let config = crate::config::load(&root, &cli.overrides())?;
    let sources = Sources::of(&root, config.trust.trusted);
    let found = sources.scan();
    for dir in &found.ignored {
        eprintln!(
            "warning: the skills in {} are ignored until you trust this project: run `orch trust` (or pass --trust-project for one run)",
            dir.display()
        );
    }
    if cli.json {
        let list: Vec<serde_json::Value> = found
            .skills
            .iter()
            .map(|skill| {
                serde_json::json!({
                    "name": skill.name,
                    "scope": skill.scope.name(),
                    "path": skill.dir,
                    "description": skill.description,
                })
            })
            .collect();
        let invalid: Vec<serde_json::Value> = found.problems.iter().map(Problem::json).collect();
        println!(
            "{}",
            serde_json::json!({"skills": list, "invalid": invalid})
        );
    } else {
        if found.skills.is_empty() {
            let looked: Vec<String> = sources
                .project
                .iter()
                .chain(&sources.user)
                .map(|dir| dir.display().to_string())
                .collect();
            println!("no skills found (looked in {})", looked.join(", "));
        }
        for skill in &found.skills {
            println!(
                "{} ({}) {}",
                skill.name,
                skill.scope.name(),
                skill.dir.display()
            );
            println!(
                "  {}",
                crate::text::preview(&crate::text::squash_spaces(&skill.description), 160)
            );
        }
        for shadowed in &found.shadowed {
            println!("not used: {shadowed}");
        }
        for problem in &found.problems {
            println!(
                "invalid: {}: {}",
                problem.file.display(),
                crate::text::printable(&problem.reason)
            );
        }
    }
    Ok(if found.problems.is_empty() {
        exit::COMPLETE
    } else {
        exit::UNFINISHED
    })
}

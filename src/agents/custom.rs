//! Custom agents from `.opencode/agents.json`.
//!
//! The file is an object keyed by agent name, each value
//! `{id, description, systemPrompt, canWrite, canBash}` plus optional `model`
//! and `tools`. `canWrite: false` removes `write`/`edit` and `canBash: false`
//! removes `bash`, whatever `tools` lists. An optional `role` (`worker`,
//! `planner` or `reviewer`) gives the agent that role's rules — a custom
//! `reviewer` may mark plan items completed; without it the agent is a
//! custom one. An invalid entry is reported with the file and the entry's
//! name; the valid entries still load.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::{
    Agent, AgentSource, PROCESS_TOOLS, READ_TOOLS, Role, SEARCH_TOOLS, TODO_READ, WRITE_TOOLS,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Entry {
    id: String,
    description: String,
    system_prompt: String,
    can_write: bool,
    can_bash: bool,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    tools: Option<Vec<String>>,
    #[serde(default)]
    role: Option<String>,
}

/// Load the file; a missing file is no agents and no warning.
pub fn load_custom(file: &Path) -> (Vec<Agent>, Vec<String>) {
    let shown = ".opencode/agents.json";
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return (vec![], vec![]),
        Err(err) => return (vec![], vec![format!("{shown}: {err}")]),
    };
    let entries = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(entries)) => entries,
        Ok(_) => {
            return (
                vec![],
                vec![format!("{shown}: expected an object keyed by agent name")],
            );
        }
        Err(err) => return (vec![], vec![format!("{shown}: not valid JSON: {err}")]),
    };
    let mut agents = Vec::new();
    let mut warnings = Vec::new();
    for (name, value) in entries {
        match serde_path_to_error::deserialize::<_, Entry>(value) {
            Ok(entry) => match to_agent(&name, entry) {
                Ok(agent) => agents.push(agent),
                Err(message) => {
                    warnings.push(format!("{shown}: agent \"{name}\": {message}; skipped"))
                }
            },
            Err(err) => {
                let path = err.path().to_string();
                let key = if path == "." {
                    String::new()
                } else {
                    format!(" key \"{path}\":")
                };
                warnings.push(format!(
                    "{shown}: agent \"{name}\":{key} {}; skipped",
                    err.into_inner()
                ));
            }
        }
    }
    (agents, warnings)
}

fn to_agent(name: &str, entry: Entry) -> Result<Agent, String> {
    if entry.id != name {
        return Err(format!(
            "\"id\" is \"{}\" but the entry is named \"{name}\"",
            entry.id
        ));
    }
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err("the name must be letters, digits, '-' or '_'".into());
    }
    if entry.system_prompt.trim().is_empty() {
        return Err("\"systemPrompt\" is empty".into());
    }
    let role = match entry.role.as_deref() {
        None => Role::Custom,
        Some(text) => match Role::parse(text) {
            Some(role @ (Role::Worker | Role::Planner | Role::Reviewer | Role::Custom)) => role,
            _ => {
                return Err(format!(
                    "\"role\" is {text:?}; expected worker, planner or reviewer"
                ));
            }
        },
    };
    let mut tools: Vec<String> = match entry.tools {
        Some(tools) => tools,
        None => READ_TOOLS
            .iter()
            .chain(SEARCH_TOOLS)
            .chain(TODO_READ)
            .chain(WRITE_TOOLS)
            .chain(&["bash"])
            .map(|t| t.to_string())
            .collect(),
    };
    if !entry.can_write {
        tools.retain(|t| !WRITE_TOOLS.contains(&t.as_str()));
    }
    if !entry.can_bash {
        // Every tool that starts a process goes, not just `bash`.
        tools.retain(|t| !PROCESS_TOOLS.contains(&t.as_str()));
    }
    tools.dedup();
    Ok(Agent {
        name: name.to_string(),
        role,
        description: entry.description,
        prompt: entry.system_prompt.trim_end().to_string(),
        tools,
        model: entry.model,
        source: AgentSource::Project,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_entries_load_and_invalid_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agents.json");
        std::fs::write(
            &file,
            r#"{
              "SecurityAuditor": {"id":"SecurityAuditor","description":"audits","systemPrompt":"You audit.","canWrite":false,"canBash":true},
              "DocWriter": {"id":"DocWriter","description":"docs","systemPrompt":"You write docs.","canWrite":true,"canBash":false,"model":"small","tools":["read","write","bash","run_background","check_background","diagnostics"]},
              "QA": {"id":"QA","description":"checks","systemPrompt":"You verify.","canWrite":false,"canBash":true,"role":"Reviewer"},
              "Boss": {"id":"Boss","description":"x","systemPrompt":"x","canWrite":true,"canBash":true,"role":"orchestrator"},
              "Broken": {"id":"Broken","description":"x","systemPrompt":"x","canWrite":"yes","canBash":true},
              "Mismatch": {"id":"Other","description":"x","systemPrompt":"x","canWrite":true,"canBash":true}
            }"#,
        )
        .unwrap();
        let (agents, warnings) = load_custom(&file);
        let names: Vec<&str> = agents.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["SecurityAuditor", "DocWriter", "QA"]);
        let auditor = &agents[0];
        assert_eq!(auditor.role, Role::Custom);
        assert!(!auditor.capabilities().write && auditor.capabilities().processes);
        assert_eq!(agents[2].role, Role::Reviewer);
        assert!(agents[2].role.marks_items_done());
        assert!(!auditor.tools.iter().any(|t| t == "write" || t == "edit"));
        assert!(auditor.tools.iter().any(|t| t == "bash"));
        let docs = &agents[1];
        assert_eq!(docs.tools, ["read", "write", "check_background"]);
        assert_eq!(docs.model.as_deref(), Some("small"));
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(
            warnings[0].contains(
                "agent \"Boss\": \"role\" is \"orchestrator\"; expected worker, planner or reviewer"
            ),
            "{}",
            warnings[0]
        );
        assert!(
            warnings[1].contains("agent \"Broken\": key \"canWrite\""),
            "{}",
            warnings[1]
        );
        assert!(
            warnings[2].contains("agent \"Mismatch\""),
            "{}",
            warnings[2]
        );
    }

    /// The example README.md gives for `.opencode/agents.json` loads as shown.
    #[test]
    fn the_readme_example_loads() {
        let readme = include_str!("../../README.md");
        let after = readme
            .split_once("Custom agents go in")
            .expect("README.md describes custom agents")
            .1;
        let example = after
            .split_once("```json\n")
            .and_then(|(_, rest)| rest.split_once("\n```"))
            .expect("README.md shows an agents.json example")
            .0;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agents.json");
        std::fs::write(&file, example).unwrap();
        let (agents, warnings) = load_custom(&file);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(agents.len(), 1);
        assert_eq!(agents[0].name, "SecurityAuditor");
        assert_eq!(agents[0].tools, ["read", "grep", "glob", "bash"]);
        assert!(!agents[0].capabilities().write);
    }
}

//! The agent registry: who can be run, with which prompt and which tools.
//!
//! An agent's tool list is enforced by the engine (the session only ever sees
//! those tools), not merely suggested by its prompt.

/// One agent definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    pub name: String,
    pub description: String,
    pub prompt: String,
    /// The only tools this agent's sessions can call.
    pub tools: Vec<String>,
}

const READ_TOOLS: &[&str] = &["read", "list", "glob", "grep"];
const WRITE_TOOLS: &[&str] = &["write", "edit"];

fn builtin(name: &str, description: &str, prompt: &str, groups: &[&[&str]]) -> Agent {
    Agent {
        name: name.into(),
        description: description.into(),
        prompt: prompt.trim_end().into(),
        tools: groups
            .iter()
            .flat_map(|group| group.iter().map(|tool| tool.to_string()))
            .collect(),
    }
}

#[derive(Debug, Clone)]
pub struct AgentRegistry {
    agents: Vec<Agent>,
}

impl AgentRegistry {
    /// The four built-in agents, prompts embedded from `prompts/`.
    pub fn builtin() -> Self {
        let agents = vec![
            builtin(
                "Commander",
                "leads a mission: plans with the Planner, delegates to Workers, has the Reviewer verify",
                include_str!("../../prompts/commander.md"),
                &[READ_TOOLS],
            ),
            builtin(
                "Planner",
                "turns a goal into a plan of small, verifiable items",
                include_str!("../../prompts/planner.md"),
                &[READ_TOOLS],
            ),
            builtin(
                "Worker",
                "implements and tests one task",
                include_str!("../../prompts/worker.md"),
                &[READ_TOOLS, WRITE_TOOLS, &["bash"]],
            ),
            builtin(
                "Reviewer",
                "verifies work by reading it and running the project's checks",
                include_str!("../../prompts/reviewer.md"),
                &[READ_TOOLS, &["bash"]],
            ),
        ];
        AgentRegistry { agents }
    }

    /// Find an agent by name, case-insensitively.
    pub fn find(&self, name: &str) -> Option<&Agent> {
        self.agents
            .iter()
            .find(|agent| agent.name.eq_ignore_ascii_case(name))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Agent> {
        self.agents.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_insensitive() {
        let registry = AgentRegistry::builtin();
        assert_eq!(registry.find("worker").map(|a| a.name.as_str()), Some("Worker"));
        assert_eq!(registry.find("REVIEWER").map(|a| a.name.as_str()), Some("Reviewer"));
        assert!(registry.find("nobody").is_none());
    }

    #[test]
    fn only_workers_write() {
        let registry = AgentRegistry::builtin();
        for agent in registry.iter() {
            let writes = agent.tools.iter().any(|t| t == "write" || t == "edit");
            assert_eq!(writes, agent.name == "Worker", "{}", agent.name);
        }
    }

    #[test]
    fn prompts_stay_small() {
        for agent in AgentRegistry::builtin().iter() {
            assert!(agent.prompt.len() <= 8000, "{} prompt is {} chars", agent.name, agent.prompt.len());
        }
    }
}

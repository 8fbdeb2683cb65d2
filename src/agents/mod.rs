//! The agent registry: who can be run, with which prompt and which tools.
//!
//! Built-in agents (Commander, Planner, Worker, Reviewer) come from
//! `prompts/*.md`, embedded; `.opencode/prompts/<agent>.md` overrides a
//! prompt; `.opencode/agents.json` adds custom agents. An agent's tool list is
//! enforced by the engine (its sessions only ever see those tools), not merely
//! suggested by its prompt.

mod custom;

use std::path::Path;

pub use custom::load_custom;

/// Where an agent was defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentSource {
    Builtin,
    /// `.opencode/agents.json`.
    Project,
    /// A wasm plugin, by file name.
    Plugin(String),
}

impl AgentSource {
    /// Where, in words (`built-in`, `.opencode/agents.json`, `plugin notes.wasm`).
    pub fn describe(&self) -> String {
        match self {
            AgentSource::Builtin => "built-in".to_string(),
            AgentSource::Project => ".opencode/agents.json".to_string(),
            AgentSource::Plugin(file) => format!("plugin {file}"),
        }
    }
}

/// What an agent is for, decided once when it is defined. Rules key on the
/// role, never on the agent's name, so a renamed prompt or a custom agent
/// declared as a reviewer keeps or gets the rules of its role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Leads a mission and delegates (the Commander).
    Orchestrator,
    /// Explores the project and writes the plan.
    Planner,
    /// Implements and tests one task.
    Worker,
    /// Verifies work; the only role that marks plan items completed.
    Reviewer,
    /// A custom or plugin agent: what it may do is its `Capabilities`.
    Custom,
}

impl Role {
    /// The role's name in `agents.json` and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Role::Orchestrator => "orchestrator",
            Role::Planner => "planner",
            Role::Worker => "worker",
            Role::Reviewer => "reviewer",
            Role::Custom => "custom",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        [
            Role::Orchestrator,
            Role::Planner,
            Role::Worker,
            Role::Reviewer,
            Role::Custom,
        ]
        .into_iter()
        .find(|role| role.name().eq_ignore_ascii_case(text.trim()))
    }

    /// Whether agents of this role may mark plan items completed.
    pub fn marks_items_done(self) -> bool {
        self == Role::Reviewer
    }
}

/// What an agent's sessions may do beyond reading, decided from its tool set
/// when the agent is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Change project files (`write`, `edit`).
    pub write: bool,
    /// Start processes (`bash`, background jobs).
    pub processes: bool,
    /// Start tasks of other agents.
    pub delegate: bool,
}

impl Capabilities {
    /// What a tool set allows.
    pub fn of(tools: &[String]) -> Capabilities {
        let has = |group: &[&str]| tools.iter().any(|tool| group.contains(&tool.as_str()));
        Capabilities {
            write: has(WRITE_TOOLS),
            processes: has(PROCESS_TOOLS),
            delegate: has(&["delegate_task"]),
        }
    }
}

/// One agent definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    pub name: String,
    pub role: Role,
    pub description: String,
    pub prompt: String,
    /// The only tools this agent's sessions can call.
    pub tools: Vec<String>,
    /// A model for this agent; `agents.<name>.model` in orch.json wins.
    pub model: Option<String>,
    pub source: AgentSource,
}

impl Agent {
    /// What this agent's sessions may do, from its tool set.
    pub fn capabilities(&self) -> Capabilities {
        Capabilities::of(&self.tools)
    }
}

pub const READ_TOOLS: &[&str] = &["read", "list", "glob", "grep", "git_status", "git_diff"];
pub const BACKGROUND_TOOLS: &[&str] = &[
    "run_background",
    "check_background",
    "list_background",
    "kill_background",
];
/// Structural and multi-pattern search and the tree's shape: for agents that
/// explore code (not the Commander, which delegates that).
pub const SEARCH_TOOLS: &[&str] = &["ast_search", "mgrep", "file_stats"];
pub const WRITE_TOOLS: &[&str] = &["write", "edit", "ast_replace", "sed_replace"];
/// HTTP to the servers the mission's own processes run (and hosts config
/// lists); anything but GET/HEAD needs a role that may write.
pub const NET_TOOLS: &[&str] = &["http"];
/// Tools that start processes: what `canBash: false` takes away.
pub const PROCESS_TOOLS: &[&str] = &["bash", "run_background", "diagnostics"];
pub const TODO_READ: &[&str] = &["read_todo"];
pub const TODO_WRITE: &[&str] = &["read_todo", "update_todo", "add_todo"];
pub const MEMORY_TOOLS: &[&str] = &["remember", "recall"];
pub const DELEGATION_TOOLS: &[&str] = &[
    "delegate_task",
    "get_task_result",
    "list_tasks",
    "cancel_task",
    "list_agents",
];

fn builtin(name: &str, role: Role, description: &str, prompt: &str, groups: &[&[&str]]) -> Agent {
    Agent {
        name: name.into(),
        role,
        description: description.into(),
        prompt: prompt.trim_end().into(),
        tools: groups
            .iter()
            .flat_map(|group| group.iter().map(|tool| tool.to_string()))
            .collect(),
        model: None,
        source: AgentSource::Builtin,
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
                Role::Orchestrator,
                "leads a mission: plans with the Planner, delegates to Workers, has the Reviewer verify; never edits files",
                include_str!("../../prompts/commander.md"),
                &[
                    READ_TOOLS,
                    TODO_WRITE,
                    DELEGATION_TOOLS,
                    &["show_metrics"],
                    MEMORY_TOOLS,
                ],
            ),
            builtin(
                "Planner",
                Role::Planner,
                "explores the project and writes the plan (.opencode/todo.md) as small, verifiable items",
                include_str!("../../prompts/planner.md"),
                &[READ_TOOLS, SEARCH_TOOLS, TODO_WRITE],
            ),
            builtin(
                "Worker",
                Role::Worker,
                "implements and tests one task; cannot mark plan items done",
                include_str!("../../prompts/worker.md"),
                &[
                    READ_TOOLS,
                    SEARCH_TOOLS,
                    WRITE_TOOLS,
                    &["bash", "diagnostics"],
                    BACKGROUND_TOOLS,
                    NET_TOOLS,
                    TODO_READ,
                    &["update_todo"],
                    MEMORY_TOOLS,
                ],
            ),
            builtin(
                "Reviewer",
                Role::Reviewer,
                "verifies work by reading it and running the project's checks; the only agent that marks items done",
                include_str!("../../prompts/reviewer.md"),
                &[
                    READ_TOOLS,
                    SEARCH_TOOLS,
                    &["bash", "diagnostics"],
                    BACKGROUND_TOOLS,
                    NET_TOOLS,
                    TODO_READ,
                    &["update_todo", "sync_issues"],
                ],
            ),
        ];
        AgentRegistry { agents }
    }

    /// Built-ins with the project's rules and, when the project is
    /// trusted, its prompt overrides and custom agents. Problems with single
    /// entries come back as warnings; the valid agents still load.
    pub fn load(root: &Path, trusted: bool) -> (AgentRegistry, Vec<String>) {
        let mut registry = AgentRegistry::builtin();
        let mut warnings = Vec::new();
        if !trusted {
            let rules = project_rules(root);
            if !rules.is_empty() {
                for agent in &mut registry.agents {
                    agent.prompt.push_str(&rules);
                }
            }
            return (registry, warnings);
        }
        for agent in &mut registry.agents {
            let file = root
                .join(".opencode")
                .join("prompts")
                .join(format!("{}.md", agent.name.to_ascii_lowercase()));
            match std::fs::read_to_string(&file) {
                Ok(text) if !text.trim().is_empty() => agent.prompt = text.trim_end().to_string(),
                Ok(_) => warnings.push(format!(
                    "{}: empty, the built-in prompt is used",
                    file.display()
                )),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => warnings.push(format!("{}: {err}", file.display())),
            }
        }
        let (custom, custom_warnings) = load_custom(&root.join(".opencode").join("agents.json"));
        warnings.extend(custom_warnings);
        for agent in custom {
            if registry.find(&agent.name).is_some() {
                warnings.push(format!(
                    ".opencode/agents.json: agent \"{}\" has the name of a built-in agent and was skipped",
                    agent.name
                ));
                continue;
            }
            registry.agents.push(agent);
        }
        let rules = project_rules(root);
        if !rules.is_empty() {
            for agent in &mut registry.agents {
                agent.prompt.push_str(&rules);
            }
        }
        (registry, warnings)
    }

    /// Add an agent defined elsewhere (a plugin); refused when its name is
    /// taken, with a message naming both.
    pub fn add(&mut self, agent: Agent) -> Result<(), String> {
        if let Some(existing) = self.find(&agent.name) {
            return Err(format!(
                "agent \"{}\" is already defined ({}); not added",
                agent.name,
                existing.source.describe()
            ));
        }
        self.agents.push(agent);
        Ok(())
    }

    /// Let agents see plugin `tools` as well: `(name, writes)`, where a tool
    /// that writes (its plugin holds a read-write grant) goes only to
    /// agents that may write; the others go to every role.
    pub fn offer_tools(&mut self, tools: &[(String, bool)]) {
        for agent in &mut self.agents {
            let may_write = agent.capabilities().write;
            for (tool, writes) in tools {
                if (!writes || may_write) && !agent.tools.contains(tool) {
                    agent.tools.push(tool.clone());
                }
            }
        }
    }

    /// Give every agent that does the work (all but the orchestrator role)
    /// its skill catalog, `catalog(agent)`, at the end of its prompt, and
    /// the `skill` tool that loads what the catalog lists. An agent whose
    /// catalog is empty gets neither.
    pub fn offer_skills(&mut self, catalog: impl Fn(&Agent) -> String) {
        for agent in &mut self.agents {
            if agent.role == Role::Orchestrator {
                continue;
            }
            let text = catalog(agent);
            if text.is_empty() {
                continue;
            }
            agent.prompt.push_str(&text);
            if !agent.tools.iter().any(|tool| tool == "skill") {
                agent.tools.push("skill".into());
            }
        }
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

    pub fn names(&self) -> Vec<&str> {
        self.agents.iter().map(|a| a.name.as_str()).collect()
    }
}

/// Largest project rules file included in prompts.
const RULES_MAX_BYTES: usize = 16 * 1024;

/// `AGENTS.md` and `CLAUDE.md` from the project root, each once, as a
/// section appended to every agent's system prompt.
fn project_rules(root: &Path) -> String {
    let mut section = String::new();
    for name in ["AGENTS.md", "CLAUDE.md"] {
        let Ok(text) = std::fs::read_to_string(root.join(name)) else {
            continue;
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let kept = crate::text::head(text, RULES_MAX_BYTES);
        section.push_str(&format!("\n\n# Project rules ({name})\n\n{kept}"));
        if kept.len() < text.len() {
            section.push_str(&format!(
                "\n\n[{name} truncated at {RULES_MAX_BYTES} bytes]"
            ));
        }
    }
    section
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_skill_catalog_and_tool_go_to_every_agent_but_the_orchestrator() {
        let mut registry = AgentRegistry::builtin();
        registry.offer_skills(|agent| format!("\n\n## Skills\n- for {}\n", agent.name));
        for agent in registry.iter() {
            let has_tool = agent.tools.iter().any(|tool| tool == "skill");
            let has_catalog = agent.prompt.ends_with(&format!("- for {}\n", agent.name));
            let orchestrator = agent.role == Role::Orchestrator;
            assert_eq!(has_tool, !orchestrator, "{}", agent.name);
            assert_eq!(has_catalog, !orchestrator, "{}", agent.name);
        }
        // An empty catalog offers nothing.
        let mut registry = AgentRegistry::builtin();
        registry.offer_skills(|_| String::new());
        assert!(
            registry
                .iter()
                .all(|agent| !agent.tools.iter().any(|t| t == "skill"))
        );
    }

    #[test]
    fn names_are_case_insensitive() {
        let registry = AgentRegistry::builtin();
        assert_eq!(
            registry.find("worker").map(|a| a.name.as_str()),
            Some("Worker")
        );
        assert_eq!(
            registry.find("REVIEWER").map(|a| a.name.as_str()),
            Some("Reviewer")
        );
        assert!(registry.find("nobody").is_none());
    }

    #[test]
    fn only_workers_write_and_only_the_commander_delegates() {
        let registry = AgentRegistry::builtin();
        for agent in registry.iter() {
            let writes = agent
                .tools
                .iter()
                .any(|t| WRITE_TOOLS.contains(&t.as_str()));
            assert_eq!(writes, agent.name == "Worker", "{}", agent.name);
            let delegates = agent.tools.iter().any(|t| t == "delegate_task");
            assert_eq!(delegates, agent.name == "Commander", "{}", agent.name);
            let shell = agent.tools.iter().any(|t| t == "bash");
            assert_eq!(
                shell,
                agent.name == "Worker" || agent.name == "Reviewer",
                "{}",
                agent.name
            );
        }
    }

    #[test]
    fn plugin_tools_that_write_go_only_to_agents_that_may_write() {
        let mut registry = AgentRegistry::builtin();
        registry.offer_tools(&[("stats".into(), false), ("patch".into(), true)]);
        for agent in registry.iter() {
            assert!(agent.tools.contains(&"stats".to_string()), "{}", agent.name);
            let patches = agent.tools.contains(&"patch".to_string());
            assert_eq!(patches, agent.name == "Worker", "{}", agent.name);
        }
    }

    #[test]
    fn prompts_stay_small() {
        for agent in AgentRegistry::builtin().iter() {
            assert!(
                agent.prompt.len() <= 8000,
                "{} prompt is {} chars",
                agent.name,
                agent.prompt.len()
            );
        }
    }

    #[test]
    fn overrides_and_project_rules_apply_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".opencode/prompts")).unwrap();
        std::fs::write(
            dir.path().join(".opencode/prompts/worker.md"),
            "Custom worker prompt.\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("AGENTS.md"), "Use tabs.").unwrap();
        std::fs::write(dir.path().join("CLAUDE.md"), "Run make check.").unwrap();
        let (registry, warnings) = AgentRegistry::load(dir.path(), true);
        assert!(warnings.is_empty(), "{warnings:?}");
        let worker = registry.find("worker").unwrap();
        assert!(worker.prompt.starts_with("Custom worker prompt."));
        for agent in registry.iter() {
            assert_eq!(
                agent.prompt.matches("Use tabs.").count(),
                1,
                "{}",
                agent.name
            );
            assert_eq!(
                agent.prompt.matches("Run make check.").count(),
                1,
                "{}",
                agent.name
            );
        }
    }
}

//! Command-line arguments (clap). Global flags are accepted before or after
//! the subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "orch",
    version,
    about = "A multi-agent coding orchestrator",
    propagate_version = true
)]
pub struct Cli {
    /// Project root (default: the current directory).
    #[arg(short = 'C', global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Print one JSON event per line on stdout.
    #[arg(long, global = true)]
    pub json: bool,

    /// Model provider: openai, anthropic or scripted.
    #[arg(long, global = true, value_name = "NAME")]
    pub provider: Option<String>,

    /// Model for every agent (per-agent models in orch.json win).
    #[arg(long, global = true, value_name = "MODEL", value_parser = non_empty)]
    pub model: Option<String>,

    /// The scripted provider's script (a path relative to the current directory).
    #[arg(long, global = true, value_name = "FILE")]
    pub script: Option<PathBuf>,

    /// Missions: most Commander iterations before the mission stops.
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_iterations: Option<u32>,

    /// Stop once this many tokens (input + output) were used.
    #[arg(long, global = true, value_name = "TOKENS", value_parser = clap::value_parser!(u64).range(1..))]
    pub budget_tokens: Option<u64>,

    /// Missions: stop once this many US dollars were spent (every model used needs a price).
    #[arg(long, global = true, value_name = "USD", value_parser = dollars)]
    pub budget_usd: Option<f64>,

    /// Print less: only answers, warnings and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Print more: tool results and retries in full.
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// The OS sandbox of commands: workspace-write (default), read-only or off.
    #[arg(long, global = true, value_name = "MODE", value_parser = sandbox_mode)]
    pub sandbox: Option<crate::config::SandboxMode>,

    /// Apply this project's own settings, agents and plugins for this run
    /// without recording trust (for CI; ORCH_TRUST_PROJECT=1 does the same).
    #[arg(long, global = true)]
    pub trust_project: bool,

    /// Missions: keep the worktree of a task that failed (its change, under
    /// the task's ref, never lands) instead of removing it.
    #[arg(long, global = true)]
    pub keep_worktrees: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a mission to a verified finish: the Commander plans with the
    /// Planner, delegates to Workers, has the Reviewer verify.
    Task(GoalArgs),
    /// Planner only: write .opencode/todo.md for a goal, then stop.
    Plan(GoalArgs),
    /// Run one agent session on a prompt (no mission loop).
    Run(RunArgs),
    /// Continue the last unfinished mission (after Ctrl-C, a crash or a kill).
    Resume,
    /// The last mission: iteration, plan progress, sessions, queue, budget used.
    Status,
    /// Stop the mission running in this project, cleanly.
    Cancel,
    /// What the last mission changed in the project (git repositories):
    /// its start checkpoint against its end, or against now.
    Diff(DiffArgs),
    /// Put back every file the last mission changed as it was when it
    /// started; refuses, naming them, if any changed since it ended.
    Undo,
    /// Give up the last unfinished mission: delete its worktrees (saying
    /// whose unmerged work goes with them) and refs; `orch resume` then
    /// refuses it.
    Abandon,
    /// Watch the mission running in this project, read-only (from another terminal).
    Monitor,
    /// Latency, success rate, tokens and cost of the last mission.
    Metrics,
    /// The agents: built-in, from .opencode/agents.json and from plugins.
    Agents,
    /// A complete mission offline, on the scripted provider, in a new temp project.
    Demo,
    /// Create .opencode/ with a commented orch.json and install the bundled plugins.
    Init,
    /// Wasm plugins: list the loaded ones, check one file, or start a new one.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// MCP servers from orch.json and a trusted project's .mcp.json: list
    /// them with their tools, check one, import Claude Code's and Codex's;
    /// or serve orch itself to an MCP client.
    #[command(subcommand)]
    Mcp(McpCommand),
    /// Show what this project's own settings, agents and plugins would make
    /// orch do, and trust them (recorded in your config directory).
    Trust(TrustArgs),
    /// Agent Skills (SKILL.md folders) of the project and the user: name,
    /// scope, folder, description; invalid ones with the file and reason
    /// (exit 1 when one is invalid).
    Skills,
    /// Custom commands (`orch task /name args…`): name, scope, description,
    /// argument hint, file.
    Commands,
    /// The project's memory: list its entries (id, tier, score, origin, pin,
    /// text), forget, pin or unpin one.
    Memory(MemoryArgs),
}

#[derive(Debug, Args)]
pub struct MemoryArgs {
    #[command(subcommand)]
    pub command: Option<MemoryCommand>,
}

#[derive(Debug, Subcommand)]
pub enum MemoryCommand {
    /// Every stored entry: the System and Project tiers and the last
    /// mission's Mission tier (the default).
    List,
    /// Write an entry yourself: what every agent should know (the System
    /// tier never fades) or project knowledge (the Project tier).
    Add {
        /// The note, e.g. "Use tokio, not async-std".
        text: String,
        /// `project` (the default) or `system`.
        #[arg(long, default_value = "project")]
        tier: String,
        /// Pin it: never evicted, shown first within its tier's budget.
        #[arg(long)]
        pin: bool,
    },
    /// Remove an entry.
    Forget {
        /// The entry's id, e.g. m12.
        id: String,
    },
    /// Pin an entry: never evicted, shown first within its tier's budget.
    Pin {
        /// The entry's id, e.g. m12.
        id: String,
    },
    /// Unpin an entry: it fades again when unused.
    Unpin {
        /// The entry's id, e.g. m12.
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Only the files and how much changed in each.
    #[arg(long)]
    pub stat: bool,
}

#[derive(Debug, Args)]
pub struct TrustArgs {
    /// Forget the trust given to this project instead.
    #[arg(long)]
    pub revoke: bool,
}

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// The plugins in .opencode/plugins/ and the user plugins folder: name,
    /// version, sha256 (for grants), tools, hooks, agents, grant.
    List,
    /// Load one .wasm file through the full validation and print what it offers.
    Check {
        /// The component to check.
        file: PathBuf,
    },
    /// Write a new plugin into ./NAME/ that builds as it is (the contract and,
    /// for Rust, the SDK are copied into it), and print how to build it.
    New {
        /// The plugin's name: a lowercase letter, then lowercase letters,
        /// digits, '-' or '_'.
        name: String,
        /// The language to write it in.
        #[arg(long, value_enum)]
        lang: super::scaffold::Lang,
    },
}

#[derive(Debug, Subcommand)]
pub enum McpCommand {
    /// Every configured server, its state and its tools (starts each
    /// server, in parallel, to ask for its tools; calls none).
    List,
    /// Start one server and list its tools, marked read-only or write;
    /// calls none. Exit 1 when it does not start, 2 for an unknown name.
    Check {
        /// The server's name in orch.json or .mcp.json.
        name: String,
    },
    /// Copy the MCP servers of Claude Code (~/.claude.json) and Codex
    /// (~/.codex/config.toml) into your orch.json, keeping its entries.
    Import,
    /// Serve orch over MCP on stdin/stdout: tools run_mission,
    /// mission_status, cancel_mission and read_plan for this project.
    Serve,
}

#[derive(Debug, Args)]
pub struct GoalArgs {
    /// What the mission should achieve; `-` reads it from standard input;
    /// `/name` runs the custom command `name` (`orch commands`).
    pub goal: String,

    /// A custom command's arguments (`orch task /fix-issue 123`).
    #[arg(value_name = "ARGS")]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The agent to run (case-insensitive).
    #[arg(long, short, default_value = "Worker")]
    pub agent: String,

    /// Most model turns for this session.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_turns: Option<u32>,

    /// What the agent should do; `-` reads it from standard input; `/name`
    /// runs the custom command `name` (`orch commands`).
    pub prompt: String,

    /// A custom command's arguments (`orch run /review src/lib.rs`).
    #[arg(value_name = "ARGS")]
    pub args: Vec<String>,
}

/// `workspace-write`, `read-only` or `off`.
fn sandbox_mode(text: &str) -> Result<crate::config::SandboxMode, String> {
    crate::config::SandboxMode::parse(text)
        .ok_or_else(|| format!("expected workspace-write, read-only or off, got {text:?}"))
}

/// A name that is not empty or blank.
fn non_empty(text: &str) -> Result<String, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("expected a name, got an empty one".into());
    }
    Ok(trimmed.to_string())
}

/// An amount of US dollars greater than 0.
fn dollars(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(amount) if amount.is_finite() && amount > 0.0 => Ok(amount),
        _ => Err(format!(
            "expected an amount of US dollars greater than 0, got {text:?}"
        )),
    }
}

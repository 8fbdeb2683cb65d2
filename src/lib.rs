//! orch: a multi-agent coding orchestrator. See ARCHITECTURE.md for the map.

pub mod agents;
pub mod cli;
pub mod commands;
pub mod config;
pub mod events;
pub mod files;
pub mod hooks;
pub mod mcp;
pub mod memory;
pub mod mission;
pub mod models;
pub mod monitor;
pub mod net;
pub mod paths;
pub mod plugins;
pub mod process;
pub mod provider;
pub mod sandbox;
pub mod secrets;
pub mod session;
pub mod skills;
pub mod text;
pub mod todo;
pub mod tools;
pub mod walk;
pub mod worktree;

//! orch: a multi-agent coding orchestrator. See ARCHITECTURE.md for the map.

pub mod config;
pub mod events;
pub mod provider;
pub mod tools;
pub mod agents;
pub mod session;
pub mod cli;
pub mod mission;
pub mod monitor;
pub mod todo;

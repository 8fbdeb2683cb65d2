//! The one integration test binary: providers against loopback servers, tools
//! on real files and processes, sessions on the scripted provider, and the
//! real `orch` binary.

mod support;

mod boundaries;
mod caching;
mod cli;
mod diagnostics;
mod fit;
mod http;
mod lifecycle;
mod live_tools;
mod mcp;
mod mcp_serve;
mod memory;
mod memory_cli;
mod mission;
mod module_graph;
mod monitor;
mod plugin_authoring;
mod plugins;
mod prompt_cache;
mod provider_anthropic;
mod provider_openai;
mod session;
mod sim;
mod skills;
mod todo;
mod tools;
mod worktree;

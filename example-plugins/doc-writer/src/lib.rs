//! doc-writer: a custom-agent plugin. It defines the agent `DocWriter`, which
//! the Commander can delegate documentation work to; it has no tools or hooks
//! of its own.

use orch_plugin_sdk::{AgentSpec, Manifest, Plugin, export_plugin};

struct DocWriter;

const PROMPT: &str = "You are DocWriter, a technical writer on a coding team.\n\
You write and update documentation (README files, docs/ pages, doc comments) so that it \
matches the code as it is. Read the code before you write about it; never invent \
options, commands or behaviour. Keep the project's voice and structure, prefer short \
sentences and concrete examples, and report which files you changed.";

impl Plugin for DocWriter {
    fn manifest() -> Manifest {
        Manifest::new("doc-writer", "0.1.0")
            .description("A documentation agent")
            .agent(AgentSpec::new(
                "DocWriter",
                "Writes and updates documentation to match the code",
                PROMPT,
                &["read", "list", "glob", "grep", "write", "edit"],
            ))
    }
}

export_plugin!(DocWriter);

//! `remember` and `recall`: the model's handle on the memory tiers
//! (DESIGN §4, §8). `remember` stores a note in a tier, optionally pinned as
//! a "stable core" decision that is never evicted; `recall` searches the
//! entries the session can see, and each one returned counts as used.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{Tool, ToolContext, ToolOutput};
use crate::memory::{Memory, Tier};
use crate::provider::ToolSpec;

/// Most entries one `recall` returns.
const RECALL_MAX: usize = 10;

pub struct Remember(pub Arc<Memory>);

pub struct Recall(pub Arc<Memory>);

/// Both memory tools on one memory.
pub fn tools(memory: Arc<Memory>) -> Vec<Arc<dyn Tool>> {
    vec![Arc::new(Remember(memory.clone())), Arc::new(Recall(memory))]
}

#[async_trait]
impl Tool for Remember {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "remember".into(),
            description: "Keep a short note for later turns: a decision, a convention, a fact about the project. \
                Tiers: project (kept across missions), mission (this mission, the default in a mission), \
                task (this session only); the system tier (rules for every agent) is the user's. pin=true marks an architecture decision that is never forgotten; unpinned notes fade when unused."
                .into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "text": {"type": "string", "description": "the note, one or two sentences"},
                    "tier": {"type": "string", "enum": ["project", "mission", "task"]},
                    "pin": {"type": "boolean", "description": "never evict (stable core)"}
                },
                "required": ["text"],
                "additionalProperties": false
            }),
        }
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> ToolOutput {
        let Some(text) = args["text"].as_str() else {
            return ToolOutput::error("remember: \"text\" (a string) is required");
        };
        let tier = match args["tier"].as_str() {
            None => None,
            Some(name) => match Tier::parse(name) {
                Some(Tier::System) => {
                    return ToolOutput::error(
                        "remember: the system tier holds the user's rules for every agent; agents write project, mission or task",
                    );
                }
                Some(tier) => Some(tier),
                None => {
                    return ToolOutput::error(format!(
                        "remember: unknown tier \"{name}\", expected project, mission or task"
                    ));
                }
            },
        };
        let pin = args["pin"].as_bool().unwrap_or(false);
        // Remembering persists the tier (a synced file write): off the async
        // workers.
        let (memory, session, agent, text) = (
            self.0.clone(),
            ctx.session.clone(),
            ctx.agent.clone(),
            text.to_string(),
        );
        let remembered = tokio::task::spawn_blocking(move || {
            memory.remember(&session, &agent, &text, tier, pin)
        })
        .await
        .unwrap_or_else(|err| Err(format!("remember stopped unexpectedly: {err}")));
        match remembered {
            Ok(entry) => ToolOutput::ok(format!(
                "remembered [{}] in the {} tier{}",
                entry.id,
                entry.tier.name(),
                if entry.pinned { ", pinned" } else { "" }
            )),
            Err(message) => ToolOutput::error(message),
        }
    }
}

#[async_trait]
impl Tool for Recall {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "recall".into(),
            description: "Search remembered notes (every tier this session sees) for any of the query's words; an empty query lists them."
                .into(),
            parameters: json!({
                "type": "object",
                "properties": {"query": {"type": "string"}},
                "required": ["query"],
                "additionalProperties": false
            }),
        }
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> ToolOutput {
        let query = args["query"].as_str().unwrap_or_default();
        let entries = self.0.recall(&ctx.session, query, RECALL_MAX);
        if entries.is_empty() {
            return ToolOutput::ok(format!("no remembered note matches \"{query}\""));
        }
        let lines: Vec<String> = entries
            .iter()
            .map(|e| {
                format!(
                    "[{}] ({}{}, score {:.2}) {}",
                    e.id,
                    e.tier.name(),
                    if e.pinned { ", pinned" } else { "" },
                    e.score,
                    e.text
                )
            })
            .collect();
        ToolOutput::ok(lines.join("\n"))
    }
}

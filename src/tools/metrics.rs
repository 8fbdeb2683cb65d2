//! `show_metrics`: the running mission's numbers (model latency, tool
//! success, tokens, cost) for an agent to read. The numbers come from a
//! fold of the event stream behind the `MetricsSource` trait, so this module
//! knows nothing about how they are computed.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{Tool, ToolContext, ToolOutput};
use crate::provider::ToolSpec;

/// Whatever keeps the mission's metrics (the monitor's fold).
pub trait MetricsSource: Send + Sync {
    /// The metrics so far, as text for the model.
    fn summary(&self) -> String;
}

pub struct ShowMetrics(pub Arc<dyn MetricsSource>);

#[async_trait]
impl Tool for ShowMetrics {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "show_metrics".into(),
            description: "This run's numbers so far: model latency, tool calls and success rate, tokens and cost, per agent, tool and session."
                .into(),
            parameters: json!({"type": "object", "properties": {}, "additionalProperties": false}),
        }
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn call(&self, _args: Value, _ctx: &ToolContext) -> ToolOutput {
        ToolOutput::ok(self.0.summary())
    }
}

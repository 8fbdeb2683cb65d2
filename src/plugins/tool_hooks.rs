//! The `post-tool-use` hook point, answered after each tool call: every
//! tool of a run is wrapped, so a plugin that arrives mid-run (hot reload)
//! is asked too. `block` withholds the output (a tool error the model
//! sees); `modify` with `{"output": "..."}` rewrites what the model sees.
//! (`pre-tool-use` is asked by the router, ahead of its permission check,
//! so a rewrite of the arguments is checked like any call.)

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::PluginHost;
use crate::hooks::Decision;
use crate::provider::ToolSpec;
use crate::tools::{Tool, ToolContext, ToolOutput, ToolRegistry};

const POST: &str = "post-tool-use";

impl PluginHost {
    /// `registry` with every tool wrapped by the `post-tool-use` hook
    /// (asked only while some plugin subscribes to it). Tools are replaced
    /// in place, so the registry keeps everything else it holds.
    pub fn hook_tools(&self, mut registry: ToolRegistry) -> ToolRegistry {
        let tools: Vec<Arc<dyn Tool>> = registry
            .names()
            .filter_map(|name| registry.get(name).cloned())
            .collect();
        for tool in tools {
            registry.insert(Arc::new(HookedTool {
                host: self.clone(),
                inner: tool,
            }));
        }
        registry
    }
}

struct HookedTool {
    host: PluginHost,
    inner: Arc<dyn Tool>,
}

#[async_trait]
impl Tool for HookedTool {
    fn spec(&self) -> ToolSpec {
        self.inner.spec()
    }

    fn read_only(&self) -> bool {
        self.inner.read_only()
    }

    fn edited_path(&self, args: &Value) -> Option<String> {
        self.inner.edited_path(args)
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> ToolOutput {
        let output = self.inner.call(args, ctx).await;
        if !self.host.listens(POST) {
            return output;
        }
        let tool = self.inner.spec().name;
        let payload = json!({
            "session": ctx.session,
            "agent": ctx.agent,
            "call": ctx.call_id,
            "tool": tool,
            "output": output.content,
            "is-error": output.is_error,
        });
        match self.host.hook(POST, payload).await {
            Decision::Continue => output,
            Decision::Block(reason) => ToolOutput::error(format!(
                "the output of {tool} was withheld by a plugin hook (post-tool-use): {reason}"
            )),
            Decision::Modify(value) => match value["output"].as_str() {
                Some(text) => ToolOutput {
                    content: text.to_string(),
                    is_error: output.is_error,
                },
                None => {
                    self.host.inner.services.warn(format!(
                        "hook post-tool-use: a plugin's rewrite of {tool}'s output has no string \"output\"; ignored"
                    ));
                    output
                }
            },
        }
    }
}

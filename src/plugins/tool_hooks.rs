//! The `pre-tool-use` and `post-tool-use` hook points, answered around each
//! tool call: every tool of a run is wrapped when a plugin subscribes to
//! them. `block` refuses the call (a tool error the model sees); a
//! `post-tool-use` `modify` with `{"output": "..."}` rewrites what the model
//! sees. A `pre-tool-use` `modify` of the arguments is not applied here:
//! the router has already checked permissions against the original
//! arguments, so a rewrite must wait for a hook point inside the router.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::PluginHost;
use crate::hooks::Decision;
use crate::provider::ToolSpec;
use crate::tools::{Tool, ToolContext, ToolOutput, ToolRegistry};

const PRE: &str = "pre-tool-use";
const POST: &str = "post-tool-use";

impl PluginHost {
    /// `registry` with every tool wrapped by the tool hooks, when some
    /// plugin subscribes to them; else `registry` unchanged. Tools are
    /// replaced in place, so the registry keeps everything else it holds.
    pub fn hook_tools(&self, mut registry: ToolRegistry) -> ToolRegistry {
        if !self.listens(PRE) && !self.listens(POST) {
            return registry;
        }
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
        let tool = self.inner.spec().name;
        if self.host.listens(PRE) {
            let payload = json!({
                "session": ctx.session,
                "agent": ctx.agent,
                "tool": tool,
                "args": args,
            });
            match self.host.hook(PRE, payload).await {
                Decision::Continue => {}
                Decision::Block(reason) => {
                    return ToolOutput::error(format!(
                        "blocked by a plugin hook (pre-tool-use): {reason}"
                    ));
                }
                Decision::Modify(_) => self.host.inner.services.warn(format!(
                    "hook pre-tool-use: a plugin rewrote the arguments of {tool}; rewrites are not applied (permissions were checked on the original arguments)"
                )),
            }
        }
        let output = self.inner.call(args, ctx).await;
        if !self.host.listens(POST) {
            return output;
        }
        let payload = json!({
            "session": ctx.session,
            "agent": ctx.agent,
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

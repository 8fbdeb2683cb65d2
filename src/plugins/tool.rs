//! Plugin tools as the engine sees them: a `Tool` per tool a plugin's
//! manifest lists (names that clash with a built-in or an earlier plugin are
//! refused), each call run in a fresh instance of the current version of
//! its plugin, so a reload takes effect between calls.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::{Fault, PluginHost};
use crate::provider::ToolSpec;
use crate::tools::live::Offered;
use crate::tools::{Tool, ToolContext, ToolOutput};

impl PluginHost {
    /// A `Tool` for each plugin tool, and whether it writes (its plugin is
    /// granted `"project": "read-write"`). A name that clashes with `taken`
    /// (the built-in tools) or with an earlier plugin's tool is refused with
    /// a message naming both.
    pub fn tools(&self, taken: &[String]) -> (Vec<Offered>, Vec<String>) {
        let mut tools: Vec<Offered> = Vec::new();
        let mut problems = Vec::new();
        let mut owners: BTreeMap<String, String> = BTreeMap::new();
        for plugin in self.read().values() {
            for spec in &plugin.info.tools {
                if taken.contains(&spec.name) {
                    problems.push(format!(
                        "plugin \"{}\": tool \"{}\" clashes with the built-in tool of that name; not registered",
                        plugin.info.file, spec.name
                    ));
                } else if let Some(owner) = owners.get(&spec.name) {
                    problems.push(format!(
                        "plugin \"{}\": tool \"{}\" is already defined by plugin \"{owner}\"; not registered",
                        plugin.info.file, spec.name
                    ));
                } else {
                    owners.insert(spec.name.clone(), plugin.info.file.clone());
                    let writes =
                        plugin.info.project == Some(crate::config::ProjectAccess::ReadWrite);
                    let tool: Arc<dyn Tool> = Arc::new(PluginTool {
                        host: self.clone(),
                        file: plugin.info.file.clone(),
                        spec: spec.clone(),
                    });
                    tools.push((tool, writes));
                }
            }
        }
        (tools, problems)
    }

    /// Run plugin `file`'s tool `name` in a fresh instance. `Err` is a tool
    /// error for the model (the plugin's own, or its fault).
    pub async fn call_tool(
        &self,
        file: &str,
        name: &str,
        args_json: &str,
    ) -> Result<String, String> {
        let Some(plugin) = self.active(file) else {
            return Err(format!("plugin \"{file}\" is not loaded or is disabled"));
        };
        let deadline = self.inner.limits.tool_deadline;
        let result = self
            .run(&plugin, deadline, async |guest, store| {
                guest.call_call_tool(store, name, args_json).await
            })
            .await;
        match result {
            Ok(Ok(text)) => Ok(self.cap(text)),
            Ok(Err(message)) => Err(self.cap(message)),
            Err(Fault(reason)) => {
                let message = format!("plugin \"{file}\": tool {name}: {reason}");
                self.fault(&plugin, &message);
                Err(message)
            }
        }
    }
}

/// A plugin's tool, as agents see it. Each call looks the plugin up again,
/// so a reload takes effect between calls.
struct PluginTool {
    host: PluginHost,
    file: String,
    spec: ToolSpec,
}

#[async_trait]
impl Tool for PluginTool {
    fn spec(&self) -> ToolSpec {
        self.spec.clone()
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> ToolOutput {
        let args = args.to_string();
        let call = self.host.call_tool(&self.file, &self.spec.name, &args);
        tokio::select! {
            result = call => match result {
                Ok(text) => ToolOutput::ok(text),
                Err(message) => ToolOutput::error(message),
            },
            () = ctx.cancel.cancelled() => ToolOutput::error("cancelled"),
        }
    }
}

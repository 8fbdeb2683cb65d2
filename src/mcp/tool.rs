//! One MCP tool as an orch `Tool`: the model's call goes to the server's
//! live connection, bounded by the server's `call_timeout_ms` and the
//! call's cancellation; what comes back is text for the model, capped like
//! every tool's output. Every failure (the server gone, a timeout, a
//! protocol error) is a tool error naming the server, never an `Err`.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock, ResourceContents};
use rmcp::service::ServiceError;
use serde_json::Value;

use super::{Inner, Slot};
use crate::provider::ToolSpec;
use crate::tools::{Tool, ToolContext, ToolOutput};

/// A tool a server listed, checked once.
pub(crate) struct Offered {
    /// The server's own name for it.
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) schema: Value,
    /// `readOnlyHint: true`; every other tool counts as writing.
    pub(crate) read_only: bool,
}

impl Offered {
    pub(crate) fn of(tool: &rmcp::model::Tool) -> Result<Offered, String> {
        let schema = super::input_schema(&tool.input_schema)?;
        let description = tool
            .description
            .as_deref()
            .or(tool.title.as_deref())
            .unwrap_or_default()
            .to_string();
        Ok(Offered {
            name: tool.name.to_string(),
            description,
            schema,
            read_only: tool
                .annotations
                .as_ref()
                .and_then(|annotations| annotations.read_only_hint)
                == Some(true),
        })
    }
}

/// An MCP server's tool, under the name the model sees.
pub struct McpTool {
    name: String,
    offered: Arc<Offered>,
    hub: Weak<Inner>,
    slot: Arc<Slot>,
}

impl McpTool {
    pub(super) fn new(
        name: String,
        offered: Arc<Offered>,
        hub: Weak<Inner>,
        slot: Arc<Slot>,
    ) -> Self {
        McpTool {
            name,
            offered,
            hub,
            slot,
        }
    }

    /// The server this tool belongs to.
    pub fn server(&self) -> &str {
        &self.slot.name
    }
}

#[async_trait]
impl Tool for McpTool {
    fn spec(&self) -> ToolSpec {
        let description = if self.offered.description.is_empty() {
            format!(
                "Tool {} of the MCP server \"{}\".",
                self.offered.name, self.slot.name
            )
        } else {
            format!(
                "{} (MCP server \"{}\")",
                self.offered.description, self.slot.name
            )
        };
        ToolSpec {
            name: self.name.clone(),
            description,
            parameters: self.offered.schema.clone(),
        }
    }

    fn read_only(&self) -> bool {
        self.offered.read_only
    }

    fn asks_by_default(&self) -> bool {
        !self.offered.read_only
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> ToolOutput {
        let server = &self.slot.name;
        let tool = &self.offered.name;
        let Some(hub) = self.hub.upgrade() else {
            return ToolOutput::error(format!("MCP server \"{server}\" was shut down"));
        };
        let conn = match hub.conn(&self.slot) {
            Ok(conn) => conn,
            Err(why) => return ToolOutput::error(why),
        };
        drop(hub);
        let arguments = match args {
            Value::Object(arguments) => arguments,
            Value::Null => Default::default(),
            other => {
                return ToolOutput::error(format!(
                    "the arguments for {} must be a JSON object, got {other}",
                    self.name
                ));
            }
        };
        let params = CallToolRequestParams::new(tool.clone()).with_arguments(arguments);
        let limit = self.slot.config.call_timeout_ms;
        let answer = tokio::select! {
            answer = tokio::time::timeout(Duration::from_millis(limit), conn.peer.call_tool(params)) => answer,
            () = ctx.cancel.cancelled() => {
                return ToolOutput::error(format!("cancelled while MCP server \"{server}\" ran {tool}"));
            }
        };
        match answer {
            Err(_) => ToolOutput::error(format!(
                "MCP server \"{server}\" did not answer the call to {tool} within {limit} ms (call_timeout_ms)"
            )),
            Ok(Err(ServiceError::McpError(err))) => ToolOutput::error(format!(
                "MCP server \"{server}\" refused the call to {tool}: {}",
                err.message
            )),
            Ok(Err(err)) => {
                // Give a dying process a moment to say why.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let said = conn.stderr();
                let said = if said.is_empty() {
                    String::new()
                } else {
                    format!(" (stderr: {said})")
                };
                ToolOutput::error(format!(
                    "MCP server \"{server}\" failed during the call to {tool}: {err}{said}"
                ))
            }
            Ok(Ok(result)) => render(&result, ctx.limits.bash_output_bytes),
        }
    }
}

/// What a call returned, as text of at most `cap` bytes (plus a note of
/// what was left out): text joined, other content described.
pub(crate) fn render(result: &CallToolResult, cap: usize) -> ToolOutput {
    let mut out = Bounded::new(cap);
    for block in &result.content {
        match block {
            ContentBlock::Text(text) => out.push(&text.text),
            ContentBlock::Image(image) => out.push(&format!(
                "[image, {}, {} bytes]",
                image.mime_type,
                decoded_len(&image.data)
            )),
            ContentBlock::Audio(audio) => out.push(&format!(
                "[audio, {}, {} bytes]",
                audio.mime_type,
                decoded_len(&audio.data)
            )),
            ContentBlock::Resource(embedded) => match &embedded.resource {
                ResourceContents::TextResourceContents { uri, text, .. } => {
                    out.push(&format!("[resource {uri}]\n"));
                    out.push(text);
                }
                ResourceContents::BlobResourceContents {
                    uri,
                    mime_type,
                    blob,
                    ..
                } => out.push(&format!(
                    "[resource {uri}, {}, {} bytes]",
                    mime_type.as_deref().unwrap_or("binary"),
                    decoded_len(blob)
                )),
                _ => out.push("[a resource of a kind orch does not show]"),
            },
            ContentBlock::ResourceLink(link) => out.push(&format!("[resource link {}]", link.uri)),
            _ => out.push("[content of a kind orch does not show]"),
        }
    }
    if result.content.is_empty()
        && let Some(structured) = &result.structured_content
    {
        out.push(&structured.to_string());
    }
    let content = out.finish();
    if result.is_error == Some(true) {
        ToolOutput::error(content)
    } else {
        ToolOutput::ok(content)
    }
}

/// Bytes a base64 text decodes to.
fn decoded_len(base64: &str) -> usize {
    let padding = base64.bytes().rev().take_while(|&b| b == b'=').count();
    (base64.len() / 4 * 3).saturating_sub(padding)
}

/// Text collected up to a cap, counting what did not fit.
struct Bounded {
    cap: usize,
    text: String,
    omitted: usize,
    blocks: usize,
}

impl Bounded {
    fn new(cap: usize) -> Self {
        Bounded {
            cap,
            text: String::new(),
            omitted: 0,
            blocks: 0,
        }
    }

    fn push(&mut self, part: &str) {
        let sep = if self.blocks > 0 && !self.text.ends_with('\n') {
            "\n"
        } else {
            ""
        };
        self.blocks += 1;
        let room = self.cap.saturating_sub(self.text.len());
        if room == 0 {
            self.omitted += part.len();
            return;
        }
        self.text.push_str(sep);
        let keep =
            crate::text::floor_boundary(part, room.saturating_sub(sep.len()).min(part.len()));
        self.text.push_str(&part[..keep]);
        self.omitted += part.len() - keep;
    }

    fn finish(self) -> String {
        if self.omitted == 0 {
            return self.text;
        }
        format!(
            "{}\n[… {} more bytes of output omitted]",
            self.text, self.omitted
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_become_bounded_text_with_other_content_described() {
        let mut result = CallToolResult::success(vec![
            ContentBlock::text("hello"),
            ContentBlock::image("aGVsbG8=", "image/png"),
        ]);
        let output = render(&result, 1000);
        assert_eq!(output, ToolOutput::ok("hello\n[image, image/png, 5 bytes]"));
        result.is_error = Some(true);
        assert!(render(&result, 1000).is_error);

        let big = CallToolResult::success(vec![ContentBlock::text("é".repeat(5_000_000))]);
        let output = render(&big, 1001);
        assert!(output.content.len() < 1100, "{}", output.content.len());
        assert!(output.content.starts_with("éé"));
        assert!(
            output
                .content
                .ends_with("[… 9999000 more bytes of output omitted]"),
            "{}",
            crate::text::tail(&output.content, 80)
        );
    }
}

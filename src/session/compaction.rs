//! Carrying out a compaction in a session (`memory::compact` plans it): old
//! tool outputs cleared, oversized ones cut in the middle, and, when that is
//! not enough, the older part of the conversation replaced by a summary the
//! model writes through the session's own client (as the agent `Compactor`).
//! A mission never fails because a summary could not be written: the older
//! part is dropped with a note instead. The transcript restarts with the
//! compacted conversation, so `orch resume` restores what the model saw.

use std::sync::Arc;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::Session;
use super::request::with_tokenizer_margin;
use crate::events::Event;
use crate::hooks::{Decision, HookPoint};
use crate::memory::context::{self, Window};
use crate::memory::tokens::{self, Measure};
use crate::memory::{Entry, compact};
use crate::provider::{Message, ModelRequest, StreamEvent};

/// The agent name summary requests are sent as.
pub const COMPACTOR: &str = "Compactor";

/// Opens the message that asks a session's own conversation for its
/// summary (simulated models recognize it).
pub const SUMMARY_REQUEST: &str = "Compact this conversation:";

/// The most output tokens a summary may take.
const SUMMARY_MAX_TOKENS: u32 = 2048;

/// Characters of one tool output the summarizer reads.
const SUMMARY_TOOL_OUTPUT_CHARS: usize = 2000;

/// The summarization instruction (the `pre-compact` hook may replace it).
const SUMMARY_INSTRUCTION: &str = "You compact a coding agent's conversation so it can continue \
within its context window. Write a concise summary of the conversation you are given: the task, \
decisions made and why, files created or changed (paths), commands run and their outcome, what \
is done and what remains. Keep every pinned decision. Plain text, no preamble.";

/// Why a conversation is compacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactReason {
    /// The estimate passed `memory.compact_threshold` of the window.
    Threshold,
    /// The provider refused the prompt as too long.
    ContextLength,
}

impl CompactReason {
    fn name(self) -> &'static str {
        match self {
            CompactReason::Threshold => "threshold",
            CompactReason::ContextLength => "context_length",
        }
    }
}

impl Session {
    /// Compact the conversation: clear old tool outputs, then, if that is
    /// not enough, replace the older part (never the task, never the recent
    /// tail, never between a tool call and its results) with a summary.
    pub(super) async fn compact(
        &mut self,
        window: &Window,
        reason: CompactReason,
        cancel: &CancellationToken,
    ) {
        let original = self.messages.clone();
        let before = self.estimate(Measure::Tokens);
        // The rewrite is where the memory block catches up: the current one
        // leads, the older ones go (before the hook, which may gate it).
        let block = self.runtime.memory.render(&self.id);
        let shown = std::mem::replace(&mut self.shown_block, block.clone());
        context::lead_with(self.conversation(), block);
        let Some(instruction) = self.pre_compact(reason, before, window).await else {
            self.messages = original;
            self.shown_block = shown;
            return;
        };
        if self.messages != original {
            self.estimator.forget_conversation();
        }
        // A conversation that still fits, with other tokenizers' margin and
        // the request for the summary, asks for its own summary: that
        // request is the last one plus a message, read from the cache.
        let ask = self.summary_ask(&instruction);
        let in_place = reason == CompactReason::Threshold
            && with_tokenizer_margin(before) + tokens::at_most(&ask) + tokens::PER_MESSAGE
                <= window.usable;
        let overhead = self.estimator.prefix_tokens();
        let counts = self.estimator.counts(&self.messages);
        let conversation: u64 = counts.iter().sum();
        let mut target = window.target.saturating_sub(overhead);
        let mut tail = window.tail;
        if reason == CompactReason::ContextLength {
            // The provider counts more than the estimate says: whatever the
            // estimate, halve the conversation.
            target = target.min(conversation / 2);
            tail = tail.min(target / 2);
        }
        // One tool output taking more than half of the room (a huge file, a
        // long log) cannot be kept whole on a small model: cut its middle.
        let cut = cut_oversized_outputs(self.conversation(), &counts, window.usable / 2);
        let counts = if cut > 0 {
            self.estimator.forget_conversation();
            self.estimator.counts(&self.messages)
        } else {
            counts
        };
        let pruned_tokens = tokens::count(compact::PRUNED) + tokens::PER_MESSAGE;
        let plan = compact::plan(&self.messages, &counts, target, tail, pruned_tokens);
        for &index in &plan.prune {
            if let Message::Tool { content, .. } = &mut self.conversation()[index] {
                *content = compact::PRUNED.to_string();
            }
        }
        let mut summarized = 0;
        let mut summary = false;
        if let Some(range) = plan.summarize.clone() {
            summarized = range.len();
            let mut written = Err(String::new());
            if in_place {
                // What the previous request sent is cached; the latest
                // round is not, and is left out when the summarized part
                // ends before it (it is in the kept tail).
                let answered = |messages: &[Message]| {
                    messages
                        .iter()
                        .rposition(|message| matches!(message, Message::Assistant { .. }))
                };
                let conversation = match (answered(&self.messages), answered(&original)) {
                    (Some(kept_from), Some(sent)) if range.end <= kept_from => {
                        Arc::new(original[..sent].to_vec())
                    }
                    _ => original.clone(),
                };
                let request = self.summary_in_place(conversation, ask);
                written = self.summarize(request, cancel).await;
            }
            // Refused, cut, or answered with tool calls only: the older
            // part alone, rendered to fit.
            if written.is_err() && !cancel.is_cancelled() {
                let request =
                    self.summary_apart(&self.messages[range.clone()], &instruction, window);
                written = self.summarize(request, cancel).await;
            }
            if let Err(err) = &written {
                self.warn(format!(
                    "compaction without a summary (older messages dropped): {err}"
                ));
            }
            summary = written.is_ok();
            let note = match written.ok() {
                Some(text) => format!(
                    "[summary of {summarized} earlier messages, written to fit the context window]\n{text}"
                ),
                None => format!(
                    "[{summarized} earlier messages were dropped to fit the context window; no summary was available. \
                     Check the plan and the files before relying on what they said.]"
                ),
            };
            self.conversation().splice(range, [Message::user(note)]);
        }
        if self.messages == original {
            return;
        }
        self.estimator.forget_conversation();
        self.previous = super::request::Previous::default();
        // The request is rewritten anyway: the tool list catches up too.
        self.refresh_tools();
        self.rewrite_transcript();
        let after = self.estimate(Measure::Tokens);
        self.runtime.events.emit(Event::ContextCompacted {
            session: self.id.clone(),
            agent: self.setup.agent.name.clone(),
            reason: reason.name().into(),
            tokens_before: before,
            tokens_after: after,
            pruned: plan.prune.len(),
            summarized,
            summary,
        });
    }

    /// The `pre-compact` hook: it may replace the summary instruction and
    /// rewrite the text of messages (memory-gate shortens old tool outputs
    /// and gates the memory block here, once, where the conversation is
    /// rewritten anyway). The instruction, or `None` when a hook blocked
    /// the compaction.
    async fn pre_compact(
        &mut self,
        reason: CompactReason,
        before: u64,
        window: &Window,
    ) -> Option<String> {
        let hooks = self.runtime.hooks.clone();
        let mut instruction = SUMMARY_INSTRUCTION.to_string();
        if !hooks.wants(HookPoint::PreCompact) {
            return Some(instruction);
        }
        let payload = serde_json::json!({
            "session": self.id,
            "agent": self.setup.agent.name,
            "reason": reason.name(),
            "tokens": before,
            "window": window.usable,
            "messages": *self.messages,
        });
        match hooks.call(HookPoint::PreCompact, payload).await {
            Decision::Continue => {}
            Decision::Modify(value) => {
                if let Some(text) = value["instruction"].as_str() {
                    instruction = text.to_string();
                }
                if let Some(list) = value.get("messages") {
                    match rewritten(&self.messages, list) {
                        Ok(messages) => *self.conversation() = messages,
                        Err(why) => self.warn(format!(
                            "hook pre-compact: ignored the rewritten messages: {why}"
                        )),
                    }
                }
            }
            Decision::Block(why) => {
                self.warn(format!("hook pre-compact blocked compaction: {why}"));
                return None;
            }
        }
        Some(instruction)
    }

    /// The message that asks a conversation for its summary: the
    /// instruction, then the pinned decisions.
    fn summary_ask(&self, instruction: &str) -> String {
        let pinned = self.runtime.memory.pinned(&self.id);
        let mut ask = format!(
            "{SUMMARY_REQUEST} write its summary now, as text, without calling tools. It replaces \
             the older messages; the most recent ones stay as they are.\n\n{instruction}"
        );
        if !pinned.is_empty() {
            ask.push_str("\n\n");
            ask.push_str(&pinned_decisions(&pinned));
        }
        ask
    }

    /// The summary request of a conversation that still fits: the session's
    /// own request (system, tools, `conversation`: all of it, or what the
    /// previous request sent when the summarized part ends before the
    /// latest round) plus one message asking for the summary. The provider
    /// reads what the previous request sent from its cache; nothing is
    /// written, since no request extends this one. The compaction replaces
    /// only the older part with the summary.
    fn summary_in_place(&self, conversation: Arc<Vec<Message>>, ask: String) -> ModelRequest {
        let mut messages = Arc::unwrap_or_clone(conversation);
        messages.push(Message::user(ask));
        ModelRequest {
            agent: COMPACTOR.into(),
            session: self.id.clone(),
            model: self.setup.model.clone(),
            system: self.setup.agent.prompt.clone(),
            messages: Arc::new(messages),
            tools: self.router.registry.specs(),
            max_output_tokens: self.setup.max_output_tokens.min(SUMMARY_MAX_TOKENS),
            continued: false,
        }
    }

    /// The summary request of `head` alone, rendered as a transcript that
    /// fits the window (the conversation no longer does).
    fn summary_apart(&self, head: &[Message], instruction: &str, window: &Window) -> ModelRequest {
        let pinned = self.runtime.memory.pinned(&self.id);
        let max_chars = (window.usable as usize).saturating_mul(2);
        ModelRequest {
            agent: COMPACTOR.into(),
            session: format!("{}-compactor", self.id),
            model: self.setup.model.clone(),
            system: instruction.to_string(),
            messages: vec![Message::user(summary_input(&pinned, head, max_chars))].into(),
            tools: Vec::new().into(),
            max_output_tokens: self.setup.max_output_tokens.min(SUMMARY_MAX_TOKENS),
            continued: false,
        }
    }

    /// Ask the model for a summary through the same client, as the agent
    /// `Compactor` (scripts answer it under that name); tool calls are
    /// ignored. Why not, when no summary comes back.
    async fn summarize(
        &self,
        request: ModelRequest,
        cancel: &CancellationToken,
    ) -> Result<String, String> {
        let mut stream = self.runtime.client.stream(request, cancel.child_token());
        let mut summary = String::new();
        let mut failure = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(StreamEvent::TextDelta(delta)) => summary.push_str(&delta),
                Ok(StreamEvent::Usage(usage)) => self.runtime.events.emit(Event::Usage {
                    session: self.id.clone(),
                    agent: self.setup.agent.name.clone(),
                    usage,
                }),
                Ok(_) => {}
                Err(err) => {
                    failure = Some(err.to_string());
                    break;
                }
            }
        }
        if failure.is_none() && summary.trim().is_empty() {
            failure = Some("the model returned an empty summary".into());
        }
        match failure {
            None => Ok(summary.trim().to_string()),
            Some(err) => Err(err),
        }
    }

    /// After a compaction the transcript restarts with the compacted
    /// conversation, so `orch resume` restores what the model last saw.
    fn rewrite_transcript(&mut self) {
        let mut result = self.transcript.mark_reset();
        for message in self.messages.iter() {
            if result.is_err() {
                break;
            }
            result = self.transcript.append(message);
        }
        if let Err(err) = result {
            let path = self.transcript.path().display().to_string();
            self.warn(format!("transcript {path}: {err}"));
        }
    }
}

/// A hook's rewrite of `messages`: the same messages, calls and results in
/// the same order, only their text changed (anything else could separate a
/// call from its result); why not, otherwise.
fn rewritten(messages: &[Message], list: &serde_json::Value) -> Result<Vec<Message>, String> {
    let list: Vec<Message> =
        serde_json::from_value(list.clone()).map_err(|err| format!("not a message list: {err}"))?;
    if list.len() != messages.len() {
        return Err(format!(
            "{} messages where the conversation has {}; a hook may change their text, not add or drop messages",
            list.len(),
            messages.len()
        ));
    }
    for (at, (new, old)) in list.iter().zip(messages).enumerate() {
        let same = match (new, old) {
            (Message::User { text }, Message::User { .. }) => {
                if text.trim().is_empty() {
                    return Err(format!("message {at} would be empty"));
                }
                context::is_block(new) == context::is_block(old)
            }
            (
                Message::Assistant { tool_calls: a, .. },
                Message::Assistant { tool_calls: b, .. },
            ) => a == b,
            (
                Message::Tool {
                    call_id: a,
                    name: x,
                    is_error: e,
                    ..
                },
                Message::Tool {
                    call_id: b,
                    name: y,
                    is_error: f,
                    ..
                },
            ) => a == b && x == y && e == f,
            _ => false,
        };
        if !same {
            return Err(format!(
                "message {at} changed its role, tool calls or call id, or became or stopped being the memory block; a hook may change only text"
            ));
        }
    }
    Ok(list)
}

/// Cut the middle out of tool outputs over `limit` tokens (their count in
/// `counts`, beside `messages`), keeping their start and end; how many were
/// cut.
fn cut_oversized_outputs(messages: &mut [Message], counts: &[u64], limit: u64) -> usize {
    let mut cut = 0;
    for (message, &count) in messages.iter_mut().zip(counts) {
        let Message::Tool { content, .. } = message else {
            continue;
        };
        if count <= limit || limit == 0 {
            continue;
        }
        // Keep about `limit` tokens, at a conservative 3 bytes a token.
        let keep = (limit as usize).saturating_mul(3) / 2;
        *content = crate::text::keep_ends(content, keep);
        cut += 1;
    }
    cut
}

/// The pinned entries a summary must keep, one line each under a heading.
fn pinned_decisions(pinned: &[Entry]) -> String {
    let mut text = String::from("Decisions that must survive (pinned memory):\n");
    for entry in pinned {
        text.push_str(&format!("- [{}] {}\n", entry.id, entry.text));
    }
    text
}

/// What the summarizer reads: the pinned decisions, then the conversation
/// one line per message; when longer than `max_chars`, its end is kept.
fn summary_input(pinned: &[Entry], head: &[Message], max_chars: usize) -> String {
    let mut text = String::new();
    if !pinned.is_empty() {
        text.push_str(&pinned_decisions(pinned));
        text.push('\n');
    }
    text.push_str("The conversation to summarize:\n");
    for message in head {
        text.push_str(&transcript_line(message));
    }
    if text.len() > max_chars {
        text = format!("[…]\n{}", crate::text::tail(&text, max_chars));
    }
    text
}

/// One message as the summarizer reads it; tool outputs are cut to their
/// first characters (a cut one ends with `…`).
fn transcript_line(message: &Message) -> String {
    match message {
        Message::User { text } => format!("user: {text}\n"),
        Message::Assistant { text, tool_calls } => {
            let mut line = format!("assistant: {text}\n");
            for call in tool_calls {
                line.push_str(&format!("  called {} {}\n", call.name, call.arguments));
            }
            line
        }
        Message::Tool { name, content, .. } => {
            let cut = crate::text::preview(content, SUMMARY_TOOL_OUTPUT_CHARS);
            format!("{name} result: {cut}\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ToolCall;

    fn tool(content: &str) -> Message {
        Message::Tool {
            call_id: "c1".into(),
            name: "read".into(),
            content: content.into(),
            is_error: false,
        }
    }

    #[test]
    fn only_oversized_tool_outputs_are_cut_and_keep_both_ends() {
        let big = format!("START{}END", "x".repeat(10_000));
        let mut messages = vec![Message::user(&big), tool(&big), tool("small")];
        let counts = [5_000, 5_000, 2];
        assert_eq!(cut_oversized_outputs(&mut messages, &counts, 100), 1);
        assert_eq!(messages[0], Message::user(&big), "the task is never cut");
        let Message::Tool { content, .. } = &messages[1] else {
            panic!()
        };
        assert!(
            content.starts_with("START") && content.ends_with("END"),
            "{content}"
        );
        assert!(content.contains("bytes cut to fit the context window"));
        assert!(content.len() < 400, "{}", content.len());
        assert_eq!(messages[2], tool("small"));
        assert_eq!(cut_oversized_outputs(&mut messages, &counts, 0), 0);
    }

    #[test]
    fn the_summarizer_reads_pins_calls_and_cut_outputs() {
        let pinned: Entry = serde_json::from_value(serde_json::json!({
            "id": "m3",
            "text": "Use tokio, not async-std.",
            "source": "user",
            "tier": "project",
            "pinned": true,
            "score": 1.0,
            "created_ms": 0
        }))
        .unwrap();
        let head = [
            Message::user("Add JWT auth"),
            Message::Assistant {
                text: "Reading.".into(),
                tool_calls: vec![ToolCall {
                    id: "c1".into(),
                    name: "read".into(),
                    arguments: r#"{"path":"src/auth.rs"}"#.into(),
                }],
            },
            tool(&"y".repeat(3000)),
        ];
        let text = summary_input(std::slice::from_ref(&pinned), &head, 100_000);
        assert!(text.starts_with(
            "Decisions that must survive (pinned memory):\n- [m3] Use tokio, not async-std.\n\n"
        ));
        assert!(text.contains("user: Add JWT auth\n"));
        assert!(text.contains("  called read {\"path\":\"src/auth.rs\"}\n"));
        assert!(text.contains(&format!("read result: {}…\n", "y".repeat(2000))));
        let short = summary_input(&[], &head, 50);
        assert!(short.starts_with("[…]\n") && short.len() <= 50 + "[…]\n".len());
        assert!(short.ends_with("y…\n"), "{short}");
    }
}

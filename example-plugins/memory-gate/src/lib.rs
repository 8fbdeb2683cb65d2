//! memory-gate: decides what memory and old output reach the model, and
//! keeps what a mission learned about verifying the project.
//!
//! When a conversation is compacted (`pre-compact`), where the engine
//! rewrites it anyway:
//! - when the memory block is large, only pinned entries and the entries
//!   that share words with the recent conversation stay in it (the rest are
//!   counted, and `recall` still finds them);
//! - old tool outputs beyond a size are shortened (the recent tail stays).
//!
//! Doing it there and not before every request keeps each request the
//! previous one plus new messages, so the provider's prompt cache reads
//! everything sent before; the shortened outputs stay shortened.
//!
//! After each tool call (`post-tool-use`): a build or test command that
//! passed is remembered in the project tier ("Verified with `cargo test`"),
//! once, so later missions know how this project checks itself. Large tool
//! outputs are recorded as a metric. It never blocks.

use std::collections::BTreeSet;

use orch_plugin_sdk::{Decision, HookEvent, HookPoint, Manifest, Plugin, export_plugin, host};
use serde_json::{Value, json};

struct MemoryGate;

/// Tool outputs longer than this (in bytes) are shortened unless recent.
const MAX_OLD_OUTPUT: usize = 2_000;
/// The last messages are never touched, and are what relevance is judged by.
const KEEP_TAIL: usize = 6;
/// A memory block up to this size passes whole (a stable block keeps the
/// provider's prompt cache warm); a larger one is gated.
const MAX_MEMORY_BYTES: usize = 3_000;
/// Unpinned entries kept in a gated block.
const KEEP_ENTRIES: usize = 8;
/// Opens the engine's memory message.
const MEMORY_OPEN: &str = "<memory>";

/// Commands whose success says how this project verifies itself.
const VERIFY_COMMANDS: &[&str] = &[
    "cargo test",
    "cargo check",
    "cargo build",
    "cargo clippy",
    "npm test",
    "npm run test",
    "npm run build",
    "npm run lint",
    "pnpm test",
    "yarn test",
    "npx tsc",
    "tsc",
    "pytest",
    "python -m pytest",
    "python3 -m pytest",
    "go test",
    "go build",
    "go vet",
    "make test",
    "make check",
];

impl Plugin for MemoryGate {
    fn manifest() -> Manifest {
        Manifest::new("memory-gate", "0.3.0")
            .description("Gates memory and old tool outputs when a conversation is compacted; remembers how the project verifies itself")
            .hook(HookPoint::PreCompact)
            .hook(HookPoint::PostToolUse)
    }

    fn on_hook(event: HookEvent) -> Result<Decision, String> {
        let payload: Value = serde_json::from_str(&event.payload)
            .map_err(|err| format!("hook payload is not JSON: {err}"))?;
        match event.point {
            HookPoint::PreCompact => Ok(gate(payload)),
            HookPoint::PostToolUse => {
                let size = payload["output"].as_str().map_or(0, str::len);
                if size > MAX_OLD_OUTPUT {
                    host::record_metric("memory-gate.large-output-bytes", size as f64);
                }
                // `bash` reports a failing command as a normal result that
                // ends with its exit code; only `exit code 0` passed.
                let passed = payload["is-error"] == false
                    && payload["output"]
                        .as_str()
                        .is_some_and(|output| output.trim_end().ends_with("exit code 0"));
                if payload["tool"] == "bash"
                    && passed
                    && let Some(command) = payload["args"]["command"].as_str()
                {
                    keep_verified(command);
                }
                Ok(Decision::Continue)
            }
            _ => Ok(Decision::Continue),
        }
    }
}

/// Remember a passing verification command once: once per run through the
/// key-value store, once ever by looking in memory first (the plugin's
/// lookup does not count as the agents using those entries).
fn keep_verified(command: &str) {
    let command = command.split_whitespace().collect::<Vec<_>>().join(" ");
    let verifies = VERIFY_COMMANDS
        .iter()
        .any(|prefix| command == *prefix || command.starts_with(&format!("{prefix} ")));
    if !verifies || command.contains(['&', '|', ';', '>', '<', '`', '$']) {
        return;
    }
    let key = format!("verified:{command}");
    if host::kv_get(&key).is_some() {
        return;
    }
    let note = format!("Verified with `{command}` (it passed)");
    let known = host::memory_recall(&note, 50)
        .iter()
        .any(|entry| entry.text == note);
    // Memory may be off in this run: then there is nothing to keep.
    if known || host::memory_remember(Some("project"), &note, false).is_ok() {
        let _ = host::kv_set(&key, "1");
        if !known {
            host::record_metric("memory-gate.remembered", 1.0);
        }
    }
}

/// Marks an output this plugin shortened: never shortened twice.
const SHORTENED: &str = "[memory-gate: ";

/// Gate the memory block and shorten old tool outputs; the answer carries
/// only `messages` (the engine keeps its summary instruction).
fn gate(mut payload: Value) -> Decision {
    let Some(messages) = payload["messages"].as_array_mut() else {
        return Decision::Continue;
    };
    let large_block = |message: &Value| {
        message["text"]
            .as_str()
            .is_some_and(|text| text.starts_with(MEMORY_OPEN) && text.len() > MAX_MEMORY_BYTES)
    };
    let mut changed = 0;
    // Relevance is judged only when there is a large block to gate.
    if messages.iter().any(large_block) {
        let recent = words_of(&messages[messages.len().saturating_sub(KEEP_TAIL)..]);
        for message in messages.iter_mut().filter(|message| large_block(message)) {
            if let Some(gated) = message["text"]
                .as_str()
                .and_then(|text| gate_memory(text, &recent))
            {
                message["text"] = Value::String(gated);
                changed += 1;
            }
        }
    }
    let old = messages.len().saturating_sub(KEEP_TAIL);
    for message in messages.iter_mut().take(old) {
        if message["role"] != "tool" {
            continue;
        }
        for field in ["content", "text", "output"] {
            if let Some(text) = message[field].as_str()
                && text.len() > MAX_OLD_OUTPUT
                && !text.contains(SHORTENED)
            {
                let mut cut = MAX_OLD_OUTPUT;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                let short = format!(
                    "{}\n{SHORTENED}{} more bytes of this old tool output dropped]",
                    &text[..cut],
                    text.len() - cut
                );
                message[field] = Value::String(short);
                changed += 1;
            }
        }
    }
    if changed == 0 {
        return Decision::Continue;
    }
    host::record_metric("memory-gate.shortened", changed as f64);
    Decision::Modify(json!({ "messages": messages }).to_string())
}

/// The block with pinned entries and the `KEEP_ENTRIES` entries sharing
/// most words with the recent conversation; `None` if nothing would go.
fn gate_memory(block: &str, recent: &BTreeSet<String>) -> Option<String> {
    let lines: Vec<&str> = block.lines().collect();
    // Entry lines look like `- [m3] text` or `- [m3, pinned] text`.
    let mut scored: Vec<(usize, usize)> = lines
        .iter()
        .enumerate()
        .filter(|(_, line)| line.starts_with("- [m") && !line.contains(", pinned]"))
        .map(|(at, line)| {
            let overlap = words(line).intersection(recent).count();
            (at, overlap)
        })
        .collect();
    if scored.len() <= KEEP_ENTRIES {
        return None;
    }
    // Most overlap first; ties keep the engine's order.
    scored.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let dropped: BTreeSet<usize> = scored
        .iter()
        .skip(KEEP_ENTRIES)
        .map(|(at, _)| *at)
        .collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    for (at, line) in lines.iter().enumerate() {
        if *line == "</memory>" {
            out.push(format!(
                "[memory-gate: {} entries not related to the current work are hidden; `recall` finds them]",
                dropped.len()
            ));
        }
        if !dropped.contains(&at) {
            out.push((*line).to_string());
        }
    }
    // The engine closes the block at the end of the last entry line.
    let mut text = out.join("\n");
    if !text.contains("[memory-gate:") {
        text = text.replacen(
            "</memory>",
            &format!(
                "[memory-gate: {} entries not related to the current work are hidden; `recall` finds them]\n</memory>",
                dropped.len()
            ),
            1,
        );
    }
    Some(text)
}

/// Lowercase words of four letters or more in the messages' text, tool
/// arguments and outputs (not in the memory block itself).
fn words_of(messages: &[Value]) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for message in messages {
        if message["text"]
            .as_str()
            .is_some_and(|text| text.starts_with(MEMORY_OPEN))
        {
            continue;
        }
        all.extend(words(&message.to_string()));
    }
    all
}

fn words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '_')
        .filter(|word| word.len() >= 4)
        .map(str::to_lowercase)
        .collect()
}

export_plugin!(MemoryGate);

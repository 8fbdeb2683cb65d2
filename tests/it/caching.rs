//! Requests built for the provider's prompt cache, end to end: the real
//! `orch run` binary against a loopback model that keeps a prompt cache as
//! the providers document it (`support/prompt_cache.rs`) and reports it in
//! its usage fields. A long Worker session — a round of thirty parallel
//! reads, then a large file per turn, with memory on and memory-gate
//! installed — on a window small enough to compact once: every request
//! is its previous one plus new messages except at that compaction, most
//! input is read from the cache, and what orch counts is what the
//! provider billed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::support::http::{Recorded, Reply, Server};
use crate::support::project::{Project, events};
use crate::support::prompt_cache::{Billed, CacheRules, CacheStats, PromptCache};
use crate::support::sim::{Usage, Wire, bill, turn_reply};

/// Files read in one round of parallel calls.
const PARALLEL: usize = 30;
/// Large files then read one per turn.
const LARGE: usize = 14;

/// A model that plays `turns` in order (and answers summary requests),
/// billing each request through the cache.
struct Player {
    wire: Wire,
    turns: Vec<(String, Vec<(String, Value)>)>,
    next: AtomicUsize,
    cache: PromptCache,
    /// The conversation requests, as sent, and as billed.
    sent: Mutex<Vec<(Value, Billed)>>,
}

impl Player {
    fn answer(&self, request: &Recorded) -> Reply {
        let billed = match bill(&self.cache, self.wire, &request.body) {
            Ok(billed) => billed,
            Err((_, refused)) => return refused,
        };
        let usage = Usage {
            prompt: billed,
            max_tokens: 4096,
        };
        let system = match self.wire {
            Wire::Anthropic => request.body["system"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            Wire::OpenAi => request.body["messages"][0]["content"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        };
        if system.starts_with("You compact a coding agent's conversation")
            || request
                .body
                .to_string()
                .contains(orch::session::SUMMARY_REQUEST)
        {
            return turn_reply(
                self.wire,
                "Summary: the files were read; nothing changed yet.",
                &[],
                usage,
                0,
            );
        }
        self.sent
            .lock()
            .unwrap()
            .push((request.body.clone(), billed));
        let at = self.next.fetch_add(1, Ordering::SeqCst);
        let (text, calls) = &self.turns[at.min(self.turns.len() - 1)];
        turn_reply(self.wire, text, calls, usage, at as u64)
    }
}

fn read(path: &str) -> (String, Value) {
    ("read".to_string(), json!({"path": path}))
}

fn turns() -> Vec<(String, Vec<(String, Value)>)> {
    let mut turns = vec![(
        "Reading the small modules together.".to_string(),
        (0..PARALLEL)
            .map(|k| read(&format!("src/small_{k}.rs")))
            .collect(),
    )];
    for k in 0..LARGE {
        turns.push((
            format!("Reading large module {k}."),
            vec![read(&format!("src/large_{k}.rs"))],
        ));
    }
    // Then the small steps a model takes before it answers.
    for k in 0..6 {
        turns.push((
            format!("Checking the callers of small_{k}."),
            vec![(
                "grep".to_string(),
                json!({"pattern": format!("small_{k}\\(\\)"), "path": "src"}),
            )],
        ));
    }
    turns.push((
        "All modules are read; nothing needs to change.".into(),
        vec![],
    ));
    turns
}

fn project(wire: Wire) -> Project {
    let project = Project::trusted();
    for k in 0..PARALLEL {
        project.write(
            &format!("src/small_{k}.rs"),
            &format!("pub fn small_{k}() -> u32 {{ {k} }}\n").repeat(8),
        );
    }
    for k in 0..LARGE {
        let body: String = (0..150)
            .map(|line| format!("    let value_{line} = compute_{k}(input, {line}) + offset;\n"))
            .collect();
        project.write(&format!("src/large_{k}.rs"), &body);
    }
    let plugins = project.file(".opencode/plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(
        crate::plugins::guest("memory_gate"),
        plugins.join("memory_gate.wasm"),
    )
    .unwrap();
    let model = match wire {
        Wire::OpenAi => "gpt-4o",
        Wire::Anthropic => "claude-sonnet-4-5",
    };
    // A window the session outgrows once, near its end.
    project.write(
        ".opencode/orch.json",
        &json!({
            "models": {model: {"context_window": 44000, "max_output": 4096}},
            "session": {"max_turns": 40},
            "notifications": false,
        })
        .to_string(),
    );
    project
}

struct Outcome {
    code: Option<i32>,
    events: Vec<Value>,
    stderr: String,
    cache: CacheStats,
    sent: Vec<(Value, Billed)>,
}

async fn session(wire: Wire) -> Outcome {
    let player = Arc::new(Player {
        wire,
        turns: turns(),
        next: AtomicUsize::new(0),
        cache: PromptCache::new(CacheRules::default()),
        sent: Mutex::default(),
    });
    let shared = player.clone();
    let server = Server::responding(move |request| shared.answer(request)).await;
    let project = project(wire);
    let mut command = tokio::process::Command::from(project.orch());
    match wire {
        Wire::OpenAi => command
            .env("OPENAI_BASE_URL", format!("{}/v1", server.url()))
            .args(["--model", "gpt-4o"]),
        Wire::Anthropic => command
            .env("ANTHROPIC_BASE_URL", server.url())
            .env("ANTHROPIC_API_KEY", "sk-ant-test")
            .args(["--provider", "anthropic", "--model", "claude-sonnet-4-5"]),
    };
    command.args([
        "--json",
        "run",
        "--agent",
        "Worker",
        "Read every module under src/ and say whether any needs a change.",
    ]);
    let output = command.output().await.expect("run orch");
    let sent = player.sent.lock().unwrap().clone();
    Outcome {
        code: output.status.code(),
        events: events(&String::from_utf8_lossy(&output.stdout)),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        cache: player.cache.stats(),
        sent,
    }
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|event| event["type"] == kind)
        .collect()
}

async fn a_long_session_is_read_from_the_cache(wire: Wire) {
    let outcome = session(wire).await;
    assert_eq!(outcome.code, Some(0), "{wire:?}\n{}", outcome.stderr);
    let cache = &outcome.cache;
    let compactions = of_type(&outcome.events, "context_compacted");
    println!(
        "{wire:?}: {} requests, {:.1} % of {} prompt tokens read from the cache, {} written, {} compactions, rewrites {:?}",
        cache.requests,
        100.0 * cache.hit_ratio(),
        cache.input,
        cache.cache_write,
        compactions.len(),
        cache.rewrites
    );
    // The window is outgrown once; memory-gate shortened old outputs then,
    // and they stayed shortened.
    assert_eq!(compactions.len(), 1, "{compactions:?}");
    let shortened_at = outcome
        .sent
        .iter()
        .position(|(body, _)| body.to_string().contains("[memory-gate: "))
        .expect("memory-gate shortened old outputs at the compaction");
    assert!(
        outcome.sent[shortened_at..]
            .iter()
            .all(|(body, _)| body.to_string().contains("[memory-gate: ")),
        "a shortening holds"
    );
    // Append-only, except at that compaction: one rewrite of the session.
    assert_eq!(
        cache.rewrites.len(),
        1,
        "{wire:?}: requests that rewrote earlier ones: {:?}",
        cache.rewrites
    );
    // Every request reads at least all that the previous one sent (the
    // round of thirty results included: more blocks than Anthropic looks
    // back), except the first after the compaction. OpenAI reads in steps
    // of 128 tokens.
    let step = match wire {
        Wire::OpenAi => 127,
        Wire::Anthropic => 0,
    };
    let misses: Vec<usize> = (1..outcome.sent.len())
        .filter(|&at| outcome.sent[at].1.cache_read + step < outcome.sent[at - 1].1.input)
        .collect();
    assert_eq!(
        misses,
        [shortened_at],
        "{wire:?}: {:?}",
        outcome
            .sent
            .iter()
            .map(|(_, billed)| billed)
            .collect::<Vec<_>>()
    );
    // Over the session most input is read from the cache.
    assert!(
        cache.hit_ratio() >= 0.8,
        "{wire:?}: {:.3} of input read from the cache",
        cache.hit_ratio()
    );
    // What orch counted is what the provider billed.
    let mut input = 0;
    let mut cached = 0;
    let mut written = 0;
    for event in of_type(&outcome.events, "usage") {
        input += event["usage"]["input"].as_u64().unwrap();
        cached += event["usage"]["cached_input"].as_u64().unwrap();
        written += event["usage"]["cache_write"].as_u64().unwrap();
    }
    assert_eq!(input, cache.input, "{wire:?}");
    assert_eq!(cached, cache.cache_read, "{wire:?}");
    assert_eq!(written, cache.cache_write, "{wire:?}");
}

#[tokio::test]
async fn a_long_anthropic_session_is_read_from_the_cache() {
    a_long_session_is_read_from_the_cache(Wire::Anthropic).await;
}

#[tokio::test]
async fn a_long_openai_session_is_read_from_the_cache() {
    a_long_session_is_read_from_the_cache(Wire::OpenAi).await;
}

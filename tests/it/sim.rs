//! Whole missions against the model simulator (`support/sim.rs`), through
//! the real `orch` binary, on a small real Rust project and a small real
//! Python project: Planner, three parallel Workers, Reviewer, the engine's
//! own verification. Twenty seeds vary the wire format, the project, the
//! wording and the faults a real provider throws; every run must end
//! complete, exit 0, with the same final files.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{Value, json};

use crate::support::log::compact_log;
use crate::support::missions::{faults, mission, python_project, rust_project, sim_config};
use crate::support::project::Project;
use crate::support::sim::{Fault, Play, Sim, Wire, Work};

/// One seed: the project and wire format it picks, its faults, and the
/// checks every run must pass.
async fn seed(seed: u64) {
    if seed % 4 >= 2 && !python_with_pytest() {
        crate::support::skipped_unless_ci(
            &format!("sim::seed_{seed:02}"),
            "python3 -m pytest is not available (.ci/run installs pytest)",
        );
        fired(wire_of(seed), None);
        return;
    }
    let project = Project::trusted();
    let work = if seed % 4 < 2 {
        rust_project(&project)
    } else {
        python_project(&project)
    };
    project.write(".opencode/orch.json", &sim_config().to_string());
    let wire = wire_of(seed);
    let play = Play {
        wire,
        seed,
        faults: faults(seed),
        fault_rate: 25,
    };
    let sim = Sim::start(work.clone(), play.clone()).await;
    let outcome = mission(&project, &sim, wire, &[]).await;
    let tally = sim.tally();
    let log = compact_log(&outcome.events);
    if std::env::var_os("ORCH_SIM_LOG").is_some() {
        println!("seed {seed} {wire:?} {:?}\n{tally:?}\n{log}", play.faults);
    }
    assert_eq!(
        outcome.code,
        Some(0),
        "seed {seed} ({wire:?}, faults {:?}): {tally:?}\n{log}\nstderr:\n{}",
        play.faults,
        outcome.stderr
    );
    // The same final files, whatever the seed.
    for item in &work.items {
        assert_eq!(
            project.read(item.file),
            item.content,
            "seed {seed}: {}",
            item.file
        );
    }
    let plan = project.read(".opencode/todo.md");
    assert_eq!(plan.matches("- [x] ").count(), 3, "seed {seed}: {plan}");
    // Each task's side effect ran once.
    let effects = crate::support::missions::effects(&project);
    assert_eq!(effects, ["T1", "T2", "T3"], "seed {seed}");
    // Never a request with a tool call and no result.
    assert!(tally.invalid.is_empty(), "seed {seed}: {:?}", tally.invalid);
    // Each session's request was its previous request plus new messages,
    // except where the conversation was compacted.
    let cache = sim.cache();
    let compactions = outcome
        .events
        .iter()
        .filter(|event| event["type"] == "context_compacted")
        .count();
    println!(
        "seed {seed} {wire:?}: {} requests, {:.1} % of {} prompt tokens read from the cache, {} written, {} compactions, rewrites {:?}",
        cache.requests,
        100.0 * cache.hit_ratio(),
        cache.input,
        cache.cache_write,
        compactions,
        cache.rewrites
    );
    // A new session of an agent, or one the pool hands out again, reads
    // the agent's cached prefix (system prompt and tools): only each
    // agent's first session starts cold. The summary requests asked apart
    // have no prefix of their own to read.
    assert!(
        cache.cold_starts.len() <= cache.systems,
        "seed {seed}: sessions that read nothing from the cache: {:?} ({} agents)",
        cache.cold_starts,
        cache.systems
    );
    assert!(
        cache.rewrites.len() <= compactions,
        "seed {seed}: requests that rewrote their session's earlier ones: {:?}",
        cache.rewrites
    );
    // A seed with faults really had some.
    if !play.faults.is_empty() {
        assert!(!tally.faults.is_empty(), "seed {seed}: no fault happened");
    }
    fired(wire, Some(&tally.faults));
}

/// The seeds of each wire format (`seed % 2`).
const SEEDS_PER_WIRE: usize = 10;

/// What fired over the seeds of one wire format that ended in this run.
#[derive(Default)]
struct Fired {
    /// Seeds ended, and how many of them were skipped.
    ended: usize,
    skipped: usize,
    faults: BTreeMap<String, usize>,
}

static FIRED: Mutex<BTreeMap<String, Fired>> = Mutex::new(BTreeMap::new());

/// Add one seed's faults (`None`: skipped) to its wire format's sum; the
/// last seed of a wire format to end checks that every fault the seeds
/// mix in really fired somewhere. (When a filter runs only some seeds, the
/// sum is never complete and nothing is checked.)
fn fired(wire: Wire, seen: Option<&BTreeMap<String, usize>>) {
    let mut all = FIRED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let sum = all.entry(format!("{wire:?}")).or_default();
    sum.ended += 1;
    match seen {
        Some(seen) => {
            for (fault, count) in seen {
                *sum.faults.entry(fault.clone()).or_default() += count;
            }
        }
        None => sum.skipped += 1,
    }
    if sum.ended < SEEDS_PER_WIRE {
        return;
    }
    println!(
        "faults that fired over the {wire:?} seeds: {:?}",
        sum.faults
    );
    if sum.skipped > 0 {
        crate::support::skipped(
            &format!("sim: every fault fired ({wire:?})"),
            "some seeds were skipped",
        );
        return;
    }
    let mixed: std::collections::BTreeSet<Fault> = (0..20u64)
        .filter(|seed| wire_of(*seed) == wire)
        .flat_map(faults)
        .collect();
    assert_eq!(
        mixed.len(),
        6,
        "{wire:?} seeds mix in every fault: {mixed:?}"
    );
    let missing: Vec<String> = mixed
        .iter()
        .map(|fault| format!("{fault:?}"))
        .filter(|fault| !sum.faults.contains_key(fault))
        .collect();
    assert!(
        missing.is_empty(),
        "faults that never fired over the {wire:?} seeds: {missing:?} (fired: {:?})",
        sum.faults
    );
}

fn wire_of(seed: u64) -> Wire {
    if seed.is_multiple_of(2) {
        Wire::OpenAi
    } else {
        Wire::Anthropic
    }
}

fn python_with_pytest() -> bool {
    std::process::Command::new("python3")
        .args(["-m", "pytest", "--version"])
        .output()
        .is_ok_and(|output| output.status.success())
}

macro_rules! seeds {
    ($($name:ident = $seed:expr),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                seed($seed).await;
            }
        )*
    };
}

seeds! {
    seed_00 = 0, seed_01 = 1, seed_02 = 2, seed_03 = 3, seed_04 = 4,
    seed_05 = 5, seed_06 = 6, seed_07 = 7, seed_08 = 8, seed_09 = 9,
    seed_10 = 10, seed_11 = 11, seed_12 = 12, seed_13 = 13, seed_14 = 14,
    seed_15 = 15, seed_16 = 16, seed_17 = 17, seed_18 = 18, seed_19 = 19,
}

/// A server that only ever sends keep-alive comments does not hold a
/// session forever: the turn's own deadline ends the attempt, and the turn
/// goes again.
#[tokio::test]
async fn keep_alive_comments_alone_run_into_the_turn_deadline() {
    let project = Project::trusted();
    let work = rust_project(&project);
    let mut config = sim_config();
    config["session"]["turn_timeout_ms"] = 1500.into();
    project.write(".opencode/orch.json", &config.to_string());
    let play = Play {
        wire: Wire::OpenAi,
        seed: 7,
        faults: [Fault::KeepAliveOnly].into(),
        fault_rate: 15,
    };
    let sim = Sim::start(work, play).await;
    let outcome = mission(&project, &sim, Wire::OpenAi, &[]).await;
    let tally = sim.tally();
    assert_eq!(
        outcome.code,
        Some(0),
        "{tally:?}\n{}",
        compact_log(&outcome.events)
    );
    assert!(tally.faults.contains_key("KeepAliveOnly"), "{tally:?}");
    let deadlines = outcome
        .events
        .iter()
        .filter(|e| e["type"] == "model_retry")
        .filter(|e| {
            e["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("deadline (session.turn_timeout_ms)")
        })
        .count();
    assert!(deadlines > 0, "{}", compact_log(&outcome.events));
}

/// Kill orch with SIGKILL at a moment of the mission (once `first` events
/// are in the journal), resume, kill the resumed run as well (once `second`
/// more are in), and resume again: the mission ends as if nothing happened.
async fn killed_twice(wire: Wire, first: usize, second: usize) {
    use crate::support::missions::orch;
    let project = Project::trusted();
    let work = rust_project(&project);
    project.write(".opencode/orch.json", &sim_config().to_string());
    let play = Play {
        wire,
        seed: first as u64,
        faults: Default::default(),
        fault_rate: 0,
    };
    let sim = Sim::start(work.clone(), play).await;
    let journal_lines = || -> usize {
        let Ok(latest) = std::fs::read_to_string(project.file(".opencode/missions/latest")) else {
            return 0;
        };
        std::fs::read_to_string(project.file(&format!(
            ".opencode/missions/{}/events.jsonl",
            latest.trim()
        )))
        .map_or(0, |text| text.lines().count())
    };
    let run_until = |mut command: tokio::process::Command, lines: usize| {
        command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        async move {
            let mut child = command.spawn().expect("spawn orch");
            let started = std::time::Instant::now();
            loop {
                if journal_lines() >= lines {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    return true;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    return false;
                }
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(60),
                    "no progress"
                );
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
    };
    // Both kills must land: a moment past the end of a run would test
    // nothing.
    let killed = run_until(
        orch(&project, &sim, wire, &["task", "Implement the calculator"]),
        first,
    )
    .await;
    assert!(killed, "the mission ended before journal line {first}");
    let before = journal_lines();
    let killed = run_until(orch(&project, &sim, wire, &["resume"]), before + second).await;
    assert!(
        killed,
        "killed at {first}, the resume ended before {second} more journal lines ({} in all)",
        journal_lines()
    );
    // The last run goes to the end (resume is refused for a finished mission).
    let mut last = orch(&project, &sim, wire, &["--json", "resume"]);
    let output = last.output().await.expect("run orch resume");
    let tally = sim.tally();
    let journal = {
        let latest = project.read(".opencode/missions/latest");
        project.read(&format!(
            ".opencode/missions/{}/events.jsonl",
            latest.trim()
        ))
    };
    let events: Vec<Value> = journal
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let log = compact_log(&events);
    let finished = events
        .iter()
        .rev()
        .find(|e| e["type"] == "mission_finished")
        .cloned()
        .unwrap_or_default();
    let differing: Vec<String> = work
        .items
        .iter()
        .filter_map(|item| {
            let now = std::fs::read_to_string(project.file(item.file)).unwrap_or_default();
            (now != item.content).then(|| format!("{}:\n{now}", item.file))
        })
        .collect();
    let last_gate = events
        .iter()
        .rev()
        .find(|e| e["type"] == "gate_checked")
        .map(|e| e["verify"].to_string())
        .unwrap_or_default();
    assert_eq!(
        finished["outcome"],
        "complete",
        "kill at {first}, then {second} more: {}\n{tally:?}\n{log}\nfiles not as planned: {differing:#?}\nlast checks: {last_gate}",
        String::from_utf8_lossy(&output.stderr)
    );
    for item in &work.items {
        assert_eq!(project.read(item.file), item.content, "{}", item.file);
    }
    // A completed task's side effect never ran twice.
    let effects = crate::support::missions::effects(&project);
    assert_eq!(
        effects,
        ["T1", "T2", "T3"],
        "kill at {first}, then {second}\n{log}"
    );
    // The strict server never saw a tool call without a result.
    assert!(tally.invalid.is_empty(), "{:?}", tally.invalid);
    // Sequence numbers go on across runs; task ids are never reused.
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "sequence numbers went back"
    );
    // A task taken up again after a kill keeps its id; a new delegation
    // never gets an id that is already taken.
    let mut tasks: std::collections::BTreeMap<&str, &str> = Default::default();
    for queued in events.iter().filter(|e| e["type"] == "task_queued") {
        let id = queued["task"].as_str().unwrap_or_default();
        let description = queued["description"].as_str().unwrap_or_default();
        let first = *tasks.entry(id).or_insert(description);
        assert_eq!(first, description, "task id {id} was reused\n{log}");
    }
}

#[tokio::test]
async fn sigkill_at_many_moments_and_twice_in_a_row_then_resume() {
    for (first, second) in [(6, 10), (14, 6), (25, 20), (40, 12), (60, 30), (90, 15)] {
        killed_twice(Wire::OpenAi, first, second).await;
    }
}

#[tokio::test]
async fn sigkill_twice_with_the_anthropic_wire_then_resume() {
    for (first, second) in [(10, 25), (35, 8), (70, 40)] {
        killed_twice(Wire::Anthropic, first, second).await;
    }
}

/// The simulator is as strict as the real APIs: a tool call whose results
/// do not follow it at once is answered 400 with the provider's error body,
/// and the same conversation with the results in place is answered.
#[tokio::test]
async fn a_tool_call_whose_results_do_not_follow_at_once_is_answered_400() {
    let work = Work {
        items: Vec::new(),
        test_all: "true",
        overview: "README.md",
    };
    let client = orch::provider::client_builder()
        .build()
        .expect("an http client");
    for wire in [Wire::OpenAi, Wire::Anthropic] {
        let play = Play {
            wire,
            seed: 0,
            faults: Default::default(),
            fault_rate: 0,
        };
        let sim = Sim::start(work.clone(), play).await;
        let url = match wire {
            Wire::OpenAi => format!("{}/chat/completions", sim.base_url()),
            Wire::Anthropic => format!("{}/v1/messages", sim.base_url()),
        };
        for (case, conversation, refused) in conversations(wire) {
            let body = match wire {
                Wire::OpenAi => {
                    let mut messages = vec![json!({"role": "system", "content": "You summarise."})];
                    messages.extend(conversation);
                    json!({"model": "qwen2.5-coder:14b", "stream": true, "messages": messages})
                }
                Wire::Anthropic => json!({"model": "claude-sonnet-4-5", "stream": true,
                    "max_tokens": 1024, "system": "You summarise.", "messages": conversation}),
            };
            let response = client
                .post(&url)
                .json(&body)
                .send()
                .await
                .expect("the simulator answers");
            let status = response.status().as_u16();
            let answer: Value =
                serde_json::from_str(&response.text().await.expect("a body")).unwrap_or_default();
            let Some(id) = refused else {
                assert_eq!(status, 200, "{wire:?} {case}: {answer}");
                continue;
            };
            assert_eq!(status, 400, "{wire:?} {case}: {answer}");
            assert_eq!(
                answer["error"]["type"], "invalid_request_error",
                "{wire:?} {case}: {answer}"
            );
            let message = answer["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(id), "{wire:?} {case}: {message}");
            match wire {
                Wire::OpenAi => assert_eq!(answer["error"]["param"], "messages", "{answer}"),
                Wire::Anthropic => assert_eq!(answer["type"], "error", "{answer}"),
            }
        }
        assert_eq!(sim.tally().invalid.len(), 4, "{wire:?}: {:?}", sim.tally());
    }
}

/// Conversations in `wire`'s format, each with the call id it leaves
/// unanswered (`None`: a valid one).
fn conversations(wire: Wire) -> Vec<(&'static str, Vec<Value>, Option<&'static str>)> {
    let read = |id: &str| match wire {
        Wire::OpenAi => json!({"id": id, "type": "function",
            "function": {"name": "read", "arguments": "{\"path\":\"a.rs\"}"}}),
        Wire::Anthropic => json!({"type": "tool_use", "id": id, "name": "read",
            "input": {"path": "a.rs"}}),
    };
    let calls = |ids: &[&str]| match wire {
        Wire::OpenAi => json!({"role": "assistant", "content": null,
            "tool_calls": ids.iter().map(|id| read(id)).collect::<Vec<_>>()}),
        Wire::Anthropic => json!({"role": "assistant",
            "content": ids.iter().map(|id| read(id)).collect::<Vec<_>>()}),
    };
    let user = |text: &str| json!({"role": "user", "content": text});
    // The results of `ids`, then `text` if any, as the wire puts them.
    let results = |ids: &[&str], text: Option<&str>| -> Vec<Value> {
        match wire {
            Wire::OpenAi => ids
                .iter()
                .map(|id| json!({"role": "tool", "tool_call_id": id, "content": "fn a() {}"}))
                .chain(text.map(user))
                .collect(),
            Wire::Anthropic => {
                let mut blocks: Vec<Value> = ids
                    .iter()
                    .map(|id| json!({"type": "tool_result", "tool_use_id": id, "content": "fn a() {}"}))
                    .collect();
                blocks.extend(text.map(|text| json!({"type": "text", "text": text})));
                vec![json!({"role": "user", "content": blocks})]
            }
        }
    };
    let start = user("Read a.rs");
    let mut answered = vec![start.clone(), calls(&["call_1", "call_2"])];
    answered.extend(results(&["call_1", "call_2"], Some("Go on")));
    let mut unanswered = vec![start.clone(), calls(&["call_1"])];
    unanswered.push(user("Go on"));
    let mut half = vec![start.clone(), calls(&["call_1", "call_2"])];
    half.extend(results(&["call_1"], Some("Go on")));
    // The result comes, but only after another message.
    let mut late = vec![start.clone(), calls(&["call_1"])];
    match wire {
        Wire::OpenAi => {
            late.push(user("Hurry up"));
            late.extend(results(&["call_1"], None));
        }
        // Anthropic: the result in the next user message, behind text.
        Wire::Anthropic => late.push(json!({"role": "user", "content": [
            {"type": "text", "text": "Hurry up"},
            {"type": "tool_result", "tool_use_id": "call_1", "content": "fn a() {}"}]})),
    }
    // A later turn's call whose result is missing, earlier ones answered.
    let mut last = answered.clone();
    last.push(calls(&["call_3"]));
    vec![
        ("every result right after its call", answered, None),
        ("no result at all", unanswered, Some("call_1")),
        ("one of two results", half, Some("call_2")),
        ("the result after another message", late, Some("call_1")),
        ("the last call unanswered", last, Some("call_3")),
    ]
}

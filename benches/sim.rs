//! The simulated mission (run with `cargo bench --bench sim`): the real
//! `orch` binary (release build) against the model simulator of the tests,
//! on the small Rust project — Planner, three parallel Workers, Reviewer,
//! the engine's own `cargo build` and `cargo test` — with and without the
//! faults real providers throw (resets and error events after content, the
//! Commander's turns cut mid-stream, two stalls in a row, a 429 storm, empty
//! turns cut at the output limit), every one of them on. For each: wall
//! time, requests sent, retries, the output spent on partial turns that were
//! discarded (as orch counted it, in bytes, and as the server streamed it,
//! in words), and how many runs did not end complete.
//!
//! Prints numbers; asserts nothing about time.

#[path = "../tests/it/support/mod.rs"]
#[allow(dead_code)]
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::missions::{mission, rust_project, sim_config};
use support::project::Project;
use support::sim::{Fault, Play, Sim, Wire};

/// Missions per row (each takes a few seconds).
const RUNS: u64 = 4;

/// Every fault the simulator can throw at a mission that still ends
/// (keep-alive comments forever only end at the turn deadline).
fn all_faults() -> BTreeSet<Fault> {
    BTreeSet::from([
        Fault::ResetAfterContent,
        Fault::ErrorAfterContent,
        Fault::CutCommander,
        Fault::TwoStalls,
        Fault::Storm429,
        Fault::EmptyLengthCut,
    ])
}

struct Row {
    wall: Vec<Duration>,
    requests: Vec<usize>,
    discarded_bytes: Vec<u64>,
    cut_words: Vec<u64>,
    retries: Vec<usize>,
    failed: usize,
}

fn median<T: Copy + Ord>(values: &[T]) -> T {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

async fn row(label: &str, wire: Wire, with_faults: bool) {
    let mut row = Row {
        wall: Vec::new(),
        requests: Vec::new(),
        discarded_bytes: Vec::new(),
        cut_words: Vec::new(),
        retries: Vec::new(),
        failed: 0,
    };
    for run in 0..RUNS {
        let project = Project::trusted();
        let work = rust_project(&project);
        project.write(".opencode/orch.json", &sim_config().to_string());
        let seed = 100 + run;
        let play = Play {
            wire,
            seed,
            faults: if with_faults {
                all_faults()
            } else {
                BTreeSet::new()
            },
            fault_rate: 25,
        };
        let sim = Sim::start(work, play).await;
        let started = Instant::now();
        let outcome = mission(&project, &sim, wire, &[]).await;
        let wall = started.elapsed();
        if outcome.code != Some(0) {
            row.failed += 1;
            println!(
                "  {label}: run {run} ended with {:?}: {}",
                outcome.code, outcome.stderr
            );
            continue;
        }
        let tally = sim.tally();
        let retries: Vec<&Value> = outcome
            .events
            .iter()
            .filter(|e| e["type"] == "model_retry")
            .collect();
        row.wall.push(wall);
        row.requests.push(tally.requests);
        row.discarded_bytes.push(
            retries
                .iter()
                .map(|e| e["discarded_bytes"].as_u64().unwrap_or(0))
                .sum(),
        );
        row.cut_words.push(tally.cut_tokens);
        row.retries.push(retries.len());
    }
    if row.wall.is_empty() {
        println!("{label:<34} every run failed ({} of {RUNS})", row.failed);
        return;
    }
    println!(
        "{label:<34} wall {:>6.2} s   requests {:>4}   retries {:>3}   discarded partial output {:>5} bytes ({} words streamed before the cuts)   failed runs {} of {RUNS}",
        median(&row.wall).as_secs_f64(),
        median(&row.requests),
        median(&row.retries),
        median(&row.discarded_bytes),
        median(&row.cut_words),
        row.failed,
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "simulated mission (Rust project, 3 parallel Workers), median of the complete runs of {RUNS}; faults: {:?}",
        all_faults()
    );
    runtime.block_on(async {
        row("OpenAI wire, no faults", Wire::OpenAi, false).await;
        row("OpenAI wire, faults at 25 %", Wire::OpenAi, true).await;
        row("Anthropic wire, no faults", Wire::Anthropic, false).await;
        row("Anthropic wire, faults at 25 %", Wire::Anthropic, true).await;
    });
}

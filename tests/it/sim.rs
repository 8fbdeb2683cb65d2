//! Whole missions against the model simulator (`support/sim.rs`), through
//! the real `orch` binary, on a small real Rust project and a small real
//! Python project: Planner, three parallel Workers, Reviewer, the engine's
//! own verification. Twenty seeds vary the wire format, the project, the
//! wording and the faults a real provider throws; every run must end
//! complete, exit 0, with the same final files.

use crate::support::log::compact_log;
use crate::support::missions::{faults, mission, python_project, rust_project, sim_config};
use crate::support::project::Project;
use crate::support::sim::{Fault, Play, Sim, Wire};

/// One seed: the project and wire format it picks, its faults, and the
/// checks every run must pass.
async fn seed(seed: u64) {
    if seed % 4 >= 2 && !python_with_pytest() {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 -m pytest is missing (see .ci/run)"
        );
        crate::support::skipped(
            &format!("sim::seed_{seed:02}"),
            "python3 -m pytest is not available (.ci/run installs pytest)",
        );
        return;
    }
    let project = Project::new();
    let work = if seed % 4 < 2 {
        rust_project(&project)
    } else {
        python_project(&project)
    };
    project.write(".opencode/orch.json", &sim_config().to_string());
    let wire = if seed.is_multiple_of(2) {
        Wire::OpenAi
    } else {
        Wire::Anthropic
    };
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
    // Never a request with a tool call and no result.
    assert!(tally.invalid.is_empty(), "seed {seed}: {:?}", tally.invalid);
    // A seed with faults really had some.
    if !play.faults.is_empty() {
        assert!(!tally.faults.is_empty(), "seed {seed}: no fault happened");
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
    let project = Project::new();
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

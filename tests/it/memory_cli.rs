//! `orch memory` on the real binary: the list shows each entry's tier,
//! score, origin and pin; forget, pin and unpin change the stored files;
//! an unknown id, a pin past the budget and a corrupt file fail saying so,
//! with nothing lost. And through whole scripted missions: a Project entry
//! decays once per new mission, not per iteration nor on a resume.

use serde_json::{Value, json};

use crate::support::project::{Project, call, events, run};

const MISSION: &str = "m-20240101-abc";

/// A project with stored memory: System and Project entries in
/// `project.json`, a Mission entry in the last mission's `memory.json`.
fn remembering() -> Project {
    let project = Project::new();
    project.write(
        ".opencode/memory/project.json",
        &json!({"entries": [
            {"id": "m1", "text": "Answer in English.", "source": "user", "tier": "system",
             "pinned": true, "score": 1.0, "created_ms": 1},
            {"id": "m2", "text": "The HTTP layer is axum;\nhandlers live in src/api/.", "source": "Commander",
             "mission": MISSION, "tier": "project", "score": 0.343, "created_ms": 2},
            // Written before entries recorded their mission.
            {"id": "m3", "text": "word ".repeat(40), "source": "Worker", "tier": "project",
             "score": 0.7, "created_ms": 3}
        ]})
        .to_string(),
    );
    project.write(".opencode/missions/latest", &format!("{MISSION}\n"));
    project.write(
        &format!(".opencode/missions/{MISSION}/memory.json"),
        &json!({"entries": [
            {"id": "m4", "text": "T1 needs a migration", "source": "Reviewer", "mission": MISSION,
             "tier": "mission", "score": 0.49, "created_ms": 4}
        ]})
        .to_string(),
    );
    project
}

/// `orch memory ARGS`: exit code, stdout, stderr.
fn memory(project: &Project, args: &[&str]) -> (Option<i32>, String, String) {
    let (output, stdout, stderr) = run(project.orch().arg("memory").args(args));
    (output.status.code(), stdout, stderr)
}

/// The stored entries, as `orch memory --json` prints them.
fn listed(project: &Project) -> Vec<Value> {
    let (code, stdout, stderr) = memory(project, &["--json"]);
    assert_eq!(code, Some(0), "{stderr}");
    serde_json::from_str::<Vec<Value>>(&stdout).unwrap_or_else(|err| panic!("{err}: {stdout}"))
}

fn entry<'a>(entries: &'a [Value], id: &str) -> Option<&'a Value> {
    entries.iter().find(|e| e["id"] == id)
}

#[test]
fn memory_lists_every_entry_with_tier_score_origin_and_pin() {
    let project = remembering();
    let (code, stdout, stderr) = memory(&project, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    let cells = |line: &str| -> Vec<String> {
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect()
    };
    assert_eq!(
        cells(lines[0]),
        ["ID", "TIER", "SCORE", "PINNED", "AGENT", "MISSION", "TEXT"]
    );
    assert_eq!(
        cells(lines[1]),
        [
            "m1",
            "system",
            "1.00",
            "yes",
            "user",
            "-",
            "Answer in English."
        ]
    );
    // One line, whatever the text's own lines.
    assert_eq!(
        cells(lines[2]),
        [
            "m2",
            "project",
            "0.34",
            "-",
            "Commander",
            MISSION,
            "The HTTP layer is axum; handlers live in src/api/."
        ]
    );
    let long = cells(lines[3]);
    assert_eq!(long[..6], ["m3", "project", "0.70", "-", "Worker", "-"]);
    assert!(
        long[6].ends_with('…') && long[6].chars().count() == 73,
        "{}",
        long[6]
    );
    assert_eq!(
        cells(lines[4]),
        [
            "m4",
            "mission",
            "0.49",
            "-",
            "Reviewer",
            MISSION,
            "T1 needs a migration"
        ]
    );
    // Columns line up: every row's text starts where the header's does.
    let text_at = lines[0].find("TEXT").unwrap();
    for line in &lines[1..] {
        assert!(line[..text_at].ends_with("  "), "{line}");
        assert!(!line[text_at..].starts_with(' '), "{line}");
    }
    // `list` is the same; --json has the stored fields.
    assert_eq!(memory(&project, &["list"]).1, stdout);
    let entries = listed(&project);
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[1]["source"], "Commander");
    assert_eq!(entries[1]["mission"], MISSION);
    assert_eq!(entries[1]["score"], 0.343);
    assert_eq!(entries[0]["pinned"], true);
}

#[test]
fn memory_without_entries_says_so() {
    let project = Project::new();
    let (code, stdout, stderr) = memory(&project, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with("no memory entries in "), "{stdout}");
    assert_eq!(listed(&project), Vec::<Value>::new());
    assert!(!project.file(".opencode/memory").exists());
}

#[test]
fn forget_pin_and_unpin_change_the_stored_entries() {
    let project = remembering();
    let (code, stdout, stderr) = memory(&project, &["forget", "m3"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.starts_with("forgot m3 (project tier): word word"),
        "{stdout}"
    );
    assert!(entry(&listed(&project), "m3").is_none());

    let (code, stdout, stderr) = memory(&project, &["pin", "m2"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with("pinned m2 (project tier)"), "{stdout}");
    let entries = listed(&project);
    assert_eq!(entry(&entries, "m2").unwrap()["pinned"], true);
    // Nothing else of the entry changed.
    assert_eq!(entry(&entries, "m2").unwrap()["score"], 0.343);
    assert_eq!(entry(&entries, "m2").unwrap()["mission"], MISSION);

    // The last mission's entries are the user's to change too.
    let (code, _, stderr) = memory(&project, &["pin", "m4"]);
    assert_eq!(code, Some(0), "{stderr}");
    let stored = project.read(&format!(".opencode/missions/{MISSION}/memory.json"));
    assert_eq!(
        serde_json::from_str::<Value>(&stored).unwrap()["entries"][0]["pinned"],
        true
    );

    let (code, stdout, stderr) = memory(&project, &["unpin", "m1"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with("unpinned m1 (system tier)"), "{stdout}");
    let entries = listed(&project);
    assert_eq!(entry(&entries, "m1").unwrap()["pinned"], false);
    assert_eq!(
        entries
            .iter()
            .map(|e| e["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["m1", "m2", "m4"]
    );
}

#[test]
fn an_unknown_id_fails_naming_it_and_the_files() {
    let project = remembering();
    let before = project.read(".opencode/memory/project.json");
    for verb in ["forget", "pin", "unpin"] {
        let (code, stdout, stderr) = memory(&project, &[verb, "m99"]);
        assert_ne!(code, Some(0), "{verb}: {stdout}");
        assert!(stderr.contains("no memory entry \"m99\""), "{stderr}");
        assert!(stderr.contains(".opencode/memory/project.json"), "{stderr}");
        assert!(
            stderr.contains(&format!(".opencode/missions/{MISSION}/memory.json")),
            "{stderr}"
        );
    }
    assert_eq!(project.read(".opencode/memory/project.json"), before);
}

#[test]
fn pinning_past_the_tiers_budget_is_refused() {
    let project = remembering();
    project.write(
        ".opencode/orch.json",
        &json!({"memory": {"budgets": {"project": 40}}}).to_string(),
    );
    let before = project.read(".opencode/memory/project.json");
    let (code, _, stderr) = memory(&project, &["pin", "m3"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("pin m3: pinned entries of the project tier would take"),
        "{stderr}"
    );
    assert!(stderr.contains("of its 40 tokens"), "{stderr}");
    assert_eq!(project.read(".opencode/memory/project.json"), before);
}

#[test]
fn a_corrupt_memory_file_is_named_and_left_as_it_is() {
    let project = remembering();
    project.write(
        ".opencode/memory/project.json",
        "{\"entries\": [{\"id\": 3}]}",
    );
    for args in [&[][..], &["forget", "m2"][..], &["pin", "m2"][..]] {
        let (code, _, stderr) = memory(&project, args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(".opencode/memory/project.json")
                && stderr.contains("expected orch's memory JSON"),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(
        project.read(".opencode/memory/project.json"),
        "{\"entries\": [{\"id\": 3}]}"
    );
}

/// Run a scripted `orch task` or `orch resume` with at most 2 iterations;
/// the mission's id.
fn mission(project: &Project, script: Value, command: &[&str]) -> String {
    project.write("run.json", &script.to_string());
    let (output, stdout, stderr) = run(project
        .scripted()
        .args(["--max-iterations", "2"])
        .args(command));
    let events = events(&stdout);
    let finished = events
        .iter()
        .find(|e| e["type"] == "mission_finished")
        .unwrap_or_else(|| panic!("no mission_finished:\n{stdout}\n{stderr}"));
    // Stopped at the iteration limit: the Commander never finishes a plan.
    assert_eq!(output.status.code(), Some(1), "{finished}\n{stderr}");
    finished["mission"].as_str().unwrap().to_string()
}

fn idle(first: &str) -> Value {
    json!({"agents": {"Commander": [
        {"when": first, "text": "Nothing to do."},
        {"when": "not complete", "text": "Still nothing."},
        {"when": "not complete", "text": "Still nothing."}
    ]}})
}

fn score(project: &Project, id: &str) -> Option<f64> {
    entry(&listed(project), id).map(|e| e["score"].as_f64().unwrap())
}

#[test]
fn a_project_entry_decays_once_per_new_mission_not_per_iteration_or_resume() {
    let project = Project::new();
    let first = mission(
        &project,
        json!({"agents": {"Commander": [
            {"when": "Mission goal", "tool_calls": [call("remember", json!({
                "text": "The HTTP layer is axum", "tier": "project"}))]},
            {"when": "remembered", "text": "Noted."},
            {"when": "not complete", "text": "Still nothing."},
            {"when": "not complete", "text": "Still nothing."}
        ]}}),
        &["task", "Remember the stack"],
    );
    let entries = listed(&project);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let id = entries[0]["id"].as_str().unwrap().to_string();
    // Origin: the agent and the mission; two iterations did not decay it.
    assert_eq!(entries[0]["source"], "Commander");
    assert_eq!(entries[0]["mission"], first.as_str());
    assert_eq!(entries[0]["score"], 1.0);

    // The next mission's start is one step of the Project tier.
    let second = mission(&project, idle("Mission goal"), &["task", "Something else"]);
    assert_ne!(second, first);
    assert!((score(&project, &id).unwrap() - 0.7).abs() < 1e-9);
    // Resuming the same mission is not a new one.
    mission(&project, idle("resumed"), &["resume"]);
    assert!((score(&project, &id).unwrap() - 0.7).abs() < 1e-9);
    // Three missions after it was written and never used: 0.7^3, kept.
    mission(&project, idle("Mission goal"), &["task", "A third goal"]);
    mission(&project, idle("Mission goal"), &["task", "A fourth goal"]);
    assert!((score(&project, &id).unwrap() - 0.343).abs() < 1e-9);
    let (_, stdout, _) = memory(&project, &[]);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&id) && l.contains(" 0.34 ")),
        "{stdout}"
    );
}

#[test]
fn the_user_adds_system_and_project_entries() {
    let project = remembering();
    let (code, stdout, stderr) = memory(
        &project,
        &["add", "Never push to main", "--tier", "system", "--pin"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.starts_with("remembered m5 (system tier, pinned): Never push to main"),
        "{stdout}"
    );
    let (code, stdout, stderr) = memory(&project, &["add", "The CI runs on Debian 12"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.starts_with("remembered m6 (project tier)"),
        "{stdout}"
    );
    let entries = listed(&project);
    let system = entry(&entries, "m5").unwrap();
    assert_eq!(system["tier"], "system");
    assert_eq!(system["pinned"], true);
    assert_eq!(system["source"], "user");
    assert_eq!(entry(&entries, "m6").unwrap()["tier"], "project");
    // What was there stays.
    assert!(entry(&entries, "m2").is_some());
    let (code, _, stderr) = memory(&project, &["add", "x", "--tier", "task"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("expected `project` or `system`"),
        "{stderr}"
    );
    let (code, _, stderr) = memory(&project, &["add", "   "]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("the text is empty"), "{stderr}");
}

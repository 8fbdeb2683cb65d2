//! Agent Skills and custom commands through the real `orch` binary, with a
//! home folder of the test's own (`HOME`, `XDG_CONFIG_HOME`): `orch skills`
//! and `orch commands` listings and exit codes, an untrusted project's
//! skills and commands left out, a mission whose Worker loads a user skill
//! and one of its files from outside the project (the catalog in the
//! Worker's system prompt, not the Commander's), and `orch task /name args`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::support::http::{Recorded, Reply, Server};
use crate::support::project::{Project, events, run};
use crate::support::prompt_cache::Billed;
use crate::support::sim::{Usage, Wire, turn_reply};

/// A home folder for one test: `~/.claude`, `~/.agents` and the config
/// directory (`~/.config`, orch's user folder under it).
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        Home {
            dir: tempfile::tempdir().expect("temp home"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, relative: &str, text: &str) -> PathBuf {
        write(self.path(), relative, text)
    }

    /// `command` with this home and config directory.
    fn apply<'a>(&self, command: &'a mut Command) -> &'a mut Command {
        command
            .env("HOME", self.path())
            .env("XDG_CONFIG_HOME", self.path().join(".config"))
    }
}

fn write(base: &Path, relative: &str, text: &str) -> PathBuf {
    let path = base.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

fn skill(name: &str, description: &str, body: &str) -> String {
    format!("---\nname: {name}\ndescription: {description}\nlicense: MIT\n---\n{body}")
}

#[test]
fn orch_skills_lists_project_and_user_skills_and_exits_1_while_one_is_invalid() {
    let project = Project::trusted();
    let home = Home::new();
    project.write(
        ".claude/skills/pdf-forms/SKILL.md",
        &skill("pdf-forms", "Fill PDF forms.", "Project instructions."),
    );
    home.write(
        ".claude/skills/pdf-forms/SKILL.md",
        &skill("pdf-forms", "The user's PDF forms.", "User instructions."),
    );
    home.write(
        ".agents/skills/zip-files/SKILL.md",
        "---\r\nname: zip-files\r\ndescription: >\r\n  Pack and\r\n  unpack archives.\r\n---\r\nZip.\r\n",
    );
    let bad = home.write(
        ".config/orch/skills/tables/SKILL.md",
        &skill("csv-tables", "Tables.", "x"),
    );
    let (output, stdout, stderr) = run(home.apply(&mut project.orch()).arg("skills"));
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    let pdf = project
        .path()
        .canonicalize()
        .unwrap()
        .join(".claude/skills/pdf-forms");
    assert!(
        stdout.contains(&format!(
            "pdf-forms (project) {}\n  Fill PDF forms.\n",
            pdf.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "zip-files (user) {}\n  Pack and unpack archives.\n",
            home.path().join(".agents/skills/zip-files").display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "not used: skill \"pdf-forms\" in {} is not used",
            home.path().join(".claude/skills/pdf-forms").display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "invalid: {}: name \"csv-tables\" differs from its folder \"tables\"",
            bad.display()
        )),
        "{stdout}"
    );
    // Fixed, the listing exits 0.
    std::fs::remove_file(&bad).unwrap();
    let (output, stdout, stderr) = run(home.apply(&mut project.orch()).args(["--json", "skills"]));
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let listed: Value = serde_json::from_str(stdout.trim()).unwrap();
    let names: Vec<&str> = listed["skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pdf-forms", "zip-files"]);
    assert_eq!(listed["invalid"], json!([]));
}

#[test]
fn an_untrusted_projects_skills_and_commands_are_left_out_with_one_warning() {
    let project = Project::new();
    let home = Home::new();
    project.write(
        ".claude/skills/pdf-forms/SKILL.md",
        &skill("pdf-forms", "Fill PDF forms.", "Project instructions."),
    );
    project.write(".claude/commands/fix-issue.md", "Fix issue $ARGUMENTS.\n");
    home.write(
        ".claude/skills/zip-files/SKILL.md",
        &skill("zip-files", "Archives.", "Zip."),
    );
    let (output, stdout, stderr) = run(home.apply(&mut project.orch()).arg("skills"));
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(!stdout.contains("pdf-forms"), "{stdout}");
    assert!(stdout.contains("zip-files (user)"), "{stdout}");
    assert_eq!(stderr.matches("warning:").count(), 1, "{stderr}");
    assert!(
        stderr
            .contains(".claude/skills are ignored until you trust this project: run `orch trust`"),
        "{stderr}"
    );

    // A run: the one trust warning names the folders; the Worker's tools
    // and catalog hold the user's skill only.
    project.write(
        "run.json",
        &json!({"agents": {"Worker": [{"tool_calls": [{"name": "skill", "arguments": {"name": "pdf-forms"}}]}, {"text": "done"}]}})
            .to_string(),
    );
    let (output, stdout, stderr) = run(home.apply(&mut project.orch()).args([
        "--json",
        "--provider",
        "scripted",
        "--script",
        "run.json",
        "run",
        "Use the pdf-forms skill",
    ]));
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let events = events(&stdout);
    // (Other warnings, such as a sandbox this machine cannot set up, may come too.)
    let warnings: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "warning")
        .map(|e| e["message"].as_str().unwrap())
        .filter(|message| message.contains("trust") || message.contains("skill"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(".claude/skills/") && warnings[0].contains(".claude/commands/"),
        "{warnings:?}"
    );
    assert!(warnings[0].contains("orch trust"), "{warnings:?}");
    let results = project.tool_results();
    assert_eq!(results.len(), 1, "{results:?}");
    assert!(
        results[0].contains("unknown skill \"pdf-forms\"; skills: zip-files"),
        "the project's skill is not loaded: {results:?}"
    );

    // Its command is refused, naming `orch trust`.
    let (output, _, stderr) = run(home.apply(&mut project.orch()).args([
        "--provider",
        "scripted",
        "--script",
        "run.json",
        "task",
        "/fix-issue",
        "12",
    ]));
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "/fix-issue is a command of this project, which is not trusted: run `orch trust`"
        ),
        "{stderr}"
    );
}

/// Plays a mission on the OpenAI wire: the Commander adds one plan item,
/// has a Worker do it (the Worker loads the `pdf-forms` skill, then one of
/// its files) and the Reviewer approve it. Every request is kept.
struct Team {
    requests: Mutex<Vec<Value>>,
    salt: AtomicU64,
}

impl Team {
    fn answer(&self, request: &Recorded) -> Reply {
        let body = &request.body;
        self.requests.lock().unwrap().push(body.clone());
        let tools = tool_names(body);
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        let results = messages.iter().filter(|m| m["role"] == "tool").count();
        let call = |name: &str, args: Value| vec![(name.to_string(), args)];
        let (text, calls) = if tools.iter().any(|t| t == "delegate_task") {
            match results {
                0 => (
                    "",
                    call("add_todo", json!({"id": "T1", "text": "Fill the form"})),
                ),
                1 => (
                    "",
                    call(
                        "delegate_task",
                        json!({"agent": "Worker", "description": "T1", "prompt": "Task T1: fill the form; the pdf-forms skill says how.", "background": false}),
                    ),
                ),
                2 => (
                    "",
                    call(
                        "delegate_task",
                        json!({"agent": "Reviewer", "description": "review T1", "prompt": "Review T1", "background": false}),
                    ),
                ),
                _ => ("The form is filled.", Vec::new()),
            }
        } else if tools.iter().any(|t| t == "sync_issues") {
            match results {
                0 => (
                    "",
                    call("update_todo", json!({"id": "T1", "status": "completed"})),
                ),
                _ => ("Approved.", Vec::new()),
            }
        } else {
            match results {
                0 => ("", call("skill", json!({"name": "pdf-forms"}))),
                1 => (
                    "",
                    call(
                        "skill",
                        json!({"name": "pdf-forms", "file": "reference/fields.md"}),
                    ),
                ),
                _ => ("Filled as the skill says.", Vec::new()),
            }
        };
        let usage = Usage {
            prompt: Billed {
                input: 100,
                cache_read: 0,
                cache_write: 0,
            },
            max_tokens: 4096,
        };
        turn_reply(
            Wire::OpenAi,
            text,
            &calls,
            usage,
            self.salt.fetch_add(1, Ordering::SeqCst),
        )
    }
}

fn tool_names(body: &Value) -> Vec<String> {
    body["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| t["function"]["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn system(body: &Value) -> String {
    body["messages"][0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_loads_a_user_skill_and_its_file_from_outside_the_project() {
    let project = Project::trusted();
    project.write(
        ".opencode/orch.json",
        r#"{"verify": [], "notifications": false}"#,
    );
    project.write(
        ".agents/skills/lint-rules/SKILL.md",
        &skill("lint-rules", "The project's lint rules.", "Run the linter."),
    );
    let home = Home::new();
    home.write(
        ".claude/skills/pdf-forms/SKILL.md",
        &skill(
            "pdf-forms",
            "Fill PDF forms field by field.",
            "# PDF forms\n\nRead reference/fields.md for the field map (SKILL-BODY-4410).\n",
        ),
    );
    let fields = "FIELD-MAP-7731: name -> line 1\n";
    home.write(".claude/skills/pdf-forms/reference/fields.md", fields);
    let team = Arc::new(Team {
        requests: Mutex::default(),
        salt: AtomicU64::new(1),
    });
    let shared = team.clone();
    let server = Server::responding(move |request| shared.answer(request)).await;
    let mut command = project.orch();
    home.apply(&mut command)
        .env("OPENAI_BASE_URL", format!("{}/v1", server.url()))
        .args(["--model", "gpt-4o", "--json", "task", "Fill the form"]);
    let output = tokio::process::Command::from(command)
        .output()
        .await
        .expect("run orch");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let requests = team.requests.lock().unwrap().clone();
    let of = |tool: &str| -> Vec<&Value> {
        requests
            .iter()
            .filter(|body| tool_names(body).iter().any(|t| t == tool))
            .collect()
    };
    let commander = of("delegate_task");
    let workers: Vec<&Value> = of("write");
    let reviewer = of("sync_issues");
    assert!(!commander.is_empty() && !reviewer.is_empty());
    assert_eq!(workers.len(), 3, "the Worker's three turns");

    // The catalog: in the Worker's and the Reviewer's system prompts, the
    // same bytes on every request; not in the Commander's, which has no
    // `skill` tool either.
    let catalog = system(workers[0]);
    assert!(catalog.contains("## Skills"), "{catalog}");
    assert!(
        catalog.contains("- lint-rules: The project's lint rules.\n"),
        "{catalog}"
    );
    assert!(
        catalog.contains("- pdf-forms: Fill PDF forms field by field.\n"),
        "{catalog}"
    );
    assert!(
        !catalog.contains("SKILL-BODY-4410"),
        "only names and descriptions"
    );
    for body in &workers {
        assert_eq!(system(body), catalog);
        assert!(tool_names(body).contains(&"skill".to_string()));
    }
    assert!(system(reviewer[0]).contains("- pdf-forms: Fill PDF forms field by field.\n"));
    for body in &commander {
        assert!(!system(body).contains("## Skills"), "{}", system(body));
        assert!(!tool_names(body).contains(&"skill".to_string()));
    }

    // What the tool returned reached the model: the instructions with the
    // folder (outside the project) and the file list, then the file.
    let last_tool = |body: &Value| -> String {
        body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|m| m["role"] == "tool")
            .map(|m| m["content"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    let loaded = last_tool(workers[1]);
    let folder = home.path().join(".claude/skills/pdf-forms");
    assert!(loaded.contains("SKILL-BODY-4410"), "{loaded}");
    assert!(loaded.contains(&folder.display().to_string()), "{loaded}");
    assert!(
        loaded.contains(&format!("- reference/fields.md ({} bytes)", fields.len())),
        "{loaded}"
    );
    assert!(!project.path().join(".claude").exists());
    assert_eq!(last_tool(workers[2]), fields);
}

#[test]
fn a_command_expands_into_the_missions_goal() {
    let project = Project::trusted();
    let home = Home::new();
    project.write(
        ".claude/commands/fix-issue.md",
        "---\ndescription: Fix a GitHub issue\nargument-hint: <number>\n---\nFix issue #$ARGUMENTS and add a test.\n",
    );
    home.write(
        ".config/orch/commands/frontend/build.md",
        "Build the frontend for $1.\n",
    );
    project.write(
        "run.json",
        &json!({"agents": {"Commander": [{"text": "ok"}, {"text": "ok"}, {"text": "ok"}]}})
            .to_string(),
    );
    let scripted = [
        "--json",
        "--provider",
        "scripted",
        "--script",
        "run.json",
        "--max-iterations",
        "1",
    ];
    let (output, stdout, stderr) =
        run(home
            .apply(&mut project.orch())
            .args(scripted)
            .args(["task", "/fix-issue", "123"]));
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let events = events(&stdout);
    let started = events
        .iter()
        .find(|e| e["type"] == "mission_started")
        .expect("mission_started");
    assert_eq!(started["goal"], "Fix issue #123 and add a test.");
    assert!(
        project
            .read(".opencode/todo.md")
            .starts_with("# Mission: Fix issue #123 and add a test.\n")
    );

    // A user command, namespaced by its folder; the quoted form works too.
    let (_, stdout, stderr) = run(home
        .apply(&mut project.orch())
        .args(scripted)
        .args(["task", "/frontend:build staging"]));
    let events = crate::support::project::events(&stdout);
    let started = events
        .iter()
        .find(|e| e["type"] == "mission_started")
        .unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(started["goal"], "Build the frontend for staging.");

    // An unknown command is a usage error listing the known ones; a path
    // is a goal, not a command; stray words after a goal are refused.
    let (output, _, stderr) =
        run(home
            .apply(&mut project.orch())
            .args(scripted)
            .args(["task", "/fix-isue", "1"]));
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("unknown command /fix-isue; commands: /fix-issue, /frontend:build"),
        "{stderr}"
    );
    let (output, _, stderr) = run(home
        .apply(&mut project.orch())
        .args(scripted)
        .args(["task", "fix", "the", "parser"]));
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("unexpected words after the goal: the parser"),
        "{stderr}"
    );
    let (_, stdout, _) = run(home
        .apply(&mut project.orch())
        .args(scripted)
        .args(["task", "/tmp/notes.txt is out of date"]));
    let events = crate::support::project::events(&stdout);
    let started = events.iter().find(|e| e["type"] == "mission_started");
    assert_eq!(started.unwrap()["goal"], "/tmp/notes.txt is out of date");
}

#[test]
fn orch_commands_lists_every_command_and_exits_1_while_one_is_invalid() {
    let project = Project::trusted();
    let home = Home::new();
    project.write(
        ".opencode/commands/fix-issue.md",
        "---\ndescription: Fix a GitHub issue\nargument-hint: <number>\nmodel: gpt-4o\n---\nFix issue #$ARGUMENTS.\n",
    );
    let build = home.write(".claude/commands/frontend/build.md", "Build.\n");
    let broken = home.write(
        ".config/orch/commands/broken.md",
        "---\ndescription: never closed\nBody\n",
    );
    let (output, stdout, stderr) = run(home.apply(&mut project.orch()).arg("commands"));
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    let root = project.path().canonicalize().unwrap();
    assert!(
        stdout.contains(&format!(
            "/fix-issue <number> (project): Fix a GitHub issue [model gpt-4o]\n  {}\n",
            root.join(".opencode/commands/fix-issue.md").display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("/frontend:build (user)\n  {}\n", build.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "invalid: {}: frontmatter not closed",
            broken.display()
        )),
        "{stdout}"
    );
    std::fs::remove_file(&broken).unwrap();
    let (output, stdout, _) = run(home.apply(&mut project.orch()).arg("commands"));
    assert_eq!(output.status.code(), Some(0), "{stdout}");
}

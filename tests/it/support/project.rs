//! Temporary projects and the real `orch` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// A project directory with its own (empty) user config dir, so nothing from
/// the machine running the tests leaks in.
pub struct Project {
    pub dir: tempfile::TempDir,
    config_home: tempfile::TempDir,
    /// Runs pass `ORCH_TRUST_PROJECT=1`: the fixture's own settings apply.
    trusted: bool,
}

impl Project {
    /// A project nobody trusts yet: its own settings are ignored, as a
    /// freshly cloned repository's are.
    pub fn new() -> Project {
        Project {
            dir: tempfile::tempdir().expect("temp project"),
            config_home: tempfile::tempdir().expect("temp config home"),
            trusted: false,
        }
    }

    /// A project whose fixture the test trusts: its `orch.json`, agents,
    /// prompts and plugins apply (as after `orch trust`).
    pub fn trusted() -> Project {
        Project {
            trusted: true,
            ..Project::new()
        }
    }

    /// The compiled-plugin cache `orch` uses for this project's runs
    /// (`$XDG_CACHE_HOME/orch/plugins`, a temporary directory).
    pub fn code_cache_dir(&self) -> PathBuf {
        self.config_home.path().join("cache/orch/plugins")
    }

    pub fn code_cache(&self) -> orch::plugins::CodeCache {
        orch::plugins::CodeCache::open(&self.code_cache_dir()).expect("code cache")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub fn write(&self, relative: &str, text: &str) -> &Project {
        let path = self.file(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent dirs");
        }
        std::fs::write(path, text).expect("write project file");
        self
    }

    /// The tool results of the project's (only) session transcript, in order.
    pub fn tool_results(&self) -> Vec<String> {
        let dir = self.file(".opencode/sessions");
        let entry = std::fs::read_dir(dir).unwrap().next().unwrap().unwrap();
        std::fs::read_to_string(entry.path())
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .filter(|line| line["message"]["role"] == "tool")
            .map(|line| line["message"]["content"].as_str().unwrap().to_string())
            .collect()
    }

    pub fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.file(relative))
            .unwrap_or_else(|err| panic!("read {relative}: {err}"))
    }

    /// The user-level config file (`$XDG_CONFIG_HOME/orch/orch.json`).
    pub fn write_user_config(&self, text: &str) {
        let dir = self.config_home.path().join("orch");
        std::fs::create_dir_all(&dir).expect("user config dir");
        std::fs::write(dir.join("orch.json"), text).expect("user config");
    }

    /// [`orch`](Self::orch) with `--json` on the scripted provider, its
    /// replies read from the project's `run.json`.
    pub fn scripted(&self) -> Command {
        let mut command = self.orch();
        command.args(["--json", "--provider", "scripted", "--script", "run.json"]);
        command
    }

    /// `orch -C <project>` with a clean, headless environment.
    pub fn orch(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_orch"));
        command
            .arg("-C")
            .arg(self.path())
            .current_dir(self.path())
            .env("XDG_CONFIG_HOME", self.config_home.path())
            .env("XDG_CACHE_HOME", self.config_home.path().join("cache"))
            .env("CI", "1")
            .env("NO_COLOR", "1");
        if self.trusted {
            command.env("ORCH_TRUST_PROJECT", "1");
        } else {
            command.env_remove("ORCH_TRUST_PROJECT");
        }
        for var in [
            "OPENAI_API_KEY",
            "OPENAI_BASE_URL",
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_BASE_URL",
            "ORCH_PROVIDER",
            "ORCH_MODEL",
        ] {
            command.env_remove(var);
        }
        command
    }
}

/// Run and capture; stdout/stderr as text.
pub fn run(command: &mut Command) -> (Output, String, String) {
    let output = command.output().expect("run orch");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

/// One scripted tool call, as the scripted provider's replies list them.
pub fn call(name: &str, arguments: Value) -> Value {
    serde_json::json!({"name": name, "arguments": arguments})
}

/// Parse JSONL stdout; every line must be a JSON object.
pub fn events(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|err| panic!("not a JSON line ({err}): {line}"))
        })
        .collect()
}

/// The `type` of each event, in order.
pub fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("?").to_string())
        .collect()
}

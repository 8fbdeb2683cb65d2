//! Custom commands: prompt templates run as `orch task /name args…` (or
//! `orch run`/`orch plan`), as Claude Code and OpenCode users write them.
//!
//! A command is a Markdown file under `.opencode/commands/` or
//! `.claude/commands/` (the project's, only when it is trusted), or the
//! user's `<config dir>/orch/commands/` and `~/.claude/commands/`. Its name
//! is its path without `.md`, folders joined with `:` (`frontend/build.md`
//! is `/frontend:build`). Optional frontmatter: `description`,
//! `argument-hint`, `model`. The body is the prompt, with `$ARGUMENTS` and
//! `$1`…`$9` replaced by the arguments.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::skills::frontmatter;
use crate::skills::{Problem, Scope, Sources};

/// Project command folders, relative to the root, in precedence order.
pub const PROJECT_DIRS: &[&str] = crate::config::trust::COMMAND_DIRS;
/// Largest command file read.
const FILE_MAX: u64 = 256 * 1024;
/// Deepest folder nesting read under a commands folder.
const MAX_DEPTH: usize = 4;

/// One custom command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Without the leading `/`: `fix-issue`, `frontend:build`.
    pub name: String,
    pub scope: Scope,
    pub file: PathBuf,
    pub description: Option<String>,
    pub argument_hint: Option<String>,
    /// The model the mission uses when the command runs.
    pub model: Option<String>,
    /// The prompt template.
    pub body: String,
}

/// What a scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commands {
    /// Sorted by name, one per name (the project's over the user's).
    pub commands: Vec<Command>,
    pub problems: Vec<Problem>,
    /// `(hidden command, the file used instead)`.
    pub shadowed: Vec<(Command, PathBuf)>,
    /// Project command folders left unread: the project is not trusted.
    pub ignored: Vec<PathBuf>,
}

/// Where commands are looked for: the project's folders (only when
/// `trusted`), then `<config dir>/orch/commands` and `~/.claude/commands`.
fn sources(root: &Path, trusted: bool) -> Sources {
    Sources::folders(
        root,
        trusted,
        PROJECT_DIRS,
        "commands",
        &[".claude/commands"],
    )
}

/// The commands in `sources`, the first found of each name winning.
fn scan_in(sources: &Sources) -> Commands {
    let mut found = Commands {
        ignored: sources.ignored.clone(),
        ..Commands::default()
    };
    let mut by_name: BTreeMap<String, Command> = BTreeMap::new();
    for (dir, scope) in sources.scoped() {
        let mut files = Vec::new();
        markdown_files(dir, 0, &mut files);
        files.sort();
        for file in files {
            match read_command(dir, &file, scope) {
                Ok(command) => match by_name.get(&command.name) {
                    Some(first) => found.shadowed.push((command, first.file.clone())),
                    None => {
                        by_name.insert(command.name.clone(), command);
                    }
                },
                Err(reason) => found.problems.push(Problem {
                    kind: "command",
                    file,
                    reason,
                }),
            }
        }
    }
    found.commands = by_name.into_values().collect();
    found
}

/// The commands of the project at `root` (its own only when `trusted`)
/// and of the user.
pub fn scan(root: &Path, trusted: bool) -> Commands {
    scan_in(&sources(root, trusted))
}

/// Every `.md` file under `dir`, links not followed.
fn markdown_files(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if kind.is_dir() && depth < MAX_DEPTH {
            markdown_files(&path, depth + 1, out);
        } else if kind.is_file() && path.extension().is_some_and(|ext| ext == "md") {
            out.push(path);
        }
    }
}

fn read_command(dir: &Path, file: &Path, scope: Scope) -> Result<Command, String> {
    let relative = file.strip_prefix(dir).unwrap_or(file).with_extension("");
    let name = relative
        .components()
        .map(|part| part.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join(":");
    if !is_name(&name) {
        return Err(format!(
            "name \"{name}\" (from its path) cannot be typed as a command: expected lowercase letters, digits, `_`, `-` and `:` between folders"
        ));
    }
    let size = std::fs::metadata(file)
        .map_err(|err| format!("cannot read: {err}"))?
        .len();
    if size > FILE_MAX {
        return Err(format!(
            "{size} bytes, more than the {FILE_MAX} a command file may have"
        ));
    }
    let text = std::fs::read_to_string(file).map_err(|err| format!("cannot read: {err}"))?;
    let document = frontmatter::parse(&text, false)?;
    let field = |key: &str| {
        document
            .fields
            .get(key)
            .map(|value| value.trim().to_string())
            .filter(|value| !value.is_empty())
    };
    let body = document.body.trim().to_string();
    if body.is_empty() {
        return Err("the prompt (the file's body) is empty".into());
    }
    Ok(Command {
        name,
        scope,
        file: file.to_path_buf(),
        description: field("description"),
        argument_hint: field("argument-hint"),
        model: field("model"),
        body,
    })
}

/// A command name as typed after `/`: `[a-z0-9][a-z0-9:_-]*`.
pub fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ":_-".contains(c))
}

/// The command a goal invokes: its first word when that is `/name` with a
/// command name (so `/tmp/notes.txt` is a goal, not a command).
pub fn invoked(goal: &str) -> Option<&str> {
    goal.split_whitespace()
        .next()?
        .strip_prefix('/')
        .filter(|name| is_name(name))
}

impl Commands {
    pub fn find(&self, name: &str) -> Option<&Command> {
        self.commands.iter().find(|command| command.name == name)
    }

    /// Invalid and shadowed command files, as warnings.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings: Vec<String> = self.problems.iter().map(Problem::to_string).collect();
        warnings.extend(self.shadowed.iter().map(|(command, by)| {
            format!(
                "command /{} in {} is not used: {} has the same name",
                command.name,
                command.file.display(),
                by.display()
            )
        }));
        warnings
    }

    /// `/a, /b, …`, or words saying there are none.
    pub fn known(&self) -> String {
        if self.commands.is_empty() {
            return "no commands are defined (see `orch commands`)".into();
        }
        let names: Vec<String> = self
            .commands
            .iter()
            .map(|command| format!("/{}", command.name))
            .collect();
        format!("commands: {}", names.join(", "))
    }
}

/// `body` with `$ARGUMENTS` replaced by all `args` (joined by spaces) and
/// `$1`…`$9` by each one (empty when not given). A body with neither
/// gets the arguments, when there are any, as a last line `Arguments: …`
/// (as Claude Code appends them), so they are never lost.
pub fn expand(body: &str, args: &[String]) -> String {
    let all = args.join(" ");
    let mut out = String::with_capacity(body.len() + all.len());
    let mut rest = body;
    let mut placed = false;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix("ARGUMENTS") {
            out.push_str(&all);
            placed = true;
            rest = tail;
        } else if let Some(digit) = after.chars().next().filter(|c| ('1'..='9').contains(c)) {
            let index = digit as usize - '1' as usize;
            out.push_str(args.get(index).map_or("", String::as_str));
            placed = true;
            rest = &after[1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    if !placed && !args.is_empty() {
        out.push_str(&format!("\n\nArguments: {all}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|arg| arg.to_string()).collect()
    }

    #[test]
    fn arguments_are_substituted() {
        assert_eq!(
            expand("Fix issue #$ARGUMENTS now.", &args(&["123", "fast"])),
            "Fix issue #123 fast now."
        );
        assert_eq!(
            expand(
                "Review PR $1 with priority $2; $3.",
                &args(&["456", "high"])
            ),
            "Review PR 456 with priority high; ."
        );
        assert_eq!(expand("Costs $5 and $x; $", &[]), "Costs  and $x; $");
        assert_eq!(expand("Tidy up.", &[]), "Tidy up.");
        assert_eq!(
            expand("Tidy up.", &args(&["src/"])),
            "Tidy up.\n\nArguments: src/"
        );
        assert_eq!(expand("$ARGUMENTS$ARGUMENTS", &args(&["a"])), "aa");
    }

    #[test]
    fn only_a_command_name_is_an_invocation() {
        assert_eq!(invoked("/fix-issue 123"), Some("fix-issue"));
        assert_eq!(invoked("  /frontend:build"), Some("frontend:build"));
        assert_eq!(invoked("/tmp/notes.txt is wrong"), None);
        assert_eq!(invoked("/Fix"), None);
        assert_eq!(invoked("fix /this"), None);
        assert_eq!(invoked("/"), None);
        assert_eq!(invoked(""), None);
    }

    #[test]
    fn folders_namespace_names_and_frontmatter_is_optional() {
        let dir = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str| {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write("project/frontend/build.md", "Build the frontend.\n");
        write(
            "project/fix-issue.md",
            "---\ndescription: Fix an issue\nargument-hint: <number>\nmodel: big-model\n---\nFix #$ARGUMENTS\n",
        );
        write("user/fix-issue.md", "Mine.\n");
        write("user/Upper.md", "x");
        write("user/empty.md", "---\ndescription: d\n---\n\n");
        write("user/notes.txt", "not a command");
        let found = scan_in(&Sources {
            project: vec![dir.path().join("project")],
            user: vec![dir.path().join("user")],
            ignored: Vec::new(),
        });
        let names: Vec<&str> = found.commands.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["fix-issue", "frontend:build"]);
        let fix = found.find("fix-issue").unwrap();
        assert_eq!(fix.scope, Scope::Project);
        assert_eq!(fix.description.as_deref(), Some("Fix an issue"));
        assert_eq!(fix.argument_hint.as_deref(), Some("<number>"));
        assert_eq!(fix.model.as_deref(), Some("big-model"));
        assert_eq!(fix.body, "Fix #$ARGUMENTS");
        assert_eq!(found.find("frontend:build").unwrap().description, None);
        assert_eq!(found.shadowed.len(), 1);
        let reasons: Vec<String> = found.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(reasons[0].contains("Upper.md") && reasons[0].contains("cannot be typed"));
        assert!(reasons[1].contains("empty.md") && reasons[1].contains("is empty"));
        assert_eq!(found.known(), "commands: /fix-issue, /frontend:build");
    }
}

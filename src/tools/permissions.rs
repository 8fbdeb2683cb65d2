//! Permissions: whether a tool call may run (allow / ask / deny), and asking
//! the person at the terminal when a rule says `ask`.
//!
//! `decide` applies, in order: the built-in deny list of destructive shell
//! commands (no configuration can allow those), the configured `bash`
//! command patterns (last match wins), the per-tool rule, and finally the
//! default, allow. `ask` prompts on the controlling terminal one request at a
//! time; without a terminal (`--json`, no TTY, CI) it never waits and
//! denies, telling the model why.

use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, Write};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::Semaphore;

use super::ToolContext;
use crate::config::{Action, PermissionConfig};
use crate::events::{ApprovedBy, Event, EventBus};

/// What the router does with a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Ask first; the text describes the call for the person asked.
    Ask(String),
    /// Refuse; the text is the reason, for the model.
    Deny(String),
}

/// One approval request as a prompter shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRequest {
    pub session: String,
    pub tool: String,
    pub detail: String,
}

/// Asks a person whether a call may run. `confirm` may block (it runs on the
/// blocking pool), and is never called twice at once.
pub trait Prompter: Send + Sync {
    fn confirm(&self, request: &ApprovalRequest) -> io::Result<bool>;
}

/// Prompts on the controlling terminal (`/dev/tty`), so it works even when
/// stdout is piped.
pub struct TerminalPrompter;

impl Prompter for TerminalPrompter {
    fn confirm(&self, request: &ApprovalRequest) -> io::Result<bool> {
        let mut tty = OpenOptions::new().read(true).write(true).open("/dev/tty")?;
        write!(
            tty,
            "\n[orch] session {} wants to run {}:\n  {}\nallow? [y/N] ",
            printable(&request.session),
            printable(&request.tool),
            printable(&request.detail).replace('\n', "\n  ")
        )?;
        tty.flush()?;
        let mut answer = String::new();
        BufReader::new(&tty).read_line(&mut answer)?;
        let answer = answer.trim().to_ascii_lowercase();
        Ok(answer == "y" || answer == "yes")
    }
}

/// Text from the model with control characters escaped, so it cannot move
/// the cursor or restyle the terminal it is shown on.
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

pub struct Permissions {
    rules: PermissionConfig,
    interactive: bool,
    prompter: Arc<dyn Prompter>,
    /// One prompt on the terminal at a time.
    one_prompt: Arc<Semaphore>,
}

impl Permissions {
    /// Rules from the configuration; `interactive` says whether a person
    /// can be asked on a terminal.
    pub fn new(rules: PermissionConfig, interactive: bool) -> Arc<Self> {
        Self::with_prompter(rules, interactive, Arc::new(TerminalPrompter))
    }

    /// `new` with another way of asking (the TUI, or a test's fixed answer).
    pub fn with_prompter(
        rules: PermissionConfig,
        interactive: bool,
        prompter: Arc<dyn Prompter>,
    ) -> Arc<Self> {
        Arc::new(Permissions {
            rules,
            interactive,
            prompter,
            one_prompt: Arc::new(Semaphore::new(1)),
        })
    }

    /// The decision for one call. The built-in deny list applies to the
    /// `command` argument of any tool (`bash`, and shell-running tools such
    /// as `run_background`); the command patterns apply to `bash`.
    pub fn decide(&self, tool: &str, args: &Value) -> Decision {
        let command = args.get("command").and_then(Value::as_str);
        if let Some(why) = command.and_then(destructive) {
            return Decision::Deny(format!(
                "command refused: it {why}; orch never runs commands on its built-in list of destructive commands, whatever the configuration says"
            ));
        }
        // `run_background` runs shell commands too: bash's rules apply to it.
        let shell = tool == "bash" || tool == "run_background";
        if let (Some(command), true) = (command, shell) {
            let command = squash_spaces(command);
            let rule = self
                .rules
                .bash
                .iter()
                .rev()
                .find(|(pattern, _)| wildcard_match(&squash_spaces(pattern), &command));
            if let Some((pattern, action)) = rule {
                let source = format!("the bash rule {pattern:?}");
                return apply(*action, tool, args, &source);
            }
        }
        let rule = self
            .rules
            .tools
            .get(tool)
            .map(|action| (tool, action))
            .or_else(|| {
                (tool == "run_background")
                    .then(|| self.rules.tools.get("bash").map(|action| ("bash", action)))
                    .flatten()
            });
        match rule {
            Some((name, action)) => apply(*action, tool, args, &format!("the rule for {name:?}")),
            None => Decision::Allow,
        }
    }

    pub async fn ask(
        &self,
        events: &EventBus,
        ctx: &ToolContext,
        tool: &str,
        detail: &str,
    ) -> Result<(), String> {
        events.emit(Event::ApprovalRequested {
            session: ctx.session.clone(),
            call_id: ctx.call_id.clone(),
            tool: tool.to_string(),
            detail: detail.to_string(),
        });
        let resolved = |approved, by| Event::ApprovalResolved {
            session: ctx.session.clone(),
            call_id: ctx.call_id.clone(),
            approved,
            by,
        };
        if !self.interactive {
            events.emit(resolved(false, ApprovedBy::Headless));
            return Err(format!(
                "{tool:?} needs approval (rule: ask) but orch is running without a terminal (--json, no TTY or CI), so it was denied; try another approach"
            ));
        }

        if ctx.cancel.is_cancelled() {
            return Err("cancelled while waiting for approval".into());
        }
        let request = ApprovalRequest {
            session: ctx.session.clone(),
            tool: tool.to_string(),
            detail: detail.to_string(),
        };
        let prompter = self.prompter.clone();
        let one_prompt = self.one_prompt.clone();
        // The permit travels into the blocking call, so a prompt abandoned
        // by cancellation still blocks the next one until it is answered.
        let answer = async move {
            let permit = one_prompt
                .acquire_owned()
                .await
                .map_err(|_| io::Error::other("the approval prompt was shut down"))?;
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                prompter.confirm(&request)
            })
            .await
            .map_err(io::Error::other)?
        };
        let answer = tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => {
                return Err("cancelled while waiting for approval".into());
            }
            answer = answer => answer,
        };
        match answer {
            Ok(true) => {
                events.emit(resolved(true, ApprovedBy::User));
                Ok(())
            }
            Ok(false) => {
                events.emit(resolved(false, ApprovedBy::User));
                Err(format!(
                    "the user denied this {tool:?} call; try another approach, or explain why it is needed"
                ))
            }
            Err(err) => {
                events.emit(resolved(false, ApprovedBy::Headless));
                Err(format!(
                    "{tool:?} needs approval (rule: ask) but the terminal could not be used ({err}), so it was denied; try another approach"
                ))
            }
        }
    }
}

/// The decision for `action`, found by `source`.
fn apply(action: Action, tool: &str, args: &Value, source: &str) -> Decision {
    match action {
        Action::Allow => Decision::Allow,
        Action::Ask => Decision::Ask(describe(tool, args)),
        Action::Deny => Decision::Deny(format!(
            "{tool:?} is not allowed here ({source} says deny); try another approach"
        )),
    }
}

/// A call as the person approving it reads it: a bash command as written,
/// other tools as their JSON arguments with long strings shortened.
fn describe(tool: &str, args: &Value) -> String {
    const LONG: usize = 120;
    if tool == "bash"
        && let Some(command) = args.get("command").and_then(Value::as_str)
    {
        return command.to_string();
    }
    let Value::Object(fields) = args else {
        return args.to_string();
    };
    let shortened: serde_json::Map<String, Value> = fields
        .iter()
        .map(|(key, value)| {
            let value = match value {
                Value::String(text) if text.chars().count() > LONG => {
                    let head: String = text.chars().take(LONG).collect();
                    Value::String(format!("{head}… ({} chars)", text.chars().count()))
                }
                other => other.clone(),
            };
            (key.clone(), value)
        })
        .collect();
    Value::Object(shortened).to_string()
}

/// Runs of whitespace as one space, trimmed: how commands and patterns are
/// compared, so `git  push` matches `git push*`.
fn squash_spaces(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whole-text match where `*` stands for any run of characters.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (pattern.as_bytes(), text.as_bytes());
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and the text position it currently covers to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&byte| byte == b'*')
}

/// Why `command` is on the built-in deny list, as the end of a sentence
/// ("it {why}"), or `None` if it is not.
///
/// The check reads the command the way a shell would split it: chained
/// commands (`;`, `&&`, `|`, subshells) separately, quotes removed, wrappers
/// such as `sudo` or `env` skipped, flags in any order. It is a guard
/// against obvious disasters, not a sandbox.
pub fn destructive(command: &str) -> Option<&'static str> {
    if is_fork_bomb(command) {
        return Some("is a fork bomb");
    }
    if redirects_to_disk(command) {
        return Some("writes straight to a disk device");
    }
    for words in simple_commands(command) {
        let Some((program, args)) = program_and_args(&words) else {
            continue;
        };
        let flags_say = |recursive_letters: &[char]| {
            has_flag(args, recursive_letters, "--recursive") && operands(args).any(is_critical_path)
        };
        match program {
            "rm" if flags_say(&['r', 'R']) => {
                return Some(
                    "recursively deletes the filesystem root, a system directory or the home directory",
                );
            }
            "chmod" | "chown" | "chgrp" if flags_say(&['R']) => {
                return Some(
                    "recursively changes ownership or permissions of the filesystem root, a system directory or the home directory",
                );
            }
            "dd" if args
                .iter()
                .any(|arg| arg.strip_prefix("of=").is_some_and(is_disk_device)) =>
            {
                return Some("writes straight to a disk device");
            }
            "tee" | "shred" if operands(args).any(is_disk_device) => {
                return Some("writes straight to a disk device");
            }
            _ if program.starts_with("mkfs") || program == "mke2fs" => {
                return Some("formats a filesystem");
            }
            _ => {}
        }
    }
    None
}

/// Split a command line into simple commands, each a list of words with
/// quotes and escapes removed. An approximation of shell grammar: enough to
/// see through spacing, quoting and chaining.
fn simple_commands(line: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    let mut quote: Option<char> = None;

    fn end_word(word: &mut String, in_word: &mut bool, words: &mut Vec<String>) {
        if *in_word {
            words.push(std::mem::take(word));
            *in_word = false;
        }
    }

    while let Some(c) = chars.next() {
        match quote {
            Some('\'') => {
                if c == '\'' {
                    quote = None;
                } else {
                    word.push(c);
                }
            }
            Some(_) => match c {
                '"' => quote = None,
                '\\' => {
                    if let Some(next) = chars.next() {
                        word.push(next);
                    }
                }
                _ => word.push(c),
            },
            None => match c {
                '\'' | '"' => {
                    quote = Some(c);
                    in_word = true;
                }
                '\\' => {
                    if let Some(next) = chars.next()
                        && next != '\n'
                    {
                        word.push(next);
                    }
                    in_word = true;
                }
                '$' if chars.peek() == Some(&'{') => {
                    // `${HOME}` stays one word; other braces split commands.
                    word.push(c);
                    for inner in chars.by_ref() {
                        word.push(inner);
                        if inner == '}' {
                            break;
                        }
                    }
                    in_word = true;
                }
                ';' | '&' | '|' | '\n' | '(' | ')' | '`' | '{' | '}' => {
                    end_word(&mut word, &mut in_word, &mut words);
                    if !words.is_empty() {
                        commands.push(std::mem::take(&mut words));
                    }
                }
                '<' | '>' => end_word(&mut word, &mut in_word, &mut words),
                c if c.is_whitespace() => end_word(&mut word, &mut in_word, &mut words),
                c => {
                    word.push(c);
                    in_word = true;
                }
            },
        }
    }
    end_word(&mut word, &mut in_word, &mut words);
    if !words.is_empty() {
        commands.push(words);
    }
    commands
}

/// The program a simple command runs (its base name) and its arguments,
/// looking through variable assignments and wrappers like `sudo`, `env`,
/// `nice` or `timeout`.
fn program_and_args(words: &[String]) -> Option<(&str, &[String])> {
    let mut at = 0;
    loop {
        let word = words.get(at)?;
        let name = word.rsplit('/').next().unwrap_or(word);
        let takes_value: &[&str] = match name {
            _ if is_assignment(word) => {
                at += 1;
                continue;
            }
            "sudo" | "doas" => &["-u", "-g", "-C", "-h", "-p", "-U", "-r", "-t", "-D", "-R"],
            "env" => &["-u", "-C", "-S"],
            "nice" | "ionice" => &["-n", "-c"],
            "timeout" => &["-s", "-k", "--signal", "--kill-after"],
            "command" | "builtin" | "exec" | "nohup" | "time" | "stdbuf" | "xargs" | "!" => &[],
            "busybox" => &[],
            _ => return Some((name, &words[at + 1..])),
        };
        let wrapper = name;
        at += 1;
        while let Some(word) = words.get(at) {
            if word.starts_with('-') {
                at += if takes_value.contains(&word.as_str()) {
                    2
                } else {
                    1
                };
            } else if (wrapper == "env" || wrapper == "sudo") && is_assignment(word) {
                at += 1;
            } else if wrapper == "timeout" && word.starts_with(|c: char| c.is_ascii_digit()) {
                // The duration: what follows is the command.
                at += 1;
                break;
            } else {
                break;
            }
        }
    }
}

fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit())
        }
        None => false,
    }
}

/// Whether `args` carry a short flag containing one of `letters` (`-rf`,
/// `-R`) or the long form `long`, before any `--`.
fn has_flag(args: &[String], letters: &[char], long: &str) -> bool {
    args.iter()
        .take_while(|arg| arg.as_str() != "--")
        .any(|arg| {
            arg == long
                || (arg.starts_with('-')
                    && !arg.starts_with("--")
                    && arg.chars().skip(1).any(|c| letters.contains(&c)))
        })
}

/// The arguments that are not flags (everything after `--` counts).
fn operands(args: &[String]) -> impl Iterator<Item = &str> {
    let mut after_dashes = false;
    args.iter().filter_map(move |arg| {
        if after_dashes {
            return Some(arg.as_str());
        }
        if arg == "--" {
            after_dashes = true;
            return None;
        }
        (!arg.starts_with('-') || arg == "-").then_some(arg.as_str())
    })
}

/// Top-level directories whose recursive removal wrecks a system.
const SYSTEM_DIRS: &[&str] = &[
    "bin",
    "boot",
    "dev",
    "etc",
    "home",
    "lib",
    "lib32",
    "lib64",
    "opt",
    "proc",
    "root",
    "sbin",
    "srv",
    "sys",
    "usr",
    "var",
    "Users",
    "System",
    "Library",
    "Applications",
    "private",
];

/// Whether `target` names the filesystem root, a top-level system directory
/// or the home directory (or everything in one of them, `/*`).
fn is_critical_path(target: &str) -> bool {
    let mut path = target.trim().to_string();
    for home in ["${HOME}", "$HOME"] {
        if let Some(rest) = path.strip_prefix(home) {
            path = format!("~{rest}");
        }
    }
    let home = path == "~" || path.starts_with("~/");
    if !home && !path.starts_with('/') {
        return false;
    }
    // Lexically normalize: `//`, `/.`, `/..`, and a trailing `/*` (which
    // deletes everything in the directory) all reduce to the directory.
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/').skip(1) {
        match part {
            "" | "." | "*" => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    if home {
        return parts.is_empty();
    }
    match parts.as_slice() {
        [] => true,
        [dir] => SYSTEM_DIRS.contains(dir),
        _ => false,
    }
}

/// Whether `path` is a whole-disk block device (`/dev/sda`, `/dev/nvme0n1`).
fn is_disk_device(path: &str) -> bool {
    const DISKS: &[&str] = &["sd", "nvme", "vd", "hd", "xvd", "mmcblk", "disk"];
    path.trim_matches(|c| c == '"' || c == '\'')
        .strip_prefix("/dev/")
        .is_some_and(|device| DISKS.iter().any(|disk| device.starts_with(disk)))
}

/// A redirection (`>`, `>>`, `2>`, `&>`, `>|`) onto a disk device.
fn redirects_to_disk(command: &str) -> bool {
    command.match_indices('>').any(|(at, _)| {
        let rest = command[at + 1..].trim_start_matches(['>', '|', '&']);
        is_disk_device(rest.split_whitespace().next().unwrap_or(""))
    })
}

/// `name(){ name|name& };name` in any spacing, for any function name.
fn is_fork_bomb(command: &str) -> bool {
    let squashed: String = command.chars().filter(|c| !c.is_whitespace()).collect();
    squashed.match_indices("(){").any(|(at, _)| {
        let name_start = squashed[..at]
            .rfind(|c: char| !(c.is_alphanumeric() || "_:.-".contains(c)))
            .map_or(0, |boundary| boundary + 1);
        let name = &squashed[name_start..at];
        if name.is_empty() {
            return false;
        }
        let body = &squashed[at + 3..];
        body.starts_with(&format!("{name}|{name}&}};{name}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[test]
    fn deny_list_blocks_obvious_disasters() {
        let blocked = [
            "rm -rf /",
            "rm -rf /*",
            "rm -rf ~",
            "rm -rf ~/",
            "rm -rf $HOME",
            "rm -rf \"$HOME\"",
            "rm -rf ${HOME}/*",
            "rm -fr /",
            "rm -r -f /",
            "rm  -rf   /",
            "rm -Rf /",
            "rm --recursive --force /",
            "rm / -rf",
            "rm -rf -- /",
            "rm -rf --no-preserve-root /",
            "sudo rm -rf /",
            "sudo -u root rm -rf /",
            "env FOO=1 rm -rf /",
            "/bin/rm -rf /",
            "\\rm -rf /",
            "'rm' -rf '/'",
            "cd /tmp && rm -rf /",
            "echo hi; rm -rf ~",
            "(rm -rf /)",
            "true || sudo rm -rf /usr",
            "rm -rf /etc/",
            "rm -rf //",
            "rm -rf /tmp/..",
            "timeout 5 rm -rf /",
            ":(){ :|:& };:",
            ":(){:|:&};:",
            "bomb() { bomb | bomb & }; bomb",
            "mkfs.ext4 /dev/sda1",
            "sudo mkfs -t ext4 /dev/nvme0n1",
            "dd if=/dev/zero of=/dev/sda bs=1M",
            "dd of=/dev/nvme0n1 if=image.iso",
            "dd if=x of=/dev/vda",
            "echo bad > /dev/sda",
            "cat image >>/dev/sdb",
            "cat x 2>/dev/nvme0n1",
            "chmod -R 777 /",
            "sudo chmod -R 777 /",
            "chmod 777 -R /",
            "chown -R nobody /",
        ];
        for command in blocked {
            assert!(destructive(command).is_some(), "should block: {command}");
        }
    }

    #[test]
    fn deny_list_does_not_overmatch() {
        let allowed = [
            "rm -rf ./build",
            "rm -rf build",
            "rm -rf /tmp/x",
            "rm -rf target/",
            "rm -f /etc/hosts.bak-test",
            "rm /",
            "rm -f /",
            "rm -rf ~/project/target",
            "rm -rf $HOME/.cache/orch-test",
            "rm -rf /home/user/project/build",
            "ls -la /",
            "echo 'rm -rf /' > notes.txt",
            "git commit -m \"never rm -rf /\"",
            "dd if=/dev/sda of=disk.img",
            "echo hi > /dev/null",
            "cat x > /dev/stderr",
            "chmod 755 /usr/local/bin/tool",
            "chmod -R 755 ./scripts",
            "chmod -r file",
            "make fs",
            "cargo test",
            "grep -r mkfs .",
        ];
        for command in allowed {
            assert_eq!(destructive(command), None, "should allow: {command}");
        }
    }

    #[test]
    fn wildcards_match_whole_commands() {
        let cases = [
            ("git *", "git status", true),
            ("git *", "git", false),
            ("git *", "sudo git status", false),
            ("*", "anything at all", true),
            ("cargo test", "cargo test", true),
            ("cargo test", "cargo test --all", false),
            ("cargo * --release", "cargo build --release", true),
            (
                "cargo * --release",
                "cargo build --release --verbose",
                false,
            ),
            ("*rm*", "rm x", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("", "", true),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(
                wildcard_match(pattern, text),
                want,
                "{pattern:?} vs {text:?}"
            );
        }
    }

    fn rules(tools: &[(&str, Action)], bash: &[(&str, Action)]) -> PermissionConfig {
        PermissionConfig {
            tools: tools
                .iter()
                .map(|(name, action)| (name.to_string(), *action))
                .collect::<BTreeMap<_, _>>(),
            bash: bash
                .iter()
                .map(|(pattern, action)| (pattern.to_string(), *action))
                .collect(),
        }
    }

    #[derive(Debug, PartialEq)]
    enum Kind {
        Allow,
        Ask,
        Deny,
    }

    fn kind(decision: &Decision) -> Kind {
        match decision {
            Decision::Allow => Kind::Allow,
            Decision::Ask(_) => Kind::Ask,
            Decision::Deny(_) => Kind::Deny,
        }
    }

    #[test]
    fn decide_table() {
        let config = rules(
            &[
                ("write", Action::Ask),
                ("edit", Action::Deny),
                ("bash", Action::Ask),
            ],
            &[
                ("*", Action::Deny),
                ("git *", Action::Allow),
                ("git push*", Action::Ask),
                ("cargo *", Action::Allow),
                ("cargo publish*", Action::Deny),
            ],
        );
        let permissions = Permissions::new(config, false);
        let bash = |command: &str| json!({ "command": command });
        let cases = [
            ("read", json!({"path": "a"}), Kind::Allow),
            ("write", json!({"path": "a", "content": "x"}), Kind::Ask),
            ("edit", json!({"path": "a"}), Kind::Deny),
            ("bash", bash("git status"), Kind::Allow),
            ("bash", bash("git   status"), Kind::Allow),
            ("bash", bash("git push origin main"), Kind::Ask),
            ("bash", bash("cargo test"), Kind::Allow),
            ("bash", bash("cargo publish"), Kind::Deny),
            ("bash", bash("ls"), Kind::Deny),
            ("bash", bash("rm -rf /"), Kind::Deny),
            // Without a command the tool itself reports the problem.
            ("bash", json!({}), Kind::Ask),
            // run_background runs shell commands too: the deny list and
            // bash's command patterns apply to it as to bash.
            (
                "run_background",
                json!({"command": "sudo rm -rf /"}),
                Kind::Deny,
            ),
            ("run_background", json!({"command": "ls"}), Kind::Deny),
            (
                "run_background",
                json!({"command": "git push origin main"}),
                Kind::Ask,
            ),
            (
                "run_background",
                json!({"command": "cargo test"}),
                Kind::Allow,
            ),
        ];
        for (tool, args, want) in cases {
            let got = permissions.decide(tool, &args);
            assert_eq!(kind(&got), want, "{tool} {args}: {got:?}");
        }
    }

    #[test]
    fn unmatched_bash_commands_follow_the_tool_rule_then_allow() {
        let only_patterns = Permissions::new(rules(&[], &[("git *", Action::Deny)]), false);
        let decide = |p: &Permissions, c: &str| kind(&p.decide("bash", &json!({ "command": c })));
        assert_eq!(decide(&only_patterns, "ls"), Kind::Allow);
        assert_eq!(decide(&only_patterns, "git log"), Kind::Deny);
        let tool_rule = Permissions::new(
            rules(&[("bash", Action::Deny)], &[("ls*", Action::Allow)]),
            false,
        );
        assert_eq!(decide(&tool_rule, "ls -la"), Kind::Allow);
        assert_eq!(decide(&tool_rule, "pwd"), Kind::Deny);
    }

    #[test]
    fn the_deny_list_wins_over_configuration() {
        let permissions = Permissions::new(
            rules(&[("bash", Action::Allow)], &[("*", Action::Allow)]),
            false,
        );
        match permissions.decide("bash", &json!({"command": "sudo rm -fr /"})) {
            Decision::Deny(reason) => assert!(reason.contains("built-in"), "{reason}"),
            other => panic!("expected deny, got {other:?}"),
        }
    }

    #[test]
    fn deny_reasons_name_the_rule() {
        let permissions = Permissions::new(
            rules(&[("write", Action::Deny)], &[("git push*", Action::Deny)]),
            false,
        );
        let Decision::Deny(reason) = permissions.decide("write", &json!({})) else {
            panic!("write should be denied");
        };
        assert!(reason.contains("\"write\""), "{reason}");
        let Decision::Deny(reason) = permissions.decide("bash", &json!({"command": "git push"}))
        else {
            panic!("git push should be denied");
        };
        assert!(reason.contains("\"git push*\""), "{reason}");
    }

    #[test]
    fn ask_details_are_short() {
        assert_eq!(describe("bash", &json!({"command": "ls -la"})), "ls -la");
        let detail = describe(
            "write",
            &json!({"path": "a.txt", "content": "x".repeat(5000)}),
        );
        assert!(detail.contains("\"path\":\"a.txt\""), "{detail}");
        assert!(detail.contains("(5000 chars)"), "{detail}");
        assert!(detail.len() < 300, "{detail}");
    }

    #[test]
    fn control_characters_are_escaped_for_the_terminal() {
        assert_eq!(printable("ok\n\x1b[2Jx"), "ok\n\\u{1b}[2Jx");
    }

    #[test]
    fn shell_words() {
        assert_eq!(
            simple_commands("a 'b c' \"d\\\"e\" f\\ g; h && i | j ${HOME}/x"),
            vec![
                vec!["a", "b c", "d\"e", "f g"],
                vec!["h"],
                vec!["i"],
                vec!["j", "${HOME}/x"],
            ]
        );
    }
}

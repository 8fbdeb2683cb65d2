//! The shell command lines `bash` is asked to run, read the way a shell
//! would split them (chained commands, quotes, wrappers such as `sudo`),
//! and the built-in deny list of obvious disasters checked on every one of
//! them. A guard, not a sandbox.

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
                '&' if chars.peek() == Some(&'>') => {
                    // `&>file`: a redirection, not a separator.
                    end_word(&mut word, &mut in_word, &mut words);
                    skip_redirection(&mut chars);
                }
                '{' if chars.peek() == Some(&'}') => {
                    // `{}` (find's placeholder) is a word, not a group.
                    chars.next();
                    word.push_str("{}");
                    in_word = true;
                }
                ';' | '&' | '|' | '\n' | '(' | ')' | '`' | '{' | '}' => {
                    end_word(&mut word, &mut in_word, &mut words);
                    if !words.is_empty() {
                        commands.push(std::mem::take(&mut words));
                    }
                }
                '<' | '>' => {
                    // `2>&1`, `>file`, `< in`: the file descriptor before it
                    // and the target after it are not words of the command.
                    if in_word && word.chars().all(|c| c.is_ascii_digit()) {
                        word.clear();
                        in_word = false;
                    }
                    end_word(&mut word, &mut in_word, &mut words);
                    if c == '<' && chars.peek() == Some(&'(') {
                        // `<(cmd)`: a process substitution, read as a command.
                        continue;
                    }
                    skip_redirection(&mut chars);
                }
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

/// After `<` or `>`: the rest of the operator (`>`, `&`, `|`) and its
/// target word (`file`, `1`, `"a b"`), which belong to no command.
fn skip_redirection(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while chars
        .peek()
        .is_some_and(|c| matches!(c, '>' | '<' | '&' | '|'))
    {
        chars.next();
    }
    while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
        chars.next();
    }
    let mut quote: Option<char> = None;
    while let Some(&c) = chars.peek() {
        match quote {
            Some(open) => {
                chars.next();
                if c == open {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => {
                chars.next();
                quote = Some(c);
            }
            None if c.is_whitespace() || matches!(c, ';' | '&' | '|' | '(' | ')' | '<' | '>') => {
                break;
            }
            None => {
                chars.next();
            }
        }
    }
}

/// What a command line runs, as permission rules see it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Commands {
    /// Every simple command, nested ones (`sh -c '…'`, `eval …`, `$(…)`,
    /// backticks, `find -exec … ;`) included: the words joined by one space,
    /// and the same from the program on when wrappers (`sudo`, `env X=1`,
    /// `timeout 5`) come first.
    pub commands: Vec<Command>,
    /// Why part of the line is out of sight (a program named by a variable,
    /// `eval` of an expansion), or `None`.
    pub opaque: Option<String>,
}

/// One simple command: as written and as run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub written: String,
    pub program: String,
}

/// Programs whose first argument is a subcommand rules are written about
/// (`git push`, `cargo publish`): an expansion there hides what runs.
const SUBCOMMANDS: &[&str] = &[
    "git",
    "cargo",
    "npm",
    "pnpm",
    "yarn",
    "npx",
    "docker",
    "podman",
    "kubectl",
    "gh",
    "go",
    "pip",
    "pip3",
    "uv",
    "make",
    "terraform",
    "helm",
    "aws",
    "gcloud",
    "az",
    "rustup",
    "systemctl",
];

/// How deep `sh -c` and `eval` are read into.
const MAX_NESTING: usize = 4;

/// Read `line` into its simple commands (see [`Commands`]).
pub fn commands(line: &str) -> Commands {
    let mut out = Commands::default();
    read_into(line, 0, &mut out);
    out
}

fn read_into(line: &str, depth: usize, out: &mut Commands) {
    if depth > MAX_NESTING {
        out.opaque
            .get_or_insert_with(|| "commands nested too deeply to read".to_string());
        return;
    }
    for words in simple_commands(line) {
        let written = words.join(" ");
        let Some((program, args)) = program_and_args(&words) else {
            if words.first().is_some_and(|word| word == "env") {
                out.opaque
                    .get_or_insert_with(|| format!("`{written}` splits its command at run time"));
            }
            out.commands.push(Command {
                program: written.clone(),
                written,
            });
            continue;
        };
        let start = words.len() - args.len() - 1;
        let from_program = words[start..].join(" ");
        // What runs is decided when the line runs: an expansion where the
        // program or its subcommand goes, commands fed from input.
        let expands = |word: &String| word.contains('$') || word.contains('`');
        let subcommand_expands = SUBCOMMANDS.contains(&program)
            && args
                .iter()
                .find(|arg| !arg.starts_with('-'))
                .is_some_and(expands);
        if expands(&words[start]) || subcommand_expands {
            out.opaque.get_or_insert_with(|| {
                format!("`{written}` names its program or subcommand by an expansion")
            });
        }
        if words
            .iter()
            .any(|word| word == "xargs" || word.ends_with("/xargs"))
        {
            out.opaque
                .get_or_insert_with(|| format!("`{written}` runs commands built from its input"));
        }
        match program {
            "sh" | "bash" | "zsh" | "dash" | "ksh" => {
                let script = args
                    .iter()
                    .position(|arg| {
                        arg.starts_with('-') && !arg.starts_with("--") && arg.contains('c')
                    })
                    .and_then(|flag| args[flag + 1..].iter().find(|arg| !arg.starts_with('-')));
                if script.is_none() && !args.iter().any(|arg| arg == "--version") {
                    out.opaque.get_or_insert_with(|| {
                        format!("`{written}` runs a script or its input, unseen")
                    });
                }
                if let Some(script) = script {
                    read_into(script, depth + 1, out);
                }
            }
            "eval" => {
                let script = args.join(" ");
                if script.contains('$') {
                    out.opaque
                        .get_or_insert_with(|| format!("`{written}` evaluates an expansion"));
                }
                read_into(&script, depth + 1, out);
            }
            "find" => {
                let mut rest = args;
                while let Some(at) = rest
                    .iter()
                    .position(|arg| matches!(arg.as_str(), "-exec" | "-execdir" | "-ok" | "-okdir"))
                {
                    let after = &rest[at + 1..];
                    let end = after
                        .iter()
                        .position(|arg| arg == ";" || arg == "+")
                        .unwrap_or(after.len());
                    let inner: Vec<String> = after[..end]
                        .iter()
                        .filter(|arg| arg.as_str() != "{}")
                        .cloned()
                        .collect();
                    if !inner.is_empty() {
                        read_into(&quote_words(&inner), depth + 1, out);
                    }
                    rest = &after[end.min(after.len())..];
                    if rest.is_empty() {
                        break;
                    }
                    rest = &rest[1..];
                }
            }
            _ => {}
        }
        out.commands.push(Command {
            written,
            program: from_program,
        });
    }
}

/// Words as a command line again, each single-quoted when it needs it.
fn quote_words(words: &[String]) -> String {
    words
        .iter()
        .map(|word| {
            if word.is_empty()
                || word.contains(|c: char| !(c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c)))
            {
                format!("'{}'", word.replace('\'', "'\\''"))
            } else {
                word.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
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

    fn seen(line: &str) -> Vec<String> {
        commands(line)
            .commands
            .into_iter()
            .map(|c| c.program)
            .collect()
    }

    #[test]
    fn every_simple_command_of_a_line_is_seen() {
        assert_eq!(
            seen("echo a && git push origin main"),
            ["echo a", "git push origin main"]
        );
        assert_eq!(
            seen("cargo test 2>&1 | tail -n 5"),
            ["cargo test", "tail -n 5"]
        );
        assert_eq!(seen("make >build.log 2> err.txt; ls"), ["make", "ls"]);
        assert_eq!(seen("cat < in.txt &> out.txt"), ["cat"]);
        assert_eq!(seen("(cd sub && git push)"), ["cd sub", "git push"]);
        assert_eq!(
            seen("echo $(git push) `rm -rf x`"),
            ["echo $", "git push", "rm -rf x"]
        );
        assert_eq!(
            seen("sh -c 'git push --force'"),
            ["git push --force", "sh -c git push --force"]
        );
        assert_eq!(
            seen("bash -lc \"cd a; git push\""),
            ["cd a", "git push", "bash -lc cd a; git push"]
        );
        assert_eq!(seen("eval git push"), ["git push", "eval git push"]);
        assert_eq!(
            seen("find . -name '*.tmp' -exec rm -f {} \\;"),
            ["rm -f", "find . -name *.tmp -exec rm -f {} ;"]
        );
        assert_eq!(seen("sudo -u bob git push"), ["git push"]);
        assert_eq!(
            commands("sudo git push").commands[0].written,
            "sudo git push"
        );
        assert_eq!(commands("git push").opaque, None);
        assert!(commands("$TOOL push").opaque.is_some());
        for unseen in [
            "git $'push'",
            "git \"$(echo push)\"",
            "git ${X:-push}",
            "echo push | xargs git",
            "env -S 'git push'",
            "printf 'git push' | sh",
            "bash script.sh",
        ] {
            assert!(commands(unseen).opaque.is_some(), "{unseen}");
        }
        for seen in ["echo $HOME", "cargo test -- $FILTER", "ls `pwd`/src"] {
            assert!(commands(seen).opaque.is_none(), "{seen}");
        }
        assert!(commands("eval \"$CMD\"").opaque.is_some());
    }
}

//! Agent Skills (the open `SKILL.md` standard, as Claude Code, Codex CLI and
//! OpenCode read them): folders holding a `SKILL.md` — frontmatter with a
//! `name` and a `description`, instructions as the body — and the
//! supporting files beside it.
//!
//! Skills come from the project (`.opencode/skills/`, `.claude/skills/`,
//! `.agents/skills/`; only when the project is trusted) and from the user
//! (`<config dir>/orch/skills/`, `~/.claude/skills/`, `~/.agents/skills/`).
//! Disclosure is progressive: the agents that do the work get a catalog of
//! names and descriptions in their system prompt (capped in bytes, sorted,
//! so it is the same on every request), and load a skill's instructions
//! and files with the `skill` tool only when a task needs them.

pub mod frontmatter;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a skill was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Project,
    User,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Project => "project",
            Scope::User => "user",
        }
    }
}

/// One valid skill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skill {
    pub name: String,
    pub description: String,
    pub scope: Scope,
    /// The skill's folder (its supporting files live beneath it).
    pub dir: PathBuf,
}

impl Skill {
    /// The skill's `SKILL.md`.
    pub fn file(&self) -> PathBuf {
        self.dir.join(SKILL_FILE)
    }
}

/// A skill or command file that was not loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What the file was to be: `skill` or `command`.
    pub kind: &'static str,
    pub file: PathBuf,
    pub reason: String,
}

impl Problem {
    /// The problem as `orch skills --json` and `orch commands --json` list it.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({"file": self.file, "reason": self.reason})
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.kind, self.file.display(), self.reason)
    }
}

/// A valid skill hidden by another of the same name found first (the
/// project's over the user's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shadowed {
    pub skill: Skill,
    /// The folder of the skill that is used instead.
    pub by: PathBuf,
}

impl fmt::Display for Shadowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "skill \"{}\" in {} is not used: {} has the same name",
            self.skill.name,
            self.skill.dir.display(),
            self.by.display()
        )
    }
}

/// What a scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skills {
    /// Valid skills, sorted by name, one per name.
    pub skills: Vec<Skill>,
    /// Skills that were not loaded, in scan order.
    pub problems: Vec<Problem>,
    pub shadowed: Vec<Shadowed>,
    /// Project skill folders left unread because the project is not trusted.
    pub ignored: Vec<PathBuf>,
}

/// The file that makes a folder a skill.
pub const SKILL_FILE: &str = "SKILL.md";
/// Project skill folders, relative to the root, in precedence order.
pub const PROJECT_DIRS: &[&str] = crate::config::trust::SKILL_DIRS;
/// Longest name and description the standard allows.
const NAME_MAX: usize = 64;
const DESCRIPTION_MAX: usize = 1024;
/// Largest `SKILL.md` read.
const SKILL_FILE_MAX: u64 = 1024 * 1024;

/// Where skills (or commands, `crate::commands`) are looked for, in
/// precedence order within each scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    pub project: Vec<PathBuf>,
    pub user: Vec<PathBuf>,
    /// Project folders that exist but are not read (untrusted project).
    pub ignored: Vec<PathBuf>,
}

impl Sources {
    /// The folders for the project at `root`: its own only when `trusted`,
    /// and the user's (`<config dir>/orch/skills`, `~/.claude/skills`,
    /// `~/.agents/skills`, from `XDG_CONFIG_HOME` and `HOME`).
    pub fn of(root: &Path, trusted: bool) -> Sources {
        Sources::folders(
            root,
            trusted,
            PROJECT_DIRS,
            "skills",
            &[".claude/skills", ".agents/skills"],
        )
    }

    /// The folders of one kind of user file (skills, commands): the
    /// project's `project_dirs` (only when `trusted`; otherwise the ones
    /// that exist are kept as ignored) and the user's
    /// (`<config dir>/orch/<name>`, then each of `home_dirs` under `HOME`).
    pub fn folders(
        root: &Path,
        trusted: bool,
        project_dirs: &[&str],
        name: &str,
        home_dirs: &[&str],
    ) -> Sources {
        let project: Vec<PathBuf> = project_dirs.iter().map(|dir| root.join(dir)).collect();
        let mut user = Vec::new();
        if let Some(config) = dirs::config_dir() {
            user.push(config.join("orch").join(name));
        }
        if let Some(home) = dirs::home_dir() {
            user.extend(home_dirs.iter().map(|dir| home.join(dir)));
        }
        if trusted {
            Sources {
                project,
                user,
                ignored: Vec::new(),
            }
        } else {
            Sources {
                ignored: project.into_iter().filter(|dir| dir.is_dir()).collect(),
                project: Vec::new(),
                user,
            }
        }
    }

    /// Every folder with its scope, the project's first: what is found
    /// first wins.
    pub fn scoped(&self) -> impl Iterator<Item = (&Path, Scope)> {
        self.project
            .iter()
            .map(|dir| (dir.as_path(), Scope::Project))
            .chain(self.user.iter().map(|dir| (dir.as_path(), Scope::User)))
    }

    /// Read every skill from these folders.
    pub fn scan(&self) -> Skills {
        let mut found = Skills {
            ignored: self.ignored.clone(),
            ..Skills::default()
        };
        let mut by_name: BTreeMap<String, Skill> = BTreeMap::new();
        for (dir, scope) in self.scoped() {
            for skill_dir in skill_dirs(dir) {
                match read_skill(&skill_dir, scope) {
                    Ok(skill) => match by_name.get(&skill.name) {
                        Some(first) => found.shadowed.push(Shadowed {
                            by: first.dir.clone(),
                            skill,
                        }),
                        None => {
                            by_name.insert(skill.name.clone(), skill);
                        }
                    },
                    Err(problem) => found.problems.push(problem),
                }
            }
        }
        found.skills = by_name.into_values().collect();
        found
    }
}

/// The skills of the project at `root` (its own only when `trusted`) and
/// of the user.
pub fn scan(root: &Path, trusted: bool) -> Skills {
    Sources::of(root, trusted).scan()
}

/// The folders directly under `dir` that hold a `SKILL.md`, in name order;
/// none when `dir` does not exist.
fn skill_dirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.is_dir() && path.join(SKILL_FILE).is_file())
        .collect();
    dirs.sort();
    dirs
}

/// A skill's `SKILL.md`, read and checked; a problem names the file.
fn read_skill(dir: &Path, scope: Scope) -> Result<Skill, Problem> {
    let file = dir.join(SKILL_FILE);
    let problem = |reason: String| Problem {
        kind: "skill",
        file: file.clone(),
        reason,
    };
    let text = read_text(&file).map_err(problem)?;
    let document = frontmatter::parse(&text, true).map_err(problem)?;
    let folder = dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (name, description) = check(&document.fields, &folder).map_err(problem)?;
    Ok(Skill {
        name,
        description,
        scope,
        dir: dir.to_path_buf(),
    })
}

/// A `SKILL.md` as text, refused when it is too large or not UTF-8.
fn read_text(file: &Path) -> Result<String, String> {
    let size = std::fs::metadata(file)
        .map_err(|err| format!("cannot read: {err}"))?
        .len();
    if size > SKILL_FILE_MAX {
        return Err(format!(
            "{size} bytes, more than the {SKILL_FILE_MAX} a SKILL.md may have"
        ));
    }
    let bytes = std::fs::read(file).map_err(|err| format!("cannot read: {err}"))?;
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())
}

/// The name and description of a skill in folder `folder`, as the
/// standard requires them.
pub fn check(fields: &BTreeMap<String, String>, folder: &str) -> Result<(String, String), String> {
    let name = fields
        .get("name")
        .map(|name| name.trim())
        .ok_or("missing the required field `name`")?;
    check_name(name)?;
    if name != folder {
        return Err(format!(
            "name \"{name}\" differs from its folder \"{folder}\" (they must be equal)"
        ));
    }
    let description = fields
        .get("description")
        .map(|text| text.trim())
        .ok_or("missing the required field `description`")?;
    if description.is_empty() {
        return Err("field `description`: expected a description, got an empty one".into());
    }
    let chars = description.chars().count();
    if chars > DESCRIPTION_MAX {
        return Err(format!(
            "field `description`: {chars} characters, more than the {DESCRIPTION_MAX} allowed"
        ));
    }
    Ok((name.to_string(), description.to_string()))
}

/// A skill name: 1 to 64 lowercase letters, digits and hyphens, neither
/// starting nor ending with a hyphen, without `--`.
pub fn check_name(name: &str) -> Result<(), String> {
    let why = if name.is_empty() {
        "is empty"
    } else if name.len() > NAME_MAX {
        "is longer than 64 characters"
    } else if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        "may hold only lowercase letters, digits and hyphens"
    } else if name.starts_with('-') || name.ends_with('-') {
        "may not start or end with a hyphen"
    } else if name.contains("--") {
        "may not contain `--`"
    } else {
        return Ok(());
    };
    Err(format!("field `name`: \"{name}\" {why}"))
}

impl Skills {
    /// A skill by its exact name.
    pub fn find(&self, name: &str) -> Option<&Skill> {
        self.skills.iter().find(|skill| skill.name == name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.skills
            .iter()
            .map(|skill| skill.name.as_str())
            .collect()
    }

    /// What identifies this set of skills: names, folders and descriptions.
    /// Two scans with the same fingerprint give the same catalog, so a
    /// caller can notice a skill added, removed or changed mid-mission.
    pub fn fingerprint(&self) -> String {
        let mut text = String::new();
        for skill in &self.skills {
            text.push_str(&format!(
                "{}\0{}\0{}\n",
                skill.name,
                skill.dir.display(),
                skill.description
            ));
        }
        crate::files::sha256_hex(text.as_bytes())
    }

    /// Everything that was not loaded, as warnings: invalid skills,
    /// shadowed ones, and the project folders an untrusted project keeps.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings: Vec<String> = self.problems.iter().map(Problem::to_string).collect();
        warnings.extend(self.shadowed.iter().map(Shadowed::to_string));
        warnings
    }

    /// The catalog for a system prompt: every skill's name and one-line
    /// description, in name order, within `max_bytes`. When they do not
    /// fit, descriptions are shortened (to no less than
    /// `DESCRIPTION_FLOOR` characters), then skills past the cap are left
    /// out with a line saying how many. The same skills and cap give the
    /// same bytes. Empty when there are no skills.
    pub fn catalog(&self, max_bytes: usize) -> String {
        catalog(&self.skills, max_bytes)
    }
}

/// Characters a shortened description keeps at least.
const DESCRIPTION_FLOOR: usize = 48;

const CATALOG_HEAD: &str = "\n\n## Skills\n\n\
Skills are instructions for particular kinds of work, each with supporting files. \
When a task matches a skill's description, load it with the `skill` tool (`{\"name\": ...}`) \
and follow it; read one of its files with `{\"name\": ..., \"file\": ...}`.\n\n";

fn catalog(skills: &[Skill], max_bytes: usize) -> String {
    if skills.is_empty() {
        return String::new();
    }
    let entry = |skill: &Skill, chars: Option<usize>| {
        let line = crate::text::squash_spaces(&skill.description);
        let line = match chars {
            Some(chars) => crate::text::preview(&line, chars),
            None => line,
        };
        format!("- {}: {line}\n", skill.name)
    };
    let whole = |chars: Option<usize>| -> String {
        let mut text = CATALOG_HEAD.to_string();
        for skill in skills {
            text.push_str(&entry(skill, chars));
        }
        text
    };
    let full = whole(None);
    if full.len() <= max_bytes {
        return full;
    }
    // The longest description cut that fits, found by halving.
    let longest = skills
        .iter()
        .map(|skill| skill.description.chars().count())
        .max()
        .unwrap_or(0);
    let (mut low, mut high) = (DESCRIPTION_FLOOR, longest);
    if whole(Some(low)).len() <= max_bytes {
        while low < high {
            let mid = (low + high).div_ceil(2);
            if whole(Some(mid)).len() <= max_bytes {
                low = mid;
            } else {
                high = mid - 1;
            }
        }
        return whole(Some(low));
    }
    // Even short descriptions do not fit: keep what fits, in name order.
    let mut text = CATALOG_HEAD.to_string();
    for (at, skill) in skills.iter().enumerate() {
        let line = entry(skill, Some(DESCRIPTION_FLOOR));
        let left = skills.len() - at - 1;
        let tail = left_out(left);
        if text.len() + line.len() + if left > 0 { tail.len() } else { 0 } > max_bytes {
            text.push_str(&left_out(skills.len() - at));
            return text;
        }
        text.push_str(&line);
    }
    text
}

fn left_out(count: usize) -> String {
    format!(
        "- ({count} more skill{} not listed here; the `skill` tool loads any skill by its name)\n",
        if count == 1 { "" } else { "s" }
    )
}

/// The catalog's byte cap for a model with `context_window` tokens:
/// `share` of the window at about 4 bytes a token.
pub fn catalog_bytes(context_window: u32, share: f64) -> usize {
    (f64::from(context_window) * share * 4.0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skill(name: &str, description: &str) -> Skill {
        Skill {
            name: name.into(),
            description: description.into(),
            scope: Scope::User,
            dir: PathBuf::from(format!("/skills/{name}")),
        }
    }

    #[test]
    fn names_follow_the_standard() {
        for good in ["a", "pdf-tools", "v2-migrate", &"x".repeat(64)] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("", "is empty"),
            (&"x".repeat(65), "longer than 64"),
            ("PDF", "lowercase letters"),
            ("pdf_tools", "lowercase letters"),
            ("pdf tools", "lowercase letters"),
            ("-pdf", "start or end with a hyphen"),
            ("pdf-", "start or end with a hyphen"),
            ("pdf--tools", "`--`"),
            ("pdf-töols", "lowercase letters"),
        ] {
            let err = check_name(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn a_skill_needs_its_folder_name_and_a_description() {
        let fields = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            check(
                &fields(&[("name", "pdf"), ("description", " Fill forms. ")]),
                "pdf"
            ),
            Ok(("pdf".into(), "Fill forms.".into()))
        );
        let err = |pairs: &[(&str, &str)], folder: &str| check(&fields(pairs), folder).unwrap_err();
        assert!(err(&[("description", "d")], "pdf").contains("missing the required field `name`"));
        assert!(err(&[("name", "pdf")], "pdf").contains("`description`"));
        assert!(err(&[("name", "pdf"), ("description", "  ")], "pdf").contains("empty"));
        assert!(
            err(&[("name", "pdf"), ("description", "d")], "pdf-tools")
                .contains("differs from its folder \"pdf-tools\"")
        );
        let long = "é".repeat(1025);
        assert!(err(&[("name", "pdf"), ("description", &long)], "pdf").contains("1025 characters"));
        let at_limit = "é".repeat(1024);
        assert!(
            check(
                &fields(&[("name", "pdf"), ("description", &at_limit)]),
                "pdf"
            )
            .is_ok()
        );
    }

    #[test]
    fn a_catalog_that_fits_lists_every_description_whole() {
        let skills = [
            skill("alpha", "First.\nSecond line."),
            skill("beta", "Beta work."),
        ];
        let text = catalog(&skills, 10_000);
        assert!(text.starts_with("\n\n## Skills\n"), "{text}");
        assert!(
            text.ends_with("- alpha: First. Second line.\n- beta: Beta work.\n"),
            "{text}"
        );
        assert_eq!(catalog(&[], 10_000), "");
    }

    #[test]
    fn an_oversized_catalog_shortens_descriptions_then_leaves_skills_out() {
        let skills: Vec<Skill> = (0..40)
            .map(|k| {
                skill(
                    &format!("skill-{k:02}"),
                    &format!("{k} {}", "word ".repeat(60)),
                )
            })
            .collect();
        let full = catalog(&skills, usize::MAX);
        // Shortened: every skill still listed, within the cap.
        let cap = full.len() / 2;
        let short = catalog(&skills, cap);
        assert!(short.len() <= cap, "{} > {cap}", short.len());
        assert_eq!(short.matches("\n- skill-").count(), 40);
        assert!(short.contains('…'));
        assert!(!short.contains("more skill"));
        // Too small even for short descriptions: the first skills, then a
        // line saying how many are left out.
        let cap = CATALOG_HEAD.len() + 600;
        let cut = catalog(&skills, cap);
        assert!(cut.len() <= cap, "{} > {cap}: {cut}", cut.len());
        let listed = cut.matches("\n- skill-").count();
        assert!(listed > 0 && listed < 40, "{cut}");
        assert!(cut.contains("- skill-00: "), "{cut}");
        assert!(
            cut.contains(&format!("({} more skills not listed here", 40 - listed)),
            "{cut}"
        );
        assert!(cut.contains("loads any skill by its name"));
    }

    #[test]
    fn the_catalog_is_byte_stable() {
        let mut skills: Vec<Skill> = (0..30)
            .map(|k| skill(&format!("s{k}"), &"describes work ".repeat(k + 1)))
            .collect();
        let first = catalog(&skills, 2_000);
        assert_eq!(first, catalog(&skills, 2_000));
        // A scan sorts by name; the catalog depends only on the skills.
        skills.sort_by(|a, b| a.name.cmp(&b.name));
        let sorted = Skills {
            skills: skills.clone(),
            ..Skills::default()
        };
        assert_eq!(sorted.catalog(2_000), sorted.catalog(2_000));
        assert_eq!(catalog_bytes(128_000, 0.02), 10_240);
    }

    #[test]
    fn project_skills_win_over_user_skills_and_bad_ones_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str| {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write(
            "project/.claude/skills/pdf/SKILL.md",
            "---\nname: pdf\ndescription: project pdf\n---\nP",
        );
        write(
            "user/pdf/SKILL.md",
            "---\nname: pdf\ndescription: user pdf\n---\nU",
        );
        write(
            "user/zip/SKILL.md",
            "---\nname: zip\ndescription: >\n  Packs\n  files.\n---\nZ",
        );
        write("user/Bad/SKILL.md", "---\nname: Bad\ndescription: x\n---\n");
        write("user/notes/README.md", "not a skill");
        let sources = Sources {
            project: vec![dir.path().join("project/.claude/skills")],
            user: vec![dir.path().join("user")],
            ignored: Vec::new(),
        };
        let found = sources.scan();
        assert_eq!(found.names(), ["pdf", "zip"]);
        assert_eq!(found.find("pdf").unwrap().description, "project pdf");
        assert_eq!(found.find("pdf").unwrap().scope, Scope::Project);
        assert_eq!(found.find("zip").unwrap().description, "Packs files.");
        assert_eq!(found.problems.len(), 1);
        assert!(found.problems[0].file.ends_with("user/Bad/SKILL.md"));
        assert!(
            found.problems[0].reason.contains("lowercase"),
            "{:?}",
            found.problems
        );
        assert_eq!(found.shadowed.len(), 1);
        assert!(found.shadowed[0].skill.dir.ends_with("user/pdf"));
        assert_eq!(found.warnings().len(), 2);
        let before = found.fingerprint();
        write(
            "user/new-one/SKILL.md",
            "---\nname: new-one\ndescription: n\n---\n",
        );
        assert_ne!(sources.scan().fingerprint(), before);
    }
}

//! `skill`: load an Agent Skill's instructions, or one of its supporting
//! files, by the skill's name (`crate::skills`). Skills are read from disk
//! on every call, so one added while a mission runs can be loaded.
//!
//! A skill's folder may lie outside the project (the user's skills); what
//! this tool reads is confined to that folder instead: a file path with
//! `..`, an absolute path or a link that leads out of it is refused.

use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Tool, ToolContext, ToolOutput, parse_args, run_blocking};
use crate::provider::ToolSpec;
use crate::skills::{SKILL_FILE, Skill, Skills, Sources};

/// Most supporting files listed for one skill.
const MAX_LISTED: usize = 200;

pub struct SkillTool {
    sources: Sources,
}

impl SkillTool {
    pub fn new(sources: Sources) -> SkillTool {
        SkillTool { sources }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    name: String,
    #[serde(default)]
    file: Option<String>,
}

#[async_trait]
impl Tool for SkillTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "skill".into(),
            description: "Load a skill listed under Skills in your instructions: with `name`, its instructions, folder and supporting files; with `name` and `file` (a path relative to the skill's folder), that file."
                .into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "description": "The skill's name."},
                    "file": {"type": "string", "description": "A supporting file, relative to the skill's folder."}
                },
                "required": ["name"],
                "additionalProperties": false
            }),
        }
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> ToolOutput {
        let args: Args = match parse_args("skill", args) {
            Ok(args) => args,
            Err(output) => return output,
        };
        let sources = self.sources.clone();
        let cap = ctx.limits.read_max_bytes;
        run_blocking(move || {
            let skills = sources.scan();
            let skill = find(&skills, &args.name)?;
            match args.file {
                None => instructions(skill, cap),
                Some(file) => supporting_file(skill, &file, cap),
            }
        })
        .await
    }
}

/// The skill named `name`, or an error naming the closest names.
fn find<'a>(skills: &'a Skills, name: &str) -> Result<&'a Skill, String> {
    let name = name.trim();
    if let Some(skill) = skills.find(name) {
        return Ok(skill);
    }
    if skills.skills.is_empty() {
        return Err(format!("unknown skill \"{name}\": no skills are installed"));
    }
    let mut close: Vec<(usize, &str)> = skills
        .names()
        .into_iter()
        .map(|known| (distance(name, known), known))
        .filter(|(d, known)| *d <= (known.len() / 3).max(2) || known.contains(name))
        .collect();
    close.sort();
    let (label, names): (&str, Vec<&str>) = if close.is_empty() {
        ("skills", skills.names().into_iter().take(20).collect())
    } else {
        (
            "did you mean",
            close.into_iter().take(5).map(|(_, n)| n).collect(),
        )
    };
    Err(format!(
        "unknown skill \"{name}\"; {label}: {}",
        names.join(", ")
    ))
}

/// Edit distance between two names (Levenshtein, by characters).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

/// `SKILL.md`'s body, where the skill lives, and its supporting files.
fn instructions(skill: &Skill, cap: usize) -> Result<String, String> {
    let file = skill.file();
    let text = std::fs::read_to_string(&file)
        .map_err(|err| format!("cannot read {}: {err}", file.display()))?;
    let document = crate::skills::frontmatter::parse(&text, true)
        .map_err(|why| format!("{}: {why}", file.display()))?;
    let mut body = document.body.trim().to_string();
    let cut = crate::text::truncate(&mut body, cap);
    let mut out = format!(
        "Skill \"{}\" ({} skill) in {}\n\n{body}\n",
        skill.name,
        skill.scope.name(),
        skill.dir.display()
    );
    if cut > 0 {
        out.push_str(&format!(
            "\n[… {cut} more bytes of SKILL.md not shown (cap {cap} bytes)]\n"
        ));
    }
    let files = supporting_files(&skill.dir);
    if files.is_empty() {
        out.push_str("\nNo supporting files.\n");
    } else {
        out.push_str(&format!(
            "\nSupporting files (read one with skill, `name` \"{}\" and `file`):\n",
            skill.name
        ));
        for (path, size) in files.iter().take(MAX_LISTED) {
            out.push_str(&format!("- {path} ({size} bytes)\n"));
        }
        if files.len() > MAX_LISTED {
            out.push_str(&format!("- … {} more\n", files.len() - MAX_LISTED));
        }
    }
    Ok(out)
}

/// The regular files under a skill's folder other than its `SKILL.md`,
/// relative, in name order, with their sizes.
fn supporting_files(dir: &Path) -> Vec<(String, u64)> {
    let mut files = Vec::new();
    for entry in crate::walk::project(dir).build().flatten() {
        if !entry.file_type().is_some_and(|kind| kind.is_file()) {
            continue;
        }
        let Ok(relative) = entry.path().strip_prefix(dir) else {
            continue;
        };
        if relative == Path::new(SKILL_FILE) {
            continue;
        }
        let size = entry.metadata().map_or(0, |meta| meta.len());
        files.push((relative.display().to_string(), size));
        if files.len() > MAX_LISTED {
            break;
        }
    }
    files
}

/// One supporting file of `skill`, confined to its folder; its head when
/// larger than `cap` bytes.
fn supporting_file(skill: &Skill, file: &str, cap: usize) -> Result<String, String> {
    let path = inside(&skill.dir, file)?;
    let meta = std::fs::metadata(&path).map_err(|err| {
        format!(
            "skill \"{}\" has no file {file:?} ({err}); `skill` with only the name lists its files",
            skill.name
        )
    })?;
    if !meta.is_file() {
        return Err(format!(
            "{file:?} in skill \"{}\" is not a file",
            skill.name
        ));
    }
    let bytes = std::fs::read(&path).map_err(|err| format!("cannot read {file:?}: {err}"))?;
    let Ok(mut text) = String::from_utf8(bytes) else {
        return Err(format!(
            "{file:?} in skill \"{}\" is not text ({} bytes)",
            skill.name,
            meta.len()
        ));
    };
    let cut = crate::text::truncate(&mut text, cap);
    if cut > 0 {
        text.push_str(&format!(
            "\n[… {cut} more bytes not shown (cap {cap} bytes)]"
        ));
    }
    Ok(text)
}

/// `file` resolved inside `dir`: relative, without `..`, and still inside
/// once links are resolved.
fn inside(dir: &Path, file: &str) -> Result<PathBuf, String> {
    let given = Path::new(file);
    if file.is_empty() || file.contains('\0') {
        return Err(format!(
            "file {file:?}: expected a path relative to the skill's folder"
        ));
    }
    if given
        .components()
        .any(|part| !matches!(part, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "file {file:?}: expected a path inside the skill's folder, without `..` or a leading `/`"
        ));
    }
    let dir = dir
        .canonicalize()
        .map_err(|err| format!("cannot resolve the skill's folder {}: {err}", dir.display()))?;
    let joined = dir.join(given);
    let resolved = match joined.canonicalize() {
        Ok(resolved) => resolved,
        // Missing: reported by the caller with the list hint.
        Err(_) => return Ok(joined),
    };
    if resolved.starts_with(&dir) {
        Ok(resolved)
    } else {
        Err(format!(
            "file {file:?} leads outside the skill's folder (a link to {}); refused",
            resolved.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::skills::Scope;

    fn skill_at(dir: &Path) -> Skill {
        Skill {
            name: "pdf".into(),
            description: "d".into(),
            scope: Scope::User,
            dir: dir.to_path_buf(),
        }
    }

    #[test]
    fn files_outside_the_skill_folder_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("pdf");
        std::fs::create_dir_all(dir.join("scripts")).unwrap();
        std::fs::write(
            dir.join("SKILL.md"),
            "---\nname: pdf\ndescription: d\n---\nDo it.\n",
        )
        .unwrap();
        std::fs::write(dir.join("scripts/fill.py"), "print('fill')\n").unwrap();
        std::fs::write(root.path().join("secret.txt"), "secret").unwrap();
        std::os::unix::fs::symlink(root.path().join("secret.txt"), dir.join("link.txt")).unwrap();
        let skill = skill_at(&dir);
        assert_eq!(
            supporting_file(&skill, "scripts/fill.py", 1000).unwrap(),
            "print('fill')\n"
        );
        assert_eq!(
            supporting_file(&skill, "./scripts/fill.py", 1000).unwrap(),
            "print('fill')\n"
        );
        for bad in ["../secret.txt", "scripts/../../secret.txt"] {
            let err = supporting_file(&skill, bad, 1000).unwrap_err();
            assert!(err.contains("without `..`"), "{bad}: {err}");
        }
        let absolute = root.path().join("secret.txt").display().to_string();
        assert!(
            supporting_file(&skill, &absolute, 1000)
                .unwrap_err()
                .contains("leading `/`")
        );
        let err = supporting_file(&skill, "link.txt", 1000).unwrap_err();
        assert!(err.contains("leads outside the skill's folder"), "{err}");
        let err = supporting_file(&skill, "missing.md", 1000).unwrap_err();
        assert!(err.contains("has no file \"missing.md\""), "{err}");
        // Capped like other reads.
        let cut = supporting_file(&skill, "scripts/fill.py", 5).unwrap();
        assert!(cut.starts_with("print\n[… 9 more bytes"), "{cut}");
        // The instructions list the files, the link (not a regular file) left out.
        let text = instructions(&skill, 1000).unwrap();
        assert!(text.contains("Do it."), "{text}");
        assert!(text.contains("- scripts/fill.py (14 bytes)"), "{text}");
        assert!(!text.contains("link.txt"), "{text}");
        assert!(!text.contains("- SKILL.md"), "{text}");
    }

    #[test]
    fn an_unknown_name_lists_close_names() {
        let skills = Skills {
            skills: ["pdf-forms", "pdf-tables", "zip"]
                .iter()
                .map(|name| Skill {
                    name: name.to_string(),
                    description: "d".into(),
                    scope: Scope::User,
                    dir: PathBuf::from(name),
                })
                .collect(),
            ..Skills::default()
        };
        assert_eq!(
            find(&skills, "pdf-form").unwrap_err(),
            "unknown skill \"pdf-form\"; did you mean: pdf-forms"
        );
        assert_eq!(
            find(&skills, "docx").unwrap_err(),
            "unknown skill \"docx\"; skills: pdf-forms, pdf-tables, zip"
        );
        assert_eq!(find(&skills, " zip ").unwrap().name, "zip");
        assert!(
            find(&Skills::default(), "x")
                .unwrap_err()
                .contains("no skills are installed")
        );
    }
}

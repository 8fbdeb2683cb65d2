//! `orch init`: `.opencode/` with a commented `orch.json`, the plugin and
//! prompt folders, and the bundled plugins (`plugins::bundled`) installed
//! into `.opencode/plugins/` with the grants they need. Nothing the user
//! already has is replaced: an existing `orch.json` is left as it is (the
//! missing grants are printed instead), and so is a plugin file that differs
//! from the bundled one.

use std::path::Path;

use anyhow::Context as _;

use super::{Cli, exit};
use crate::config::{self, Overrides, ProjectAccess, TrustStore};
use crate::files::{self, Durability};
use crate::plugins::bundled::{self, Needs};
use crate::plugins::sha256_hex;

/// What `init` did with one bundled plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Installed,
    UpToDate,
    /// A different file of that name is there; it stays.
    Kept,
}

/// One bundled plugin after `init`.
#[derive(Debug, Clone)]
struct Plugin {
    file: &'static str,
    sha256: String,
    needs: Option<Needs>,
    outcome: Outcome,
}

impl Plugin {
    /// Whether `orch.json` should grant it something: it needs a grant and
    /// the file in the folder is the bundled one.
    fn wants_grant(&self) -> bool {
        self.needs.is_some() && self.outcome != Outcome::Kept
    }
}

pub fn init(cli: &Cli) -> anyhow::Result<u8> {
    let root = super::project_root(cli.dir.as_deref())?;
    let dir = root.join(".opencode");
    for sub in ["plugins", "prompts"] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("creating {}", dir.join(sub).display()))?;
    }
    let plugins_dir = dir.join("plugins");
    let plugins = bundled::PLUGINS
        .iter()
        .map(|(file, bytes)| install(&plugins_dir, file, bytes))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let granted: Vec<&Plugin> = plugins.iter().filter(|p| p.wants_grant()).collect();

    let config = dir.join("orch.json");
    let config_text = config_text(super::demo::INIT_CONFIG, &granted);
    let new_config = write_new(&config, config_text.as_bytes())?;

    if let Some(reason) = bundled::MISSING {
        println!("this orch was built without its bundled plugins: {reason}");
    }
    for plugin in &plugins {
        let path = plugins_dir.join(plugin.file);
        let path = path.display();
        let grant = match plugin.needs {
            Some(needs) if new_config && plugin.wants_grant() => {
                format!(" (granted in orch.json: {})", in_words(&needs))
            }
            Some(_) if new_config => " (granted nothing in orch.json)".to_string(),
            _ => String::new(),
        };
        match plugin.outcome {
            Outcome::Installed => println!("installed {path}{grant}"),
            Outcome::UpToDate => println!("{path} is up to date{grant}"),
            Outcome::Kept => println!(
                "kept {path}: it differs from the bundled {}, so it was not replaced (delete it and run `orch init` again for the bundled one){grant}",
                plugin.file
            ),
        }
    }

    if new_config {
        println!("wrote {}", config.display());
    } else {
        println!("{} exists; left as it is", config.display());
        let missing = not_granted(&root, &granted);
        if !missing.is_empty() {
            println!(
                "for the bundled plugins to work, add to \"plugins\": {{ \"grants\": {{ ... }} }} in it:"
            );
            for plugin in missing {
                if let Some(needs) = plugin.needs {
                    println!("  {}  // {}", grant_entry(plugin, &needs), needs.why);
                }
            }
        }
    }

    write_new(
        &dir.join(".gitignore"),
        b"sessions/\nmissions/\nruns/\ncache/\nplugin-data/\n",
    )?;
    trust_what_init_wrote(&root, new_config, &plugins);
    println!(
        "ready: edit {} and run `orch task \"<goal>\"`",
        config.display()
    );
    Ok(exit::COMPLETE)
}

/// Files `orch init` writes are the user's own: when everything of the
/// project that needs trust is what init just wrote (a new `orch.json`,
/// bundled plugins), trust is recorded; anything else (a cloned
/// `agents.json`, a plugin init did not write) waits for `orch trust`.
fn trust_what_init_wrote(root: &Path, new_config: bool, plugins: &[Plugin]) {
    let Ok(config) = config::load(root, &Overrides::default()) else {
        return;
    };
    let Some(surface) = config.trust.ignored() else {
        return;
    };
    let ours = |path: &String| {
        plugins.iter().any(|plugin| {
            plugin.outcome != Outcome::Kept && *path == format!(".opencode/plugins/{}", plugin.file)
        })
    };
    let foreign: Vec<&String> = surface
        .files
        .iter()
        .map(|(path, _)| path)
        .filter(|path| !ours(path))
        .collect();
    if (!surface.keys.is_empty() && !new_config) || !foreign.is_empty() {
        println!(
            "this project has settings of its own that init did not write; review them with `orch trust`"
        );
        return;
    }
    match TrustStore::of_user().map(|store| store.record(root, &surface.hash())) {
        Some(Ok(())) => {}
        Some(Err(err)) => println!("could not record trust for what init wrote: {err}"),
        None => println!("no user config directory: run `orch trust` to apply orch.json"),
    }
}

/// Write `bytes` to `path` unless a file is there; whether it was written.
/// A temp file then a rename that never overwrites, so a running orch's hot
/// reload never sees half a plugin, and nothing the user has is replaced.
fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<bool> {
    files::prepare(path, bytes, Durability::Synced)
        .and_then(files::Replacement::commit_new)
        .with_context(|| format!("writing {}", path.display()))
}

/// Install one bundled plugin into `dir` unless a file of its name is there.
fn install(dir: &Path, file: &'static str, bytes: &[u8]) -> anyhow::Result<Plugin> {
    let path = dir.join(file);
    let outcome = match std::fs::read(&path) {
        Ok(existing) if existing == bytes => Outcome::UpToDate,
        Ok(_) => Outcome::Kept,
        // A file that appeared meanwhile is the user's: kept.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => match write_new(&path, bytes)? {
            true => Outcome::Installed,
            false => Outcome::Kept,
        },
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    Ok(Plugin {
        file,
        sha256: sha256_hex(bytes),
        needs: bundled::needs(file),
        outcome,
    })
}

/// The plugins in `wanted` whose grant the configuration `init` found at
/// `root` (with the user's layer) lacks: no grant for the file, another
/// sha256, or less project access than needed. Unreadable configuration
/// lacks them all.
fn not_granted<'a>(root: &Path, wanted: &[&'a Plugin]) -> Vec<&'a Plugin> {
    let Ok(config) = config::load(root, &Overrides::default()) else {
        return wanted.to_vec();
    };
    wanted
        .iter()
        .copied()
        .filter(|plugin| {
            let Some(grant) = config.plugins.grants.get(plugin.file) else {
                return true;
            };
            let needs = plugin.needs;
            let project = match needs.and_then(|needs| needs.project) {
                None => true,
                Some(ProjectAccess::Read) => grant.project.is_some(),
                Some(ProjectAccess::ReadWrite) => grant.project == Some(ProjectAccess::ReadWrite),
            };
            let data = !needs.is_some_and(|needs| needs.data) || grant.keeps_data();
            grant.sha256 != plugin.sha256 || !(project && data)
        })
        .collect()
}

/// `"jq.wasm": { "sha256": "…", "project": "read" }`
fn grant_entry(plugin: &Plugin, needs: &Needs) -> String {
    let mut fields = vec![format!("\"sha256\": \"{}\"", plugin.sha256)];
    match needs.project {
        None => {}
        Some(ProjectAccess::Read) => fields.push("\"project\": \"read\"".into()),
        Some(ProjectAccess::ReadWrite) => fields.push("\"project\": \"read-write\"".into()),
    }
    if needs.data {
        fields.push("\"data\": true".into());
    }
    if needs.fetch {
        fields.push("\"fetch\": []".into());
    }
    format!("\"{}\": {{ {} }}", plugin.file, fields.join(", "))
}

/// `project read-only`, `fetch from the hosts you list`.
fn in_words(needs: &Needs) -> String {
    let mut parts = Vec::new();
    match needs.project {
        None => {}
        Some(ProjectAccess::Read) => parts.push("project read-only"),
        Some(ProjectAccess::ReadWrite) => {
            parts.push("project read-only, its agents write through orch's tools")
        }
    }
    if needs.data {
        parts.push("its own data folder");
    }
    if needs.fetch {
        parts.push("fetch from the hosts you list");
    }
    parts.join(", ")
}

/// `template` with a grant for each of `plugins` (a comment saying what it
/// is for, then the entry) at the top of `plugins.grants`.
fn config_text(template: &str, plugins: &[&Plugin]) -> String {
    const GRANTS: &str = "\"grants\": {\n";
    let Some(at) = template.find(GRANTS).map(|at| at + GRANTS.len()) else {
        return template.to_string();
    };
    let indent = " ".repeat(6);
    let entries: Vec<String> = plugins
        .iter()
        .filter_map(|plugin| {
            let needs = plugin.needs?;
            Some(format!(
                "{indent}// {}: {}.\n{indent}{}",
                plugin.file,
                needs.why,
                grant_entry(plugin, &needs)
            ))
        })
        .collect();
    if entries.is_empty() {
        return template.to_string();
    }
    format!(
        "{}{}\n{}",
        &template[..at],
        entries.join(",\n"),
        &template[at..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PluginGrant;

    fn plugin(file: &'static str, outcome: Outcome) -> Plugin {
        Plugin {
            file,
            sha256: format!("{:064x}", file.len()),
            needs: bundled::needs(file),
            outcome,
        }
    }

    #[test]
    fn the_written_config_grants_what_each_bundled_plugin_needs() {
        let plugins: Vec<Plugin> = bundled::NEEDS
            .iter()
            .map(|(file, _)| plugin(file, Outcome::Installed))
            .collect();
        let refs: Vec<&Plugin> = plugins.iter().collect();
        let text = config_text(crate::cli::demo::INIT_CONFIG, &refs);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("orch.json");
        std::fs::write(&file, &text).unwrap();
        let trusted = Overrides {
            trust_project: true,
            ..Overrides::default()
        };
        let config = crate::config::load_from(None, &file, &Default::default(), &trusted)
            .unwrap_or_else(|err| panic!("{err}\n{text}"));
        assert_eq!(config.plugins.grants.len(), bundled::NEEDS.len(), "{text}");
        for plugin in &plugins {
            let needs = plugin.needs.unwrap();
            assert_eq!(
                config.plugins.grants[plugin.file],
                PluginGrant {
                    sha256: plugin.sha256.clone(),
                    project: needs.project,
                    data: needs.data,
                    memory_mib: None,
                    fetch: Vec::new(),
                    headers: Default::default(),
                    config: None,
                },
                "{text}"
            );
            assert!(text.contains(needs.why), "{text}");
        }
    }

    #[test]
    fn without_grants_the_template_is_written_as_it_is() {
        let template = crate::cli::demo::INIT_CONFIG;
        assert_eq!(config_text(template, &[]), template);
        assert!(template.contains("\"grants\": {\n"));
    }

    #[test]
    fn a_kept_or_unneeding_plugin_gets_no_grant() {
        assert!(!plugin("metrics.wasm", Outcome::Kept).wants_grant());
        assert!(plugin("metrics.wasm", Outcome::UpToDate).wants_grant());
        assert!(!plugin("todo_stats.wasm", Outcome::Installed).wants_grant());
    }

    #[test]
    fn grant_entries_name_file_hash_and_access() {
        let webfetch = plugin("webfetch.wasm", Outcome::Installed);
        let entry = grant_entry(&webfetch, &webfetch.needs.unwrap());
        assert_eq!(
            entry,
            format!(
                "\"webfetch.wasm\": {{ \"sha256\": \"{}\", \"fetch\": [] }}",
                webfetch.sha256
            )
        );
        let metrics = plugin("metrics.wasm", Outcome::Installed);
        assert!(grant_entry(&metrics, &metrics.needs.unwrap()).ends_with("\"data\": true }"));
    }
}

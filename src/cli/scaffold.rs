//! `orch plugins new NAME --lang rust|python|js`: a new plugin in `./NAME/`
//! that builds and loads as it is, wherever it is written. The contract
//! (`wit/`) and, for Rust, the SDK (`plugins-sdk/`, not on crates.io) are
//! embedded in the binary and written into the plugin, so nothing depends on
//! an orch checkout. The sources come from `templates/plugin/`, the exact
//! files `docs/plugins.md` shows (a test keeps them equal); the toolchain pins
//! from the files `.ci/run` installs from.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::files::{self, Durability};

/// The language of a new plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust with the SDK, built by cargo for wasm32-wasip2.
    Rust,
    /// Python, built by componentize-py.
    Python,
    /// JavaScript, built by jco (QuickJS backend).
    #[value(alias = "javascript")]
    Js,
}

const WIT: &[(&str, &str)] = &[
    ("wit/plugin.wit", include_str!("../../wit/plugin.wit")),
    ("wit/README.md", include_str!("../../wit/README.md")),
];

const SDK: &[(&str, &str)] = &[
    (
        "sdk/Cargo.toml",
        include_str!("../../plugins-sdk/Cargo.toml"),
    ),
    ("sdk/README.md", include_str!("../../plugins-sdk/README.md")),
    (
        "sdk/src/lib.rs",
        include_str!("../../plugins-sdk/src/lib.rs"),
    ),
];

const RUST_MANIFEST: &str = include_str!("../../templates/plugin/rust/Cargo.toml");
const RUST_SOURCE: &str = include_str!("../../templates/plugin/rust/lib.rs");
/// The example plugins' lock file: the new plugin starts from the versions
/// orch's own plugins are built and tested with (cargo drops the rest).
const RUST_LOCK: &str = include_str!("../../example-plugins/Cargo.lock");
const PYTHON_SOURCE: &str = include_str!("../../templates/plugin/python/app.py");
/// `componentize-py==…`, the version `.ci/run` installs.
const PYTHON_REQUIREMENTS: &str = include_str!("../../example-plugins/python/requirements.txt");
const JS_SOURCE: &str = include_str!("../../templates/plugin/javascript/app.js");
/// jco, componentize-js and the preview2-shim override, as `.ci/run` installs them.
const JS_TOOLS: &str = include_str!("../../example-plugins/javascript/tools-package.json");

/// Names cargo refuses for a package (keywords, its own folders, the
/// standard crates) or that Windows cannot create.
const RESERVED: &[&str] = &[
    "as",
    "async",
    "await",
    "break",
    "const",
    "continue",
    "crate",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "fn",
    "for",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "type",
    "unsafe",
    "use",
    "where",
    "while",
    "abstract",
    "become",
    "box",
    "do",
    "final",
    "macro",
    "override",
    "priv",
    "typeof",
    "unsized",
    "virtual",
    "yield",
    "try",
    "gen",
    "build",
    "deps",
    "examples",
    "incremental",
    "test",
    "std",
    "core",
    "alloc",
    "proc_macro",
    "proc-macro",
    "con",
    "prn",
    "aux",
    "nul",
    "com1",
    "lpt1",
];

/// One file of a new plugin: its path inside the plugin folder and its text.
pub struct File {
    pub path: String,
    pub text: String,
}

/// What `orch plugins new` writes for `name` in `lang`, and the commands to
/// build it (run inside the plugin folder). `Err` says why `name` cannot
/// be a plugin's name.
pub fn plugin_files(name: &str, lang: Lang) -> anyhow::Result<(Vec<File>, Vec<String>)> {
    check_name(name, lang)?;
    let snake = name.replace('-', "_");
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{snake}}", &snake)
            .replace("{{camel}}", &camel(name))
    };
    let file = |path: &str, text: String| File {
        path: path.to_string(),
        text,
    };
    let wasm = format!("{snake}.wasm");
    let mut out: Vec<File> = WIT
        .iter()
        .map(|(path, text)| file(path, text.to_string()))
        .collect();
    let build = match lang {
        Lang::Rust => {
            out.extend(SDK.iter().map(|(path, text)| file(path, text.to_string())));
            out.push(file("Cargo.toml", fill(RUST_MANIFEST)));
            out.push(file("Cargo.lock", RUST_LOCK.to_string()));
            out.push(file("src/lib.rs", fill(RUST_SOURCE)));
            out.push(file(".gitignore", "/target\n".into()));
            vec![
                "rustup target add wasm32-wasip2".to_string(),
                "cargo build --target wasm32-wasip2 --release".to_string(),
            ]
        }
        Lang::Python => {
            out.push(file("app.py", fill(PYTHON_SOURCE)));
            out.push(file("requirements.txt", PYTHON_REQUIREMENTS.to_string()));
            out.push(file(
                ".gitignore",
                format!("/.venv\n__pycache__/\n/{wasm}\n"),
            ));
            vec![
                "python3 -m venv .venv".to_string(),
                ".venv/bin/pip install -r requirements.txt".to_string(),
                format!(".venv/bin/componentize-py -d wit -w plugin componentize app -o {wasm}"),
            ]
        }
        Lang::Js => {
            out.push(file("app.js", fill(JS_SOURCE)));
            out.push(file("package.json", js_package(name)?));
            out.push(file(".gitignore", format!("/node_modules\n/{wasm}\n")));
            vec![
                "npm install --no-audit --no-fund".to_string(),
                format!(
                    "npx jco componentize app.js --wit wit -n plugin --backend quickjs -o {wasm}"
                ),
            ]
        }
    };
    let artifact = match lang {
        Lang::Rust => format!("target/wasm32-wasip2/release/{wasm}"),
        Lang::Python | Lang::Js => wasm,
    };
    let mut commands = build;
    commands.push(format!("orch plugins check {artifact}"));
    out.push(file("README.md", readme(name, lang, &commands, &artifact)));
    Ok((out, commands))
}

/// `orch plugins new`: write the plugin into `base/name/` (refused when
/// that exists) and print what was written and how to build it.
pub fn new(base: &Path, name: &str, lang: Lang) -> anyhow::Result<()> {
    let (files, commands) = plugin_files(name, lang)?;
    let dir = base.join(name);
    // `create_dir` (not `_all`) fails if anything is there, even a dangling link.
    std::fs::create_dir(&dir).map_err(|err| match err.kind() {
        std::io::ErrorKind::AlreadyExists => {
            anyhow::anyhow!(
                "{} already exists; pick another name or remove it",
                dir.display()
            )
        }
        _ => anyhow::anyhow!("cannot create {}: {err}", dir.display()),
    })?;
    for file in &files {
        let path: PathBuf = dir.join(&file.path);
        files::replace(&path, file.text.as_bytes(), Durability::Synced)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "created {} ({} plugin, {} files)",
        dir.display(),
        lang_name(lang),
        files.len()
    );
    println!("build it (in {name}/):");
    for command in &commands {
        println!("  {command}");
    }
    println!(
        "install it: copy the .wasm into .opencode/plugins/ of a project (see {name}/README.md)"
    );
    Ok(())
}

fn lang_name(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "Rust",
        Lang::Python => "Python",
        Lang::Js => "JavaScript",
    }
}

/// A plugin name: a lowercase letter, then lowercase letters, digits, `-`
/// or `_`, at most 64 in all; not a name cargo or the file system refuses.
fn check_name(name: &str, lang: Lang) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let valid = name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        bail!(
            "plugin name {name:?}: expected a lowercase letter, then lowercase letters, digits, '-' or '_' (at most 64)"
        );
    }
    if RESERVED.contains(&name) {
        bail!(
            "plugin name {name:?} is reserved (a Rust keyword, a standard crate or a name cargo or the file system refuses); pick another"
        );
    }
    if lang == Lang::Rust {
        let normal = name.replace('-', "_");
        let taken = RUST_LOCK
            .lines()
            .filter_map(|line| line.strip_prefix("name = \""))
            .filter_map(|rest| rest.strip_suffix('"'))
            .any(|crate_name| crate_name.replace('-', "_") == normal);
        if taken {
            bail!(
                "plugin name {name:?} is the name of a crate the plugin depends on; pick another"
            );
        }
    }
    Ok(())
}

/// `word-count` → `WordCountPlugin`: the Rust type, never a name the
/// template imports or the prelude has.
fn camel(name: &str) -> String {
    let mut out: String = name
        .split(['-', '_'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            let first = chars.next().map(|c| c.to_ascii_uppercase());
            first.into_iter().chain(chars).collect::<String>()
        })
        .collect();
    if out == "Plugin" || !out.ends_with("Plugin") {
        out.push_str("Plugin");
    }
    out
}

/// The JavaScript plugin's `package.json`: the pinned toolchain of
/// `example-plugins/javascript/tools-package.json` under the plugin's name.
fn js_package(name: &str) -> anyhow::Result<String> {
    let tools: serde_json::Value =
        serde_json::from_str(JS_TOOLS).context("example-plugins/javascript/tools-package.json")?;
    let package = serde_json::json!({
        "name": name,
        "version": "0.1.0",
        "private": true,
        "type": "module",
        "description": "An orch plugin; preview2-shim is pinned because jco 1.35.0 with shim 0.26 cannot read the WIT folder",
        "dependencies": tools["dependencies"],
        "overrides": tools["overrides"],
    });
    Ok(serde_json::to_string_pretty(&package)? + "\n")
}

fn readme(name: &str, lang: Lang, commands: &[String], artifact: &str) -> String {
    let source = match lang {
        Lang::Rust => "src/lib.rs",
        Lang::Python => "app.py",
        Lang::Js => "app.js",
    };
    let mut text = format!(
        "# {name}\n\nAn orch plugin in {} (written by `orch plugins new`). Its code is\n`{source}`; `wit/` is the contract it speaks (`orch:plugin@0.1.1`){}.\nSee orch's `docs/plugins.md` for what a plugin can do.\n\n## Build\n\n```sh\n",
        lang_name(lang),
        if lang == Lang::Rust {
            " and `sdk/` the\nRust SDK (`orch-plugin-sdk`), both copied from the orch that wrote this\nplugin"
        } else {
            ""
        }
    );
    for command in commands {
        text.push_str(command);
        text.push('\n');
    }
    text.push_str(&format!(
        "```\n\n## Install\n\nCopy `{artifact}` into a project's `.opencode/plugins/` (or\n`~/.config/orch/plugins/`); `orch plugins list` shows it.\n"
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_anything_is_written() {
        for bad in [
            "", "Word", "1st", "-x", "a b", "a/b", "..", "fn", "test", "build",
        ] {
            assert!(
                plugin_files(bad, Lang::Python).is_err(),
                "{bad:?} was accepted"
            );
        }
        let err = plugin_files("serde_json", Lang::Rust)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("a crate the plugin depends on"), "{err}");
        assert!(plugin_files("serde_json", Lang::Python).is_ok());
        assert!(plugin_files("word-count", Lang::Rust).is_ok());
    }

    #[test]
    fn the_rust_type_never_shadows_an_import_or_the_prelude() {
        assert_eq!(camel("word-count"), "WordCountPlugin");
        assert_eq!(camel("result"), "ResultPlugin");
        assert_eq!(camel("plugin"), "PluginPlugin");
        assert_eq!(camel("my-plugin"), "MyPlugin");
        assert_eq!(camel("a__b"), "ABPlugin");
    }

    #[test]
    fn every_placeholder_is_filled_and_the_rust_plugin_needs_no_checkout() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            let (files, commands) = plugin_files("word-count", lang).unwrap();
            for file in &files {
                assert!(
                    !file.text.contains("{{"),
                    "{} keeps a placeholder",
                    file.path
                );
            }
            assert!(files.iter().any(|f| f.path == "wit/plugin.wit"));
            assert!(commands.last().unwrap().starts_with("orch plugins check "));
        }
        let (files, _) = plugin_files("word-count", Lang::Rust).unwrap();
        let manifest = &files.iter().find(|f| f.path == "Cargo.toml").unwrap().text;
        assert!(
            manifest.contains(r#"orch-plugin-sdk = { path = "sdk" }"#),
            "{manifest}"
        );
        assert!(!manifest.contains(".."), "{manifest}");
        let sdk = &files
            .iter()
            .find(|f| f.path == "sdk/src/lib.rs")
            .unwrap()
            .text;
        assert!(sdk.contains(r#"path: "../wit""#));
    }

    #[test]
    fn the_javascript_toolchain_is_pinned_exactly() {
        let (files, _) = plugin_files("word-count", Lang::Js).unwrap();
        let package: serde_json::Value = serde_json::from_str(
            &files
                .iter()
                .find(|f| f.path == "package.json")
                .unwrap()
                .text,
        )
        .unwrap();
        assert_eq!(package["dependencies"]["@bytecodealliance/jco"], "1.35.0");
        assert_eq!(
            package["overrides"]["@bytecodealliance/preview2-shim"],
            "0.25.0"
        );
        for version in package["dependencies"].as_object().unwrap().values() {
            let version = version.as_str().unwrap();
            assert!(
                version.chars().all(|c| c.is_ascii_digit() || c == '.'),
                "{version} is not an exact version"
            );
        }
        let (files, _) = plugin_files("word-count", Lang::Python).unwrap();
        let requirements = &files
            .iter()
            .find(|f| f.path == "requirements.txt")
            .unwrap()
            .text;
        assert_eq!(requirements.trim(), "componentize-py==0.25.1");
    }

    /// Every Rust, TOML, Python and JavaScript block of `docs/plugins.md`
    /// is a file `orch plugins new word-count` writes, marked
    /// `<!-- scaffold: LANG PATH -->`, and equal to it: the integration
    /// tests build and load the scaffolds, so the docs' examples build too.
    #[test]
    fn the_docs_show_exactly_what_the_scaffold_writes() {
        let doc = include_str!("../../docs/plugins.md");
        let mut shown = Vec::new();
        let mut previous = "";
        let mut lines = doc.lines();
        while let Some(line) = lines.next() {
            if let Some(fence) = line.strip_prefix("```")
                && !fence.is_empty()
            {
                let mut body = String::new();
                for line in lines.by_ref().take_while(|line| *line != "```") {
                    body.push_str(line);
                    body.push('\n');
                }
                let marker = previous
                    .strip_prefix("<!-- scaffold: ")
                    .and_then(|rest| rest.strip_suffix(" -->"));
                let Some((lang, path)) = marker.and_then(|marker| marker.split_once(' ')) else {
                    assert!(
                        !["rust", "toml", "python", "js", "javascript"].contains(&fence),
                        "docs/plugins.md: a ```{fence} block without a scaffold marker before it:\n{body}"
                    );
                    previous = line;
                    continue;
                };
                let lang = match lang {
                    "rust" => Lang::Rust,
                    "python" => Lang::Python,
                    "js" => Lang::Js,
                    other => panic!("docs/plugins.md: unknown language {other:?} in a marker"),
                };
                let (files, _) = plugin_files("word-count", lang).unwrap();
                let file = files
                    .iter()
                    .find(|file| file.path == path)
                    .unwrap_or_else(|| panic!("the {lang:?} scaffold writes no {path}"));
                assert_eq!(
                    body, file.text,
                    "docs/plugins.md shows another {path} than `orch plugins new word-count --lang {lang:?}` writes"
                );
                shown.push(format!("{lang:?} {path}"));
            }
            previous = line;
        }
        // The build commands it prints and the pinned Python install, as the docs give them.
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            let (_, commands) = plugin_files("word-count", lang).unwrap();
            for command in &commands {
                let command = command.replace("word_count.wasm", "");
                assert!(
                    doc.contains(command.trim_end()),
                    "docs/plugins.md does not give `{command}`"
                );
            }
        }
        let pinned = format!("pip install {}", PYTHON_REQUIREMENTS.trim());
        assert!(
            doc.contains(&pinned),
            "docs/plugins.md does not give `{pinned}`"
        );
        assert_eq!(
            shown,
            [
                "Rust Cargo.toml",
                "Rust src/lib.rs",
                "Python app.py",
                "Js package.json",
                "Js app.js"
            ]
        );
    }
}

//! `orch demo`: a small Rust library with a failing test, and the script a
//! whole mission runs on — the Planner writes the plan, two Workers edit in
//! parallel, the Reviewer approves, the engine's own `cargo test` catches
//! what the review missed, and the loop goes on until it passes.
//! Also the commented `orch.json` that `orch init` writes.

use std::path::Path;
use std::sync::Arc;

use anyhow::anyhow;

use crate::provider::ModelClient;
use crate::provider::scripted::{Script, ScriptedClient};

pub const GOAL: &str = "Fix count_words so the failing test passes, and add longest_line(text) in src/lines.rs with a test";

const SCRIPT: &str = include_str!("script.json");

const FILES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("project/Cargo.toml")),
    (".gitignore", include_str!("project/gitignore")),
    ("src/lib.rs", include_str!("project/src/lib.rs")),
    ("src/words.rs", include_str!("project/src/words.rs")),
];

/// The commented configuration `orch init` writes.
pub const INIT_CONFIG: &str = include_str!("init-orch.json");

/// Write the demo project into `dir`.
pub fn create_project(dir: &Path) -> std::io::Result<()> {
    for (path, text) in FILES {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, text)?;
    }
    Ok(())
}

/// The scripted provider playing every agent of the demo.
pub fn client() -> anyhow::Result<Arc<dyn ModelClient>> {
    let script = Script::parse(SCRIPT, "the embedded demo script").map_err(|err| anyhow!(err))?;
    Ok(Arc::new(ScriptedClient::new(script)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_embedded_script_parses() {
        assert!(super::client().is_ok());
    }

    #[test]
    fn the_init_config_is_valid_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("orch.json");
        std::fs::write(&file, super::INIT_CONFIG).unwrap();
        let config =
            crate::config::load_from(None, &file, &Default::default(), &Default::default());
        assert!(config.is_ok(), "{:?}", config.err());
    }
}

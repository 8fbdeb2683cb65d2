//! Project trust on the command line: `orch trust` (show and record), the
//! one-time prompt on a terminal, and the warning when a project's own
//! settings are ignored.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use super::{Cli, exit};
use crate::config::{self, Config, Surface, TrustStore};

/// `orch trust [--revoke]`.
pub fn trust(cli: &Cli, revoke: bool) -> anyhow::Result<u8> {
    let root = super::project_root(cli.dir.as_deref())?;
    let store = TrustStore::of_user()
        .ok_or_else(|| anyhow::anyhow!("no user config directory to record trust in"))?;
    if revoke {
        if store.revoke(&root)? {
            println!("{} is no longer trusted", root.display());
        } else {
            println!("{} was not trusted", root.display());
        }
        return Ok(exit::COMPLETE);
    }
    let config = config::load(&root, &cli.overrides())?;
    let surface = &config.trust.surface;
    if surface.is_empty() {
        println!(
            "{} has no settings, agents or plugins of its own that need trust",
            root.display()
        );
        return Ok(exit::COMPLETE);
    }
    println!("Trusting {} applies:", root.display());
    for line in surface.describe() {
        println!("  {line}");
    }
    store.record(&root, &surface.hash())?;
    println!(
        "trusted (recorded in {}); a change to any of these asks again",
        store.path().display()
    );
    Ok(exit::COMPLETE)
}

/// Words for what an untrusted project's settings would do, and how to
/// trust them: one warning.
pub fn ignored_warning(surface: &Surface) -> String {
    format!(
        "this project's own {} are ignored until you trust it: run `orch trust` to review and trust them (or pass --trust-project for one run)",
        surface.names().join(", ")
    )
}

/// On a terminal, ask once whether to trust what `config` ignored; a yes
/// is recorded and the configuration loaded again. Returns the config to
/// use and, when it stays untrusted, the warning to show.
pub fn settle(
    root: &Path,
    config: Config,
    interactive: bool,
    reload: impl FnOnce() -> anyhow::Result<Config>,
) -> anyhow::Result<(Config, Option<String>)> {
    let Some(surface) = config.trust.ignored().cloned() else {
        return Ok((config, None));
    };
    if !interactive || !std::io::stdin().is_terminal() {
        return Ok((config, Some(ignored_warning(&surface))));
    }
    let mut err = std::io::stderr();
    let _ = writeln!(
        err,
        "This project ({}) has settings of its own that would make orch:",
        root.display()
    );
    for line in surface.describe() {
        let _ = writeln!(err, "  {}", crate::text::printable(&line));
    }
    let _ = write!(err, "Trust this project? [y/N] ");
    let _ = err.flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
        return Ok((config, Some(ignored_warning(&surface))));
    }
    if let Some(store) = TrustStore::of_user() {
        store.record(root, &surface.hash())?;
    }
    Ok((reload()?, None))
}

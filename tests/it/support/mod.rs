//! Shared test fixtures.

pub mod http;
pub mod log;
pub mod missions;
pub mod project;
pub mod prompt_cache;
pub mod pty;
pub mod sim;

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Say in the test run's output that `test` did not run, and why. The
/// harness hides what passing tests print with `eprintln!`, so this writes
/// to the process's standard error directly: a skip is never silent.
pub fn skipped(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "test {test} ... skipped: {why}");
}

/// [`skipped`] for a tool `.ci/run` installs: under CI (`CI` set) its
/// absence fails the test instead.
pub fn skipped_unless_ci(test: &str, why: &str) {
    assert!(std::env::var_os("CI").is_none(), "{test}: {why}");
    skipped(test, why);
}

/// The target directory of this test run: `CARGO_TARGET_DIR` (relative to
/// the repository when relative), else the repository's `target/`.
pub fn target_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

/// componentize-py and jco as `.ci/run` installs them, under
/// `<target dir>/plugin-tools/`. Missing, `test` is reported skipped and
/// `None` returned; under CI (`CI` set) missing tools fail the test.
pub fn plugin_toolchains(test: &str) -> Option<(PathBuf, PathBuf)> {
    let tools = target_dir().join("plugin-tools");
    let componentize_py = tools.join("venv/bin/componentize-py");
    let jco = tools.join("js/node_modules/.bin/jco");
    if componentize_py.exists() && jco.exists() {
        return Some((componentize_py, jco));
    }
    skipped_unless_ci(
        test,
        &format!(
            "componentize-py or jco is not installed under {} (.ci/run installs them)",
            tools.display()
        ),
    );
    None
}

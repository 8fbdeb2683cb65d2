//! Shared test fixtures.

pub mod http;
pub mod log;
pub mod missions;
pub mod project;
pub mod prompt_cache;
pub mod pty;
pub mod sim;

use std::io::Write as _;

/// Say in the test run's output that `test` did not run, and why. The
/// harness hides what passing tests print with `eprintln!`, so this writes
/// to the process's standard error directly: a skip is never silent.
pub fn skipped(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "test {test} ... skipped: {why}");
}

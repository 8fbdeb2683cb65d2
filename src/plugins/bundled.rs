//! The Rust example plugins (`example-plugins/`), built for wasm32-wasip2 by
//! `build.rs` and embedded in the binary. `orch init` copies them into
//! `.opencode/plugins/`; from there they load like any other plugin (compiled
//! into the cache, checked, granted by hash), never from these bytes.

use crate::config::ProjectAccess;

/// Every bundled plugin: its file name (`metrics.wasm`) and component bytes,
/// sorted by file name. Empty when the plugin build failed (see [`MISSING`]).
pub const PLUGINS: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/bundled_plugins.rs"));

/// Why this binary has no bundled plugins (the wasm32-wasip2 build failed,
/// e.g. the target is not installed), or `None`.
pub const MISSING: Option<&str> = include!(concat!(env!("OUT_DIR"), "/bundled_reason.rs"));

/// What a bundled plugin needs granted in `orch.json` to do its work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// Access to the project root (mounted read-only at `/project`).
    pub project: Option<ProjectAccess>,
    /// Its own data folder (`/data`).
    pub data: bool,
    /// A `fetch` list: granted empty, the user adds the hosts.
    pub fetch: bool,
    /// What the grant is for, in words (a comment beside it).
    pub why: &'static str,
}

/// The grants bundled plugins need, by file name; a plugin not listed needs none.
pub const NEEDS: &[(&str, Needs)] = &[
    (
        "doc_writer.wasm",
        Needs {
            project: Some(ProjectAccess::ReadWrite),
            data: false,
            fetch: false,
            why: "its DocWriter agent writes documentation through orch's file tools",
        },
    ),
    (
        "codesearch.wasm",
        Needs {
            project: None,
            data: false,
            fetch: true,
            why: "offers codesearch once configured: \"fetch\": [\"api.github.com\"], \"headers\": {\"api.github.com\": {\"Authorization\": \"Bearer ${GITHUB_TOKEN}\"}}, \"config\": {\"provider\": \"github\"} (docs/plugins.md)",
        },
    ),
    (
        "diff.wasm",
        Needs {
            project: Some(ProjectAccess::Read),
            data: false,
            fetch: false,
            why: "reads the files it compares",
        },
    ),
    (
        "jq.wasm",
        Needs {
            project: Some(ProjectAccess::Read),
            data: false,
            fetch: false,
            why: "reads the JSON files it queries",
        },
    ),
    (
        "metrics.wasm",
        Needs {
            project: None,
            data: true,
            fetch: false,
            why: "writes its report to .opencode/plugin-data/metrics/metrics.json",
        },
    ),
    (
        "webfetch.wasm",
        Needs {
            project: None,
            data: false,
            fetch: true,
            why: "reaches only the hosts listed in \"fetch\", e.g. [\"docs.rs\", \"*.python.org\"]; add them to allow it",
        },
    ),
    (
        "websearch.wasm",
        Needs {
            project: None,
            data: false,
            fetch: true,
            why: "offers websearch once configured: \"config\": {\"provider\": \"searxng\", \"endpoint\": \"https://your.searx\"} with that host in \"fetch\", or Brave (docs/plugins.md)",
        },
    ),
];

/// The grant `file` needs, if any.
pub fn needs(file: &str) -> Option<Needs> {
    NEEDS
        .iter()
        .find(|(name, _)| *name == file)
        .map(|(_, needs)| *needs)
}

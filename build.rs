//! Builds the Rust example plugins (`example-plugins/`, their own workspace)
//! for wasm32-wasip2 and bundles them into the binary: every `.wasm` a
//! workspace member produces is copied into `OUT_DIR`, and two generated
//! expressions are included by `src/plugins/bundled.rs`:
//!
//! - `bundled_plugins.rs`: `&[(file_name, include_bytes!(...))]`, by file name;
//! - `bundled_reason.rs`: `None`, or `Some(why the list is empty)`.
//!
//! The command and target directory are the ones the plugin tests and
//! benchmarks use (`target/wasm-plugins/`), so they share the artifacts.
//! A failed plugin build never fails orch's build: it becomes one warning
//! and an empty list carrying the reason.

use std::collections::BTreeSet;
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const WASM_TARGET: &str = "wasm32-wasip2";
const FIX: &str = "rustup target add wasm32-wasip2";

/// Variables the outer cargo sets for this build script (or that it runs
/// under, such as clippy's wrapper) which would make the nested build
/// compile differently from the tests' identical command, or compile the
/// plugins for the host's cfgs. User configuration (`CARGO_HOME`,
/// `CARGO_NET_*`, `CARGO_PROFILE_*`, ...) and the jobserver
/// (`CARGO_MAKEFLAGS`, so the nested build shares the outer job slots) pass.
const REMOVED: &[&str] = &[
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "RUSTC",
    "RUSTDOC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTC_LINKER",
    "CLIPPY_ARGS",
    "CLIPPY_CONF_DIR",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_CRATE_NAME",
    "OUT_DIR",
    "TARGET",
    "HOST",
    "NUM_JOBS",
    "OPT_LEVEL",
    "DEBUG",
    "PROFILE",
];
const REMOVED_PREFIXES: &[&str] = &[
    "CARGO_CFG_",
    "CARGO_FEATURE_",
    "CARGO_PKG_",
    "CARGO_MANIFEST_",
    "DEP_",
    "__CARGO_",
];

fn main() {
    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let workspace = root.join("example-plugins");

    println!("cargo:rerun-if-changed=build.rs");
    let (list, reason) = match bundle(&root, &workspace, &out) {
        Ok(list) => (list, None),
        Err(reason) => {
            println!(
                "cargo:warning=orch is built without its bundled plugins: {reason}; `orch init` will not install them"
            );
            (Vec::new(), Some(reason))
        }
    };

    let mut plugins = String::from("&[\n");
    for (file, path) in &list {
        plugins.push_str(&format!("    ({file:?}, include_bytes!({path:?})),\n"));
    }
    plugins.push(']');
    write_if_changed(&out.join("bundled_plugins.rs"), &plugins);
    let reason = match reason {
        Some(reason) => format!("Some({reason:?})"),
        None => "None".to_string(),
    };
    write_if_changed(&out.join("bundled_reason.rs"), &reason);
}

/// Build the workspace and copy its `.wasm` files into `out`: `(file name,
/// path in out)`, by file name. `Err` says why not, in one line.
fn bundle(root: &Path, workspace: &Path, out: &Path) -> Result<Vec<(String, String)>, String> {
    let manifest = workspace.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(format!("{} is missing", manifest.display()));
    }
    watch(root, workspace);
    target_installed()?;

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--release", "--locked", "--target", WASM_TARGET])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(root.join("target").join("wasm-plugins"))
        .arg("--message-format=json-render-diagnostics");
    scrub(&mut command);
    let output = command
        .output()
        .map_err(|err| format!("could not run cargo: {err}"))?;
    // The nested cargo's own report, kept in this script's `stderr` file
    // (shown by `cargo build -vv`).
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprint!("{stderr}");
    if !output.status.success() {
        let first_error = stderr
            .lines()
            .find(|line| line.starts_with("error"))
            .unwrap_or("no error message")
            .trim();
        return Err(format!(
            "`cargo build --target {WASM_TARGET}` of example-plugins failed ({first_error}); fix it and build orch again (`touch build.rs` first if nothing in example-plugins/ changed)"
        ));
    }

    let members_root = workspace
        .canonicalize()
        .unwrap_or_else(|_| workspace.to_path_buf());
    let mut wasm = BTreeSet::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        // Artifacts of the workspace's own members, not of their dependencies.
        let member = message["manifest_path"]
            .as_str()
            .and_then(|manifest| Path::new(manifest).canonicalize().ok())
            .is_some_and(|manifest| manifest.starts_with(&members_root));
        if message["reason"] != "compiler-artifact" || !member {
            continue;
        }
        let files = message["filenames"].as_array().into_iter().flatten();
        for file in files.filter_map(Value::as_str) {
            if file.ends_with(".wasm") {
                wasm.insert(PathBuf::from(file));
            }
        }
    }
    if wasm.is_empty() {
        return Err("example-plugins built no .wasm component".into());
    }

    let mut list = Vec::new();
    for source in wasm {
        let name = source
            .file_name()
            .and_then(|name| name.to_str())
            .ok_or_else(|| format!("unexpected artifact {}", source.display()))?
            .to_string();
        let copy = out.join(&name);
        let bytes =
            std::fs::read(&source).map_err(|err| format!("reading {}: {err}", source.display()))?;
        if std::fs::read(&copy).ok().as_deref() != Some(&bytes[..]) {
            std::fs::write(&copy, &bytes)
                .map_err(|err| format!("writing {}: {err}", copy.display()))?;
        }
        let copy = copy
            .to_str()
            .ok_or_else(|| format!("OUT_DIR is not UTF-8: {}", out.display()))?
            .to_string();
        list.push((name, copy));
    }
    Ok(list)
}

/// `Err` when the toolchain has no standard library for wasm32-wasip2.
/// The toolchain's component list is watched, so adding the target reruns
/// this script.
fn target_installed() -> Result<(), String> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    let Some(rustlib) = sysroot.map(|sysroot| sysroot.join("lib").join("rustlib")) else {
        // Unknown sysroot: let the build say what is wrong.
        return Ok(());
    };
    // rustup rewrites `components` when a target is added.
    let components = rustlib.join("components");
    let watched = if components.is_file() {
        components
    } else {
        rustlib.clone()
    };
    println!("cargo:rerun-if-changed={}", watched.display());
    if rustlib.join(WASM_TARGET).join("lib").is_dir() {
        Ok(())
    } else {
        Err(format!(
            "the {WASM_TARGET} target is not installed (run `{FIX}`, then build orch again)"
        ))
    }
}

/// `cargo:rerun-if-changed` for what the plugins are built from: the
/// workspace manifest and lock file, each member's manifest, source folders
/// and build script, the SDK and the WIT contract. Nothing else in
/// `example-plugins/` (the Python/JavaScript plugins, an in-place `target/`)
/// reruns the nested build.
fn watch(root: &Path, workspace: &Path) {
    let mut paths = BTreeSet::from([
        workspace.join("Cargo.toml"),
        workspace.join("Cargo.lock"),
        root.join("plugins-sdk").join("Cargo.toml"),
        root.join("plugins-sdk").join("src"),
        root.join("wit"),
    ]);
    paths.extend(member_sources(workspace));
    for path in paths {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// The members' manifests and source folders, from `cargo metadata`; when
/// that fails (a broken manifest), every subfolder with a `Cargo.toml`.
fn member_sources(workspace: &Path) -> Vec<PathBuf> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"));
    scrub(&mut command);
    let metadata = command
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| serde_json::from_slice::<Value>(&output.stdout).ok());
    let mut paths = Vec::new();
    if let Some(metadata) = metadata {
        for package in metadata["packages"].as_array().into_iter().flatten() {
            if let Some(manifest) = package["manifest_path"].as_str() {
                paths.push(PathBuf::from(manifest));
            }
            for target in package["targets"].as_array().into_iter().flatten() {
                let Some(source) = target["src_path"].as_str().map(Path::new) else {
                    continue;
                };
                let build_script = target["kind"]
                    .as_array()
                    .is_some_and(|kinds| kinds.iter().any(|kind| kind == "custom-build"));
                match source.parent() {
                    Some(folder) if !build_script => paths.push(folder.to_path_buf()),
                    _ => paths.push(source.to_path_buf()),
                }
            }
        }
        return paths;
    }
    let members = std::fs::read_dir(workspace).into_iter().flatten().flatten();
    for member in members.map(|entry| entry.path()) {
        if member.join("Cargo.toml").is_file() {
            paths.push(member.join("Cargo.toml"));
            paths.push(member.join("src"));
        }
    }
    paths
}

/// Remove what would leak this build's configuration into a nested cargo.
fn scrub(command: &mut Command) {
    for (name, _) in env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if REMOVED.contains(&name) || REMOVED_PREFIXES.iter().any(|p| name.starts_with(p)) {
            command.env_remove(name);
        }
    }
}

fn write_if_changed(path: &Path, text: &str) {
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        std::fs::write(path, text)
            .unwrap_or_else(|err| panic!("writing {}: {err}", path.display()));
    }
}

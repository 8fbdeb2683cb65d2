//! Search tool benchmark (run with `cargo bench --bench search`): structural
//! search against regex search on a generated ~50 000-line Rust tree.
//!
//! Times `ast_search` with the pattern `$X.unwrap()` and the built-in `grep`
//! with the comparable regex `\.unwrap\(\)`, each a full call through
//! `Tool::call` (walk, read, parse or scan, format), median and fastest of
//! several runs after one warm-up, and prints how many matches each found
//! (`grep` also counts the comment and string mentions that `ast_search`
//! skips). Prints numbers; asserts only that both tools answered.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orch::tools::{ToolContext, ToolRegistry};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Files in the generated tree, and lines in each (≈ 50 000 in all).
const FILES: usize = 200;
const FUNCTIONS_PER_FILE: usize = 14;
/// Measured runs per tool.
const RUNS: usize = 7;

fn ctx(root: &Path) -> ToolContext {
    ToolContext {
        root: Arc::new(root.to_path_buf()),
        session: "bench".into(),
        agent: "Worker".into(),
        role: orch::agents::Role::Worker,
        call_id: "call-1".into(),
        cancel: CancellationToken::new(),
        limits: Arc::new(orch::config::ToolsConfig::default()),
        sandbox: Some(orch::sandbox::Profile::Write),
        seen: Arc::default(),
        may_write: true,
    }
}

/// One generated module: functions with a real `.unwrap()` call every
/// few, and mentions of it in comments and strings that only a regex sees.
fn module(index: usize) -> String {
    let mut out = format!("//! Generated module {index}.\n\nuse std::collections::HashMap;\n\n");
    for function in 0..FUNCTIONS_PER_FILE {
        let unwrap = if function % 5 == 0 {
            "value.parse::<u64>().unwrap()"
        } else {
            "value.parse::<u64>().unwrap_or(0)"
        };
        // One comment and one string mention per file keeps `grep` under its
        // 2000-line cap, so both tools scan the whole tree.
        let (doc, label) = if function == 0 {
            ("never calls .unwrap() on user input", "call .unwrap() here")
        } else {
            ("reads the entry", "plain label")
        };
        writeln!(
            out,
            "/// Parses entry {function}: {doc}.
pub fn entry_{index}_{function}(map: &HashMap<String, String>, key: &str) -> u64 {{
    let value = match map.get(key) {{
        Some(value) => value.trim(),
        None => return 0,
    }};
    let label = \"{label}\";
    if label.len() > 100 {{
        return 1;
    }}
    let mut total = 0u64;
    for (offset, byte) in value.bytes().enumerate() {{
        total = total.wrapping_add(byte as u64 * offset as u64);
    }}
    let parsed = {unwrap};
    total.wrapping_add(parsed)
}}
"
        )
        .expect("write to a string");
    }
    out
}

async fn time(
    registry: &ToolRegistry,
    ctx: &ToolContext,
    tool: &str,
    args: Value,
) -> (Duration, Duration, usize) {
    let tool = registry.get(tool).expect("tool registered").clone();
    let mut runs = Vec::with_capacity(RUNS);
    let mut matches = 0;
    for run in 0..=RUNS {
        let start = Instant::now();
        let output = tool.call(args.clone(), ctx).await;
        let took = start.elapsed();
        assert!(!output.is_error, "{}", output.content);
        matches = output
            .content
            .lines()
            .filter(|line| !line.starts_with('['))
            .count();
        if run > 0 {
            runs.push(took);
        }
    }
    runs.sort();
    (runs[runs.len() / 2], runs[0], matches)
}

#[tokio::main]
async fn main() {
    println!("orch search benchmarks");
    let dir = tempfile::tempdir().expect("temp dir");
    let root = std::fs::canonicalize(dir.path()).expect("canonical temp dir");
    let mut lines = 0;
    for index in 0..FILES {
        let text = module(index);
        lines += text.lines().count();
        let path = root.join(format!("src/m{:02}/f{index}.rs", index % 20));
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
        std::fs::write(path, text).expect("write module");
    }
    println!("tree: {FILES} Rust files, {lines} lines");
    let registry = ToolRegistry::builtins();
    let ctx = ctx(&root);
    let cases = [
        (
            "ast_search",
            json!({ "pattern": "$X.unwrap()", "max": 2000 }),
        ),
        ("grep", json!({ "pattern": r"\.unwrap\(\)", "max": 2000 })),
    ];
    for (tool, args) in cases {
        let (median, fastest, matches) = time(&registry, &ctx, tool, args.clone()).await;
        println!(
            "{tool:<11} {:<28} median {:>7.1} ms, fastest {:>7.1} ms, {matches} matches",
            args["pattern"].as_str().unwrap_or_default(),
            median.as_secs_f64() * 1000.0,
            fastest.as_secs_f64() * 1000.0,
        );
    }
}

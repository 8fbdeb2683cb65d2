//! `glob` and `grep` on real trees.

use orch::tools::Tool;
use orch::tools::search::{Glob, Grep};
use serde_json::json;

use super::{Fixture, assert_error, assert_ok};

fn tree() -> Fixture {
    let fx = Fixture::new();
    fx.write(".gitignore", "target/\n*.log\n")
        .write("Cargo.toml", "[package]\nname = \"demo\"\n")
        .write("src/main.rs", "fn main() {\n    println!(\"hello\");\n}\n")
        .write(
            "src/util/mod.rs",
            "pub fn hello() -> &'static str {\n    \"hello\"\n}\n",
        )
        .write("target/debug/build.rs", "fn hello() {}\n")
        .write("notes.log", "hello from the log\n")
        .write(".github/workflows/ci.yml", "run: cargo test # hello\n")
        .write(".git/HEAD", "ref: refs/heads/hello\n");
    fx
}

#[tokio::test]
async fn glob_without_a_slash_matches_names_at_any_depth() {
    let fx = tree();
    let output = fx.call("glob", json!({ "pattern": "*.rs" })).await;
    assert_ok(&output);
    assert_eq!(output.content, "src/main.rs\nsrc/util/mod.rs\n");
}

#[tokio::test]
async fn glob_with_a_slash_matches_paths_under_the_search_dir() {
    let fx = tree();
    let top = fx.call("glob", json!({ "pattern": "src/*.rs" })).await;
    assert_eq!(top.content, "src/main.rs\n");
    let deep = fx.call("glob", json!({ "pattern": "src/**/*.rs" })).await;
    assert_eq!(deep.content, "src/main.rs\nsrc/util/mod.rs\n");
    let under = fx
        .call("glob", json!({ "pattern": "util/*.rs", "path": "src" }))
        .await;
    assert_eq!(
        under.content, "src/util/mod.rs\n",
        "results stay relative to the root"
    );
}

#[tokio::test]
async fn glob_respects_gitignore_and_skips_dot_git_but_not_other_hidden_files() {
    let fx = tree();
    let output = fx.call("glob", json!({ "pattern": "**" })).await;
    assert_ok(&output);
    assert_eq!(
        output.content,
        ".github/workflows/ci.yml\n.gitignore\nCargo.toml\nsrc/main.rs\nsrc/util/mod.rs\n"
    );
}

#[tokio::test]
async fn glob_caps_results_and_reports_nothing_found() {
    let mut fx = Fixture::new();
    fx.limits.max_entries = 2;
    for n in 0..5 {
        fx.write(&format!("f{n}.txt"), "");
    }
    let output = fx.call("glob", json!({ "pattern": "*.txt" })).await;
    assert_eq!(
        output.content,
        "f0.txt\nf1.txt\n[… 3 more files not shown (5 in all); narrow the pattern or path]\n"
    );
    let none = fx.call("glob", json!({ "pattern": "*.md" })).await;
    assert_ok(&none);
    assert_eq!(none.content, "no files match \"*.md\" in .");
    assert_error(
        &fx.call("glob", json!({ "pattern": "[" })).await,
        "invalid glob pattern",
    );
}

#[tokio::test]
async fn grep_prints_path_line_text_and_respects_gitignore() {
    let fx = tree();
    let output = fx.call("grep", json!({ "pattern": "hello" })).await;
    assert_ok(&output);
    assert_eq!(
        output.content,
        ".github/workflows/ci.yml:1: run: cargo test # hello\n\
         src/main.rs:2:     println!(\"hello\");\n\
         src/util/mod.rs:1: pub fn hello() -> &'static str {\n\
         src/util/mod.rs:2:     \"hello\"\n"
    );
}

#[tokio::test]
async fn grep_filters_by_glob_and_path() {
    let fx = tree();
    let rust = fx
        .call("grep", json!({ "pattern": "fn \\w+", "glob": "*.rs" }))
        .await;
    assert_eq!(
        rust.content,
        "src/main.rs:1: fn main() {\nsrc/util/mod.rs:1: pub fn hello() -> &'static str {\n"
    );
    let one_file = fx
        .call("grep", json!({ "pattern": "hello", "path": "src/main.rs" }))
        .await;
    assert_eq!(
        one_file.content,
        "src/main.rs:2:     println!(\"hello\");\n"
    );
    let dir = fx
        .call(
            "grep",
            json!({ "pattern": "(?i)HELLO", "path": "src/util" }),
        )
        .await;
    assert_eq!(dir.content.lines().count(), 2, "{}", dir.content);
    let none = fx.call("grep", json!({ "pattern": "nothing-here" })).await;
    assert_ok(&none);
    assert_eq!(none.content, "no matches for \"nothing-here\" in .");
}

#[tokio::test]
async fn grep_caps_matches_with_a_note() {
    let mut fx = Fixture::new();
    fx.limits.grep_max_matches = 3;
    fx.write("a.txt", &"match\n".repeat(4))
        .write("b.txt", &"match\n".repeat(4));
    let default = fx.call("grep", json!({ "pattern": "match" })).await;
    assert_eq!(
        default.content,
        "a.txt:1: match\na.txt:2: match\na.txt:3: match\n\
         [… stopped at 3 matching lines; narrow the pattern, path or glob]\n"
    );
    let five = fx
        .call("grep", json!({ "pattern": "match", "max": 5 }))
        .await;
    assert_eq!(
        five.content
            .lines()
            .filter(|l| l.ends_with(": match"))
            .count(),
        5
    );
    assert!(five.content.contains("b.txt:1: match"));
    assert!(five.content.contains("stopped at 5"));
    let all = fx
        .call("grep", json!({ "pattern": "match", "max": 8 }))
        .await;
    assert!(
        !all.content.contains("stopped"),
        "exactly at the cap is not truncated"
    );
}

#[tokio::test]
async fn grep_skips_binary_files_and_truncates_long_lines() {
    let fx = Fixture::new();
    let mut binary = b"needle at the start\n".to_vec();
    binary.extend_from_slice(&[0u8; 64]);
    std::fs::write(fx.path("blob.bin"), binary).unwrap();
    fx.write("long.txt", &format!("needle {}\n", "y".repeat(5000)));
    let output = fx.call("grep", json!({ "pattern": "needle" })).await;
    assert_ok(&output);
    assert!(!output.content.contains("blob.bin"), "{}", output.content);
    assert!(output.content.starts_with("long.txt:1: needle yyy"));
    assert!(output.content.len() < 400, "{}", output.content.len());
    assert!(output.content.contains('…'));
}

#[tokio::test]
async fn grep_reports_an_invalid_regex_readably() {
    let fx = tree();
    let output = fx.call("grep", json!({ "pattern": "fn (" })).await;
    assert_error(&output, "invalid regex \"fn (\"");
    let output = fx
        .call("grep", json!({ "pattern": "x", "path": "missing" }))
        .await;
    assert_error(&output, "\"missing\" does not exist");
}

#[tokio::test]
async fn search_stops_when_cancelled() {
    let fx = tree();
    fx.cancel.cancel();
    // Called directly: the router would refuse before the tool started.
    let grep = Grep.call(json!({ "pattern": "hello" }), &fx.ctx()).await;
    assert_error(&grep, "cancelled");
    let glob = Glob.call(json!({ "pattern": "*" }), &fx.ctx()).await;
    assert_error(&glob, "cancelled");
}

#[tokio::test]
async fn walks_skip_the_engines_own_records_but_not_the_plan() {
    let fx = Fixture::new();
    fx.write("src/lib.rs", "// needle\n")
        .write(".opencode/todo.md", "- [ ] T1: needle\n")
        .write(
            ".opencode/sessions/worker-1.jsonl",
            "{\"text\":\"needle\"}\n",
        )
        .write(
            ".opencode/missions/m-1/events.jsonl",
            "{\"text\":\"needle\"}\n",
        )
        .write(".opencode/cache/x.bin", "needle\n");
    let grep = fx.call("grep", json!({ "pattern": "needle" })).await;
    assert_ok(&grep);
    assert_eq!(grep.content.lines().count(), 2, "{}", grep.content);
    assert!(
        grep.content.contains(".opencode/todo.md:1:"),
        "{}",
        grep.content
    );
    assert!(grep.content.contains("src/lib.rs:1:"), "{}", grep.content);
    let glob = fx.call("glob", json!({ "pattern": "**" })).await;
    assert_eq!(glob.content, ".opencode/todo.md\nsrc/lib.rs\n");
    let list = fx.call("list", json!({ "path": ".opencode" })).await;
    assert_eq!(list.content.trim(), ".opencode/todo.md");
}

#[tokio::test]
async fn mgrep_groups_lines_by_pattern_in_one_pass() {
    let fx = tree();
    fx.write("src/bin.dat", "hello\0binary\n");
    let output = fx
        .call(
            "mgrep",
            json!({ "patterns": ["hello", "fn \\w+", "absent_name"] }),
        )
        .await;
    assert_ok(&output);
    assert_eq!(
        output.content,
        "## \"hello\": 4 lines in 3 files\n\
         .github/workflows/ci.yml:1: run: cargo test # hello\n\
         src/main.rs:2:     println!(\"hello\");\n\
         src/util/mod.rs:1: pub fn hello() -> &'static str {\n\
         src/util/mod.rs:2:     \"hello\"\n\
         ## \"fn \\\\w+\": 2 lines in 2 files\n\
         src/main.rs:1: fn main() {\n\
         src/util/mod.rs:1: pub fn hello() -> &'static str {\n\
         ## \"absent_name\": no matches in .\n",
        "ignored, .git and binary files are skipped; a line matching two patterns is in both groups"
    );
}

#[tokio::test]
async fn mgrep_caps_each_pattern_on_its_own_and_names_a_bad_pattern() {
    let fx = Fixture::new();
    let many: String = (0..50).map(|i| format!("alpha {i}\n")).collect();
    fx.write("a.txt", &many).write("b.txt", "beta\n");
    let output = fx
        .call("mgrep", json!({ "patterns": ["alpha", "beta"], "max": 3 }))
        .await;
    assert_ok(&output);
    assert_eq!(
        output.content,
        "## \"alpha\": first 3 lines in 1 file\n\
         a.txt:1: alpha 0\na.txt:2: alpha 1\na.txt:3: alpha 2\n\
         [… stopped at 3 lines for this pattern; narrow it, the path or the glob]\n\
         ## \"beta\": 1 line in 1 file\nb.txt:1: beta\n",
        "a full group does not stop the others"
    );
    let bad = fx
        .call("mgrep", json!({ "patterns": ["ok", "(unclosed"] }))
        .await;
    assert_error(&bad, "invalid regex patterns[1] \"(unclosed\"");
    let none = fx.call("mgrep", json!({ "patterns": [] })).await;
    assert_error(&none, "mgrep takes 1 to 20 patterns, got 0");
}

#[tokio::test]
async fn file_stats_counts_per_extension_and_folder_without_ignored_files() {
    let fx = tree();
    fx.write("src/logo.png", "\u{0}PNG\n\n\n")
        .write("docs/guide.md", "# Guide\n\nText.")
        .write("node_modules/x/index.js", "a\nb\nc\n");
    let output = fx.call("file_stats", json!({})).await;
    assert_ok(&output);
    let text = &output.content;
    let head = text.lines().next().unwrap();
    assert_eq!(
        head, ".: 167 B in 7 files, 14 lines (1 binary)",
        "in {text}"
    );
    let row = |name: &str| {
        text.lines()
            .find(|line| line.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row {name} in {text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(row(".rs"), ".rs 6 lines 84 B 2 files");
    assert_eq!(
        row(".md"),
        ".md 3 lines 14 B 1 file",
        "a last line without newline counts"
    );
    assert_eq!(row(".yml"), ".yml 1 line 24 B 1 file");
    assert_eq!(row(".png"), ".png 0 lines 7 B 1 file (1 binary)");
    assert_eq!(row("src/"), "src/ 6 lines 91 B 3 files (1 binary)");
    assert_eq!(row("./"), "./ 4 lines 38 B 2 files");
    assert!(
        !text.contains("node_modules") && !text.contains(".log"),
        "{text}"
    );
    let deeper = fx
        .call("file_stats", json!({ "path": "src", "depth": 2 }))
        .await;
    assert_ok(&deeper);
    assert!(
        deeper.content.contains("by folder (depth 2):"),
        "{}",
        deeper.content
    );
    assert!(deeper.content.contains("  util/ "), "{}", deeper.content);
    let bad = fx.call("file_stats", json!({ "depth": 9 })).await;
    assert_error(&bad, "depth must be 1 to 4, got 9");
}

#[tokio::test]
async fn mgrep_anchors_at_the_end_of_a_line_as_grep_does() {
    let fx = Fixture::new();
    fx.write("a.txt", "foo\nbar foo\r\nfoo bar\n");
    let output = fx
        .call("mgrep", json!({ "patterns": ["foo$", "^bar"] }))
        .await;
    assert_ok(&output);
    assert_eq!(
        output.content,
        "## \"foo$\": 2 lines in 1 file\na.txt:1: foo\na.txt:2: bar foo\n\
         ## \"^bar\": 1 line in 1 file\na.txt:2: bar foo\n"
    );
}

//! `ast_search` and `ast_replace` on real Rust, TypeScript and Python trees,
//! called through the router as a session calls them.

use serde_json::json;

use super::{Fixture, assert_error, assert_ok};

const LIB_RS: &str = r#"//! Calls old_name here and there.

pub fn old_name(a: u32, b: u32) -> u32 {
    a + b
}

pub fn caller() -> u32 {
    // old_name(1, 2) in a comment stays
    let label = "old_name(3, 4) in a string stays";
    let _ = label;
    old_name(1, 2) + old_name(
        3,
        4,
    )
}
"#;

const MAIN_RS: &str = "use demo::*;\n\nfn main() {\n    let total = old_name(5, 6);\n    println!(\"old_name(5, 6) = {total}\");\n}\n";

const APP_TS: &str = "// old_name(x) in a comment\nexport function run(x: number): number {\n  const s = \"old_name(x)\";\n  return old_name(x, s.length);\n}\n";

const TOOL_PY: &str = "def run(x):\n    \"\"\"old_name(x) in a docstring\"\"\"\n    # old_name(x) in a comment\n    return old_name(x, 1)\n";

const IGNORED_RS: &str = "fn g() {\n    old_name(1, 2);\n}\n";

/// A project of Rust, TypeScript and Python files that call `old_name` and
/// mention it in strings and comments, and an ignored Rust file that calls
/// it too.
fn tree() -> Fixture {
    let fx = Fixture::new();
    fx.write(".gitignore", "generated/\n")
        .write("src/lib.rs", LIB_RS)
        .write("src/main.rs", MAIN_RS)
        .write("web/app.ts", APP_TS)
        .write("py/tool.py", TOOL_PY)
        .write("generated/out.rs", IGNORED_RS);
    fx
}

#[tokio::test]
async fn ast_search_finds_calls_not_strings_or_comments() {
    let fx = tree();
    let output = fx
        .call("ast_search", json!({ "pattern": "old_name($$$A)" }))
        .await;
    assert_ok(&output);
    assert_eq!(
        output.content,
        "py/tool.py:4: old_name(x, 1)\n\
         src/lib.rs:11: old_name(1, 2)\n\
         src/lib.rs:11: old_name( [… 4 lines in all]\n\
         src/main.rs:4: old_name(5, 6)\n\
         web/app.ts:4: old_name(x, s.length)\n"
    );
}

#[tokio::test]
async fn ast_search_with_lang_and_max_reports_what_it_left_out() {
    let fx = tree();
    let output = fx
        .call(
            "ast_search",
            json!({ "pattern": "old_name($A, $B)", "lang": "rust", "max": 2 }),
        )
        .await;
    assert_ok(&output);
    assert_eq!(
        output.content,
        "src/lib.rs:11: old_name(1, 2)\n\
         src/lib.rs:11: old_name( [… 4 lines in all]\n\
         [… 1 more matches not shown; narrow the pattern or path, or raise max]\n"
    );
    let unknown = fx
        .call("ast_search", json!({ "pattern": "f($A)", "lang": "cobol" }))
        .await;
    assert_error(
        &unknown,
        "unknown lang \"cobol\"; known languages: rust, typescript, tsx, javascript, python, go",
    );
}

#[tokio::test]
async fn ast_replace_renames_calls_across_languages_and_leaves_the_rest() {
    let fx = tree();
    let output = fx
        .call(
            "ast_replace",
            json!({ "pattern": "old_name($$$A)", "rewrite": "new_name($$$A)" }),
        )
        .await;
    assert_ok(&output);
    assert!(
        output
            .content
            .starts_with("changed 4 files (5 replacements)\n--- a/py/tool.py\n+++ b/py/tool.py\n"),
        "{}",
        output.content
    );
    assert!(
        output
            .content
            .contains("-    return old_name(x, 1)\n+    return new_name(x, 1)\n"),
        "{}",
        output.content
    );
    assert_eq!(
        fx.read("src/lib.rs"),
        // A multi-line `$$$A` keeps its nodes and the text between them,
        // re-indented to the rewrite (ast-grep's rule; a formatter tidies).
        LIB_RS.replace(
            "    old_name(1, 2) + old_name(\n        3,\n        4,\n    )",
            "    new_name(1, 2) + new_name(3,\n    4,)"
        )
    );
    assert_eq!(
        fx.read("src/main.rs"),
        MAIN_RS.replace("let total = old_name", "let total = new_name")
    );
    assert_eq!(
        fx.read("web/app.ts"),
        APP_TS.replace("return old_name", "return new_name")
    );
    assert_eq!(
        fx.read("py/tool.py"),
        TOOL_PY.replace("return old_name", "return new_name")
    );
    // The definition is not a call, and the ignored file is not touched.
    assert!(fx.read("src/lib.rs").contains("pub fn old_name(a: u32"));
    assert_eq!(fx.read("generated/out.rs"), IGNORED_RS);

    // Written files count as seen: an edit right after is accepted.
    let edit = fx
        .call(
            "edit",
            json!({ "path": "src/main.rs", "old": "let total", "new": "let sum" }),
        )
        .await;
    assert_ok(&edit);
}

#[tokio::test]
async fn ast_replace_dry_run_shows_the_diff_and_writes_nothing() {
    let fx = tree();
    let output = fx
        .call(
            "ast_replace",
            json!({
                "pattern": "old_name($$$A)",
                "rewrite": "new_name($$$A)",
                "path": "src/main.rs",
                "dry_run": true
            }),
        )
        .await;
    assert_ok(&output);
    assert_eq!(
        output.content,
        "dry run: would change 1 file (1 replacements); nothing was written\n\
         --- a/src/main.rs\n\
         +++ b/src/main.rs\n\
         @@ -1,6 +1,6 @@\n \
         use demo::*;\n \n \
         fn main() {\n\
         -    let total = old_name(5, 6);\n\
         +    let total = new_name(5, 6);\n     \
         println!(\"old_name(5, 6) = {total}\");\n \
         }\n"
    );
    assert_eq!(fx.read("src/main.rs"), MAIN_RS);
}

#[tokio::test]
async fn an_unparsable_pattern_is_an_error_naming_its_position() {
    let fx = tree();
    let output = fx
        .call(
            "ast_search",
            json!({ "pattern": "old_name(1,\n   ) ) $A", "lang": "rust" }),
        )
        .await;
    assert_error(
        &output,
        "pattern does not parse as rust: syntax error at line 2, column 6 of the pattern",
    );
    let replace = fx
        .call(
            "ast_replace",
            json!({ "pattern": "fn (", "rewrite": "x", "lang": "python" }),
        )
        .await;
    assert_error(
        &replace,
        "pattern does not parse as python: syntax error at line 1",
    );
    let empty = fx
        .call("ast_search", json!({ "pattern": "  ", "lang": "ts" }))
        .await;
    assert_error(&empty, "pattern is empty");
    // Without lang, a pattern no language of the tree parses is an error too.
    let nowhere = fx
        .call("ast_search", json!({ "pattern": "old_name(((" }))
        .await;
    assert_error(&nowhere, "pattern does not parse as rust");
    assert_error(&nowhere, "pattern does not parse as python");
}

#[tokio::test]
async fn a_binary_file_with_a_source_name_is_skipped() {
    let fx = tree();
    std::fs::write(
        fx.path("src/blob.rs"),
        b"fn f() { old_name(1, 2); }\n\0\0\x01binary",
    )
    .unwrap();
    let search = fx
        .call(
            "ast_search",
            json!({ "pattern": "old_name($$$A)", "path": "src" }),
        )
        .await;
    assert_ok(&search);
    assert!(!search.content.contains("blob.rs"), "{}", search.content);
    assert!(
        search.content.ends_with("[skipped 1 binary file]\n"),
        "{}",
        search.content
    );
    let before = std::fs::read(fx.path("src/blob.rs")).unwrap();
    let replace = fx
        .call(
            "ast_replace",
            json!({ "pattern": "old_name($$$A)", "rewrite": "new_name($$$A)", "path": "src" }),
        )
        .await;
    assert_ok(&replace);
    assert!(
        replace.content.starts_with("changed 2 files"),
        "{}",
        replace.content
    );
    assert_eq!(std::fs::read(fx.path("src/blob.rs")).unwrap(), before);
}

#[tokio::test]
async fn a_file_changed_since_the_session_read_it_is_refused_and_the_rest_written() {
    let fx = tree();
    assert_ok(&fx.call("read", json!({ "path": "src/main.rs" })).await);
    // Someone else changes it after the session read it.
    let changed = MAIN_RS.replace("5, 6", "7, 8");
    fx.write("src/main.rs", &changed);
    let output = fx
        .call(
            "ast_replace",
            json!({ "pattern": "old_name($$$A)", "rewrite": "new_name($$$A)", "lang": "rust" }),
        )
        .await;
    assert_ok(&output);
    assert!(
        output
            .content
            .starts_with("changed 1 file (2 replacements)\n"),
        "{}",
        output.content
    );
    assert!(
        output
            .content
            .contains("refused 1 file:\nsrc/main.rs: changed since this session last read it"),
        "{}",
        output.content
    );
    assert_eq!(fx.read("src/main.rs"), changed);
    assert!(fx.read("src/lib.rs").contains("new_name(1, 2)"));
    // Read again, the file is accepted.
    assert_ok(&fx.call("read", json!({ "path": "src/main.rs" })).await);
    let again = fx
        .call(
            "ast_replace",
            json!({ "pattern": "old_name($$$A)", "rewrite": "new_name($$$A)", "path": "src/main.rs" }),
        )
        .await;
    assert_ok(&again);
    assert!(fx.read("src/main.rs").contains("new_name(7, 8)"));
}

#[tokio::test]
async fn ast_replace_refuses_engine_files_and_paths_outside() {
    let fx = tree();
    let outside = fx
        .call(
            "ast_replace",
            json!({ "pattern": "f($A)", "rewrite": "g($A)", "path": "../outside" }),
        )
        .await;
    assert_error(&outside, "outside the project root");
    fx.write(".opencode/plugins/p.ts", "old_name(1);\n");
    let output = fx
        .call(
            "ast_replace",
            json!({ "pattern": "old_name($$$A)", "rewrite": "new_name($$$A)", "lang": "ts" }),
        )
        .await;
    assert_ok(&output);
    assert_eq!(fx.read(".opencode/plugins/p.ts"), "old_name(1);\n");
}

#[tokio::test]
async fn plain_call_patterns_without_a_semicolon_match_in_rust_and_go() {
    let fx = tree();
    fx.write(
        "go/main.go",
        "package main\n\nfunc main() {\n\told_name(1, 2)\n\tx := \"old_name(1, 2)\"\n\t_ = x\n}\n",
    );
    let rust = fx
        .call(
            "ast_search",
            json!({ "pattern": "old_name(1, 2)", "lang": "rust" }),
        )
        .await;
    assert_ok(&rust);
    assert_eq!(rust.content, "src/lib.rs:11: old_name(1, 2)\n");
    let go = fx
        .call(
            "ast_search",
            json!({ "pattern": "old_name($A, $B)", "lang": "go" }),
        )
        .await;
    assert_ok(&go);
    assert_eq!(go.content, "go/main.go:4: old_name(1, 2)\n");
}

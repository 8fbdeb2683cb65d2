//! `read`, `write`, `edit` and `list` on real files.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use orch::tools::{ToolContext, ToolRegistry};
use serde_json::json;

use super::{Fixture, assert_error, assert_ok, call, names_in};

fn numbered(lines: std::ops::RangeInclusive<usize>) -> String {
    lines.map(|n| format!("line {n}\n")).collect()
}

#[tokio::test]
async fn read_numbers_lines_like_cat_n() {
    let fx = Fixture::new();
    fx.write("a.txt", "alpha\nbeta\r\ngamma");
    let output = fx.call("read", json!({ "path": "a.txt" })).await;
    assert_ok(&output);
    assert_eq!(
        output.content,
        "     1\talpha\n     2\tbeta\n     3\tgamma\n"
    );
}

#[tokio::test]
async fn read_windows_with_offset_and_limit_and_says_what_remains() {
    let fx = Fixture::new();
    fx.write("a.txt", &numbered(1..=10));
    let output = fx
        .call("read", json!({ "path": "a.txt", "offset": 4, "limit": 2 }))
        .await;
    assert_ok(&output);
    assert_eq!(
        output.content,
        "     4\tline 4\n     5\tline 5\n[showing lines 4-5 of a.txt (10 lines); continue with offset=6]\n"
    );
    let tail = fx
        .call("read", json!({ "path": "a.txt", "offset": 9 }))
        .await;
    assert_eq!(tail.content, "     9\tline 9\n    10\tline 10\n");
}

#[tokio::test]
async fn read_uses_the_default_line_limit() {
    let mut fx = Fixture::new();
    fx.limits.read_default_lines = 3;
    fx.write("a.txt", &numbered(1..=5));
    let output = fx.call("read", json!({ "path": "a.txt" })).await;
    assert!(
        output
            .content
            .starts_with("     1\tline 1\n     2\tline 2\n     3\tline 3\n[")
    );
    assert!(
        output.content.contains("continue with offset=4"),
        "{}",
        output.content
    );
}

#[tokio::test]
async fn read_of_a_large_file_reads_only_the_window() {
    let mut fx = Fixture::new();
    fx.limits.read_max_bytes = 1000;
    fx.write("big.txt", &numbered(1..=20_000));
    let output = fx
        .call(
            "read",
            json!({ "path": "big.txt", "offset": 15_000, "limit": 2 }),
        )
        .await;
    assert_ok(&output);
    assert!(
        output
            .content
            .starts_with(" 15000\tline 15000\n 15001\tline 15001\n")
    );
    // Past the size cap the rest is not counted, only the size reported.
    assert!(output.content.contains("bytes)"), "{}", output.content);
    assert!(
        output.content.contains("offset=15002"),
        "{}",
        output.content
    );

    let capped = fx
        .call("read", json!({ "path": "big.txt", "limit": 5000 }))
        .await;
    assert_ok(&capped);
    assert!(
        capped.content.len() < 1200,
        "output is capped: {}",
        capped.content.len()
    );
    assert!(
        capped.content.contains("1000 byte cap"),
        "{}",
        capped.content
    );
}

#[tokio::test]
async fn read_truncates_very_long_lines() {
    let fx = Fixture::new();
    fx.write("min.js", &format!("{}\nnext\n", "x".repeat(50_000)));
    let output = fx.call("read", json!({ "path": "min.js" })).await;
    assert_ok(&output);
    assert!(
        output
            .content
            .contains("line truncated, 50000 bytes in all")
    );
    assert!(output.content.contains("     2\tnext"));
    assert!(output.content.len() < 3000);
}

#[tokio::test]
async fn read_refuses_binaries_directories_and_missing_files() {
    let fx = Fixture::new();
    std::fs::write(fx.path("image.png"), b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").unwrap();
    fx.write("src/lib.rs", "");
    assert_error(
        &fx.call("read", json!({ "path": "image.png" })).await,
        "looks like a binary file",
    );
    assert_error(&fx.call("read", json!({ "path": "src" })).await, "use list");
    assert_error(
        &fx.call("read", json!({ "path": "nope.txt" })).await,
        "\"nope.txt\" does not exist",
    );
    let empty = fx.call("read", json!({ "path": "src/lib.rs" })).await;
    assert_ok(&empty);
    assert!(empty.content.contains("is empty"));
}

#[tokio::test]
async fn read_past_the_end_says_how_long_the_file_is() {
    let fx = Fixture::new();
    fx.write("a.txt", &numbered(1..=3));
    assert_error(
        &fx.call("read", json!({ "path": "a.txt", "offset": 7 }))
            .await,
        "offset 7 is past the end of \"a.txt\", which has 3 lines",
    );
}

#[tokio::test]
async fn write_creates_parents_and_replaces_atomically() {
    let fx = Fixture::new();
    let output = fx
        .call(
            "write",
            json!({ "path": "deep/er/new.txt", "content": "one\ntwo\n" }),
        )
        .await;
    assert_ok(&output);
    assert_eq!(output.content, "created deep/er/new.txt (2 lines, 8 bytes)");
    assert_eq!(fx.read("deep/er/new.txt"), "one\ntwo\n");

    std::fs::set_permissions(
        fx.path("deep/er/new.txt"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    let output = fx
        .call(
            "write",
            json!({ "path": "deep/er/new.txt", "content": "three\n" }),
        )
        .await;
    assert!(
        output.content.starts_with("overwrote"),
        "{}",
        output.content
    );
    assert_eq!(fx.read("deep/er/new.txt"), "three\n");
    let mode = std::fs::metadata(fx.path("deep/er/new.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o750, "permissions survive a rewrite");
    assert_eq!(
        names_in(&fx.path("deep/er")),
        ["new.txt"],
        "no temp file left behind"
    );
}

#[tokio::test]
async fn write_refuses_a_directory() {
    let fx = Fixture::new();
    fx.write("src/lib.rs", "");
    assert_error(
        &fx.call("write", json!({ "path": "src", "content": "x" }))
            .await,
        "is a directory",
    );
}

#[tokio::test]
async fn edit_replaces_exactly_one_match() {
    let fx = Fixture::new();
    fx.write("a.rs", "fn a() {}\nfn b() {}\n");
    assert_ok(&fx.call("read", json!({ "path": "a.rs" })).await);
    let output = fx
        .call(
            "edit",
            json!({ "path": "a.rs", "old": "fn b() {}", "new": "fn b() { a() }" }),
        )
        .await;
    assert_ok(&output);
    assert_eq!(
        output.content,
        "edited a.rs: replaced 1 match, first at line 2"
    );
    assert_eq!(fx.read("a.rs"), "fn a() {}\nfn b() { a() }\n");
}

#[tokio::test]
async fn edit_errors_explain_how_to_fix_the_call() {
    let fx = Fixture::new();
    let original = "x = 1\nx = 1\nx = 1\n";
    fx.write("a.py", original);
    assert_ok(&fx.call("read", json!({ "path": "a.py" })).await);
    let many = fx
        .call(
            "edit",
            json!({ "path": "a.py", "old": "x = 1", "new": "x = 2" }),
        )
        .await;
    assert_error(&many, "matches 3 places");
    assert!(
        many.content.contains("add surrounding lines"),
        "{}",
        many.content
    );
    let none = fx
        .call(
            "edit",
            json!({ "path": "a.py", "old": "y = 1", "new": "y = 2" }),
        )
        .await;
    assert_error(&none, "not found");
    let same = fx
        .call("edit", json!({ "path": "a.py", "old": "x", "new": "x" }))
        .await;
    assert_error(&same, "identical");
    let empty = fx
        .call("edit", json!({ "path": "a.py", "old": "", "new": "y" }))
        .await;
    assert_error(&empty, "must not be empty");
    let missing = fx
        .call("edit", json!({ "path": "b.py", "old": "a", "new": "b" }))
        .await;
    assert_error(&missing, "\"b.py\" does not exist");
    assert_eq!(fx.read("a.py"), original, "failed edits change nothing");
}

#[tokio::test]
async fn edit_all_replaces_every_match() {
    let fx = Fixture::new();
    fx.write("a.py", "x = 1\ny = 0\nx = 1\n");
    assert_ok(&fx.call("read", json!({ "path": "a.py" })).await);
    let output = fx
        .call(
            "edit",
            json!({ "path": "a.py", "old": "x = 1", "new": "x = 2", "all": true }),
        )
        .await;
    assert_ok(&output);
    assert!(
        output
            .content
            .contains("replaced 2 matches, first at line 1")
    );
    assert_eq!(fx.read("a.py"), "x = 2\ny = 0\nx = 2\n");
}

#[tokio::test]
async fn edit_matches_multi_line_text_in_crlf_files() {
    let fx = Fixture::new();
    fx.write("win.txt", "one\r\ntwo\r\nthree\r\n");
    assert_ok(&fx.call("read", json!({ "path": "win.txt" })).await);
    let output = fx
        .call(
            "edit",
            json!({ "path": "win.txt", "old": "one\ntwo", "new": "1\n2" }),
        )
        .await;
    assert_ok(&output);
    assert_eq!(fx.read("win.txt"), "1\r\n2\r\nthree\r\n");
}

#[tokio::test]
async fn list_shows_one_level_sorted_with_directory_slashes() {
    let fx = Fixture::new();
    fx.write("b.txt", "")
        .write("a.txt", "")
        .write("src/lib.rs", "")
        .write(".github/ci.yml", "")
        .write(".git/config", "");
    let output = fx.call("list", json!({})).await;
    assert_ok(&output);
    assert_eq!(output.content, ".github/\na.txt\nb.txt\nsrc/\n");
    let sub = fx.call("list", json!({ "path": "src" })).await;
    assert_eq!(sub.content, "src/lib.rs\n");
    assert_error(
        &fx.call("list", json!({ "path": "a.txt" })).await,
        "use read",
    );
}

#[tokio::test]
async fn list_respects_gitignore() {
    let fx = Fixture::new();
    fx.write(".gitignore", "target/\n*.log\n")
        .write("target/debug/x", "")
        .write("build.log", "")
        .write("src/debug.log", "")
        .write("src/lib.rs", "");
    let output = fx.call("list", json!({})).await;
    assert_eq!(output.content, ".gitignore\nsrc/\n");
    let sub = fx.call("list", json!({ "path": "src" })).await;
    assert_eq!(
        sub.content, "src/lib.rs\n",
        "root .gitignore applies in subdirectories"
    );
}

#[tokio::test]
async fn list_is_capped_with_a_note() {
    let mut fx = Fixture::new();
    fx.limits.max_entries = 3;
    for name in ["a", "b", "c", "d", "e"] {
        fx.write(name, "");
    }
    let output = fx.call("list", json!({})).await;
    assert_eq!(
        output.content,
        "a\nb\nc\n[… 2 more entries not shown; list a subdirectory or use glob]\n"
    );
}

#[tokio::test]
async fn bad_arguments_are_readable_errors() {
    let fx = Fixture::new();
    assert_error(
        &fx.call("read", json!({})).await,
        "invalid arguments for read: missing field `path`",
    );
    assert_error(
        &fx.call("read", json!({ "path": "a", "lines": 3 })).await,
        "unknown field `lines`",
    );
    assert_error(
        &fx.call("write", json!({ "path": "a", "content": 5 })).await,
        "invalid arguments for write",
    );
}

#[test]
fn specs_follow_the_contract() {
    #[allow(unused_mut)]
    let mut expected: Vec<(&str, &[&str], &[&str], bool)> = vec![
        ("read", &["path", "offset", "limit"], &["path"], true),
        ("write", &["path", "content"], &["path", "content"], false),
        (
            "edit",
            &["path", "old", "new", "all"],
            &["path", "old", "new"],
            false,
        ),
        ("list", &["path"], &[], true),
        ("glob", &["pattern", "path"], &["pattern"], true),
        (
            "grep",
            &["pattern", "path", "glob", "max"],
            &["pattern"],
            true,
        ),
        (
            "mgrep",
            &["patterns", "path", "glob", "max"],
            &["patterns"],
            true,
        ),
        ("file_stats", &["path", "depth"], &[], true),
        ("bash", &["command", "timeout_ms"], &["command"], false),
        ("git_status", &[], &[], true),
        ("git_diff", &["staged", "path"], &[], true),
        (
            "sed_replace",
            &[
                "pattern",
                "replacement",
                "path",
                "glob",
                "dry_run",
                "max_files",
            ],
            &["pattern", "replacement"],
            false,
        ),
    ];
    #[cfg(feature = "ast")]
    expected.extend([
        (
            "ast_search",
            &["pattern", "lang", "path", "max"][..],
            &["pattern"][..],
            true,
        ),
        (
            "ast_replace",
            &["pattern", "rewrite", "lang", "path", "dry_run", "max_files"][..],
            &["pattern", "rewrite"][..],
            false,
        ),
    ]);
    let registry = ToolRegistry::builtins();
    assert_eq!(registry.names().count(), expected.len());
    for (name, properties, required, read_only) in &expected {
        let tool = registry
            .get(name)
            .unwrap_or_else(|| panic!("{name} is registered"));
        let spec = tool.spec();
        assert_eq!(tool.read_only(), *read_only, "{name} read_only");
        assert!(
            !spec.description.is_empty() && spec.description.len() < 250,
            "{name}: description of {} chars",
            spec.description.len()
        );
        let schema = &spec.parameters;
        assert_eq!(schema["type"], "object", "{name}");
        assert_eq!(schema["additionalProperties"], false, "{name}");
        let keys: Vec<&str> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, *properties, "{name} properties");
        let listed: Vec<&str> = schema
            .get("required")
            .and_then(|r| r.as_array())
            .map(|r| r.iter().map(|v| v.as_str().unwrap()).collect())
            .unwrap_or_default();
        assert_eq!(listed, *required, "{name} required");
    }
}

#[tokio::test]
async fn writes_refuse_a_file_the_session_never_read_or_that_changed_since() {
    let fx = Fixture::new();
    fx.write("lib.rs", "fn a() {}\n");
    // Never read: refused, the file untouched.
    let blind = fx
        .call("write", json!({ "path": "lib.rs", "content": "gone\n" }))
        .await;
    assert_error(&blind, "has not read it; read it first");
    let blind_edit = fx
        .call("edit", json!({ "path": "lib.rs", "old": "a", "new": "b" }))
        .await;
    assert_error(&blind_edit, "has not read it; read it first");
    assert_eq!(fx.read("lib.rs"), "fn a() {}\n");
    // Read, then write: fine; the session's own write counts as seen.
    assert_ok(&fx.call("read", json!({ "path": "lib.rs" })).await);
    assert_ok(
        &fx.call(
            "write",
            json!({ "path": "lib.rs", "content": "fn a() {}\nfn b() {}\n" }),
        )
        .await,
    );
    assert_ok(
        &fx.call(
            "edit",
            json!({ "path": "lib.rs", "old": "fn b() {}", "new": "fn b() { a() }" }),
        )
        .await,
    );
    // Changed by someone else (a formatter, a command): refused until read again.
    std::fs::write(
        fx.path("lib.rs"),
        "fn a() {}\nfn b() { a() }\n// formatted\n",
    )
    .unwrap();
    let stale = fx
        .call(
            "edit",
            json!({ "path": "lib.rs", "old": "fn a() {}", "new": "fn a() { }" }),
        )
        .await;
    assert_error(&stale, "changed since this session last read it");
    assert_error(&stale, "nothing was written");
    let stale_write = fx
        .call(
            "write",
            json!({ "path": "lib.rs", "content": "clobbered\n" }),
        )
        .await;
    assert_error(&stale_write, "read it again first");
    assert_eq!(
        fx.read("lib.rs"),
        "fn a() {}\nfn b() { a() }\n// formatted\n"
    );
    assert_ok(
        &fx.call("read", json!({ "path": "lib.rs", "limit": 1 }))
            .await,
    );
    assert_ok(
        &fx.call(
            "edit",
            json!({ "path": "lib.rs", "old": "fn a() {}", "new": "fn a() { }" }),
        )
        .await,
    );
    // A new file needs no read.
    assert_ok(
        &fx.call(
            "write",
            json!({ "path": "new.rs", "content": "fn n() {}\n" }),
        )
        .await,
    );
}

/// Sessions of parallel Workers editing neighbouring functions of one file
/// at once: each edit either lands or is refused as stale, and a refused
/// session that reads again and retries lands too; no edit is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_sessions_on_one_file_never_lose_an_edit() {
    const SESSIONS: usize = 8;
    let fx = Arc::new(Fixture::new());
    let original: String = (0..SESSIONS).map(|i| format!("fn f{i}() {{}}\n")).collect();
    fx.write("lib.rs", &original);
    let router = Arc::new(fx.router(Default::default()));
    let workers: Vec<_> = (0..SESSIONS)
        .map(|i| {
            let (fx, router) = (fx.clone(), router.clone());
            tokio::spawn(async move {
                // A session of its own: its own record of what it saw.
                let ctx = ToolContext {
                    session: format!("s{i}"),
                    seen: Arc::default(),
                    ..fx.ctx()
                };
                let mut refused = 0;
                loop {
                    assert_ok(&call(&router, &ctx, "read", json!({ "path": "lib.rs" })).await);
                    let edit = call(
                        &router,
                        &ctx,
                        "edit",
                        json!({ "path": "lib.rs", "old": format!("fn f{i}() {{}}"), "new": format!("fn f{i}() {{ /* done by s{i} */ }}") }),
                    )
                    .await;
                    if !edit.is_error {
                        return refused;
                    }
                    assert!(edit.content.contains("changed since"), "{}", edit.content);
                    refused += 1;
                    assert!(refused < 1000, "session s{i} never got its edit in");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let result = fx.read("lib.rs");
    for i in 0..SESSIONS {
        assert!(
            result.contains(&format!("fn f{i}() {{ /* done by s{i} */ }}")),
            "the edit of s{i} was lost:\n{result}"
        );
    }
    assert_eq!(result.lines().count(), SESSIONS);
}

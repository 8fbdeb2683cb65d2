//! `sed_replace` on real trees, called through the router.

use serde_json::json;

use super::{Fixture, assert_error, assert_ok};

fn tree() -> Fixture {
    let fx = Fixture::new();
    fx.write(".gitignore", "*.log\n")
        .write(
            "src/a.rs",
            "let port = config.get(\"port\");\nlet host = config.get(\"host\");\n",
        )
        .write("src/b.rs", "let user = config.get(\"user\");\n")
        .write("docs/notes.md", "config.get(\"port\") is documented here\n")
        .write("run.log", "config.get(\"port\") in a log\n");
    fx
}

#[tokio::test]
async fn sed_replace_uses_capture_groups_across_a_tree() {
    let fx = tree();
    let output = fx
        .call(
            "sed_replace",
            json!({
                "pattern": r#"config\.get\("(?P<key>\w+)"\)"#,
                "replacement": "config.${key}()",
                "glob": "*.rs"
            }),
        )
        .await;
    assert_ok(&output);
    assert_eq!(
        output.content,
        "changed 2 files (3 replacements)\n\
         --- a/src/a.rs\n\
         +++ b/src/a.rs\n\
         @@ -1,2 +1,2 @@\n\
         -let port = config.get(\"port\");\n\
         -let host = config.get(\"host\");\n\
         +let port = config.port();\n\
         +let host = config.host();\n\
         --- a/src/b.rs\n\
         +++ b/src/b.rs\n\
         @@ -1 +1 @@\n\
         -let user = config.get(\"user\");\n\
         +let user = config.user();\n"
    );
    assert_eq!(fx.read("src/b.rs"), "let user = config.user();\n");
    // Outside the glob, and ignored, stay.
    assert_eq!(
        fx.read("docs/notes.md"),
        "config.get(\"port\") is documented here\n"
    );
    assert_eq!(fx.read("run.log"), "config.get(\"port\") in a log\n");
}

#[tokio::test]
async fn sed_replace_dry_run_writes_nothing() {
    let fx = tree();
    let output = fx
        .call(
            "sed_replace",
            json!({
                "pattern": r"(?m)^let (\w+) =",
                "replacement": "let mut $1 =",
                "path": "src",
                "dry_run": true
            }),
        )
        .await;
    assert_ok(&output);
    assert!(
        output.content.starts_with(
            "dry run: would change 2 files (3 replacements); nothing was written\n--- a/src/a.rs\n"
        ),
        "{}",
        output.content
    );
    assert!(
        output
            .content
            .contains("+let mut user = config.get(\"user\");\n"),
        "{}",
        output.content
    );
    assert_eq!(
        fx.read("src/a.rs"),
        "let port = config.get(\"port\");\nlet host = config.get(\"host\");\n"
    );
    assert_eq!(fx.read("src/b.rs"), "let user = config.get(\"user\");\n");
}

#[tokio::test]
async fn a_bad_regex_is_an_error_naming_what_is_wrong() {
    let fx = tree();
    let output = fx
        .call(
            "sed_replace",
            json!({ "pattern": "config.get(\"", "replacement": "x" }),
        )
        .await;
    assert_error(&output, "invalid regex \"config.get(\\\"\"");
    assert_error(&output, "unclosed group");
    let missing = fx.call("sed_replace", json!({ "pattern": "x" })).await;
    assert_error(&missing, "missing field `replacement`");
}

#[tokio::test]
async fn sed_replace_over_max_files_writes_nothing() {
    let fx = tree();
    let output = fx
        .call(
            "sed_replace",
            json!({ "pattern": "config", "replacement": "settings", "max_files": 2 }),
        )
        .await;
    assert_error(
        &output,
        "sed_replace would change 3 files, more than max_files (2)",
    );
    assert_eq!(fx.read("src/b.rs"), "let user = config.get(\"user\");\n");
}

#[tokio::test]
async fn sed_replace_refuses_a_stale_file_and_a_binary_one_is_skipped() {
    let fx = tree();
    std::fs::write(fx.path("src/c.rs"), b"config\0binary").unwrap();
    assert_ok(&fx.call("read", json!({ "path": "src/a.rs" })).await);
    fx.write("src/a.rs", "let port = config.get(\"PORT\");\n");
    let output = fx
        .call(
            "sed_replace",
            json!({ "pattern": "config\\.get", "replacement": "cfg.get", "path": "src" }),
        )
        .await;
    assert_ok(&output);
    assert!(
        output
            .content
            .starts_with("changed 1 file (1 replacements)\n"),
        "{}",
        output.content
    );
    assert!(
        output
            .content
            .contains("refused 1 file:\nsrc/a.rs: changed since this session last read it"),
        "{}",
        output.content
    );
    assert!(
        output.content.ends_with("[skipped 1 binary file]\n"),
        "{}",
        output.content
    );
    assert_eq!(fx.read("src/a.rs"), "let port = config.get(\"PORT\");\n");
    assert_eq!(fx.read("src/b.rs"), "let user = cfg.get(\"user\");\n");
    assert_eq!(
        std::fs::read(fx.path("src/c.rs")).unwrap(),
        b"config\0binary"
    );
}

#[tokio::test]
async fn links_are_left_alone_and_never_rewritten_as_copies() {
    use std::os::unix::fs::symlink;
    let fx = Fixture::new();
    fx.write("real.txt", "old\n")
        .write(".git/config", "[core]\n\turl = old\n");
    symlink(fx.path("real.txt"), fx.path("link.txt")).unwrap();
    symlink(fx.path(".git/config"), fx.path("gitconfig")).unwrap();
    let output = fx
        .call(
            "sed_replace",
            json!({"pattern": "old", "replacement": "new"}),
        )
        .await;
    assert_ok(&output);
    assert!(
        output
            .content
            .starts_with("changed 1 file (1 replacements)"),
        "{}",
        output.content
    );
    assert_eq!(fx.read("real.txt"), "new\n");
    for link in ["link.txt", "gitconfig"] {
        let meta = std::fs::symlink_metadata(fx.path(link)).unwrap();
        assert!(meta.file_type().is_symlink(), "{link} is still a link");
    }
    assert_eq!(fx.read(".git/config"), "[core]\n\turl = old\n");
    assert!(!output.content.contains("[core]"), "{}", output.content);
}

#[tokio::test]
async fn a_fifo_is_refused_at_once_not_read() {
    let fx = Fixture::new();
    let fifo = fx.path("pipe.rs");
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string; mkfifo has no other preconditions.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0);
    for (tool, args) in [
        (
            "sed_replace",
            json!({"pattern": "x", "replacement": "y", "path": "pipe.rs"}),
        ),
        ("ast_search", json!({"pattern": "x", "path": "pipe.rs"})),
        ("mgrep", json!({"patterns": ["x"], "path": "pipe.rs"})),
        ("grep", json!({"pattern": "x", "path": "pipe.rs"})),
    ] {
        let output = tokio::time::timeout(std::time::Duration::from_secs(10), fx.call(tool, args))
            .await
            .unwrap_or_else(|_| panic!("{tool} blocked on a FIFO"));
        assert_error(&output, "\"pipe.rs\" is not a regular file or a directory");
    }
}

#[tokio::test]
async fn a_replacement_that_would_multiply_a_file_writes_nothing() {
    let fx = Fixture::new();
    let text = "a".repeat(100_000);
    fx.write("a.txt", &text);
    // The empty pattern matches before every character: 100 000 × 1 000
    // bytes would be 100 MB.
    let output = fx
        .call(
            "sed_replace",
            json!({"pattern": "(?:)", "replacement": "x".repeat(1000)}),
        )
        .await;
    assert_error(
        &output,
        "sed_replace would make a.txt larger than 16777216 bytes",
    );
    assert_eq!(fx.read("a.txt"), text);
}

//! The path-escape corpus: every file tool refuses every way out of the
//! project root, and leaves the outside untouched.

use std::os::unix::fs::symlink;

use serde_json::{Value, json};

use super::{Fixture, SECRET, assert_error, assert_ok, names_in};

/// A project with links pointing out of it: a file, a directory, and a
/// dangling link whose target would be created outside.
fn fixture() -> Fixture {
    let fx = Fixture::new();
    fx.write("src/lib.rs", "pub fn secret() {}\n");
    symlink(fx.outside.join("secret.txt"), fx.path("link-file")).expect("file link");
    symlink(&fx.outside, fx.path("link-dir")).expect("dir link");
    symlink(fx.outside.join("created.txt"), fx.path("dangling")).expect("dangling link");
    fx
}

fn corpus(fx: &Fixture) -> Vec<String> {
    let absolute_secret = fx.outside.join("secret.txt").display().to_string();
    let absolute_dir = fx.outside.display().to_string();
    vec![
        "..".into(),
        "../outside/secret.txt".into(),
        "a/../../outside/secret.txt".into(),
        "src/../../outside/secret.txt".into(),
        "./././..".into(),
        "/etc/passwd".into(),
        "/".into(),
        absolute_secret,
        absolute_dir,
        "link-file".into(),
        "link-dir".into(),
        "link-dir/secret.txt".into(),
        "link-dir/new/file.txt".into(),
        "dangling".into(),
    ]
}

/// Arguments that would read, change or walk `path` for each file tool.
fn calls(path: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("read", json!({ "path": path })),
        ("write", json!({ "path": path, "content": "pwned" })),
        (
            "edit",
            json!({ "path": path, "old": "secret", "new": "pwned" }),
        ),
        ("list", json!({ "path": path })),
        ("glob", json!({ "pattern": "*", "path": path })),
        ("grep", json!({ "pattern": "secret", "path": path })),
    ]
}

#[tokio::test]
async fn every_file_tool_refuses_every_escape() {
    let fx = fixture();
    let before = names_in(&fx.outside);
    for path in corpus(&fx) {
        for (tool, args) in calls(&path) {
            let output = fx.call(tool, args).await;
            assert!(
                output.is_error && output.content.contains("outside the project root"),
                "{tool} {path:?} should be refused, got: {}",
                output.content
            );
            assert!(
                !output.content.contains("top secret"),
                "{tool} {path:?} leaked the secret"
            );
        }
    }
    assert_eq!(
        std::fs::read_to_string(fx.outside.join("secret.txt")).unwrap(),
        SECRET
    );
    assert_eq!(
        names_in(&fx.outside),
        before,
        "nothing may be created outside"
    );
}

#[tokio::test]
async fn the_refusal_quotes_the_path_as_given() {
    let fx = fixture();
    let output = fx.call("read", json!({ "path": "../x" })).await;
    assert_error(&output, "path \"../x\" is outside the project root");
}

#[tokio::test]
async fn absolute_paths_inside_the_root_are_accepted() {
    let fx = fixture();
    let inside = fx.path("src/lib.rs").display().to_string();
    let output = fx.call("read", json!({ "path": inside })).await;
    assert_ok(&output);
    assert!(
        output.content.contains("pub fn secret"),
        "{}",
        output.content
    );

    let new_file = fx.path("docs/new.md").display().to_string();
    assert_ok(
        &fx.call("write", json!({ "path": new_file, "content": "hi\n" }))
            .await,
    );
    assert_eq!(fx.read("docs/new.md"), "hi\n");

    let dir = fx.root.display().to_string();
    assert_ok(&fx.call("list", json!({ "path": dir })).await);
}

#[tokio::test]
async fn walks_from_the_root_do_not_follow_links_out() {
    let fx = fixture();
    let grep = fx.call("grep", json!({ "pattern": "secret" })).await;
    assert_ok(&grep);
    assert!(!grep.content.contains("top secret"), "{}", grep.content);
    assert!(grep.content.contains("src/lib.rs:1:"), "{}", grep.content);

    let glob = fx.call("glob", json!({ "pattern": "**/*" })).await;
    assert_ok(&glob);
    assert!(!glob.content.contains("secret.txt"), "{}", glob.content);
    assert!(!glob.content.contains("link-file"), "{}", glob.content);
}

#[tokio::test]
async fn links_that_stay_inside_work() {
    let fx = fixture();
    symlink(fx.path("src"), fx.path("alias")).unwrap();
    let output = fx.call("read", json!({ "path": "alias/lib.rs" })).await;
    assert_ok(&output);
    assert!(output.content.contains("pub fn secret"));
    // `..` is applied to the path as written, before any link is followed.
    let output = fx
        .call("read", json!({ "path": "link-dir/../src/lib.rs" }))
        .await;
    assert_ok(&output);
}

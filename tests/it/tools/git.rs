//! `git_status` and `git_diff` on a real repository.

use std::process::Command;

use serde_json::json;

use super::{Fixture, assert_error, assert_ok};

fn git(fx: &Fixture, args: &[&str]) {
    let status = Command::new("git")
        .arg("-C")
        .arg(&fx.root)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
}

#[tokio::test]
async fn status_and_diff_show_the_working_tree() {
    let fx = Fixture::new();
    assert_error(
        &fx.call("git_status", json!({})).await,
        "not a git repository",
    );
    git(&fx, &["init", "-q", "-b", "main"]);
    fx.write("a.txt", "one\n").write("b.txt", "two\n");
    git(&fx, &["add", "."]);
    git(&fx, &["commit", "-q", "-m", "start"]);
    fx.write("a.txt", "one changed\n").write("c.txt", "new\n");
    fx.write("b.txt", "two staged\n");
    git(&fx, &["add", "b.txt"]);

    let status = fx.call("git_status", json!({})).await;
    assert_ok(&status);
    assert_eq!(status.content, "## main\n M a.txt\nM  b.txt\n?? c.txt\n");

    let diff = fx.call("git_diff", json!({})).await;
    assert!(
        diff.content.contains("-one\n+one changed"),
        "{}",
        diff.content
    );
    assert!(!diff.content.contains("two staged"), "{}", diff.content);
    let staged = fx.call("git_diff", json!({"staged": true})).await;
    assert!(staged.content.contains("+two staged"), "{}", staged.content);
    assert!(
        !staged.content.contains("one changed"),
        "{}",
        staged.content
    );
    let narrowed = fx.call("git_diff", json!({"path": "b.txt"})).await;
    assert_eq!(narrowed.content, "(nothing)");
    // Paths obey the same safety as every file tool.
    assert_error(
        &fx.call("git_diff", json!({"path": "../outside"})).await,
        "outside the project",
    );
    // Read-only: nothing changed in the repository.
    let again = fx.call("git_status", json!({})).await;
    assert_eq!(again.content, status.content);
}

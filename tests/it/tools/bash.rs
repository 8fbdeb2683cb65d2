//! `bash` on real processes: output, exit codes, environment, timeouts,
//! cancellation and process-group cleanup.

use std::ffi::OsString;
use std::time::Duration;

use orch::process::{self, Job, Shell};
use orch::tools::Tool;
use orch::tools::bash::Bash;
use serde_json::json;

use super::{Fixture, assert_error, assert_ok};

/// A command line under `sh -c`, as the gate and diagnostics run theirs.
async fn run_sh(
    command: &str,
    root: &std::path::Path,
    timeout: Duration,
    cancel: &tokio_util::sync::CancellationToken,
    output_bytes: usize,
) -> std::io::Result<process::Finished> {
    process::run(Job::shell(
        Shell::Sh,
        command,
        root,
        timeout,
        cancel,
        output_bytes,
    ))
    .await
}

/// Whether `pid` is a live process (a zombie waiting to be reaped counts as
/// dead: it runs nothing and holds nothing).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X"))
        }
        Err(_) if std::path::Path::new("/proc/self").exists() => false,
        // Without /proc, ask the kernel directly.
        // SAFETY: signal 0 only checks that the process exists.
        Err(_) => unsafe { libc::kill(pid, 0) == 0 },
    }
}

/// Poll until `pid` is gone; killing is asynchronous, so allow a while.
async fn gone(pid: i32) -> bool {
    for _ in 0..200 {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// The pid the command printed on its first line.
fn first_line_pid(content: &str) -> i32 {
    content
        .lines()
        .next()
        .and_then(|line| line.trim().parse().ok())
        .unwrap_or_else(|| panic!("expected a pid on the first line of: {content}"))
}

#[tokio::test]
async fn output_and_exit_code() {
    let fx = Fixture::new();
    let output = fx.call("bash", json!({ "command": "echo hello" })).await;
    assert_ok(&output);
    assert_eq!(output.content, "hello\nexit code 0");

    let failing = fx
        .call("bash", json!({ "command": "echo oops >&2; exit 3" }))
        .await;
    assert!(
        !failing.is_error,
        "a non-zero exit is information for the model"
    );
    assert_eq!(failing.content, "oops\nexit code 3");

    let silent = fx.call("bash", json!({ "command": "true" })).await;
    assert_eq!(silent.content, "(no output)\nexit code 0");
}

#[tokio::test]
async fn stdout_and_stderr_keep_their_order() {
    let fx = Fixture::new();
    let output = fx
        .call(
            "bash",
            json!({ "command": "echo 1; echo 2 >&2; echo 3; echo 4 >&2" }),
        )
        .await;
    assert_eq!(output.content, "1\n2\n3\n4\nexit code 0");
}

#[tokio::test]
async fn runs_in_the_project_root_with_stdin_closed() {
    let fx = Fixture::new();
    let output = fx
        .call("bash", json!({ "command": "pwd; cat; echo done" }))
        .await;
    assert_eq!(
        output.content,
        format!("{}\ndone\nexit code 0", fx.root.display())
    );
}

#[tokio::test]
async fn keeps_the_tail_of_long_output() {
    let mut fx = Fixture::new();
    fx.limits.bash_output_bytes = 100;
    let output = fx.call("bash", json!({ "command": "seq 1 10000" })).await;
    assert_ok(&output);
    let total: usize = (1..=10000).map(|n: u32| n.to_string().len() + 1).sum();
    let omitted = total - 100;
    assert!(
        output
            .content
            .starts_with(&format!("[… {omitted} bytes of earlier output omitted]\n")),
        "{}",
        output.content
    );
    assert!(
        output.content.ends_with("9999\n10000\nexit code 0"),
        "{}",
        output.content
    );
}

#[tokio::test]
async fn provider_secrets_are_not_visible_to_commands() {
    let fx = Fixture::new();
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    for (name, value) in [
        ("OPENAI_API_KEY", "sk-test-openai"),
        ("ANTHROPIC_API_KEY", "sk-test-anthropic"),
        ("GROQ_API_KEY", "sk-test-groq"),
        ("ANTHROPIC_AUTH_TOKEN", "sk-test-token"),
        ("ORCH_VISIBLE", "yes"),
    ] {
        env.push((name.into(), value.into()));
    }
    let output = Bash
        .call_in_env(json!({ "command": "env" }), &fx.ctx(), env)
        .await;
    assert_ok(&output);
    assert!(!output.content.contains("sk-test"), "{}", output.content);
    assert!(output.content.contains("ORCH_VISIBLE=yes"));
    assert!(output.content.contains("PATH="), "the rest is inherited");
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let fx = Fixture::new();
    let output = fx
        .call(
            "bash",
            json!({ "command": "sleep 1000 & echo $!; sleep 1000", "timeout_ms": 300 }),
        )
        .await;
    assert_error(
        &output,
        "timed out after 300 ms; the command and its process group were killed",
    );
    assert!(
        output.content.ends_with("killed by signal 9, no exit code"),
        "{}",
        output.content
    );
    let grandchild = first_line_pid(&output.content);
    assert!(
        gone(grandchild).await,
        "background sleep {grandchild} survived the timeout"
    );
}

#[tokio::test]
async fn timeout_is_clamped_and_defaults_from_limits() {
    let mut fx = Fixture::new();
    fx.limits.bash_timeout_ms = 200;
    fx.limits.bash_max_timeout_ms = 300;
    let default = fx.call("bash", json!({ "command": "sleep 1000" })).await;
    assert_error(&default, "timed out after 200 ms");
    let clamped = fx
        .call(
            "bash",
            json!({ "command": "sleep 1000", "timeout_ms": 3_600_000 }),
        )
        .await;
    assert_error(&clamped, "timed out after 300 ms");
}

#[tokio::test]
async fn cancellation_kills_the_whole_process_group() {
    let fx = Fixture::new();
    let cancel = fx.cancel.clone();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    });
    // Called directly: the router refuses calls already cancelled, and this
    // one must be cancelled while it runs.
    let output = Bash
        .call(
            json!({ "command": "sleep 1000 & echo $!; sleep 1000" }),
            &fx.ctx(),
        )
        .await;
    canceller.await.unwrap();
    assert_error(
        &output,
        "cancelled; the command and its process group were killed",
    );
    let grandchild = first_line_pid(&output.content);
    assert!(
        gone(grandchild).await,
        "background sleep {grandchild} survived cancellation"
    );
}

#[tokio::test]
async fn a_background_job_holding_the_pipe_cannot_hang_the_tool() {
    let fx = Fixture::new();
    let output = fx
        .call("bash", json!({ "command": "sleep 1000 & echo $!" }))
        .await;
    assert_ok(&output);
    assert!(
        output
            .content
            .contains("background processes the command left running were killed")
    );
    assert!(
        output.content.ends_with("exit code 0"),
        "{}",
        output.content
    );
    let job = first_line_pid(&output.content);
    assert!(gone(job).await, "background sleep {job} outlived the call");
}

#[tokio::test]
async fn a_detached_background_job_is_killed_too() {
    let fx = Fixture::new();
    let output = fx
        .call(
            "bash",
            json!({ "command": "sleep 1000 >/dev/null 2>&1 & echo $!" }),
        )
        .await;
    assert_ok(&output);
    let job = first_line_pid(&output.content);
    assert!(gone(job).await, "background sleep {job} outlived the call");
}

#[tokio::test]
async fn an_empty_command_is_an_error() {
    let fx = Fixture::new();
    assert_error(
        &fx.call("bash", json!({ "command": "  " })).await,
        "command is empty",
    );
    assert_error(&fx.call("bash", json!({})).await, "missing field `command`");
}

#[tokio::test]
async fn the_launcher_gives_structured_results() {
    let fx = Fixture::new();
    let cancel = &fx.cancel;
    let run = run_sh(
        "echo out; echo err >&2; exit 4",
        &fx.root,
        Duration::from_secs(30),
        cancel,
        1000,
    )
    .await
    .unwrap();
    assert_eq!(run.output, "out\nerr\n");
    assert_eq!(run.exit_code, Some(4));
    assert!(!run.timed_out && !run.cancelled);

    let slow = run_sh(
        "sleep 1000 & echo $!; sleep 1000",
        &fx.root,
        Duration::from_millis(200),
        cancel,
        1000,
    )
    .await
    .unwrap();
    assert!(slow.timed_out);
    assert_eq!((slow.exit_code, slow.signal), (None, Some(libc::SIGKILL)));
    let grandchild = first_line_pid(&slow.output);
    assert!(
        gone(grandchild).await,
        "background sleep {grandchild} survived the timeout"
    );

    let missing = fx.root.join("no-such-dir");
    let err = run_sh("true", &missing, Duration::from_secs(5), cancel, 1000).await;
    assert!(err.is_err(), "a missing directory is a start failure");
}

//! Background jobs on real processes: output while running, caps, kill,
//! timeout, and nothing left in the process table when their owner ends.

use std::sync::Arc;
use std::time::Duration;

use orch::config::PermissionConfig;
use orch::events::EventBus;
use orch::tools::ToolRegistry;
use orch::tools::background::{BackgroundJobs, JobLimits};
use orch::tools::permissions::Permissions;
use serde_json::json;

use super::{Fixture, assert_error, assert_ok, call};

fn jobs(fx: &Fixture, max_running: usize) -> (Arc<BackgroundJobs>, orch::tools::ToolRouter) {
    let jobs = BackgroundJobs::new(
        JobLimits {
            max_running,
            output_bytes: 4096,
            default_timeout: Duration::from_secs(60),
            max_timeout: Duration::from_secs(120),
        },
        Arc::new(EventBus::new()),
    );
    let mut registry = ToolRegistry::new();
    for tool in jobs.tools() {
        registry.insert(tool);
    }
    let router = fx.router_with(
        registry,
        Permissions::new(PermissionConfig::default(), false),
    );
    (jobs, router)
}

/// Whether a process is alive (and not a zombie).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| stat.split(' ').nth(2).is_none_or(|state| state != "Z"))
        .unwrap_or(false)
}

/// Wait for `path` to hold a pid.
async fn pid_in(path: &std::path::Path) -> i32 {
    for _ in 0..200 {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no pid in {}", path.display());
}

#[tokio::test]
async fn a_job_runs_on_while_the_agent_checks_its_output() {
    let fx = Fixture::new();
    let (jobs, router) = jobs(&fx, 5);
    let started = call(
        &router,
        &fx.ctx(),
        "run_background",
        json!({"command": "echo ready; sleep 0.3; echo $((6 * 7))", "label": "server"}),
    )
    .await;
    assert_ok(&started);
    assert!(
        started.content.starts_with("started bg_1"),
        "{}",
        started.content
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let early = call(
        &router,
        &fx.ctx(),
        "check_background",
        json!({"id": "bg_1"}),
    )
    .await;
    assert!(
        early.content.contains("bg_1 [server] running"),
        "{}",
        early.content
    );
    assert!(early.content.contains("ready"), "{}", early.content);
    assert!(!early.content.ends_with("42"), "{}", early.content);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let late = call(
        &router,
        &fx.ctx(),
        "check_background",
        json!({"id": "bg_1", "tail_lines": 1}),
    )
    .await;
    assert!(
        late.content
            .contains("bg_1 [server] done: exited with code 0"),
        "{}",
        late.content
    );
    assert!(late.content.ends_with("\n42"), "{}", late.content);
    let list = call(
        &router,
        &fx.ctx(),
        "list_background",
        json!({"status": "done"}),
    )
    .await;
    assert!(
        list.content.contains("bg_1 [server] done"),
        "{}",
        list.content
    );
    jobs.kill_all().await;
}

#[tokio::test]
async fn the_running_cap_holds_and_unknown_ids_are_named() {
    let fx = Fixture::new();
    let (jobs, router) = jobs(&fx, 1);
    assert_ok(
        &call(
            &router,
            &fx.ctx(),
            "run_background",
            json!({"command": "sleep 30"}),
        )
        .await,
    );
    let second = call(
        &router,
        &fx.ctx(),
        "run_background",
        json!({"command": "sleep 30"}),
    )
    .await;
    assert_error(&second, "1 background jobs are already running");
    assert_error(
        &call(
            &router,
            &fx.ctx(),
            "check_background",
            json!({"id": "bg_9"}),
        )
        .await,
        "no background job \"bg_9\"",
    );
    jobs.kill_all().await;
}

#[tokio::test]
async fn kill_and_timeout_take_the_whole_process_group() {
    let fx = Fixture::new();
    let (jobs, router) = jobs(&fx, 5);
    let command = "sleep 300 & echo $! > child.pid; sleep 300";
    assert_ok(
        &call(
            &router,
            &fx.ctx(),
            "run_background",
            json!({"command": command}),
        )
        .await,
    );
    let child = pid_in(&fx.path("child.pid")).await;
    assert!(alive(child));
    let killed = call(&router, &fx.ctx(), "kill_background", json!({"id": "bg_1"})).await;
    assert!(killed.content.contains("bg_1 killed"), "{}", killed.content);
    assert!(
        !alive(child),
        "the job's background child survived kill_background"
    );

    let command = "sleep 300 & echo $! > timed.pid; sleep 300";
    assert_ok(
        &call(
            &router,
            &fx.ctx(),
            "run_background",
            json!({"command": command, "timeout_ms": 300}),
        )
        .await,
    );
    let child = pid_in(&fx.path("timed.pid")).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let status = call(
        &router,
        &fx.ctx(),
        "check_background",
        json!({"id": "bg_2"}),
    )
    .await;
    assert!(
        status.content.contains("timed out after 300 ms"),
        "{}",
        status.content
    );
    assert!(!alive(child));
    jobs.kill_all().await;
}

#[tokio::test]
async fn nothing_outlives_the_owner() {
    let fx = Fixture::new();
    let (jobs, router) = jobs(&fx, 5);
    for i in 0..3 {
        let command = format!("sleep 300 & echo $! > job{i}.pid; sleep 300");
        assert_ok(
            &call(
                &router,
                &fx.ctx(),
                "run_background",
                json!({"command": command}),
            )
            .await,
        );
    }
    let mut pids = Vec::new();
    for i in 0..3 {
        pids.push(pid_in(&fx.path(&format!("job{i}.pid"))).await);
    }
    assert!(pids.iter().all(|&pid| alive(pid)));
    jobs.kill_all().await;
    // The job's own shell has been reaped; its children have SIGKILL
    // pending, and die when the kernel next runs them (on a loaded machine,
    // not always before `kill` returns).
    for pid in pids {
        let mut polls = 0;
        while alive(pid) && polls < 500 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            polls += 1;
        }
        assert!(!alive(pid), "pid {pid} outlived its owner by 10 s");
    }
    let after = call(
        &router,
        &fx.ctx(),
        "run_background",
        json!({"command": "true"}),
    )
    .await;
    assert_error(&after, "shutting down");
}

#[tokio::test]
async fn bash_permission_rules_apply_to_background_commands() {
    let fx = Fixture::new();
    let (jobs, _) = jobs(&fx, 5);
    let mut registry = ToolRegistry::new();
    for tool in jobs.tools() {
        registry.insert(tool);
    }
    let rules: PermissionConfig =
        serde_json::from_value(json!({"bash": {"npm publish*": "deny"}})).unwrap();
    let router = fx.router_with(registry, Permissions::new(rules, false));
    let denied = call(
        &router,
        &fx.ctx(),
        "run_background",
        json!({"command": "npm publish --tag x"}),
    )
    .await;
    assert_error(&denied, "npm publish*");
    let destructive = call(
        &router,
        &fx.ctx(),
        "run_background",
        json!({"command": "rm -rf /"}),
    )
    .await;
    assert_error(&destructive, "command refused");
    jobs.kill_all().await;
}

//! The `http` tool against real servers: one a background job started (in
//! orch's own network here, in the sandbox's shared namespace through the
//! real binary), a foreign one on the host's loopback, listed and unlisted
//! hosts, a reader sending a write, credentials and the body cap.

use std::sync::Arc;
use std::time::Duration;

use orch::config::PermissionConfig;
use orch::events::EventBus;
use orch::tools::background::{BackgroundJobs, JobLimits};
use orch::tools::permissions::Permissions;
use orch::tools::{ToolOutput, ToolRegistry, ToolRouter};
use serde_json::{Value, json};

use crate::support::http::{Reply, Server};
use crate::support::project::{Project, call as scripted, run};
use crate::tools::{Fixture, assert_error, assert_ok, call};

/// A router with the background tools and `http`, and the jobs behind it.
fn router(fx: &Fixture) -> (Arc<BackgroundJobs>, ToolRouter) {
    let jobs = BackgroundJobs::new(
        JobLimits {
            max_running: 2,
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
    registry.insert(Arc::new(orch::tools::http::Http));
    let router = fx.router_with(
        registry,
        Permissions::new(PermissionConfig::default(), false),
    );
    (jobs, router)
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn http(fx: &Fixture, router: &ToolRouter, args: Value) -> ToolOutput {
    call(router, &fx.ctx(), "http", args).await
}

#[tokio::test]
async fn a_server_the_mission_started_is_reached_and_a_foreign_one_is_refused() {
    let fx = Fixture::new();
    fx.write("hello.txt", "hello from the mission's server\n");
    let (jobs, router) = router(&fx);
    let port = free_port();
    let started = call(
        &router,
        &fx.ctx(),
        "run_background",
        json!({"command": format!("exec python3 -m http.server {port} --bind 127.0.0.1"), "label": "dev server"}),
    )
    .await;
    assert_ok(&started);
    let url = format!("http://127.0.0.1:{port}/hello.txt");
    let mut answer = http(&fx, &router, json!({"url": url})).await;
    for _ in 0..100 {
        if !answer.is_error {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        answer = http(&fx, &router, json!({"url": url})).await;
    }
    assert_ok(&answer);
    assert!(
        answer.content.starts_with("HTTP/1.0 200 OK\n"),
        "{}",
        answer.content
    );
    assert!(
        answer
            .content
            .contains("\n\nhello from the mission's server\n"),
        "{}",
        answer.content
    );
    // By name too, and HEAD brings no body.
    let head = http(
        &fx,
        &router,
        json!({"url": format!("http://localhost:{port}/hello.txt"), "method": "head"}),
    )
    .await;
    assert_ok(&head);
    assert!(!head.content.contains("hello from"), "{}", head.content);

    // A server on the host's loopback that no command of the mission
    // started: refused, naming the ports that are the mission's.
    let foreign = Server::responding(|_| Reply::body(200, "text/plain", "not yours")).await;
    let refused = http(&fx, &router, json!({"url": format!("{}/", foreign.url())})).await;
    assert_error(&refused, "is not a server of this mission");
    assert!(
        refused
            .content
            .contains(&format!("listen on ports: {port}"))
            || refused.content.contains(&format!(", {port}")),
        "{}",
        refused.content
    );
    assert!(
        refused.content.contains("tools.http.allow"),
        "{}",
        refused.content
    );
    assert!(foreign.requests().is_empty());
    // Another host on the mission's port is not the mission's server.
    let elsewhere = http(
        &fx,
        &router,
        json!({"url": format!("http://example.com:{port}/")}),
    )
    .await;
    assert_error(&elsewhere, "http refused");
    jobs.kill_all().await;
}

#[tokio::test]
async fn a_reader_may_not_send_a_write_and_bad_calls_say_what_was_expected() {
    let fx = Fixture::new();
    let (_jobs, router) = router(&fx);
    let server = Server::responding(|_| Reply::body(200, "text/plain", "ok")).await;
    let mut fx = fx;
    fx.limits.http.allow = vec![server.url().trim_start_matches("http://").to_string()];
    let reviewer = orch::tools::ToolContext {
        agent: "Reviewer".into(),
        role: orch::agents::Role::Reviewer,
        may_write: false,
        sandbox: Some(orch::sandbox::Profile::Read),
        ..fx.ctx()
    };
    let post = json!({"url": format!("{}/items", server.url()), "method": "POST", "body": "{}"});
    let refused = call(&router, &reviewer, "http", post.clone()).await;
    assert_error(&refused, "agent Reviewer may not write");
    assert!(server.requests().is_empty());
    // A reader's GET goes through.
    let get = call(
        &router,
        &reviewer,
        "http",
        json!({"url": format!("{}/items", server.url())}),
    )
    .await;
    assert_ok(&get);
    // A writer's POST is sent, body and headers with it; its headers are
    // not echoed back.
    let sent = call(
        &router,
        &fx.ctx(),
        "http",
        json!({"url": format!("{}/items", server.url()), "method": "POST", "body": "{\"a\":1}", "headers": {"X-Marker": "marker-value-7"}}),
    )
    .await;
    assert_ok(&sent);
    assert!(!sent.content.contains("marker-value-7"), "{}", sent.content);
    let recorded = server.requests();
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[1].method, "POST");
    assert_eq!(recorded[1].body, json!({"a": 1}));
    assert_eq!(recorded[1].header("x-marker"), Some("marker-value-7"));

    for (args, expected) in [
        (
            json!({"url": server.url(), "method": "BREW"}),
            "invalid method \"BREW\": expected one of GET, HEAD",
        ),
        (
            json!({"url": server.url(), "body": "x"}),
            "invalid body: GET takes none",
        ),
        (
            json!({"url": server.url(), "timeout_ms": 0}),
            "invalid timeout_ms",
        ),
        (json!({"url": "not a url"}), "invalid url \"not a url\""),
        (
            json!({"url": server.url(), "headers": {"Content-Length": "3"}}),
            "set by the client itself",
        ),
        (json!({"uri": server.url()}), "invalid arguments for http"),
    ] {
        let output = call(&router, &fx.ctx(), "http", args).await;
        assert_error(&output, expected);
    }
    // A permissions rule for `http` applies as for any tool.
    let mut registry = ToolRegistry::new();
    registry.insert(Arc::new(orch::tools::http::Http));
    let denied = fx.router_with(
        registry,
        Permissions::new(
            serde_json::from_value(json!({"tools": {"http": "deny"}})).unwrap(),
            false,
        ),
    );
    let output = call(&denied, &fx.ctx(), "http", json!({"url": server.url()})).await;
    assert!(output.is_error, "{}", output.content);
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn a_listed_host_is_reached_with_credentials_redacted_and_an_unlisted_one_is_refused() {
    let mut fx = Fixture::new();
    let (_jobs, router) = router(&fx);
    let unlisted = Server::responding(|_| Reply::body(200, "text/plain", "unlisted")).await;
    let unlisted_url = unlisted.url();
    let listed = Server::responding(move |request| match request.path.as_str() {
        "/away" => {
            Reply::body(302, "text/plain", "").header("location", &format!("{unlisted_url}/x"))
        }
        "/here" => Reply::body(302, "text/plain", "").header("location", "/page"),
        _ => Reply::body(200, "text/html; charset=utf-8", "<p>the page</p>")
            .header("set-cookie", "session=cookie-value-123; HttpOnly")
            .header("x-api-key", "header-key-456")
            .header("x-request-id", "req-789"),
    })
    .await;
    fx.limits.http.allow = vec![listed.url().trim_start_matches("http://").to_string()];
    let page = http(
        &fx,
        &router,
        json!({"url": format!("{}/page", listed.url())}),
    )
    .await;
    assert_ok(&page);
    assert!(
        page.content.starts_with("HTTP/1.1 200 OK\n"),
        "{}",
        page.content
    );
    assert!(
        page.content.contains("set-cookie: [redacted]\n"),
        "{}",
        page.content
    );
    assert!(
        page.content.contains("x-api-key: [redacted]\n"),
        "{}",
        page.content
    );
    assert!(
        page.content.contains("x-request-id: req-789\n"),
        "{}",
        page.content
    );
    assert!(
        !page.content.contains("cookie-value-123"),
        "{}",
        page.content
    );
    assert!(!page.content.contains("header-key-456"), "{}", page.content);
    assert!(
        page.content.ends_with("\n\n<p>the page</p>"),
        "{}",
        page.content
    );
    // A redirect within the listed host is followed; one to an unlisted
    // host is refused before it is sent.
    let here = http(
        &fx,
        &router,
        json!({"url": format!("{}/here", listed.url())}),
    )
    .await;
    assert_ok(&here);
    assert!(
        here.content.starts_with("[redirected to "),
        "{}",
        here.content
    );
    let away = http(
        &fx,
        &router,
        json!({"url": format!("{}/away", listed.url())}),
    )
    .await;
    assert_error(&away, "is not listed in tools.http.allow");
    let direct = http(
        &fx,
        &router,
        json!({"url": format!("{}/x", unlisted.url())}),
    )
    .await;
    assert_error(&direct, "is not a server of this mission nor a listed host");
    assert!(unlisted.requests().is_empty());
    // A name listed without its address: it resolves to loopback, refused.
    let port = listed.url().rsplit(':').next().unwrap().to_string();
    fx.limits.http.allow = vec!["localhost".into()];
    let named = http(
        &fx,
        &router,
        json!({"url": format!("http://localhost:{port}/page")}),
    )
    .await;
    assert_error(&named, "localhost resolves to internal addresses only: ");
    assert_error(&named, "(loopback)");
    assert_error(&named, &format!(":{port}\" to tools.http.allow)"));
    assert_eq!(listed.requests().len(), 4);
}

#[tokio::test]
async fn a_long_body_is_cut_on_a_character_boundary_with_a_note() {
    let mut fx = Fixture::new();
    let (_jobs, router) = router(&fx);
    let body = "é".repeat(5000);
    let server =
        Server::responding(move |_| Reply::body(200, "text/plain; charset=utf-8", &body)).await;
    fx.limits.http.allow = vec![server.url().trim_start_matches("http://").to_string()];
    fx.limits.http.max_bytes = 1001;
    let answer = http(&fx, &router, json!({"url": server.url()})).await;
    assert_ok(&answer);
    let body = answer.content.split_once("\n\n").unwrap().1;
    let (kept, note) = body.split_once('\n').unwrap();
    assert_eq!(kept, "é".repeat(500));
    assert_eq!(
        note,
        "[body cut: the first 1000 bytes shown (tools.http.max_bytes is 1001)]\n"
    );
}

/// The real binary in the sandbox: a server a background job started in the
/// run's network namespace, unreachable from orch's own network, is
/// reached through the helper; a server on the host's loopback is not; a
/// secret in a body is redacted.
#[test]
fn inside_the_sandbox_a_background_server_is_reached_through_the_runs_network() {
    let project = Project::new();
    if !crate::boundaries::sandbox_works("inside_the_sandbox_a_background_server", &project) {
        return;
    }
    project.write("page.txt", "token=tok-0123456789abc\n");
    let host = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host_port = host.local_addr().unwrap().port();
    project.write(
        "run.json",
        &json!({ "agents": { "Worker": sandboxed_replies(host_port) } }).to_string(),
    );
    let (output, stdout, stderr) = run(project
        .orch()
        .args([
            "--provider",
            "scripted",
            "--script",
            "run.json",
            "--sandbox",
            "workspace-write",
            "run",
            "--agent",
            "worker",
            "go",
        ])
        .env("MY_SERVICE_TOKEN", "tok-0123456789abc"));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    check_sandboxed_results(&project.tool_results());
    drop(host);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_at_the_requested_bound() {
    let mut fx = Fixture::new();
    let (_jobs, router) = router(&fx);
    let server = Server::start(vec![Reply::silence()]).await;
    fx.limits.http.allow = vec![server.url().trim_start_matches("http://").to_string()];
    let started = std::time::Instant::now();
    let answer = http(
        &fx,
        &router,
        json!({"url": server.url(), "timeout_ms": 300}),
    )
    .await;
    assert_error(&answer, "timed out after 300 ms");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// The port the sandboxed tests' server listens on, inside the run's
/// network namespace (free there whatever the host runs).
const SANDBOXED_PORT: u16 = 18765;

/// A Worker that starts a server in the background, waits for it, reaches
/// it with `http`, then tries a server on the host's loopback.
fn sandboxed_replies(host_port: u16) -> Value {
    let port = SANDBOXED_PORT;
    json!([
        {"tool_calls": [scripted("run_background", json!({"command": format!("exec python3 -m http.server {port} --bind 127.0.0.1"), "label": "server"}))]},
        {"tool_calls": [scripted("bash", json!({"command": format!("for i in $(seq 50); do python3 -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/')\" 2>/dev/null && echo up && break; sleep 0.2; done")}))]},
        {"tool_calls": [scripted("http", json!({"url": format!("http://127.0.0.1:{port}/page.txt")}))]},
        {"tool_calls": [scripted("http", json!({"url": format!("http://127.0.0.1:{host_port}/")}))]},
        {"text": "done"}
    ])
}

fn check_sandboxed_results(results: &[String]) {
    assert_eq!(results.len(), 4, "{results:?}");
    assert!(results[1].contains("up"), "{}", results[1]);
    assert!(
        results[2].starts_with("HTTP/1.0 200 OK\n"),
        "{}",
        results[2]
    );
    assert!(results[2].contains("token=[redacted]"), "{}", results[2]);
    assert!(!results[2].contains("tok-0123456789abc"), "{}", results[2]);
    assert!(
        results[3].contains(&format!("listen on ports: {SANDBOXED_PORT} ")),
        "{}",
        results[3]
    );
}

/// The same as a user without privileges (sessions and CI run as root,
/// where more is allowed): the helper joins the run's user and network
/// namespaces all the same.
#[test]
fn inside_the_sandbox_an_unprivileged_user_reaches_a_background_server() {
    const TEST: &str = "inside_the_sandbox_an_unprivileged_user_reaches_a_background_server";
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        crate::support::skipped(TEST, "not root; the test above runs as this user");
        return;
    }
    if !crate::boundaries::sandbox_works(TEST, &Project::new()) {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (work, home) = (dir.path().join("work"), dir.path().join("home"));
    for path in [dir.path(), work.as_path(), home.as_path()] {
        std::fs::create_dir_all(path).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let orch = dir.path().join("orch");
    std::fs::copy(env!("CARGO_BIN_EXE_orch"), &orch).unwrap();
    std::fs::set_permissions(&orch, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(work.join("page.txt"), "token=tok-0123456789abc\n").unwrap();
    let host = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host_port = host.local_addr().unwrap().port();
    let script = json!({ "agents": { "Worker": sandboxed_replies(host_port) } });
    std::fs::write(work.join("run.json"), script.to_string()).unwrap();
    let output = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&orch)
        .arg("-C")
        .arg(&work)
        .args([
            "--trust-project",
            "--provider",
            "scripted",
            "--script",
            "run.json",
            "--sandbox",
            "workspace-write",
            "run",
            "--agent",
            "worker",
            "go",
        ])
        .current_dir(&work)
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", &home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("CARGO_TARGET_DIR")
        .env("CI", "1")
        .env("NO_COLOR", "1")
        .env("MY_SERVICE_TOKEN", "tok-0123456789abc")
        .output();
    let Ok(output) = output else {
        crate::support::skipped(TEST, "no setpriv");
        return;
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(!stdout.contains("without orch's sandbox"), "{stdout}");
    let sessions = work.join(".opencode/sessions");
    let file = std::fs::read_dir(sessions)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let results: Vec<String> = std::fs::read_to_string(file.path())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|line| line["message"]["role"] == "tool")
        .map(|line| line["message"]["content"].as_str().unwrap().to_string())
        .collect();
    check_sandboxed_results(&results);
    drop(host);
}

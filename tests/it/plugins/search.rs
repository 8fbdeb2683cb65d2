//! The search plugins (`websearch`, `codesearch`) against loopback fakes of
//! SearXNG, Brave Search and GitHub code search that record what reached
//! them: the API key arrives as the header the grant injects, the plugin
//! never sees it (the fakes echo it back; the host redacts it), unconfigured
//! plugins offer no tool. Also the host's `net` itself: a name resolving to
//! loopback is refused unless the address is allowed, on the first request
//! and after a redirect; plugin headers never override injected ones; and a
//! plugin built for `orch:plugin@0.1.0` still loads and works.

use std::collections::BTreeMap;

use super::*;
use crate::support::http::{Recorded, Reply, Server};

/// The environment variables the grants below refer to, set once for the
/// whole test process (each test reads its own names; nothing else reads
/// them). Values are long enough to be redacted.
fn keys() -> (&'static str, &'static str) {
    static SET: OnceLock<()> = OnceLock::new();
    const BRAVE: &str = "brave-key-0123456789abcdef";
    const GITHUB: &str = "ghp_github0123456789abcdef";
    SET.get_or_init(|| {
        // SAFETY: set once, before any grant that names these variables is
        // loaded; orch reads the environment only through std, whose own
        // lock orders these writes with its reads.
        unsafe {
            std::env::set_var("ORCH_TEST_BRAVE_KEY", BRAVE);
            std::env::set_var("ORCH_TEST_GITHUB_TOKEN", GITHUB);
        }
    });
    (BRAVE, GITHUB)
}

/// A grant for `name` with `fetch` hosts, injected `headers` per host and
/// a `config` object.
fn search_grant(
    config: &mut PluginsConfig,
    name: &str,
    fetch: &[&str],
    headers: &[(&str, &str, &str)],
    plugin_config: Option<Value>,
) {
    let mut by_host: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (host, header, value) in headers {
        by_host
            .entry(host.to_string())
            .or_default()
            .insert(header.to_string(), value.to_string());
    }
    let grant = PluginGrant {
        sha256: sha256_hex(&std::fs::read(guest(name)).unwrap()),
        project: None,
        data: false,
        memory_mib: None,
        fetch: fetch.iter().map(|host| host.to_string()).collect(),
        headers: by_host,
        config: plugin_config,
    };
    grant.check().expect("a valid grant");
    config.grants.insert(format!("{name}.wasm"), grant);
}

fn port_of(server: &Server) -> String {
    server.url().rsplit(':').next().unwrap().to_string()
}

/// Everything a request carried, as the fakes echo it back.
fn echo(request: &Recorded) -> String {
    request
        .headers
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn tools_of(host: &PluginHost, file: &str) -> Vec<String> {
    host.plugins()
        .into_iter()
        .find(|plugin| plugin.file == file)
        .unwrap_or_else(|| panic!("{file} is loaded"))
        .tools
        .into_iter()
        .map(|tool| tool.name)
        .collect()
}

#[tokio::test]
async fn unconfigured_search_plugins_offer_no_tools() {
    let project = project_with(&["websearch", "codesearch"]);
    // Installed as `orch init` installs them: a grant with nothing in it.
    let mut config = no_user_dir();
    search_grant(&mut config, "websearch", &[], &[], None);
    search_grant(&mut config, "codesearch", &[], &[], None);
    let (host, warnings, problems) = super::host(&project, &config).await;
    assert!(problems.is_empty(), "{problems:?}");
    assert!(tools_of(&host, "websearch.wasm").is_empty());
    assert!(tools_of(&host, "codesearch.wasm").is_empty());
    // SearXNG without an endpoint is not configured either.
    let mut config = no_user_dir();
    search_grant(
        &mut config,
        "websearch",
        &[],
        &[],
        Some(json!({"provider": "searxng"})),
    );
    let (host, _, _) = super::host(&project, &config).await;
    assert!(tools_of(&host, "websearch.wasm").is_empty());
    assert!(warnings.all().is_empty(), "{:?}", warnings.all());
}

#[tokio::test]
async fn websearch_reads_searxng_json_results() {
    let project = project_with(&["websearch"]);
    let server = Server::responding(|_| {
        Reply::json(
            200,
            &json!({
                "query": "tokio select",
                "number_of_results": 3,
                "results": [
                    {"url": "https://docs.rs/tokio/latest/tokio/macro.select.html", "title": "select in tokio - Rust", "content": "Waits on multiple concurrent branches, returning when the <b>first</b> branch completes.", "engine": "duckduckgo"},
                    {"url": "https://tokio.rs/tokio/tutorial/select", "title": "Select | Tokio", "content": "So far, when we wanted to add concurrency &amp; more.", "engine": "bing"},
                    {"url": "https://example.com/third", "title": "Third", "content": "", "engine": "bing"}
                ],
                "answers": [], "suggestions": [], "unresponsive_engines": []
            }),
        )
    })
    .await;
    let port = port_of(&server);
    let mut config = no_user_dir();
    search_grant(
        &mut config,
        "websearch",
        &[&format!("127.0.0.1:{port}")],
        &[],
        Some(json!({"provider": "searxng", "endpoint": server.url()})),
    );
    let (host, _, problems) = super::host(&project, &config).await;
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(tools_of(&host, "websearch.wasm"), ["websearch"]);
    let out = host
        .call_tool(
            "websearch.wasm",
            "websearch",
            &json!({"query": "tokio select!", "max_results": 2}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        "1. select in tokio - Rust\n   https://docs.rs/tokio/latest/tokio/macro.select.html\n   Waits on multiple concurrent branches, returning when the first branch completes.\n2. Select | Tokio\n   https://tokio.rs/tokio/tutorial/select\n   So far, when we wanted to add concurrency & more."
    );
    let seen = server.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/search?q=tokio+select%21&format=json");
    assert_eq!(seen[0].header("accept"), Some("application/json"));
}

#[tokio::test]
async fn websearch_sends_the_brave_key_the_host_injects_and_never_sees_it() {
    let (brave_key, _) = keys();
    let project = project_with(&["websearch"]);
    // The fake answers like Brave, and puts every header it received into
    // the first snippet: a server that reflects its request.
    let server = Server::responding(|request| {
        if request.header("x-subscription-token").is_none() {
            return Reply::json(
                401,
                &json!({"type": "ErrorResponse", "error": {"id": "x", "status": 401, "code": "SUBSCRIPTION_TOKEN_INVALID", "detail": "The provided subscription token is invalid."}}),
            );
        }
        Reply::json(
            200,
            &json!({
                "type": "search",
                "query": {"original": "wasm components"},
                "web": {"type": "search", "results": [
                    {"title": "The <strong>WebAssembly</strong> Component Model", "url": "https://component-model.bytecodealliance.org/", "description": format!("echo: {}", echo(request)), "language": "en"},
                    {"title": "wasmtime", "url": "https://wasmtime.dev/", "description": "A fast and secure runtime for <strong>WebAssembly</strong>", "language": "en"}
                ]}
            }),
        )
    })
    .await;
    let port = port_of(&server);
    let host_entry = format!("127.0.0.1:{port}");
    let mut config = no_user_dir();
    search_grant(
        &mut config,
        "websearch",
        &[&host_entry],
        &[(
            &host_entry,
            "X-Subscription-Token",
            "${ORCH_TEST_BRAVE_KEY}",
        )],
        Some(
            json!({"provider": "brave", "endpoint": format!("{}/res/v1/web/search", server.url())}),
        ),
    );
    let (host, warnings, problems) = super::host(&project, &config).await;
    assert!(problems.is_empty(), "{problems:?}");
    let out = host
        .call_tool(
            "websearch.wasm",
            "websearch",
            &json!({"query": "wasm components"}).to_string(),
        )
        .await
        .unwrap();
    // The key reached the API as the header...
    let seen = server.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("x-subscription-token"), Some(brave_key));
    assert_eq!(seen[0].path, "/res/v1/web/search?q=wasm+components&count=5");
    // ...and the plugin got it back only redacted.
    assert!(out.starts_with("1. The WebAssembly Component Model\n   https://component-model.bytecodealliance.org/\n   echo: "), "{out}");
    assert!(out.contains("x-subscription-token=[redacted]"), "{out}");
    assert!(
        out.ends_with(
            "2. wasmtime\n   https://wasmtime.dev/\n   A fast and secure runtime for WebAssembly"
        ),
        "{out}"
    );
    assert!(!out.contains(brave_key), "{out}");
    for line in warnings.logs().iter().chain(warnings.all().iter()) {
        assert!(!line.contains(brave_key), "{line}");
    }

    // With the variable unset the plugin still loads, with a warning naming
    // plugin and variable, and the API's refusal is a clear tool error.
    let mut config = no_user_dir();
    search_grant(
        &mut config,
        "websearch",
        &[&host_entry],
        &[(
            &host_entry,
            "X-Subscription-Token",
            "${ORCH_TEST_UNSET_BRAVE_KEY}",
        )],
        Some(
            json!({"provider": "brave", "endpoint": format!("{}/res/v1/web/search", server.url())}),
        ),
    );
    let (host, warnings, problems) = super::host(&project, &config).await;
    assert!(problems.is_empty(), "{problems:?}");
    assert!(
        warnings.all().iter().any(|w| w.starts_with("plugin \"websearch.wasm\": the environment variable ORCH_TEST_UNSET_BRAVE_KEY for its header X-Subscription-Token")),
        "{:?}",
        warnings.all()
    );
    let err = host
        .call_tool(
            "websearch.wasm",
            "websearch",
            &json!({"query": "x"}).to_string(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        "Brave Search answered 401: the API key was refused: check the header configured for this host in plugins.grants.\"websearch.wasm\".headers and the environment variable it names; it said: The provided subscription token is invalid."
    );
}

/// GitHub's answer to a code search with text matches (trimmed from a real one).
fn github_results() -> Value {
    json!({
        "total_count": 2,
        "incomplete_results": false,
        "items": [
            {
                "name": "engine.rs", "path": "crates/host/src/engine.rs", "sha": "abc",
                "url": "https://api.github.com/repositories/1/contents/crates/host/src/engine.rs",
                "html_url": "https://github.com/acme/host/blob/abc/crates/host/src/engine.rs",
                "repository": {"id": 1, "name": "host", "full_name": "acme/host", "private": false},
                "score": 1.0,
                "text_matches": [{
                    "object_url": "https://api.github.com/repositories/1/contents/crates/host/src/engine.rs",
                    "object_type": "FileContent", "property": "content",
                    "fragment": "let mut config = Config::new();\nconfig.epoch_interruption(true);\nlet engine = Engine::new(&config)?;",
                    "matches": [{"text": "epoch_interruption", "indices": [39, 57]}]
                }]
            },
            {
                "name": "lib.rs", "path": "src/lib.rs", "sha": "def",
                "html_url": "https://github.com/other/tool/blob/def/src/lib.rs",
                "repository": {"id": 2, "name": "tool", "full_name": "other/tool", "private": false},
                "score": 0.5,
                "text_matches": [{"property": "path", "fragment": "src/lib.rs"}, {"property": "content", "fragment": "engine.increment_epoch();"}]
            }
        ]
    })
}

#[tokio::test]
async fn codesearch_asks_github_with_the_injected_token_and_explains_api_errors() {
    let (_, github_token) = keys();
    let project = project_with(&["codesearch"]);
    let replies = Arc::new(Mutex::new(vec![
        Reply::json(200, &github_results()),
        Reply::json(
            403,
            &json!({"message": "API rate limit exceeded for user ID 1.", "documentation_url": "https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"}),
        ),
        Reply::json(
            422,
            &json!({"message": "Validation Failed", "errors": [{"message": "The search contains only logical operators (AND / OR / NOT) without any search terms.", "resource": "Search", "field": "q", "code": "invalid"}], "documentation_url": "https://docs.github.com/v3/search/"}),
        ),
        Reply::json(
            401,
            &json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}),
        ),
    ]));
    let server = Server::responding(move |_| replies.lock().unwrap().remove(0)).await;
    let port = port_of(&server);
    let host_entry = format!("127.0.0.1:{port}");
    let mut config = no_user_dir();
    search_grant(
        &mut config,
        "codesearch",
        &[&host_entry],
        &[(
            &host_entry,
            "Authorization",
            "Bearer ${ORCH_TEST_GITHUB_TOKEN}",
        )],
        Some(json!({"provider": "github", "endpoint": format!("{}/search/code", server.url())})),
    );
    let (host, warnings, problems) = super::host(&project, &config).await;
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(tools_of(&host, "codesearch.wasm"), ["codesearch"]);
    let search = |args: Value| {
        let host = host.clone();
        async move {
            host.call_tool("codesearch.wasm", "codesearch", &args.to_string())
                .await
        }
    };
    let out = search(json!({"query": "epoch_interruption", "language": "rust"}))
        .await
        .unwrap();
    assert_eq!(
        out,
        "2 files match \"epoch_interruption language:rust\" on GitHub; the first 2:\n\
         1. acme/host crates/host/src/engine.rs\n   https://github.com/acme/host/blob/abc/crates/host/src/engine.rs\n   | let mut config = Config::new();\n   | config.epoch_interruption(true);\n   | let engine = Engine::new(&config)?;\n\
         2. other/tool src/lib.rs\n   https://github.com/other/tool/blob/def/src/lib.rs\n   | engine.increment_epoch();"
    );
    let seen = server.requests();
    assert_eq!(
        seen[0].path,
        "/search/code?q=epoch_interruption+language%3Arust&per_page=10"
    );
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {github_token}").as_str())
    );
    assert_eq!(
        seen[0].header("accept"),
        Some("application/vnd.github.text-match+json")
    );

    let err = search(json!({"query": "x"})).await.unwrap_err();
    assert_eq!(
        err,
        "GitHub code search answered 403: rate limited: wait a minute before searching again; it said: API rate limit exceeded for user ID 1."
    );
    let err = search(json!({"query": "NOT"})).await.unwrap_err();
    assert_eq!(
        err,
        "GitHub code search answered 422: the query was not accepted; it said: Validation Failed (The search contains only logical operators (AND / OR / NOT) without any search terms.)"
    );
    let err = search(json!({"query": "x"})).await.unwrap_err();
    assert!(
        err.starts_with("GitHub code search answered 401: the token was refused"),
        "{err}"
    );
    let err = search(json!({"language": "rust"})).await.unwrap_err();
    assert_eq!(err, "missing \"query\": the code to search for");
    assert_eq!(
        server.requests().len(),
        4,
        "a call without a query sends nothing"
    );
    for line in warnings.logs().iter().chain(warnings.all().iter()) {
        assert!(!line.contains(github_token), "{line}");
    }
}

#[tokio::test]
async fn plugin_headers_never_replace_injected_ones_and_the_plugin_reads_only_its_config() {
    let (brave_key, _) = keys();
    let project = project_with(&["chaos"]);
    let server = Server::responding(|request| {
        Reply::body(
            200,
            "text/plain",
            &format!("{} {} {}", request.method, echo(request), request.body),
        )
    })
    .await;
    let port = port_of(&server);
    let host_entry = format!("127.0.0.1:{port}");
    let mut config = no_user_dir();
    search_grant(
        &mut config,
        "chaos",
        &[&host_entry],
        &[(&host_entry, "X-Api-Key", "${ORCH_TEST_BRAVE_KEY}")],
        Some(json!({"mode": "test"})),
    );
    let (host, _, problems) = super::host(&project, &config).await;
    assert!(problems.is_empty(), "{problems:?}");
    let call = |tool: &'static str, args: Value| {
        let host = host.clone();
        async move { host.call_tool("chaos.wasm", tool, &args.to_string()).await }
    };
    assert_eq!(
        call("config", json!({})).await.unwrap(),
        r#"{"mode":"test"}"#
    );
    let out = call(
        "request",
        json!({
            "method": "post",
            "url": format!("{}/items", server.url()),
            "headers": {"x-api-key": "mine", "X-Trace": "t1", "Content-Type": "application/json"},
            "body": "{\"a\":1}"
        }),
    )
    .await
    .unwrap();
    let seen = server.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].body, json!({"a": 1}));
    let keys: Vec<&str> = seen[0]
        .headers
        .iter()
        .filter(|(name, _)| name == "x-api-key")
        .map(|(_, value)| value.as_str())
        .collect();
    assert_eq!(keys, [brave_key], "the injected header alone");
    assert_eq!(seen[0].header("x-trace"), Some("t1"));
    assert!(out.starts_with("200 http://127.0.0.1:"), "{out}");
    assert!(
        out.contains("x-api-key=[redacted]") && !out.contains(brave_key),
        "{out}"
    );

    for (args, expected) in [
        (
            json!({"method": "TRACE", "url": server.url()}),
            "request refused: method \"TRACE\" is not one of GET, POST, PUT, PATCH, DELETE, HEAD",
        ),
        (
            json!({"method": "GET", "url": server.url(), "headers": {"Host": "evil"}}),
            "request refused: the header \"Host\" is set by the host",
        ),
    ] {
        assert_eq!(call("request", args).await.unwrap_err(), expected);
    }
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_unless_the_address_is_allowed() {
    let project = project_with(&["webfetch"]);
    let server = Server::responding(|_| Reply::body(200, "text/plain", "inside")).await;
    let port = port_of(&server);
    let fetch = |host: &PluginHost, url: String| {
        let host = host.clone();
        async move {
            host.call_tool(
                "webfetch.wasm",
                "webfetch",
                &json!({"url": url}).to_string(),
            )
            .await
        }
    };

    // The name is allowed, the loopback address it resolves to is not.
    let mut config = no_user_dir();
    search_grant(&mut config, "webfetch", &["localhost"], &[], None);
    let (host, _, _) = super::host(&project, &config).await;
    let err = fetch(&host, format!("http://localhost:{port}/page"))
        .await
        .unwrap_err();
    assert!(
        err.starts_with("fetch refused: localhost resolves to internal addresses only: ")
            && err.contains("127.0.0.1 (loopback)")
            && err.contains(&format!(
                "add \"127.0.0.1:{port}\" to plugins.grants.\"webfetch.wasm\".fetch"
            )),
        "{err}"
    );
    assert!(server.requests().is_empty(), "nothing reached the server");

    // The address on another port does not allow this one.
    let mut config = no_user_dir();
    search_grant(
        &mut config,
        "webfetch",
        &["localhost", "127.0.0.1:1"],
        &[],
        None,
    );
    let (host, _, _) = super::host(&project, &config).await;
    let err = fetch(&host, format!("http://localhost:{port}/page"))
        .await
        .unwrap_err();
    assert!(
        err.starts_with("fetch refused: localhost resolves"),
        "{err}"
    );
    assert!(server.requests().is_empty());

    // With the address itself allowed, the name reaches it.
    let mut config = no_user_dir();
    search_grant(
        &mut config,
        "webfetch",
        &["localhost", &format!("127.0.0.1:{port}")],
        &[],
        None,
    );
    let (host, _, _) = super::host(&project, &config).await;
    let page = fetch(&host, format!("http://localhost:{port}/page"))
        .await
        .unwrap();
    assert!(page.ends_with("\n\ninside"), "{page}");
    assert_eq!(server.requests().len(), 1);

    // A redirect hop is checked the same way: the first server is allowed
    // by address, the name it redirects to resolves to a loopback port
    // that is not.
    let first = Server::start(vec![
        Reply::body(302, "text/plain", "")
            .header("location", &format!("http://localhost:{port}/inner")),
    ])
    .await;
    let mut config = no_user_dir();
    search_grant(
        &mut config,
        "webfetch",
        &["localhost", &format!("127.0.0.1:{}", port_of(&first))],
        &[],
        None,
    );
    let (host, _, _) = super::host(&project, &config).await;
    let err = fetch(&host, format!("{}/start", first.url()))
        .await
        .unwrap_err();
    assert!(
        err.starts_with("fetch refused: localhost resolves"),
        "{err}"
    );
    assert_eq!(first.requests().len(), 1);
    assert_eq!(server.requests().len(), 1, "the redirect never reached it");
}

#[tokio::test]
async fn a_plugin_built_for_contract_0_1_0_still_loads_and_works() {
    let project = project_with(&["contract_0_1_0"]);
    let server = Server::responding(|_| Reply::body(200, "text/plain", "pong")).await;
    let mut config = no_user_dir();
    search_grant(
        &mut config,
        "contract_0_1_0",
        &[&format!("127.0.0.1:{}", port_of(&server))],
        &[],
        None,
    );
    let (host, warnings, problems) = super::host(&project, &config).await;
    assert!(problems.is_empty(), "{problems:?}");
    let info = &host.plugins()[0];
    assert_eq!(info.contract, "0.1.0");
    assert_eq!(info.name, "released");
    let args = json!({"url": format!("{}/ping", server.url())}).to_string();
    for n in 1..=2 {
        let out = host
            .call_tool("contract_0_1_0.wasm", "released_fetch", &args)
            .await
            .unwrap();
        assert_eq!(out, format!("call {n}: 200 pong"));
    }
    assert_eq!(
        warnings.logs(),
        [
            "contract_0_1_0.wasm info: call 1",
            "contract_0_1_0.wasm info: call 2"
        ]
    );
    // The plugins built with this orch's SDK speak the new version.
    let project = project_with(&["webfetch"]);
    let (host, _, _) = super::host(&project, &no_user_dir()).await;
    assert_eq!(host.plugins()[0].contract, "0.1.1");
}

/// A server that echoes the injected key: a plugin choosing `max_bytes` so
/// the cap falls inside the key gets no part of it; a plugin that asks for
/// the same granted host over plain http (not loopback) gets no key sent.
#[tokio::test]
async fn an_echoed_key_is_never_handed_back_in_part() {
    use orch::plugins::net::{Fetcher, Injected, Outgoing, Reach};
    const SECRET: &str = "sk-injected-0123456789abcdef";
    let server = Server::responding(|request| {
        let key = request.header("x-api-key").unwrap_or("").to_string();
        Reply::body(200, "text/plain", &format!("key={key}\n"))
    })
    .await;
    let host =
        orch::config::HostPattern::parse(server.url().trim_start_matches("http://")).unwrap();
    let reach = Reach {
        allow: std::sync::Arc::from(vec![host.clone()]),
        inject: std::sync::Arc::from(vec![Injected {
            host,
            headers: vec![("X-Api-Key".into(), SECRET.into())],
            secrets: vec![SECRET.into()],
        }]),
    };
    let fetcher = Fetcher::new(1 << 20, std::time::Duration::from_secs(5));
    for cap in [4 + SECRET.len() - 1, 4 + 5, 4 + SECRET.len(), 200] {
        let fetched = fetcher
            .send(
                "evil.wasm",
                &reach,
                Outgoing {
                    method: "GET".into(),
                    url: format!("{}/echo", server.url()),
                    headers: vec![],
                    body: None,
                    max_bytes: cap as u32,
                },
            )
            .await
            .unwrap();
        assert!(fetched.body.len() <= cap, "cap {cap}: {:?}", fetched.body);
        assert!(
            !fetched.body.contains("sk-inj") && !fetched.body.contains("0123"),
            "cap {cap}: part of the key reached the plugin: {:?}",
            fetched.body
        );
        assert!(
            "key=[redacted]\n".starts_with(&fetched.body),
            "cap {cap}: {:?}",
            fetched.body
        );
    }
}

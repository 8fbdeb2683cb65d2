//! Extension benchmarks (run with `cargo bench --bench extensions`): what
//! MCP servers, plugins and skills cost a run.
//!
//! - one tool call through `Tool::call`, median and p90: a stdio MCP server
//!   (the tests' Python server `tests/it/mcp/server.py` and, when installed,
//!   `@modelcontextprotocol/server-everything`), a wasm plugin tool (the
//!   bundled `diff`) and a built-in tool (`read` of a small file);
//! - start-up of MCP servers by `McpHub::start`, until their tools are
//!   listed: each alone, and three started together;
//! - request bytes with 100 read-only MCP tools and 50 skills installed:
//!   what the live-tool offer defers (`Offer::of` with the default budget,
//!   2% of a 200 k-token window), and the first request body the Commander
//!   and a Worker of a real `orch` run send to a loopback OpenAI-compatible
//!   server, against the same project without MCP servers and skills, and
//!   against the tool list with the 100 schemas inline.
//!
//! The MCP servers are the ones `.ci/run` installs under
//! `<target>/mcp-servers/` (a Python venv with the `mcp` SDK, node's
//! server-everything); a part whose server is missing says "skipped: ...".
//! Prints numbers; asserts only that the calls answer what they should.

// Only the loopback server of the tests' helpers is used here.
#[allow(dead_code)]
#[path = "../tests/it/support/http.rs"]
mod http;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use orch::config::{McpServer, PluginsConfig};
use orch::events::EventBus;
use orch::mcp::McpHub;
use orch::plugins::PluginHost;
use orch::provider::ToolSpec;
use orch::tools::live::{LiveTools, Offer, call_tool_spec, spec_bytes};
use orch::tools::{Tool, ToolContext, ToolOutput, ToolRegistry};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Where `.ci/run` installs the MCP test servers.
fn servers_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("mcp-servers")
}

fn python() -> Result<PathBuf, String> {
    let path = servers_dir().join("venv/bin/python");
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("{} is not installed (see .ci/run)", path.display()))
    }
}

fn everything() -> Result<PathBuf, String> {
    let path = servers_dir()
        .join("node/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    if !path.is_file() {
        return Err(format!("{} is not installed (see .ci/run)", path.display()));
    }
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => Ok(path),
        _ => Err("node is not on PATH".into()),
    }
}

fn fixture_script() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/mcp/server.py").to_string()
}

fn stdio(command: &Path, args: &[&str]) -> McpServer {
    McpServer {
        command: Some(command.to_string_lossy().into_owned()),
        args: args.iter().map(|arg| arg.to_string()).collect(),
        timeout_ms: 60_000,
        ..McpServer::default()
    }
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    println!(
        "  {what:<52} n={:<4} median {:>10.1?}  p90 {:>10.1?}  min {:>10.1?}",
        samples.len(),
        at(0.5),
        at(0.9),
        samples[0]
    );
}

fn ctx(root: &Path) -> ToolContext {
    ToolContext {
        root: Arc::new(root.to_path_buf()),
        session: "bench".into(),
        agent: "Worker".into(),
        role: orch::agents::Role::Worker,
        call_id: "call-1".into(),
        cancel: CancellationToken::new(),
        limits: Arc::new(orch::config::ToolsConfig::default()),
        sandbox: Some(orch::sandbox::Profile::Write),
        may_write: true,
        // A fresh session view: every `read` is a first read.
        seen: Arc::default(),
    }
}

/// `n` calls of `tool` with `args` (after a few unmeasured ones); every
/// answer must be a success containing `expect`.
async fn calls(what: &str, tool: &Arc<dyn Tool>, args: Value, expect: &str, root: &Path, n: usize) {
    for _ in 0..5 {
        let out = tool.call(args.clone(), &ctx(root)).await;
        assert!(
            !out.is_error && out.content.contains(expect),
            "{what}: {out:?}"
        );
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let ctx = ctx(root);
        let args = args.clone();
        let started = Instant::now();
        let out = tool.call(args, &ctx).await;
        samples.push(started.elapsed());
        assert!(
            !out.is_error && out.content.contains(expect),
            "{what}: {out:?}"
        );
    }
    report(what, samples);
}

fn mcp_tool(hub: &McpHub, name: &str) -> Arc<dyn Tool> {
    hub.tools()
        .into_iter()
        .map(|(tool, _)| tool)
        .find(|tool| tool.spec().name == name)
        .unwrap_or_else(|| panic!("the hub offers no {name}"))
}

/// 1: one call through each kind of tool.
async fn tool_call_costs() {
    println!("== one tool call through Tool::call");
    let dir = tempfile::tempdir().expect("temp dir");
    let root = std::fs::canonicalize(dir.path()).expect("canonical temp dir");
    std::fs::write(root.join("small.txt"), "a small file\n".repeat(20)).expect("small file");

    let registry = ToolRegistry::builtins();
    let read = registry.get("read").expect("built-in read").clone();
    calls(
        "built-in read (260 B file)",
        &read,
        json!({"path": "small.txt"}),
        "a small file",
        &root,
        2_000,
    )
    .await;

    // The bundled diff plugin, as `orch init` installs plugins; its tool
    // compares two texts (no project grant needed).
    let (file, bytes) = orch::plugins::bundled::PLUGINS
        .iter()
        .find(|(file, _)| *file == "diff.wasm")
        .expect("diff is bundled (rustup target add wasm32-wasip2)");
    let plugins = root.join(".opencode/plugins");
    std::fs::create_dir_all(&plugins).expect("plugins dir");
    std::fs::write(plugins.join(file), bytes).expect("plugin");
    let config = PluginsConfig {
        user_dir: false,
        // Deadlines are not what is measured.
        tool_timeout_ms: 30_000,
        ..PluginsConfig::default()
    };
    let cache = orch::plugins::CodeCache::open(&root.join("code-cache")).expect("code cache");
    let host = PluginHost::with_cache(&root, &config, Arc::new(EventBus::new()), None, Some(cache))
        .expect("plugin host");
    let problems = host.load_dirs(&[plugins]).await;
    assert!(problems.is_empty(), "{problems:?}");
    let (tools, problems) = host.tools(&[]);
    assert!(problems.is_empty(), "{problems:?}");
    let diff = tools
        .into_iter()
        .map(|(tool, _)| tool)
        .find(|tool| tool.spec().name == "diff")
        .expect("diff's tool");
    calls(
        "wasm plugin diff (two 3-line texts, fresh instance)",
        &diff,
        json!({"a_text": "one\ntwo\nthree\n", "b_text": "one\n2\nthree\n"}),
        "+2",
        &root,
        500,
    )
    .await;

    match python() {
        Err(why) => println!("  MCP Python server echo: skipped: {why}"),
        Ok(python) => {
            let hub = McpHub::start(
                vec![("py".into(), stdio(&python, &[&fixture_script()]))],
                root.clone(),
                Arc::new(EventBus::new()),
            )
            .await;
            let echo = mcp_tool(&hub, "mcp__py__echo");
            calls(
                "MCP stdio, Python SDK server, echo",
                &echo,
                json!({"text": "hello there"}),
                "hello there",
                &root,
                200,
            )
            .await;
            hub.shutdown().await;
        }
    }
    match everything() {
        Err(why) => println!("  MCP server-everything echo: skipped: {why}"),
        Ok(index) => {
            let hub = McpHub::start(
                vec![(
                    "everything".into(),
                    stdio(Path::new("node"), &[&index.to_string_lossy(), "stdio"]),
                )],
                root.clone(),
                Arc::new(EventBus::new()),
            )
            .await;
            let echo = mcp_tool(&hub, "mcp__everything__echo");
            calls(
                "MCP stdio, server-everything (node), echo",
                &echo,
                json!({"message": "hello there"}),
                "hello there",
                &root,
                200,
            )
            .await;
            hub.shutdown().await;
        }
    }
}

/// 2: `McpHub::start` until the tools are listed, `runs` times.
async fn start_costs(what: &str, servers: Vec<(String, McpServer)>, tools: usize, root: &Path) {
    const RUNS: usize = 5;
    let mut samples = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        let hub = McpHub::start(
            servers.clone(),
            root.to_path_buf(),
            Arc::new(EventBus::new()),
        )
        .await;
        let listed = hub.tools().len();
        samples.push(started.elapsed());
        assert!(
            listed >= tools,
            "{what}: {listed} tools listed, expected at least {tools}: {:?}",
            hub.status()
        );
        hub.shutdown().await;
    }
    report(what, samples);
}

async fn startup_costs(generated: &Path) {
    println!(
        "== MCP server start-up (McpHub::start until the tools are listed; {} cores: servers start at once, but starting is CPU work)",
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    let python = match python() {
        Ok(python) => python,
        Err(why) => {
            println!("  skipped: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let fixture = ("py".to_string(), stdio(&python, &[&fixture_script()]));
    let hundred = (
        "bench".to_string(),
        stdio(&python, &[&generated.to_string_lossy()]),
    );
    start_costs(
        "one server: Python fixture (7 tools)",
        vec![fixture.clone()],
        7,
        dir.path(),
    )
    .await;
    start_costs(
        "one server: generated Python, 100 tools",
        vec![hundred.clone()],
        100,
        dir.path(),
    )
    .await;
    let third = match everything() {
        Ok(index) => {
            let server = (
                "everything".to_string(),
                stdio(Path::new("node"), &[&index.to_string_lossy(), "stdio"]),
            );
            start_costs(
                "one server: server-everything (node)",
                vec![server.clone()],
                5,
                dir.path(),
            )
            .await;
            server
        }
        Err(why) => {
            println!("  server-everything: skipped: {why}; a second Python fixture instead");
            ("py2".to_string(), stdio(&python, &[&fixture_script()]))
        }
    };
    let name = format!("three together: py, bench (100 tools), {}", third.0);
    start_costs(&name, vec![fixture, hundred, third], 110, dir.path()).await;
}

/// The 100 MCP-like tools: (server tool name, description, input schema).
fn hundred_tools() -> Vec<(String, String, Value)> {
    const VERBS: [&str; 10] = [
        "list",
        "search",
        "get",
        "count",
        "describe",
        "show",
        "find",
        "inspect",
        "summarize",
        "check",
    ];
    const NOUNS: [&str; 10] = [
        "issues",
        "pull_requests",
        "commits",
        "branches",
        "releases",
        "workflows",
        "files",
        "users",
        "labels",
        "comments",
    ];
    let mut tools = Vec::new();
    for verb in VERBS {
        for noun in NOUNS {
            let things = noun.replace('_', " ");
            let description = format!(
                "{}{} the {things} of a repository, filtered by state and a free-text query; returns at most `limit` of them as JSON with ids, titles and links.",
                verb[..1].to_uppercase(),
                &verb[1..]
            );
            let schema = json!({
                "type": "object",
                "properties": {
                    "repo": {"type": "string", "description": "owner/name of the repository"},
                    "query": {"type": "string", "description": format!("words the {things} must contain")},
                    "state": {"type": "string", "enum": ["open", "closed", "all"], "description": "which ones (default open)"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 100, "description": "the most results (default 20)"}
                },
                "required": ["repo"]
            });
            tools.push((format!("{verb}_{noun}"), description, schema));
        }
    }
    tools
}

/// An MCP server's tool as the hub would offer it, answering nothing.
struct Fake(ToolSpec);

#[async_trait]
impl Tool for Fake {
    fn spec(&self) -> ToolSpec {
        self.0.clone()
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn call(&self, _args: Value, _ctx: &ToolContext) -> ToolOutput {
        ToolOutput::ok("[]")
    }
}

/// A stdio MCP server (Python SDK) offering the tools in `tools.json`
/// beside it, all read-only.
const GENERATED_SERVER: &str = r#"import json
import os
import sys

import anyio
import mcp.types as types
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.stdio import stdio_server

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "tools.json")) as f:
    TOOLS = json.load(f)

server = Server("bench")


@server.list_tools()
async def list_tools() -> list[types.Tool]:
    return [
        types.Tool(name=t["name"], description=t["description"], inputSchema=t["schema"],
                   annotations=types.ToolAnnotations(readOnlyHint=True))
        for t in TOOLS
    ]


@server.call_tool(validate_input=False)
async def call_tool(name: str, arguments: dict):
    return [types.TextContent(type="text", text="[]")]


async def main():
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options(
            notification_options=NotificationOptions()))


anyio.run(main)
"#;

/// Write the generated server and its tools into `dir`; its script's path.
fn write_generated_server(dir: &Path) -> PathBuf {
    let tools: Vec<Value> = hundred_tools()
        .into_iter()
        .map(|(name, description, schema)| {
            json!({"name": name, "description": description, "schema": schema})
        })
        .collect();
    std::fs::write(dir.join("tools.json"), Value::Array(tools).to_string()).expect("tools.json");
    let script = dir.join("server.py");
    std::fs::write(&script, GENERATED_SERVER).expect("server script");
    script
}

/// An OpenAI-compatible streaming reply with `text` and no tool call.
fn sse_text(text: &str) -> String {
    format!(
        "data: {}\n\ndata: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
        json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": null}]}),
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        json!({"choices": [], "usage": {"prompt_tokens": 1000, "completion_tokens": 5, "total_tokens": 1005}})
    )
}

const SKILL_TOPICS: [&str; 10] = [
    "release-notes",
    "db-migration",
    "api-review",
    "incident-report",
    "perf-profile",
    "i18n-strings",
    "changelog",
    "dependency-bump",
    "security-audit",
    "docs-style",
];

/// A project at `dir` talking to `url`; with `mcp_server` (the generated
/// server's script run by `python`) and 50 skills when given.
fn bench_project(dir: &Path, url: &str, extensions: Option<(&Path, &Path)>) {
    std::fs::create_dir_all(dir.join(".opencode")).expect("project dir");
    std::fs::write(dir.join("README.md"), "bench project\n").expect("readme");
    let mut config = json!({
        "provider": "openai",
        "model": "bench",
        "openai": {"base_url": url},
        "models": {"bench": {"context_window": 200_000, "max_output": 8_192}},
        "verify": [],
        "mission": {"max_iterations": 1}
    });
    if let Some((python, script)) = extensions {
        config["mcp"] = json!({"servers": {"bench": {
            "command": python.to_string_lossy(),
            "args": [script.to_string_lossy()],
            "timeout_ms": 60_000
        }}});
        for i in 0..50 {
            let name = format!("{}-{}", SKILL_TOPICS[i % 10], i / 10 + 1);
            let folder = dir.join(".claude/skills").join(&name);
            std::fs::create_dir_all(&folder).expect("skill folder");
            std::fs::write(
                folder.join("SKILL.md"),
                format!(
                    "---\nname: {name}\ndescription: Use when the task involves {} work of kind {}: the team's checklist, the commands to run and the files to update, in order.\n---\n\n# {name}\n\n1. Read the checklist.\n2. Run the commands.\n3. Update the files.\n",
                    SKILL_TOPICS[i % 10].replace('-', " "),
                    i / 10 + 1
                ),
            )
            .expect("SKILL.md");
        }
    }
    std::fs::write(dir.join(".opencode/orch.json"), config.to_string()).expect("orch.json");
}

/// Run `orch -C dir <args>` (bounded to two minutes) and return the
/// request bodies the loopback provider at `server` received.
fn run_orch(dir: &Path, home: &Path, args: &[&str], server: &http::Server) -> Vec<Value> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_orch"));
    command.env("CI", "1").env("ORCH_TRUST_PROJECT", "1");
    // No user-level skills, plugins or settings of whoever runs this.
    command
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"));
    for var in [
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "ORCH_PROVIDER",
        "ORCH_MODEL",
        "OPENAI_BASE_URL",
    ] {
        command.env_remove(var);
    }
    let mut child = command
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run orch");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().expect("wait for orch").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            println!("  orch {args:?} did not finish within 2 minutes; killed");
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    server.requests().into_iter().map(|r| r.body).collect()
}

fn system_prompt(request: &Value) -> &str {
    request["messages"][0]["content"].as_str().unwrap_or("")
}

/// The first request of `requests` whose system prompt contains `who`.
fn first_of<'a>(requests: &'a [Value], who: &str) -> Option<&'a Value> {
    requests.iter().find(|r| system_prompt(r).contains(who))
}

fn describe(what: &str, request: Option<&Value>) {
    match request {
        None => println!("  {what}: no request seen"),
        Some(request) => {
            let tools = request["tools"].as_array().cloned().unwrap_or_default();
            println!(
                "  {what:<44} {:>6} bytes (system prompt {} bytes, {} tools in {} bytes)",
                request.to_string().len(),
                system_prompt(request).len(),
                tools.len(),
                Value::Array(tools).to_string().len()
            );
        }
    }
}

/// `request` with `call_tool` listing no names and `specs` inline, each
/// in the shape of the request's own tool entries.
fn with_inline(request: &Value, specs: &[ToolSpec]) -> Value {
    let mut request = request.clone();
    let tools = request["tools"].as_array_mut().expect("a tool list");
    let template = tools[0].clone();
    let entry = |spec: &ToolSpec| {
        let mut entry = template.clone();
        entry["function"]["name"] = spec.name.clone().into();
        entry["function"]["description"] = spec.description.clone().into();
        entry["function"]["parameters"] = spec.parameters.clone();
        entry
    };
    for tool in tools.iter_mut() {
        if tool["function"]["name"] == "call_tool" {
            *tool = entry(&call_tool_spec(&[]));
        }
    }
    tools.extend(specs.iter().map(entry));
    request
}

/// 3: request bytes with 100 MCP tools and 50 skills.
async fn request_bytes(generated: &Path) {
    println!("== request bytes with 100 read-only MCP tools and 50 skills");
    let specs: Vec<ToolSpec> = hundred_tools()
        .into_iter()
        .map(|(name, description, parameters)| ToolSpec {
            // As the hub names them (these names need no cleaning).
            name: format!("mcp__bench__{name}"),
            description,
            parameters,
        })
        .collect();
    let live = LiveTools::new(None);
    let problems = live.set_source(
        "mcp",
        specs
            .iter()
            .map(|spec| (Arc::new(Fake(spec.clone())) as Arc<dyn Tool>, false))
            .collect(),
    );
    assert!(problems.is_empty(), "{problems:?}");
    let defaults = orch::config::ToolsConfig::default();
    let budget = (defaults.defer_share * 200_000.0 * 4.0) as usize;
    let offer = Offer::of(&live, false, budget);
    let inline: usize = specs.iter().map(spec_bytes).sum();
    let call_tool = call_tool_spec(&offer.deferred);
    println!(
        "  offer (budget {budget} B of schemas): {} direct, {} deferred; the 100 schemas are ~{inline} B",
        offer.direct.len(),
        offer.deferred.len()
    );
    println!(
        "  call_tool with the deferred names: ~{} B (without names ~{} B)",
        spec_bytes(&call_tool),
        spec_bytes(&call_tool_spec(&[]))
    );

    let python = match python() {
        Ok(python) => python,
        Err(why) => {
            println!("  real orch runs: skipped: {why}");
            return;
        }
    };
    let server = http::Server::responding(|_| http::Reply::sse(&sse_text("Done."), 4096)).await;
    let url = format!("{}/v1", server.url());
    let home = tempfile::tempdir().expect("temp home");
    let with = tempfile::tempdir().expect("temp project");
    let without = tempfile::tempdir().expect("temp project");
    bench_project(with.path(), &url, Some((&python, generated)));
    bench_project(without.path(), &url, None);

    // Each run in its own blocking thread: the loopback server runs on this
    // runtime meanwhile.
    let run = |dir: PathBuf, args: &'static [&'static str]| {
        let home = home.path().to_path_buf();
        let before = server.requests().len();
        let requests = run_orch(&dir, &home, args, &server);
        requests[before.min(requests.len())..].to_vec()
    };
    let task: &'static [&'static str] = &["task", "Say done"];
    let worker: &'static [&'static str] = &["run", "Say done"];
    let commander = tokio::task::block_in_place(|| run(with.path().to_path_buf(), task));
    let commander_bare = tokio::task::block_in_place(|| run(without.path().to_path_buf(), task));
    let worker_with = tokio::task::block_in_place(|| run(with.path().to_path_buf(), worker));
    let worker_bare = tokio::task::block_in_place(|| run(without.path().to_path_buf(), worker));

    let first = first_of(&commander, "You are the Commander");
    describe("Commander, 100 MCP tools + 50 skills:", first);
    describe(
        "Commander, no MCP servers or skills:",
        first_of(&commander_bare, "You are the Commander"),
    );
    describe("Worker, 100 MCP tools + 50 skills:", worker_with.first());
    describe("Worker, no MCP servers or skills:", worker_bare.first());
    if let Some(first) = first {
        let text = first.to_string();
        let listed = specs
            .iter()
            .filter(|spec| {
                let short = spec.name.trim_start_matches("mcp__bench__");
                text.contains(&format!("{short},")) || text.contains(&format!("{short}}}"))
            })
            .count();
        println!("  the Commander's call_tool lists {listed} of the 100 MCP tools by name");
        describe(
            "Commander, the 100 schemas inline (not deferred):",
            Some(&with_inline(first, &specs)),
        );
        println!(
            "  Commander target <= 15 KB: {}",
            if text.len() <= 15 * 1024 {
                "met"
            } else {
                "NOT met"
            }
        );
    }
    if let Some(worker) = worker_with.first() {
        let catalog = SKILL_TOPICS
            .iter()
            .flat_map(|topic| (1..=5).map(move |k| format!("{topic}-{k}")))
            .filter(|name| system_prompt(worker).contains(name.as_str()))
            .count();
        println!("  the Worker's system prompt names {catalog} of the 50 skills");
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("orch extension benchmarks");
    tool_call_costs().await;
    let generated = tempfile::tempdir().expect("temp dir");
    let script = write_generated_server(generated.path());
    startup_costs(&script).await;
    request_bytes(&script).await;
}

//! The `http` tool: agents send HTTP requests to the servers their own
//! mission started (a dev server a background job runs) and, only when the
//! user lists them in `tools.http.allow`, to other hosts.
//!
//! Which ports are the mission's: with the sandbox's shared network
//! namespace (`sandbox.rs`, `orch __sandbox-net`), every port listening
//! in it, since only the run's commands live there; without one, the ports
//! whose listening sockets are held by processes in the process groups of
//! agents' commands (`process::agent_groups`). A server inside the
//! namespace is unreachable from orch's own network, and orch's threaded
//! runtime cannot enter it, so such a request runs in a small
//! single-threaded helper (`orch __http HOLDER`) that joins the holder's
//! user and network namespaces, reads one request as JSON on stdin and
//! writes the answer as JSON on stdout; it is started through the launcher
//! and killed with the call. Listed hosts are reached from orch's own
//! network, every redirect hop checked against the list and every address
//! a listed name resolves to checked (`crate::net`).
//!
//! Anything but GET and HEAD is a write, sent only for agents that may
//! write. The response comes back as a status line, headers (credentials
//! redacted) and a capped body, never with the request's own headers.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Url;
use reqwest::header::{CONTENT_LENGTH, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Tool, ToolContext, ToolOutput, parse_args};
use crate::config::{HostPattern, HttpConfig};
use crate::net::MAX_REDIRECTS;
use crate::provider::{ToolSpec, error_chain};

/// The first argument that makes orch the helper that sends one request
/// from inside the run's network namespace.
pub const HELPER: &str = "__http";

/// The methods the tool sends; the first two only read.
const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
/// Methods that carry a request body.
const BODY_METHODS: &[&str] = &["POST", "PUT", "PATCH", "DELETE"];
/// The most a request may carry: its body, and its headers together.
const MAX_REQUEST_BODY: usize = 1 << 20;
const MAX_REQUEST_HEADERS: usize = 16 * 1024;
/// The key that lists other hosts, for messages.
const ALLOW_KEY: &str = "tools.http.allow";
/// Headers whose values are credentials, whatever their names say.
const CREDENTIAL_HEADERS: &[&str] = &[
    "set-cookie",
    "cookie",
    "authorization",
    "proxy-authorization",
];

pub struct Http;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    url: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// One request as sent (and as the helper reads it).
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
    max_bytes: usize,
    timeout_ms: u64,
    /// The mission's ports: where a hop may go inside its network.
    ports: BTreeSet<u16>,
}

/// What came back.
#[derive(Debug, Serialize, Deserialize)]
struct Response {
    /// The URL that answered (after redirects).
    url: String,
    version: String,
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    body: String,
    /// The body went on past the cap.
    cut: bool,
    /// `content-length`, when the server sent one.
    length: Option<u64>,
}

/// The helper's answer on stdout.
#[derive(Debug, Serialize, Deserialize)]
enum Outcome {
    Answered(Response),
    Failed(String),
}

#[async_trait]
impl Tool for Http {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "http".into(),
            description: "Send an HTTP request to a server this mission started (e.g. a dev server run_background started) or a host listed in tools.http.allow. Returns status, headers and the body (capped). Methods other than GET and HEAD need an agent that may write.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "url": {"type": "string", "description": "http://127.0.0.1:PORT/path for the mission's servers"},
                    "method": {"type": "string", "enum": METHODS, "description": "default GET"},
                    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                    "body": {"type": "string", "description": "POST, PUT, PATCH, DELETE"},
                    "timeout_ms": {"type": "integer", "minimum": 1}
                },
                "required": ["url"],
                "additionalProperties": false
            }),
        }
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> ToolOutput {
        let args: Args = match parse_args("http", args) {
            Ok(args) => args,
            Err(output) => return output,
        };
        match send(args, ctx).await {
            Ok(text) => ToolOutput::ok(crate::secrets::redact(&text).into_owned()),
            Err(message) => ToolOutput::error(crate::secrets::redact(&message).into_owned()),
        }
    }
}

/// Check the call, find where it goes, send it and render the answer.
async fn send(args: Args, ctx: &ToolContext) -> Result<String, String> {
    let config = &ctx.limits.http;
    let method = args
        .method
        .as_deref()
        .unwrap_or("GET")
        .trim()
        .to_ascii_uppercase();
    if !METHODS.contains(&method.as_str()) {
        return Err(format!(
            "invalid method {:?}: expected one of {}",
            args.method.unwrap_or_default(),
            METHODS.join(", ")
        ));
    }
    if !matches!(method.as_str(), "GET" | "HEAD") && !ctx.may_write {
        return Err(format!(
            "http refused: {method} may change things on the server, and agent {} may not write; it may send GET and HEAD only",
            ctx.agent
        ));
    }
    if let Some(body) = &args.body {
        if !BODY_METHODS.contains(&method.as_str()) {
            return Err(format!(
                "invalid body: {method} takes none (a body goes with {})",
                BODY_METHODS.join(", ")
            ));
        }
        if body.len() > MAX_REQUEST_BODY {
            return Err(format!(
                "invalid body: {} bytes, at most {MAX_REQUEST_BODY} are sent",
                body.len()
            ));
        }
    }
    let headers = checked_headers(args.headers.unwrap_or_default())?;
    let timeout_ms = match args.timeout_ms {
        Some(0) => {
            return Err("invalid timeout_ms: expected a positive number of milliseconds".into());
        }
        Some(ms) => ms.min(config.max_timeout_ms),
        None => config.timeout_ms,
    };
    let url =
        Url::parse(args.url.trim()).map_err(|err| format!("invalid url {:?}: {err}", args.url))?;
    let allow: Vec<HostPattern> = config
        .allow
        .iter()
        .filter_map(|entry| HostPattern::parse(entry).ok())
        .collect();
    // Reading /proc is file-system work: off the async runtime.
    let network = tokio::task::spawn_blocking(MissionNetwork::now)
        .await
        .map_err(|err| format!("the mission's ports could not be read: {err}"))?;
    let request = Request {
        method,
        url: url.to_string(),
        headers,
        body: args.body,
        max_bytes: config.max_bytes,
        timeout_ms,
        ports: network.ports.clone(),
    };
    let timeout = Duration::from_millis(timeout_ms);
    let response = if network.owns(&url) {
        match network.holder {
            Some(holder) => through_helper(holder, &request, timeout, ctx).await?,
            None => in_process(Hops::Mission(&network.ports), &request, timeout, ctx).await?,
        }
    } else if allow.iter().any(|pattern| pattern.matches(&url)) {
        in_process(Hops::Listed(&allow), &request, timeout, ctx).await?
    } else {
        return Err(network.refusal(&url));
    };
    Ok(render(&request, &response, config))
}

/// The model's headers, checked: valid names and values, within a size,
/// none that the client itself must set.
fn checked_headers(headers: BTreeMap<String, String>) -> Result<Vec<(String, String)>, String> {
    let size: usize = headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
    if size > MAX_REQUEST_HEADERS {
        return Err(format!(
            "invalid headers: {size} bytes, at most {MAX_REQUEST_HEADERS} are sent"
        ));
    }
    for (name, value) in &headers {
        let parsed = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid headers: {name:?} is not a header name"))?;
        if crate::net::reserved_header(parsed.as_str()) {
            return Err(format!(
                "invalid headers: {name} is set by the client itself, leave it out"
            ));
        }
        HeaderValue::from_str(value)
            .map_err(|_| format!("invalid headers: the value of {name} is not a header value"))?;
    }
    Ok(headers.into_iter().collect())
}

/// Where the mission's own servers are, right now.
struct MissionNetwork {
    /// The holder of the run's network namespace, when commands run in it
    /// (requests to the mission's ports then go through the helper).
    holder: Option<u32>,
    /// Commands run in namespaces of their own: nothing they serve is
    /// reachable.
    unreachable: bool,
    ports: BTreeSet<u16>,
}

impl MissionNetwork {
    fn now() -> MissionNetwork {
        let isolated = crate::sandbox::current().is_some_and(|sandbox| sandbox.isolates_network());
        if isolated {
            let holder = crate::sandbox::running_holder();
            let ports = holder
                .map(|pid| listening(pid).into_iter().map(|(_, port)| port).collect())
                .unwrap_or_default();
            return MissionNetwork {
                holder,
                unreachable: holder.is_none(),
                ports,
            };
        }
        MissionNetwork {
            holder: None,
            unreachable: false,
            ports: agent_ports(),
        }
    }

    /// Whether `url` is one of the mission's own servers.
    fn owns(&self, url: &Url) -> bool {
        !self.unreachable && mission_port(url, &self.ports).is_ok()
    }

    /// Why `url` is refused, with what is allowed instead.
    fn refusal(&self, url: &Url) -> String {
        let ports = if self.unreachable {
            "none: commands run without a shared network here, so nothing they serve can be reached"
                .to_string()
        } else if self.ports.is_empty() {
            "none right now".to_string()
        } else {
            self.ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "http refused: {} is not a server of this mission nor a listed host. The mission's processes listen on ports: {ports} (reach them as http://127.0.0.1:PORT/, http://localhost:PORT/ or http://[::1]:PORT/). Other hosts must be listed in {ALLOW_KEY} in orch.json (e.g. \"api.example.com\" or \"127.0.0.1:9000\").",
            origin(url)
        )
    }
}

/// `url`'s scheme, host and port, for messages.
fn origin(url: &Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(host), Some(port)) => format!("{}://{host}:{port}", url.scheme()),
        _ => url.to_string(),
    }
}

/// `Ok` when `url` is plain http to a loopback name on one of `ports`.
fn mission_port(url: &Url, ports: &BTreeSet<u16>) -> Result<(), String> {
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
        Some(url::Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
        None => false,
    };
    let port = url.port_or_known_default();
    if url.scheme() == "http" && loopback && port.is_some_and(|port| ports.contains(&port)) {
        Ok(())
    } else {
        Err(format!(
            "{} is not one of the mission's servers (http on localhost, 127.0.0.1 or [::1], ports: {})",
            origin(url),
            ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// The listening TCP sockets in the network namespace of process `pid`:
/// `(inode, port)`, IPv4 and IPv6.
fn listening(pid: u32) -> Vec<(u64, u16)> {
    let mut found = Vec::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        found.extend(text.lines().skip(1).filter_map(listen_entry));
    }
    found
}

/// One line of `/proc/net/tcp`: `(inode, port)` when it is a listening
/// socket (state `0A`).
fn listen_entry(line: &str) -> Option<(u64, u16)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.get(3) != Some(&"0A") {
        return None;
    }
    let port = u16::from_str_radix(fields.get(1)?.rsplit_once(':')?.1, 16).ok()?;
    let inode = fields.get(9)?.parse().ok()?;
    Some((inode, port))
}

/// The ports that processes in the agents' process groups listen on (no
/// shared namespace: commands run in orch's own network). A process that
/// left its group (a daemon that called `setsid`) is not counted.
fn agent_ports() -> BTreeSet<u16> {
    let groups = crate::process::agent_groups();
    if groups.is_empty() {
        return BTreeSet::new();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    let mut sockets = BTreeSet::new();
    let mut some_pid = None;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let in_group = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .nth(2)?
                    .parse::<i32>()
                    .ok()
            })
            .is_some_and(|pgid| groups.contains(&pgid));
        if !in_group {
            continue;
        }
        some_pid.get_or_insert(pid);
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && let Some(inode) = target
                    .to_str()
                    .and_then(|t| t.strip_prefix("socket:["))
                    .and_then(|t| t.strip_suffix(']'))
                    .and_then(|t| t.parse::<u64>().ok())
            {
                sockets.insert(inode);
            }
        }
    }
    let Some(pid) = some_pid else {
        return BTreeSet::new();
    };
    listening(pid)
        .into_iter()
        .filter(|(inode, _)| sockets.contains(inode))
        .map(|(_, port)| port)
        .collect()
}

/// Where each hop of a request may go.
#[derive(Clone, Copy)]
enum Hops<'a> {
    /// The mission's own servers on these ports.
    Mission(&'a BTreeSet<u16>),
    /// The listed hosts, each name's addresses checked.
    Listed(&'a [HostPattern]),
}

impl Hops<'_> {
    /// The client for one hop to `url`, or why it may not go there.
    async fn client(&self, url: &Url, timeout: Duration) -> Result<reqwest::Client, String> {
        let builder = crate::provider::client_builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("orch/", env!("CARGO_PKG_VERSION"), " (http tool)"))
            .connect_timeout(timeout);
        let builder = match self {
            Hops::Mission(ports) => {
                mission_port(url, ports).map_err(|why| format!("http refused: {why}"))?;
                builder
            }
            Hops::Listed(allow) => {
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(format!("http refused: only http and https URLs, not {url}"));
                }
                if !allow.iter().any(|pattern| pattern.matches(url)) {
                    return Err(format!(
                        "http refused: {} is not listed in {ALLOW_KEY}",
                        origin(url)
                    ));
                }
                // Names resolve through the guarded resolver: an internal
                // address is connected to only when it is itself listed.
                let port = url.port_or_known_default().unwrap_or(0);
                let list: Vec<HostPattern> = allow.to_vec();
                builder.dns_resolver(std::sync::Arc::new(crate::net::GuardedResolver::new(
                    move |ip| list.iter().any(|pattern| pattern.is_address(ip, port)),
                )))
            }
        };
        builder
            .build()
            .map_err(|err| format!("the HTTP client could not start: {err}"))
    }
}

/// Send `request` from this process, bounded by `timeout` and the call's
/// cancellation.
async fn in_process(
    hops: Hops<'_>,
    request: &Request,
    timeout: Duration,
    ctx: &ToolContext,
) -> Result<Response, String> {
    tokio::select! {
        outcome = tokio::time::timeout(timeout, exchange(hops, request, timeout)) => {
            outcome.unwrap_or_else(|_| Err(timed_out(request, timeout)))
        }
        () = ctx.cancel.cancelled() => Err("cancelled".into()),
    }
}

/// Why a send failed: the guarded resolver's refusal with the entry that
/// would allow it, or the transport's error chain.
fn failed(request: &Request, url: &Url, err: &reqwest::Error) -> String {
    if let Some(refused) = crate::net::refused_in(err) {
        let entry = refused.entry(url.port_or_known_default().unwrap_or(0));
        return format!(
            "http refused: {refused}; an internal address is reached only when it is itself listed (add \"{entry}\" to {ALLOW_KEY})"
        );
    }
    format!("{} {url} failed: {}", request.method, error_chain(err))
}

fn timed_out(request: &Request, timeout: Duration) -> String {
    format!(
        "{} {} timed out after {} ms",
        request.method,
        request.url,
        timeout.as_millis()
    )
}

/// One request, following redirects of a GET or HEAD hop by hop (each
/// checked by `hops`); other methods return a redirect as it is.
async fn exchange(
    hops: Hops<'_>,
    request: &Request,
    timeout: Duration,
) -> Result<Response, String> {
    let start = Url::parse(&request.url).map_err(|err| format!("invalid url: {err}"))?;
    let method = reqwest::Method::from_bytes(request.method.as_bytes())
        .map_err(|_| format!("invalid method {:?}", request.method))?;
    let follows = matches!(request.method.as_str(), "GET" | "HEAD");
    let mut url = start.clone();
    for _ in 0..=MAX_REDIRECTS {
        let client = hops.client(&url, timeout).await?;
        let mut builder = client.request(method.clone(), url.clone());
        // The model's headers go only to where it sent them.
        if url.origin() == start.origin() {
            for (name, value) in &request.headers {
                builder = builder.header(name, value);
            }
        }
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        let mut response = builder
            .send()
            .await
            .map_err(|err| failed(request, &url, &err))?;
        let status = response.status();
        if follows
            && let Some(next) = crate::net::redirect(&url, &response)
                .map_err(|why| format!("http refused: {why}"))?
        {
            url = next;
            continue;
        }
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let length = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse().ok());
        let (body, cut) = crate::net::capped_body(&url, &mut response, request.max_bytes).await?;
        return Ok(Response {
            url: url.to_string(),
            version: format!("{:?}", response.version()),
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or_default().to_string(),
            headers,
            body,
            cut,
            length,
        });
    }
    Err(format!(
        "gave up after {MAX_REDIRECTS} redirects (last: {url})"
    ))
}

/// Send `request` from inside the run's network namespace through the
/// helper, killed on timeout and cancellation.
async fn through_helper(
    holder: u32,
    request: &Request,
    timeout: Duration,
    ctx: &ToolContext,
) -> Result<Response, String> {
    let sandbox =
        crate::sandbox::current().ok_or_else(|| "the sandbox is no longer in force".to_string())?;
    let args: Vec<OsString> = vec![HELPER.into(), holder.to_string().into()];
    let env = crate::process::scrubbed_env(std::env::vars_os());
    let mut helper =
        crate::process::spawn_server(sandbox.helper().as_os_str(), &args, &ctx.root, &env, 4096)
            .map_err(|err| format!("the http helper could not start: {err}"))?;
    let (mut stdout, mut stdin) = helper
        .take_io()
        .ok_or_else(|| "the http helper has no pipes".to_string())?;
    let input = serde_json::to_vec(request).map_err(|err| err.to_string())?;
    // JSON may spell a byte as six (`\u0000`); the rest is headers.
    let limit = (request.max_bytes as u64) * 6 + 2 * MAX_REQUEST_HEADERS as u64 + 64 * 1024;
    let work = async {
        stdin
            .write_all(&input)
            .await
            .map_err(|err| format!("the http helper did not take the request: {err}"))?;
        drop(stdin);
        let mut output = Vec::new();
        (&mut stdout)
            .take(limit)
            .read_to_end(&mut output)
            .await
            .map_err(|err| format!("the http helper's answer could not be read: {err}"))?;
        Ok::<Vec<u8>, String>(output)
    };
    // The helper keeps its own time; this is the backstop.
    let backstop = timeout + Duration::from_secs(2);
    let output = tokio::select! {
        output = tokio::time::timeout(backstop, work) => match output {
            Ok(output) => output?,
            Err(_) => {
                helper.kill();
                return Err(timed_out(request, timeout));
            }
        },
        () = ctx.cancel.cancelled() => {
            helper.kill();
            return Err("cancelled".into());
        }
    };
    helper.kill();
    match serde_json::from_slice::<Outcome>(&output) {
        Ok(Outcome::Answered(response)) => Ok(response),
        Ok(Outcome::Failed(message)) => Err(message),
        Err(_) => Err(format!(
            "the http helper failed: {}",
            crate::text::preview(helper.stderr().trim(), 400)
        )),
    }
}

/// When orch runs as the helper (`orch __http HOLDER`): enter the run's
/// network, send the request read from stdin, print the outcome. `None`
/// when this is not the helper.
pub fn helper_main() -> Option<std::process::ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(OsStr::new(HELPER)) {
        return None;
    }
    let outcome = helper_outcome(args.next());
    let text = serde_json::to_string(&outcome).unwrap_or_else(|_| "{}".into());
    println!("{text}");
    Some(std::process::ExitCode::SUCCESS)
}

fn helper_outcome(holder: Option<OsString>) -> Outcome {
    let Some(pid) = holder.and_then(|pid| pid.to_str()?.parse::<u32>().ok()) else {
        return Outcome::Failed("the http helper needs the holder's pid".into());
    };
    // SAFETY: nothing has started a thread yet: this runs first in main.
    if let Err(err) = unsafe { crate::sandbox::enter_run_network(pid) } {
        return Outcome::Failed(format!(
            "the http helper cannot reach the mission's network: {err}"
        ));
    }
    let mut input = String::new();
    let limit = (MAX_REQUEST_BODY * 7 + MAX_REQUEST_HEADERS * 7 + 64 * 1024) as u64;
    if let Err(err) = std::io::Read::read_to_string(
        &mut std::io::Read::take(std::io::stdin(), limit),
        &mut input,
    ) {
        return Outcome::Failed(format!("the http helper could not read the request: {err}"));
    }
    let request: Request = match serde_json::from_str(&input) {
        Ok(request) => request,
        Err(err) => return Outcome::Failed(format!("the http helper got a bad request: {err}")),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return Outcome::Failed(format!("the http helper cannot start: {err}")),
    };
    let timeout = Duration::from_millis(request.timeout_ms);
    runtime.block_on(async {
        let work = exchange(Hops::Mission(&request.ports), &request, timeout);
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(response)) => Outcome::Answered(response),
            Ok(Err(message)) => Outcome::Failed(message),
            Err(_) => Outcome::Failed(timed_out(&request, timeout)),
        }
    })
}

/// Whether a response header's value is a credential: cookies and
/// authorization by name, and names a secret variable would have
/// (`x-api-key`, `x-auth-token`).
fn credential(name: &str) -> bool {
    CREDENTIAL_HEADERS.contains(&name) || crate::secrets::is_secret_name(&name.replace('-', "_"))
}

/// The answer as the model reads it: status line, headers (credentials
/// redacted), a blank line, the body and a note when it was cut.
fn render(request: &Request, response: &Response, config: &HttpConfig) -> String {
    let mut text = String::new();
    if response.url != request.url {
        text.push_str(&format!("[redirected to {}]\n", response.url));
    }
    text.push_str(&format!(
        "{} {} {}\n",
        response.version, response.status, response.reason
    ));
    for (name, value) in &response.headers {
        let value = if credential(name) {
            crate::secrets::REDACTED
        } else {
            value.as_str()
        };
        text.push_str(&format!("{name}: {value}\n"));
    }
    text.push('\n');
    if request.method == "HEAD" {
        return text;
    }
    if response.body.is_empty() {
        text.push_str("(empty body)\n");
        return text;
    }
    text.push_str(&response.body);
    if response.cut {
        let total = match response.length {
            Some(length) => format!(" of {length}"),
            None => String::new(),
        };
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!(
            "[body cut: the first {} bytes{total} shown (tools.http.max_bytes is {})]\n",
            response.body.len(),
            config.max_bytes
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_sockets_are_read_from_the_kernel_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:A2C4 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 4243 1 0000000000000000 20 4 30 10 -1\n";
        let found: Vec<(u64, u16)> = table.lines().skip(1).filter_map(listen_entry).collect();
        assert_eq!(found, vec![(4242, 8080)]);
    }

    #[test]
    fn only_plain_http_to_loopback_on_a_mission_port_is_the_missions() {
        let ports: BTreeSet<u16> = [8080].into();
        for ok in [
            "http://127.0.0.1:8080/",
            "http://localhost:8080/x?y",
            "http://[::1]:8080/",
        ] {
            assert!(
                mission_port(&Url::parse(ok).unwrap(), &ports).is_ok(),
                "{ok}"
            );
        }
        for refused in [
            "http://127.0.0.1:8081/",
            "https://127.0.0.1:8080/",
            "http://127.0.0.2:8080/",
            "http://example.com:8080/",
            "http://127.0.0.1/",
        ] {
            let err = mission_port(&Url::parse(refused).unwrap(), &ports).unwrap_err();
            assert!(err.contains("ports: 8080"), "{refused}: {err}");
        }
    }

    #[test]
    fn credentials_in_response_headers_are_redacted_by_name() {
        for name in [
            "set-cookie",
            "authorization",
            "proxy-authorization",
            "cookie",
            "x-api-key",
            "x-auth-token",
            "x-client-secret",
        ] {
            assert!(credential(name), "{name}");
        }
        for name in ["content-type", "keep-alive", "x-request-id", "location"] {
            assert!(!credential(name), "{name}");
        }
    }

    #[test]
    fn request_headers_are_checked() {
        let ok = checked_headers([("Accept".to_string(), "text/html".to_string())].into());
        assert!(ok.is_ok());
        let err = checked_headers([("bad name".to_string(), "x".to_string())].into()).unwrap_err();
        assert!(err.contains("\"bad name\" is not a header name"), "{err}");
        let err =
            checked_headers([("Content-Length".to_string(), "5".to_string())].into()).unwrap_err();
        assert!(err.contains("set by the client itself"), "{err}");
        let err = checked_headers([("x".to_string(), "a\nb".to_string())].into()).unwrap_err();
        assert!(err.contains("not a header value"), "{err}");
    }
}

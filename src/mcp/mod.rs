//! MCP servers as tool sources: the hub starts every configured server in
//! parallel (stdio servers through the launcher, `process::spawn_server`;
//! HTTP servers through rmcp's streamable HTTP client on orch's reqwest),
//! offers each server's tools as `Tool`s named `mcp__<server>__<tool>`,
//! refreshes them on `tools/list_changed`, restarts a server that died once
//! and disables it the second time. A server that cannot start is one
//! warning, never a failed mission. `docs/mcp.md` is the user's view.

mod names;
mod tool;

pub use names::{input_schema, tool_name, unique_names};
pub use tool::McpTool;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// Roots are deprecated in the newest protocol version (SEP-2577), but the
// handshake orch speaks (2025-11-25 and before) is where servers ask for them.
#[allow(deprecated)]
use rmcp::model::{
    ClientCapabilities, ClientConfig, Implementation, ListRootsResult, ProtocolVersion, Root,
};
use rmcp::service::{NotificationContext, RequestContext, RunningService};
use rmcp::{ClientHandler, ErrorData, RoleClient, ServiceExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{McpServer, McpTransport};
use crate::events::{Event, EventBus};

/// Bytes of a stdio server's stderr kept for error messages.
const STDERR_BYTES: usize = 4 * 1024;

/// A server's state, as `orch mcp list` and the lead's status show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerState {
    Starting,
    Running,
    /// It could not start (or stopped and could not start again).
    Failed(String),
    /// `enabled: false`, or it died twice in this run.
    Disabled(String),
}

impl std::fmt::Display for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerState::Starting => f.write_str("starting"),
            ServerState::Running => f.write_str("running"),
            ServerState::Failed(why) => write!(f, "failed: {why}"),
            ServerState::Disabled(why) => write!(f, "disabled: {why}"),
        }
    }
}

/// One server as the hub sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    pub name: String,
    /// `stdio` or `http`.
    pub transport: &'static str,
    pub state: ServerState,
    /// Its tools: (name the model sees, whether it only reads).
    pub tools: Vec<(String, bool)>,
}

/// Every configured MCP server of a run. Cheap to clone.
#[derive(Clone)]
pub struct McpHub {
    inner: Arc<Inner>,
}

struct Inner {
    slots: Vec<Arc<Slot>>,
    root: PathBuf,
    events: Arc<EventBus>,
    changes: watch::Sender<u64>,
    /// Watchers of live connections and restarts.
    tasks: TaskTracker,
    cancel: CancellationToken,
}

/// One configured server.
struct Slot {
    name: String,
    config: McpServer,
    now: Mutex<Now>,
    /// Bumped per connection, so a late death notice of an old one is ignored.
    generation: AtomicU64,
}

struct Now {
    state: ServerState,
    conn: Option<Arc<Conn>>,
    /// (server tool, its schema checked) in the server's order.
    tools: Vec<Arc<tool::Offered>>,
    restarted: bool,
}

/// A live connection.
pub(crate) struct Conn {
    pub(crate) peer: rmcp::Peer<RoleClient>,
    /// The stdio process (killed when the connection is dropped).
    process: Option<Mutex<crate::process::Server>>,
    stop: CancellationToken,
}

impl Conn {
    /// The last line(s) the server wrote on stderr, for an error message.
    pub(crate) fn stderr(&self) -> String {
        self.process
            .as_ref()
            .and_then(|p| p.lock().ok().map(|p| p.stderr()))
            .map(|text| last_lines(&text))
            .unwrap_or_default()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl McpHub {
    /// Start every server of `servers` at once, each bounded by its
    /// `timeout_ms`; one that fails is a warning on `events` naming it.
    /// Returns when each has started or failed.
    pub async fn start(
        servers: Vec<(String, McpServer)>,
        root: PathBuf,
        events: Arc<EventBus>,
    ) -> McpHub {
        let slots = servers
            .into_iter()
            .map(|(name, config)| {
                let state = if config.enabled {
                    ServerState::Starting
                } else {
                    ServerState::Disabled("\"enabled\": false in its configuration".into())
                };
                Arc::new(Slot {
                    name,
                    config,
                    now: Mutex::new(Now {
                        state,
                        conn: None,
                        tools: Vec::new(),
                        restarted: false,
                    }),
                    generation: AtomicU64::new(0),
                })
            })
            .collect();
        let hub = McpHub {
            inner: Arc::new(Inner {
                slots,
                root,
                events,
                changes: watch::channel(0).0,
                tasks: TaskTracker::new(),
                cancel: CancellationToken::new(),
            }),
        };
        let starts = hub
            .inner
            .slots
            .iter()
            .filter(|slot| slot.config.enabled)
            .map(|slot| hub.connect(slot.clone()));
        futures::future::join_all(starts).await;
        hub
    }

    /// Every running server's tools with the names the model sees.
    fn offered(&self) -> Vec<(Arc<Slot>, Arc<tool::Offered>, String)> {
        let offered: Vec<(Arc<Slot>, Arc<tool::Offered>)> = self
            .inner
            .slots
            .iter()
            .flat_map(|slot| {
                let now = slot.now.lock().expect("mcp slot lock");
                now.tools
                    .iter()
                    .map(|offered| (slot.clone(), offered.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let keys: Vec<(String, String)> = offered
            .iter()
            .map(|(slot, offered)| (slot.name.clone(), offered.name.clone()))
            .collect();
        offered
            .into_iter()
            .zip(unique_names(&keys))
            .map(|((slot, offered), name)| (slot, offered, name))
            .collect()
    }

    /// `start` with the servers of `config`, after one warning per
    /// `.mcp.json` entry that was left out: what a run calls.
    pub async fn from_config(
        config: &crate::config::McpConfig,
        root: PathBuf,
        events: Arc<EventBus>,
    ) -> McpHub {
        for skipped in &config.skipped {
            events.emit(Event::Warning {
                session: None,
                message: skipped.clone(),
            });
        }
        let servers = config
            .servers
            .iter()
            .map(|(name, server)| (name.clone(), server.clone()))
            .collect();
        McpHub::start(servers, root, events).await
    }

    /// The tools of every running server, with whether each writes.
    pub fn tools(&self) -> Vec<crate::tools::live::Offered> {
        self.offered()
            .into_iter()
            .map(|(slot, offered, name)| {
                let writes = !offered.read_only;
                let tool: Arc<dyn crate::tools::Tool> = Arc::new(McpTool::new(
                    name,
                    offered,
                    Arc::downgrade(&self.inner),
                    slot,
                ));
                (tool, writes)
            })
            .collect()
    }

    /// Bumps whenever the tool set changes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    pub fn status(&self) -> Vec<ServerStatus> {
        let offered = self.offered();
        self.inner
            .slots
            .iter()
            .map(|slot| ServerStatus {
                name: slot.name.clone(),
                transport: slot.config.transport_name(),
                state: slot.now.lock().expect("mcp slot lock").state.clone(),
                tools: offered
                    .iter()
                    .filter(|(owner, _, _)| Arc::ptr_eq(owner, slot))
                    .map(|(_, offered, name)| (name.clone(), offered.read_only))
                    .collect(),
            })
            .collect()
    }

    /// Stop every server and wait for the watchers.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        for slot in &self.inner.slots {
            let conn = {
                let mut now = slot.now.lock().expect("mcp slot lock");
                now.tools.clear();
                now.conn.take()
            };
            drop(conn);
        }
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// Start `slot`'s server within its timeout and record the outcome.
    /// Whether it runs.
    async fn connect(&self, slot: Arc<Slot>) -> bool {
        let generation = slot.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let timeout = Duration::from_millis(slot.config.timeout_ms);
        let started = tokio::select! {
            started = tokio::time::timeout(timeout, open(&slot, &self.inner, generation)) => match started {
                Ok(result) => result,
                Err(_) => Err(format!("it did not start within {} ms (timeout_ms)", slot.config.timeout_ms)),
            },
            () = self.inner.cancel.cancelled() => Err("orch is shutting down".into()),
        };
        match started {
            Ok((service, conn, tools)) => {
                let conn = Arc::new(conn);
                {
                    let mut now = slot.now.lock().expect("mcp slot lock");
                    now.state = ServerState::Running;
                    now.conn = Some(conn.clone());
                    now.tools = tools;
                }
                self.bump();
                self.watch(slot, generation, service, conn);
                true
            }
            Err(why) => {
                self.inner.events.emit(Event::Warning {
                    session: None,
                    message: format!("MCP server \"{}\" did not start: {why}", slot.name),
                });
                slot.now.lock().expect("mcp slot lock").state = ServerState::Failed(why);
                false
            }
        }
    }

    /// Own the running service until it ends; a connection that ends while
    /// the hub runs is a death: restart once, then disable.
    fn watch(
        &self,
        slot: Arc<Slot>,
        generation: u64,
        service: RunningService<RoleClient, Handler>,
        conn: Arc<Conn>,
    ) {
        let hub = Arc::downgrade(&self.inner);
        let stop = conn.stop.clone();
        drop(conn);
        self.inner.tasks.spawn(async move {
            let token = service.cancellation_token();
            let waiting = service.waiting();
            tokio::pin!(waiting);
            tokio::select! {
                _ = &mut waiting => {}
                () = stop.cancelled() => {
                    token.cancel();
                    let _ = tokio::time::timeout(Duration::from_secs(2), waiting).await;
                    return;
                }
            }
            if stop.is_cancelled() {
                return;
            }
            let Some(inner) = hub.upgrade() else { return };
            McpHub { inner }.died(slot, generation).await;
        });
    }

    /// `slot`'s connection `generation` ended.
    async fn died(&self, slot: Arc<Slot>, generation: u64) {
        if self.inner.cancel.is_cancelled() || slot.generation.load(Ordering::SeqCst) != generation
        {
            return;
        }
        let (conn, again) = {
            let mut now = slot.now.lock().expect("mcp slot lock");
            now.tools.clear();
            let again = now.restarted;
            now.restarted = true;
            (now.conn.take(), again)
        };
        let detail = conn
            .as_ref()
            .map(|conn| conn.stderr())
            .filter(|text| !text.is_empty())
            .map(|text| format!(" (its last words: {text})"))
            .unwrap_or_default();
        drop(conn);
        self.bump();
        if again {
            let why = "it stopped twice in this run".to_string();
            self.inner.events.emit(Event::Warning {
                session: None,
                message: format!(
                    "MCP server \"{}\" stopped again{detail}; it is disabled for the rest of this run",
                    slot.name
                ),
            });
            slot.now.lock().expect("mcp slot lock").state = ServerState::Disabled(why);
            return;
        }
        self.inner.events.emit(Event::Warning {
            session: None,
            message: format!(
                "MCP server \"{}\" stopped{detail}; starting it again (once)",
                slot.name
            ),
        });
        slot.now.lock().expect("mcp slot lock").state = ServerState::Starting;
        if !self.connect(slot.clone()).await {
            let mut now = slot.now.lock().expect("mcp slot lock");
            if let ServerState::Failed(why) = &now.state {
                now.state =
                    ServerState::Disabled(format!("it stopped and could not start again: {why}"));
            }
        }
    }

    fn bump(&self) {
        self.inner.changes.send_modify(|n| *n += 1);
    }
}

impl Inner {
    /// The live connection of `slot`, or why there is none.
    pub(crate) fn conn(&self, slot: &Slot) -> Result<Arc<Conn>, String> {
        let now = slot.now.lock().expect("mcp slot lock");
        match (&now.conn, &now.state) {
            (Some(conn), _) => Ok(conn.clone()),
            (None, state) => Err(format!(
                "MCP server \"{}\" is not running ({state})",
                slot.name
            )),
        }
    }

    /// `slot`'s tools changed on connection `generation`.
    fn set_tools(&self, slot: &Slot, generation: u64, tools: Vec<Arc<tool::Offered>>) {
        if slot.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        slot.now.lock().expect("mcp slot lock").tools = tools;
        self.changes.send_modify(|n| *n += 1);
    }
}

/// Start `slot`'s server and list its tools.
async fn open(
    slot: &Arc<Slot>,
    inner: &Arc<Inner>,
    generation: u64,
) -> Result<
    (
        RunningService<RoleClient, Handler>,
        Conn,
        Vec<Arc<tool::Offered>>,
    ),
    String,
> {
    let handler = Handler {
        slot: slot.clone(),
        hub: Arc::downgrade(inner),
        generation,
        roots: vec![inner.root.clone()],
    };
    let config = &slot.config;
    let env = std::env::vars().collect::<BTreeMap<String, String>>();
    let (service, process) = match config.transport()? {
        McpTransport::Stdio { command, args } => {
            let mut vars = crate::process::scrubbed_env(std::env::vars_os());
            for (name, value) in &config.env {
                let value = expand(value, &env)
                    .map_err(|var| format!("env {name} names ${{{var}}}, which is not set"))?;
                vars.retain(|(existing, _)| existing != name.as_str());
                vars.push((name.into(), value.into()));
            }
            let cwd = match &config.cwd {
                Some(dir) => inner.root.join(dir),
                None => inner.root.clone(),
            };
            let args: Vec<OsString> = args.iter().map(OsString::from).collect();
            let mut process =
                crate::process::spawn_server(command.as_ref(), &args, &cwd, &vars, STDERR_BYTES)
                    .map_err(|err| match err.kind() {
                        std::io::ErrorKind::NotFound => {
                            format!("command \"{command}\" not found")
                        }
                        _ => format!("command \"{command}\" could not start: {err}"),
                    })?;
            let io = process.take_io().expect("the pipes of a new process");
            let service = match handler.serve(io).await {
                Ok(service) => service,
                Err(err) => {
                    // Let a crashing server finish its message.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let said = last_lines(&process.stderr());
                    let said = if said.is_empty() {
                        String::new()
                    } else {
                        format!(" (stderr: {said})")
                    };
                    return Err(format!("the MCP handshake failed: {err}{said}"));
                }
            };
            (service, Some(Mutex::new(process)))
        }
        McpTransport::Http { url } => {
            use reqwest::header::{HeaderName, HeaderValue};
            use rmcp::transport::StreamableHttpClientTransport;
            use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
            let mut headers = std::collections::HashMap::new();
            for (name, value) in &config.headers {
                let value = expand(value, &env)
                    .map_err(|var| format!("header {name} names ${{{var}}}, which is not set"))?;
                let header = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("header name {name:?} is not a valid HTTP header name"))?;
                let mut value = HeaderValue::from_str(&value).map_err(|_| {
                    format!("the value of header {name} is not a valid HTTP header value")
                })?;
                value.set_sensitive(true);
                headers.insert(header, value);
            }
            let client = crate::provider::client_builder()
                .connect_timeout(Duration::from_millis(config.timeout_ms))
                .build()
                .map_err(|err| format!("the HTTP client could not be built: {err}"))?;
            let transport = StreamableHttpClientTransport::with_client(
                client,
                StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers),
            );
            let service = handler
                .serve(transport)
                .await
                .map_err(|err| format!("the MCP handshake with {url} failed: {err}"))?;
            (service, None)
        }
    };
    let peer = service.peer().clone();
    let tools = list_tools(&slot.name, &peer, &inner.events).await?;
    let conn = Conn {
        peer,
        process,
        stop: CancellationToken::new(),
    };
    Ok((service, conn, tools))
}

/// The server's tools, each checked: a tool whose schema cannot be offered
/// is left out with a warning naming it.
async fn list_tools(
    server: &str,
    peer: &rmcp::Peer<RoleClient>,
    events: &EventBus,
) -> Result<Vec<Arc<tool::Offered>>, String> {
    let listed = peer
        .list_all_tools()
        .await
        .map_err(|err| format!("listing its tools failed: {err}"))?;
    let mut tools = Vec::new();
    for listed in listed {
        match tool::Offered::of(&listed) {
            Ok(offered) => tools.push(Arc::new(offered)),
            Err(why) => events.emit(Event::Warning {
                session: None,
                message: format!(
                    "MCP server \"{server}\": tool \"{}\" is not offered: {why}",
                    listed.name
                ),
            }),
        }
    }
    Ok(tools)
}

/// `${NAME}` in `text` replaced by the variable's value; `Err(NAME)` for
/// one that is not set. `$` alone stays.
pub fn expand(text: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[at..]);
            return Ok(out);
        };
        let name = &after[..end];
        match env.get(name) {
            Some(value) => out.push_str(value),
            None => return Err(name.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The last non-empty lines of `text`, on one line, at most 300 characters.
fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    let start = lines.len().saturating_sub(3);
    let joined = lines[start..].join(" | ");
    crate::text::tail(&joined, 300).to_string()
}

/// orch's side of one connection: it answers `roots/list` with the project
/// root and refreshes the server's tools on `tools/list_changed`.
pub(crate) struct Handler {
    slot: Arc<Slot>,
    hub: std::sync::Weak<Inner>,
    generation: u64,
    roots: Vec<PathBuf>,
}

#[allow(deprecated)] // roots, see the imports
impl ClientHandler for Handler {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::builder().enable_roots().build(),
            Implementation::new("orch", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
    }

    async fn list_roots(
        &self,
        _context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        Ok(ListRootsResult::new(
            self.roots.iter().map(|root| root_of(root)).collect(),
        ))
    }

    async fn on_tool_list_changed(&self, context: NotificationContext<RoleClient>) {
        let Some(inner) = self.hub.upgrade() else {
            return;
        };
        if let Ok(tools) = list_tools(&self.slot.name, &context.peer, &inner.events).await {
            inner.set_tools(&self.slot, self.generation, tools);
        }
    }
}

/// A directory as an MCP root (`file://` URI).
#[allow(deprecated)] // roots, see the imports
fn root_of(dir: &Path) -> Root {
    let mut root = Root::new(format!("file://{}", dir.display()));
    root.name = dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned());
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_in_values_are_expanded_and_a_missing_one_is_named() {
        let env: BTreeMap<String, String> = [("TOKEN".to_string(), "abc".to_string())].into();
        assert_eq!(expand("Bearer ${TOKEN}", &env).unwrap(), "Bearer abc");
        assert_eq!(expand("$5 ${TOKEN}${TOKEN}", &env).unwrap(), "$5 abcabc");
        assert_eq!(expand("${MISSING}x", &env).unwrap_err(), "MISSING");
        assert_eq!(expand("${open", &env).unwrap(), "${open");
    }
}

//! Tools agents can call: the `Tool` trait, the router that parses arguments,
//! applies permissions and runs calls, and the built-in tools.
//!
//! A failing tool is data for the model (`ToolOutput::error`), never an `Err`
//! for the session. Every path a tool touches goes through `path::resolve`.

#[cfg(feature = "ast")]
pub mod ast;
pub mod background;
pub mod bash;
pub mod delegate;
pub mod diagnostics;
pub mod fs;
pub mod git;
pub mod http;
pub mod live;
pub mod memory;
pub mod metrics;
pub mod path;
pub mod permissions;
pub mod rewrite;
pub mod search;
pub mod sed;
pub mod seen;
pub mod skill;
pub mod stats;
pub mod todo;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::agents::Role;
use crate::config::ToolsConfig;
use crate::events::{Event, EventBus};
use crate::hooks::{self, HookPoint, Hooks};
use crate::provider::{ToolCall, ToolSpec};
use permissions::{Decision, Permissions};

/// Parse a tool's arguments into its typed form, or an error result naming
/// the tool and what was wrong (missing field, wrong type, unknown field).
pub fn parse_args<T: DeserializeOwned>(tool: &str, args: Value) -> Result<T, ToolOutput> {
    serde_json::from_value(args)
        .map_err(|err| ToolOutput::error(format!("invalid arguments for {tool}: {err}")))
}

/// Run blocking file-system work off the async runtime and turn its result
/// into a tool output.
pub async fn run_blocking<F>(work: F) -> ToolOutput
where
    F: FnOnce() -> Result<String, String> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(text)) => ToolOutput::ok(text),
        Ok(Err(message)) => ToolOutput::error(message),
        Err(err) => ToolOutput::error(format!("the tool stopped unexpectedly: {err}")),
    }
}

/// What a tool call returns to the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutput {
    pub content: String,
    pub is_error: bool,
}

impl ToolOutput {
    pub fn ok(content: impl Into<String>) -> Self {
        ToolOutput {
            content: content.into(),
            is_error: false,
        }
    }

    pub fn error(content: impl Into<String>) -> Self {
        ToolOutput {
            content: content.into(),
            is_error: true,
        }
    }
}

/// Everything a tool may use while it runs.
#[derive(Clone)]
pub struct ToolContext {
    /// The project root, canonicalized once at startup.
    pub root: Arc<PathBuf>,
    pub session: String,
    /// The agent whose session made the call.
    pub agent: String,
    /// Its role (tools whose rules depend on it, such as `update_todo`,
    /// check this, never the name).
    pub role: Role,
    pub call_id: String,
    pub cancel: CancellationToken,
    pub limits: Arc<ToolsConfig>,
    /// The OS sandbox file profile the call's processes run in (from what
    /// the agent may do: writers get the task's root); `None` only for a
    /// command the user let run outside the sandbox once.
    pub sandbox: Option<crate::sandbox::Profile>,
    /// Whether the calling agent may write (`Capabilities::write`): tools
    /// that change things beyond files (`http` with a writing method)
    /// check this, never the agent's name.
    pub may_write: bool,
    /// What the calling session last saw of each file (`read`, `write` and
    /// `edit` keep it; writes compare and swap against it).
    pub seen: Arc<seen::Seen>,
}

#[async_trait]
pub trait Tool: Send + Sync {
    fn spec(&self) -> ToolSpec;

    /// Read-only tools may run concurrently with each other; a call to any
    /// other tool runs alone, in the order the model asked for it.
    fn read_only(&self) -> bool {
        false
    }

    /// Whether a call needs the person's yes when no permission rule names
    /// the tool (MCP tools that may write: they act outside orch's file
    /// rules). Headless, such a call is denied with the rule to add.
    fn asks_by_default(&self) -> bool {
        false
    }

    /// The project file a successful call with `args` wrote, if this tool
    /// writes files (`write`, `edit`): such files get diagnostics.
    fn edited_path(&self, _args: &Value) -> Option<String> {
        None
    }

    /// Run the call. `args` is already parsed JSON (an object when the model
    /// behaved); validating its fields is the tool's job.
    async fn call(&self, args: Value, ctx: &ToolContext) -> ToolOutput;
}

/// A named set of tools. Agents see a subset of the full registry.
#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Arc<dyn Tool>>,
    /// The project's fast checker, run after turns that edited files.
    checker: Option<Arc<diagnostics::Checker>>,
    /// The specs, built once: every request shares them.
    specs: std::sync::OnceLock<Arc<[ToolSpec]>>,
    /// Specs of subsets of one registry, by their tool names: sessions of
    /// the same agent share one copy instead of building their own.
    shared: Arc<std::sync::Mutex<SharedSpecs>>,
    /// Whether every tool here came from the registry `shared` belongs to
    /// (a subset nothing was inserted into since).
    from_shared: bool,
}

/// Tool lists kept by [`ToolRegistry::specs`]; past this the map starts over.
const SHARED_SPECS_MAX: usize = 64;

type SharedSpecs = std::collections::HashMap<Vec<String>, Arc<[ToolSpec]>>;

impl ToolRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// The built-in file, search and shell tools.
    pub fn builtins() -> Self {
        let mut registry = ToolRegistry::new();
        registry.insert(Arc::new(fs::Read));
        registry.insert(Arc::new(fs::Write));
        registry.insert(Arc::new(fs::Edit));
        registry.insert(Arc::new(fs::List));
        registry.insert(Arc::new(search::Glob));
        registry.insert(Arc::new(search::Grep));
        registry.insert(Arc::new(search::Mgrep));
        registry.insert(Arc::new(stats::FileStats));
        registry.insert(Arc::new(sed::SedReplace));
        #[cfg(feature = "ast")]
        {
            registry.insert(Arc::new(ast::AstSearch));
            registry.insert(Arc::new(ast::AstReplace));
        }
        registry.insert(Arc::new(bash::Bash));
        registry.insert(Arc::new(git::GitStatus));
        registry.insert(Arc::new(git::GitDiff));
        registry
    }

    pub fn insert(&mut self, tool: Arc<dyn Tool>) {
        self.tools.insert(tool.spec().name, tool);
        self.specs = std::sync::OnceLock::new();
        // Lists shared so far may hold the tool this one replaced.
        self.shared = Arc::default();
        self.from_shared = false;
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tools.keys().map(String::as_str)
    }

    /// The tools named in `names` that exist here, in registry order.
    pub fn subset<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> ToolRegistry {
        let mut tools = BTreeMap::new();
        for name in names {
            if let Some(tool) = self.tools.get(name) {
                tools.insert(name.to_string(), tool.clone());
            }
        }
        ToolRegistry {
            tools,
            checker: self.checker.clone(),
            specs: std::sync::OnceLock::new(),
            shared: self.shared.clone(),
            from_shared: true,
        }
    }

    /// Check edits with `checker`, and offer it as the `diagnostics` tool.
    pub fn set_checker(&mut self, checker: Arc<diagnostics::Checker>) {
        self.insert(Arc::new(diagnostics::Diagnostics(checker.clone())));
        self.checker = Some(checker);
    }

    /// Specs in a stable order (sorted by name), so the tool list sent to
    /// the model is byte-identical from turn to turn.
    pub fn specs(&self) -> Arc<[ToolSpec]> {
        self.specs
            .get_or_init(|| {
                let build =
                    || -> Arc<[ToolSpec]> { self.tools.values().map(|tool| tool.spec()).collect() };
                if !self.from_shared {
                    return build();
                }
                let names: Vec<String> = self.tools.keys().cloned().collect();
                let mut shared = self.shared.lock().unwrap_or_else(|err| err.into_inner());
                if let Some(specs) = shared.get(&names) {
                    return specs.clone();
                }
                let specs = build();
                if shared.len() >= SHARED_SPECS_MAX {
                    shared.clear();
                }
                shared.insert(names, specs.clone());
                specs
            })
            .clone()
    }
}

/// Runs tool calls for one session: parses arguments, asks the
/// `pre-tool-use` hook, applies permissions to the arguments that will
/// run, asks the `post-tool-use` hook about what the tool returned, emits
/// begin/end events and never lets a tool failure escape as an error.
pub struct ToolRouter {
    pub registry: ToolRegistry,
    pub permissions: Arc<Permissions>,
    pub events: Arc<EventBus>,
    pub hooks: Arc<dyn Hooks>,
    /// Arguments a `pre-tool-use` hook rewrote, by call id, until the
    /// turn's `after_turn` (diagnostics look at the paths that were
    /// really edited).
    rewritten: std::sync::Mutex<BTreeMap<String, Value>>,
    /// The live tools (plugins, MCP servers) this session may call beyond
    /// its registry, and whether its agent may write.
    live: Option<(Arc<live::LiveTools>, bool)>,
}

impl ToolRouter {
    pub fn new(
        registry: ToolRegistry,
        permissions: Arc<Permissions>,
        events: Arc<EventBus>,
        hooks: Arc<dyn Hooks>,
    ) -> ToolRouter {
        ToolRouter {
            registry,
            permissions,
            events,
            hooks,
            rewritten: Default::default(),
            live: None,
        }
    }

    /// Reach the live tools an agent that may (or may not) write may use,
    /// by their own names or through `call_tool`.
    pub fn with_live(mut self, live: Arc<live::LiveTools>, may_write: bool) -> ToolRouter {
        self.live = Some((live, may_write));
        self
    }

    /// The tool `name` this session may call. A live tool is taken as it is
    /// now, even when the session's tool list holds it as it was (a server
    /// may have made a read-only tool a writing one since); else the
    /// session's own.
    fn tool(&self, name: &str) -> Option<Arc<dyn Tool>> {
        if let Some((live, may_write)) = &self.live
            && live.offers(name)
        {
            return live.get(name, *may_write).map(|live| live.tool);
        }
        self.registry.get(name).cloned()
    }

    /// The call a `call_tool` call names (its id kept), or the call itself.
    fn unwrapped<'a>(&self, call: &'a ToolCall) -> Result<Cow<'a, ToolCall>, String> {
        if call.name != live::CALL_TOOL || self.registry.get(live::CALL_TOOL).is_none() {
            return Ok(Cow::Borrowed(call));
        }
        let (name, arguments) = parse_arguments(&call.arguments)
            .map_err(|err| format!("the arguments for call_tool are not valid JSON ({err})"))
            .and_then(|args| live::unwrap_call(&args))?;
        Ok(Cow::Owned(ToolCall {
            id: call.id.clone(),
            name,
            arguments,
        }))
    }

    /// Whether `call` may run concurrently with other read-only calls.
    pub fn is_read_only(&self, call: &ToolCall) -> bool {
        self.unwrapped(call)
            .ok()
            .and_then(|call| self.tool(&call.name))
            .is_some_and(|tool| tool.read_only())
    }

    /// After a turn's calls ran: when any of them edited files, run the
    /// checker once for all of them and append its report to the last
    /// edit's result.
    pub async fn after_turn(
        &self,
        calls: &[ToolCall],
        outputs: &mut [ToolOutput],
        ctx: &ToolContext,
    ) {
        let rewritten = std::mem::take(&mut *self.rewritten.lock().expect("rewritten lock"));
        let Some(checker) = self.registry.checker.as_ref().filter(|c| c.after_edits()) else {
            return;
        };
        let mut touched: Vec<String> = Vec::new();
        let mut last = None;
        for (i, (call, output)) in calls.iter().zip(outputs.iter()).enumerate() {
            if output.is_error {
                continue;
            }
            let Ok(call) = self.unwrapped(call) else {
                continue;
            };
            let Some(tool) = self.tool(&call.name) else {
                continue;
            };
            let args = match rewritten.get(&call.id) {
                Some(args) => args.clone(),
                None => match parse_arguments(&call.arguments) {
                    Ok(args) => args,
                    Err(_) => continue,
                },
            };
            let Some(path) = tool.edited_path(&args) else {
                continue;
            };
            let Ok(resolved) = path::resolve(&ctx.root, &path) else {
                continue;
            };
            let path = path::relative(&ctx.root, &resolved);
            if !touched.contains(&path) {
                touched.push(path);
            }
            last = Some(i);
        }
        let Some(last) = last else {
            return;
        };
        if let Some(report) = checker.check(ctx, &touched).await {
            let output = &mut outputs[last];
            output.content.push_str("\n\n");
            output.content.push_str(&crate::secrets::redact(&report));
        }
    }

    pub async fn call(&self, call: &ToolCall, ctx: &ToolContext) -> ToolOutput {
        let started = Instant::now();
        // `call_tool` runs the tool it names: hooks, permissions and events
        // see that tool and its arguments.
        let (call, arguments) = match self.unwrapped(call) {
            Ok(call) => {
                let arguments = parse_arguments(&call.arguments);
                (call, arguments)
            }
            Err(message) => (Cow::Borrowed(call), Err(message)),
        };
        let call = call.as_ref();
        // The hook sees the call first, so the begin event, the permission
        // check and the tool all see the arguments that will really run.
        let hooked = match &arguments {
            Ok(args) if self.tool(&call.name).is_some() => {
                self.pre_tool_use(&call.name, args, ctx).await
            }
            _ => Ok(None),
        };
        let arguments = match &hooked {
            Ok(Some(rewritten)) => {
                self.rewritten
                    .lock()
                    .expect("rewritten lock")
                    .insert(call.id.clone(), rewritten.clone());
                Ok(rewritten.clone())
            }
            _ => arguments,
        };
        self.events.emit(Event::ToolCallBegin {
            session: ctx.session.clone(),
            call_id: call.id.clone(),
            tool: call.name.clone(),
            arguments: arguments
                .clone()
                .unwrap_or_else(|_| Value::String(call.arguments.clone())),
        });
        let mut output = match hooked {
            Err(blocked) => blocked,
            Ok(_) => self.dispatch(call, arguments, ctx).await,
        };
        // A secret a tool came across (a key in a config file, a token in
        // `env` output) never reaches the model, the transcript or an event.
        crate::secrets::redact_in(&mut output.content);
        self.events.emit(Event::ToolCallEnd {
            session: ctx.session.clone(),
            call_id: call.id.clone(),
            tool: call.name.clone(),
            ok: !output.is_error,
            duration_ms: started.elapsed().as_millis() as u64,
            preview: preview(&output.content),
        });
        output
    }

    /// The `pre-tool-use` hook: `Ok(Some(args))` when a plugin rewrote the
    /// arguments, `Err` (the model's tool error) when it blocked the call.
    async fn pre_tool_use(
        &self,
        tool: &str,
        args: &Value,
        ctx: &ToolContext,
    ) -> Result<Option<Value>, ToolOutput> {
        if !self.hooks.wants(HookPoint::PreToolUse) {
            return Ok(None);
        }
        let payload = serde_json::json!({
            "session": ctx.session,
            "agent": ctx.agent,
            "call": ctx.call_id,
            "tool": tool,
            "args": args,
        });
        match self.hooks.call(HookPoint::PreToolUse, payload).await {
            hooks::Decision::Continue => Ok(None),
            hooks::Decision::Block(reason) => Err(ToolOutput::error(format!(
                "blocked by a plugin hook (pre-tool-use): {reason}"
            ))),
            hooks::Decision::Modify(mut value) => match value.get_mut("args").map(Value::take) {
                Some(rewritten @ Value::Object(_)) => Ok(Some(rewritten)),
                _ => {
                    self.events.emit(Event::Warning {
                        session: Some(ctx.session.clone()),
                        message: format!(
                            "hook pre-tool-use: ignored a rewrite of {tool}'s arguments without an object \"args\""
                        ),
                    });
                    Ok(None)
                }
            },
        }
    }

    async fn dispatch(
        &self,
        call: &ToolCall,
        arguments: Result<Value, String>,
        ctx: &ToolContext,
    ) -> ToolOutput {
        if call.name == live::CALL_TOOL
            && let Err(message) = &arguments
        {
            return ToolOutput::error(message.clone());
        }
        let Some(tool) = self.tool(&call.name) else {
            return ToolOutput::error(self.unknown(&call.name));
        };
        let args = match arguments {
            Ok(args) => args,
            Err(message) => {
                return ToolOutput::error(format!(
                    "the arguments for {} are not valid JSON ({message}); send a JSON object matching the tool's parameters",
                    call.name
                ));
            }
        };
        match self
            .permissions
            .decide_with_default(&call.name, &args, tool.asks_by_default())
        {
            Decision::Allow => {}
            Decision::Deny(reason) => return ToolOutput::error(reason),
            Decision::Ask(detail) => {
                if let Err(reason) = self
                    .permissions
                    .ask(&self.events, ctx, &call.name, &detail)
                    .await
                {
                    return ToolOutput::error(reason);
                }
            }
        }
        if ctx.cancel.is_cancelled() {
            return ToolOutput::error("cancelled before the tool ran");
        }
        let mut output = tool.call(args.clone(), ctx).await;
        if call.name == "bash" && refused_by_sandbox(&output.content) {
            output = self
                .outside_sandbox(tool.as_ref(), &args, output, ctx)
                .await;
        }
        if !self.hooks.wants(HookPoint::PostToolUse) {
            return output;
        }
        self.post_tool_use(&call.name, args, output, ctx).await
    }

    /// What a model that called an unknown tool is told: the tools it has,
    /// and how to find the ones that came later.
    fn unknown(&self, name: &str) -> String {
        let known: Vec<&str> = self
            .registry
            .names()
            .filter(|known| *known != live::CALL_TOOL)
            .collect();
        let mut text = format!(
            "unknown tool \"{name}\"; available tools: {}",
            known.join(", ")
        );
        if let Some((live, may_write)) = &self.live {
            let (_, offered) = live.offer(*may_write);
            if let Some(gone) = live.get(name, true).filter(|_| !*may_write) {
                text = format!(
                    "tool \"{name}\" ({}) changes things outside orch's file rules and is offered only to agents that may write",
                    gone.source
                );
            } else if !offered.is_empty() && self.registry.get(live::CALL_TOOL).is_some() {
                text.push_str(&format!(
                    "; {} more through call_tool (find_tools(query) shows them)",
                    offered.len()
                ));
            }
        }
        text
    }

    /// A command the sandbox refused: on a terminal, the user may let it
    /// run again, once, outside the sandbox (never headless: nobody could
    /// say yes).
    async fn outside_sandbox(
        &self,
        tool: &dyn Tool,
        args: &Value,
        refused: ToolOutput,
        ctx: &ToolContext,
    ) -> ToolOutput {
        if !self.permissions.interactive() || ctx.sandbox.is_none() {
            return refused;
        }
        // The whole command, as it would run: never a summary of it.
        let command = args["command"].as_str().unwrap_or_default();
        let detail = format!(
            "orch's sandbox refused this command; run it once more outside the sandbox?\n{command}"
        );
        match self
            .permissions
            .ask(&self.events, ctx, "bash", &detail)
            .await
        {
            Ok(()) => {
                let outside = ToolContext {
                    sandbox: None,
                    ..ctx.clone()
                };
                let mut output = tool.call(args.clone(), &outside).await;
                output.content.insert_str(
                    0,
                    "[the sandbox refused this command; the user let it run again outside the sandbox]\n",
                );
                output
            }
            Err(_) => {
                let mut output = refused;
                output
                    .content
                    .push_str("\n[the user kept it inside the sandbox]");
                output
            }
        }
    }

    /// The `post-tool-use` hook: the output as the model will see it.
    async fn post_tool_use(
        &self,
        tool: &str,
        args: Value,
        output: ToolOutput,
        ctx: &ToolContext,
    ) -> ToolOutput {
        let payload = serde_json::json!({
            "session": ctx.session,
            "agent": ctx.agent,
            "call": ctx.call_id,
            "tool": tool,
            "args": args,
            "output": output.content,
            "is-error": output.is_error,
        });
        match self.hooks.call(HookPoint::PostToolUse, payload).await {
            hooks::Decision::Continue => output,
            hooks::Decision::Block(reason) => ToolOutput::error(format!(
                "the output of {tool} was withheld by a plugin hook (post-tool-use): {reason}"
            )),
            hooks::Decision::Modify(value) => match value["output"].as_str() {
                Some(text) => ToolOutput {
                    content: text.to_string(),
                    is_error: output.is_error,
                },
                None => {
                    self.events.emit(Event::Warning {
                        session: Some(ctx.session.clone()),
                        message: format!(
                            "hook post-tool-use: ignored a rewrite of {tool}'s output without a string \"output\""
                        ),
                    });
                    output
                }
            },
        }
    }
}

/// Whether `bash` output ends with the note the bash tool itself adds after
/// the exit code when the sandbox refused something — never text a command
/// printed, which always comes before that exit code line.
fn refused_by_sandbox(content: &str) -> bool {
    let mut lines = content.trim_end().rsplit('\n');
    let note = lines.next().unwrap_or_default();
    let exit = lines.next().unwrap_or_default();
    note.starts_with(crate::sandbox::BLOCKED) && exit.starts_with("exit code ")
}

/// Tool arguments as JSON. An empty string means "no arguments" (some models
/// send nothing for parameterless tools).
fn parse_arguments(raw: &str) -> Result<Value, String> {
    if raw.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_str(raw).map_err(|err| err.to_string())
}

fn preview(content: &str) -> String {
    crate::text::preview(content, 200)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Probe(bool);

    #[async_trait]
    impl Tool for Probe {
        fn spec(&self) -> ToolSpec {
            ToolSpec {
                name: "mcp__s__probe".into(),
                description: if self.0 { "reads" } else { "writes" }.into(),
                parameters: serde_json::json!({"type": "object"}),
            }
        }
        fn read_only(&self) -> bool {
            self.0
        }
        async fn call(&self, _args: Value, _ctx: &ToolContext) -> ToolOutput {
            ToolOutput::ok("ran")
        }
    }

    #[test]
    fn a_live_tool_that_became_a_writing_one_is_gone_for_a_reader_whose_list_holds_it() {
        let live = Arc::new(live::LiveTools::default());
        let reading: Arc<dyn Tool> = Arc::new(Probe(true));
        live.set_source("mcp", vec![(reading.clone(), false)]);
        let mut registry = ToolRegistry::new();
        registry.insert(reading);
        let router = ToolRouter::new(
            registry,
            Permissions::new(Default::default(), false),
            Arc::new(EventBus::new()),
            Arc::new(hooks::NoHooks),
        )
        .with_live(live.clone(), false);
        assert!(router.tool("mcp__s__probe").is_some());
        live.set_source("mcp", vec![(Arc::new(Probe(false)), true)]);
        assert!(router.tool("mcp__s__probe").is_none());
        let call = ToolCall {
            id: "c1".into(),
            name: "mcp__s__probe".into(),
            arguments: "{}".into(),
        };
        assert!(!router.is_read_only(&call));
        assert!(
            router
                .unknown("mcp__s__probe")
                .contains("offered only to agents that may write")
        );
    }

    #[test]
    fn only_the_bash_tools_own_note_counts_as_a_sandbox_refusal() {
        let note = format!("{} this command may write in …]", crate::sandbox::BLOCKED);
        assert!(refused_by_sandbox(&format!(
            "touch: cannot touch '/x': Permission denied\nexit code 1\n{note}"
        )));
        // A command that prints the note itself is followed by its exit code.
        assert!(!refused_by_sandbox(&format!("{note}\nexit code 0")));
        assert!(!refused_by_sandbox(&format!(
            "exit code 1\n{note}\nexit code 1"
        )));
    }

    #[test]
    fn sessions_of_one_tool_set_share_one_copy_of_its_specs() {
        let base = ToolRegistry::builtins();
        let first = base.subset(["read", "grep"]);
        let second = base.subset(["grep", "read"]);
        assert!(Arc::ptr_eq(&first.specs(), &second.specs()));
        let other = base.subset(["read"]);
        assert_eq!(other.specs().len(), 1);
        let mut grown = base.subset(["read", "grep"]);
        grown.insert(Arc::new(fs::Write));
        let specs = grown.specs();
        assert_eq!(
            specs
                .iter()
                .map(|spec| spec.name.as_str())
                .collect::<Vec<_>>(),
            ["grep", "read", "write"],
            "a registry something was inserted into builds its own list"
        );
        assert!(!Arc::ptr_eq(&specs, &first.specs()));
    }
}

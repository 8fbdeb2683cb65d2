//! Tools from sources that change while orch runs (plugins, MCP servers),
//! and how a running session reaches them without breaking its prompt
//! cache.
//!
//! A session's tool list is fixed when the session starts and at each
//! compaction: the built-in tools of its agent plus the live tools it may
//! use, or, when their schemas would pass a share of the window, only their
//! names ("deferred"). Whatever changes later reaches the session as text
//! appended to its conversation ([`LiveTools::notice_since`]), and every
//! live tool is callable at once through the stable `call_tool` tool (or by
//! its own name: models do that); `find_tools` returns the schemas of the
//! ones that match a query.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Tool, ToolContext, ToolOutput, parse_args};
use crate::events::{Event, EventBus};
use crate::provider::ToolSpec;

/// The name of the tool that calls any live tool by name.
pub const CALL_TOOL: &str = "call_tool";
/// The name of the tool that finds live tools and shows their schemas.
pub const FIND_TOOLS: &str = "find_tools";

/// A tool a source offers, and whether it writes (then only agents that may
/// write get it).
pub type Offered = (Arc<dyn Tool>, bool);

/// One live tool and where it comes from.
#[derive(Clone)]
pub struct LiveTool {
    pub tool: Arc<dyn Tool>,
    /// Whether it changes things outside orch's file rules: offered only to
    /// agents that may write.
    pub writes: bool,
    /// `plugins`, `mcp:github`: what the change notices name.
    pub source: String,
}

/// Every live tool, versioned: each change of a source makes a new version
/// and is kept, so a session can be told what changed since it looked.
pub struct LiveTools {
    state: RwLock<State>,
    events: Option<Arc<EventBus>>,
    /// Whether any source may offer tools in this run (a plugin host, MCP
    /// servers): only then do sessions get `call_tool` and `find_tools`.
    open: std::sync::atomic::AtomicBool,
    /// The version, for whoever follows changes.
    changed: tokio::sync::watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    version: u64,
    tools: BTreeMap<String, LiveTool>,
    changes: Vec<Change>,
}

/// What a tool was at one version: whether it writes, and its spec.
#[derive(Debug, Clone, PartialEq)]
struct Shape {
    writes: bool,
    spec: ToolSpec,
}

/// What one source changed, at one version.
#[derive(Debug, Clone, PartialEq)]
struct Change {
    version: u64,
    source: String,
    /// (name, writes)
    added: Vec<(String, Shape)>,
    removed: Vec<(String, Shape)>,
    /// Free text (a skill or agent added): shown to every session.
    note: Option<String>,
}

impl Default for LiveTools {
    fn default() -> Self {
        LiveTools::new(None)
    }
}

impl LiveTools {
    /// No live tools yet; changes are announced on `events` when given.
    pub fn new(events: Option<Arc<EventBus>>) -> LiveTools {
        LiveTools {
            state: RwLock::default(),
            events,
            open: Default::default(),
            changed: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Follow changes: the receiver sees each new version.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// A source that may offer tools in this run exists; sessions started
    /// from now on can reach whatever it offers, whenever it does.
    pub fn open(&self) {
        self.open.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_open(&self) -> bool {
        self.open.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// The version sessions compare with: it grows with every change.
    pub fn version(&self) -> u64 {
        self.read().version
    }

    /// Make `tools` the whole offer of `source`, replacing what it offered
    /// before. A name another source already offers is refused; the
    /// problems name both. Nothing changes (no new version) when the offer
    /// is the same.
    pub fn set_source(&self, source: &str, tools: Vec<Offered>) -> Vec<String> {
        self.open();
        let mut problems = Vec::new();
        let change = {
            let mut state = self.write();
            let mut offered: BTreeMap<String, LiveTool> = BTreeMap::new();
            for (tool, writes) in tools {
                let name = tool.spec().name;
                if let Some(owner) = state.tools.get(&name).filter(|t| t.source != source) {
                    problems.push(format!(
                        "{source}: tool \"{name}\" is already offered by {}; not offered",
                        owner.source
                    ));
                    continue;
                }
                offered.insert(
                    name,
                    LiveTool {
                        tool,
                        writes,
                        source: source.to_string(),
                    },
                );
            }
            let before: BTreeMap<String, (bool, ToolSpec)> = state
                .tools
                .iter()
                .filter(|(_, t)| t.source == source)
                .map(|(name, t)| (name.clone(), (t.writes, t.tool.spec())))
                .collect();
            let mut added = Vec::new();
            let mut removed = Vec::new();
            for (name, tool) in &offered {
                let now = Shape {
                    writes: tool.writes,
                    spec: tool.tool.spec(),
                };
                match before.get(name) {
                    Some((writes, spec)) if *writes == now.writes && *spec == now.spec => {}
                    // A changed schema counts as the tool removed and added.
                    Some((writes, spec)) => {
                        let was = Shape {
                            writes: *writes,
                            spec: spec.clone(),
                        };
                        removed.push((name.clone(), was));
                        added.push((name.clone(), now));
                    }
                    None => added.push((name.clone(), now)),
                }
            }
            for (name, (writes, spec)) in &before {
                if !offered.contains_key(name) {
                    let was = Shape {
                        writes: *writes,
                        spec: spec.clone(),
                    };
                    removed.push((name.clone(), was));
                }
            }
            state.tools.retain(|_, t| t.source != source);
            state.tools.extend(offered);
            if added.is_empty() && removed.is_empty() {
                None
            } else {
                state.version += 1;
                let change = Change {
                    version: state.version,
                    source: source.to_string(),
                    added,
                    removed,
                    note: None,
                };
                state.changes.push(change.clone());
                Some(change)
            }
        };
        match change {
            Some(change) => self.announce(&change),
            // Followers look again even so: a source may have changed what
            // it offers besides tools (a plugin's agents).
            None => {
                let version = self.version();
                self.changed.send_replace(version);
            }
        }
        problems
    }

    /// Something else a running session should hear about (a skill or an
    /// agent that became available): a new version carrying `note`.
    pub fn note(&self, source: &str, note: String) {
        let change = {
            let mut state = self.write();
            state.version += 1;
            let change = Change {
                version: state.version,
                source: source.to_string(),
                added: Vec::new(),
                removed: Vec::new(),
                note: Some(note),
            };
            state.changes.push(change.clone());
            change
        };
        self.announce(&change);
    }

    fn announce(&self, change: &Change) {
        self.changed.send_replace(change.version);
        if let Some(events) = &self.events {
            let names = |list: &[(String, Shape)]| list.iter().map(|(n, _)| n.clone()).collect();
            events.emit(Event::ToolsChanged {
                source: change.source.clone(),
                added: names(&change.added),
                removed: names(&change.removed),
                note: change.note.clone(),
            });
        }
    }

    /// The live tool `name`, when an agent that may (or may not) write may
    /// use it.
    pub fn get(&self, name: &str, may_write: bool) -> Option<LiveTool> {
        self.read()
            .tools
            .get(name)
            .filter(|tool| may_write || !tool.writes)
            .cloned()
    }

    /// What an agent may use now, by name, with the version it was read at.
    pub fn offer(&self, may_write: bool) -> (u64, Vec<LiveTool>) {
        let state = self.read();
        let tools = state
            .tools
            .values()
            .filter(|tool| may_write || !tool.writes)
            .cloned()
            .collect();
        (state.version, tools)
    }

    /// Whether `name` is a live tool (for any agent).
    pub fn offers(&self, name: &str) -> bool {
        self.read().tools.contains_key(name)
    }

    /// What changed for an agent that may (or may not) write: notes since
    /// `notes_from`, tools since `tools_from` (a session whose tool list
    /// was rebuilt has seen the tools of that version), as a message for
    /// its model, with the version it was read at; `None` when nothing it
    /// could use changed. A tool that ends as it was (removed and added
    /// back when its server restarted) is not mentioned. `call_tool` says
    /// whether the session has `call_tool` and `find_tools`; without them
    /// new tools are called by name, their parameters shown here.
    pub fn notice_since(
        &self,
        notes_from: u64,
        tools_from: u64,
        may_write: bool,
        call_tool: bool,
    ) -> (u64, Option<String>) {
        let state = self.read();
        // Per name: what it was before the first change seen (None: it did
        // not exist), and what it is after the last.
        let mut span: BTreeMap<&str, (Option<&Shape>, Option<&Shape>, &str)> = BTreeMap::new();
        let mut notes = Vec::new();
        for change in state.changes.iter().filter(|c| c.version > notes_from) {
            if let Some(note) = &change.note {
                notes.push(note.as_str());
            }
            if change.version <= tools_from {
                continue;
            }
            for (name, was) in &change.removed {
                let entry = span
                    .entry(name)
                    .or_insert((Some(was), None, change.source.as_str()));
                entry.1 = None;
            }
            for (name, now) in &change.added {
                let entry = span
                    .entry(name)
                    .or_insert((None, None, change.source.as_str()));
                entry.1 = Some(now);
                entry.2 = change.source.as_str();
            }
        }
        fn visible(shape: Option<&Shape>, may_write: bool) -> Option<&Shape> {
            shape.filter(|s| may_write || !s.writes)
        }
        let mut added: Vec<(&str, &str, &Shape)> = Vec::new();
        let mut removed: Vec<(&str, &str)> = Vec::new();
        for (name, (before, after, source)) in span {
            match (visible(before, may_write), visible(after, may_write)) {
                (Some(was), Some(now)) if was == now => {}
                (_, Some(now)) if state.tools.contains_key(name) => {
                    added.push((name, source, now));
                }
                (Some(_), _) => removed.push((name, source)),
                _ => {}
            }
        }
        let version = state.version;
        if added.is_empty() && removed.is_empty() && notes.is_empty() {
            return (version, None);
        }
        let mut text = String::from("[orch] Tools changed while you were working.");
        if !added.is_empty() {
            text.push_str(if call_tool {
                "\nNow available (call them with call_tool, or by name):"
            } else {
                "\nNow available (call them by name):"
            });
            for (name, source, now) in &added {
                text.push_str(&format!(
                    "\n- {name} ({source}): {}",
                    one_line(&now.spec.description)
                ));
                if !call_tool {
                    text.push_str(&format!(" Parameters: {}", now.spec.parameters));
                }
            }
            if call_tool {
                text.push_str("\nfind_tools shows their parameters.");
            }
        }
        if !removed.is_empty() {
            let names: Vec<String> = removed
                .iter()
                .map(|(name, source)| format!("{name} ({source})"))
                .collect();
            text.push_str(&format!("\nNo longer available: {}.", names.join(", ")));
        }
        for note in notes {
            text.push('\n');
            text.push_str(note);
        }
        (version, Some(text))
    }

    /// The live tools matching `query` (every word in the name or the
    /// description, case-insensitive; all of them for an empty query), best
    /// first: name matches before description matches, then by name.
    pub fn find(&self, query: &str, may_write: bool, limit: usize) -> Vec<ToolSpec> {
        let words: Vec<String> = query
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        let state = self.read();
        let mut found: Vec<(usize, ToolSpec)> = state
            .tools
            .values()
            .filter(|tool| may_write || !tool.writes)
            .filter_map(|tool| {
                let spec = tool.tool.spec();
                let name = spec.name.to_lowercase();
                let description = spec.description.to_lowercase();
                let mut in_name = 0;
                for word in &words {
                    if name.contains(word.as_str()) {
                        in_name += 1;
                    } else if !description.contains(word.as_str()) {
                        return None;
                    }
                }
                Some((words.len() - in_name, spec))
            })
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
        found
            .into_iter()
            .take(limit)
            .map(|(_, spec)| spec)
            .collect()
    }
}

fn one_line(text: &str) -> String {
    crate::text::preview(&crate::text::squash_spaces(text), 160)
}

/// How a session offers the live tools it may use: each by its schema, or,
/// past `budget_bytes` of schemas, all of them by name only.
pub struct Offer {
    /// Offered with their schemas.
    pub direct: Vec<Arc<dyn Tool>>,
    /// Deferred: names only, reached through `call_tool`.
    pub deferred: Vec<String>,
    /// The live version the offer was read at.
    pub version: u64,
}

impl Offer {
    pub fn of(live: &LiveTools, may_write: bool, budget_bytes: usize) -> Offer {
        let (version, tools) = live.offer(may_write);
        let bytes: usize = tools.iter().map(|tool| spec_bytes(&tool.tool.spec())).sum();
        if bytes <= budget_bytes {
            Offer {
                direct: tools.into_iter().map(|tool| tool.tool).collect(),
                deferred: Vec::new(),
                version,
            }
        } else {
            Offer {
                direct: Vec::new(),
                deferred: tools.iter().map(|tool| tool.tool.spec().name).collect(),
                version,
            }
        }
    }
}

/// About how many bytes a spec adds to a request.
pub fn spec_bytes(spec: &ToolSpec) -> usize {
    spec.name.len() + spec.description.len() + spec.parameters.to_string().len() + 40
}

/// Deferred names, grouped by their `mcp__server__` prefix so a hundred
/// tools of one server cost little more than their short names.
pub fn list_names(names: &[String]) -> String {
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for name in names {
        let (prefix, rest) = match name.strip_prefix("mcp__").and_then(|r| r.find("__")) {
            Some(end) => name.split_at(5 + end + 2),
            None => ("", name.as_str()),
        };
        groups.entry(prefix).or_default().push(rest);
    }
    let mut lines = Vec::new();
    for (prefix, rest) in groups {
        if prefix.is_empty() {
            lines.push(rest.join(", "));
        } else {
            lines.push(format!("{prefix}{{{}}}", rest.join(",")));
        }
    }
    lines.join("; ")
}

/// `call_tool(name, arguments)`: calls any tool the session may use by name.
/// The router runs the named tool itself (hooks, permissions and events see
/// its real name); this spec is what the model is shown.
pub fn call_tool_spec(deferred: &[String]) -> ToolSpec {
    let mut description = String::from(
        "Call a tool by name: tools that became available after this conversation started, or \
         ones listed here by name only. Get their parameters with find_tools first.",
    );
    if !deferred.is_empty() {
        description.push_str("\nTools listed by name only: ");
        description.push_str(&list_names(deferred));
    }
    ToolSpec {
        name: CALL_TOOL.into(),
        description,
        parameters: json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "the tool's name"},
                "arguments": {"type": "object", "description": "its arguments"}
            },
            "required": ["name"]
        }),
    }
}

/// `call_tool` as a session's registry holds it: the router runs the tool
/// a call names before it would reach this.
pub struct CallTool {
    spec: ToolSpec,
}

impl CallTool {
    pub fn new(deferred: &[String]) -> CallTool {
        CallTool {
            spec: call_tool_spec(deferred),
        }
    }
}

#[async_trait]
impl Tool for CallTool {
    fn spec(&self) -> ToolSpec {
        self.spec.clone()
    }

    async fn call(&self, _args: Value, _ctx: &ToolContext) -> ToolOutput {
        ToolOutput::error("call_tool runs only through a session's tool router")
    }
}

/// The tool named by a `call_tool` call and its arguments, as JSON text.
pub fn unwrap_call(arguments: &Value) -> Result<(String, String), String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Args {
        name: String,
        #[serde(default)]
        arguments: Option<Value>,
    }
    let args: Args = serde_json::from_value(arguments.clone())
        .map_err(|err| format!("invalid arguments for call_tool: {err}"))?;
    let inner = match args.arguments {
        None | Some(Value::Null) => "{}".to_string(),
        // Some models send the arguments as a JSON string.
        Some(Value::String(text)) => text,
        Some(value) => value.to_string(),
    };
    if args.name == CALL_TOOL {
        return Err("call_tool cannot call itself".into());
    }
    Ok((args.name, inner))
}

/// `find_tools(query)`: the schemas of the live tools matching a query.
pub struct FindTools {
    pub live: Arc<LiveTools>,
    pub may_write: bool,
}

/// Most tools one `find_tools` call shows.
const FIND_LIMIT: usize = 10;

#[async_trait]
impl Tool for FindTools {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: FIND_TOOLS.into(),
            description:
                "Find tools by words of their name or description (MCP servers, plugins); \
                          returns each match's description and parameters, to call with call_tool."
                    .into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "words to look for; empty lists all"}
                },
                "required": ["query"]
            }),
        }
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> ToolOutput {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Args {
            query: String,
        }
        let args: Args = match parse_args(FIND_TOOLS, args) {
            Ok(args) => args,
            Err(output) => return output,
        };
        let found = self.live.find(&args.query, self.may_write, FIND_LIMIT + 1);
        if found.is_empty() {
            return ToolOutput::ok(format!(
                "no tool matches \"{}\"; find_tools with an empty query lists every tool you can call",
                args.query
            ));
        }
        let more = found.len() > FIND_LIMIT;
        let tools: Vec<Value> = found
            .into_iter()
            .take(FIND_LIMIT)
            .map(|spec| {
                json!({
                    "name": spec.name,
                    "description": spec.description,
                    "parameters": spec.parameters,
                })
            })
            .collect();
        let mut text = serde_json::to_string_pretty(&tools).unwrap_or_default();
        // A server decides how large its schemas are; the result is capped
        // like a file read.
        let cut = crate::text::truncate(&mut text, ctx.limits.read_max_bytes);
        if cut > 0 {
            text.push_str(&format!(
                "\n[{cut} more bytes left out; use more words to narrow the search]"
            ));
        }
        if more {
            text.push_str(&format!(
                "\n(only the first {FIND_LIMIT} matches; use more words to narrow the search)"
            ));
        }
        ToolOutput::ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Named(&'static str, &'static str);

    #[async_trait]
    impl Tool for Named {
        fn spec(&self) -> ToolSpec {
            ToolSpec {
                name: self.0.into(),
                description: self.1.into(),
                parameters: json!({"type": "object", "properties": {}}),
            }
        }
        async fn call(&self, _args: Value, _ctx: &ToolContext) -> ToolOutput {
            ToolOutput::ok(self.0)
        }
    }

    fn tool(name: &'static str, description: &'static str) -> Arc<dyn Tool> {
        Arc::new(Named(name, description))
    }

    #[test]
    fn a_source_replaces_its_own_tools_and_cannot_take_anothers() {
        let live = LiveTools::default();
        assert!(
            live.set_source("plugins", vec![(tool("word_count", "counts"), false)])
                .is_empty()
        );
        let problems = live.set_source(
            "mcp:x",
            vec![
                (tool("word_count", "other"), false),
                (tool("mcp__x__a", "a"), true),
            ],
        );
        assert_eq!(
            problems,
            ["mcp:x: tool \"word_count\" is already offered by plugins; not offered"]
        );
        assert_eq!(live.version(), 2);
        // The same offer again is no change.
        live.set_source("mcp:x", vec![(tool("mcp__x__a", "a"), true)]);
        assert_eq!(live.version(), 2);
        assert!(live.get("mcp__x__a", false).is_none(), "writers only");
        assert!(live.get("mcp__x__a", true).is_some());
        live.set_source("plugins", Vec::new());
        assert!(live.get("word_count", true).is_none());
    }

    #[test]
    fn a_notice_says_what_an_agent_can_use_that_changed_since_it_looked() {
        let live = LiveTools::default();
        live.set_source("plugins", vec![(tool("old", "old one"), false)]);
        let seen = live.version();
        let notice = |from: u64, may_write: bool| live.notice_since(from, from, may_write, true).1;
        assert_eq!(notice(seen, false), None);
        live.set_source(
            "plugins",
            vec![
                (tool("fresh", "a new tool\nover lines"), false),
                (tool("writer", "writes"), true),
            ],
        );
        live.set_source("mcp:y", vec![(tool("brief", "short-lived"), false)]);
        live.set_source("mcp:y", Vec::new());
        let reader = notice(seen, false).unwrap();
        assert!(
            reader.contains("- fresh (plugins): a new tool over lines"),
            "{reader}"
        );
        assert!(!reader.contains("writer"), "{reader}");
        assert!(
            !reader.contains("brief"),
            "added and removed again: {reader}"
        );
        assert!(
            reader.contains("No longer available: old (plugins)."),
            "{reader}"
        );
        let writer = notice(seen, true).unwrap();
        assert!(writer.contains("- writer (plugins): writes"), "{writer}");
        assert_eq!(notice(live.version(), true), None);
        live.note(
            "skills",
            "Skill \"deploy\" is available: load it with skill.".into(),
        );
        let noted = notice(live.version() - 1, false).unwrap();
        assert!(noted.ends_with("Skill \"deploy\" is available: load it with skill."));
        // A session whose tool list was rebuilt still hears the note.
        let (_, rebuilt) = live.notice_since(seen, live.version(), false, true);
        assert!(rebuilt.unwrap().ends_with("load it with skill."));
        // A source that went away and came back as it was is no news.
        let before = live.version();
        live.set_source("plugins", Vec::new());
        live.set_source(
            "plugins",
            vec![
                (tool("fresh", "a new tool\nover lines"), false),
                (tool("writer", "writes"), true),
            ],
        );
        assert_eq!(notice(before, true), None);
        // Without call_tool, the parameters come with the notice.
        live.set_source("mcp:z", vec![(tool("zed", "zzz"), false)]);
        let (_, direct) = live.notice_since(before, before, false, false);
        let direct = direct.unwrap();
        assert!(direct.contains("(call them by name)"), "{direct}");
        assert!(
            direct.contains("- zed (mcp:z): zzz Parameters: {"),
            "{direct}"
        );
    }

    #[test]
    fn find_ranks_name_matches_first_and_needs_every_word() {
        let live = LiveTools::default();
        live.set_source(
            "mcp:gh",
            vec![
                (
                    tool("mcp__gh__list_issues", "list issues of a repository"),
                    false,
                ),
                (
                    tool("mcp__gh__search", "search issues and pull requests"),
                    false,
                ),
                (tool("mcp__gh__create_issue", "open an issue"), true),
            ],
        );
        let names = |specs: Vec<ToolSpec>| specs.into_iter().map(|s| s.name).collect::<Vec<_>>();
        assert_eq!(
            names(live.find("issues", false, 10)),
            ["mcp__gh__list_issues", "mcp__gh__search"]
        );
        assert_eq!(
            names(live.find("search pull", false, 10)),
            ["mcp__gh__search"]
        );
        assert_eq!(live.find("issue", true, 10).len(), 3);
        assert_eq!(live.find("", false, 1).len(), 1);
    }

    #[test]
    fn past_the_budget_every_live_tool_is_offered_by_name_only() {
        let live = LiveTools::default();
        live.set_source(
            "mcp:a",
            vec![
                (tool("mcp__a__one", "first"), false),
                (tool("mcp__a__two", "second"), false),
            ],
        );
        live.set_source("plugins", vec![(tool("slugify", "slugs"), false)]);
        let all = Offer::of(&live, false, 10_000);
        assert_eq!(all.direct.len(), 3);
        assert!(all.deferred.is_empty());
        let deferred = Offer::of(&live, false, 100);
        assert!(deferred.direct.is_empty());
        assert_eq!(list_names(&deferred.deferred), "slugify; mcp__a__{one,two}");
        assert!(
            call_tool_spec(&deferred.deferred)
                .description
                .ends_with("Tools listed by name only: slugify; mcp__a__{one,two}")
        );
    }

    #[test]
    fn call_tool_unwraps_the_named_call() {
        assert_eq!(
            unwrap_call(&json!({"name": "x", "arguments": {"a": 1}})).unwrap(),
            ("x".to_string(), "{\"a\":1}".to_string())
        );
        assert_eq!(
            unwrap_call(&json!({"name": "x", "arguments": "{\"a\":1}"}))
                .unwrap()
                .1,
            "{\"a\":1}"
        );
        assert_eq!(unwrap_call(&json!({"name": "x"})).unwrap().1, "{}");
        assert!(unwrap_call(&json!({"name": "call_tool"})).is_err());
        assert!(
            unwrap_call(&json!({"tool": "x"}))
                .unwrap_err()
                .contains("call_tool")
        );
    }
}

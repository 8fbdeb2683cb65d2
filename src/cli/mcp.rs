//! `orch mcp list`, `orch mcp check NAME` and `orch mcp import`: the MCP
//! servers of orch.json and a trusted project's `.mcp.json`, started to
//! show their tools (nothing is called), and importing Claude Code's and
//! Codex's user-level servers into the user's orch.json.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use serde_json::{Map, Value};

use super::{Cli, McpCommand, exit};
use crate::config::{self, McpServer};
use crate::events::{Envelope, Event, EventBus, EventSink};
use crate::mcp::{McpHub, ServerState, ServerStatus};

/// Prints the hub's warnings on stderr as they come.
struct Warnings;

impl EventSink for Warnings {
    fn write(&self, envelope: &Envelope) {
        if let Event::Warning { message, .. } = &envelope.event {
            eprintln!("warning: {}", crate::text::printable(message));
        }
    }
}

pub async fn command(cli: &Cli, command: &McpCommand) -> anyhow::Result<u8> {
    match command {
        McpCommand::Import => return import(),
        McpCommand::Serve => return super::mcp_serve::serve(cli).await,
        McpCommand::List | McpCommand::Check { .. } => {}
    }
    let root = super::project_root(cli.dir.as_deref())?;
    let config = config::load(&root, &cli.overrides())?;
    for skipped in &config.mcp.skipped {
        eprintln!("warning: {}", crate::text::printable(skipped));
    }
    if let Some(surface) = config.trust.ignored()
        && surface
            .files
            .iter()
            .any(|(path, _)| path == config::MCP_JSON)
    {
        eprintln!(
            "warning: {} is ignored: this project is not trusted (see `orch trust`)",
            config::MCP_JSON
        );
    }
    let events = Arc::new(EventBus::new());
    events.add_sink(Arc::new(Warnings));
    let servers: Vec<(String, McpServer)> = config.mcp.servers.clone().into_iter().collect();
    match command {
        McpCommand::Import | McpCommand::Serve => unreachable!("handled above"),
        McpCommand::List => {
            if servers.is_empty() {
                if !cli.json {
                    println!(
                        "no MCP servers (add \"mcp\": {{\"servers\": {{…}}}} to orch.json, or run `orch mcp import`)"
                    );
                } else {
                    println!("[]");
                }
                return Ok(exit::COMPLETE);
            }
            if !cli.json {
                eprintln!(
                    "starting {} MCP server(s) to list their tools (no tool is called)…",
                    servers.iter().filter(|(_, s)| s.enabled).count()
                );
            }
            let hub = McpHub::start(servers, root, events).await;
            let status = hub.status();
            hub.shutdown().await;
            if cli.json {
                let list: Vec<Value> = status.iter().map(to_json).collect();
                println!("{}", serde_json::to_string(&list)?);
            } else {
                for server in &status {
                    print_server(server);
                }
            }
            Ok(exit::COMPLETE)
        }
        McpCommand::Check { name } => {
            let Some(server) = config.mcp.servers.get(name) else {
                let known: Vec<&str> = config.mcp.servers.keys().map(String::as_str).collect();
                return Err(anyhow!(
                    "no MCP server named \"{name}\" in orch.json or a trusted .mcp.json (configured: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ));
            };
            let mut server = server.clone();
            // Checking a disabled server starts it all the same: that is
            // what was asked for.
            server.enabled = true;
            let hub = McpHub::start(vec![(name.clone(), server)], root, events).await;
            let status = hub.status();
            hub.shutdown().await;
            let Some(server) = status.first() else {
                return Ok(exit::UNFINISHED);
            };
            if cli.json {
                println!("{}", serde_json::to_string(&to_json(server))?);
            } else {
                print_server(server);
            }
            Ok(if server.state == ServerState::Running {
                exit::COMPLETE
            } else {
                exit::UNFINISHED
            })
        }
    }
}

fn print_server(server: &ServerStatus) {
    println!(
        "{} ({}): {}",
        crate::text::printable(&server.name),
        server.transport,
        crate::text::printable(&server.state.to_string())
    );
    for (tool, read_only) in &server.tools {
        let kind = if *read_only { "read-only" } else { "write" };
        println!("  {tool}  {kind}");
    }
}

fn to_json(server: &ServerStatus) -> Value {
    serde_json::json!({
        "name": server.name,
        "transport": server.transport,
        "state": server.state.to_string(),
        "running": server.state == ServerState::Running,
        "tools": server.tools.iter().map(|(name, read_only)| serde_json::json!({
            "name": name,
            "read_only": read_only,
        })).collect::<Vec<_>>(),
    })
}

/// `orch mcp import`.
fn import() -> anyhow::Result<u8> {
    let home = dirs::home_dir().ok_or_else(|| anyhow!("no home directory to import from"))?;
    let target = dirs::config_dir()
        .map(|dir| dir.join("orch").join("orch.json"))
        .ok_or_else(|| anyhow!("no user config directory to write orch.json in"))?;
    let mut found: Vec<(String, String, Result<Value, String>)> = Vec::new();
    let claude = home.join(".claude.json");
    match std::fs::read_to_string(&claude) {
        Ok(text) => {
            for (name, entry) in claude_servers(&text)
                .with_context(|| format!("{}: not valid JSON", claude.display()))?
            {
                found.push((name, "~/.claude.json".into(), config::mcp_entry(&entry)));
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(anyhow!("{}: {err}", claude.display())),
    }
    let codex = home.join(".codex").join("config.toml");
    match std::fs::read_to_string(&codex) {
        Ok(text) => {
            let servers =
                codex_servers(&text).map_err(|err| anyhow!("{}: {err}", codex.display()))?;
            for (name, entry) in servers {
                found.push((
                    name,
                    "~/.codex/config.toml".into(),
                    config::mcp_entry(&entry),
                ));
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(anyhow!("{}: {err}", codex.display())),
    }
    if found.is_empty() {
        println!("no MCP servers found in ~/.claude.json or ~/.codex/config.toml");
        return Ok(exit::COMPLETE);
    }
    let text = match std::fs::read_to_string(&target) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => "{}".into(),
        Err(err) => return Err(anyhow!("{}: {err}", target.display())),
    };
    let stripped = config::strip_comments(&text);
    let mut user: Value = serde_json::from_str(&stripped)
        .with_context(|| format!("{}: not valid JSON", target.display()))?;
    let Some(top) = user.as_object_mut() else {
        return Err(anyhow!("{}: expected a JSON object", target.display()));
    };
    let servers = top
        .entry("mcp")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| anyhow!("{}: key \"mcp\": expected an object", target.display()))?
        .entry("servers")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| {
            anyhow!(
                "{}: key \"mcp.servers\": expected an object",
                target.display()
            )
        })?;
    let mut added = Vec::new();
    for (name, from, entry) in found {
        let shown = crate::text::printable(&name);
        match entry {
            _ if servers.contains_key(&name) => {
                println!(
                    "skipped {shown} (from {from}): orch.json already has a server of that name"
                )
            }
            Err(why) => println!("skipped {shown} (from {from}): {why}"),
            Ok(entry) => {
                let kind = if entry.get("url").is_some() {
                    "http"
                } else {
                    "stdio"
                };
                println!("added {shown} ({kind}, from {from})");
                servers.insert(name.clone(), entry);
                added.push(name);
            }
        }
    }
    if added.is_empty() {
        return Ok(exit::COMPLETE);
    }
    if stripped != text {
        // Rewriting would lose the user's comments.
        return Err(anyhow!(
            "{} has comments, which rewriting it would lose; nothing was written (add the servers above to its \"mcp\".\"servers\" yourself, or remove the comments and import again)",
            target.display()
        ));
    }
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut bytes = serde_json::to_vec_pretty(&user)?;
    bytes.push(b'\n');
    crate::files::replace(&target, &bytes, crate::files::Durability::Synced)
        .with_context(|| format!("writing {}", target.display()))?;
    println!("wrote {} server(s) to {}", added.len(), target.display());
    Ok(exit::COMPLETE)
}

/// The user-level `mcpServers` of Claude Code's `~/.claude.json`.
pub fn claude_servers(text: &str) -> Result<Vec<(String, Value)>, serde_json::Error> {
    let value: Value = serde_json::from_str(text)?;
    Ok(value
        .get("mcpServers")
        .and_then(Value::as_object)
        .map(|servers| {
            servers
                .iter()
                .map(|(name, entry)| (name.clone(), entry.clone()))
                .collect()
        })
        .unwrap_or_default())
}

/// The `[mcp_servers.NAME]` tables of Codex's `config.toml`, in orch's
/// form. Reads the subset of TOML such files use: tables and sub-tables
/// (`[mcp_servers.NAME.env]`), `key = value` with strings, numbers,
/// booleans, arrays of strings and inline tables of strings.
pub fn codex_servers(text: &str) -> Result<Vec<(String, Value)>, String> {
    let mut servers: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    // (server, sub-table) the following keys belong to; None outside.
    let mut at: Option<(String, Option<String>)> = None;
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fail = |why: &str| format!("line {}: {why}", number + 1);
        if let Some(header) = line.strip_prefix('[') {
            let header = header
                .trim_end()
                .strip_suffix(']')
                .ok_or_else(|| fail("expected a table header ending in ]"))?;
            at = None;
            let parts = split_key(header.trim()).map_err(|why| fail(&why))?;
            if parts.first().map(String::as_str) == Some("mcp_servers") && parts.len() >= 2 {
                let name = parts[1].clone();
                servers.entry(name.clone()).or_default();
                at = Some((name, parts.get(2).cloned()));
            }
            continue;
        }
        let Some((server, sub)) = &at else { continue };
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| fail("expected key = value"))?;
        let key = split_key(key.trim()).map_err(|why| fail(&why))?.join(".");
        let (value, rest) = toml_value(value.trim()).map_err(|why| fail(&why))?;
        if !(rest.trim().is_empty() || rest.trim().starts_with('#')) {
            return Err(fail("unexpected text after the value"));
        }
        let entry = servers.entry(server.clone()).or_default();
        match sub {
            Some(sub) => {
                let table = entry
                    .entry(sub.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(table) = table.as_object_mut() {
                    table.insert(key, value);
                }
            }
            None => {
                entry.insert(key, value);
            }
        }
    }
    Ok(servers
        .into_iter()
        .map(|(name, codex)| (name, codex_entry(codex)))
        .collect())
}

/// A Codex server table as an orch entry.
fn codex_entry(codex: Map<String, Value>) -> Value {
    let mut out = Map::new();
    for key in ["command", "args", "env", "cwd", "url", "enabled"] {
        if let Some(value) = codex.get(key) {
            out.insert(key.into(), value.clone());
        }
    }
    let mut headers = Map::new();
    if let Some(Value::Object(fixed)) = codex.get("http_headers") {
        headers.extend(fixed.clone());
    }
    if let Some(Value::Object(from_env)) = codex.get("env_http_headers") {
        for (name, var) in from_env {
            if let Some(var) = var.as_str() {
                headers.insert(name.clone(), format!("${{{var}}}").into());
            }
        }
    }
    if let Some(var) = codex.get("bearer_token_env_var").and_then(Value::as_str) {
        headers.insert("Authorization".into(), format!("Bearer ${{{var}}}").into());
    }
    if !headers.is_empty() {
        out.insert("headers".into(), Value::Object(headers));
    }
    let timeout = codex
        .get("startup_timeout_ms")
        .and_then(Value::as_u64)
        .or_else(|| {
            codex
                .get("startup_timeout_sec")
                .and_then(Value::as_f64)
                .map(|secs| (secs * 1000.0) as u64)
        });
    if let Some(ms) = timeout.filter(|ms| *ms > 0) {
        out.insert("timeout_ms".into(), ms.into());
    }
    Value::Object(out)
}

/// A dotted TOML key (bare or quoted parts).
fn split_key(key: &str) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut rest = key.trim();
    while !rest.is_empty() {
        let (part, after) = if rest.starts_with('"') || rest.starts_with('\'') {
            match toml_value(rest)? {
                (Value::String(part), after) => (part, after),
                _ => return Err("expected a quoted key".into()),
            }
        } else {
            let end = rest.find('.').unwrap_or(rest.len());
            (rest[..end].trim().to_string(), &rest[end..])
        };
        parts.push(part);
        rest = after.trim_start();
        rest = rest.strip_prefix('.').unwrap_or(rest).trim_start();
    }
    Ok(parts)
}

/// One TOML value at the start of `text`, and what follows it.
fn toml_value(text: &str) -> Result<(Value, &str), String> {
    let text = text.trim_start();
    if let Some(rest) = text.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return Ok((out.into(), &rest[i + 1..])),
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some(other) => {
                        out.push('\\');
                        out.push(other);
                    }
                    None => break,
                },
                c => out.push(c),
            }
        }
        return Err("a string is not closed".into());
    }
    if let Some(rest) = text.strip_prefix('\'') {
        let end = rest.find('\'').ok_or("a string is not closed")?;
        return Ok((rest[..end].into(), &rest[end + 1..]));
    }
    if let Some(mut rest) = text.strip_prefix('[') {
        let mut items = Vec::new();
        loop {
            rest = rest.trim_start();
            if let Some(after) = rest.strip_prefix(']') {
                return Ok((Value::Array(items), after));
            }
            let (item, after) = toml_value(rest)?;
            items.push(item);
            rest = after.trim_start();
            rest = rest.strip_prefix(',').unwrap_or(rest);
            if rest.is_empty() {
                return Err("an array is not closed on its line".into());
            }
        }
    }
    if let Some(mut rest) = text.strip_prefix('{') {
        let mut table = Map::new();
        loop {
            rest = rest.trim_start();
            if let Some(after) = rest.strip_prefix('}') {
                return Ok((Value::Object(table), after));
            }
            let (key, after) = rest.split_once('=').ok_or("expected key = value in { }")?;
            let (value, after) = toml_value(after)?;
            table.insert(split_key(key.trim())?.join("."), value);
            rest = after.trim_start();
            rest = rest.strip_prefix(',').unwrap_or(rest);
            if rest.is_empty() {
                return Err("an inline table is not closed on its line".into());
            }
        }
    }
    let end = text
        .find(|c: char| c == ',' || c == ']' || c == '}' || c == '#' || c.is_whitespace())
        .unwrap_or(text.len());
    let (word, rest) = text.split_at(end);
    let value = match word {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        number => {
            let clean = number.replace('_', "");
            if let Ok(n) = clean.parse::<i64>() {
                n.into()
            } else if let Ok(n) = clean.parse::<f64>() {
                serde_json::Number::from_f64(n)
                    .map(Value::Number)
                    .ok_or("a number out of range")?
            } else {
                return Err(format!("cannot read the value {number:?}"));
            }
        }
    };
    Ok((value, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn codex_tables_become_orch_entries() {
        let text = r#"
model = "o3"
[mcp_servers.github]
command = "npx"
args = ["-y", "@modelcontextprotocol/server-github"] # the server
env = { GITHUB_TOKEN = "x", "A.B" = 'lit' }
startup_timeout_sec = 20

[mcp_servers.docs]
url = "https://example.test/mcp"
bearer_token_env_var = "DOCS_TOKEN"
[mcp_servers.docs.http_headers]
X-Team = "core"

[mcp_servers."odd name".env]
K = "v\"q"
[other]
command = "ignored"
"#;
        let servers = codex_servers(text).unwrap();
        assert_eq!(
            servers,
            vec![
                (
                    "docs".to_string(),
                    json!({"url": "https://example.test/mcp",
                           "headers": {"X-Team": "core", "Authorization": "Bearer ${DOCS_TOKEN}"}})
                ),
                (
                    "github".to_string(),
                    json!({"command": "npx", "args": ["-y", "@modelcontextprotocol/server-github"],
                           "env": {"GITHUB_TOKEN": "x", "A.B": "lit"}, "timeout_ms": 20000})
                ),
                ("odd name".to_string(), json!({"env": {"K": "v\"q"}})),
            ]
        );
        // The one without a command is not usable: the import says so.
        assert!(config::mcp_entry(&servers[2].1).is_err());
        assert!(config::mcp_entry(&servers[0].1).is_ok());
        let err = codex_servers("[mcp_servers.x]\nargs = [\"a\"\n").unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
    }

    #[test]
    fn claude_servers_are_read_and_sse_ones_refused() {
        let text = r#"{"numStartups": 3, "mcpServers": {
            "fs": {"type": "stdio", "command": "node", "args": ["fs.js"], "env": {}},
            "old": {"type": "sse", "url": "https://example.test/sse"},
            "web": {"type": "http", "url": "https://example.test/mcp", "headers": {"Authorization": "Bearer ${T}"}}
        }}"#;
        let servers = claude_servers(text).unwrap();
        let checked: Vec<(String, bool)> = servers
            .iter()
            .map(|(name, entry)| (name.clone(), config::mcp_entry(entry).is_ok()))
            .collect();
        assert_eq!(
            checked,
            [
                ("fs".into(), true),
                ("old".into(), false),
                ("web".into(), true)
            ]
        );
        let why = config::mcp_entry(&servers[1].1).unwrap_err();
        assert!(why.contains("SSE"), "{why}");
    }
}

//! `orch plugins list` (flagging tools two plugins offer), `orch plugins
//! check FILE` and `orch plugins new` (in `scaffold.rs`), and starting the
//! plugin host for a command that runs agents.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use super::{Cli, PluginsCommand, exit};
use crate::agents::{Agent, AgentRegistry, AgentSource, Role};
use crate::config::{self, Config, ProjectAccess};
use crate::events::EventBus;
use crate::plugins::{PluginHost, PluginInfo};

/// The plugin host with the project's (and the user's) plugins loaded, and
/// one message per plugin that was skipped.
pub(crate) fn start(
    root: &Path,
    config: &Config,
    events: &Arc<EventBus>,
) -> (Option<PluginHost>, Vec<String>) {
    if !config.plugins.enabled {
        return (None, Vec::new());
    }
    let dirs = PluginHost::dirs(root, &config.plugins, config.trust.trusted);
    if !PluginHost::any_in(&dirs) {
        return (None, Vec::new());
    }
    match PluginHost::new(root, &config.plugins, events.clone(), None) {
        Ok(host) => {
            let problems = host.load_dirs_blocking(&dirs);
            (Some(host), problems)
        }
        Err(err) => (None, vec![format!("{err}; plugins are off in this run")]),
    }
}

/// Add the agents of `host`'s plugins to `registry`; one message per agent refused.
pub(crate) fn add_host_agents(host: &PluginHost, registry: &mut AgentRegistry) -> Vec<String> {
    let mut problems = Vec::new();
    let plugins = host.plugins();
    for agent in host.agents() {
        let file = agent.plugin.clone();
        // A plugin's agent writes and runs processes only when the user
        // granted its plugin `"project": "read-write"`.
        let granted = plugins
            .iter()
            .any(|plugin| plugin.file == file && plugin.project == Some(ProjectAccess::ReadWrite));
        let (tools, withheld): (Vec<String>, Vec<String>) =
            agent.tools.into_iter().partition(|tool| {
                granted
                    || !(crate::agents::WRITE_TOOLS.contains(&tool.as_str())
                        || crate::agents::PROCESS_TOOLS.contains(&tool.as_str()))
            });
        if !withheld.is_empty() {
            problems.push(format!(
                "plugin \"{file}\": agent {:?} does not get {} (its plugin is not granted \"project\": \"read-write\" in orch.json)",
                agent.name,
                withheld.join(", ")
            ));
        }
        let added = registry.add(Agent {
            name: agent.name,
            role: Role::Custom,
            description: agent.description,
            prompt: agent.prompt,
            tools,
            model: None,
            source: AgentSource::Plugin(agent.plugin),
        });
        if let Err(problem) = added {
            problems.push(format!("plugin \"{file}\": {problem}"));
        }
    }
    problems
}

/// For `orch agents`: load the project's plugins and add their agents.
pub(crate) fn add_agents(
    root: &Path,
    config: &Config,
    registry: &mut AgentRegistry,
) -> Vec<String> {
    let (host, mut problems) = start(root, config, &Arc::new(EventBus::new()));
    if let Some(host) = host {
        problems.extend(add_host_agents(&host, registry));
    }
    problems
}

pub async fn command(cli: &Cli, command: &PluginsCommand) -> anyhow::Result<u8> {
    match command {
        PluginsCommand::List => list(cli).await,
        PluginsCommand::Check { file } => check(cli, file).await,
        PluginsCommand::New { name, lang } => {
            // Written where the user is (or `-C DIR`), in a project or not.
            let base = match cli.dir.as_deref() {
                Some(dir) => super::absolute_from_cwd(dir),
                None => std::env::current_dir().context("the current directory")?,
            };
            super::scaffold::new(&base, name, *lang)?;
            Ok(exit::COMPLETE)
        }
    }
}

/// The project's plugin host, nothing loaded yet.
fn project_host(cli: &Cli) -> anyhow::Result<(std::path::PathBuf, Config, PluginHost)> {
    let root = super::project_root(cli.dir.as_deref())?;
    let config = config::load(&root, &cli.overrides())?;
    let host = PluginHost::new(&root, &config.plugins, Arc::new(EventBus::new()), None)?;
    Ok((root, config, host))
}

async fn list(cli: &Cli) -> anyhow::Result<u8> {
    let (root, config, host) = project_host(cli)?;
    let problems = host
        .load_dirs(&PluginHost::dirs(
            &root,
            &config.plugins,
            config.trust.trusted,
        ))
        .await;
    for problem in &problems {
        eprintln!("warning: {problem}");
    }
    let plugins = host.plugins();
    let shadowed = shadowed_tools(&plugins);
    for ((file, tool), owner) in &shadowed {
        eprintln!(
            "warning: plugins \"{owner}\" and \"{file}\" both offer a tool named \"{tool}\"; agents get only the one of \"{owner}\" (rename one of them)"
        );
    }
    if cli.json {
        let list: Vec<serde_json::Value> = plugins
            .iter()
            .map(|plugin| listed_json(plugin, &shadowed))
            .collect();
        println!("{}", serde_json::to_string(&list)?);
        return Ok(exit::COMPLETE);
    }
    if plugins.is_empty() {
        println!("no plugins (put .wasm components in .opencode/plugins/)");
    }
    for plugin in &plugins {
        print_plugin(plugin, &shadowed);
    }
    Ok(exit::COMPLETE)
}

async fn check(cli: &Cli, file: &Path) -> anyhow::Result<u8> {
    let (_, _, host) = project_host(cli)?;
    let path = super::absolute_from_cwd(file);
    let info = host
        .load(&path)
        .await
        .with_context(|| format!("checking {}", path.display()))?;
    if cli.json {
        println!("{}", serde_json::to_string(&to_json(&info))?);
    } else {
        println!("ok: speaks orch:plugin@{}", info.contract);
        print_plugin(&info, &Shadowed::new());
    }
    Ok(exit::COMPLETE)
}

/// What a plugin was granted, in words: `project read-only, fetch from docs.rs`.
fn access(plugin: &PluginInfo) -> String {
    let mut parts: Vec<String> = Vec::new();
    match plugin.project {
        None => {}
        Some(ProjectAccess::Read) => parts.push("project read-only".into()),
        Some(ProjectAccess::ReadWrite) => {
            parts.push("project read-only, its agents write through orch's tools".into())
        }
    }
    if plugin.data {
        parts.push("its own data folder".into());
    }
    if !plugin.fetch.is_empty() {
        parts.push(format!("fetch from {}", plugin.fetch.join(", ")));
    }
    if parts.is_empty() {
        return "nothing".into();
    }
    parts.join("; ")
}

/// Tools refused because another plugin offers one of the same name:
/// (file, tool) → the file whose tool agents get.
type Shadowed = BTreeMap<(String, String), String>;

/// The plugin tools the host refuses for a name clash between plugins, by
/// the rule of `PluginHost::tools`: in load order (the order `plugins` comes
/// in), the first plugin offering a name keeps it.
fn shadowed_tools(plugins: &[PluginInfo]) -> Shadowed {
    let mut owners: BTreeMap<&str, &str> = BTreeMap::new();
    let mut shadowed = Shadowed::new();
    for plugin in plugins {
        for tool in &plugin.tools {
            match owners.get(tool.name.as_str()) {
                Some(owner) => {
                    shadowed.insert((plugin.file.clone(), tool.name.clone()), owner.to_string());
                }
                None => {
                    owners.insert(&tool.name, &plugin.file);
                }
            }
        }
    }
    shadowed
}

fn print_plugin(plugin: &PluginInfo, shadowed: &Shadowed) {
    println!(
        "{} {} ({}): {}",
        plugin.name, plugin.version, plugin.file, plugin.description
    );
    println!("  sha256: {}", plugin.sha256);
    println!("  granted: {}", access(plugin));
    for tool in &plugin.tools {
        println!("  tool {}: {}", tool.name, tool.description);
        if let Some(owner) = shadowed.get(&(plugin.file.clone(), tool.name.clone())) {
            println!(
                "    NOT OFFERED: plugin \"{owner}\" already offers a tool named \"{}\"",
                tool.name
            );
        }
    }
    if !plugin.hooks.is_empty() {
        println!("  hooks: {}", plugin.hooks.join(", "));
    }
    for agent in &plugin.agents {
        println!("  agent {}: {}", agent.name, agent.description);
    }
    if !plugin.capabilities.is_empty() {
        println!("  asks for: {}", plugin.capabilities.join(", "));
    }
}

/// `to_json`, with `"shadowed_by"` on each tool another plugin's tool of
/// the same name hides.
fn listed_json(plugin: &PluginInfo, shadowed: &Shadowed) -> serde_json::Value {
    let mut value = to_json(plugin);
    if let Some(tools) = value["tools"].as_array_mut() {
        for tool in tools {
            let name = tool["name"].as_str().unwrap_or_default().to_string();
            if let Some(owner) = shadowed.get(&(plugin.file.clone(), name)) {
                tool["shadowed_by"] = owner.clone().into();
            }
        }
    }
    value
}

fn to_json(plugin: &PluginInfo) -> serde_json::Value {
    serde_json::json!({
        "file": plugin.file,
        "name": plugin.name,
        "version": plugin.version,
        "description": plugin.description,
        "sha256": plugin.sha256,
        "granted": access(plugin),
        "fetch": plugin.fetch,
        "tools": plugin.tools.iter().map(|t| serde_json::json!({
            "name": t.name, "description": t.description, "parameters": t.parameters,
        })).collect::<Vec<_>>(),
        "hooks": plugin.hooks,
        "agents": plugin.agents.iter().map(|a| a.name.clone()).collect::<Vec<_>>(),
        "capabilities": plugin.capabilities,
    })
}

//! A plugin's manifest checked and turned into the engine's words: names
//! that every provider accepts, tool parameters that are JSON Schema
//! objects, agents attributed to their file.

use std::path::Path;

use serde_json::Value;

use super::bindings::{self, Manifest};
use super::{PluginAgent, PluginInfo};
use crate::config::ProjectAccess;
use crate::provider::ToolSpec;

/// Check a manifest and turn it into engine words.
pub(super) fn validate(
    file: &str,
    path: &Path,
    sha256: &str,
    manifest: Manifest,
    project: Option<ProjectAccess>,
) -> Result<PluginInfo, String> {
    let valid_name = |name: &str| {
        !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if !valid_name(&manifest.name) {
        return Err(format!(
            "manifest name {:?} is not 1-64 letters, digits, '-' or '_'",
            manifest.name
        ));
    }
    let mut tools = Vec::new();
    for tool in manifest.tools {
        if !valid_name(&tool.name) {
            return Err(format!(
                "tool name {:?} is not 1-64 letters, digits, '-' or '_'",
                tool.name
            ));
        }
        let parameters: Value = serde_json::from_str(&tool.parameters).map_err(|err| {
            format!(
                "tool {}: parameters are not a JSON Schema: {err}",
                tool.name
            )
        })?;
        if !parameters.is_object() {
            return Err(format!(
                "tool {}: parameters must be a JSON Schema object",
                tool.name
            ));
        }
        tools.push(ToolSpec {
            name: tool.name,
            description: tool.description,
            parameters,
        });
    }
    let agents = manifest
        .agents
        .into_iter()
        .map(|agent| {
            if valid_name(&agent.name) {
                Ok(PluginAgent {
                    name: agent.name,
                    description: agent.description,
                    prompt: agent.prompt,
                    tools: agent.tools,
                    plugin: file.to_string(),
                })
            } else {
                Err(format!("agent name {:?} is not valid", agent.name))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PluginInfo {
        file: file.to_string(),
        path: path.to_path_buf(),
        sha256: sha256.to_string(),
        name: manifest.name,
        version: manifest.version,
        description: manifest.description,
        tools,
        hooks: manifest
            .hooks
            .iter()
            .map(|point| bindings::hook_name(*point).to_string())
            .collect(),
        agents,
        capabilities: manifest.capabilities,
        project,
        data: false,
        fetch: Vec::new(),
        contract: String::new(),
        cached: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bindings::HookPoint;
    use bindings::orch::plugin::types::{AgentSpec, ToolSpec as WitToolSpec};

    fn manifest(name: &str, tool: &str, parameters: &str) -> Manifest {
        Manifest {
            name: name.into(),
            version: "1".into(),
            description: String::new(),
            tools: vec![WitToolSpec {
                name: tool.into(),
                description: "d".into(),
                parameters: parameters.into(),
            }],
            hooks: vec![HookPoint::PreCompact],
            agents: vec![AgentSpec {
                name: "Helper".into(),
                description: "h".into(),
                prompt: "p".into(),
                tools: vec!["read".into()],
            }],
            capabilities: Vec::new(),
        }
    }

    fn check(manifest: Manifest) -> Result<PluginInfo, String> {
        validate("p.wasm", Path::new("p.wasm"), "ab", manifest, None)
    }

    #[test]
    fn a_valid_manifest_becomes_engine_words() {
        let info = check(manifest("notes", "note_add", r#"{"type":"object"}"#)).unwrap();
        assert_eq!(info.tools[0].parameters["type"], "object");
        assert_eq!(info.hooks, ["pre-compact"]);
        assert_eq!(info.agents[0].plugin, "p.wasm");
    }

    #[test]
    fn bad_names_and_schemas_are_refused_with_the_reason() {
        let cases = [
            (
                manifest("", "t", "{}"),
                "manifest name \"\" is not 1-64 letters, digits, '-' or '_'",
            ),
            (
                manifest("a b", "t", "{}"),
                "manifest name \"a b\" is not 1-64 letters, digits, '-' or '_'",
            ),
            (
                manifest("ok", "t/x", "{}"),
                "tool name \"t/x\" is not 1-64 letters, digits, '-' or '_'",
            ),
            (
                manifest("ok", "t", "[]"),
                "tool t: parameters must be a JSON Schema object",
            ),
        ];
        for (manifest, expected) in cases {
            assert_eq!(check(manifest).unwrap_err(), expected);
        }
        let err = check(manifest("ok", "t", "{nope")).unwrap_err();
        assert!(
            err.starts_with("tool t: parameters are not a JSON Schema:"),
            "{err}"
        );
    }
}

//! `orch-plugin-sdk`: write an orch plugin in Rust as one trait impl and one
//! macro call, then `cargo build --target wasm32-wasip2 --release`.
//!
//! ```ignore
//! use orch_plugin_sdk::{export_plugin, Manifest, Plugin, ToolSpec};
//!
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     fn manifest() -> Manifest {
//!         Manifest::new("hello", "0.1.0").tool(ToolSpec::new(
//!             "hello",
//!             "Greets someone",
//!             r#"{"type":"object","properties":{"name":{"type":"string"}}}"#,
//!         ))
//!     }
//!
//!     fn call_tool(name: &str, args_json: &str) -> Result<String, String> {
//!         Ok(format!("hello from {name}: {args_json}"))
//!     }
//! }
//!
//! export_plugin!(Hello);
//! ```
//!
//! The contract is the WIT package `orch:plugin@0.1.1` in `../wit/`; this
//! crate is generated from it, so a plugin built with it always carries the
//! version the host expects.

/// The raw bindings generated from the WIT (the `export_plugin!` macro uses
/// them; plugin code rarely needs to).
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_orch_plugin",
        default_bindings_module: "orch_plugin_sdk::bindings",
    });
}

pub use bindings::orch::plugin::types::{
    AgentSpec, Decision, HookEvent, HookPoint, LogLevel, MemoryEntry, PluginManifest as Manifest,
    ToolSpec,
};

/// What the host offers a plugin: log, key-value store, todo, memory,
/// metrics, and its configuration (`config()`: the grant's `config` object
/// from `orch.json` as JSON text, `{}` without one).
pub mod host {
    pub use crate::bindings::orch::plugin::host::{
        config, kv_delete, kv_get, kv_set, log, memory_recall, memory_remember, read_todo,
        record_metric,
    };
}

/// Outbound HTTP through the host: `net::fetch(url, max_bytes)` reaches only
/// the hosts the user allow-listed for this plugin in `orch.json`
/// (`plugins.grants.<file>.fetch`); anything else is refused with a message
/// saying so. `net::request` sends a method, headers and a body under the
/// same rules. Headers the user configured for a host (API keys) are added
/// by the host; the plugin never sees them. A plugin that never calls
/// either does not import them.
pub mod net {
    pub use crate::bindings::orch::plugin::net::{OutgoingRequest, Response, fetch, request};

    impl OutgoingRequest {
        /// A `GET` of `url` keeping at most `max_bytes` of the body.
        pub fn get(url: &str, max_bytes: u32) -> OutgoingRequest {
            OutgoingRequest {
                method: "GET".to_string(),
                url: url.to_string(),
                headers: Vec::new(),
                body: None,
                max_bytes,
            }
        }

        /// The same request with one more header.
        pub fn header(mut self, name: &str, value: &str) -> OutgoingRequest {
            self.headers.push((name.to_string(), value.to_string()));
            self
        }
    }
}

/// The project, as a plugin granted `"project": "read"` (or `read-write`)
/// sees it: mounted at `/project`.
pub mod project {
    /// Where the granted project root is mounted inside the plugin.
    pub const ROOT: &str = "/project";

    /// The UTF-8 text of `path` (relative to the project root, `./` allowed)
    /// if it is at most `max_bytes` long. Errors say what to do about them:
    /// a missing grant, an absolute path, a file too large or not text.
    pub fn read_text(path: &str, max_bytes: u64) -> Result<String, String> {
        let relative = path.trim_start_matches("./");
        if relative.starts_with('/') {
            return Err(format!(
                "{path:?}: give a path relative to the project root"
            ));
        }
        let full = format!("{ROOT}/{relative}");
        let unreadable = |err: std::io::Error| {
            if std::fs::metadata(ROOT).is_err() {
                return format!(
                    "cannot read {path}: this plugin has no access to the project (grant it `\"project\": \"read\"` in orch.json)"
                );
            }
            format!("cannot read {path}: {err}")
        };
        let size = std::fs::metadata(&full).map_err(unreadable)?.len();
        if size > max_bytes {
            return Err(format!(
                "{path}: {size} bytes is more than the {max_bytes} bytes this plugin reads"
            ));
        }
        let bytes = std::fs::read(&full).map_err(unreadable)?;
        String::from_utf8(bytes).map_err(|_| format!("{path} is not UTF-8 text"))
    }
}

/// The contract version this SDK builds plugins for.
pub const CONTRACT_VERSION: &str = "0.1.1";

/// A plugin. Only `manifest` is required; a plugin without tools keeps the
/// default `call_tool`, one without hooks the default `on_hook`.
pub trait Plugin {
    /// Name, version, tools, hook subscriptions and agents. Called once,
    /// when the host loads the plugin.
    fn manifest() -> Manifest;

    /// Run one of the manifest's tools. `Ok` is what the model sees; `Err`
    /// is a tool error the model sees.
    fn call_tool(name: &str, args_json: &str) -> Result<String, String> {
        let _ = args_json;
        Err(format!("this plugin has no tool named {name:?}"))
    }

    /// Answer a hook the manifest subscribed to.
    fn on_hook(event: HookEvent) -> Result<Decision, String> {
        let _ = event;
        Ok(Decision::Continue)
    }
}

impl Manifest {
    /// A manifest with a name and version and nothing else yet.
    pub fn new(name: &str, version: &str) -> Manifest {
        Manifest {
            name: name.to_string(),
            version: version.to_string(),
            description: String::new(),
            tools: Vec::new(),
            hooks: Vec::new(),
            agents: Vec::new(),
            capabilities: Vec::new(),
        }
    }

    pub fn description(mut self, text: &str) -> Manifest {
        self.description = text.to_string();
        self
    }

    pub fn tool(mut self, tool: ToolSpec) -> Manifest {
        self.tools.push(tool);
        self
    }

    /// Subscribe to a hook point.
    pub fn hook(mut self, point: HookPoint) -> Manifest {
        self.hooks.push(point);
        self
    }

    pub fn agent(mut self, agent: AgentSpec) -> Manifest {
        self.agents.push(agent);
        self
    }

    /// Ask for a capability (`project-read`, `project-write`); the user grants it.
    pub fn capability(mut self, name: &str) -> Manifest {
        self.capabilities.push(name.to_string());
        self
    }
}

impl ToolSpec {
    /// A tool with its JSON Schema parameters (an object schema, as text).
    pub fn new(name: &str, description: &str, parameters: &str) -> ToolSpec {
        ToolSpec {
            name: name.to_string(),
            description: description.to_string(),
            parameters: parameters.to_string(),
        }
    }
}

impl AgentSpec {
    pub fn new(name: &str, description: &str, prompt: &str, tools: &[&str]) -> AgentSpec {
        AgentSpec {
            name: name.to_string(),
            description: description.to_string(),
            prompt: prompt.to_string(),
            tools: tools.iter().map(|tool| tool.to_string()).collect(),
        }
    }
}

/// Export `$ty` (a type implementing [`Plugin`]) as the plugin component.
/// Call it once, at the top level of the plugin crate.
#[macro_export]
macro_rules! export_plugin {
    ($ty:ident) => {
        impl $crate::bindings::exports::orch::plugin::guest::Guest for $ty {
            fn manifest() -> $crate::Manifest {
                <$ty as $crate::Plugin>::manifest()
            }

            fn call_tool(
                name: ::std::string::String,
                args_json: ::std::string::String,
            ) -> ::std::result::Result<::std::string::String, ::std::string::String> {
                <$ty as $crate::Plugin>::call_tool(&name, &args_json)
            }

            fn on_hook(
                event: $crate::HookEvent,
            ) -> ::std::result::Result<$crate::Decision, ::std::string::String> {
                <$ty as $crate::Plugin>::on_hook(event)
            }
        }

        $crate::bindings::__export_orch_plugin!($ty with_types_in $crate::bindings);
    };
}

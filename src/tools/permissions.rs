//! Permission rules (allow / ask / deny per tool and per bash command) and
//! the built-in deny list for destructive commands.
use std::sync::Arc;

use serde_json::Value;

use super::ToolContext;
use crate::config::PermissionConfig;
use crate::events::EventBus;

pub enum Decision {
    Allow,
    Ask(String),
    Deny(String),
}

pub struct Permissions {
    #[allow(dead_code)]
    rules: PermissionConfig,
    #[allow(dead_code)]
    interactive: bool,
}

impl Permissions {
    pub fn new(rules: PermissionConfig, interactive: bool) -> Arc<Self> {
        Arc::new(Permissions { rules, interactive })
    }

    pub fn decide(&self, _tool: &str, _args: &Value) -> Decision {
        Decision::Allow
    }

    pub async fn ask(
        &self,
        _events: &EventBus,
        _ctx: &ToolContext,
        _tool: &str,
        _detail: &str,
    ) -> Result<(), String> {
        Err("not yet".into())
    }
}

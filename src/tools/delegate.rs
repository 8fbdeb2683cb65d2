//! Delegation tools: `delegate_task`, `get_task_result`, `list_tasks`,
//! `cancel_task` and `list_agents`. They speak to whatever runs tasks through
//! the `Delegator` trait, so this module knows nothing about sessions.

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{Tool, ToolContext, ToolOutput};
use crate::provider::ToolSpec;

/// One `delegate_task` call.
#[derive(Debug, Clone)]
pub struct DelegateRequest {
    pub agent: String,
    pub description: String,
    pub prompt: String,
    pub background: bool,
}

/// What runs delegated tasks (the mission's `Tasks`). Errors are
/// sentences for the model.
#[async_trait]
pub trait Delegator: Send + Sync {
    /// Start a task. Background: returns at once with the task id. Blocking:
    /// returns the task's result when it ends.
    async fn delegate(
        &self,
        caller: &ToolContext,
        request: DelegateRequest,
    ) -> Result<String, String>;
    fn task_result(&self, task_id: &str) -> Result<String, String>;
    fn list_tasks(&self, status: Option<&str>) -> String;
    fn cancel_task(&self, task_id: &str) -> Result<String, String>;
    fn list_agents(&self) -> String;
}

/// The five tools, bound to one delegator. They hold it weakly: the
/// delegator owns the registry that holds them.
pub fn tools(delegator: Weak<dyn Delegator>) -> Vec<Arc<dyn Tool>> {
    vec![
        Arc::new(DelegateTask(delegator.clone())),
        Arc::new(GetTaskResult(delegator.clone())),
        Arc::new(ListTasks(delegator.clone())),
        Arc::new(CancelTask(delegator.clone())),
        Arc::new(ListAgents(delegator)),
    ]
}

fn upgrade(delegator: &Weak<dyn Delegator>) -> Result<Arc<dyn Delegator>, ToolOutput> {
    delegator.upgrade().ok_or_else(|| {
        ToolOutput::error("no mission is running, so there is nothing to delegate to")
    })
}

fn string_arg<'a>(args: &'a Value, name: &str) -> Result<&'a str, ToolOutput> {
    match args.get(name) {
        Some(Value::String(text)) if !text.trim().is_empty() => Ok(text),
        Some(Value::String(_)) => Err(ToolOutput::error(format!("\"{name}\" must not be empty"))),
        Some(_) => Err(ToolOutput::error(format!("\"{name}\" must be a string"))),
        None => Err(ToolOutput::error(format!(
            "missing required parameter \"{name}\""
        ))),
    }
}

fn result(outcome: Result<String, String>) -> ToolOutput {
    match outcome {
        Ok(text) => ToolOutput::ok(text),
        Err(text) => ToolOutput::error(text),
    }
}

pub struct DelegateTask(Weak<dyn Delegator>);

#[async_trait]
impl Tool for DelegateTask {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "delegate_task".into(),
            description: "Start a task for another agent. background=true returns a task id at once (its result arrives as a message when it ends); false waits for the result.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "agent": {"type": "string", "description": "agent name, e.g. Worker"},
                    "description": {"type": "string", "description": "a few words"},
                    "prompt": {"type": "string", "description": "the complete task: goal, files, how to verify"},
                    "background": {"type": "boolean"}
                },
                "required": ["agent", "description", "prompt", "background"],
                "additionalProperties": false
            }),
        }
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> ToolOutput {
        let delegator = match upgrade(&self.0) {
            Ok(d) => d,
            Err(out) => return out,
        };
        let request = (|| {
            Ok::<_, ToolOutput>(DelegateRequest {
                agent: string_arg(&args, "agent")?.to_string(),
                description: string_arg(&args, "description")?.to_string(),
                prompt: string_arg(&args, "prompt")?.to_string(),
                background: match args.get("background") {
                    Some(Value::Bool(flag)) => *flag,
                    None => false,
                    Some(_) => {
                        return Err(ToolOutput::error("\"background\" must be true or false"));
                    }
                },
            })
        })();
        match request {
            Ok(request) => result(delegator.delegate(ctx, request).await),
            Err(out) => out,
        }
    }
}

pub struct GetTaskResult(Weak<dyn Delegator>);

#[async_trait]
impl Tool for GetTaskResult {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "get_task_result".into(),
            description: "The status of a delegated task and, when it has ended, its result."
                .into(),
            parameters: json!({
                "type": "object",
                "properties": {"task_id": {"type": "string"}},
                "required": ["task_id"],
                "additionalProperties": false
            }),
        }
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn call(&self, args: Value, _ctx: &ToolContext) -> ToolOutput {
        let delegator = match upgrade(&self.0) {
            Ok(d) => d,
            Err(out) => return out,
        };
        match string_arg(&args, "task_id") {
            Ok(id) => result(delegator.task_result(id)),
            Err(out) => out,
        }
    }
}

pub struct ListTasks(Weak<dyn Delegator>);

#[async_trait]
impl Tool for ListTasks {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "list_tasks".into(),
            description: "Delegated tasks with agent, status and description.".into(),
            parameters: json!({
                "type": "object",
                "properties": {"status": {"type": "string", "enum": ["all", "queued", "running", "completed", "failed", "cancelled"]}},
                "additionalProperties": false
            }),
        }
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn call(&self, args: Value, _ctx: &ToolContext) -> ToolOutput {
        match upgrade(&self.0) {
            Ok(delegator) => {
                ToolOutput::ok(delegator.list_tasks(args.get("status").and_then(Value::as_str)))
            }
            Err(out) => out,
        }
    }
}

pub struct CancelTask(Weak<dyn Delegator>);

#[async_trait]
impl Tool for CancelTask {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "cancel_task".into(),
            description: "Cancel a queued or running delegated task.".into(),
            parameters: json!({
                "type": "object",
                "properties": {"task_id": {"type": "string"}},
                "required": ["task_id"],
                "additionalProperties": false
            }),
        }
    }

    async fn call(&self, args: Value, _ctx: &ToolContext) -> ToolOutput {
        let delegator = match upgrade(&self.0) {
            Ok(d) => d,
            Err(out) => return out,
        };
        match string_arg(&args, "task_id") {
            Ok(id) => result(delegator.cancel_task(id)),
            Err(out) => out,
        }
    }
}

pub struct ListAgents(Weak<dyn Delegator>);

#[async_trait]
impl Tool for ListAgents {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "list_agents".into(),
            description: "The agents tasks can be delegated to, with what each does and its tools."
                .into(),
            parameters: json!({"type": "object", "properties": {}, "additionalProperties": false}),
        }
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn call(&self, _args: Value, _ctx: &ToolContext) -> ToolOutput {
        match upgrade(&self.0) {
            Ok(delegator) => ToolOutput::ok(delegator.list_agents()),
            Err(out) => out,
        }
    }
}

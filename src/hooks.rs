//! Hook points: where the engine lets plugins look at, reshape or stop what
//! it is about to do (DESIGN §7). The engine calls `Hooks`; the plugin host
//! implements it; until then `NoHooks` continues everywhere. This module
//! knows nothing of wasm: payloads are JSON, decisions are three words.

use async_trait::async_trait;
use serde_json::Value;

/// The hook points the engine calls today (the plugin contract names more;
/// they are added here as the engine calls them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPoint {
    /// Before each model request. Payload: `{session, agent, model,
    /// messages}` (`messages` as the provider-neutral JSON of
    /// `provider::Message`). `Modify` may return `{messages: [...]}` to
    /// reshape the context (this is where memory-gate works); `Block`
    /// fails the turn with the reason.
    PreModelRequest,
    /// Before a conversation is compacted. Payload: `{session, agent,
    /// reason, tokens, window}`. `Modify` may return `{instruction}` to
    /// change the summary instruction; `Block` skips this compaction.
    PreCompact,
    /// Before a tool runs, ahead of the permission check. Payload:
    /// `{session, agent, call, tool, args}`. `Modify` may return `{args: {...}}`
    /// to rewrite the arguments (permissions are then checked on the
    /// rewrite, never on the original); `Block` refuses the call.
    PreToolUse,
    /// After a tool ran. Payload: `{session, agent, call, tool, args,
    /// output, is-error}`. `Modify` may return `{output: "..."}` to rewrite
    /// what the model sees; `Block` withholds the output.
    PostToolUse,
}

impl HookPoint {
    /// The name in the plugin contract.
    pub fn name(self) -> &'static str {
        match self {
            HookPoint::PreModelRequest => "pre-model-request",
            HookPoint::PreCompact => "pre-compact",
            HookPoint::PreToolUse => "pre-tool-use",
            HookPoint::PostToolUse => "post-tool-use",
        }
    }
}

/// What a hook decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Go on unchanged.
    Continue,
    /// Go on with this JSON instead (its shape is the hook point's).
    Modify(Value),
    /// Do not do it, for this reason.
    Block(String),
}

/// Whoever answers hook calls (the plugin host, or nobody).
#[async_trait]
pub trait Hooks: Send + Sync {
    /// Whether anyone listens at `point`: the engine builds no payload for
    /// a point nobody listens to (a request's payload holds the whole
    /// conversation).
    fn wants(&self, point: HookPoint) -> bool;

    async fn call(&self, point: HookPoint, payload: Value) -> Decision;
}

/// No plugins: every hook continues.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

#[async_trait]
impl Hooks for NoHooks {
    fn wants(&self, _point: HookPoint) -> bool {
        false
    }

    async fn call(&self, _point: HookPoint, _payload: Value) -> Decision {
        Decision::Continue
    }
}

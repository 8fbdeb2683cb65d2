//! Search tools: glob and grep.
use async_trait::async_trait;
use serde_json::Value;

use super::{Tool, ToolContext, ToolOutput};
use crate::provider::ToolSpec;

macro_rules! placeholder {
    ($($ty:ident => $name:literal),*) => {$(
        pub struct $ty;
        #[async_trait]
        impl Tool for $ty {
            fn spec(&self) -> ToolSpec {
                ToolSpec { name: $name.into(), description: String::new(), parameters: serde_json::json!({"type":"object"}) }
            }
            async fn call(&self, _args: Value, _ctx: &ToolContext) -> ToolOutput {
                ToolOutput::error("placeholder")
            }
        }
    )*};
}
placeholder!(Glob => "glob", Grep => "grep");

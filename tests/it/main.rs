//! The one integration test binary: providers against loopback servers, tools
//! on real files and processes, and the real `orch` binary.

mod support;

mod provider_anthropic;
mod provider_openai;
mod tools;

//! Shared test fixtures.

pub mod http;
pub mod project;

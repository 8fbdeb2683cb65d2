//! Shared test fixtures.

pub mod http;

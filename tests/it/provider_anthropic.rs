//! Anthropic provider against a loopback server.

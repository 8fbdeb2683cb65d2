//! OpenAI-compatible provider against a loopback server.

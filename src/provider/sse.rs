//! Server-sent events: an incremental parser fed arbitrary byte chunks.

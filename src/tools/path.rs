//! Path safety: every path a tool touches resolves inside the project root.

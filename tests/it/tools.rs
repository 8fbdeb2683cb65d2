//! Built-in tools on real files and processes.

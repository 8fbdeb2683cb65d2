//! Small text statistics.

pub mod words;

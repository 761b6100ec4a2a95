//! loom model tests (added in the next commit).

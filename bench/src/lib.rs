//! Benchmark helpers shared by the criterion benches and the end-to-end harness.

pub mod duplex;
pub mod latency;

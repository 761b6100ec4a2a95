//! Atomics shim: `std` in normal builds, `loom` under `--cfg loom`.
//!
//! Everything in this crate that is shared between threads or processes goes
//! through these names, so the loom build model-checks the same algorithm that
//! the normal build runs.

#[cfg(loom)]
pub(crate) use loom::sync::Arc;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering, fence};

#[cfg(not(loom))]
pub(crate) use std::sync::Arc;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering, fence};

/// Busy-wait hint. Under loom this yields to the model scheduler so that spin
/// loops terminate in the model.
#[inline]
#[cfg_attr(
    loom,
    expect(dead_code, reason = "only the std-only blocking calls spin")
)]
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}

//! Test-only helpers shared by the crates' allocation tests (`tests/alloc.rs` in
//! xpgm-core, xpgm and xpgm-afxdp).
//!
//! [`CountingAlloc`] forwards to the system allocator and counts the allocations made
//! by the *current thread* while counting is switched on, so tests running in parallel
//! do not see each other's allocations. A test binary installs it with
//!
//! ```ignore
//! #[global_allocator]
//! static GLOBAL: xpgm_testutil::CountingAlloc = xpgm_testutil::CountingAlloc;
//! ```
//!
//! and measures with [`count`] (or [`set_counting`] + [`allocations`] when the
//! measured phase starts inside a loop).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// A global allocator that counts this thread's allocations while counting is on.
#[derive(Debug)]
pub struct CountingAlloc;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the thread-locals may be gone during thread teardown.
    if ON.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
    }
}

// SAFETY: every method forwards to `System`, which upholds the `GlobalAlloc` contract;
// the counting around it touches only const-initialised thread-locals.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Switches counting on or off for the current thread.
pub fn set_counting(on: bool) {
    ON.with(|c| c.set(on));
}

/// Allocations counted on the current thread so far.
pub fn allocations() -> u64 {
    ALLOCS.with(Cell::get)
}

/// Allocations made by the current thread while running `f`, and `f`'s result.
pub fn count<R>(f: impl FnOnce() -> R) -> (u64, R) {
    let before = allocations();
    set_counting(true);
    let r = f();
    set_counting(false);
    (allocations() - before, r)
}

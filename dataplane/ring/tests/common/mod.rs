//! Helpers shared by the integration tests.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A unique path under /dev/shm (or the temp dir) removed on drop.
#[derive(Debug)]
pub struct ShmPath(pub PathBuf);

impl ShmPath {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = dir.join(format!("xpgm-ring-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        ShmPath(p)
    }
}

impl Drop for ShmPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Iteration count from env var `name`, else `default`. Lets the valgrind run
/// shrink the work.
pub fn env_count(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Deterministic message content for `seq`: length 8..=max, first 8 bytes the
/// sequence number, the rest a function of (seq, index).
pub fn message(seq: u64, max: usize, out: &mut [u8]) -> usize {
    let span = (max - 8 + 1) as u64;
    let len = 8 + (seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as usize % span as usize;
    out[..8].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in out[8..len].iter_mut().enumerate() {
        *b = (seq as u8).wrapping_mul(31).wrapping_add(i as u8) ^ (seq >> 8) as u8;
    }
    len
}

/// Check that `bytes` is exactly `message(seq, ..)`.
pub fn check_message(seq: u64, max: usize, bytes: &[u8]) -> bool {
    let mut want = vec![0u8; max];
    let n = message(seq, max, &mut want);
    bytes == &want[..n]
}

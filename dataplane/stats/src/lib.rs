//! Per-session counters of xpgm data-plane processes, published in small shared-memory
//! files so that operators can watch every session on a host (`xpgmctl top`, xpgmd's
//! Prometheus endpoint) without talking to the processes.
//!
//! * [`StatsWriter`] (one per publisher or subscriber) creates
//!   `$XPGM_STATS_DIR/<pid>-<start>-<n>.stats` (default directory [`DEFAULT_DIR`]),
//!   maps it, writes the session description once, and then lets the worker store
//!   counters with relaxed atomic stores: no system call and no lock on the packet path.
//!   Dropping the writer removes the file.
//! * [`parse`] validates one file's bytes (they are untrusted: any process able to write
//!   the directory may have written them) and never panics; [`scan`] reads a whole
//!   directory, skips what is invalid or belongs to a dead process, and can remove the
//!   files of dead processes.
//! * [`rates`] turns two samples into per-second rates; [`prometheus`] renders the
//!   Prometheus text exposition format.
//!
//! The file layout is described in [`layout`] and in `docs/operations.md`.

pub mod layout;
mod prom;
mod reader;
mod writer;

pub use layout::{CounterDef, Kind, RECEIVER_COUNTERS, Role, SOURCE_COUNTERS};
pub use prom::prometheus;
pub use reader::{
    LineStats, ParseError, Scan, SessionStats, parse, pid_alive, proc_start_time, rates, scan,
};
pub use writer::{LineValues, SessionInfo, StatsWriter};

/// Environment variable overriding the stats directory.
pub const DIR_ENV: &str = "XPGM_STATS_DIR";
/// Stats directory used when [`DIR_ENV`] is unset or empty.
pub const DEFAULT_DIR: &str = "/dev/shm/xpgm-stats";

/// The stats directory: `$XPGM_STATS_DIR` if set and non-empty, else [`DEFAULT_DIR`].
pub fn stats_dir() -> std::path::PathBuf {
    match std::env::var_os(DIR_ENV) {
        Some(v) if !v.is_empty() => v.into(),
        _ => DEFAULT_DIR.into(),
    }
}

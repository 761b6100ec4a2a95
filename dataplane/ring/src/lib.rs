//! Lock-free single-writer, multi-reader message rings over private memory or
//! a shared file mapping (`/dev/shm`), for handing messages between the
//! application and the xpgm data-plane worker, within one process or across
//! processes.
//!
//! - One writer ([`Writer`]), many readers ([`Reader`]), each reader with its
//!   own cursor kept in a small reader table inside the region, so readers in
//!   other processes are visible to the writer.
//! - Fixed-size slots: `capacity` (power of two) slots of `max_msg` bytes;
//!   message `seq` lives in slot `seq % capacity`. Every slot carries a
//!   seqlock stamp naming the sequence number it holds, so every read —
//!   [`Reader::try_recv`] and the random-access [`Ring::read_at`] used for
//!   repairs — is validated and a concurrent overwrite is reported, never
//!   returned as torn data.
//! - [`Mode::Broadcast`]: the writer never waits; a lapped reader gets
//!   [`RecvError::Lapped`] with the exact number of messages it missed.
//!   [`Mode::BackPressure`]: the writer gets [`SendError::Full`] while the
//!   slowest registered reader is a whole ring behind.
//! - A header with magic, version and geometry lets a second process attach
//!   with [`Ring::open`] and fail clearly on any mismatch.
//!
//! The only `unsafe` code is in `region.rs` (viewing the mapping as atomics).
//! Under `--cfg loom` the atomics come from loom and only private rings
//! exist; see `docs/rings.md` for layout, orderings and the test matrix.

mod layout;
mod owner;
mod region;
mod ring;
mod sync;

#[cfg(all(test, loom))]
mod loom_tests;

pub use layout::{
    MAX_CAPACITY, MAX_MSG_LIMIT, MAX_READERS_LIMIT, MAX_REGION_BYTES, Mode, RingConfig,
};
pub use ring::{Reader, Reaped, Received, Ring, Writer};

/// Errors creating, attaching to or registering with a ring.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// The requested configuration is out of range.
    #[error("invalid ring config: {0}")]
    InvalidConfig(&'static str),
    /// Opening, sizing or mapping the ring file failed.
    #[error("ring file {}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The region does not start with the ring magic (not a ring, or not yet
    /// initialised by its creator).
    #[error("not an xpgm ring: magic {found:#018x}, expected {expected:#018x}")]
    BadMagic {
        /// Magic found.
        found: u64,
        /// Magic expected.
        expected: u64,
    },
    /// The region was written by a different layout version.
    #[error("ring layout version {found}, this build understands version {expected}")]
    VersionMismatch {
        /// Version found.
        found: u64,
        /// Version expected.
        expected: u64,
    },
    /// A geometry field differs from what this build or the caller expects.
    #[error("ring layout mismatch: {field} is {found} in the region, expected {expected}")]
    LayoutMismatch {
        /// Field name.
        field: &'static str,
        /// Value in the region.
        found: u64,
        /// Value expected.
        expected: u64,
    },
    /// The region is smaller than its header says.
    #[error("ring region is {len} bytes, layout needs {needed}")]
    TooSmall {
        /// Size found.
        len: usize,
        /// Size needed.
        needed: usize,
    },
    /// Every entry of the reader table is taken.
    #[error("ring reader table full: all {max} reader entries are registered")]
    ReaderTableFull {
        /// Table size.
        max: usize,
    },
    /// Another handle (maybe in another process) is the writer.
    #[error("ring already has a writer")]
    WriterBusy,
}

/// Errors from [`Writer::try_send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Back-pressure mode: the slowest registered reader is a full ring
    /// behind. Nothing was written; retry later.
    #[error("ring full: slowest reader is a whole ring behind")]
    Full,
    /// The message is larger than the ring's `max_msg`.
    #[error("message of {len} bytes exceeds ring max_msg {max}")]
    TooLarge {
        /// Message length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// `send_blocking` timed out while the ring stayed full.
    #[error("timed out waiting for ring space")]
    Timeout,
    /// Internal geometry check failed (cannot happen with a validated layout).
    #[error("ring slot geometry corrupt")]
    Corrupt,
}

/// Errors from [`Reader::try_recv`] and friends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// No message is committed past this reader's cursor.
    #[error("ring empty")]
    Empty,
    /// The writer overwrote `missed` messages before this reader read them.
    /// The cursor has been moved past them; nothing torn was returned.
    #[error("reader lapped: {missed} messages overwritten before they were read")]
    Lapped {
        /// Exact number of messages lost to this reader.
        missed: u64,
    },
    /// The message is longer than the buffer; the cursor did not move.
    #[error("buffer too small: message needs {needed} bytes")]
    BufferTooSmall {
        /// Message length.
        needed: usize,
    },
    /// `recv_blocking` timed out.
    #[error("timed out waiting for a message")]
    Timeout,
    /// A slot's contents are impossible (another process corrupted the
    /// shared region).
    #[error("ring slot corrupt")]
    Corrupt,
}

/// Errors from [`Ring::read_at`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadAtError {
    /// The message has not been committed yet.
    #[error("message not yet written")]
    NotYet,
    /// The slot now holds a later message (or is being overwritten).
    #[error("message overwritten")]
    Overwritten,
    /// The message is longer than the buffer.
    #[error("buffer too small: message needs {needed} bytes")]
    BufferTooSmall {
        /// Message length.
        needed: usize,
    },
    /// A slot's contents are impossible (another process corrupted the
    /// shared region).
    #[error("ring slot corrupt")]
    Corrupt,
}

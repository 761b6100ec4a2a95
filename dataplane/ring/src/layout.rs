//! Region layout: the header, the reader table and the slot array.
//!
//! ```text
//! offset 0                : Header        (repr(C), only AtomicU64 fields)
//! readers_off (aligned)   : [CachePadded<ReaderEntry>; max_readers]
//! slots_off   (aligned)   : [AtomicU64; capacity * stride_words]
//!                           slot i = [stamp, len, payload words ...]
//! ```
//!
//! Every field of every structure in the region is an `AtomicU64` (possibly
//! wrapped in `CachePadded`), so any bit pattern is a valid value and the
//! region can be shared with other processes that may write anything into it.
//! Values read from a shared region are validated once at attach time and the
//! validated copies in [`Layout`] are what the ring uses for all bounds.

use crossbeam_utils::CachePadded;

use crate::RingError;
use crate::sync::AtomicU64;

/// `b"XPGMRNG1"` read as a little-endian `u64`.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"XPGMRNG1");
/// Layout version; bump on any change to the structures in this module.
pub(crate) const VERSION: u64 = 1;

/// Largest message (slot payload) size accepted, in bytes.
pub const MAX_MSG_LIMIT: usize = 1 << 20;
/// Largest number of slots accepted.
pub const MAX_CAPACITY: usize = 1 << 24;
/// Largest reader table accepted.
pub const MAX_READERS_LIMIT: usize = 256;
/// Largest region accepted, in bytes (1 GiB).
pub const MAX_REGION_BYTES: usize = 1 << 30;

/// Words before the payload in each slot: `stamp`, `len`.
pub(crate) const SLOT_HEADER_WORDS: usize = 2;

/// Claim words (the writer claim and each reader entry's `state`) are
/// `generation << 2 | status`. The generation grows on every claim, so a
/// compare-exchange made on a stale view (e.g. by a reaper) cannot free an
/// entry that has since been claimed again.
pub(crate) mod claim {
    /// Status: free, may be claimed.
    pub(crate) const FREE: u64 = 0;
    /// Status: claimed, owner identity / cursor being set up.
    pub(crate) const CLAIMING: u64 = 1;
    /// Status: owned; for readers, the cursor is valid.
    pub(crate) const ACTIVE: u64 = 2;

    /// The status bits of a claim word.
    #[inline]
    pub(crate) const fn status(word: u64) -> u64 {
        word & 3
    }

    /// `word` with its status replaced.
    #[inline]
    pub(crate) const fn with_status(word: u64, status: u64) -> u64 {
        (word & !3) | status
    }

    /// The word a claimer installs over free `word`: next generation, CLAIMING.
    #[inline]
    pub(crate) const fn claiming(word: u64) -> u64 {
        (word & !3).wrapping_add(4) | CLAIMING
    }
}

/// The region header. Written once by the creator (magic last, Release);
/// afterwards only `writer` and `write_seq` change.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Header {
    /// [`MAGIC`]; stored last with Release by the creator, loaded with Acquire
    /// by attachers so that a non-zero magic implies the other fields are set.
    pub magic: AtomicU64,
    pub version: AtomicU64,
    pub capacity: AtomicU64,
    pub max_msg: AtomicU64,
    pub max_readers: AtomicU64,
    pub mode: AtomicU64,
    pub stride_words: AtomicU64,
    pub header_bytes: AtomicU64,
    pub entry_bytes: AtomicU64,
    pub total_bytes: AtomicU64,
    /// Writer claim word (see [`claim`]): claimed with CAS (Acquire),
    /// released with CAS (Release) by the owner or by a reaper that found the
    /// owner process dead.
    pub writer: AtomicU64,
    /// Writer owner's process id (diagnostics and reaping).
    pub writer_pid: AtomicU64,
    /// Writer owner's process start time (`/proc/<pid>/stat` field 22), so a
    /// reused pid is not mistaken for the owner.
    pub writer_start: AtomicU64,
    /// Next sequence number to be published = number of committed messages.
    /// Stored by the writer with Release after the slot's commit stamp;
    /// loaded by readers with Acquire.
    pub write_seq: CachePadded<AtomicU64>,
}

impl Header {
    pub(crate) fn new_zeroed() -> Self {
        Header {
            magic: AtomicU64::new(0),
            version: AtomicU64::new(0),
            capacity: AtomicU64::new(0),
            max_msg: AtomicU64::new(0),
            max_readers: AtomicU64::new(0),
            mode: AtomicU64::new(0),
            stride_words: AtomicU64::new(0),
            header_bytes: AtomicU64::new(0),
            entry_bytes: AtomicU64::new(0),
            total_bytes: AtomicU64::new(0),
            writer: AtomicU64::new(0),
            writer_pid: AtomicU64::new(0),
            writer_start: AtomicU64::new(0),
            write_seq: CachePadded::new(AtomicU64::new(0)),
        }
    }
}

/// One reader's registration. Each entry is `CachePadded` so readers do not
/// share cache lines with each other or with the header's `write_seq`.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct ReaderEntry {
    /// Claim word (see [`claim`]). Claimed with CAS (Acquire); `ACTIVE`
    /// stored with Release followed by a SeqCst fence, loaded by the writer's
    /// back-pressure scan after its own SeqCst fence (see `Ring::reader`);
    /// freed with CAS (Release).
    pub state: AtomicU64,
    /// Next sequence number this reader will read. Stored by the reader with
    /// Release after it has finished copying the previous slot, loaded by the
    /// writer with Acquire, so a gated overwrite happens after the copy.
    pub cursor: AtomicU64,
    /// Process id of the owner (0 while unknown).
    pub pid: AtomicU64,
    /// Owner's process start time, as for `Header::writer_start`.
    pub start: AtomicU64,
}

impl ReaderEntry {
    pub(crate) fn new_zeroed() -> Self {
        ReaderEntry {
            state: AtomicU64::new(claim::FREE),
            cursor: AtomicU64::new(0),
            pid: AtomicU64::new(0),
            start: AtomicU64::new(0),
        }
    }
}

/// Whether the writer may overwrite slots that registered readers have not
/// read yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The writer never waits; a reader that falls more than `capacity`
    /// messages behind gets [`crate::RecvError::Lapped`] with the exact count.
    /// Use for the delivery ring (one worker, many local consumers).
    Broadcast,
    /// The writer gets [`crate::SendError::Full`] when the slowest registered
    /// reader is `capacity` messages behind. Use for the publish ring (the
    /// application writes, the worker is the registered reader).
    BackPressure,
}

impl Mode {
    fn to_u64(self) -> u64 {
        match self {
            Mode::Broadcast => 1,
            Mode::BackPressure => 2,
        }
    }
    fn from_u64(v: u64) -> Option<Self> {
        match v {
            1 => Some(Mode::Broadcast),
            2 => Some(Mode::BackPressure),
            _ => None,
        }
    }
}

/// Ring geometry and mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingConfig {
    /// Number of slots (messages retained); a power of two, at least 2.
    pub capacity: usize,
    /// Largest message in bytes; the slot payload is this rounded up to a
    /// multiple of 8. At least 1, at most [`MAX_MSG_LIMIT`].
    pub max_msg: usize,
    /// Size of the reader table (1..=[`MAX_READERS_LIMIT`]).
    pub max_readers: usize,
    /// Broadcast or back-pressure.
    pub mode: Mode,
}

/// Validated geometry, derived from a [`RingConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub config: RingConfig,
    /// `capacity - 1`.
    pub mask: u64,
    /// Words per slot (header words + payload words).
    pub stride_words: usize,
    pub readers_off: usize,
    pub slots_off: usize,
    pub slot_words: usize,
    pub total_bytes: usize,
}

fn round_up(v: usize, align: usize) -> Option<usize> {
    v.checked_add(align - 1).map(|x| x / align * align)
}

impl Layout {
    pub(crate) fn header_bytes() -> usize {
        core::mem::size_of::<Header>()
    }
    pub(crate) fn entry_bytes() -> usize {
        core::mem::size_of::<CachePadded<ReaderEntry>>()
    }

    /// Validate `config` and compute the region layout.
    pub(crate) fn new(config: RingConfig) -> Result<Self, RingError> {
        let RingConfig {
            capacity,
            max_msg,
            max_readers,
            ..
        } = config;
        if !(2..=MAX_CAPACITY).contains(&capacity) || !capacity.is_power_of_two() {
            return Err(RingError::InvalidConfig(
                "capacity must be a power of two in 2..=2^24",
            ));
        }
        if !(1..=MAX_MSG_LIMIT).contains(&max_msg) {
            return Err(RingError::InvalidConfig("max_msg must be in 1..=2^20"));
        }
        if !(1..=MAX_READERS_LIMIT).contains(&max_readers) {
            return Err(RingError::InvalidConfig("max_readers must be in 1..=256"));
        }
        let too_big = || RingError::InvalidConfig("region would exceed 1 GiB");
        let stride_words = SLOT_HEADER_WORDS + max_msg.div_ceil(8);
        let slot_words = capacity.checked_mul(stride_words).ok_or_else(too_big)?;
        let entry_align = core::mem::align_of::<CachePadded<ReaderEntry>>().max(128);
        let readers_off = round_up(Self::header_bytes(), entry_align).ok_or_else(too_big)?;
        let readers_end = max_readers
            .checked_mul(Self::entry_bytes())
            .and_then(|b| b.checked_add(readers_off))
            .ok_or_else(too_big)?;
        let slots_off = round_up(readers_end, 128).ok_or_else(too_big)?;
        let total_bytes = slot_words
            .checked_mul(8)
            .and_then(|b| b.checked_add(slots_off))
            .ok_or_else(too_big)?;
        if total_bytes > MAX_REGION_BYTES {
            return Err(too_big());
        }
        Ok(Layout {
            config,
            mask: capacity as u64 - 1,
            stride_words,
            readers_off,
            slots_off,
            slot_words,
            total_bytes,
        })
    }

    /// Write the geometry into a zeroed header; `magic` goes last (Release).
    pub(crate) fn init_header(&self, h: &Header) {
        use crate::sync::Ordering::{Relaxed, Release};
        let c = &self.config;
        h.version.store(VERSION, Relaxed);
        h.capacity.store(c.capacity as u64, Relaxed);
        h.max_msg.store(c.max_msg as u64, Relaxed);
        h.max_readers.store(c.max_readers as u64, Relaxed);
        h.mode.store(c.mode.to_u64(), Relaxed);
        h.stride_words.store(self.stride_words as u64, Relaxed);
        h.header_bytes.store(Self::header_bytes() as u64, Relaxed);
        h.entry_bytes.store(Self::entry_bytes() as u64, Relaxed);
        h.total_bytes.store(self.total_bytes as u64, Relaxed);
        h.magic.store(MAGIC, Release);
    }

    /// Read and validate a header written by another process. `region_len`
    /// is the mapped size; `expect`, if given, must match exactly.
    #[cfg_attr(
        loom,
        expect(dead_code, reason = "only used when attaching to a mapping")
    )]
    pub(crate) fn from_header(
        h: &Header,
        region_len: usize,
        expect: Option<&RingConfig>,
    ) -> Result<Self, RingError> {
        use crate::sync::Ordering::{Acquire, Relaxed};
        let magic = h.magic.load(Acquire);
        if magic != MAGIC {
            return Err(RingError::BadMagic {
                found: magic,
                expected: MAGIC,
            });
        }
        let version = h.version.load(Relaxed);
        if version != VERSION {
            return Err(RingError::VersionMismatch {
                found: version,
                expected: VERSION,
            });
        }
        let check = |field: &'static str, found: u64, expected: u64| {
            if found == expected {
                Ok(())
            } else {
                Err(RingError::LayoutMismatch {
                    field,
                    found,
                    expected,
                })
            }
        };
        check(
            "header_bytes",
            h.header_bytes.load(Relaxed),
            Self::header_bytes() as u64,
        )?;
        check(
            "entry_bytes",
            h.entry_bytes.load(Relaxed),
            Self::entry_bytes() as u64,
        )?;
        let mode_raw = h.mode.load(Relaxed);
        let mode = Mode::from_u64(mode_raw).ok_or(RingError::LayoutMismatch {
            field: "mode",
            found: mode_raw,
            expected: 1,
        })?;
        let to_usize = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        let config = RingConfig {
            capacity: to_usize(h.capacity.load(Relaxed)),
            max_msg: to_usize(h.max_msg.load(Relaxed)),
            max_readers: to_usize(h.max_readers.load(Relaxed)),
            mode,
        };
        if let Some(e) = expect {
            check("capacity", config.capacity as u64, e.capacity as u64)?;
            check("max_msg", config.max_msg as u64, e.max_msg as u64)?;
            check(
                "max_readers",
                config.max_readers as u64,
                e.max_readers as u64,
            )?;
            check("mode", config.mode.to_u64(), e.mode.to_u64())?;
        }
        let layout = Self::new(config)?;
        check(
            "stride_words",
            h.stride_words.load(Relaxed),
            layout.stride_words as u64,
        )?;
        check(
            "total_bytes",
            h.total_bytes.load(Relaxed),
            layout.total_bytes as u64,
        )?;
        if region_len < layout.total_bytes {
            return Err(RingError::TooSmall {
                len: region_len,
                needed: layout.total_bytes,
            });
        }
        Ok(layout)
    }
}

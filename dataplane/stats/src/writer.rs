//! The writer side: one file per session, written by the data-plane worker.
//!
//! This module holds the crate's only `unsafe` block: viewing the mapped file as
//! `&[AtomicU64]`. Everything else (the reader, the renderers) is safe code over bytes.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};

use crate::layout::{
    COUNTERS, GROUP_FIELD, HEADER_WORDS, IFACE_FIELD, LINE_AREA, LINE_IFACE_FIELD, LINE_WORDS,
    LINES, MAGIC, Role, TOTAL_BYTES, TOTAL_WORDS, TRANSPORT_FIELD, VERSION, line, state, w,
};

/// One A/B line's counters, as [`StatsWriter::set_line`] stores them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineValues {
    /// Data packets that came on the line, duplicates included.
    pub received: u64,
    /// Sequences the line brought first.
    pub won: u64,
    /// Sequences the line missed.
    pub lost: u64,
    /// The engine counts the line as up.
    pub up: bool,
    /// Times the line's transport failed.
    pub failures: u64,
}

/// What a stats file says about its session (written once, at creation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// Source or receiver.
    pub role: Role,
    /// Transport name (`socket`, `xdp`).
    pub transport: String,
    /// Interface name.
    pub iface: String,
    /// Multicast group, as text.
    pub group: String,
    /// PGM data-destination port.
    pub dport: u16,
    /// UDP encapsulation port, if encapsulated.
    pub udp_encap: Option<u16>,
    /// TSI: GSI (6 bytes) then source port in network order. Receivers, which follow
    /// any number of sources, store zeros.
    pub tsi: [u8; 8],
}

/// Session numbers within this process (file names and the `session` label).
static NEXT_SEQ: AtomicU64 = AtomicU64::new(0);

/// The words of a stats file: a shared mapping, or heap memory when no file could be
/// created (the session still runs; it is just not visible to operators).
#[derive(Debug)]
enum Words {
    /// Invariants (established by [`StatsWriter::create`]): the mapping is at least
    /// [`TOTAL_BYTES`] long, page aligned, lives as long as the value, and is accessed
    /// only through atomics (no `&`/`&mut` to its bytes is ever made).
    Mapped(MmapRaw),
    Private(Box<[AtomicU64]>),
}

/// Publishes one session's counters. Stores are relaxed atomic stores into shared
/// memory: no system call, no lock. Dropping it marks the file closed and removes it.
#[derive(Debug)]
pub struct StatsWriter {
    words: Words,
    path: Option<PathBuf>,
    seq: u64,
}

/// Printable ASCII other than `"` and `\` (safe in Prometheus labels, JSON and a
/// terminal); anything else is replaced by `?`.
pub(crate) fn label_safe(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'
}

impl StatsWriter {
    /// Creates `<dir>/<pid>-<start>-<n>.stats` and writes the header. `dir` is created
    /// (mode 1777, like `/tmp`) if missing.
    pub fn create(dir: &Path, info: &SessionInfo) -> io::Result<StatsWriter> {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            // Any user's data-plane process may publish; the sticky bit keeps each
            // file removable only by its owner (and root).
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777));
        }
        // Never publish through a symlink someone planted in place of the directory.
        if !std::fs::symlink_metadata(dir)?.file_type().is_dir() {
            return Err(io::Error::other(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        let pid = std::process::id();
        let start = crate::reader::proc_start_time(pid)?;
        let seq = NEXT_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{pid}-{start}-{seq}.stats"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)?;
        let mapped = (|| {
            file.set_len(TOTAL_BYTES as u64)?;
            let map = MmapOptions::new().len(TOTAL_BYTES).map_raw(&file)?;
            if map.len() < TOTAL_BYTES
                || map
                    .as_ptr()
                    .align_offset(core::mem::align_of::<AtomicU64>())
                    != 0
            {
                return Err(io::Error::other("stats mapping too small or misaligned"));
            }
            Ok(map)
        })();
        let map = match mapped {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        let w = StatsWriter {
            words: Words::Mapped(map),
            path: Some(path),
            seq,
        };
        w.init(info, pid, start);
        Ok(w)
    }

    /// A writer over heap memory (no file): for sessions whose file could not be made.
    pub fn private(info: &SessionInfo) -> StatsWriter {
        let words = (0..TOTAL_WORDS).map(|_| AtomicU64::new(0)).collect();
        let pid = std::process::id();
        let w = StatsWriter {
            words: Words::Private(words),
            path: None,
            seq: NEXT_SEQ.fetch_add(1, Ordering::Relaxed),
        };
        w.init(info, pid, crate::reader::proc_start_time(pid).unwrap_or(0));
        w
    }

    /// A file in [`crate::stats_dir`], or, if that fails, [`StatsWriter::private`].
    pub fn open_default(info: &SessionInfo) -> StatsWriter {
        StatsWriter::create(&crate::stats_dir(), info)
            .unwrap_or_else(|_| StatsWriter::private(info))
    }

    fn words(&self) -> &[AtomicU64] {
        match &self.words {
            Words::Private(b) => b,
            Words::Mapped(m) => {
                // SAFETY: invariants of `Words::Mapped`: the mapping is at least
                // TOTAL_WORDS * 8 bytes, 8-byte aligned (checked at creation), alive for
                // the lifetime of `&self`, and only ever accessed through atomics, so
                // concurrent stores by other threads or processes are not data races and
                // every bit pattern is a valid `AtomicU64`. Truncating the file while it
                // is mapped would raise SIGBUS; only its owner can (docs/operations.md).
                unsafe {
                    core::slice::from_raw_parts(m.as_mut_ptr().cast::<AtomicU64>(), TOTAL_WORDS)
                }
            }
        }
    }

    fn put(&self, i: usize, v: u64, o: Ordering) {
        if let Some(x) = self.words().get(i) {
            x.store(v, o);
        }
    }

    fn put_text(&self, (first, n): (usize, usize), s: &str) {
        let mut buf = [0u8; 64];
        let cap = (n * 8).min(buf.len());
        for (d, b) in buf.iter_mut().take(cap).zip(s.bytes()) {
            *d = if label_safe(b) { b } else { b'?' };
        }
        for (k, chunk) in buf.chunks_exact(8).take(n).enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.put(first + k, u64::from_ne_bytes(word), Ordering::Relaxed);
        }
    }

    fn init(&self, info: &SessionInfo, pid: u32, start: u64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        self.put(w::MAGIC, MAGIC, Ordering::Relaxed);
        self.put(w::VERSION, VERSION, Ordering::Relaxed);
        self.put(w::TOTAL, TOTAL_WORDS as u64, Ordering::Relaxed);
        self.put(w::PID, u64::from(pid), Ordering::Relaxed);
        self.put(w::PROC_START, start, Ordering::Relaxed);
        self.put(w::CREATED, now, Ordering::Relaxed);
        self.put(w::ROLE, info.role.code(), Ordering::Relaxed);
        let ports = u64::from(info.dport)
            | info
                .udp_encap
                .map_or(0, |p| (u64::from(p) << 16) | (1 << 32));
        self.put(w::PORTS, ports, Ordering::Relaxed);
        self.put(w::TSI, u64::from_ne_bytes(info.tsi), Ordering::Relaxed);
        self.put(w::SEQ, self.seq, Ordering::Relaxed);
        self.put(
            w::NCOUNTERS,
            info.role.counters().len() as u64,
            Ordering::Relaxed,
        );
        self.put_text(TRANSPORT_FIELD, &info.transport);
        self.put_text(IFACE_FIELD, &info.iface);
        self.put_text(GROUP_FIELD, &info.group);
        // Publish: a reader that sees LIVE sees the header above.
        self.put(w::STATE, state::LIVE, Ordering::Release);
    }

    /// Sets counter `i` (an index from [`crate::layout::src`] / [`crate::layout::rcv`]);
    /// out-of-range indices are ignored. A relaxed store: no syscall, no lock.
    #[inline]
    pub fn set(&self, i: usize, v: u64) {
        if i < COUNTERS {
            self.put(HEADER_WORDS + i, v, Ordering::Relaxed);
        }
    }

    /// Reads counter `i` back (0 if out of range).
    pub fn get(&self, i: usize) -> u64 {
        if i >= COUNTERS {
            return 0;
        }
        self.words()
            .get(HEADER_WORDS + i)
            .map_or(0, |x| x.load(Ordering::Relaxed))
    }

    /// Publishes the session's A/B lines by interface name: 2 to [`LINES`] names
    /// (anything else publishes none; a session on one line has no line records).
    /// Names are stored before the count (with Release), so a reader that sees the
    /// count sees them.
    pub fn set_line_names(&self, names: &[&str]) {
        if !(2..=LINES).contains(&names.len()) {
            return;
        }
        for (l, name) in names.iter().enumerate() {
            let base = LINE_AREA + l * LINE_WORDS;
            self.put_text((base + LINE_IFACE_FIELD.0, LINE_IFACE_FIELD.1), name);
        }
        self.put(w::LINES, names.len() as u64, Ordering::Release);
    }

    /// Stores line `l`'s counters (ignored beyond [`LINES`]). Relaxed stores.
    #[inline]
    pub fn set_line(&self, l: usize, v: LineValues) {
        if l >= LINES {
            return;
        }
        let base = LINE_AREA + l * LINE_WORDS;
        self.put(base + line::RECEIVED, v.received, Ordering::Relaxed);
        self.put(base + line::WON, v.won, Ordering::Relaxed);
        self.put(base + line::LOST, v.lost, Ordering::Relaxed);
        self.put(base + line::UP, u64::from(v.up), Ordering::Relaxed);
        self.put(base + line::FAILURES, v.failures, Ordering::Relaxed);
    }

    /// Updates the TSI (a source learns it after the file exists in some setups).
    pub fn set_tsi(&self, tsi: [u8; 8]) {
        self.put(w::TSI, u64::from_ne_bytes(tsi), Ordering::Relaxed);
    }

    /// The file, if this writer has one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The whole region as bytes (a copy; for tests and in-process readers).
    pub fn snapshot_bytes(&self) -> [u8; TOTAL_BYTES] {
        let mut out = [0u8; TOTAL_BYTES];
        for (d, x) in out.chunks_exact_mut(8).zip(self.words()) {
            d.copy_from_slice(&x.load(Ordering::Acquire).to_ne_bytes());
        }
        out
    }
}

impl Drop for StatsWriter {
    fn drop(&mut self) {
        self.put(w::STATE, state::CLOSED, Ordering::Release);
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}

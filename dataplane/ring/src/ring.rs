//! The ring algorithm: safe code over the atomics of a [`Region`].

use core::fmt;

use crate::layout::{Header, Layout, Mode, ReaderEntry, RingConfig, claim};
use crate::region::Region;
use crate::sync::Ordering::{Acquire, Relaxed, Release, SeqCst};
use crate::sync::{Arc, AtomicU64, fence};
use crate::{ReadAtError, RecvError, RingError, SendError};

/// Stamp of a slot whose message `seq` is committed. 0 means "never written".
#[inline]
const fn committed(seq: u64) -> u64 {
    (seq + 1) << 1
}

/// Stamp of a slot while message `seq` is being written (odd).
#[inline]
const fn writing(seq: u64) -> u64 {
    committed(seq) | 1
}

/// Outcome of a validated slot read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotRead {
    /// `len` bytes copied; the stamp was `committed(seq)` before and after.
    Ok(usize),
    /// The slot holds (or is being overwritten by) a later message.
    Overwritten,
    /// The slot holds an earlier message: `seq` is not committed yet.
    NotYet,
    /// The message is valid but longer than the caller's buffer.
    TooSmall(usize),
    /// The slot's length word is impossible (foreign process wrote garbage).
    Corrupt,
}

pub(crate) struct Shared {
    region: Region,
    layout: Layout,
}

impl Shared {
    #[inline]
    fn header(&self) -> &Header {
        self.region.header()
    }

    #[inline]
    fn capacity(&self) -> u64 {
        self.layout.mask + 1
    }

    /// The slot that holds `seq`, split into stamp, length and payload.
    #[inline]
    fn slot(&self, seq: u64) -> Option<(&AtomicU64, &AtomicU64, &[AtomicU64])> {
        // `seq & mask < capacity`, so the product fits (checked in Layout).
        let idx = (seq & self.layout.mask) as usize;
        let start = idx * self.layout.stride_words;
        let words = self
            .region
            .slots()
            .get(start..start + self.layout.stride_words)?;
        match words {
            [stamp, len, payload @ ..] => Some((stamp, len, payload)),
            _ => None,
        }
    }

    /// Seqlock-validated copy of message `seq` into `buf`.
    fn read_slot(&self, seq: u64, buf: &mut [u8]) -> SlotRead {
        let Some((stamp, len_w, payload)) = self.slot(seq) else {
            return SlotRead::Corrupt;
        };
        let want = committed(seq);
        // Acquire pairs with the writer's Release commit store: the payload
        // written before it is visible to the loads below.
        let s1 = stamp.load(Acquire);
        if s1 != want {
            return if s1 > want {
                SlotRead::Overwritten
            } else {
                SlotRead::NotYet
            };
        }
        let len = usize::try_from(len_w.load(Relaxed)).unwrap_or(usize::MAX);
        let n = len.min(buf.len()).min(self.layout.config.max_msg);
        copy_out(payload, &mut buf[..n]);
        // Acquire fence: the payload loads above are ordered before the
        // re-check of the stamp. If a writer started overwriting (stored
        // `writing(..)` + Release fence before its payload stores), and we
        // read any of its payload, we will see its stamp here.
        fence(Acquire);
        let s2 = stamp.load(Relaxed);
        if s2 != s1 {
            return SlotRead::Overwritten;
        }
        if len > self.layout.config.max_msg {
            SlotRead::Corrupt
        } else if len > buf.len() {
            SlotRead::TooSmall(len)
        } else {
            SlotRead::Ok(len)
        }
    }
}

/// Copy payload words into `out` (little-endian bytes), as far as `out` goes.
#[inline]
fn copy_out(payload: &[AtomicU64], out: &mut [u8]) {
    let mut chunks = out.chunks_exact_mut(8);
    let mut words = payload.iter();
    for (chunk, w) in (&mut chunks).zip(&mut words) {
        chunk.copy_from_slice(&w.load(Relaxed).to_le_bytes());
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty()
        && let Some(w) = words.next()
    {
        let bytes = w.load(Relaxed).to_le_bytes();
        for (d, s) in rest.iter_mut().zip(bytes.iter()) {
            *d = *s;
        }
    }
}

/// Store `msg` into payload words (little-endian, last word zero-padded).
#[inline]
fn copy_in(payload: &[AtomicU64], msg: &[u8]) {
    let mut chunks = msg.chunks_exact(8);
    let mut words = payload.iter();
    for (chunk, w) in (&mut chunks).zip(&mut words) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        w.store(u64::from_le_bytes(b), Relaxed);
    }
    let rest = chunks.remainder();
    if !rest.is_empty()
        && let Some(w) = words.next()
    {
        let mut b = [0u8; 8];
        for (d, s) in b.iter_mut().zip(rest.iter()) {
            *d = *s;
        }
        w.store(u64::from_le_bytes(b), Relaxed);
    }
}

/// A handle to a ring. Cheap to clone; all clones share the region.
///
/// Use [`Ring::writer`] for the single writer, [`Ring::reader`] to register a
/// reader with its own cursor, and [`Ring::read_at`] for random access to a
/// committed message (the repair path).
#[derive(Clone)]
pub struct Ring {
    shared: Arc<Shared>,
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("config", &self.shared.layout.config)
            .field("write_seq", &self.write_seq())
            .finish_non_exhaustive()
    }
}

impl Ring {
    /// A ring in private (heap) memory, for use within one process.
    pub fn new(config: RingConfig) -> Result<Ring, RingError> {
        let layout = Layout::new(config)?;
        let region = Region::private(&layout);
        Ok(Ring {
            shared: Arc::new(Shared { region, layout }),
        })
    }

    /// Create a ring in a new shared file at `path` (typically under
    /// `/dev/shm`). Fails with [`RingError::Io`] (`AlreadyExists`) if the
    /// file exists; the creator owns the file and removes it when done.
    #[cfg(not(loom))]
    pub fn create(
        path: impl AsRef<std::path::Path>,
        config: RingConfig,
    ) -> Result<Ring, RingError> {
        let layout = Layout::new(config)?;
        let m = crate::region::mapped::Mapped::create(path.as_ref(), layout)?;
        Ok(Ring {
            shared: Arc::new(Shared {
                region: Region::Mapped(m),
                layout,
            }),
        })
    }

    /// Attach to a ring created by [`Ring::create`], possibly in another
    /// process. The header is validated (magic, version, sizes); if `expect`
    /// is given, the ring's configuration must equal it, otherwise a
    /// [`RingError::LayoutMismatch`] names the first differing field.
    #[cfg(not(loom))]
    pub fn open(
        path: impl AsRef<std::path::Path>,
        expect: Option<&RingConfig>,
    ) -> Result<Ring, RingError> {
        let m = crate::region::mapped::Mapped::open(path.as_ref(), expect)?;
        let layout = *m.layout();
        Ok(Ring {
            shared: Arc::new(Shared {
                region: Region::Mapped(m),
                layout,
            }),
        })
    }

    /// The file backing this ring, if it is a shared mapping.
    pub fn path(&self) -> Option<&std::path::Path> {
        match &self.shared.region {
            Region::Private { .. } => None,
            #[cfg(not(loom))]
            Region::Mapped(m) => m.path(),
        }
    }

    /// The ring's configuration.
    pub fn config(&self) -> RingConfig {
        self.shared.layout.config
    }

    /// Number of messages committed so far (= the next sequence number).
    pub fn write_seq(&self) -> u64 {
        self.shared.header().write_seq.load(Acquire)
    }

    /// Number of registered readers (a snapshot).
    pub fn reader_count(&self) -> usize {
        self.shared
            .region
            .readers()
            .iter()
            .filter(|e| claim::status(e.state.load(Acquire)) == claim::ACTIVE)
            .count()
    }

    /// Claim the ring's single writer. Fails with [`RingError::WriterBusy`]
    /// while another handle (in any process) holds it.
    pub fn writer(&self) -> Result<Writer, RingError> {
        let h = self.shared.header();
        let word = h.writer.load(Relaxed);
        if claim::status(word) != claim::FREE {
            return Err(RingError::WriterBusy);
        }
        let claimed = claim::claiming(word);
        h.writer
            .compare_exchange(word, claimed, Acquire, Relaxed)
            .map_err(|_| RingError::WriterBusy)?;
        let me = crate::owner::current();
        h.writer_pid.store(me.pid, Relaxed);
        h.writer_start.store(me.start, Relaxed);
        let active = claim::with_status(claimed, claim::ACTIVE);
        h.writer.store(active, Release);
        let next = h.write_seq.load(Acquire);
        let mut w = Writer {
            shared: self.shared.clone(),
            claim: active,
            next,
            cached_min: next,
        };
        w.cached_min = w.scan_min();
        Ok(w)
    }

    /// Register a reader in the region's reader table. The reader starts at
    /// the current write position: it receives messages committed after
    /// registration. Fails with [`RingError::ReaderTableFull`] when all
    /// `max_readers` entries are taken.
    pub fn reader(&self) -> Result<Reader, RingError> {
        let h = self.shared.header();
        let readers = self.shared.region.readers();
        for (index, e) in readers.iter().enumerate() {
            let word = e.state.load(Relaxed);
            if claim::status(word) != claim::FREE {
                continue;
            }
            let claimed = claim::claiming(word);
            if e.state
                .compare_exchange(word, claimed, Acquire, Relaxed)
                .is_err()
            {
                continue;
            }
            // Provisional cursor, publish ACTIVE, SeqCst fence, re-read the
            // head. Paired with the writer's (head store; SeqCst fence; state
            // loads) in `scan_min`, the two fences guarantee (store-buffering
            // / Dekker) that either the writer's scan sees this entry (with a
            // cursor <= our start, which only makes it more conservative), or
            // our re-read sees every message published before that scan —
            // and the writer writes at most `capacity` messages past a scan's
            // head before scanning again, so it cannot overwrite `start`
            // before it sees us.
            let provisional = h.write_seq.load(Acquire);
            e.cursor.store(provisional, Relaxed);
            let me = crate::owner::current();
            e.start.store(me.start, Relaxed);
            e.pid.store(me.pid, Relaxed);
            let active = claim::with_status(claimed, claim::ACTIVE);
            e.state.store(active, Release);
            fence(SeqCst);
            let start = h.write_seq.load(Acquire);
            e.cursor.store(start, Release);
            return Ok(Reader {
                shared: self.shared.clone(),
                index,
                claim: active,
                cursor: start,
            });
        }
        Err(RingError::ReaderTableFull { max: readers.len() })
    }

    /// Free the claims (reader entries and the writer) of processes that no
    /// longer exist, e.g. a consumer that crashed while registered. Returns
    /// how many reader entries and whether the writer claim were freed.
    ///
    /// Not called implicitly (it reads `/proc`); a supervising process or
    /// the back-pressured writer calls it when it sees `Full` persist.
    #[cfg(not(loom))]
    pub fn reap_dead_owners(&self) -> Reaped {
        use crate::owner::{Owner, is_dead};
        let mut reaped = Reaped::default();
        let free_if_dead = |word_atomic: &AtomicU64, pid: &AtomicU64, start: &AtomicU64| {
            let word = word_atomic.load(Acquire);
            if claim::status(word) == claim::FREE {
                return false;
            }
            let owner = Owner {
                pid: pid.load(Relaxed),
                start: start.load(Relaxed),
            };
            // If the entry was freed and claimed again since we loaded
            // `word`, its generation changed and the CAS fails.
            is_dead(owner)
                && word_atomic
                    .compare_exchange(
                        word,
                        claim::with_status(word, claim::FREE),
                        crate::sync::Ordering::AcqRel,
                        Relaxed,
                    )
                    .is_ok()
        };
        for e in self.shared.region.readers() {
            if free_if_dead(&e.state, &e.pid, &e.start) {
                reaped.readers += 1;
            }
        }
        let h = self.shared.header();
        reaped.writer = free_if_dead(&h.writer, &h.writer_pid, &h.writer_start);
        reaped
    }

    /// Copy committed message `seq` into `buf` and return its length.
    ///
    /// Lock-free random access for retransmission: the copy is validated
    /// seqlock-style, so a concurrent overwrite is reported as
    /// [`ReadAtError::Overwritten`], never returned as torn data.
    pub fn read_at(&self, seq: u64, buf: &mut [u8]) -> Result<usize, ReadAtError> {
        let s = &*self.shared;
        let head = s.header().write_seq.load(Acquire);
        if seq >= head {
            return Err(ReadAtError::NotYet);
        }
        if head - seq > s.capacity() {
            return Err(ReadAtError::Overwritten);
        }
        match s.read_slot(seq, buf) {
            SlotRead::Ok(n) => Ok(n),
            SlotRead::Overwritten => Err(ReadAtError::Overwritten),
            SlotRead::TooSmall(needed) => Err(ReadAtError::BufferTooSmall { needed }),
            // The head said `seq` was committed, so an older stamp means a
            // foreign process corrupted the slot.
            SlotRead::NotYet | SlotRead::Corrupt => Err(ReadAtError::Corrupt),
        }
    }
}

/// The single writer of a ring. Dropping it releases the claim.
pub struct Writer {
    shared: Arc<Shared>,
    /// Our claim word in the header.
    claim: u64,
    /// Next sequence number to write.
    next: u64,
    /// Back-pressure: a lower bound of every registered reader's cursor
    /// (and never above the head at the time of the scan).
    cached_min: u64,
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("next", &self.next)
            .field("cached_min", &self.cached_min)
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// Sequence number the next message will get.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// A handle to the ring (e.g. for [`Ring::read_at`]).
    pub fn ring(&self) -> Ring {
        Ring {
            shared: self.shared.clone(),
        }
    }

    /// Minimum cursor over active readers, capped at `self.next`.
    fn scan_min(&self) -> u64 {
        let mut min = self.next;
        // Pairs with the fence in `Ring::reader` (see there).
        fence(SeqCst);
        for e in self.shared.region.readers() {
            if claim::status(e.state.load(Acquire)) != claim::ACTIVE {
                continue;
            }
            // Acquire pairs with the reader's Release cursor store: its copy
            // of the slots before the cursor happened before our overwrite.
            let c = e.cursor.load(Acquire);
            min = min.min(c);
        }
        min
    }

    /// Append `msg`; returns its sequence number.
    ///
    /// Never blocks. In [`Mode::BackPressure`] returns [`SendError::Full`]
    /// when the slowest registered reader is `capacity` messages behind.
    pub fn try_send(&mut self, msg: &[u8]) -> Result<u64, SendError> {
        let s = &*self.shared;
        let max = s.layout.config.max_msg;
        if msg.len() > max {
            return Err(SendError::TooLarge {
                len: msg.len(),
                max,
            });
        }
        let seq = self.next;
        // Only reachable if a foreign process planted a huge `write_seq`.
        let after = seq.checked_add(1).ok_or(SendError::Corrupt)?;
        let gated = s.layout.config.mode == Mode::BackPressure;
        if gated && seq - self.cached_min >= s.capacity() {
            self.cached_min = self.scan_min();
            if seq - self.cached_min >= s.capacity() {
                return Err(SendError::Full);
            }
        }
        let (stamp, len_w, payload) = s.slot(seq).ok_or(SendError::Corrupt)?;
        // Seqlock write: odd stamp, Release fence (orders it before the
        // payload stores for readers that use an Acquire fence), payload,
        // then the even commit stamp with Release.
        stamp.store(writing(seq), Relaxed);
        fence(Release);
        len_w.store(msg.len() as u64, Relaxed);
        copy_in(payload, msg);
        stamp.store(committed(seq), Release);
        // Publish. Release: a reader that sees `seq + 1` sees the commit.
        s.header().write_seq.store(after, Release);
        self.next = after;
        Ok(seq)
    }

    /// Append `msg`, waiting while the ring is full (back-pressure mode):
    /// spin, then yield, then sleep with exponential back-off up to 1 ms.
    /// Returns [`SendError::Timeout`] if `timeout` passes first.
    #[cfg(not(loom))]
    pub fn send_blocking(
        &mut self,
        msg: &[u8],
        timeout: Option<std::time::Duration>,
    ) -> Result<u64, SendError> {
        let mut wait = Backoff::new(timeout);
        loop {
            match self.try_send(msg) {
                Err(SendError::Full) => {
                    if !wait.snooze() {
                        return Err(SendError::Timeout);
                    }
                }
                other => return other,
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // CAS, not a store: if a reaper wrongly freed us and someone else
        // claimed the writer since, leave their claim alone.
        let _ = self.shared.header().writer.compare_exchange(
            self.claim,
            claim::with_status(self.claim, claim::FREE),
            Release,
            Relaxed,
        );
    }
}

/// What [`Ring::reap_dead_owners`] freed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reaped {
    /// Reader entries freed.
    pub readers: usize,
    /// Whether the writer claim was freed.
    pub writer: bool,
}

/// A message received by [`Reader::try_recv`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Its sequence number.
    pub seq: u64,
    /// Its length in bytes (copied to the front of the caller's buffer).
    pub len: usize,
}

/// A registered reader with its own cursor. Dropping it frees its entry.
pub struct Reader {
    shared: Arc<Shared>,
    index: usize,
    /// Our claim word in the reader table.
    claim: u64,
    /// Next sequence number to read.
    cursor: u64,
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("index", &self.index)
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

impl Reader {
    /// Sequence number this reader will read next.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// A handle to the ring.
    pub fn ring(&self) -> Ring {
        Ring {
            shared: self.shared.clone(),
        }
    }

    fn entry(&self) -> Option<&ReaderEntry> {
        self.shared.region.readers().get(self.index).map(|e| &**e)
    }

    fn set_cursor(&mut self, c: u64) {
        self.cursor = c;
        if let Some(e) = self.entry() {
            // Release: our copies of slots below `c` happen before a gated
            // writer (Acquire load in `scan_min`) overwrites them.
            e.cursor.store(c, Release);
        }
    }

    /// Skip to `to` after being lapped; returns the error to report.
    fn lapped(&mut self, to: u64) -> RecvError {
        let missed = to - self.cursor;
        self.set_cursor(to);
        RecvError::Lapped { missed }
    }

    /// Receive the next message into `buf` without blocking.
    ///
    /// Errors: [`RecvError::Empty`] (nothing new), [`RecvError::Lapped`]
    /// (the writer overwrote `missed` messages this reader had not read; the
    /// cursor has moved past them and the next call continues from the
    /// oldest retained message), [`RecvError::BufferTooSmall`] (cursor not
    /// moved; call again with a larger buffer).
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<Received, RecvError> {
        let head = self.shared.header().write_seq.load(Acquire);
        self.recv_one(head, buf)
    }

    fn recv_one(&mut self, head: u64, buf: &mut [u8]) -> Result<Received, RecvError> {
        let c = self.cursor;
        if c >= head {
            return Err(RecvError::Empty);
        }
        let cap = self.shared.capacity();
        if head - c > cap {
            return Err(self.lapped(head - cap));
        }
        match self.shared.read_slot(c, buf) {
            SlotRead::Ok(len) => {
                self.set_cursor(c + 1);
                Ok(Received { seq: c, len })
            }
            SlotRead::Overwritten => {
                // Overwritten by message >= c + cap, so head >= c + cap.
                let head = self.shared.header().write_seq.load(Acquire);
                Err(self.lapped((c + 1).max(head.saturating_sub(cap))))
            }
            SlotRead::TooSmall(needed) => Err(RecvError::BufferTooSmall { needed }),
            SlotRead::NotYet | SlotRead::Corrupt => Err(RecvError::Corrupt),
        }
    }

    /// Receive up to `max` messages, calling `f(seq, bytes)` for each, with
    /// `buf` as the copy buffer (it must hold the ring's `max_msg`).
    ///
    /// Returns the number delivered. A lap or error met after at least one
    /// message is delivered ends the batch and is reported by the next call.
    pub fn recv_batch(
        &mut self,
        buf: &mut [u8],
        max: usize,
        mut f: impl FnMut(u64, &[u8]),
    ) -> Result<usize, RecvError> {
        let head = self.shared.header().write_seq.load(Acquire);
        let mut n = 0;
        while n < max {
            let before = self.cursor;
            match self.recv_one(head, buf) {
                Ok(r) => {
                    f(r.seq, buf.get(..r.len).unwrap_or_default());
                    n += 1;
                }
                Err(RecvError::Empty) => break,
                Err(e) if n == 0 => return Err(e),
                Err(_) => {
                    // A lap (or a too-small buffer) after some deliveries:
                    // leave the cursor where it was so that the next call
                    // reports it with its exact count.
                    self.set_cursor(before);
                    break;
                }
            }
        }
        Ok(n)
    }

    /// Receive the next message, waiting if there is none: spin, then yield,
    /// then sleep with exponential back-off up to 1 ms (no futex, so it works
    /// across processes without any kernel object). Returns
    /// [`RecvError::Timeout`] if `timeout` passes first.
    #[cfg(not(loom))]
    pub fn recv_blocking(
        &mut self,
        buf: &mut [u8],
        timeout: Option<std::time::Duration>,
    ) -> Result<Received, RecvError> {
        let mut wait = Backoff::new(timeout);
        loop {
            match self.try_recv(buf) {
                Err(RecvError::Empty) => {
                    if !wait.snooze() {
                        return Err(RecvError::Timeout);
                    }
                }
                other => return other,
            }
        }
    }

    /// How many committed messages this reader has not read yet (may exceed
    /// the capacity if it has been lapped).
    pub fn lag(&self) -> u64 {
        self.shared
            .header()
            .write_seq
            .load(Acquire)
            .saturating_sub(self.cursor)
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(e) = self.entry() {
            // CAS, as for the writer: never free someone else's entry.
            let _ = e.state.compare_exchange(
                self.claim,
                claim::with_status(self.claim, claim::FREE),
                Release,
                Relaxed,
            );
        }
    }
}

/// Spin → yield → sleep back-off for the blocking calls.
#[cfg(not(loom))]
struct Backoff {
    step: u32,
    sleep: std::time::Duration,
    deadline: Option<std::time::Instant>,
}

#[cfg(not(loom))]
impl Backoff {
    const SPINS: u32 = 64;
    const YIELDS: u32 = 16;
    const MAX_SLEEP: std::time::Duration = std::time::Duration::from_millis(1);

    fn new(timeout: Option<std::time::Duration>) -> Self {
        Backoff {
            step: 0,
            sleep: std::time::Duration::from_micros(20),
            deadline: timeout.map(|t| std::time::Instant::now() + t),
        }
    }

    /// Wait a little; false once the deadline has passed.
    fn snooze(&mut self) -> bool {
        if self
            .deadline
            .is_some_and(|d| std::time::Instant::now() >= d)
        {
            return false;
        }
        if self.step < Self::SPINS {
            crate::sync::spin_hint();
        } else if self.step < Self::SPINS + Self::YIELDS {
            std::thread::yield_now();
        } else {
            std::thread::sleep(self.sleep);
            self.sleep = (self.sleep * 2).min(Self::MAX_SLEEP);
        }
        self.step = self.step.saturating_add(1);
        true
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn copy_round_trips_every_length() {
        let words: Vec<AtomicU64> = (0..4).map(|_| AtomicU64::new(u64::MAX)).collect();
        for len in 0..=32usize {
            let msg: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
            copy_in(&words, &msg);
            let mut out = vec![0xeeu8; len];
            copy_out(&words, &mut out);
            assert_eq!(out, msg, "len {len}");
            // Short output buffers get a prefix.
            let mut short = vec![0u8; len / 2];
            copy_out(&words, &mut short);
            assert_eq!(short, msg[..len / 2]);
        }
    }

    #[test]
    fn stamps_order_and_parity() {
        assert_eq!(committed(0), 2);
        assert!(committed(5) < writing(5) && writing(5) < committed(6));
        assert_eq!(writing(7) & 1, 1);
        assert_eq!(committed(7) & 1, 0);
    }

    fn ring() -> Ring {
        Ring::new(RingConfig {
            capacity: 4,
            max_msg: 16,
            max_readers: 1,
            mode: Mode::Broadcast,
        })
        .unwrap()
    }

    /// Another process may scribble on a shared slot: impossible lengths or
    /// stamps are reported as `Corrupt`, never a panic or out-of-bounds copy.
    #[test]
    fn garbage_in_a_slot_is_reported_not_trusted() {
        let ring = ring();
        let mut w = ring.writer().unwrap();
        let mut r = ring.reader().unwrap();
        w.try_send(b"abc").unwrap();
        let (stamp, len, _) = ring.shared.slot(0).unwrap();
        len.store(u64::MAX, Relaxed);
        let mut buf = [0u8; 64];
        assert_eq!(ring.read_at(0, &mut buf), Err(ReadAtError::Corrupt));
        assert_eq!(r.try_recv(&mut buf), Err(RecvError::Corrupt));
        assert_eq!(r.cursor(), 0);
        // A stamp older than the head claims: corrupt, not "not yet".
        len.store(3, Relaxed);
        stamp.store(0, Relaxed);
        assert_eq!(ring.read_at(0, &mut buf), Err(ReadAtError::Corrupt));
        // A stamp from the future reads as overwritten.
        stamp.store(committed(4), Relaxed);
        assert_eq!(ring.read_at(0, &mut buf), Err(ReadAtError::Overwritten));
        assert_eq!(r.try_recv(&mut buf), Err(RecvError::Lapped { missed: 1 }));
    }

    /// A slot caught mid-write (odd stamp for a later message) is reported
    /// as overwritten; the reader's lap count covers the lost message.
    #[test]
    fn slot_being_overwritten_is_detected() {
        let ring = ring();
        let mut w = ring.writer().unwrap();
        let mut r = ring.reader().unwrap();
        w.try_send(b"m0").unwrap();
        let (stamp, _, _) = ring.shared.slot(0).unwrap();
        stamp.store(writing(4), Relaxed);
        let mut buf = [0u8; 16];
        assert_eq!(ring.read_at(0, &mut buf), Err(ReadAtError::Overwritten));
        assert_eq!(r.try_recv(&mut buf), Err(RecvError::Lapped { missed: 1 }));
        assert_eq!(r.try_recv(&mut buf), Err(RecvError::Empty));
    }

    #[test]
    fn batch_stops_before_a_lap_and_reports_it_next() {
        let ring = ring();
        let mut w = ring.writer().unwrap();
        let mut r = ring.reader().unwrap();
        for i in 0..3u8 {
            w.try_send(&[i]).unwrap();
        }
        // Simulate the writer having overwritten message 1 during the batch.
        let (stamp, _, _) = ring.shared.slot(1).unwrap();
        stamp.store(committed(5), Relaxed);
        let mut buf = [0u8; 16];
        let mut got = Vec::new();
        assert_eq!(
            r.recv_batch(&mut buf, 8, |s, b| got.push((s, b.to_vec()))),
            Ok(1)
        );
        assert_eq!(got, vec![(0, vec![0])]);
        assert_eq!(r.cursor(), 1);
        // head is 3, so only message 1 is known lost.
        assert_eq!(
            r.recv_batch(&mut buf, 8, |_, _| {}),
            Err(RecvError::Lapped { missed: 1 })
        );
        assert_eq!(r.recv_batch(&mut buf, 8, |s, _| assert_eq!(s, 2)), Ok(1));
    }
}

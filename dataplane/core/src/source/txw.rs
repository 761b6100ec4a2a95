//! The byte-packed transmit window.
//!
//! TSDUs are stored back to back in one byte ring (the arena, `txw_max_bytes` long), in
//! sequence order. A compact index of `txw_sqns` entries (16 bytes each, a power of two,
//! indexed by `sqn & mask`) records where each sequence's record starts, its TSDU length,
//! its flags and when it was first sent. A record that would cross the end of the arena
//! starts at the arena's beginning instead (the few bytes skipped are padding).
//!
//! Positions are virtual: `head` counts every byte ever placed (plus padding) and never
//! wraps in practice (u64); the physical offset is `pos % capacity`. The index keeps the
//! low 32 bits of a record's position, which is enough to recover the full position of
//! any record still in the window because no live record is more than `capacity`
//! (at most [`MAX_WINDOW_BYTES`](crate::config::MAX_WINDOW_BYTES) = 2^31) behind `head`.
//!
//! A fragment's record starts with its OPT_FRAGMENT fields (first sequence, offset, APDU
//! length, 4 bytes each, little endian), then the TSDU; an unfragmented TPDU's record is
//! just its TSDU, so a 64-byte message costs 64 arena bytes plus 16 index bytes.
//!
//! Both vectors are allocated (zeroed, so the OS maps pages only as they are first
//! touched) when the window is built and never again: placing and evicting records
//! allocate nothing. The window does not decide what to evict; [`Source`](super::Source)
//! moves its trail and asks [`TxWindow::pos`] where the oldest live record starts.

use crate::line::LineSet;
use crate::seq::Sqn;
use crate::time::Instant;
use crate::wire::Fragment;

/// Bytes of fragment header stored in front of a fragment's TSDU.
pub(crate) const FRAG_HEADER: usize = 12;

/// The record carries a fragment header.
const FLAG_FRAG: u64 = 1;
/// An RDATA for this sequence is queued and not yet sent.
const FLAG_REPAIR: u64 = 2;
/// An RDATA for this sequence went out less than `rdata_holdoff` ago.
const FLAG_RECENT: u64 = 4;
/// The lines whose NAKs asked for the queued RDATA: flag bits 3.. (one per line).
const LINES_SHIFT: u32 = 3;
const LINES_MASK: u64 = ((1 << crate::MAX_LINES) - 1) << LINES_SHIFT;

/// Byte-packed transmit window storage (see the module documentation).
#[derive(Debug)]
pub(crate) struct TxWindow {
    /// Per sequence: `[pos (low 32 bits) | tsdu len << 32 | flags << 48, sent_at nanos]`.
    index: Vec<[u64; 2]>,
    mask: u32,
    arena: Vec<u8>,
    /// Virtual position where the next record is placed.
    head: u64,
}

impl TxWindow {
    /// A window of `sqns` index entries (a power of two) and `bytes` of arena
    /// (`0 < bytes <= 2^31`, checked by `SourceConfig::validate`).
    pub(crate) fn new(sqns: u32, bytes: usize) -> Self {
        TxWindow {
            index: vec![[0; 2]; sqns as usize],
            mask: sqns.saturating_sub(1),
            arena: vec![0; bytes],
            head: 0,
        }
    }

    /// Arena capacity in bytes.
    pub(crate) fn capacity(&self) -> u64 {
        self.arena.len() as u64
    }

    /// Virtual position of the next record.
    pub(crate) fn head(&self) -> u64 {
        self.head
    }

    /// Arena bytes a record for `tsdu_len` bytes takes.
    pub(crate) fn record_len(tsdu_len: usize, frag: bool) -> u64 {
        tsdu_len as u64 + if frag { FRAG_HEADER as u64 } else { 0 }
    }

    /// Where a record of `len` bytes placed at or after virtual position `at` starts: at
    /// `at`, or at the next multiple of the capacity if it would cross the arena's end.
    pub(crate) fn place(&self, at: u64, len: u64) -> u64 {
        let cap = self.capacity().max(1);
        let phys = at % cap;
        if phys + len > cap {
            at + (cap - phys)
        } else {
            at
        }
    }

    fn entry(&self, sqn: Sqn) -> [u64; 2] {
        self.index
            .get((sqn.0 & self.mask) as usize)
            .copied()
            .unwrap_or([0; 2])
    }

    fn entry_mut(&mut self, sqn: Sqn) -> Option<&mut [u64; 2]> {
        self.index.get_mut((sqn.0 & self.mask) as usize)
    }

    /// Virtual position of `sqn`'s record (`sqn` must be in the window).
    pub(crate) fn pos(&self, sqn: Sqn) -> u64 {
        let low = self.entry(sqn)[0] as u32;
        let behind = (self.head as u32).wrapping_sub(low);
        self.head.saturating_sub(u64::from(behind))
    }

    fn len(&self, sqn: Sqn) -> usize {
        ((self.entry(sqn)[0] >> 32) & 0xffff) as usize
    }

    fn flags(&self, sqn: Sqn) -> u64 {
        self.entry(sqn)[0] >> 48
    }

    fn set_flag(&mut self, sqn: Sqn, flag: u64, on: bool) {
        if let Some(e) = self.entry_mut(sqn) {
            if on {
                e[0] |= flag << 48;
            } else {
                e[0] &= !(flag << 48);
            }
        }
    }

    /// Record bytes of `sqn` (header and TSDU), or empty if the index is inconsistent.
    fn record(&self, sqn: Sqn) -> &[u8] {
        let cap = self.capacity().max(1);
        let start = (self.pos(sqn) % cap) as usize;
        let frag = self.flags(sqn) & FLAG_FRAG != 0;
        let len = Self::record_len(self.len(sqn), frag) as usize;
        self.arena.get(start..start + len).unwrap_or(&[])
    }

    /// TSDU of `sqn`.
    pub(crate) fn tsdu(&self, sqn: Sqn) -> &[u8] {
        let rec = self.record(sqn);
        if self.flags(sqn) & FLAG_FRAG != 0 {
            rec.get(FRAG_HEADER..).unwrap_or(&[])
        } else {
            rec
        }
    }

    /// `sqn`'s APDU was fragmented.
    pub(crate) fn is_fragment(&self, sqn: Sqn) -> bool {
        self.flags(sqn) & FLAG_FRAG != 0
    }

    /// OPT_FRAGMENT of `sqn`, if its APDU was fragmented.
    pub(crate) fn fragment(&self, sqn: Sqn) -> Option<Fragment> {
        if self.flags(sqn) & FLAG_FRAG == 0 {
            return None;
        }
        let rec = self.record(sqn);
        let word = |i: usize| {
            rec.get(i..i + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_le_bytes)
        };
        Some(Fragment {
            first_sqn: Sqn(word(0)?),
            offset: word(4)?,
            apdu_len: word(8)?,
        })
    }

    /// Stores `tsdu` (with `frag`) as `sqn`'s record at the head. The caller has made
    /// room: the record's bytes hold no live record. `tsdu` is at most 65535 bytes.
    pub(crate) fn push(&mut self, sqn: Sqn, tsdu: &[u8], frag: Option<Fragment>) {
        let len = Self::record_len(tsdu.len(), frag.is_some());
        let at = self.place(self.head, len);
        let cap = self.capacity().max(1);
        let start = (at % cap) as usize;
        let mut flags = 0;
        let body = start + if frag.is_some() { FRAG_HEADER } else { 0 };
        if let Some(f) = frag {
            flags |= FLAG_FRAG;
            if let Some(h) = self.arena.get_mut(start..body) {
                h[0..4].copy_from_slice(&f.first_sqn.0.to_le_bytes());
                h[4..8].copy_from_slice(&f.offset.to_le_bytes());
                h[8..12].copy_from_slice(&f.apdu_len.to_le_bytes());
            }
        }
        if let Some(d) = self.arena.get_mut(body..body + tsdu.len()) {
            d.copy_from_slice(tsdu);
        }
        let tsdu_len = (tsdu.len() as u64).min(0xffff);
        if let Some(e) = self.entry_mut(sqn) {
            *e = [(at & 0xffff_ffff) | tsdu_len << 32 | flags << 48, 0];
        }
        self.head = at + len;
    }

    /// First transmission time of `sqn`.
    pub(crate) fn sent_at(&self, sqn: Sqn) -> Instant {
        Instant::from_nanos(self.entry(sqn)[1])
    }

    /// Records `sqn`'s first transmission.
    pub(crate) fn set_sent_at(&mut self, sqn: Sqn, at: Instant) {
        if let Some(e) = self.entry_mut(sqn) {
            e[1] = at.as_nanos();
        }
    }

    /// An RDATA for `sqn` is queued.
    pub(crate) fn repair_queued(&self, sqn: Sqn) -> bool {
        self.flags(sqn) & FLAG_REPAIR != 0
    }

    /// Marks or clears `sqn`'s queued RDATA (clearing also forgets its lines).
    pub(crate) fn set_repair_queued(&mut self, sqn: Sqn, on: bool) {
        self.set_flag(sqn, FLAG_REPAIR, on);
        if !on {
            self.set_flag(sqn, LINES_MASK, false);
        }
    }

    /// The lines whose NAKs asked for `sqn`'s queued RDATA.
    pub(crate) fn repair_lines(&self, sqn: Sqn) -> LineSet {
        let bits = (self.flags(sqn) & LINES_MASK) >> LINES_SHIFT;
        LineSet::ALL
            .iter()
            .filter(|&l| bits & (1 << l) != 0)
            .fold(LineSet::EMPTY, LineSet::with)
    }

    /// Adds `lines` to those `sqn`'s queued RDATA goes on.
    pub(crate) fn add_repair_lines(&mut self, sqn: Sqn, lines: LineSet) {
        self.set_flag(
            sqn,
            u64::from(lines.bits()) << LINES_SHIFT & LINES_MASK,
            true,
        );
    }

    /// An RDATA for `sqn` was sent within the hold-off.
    pub(crate) fn recently_repaired(&self, sqn: Sqn) -> bool {
        self.flags(sqn) & FLAG_RECENT != 0
    }

    /// Marks or clears `sqn`'s recent RDATA.
    pub(crate) fn set_recently_repaired(&mut self, sqn: Sqn, on: bool) {
        self.set_flag(sqn, FLAG_RECENT, on);
    }
}

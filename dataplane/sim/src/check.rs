//! What the application on each receiver checks, and how sequence numbers map back to
//! messages.
//!
//! Every message `i` is `size` bytes: its index as 8 big-endian bytes, then a pattern
//! derived from `i`, so any corruption, truncation or mix-up between messages is caught.
//!
//! The source may fragment a message into several TPDUs. The simulator records the
//! sequence number `send` returns for each message (its first TPDU); message `i` then
//! owns sequence numbers `[first(i), first(i+1))`, and the last message as many as the
//! one before it (all messages have the same size). An `Unrecoverable { first, count }`
//! event makes every not-yet-delivered message that owns at least one of those sequence
//! numbers unrecoverable: losing any fragment loses the whole message.

use xpgm_core::seq::Sqn;

/// Writes message `index` into `buf` (its whole length is the message).
pub fn fill_message(index: u64, buf: &mut [u8]) {
    let mut x = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for (j, b) in buf.iter_mut().enumerate() {
        *b = match j {
            0..8 => index.to_be_bytes()[j],
            _ => {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            }
        };
    }
}

/// True if `data` is exactly message `index` of `size` bytes.
pub fn message_intact(index: u64, size: usize, data: &[u8]) -> bool {
    if data.len() != size || data.get(..8) != Some(&index.to_be_bytes()[..]) {
        return false;
    }
    let mut x = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    data.iter().skip(8).all(|&b| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b == x as u8
    })
}

/// The first sequence number of every message sent so far.
#[derive(Clone, Debug, Default)]
pub struct MessageTable {
    base: Option<Sqn>,
    /// Offset of each message's first sqn from `base` (non-decreasing).
    offsets: Vec<u32>,
}

impl MessageTable {
    /// An empty table with room for `messages` entries.
    pub fn with_capacity(messages: usize) -> Self {
        MessageTable {
            base: None,
            offsets: Vec::with_capacity(messages),
        }
    }

    /// Records that the next message starts at `sqn`.
    pub fn push(&mut self, sqn: Sqn) {
        let base = *self.base.get_or_insert(sqn);
        self.offsets.push(sqn.0.wrapping_sub(base.0));
    }

    /// Messages recorded.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// No message recorded.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    fn offset(&self, sqn: Sqn) -> Option<i64> {
        self.base.map(|b| i64::from(sqn.distance(b)))
    }

    /// The first sequence number of message `i`.
    pub fn first_sqn(&self, i: usize) -> Option<Sqn> {
        Some(Sqn(self.base?.0.wrapping_add(*self.offsets.get(i)?)))
    }

    /// Index of the message whose first TPDU is `sqn`.
    pub fn message_starting_at(&self, sqn: Sqn) -> Option<usize> {
        let off = u32::try_from(self.offset(sqn)?).ok()?;
        // Messages have one size, so usually offset = index × TPDUs per message: try
        // that slot first (one memory access instead of a binary search).
        if let Some(&per) = self.offsets.get(1)
            && per > 0
        {
            let guess = (off / per) as usize;
            if self.offsets.get(guess) == Some(&off) {
                return Some(guess);
            }
        }
        self.offsets.binary_search(&off).ok()
    }

    /// End offset (exclusive) of message `i`.
    fn end(&self, i: usize) -> i64 {
        match (self.offsets.get(i + 1), self.offsets.get(i)) {
            (Some(&next), _) => i64::from(next),
            (None, Some(&start)) => {
                let per = match i.checked_sub(1).and_then(|p| self.offsets.get(p)) {
                    Some(&prev) => i64::from(start) - i64::from(prev),
                    None => 1 << 32,
                };
                i64::from(start) + per.max(1)
            }
            (None, None) => 0,
        }
    }

    /// Indices `a..=b` of the messages owning at least one sqn of
    /// `[first, first + count)`, if any.
    pub fn messages_in(&self, first: Sqn, count: u32) -> Option<(usize, usize)> {
        let lo = self.offset(first)?;
        let hi = lo + i64::from(count) - 1;
        if count == 0 || hi < 0 {
            return None;
        }
        let lo = lo.max(0);
        let containing = |off: i64| -> Option<usize> {
            let i = self
                .offsets
                .partition_point(|&o| i64::from(o) <= off)
                .checked_sub(1)?;
            (off < self.end(i)).then_some(i)
        };
        // None when `lo` is past every message.
        let a = containing(lo)?;
        let b = containing(hi).unwrap_or(self.offsets.len() - 1);
        Some((a, b))
    }
}

/// A fixed-size bit set.
#[derive(Clone, Debug, Default)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: u64) -> Self {
        Bits(vec![0; usize::try_from(n.div_ceil(64)).unwrap_or(0)])
    }
    fn get(&self, i: u64) -> bool {
        let w = usize::try_from(i / 64).ok().and_then(|w| self.0.get(w));
        w.is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
    fn set(&mut self, i: u64) {
        if let Some(w) = usize::try_from(i / 64).ok().and_then(|w| self.0.get_mut(w)) {
            *w |= 1 << (i % 64);
        }
    }
}

/// Per-receiver application checks.
#[derive(Clone, Debug, Default)]
pub struct Checker {
    size: usize,
    messages: u64,
    next: u64,
    delivered_set: Bits,
    lost_set: Bits,
    /// Messages delivered intact, once, whatever the order.
    pub delivered: u64,
    /// Messages reported unrecoverable (and not delivered before).
    pub unrecoverable: u64,
    /// Deliveries of a message already delivered.
    pub duplicates: u64,
    /// Deliveries of a message other than the next expected one (including a message
    /// delivered after being reported unrecoverable).
    pub out_of_order: u64,
    /// Messages before the receiver's first event (data or unrecoverable) that it never
    /// mentions: the receiver joined the stream after them ("late join"). Counted apart
    /// from `out_of_order`; they stay neither delivered nor unrecoverable.
    pub join_gap: u64,
    started: bool,
    /// Deliveries whose content, length or sequence number match no message.
    pub corrupt: u64,
    /// Sequence numbers reported unrecoverable (sum of `count`).
    pub unrecoverable_sqns: u64,
    /// `SessionEnd` seen.
    pub session_ended: bool,
    /// `PeerGone` seen.
    pub peer_gone: bool,
    /// Messages neither delivered nor reported unrecoverable when the peer expired:
    /// the receiver said everything after its last accounted sequence is lost or
    /// unknown (`PeerGone { last }`).
    pub tail_unknown: u64,
    /// Messages that `PeerGone { last }` claimed accounted for (at or before `last`)
    /// but that were neither delivered nor reported: an accounting hole.
    pub accounting_holes: u64,
    /// `SessionReset` events.
    pub resets: u64,
}

impl Checker {
    /// Checks for `messages` messages of `size` bytes.
    pub fn new(messages: u64, size: usize) -> Self {
        Checker {
            size,
            messages,
            delivered_set: Bits::new(messages),
            lost_set: Bits::new(messages),
            ..Checker::default()
        }
    }

    /// The first event concerns message `i`: everything before it is a join gap.
    fn join_at(&mut self, i: u64) {
        if !self.started {
            self.started = true;
            self.join_gap = i;
            self.next = i;
        }
    }

    /// One delivered APDU whose first TPDU is `sqn`.
    pub fn on_data(&mut self, table: &MessageTable, sqn: Sqn, data: &[u8]) {
        let Some(i) = table.message_starting_at(sqn) else {
            self.corrupt += 1;
            return;
        };
        let i = i as u64;
        if !message_intact(i, self.size, data) {
            self.corrupt += 1;
            return;
        }
        if self.delivered_set.get(i) {
            self.duplicates += 1;
            return;
        }
        self.join_at(i);
        self.delivered_set.set(i);
        if i != self.next || self.lost_set.get(i) {
            self.out_of_order += 1;
        }
        if self.lost_set.get(i) {
            return;
        }
        self.delivered += 1;
        self.next = self.next.max(i + 1);
    }

    /// The peer expired: messages after `last` (all of them if `None`) are lost or
    /// unknown. Every message not delivered or reported so far counts as such; one
    /// that starts at or before `last` is an accounting hole.
    pub fn on_peer_gone(&mut self, table: &MessageTable, last: Option<Sqn>) {
        self.peer_gone = true;
        let from = if self.started { self.next } else { 0 };
        for i in from..self.messages {
            if self.delivered_set.get(i) || self.lost_set.get(i) {
                continue;
            }
            self.lost_set.set(i);
            let claimed = match (last, table.first_sqn(i as usize)) {
                (Some(l), Some(s)) => s.le(l),
                _ => false,
            };
            if claimed {
                self.accounting_holes += 1;
            } else {
                self.tail_unknown += 1;
            }
        }
        self.started = true;
        self.next = self.messages;
    }

    /// `count` sequence numbers from `first` will never be delivered.
    pub fn on_unrecoverable(&mut self, table: &MessageTable, first: Sqn, count: u32) {
        self.unrecoverable_sqns += u64::from(count);
        let Some((a, b)) = table.messages_in(first, count) else {
            return;
        };
        self.join_at(a as u64);
        for i in a as u64..=b as u64 {
            if !self.delivered_set.get(i) && !self.lost_set.get(i) {
                self.lost_set.set(i);
                self.unrecoverable += 1;
            }
        }
        if self.next <= b as u64 {
            self.next = b as u64 + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_differ() {
        let mut a = [0u8; 40];
        let mut b = [0u8; 40];
        fill_message(7, &mut a);
        fill_message(8, &mut b);
        assert_eq!(&a[..8], &7u64.to_be_bytes());
        assert!(message_intact(7, 40, &a));
        assert!(!message_intact(8, 40, &a));
        assert!(!message_intact(7, 40, &a[..39]));
        assert_ne!(a[8..], b[8..]);
        a[30] ^= 1;
        assert!(!message_intact(7, 40, &a));
    }

    fn table(base: u32, per: u32, n: u32) -> MessageTable {
        let mut t = MessageTable::default();
        for i in 0..n {
            t.push(Sqn(base.wrapping_add(i * per)));
        }
        t
    }

    #[test]
    fn fragment_ranges_map_to_messages_across_wrap() {
        // 3 TPDUs per message, starting just before the sequence space wraps.
        let t = table(u32::MAX - 4, 3, 10);
        let s = |off: u32| Sqn((u32::MAX - 4).wrapping_add(off));
        assert_eq!(t.message_starting_at(s(6)), Some(2));
        assert_eq!(t.message_starting_at(s(7)), None);
        // One middle fragment of message 2.
        assert_eq!(t.messages_in(s(7), 1), Some((2, 2)));
        // From the last fragment of message 1 to the first of message 3.
        assert_eq!(t.messages_in(s(5), 5), Some((1, 3)));
        // Before the first message, overlapping it.
        assert_eq!(t.messages_in(s(0).sub(2), 3), Some((0, 0)));
        // Entirely before, and entirely after (last message ends at offset 30).
        assert_eq!(t.messages_in(s(0).sub(2), 2), None);
        assert_eq!(t.messages_in(s(30), 4), None);
        assert_eq!(t.messages_in(s(29), 4), Some((9, 9)));
    }

    #[test]
    fn checker_counts_each_kind_of_fault() {
        let t = table(100, 1, 6);
        let mut c = Checker::new(6, 16);
        let mut m = [0u8; 16];
        let mut deliver = |c: &mut Checker, i: u64| {
            fill_message(i, &mut m);
            c.on_data(&t, Sqn(100 + i as u32), &m);
        };
        deliver(&mut c, 0);
        deliver(&mut c, 0); // duplicate
        c.on_unrecoverable(&t, Sqn(101), 2); // messages 1 and 2
        deliver(&mut c, 4); // skips 3: out of order
        deliver(&mut c, 3); // late: out of order again
        deliver(&mut c, 2); // after unrecoverable: out of order, not delivered
        c.on_data(&t, Sqn(105), b"garbage"); // corrupt
        c.on_data(&t, Sqn(99), &m); // unknown sqn
        assert_eq!(c.delivered, 3);
        assert_eq!(c.unrecoverable, 2);
        assert_eq!(c.unrecoverable_sqns, 2);
        assert_eq!(c.duplicates, 1);
        assert_eq!(c.out_of_order, 3);
        assert_eq!(c.corrupt, 2);
        assert_eq!(c.join_gap, 0);
    }

    #[test]
    fn a_receiver_that_starts_later_has_a_join_gap_not_reordering() {
        let t = table(0, 1, 6);
        let mut c = Checker::new(6, 16);
        let mut m = [0u8; 16];
        for i in 2..6 {
            fill_message(i, &mut m);
            c.on_data(&t, Sqn(i as u32), &m);
        }
        assert_eq!((c.join_gap, c.delivered, c.out_of_order), (2, 4, 0));
        // Data for a message before the join point afterwards is out of order.
        fill_message(0, &mut m);
        c.on_data(&t, Sqn(0), &m);
        assert_eq!(c.out_of_order, 1);

        let mut c = Checker::new(6, 16);
        c.on_unrecoverable(&t, Sqn(1), 1);
        assert_eq!((c.join_gap, c.unrecoverable), (1, 1));
    }
}

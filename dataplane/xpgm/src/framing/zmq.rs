//! ZeroMQ's framing inside PGM (`pgm://` and `epgm://` transports of libzmq).
//!
//! libzmq's PGM sender runs ZMTP/1.0 ("v1") message framing as one byte stream and cuts
//! that stream into APDUs of at most one TSDU; each APDU starts with a 2-byte header:
//!
//! ```text
//! APDU    := offset:u16 BE | stream bytes
//!            offset = index, within the stream bytes of this APDU, of the first
//!            message that STARTS in it; 0xFFFF if none does (a long message's middle)
//! message := L:u8 (1 <= L < 255)            | flags:u8 | body (L - 1 bytes)
//!          | 0xFF | L:u64 BE (L >= 1)        | flags:u8 | body (L - 1 bytes)
//!            L counts the flags byte and the body; flags bit 0 = MORE (another part
//!            of the same multi-part message follows)
//! ```
//!
//! A receiver that joins late, or loses data for good, discards bytes until an APDU
//! whose offset is not 0xFFFF and resumes at that offset ([`Decoder::reset`]).
//!
//! libzmq's receiver requires every APDU to be a single TPDU (it asserts that
//! `pgm_msgv_t::msgv_len == 1`): a message longer than one TSDU must be cut into
//! several APDUs, never sent as one fragmented APDU. The encoder here writes each
//! message as [`parts`] APDUs of at most `max_apdu` bytes: the first with offset 0,
//! the others with 0xFFFF ([`encode_part`]); libzmq decodes them as one stream. The
//! decoder accepts libzmq's batched stream, messages split across APDUs included. Both are pure functions over bytes;
//! no input makes them panic, and the decoder's memory is bounded by `max_message`
//! (allocated once, at construction).
//!
//! With the library: [`ZmqSender`] sends framed messages through a
//! [`Publisher`](crate::Publisher); [`ZmqReceiver`] turns a
//! [`Subscriber`](crate::Subscriber)'s deliveries into messages, one decoder per sender.

use crate::{Delivery, Error, Publisher};
use xpgm_core::wire::Tsi;

/// Bytes of the per-APDU header (the offset of the first message start).
pub const APDU_HEADER: usize = 2;
/// Offset value meaning "no message starts in this APDU".
pub const NO_MESSAGE_START: u16 = 0xffff;
/// Flags bit: another part of the same message follows.
pub const FLAG_MORE: u8 = 1;
/// Longest short-form length byte value (L < 255); 0xFF escapes to a u64 length.
const LONG_ESCAPE: u8 = 0xff;

/// Bytes of the frame header (length and flags) for a body of `body_len` bytes.
pub fn frame_header_len(body_len: usize) -> usize {
    if body_len + 1 < usize::from(LONG_ESCAPE) {
        2
    } else {
        10
    }
}

/// Bytes of the APDU [`encode_apdu`] writes for a body of `body_len` bytes.
pub fn apdu_len(body_len: usize) -> usize {
    APDU_HEADER + frame_header_len(body_len) + body_len
}

/// Number of APDUs of at most `max_apdu` bytes that carry a body of `body_len` bytes
/// ([`encode_part`]); 0 if `max_apdu` leaves no room after the APDU header.
pub fn parts(body_len: usize, max_apdu: usize) -> usize {
    let chunk = max_apdu.saturating_sub(APDU_HEADER);
    if chunk == 0 {
        return 0;
    }
    (frame_header_len(body_len) + body_len).div_ceil(chunk)
}

/// Writes APDU number `part` (from 0, below [`parts`]) of a message into `out`: the
/// stream bytes `[part * c, (part + 1) * c)` of the framed message, `c = max_apdu - 2`,
/// behind the offset header (0 for part 0, [`NO_MESSAGE_START`] for the others).
/// Returns the APDU's length, or `None` if `part` is out of range or `out` too small.
pub fn encode_part(
    body: &[u8],
    more: bool,
    max_apdu: usize,
    part: usize,
    out: &mut [u8],
) -> Option<usize> {
    if part >= parts(body.len(), max_apdu) {
        return None;
    }
    let chunk = max_apdu - APDU_HEADER;
    let mut header = [0u8; 10];
    let hlen = frame_header_len(body.len());
    let l = (body.len() as u64).checked_add(1)?;
    let flags = if more { FLAG_MORE } else { 0 };
    if hlen == 2 {
        header[0] = l as u8;
        header[1] = flags;
    } else {
        header[0] = LONG_ESCAPE;
        header[1..9].copy_from_slice(&l.to_be_bytes());
        header[9] = flags;
    }
    let total = hlen + body.len();
    let lo = part.checked_mul(chunk)?;
    let hi = lo.checked_add(chunk)?.min(total);
    let len = APDU_HEADER + (hi - lo);
    let out = out.get_mut(..len)?;
    let offset = if part == 0 { 0 } else { NO_MESSAGE_START };
    out[..APDU_HEADER].copy_from_slice(&offset.to_be_bytes());
    let mut w = APDU_HEADER;
    // Header bytes of the stream that fall in [lo, hi), then body bytes.
    if lo < hlen {
        let h_hi = hi.min(hlen);
        out[w..w + (h_hi - lo)].copy_from_slice(&header[lo..h_hi]);
        w += h_hi - lo;
    }
    let b_lo = lo.max(hlen) - hlen;
    let b_hi = hi.max(hlen) - hlen;
    out[w..w + (b_hi - b_lo)].copy_from_slice(body.get(b_lo..b_hi)?);
    Some(len)
}

/// Writes one message as one ZeroMQ APDU into `out`: offset 0, frame header, body.
/// Returns the APDU's length, or `None` if `out` is too small.
pub fn encode_apdu(body: &[u8], more: bool, out: &mut [u8]) -> Option<usize> {
    let total = apdu_len(body.len());
    let out = out.get_mut(..total)?;
    let (head, rest) = out.split_at_mut(APDU_HEADER);
    head.copy_from_slice(&0u16.to_be_bytes());
    let l = (body.len() as u64).checked_add(1)?;
    let flags = if more { FLAG_MORE } else { 0 };
    let hlen = frame_header_len(body.len());
    let (fh, fbody) = rest.split_at_mut(hlen);
    if hlen == 2 {
        fh[0] = l as u8;
        fh[1] = flags;
    } else {
        fh[0] = LONG_ESCAPE;
        fh[1..9].copy_from_slice(&l.to_be_bytes());
        fh[9] = flags;
    }
    fbody.copy_from_slice(body);
    Some(total)
}

/// Where the decoder is within the message stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting the first length byte.
    Len,
    /// Collecting the 8 bytes of a long length.
    LongLen { got: u8, acc: u64 },
    /// Expecting the flags byte of a message of `l` (flags + body) bytes.
    Flags { l: u64 },
    /// Reading `remaining` body bytes of a message with these flags.
    Body { remaining: usize, flags: u8 },
}

/// Counters of a [`Decoder`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecoderStats {
    /// Messages delivered.
    pub messages: u64,
    /// Times the stream was found inconsistent (zero length, message longer than
    /// `max_message`, offset beyond the APDU) and decoding waited for the next
    /// message start.
    pub desyncs: u64,
    /// APDUs skipped while waiting for a message start.
    pub skipped_apdus: u64,
}

/// Stream decoder for the APDUs of one ZeroMQ PGM sender (one TSI).
#[derive(Debug)]
pub struct Decoder {
    state: State,
    /// False until an APDU with a message start was seen (and after [`Self::reset`]).
    synced: bool,
    /// Body of a message that spans APDUs; capacity `max_message`, never grown.
    partial: Vec<u8>,
    max_message: usize,
    stats: DecoderStats,
}

impl Decoder {
    /// A decoder that accepts message bodies up to `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        Decoder {
            state: State::Len,
            synced: false,
            partial: Vec::with_capacity(max_message),
            max_message,
            stats: DecoderStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> DecoderStats {
        self.stats
    }

    /// Forgets any partial message and waits for the next APDU with a message start:
    /// call it when the PGM layer reports unrecoverable loss for this sender.
    pub fn reset(&mut self) {
        self.state = State::Len;
        self.synced = false;
        self.partial.clear();
    }

    fn desync(&mut self) {
        self.stats.desyncs += 1;
        self.reset();
    }

    /// Decodes one APDU (in order, as delivered by PGM) and calls `on_message(body,
    /// more)` for each message completed by it.
    pub fn push<F: FnMut(&[u8], bool)>(&mut self, apdu: &[u8], mut on_message: F) {
        let Some((head, stream)) = apdu.split_first_chunk::<APDU_HEADER>() else {
            // Shorter than the header: nothing decodable, and the stream position is lost.
            if self.synced {
                self.desync();
            }
            self.stats.skipped_apdus += 1;
            return;
        };
        let offset = u16::from_be_bytes(*head);
        let mut pos = 0usize;
        if !self.synced {
            if offset == NO_MESSAGE_START || usize::from(offset) > stream.len() {
                self.stats.skipped_apdus += 1;
                return;
            }
            pos = usize::from(offset);
            self.synced = true;
            self.state = State::Len;
        }
        while pos < stream.len() {
            let Some(rest) = stream.get(pos..) else {
                break;
            };
            match self.state {
                State::Len => {
                    let b = rest[0];
                    pos += 1;
                    self.state = match b {
                        0 => {
                            self.desync();
                            return;
                        }
                        LONG_ESCAPE => State::LongLen { got: 0, acc: 0 },
                        l => State::Flags { l: u64::from(l) },
                    };
                }
                State::LongLen { got, acc } => {
                    let acc = (acc << 8) | u64::from(rest[0]);
                    pos += 1;
                    self.state = if got + 1 == 8 {
                        if acc == 0 {
                            self.desync();
                            return;
                        }
                        State::Flags { l: acc }
                    } else {
                        State::LongLen { got: got + 1, acc }
                    };
                }
                State::Flags { l } => {
                    let flags = rest[0];
                    pos += 1;
                    let body = l - 1;
                    if body > self.max_message as u64 {
                        self.desync();
                        return;
                    }
                    // Fits in usize: at most max_message.
                    let remaining = body as usize;
                    if remaining == 0 {
                        self.stats.messages += 1;
                        on_message(&[], flags & FLAG_MORE != 0);
                        self.state = State::Len;
                    } else {
                        self.state = State::Body { remaining, flags };
                    }
                }
                State::Body { remaining, flags } => {
                    let more = flags & FLAG_MORE != 0;
                    if self.partial.is_empty() && remaining <= rest.len() {
                        // Whole body in this APDU: deliver in place, no copy.
                        on_message(&rest[..remaining], more);
                        self.stats.messages += 1;
                        pos += remaining;
                        self.state = State::Len;
                    } else {
                        let take = remaining.min(rest.len());
                        self.partial.extend_from_slice(&rest[..take]);
                        pos += take;
                        let left = remaining - take;
                        if left == 0 {
                            on_message(&self.partial, more);
                            self.stats.messages += 1;
                            self.partial.clear();
                            self.state = State::Len;
                        } else {
                            self.state = State::Body {
                                remaining: left,
                                flags,
                            };
                        }
                    }
                }
            }
        }
    }
}

/// Sends ZeroMQ-framed messages: each message as [`parts`] single-TPDU APDUs.
#[derive(Debug)]
pub struct ZmqSender {
    apdu: Vec<u8>,
    max_apdu: usize,
}

impl ZmqSender {
    /// `max_apdu`: the largest APDU that fits one TPDU, e.g.
    /// `PublisherConfig::source.max_single_tsdu()` (ZeroMQ receivers reject fragmented
    /// APDUs). Allocates one buffer of that size.
    pub fn new(max_apdu: usize) -> Self {
        ZmqSender {
            apdu: vec![0u8; max_apdu],
            max_apdu,
        }
    }

    /// Frames `msg` (`more`: another part of the same ZeroMQ message follows) and hands
    /// each APDU to `send`, stopping at its first error.
    pub fn send_with<E>(
        &mut self,
        msg: &[u8],
        more: bool,
        mut send: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        for part in 0..parts(msg.len(), self.max_apdu) {
            if let Some(n) = encode_part(msg, more, self.max_apdu, part, &mut self.apdu) {
                send(&self.apdu[..n])?;
            }
        }
        Ok(())
    }

    /// Sends `msg` through `publisher` ([`Publisher::send`] per APDU).
    pub fn send(&mut self, publisher: &mut Publisher, msg: &[u8], more: bool) -> Result<(), Error> {
        if parts(msg.len(), self.max_apdu) == 0 {
            return Err(Error::TooLarge {
                len: msg.len(),
                max: 0,
            });
        }
        self.send_with(msg, more, |apdu| publisher.send(apdu))
    }
}

/// Decodes ZeroMQ framing from a subscriber's deliveries, one [`Decoder`] per sender
/// (TSI), at most `max_sources` at a time.
#[derive(Debug)]
pub struct ZmqReceiver {
    decoders: Vec<(Tsi, Decoder)>,
    max_message: usize,
    max_sources: usize,
    /// Desyncs of decoders already removed.
    past_desyncs: u64,
    dropped: u64,
}

impl ZmqReceiver {
    /// Accepts message bodies up to `max_message` bytes from up to `max_sources`
    /// senders (a decoder holds a `max_message` buffer, allocated when its sender is
    /// first heard).
    pub fn new(max_message: usize, max_sources: usize) -> Self {
        ZmqReceiver {
            decoders: Vec::with_capacity(max_sources),
            max_message,
            max_sources,
            past_desyncs: 0,
            dropped: 0,
        }
    }

    /// Desyncs over all decoders ([`DecoderStats::desyncs`]).
    pub fn desyncs(&self) -> u64 {
        self.past_desyncs
            + self
                .decoders
                .iter()
                .map(|(_, d)| d.stats().desyncs)
                .sum::<u64>()
    }

    /// APDUs dropped because `max_sources` senders were already tracked.
    pub fn dropped_apdus(&self) -> u64 {
        self.dropped
    }

    fn remove(&mut self, tsi: Tsi) {
        if let Some(i) = self.decoders.iter().position(|(t, _)| *t == tsi) {
            let (_, d) = self.decoders.swap_remove(i);
            self.past_desyncs += d.stats().desyncs;
        }
    }

    /// Feeds one delivery; calls `on_message(tsi, body, more)` for each message it
    /// completes. Unrecoverable loss or a session reset resynchronises that sender's
    /// stream; a session end or an expired peer forgets it.
    pub fn handle(
        &mut self,
        delivery: &Delivery<'_>,
        mut on_message: impl FnMut(Tsi, &[u8], bool),
    ) {
        match *delivery {
            Delivery::Data { tsi, data, .. } => {
                let i = match self.decoders.iter().position(|(t, _)| *t == tsi) {
                    Some(i) => i,
                    None if self.decoders.len() < self.max_sources => {
                        self.decoders.push((tsi, Decoder::new(self.max_message)));
                        self.decoders.len() - 1
                    }
                    None => {
                        self.dropped += 1;
                        return;
                    }
                };
                if let Some((_, d)) = self.decoders.get_mut(i) {
                    d.push(data, |m, more| on_message(tsi, m, more));
                }
            }
            Delivery::Unrecoverable { tsi, .. } | Delivery::SessionReset { tsi } => {
                if let Some((_, d)) = self.decoders.iter_mut().find(|(t, _)| *t == tsi) {
                    d.reset();
                }
            }
            Delivery::SessionEnd { tsi } | Delivery::PeerGone { tsi, .. } => self.remove(tsi),
            Delivery::NewPeer { .. } | Delivery::LineDown { .. } | Delivery::LineUp { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// libzmq-style sender: the v1 stream of `msgs`, cut into APDUs carrying at most
    /// `chunk` stream bytes, each with the offset of its first message start.
    fn zmq_apdus(msgs: &[(Vec<u8>, bool)], chunk: usize) -> Vec<Vec<u8>> {
        let mut stream = Vec::new();
        let mut starts = Vec::new();
        for (body, more) in msgs {
            starts.push(stream.len());
            let mut buf = vec![0u8; apdu_len(body.len())];
            let n = encode_apdu(body, *more, &mut buf).unwrap();
            stream.extend_from_slice(&buf[APDU_HEADER..n]);
        }
        let mut out = Vec::new();
        for (i, piece) in stream.chunks(chunk).enumerate() {
            let lo = i * chunk;
            let hi = lo + piece.len();
            let offset = starts
                .iter()
                .find(|&&s| s >= lo && s < hi)
                .map_or(NO_MESSAGE_START, |&s| (s - lo) as u16);
            let mut apdu = offset.to_be_bytes().to_vec();
            apdu.extend_from_slice(piece);
            out.push(apdu);
        }
        out
    }

    fn decode_all(dec: &mut Decoder, apdus: &[Vec<u8>]) -> Vec<(Vec<u8>, bool)> {
        let mut got = Vec::new();
        for a in apdus {
            dec.push(a, |m, more| got.push((m.to_vec(), more)));
        }
        got
    }

    #[test]
    fn short_message_has_the_documented_bytes() {
        let mut out = [0u8; 16];
        let n = encode_apdu(b"hi", false, &mut out).unwrap();
        assert_eq!(&out[..n], &[0, 0, 3, 0, b'h', b'i']);
        let n = encode_apdu(b"", true, &mut out).unwrap();
        assert_eq!(&out[..n], &[0, 0, 1, FLAG_MORE]);
    }

    #[test]
    fn long_message_uses_the_u64_length() {
        let body = vec![7u8; 254]; // L = 255: first value that needs the long form
        let mut out = vec![0u8; apdu_len(body.len())];
        let n = encode_apdu(&body, false, &mut out).unwrap();
        assert_eq!(n, 2 + 10 + 254);
        assert_eq!(out[2], 0xff);
        assert_eq!(u64::from_be_bytes(out[3..11].try_into().unwrap()), 255);
        assert_eq!(out[11], 0);
        let body = vec![7u8; 253]; // L = 254: still short
        assert_eq!(apdu_len(body.len()), 2 + 2 + 253);
    }

    #[test]
    fn encode_rejects_a_short_buffer() {
        let mut out = [0u8; 5];
        assert_eq!(encode_apdu(b"hi", false, &mut out), None);
    }

    #[test]
    fn late_joiner_skips_to_the_first_message_start() {
        let msgs: Vec<(Vec<u8>, bool)> = (0..20u8).map(|i| (vec![i; 100], false)).collect();
        let apdus = zmq_apdus(&msgs, 150);
        let mut dec = Decoder::new(1000);
        // Join at the third APDU: the first message starting there or later is whole.
        let got = decode_all(&mut dec, &apdus[2..]);
        let first = got.first().unwrap().0[0];
        let expect: Vec<_> = msgs[usize::from(first)..].to_vec();
        assert_eq!(got, expect);
        assert!(first >= 2);
    }

    #[test]
    fn reset_after_loss_resumes_at_a_message_start() {
        let msgs: Vec<(Vec<u8>, bool)> = (0..30u8).map(|i| (vec![i; 90], i % 3 == 0)).collect();
        let apdus = zmq_apdus(&msgs, 128);
        let mut dec = Decoder::new(1000);
        let mut got = Vec::new();
        for (i, a) in apdus.iter().enumerate() {
            if i == 5 {
                dec.reset(); // APDU 5 lost for good
                continue;
            }
            dec.push(a, |m, more| got.push((m.to_vec(), more)));
        }
        // Every delivered message is one that was sent, intact, in order.
        let mut next = 0;
        for g in &got {
            let pos = msgs[next..].iter().position(|m| m == g).unwrap();
            next += pos + 1;
        }
        assert!(got.len() < msgs.len() && got.len() >= msgs.len() - 3);
    }

    #[test]
    fn oversized_and_zero_length_frames_desync() {
        let mut dec = Decoder::new(10);
        let mut out = [0u8; 64];
        let n = encode_apdu(&[1u8; 11], false, &mut out).unwrap();
        let mut count = 0;
        dec.push(&out[..n], |_, _| count += 1);
        assert_eq!((count, dec.stats().desyncs), (0, 1));
        dec.push(&[0, 0, 0, 0], |_, _| count += 1);
        assert_eq!((count, dec.stats().desyncs), (0, 2));
        // Resynchronises on the next good APDU.
        let n = encode_apdu(b"ok", false, &mut out).unwrap();
        dec.push(&out[..n], |m, _| {
            assert_eq!(m, b"ok");
            count += 1
        });
        assert_eq!(count, 1);
    }

    #[test]
    fn long_message_is_cut_into_single_tpdu_apdus() {
        let body: Vec<u8> = (0..4000u32).map(|i| i as u8).collect();
        let n = parts(body.len(), 1400);
        assert_eq!(n, 3); // 10 + 4000 stream bytes in chunks of 1398
        let mut dec = Decoder::new(5000);
        let mut got = Vec::new();
        let mut buf = [0u8; 1400];
        for p in 0..n {
            let len = encode_part(&body, false, 1400, p, &mut buf).unwrap();
            assert!(len <= 1400);
            let offset = u16::from_be_bytes([buf[0], buf[1]]);
            assert_eq!(offset, if p == 0 { 0 } else { NO_MESSAGE_START });
            dec.push(&buf[..len], |m, _| got.push(m.to_vec()));
        }
        assert_eq!(got, vec![body.clone()]);
        assert_eq!(encode_part(&body, false, 1400, n, &mut buf), None);
        assert_eq!(parts(10, 2), 0);
    }

    fn tsi(n: u8) -> Tsi {
        Tsi {
            gsi: xpgm_core::wire::Gsi([n; 6]),
            sport: u16::from(n),
        }
    }

    #[test]
    fn sender_cuts_and_receiver_reassembles_per_source() {
        let mut tx = ZmqSender::new(1000);
        let a: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
        let b = b"short".to_vec();
        let (mut apdus_a, mut apdus_b) = (Vec::new(), Vec::new());
        tx.send_with(&a, true, |p| {
            apdus_a.push(p.to_vec());
            Ok::<(), ()>(())
        })
        .unwrap();
        tx.send_with(&b, false, |p| {
            apdus_b.push(p.to_vec());
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(apdus_a.len(), 3);
        assert!(apdus_a.iter().all(|p| p.len() <= 1000));
        let mut rx = ZmqReceiver::new(4000, 2);
        let mut got = Vec::new();
        // Interleave two senders: each stream is decoded on its own.
        for (i, p) in apdus_a.iter().enumerate() {
            let data = Delivery::Data {
                tsi: tsi(1),
                sqn: xpgm_core::Sqn(i as u32),
                data: p,
            };
            rx.handle(&data, |t, m, more| got.push((t, m.to_vec(), more)));
            let data = Delivery::Data {
                tsi: tsi(2),
                sqn: xpgm_core::Sqn(0),
                data: &apdus_b[0],
            };
            rx.handle(&data, |t, m, more| got.push((t, m.to_vec(), more)));
        }
        let from = |n: u8| -> Vec<_> {
            got.iter()
                .filter(|g| g.0 == tsi(n))
                .map(|g| (g.1.clone(), g.2))
                .collect()
        };
        assert_eq!(from(1), vec![(a.clone(), true)]);
        assert_eq!(from(2), vec![(b.clone(), false); 3]);
        // A third sender is over the bound: dropped, counted.
        let data = Delivery::Data {
            tsi: tsi(3),
            sqn: xpgm_core::Sqn(0),
            data: &apdus_b[0],
        };
        rx.handle(&data, |_, _, _| panic!("third source decoded"));
        assert_eq!(rx.dropped_apdus(), 1);
        // Loss in the middle of a long message: the rest of it is discarded, the next
        // message is whole.
        let loss = Delivery::Unrecoverable {
            tsi: tsi(1),
            first: xpgm_core::Sqn(0),
            count: 1,
        };
        let mut got = Vec::new();
        for (k, p) in apdus_a.iter().enumerate() {
            if k == 0 {
                rx.handle(&loss, |_, _, _| {});
                continue;
            }
            let data = Delivery::Data {
                tsi: tsi(1),
                sqn: xpgm_core::Sqn(0),
                data: p,
            };
            rx.handle(&data, |t, m, more| got.push((t, m.to_vec(), more)));
        }
        let data = Delivery::Data {
            tsi: tsi(1),
            sqn: xpgm_core::Sqn(0),
            data: &apdus_b[0],
        };
        rx.handle(&data, |t, m, more| got.push((t, m.to_vec(), more)));
        assert_eq!(got, vec![(tsi(1), b.clone(), false)]);
        assert_eq!(rx.desyncs(), 0);
    }

    proptest! {
        #[test]
        fn parts_concatenate_to_the_single_apdu_stream(
            body in proptest::collection::vec(any::<u8>(), 0..2000),
            more in any::<bool>(),
            max_apdu in 3usize..1600,
        ) {
            let mut whole = vec![0u8; apdu_len(body.len())];
            let n = encode_apdu(&body, more, &mut whole).unwrap();
            let mut stream = Vec::new();
            let mut buf = vec![0u8; max_apdu];
            for p in 0..parts(body.len(), max_apdu) {
                let len = encode_part(&body, more, max_apdu, p, &mut buf).unwrap();
                prop_assert!(len <= max_apdu && len > APDU_HEADER);
                stream.extend_from_slice(&buf[APDU_HEADER..len]);
            }
            prop_assert_eq!(&stream[..], &whole[APDU_HEADER..n]);
        }

        #[test]
        fn batched_stream_round_trips(
            msgs in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..600), any::<bool>()), 1..40),
            chunk in 1usize..1500,
        ) {
            let apdus = zmq_apdus(&msgs, chunk);
            let mut dec = Decoder::new(600);
            let got = decode_all(&mut dec, &apdus);
            prop_assert_eq!(got, msgs);
            prop_assert_eq!(dec.stats().desyncs, 0);
        }

        #[test]
        fn one_message_per_apdu_round_trips(
            msgs in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..3000), any::<bool>()), 1..20),
        ) {
            let mut dec = Decoder::new(3000);
            let mut got = Vec::new();
            for (body, more) in &msgs {
                let mut buf = vec![0u8; apdu_len(body.len())];
                let n = encode_apdu(body, *more, &mut buf).unwrap();
                dec.push(&buf[..n], |m, mr| got.push((m.to_vec(), mr)));
            }
            prop_assert_eq!(got, msgs);
        }

        /// Fuzz-style: arbitrary APDUs never panic and never yield more than the bound.
        #[test]
        fn arbitrary_bytes_never_panic(
            apdus in proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), 0..300), 0..30),
            max in 0usize..256,
            resets in proptest::collection::vec(any::<bool>(), 30),
        ) {
            let mut dec = Decoder::new(max);
            for (i, a) in apdus.iter().enumerate() {
                if resets[i] {
                    dec.reset();
                }
                dec.push(a, |m, _| assert!(m.len() <= max));
            }
            prop_assert!(dec.partial.capacity() >= max);
            prop_assert!(dec.partial.len() <= max);
        }
    }
}

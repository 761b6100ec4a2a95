//! What a [`crate::Subscriber`] yields, and its encoding in the delivery ring.
//!
//! A delivery is the receiver engine's [`Event`](xpgm_core::receiver::Event) itself: data (in order), unrecoverable
//! loss (`tsi`, `first`, `count`), new/gone peers, session end and reset. The worker
//! encodes each event into one ring message:
//!
//! ```text
//! [tag u8][gsi 6][sport u16 BE][a u32 BE][b u32 BE][payload...]
//! Data: a = sqn, b = 1 if the message was repaired (it, or its first TPDU, came as
//! RDATA), else 0; Unrecoverable: a = first, b = count; LineDown/LineUp: a = line
//! (TSI zero); others: a = b = 0
//! ```

use xpgm_core::Sqn;
use xpgm_core::wire::{Gsi, Tsi};

pub use xpgm_core::receiver::Event as Delivery;

/// Bytes before the payload.
pub const HEADER_LEN: usize = 17;

const DATA: u8 = 0;
const UNRECOVERABLE: u8 = 1;
const NEW_PEER: u8 = 2;
const PEER_GONE: u8 = 3;
const SESSION_END: u8 = 4;
const SESSION_RESET: u8 = 5;

/// Written by a receiver that shares its deliveries (see docs/afxdp.md) into the
/// shared ring when it closes: attached readers end with an error naming it. Never
/// produced by [`encode`]; [`decode`] rejects it.
const OWNER_CLOSED: u8 = 6;
const LINE_DOWN: u8 = 7;
const LINE_UP: u8 = 8;

/// The "owner closed" marker message.
pub(crate) const CLOSED_MARKER: [u8; HEADER_LEN] = {
    let mut m = [0u8; HEADER_LEN];
    m[0] = OWNER_CLOSED;
    m
};

/// Whether `bytes` is the "owner closed" marker.
pub(crate) fn is_closed_marker(bytes: &[u8]) -> bool {
    bytes.len() == HEADER_LEN && bytes.first() == Some(&OWNER_CLOSED)
}

/// The TSI field of receiver-wide events (lines).
const NO_TSI: Tsi = Tsi {
    gsi: Gsi([0; 6]),
    sport: 0,
};

/// Marks the Data delivery encoded in `msg` as repaired (`b = 1`).
pub(crate) fn mark_repaired(msg: &mut [u8]) {
    if msg.first() == Some(&DATA)
        && let Some(b) = msg.get_mut(13..17)
    {
        b.copy_from_slice(&1u32.to_be_bytes());
    }
}

/// Whether the encoded delivery `msg` is data that was repaired.
pub(crate) fn is_repaired(msg: &[u8]) -> bool {
    msg.first() == Some(&DATA) && msg.get(13..17) == Some(&1u32.to_be_bytes()[..])
}

/// Encodes `ev` into `out`; `None` if `out` is too small.
pub fn encode(ev: &Delivery<'_>, out: &mut [u8]) -> Option<usize> {
    let (tag, tsi, a, b, payload): (u8, Tsi, u32, u32, &[u8]) = match *ev {
        Delivery::Data { tsi, sqn, data } => (DATA, tsi, sqn.0, 0, data),
        Delivery::Unrecoverable { tsi, first, count } => (UNRECOVERABLE, tsi, first.0, count, &[]),
        Delivery::NewPeer { tsi } => (NEW_PEER, tsi, 0, 0, &[]),
        Delivery::PeerGone { tsi, last } => match last {
            Some(l) => (PEER_GONE, tsi, l.0, 1, &[]),
            None => (PEER_GONE, tsi, 0, 0, &[]),
        },
        Delivery::SessionEnd { tsi } => (SESSION_END, tsi, 0, 0, &[]),
        Delivery::SessionReset { tsi } => (SESSION_RESET, tsi, 0, 0, &[]),
        Delivery::LineDown { line } => (LINE_DOWN, NO_TSI, u32::from(line), 0, &[]),
        Delivery::LineUp { line } => (LINE_UP, NO_TSI, u32::from(line), 0, &[]),
    };
    let total = HEADER_LEN.checked_add(payload.len())?;
    let out = out.get_mut(..total)?;
    let (head, body) = out.split_at_mut(HEADER_LEN);
    head[0] = tag;
    head[1..7].copy_from_slice(&tsi.gsi.0);
    head[7..9].copy_from_slice(&tsi.sport.to_be_bytes());
    head[9..13].copy_from_slice(&a.to_be_bytes());
    head[13..17].copy_from_slice(&b.to_be_bytes());
    body.copy_from_slice(payload);
    Some(total)
}

/// Decodes a ring message written by [`encode`]; `None` if it is malformed.
pub fn decode(bytes: &[u8]) -> Option<Delivery<'_>> {
    let head: &[u8; HEADER_LEN] = bytes.get(..HEADER_LEN)?.try_into().ok()?;
    let payload = bytes.get(HEADER_LEN..)?;
    let mut gsi = [0u8; 6];
    gsi.copy_from_slice(&head[1..7]);
    let tsi = Tsi {
        gsi: Gsi(gsi),
        sport: u16::from_be_bytes([head[7], head[8]]),
    };
    let a = u32::from_be_bytes([head[9], head[10], head[11], head[12]]);
    let b = u32::from_be_bytes([head[13], head[14], head[15], head[16]]);
    Some(match head[0] {
        DATA => Delivery::Data {
            tsi,
            sqn: Sqn(a),
            data: payload,
        },
        UNRECOVERABLE => Delivery::Unrecoverable {
            tsi,
            first: Sqn(a),
            count: b,
        },
        NEW_PEER => Delivery::NewPeer { tsi },
        PEER_GONE => Delivery::PeerGone {
            tsi,
            last: match b {
                0 => None,
                1 => Some(Sqn(a)),
                _ => return None,
            },
        },
        SESSION_END => Delivery::SessionEnd { tsi },
        SESSION_RESET => Delivery::SessionReset { tsi },
        LINE_DOWN => Delivery::LineDown {
            line: u8::try_from(a).ok()?,
        },
        LINE_UP => Delivery::LineUp {
            line: u8::try_from(a).ok()?,
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tsi() -> Tsi {
        Tsi {
            gsi: Gsi([1, 2, 3, 4, 5, 6]),
            sport: 0xbeef,
        }
    }

    #[test]
    fn every_kind_round_trips() {
        let evs = [
            Delivery::Data {
                tsi: tsi(),
                sqn: Sqn(0xfffffffe),
                data: b"hello",
            },
            Delivery::Unrecoverable {
                tsi: tsi(),
                first: Sqn(7),
                count: 42,
            },
            Delivery::NewPeer { tsi: tsi() },
            Delivery::PeerGone {
                tsi: tsi(),
                last: None,
            },
            Delivery::PeerGone {
                tsi: tsi(),
                last: Some(Sqn(0xffff_fff0)),
            },
            Delivery::SessionEnd { tsi: tsi() },
            Delivery::SessionReset { tsi: tsi() },
            Delivery::LineDown { line: 1 },
            Delivery::LineUp { line: 3 },
        ];
        let mut buf = [0u8; 64];
        for ev in evs {
            let n = encode(&ev, &mut buf).expect("fits");
            assert_eq!(decode(&buf[..n]), Some(ev));
        }
    }

    #[test]
    fn closed_marker_is_not_a_delivery() {
        assert!(is_closed_marker(&CLOSED_MARKER));
        assert_eq!(decode(&CLOSED_MARKER), None);
        let mut buf = [0u8; 64];
        let n = encode(&Delivery::SessionEnd { tsi: tsi() }, &mut buf).expect("fits");
        assert!(!is_closed_marker(&buf[..n]));
        let mut longer = [0u8; HEADER_LEN + 1];
        longer[0] = CLOSED_MARKER[0];
        assert!(!is_closed_marker(&longer));
    }

    #[test]
    fn short_buffer_and_garbage_are_rejected() {
        let ev = Delivery::Data {
            tsi: tsi(),
            sqn: Sqn(1),
            data: &[9; 10],
        };
        let mut small = [0u8; HEADER_LEN + 9];
        assert_eq!(encode(&ev, &mut small), None);
        assert_eq!(decode(&[0u8; HEADER_LEN - 1]), None);
        let mut bad = [0u8; HEADER_LEN];
        bad[0] = 99;
        assert_eq!(decode(&bad), None);
    }
}

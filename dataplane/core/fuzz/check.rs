//! The decode fuzz target's invariants, shared with the corpus replay test
//! (`dataplane/core/tests/wire_fuzz_corpus.rs`). Panics when one is broken.

use xpgm_core::wire::framing::{Framing, pgm_payload_of_ipv4, pgm_payload_of_ipv6};
use xpgm_core::wire::{Body, Error, OptionIter, Packet, PacketRepr};

/// Runs every decoder over `data` and checks that whatever decodes re-encodes to a
/// packet that decodes to the same value.
pub fn check(data: &[u8]) {
    if let Ok(r) = PacketRepr::parse(data) {
        roundtrip(&r);
    }
    if let Ok(r) = PacketRepr::parse_unchecked(data) {
        roundtrip(&r);
    }
    if let Ok(p) = Packet::new_checked(data) {
        let _ = p.verify_checksum();
        let _ = (
            p.src_port(),
            p.dst_port(),
            p.gsi(),
            p.tsdu_len(),
            p.options(),
        );
        for skip in [0usize, 8, 12, 20, 24, 28, 32, 40, 44] {
            if let Ok(it) = OptionIter::new(p.body().get(skip..).unwrap_or(&[])) {
                let total = it.total_len();
                let mut seen = 4;
                for o in it {
                    match o {
                        Ok(o) => seen += o.wire_len(),
                        Err(_) => break,
                    }
                }
                assert!(seen <= total, "options overran OPT_LENGTH");
            }
        }
    }
    for framing in [Framing::RawIp, Framing::udp_default()] {
        if let Ok(p) = pgm_payload_of_ipv4(data, framing) {
            let pgm = p.pgm;
            assert!(pgm.len() <= data.len());
            // Accepted without a valid UDP checksum only on a valid PGM checksum.
            assert!(!p.udp_checksum_bad || xpgm_core::wire::checksum::verify(pgm));
            let _ = PacketRepr::parse(pgm);
        }
        if let Ok(p) = pgm_payload_of_ipv6(data, framing) {
            let pgm = p.pgm;
            assert!(pgm.len() <= data.len());
            // Accepted without a valid UDP checksum only on a valid PGM checksum.
            assert!(!p.udp_checksum_bad || xpgm_core::wire::checksum::verify(pgm));
            let _ = PacketRepr::parse(pgm);
        }
    }
}

fn roundtrip(r: &PacketRepr<'_>) {
    let mut buf = vec![0u8; r.buffer_len()];
    match r.emit(&mut buf) {
        Ok(n) => {
            assert_eq!(n, buf.len(), "emit length != buffer_len");
            let again = PacketRepr::parse(&buf).expect("re-emitted packet must parse");
            let mut want = *r;
            // Unknown options cannot be re-emitted.
            want.options.unknown_count = 0;
            want.options.unknown_types = [0; 4];
            assert_eq!(again, want, "emit/parse is not the identity");
        }
        Err(e) => {
            assert_eq!(e, Error::Unencodable);
            assert!(matches!(r.body, Body::Ack(_)), "only ACK is unencodable");
        }
    }
}

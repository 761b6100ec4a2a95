//! The Internet checksum (RFC 1071) as PGM, IPv4 and UDP use it.
//!
//! [`sum`] is the ones-complement sum of a byte string read as big-endian 16-bit words (a
//! trailing odd byte is padded with a zero), folded to 16 bits. [`checksum`] is the value
//! to write into a checksum field that was zero while summing: the ones-complement of
//! the sum. Partial sums over pieces at even offsets combine with [`combine`], which is
//! how the pseudo-header of UDP and the payload of a data packet are added.
//!
//! The loop reads eight bytes at a time into a 64-bit accumulator (two 32-bit halves per
//! step, so the accumulator cannot overflow for any slice that fits in memory) and folds
//! once at the end.

//= https://www.rfc-editor.org/rfc/rfc3208#section-8
//# Checksum: This field is the usual 1's complement of the 1's complement sum of the
//# entire PGM packet including header.

/// Ones-complement sum of `bytes` (big-endian 16-bit words, odd tail zero-padded),
/// folded to 16 bits. Not inverted.
pub fn sum(bytes: &[u8]) -> u16 {
    fold(accumulate(bytes, 0))
}

/// The checksum of `bytes`: `!sum(bytes)`. Compute it with the checksum field zeroed.
pub fn checksum(bytes: &[u8]) -> u16 {
    !sum(bytes)
}

/// Adds two folded ones-complement sums (of pieces that each start at an even offset).
pub fn combine(a: u16, b: u16) -> u16 {
    fold(u64::from(a) + u64::from(b))
}

/// True when `bytes`, checksum field included, sums to all ones (a valid checksum).
pub fn verify(bytes: &[u8]) -> bool {
    sum(bytes) == 0xffff
}

fn accumulate(bytes: &[u8], mut acc: u64) -> u64 {
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        acc += (w >> 32) + (w & 0xffff_ffff);
    }
    let mut words = chunks.remainder().chunks_exact(2);
    for w in &mut words {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    // The loop leaves at most 16 bits.
    u16::try_from(acc).unwrap_or(0xffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward RFC 1071 reference: 16 bits at a time.
    fn reference(bytes: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        let mut i = 0;
        while i < bytes.len() {
            let hi = u32::from(bytes[i]) << 8;
            let lo = bytes.get(i + 1).map_or(0, |b| u32::from(*b));
            acc += hi | lo;
            acc = (acc & 0xffff) + (acc >> 16);
            i += 2;
        }
        acc as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let b = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&b), 0xddf2);
        assert_eq!(checksum(&b), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }

    #[test]
    fn matches_reference_on_many_lengths() {
        let data: Vec<u8> = (0..300u32)
            .map(|i| (i.wrapping_mul(197) ^ 0x5a) as u8)
            .collect();
        for n in 0..data.len() {
            assert_eq!(sum(&data[..n]), reference(&data[..n]), "len {n}");
        }
        let ones = [0xffu8; 67];
        assert_eq!(sum(&ones), reference(&ones));
    }

    #[test]
    fn combine_equals_whole() {
        let data: Vec<u8> = (0..101u32).map(|i| (i * 7 + 3) as u8).collect();
        for split in (0..data.len()).step_by(2) {
            let (a, b) = data.split_at(split);
            assert_eq!(combine(sum(a), sum(b)), sum(&data));
        }
    }

    #[test]
    fn verify_accepts_filled_and_rejects_changed() {
        let mut p = [0x12, 0x34, 0, 0, 0x9a, 0xbc, 0xde];
        let c = checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
        assert!(verify(&p));
        p[6] ^= 1;
        assert!(!verify(&p));
    }
}

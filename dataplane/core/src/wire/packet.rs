//! Zero-copy view of the fixed PGM header (smoltcp style).

use super::{Error, Gsi, HEADER_LEN, checksum, ty};

/// Byte ranges of the fixed header (RFC 3208 section 8).
mod field {
    use core::ops::Range;

    pub(super) const SPORT: Range<usize> = 0..2;
    pub(super) const DPORT: Range<usize> = 2..4;
    pub(super) const TYPE: usize = 4;
    pub(super) const OPTIONS: usize = 5;
    pub(super) const CHECKSUM: Range<usize> = 6..8;
    pub(super) const GSI: Range<usize> = 8..14;
    pub(super) const TSDU_LEN: Range<usize> = 14..16;
}

/// A read/write view of a PGM packet in a buffer. [`Packet::new_checked`] ensures the
/// buffer holds at least the 16-byte header, after which no getter or setter can panic.
/// The view spans the whole buffer: the checksum covers all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking its length (getters then return zeroes for
    /// missing bytes rather than panicking).
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps `buffer` if it holds at least a PGM header.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Packet { buffer };
        p.check_len()?;
        Ok(p)
    }

    /// [`Error::Truncated`] when shorter than the fixed header.
    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn bytes<const N: usize>(&self, start: usize) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(s) = self.buffer.as_ref().get(start..start + N) {
            out.copy_from_slice(s);
        }
        out
    }

    fn byte(&self, at: usize) -> u8 {
        self.buffer.as_ref().get(at).copied().unwrap_or(0)
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        u16::from_be_bytes(self.bytes(field::SPORT.start))
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        u16::from_be_bytes(self.bytes(field::DPORT.start))
    }

    /// Raw type byte (see [`super::ty`]).
    pub fn packet_type(&self) -> u8 {
        self.byte(field::TYPE)
    }

    /// Raw options byte (see [`super::flags`]).
    pub fn options(&self) -> u8 {
        self.byte(field::OPTIONS)
    }

    /// Checksum field (0 = none transmitted).
    pub fn checksum(&self) -> u16 {
        u16::from_be_bytes(self.bytes(field::CHECKSUM.start))
    }

    /// Global source identifier.
    pub fn gsi(&self) -> Gsi {
        Gsi(self.bytes(field::GSI.start))
    }

    /// TSDU length field.
    pub fn tsdu_len(&self) -> u16 {
        u16::from_be_bytes(self.bytes(field::TSDU_LEN.start))
    }

    /// Type-specific data, options and payload: everything after the fixed header.
    pub fn body(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or(&[])
    }

    /// The whole packet.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// True when the checksum field is zero (the sender computed no checksum).
    pub fn checksum_absent(&self) -> bool {
        self.checksum() == 0
    }

    /// Checks the checksum under xpgm's policy (see `docs/wire.md`): a zero field means
    /// "no checksum" and is accepted for every type except ODATA and RDATA; otherwise the
    /// ones-complement sum over the whole packet must be all ones.
    pub fn verify_checksum(&self) -> bool {
        if self.checksum_absent() {
            //= https://www.rfc-editor.org/rfc/rfc3208#section-8
            //# A value of zero in this field means the transmitter generated no
            //# checksum.
            // OpenPGM (packet_parse.c) makes the checksum mandatory for ODATA/RDATA.
            return !matches!(self.packet_type(), ty::ODATA | ty::RDATA);
        }
        checksum::verify(self.as_bytes())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn put(&mut self, start: usize, src: &[u8]) {
        if let Some(d) = self.buffer.as_mut().get_mut(start..start + src.len()) {
            d.copy_from_slice(src);
        }
    }

    /// Sets the source port.
    pub fn set_src_port(&mut self, v: u16) {
        self.put(field::SPORT.start, &v.to_be_bytes());
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, v: u16) {
        self.put(field::DPORT.start, &v.to_be_bytes());
    }

    /// Sets the type byte.
    pub fn set_packet_type(&mut self, v: u8) {
        self.put(field::TYPE, &[v]);
    }

    /// Sets the options byte.
    pub fn set_options(&mut self, v: u8) {
        self.put(field::OPTIONS, &[v]);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        self.put(field::CHECKSUM.start, &v.to_be_bytes());
    }

    /// Sets the GSI.
    pub fn set_gsi(&mut self, v: Gsi) {
        self.put(field::GSI.start, &v.0);
    }

    /// Sets the TSDU length field.
    pub fn set_tsdu_len(&mut self, v: u16) {
        self.put(field::TSDU_LEN.start, &v.to_be_bytes());
    }

    /// Mutable access to everything after the fixed header.
    pub fn body_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..)
            .unwrap_or(&mut [])
    }

    /// Computes and writes the checksum over the whole buffer.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        //= https://www.rfc-editor.org/rfc/rfc3208#section-8
        //# If the computed checksum is zero, it is transmitted as all ones.
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }
}

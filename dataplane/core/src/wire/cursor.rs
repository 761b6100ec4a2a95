//! Bounds-checked big-endian reader and writer. Every access returns a `Result`, so no
//! byte string can make the codec index out of range.

use core::net::{Ipv4Addr, Ipv6Addr};

use super::{AFI_IP, AFI_IP6, Error, Nla};

/// Reads big-endian fields from a borrowed slice; any read past the end is
/// [`Error::Truncated`].
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(n).ok_or(Error::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(Error::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Error> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// An address of the family `afi` (1 = IPv4, 2 = IPv6).
    pub(crate) fn addr(&mut self, afi: u16) -> Result<Nla, Error> {
        match afi {
            AFI_IP => Ok(Nla::V4(Ipv4Addr::from(self.array::<4>()?))),
            AFI_IP6 => Ok(Nla::V6(Ipv6Addr::from(self.array::<16>()?))),
            other => Err(Error::BadAfi(other)),
        }
    }

    /// An RFC 3208 NLA: 16-bit AFI, 16 reserved bits, then the address.
    pub(crate) fn nla(&mut self) -> Result<Nla, Error> {
        let afi = self.u16()?;
        let _reserved = self.u16()?;
        self.addr(afi)
    }
}

/// Writes big-endian fields into a mutable slice; any write past the end is
/// [`Error::BufferTooSmall`].
#[derive(Debug)]
pub(crate) struct Writer<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl<'b> Writer<'b> {
    pub(crate) fn new(buf: &'b mut [u8]) -> Self {
        Writer { buf, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn bytes(&mut self, src: &[u8]) -> Result<(), Error> {
        let end = self
            .pos
            .checked_add(src.len())
            .ok_or(Error::BufferTooSmall)?;
        let dst = self
            .buf
            .get_mut(self.pos..end)
            .ok_or(Error::BufferTooSmall)?;
        dst.copy_from_slice(src);
        self.pos = end;
        Ok(())
    }

    pub(crate) fn u8(&mut self, v: u8) -> Result<(), Error> {
        self.bytes(&[v])
    }

    pub(crate) fn u16(&mut self, v: u16) -> Result<(), Error> {
        self.bytes(&v.to_be_bytes())
    }

    pub(crate) fn u32(&mut self, v: u32) -> Result<(), Error> {
        self.bytes(&v.to_be_bytes())
    }

    /// The address only (no AFI).
    pub(crate) fn addr(&mut self, nla: &Nla) -> Result<(), Error> {
        match nla {
            Nla::V4(a) => self.bytes(&a.octets()),
            Nla::V6(a) => self.bytes(&a.octets()),
        }
    }

    /// AFI, reserved, address.
    pub(crate) fn nla(&mut self, nla: &Nla) -> Result<(), Error> {
        self.u16(nla_afi(nla))?;
        self.u16(0)?;
        self.addr(nla)
    }
}

/// The AFI of an NLA.
pub(crate) fn nla_afi(nla: &Nla) -> u16 {
    match nla {
        Nla::V4(_) => AFI_IP,
        Nla::V6(_) => AFI_IP6,
    }
}

/// Encoded length of an NLA's address (no AFI).
pub(crate) fn addr_len(nla: &Nla) -> usize {
    match nla {
        Nla::V4(_) => 4,
        Nla::V6(_) => 16,
    }
}

/// Encoded length of an NLA with AFI and reserved field.
pub(crate) fn nla_len(nla: &Nla) -> usize {
    4 + addr_len(nla)
}

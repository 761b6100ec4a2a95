//! `PacketRepr` <-> bytes.

use super::cursor::{Reader, Writer, nla_len};
use super::options;
use super::{
    Ack, Body, Data, Error, HEADER_LEN, Nak, Options, Packet, PacketRepr, PacketType, Poll, Polr,
    Spm, flags,
};
use crate::seq::Sqn;

/// Verifies the checksum, then decodes.
#[inline]
pub(crate) fn parse(bytes: &[u8]) -> Result<PacketRepr<'_>, Error> {
    let p = Packet::new_checked(bytes)?;
    //= https://www.rfc-editor.org/rfc/rfc3208#section-8
    //# Checksum: This field is the usual 1's complement of the 1's complement sum of
    //# the entire PGM packet including header.
    if !p.verify_checksum() {
        return Err(Error::BadChecksum);
    }
    parse_body(bytes)
}

/// Decodes without looking at the checksum.
#[inline]
pub(crate) fn parse_body(bytes: &[u8]) -> Result<PacketRepr<'_>, Error> {
    let p = Packet::new_checked(bytes)?;
    let code = p.packet_type();
    let kind = PacketType::from_code(code).ok_or(Error::UnknownType(code))?;
    let mut r = Reader::new(bytes.get(HEADER_LEN..).unwrap_or(&[]));
    let body = parse_fixed(kind, &mut r)?;
    let flag_byte = p.options();
    let mut repr = PacketRepr {
        sport: p.src_port(),
        dport: p.dst_port(),
        gsi: p.gsi(),
        body,
        options: Options::default(),
    };
    repr.options.parity = flag_byte & flags::OPT_PARITY != 0;
    repr.options.var_pktlen = flag_byte & flags::OPT_VAR_PKTLEN != 0;
    if flag_byte & flags::OPT_PRESENT != 0 {
        let total = options::parse(r.rest(), &mut repr.options)?;
        r.take(total)?;
    }
    if let Body::Odata(d) | Body::Rdata(d) = &mut repr.body {
        *d = with_payload(*d, p.tsdu_len(), r.rest())?;
    }
    Ok(repr)
}

/// The TSDU follows the options and must be exactly `tsdu_len` bytes: the PGM packet is
/// delimited by its IP or UDP length, so a shorter rest is truncation and a longer one
/// an inconsistent length field.
fn with_payload<'a>(d: Data<'a>, tsdu_len: u16, rest: &'a [u8]) -> Result<Data<'a>, Error> {
    //= https://www.rfc-editor.org/rfc/rfc3208#section-8
    //# TSDU Length: The length in octets of the transport data unit exclusive of
    //# the transport header.
    let n = usize::from(tsdu_len);
    match rest.len().cmp(&n) {
        core::cmp::Ordering::Less => Err(Error::Truncated),
        core::cmp::Ordering::Greater => Err(Error::BadLength),
        core::cmp::Ordering::Equal => Ok(Data { payload: rest, ..d }),
    }
}

fn parse_fixed<'a>(kind: PacketType, r: &mut Reader<'a>) -> Result<Body<'a>, Error> {
    Ok(match kind {
        PacketType::Spm => Body::Spm(Spm {
            sqn: Sqn(r.u32()?),
            trail: Sqn(r.u32()?),
            lead: Sqn(r.u32()?),
            path: r.nla()?,
        }),
        PacketType::Poll => Body::Poll(Poll {
            sqn: Sqn(r.u32()?),
            round: r.u16()?,
            s_type: r.u16()?,
            path: r.nla()?,
            bo_ivl: r.u32()?,
            rand: r.array()?,
            mask: r.u32()?,
        }),
        PacketType::Polr => {
            let polr = Polr {
                sqn: Sqn(r.u32()?),
                round: r.u16()?,
            };
            let _reserved = r.u16()?;
            Body::Polr(polr)
        }
        PacketType::Odata | PacketType::Rdata => {
            let d = Data {
                sqn: Sqn(r.u32()?),
                trail: Sqn(r.u32()?),
                payload: &[],
            };
            if kind == PacketType::Odata {
                Body::Odata(d)
            } else {
                Body::Rdata(d)
            }
        }
        PacketType::Nak | PacketType::Nnak | PacketType::Ncf => {
            let n = Nak {
                sqn: Sqn(r.u32()?),
                source: r.nla()?,
                group: r.nla()?,
            };
            match kind {
                PacketType::Nak => Body::Nak(n),
                PacketType::Nnak => Body::Nnak(n),
                _ => Body::Ncf(n),
            }
        }
        PacketType::Spmr => Body::Spmr,
        PacketType::Ack => Body::Ack(Ack {
            rx_max: Sqn(r.u32()?),
            bitmap: r.u32()?,
        }),
    })
}

fn fixed_len(body: &Body<'_>) -> usize {
    match body {
        Body::Spm(s) => 12 + nla_len(&s.path),
        Body::Poll(p) => 8 + nla_len(&p.path) + 12,
        Body::Polr(_) | Body::Odata(_) | Body::Rdata(_) | Body::Ack(_) => 8,
        Body::Nak(n) | Body::Nnak(n) | Body::Ncf(n) => 4 + nla_len(&n.source) + nla_len(&n.group),
        Body::Spmr => 0,
    }
}

fn payload_of<'a>(body: &Body<'a>) -> &'a [u8] {
    match body {
        Body::Odata(d) | Body::Rdata(d) => d.payload,
        _ => &[],
    }
}

pub(crate) fn buffer_len(repr: &PacketRepr<'_>) -> usize {
    HEADER_LEN
        + fixed_len(&repr.body)
        + options::buffer_len(&repr.options)
        + payload_of(&repr.body).len()
}

fn header_flags(o: &Options) -> u8 {
    let mut f = 0;
    if options::any(o) {
        f |= flags::OPT_PRESENT;
    }
    if options::network_significant(o) {
        f |= flags::OPT_NETWORK;
    }
    if o.var_pktlen {
        f |= flags::OPT_VAR_PKTLEN;
    }
    if o.parity {
        f |= flags::OPT_PARITY;
    }
    f
}

pub(crate) fn emit(repr: &PacketRepr<'_>, buf: &mut [u8]) -> Result<usize, Error> {
    if let Body::Ack(_) = repr.body {
        return Err(Error::Unencodable);
    }
    let payload = payload_of(&repr.body);
    let tsdu_len = u16::try_from(payload.len()).map_err(|_| Error::Unencodable)?;
    let len = buffer_len(repr);
    let out = buf.get_mut(..len).ok_or(Error::BufferTooSmall)?;
    let mut w = Writer::new(out);
    w.u16(repr.sport)?;
    w.u16(repr.dport)?;
    w.u8(repr.packet_type().code())?;
    w.u8(header_flags(&repr.options))?;
    w.u16(0)?;
    w.bytes(&repr.gsi.0)?;
    w.u16(tsdu_len)?;
    emit_fixed(&repr.body, &mut w)?;
    options::emit(&repr.options, &mut w)?;
    w.bytes(payload)?;
    if w.pos() != len {
        return Err(Error::Unencodable);
    }
    let mut p = Packet::new_unchecked(out);
    p.fill_checksum();
    Ok(len)
}

fn emit_fixed(body: &Body<'_>, w: &mut Writer<'_>) -> Result<(), Error> {
    match body {
        Body::Spm(s) => {
            w.u32(s.sqn.0)?;
            w.u32(s.trail.0)?;
            w.u32(s.lead.0)?;
            w.nla(&s.path)
        }
        Body::Poll(p) => {
            w.u32(p.sqn.0)?;
            w.u16(p.round)?;
            w.u16(p.s_type)?;
            w.nla(&p.path)?;
            w.u32(p.bo_ivl)?;
            w.bytes(&p.rand)?;
            w.u32(p.mask)
        }
        Body::Polr(p) => {
            w.u32(p.sqn.0)?;
            w.u16(p.round)?;
            w.u16(0)
        }
        Body::Odata(d) | Body::Rdata(d) => {
            w.u32(d.sqn.0)?;
            w.u32(d.trail.0)
        }
        Body::Nak(n) | Body::Nnak(n) | Body::Ncf(n) => {
            w.u32(n.sqn.0)?;
            w.nla(&n.source)?;
            w.nla(&n.group)
        }
        Body::Spmr => Ok(()),
        Body::Ack(_) => Err(Error::Unencodable),
    }
}

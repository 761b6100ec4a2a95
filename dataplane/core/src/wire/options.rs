//! Option extensions (RFC 3208 section 9 and the options of sections 11, 12, 14-16).
//!
//! Layout of every option except OPT_LENGTH (OpenPGM's `pgm_opt_header`):
//!
//! ```text
//! byte 0: E bit (0x80, last option) | option type (7 bits)
//! byte 1: option length, including these three bytes
//! byte 2: option-extension byte: U (0x80), F (0x08), OPX (0x03)
//! byte 3..: option value; for every option RFC 3208 defines, byte 3 is a reserved or
//!           option-specific flags byte and the fields follow it
//! ```
//!
//! OPT_LENGTH is four bytes: type 0x00, length 4, and a 16-bit total length of the whole
//! options area (OPT_LENGTH included).

use super::cursor::{Reader, Writer, addr_len, nla_len};
use super::{Cr, Error, Fragment, NakBoIvl, NakBoRng, Options, ParityPrm, opt};
use crate::seq::Sqn;

/// Length of OPT_LENGTH.
pub(crate) const OPT_LENGTH_LEN: usize = 4;
/// Length of an option header (type, length, option-extension byte).
const OPT_HEADER_LEN: usize = 3;

/// One option as found on the wire, not interpreted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawOption<'a> {
    /// Option type (E bit removed).
    pub kind: u8,
    /// E bit: the last option of the packet.
    pub end: bool,
    /// Option-extension byte (U, F and OPX bits).
    pub ext: u8,
    /// Option value: everything after the three-byte header.
    pub value: &'a [u8],
}

impl RawOption<'_> {
    /// The OPX bits of the option-extension byte.
    pub fn opx(&self) -> u8 {
        self.ext & opt::OPX_MASK
    }

    /// Length on the wire (header included).
    pub fn wire_len(&self) -> usize {
        OPT_HEADER_LEN + self.value.len()
    }
}

/// Iterator over the options of a packet, after OPT_LENGTH. Yields each option, or one
/// error and then nothing: an option shorter than its header or running past the area,
/// a missing E bit ([`Error::BadOptions`]), or an E bit before the end of the area
/// declared by OPT_LENGTH ([`Error::BadLength`]).
#[derive(Clone, Debug)]
pub struct OptionIter<'a> {
    area: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> OptionIter<'a> {
    /// Starts at OPT_LENGTH, which must open `bytes`; the area it declares must fit in
    /// `bytes` (the rest of `bytes`, e.g. a data payload, is ignored).
    pub fn new(bytes: &'a [u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        //= https://www.rfc-editor.org/rfc/rfc3208#section-9.1
        //# When option extensions are appended to the standard PGM header, the
        //# extensions MUST be preceded by an option extension length field specifying
        //# the total length of all option extensions.
        if r.u8()? != opt::LENGTH {
            return Err(Error::BadOptions);
        }
        if usize::from(r.u8()?) != OPT_LENGTH_LEN {
            return Err(Error::BadOption(opt::LENGTH));
        }
        let total = usize::from(r.u16()?);
        if total < OPT_LENGTH_LEN {
            return Err(Error::BadLength);
        }
        let area = bytes.get(OPT_LENGTH_LEN..total).ok_or(Error::Truncated)?;
        Ok(OptionIter {
            area,
            pos: 0,
            done: false,
        })
    }

    /// Total options length declared by OPT_LENGTH (OPT_LENGTH included).
    pub fn total_len(&self) -> usize {
        self.area.len() + OPT_LENGTH_LEN
    }

    fn step(&mut self) -> Result<RawOption<'a>, Error> {
        let rest = self.area.get(self.pos..).unwrap_or(&[]);
        let (&first, tail) = rest.split_first().ok_or(Error::BadOptions)?;
        let kind = first & opt::TYPE_MASK;
        let len = usize::from(*tail.first().ok_or(Error::BadOption(kind))?);
        if len < OPT_HEADER_LEN {
            return Err(Error::BadOption(kind));
        }
        let whole = rest.get(..len).ok_or(Error::BadOption(kind))?;
        self.pos += len;
        let end = first & opt::END != 0;
        if end && self.pos != self.area.len() {
            return Err(Error::BadLength);
        }
        Ok(RawOption {
            kind,
            end,
            ext: whole.get(2).copied().unwrap_or(0),
            value: whole.get(OPT_HEADER_LEN..).unwrap_or(&[]),
        })
    }
}

impl<'a> Iterator for OptionIter<'a> {
    type Item = Result<RawOption<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.step();
        self.done = !matches!(item, Ok(RawOption { end: false, .. }));
        Some(item)
    }
}

/// Decodes every option of the area starting at `bytes` into `out`; returns the area's
/// total length.
pub(crate) fn parse(bytes: &[u8], out: &mut Options) -> Result<usize, Error> {
    let iter = OptionIter::new(bytes)?;
    let total = iter.total_len();
    for raw in iter {
        apply(&raw?, out)?;
    }
    Ok(total)
}

fn is_known(kind: u8) -> bool {
    matches!(
        kind,
        opt::FRAGMENT
            | opt::NAK_LIST
            | opt::JOIN
            | opt::NAK_BO_IVL
            | opt::NAK_BO_RNG
            | opt::REDIRECT
            | opt::SYN
            | opt::FIN
            | opt::RST
            | opt::PARITY_PRM
            | opt::PARITY_GRP
            | opt::CURR_TGSIZE
            | opt::NBR_UNREACH
            | opt::PATH_NLA
            | opt::CR
            | opt::CRQST
    )
}

fn apply(raw: &RawOption<'_>, o: &mut Options) -> Result<(), Error> {
    if raw.kind == opt::INVALID {
        // RFC 3208 section 9: a network element that invalidates an option rewrites its
        // type to OPT_INVALID; the length stays, the contents are meaningless.
        o.invalid = true;
        return Ok(());
    }
    if !is_known(raw.kind) {
        return unknown(raw, o);
    }
    let kind = raw.kind;
    let mut r = Reader::new(raw.value);
    // Byte 3: reserved or option-specific flags.
    let flags = r.u8().map_err(|_| Error::BadOption(kind))?;
    decode_known(kind, flags, &mut r, o).map_err(|e| match e {
        Error::BadAfi(_) => e,
        _ => Error::BadOption(kind),
    })?;
    if r.remaining() != 0 {
        return Err(Error::BadOption(kind));
    }
    Ok(())
}

fn decode_known(kind: u8, flags: u8, r: &mut Reader<'_>, o: &mut Options) -> Result<(), Error> {
    match kind {
        opt::FRAGMENT => {
            o.fragment = Some(Fragment {
                first_sqn: Sqn(r.u32()?),
                offset: r.u32()?,
                apdu_len: r.u32()?,
            });
        }
        opt::NAK_LIST => {
            o.nak_list.clear();
            if !r.remaining().is_multiple_of(4) {
                return Err(Error::BadOption(kind));
            }
            while r.remaining() > 0 {
                if !o.nak_list.push(Sqn(r.u32()?)) {
                    return Err(Error::BadOption(kind));
                }
            }
        }
        opt::JOIN => o.join = Some(Sqn(r.u32()?)),
        opt::NAK_BO_IVL => {
            o.nak_bo_ivl = Some(NakBoIvl {
                ivl: r.u32()?,
                ivl_sqn: Sqn(r.u32()?),
            });
        }
        opt::NAK_BO_RNG => {
            // OpenPGM's pgm_opt_nak_bo_rng: maximum first, then minimum.
            let max = r.u32()?;
            let min = r.u32()?;
            o.nak_bo_rng = Some(NakBoRng { min, max });
        }
        opt::REDIRECT => o.redirect = Some(r.nla()?),
        opt::SYN => o.syn = true,
        opt::FIN => o.fin = true,
        opt::RST => o.rst = Some(flags & opt::RST_N != 0),
        opt::PARITY_PRM => {
            o.parity_prm = Some(ParityPrm {
                proactive: flags & opt::PARITY_PRM_PRO != 0,
                on_demand: flags & opt::PARITY_PRM_OND != 0,
                tgs: r.u32()?,
            });
        }
        opt::PARITY_GRP => o.parity_grp = Some(r.u32()?),
        opt::CURR_TGSIZE => o.curr_tgsize = Some(r.u32()?),
        opt::NBR_UNREACH => o.nbr_unreach = true,
        opt::PATH_NLA => {
            // OpenPGM's pgm_opt_path_nla carries a bare address: the family follows from
            // the option's length.
            let afi = match r.remaining() {
                4 => super::AFI_IP,
                16 => super::AFI_IP6,
                _ => return Err(Error::BadOption(kind)),
            };
            o.path_nla = Some(r.addr(afi)?);
        }
        opt::CR => o.cr = Some(parse_cr(flags, r)?),
        opt::CRQST => o.crqst = Some(flags),
        _ => return Err(Error::BadOption(kind)),
    }
    Ok(())
}

fn parse_cr(flags: u8, r: &mut Reader<'_>) -> Result<Cr, Error> {
    Ok(Cr {
        flags,
        lead: Sqn(r.u32()?),
        ne_worst_link: r.u16()?,
        ne_worst_path: r.u16()?,
        rx_worst: r.u16()?,
        num_reporters: r.u16()?,
        worst_receiver: r.nla()?,
    })
}

fn unknown(raw: &RawOption<'_>, o: &mut Options) -> Result<(), Error> {
    // RFC 3208 section 9, OPX for an option the receiver does not know: 00 ignore the
    // option, 01 invalidate it (network elements rewrite it to OPT_INVALID; we record
    // `invalid`), 10 discard the packet. 11 is reserved and treated as 00.
    match raw.opx() {
        opt::OPX_DISCARD => return Err(Error::UnknownOptionDiscard(raw.kind)),
        opt::OPX_INVALIDATE => o.invalid = true,
        _ => {}
    }
    if let Some(slot) = o.unknown_types.get_mut(usize::from(o.unknown_count)) {
        *slot = raw.kind;
    }
    o.unknown_count = o.unknown_count.saturating_add(1);
    Ok(())
}

/// Whether `o` carries any option that emit will write.
pub(crate) fn any(o: &Options) -> bool {
    count(o) > 0
}

/// Whether `o` carries a network-significant option (sets the header's 0x02 bit).
pub(crate) fn network_significant(o: &Options) -> bool {
    !o.nak_list.is_empty()
        || o.parity_prm.is_some()
        || o.redirect.is_some()
        || o.nbr_unreach
        || o.path_nla.is_some()
        || o.cr.is_some()
        || o.crqst.is_some()
}

fn count(o: &Options) -> usize {
    usize::from(o.fragment.is_some())
        + usize::from(!o.nak_list.is_empty())
        + usize::from(o.join.is_some())
        + usize::from(o.nak_bo_ivl.is_some())
        + usize::from(o.nak_bo_rng.is_some())
        + usize::from(o.redirect.is_some())
        + usize::from(o.syn)
        + usize::from(o.fin)
        + usize::from(o.rst.is_some())
        + usize::from(o.parity_prm.is_some())
        + usize::from(o.parity_grp.is_some())
        + usize::from(o.curr_tgsize.is_some())
        + usize::from(o.nbr_unreach)
        + usize::from(o.path_nla.is_some())
        + usize::from(o.cr.is_some())
        + usize::from(o.crqst.is_some())
        + usize::from(o.invalid)
}

/// Bytes the options area takes (0 when there is no option to write).
pub(crate) fn buffer_len(o: &Options) -> usize {
    if !any(o) {
        return 0;
    }
    let mut n = OPT_LENGTH_LEN;
    let fixed = |present: bool, len: usize| if present { len } else { 0 };
    n += fixed(o.fragment.is_some(), 16);
    n += fixed(!o.nak_list.is_empty(), 4 + 4 * o.nak_list.len());
    n += fixed(o.join.is_some(), 8);
    n += fixed(o.nak_bo_ivl.is_some(), 12);
    n += fixed(o.nak_bo_rng.is_some(), 12);
    n += o.redirect.as_ref().map_or(0, |a| 4 + nla_len(a));
    n += fixed(o.syn, 4) + fixed(o.fin, 4) + fixed(o.rst.is_some(), 4);
    n += fixed(o.parity_prm.is_some(), 8);
    n += fixed(o.parity_grp.is_some(), 8);
    n += fixed(o.curr_tgsize.is_some(), 8);
    n += fixed(o.nbr_unreach, 4);
    n += o.path_nla.as_ref().map_or(0, |a| 4 + addr_len(a));
    n += o.cr.as_ref().map_or(0, |c| 16 + nla_len(&c.worst_receiver));
    n += fixed(o.crqst.is_some(), 4);
    n += fixed(o.invalid, 4);
    n
}

/// Writes options one by one, setting the E bit on the last.
struct Emitter<'w, 'b> {
    w: &'w mut Writer<'b>,
    left: usize,
}

impl Emitter<'_, '_> {
    /// Writes an option header; `value_len` counts the bytes after the header.
    fn header(&mut self, kind: u8, value_len: usize) -> Result<(), Error> {
        self.left = self.left.saturating_sub(1);
        let e = if self.left == 0 { opt::END } else { 0 };
        let len = u8::try_from(OPT_HEADER_LEN + value_len).map_err(|_| Error::Unencodable)?;
        self.w.u8(kind | e)?;
        self.w.u8(len)?;
        self.w.u8(0)
    }

    fn flags_only(&mut self, kind: u8, flags: u8) -> Result<(), Error> {
        self.header(kind, 1)?;
        self.w.u8(flags)
    }

    fn u32_opt(&mut self, kind: u8, flags: u8, v: u32) -> Result<(), Error> {
        self.header(kind, 5)?;
        self.w.u8(flags)?;
        self.w.u32(v)
    }

    fn two_u32(&mut self, kind: u8, a: u32, b: u32) -> Result<(), Error> {
        self.header(kind, 9)?;
        self.w.u8(0)?;
        self.w.u32(a)?;
        self.w.u32(b)
    }
}

/// Writes the options area (nothing when `o` has no option to write).
pub(crate) fn emit(o: &Options, w: &mut Writer<'_>) -> Result<(), Error> {
    let left = count(o);
    if left == 0 {
        return Ok(());
    }
    let total = u16::try_from(buffer_len(o)).map_err(|_| Error::Unencodable)?;
    w.u8(opt::LENGTH)?;
    w.u8(4)?;
    w.u16(total)?;
    let mut e = Emitter { w, left };
    if let Some(f) = &o.fragment {
        e.header(opt::FRAGMENT, 13)?;
        e.w.u8(0)?;
        e.w.u32(f.first_sqn.0)?;
        e.w.u32(f.offset)?;
        e.w.u32(f.apdu_len)?;
    }
    if !o.nak_list.is_empty() {
        e.header(opt::NAK_LIST, 1 + 4 * o.nak_list.len())?;
        e.w.u8(0)?;
        for s in o.nak_list.as_slice() {
            e.w.u32(s.0)?;
        }
    }
    if let Some(j) = o.join {
        e.u32_opt(opt::JOIN, 0, j.0)?;
    }
    if let Some(b) = &o.nak_bo_ivl {
        e.two_u32(opt::NAK_BO_IVL, b.ivl, b.ivl_sqn.0)?;
    }
    if let Some(b) = &o.nak_bo_rng {
        e.two_u32(opt::NAK_BO_RNG, b.max, b.min)?;
    }
    if let Some(a) = &o.redirect {
        e.header(opt::REDIRECT, 1 + nla_len(a))?;
        e.w.u8(0)?;
        e.w.nla(a)?;
    }
    if o.syn {
        e.flags_only(opt::SYN, 0)?;
    }
    if o.fin {
        e.flags_only(opt::FIN, 0)?;
    }
    if let Some(n) = o.rst {
        e.flags_only(opt::RST, if n { opt::RST_N } else { 0 })?;
    }
    emit_fec_and_rest(o, &mut e)
}

fn emit_fec_and_rest(o: &Options, e: &mut Emitter<'_, '_>) -> Result<(), Error> {
    if let Some(p) = &o.parity_prm {
        let mut flags = 0;
        if p.proactive {
            flags |= opt::PARITY_PRM_PRO;
        }
        if p.on_demand {
            flags |= opt::PARITY_PRM_OND;
        }
        e.u32_opt(opt::PARITY_PRM, flags, p.tgs)?;
    }
    if let Some(g) = o.parity_grp {
        e.u32_opt(opt::PARITY_GRP, 0, g)?;
    }
    if let Some(t) = o.curr_tgsize {
        e.u32_opt(opt::CURR_TGSIZE, 0, t)?;
    }
    if o.nbr_unreach {
        e.flags_only(opt::NBR_UNREACH, 0)?;
    }
    if let Some(a) = &o.path_nla {
        e.header(opt::PATH_NLA, 1 + addr_len(a))?;
        e.w.u8(0)?;
        e.w.addr(a)?;
    }
    if let Some(c) = &o.cr {
        emit_cr(c, e)?;
    }
    if let Some(f) = o.crqst {
        e.flags_only(opt::CRQST, f)?;
    }
    if o.invalid {
        e.flags_only(opt::INVALID, 0)?;
    }
    Ok(())
}

fn emit_cr(c: &Cr, e: &mut Emitter<'_, '_>) -> Result<(), Error> {
    e.header(opt::CR, 13 + nla_len(&c.worst_receiver))?;
    e.w.u8(c.flags)?;
    e.w.u32(c.lead.0)?;
    e.w.u16(c.ne_worst_link)?;
    e.w.u16(c.ne_worst_path)?;
    e.w.u16(c.rx_worst)?;
    e.w.u16(c.num_reporters)?;
    e.w.nla(&c.worst_receiver)
}

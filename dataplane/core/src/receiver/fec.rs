//! A receiver's FEC state for one source: the transmission groups being collected
//! (data copies and parity) and what the source's SPMs offer.

use crate::config::FEC_GROUPS;
use crate::fec::{Code, FRAG_BYTES, GroupBuf};
use crate::seq::Sqn;
use crate::wire::{Fragment, ParityPrm};

/// One group being collected.
#[derive(Debug)]
pub(crate) struct Group {
    /// First sequence of the group held (valid when `used`).
    pub(crate) tg: Sqn,
    pub(crate) used: bool,
    pub(crate) buf: GroupBuf,
}

/// FEC state of a peer whose SPMs carry OPT_PARITY_PRM.
#[derive(Debug)]
pub(crate) struct PeerFec {
    pub(crate) code: Code,
    pub(crate) proactive: bool,
    pub(crate) ondemand: bool,
    pub(crate) groups: Vec<Group>,
}

impl PeerFec {
    /// State for the parameters `prm` announces, with slots of `slot` bytes; `None` when
    /// they are not a valid code (a TGS that is not a power of two in 2..=128) or offer
    /// no parity.
    pub(crate) fn new(prm: &ParityPrm, slot: usize) -> Option<PeerFec> {
        if !(prm.proactive || prm.on_demand) {
            return None;
        }
        let code = Code::new(usize::try_from(prm.tgs).ok()?).ok()?;
        let k = code.k();
        Some(PeerFec {
            proactive: prm.proactive,
            ondemand: prm.on_demand,
            groups: (0..FEC_GROUPS)
                .map(|_| Group {
                    tg: Sqn(0),
                    used: false,
                    buf: GroupBuf::new(k, slot),
                })
                .collect(),
            code,
        })
    }

    /// Whether `prm` describes the code in use.
    pub(crate) fn same(&self, prm: &ParityPrm) -> bool {
        prm.tgs as usize == self.code.k()
    }

    pub(crate) fn k(&self) -> u32 {
        self.code.k() as u32
    }

    /// The first sequence of `sqn`'s group.
    pub(crate) fn tg(&self, sqn: Sqn) -> Sqn {
        Sqn(sqn.0 & !(self.k() - 1))
    }

    fn index(&self, tg: Sqn) -> usize {
        ((tg.0 >> self.code.shift()) as usize) % FEC_GROUPS
    }

    /// The group buffer for `tg`, taking over the slot of an older group; `None` when
    /// the slot holds a newer group (`tg` is too old to collect).
    pub(crate) fn group(&mut self, tg: Sqn) -> Option<&mut Group> {
        let i = self.index(tg);
        let g = self.groups.get_mut(i)?;
        if !g.used || g.tg.lt(tg) {
            g.used = true;
            g.tg = tg;
            g.buf.clear();
        } else if g.tg != tg {
            return None;
        }
        Some(g)
    }

    /// The group buffer for `tg` if it is being collected.
    pub(crate) fn get(&mut self, tg: Sqn) -> Option<&mut Group> {
        let i = self.index(tg);
        self.groups.get_mut(i).filter(|g| g.used && g.tg == tg)
    }
}

/// An OPT_FRAGMENT value as the bytes FEC encodes.
pub(crate) fn frag_to_bytes(f: &Fragment) -> [u8; FRAG_BYTES] {
    crate::fec::frag_bytes(f.first_sqn.0, f.offset, f.apdu_len)
}

/// Rebuilt fragment bytes as an OPT_FRAGMENT (all zeros: the packet had none).
pub(crate) fn bytes_to_frag(b: &[u8; FRAG_BYTES]) -> Option<Fragment> {
    crate::fec::frag_fields(b).map(|(first, offset, apdu_len)| Fragment {
        first_sqn: Sqn(first),
        offset,
        apdu_len,
    })
}

//! Reference-counted multicast memberships per (interface, group, source),
//! applied to the kernel with the RFC 3678 `MCAST_*` socket options.
//!
//! xpgmd opens one datagram socket per (interface, group): the kernel keeps
//! one filter (mode + source list) per socket and group, and limits
//! memberships per socket (`net.ipv4.igmp_max_memberships`, default 20), so
//! a socket per group scales to thousands of groups where a socket per
//! interface would not. The kernel seam is the [`Kernel`] trait so the
//! ordering rules can be unit-tested without privileges.

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};

use crate::sys::{self, McastOp};

/// What the membership table needs from the kernel.
pub trait Kernel {
    /// A socket holding one group's membership.
    type Sock;
    /// Opens a socket for a group of the given family.
    fn socket(&mut self, v6: bool) -> io::Result<Self::Sock>;
    /// Applies one `MCAST_*` option.
    fn apply(
        &mut self,
        sock: &Self::Sock,
        op: McastOp,
        ifindex: u32,
        group: IpAddr,
        source: Option<IpAddr>,
    ) -> io::Result<()>;
}

/// The real kernel.
#[derive(Debug, Default)]
pub struct OsKernel;

impl Kernel for OsKernel {
    type Sock = OwnedFd;
    fn socket(&mut self, v6: bool) -> io::Result<OwnedFd> {
        sys::membership_socket(v6)
    }
    fn apply(
        &mut self,
        sock: &OwnedFd,
        op: McastOp,
        ifindex: u32,
        group: IpAddr,
        source: Option<IpAddr>,
    ) -> io::Result<()> {
        sys::mcast(sock.as_fd(), op, ifindex, group, source)
    }
}

/// Membership errors, each with a stable code for the API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The group is not a multicast address.
    #[error("{0} is not a multicast group address")]
    NotMulticast(IpAddr),
    /// Group and source are of different address families.
    #[error("source {0} is not of the group's address family")]
    FamilyMismatch(IpAddr),
    /// A source is itself multicast or unspecified.
    #[error("{0} is not a valid unicast source address")]
    BadSource(IpAddr),
    /// Source-specific join on a group joined any-source.
    #[error(
        "{group} is joined any-source on this interface; leave it before joining source-specific"
    )]
    AsmJoined {
        /// The group.
        group: IpAddr,
    },
    /// Any-source join on a group joined source-specific.
    #[error(
        "{group} is joined source-specific on this interface; leave its sources before joining any-source"
    )]
    SsmJoined {
        /// The group.
        group: IpAddr,
    },
    /// Leave/unblock/block of something not joined.
    #[error("{0}")]
    NotJoined(String),
    /// Block needs an any-source join.
    #[error("block needs an any-source join of {group} on this interface first")]
    BlockNeedsAsm {
        /// The group.
        group: IpAddr,
    },
    /// Table limits.
    #[error("too many {0}")]
    Limit(&'static str),
    /// The kernel refused.
    #[error("kernel refused {op:?} {group}{}: {err}", src.map(|s| format!(" source {s}")).unwrap_or_default())]
    Os {
        /// Operation.
        op: McastOp,
        /// Group.
        group: IpAddr,
        /// Source.
        src: Option<IpAddr>,
        /// The error.
        err: io::Error,
    },
}

impl Error {
    /// Stable API error code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotMulticast(_) | Error::FamilyMismatch(_) | Error::BadSource(_) => {
                "invalid_argument"
            }
            Error::AsmJoined { .. } | Error::SsmJoined { .. } | Error::BlockNeedsAsm { .. } => {
                "invalid_state"
            }
            Error::NotJoined(_) => "not_found",
            Error::Limit(_) => "limit",
            Error::Os { .. } => "os_error",
        }
    }
}

/// Filter mode of one (interface, group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Any-source (EXCLUDE mode): `refs` joins, minus blocked sources.
    Asm {
        /// Number of any-source joins.
        refs: u32,
        /// Blocked sources and their reference counts.
        blocked: BTreeMap<IpAddr, u32>,
    },
    /// Source-specific (INCLUDE mode).
    Ssm {
        /// Joined sources and their reference counts.
        sources: BTreeMap<IpAddr, u32>,
    },
}

#[derive(Debug)]
struct Entry<S> {
    sock: S,
    mode: Mode,
}

/// A snapshot of one membership for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// Interface index.
    pub ifindex: u32,
    /// Group.
    pub group: IpAddr,
    /// `exclude` (any-source) or `include` (source-specific).
    pub filter: &'static str,
    /// Any-source reference count (0 for include mode).
    pub refs: u32,
    /// Sources (joined for include, blocked for exclude) with their reference counts.
    pub sources: Vec<(IpAddr, u32)>,
}

/// The membership table.
#[derive(Debug)]
pub struct Memberships<K: Kernel> {
    kernel: K,
    table: BTreeMap<(u32, IpAddr), Entry<K::Sock>>,
    max_groups: usize,
    max_sources: usize,
}

/// A membership to join or leave: (interface, group, optional source).
pub type Key = (u32, IpAddr, Option<IpAddr>);

fn check(group: IpAddr, source: Option<IpAddr>) -> Result<(), Error> {
    if !group.is_multicast() {
        return Err(Error::NotMulticast(group));
    }
    if let Some(s) = source {
        if s.is_ipv4() != group.is_ipv4() {
            return Err(Error::FamilyMismatch(s));
        }
        if s.is_multicast() || s.is_unspecified() {
            return Err(Error::BadSource(s));
        }
    }
    Ok(())
}

impl<K: Kernel> Memberships<K> {
    /// An empty table with limits on groups and on sources per group.
    pub fn new(kernel: K, max_groups: usize, max_sources: usize) -> Self {
        Self {
            kernel,
            table: BTreeMap::new(),
            max_groups,
            max_sources,
        }
    }

    /// The kernel seam (for tests).
    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    fn os(
        &mut self,
        sock: &K::Sock,
        op: McastOp,
        ifindex: u32,
        group: IpAddr,
        source: Option<IpAddr>,
    ) -> Result<(), Error> {
        self.kernel
            .apply(sock, op, ifindex, group, source)
            .map_err(|err| Error::Os {
                op,
                group,
                src: source,
                err,
            })
    }

    fn entry_or_open(&mut self, ifindex: u32, group: IpAddr, mode: Mode) -> Result<(), Error> {
        if self.table.contains_key(&(ifindex, group)) {
            return Ok(());
        }
        if self.table.len() >= self.max_groups {
            return Err(Error::Limit("groups"));
        }
        let sock = self
            .kernel
            .socket(group.is_ipv6())
            .map_err(|err| Error::Os {
                op: McastOp::JoinGroup,
                group,
                src: None,
                err,
            })?;
        self.table.insert((ifindex, group), Entry { sock, mode });
        Ok(())
    }

    /// Joins `group` on `ifindex`: any-source when `source` is `None`,
    /// else source-specific for that source. Reference counted.
    pub fn join(
        &mut self,
        ifindex: u32,
        group: IpAddr,
        source: Option<IpAddr>,
    ) -> Result<(), Error> {
        check(group, source)?;
        let existing = self.table.get(&(ifindex, group)).map(|e| e.mode.clone());
        match (source, existing) {
            (None, Some(Mode::Ssm { .. })) => Err(Error::SsmJoined { group }),
            (Some(_), Some(Mode::Asm { .. })) => Err(Error::AsmJoined { group }),
            (None, Some(Mode::Asm { .. })) => {
                if let Some(Entry {
                    mode: Mode::Asm { refs, .. },
                    ..
                }) = self.table.get_mut(&(ifindex, group))
                {
                    *refs = refs.saturating_add(1);
                }
                Ok(())
            }
            (None, None) => {
                self.entry_or_open(
                    ifindex,
                    group,
                    Mode::Asm {
                        refs: 1,
                        blocked: BTreeMap::new(),
                    },
                )?;
                self.apply_or_drop(ifindex, group, McastOp::JoinGroup, None)
            }
            (Some(s), existing) => {
                if let Some(Mode::Ssm { sources }) = &existing {
                    if sources.contains_key(&s) {
                        self.bump_source(ifindex, group, s, 1);
                        return Ok(());
                    }
                    if sources.len() >= self.max_sources {
                        return Err(Error::Limit("sources for this group"));
                    }
                }
                self.entry_or_open(
                    ifindex,
                    group,
                    Mode::Ssm {
                        sources: BTreeMap::new(),
                    },
                )?;
                self.apply_or_drop(ifindex, group, McastOp::JoinSource, Some(s))?;
                self.bump_source(ifindex, group, s, 1);
                Ok(())
            }
        }
    }

    /// Applies `op`; on failure drops an entry left without any membership.
    fn apply_or_drop(
        &mut self,
        ifindex: u32,
        group: IpAddr,
        op: McastOp,
        source: Option<IpAddr>,
    ) -> Result<(), Error> {
        let Some(e) = self.table.remove(&(ifindex, group)) else {
            return Err(Error::NotJoined(format!("{group} not joined")));
        };
        let r = self.os(&e.sock, op, ifindex, group, source);
        let empty = match &e.mode {
            // An any-source entry reaches here only from its first join.
            Mode::Asm { .. } => op == McastOp::JoinGroup,
            Mode::Ssm { sources } => sources.is_empty(),
        };
        if r.is_ok() || !empty {
            self.table.insert((ifindex, group), e);
        }
        r
    }

    fn bump_source(&mut self, ifindex: u32, group: IpAddr, s: IpAddr, by: u32) {
        if let Some(e) = self.table.get_mut(&(ifindex, group)) {
            let m = match &mut e.mode {
                Mode::Ssm { sources } => sources,
                Mode::Asm { blocked, .. } => blocked,
            };
            let c = m.entry(s).or_insert(0);
            *c = c.saturating_add(by);
        }
    }

    /// Drops one reference; leaves in the kernel when it was the last.
    pub fn leave(
        &mut self,
        ifindex: u32,
        group: IpAddr,
        source: Option<IpAddr>,
    ) -> Result<(), Error> {
        check(group, source)?;
        let Some(e) = self.table.get_mut(&(ifindex, group)) else {
            return Err(Error::NotJoined(format!(
                "{group} is not joined on this interface"
            )));
        };
        match (&mut e.mode, source) {
            (Mode::Asm { refs, .. }, None) => {
                if *refs > 1 {
                    *refs -= 1;
                    return Ok(());
                }
                // Last reference: leaving also drops any blocks.
                let Some(e) = self.table.remove(&(ifindex, group)) else {
                    return Ok(());
                };
                let r = self.os(&e.sock, McastOp::LeaveGroup, ifindex, group, None);
                // Closing the socket leaves anyway; report the error but never keep
                // a table entry the caller believes gone.
                drop(e);
                r
            }
            (Mode::Asm { .. }, Some(_)) => Err(Error::NotJoined(format!(
                "{group} is joined any-source; use unblock for sources, or leave without --source"
            ))),
            (Mode::Ssm { .. }, None) => Err(Error::NotJoined(format!(
                "{group} is joined source-specific; name the --source to leave"
            ))),
            (Mode::Ssm { sources }, Some(s)) => {
                let Some(c) = sources.get_mut(&s) else {
                    return Err(Error::NotJoined(format!(
                        "source {s} of {group} is not joined on this interface"
                    )));
                };
                if *c > 1 {
                    *c -= 1;
                    return Ok(());
                }
                sources.remove(&s);
                let last = sources.is_empty();
                let r = match self.table.get(&(ifindex, group)) {
                    Some(e) => self
                        .kernel
                        .apply(&e.sock, McastOp::LeaveSource, ifindex, group, Some(s))
                        .map_err(|err| Error::Os {
                            op: McastOp::LeaveSource,
                            group,
                            src: Some(s),
                            err,
                        }),
                    None => Ok(()),
                };
                if last {
                    self.table.remove(&(ifindex, group));
                }
                r
            }
        }
    }

    /// Blocks `source` for an any-source membership (reference counted).
    pub fn block(&mut self, ifindex: u32, group: IpAddr, source: IpAddr) -> Result<(), Error> {
        check(group, Some(source))?;
        match self.table.get(&(ifindex, group)).map(|e| &e.mode) {
            Some(Mode::Asm { blocked, .. }) => {
                if blocked.contains_key(&source) {
                    self.bump_source(ifindex, group, source, 1);
                    return Ok(());
                }
                if blocked.len() >= self.max_sources {
                    return Err(Error::Limit("blocked sources for this group"));
                }
            }
            _ => return Err(Error::BlockNeedsAsm { group }),
        }
        if let Some(e) = self.table.get(&(ifindex, group)) {
            self.kernel
                .apply(&e.sock, McastOp::Block, ifindex, group, Some(source))
                .map_err(|err| Error::Os {
                    op: McastOp::Block,
                    group,
                    src: Some(source),
                    err,
                })?;
        }
        self.bump_source(ifindex, group, source, 1);
        Ok(())
    }

    /// Drops one block reference; unblocks in the kernel on the last.
    pub fn unblock(&mut self, ifindex: u32, group: IpAddr, source: IpAddr) -> Result<(), Error> {
        check(group, Some(source))?;
        let Some(Entry {
            mode: Mode::Asm { blocked, .. },
            ..
        }) = self.table.get_mut(&(ifindex, group))
        else {
            return Err(Error::NotJoined(format!(
                "{group} is not joined any-source on this interface"
            )));
        };
        let Some(c) = blocked.get_mut(&source) else {
            return Err(Error::NotJoined(format!(
                "source {source} of {group} is not blocked"
            )));
        };
        if *c > 1 {
            *c -= 1;
            return Ok(());
        }
        blocked.remove(&source);
        if let Some(e) = self.table.get(&(ifindex, group)) {
            self.kernel
                .apply(&e.sock, McastOp::Unblock, ifindex, group, Some(source))
                .map_err(|err| Error::Os {
                    op: McastOp::Unblock,
                    group,
                    src: Some(source),
                    err,
                })?;
        }
        Ok(())
    }

    /// Forgets every membership on `ifindex` (the interface disappeared:
    /// the kernel has dropped them already). Returns the groups removed.
    pub fn forget_interface(&mut self, ifindex: u32) -> Vec<IpAddr> {
        let keys: Vec<_> = self
            .table
            .keys()
            .filter(|(i, _)| *i == ifindex)
            .copied()
            .collect();
        keys.into_iter()
            .filter_map(|k| self.table.remove(&k).map(|_| k.1))
            .collect()
    }

    /// Whether a membership is held: any-source (`source` None), a
    /// source-specific source, or (`blocked`) a block of `source`.
    pub fn holds(
        &self,
        ifindex: u32,
        group: IpAddr,
        source: Option<IpAddr>,
        blocked: bool,
    ) -> bool {
        match (self.table.get(&(ifindex, group)).map(|e| &e.mode), source) {
            (Some(Mode::Asm { .. }), None) => !blocked,
            (Some(Mode::Asm { blocked: b, .. }), Some(s)) => blocked && b.contains_key(&s),
            (Some(Mode::Ssm { sources }), Some(s)) => !blocked && sources.contains_key(&s),
            _ => false,
        }
    }

    /// Number of (interface, group) entries.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Up to `limit` memberships strictly after `after` (a cursor), in
    /// (ifindex, group) order, and whether more follow.
    pub fn page(&self, after: Option<(u32, IpAddr)>, limit: usize) -> (Vec<View>, bool) {
        use std::ops::Bound;
        let lower = match after {
            Some(k) => Bound::Excluded(k),
            None => Bound::Unbounded,
        };
        let mut it = self.table.range((lower, Bound::Unbounded));
        let mut out = Vec::new();
        for (&(ifindex, group), e) in it.by_ref().take(limit) {
            out.push(match &e.mode {
                Mode::Asm { refs, blocked } => View {
                    ifindex,
                    group,
                    filter: "exclude",
                    refs: *refs,
                    sources: blocked.iter().map(|(a, c)| (*a, *c)).collect(),
                },
                Mode::Ssm { sources } => View {
                    ifindex,
                    group,
                    filter: "include",
                    refs: 0,
                    sources: sources.iter().map(|(a, c)| (*a, *c)).collect(),
                },
            });
        }
        (out, it.next().is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default)]
    struct Fake {
        ops: Vec<(McastOp, u32, IpAddr, Option<IpAddr>)>,
        sockets: usize,
        fail_next: bool,
    }

    impl Kernel for Fake {
        type Sock = usize;
        fn socket(&mut self, _v6: bool) -> io::Result<usize> {
            self.sockets += 1;
            Ok(self.sockets)
        }
        fn apply(
            &mut self,
            _s: &usize,
            op: McastOp,
            i: u32,
            g: IpAddr,
            s: Option<IpAddr>,
        ) -> io::Result<()> {
            if std::mem::take(&mut self.fail_next) {
                return Err(io::Error::from_raw_os_error(libc::ENOBUFS));
            }
            self.ops.push((op, i, g, s));
            Ok(())
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn table() -> Memberships<Fake> {
        Memberships::new(Fake::default(), 100, 4)
    }

    #[test]
    fn asm_join_is_reference_counted() {
        let mut m = table();
        let g = ip("239.192.0.1");
        m.join(2, g, None).unwrap();
        m.join(2, g, None).unwrap();
        assert_eq!(m.kernel().ops, vec![(McastOp::JoinGroup, 2, g, None)]);
        m.leave(2, g, None).unwrap();
        assert_eq!(m.kernel().ops.len(), 1, "still one reference");
        m.leave(2, g, None).unwrap();
        assert_eq!(m.kernel().ops[1], (McastOp::LeaveGroup, 2, g, None));
        assert!(m.is_empty());
        assert!(matches!(m.leave(2, g, None), Err(Error::NotJoined(_))));
    }

    #[test]
    fn same_group_on_two_interfaces_is_independent() {
        let mut m = table();
        let g = ip("ff15::1");
        m.join(2, g, None).unwrap();
        m.join(3, g, None).unwrap();
        m.leave(2, g, None).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m.page(None, 10).0[0].ifindex, 3);
    }

    #[test]
    fn ordering_rules_are_enforced() {
        let mut m = table();
        let g = ip("239.192.0.2");
        let s = ip("10.77.0.1");
        m.join(2, g, Some(s)).unwrap();
        assert!(matches!(m.join(2, g, None), Err(Error::SsmJoined { .. })));
        assert!(matches!(m.block(2, g, s), Err(Error::BlockNeedsAsm { .. })));
        assert!(matches!(m.leave(2, g, None), Err(Error::NotJoined(_))));
        let g2 = ip("239.192.0.3");
        m.join(2, g2, None).unwrap();
        assert!(matches!(
            m.join(2, g2, Some(s)),
            Err(Error::AsmJoined { .. })
        ));
        assert!(matches!(m.unblock(2, g2, s), Err(Error::NotJoined(_))));
        assert!(matches!(
            m.block(2, ip("239.192.0.9"), s),
            Err(Error::BlockNeedsAsm { .. })
        ));
        // Validation.
        assert!(matches!(
            m.join(2, ip("10.0.0.1"), None),
            Err(Error::NotMulticast(_))
        ));
        assert!(matches!(
            m.join(2, g, Some(ip("fd77::1"))),
            Err(Error::FamilyMismatch(_))
        ));
        assert!(matches!(
            m.join(2, g, Some(ip("239.1.1.1"))),
            Err(Error::BadSource(_))
        ));
        assert_eq!(
            m.join(2, g, Some(ip("0.0.0.0"))).unwrap_err().code(),
            "invalid_argument"
        );
    }

    #[test]
    fn ssm_sources_are_counted_and_last_leave_drops_the_group() {
        let mut m = table();
        let g = ip("239.192.0.4");
        let (s1, s2) = (ip("10.77.0.1"), ip("10.77.0.2"));
        m.join(2, g, Some(s1)).unwrap();
        m.join(2, g, Some(s1)).unwrap();
        m.join(2, g, Some(s2)).unwrap();
        assert_eq!(
            m.kernel().ops,
            vec![
                (McastOp::JoinSource, 2, g, Some(s1)),
                (McastOp::JoinSource, 2, g, Some(s2))
            ]
        );
        let v = &m.page(None, 10).0[0];
        assert_eq!(v.filter, "include");
        assert_eq!(v.sources, vec![(s1, 2), (s2, 1)]);
        m.leave(2, g, Some(s1)).unwrap();
        m.leave(2, g, Some(s2)).unwrap();
        assert_eq!(m.len(), 1);
        m.leave(2, g, Some(s1)).unwrap();
        assert!(m.is_empty());
        assert_eq!(m.kernel().ops.len(), 4);
        assert_eq!(m.kernel().ops[3], (McastOp::LeaveSource, 2, g, Some(s1)));
    }

    #[test]
    fn block_and_unblock_are_counted() {
        let mut m = table();
        let g = ip("239.192.0.5");
        let s = ip("10.77.0.9");
        m.join(2, g, None).unwrap();
        m.block(2, g, s).unwrap();
        m.block(2, g, s).unwrap();
        m.unblock(2, g, s).unwrap();
        assert_eq!(m.page(None, 1).0[0].sources, vec![(s, 1)]);
        m.unblock(2, g, s).unwrap();
        assert!(m.page(None, 1).0[0].sources.is_empty());
        let ops: Vec<_> = m.kernel().ops.iter().map(|o| o.0).collect();
        assert_eq!(
            ops,
            vec![McastOp::JoinGroup, McastOp::Block, McastOp::Unblock]
        );
        assert!(matches!(m.unblock(2, g, s), Err(Error::NotJoined(_))));
    }

    #[test]
    fn kernel_failure_leaves_no_phantom_entry() {
        let mut m = table();
        let g = ip("239.192.0.6");
        m.kernel.fail_next = true;
        let e = m.join(2, g, Some(ip("10.77.0.1"))).unwrap_err();
        assert_eq!(e.code(), "os_error");
        assert!(m.is_empty());
        m.kernel.fail_next = true;
        assert!(m.join(2, g, None).is_err());
        assert!(m.is_empty(), "a failed ASM join leaves nothing behind");
    }

    #[test]
    fn limits_are_enforced() {
        let mut m = Memberships::new(Fake::default(), 2, 2);
        m.join(1, ip("239.192.0.1"), None).unwrap();
        m.join(1, ip("239.192.0.2"), None).unwrap();
        assert!(matches!(
            m.join(1, ip("239.192.0.3"), None),
            Err(Error::Limit(_))
        ));
        let g = ip("239.192.0.1");
        m.block(1, g, ip("10.0.0.1")).unwrap();
        m.block(1, g, ip("10.0.0.2")).unwrap();
        assert!(matches!(
            m.block(1, g, ip("10.0.0.3")),
            Err(Error::Limit(_))
        ));
    }

    #[test]
    fn paging_walks_everything_once() {
        let mut m = table();
        for i in 0..25u8 {
            m.join(u32::from(i % 3) + 1, IpAddr::from([239, 192, 1, i]), None)
                .unwrap();
        }
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let (page, more) = m.page(cursor, 7);
            assert!(page.len() <= 7);
            cursor = page.last().map(|v| (v.ifindex, v.group));
            seen.extend(page.into_iter().map(|v| (v.ifindex, v.group)));
            if !more {
                break;
            }
        }
        assert_eq!(seen.len(), 25);
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, seen);
    }

    #[test]
    fn forget_interface_drops_its_entries() {
        let mut m = table();
        m.join(4, ip("239.192.0.1"), None).unwrap();
        m.join(5, ip("239.192.0.1"), None).unwrap();
        assert_eq!(m.forget_interface(4), vec![ip("239.192.0.1")]);
        assert_eq!(m.len(), 1);
    }
}

//! The syscall seam: every `unsafe` call of the control crate lives here
//! (peer credentials, multicast socket options, netlink sockets, SCM_RIGHTS).
//! Each wrapper takes and returns safe types.

#![expect(
    unsafe_code,
    reason = "thin wrappers around libc calls that std does not expose"
)]

use std::io;
use std::mem::{size_of, zeroed};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Credentials of the process at the other end of a Unix socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCred {
    /// Process id.
    pub pid: i32,
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cvt_size(r: libc::ssize_t) -> io::Result<usize> {
    usize::try_from(r).map_err(|_| io::Error::last_os_error())
}

/// `getsockopt(SO_PEERCRED)` on a connected Unix stream socket.
pub fn peer_cred(fd: BorrowedFd<'_>) -> io::Result<PeerCred> {
    // SAFETY: ucred is plain data; all-zero is a valid value.
    let mut cred: libc::ucred = unsafe { zeroed() };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: fd is a live socket borrowed for the call; cred/len point to a
    // properly sized, writable ucred and its length.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    })?;
    Ok(PeerCred {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
}

/// Effective uid of this process.
pub fn geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Sets owner group and mode of a path (`chown(path, -1, gid)` when `gid` is given, then `chmod`).
pub fn chown_group(path: &std::path::Path, gid: u32) -> io::Result<()> {
    std::os::unix::fs::chown(path, None, Some(gid))
}

/// Multicast membership operations (the `MCAST_*` socket options, RFC 3678).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum McastOp {
    /// MCAST_JOIN_GROUP (any-source, EXCLUDE {})
    JoinGroup,
    /// MCAST_LEAVE_GROUP
    LeaveGroup,
    /// MCAST_JOIN_SOURCE_GROUP (INCLUDE mode)
    JoinSource,
    /// MCAST_LEAVE_SOURCE_GROUP
    LeaveSource,
    /// MCAST_BLOCK_SOURCE (EXCLUDE mode)
    Block,
    /// MCAST_UNBLOCK_SOURCE
    Unblock,
}

fn sockaddr_storage(addr: IpAddr) -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    match addr {
        IpAddr::V4(a) => {
            // SAFETY: sockaddr_in is plain data; all-zero is valid.
            let mut sin: libc::sockaddr_in = unsafe { zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.octets());
            // SAFETY: sockaddr_storage is larger than and suitably aligned
            // for sockaddr_in; we write one value at its start.
            unsafe { std::ptr::write((&raw mut ss).cast::<libc::sockaddr_in>(), sin) };
        }
        IpAddr::V6(a) => {
            // SAFETY: sockaddr_in6 is plain data; all-zero is valid.
            let mut sin6: libc::sockaddr_in6 = unsafe { zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_addr.s6_addr = a.octets();
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write((&raw mut ss).cast::<libc::sockaddr_in6>(), sin6) };
        }
    }
    ss
}

/// A datagram socket of `group`'s family, used only to hold memberships.
pub fn membership_socket(v6: bool) -> io::Result<OwnedFd> {
    let domain = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    // SAFETY: plain socket(2) call; on success we take ownership of the fd.
    let fd = cvt(unsafe { libc::socket(domain, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Applies one `MCAST_*` option to `sock` for `group` (and `source`) on `ifindex`.
pub fn mcast(
    sock: BorrowedFd<'_>,
    op: McastOp,
    ifindex: u32,
    group: IpAddr,
    source: Option<IpAddr>,
) -> io::Result<()> {
    let level = if group.is_ipv6() {
        libc::IPPROTO_IPV6
    } else {
        libc::IPPROTO_IP
    };
    let name = match op {
        McastOp::JoinGroup => libc::MCAST_JOIN_GROUP,
        McastOp::LeaveGroup => libc::MCAST_LEAVE_GROUP,
        McastOp::JoinSource => libc::MCAST_JOIN_SOURCE_GROUP,
        McastOp::LeaveSource => libc::MCAST_LEAVE_SOURCE_GROUP,
        McastOp::Block => libc::MCAST_BLOCK_SOURCE,
        McastOp::Unblock => libc::MCAST_UNBLOCK_SOURCE,
    };
    let r = match (op, source) {
        (McastOp::JoinGroup | McastOp::LeaveGroup, _) => {
            let req = libc::group_req {
                gr_interface: ifindex,
                gr_group: sockaddr_storage(group),
            };
            // SAFETY: sock is a live socket; req is a fully initialised
            // group_req whose size we pass.
            unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    level,
                    name,
                    (&raw const req).cast(),
                    size_of::<libc::group_req>() as libc::socklen_t,
                )
            }
        }
        (_, Some(src)) => {
            let req = libc::group_source_req {
                gsr_interface: ifindex,
                gsr_group: sockaddr_storage(group),
                gsr_source: sockaddr_storage(src),
            };
            // SAFETY: as above, for group_source_req.
            unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    level,
                    name,
                    (&raw const req).cast(),
                    size_of::<libc::group_source_req>() as libc::socklen_t,
                )
            }
        }
        (_, None) => return Err(io::Error::from(io::ErrorKind::InvalidInput)),
    };
    cvt(r).map(|_| ())
}

/// A raw `NETLINK_ROUTE` socket.
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
}

impl Netlink {
    /// Opens a route netlink socket subscribed to the multicast `groups` bitmask
    /// (0 for request/response use).
    pub fn open(groups: u32) -> io::Result<Self> {
        // SAFETY: plain socket(2) call.
        let fd = cvt(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        })?;
        // SAFETY: fd was just returned by socket(2).
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_nl is plain data; all-zero is valid.
        let mut sa: libc::sockaddr_nl = unsafe { zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        sa.nl_groups = groups;
        // SAFETY: fd is live; sa is an initialised sockaddr_nl of the given size.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const sa).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        })?;
        Ok(Self { fd })
    }

    /// Sends one message to the kernel.
    pub fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_nl is plain data; all-zero (pid 0 = kernel) is valid.
        let mut sa: libc::sockaddr_nl = unsafe { zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: fd is live; msg is a readable buffer of msg.len() bytes;
        // sa is an initialised sockaddr_nl.
        let n = cvt_size(unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&raw const sa).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        })?;
        if n != msg.len() {
            return Err(io::Error::from(io::ErrorKind::WriteZero));
        }
        Ok(())
    }

    /// Receives one datagram (possibly several netlink messages).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: fd is live; buf is writable for buf.len() bytes.
        cvt_size(unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) })
    }

    /// Sets a receive timeout (so monitor threads can notice shutdown).
    pub fn set_read_timeout(&self, d: std::time::Duration) -> io::Result<()> {
        let tv = libc::timeval {
            tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_usec: libc::suseconds_t::from(d.subsec_micros().min(999_999) as i32),
        };
        // SAFETY: fd is live; tv is an initialised timeval of the given size.
        cvt(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        })
        .map(|_| ())
    }
}

/// Receives bytes and up to `max_fds` descriptors passed with SCM_RIGHTS.
/// Descriptors beyond `max_fds` are closed by the kernel (MSG_CTRUNC).
pub fn recv_with_fds(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    max_fds: usize,
) -> io::Result<(usize, Vec<OwnedFd>)> {
    const MAX: usize = 64;
    let max_fds = max_fds.min(MAX);
    // Control buffer large enough for MAX descriptors, u64-aligned.
    let mut cbuf = [0u64; (MAX * 4 + 64) / 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is valid.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE((max_fds * size_of::<RawFd>()) as u32) } as usize;
    msg.msg_controllen = space.min(std::mem::size_of_val(&cbuf));
    // SAFETY: fd is live; msg points to valid iovec and control buffers that
    // outlive the call; MSG_CMSG_CLOEXEC marks received fds close-on-exec.
    let n = cvt_size(unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) })?;
    let mut fds = Vec::new();
    // SAFETY: msg was filled by recvmsg; the CMSG_* macros walk the control
    // buffer within msg_controllen.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: cmsg is non-null and points into cbuf (CMSG_FIRSTHDR/NXTHDR).
        let hdr = unsafe { &*cmsg };
        if hdr.cmsg_level == libc::SOL_SOCKET && hdr.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: CMSG_LEN(0) is a pure computation.
            let base = unsafe { libc::CMSG_LEN(0) } as usize;
            let count = (hdr.cmsg_len as usize).saturating_sub(base) / size_of::<RawFd>();
            // SAFETY: CMSG_DATA points at `count` RawFds inside cbuf.
            let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<RawFd>();
            for i in 0..count {
                // SAFETY: i < count, within the cmsg; read_unaligned because
                // CMSG_DATA need not be aligned for RawFd.
                let raw = unsafe { std::ptr::read_unaligned(data.add(i)) };
                // SAFETY: the kernel installed this fd for us; we own it now.
                fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        }
        // SAFETY: msg and cmsg are valid as above.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    Ok((n, fds))
}

/// Sends bytes with descriptors attached (SCM_RIGHTS). Used by clients and tests.
pub fn send_with_fds(fd: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    const MAX: usize = 64;
    if fds.len() > MAX {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let mut cbuf = [0u64; (MAX * 4 + 64) / 8];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is valid.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let bytes = (fds.len() * size_of::<RawFd>()) as u32;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        // SAFETY: pure computation.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(bytes) } as usize;
        // SAFETY: msg_control/msg_controllen describe cbuf, which is large
        // enough for one SCM_RIGHTS header with up to MAX fds.
        let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        if cmsg.is_null() {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // SAFETY: cmsg points at the start of cbuf (checked non-null).
        unsafe {
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(bytes) as usize;
            let p = libc::CMSG_DATA(cmsg).cast::<RawFd>();
            for (i, f) in fds.iter().enumerate() {
                std::ptr::write_unaligned(p.add(i), f.as_raw_fd());
            }
        }
    }
    // SAFETY: fd is live; msg describes valid buffers for the call.
    cvt_size(unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) })
}

/// What the kernel says about an AF_XDP socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XskInfo {
    /// Bound in zero-copy mode.
    pub zero_copy: bool,
}

/// Checks that `fd` is an AF_XDP socket (`SO_DOMAIN`) and reads its
/// `XDP_OPTIONS`. The kernel offers no way to read back the interface and
/// queue an AF_XDP socket is bound to (no getsockname; sock_diag only with
/// CONFIG_XDP_SOCKETS_DIAG), so those stay the caller's declaration.
pub fn xsk_info(fd: BorrowedFd<'_>) -> io::Result<XskInfo> {
    let mut domain: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: fd is live for the call; domain/len describe a writable c_int.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            (&raw mut domain).cast(),
            &mut len,
        )
    })?;
    if domain != libc::AF_XDP {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an AF_XDP socket",
        ));
    }
    // SAFETY: xdp_options is plain data; all-zero is valid.
    let mut opts: libc::xdp_options = unsafe { zeroed() };
    let mut olen = size_of::<libc::xdp_options>() as libc::socklen_t;
    // SAFETY: fd is live; opts/olen describe a writable xdp_options.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            libc::XDP_OPTIONS,
            (&raw mut opts).cast(),
            &mut olen,
        )
    })?;
    Ok(XskInfo {
        zero_copy: opts.flags & libc::XDP_OPTIONS_ZEROCOPY != 0,
    })
}

static TERMINATE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_terminate(_sig: libc::c_int) {
    // Async-signal-safe: a single atomic store.
    TERMINATE.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Installs SIGTERM/SIGINT handlers that only set a flag, read with
/// [`terminate_requested`]. SIGPIPE is ignored (writes report EPIPE).
pub fn install_termination_handlers() -> io::Result<()> {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: sigaction is plain data; all-zero is valid (empty mask).
        let mut sa: libc::sigaction = unsafe { zeroed() };
        sa.sa_sigaction = on_terminate as *const () as libc::sighandler_t;
        // SAFETY: sa is initialised; the handler is async-signal-safe.
        cvt(unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) })?;
    }
    // SAFETY: setting SIGPIPE to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    Ok(())
}

/// Whether SIGTERM or SIGINT arrived since [`install_termination_handlers`].
pub fn terminate_requested() -> bool {
    TERMINATE.load(std::sync::atomic::Ordering::Relaxed)
}

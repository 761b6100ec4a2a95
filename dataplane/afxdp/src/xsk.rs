//! AF_XDP sockets over a memmap2 UMEM, with xdpilone for the kernel rings.
//!
//! This is the only module of the crate with `unsafe` code.
//!
//! # Frame ownership
//!
//! The UMEM is cut into `frames` chunks of `frame_size` bytes. At any time
//! each chunk is owned by exactly one party:
//!
//! * user space, as a [`Frame`] value (not `Clone`, not `Copy`; only this
//!   module creates one, once per chunk at start, and again when the kernel
//!   hands a chunk back through the RX or completion ring), or
//! * the kernel, from the moment a `Frame` is *moved* into the fill or TX
//!   ring (the value is consumed) until the chunk's address comes back on
//!   the RX or completion ring.
//!
//! The bytes of a chunk are reachable only through `&mut Frame` (or while
//! processing its RX descriptor), so a chunk the kernel holds cannot be
//! read or written by us, and the same chunk cannot be lent twice. The kernel
//! side of the rule — it returns each address it was given exactly once — is
//! the AF_XDP contract; addresses are still bounds-checked on return.
//!
//! # Pools
//!
//! Half the chunks serve reception (all of them sit in the fill ring or the
//! RX ring, or are being processed), half transmission (free list, TX ring,
//! completion ring). The fill ring is sized to hold every RX chunk and is
//! topped up after every receive batch, so reception never starves for
//! buffers; completions are reclaimed whenever the TX free list runs dry and
//! on every flush.

use core::num::NonZeroU32;
use core::ptr::NonNull;
use std::ffi::CString;
use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::time::Duration;

use memmap2::{MmapMut, MmapOptions};
use xdpilone::xdp::XdpDesc;
use xdpilone::{
    DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem as XUmem, UmemConfig, User,
};

use crate::link::{Link, TxOutcome};

const SOL_XDP: libc::c_int = 283;
/// Transmit descriptors committed to the TX ring at once (one wake-up).
pub const TX_BATCH: usize = 64;
const XDP_OPTIONS: libc::c_int = 8;
const XDP_OPTIONS_ZEROCOPY: u32 = 1;

/// Which data path the kernel uses for a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindMode {
    /// The NIC DMAs straight into the UMEM.
    ZeroCopy,
    /// The kernel copies frames between its buffers and the UMEM (veth,
    /// drivers without XSK pool support, generic XDP).
    Copy,
}

impl BindMode {
    /// `"zero-copy"` or `"copy"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            BindMode::ZeroCopy => "zero-copy",
            BindMode::Copy => "copy",
        }
    }
}

/// What the caller asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindPreference {
    /// Try zero-copy, fall back to copy mode.
    Auto,
    /// Zero-copy or fail.
    ZeroCopy,
    /// Copy mode only.
    Copy,
}

/// Socket geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XskConfig {
    /// Number of UMEM chunks (power of two, at least 64); half receive, half transmit.
    pub frames: u32,
    /// Chunk size: 2048 or 4096.
    pub frame_size: u32,
    /// Zero-copy preference.
    pub bind: BindPreference,
    /// Ask for huge pages for the UMEM (falls back to 4 KiB pages).
    pub huge_pages: bool,
}

/// Default UMEM chunks per socket ([`XskConfig::frames`]): half receive, half transmit.
pub const DEFAULT_FRAMES: u32 = 16384;

impl Default for XskConfig {
    fn default() -> Self {
        Self {
            // 8192 receive chunks (16 MiB of 2048 B): a burst of 8192 frames queues in
            // the RX ring while the worker is behind. With 4096 (2048 to receive), an
            // unpaced 64 B sender at ~100 000 msg/s overran both receivers of
            // scripts/test-overload (10-30 % of ODATA lost at the ring, all repaired);
            // with 16384, none of 8 bursts of 20 000-50 000 messages lost one (docs/defaults.md).
            frames: DEFAULT_FRAMES,
            frame_size: 2048,
            bind: BindPreference::Auto,
            huge_pages: true,
        }
    }
}

/// Errors opening or running a socket.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    /// Bad configuration.
    #[error("invalid AF_XDP configuration: {0}")]
    Config(&'static str),
    /// Interface lookup failed.
    #[error("interface {name}: {err}")]
    Interface {
        /// Interface name.
        name: String,
        /// OS error.
        err: io::Error,
    },
    /// A setup step failed.
    #[error("AF_XDP {step} on {iface} queue {queue}: {err}")]
    Setup {
        /// Which step (umem, socket, fill/completion rings, rx/tx rings, bind).
        step: &'static str,
        /// Interface.
        iface: String,
        /// Queue.
        queue: u32,
        /// OS error.
        err: io::Error,
    },
    /// Mapping the UMEM failed.
    #[error("UMEM mmap of {bytes} bytes: {err}")]
    Mmap {
        /// Size asked for.
        bytes: usize,
        /// OS error.
        err: io::Error,
    },
}

/// A UMEM chunk owned by user space. See the module documentation.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    idx: u32,
}

/// Counters of one socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XskStats {
    /// Frames received.
    pub rx_frames: u64,
    /// RX descriptors whose address or length was out of bounds (ignored).
    pub rx_bad_desc: u64,
    /// Frames queued for transmission.
    pub tx_frames: u64,
    /// Completions reclaimed.
    pub tx_completed: u64,
    /// Times no TX chunk was free.
    pub tx_no_buffer: u64,
    /// Kernel wake-ups issued (need_wakeup).
    pub wakeups: u64,
}

/// The kernel's `struct xdp_statistics` of a socket (Linux >= 5.9 fills every
/// field; older kernels leave the last three zero and add RX-ring-full drops to
/// `rx_dropped`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Frames dropped for the socket other than for an invalid descriptor: no fill-ring
    /// buffer (copy mode), frame larger than a chunk.
    pub rx_dropped: u64,
    /// Invalid descriptors on the RX ring.
    pub rx_invalid_descs: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub rx_fill_ring_empty_descs: u64,
    /// Invalid descriptors on the TX ring.
    pub tx_invalid_descs: u64,
    /// Times the kernel found the TX ring empty.
    pub tx_ring_empty_descs: u64,
}

/// One AF_XDP socket bound to one interface queue, with its own UMEM, fill
/// and completion rings. Field order matters: the rings and sockets are
/// dropped (closing the descriptor) before the memory mapping.
pub struct XskSocket {
    rx: RingRx,
    tx: RingTx,
    device: DeviceQueue,
    _user: User,
    _socket: Socket,
    _umem: XUmem,
    /// Base of the UMEM; never turned into a reference covering the whole
    /// area (the kernel writes chunks it owns concurrently).
    base: NonNull<u8>,
    area_len: usize,
    frame_size: u32,
    rx_free: Vec<Frame>,
    tx_free: Vec<Frame>,
    tx_pending: Vec<XdpDesc>,
    mode: BindMode,
    huge: bool,
    iface: String,
    queue: u32,
    stats: XskStats,
    _area: MmapMut,
}

impl core::fmt::Debug for XskSocket {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("XskSocket")
            .field("iface", &self.iface)
            .field("queue", &self.queue)
            .field("mode", &self.mode)
            .field("huge_pages", &self.huge)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

// SAFETY: every field is owned by the socket; `base` points into `_area`,
// which moves with it. The xdpilone rings are `Send`. Nothing is shared with
// another thread (the type is not `Sync`).
unsafe impl Send for XskSocket {}

fn map_area(bytes: usize, huge: bool) -> Result<(MmapMut, bool), XskError> {
    if huge
        && let Ok(m) = MmapOptions::new()
            .len(bytes)
            .huge(Some(21))
            .populate()
            .map_anon()
    {
        return Ok((m, true));
    }
    MmapOptions::new()
        .len(bytes)
        .populate()
        .map_anon()
        .map(|m| (m, false))
        .map_err(|err| XskError::Mmap { bytes, err })
}

fn os_err(e: xdpilone::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.get_raw().abs())
}

impl XskSocket {
    /// Creates a socket on `iface` queue `queue`, with RX and TX rings, and
    /// binds it (zero-copy first under [`BindPreference::Auto`]). The
    /// classifier must redirect into it (xpgmd does that on `register`).
    pub fn open(iface: &str, queue: u32, config: XskConfig) -> Result<Self, XskError> {
        if config.frames < 64 || !config.frames.is_power_of_two() {
            return Err(XskError::Config("frames must be a power of two >= 64"));
        }
        if config.frame_size != 2048 && config.frame_size != 4096 {
            return Err(XskError::Config("frame_size must be 2048 or 4096"));
        }
        let attempts: &[BindMode] = match config.bind {
            BindPreference::Auto => &[BindMode::ZeroCopy, BindMode::Copy],
            BindPreference::ZeroCopy => &[BindMode::ZeroCopy],
            BindPreference::Copy => &[BindMode::Copy],
        };
        let mut last = None;
        for &mode in attempts {
            match Self::open_mode(iface, queue, config, mode) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(XskError::Config("no bind mode")))
    }

    fn open_mode(
        iface: &str,
        queue: u32,
        config: XskConfig,
        mode: BindMode,
    ) -> Result<Self, XskError> {
        let setup = |step: &'static str| {
            let iface = iface.to_string();
            move |e: xdpilone::Errno| XskError::Setup {
                step,
                iface,
                queue,
                err: os_err(e),
            }
        };
        let bytes = config.frames as usize * config.frame_size as usize;
        let (mut area, huge) = map_area(bytes, config.huge_pages)?;
        let base = NonNull::new(area.as_mut_ptr()).ok_or(XskError::Config("null mapping"))?;
        let region = NonNull::slice_from_raw_parts(base, bytes);
        let half = config.frames / 2;
        let umem_config = UmemConfig {
            fill_size: half,
            complete_size: half,
            frame_size: config.frame_size,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: `region` is the whole anonymous mapping `area`, page
        // aligned (mmap), `bytes` long; `area` is stored in the returned
        // socket and dropped after the xdpilone objects that refer to it.
        let umem =
            unsafe { XUmem::new(umem_config, region) }.map_err(setup("umem registration"))?;
        let mut info = IfInfo::invalid();
        let cname = CString::new(iface).map_err(|_| XskError::Config("interface name has NUL"))?;
        info.from_name(&cname).map_err(|e| XskError::Interface {
            name: iface.to_string(),
            err: os_err(e),
        })?;
        info.set_queue(queue);
        let socket = Socket::with_shared(&info, &umem).map_err(setup("socket"))?;
        let device = umem
            .fq_cq(&socket)
            .map_err(setup("fill/completion rings"))?;
        let bind_flags = SocketConfig::XDP_BIND_NEED_WAKEUP
            | match mode {
                BindMode::ZeroCopy => SocketConfig::XDP_BIND_ZEROCOPY,
                BindMode::Copy => SocketConfig::XDP_BIND_COPY,
            };
        let user = umem
            .rx_tx(
                &socket,
                &SocketConfig {
                    rx_size: NonZeroU32::new(half),
                    tx_size: NonZeroU32::new(half),
                    bind_flags,
                },
            )
            .map_err(setup("rx/tx rings"))?;
        let rx = user.map_rx().map_err(setup("rx ring mmap"))?;
        let tx = user.map_tx().map_err(setup("tx ring mmap"))?;
        umem.bind(&user).map_err(setup(match mode {
            BindMode::ZeroCopy => "zero-copy bind",
            BindMode::Copy => "copy-mode bind",
        }))?;
        let mode = match read_zero_copy(rx.as_raw_fd()) {
            Some(true) => BindMode::ZeroCopy,
            Some(false) => BindMode::Copy,
            None => mode,
        };
        let mut s = XskSocket {
            rx,
            tx,
            device,
            _user: user,
            _socket: socket,
            _umem: umem,
            base,
            area_len: bytes,
            frame_size: config.frame_size,
            rx_free: (0..half).map(|idx| Frame { idx }).collect(),
            tx_free: (half..config.frames).map(|idx| Frame { idx }).collect(),
            tx_pending: Vec::with_capacity(TX_BATCH.min(half as usize)),
            mode,
            huge,
            iface: iface.to_string(),
            queue,
            stats: XskStats::default(),
            _area: area,
        };
        s.refill();
        Ok(s)
    }

    /// Zero-copy or copy mode, as the kernel reports it.
    pub fn mode(&self) -> BindMode {
        self.mode
    }

    /// Whether the UMEM sits on huge pages.
    pub fn huge_pages(&self) -> bool {
        self.huge
    }

    /// Interface name.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// Queue id.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// Counters.
    pub fn stats(&self) -> XskStats {
        self.stats
    }

    /// The kernel's counters for this socket (`getsockopt(XDP_STATISTICS)`, one
    /// system call): drops for want of fill-ring buffers or RX-ring room. `None` if
    /// the kernel refuses the call.
    pub fn kernel_stats(&self) -> Option<KernelStats> {
        self._user.statistics_v2().ok().map(|s| KernelStats {
            rx_dropped: s.rx_dropped,
            rx_invalid_descs: s.rx_invalid_descs,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
            tx_invalid_descs: s.tx_invalid_descs,
            tx_ring_empty_descs: s.tx_ring_empty_descs,
        })
    }

    /// The socket's descriptor, to hand to xpgmd with `register`.
    pub fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the descriptor is owned by this socket (through xdpilone's
        // shared `SocketFd`) and stays open for as long as `self` is borrowed.
        unsafe { BorrowedFd::borrow_raw(self.raw_fd()) }
    }

    fn raw_fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }

    /// The bytes of a user-owned frame.
    pub fn frame_mut<'a>(&'a mut self, frame: &'a mut Frame) -> &'a mut [u8] {
        let fs = self.frame_size as usize;
        let start = frame.idx as usize * fs;
        debug_assert!(start + fs <= self.area_len);
        // SAFETY: `frame` is the unique user-side owner of chunk `idx`
        // (module invariant), so no other reference to these bytes exists and
        // the kernel does not access them; the range is inside the mapping
        // (idx < frames, checked when the Frame was created); the mapping
        // lives as long as `self`.
        unsafe { core::slice::from_raw_parts_mut(self.base.as_ptr().add(start), fs) }
    }

    /// Moves every free RX chunk into the fill ring.
    fn refill(&mut self) {
        if self.rx_free.is_empty() {
            return;
        }
        let fs = u64::from(self.frame_size);
        let n = u32::try_from(self.rx_free.len()).unwrap_or(u32::MAX);
        let mut w = self.device.fill(n);
        while let Some(f) = self.rx_free.last() {
            if !w.insert_once(u64::from(f.idx) * fs) {
                break;
            }
            // The chunk now belongs to the kernel: drop our handle.
            self.rx_free.pop();
        }
        w.commit();
    }

    /// Takes chunks back from the completion ring.
    fn reclaim(&mut self) {
        let n = u32::try_from(self.tx_free.capacity()).unwrap_or(u32::MAX);
        let fs = u64::from(self.frame_size);
        let frames = u32::try_from(self.area_len as u64 / fs).unwrap_or(0);
        let mut c = self.device.complete(n);
        while let Some(addr) = c.read() {
            let idx = u32::try_from(addr / fs).unwrap_or(u32::MAX);
            if idx < frames {
                self.tx_free.push(Frame { idx });
                self.stats.tx_completed += 1;
            }
        }
        c.release();
    }

    /// Takes a free TX chunk (reclaiming completions if none is free).
    pub fn tx_alloc(&mut self) -> Option<Frame> {
        if self.tx_free.is_empty() {
            self.reclaim();
        }
        self.tx_free.pop()
    }

    /// Gives an unused TX chunk back.
    pub fn tx_release(&mut self, frame: Frame) {
        self.tx_free.push(frame);
    }

    /// Queues `frame` (its first `len` bytes) for transmission; it belongs to
    /// the kernel from now on and comes back through the completion ring.
    pub fn tx_submit(&mut self, frame: Frame, len: usize) {
        let len = len.min(self.frame_size as usize) as u32;
        self.tx_pending.push(XdpDesc {
            addr: u64::from(frame.idx) * u64::from(self.frame_size),
            len,
            options: 0,
        });
        self.stats.tx_frames += 1;
        if self.tx_pending.len() == self.tx_pending.capacity() {
            self.commit_tx();
        }
    }

    fn commit_tx(&mut self) {
        if self.tx_pending.is_empty() {
            return;
        }
        let n = u32::try_from(self.tx_pending.len()).unwrap_or(u32::MAX);
        let mut done = 0usize;
        {
            let mut w = self.tx.transmit(n);
            for d in &self.tx_pending {
                if !w.insert_once(*d) {
                    break;
                }
                done += 1;
            }
            w.commit();
        }
        self.tx_pending.drain(..done);
        if self.tx.needs_wakeup() || !self.tx_pending.is_empty() {
            self.tx.wake();
            self.stats.wakeups += 1;
        }
    }
}

/// `poll(2)` on `fds` (entries with a negative fd are ignored by the
/// kernel) for at most `timeout` (rounded up to a millisecond).
pub fn poll_fds(fds: &mut [libc::pollfd], timeout: Duration) {
    let ms = libc::c_int::try_from(timeout.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX);
    let n = libc::nfds_t::try_from(fds.len()).unwrap_or(0);
    // SAFETY: `fds` is a valid, exclusively borrowed array of `n` pollfds.
    unsafe {
        libc::poll(fds.as_mut_ptr(), n, ms);
    }
}

/// Chunk index, start and length of an RX descriptor, if inside the UMEM
/// and inside one chunk.
fn chunk_of(frame_size: u32, area_len: usize, addr: u64, len: u32) -> Option<(u32, usize, usize)> {
    let fs = u64::from(frame_size);
    let idx = u32::try_from(addr / fs).ok()?;
    let off = usize::try_from(addr % fs).ok()?;
    let len = len as usize;
    let start = usize::try_from(addr).ok()?;
    (off + len <= frame_size as usize && start.checked_add(len)? <= area_len)
        .then_some((idx, start, len))
}

fn read_zero_copy(fd: RawFd) -> Option<bool> {
    #[repr(C)]
    #[derive(Default)]
    struct XdpOptions {
        flags: u32,
    }
    let mut opts = XdpOptions::default();
    let mut len = core::mem::size_of::<XdpOptions>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `opts`, which is a
    // valid, properly sized and aligned out-parameter.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            SOL_XDP,
            XDP_OPTIONS,
            (&mut opts as *mut XdpOptions).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(opts.flags & XDP_OPTIONS_ZEROCOPY != 0)
}

impl Link for XskSocket {
    fn recv(&mut self, max: u32, f: &mut dyn FnMut(&[u8])) -> u32 {
        let mut n = 0;
        {
            let mut r = self.rx.receive(max);
            while let Some(desc) = r.read() {
                n += 1;
                let Some((idx, start, len)) =
                    chunk_of(self.frame_size, self.area_len, desc.addr, desc.len)
                else {
                    self.stats.rx_bad_desc += 1;
                    continue;
                };
                // SAFETY: the kernel handed chunk `idx` back to user space
                // through the RX ring (it no longer writes it); no `Frame`
                // for it exists yet (it was consumed when put in the fill
                // ring), so these bytes are not aliased; `start + len` is
                // inside the mapping (checked by `chunk_of`).
                let bytes =
                    unsafe { core::slice::from_raw_parts(self.base.as_ptr().add(start), len) };
                f(bytes);
                self.rx_free.push(Frame { idx });
            }
            r.release();
        }
        self.stats.rx_frames += u64::from(n);
        if n > 0 {
            self.refill();
        }
        n
    }

    fn send(&mut self, f: &mut dyn FnMut(&mut [u8]) -> Option<usize>) -> TxOutcome {
        let Some(mut frame) = self.tx_alloc() else {
            self.stats.tx_no_buffer += 1;
            return TxOutcome::NoBuffer;
        };
        match f(self.frame_mut(&mut frame)) {
            Some(len) => {
                self.tx_submit(frame, len);
                TxOutcome::Queued
            }
            None => {
                self.tx_release(frame);
                TxOutcome::Cancelled
            }
        }
    }

    fn flush(&mut self) {
        self.commit_tx();
        self.reclaim();
        self.refill();
        if self.device.needs_wakeup() {
            self.device.wake();
            self.stats.wakeups += 1;
        }
    }

    fn wait(&mut self, timeout: Duration) {
        let mut pfd = [libc::pollfd {
            fd: self.raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        poll_fds(&mut pfd, timeout);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rx_descriptors_are_bounds_checked() {
        // 4 chunks of 2048 bytes.
        let area = 4 * 2048;
        assert_eq!(chunk_of(2048, area, 0, 60), Some((0, 0, 60)));
        assert_eq!(chunk_of(2048, area, 2048 + 256, 100), Some((1, 2304, 100)));
        assert_eq!(chunk_of(2048, area, 3 * 2048, 2048), Some((3, 6144, 2048)));
        // Crossing a chunk boundary, beyond the area, overflowing.
        assert_eq!(chunk_of(2048, area, 2000, 100), None);
        assert_eq!(chunk_of(2048, area, 4 * 2048, 10), None);
        assert_eq!(chunk_of(2048, area, u64::MAX - 5, 10), None);
    }
}

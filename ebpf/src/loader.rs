//! Loading the classifier, attaching it to an interface and managing its maps.

use std::os::fd::AsRawFd;

use aya::maps::{HashMap, MapError, PerCpuArray, PerCpuHashMap, XskMap};
use aya::programs::{ProgramError, TestRun, TestRunOptions, Xdp, XdpMode, xdp::XdpLinkId};
use aya::{Ebpf, EbpfError};

use crate::abi::{self, Config, Counter, FlowKey, FlowStats, SteerKey, SteerValue, UdpPort};

/// Errors from loading, attaching or updating the classifier.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object could not be loaded into the kernel (verifier, permissions).
    #[error("loading the classifier: {0}")]
    Load(#[from] EbpfError),
    /// A program operation (load, attach, test run) failed.
    #[error("classifier program: {0}")]
    Program(#[from] ProgramError),
    /// A map operation failed.
    #[error("classifier map: {0}")]
    Map(#[from] MapError),
    /// The object lacks a map or program it must have.
    #[error("classifier object has no {0}")]
    Missing(&'static str),
    /// A slot index is outside the XSKMAP.
    #[error("socket slot {0} out of range (max {max})", max = abi::MAX_SLOTS)]
    SlotRange(u32),
    /// The program is already attached.
    #[error("classifier already attached to ifindex {0}")]
    AlreadyAttached(u32),
    /// UDP port 0 cannot be an encapsulation port.
    #[error("UDP port 0 cannot carry PGM")]
    UdpPortZero,
    /// The UDP port map is full.
    #[error("UDP port map full ({max} ports): port {port} not added", max = abi::MAX_UDP_PORTS)]
    UdpPortsFull {
        /// The port that did not fit.
        port: u16,
    },
    /// Every requested attach mode failed.
    #[error("attaching to ifindex {ifindex} failed: {source}")]
    Attach {
        /// Interface index.
        ifindex: u32,
        /// The last error.
        source: ProgramError,
    },
}

/// How to attach: the operator's request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AttachMode {
    /// Native (driver) mode, falling back to generic.
    #[default]
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode only.
    Generic,
}

/// How the classifier actually got attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachedMode {
    /// Driver mode.
    Native,
    /// Generic (skb) mode.
    Generic,
}

impl AttachedMode {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            AttachedMode::Native => "native",
            AttachedMode::Generic => "generic",
        }
    }
}

/// Totals of the per-CPU counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Counters {
    /// Sum over CPUs, indexed by [`Counter`] as `usize`.
    pub values: [u64; abi::COUNTER_MAX as usize],
}

impl Counters {
    /// The total of one counter.
    pub fn get(&self, c: Counter) -> u64 {
        self.values.get(c as usize).copied().unwrap_or(0)
    }
}

/// Whether a map operation failed because the key is absent: aya reports a
/// lookup of a missing key as `KeyNotFound` but a delete as the syscall's
/// `ENOENT`.
fn not_found(e: &MapError) -> bool {
    match e {
        MapError::KeyNotFound => true,
        MapError::SyscallError(s) => s.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

/// The compiled classifier object (ELF, BPF target), embedded at build time.
pub static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xpgm_classifier.o"));

/// One loaded instance of the classifier with its own maps. xpgmd loads one
/// per interface, so XSKMAP slots and steering entries are per interface.
#[derive(Debug)]
pub struct Classifier {
    ebpf: Ebpf,
    attached: Option<(u32, XdpLinkId, AttachedMode)>,
    /// XSKMAP slots holding a socket, as set and cleared through this handle
    /// (the kernel refuses user-space lookups in an XSKMAP, so this record is
    /// the only way to list them; every update goes through `set_socket` /
    /// `clear_socket`).
    slots: std::collections::BTreeSet<u32>,
}

impl Classifier {
    /// Loads the program and its maps into the kernel (not yet attached) and
    /// puts `config`'s default UDP encapsulation ports into the port map (with
    /// [`abi::UDP_PORT_DEFAULT`], no sessions).
    pub fn load(config: Config) -> Result<Self, Error> {
        let mut ebpf = Ebpf::load(OBJECT)?;
        let prog: &mut Xdp = ebpf
            .program_mut(abi::PROGRAM_NAME)
            .ok_or(Error::Missing("program"))?
            .try_into()?;
        prog.load()?;
        let mut c = Self {
            ebpf,
            attached: None,
            slots: std::collections::BTreeSet::new(),
        };
        for port in config.default_ports() {
            c.set_udp_port(
                port,
                UdpPort {
                    sessions: 0,
                    flags: abi::UDP_PORT_DEFAULT,
                },
            )?;
        }
        Ok(c)
    }

    fn prog(&mut self) -> Result<&mut Xdp, Error> {
        Ok(self
            .ebpf
            .program_mut(abi::PROGRAM_NAME)
            .ok_or(Error::Missing("program"))?
            .try_into()?)
    }

    /// The kernel's id of the loaded program (as shown by `ip link` / bpftool).
    pub fn program_id(&self) -> Result<u32, Error> {
        let prog: &Xdp = self
            .ebpf
            .program(abi::PROGRAM_NAME)
            .ok_or(Error::Missing("program"))?
            .try_into()?;
        Ok(prog.info()?.id())
    }

    /// Attaches to `ifindex`. `Auto` tries native then generic.
    pub fn attach(&mut self, ifindex: u32, mode: AttachMode) -> Result<AttachedMode, Error> {
        if let Some((i, _, _)) = &self.attached {
            let i = *i;
            return Err(Error::AlreadyAttached(i));
        }
        let tries: &[(XdpMode, AttachedMode)] = match mode {
            AttachMode::Auto => &[
                (XdpMode::Driver, AttachedMode::Native),
                (XdpMode::Skb, AttachedMode::Generic),
            ],
            AttachMode::Native => &[(XdpMode::Driver, AttachedMode::Native)],
            AttachMode::Generic => &[(XdpMode::Skb, AttachedMode::Generic)],
        };
        let mut last = None;
        for &(xm, am) in tries {
            match self.prog()?.attach_to_if_index(ifindex, xm) {
                Ok(id) => {
                    self.attached = Some((ifindex, id, am));
                    return Ok(am);
                }
                Err(e) => last = Some(e),
            }
        }
        match last {
            Some(source) => Err(Error::Attach { ifindex, source }),
            None => Err(Error::Missing("attach mode")),
        }
    }

    /// Where and how the classifier is attached, if it is.
    pub fn attached(&self) -> Option<(u32, AttachedMode)> {
        self.attached.as_ref().map(|(i, _, m)| (*i, *m))
    }

    /// Detaches from the interface (no-op when not attached).
    pub fn detach(&mut self) -> Result<(), Error> {
        if let Some((_, id, _)) = self.attached.take() {
            self.prog()?.detach(id)?;
        }
        Ok(())
    }

    fn udp_map(&mut self) -> Result<HashMap<&mut aya::maps::MapData, u16, UdpPort>, Error> {
        let map = self
            .ebpf
            .map_mut(abi::MAP_UDP_PORTS)
            .ok_or(Error::Missing("UDP port map"))?;
        Ok(HashMap::try_from(map)?)
    }

    /// Puts `port` into the UDP port map (UDP to it is then parsed as PGM) or
    /// replaces its value. Refuses port 0 and a new port when the map holds
    /// [`abi::MAX_UDP_PORTS`] already.
    pub fn set_udp_port(&mut self, port: u16, value: UdpPort) -> Result<(), Error> {
        if port == 0 {
            return Err(Error::UdpPortZero);
        }
        let mut h = self.udp_map()?;
        let present = match h.get(&port, 0) {
            Ok(_) => true,
            Err(MapError::KeyNotFound) => false,
            Err(e) => return Err(e.into()),
        };
        if !present && h.keys().count() >= abi::MAX_UDP_PORTS as usize {
            return Err(Error::UdpPortsFull { port });
        }
        match h.insert(port, value, 0) {
            Ok(()) => Ok(()),
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::E2BIG) => {
                Err(Error::UdpPortsFull { port })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes `port` from the UDP port map (UDP to it is then not PGM);
    /// returns whether it was there.
    pub fn remove_udp_port(&mut self, port: u16) -> Result<bool, Error> {
        let mut h = self.udp_map()?;
        match h.remove(&port) {
            Ok(()) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Every port in the UDP port map with its value, in ascending order.
    pub fn udp_ports(&self) -> Result<Vec<(u16, UdpPort)>, Error> {
        let map = self
            .ebpf
            .map(abi::MAP_UDP_PORTS)
            .ok_or(Error::Missing("UDP port map"))?;
        let h: HashMap<_, u16, UdpPort> = HashMap::try_from(map)?;
        let mut v = h.iter().collect::<Result<Vec<_>, _>>()?;
        v.sort_by_key(|(p, _)| *p);
        Ok(v)
    }

    /// Inserts or replaces a steering entry.
    pub fn insert_steer(&mut self, key: SteerKey, value: SteerValue) -> Result<(), Error> {
        if value.slot >= abi::MAX_SLOTS {
            return Err(Error::SlotRange(value.slot));
        }
        let map = self
            .ebpf
            .map_mut(abi::MAP_STEER)
            .ok_or(Error::Missing("steering map"))?;
        let mut h: HashMap<_, SteerKey, SteerValue> = HashMap::try_from(map)?;
        h.insert(key, value, 0)?;
        Ok(())
    }

    /// Removes a steering entry; returns whether it existed.
    pub fn remove_steer(&mut self, key: &SteerKey) -> Result<bool, Error> {
        let map = self
            .ebpf
            .map_mut(abi::MAP_STEER)
            .ok_or(Error::Missing("steering map"))?;
        let mut h: HashMap<_, SteerKey, SteerValue> = HashMap::try_from(map)?;
        match h.remove(key) {
            Ok(()) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Every steering entry.
    pub fn steer_entries(&self) -> Result<Vec<(SteerKey, SteerValue)>, Error> {
        let map = self
            .ebpf
            .map(abi::MAP_STEER)
            .ok_or(Error::Missing("steering map"))?;
        let h: HashMap<_, SteerKey, SteerValue> = HashMap::try_from(map)?;
        Ok(h.iter().collect::<Result<Vec<_>, _>>()?)
    }

    /// Puts an AF_XDP socket into `slot`.
    pub fn set_socket(&mut self, slot: u32, fd: impl AsRawFd) -> Result<(), Error> {
        if slot >= abi::MAX_SLOTS {
            return Err(Error::SlotRange(slot));
        }
        let map = self
            .ebpf
            .map_mut(abi::MAP_XSKS)
            .ok_or(Error::Missing("xsk map"))?;
        let mut x = XskMap::try_from(map)?;
        x.set(slot, fd, 0)?;
        self.slots.insert(slot);
        Ok(())
    }

    /// Empties `slot`.
    pub fn clear_socket(&mut self, slot: u32) -> Result<(), Error> {
        if slot >= abi::MAX_SLOTS {
            return Err(Error::SlotRange(slot));
        }
        let map = self
            .ebpf
            .map_mut(abi::MAP_XSKS)
            .ok_or(Error::Missing("xsk map"))?;
        let mut x = XskMap::try_from(map)?;
        match x.unset(slot) {
            Ok(()) | Err(MapError::KeyNotFound) => {
                self.slots.remove(&slot);
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// XSKMAP slots that hold a socket, in ascending order. The kernel does
    /// not allow reading an XSKMAP from user space (lookups fail with
    /// `EOPNOTSUPP`), so this is the record of successful
    /// [`Classifier::set_socket`] / [`Classifier::clear_socket`] calls on this
    /// handle, the only writer of the map.
    pub fn sockets_in_use(&self) -> Vec<u32> {
        self.slots.iter().copied().collect()
    }

    /// Sums the per-CPU counters.
    pub fn counters(&self) -> Result<Counters, Error> {
        let map = self
            .ebpf
            .map(abi::MAP_COUNTERS)
            .ok_or(Error::Missing("counters map"))?;
        let arr: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        let mut out = Counters::default();
        for (i, slot) in out.values.iter_mut().enumerate() {
            let idx = u32::try_from(i).unwrap_or(u32::MAX);
            *slot = arr.get(&idx, 0)?.iter().copied().sum();
        }
        Ok(out)
    }

    /// Every flow in the flow table with its counters summed over CPUs.
    pub fn flows(&self) -> Result<Vec<(FlowKey, FlowStats)>, Error> {
        let map = self
            .ebpf
            .map(abi::MAP_FLOWS)
            .ok_or(Error::Missing("flows map"))?;
        let h: PerCpuHashMap<_, FlowKey, FlowStats> = PerCpuHashMap::try_from(map)?;
        let mut out = Vec::new();
        for r in h.iter() {
            let (k, per_cpu) = match r {
                Ok(x) => x,
                // An entry evicted between key walk and lookup.
                Err(MapError::KeyNotFound) => continue,
                Err(e) => return Err(e.into()),
            };
            let mut sum = FlowStats::default();
            for v in per_cpu.iter() {
                sum.add(v);
            }
            out.push((k, sum));
        }
        out.sort_by_key(|a| a.0);
        Ok(out)
    }

    /// Frames steered to `slot` so far (summed over CPUs).
    pub fn slot_hits(&self, slot: u32) -> Result<u64, Error> {
        if slot >= abi::MAX_SLOTS {
            return Err(Error::SlotRange(slot));
        }
        let map = self
            .ebpf
            .map(abi::MAP_SLOT_HITS)
            .ok_or(Error::Missing("slot hits map"))?;
        let arr: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        Ok(arr.get(&slot, 0)?.iter().copied().sum())
    }

    /// Runs the program once on `frame` with `BPF_PROG_TEST_RUN` (queue 0)
    /// and returns the XDP verdict.
    pub fn test_run(&self, frame: &[u8]) -> Result<u32, Error> {
        let prog: &Xdp = self
            .ebpf
            .program(abi::PROGRAM_NAME)
            .ok_or(Error::Missing("program"))?
            .try_into()?;
        let r = prog.test_run(TestRunOptions {
            data_in: Some(frame),
            ..TestRunOptions::default()
        })?;
        Ok(r.return_value)
    }
}

impl Classifier {
    /// Runs the program `repeat` times on `frame` (`BPF_PROG_TEST_RUN`) and
    /// returns the verdict and the kernel's average time per run.
    pub fn test_run_timed(
        &self,
        frame: &[u8],
        repeat: u32,
    ) -> Result<(u32, std::time::Duration), Error> {
        let prog: &Xdp = self
            .ebpf
            .program(abi::PROGRAM_NAME)
            .ok_or(Error::Missing("program"))?
            .try_into()?;
        let r = prog.test_run(TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..TestRunOptions::default()
        })?;
        Ok((r.return_value, r.duration))
    }
}

impl Drop for Classifier {
    fn drop(&mut self) {
        // Detach explicitly so a netlink-attached program does not outlive us.
        let _ = self.detach();
    }
}

/// XDP verdicts, as returned by [`Classifier::test_run`].
pub mod verdict {
    /// XDP_ABORTED
    pub const ABORTED: u32 = 0;
    /// XDP_DROP
    pub const DROP: u32 = 1;
    /// XDP_PASS
    pub const PASS: u32 = 2;
    /// XDP_TX
    pub const TX: u32 = 3;
    /// XDP_REDIRECT
    pub const REDIRECT: u32 = 4;
}

//! `xpgm-flood`: hostile PGM traffic for tests, from a raw IPv4 socket with spoofed
//! source addresses.
//!
//! ```text
//! xpgm-flood --group G [--iface IF] [--dport P] [--rate PPS] [--duration-ms MS]
//!            [--seed S] [--from ADDR] MODE...
//! modes (combinable; packets are taken from the enabled modes in turn):
//!   --naks [--to SRC] [--tsi TSI] [--nak-list N] [--in-window-pct PCT]
//!   --spmr [--to SRC] [--tsi TSI]
//!   --spoof-sources N [--spoof-base ADDR] [--size BYTES]
//!   --malformed DIR
//! ```
//!
//! * `--naks`: valid NAKs (checksum, NLAs, ports and TSI as a receiver sends them) to
//!   the source's unicast address for random sequence numbers: `--in-window-pct` of them
//!   (default 10) fall in the source's transmit window as last seen on the group, the
//!   rest are random 32-bit sequence numbers (almost all outside it). `--nak-list N`
//!   adds an OPT_NAK_LIST of N (≤ 62) further random sequences to every NAK.
//! * `--spmr`: valid SPMRs to the source's unicast address.
//! * `--spoof-sources N`: valid ODATA and SPM to the group from N distinct TSIs and
//!   source addresses (`--spoof-base`, default 10.77.1.1, then the following addresses).
//!   Each spoofed source behaves like a real one: ODATA numbered 0, 1, 2, ... carrying
//!   `--size` bytes that start with the message index (u64 big-endian, as `xpgm send`),
//!   each followed by an SPM whose lead is that ODATA's sequence and whose path NLA is
//!   the spoofed address.
//! * `--malformed DIR`: every file of DIR (the decoder's fuzz corpus,
//!   `dataplane/core/fuzz/corpus/decode`) as PGM payload to the group, plus mutated
//!   valid packets: bad checksum, truncated, bad options, wrong TSDU length, bad NLA
//!   family, unknown type.
//!
//! The NAK/SPMR target: `--to` (the source's unicast address) and `--tsi`
//! (`g0.g1.g2.g3.g4.g5.sport`, as `xpgm send --json` prints it). Either one left out
//! is learnt from the first SPM or ODATA seen on the group for `--dport` (from `--to`
//! when given): the tool joins the group and, while flooding, keeps reading it to track
//! the source's window.
//!
//! Upstream packets (NAK, SPMR) carry source address `--from` (default 10.77.0.250);
//! malformed packets carry `--from` too. The IP header is built here (IPPROTO_RAW
//! implies IP_HDRINCL); Linux fills its checksum. Multicast leaves by `--iface` or by
//! the route to the group. Runs until `--duration-ms` (default 1000) has passed, as
//! fast as the socket takes packets or paced to `--rate` packets per second, then
//! prints one JSON line: packets sent per kind, send errors, elapsed seconds.

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use rustix::io::Errno;
use rustix::net::{self, AddressFamily, Protocol, RecvFlags, SendFlags, SocketType, sockopt};
use xpgm_core::rng::Rng;
use xpgm_core::seq::Sqn;
use xpgm_core::wire::framing::Ipv4Repr;
use xpgm_core::wire::{
    self, Body, Data, Gsi, Nak, NakList, Nla, Options, PacketRepr, Spm, Tsi, checksum,
};

/// IPv4 header length (no options).
const IP_HDR: usize = 20;
/// Largest packet built.
const BUF: usize = 2048;
/// IP protocol number of IPPROTO_RAW (send-only, implies IP_HDRINCL).
const IPPROTO_RAW: u32 = 255;
/// Packets sent between two reads of the group (window tracking) and two rate checks.
const BATCH: u64 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "xpgm-flood",
    about = "Floods a PGM session with NAKs, SPMRs, spoofed sources or malformed packets"
)]
struct Args {
    /// Multicast group of the session.
    #[arg(long)]
    group: Ipv4Addr,
    /// Interface for multicast (default: the route to the group).
    #[arg(long)]
    iface: Option<String>,
    /// Data-destination port of the session.
    #[arg(long, default_value_t = wire::DEFAULT_DATA_PORT)]
    dport: u16,
    /// Packets per second (default: as fast as the socket takes them).
    #[arg(long)]
    rate: Option<u64>,
    /// How long to flood.
    #[arg(long, default_value_t = 1000)]
    duration_ms: u64,
    /// Seed of the random sequence numbers, TSIs and mutations.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Source address of NAKs, SPMRs and malformed packets (the spoofed receiver).
    #[arg(long, default_value = "10.77.0.250")]
    from: Ipv4Addr,
    /// Send valid NAKs for random sequence numbers.
    #[arg(long)]
    naks: bool,
    /// Send valid SPMRs.
    #[arg(long)]
    spmr: bool,
    /// The source's unicast address (NAK/SPMR destination; learnt from the group if absent).
    #[arg(long)]
    to: Option<Ipv4Addr>,
    /// The source's TSI `g0.g1.g2.g3.g4.g5.sport` (learnt from the group if absent).
    #[arg(long, value_parser = parse_tsi)]
    tsi: Option<Tsi>,
    /// OPT_NAK_LIST entries added to every NAK (0..=62).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=62))]
    nak_list: u8,
    /// Percentage of NAKs aimed inside the source's window (as last seen on the group).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(0..=100))]
    in_window_pct: u8,
    /// How long to wait for the source's first SPM/ODATA when learning `--to`/`--tsi`.
    #[arg(long, default_value_t = 10_000)]
    learn_timeout_ms: u64,
    /// Send valid SPM+ODATA from this many spoofed sources.
    #[arg(long, default_value_t = 0)]
    spoof_sources: u32,
    /// First spoofed source address (the others follow it).
    #[arg(long, default_value = "10.77.1.1")]
    spoof_base: Ipv4Addr,
    /// ODATA payload bytes of the spoofed sources (at least 8).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(8..=1400))]
    size: u16,
    /// Replay every file of this directory (fuzz corpus) plus mutated valid packets.
    #[arg(long)]
    malformed: Option<PathBuf>,
}

fn parse_tsi(s: &str) -> Result<Tsi, String> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 7 {
        return Err(format!(
            "TSI '{s}' must be g0.g1.g2.g3.g4.g5.sport (7 dot-separated numbers)"
        ));
    }
    let mut gsi = [0u8; 6];
    for (g, p) in gsi.iter_mut().zip(&parts) {
        *g = p
            .parse()
            .map_err(|_| format!("TSI '{s}': '{p}' is not a byte"))?;
    }
    let sport = parts[6]
        .parse()
        .map_err(|_| format!("TSI '{s}': '{}' is not a port", parts[6]))?;
    Ok(Tsi {
        gsi: Gsi(gsi),
        sport,
    })
}

/// What the tool knows of the flooded source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Target {
    addr: Ipv4Addr,
    tsi: Tsi,
    dport: u16,
    group: Ipv4Addr,
    /// Window as last seen (trail, lead); `None` until a packet showed one.
    window: Option<(Sqn, Sqn)>,
}

impl Target {
    /// Updates the window from a downstream packet of the target's session.
    fn observe(&mut self, pkt: &PacketRepr<'_>) {
        if pkt.tsi() != self.tsi {
            return;
        }
        let w = match pkt.body {
            Body::Spm(s) => (s.trail, s.lead),
            Body::Odata(d) => (d.trail, d.sqn),
            _ => return,
        };
        // Only move forward: a late SPM must not shrink what ODATA already showed.
        self.window = Some(match self.window {
            Some((_, lead)) if lead.gt(w.1) => (w.0, lead),
            _ => w,
        });
    }
}

/// A NAK for random sequences (the first in the window with `in_window_pct` chance).
fn nak_packet(t: &Target, rng: &mut Rng, list: u8, in_window_pct: u8) -> PacketRepr<'static> {
    let pick = |rng: &mut Rng| match t.window {
        Some((trail, lead)) if rng.below(100) < u64::from(in_window_pct) => {
            let span = u64::from(lead.0.wrapping_sub(trail.0)) + 1;
            Sqn(trail.0.wrapping_add(rng.below(span) as u32))
        }
        _ => Sqn(rng.next_u64() as u32),
    };
    let sqn = pick(rng);
    let mut nak_list = NakList::default();
    for _ in 0..list {
        let _ = nak_list.push(pick(rng));
    }
    PacketRepr {
        // Upstream: sport is the data-destination port, dport the TSI's port.
        sport: t.dport,
        dport: t.tsi.sport,
        gsi: t.tsi.gsi,
        body: Body::Nak(Nak {
            sqn,
            source: Nla::V4(t.addr),
            group: Nla::V4(t.group),
        }),
        options: Options {
            nak_list,
            ..Options::default()
        },
    }
}

fn spmr_packet(t: &Target) -> PacketRepr<'static> {
    PacketRepr {
        sport: t.dport,
        dport: t.tsi.sport,
        gsi: t.tsi.gsi,
        body: Body::Spmr,
        options: Options::default(),
    }
}

/// One spoofed source: address, TSI and next sequence.
#[derive(Clone, Copy, Debug)]
struct Spoofed {
    addr: Ipv4Addr,
    tsi: Tsi,
    next: Sqn,
    /// Next packet is the SPM announcing the last ODATA.
    spm_due: bool,
    spm_sqn: Sqn,
}

fn spoofed_sources(n: u32, base: Ipv4Addr, rng: &mut Rng) -> Vec<Spoofed> {
    let base = u32::from(base);
    (0..n)
        .map(|i| {
            let r = rng.next_u64().to_be_bytes();
            Spoofed {
                addr: Ipv4Addr::from(base.wrapping_add(i)),
                tsi: Tsi {
                    gsi: Gsi([r[0], r[1], r[2], r[3], r[4], r[5]]),
                    sport: u16::from_be_bytes([r[6], r[7]]).max(1),
                },
                next: Sqn(0),
                spm_due: false,
                spm_sqn: Sqn(0),
            }
        })
        .collect()
}

/// The next packet of spoofed source `s`: ODATA `next` (payload = its index, then fill),
/// then an SPM whose lead is that ODATA.
fn spoofed_packet<'a>(s: &mut Spoofed, dport: u16, payload: &'a mut [u8]) -> PacketRepr<'a> {
    let options = Options::default();
    if s.spm_due {
        s.spm_due = false;
        let sqn = s.spm_sqn;
        s.spm_sqn = sqn.next();
        return PacketRepr {
            sport: s.tsi.sport,
            dport,
            gsi: s.tsi.gsi,
            body: Body::Spm(Spm {
                sqn,
                trail: Sqn(0),
                lead: s.next.prev(),
                path: Nla::V4(s.addr),
            }),
            options,
        };
    }
    let sqn = s.next;
    s.next = sqn.next();
    s.spm_due = true;
    payload[..8].copy_from_slice(&u64::from(sqn.0).to_be_bytes());
    PacketRepr {
        sport: s.tsi.sport,
        dport,
        gsi: s.tsi.gsi,
        body: Body::Odata(Data {
            sqn,
            trail: Sqn(0),
            payload,
        }),
        options,
    }
}

/// Rewrites the PGM checksum of `pkt` after a mutation (so the mutation, not the
/// checksum, is what the decoder sees).
fn refill_checksum(pkt: &mut [u8]) {
    if pkt.len() < wire::HEADER_LEN {
        return;
    }
    pkt[6..8].fill(0);
    let c = checksum(pkt);
    let c = if c == 0 { 0xffff } else { c };
    pkt[6..8].copy_from_slice(&c.to_be_bytes());
}

/// Kinds of mutated valid packet, in the order they are cycled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mutation {
    BadChecksum,
    Truncated,
    BadOptions,
    WrongTsduLength,
    BadAfi,
    UnknownType,
}

const MUTATIONS: [Mutation; 6] = [
    Mutation::BadChecksum,
    Mutation::Truncated,
    Mutation::BadOptions,
    Mutation::WrongTsduLength,
    Mutation::BadAfi,
    Mutation::UnknownType,
];

/// Writes mutation `m` of a valid packet of a random session into `out`; returns its length.
fn mutated_packet(
    m: Mutation,
    rng: &mut Rng,
    group: Ipv4Addr,
    dport: u16,
    out: &mut [u8],
) -> usize {
    let r = rng.next_u64().to_be_bytes();
    let gsi = Gsi([r[0], r[1], r[2], r[3], r[4], r[5]]);
    let sport = u16::from_be_bytes([r[6], r[7]]).max(1);
    let payload = [0x5au8; 32];
    let odata = PacketRepr {
        sport,
        dport,
        gsi,
        body: Body::Odata(Data {
            sqn: Sqn(rng.next_u64() as u32),
            trail: Sqn(0),
            payload: &payload,
        }),
        options: Options::default(),
    };
    let Ok(len) = odata.emit(out) else {
        return 0;
    };
    match m {
        Mutation::BadChecksum => {
            // Any payload change breaks the checksum.
            out[len - 1] ^= 0xff;
            len
        }
        Mutation::Truncated => {
            // Header + half the ODATA header, checksum valid for what is left.
            let cut = wire::HEADER_LEN + 4;
            refill_checksum(&mut out[..cut]);
            cut
        }
        Mutation::BadOptions => {
            // Options-present flag with an options area that is not OPT_LENGTH.
            out[5] |= wire::flags::OPT_PRESENT;
            refill_checksum(&mut out[..len]);
            len
        }
        Mutation::WrongTsduLength => {
            // TSDU length (header bytes 14..16) larger than the payload.
            let tsdu = u16::from_be_bytes([out[14], out[15]]).wrapping_add(5);
            out[14..16].copy_from_slice(&tsdu.to_be_bytes());
            refill_checksum(&mut out[..len]);
            len
        }
        Mutation::BadAfi => {
            let nak = PacketRepr {
                sport: dport,
                dport: sport,
                gsi,
                body: Body::Nak(Nak {
                    sqn: Sqn(0),
                    source: Nla::V4(Ipv4Addr::new(10, 77, 0, 1)),
                    group: Nla::V4(group),
                }),
                options: Options::default(),
            };
            let Ok(len) = nak.emit(out) else {
                return 0;
            };
            // Source NLA AFI (bytes 20..22 after the 16-byte header and 4-byte sqn).
            out[20..22].copy_from_slice(&7u16.to_be_bytes());
            refill_checksum(&mut out[..len]);
            len
        }
        Mutation::UnknownType => {
            out[4] = 0x77;
            refill_checksum(&mut out[..len]);
            len
        }
    }
}

/// Reads every file of `dir` (sorted by name), refusing an empty directory.
fn read_corpus(dir: &std::path::Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read corpus directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for p in names {
        let mut b = std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
        // The payload must fit one unfragmented IPv4 packet.
        b.truncate(BUF - IP_HDR);
        out.push(b);
    }
    if out.is_empty() {
        bail!("corpus directory {} has no files", dir.display());
    }
    Ok(out)
}

/// Wraps PGM bytes in an IPv4 header (protocol 113) in `frame`; returns the frame length.
fn ip_frame(src: Ipv4Addr, dst: Ipv4Addr, frame: &mut [u8], pgm_len: usize) -> Option<usize> {
    let ip = Ipv4Repr {
        src,
        dst,
        protocol: wire::IP_PROTOCOL,
        ttl: 16,
        tos: 0,
        ident: 0,
        payload_len: u16::try_from(pgm_len).ok()?,
    };
    ip.emit(frame).ok()?;
    Some(IP_HDR + pgm_len)
}

fn ifindex(name: &str) -> anyhow::Result<u32> {
    let p = format!("/sys/class/net/{name}/ifindex");
    let s = std::fs::read_to_string(&p)
        .with_context(|| format!("no interface '{name}' (cannot read {p})"))?;
    s.trim()
        .parse()
        .with_context(|| format!("bad ifindex in {p}: {s:?}"))
}

fn pgm_protocol() -> Protocol {
    Protocol::from_raw(
        core::num::NonZeroU32::new(u32::from(wire::IP_PROTOCOL))
            .unwrap_or(core::num::NonZeroU32::MIN),
    )
}

/// The send socket: raw IPv4, IPPROTO_RAW (we write the IP header).
fn tx_socket(ifx: Option<u32>, group: Ipv4Addr) -> anyhow::Result<OwnedFd> {
    let proto = Protocol::from_raw(
        core::num::NonZeroU32::new(IPPROTO_RAW).unwrap_or(core::num::NonZeroU32::MIN),
    );
    let fd = net::socket(AddressFamily::INET, SocketType::RAW, Some(proto))
        .context("cannot open a raw IPv4 socket (needs root / CAP_NET_RAW)")?;
    if let Some(ix) = ifx {
        sockopt::set_ip_multicast_if_with_ifindex(&fd, &group, &Ipv4Addr::UNSPECIFIED, ix)
            .context("IP_MULTICAST_IF")?;
    }
    // Our own spoofed multicast must not come back to our group reader.
    sockopt::set_ip_multicast_loop(&fd, false).context("IP_MULTICAST_LOOP")?;
    let _ = sockopt::set_socket_send_buffer_size(&fd, 4 << 20);
    Ok(fd)
}

/// The group reader: raw IPv4 protocol 113, joined to the group.
fn rx_socket(ifx: Option<u32>, group: Ipv4Addr) -> anyhow::Result<OwnedFd> {
    let fd = net::socket(AddressFamily::INET, SocketType::RAW, Some(pgm_protocol()))
        .context("cannot open a raw PGM socket (needs root / CAP_NET_RAW)")?;
    sockopt::set_ip_add_membership_with_ifindex(
        &fd,
        &group,
        &Ipv4Addr::UNSPECIFIED,
        ifx.unwrap_or(0),
    )
    .context("cannot join the group")?;
    Ok(fd)
}

/// Reads one packet from `fd` (with `timeout`, or without blocking if zero) and passes
/// a downstream PGM packet of `dport` from `from` (if given) to `f`.
fn read_group(
    fd: &OwnedFd,
    buf: &mut [u8],
    timeout: Duration,
    dport: u16,
    from: Option<Ipv4Addr>,
    mut f: impl FnMut(Ipv4Addr, &PacketRepr<'_>),
) -> anyhow::Result<bool> {
    let mut pfd = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
    let ts = rustix::event::Timespec::try_from(timeout).unwrap_or(rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    });
    let n = rustix::event::poll(&mut pfd, Some(&ts)).context("poll")?;
    if n == 0 {
        return Ok(false);
    }
    let (len, _) = match net::recv(fd, &mut *buf, RecvFlags::DONTWAIT) {
        Ok(r) => r,
        Err(Errno::AGAIN | Errno::INTR) => return Ok(false),
        Err(e) => return Err(e).context("recv"),
    };
    let Ok((ip, pgm)) = Ipv4Repr::parse(&buf[..len.min(buf.len())]) else {
        return Ok(true);
    };
    if from.is_some_and(|a| a != ip.src) {
        return Ok(true);
    }
    if let Ok(pkt) = PacketRepr::parse(pgm)
        && pkt.is_downstream()
        && pkt.dport == dport
        && matches!(pkt.body, Body::Spm(_) | Body::Odata(_))
    {
        f(ip.src, &pkt);
    }
    Ok(true)
}

/// Learns the source's address and TSI from its first SPM/ODATA on the group.
fn learn(args: &Args, rx: &OwnedFd) -> anyhow::Result<Target> {
    let deadline = Instant::now() + Duration::from_millis(args.learn_timeout_ms);
    let mut buf = vec![0u8; 65536];
    loop {
        let now = Instant::now();
        if now >= deadline {
            bail!(
                "no SPM or ODATA for port {} on {} within {} ms: cannot learn the source (give --to and --tsi)",
                args.dport,
                args.group,
                args.learn_timeout_ms
            );
        }
        let mut found = None;
        read_group(
            rx,
            &mut buf,
            deadline - now,
            args.dport,
            args.to,
            |src, pkt| {
                if args.tsi.is_none_or(|t| t == pkt.tsi()) {
                    let addr = match pkt.body {
                        Body::Spm(Spm {
                            path: Nla::V4(a), ..
                        }) => a,
                        _ => src,
                    };
                    let mut t = Target {
                        addr: args.to.unwrap_or(addr),
                        tsi: pkt.tsi(),
                        dport: args.dport,
                        group: args.group,
                        window: None,
                    };
                    t.observe(pkt);
                    found = Some(t);
                }
            },
        )?;
        if let Some(t) = found {
            return Ok(t);
        }
    }
}

/// Packets sent, per kind.
#[derive(Debug, Default)]
struct Counts {
    nak: u64,
    nak_sqns: u64,
    nak_in_window: u64,
    spmr: u64,
    spm: u64,
    odata: u64,
    corpus: u64,
    mutated: u64,
    send_errors: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Nak,
    Spmr,
    Spoof,
    Malformed,
}

fn run(args: &Args) -> anyhow::Result<()> {
    let mut modes = Vec::new();
    if args.naks {
        modes.push(Mode::Nak);
    }
    if args.spmr {
        modes.push(Mode::Spmr);
    }
    if args.spoof_sources > 0 {
        modes.push(Mode::Spoof);
    }
    if args.malformed.is_some() {
        modes.push(Mode::Malformed);
    }
    if modes.is_empty() {
        bail!("nothing to send: give --naks, --spmr, --spoof-sources N and/or --malformed DIR");
    }
    if !args.group.is_multicast() {
        bail!("--group {} is not a multicast address", args.group);
    }
    let ifx = args.iface.as_deref().map(ifindex).transpose()?;
    let tx = tx_socket(ifx, args.group)?;
    let corpus = match &args.malformed {
        Some(d) => read_corpus(d)?,
        None => Vec::new(),
    };
    let mut rng = Rng::new(args.seed);
    let upstream = args.naks || args.spmr;
    let (rx, mut target) = if upstream {
        match (args.to, args.tsi) {
            (Some(addr), Some(tsi)) => (
                // Still read the group for the window (NAKs aimed inside it).
                rx_socket(ifx, args.group).ok(),
                Some(Target {
                    addr,
                    tsi,
                    dport: args.dport,
                    group: args.group,
                    window: None,
                }),
            ),
            _ => {
                let rx = rx_socket(ifx, args.group)?;
                let t = learn(args, &rx)?;
                (Some(rx), Some(t))
            }
        }
    } else {
        (None, None)
    };
    let mut spoofed = spoofed_sources(args.spoof_sources, args.spoof_base, &mut rng);
    let mut payload = vec![0xa5u8; usize::from(args.size)];
    let mut frame = vec![0u8; BUF];
    let mut rbuf = vec![0u8; 65536];
    let mut c = Counts::default();
    let (mut spoof_ix, mut mal_ix) = (0usize, 0usize);
    let duration = Duration::from_millis(args.duration_ms);
    let start = Instant::now();
    let mut sent: u64 = 0;
    'outer: loop {
        // Every BATCH packets: stop, pace, and track the source's window.
        if sent.is_multiple_of(BATCH) {
            let el = start.elapsed();
            if el >= duration {
                break;
            }
            if let Some(rate) = args.rate {
                let due = Duration::from_secs_f64(sent as f64 / rate.max(1) as f64);
                if due > el {
                    std::thread::sleep((due - el).min(duration - el));
                    if start.elapsed() >= duration {
                        break 'outer;
                    }
                }
            }
            if let (Some(rx), Some(t)) = (&rx, &mut target) {
                while read_group(rx, &mut rbuf, Duration::ZERO, args.dport, None, |_, p| {
                    t.observe(p)
                })? {}
            }
        }
        let mode = modes[(sent % modes.len() as u64) as usize];
        sent += 1;
        let pgm = &mut frame[IP_HDR..];
        let (src, dst, len) = match mode {
            Mode::Nak | Mode::Spmr => {
                let Some(t) = &target else { continue };
                let repr = if mode == Mode::Nak {
                    let r = nak_packet(t, &mut rng, args.nak_list, args.in_window_pct);
                    if let Body::Nak(n) = r.body {
                        let sqns = core::iter::once(&n.sqn).chain(r.options.nak_list.as_slice());
                        for s in sqns {
                            c.nak_sqns += 1;
                            if t.window.is_some_and(|(tr, ld)| s.ge(tr) && s.le(ld)) {
                                c.nak_in_window += 1;
                            }
                        }
                    }
                    c.nak += 1;
                    r
                } else {
                    c.spmr += 1;
                    spmr_packet(t)
                };
                let len = repr.emit(pgm).context("emit")?;
                (args.from, t.addr, len)
            }
            Mode::Spoof => {
                let s = &mut spoofed[spoof_ix];
                let was_spm = s.spm_due;
                let addr = s.addr;
                let repr = spoofed_packet(s, args.dport, &mut payload);
                let len = repr.emit(pgm).context("emit")?;
                if was_spm {
                    c.spm += 1;
                    // Next source after each ODATA+SPM pair.
                    spoof_ix = (spoof_ix + 1) % spoofed.len();
                } else {
                    c.odata += 1;
                }
                (addr, args.group, len)
            }
            Mode::Malformed => {
                // Every corpus file, then every mutation, then again.
                let i = mal_ix % (corpus.len() + MUTATIONS.len());
                mal_ix += 1;
                let len = if let Some(b) = corpus.get(i) {
                    c.corpus += 1;
                    pgm[..b.len()].copy_from_slice(b);
                    b.len()
                } else {
                    c.mutated += 1;
                    let m = MUTATIONS[i - corpus.len()];
                    mutated_packet(m, &mut rng, args.group, args.dport, pgm)
                };
                (args.from, args.group, len)
            }
        };
        let Some(flen) = ip_frame(src, dst, &mut frame, len) else {
            c.send_errors += 1;
            continue;
        };
        let to = SocketAddrV4::new(dst, 0);
        match net::sendto(&tx, &frame[..flen], SendFlags::empty(), &to) {
            Ok(_) => {}
            Err(Errno::NOBUFS | Errno::AGAIN | Errno::INTR) => {
                c.send_errors += 1;
                std::thread::yield_now();
            }
            Err(e) => return Err(e).with_context(|| format!("sendto {dst}")),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let total = c.nak + c.spmr + c.spm + c.odata + c.corpus + c.mutated;
    let j = serde_json::json!({
        "secs": secs,
        "packets": total,
        "pps": if secs > 0.0 { total as f64 / secs } else { 0.0 },
        "nak": c.nak,
        "nak_sqns": c.nak_sqns,
        "nak_sqns_in_window": c.nak_in_window,
        "spmr": c.spmr,
        "spm": c.spm,
        "odata": c.odata,
        "spoofed_sources": args.spoof_sources,
        "malformed_corpus": c.corpus,
        "malformed_mutated": c.mutated,
        "send_errors": c.send_errors,
        "target": target.map(|t| serde_json::json!({
            "addr": t.addr.to_string(),
            "tsi": t.tsi.to_string(),
            "window": t.window.map(|(a, b)| [a.0, b.0]),
        })),
        "from": IpAddr::V4(args.from).to_string(),
    });
    println!("{j}");
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xpgm-flood: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            addr: Ipv4Addr::new(10, 77, 0, 1),
            tsi: Tsi {
                gsi: Gsi([1, 2, 3, 4, 5, 6]),
                sport: 4242,
            },
            dport: 7500,
            group: Ipv4Addr::new(239, 192, 5, 1),
            window: Some((Sqn(100), Sqn(199))),
        }
    }

    fn emit(p: &PacketRepr<'_>) -> Vec<u8> {
        let mut b = vec![0u8; BUF];
        let n = p.emit(&mut b).expect("emit");
        b.truncate(n);
        b
    }

    #[test]
    fn tsi_parses_as_xpgm_prints_it() {
        let t = target().tsi;
        assert_eq!(parse_tsi(&t.to_string()), Ok(t));
        assert!(parse_tsi("1.2.3.4.5.6").is_err());
        assert!(parse_tsi("1.2.3.4.5.256.7").is_err());
    }

    #[test]
    fn naks_decode_as_naks_for_the_session_with_some_in_the_window() {
        let t = target();
        let mut rng = Rng::new(7);
        let (mut inside, mut total) = (0, 0);
        for _ in 0..1000 {
            let b = emit(&nak_packet(&t, &mut rng, 5, 30));
            let p = PacketRepr::parse(&b).expect("valid NAK");
            let Body::Nak(n) = p.body else {
                panic!("not a NAK: {p:?}")
            };
            // What a source checks: TSI (ports un-swapped), upstream, sport = dport, NLAs.
            assert_eq!(p.tsi(), t.tsi);
            assert!(!p.is_downstream());
            assert_eq!(p.sport, t.dport);
            assert_eq!(n.source, Nla::V4(t.addr));
            assert_eq!(n.group, Nla::V4(t.group));
            assert_eq!(p.options.nak_list.len(), 5);
            for s in core::iter::once(&n.sqn).chain(p.options.nak_list.as_slice()) {
                total += 1;
                if s.ge(Sqn(100)) && s.le(Sqn(199)) {
                    inside += 1;
                }
            }
        }
        // 30 % aimed inside (random 32-bit values almost never land in 100 numbers).
        assert!((1500..2100).contains(&inside), "{inside} of {total} inside");
    }

    #[test]
    fn naks_without_a_known_window_are_random() {
        let mut t = target();
        t.window = None;
        let mut rng = Rng::new(1);
        let a = emit(&nak_packet(&t, &mut rng, 0, 100));
        let b = emit(&nak_packet(&t, &mut rng, 0, 100));
        assert_ne!(a, b);
        assert!(PacketRepr::parse(&a).is_ok());
    }

    #[test]
    fn spmr_decodes_as_spmr_for_the_session() {
        let t = target();
        let b = emit(&spmr_packet(&t));
        let p = PacketRepr::parse(&b).expect("valid SPMR");
        assert_eq!(p.body, Body::Spmr);
        assert_eq!(p.tsi(), t.tsi);
        assert_eq!(p.sport, t.dport);
    }

    #[test]
    fn spoofed_sources_are_distinct_and_announce_their_data() {
        let mut rng = Rng::new(3);
        let mut srcs = spoofed_sources(3, Ipv4Addr::new(10, 77, 1, 1), &mut rng);
        assert_eq!(srcs[2].addr, Ipv4Addr::new(10, 77, 1, 3));
        assert_ne!(srcs[0].tsi, srcs[1].tsi);
        let mut payload = vec![0u8; 16];
        let s = &mut srcs[1];
        for i in 0..4u32 {
            let b = emit(&spoofed_packet(s, 7500, &mut payload));
            let p = PacketRepr::parse(&b).expect("valid ODATA");
            let Body::Odata(d) = p.body else {
                panic!("expected ODATA, got {p:?}")
            };
            assert_eq!(d.sqn, Sqn(i));
            assert_eq!(&d.payload[..8], &u64::from(i).to_be_bytes());
            assert_eq!(p.tsi(), s.tsi);
            assert_eq!(p.dport, 7500);
            let b = emit(&spoofed_packet(s, 7500, &mut payload));
            let p = PacketRepr::parse(&b).expect("valid SPM");
            let Body::Spm(spm) = p.body else {
                panic!("expected SPM, got {p:?}")
            };
            assert_eq!(spm.lead, Sqn(i), "SPM lead matches the ODATA just sent");
            assert_eq!(spm.sqn, Sqn(i));
            assert_eq!(spm.path, Nla::V4(Ipv4Addr::new(10, 77, 1, 2)));
        }
    }

    #[test]
    fn every_mutation_is_rejected_by_the_decoder_for_its_reason() {
        let mut rng = Rng::new(9);
        let g = Ipv4Addr::new(239, 192, 5, 1);
        for m in MUTATIONS {
            let mut b = vec![0u8; BUF];
            let n = mutated_packet(m, &mut rng, g, 7500, &mut b);
            assert!(n >= wire::HEADER_LEN, "{m:?}");
            let err = PacketRepr::parse(&b[..n]).expect_err("mutation must not decode");
            let want = match m {
                Mutation::BadChecksum => matches!(err, wire::Error::BadChecksum),
                Mutation::Truncated => matches!(err, wire::Error::Truncated),
                Mutation::BadOptions => {
                    matches!(
                        err,
                        wire::Error::BadOptions
                            | wire::Error::BadOption(_)
                            | wire::Error::Truncated
                    )
                }
                Mutation::WrongTsduLength => {
                    matches!(err, wire::Error::BadLength | wire::Error::Truncated)
                }
                Mutation::BadAfi => matches!(err, wire::Error::BadAfi(7)),
                Mutation::UnknownType => matches!(err, wire::Error::UnknownType(0x77)),
            };
            assert!(want, "{m:?} gave {err:?}");
        }
    }

    #[test]
    fn corpus_is_read_whole_and_empty_dirs_are_refused() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../dataplane/core/fuzz/corpus/decode");
        let c = read_corpus(&dir).expect("corpus");
        let files = std::fs::read_dir(&dir).expect("dir").count();
        assert_eq!(c.len(), files);
        assert!(c.iter().all(|b| b.len() <= BUF - IP_HDR));
        let empty = std::env::temp_dir().join(format!("xpgm-flood-empty-{}", std::process::id()));
        std::fs::create_dir_all(&empty).expect("mkdir");
        assert!(read_corpus(&empty).is_err());
        std::fs::remove_dir(&empty).expect("rmdir");
    }

    #[test]
    fn frames_are_ipv4_pgm_with_a_valid_header() {
        let t = target();
        let mut frame = vec![0u8; BUF];
        let len = spmr_packet(&t).emit(&mut frame[IP_HDR..]).expect("emit");
        let n = ip_frame(Ipv4Addr::new(10, 77, 0, 250), t.addr, &mut frame, len).expect("frame");
        let (ip, pgm) = Ipv4Repr::parse(&frame[..n]).expect("IPv4");
        assert_eq!(ip.protocol, wire::IP_PROTOCOL);
        assert_eq!(ip.src, Ipv4Addr::new(10, 77, 0, 250));
        assert_eq!(pgm.len(), len);
        assert_eq!(PacketRepr::parse(pgm).expect("PGM").body, Body::Spmr);
    }

    #[test]
    fn window_tracking_only_moves_forward() {
        let mut t = target();
        let payload = [0u8; 8];
        let od = PacketRepr {
            sport: t.tsi.sport,
            dport: 7500,
            gsi: t.tsi.gsi,
            body: Body::Odata(Data {
                sqn: Sqn(500),
                trail: Sqn(10),
                payload: &payload,
            }),
            options: Options::default(),
        };
        t.observe(&od);
        assert_eq!(t.window, Some((Sqn(10), Sqn(500))));
        let spm = PacketRepr {
            body: Body::Spm(Spm {
                sqn: Sqn(1),
                trail: Sqn(12),
                lead: Sqn(400),
                path: Nla::V4(t.addr),
            }),
            ..od
        };
        t.observe(&spm);
        assert_eq!(t.window, Some((Sqn(12), Sqn(500))));
        // Another session's packets are not ours.
        let other = PacketRepr {
            gsi: Gsi([9; 6]),
            ..od
        };
        t.observe(&other);
        assert_eq!(t.window, Some((Sqn(12), Sqn(500))));
    }
}

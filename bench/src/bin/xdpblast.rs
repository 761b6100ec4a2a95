//! `xdpblast`: the raw AF_XDP ceiling of `scripts/bench` (case a).
//!
//! ```text
//! xdpblast send --iface IF --group G [--dport P] [--size BYTES] [--count N]
//!               [--rate PPS] [--queue Q] [--socket PATH] [--json]
//! xdpblast sink --iface IF --group G [--dport P] [--count N] [--idle-ms MS]
//!               [--queue Q] [--socket PATH] [--json]
//! ```
//!
//! `send` builds one valid PGM ODATA packet to the group once and transmits it
//! `--count` times from an AF_XDP socket (copied into a UMEM frame behind the
//! Ethernet/IP headers; no protocol engine, no window, no retransmission), as
//! fast as the socket takes it or paced to `--rate` packets per second.
//!
//! `sink` opens an AF_XDP socket registered with the host's xpgmd as a
//! receiver of (group, dport) — the classifier steers the frames to it exactly
//! as it would for `xpgm recv --transport xdp` — and counts the ODATA frames to
//! that port, with no protocol work. It exits after `--count` frames or
//! `--idle-ms` without one (also before the first).
//!
//! Both print one JSON object with `--json` (keys: see `Report`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use xpgm_afxdp::port::{PortConfig, Side, XdpPort};
use xpgm_afxdp::xsk::XskConfig;
use xpgm_core::seq::Sqn;
use xpgm_core::source::Destination;
use xpgm_core::wire::{Body, Data, Gsi, Options, PacketRepr};

/// PGM common header (16) + ODATA header (8).
const PGM_ODATA_OVERHEAD: usize = 24;
/// PGM type code of ODATA.
const TYPE_ODATA: u8 = 0x04;
/// Frames queued between two commits of the TX ring (a copy-mode wake-up
/// transmits at most 32).
const TX_BATCH: u64 = 32;
/// Largest message size accepted (fits one 2048-byte UMEM frame with headers).
const MAX_SIZE: usize = 1400;

#[derive(Debug)]
struct Args {
    send: bool,
    iface: String,
    group: IpAddr,
    dport: u16,
    size: usize,
    count: u64,
    rate: Option<u64>,
    idle_ms: u64,
    queue: u32,
    socket: Option<PathBuf>,
    json: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: xdpblast send --iface IF --group G [--dport P] [--size BYTES] [--count N] \
         [--rate PPS] [--queue Q] [--socket PATH] [--json]\n       \
         xdpblast sink --iface IF --group G [--dport P] [--count N] [--idle-ms MS] \
         [--queue Q] [--socket PATH] [--json]"
    );
    std::process::exit(2)
}

fn num<T: std::str::FromStr>(v: Option<String>, what: &str) -> T {
    match v.as_deref().map(str::parse) {
        Some(Ok(n)) => n,
        _ => {
            eprintln!("xdpblast: bad or missing value for {what}");
            usage()
        }
    }
}

fn parse_args() -> Args {
    let mut it = std::env::args().skip(1);
    let send = match it.next().as_deref() {
        Some("send") => true,
        Some("sink") => false,
        _ => usage(),
    };
    let mut a = Args {
        send,
        iface: String::new(),
        group: IpAddr::from([239, 192, 0, 1]),
        dport: xpgm_core::wire::DEFAULT_DATA_PORT,
        size: 64,
        count: 1_000_000,
        rate: None,
        idle_ms: 3000,
        queue: 0,
        socket: None,
        json: false,
    };
    let mut have_iface = false;
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--iface" => {
                a.iface = it.next().unwrap_or_else(|| usage());
                have_iface = true;
            }
            "--group" => a.group = num(it.next(), "--group"),
            "--dport" => a.dport = num(it.next(), "--dport"),
            "--size" => a.size = num(it.next(), "--size"),
            "--count" => a.count = num(it.next(), "--count"),
            "--rate" => a.rate = Some(num(it.next(), "--rate")),
            "--idle-ms" => a.idle_ms = num(it.next(), "--idle-ms"),
            "--queue" => a.queue = num(it.next(), "--queue"),
            "--socket" => a.socket = Some(PathBuf::from(it.next().unwrap_or_else(|| usage()))),
            "--json" => a.json = true,
            _ => usage(),
        }
    }
    if !have_iface || !a.group.is_multicast() || a.size > MAX_SIZE || a.rate == Some(0) {
        usage();
    }
    a
}

/// Builds the ODATA packet sent by `send`: TSI port = `dport + 1`, sequence 0,
/// payload of `size` bytes.
fn odata(dport: u16, size: usize, buf: &mut [u8]) -> Option<usize> {
    let payload = vec![0xa5u8; size];
    let repr = PacketRepr {
        sport: dport.wrapping_add(1),
        dport,
        gsi: Gsi([0x78, 0x62, 0x6c, 0x61, 0x73, 0x74]),
        body: Body::Odata(Data {
            sqn: Sqn(0),
            trail: Sqn(0),
            payload: &payload,
        }),
        options: Options::default(),
    };
    repr.emit(buf).ok()
}

/// True when `pgm` is an ODATA packet to `dport` (header bytes 2..4 and 4).
fn is_our_odata(pgm: &[u8], dport: u16) -> bool {
    matches!(pgm.get(..5), Some(h) if u16::from_be_bytes([h[2], h[3]]) == dport && h[4] == TYPE_ODATA)
}

fn open(a: &Args, side: Side) -> Result<XdpPort, String> {
    let cfg = PortConfig {
        iface: a.iface.clone(),
        queue: a.queue,
        group: a.group,
        dport: a.dport,
        udp_encap: None,
        ttl: 16,
        tos: xpgm_afxdp::frame::DSCP_EF_TOS,
        xpgmd_socket: a.socket.clone(),
        xsk: XskConfig::default(),
        ring: None,
        sources: Vec::new(),
    };
    XdpPort::open(&cfg, side).map_err(|e| e.to_string())
}

fn run_send(a: &Args) -> Result<serde_json::Value, String> {
    let mut pkt = [0u8; 2048];
    let len = odata(a.dport, a.size, &mut pkt).ok_or("cannot build the ODATA packet")?;
    let pkt = pkt.get(..len).ok_or("packet length")?;
    let mut port = open(a, Side::Source)?;
    let mode = port.socket().mode().as_str();
    let mut nothing = |_: xpgm_core::wire::Nla, _: &[u8]| {};
    let mut retries: u64 = 0;
    // The first packet registers the source with xpgmd (slow: a control-socket
    // round trip); pacing and timing start once it is out.
    let mut sent: u64 = 0;
    while sent == 0 && a.count > 0 {
        if port.send(Destination::Group, pkt) {
            sent = 1;
        } else {
            retries += 1;
            port.recv_batch(0, &mut nothing);
        }
        if let Some(e) = port.take_register_error() {
            return Err(format!("registering with xpgmd: {e}"));
        }
    }
    port.recv_batch(0, &mut nothing);
    let start = Instant::now();
    while sent < a.count {
        if let Some(rate) = a.rate {
            // Pace: never ahead of rate * elapsed (no burst larger than one batch).
            let allowed = (start.elapsed().as_nanos() * u128::from(rate) / 1_000_000_000) as u64;
            if sent > allowed.saturating_add(1) {
                port.recv_batch(0, &mut nothing); // commits what is queued
                std::hint::spin_loop();
                continue;
            }
        }
        if port.send(Destination::Group, pkt) {
            sent += 1;
            if sent.is_multiple_of(TX_BATCH) {
                // Commit and kick a batch: keeps the kernel's transmit busy
                // instead of waiting for the whole TX pool to fill.
                port.recv_batch(0, &mut nothing);
            }
        } else {
            // TX ring full: commit and reclaim completions, then retry.
            retries += 1;
            port.recv_batch(0, &mut nothing);
        }
    }
    port.recv_batch(0, &mut nothing);
    let secs = start.elapsed().as_secs_f64();
    // Let the last frames leave before the socket closes.
    let until = Instant::now() + Duration::from_millis(100);
    while Instant::now() < until {
        port.wait(None, Some(Duration::from_millis(1)));
    }
    Ok(serde_json::json!({
        "sent": sent,
        "bytes": sent * a.size as u64,
        "frame_bytes": (len + 14 + if a.group.is_ipv4() { 20 } else { 40 }) as u64,
        "secs": secs,
        // Timed from the first packet: the rate of the other sent - 1.
        "msgs_per_s": if secs > 0.0 { sent.saturating_sub(1) as f64 / secs } else { 0.0 },
        "send_retries": retries,
        "mode": mode,
        "queue": a.queue,
        "transport": "raw-xdp",
    }))
}

fn run_sink(a: &Args) -> Result<serde_json::Value, String> {
    let mut port = open(a, Side::Receiver)?;
    let mode = port.socket().mode().as_str();
    let idle = Duration::from_millis(a.idle_ms);
    let mut received: u64 = 0;
    let mut other: u64 = 0;
    let mut bytes: u64 = 0;
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    let dport = a.dport;
    let overhead = PGM_ODATA_OVERHEAD as u64;
    while received < a.count {
        let n = port.recv_batch(64, &mut |_, pgm| {
            if is_our_odata(pgm, dport) {
                received += 1;
                bytes += (pgm.len() as u64).saturating_sub(overhead);
            } else {
                other += 1;
            }
        });
        if n > 0 {
            let now = Instant::now();
            first.get_or_insert(now);
            last = now;
        } else if last.elapsed() >= idle {
            break;
        } else {
            port.wait(None, Some(Duration::from_millis(1)));
        }
    }
    let secs = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    Ok(serde_json::json!({
        "received": received,
        "bytes": bytes,
        "other_frames": other,
        "secs": secs,
        "msgs_per_s": if secs > 0.0 { received as f64 / secs } else { 0.0 },
        "unrecoverable": 0,
        "mode": mode,
        "queue": a.queue,
        "transport": "raw-xdp",
    }))
}

fn main() -> ExitCode {
    let a = parse_args();
    let r = if a.send { run_send(&a) } else { run_sink(&a) };
    match r {
        Ok(j) => {
            if a.json {
                println!("{j}");
            } else {
                println!("{j:#}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xdpblast: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odata_is_a_valid_pgm_packet_the_sink_counts() {
        let mut buf = [0u8; 2048];
        let len = odata(7500, 64, &mut buf).expect("emit");
        assert_eq!(len, PGM_ODATA_OVERHEAD + 64);
        let pkt = &buf[..len];
        let p = PacketRepr::parse(pkt).expect("checksum and layout valid");
        assert_eq!(p.dport, 7500);
        assert!(matches!(p.body, Body::Odata(d) if d.payload.len() == 64));
        assert!(is_our_odata(pkt, 7500));
        assert!(!is_our_odata(pkt, 7501));
        assert!(!is_our_odata(&pkt[..4], 7500));
    }

    #[test]
    fn largest_size_fits_a_umem_frame() {
        let mut buf = [0u8; 2048];
        let len = odata(1, MAX_SIZE, &mut buf).expect("emit");
        assert!(len + 14 + 40 <= 2048);
    }
}

//! `xpgm-rtt`: round-trip latency between two hosts over xpgm.
//!
//! ```text
//! xpgm-rtt ping --iface IF --send-group G1 --recv-group G2 [--transport socket|xdp]
//!               [--rate MSGS_PER_S] [--size BYTES] [--secs S] [--warmup-secs S] [--json FILE]
//!               [--dist FILE]
//! xpgm-rtt echo --iface IF --send-group G2 --recv-group G1 [--transport socket|xdp]
//!               [--secs S] [--idle-secs S] [--json FILE] [--dist FILE] [--repair-dist FILE]
//! ```
//!
//! `ping` publishes message `i` (index, CLOCK_MONOTONIC send stamp; see
//! `xpgm_bench::latency`) on G1 at a fixed rate; `echo` republishes each
//! message it receives on G1 unchanged on G2; `ping` records RTT = now −
//! stamp for each message it gets back (after the warm-up). `echo` also
//! records one-way latency (stamp to delivery: namespaces share
//! CLOCK_MONOTONIC) for all messages and for the messages that arrived as
//! RDATA (repair latency: original send to delivery of the repair).
//!
//! One thread per process drives a `Source` and a `Receiver` engine over a
//! [`Duplex`] (kernel sockets, or ONE AF_XDP socket for both sessions),
//! busy-polling. The report is JSON (stdout, or `--json FILE`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use serde_json::json;
use xpgm::transport::SessionConfig;
use xpgm_bench::duplex::{Duplex, Engine, SocketDuplex, XdpDuplex, XdpDuplexConfig};
use xpgm_bench::latency::{
    LatencyHist, MIN_MESSAGE, Pacer, RepairSet, monotonic_ns, rdata_sqn, read_message,
    write_message,
};
use xpgm_core::Instant;
use xpgm_core::config::{ReceiverConfig, SourceConfig};
use xpgm_core::receiver::{Event, Receiver};
use xpgm_core::source::{SendError, Source};
use xpgm_core::wire::{Gsi, Nla, Tsi};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Publish stamped messages, measure their round trip.
    Ping,
    /// Republish every received message on the other group.
    Echo,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Idle {
    /// Spin: never sleep (lowest latency, burns a core).
    Busy,
    /// Sleep in poll(2) until a packet, the next send or the next engine timer.
    Sleep,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Transport {
    /// Kernel sockets (raw IP protocol 113 or UDP).
    Socket,
    /// One AF_XDP socket for both sessions, through xpgmd.
    Xdp,
}

/// Round-trip latency over xpgm (see the module documentation).
#[derive(Parser, Debug)]
#[command(name = "xpgm-rtt")]
struct Args {
    /// ping or echo.
    #[arg(value_enum)]
    mode: Mode,
    /// Interface.
    #[arg(long)]
    iface: String,
    /// Group this process publishes on.
    #[arg(long)]
    send_group: IpAddr,
    /// Group this process receives.
    #[arg(long)]
    recv_group: IpAddr,
    /// Transport.
    #[arg(long, value_enum, default_value = "socket")]
    transport: Transport,
    /// PGM data port.
    #[arg(long, default_value_t = 7500)]
    dport: u16,
    /// UDP encapsulation port (default: raw IP).
    #[arg(long)]
    udp_encap: Option<u16>,
    /// ping: messages per second.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// ping: message size in bytes (>= 16).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// ping: seconds measured (after the warm-up). echo: longest run.
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// ping: seconds sent before measuring (joins, SPMs, caches warm).
    #[arg(long, default_value_t = 1.0)]
    warmup_secs: f64,
    /// echo: exit after this long without a message (once one arrived).
    #[arg(long, default_value_t = 2.0)]
    idle_secs: f64,
    /// Write the JSON report here (default: stdout).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the percentile distribution (gnuplot data) of RTT (ping) or
    /// one-way latency (echo) here.
    #[arg(long)]
    dist: Option<PathBuf>,
    /// echo: write the repair-latency distribution here.
    #[arg(long)]
    repair_dist: Option<PathBuf>,
    /// What to do when there is nothing to do.
    #[arg(long, value_enum, default_value = "busy")]
    idle: Idle,
    /// xpgmd's control socket (--transport xdp).
    #[arg(long)]
    xpgmd_socket: Option<PathBuf>,
}

fn random_u64() -> u64 {
    use std::io::Read;
    let mut b = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom")
        && f.read_exact(&mut b).is_ok()
    {
        return u64::from_le_bytes(b);
    }
    monotonic_ns() ^ (u64::from(std::process::id()) << 32)
}

fn nla_of(ip: IpAddr) -> Nla {
    match ip {
        IpAddr::V4(a) => Nla::V4(a),
        IpAddr::V6(a) => Nla::V6(a),
    }
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    if a.size < MIN_MESSAGE {
        bail!("--size must be at least {MIN_MESSAGE} (index and stamp)");
    }
    if a.rate == 0 {
        bail!("--rate must be at least 1");
    }
    if !a.send_group.is_multicast() || !a.recv_group.is_multicast() {
        bail!("--send-group and --recv-group must be multicast groups");
    }
    let r = random_u64();
    let rb = r.to_le_bytes();
    let tsi = Tsi {
        gsi: Gsi([rb[0], rb[1], rb[2], rb[3], rb[4], rb[5]]),
        sport: u16::from_le_bytes([rb[6], rb[7]]).max(1),
    };
    let mut base = SessionConfig::new(a.iface.clone(), a.send_group);
    base.dport = a.dport;
    base.udp_encap = a.udp_encap;
    let mut dp: Box<dyn Duplex> = match a.transport {
        Transport::Socket => Box::new(
            SocketDuplex::open(&base, a.send_group, a.recv_group).context("kernel sockets")?,
        ),
        Transport::Xdp => Box::new(
            XdpDuplex::open(&XdpDuplexConfig {
                iface: a.iface.clone(),
                queue: 0,
                send_group: a.send_group,
                recv_group: a.recv_group,
                dport: a.dport,
                udp_encap: a.udp_encap,
                ttl: base.ttl,
                tos: base.tos,
                source_port: tsi.sport,
                xpgmd_socket: a.xpgmd_socket.clone(),
            })
            .context("AF_XDP duplex socket")?,
        ),
    };
    eprintln!("xpgm-rtt {:?}: {}, tsi {tsi}", a.mode, dp.describe());
    let max_tpdu = base.max_tpdu();
    let max_apdu = 16 * 1024;
    let mut scfg = SourceConfig {
        dport: a.dport,
        group: nla_of(a.send_group),
        path_nla: dp.local_nla(),
        max_tpdu,
        max_apdu,
        ..SourceConfig::default()
    };
    scfg.txw_max_rte = 0;
    let rcfg = ReceiverConfig {
        dport: a.dport,
        group: nla_of(a.recv_group),
        max_tpdu,
        max_apdu,
        ..ReceiverConfig::default()
    };
    let now = || Instant::from_nanos(monotonic_ns());
    let mut source = Source::new(scfg, tsi, now()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut receiver =
        Receiver::new(rcfg, dp.local_nla(), random_u64()).map_err(|e| anyhow::anyhow!("{e}"))?;

    let mut tx_buf = vec![0u8; max_tpdu];
    let mut msg = vec![0u8; a.size];
    let mut hist = LatencyHist::new();
    let mut repair_hist = LatencyHist::new();
    let mut repaired = RepairSet::default();
    let mut pending_echo: Option<usize> = None; // echo: a message the source refused
    let mut echo_buf = vec![0u8; max_apdu];

    let t0 = monotonic_ns();
    let secs_ns = |s: f64| (s.max(0.0) * 1e9) as u64;
    let warm_end = t0 + secs_ns(a.warmup_secs);
    let send_end = warm_end + secs_ns(a.secs);
    let drain_end = send_end + 500_000_000;
    let mut pacer = Pacer::new(t0, a.rate);
    let mut held: Option<u64> = None; // ping: index refused by the engine
    let (mut sent, mut received, mut refused, mut unrecoverable) = (0u64, 0u64, 0u64, 0u64);
    let mut last_rx = 0u64;
    let mut first_rx = 0u64;
    let (mut turns, mut waits) = (0u64, 0u64);

    loop {
        turns += 1;
        let t = monotonic_ns();
        let tn = Instant::from_nanos(t);
        match a.mode {
            Mode::Ping => {
                if t >= drain_end {
                    break;
                }
                if t < send_end {
                    let next = held.or_else(|| pacer.poll(t));
                    if let Some(i) = next {
                        write_message(&mut msg, i, t);
                        match source.send(tn, &msg) {
                            Ok(_) => {
                                sent += 1;
                                held = None;
                            }
                            Err(SendError::WouldBlock) => {
                                refused += 1;
                                held = Some(i);
                            }
                            Err(e) => bail!("source refused a message: {e}"),
                        }
                    }
                }
            }
            Mode::Echo => {
                let idle = first_rx != 0 && t.saturating_sub(last_rx) > secs_ns(a.idle_secs);
                if idle || t.saturating_sub(t0) > secs_ns(a.secs) {
                    break;
                }
                if let Some(len) = pending_echo {
                    match source.send(tn, echo_buf.get(..len).unwrap_or_default()) {
                        Ok(_) => {
                            sent += 1;
                            pending_echo = None;
                        }
                        Err(SendError::WouldBlock) => refused += 1,
                        Err(e) => bail!("source refused a message: {e}"),
                    }
                }
            }
        }
        // Network input.
        let got = dp.recv(64, &mut |engine, from, pgm| match engine {
            Engine::Source => {
                let _ = source.handle_packet(tn, from, pgm);
            }
            Engine::Receiver => {
                if let Some(sqn) = rdata_sqn(pgm) {
                    repaired.mark(sqn);
                }
                let _ = receiver.handle_packet(tn, from, pgm);
            }
        });
        if source.poll_timeout().is_some_and(|d| d <= tn) {
            source.handle_timeout(tn);
        }
        if receiver.poll_timeout().is_some_and(|d| d <= tn) {
            receiver.handle_timeout(tn);
        }
        // Deliveries.
        while let Some(ev) = receiver.poll_event() {
            match ev {
                Event::Data { sqn, data, .. } => {
                    let Some((_, stamp)) = read_message(data) else {
                        continue;
                    };
                    let at = monotonic_ns();
                    received += 1;
                    if first_rx == 0 {
                        first_rx = at;
                    }
                    last_rx = at;
                    let was_repaired = repaired.take(sqn.0);
                    match a.mode {
                        Mode::Ping => {
                            if stamp >= warm_end {
                                hist.record_since(stamp, at);
                                if was_repaired {
                                    repair_hist.record_since(stamp, at);
                                }
                            }
                        }
                        Mode::Echo => {
                            hist.record_since(stamp, at);
                            if was_repaired {
                                repair_hist.record_since(stamp, at);
                            }
                            if pending_echo.is_none() {
                                match source.send(tn, data) {
                                    Ok(_) => sent += 1,
                                    Err(SendError::WouldBlock) => {
                                        refused += 1;
                                        if let Some(b) = echo_buf.get_mut(..data.len()) {
                                            b.copy_from_slice(data);
                                            pending_echo = Some(data.len());
                                        }
                                    }
                                    Err(e) => bail!("source refused a message: {e}"),
                                }
                            } else {
                                // Only one message is held back; this one is lost to
                                // the round trip (counted).
                                refused += 1;
                            }
                        }
                    }
                }
                Event::Unrecoverable { count, .. } => unrecoverable += u64::from(count),
                _ => {}
            }
        }
        // Output.
        while let Some(tx) = source.poll_transmit(tn, &mut tx_buf) {
            dp.send(
                Engine::Source,
                tx.dest,
                tx_buf.get(..tx.len).unwrap_or_default(),
            );
        }
        while let Some(tx) = receiver.poll_transmit(tn, &mut tx_buf) {
            dp.send(
                Engine::Receiver,
                tx.dest,
                tx_buf.get(..tx.len).unwrap_or_default(),
            );
        }
        if a.idle == Idle::Sleep && got == 0 {
            let mut deadline = t + 1_000_000;
            if a.mode == Mode::Ping && t < send_end {
                deadline = deadline.min(if held.is_some() { t } else { pacer.due_ns() });
            }
            for d in [source.poll_timeout(), receiver.poll_timeout()]
                .into_iter()
                .flatten()
            {
                deadline = deadline.min(d.as_nanos());
            }
            let now2 = monotonic_ns();
            if deadline > now2 && pending_echo.is_none() {
                waits += 1;
                dp.wait(Duration::from_nanos(deadline - now2));
            } else {
                dp.flush();
            }
        } else {
            dp.flush();
        }
    }
    // Let the last packets leave.
    dp.flush();
    std::thread::sleep(Duration::from_millis(10));
    dp.flush();

    let ss = source.stats();
    let rs = receiver.stats();
    let mut report = json!({
        "mode": format!("{:?}", a.mode).to_lowercase(),
        "transport": match a.transport { Transport::Socket => "socket", Transport::Xdp => "xdp" },
        "path": dp.describe(),
        "rate": a.rate,
        "size": a.size,
        "sent": sent,
        "received": received,
        "engine_refused": refused,
        "unrecoverable": unrecoverable,
        "send_errors": dp.send_errors(),
        "odata_received": rs.odata_received,
        "rdata_received": rs.rdata_received,
        "naks_sent": rs.naks_sent,
        "naks_received": ss.naks_received,
        "rdata_sent": ss.rdata_sent,
        "repaired_delivered": repair_hist.len(),
        "loop_turns": turns,
        "waits": waits,
    });
    let key = match a.mode {
        Mode::Ping => "rtt",
        Mode::Echo => "one_way",
    };
    report[key] = hist.to_json();
    report["repair"] = repair_hist.to_json();
    if let Some(p) = &a.dist {
        std::fs::write(p, hist.distribution_text()).with_context(|| format!("{}", p.display()))?;
    }
    if let Some(p) = &a.repair_dist {
        std::fs::write(p, repair_hist.distribution_text())
            .with_context(|| format!("{}", p.display()))?;
    }
    let text = serde_json::to_string_pretty(&report)?;
    match &a.json {
        Some(p) => std::fs::write(p, text + "\n").with_context(|| format!("{}", p.display()))?,
        None => println!("{text}"),
    }
    Ok(())
}

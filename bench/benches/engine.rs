//! Engine hot paths, ns per packet: the source send path (`send` + `poll_transmit`,
//! including encoding and checksum) and the receiver receive path (`handle_packet` +
//! `poll_event`, including parsing and checksum verification), at 64 and 1400 bytes.
//! `engine/source_send_default` runs the send path with the default configuration
//! (`txw_min_secs` = 1 s included) at one 64-byte message per virtual microsecond: it
//! panics if the transmit window ever pushes back at 1M messages/s.

use core::net::Ipv4Addr;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use xpgm_core::Instant;
use xpgm_core::config::{ReceiverConfig, SourceConfig};
use xpgm_core::receiver::{Event, Receiver};
use xpgm_core::source::Source;
use xpgm_core::wire::{Gsi, Nla, Tsi};

const SRC: Nla = Nla::V4(Ipv4Addr::new(10, 0, 0, 1));
const GROUP: Nla = Nla::V4(Ipv4Addr::new(239, 1, 1, 1));
const SIZES: [usize; 2] = [64, 1400];

fn tsi() -> Tsi {
    Tsi {
        gsi: Gsi([1, 2, 3, 4, 5, 6]),
        sport: 4000,
    }
}

fn source() -> Source {
    // One packet per microsecond outruns any minimum repair time: let the window
    // advance freely (flow control is not what is measured here).
    let cfg = SourceConfig {
        group: GROUP,
        path_nla: SRC,
        txw_min_secs: core::time::Duration::ZERO,
        ..SourceConfig::default()
    };
    Source::new(cfg, tsi(), Instant::ZERO).expect("valid config")
}

fn receiver() -> Receiver {
    let cfg = ReceiverConfig {
        group: GROUP,
        ..ReceiverConfig::default()
    };
    Receiver::new(cfg, Nla::V4(Ipv4Addr::new(10, 0, 0, 2)), 7).expect("valid config")
}

fn send_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine/source_send");
    for size in SIZES {
        g.throughput(Throughput::Elements(1));
        // One long-lived source per size (criterion calls the closure once per sample),
        // warmed by one lap of its window: the window is allocated zeroed up front and
        // the OS maps its pages on first touch, a one-time cost per session that is not
        // what this measures.
        let mut s = source();
        let payload = vec![0xa5u8; size];
        let mut buf = vec![0u8; 1500];
        let mut t = 0u64;
        let lap = (s.config().txw_max_bytes / size).max(s.config().txw_sqns as usize);
        for _ in 0..lap {
            t += 1000;
            s.send(Instant::from_nanos(t), &payload).expect("send");
            while s.poll_transmit(Instant::from_nanos(t), &mut buf).is_some() {}
        }
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.iter(|| {
                t += 1000;
                let now = Instant::from_nanos(t);
                s.send(now, black_box(&payload)).expect("send");
                while let Some(tx) = s.poll_transmit(now, &mut buf) {
                    black_box(tx.len);
                }
            });
        });
    }
    g.finish();
}

/// Encoded ODATA stream (with the source's SPMs) of `n` APDUs.
fn stream(size: usize, n: usize) -> Vec<Vec<u8>> {
    let mut s = source();
    let payload = vec![0x5au8; size];
    let mut buf = vec![0u8; 1500];
    let mut out = Vec::with_capacity(n + 64);
    for i in 0..n {
        let now = Instant::from_nanos(i as u64 * 1000);
        s.send(now, &payload).expect("send");
        while let Some(t) = s.poll_transmit(now, &mut buf) {
            out.push(buf[..t.len].to_vec());
        }
    }
    out
}

fn receive_path(c: &mut Criterion) {
    const WARM: usize = 1024;
    const CHUNK: usize = 16_384;
    let mut g = c.benchmark_group("engine/receiver_receive");
    for size in SIZES {
        let packets = stream(size, WARM + CHUNK);
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            // Sequence numbers only move forward, so each chunk of the pre-encoded stream
            // is fed to a fresh receiver warmed (untimed) on the stream's first packets.
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters as usize;
                while left > 0 {
                    let mut r = receiver();
                    for (i, p) in packets[..WARM].iter().enumerate() {
                        let _ = r.handle_packet(Instant::from_nanos(i as u64), SRC, p);
                        while r.poll_event().is_some() {}
                    }
                    let n = left.min(packets.len() - WARM);
                    let start = std::time::Instant::now();
                    for (i, p) in packets[WARM..WARM + n].iter().enumerate() {
                        let now = Instant::from_nanos((WARM + i) as u64);
                        let _ = r.handle_packet(now, SRC, black_box(p));
                        while let Some(ev) = r.poll_event() {
                            if let Event::Data { data, .. } = ev {
                                black_box(data.len());
                            }
                        }
                    }
                    total += start.elapsed();
                    left -= n;
                }
                total
            });
        });
    }
    g.finish();
}

fn send_path_default(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine/source_send_default");
    g.throughput(Throughput::Elements(1));
    let cfg = SourceConfig {
        group: GROUP,
        path_nla: SRC,
        ..SourceConfig::default()
    };
    let mut s = Source::new(cfg, tsi(), Instant::ZERO).expect("valid config");
    let payload = [0xa5u8; 64];
    let mut buf = vec![0u8; 1500];
    let mut t = 0u64;
    // One lap of the window first (see `send_path`), at the same 1 M/s.
    for _ in 0..s.config().txw_sqns {
        t += 1000;
        let now = Instant::from_nanos(t);
        s.handle_timeout(now);
        s.send(now, &payload)
            .expect("no back-pressure at 1M msgs/s");
        while s.poll_transmit(now, &mut buf).is_some() {}
    }
    g.bench_function("64", |b| {
        b.iter(|| {
            t += 1000;
            let now = Instant::from_nanos(t);
            s.handle_timeout(now);
            s.send(now, black_box(&payload))
                .expect("no back-pressure at 1M msgs/s");
            while let Some(tx) = s.poll_transmit(now, &mut buf) {
                black_box(tx.len);
            }
        });
    });
    g.finish();
}

criterion_group!(benches, send_path, send_path_default, receive_path);
criterion_main!(benches);

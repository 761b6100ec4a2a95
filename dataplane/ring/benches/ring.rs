//! Ring micro-benchmarks: per-message cost single-threaded, of the repair
//! read, and writer→reader across two threads (back-pressure and broadcast).
#![cfg(not(loom))]

use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use xpgm_ring::{Mode, RecvError, Ring, RingConfig, SendError};

const MSG: usize = 64;

fn config(mode: Mode) -> RingConfig {
    RingConfig {
        capacity: 4096,
        max_msg: 1500,
        max_readers: 4,
        mode,
    }
}

fn single_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring");
    g.throughput(Throughput::Elements(1));
    let ring = Ring::new(config(Mode::Broadcast)).unwrap();
    let mut w = ring.writer().unwrap();
    let mut r = ring.reader().unwrap();
    let msg = [7u8; MSG];
    let mut buf = [0u8; 1500];
    g.bench_function("send_recv_64B", |b| {
        b.iter(|| {
            w.try_send(black_box(&msg)).unwrap();
            black_box(r.try_recv(&mut buf).unwrap());
        })
    });
    g.bench_function("read_at_64B", |b| {
        let seq = w.try_send(&msg).unwrap();
        b.iter(|| black_box(ring.read_at(black_box(seq), &mut buf).unwrap()))
    });
    g.finish();
}

/// Writer on this thread, one reader on another; time per message.
fn two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring_two_threads");
    g.throughput(Throughput::Elements(1));
    for mode in [Mode::BackPressure, Mode::Broadcast] {
        g.bench_function(format!("{mode:?}_64B"), |b| {
            b.iter_custom(|iters| {
                let ring = Ring::new(config(mode)).unwrap();
                let mut w = ring.writer().unwrap();
                let mut r = ring.reader().unwrap();
                let reader = thread::spawn(move || {
                    let mut buf = [0u8; 1500];
                    let mut seen = 0u64;
                    while seen < iters {
                        match r.try_recv(&mut buf) {
                            Ok(_) => seen += 1,
                            Err(RecvError::Lapped { missed }) => seen += missed,
                            Err(RecvError::Empty) => std::hint::spin_loop(),
                            Err(e) => panic!("{e}"),
                        }
                    }
                });
                let msg = [7u8; MSG];
                let start = Instant::now();
                let mut sent = 0;
                while sent < iters {
                    match w.try_send(&msg) {
                        Ok(_) => sent += 1,
                        Err(SendError::Full) => std::hint::spin_loop(),
                        Err(e) => panic!("{e}"),
                    }
                }
                reader.join().unwrap();
                start.elapsed()
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = single_thread, two_threads
}
criterion_main!(benches);

//! Cost of a worker's per-turn publish: 20 relaxed stores into a mapped stats file
//! (what `SourceWorker`/`ReceiverWorker` do once per loop turn), against the same
//! stores into heap memory.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use xpgm_stats::{Role, SessionInfo, StatsWriter};

fn info() -> SessionInfo {
    SessionInfo {
        role: Role::Receiver,
        transport: "socket".into(),
        iface: "lo".into(),
        group: "239.1.1.1".into(),
        dport: 7500,
        udp_encap: None,
        tsi: [0; 8],
    }
}

fn publish(w: &StatsWriter, n: u64) {
    for i in 0..20 {
        w.set(i, n.wrapping_add(i as u64));
    }
}

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("xpgm-stats-bench-{}", std::process::id()));
    let mapped = StatsWriter::create(&dir, &info()).expect("stats file");
    let private = StatsWriter::private(&info());
    let mut n = 0u64;
    c.bench_function("publish_20_counters_mapped", |b| {
        b.iter(|| {
            n += 1;
            publish(black_box(&mapped), n);
        })
    });
    c.bench_function("publish_20_counters_heap", |b| {
        b.iter(|| {
            n += 1;
            publish(black_box(&private), n);
        })
    });
    drop(mapped);
    let _ = std::fs::remove_dir(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);

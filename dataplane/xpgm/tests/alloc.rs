//! The socket workers' steady state allocates nothing per packet: a source worker and a
//! receiver worker, driven turn by turn on this thread over a fake datapath (bounded
//! in-memory queues, every 101st ODATA lost so NAK/NCF/RDATA run too), with the
//! application's publish and delivery rings, in virtual time (a manual clock advanced
//! 20 µs per turn, so every run is the same). After warm-up, 30 000 more messages —
//! including their repairs — pass with zero allocations on this thread. Both workers
//! publish into real shared-memory stats files (xpgm-stats) the whole time.

mod common;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{FakeDp, Queue};
use xpgm::core::config::{ReceiverConfig, SourceConfig};
use xpgm::core::receiver::Receiver;
use xpgm::core::source::Source;
use xpgm::core::wire::{Gsi, Nla, Tsi};
use xpgm::delivery::{self, Delivery};
use xpgm::worker::{Clock, ReceiverWorker, Shared, SourceWorker};
use xpgm_ring::{Mode, Ring, RingConfig};

#[global_allocator]
static GLOBAL: xpgm_testutil::CountingAlloc = xpgm_testutil::CountingAlloc;

const SIZE: usize = 64;
const WARM: u64 = 30_000;
const MEASURED: u64 = 30_000;

#[test]
fn worker_steady_state_allocates_nothing_per_packet() {
    let src_addr = Nla::V4(Ipv4Addr::new(10, 0, 0, 1));
    let rcv_addr = Nla::V4(Ipv4Addr::new(10, 0, 0, 2));
    let group = Nla::V4(Ipv4Addr::new(239, 1, 2, 3));
    let down = Queue::link(8192);
    let up = Queue::link(1024);
    let mut sdp = FakeDp::new(src_addr, up.clone(), Some(down.clone()), None);
    sdp.drop_odata_every = 101;
    let rdp = FakeDp::new(rcv_addr, down.clone(), None, Some(up.clone()));

    let scfg = SourceConfig {
        group,
        path_nla: src_addr,
        txw_sqns: 2048,
        txw_min_secs: Duration::from_millis(20),
        ..SourceConfig::default()
    };
    let rcfg = ReceiverConfig {
        group,
        rxw_sqns: 2048,
        rxw_max_bytes: 2048 * 1480,
        nak_bo_ivl: Duration::from_millis(1),
        nak_rpt_ivl: Duration::from_millis(20),
        nak_rdata_ivl: Duration::from_millis(20),
        ..ReceiverConfig::default()
    };
    let tsi = Tsi {
        gsi: Gsi([1, 2, 3, 4, 5, 6]),
        sport: 4000,
    };
    // Virtual time, advanced 20 µs per turn: the run is deterministic, so the warm-up
    // reaches the same high-water marks (pools, queues, timer heap) on every run.
    let nanos = Arc::new(AtomicU64::new(1));
    let clock = Clock::manual(nanos.clone());
    let source = Source::new(scfg, tsi, clock.now()).expect("source");
    let receiver = Receiver::new(rcfg, rcv_addr, 7).expect("receiver");

    let publish = Ring::new(RingConfig {
        capacity: 1024,
        max_msg: 1 << 14,
        max_readers: 1,
        mode: Mode::BackPressure,
    })
    .expect("ring");
    let worker_reader = publish.reader().expect("reader");
    let mut app_writer = publish.writer().expect("writer");
    let deliver = Ring::new(RingConfig {
        capacity: 1024,
        max_msg: (1 << 14) + delivery::HEADER_LEN,
        max_readers: 1,
        mode: Mode::BackPressure,
    })
    .expect("ring");
    let mut app_reader = deliver.reader().expect("reader");
    let worker_writer = deliver.writer().expect("writer");

    let (sshared, _sbell) = Shared::new().expect("shared");
    let (rshared, _rbell) = Shared::new().expect("shared");
    let stats_dir = std::env::temp_dir().join(format!("xpgm-alloc-stats-{}", std::process::id()));
    let info = |role| xpgm_stats::SessionInfo {
        role,
        transport: "fake".into(),
        iface: "none".into(),
        group: "239.1.2.3".into(),
        dport: 7500,
        udp_encap: None,
        tsi: [1, 2, 3, 4, 5, 6, 0x0f, 0xa0],
    };
    let sstats = xpgm_stats::StatsWriter::create(&stats_dir, &info(xpgm_stats::Role::Source))
        .expect("stats file");
    let rstats = xpgm_stats::StatsWriter::create(&stats_dir, &info(xpgm_stats::Role::Receiver))
        .expect("stats file");
    let mut sw = SourceWorker::new(Box::new(sdp), source, worker_reader, clock.clone(), sshared)
        .with_stats(sstats);
    let mut rw = ReceiverWorker::new(Box::new(rdp), receiver, worker_writer, clock, rshared)
        .with_stats(rstats);

    let mut msg = [0u8; SIZE];
    let mut dbuf = vec![0u8; (1 << 14) + delivery::HEADER_LEN];
    let total = WARM + MEASURED;
    let (mut next, mut got) = (0u64, 0u64);
    let mut rdata_at_start = 0;
    let mut counting = false;
    let mut turns = 0u64;
    while got < total {
        turns += 1;
        nanos.fetch_add(20_000, Ordering::Relaxed);
        assert!(turns < 50_000_000, "stalled at {got} of {total}");
        for _ in 0..64 {
            if next == total {
                break;
            }
            msg[..8].copy_from_slice(&next.to_be_bytes());
            if app_writer.try_send(&msg).is_err() {
                break;
            }
            next += 1;
        }
        sw.step().expect("source step");
        rw.step().expect("receiver step");
        while let Ok(r) = app_reader.try_recv(&mut dbuf) {
            match delivery::decode(&dbuf[..r.len]) {
                Some(Delivery::Data { data, .. }) => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&data[..8]);
                    assert_eq!(u64::from_be_bytes(b), got, "in order, nothing missing");
                    got += 1;
                }
                Some(Delivery::Unrecoverable { .. }) => panic!("loss was not repaired"),
                Some(_) => {}
                None => panic!("malformed delivery"),
            }
        }
        if !counting && got >= WARM {
            counting = true;
            rdata_at_start = sw.source().stats().rdata_sent;
            xpgm_testutil::set_counting(true);
        }
    }
    xpgm_testutil::set_counting(false);
    let allocs = xpgm_testutil::allocations();
    let repairs = sw.source().stats().rdata_sent - rdata_at_start;
    assert!(
        repairs > 100,
        "the measured phase ran repairs too ({repairs})"
    );
    assert_eq!(
        allocs, 0,
        "allocations in the steady state ({MEASURED} messages)"
    );
    // The stats files carried the workers' counters.
    let scan = xpgm_stats::scan(&stats_dir, false).expect("scan");
    assert_eq!(scan.sessions.len(), 2);
    let src = &scan.sessions[0];
    let rcv = &scan.sessions[1];
    assert_eq!(src.role, xpgm_stats::Role::Source);
    assert_eq!(
        src.counter("odata_packets"),
        Some(sw.source().stats().odata_sent)
    );
    assert_eq!(
        src.counter("rdata_packets"),
        Some(sw.source().stats().rdata_sent)
    );
    assert_eq!(rcv.counter("delivered"), Some(total));
    assert!(rcv.counter("naks_sent").is_some_and(|n| n > 100));
    drop((sw, rw));
    assert!(
        xpgm_stats::scan(&stats_dir, false)
            .expect("scan")
            .sessions
            .is_empty()
    );
    let _ = std::fs::remove_dir(&stats_dir);
}

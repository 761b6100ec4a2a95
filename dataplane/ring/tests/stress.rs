//! Multi-threaded stress: one writer, three readers, a repair thread.
//!
//! Bounded work (`XPGM_RING_STRESS_MSGS`, default 300 000 messages; the
//! valgrind run sets it small). Every reader must see every message in order
//! and intact, or a `Lapped { missed }` whose counts add up exactly; content
//! is recomputed from the sequence number, so a torn read cannot pass.
#![cfg(not(loom))]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use common::{ShmPath, check_message, env_count, message};
use xpgm_ring::{Mode, ReadAtError, RecvError, Ring, RingConfig};

const MAX_MSG: usize = 64;
/// Hang guard only (a liveness check, not a speed assertion).
const HANG: Option<Duration> = Some(Duration::from_secs(120));

fn msgs() -> u64 {
    env_count("XPGM_RING_STRESS_MSGS", 300_000)
}

#[derive(Debug, Default)]
struct Tally {
    received: u64,
    missed: u64,
    laps: u64,
}

/// Read until `total` messages are accounted for. `slow` readers yield
/// after every message so that the writer laps them.
fn consume(mut r: xpgm_ring::Reader, total: u64, slow: bool) -> Tally {
    let mut t = Tally::default();
    let mut buf = [0u8; MAX_MSG];
    let mut next = r.cursor();
    while next < total {
        match r.recv_blocking(&mut buf, HANG) {
            Ok(m) => {
                assert_eq!(m.seq, next, "out of order");
                assert!(
                    check_message(m.seq, MAX_MSG, &buf[..m.len]),
                    "torn message {}",
                    m.seq
                );
                next += 1;
                t.received += 1;
                if slow {
                    thread::yield_now();
                }
            }
            Err(RecvError::Lapped { missed }) => {
                assert!(missed > 0);
                next += missed;
                t.missed += missed;
                t.laps += 1;
            }
            Err(e) => panic!("reader error {e}"),
        }
        assert_eq!(r.cursor(), next);
    }
    assert_eq!(next, total, "overshoot");
    t
}

/// The four tests run one at a time: each uses five threads.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn stress(ring: Ring, mode: Mode) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let total = msgs();
    let readers: Vec<_> = (0..3).map(|_| ring.reader().unwrap()).collect();
    let mut writer = ring.writer().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = readers
        .into_iter()
        .enumerate()
        .map(|(i, r)| thread::spawn(move || consume(r, total, i == 2 && mode == Mode::Broadcast)))
        .collect();
    // Repair path: random-ish read_at of recent messages during the run.
    let repair = {
        let ring = ring.clone();
        let done = done.clone();
        thread::spawn(move || {
            let mut buf = [0u8; MAX_MSG];
            let (mut ok, mut gone) = (0u64, 0u64);
            let mut x = 0x1234_5678u64;
            while !done.load(Ordering::Relaxed) {
                let head = ring.write_seq();
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let back = x % (ring.config().capacity as u64 + 2);
                let Some(seq) = head.checked_sub(back + 1) else {
                    thread::yield_now();
                    continue;
                };
                match ring.read_at(seq, &mut buf) {
                    Ok(n) => {
                        assert!(check_message(seq, MAX_MSG, &buf[..n]), "torn read_at {seq}");
                        ok += 1;
                    }
                    Err(ReadAtError::Overwritten) => gone += 1,
                    Err(e) => panic!("read_at({seq}) with head {head}: {e}"),
                }
                // Leave the (shared, 2-core) CPU to the writer and readers.
                thread::yield_now();
            }
            (ok, gone)
        })
    };
    let mut buf = [0u8; MAX_MSG];
    for seq in 0..total {
        let n = message(seq, MAX_MSG, &mut buf);
        assert_eq!(writer.send_blocking(&buf[..n], HANG), Ok(seq));
    }
    let tallies: Vec<Tally> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    done.store(true, Ordering::Relaxed);
    let (ok, gone) = repair.join().unwrap();
    eprintln!("{mode:?}: {total} msgs, tallies {tallies:?}, read_at ok {ok} overwritten {gone}");
    for t in &tallies {
        assert_eq!(t.received + t.missed, total);
        if mode == Mode::BackPressure {
            assert_eq!(t.missed, 0, "back-pressure reader lapped");
        }
    }
}

fn config(mode: Mode) -> RingConfig {
    RingConfig {
        capacity: 256,
        max_msg: MAX_MSG,
        max_readers: 4,
        mode,
    }
}

#[test]
fn broadcast_private() {
    stress(Ring::new(config(Mode::Broadcast)).unwrap(), Mode::Broadcast);
}

#[test]
fn broadcast_shm() {
    let p = ShmPath::new("stress-bc");
    stress(
        Ring::create(&p.0, config(Mode::Broadcast)).unwrap(),
        Mode::Broadcast,
    );
}

#[test]
fn backpressure_private() {
    stress(
        Ring::new(config(Mode::BackPressure)).unwrap(),
        Mode::BackPressure,
    );
}

#[test]
fn backpressure_shm() {
    let p = ShmPath::new("stress-bp");
    stress(
        Ring::create(&p.0, config(Mode::BackPressure)).unwrap(),
        Mode::BackPressure,
    );
}

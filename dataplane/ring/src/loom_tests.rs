//! loom model checks of the ring algorithm (private-memory rings).
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p xpgm-ring --release --lib loom`
//!
//! State spaces are kept tiny: capacity 2, 16-byte messages (two payload
//! words plus the length word, so a torn read would show as mismatched words
//! or length), one reader entry, three messages (so the ring wraps once).
//! Each message `seq` is `9 + seq` bytes of the value `seq + 1`.

use loom::thread;

use crate::{Mode, ReadAtError, RecvError, Ring, RingConfig, SendError};

const MSGS: u64 = 3;

fn config(mode: Mode) -> RingConfig {
    RingConfig {
        capacity: 2,
        max_msg: 16,
        max_readers: 1,
        mode,
    }
}

fn msg(seq: u64, out: &mut [u8; 16]) -> &[u8] {
    let len = 9 + seq as usize;
    out.fill(0);
    for b in out.iter_mut().take(len) {
        *b = seq as u8 + 1;
    }
    &out[..len]
}

fn assert_msg(seq: u64, got: &[u8]) {
    let mut want = [0u8; 16];
    assert_eq!(got, msg(seq, &mut want), "torn or wrong message {seq}");
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    // LOOM_MAX_PREEMPTIONS raises the bound; unbounded takes minutes.
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

/// Writer publishes MSGS messages; a reader consumes concurrently.
/// Broadcast: every message is either received intact and in order or
/// counted in a `Lapped { missed }`; the totals add up exactly.
#[test]
fn loom_delivery_ring_publish_consume() {
    model(|| {
        let ring = Ring::new(config(Mode::Broadcast)).unwrap();
        let mut reader = ring.reader().unwrap();
        let mut writer = ring.writer().unwrap();
        let w = thread::spawn(move || {
            let mut b = [0u8; 16];
            for seq in 0..MSGS {
                assert_eq!(writer.try_send(msg(seq, &mut b)), Ok(seq));
            }
        });
        let mut buf = [0u8; 16];
        let (mut next, mut received, mut missed) = (0u64, 0u64, 0u64);
        while next < MSGS {
            match reader.try_recv(&mut buf) {
                Ok(r) => {
                    assert_eq!(r.seq, next);
                    assert_msg(r.seq, &buf[..r.len]);
                    next += 1;
                    received += 1;
                }
                Err(RecvError::Lapped { missed: m }) => {
                    assert!(m > 0);
                    next += m;
                    missed += m;
                }
                Err(RecvError::Empty) => thread::yield_now(),
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!(next, MSGS);
        assert_eq!(received + missed, MSGS);
        assert_eq!(reader.cursor(), MSGS);
        w.join().unwrap();
    });
}

/// Repair path: `read_at` racing with the writer wrapping the ring returns
/// the right bytes, `NotYet` or `Overwritten` — never torn data.
fn read_at_vs_overwrite(mode: Mode) {
    model(move || {
        let ring = Ring::new(config(mode)).unwrap();
        let mut writer = ring.writer().unwrap();
        let w = thread::spawn(move || {
            let mut b = [0u8; 16];
            for seq in 0..MSGS {
                writer.try_send(msg(seq, &mut b)).unwrap();
            }
        });
        let mut buf = [0u8; 16];
        for seq in [0u64, 1] {
            match ring.read_at(seq, &mut buf) {
                Ok(n) => assert_msg(seq, &buf[..n]),
                Err(ReadAtError::NotYet | ReadAtError::Overwritten) => {}
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        w.join().unwrap();
        // Afterwards the outcome is determined.
        assert_eq!(ring.read_at(0, &mut buf), Err(ReadAtError::Overwritten));
        assert_eq!(ring.read_at(2, &mut buf), Ok(11));
        assert_msg(2, &buf[..11]);
    });
}

#[test]
fn loom_delivery_ring_read_at_vs_overwrite() {
    read_at_vs_overwrite(Mode::Broadcast);
}

/// Back-pressure with no registered reader: the writer is not gated, and
/// the repair path sees the same races as in broadcast mode.
#[test]
fn loom_publish_ring_read_at_vs_overwrite() {
    read_at_vs_overwrite(Mode::BackPressure);
}

/// Publish ring: the worker (registered reader) is gating; the writer
/// retries on `Full`. The reader must get every message, in order, intact,
/// with no lap; and the writer never overwrites an unread slot.
#[test]
fn loom_publish_ring_backpressure() {
    model(|| {
        let ring = Ring::new(config(Mode::BackPressure)).unwrap();
        let mut reader = ring.reader().unwrap();
        let mut writer = ring.writer().unwrap();
        let w = thread::spawn(move || {
            let mut b = [0u8; 16];
            let mut seq = 0;
            while seq < MSGS {
                match writer.try_send(msg(seq, &mut b)) {
                    Ok(s) => {
                        assert_eq!(s, seq);
                        seq += 1;
                    }
                    Err(SendError::Full) => thread::yield_now(),
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
        });
        let mut buf = [0u8; 16];
        let mut next = 0;
        while next < MSGS {
            match reader.try_recv(&mut buf) {
                Ok(r) => {
                    assert_eq!(r.seq, next);
                    assert_msg(r.seq, &buf[..r.len]);
                    next += 1;
                }
                Err(RecvError::Empty) => thread::yield_now(),
                Err(e) => panic!("unexpected {e:?} (lapped in back-pressure mode?)"),
            }
        }
        w.join().unwrap();
    });
}

/// Publish ring: a reader registering while the writer is already writing
/// (and has a cached view of the reader table) must never be lapped: its
/// first message (`start`, the head it observed) arrives intact.
#[test]
fn loom_publish_ring_late_registration() {
    model(|| {
        let ring = Ring::new(config(Mode::BackPressure)).unwrap();
        let mut writer = ring.writer().unwrap();
        let r2 = ring.clone();
        let w = thread::spawn(move || {
            let mut b = [0u8; 16];
            let mut seq = 0;
            // Terminates: the only gating reader reads one message and then
            // unregisters.
            while seq < MSGS {
                match writer.try_send(msg(seq, &mut b)) {
                    Ok(_) => seq += 1,
                    Err(SendError::Full) => thread::yield_now(),
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
        });
        let mut reader = r2.reader().unwrap();
        let start = reader.cursor();
        let mut buf = [0u8; 16];
        if start < MSGS {
            loop {
                match reader.try_recv(&mut buf) {
                    Ok(r) => {
                        assert_eq!(r.seq, start);
                        assert_msg(r.seq, &buf[..r.len]);
                        break;
                    }
                    Err(RecvError::Empty) => thread::yield_now(),
                    Err(e) => panic!("unexpected {e:?}: late reader lapped"),
                }
            }
        }
        drop(reader);
        w.join().unwrap();
    });
}

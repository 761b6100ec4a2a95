//! Oracle test: random operation sequences against a `VecDeque` model.
//!
//! Single-threaded, so every outcome is determined; the ring (private or
//! `/dev/shm` backed, broadcast or back-pressure) must agree with the model
//! on every observable result.
#![cfg(not(loom))]

mod common;

use std::collections::VecDeque;

use proptest::prelude::*;
use xpgm_ring::{Mode, ReadAtError, Reader, RecvError, Ring, RingConfig, RingError, SendError};

#[derive(Debug, Clone)]
enum Op {
    Write { len: usize, salt: u8 },
    Recv { reader: usize, buf: usize },
    Batch { reader: usize, max: usize },
    ReadAt { back: u64, buf: usize },
    Toggle { reader: usize },
}

/// Slots in the test's reader array (the ring's table is smaller, so
/// `ReaderTableFull` is exercised).
const READER_SLOTS: usize = 3;
const TABLE: usize = 2;

fn op(max_msg: usize, cap: u64) -> impl Strategy<Value = Op> {
    let buf = prop_oneof![Just(max_msg), 0..=max_msg + 1];
    prop_oneof![
        4 => (0..=max_msg + 2, any::<u8>()).prop_map(|(len, salt)| Op::Write { len, salt }),
        3 => (0..READER_SLOTS, buf.clone()).prop_map(|(reader, buf)| Op::Recv { reader, buf }),
        1 => (0..READER_SLOTS, 1..=4usize).prop_map(|(reader, max)| Op::Batch { reader, max }),
        2 => (0..=2 * cap + 2, buf).prop_map(|(back, buf)| Op::ReadAt { back, buf }),
        1 => (0..READER_SLOTS).prop_map(|reader| Op::Toggle { reader }),
    ]
}

fn content(seq: u64, len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| salt ^ (i as u8).wrapping_mul(7) ^ seq as u8)
        .collect()
}

/// The model: the last `cap` messages and each reader's cursor.
struct Model {
    cap: u64,
    max_msg: usize,
    mode: Mode,
    head: u64,
    log: VecDeque<Vec<u8>>,
    cursors: [Option<u64>; READER_SLOTS],
}

impl Model {
    fn first(&self) -> u64 {
        self.head - self.log.len() as u64
    }

    fn write(&mut self, msg: Vec<u8>) -> Result<u64, SendError> {
        if msg.len() > self.max_msg {
            return Err(SendError::TooLarge {
                len: msg.len(),
                max: self.max_msg,
            });
        }
        if self.mode == Mode::BackPressure
            && self
                .cursors
                .iter()
                .flatten()
                .any(|&c| self.head - c >= self.cap)
        {
            return Err(SendError::Full);
        }
        self.log.push_back(msg);
        if self.log.len() as u64 > self.cap {
            self.log.pop_front();
        }
        self.head += 1;
        Ok(self.head - 1)
    }

    fn recv(&mut self, r: usize, buf: usize) -> Option<Result<(u64, Vec<u8>), RecvError>> {
        let c = self.cursors[r]?;
        Some(if c >= self.head {
            Err(RecvError::Empty)
        } else if self.head - c > self.cap {
            self.cursors[r] = Some(self.head - self.cap);
            Err(RecvError::Lapped {
                missed: self.head - self.cap - c,
            })
        } else {
            let m = &self.log[(c - self.first()) as usize];
            if m.len() > buf {
                Err(RecvError::BufferTooSmall { needed: m.len() })
            } else {
                self.cursors[r] = Some(c + 1);
                Ok((c, m.clone()))
            }
        })
    }

    fn read_at(&self, seq: u64, buf: usize) -> Result<Vec<u8>, ReadAtError> {
        if seq >= self.head {
            Err(ReadAtError::NotYet)
        } else if self.head - seq > self.cap {
            Err(ReadAtError::Overwritten)
        } else {
            let m = &self.log[(seq - self.first()) as usize];
            if m.len() > buf {
                Err(ReadAtError::BufferTooSmall { needed: m.len() })
            } else {
                Ok(m.clone())
            }
        }
    }
}

fn run(config: RingConfig, shm: bool, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let path = common::ShmPath::new("oracle");
    let ring = if shm {
        Ring::create(&path.0, config).unwrap()
    } else {
        Ring::new(config).unwrap()
    };
    let mut writer = ring.writer().unwrap();
    let mut readers: [Option<Reader>; READER_SLOTS] = [None, None, None];
    let mut model = Model {
        cap: config.capacity as u64,
        max_msg: config.max_msg,
        mode: config.mode,
        head: 0,
        log: VecDeque::new(),
        cursors: [None; READER_SLOTS],
    };
    let mut buf = vec![0u8; config.max_msg + 2];
    for op in ops {
        match op {
            Op::Write { len, salt } => {
                let msg = content(model.head, len, salt);
                let got = writer.try_send(&msg);
                prop_assert_eq!(got, model.write(msg));
            }
            Op::Recv { reader, buf: n } => {
                let want = model.recv(reader, n);
                let got = readers[reader].as_mut().map(|r| {
                    r.try_recv(&mut buf[..n])
                        .map(|m| (m.seq, buf[..m.len].to_vec()))
                });
                prop_assert_eq!(got, want);
            }
            Op::Batch { reader, max } => {
                let Some(r) = readers[reader].as_mut() else {
                    continue;
                };
                let mut got = Vec::new();
                let res = r.recv_batch(&mut buf, max, |seq, b| got.push((seq, b.to_vec())));
                // Model: messages until Empty/error; an error only if first.
                let mut want = Vec::new();
                let mut want_res = Ok(0);
                while want.len() < max {
                    let saved = model.cursors[reader];
                    match model.recv(reader, buf.len()) {
                        Some(Ok(m)) => want.push(m),
                        Some(Err(RecvError::Empty)) | None => break,
                        Some(Err(e)) => {
                            if want.is_empty() {
                                want_res = Err(e);
                            } else {
                                model.cursors[reader] = saved;
                            }
                            break;
                        }
                    }
                }
                if want_res.is_ok() {
                    want_res = Ok(want.len());
                }
                prop_assert_eq!(res, want_res);
                prop_assert_eq!(got, want);
            }
            Op::ReadAt { back, buf: n } => {
                // `back == 0` probes the not-yet-written head.
                let seq = if back == 0 {
                    model.head
                } else {
                    model.head.saturating_sub(back)
                };
                let got = ring.read_at(seq, &mut buf[..n]).map(|l| buf[..l].to_vec());
                prop_assert_eq!(got, model.read_at(seq, n));
            }
            Op::Toggle { reader } => {
                if readers[reader].take().is_some() {
                    model.cursors[reader] = None;
                } else {
                    let active = model.cursors.iter().flatten().count();
                    match ring.reader() {
                        Ok(r) => {
                            prop_assert!(active < TABLE);
                            prop_assert_eq!(r.cursor(), model.head);
                            model.cursors[reader] = Some(model.head);
                            readers[reader] = Some(r);
                        }
                        Err(RingError::ReaderTableFull { max }) => {
                            prop_assert_eq!(active, TABLE);
                            prop_assert_eq!(max, TABLE);
                        }
                        Err(e) => prop_assert!(false, "unexpected {e}"),
                    }
                }
            }
        }
        prop_assert_eq!(ring.write_seq(), model.head);
        prop_assert_eq!(ring.reader_count(), model.cursors.iter().flatten().count());
    }
    Ok(())
}

fn config() -> impl Strategy<Value = RingConfig> {
    (
        1u32..=3,
        prop_oneof![Just(1usize), Just(8), Just(13), Just(24)],
        prop_oneof![Just(Mode::Broadcast), Just(Mode::BackPressure)],
    )
        .prop_map(|(cap_log, max_msg, mode)| RingConfig {
            capacity: 1 << cap_log,
            max_msg,
            max_readers: TABLE,
            mode,
        })
}

fn case() -> impl Strategy<Value = (RingConfig, bool, Vec<Op>)> {
    (config(), any::<bool>()).prop_flat_map(|(c, shm)| {
        (
            Just(c),
            Just(shm),
            prop::collection::vec(op(c.max_msg, c.capacity as u64), 0..120),
        )
    })
}

proptest! {
    #[test]
    fn ring_matches_model((config, shm, ops) in case()) {
        run(config, shm, ops)?;
    }
}

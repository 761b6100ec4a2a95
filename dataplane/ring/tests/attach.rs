//! Shared-mapping creation, attach validation and the clear errors.
#![cfg(not(loom))]

mod common;

use std::io::{Seek, SeekFrom, Write};

use common::ShmPath;
use xpgm_ring::{Mode, ReadAtError, RecvError, Ring, RingConfig, RingError, SendError};

fn cfg() -> RingConfig {
    RingConfig {
        capacity: 8,
        max_msg: 32,
        max_readers: 2,
        mode: Mode::Broadcast,
    }
}

#[test]
fn second_mapping_sees_the_same_ring() {
    let p = ShmPath::new("attach");
    let a = Ring::create(&p.0, cfg()).unwrap();
    let b = Ring::open(&p.0, Some(&cfg())).unwrap();
    assert_eq!(b.config(), cfg());
    assert_eq!(b.path(), Some(p.0.as_path()));
    let mut r = b.reader().unwrap();
    let mut w = a.writer().unwrap();
    assert_eq!(w.try_send(b"hello"), Ok(0));
    assert_eq!(w.try_send(b"world!"), Ok(1));
    let mut buf = [0u8; 32];
    let m = r.try_recv(&mut buf).unwrap();
    assert_eq!((m.seq, &buf[..m.len]), (0, &b"hello"[..]));
    assert_eq!(b.read_at(1, &mut buf), Ok(6));
    assert_eq!(&buf[..6], b"world!");
    // Attach without an expected config accepts whatever is there.
    let c = Ring::open(&p.0, None).unwrap();
    assert_eq!(c.config(), cfg());
    assert_eq!(c.write_seq(), 2);
    assert_eq!(c.reader_count(), 1);
}

#[test]
fn mismatched_config_fails_clearly() {
    let p = ShmPath::new("mismatch");
    let _a = Ring::create(&p.0, cfg()).unwrap();
    let cases = [
        (
            RingConfig {
                capacity: 16,
                ..cfg()
            },
            "capacity",
            8,
            16,
        ),
        (
            RingConfig {
                max_msg: 64,
                ..cfg()
            },
            "max_msg",
            32,
            64,
        ),
        (
            RingConfig {
                max_readers: 3,
                ..cfg()
            },
            "max_readers",
            2,
            3,
        ),
        (
            RingConfig {
                mode: Mode::BackPressure,
                ..cfg()
            },
            "mode",
            1,
            2,
        ),
    ];
    for (want, field, found, expected) in cases {
        match Ring::open(&p.0, Some(&want)) {
            Err(RingError::LayoutMismatch {
                field: f,
                found: fo,
                expected: ex,
            }) => {
                assert_eq!((f, fo, ex), (field, found, expected));
            }
            other => panic!("{field}: expected LayoutMismatch, got {other:?}"),
        }
    }
    let msg = Ring::open(
        &p.0,
        Some(&RingConfig {
            capacity: 16,
            ..cfg()
        }),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        msg,
        "ring layout mismatch: capacity is 8 in the region, expected 16"
    );
}

#[test]
fn foreign_or_damaged_files_are_rejected() {
    // Not a ring.
    let p = ShmPath::new("garbage");
    std::fs::write(&p.0, vec![0xabu8; 4096]).unwrap();
    assert!(matches!(
        Ring::open(&p.0, None),
        Err(RingError::BadMagic {
            found: 0xabab_abab_abab_abab,
            ..
        })
    ));
    // Zero-filled (creator has not initialised it yet).
    std::fs::write(&p.0, vec![0u8; 4096]).unwrap();
    assert!(matches!(
        Ring::open(&p.0, None),
        Err(RingError::BadMagic { found: 0, .. })
    ));
    // Shorter than a header.
    std::fs::write(&p.0, b"XPGMRNG1").unwrap();
    assert!(matches!(
        Ring::open(&p.0, None),
        Err(RingError::TooSmall { len: 8, .. })
    ));
    // Missing.
    let missing = ShmPath::new("missing");
    match Ring::open(&missing.0, None) {
        Err(RingError::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound)
        }
        other => panic!("expected Io, got {other:?}"),
    }
}

#[test]
fn version_and_truncation_are_detected() {
    let p = ShmPath::new("version");
    drop(Ring::create(&p.0, cfg()).unwrap());
    let len = std::fs::metadata(&p.0).unwrap().len();
    {
        let mut f = std::fs::OpenOptions::new().write(true).open(&p.0).unwrap();
        f.seek(SeekFrom::Start(8)).unwrap();
        f.write_all(&99u64.to_le_bytes()).unwrap();
    }
    assert!(matches!(
        Ring::open(&p.0, None),
        Err(RingError::VersionMismatch {
            found: 99,
            expected: 1
        })
    ));
    // Restore the version, then cut the file short.
    {
        let mut f = std::fs::OpenOptions::new().write(true).open(&p.0).unwrap();
        f.seek(SeekFrom::Start(8)).unwrap();
        f.write_all(&1u64.to_le_bytes()).unwrap();
        f.set_len(len / 2).unwrap();
    }
    match Ring::open(&p.0, None) {
        Err(RingError::TooSmall { len: l, needed }) => {
            assert_eq!((l as u64, needed as u64), (len / 2, len))
        }
        other => panic!("expected TooSmall, got {other:?}"),
    }
    // Geometry field that disagrees with the other fields.
    {
        let mut f = std::fs::OpenOptions::new().write(true).open(&p.0).unwrap();
        f.set_len(len).unwrap();
        // capacity (offset 16) = 3: not a power of two.
        f.seek(SeekFrom::Start(16)).unwrap();
        f.write_all(&3u64.to_le_bytes()).unwrap();
    }
    assert!(matches!(
        Ring::open(&p.0, None),
        Err(RingError::InvalidConfig(_))
    ));
}

#[test]
fn create_refuses_existing_file() {
    let p = ShmPath::new("exists");
    let _a = Ring::create(&p.0, cfg()).unwrap();
    match Ring::create(&p.0, cfg()) {
        Err(RingError::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::AlreadyExists)
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
}

#[test]
fn single_writer_and_bounded_reader_table_across_mappings() {
    let p = ShmPath::new("claims");
    let a = Ring::create(&p.0, cfg()).unwrap();
    let b = Ring::open(&p.0, None).unwrap();
    let w = a.writer().unwrap();
    assert!(matches!(b.writer(), Err(RingError::WriterBusy)));
    drop(w);
    let mut w = b.writer().unwrap();
    assert_eq!(w.try_send(b"x"), Ok(0));

    let r1 = a.reader().unwrap();
    let _r2 = b.reader().unwrap();
    let err = a.reader().unwrap_err();
    assert!(matches!(err, RingError::ReaderTableFull { max: 2 }));
    assert_eq!(
        err.to_string(),
        "ring reader table full: all 2 reader entries are registered"
    );
    drop(r1);
    let r3 = b.reader().unwrap();
    assert_eq!(r3.cursor(), 1);
}

#[test]
fn invalid_configs_are_rejected() {
    for bad in [
        RingConfig {
            capacity: 0,
            ..cfg()
        },
        RingConfig {
            capacity: 1,
            ..cfg()
        },
        RingConfig {
            capacity: 12,
            ..cfg()
        },
        RingConfig {
            capacity: 1 << 25,
            ..cfg()
        },
        RingConfig {
            max_msg: 0,
            ..cfg()
        },
        RingConfig {
            max_msg: (1 << 20) + 1,
            ..cfg()
        },
        RingConfig {
            max_readers: 0,
            ..cfg()
        },
        RingConfig {
            max_readers: 257,
            ..cfg()
        },
        RingConfig {
            capacity: 1 << 24,
            max_msg: 1 << 20,
            ..cfg()
        },
    ] {
        assert!(
            matches!(Ring::new(bad), Err(RingError::InvalidConfig(_))),
            "{bad:?} accepted"
        );
    }
}

#[test]
fn lapped_count_is_exact_and_data_never_torn_through_shm() {
    let p = ShmPath::new("lap");
    let a = Ring::create(&p.0, cfg()).unwrap();
    let b = Ring::open(&p.0, Some(&cfg())).unwrap();
    let mut r = b.reader().unwrap();
    let mut w = a.writer().unwrap();
    for i in 0..20u64 {
        assert_eq!(w.try_send(&i.to_le_bytes()), Ok(i));
    }
    let mut buf = [0u8; 32];
    assert_eq!(r.lag(), 20);
    // 20 written, capacity 8: messages 0..12 are gone.
    assert_eq!(r.try_recv(&mut buf), Err(RecvError::Lapped { missed: 12 }));
    for i in 12..20u64 {
        let m = r.try_recv(&mut buf).unwrap();
        assert_eq!((m.seq, &buf[..8]), (i, &i.to_le_bytes()[..]));
    }
    assert_eq!(r.try_recv(&mut buf), Err(RecvError::Empty));
    assert_eq!(b.read_at(11, &mut buf), Err(ReadAtError::Overwritten));
    assert_eq!(b.read_at(20, &mut buf), Err(ReadAtError::NotYet));
    assert_eq!(
        w.try_send(&[0u8; 33]),
        Err(SendError::TooLarge { len: 33, max: 32 })
    );
}

#[test]
fn backpressure_full_until_reader_catches_up() {
    let ring = Ring::new(RingConfig {
        mode: Mode::BackPressure,
        ..cfg()
    })
    .unwrap();
    let mut w = ring.writer().unwrap();
    // No registered reader: never full.
    for i in 0..20u64 {
        assert_eq!(w.try_send(b"a"), Ok(i));
    }
    let mut r = ring.reader().unwrap();
    for i in 20..28u64 {
        assert_eq!(w.try_send(b"b"), Ok(i));
    }
    assert_eq!(w.try_send(b"c"), Err(SendError::Full));
    assert_eq!(
        w.send_blocking(b"c", Some(std::time::Duration::ZERO)),
        Err(SendError::Timeout)
    );
    let mut buf = [0u8; 32];
    assert_eq!(r.try_recv(&mut buf).map(|m| m.seq), Ok(20));
    assert_eq!(w.try_send(b"c"), Ok(28));
    assert_eq!(w.try_send(b"d"), Err(SendError::Full));
    drop(r);
    assert_eq!(w.try_send(b"d"), Ok(29));
    let mut r = ring.reader().unwrap();
    assert_eq!(
        r.recv_blocking(&mut buf, Some(std::time::Duration::ZERO)),
        Err(RecvError::Timeout)
    );
}

//! Cross-process use: a child process (this test binary re-executed with an
//! environment variable) attaches to the same `/dev/shm` ring and reads what
//! the parent writes; a child expecting another layout fails clearly.
#![cfg(not(loom))]

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{ShmPath, check_message, env_count, message};
use xpgm_ring::{Mode, Ring, RingConfig};

const PATH_VAR: &str = "XPGM_RING_CHILD_PATH";
const ROLE_VAR: &str = "XPGM_RING_CHILD_ROLE";
const COUNT_VAR: &str = "XPGM_RING_CHILD_COUNT";
const MAX_MSG: usize = 48;

fn cfg() -> RingConfig {
    RingConfig {
        capacity: 64,
        max_msg: MAX_MSG,
        max_readers: 4,
        mode: Mode::BackPressure,
    }
}

fn spawn_child(path: &std::path::Path, role: &str, count: u64) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PATH_VAR, path)
        .env(ROLE_VAR, role)
        .env(COUNT_VAR, count.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn output_text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn child_process_reads_what_parent_writes() {
    let count = env_count("XPGM_RING_XPROC_MSGS", 20_000);
    let p = ShmPath::new("xproc");
    let ring = Ring::create(&p.0, cfg()).unwrap();
    let mut w = ring.writer().unwrap();
    let child = spawn_child(&p.0, "read", count);
    // Wait (bounded) for the child to register its reader; back-pressure
    // mode then guarantees it sees every message.
    let start = Instant::now();
    while ring.reader_count() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "child never attached"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut buf = [0u8; MAX_MSG];
    for seq in 0..count {
        let n = message(seq, MAX_MSG, &mut buf);
        assert_eq!(
            w.send_blocking(&buf[..n], Some(Duration::from_secs(120))),
            Ok(seq)
        );
    }
    let out = child.wait_with_output().unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("child received {count} messages intact")),
        "{text}"
    );
}

#[test]
fn child_with_other_layout_fails_clearly() {
    let p = ShmPath::new("xproc-mismatch");
    let _ring = Ring::create(&p.0, cfg()).unwrap();
    let out = spawn_child(&p.0, "mismatch", 0).wait_with_output().unwrap();
    let text = output_text(&out);
    assert!(
        text.contains("ring layout mismatch: capacity is 64 in the region, expected 128"),
        "{text}"
    );
}

/// A consumer that dies while registered (and a writer that dies holding the
/// writer claim) must not block the publish ring for good:
/// `reap_dead_owners` frees their claims once the process is gone.
#[test]
fn claims_of_a_dead_process_are_reaped() {
    let p = ShmPath::new("xproc-reap");
    let ring = Ring::create(&p.0, cfg()).unwrap();
    let out = spawn_child(&p.0, "crash", 0).wait_with_output().unwrap();
    let text = output_text(&out);
    assert!(text.contains("child leaving claims behind"), "{text}");
    assert_eq!(ring.reader_count(), 1, "{text}");
    assert!(matches!(
        ring.writer(),
        Err(xpgm_ring::RingError::WriterBusy)
    ));
    // Our own live claims are never reaped.
    let _mine = ring.reader().unwrap();
    let reaped = ring.reap_dead_owners();
    assert_eq!(
        reaped,
        xpgm_ring::Reaped {
            readers: 1,
            writer: true
        }
    );
    assert_eq!(ring.reader_count(), 1);
    assert_eq!(ring.reap_dead_owners(), xpgm_ring::Reaped::default());
    let mut w = ring.writer().unwrap();
    assert_eq!(w.try_send(b"after reap"), Ok(0));
}

/// The child's side; only does something when re-executed by the tests
/// above (ignored in normal runs).
#[test]
#[ignore = "child process body, run by the other tests in this file"]
fn child() {
    let Ok(path) = std::env::var(PATH_VAR) else {
        return;
    };
    let role = std::env::var(ROLE_VAR).unwrap_or_default();
    let count = env_count(COUNT_VAR, 0);
    match role.as_str() {
        "read" => {
            let ring = Ring::open(&path, Some(&cfg())).unwrap();
            let mut r = ring.reader().unwrap();
            assert_eq!(r.cursor(), 0, "parent wrote before we registered");
            let mut buf = [0u8; MAX_MSG];
            for seq in 0..count {
                let m = r
                    .recv_blocking(&mut buf, Some(Duration::from_secs(120)))
                    .unwrap();
                assert_eq!(m.seq, seq);
                assert!(check_message(seq, MAX_MSG, &buf[..m.len]), "torn {seq}");
            }
            println!("child received {count} messages intact");
        }
        "crash" => {
            let ring = Ring::open(&path, Some(&cfg())).unwrap();
            // Leak the claims as a crashing process would.
            std::mem::forget(ring.reader().unwrap());
            std::mem::forget(ring.writer().unwrap());
            println!("child leaving claims behind");
        }
        "mismatch" => {
            let want = RingConfig {
                capacity: 128,
                ..cfg()
            };
            match Ring::open(&path, Some(&want)) {
                Ok(_) => panic!("attached despite layout mismatch"),
                Err(e) => println!("attach failed: {e}"),
            }
        }
        other => panic!("unknown child role {other:?}"),
    }
}

//! Stats files on disk: creation, live updates seen by a scan, removal on drop, stale
//! and invalid files.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use xpgm_stats::layout::{TOTAL_BYTES, rcv, src};
use xpgm_stats::{Role, SessionInfo, StatsWriter, scan};

fn tmpdir() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "xpgm-stats-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn info(role: Role) -> SessionInfo {
    SessionInfo {
        role,
        transport: "socket".into(),
        iface: "lo".into(),
        group: "239.192.0.9".into(),
        dport: 7500,
        udp_encap: None,
        tsi: [9, 8, 7, 6, 5, 4, 0, 1],
    }
}

#[test]
fn scan_sees_live_counters_and_drop_removes() {
    let dir = tmpdir();
    let a = StatsWriter::create(&dir, &info(Role::Source)).expect("create");
    let b = StatsWriter::create(&dir, &info(Role::Receiver)).expect("create");
    let pa = a.path().expect("file").to_path_buf();
    assert_eq!(
        std::fs::metadata(&pa).expect("exists").len(),
        TOTAL_BYTES as u64
    );
    a.set(src::ODATA_PACKETS, 5);
    b.set(rcv::DELIVERED, 3);
    let s = scan(&dir, true).expect("scan");
    assert_eq!(s.sessions.len(), 2);
    assert_eq!((s.invalid, s.stale), (0, 0));
    assert_eq!(s.sessions[0].role, Role::Source);
    assert_eq!(s.sessions[0].counter("odata_packets"), Some(5));
    assert_eq!(s.sessions[1].counter("delivered"), Some(3));
    // A later store is visible to the next scan (same shared pages).
    a.set(src::ODATA_PACKETS, 6);
    let s = scan(&dir, false).expect("scan");
    assert_eq!(s.sessions[0].counter("odata_packets"), Some(6));
    drop(a);
    assert!(!pa.exists());
    let s = scan(&dir, false).expect("scan");
    assert_eq!(s.sessions.len(), 1);
    drop(b);
    assert!(scan(&dir, false).expect("scan").sessions.is_empty());
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn stale_and_invalid_files() {
    let dir = tmpdir();
    let live = StatsWriter::create(&dir, &info(Role::Source)).expect("create");
    let bytes = std::fs::read(live.path().expect("file")).expect("read");
    // A file of a process that no longer runs (pid beyond pid_max): stale.
    let dead = dir.join(format!("{}-1-0.stats", i32::MAX));
    std::fs::write(&dead, &bytes).expect("write");
    // Our own pid with a wrong start time (a reused pid): stale too.
    let reused = dir.join(format!("{}-1-77.stats", std::process::id()));
    std::fs::write(&reused, &bytes).expect("write");
    // Live process, but the content does not match the name / is garbage: invalid, kept.
    let me = xpgm_stats::proc_start_time(std::process::id()).expect("start");
    let mismatch = dir.join(format!("{}-{me}-999.stats", std::process::id()));
    std::fs::write(&mismatch, &bytes).expect("write");
    let junk = dir.join(format!("{}-{me}-1000.stats", std::process::id()));
    std::fs::write(&junk, b"not a stats file").expect("write");
    let badname = dir.join("hello.stats");
    std::fs::write(&badname, &bytes).expect("write");
    let link = dir.join(format!("{}-{me}-1001.stats", std::process::id()));
    std::os::unix::fs::symlink(live.path().expect("file"), &link).expect("symlink");
    std::fs::write(dir.join("other.txt"), b"x").expect("write");

    let s = scan(&dir, false).expect("scan");
    assert_eq!(s.sessions.len(), 1);
    assert_eq!((s.stale, s.removed, s.invalid), (2, 0, 4));
    assert!(dead.exists() && reused.exists());
    let s = scan(&dir, true).expect("scan");
    assert_eq!((s.stale, s.removed), (2, 2));
    assert!(!dead.exists() && !reused.exists());
    assert!(mismatch.exists() && junk.exists() && badname.exists());
    assert_eq!(s.sessions.len(), 1);
    drop(live);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn missing_dir_is_empty() {
    let s = scan(&tmpdir(), true).expect("scan");
    assert!(s.sessions.is_empty());
}

#[test]
fn a_symlinked_directory_is_refused() {
    let real = tmpdir();
    std::fs::create_dir_all(&real).expect("mkdir");
    let link = tmpdir();
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    let e = StatsWriter::create(&link, &info(Role::Source)).expect_err("refused");
    assert!(e.to_string().contains("not a directory"), "{e}");
    assert_eq!(std::fs::read_dir(&real).expect("list").count(), 0);
    // open_default-style fallback still gives a working (private) writer.
    let w = StatsWriter::private(&info(Role::Source));
    assert!(w.path().is_none());
    std::fs::remove_file(&link).expect("cleanup");
    std::fs::remove_dir(&real).expect("cleanup");
}

//! `xpgm send --stamp` + `xpgm recv --latency --progress-ms` over the kernel-socket
//! transport on the loopback interface (UDP encapsulation, no root needed): every
//! message is timed, the percentiles are ordered and positive, and progress lines
//! report what was received.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

fn xpgm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_xpgm"))
}

fn u(v: &Value, k: &str) -> u64 {
    v.get(k)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no integer '{k}' in {v}"))
}

/// `key=value` of a progress line.
fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
}

#[test]
fn stamped_messages_give_ordered_positive_latency_percentiles() {
    const COUNT: u64 = 3000;
    let port = (20_000 + std::process::id() % 20_000).to_string();
    let group = "239.192.77.11";
    let net = ["--iface", "lo", "--group", group, "--udp-encap", &port];
    let count = COUNT.to_string();
    let mut rx = xpgm()
        .arg("recv")
        .args(net)
        .args(["--count", &count, "--idle-ms", "20000"])
        .args(["--latency", "--json", "--progress-ms", "100"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xpgm recv");
    // Progress lines on stderr; the first one says the receiver is listening.
    let stderr = rx.stderr.take().expect("stderr");
    let (tx_lines, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx_lines.send(line);
        }
    });
    let first = lines
        .recv_timeout(Duration::from_secs(60))
        .expect("receiver printed no progress line");
    assert!(first.starts_with("progress t="), "{first}");
    assert_eq!(field(&first, "received"), 0, "{first}");

    let out = xpgm()
        .arg("send")
        .args(net)
        .args(["--count", &count, "--size", "64", "--rate", "5000"])
        .args(["--stamp", "--linger-ms", "500", "--json"])
        .output()
        .expect("run xpgm send");
    assert!(out.status.success(), "send: {out:?}");
    let s: Value = serde_json::from_slice(&out.stdout).expect("send JSON");
    assert_eq!(u(&s, "sent"), COUNT);
    assert_eq!(s["stamped"], true);

    let status = rx.wait().expect("wait recv");
    let mut stdout = String::new();
    rx.stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read stdout");
    reader.join().expect("stderr reader");
    let progress: Vec<String> = std::iter::once(first).chain(lines.try_iter()).collect();
    assert!(status.success(), "recv: {status:?} {stdout} {progress:?}");
    let v: Value = serde_json::from_str(stdout.trim()).expect("recv JSON");
    eprintln!("recv: {v}");

    assert_eq!(u(&v, "received"), COUNT, "{v}");
    for k in [
        "unrecoverable",
        "corrupt",
        "duplicates",
        "index_gaps",
        "repairs",
    ] {
        assert_eq!(u(&v, k), 0, "{k}: {v}");
    }
    let lat = &v["latency_ns"];
    assert_eq!(u(lat, "count"), COUNT, "{v}");
    assert_eq!(u(lat, "unstamped"), 0, "{v}");
    assert_eq!(u(lat, "negative"), 0, "{v}");
    let p: Vec<u64> = ["p50", "p90", "p99", "p999", "max"]
        .iter()
        .map(|k| u(lat, k))
        .collect();
    assert!(p[0] > 0, "{lat}");
    assert!(p.windows(2).all(|w| w[0] <= w[1]), "not ordered: {lat}");
    // A misread stamp (wrong bytes or byte order) would be off by years, not seconds.
    assert!(p[4] < 60_000_000_000, "{lat}");

    // Progress: one line per interval, counts never go backwards and stay within
    // what was sent.
    let mut last = 0;
    for line in progress.iter().filter(|l| l.starts_with("progress ")) {
        let r = field(line, "received");
        assert!(r >= last && r <= COUNT, "{progress:?}");
        assert_eq!(field(line, "unrecoverable"), 0, "{line}");
        last = r;
    }
    assert!(
        last > 0,
        "no progress line while receiving (sending lasts ~0.6 s, lines every 100 ms): {progress:?}"
    );
}

#[test]
fn stamp_needs_room_for_index_and_time() {
    let out = xpgm()
        .args(["send", "--iface", "lo", "--group", "239.192.77.12"])
        .args(["--size", "15", "--stamp"])
        .output()
        .expect("run xpgm send");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--stamp needs --size 16 or more"), "{err}");
    assert!(out.stdout.is_empty());
}

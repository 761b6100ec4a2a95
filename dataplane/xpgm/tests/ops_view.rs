//! The operator's view end to end: `xpgm recv` and `xpgm send` over the kernel-socket
//! transport on loopback (UDP encapsulation, no root needed), with `XPGM_STATS_DIR` set
//! to a private directory. While they run, the stats files show both sessions with
//! plausible counters; `xpgmctl top`'s report (xpgm_control::top) gives them rates; and
//! xpgmd's metrics listener (xpgm_control::metrics) serves them over HTTP. When the
//! processes exit, their files are gone.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use xpgm_stats::scan;

const COUNT: u64 = 20_000;
const RATE: u64 = 5_000;
const SIZE: u64 = 100;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The test's stats directory, removed when the test ends (also on failure).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn xpgm(dir: &Path, args: &[&str]) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_xpgm"))
            .args(args)
            .env("XPGM_STATS_DIR", dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn xpgm"),
    )
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn top_and_metrics_show_a_live_loopback_session() {
    let dir: PathBuf = std::env::temp_dir().join(format!("xpgm-ops-view-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let _cleanup = TempDir(dir.clone());
    let port = (40_000 + std::process::id() % 20_000).to_string();
    let group = format!(
        "239.77.{}.{}",
        std::process::id() % 200,
        1 + std::process::id() % 250
    );
    let net = ["--iface", "lo", "--group", &group, "--udp-encap", &port];
    let count = COUNT.to_string();
    let mut recv_args = vec!["recv"];
    recv_args.extend(net);
    recv_args.extend(["--count", &count, "--idle-ms", "20000", "--json"]);
    let mut recv = xpgm(&dir, &recv_args);
    // The receiver's file appears once its subscriber is up (joined).
    wait_for(
        "the receiver's stats file",
        Duration::from_secs(120),
        || scan(&dir, false).is_ok_and(|s| s.sessions.len() == 1),
    );
    let rate = RATE.to_string();
    let size = SIZE.to_string();
    let mut send_args = vec!["send"];
    send_args.extend(net);
    send_args.extend([
        "--count",
        &count,
        "--rate",
        &rate,
        "--size",
        &size,
        "--linger-ms",
        "500",
        "--json",
    ]);
    let mut send = xpgm(&dir, &send_args);
    // Both sessions live, and data flowing.
    wait_for("data in both sessions", Duration::from_secs(60), || {
        scan(&dir, false).is_ok_and(|s| {
            s.sessions.len() == 2
                && s.sessions
                    .iter()
                    .all(|x| x.counter("odata_packets").is_some_and(|n| n > 100))
        })
    });

    // xpgmctl top's report over two samples.
    let a = xpgm_control::top::sample(&dir).expect("sample");
    std::thread::sleep(Duration::from_millis(500));
    let b = xpgm_control::top::sample(&dir).expect("sample");
    let j = xpgm_control::top::report_json(&a, &b);
    let sessions = j["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 2, "{j}");
    let src = sessions
        .iter()
        .find(|s| s["role"] == "source")
        .expect("source");
    let rcv = sessions
        .iter()
        .find(|s| s["role"] == "receiver")
        .expect("receiver");
    for s in [src, rcv] {
        assert_eq!(s["transport"], "socket");
        assert_eq!(s["iface"], "lo");
        assert_eq!(s["group"], group.as_str());
        assert_eq!(s["dport"], 7500);
        assert_eq!(s["udp_encap"].to_string(), port);
    }
    assert_ne!(src["tsi"], "-");
    assert_eq!(src["pid"], send.0.id());
    assert_eq!(rcv["pid"], recv.0.id());
    let sent = src["counters"]["odata_packets"].as_u64().expect("n");
    let bytes = src["counters"]["odata_bytes"].as_u64().expect("n");
    assert!(sent > 100 && sent <= COUNT, "{src}");
    assert_eq!(
        bytes,
        sent * SIZE,
        "every ODATA carries one {SIZE}-byte message"
    );
    let got = rcv["counters"]["odata_packets"].as_u64().expect("n");
    assert!(got > 100 && got <= COUNT, "{rcv}");
    assert!(src["counters"]["spm_sent"].as_u64().expect("n") > 0);
    assert!(rcv["counters"]["peers"].as_u64().expect("n") == 1);
    let lead = src["counters"]["txw_lead"].as_u64().expect("n");
    let trail = src["counters"]["txw_trail"].as_u64().expect("n");
    assert!(lead >= trail && lead < COUNT, "window {trail}..{lead}");
    let rlead = rcv["counters"]["rxw_lead"].as_u64().expect("n");
    let rtrail = rcv["counters"]["rxw_trail"].as_u64().expect("n");
    assert!(
        rlead >= rtrail && rlead > 100 && rlead < COUNT,
        "receive window {rtrail}..{rlead}"
    );
    // Sending at RATE msg/s: the rate over the interval is in a plausible band (wide:
    // the machine is shared; this checks that rates come from the two samples).
    let r = src["rates"]["odata_packets"].as_f64().expect("rate");
    assert!(r > 0.0 && r < RATE as f64 * 3.0, "source rate {r}");
    let r = rcv["rates"]["odata_packets"].as_f64().expect("rate");
    assert!(r > 0.0 && r < RATE as f64 * 3.0, "receiver rate {r}");
    let table = xpgm_control::top::report_table(&a, &b);
    assert_eq!(table.lines().count(), 3, "{table}");

    // xpgmd's metrics listener.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    xpgm_control::metrics::spawn(l, dir.clone()).expect("spawn");
    let resp = http_get(addr, "/metrics");
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.contains("xpgm_sessions{role=\"source\"} 1"), "{resp}");
    assert!(
        resp.contains("xpgm_sessions{role=\"receiver\"} 1"),
        "{resp}"
    );
    let line = |metric: &str, pid: u32| {
        resp.lines()
            .find(|l| l.starts_with(metric) && l.contains(&format!("pid=\"{pid}\"")))
            .unwrap_or_else(|| panic!("no {metric} for {pid} in {resp}"))
            .to_string()
    };
    let l = line("xpgm_source_odata_packets_total{", send.0.id());
    assert!(
        l.contains(&format!("group=\"{group}\"")) && l.contains("iface=\"lo\""),
        "{l}"
    );
    let v: u64 = l
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("value");
    assert!(v >= sent, "counter went backwards: {v} < {sent}");
    line("xpgm_receiver_naks_sent_total{", recv.0.id());
    line("xpgm_receiver_unrecoverable_total{", recv.0.id());

    // Both finish; their files go with them.
    for (name, p) in [("send", &mut send), ("recv", &mut recv)] {
        let st = p.0.wait().expect("wait");
        let mut err = String::new();
        if let Some(e) = p.0.stderr.as_mut() {
            let _ = e.read_to_string(&mut err);
        }
        assert!(st.success(), "xpgm {name}: {st} {err}");
    }
    let after = scan(&dir, false).expect("scan");
    assert!(after.sessions.is_empty() && after.stale == 0, "{after:?}");
}

//! The operator's view through the real binaries: `xpgmctl top --once --json` and
//! `xpgmctl top --once` over stats files written by xpgm-stats writers (standing in for
//! data-plane workers), and `xpgmd --metrics-listen` serving them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use xpgm_stats::layout::{rcv, src};
use xpgm_stats::{Role, SessionInfo, StatsWriter};

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xpgm-ops-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn info(role: Role) -> SessionInfo {
    SessionInfo {
        role,
        transport: "xdp".into(),
        iface: "veth1".into(),
        group: "239.192.0.1".into(),
        dport: 7500,
        udp_encap: None,
        // Receivers follow any number of sources: no TSI of their own.
        tsi: if role == Role::Source {
            [10, 20, 30, 40, 50, 60, 0x1f, 0x90]
        } else {
            [0; 8]
        },
    }
}

/// A source and a receiver whose counters a thread keeps advancing (as workers do).
struct Live {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Live {
    fn start(dir: &Path) -> Live {
        let s = StatsWriter::create(dir, &info(Role::Source)).expect("create");
        let r = StatsWriter::create(dir, &info(Role::Receiver)).expect("create");
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut n = 0u64;
            while !st.load(Ordering::Relaxed) {
                n += 10;
                s.set(src::ODATA_PACKETS, n);
                s.set(src::ODATA_BYTES, n * 64);
                s.set(src::TXW_LEAD, n);
                r.set(rcv::ODATA_PACKETS, n);
                r.set(rcv::NAKS_SENT, n / 100);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Live {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn xpgmctl(args: &[&str], env_dir: Option<&Path>) -> (bool, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xpgmctl"));
    c.args(args)
        .env_remove("XPGM_STATS_DIR")
        .env("XPGM_SOCKET", "/nonexistent/xpgmd.sock");
    if let Some(d) = env_dir {
        c.env("XPGM_STATS_DIR", d);
    }
    let o = c.output().expect("run xpgmctl");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn xpgmctl_top_once_json_and_table() {
    let dir = tmpdir("top");
    let live = Live::start(&dir);
    // A stale file of a process that no longer exists: removed by top.
    let stale = dir.join(format!("{}-1-0.stats", i32::MAX));
    std::fs::write(&stale, b"whatever").expect("write");
    let d = dir.to_str().expect("utf-8");
    let (ok, out, err) = xpgmctl(
        &[
            "top",
            "--once",
            "--json",
            "--interval",
            "300",
            "--stats-dir",
            d,
        ],
        None,
    );
    assert!(ok, "{err}");
    let j: Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert!(j["interval_ms"].as_f64().expect("ms") >= 300.0);
    assert_eq!(j["stale_removed"], 1);
    assert!(!stale.exists());
    let ss = j["sessions"].as_array().expect("sessions");
    assert_eq!(ss.len(), 2, "{j}");
    let (s, r) = (&ss[0], &ss[1]);
    assert_eq!(s["role"], "source");
    assert_eq!(r["role"], "receiver");
    assert_eq!(s["pid"], std::process::id());
    assert_eq!(s["transport"], "xdp");
    assert_eq!(s["iface"], "veth1");
    assert_eq!(s["tsi"], "10.20.30.40.50.60.8080");
    assert_eq!(r["tsi"], "-");
    assert!(s["counters"]["odata_packets"].as_u64().expect("n") > 0);
    assert!(s["rates"]["odata_packets"].as_f64().expect("rate") > 0.0);
    assert!(r["rates"]["odata_packets"].as_f64().expect("rate") > 0.0);
    assert!(s["rates"].get("txw_lead").is_none(), "gauges have no rate");

    // The same through $XPGM_STATS_DIR, as a table.
    let (ok, out, err) = xpgmctl(&["top", "--once", "--interval", "100"], Some(&dir));
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("SESSION") && lines[0].contains("NAK"));
    assert!(
        lines[1].contains("source") && lines[1].contains("/s"),
        "{out}"
    );
    assert!(
        lines[2].contains("receiver") && lines[2].contains("peers"),
        "{out}"
    );

    // Bad interval.
    let (ok, _, err) = xpgmctl(
        &["top", "--once", "--interval", "0", "--stats-dir", d],
        None,
    );
    assert!(!ok && err.contains("--interval"), "{err}");
    drop(live);
    let (ok, out, _) = xpgmctl(&["top", "--once", "--json", "--interval", "10"], Some(&dir));
    assert!(ok);
    let j: Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(j["sessions"].as_array().map(Vec::len), Some(0));
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM (orderly exit), then reap.
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

#[test]
fn xpgmd_metrics_listener() {
    if xpgm_control::sys::geteuid() != 0 {
        eprintln!("skipping: xpgmd needs root");
        return;
    }
    let dir = tmpdir("metrics");
    let sock = dir.with_extension("sock");
    // Refused: not loopback.
    let o = Command::new(env!("CARGO_BIN_EXE_xpgmd"))
        .args(["--socket", sock.to_str().expect("utf-8")])
        .args(["--metrics-listen", "0.0.0.0:0"])
        .output()
        .expect("run xpgmd");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("loopback"));

    let live = Live::start(&dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_xpgmd"))
        .args(["--socket", sock.to_str().expect("utf-8")])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .env("XPGM_STATS_DIR", &dir)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xpgmd");
    let stderr = child.stderr.take().expect("stderr");
    let d = Daemon(child);
    // Keep draining xpgmd's stderr (a closed pipe would make its next message fail).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("xpgmd: metrics on http://") {
                let _ = tx.send(rest.strip_suffix("/metrics").map(str::to_string));
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .ok()
        .flatten()
        .expect("xpgmd announced its metrics address");
    let get = |req: &str| {
        let mut s = TcpStream::connect(&addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(req.as_bytes()).expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    };
    let r = get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
    assert!(r.contains("xpgm_sessions{role=\"source\"} 1"), "{r}");
    assert!(r.contains("xpgm_sessions{role=\"receiver\"} 1"), "{r}");
    let pid = std::process::id();
    let sample = r
        .lines()
        .find(|l| l.starts_with("xpgm_source_odata_packets_total{"))
        .expect("source sample");
    assert!(sample.contains(&format!("pid=\"{pid}\"")), "{sample}");
    assert!(
        sample.contains("tsi=\"10.20.30.40.50.60.8080\""),
        "{sample}"
    );
    assert!(r.contains("# TYPE xpgm_receiver_naks_sent_total counter"));
    // A stalled client does not stop others from being served.
    let mut stalled = TcpStream::connect(&addr).expect("connect");
    stalled.write_all(b"GET /met").expect("write");
    let r2 = get("GET /metrics HTTP/1.0\r\n\r\n");
    assert!(r2.starts_with("HTTP/1.1 200 OK"), "{r2}");
    assert!(get("DELETE /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
    drop(stalled);
    drop(d);
    drop(live);
    let _ = std::fs::remove_dir_all(&dir);
}

//! A/B lines end to end over the kernel-socket transport (docs/transport.md "A/B
//! lines"): `scripts/topology up NAME --lines 2` builds a sender and two receivers on
//! two switches, each host with `eth0` on the first and `eth1` on the second, each
//! switch dropping 1% of what it forwards to each receiver, drawn independently.
//! `xpgm send --iface eth0 --iface eth1` sends every packet on both lines;
//! `xpgm recv --iface eth0 --iface eth1` takes each from whichever line brings it
//! first and NAKs only what both lines lost. Needs root: `#[ignore]`d, run by
//! `scripts/test-e2e`.
//!
//! Knobs: `XPGM_AB_COUNT` (default 150 000 messages of 64 B at 20 000 msg/s).

mod netns;

use std::process::Command;
use std::time::Duration;

use netns::{Net, Proc, SERIAL, assert_clean_run, env_u64, u};
use serde_json::Value;

const RATE: u64 = 20_000;

fn topology(tag: &str, loss: &str) -> Net {
    let prefix = std::env::var("XPGM_E2E_PREFIX").unwrap_or_else(|_| "x".into());
    let name = format!("{prefix}{tag}{:x}", std::process::id() % 0xfff);
    assert!(name.len() <= 8, "topology name {name} too long");
    Net::up_lines(name, 2, loss, 2)
}

fn recv_args<'a>(group: &'a str, count: &'a str) -> Vec<&'a str> {
    vec![
        "recv",
        "--iface",
        "eth0",
        "--iface",
        "eth1",
        "--group",
        group,
        "--count",
        count,
        "--idle-ms",
        "8000",
        "--json",
    ]
}

fn send_args<'a>(group: &'a str, count: &'a str, rate: &'a str) -> Vec<&'a str> {
    vec![
        "send",
        "--iface",
        "eth0",
        "--iface",
        "eth1",
        "--group",
        group,
        "--count",
        count,
        "--size",
        "64",
        "--rate",
        rate,
        "--linger-ms",
        "3000",
        "--json",
    ]
}

/// Every message once, in order, from the first.
fn assert_clean(v: &Value, expect: u64) {
    assert_clean_run(v, expect);
    assert_eq!(u(v, "first_index"), 0, "{v}");
}

/// The receiver's `lines` array (two entries, eth0 then eth1).
fn lines(v: &Value) -> Vec<Value> {
    let l = v["lines"]
        .as_array()
        .unwrap_or_else(|| panic!("no lines in {v}"))
        .clone();
    assert_eq!(l.len(), 2, "{v}");
    assert_eq!(
        (l[0]["iface"].as_str(), l[1]["iface"].as_str()),
        (Some("eth0"), Some("eth1"))
    );
    l
}

#[test]
#[ignore = "needs root and network namespaces; run by scripts/test-e2e"]
fn ab_lines_with_one_percent_loss_each_nak_only_what_both_lost() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let count = env_u64("XPGM_AB_COUNT", 150_000);
    let topo = topology("ab", "1");
    let group = "239.192.12.1";
    let (count_s, rate_s) = (count.to_string(), RATE.to_string());
    let r1 = Proc::spawn(&topo.rx(1), &recv_args(group, &count_s), None);
    let r2 = Proc::spawn(&topo.rx(2), &recv_args(group, &count_s), None);
    std::thread::sleep(Duration::from_millis(700));
    let limit = Duration::from_secs(count / RATE * 3 + 60);
    let s = Proc::spawn(&topo.tx(), &send_args(group, &count_s, &rate_s), None).json(limit);
    let v1 = r1.json(Duration::from_secs(30));
    let v2 = r2.json(Duration::from_secs(30));
    assert_eq!(u(&s, "sent"), count);
    let (drop_a, drop_b) = (topo.dropped("sw"), topo.dropped("sw2"));
    // 1% of 150,000 messages to each of two receivers, per line.
    assert!(
        drop_a > count / 100 && drop_b > count / 100,
        "drops {drop_a} {drop_b}"
    );
    let mut naks = 0;
    for v in [&v1, &v2] {
        assert_clean(v, count);
        naks += u(v, "naks_sent");
        let l = lines(v);
        for (i, line) in l.iter().enumerate() {
            // Each line brought some sequences first and missed some (its 1%).
            assert!(u(line, "won") > 0, "line {i} never first: {v}");
            assert!(u(line, "lost") > 0, "line {i} lost nothing at 1% loss: {v}");
            assert!(u(line, "received") > count * 9 / 10, "line {i}: {v}");
            assert_eq!(line["up"], true, "line {i}: {v}");
            assert_eq!(u(line, "downs"), 0, "line {i} reported down: {v}");
        }
    }
    // Only a sequence lost on both lines is NAKed: about 1% of 1%.
    let bound = drop_a.min(drop_b) / 50;
    eprintln!("NAKs sent {naks}, dropped on line A {drop_a}, on line B {drop_b}, bound {bound}");
    assert!(
        naks <= bound,
        "{naks} NAKs for {drop_a} / {drop_b} packets dropped (at most 1 per 50): {v1} {v2}"
    );
}

/// A stats directory for one receiver, removed at the end (also on failure).
struct StatsDir(std::path::PathBuf);

impl StatsDir {
    fn new() -> StatsDir {
        let p = std::env::temp_dir().join(format!("xpgm-e2e-ab-stats-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        StatsDir(p)
    }

    /// Polls the directory's one receiver session until line `l` satisfies `f` (true),
    /// or `limit` passes (false).
    fn wait_line(
        &self,
        l: usize,
        limit: Duration,
        f: impl Fn(&xpgm_stats::LineStats) -> bool,
    ) -> bool {
        let end = std::time::Instant::now() + limit;
        loop {
            let ok = xpgm_stats::scan(&self.0, false).is_ok_and(|s| {
                s.sessions
                    .iter()
                    .any(|x| x.lines.len() == 2 && x.lines.get(l).is_some_and(&f))
            });
            if ok {
                return true;
            }
            if std::time::Instant::now() > end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for StatsDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Sets `dev` of namespace `ns` down or up.
fn link(ns: &str, dev: &str, state: &str) {
    let st = Command::new("ip")
        .args(["-n", ns, "link", "set", dev, state])
        .status()
        .expect("run ip");
    assert!(st.success(), "ip -n {ns} link set {dev} {state}");
}

#[test]
#[ignore = "needs root and network namespaces; run by scripts/test-e2e"]
fn ab_line_taken_down_mid_stream_and_back_loses_nothing() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // 5 s of data: receiver 1's line B goes down at 1 s for 1 s, then the sender's
    // line A at 3 s for 1 s (both receivers lose it), with 1% loss throughout.
    let count = 100_000u64;
    let topo = topology("ad", "1");
    let group = "239.192.12.2";
    let (count_s, rate_s) = (count.to_string(), RATE.to_string());
    // Receiver 1 publishes its stats file in a directory of its own: its line records
    // (what xpgmctl top and Prometheus show) follow the outage.
    let stats = StatsDir::new();
    let r1 = Proc::spawn_env(
        &topo.rx(1),
        &recv_args(group, &count_s),
        &[(xpgm_stats::DIR_ENV, &stats.0)],
    );
    let r2 = Proc::spawn(&topo.rx(2), &recv_args(group, &count_s), None);
    std::thread::sleep(Duration::from_millis(700));
    let s = Proc::spawn(&topo.tx(), &send_args(group, &count_s, &rate_s), None);
    std::thread::sleep(Duration::from_secs(1));
    let line1_up = |want: bool| {
        stats.wait_line(1, Duration::from_millis(800), |l| {
            l.up == want && l.iface == "eth1"
        })
    };
    assert!(line1_up(true), "stats file: line eth1 up before the outage");
    // Each state lasts 1 s however long the stats file took to show it.
    let hold = |since: std::time::Instant| {
        std::thread::sleep(Duration::from_secs(1).saturating_sub(since.elapsed()));
    };
    let t = std::time::Instant::now();
    link(&topo.rx(1), "eth1", "down");
    let seen_down = line1_up(false);
    hold(t);
    let t = std::time::Instant::now();
    link(&topo.rx(1), "eth1", "up");
    let seen_up = stats.wait_line(1, Duration::from_millis(900), |l| l.up && l.lost > RATE / 2);
    hold(t);
    assert!(seen_down, "stats file: line eth1 down during the outage");
    assert!(
        seen_up,
        "stats file: line eth1 up again, with what it missed counted lost"
    );
    link(&topo.tx(), "eth0", "down");
    std::thread::sleep(Duration::from_secs(1));
    link(&topo.tx(), "eth0", "up");
    let s = s.json(Duration::from_secs(60));
    let v1 = r1.json(Duration::from_secs(30));
    let v2 = r2.json(Duration::from_secs(30));
    assert_eq!(u(&s, "sent"), count);
    for (k, v) in [(1, &v1), (2, &v2)] {
        assert_clean(v, count);
        let l = lines(v);
        // The engine said the line went down and came back, and used it again.
        let (down_line, other) = if k == 1 { (1, 0) } else { (0, 1) };
        assert!(u(&l[down_line], "downs") >= 1, "receiver {k}: {v}");
        assert_eq!(
            u(&l[down_line], "downs"),
            u(&l[down_line], "ups"),
            "receiver {k}: every down line came back: {v}"
        );
        assert_eq!(l[down_line]["up"], true, "receiver {k}: {v}");
        // ~1 s of 20,000 msg/s missed on it, taken from the other line.
        assert!(u(&l[down_line], "lost") > RATE / 2, "receiver {k}: {v}");
        assert!(u(&l[other], "won") > RATE / 2, "receiver {k}: {v}");
    }
    // The sender's own line A outage also reached receiver 1, after its line B one.
    let l1 = lines(&v1);
    assert!(u(&l1[0], "downs") >= 1, "{v1}");
    assert_eq!(u(&l1[0], "downs"), u(&l1[0], "ups"), "{v1}");
}

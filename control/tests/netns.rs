//! Network-namespace tests of xpgmd: a sender host, a receiver host and a
//! switch namespace with a Linux bridge doing IGMP/MLD snooping with a
//! querier. xpgmd runs in the receiver namespace; the test drives it over
//! its Unix socket (the same protocol xpgmctl uses).
//!
//! Needs root; skips with a message otherwise. Every namespace is named
//! `xpgmt-<pid>-<tag>-*` and removed on drop (also when a test fails).

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use xpgm_control::client::Client;

fn is_root() -> bool {
    xpgm_control::sys::geteuid() == 0
}

fn have_ip() -> bool {
    Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(args: &[&str]) -> String {
    let o = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// Sender `tx`, receiver `rx` and switch `sw`: tx:eth0 - sw:p-tx [br0] sw:p-rx - rx:eth0,
/// plus a second receiver link sw:p-rx1 - rx:eth1 (used by deletion tests).
struct Topo {
    tx: String,
    rx: String,
    sw: String,
    dir: PathBuf,
    xpgmd: Option<Child>,
}

impl Drop for Topo {
    fn drop(&mut self) {
        if let Some(mut c) = self.xpgmd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in [&self.tx, &self.rx, &self.sw] {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Topo {
    fn new(tag: &str) -> Self {
        let p = format!("xpgmt-{}-{tag}", std::process::id());
        let t = Topo {
            tx: format!("{p}-tx"),
            rx: format!("{p}-rx"),
            sw: format!("{p}-sw"),
            dir: std::env::temp_dir().join(&p),
            xpgmd: None,
        };
        let _ = std::fs::remove_dir_all(&t.dir);
        std::fs::create_dir_all(&t.dir).unwrap();
        for n in [&t.tx, &t.rx, &t.sw] {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
            run(&["ip", "netns", "add", n]);
            run(&["ip", "-n", n, "link", "set", "lo", "up"]);
        }
        let sw = t.sw.as_str();
        run(&[
            "ip",
            "-n",
            sw,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "1",
            "mcast_querier",
            "1",
            "mcast_igmp_version",
            "3",
            "mcast_mld_version",
            "2",
            "mcast_query_interval",
            "1000",
            "mcast_query_response_interval",
            "500",
            "mcast_last_member_interval",
            "100",
        ]);
        for (port, host, hif) in [
            ("p-tx", &t.tx, "eth0"),
            ("p-rx", &t.rx, "eth0"),
            ("p-rx1", &t.rx, "eth1"),
        ] {
            run(&[
                "ip", "-n", sw, "link", "add", port, "type", "veth", "peer", "name", hif, "netns",
                host,
            ]);
            run(&["ip", "-n", sw, "link", "set", port, "master", "br0", "up"]);
            run(&["ip", "-n", host, "link", "set", hif, "up"]);
        }
        run(&["ip", "-n", sw, "link", "set", "br0", "up"]);
        for (h, a4, a6) in [
            (&t.tx, "10.77.0.1/24", "fd77::1/64"),
            (&t.rx, "10.77.0.2/24", "fd77::2/64"),
        ] {
            run(&["ip", "-n", h, "addr", "add", a4, "dev", "eth0"]);
            run(&["ip", "-n", h, "addr", "add", a6, "dev", "eth0", "nodad"]);
            run(&[
                "ip",
                "-n",
                h,
                "route",
                "add",
                "239.192.0.0/16",
                "dev",
                "eth0",
            ]);
        }
        run(&[
            "ip",
            "-n",
            &t.rx,
            "addr",
            "add",
            "10.77.1.2/24",
            "dev",
            "eth1",
        ]);
        // Operational state follows asynchronously; xpgmd refuses interfaces
        // that are not up, so wait for carrier everywhere.
        for (ns, dev) in [
            (&t.tx, "eth0"),
            (&t.rx, "eth0"),
            (&t.rx, "eth1"),
            (&t.sw, "br0"),
        ] {
            wait_until(
                &format!("{dev} up in {ns}"),
                Duration::from_secs(10),
                || run(&["ip", "-n", ns, "-o", "link", "show", "dev", dev]).contains("state UP"),
            );
        }
        t
    }

    fn sock(&self) -> PathBuf {
        self.dir.join("xpgmd.sock")
    }

    /// Starts xpgmd in the receiver namespace and connects.
    fn start_xpgmd(&mut self) -> Client {
        self.start_xpgmd_logging(Stdio::inherit())
    }

    fn start_xpgmd_logging(&mut self, stderr: Stdio) -> Client {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.rx, env!("CARGO_BIN_EXE_xpgmd")])
            .arg("--socket")
            .arg(self.sock())
            .stdin(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn xpgmd");
        self.xpgmd = Some(child);
        let s = self.sock();
        wait_until("xpgmd socket", Duration::from_secs(10), || {
            std::os::unix::net::UnixStream::connect(&s).is_ok()
        });
        Client::connect(&s).unwrap()
    }

    fn ns(&self, ns: &str, args: &[&str]) -> String {
        let mut v = vec!["ip", "netns", "exec", ns];
        v.extend_from_slice(args);
        run(&v)
    }

    /// Runs `xpgmctl --socket SOCK ARGS...`, asserts success, returns stdout.
    fn ctl(&self, args: &[&str]) -> String {
        let sock = self.sock();
        let mut v = vec![
            env!("CARGO_BIN_EXE_xpgmctl"),
            "--socket",
            sock.to_str().unwrap(),
        ];
        v.extend_from_slice(args);
        run(&v)
    }

    fn mdb(&self) -> String {
        self.ns(&self.sw, &["bridge", "mdb", "show", "dev", "br0"])
    }
}

fn args(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn ok(c: &mut Client, op: &str, a: Value) -> Value {
    let r = c.request(op, args(a)).unwrap();
    assert_eq!(r["ok"], json!(true), "{op}: {r}");
    r
}

fn err(c: &mut Client, op: &str, a: Value) -> String {
    let r = c.request(op, args(a)).unwrap();
    assert_eq!(r["ok"], json!(false), "{op} should fail: {r}");
    r["error"]["code"].as_str().unwrap_or("").to_owned()
}

fn mdb_has(mdb: &str, port: &str, group: &str) -> bool {
    mdb.lines().any(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        w.windows(2).any(|p| p == ["port", port]) && w.windows(2).any(|p| p == ["grp", group])
    })
}

/// Lines of /proc/net/mcfilter in `ns` for `dev`: (group, source, include, exclude).
fn mcfilter(t: &Topo, dev: &str) -> Vec<(Ipv4Addr, Ipv4Addr, u32, u32)> {
    let s = t.ns(&t.rx, &["cat", "/proc/net/mcfilter"]);
    let hex = |h: &str| {
        let v = u32::from_str_radix(h.trim_start_matches("0x"), 16).unwrap_or(0);
        Ipv4Addr::from(v)
    };
    s.lines()
        .skip(1)
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.get(1) == Some(&dev)).then(|| {
                (
                    hex(w[2]),
                    hex(w[3]),
                    w[4].parse().unwrap_or(0),
                    w[5].parse().unwrap_or(0),
                )
            })
        })
        .collect()
}

fn skip() -> bool {
    if !is_root() {
        eprintln!("skipping: network-namespace tests need root");
        return true;
    }
    if !have_ip() {
        eprintln!("skipping: iproute2 (ip) not installed");
        return true;
    }
    false
}

#[test]
fn join_and_leave_show_in_the_bridge_mdb_and_kernel_filters() {
    if skip() {
        return;
    }
    let mut t = Topo::new("mdb");
    let mut c = t.start_xpgmd();

    // Any-source join with xpgmctl: the bridge learns the receiver's port.
    t.ctl(&["join", "eth0", "239.192.0.1"]);
    wait_until("mdb entry for p-rx", Duration::from_secs(15), || {
        mdb_has(&t.mdb(), "p-rx", "239.192.0.1")
    });
    assert!(!mdb_has(&t.mdb(), "p-tx", "239.192.0.1"));
    let igmp = t.ns(&t.rx, &["cat", "/proc/net/igmp"]);
    assert!(
        igmp.contains("0100C0EF"),
        "239.192.0.1 in /proc/net/igmp:\n{igmp}"
    );

    // A second reference keeps the membership after one leave.
    ok(
        &mut c,
        "join",
        json!({"interface": "eth0", "group": "239.192.0.1"}),
    );
    ok(
        &mut c,
        "leave",
        json!({"interface": "eth0", "group": "239.192.0.1"}),
    );
    let g = ok(&mut c, "groups", json!({}));
    assert_eq!(g["groups"][0]["refs"], json!(1), "{g}");
    assert!(t.ns(&t.rx, &["cat", "/proc/net/igmp"]).contains("0100C0EF"));

    // Last leave (xpgmctl again): gone from the kernel and, after the
    // querier's last-member queries, from the bridge.
    let table = t.ctl(&["groups"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("eth0") && l.contains("239.192.0.1")),
        "{table}"
    );
    t.ctl(&["leave", "eth0", "239.192.0.1"]);
    assert!(!t.ns(&t.rx, &["cat", "/proc/net/igmp"]).contains("0100C0EF"));
    wait_until("mdb entry removed", Duration::from_secs(20), || {
        !mdb_has(&t.mdb(), "p-rx", "239.192.0.1")
    });
    assert_eq!(ok(&mut c, "groups", json!({}))["groups"], json!([]));

    // Source-specific join: INCLUDE filter with the source.
    ok(
        &mut c,
        "join",
        json!({"interface": "eth0", "group": "239.192.0.2", "sources": ["10.77.0.1"]}),
    );
    let f = mcfilter(&t, "eth0");
    assert!(
        f.contains(&(
            "239.192.0.2".parse().unwrap(),
            "10.77.0.1".parse().unwrap(),
            1,
            0
        )),
        "{f:?}"
    );
    wait_until("mdb entry for SSM group", Duration::from_secs(15), || {
        mdb_has(&t.mdb(), "p-rx", "239.192.0.2")
    });
    // Ordering rules come back as clear errors.
    assert_eq!(
        err(
            &mut c,
            "join",
            json!({"interface": "eth0", "group": "239.192.0.2"})
        ),
        "invalid_state"
    );
    assert_eq!(
        err(
            &mut c,
            "block",
            json!({"interface": "eth0", "group": "239.192.0.2", "source": "10.77.0.1"})
        ),
        "invalid_state"
    );
    ok(
        &mut c,
        "leave",
        json!({"interface": "eth0", "group": "239.192.0.2", "sources": ["10.77.0.1"]}),
    );
    assert!(mcfilter(&t, "eth0").is_empty());

    // Block/unblock on an any-source join: EXCLUDE filter with the source.
    ok(
        &mut c,
        "join",
        json!({"interface": "eth0", "group": "239.192.0.3"}),
    );
    ok(
        &mut c,
        "block",
        json!({"interface": "eth0", "group": "239.192.0.3", "source": "10.77.0.9"}),
    );
    let f = mcfilter(&t, "eth0");
    assert!(
        f.contains(&(
            "239.192.0.3".parse().unwrap(),
            "10.77.0.9".parse().unwrap(),
            0,
            1
        )),
        "{f:?}"
    );
    let g = ok(&mut c, "groups", json!({}));
    assert_eq!(g["groups"][0]["filter"], json!("exclude"));
    assert_eq!(g["groups"][0]["sources"][0]["source"], json!("10.77.0.9"));
    ok(
        &mut c,
        "unblock",
        json!({"interface": "eth0", "group": "239.192.0.3", "source": "10.77.0.9"}),
    );
    assert!(mcfilter(&t, "eth0").is_empty());
    assert_eq!(
        err(
            &mut c,
            "unblock",
            json!({"interface": "eth0", "group": "239.192.0.3", "source": "10.77.0.9"})
        ),
        "not_found"
    );

    // IPv6 (MLDv2) any-source join reaches the bridge too.
    ok(
        &mut c,
        "join",
        json!({"interface": "eth0", "group": "ff15::7701"}),
    );
    wait_until("mdb entry for IPv6 group", Duration::from_secs(15), || {
        mdb_has(&t.mdb(), "p-rx", "ff15::7701")
    });
    let m6 = t.ns(&t.rx, &["cat", "/proc/net/igmp6"]);
    assert!(m6.contains("ff150000000000000000000000007701"), "{m6}");
    // IPv6 source-specific (MLDv2 INCLUDE) in /proc/net/mcfilter6.
    ok(
        &mut c,
        "join",
        json!({"interface": "eth0", "group": "ff35::7702", "sources": ["fd77::1"]}),
    );
    let f6 = t.ns(&t.rx, &["cat", "/proc/net/mcfilter6"]);
    assert!(
        f6.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.get(1) == Some(&"eth0")
                && w.get(2) == Some(&"ff350000000000000000000000007702")
                && w.get(3) == Some(&"fd770000000000000000000000000001")
                && w.get(4) == Some(&"1")
        }),
        "{f6}"
    );
    ok(
        &mut c,
        "leave",
        json!({"interface": "eth0", "group": "ff35::7702", "source": "fd77::1"}),
    );
    assert!(
        !t.ns(&t.rx, &["cat", "/proc/net/mcfilter6"])
            .contains("ff350000000000000000000000007702")
    );

    // Paging through groups with a cursor.
    for i in 10..20 {
        ok(
            &mut c,
            "join",
            json!({"interface": "eth1", "group": format!("239.192.1.{i}")}),
        );
    }
    let mut seen = 0;
    let mut cursor = Value::Null;
    loop {
        let r = ok(&mut c, "groups", json!({"limit": 3, "cursor": cursor}));
        let n = r["groups"].as_array().map_or(0, Vec::len);
        assert!(n <= 3);
        seen += n;
        cursor = r["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(seen, 12, "10 on eth1 + 239.192.0.3 + ff15::7701 on eth0");
}

/// Sends `n` UDP-encapsulated PGM ODATA packets from `ns` to `dst:3056`.
fn send_pgm_udp(ns: &str, dst: Ipv4Addr, n: usize) {
    let path = format!("/run/netns/{ns}");
    let h = std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap();
        setns(f.as_raw_fd());
        let s = UdpSocket::bind("10.77.0.1:0").unwrap();
        let mut pgm = vec![0u8; 16 + 32];
        pgm[0..2].copy_from_slice(&40001u16.to_be_bytes());
        pgm[2..4].copy_from_slice(&7500u16.to_be_bytes());
        pgm[4] = 0x04; // ODATA
        pgm[8..14].copy_from_slice(&[1, 2, 3, 4, 5, 6]);
        pgm[14..16].copy_from_slice(&32u16.to_be_bytes());
        for _ in 0..n {
            s.send_to(&pgm, SocketAddrV4::new(dst, 3056)).unwrap();
        }
    });
    h.join().unwrap();
}

/// Sends `n` raw PGM packets (IP protocol 113) of `len` bytes (ODATA header
/// first, cut at `len`) from `ns` to `dst`.
fn send_pgm_raw(ns: &str, dst: Ipv4Addr, len: usize, n: usize) {
    use std::os::fd::FromRawFd;
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap();
        setns(f.as_raw_fd());
        // SAFETY: plain socket(2) call.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 113) };
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        // SAFETY: fd was just created and is owned by nobody else.
        let _owner = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let mut pgm = vec![0u8; 24];
        pgm[0..2].copy_from_slice(&40001u16.to_be_bytes());
        pgm[2..4].copy_from_slice(&7500u16.to_be_bytes());
        pgm[4] = 0x04;
        pgm.truncate(len);
        // SAFETY: sockaddr_in is plain data; all-zero is valid.
        let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_addr.s_addr = u32::from_ne_bytes(dst.octets());
        for _ in 0..n {
            // SAFETY: fd is live; pgm and sa are valid for the call.
            let r = unsafe {
                libc::sendto(
                    fd,
                    pgm.as_ptr().cast(),
                    pgm.len(),
                    0,
                    (&raw const sa).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            };
            assert_eq!(
                r,
                pgm.len() as isize,
                "sendto: {}",
                std::io::Error::last_os_error()
            );
        }
    })
    .join()
    .unwrap();
}

fn setns(fd: i32) {
    // SAFETY: fd is an open /run/netns file; setns only changes this
    // (dedicated, short-lived) thread's network namespace.
    let r = unsafe { libc::setns(fd, libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
}

fn counters(c: &mut Client, ifname: &str) -> Value {
    let r = ok(c, "interfaces", json!({}));
    r["interfaces"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == json!(ifname)).cloned())
        .map(|i| i["xdp"]["counters"].clone())
        .unwrap_or(Value::Null)
}

#[test]
fn classifier_passes_other_traffic_and_counts_pgm() {
    if skip() {
        return;
    }
    let mut t = Topo::new("xdp");
    let mut c = t.start_xpgmd();

    let r = ok(
        &mut c,
        "attach",
        json!({"interface": "eth0", "mode": "native"}),
    );
    assert_eq!(r["mode"], json!("native"));
    let i = ok(&mut c, "interfaces", json!({}));
    let e = i["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == json!("eth0"))
        .unwrap()
        .clone();
    assert_eq!(e["xdp"]["owner"], json!("xpgmd"));
    assert_eq!(e["xdp"]["mode"], json!("native"));
    assert_eq!(e["state"], json!("up"));
    assert!(
        e["addresses"]
            .as_array()
            .unwrap()
            .contains(&json!("10.77.0.2/24"))
    );
    let ip_link = t.ns(&t.rx, &["ip", "link", "show", "dev", "eth0"]);
    assert!(ip_link.contains("xdp"), "{ip_link}");

    // Ordinary traffic still flows both ways.
    t.ns(
        &t.tx,
        &["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.77.0.2"],
    );
    t.ns(
        &t.tx,
        &["ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", "fd77::2"],
    );
    let before = counters(&mut c, "eth0");
    assert!(before["non_pgm"].as_u64().unwrap() >= 3, "{before}");
    assert_eq!(before["pgm"], json!(0));

    // Hand-sent PGM (UDP-encapsulated, no session): counted exactly.
    ok(
        &mut c,
        "join",
        json!({"interface": "eth0", "group": "239.192.0.5"}),
    );
    send_pgm_udp(&t.tx, "239.192.0.5".parse().unwrap(), 7);
    send_pgm_udp(&t.tx, "10.77.0.2".parse().unwrap(), 3);
    wait_until("PGM counted", Duration::from_secs(5), || {
        counters(&mut c, "eth0")["pgm"] == json!(10)
    });
    let after = counters(&mut c, "eth0");
    assert_eq!(after["udp_encap"], json!(10), "{after}");
    assert_eq!(after["passed"], json!(10), "{after}");
    assert_eq!(after["redirected"], json!(0));
    assert_eq!(after["malformed"], json!(0));

    // Raw PGM (IP protocol 113): 4 whole ones and 2 cut short.
    send_pgm_raw(&t.tx, "239.192.0.5".parse().unwrap(), 24, 4);
    send_pgm_raw(&t.tx, "239.192.0.5".parse().unwrap(), 9, 2);
    wait_until("raw PGM counted", Duration::from_secs(5), || {
        counters(&mut c, "eth0")["pgm"] == json!(16)
    });
    let raw = counters(&mut c, "eth0");
    assert_eq!(raw["udp_encap"], json!(10), "{raw}");
    assert_eq!(raw["passed"], json!(14), "{raw}");
    assert_eq!(raw["malformed"], json!(2), "{raw}");
    // Ordinary traffic still works after all that.
    t.ns(&t.tx, &["ping", "-c", "1", "-W", "2", "10.77.0.2"]);

    // A second attach is idempotent; another program is refused without --force.
    assert_eq!(
        ok(&mut c, "attach", json!({"interface": "eth0"}))["already"],
        json!(true)
    );
    ok(&mut c, "detach", json!({"interface": "eth0"}));
    assert!(
        !t.ns(&t.rx, &["ip", "link", "show", "dev", "eth0"])
            .contains("prog/xdp")
    );

    // A program attached by someone else (here: iproute2, over netlink).
    let other = foreign_xdp(&t, "eth1");
    assert_eq!(err(&mut c, "attach", json!({"interface": "eth1"})), "busy");
    assert_eq!(
        err(&mut c, "detach", json!({"interface": "eth1"})),
        "not_owner"
    );
    let r = ok(
        &mut c,
        "attach",
        json!({"interface": "eth1", "mode": "generic", "force": true}),
    );
    assert_eq!(r["replaced"]["prog_id"], json!(other), "{r}");
    assert_eq!(r["mode"], json!("generic"));
    ok(&mut c, "detach", json!({"interface": "eth1"}));
    assert_eq!(
        err(&mut c, "detach", json!({"interface": "eth1"})),
        "not_found"
    );
}

/// Attaches the classifier object with `ip link ... xdpgeneric` (netlink,
/// outside xpgmd) and returns the program id.
fn foreign_xdp(t: &Topo, dev: &str) -> u64 {
    let obj = t.dir.join("foreign.o");
    std::fs::write(&obj, xpgm_ebpf::OBJECT).unwrap();
    t.ns(
        &t.rx,
        &[
            "ip",
            "link",
            "set",
            "dev",
            dev,
            "xdpgeneric",
            "obj",
            obj.to_str().unwrap(),
            "sec",
            "xdp",
        ],
    );
    let j: Value =
        serde_json::from_str(&t.ns(&t.rx, &["ip", "-j", "-d", "link", "show", "dev", dev]))
            .unwrap();
    j[0]["xdp"]["prog"]["id"]
        .as_u64()
        .expect("prog id in ip -j link")
}

/// A minimal AF_XDP socket (copy mode, RX ring only) bound to `dev` queue 0
/// in namespace `ns` — what a data-plane worker would hand to xpgmd.
fn xsk_socket(ns: &str, dev: &str) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    let path = format!("/run/netns/{ns}");
    let dev = dev.to_owned();
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap();
        setns(f.as_raw_fd());
        let ifindex = xpgm_control::netlink::link_by_name(&dev)
            .unwrap()
            .expect("device")
            .index;
        // SAFETY: plain socket(2) call.
        let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        assert!(
            fd >= 0,
            "AF_XDP socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fd was just created and is owned by nobody else.
        let sock = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        const FRAMES: usize = 64;
        const FRAME: usize = 2048;
        // SAFETY: anonymous private mapping; never unmapped (the kernel pins
        // it for the socket's life; leaking it is fine in a test).
        let mem = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                FRAMES * FRAME,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(mem, libc::MAP_FAILED);
        let reg = libc::xdp_umem_reg {
            addr: mem as u64,
            len: (FRAMES * FRAME) as u64,
            chunk_size: FRAME as u32,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        let setopt = |name: libc::c_int, val: *const libc::c_void, len: usize| {
            // SAFETY: fd is live; val points to `len` readable bytes.
            let r =
                unsafe { libc::setsockopt(fd, libc::SOL_XDP, name, val, len as libc::socklen_t) };
            assert_eq!(
                r,
                0,
                "setsockopt {name}: {}",
                std::io::Error::last_os_error()
            );
        };
        setopt(
            libc::XDP_UMEM_REG,
            (&raw const reg).cast(),
            std::mem::size_of_val(&reg),
        );
        let n: u32 = 64;
        for o in [
            libc::XDP_UMEM_FILL_RING,
            libc::XDP_UMEM_COMPLETION_RING,
            libc::XDP_RX_RING,
        ] {
            setopt(o, (&raw const n).cast(), 4);
        }
        // SAFETY: sockaddr_xdp is plain data; all-zero is valid.
        let mut sa: libc::sockaddr_xdp = unsafe { std::mem::zeroed() };
        sa.sxdp_family = libc::AF_XDP as u16;
        sa.sxdp_flags = libc::XDP_COPY;
        sa.sxdp_ifindex = ifindex;
        sa.sxdp_queue_id = 0;
        // SAFETY: fd is live; sa is an initialised sockaddr_xdp.
        let r = unsafe {
            libc::bind(
                fd,
                (&raw const sa).cast(),
                std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "bind AF_XDP: {}", std::io::Error::last_os_error());
        sock
    })
    .join()
    .unwrap()
}

/// Sends `n` UDP-encapsulated ODATA packets for data port `dport` to `dst`.
fn send_odata(ns: &str, dst: Ipv4Addr, dport: u16, n: usize) {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap();
        setns(f.as_raw_fd());
        let s = UdpSocket::bind("10.77.0.1:0").unwrap();
        let mut pgm = vec![0u8; 16 + 8];
        pgm[0..2].copy_from_slice(&40001u16.to_be_bytes());
        pgm[2..4].copy_from_slice(&dport.to_be_bytes());
        pgm[4] = 0x04;
        pgm[14..16].copy_from_slice(&8u16.to_be_bytes());
        for _ in 0..n {
            s.send_to(&pgm, SocketAddrV4::new(dst, 3056)).unwrap();
        }
    })
    .join()
    .unwrap();
}

fn next_event(ev: &mut Client, kind: &str) -> Value {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(15) {
        let v = ev.read_message().expect("event stream");
        if v["event"] == json!(kind) {
            return v;
        }
    }
    panic!("no {kind} event");
}

#[test]
fn sessions_steer_and_are_cleaned_up_on_veth_deletion_and_disconnect() {
    use std::os::fd::AsFd;
    if skip() {
        return;
    }
    let mut t = Topo::new("sess");
    let mut admin = t.start_xpgmd();
    let mut ev = Client::connect(&t.sock()).unwrap();
    ok(&mut ev, "events", json!({}));

    // A receiver on eth0 and eth1 hands over its eth0 queue-0 socket.
    let xsk = xsk_socket(&t.rx, "eth0");
    let mut sess = Client::connect(&t.sock()).unwrap();
    let r = sess
        .request_with_fds(
            "register",
            args(
                json!({"role": "receiver", "group": "239.192.0.7", "port": 7500,
                "tsi": "01:02:03:04:05:06.40001", "interfaces": ["eth0", "eth1"],
                "sockets": [{"interface": "eth0", "queue": 0}]}),
            ),
            &[xsk.as_fd()],
        )
        .unwrap();
    assert_eq!(r["ok"], json!(true), "{r}");
    let id = r["session"].clone();
    let e = next_event(&mut ev, "session_registered");
    assert_eq!(e["session"], id);

    let l = ok(&mut admin, "sessions", json!({}));
    let s = &l["sessions"][0];
    assert_eq!(s["role"], json!("receiver"));
    assert_eq!(s["pid"], json!(std::process::id()));
    assert_eq!(s["interfaces"], json!(["eth0", "eth1"]));
    assert_eq!(
        s["sockets"][0],
        json!({"interface": "eth0", "queue": 0, "slot": 0, "zero_copy": false})
    );
    let g = ok(&mut admin, "groups", json!({}));
    assert_eq!(g["groups"].as_array().unwrap().len(), 2, "{g}");
    // The classifier's steering state: one downstream entry to slot 0 and
    // slot 0 in use, both naming the session and our pid.
    let st = ok(&mut admin, "steering", json!({}));
    let ifs = st["interfaces"].as_array().unwrap();
    assert_eq!(ifs.len(), 1, "{st}");
    assert_eq!(ifs[0]["interface"], json!("eth0"));
    assert_eq!(ifs[0]["error"], Value::Null, "{st}");
    assert_eq!(
        ifs[0]["steering"],
        json!([{"queue": 0, "address": "239.192.0.7", "port": 7500,
                "direction": "downstream", "slot": 0, "session": id,
                "pid": std::process::id()}])
    );
    assert_eq!(
        ifs[0]["slots"],
        json!([{"slot": 0, "session": id, "queue": 0, "pid": std::process::id()}])
    );
    // xpgmctl shows the same.
    let human = t.ctl(&["steering"]);
    assert!(
        human.contains("steering entries: 1") && human.contains("XSKMAP slots in use: 1"),
        "{human}"
    );
    // xpgmctl cannot take a session's membership away, but can share it.
    let eth0g = json!({"interface": "eth0", "group": "239.192.0.7"});
    assert_eq!(err(&mut admin, "leave", eth0g.clone()), "not_owner");
    ok(&mut admin, "join", eth0g.clone());
    assert_eq!(
        ok(&mut admin, "groups", json!({}))["groups"][0]["refs"],
        json!(2)
    );
    ok(&mut admin, "leave", eth0g.clone());
    assert_eq!(err(&mut admin, "leave", eth0g), "not_owner");
    wait_until(
        "mdb entry for session group",
        Duration::from_secs(15),
        || mdb_has(&t.mdb(), "p-rx", "239.192.0.7"),
    );
    // The classifier was attached for the socket and steers the feed to it.
    send_odata(&t.tx, "239.192.0.7".parse().unwrap(), 7500, 5);
    send_odata(&t.tx, "239.192.0.7".parse().unwrap(), 7501, 2);
    wait_until("redirected", Duration::from_secs(5), || {
        counters(&mut admin, "eth0")["redirected"] == json!(5)
    });
    assert_eq!(counters(&mut admin, "eth0")["passed"], json!(2));

    // Another session may not take the same (queue, group, port), here
    // with the very same socket handed over again.
    let devnull = std::fs::File::open("/dev/null").unwrap();
    let mut other = Client::connect(&t.sock()).unwrap();
    let r = other
        .request_with_fds(
            "register",
            args(
                json!({"role": "receiver", "group": "239.192.0.7", "port": 7500,
                "interfaces": ["eth0"], "sockets": [{"interface": "eth0", "queue": 0}]}),
            ),
            &[xsk.as_fd()],
        )
        .unwrap();
    assert_eq!(r["error"]["code"], json!("exists"), "{r}");
    // A queue the interface does not have is refused.
    let r = other
        .request_with_fds(
            "register",
            args(
                json!({"role": "receiver", "group": "239.192.0.9", "port": 7500,
                "interfaces": ["eth0"], "sockets": [{"interface": "eth0", "queue": 9}]}),
            ),
            &[xsk.as_fd()],
        )
        .unwrap();
    assert_eq!(r["error"]["code"], json!("invalid_argument"), "{r}");
    // A descriptor that is not an AF_XDP socket is refused.
    let r = other
        .request_with_fds(
            "register",
            args(
                json!({"role": "receiver", "group": "239.192.0.9", "port": 7500,
                "interfaces": ["eth0"], "sockets": [{"interface": "eth0", "queue": 0}]}),
            ),
            &[devnull.as_fd()],
        )
        .unwrap();
    assert_eq!(r["error"]["code"], json!("invalid_argument"), "{r}");
    // ... and the failed registration left no extra membership reference.
    let g = ok(&mut admin, "groups", json!({}));
    assert!(
        g["groups"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["refs"] == json!(1)),
        "{g}"
    );
    // Descriptor count must match.
    let r = other
        .request(
            "register",
            args(
                json!({"role": "receiver", "group": "239.192.0.8", "port": 1,
            "interfaces": ["eth0"], "sockets": [{"interface": "eth0", "queue": 0}]}),
            ),
        )
        .unwrap();
    assert_eq!(r["error"]["code"], json!("bad_request"), "{r}");

    // Deleting the veth under eth1: event, error on the session's
    // connection, and everything of the session is cleaned up.
    t.ns(&t.sw, &["ip", "link", "del", "p-rx1"]);
    let e = next_event(&mut ev, "interface_removed");
    assert_eq!(e["interface"], json!("eth1"));
    let e = next_event(&mut ev, "session_disconnected");
    assert_eq!(e["session"], id);
    assert_eq!(e["reason"], json!("interface_removed"));
    let m = sess.read_message().unwrap();
    assert_eq!(m["event"], json!("session_error"), "{m}");
    assert_eq!(m["error"]["code"], json!("interface_removed"));
    assert_eq!(ok(&mut admin, "sessions", json!({}))["sessions"], json!([]));
    assert_eq!(ok(&mut admin, "groups", json!({}))["groups"], json!([]));
    assert_steering_empty(&mut admin);
    send_odata(&t.tx, "239.192.0.7".parse().unwrap(), 7500, 4);
    wait_until("passed after cleanup", Duration::from_secs(5), || {
        counters(&mut admin, "eth0")["passed"] == json!(6)
    });
    assert_eq!(counters(&mut admin, "eth0")["redirected"], json!(5));

    // A session whose connection closes is cleaned up too (same socket,
    // still bound to eth0 queue 0, handed over again).
    let r = other
        .request_with_fds(
            "register",
            args(
                json!({"role": "receiver", "group": "239.192.0.7", "port": 7500,
                "interfaces": ["eth0"], "sockets": [{"interface": "eth0", "queue": 0}]}),
            ),
            &[xsk.as_fd()],
        )
        .unwrap();
    assert_eq!(r["ok"], json!(true), "{r}");
    assert_eq!(
        ok(&mut admin, "groups", json!({}))["groups"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    drop(other);
    let e = next_event(&mut ev, "session_disconnected");
    assert_eq!(e["reason"], json!("connection_closed"));
    assert_eq!(ok(&mut admin, "groups", json!({}))["groups"], json!([]));
    assert_eq!(ok(&mut admin, "sessions", json!({}))["sessions"], json!([]));
    assert_steering_empty(&mut admin);
}

/// The classifier stays attached but holds no steering entry and no socket.
fn assert_steering_empty(admin: &mut Client) {
    let st = ok(admin, "steering", json!({}));
    let ifs = st["interfaces"].as_array().unwrap();
    assert!(!ifs.is_empty(), "classifier still attached: {st}");
    for i in ifs {
        assert_eq!(i["steering"], json!([]), "{st}");
        assert_eq!(i["slots"], json!([]), "{st}");
    }
}

#[test]
fn restart_removes_what_a_previous_instance_left_attached() {
    if skip() {
        return;
    }
    let mut t = Topo::new("restart");
    // What a crashed xpgmd that had attached over netlink would leave: the
    // classifier program on eth0 with nobody owning it. (bpf_link
    // attachments die with their process; netlink ones do not.)
    let stale = foreign_xdp(&t, "eth0");
    // ... and its socket file, with nobody listening.
    drop(std::os::unix::net::UnixListener::bind(t.sock()).unwrap());
    assert!(t.sock().exists());
    let log = t.dir.join("xpgmd.log");
    let f = std::fs::File::create(&log).unwrap();
    let mut c = t.start_xpgmd_logging(Stdio::from(f));
    let i = ok(&mut c, "interfaces", json!({}));
    let e = i["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == json!("eth0"))
        .unwrap()
        .clone();
    assert_eq!(
        e["xdp"],
        Value::Null,
        "stale classifier still attached: {e}"
    );
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        said.contains("removed classifier") && said.contains(&format!("program {stale}")),
        "xpgmd did not say what it removed:\n{said}"
    );
    // And a fresh attach works.
    ok(&mut c, "attach", json!({"interface": "eth0"}));
    ok(
        &mut c,
        "join",
        json!({"interface": "eth0", "group": "239.192.0.1"}),
    );
    assert!(t.ns(&t.rx, &["cat", "/proc/net/igmp"]).contains("0100C0EF"));

    // SIGTERM: an orderly exit that leaves nothing behind.
    let mut child = t.xpgmd.take().expect("xpgmd running");
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: plain kill(2) of our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!t.sock().exists(), "socket file left behind");
    let link = t.ns(&t.rx, &["ip", "link", "show", "dev", "eth0"]);
    assert!(!link.contains("prog/xdp"), "{link}");
    assert!(!t.ns(&t.rx, &["cat", "/proc/net/igmp"]).contains("0100C0EF"));
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("detached classifier from eth0"), "{said}");
}

#[test]
fn flows_report_sources_and_packets_on_the_wrong_interface() {
    use std::os::fd::AsFd;
    if skip() {
        return;
    }
    let mut t = Topo::new("flows");
    let mut admin = t.start_xpgmd();
    let mut ev = Client::connect(&t.sock()).unwrap();
    ok(&mut ev, "events", json!({}));
    let xsk = xsk_socket(&t.rx, "eth0");
    let mut sess = Client::connect(&t.sock()).unwrap();
    let r = sess
        .request_with_fds(
            "register",
            args(
                json!({"role": "receiver", "group": "239.192.0.7", "port": 7500,
                "interfaces": ["eth0"], "sockets": [{"interface": "eth0", "queue": 0}]}),
            ),
            &[xsk.as_fd()],
        )
        .unwrap();
    assert_eq!(r["ok"], json!(true), "{r}");
    let sid = r["session"].clone();
    // The same feed also reaches eth1, where the session does not listen.
    ok(&mut admin, "attach", json!({"interface": "eth1"}));
    ok(
        &mut admin,
        "join",
        json!({"interface": "eth1", "group": "239.192.0.7"}),
    );
    wait_until(
        "both receiver ports in the mdb",
        Duration::from_secs(15),
        || {
            let m = t.mdb();
            mdb_has(&m, "p-rx", "239.192.0.7") && mdb_has(&m, "p-rx1", "239.192.0.7")
        },
    );
    send_odata(&t.tx, "239.192.0.7".parse().unwrap(), 7500, 5);
    let flow = |c: &mut Client, ifname: &str| -> Value {
        let r = ok(c, "flows", json!({}));
        r["flows"]
            .as_array()
            .and_then(|a| a.iter().find(|f| f["interface"] == json!(ifname)).cloned())
            .unwrap_or(Value::Null)
    };
    wait_until("flows on both interfaces", Duration::from_secs(5), || {
        flow(&mut admin, "eth0")["packets"] == json!(5)
            && flow(&mut admin, "eth1")["packets"] == json!(5)
    });
    let f0 = flow(&mut admin, "eth0");
    assert_eq!(f0["source"], json!("10.77.0.1"));
    assert_eq!(f0["group"], json!("239.192.0.7"));
    assert_eq!(f0["port"], json!(7500));
    assert_eq!(f0["wrong_interface"], json!(0));
    assert_eq!(f0["bytes"], json!(5 * (14 + 20 + 8 + 24)));
    assert_eq!(flow(&mut admin, "eth1")["wrong_interface"], json!(5));
    assert_eq!(f0["unrecoverable"], Value::Null);
    // The receiving data plane reports what it could not repair.
    let r = ok(
        &mut sess,
        "report",
        json!({"session": sid, "flows": [{"source": "10.77.0.1", "unrecoverable": 3}]}),
    );
    assert_eq!(r["flows"], json!(1));
    assert_eq!(flow(&mut admin, "eth0")["unrecoverable"], json!(3));
    assert_eq!(flow(&mut admin, "eth1")["unrecoverable"], Value::Null);
    assert_eq!(
        err(&mut admin, "report", json!({"session": sid, "flows": []})),
        "not_owner"
    );
    assert_eq!(
        err(
            &mut sess,
            "report",
            json!({"session": sid, "flows": [{"source": "10.77.0.1"}]})
        ),
        "bad_request"
    );
    // Membership events name the session that caused them.
    let e = next_event(&mut ev, "membership_joined");
    assert_eq!(e["session"], sid);
    assert_eq!(e["interface"], json!("eth0"));
    let e = next_event(&mut ev, "source_seen");
    assert_eq!(e["source"], json!("10.77.0.1"));
    let e = next_event(&mut ev, "wrong_interface");
    assert_eq!(e["interface"], json!("eth1"));
    assert_eq!(e["packets"], json!(5));
}

/// Sends `n` UDP-encapsulated PGM packets of `ty` from `ns` (10.77.0.1) to
/// `dst:udp_port` with PGM ports `sport`/`dport`.
fn send_pgm(ns: &str, dst: Ipv4Addr, udp_port: u16, sport: u16, dport: u16, ty: u8, n: usize) {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap();
        setns(f.as_raw_fd());
        let s = UdpSocket::bind("10.77.0.1:0").unwrap();
        let mut pgm = vec![0u8; 16 + 20];
        pgm[0..2].copy_from_slice(&sport.to_be_bytes());
        pgm[2..4].copy_from_slice(&dport.to_be_bytes());
        pgm[4] = ty;
        for _ in 0..n {
            s.send_to(&pgm, SocketAddrV4::new(dst, udp_port)).unwrap();
        }
    })
    .join()
    .unwrap();
}

#[test]
fn send_and_receive_interfaces_are_selected_and_changed() {
    use std::os::fd::AsFd;
    if skip() {
        return;
    }
    let mut t = Topo::new("ifsel");
    let mut admin = t.start_xpgmd();

    // A source on eth0: NAKs to its unicast address and TSI port reach its socket.
    let xsk = xsk_socket(&t.rx, "eth0");
    let mut src = Client::connect(&t.sock()).unwrap();
    let r = src
        .request_with_fds(
            "register",
            args(
                json!({"role": "source", "group": "239.192.0.7", "port": 7500,
                "source_port": 40001, "send_interface": "eth0",
                "sockets": [{"interface": "eth0", "queue": 0}]}),
            ),
            &[xsk.as_fd()],
        )
        .unwrap();
    assert_eq!(r["ok"], json!(true), "{r}");
    let sid = r["session"].clone();
    assert_eq!(r["detail"]["local_address"], json!("10.77.0.2"));
    assert_eq!(r["detail"]["send_interface"], json!("eth0"));
    // A source does not join its own group.
    assert_eq!(ok(&mut admin, "groups", json!({}))["groups"], json!([]));
    // Resolve the neighbour first so no hand-sent frame waits on ARP.
    t.ns(&t.tx, &["ping", "-c", "1", "-W", "2", "10.77.0.2"]);
    send_pgm(
        &t.tx,
        "10.77.0.2".parse().unwrap(),
        3055,
        7500,
        40001,
        0x08,
        4,
    );
    send_pgm(
        &t.tx,
        "10.77.0.2".parse().unwrap(),
        3055,
        7500,
        40002,
        0x08,
        1,
    );
    wait_until("NAKs redirected", Duration::from_secs(5), || {
        counters(&mut admin, "eth0")["redirected"] == json!(4)
    });
    assert_eq!(counters(&mut admin, "eth0")["passed"], json!(1));

    // Setting the send interface again replaces it (and drops eth0's steering).
    let r = ok(
        &mut src,
        "set_send_interface",
        json!({"session": sid, "interface": "eth1"}),
    );
    assert_eq!(r["detail"]["send_interface"], json!("eth1"));
    assert_eq!(r["detail"]["sockets"], json!([]));
    send_pgm(
        &t.tx,
        "10.77.0.2".parse().unwrap(),
        3055,
        7500,
        40001,
        0x08,
        2,
    );
    wait_until(
        "NAKs passed after the change",
        Duration::from_secs(5),
        || counters(&mut admin, "eth0")["passed"] == json!(3),
    );
    assert_eq!(counters(&mut admin, "eth0")["redirected"], json!(4));
    // Missing or down interfaces fail and leave the session as it was.
    assert_eq!(
        err(
            &mut src,
            "set_send_interface",
            json!({"session": sid, "interface": "nope0"})
        ),
        "no_such_interface"
    );
    let mut ev = Client::connect(&t.sock()).unwrap();
    ok(&mut ev, "events", json!({}));
    t.ns(&t.rx, &["ip", "link", "set", "eth1", "down"]);
    assert_eq!(
        next_event(&mut ev, "interface_down")["interface"],
        json!("eth1")
    );
    assert_eq!(
        err(
            &mut src,
            "set_send_interface",
            json!({"session": sid, "interface": "eth1"})
        ),
        "interface_down"
    );
    let l = ok(&mut admin, "sessions", json!({}));
    assert_eq!(l["sessions"][0]["send_interface"], json!("eth1"));
    // Only the owning connection may change a session.
    assert_eq!(
        err(
            &mut admin,
            "set_send_interface",
            json!({"session": sid, "interface": "eth0"})
        ),
        "not_owner"
    );
    // A receiver cannot use a down interface.
    let mut rcv = Client::connect(&t.sock()).unwrap();
    assert_eq!(
        err(
            &mut rcv,
            "register",
            json!({"role": "receiver", "group": "239.192.0.8",
            "port": 7500, "interfaces": ["eth0", "eth1"]})
        ),
        "interface_down"
    );
    assert_eq!(
        ok(&mut admin, "groups", json!({}))["groups"],
        json!([]),
        "rolled back"
    );
    t.ns(&t.rx, &["ip", "link", "set", "eth1", "up"]);
    // Operational state follows admin state asynchronously (linkwatch).
    wait_until("eth1 up again", Duration::from_secs(10), || {
        let r = ok(&mut admin, "interfaces", json!({}));
        r["interfaces"].as_array().is_some_and(|a| {
            a.iter()
                .any(|i| i["name"] == json!("eth1") && i["state"] == json!("up"))
        })
    });
    assert_eq!(
        next_event(&mut ev, "interface_up")["interface"],
        json!("eth1")
    );

    // A receiver adds and removes listening interfaces while running.
    let r = ok(
        &mut rcv,
        "register",
        json!({"role": "receiver", "group": "239.192.0.8",
        "port": 7500, "interfaces": ["eth0"]}),
    );
    let rid = r["session"].clone();
    let r = ok(
        &mut rcv,
        "add_interface",
        json!({"session": rid, "interface": "eth1"}),
    );
    assert_eq!(r["detail"]["interfaces"], json!(["eth0", "eth1"]));
    let g = ok(&mut admin, "groups", json!({}));
    assert_eq!(g["groups"].as_array().unwrap().len(), 2, "{g}");
    assert_eq!(
        err(
            &mut rcv,
            "set_send_interface",
            json!({"session": rid, "interface": "eth0"})
        ),
        "invalid_state"
    );
    let r = ok(
        &mut rcv,
        "remove_interface",
        json!({"session": rid, "interface": "eth0"}),
    );
    assert_eq!(r["detail"]["interfaces"], json!(["eth1"]));
    let g = ok(&mut admin, "groups", json!({}));
    assert_eq!(g["groups"][0]["interface"], json!("eth1"), "{g}");
    assert_eq!(
        err(
            &mut rcv,
            "remove_interface",
            json!({"session": rid, "interface": "eth0"})
        ),
        "not_found"
    );
    ok(&mut rcv, "unregister", json!({"session": rid}));
    assert_eq!(ok(&mut admin, "groups", json!({}))["groups"], json!([]));
    assert_eq!(
        err(&mut rcv, "unregister", json!({"session": rid})),
        "not_found"
    );
}

/// The UDP port map of `ifname` from `steering`: (port, default, refs, sessions).
fn udp_ports(admin: &mut Client, ifname: &str) -> Vec<(u64, bool, u64, Vec<u64>)> {
    let st = ok(admin, "steering", json!({}));
    let i = st["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["interface"] == json!(ifname))
        .unwrap_or_else(|| panic!("no classifier on {ifname}: {st}"))
        .clone();
    assert_eq!(i["udp_ports_error"], Value::Null, "{st}");
    i["udp_ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let users = p["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["session"].as_u64().unwrap())
                .collect();
            (
                p["port"].as_u64().unwrap(),
                p["default"].as_bool().unwrap(),
                p["refs"].as_u64().unwrap(),
                users,
            )
        })
        .collect()
}

fn ports_of(v: &[(u64, bool, u64, Vec<u64>)]) -> Vec<u64> {
    v.iter().map(|p| p.0).collect()
}

/// Registers a receiver of `group`/`port` on `ifs` handing over `xsks` (one per
/// interface, in order), with `udp_port` (`Value::Null`: none); returns the reply.
fn register_rx(
    c: &mut Client,
    group: &str,
    port: u16,
    udp_port: Value,
    ifs: &[&str],
    xsks: &[std::os::fd::BorrowedFd<'_>],
) -> Value {
    let socks: Vec<Value> = ifs
        .iter()
        .map(|i| json!({"interface": i, "queue": 0}))
        .collect();
    c.request_with_fds(
        "register",
        args(json!({"role": "receiver", "group": group, "port": port,
            "udp_port": udp_port, "interfaces": ifs, "sockets": socks})),
        xsks,
    )
    .unwrap()
}

/// Issue 11.3: sessions' UDP encapsulation ports enter the classifier's port map
/// of the interfaces they have sockets on, reference-counted, and leave it with the
/// last session; the defaults (no `--udp-ports`: 3055, 3056) stay.
#[test]
fn udp_ports_follow_sessions_and_defaults_stay() {
    use std::os::fd::AsFd;
    if skip() {
        return;
    }
    let mut t = Topo::new("udpp");
    let mut admin = t.start_xpgmd();
    let x0 = xsk_socket(&t.rx, "eth0");
    let x1 = xsk_socket(&t.rx, "eth1");
    let g: Ipv4Addr = "239.192.0.7".parse().unwrap();
    let rx_count = |admin: &mut Client| counters(admin, "eth0")["redirected"].as_u64().unwrap();

    // Session A on eth0 with UDP port 5711: the port joins the defaults.
    let mut a = Client::connect(&t.sock()).unwrap();
    let r = register_rx(
        &mut a,
        "239.192.0.7",
        7500,
        json!(5711),
        &["eth0"],
        &[x0.as_fd()],
    );
    assert_eq!(r["ok"], json!(true), "{r}");
    let ida = r["session"].as_u64().unwrap();
    assert_eq!(r["detail"]["udp_port"], json!(5711), "{r}");
    assert_eq!(
        udp_ports(&mut admin, "eth0"),
        vec![
            (3055, true, 0, vec![]),
            (3056, true, 0, vec![]),
            (5711, false, 1, vec![ida]),
        ]
    );
    let l = ok(&mut admin, "sessions", json!({}));
    assert_eq!(l["sessions"][0]["udp_port"], json!(5711), "{l}");
    let human = t.ctl(&["steering"]);
    assert!(
        human.contains("UDP encapsulation ports: 3")
            && human.contains(&format!("udp 5711 (session {ida} pid "))
            && human.contains("udp 3055 default (no session)"),
        "{human}"
    );
    wait_until("mdb entry", Duration::from_secs(15), || {
        mdb_has(&t.mdb(), "p-rx", "239.192.0.7")
    });
    // ODATA to UDP 5711 is steered; to 5712 (in nobody's map) it is not PGM.
    let before = counters(&mut admin, "eth0");
    send_pgm(&t.tx, g, 5711, 40001, 7500, 0x04, 5);
    send_pgm(&t.tx, g, 5712, 40001, 7500, 0x04, 3);
    wait_until("steered by UDP 5711", Duration::from_secs(5), || {
        rx_count(&mut admin) == 5
    });
    let after = counters(&mut admin, "eth0");
    let d = |k: &str| after[k].as_u64().unwrap() - before[k].as_u64().unwrap();
    assert_eq!((d("udp_encap"), d("pgm")), (5, 5), "{after}");
    assert!(d("non_pgm") >= 3, "{after}");

    // Session B (same socket, another group) on the same port: two references.
    let mut b = Client::connect(&t.sock()).unwrap();
    let r = register_rx(
        &mut b,
        "239.192.0.8",
        7500,
        json!(5711),
        &["eth0"],
        &[x0.as_fd()],
    );
    assert_eq!(r["ok"], json!(true), "{r}");
    let idb = r["session"].as_u64().unwrap();
    // Session C names a default port: counted, still flagged default.
    let mut c = Client::connect(&t.sock()).unwrap();
    let r = register_rx(
        &mut c,
        "239.192.0.9",
        7500,
        json!(3056),
        &["eth0"],
        &[x0.as_fd()],
    );
    assert_eq!(r["ok"], json!(true), "{r}");
    let idc = r["session"].as_u64().unwrap();
    assert_eq!(
        udp_ports(&mut admin, "eth0"),
        vec![
            (3055, true, 0, vec![]),
            (3056, true, 1, vec![idc]),
            (5711, false, 2, vec![ida, idb]),
        ]
    );

    // Bad values are refused clearly and leave nothing behind.
    for (bad, code) in [
        (json!(0), "invalid_argument"),
        (json!(65536), "invalid_argument"),
        (json!(-5), "invalid_argument"),
        (json!("5711"), "bad_request"),
        (json!(57.5), "bad_request"),
    ] {
        let mut d = Client::connect(&t.sock()).unwrap();
        let r = register_rx(
            &mut d,
            "239.192.0.10",
            7500,
            bad.clone(),
            &["eth0"],
            &[x0.as_fd()],
        );
        assert_eq!(r["error"]["code"], json!(code), "{bad}: {r}");
        assert!(
            r["error"]["message"].as_str().unwrap().contains("udp_port"),
            "{r}"
        );
    }
    assert_eq!(
        ok(&mut admin, "sessions", json!({}))["sessions"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        ports_of(&udp_ports(&mut admin, "eth0")),
        vec![3055, 3056, 5711]
    );

    // Unregistering A drops one reference; closing B's connection the last one.
    ok(&mut a, "unregister", json!({"session": ida}));
    assert_eq!(
        udp_ports(&mut admin, "eth0")[2],
        (5711, false, 1, vec![idb])
    );
    drop(b);
    wait_until("B's session gone", Duration::from_secs(5), || {
        ok(&mut admin, "sessions", json!({}))["sessions"]
            .as_array()
            .unwrap()
            .len()
            == 1
    });
    assert_eq!(ports_of(&udp_ports(&mut admin, "eth0")), vec![3055, 3056]);
    // UDP 5711 is not PGM any more (C's group, so a session would want it).
    let before = counters(&mut admin, "eth0");
    send_pgm(
        &t.tx,
        "239.192.0.9".parse().unwrap(),
        5711,
        40001,
        7500,
        0x04,
        4,
    );
    send_pgm(
        &t.tx,
        "239.192.0.9".parse().unwrap(),
        3056,
        40001,
        7500,
        0x04,
        2,
    );
    wait_until("C's frames on 3056", Duration::from_secs(5), || {
        counters(&mut admin, "eth0")["redirected"].as_u64().unwrap()
            == before["redirected"].as_u64().unwrap() + 2
    });
    let after = counters(&mut admin, "eth0");
    assert_eq!(
        after["udp_encap"].as_u64().unwrap() - before["udp_encap"].as_u64().unwrap(),
        2,
        "{after}"
    );
    // The last user of a default port leaves: the default stays.
    ok(&mut c, "unregister", json!({"session": idc}));
    assert_eq!(
        udp_ports(&mut admin, "eth0"),
        vec![(3055, true, 0, vec![]), (3056, true, 0, vec![])]
    );

    // A session on two interfaces: its port is in both maps; removing one
    // interface takes it out of that map only; losing the other interface's
    // link (veth deleted) takes it out of the remaining one.
    let mut e = Client::connect(&t.sock()).unwrap();
    let r = register_rx(
        &mut e,
        "239.192.0.7",
        7500,
        json!(5713),
        &["eth0", "eth1"],
        &[x0.as_fd(), x1.as_fd()],
    );
    assert_eq!(r["ok"], json!(true), "{r}");
    let ide = r["session"].as_u64().unwrap();
    for i in ["eth0", "eth1"] {
        assert_eq!(
            udp_ports(&mut admin, i)[2],
            (5713, false, 1, vec![ide]),
            "{i}"
        );
    }
    ok(
        &mut e,
        "remove_interface",
        json!({"session": ide, "interface": "eth0"}),
    );
    assert_eq!(ports_of(&udp_ports(&mut admin, "eth0")), vec![3055, 3056]);
    assert_eq!(
        ports_of(&udp_ports(&mut admin, "eth1")),
        vec![3055, 3056, 5713]
    );
    // Back on eth0 (add_interface with its socket), then eth1's veth goes.
    let r = e
        .request_with_fds(
            "add_interface",
            args(json!({"session": ide, "interface": "eth0",
                "sockets": [{"interface": "eth0", "queue": 0}]})),
            &[x0.as_fd()],
        )
        .unwrap();
    assert_eq!(r["ok"], json!(true), "{r}");
    assert_eq!(
        ports_of(&udp_ports(&mut admin, "eth0")),
        vec![3055, 3056, 5713]
    );
    t.ns(&t.sw, &["ip", "link", "del", "p-rx1"]);
    let m = e.read_message().unwrap();
    assert_eq!(m["event"], json!("session_error"), "{m}");
    assert_eq!(ports_of(&udp_ports(&mut admin, "eth0")), vec![3055, 3056]);
}

/// The port map is bounded (256 per interface): a session whose port does not fit
/// is refused with `limit` and leaves no socket, steering entry or port behind.
#[test]
fn udp_port_map_full_refuses_the_session() {
    use std::os::fd::AsFd;
    if skip() {
        return;
    }
    let mut t = Topo::new("udpf");
    let mut admin = t.start_xpgmd();
    let x0 = xsk_socket(&t.rx, "eth0");
    let mut c = Client::connect(&t.sock()).unwrap();
    // 254 sessions (one group, PGM ports 10000..) with UDP ports 20000..: with the
    // two defaults the map is full.
    for k in 0..254u16 {
        let r = register_rx(
            &mut c,
            "239.192.0.7",
            10_000 + k,
            json!(20_000 + k),
            &["eth0"],
            &[x0.as_fd()],
        );
        assert_eq!(r["ok"], json!(true), "session {k}: {r}");
    }
    assert_eq!(udp_ports(&mut admin, "eth0").len(), 256);
    let st = |admin: &mut Client| {
        let v = ok(admin, "steering", json!({}));
        let i = v["interfaces"][0].clone();
        (
            i["steering"].as_array().unwrap().len(),
            i["slots"].as_array().unwrap().len(),
        )
    };
    assert_eq!(st(&mut admin), (254, 254));
    let r = register_rx(
        &mut c,
        "239.192.0.7",
        9_999,
        json!(30_000),
        &["eth0"],
        &[x0.as_fd()],
    );
    assert_eq!(r["error"]["code"], json!("limit"), "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("UDP port map"),
        "{r}"
    );
    assert_eq!(st(&mut admin), (254, 254), "nothing left behind");
    assert_eq!(udp_ports(&mut admin, "eth0").len(), 256);
    // A port already in the map (here a default) still fits.
    let r = register_rx(
        &mut c,
        "239.192.0.7",
        9_998,
        json!(3055),
        &["eth0"],
        &[x0.as_fd()],
    );
    assert_eq!(r["ok"], json!(true), "{r}");
    assert_eq!(
        udp_ports(&mut admin, "eth0")[0],
        (3055, true, 1, vec![r["session"].as_u64().unwrap()])
    );
    // Connection closed: every session's port goes, the defaults stay.
    drop(c);
    wait_until("sessions gone", Duration::from_secs(10), || {
        ok(&mut admin, "sessions", json!({}))["sessions"] == json!([])
    });
    assert_eq!(ports_of(&udp_ports(&mut admin, "eth0")), vec![3055, 3056]);
}

/// A source's UDP port is in the map too: NAKs by unicast UDP to it are steered
/// to the source's socket; after the session they are not PGM.
#[test]
fn source_udp_port_steers_its_naks() {
    use std::os::fd::AsFd;
    if skip() {
        return;
    }
    let mut t = Topo::new("udps");
    let mut admin = t.start_xpgmd();
    let x0 = xsk_socket(&t.rx, "eth0");
    let mut c = Client::connect(&t.sock()).unwrap();
    let r = c
        .request_with_fds(
            "register",
            args(
                json!({"role": "source", "group": "239.192.0.7", "port": 7500,
                "source_port": 40001, "udp_port": 5720, "send_interface": "eth0",
                "sockets": [{"interface": "eth0", "queue": 0}]}),
            ),
            &[x0.as_fd()],
        )
        .unwrap();
    assert_eq!(r["ok"], json!(true), "{r}");
    assert_eq!(r["detail"]["udp_port"], json!(5720), "{r}");
    let id = r["session"].as_u64().unwrap();
    assert_eq!(udp_ports(&mut admin, "eth0")[2], (5720, false, 1, vec![id]));
    let me: Ipv4Addr = "10.77.0.2".parse().unwrap();
    // Resolve the neighbour first: datagrams queued on an unresolved one may be lost.
    t.ns(&t.tx, &["ping", "-c", "1", "-W", "2", "10.77.0.2"]);
    // NAKs carry the ports swapped: PGM sport = data port, dport = TSI port.
    send_pgm(&t.tx, me, 5720, 7500, 40001, 0x08, 3);
    send_pgm(&t.tx, me, 5721, 7500, 40001, 0x08, 2);
    wait_until("NAKs steered", Duration::from_secs(5), || {
        counters(&mut admin, "eth0")["redirected"] == json!(3)
    });
    assert_eq!(counters(&mut admin, "eth0")["udp_encap"], json!(3));
    ok(&mut c, "unregister", json!({"session": id}));
    assert_eq!(ports_of(&udp_ports(&mut admin, "eth0")), vec![3055, 3056]);
    let before = counters(&mut admin, "eth0");
    send_pgm(&t.tx, me, 5720, 7500, 40001, 0x08, 3);
    wait_until("NAKs not PGM", Duration::from_secs(5), || {
        counters(&mut admin, "eth0")["non_pgm"].as_u64().unwrap()
            >= before["non_pgm"].as_u64().unwrap() + 3
    });
    let after = counters(&mut admin, "eth0");
    assert_eq!(after["udp_encap"], before["udp_encap"], "{after}");
    assert_eq!(after["redirected"], json!(3));
}

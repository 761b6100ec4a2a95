//! The socket protocol under abuse: garbage, oversized, truncated and
//! stalled requests get error replies while other clients keep being served;
//! peers that are neither root nor in the configured group are refused.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};
use xpgm_control::client::Client;
use xpgm_control::daemon::{Daemon, DaemonConfig};
use xpgm_control::server::{self, ServerConfig};

struct Server {
    dir: PathBuf,
    sock: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(name: &str, tweak: impl FnOnce(&mut ServerConfig)) -> Server {
    let dir = std::env::temp_dir().join(format!("xpgmt-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let sock = dir.join("xpgmd.sock");
    let mut cfg = ServerConfig::new(sock.clone());
    cfg.max_request = 4096;
    cfg.request_timeout = Duration::from_millis(700);
    cfg.idle_timeout = Duration::from_secs(3);
    tweak(&mut cfg);
    let l = server::bind(&cfg).expect("bind");
    let stop = Arc::new(AtomicBool::new(false));
    let d = Arc::new(Mutex::new(Daemon::new(DaemonConfig::default())));
    let (c, s) = (Arc::new(cfg), stop.clone());
    let thread = std::thread::spawn(move || {
        server::serve(l, d, c, s).expect("serve");
    });
    Server {
        dir,
        sock,
        stop,
        thread: Some(thread),
    }
}

struct Raw {
    w: UnixStream,
    r: BufReader<UnixStream>,
}

impl Raw {
    fn connect(p: &Path) -> Self {
        let w = UnixStream::connect(p).expect("connect");
        w.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let r = BufReader::new(w.try_clone().unwrap());
        Self { w, r }
    }
    fn send(&mut self, b: &[u8]) {
        self.w.write_all(b).unwrap();
    }
    fn reply(&mut self) -> Value {
        let mut s = String::new();
        let n = self.r.read_line(&mut s).expect("read reply");
        assert!(n > 0, "connection closed without a reply");
        serde_json::from_str(&s).expect("reply is JSON")
    }
    fn expect_error(&mut self, code: &str) -> Value {
        let v = self.reply();
        assert_eq!(v["ok"], json!(false), "{v}");
        assert_eq!(v["error"]["code"], json!(code), "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        v
    }
    fn ping(&mut self, id: u64) {
        self.send(format!("{{\"id\":{id},\"op\":\"ping\"}}\n").as_bytes());
        let v = self.reply();
        assert_eq!(v["id"], json!(id));
        assert_eq!(v["ok"], json!(true), "{v}");
        assert!(v["version"].is_string());
    }
}

#[test]
fn socket_is_created_0660() {
    let s = start("mode", |_| {});
    let m = std::fs::metadata(&s.sock).unwrap().permissions().mode();
    assert_eq!(m & 0o777, 0o660);
    // A second server on the same path is refused while the first runs.
    let cfg = ServerConfig::new(s.sock.clone());
    assert!(server::bind(&cfg).is_err());
}

#[test]
fn garbage_gets_errors_and_the_connection_survives() {
    let s = start("garbage", |_| {});
    let mut c = Raw::connect(&s.sock);
    c.send(b"this is not json\n");
    c.expect_error("bad_json");
    c.send(b"[1,2,3]\n");
    c.expect_error("bad_request");
    c.send(b"{\"id\":5}\n");
    assert_eq!(c.expect_error("bad_request")["id"], json!(5));
    c.send(b"{\"id\":\"abc\",\"op\":\"frobnicate\"}\n");
    assert_eq!(c.expect_error("unknown_op")["id"], json!("abc"));
    c.send(b"{\"id\":6,\"op\":\"join\",\"interface\":3}\n");
    c.expect_error("bad_request");
    c.send(b"{\"id\":7,\"op\":\"join\",\"interface\":\"lo\",\"group\":\"not-an-ip\"}\n");
    c.expect_error("invalid_argument");
    c.send(b"{\"id\":8,\"op\":\"join\",\"interface\":\"no-such-if0\",\"group\":\"239.192.0.1\"}\n");
    c.expect_error("no_such_interface");
    c.send(&[0xff, 0xfe, 0x00, b'\n']);
    c.expect_error("bad_json");
    // Blank lines are ignored; CRLF is accepted.
    c.send(b"\n{\"id\":9,\"op\":\"ping\"}\r\n");
    assert_eq!(c.reply()["id"], json!(9));
    c.ping(10);
}

#[test]
fn oversized_request_is_refused_and_the_stream_resynchronises() {
    let s = start("big", |_| {});
    let mut c = Raw::connect(&s.sock);
    let big = vec![b'x'; 20_000];
    c.send(&big);
    c.expect_error("too_large");
    c.send(b"still the same huge line\n");
    // The remainder of the oversized line is skipped, the next one served.
    c.ping(1);
    // A long line delivered in one write with a newline.
    let mut big2 = format!(
        "{{\"id\":2,\"op\":\"ping\",\"pad\":\"{}\"}}\n",
        "y".repeat(5000)
    )
    .into_bytes();
    c.send(&big2);
    c.expect_error("too_large");
    c.ping(3);
    big2.clear();
}

#[test]
fn half_sent_request_then_close_gets_an_error_and_no_crash() {
    let s = start("half", |_| {});
    let mut c = Raw::connect(&s.sock);
    c.send(b"{\"id\":1,\"op\":\"pi");
    c.w.shutdown(std::net::Shutdown::Write).unwrap();
    c.expect_error("truncated");
    // And a client that vanishes without shutdown.
    let mut d = Raw::connect(&s.sock);
    d.send(b"{\"id\":1,");
    drop(d);
    Raw::connect(&s.sock).ping(1);
}

#[test]
fn stalled_request_times_out() {
    let s = start("stall", |_| {});
    let mut c = Raw::connect(&s.sock);
    c.send(b"{\"id\":1,\"op\":");
    c.expect_error("timeout");
    let mut rest = Vec::new();
    // The server closed the connection.
    assert_eq!(c.r.read_to_end(&mut rest).unwrap(), 0);
}

#[test]
fn idle_connection_is_closed_but_event_subscribers_are_not() {
    let s = start("idle", |c| c.idle_timeout = Duration::from_millis(600));
    let mut idle = Raw::connect(&s.sock);
    let mut sub = Client::connect(&s.sock).unwrap();
    let r = sub.request("events", Map::new()).unwrap();
    assert_eq!(r["ok"], json!(true));
    std::thread::sleep(Duration::from_millis(1500));
    idle.expect_error("timeout");
    // The subscriber is still connected and served.
    assert_eq!(sub.request("ping", Map::new()).unwrap()["ok"], json!(true));
}

#[test]
fn many_clients_at_once_while_others_misbehave() {
    let s = start("many", |_| {});
    // Misbehaving clients hold connections with partial/oversized data.
    let mut bad: Vec<Raw> = (0..8).map(|_| Raw::connect(&s.sock)).collect();
    for (i, b) in bad.iter_mut().enumerate() {
        if i % 2 == 0 {
            b.send(b"{\"op\":\"pi");
        } else {
            b.send(&vec![b'z'; 5000]);
        }
    }
    let threads: Vec<_> = (0..32)
        .map(|t| {
            let p = s.sock.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&p).unwrap();
                for _ in 0..20 {
                    let r = c.request("ping", Map::new()).unwrap();
                    assert_eq!(r["ok"], json!(true), "client {t}: {r}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for (i, b) in bad.iter_mut().enumerate() {
        if i % 2 == 1 {
            b.expect_error("too_large");
        }
    }
}

#[test]
fn client_cap_refuses_with_busy() {
    let s = start("cap", |c| c.max_clients = 2);
    let mut a = Raw::connect(&s.sock);
    let mut b = Raw::connect(&s.sock);
    a.ping(1);
    b.ping(1);
    let mut c = Raw::connect(&s.sock);
    c.expect_error("busy");
    drop(a);
    // Once a slot frees up, new clients are served again.
    let mut ok = false;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(50));
        let mut d = Raw::connect(&s.sock);
        d.send(b"{\"id\":1,\"op\":\"ping\"}\n");
        if d.reply()["ok"] == json!(true) {
            ok = true;
            break;
        }
    }
    assert!(ok, "server never freed the slot");
}

fn is_root() -> bool {
    xpgm_control::sys::geteuid() == 0
}

#[test]
fn peer_credentials_are_checked() {
    if !is_root() {
        eprintln!("skipping: running a client as another uid needs root");
        return;
    }
    const GROUP: u32 = 47_011;
    let s = start("cred", |c| c.group = Some(GROUP));
    // Open up the file permissions so that the SO_PEERCRED check, not the
    // file mode, is what refuses the stranger.
    std::fs::set_permissions(&s.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&s.sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let ctl = env!("CARGO_BIN_EXE_xpgmctl");
    let stranger = std::process::Command::new(ctl)
        .args(["--socket", s.sock.to_str().unwrap(), "--json", "ping"])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(!stranger.status.success());
    let out = String::from_utf8_lossy(&stranger.stdout);
    let v: Value = serde_json::from_str(out.trim()).expect("JSON reply");
    assert_eq!(v["error"]["code"], json!("permission_denied"), "{v}");
    // Primary group member.
    let member = std::process::Command::new(ctl)
        .args(["--socket", s.sock.to_str().unwrap(), "--json", "ping"])
        .uid(65534)
        .gid(GROUP)
        .output()
        .unwrap();
    assert!(member.status.success(), "{member:?}");
    // Supplementary group member (std cannot set supplementary groups on
    // stable; util-linux setpriv can).
    let supp = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            &format!("--groups=65534,{GROUP}"),
        ])
        .args([ctl, "--socket", s.sock.to_str().unwrap(), "ping"])
        .output();
    match supp {
        Ok(o) => assert!(o.status.success(), "{o:?}"),
        Err(e) => eprintln!("setpriv unavailable ({e}); supplementary group case not run"),
    }
    // Root is always allowed.
    Raw::connect(&s.sock).ping(1);
}

fn xpgmctl(env_sock: Option<&Path>, args: &[&str]) -> std::process::Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_xpgmctl"));
    c.args(args);
    match env_sock {
        Some(p) => c.env("XPGM_SOCKET", p),
        None => c.env_remove("XPGM_SOCKET"),
    };
    c.output().unwrap()
}

#[test]
fn xpgmctl_commands_exit_codes_and_socket_rule() {
    let s = start("ctl", |_| {});
    let sock = s.sock.to_str().unwrap();
    // --socket
    let o = xpgmctl(None, &["--socket", sock, "ping"]);
    assert!(o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("ping: ok"));
    // XPGM_SOCKET, and --json prints the reply line.
    let o = xpgmctl(Some(&s.sock), &["--json", "interfaces"]);
    assert!(o.status.success(), "{o:?}");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == json!("lo"))
    );
    // --socket wins over XPGM_SOCKET.
    let o = xpgmctl(
        Some(Path::new("/nonexistent/x.sock")),
        &["--socket", sock, "ping"],
    );
    assert!(o.status.success(), "{o:?}");
    let o = xpgmctl(Some(Path::new("/nonexistent/x.sock")), &["ping"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/x.sock"));
    // Human table.
    let o = xpgmctl(Some(&s.sock), &["interfaces"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("NAME"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("lo ")), "{out}");
    // An error reply exits 1 with the code on stderr.
    let o = xpgmctl(Some(&s.sock), &["join", "nonexistent0", "239.192.0.1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no_such_interface"));
    let o = xpgmctl(
        Some(&s.sock),
        &["--json", "block", "lo", "10.0.0.1", "10.0.0.2"],
    );
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"]["code"], json!("invalid_argument"), "{v}");
    // Usage errors exit 2.
    assert_eq!(
        xpgmctl(Some(&s.sock), &["frobnicate"]).status.code(),
        Some(2)
    );
    assert_eq!(
        xpgmctl(Some(&s.sock), &["join", "lo"]).status.code(),
        Some(2)
    );
    assert_eq!(xpgmctl(Some(&s.sock), &[]).status.code(), Some(2));
    // Empty listings print just the header.
    let o = xpgmctl(Some(&s.sock), &["groups"]);
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 1);
    let o = xpgmctl(Some(&s.sock), &["sessions"]);
    assert!(o.status.success());
    let o = xpgmctl(Some(&s.sock), &["--json", "flows"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["flows"], json!([]));
}

#[test]
fn a_stuck_event_subscriber_does_not_stall_the_daemon() {
    let s = start("stuck", |_| {});
    // Subscribes, then never reads.
    let mut stuck = Raw::connect(&s.sock);
    stuck.send(b"{\"id\":1,\"op\":\"events\"}\n");
    assert_eq!(stuck.reply()["ok"], json!(true));
    // Anyone may join groups on lo; each join/leave emits an event.
    let mut c = Client::connect(&s.sock).unwrap();
    let mut a = Map::new();
    a.insert("interface".into(), json!("lo"));
    a.insert("group".into(), json!("239.192.9.9"));
    for _ in 0..4000 {
        let r = c.request("join", a.clone()).unwrap();
        assert_eq!(r["ok"], json!(true), "{r}");
        let r = c.request("leave", a.clone()).unwrap();
        assert_eq!(r["ok"], json!(true), "{r}");
    }
    // Still not reading for longer than the server's 5 s write timeout: the event
    // writer must not give up mid-line (nor silently) meanwhile.
    std::thread::sleep(Duration::from_secs(6));
    // The subscriber was dropped, and is told so at the end of what it got.
    let mut lost = false;
    for _ in 0..20_000 {
        let v = stuck.reply();
        if v["event"] == json!("events_lost") {
            lost = true;
            break;
        }
    }
    assert!(lost, "no events_lost after the queue overflowed");
}

#[test]
fn random_bytes_never_kill_the_server() {
    let s = start("fuzz", |_| {});
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..40 {
        let mut c = Raw::connect(&s.sock);
        let len = (next() % 3000) as usize;
        let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Mix in JSON-ish fragments and newlines.
        if round % 3 == 0 {
            buf.extend_from_slice(
                b"{\"id\":[1,{\"op\":\"join\"}],\"op\":\"groups\",\"cursor\":\"x/y\"}\n",
            );
        }
        if round % 4 == 0 {
            buf.extend_from_slice(b"{\"op\":\"register\",\"role\":\"receiver\",\"group\":\"239.1.1.1\",\"port\":99999}\n");
        }
        buf.push(b'\n');
        c.send(&buf);
        c.w.shutdown(std::net::Shutdown::Write).unwrap();
        // Every reply is a JSON object; the server closes at EOF.
        let mut n = 0;
        loop {
            let mut line = String::new();
            match c.r.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) => {
                    let v: Value = serde_json::from_str(&line).expect("reply is JSON");
                    assert!(v.is_object());
                    n += 1;
                }
                // Non-UTF-8 cannot happen: replies are JSON text.
                Err(e) => panic!("reading replies: {e}"),
            }
        }
        assert!(n >= 1, "round {round}: no reply at all");
    }
    Raw::connect(&s.sock).ping(1);
}

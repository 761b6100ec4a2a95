//! xpgmd's optional Prometheus endpoint (`--metrics-listen ADDR`): a minimal HTTP/1.x
//! server answering `GET /metrics` with the counters of every session on the host (the
//! xpgm-stats files), in the Prometheus text exposition format.
//!
//! It runs on its own threads and never touches the daemon's state or lock, so it
//! cannot block the main loop. Requests are bounded ([`MAX_REQUEST`] bytes of head, a
//! [`IO_TIMEOUT`] per read and write, [`MAX_CONNECTIONS`] served at once; more are
//! closed at once). Only loopback addresses are accepted unless the operator passes
//! `--metrics-allow-remote` (the counters describe the host's multicast traffic).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Longest request head read (request line and headers).
pub const MAX_REQUEST: usize = 8192;
/// Read and write timeout per connection.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 4;

/// Resolves `addr` (`HOST:PORT`) and refuses non-loopback addresses unless
/// `allow_remote`.
pub fn listen_addr(addr: &str, allow_remote: bool) -> Result<SocketAddr, String> {
    let a = addr
        .to_socket_addrs()
        .map_err(|e| format!("--metrics-listen {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("--metrics-listen {addr}: no address"))?;
    if !allow_remote && !a.ip().is_loopback() {
        return Err(format!(
            "--metrics-listen {addr}: {} is not a loopback address (add --metrics-allow-remote to expose the counters beyond this host)",
            a.ip()
        ));
    }
    Ok(a)
}

/// The response to one request head.
fn respond(head: &[u8], dir: &Path) -> (u16, &'static str, String) {
    let text = String::from_utf8_lossy(head);
    let line = text.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return (400, "Bad Request", "bad request line\n".into());
    };
    if !version.starts_with("HTTP/1.") {
        return (400, "Bad Request", "HTTP/1.x only\n".into());
    }
    if method != "GET" && method != "HEAD" {
        return (405, "Method Not Allowed", "GET only\n".into());
    }
    let path = target.split('?').next().unwrap_or_default();
    match path {
        "/metrics" => match xpgm_stats::scan(dir, false) {
            Ok(s) => (200, "OK", xpgm_stats::prometheus(&s.sessions)),
            Err(e) => (500, "Internal Server Error", format!("stats: {e}\n")),
        },
        "/" => (200, "OK", "xpgmd: counters at /metrics\n".into()),
        _ => (404, "Not Found", "not found\n".into()),
    }
}

/// Serves one connection: reads a bounded request head, writes one response, closes.
pub fn handle<S: Read + Write>(stream: &mut S, dir: &Path) -> io::Result<()> {
    let mut buf = [0u8; MAX_REQUEST];
    let mut len = 0;
    let complete = loop {
        let Some(free) = buf.get_mut(len..) else {
            break false;
        };
        if free.is_empty() {
            break false;
        }
        let n = stream.read(free)?;
        if n == 0 {
            // Closed before the head was complete.
            return Ok(());
        }
        len += n;
        let got = buf.get(..len).unwrap_or_default();
        if got.windows(4).any(|w| w == b"\r\n\r\n") || got.windows(2).any(|w| w == b"\n\n") {
            break true;
        }
    };
    let head = buf.get(..len).unwrap_or_default();
    let (code, reason, body) = if complete {
        respond(head, dir)
    } else {
        (
            431,
            "Request Header Fields Too Large",
            "request too large\n".into(),
        )
    };
    let is_head = head.starts_with(b"HEAD ");
    let ctype = if code == 200 && body.starts_with('#') {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !is_head {
        out.push_str(&body);
    }
    stream.write_all(out.as_bytes())?;
    stream.flush()
}

/// Accepts connections on `listener` forever on a new thread, serving each on its own
/// short-lived thread (at most [`MAX_CONNECTIONS`] at once), reading `dir`.
pub fn spawn(listener: TcpListener, dir: PathBuf) -> io::Result<JoinHandle<()>> {
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("xpgmd-metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(stream) = conn else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                    active.fetch_sub(1, Ordering::AcqRel);
                    drop(stream);
                    continue;
                }
                let (a, d) = (active.clone(), dir.clone());
                let spawned = std::thread::Builder::new()
                    .name("xpgmd-metrics-conn".into())
                    .spawn(move || {
                        let _ = serve_one(stream, &d);
                        a.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::AcqRel);
                }
            }
        })
}

fn serve_one(mut stream: TcpStream, dir: &Path) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    handle(&mut stream, dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        input: std::io::Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl Read for Fake {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            self.input.read(b)
        }
    }
    impl Write for Fake {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.output.write(b)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn ask(req: &[u8]) -> String {
        let mut f = Fake {
            input: std::io::Cursor::new(req.to_vec()),
            output: Vec::new(),
        };
        let dir = std::env::temp_dir().join("xpgm-metrics-unit-none");
        handle(&mut f, &dir).expect("handled");
        String::from_utf8(f.output).expect("utf-8")
    }

    #[test]
    fn listen_addresses() {
        assert!(listen_addr("127.0.0.1:9464", false).is_ok());
        assert!(listen_addr("[::1]:9464", false).is_ok());
        let e = listen_addr("0.0.0.0:9464", false).expect_err("refused");
        assert!(e.contains("loopback"), "{e}");
        assert!(listen_addr("0.0.0.0:9464", true).is_ok());
        assert!(listen_addr("nonsense", false).is_err());
    }

    #[test]
    fn requests() {
        let r = ask(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("version=0.0.4"));
        assert!(r.contains("xpgm_sessions{role=\"source\"} 0"));
        let (head, body) = r.split_once("\r\n\r\n").expect("head");
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        let h = ask(b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n");
        assert!(
            h.starts_with("HTTP/1.1 200 OK") && h.ends_with("\r\n\r\n"),
            "{h}"
        );
        assert!(ask(b"POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        assert!(ask(b"GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(ask(b"GET /metrics SPDY/3\r\n\r\n").starts_with("HTTP/1.1 400"));
        assert!(ask(b"\xff\xfe garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
        let big = vec![b'A'; MAX_REQUEST + 100];
        assert!(ask(&big).starts_with("HTTP/1.1 431"));
        // Closed before a complete head: no response.
        assert_eq!(ask(b"GET /metr"), "");
    }
}

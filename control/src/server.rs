//! The Unix-socket server: newline-delimited JSON, one thread per client up
//! to a cap, bounded request size, read timeouts, peer-credential checks.
//!
//! Model: a blocking accept loop; each accepted connection gets a thread
//! (at most [`ServerConfig::max_clients`] at once; the next one gets a `busy`
//! error and is closed). Each thread reads with a short timeout tick so that
//! a partial request that stalls longer than `request_timeout`, or a silent
//! connection idle longer than `idle_timeout` (unless it holds a session or
//! an event subscription), is closed. A line longer than `max_request` gets
//! a `too_large` error and the connection resynchronises at the next newline.

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::sys::{self, PeerCred};

/// Most descriptors kept for one request (SCM_RIGHTS); extra ones are closed.
pub const MAX_PENDING_FDS: usize = 64;

/// An error reply: a stable code and a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Stable machine-readable code (see docs/control-api.md).
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

impl ApiError {
    /// Builds an error.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// Shared writer for one connection (replies and pushed events).
pub type Writer = Arc<Mutex<UnixStream>>;

/// Per-connection context handed to the handler.
#[derive(Debug)]
pub struct Conn {
    /// Connection id, unique for the life of the server.
    pub id: u64,
    /// Peer credentials.
    pub peer: PeerCred,
    /// Writer for pushing unsolicited messages (events).
    pub writer: Writer,
    /// Set by the handler when the connection must not be closed for
    /// idleness (it holds a session or an event subscription).
    pub long_lived: bool,
    /// Descriptors received with the current request (SCM_RIGHTS).
    pub fds: Vec<std::os::fd::OwnedFd>,
}

/// What the server dispatches requests to.
pub trait Handler: Send + 'static {
    /// Handles one request object; returns the reply fields (merged next to
    /// `id` and `ok`) or an error.
    fn handle(
        &mut self,
        req: &Map<String, Value>,
        conn: &mut Conn,
    ) -> Result<Map<String, Value>, ApiError>;
    /// The connection closed (clean up what it owned).
    fn disconnected(&mut self, conn: &Conn);
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Socket path.
    pub socket: PathBuf,
    /// Group (gid) whose members may connect besides root.
    pub group: Option<u32>,
    /// Maximum concurrent clients.
    pub max_clients: usize,
    /// Maximum request line length in bytes.
    pub max_request: usize,
    /// Idle connections without a session are closed after this.
    pub idle_timeout: Duration,
    /// A partial request must complete within this.
    pub request_timeout: Duration,
}

impl ServerConfig {
    /// Defaults for `socket`: 256 clients, 64 KiB requests, 300 s idle, 10 s per request.
    pub fn new(socket: PathBuf) -> Self {
        Self {
            socket,
            group: None,
            max_clients: 256,
            max_request: 64 * 1024,
            idle_timeout: Duration::from_secs(300),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Creates the socket: parent directory if missing, stale socket removed
/// (refuses if another server answers on it), mode 0660, group ownership.
pub fn bind(cfg: &ServerConfig) -> io::Result<UnixListener> {
    if let Some(dir) = cfg.socket.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        {
            std::fs::create_dir_all(dir)?;
            let mode = if cfg.group.is_some() { 0o750 } else { 0o755 };
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
            if let Some(g) = cfg.group {
                sys::chown_group(dir, g)?;
            }
        }
    }
    if cfg.socket.exists() {
        if UnixStream::connect(&cfg.socket).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("another server is listening on {}", cfg.socket.display()),
            ));
        }
        std::fs::remove_file(&cfg.socket)?;
    }
    let l = UnixListener::bind(&cfg.socket)?;
    std::fs::set_permissions(&cfg.socket, std::fs::Permissions::from_mode(0o660))?;
    if let Some(g) = cfg.group {
        sys::chown_group(&cfg.socket, g)?;
    }
    Ok(l)
}

/// Whether `peer` may use the API: root, our own uid, or a member of `group`.
pub fn allowed(peer: &PeerCred, group: Option<u32>) -> bool {
    if peer.uid == 0 || peer.uid == sys::geteuid() {
        return true;
    }
    let Some(g) = group else { return false };
    if peer.gid == g {
        return true;
    }
    // Supplementary groups of the peer process.
    std::fs::read_to_string(format!("/proc/{}/status", peer.pid))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Groups:"))
                .map(|l| l.split_whitespace().skip(1).any(|x| x.parse() == Ok(g)))
        })
        .unwrap_or(false)
}

/// Serializes and sends one message line.
pub fn send_line(w: &Writer, v: &Value) -> io::Result<()> {
    let mut s = serde_json::to_vec(v).map_err(io::Error::other)?;
    s.push(b'\n');
    let mut g = w.lock().map_err(|_| io::Error::other("writer poisoned"))?;
    g.write_all(&s)
}

/// Like [`send_line`], but a write that times out (the peer is not reading: its socket
/// buffer is full) is retried, keeping the line whole, until `patience` has passed.
/// For a dedicated thread (the event writer): it blocks for that long at most, and
/// holds the connection's writer meanwhile.
pub fn send_line_patiently(w: &Writer, v: &Value, patience: Duration) -> io::Result<()> {
    let mut s = serde_json::to_vec(v).map_err(io::Error::other)?;
    s.push(b'\n');
    let deadline = Instant::now() + patience;
    let mut g = w.lock().map_err(|_| io::Error::other("writer poisoned"))?;
    let mut rest = s.as_slice();
    while !rest.is_empty() {
        match g.write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = rest.get(n..).unwrap_or(&[]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) && Instant::now() < deadline => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn error_reply(id: &Value, e: &ApiError) -> Value {
    json!({"id": id, "ok": false, "error": {"code": e.code, "message": e.message}})
}

/// Runs the accept loop until `stop` is set.
pub fn serve<H: Handler>(
    listener: UnixListener,
    handler: Arc<Mutex<H>>,
    cfg: Arc<ServerConfig>,
    stop: Arc<AtomicBool>,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let active = Arc::new(AtomicUsize::new(0));
    let mut next_id: u64 = 1;
    while !stop.load(Ordering::Relaxed) {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("xpgmd: accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let id = next_id;
        next_id += 1;
        if stream.set_nonblocking(false).is_err() {
            continue;
        }
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        if active.load(Ordering::Acquire) >= cfg.max_clients {
            let mut s = stream;
            let v = error_reply(
                &Value::Null,
                &ApiError::new("busy", "too many clients; try again later"),
            );
            let _ = s.write_all(format!("{v}\n").as_bytes());
            continue;
        }
        active.fetch_add(1, Ordering::AcqRel);
        let (h, c, st, a) = (handler.clone(), cfg.clone(), stop.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("xpgmd-client-{id}"))
            .spawn(move || {
                client(stream, id, &h, &c, &st);
                a.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::AcqRel);
        }
    }
    Ok(())
}

fn client<H: Handler>(
    stream: UnixStream,
    id: u64,
    handler: &Arc<Mutex<H>>,
    cfg: &ServerConfig,
    stop: &AtomicBool,
) {
    let peer = match sys::peer_cred(stream.as_fd()) {
        Ok(p) => p,
        Err(_) => return,
    };
    let Ok(wstream) = stream.try_clone() else {
        return;
    };
    let writer: Writer = Arc::new(Mutex::new(wstream));
    if !allowed(&peer, cfg.group) {
        let _ = send_line(
            &writer,
            &error_reply(
                &Value::Null,
                &ApiError::new(
                    "permission_denied",
                    format!(
                        "uid {} gid {} is neither root nor in the xpgmd group",
                        peer.uid, peer.gid
                    ),
                ),
            ),
        );
        return;
    }
    let mut conn = Conn {
        id,
        peer,
        writer: writer.clone(),
        long_lived: false,
        fds: Vec::new(),
    };
    run_client(&stream, &mut conn, handler, cfg, stop);
    if let Ok(mut h) = handler.lock() {
        h.disconnected(&conn);
    }
}

fn run_client<H: Handler>(
    stream: &UnixStream,
    conn: &mut Conn,
    handler: &Arc<Mutex<H>>,
    cfg: &ServerConfig,
    stop: &AtomicBool,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut line: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut discarding = false;
    let mut last_activity = Instant::now();
    let mut partial_since: Option<Instant> = None;
    let mut pending_fds = Vec::new();
    loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let r = sys::recv_with_fds(stream.as_fd(), &mut chunk, MAX_PENDING_FDS);
        let n = match r {
            Ok((0, _)) => {
                if !line.is_empty() && !discarding {
                    let _ = send_line(
                        &conn.writer,
                        &error_reply(
                            &Value::Null,
                            &ApiError::new(
                                "truncated",
                                "connection closed in the middle of a request",
                            ),
                        ),
                    );
                }
                return;
            }
            Ok((n, fds)) => {
                // Bounded: descriptors beyond the cap are closed on drop.
                let room = MAX_PENDING_FDS.saturating_sub(pending_fds.len());
                pending_fds.extend(fds.into_iter().take(room));
                n
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                let now = Instant::now();
                if let Some(t) = partial_since {
                    if now.duration_since(t) > cfg.request_timeout {
                        let _ = send_line(
                            &conn.writer,
                            &error_reply(
                                &Value::Null,
                                &ApiError::new("timeout", "request not completed in time"),
                            ),
                        );
                        return;
                    }
                } else if !conn.long_lived && now.duration_since(last_activity) > cfg.idle_timeout {
                    let _ = send_line(
                        &conn.writer,
                        &error_reply(
                            &Value::Null,
                            &ApiError::new("timeout", "idle connection closed"),
                        ),
                    );
                    return;
                }
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        last_activity = Instant::now();
        let mut data = chunk.get(..n).unwrap_or(&[]);
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(pos) => {
                    let (head, rest) = data.split_at(pos);
                    data = rest.get(1..).unwrap_or(&[]);
                    if discarding {
                        discarding = false;
                        line.clear();
                        continue;
                    }
                    if line.len() + head.len() > cfg.max_request {
                        too_large(conn, cfg);
                        line.clear();
                        pending_fds.clear();
                        continue;
                    }
                    line.extend_from_slice(head);
                    if line.iter().all(u8::is_ascii_whitespace) {
                        // Blank lines are keep-alives, not requests.
                        line.clear();
                        partial_since = None;
                        continue;
                    }
                    conn.fds = std::mem::take(&mut pending_fds);
                    let reply = dispatch(&line, conn, handler);
                    conn.fds.clear();
                    line.clear();
                    partial_since = None;
                    if send_line(&conn.writer, &reply).is_err() {
                        return;
                    }
                }
                None => {
                    if !discarding {
                        if line.len() + data.len() > cfg.max_request {
                            too_large(conn, cfg);
                            line.clear();
                            pending_fds.clear();
                            discarding = true;
                            partial_since = None;
                        } else {
                            line.extend_from_slice(data);
                            partial_since.get_or_insert_with(Instant::now);
                        }
                    }
                    data = &[];
                }
            }
        }
    }
}

fn too_large(conn: &Conn, cfg: &ServerConfig) {
    let _ = send_line(
        &conn.writer,
        &error_reply(
            &Value::Null,
            &ApiError::new(
                "too_large",
                format!(
                    "request longer than {} bytes; skipped to the next newline",
                    cfg.max_request
                ),
            ),
        ),
    );
}

fn dispatch<H: Handler>(line: &[u8], conn: &mut Conn, handler: &Arc<Mutex<H>>) -> Value {
    let trimmed = line.strip_suffix(b"\r").unwrap_or(line);
    let v: Value = match serde_json::from_slice(trimmed) {
        Ok(v) => v,
        Err(e) => {
            return error_reply(
                &Value::Null,
                &ApiError::new("bad_json", format!("not JSON: {e}")),
            );
        }
    };
    let Value::Object(req) = v else {
        return error_reply(
            &Value::Null,
            &ApiError::new("bad_request", "a request is a JSON object"),
        );
    };
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    if !matches!(req.get("op"), Some(Value::String(_))) {
        return error_reply(
            &id,
            &ApiError::new("bad_request", "missing \"op\" (a string)"),
        );
    }
    let result = match handler.lock() {
        Ok(mut h) => h.handle(&req, conn),
        Err(_) => Err(ApiError::new("internal", "daemon state poisoned")),
    };
    match result {
        Ok(fields) => {
            let mut m = Map::new();
            m.insert("id".into(), id);
            m.insert("ok".into(), Value::Bool(true));
            for (k, v) in fields {
                if k != "id" && k != "ok" {
                    m.insert(k, v);
                }
            }
            Value::Object(m)
        }
        Err(e) => error_reply(&id, &e),
    }
}

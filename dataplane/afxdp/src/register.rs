//! Registration of a session's AF_XDP sockets with xpgmd (`register` op,
//! descriptors over `SCM_RIGHTS`; see docs/control-api.md).
//!
//! The session lives as long as the returned [`Registration`] (its
//! connection): when the process exits or crashes, xpgmd removes the
//! steering entries and socket slots and leaves the groups nobody else needs.

use core::net::IpAddr;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use xpgm_control::client::Client;

/// Why registration failed. The messages are meant for the command line.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// Nobody listens on the control socket.
    #[error(
        "xpgmd is not running (cannot connect to {path}: {err}); --transport xdp needs it: \
         start it as root with `xpgmd --socket {path}` (or set XPGM_SOCKET to the socket of a \
         running xpgmd), or use --transport socket"
    )]
    NotRunning {
        /// Socket path tried.
        path: PathBuf,
        /// The connect error.
        err: std::io::Error,
    },
    /// Another AF_XDP session already receives (or sends) this feed here.
    #[error(
        "{role} for group {group} port {port} is already served on this host by another AF_XDP \
         session (xpgmd: {message}); the XDP classifier can steer each frame to one socket only. \
         Use --transport socket for this second local consumer, or stop the other one"
    )]
    AlreadyServed {
        /// receiver or source.
        role: &'static str,
        /// Group.
        group: IpAddr,
        /// Data port.
        port: u16,
        /// xpgmd's message.
        message: String,
    },
    /// xpgmd refused with another error.
    #[error("xpgmd refused register: {code}: {message}")]
    Refused {
        /// Error code.
        code: String,
        /// Message.
        message: String,
    },
    /// The session's interface was removed (xpgmd said so): its AF_XDP socket is
    /// bound to a device that is gone and can never receive again.
    #[error(
        "the AF_XDP socket's interface {iface} was removed; this session cannot receive \
         again (start a new one once the interface is back)"
    )]
    InterfaceGone {
        /// Interface name.
        iface: String,
    },
    /// I/O on the control connection.
    #[error("talking to xpgmd: {0}")]
    Io(#[from] std::io::Error),
}

/// A live session in xpgmd; dropping it (or exiting) ends the session.
#[derive(Debug)]
pub struct Registration {
    client: Client,
    /// xpgmd's session id.
    pub session: u64,
    /// The session as xpgmd reported it.
    pub detail: Value,
}

/// Messages [`Registration::check`] reads per call (the rest waits for the next).
const CHECK_BATCH: usize = 16;

impl Registration {
    /// The control connection (kept open for the session's lifetime).
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Whether xpgmd still holds this session, without blocking: `Err(loss)` once
    /// the connection has closed (xpgmd exited or crashed) or xpgmd sent a
    /// `session_error` for it (its interface went away; xpgmd has then dropped the
    /// session). Other messages on the connection are ignored.
    pub fn check(&mut self) -> Result<(), ControlLoss> {
        for _ in 0..CHECK_BATCH {
            match self.client.try_read_message() {
                Ok(None) => return Ok(()),
                Ok(Some(v)) => {
                    if let Some(loss) = session_error_cause(&v, self.session) {
                        return Err(loss);
                    }
                }
                Err(e) => {
                    return Err(ControlLoss {
                        cause: format!("connection to xpgmd lost: {e}"),
                        code: None,
                    });
                }
            }
        }
        Ok(())
    }
}

/// How a session lost xpgmd ([`Registration::check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlLoss {
    /// For messages.
    pub cause: String,
    /// The `session_error` code (e.g. `interface_removed`); `None`: the connection
    /// closed.
    pub code: Option<String>,
}

/// The loss named by a `session_error` event for `session` (docs/control-api.md),
/// `None` for any other message.
pub fn session_error_cause(v: &Value, session: u64) -> Option<ControlLoss> {
    if v.get("event").and_then(Value::as_str) != Some("session_error") {
        return None;
    }
    if v.get("session")
        .and_then(Value::as_u64)
        .is_some_and(|s| s != session)
    {
        return None;
    }
    let err = v.get("error");
    let field = |k: &str| {
        err.and_then(|e| e.get(k))
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned()
    };
    Some(ControlLoss {
        cause: format!(
            "xpgmd ended session {session}: {} ({})",
            field("message"),
            field("code")
        ),
        code: Some(field("code")),
    })
}

/// What to register.
#[derive(Debug, Clone)]
pub enum Role {
    /// Receive `group` on the interfaces of the sockets.
    Receiver,
    /// Send from `local_address` with TSI port `source_port` (NAKs steered).
    Source {
        /// The source's TSI port (data-source port).
        source_port: u16,
        /// Local unicast address NAKs are sent to.
        local_address: IpAddr,
    },
}

/// One socket handed over: its interface and queue.
#[derive(Debug, Clone, Copy)]
pub struct SocketSpec<'a> {
    /// Interface name.
    pub iface: &'a str,
    /// Queue id the socket is bound to.
    pub queue: u32,
    /// The AF_XDP socket.
    pub fd: BorrowedFd<'a>,
}

/// What a session registers (the `register` request's fields, see
/// docs/control-api.md).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Receiver or source.
    pub role: &'a Role,
    /// Group.
    pub group: IpAddr,
    /// PGM data-destination port.
    pub port: u16,
    /// TSI as text (shown by `xpgmctl sessions`; may be empty).
    pub tsi: &'a str,
    /// The sockets handed over.
    pub sockets: &'a [SocketSpec<'a>],
    /// UDP encapsulation port (both directions; `None`: raw IP). xpgmd puts it
    /// into the classifier's port map of the sockets' interfaces while the
    /// session lives.
    pub udp_port: Option<u16>,
    /// Receiver: its shared delivery ring, for other local consumers of the
    /// feed (they find it with [`find_served`] and attach to it).
    pub ring: Option<&'a Path>,
    /// Receiver: join source-specifically (IGMPv3/MLDv2 INCLUDE) to these.
    pub sources: &'a [IpAddr],
}

impl<'a> Request<'a> {
    /// A request without UDP port, ring or sources.
    pub fn new(
        role: &'a Role,
        group: IpAddr,
        port: u16,
        tsi: &'a str,
        sockets: &'a [SocketSpec<'a>],
    ) -> Self {
        Self {
            role,
            group,
            port,
            tsi,
            sockets,
            udp_port: None,
            ring: None,
            sources: &[],
        }
    }

    /// The same request with UDP encapsulation port `udp_port`.
    pub fn udp_port(self, udp_port: Option<u16>) -> Self {
        Self { udp_port, ..self }
    }
}

/// Builds the `register` arguments (separate for testing).
pub fn register_args(req: &Request<'_>) -> Map<String, Value> {
    let mut m = Map::new();
    let sockets = req.sockets;
    let first_iface = sockets.first().map(|s| s.iface).unwrap_or("");
    m.insert("group".into(), json!(req.group.to_string()));
    m.insert("port".into(), json!(req.port));
    m.insert("tsi".into(), json!(req.tsi));
    match req.role {
        Role::Receiver => {
            m.insert("role".into(), json!("receiver"));
            let mut ifaces: Vec<&str> = sockets.iter().map(|s| s.iface).collect();
            ifaces.dedup();
            m.insert("interfaces".into(), json!(ifaces));
        }
        Role::Source {
            source_port,
            local_address,
        } => {
            m.insert("role".into(), json!("source"));
            m.insert("send_interface".into(), json!(first_iface));
            m.insert("source_port".into(), json!(source_port));
            m.insert("local_address".into(), json!(local_address.to_string()));
        }
    }
    if let Some(p) = req.udp_port {
        m.insert("udp_port".into(), json!(p));
    }
    if let Some(r) = req.ring {
        m.insert("ring".into(), json!(r.to_string_lossy()));
    }
    if !req.sources.is_empty() {
        let s: Vec<String> = req.sources.iter().map(ToString::to_string).collect();
        m.insert("sources".into(), json!(s));
    }
    let socks: Vec<Value> = sockets
        .iter()
        .map(|s| json!({"interface": s.iface, "queue": s.queue}))
        .collect();
    m.insert("sockets".into(), Value::Array(socks));
    m
}

/// Registers a session with xpgmd at `socket_path` and hands over its sockets.
pub fn register(socket_path: &Path, req: &Request<'_>) -> Result<Registration, RegisterError> {
    register_within(socket_path, req, None)
}

/// Like [`register`], waiting at most `timeout` (`None`: 30 s) for xpgmd's reply
/// (a data-plane worker re-registering must not stall on a slow xpgmd).
pub fn register_within(
    socket_path: &Path,
    req: &Request<'_>,
    timeout: Option<std::time::Duration>,
) -> Result<Registration, RegisterError> {
    let mut client = Client::connect(socket_path).map_err(|err| RegisterError::NotRunning {
        path: socket_path.to_path_buf(),
        err,
    })?;
    if let Some(t) = timeout {
        client.set_read_timeout(Some(t))?;
    }
    let args = register_args(req);
    let fds: Vec<BorrowedFd<'_>> = req.sockets.iter().map(|s| s.fd).collect();
    let reply = client.request_with_fds("register", args, &fds)?;
    interpret_reply(reply, req.role, req.group, req.port).map(|(session, detail)| Registration {
        client,
        session,
        detail,
    })
}

/// Turns a `register` reply into the session id or a [`RegisterError`].
pub fn interpret_reply(
    reply: Value,
    role: &Role,
    group: IpAddr,
    port: u16,
) -> Result<(u64, Value), RegisterError> {
    if reply.get("ok").and_then(Value::as_bool) == Some(true) {
        let session = reply.get("session").and_then(Value::as_u64).unwrap_or(0);
        let detail = reply.get("detail").cloned().unwrap_or(Value::Null);
        return Ok((session, detail));
    }
    let err = reply.get("error");
    let code = err
        .and_then(|e| e.get("code"))
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string();
    let message = err
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if code == "exists" {
        return Err(RegisterError::AlreadyServed {
            role: match role {
                Role::Receiver => "receiver",
                Role::Source { .. } => "source",
            },
            group,
            port,
            message,
        });
    }
    Err(RegisterError::Refused { code, message })
}

/// xpgmd's control socket: `explicit`, else `$XPGM_SOCKET`, else the default
/// (`xpgm_control::socket_path`).
pub fn xpgmd_socket(explicit: Option<&Path>) -> PathBuf {
    xpgm_control::socket_path(explicit)
}

/// A receiver session that already takes a feed on this host (from xpgmd's
/// `sessions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// xpgmd's session id.
    pub session: u64,
    /// The process that registered it.
    pub pid: i32,
    /// Its shared delivery ring, if it offers one.
    pub ring: Option<PathBuf>,
}

/// Asks xpgmd at `socket_path` whether a receiver session already takes
/// `group`/`port` on `iface` queue `queue` (through an AF_XDP socket).
pub fn find_served(
    socket_path: &Path,
    iface: &str,
    queue: u32,
    group: IpAddr,
    port: u16,
) -> Result<Option<Served>, RegisterError> {
    let reply = sessions(socket_path)?;
    Ok(served_in(&reply, iface, queue, group, port))
}

/// A session holding an AF_XDP socket on an interface queue (from xpgmd's
/// `sessions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueUser {
    /// xpgmd's session id.
    pub session: u64,
    /// The process that registered it.
    pub pid: i32,
    /// `source` or `receiver`.
    pub role: String,
    /// Its group.
    pub group: String,
    /// Its data port.
    pub port: u64,
}

/// Asks xpgmd at `socket_path` whether any session already holds a socket on
/// `iface` queue `queue` (the kernel binds one AF_XDP socket per queue).
pub fn find_queue_user(
    socket_path: &Path,
    iface: &str,
    queue: u32,
) -> Result<Option<QueueUser>, RegisterError> {
    let reply = sessions(socket_path)?;
    Ok(queue_user_in(&reply, iface, queue))
}

/// The first session in a `sessions` reply with a socket on `iface` queue
/// `queue` (separate for testing).
pub fn queue_user_in(reply: &Value, iface: &str, queue: u32) -> Option<QueueUser> {
    let text = |s: &Value, k: &str| s.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
    reply
        .get("sessions")?
        .as_array()?
        .iter()
        .find(|s| has_socket(s, iface, queue))
        .map(|s| QueueUser {
            session: s.get("session").and_then(Value::as_u64).unwrap_or(0),
            pid: pid_of(s),
            role: text(s, "role"),
            group: text(s, "group"),
            port: s.get("port").and_then(Value::as_u64).unwrap_or(0),
        })
}

fn has_socket(s: &Value, iface: &str, queue: u32) -> bool {
    s.get("sockets").and_then(Value::as_array).is_some_and(|k| {
        k.iter().any(|k| {
            k.get("interface").and_then(Value::as_str) == Some(iface)
                && k.get("queue").and_then(Value::as_u64) == Some(u64::from(queue))
        })
    })
}

fn pid_of(s: &Value) -> i32 {
    s.get("pid")
        .and_then(Value::as_i64)
        .and_then(|p| i32::try_from(p).ok())
        .unwrap_or(0)
}

/// xpgmd's `sessions` reply (an error reply becomes [`RegisterError::Refused`]).
fn sessions(socket_path: &Path) -> Result<Value, RegisterError> {
    let mut client = Client::connect(socket_path).map_err(|err| RegisterError::NotRunning {
        path: socket_path.to_path_buf(),
        err,
    })?;
    let reply = client.request("sessions", Map::new())?;
    if reply.get("ok").and_then(Value::as_bool) != Some(true) {
        let e = reply.get("error");
        let field = |k: &str| {
            e.and_then(|e| e.get(k))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        return Err(RegisterError::Refused {
            code: field("code"),
            message: field("message"),
        });
    }
    Ok(reply)
}

/// The receiver session in a `sessions` reply that has a socket on `iface`
/// queue `queue` for `group`/`port` (separate for testing).
pub fn served_in(
    reply: &Value,
    iface: &str,
    queue: u32,
    group: IpAddr,
    port: u16,
) -> Option<Served> {
    let group = group.to_string();
    reply
        .get("sessions")?
        .as_array()?
        .iter()
        .find(|s| {
            s.get("role").and_then(Value::as_str) == Some("receiver")
                && s.get("group").and_then(Value::as_str) == Some(group.as_str())
                && s.get("port").and_then(Value::as_u64) == Some(u64::from(port))
                && has_socket(s, iface, queue)
        })
        .map(|s| Served {
            session: s.get("session").and_then(Value::as_u64).unwrap_or(0),
            pid: pid_of(s),
            ring: s
                .get("ring")
                .and_then(Value::as_str)
                .filter(|r| r.starts_with('/'))
                .map(PathBuf::from),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn receiver_and_source_arguments() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let socks = [SocketSpec {
            iface: "eth0",
            queue: 3,
            fd: f.as_fd(),
        }];
        let group: IpAddr = "239.192.0.7".parse().unwrap();
        let m = register_args(&Request::new(&Role::Receiver, group, 7500, "t", &socks));
        assert_eq!(m["role"], "receiver");
        assert_eq!(m["group"], "239.192.0.7");
        assert_eq!(m["port"], 7500);
        assert_eq!(m["interfaces"], json!(["eth0"]));
        assert_eq!(m["sockets"], json!([{"interface":"eth0","queue":3}]));
        // Raw IP: no UDP port, no ring, no sources.
        for k in ["udp_port", "ring", "sources"] {
            assert!(!m.contains_key(k), "{k}: {m:?}");
        }
        let role = Role::Source {
            source_port: 40001,
            local_address: "10.77.0.1".parse().unwrap(),
        };
        let req = Request::new(&role, group, 7500, "t", &socks).udp_port(Some(5711));
        let m = register_args(&req);
        assert_eq!(m["role"], "source");
        assert_eq!(m["send_interface"], "eth0");
        assert_eq!(m["source_port"], 40001);
        assert_eq!(m["local_address"], "10.77.0.1");
        assert_eq!(m["udp_port"], 5711);
        // A receiver with a ring and sources.
        let srcs: [IpAddr; 1] = ["10.77.0.1".parse().unwrap()];
        let req = Request {
            ring: Some(Path::new("/dev/shm/r")),
            sources: &srcs,
            ..Request::new(&Role::Receiver, group, 7500, "", &socks).udp_port(Some(3056))
        };
        let m = register_args(&req);
        assert_eq!(m["udp_port"], 3056);
        assert_eq!(m["ring"], "/dev/shm/r");
        assert_eq!(m["sources"], json!(["10.77.0.1"]));
    }

    #[test]
    fn session_errors_name_their_cause() {
        let ev = json!({"event": "session_error", "session": 4,
            "error": {"code": "interface_removed", "message": "interface eth0 removed"}});
        assert_eq!(
            session_error_cause(&ev, 4),
            Some(ControlLoss {
                cause: "xpgmd ended session 4: interface eth0 removed (interface_removed)".into(),
                code: Some("interface_removed".into())
            })
        );
        assert_eq!(session_error_cause(&ev, 5), None, "another session's");
        let other = json!({"event": "session_registered", "session": 4});
        assert_eq!(session_error_cause(&other, 4), None);
        assert_eq!(session_error_cause(&json!({"id": 1, "ok": true}), 4), None);
        let bare = json!({"event": "session_error"});
        assert_eq!(
            session_error_cause(&bare, 2).map(|l| l.cause).as_deref(),
            Some("xpgmd ended session 2: ? (?)")
        );
    }

    #[test]
    fn replies_are_interpreted() {
        let group: IpAddr = "239.192.0.7".parse().unwrap();
        let ok = json!({"id":1,"ok":true,"session":4,"detail":{"session":4}});
        let (s, d) = interpret_reply(ok, &Role::Receiver, group, 7500).unwrap();
        assert_eq!(s, 4);
        assert_eq!(d["session"], 4);
        let exists = json!({"id":1,"ok":false,"error":{"code":"exists","message":"entry taken by session 2"}});
        let e = interpret_reply(exists, &Role::Receiver, group, 7500).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, RegisterError::AlreadyServed { .. }));
        assert!(text.contains("already served on this host"), "{text}");
        assert!(text.contains("--transport socket"), "{text}");
        let other = json!({"id":1,"ok":false,"error":{"code":"bpf_error","message":"no"}});
        assert!(matches!(
            interpret_reply(other, &Role::Receiver, group, 7500),
            Err(RegisterError::Refused { code, .. }) if code == "bpf_error"
        ));
    }

    #[test]
    fn served_sessions_are_found_by_interface_queue_group_and_port() {
        let group: IpAddr = "239.192.0.7".parse().unwrap();
        let sock = |i: &str, q: u32| json!([{"interface": i, "queue": q, "slot": 0}]);
        let reply = json!({"ok": true, "sessions": [
            {"session": 1, "pid": 10, "role": "source", "group": "239.192.0.7", "port": 7500,
             "sockets": sock("eth0", 0), "ring": null},
            {"session": 2, "pid": 11, "role": "receiver", "group": "239.192.0.8", "port": 7500,
             "sockets": sock("eth0", 0), "ring": "/dev/shm/a"},
            {"session": 3, "pid": 12, "role": "receiver", "group": "239.192.0.7", "port": 7501,
             "sockets": sock("eth0", 0), "ring": "/dev/shm/b"},
            {"session": 4, "pid": 13, "role": "receiver", "group": "239.192.0.7", "port": 7500,
             "sockets": sock("eth1", 0), "ring": "/dev/shm/c"},
            {"session": 5, "pid": 14, "role": "receiver", "group": "239.192.0.7", "port": 7500,
             "sockets": sock("eth0", 2), "ring": "/dev/shm/d"},
            {"session": 6, "pid": 15, "role": "receiver", "group": "239.192.0.7", "port": 7500,
             "sockets": sock("eth0", 0), "ring": "/dev/shm/e"}
        ]});
        assert_eq!(
            served_in(&reply, "eth0", 0, group, 7500),
            Some(Served {
                session: 6,
                pid: 15,
                ring: Some("/dev/shm/e".into())
            })
        );
        assert_eq!(
            served_in(&reply, "eth0", 2, group, 7500).map(|s| s.session),
            Some(5)
        );
        assert_eq!(served_in(&reply, "eth2", 0, group, 7500), None);
        // A session without a ring (or with a relative path) offers none.
        let reply = json!({"ok": true, "sessions": [
            {"session": 7, "pid": 16, "role": "receiver", "group": "239.192.0.7", "port": 7500,
             "sockets": sock("eth0", 0), "ring": "rel"}]});
        assert_eq!(
            served_in(&reply, "eth0", 0, group, 7500),
            Some(Served {
                session: 7,
                pid: 16,
                ring: None
            })
        );
        assert_eq!(
            served_in(&json!({"ok": true}), "eth0", 0, group, 7500),
            None
        );
    }

    #[test]
    fn any_session_on_a_queue_is_found() {
        let reply = json!({"ok": true, "sessions": [
            {"session": 1, "pid": 10, "role": "receiver", "group": "239.1.1.1", "port": 7500,
             "sockets": [{"interface": "eth0", "queue": 1}]},
            {"session": 2, "pid": 11, "role": "source", "group": "239.1.1.2", "port": 7501,
             "sockets": [{"interface": "eth0", "queue": 0}]}
        ]});
        assert_eq!(
            queue_user_in(&reply, "eth0", 0),
            Some(QueueUser {
                session: 2,
                pid: 11,
                role: "source".into(),
                group: "239.1.1.2".into(),
                port: 7501
            })
        );
        assert_eq!(queue_user_in(&reply, "eth0", 1).map(|u| u.pid), Some(10));
        assert_eq!(queue_user_in(&reply, "eth1", 0), None);
    }

    #[test]
    fn missing_daemon_says_how_to_start_it() {
        let dir = std::env::temp_dir().join(format!("xpgm-afxdp-nod-{}", std::process::id()));
        let path = dir.join("none.sock");
        let e = register(
            &path,
            &Request::new(
                &Role::Receiver,
                "239.1.1.1".parse().unwrap(),
                7500,
                "t",
                &[],
            ),
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, RegisterError::NotRunning { .. }));
        assert!(text.contains("xpgmd is not running"), "{text}");
        assert!(
            text.contains(&format!("xpgmd --socket {}", path.display())),
            "{text}"
        );
    }
}

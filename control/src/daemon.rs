//! xpgmd's state and request handlers.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::time::Duration;

use serde_json::{Map, Value, json};
use xpgm_ebpf::abi::{
    self, Config, Counter, Direction, FlowKey, FlowStats, SteerKey, SteerValue, UdpPort,
};
use xpgm_ebpf::{AttachMode, AttachedMode, Classifier};

use crate::mcast::{self, Memberships, OsKernel};
use crate::netlink::{self, Link};
use crate::server::{ApiError, Conn, Handler, Writer, send_line, send_line_patiently};

/// Daemon settings.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Classifier configuration: the default UDP encapsulation ports, kept in
    /// the port map of every attached classifier (`--udp-ports`).
    pub classifier: Config,
    /// Maximum (interface, group) memberships.
    pub max_groups: usize,
    /// Maximum sources per group.
    pub max_sources: usize,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            classifier: Config::default(),
            max_groups: 65536,
            max_sources: 64,
        }
    }
}

#[derive(Debug)]
struct Attached {
    name: String,
    classifier: Classifier,
    mode: AttachedMode,
    prog_id: u32,
}

/// The daemon: everything xpgmd owns.
#[derive(Debug)]
pub struct Daemon {
    cfg: DaemonConfig,
    members: Memberships<OsKernel>,
    attached: HashMap<u32, Attached>,
    /// Event subscribers: connection id and the bounded queue its writer
    /// thread drains.
    subscribers: Vec<(u64, std::sync::mpsc::SyncSender<Value>)>,
    links: HashMap<u32, (String, bool)>,
    sessions: BTreeMap<u64, Session>,
    next_session: u64,
    /// Flows already announced (`source_seen`) and their last wrong-interface
    /// packet count, per (ifindex, flow). Bounded by the flow tables' size.
    seen_flows: HashMap<(u32, FlowKey), u64>,
    /// References taken by `join`/`block` requests (as opposed to sessions),
    /// per (ifindex, group, source, is_block): a `leave`/`unblock` request
    /// may only drop these, never a session's.
    admin_refs: HashMap<(u32, IpAddr, Option<IpAddr>, bool), u32>,
}

/// One AF_XDP socket handed over by a data-plane process.
#[derive(Debug)]
struct SockEntry {
    ifindex: u32,
    ifname: String,
    queue: u32,
    slot: u32,
    zero_copy: bool,
    // Kept open while the session lives; the XSKMAP holds its own reference.
    _fd: OwnedFd,
}

/// A data-plane session registered over a control connection.
#[derive(Debug)]
struct Session {
    id: u64,
    conn: u64,
    pid: i32,
    uid: u32,
    role: &'static str,
    tsi: Option<String>,
    group: IpAddr,
    port: u16,
    source_port: Option<u16>,
    /// UDP encapsulation port (both directions), in the port map of every
    /// interface the session has a socket on; `None`: raw IP or the defaults.
    udp_port: Option<u16>,
    local_address: Option<IpAddr>,
    sources: Vec<IpAddr>,
    send_if: Option<(u32, String)>,
    recv_ifs: Vec<(u32, String)>,
    sockets: Vec<SockEntry>,
    steer: Vec<(u32, SteerKey)>,
    joined: Vec<(u32, Option<IpAddr>)>,
    /// Unrecoverable losses per source, as last reported by the data plane
    /// (cumulative totals; at most [`MAX_REPORTED_SOURCES`]).
    unrecoverable: BTreeMap<IpAddr, u64>,
    /// A receiver's shared delivery ring (file path), for other local
    /// consumers of the same feed to attach to (see docs/afxdp.md).
    ring: Option<String>,
    writer: Writer,
}

/// Sessions xpgmd keeps at most.
pub const MAX_SESSIONS: usize = 4096;
/// Sessions one control connection may register.
pub const MAX_SESSIONS_PER_CONN: usize = 256;

/// Sources a session may report losses for.
pub const MAX_REPORTED_SOURCES: usize = 256;

type Reply = Result<Map<String, Value>, ApiError>;

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn str_arg<'a>(req: &'a Map<String, Value>, key: &str) -> Result<&'a str, ApiError> {
    match req.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ApiError::new(
            "bad_request",
            format!("\"{key}\" must be a string"),
        )),
        None => Err(ApiError::new("bad_request", format!("missing \"{key}\""))),
    }
}

fn opt_str<'a>(req: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, ApiError> {
    match req.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::new(
            "bad_request",
            format!("\"{key}\" must be a string"),
        )),
    }
}

fn ip_arg(s: &str, what: &str) -> Result<IpAddr, ApiError> {
    s.parse().map_err(|_| {
        ApiError::new(
            "invalid_argument",
            format!("{what} {s:?} is not an IP address"),
        )
    })
}

fn bool_arg(req: &Map<String, Value>, key: &str) -> Result<bool, ApiError> {
    match req.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::new(
            "bad_request",
            format!("\"{key}\" must be a boolean"),
        )),
    }
}

fn port_arg(req: &Map<String, Value>, key: &str) -> Result<Option<u16>, ApiError> {
    match req.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .map(Some)
            .ok_or_else(|| {
                ApiError::new("bad_request", format!("\"{key}\" must be a port number"))
            }),
    }
}

/// `"udp_port"`: absent or `null`, or an integer in 1..=65535.
fn udp_port_arg(req: &Map<String, Value>) -> Result<Option<u16>, ApiError> {
    let v = match req.get("udp_port") {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let Some(n) = v.as_i64().or_else(|| v.as_u64().map(|_| i64::MAX)) else {
        return Err(ApiError::new(
            "bad_request",
            format!("\"udp_port\" must be an integer (a UDP port, 1..=65535), not {v}"),
        ));
    };
    match u16::try_from(n) {
        Ok(p) if p != 0 => Ok(Some(p)),
        _ => Err(ApiError::new(
            "invalid_argument",
            format!("\"udp_port\" {v} is not a UDP port (1..=65535)"),
        )),
    }
}

/// The UDP port map an interface should hold: every default port (flagged
/// [`abi::UDP_PORT_DEFAULT`]) and the port of each session using the
/// interface (`users`, one item per session), with its count of sessions.
fn wanted_udp_ports(
    defaults: &[u16],
    users: impl IntoIterator<Item = u16>,
) -> BTreeMap<u16, UdpPort> {
    let mut m = BTreeMap::new();
    for &p in defaults {
        if p != 0 {
            m.entry(p).or_insert(UdpPort::default()).flags |= abi::UDP_PORT_DEFAULT;
        }
    }
    for p in users {
        if p != 0 {
            let e = m.entry(p).or_insert(UdpPort::default());
            e.sessions = e.sessions.saturating_add(1);
        }
    }
    m
}

fn array_arg<'a>(req: &'a Map<String, Value>, key: &str) -> Result<&'a [Value], ApiError> {
    match req.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) if a.len() <= 256 => Ok(a),
        Some(Value::Array(_)) => Err(ApiError::new("limit", format!("\"{key}\" is too long"))),
        Some(_) => Err(ApiError::new(
            "bad_request",
            format!("\"{key}\" must be an array"),
        )),
    }
}

fn session_view(s: &Session) -> Value {
    json!({
        "session": s.id, "pid": s.pid, "uid": s.uid, "role": s.role, "tsi": s.tsi,
        "group": s.group.to_string(), "port": s.port, "source_port": s.source_port,
        "udp_port": s.udp_port,
        "local_address": s.local_address.map(|a| a.to_string()),
        "sources": s.sources.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "send_interface": s.send_if.as_ref().map(|(_, n)| n.clone()),
        "interfaces": s.recv_ifs.iter().map(|(_, n)| n.clone()).collect::<Vec<_>>(),
        "sockets": s.sockets.iter().map(|k| json!({"interface": k.ifname, "queue": k.queue, "slot": k.slot, "zero_copy": k.zero_copy})).collect::<Vec<_>>(),
        "ring": s.ring,
    })
}

/// Events queued per subscriber before it is considered stuck.
pub const EVENT_QUEUE: usize = 1024;

fn event_writer(rx: &std::sync::mpsc::Receiver<Value>, w: &Writer) {
    // A subscriber that stops reading blocks this thread only (the daemon queues
    // events without blocking and drops the subscription when its queue overflows).
    // A write that times out is retried, so that no event is cut in half and the
    // subscriber that reads again learns at the end what it got that it lost events.
    while let Ok(v) = rx.recv() {
        if send_line_patiently(w, &v, EVENT_WRITE_PATIENCE).is_err() {
            return;
        }
    }
    // The sender is gone: connection closed (write fails harmlessly) or the
    // queue overflowed.
    let _ = send_line_patiently(
        w,
        &json!({"event": "events_lost", "message": "event queue overflowed; subscription ended"}),
        EVENT_WRITE_PATIENCE,
    );
}

/// How long an event writer waits for a subscriber that stopped reading before it
/// gives up on the connection (the thread then ends; the subscription had ended at
/// the queue's overflow).
const EVENT_WRITE_PATIENCE: Duration = Duration::from_secs(60);

fn os_err(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::new("os_error", format!("{what}: {e}"))
}

fn mcast_err(e: mcast::Error) -> ApiError {
    ApiError::new(e.code(), e.to_string())
}

fn program_name(id: u32) -> Option<String> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == id)
        .and_then(|p| p.name_as_str().map(str::to_owned))
}

impl Daemon {
    /// A daemon with nothing attached or joined.
    pub fn new(cfg: DaemonConfig) -> Self {
        let members = Memberships::new(OsKernel, cfg.max_groups, cfg.max_sources);
        Self {
            cfg,
            members,
            attached: HashMap::new(),
            subscribers: Vec::new(),
            links: netlink::links()
                .map(|ls| {
                    ls.into_iter()
                        .map(|l| (l.index, (l.name.clone(), l.is_up())))
                        .collect()
                })
                .unwrap_or_default(),
            sessions: BTreeMap::new(),
            next_session: 1,
            seen_flows: HashMap::new(),
            admin_refs: HashMap::new(),
        }
    }

    /// Finds classifiers a previous xpgmd left attached (netlink-attached
    /// programs named [`xpgm_ebpf::abi::PROGRAM_NAME`]) and removes them.
    /// Returns one line per interface cleaned.
    pub fn cleanup_stale(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for l in netlink::links().unwrap_or_default() {
            let Some((mode, id)) = l.xdp else { continue };
            if self.attached.contains_key(&l.index) {
                continue;
            }
            if program_name(id).as_deref() != Some(xpgm_ebpf::abi::PROGRAM_NAME) {
                continue;
            }
            match netlink::xdp_detach(l.index, mode) {
                Ok(()) => out.push(format!(
                    "removed classifier (program {id}, {} mode) left on {} by a previous xpgmd",
                    mode.name(),
                    l.name
                )),
                Err(e) => out.push(format!(
                    "could not remove classifier {id} left on {}: {e}",
                    l.name
                )),
            }
        }
        out
    }

    /// Detaches every classifier and drops every membership and session;
    /// returns one line per interface detached.
    pub fn shutdown(&mut self) -> Vec<String> {
        let ids: Vec<u64> = self.sessions.keys().copied().collect();
        for id in ids {
            if let Some(mut s) = self.sessions.remove(&id) {
                self.teardown(&mut s);
            }
        }
        self.subscribers.clear();
        let mut out = Vec::new();
        for (_, mut at) in self.attached.drain() {
            match at.classifier.detach() {
                Ok(()) => out.push(format!("detached classifier from {}", at.name)),
                Err(e) => out.push(format!("detaching from {}: {e}", at.name)),
            }
        }
        self.members = Memberships::new(OsKernel, self.cfg.max_groups, self.cfg.max_sources);
        self.admin_refs.clear();
        out
    }

    /// Applies a link event from the netlink monitor.
    pub fn link_event(&mut self, ev: netlink::LinkEvent) {
        match ev {
            netlink::LinkEvent::Changed(l) => {
                let up = l.is_up();
                let prev = self.links.insert(l.index, (l.name.clone(), up));
                let kind = match prev {
                    None => Some("interface_added"),
                    Some((_, was)) if was != up => {
                        Some(if up { "interface_up" } else { "interface_down" })
                    }
                    _ => None,
                };
                if let Some(k) = kind {
                    self.emit(k, obj(json!({"interface": l.name, "index": l.index})));
                }
            }
            netlink::LinkEvent::Removed { index, name } => {
                if self.links.remove(&index).is_none() && !self.attached.contains_key(&index) {
                    return;
                }
                // The kernel already dropped the program and memberships.
                let had_classifier = self.attached.contains_key(&index);
                let groups: Vec<String> = self
                    .members
                    .page(None, usize::MAX)
                    .0
                    .iter()
                    .filter(|v| v.ifindex == index)
                    .map(|v| v.group.to_string())
                    .collect();
                self.emit(
                    "interface_removed",
                    obj(json!({"interface": name, "index": index,
                        "classifier_removed": had_classifier, "groups_forgotten": groups})),
                );
                self.sessions_lost_interface(index, &name, "interface_removed");
                self.members.forget_interface(index);
                self.admin_refs.retain(|k, _| k.0 != index);
                self.attached.remove(&index);
            }
        }
    }

    /// Sends an event to every subscriber (dropping those that went away).
    pub fn emit(&mut self, kind: &str, mut fields: Map<String, Value>) {
        fields.insert("event".into(), Value::String(kind.to_owned()));
        let v = Value::Object(fields);
        // Never block the daemon on a slow reader: a subscriber whose queue
        // is full is unsubscribed (its writer thread then says so).
        self.subscribers
            .retain(|(_, q)| q.try_send(v.clone()).is_ok());
    }

    fn link(&self, name: &str) -> Result<Link, ApiError> {
        netlink::link_by_name(name)
            .map_err(|e| os_err("listing links", e))?
            .ok_or_else(|| {
                ApiError::new("no_such_interface", format!("no interface named {name:?}"))
            })
    }

    fn interfaces(&self) -> Reply {
        let links = netlink::links().map_err(|e| os_err("listing links", e))?;
        let addrs = netlink::addresses().map_err(|e| os_err("listing addresses", e))?;
        let mut out = Vec::new();
        for l in links {
            let a: Vec<Value> = addrs
                .iter()
                .filter(|(i, _, _)| *i == l.index)
                .map(|(_, a, p)| Value::String(format!("{a}/{p}")))
                .collect();
            let ours = self.attached.get(&l.index);
            let xdp = match (&l.xdp, ours) {
                (_, Some(at)) => {
                    let counters = at.classifier.counters().ok().map(|c| {
                        let mut m = Map::new();
                        for k in Counter::ALL {
                            m.insert(k.name().into(), json!(c.get(k)));
                        }
                        Value::Object(m)
                    });
                    let socks: Vec<bool> = self
                        .sessions
                        .values()
                        .flat_map(|s| s.sockets.iter())
                        .filter(|k| k.ifindex == l.index)
                        .map(|k| k.zero_copy)
                        .collect();
                    json!({"mode": at.mode.name(), "prog_id": at.prog_id, "owner": "xpgmd",
                           "program": xpgm_ebpf::abi::PROGRAM_NAME, "counters": counters,
                           "sockets": socks.len(),
                           "zero_copy": !socks.is_empty() && socks.iter().all(|z| *z)})
                }
                (Some((mode, id)), None) => json!({"mode": mode.name(), "prog_id": id,
                    "owner": "other", "program": program_name(*id)}),
                (None, None) => Value::Null,
            };
            out.push(json!({
                "name": l.name, "index": l.index, "mac": l.mac, "addresses": a,
                "state": if l.is_up() { "up" } else { "down" }, "admin_up": l.admin_up,
                "oper": l.oper, "queues": l.rx_queues, "xdp": xdp,
            }));
        }
        Ok(obj(json!({ "interfaces": out })))
    }

    fn attach(&mut self, req: &Map<String, Value>) -> Reply {
        let name = str_arg(req, "interface")?;
        let mode = match opt_str(req, "mode")?.unwrap_or("auto") {
            "auto" => AttachMode::Auto,
            "native" => AttachMode::Native,
            "generic" => AttachMode::Generic,
            m => {
                return Err(ApiError::new(
                    "invalid_argument",
                    format!("mode {m:?} is not auto, native or generic"),
                ));
            }
        };
        let force = bool_arg(req, "force")?;
        let link = self.link(name)?;
        if let Some(at) = self.attached.get(&link.index) {
            return Ok(obj(json!({"interface": name, "mode": at.mode.name(),
                "prog_id": at.prog_id, "already": true})));
        }
        let mut replaced = Value::Null;
        if let Some((m, id)) = link.xdp {
            let pname = program_name(id);
            if !force {
                return Err(ApiError::new(
                    "busy",
                    format!(
                        "{name} already carries XDP program {id} ({}) in {} mode; use --force to replace it",
                        pname.as_deref().unwrap_or("?"),
                        m.name()
                    ),
                ));
            }
            netlink::xdp_detach(link.index, m)
                .map_err(|e| os_err(&format!("removing XDP program {id} from {name}"), e))?;
            replaced = json!({"prog_id": id, "program": pname});
        }
        let mut c = Classifier::load(self.cfg.classifier)
            .map_err(|e| ApiError::new("bpf_error", e.to_string()))?;
        let got = c
            .attach(link.index, mode)
            .map_err(|e| ApiError::new("bpf_error", e.to_string()))?;
        let prog_id = c.program_id().unwrap_or(0);
        self.attached.insert(
            link.index,
            Attached {
                name: name.to_owned(),
                classifier: c,
                mode: got,
                prog_id,
            },
        );
        // The defaults went in at load; sessions' ports follow their sockets.
        self.sync_udp_ports(link.index, None)?;
        let mut ev = Map::new();
        ev.insert("interface".into(), json!(name));
        ev.insert("mode".into(), json!(got.name()));
        self.emit("classifier_attached", ev);
        Ok(obj(
            json!({"interface": name, "mode": got.name(), "prog_id": prog_id,
            "already": false, "replaced": replaced}),
        ))
    }

    fn detach(&mut self, req: &Map<String, Value>) -> Reply {
        let name = str_arg(req, "interface")?;
        let force = bool_arg(req, "force")?;
        let link = self.link(name)?;
        if let Some(mut at) = self.attached.remove(&link.index) {
            at.classifier
                .detach()
                .map_err(|e| ApiError::new("bpf_error", e.to_string()))?;
            let mut ev = Map::new();
            ev.insert("interface".into(), json!(at.name));
            self.emit("classifier_detached", ev);
            return Ok(obj(json!({"interface": name, "detached": at.prog_id})));
        }
        match link.xdp {
            Some((m, id)) if force => {
                netlink::xdp_detach(link.index, m)
                    .map_err(|e| os_err(&format!("removing XDP program {id} from {name}"), e))?;
                Ok(obj(json!({"interface": name, "detached": id})))
            }
            Some((_, id)) => Err(ApiError::new(
                "not_owner",
                format!("XDP program {id} on {name} is not xpgmd's; use --force to remove it"),
            )),
            None => Err(ApiError::new(
                "not_found",
                format!("no XDP program on {name}"),
            )),
        }
    }

    fn membership(&mut self, op: &str, req: &Map<String, Value>) -> Reply {
        let name = str_arg(req, "interface")?;
        let group = ip_arg(str_arg(req, "group")?, "group")?;
        let link = self.link(name)?;
        let mut sources = Vec::new();
        match req.get("sources") {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) => {
                if a.len() > self.cfg.max_sources {
                    return Err(ApiError::new("limit", "too many sources"));
                }
                for s in a {
                    let Value::String(s) = s else {
                        return Err(ApiError::new("bad_request", "\"sources\" must be strings"));
                    };
                    sources.push(ip_arg(s, "source")?);
                }
            }
            Some(_) => return Err(ApiError::new("bad_request", "\"sources\" must be an array")),
        }
        if let Some(s) = opt_str(req, "source")? {
            sources.push(ip_arg(s, "source")?);
        }
        let i = link.index;
        // (source, is_block) keys this request adds or drops.
        let keys: Vec<(Option<IpAddr>, bool)> = match op {
            "join" if sources.is_empty() => vec![(None, false)],
            "join" => sources.iter().map(|s| (Some(*s), false)).collect(),
            "leave" if sources.len() <= 1 => vec![(sources.first().copied(), false)],
            "block" | "unblock" => match sources.as_slice() {
                [src] => vec![(Some(*src), true)],
                _ => {
                    return Err(ApiError::new(
                        "bad_request",
                        format!("{op} needs exactly one \"source\""),
                    ));
                }
            },
            _ => {
                return Err(ApiError::new(
                    "bad_request",
                    format!("{op} takes at most one source"),
                ));
            }
        };
        if op == "leave" || op == "unblock" {
            for &(src, blk) in &keys {
                let mine = self
                    .admin_refs
                    .get(&(i, group, src, blk))
                    .copied()
                    .unwrap_or(0);
                if mine == 0 && self.members.holds(i, group, src, blk) {
                    return Err(ApiError::new(
                        "not_owner",
                        format!(
                            "{group} on {name} is held only by data-plane sessions; they leave it when they end"
                        ),
                    ));
                }
            }
        }
        let m = &mut self.members;
        match op {
            "join" => {
                // All or nothing: undo the sources already joined on failure.
                for (n, (src, _)) in keys.iter().enumerate() {
                    if let Err(e) = m.join(i, group, *src) {
                        for (d, _) in keys.iter().take(n) {
                            let _ = m.leave(i, group, *d);
                        }
                        return Err(mcast_err(e));
                    }
                }
            }
            "leave" => {
                for (src, _) in &keys {
                    m.leave(i, group, *src).map_err(mcast_err)?;
                }
            }
            "block" => {
                for (src, _) in &keys {
                    if let Some(s) = src {
                        m.block(i, group, *s).map_err(mcast_err)?;
                    }
                }
            }
            _ => {
                for (src, _) in &keys {
                    if let Some(s) = src {
                        m.unblock(i, group, *s).map_err(mcast_err)?;
                    }
                }
            }
        }
        let add = op == "join" || op == "block";
        for (src, blk) in keys {
            let e = self.admin_refs.entry((i, group, src, blk)).or_insert(0);
            if add {
                *e = e.saturating_add(1);
            } else {
                *e = e.saturating_sub(1);
            }
        }
        self.admin_refs.retain(|_, n| *n > 0);
        if op == "leave" && !self.members.holds(i, group, None, false) {
            // The group's last any-source reference is gone and its blocks with it.
            self.admin_refs
                .retain(|k, _| !(k.0 == i && k.1 == group && k.3));
        }
        let srcs: Vec<String> = sources.iter().map(ToString::to_string).collect();
        let mut ev = Map::new();
        ev.insert("interface".into(), json!(name));
        ev.insert("group".into(), json!(group.to_string()));
        ev.insert("sources".into(), json!(srcs));
        let kind = match op {
            "join" => "membership_joined",
            "leave" => "membership_left",
            "block" => "source_blocked",
            _ => "source_unblocked",
        };
        self.emit(kind, ev);
        Ok(obj(
            json!({"interface": name, "group": group.to_string(), "sources": srcs}),
        ))
    }

    fn up_link(&self, name: &str) -> Result<Link, ApiError> {
        let l = self.link(name)?;
        if !l.is_up() {
            return Err(ApiError::new(
                "interface_down",
                format!("interface {name} is down"),
            ));
        }
        Ok(l)
    }

    fn ensure_attached(&mut self, link: &Link) -> Result<(), ApiError> {
        if self.attached.contains_key(&link.index) {
            return Ok(());
        }
        let mut req = Map::new();
        req.insert("interface".into(), json!(link.name));
        self.attach(&req).map(|_| ())
    }

    fn free_slot(&self, ifindex: u32) -> Option<u32> {
        let used: std::collections::BTreeSet<u32> = self
            .sessions
            .values()
            .flat_map(|s| s.sockets.iter())
            .filter(|k| k.ifindex == ifindex)
            .map(|k| k.slot)
            .collect();
        (0..abi::MAX_SLOTS).find(|s| !used.contains(s))
    }

    fn steer_owner(&self, ifindex: u32, key: &SteerKey) -> Option<u64> {
        self.sessions
            .values()
            .find(|s| s.steer.iter().any(|(i, k)| *i == ifindex && k == key))
            .map(|s| s.id)
    }

    /// Undoes everything a session holds: steering entries, socket slots,
    /// memberships.
    fn teardown(&mut self, s: &mut Session) {
        let mut ifs: Vec<u32> = if s.udp_port.is_some() {
            s.sockets.iter().map(|k| k.ifindex).collect()
        } else {
            Vec::new()
        };
        ifs.sort_unstable();
        ifs.dedup();
        for (ifindex, key) in s.steer.drain(..) {
            if let Some(at) = self.attached.get_mut(&ifindex) {
                let _ = at.classifier.remove_steer(&key);
            }
        }
        for k in s.sockets.drain(..) {
            if let Some(at) = self.attached.get_mut(&k.ifindex) {
                let _ = at.classifier.clear_socket(k.slot);
            }
        }
        // `s` is out of the session table: its ports lose this reference
        // (removal cannot fail for lack of room).
        for i in ifs {
            let _ = self.sync_udp_ports(i, None);
        }
        let joined: Vec<_> = s.joined.drain(..).collect();
        for (ifindex, src) in joined {
            if self.members.leave(ifindex, s.group, src).is_ok() {
                self.membership_event("membership_left", s, ifindex, src);
            }
        }
    }

    fn ifname(&self, ifindex: u32) -> String {
        self.links
            .get(&ifindex)
            .map_or_else(|| ifindex.to_string(), |(n, _)| n.clone())
    }

    fn membership_event(&mut self, kind: &str, s: &Session, ifindex: u32, src: Option<IpAddr>) {
        let srcs: Vec<String> = src.iter().map(ToString::to_string).collect();
        let ev = obj(
            json!({"interface": self.ifname(ifindex), "group": s.group.to_string(),
            "sources": srcs, "session": s.id}),
        );
        self.emit(kind, ev);
    }

    /// Joins the session's group on `ifindex` (each source, or any-source).
    fn session_join(&mut self, s: &mut Session, ifindex: u32) -> Result<(), ApiError> {
        let srcs: Vec<Option<IpAddr>> = if s.sources.is_empty() {
            vec![None]
        } else {
            s.sources.iter().copied().map(Some).collect()
        };
        for src in srcs {
            self.members
                .join(ifindex, s.group, src)
                .map_err(mcast_err)?;
            s.joined.push((ifindex, src));
            self.membership_event("membership_joined", s, ifindex, src);
        }
        Ok(())
    }

    fn session_leave_if(&mut self, s: &mut Session, ifindex: u32) {
        let (gone, keep): (Vec<_>, Vec<_>) = s.joined.drain(..).partition(|(i, _)| *i == ifindex);
        s.joined = keep;
        for (i, src) in gone {
            if self.members.leave(i, s.group, src).is_ok() {
                self.membership_event("membership_left", s, i, src);
            }
        }
        let (gone, keep): (Vec<_>, Vec<_>) = s.steer.drain(..).partition(|(i, _)| *i == ifindex);
        s.steer = keep;
        for (i, key) in gone {
            if let Some(at) = self.attached.get_mut(&i) {
                let _ = at.classifier.remove_steer(&key);
            }
        }
        let (gone, keep): (Vec<_>, Vec<_>) =
            s.sockets.drain(..).partition(|k| k.ifindex == ifindex);
        s.sockets = keep;
        let had_socket = !gone.is_empty();
        for k in gone {
            if let Some(at) = self.attached.get_mut(&k.ifindex) {
                let _ = at.classifier.clear_socket(k.slot);
            }
        }
        if had_socket && s.udp_port.is_some() {
            let _ = self.sync_udp_ports(ifindex, Some(s));
        }
    }

    /// Brings the UDP port map of `ifindex` (if a classifier is attached there)
    /// in line with the defaults and the sessions with a socket on it: those in
    /// the table and `extra`, one being changed outside it. Stale ports go out
    /// first, so a full map has room for new ones; a port that does not fit is a
    /// `limit` error.
    fn sync_udp_ports(&mut self, ifindex: u32, extra: Option<&Session>) -> Result<(), ApiError> {
        let extra_id = extra.map(|e| e.id);
        let users: Vec<u16> = self
            .sessions
            .values()
            .filter(|s| Some(s.id) != extra_id)
            .chain(extra)
            .filter(|s| s.sockets.iter().any(|k| k.ifindex == ifindex))
            .filter_map(|s| s.udp_port)
            .collect();
        let want = wanted_udp_ports(&self.cfg.classifier.default_ports(), users);
        let Some(at) = self.attached.get_mut(&ifindex) else {
            return Ok(());
        };
        let name = at.name.clone();
        let err = |e: xpgm_ebpf::Error| {
            let code = match e {
                xpgm_ebpf::Error::UdpPortsFull { .. } => "limit",
                _ => "bpf_error",
            };
            ApiError::new(code, format!("UDP port map of {name}: {e}"))
        };
        let have: BTreeMap<u16, UdpPort> = at
            .classifier
            .udp_ports()
            .map_err(err)?
            .into_iter()
            .collect();
        for p in have.keys().filter(|p| !want.contains_key(p)) {
            at.classifier.remove_udp_port(*p).map_err(err)?;
        }
        for (p, v) in &want {
            if have.get(p) != Some(v) {
                at.classifier.set_udp_port(*p, *v).map_err(err)?;
            }
        }
        Ok(())
    }

    /// Installs the sockets passed with a request (one per `sockets[i]`
    /// descriptor) and their steering entries.
    fn session_sockets(
        &mut self,
        s: &mut Session,
        specs: &[Value],
        fds: &mut Vec<OwnedFd>,
    ) -> Result<(), ApiError> {
        if specs.len() != fds.len() {
            return Err(ApiError::new(
                "bad_request",
                format!(
                    "{} socket descriptions but {} descriptors passed with SCM_RIGHTS",
                    specs.len(),
                    fds.len()
                ),
            ));
        }
        for (spec, fd) in specs.iter().zip(fds.drain(..)) {
            let Value::Object(spec) = spec else {
                return Err(ApiError::new("bad_request", "each socket is an object"));
            };
            let ifname = str_arg(spec, "interface")?;
            let queue = spec
                .get("queue")
                .and_then(Value::as_u64)
                .and_then(|q| u32::try_from(q).ok())
                .ok_or_else(|| {
                    ApiError::new("bad_request", "socket \"queue\" must be an integer")
                })?;
            let link = self.up_link(ifname)?;
            if queue >= link.rx_queues {
                return Err(ApiError::new(
                    "invalid_argument",
                    format!(
                        "{ifname} has {} receive queues; no queue {queue}",
                        link.rx_queues
                    ),
                ));
            }
            let used = s.recv_ifs.iter().any(|(i, _)| *i == link.index)
                || s.send_if.as_ref().is_some_and(|(i, _)| *i == link.index);
            if !used {
                return Err(ApiError::new(
                    "invalid_argument",
                    format!("session does not use interface {ifname}"),
                ));
            }
            // The kernel only redirects to a socket bound to the queue the
            // frame arrived on; it cannot tell us which queue a socket is
            // bound to, so that is the caller's declaration. Check at least
            // that it is an AF_XDP socket.
            let info = crate::sys::xsk_info(std::os::fd::AsFd::as_fd(&fd)).map_err(|e| {
                ApiError::new(
                    "invalid_argument",
                    format!("descriptor for {ifname} queue {queue} is not an AF_XDP socket: {e}"),
                )
            })?;
            self.ensure_attached(&link)?;
            let slot = self.free_slot(link.index).ok_or_else(|| {
                ApiError::new("limit", format!("no free socket slot on {ifname}"))
            })?;
            let key = if s.role == "source" {
                let local = s.local_address.ok_or_else(|| {
                    ApiError::new("bad_request", "a source needs \"local_address\"")
                })?;
                let sp = s.source_port.ok_or_else(|| {
                    ApiError::new("bad_request", "a source needs \"source_port\"")
                })?;
                SteerKey::new(queue, local, sp, Direction::Upstream)
            } else {
                SteerKey::new(queue, s.group, s.port, Direction::Downstream)
            };
            if let Some(other) = self.steer_owner(link.index, &key) {
                return Err(ApiError::new(
                    "exists",
                    format!(
                        "session {other} already receives this traffic on {ifname} queue {queue}"
                    ),
                ));
            }
            let Some(at) = self.attached.get_mut(&link.index) else {
                return Err(ApiError::new("internal", "classifier vanished"));
            };
            at.classifier
                .set_socket(slot, std::os::fd::AsRawFd::as_raw_fd(&fd))
                .map_err(|e| {
                    ApiError::new(
                        "bpf_error",
                        format!("socket for {ifname} queue {queue}: {e}"),
                    )
                })?;
            if let Err(e) = at.classifier.insert_steer(
                key,
                SteerValue {
                    slot,
                    session: u32::try_from(s.id).unwrap_or(u32::MAX),
                },
            ) {
                let _ = at.classifier.clear_socket(slot);
                return Err(ApiError::new("bpf_error", e.to_string()));
            }
            s.steer.push((link.index, key));
            s.sockets.push(SockEntry {
                ifindex: link.index,
                ifname: ifname.to_owned(),
                queue,
                slot,
                zero_copy: info.zero_copy,
                _fd: fd,
            });
            if s.udp_port.is_some()
                && let Err(e) = self.sync_udp_ports(link.index, Some(s))
            {
                // Undo this socket: the session must not be steered frames
                // the classifier cannot recognise.
                s.steer.pop();
                s.sockets.pop();
                if let Some(at) = self.attached.get_mut(&link.index) {
                    let _ = at.classifier.remove_steer(&key);
                    let _ = at.classifier.clear_socket(slot);
                }
                let _ = self.sync_udp_ports(link.index, Some(s));
                return Err(e);
            }
        }
        Ok(())
    }

    fn register(&mut self, req: &Map<String, Value>, conn: &mut Conn) -> Reply {
        let role = match str_arg(req, "role")? {
            "source" => "source",
            "receiver" => "receiver",
            r => {
                return Err(ApiError::new(
                    "invalid_argument",
                    format!("role {r:?} is not source or receiver"),
                ));
            }
        };
        let group = ip_arg(str_arg(req, "group")?, "group")?;
        if !group.is_multicast() {
            return Err(ApiError::new(
                "invalid_argument",
                format!("{group} is not a multicast group"),
            ));
        }
        if self.sessions.len() >= MAX_SESSIONS {
            return Err(ApiError::new("limit", "too many sessions"));
        }
        if self.sessions.values().filter(|x| x.conn == conn.id).count() >= MAX_SESSIONS_PER_CONN {
            return Err(ApiError::new(
                "limit",
                "too many sessions on this connection",
            ));
        }
        let port = port_arg(req, "port")?
            .ok_or_else(|| ApiError::new("bad_request", "missing \"port\""))?;
        let source_port = port_arg(req, "source_port")?;
        let udp_port = udp_port_arg(req)?;
        let mut sources = Vec::new();
        for v in array_arg(req, "sources")? {
            let Value::String(x) = v else {
                return Err(ApiError::new("bad_request", "\"sources\" must be strings"));
            };
            sources.push(ip_arg(x, "source")?);
        }
        let mut s = Session {
            id: self.next_session,
            conn: conn.id,
            pid: conn.peer.pid,
            uid: conn.peer.uid,
            role,
            tsi: opt_str(req, "tsi")?.map(str::to_owned),
            group,
            port,
            source_port,
            udp_port,
            local_address: opt_str(req, "local_address")?
                .map(|a| ip_arg(a, "local_address"))
                .transpose()?,
            sources,
            send_if: None,
            recv_ifs: Vec::new(),
            sockets: Vec::new(),
            steer: Vec::new(),
            joined: Vec::new(),
            unrecoverable: BTreeMap::new(),
            ring: opt_str(req, "ring")?.map(str::to_owned),
            writer: conn.writer.clone(),
        };
        if let Some(r) = &s.ring
            && (r.len() > 4096 || !r.starts_with('/'))
        {
            return Err(ApiError::new(
                "invalid_argument",
                "\"ring\" must be an absolute path of at most 4096 bytes",
            ));
        }
        let r = self.register_inner(&mut s, req, conn);
        if let Err(e) = r {
            self.teardown(&mut s);
            return Err(e);
        }
        self.next_session += 1;
        conn.long_lived = true;
        let view = session_view(&s);
        let id = s.id;
        self.sessions.insert(id, s);
        self.emit("session_registered", obj(view.clone()));
        Ok(obj(json!({"session": id, "detail": view})))
    }

    fn register_inner(
        &mut self,
        s: &mut Session,
        req: &Map<String, Value>,
        conn: &mut Conn,
    ) -> Result<(), ApiError> {
        if s.role == "source" {
            let name = str_arg(req, "send_interface")?;
            let l = self.up_link(name)?;
            s.send_if = Some((l.index, l.name.clone()));
            if s.local_address.is_none() {
                let addrs = netlink::addresses().map_err(|e| os_err("listing addresses", e))?;
                s.local_address = addrs
                    .iter()
                    .find(|(i, a, _)| *i == l.index && a.is_ipv4() == s.group.is_ipv4())
                    .map(|(_, a, _)| *a);
            }
        } else {
            for v in array_arg(req, "interfaces")? {
                let Value::String(name) = v else {
                    return Err(ApiError::new(
                        "bad_request",
                        "\"interfaces\" must be strings",
                    ));
                };
                let l = self.up_link(name)?;
                if s.recv_ifs.iter().any(|(i, _)| *i == l.index) {
                    continue;
                }
                s.recv_ifs.push((l.index, l.name.clone()));
                self.session_join(s, l.index)?;
            }
            if s.recv_ifs.is_empty() {
                return Err(ApiError::new(
                    "bad_request",
                    "a receiver needs at least one of \"interfaces\"",
                ));
            }
        }
        let specs = array_arg(req, "sockets")?.to_vec();
        self.session_sockets(s, &specs, &mut conn.fds)
    }

    fn own_session(&mut self, req: &Map<String, Value>, conn: &Conn) -> Result<Session, ApiError> {
        let id = req
            .get("session")
            .and_then(Value::as_u64)
            .ok_or_else(|| ApiError::new("bad_request", "missing \"session\" (integer)"))?;
        match self.sessions.get(&id) {
            Some(s) if s.conn == conn.id => {}
            Some(_) => {
                return Err(ApiError::new(
                    "not_owner",
                    format!("session {id} belongs to another connection"),
                ));
            }
            None => return Err(ApiError::new("not_found", format!("no session {id}"))),
        }
        self.sessions
            .remove(&id)
            .ok_or_else(|| ApiError::new("not_found", format!("no session {id}")))
    }

    /// `set_send_interface`, `add_interface`, `remove_interface` on an own session.
    fn session_update(&mut self, op: &str, req: &Map<String, Value>, conn: &mut Conn) -> Reply {
        let mut s = self.own_session(req, conn)?;
        let r = self.session_update_inner(op, &mut s, req, conn);
        let view = session_view(&s);
        self.sessions.insert(s.id, s);
        r?;
        self.emit("session_updated", obj(view.clone()));
        Ok(obj(json!({"detail": view})))
    }

    fn session_update_inner(
        &mut self,
        op: &str,
        s: &mut Session,
        req: &Map<String, Value>,
        conn: &mut Conn,
    ) -> Result<(), ApiError> {
        let name = str_arg(req, "interface")?;
        match op {
            "set_send_interface" => {
                if s.role != "source" {
                    return Err(ApiError::new(
                        "invalid_state",
                        "only a source has a send interface",
                    ));
                }
                let l = self.up_link(name)?;
                if let Some((old, _)) = s.send_if.take()
                    && old != l.index
                {
                    self.session_leave_if(s, old);
                }
                s.send_if = Some((l.index, l.name.clone()));
            }
            "add_interface" => {
                if s.role != "receiver" {
                    return Err(ApiError::new(
                        "invalid_state",
                        "only a receiver listens on several interfaces",
                    ));
                }
                let l = self.up_link(name)?;
                if !s.recv_ifs.iter().any(|(i, _)| *i == l.index) {
                    s.recv_ifs.push((l.index, l.name.clone()));
                    if let Err(e) = self.session_join(s, l.index) {
                        self.session_leave_if(s, l.index);
                        s.recv_ifs.retain(|(i, _)| *i != l.index);
                        return Err(e);
                    }
                }
            }
            _ => {
                let l = self.link(name)?;
                if !s.recv_ifs.iter().any(|(i, _)| *i == l.index) {
                    return Err(ApiError::new(
                        "not_found",
                        format!("session does not listen on {name}"),
                    ));
                }
                self.session_leave_if(s, l.index);
                s.recv_ifs.retain(|(i, _)| *i != l.index);
                return Ok(());
            }
        }
        let specs = array_arg(req, "sockets")?.to_vec();
        self.session_sockets(s, &specs, &mut conn.fds)
    }

    /// `report`: the data plane's loss counts per source, shown by `flows`.
    fn report(&mut self, req: &Map<String, Value>, conn: &Conn) -> Reply {
        let mut s = self.own_session(req, conn)?;
        let r = (|| -> Result<usize, ApiError> {
            let mut n = 0;
            for f in array_arg(req, "flows")? {
                let Value::Object(f) = f else {
                    return Err(ApiError::new("bad_request", "each flow is an object"));
                };
                let src = ip_arg(str_arg(f, "source")?, "source")?;
                let lost = f
                    .get("unrecoverable")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| {
                        ApiError::new(
                            "bad_request",
                            "\"unrecoverable\" must be a non-negative integer",
                        )
                    })?;
                if !s.unrecoverable.contains_key(&src)
                    && s.unrecoverable.len() >= MAX_REPORTED_SOURCES
                {
                    return Err(ApiError::new("limit", "too many reported sources"));
                }
                s.unrecoverable.insert(src, lost);
                n += 1;
            }
            Ok(n)
        })();
        let id = s.id;
        self.sessions.insert(id, s);
        Ok(obj(json!({"session": id, "flows": r?})))
    }

    fn unregister(&mut self, req: &Map<String, Value>, conn: &Conn) -> Reply {
        let mut s = self.own_session(req, conn)?;
        self.teardown(&mut s);
        self.emit("session_unregistered", obj(json!({"session": s.id})));
        Ok(obj(json!({"session": s.id})))
    }

    fn sessions_list(&self) -> Reply {
        let v: Vec<Value> = self.sessions.values().map(session_view).collect();
        Ok(obj(json!({"sessions": v})))
    }

    /// Drops every session using `ifindex` (it disappeared or went down):
    /// tells the owner on its connection, emits an event, cleans up.
    fn sessions_lost_interface(&mut self, ifindex: u32, name: &str, reason: &str) {
        let ids: Vec<u64> = self
            .sessions
            .values()
            .filter(|s| {
                s.recv_ifs.iter().any(|(i, _)| *i == ifindex)
                    || s.send_if.as_ref().is_some_and(|(i, _)| *i == ifindex)
            })
            .map(|s| s.id)
            .collect();
        for id in ids {
            let Some(mut s) = self.sessions.remove(&id) else {
                continue;
            };
            self.teardown(&mut s);
            let msg = json!({"event": "session_error", "session": id,
                "error": {"code": reason, "message": format!("interface {name} {}", reason.trim_start_matches("interface_"))}});
            let _ = send_line(&s.writer, &msg);
            self.emit(
                "session_disconnected",
                obj(json!({"session": id, "reason": reason, "interface": name})),
            );
        }
    }

    /// Packets of a flow seen on `ifindex` count as "wrong interface" when
    /// some receiver session wants (group, port) and none of those listens on
    /// `ifindex`.
    fn wrong_interface(&self, ifindex: u32, k: &FlowKey) -> bool {
        let group = k.group_ip();
        let mut wanted = false;
        for s in self.sessions.values() {
            if s.role == "receiver" && s.group == group && s.port == k.port {
                if s.recv_ifs.iter().any(|(i, _)| *i == ifindex) {
                    return false;
                }
                wanted = true;
            }
        }
        wanted
    }

    /// Losses reported by the receiver sessions of this flow on `ifindex`
    /// (`null` when none reported).
    fn unrecoverable(&self, ifindex: u32, k: &FlowKey) -> Value {
        let (group, source) = (k.group_ip(), k.source_ip());
        let mut total: Option<u64> = None;
        for s in self.sessions.values() {
            if s.group == group
                && s.port == k.port
                && s.recv_ifs.iter().any(|(i, _)| *i == ifindex)
                && let Some(n) = s.unrecoverable.get(&source)
            {
                total = Some(total.unwrap_or(0).saturating_add(*n));
            }
        }
        total.map_or(Value::Null, Value::from)
    }

    fn all_flows(&self) -> Vec<(u32, String, FlowKey, FlowStats)> {
        let mut out = Vec::new();
        for (i, at) in &self.attached {
            if let Ok(fs) = at.classifier.flows() {
                out.extend(fs.into_iter().map(|(k, st)| (*i, at.name.clone(), k, st)));
            }
        }
        out.sort_by_key(|a| (a.2, a.0));
        out
    }

    fn flows(&self) -> Reply {
        let v: Vec<Value> = self
            .all_flows()
            .iter()
            .map(|(i, name, k, st)| {
                json!({
                    "source": k.source_ip().to_string(), "group": k.group_ip().to_string(),
                    "port": k.port, "interface": name, "packets": st.packets,
                    "bytes": st.bytes, "naks": st.naks, "repairs": st.repairs,
                    "unrecoverable": self.unrecoverable(*i, k),
                    "wrong_interface": if self.wrong_interface(*i, k) { st.packets } else { 0 },
                })
            })
            .collect();
        Ok(obj(json!({"flows": v})))
    }

    /// Called periodically: emits `source_seen` for new flows and
    /// `wrong_interface` when a flow's misdirected packet count grew.
    pub fn poll_flows(&mut self) {
        let flows = self.all_flows();
        let mut live = std::collections::HashSet::new();
        for (i, name, k, st) in flows {
            live.insert((i, k));
            let wrong = if self.wrong_interface(i, &k) {
                st.packets
            } else {
                0
            };
            let base = json!({"source": k.source_ip().to_string(), "group": k.group_ip().to_string(),
                "port": k.port, "interface": name});
            if let std::collections::hash_map::Entry::Vacant(e) = self.seen_flows.entry((i, k)) {
                e.insert(0);
                self.emit("source_seen", obj(base.clone()));
            }
            let prev = self.seen_flows.get(&(i, k)).copied().unwrap_or(0);
            if wrong > prev {
                self.seen_flows.insert((i, k), wrong);
                let mut m = obj(base);
                m.insert("packets".into(), json!(wrong));
                self.emit("wrong_interface", m);
            }
        }
        self.seen_flows.retain(|k, _| live.contains(k));
    }

    fn groups(&self, req: &Map<String, Value>) -> Reply {
        let limit = match req.get("limit") {
            None | Some(Value::Null) => 1000,
            Some(v) => v
                .as_u64()
                .filter(|&n| n > 0)
                .ok_or_else(|| {
                    ApiError::new("bad_request", "\"limit\" must be a positive integer")
                })?
                .min(10_000) as usize,
        };
        let after = match opt_str(req, "cursor")? {
            None => None,
            Some(c) => {
                let (i, g) = c
                    .split_once('/')
                    .ok_or_else(|| ApiError::new("bad_request", "bad cursor"))?;
                Some((
                    i.parse()
                        .map_err(|_| ApiError::new("bad_request", "bad cursor"))?,
                    ip_arg(g, "cursor group")?,
                ))
            }
        };
        let (page, more) = self.members.page(after, limit);
        let names: HashMap<u32, String> = netlink::links()
            .map(|ls| ls.into_iter().map(|l| (l.index, l.name)).collect())
            .unwrap_or_default();
        let next = if more {
            page.last()
                .map(|v| Value::String(format!("{}/{}", v.ifindex, v.group)))
        } else {
            None
        };
        let groups: Vec<Value> = page
            .iter()
            .map(|v| {
                json!({
                    "interface": names.get(&v.ifindex).cloned().unwrap_or_else(|| v.ifindex.to_string()),
                    "ifindex": v.ifindex, "group": v.group.to_string(), "filter": v.filter,
                    "refs": v.refs,
                    "sources": v.sources.iter().map(|(a, c)| json!({"source": a.to_string(), "refs": c})).collect::<Vec<_>>(),
                })
            })
            .collect();
        Ok(obj(json!({"groups": groups, "next_cursor": next})))
    }
}

impl Daemon {
    /// `steering`: per attached interface, the classifier's steering entries
    /// (read from the kernel map) and the XSKMAP slots holding a socket, each
    /// with the session (and its pid) it belongs to.
    fn steering(&self) -> Map<String, Value> {
        let mut ifs: Vec<(&u32, &Attached)> = self.attached.iter().collect();
        ifs.sort_by_key(|(i, _)| **i);
        let pid_of = |id: u64| self.sessions.get(&id).map(|s| s.pid);
        let out: Vec<Value> = ifs
            .into_iter()
            .map(|(&ifindex, at)| {
                let (entries, error) = match at.classifier.steer_entries() {
                    Ok(mut es) => {
                        es.sort_by_key(|(k, _)| (k.queue, k.dir, k.addr, k.port));
                        let v: Vec<Value> = es
                            .iter()
                            .map(|(k, v)| {
                                let dir = if k.dir == Direction::Upstream as u8 {
                                    "upstream"
                                } else {
                                    "downstream"
                                };
                                json!({"queue": k.queue, "address": k.ip().to_string(),
                                       "port": k.port, "direction": dir, "slot": v.slot,
                                       "session": v.session,
                                       "pid": pid_of(u64::from(v.session))})
                            })
                            .collect();
                        (v, Value::Null)
                    }
                    Err(e) => (Vec::new(), json!(e.to_string())),
                };
                let slots: Vec<Value> = at
                    .classifier
                    .sockets_in_use()
                    .into_iter()
                    .map(|slot| {
                        let owner = self.sessions.values().find_map(|s| {
                            s.sockets
                                .iter()
                                .find(|k| k.ifindex == ifindex && k.slot == slot)
                                .map(|k| (s.id, s.pid, k.queue))
                        });
                        json!({"slot": slot, "session": owner.map(|o| o.0),
                               "pid": owner.map(|o| o.1), "queue": owner.map(|o| o.2)})
                    })
                    .collect();
                let (udp_ports, udp_error) = match at.classifier.udp_ports() {
                    Ok(ps) => (
                        ps.iter()
                            .map(|(port, v)| self.udp_port_view(ifindex, *port, v))
                            .collect(),
                        Value::Null,
                    ),
                    Err(e) => (Vec::new(), json!(e.to_string())),
                };
                json!({"interface": at.name, "ifindex": ifindex, "steering": entries,
                       "slots": slots, "udp_ports": udp_ports, "error": error,
                       "udp_ports_error": udp_error})
            })
            .collect();
        obj(json!({ "interfaces": out }))
    }
}

impl Daemon {
    /// One entry of the port map of `ifindex` with the sessions using it.
    fn udp_port_view(&self, ifindex: u32, port: u16, v: &UdpPort) -> Value {
        let users: Vec<Value> = self
            .sessions
            .values()
            .filter(|s| s.udp_port == Some(port) && s.sockets.iter().any(|k| k.ifindex == ifindex))
            .map(|s| json!({"session": s.id, "pid": s.pid, "role": s.role}))
            .collect();
        json!({"port": port, "default": v.is_default(), "refs": v.sessions, "sessions": users})
    }
}

impl Handler for Daemon {
    fn handle(&mut self, req: &Map<String, Value>, conn: &mut Conn) -> Reply {
        let op = str_arg(req, "op")?;
        match op {
            "ping" => Ok(obj(
                json!({"version": env!("CARGO_PKG_VERSION"), "pid": std::process::id()}),
            )),
            "interfaces" => self.interfaces(),
            "attach" => self.attach(req),
            "detach" => self.detach(req),
            "join" | "leave" | "block" | "unblock" => self.membership(op, req),
            "groups" => self.groups(req),
            "register" => self.register(req, conn),
            "unregister" => self.unregister(req, conn),
            "set_send_interface" | "add_interface" | "remove_interface" => {
                self.session_update(op, req, conn)
            }
            "sessions" => self.sessions_list(),
            "flows" => self.flows(),
            "steering" => Ok(self.steering()),
            "report" => self.report(req, conn),
            "events" => {
                conn.long_lived = true;
                if !self.subscribers.iter().any(|(id, _)| *id == conn.id) {
                    let (tx, rx) = std::sync::mpsc::sync_channel::<Value>(EVENT_QUEUE);
                    let w = conn.writer.clone();
                    std::thread::Builder::new()
                        .name(format!("xpgmd-events-{}", conn.id))
                        .spawn(move || event_writer(&rx, &w))
                        .map_err(|e| os_err("spawning event writer", e))?;
                    self.subscribers.push((conn.id, tx));
                }
                Ok(obj(json!({"subscribed": true})))
            }
            _ => Err(ApiError::new("unknown_op", format!("unknown op {op:?}"))),
        }
    }

    fn disconnected(&mut self, conn: &Conn) {
        self.subscribers.retain(|(id, _)| *id != conn.id);
        let ids: Vec<u64> = self
            .sessions
            .values()
            .filter(|s| s.conn == conn.id)
            .map(|s| s.id)
            .collect();
        for id in ids {
            if let Some(mut s) = self.sessions.remove(&id) {
                self.teardown(&mut s);
                self.emit(
                    "session_disconnected",
                    obj(json!({"session": id, "reason": "connection_closed", "pid": s.pid})),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> Map<String, Value> {
        obj(json!({ "udp_port": v }))
    }

    #[test]
    fn udp_port_argument_is_a_port_or_a_clear_error() {
        assert_eq!(udp_port_arg(&Map::new()).unwrap(), None);
        assert_eq!(udp_port_arg(&req(Value::Null)).unwrap(), None);
        assert_eq!(udp_port_arg(&req(json!(1))).unwrap(), Some(1));
        assert_eq!(udp_port_arg(&req(json!(5711))).unwrap(), Some(5711));
        assert_eq!(udp_port_arg(&req(json!(65535))).unwrap(), Some(65535));
        for bad in [json!(0), json!(65536), json!(-1), json!(u64::MAX)] {
            let e = udp_port_arg(&req(bad.clone())).unwrap_err();
            assert_eq!(e.code, "invalid_argument", "{bad}");
            assert!(e.message.contains("1..=65535"), "{}", e.message);
            assert!(e.message.contains(&bad.to_string()), "{}", e.message);
        }
        // Every integer around the range: a port exactly when 1..=65535.
        for n in -3i64..=70_000 {
            let r = udp_port_arg(&req(json!(n)));
            match u16::try_from(n) {
                Ok(p) if p != 0 => assert_eq!(r.unwrap(), Some(p)),
                _ => assert_eq!(r.unwrap_err().code, "invalid_argument", "{n}"),
            }
        }
        for bad in [json!("5711"), json!(5711.5), json!(true), json!([5711])] {
            let e = udp_port_arg(&req(bad.clone())).unwrap_err();
            assert_eq!(e.code, "bad_request", "{bad}");
            assert!(e.message.contains("must be an integer"), "{}", e.message);
        }
    }

    fn port(sessions: u32, default: bool) -> UdpPort {
        UdpPort {
            sessions,
            flags: if default { abi::UDP_PORT_DEFAULT } else { 0 },
        }
    }

    #[test]
    fn wanted_ports_keep_defaults_and_count_sessions() {
        // No sessions: the defaults, flagged, without users.
        let d = Config::default().default_ports();
        assert_eq!(
            wanted_udp_ports(&d, []),
            BTreeMap::from([(3055, port(0, true)), (3056, port(0, true))])
        );
        // Two sessions on 5711, one on 5712, one on a default port.
        let w = wanted_udp_ports(&d, [5711, 5712, 5711, 3056]);
        assert_eq!(
            w,
            BTreeMap::from([
                (3055, port(0, true)),
                (3056, port(1, true)),
                (5711, port(2, false)),
                (5712, port(1, false)),
            ])
        );
        // The last user of 5712 gone: it goes; 5711 keeps one reference; the
        // default 3056 stays without users.
        let w = wanted_udp_ports(&d, [5711]);
        assert_eq!(w.get(&5712), None);
        assert_eq!(w[&5711], port(1, false));
        assert_eq!(w[&3056], port(0, true));
        // No defaults (`--udp-ports 0,0`): only sessions' ports; 0 is never a port.
        assert_eq!(
            wanted_udp_ports(&[0, 0], [0, 7000]),
            BTreeMap::from([(7000, port(1, false))])
        );
        assert!(wanted_udp_ports(&[], []).is_empty());
    }
}

//! xpgmd's state and request handlers.

use std::collections::HashMap;
use std::net::IpAddr;

use serde_json::{Map, Value, json};
use xpgm_ebpf::abi::{Config, Counter};
use xpgm_ebpf::{AttachMode, AttachedMode, Classifier};

use crate::mcast::{self, Memberships, OsKernel};
use crate::netlink::{self, Link};
use crate::server::{ApiError, Conn, Handler, Writer, send_line};

/// Daemon settings.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Classifier configuration (UDP encapsulation ports).
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
    subscribers: Vec<(u64, Writer)>,
    links: HashMap<u32, (String, bool)>,
}

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
                let had_classifier = self.attached.remove(&index).is_some();
                let groups: Vec<String> = self
                    .members
                    .forget_interface(index)
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                self.emit(
                    "interface_removed",
                    obj(json!({"interface": name, "index": index,
                        "classifier_removed": had_classifier, "groups_forgotten": groups})),
                );
            }
        }
    }

    /// Sends an event to every subscriber (dropping those that went away).
    pub fn emit(&mut self, kind: &str, mut fields: Map<String, Value>) {
        fields.insert("event".into(), Value::String(kind.to_owned()));
        let v = Value::Object(fields);
        self.subscribers.retain(|(_, w)| send_line(w, &v).is_ok());
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
                    json!({"mode": at.mode.name(), "prog_id": at.prog_id, "owner": "xpgmd",
                           "program": xpgm_ebpf::abi::PROGRAM_NAME, "counters": counters})
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
        let m = &mut self.members;
        match op {
            "join" if sources.is_empty() => m.join(i, group, None).map_err(mcast_err)?,
            "join" => {
                // All or nothing: undo the sources already joined on failure.
                for (n, s) in sources.iter().enumerate() {
                    if let Err(e) = m.join(i, group, Some(*s)) {
                        for d in sources.iter().take(n) {
                            let _ = m.leave(i, group, Some(*d));
                        }
                        return Err(mcast_err(e));
                    }
                }
            }
            "leave" if sources.len() <= 1 => m
                .leave(i, group, sources.first().copied())
                .map_err(mcast_err)?,
            "block" | "unblock" if sources.len() != 1 => {
                return Err(ApiError::new(
                    "bad_request",
                    format!("{op} needs exactly one \"source\""),
                ));
            }
            "block" => m.block(i, group, sources[0]).map_err(mcast_err)?,
            "unblock" => m.unblock(i, group, sources[0]).map_err(mcast_err)?,
            _ => {
                return Err(ApiError::new(
                    "bad_request",
                    format!("{op} takes at most one source"),
                ));
            }
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
            "events" => {
                conn.long_lived = true;
                if !self.subscribers.iter().any(|(id, _)| *id == conn.id) {
                    self.subscribers.push((conn.id, conn.writer.clone()));
                }
                Ok(obj(json!({"subscribed": true})))
            }
            _ => Err(ApiError::new("unknown_op", format!("unknown op {op:?}"))),
        }
    }

    fn disconnected(&mut self, conn: &Conn) {
        self.subscribers.retain(|(id, _)| *id != conn.id);
    }
}

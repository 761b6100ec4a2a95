//! xpgmctl: command line for xpgmd.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};
use xpgm_control::client::Client;

const USAGE: &str = "usage: xpgmctl [--socket PATH] [--json] COMMAND
commands:
  ping
  interfaces
  attach IF [--mode auto|native|generic] [--force]
  detach IF [--force]
  join IF GROUP [--source S ...]
  leave IF GROUP [--source S]
  block IF GROUP SOURCE
  unblock IF GROUP SOURCE
  groups [--limit N] [--cursor C]
  sessions
  flows
  steering
  events
  top [--interval MS] [--once] [--stats-dir DIR]   (no xpgmd needed)
socket: --socket, else $XPGM_SOCKET, else /run/xpgm/xpgmd.sock
stats:  --stats-dir, else $XPGM_STATS_DIR, else /dev/shm/xpgm-stats";

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xpgmctl: {e:#}");
            ExitCode::from(2)
        }
    }
}

struct Opts {
    json: bool,
    positional: Vec<String>,
    mode: Option<String>,
    force: bool,
    sources: Vec<String>,
    limit: Option<u64>,
    cursor: Option<String>,
    interval_ms: Option<u64>,
    once: bool,
    stats_dir: Option<PathBuf>,
}

fn run() -> Result<ExitCode> {
    let mut args = std::env::args().skip(1);
    let mut socket: Option<PathBuf> = None;
    let mut o = Opts {
        json: false,
        positional: Vec::new(),
        mode: None,
        force: false,
        sources: Vec::new(),
        limit: None,
        cursor: None,
        interval_ms: None,
        once: false,
        stats_dir: None,
    };
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--socket" => socket = Some(PathBuf::from(val("--socket")?)),
            "--json" => o.json = true,
            "--mode" => o.mode = Some(val("--mode")?),
            "--force" => o.force = true,
            "--source" => o.sources.push(val("--source")?),
            "--limit" => o.limit = Some(val("--limit")?.parse().context("--limit")?),
            "--cursor" => o.cursor = Some(val("--cursor")?),
            "--interval" => o.interval_ms = Some(val("--interval")?.parse().context("--interval")?),
            "--once" => o.once = true,
            "--stats-dir" => o.stats_dir = Some(PathBuf::from(val("--stats-dir")?)),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            s if s.starts_with("--") => bail!("unknown option {s}\n{USAGE}"),
            _ => o.positional.push(a),
        }
    }
    let Some(cmd) = o.positional.first().cloned() else {
        bail!("{USAGE}");
    };
    if cmd == "top" {
        return top(&o);
    }
    let path = xpgm_control::socket_path(socket.as_deref());
    let mut c = Client::connect(&path)?;
    let p = |i: usize, what: &str| -> Result<String> {
        o.positional
            .get(i)
            .cloned()
            .with_context(|| format!("{cmd}: missing {what}\n{USAGE}"))
    };
    let mut args = Map::new();
    match cmd.as_str() {
        "ping" | "interfaces" | "sessions" | "flows" | "steering" => {}
        "attach" | "detach" => {
            args.insert("interface".into(), json!(p(1, "IF")?));
            if let Some(m) = &o.mode {
                args.insert("mode".into(), json!(m));
            }
            args.insert("force".into(), json!(o.force));
        }
        "join" | "leave" => {
            args.insert("interface".into(), json!(p(1, "IF")?));
            args.insert("group".into(), json!(p(2, "GROUP")?));
            if !o.sources.is_empty() {
                args.insert("sources".into(), json!(o.sources));
            }
        }
        "block" | "unblock" => {
            args.insert("interface".into(), json!(p(1, "IF")?));
            args.insert("group".into(), json!(p(2, "GROUP")?));
            args.insert("source".into(), json!(p(3, "SOURCE")?));
        }
        "groups" => return groups(&mut c, &o),
        "events" => return events(&mut c, &o),
        other => bail!("unknown command {other}\n{USAGE}"),
    }
    let reply = c.request(&cmd, args)?;
    finish(&cmd, &reply, o.json)
}

fn finish(cmd: &str, reply: &Value, json: bool) -> Result<ExitCode> {
    let ok = reply.get("ok") == Some(&Value::Bool(true));
    if json {
        println!("{reply}");
    } else if ok {
        print_human(cmd, reply);
    }
    if !ok {
        let e = reply.get("error");
        let code = e
            .and_then(|e| e.get("code"))
            .and_then(Value::as_str)
            .unwrap_or("?");
        let msg = e
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .unwrap_or("");
        eprintln!("xpgmctl: {cmd}: {code}: {msg}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn s(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(x) => x.to_string(),
    }
}

fn print_human(cmd: &str, r: &Value) {
    match cmd {
        "interfaces" => {
            println!(
                "{:<16} {:>5} {:<5} {:>6}  {:<28} {:<8} {:<8} {:>6}  ADDRESSES",
                "NAME", "INDEX", "STATE", "QUEUES", "XDP", "MODE", "OWNER", "PROG"
            );
            for i in r
                .get("interfaces")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let x = i.get("xdp").unwrap_or(&Value::Null);
                let addrs: Vec<String> = i
                    .get("addresses")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str().map(str::to_owned))
                    .collect();
                let (attached, mode, owner, prog) = if x.is_null() {
                    (
                        "-".to_owned(),
                        "-".to_owned(),
                        "-".to_owned(),
                        "-".to_owned(),
                    )
                } else {
                    (
                        s(x, "program"),
                        s(x, "mode"),
                        s(x, "owner"),
                        s(x, "prog_id"),
                    )
                };
                println!(
                    "{:<16} {:>5} {:<5} {:>6}  {:<28} {:<8} {:<8} {:>6}  {}",
                    s(i, "name"),
                    s(i, "index"),
                    s(i, "state"),
                    s(i, "queues"),
                    attached,
                    mode,
                    owner,
                    prog,
                    addrs.join(" ")
                );
                if let Some(c) = x.get("counters").and_then(Value::as_object) {
                    let parts: Vec<String> = c.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    println!("{:<16} counters: {}", "", parts.join(" "));
                }
            }
        }
        "groups" => {}
        "sessions" => {
            println!(
                "{:>4} {:>7} {:<8} {:<24} {:<20} {:>5} {:>5}  {:<10} {:<16} SOCKETS(if/queue/slot)",
                "ID", "PID", "ROLE", "TSI", "GROUP", "PORT", "UDP", "SEND-IF", "RECV-IFS"
            );
            for x in r
                .get("sessions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let list = |k: &str| -> Vec<String> {
                    x.get(k)
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .map(|v| match v {
                            Value::String(s) => s.clone(),
                            o => {
                                format!("{}/{}/{}", s(o, "interface"), s(o, "queue"), s(o, "slot"))
                            }
                        })
                        .collect()
                };
                println!(
                    "{:>4} {:>7} {:<8} {:<24} {:<20} {:>5} {:>5}  {:<10} {:<16} {}",
                    s(x, "session"),
                    s(x, "pid"),
                    s(x, "role"),
                    s(x, "tsi"),
                    s(x, "group"),
                    s(x, "port"),
                    s(x, "udp_port"),
                    s(x, "send_interface"),
                    list("interfaces").join(","),
                    list("sockets").join(" ")
                );
            }
        }
        "flows" => {
            println!(
                "{:<20} {:<20} {:>5} {:<10} {:>10} {:>12} {:>6} {:>7} {:>7}",
                "SOURCE",
                "GROUP",
                "PORT",
                "IN-IF",
                "PACKETS",
                "BYTES",
                "NAKS",
                "REPAIRS",
                "WRONG-IF"
            );
            for x in r
                .get("flows")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                println!(
                    "{:<20} {:<20} {:>5} {:<10} {:>10} {:>12} {:>6} {:>7} {:>7}",
                    s(x, "source"),
                    s(x, "group"),
                    s(x, "port"),
                    s(x, "interface"),
                    s(x, "packets"),
                    s(x, "bytes"),
                    s(x, "naks"),
                    s(x, "repairs"),
                    s(x, "wrong_interface")
                );
            }
        }
        "steering" => print_steering(r),
        _ => {
            let mut m = r.as_object().cloned().unwrap_or_default();
            m.remove("id");
            m.remove("ok");
            let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!("{cmd}: ok {}", parts.join(" "));
        }
    }
}

fn groups(c: &mut Client, o: &Opts) -> Result<ExitCode> {
    let mut cursor = o.cursor.clone();
    let mut all = Vec::new();
    loop {
        let mut args = Map::new();
        if let Some(l) = o.limit {
            args.insert("limit".into(), json!(l));
        }
        if let Some(cur) = &cursor {
            args.insert("cursor".into(), json!(cur));
        }
        let r = c.request("groups", args)?;
        if r.get("ok") != Some(&Value::Bool(true)) || o.json {
            // JSON output is one page per line; errors end the listing.
            let code = finish("groups", &r, o.json)?;
            if o.cursor.is_some() || r.get("ok") != Some(&Value::Bool(true)) {
                return Ok(code);
            }
        } else {
            all.extend(
                r.get("groups")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            );
        }
        // An explicit cursor asks for one page; otherwise walk them all.
        match r.get("next_cursor").and_then(Value::as_str) {
            Some(n) if o.cursor.is_none() => cursor = Some(n.to_owned()),
            _ => break,
        }
    }
    if !o.json {
        println!(
            "{:<16} {:<40} {:<8} {:>4}  SOURCES(refs)",
            "INTERFACE", "GROUP", "FILTER", "REFS"
        );
        for g in &all {
            let srcs: Vec<String> = g
                .get("sources")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|x| format!("{}({})", s(x, "source"), s(x, "refs")))
                .collect();
            println!(
                "{:<16} {:<40} {:<8} {:>4}  {}",
                s(g, "interface"),
                s(g, "group"),
                s(g, "filter"),
                s(g, "refs"),
                srcs.join(" ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn events(c: &mut Client, o: &Opts) -> Result<ExitCode> {
    let r = c.request("events", Map::new())?;
    if r.get("ok") != Some(&Value::Bool(true)) {
        return finish("events", &r, o.json);
    }
    c.set_read_timeout(None)?;
    loop {
        let v = c.read_message()?;
        if o.json {
            println!("{v}");
        } else {
            let mut m = v.as_object().cloned().unwrap_or_default();
            let kind = m
                .remove("event")
                .map(|e| s(&json!({"e": e}), "e"))
                .unwrap_or_default();
            let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!("{kind:<22} {}", parts.join(" "));
        }
    }
}

/// `xpgmctl top`: sessions on this host from the xpgm-stats files (no xpgmd needed).
fn top(o: &Opts) -> Result<ExitCode> {
    use xpgm_control::top;
    let dir = o.stats_dir.clone().unwrap_or_else(xpgm_stats::stats_dir);
    let interval = o
        .interval_ms
        .map_or(top::DEFAULT_INTERVAL, std::time::Duration::from_millis);
    if interval.is_zero() {
        bail!("--interval must be at least 1 ms");
    }
    let live = !o.once && !o.json && std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut prev = top::sample(&dir).with_context(|| format!("reading {}", dir.display()))?;
    loop {
        std::thread::sleep(interval);
        let cur = top::sample(&dir).with_context(|| format!("reading {}", dir.display()))?;
        if o.json {
            println!("{}", top::report_json(&prev, &cur));
        } else {
            if live {
                // Clear the screen and home the cursor.
                print!("\x1b[H\x1b[2J");
                println!(
                    "xpgmctl top  {}  every {} ms",
                    dir.display(),
                    interval.as_millis()
                );
            }
            print!("{}", top::report_table(&prev, &cur));
        }
        if o.once {
            return Ok(ExitCode::SUCCESS);
        }
        if !live {
            println!();
        }
        prev = cur;
    }
}

/// `steering`: one block per interface with the classifier attached.
fn print_steering(r: &Value) {
    for i in r
        .get("interfaces")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        println!("{} (ifindex {})", s(i, "interface"), s(i, "ifindex"));
        if let Some(e) = i.get("error").filter(|e| !e.is_null()) {
            println!("  error reading the steering map: {e}");
        }
        let entries: Vec<&Value> = i
            .get("steering")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .collect();
        println!("  steering entries: {}", entries.len());
        for x in entries {
            println!(
                "    queue {} {:<10} {}:{} -> slot {} (session {}, pid {})",
                s(x, "queue"),
                s(x, "direction"),
                s(x, "address"),
                s(x, "port"),
                s(x, "slot"),
                s(x, "session"),
                s(x, "pid")
            );
        }
        let slots: Vec<&Value> = i
            .get("slots")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .collect();
        println!("  XSKMAP slots in use: {}", slots.len());
        for x in slots {
            println!(
                "    slot {} queue {} (session {}, pid {})",
                s(x, "slot"),
                s(x, "queue"),
                s(x, "session"),
                s(x, "pid")
            );
        }
        if let Some(e) = i.get("udp_ports_error").filter(|e| !e.is_null()) {
            println!("  error reading the UDP port map: {e}");
        }
        let ports: Vec<&Value> = i
            .get("udp_ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .collect();
        println!("  UDP encapsulation ports: {}", ports.len());
        for x in ports {
            let users: Vec<String> = x
                .get("sessions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|u| format!("session {} pid {}", s(u, "session"), s(u, "pid")))
                .collect();
            let default = if x.get("default") == Some(&Value::Bool(true)) {
                " default"
            } else {
                ""
            };
            println!(
                "    udp {}{default} ({})",
                s(x, "port"),
                if users.is_empty() {
                    "no session".to_owned()
                } else {
                    users.join(", ")
                }
            );
        }
    }
}

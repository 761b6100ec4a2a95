//! xpgmd: the xpgm control process.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use xpgm_control::daemon::{Daemon, DaemonConfig};
use xpgm_control::netlink::LinkMonitor;
use xpgm_control::server::{self, ServerConfig};

const USAGE: &str = "usage: xpgmd [--socket PATH] [--group NAME|GID] [--max-clients N] \
[--idle-timeout SECS] [--udp-ports UCAST,MCAST] [--metrics-listen HOST:PORT [--metrics-allow-remote]]
socket: --socket, else $XPGM_SOCKET, else /run/xpgm/xpgmd.sock
udp-ports: default UDP encapsulation ports kept in every classifier's port map (default 3055,3056;
         0 = none); a session registering its own \"udp_port\" adds that port while it lives
metrics: GET /metrics (Prometheus text) of the sessions in $XPGM_STATS_DIR, else /dev/shm/xpgm-stats;
         loopback addresses only unless --metrics-allow-remote";

fn group_id(s: &str) -> Result<u32> {
    if let Ok(g) = s.parse() {
        return Ok(g);
    }
    let etc = std::fs::read_to_string("/etc/group").context("reading /etc/group")?;
    for l in etc.lines() {
        let mut f = l.split(':');
        if f.next() == Some(s)
            && let Some(g) = f.nth(1).and_then(|g| g.parse().ok())
        {
            return Ok(g);
        }
    }
    bail!("no group named {s:?}")
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut socket = None;
    let mut group = None;
    let mut scfg_max = None;
    let mut idle = None;
    let mut dcfg = DaemonConfig::default();
    let mut metrics_listen: Option<String> = None;
    let mut metrics_allow_remote = false;
    while let Some(a) = args.next() {
        let mut val = |n: &str| args.next().with_context(|| format!("{n} needs a value"));
        match a.as_str() {
            "--socket" => socket = Some(PathBuf::from(val("--socket")?)),
            "--group" => group = Some(group_id(&val("--group")?)?),
            "--max-clients" => {
                scfg_max = Some(val("--max-clients")?.parse().context("--max-clients")?)
            }
            "--idle-timeout" => {
                idle = Some(Duration::from_secs(
                    val("--idle-timeout")?.parse().context("--idle-timeout")?,
                ))
            }
            "--udp-ports" => {
                let v = val("--udp-ports")?;
                let (u, m) = v.split_once(',').context("--udp-ports UCAST,MCAST")?;
                dcfg.classifier.udp_ucast_port = u.parse().context("--udp-ports")?;
                dcfg.classifier.udp_mcast_port = m.parse().context("--udp-ports")?;
            }
            "--metrics-listen" => metrics_listen = Some(val("--metrics-listen")?),
            "--metrics-allow-remote" => metrics_allow_remote = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            _ => bail!("unknown argument {a}\n{USAGE}"),
        }
    }
    let mut scfg = ServerConfig::new(xpgm_control::socket_path(socket.as_deref()));
    scfg.group = group;
    if let Some(m) = scfg_max {
        scfg.max_clients = m;
    }
    if let Some(i) = idle {
        scfg.idle_timeout = i;
    }

    // Metrics first: a bad address fails before anything is set up.
    let metrics = match &metrics_listen {
        Some(a) => {
            let addr = xpgm_control::metrics::listen_addr(a, metrics_allow_remote)
                .map_err(anyhow::Error::msg)?;
            let l = std::net::TcpListener::bind(addr)
                .with_context(|| format!("binding metrics listener {addr}"))?;
            Some(l)
        }
        None => None,
    };
    if let Some(l) = metrics {
        let addr = l.local_addr().context("metrics listener address")?;
        xpgm_control::metrics::spawn(l, xpgm_stats::stats_dir())
            .context("spawning metrics listener")?;
        eprintln!("xpgmd: metrics on http://{addr}/metrics");
    }

    let mut daemon = Daemon::new(dcfg);
    for line in daemon.cleanup_stale() {
        eprintln!("xpgmd: {line}");
    }
    let listener =
        server::bind(&scfg).with_context(|| format!("binding {}", scfg.socket.display()))?;
    eprintln!("xpgmd: listening on {}", scfg.socket.display());
    let daemon = Arc::new(Mutex::new(daemon));
    let stop = Arc::new(AtomicBool::new(false));
    xpgm_control::sys::install_termination_handlers().context("signal handlers")?;
    let st = stop.clone();
    std::thread::Builder::new()
        .name("xpgmd-signals".into())
        .spawn(move || {
            while !xpgm_control::sys::terminate_requested() {
                std::thread::sleep(Duration::from_millis(50));
            }
            st.store(true, std::sync::atomic::Ordering::Relaxed);
        })
        .context("spawning signal watcher")?;

    // Link watcher: interface up/down/removal events and cleanup.
    let d = daemon.clone();
    let mut mon = LinkMonitor::open(Duration::from_millis(500)).context("netlink link monitor")?;
    std::thread::Builder::new()
        .name("xpgmd-links".into())
        .spawn(move || {
            loop {
                match mon.poll() {
                    Ok(evs) => {
                        for ev in evs {
                            if let Ok(mut d) = d.lock() {
                                d.link_event(ev);
                            }
                        }
                    }
                    Err(e) => {
                        eprintln!("xpgmd: link monitor: {e}");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            }
        })
        .context("spawning link monitor")?;

    // Flow watcher: new sources and packets on the wrong interface.
    let d = daemon.clone();
    std::thread::Builder::new()
        .name("xpgmd-flows".into())
        .spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(500));
                if let Ok(mut d) = d.lock() {
                    d.poll_flows();
                }
            }
        })
        .context("spawning flow watcher")?;

    let socket = scfg.socket.clone();
    server::serve(listener, daemon.clone(), Arc::new(scfg), stop)?;
    // Orderly exit: remove the socket, detach classifiers, drop memberships
    // (dropping the daemon closes their sockets).
    let _ = std::fs::remove_file(&socket);
    if let Ok(mut d) = daemon.lock() {
        for line in d.shutdown() {
            eprintln!("xpgmd: {line}");
        }
    }
    eprintln!("xpgmd: stopped");
    Ok(())
}

//! Shared by the end-to-end tests (`e2e_socket.rs`, `e2e_xdp.rs`): a topology from
//! `scripts/topology` torn down on drop, `xpgm` processes in its namespaces killed on
//! drop, and small helpers for their JSON reports.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// One topology at a time: the tests share two cores.
pub static SERIAL: Mutex<()> = Mutex::new(());

/// `name` from the environment as a number, or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The repository's top directory.
pub fn root_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The integer `k` of a JSON report.
pub fn u(v: &Value, k: &str) -> u64 {
    v.get(k)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no integer '{k}' in {v}"))
}

/// A topology (`scripts/topology up NAME`) that is torn down when dropped, also when
/// the test panics.
pub struct Net {
    pub name: String,
}

impl Net {
    /// Builds topology `name` (a leftover of that name is removed first).
    pub fn up(name: String, receivers: u32, loss: &str) -> Net {
        Net::up_lines(name, receivers, loss, 1)
    }

    /// Like [`Net::up`] with `lines` switches (`--lines`): line 2 is a second switch
    /// and a second interface, `eth1`, on every host, with the same loss drawn
    /// independently.
    pub fn up_lines(name: String, receivers: u32, loss: &str, lines: u32) -> Net {
        let script = root_dir().join("scripts/topology");
        // A leftover from a crashed run with the same name would make `up` fail.
        let _ = Command::new(&script).args(["down", &name]).status();
        let st = Command::new(&script)
            .args([
                "up",
                &name,
                "--receivers",
                &receivers.to_string(),
                "--loss",
                loss,
                "--lines",
                &lines.to_string(),
            ])
            .status()
            .expect("run scripts/topology");
        assert!(st.success(), "scripts/topology up {name} failed");
        Net { name }
    }

    /// `scripts/topology counters NAME --json`: packets each switch port's loss rule
    /// dropped, `{"sw": {PORT: {"dropped": N}}, "sw2": {...}}`.
    pub fn counters(&self) -> Value {
        let out = Command::new(root_dir().join("scripts/topology"))
            .args(["counters", &self.name, "--json"])
            .output()
            .expect("run scripts/topology counters");
        assert!(out.status.success(), "topology counters: {out:?}");
        serde_json::from_slice(&out.stdout).expect("topology counters JSON")
    }

    /// Packets the loss rules of switch `sw` (`sw`, `sw2`) dropped, all ports.
    pub fn dropped(&self, sw: &str) -> u64 {
        let c = self.counters();
        let ports = c
            .get(sw)
            .and_then(Value::as_object)
            .unwrap_or_else(|| panic!("no switch {sw} in {c}"));
        ports.values().map(|p| u(p, "dropped")).sum()
    }

    /// The sender host's namespace.
    pub fn tx(&self) -> String {
        format!("{}-tx", self.name)
    }

    /// Receiver host `k`'s namespace (from 1).
    pub fn rx(&self, k: u32) -> String {
        format!("{}-rx{k}", self.name)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = Command::new(root_dir().join("scripts/topology"))
            .args(["down", &self.name])
            .status();
    }
}

/// A running `xpgm` in a namespace, killed if still running when dropped.
pub struct Proc {
    child: Child,
    what: String,
}

impl Proc {
    /// Starts `xpgm ARGS` in `ns`; `xpgmd_socket` is passed as `XPGM_SOCKET`.
    pub fn spawn(ns: &str, args: &[&str], xpgmd_socket: Option<&Path>) -> Proc {
        let env: Vec<(&str, &Path)> = xpgmd_socket
            .map(|s| ("XPGM_SOCKET", s))
            .into_iter()
            .collect();
        Proc::spawn_env(ns, args, &env)
    }

    /// Like [`Proc::spawn`], with environment variables set for the process.
    pub fn spawn_env(ns: &str, args: &[&str], env: &[(&str, &Path)]) -> Proc {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_xpgm")])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn xpgm");
        Proc {
            child,
            what: format!("{ns}: xpgm {}", args.join(" ")),
        }
    }

    /// The process's pid.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits (at most `limit`, then panics), returns (status ok, stdout, stderr).
    pub fn finish(self, limit: Duration) -> (bool, String, String) {
        let (_, ok, out, err) = self.wait(limit, false);
        (ok, out, err)
    }

    /// Like [`Proc::finish`], but kills it after `limit` instead of panicking:
    /// (exited by itself, status ok, stdout, stderr).
    pub fn finish_or_kill(self, limit: Duration) -> (bool, bool, String, String) {
        self.wait(limit, true)
    }

    fn wait(mut self, limit: Duration, kill: bool) -> (bool, bool, String, String) {
        let deadline = Instant::now() + limit;
        let mut exited = true;
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                break st;
            }
            if Instant::now() >= deadline {
                assert!(kill, "{} still running after {limit:?}", self.what);
                exited = false;
                let _ = self.child.kill();
                break self.child.wait().expect("wait");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            o.read_to_string(&mut out).expect("stdout");
        }
        if let Some(mut e) = self.child.stderr.take() {
            e.read_to_string(&mut err).expect("stderr");
        }
        (exited, status.success(), out, err)
    }

    /// Waits (at most `limit`) and parses the one JSON object printed on stdout.
    pub fn json(self, limit: Duration) -> Value {
        let what = self.what.clone();
        let (ok, out, err) = self.finish(limit);
        let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| {
            panic!("{what} (exit ok: {ok}) printed no JSON ({e}): stdout {out:?} stderr {err:?}")
        });
        eprintln!("{what}: {v}");
        v
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A receiver report of every message `expect` once, in order, from index 0: nothing
/// unrecoverable, duplicated, out of order, missing or corrupt.
pub fn assert_clean_run(v: &Value, expect: u64) {
    assert_eq!(u(v, "received"), expect, "received: {v}");
    for k in [
        "unrecoverable",
        "duplicates",
        "out_of_order",
        "index_gaps",
        "corrupt",
    ] {
        assert_eq!(u(v, k), 0, "{k}: {v}");
    }
}

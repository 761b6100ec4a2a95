//! A/B lines: one session over several interfaces at once (docs/transport.md "A/B
//! lines"). [`Lines`] holds one datapath per line (kernel sockets confined to their
//! interface with `SO_BINDTODEVICE`, or an AF_XDP socket per interface) and is itself a
//! [`Datapath`]: it tags every packet received with its line, sends each packet on the
//! lines the engine names, and waits on all of them in one `poll(2)`.
//!
//! A line whose transport fails (a send or receive error, its interface removed or
//! renumbered) is closed and reopened every [`REOPEN_EVERY`] while the session carries
//! on with the others; the engine, which hears nothing on it meanwhile, reports it
//! down (`Event::LineDown`) and up again once its packets come back. A line's failure
//! never reaches the worker as an error, not even when every line has failed at once:
//! the session keeps reopening them (the receiver's engine meanwhile accounts for what
//! it misses as usual), because a market-data receiver wants its feed back, not an exit.

use std::os::fd::BorrowedFd;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};
use xpgm_core::line::LineSet;
use xpgm_core::source::Destination;
use xpgm_core::wire::{Nla, Tsi};

use super::{Datapath, LineStatus, Overruns, Role, RxCounters, SessionConfig};
use crate::Error;

/// How often a failed line is reopened, and how often each line's interface is
/// checked (still there, same index).
pub const REOPEN_EVERY: Duration = Duration::from_secs(1);

/// One line: its configuration and, while it works, its datapath.
struct Line {
    cfg: SessionConfig,
    dp: Option<Box<dyn Datapath>>,
    /// Interface index the line was opened on (0: not known).
    ifindex: u32,
    /// Next reopen attempt (failed line) or interface check (open line).
    next_check: std::time::Instant,
    failures: u64,
    reopened: u64,
    /// What the line's closed datapaths had counted (kept across reopenings).
    send_errors_before: u64,
    overruns_before: Overruns,
    rx_before: RxCounters,
    /// Last failure, for the message of the next one.
    last_error: Option<String>,
}

impl Line {
    /// An open line on `cfg.iface` (its index read now).
    fn new(cfg: SessionConfig, dp: Box<dyn Datapath>, now: std::time::Instant) -> Line {
        Line {
            ifindex: ifindex_now(&cfg.iface),
            cfg,
            dp: Some(dp),
            next_check: now + REOPEN_EVERY,
            failures: 0,
            reopened: 0,
            send_errors_before: 0,
            overruns_before: Overruns::default(),
            rx_before: RxCounters::default(),
            last_error: None,
        }
    }
}

impl core::fmt::Debug for Line {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Line")
            .field("iface", &self.cfg.iface)
            .field("open", &self.dp.is_some())
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

/// Several lines as one [`Datapath`] (see the module docs).
#[derive(Debug)]
pub struct Lines {
    lines: Vec<Line>,
    role: Role,
    /// The source's TSI once announced (a reopened AF_XDP line registers it again).
    tsi: Option<Tsi>,
    /// Our address on line 0 as first opened (the engine's NLA never changes).
    local: Nla,
}

fn add_overruns(a: Overruns, b: Overruns) -> Overruns {
    Overruns {
        xdp_rx_dropped: a.xdp_rx_dropped.saturating_add(b.xdp_rx_dropped),
        xdp_rx_ring_full: a.xdp_rx_ring_full.saturating_add(b.xdp_rx_ring_full),
        xdp_fill_ring_empty: a.xdp_fill_ring_empty.saturating_add(b.xdp_fill_ring_empty),
        socket_drops: a.socket_drops.saturating_add(b.socket_drops),
    }
}

fn add_rx(a: RxCounters, b: RxCounters) -> RxCounters {
    RxCounters {
        udp_checksum_bad_accepted: a
            .udp_checksum_bad_accepted
            .saturating_add(b.udp_checksum_bad_accepted),
        rejected_checksum: a.rejected_checksum.saturating_add(b.rejected_checksum),
        rejected_header: a.rejected_header.saturating_add(b.rejected_header),
        rejected_not_pgm: a.rejected_not_pgm.saturating_add(b.rejected_not_pgm),
        rejected_address: a.rejected_address.saturating_add(b.rejected_address),
    }
}

/// The interface index of `iface` now (0 if it does not exist).
fn ifindex_now(iface: &str) -> u32 {
    super::socket::interface_index(iface).unwrap_or(0)
}

impl Lines {
    /// Opens every line of `config` for `role`. Each must open now: a configuration
    /// naming an interface that does not exist (or has no address of the group's
    /// family) is an error, not a line that is down.
    pub fn open(config: &SessionConfig, role: Role) -> Result<Lines, Error> {
        config.validate()?;
        let now = std::time::Instant::now();
        let mut lines = Vec::new();
        for l in 0..config.line_count() {
            let Some(cfg) = config.line(l) else { break };
            let dp = super::open_line(&cfg, role, true).map_err(|e| match e {
                Error::UnknownInterface(_) | Error::NoAddress { .. } => e,
                e => Error::Config(format!("line {l} ({}): {e}", cfg.iface)),
            })?;
            lines.push(Line::new(cfg, dp, now));
        }
        let local = lines
            .first()
            .and_then(|l| l.dp.as_ref())
            .map(|d| d.local_nla())
            .ok_or_else(|| Error::Config("a session needs at least one line".into()))?;
        Ok(Lines {
            lines,
            role,
            tsi: None,
            local,
        })
    }

    /// Builds lines over datapaths opened by the caller (tests): line `i` is
    /// `dps[i]`, named after `config`'s interfaces; failed lines are reopened from
    /// `config` as [`Lines::open`] would.
    pub fn with_datapaths(
        config: &SessionConfig,
        role: Role,
        dps: Vec<Box<dyn Datapath>>,
    ) -> Result<Lines, Error> {
        config.validate()?;
        if dps.is_empty() || dps.len() != usize::from(config.line_count()) {
            return Err(Error::Config(format!(
                "{} datapaths for {} lines",
                dps.len(),
                config.line_count()
            )));
        }
        let now = std::time::Instant::now();
        let mut lines = Vec::new();
        for (l, dp) in dps.into_iter().enumerate() {
            let cfg = config
                .line(u8::try_from(l).unwrap_or(u8::MAX))
                .ok_or_else(|| Error::Config(format!("no line {l}")))?;
            let mut line = Line::new(cfg, dp, now);
            line.ifindex = 0;
            lines.push(line);
        }
        let local = lines
            .first()
            .and_then(|l| l.dp.as_ref())
            .map(|d| d.local_nla())
            .unwrap_or(Nla::V4(std::net::Ipv4Addr::UNSPECIFIED));
        Ok(Lines {
            lines,
            role,
            tsi: None,
            local,
        })
    }

    /// Closes line `l` after `cause` (it is reopened later).
    fn fail(&mut self, l: usize, cause: String) {
        let Some(line) = self.lines.get_mut(l) else {
            return;
        };
        if let Some(mut dp) = line.dp.take() {
            line.send_errors_before = line.send_errors_before.saturating_add(dp.send_errors());
            line.overruns_before = add_overruns(line.overruns_before, dp.overruns_now());
            line.rx_before = add_rx(line.rx_before, dp.rx_counters());
            line.failures += 1;
            eprintln!(
                "xpgm: line {l} ({}) failed: {cause}; the session carries on with the other \
                 lines and reopens this one every {} ms",
                line.cfg.iface,
                REOPEN_EVERY.as_millis()
            );
        }
        line.last_error = Some(cause);
        line.next_check = std::time::Instant::now() + REOPEN_EVERY;
    }

    /// Reopens failed lines and checks open lines' interfaces, where due.
    fn maintain(&mut self) {
        let now = std::time::Instant::now();
        for l in 0..self.lines.len() {
            let Some(line) = self.lines.get_mut(l) else {
                continue;
            };
            if now < line.next_check {
                continue;
            }
            line.next_check = now + REOPEN_EVERY;
            if line.dp.is_some() {
                // Removed, or removed and created again (a new index: the old sockets'
                // memberships and bindings are gone with the old interface).
                let idx = ifindex_now(&line.cfg.iface);
                if line.ifindex != 0 && idx != line.ifindex {
                    let cause = if idx == 0 {
                        "interface removed".to_string()
                    } else {
                        format!("interface index changed from {} to {idx}", line.ifindex)
                    };
                    self.fail(l, cause);
                }
                continue;
            }
            let opened = super::open_line(&line.cfg, self.role, true).and_then(|mut dp| {
                if let Some(tsi) = self.tsi {
                    dp.start_source(tsi)?;
                }
                Ok(dp)
            });
            match opened {
                Ok(dp) => {
                    line.ifindex = ifindex_now(&line.cfg.iface);
                    line.dp = Some(dp);
                    line.reopened += 1;
                    eprintln!("xpgm: line {l} ({}) reopened", line.cfg.iface);
                }
                Err(e) => line.last_error = Some(e.to_string()),
            }
        }
    }
}

impl Datapath for Lines {
    fn recv_batch(&mut self, max: usize, f: &mut dyn FnMut(Nla, &[u8])) -> Result<usize, Error> {
        self.recv_lines(max, &mut |_, src, b| f(src, b))
    }

    fn recv_lines(
        &mut self,
        max: usize,
        f: &mut dyn FnMut(u8, Nla, &[u8]),
    ) -> Result<usize, Error> {
        self.maintain();
        let mut n = 0;
        let mut failed = None;
        for (l, line) in self.lines.iter_mut().enumerate() {
            let Some(dp) = line.dp.as_mut() else {
                continue;
            };
            let tag = u8::try_from(l).unwrap_or(u8::MAX);
            // Share the batch fairly: each line gets at least its part.
            let part = (max / 2).max(1);
            match dp.recv_batch(part, &mut |src, b| f(tag, src, b)) {
                Ok(k) => n += k,
                Err(e) => {
                    failed = Some((l, e.to_string()));
                    break;
                }
            }
        }
        if let Some((l, cause)) = failed {
            self.fail(l, cause);
        }
        Ok(n)
    }

    fn send(&mut self, dest: Destination, pgm: &[u8]) -> Result<(), Error> {
        self.send_lines(LineSet::ALL, dest, pgm)
    }

    fn send_lines(&mut self, lines: LineSet, dest: Destination, pgm: &[u8]) -> Result<(), Error> {
        let mut failed = None;
        for (l, line) in self.lines.iter_mut().enumerate() {
            let tag = u8::try_from(l).unwrap_or(u8::MAX);
            if !lines.contains(tag) {
                continue;
            }
            let Some(dp) = line.dp.as_mut() else {
                continue;
            };
            if let Err(e) = dp.send(dest, pgm) {
                failed = Some((l, e.to_string()));
            }
        }
        if let Some((l, cause)) = failed {
            self.fail(l, cause);
        }
        Ok(())
    }

    fn wait(
        &mut self,
        doorbell: Option<BorrowedFd<'_>>,
        timeout: Option<Duration>,
    ) -> Result<(), Error> {
        let mut cap: Option<Duration> = Some(REOPEN_EVERY);
        for line in &mut self.lines {
            if let Some(dp) = line.dp.as_mut()
                && let Some(c) = dp.prepare_wait()
            {
                cap = Some(cap.map_or(c, |x| x.min(c)));
            }
        }
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(self.lines.len() + 1);
        let mut blind = false;
        for line in &self.lines {
            if let Some(dp) = line.dp.as_ref() {
                match dp.readable_fd() {
                    Some(fd) => fds.push(PollFd::from_borrowed_fd(fd, PollFlags::IN)),
                    None => blind = true,
                }
            }
        }
        if let Some(bell) = doorbell {
            fds.push(PollFd::from_borrowed_fd(bell, PollFlags::IN));
        }
        if blind {
            // A line that cannot be polled: look at it again soon.
            cap = Some(cap.map_or(Duration::from_millis(1), |x| {
                x.min(Duration::from_millis(1))
            }));
        }
        let t = match (timeout, cap) {
            (Some(t), Some(c)) => Some(t.min(c)),
            (t, None) => t,
            (None, c) => c,
        };
        let ts = t.map(|d| Timespec {
            tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(d.subsec_nanos()),
        });
        match rustix::event::poll(&mut fds, ts.as_ref()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
            Err(e) => Err(Error::io("poll", e)),
        }
    }

    fn local_nla(&self) -> Nla {
        self.local
    }

    fn send_errors(&self) -> u64 {
        self.lines
            .iter()
            .map(|l| {
                l.send_errors_before
                    .saturating_add(l.dp.as_ref().map_or(0, |d| d.send_errors()))
            })
            .fold(0, u64::saturating_add)
    }

    fn start_source(&mut self, tsi: Tsi) -> Result<(), Error> {
        self.tsi = Some(tsi);
        for (l, line) in self.lines.iter_mut().enumerate() {
            if let Some(dp) = line.dp.as_mut() {
                dp.start_source(tsi)
                    .map_err(|e| Error::Config(format!("line {l} ({}): {e}", line.cfg.iface)))?;
            }
        }
        Ok(())
    }

    fn commit(&mut self) {
        for line in &mut self.lines {
            if let Some(dp) = line.dp.as_mut() {
                dp.commit();
            }
        }
    }

    fn has_control(&self) -> bool {
        self.lines
            .iter()
            .any(|l| l.dp.as_ref().is_some_and(|d| d.has_control()))
    }

    fn control_lost(&mut self) -> Option<String> {
        let mut cause = None;
        for (l, line) in self.lines.iter_mut().enumerate() {
            if let Some(c) = line.dp.as_mut().and_then(|d| d.control_lost()) {
                cause.get_or_insert(format!("line {l} ({}): {c}", line.cfg.iface));
            }
        }
        cause
    }

    fn reconnect_control(&mut self) -> Result<bool, Error> {
        let mut all = true;
        for line in &mut self.lines {
            if let Some(dp) = line.dp.as_mut() {
                all &= dp.reconnect_control()?;
            }
        }
        Ok(all)
    }

    fn overruns(&mut self) -> Overruns {
        let mut o = Overruns::default();
        for line in &mut self.lines {
            let now = line.dp.as_mut().map(|d| d.overruns()).unwrap_or_default();
            o = add_overruns(o, add_overruns(line.overruns_before, now));
        }
        o
    }

    fn overruns_now(&mut self) -> Overruns {
        let mut o = Overruns::default();
        for line in &mut self.lines {
            let now = line
                .dp
                .as_mut()
                .map(|d| d.overruns_now())
                .unwrap_or_default();
            o = add_overruns(o, add_overruns(line.overruns_before, now));
        }
        o
    }

    fn rx_counters(&self) -> RxCounters {
        self.lines.iter().fold(RxCounters::default(), |acc, l| {
            let now = l.dp.as_ref().map(|d| d.rx_counters()).unwrap_or_default();
            add_rx(acc, add_rx(l.rx_before, now))
        })
    }

    fn lines(&self) -> u8 {
        u8::try_from(self.lines.len()).unwrap_or(u8::MAX)
    }

    fn line_status(&self, line: u8) -> Option<LineStatus> {
        let l = self.lines.get(usize::from(line))?;
        Some(LineStatus {
            open: l.dp.is_some(),
            failures: l.failures,
            reopened: l.reopened,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A line that replays queued packets and records what is sent on it; `broken`
    /// makes its next send and receive fail.
    #[derive(Debug, Default)]
    struct Fake {
        rx: VecDeque<(Nla, Vec<u8>)>,
        sent: Arc<Mutex<Vec<Vec<u8>>>>,
        broken: Arc<Mutex<bool>>,
        send_errors: u64,
    }

    impl Datapath for Fake {
        fn recv_batch(
            &mut self,
            max: usize,
            f: &mut dyn FnMut(Nla, &[u8]),
        ) -> Result<usize, Error> {
            if *self.broken.lock().unwrap() {
                return Err(Error::Config("receive failed".into()));
            }
            let mut n = 0;
            while n < max {
                let Some((src, b)) = self.rx.pop_front() else {
                    break;
                };
                f(src, &b);
                n += 1;
            }
            Ok(n)
        }
        fn send(&mut self, _: Destination, pgm: &[u8]) -> Result<(), Error> {
            if *self.broken.lock().unwrap() {
                return Err(Error::Config("send failed".into()));
            }
            self.sent.lock().unwrap().push(pgm.to_vec());
            Ok(())
        }
        fn wait(&mut self, _: Option<BorrowedFd<'_>>, _: Option<Duration>) -> Result<(), Error> {
            Ok(())
        }
        fn local_nla(&self) -> Nla {
            Nla::V4("10.1.0.1".parse().unwrap())
        }
        fn send_errors(&self) -> u64 {
            self.send_errors
        }
    }

    fn config() -> SessionConfig {
        // Interfaces that do not exist here: a failed line is never reopened.
        let mut c = SessionConfig::new("xpgm-no-a", "239.192.7.8".parse().unwrap());
        c.extra_ifaces = vec!["xpgm-no-b".into()];
        c
    }

    fn nla(s: &str) -> Nla {
        Nla::V4(s.parse().unwrap())
    }

    #[test]
    fn packets_are_tagged_with_their_line_and_sent_on_the_lines_named() {
        let (a, b) = (Fake::default(), Fake::default());
        let (sent_a, sent_b) = (a.sent.clone(), b.sent.clone());
        let mut a = a;
        let mut b = b;
        a.rx.push_back((nla("10.77.0.1"), vec![1]));
        b.rx.push_back((nla("10.78.0.1"), vec![2]));
        b.rx.push_back((nla("10.78.0.1"), vec![3]));
        let mut l =
            Lines::with_datapaths(&config(), Role::Receiver, vec![Box::new(a), Box::new(b)])
                .unwrap();
        assert_eq!(l.lines(), 2);
        let mut got = Vec::new();
        let n = l
            .recv_lines(64, &mut |line, src, bytes| {
                got.push((line, src, bytes.to_vec()))
            })
            .unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            got,
            vec![
                (0, nla("10.77.0.1"), vec![1]),
                (1, nla("10.78.0.1"), vec![2]),
                (1, nla("10.78.0.1"), vec![3]),
            ]
        );
        l.send_lines(LineSet::one(1), Destination::Group, &[9])
            .unwrap();
        l.send_lines(LineSet::ALL, Destination::Group, &[8])
            .unwrap();
        l.send_lines(LineSet::one(0), Destination::Group, &[7])
            .unwrap();
        assert_eq!(*sent_a.lock().unwrap(), vec![vec![8], vec![7]]);
        assert_eq!(*sent_b.lock().unwrap(), vec![vec![9], vec![8]]);
    }

    #[test]
    fn a_failed_line_is_closed_and_counted_and_the_others_carry_on() {
        let (a, mut b) = (Fake::default(), Fake::default());
        let broken_a = a.broken.clone();
        let sent_b = b.sent.clone();
        b.send_errors = 3;
        let mut l =
            Lines::with_datapaths(&config(), Role::Source, vec![Box::new(a), Box::new(b)]).unwrap();
        *broken_a.lock().unwrap() = true;
        // Neither the send nor the receive error reaches the caller.
        l.send_lines(LineSet::ALL, Destination::Group, &[1])
            .unwrap();
        assert_eq!(l.recv_lines(64, &mut |_, _, _| {}).unwrap(), 0);
        let st = l.line_status(0).unwrap();
        assert!(!st.open, "{st:?}");
        assert_eq!(st.failures, 1);
        assert!(l.line_status(1).unwrap().open);
        assert_eq!(l.line_status(2), None);
        // Line 1 still gets everything; line 0 nothing more (it is closed).
        l.send_lines(LineSet::ALL, Destination::Group, &[2])
            .unwrap();
        assert_eq!(*sent_b.lock().unwrap(), vec![vec![1], vec![2]]);
        // Counters of the closed line are kept.
        assert_eq!(l.send_errors(), 3);
        // Waiting with a line that cannot be polled returns (does not block forever).
        l.wait(None, None).unwrap();
    }

    #[test]
    fn a_configuration_with_too_many_or_repeated_interfaces_is_refused() {
        let mut c = config();
        c.extra_ifaces = vec!["b".into(), "c".into(), "d".into(), "e".into()];
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("at most 4 lines"), "{e}");
        c.extra_ifaces = vec!["xpgm-no-a".into()];
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("given twice"), "{e}");
        c.extra_ifaces = vec![String::new()];
        assert!(c.validate().is_err());
        let e = Lines::with_datapaths(&config(), Role::Source, vec![Box::new(Fake::default())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 datapaths for 2 lines"), "{e}");
        // Each line's configuration names its own interface, alone.
        let l1 = config().line(1).unwrap();
        assert_eq!((l1.iface.as_str(), l1.extra_ifaces.len()), ("xpgm-no-b", 0));
        assert!(config().line(2).is_none());
    }
}

//! A tiny fake NAK-based protocol, so the network model, the event loop and the checks
//! can be tested without the real engines. Not PGM: 5-byte header (type, sqn), no
//! checksum, no windows beyond what a test needs. Allocates freely (test code).

#![allow(dead_code, reason = "each test binary uses a different part")]

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use xpgm_core::Instant;
use xpgm_core::receiver::{Event, ReceiverStats};
use xpgm_core::rng::Rng;
use xpgm_core::seq::Sqn;
use xpgm_core::source::{Destination, SendError, SourceStats, Transmit};
use xpgm_core::wire::{Nla, PacketType, Tsi};
use xpgm_sim::node::{Node, SimReceiver, SimSource};

const ODATA: u8 = b'O';
const RDATA: u8 = b'R';
const FIN: u8 = b'F';
const NCF: u8 = b'C';
const NAK: u8 = b'K';

fn write(buf: &mut [u8], t: u8, sqn: u32, payload: &[u8]) -> Option<usize> {
    let len = 5 + payload.len();
    let out = buf.get_mut(..len)?;
    out[0] = t;
    out[1..5].copy_from_slice(&sqn.to_be_bytes());
    out[5..].copy_from_slice(payload);
    Some(len)
}

fn read(bytes: &[u8]) -> Option<(u8, u32, &[u8])> {
    let t = *bytes.first()?;
    let sqn = u32::from_be_bytes(bytes.get(1..5)?.try_into().ok()?);
    Some((t, sqn, bytes.get(5..)?))
}

/// A source that keeps every message and repairs any NAKed one (NCF then RDATA).
#[derive(Debug, Default)]
pub struct FakeSource {
    pub base: u32,
    pub history: Vec<Vec<u8>>,
    pub out: VecDeque<(u8, u32)>,
    /// Most messages queued before `WouldBlock` (0 = unbounded).
    pub queue_limit: usize,
    /// Messages released per millisecond of virtual time (0 = all at once).
    pub per_ms: u64,
    pub last_release: Instant,
    pub closed: bool,
    pub fin_left: u32,
    pub fin_at: Option<Instant>,
    pub stats: SourceStats,
    pub send_ncf: bool,
}

impl FakeSource {
    pub fn new(base: u32) -> Self {
        FakeSource {
            base,
            send_ncf: true,
            ..FakeSource::default()
        }
    }
    fn queued_odata(&self) -> usize {
        self.out.iter().filter(|(t, _)| *t == ODATA).count()
    }
}

impl Node for FakeSource {
    fn handle_packet(&mut self, _now: Instant, _src: Nla, bytes: &[u8]) -> bool {
        let Some((NAK, sqn, _)) = read(bytes) else {
            self.stats.packets_ignored += 1;
            return false;
        };
        self.stats.naks_received += 1;
        let i = sqn.wrapping_sub(self.base) as usize;
        if i < self.history.len() {
            if self.send_ncf {
                self.out.push_back((NCF, sqn));
            }
            self.out.push_back((RDATA, sqn));
        } else {
            self.stats.naks_outside_window += 1;
        }
        true
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.fin_at.is_some_and(|t| t <= now) && self.fin_left > 0 {
            self.fin_left -= 1;
            self.out.push_back((FIN, 0));
            self.fin_at = (self.fin_left > 0).then(|| now + Duration::from_millis(100));
        }
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        let pos = self.out.iter().position(|(t, _)| {
            *t != ODATA
                || self.per_ms == 0
                || now >= self.last_release + Duration::from_micros(1000 / self.per_ms)
        });
        let (t, sqn) = self.out.remove(pos?)?;
        if t == ODATA && self.per_ms != 0 {
            self.last_release = now;
        }
        let end = self.base.wrapping_add(self.history.len() as u32);
        let (len, kind) = match t {
            ODATA | RDATA => {
                let i = sqn.wrapping_sub(self.base) as usize;
                let len = write(buf, t, sqn, &self.history[i])?;
                if t == ODATA {
                    self.stats.odata_sent += 1;
                    (len, PacketType::Odata)
                } else {
                    self.stats.rdata_sent += 1;
                    (len, PacketType::Rdata)
                }
            }
            NCF => {
                self.stats.ncf_sent += 1;
                (write(buf, NCF, sqn, &[])?, PacketType::Ncf)
            }
            _ => {
                self.stats.spm_sent += 1;
                (write(buf, FIN, end, &[])?, PacketType::Spm)
            }
        };
        Some(Transmit {
            len,
            dest: Destination::Group,
            kind,
            lines: xpgm_core::LineSet::ALL,
        })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let rate = (self.per_ms != 0 && self.queued_odata() > 0)
            .then(|| self.last_release + Duration::from_micros(1000 / self.per_ms));
        match (rate, self.fin_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl SimSource for FakeSource {
    fn send(&mut self, _now: Instant, apdu: &[u8]) -> Result<Sqn, SendError> {
        if self.closed {
            return Err(SendError::Closed);
        }
        if self.queue_limit != 0 && self.queued_odata() >= self.queue_limit {
            return Err(SendError::WouldBlock);
        }
        let sqn = self.base.wrapping_add(self.history.len() as u32);
        self.history.push(apdu.to_vec());
        self.out.push_back((ODATA, sqn));
        Ok(Sqn(sqn))
    }

    fn close(&mut self, now: Instant) {
        self.closed = true;
        self.fin_left = 20;
        self.fin_at = Some(now);
    }

    fn stats(&self) -> SourceStats {
        self.stats
    }
}

#[derive(Debug)]
enum Out {
    Data(u32, Vec<u8>),
    Lost(u32),
    End,
}

/// A receiver that NAKs every gap after a random back-off, retries, and gives up after
/// `max_tries` NAKs (reporting the sequence number unrecoverable).
#[derive(Debug)]
pub struct FakeReceiver {
    pub next: u32,
    pub fin: Option<u32>,
    pub buffered: BTreeMap<u32, Vec<u8>>,
    /// Missing sqn -> (deadline, NAKs sent).
    pub missing: BTreeMap<u32, (Instant, u32)>,
    pub lost: BTreeMap<u32, ()>,
    pub highest: Option<u32>,
    pub out: VecDeque<u32>,
    events: VecDeque<Out>,
    current: Vec<u8>,
    pub ended: bool,
    pub max_tries: u32,
    pub rng: Rng,
    pub stats: ReceiverStats,
    /// Data packets that arrived with a lower sqn than one already seen.
    pub reordered: u64,
}

impl FakeReceiver {
    pub fn new(base: u32, seed: u64) -> Self {
        FakeReceiver {
            next: base,
            fin: None,
            buffered: BTreeMap::new(),
            missing: BTreeMap::new(),
            lost: BTreeMap::new(),
            highest: None,
            out: VecDeque::new(),
            events: VecDeque::new(),
            current: Vec::new(),
            ended: false,
            max_tries: 5,
            rng: Rng::new(seed),
            stats: ReceiverStats::default(),
            reordered: 0,
        }
    }

    fn note_gap_up_to(&mut self, now: Instant, end: u32) {
        let start = match self.highest {
            Some(h) => h.wrapping_add(1),
            None => self.next,
        };
        let mut s = start;
        while Sqn(s).lt(Sqn(end)) {
            if Sqn(s).ge(Sqn(self.next)) && !self.buffered.contains_key(&s) {
                let backoff = Duration::from_micros(self.rng.below(10_000));
                self.missing.entry(s).or_insert((now + backoff, 0));
            }
            s = s.wrapping_add(1);
        }
        if end != start {
            self.highest = Some(end.wrapping_sub(1));
        }
    }

    fn advance(&mut self) {
        loop {
            if let Some(d) = self.buffered.remove(&self.next) {
                self.stats.delivered += 1;
                self.events.push_back(Out::Data(self.next, d));
            } else if self.lost.remove(&self.next).is_some() {
                self.stats.unrecoverable += 1;
                self.events.push_back(Out::Lost(self.next));
            } else {
                break;
            }
            self.next = self.next.wrapping_add(1);
        }
        if !self.ended && self.fin == Some(self.next) {
            self.ended = true;
            self.events.push_back(Out::End);
        }
    }
}

impl Node for FakeReceiver {
    fn handle_packet(&mut self, now: Instant, _src: Nla, bytes: &[u8]) -> bool {
        let Some((t, sqn, payload)) = read(bytes) else {
            self.stats.packets_ignored += 1;
            return false;
        };
        match t {
            ODATA | RDATA => {
                if t == ODATA {
                    self.stats.odata_received += 1;
                } else {
                    self.stats.rdata_received += 1;
                }
                if self.highest.is_some_and(|h| Sqn(sqn).lt(Sqn(h))) {
                    self.reordered += 1;
                }
                if Sqn(sqn).lt(Sqn(self.next)) || self.buffered.contains_key(&sqn) {
                    self.stats.duplicates += 1;
                    return true;
                }
                self.note_gap_up_to(now, sqn.wrapping_add(1));
                self.missing.remove(&sqn);
                self.buffered.insert(sqn, payload.to_vec());
                self.advance();
            }
            NCF => self.stats.ncf_received += 1,
            FIN => {
                self.stats.spm_received += 1;
                self.fin = Some(sqn);
                self.note_gap_up_to(now, sqn);
                self.advance();
            }
            _ => {
                self.stats.packets_ignored += 1;
                return false;
            }
        }
        true
    }

    fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<u32> = self
            .missing
            .iter()
            .filter(|(_, (t, _))| *t <= now)
            .map(|(s, _)| *s)
            .collect();
        for s in due {
            let Some(e) = self.missing.get_mut(&s) else {
                continue;
            };
            if e.1 >= self.max_tries {
                self.missing.remove(&s);
                self.lost.insert(s, ());
            } else {
                e.1 += 1;
                e.0 = now + Duration::from_millis(50);
                self.out.push_back(s);
            }
        }
        self.advance();
    }

    fn poll_transmit(&mut self, _now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        let s = self.out.pop_front()?;
        self.stats.naks_sent += 1;
        Some(Transmit {
            len: write(buf, NAK, s, &[])?,
            dest: Destination::Unicast(Nla::default()),
            kind: PacketType::Nak,
            lines: xpgm_core::LineSet::one(0),
        })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.missing.values().map(|(t, _)| *t).min()
    }
}

impl SimReceiver for FakeReceiver {
    fn poll_event(&mut self) -> Option<Event<'_>> {
        let tsi = Tsi::default();
        match self.events.pop_front()? {
            Out::Data(s, d) => {
                self.current = d;
                Some(Event::Data {
                    tsi,
                    sqn: Sqn(s),
                    data: &self.current,
                })
            }
            Out::Lost(s) => Some(Event::Unrecoverable {
                tsi,
                first: Sqn(s),
                count: 1,
            }),
            Out::End => Some(Event::SessionEnd { tsi }),
        }
    }

    fn stats(&self) -> ReceiverStats {
        self.stats
    }
}

/// Runs `cfg` with fake nodes; `tweak` may adjust the source and the receivers.
pub fn run_fake(
    cfg: &xpgm_sim::SimConfig,
    base: u32,
    tweak: impl FnOnce(&mut FakeSource, &mut [FakeReceiver]),
) -> xpgm_sim::Report {
    run_fake_nodes(cfg, base, tweak).0
}

/// As [`run_fake`], also returning the nodes.
pub fn run_fake_nodes(
    cfg: &xpgm_sim::SimConfig,
    base: u32,
    tweak: impl FnOnce(&mut FakeSource, &mut [FakeReceiver]),
) -> (xpgm_sim::Report, FakeSource, Vec<FakeReceiver>) {
    let mut src = FakeSource::new(base);
    let mut rxs: Vec<FakeReceiver> = (0..cfg.receivers)
        .map(|i| FakeReceiver::new(base, cfg.seed.wrapping_add(i as u64)))
        .collect();
    tweak(&mut src, &mut rxs);
    xpgm_sim::Simulation::new(cfg.clone(), src, rxs)
        .expect("valid config")
        .run_with_nodes()
}

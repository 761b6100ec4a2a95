//! The reader side: validate files (untrusted bytes), scan a directory, compute rates.
//!
//! Readers use `read(2)`, not a mapping: a file truncated or rewritten under us can
//! only make [`parse`] fail, never fault. Each counter is an aligned 8-byte word stored
//! atomically by the writer; a read races with the worker's stores only at word
//! granularity (a counter is either the old or the new value on x86-64 and aarch64,
//! whose kernels copy aligned words whole).

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::layout::{
    COUNTERS, GROUP_FIELD, HEADER_WORDS, IFACE_FIELD, Kind, LINE_AREA, LINE_IFACE_FIELD,
    LINE_WORDS, LINES, MAGIC, Role, TOTAL_BYTES, TOTAL_WORDS, TRANSPORT_FIELD, V1_TOTAL_WORDS,
    V2_TOTAL_WORDS, VERSION, line, state, w,
};
use crate::writer::label_safe;

/// Most directory entries [`scan`] looks at (bounded work and memory).
pub const MAX_FILES: usize = 4096;

/// Why a file is not a valid stats file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Wrong length.
    Length(usize),
    /// Wrong magic.
    Magic(u64),
    /// Unknown layout version.
    Version(u64),
    /// A header field is out of range (field name).
    Field(&'static str),
    /// The writer has not finished the header yet.
    NotReady,
}

impl core::fmt::Display for ParseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ParseError::Length(n) => write!(f, "length {n}, expected {TOTAL_BYTES}"),
            ParseError::Magic(m) => write!(f, "bad magic {m:#018x}"),
            ParseError::Version(v) => write!(f, "layout version {v}, expected {VERSION}"),
            ParseError::Field(n) => write!(f, "invalid field {n}"),
            ParseError::NotReady => write!(f, "header not yet written"),
        }
    }
}

impl std::error::Error for ParseError {}

/// One session's description and counters, as read from its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionStats {
    /// Writer pid.
    pub pid: u32,
    /// Writer process start time (ticks since boot).
    pub proc_start: u64,
    /// Session creation, Unix nanoseconds.
    pub created_unix_ns: u64,
    /// Source or receiver.
    pub role: Role,
    /// The session has ended (its file is about to be removed).
    pub closed: bool,
    /// Session number within the process.
    pub seq: u64,
    /// Transport name.
    pub transport: String,
    /// Interface.
    pub iface: String,
    /// Group address text.
    pub group: String,
    /// Data-destination port.
    pub dport: u16,
    /// UDP encapsulation port.
    pub udp_encap: Option<u16>,
    /// TSI bytes (GSI, then source port in network order); zeros for receivers.
    pub tsi: [u8; 8],
    /// Counter values, indexed as [`Role::counters`].
    pub counters: [u64; COUNTERS],
    /// Counters the writer published: counters are only ever appended to a role's
    /// table, so a segment from an older build has fewer; the rest read as absent.
    pub ncounters: usize,
    /// A/B lines (none for a session on one line, or a file of an older size).
    pub lines: Vec<LineStats>,
    /// The file it came from (set by [`scan`]).
    pub path: Option<PathBuf>,
}

/// One A/B line of a receiver, as read from its file (the layout's `line` record).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineStats {
    /// Interface name.
    pub iface: String,
    /// Data packets that came on the line, duplicates included.
    pub received: u64,
    /// Sequences the line brought first.
    pub won: u64,
    /// Sequences the line missed (another line or a repair brought them).
    pub lost: u64,
    /// The engine counts the line as up.
    pub up: bool,
    /// Times the line's transport failed.
    pub failures: u64,
}

impl SessionStats {
    /// Identity across samples: (pid, process start, session number).
    pub fn key(&self) -> (u32, u64, u64) {
        (self.pid, self.proc_start, self.seq)
    }

    /// `<pid>-<seq>`: the session's name in `xpgmctl top` and Prometheus labels.
    pub fn name(&self) -> String {
        format!("{}-{}", self.pid, self.seq)
    }

    /// TSI as OpenPGM prints it (`g.g.g.g.g.g.sport`), or `-` when unset.
    pub fn tsi_text(&self) -> String {
        if self.tsi == [0; 8] {
            return "-".into();
        }
        let [a, b, c, d, e, f, p0, p1] = self.tsi;
        format!("{a}.{b}.{c}.{d}.{e}.{f}.{}", u16::from_be_bytes([p0, p1]))
    }

    /// A counter by name (from this role's table).
    pub fn counter(&self, name: &str) -> Option<u64> {
        let d = self.role.counters().iter().find(|d| d.name == name)?;
        if d.index >= self.ncounters {
            return None;
        }
        self.counters.get(d.index).copied()
    }
}

fn word(bytes: &[u8], i: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(s) = bytes.get(i * 8..i * 8 + 8) {
        b.copy_from_slice(s);
    }
    u64::from_ne_bytes(b)
}

fn text(
    bytes: &[u8],
    (first, n): (usize, usize),
    name: &'static str,
) -> Result<String, ParseError> {
    let raw = bytes
        .get(first * 8..(first + n) * 8)
        .ok_or(ParseError::Field(name))?;
    let len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let (s, pad) = raw.split_at(len);
    if !s.iter().all(|&b| label_safe(b)) || pad.iter().any(|&b| b != 0) {
        return Err(ParseError::Field(name));
    }
    // All bytes are printable ASCII, hence valid UTF-8.
    Ok(s.iter().map(|&b| char::from(b)).collect())
}

/// Validates a stats file's bytes. Never panics, whatever the input.
pub fn parse(bytes: &[u8]) -> Result<SessionStats, ParseError> {
    // Today's size, or an earlier one (32 counters; 64 counters without line records).
    let words = bytes.len() / 8;
    if !bytes.len().is_multiple_of(8)
        || ![TOTAL_WORDS, V2_TOTAL_WORDS, V1_TOTAL_WORDS].contains(&words)
    {
        return Err(ParseError::Length(bytes.len()));
    }
    let magic = word(bytes, w::MAGIC);
    if magic != MAGIC {
        return Err(ParseError::Magic(magic));
    }
    let version = word(bytes, w::VERSION);
    if version != VERSION {
        return Err(ParseError::Version(version));
    }
    if word(bytes, w::TOTAL) != words as u64 {
        return Err(ParseError::Field("total"));
    }
    let closed = match word(bytes, w::STATE) {
        state::INIT => return Err(ParseError::NotReady),
        state::LIVE => false,
        state::CLOSED => true,
        _ => return Err(ParseError::Field("state")),
    };
    let pid = u32::try_from(word(bytes, w::PID))
        .ok()
        .filter(|&p| p > 0 && p <= i32::MAX as u32)
        .ok_or(ParseError::Field("pid"))?;
    let role = Role::from_code(word(bytes, w::ROLE)).ok_or(ParseError::Field("role"))?;
    let ports = word(bytes, w::PORTS);
    if ports >> 33 != 0 {
        return Err(ParseError::Field("ports"));
    }
    let dport = (ports & 0xffff) as u16;
    let encap_port = ((ports >> 16) & 0xffff) as u16;
    let udp_encap = if ports & (1 << 32) != 0 {
        Some(encap_port)
    } else if encap_port != 0 {
        return Err(ParseError::Field("ports"));
    } else {
        None
    };
    let n = word(bytes, w::NCOUNTERS);
    // An older writer publishes a prefix of today's table (counters are only
    // appended); a count beyond it comes from a newer, unknown layout.
    if n == 0 || n > role.counters().len() as u64 || n > (words - HEADER_WORDS) as u64 {
        return Err(ParseError::Field("counters"));
    }
    if (w::LINES + 1..HEADER_WORDS).any(|i| word(bytes, i) != 0) {
        return Err(ParseError::Field("reserved"));
    }
    let lines = parse_lines(bytes, words)?;
    let mut counters = [0u64; COUNTERS];
    for (k, c) in counters.iter_mut().enumerate().take(words - HEADER_WORDS) {
        *c = word(bytes, HEADER_WORDS + k);
    }
    Ok(SessionStats {
        pid,
        proc_start: word(bytes, w::PROC_START),
        created_unix_ns: word(bytes, w::CREATED),
        role,
        closed,
        seq: word(bytes, w::SEQ),
        transport: text(bytes, TRANSPORT_FIELD, "transport")?,
        iface: text(bytes, IFACE_FIELD, "iface")?,
        group: text(bytes, GROUP_FIELD, "group")?,
        dport,
        udp_encap,
        tsi: word(bytes, w::TSI).to_ne_bytes(),
        ncounters: n as usize,
        counters,
        lines,
        path: None,
    })
}

/// The line records: as many as word [`w::LINES`] says (0, or 2..=[`LINES`], and 0 in
/// files of the older sizes); unused records and reserved words must be zero.
fn parse_lines(bytes: &[u8], words: usize) -> Result<Vec<LineStats>, ParseError> {
    let n = word(bytes, w::LINES);
    let n = match usize::try_from(n) {
        Ok(0) => 0,
        Ok(n) if words == TOTAL_WORDS && (2..=LINES).contains(&n) => n,
        _ => return Err(ParseError::Field("lines")),
    };
    let mut out = Vec::with_capacity(n);
    for l in 0..LINES {
        let base = LINE_AREA + l * LINE_WORDS;
        if l >= n {
            if words == TOTAL_WORDS && (base..base + LINE_WORDS).any(|i| word(bytes, i) != 0) {
                return Err(ParseError::Field("line"));
            }
            continue;
        }
        let up = match word(bytes, base + line::UP) {
            0 => false,
            1 => true,
            _ => return Err(ParseError::Field("line")),
        };
        if word(bytes, base + line::RESERVED) != 0 {
            return Err(ParseError::Field("line"));
        }
        out.push(LineStats {
            iface: text(
                bytes,
                (base + LINE_IFACE_FIELD.0, LINE_IFACE_FIELD.1),
                "line iface",
            )?,
            received: word(bytes, base + line::RECEIVED),
            won: word(bytes, base + line::WON),
            lost: word(bytes, base + line::LOST),
            up,
            failures: word(bytes, base + line::FAILURES),
        });
    }
    Ok(out)
}

/// Start time (clock ticks since boot, field 22 of `/proc/<pid>/stat`) of process
/// `pid`. `NotFound` when there is no such process.
pub fn proc_start_time(pid: u32) -> io::Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces and parentheses: fields after the
    // last ')' start with field 3.
    let rest = s
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other("malformed /proc/pid/stat"))?;
    rest.split_whitespace()
        .nth(22 - 3)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| io::Error::other("malformed /proc/pid/stat"))
}

/// Whether process `pid`, started at `start`, still runs. A pid reused by another
/// process has a different start time. When `/proc` cannot tell (permissions), the
/// process counts as alive (nothing is removed on a guess).
pub fn pid_alive(pid: u32, start: u64) -> bool {
    match proc_start_time(pid) {
        Ok(s) => s == start,
        Err(e) => e.kind() != io::ErrorKind::NotFound,
    }
}

/// `<pid>-<start>-<seq>.stats` → (pid, start, seq).
fn parse_name(name: &str) -> Option<(u32, u64, u64)> {
    let stem = name.strip_suffix(".stats")?;
    let mut it = stem.split('-');
    let pid = it.next()?.parse().ok()?;
    let start = it.next()?.parse().ok()?;
    let seq = it.next()?.parse().ok()?;
    if it.next().is_some() || pid == 0 {
        return None;
    }
    Some((pid, start, seq))
}

/// What [`scan`] found.
#[derive(Clone, Debug, Default)]
pub struct Scan {
    /// Live sessions, sorted by (pid, session number).
    pub sessions: Vec<SessionStats>,
    /// Files that are not valid stats files (skipped, left alone).
    pub invalid: usize,
    /// Files of processes that no longer run.
    pub stale: usize,
    /// Stale files removed (when asked to).
    pub removed: usize,
}

/// Reads every `*.stats` file in `dir` (at most [`MAX_FILES`] entries). Invalid files
/// are counted and skipped; files whose name says they belong to a process that no
/// longer runs are stale, and removed when `remove_stale` is set (only the name and
/// `/proc` decide, so a crash during creation is cleaned up too). A missing directory
/// is an empty scan.
pub fn scan(dir: &Path, remove_stale: bool) -> io::Result<Scan> {
    let mut out = Scan::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for ent in entries.take(MAX_FILES) {
        let Ok(ent) = ent else { continue };
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.ends_with(".stats") {
            continue;
        }
        let Some((pid, start, seq)) = parse_name(name) else {
            out.invalid += 1;
            continue;
        };
        let path = ent.path();
        if !pid_alive(pid, start) {
            out.stale += 1;
            if remove_stale && std::fs::remove_file(&path).is_ok() {
                out.removed += 1;
            }
            continue;
        }
        // Regular files only (never follow a symlink planted in the directory).
        match std::fs::symlink_metadata(&path) {
            Ok(m)
                if m.file_type().is_file()
                    && [TOTAL_WORDS, V2_TOTAL_WORDS, V1_TOTAL_WORDS]
                        .iter()
                        .any(|&n| m.len() == n as u64 * 8) => {}
            _ => {
                out.invalid += 1;
                continue;
            }
        }
        let mut buf = [0u8; TOTAL_BYTES];
        let mut len = 0;
        let read = File::open(&path).and_then(|mut f| {
            // read_to_end without allocating: at most TOTAL_BYTES, then EOF.
            loop {
                match f.read(buf.get_mut(len..).unwrap_or_default())? {
                    0 => return Ok(()),
                    k => len += k,
                }
            }
        });
        if read.is_err() {
            // Removed between listing and reading: the session just ended.
            continue;
        }
        match parse(buf.get(..len).unwrap_or_default()) {
            Ok(s) if s.key() == (pid, start, seq) => {
                if !s.closed {
                    out.sessions.push(SessionStats {
                        path: Some(path),
                        ..s
                    });
                }
            }
            Err(ParseError::NotReady) => {}
            _ => out.invalid += 1,
        }
    }
    out.sessions.sort_by_key(|s| (s.pid, s.seq));
    Ok(out)
}

/// Per-second rates of the counters between two samples of the same session (gauges
/// and counters that went backwards give 0). `None` if the samples are of different
/// sessions or `dt` is zero.
pub fn rates(prev: &SessionStats, cur: &SessionStats, dt: Duration) -> Option<[f64; COUNTERS]> {
    if prev.key() != cur.key() || prev.role != cur.role || dt.is_zero() {
        return None;
    }
    let secs = dt.as_secs_f64();
    let mut out = [0f64; COUNTERS];
    for d in cur.role.counters() {
        if d.kind != Kind::Counter {
            continue;
        }
        let (Some(a), Some(b), Some(r)) = (
            prev.counters.get(d.index),
            cur.counters.get(d.index),
            out.get_mut(d.index),
        ) else {
            continue;
        };
        *r = b.saturating_sub(*a) as f64 / secs;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::{SessionInfo, StatsWriter};

    fn info(role: Role) -> SessionInfo {
        SessionInfo {
            role,
            transport: "socket".into(),
            iface: "lo".into(),
            group: "239.192.0.1".into(),
            dport: 7500,
            udp_encap: Some(3056),
            tsi: [1, 2, 3, 4, 5, 6, 0x12, 0x34],
        }
    }

    #[test]
    fn names() {
        assert_eq!(parse_name("12-345-6.stats"), Some((12, 345, 6)));
        for bad in [
            "12-345.stats",
            "0-1-2.stats",
            "a-1-2.stats",
            "1-2-3-4.stats",
            "1-2-3.stat",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn private_writer_roundtrips() {
        let w = StatsWriter::private(&info(Role::Source));
        w.set(crate::layout::src::ODATA_PACKETS, 42);
        w.set(crate::layout::src::TXW_LEAD, 7);
        w.set(COUNTERS, 99); // ignored
        let s = parse(&w.snapshot_bytes()).expect("valid");
        assert_eq!(s.pid, std::process::id());
        assert_eq!(s.role, Role::Source);
        assert_eq!(s.transport, "socket");
        assert_eq!(s.iface, "lo");
        assert_eq!(s.group, "239.192.0.1");
        assert_eq!((s.dport, s.udp_encap), (7500, Some(3056)));
        assert_eq!(s.tsi_text(), "1.2.3.4.5.6.4660");
        assert_eq!(s.counter("odata_packets"), Some(42));
        assert_eq!(s.counter("txw_lead"), Some(7));
        assert_eq!(s.counter("no_such"), None);
        assert!(!s.closed);
    }

    #[test]
    fn files_of_the_first_32_counter_size_still_parse() {
        let w = StatsWriter::private(&info(Role::Receiver));
        w.set(crate::layout::rcv::SOCKET_DROPS, 5);
        w.set(crate::layout::rcv::REJECTED_CHECKSUM, 9);
        let mut old = w.snapshot_bytes()[..V1_TOTAL_WORDS * 8].to_vec();
        old[w::TOTAL * 8..w::TOTAL * 8 + 8].copy_from_slice(&(V1_TOTAL_WORDS as u64).to_ne_bytes());
        // Such a writer published at most 32 counters.
        old[w::NCOUNTERS * 8..w::NCOUNTERS * 8 + 8].copy_from_slice(&32u64.to_ne_bytes());
        let s = parse(&old).expect("a 32-counter file parses");
        assert_eq!(s.counter("socket_drops"), Some(5));
        assert_eq!(
            s.counter("rejected_checksum"),
            None,
            "not in a 32-counter file"
        );
        // More counters than such a file holds: refused.
        old[w::NCOUNTERS * 8..w::NCOUNTERS * 8 + 8].copy_from_slice(&33u64.to_ne_bytes());
        assert_eq!(parse(&old), Err(ParseError::Field("counters")));
        // A file of either size with the other size's total word: refused.
        assert_eq!(
            parse(&old[..old.len() - 8]),
            Err(ParseError::Length(V1_TOTAL_WORDS * 8 - 8))
        );
    }

    #[test]
    fn line_records_roundtrip_and_are_validated() {
        use crate::writer::LineValues;
        let w = StatsWriter::private(&info(Role::Receiver));
        assert!(parse(&w.snapshot_bytes()).expect("valid").lines.is_empty());
        // One name, or more than LINES: nothing published.
        w.set_line_names(&["eth0"]);
        w.set_line_names(&["a", "b", "c", "d", "e"]);
        assert!(parse(&w.snapshot_bytes()).expect("valid").lines.is_empty());
        w.set_line_names(&["eth0", "eth1"]);
        w.set_line(
            1,
            LineValues {
                received: 90,
                won: 7,
                lost: 3,
                up: true,
                failures: 2,
            },
        );
        w.set_line(LINES, LineValues::default()); // ignored
        let good = w.snapshot_bytes();
        let s = parse(&good).expect("valid");
        assert_eq!(s.lines.len(), 2);
        assert_eq!(
            s.lines[0],
            LineStats {
                iface: "eth0".into(),
                received: 0,
                won: 0,
                lost: 0,
                up: false,
                failures: 0
            }
        );
        assert_eq!(
            (
                s.lines[1].iface.as_str(),
                s.lines[1].received,
                s.lines[1].won,
                s.lines[1].lost,
                s.lines[1].up,
                s.lines[1].failures
            ),
            ("eth1", 90, 7, 3, true, 2)
        );
        let set = |i: usize, v: u64| {
            let mut b = good;
            b[i * 8..i * 8 + 8].copy_from_slice(&v.to_ne_bytes());
            parse(&b)
        };
        let rec = |l: usize, k: usize| LINE_AREA + l * LINE_WORDS + k;
        assert_eq!(set(w::LINES, 1), Err(ParseError::Field("lines")));
        assert_eq!(
            set(w::LINES, LINES as u64 + 1),
            Err(ParseError::Field("lines"))
        );
        assert_eq!(set(rec(1, line::UP), 2), Err(ParseError::Field("line")));
        assert_eq!(
            set(rec(0, line::RESERVED), 1),
            Err(ParseError::Field("line"))
        );
        assert_eq!(
            set(rec(0, line::IFACE), 0x0a),
            Err(ParseError::Field("line iface"))
        );
        // A record past the count must be empty.
        assert_eq!(set(rec(2, line::WON), 1), Err(ParseError::Field("line")));
        // Records written and then a count of zero: the records are past the count.
        assert_eq!(set(w::LINES, 0), Err(ParseError::Field("line")));
        // A file of the 64-counter size has no line records; one that claims lines is
        // refused.
        let mut v2 = good[..V2_TOTAL_WORDS * 8].to_vec();
        v2[w::TOTAL * 8..w::TOTAL * 8 + 8].copy_from_slice(&(V2_TOTAL_WORDS as u64).to_ne_bytes());
        assert_eq!(parse(&v2), Err(ParseError::Field("lines")));
        v2[w::LINES * 8..w::LINES * 8 + 8].copy_from_slice(&0u64.to_ne_bytes());
        let s2 = parse(&v2).expect("a 64-counter file parses");
        assert!(s2.lines.is_empty());
        assert_eq!(s2.counters, s.counters);
    }

    #[test]
    fn hostile_text_is_sanitised() {
        let mut i = info(Role::Receiver);
        i.iface = "a\"b\\c\nd\u{e9}".into();
        i.group = "x".repeat(200);
        i.udp_encap = None;
        let w = StatsWriter::private(&i);
        let s = parse(&w.snapshot_bytes()).expect("valid");
        assert_eq!(s.iface, "a?b?c?d??");
        assert_eq!(s.group, "x".repeat(64));
        assert_eq!(s.udp_encap, None);
    }

    #[test]
    fn corruptions_are_rejected() {
        let w = StatsWriter::private(&info(Role::Receiver));
        let good = w.snapshot_bytes();
        assert!(parse(&good).is_ok());
        assert_eq!(parse(&good[..100]), Err(ParseError::Length(100)));
        let set = |i: usize, v: u64| {
            let mut b = good;
            b[i * 8..i * 8 + 8].copy_from_slice(&v.to_ne_bytes());
            parse(&b)
        };
        assert!(matches!(set(w::MAGIC, 1), Err(ParseError::Magic(1))));
        assert!(matches!(set(w::VERSION, 2), Err(ParseError::Version(2))));
        assert_eq!(set(w::STATE, state::INIT), Err(ParseError::NotReady));
        assert_eq!(set(w::STATE, 9), Err(ParseError::Field("state")));
        assert_eq!(set(w::PID, 0), Err(ParseError::Field("pid")));
        assert_eq!(set(w::PID, 1 << 40), Err(ParseError::Field("pid")));
        assert_eq!(set(w::ROLE, 3), Err(ParseError::Field("role")));
        assert_eq!(set(w::PORTS, 1 << 40), Err(ParseError::Field("ports")));
        assert_eq!(set(w::PORTS, 5 << 16), Err(ParseError::Field("ports")));
        assert_eq!(set(w::NCOUNTERS, 0), Err(ParseError::Field("counters")));
        assert_eq!(set(w::NCOUNTERS, 64), Err(ParseError::Field("counters")));
        assert_eq!(set(w::TOTAL, 1), Err(ParseError::Field("total")));
        assert_eq!(
            set(w::TOTAL, V1_TOTAL_WORDS as u64),
            Err(ParseError::Field("total"))
        );
        assert_eq!(set(30, 1), Err(ParseError::Field("reserved")));
        assert_eq!(set(w::IFACE, 0x0a), Err(ParseError::Field("iface")));
        // Text after the terminating NUL.
        assert_eq!(
            set(w::GROUP + 7, u64::from_ne_bytes(*b"\0\0\0\0\0\0\0a")),
            Err(ParseError::Field("group"))
        );
        assert!(set(w::STATE, state::CLOSED).is_ok_and(|s| s.closed));
    }

    #[test]
    fn rates_between_samples() {
        let w = StatsWriter::private(&info(Role::Receiver));
        w.set(crate::layout::rcv::ODATA_PACKETS, 100);
        w.set(crate::layout::rcv::PEERS, 3);
        let a = parse(&w.snapshot_bytes()).expect("valid");
        w.set(crate::layout::rcv::ODATA_PACKETS, 400);
        w.set(crate::layout::rcv::PEERS, 5);
        let b = parse(&w.snapshot_bytes()).expect("valid");
        let r = rates(&a, &b, Duration::from_millis(500)).expect("same session");
        assert_eq!(r[crate::layout::rcv::ODATA_PACKETS], 600.0);
        assert_eq!(r[crate::layout::rcv::PEERS], 0.0, "gauges have no rate");
        // Backwards counters give 0, not a huge number.
        let back = rates(&b, &a, Duration::from_secs(1)).expect("same session");
        assert_eq!(back[crate::layout::rcv::ODATA_PACKETS], 0.0);
        assert!(rates(&a, &b, Duration::ZERO).is_none());
        let other = StatsWriter::private(&info(Role::Receiver));
        let c = parse(&other.snapshot_bytes()).expect("valid");
        assert!(rates(&a, &c, Duration::from_secs(1)).is_none());
    }

    #[test]
    fn proc_start_of_self_and_missing() {
        let me = std::process::id();
        let s = proc_start_time(me).expect("own /proc entry");
        assert!(pid_alive(me, s));
        assert!(!pid_alive(me, s.wrapping_add(1)));
        // pid_max is at most 2^22 on Linux.
        assert!(!pid_alive(i32::MAX as u32, 0));
    }
}

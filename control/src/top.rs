//! `xpgmctl top`: every PGM session published on this host (xpgm-stats files), with
//! totals and per-second rates computed from two samples.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use xpgm_stats::{Kind, Role, Scan, SessionStats, rates, scan};

/// One reading of the stats directory.
#[derive(Debug)]
pub struct Sample {
    /// When it was taken.
    pub at: Instant,
    /// What was found.
    pub scan: Scan,
}

/// Reads `dir`, removing the files of processes that no longer run.
pub fn sample(dir: &Path) -> std::io::Result<Sample> {
    let at = Instant::now();
    let scan = scan(dir, true)?;
    Ok(Sample { at, scan })
}

/// Counter rates of one session, indexed as its role's table.
pub type Rates = [f64; xpgm_stats::layout::COUNTERS];

/// One session of a sample with its rates since the previous sample.
#[derive(Debug)]
pub struct Row<'a> {
    /// The session.
    pub s: &'a SessionStats,
    /// Counter rates (`None` for a session new in this sample).
    pub rates: Option<Rates>,
    /// Per A/B line, (received, won, lost) per second (`None` as for `rates`, or when
    /// the lines changed between samples).
    pub line_rates: Option<Vec<[f64; 3]>>,
}

/// Sessions of `cur` with their rates since `prev`.
pub fn with_rates<'a>(prev: &Sample, cur: &'a Sample) -> Vec<Row<'a>> {
    let dt = cur.at.saturating_duration_since(prev.at);
    let before: HashMap<_, _> = prev.scan.sessions.iter().map(|s| (s.key(), s)).collect();
    cur.scan
        .sessions
        .iter()
        .map(|s| {
            let p = before.get(&s.key());
            let rates = p.and_then(|p| rates(p, s, dt));
            let line_rates = p
                .filter(|p| rates.is_some() && p.lines.len() == s.lines.len())
                .map(|p| {
                    let per = |a: u64, b: u64| b.saturating_sub(a) as f64 / dt.as_secs_f64();
                    p.lines
                        .iter()
                        .zip(&s.lines)
                        .map(|(a, b)| {
                            [
                                per(a.received, b.received),
                                per(a.won, b.won),
                                per(a.lost, b.lost),
                            ]
                        })
                        .collect()
                });
            Row {
                s,
                rates,
                line_rates,
            }
        })
        .collect()
}

fn session_json(row: &Row<'_>) -> Value {
    let (s, r) = (row.s, row.rates.as_ref());
    let mut counters = Map::new();
    let mut per_sec = Map::new();
    for d in s.role.counters().iter().filter(|d| d.index < s.ncounters) {
        let v = s.counters.get(d.index).copied().unwrap_or(0);
        counters.insert(d.name.into(), json!(v));
        if d.kind == Kind::Counter
            && let Some(x) = r.and_then(|r| r.get(d.index))
        {
            per_sec.insert(d.name.into(), json!(x));
        }
    }
    let lines: Vec<Value> = s
        .lines
        .iter()
        .enumerate()
        .map(|(k, l)| {
            let rates = row.line_rates.as_ref().and_then(|v| v.get(k)).map_or(
                Value::Null,
                |[received, won, lost]| json!({"received": received, "won": won, "lost": lost}),
            );
            json!({
                "iface": l.iface,
                "received": l.received,
                "won": l.won,
                "lost": l.lost,
                "up": l.up,
                "failures": l.failures,
                "rates": rates,
            })
        })
        .collect();
    json!({
        "session": s.name(),
        "pid": s.pid,
        "role": s.role.name(),
        "transport": s.transport,
        "iface": s.iface,
        "group": s.group,
        "dport": s.dport,
        "udp_encap": s.udp_encap,
        "tsi": s.tsi_text(),
        "created_unix_ns": s.created_unix_ns,
        "counters": counters,
        "rates": if r.is_some() { Value::Object(per_sec) } else { Value::Null },
        "lines": lines,
    })
}

/// The JSON report: `{"interval_ms", "sessions": [...], "invalid_files",
/// "stale_removed"}`; each session has its description, `counters` (totals),
/// `rates` (per second, counters only; null for a session first seen in `cur`) and
/// `lines` (a receiver's A/B lines: `iface`, `received`, `won`, `lost`, `up`,
/// `failures`, and `rates` of the first three; empty on one line).
pub fn report_json(prev: &Sample, cur: &Sample) -> Value {
    let dt = cur.at.saturating_duration_since(prev.at);
    let sessions: Vec<Value> = with_rates(prev, cur)
        .into_iter()
        .map(|row| session_json(&row))
        .collect();
    json!({
        "interval_ms": dt.as_secs_f64() * 1000.0,
        "sessions": sessions,
        "invalid_files": cur.scan.invalid,
        "stale_removed": prev.scan.removed + cur.scan.removed,
    })
}

/// 1234567 → "1.23M".
pub fn human(x: f64) -> String {
    let a = x.abs();
    if a >= 1e9 {
        format!("{:.2}G", x / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", x / 1e3)
    } else if a >= 100.0 || x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// Table columns: header and (source counter, receiver counter) names.
const COLUMNS: &[(&str, &str, &str)] = &[
    ("DATA", "odata_packets", "odata_packets"),
    ("BYTES", "odata_bytes", "data_bytes"),
    ("REPAIR", "rdata_packets", "rdata_packets"),
    ("NAK", "naks_received", "naks_sent"),
    ("NCF", "ncf_sent", "ncf_received"),
    ("LOST", "", "unrecoverable"),
    ("OVERRUN", "", "overruns"),
    // Frames steered to the session and refused below PGM (by reason in --json and
    // Prometheus: rejected_checksum, rejected_header, rejected_not_pgm, rejected_address).
    ("REJECT", "frames_rejected", "frames_rejected"),
    ("DUP", "", "duplicates"),
    ("DELIV", "messages_accepted", "delivered"),
];

fn cell(s: &SessionStats, r: Option<&Rates>, name: &str) -> String {
    if name.is_empty() {
        return "-".into();
    }
    let Some(d) = s.role.counters().iter().find(|d| d.name == name) else {
        return "-".into();
    };
    let total = s.counters.get(d.index).copied().unwrap_or(0) as f64;
    match r.and_then(|r| r.get(d.index)) {
        Some(rate) => format!("{} {}/s", human(total), human(*rate)),
        None => human(total),
    }
}

/// The text table: one line per session, each cell `total rate/s`; source columns are
/// what it sent (DELIV: messages accepted), receiver columns what it received. A
/// receiver on A/B lines gets one row per line under its own (ROLE `line`, IFACE the
/// line's interface): DATA is
/// what came on the line, and WINDOW says how many sequences it won and lost and
/// whether it is up.
pub fn report_table(prev: &Sample, cur: &Sample) -> String {
    let rows = with_rates(prev, cur);
    let mut table: Vec<Vec<String>> = Vec::new();
    let mut head = vec![
        "SESSION".to_string(),
        "ROLE".into(),
        "TRANSPORT".into(),
        "IFACE".into(),
        "GROUP:PORT".into(),
    ];
    head.extend(COLUMNS.iter().map(|c| c.0.to_string()));
    head.push("WINDOW".into());
    table.push(head);
    for row in &rows {
        let (s, r) = (row.s, &row.rates);
        let port = match s.udp_encap {
            Some(u) => format!("{}:{} udp:{u}", s.group, s.dport),
            None => format!("{}:{}", s.group, s.dport),
        };
        let mut cells = vec![
            s.name(),
            s.role.name().into(),
            s.transport.clone(),
            s.iface.clone(),
            port,
        ];
        for (_, src, rcv) in COLUMNS {
            let name = if s.role == Role::Source { src } else { rcv };
            cells.push(cell(s, r.as_ref(), name));
        }
        cells.push(match s.role {
            Role::Source => {
                let trail = s.counter("txw_trail").unwrap_or(0);
                let lead = s.counter("txw_lead").unwrap_or(0);
                format!("{trail}..{lead}")
            }
            Role::Receiver => format!(
                "{}..{} peers {}",
                s.counter("rxw_trail").unwrap_or(0),
                s.counter("rxw_lead").unwrap_or(0),
                s.counter("peers").unwrap_or(0)
            ),
        });
        table.push(cells);
        for (k, l) in s.lines.iter().enumerate() {
            let rate = row.line_rates.as_ref().and_then(|v| v.get(k));
            let fmt = |total: u64, i: usize| match rate {
                Some(x) => format!("{} {}/s", human(total as f64), human(x[i])),
                None => human(total as f64),
            };
            let mut sub = vec![
                String::new(),
                "  line".into(),
                String::new(),
                l.iface.clone(),
                String::new(),
                fmt(l.received, 0),
            ];
            sub.extend((1..COLUMNS.len()).map(|_| String::new()));
            let failed = if l.failures > 0 {
                format!(" failures {}", l.failures)
            } else {
                String::new()
            };
            sub.push(format!(
                "won {} lost {} {}{failed}",
                fmt(l.won, 1),
                fmt(l.lost, 2),
                if l.up { "up" } else { "down" }
            ));
            table.push(sub);
        }
    }
    let ncols = table.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..ncols)
        .map(|i| {
            table
                .iter()
                .map(|r| r.get(i).map_or(0, String::len))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &table {
        let mut line = String::new();
        for (c, w) in row.iter().zip(&widths) {
            let _ = write!(line, "{c:<w$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if rows.is_empty() {
        out.push_str("(no sessions)\n");
    }
    out
}

/// Default sampling interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(1000);

#[cfg(test)]
mod tests {
    use super::*;
    use xpgm_stats::layout::{rcv, src};
    use xpgm_stats::{SessionInfo, StatsWriter};

    #[test]
    fn human_numbers() {
        assert_eq!(human(0.0), "0");
        assert_eq!(human(12.5), "12.5");
        assert_eq!(human(999.0), "999");
        assert_eq!(human(12_345.0), "12.3k");
        assert_eq!(human(2_500_000.0), "2.50M");
        assert_eq!(human(3e9), "3.00G");
    }

    #[test]
    fn json_and_table_from_two_samples() {
        struct Cleanup(std::path::PathBuf);
        impl Drop for Cleanup {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let dir = std::env::temp_dir().join(format!("xpgm-top-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let _cleanup = Cleanup(dir.clone());
        let info = |role| SessionInfo {
            role,
            transport: "socket".into(),
            iface: "lo".into(),
            group: "239.1.1.1".into(),
            dport: 7500,
            udp_encap: Some(3056),
            tsi: [1, 2, 3, 4, 5, 6, 0, 9],
        };
        let a = StatsWriter::create(&dir, &info(Role::Source)).expect("create");
        let b = StatsWriter::create(&dir, &info(Role::Receiver)).expect("create");
        a.set(src::ODATA_PACKETS, 1000);
        b.set(rcv::ODATA_PACKETS, 990);
        b.set_line_names(&["eth0", "eth1"]);
        let line = |received, won, lost, up| xpgm_stats::LineValues {
            received,
            won,
            lost,
            up,
            failures: 0,
        };
        b.set_line(0, line(980, 600, 10, true));
        b.set_line(1, line(975, 390, 15, true));
        let s1 = sample(&dir).expect("sample");
        b.set_line(0, line(2980, 1800, 10, true));
        b.set_line(1, line(1975, 790, 1015, false));
        a.set(src::ODATA_PACKETS, 3000);
        b.set(rcv::ODATA_PACKETS, 2990);
        b.set(rcv::UNRECOVERABLE, 4);
        b.set(rcv::OVERRUNS, 60);
        b.set(rcv::SOCKET_DROPS, 60);
        b.set(rcv::FRAMES_REJECTED, 14);
        b.set(rcv::REJECTED_CHECKSUM, 14);
        let mut s2 = sample(&dir).expect("sample");
        // Fix the interval so rates are exact.
        s2.at = s1.at + Duration::from_secs(2);
        let j = report_json(&s1, &s2);
        let ss = j["sessions"].as_array().expect("sessions");
        assert_eq!(ss.len(), 2);
        assert_eq!(ss[0]["role"], "source");
        assert_eq!(ss[0]["counters"]["odata_packets"], 3000);
        assert_eq!(ss[0]["rates"]["odata_packets"], 1000.0);
        assert_eq!(ss[0]["udp_encap"], 3056);
        assert_eq!(ss[0]["tsi"], "1.2.3.4.5.6.9");
        assert_eq!(ss[1]["counters"]["unrecoverable"], 4);
        assert_eq!(ss[1]["rates"]["unrecoverable"], 2.0);
        assert!(ss[1]["rates"].get("peers").is_none(), "gauges have no rate");
        assert_eq!(ss[1]["counters"]["overruns"], 60);
        assert_eq!(ss[1]["counters"]["socket_drops"], 60);
        assert_eq!(ss[1]["rates"]["overruns"], 30.0);
        assert_eq!(ss[1]["counters"]["frames_rejected"], 14);
        assert_eq!(ss[1]["counters"]["rejected_checksum"], 14);
        assert!(ss[0]["lines"].as_array().is_some_and(Vec::is_empty));
        let ls = ss[1]["lines"].as_array().expect("lines");
        assert_eq!(ls.len(), 2);
        assert_eq!(ls[0]["iface"], "eth0");
        assert_eq!(ls[0]["received"], 2980);
        assert_eq!(ls[0]["won"], 1800);
        assert_eq!(ls[0]["rates"]["received"], 1000.0);
        assert_eq!(ls[0]["rates"]["won"], 600.0);
        assert_eq!(ls[0]["up"], true);
        assert_eq!(ls[1]["lost"], 1015);
        assert_eq!(ls[1]["rates"]["lost"], 500.0);
        assert_eq!(ls[1]["up"], false);
        let t = report_table(&s1, &s2);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5, "{t}");
        assert!(
            lines[3].starts_with(' ')
                && lines[3].contains("  line ")
                && lines[3].contains(" eth0 ")
                && lines[3].contains("2980 1000/s")
                && lines[3].contains("won 1800 600/s lost 10 0/s up"),
            "{t}"
        );
        assert!(
            lines[4].contains("won 790 200/s lost 1015 500/s down"),
            "{t}"
        );
        assert!(lines[0].starts_with("SESSION"));
        assert!(
            lines[0].contains(" LOST ")
                && lines[0].contains(" OVERRUN ")
                && lines[0].contains(" REJECT "),
            "{t}"
        );
        assert!(
            lines[1].contains("source") && lines[1].contains("3000 1000/s"),
            "{t}"
        );
        assert!(
            lines[2].contains("receiver")
                && lines[2].contains("4 2/s")
                && lines[2].contains("60 30/s")
                && lines[2].contains("14 7/s"),
            "{t}"
        );
        // A session that appears between samples has totals but no rates.
        let c = StatsWriter::create(&dir, &info(Role::Receiver)).expect("create");
        let s3 = sample(&dir).expect("sample");
        let j = report_json(&s2, &s3);
        let ss = j["sessions"].as_array().expect("sessions");
        assert_eq!(ss.len(), 3);
        assert!(ss[2]["rates"].is_null());
        drop((a, b, c));
        let s4 = sample(&dir).expect("sample");
        assert!(report_table(&s3, &s4).contains("(no sessions)"));
    }
}

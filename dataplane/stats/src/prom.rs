//! Prometheus text exposition format (version 0.0.4).

use std::fmt::Write as _;

use crate::layout::{Kind, Role};
use crate::reader::{LineStats, SessionStats};

/// Escapes a label value (`\`, `"` and newline), although parsed text fields never
/// contain them.
fn esc(s: &str, out: &mut String) {
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn labels(s: &SessionStats, out: &mut String) {
    let _ = write!(
        out,
        "{{session=\"{}\",pid=\"{}\",transport=\"",
        s.name(),
        s.pid
    );
    esc(&s.transport, out);
    out.push_str("\",iface=\"");
    esc(&s.iface, out);
    out.push_str("\",group=\"");
    esc(&s.group, out);
    let _ = write!(out, "\",dport=\"{}\",tsi=\"{}\"}}", s.dport, s.tsi_text());
}

/// A/B line families of receivers: (metric, type, help, value).
type LineFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&LineStats) -> u64,
);
const LINE_FAMILIES: &[LineFamily] = &[
    (
        "xpgm_receiver_line_received_total",
        "counter",
        "Data packets (ODATA, RDATA) that came on the A/B line, duplicates included",
        |l| l.received,
    ),
    (
        "xpgm_receiver_line_won_total",
        "counter",
        "Sequences the A/B line brought first",
        |l| l.won,
    ),
    (
        "xpgm_receiver_line_lost_total",
        "counter",
        "Sequences the A/B line missed (another line or a repair brought them)",
        |l| l.lost,
    ),
    (
        "xpgm_receiver_line_up",
        "gauge",
        "1 while the receiver counts the A/B line as up (it has heard from it lately)",
        |l| u64::from(l.up),
    ),
    (
        "xpgm_receiver_line_failures_total",
        "counter",
        "Times the A/B line's transport failed and was closed (reopened every second)",
        |l| l.failures,
    ),
];

/// Renders `sessions` as Prometheus text: `xpgm_sessions{role}` and, per counter of
/// each role, one metric family (`xpgm_<role>_<name>_total` for counters,
/// `xpgm_<role>_<name>` for gauges) with labels session, pid, transport, iface, group,
/// dport, tsi; then, for receivers on A/B lines, `xpgm_receiver_line_*` families with
/// those labels and `line` (the line's interface).
pub fn prometheus(sessions: &[SessionStats]) -> String {
    let mut out = String::new();
    out.push_str("# HELP xpgm_sessions PGM sessions published on this host.\n");
    out.push_str("# TYPE xpgm_sessions gauge\n");
    for role in [Role::Source, Role::Receiver] {
        let n = sessions.iter().filter(|s| s.role == role).count();
        let _ = writeln!(out, "xpgm_sessions{{role=\"{}\"}} {n}", role.name());
    }
    for role in [Role::Source, Role::Receiver] {
        for d in role.counters() {
            let (suffix, ty) = match d.kind {
                Kind::Counter => ("_total", "counter"),
                Kind::Gauge => ("", "gauge"),
            };
            let metric = format!("xpgm_{}_{}{suffix}", role.name(), d.name);
            let _ = writeln!(out, "# HELP {metric} {}.", d.help);
            let _ = writeln!(out, "# TYPE {metric} {ty}");
            // A session of an older build that does not publish this counter: no sample.
            for s in sessions
                .iter()
                .filter(|s| s.role == role && d.index < s.ncounters)
            {
                out.push_str(&metric);
                labels(s, &mut out);
                let v = s.counters.get(d.index).copied().unwrap_or(0);
                let _ = writeln!(out, " {v}");
            }
        }
    }
    let receivers = || sessions.iter().filter(|s| s.role == Role::Receiver);
    if receivers().any(|s| !s.lines.is_empty()) {
        for (metric, ty, help, value) in LINE_FAMILIES {
            let _ = writeln!(out, "# HELP {metric} {help}.");
            let _ = writeln!(out, "# TYPE {metric} {ty}");
            for s in receivers() {
                for l in &s.lines {
                    out.push_str(metric);
                    labels(s, &mut out);
                    // Reopen the label set: `...,tsi="…"}` becomes `...,tsi="…",line="…"}`.
                    out.pop();
                    out.push_str(",line=\"");
                    esc(&l.iface, &mut out);
                    let _ = writeln!(out, "\"}} {}", value(l));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{rcv, src};
    use crate::reader::parse;
    use crate::writer::{SessionInfo, StatsWriter};

    #[test]
    fn families_and_samples() {
        let mk = |role| SessionInfo {
            role,
            transport: "xdp".into(),
            iface: "veth0".into(),
            group: "ff0e::1".into(),
            dport: 7500,
            udp_encap: None,
            tsi: [0; 8],
        };
        let a = StatsWriter::private(&mk(Role::Source));
        a.set(src::ODATA_PACKETS, 11);
        a.set(src::TXW_LEAD, 5);
        let b = StatsWriter::private(&mk(Role::Receiver));
        b.set(rcv::NAKS_SENT, 3);
        b.set(rcv::REJECTED_NOT_PGM, 8);
        a.set(src::REJECTED_CHECKSUM, 2);
        let sa = parse(&a.snapshot_bytes()).expect("valid");
        let sb = parse(&b.snapshot_bytes()).expect("valid");
        let text = prometheus(&[sa.clone(), sb.clone()]);
        assert!(text.contains("xpgm_sessions{role=\"source\"} 1\n"));
        assert!(text.contains("# TYPE xpgm_source_odata_packets_total counter\n"));
        assert!(text.contains("# TYPE xpgm_source_txw_lead gauge\n"));
        let la = format!(
            "{{session=\"{}\",pid=\"{}\",transport=\"xdp\",iface=\"veth0\",group=\"ff0e::1\",dport=\"7500\",tsi=\"-\"}}",
            sa.name(),
            sa.pid
        );
        assert!(text.contains(&format!("xpgm_source_odata_packets_total{la} 11\n")));
        assert!(text.contains(&format!("xpgm_source_txw_lead{la} 5\n")));
        let lb = la.replace(&sa.name(), &sb.name());
        assert!(text.contains(&format!("xpgm_receiver_naks_sent_total{lb} 3\n")));
        // Counters beyond the first 32 slots are exported too.
        assert!(text.contains(&format!("xpgm_receiver_rejected_not_pgm_total{lb} 8\n")));
        assert!(text.contains(&format!("xpgm_source_rejected_checksum_total{la} 2\n")));
        // No A/B receiver: no line families.
        assert!(!text.contains("xpgm_receiver_line_"));
        b.set_line_names(&["eth0", "eth1"]);
        b.set_line(
            1,
            crate::writer::LineValues {
                received: 50,
                won: 20,
                lost: 4,
                up: true,
                failures: 1,
            },
        );
        let sb = parse(&b.snapshot_bytes()).expect("valid");
        let text = prometheus(&[sa.clone(), sb.clone()]);
        let l1 = lb.replace("\"}", "\",line=\"eth1\"}");
        let l0 = lb.replace("\"}", "\",line=\"eth0\"}");
        assert!(text.contains("# TYPE xpgm_receiver_line_received_total counter\n"));
        assert!(text.contains("# TYPE xpgm_receiver_line_up gauge\n"));
        assert!(text.contains(&format!("xpgm_receiver_line_received_total{l1} 50\n")));
        assert!(text.contains(&format!("xpgm_receiver_line_won_total{l1} 20\n")));
        assert!(text.contains(&format!("xpgm_receiver_line_lost_total{l1} 4\n")));
        assert!(text.contains(&format!("xpgm_receiver_line_up{l1} 1\n")));
        assert!(text.contains(&format!("xpgm_receiver_line_up{l0} 0\n")));
        assert!(text.contains(&format!("xpgm_receiver_line_failures_total{l1} 1\n")));
        // Every non-comment line is `name{labels} value`, and each family's samples
        // follow its TYPE line (no family appears twice).
        let mut seen = std::collections::HashSet::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap_or_default();
                assert!(seen.insert(name.to_string()), "{name} twice");
            } else if !l.starts_with("# HELP ") {
                let (_, v) = l.rsplit_once(' ').expect("value");
                v.parse::<u64>().expect("integer value");
                assert!(l.contains('{'));
            }
        }
    }
}

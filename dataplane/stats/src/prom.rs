//! Prometheus text exposition format (version 0.0.4).

use std::fmt::Write as _;

use crate::layout::{Kind, Role};
use crate::reader::SessionStats;

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

/// Renders `sessions` as Prometheus text: `xpgm_sessions{role}` and, per counter of
/// each role, one metric family (`xpgm_<role>_<name>_total` for counters,
/// `xpgm_<role>_<name>` for gauges) with labels session, pid, transport, iface, group,
/// dport, tsi.
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

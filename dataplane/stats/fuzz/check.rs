//! The parse fuzz target's invariants, shared with the property test
//! (`dataplane/stats/tests/parse_props.rs`). Panics when one is broken.

use xpgm_stats::{Role, parse, prometheus};

/// Parses `data`; whatever parses must describe itself consistently and render.
pub fn check(data: &[u8]) {
    if let Ok(s) = parse(data) {
        assert!(s.pid > 0);
        assert!(matches!(s.role, Role::Source | Role::Receiver));
        assert!(s.lines.is_empty() || (2..=xpgm_stats::layout::LINES).contains(&s.lines.len()));
        for t in [&s.transport, &s.iface, &s.group]
            .into_iter()
            .chain(s.lines.iter().map(|l| &l.iface))
        {
            assert!(
                t.bytes()
                    .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
            );
        }
        let text = prometheus(core::slice::from_ref(&s));
        assert!(text.contains(&format!("session=\"{}\"", s.name())));
        let _ = s.tsi_text();
    }
}

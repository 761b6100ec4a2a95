//! Property tests of the stats-file parser: random bytes, and valid files with random
//! words overwritten, never panic; files a writer produced always parse back.

use proptest::prelude::*;
use xpgm_stats::layout::{COUNTERS, LINES, TOTAL_BYTES};
use xpgm_stats::{LineValues, Role, SessionInfo, StatsWriter, parse};

#[path = "../fuzz/check.rs"]
mod check;

fn info() -> impl Strategy<Value = SessionInfo> {
    (
        any::<bool>(),
        "[a-z]{0,20}",
        ".{0,20}",
        ".{0,80}",
        any::<u16>(),
        any::<Option<u16>>(),
        any::<[u8; 8]>(),
    )
        .prop_map(
            |(src, transport, iface, group, dport, udp_encap, tsi)| SessionInfo {
                role: if src { Role::Source } else { Role::Receiver },
                transport,
                iface,
                group,
                dport,
                udp_encap,
                tsi,
            },
        )
}

proptest! {
    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..TOTAL_BYTES + 16)) {
        check::check(&data);
    }

    #[test]
    fn written_files_parse_back(i in info(), vals in proptest::collection::vec(any::<u64>(), COUNTERS)) {
        let w = StatsWriter::private(&i);
        for (k, v) in vals.iter().enumerate() {
            w.set(k, *v);
        }
        let s = parse(&w.snapshot_bytes()).expect("a writer's file parses");
        check::check(&w.snapshot_bytes());
        prop_assert_eq!(s.role, i.role);
        prop_assert_eq!(s.dport, i.dport);
        prop_assert_eq!(s.udp_encap, i.udp_encap);
        prop_assert_eq!(s.tsi, i.tsi);
        prop_assert_eq!(&s.counters[..], &vals[..]);
        prop_assert!(s.lines.is_empty());
        // Text survives when it was already label-safe and fits.
        if i.iface.len() <= 16 && i.iface.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') {
            prop_assert_eq!(&s.iface, &i.iface);
        }
    }

    #[test]
    fn written_lines_parse_back(
        i in info(),
        names in proptest::collection::vec("[a-z0-9]{1,15}", 2..=LINES),
        vals in proptest::collection::vec((any::<u64>(), any::<u64>(), any::<u64>(), any::<bool>(), any::<u64>()), LINES),
    ) {
        let w = StatsWriter::private(&i);
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        w.set_line_names(&refs);
        for (l, &(received, won, lost, up, failures)) in vals.iter().enumerate().take(names.len()) {
            w.set_line(l, LineValues { received, won, lost, up, failures });
        }
        check::check(&w.snapshot_bytes());
        let s = parse(&w.snapshot_bytes()).expect("a writer's file parses");
        prop_assert_eq!(s.lines.len(), names.len());
        for ((got, name), &(received, won, lost, up, failures)) in s.lines.iter().zip(&names).zip(&vals) {
            prop_assert_eq!(&got.iface, name);
            prop_assert_eq!((got.received, got.won, got.lost, got.up, got.failures), (received, won, lost, up, failures));
        }
    }

    #[test]
    fn mutated_files_never_panic(i in info(), edits in proptest::collection::vec((0usize..TOTAL_BYTES, any::<u8>()), 1..16)) {
        let w = StatsWriter::private(&i);
        let mut b = w.snapshot_bytes();
        for (at, v) in edits {
            if let Some(x) = b.get_mut(at) {
                *x = v;
            }
        }
        check::check(&b);
    }
}

/// The fuzz corpus (seeds and anything the fuzzer kept) replays through the checks, and
/// the seeds mean what their names say.
#[test]
fn fuzz_corpus_replays() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/parse");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("corpus dir") {
        let p = e.expect("entry").path();
        let data = std::fs::read(&p).expect("read");
        check::check(&data);
        n += 1;
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        match name {
            "source_udp" => {
                let s = parse(&data).expect("valid seed");
                assert_eq!((s.role, s.udp_encap), (Role::Source, Some(3056)));
                assert_eq!(s.counter("repairs_pending"), Some(18));
            }
            "receiver_raw" => {
                let s = parse(&data).expect("valid seed");
                assert_eq!((s.role, s.group.as_str()), (Role::Receiver, "ff0e::1:2"));
                // Written before the admission counters were appended: they are absent,
                // the older ones still read.
                assert_eq!(s.ncounters, 21);
                assert_eq!(s.counter("filtered"), None);
                assert!(s.counter("retries_exhausted").is_some());
            }
            "receiver_ab" => {
                let s = parse(&data).expect("valid seed");
                assert_eq!(s.role, Role::Receiver);
                let l: Vec<_> = s
                    .lines
                    .iter()
                    .map(|l| (l.iface.as_str(), l.won, l.up))
                    .collect();
                assert_eq!(l, [("eth0", 60, true), ("eth1", 38, false)]);
            }
            "closed" => assert!(parse(&data).expect("valid seed").closed),
            "init" => assert_eq!(parse(&data), Err(xpgm_stats::ParseError::NotReady)),
            _ => {}
        }
    }
    assert!(n >= 5, "corpus seeds missing");
}

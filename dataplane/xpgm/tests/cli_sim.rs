//! `xpgm sim` as a user runs it: the built binary, its JSON and its errors.

use std::process::{Command, Output};

fn xpgm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xpgm"))
        .args(args)
        .output()
        .expect("run xpgm")
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = xpgm(args);
    assert!(
        out.status.success(),
        "xpgm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8 output");
    // Exactly one JSON object, nothing else.
    serde_json::from_str(stdout.trim()).expect("one JSON object")
}

#[test]
fn json_report_has_the_keys_and_full_delivery() {
    let args = [
        "sim",
        "--receivers",
        "4",
        "--loss",
        "2",
        "--messages",
        "300",
        "--size",
        "100",
        "--seed",
        "7",
        "--json",
    ];
    let j = json(&args);
    for k in [
        "delivered",
        "unrecoverable",
        "duplicates",
        "out_of_order",
        "naks_at_source",
        "rdata_sent",
        "ncf_sent",
        "receivers",
        "messages",
    ] {
        assert!(j[k].is_u64(), "key {k} missing or not a count in {j}");
    }
    assert_eq!(j["receivers"], 4);
    assert_eq!(j["messages"], 300);
    assert_eq!(j["delivered"], 1200, "{j}");
    assert_eq!(j["unrecoverable"], 0);
    assert_eq!(j["duplicates"], 0);
    assert_eq!(j["out_of_order"], 0);
    // 2% loss over 1200 deliveries: repairs happened.
    assert!(j["naks_at_source"].as_u64() > Some(0), "{j}");
    assert!(j["rdata_sent"].as_u64() > Some(0), "{j}");
    // Deterministic: the same command prints the same object.
    assert_eq!(json(&args), j);
}

#[test]
fn bursty_loss_and_fragmented_messages_are_delivered() {
    let j = json(&[
        "sim",
        "--receivers",
        "3",
        "--loss",
        "3",
        "--burst",
        "--messages",
        "100",
        "--size",
        "4000",
        "--json",
    ]);
    assert_eq!(j["delivered"], 300, "{j}");
    assert_eq!(j["unrecoverable"], 0);
    // 4000-byte messages need several TPDUs each.
    assert!(j["odata_sent"].as_u64() >= Some(300), "{j}");
}

#[test]
fn human_output_is_a_table() {
    let out = xpgm(&["sim", "--receivers", "2", "--messages", "50"]);
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    for row in [
        "delivered",
        "unrecoverable",
        "duplicates delivered",
        "out-of-order delivered",
        "NAKs received by source",
        "RDATA sent",
        "NCF sent",
    ] {
        assert!(s.contains(row), "no {row:?} row in:\n{s}");
    }
}

#[test]
fn bad_arguments_fail_with_a_clear_message() {
    for (args, needle) in [
        (&["sim", "--loss", "150"][..], "--loss"),
        (&["sim", "--loss", "-3"][..], "--loss"),
        (&["sim", "--loss", "lots"][..], "not a number"),
        (&["sim", "--size", "7"][..], "--size"),
        (&["sim", "--receivers", "0"][..], "--receivers"),
        (&["sim", "--messages", "many"][..], "--messages"),
        (&["sim", "--frobnicate"][..], "--frobnicate"),
        (&["fly"][..], "fly"),
    ] {
        let out = xpgm(args);
        assert!(!out.status.success(), "xpgm {args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "xpgm {args:?}: {err}");
        assert!(out.stdout.is_empty(), "xpgm {args:?} printed to stdout");
    }
}

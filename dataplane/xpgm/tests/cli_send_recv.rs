//! `xpgm send` / `xpgm recv` argument validation: bad input fails fast with a clear
//! message and no network access (no root needed).

use std::process::{Command, Output};

fn xpgm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xpgm"))
        .args(args)
        .output()
        .expect("run xpgm")
}

fn fails_with(args: &[&str], needle: &str) {
    let out = xpgm(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "xpgm {args:?} succeeded");
    assert!(
        err.contains(needle),
        "xpgm {args:?}: stderr {err:?} lacks {needle:?}"
    );
    assert!(out.stdout.is_empty(), "no JSON on failure");
}

#[test]
fn unknown_interface_is_named() {
    for cmd in ["send", "recv"] {
        fails_with(
            &[
                cmd,
                "--iface",
                "nosuchif0",
                "--group",
                "239.1.1.1",
                "--udp-encap",
                "3056",
            ],
            "unknown network interface 'nosuchif0'",
        );
    }
}

#[test]
fn non_multicast_group_is_refused() {
    for cmd in ["send", "recv"] {
        fails_with(
            &[cmd, "--iface", "lo", "--group", "10.0.0.1"],
            "not a multicast address",
        );
        fails_with(
            &[cmd, "--iface", "lo", "--group", "fd00::1"],
            "not a multicast address",
        );
        fails_with(
            &[cmd, "--iface", "lo", "--group", "nonsense"],
            "not an IPv4 or IPv6",
        );
    }
}

#[test]
fn size_below_eight_is_refused() {
    fails_with(
        &[
            "send",
            "--iface",
            "lo",
            "--group",
            "239.1.1.1",
            "--size",
            "7",
        ],
        "--size",
    );
}

#[test]
fn zero_rate_and_zero_encap_port_are_refused() {
    fails_with(
        &[
            "send",
            "--iface",
            "lo",
            "--group",
            "239.1.1.1",
            "--rate",
            "0",
        ],
        "--rate",
    );
    fails_with(
        &[
            "recv",
            "--iface",
            "lo",
            "--group",
            "239.1.1.1",
            "--udp-encap",
            "0",
        ],
        "--udp-encap",
    );
}

#[test]
fn transport_names_are_checked_and_xdp_needs_xpgmd() {
    fails_with(
        &[
            "send",
            "--iface",
            "lo",
            "--group",
            "239.1.1.1",
            "--transport",
            "dpdk",
        ],
        "unknown transport 'dpdk'",
    );
    // No xpgmd behind XPGM_SOCKET: the error says so and how to start it.
    let sock = std::env::temp_dir().join(format!("xpgm-cli-noxpgmd-{}.sock", std::process::id()));
    for cmd in ["send", "recv"] {
        let out = Command::new(env!("CARGO_BIN_EXE_xpgm"))
            .args([
                cmd,
                "--iface",
                "lo",
                "--group",
                "239.1.1.1",
                "--transport",
                "xdp",
            ])
            .env("XPGM_SOCKET", &sock)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "xpgm {cmd} --transport xdp succeeded"
        );
        assert!(err.contains("xpgmd is not running"), "{cmd}: {err}");
        assert!(
            err.contains(&format!("xpgmd --socket {}", sock.display())),
            "{cmd}: {err}"
        );
        assert!(out.stdout.is_empty(), "no JSON on failure");
    }
}

#[test]
fn bad_interface_name_is_refused_by_the_parser() {
    fails_with(
        &["recv", "--iface", "a/b", "--group", "239.1.1.1"],
        "not a valid interface name",
    );
}

#[test]
fn socket_flag_wins_over_xpgm_socket_env() {
    // The xpgmd socket rule shared with xpgmd and xpgmctl: --socket, else
    // $XPGM_SOCKET, else /run/xpgm/xpgmd.sock.
    let pid = std::process::id();
    let flag = std::env::temp_dir().join(format!("xpgm-cli-flag-{pid}.sock"));
    let env = std::env::temp_dir().join(format!("xpgm-cli-env-{pid}.sock"));
    let flag_s = flag.to_string_lossy().into_owned();
    for cmd in ["send", "recv"] {
        let out = Command::new(env!("CARGO_BIN_EXE_xpgm"))
            .args([
                cmd,
                "--iface",
                "lo",
                "--group",
                "239.1.1.1",
                "--transport",
                "xdp",
                "--socket",
                &flag_s,
            ])
            .env("XPGM_SOCKET", &env)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "xpgm {cmd} --transport xdp succeeded"
        );
        assert!(
            err.contains(&format!("xpgmd --socket {flag_s}")),
            "{cmd}: {err}"
        );
        assert!(
            !err.contains(&env.to_string_lossy().into_owned()),
            "{cmd}: {err}"
        );
    }
}

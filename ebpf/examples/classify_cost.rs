//! Prints the classifier's cost per frame as measured by the kernel
//! (`BPF_PROG_TEST_RUN` with `repeat`), for a few kinds of frame.
//! Needs root. `cargo run -p xpgm-ebpf --example classify_cost --release`.

use std::net::Ipv4Addr;

use xpgm_ebpf::Classifier;
use xpgm_ebpf::abi::{Config, Direction, SteerKey, SteerValue};

fn ipv4(proto: u8, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x01, 0, 0x5e, 0x40, 0, 1, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let total = u16::try_from(20 + payload.len()).unwrap_or(u16::MAX);
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0, 16, proto, 0, 0, 10, 77, 0, 1]);
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(payload);
    f
}

fn pgm(ty: u8, sport: u16, dport: u16) -> Vec<u8> {
    let mut p = vec![0u8; 16 + 1024];
    p[0..2].copy_from_slice(&sport.to_be_bytes());
    p[2..4].copy_from_slice(&dport.to_be_bytes());
    p[4] = ty;
    p
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut c = Classifier::load(Config::default())?;
    let group = Ipv4Addr::new(239, 192, 0, 1);
    c.insert_steer(
        SteerKey::new(0, group.into(), 7500, Direction::Downstream),
        SteerValue {
            slot: 0,
            session: 1,
        },
    )?;
    let mut udp = vec![0x0b, 0xef, 0x0b, 0xf0, 0x04, 0x18, 0, 0];
    udp.extend_from_slice(&pgm(0x04, 40001, 7500));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("ARP (non-PGM)", {
            let mut f = vec![0xff; 12];
            f.extend_from_slice(&[0x08, 0x06]);
            f.extend_from_slice(&[0u8; 28]);
            f
        }),
        (
            "TCP (non-PGM)",
            ipv4(6, Ipv4Addr::new(10, 77, 0, 2), &[0u8; 40]),
        ),
        (
            "ODATA, no session",
            ipv4(113, group, &pgm(0x04, 40001, 7501)),
        ),
        ("ODATA, steered", ipv4(113, group, &pgm(0x04, 40001, 7500))),
        ("ODATA over UDP, steered", ipv4(17, group, &udp)),
        (
            "NAK, no flow NLAs",
            ipv4(113, group, &pgm(0x08, 7500, 40001)),
        ),
    ];
    for (name, frame) in cases {
        let (verdict, per_run) = c.test_run_timed(&frame, 1_000_000)?;
        println!(
            "{name:<26} {:>5} bytes  verdict {verdict}  {:>4} ns/frame",
            frame.len(),
            per_run.as_nanos()
        );
    }
    Ok(())
}

//! Compiles the C XDP classifier with clang into `$OUT_DIR/xpgm_classifier.o`,
//! which `src/lib.rs` embeds with `include_bytes!`.
//!
//! Needs `clang` (override with `$CLANG`) and the libbpf headers
//! (`libbpf-dev`); `scripts/test` installs both before building.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let src = manifest.join("bpf/xpgm_classifier.bpf.c");
    let include = manifest.join("include");
    let obj = out.join("xpgm_classifier.o");

    println!("cargo:rerun-if-changed={}", src.display());
    println!(
        "cargo:rerun-if-changed={}",
        include.join("xpgm_abi.h").display()
    );
    println!("cargo:rerun-if-env-changed=CLANG");

    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    // asm/types.h lives under the multiarch include directory on Debian.
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => "aarch64-linux-gnu",
        _ => "x86_64-linux-gnu",
    };
    let status = Command::new(&clang)
        .args(["-target", "bpf", "-g", "-O2", "-Wall", "-Werror"])
        .arg(format!("-I/usr/include/{arch}"))
        .arg("-I")
        .arg(&include)
        .arg("-c")
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{clang} failed to compile the XDP classifier ({s})"),
        Err(e) => panic!(
            "cannot run {clang} ({e}): install clang and libbpf-dev (scripts/test does), or set CLANG"
        ),
    }
}

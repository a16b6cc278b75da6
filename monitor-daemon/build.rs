//! Builds `monitor-ebpf` for the bpf target with Debian's compiler (see `cargo xtask setup`)
//! and leaves the object in `OUT_DIR/monitor` for `include_bytes_aligned!`.

use std::{env, path::PathBuf, process::Command};

const SETUP_HINT: &str = "the eBPF toolchain is missing: run `cargo xtask setup` (installs Debian's \
rustc-web with the bpf core library, bpf-linker 0.13.0 for LLVM 22 and the `debian` rustup toolchain)";

fn fail(what: &str) -> ! {
    // One clear line; cargo prints it under "build script failed".
    eprintln!("error: {SETUP_HINT}; missing: {what}");
    std::process::exit(1);
}

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let ebpf_dir = manifest_dir.join("../monitor-ebpf");
    println!("cargo:rerun-if-changed={}", ebpf_dir.display());
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("../monitor-common/src").display()
    );

    let ok = |mut c: Command| c.output().map(|o| o.status.success()).unwrap_or(false);
    let mut rustc = Command::new("rustup");
    rustc.args(["run", "debian", "rustc", "--version"]);
    if !ok(rustc) {
        fail("the `debian` rustup toolchain (`rustup run debian rustc --version` failed)");
    }
    if !PathBuf::from("/usr/lib/rustlib/bpfel-unknown-none").is_dir() {
        fail("/usr/lib/rustlib/bpfel-unknown-none (Debian package libstd-rust-web-dev-bpf)");
    }
    let mut linker = Command::new("bpf-linker");
    linker.arg("--version");
    if !ok(linker) {
        fail("bpf-linker on PATH");
    }

    // aya-ebpf needs one unstable feature; scope the bootstrap to that crate and to the child
    // build only, so that the outer build's fingerprints do not change.
    // SAFETY: the build script is single-threaded at this point.
    unsafe { env::set_var("RUSTC_BOOTSTRAP", "aya_ebpf") };
    let root_dir = ebpf_dir.to_str().expect("utf-8 path");
    let package = aya_build::Package {
        name: "monitor-ebpf",
        root_dir,
        ..Default::default()
    };
    if let Err(e) = aya_build::build_ebpf([package], aya_build::Toolchain::Custom("debian")) {
        eprintln!("error: building monitor-ebpf failed: {e:#}");
        eprintln!("hint: if the toolchain is incomplete, {SETUP_HINT}");
        std::process::exit(1);
    }
}

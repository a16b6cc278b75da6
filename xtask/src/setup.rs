//! `cargo xtask setup`: the offline eBPF toolchain (docs/developing.md), idempotent.
//!
//! 1. Debian packages: `rustc-web` (rustc 1.96 with LLVM 22), `libstd-rust-web-dev-bpf`
//!    (precompiled `core` for bpfel-unknown-none) and the matching LLVM, in one apt command;
//! 2. `bpf-linker` 0.13.0 built against that LLVM, into `$CARGO_HOME/bin`;
//! 3. the `debian` rustup toolchain linked to `/usr`;
//! 4. `cargo-fuzz` into `$CARGO_HOME/bin`, for the fuzz targets (`cargo xtask fuzz`, and the
//!    few seconds of each that `cargo xtask test` runs). They build with rustup's `nightly`
//!    (AddressSanitizer) when the machine has it (rustup cannot download a toolchain offline),
//!    else with the default toolchain and no sanitizer ([`fuzz_nightly`]).
//!
//! Each step first checks whether it is already done, so a warm machine takes seconds.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

use crate::run;

/// bpf-linker version known to work with aya 0.14 / aya-ebpf 0.2.1.
const BPF_LINKER_VERSION: &str = "0.13.0";
/// LLVM major of Debian's rustc-web when this was written.
const DEFAULT_LLVM: u32 = 22;
/// cargo-fuzz version the fuzz targets were written for.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

fn toolchain_packages(llvm: u32) -> Vec<String> {
    let mut p: Vec<String> = ["rustc-web", "cargo-web", "libstd-rust-web-dev-bpf"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    p.extend([
        format!("llvm-{llvm}-dev"),
        format!("libllvm{llvm}"),
        format!("libpolly-{llvm}-dev"),
        format!("clang-{llvm}"),
        format!("lld-{llvm}"),
    ]);
    p
}

/// Packages the test tiers need at run time: real containers (runc and podman, and
/// busybox-static for their root file systems); `apparmor` for `apparmor_parser`, which checks
/// the AppArmor rules capmon writes (it parses offline, without AppArmor in the kernel);
/// `prometheus` (the server and promtool) for the dashboards' end-to-end test; `systemd` for
/// `systemd-analyze verify` of the unit file;
/// `util-linux` (unshare, setpriv) and `coreutils` are in every Debian base system but are
/// listed so that a minimal image gets them too. `docker.io` and `containerd` are the real
/// Docker Engine and containerd (with `ctr`) the engine tests start and stop themselves;
/// `docker-compose` runs the compose advice on that engine. `seccomp` has libseccomp's
/// `scmp_sys_resolver`, which checks every name of the multi-architecture seccomp profiles
/// (unit tier, `tests/seccomp_arches.rs`). `nginx-light` and `wrk` are the benchmark's real
/// workload (`cargo xtask bench`).
/// The kernel matrix (`cargo xtask vm`): `qemu-system-x86` boots Debian's kernels under TCG,
/// `kmod` (`depmod -b`, `modprobe --show-depends`), `xz-utils` and `cpio` build their
/// initramfs; `crun` is the second OCI runtime, which refuses this hybrid-cgroup host and
/// runs in the guests (pure cgroup2).
const TEST_PACKAGES: &[&str] = &[
    "runc",
    "podman",
    "docker.io",
    "containerd",
    "docker-compose",
    "busybox-static",
    "apparmor",
    "prometheus",
    "systemd",
    "tar",
    "util-linux",
    "coreutils",
    "qemu-system-x86",
    "kmod",
    "cpio",
    "xz-utils",
    "crun",
    "seccomp",
    "nginx-light",
    "wrk",
];

fn quiet(cmd: &mut Command) -> Option<String> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn installed(pkg: &str) -> bool {
    quiet(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))
        .is_some_and(|s| s.trim() == "install ok installed")
}

/// LLVM major of Debian's rustc (`/usr/bin/rustc -vV`).
fn debian_llvm_major() -> Option<u32> {
    let out = quiet(Command::new("/usr/bin/rustc").arg("-vV"))?;
    let line = out.lines().find_map(|l| l.strip_prefix("LLVM version: "))?;
    line.split('.').next()?.trim().parse().ok()
}

fn apt_install(pkgs: &[String]) -> Result<()> {
    let missing: Vec<&String> = pkgs.iter().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!(
        "setup: installing Debian packages: {}",
        missing
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    );
    run(Command::new("apt-get")
        .arg("update")
        .args(crate::apt_verbosity()))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(crate::apt_verbosity())
        .args(missing.iter().map(|s| s.as_str()))
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

pub(crate) fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
}

fn bpf_linker_ok() -> bool {
    let bin = cargo_home().join("bin/bpf-linker");
    let on_path = quiet(Command::new("bpf-linker").arg("--version"));
    let in_home = quiet(Command::new(&bin).arg("--version"));
    on_path
        .or(in_home)
        .is_some_and(|v| v.contains(BPF_LINKER_VERSION))
}

fn debian_toolchain_ok() -> bool {
    quiet(Command::new("rustup").args(["run", "debian", "rustc", "--version"])).is_some()
}

fn cargo_fuzz_ok() -> bool {
    let bin = cargo_home().join("bin/cargo-fuzz");
    let on_path = quiet(Command::new("cargo-fuzz").arg("--version"));
    let in_home = quiet(Command::new(&bin).arg("--version"));
    on_path.or(in_home).is_some()
}

/// Whether the fuzz targets build with rustup's `nightly` and AddressSanitizer (cargo-fuzz's
/// default): when the machine has it. Else they build with the default toolchain and no
/// sanitizer (`-s none`, which needs no nightly feature).
pub fn fuzz_nightly() -> bool {
    quiet(Command::new("rustup").args(["run", "nightly", "rustc", "--version"])).is_some()
}

/// Installs cargo-fuzz unless it is there; says which toolchain the fuzz targets build with.
pub fn ensure_cargo_fuzz() -> Result<()> {
    if !cargo_fuzz_ok() {
        eprintln!("setup: installing cargo-fuzz {CARGO_FUZZ_VERSION} (about a minute)");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        run(Command::new(cargo)
            .args([
                "install",
                "cargo-fuzz",
                "--locked",
                "--version",
                CARGO_FUZZ_VERSION,
            ])
            .arg("--root")
            .arg(cargo_home()))?;
    }
    if !fuzz_nightly() {
        eprintln!(
            "setup: no rustup `nightly` toolchain (rustup cannot download one offline): the fuzz \
             targets build with the default toolchain, without AddressSanitizer"
        );
    }
    Ok(())
}

/// Everything present?
fn complete() -> bool {
    let llvm = debian_llvm_major().unwrap_or(DEFAULT_LLVM);
    toolchain_packages(llvm).iter().all(|p| installed(p))
        && TEST_PACKAGES.iter().all(|p| installed(p))
        && std::path::Path::new("/usr/lib/rustlib/bpfel-unknown-none").is_dir()
        && bpf_linker_ok()
        && debian_toolchain_ok()
        && cargo_fuzz_ok()
}

/// Runs setup only when something is missing.
pub fn ensure() -> Result<()> {
    if complete() { Ok(()) } else { setup() }
}

/// `cargo xtask setup`.
pub fn setup() -> Result<()> {
    let start = Instant::now();
    if std::path::Path::new("/usr/bin/dpkg-query").exists() {
        let llvm = debian_llvm_major().unwrap_or(DEFAULT_LLVM);
        let mut pkgs = toolchain_packages(llvm);
        pkgs.extend(TEST_PACKAGES.iter().map(|s| s.to_string()));
        apt_install(&pkgs)?;
        // rustc-web may have been installed just now, or may have moved to a newer LLVM.
        let actual = debian_llvm_major()
            .context("Debian's /usr/bin/rustc is missing after installing rustc-web")?;
        if actual != llvm {
            apt_install(&toolchain_packages(actual))?;
        }
    } else {
        bail!(
            "this is not a Debian-based system; install the equivalent of Debian's rustc-web and libstd-rust-web-dev-bpf by hand"
        );
    }
    let llvm = debian_llvm_major().context("cannot read the LLVM version of /usr/bin/rustc")?;
    if !debian_toolchain_ok() {
        eprintln!("setup: linking rustup toolchain `debian` to /usr");
        run(Command::new("rustup").args(["toolchain", "link", "debian", "/usr"]))?;
    }
    if !bpf_linker_ok() {
        eprintln!(
            "setup: building bpf-linker {BPF_LINKER_VERSION} for LLVM {llvm} (about 2 minutes)"
        );
        let prefix = format!("/usr/lib/llvm-{llvm}");
        if !std::path::Path::new(&prefix).is_dir() {
            bail!("{prefix} is missing: install llvm-{llvm}-dev to match Debian's rustc");
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
                "--no-default-features",
            ])
            .args(["--features", &format!("llvm-{llvm}")])
            .arg("--root")
            .arg(cargo_home())
            .env("LLVM_PREFIX", &prefix)
            .status()
            .context("cannot run cargo install")?;
        if !status.success() {
            bail!(
                "building bpf-linker {BPF_LINKER_VERSION} with feature llvm-{llvm} failed; if Debian's rustc \
                 moved to an LLVM this bpf-linker release does not support, pick a bpf-linker \
                 release with an `llvm-{llvm}` feature"
            );
        }
    }
    ensure_cargo_fuzz()?;
    if !complete() {
        bail!("setup finished but the toolchain is still incomplete; see the messages above");
    }
    eprintln!(
        "setup: everything is present (LLVM {llvm}, bpf-linker {BPF_LINKER_VERSION}, toolchain `debian`, cargo-fuzz) [{:.1?}]",
        start.elapsed()
    );
    Ok(())
}

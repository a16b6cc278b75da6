//! Running the host tools the matrix needs (apt, dpkg-deb, depmod, modprobe, cpio, xz, qemu),
//! with errors that say which tool is missing and which Debian package provides it.

use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

/// Host programs the matrix runs, and the Debian package of each (`cargo xtask setup`
/// installs them).
pub const REQUIRED: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("depmod", "kmod"),
    ("modprobe", "kmod"),
    ("cpio", "cpio"),
    ("xz", "xz-utils"),
    ("dpkg-deb", "dpkg"),
    ("apt-get", "apt"),
    ("apt-cache", "apt"),
];

/// Whether `program` is on PATH (or in the sbin folders, which a non-root PATH may lack).
pub fn find(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(Into::into))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Fails with one message naming every missing program and its package.
pub fn require_all() -> Result<()> {
    let missing: Vec<String> = REQUIRED
        .iter()
        .filter(|(program, _)| find(program).is_none())
        .map(|(program, package)| format!("{program} (Debian package {package})"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "the kernel matrix needs {}: run `cargo xtask setup` (it installs them)",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Runs `cmd`, its output shown only when it fails.
pub fn run_quiet(cmd: &mut Command) -> Result<()> {
    output_of(cmd).map(|_| ())
}

/// Runs `cmd` and returns its standard output; fails with its standard error.
pub fn output_of(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd` with its output into `log`, killed after `bound`: its exit status, or `None`
/// when it was killed or died of a signal.
pub fn run_bounded(
    cmd: &mut Command,
    log: &std::path::Path,
    bound: std::time::Duration,
) -> Result<Option<i32>> {
    let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status.code());
        }
        if start.elapsed() >= bound {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

//! A root file system with busybox-static and its applets, for runc bundles and images.

use std::{fs, path::Path, process::Command};

use anyhow::{Context, bail};

/// Writes `root/bin/busybox` (from Debian's busybox-static) with a link per applet, and the
/// folders a container expects (`tmp`, `etc` with a hostname, `proc`, `dev`, `sys`).
pub fn busybox(root: &Path) -> anyhow::Result<()> {
    let bin = root.join("bin");
    fs::create_dir_all(&bin).with_context(|| format!("mkdir {}", bin.display()))?;
    for d in ["tmp", "etc", "proc", "dev", "sys"] {
        fs::create_dir_all(root.join(d)).with_context(|| format!("mkdir {d} in the rootfs"))?;
    }
    fs::write(root.join("etc/hostname"), "capmon-test\n").context("write etc/hostname")?;
    fs::copy("/bin/busybox", bin.join("busybox"))
        .context("copy /bin/busybox (Debian package busybox-static: `cargo xtask setup`)")?;
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .context("busybox --list")?;
    if !list.status.success() {
        bail!("busybox --list failed: {list:?}");
    }
    for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", bin.join(applet))
                .with_context(|| format!("link the {applet} applet"))?;
        }
    }
    Ok(())
}

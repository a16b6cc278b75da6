//! The guest's initramfs: busybox-static, the 9p and virtio modules of that kernel
//! (decompressed: busybox's insmod reads plain `.ko` files) and an `/init` that mounts the host's
//! root read-only over 9p, gives it the mounts a production host has (cgroup2 alone at
//! `/sys/fs/cgroup`, bpffs, tracefs, a tmpfs `/tmp` and `/run`), mounts the writable share at
//! [`GUEST_SHARE`], chroots into the host root to run the script the kernel command line names
//! (`capmon_run=...`), and powers off. Cached as `target/vm/kernels/<name>/initramfs.cpio`,
//! rebuilt when its inputs change.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use super::{kernels::Kernel, tools::output_of};

/// Where the share is mounted in the guest (inside its tmpfs `/tmp`).
pub const GUEST_SHARE: &str = "/tmp/capmon-vm";

/// The modules that give the guest its 9p file systems over virtio (with what they need), and
/// the network card of the fleet's guest node (qemu's user network; the others have none).
const MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p", "virtio_net"];

/// busybox-static (Debian package busybox-static).
const BUSYBOX: &str = "/bin/busybox";

/// Folders the guest's `/init` mounts afresh over the host's root (tmpfs and the kernel's
/// file systems): whatever the host has there is hidden in the guests.
pub const HIDDEN_IN_GUESTS: &[&str] = &[
    "/tmp",
    "/run",
    "/proc",
    "/sys",
    "/dev",
    "/var/lib/containers",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/tmp",
];

/// An error when the guests cannot see `workspace` (its binaries, fixtures and deployment
/// files are read there at the paths compiled into the tests).
pub fn check_visible(workspace: &Path) -> Result<()> {
    match HIDDEN_IN_GUESTS.iter().find(|h| workspace.starts_with(h)) {
        Some(h) => bail!(
            "the kernel matrix's guests mount a fresh {h} over the host's, which hides this \
             checkout ({}): clone the repository elsewhere (e.g. under /work or your home), or \
             leave the guests out (`cargo xtask test --no-vm`)",
            workspace.display()
        ),
        None => Ok(()),
    }
}

/// The guest's `/init`.
const INIT: &str = r#"#!/bin/busybox sh
# The capmon kernel-matrix guest (written by `cargo xtask vm`, xtask/src/vm/initramfs.rs).
/bin/busybox --install -s /bin
export PATH=/bin
say() { echo "capmon-vm: $*"; }
stop() { say "$*"; sync; poweroff -f; }
mkdir -p /proc /sys /dev /newroot /share
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in /modules/*.ko; do insmod "$m" || say "insmod $m failed"; done
R=/newroot
o=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o ro,$o,cache=loose hostroot $R || stop "cannot mount the host root over 9p"
mount -t 9p -o $o share /share || stop "cannot mount the share over 9p"
mount -t tmpfs -o mode=1777 tmpfs $R/tmp
mount -t tmpfs -o mode=755 tmpfs $R/run
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts $R/dev/pts
mount -t tmpfs tmpfs $R/dev/shm
# cgroup2 alone, as on production hosts (the build host is hybrid).
mount -t cgroup2 cgroup2 $R/sys/fs/cgroup || stop "cannot mount cgroup2"
mount -t bpf bpf $R/sys/fs/bpf
mount -t tracefs tracefs $R/sys/kernel/tracing
mount -t debugfs debugfs $R/sys/kernel/debug
# Container engines keep their state under /var/lib (and podman's images pass through
# /var/tmp): writable, empty, as on a fresh host.
for d in lib/containers lib/docker lib/containerd tmp; do
    [ -d $R/var/$d ] && mount -t tmpfs -o mode=1777 tmpfs $R/var/$d
done
mkdir -p $R@SHARE@
mount --move /share $R@SHARE@
ip link set lo up
hostname capmon-vm
[ -n "$capmon_run" ] || stop "no capmon_run= on the kernel command line"
say "running $capmon_run"
chroot $R /bin/sh @SHARE@/$capmon_run
say "$capmon_run exited $?"
sync
poweroff -f
"#;

fn init_script() -> String {
    INIT.replace("@SHARE@", GUEST_SHARE)
}

/// The module files `modprobe --show-depends` lists, in load order, each once.
pub fn parse_show_depends(text: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("insmod") {
            continue; // `builtin NAME`: nothing to load
        }
        if let Some(path) = words.next().map(PathBuf::from)
            && !out.contains(&path)
        {
            out.push(path);
        }
    }
    out
}

/// The modules the guest loads, from the kernel's own dependency data (`depmod -b` ran).
fn module_files(kernel: &Kernel) -> Result<Vec<PathBuf>> {
    let text = output_of(
        Command::new(super::tools::find("modprobe").unwrap_or_else(|| "modprobe".into()))
            .arg("-d")
            .arg(&kernel.root)
            .args(["-S", &kernel.release, "--show-depends", "-a"])
            .args(MODULES),
    )?;
    Ok(parse_show_depends(&text))
}

/// Copies `module` into `dest` as a plain `.ko`.
fn decompress_module(module: &Path, dest: &Path) -> Result<()> {
    let name = module.to_string_lossy();
    if name.ends_with(".ko") {
        fs::copy(module, dest).with_context(|| format!("copying {name}"))?;
        return Ok(());
    }
    if !name.ends_with(".ko.xz") {
        bail!("{name}: only .ko and .ko.xz modules are supported");
    }
    let out = Command::new("xz")
        .arg("-dc")
        .arg(module)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("xz -dc {name} (Debian package xz-utils)"))?;
    if !out.status.success() {
        bail!("xz -dc {name} failed");
    }
    fs::write(dest, out.stdout).with_context(|| format!("writing {}", dest.display()))
}

/// What the archive is built from: when it changes, the cached archive is rebuilt.
fn stamp(modules: &[PathBuf]) -> Result<String> {
    let busybox = fs::metadata(BUSYBOX)
        .with_context(|| format!("{BUSYBOX} is missing (Debian package busybox-static)"))?;
    let mut s = format!("busybox {}\n", busybox.len());
    for m in modules {
        s.push_str(&format!("module {}\n", m.display()));
    }
    s.push_str(&init_script());
    Ok(s)
}

/// Lays out the archive's files under `staging`.
fn stage(staging: &Path, modules: &[PathBuf]) -> Result<()> {
    let _ = fs::remove_dir_all(staging);
    for d in ["bin", "modules", "proc", "sys", "dev", "newroot", "share"] {
        fs::create_dir_all(staging.join(d))?;
    }
    fs::copy(BUSYBOX, staging.join("bin/busybox")).context("copying busybox")?;
    for (i, module) in modules.iter().enumerate() {
        let file = module
            .file_name()
            .and_then(|n| n.to_str())
            .context("module name")?;
        let plain = file.trim_end_matches(".xz");
        // The number keeps modprobe's load order in the guest's `/modules/*.ko` glob.
        decompress_module(module, &staging.join(format!("modules/{i:02}-{plain}")))?;
    }
    let init = staging.join("init");
    fs::write(&init, init_script())?;
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Every path under `dir`, relative, parents first (cpio's input).
fn walk(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir.join(rel))?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = rel.join(e.file_name());
        out.push(path.clone());
        if e.file_type()?.is_dir() {
            walk(dir, &path, out)?;
        }
    }
    Ok(())
}

/// `cpio -o -H newc` of `staging` into `archive`.
fn pack(staging: &Path, archive: &Path) -> Result<()> {
    let mut names = Vec::new();
    walk(staging, Path::new(""), &mut names)?;
    let list: String = names.iter().map(|p| format!("{}\n", p.display())).collect();
    let file =
        fs::File::create(archive).with_context(|| format!("creating {}", archive.display()))?;
    let mut child = Command::new("cpio")
        .current_dir(staging)
        .args(["-o", "-H", "newc", "--quiet", "-R", "0:0"])
        .stdin(Stdio::piped())
        .stdout(file)
        .spawn()
        .context("cannot run cpio (Debian package cpio)")?;
    child
        .stdin
        .take()
        .context("cpio stdin")?
        .write_all(list.as_bytes())?;
    let status = child.wait()?;
    if !status.success() {
        bail!("cpio failed: {status}");
    }
    Ok(())
}

/// The kernel's initramfs, built unless the cached one is current.
pub fn ensure(kernel: &Kernel) -> Result<PathBuf> {
    let modules = module_files(kernel)?;
    if modules.is_empty() {
        bail!(
            "modprobe finds none of {MODULES:?} for {}: are they built in? the guest cannot mount 9p",
            kernel.release
        );
    }
    let archive = kernel.dir.join("initramfs.cpio");
    let stamp_file = kernel.dir.join("initramfs.stamp");
    let want = stamp(&modules)?;
    if archive.is_file() && fs::read_to_string(&stamp_file).is_ok_and(|s| s == want) {
        return Ok(archive);
    }
    let staging = kernel.dir.join("initramfs.d");
    stage(&staging, &modules)?;
    pack(&staging, &archive)?;
    fs::write(&stamp_file, want)?;
    fs::remove_dir_all(&staging)?;
    Ok(archive)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkout_the_guests_cannot_see_is_refused() {
        assert!(check_visible(Path::new("/work/main")).is_ok());
        assert!(check_visible(Path::new("/tmpfoo/main")).is_ok());
        let err = check_visible(Path::new("/tmp/fresh"))
            .expect_err("/tmp is hidden in the guests")
            .to_string();
        assert!(
            err.contains("fresh /tmp") && err.contains("/tmp/fresh"),
            "{err}"
        );
        assert!(check_visible(Path::new("/var/tmp/x")).is_err());
    }

    #[test]
    fn show_depends_gives_each_module_once_in_load_order() {
        let text = "\
insmod /k/lib/modules/6.12/kernel/fs/netfs/netfs.ko.xz 
insmod /k/lib/modules/6.12/kernel/net/9p/9pnet.ko.xz 
insmod /k/lib/modules/6.12/kernel/fs/9p/9p.ko.xz 
insmod /k/lib/modules/6.12/kernel/fs/netfs/netfs.ko.xz 
insmod /k/lib/modules/6.12/kernel/net/9p/9pnet.ko.xz 
insmod /k/lib/modules/6.12/kernel/net/9p/9pnet_virtio.ko.xz 
builtin virtio_pci
";
        let names: Vec<String> = parse_show_depends(text)
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "netfs.ko.xz",
                "9pnet.ko.xz",
                "9p.ko.xz",
                "9pnet_virtio.ko.xz"
            ]
        );
    }

    #[test]
    fn the_init_mounts_cgroup2_alone_and_the_share() {
        let init = init_script();
        assert!(init.contains("mount -t cgroup2 cgroup2 $R/sys/fs/cgroup"));
        assert!(!init.contains("-t cgroup "), "no cgroup v1 hierarchy");
        assert!(init.contains(&format!("mount --move /share $R{GUEST_SHARE}")));
        assert!(!init.contains('@'), "every placeholder is filled");
    }
}

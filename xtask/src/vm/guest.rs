//! Booting one guest under qemu TCG (KVM does not work on the build machines): the kernel, its
//! initramfs, the host's root read-only over 9p and the writable share, no network (or, for the
//! fleet's guest node, qemu's restricted user network with one port forwarded). The guest
//! runs the script named on its command line and powers off; a guest that does not within the
//! bound is killed.

use std::{
    fs,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

/// How one boot ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// qemu exited by itself (the guest powered off, or panicked: `panic=-1` reboots, and
    /// `-no-reboot` turns that into an exit).
    Stopped,
    /// Killed after the bound.
    TimedOut(Duration),
}

/// One boot.
pub struct Boot<'a> {
    pub vmlinuz: &'a Path,
    pub initramfs: &'a Path,
    /// Host folder the guest sees, writable, at [`super::initramfs::GUEST_SHARE`].
    pub share: &'a Path,
    /// The script to run, relative to the share.
    pub script: &'a str,
    /// Where the serial console goes.
    pub console: PathBuf,
    pub timeout: Duration,
    /// `-accel tcg,thread=`: `single` or `multi`.
    pub tcg: &'a str,
    /// A network card on qemu's user network, restricted (the guest reaches nothing outside),
    /// with the host's `127.0.0.1:.0` forwarded to the guest's `10.0.2.15:.1`.
    pub forward: Option<(u16, u16)>,
}

/// The guest's address on qemu's user network (set by the fleet guest's script).
pub const GUEST_ADDR: &str = "10.0.2.15";

/// Guest memory (MiB) and CPUs.
const MEMORY_MIB: u32 = 2048;
const CPUS: u32 = 2;

impl Boot<'_> {
    fn command(&self) -> Command {
        let mut c = Command::new("qemu-system-x86_64");
        c.args(["-accel", &format!("tcg,thread={}", self.tcg), "-cpu", "max"])
            .args(["-m", &MEMORY_MIB.to_string(), "-smp", &CPUS.to_string()])
            .args(["-nographic", "-no-reboot"])
            .arg("-kernel")
            .arg(self.vmlinuz)
            .arg("-initrd")
            .arg(self.initramfs)
            .arg("-append")
            // tsc=reliable: TCG's vCPUs' TSCs look unsynchronized to 6.1, which then falls back
            // to the HPET, and clock_gettime leaves the vDSO for a real syscall (unlike on any
            // production host, and unlike the tests' expectations of runc's syscalls).
            .arg(format!(
                "console=ttyS0 rdinit=/init panic=-1 mitigations=off quiet tsc=reliable \
                 capmon_run={}",
                self.script
            ))
            .args([
                "-fsdev",
                "local,id=hr,path=/,security_model=none,readonly=on,multidevs=remap",
                "-device",
                "virtio-9p-pci,fsdev=hr,mount_tag=hostroot",
                "-fsdev",
            ])
            .arg(format!(
                "local,id=sh,path={},security_model=none,multidevs=remap",
                self.share.display()
            ))
            .args(["-device", "virtio-9p-pci,fsdev=sh,mount_tag=share"]);
        match self.forward {
            None => c.args(["-net", "none"]),
            Some((host, guest)) => c
                .arg("-netdev")
                .arg(format!(
                    "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{host}-{GUEST_ADDR}:{guest}"
                ))
                .args(["-device", "virtio-net-pci,netdev=n0"]),
        };
        c
    }

    /// Boots, waits for the guest to power off or for the bound, and returns how it ended.
    pub fn run(&self) -> Result<Exit> {
        let console = fs::File::create(&self.console)
            .with_context(|| format!("creating {}", self.console.display()))?;
        let mut cmd = self.command();
        // SAFETY: the closure runs in the child between fork and exec and only makes one
        // async-signal-safe call.
        unsafe {
            // A guest dies with the thread that boots it (an interrupted `cargo xtask vm`
            // leaves no qemu running).
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(console.try_clone()?)
            .stderr(console)
            .spawn()
            .context("cannot start qemu-system-x86_64 (Debian package qemu-system-x86)")?;
        let start = Instant::now();
        loop {
            if child.try_wait()?.is_some() {
                return Ok(Exit::Stopped);
            }
            if start.elapsed() >= self.timeout {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(Exit::TimedOut(start.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// `text` without terminal escape sequences (as SeaBIOS prints) and
/// carriage returns.
pub fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // `ESC [ parameters letter`, or `ESC letter` (such as `ESC c`, reset).
                if chars.next() == Some('[') {
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// The last `n` non-empty lines of the console.
pub fn console_tail(console: &Path, n: usize) -> String {
    let text = strip_escapes(&String::from_utf8_lossy(
        &fs::read(console).unwrap_or_default(),
    ));
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot(forward: Option<(u16, u16)>) -> Vec<String> {
        let boot = Boot {
            vmlinuz: Path::new("/k"),
            initramfs: Path::new("/i"),
            share: Path::new("/s"),
            script: "x/run.sh",
            console: "/c".into(),
            timeout: Duration::from_secs(1),
            tcg: "single",
            forward,
        };
        boot.command()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn no_network_unless_a_port_is_forwarded_from_loopback() {
        let args = boot(None).join(" ");
        assert!(args.contains("-net none"), "{args}");
        let args = boot(Some((40123, 9477))).join(" ");
        assert!(!args.contains("-net none"), "{args}");
        assert!(
            args.contains(
                "-netdev user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:40123-10.0.2.15:9477 \
                 -device virtio-net-pci,netdev=n0"
            ),
            "{args}"
        );
    }

    #[test]
    fn escapes_and_carriage_returns_go() {
        assert_eq!(
            strip_escapes("Booting from ROM..\u{1b}c\u{1b}[?7l\u{1b}[2Jcapmon-vm: running\r\nok"),
            "Booting from ROM..capmon-vm: running\nok"
        );
    }
}

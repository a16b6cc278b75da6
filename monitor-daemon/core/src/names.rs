//! Names for capability numbers, syscall numbers and errno values, from maintained tables:
//! the `caps` crate for capabilities, the `syscalls` crate (generated from the kernel's syscall
//! tables) for syscalls, and `nix` for errno names.

use std::str::FromStr;

/// Architectures whose syscall tables capmon knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// x86_64 (64-bit syscalls only).
    X86_64,
    /// aarch64.
    Aarch64,
}

impl Arch {
    /// The architecture capmon was built for.
    pub const fn host() -> Self {
        #[cfg(target_arch = "aarch64")]
        {
            Arch::Aarch64
        }
        #[cfg(not(target_arch = "aarch64"))]
        {
            Arch::X86_64
        }
    }

    /// The libseccomp/Docker name of the architecture (`SCMP_ARCH_X86_64`).
    pub const fn scmp_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "SCMP_ARCH_X86_64",
            Arch::Aarch64 => "SCMP_ARCH_AARCH64",
        }
    }

    /// Go's name of the architecture (`amd64`), as Docker profiles' `includes.arches` use it.
    pub const fn go_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// Every architecture capmon knows.
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// `x86_64`, `aarch64`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// Parses `x86_64`/`amd64`/`SCMP_ARCH_X86_64`, `aarch64`/`arm64`/`SCMP_ARCH_AARCH64`.
    pub fn parse(text: &str) -> Option<Self> {
        Arch::ALL.into_iter().find(|a| {
            text == a.as_str()
                || text == a.go_name()
                || text == a.scmp_name()
                || (text == "x86-64" && *a == Arch::X86_64)
        })
    }

    /// Name of syscall `nr` on this architecture, as in the kernel's syscall table.
    pub fn syscall_name(self, nr: u32) -> Option<&'static str> {
        let nr = usize::try_from(nr).ok()?;
        match self {
            Arch::X86_64 => syscalls::x86_64::Sysno::new(nr).map(|s| s.name()),
            // The crate's aarch64 table is corrected (`newfstatat`, no `*_time64`): see `abi`.
            Arch::Aarch64 => crate::abi::aarch64_name(nr),
        }
    }

    /// Every syscall name of this architecture's table.
    pub fn syscall_names(self) -> Vec<&'static str> {
        crate::abi::Abi::of(self).syscall_names()
    }

    /// Number of syscall `name` on this architecture.
    pub fn syscall_number(self, name: &str) -> Option<u32> {
        match self {
            Arch::X86_64 => u32::try_from(syscalls::x86_64::Sysno::from_str(name).ok()?.id()).ok(),
            Arch::Aarch64 => u32::try_from(crate::abi::aarch64_number(name)?).ok(),
        }
    }
}

/// Whether `name` is a syscall on any architecture the kernel supports (Docker profiles list
/// syscalls of every architecture; each architecture ignores the names it does not have).
pub fn syscall_known_anywhere(name: &str) -> bool {
    use syscalls::{
        aarch64, arm, loongarch64, mips, mips64, powerpc, powerpc64, riscv32, riscv64, s390x,
        sparc, sparc64, x86, x86_64,
    };
    crate::abi::ARM_PRIVATE.contains(&name)
        || x86_64::Sysno::from_str(name).is_ok()
        || aarch64::Sysno::from_str(name).is_ok()
        || x86::Sysno::from_str(name).is_ok()
        || arm::Sysno::from_str(name).is_ok()
        || loongarch64::Sysno::from_str(name).is_ok()
        || mips::Sysno::from_str(name).is_ok()
        || mips64::Sysno::from_str(name).is_ok()
        || powerpc::Sysno::from_str(name).is_ok()
        || powerpc64::Sysno::from_str(name).is_ok()
        || riscv32::Sysno::from_str(name).is_ok()
        || riscv64::Sysno::from_str(name).is_ok()
        || s390x::Sysno::from_str(name).is_ok()
        || sparc::Sysno::from_str(name).is_ok()
        || sparc64::Sysno::from_str(name).is_ok()
}

/// Capability names by number, from the `caps` crate's table (built once: this is on the
/// daemon's hot path).
fn cap_table() -> &'static [Option<String>; 64] {
    static TABLE: std::sync::OnceLock<[Option<String>; 64]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t: [Option<String>; 64] = std::array::from_fn(|_| None);
        for c in caps::all() {
            if let Some(slot) = t.get_mut(usize::from(c.index())) {
                *slot = Some(c.to_string());
            }
        }
        t
    })
}

/// `CAP_CHOWN` for 0, ...; `CAP_<n>` for a number newer than the table.
pub fn capability_name(cap: u32) -> String {
    cap_table()
        .get(cap as usize)
        .and_then(|n| n.clone())
        .unwrap_or_else(|| format!("CAP_{cap}"))
}

/// Capability number of `CAP_CHOWN`, `chown` or `cap_chown`.
pub fn capability_number(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let canonical = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    cap_table()
        .iter()
        .position(|n| n.as_deref() == Some(canonical.as_str()))
        .map(|i| i as u32)
}

/// `EPERM` for 1, ...; `E<n>` for an unknown number.
pub fn errno_name(errno: u32) -> String {
    let Ok(raw) = i32::try_from(errno) else {
        return format!("E{errno}");
    };
    match nix::errno::Errno::from_raw(raw) {
        nix::errno::Errno::UnknownErrno => format!("E{errno}"),
        e => format!("{e:?}"),
    }
}

/// A task's `comm` bytes (as the kernel side copies them) up to the first NUL, as text.
pub fn comm_str(comm: &[u8]) -> String {
    String::from_utf8_lossy(monitor_common::comm_bytes(comm)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names_match_the_kernel_numbering() {
        assert_eq!(capability_name(0), "CAP_CHOWN");
        assert_eq!(capability_name(13), "CAP_NET_RAW");
        assert_eq!(capability_name(21), "CAP_SYS_ADMIN");
        assert_eq!(capability_name(39), "CAP_BPF");
        assert_eq!(capability_name(40), "CAP_CHECKPOINT_RESTORE");
        assert_eq!(capability_name(63), "CAP_63");
    }

    #[test]
    fn capability_numbers_from_any_spelling() {
        assert_eq!(capability_number("CAP_CHOWN"), Some(0));
        assert_eq!(capability_number("net_raw"), Some(13));
        assert_eq!(capability_number("CAP_NOPE"), None);
    }

    #[test]
    fn syscall_names_per_architecture() {
        assert_eq!(Arch::X86_64.syscall_name(0), Some("read"));
        assert_eq!(Arch::X86_64.syscall_name(260), Some("fchownat"));
        assert_eq!(Arch::X86_64.syscall_name(268), Some("fchmodat"));
        assert_eq!(Arch::Aarch64.syscall_name(54), Some("fchownat"));
        assert_eq!(Arch::Aarch64.syscall_name(63), Some("read"));
        assert_eq!(Arch::X86_64.syscall_name(100_000), None);
        assert_eq!(Arch::X86_64.syscall_number("fchownat"), Some(260));
        assert_eq!(Arch::Aarch64.syscall_number("openat"), Some(56));
        assert_eq!(Arch::Aarch64.syscall_number("open"), None);
        // The kernel's name, not the `syscalls` crate's `fstatat`.
        assert_eq!(Arch::Aarch64.syscall_name(79), Some("newfstatat"));
        assert_eq!(Arch::Aarch64.syscall_number("newfstatat"), Some(79));
        assert_eq!(
            Arch::Aarch64.syscall_name(403),
            None,
            "clock_gettime64 is 32-bit only"
        );
    }

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(1), "EPERM");
        assert_eq!(errno_name(13), "EACCES");
        assert_eq!(errno_name(38), "ENOSYS");
        assert_eq!(errno_name(9999), "E9999");
    }
}

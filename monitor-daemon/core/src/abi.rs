//! The syscall ABIs a seccomp profile can name (libseccomp's `SCMP_ARCH_X86_64`, `_X86`,
//! `_X32`, `_AARCH64`, `_ARM`) and which syscall names exist on each: the kernel's tables as
//! the `syscalls` crate has them, with its mistakes corrected where libseccomp and the kernel
//! disagree with it.
//!
//! | ABI | names |
//! | --- | --- |
//! | x86_64 | the crate's `x86_64` table |
//! | x86 | the crate's `x86` table (i386) without `break` (17, never implemented; the crate spells it `r#break`) |
//! | x32 | the crate's `x86_64` table less [`X32_MISSING`] (64-bit-only entries of the kernel's `syscall_64.tbl` that have no x32 entry); the crate has no x32 table |
//! | aarch64 | the crate's `aarch64` table with `fstatat` (79) named `newfstatat`, as the kernel and libseccomp name it, and without 403-423 (the `*_time64` calls asm-generic numbers for 32-bit architectures only) |
//! | arm | the crate's `arm` table (EABI) plus [`ARM_PRIVATE`] (`__ARM_NR_*`) |
//!
//! `tests/seccomp_arches.rs` checks these tables against libseccomp's `scmp_sys_resolver`.

use std::{fmt, str::FromStr};

use crate::names::Arch;

/// 32-bit ARM's private syscalls (`__ARM_NR_*`, numbered from 0x0f0000), which libseccomp
/// names but the kernel's generic tables (and so the `syscalls` crate) do not.
pub const ARM_PRIVATE: &[&str] = &["breakpoint", "cacheflush", "set_tls", "usr26", "usr32"];

/// x86_64 names that do not exist on x32: entries of the kernel's `syscall_64.tbl` marked
/// `64` with no `x32` counterpart (those with one, `rt_sigaction` and the like, keep their
/// names on x32).
pub const X32_MISSING: &[&str] = &[
    "_sysctl",
    "create_module",
    "epoll_ctl_old",
    "epoll_wait_old",
    "get_kernel_syms",
    "get_thread_area",
    "map_shadow_stack",
    "nfsservctl",
    "query_module",
    "set_thread_area",
    "uprobe",
    "uretprobe",
    "uselib",
    "vserver",
];

/// The number the `syscalls` crate's aarch64 table calls `fstatat`: the kernel's (and
/// libseccomp's) `newfstatat`.
const AARCH64_NEWFSTATAT: usize = 79;

/// Numbers the `syscalls` crate's aarch64 table lists but arm64 does not have: asm-generic
/// defines `clock_gettime64` (403) ... `sched_rr_get_interval_time64` (423) for 32-bit
/// architectures only.
const AARCH64_NOT_SYSCALLS: std::ops::RangeInclusive<usize> = 403..=423;

/// Name of syscall `nr` on aarch64, corrected (see the module's table).
pub(crate) fn aarch64_name(nr: usize) -> Option<&'static str> {
    if AARCH64_NOT_SYSCALLS.contains(&nr) {
        return None;
    }
    if nr == AARCH64_NEWFSTATAT {
        return Some("newfstatat");
    }
    syscalls::aarch64::Sysno::new(nr).map(|s| s.name())
}

/// Number of syscall `name` on aarch64, corrected; `fstatat` is still taken for 79 (reports
/// written before the correction name it so) but never written.
pub(crate) fn aarch64_number(name: &str) -> Option<usize> {
    if name == "newfstatat" {
        return Some(AARCH64_NEWFSTATAT);
    }
    let nr = syscalls::aarch64::Sysno::from_str(name).ok()?.id();
    let nr = usize::try_from(nr).ok()?;
    (!AARCH64_NOT_SYSCALLS.contains(&nr)).then_some(nr)
}

/// A syscall ABI a seccomp profile can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Abi {
    /// x86_64.
    X86_64,
    /// 32-bit x86 (i386), which x86_64 kernels run as a compat ABI.
    X86,
    /// x32 (32-bit pointers on x86_64 syscalls), a compat ABI of x86_64 kernels.
    X32,
    /// aarch64 (arm64).
    Aarch64,
    /// 32-bit ARM (EABI), which arm64 kernels run as a compat ABI.
    Arm,
}

impl Abi {
    /// Every ABI, in the order profiles list them (Docker's `archMap` order).
    pub const ALL: [Abi; 5] = [Abi::X86_64, Abi::X86, Abi::X32, Abi::Aarch64, Abi::Arm];

    /// libseccomp's name (`scmp_sys_resolver -a`): `x86_64`, `x86`, `x32`, `aarch64`, `arm`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Abi::X86_64 => "x86_64",
            Abi::X86 => "x86",
            Abi::X32 => "x32",
            Abi::Aarch64 => "aarch64",
            Abi::Arm => "arm",
        }
    }

    /// The `SCMP_ARCH_` name profiles use.
    pub const fn scmp_name(self) -> &'static str {
        match self {
            Abi::X86_64 => "SCMP_ARCH_X86_64",
            Abi::X86 => "SCMP_ARCH_X86",
            Abi::X32 => "SCMP_ARCH_X32",
            Abi::Aarch64 => "SCMP_ARCH_AARCH64",
            Abi::Arm => "SCMP_ARCH_ARM",
        }
    }

    /// The name Docker profiles use in `includes.arches`, as Docker's default profile does
    /// (`amd64`, `x86`, `x32`, `arm64`, `arm`); Docker compares it with the host's
    /// architecture (`amd64` on an x86_64 host, `x86` on an i386 one).
    pub const fn docker_name(self) -> &'static str {
        match self {
            Abi::X86_64 => "amd64",
            Abi::X86 => "x86",
            Abi::X32 => "x32",
            Abi::Aarch64 => "arm64",
            Abi::Arm => "arm",
        }
    }

    /// The 64-bit ABI whose kernels run this one as a compat ABI (`x86_64` for x86 and x32,
    /// `aarch64` for arm); itself for a 64-bit ABI.
    pub const fn main(self) -> Abi {
        match self {
            Abi::X86_64 | Abi::X86 | Abi::X32 => Abi::X86_64,
            Abi::Aarch64 | Abi::Arm => Abi::Aarch64,
        }
    }

    /// Whether the ABI has 32-bit `long`s and `time_t`s of its own (x86, arm): its libc uses
    /// the 64-bit-file, 32-bit-id and `*_time64` variants of the calls.
    pub const fn is_ilp32_legacy(self) -> bool {
        matches!(self, Abi::X86 | Abi::Arm)
    }

    /// The ABI syscall numbers recorded on `arch` belong to.
    pub const fn of(arch: Arch) -> Abi {
        match arch {
            Arch::X86_64 => Abi::X86_64,
            Arch::Aarch64 => Abi::Aarch64,
        }
    }

    /// The name `name` has in this ABI's table (the same text, with the table's lifetime),
    /// or `None` when the ABI has no such syscall.
    pub fn syscall(self, name: &str) -> Option<&'static str> {
        if name.starts_with("r#") {
            return None;
        }
        let found = match self {
            Abi::X86_64 => syscalls::x86_64::Sysno::from_str(name)
                .ok()
                .map(|s| s.name()),
            Abi::X32 if X32_MISSING.contains(&name) => None,
            Abi::X32 => Abi::X86_64.syscall(name),
            Abi::X86 => syscalls::x86::Sysno::from_str(name).ok().map(|s| s.name()),
            Abi::Aarch64 => aarch64_number(name).and_then(aarch64_name),
            Abi::Arm => syscalls::arm::Sysno::from_str(name)
                .ok()
                .map(|s| s.name())
                .or_else(|| ARM_PRIVATE.iter().find(|p| **p == name).copied()),
        };
        // Only the name itself (aarch64 still reads `fstatat` as 79 but calls it newfstatat).
        found.filter(|f| *f == name)
    }

    /// Whether the ABI has syscall `name`.
    pub fn has(self, name: &str) -> bool {
        self.syscall(name).is_some()
    }

    /// Every syscall name of the ABI.
    pub fn syscall_names(self) -> Vec<&'static str> {
        match self {
            Abi::X86_64 => syscalls::x86_64::Sysno::iter().map(|s| s.name()).collect(),
            Abi::X32 => Abi::X86_64
                .syscall_names()
                .into_iter()
                .filter(|n| !X32_MISSING.contains(n))
                .collect(),
            // The crate spells x86's never-implemented `break` (17) `r#break`.
            Abi::X86 => syscalls::x86::Sysno::iter()
                .map(|s| s.name())
                .filter(|n| !n.starts_with("r#"))
                .collect(),
            Abi::Aarch64 => syscalls::aarch64::Sysno::iter()
                .filter_map(|s| usize::try_from(s.id()).ok().and_then(aarch64_name))
                .collect(),
            Abi::Arm => syscalls::arm::Sysno::iter()
                .map(|s| s.name())
                .chain(ARM_PRIVATE.iter().copied())
                .collect(),
        }
    }

    /// Parses one word of an architecture list: `x86_64`/`amd64`/`x86-64`,
    /// `aarch64`/`arm64`, `x86`/`i386`/`i686`/`386`, `x32`, `arm`/`armhf`, or a
    /// `SCMP_ARCH_` name; case does not matter.
    pub fn parse(word: &str) -> Option<Abi> {
        let w = word.trim().to_ascii_lowercase();
        let w = w.strip_prefix("scmp_arch_").unwrap_or(&w);
        Some(match w {
            "x86_64" | "amd64" | "x86-64" => Abi::X86_64,
            "x86" | "i386" | "i686" | "386" => Abi::X86,
            "x32" => Abi::X32,
            "aarch64" | "arm64" => Abi::Aarch64,
            "arm" | "armhf" => Abi::Arm,
            _ => return None,
        })
    }
}

impl fmt::Display for Abi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_corrected_where_the_crate_is_wrong() {
        assert!(Abi::Aarch64.has("newfstatat") && !Abi::Aarch64.has("fstatat"));
        assert!(!Abi::Aarch64.has("clock_gettime64") && Abi::Arm.has("clock_gettime64"));
        assert!(!Abi::Aarch64.has("futex_time64") && Abi::Aarch64.has("futex"));
        let names = Abi::Aarch64.syscall_names();
        assert!(names.contains(&"newfstatat") && !names.contains(&"fstatat"));
        assert!(!names.iter().any(|n| n.ends_with("_time64")), "{names:?}");
        assert_eq!(
            aarch64_number("fstatat"),
            Some(79),
            "old reports still read"
        );
        assert!(Abi::X32.has("read") && Abi::X32.has("arch_prctl"));
        assert!(!Abi::X32.has("set_thread_area") && Abi::X86_64.has("set_thread_area"));
        assert!(Abi::Arm.has("set_tls") && !Abi::X86.has("set_tls"));
        assert!(Abi::X86.has("mmap2") && !Abi::X86_64.has("mmap2"));
        for abi in Abi::ALL {
            for name in abi.syscall_names() {
                assert_eq!(abi.syscall(name), Some(name), "{abi} {name}");
            }
        }
    }

    #[test]
    fn every_x32_exclusion_is_an_x86_64_name() {
        for name in X32_MISSING {
            assert!(Abi::X86_64.has(name), "{name}");
        }
    }

    #[test]
    fn words_parse() {
        for (word, abi) in [
            ("x86_64", Abi::X86_64),
            ("AMD64", Abi::X86_64),
            ("arm64", Abi::Aarch64),
            ("aarch64", Abi::Aarch64),
            ("i386", Abi::X86),
            ("x86", Abi::X86),
            ("x32", Abi::X32),
            ("arm", Abi::Arm),
            ("SCMP_ARCH_ARM", Abi::Arm),
        ] {
            assert_eq!(Abi::parse(word), Some(abi), "{word}");
        }
        assert_eq!(Abi::parse("mips"), None);
        for abi in Abi::ALL {
            assert_eq!(Abi::parse(abi.as_str()), Some(abi));
            assert_eq!(Abi::parse(abi.scmp_name()), Some(abi));
        }
    }
}

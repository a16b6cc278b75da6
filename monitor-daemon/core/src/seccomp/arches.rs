//! Which architectures a profile is for ([`ArchList`], `--arch LIST`), and what an observed
//! syscall corresponds to on each of them ([`translate`]).
//!
//! A syscall seen on one architecture is written for another as follows (every name written
//! is checked against that ABI's table, [`Abi::syscall`]; a name the ABI lacks is never
//! written):
//!
//! 1. A name the target has maps to itself.
//! 2. A name it lacks maps to the calls libcs make there instead ([`REPLACEMENTS`]:
//!    `open` -> `openat`, `stat` -> `newfstatat`, `fork` -> `clone`, ...), those of them the
//!    target has.
//! 3. On x86 and arm (32-bit `long` and `time_t`), the observed name and its replacements also
//!    bring the variants their libcs call ([`ILP32_VARIANTS`]: `fstat` -> `fstat64`, `mmap` ->
//!    `mmap2`, `lseek` -> `_llseek`, `getuid` -> `getuid32`, `clock_gettime` ->
//!    `clock_gettime64`, ...; `arch_prctl` -> `set_thread_area` on x86, `set_tls` on arm).
//! 4. Nothing else: a call with no counterpart (`arch_prctl`, `iopl`, `modify_ldt` on arm64;
//!    `uselib`, `sysfs`, `ustat`, `_sysctl` wherever they are gone) is left out.

use std::{collections::BTreeSet, fmt, str::FromStr};

use crate::{abi::Abi, names::Arch};

/// Calls an architecture lacks and what libcs call there instead (step 2), in the order
/// written. Only the replacements the target has are written.
pub const REPLACEMENTS: &[(&str, &[&str])] = &[
    ("open", &["openat"]),
    ("creat", &["openat"]),
    // 64-bit generic ABIs: newfstatat; x86 and arm have stat themselves.
    ("stat", &["newfstatat"]),
    ("lstat", &["newfstatat"]),
    // access() has no flags: glibc and musl call faccessat (faccessat2 only for flags).
    ("access", &["faccessat"]),
    ("poll", &["ppoll"]),
    // arm has no select: its libcs call _newselect or pselect6.
    ("select", &["pselect6", "_newselect"]),
    ("dup2", &["dup3"]),
    ("pipe", &["pipe2"]),
    ("fork", &["clone"]),
    ("vfork", &["clone"]),
    ("mkdir", &["mkdirat"]),
    ("unlink", &["unlinkat"]),
    ("rmdir", &["unlinkat"]),
    ("rename", &["renameat", "renameat2"]),
    ("link", &["linkat"]),
    ("symlink", &["symlinkat"]),
    ("readlink", &["readlinkat"]),
    ("chmod", &["fchmodat"]),
    ("chown", &["fchownat"]),
    ("lchown", &["fchownat"]),
    ("mknod", &["mknodat"]),
    ("epoll_create", &["epoll_create1"]),
    ("epoll_wait", &["epoll_pwait"]),
    ("eventfd", &["eventfd2"]),
    ("inotify_init", &["inotify_init1"]),
    ("signalfd", &["signalfd4"]),
    ("getdents", &["getdents64"]),
    ("time", &["clock_gettime"]),
    ("alarm", &["setitimer"]),
    // glibc's pause() is sigsuspend, musl's is ppoll.
    ("pause", &["rt_sigsuspend", "ppoll"]),
    ("utime", &["utimensat"]),
    ("utimes", &["utimensat"]),
    ("futimesat", &["utimensat"]),
    ("getpgrp", &["getpgid"]),
    ("getrlimit", &["prlimit64"]),
    // x86 has no accept of its own (only through socketcall); accept4 is everywhere.
    ("accept", &["accept4"]),
];

/// What x86's and arm's libcs call for a call with 32-bit `off_t`, uid, `time_t` or
/// arguments (step 3): the 64-bit-file calls, the 32-bit-id calls and the `*_time64` calls
/// (glibc 2.34+ and musl 1.2+ call those first). Only the variants the target has are
/// written.
pub const ILP32_VARIANTS: &[(&str, &[&str])] = &[
    ("mmap", &["mmap2"]),
    ("lseek", &["_llseek"]),
    ("fcntl", &["fcntl64"]),
    ("stat", &["stat64"]),
    ("lstat", &["lstat64"]),
    ("fstat", &["fstat64"]),
    ("newfstatat", &["fstatat64"]),
    ("statfs", &["statfs64"]),
    ("fstatfs", &["fstatfs64"]),
    ("truncate", &["truncate64"]),
    ("ftruncate", &["ftruncate64"]),
    ("sendfile", &["sendfile64"]),
    ("fadvise64", &["fadvise64_64", "arm_fadvise64_64"]),
    ("sync_file_range", &["arm_sync_file_range"]),
    ("getrlimit", &["ugetrlimit"]),
    ("select", &["_newselect"]),
    ("rt_sigreturn", &["sigreturn"]),
    // Thread-local storage: i386 libcs set it up with set_thread_area, arm's with the
    // ARM-private set_tls (arm64 sets its thread register from user space: nothing to allow).
    ("arch_prctl", &["set_thread_area", "set_tls"]),
    ("getuid", &["getuid32"]),
    ("geteuid", &["geteuid32"]),
    ("getgid", &["getgid32"]),
    ("getegid", &["getegid32"]),
    ("setuid", &["setuid32"]),
    ("setgid", &["setgid32"]),
    ("setreuid", &["setreuid32"]),
    ("setregid", &["setregid32"]),
    ("setresuid", &["setresuid32"]),
    ("setresgid", &["setresgid32"]),
    ("getresuid", &["getresuid32"]),
    ("getresgid", &["getresgid32"]),
    ("getgroups", &["getgroups32"]),
    ("setgroups", &["setgroups32"]),
    ("setfsuid", &["setfsuid32"]),
    ("setfsgid", &["setfsgid32"]),
    ("chown", &["chown32"]),
    ("fchown", &["fchown32"]),
    ("lchown", &["lchown32"]),
    ("clock_gettime", &["clock_gettime64"]),
    ("clock_settime", &["clock_settime64"]),
    ("clock_adjtime", &["clock_adjtime64"]),
    ("clock_getres", &["clock_getres_time64"]),
    ("clock_nanosleep", &["clock_nanosleep_time64"]),
    ("timer_gettime", &["timer_gettime64"]),
    ("timer_settime", &["timer_settime64"]),
    ("timerfd_gettime", &["timerfd_gettime64"]),
    ("timerfd_settime", &["timerfd_settime64"]),
    ("utimensat", &["utimensat_time64"]),
    ("pselect6", &["pselect6_time64"]),
    ("ppoll", &["ppoll_time64"]),
    ("io_pgetevents", &["io_pgetevents_time64"]),
    ("recvmmsg", &["recvmmsg_time64"]),
    ("mq_timedsend", &["mq_timedsend_time64"]),
    ("mq_timedreceive", &["mq_timedreceive_time64"]),
    // x86 has neither semop nor semtimedop of its own (only through ipc).
    ("semop", &["semtimedop_time64"]),
    ("semtimedop", &["semtimedop_time64"]),
    ("rt_sigtimedwait", &["rt_sigtimedwait_time64"]),
    ("futex", &["futex_time64"]),
    ("sched_rr_get_interval", &["sched_rr_get_interval_time64"]),
];

fn lookup(table: &'static [(&str, &[&str])], name: &str) -> &'static [&'static str] {
    table
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(&[], |(_, to)| to)
}

/// The names observed syscall `name` corresponds to on `to` (see the module's rules), each
/// one `to` has; empty when it has no counterpart there.
pub fn translate(name: &str, to: Abi) -> BTreeSet<&'static str> {
    let mut out = BTreeSet::new();
    let mut base: Vec<&str> = vec![name];
    match to.syscall(name) {
        Some(same) => {
            out.insert(same);
        }
        None => {
            let replacements = lookup(REPLACEMENTS, name);
            out.extend(replacements.iter().filter_map(|r| to.syscall(r)));
            base.extend(replacements);
        }
    }
    if to.is_ilp32_legacy() {
        for n in base {
            out.extend(
                lookup(ILP32_VARIANTS, n)
                    .iter()
                    .filter_map(|v| to.syscall(v)),
            );
        }
    }
    out
}

/// Errors of [`ArchList::parse`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchListError {
    /// A word that names no architecture capmon writes profiles for.
    #[error(
        "unknown architecture {word:?} in {list:?}: use x86_64 (amd64), aarch64 (arm64), x86 \
         (i386), x32, arm or all, comma-separated"
    )]
    Unknown {
        /// The word.
        word: String,
        /// The whole list.
        list: String,
    },
    /// An empty list or an empty word (`x86_64,`).
    #[error(
        "empty architecture in {0:?}: use x86_64 (amd64), aarch64 (arm64), x86 (i386), x32, \
         arm or all, comma-separated"
    )]
    Empty(String),
}

/// The architectures a profile is for: one or more [`Abi`]s, in [`Abi::ALL`]'s order,
/// without repeats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchList(Vec<Abi>);

impl ArchList {
    /// `all`: x86_64 with its x86 and x32 compat ABIs, aarch64 with arm.
    pub fn all() -> Self {
        ArchList(Abi::ALL.to_vec())
    }

    /// The architecture syscalls were recorded on (the default: today's single-architecture
    /// profile).
    pub fn native(arch: Arch) -> Self {
        ArchList(vec![Abi::of(arch)])
    }

    /// Parses `x86_64,aarch64`, `arm64`, `all`, ... (words as [`Abi::parse`] takes them, and
    /// `all`); the error names the word it does not know.
    pub fn parse(text: &str) -> Result<Self, ArchListError> {
        let mut abis = BTreeSet::new();
        for word in text.split(',').map(str::trim) {
            if word.is_empty() {
                return Err(ArchListError::Empty(text.to_owned()));
            }
            if word.eq_ignore_ascii_case("all") {
                abis.extend(Abi::ALL);
                continue;
            }
            abis.insert(Abi::parse(word).ok_or_else(|| ArchListError::Unknown {
                word: word.to_owned(),
                list: text.to_owned(),
            })?);
        }
        Ok(ArchList(abis.into_iter().collect()))
    }

    /// The ABIs, in [`Abi::ALL`]'s order.
    pub fn abis(&self) -> &[Abi] {
        &self.0
    }

    /// Whether `abi` is listed.
    pub fn contains(&self, abi: Abi) -> bool {
        self.0.contains(&abi)
    }
}

impl FromStr for ArchList {
    type Err = ArchListError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ArchList::parse(s)
    }
}

impl fmt::Display for ArchList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words: Vec<&str> = self.0.iter().map(|a| a.as_str()).collect();
        f.write_str(&words.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(name: &str, to: Abi) -> Vec<&'static str> {
        translate(name, to).into_iter().collect()
    }

    #[test]
    fn every_table_entry_exists_somewhere_it_is_written_for() {
        // Each replacement and variant exists on at least one of the ABIs it is written for,
        // and each key is a call of some ABI: a misspelled entry would never be written.
        for (table, abis) in [
            (REPLACEMENTS, &Abi::ALL[..]),
            (ILP32_VARIANTS, &[Abi::X86, Abi::Arm][..]),
        ] {
            for (from, to) in table {
                assert!(Abi::ALL.iter().any(|a| a.has(from)), "{from}");
                for t in *to {
                    assert!(abis.iter().any(|a| a.has(t)), "{from} -> {t}");
                }
            }
        }
    }

    #[test]
    fn the_issue_s_examples() {
        let arm64 = Abi::Aarch64;
        assert_eq!(names("open", arm64), ["openat"]);
        assert_eq!(names("stat", arm64), ["newfstatat"]);
        assert_eq!(names("lstat", arm64), ["newfstatat"]);
        assert_eq!(names("poll", arm64), ["ppoll"]);
        assert_eq!(names("fork", arm64), ["clone"]);
        assert_eq!(names("vfork", arm64), ["clone"]);
        assert_eq!(names("dup2", arm64), ["dup3"]);
        assert_eq!(names("pipe", arm64), ["pipe2"]);
        assert_eq!(names("rename", arm64), ["renameat", "renameat2"]);
        assert_eq!(names("pause", arm64), ["ppoll", "rt_sigsuspend"]);
        assert_eq!(names("time", arm64), ["clock_gettime"]);
        assert_eq!(names("read", arm64), ["read"]);
        assert_eq!(names("newfstatat", arm64), ["newfstatat"]);
        // No counterpart: left out.
        for gone in [
            "arch_prctl",
            "iopl",
            "ioperm",
            "modify_ldt",
            "uselib",
            "sysfs",
            "ustat",
        ] {
            assert!(names(gone, arm64).is_empty(), "{gone}");
        }
        // Names the target has are kept as they are.
        assert_eq!(names("open", Abi::X86_64), ["open"]);
        assert_eq!(names("open", Abi::Arm), ["open"]);
        assert_eq!(names("arch_prctl", Abi::X32), ["arch_prctl"]);
    }

    #[test]
    fn thirty_two_bit_abis_get_their_own_variants() {
        assert_eq!(names("fstat", Abi::X86), ["fstat", "fstat64"]);
        assert_eq!(names("mmap", Abi::X86), ["mmap", "mmap2"]);
        assert_eq!(names("mmap", Abi::Arm), ["mmap2"]);
        assert_eq!(names("lseek", Abi::Arm), ["_llseek", "lseek"]);
        assert_eq!(names("newfstatat", Abi::X86), ["fstatat64"]);
        assert_eq!(names("getuid", Abi::Arm), ["getuid", "getuid32"]);
        assert_eq!(
            names("clock_gettime", Abi::X86),
            ["clock_gettime", "clock_gettime64"]
        );
        // A replacement brings its own variants: time -> clock_gettime -> clock_gettime64.
        assert_eq!(
            names("time", Abi::Arm),
            ["clock_gettime", "clock_gettime64"]
        );
        assert_eq!(names("fadvise64", Abi::Arm), ["arm_fadvise64_64"]);
        assert_eq!(names("fadvise64", Abi::X86), ["fadvise64", "fadvise64_64"]);
        assert_eq!(names("accept", Abi::X86), ["accept4"]);
        assert_eq!(names("semop", Abi::X86), ["semtimedop_time64"]);
        assert_eq!(
            names("arch_prctl", Abi::X86),
            ["arch_prctl", "set_thread_area"]
        );
        assert_eq!(names("arch_prctl", Abi::Arm), ["set_tls"]);
        assert_eq!(
            names("rt_sigreturn", Abi::X86),
            ["rt_sigreturn", "sigreturn"]
        );
        // 64-bit ABIs get none of them.
        assert_eq!(names("fstat", Abi::Aarch64), ["fstat"]);
        assert_eq!(names("fstat", Abi::X32), ["fstat"]);
    }

    #[test]
    fn every_name_written_exists_on_its_abi() {
        for from in [Abi::X86_64, Abi::Aarch64] {
            for name in from.syscall_names() {
                for to in Abi::ALL {
                    for out in translate(name, to) {
                        assert!(to.has(out), "{name} ({from}) -> {out} on {to}");
                    }
                }
            }
        }
    }

    #[test]
    fn lists_parse_and_bad_words_are_named() {
        assert_eq!(ArchList::parse("all").expect("all"), ArchList::all());
        assert_eq!(ArchList::all().to_string(), "x86_64,x86,x32,aarch64,arm");
        let l = ArchList::parse("arm64, amd64,x86_64").expect("list");
        assert_eq!(l.abis(), [Abi::X86_64, Abi::Aarch64]);
        assert_eq!(l.to_string(), "x86_64,aarch64");
        assert_eq!(
            ArchList::native(Arch::Aarch64).abis(),
            [Abi::Aarch64],
            "the default"
        );
        let err = ArchList::parse("x86_64,mips").expect_err("mips");
        assert_eq!(
            err.to_string(),
            "unknown architecture \"mips\" in \"x86_64,mips\": use x86_64 (amd64), aarch64 \
             (arm64), x86 (i386), x32, arm or all, comma-separated"
        );
        for bad in ["", "x86_64,", ",arm"] {
            let err = ArchList::parse(bad).expect_err(bad);
            assert!(err.to_string().starts_with("empty architecture"), "{err}");
        }
    }
}

//! Checks the capability hook cannot see: kernel builds that inline `cap_capable` into a
//! caller hide that caller's checks from the fexit and kprobe hooks on `cap_capable` (the
//! tracepoint sits inside `cap_capable`, so it sees them). The security-relevant one is
//! `cap_mmap_addr` (`CAP_SYS_RAWIO` for an mmap below `vm.mmap_min_addr`), which has hooks of
//! its own (`monitor-ebpf/src/mmap_addr.rs`); this module finds out, with one low mmap in a
//! child process, which of the two hooks sees the check on the running kernel. The other known
//! copy, in `cap_vm_enough_memory`, is a no-audit check (always `probe`) and stays unseen.

use super::{loader::Probes, probe_table::ProbeMode};

/// What a low mmap showed about `cap_capable` in `cap_mmap_addr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LowMmap {
    /// Tracepoint mode: the tracepoint sees the check, inlined or not.
    Tracepoint,
    /// The `cap_mmap_addr` hook could not attach: the check may be unseen.
    Unhooked(String),
    /// `cap_capable` is inlined into `cap_mmap_addr`: the `cap_mmap_addr` hook counts it.
    Inlined,
    /// `cap_mmap_addr` calls `cap_capable`: the `cap_capable` hook counts it.
    Called,
    /// Neither hook saw the check (e.g. `vm.mmap_min_addr` is too low for the probe).
    Unseen(String),
}

impl LowMmap {
    /// Whether low mmaps' `CAP_SYS_RAWIO` checks are counted.
    pub fn counted(&self) -> bool {
        matches!(
            self,
            LowMmap::Tracepoint | LowMmap::Inlined | LowMmap::Called
        )
    }

    /// One line for `capmon check` and the log.
    pub fn describe(&self) -> String {
        match self {
            LowMmap::Tracepoint => {
                "seen by the cap_capable tracepoint (inside cap_capable, inlined or not)".into()
            }
            LowMmap::Unhooked(why) => format!(
                "cap_mmap_addr not hooked ({why}): CAP_SYS_RAWIO checks of low mmaps may be unseen"
            ),
            LowMmap::Inlined => "cap_capable is inlined into cap_mmap_addr here: the \
                                 cap_mmap_addr hook counts CAP_SYS_RAWIO checks of low mmaps"
                .into(),
            LowMmap::Called => "cap_mmap_addr calls cap_capable here: its hook counts \
                                CAP_SYS_RAWIO checks of low mmaps"
                .into(),
            LowMmap::Unseen(why) => format!("a low mmap showed no CAP_SYS_RAWIO check: {why}"),
        }
    }
}

/// Makes one mmap below `vm.mmap_min_addr` in a child process with the probes attached, and
/// says which hook counted its check.
pub fn probe_low_mmap(probes: &Probes) -> LowMmap {
    if probes.mode() == ProbeMode::Tracepoint {
        return LowMmap::Tracepoint;
    }
    if let Some((program, why)) = probes
        .skipped()
        .iter()
        .find(|(p, _)| p.starts_with("cap_mmap_addr"))
    {
        return LowMmap::Unhooked(format!("{program}: {why}"));
    }
    let min = std::fs::read_to_string("/proc/sys/vm/mmap_min_addr")
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if min <= 4096 {
        return LowMmap::Unseen(format!("vm.mmap_min_addr is {min}: no low mmap checks"));
    }
    let before = probes.mmap_addr_checks().unwrap_or((0, 0));
    if let Err(e) = low_mmap_in_child() {
        return LowMmap::Unseen(format!("the probe's child failed: {e}"));
    }
    let after = probes.mmap_addr_checks().unwrap_or((0, 0));
    match (after.0 - before.0, after.1 - before.1) {
        (0, 0) => LowMmap::Unseen("neither hook saw it".into()),
        (_, 0) => LowMmap::Inlined,
        _ => LowMmap::Called,
    }
}

/// Forks a child that maps one page at 4096 and unmaps it, and waits for it.
fn low_mmap_in_child() -> Result<(), String> {
    use nix::{
        sys::wait::{WaitStatus, waitpid},
        unistd::{ForkResult, fork},
    };
    // SAFETY: the child calls only mmap, munmap and _exit, which are async-signal-safe.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            // SAFETY: an anonymous mapping that replaces nothing (MAP_FIXED_NOREPLACE),
            // unmapped at once; then the child exits without running any destructor.
            unsafe {
                let p = libc::mmap(
                    4096 as *mut libc::c_void,
                    4096,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                    -1,
                    0,
                );
                if p != libc::MAP_FAILED {
                    libc::munmap(p, 4096);
                }
                libc::_exit(0)
            }
        }
        ForkResult::Parent { child } => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    }
}

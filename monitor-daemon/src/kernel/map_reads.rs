//! Map syscalls that no container task can preempt (the kprobe mode, where the kernel preempts
//! kernel code).
//!
//! Every map syscall but `BPF_MAP_GET_NEXT_KEY` (lookup, update, delete and their batches:
//! `bpf_map_copy_value`, `bpf_map_update_value`, `map_delete_elem`, the hash map's batch walk in
//! `kernel/bpf/syscall.c` and `hashtab.c`) raises its CPU's `bpf_prog_active` for the length of
//! the map operation: `bpf_disable_instrumentation()` is `migrate_disable();
//! this_cpu_inc(bpf_prog_active)`. kprobe and kretprobe programs run through `trace_call_bpf()`
//! (`kernel/trace/bpf_trace.c`), which runs nothing while that counter is raised on its CPU: the
//! kernel skips the run (counted in the programs' `recursion_misses` since Linux 6.7: capmon's
//! `program_skipped`; not counted at all before). tp_btf, raw tracepoint and fentry/fexit programs
//! have their own per-program recursion counters instead, so only the kprobe mode is exposed.
//!
//! `migrate_disable()` does not disable preemption. On a kernel that preempts kernel code
//! (`PREEMPT_RT`, full or lazy preemption) the thread reading the maps can be preempted inside
//! that window, and the task that runs on the CPU instead keeps it raised: every kprobe it fires
//! is skipped until the reader runs again. Seen as a runc one-shot whose only `CAP_CHOWN` check
//! was lost (Debian's 6.12-rt under qemu, about one lifecycle test in 7 to 25), and reproduced
//! at will by a task making checks on the reader's CPU (tests/lifecycle.rs). With voluntary
//! preemption nothing in that window schedules, so nothing else runs on the CPU in it.
//!
//! So there, in the kprobe mode, the probe thread makes its map syscalls at `SCHED_FIFO`
//! priority 1, the lowest real-time priority: no task of the normal classes (every container
//! but a real-time one) preempts it, and it cannot sleep inside the window (the map operations
//! take raw spinlocks at most, and copy to and from user memory outside it). The priority is
//! held around each batch of map syscalls only (a poll, a trim, forgetting cgroups) and
//! dropped back right after, so the thread's other work (draining the ring buffer) and its
//! waits are as before. Its cost: while a poll reads the maps, normal tasks wait for that CPU
//! (or move to another); the kernel's real-time throttling (`sched_rt_runtime_us`) and, since
//! Linux 6.12, the fair server bound that in any case. What this cannot prevent: a real-time
//! task of higher priority preempting the reader (its checks can still be skipped), and other
//! processes' map syscalls (other eBPF tools); both stay counted in `program_skipped` where the
//! kernel counts them. Raising the priority needs `CAP_SYS_NICE` or an `RLIMIT_RTPRIO` of at
//! least 1 (systemd: `LimitRTPRIO=1`); without either it is said once and the reads go on at
//! the normal priority.

use std::time::Duration;

use super::{preemption::Preemption, probe_table::ProbeMode};

/// The real-time priority the map syscalls are made at.
const PRIORITY: libc::c_int = 1;

/// A batch of map syscalls held at real-time priority longer than this is logged (the reads'
/// cost to the CPU's other tasks).
const LONG: Duration = Duration::from_millis(200);

/// Whether, and how, the calling thread's map syscalls are kept from being preempted.
#[derive(Debug)]
pub struct MapReads {
    /// Raise the priority around map syscalls.
    raise: bool,
    /// The kernel refused once: not tried again.
    refused: bool,
    /// A long batch was logged.
    long_said: bool,
}

impl MapReads {
    /// For the probe mode in use on a kernel with this preemption model: raised in the kprobe
    /// mode where the kernel preempts kernel code.
    pub fn new(mode: ProbeMode, preemption: Preemption) -> MapReads {
        let raise = needs_raising(mode, preemption);
        if raise {
            tracing::info!(
                "kprobe mode on a kernel with {} preemption: the maps are read at SCHED_FIFO \
                 priority {PRIORITY}, so that no other task runs on the reading CPU while a map \
                 syscall holds off its kprobes",
                preemption.name()
            );
        }
        MapReads {
            raise,
            refused: false,
            long_said: false,
        }
    }

    /// Never raised.
    pub fn normal() -> MapReads {
        MapReads {
            raise: false,
            refused: false,
            long_said: false,
        }
    }

    /// Whether map syscalls are made at real-time priority (asked for and not refused).
    pub fn raised(&self) -> bool {
        self.raise && !self.refused
    }

    /// Runs `f` (map syscalls) at real-time priority when that is wanted, then restores the
    /// calling thread's scheduling policy.
    pub fn run<T>(&mut self, f: impl FnOnce() -> T) -> T {
        if !self.raised() {
            return f();
        }
        let previous = match Raised::raise() {
            Ok(p) => p,
            Err(e) => {
                self.refused = true;
                tracing::warn!(
                    "cannot read the maps at SCHED_FIFO priority {PRIORITY} ({e}; it needs \
                     CAP_SYS_NICE or RLIMIT_RTPRIO >= 1): on this kernel a task preempting the \
                     reader during a map syscall has its capability checks skipped by the kprobe \
                     mode (counted as program_skipped)"
                );
                return f();
            }
        };
        let start = std::time::Instant::now();
        let out = f();
        drop(previous);
        let took = start.elapsed();
        if took > LONG && !self.long_said {
            self.long_said = true;
            tracing::info!(
                "reading the maps at SCHED_FIFO took {took:?} (normal tasks wait for that CPU \
                 meanwhile; said once)"
            );
        }
        out
    }
}

/// The rule: the kprobe mode on a kernel that preempts kernel code.
pub fn needs_raising(mode: ProbeMode, preemption: Preemption) -> bool {
    mode == ProbeMode::Kprobe && preemption != Preemption::Voluntary
}

/// The calling thread at real-time priority; its previous policy comes back on drop.
struct Raised {
    policy: libc::c_int,
    param: libc::sched_param,
}

impl Raised {
    fn raise() -> std::io::Result<Raised> {
        // SAFETY: plain syscalls on the calling thread (pid 0) with a valid sched_param.
        unsafe {
            let policy = libc::sched_getscheduler(0);
            if policy < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut param: libc::sched_param = std::mem::zeroed();
            if libc::sched_getparam(0, &mut param) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fifo = libc::sched_param {
                sched_priority: PRIORITY,
            };
            // Not with SCHED_RESET_ON_FORK: without CAP_SYS_NICE (RLIMIT_RTPRIO alone) that flag
            // could not be cleared again on the way back (the thread forks nothing anyway).
            if libc::sched_setscheduler(0, libc::SCHED_FIFO, &fifo) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(Raised { policy, param })
        }
    }
}

impl Drop for Raised {
    fn drop(&mut self) {
        // SAFETY: as above; lowering one's own priority is always allowed.
        let r = unsafe { libc::sched_setscheduler(0, self.policy, &self.param) };
        if r != 0 {
            tracing::warn!(
                "cannot drop the map reader back from SCHED_FIFO: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_kprobe_mode_on_a_preempting_kernel_raises() {
        use Preemption::*;
        use ProbeMode::*;
        for (mode, preemption, raise) in [
            (Kprobe, Realtime, true),
            (Kprobe, Full, true),
            (Kprobe, Voluntary, false),
            (Fexit, Realtime, false),
            (Fexit, Full, false),
            (Tracepoint, Realtime, false),
            (Tracepoint, Voluntary, false),
        ] {
            assert_eq!(
                needs_raising(mode, preemption),
                raise,
                "{mode:?} {preemption:?}"
            );
        }
    }

    #[test]
    fn a_normal_reader_runs_the_reads_as_they_are() {
        let mut m = MapReads::normal();
        assert!(!m.raised());
        assert_eq!(m.run(|| 7), 7);
    }

    #[test]
    fn the_policy_comes_back_after_the_reads_or_the_refusal_is_kept() {
        // SAFETY: reads the calling thread's policy.
        let before = unsafe { libc::sched_getscheduler(0) };
        let mut m = MapReads {
            raise: true,
            refused: false,
            long_said: false,
        };
        // SAFETY: as above.
        let during = m.run(|| unsafe { libc::sched_getscheduler(0) });
        // SAFETY: as above.
        let after = unsafe { libc::sched_getscheduler(0) };
        assert_eq!(after, before);
        if m.raised() {
            assert_eq!(during, libc::SCHED_FIFO);
        } else {
            // Refused (no CAP_SYS_NICE here): ran anyway, at the normal policy, not tried again.
            assert_eq!(during, before);
            assert_eq!(m.run(|| 1), 1);
        }
    }
}

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
//! So there, in the kprobe mode, the daemon's probe thread makes its map syscalls at
//! `SCHED_FIFO` priority 1, the lowest real-time priority: no task of the normal classes (every
//! container but a real-time one) preempts it, and it cannot sleep inside the window (the map
//! operations take raw spinlocks at most, and copy to and from user memory outside it). The
//! priority is held around each pass of map syscalls only ([`held`]: one batched read of a map,
//! the lookups of one stack, one map's deletions) and dropped right after, so that everything
//! else the thread does (draining the ring buffer, symbolizing stacks, building the snapshot)
//! runs at the normal priority. That keeps the time at real-time priority to the map syscalls
//! themselves: holding it across a whole poll starved the CPU's normal tasks long enough, under
//! qemu's emulation, for the kernel's fair server (Linux 6.12) to run them anyway in the middle
//! of a map syscall. What this cannot prevent: a real-time task of higher priority preempting
//! the reader (its checks can still be skipped), and other processes' map syscalls (other eBPF
//! tools); both stay counted in `program_skipped` where the kernel counts them. Raising the
//! priority needs `CAP_SYS_NICE` or an `RLIMIT_RTPRIO` of at least 1 (systemd:
//! `LimitRTPRIO=1`); without either it is said once and the reads go on at the normal priority.
//! Other threads (and `capmon record`, which reads its maps after the command ended) never
//! raise: [`held`] runs their map syscalls as they are.

use std::{cell::Cell, time::Duration};

use super::{preemption::Preemption, probe_table::ProbeMode};

/// The real-time priority the map syscalls are made at.
const PRIORITY: libc::c_int = 1;

/// A pass of map syscalls held at real-time priority longer than this is logged (the reads'
/// cost to the CPU's other tasks).
const LONG: Duration = Duration::from_millis(50);

/// The calling thread's map syscalls: whether they are raised, and what happened so far.
#[derive(Default)]
struct Hold {
    /// Raise the priority around map syscalls.
    raise: Cell<bool>,
    /// The kernel refused once: not tried again.
    refused: Cell<bool>,
    /// Passes under way ([`held`] inside [`held`] raises once).
    depth: Cell<u32>,
    /// A long pass was logged.
    long_said: Cell<bool>,
}

thread_local! {
    static HOLD: Hold = Hold::default();
}

/// Makes the calling thread's map syscalls unpreemptible by normal tasks when the probe mode
/// on this kernel needs it (the kprobe mode where the kernel preempts kernel code); returns
/// whether it does. The daemon's probe thread calls it once.
pub fn raise_on_this_thread(mode: ProbeMode, preemption: Preemption) -> bool {
    let raise = needs_raising(mode, preemption);
    if raise {
        tracing::info!(
            "kprobe mode on a kernel with {} preemption: the maps are read at SCHED_FIFO \
             priority {PRIORITY}, so that no other task runs on the reading CPU while a map \
             syscall holds off its kprobes",
            preemption.name()
        );
    }
    set_raising(raise);
    raise
}

fn set_raising(raise: bool) {
    HOLD.with(|h| {
        h.raise.set(raise);
        h.refused.set(false);
    });
}

/// Whether the calling thread's map syscalls are made at real-time priority (asked for and
/// not refused).
pub fn raised() -> bool {
    HOLD.with(|h| h.raise.get() && !h.refused.get())
}

/// Runs `f` (a pass of map syscalls, with as little else as can be) at real-time priority
/// when the calling thread asked for that, then restores its scheduling policy.
pub fn held<T>(f: impl FnOnce() -> T) -> T {
    let outermost = HOLD.with(|h| h.depth.get() == 0);
    if !outermost || !raised() {
        return f();
    }
    let previous = match Raised::raise() {
        Ok(p) => p,
        Err(e) => {
            HOLD.with(|h| h.refused.set(true));
            tracing::warn!(
                "cannot read the maps at SCHED_FIFO priority {PRIORITY} ({e}; it needs \
                 CAP_SYS_NICE or RLIMIT_RTPRIO >= 1): on this kernel a task preempting the \
                 reader during a map syscall has its capability checks skipped by the kprobe \
                 mode (counted as program_skipped)"
            );
            return f();
        }
    };
    HOLD.with(|h| h.depth.set(1));
    let start = std::time::Instant::now();
    let out = f();
    HOLD.with(|h| h.depth.set(0));
    drop(previous);
    let took = start.elapsed();
    if took > LONG && !HOLD.with(|h| h.long_said.replace(true)) {
        tracing::info!(
            "a pass of map syscalls at SCHED_FIFO took {took:?} (normal tasks wait for that \
             CPU meanwhile; said once)"
        );
    }
    out
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
    fn a_thread_that_did_not_ask_runs_the_reads_as_they_are() {
        std::thread::spawn(|| {
            assert!(!raised());
            // SAFETY: reads the calling thread's policy.
            let before = unsafe { libc::sched_getscheduler(0) };
            // SAFETY: as above.
            assert_eq!(held(|| unsafe { libc::sched_getscheduler(0) }), before);
        })
        .join()
        .expect("thread");
    }

    #[test]
    fn the_policy_comes_back_after_the_reads_or_the_refusal_is_kept() {
        std::thread::spawn(|| {
            // SAFETY: reads the calling thread's policy.
            let policy = || unsafe { libc::sched_getscheduler(0) };
            let before = policy();
            set_raising(true);
            let (during, nested) = held(|| (policy(), held(policy)));
            assert_eq!(policy(), before);
            if raised() {
                assert_eq!((during, nested), (libc::SCHED_FIFO, libc::SCHED_FIFO));
            } else {
                // Refused (no CAP_SYS_NICE here): ran anyway, at the normal policy, not tried
                // again.
                assert_eq!((during, nested), (before, before));
                assert_eq!(held(|| 1), 1);
            }
        })
        .join()
        .expect("thread");
    }
}

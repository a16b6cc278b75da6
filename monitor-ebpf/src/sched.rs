//! Scheduler and exec tracepoints: `sched_switch` releases this CPU's slot when its owner is
//! switched out (moving an unfinished syscall's state to the task's storage), and
//! `sched_process_exec` marks a cgroup as past its first exec (its container runtime's setup is
//! over). `tp_btf` on both: Linux 5.5 (5.11 with task storage). No fallback is needed.

use core::ffi::c_void;

use aya_ebpf::{bindings::BPF_NOEXIST, macros::btf_tracepoint, programs::BtfTracePointContext};
use monitor_common::{counter, is_runtime_comm};

use crate::{
    maps::{CPU_STATE, EXEC_SEEN, TASKS, bump, per_cpu_mut},
    task::{cgroup_id, comm},
};

#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch(ctx: BtfTracePointContext) -> i32 {
    let _ = try_sched_switch(&ctx);
    0
}

/// `trace_sched_switch(preempt, prev, next, prev_state)`: `prev` leaves this CPU. If the CPU's
/// slot is its, the slot is released, and the state of an unfinished syscall moves to the
/// task's storage (created at its first syscall), where the rest of the syscall finds it, on
/// whichever CPU the task resumes.
#[inline(always)]
fn try_sched_switch(ctx: &BtfTracePointContext) -> Option<()> {
    let prev: *mut c_void = ctx.arg(1);
    // SAFETY: this CPU's slot, taken once by this program (see `per_cpu_mut`).
    let cpu = unsafe { per_cpu_mut(&CPU_STATE, 0) }?;
    let owner = cpu.task.task;
    cpu.task.task = 0;
    if owner != prev as u64 || cpu.task.syscall_nr < 0 {
        return None;
    }
    // SAFETY: the storage of `prev`, which is still the running task and was the slot's owner:
    // nothing else holds its state.
    match unsafe { TASKS.get(prev) } {
        Some(s) => *s = cpu.task,
        None => bump(counter::TASK_STORAGE_FAILED),
    }
    Some(())
}

#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec(_ctx: BtfTracePointContext) -> i32 {
    try_sched_process_exec();
    0
}

/// `trace_sched_process_exec(p, old_pid, bprm)`: the new program runs from now on. A runtime's
/// own re-exec (`monitor_common::is_runtime_comm`) does not end its setup.
#[inline(always)]
fn try_sched_process_exec() {
    if is_runtime_comm(&comm()) {
        return;
    }
    let cgroup_id = cgroup_id();
    // SAFETY: lookup into map memory, only compared with None.
    if unsafe { EXEC_SEEN.get(&cgroup_id) }.is_none() {
        let _ = EXEC_SEEN.insert(&cgroup_id, &1, BPF_NOEXIST.into());
    }
}

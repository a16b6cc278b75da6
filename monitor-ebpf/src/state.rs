//! Where the running task's syscall state lives: this CPU's slot (`CPU_STATE`) while the task
//! owns it, else the task's storage (`TASKS`); and whether a cgroup is past its first exec.
//!
//! A slot belongs to one task from that task's first syscall after it was switched in
//! ([`claim_slot`], at syscall entry) until it is switched out (`sched_switch` empties it and
//! moves an unfinished syscall's state to the task's storage). So an owned slot is always the
//! running task's, and a syscall that does not sleep reads and writes only per-CPU memory.
//! Task storage needs Linux 5.11; there is no fallback (without it the programs do not load).

use core::ffi::c_void;

use monitor_common::{CpuState, MAX_PENDING, PendingCheck, TaskState, counter};

use crate::maps::{EXEC_CACHE, EXEC_SEEN, TASKS, bump, per_cpu_mut};

/// A task's state before its first syscall is seen: not inside one.
const NEW_TASK: TaskState = TaskState {
    task: 0,
    syscall_nr: -1,
    npending: 0,
    cgroup_id: 0,
    past_exec: 0,
    _pad: 0,
    ids_before: 0,
    pending: [PendingCheck {
        cap: 0,
        ret: 0,
        stack: 0,
        context: 0,
        _pad: 0,
    }; MAX_PENDING],
};

/// Starts tracking `task` (a trusted task pointer) with a storage that says "not inside a
/// syscall", unless it has one; counts a failure in `TASK_STORAGE_FAILED`.
#[inline(always)]
pub fn track(task: *mut c_void) {
    let mut fresh = NEW_TASK;
    if !TASKS.create(task, &mut fresh) {
        bump(counter::TASK_STORAGE_FAILED);
    }
}

/// Makes this CPU's unowned slot the running task's (`task`), at the task's first syscall on
/// this CPU since it was switched in. Its storage, created at its first syscall, marks it as
/// seen.
#[inline(always)]
pub fn claim_slot(cpu: &mut CpuState, task: *mut c_void) {
    // SAFETY: the running task's storage, reached once here.
    match unsafe { TASKS.get(task) } {
        // Entering a syscall, the task is in none: whatever its storage still says (a syscall
        // entered while the probes were being attached) is stale.
        Some(s) => {
            s.syscall_nr = -1;
            s.npending = 0;
        }
        None => track(task),
    }
    cpu.task.task = task as u64;
    cpu.task.ids_before = 0;
    cpu.own_cred = 0;
}

/// The running task's syscall state, given this CPU's slot's `task` part: the slot when the
/// task owns it, else the task's storage (it was switched out inside a syscall, or has not
/// entered one since it was switched in); `None` when it has neither (never seen).
#[inline(always)]
pub fn running_state(slot: &mut TaskState) -> Option<&mut TaskState> {
    if slot.task != 0 {
        return Some(slot);
    }
    // SAFETY: the running task's storage; the slot is not its, so this is the only reference
    // to its state in this program.
    unsafe { TASKS.get(crate::task::current_task()) }
}

/// Whether the cgroup's first exec completed (per-CPU cached: the state only ever turns on).
#[inline(always)]
pub fn exec_seen(cgroup_id: u64) -> bool {
    // SAFETY: this CPU's cache entry, touched only by the running program, here.
    let cache = unsafe { per_cpu_mut(&EXEC_CACHE, 0) };
    if cache.as_deref() == Some(&cgroup_id) {
        return true;
    }
    // SAFETY: lookup into map memory, only compared with None.
    if unsafe { EXEC_SEEN.get(&cgroup_id) }.is_none() {
        return false;
    }
    if let Some(c) = cache {
        *c = cgroup_id;
    }
    true
}

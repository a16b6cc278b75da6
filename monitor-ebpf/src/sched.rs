//! Scheduler and exec tracepoints: `sched_switch` releases this CPU's slot when its owner is
//! switched out (moving an unfinished syscall's state to the task's storage), and
//! `sched_process_exec` marks a cgroup as past its first exec (its container runtime's setup is
//! over) and sends the credentials that first program runs with (`ExecEvent`: capability
//! sets, ids, `no_new_privs`, seccomp mode), so that a container gone before userspace could
//! read `/proc` still has its granted set. `tp_btf` on both: Linux 5.5 (5.11 with task
//! storage). No fallback is needed.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use monitor_common::{ExecEvent, counter, exec_read, is_runtime_comm, kind};

use crate::{
    events::send_exec,
    maps::{
        CPU_STATE, CRED_CAPS_OFFSET, CRED_IDS_OFFSET, EEXIST, EXEC_SEEN, SECCOMP_MODE_OFFSET,
        TASK_ATOMIC_FLAGS_OFFSET, TASKS, bump, insert_failed, per_cpu_mut,
    },
    task::{cgroup_id, comm, current_task, real_cred, task_field},
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

/// `trace_sched_process_exec(p, old_pid, bprm)`: the new program runs from now on, with its
/// new credentials. A runtime's own re-exec (`monitor_common::is_runtime_comm`) does not end
/// its setup. The first exec of a cgroup (the insert that wins) sends its credentials.
#[inline(always)]
fn try_sched_process_exec() {
    let comm = comm();
    if is_runtime_comm(&comm) {
        return;
    }
    let cgroup_id = cgroup_id();
    // SAFETY: lookup into map memory, only compared with None.
    if unsafe { EXEC_SEEN.get(&cgroup_id) }.is_some() {
        return;
    }
    match EXEC_SEEN.insert(&cgroup_id, &1, BPF_NOEXIST.into()) {
        Ok(()) => send_first_exec(cgroup_id, comm),
        // Another CPU's exec in the same cgroup won.
        Err(e) if -(e as i64) == EEXIST => {}
        Err(e) => insert_failed(e as i64, counter::EXEC_MAP_FULL),
    }
}

/// Sends the running task's credentials and confinement as the first exec of `cgroup_id`; a
/// field whose offset is unknown stays zero, its [`exec_read`] bit clear.
#[inline(never)]
fn send_first_exec(cgroup_id: u64, comm: [u8; monitor_common::COMM_LEN]) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let mut e = ExecEvent {
        kind: kind::FIRST_EXEC,
        pid: pid_tgid as u32,
        tgid: (pid_tgid >> 32) as u32,
        read: 0,
        cgroup_id,
        caps: [0; 5],
        ids: [0; 8],
        atomic_flags: 0,
        seccomp_mode: 0,
        _pad: 0,
        comm,
    };
    let cred = real_cred(current_task());
    let (caps, ids) = (CRED_CAPS_OFFSET.load(), CRED_IDS_OFFSET.load());
    if cred != 0 && caps != 0 {
        // SAFETY: reads kernel memory through the helper, which faults safely.
        if let Ok(v) = unsafe { bpf_probe_read_kernel((cred + caps) as *const [u64; 5]) } {
            e.caps = v;
            e.read |= exec_read::CAPS;
        }
    }
    if cred != 0 && ids != 0 {
        // SAFETY: as above.
        if let Ok(v) = unsafe { bpf_probe_read_kernel((cred + ids) as *const [u32; 8]) } {
            e.ids = v;
            e.read |= exec_read::IDS;
        }
    }
    if let Some(flags) = task_field::<u64>(TASK_ATOMIC_FLAGS_OFFSET.load()) {
        e.atomic_flags = flags;
        e.read |= exec_read::FLAGS;
    }
    if let Some(mode) = task_field::<i32>(SECCOMP_MODE_OFFSET.load()) {
        e.seccomp_mode = mode as u32;
        e.read |= exec_read::SECCOMP;
    }
    send_exec(&e);
}

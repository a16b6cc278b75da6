//! Syscalls: `sys_enter` records which syscalls each cgroup makes (the `SYSCALLS` bitmaps) and
//! keeps the running task's syscall state; `sys_exit` counts the capability checks that waited
//! for the syscall's outcome, and takes an exit without an entry on a seccomp-filtered task
//! for a seccomp denial (seccomp refuses a call before the enter tracepoint) in `DENIALS`.
//!
//! `tp_btf/sys_enter` and `tp_btf/sys_exit` load on Linux 5.5; the programs need task storage,
//! so 5.11. No fallback is needed. Each program is a fast path (this CPU's slot only, no
//! helper call, no map lookup but the slot's) and a separate BPF function for the rest.

use aya_ebpf::{
    bindings::BPF_NOEXIST, helpers::bpf_probe_read_kernel, macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use monitor_common::{
    COMM_LEN, CapKey, DenyEvent, DenyKey, MAX_PENDING, OUTCOME_IDS_UNCHANGED, OUTCOME_NONE,
    OUTCOME_SYSCALL_OK, RUNTIME_SYSCALLS_KEY_BIT, SYSCALL_BITMAP_BITS, SYSCALL_BITMAP_WORDS,
    SyscallBitmap, TaskState, counter, kind,
};

use crate::{
    capability::record_check,
    events::emit,
    maps::{
        CPU_STATE, DENIALS, EXECVE_NR, EXECVEAT_NR, SECCOMP_MODE_OFFSET, SYSCALL_NR_OFFSET,
        SYSCALLS, cgroup_moves, count, insert_failed, per_cpu_mut,
    },
    state::{claim_slot, exec_seen, running_state, track},
    task::{cgroup_id, cgroup_id_of, cred_ids, current_task, real_cred, task_field},
};

/// Largest errno value a syscall returns as `-errno`.
const MAX_ERRNO: i64 = 4095;
/// `SECCOMP_MODE_FILTER`.
const SECCOMP_MODE_FILTER: i32 = 2;

/// Whether a syscall's return value `ret` is an error (`-errno`) rather than a result.
#[inline(always)]
fn is_errno(ret: i64) -> bool {
    (-MAX_ERRNO..0).contains(&ret)
}

/// Word and bit of syscall `nr` in a [`SyscallBitmap`].
#[inline(always)]
fn word_bit(nr: u32) -> (usize, u64) {
    (
        (nr / 64) as usize & (SYSCALL_BITMAP_WORDS - 1),
        1u64 << (nr % 64),
    )
}

#[btf_tracepoint(function = "sys_enter")]
pub fn sys_enter(ctx: BtfTracePointContext) -> i32 {
    try_sys_enter(&ctx);
    0
}

/// `trace_sys_enter(regs, id)`.
#[inline(always)]
fn try_sys_enter(ctx: &BtfTracePointContext) {
    // The common case: the running task owns this CPU's slot, no task changed cgroups since it
    // read its cgroup, and the syscall is already in the bitmap cached for that cgroup.
    let id: i64 = ctx.arg(1);
    // SAFETY: this CPU's slot, taken once by this program (see `per_cpu_mut`); an owned slot
    // is the running task's.
    if let Some(cpu) = unsafe { per_cpu_mut(&CPU_STATE, 0) }
        && cpu.task.task != 0
        && cpu.moves == cgroup_moves()
        && cpu.bitmap_cgroup == cpu.task.cgroup_id
        && (0..SYSCALL_BITMAP_BITS as i64).contains(&id)
    {
        let (word, bit) = word_bit(id as u32);
        if cpu.bitmap.words[word] & bit != 0 {
            cpu.task.syscall_nr = id as i32;
            cpu.task.npending = 0;
            cpu.task.past_exec = 1;
            return;
        }
    }
    sys_enter_slow(ctx);
}

/// Everything else at syscall entry (a separate BPF function, see `check_slow`).
#[inline(never)]
fn sys_enter_slow(ctx: &BtfTracePointContext) {
    let id: i64 = ctx.arg(1);
    if id < 0 || id >= SYSCALL_BITMAP_BITS as i64 {
        return;
    }
    let nr = id as u32;
    // SAFETY: this CPU's slot, taken once by this BPF function (the fast path's reference is
    // dead); an owned slot is the running task's.
    let Some(cpu) = (unsafe { per_cpu_mut(&CPU_STATE, 0) }) else {
        return;
    };
    let moves = cgroup_moves();
    if cpu.task.task == 0 || cpu.moves != moves {
        let task = current_task();
        if cpu.task.task == 0 {
            claim_slot(cpu, task);
        }
        cpu.moves = moves;
        cpu.task.cgroup_id = cgroup_id_of(task);
    }
    cpu.task.syscall_nr = nr as i32;
    cpu.task.npending = 0;
    let cgroup_id = cpu.task.cgroup_id;
    let (word, bit) = word_bit(nr);
    // Only cgroups past their first exec are ever cached.
    let cached = cpu.bitmap_cgroup == cgroup_id;
    if cached && cpu.bitmap.words[word] & bit != 0 {
        cpu.task.past_exec = 1;
        return;
    }
    // Syscalls of the container runtime's setup (before the workload's first exec) are not
    // the workload's: they are not recorded, except the exec itself and whatever the runtime
    // calls once it has installed the workload's seccomp filter (between the filter and the
    // exec): a profile generated from this bitmap must allow both, or the container cannot
    // start under it.
    let past_exec = cached || exec_seen(cgroup_id);
    cpu.task.past_exec = past_exec as u32;
    let mut key = cgroup_id;
    if !past_exec && nr != EXECVE_NR.load() as u32 && nr != EXECVEAT_NR.load() as u32 {
        if task_field::<i32>(SECCOMP_MODE_OFFSET.load()) != Some(SECCOMP_MODE_FILTER) {
            return;
        }
        key |= RUNTIME_SYSCALLS_KEY_BIT;
    }
    let Some(bitmap) = cgroup_bitmap(key) else {
        return;
    };
    // SAFETY: map memory shared by every CPU, read and written without atomics: a lost race
    // only sets the same bit again later.
    unsafe {
        if (*bitmap).words[word] & bit == 0 {
            (*bitmap).words[word] |= bit;
        }
        if past_exec {
            cpu.bitmap_cgroup = cgroup_id;
            cpu.bitmap = *bitmap;
        }
    }
}

/// The `SYSCALLS` bitmap of `key`, created empty when there is none; a full map counts in
/// `SYSCALL_MAP_FULL`, an element the kernel could not allocate in `MAP_ALLOC_FAILED`.
#[inline(always)]
fn cgroup_bitmap(key: u64) -> Option<*mut SyscallBitmap> {
    if let Some(p) = SYSCALLS.get_ptr_mut(&key) {
        return Some(p);
    }
    let empty = SyscallBitmap {
        words: [0; SYSCALL_BITMAP_WORDS],
    };
    if let Err(e) = SYSCALLS.insert(&key, &empty, BPF_NOEXIST.into())
        && SYSCALLS.get_ptr(&key).is_none()
    {
        insert_failed(e as i64, counter::SYSCALL_MAP_FULL);
        return None;
    }
    SYSCALLS.get_ptr_mut(&key)
}

#[btf_tracepoint(function = "sys_exit")]
pub fn sys_exit(ctx: BtfTracePointContext) -> i32 {
    try_sys_exit(&ctx);
    0
}

/// `trace_sys_exit(regs, ret)`.
#[inline(always)]
fn try_sys_exit(ctx: &BtfTracePointContext) {
    // The common case: the end of a syscall entered on this CPU, with no check waiting.
    // SAFETY: this CPU's slot, taken once by this program; an owned slot is the running task's.
    let slot = unsafe { per_cpu_mut(&CPU_STATE, 0) };
    if let Some(t) = slot.map(|c| &mut c.task).filter(|t| t.task != 0)
        && t.syscall_nr >= 0
        && t.npending == 0
    {
        t.syscall_nr = -1;
        return;
    }
    sys_exit_slow(ctx);
}

/// Everything else at syscall exit (a separate BPF function, see `check_slow`).
#[inline(never)]
fn sys_exit_slow(ctx: &BtfTracePointContext) {
    let ret: i64 = ctx.arg(1);
    // SAFETY: this CPU's slot, taken once by this BPF function (the fast path's reference is
    // dead); an owned slot is the running task's.
    let Some(cpu) = (unsafe { per_cpu_mut(&CPU_STATE, 0) }) else {
        return;
    };
    let Some(state) = running_state(&mut cpu.task) else {
        // A task never seen entering a syscall: it was inside one when the probes were
        // attached, or is a new thread returning from clone. Nothing can be judged; start
        // tracking it.
        track(current_task());
        return;
    };
    let syscall_nr = state.syscall_nr;
    if syscall_nr >= 0 {
        if state.npending != 0 {
            finish_pending(state, syscall_nr, ret);
        }
        state.syscall_nr = -1;
        return;
    }
    // Exited without entering: seccomp refused it before the enter tracepoint, unless it
    // succeeded (a new thread returning from clone, execve from a non-leader thread).
    if !is_errno(ret) {
        return;
    }
    if let Some(mode) = task_field::<i32>(SECCOMP_MODE_OFFSET.load())
        && mode != SECCOMP_MODE_FILTER
    {
        return;
    }
    let regs: *const u8 = ctx.arg(0);
    // The number is an int-sized field on aarch64 (`syscallno`); on x86_64 the low half of
    // `orig_ax` (little endian) holds it.
    // SAFETY: reads kernel memory through the helper, which faults safely.
    let nr: i64 = match unsafe {
        bpf_probe_read_kernel(regs.add(SYSCALL_NR_OFFSET.load() as usize) as *const i32)
    } {
        Ok(nr) => nr as i64,
        Err(_) => return,
    };
    if nr < 0 || nr >= SYSCALL_BITMAP_BITS as i64 {
        return;
    }
    let key = DenyKey {
        cgroup_id: cgroup_id(),
        syscall_nr: nr as u32,
        errno: (-ret) as u32,
    };
    if !count(&DENIALS, &key, counter::DENIAL_MAP_FULL) {
        return;
    }
    emit(|o| DenyEvent {
        kind: kind::SYSCALL_DENIED,
        pid: o.pid,
        tgid: o.tgid,
        _pad: 0,
        key,
        comm: [0; COMM_LEN],
    });
}

/// Counts the pending checks of a syscall that just returned `ret`, keyed by that outcome.
#[inline(never)]
fn finish_pending(state: &mut TaskState, syscall_nr: i32, ret: i64) {
    let ok = !is_errno(ret);
    let outcome = if ok { OUTCOME_SYSCALL_OK } else { ret as i32 };
    // For granted set*id checks: are the ids (now in the task's new real_cred) unchanged?
    let ids_before = state.ids_before;
    let ids_unchanged =
        ok && ids_before != 0 && cred_ids(real_cred(current_task())) == Some(ids_before);
    state.ids_before = 0;
    // The cgroup at the syscall's entry, like the checks of this syscall counted at once.
    let cgroup_id = state.cgroup_id;
    for i in 0..MAX_PENDING {
        if i >= state.npending as usize {
            break;
        }
        let p = state.pending[i];
        let key = CapKey {
            cgroup_id,
            cap: p.cap,
            ret: p.ret,
            stack: p.stack,
            context: p.context,
            outcome: match (p.ret, ids_unchanged) {
                (0, true) => OUTCOME_IDS_UNCHANGED,
                (0, false) => OUTCOME_NONE,
                _ => outcome,
            },
        };
        record_check(&key, syscall_nr);
    }
    state.npending = 0;
}

//! Capability checks: `cap_capable` as a `tp_btf` program (the `capability:cap_capable`
//! tracepoint, Linux 6.14) or, on older kernels, as one `fexit` program on the `cap_capable`
//! function (a BPF trampoline: the arguments and the return value in one program) or, where
//! the kernel allows no trampolines, a kprobe/kretprobe pair (needs CONFIG_KPROBES). The
//! function modes use Linux 5.1's signature and miss the checks that a kernel build inlined
//! into their callers. All feed one [`check`].
//!
//! A check is counted in `CAP_CHECKS` through the per-CPU `CAP_CACHE`, keyed by (cgroup, cap,
//! result, stack, context, outcome); a key's first sighting goes to userspace. A refused check
//! inside a syscall, and a granted `CAP_SETUID`/`CAP_SETGID` check of a `set*id` syscall, wait
//! in the task's syscall state for the syscall's outcome (counted by `finish_pending` in
//! [`crate::syscall`]).
//!
//! The common case (a granted check repeating the last one this CPU counted, by the task that
//! owns the CPU's slot, with its own credentials) is [`fast_check`]: per-CPU memory only, no
//! helper call. Everything else is [`check_slow`], a separate BPF function so that the fast
//! path's program keeps a small frame.

use aya_ebpf::{
    EbpfContext,
    bindings::BPF_NOEXIST,
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_kernel,
        generated::{bpf_get_stack, bpf_task_pt_regs},
    },
    macros::{btf_tracepoint, fexit, kprobe, kretprobe},
    programs::{BtfTracePointContext, FExitContext, ProbeContext, RetProbeContext},
};
use monitor_common::{
    CAP_FSETID, CAP_SETGID, CAP_SETUID, COMM_LEN, CapEvent, CapKey, KprobeArgs, MAX_PENDING,
    NO_STACK, OUTCOME_NONE, PendingCheck, STACK_DEPTH, chmod, context, counter, fnv1a,
    is_setid_syscall, kind,
};

use crate::{
    events::emit,
    maps::{
        CAP_CACHE, CAP_CACHE_SLOTS, CAP_CHECKS, CHMOD_ARG1_NRS, CHMOD_ARG2_NRS, CPU_STATE,
        KPROBE_ARGS, PT_REGS_ARG1_OFFSET, PT_REGS_ARG2_OFFSET, RAWIO_SEEN, SETID_BASE, SETID_MASK,
        STACK_SCRATCH, STACKS, bump, count, insert_failed, per_cpu_mut,
    },
    state::{exec_seen, running_state},
    task::{cgroup_id, cred_ids, current_task, real_cred},
};

/// `CAP_OPT_NOAUDIT` in `include/linux/security.h` (since 5.1).
const CAP_OPT_NOAUDIT: u32 = 1 << 1;

/// `CAP_SYS_RAWIO` in `include/uapi/linux/capability.h`.
pub const CAP_SYS_RAWIO: i32 = 17;

/// Notes that the `cap_capable` hook (fexit or kprobe mode) counted a `CAP_SYS_RAWIO` check
/// of this thread on this CPU, so that the `cap_mmap_addr` hook ([`crate::mmap_addr`]) does
/// not count it again.
#[inline(always)]
fn note_rawio_check(cap: i32) {
    if cap != CAP_SYS_RAWIO {
        return;
    }
    // SAFETY: this CPU's entry, taken once by the running program.
    if let Some(seen) = unsafe { per_cpu_mut(&RAWIO_SEEN, 0) } {
        *seen = bpf_get_current_pid_tgid();
    }
}

#[btf_tracepoint(function = "cap_capable")]
pub fn cap_capable(ctx: BtfTracePointContext) -> i32 {
    try_cap_capable(&ctx);
    0
}

/// `trace_cap_capable(cred, target_ns, capable_ns, cap, ret)`. Minimum kernel 6.14.
#[inline(always)]
fn try_cap_capable(ctx: &BtfTracePointContext) {
    check(ctx, ctx.arg(0), ctx.arg(3), ctx.arg(4), 0);
}

/// Fexit mode, for kernels without the `capability:cap_capable` tracepoint (< 6.14) that
/// allow BPF trampolines: `int cap_capable(const struct cred *cred, struct user_namespace *ns,
/// int cap, unsigned int opts)` (since 5.1); the context holds the four arguments, then the
/// return value.
#[fexit(function = "cap_capable")]
pub fn cap_capable_fexit(ctx: FExitContext) -> i32 {
    let opts: u32 = ctx.arg(3);
    let extra = if opts & CAP_OPT_NOAUDIT != 0 {
        context::NOAUDIT
    } else {
        0
    };
    let cap: i32 = ctx.arg(2);
    note_rawio_check(cap);
    check(&ctx, ctx.arg(0), cap, ctx.arg(4), extra);
    0
}

/// Kprobe mode, for kernels without the `capability:cap_capable` tracepoint (< 6.14):
/// `int cap_capable(const struct cred *cred, struct user_namespace *ns, int cap,
/// unsigned int opts)` (this signature since 5.1). Needs CONFIG_KPROBES.
#[kprobe(function = "cap_capable")]
pub fn cap_capable_entry(ctx: ProbeContext) -> u32 {
    let _ = try_cap_capable_entry(&ctx);
    0
}

/// Keeps the arguments for the kretprobe, by thread.
#[inline(always)]
fn try_cap_capable_entry(ctx: &ProbeContext) -> Option<()> {
    let args = KprobeArgs {
        cred: ctx.arg(0)?,
        cap: ctx.arg(2)?,
        opts: ctx.arg(3)?,
    };
    KPROBE_ARGS
        .insert(&bpf_get_current_pid_tgid(), &args, 0)
        .ok()
}

/// The result of the check entered in `cap_capable_entry`.
#[kretprobe(function = "cap_capable")]
pub fn cap_capable_return(ctx: RetProbeContext) -> u32 {
    let _ = try_cap_capable_return(&ctx);
    0
}

/// Takes the arguments kept by the kprobe (a return without them is counted in
/// `KRETPROBE_UNMATCHED`) and checks with the result.
#[inline(always)]
fn try_cap_capable_return(ctx: &RetProbeContext) -> Option<()> {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: lookup into map memory, copied out before the entry is removed.
    let Some(args) = (unsafe { KPROBE_ARGS.get(&id) }).copied() else {
        bump(counter::KRETPROBE_UNMATCHED);
        return None;
    };
    let _ = KPROBE_ARGS.remove(&id);
    let ret: i32 = ctx.ret();
    let extra = if args.opts & CAP_OPT_NOAUDIT != 0 {
        context::NOAUDIT
    } else {
        0
    };
    note_rawio_check(args.cap as i32);
    check(ctx, args.cred, args.cap as i32, ret, extra);
    Some(())
}

/// One capability check, from any mode (and from [`crate::mmap_addr`]).
#[inline(always)]
pub fn check<C: EbpfContext>(ctx: &C, cred: u64, cap: i32, ret: i32, extra_context: u32) {
    if !fast_check(cred, cap, ret, extra_context) {
        check_slow(ctx, cred, cap, ret, extra_context);
    }
}

/// The common check in one probe: granted, by the running task with its own credentials (as
/// last read), inside a syscall, past its cgroup's first exec, and the same (cgroup, cap,
/// syscall) as the last plain check counted on this CPU. Counts it in that `CAP_CACHE` slot;
/// returns false (nothing changed) for anything else, and when the slot's stack is due for a
/// sample.
#[inline(always)]
fn fast_check(cred: u64, cap: i32, ret: i32, extra_context: u32) -> bool {
    // CAP_SETGID (6) and CAP_SETUID (7) may wait for their syscall's outcome; CAP_FSETID (4)
    // depends on a chmod's mode.
    if ret != 0 || extra_context != 0 || (cap as u32 | 1) == CAP_SETUID || cap as u32 == CAP_FSETID
    {
        return false;
    }
    // SAFETY: this CPU's slot, taken once by this program (see `per_cpu_mut`); an owned slot
    // is the running task's.
    let Some(cpu) = (unsafe { per_cpu_mut(&CPU_STATE, 0) }) else {
        return false;
    };
    let t = &cpu.task;
    if t.task == 0 || t.syscall_nr < 0 || t.past_exec == 0 || cpu.own_cred != cred {
        return false;
    }
    // SAFETY: this CPU's cache entry, taken once by this program.
    let Some(e) = (unsafe { per_cpu_mut(&CAP_CACHE, cpu.last_slot) }) else {
        return false;
    };
    if e.key.cgroup_id != t.cgroup_id
        || e.key.cap != cap as u32
        || e.key.ret != 0
        || e.key.context != 0
        || e.syscall_nr != t.syscall_nr as i64
    {
        return false;
    }
    let hits = e.hits + 1;
    if hits & (hits - 1) == 0 {
        return false;
    }
    e.hits = hits;
    e.delta += 1;
    true
}

/// A check the fast path did not count. A separate BPF function, so that the fast path's
/// program keeps a small frame (no private stack, few saved registers).
#[inline(never)]
fn check_slow<C: EbpfContext>(ctx: &C, cred: u64, cap: i32, ret: i32, extra_context: u32) {
    // SAFETY: this CPU's slot, taken once by this BPF function (the fast path's reference is
    // dead); an owned slot is the running task's.
    let Some(cpu) = (unsafe { per_cpu_mut(&CPU_STATE, 0) }) else {
        return;
    };
    let owned = cpu.task.task != 0;
    let state = running_state(&mut cpu.task).filter(|s| s.syscall_nr >= 0);
    // Inside a syscall the cgroup read at its entry is still the task's (a task moves between
    // cgroups by writing cgroup.procs, and the checks of that write itself come before it).
    let (cgroup_id, syscall_nr, past_exec) = match &state {
        Some(s) => (s.cgroup_id, s.syscall_nr, s.past_exec != 0),
        None => (cgroup_id(), -1, false),
    };
    let mut ctx_bits = extra_context;
    // Own credentials? Borrowed ones (overlayfs acting with the mounter's) are not the task's.
    // The task's `real_cred` is read again only when `cred` is not the one last read (the task
    // changed credentials, or borrowed someone else's).
    let cached_cred = if owned { cpu.own_cred } else { 0 };
    if cred != cached_cred {
        let own = real_cred(current_task());
        if own != 0 && own != cred {
            ctx_bits |= context::BORROWED_CRED;
        }
        if owned {
            cpu.own_cred = own;
        }
    }
    // Past the cgroup's first exec (known at the syscall's entry; an exec may have completed
    // since, inside this very syscall)?
    if !past_exec && !exec_seen(cgroup_id) {
        ctx_bits |= context::BEFORE_EXEC;
    }
    if syscall_nr < 0 {
        ctx_bits |= context::NO_SYSCALL;
    }
    if ret == 0 && ctx_bits == 0 && cap as u32 == CAP_FSETID && chmod_without_sgid(syscall_nr) {
        ctx_bits |= context::MODE_WITHOUT_SGID;
    }
    let mut key = CapKey {
        cgroup_id,
        cap: cap as u32,
        ret,
        stack: NO_STACK,
        context: ctx_bits,
        outcome: OUTCOME_NONE,
    };
    // A refused, audited check inside a syscall waits for the syscall's outcome: `denied` only
    // if the syscall then failed. So does a granted CAP_SETUID/CAP_SETGID check of a set*id
    // syscall, with the ids as they were: if the call leaves them unchanged it did not need
    // the capability.
    let setid = ret == 0
        && ctx_bits == 0
        && (cap as u32 == CAP_SETUID || cap as u32 == CAP_SETGID)
        && is_setid_syscall(syscall_nr, SETID_BASE.load(), SETID_MASK.load());
    let ids = if setid { cred_ids(cred) } else { None };
    if (ret != 0 || ids.is_some())
        && ctx_bits == 0
        && let Some(s) = state
    {
        let n = s.npending as usize;
        if n < MAX_PENDING {
            if let Some(ids) = ids {
                s.ids_before = ids;
            }
            let stack = take_stack(ctx);
            s.pending[n] = PendingCheck {
                cap: cap as u32,
                ret,
                stack,
                context: ctx_bits,
                _pad: 0,
            };
            s.npending = n as u32 + 1;
            return;
        }
        bump(counter::PENDING_OVERFLOW);
        key.context |= context::PENDING_OVERFLOW;
    }
    count_cached(ctx, key, syscall_nr, &mut cpu.last_slot);
}

/// Whether `syscall_nr` is a chmod-family call whose requested mode has no `S_ISGID` bit (read
/// from the task's user registers: the syscall's arguments); false when that is not known.
#[inline(never)]
fn chmod_without_sgid(syscall_nr: i32) -> bool {
    let offset = if chmod::in_packed(syscall_nr, CHMOD_ARG1_NRS.load()) {
        PT_REGS_ARG1_OFFSET.load()
    } else if chmod::in_packed(syscall_nr, CHMOD_ARG2_NRS.load()) {
        PT_REGS_ARG2_OFFSET.load()
    } else {
        return false;
    };
    if offset == 0 {
        return false;
    }
    // SAFETY: a helper taking the current task (a trusted pointer); it returns the task's
    // user-mode registers, saved at syscall entry.
    let regs = unsafe { bpf_task_pt_regs(current_task().cast()) } as *const u8;
    if regs.is_null() {
        return false;
    }
    // SAFETY: reads kernel memory through the helper, which faults safely.
    match unsafe { bpf_probe_read_kernel(regs.add(offset as usize) as *const u64) } {
        Ok(mode) => mode & chmod::S_ISGID == 0,
        Err(_) => false,
    }
}

/// Counts a check that needs no syscall outcome, through `CAP_CACHE`; a plain check (context
/// 0) leaves its cache slot in `last_slot` for [`fast_check`].
#[inline(always)]
fn count_cached<C: EbpfContext>(ctx: &C, mut key: CapKey, syscall_nr: i32, last_slot: &mut u32) {
    let h = key.cgroup_id
        ^ ((key.cap as u64) << 40)
        ^ ((key.ret as u32 as u64) << 20)
        ^ ((syscall_nr as u32 as u64) << 8)
        ^ key.context as u64;
    let slot = ((h ^ (h >> 13) ^ (h >> 29) ^ (h >> 43)) as u32) & (CAP_CACHE_SLOTS - 1);
    // SAFETY: this CPU's cache entry, taken once by this BPF function.
    let Some(e) = (unsafe { per_cpu_mut(&CAP_CACHE, slot) }) else {
        key.stack = take_stack(ctx);
        record_check(&key, syscall_nr);
        return;
    };
    if key.context == 0 {
        *last_slot = slot;
    }
    if e.key.cgroup_id == key.cgroup_id
        && e.key.cap == key.cap
        && e.key.ret == key.ret
        && e.key.context == key.context
        && e.syscall_nr == syscall_nr as i64
    {
        let hits = e.hits + 1;
        e.hits = hits;
        if hits & (hits - 1) == 0 {
            let stack = take_stack(ctx);
            if stack != e.key.stack {
                flush(&e.key, e.delta);
                e.delta = 0;
                e.key.stack = stack;
                record_check(&e.key, syscall_nr);
                return;
            }
        }
        e.delta += 1;
        return;
    }
    flush(&e.key, e.delta);
    key.stack = take_stack(ctx);
    e.key = key;
    e.delta = 0;
    e.hits = 1;
    e.syscall_nr = syscall_nr as i64;
    record_check(&key, syscall_nr);
}

/// Adds `delta` to `CAP_CHECKS[key]` (the key exists unless the map was full).
#[inline(always)]
fn flush(key: &CapKey, delta: u64) {
    if delta == 0 {
        return;
    }
    match CAP_CHECKS.get_ptr_mut(key) {
        // SAFETY: per-CPU map memory; programs on one CPU do not interleave.
        Some(p) => unsafe { *p += delta },
        None => {
            if let Err(e) = CAP_CHECKS.insert(key, delta, 0) {
                insert_failed(e as i64, counter::CAP_MAP_FULL);
            }
        }
    }
}

/// Counts a check in `CAP_CHECKS` and sends its first sighting.
#[inline(always)]
pub fn record_check(key: &CapKey, syscall_nr: i32) {
    if !count(&CAP_CHECKS, key, counter::CAP_MAP_FULL) {
        return;
    }
    emit(|o| CapEvent {
        kind: kind::CAP_CHECK,
        pid: o.pid,
        tgid: o.tgid,
        syscall_nr,
        key: *key,
        comm: [0; COMM_LEN],
    });
}

/// Takes the kernel stack, stores it by hash, returns the hash ([`NO_STACK`] on failure).
#[inline(never)]
fn take_stack<C: EbpfContext>(ctx: &C) -> u64 {
    // SAFETY: this CPU's scratch space, taken once by this BPF function.
    let Some(buf) = (unsafe { per_cpu_mut(&STACK_SCRATCH, 0) }) else {
        return NO_STACK;
    };
    // SAFETY: `buf` is per-CPU map memory of exactly the size passed; the helper zero-fills
    // what the stack does not use.
    let n = unsafe {
        bpf_get_stack(
            ctx.as_ptr(),
            core::ptr::from_mut(buf).cast(),
            (STACK_DEPTH * 8) as u32,
            0,
        )
    };
    if n <= 0 {
        bump(counter::STACK_FAILED);
        return NO_STACK;
    }
    let mut h = fnv1a(buf.iter().copied());
    if h == NO_STACK {
        h = 1;
    }
    let frames: &[u64; STACK_DEPTH] = buf;
    if STACKS.get_ptr(&h).is_none()
        && STACKS.insert(&h, frames, BPF_NOEXIST.into()).is_err()
        && STACKS.get_ptr(&h).is_none()
    {
        bump(counter::STACK_FAILED);
    }
    h
}

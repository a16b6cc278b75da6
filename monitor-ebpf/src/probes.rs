use core::ffi::c_void;

use aya_ebpf::{
    EbpfContext, Global,
    bindings::{BPF_F_NO_PREALLOC, BPF_LOCAL_STORAGE_GET_F_CREATE, BPF_NOEXIST, bpf_map_type},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_kernel,
        generated::{
            bpf_get_current_cgroup_id, bpf_get_current_task_btf, bpf_get_stack,
            bpf_task_storage_get,
        },
    },
    macros::{btf_map, btf_tracepoint, kprobe, kretprobe, map},
    maps::{HashMap, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::{BtfTracePointContext, ProbeContext, RetProbeContext},
};
use monitor_common::{
    CAP_SETGID, CAP_SETUID, CapCacheEntry, CapEvent, CapKey, CpuState, DenyEvent, DenyKey,
    KprobeArgs, MAX_PENDING, NO_STACK, OUTCOME_IDS_UNCHANGED, OUTCOME_NONE, OUTCOME_SYSCALL_OK,
    PendingCheck, RUNTIME_SYSCALLS_KEY_BIT, STACK_DEPTH, SYSCALL_BITMAP_BITS, SYSCALL_BITMAP_WORDS,
    SyscallBitmap, TaskState, context, counter, kind,
};

/// `EEXIST`, returned negated by a `BPF_NOEXIST` insert that lost a race.
const EEXIST: i64 = 17;
/// Largest errno value a syscall returns as `-errno`.
const MAX_ERRNO: i64 = 4095;
/// `SECCOMP_MODE_FILTER`.
const SECCOMP_MODE_FILTER: i32 = 2;

/// Offset of the syscall number in `struct pt_regs` (`orig_ax` on x86_64, `syscallno` on
/// aarch64). Set by the loader for the host architecture.
#[unsafe(no_mangle)]
static SYSCALL_NR_OFFSET: Global<u64> = Global::new(120);
/// Syscall numbers of `execve` and `execveat` on the host architecture, set by the loader.
#[unsafe(no_mangle)]
static EXECVE_NR: Global<u64> = Global::new(59);
#[unsafe(no_mangle)]
static EXECVEAT_NR: Global<u64> = Global::new(322);

/// Offset of `real_cred` in `struct task_struct`, read from the kernel's BTF by the loader;
/// 0 when unknown (then borrowed credentials are not detected).
#[unsafe(no_mangle)]
static REAL_CRED_OFFSET: Global<u64> = Global::new(0);
/// Offset of `seccomp.mode` in `struct task_struct`; 0 when unknown (then every exit without
/// enter counts as a denial).
#[unsafe(no_mangle)]
static SECCOMP_MODE_OFFSET: Global<u64> = Global::new(0);

/// Offsets of the chain from a task to its cgroup v2 id (`task_struct.cgroups`,
/// `css_set.dfl_cgrp`, `cgroup.kn`, `kernfs_node.id`), read from the kernel's BTF by the loader.
/// The loads are plain loads that the verifier checks against BTF (what
/// `bpf_get_current_cgroup_id` does, without the helper call, which costs more than the rest of
/// the syscall path); 0 when unknown (then the helper is called).
#[unsafe(no_mangle)]
static TASK_CGROUPS_OFFSET: Global<u64> = Global::new(0);
#[unsafe(no_mangle)]
static CSS_SET_DFL_CGRP_OFFSET: Global<u64> = Global::new(0);
#[unsafe(no_mangle)]
static CGROUP_KN_OFFSET: Global<u64> = Global::new(0);
#[unsafe(no_mangle)]
static KERNFS_NODE_ID_OFFSET: Global<u64> = Global::new(0);

/// Offset of `uid` in `struct cred`, followed by gid, suid, sgid, euid, egid, fsuid, fsgid (32
/// bytes); 0 when unknown (granted set*id checks then stay `used`).
#[unsafe(no_mangle)]
static CRED_IDS_OFFSET: Global<u64> = Global::new(0);

/// The `set*id` syscalls (setuid, setgid, setreuid, ...): numbers `SETID_BASE + b` for each
/// bit `b` of `SETID_MASK` (they lie within 64 numbers of each other on every architecture).
#[unsafe(no_mangle)]
static SETID_BASE: Global<u64> = Global::new(0);
#[unsafe(no_mangle)]
static SETID_MASK: Global<u64> = Global::new(0);

/// A BTF-defined `BPF_MAP_TYPE_TASK_STORAGE` map: per-task state that lives and dies with the
/// task, reached without a hash lookup (aya-ebpf 0.2 has no wrapper for it).
#[repr(C)]
pub struct TaskStorage<T> {
    r#type: *const [i32; bpf_map_type::BPF_MAP_TYPE_TASK_STORAGE as usize],
    key: *const i32,
    value: *const T,
    max_entries: *const [i32; 0],
    map_flags: *const [i32; BPF_F_NO_PREALLOC as usize],
}

// SAFETY: placeholder pointers patched by the loader, never dereferenced.
unsafe impl<T> Sync for TaskStorage<T> {}

impl<T> TaskStorage<T> {
    const fn new() -> Self {
        Self {
            r#type: core::ptr::null(),
            key: core::ptr::null(),
            value: core::ptr::null(),
            max_entries: core::ptr::null(),
            map_flags: core::ptr::null(),
        }
    }

    /// The value of `task` (a trusted task pointer); when `init` is given and there is none, it
    /// is created with that value.
    #[inline(always)]
    fn get(&self, task: *mut c_void, init: Option<&mut T>) -> Option<*mut T> {
        let (flags, value) = match init {
            Some(v) => (
                BPF_LOCAL_STORAGE_GET_F_CREATE as u64,
                core::ptr::from_mut(v).cast(),
            ),
            None => (0, core::ptr::null_mut()),
        };
        // SAFETY: `task` is a trusted task pointer, as the helper needs; `value` is null or a
        // valid value of the map's type.
        let p = unsafe {
            bpf_task_storage_get(
                core::ptr::from_ref(self).cast_mut().cast(),
                task.cast(),
                value,
                flags,
            )
        };
        if p.is_null() { None } else { Some(p.cast()) }
    }
}

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

/// Per-task state of tasks switched out inside a syscall (moved here from the per-CPU slot by
/// `sched_switch`), and a marker that a task's syscalls are being seen (created at its first
/// syscall): an exit without an entry is judged only for tasks seen before.
#[btf_map]
static TASKS: TaskStorage<TaskState> = TaskStorage::new();

/// The running task's syscall state and its cgroup's bitmap, per CPU (see `CpuState`).
#[map]
static CPU_STATE: PerCpuArray<CpuState> = PerCpuArray::with_max_entries(1, 0);

/// Incremented whenever a task is moved to another cgroup (`cgroup_attach_task`): the cgroup
/// id a slot read when its owner claimed it is read again at the owner's next syscall.
#[unsafe(no_mangle)]
static mut CGROUP_MOVES: u64 = 0;

#[inline(always)]
fn cgroup_moves() -> u64 {
    // SAFETY: a plain read of a global; a racing increment is seen at the next syscall.
    unsafe { core::ptr::read_volatile(&raw const CGROUP_MOVES) }
}

/// First sightings (cap checks, denials). 256 KiB holds ~4,000 records; only new keys go here.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Kernel stacks of capability checks by a 64-bit hash of their frames, for telling no-audit
/// checks apart in userspace. (A `BPF_MAP_TYPE_STACK_TRACE` map fails on bucket collisions,
/// which become frequent once a host has a few hundred distinct stacks; a hash map keyed by a
/// 64-bit hash practically never collides and only holds the stacks seen.)
#[map]
static STACKS: HashMap<u64, [u64; STACK_DEPTH]> =
    HashMap::with_max_entries(16384, BPF_F_NO_PREALLOC);

/// Per-CPU scratch space for `bpf_get_stack`.
#[map]
static STACK_SCRATCH: PerCpuArray<[u64; STACK_DEPTH]> = PerCpuArray::with_max_entries(1, 0);

/// (cgroup, cap, result, stack, context, outcome) -> number of checks. Per-CPU so that counting
/// needs no atomic read-modify-write (the bpf target has none); userspace sums the CPUs.
#[map]
static CAP_CHECKS: PerCpuHashMap<CapKey, u64> =
    PerCpuHashMap::with_max_entries(16384, BPF_F_NO_PREALLOC);

/// cgroup id -> bitmap of syscall numbers entered.
#[map]
static SYSCALLS: HashMap<u64, SyscallBitmap> = HashMap::with_max_entries(8192, BPF_F_NO_PREALLOC);

/// (cgroup, syscall, errno) -> number of syscalls that exited without entering. Per-CPU.
#[map]
static DENIALS: PerCpuHashMap<DenyKey, u64> =
    PerCpuHashMap::with_max_entries(16384, BPF_F_NO_PREALLOC);

/// cgroup id -> 1 once an `execve` completed in it: checks before that are the container
/// runtime's setup. Userspace marks cgroups that were already running.
#[map]
static EXEC_SEEN: HashMap<u64, u8> = HashMap::with_max_entries(65536, BPF_F_NO_PREALLOC);

/// A direct-mapped, per-CPU cache in front of `CAP_CHECKS`, by (cgroup, cap, result, syscall,
/// context). A hit only adds to `delta` (the per-CPU hash lookup costs more than everything
/// else the probe does); a miss flushes the evicted entry's `delta` into `CAP_CHECKS` and
/// counts the new check there directly, which is also where first sightings are detected.
/// Userspace adds the unflushed `delta`s when it reads. Walking the kernel stack costs
/// microseconds, so it is done at the 1st, 2nd, 4th, 8th, ... hit of an entry; in between the
/// last stack is reused (a changed stack flushes first). Counting stays exact; only which call
/// site an unsampled check is attributed to is inherited from the last sample.
const CAP_CACHE_SLOTS: u32 = monitor_common::CAP_CACHE_SLOTS;

#[map]
static CAP_CACHE: PerCpuArray<CapCacheEntry> = PerCpuArray::with_max_entries(CAP_CACHE_SLOTS, 0);

/// Per-CPU: the last cgroup seen past its first exec (monotonic, so a hit needs no lookup).
#[map]
static EXEC_CACHE: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Loss counters, indexed by `monitor_common::counter`. Per-CPU.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

#[inline(always)]
fn bump(index: u32) {
    if let Some(p) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU map memory; programs on one CPU do not interleave.
        unsafe { *p += 1 };
    }
}

/// Adds one to the counter `map[key]`; returns true when the key was new.
#[inline(always)]
fn count<K>(map: &PerCpuHashMap<K, u64>, key: &K, full_counter: u32) -> bool {
    if let Some(p) = map.get_ptr_mut(key) {
        // SAFETY: per-CPU map memory; programs on one CPU do not interleave.
        unsafe { *p += 1 };
        return false;
    }
    match map.insert(key, 1, BPF_NOEXIST.into()) {
        Ok(()) => true,
        Err(e) if -(e as i64) == EEXIST => {
            if let Some(p) = map.get_ptr_mut(key) {
                // SAFETY: as above.
                unsafe { *p += 1 };
            }
            false
        }
        Err(_) => {
            bump(full_counter);
            false
        }
    }
}

#[inline(always)]
fn comm() -> [u8; 16] {
    bpf_get_current_comm().unwrap_or([0; 16])
}

/// The current task (a trusted pointer for helpers and BTF-checked loads).
#[inline(always)]
fn current_task() -> *mut c_void {
    // SAFETY: a helper without arguments.
    unsafe { bpf_get_current_task_btf().cast() }
}

/// Loads the `T` at `offset` of a kernel object reached through BTF-typed pointers. `offset`
/// comes from a read-only global, a constant for the verifier, which checks the load against
/// the kernel's BTF; the JIT turns a fault into a zero.
#[inline(always)]
unsafe fn btf_load<T: Copy>(base: *const u8, offset: u64) -> T {
    // SAFETY: as above: verifier-checked, fault-handled.
    unsafe { core::ptr::read_volatile(base.add(offset as usize).cast::<T>()) }
}

/// The current task's cgroup v2 id.
#[inline(always)]
fn cgroup_id() -> u64 {
    cgroup_id_of(current_task())
}

/// The cgroup v2 id of `task`, the current task.
#[inline(always)]
fn cgroup_id_of(task: *mut c_void) -> u64 {
    let (a, b, c, d) = (
        TASK_CGROUPS_OFFSET.load(),
        CSS_SET_DFL_CGRP_OFFSET.load(),
        CGROUP_KN_OFFSET.load(),
        KERNFS_NODE_ID_OFFSET.load(),
    );
    if a == 0 || b == 0 || c == 0 {
        // SAFETY: a helper without arguments.
        return unsafe { bpf_get_current_cgroup_id() };
    }
    // SAFETY: task->cgroups->dfl_cgrp->kn->id, each pointer BTF-typed (the task's css_set is
    // RCU-protected, and the program runs under RCU).
    unsafe {
        let set: *const u8 = btf_load(task.cast_const().cast(), a);
        let cgroup: *const u8 = btf_load(set, b);
        let kn: *const u8 = btf_load(cgroup, c);
        btf_load(kn, d)
    }
}

/// The current task's `real_cred`, 0 when its offset is unknown.
#[inline(always)]
fn real_cred(task: *mut c_void) -> u64 {
    let offset = REAL_CRED_OFFSET.load();
    if offset == 0 {
        return 0;
    }
    // SAFETY: a BTF-checked load from a trusted task pointer.
    unsafe { btf_load::<u64>(task.cast_const().cast(), offset) }
}

/// This CPU's slot when a task owns it: then it is the running task's.
#[inline(always)]
fn owned_slot() -> Option<*mut CpuState> {
    // SAFETY: per-CPU map memory.
    CPU_STATE
        .get_ptr_mut(0)
        .filter(|c| unsafe { (**c).task.task } != 0)
}

/// The running task's syscall state: this CPU's slot when owned (by the running task), else
/// the task's storage (it was switched out inside a syscall, or has not entered one since it
/// was switched in).
#[inline(always)]
fn task_state(slot: Option<*mut CpuState>) -> Option<*mut TaskState> {
    match slot {
        // SAFETY: per-CPU map memory.
        Some(c) => Some(unsafe { &raw mut (*c).task }),
        None => TASKS.get(current_task(), None),
    }
}

/// Reads a field of the current task at a loader-provided offset.
#[inline(always)]
fn task_field<T>(offset: u64) -> Option<T> {
    if offset == 0 {
        return None;
    }
    // SAFETY: the helper returns a valid task pointer; the read goes through
    // bpf_probe_read_kernel, which fails safely on a bad address.
    unsafe {
        let task = bpf_get_current_task_btf() as *const u8;
        bpf_probe_read_kernel(task.add(offset as usize) as *const T).ok()
    }
}

/// Whether the cgroup's first exec completed (per-CPU cached: the state only ever turns on).
#[inline(always)]
fn exec_seen(cgroup_id: u64) -> bool {
    let cache = EXEC_CACHE.get_ptr_mut(0);
    if let Some(c) = cache {
        // SAFETY: per-CPU map memory.
        if unsafe { *c } == cgroup_id {
            return true;
        }
    }
    // SAFETY: lookup into map memory.
    if unsafe { EXEC_SEEN.get(&cgroup_id) }.is_none() {
        return false;
    }
    if let Some(c) = cache {
        // SAFETY: per-CPU map memory.
        unsafe { *c = cgroup_id };
    }
    true
}

/// Takes the kernel stack, stores it by hash, returns the hash ([`NO_STACK`] on failure).
#[inline(never)]
fn take_stack<C: EbpfContext>(ctx: &C) -> u64 {
    let Some(buf) = STACK_SCRATCH.get_ptr_mut(0) else {
        return NO_STACK;
    };
    // SAFETY: `buf` is per-CPU map memory of exactly the size passed; the helper zero-fills
    // what the stack does not use.
    let n = unsafe { bpf_get_stack(ctx.as_ptr(), buf.cast(), (STACK_DEPTH * 8) as u32, 0) };
    if n <= 0 {
        bump(counter::STACK_FAILED);
        return NO_STACK;
    }
    // FNV-1a over the frames.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for i in 0..STACK_DEPTH {
        // SAFETY: as above.
        h = (h ^ unsafe { (*buf)[i] }).wrapping_mul(0x100_0000_01b3);
    }
    if h == NO_STACK {
        h = 1;
    }
    // SAFETY: as above.
    if STACKS.get_ptr(&h).is_none()
        && STACKS
            .insert(&h, unsafe { &*buf }, BPF_NOEXIST.into())
            .is_err()
        && STACKS.get_ptr(&h).is_none()
    {
        bump(counter::STACK_FAILED);
    }
    h
}

/// Adds `delta` to `CAP_CHECKS[key]` (the key exists unless the map was full).
#[inline(always)]
fn flush(key: &CapKey, delta: u64) {
    if delta == 0 {
        return;
    }
    match CAP_CHECKS.get_ptr_mut(key) {
        // SAFETY: per-CPU map memory.
        Some(p) => unsafe { *p += delta },
        None => {
            if CAP_CHECKS.insert(key, delta, 0).is_err() {
                bump(counter::CAP_MAP_FULL);
            }
        }
    }
}

/// Counts a check that needs no syscall outcome, through `CAP_CACHE`.
#[inline(always)]
fn count_cached<C: EbpfContext>(ctx: &C, mut key: CapKey, syscall_nr: i32) {
    let h = key.cgroup_id
        ^ ((key.cap as u64) << 40)
        ^ ((key.ret as u32 as u64) << 20)
        ^ ((syscall_nr as u32 as u64) << 8)
        ^ key.context as u64;
    let slot = ((h ^ (h >> 13) ^ (h >> 29) ^ (h >> 43)) as u32) & (CAP_CACHE_SLOTS - 1);
    let Some(e) = CAP_CACHE.get_ptr_mut(slot) else {
        key.stack = take_stack(ctx);
        record_check(&key, syscall_nr);
        return;
    };
    if key.context == 0 {
        if let Some(c) = CPU_STATE.get_ptr_mut(0) {
            // SAFETY: per-CPU map memory.
            unsafe { (*c).last_slot = slot };
        }
    }
    // SAFETY: per-CPU map memory; programs on one CPU do not interleave.
    unsafe {
        if (*e).key.cgroup_id == key.cgroup_id
            && (*e).key.cap == key.cap
            && (*e).key.ret == key.ret
            && (*e).key.context == key.context
            && (*e).syscall_nr == syscall_nr as i64
        {
            let hits = (*e).hits + 1;
            (*e).hits = hits;
            if hits & (hits - 1) == 0 {
                let stack = take_stack(ctx);
                if stack != (*e).key.stack {
                    flush(&(*e).key, (*e).delta);
                    (*e).delta = 0;
                    (*e).key.stack = stack;
                    record_check(&(*e).key, syscall_nr);
                    return;
                }
            }
            (*e).delta += 1;
            return;
        }
        flush(&(*e).key, (*e).delta);
        key.stack = take_stack(ctx);
        (*e).key = key;
        (*e).delta = 0;
        (*e).hits = 1;
        (*e).syscall_nr = syscall_nr as i64;
    }
    record_check(&key, syscall_nr);
}

/// Counts a check and sends its first sighting.
#[inline(always)]
fn record_check(key: &CapKey, syscall_nr: i32) {
    if !count(&CAP_CHECKS, key, counter::CAP_MAP_FULL) {
        return;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let event = CapEvent {
        kind: kind::CAP_CHECK,
        pid: pid_tgid as u32,
        tgid: (pid_tgid >> 32) as u32,
        syscall_nr,
        key: *key,
        comm: comm(),
    };
    if EVENTS.output::<CapEvent>(&event, 0).is_err() {
        bump(counter::RINGBUF_FULL);
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

/// `CAP_OPT_NOAUDIT` in `include/linux/security.h` (since 5.1).
const CAP_OPT_NOAUDIT: u32 = 1 << 1;

/// Entry arguments by pid_tgid, from the kprobe to the kretprobe (kprobe mode).
#[map]
static KPROBE_ARGS: LruHashMap<u64, KprobeArgs> = LruHashMap::with_max_entries(16384, 0);

/// Kprobe mode, for kernels without the `capability:cap_capable` tracepoint (< 6.14):
/// `int cap_capable(const struct cred *cred, struct user_namespace *ns, int cap,
/// unsigned int opts)` (this signature since 5.1). Needs CONFIG_KPROBES.
#[kprobe(function = "cap_capable")]
pub fn cap_capable_entry(ctx: ProbeContext) -> u32 {
    let (Some(cred), Some(cap), Some(opts)) =
        (ctx.arg::<u64>(0), ctx.arg::<u32>(2), ctx.arg::<u32>(3))
    else {
        return 0;
    };
    let _ = KPROBE_ARGS.insert(
        &bpf_get_current_pid_tgid(),
        &KprobeArgs { cred, cap, opts },
        0,
    );
    0
}

/// The result of the check entered in `cap_capable_entry`.
#[kretprobe(function = "cap_capable")]
pub fn cap_capable_return(ctx: RetProbeContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: lookup into map memory, copied out before the entry is removed.
    let Some(args) = (unsafe { KPROBE_ARGS.get(&id) }).copied() else {
        bump(counter::KRETPROBE_UNMATCHED);
        return 0;
    };
    let _ = KPROBE_ARGS.remove(&id);
    let ret: i32 = ctx.ret();
    let extra = if args.opts & CAP_OPT_NOAUDIT != 0 {
        context::NOAUDIT
    } else {
        0
    };
    check(&ctx, args.cred, args.cap as i32, ret, extra);
    0
}

/// The common check in one probe: granted, by the running task with its own credentials (as
/// last read), inside a syscall, past its cgroup's first exec, and the same (cgroup, cap,
/// syscall) as the last plain check counted on this CPU. Counts it in that `CAP_CACHE` slot;
/// returns false (nothing changed) for anything else, and when the slot's stack is due for a
/// sample.
#[inline(always)]
fn fast_check(cred: u64, cap: i32, ret: i32, extra_context: u32) -> bool {
    // CAP_SETGID (6) and CAP_SETUID (7) may wait for their syscall's outcome.
    if ret != 0 || extra_context != 0 || (cap as u32 | 1) == CAP_SETUID {
        return false;
    }
    let Some(c) = CPU_STATE.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: per-CPU map memory; programs on one CPU do not interleave, and an owned slot is
    // the running task's.
    unsafe {
        let t = &(*c).task;
        if t.task == 0 || t.syscall_nr < 0 || t.past_exec == 0 || (*c).own_cred != cred {
            return false;
        }
        let Some(e) = CAP_CACHE.get_ptr_mut((*c).last_slot) else {
            return false;
        };
        if (*e).key.cgroup_id != t.cgroup_id
            || (*e).key.cap != cap as u32
            || (*e).key.ret != 0
            || (*e).key.context != 0
            || (*e).syscall_nr != t.syscall_nr as i64
        {
            return false;
        }
        let hits = (*e).hits + 1;
        if hits & (hits - 1) == 0 {
            return false;
        }
        (*e).hits = hits;
        (*e).delta += 1;
    }
    true
}

/// One capability check, from either mode.
#[inline(always)]
fn check<C: EbpfContext>(ctx: &C, cred: u64, cap: i32, ret: i32, extra_context: u32) {
    if !fast_check(cred, cap, ret, extra_context) {
        check_slow(ctx, cred, cap, ret, extra_context);
    }
}

/// A check the fast path did not count. A separate BPF function, so that the fast path's
/// program keeps a small frame (no private stack, few saved registers).
#[inline(never)]
fn check_slow<C: EbpfContext>(ctx: &C, cred: u64, cap: i32, ret: i32, extra_context: u32) {
    let slot = owned_slot();
    // SAFETY (all derefs of `state` and `slot`): the running task's slot or storage; only it
    // writes them.
    let state = task_state(slot).filter(|s| unsafe { (**s).syscall_nr } >= 0);
    // Inside a syscall the cgroup read at its entry is still the task's (a task moves between
    // cgroups by writing cgroup.procs, and the checks of that write itself come before it).
    let (cgroup_id, syscall_nr, past_exec) = match state {
        Some(s) => unsafe { ((*s).cgroup_id, (*s).syscall_nr, (*s).past_exec != 0) },
        None => (cgroup_id(), -1, false),
    };
    let mut ctx_bits = extra_context;
    // Own credentials? Borrowed ones (overlayfs acting with the mounter's) are not the task's.
    // The task's `real_cred` is read again only when `cred` is not the one last read (the task
    // changed credentials, or borrowed someone else's).
    let cached_cred = slot.map(|c| unsafe { (*c).own_cred }).unwrap_or(0);
    if cred != cached_cred {
        let own = real_cred(current_task());
        if own != 0 && own != cred {
            ctx_bits |= context::BORROWED_CRED;
        }
        if let Some(c) = slot {
            // SAFETY: as above.
            unsafe { (*c).own_cred = own };
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
        && is_setid_syscall(syscall_nr);
    let ids = if setid { cred_ids(cred) } else { None };
    if (ret != 0 || ids.is_some()) && ctx_bits == 0 {
        if let Some(s) = state {
            // SAFETY: the running task's syscall state (its CPU slot or its storage); only it writes it.
            unsafe {
                let n = (*s).npending as usize;
                if n < MAX_PENDING {
                    if let Some(ids) = ids {
                        (*s).ids_before = ids;
                    }
                    let stack = take_stack(ctx);
                    (*s).pending[n] = PendingCheck {
                        cap: cap as u32,
                        ret,
                        stack,
                        context: ctx_bits,
                        _pad: 0,
                    };
                    (*s).npending = n as u32 + 1;
                    return;
                }
            }
            bump(counter::PENDING_OVERFLOW);
            key.context |= context::PENDING_OVERFLOW;
        }
    }
    count_cached(ctx, key, syscall_nr);
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
    if let Some(cpu) = CPU_STATE.get_ptr_mut(0) {
        // SAFETY: per-CPU map memory; programs on one CPU do not interleave (they run with
        // preemption disabled), and an owned slot is the running task's.
        unsafe {
            if (*cpu).task.task != 0
                && (*cpu).moves == cgroup_moves()
                && (*cpu).bitmap_cgroup == (*cpu).task.cgroup_id
                && (0..SYSCALL_BITMAP_BITS as i64).contains(&id)
            {
                let nr = id as u32;
                let word = (nr / 64) as usize & (SYSCALL_BITMAP_WORDS - 1);
                if (*cpu).bitmap.words[word] & (1u64 << (nr % 64)) != 0 {
                    (*cpu).task.syscall_nr = nr as i32;
                    (*cpu).task.npending = 0;
                    (*cpu).task.past_exec = 1;
                    return;
                }
            }
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
    let Some(cpu) = CPU_STATE.get_ptr_mut(0) else {
        return;
    };
    let moves = cgroup_moves();
    // SAFETY: per-CPU map memory; programs on one CPU do not interleave (they run with
    // preemption disabled), and an owned slot is the running task's.
    let cgroup_id = unsafe {
        if (*cpu).task.task == 0 || (*cpu).moves != moves {
            let task = current_task();
            if (*cpu).task.task == 0 {
                // The task's first syscall on this CPU since it was switched in: the slot
                // becomes its own. Its storage, created at its first syscall, marks it as seen.
                match TASKS.get(task, None) {
                    // Entering a syscall, the task is in none: whatever its storage still
                    // says (a syscall entered while the probes were being attached) is stale.
                    Some(s) => {
                        (*s).syscall_nr = -1;
                        (*s).npending = 0;
                    }
                    None => {
                        let mut fresh = NEW_TASK;
                        if TASKS.get(task, Some(&mut fresh)).is_none() {
                            bump(counter::TASK_STORAGE_FAILED);
                        }
                    }
                }
                (*cpu).task.task = task as u64;
                (*cpu).task.ids_before = 0;
                (*cpu).own_cred = 0;
            }
            (*cpu).moves = moves;
            (*cpu).task.cgroup_id = cgroup_id_of(task);
        }
        (*cpu).task.syscall_nr = nr as i32;
        (*cpu).task.npending = 0;
        (*cpu).task.cgroup_id
    };
    let word = (nr / 64) as usize & (SYSCALL_BITMAP_WORDS - 1);
    let bit = 1u64 << (nr % 64);
    // SAFETY: as above. Only cgroups past their first exec are ever cached.
    let cached = unsafe { (*cpu).bitmap_cgroup == cgroup_id };
    // SAFETY: as above.
    if cached && unsafe { (*cpu).bitmap.words[word] } & bit != 0 {
        // SAFETY: as above.
        unsafe { (*cpu).task.past_exec = 1 };
        return;
    }
    // Syscalls of the container runtime's setup (before the workload's first exec) are not
    // the workload's: they are not recorded, except the exec itself and whatever the runtime
    // calls once it has installed the workload's seccomp filter (between the filter and the
    // exec): a profile generated from this bitmap must allow both, or the container cannot
    // start under it.
    let past_exec = cached || exec_seen(cgroup_id);
    // SAFETY: as above.
    unsafe { (*cpu).task.past_exec = past_exec as u32 };
    let mut key = cgroup_id;
    if !past_exec && nr != EXECVE_NR.load() as u32 && nr != EXECVEAT_NR.load() as u32 {
        if task_field::<i32>(SECCOMP_MODE_OFFSET.load()) != Some(SECCOMP_MODE_FILTER) {
            return;
        }
        key |= RUNTIME_SYSCALLS_KEY_BIT;
    }
    let bitmap = match SYSCALLS.get_ptr_mut(&key) {
        Some(p) => p,
        None => {
            let empty = SyscallBitmap {
                words: [0; SYSCALL_BITMAP_WORDS],
            };
            if SYSCALLS.insert(&key, &empty, BPF_NOEXIST.into()).is_err()
                && SYSCALLS.get_ptr(&key).is_none()
            {
                bump(counter::SYSCALL_MAP_FULL);
                return;
            }
            match SYSCALLS.get_ptr_mut(&key) {
                Some(p) => p,
                None => return,
            }
        }
    };
    // SAFETY: map memory; a lost race only sets the same bit again later.
    unsafe {
        if (*bitmap).words[word] & bit == 0 {
            (*bitmap).words[word] |= bit;
        }
        if past_exec {
            (*cpu).bitmap_cgroup = cgroup_id;
            (*cpu).bitmap = *bitmap;
        }
    }
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
    if let Some(cpu) = owned_slot() {
        // SAFETY: per-CPU map memory of the running task's slot.
        unsafe {
            if (*cpu).task.syscall_nr >= 0 && (*cpu).task.npending == 0 {
                (*cpu).task.syscall_nr = -1;
                return;
            }
        }
    }
    sys_exit_slow(ctx);
}

/// Everything else at syscall exit (a separate BPF function, see `check_slow`).
#[inline(never)]
fn sys_exit_slow(ctx: &BtfTracePointContext) {
    let ret: i64 = ctx.arg(1);
    let Some(state) = task_state(owned_slot()) else {
        let task = current_task();
        // A task never seen entering a syscall: it was inside one when the probes were
        // attached, or is a new thread returning from clone. Nothing can be judged; start
        // tracking it.
        let mut fresh = NEW_TASK;
        if TASKS.get(task, Some(&mut fresh)).is_none() {
            bump(counter::TASK_STORAGE_FAILED);
        }
        return;
    };
    // SAFETY: the running task's syscall state (its CPU slot or its storage); only it writes it.
    let (syscall_nr, npending) = unsafe { ((*state).syscall_nr, (*state).npending) };
    if syscall_nr >= 0 {
        if npending != 0 {
            finish_pending(state, syscall_nr, ret);
        }
        // SAFETY: as above.
        unsafe { (*state).syscall_nr = -1 };
        return;
    }
    // Exited without entering: seccomp refused it before the enter tracepoint, unless it
    // succeeded (a new thread returning from clone, execve from a non-leader thread).
    if ret >= 0 || ret < -MAX_ERRNO {
        return;
    }
    if let Some(mode) = task_field::<i32>(SECCOMP_MODE_OFFSET.load()) {
        if mode != SECCOMP_MODE_FILTER {
            return;
        }
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
    let pid_tgid = bpf_get_current_pid_tgid();
    let event = DenyEvent {
        kind: kind::SYSCALL_DENIED,
        pid: pid_tgid as u32,
        tgid: (pid_tgid >> 32) as u32,
        _pad: 0,
        key,
        comm: comm(),
    };
    if EVENTS.output::<DenyEvent>(&event, 0).is_err() {
        bump(counter::RINGBUF_FULL);
    }
}

/// Whether `nr` is one of the `set*id` syscalls.
#[inline(always)]
fn is_setid_syscall(nr: i32) -> bool {
    let bit = (nr as i64) - SETID_BASE.load() as i64;
    nr >= 0 && (0..64).contains(&bit) && SETID_MASK.load() & (1u64 << bit) != 0
}

/// A hash of the eight ids of `cred` (uid, gid, suid, sgid, euid, egid, fsuid, fsgid).
#[inline(always)]
fn cred_ids(cred: u64) -> Option<u64> {
    let offset = CRED_IDS_OFFSET.load();
    if offset == 0 || cred == 0 {
        return None;
    }
    // SAFETY: reads kernel memory through the helper, which faults safely.
    let ids: [u32; 8] =
        unsafe { bpf_probe_read_kernel((cred + offset) as *const [u32; 8]) }.ok()?;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for id in ids {
        h = (h ^ id as u64).wrapping_mul(0x100_0000_01b3);
    }
    Some(h)
}

/// Counts the pending checks of a syscall that just returned `ret`, keyed by that outcome.
#[inline(never)]
fn finish_pending(state: *mut TaskState, syscall_nr: i32, ret: i64) {
    let ok = ret >= 0 || ret < -MAX_ERRNO;
    let outcome = if ok { OUTCOME_SYSCALL_OK } else { ret as i32 };
    // For granted set*id checks: are the ids (now in the task's new real_cred) unchanged?
    // SAFETY: the running task's syscall state.
    let ids_before = unsafe { (*state).ids_before };
    let ids_unchanged =
        ok && ids_before != 0 && cred_ids(real_cred(current_task())) == Some(ids_before);
    // SAFETY: as above.
    unsafe { (*state).ids_before = 0 };
    // The cgroup at the syscall's entry, like the checks of this syscall counted at once.
    // SAFETY: as above.
    let cgroup_id = unsafe { (*state).cgroup_id };
    for i in 0..MAX_PENDING {
        // SAFETY: the running task's syscall state.
        let (n, p) = unsafe { ((*state).npending as usize, (*state).pending[i]) };
        if i >= n {
            break;
        }
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
    // SAFETY: as above.
    unsafe { (*state).npending = 0 };
}

#[btf_tracepoint(function = "cgroup_attach_task")]
pub fn cgroup_attach_task(_ctx: BtfTracePointContext) -> i32 {
    // `trace_cgroup_attach_task(dst_cgrp, path, task, threadgroup)`, after the move.
    // SAFETY: a plain read-modify-write of a global: two racing increments still change it.
    unsafe {
        let p = &raw mut CGROUP_MOVES;
        core::ptr::write_volatile(p, core::ptr::read_volatile(p).wrapping_add(1));
    }
    0
}

#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch(ctx: BtfTracePointContext) -> i32 {
    // `trace_sched_switch(preempt, prev, next, prev_state)`: `prev` leaves this CPU. If the
    // CPU's slot is its, the slot is released, and the state of an unfinished syscall moves to
    // the task's storage (created at its first syscall), where the rest of the syscall finds
    // it, on whichever CPU the task resumes.
    let prev: *mut c_void = ctx.arg(1);
    let Some(cpu) = CPU_STATE.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: per-CPU map memory; programs on one CPU do not interleave.
    unsafe {
        let owner = (*cpu).task.task;
        (*cpu).task.task = 0;
        if owner != prev as u64 || (*cpu).task.syscall_nr < 0 {
            return 0;
        }
        match TASKS.get(prev, None) {
            Some(s) => *s = (*cpu).task,
            None => bump(counter::TASK_STORAGE_FAILED),
        }
    }
    0
}

/// Whether a program that just started is a container runtime re-executing itself during
/// setup (runc starts as `/proc/self/exe` = "exe", re-execs a sealed copy of itself = "runc",
/// then renames itself "runc:[0:PARENT]" ...; crun, youki and runsc likewise), not a workload.
#[inline(always)]
fn is_runtime_comm(comm: &[u8; 16]) -> bool {
    let starts = |p: &[u8]| comm.len() >= p.len() && &comm[..p.len()] == p;
    let exact = |p: &[u8]| starts(p) && comm.get(p.len()).is_none_or(|b| *b == 0);
    starts(b"runc")
        || exact(b"exe")
        || exact(b"crun")
        || exact(b"youki")
        || exact(b"runsc")
        || exact(b"conmon")
}

#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec(_ctx: BtfTracePointContext) -> i32 {
    // `trace_sched_process_exec(p, old_pid, bprm)`: the new program runs from now on. A
    // runtime's own re-exec does not end its setup.
    if is_runtime_comm(&comm()) {
        return 0;
    }
    let cgroup_id = cgroup_id();
    // SAFETY: lookup into map memory.
    if unsafe { EXEC_SEEN.get(&cgroup_id) }.is_none() {
        let _ = EXEC_SEEN.insert(&cgroup_id, &1, BPF_NOEXIST.into());
    }
    0
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

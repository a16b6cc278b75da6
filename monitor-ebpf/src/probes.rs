use aya_ebpf::{
    Global,
    bindings::{BPF_F_NO_PREALLOC, BPF_NOEXIST},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_kernel,
        generated::bpf_get_current_cgroup_id,
    },
    macros::{btf_tracepoint, map},
    maps::{HashMap, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf, StackTrace},
    programs::{BtfTracePointContext, tracing::StackIdContext},
};
use monitor_common::{
    CapEvent, CapKey, DenyEvent, DenyKey, SYSCALL_BITMAP_BITS, SyscallBitmap, counter, kind,
};

/// `EEXIST`, returned negated by a `BPF_NOEXIST` insert that lost a race.
const EEXIST: i64 = 17;
/// Largest errno value a syscall returns as `-errno`.
const MAX_ERRNO: i64 = 4095;

/// Offset of the syscall number in `struct pt_regs` (`orig_ax` on x86_64, `syscallno` on
/// aarch64). Set by the loader for the host architecture.
#[unsafe(no_mangle)]
static SYSCALL_NR_OFFSET: Global<u64> = Global::new(120);

/// First sightings (cap checks, denials). 256 KiB holds ~4,000 records; only new keys go here.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Kernel stacks of capability checks, for telling no-audit checks apart in userspace.
#[map]
static STACKS: StackTrace = StackTrace::with_max_entries(8192, 0);

/// (cgroup, cap, result, stack) -> number of checks. Per-CPU so that counting needs no atomic
/// read-modify-write (the bpf target has none); userspace sums the CPUs.
#[map]
static CAP_CHECKS: PerCpuHashMap<CapKey, u64> =
    PerCpuHashMap::with_max_entries(16384, BPF_F_NO_PREALLOC);

/// cgroup id -> bitmap of syscall numbers entered.
#[map]
static SYSCALLS: HashMap<u64, SyscallBitmap> = HashMap::with_max_entries(8192, BPF_F_NO_PREALLOC);

/// thread id -> syscall number + 1 while inside a syscall, 0 after it returned.
#[map]
static INFLIGHT: LruHashMap<u32, u32> = LruHashMap::with_max_entries(65536, 0);

/// (cgroup, syscall, errno) -> number of syscalls that exited without entering. Per-CPU.
#[map]
static DENIALS: PerCpuHashMap<DenyKey, u64> =
    PerCpuHashMap::with_max_entries(16384, BPF_F_NO_PREALLOC);

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
                // SAFETY: per-CPU map memory; programs on one CPU do not interleave.
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

#[btf_tracepoint(function = "cap_capable")]
pub fn cap_capable(ctx: BtfTracePointContext) -> i32 {
    try_cap_capable(&ctx);
    0
}

/// `trace_cap_capable(cred, target_ns, capable_ns, cap, ret)`.
fn try_cap_capable(ctx: &BtfTracePointContext) {
    let cap: i32 = ctx.arg(3);
    let ret: i32 = ctx.arg(4);
    let stack_id = match ctx.get_stackid(&STACKS, 0) {
        Ok(id) => id as i32,
        Err(_) => {
            bump(counter::STACK_FAILED);
            -1
        }
    };
    // SAFETY: a helper without arguments.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    let key = CapKey { cgroup_id, cap: cap as u32, ret, stack_id, _pad: 0 };
    if !count(&CAP_CHECKS, &key, counter::CAP_MAP_FULL) {
        return;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let pid = pid_tgid as u32;
    // SAFETY: lookups return pointers into map memory valid for this program run.
    let syscall_nr = match unsafe { INFLIGHT.get(&pid) } {
        Some(v) if *v != 0 => (*v - 1) as i32,
        _ => -1,
    };
    let event = CapEvent {
        kind: kind::CAP_CHECK,
        pid,
        tgid: (pid_tgid >> 32) as u32,
        syscall_nr,
        key,
        comm: comm(),
    };
    if EVENTS.output::<CapEvent>(&event, 0).is_err() {
        bump(counter::RINGBUF_FULL);
    }
}

#[btf_tracepoint(function = "sys_enter")]
pub fn sys_enter(ctx: BtfTracePointContext) -> i32 {
    try_sys_enter(&ctx);
    0
}

/// `trace_sys_enter(regs, id)`.
fn try_sys_enter(ctx: &BtfTracePointContext) {
    let id: i64 = ctx.arg(1);
    if id < 0 || id >= SYSCALL_BITMAP_BITS as i64 {
        return;
    }
    let nr = id as u32;
    let tid = bpf_get_current_pid_tgid() as u32;
    match INFLIGHT.get_ptr_mut(&tid) {
        // SAFETY: pointer into map memory.
        Some(p) => unsafe { *p = nr + 1 },
        None => {
            let _ = INFLIGHT.insert(&tid, &(nr + 1), 0);
        }
    }
    // SAFETY: a helper without arguments.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    let bitmap = match SYSCALLS.get_ptr_mut(&cgroup_id) {
        Some(p) => p,
        None => {
            let empty = SyscallBitmap { words: [0; monitor_common::SYSCALL_BITMAP_WORDS] };
            if SYSCALLS.insert(&cgroup_id, &empty, BPF_NOEXIST.into()).is_err()
                && SYSCALLS.get_ptr(&cgroup_id).is_none()
            {
                bump(counter::SYSCALL_MAP_FULL);
                return;
            }
            match SYSCALLS.get_ptr_mut(&cgroup_id) {
                Some(p) => p,
                None => return,
            }
        }
    };
    let word = (nr / 64) as usize & (monitor_common::SYSCALL_BITMAP_WORDS - 1);
    let bit = 1u64 << (nr % 64);
    // SAFETY: pointer into map memory; a lost race only sets the same bit again later.
    unsafe {
        if (*bitmap).words[word] & bit == 0 {
            (*bitmap).words[word] |= bit;
        }
    }
}

#[btf_tracepoint(function = "sys_exit")]
pub fn sys_exit(ctx: BtfTracePointContext) -> i32 {
    try_sys_exit(&ctx);
    0
}

/// `trace_sys_exit(regs, ret)`.
fn try_sys_exit(ctx: &BtfTracePointContext) {
    let ret: i64 = ctx.arg(1);
    let tid = bpf_get_current_pid_tgid() as u32;
    if let Some(p) = INFLIGHT.get_ptr_mut(&tid) {
        // SAFETY: pointer into map memory.
        unsafe {
            if *p != 0 {
                *p = 0;
                return;
            }
        }
    }
    // Exited without entering: seccomp refused it before the enter tracepoint, unless it
    // succeeded (a new thread returning from clone, execve from a non-leader thread).
    if ret >= 0 || ret < -MAX_ERRNO {
        return;
    }
    let regs: *const u8 = ctx.arg(0);
    // SAFETY: reads kernel memory through the helper, which faults safely.
    // The number is an int-sized field on aarch64 (`syscallno`); on x86_64 the low half of
    // `orig_ax` (little endian) holds it.
    let nr: i64 = match unsafe {
        bpf_probe_read_kernel(regs.add(SYSCALL_NR_OFFSET.load() as usize) as *const i32)
    } {
        Ok(nr) => nr as i64,
        Err(_) => return,
    };
    if nr < 0 || nr >= SYSCALL_BITMAP_BITS as i64 {
        return;
    }
    // SAFETY: a helper without arguments.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    let key = DenyKey { cgroup_id, syscall_nr: nr as u32, errno: (-ret) as u32 };
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

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

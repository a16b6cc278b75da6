//! Every map and global of the kernel side, and the small helpers that count in them.
//!
//! Userspace finds each of them by name (`Ebpf::map`, `EbpfLoader::override_global`): the
//! names are an interface and must not change. The read-only globals are defaults that the
//! loader overrides for the running kernel (offsets read from its BTF, the host's syscall
//! numbers); the verifier sees them as constants. Task storage needs Linux 5.11; everything
//! else here is older.

use core::ffi::c_void;

use aya_ebpf::{
    Global,
    bindings::{BPF_F_NO_PREALLOC, BPF_LOCAL_STORAGE_GET_F_CREATE, BPF_NOEXIST, bpf_map_type},
    helpers::generated::bpf_task_storage_get,
    macros::{btf_map, map},
    maps::{HashMap, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf},
};
use monitor_common::{
    CapCacheEntry, CapKey, CpuState, DenyKey, KprobeArgs, STACK_DEPTH, SyscallBitmap, TaskState,
    counter,
};

/// `EEXIST`, returned negated by a `BPF_NOEXIST` insert that lost a race.
pub const EEXIST: i64 = 17;
/// `E2BIG`, returned negated by an insert into a full hash map.
const E2BIG: i64 = 7;

/// Counts a failed insert of a new key: in `full_counter` when the map is full, else (the
/// kernel could not allocate the element: `ENOMEM`) in `MAP_ALLOC_FAILED`.
#[inline(always)]
pub fn insert_failed(err: i64, full_counter: u32) {
    if -err == E2BIG {
        bump(full_counter);
    } else {
        bump(counter::MAP_ALLOC_FAILED);
    }
}

// ---- Read-only globals, set by the loader ----

/// Offset of the syscall number in `struct pt_regs` (`orig_ax` on x86_64, `syscallno` on
/// aarch64). Set by the loader for the host architecture.
#[unsafe(no_mangle)]
pub static SYSCALL_NR_OFFSET: Global<u64> = Global::new(120);
/// Syscall numbers of `execve` and `execveat` on the host architecture, set by the loader.
#[unsafe(no_mangle)]
pub static EXECVE_NR: Global<u64> = Global::new(59);
#[unsafe(no_mangle)]
pub static EXECVEAT_NR: Global<u64> = Global::new(322);

/// Offset of `real_cred` in `struct task_struct`, read from the kernel's BTF by the loader;
/// 0 when unknown (then borrowed credentials are not detected).
#[unsafe(no_mangle)]
pub static REAL_CRED_OFFSET: Global<u64> = Global::new(0);
/// Offset of `seccomp.mode` in `struct task_struct`; 0 when unknown (then every exit without
/// enter counts as a denial).
#[unsafe(no_mangle)]
pub static SECCOMP_MODE_OFFSET: Global<u64> = Global::new(0);

/// Offsets of the chain from a task to its cgroup v2 id (`task_struct.cgroups`,
/// `css_set.dfl_cgrp`, `cgroup.kn`, `kernfs_node.id`), read from the kernel's BTF by the loader.
/// The loads are plain loads that the verifier checks against BTF (what
/// `bpf_get_current_cgroup_id` does, without the helper call, which costs more than the rest of
/// the syscall path); 0 when unknown (then the helper is called).
#[unsafe(no_mangle)]
pub static TASK_CGROUPS_OFFSET: Global<u64> = Global::new(0);
#[unsafe(no_mangle)]
pub static CSS_SET_DFL_CGRP_OFFSET: Global<u64> = Global::new(0);
#[unsafe(no_mangle)]
pub static CGROUP_KN_OFFSET: Global<u64> = Global::new(0);
#[unsafe(no_mangle)]
pub static KERNFS_NODE_ID_OFFSET: Global<u64> = Global::new(0);

/// Offset of `uid` in `struct cred`, followed by gid, suid, sgid, euid, egid, fsuid, fsgid (32
/// bytes); 0 when unknown (granted set*id checks then stay `used`).
#[unsafe(no_mangle)]
pub static CRED_IDS_OFFSET: Global<u64> = Global::new(0);

/// Offset of `cap_inheritable` in `struct cred`, followed by `cap_permitted`, `cap_effective`,
/// `cap_bset` and `cap_ambient` (8 bytes each); 0 when unknown (a first exec's capability
/// sets are then not read).
#[unsafe(no_mangle)]
pub static CRED_CAPS_OFFSET: Global<u64> = Global::new(0);
/// Offset of `atomic_flags` in `struct task_struct` (`PFA_NO_NEW_PRIVS` is bit 0); 0 when
/// unknown.
#[unsafe(no_mangle)]
pub static TASK_ATOMIC_FLAGS_OFFSET: Global<u64> = Global::new(0);
/// Offsets of `cgroup.root` and `cgroup_root.hierarchy_id`: a created or removed cgroup is
/// sent only when it is of the v2 hierarchy (id 0); 0 when unknown (then none is sent).
#[unsafe(no_mangle)]
pub static CGROUP_ROOT_OFFSET: Global<u64> = Global::new(0);
#[unsafe(no_mangle)]
pub static CGROUP_ROOT_HIERARCHY_ID_OFFSET: Global<u64> = Global::new(0);

/// The `set*id` syscalls (setuid, setgid, setreuid, ...): numbers `SETID_BASE + b` for each
/// bit `b` of `SETID_MASK` (they lie within 64 numbers of each other on every architecture;
/// see `monitor_common::setid`).
#[unsafe(no_mangle)]
pub static SETID_BASE: Global<u64> = Global::new(0);
#[unsafe(no_mangle)]
pub static SETID_MASK: Global<u64> = Global::new(0);

/// The chmod family (see `monitor_common::chmod`): the numbers of the calls whose mode is the
/// second argument (`chmod`, `fchmod`), and of those where it is the third (`fchmodat`,
/// `fchmodat2`), packed; and where those arguments sit in the task's user `pt_regs` (0:
/// unknown, no check is then judged by its mode).
#[unsafe(no_mangle)]
pub static CHMOD_ARG1_NRS: Global<u64> = Global::new(0);
#[unsafe(no_mangle)]
pub static CHMOD_ARG2_NRS: Global<u64> = Global::new(0);
#[unsafe(no_mangle)]
pub static PT_REGS_ARG1_OFFSET: Global<u64> = Global::new(0);
#[unsafe(no_mangle)]
pub static PT_REGS_ARG2_OFFSET: Global<u64> = Global::new(0);

// ---- A writable global ----

/// Incremented whenever a task is moved to another cgroup (`cgroup_attach_task`): the cgroup
/// id a slot read when its owner claimed it is read again at the owner's next syscall.
#[unsafe(no_mangle)]
pub static mut CGROUP_MOVES: u64 = 0;

/// The current value of [`CGROUP_MOVES`].
#[inline(always)]
pub fn cgroup_moves() -> u64 {
    // SAFETY: a plain read of a global; a racing increment is seen at the next syscall.
    unsafe { core::ptr::read_volatile(&raw const CGROUP_MOVES) }
}

// ---- Syscall state ----

/// Per-task state of tasks switched out inside a syscall (moved here from the per-CPU slot by
/// `sched_switch`), and a marker that a task's syscalls are being seen (created at its first
/// syscall): an exit without an entry is judged only for tasks seen before.
#[btf_map]
pub static TASKS: TaskStorage<TaskState> = TaskStorage::new();

/// The running task's syscall state and its cgroup's bitmap, per CPU (see `CpuState` and the
/// crate's documentation).
#[map]
pub static CPU_STATE: PerCpuArray<CpuState> = PerCpuArray::with_max_entries(1, 0);

// ---- What is sent and counted ----

/// First sightings (cap checks, denials). 256 KiB holds ~4,000 records; only new keys go here.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Kernel stacks of capability checks by a 64-bit hash of their frames, for telling no-audit
/// checks apart in userspace. (A `BPF_MAP_TYPE_STACK_TRACE` map fails on bucket collisions,
/// which become frequent once a host has a few hundred distinct stacks; a hash map keyed by a
/// 64-bit hash practically never collides and only holds the stacks seen.)
#[map]
pub static STACKS: HashMap<u64, [u64; STACK_DEPTH]> =
    HashMap::with_max_entries(16384, BPF_F_NO_PREALLOC);

/// Per-CPU scratch space for `bpf_get_stack`.
#[map]
pub static STACK_SCRATCH: PerCpuArray<[u64; STACK_DEPTH]> = PerCpuArray::with_max_entries(1, 0);

/// (cgroup, cap, result, stack, context, outcome) -> number of checks. Per-CPU so that counting
/// needs no atomic read-modify-write (the bpf target has none); userspace sums the CPUs.
/// 65,536 keys: a container's workload makes about 16 (measured: a shell looping over `cat`),
/// so 1,000 running containers filled 16,384. Allocated as used (about 100 bytes plus 8 per
/// CPU each), so the room costs nothing until it is needed.
#[map]
pub static CAP_CHECKS: PerCpuHashMap<CapKey, u64> =
    PerCpuHashMap::with_max_entries(65536, BPF_F_NO_PREALLOC);

/// cgroup id -> bitmap of syscall numbers entered.
#[map]
pub static SYSCALLS: HashMap<u64, SyscallBitmap> =
    HashMap::with_max_entries(8192, BPF_F_NO_PREALLOC);

/// (cgroup, syscall, errno) -> number of syscalls that exited without entering. Per-CPU.
#[map]
pub static DENIALS: PerCpuHashMap<DenyKey, u64> =
    PerCpuHashMap::with_max_entries(16384, BPF_F_NO_PREALLOC);

/// cgroup id -> 1 once an `execve` completed in it: checks before that are the container
/// runtime's setup. Userspace marks cgroups that were already running.
#[map]
pub static EXEC_SEEN: HashMap<u64, u8> = HashMap::with_max_entries(65536, BPF_F_NO_PREALLOC);

/// Slots of [`CAP_CACHE`].
pub const CAP_CACHE_SLOTS: u32 = monitor_common::CAP_CACHE_SLOTS;

/// A direct-mapped, per-CPU cache in front of `CAP_CHECKS`, by (cgroup, cap, result, syscall,
/// context). A hit only adds to `delta` (the per-CPU hash lookup costs more than everything
/// else the probe does); a miss flushes the evicted entry's `delta` into `CAP_CHECKS` and
/// counts the new check there directly, which is also where first sightings are detected.
/// Userspace adds the unflushed `delta`s when it reads. Walking the kernel stack costs
/// microseconds, so it is done at the 1st, 2nd, 4th, 8th, ... hit of an entry; in between the
/// last stack is reused (a changed stack flushes first). Counting stays exact; only which call
/// site an unsampled check is attributed to is inherited from the last sample.
#[map]
pub static CAP_CACHE: PerCpuArray<CapCacheEntry> =
    PerCpuArray::with_max_entries(CAP_CACHE_SLOTS, 0);

/// Per-CPU: the last cgroup seen past its first exec (monotonic, so a hit needs no lookup).
#[map]
pub static EXEC_CACHE: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Loss counters, indexed by `monitor_common::counter`. Per-CPU.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// The address below which `cap_mmap_addr` checks `CAP_SYS_RAWIO` (`vm.mmap_min_addr`, read
/// by the loader); see [`crate::mmap_addr`].
#[unsafe(no_mangle)]
pub static MMAP_MIN_ADDR: Global<u64> = Global::new(0);

/// Per-CPU: the pid_tgid of the last `CAP_SYS_RAWIO` check the `cap_capable` hook counted
/// (fexit and kprobe modes), for [`crate::mmap_addr`].
#[map]
pub static RAWIO_SEEN: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU: low-mmap checks counted by the `cap_mmap_addr` hook (0) and already counted by
/// the `cap_capable` hook (1).
#[map]
pub static MMAP_ADDR: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

/// `cap_mmap_addr`'s address by pid_tgid, from its kprobe to its kretprobe (kprobe mode).
#[map]
pub static MMAP_ARGS: LruHashMap<u64, u64> = LruHashMap::with_max_entries(4096, 0);

/// Entry arguments by pid_tgid, from the kprobe to the kretprobe (kprobe mode).
#[map]
pub static KPROBE_ARGS: LruHashMap<u64, KprobeArgs> = LruHashMap::with_max_entries(16384, 0);

// ---- Helpers ----

/// Entry `index` of a per-CPU array, as a reference.
///
/// # Safety
///
/// No other reference to the entry may be alive while this one is used. That holds for a
/// program that takes each entry it needs once: the programs run with preemption disabled, so
/// one program at a time runs on a CPU, and only the running program touches its CPU's
/// entries (userspace writes them only before the programs are attached).
#[inline(always)]
pub unsafe fn per_cpu_mut<T>(map: &PerCpuArray<T>, index: u32) -> Option<&'static mut T> {
    // SAFETY: the pointer is to this CPU's value, valid while the program runs; exclusive by
    // the caller's contract.
    map.get_ptr_mut(index).map(|p| unsafe { &mut *p })
}

/// Adds one to loss counter `index` (`monitor_common::counter`).
#[inline(always)]
pub fn bump(index: u32) {
    if let Some(p) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU map memory; programs on one CPU do not interleave.
        unsafe { *p += 1 };
    }
}

/// Adds one to the counter `map[key]`; returns true when the key was new. A full map counts
/// in `full_counter`.
#[inline(always)]
pub fn count<K>(map: &PerCpuHashMap<K, u64>, key: &K, full_counter: u32) -> bool {
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
        Err(e) => {
            insert_failed(e as i64, full_counter);
            false
        }
    }
}

// ---- Task storage ----

/// A BTF-defined `BPF_MAP_TYPE_TASK_STORAGE` map: per-task state that lives and dies with the
/// task, reached without a hash lookup (aya-ebpf 0.2 has no wrapper for it). Linux 5.11.
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
    fn lookup(&self, task: *mut c_void, init: Option<&mut T>) -> Option<*mut T> {
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

    /// The value of `task`, `None` when it has none.
    ///
    /// # Safety
    ///
    /// `task` is the running task (or the task `sched_switch` is switching out), and no other
    /// reference to its value is alive: only programs running as that task, one at a time,
    /// reach its value, each once.
    #[inline(always)]
    pub unsafe fn get(&self, task: *mut c_void) -> Option<&'static mut T> {
        // SAFETY: map memory of the task, which lives as long as the task, beyond this
        // program's run; exclusive by the caller's contract.
        self.lookup(task, None).map(|p| unsafe { &mut *p })
    }

    /// Creates the value of `task` (a trusted task pointer) as `init` unless it has one;
    /// false when it could not be created (memory pressure).
    #[inline(always)]
    pub fn create(&self, task: *mut c_void, init: &mut T) -> bool {
        self.lookup(task, Some(init)).is_some()
    }
}

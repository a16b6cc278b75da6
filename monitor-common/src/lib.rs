//! Types shared by the eBPF programs (`monitor-ebpf`) and userspace (`monitor-daemon`).
//!
//! Everything here crosses the kernel boundary as raw bytes, so every type is `#[repr(C)]`,
//! made of fixed-width integers only, with explicit padding fields and no `bool` or enum
//! (an invalid discriminant in a `Pod` type would be undefined behaviour). Kinds are `u32`
//! constants. Sizes are asserted at compile time so that both sides agree.
//!
//! Beside the types, the pure helpers both sides need, so that the kernel and userspace cannot
//! disagree: [`fnv`] (the stack and id hashes), [`comm`] (process names, the container
//! runtime's), [`setid`] (the `set*id` syscalls), [`chmod`] (the chmod family) and the loss counters' names in [`counter`].
//! No dependencies (aya only with the `user` feature), `no_std`, unit-tested on the host.
#![cfg_attr(not(test), no_std)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod chmod;
pub mod comm;
pub mod fnv;
pub mod setid;

pub use comm::{comm_bytes, is_runtime_comm};
pub use fnv::{FNV_OFFSET, FNV_PRIME, fnv1a, fnv1a_step};
pub use setid::{SETID_SYSCALLS, is_setid_syscall, setid_base_mask};

/// Length of `task_struct::comm`.
pub const COMM_LEN: usize = 16;

/// Number of syscall numbers tracked per cgroup (x86_64 and aarch64 numbers are all below 512).
pub const SYSCALL_BITMAP_BITS: usize = 512;
/// Words of the per-cgroup syscall bitmap.
pub const SYSCALL_BITMAP_WORDS: usize = SYSCALL_BITMAP_BITS / 64;

/// Ring-buffer record kinds.
pub mod kind {
    /// A (cgroup, capability, result, call stack) seen for the first time: [`super::CapEvent`].
    pub const CAP_CHECK: u32 = 1;
    /// A (cgroup, syscall, errno) seccomp denial seen for the first time: [`super::DenyEvent`].
    pub const SYSCALL_DENIED: u32 = 2;
    /// A cgroup v2 directory was created: [`super::CgroupEvent`] with its path.
    pub const CGROUP_MKDIR: u32 = 3;
    /// A cgroup v2 directory was removed: [`super::CgroupGone`] (no path).
    pub const CGROUP_RMDIR: u32 = 4;
    /// The first `execve` completed in a cgroup: [`super::ExecEvent`] with the credentials
    /// the new program runs with.
    pub const FIRST_EXEC: u32 = 5;
}

/// Indexes of the `COUNTERS` array map: things the kernel side could not record.
pub mod counter {
    /// `bpf_ringbuf_reserve` failed: the ring buffer was full, an event was lost.
    pub const RINGBUF_FULL: u32 = 0;
    /// `CAP_CHECKS` was full: a new (cgroup, cap, result, stack) key could not be stored.
    pub const CAP_MAP_FULL: u32 = 1;
    /// `SYSCALLS` was full: a cgroup's syscall bitmap could not be created.
    pub const SYSCALL_MAP_FULL: u32 = 2;
    /// `DENIALS` was full: a new (cgroup, syscall, errno) key could not be stored.
    pub const DENIAL_MAP_FULL: u32 = 3;
    /// `bpf_get_stack` failed or `STACKS` was full: the check has no stack.
    pub const STACK_FAILED: u32 = 4;
    /// A refused check could not be held for its syscall's outcome (more than MAX_PENDING).
    pub const PENDING_OVERFLOW: u32 = 5;
    /// `bpf_task_storage_get` could not create a task's state (memory pressure).
    pub const TASK_STORAGE_FAILED: u32 = 6;
    /// kretprobe on `cap_capable` without a matching entry (kprobe mode only).
    pub const KRETPROBE_UNMATCHED: u32 = 7;
    /// A new key of `CAP_CHECKS`, `DENIALS`, `SYSCALLS` or `EXEC_SEEN` could not be stored for another
    /// reason than a full map: the kernel could not allocate its element then (a burst of new
    /// keys on one CPU emptied the map's element cache).
    pub const MAP_ALLOC_FAILED: u32 = 8;
    /// `EXEC_SEEN` was full: a cgroup's first exec could not be marked (its checks stay
    /// runtime setup, and its first-exec credentials are not sent).
    pub const EXEC_MAP_FULL: u32 = 9;
    /// Number of counters.
    pub const COUNT: u32 = 10;

    /// Each counter's name, in index order: the name of its metric label, of its `lost` key in
    /// the daemon's state and in `capmon record`'s JSON.
    pub const NAMES: [(u32, &str); COUNT as usize] = [
        (RINGBUF_FULL, "ringbuf_full"),
        (CAP_MAP_FULL, "cap_map_full"),
        (SYSCALL_MAP_FULL, "syscall_map_full"),
        (DENIAL_MAP_FULL, "denial_map_full"),
        (STACK_FAILED, "stack_failed"),
        (PENDING_OVERFLOW, "pending_overflow"),
        (TASK_STORAGE_FAILED, "task_storage_failed"),
        (KRETPROBE_UNMATCHED, "kretprobe_unmatched"),
        (MAP_ALLOC_FAILED, "map_alloc_failed"),
        (EXEC_MAP_FULL, "exec_map_full"),
    ];

    /// The userspace-only loss: ring-buffer records that could not be decoded.
    pub const UNDECODABLE: &str = "undecodable";

    /// Runs of a program that the kernel skipped because a program was already running on
    /// that CPU (`recursion_misses` of each attached program, read from the kernel): e.g. an
    /// fexit program preempted on a `PREEMPT_RT` kernel and re-entered by the next task.
    pub const PROGRAM_SKIPPED: &str = "program_skipped";

    /// Every loss reason: the kernel counters' [`NAMES`] in index order, then [`UNDECODABLE`]
    /// and [`PROGRAM_SKIPPED`].
    pub const LOSS_REASONS: [&str; COUNT as usize + 2] = {
        let mut out = [UNDECODABLE; COUNT as usize + 2];
        let mut i = 0;
        while i < NAMES.len() {
            out[i] = NAMES[i].1;
            i += 1;
        }
        out[COUNT as usize + 1] = PROGRAM_SKIPPED;
        out
    };

    /// The name of counter `index`, `None` past [`COUNT`].
    pub const fn name(index: u32) -> Option<&'static str> {
        if index < COUNT {
            Some(NAMES[index as usize].1)
        } else {
            None
        }
    }

    // NAMES has one entry per index, at that index: every counter is named exactly once.
    const _: () = {
        let mut i = 0;
        while i < NAMES.len() {
            assert!(NAMES[i].0 == i as u32);
            i += 1;
        }
    };
}

/// Bits of [`CapKey::context`]: circumstances that make a check not the workload's own.
pub mod context {
    /// Made with borrowed credentials (`cred` is not the task's `real_cred`: overlayfs and
    /// other `override_creds` users).
    pub const BORROWED_CRED: u32 = 1;
    /// Made before the first `execve` completed in the cgroup (container runtime setup).
    pub const BEFORE_EXEC: u32 = 2;
    /// Made outside any syscall the probes saw enter (kernel thread, or a thread that was
    /// already inside a syscall when the probes were attached).
    pub const NO_SYSCALL: u32 = 4;
    /// A refused check that could not wait for its syscall's outcome (more than
    /// [`super::MAX_PENDING`] refused checks in one syscall).
    pub const PENDING_OVERFLOW: u32 = 8;
    /// The check was made with `CAP_OPT_NOAUDIT` (known directly in kprobe mode, where
    /// `cap_capable`'s options argument is visible; the tracepoint has no such field).
    pub const NOAUDIT: u32 = 16;
    /// A granted `CAP_FSETID` check inside a chmod-family syscall whose requested mode has no
    /// set-group-ID bit (see [`super::chmod`]): the call does the same without the capability.
    pub const MODE_WITHOUT_SGID: u32 = 32;
}

/// `CAP_FSETID`.
pub const CAP_FSETID: u32 = 4;

/// [`CapKey::outcome`] of a check whose syscall's result is not part of the key (granted checks,
/// and refused checks made outside a syscall).
pub const OUTCOME_NONE: i32 = 0;
/// [`CapKey::outcome`] of a refused check whose syscall then succeeded.
pub const OUTCOME_SYSCALL_OK: i32 = 1;

/// [`CapKey::outcome`] of a granted `CAP_SETUID`/`CAP_SETGID` check in a `set*id` syscall
/// that succeeded and left all of the task's ids as they were: without the capability the
/// call would have succeeded too (a process "dropping" to the ids it already has, as busybox
/// does at every start as a non-root user), so the check does not show a need.
pub const OUTCOME_IDS_UNCHANGED: i32 = 2;

/// `CAP_SETGID`.
pub const CAP_SETGID: u32 = 6;
/// `CAP_SETUID`.
pub const CAP_SETUID: u32 = 7;

/// Refused checks one syscall can hold while waiting for its outcome.
pub const MAX_PENDING: usize = 4;

/// Key of the `CAP_CHECKS` hash map: one capability check outcome at one kernel call site.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CapKey {
    /// cgroup2 id of the task that made the check.
    pub cgroup_id: u64,
    /// Capability number (`CAP_CHOWN` = 0, ...).
    pub cap: u32,
    /// Result of `cap_capable`: 0 granted, negative errno when refused.
    pub ret: i32,
    /// Hash of the kernel stack, the key of its frames in `STACKS`; [`NO_STACK`] when none
    /// could be taken.
    pub stack: u64,
    /// [`context`] bits.
    pub context: u32,
    /// For refused checks inside a syscall: the syscall's result, `-errno` when it failed or
    /// [`OUTCOME_SYSCALL_OK`]; else [`OUTCOME_NONE`].
    pub outcome: i32,
}

/// [`CapKey::stack`] when no stack could be taken.
pub const NO_STACK: u64 = 0;

/// Kernel frames kept per stack (innermost first; enough to pass the BPF and capability
/// plumbing and reach the syscall entry).
pub const STACK_DEPTH: usize = 24;

/// First sighting of a [`CapKey`], with evidence: `kind` = [`kind::CAP_CHECK`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapEvent {
    /// Always [`kind::CAP_CHECK`]; the header every ring-buffer record starts with.
    pub kind: u32,
    /// Thread id of the task.
    pub pid: u32,
    /// Process id (thread group id) of the task.
    pub tgid: u32,
    /// The syscall the thread was in, or -1 when unknown.
    pub syscall_nr: i32,
    /// What was seen.
    pub key: CapKey,
    /// `comm` of the task, NUL padded.
    pub comm: [u8; COMM_LEN],
}

/// Key of the `DENIALS` hash map: a syscall that exited without entering (seccomp denied it).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DenyKey {
    /// cgroup2 id of the task.
    pub cgroup_id: u64,
    /// Syscall number.
    pub syscall_nr: u32,
    /// Positive errno the syscall returned.
    pub errno: u32,
}

/// First sighting of a [`DenyKey`]: `kind` = [`kind::SYSCALL_DENIED`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DenyEvent {
    /// Always [`kind::SYSCALL_DENIED`].
    pub kind: u32,
    /// Thread id.
    pub pid: u32,
    /// Process id.
    pub tgid: u32,
    /// Explicit padding; always 0.
    pub _pad: u32,
    /// What was seen.
    pub key: DenyKey,
    /// `comm` of the task, NUL padded.
    pub comm: [u8; COMM_LEN],
}

/// Bytes of [`CgroupEvent::path`] (NUL included): a longer path arrives cut to
/// `CGROUP_PATH_LEN - 1` bytes, and a path of that length is taken as unknown (userspace then finds the cgroup by scanning, as for cgroups that existed
/// before the probes).
pub const CGROUP_PATH_LEN: usize = 512;

/// A cgroup v2 directory created: `kind` = [`kind::CGROUP_MKDIR`] (a removal is a
/// [`CgroupGone`]). Cgroups of v1 hierarchies are not sent.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CgroupEvent {
    /// [`kind::CGROUP_MKDIR`] or [`kind::CGROUP_RMDIR`].
    pub kind: u32,
    /// Thread id of the task that made or removed it.
    pub pid: u32,
    /// Process id.
    pub tgid: u32,
    /// Explicit padding; always 0.
    pub _pad: u32,
    /// The cgroup's id (its `kernfs_node` id, the inode number of its directory).
    pub cgroup_id: u64,
    /// `comm` of the task, NUL padded.
    pub comm: [u8; COMM_LEN],
    /// Path from the hierarchy's root (`/docker/<id>`), NUL terminated; empty for a removal.
    pub path: [u8; CGROUP_PATH_LEN],
}

/// A cgroup v2 directory removed: `kind` = [`kind::CGROUP_RMDIR`]. The head of a
/// [`CgroupEvent`] without its path (a removal needs none): 40 bytes of ring buffer per
/// cgroup instead of 552, so that a mass removal (a node drained, a burst of one-shots
/// cleaned up) fits.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CgroupGone {
    /// Always [`kind::CGROUP_RMDIR`].
    pub kind: u32,
    /// Thread id of the task that removed it.
    pub pid: u32,
    /// Process id.
    pub tgid: u32,
    /// Explicit padding; always 0.
    pub _pad: u32,
    /// The cgroup's id.
    pub cgroup_id: u64,
    /// `comm` of the task, NUL padded.
    pub comm: [u8; COMM_LEN],
}

/// The credentials and confinement a cgroup's first program runs with, read from the task at
/// its `sched_process_exec`: `kind` = [`kind::FIRST_EXEC`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecEvent {
    /// Always [`kind::FIRST_EXEC`].
    pub kind: u32,
    /// Thread id.
    pub pid: u32,
    /// Process id.
    pub tgid: u32,
    /// Bit 0: the capability sets were read; bit 1: the ids; bit 2: `no_new_privs`; bit 3:
    /// the seccomp mode ([`exec_read`]).
    pub read: u32,
    /// The cgroup.
    pub cgroup_id: u64,
    /// `cred.cap_inheritable`, `cap_permitted`, `cap_effective`, `cap_bset`, `cap_ambient`.
    pub caps: [u64; 5],
    /// `cred.uid`, `gid`, `suid`, `sgid`, `euid`, `egid`, `fsuid`, `fsgid` (kernel ids, as
    /// seen from the initial user namespace).
    pub ids: [u32; 8],
    /// `task_struct.atomic_flags` (bit 0: `PFA_NO_NEW_PRIVS`).
    pub atomic_flags: u64,
    /// `task_struct.seccomp.mode`: 0 disabled, 1 strict, 2 filter.
    pub seccomp_mode: u32,
    /// Explicit padding; always 0.
    pub _pad: u32,
    /// `comm` of the new program, NUL padded.
    pub comm: [u8; COMM_LEN],
}

/// Bits of [`ExecEvent::read`]: which fields the kernel side could read (an offset missing
/// from the kernel's BTF leaves its field zero and its bit clear).
pub mod exec_read {
    /// `caps`.
    pub const CAPS: u32 = 1;
    /// `ids`.
    pub const IDS: u32 = 2;
    /// `atomic_flags`.
    pub const FLAGS: u32 = 4;
    /// `seccomp_mode`.
    pub const SECCOMP: u32 = 8;
}

/// A refused check waiting for the outcome of its syscall (in [`TaskState`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PendingCheck {
    /// Capability number.
    pub cap: u32,
    /// `cap_capable`'s result.
    pub ret: i32,
    /// Stack hash, or [`NO_STACK`].
    pub stack: u64,
    /// [`context`] bits.
    pub context: u32,
    /// Explicit padding; always 0.
    pub _pad: u32,
}

/// `cap_capable`'s arguments, kept by the kprobe until the kretprobe sees the result.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KprobeArgs {
    /// `const struct cred *`.
    pub cred: u64,
    /// Capability number.
    pub cap: u32,
    /// `CAP_OPT_*` options.
    pub opts: u32,
}

/// The state of a task inside a syscall. It lives in a per-CPU slot while the task runs (no
/// per-syscall map lookup) and is moved to the task's `TASKS` task storage when the task is
/// switched out inside a syscall.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskState {
    /// In the per-CPU slot: the address of the `task_struct` the slot belongs to (0: none).
    pub task: u64,
    /// Syscall the task is in, or -1 between syscalls.
    pub syscall_nr: i32,
    /// Number of valid entries in `pending`.
    pub npending: u32,
    /// The task's cgroup when it entered the current syscall.
    pub cgroup_id: u64,
    /// 1 when that cgroup was past its first exec at the syscall's entry.
    pub past_exec: u32,
    /// Explicit padding; always 0.
    pub _pad: u32,
    /// Hash of the task's eight ids (uid, gid, suid, sgid, euid, egid, fsuid, fsgid) when a
    /// `set*id` syscall checked `CAP_SETUID`/`CAP_SETGID`.
    pub ids_before: u64,
    /// Refused checks of the current syscall (and granted `CAP_SETUID`/`CAP_SETGID` checks of
    /// a `set*id` syscall, which wait to see whether the call changed any id).
    pub pending: [PendingCheck; MAX_PENDING],
}

/// The per-CPU `CPU_STATE` value: the syscall state of the task running on this CPU, and the
/// bitmap of the cgroup whose syscall ran last on this CPU.
///
/// The slot belongs to one task (`task.task`) from its first syscall after being switched in
/// until it is switched out; `sched_switch` then empties it and moves an unfinished syscall's
/// state to the task's storage. So an owned slot always belongs to the task running on this
/// CPU (all the programs run with preemption disabled), and a syscall that does not sleep
/// (most of them) reads and writes only this per-CPU memory at entry, capability check and
/// exit: no task-storage lookup, no helper call. Userspace zeroes it before attaching the
/// programs, so that nothing from an earlier attachment is taken for the running task's.
///
/// A set bit in `bitmap` means the bit is set in `SYSCALLS` too, so the common case (a syscall
/// already seen in the cgroup that ran last on this CPU) needs no hash lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuState {
    /// The owner's syscall state (`task.task` 0: no owner).
    pub task: TaskState,
    /// The owner's `real_cred` as last read: a check with this `cred` uses the task's own
    /// credentials without reading the task.
    pub own_cred: u64,
    /// `CGROUP_MOVES` when the owner's cgroup id was read into `task.cgroup_id`.
    pub moves: u64,
    /// The `CAP_CACHE` slot this CPU counted a plain check (context 0) in last.
    pub last_slot: u32,
    /// Explicit padding; always 0.
    pub _pad: u32,
    /// The cgroup `bitmap` belongs to (0: none).
    pub bitmap_cgroup: u64,
    /// What this CPU knows of that cgroup's `SYSCALLS` bitmap.
    pub bitmap: SyscallBitmap,
}

/// Slots of the per-CPU `CAP_CACHE` array.
pub const CAP_CACHE_SLOTS: u32 = 256;

/// One slot of the per-CPU `CAP_CACHE` array in front of `CAP_CHECKS`: checks counted here
/// (`delta`) are not yet in `CAP_CHECKS`; readers add them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapCacheEntry {
    /// The `CAP_CHECKS` key the delta belongs to (`cgroup_id` 0: empty slot).
    pub key: CapKey,
    /// Checks not yet added to `CAP_CHECKS`.
    pub delta: u64,
    /// Checks that hit this entry (for stack sampling).
    pub hits: u64,
    /// Syscall the entry is for (part of the cache tag, not of the key).
    pub syscall_nr: i64,
}

/// `SYSCALLS` key bit: the set of syscalls the container runtime made after installing the
/// workload's seccomp filter and before the workload's first exec, kept apart from the
/// workload's own (cgroup ids are inode numbers and never have this bit set).
pub const RUNTIME_SYSCALLS_KEY_BIT: u64 = 1 << 63;

/// Per-cgroup set of syscall numbers entered, one bit each.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallBitmap {
    /// Bit `n % 64` of word `n / 64` is set once syscall `n` was entered.
    pub words: [u64; SYSCALL_BITMAP_WORDS],
}

impl SyscallBitmap {
    /// Whether syscall `nr` was seen.
    pub fn contains(&self, nr: u32) -> bool {
        let nr = nr as usize;
        nr < SYSCALL_BITMAP_BITS && self.words[nr / 64] & (1u64 << (nr % 64)) != 0
    }

    /// All syscall numbers seen, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..SYSCALL_BITMAP_BITS as u32).filter(|nr| self.contains(*nr))
    }
}

const _: () = {
    assert!(core::mem::size_of::<CapKey>() == 32);
    assert!(core::mem::align_of::<CapKey>() == 8);
    assert!(core::mem::size_of::<CapEvent>() == 64);
    assert!(core::mem::size_of::<PendingCheck>() == 24);
    assert!(core::mem::size_of::<CapCacheEntry>() == 56);
    assert!(core::mem::size_of::<TaskState>() == 40 + 24 * MAX_PENDING);
    assert!(core::mem::size_of::<DenyKey>() == 16);
    assert!(core::mem::size_of::<DenyEvent>() == 48);
    assert!(core::mem::size_of::<CgroupEvent>() == 40 + CGROUP_PATH_LEN);
    assert!(core::mem::size_of::<CgroupGone>() == 40);
    assert!(core::mem::size_of::<ExecEvent>() == 24 + 40 + 32 + 16 + 16);
    assert!(core::mem::size_of::<SyscallBitmap>() == 64);
    assert!(core::mem::size_of::<CpuState>() == 136 + 32 + 64);
};

#[cfg(test)]
mod tests {
    use super::counter;

    #[test]
    fn counter_names_cover_every_index_once() {
        let indexes: Vec<u32> = counter::NAMES.iter().map(|(i, _)| *i).collect();
        assert_eq!(indexes, (0..counter::COUNT).collect::<Vec<_>>());
        let mut names: Vec<&str> = counter::NAMES.iter().map(|(_, n)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(
            names.len(),
            counter::COUNT as usize,
            "duplicate counter name"
        );
        assert_eq!(counter::name(counter::RINGBUF_FULL), Some("ringbuf_full"));
        assert_eq!(
            counter::name(counter::KRETPROBE_UNMATCHED),
            Some("kretprobe_unmatched")
        );
        assert_eq!(counter::name(counter::COUNT), None);
    }

    #[test]
    fn loss_reasons_are_the_kernel_counters_then_undecodable_and_program_skipped() {
        assert_eq!(
            counter::LOSS_REASONS,
            [
                "ringbuf_full",
                "cap_map_full",
                "syscall_map_full",
                "denial_map_full",
                "stack_failed",
                "pending_overflow",
                "task_storage_failed",
                "kretprobe_unmatched",
                "map_alloc_failed",
                "exec_map_full",
                "undecodable",
                "program_skipped",
            ]
        );
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: each type is `#[repr(C)]`, `Copy`, made of integers only, with explicit padding,
    // so every bit pattern is a valid value.
    unsafe impl aya::Pod for super::CapKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CapEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DenyKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DenyEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CgroupEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CgroupGone {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ExecEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SyscallBitmap {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PendingCheck {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TaskState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CapCacheEntry {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CpuState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::KprobeArgs {}
}

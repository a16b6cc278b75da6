//! Reading the running task: its `task_struct`, cgroup v2 id, credentials and name.
//!
//! Fields are read at offsets the loader found in the running kernel's BTF (the `*_OFFSET`
//! globals in [`crate::maps`]), either as BTF-checked plain loads from trusted pointers (no
//! helper call: cheap enough for every syscall) or through `bpf_probe_read_kernel`. When an
//! offset is unknown (0) each reader falls back as its documentation says. Trusted task
//! pointers (`bpf_get_current_task_btf`) need Linux 5.11.

use core::ffi::c_void;

use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_probe_read_kernel,
    generated::{bpf_get_current_cgroup_id, bpf_get_current_task_btf},
};
use monitor_common::{COMM_LEN, fnv1a};

use crate::maps::{
    CGROUP_KN_OFFSET, CRED_IDS_OFFSET, CSS_SET_DFL_CGRP_OFFSET, KERNFS_NODE_ID_OFFSET,
    REAL_CRED_OFFSET, TASK_CGROUPS_OFFSET,
};

/// The running task's name, zeroes when it cannot be read.
#[inline(always)]
pub fn comm() -> [u8; COMM_LEN] {
    bpf_get_current_comm().unwrap_or([0; COMM_LEN])
}

/// The current task (a trusted pointer for helpers and BTF-checked loads).
#[inline(always)]
pub fn current_task() -> *mut c_void {
    // SAFETY: a helper without arguments.
    unsafe { bpf_get_current_task_btf().cast() }
}

/// Loads the `T` at `offset` of a kernel object reached through BTF-typed pointers. `offset`
/// comes from a read-only global, a constant for the verifier, which checks the load against
/// the kernel's BTF; the JIT turns a fault into a zero.
///
/// # Safety
///
/// `base` is a BTF-typed kernel pointer (a trusted task, or a pointer loaded from one) and
/// `offset` a field of type `T` in its type.
#[inline(always)]
pub unsafe fn btf_load<T: Copy>(base: *const u8, offset: u64) -> T {
    // SAFETY: as above: verifier-checked, fault-handled.
    unsafe { core::ptr::read_volatile(base.add(offset as usize).cast::<T>()) }
}

/// The current task's cgroup v2 id.
#[inline(always)]
pub fn cgroup_id() -> u64 {
    cgroup_id_of(current_task())
}

/// The cgroup v2 id of `task`, the current task: the chain `task->cgroups->dfl_cgrp->kn->id`
/// when its offsets are known, else `bpf_get_current_cgroup_id` (which costs more).
#[inline(always)]
pub fn cgroup_id_of(task: *mut c_void) -> u64 {
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

/// The `real_cred` of `task`, the current task; 0 when its offset is unknown.
#[inline(always)]
pub fn real_cred(task: *mut c_void) -> u64 {
    let offset = REAL_CRED_OFFSET.load();
    if offset == 0 {
        return 0;
    }
    // SAFETY: a BTF-checked load from a trusted task pointer.
    unsafe { btf_load::<u64>(task.cast_const().cast(), offset) }
}

/// Reads a field of the current task at a loader-provided offset; `None` when the offset is
/// unknown (0) or the read failed.
#[inline(always)]
pub fn task_field<T>(offset: u64) -> Option<T> {
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

/// A hash (FNV-1a) of the eight ids of `cred` (uid, gid, suid, sgid, euid, egid, fsuid,
/// fsgid); `None` when their offset is unknown, `cred` is null or the read failed.
#[inline(always)]
pub fn cred_ids(cred: u64) -> Option<u64> {
    let offset = CRED_IDS_OFFSET.load();
    if offset == 0 || cred == 0 {
        return None;
    }
    // SAFETY: reads kernel memory through the helper, which faults safely.
    let ids: [u32; 8] =
        unsafe { bpf_probe_read_kernel((cred + offset) as *const [u32; 8]) }.ok()?;
    Some(fnv1a(ids.map(u64::from)))
}

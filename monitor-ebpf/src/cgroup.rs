//! Cgroups: their moves and their lives.
//!
//! - `cgroup_attach_task` (`tp_btf`, Linux 5.5) bumps `CGROUP_MOVES` after a task moved to
//!   another cgroup, so that every CPU's slot reads its owner's cgroup id again at the owner's
//!   next syscall instead of trusting the one it read at claim time.
//! - `cgroup_mkdir` and `cgroup_rmdir` (`tp_btf`, Linux 5.5) send each cgroup v2 directory's
//!   id and path when it is created, and its id when it is removed, so that userspace can
//!   attribute a container that lived milliseconds without finding its directory by a scan.
//!
//! No fallback is needed.

use core::ffi::c_void;

use crate::{
    events::{send_cgroup_created, send_cgroup_removed},
    maps::{
        CGROUP_KN_OFFSET, CGROUP_MOVES, CGROUP_ROOT_HIERARCHY_ID_OFFSET, CGROUP_ROOT_OFFSET,
        KERNFS_NODE_ID_OFFSET,
    },
    task::btf_load,
};
use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

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

#[btf_tracepoint(function = "cgroup_mkdir")]
pub fn cgroup_mkdir(ctx: BtfTracePointContext) -> i32 {
    // `trace_cgroup_mkdir(cgrp, path)`, once the directory exists.
    let cgrp: *const u8 = ctx.arg(0);
    let path: *const c_void = ctx.arg(1);
    if let Some(cgroup_id) = v2_id(cgrp) {
        send_cgroup_created(cgroup_id, path);
    }
    0
}

#[btf_tracepoint(function = "cgroup_rmdir")]
pub fn cgroup_rmdir(ctx: BtfTracePointContext) -> i32 {
    // `trace_cgroup_rmdir(cgrp, path)`, once it is gone: the id alone (no path).
    let cgrp: *const u8 = ctx.arg(0);
    if let Some(cgroup_id) = v2_id(cgrp) {
        send_cgroup_removed(cgroup_id);
    }
    0
}

/// The v2 id of `cgrp` (a BTF-typed `struct cgroup *`), `None` for a cgroup of a v1 hierarchy
/// or when an offset is unknown.
#[inline(always)]
fn v2_id(cgrp: *const u8) -> Option<u64> {
    let (root, hierarchy, kn, id) = (
        CGROUP_ROOT_OFFSET.load(),
        CGROUP_ROOT_HIERARCHY_ID_OFFSET.load(),
        CGROUP_KN_OFFSET.load(),
        KERNFS_NODE_ID_OFFSET.load(),
    );
    if root == 0 || kn == 0 {
        return None;
    }
    // SAFETY: cgrp->root->hierarchy_id and cgrp->kn->id, each pointer BTF-typed (the
    // tracepoint's argument is trusted), checked by the verifier, faults read as zero.
    unsafe {
        let root: *const u8 = btf_load(cgrp, root);
        // The default (v2) hierarchy is hierarchy 0, as `/proc/PID/cgroup` shows it.
        if btf_load::<i32>(root, hierarchy) != 0 {
            return None;
        }
        let kn: *const u8 = btf_load(cgrp, kn);
        Some(btf_load(kn, id))
    }
}

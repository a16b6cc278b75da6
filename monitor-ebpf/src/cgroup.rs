//! Cgroup moves: `cgroup_attach_task` (`tp_btf`, Linux 5.5) bumps `CGROUP_MOVES` after a task
//! moved to another cgroup, so that every CPU's slot reads its owner's cgroup id again at the
//! owner's next syscall instead of trusting the one it read at claim time. No fallback is
//! needed.

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

use crate::maps::CGROUP_MOVES;

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

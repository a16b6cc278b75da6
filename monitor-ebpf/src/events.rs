//! Sending to userspace: one ring buffer (`EVENTS`, Linux 5.8), one way in.
//!
//! Only a key seen for the first time is sent (the counting happens in maps), and cgroups'
//! lives (created, removed, first exec), so the ring buffer carries little; a record that does
//! not fit is lost and counted in `RINGBUF_FULL` (userspace still finds a key and its count in
//! the map, without the evidence, and a cgroup by scanning while its directory exists).

use core::ffi::c_void;

use aya_ebpf::helpers::{
    bpf_get_current_pid_tgid,
    generated::{bpf_get_current_comm, bpf_probe_read_kernel_str},
};
use monitor_common::{
    CGROUP_PATH_LEN, COMM_LEN, CapEvent, CgroupEvent, CgroupGone, DenyEvent, ExecEvent, counter,
    kind,
};

use crate::maps::{EVENTS, bump};

/// The running task, as every record names it (its name is filled in by [`emit`]).
pub struct Origin {
    /// Thread id.
    pub pid: u32,
    /// Process id (thread group id).
    pub tgid: u32,
}

/// A ring-buffer record type: it carries the running task's name.
pub trait Record: 'static {
    /// The record's `comm` field.
    fn comm_mut(&mut self) -> &mut [u8; COMM_LEN];
}

impl Record for CapEvent {
    fn comm_mut(&mut self) -> &mut [u8; COMM_LEN] {
        &mut self.comm
    }
}

impl Record for DenyEvent {
    fn comm_mut(&mut self) -> &mut [u8; COMM_LEN] {
        &mut self.comm
    }
}

/// Reserves a `T` in the ring buffer, fills it with `record(origin)` and the task's name, and
/// submits it; counts a failed reserve (the ring buffer is full) in `RINGBUF_FULL`.
#[inline(always)]
pub fn emit<T: Record>(record: impl FnOnce(Origin) -> T) {
    let Some(mut entry) = EVENTS.reserve::<T>(0) else {
        bump(counter::RINGBUF_FULL);
        return;
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    let comm = entry
        .write(record(Origin {
            pid: pid_tgid as u32,
            tgid: (pid_tgid >> 32) as u32,
        }))
        .comm_mut();
    // SAFETY: the helper writes exactly `COMM_LEN` bytes into the record's `comm` (the name,
    // NUL padded; zeroes when it fails), memory of the reserved record.
    unsafe { bpf_get_current_comm(comm.as_mut_ptr().cast(), COMM_LEN as u32) };
    entry.submit(0);
}

/// Sends a record built whole on the stack (a first exec's credentials).
#[inline(always)]
pub fn send_exec(record: &ExecEvent) {
    if EVENTS.output::<ExecEvent>(record, 0).is_err() {
        bump(counter::RINGBUF_FULL);
    }
}

/// Sends a [`CgroupEvent`] for the cgroup `cgroup_id`, created with the path at `path` (a
/// kernel string).
#[inline(always)]
pub fn send_cgroup_created(cgroup_id: u64, path: *const c_void) {
    let Some(mut entry) = EVENTS.reserve::<CgroupEvent>(0) else {
        bump(counter::RINGBUF_FULL);
        return;
    };
    let e = entry.as_mut_ptr();
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: every field of the reserved record is written through its raw pointer (the
    // record is too big to build on the stack); the helpers write at most the sizes given
    // into the record's own arrays.
    unsafe {
        (&raw mut (*e).kind).write(kind::CGROUP_MKDIR);
        (&raw mut (*e).pid).write(pid_tgid as u32);
        (&raw mut (*e).tgid).write((pid_tgid >> 32) as u32);
        (&raw mut (*e)._pad).write(0);
        (&raw mut (*e).cgroup_id).write(cgroup_id);
        bpf_get_current_comm((&raw mut (*e).comm).cast(), COMM_LEN as u32);
        let dst: *mut u8 = (&raw mut (*e).path).cast();
        if bpf_probe_read_kernel_str(dst.cast(), CGROUP_PATH_LEN as u32, path) < 0 {
            dst.write(0);
        }
    }
    entry.submit(0);
}

/// Sends a [`CgroupGone`] for the cgroup `cgroup_id`, removed.
#[inline(always)]
pub fn send_cgroup_removed(cgroup_id: u64) {
    let Some(mut entry) = EVENTS.reserve::<CgroupGone>(0) else {
        bump(counter::RINGBUF_FULL);
        return;
    };
    let e = entry.as_mut_ptr();
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: every field of the reserved record is written through its raw pointer; the
    // helper writes at most COMM_LEN bytes into the record's own array.
    unsafe {
        (&raw mut (*e).kind).write(kind::CGROUP_RMDIR);
        (&raw mut (*e).pid).write(pid_tgid as u32);
        (&raw mut (*e).tgid).write((pid_tgid >> 32) as u32);
        (&raw mut (*e)._pad).write(0);
        (&raw mut (*e).cgroup_id).write(cgroup_id);
        bpf_get_current_comm((&raw mut (*e).comm).cast(), COMM_LEN as u32);
    }
    entry.submit(0);
}

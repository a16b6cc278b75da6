//! Sending first sightings to userspace: one ring buffer (`EVENTS`, Linux 5.8), one way in.
//!
//! Only a key seen for the first time is sent (the counting happens in maps), so the ring
//! buffer carries little; a record that does not fit is lost and counted in `RINGBUF_FULL`
//! (userspace still finds the key and its count in the map, without the evidence).

use aya_ebpf::helpers::{bpf_get_current_pid_tgid, generated::bpf_get_current_comm};
use monitor_common::{COMM_LEN, CapEvent, DenyEvent, counter};

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

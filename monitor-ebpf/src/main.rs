//! capmon's kernel side: `tp_btf` programs (and a kprobe pair for older kernels) that count in
//! maps and send only first sightings through one ring buffer. No policy here: classification
//! happens in userspace.
//!
//! # Programs
//!
//! Userspace loads and attaches them by these names. Their minimum kernels, fallbacks and
//! attach order are in one place, the daemon's probe table
//! (`monitor-daemon/src/kernel/probe_table.rs`, shown in docs/architecture.md).
//!
//! | program | hook | module |
//! | --- | --- | --- |
//! | `cap_capable` | `tp_btf/cap_capable` | [`capability`] |
//! | `cap_capable_fexit` | `fexit/cap_capable` | [`capability`] |
//! | `cap_capable_entry` | `kprobe/cap_capable` | [`capability`] |
//! | `cap_capable_return` | `kretprobe/cap_capable` | [`capability`] |
//! | `cap_mmap_addr_fexit` | `fexit/cap_mmap_addr` | [`mmap_addr`] |
//! | `cap_mmap_addr_entry` | `kprobe/cap_mmap_addr` | [`mmap_addr`] |
//! | `cap_mmap_addr_return` | `kretprobe/cap_mmap_addr` | [`mmap_addr`] |
//! | `sys_enter` | `tp_btf/sys_enter` | [`syscall`] |
//! | `sys_exit` | `tp_btf/sys_exit` | [`syscall`] |
//! | `sched_switch` | `tp_btf/sched_switch` | [`sched`] |
//! | `cgroup_attach_task` | `tp_btf/cgroup_attach_task` | [`cgroup`] |
//! | `cgroup_mkdir` | `tp_btf/cgroup_mkdir` | [`cgroup`] |
//! | `cgroup_rmdir` | `tp_btf/cgroup_rmdir` | [`cgroup`] |
//! | `sched_process_exec` | `tp_btf/sched_process_exec` | [`sched`] |
//!
//! Beside the programs: [`maps`] (every map and global, by the names userspace uses),
//! [`task`] (reading the running task), [`state`] (where a task's syscall state lives) and
//! [`events`] (the ring buffer). Pure helpers shared with userspace (hashes, runtime names,
//! the `set*id` syscalls) are in `monitor_common`.
//!
//! # The per-CPU slot
//!
//! A syscall is seen three to four times (entry, capability checks, exit) and must cost next
//! to nothing. So the running task's syscall state lives in a per-CPU slot (`CPU_STATE`, see
//! `monitor_common::CpuState`) that belongs to one task from its first syscall after being
//! switched in until it is switched out; `sched_switch` then empties it and moves an
//! unfinished syscall's state to the task's storage (`TASKS`), where the rest of the syscall
//! finds it on whichever CPU the task resumes. An owned slot is therefore always the running
//! task's, and a syscall that does not sleep (most of them) reads and writes only this per-CPU
//! memory: no task-storage lookup, no helper call. The slot also caches the bitmap of the
//! cgroup that ran last on the CPU, the task's `real_cred` and the last `CAP_CACHE` slot, so
//! that the common syscall entry and capability check need no hash lookup either.
//!
//! Each program (and each `#[inline(never)]` slow path, which is a BPF function of its own)
//! takes its CPU's slot once, as a `&mut CpuState` (`maps::per_cpu_mut`). That is sound
//! because the programs run with preemption disabled, so one at a time per CPU, and only the
//! running program touches its CPU's per-CPU entries; a task's storage is touched only by
//! programs running as that task (or switching it out).
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![deny(clippy::undocumented_unsafe_blocks)]
// aya-ebpf's map methods take keys and values as `impl Borrow<T>`: passed by value, a key is
// copied to the stack a second time (measured: more instructions), so they are passed by
// reference.
#![allow(clippy::needless_borrows_for_generic_args)]

// The modules build for the bpf target, and on the host under clippy (which then lints them);
// a plain host build (`cargo check --workspace`) skips them.
#[cfg(any(target_arch = "bpf", clippy))]
mod capability;
#[cfg(any(target_arch = "bpf", clippy))]
mod cgroup;
#[cfg(any(target_arch = "bpf", clippy))]
mod events;
#[cfg(any(target_arch = "bpf", clippy))]
mod maps;
#[cfg(any(target_arch = "bpf", clippy))]
mod mmap_addr;
#[cfg(any(target_arch = "bpf", clippy))]
mod sched;
#[cfg(any(target_arch = "bpf", clippy))]
mod state;
#[cfg(any(target_arch = "bpf", clippy))]
mod syscall;
#[cfg(any(target_arch = "bpf", clippy))]
mod task;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(not(target_arch = "bpf"))]
fn main() {
    // Only built for the bpf target; this stub keeps host-side `cargo check --workspace` happy.
}

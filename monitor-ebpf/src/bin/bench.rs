//! Programs for `cargo xtask bench` only, never attached by capmon itself:
//! - `floor_enter`/`floor_exit`: empty `tp_btf` sys_enter/sys_exit programs (the cost of the
//!   hooks alone), `floor_cap` on `cap_capable` and `floor_switch` on `sched_switch`;
//! - `ref_enter`/`ref_exit`: a reference design as common recorders build it: a hash map of
//!   thread id -> syscall for enter/exit pairing, and a hash map of (cgroup, syscall) -> count
//!   updated on every enter and exit; `ref_cap` counts (cgroup, cap, result) in a hash map.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![deny(clippy::undocumented_unsafe_blocks)]
// Map keys and values by reference, as in `main.rs`.
#![allow(clippy::needless_borrows_for_generic_args)]

// Built for the bpf target, and on the host under clippy (see `main.rs`).
#[cfg(any(target_arch = "bpf", clippy))]
mod bench {
    use aya_ebpf::{
        bindings::BPF_NOEXIST,
        helpers::{bpf_get_current_pid_tgid, generated::bpf_get_current_cgroup_id},
        macros::{btf_tracepoint, map},
        maps::HashMap,
        programs::BtfTracePointContext,
    };

    #[btf_tracepoint(function = "sys_enter")]
    pub fn floor_enter(_ctx: BtfTracePointContext) -> i32 {
        0
    }

    #[btf_tracepoint(function = "sys_exit")]
    pub fn floor_exit(_ctx: BtfTracePointContext) -> i32 {
        0
    }

    #[btf_tracepoint(function = "cap_capable")]
    pub fn floor_cap(_ctx: BtfTracePointContext) -> i32 {
        0
    }

    #[btf_tracepoint(function = "sched_switch")]
    pub fn floor_switch(_ctx: BtfTracePointContext) -> i32 {
        0
    }

    #[repr(C)]
    pub struct CapKey {
        cgroup_id: u64,
        cap: i32,
        ret: i32,
    }

    #[map]
    static REF_CAPS: HashMap<CapKey, u64> = HashMap::with_max_entries(65536, 0);

    /// Reference for capability checks: a hash map of (cgroup, cap, result) -> count.
    #[btf_tracepoint(function = "cap_capable")]
    pub fn ref_cap(ctx: BtfTracePointContext) -> i32 {
        // SAFETY: a helper without arguments.
        let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
        let key = CapKey {
            cgroup_id,
            cap: ctx.arg(3),
            ret: ctx.arg(4),
        };
        match REF_CAPS.get_ptr_mut(&key) {
            // SAFETY: map memory.
            Some(p) => unsafe { *p += 1 },
            None => {
                let _ = REF_CAPS.insert(&key, &1, BPF_NOEXIST.into());
            }
        }
        0
    }

    #[repr(C)]
    pub struct Key {
        cgroup_id: u64,
        nr: u64,
    }

    #[map]
    static REF_INFLIGHT: HashMap<u32, u64> = HashMap::with_max_entries(65536, 0);
    #[map]
    static REF_COUNTS: HashMap<Key, u64> = HashMap::with_max_entries(65536, 0);

    #[inline(always)]
    fn bump(nr: u64) {
        // SAFETY: a helper without arguments.
        let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
        let key = Key { cgroup_id, nr };
        match REF_COUNTS.get_ptr_mut(&key) {
            // SAFETY: map memory.
            Some(p) => unsafe { *p += 1 },
            None => {
                let _ = REF_COUNTS.insert(&key, &1, BPF_NOEXIST.into());
            }
        }
    }

    #[btf_tracepoint(function = "sys_enter")]
    pub fn ref_enter(ctx: BtfTracePointContext) -> i32 {
        let nr: u64 = ctx.arg(1);
        let tid = bpf_get_current_pid_tgid() as u32;
        let _ = REF_INFLIGHT.insert(&tid, &nr, 0);
        bump(nr);
        0
    }

    #[btf_tracepoint(function = "sys_exit")]
    pub fn ref_exit(_ctx: BtfTracePointContext) -> i32 {
        let tid = bpf_get_current_pid_tgid() as u32;
        // SAFETY: map memory.
        if let Some(nr) = unsafe { REF_INFLIGHT.get(&tid) } {
            let nr = *nr;
            let _ = REF_INFLIGHT.remove(&tid);
            bump(nr | 1 << 32);
        }
        0
    }

    #[cfg(target_arch = "bpf")]
    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}

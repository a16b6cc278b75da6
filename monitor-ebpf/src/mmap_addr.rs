//! Low mmaps' `CAP_SYS_RAWIO` checks where a kernel build inlined `cap_capable` into
//! `cap_mmap_addr` (Debian's 6.1 and 6.12 do): the fexit and kprobe modes hook `cap_capable`
//! itself and never see those checks, so `cap_mmap_addr` is hooked too (fexit, or a
//! kprobe/kretprobe pair) and counts the check itself from its address argument and result:
//!
//! ```c
//! int cap_mmap_addr(unsigned long addr)
//! {
//!     int ret = 0;
//!     if (addr < dac_mmap_min_addr) {
//!         ret = cap_capable(current_cred(), &init_user_ns, CAP_SYS_RAWIO, CAP_OPT_NONE);
//!         ...
//!     }
//!     return ret;
//! }
//! ```
//!
//! Where `cap_capable` is not inlined, its own hook saw the check just before on this CPU, by
//! this thread (noted in `RAWIO_SEEN`): then nothing is counted twice. `MMAP_ADDR` counts which
//! of the two saw each check (userspace tells `capmon check` which this kernel does). The
//! tracepoint mode needs none of this: the tracepoint sits inside `cap_capable`, inlined or not.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fexit, kprobe, kretprobe},
    programs::{FExitContext, ProbeContext, RetProbeContext},
};

use crate::{
    capability::{CAP_SYS_RAWIO, check},
    maps::{MMAP_ADDR, MMAP_ARGS, MMAP_MIN_ADDR, RAWIO_SEEN, per_cpu_mut},
    task::{current_task, real_cred},
};

/// `MMAP_ADDR` index: checks this hook counted (`cap_capable` inlined).
const COUNTED_HERE: u32 = 0;
/// `MMAP_ADDR` index: checks the `cap_capable` hook had already counted.
const SEEN_BY_CAP_CAPABLE: u32 = 1;

#[inline(always)]
fn bump(index: u32) {
    // SAFETY: this CPU's entry, taken once by the running program.
    if let Some(n) = unsafe { per_cpu_mut(&MMAP_ADDR, index) } {
        *n += 1;
    }
}

/// `cap_mmap_addr(addr)` returned `ret`: counts its `CAP_SYS_RAWIO` check unless the
/// `cap_capable` hook already did.
#[inline(always)]
fn mmap_addr_returned<C: aya_ebpf::EbpfContext>(ctx: &C, addr: u64, ret: i32) {
    if addr >= MMAP_MIN_ADDR.load() {
        return;
    }
    // SAFETY: this CPU's entry, taken once by the running program.
    if let Some(seen) = unsafe { per_cpu_mut(&RAWIO_SEEN, 0) } {
        let counted = *seen == bpf_get_current_pid_tgid();
        *seen = 0;
        if counted {
            bump(SEEN_BY_CAP_CAPABLE);
            return;
        }
    }
    bump(COUNTED_HERE);
    check(ctx, real_cred(current_task()), CAP_SYS_RAWIO, ret, 0);
}

/// Fexit mode: `int cap_mmap_addr(unsigned long addr)`; the context holds the argument, then
/// the return value.
#[fexit(function = "cap_mmap_addr")]
pub fn cap_mmap_addr_fexit(ctx: FExitContext) -> i32 {
    let addr: u64 = ctx.arg(0);
    let ret: i32 = ctx.arg(1);
    mmap_addr_returned(&ctx, addr, ret);
    0
}

/// Kprobe mode: keeps the address for the kretprobe, by thread.
#[kprobe(function = "cap_mmap_addr")]
pub fn cap_mmap_addr_entry(ctx: ProbeContext) -> u32 {
    if let Some(addr) = ctx.arg::<u64>(0) {
        let _ = MMAP_ARGS.insert(&bpf_get_current_pid_tgid(), &addr, 0);
    }
    0
}

/// Kprobe mode: the result of the call entered in `cap_mmap_addr_entry`.
#[kretprobe(function = "cap_mmap_addr")]
pub fn cap_mmap_addr_return(ctx: RetProbeContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: lookup into map memory, copied out before the entry is removed.
    let Some(addr) = (unsafe { MMAP_ARGS.get(&id) }).copied() else {
        return 0;
    };
    let _ = MMAP_ARGS.remove(&id);
    mmap_addr_returned(&ctx, addr, ctx.ret());
    0
}

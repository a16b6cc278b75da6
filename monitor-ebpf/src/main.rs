//! capmon's kernel side: `tp_btf` programs (and a kprobe pair for older kernels) that count in
//! maps and send only first sightings through one ring buffer. No policy here: classification
//! happens in userspace.
//!
//! | program | hook | minimum kernel | fallback |
//! | --- | --- | --- | --- |
//! | `cap_capable` | `tp_btf/cap_capable` | 6.14 (the tracepoint) | `cap_capable_entry`/`_return` (kprobe + kretprobe) |
//! | `sys_enter` | `tp_btf/sys_enter` | 5.11 (task storage) | none needed |
//! | `sys_exit` | `tp_btf/sys_exit` | 5.11 | none needed |
//! | `sched_switch` | `tp_btf/sched_switch` | 5.11 | none needed |
//! | `cgroup_attach_task` | `tp_btf/cgroup_attach_task` | 5.5 | none needed |
//! | `sched_process_exec` | `tp_btf/sched_process_exec` | 5.5 | none needed |
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod probes;

#[cfg(not(target_arch = "bpf"))]
fn main() {
    // Only built for the bpf target; this stub keeps host-side `cargo check --workspace` happy.
}

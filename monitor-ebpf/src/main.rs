//! capmon's kernel side: three `tp_btf` programs that count in maps and send only first
//! sightings through one ring buffer. No policy here: classification happens in userspace.
//!
//! | program | hook | minimum kernel | fallback |
//! | --- | --- | --- | --- |
//! | `cap_capable` | `tp_btf/cap_capable` | 6.14 (the tracepoint) | kprobe on `cap_capable` (later) |
//! | `sys_enter` | `tp_btf/sys_enter` | 5.5 (BTF tracepoints) | none needed |
//! | `sys_exit` | `tp_btf/sys_exit` | 5.5 | none needed |
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod probes;

#[cfg(not(target_arch = "bpf"))]
fn main() {
    // Only built for the bpf target; this stub keeps host-side `cargo check --workspace` happy.
}

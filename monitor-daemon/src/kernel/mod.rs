//! The kernel side, seen from userspace: the probe table, loading and attaching the eBPF
//! programs with this kernel's offsets, reading their maps and ring buffer, naming kernel
//! addresses, and the kernel reader that puts it all behind one owner.
//!
//! | module | what it owns |
//! | --- | --- |
//! | [`probe_table`] | every program: hook, minimum kernel, fallback, optional; the probe modes |
//! | [`btf`] | field offsets from the kernel's BTF |
//! | [`offsets`] | what the programs are told before they are verified |
//! | [`loader`] | [`loader::Probes`]: load, attach, detach; capmon's privileges |
//! | [`maps`], [`batch`] | reading and trimming the maps; whole maps in a few syscalls |
//! | [`events`] | decoding ring-buffer records |
//! | [`kallsyms`] | kernel addresses to function names |
//! | [`reader`] | [`reader::KernelReader`]: probes + ring buffer + symbols, by cgroup |
//! | [`preemption`] | the kernel's preemption model, and which probe modes it makes unsafe |
//! | [`inlined`] | which hook sees the checks of `cap_capable` copies inlined into callers |
//! | [`map_reads`] | map syscalls kept from being preempted where that would skip kprobes |

pub mod batch;
pub mod btf;
pub mod events;
pub mod inlined;
pub mod kallsyms;
pub mod loader;
pub mod map_reads;
pub mod maps;
pub mod offsets;
pub mod preemption;
pub mod probe_table;
pub mod prog_info;
pub mod reader;

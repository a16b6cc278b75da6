//! capmon: an eBPF runtime capability and syscall monitor for Linux containers.
//!
//! This crate is what touches the system: the kernel side's loader and reader, the container
//! runtimes and cgroups, the daemon, and the command line. What decides (attribution,
//! classification, the seccomp model, recommendations, reports) lives in `capmon_core`, which
//! tests anywhere.

pub mod cli;
pub mod containers;
pub mod daemon;
pub mod kernel;
pub mod record;
pub mod testbed;

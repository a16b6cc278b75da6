//! capmon: an eBPF runtime capability and syscall monitor for Linux containers.
//!
//! The `capmon` binary is a thin shell over this library. Pure logic (names, cgroup path
//! discovery, classification, seccomp profiles, report rendering) is unit tested without root;
//! [`probes`] and [`record`] need the real kernel.

pub mod api;
pub mod attribution;
pub mod btf;
pub mod cgroup;
pub mod check;
pub mod classify;
pub mod client;
pub mod config;
pub mod daemon;
pub mod names;
pub mod names_api;
pub mod posture;
pub mod probes;
pub mod recommend;
pub mod record;
pub mod replay;
pub mod report;
pub mod seccomp;
pub mod store;

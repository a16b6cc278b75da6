//! The containers on this host: cgroups (mount, ids, paths, identities), names from the
//! runtime's API, and postures read from their processes.

pub mod cgroup;
pub mod names_api;
pub mod posture;

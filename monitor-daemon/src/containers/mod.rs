//! The containers on this host: cgroups (mount, ids, paths, identities), names from the
//! runtime's API and its event stream, the OCI specs in runtimes' bundles, and postures read
//! from their processes.

pub mod bundles;
pub mod cgroup;
pub mod docker_events;
pub mod names_api;
pub mod posture;

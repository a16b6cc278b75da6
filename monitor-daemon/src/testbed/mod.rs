//! Real container engines and root file systems for the privileged tests and the benchmark
//! (the `capmon` binary never calls them): Debian's containerd and Docker Engine started and
//! stopped on demand, a busybox image made without a registry, Kubernetes-shaped runc
//! containers, and the fleet test's scenario.

pub mod cri;
pub mod engines;
pub mod fleet;
pub mod rootfs;

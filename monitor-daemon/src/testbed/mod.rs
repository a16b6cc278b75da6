//! Real container engines and root file systems for the privileged tests and the benchmark
//! (the `capmon` binary never calls them): Debian's containerd and Docker Engine started and
//! stopped on demand, and a busybox image made without a registry.

pub mod engines;
pub mod rootfs;

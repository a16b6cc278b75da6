//! Real container engines and root file systems for the privileged tests and the benchmark
//! (built only with the `test-support` or `bench` feature): Debian's containerd and Docker
//! Engine started and stopped on demand, and a busybox image made without a registry.

pub mod engines;
pub mod rootfs;

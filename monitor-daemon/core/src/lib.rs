//! capmon's pure core: everything that decides, names and renders, with no kernel, container
//! runtime, database or network underneath. It tests and fuzzes on any machine with a Rust
//! toolchain (`cargo test -p capmon-core`); the `capmon` crate beside it feeds it what the
//! kernel and the runtimes say.
//!
//! | module | what it owns |
//! | --- | --- |
//! | [`names`] | capability, syscall (per architecture) and errno names |
//! | [`abi`] | the syscall ABIs seccomp profiles name (x86_64, x86, x32, aarch64, arm) and their syscalls |
//! | [`attribution`] | cgroup path -> runtime, container id, pod, systemd unit |
//! | [`classify`] | a capability check -> used / denied / probe / ignored, with the reason |
//! | [`posture`] | `/proc/<pid>/status` text -> granted sets, confinement, checklist findings |
//! | [`seccomp`] | Docker/OCI seccomp profiles: parse, validate, resolve, generate, replay, diff |
//! | [`recommend`] | granted vs used -> least privilege, rendered in seven formats |
//! | [`report`] | what was observed -> a classified, named report (JSON and text) |
//! | [`replay`] | a recorded report against any seccomp profile |
//! | [`config`] | the daemon's configuration: defaults, TOML, environment, flags |
//! | [`oci`] | an OCI runtime spec: what the runtime applied, Kubernetes names from annotations |
//! | [`mountinfo`] | the cgroup2 mount in `/proc/self/mountinfo` |
//! | [`kallsyms`] | `/proc/kallsyms` lines -> kernel symbols |
//! | [`runtime_api`] | a Docker-compatible API's container inspect answer and event stream |
//! | [`lookup`] | a container by full id, short id or name (the API's `{id}`) |
//! | [`fleet`] | a fleet's workloads merged from Prometheus query answers, with coverage |
//! | [`workload`] | containers -> workloads (replicas, restarts): the rule table |

pub mod abi;
pub mod attribution;
pub mod classify;
pub mod config;
pub mod fleet;
pub mod kallsyms;
pub mod lookup;
pub mod mountinfo;
pub mod names;
pub mod oci;
pub mod posture;
pub mod recommend;
pub mod replay;
pub mod report;
pub mod runtime_api;
pub mod seccomp;
pub mod workload;

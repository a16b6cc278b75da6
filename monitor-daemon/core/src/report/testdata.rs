//! A synthetic recording for the tests: a chown that also met a no-audit probe, a refused
//! raw socket and a runtime setup check, with their stacks, and one seccomp denial.

use std::collections::BTreeMap;

use monitor_common::{CapEvent, CapKey, DenyKey};

use super::{BuildContext, Observed};
use crate::{names::Arch, seccomp::KernelVersion};

fn key(cap: u32, ret: i32, stack: u64) -> CapKey {
    let outcome = if ret == 0 { 0 } else { -1 };
    CapKey {
        cgroup_id: 42,
        cap,
        ret,
        stack,
        context: 0,
        outcome,
    }
}

pub fn ctx() -> BuildContext {
    BuildContext {
        arch: Arch::X86_64,
        granted: vec![
            "CAP_CHOWN".into(),
            "CAP_SYS_ADMIN".into(),
            "CAP_KILL".into(),
        ],
        findings: vec![("runs_as_root".into(), "effective uid 0".into())],
        uid: Some(0),
        kernel: KernelVersion(6, 18),
        complete: true,
    }
}

pub fn observed() -> Observed {
    let chown = key(0, 0, 1);
    let mmap = key(21, -1, 2);
    let setup = CapKey {
        context: monitor_common::context::BEFORE_EXEC,
        ..key(12, 0, 1)
    };
    let raw = key(13, -1, 3);
    let mut o = Observed {
        cap_checks: vec![(chown, 1), (mmap, 7), (raw, 2), (setup, 4)],
        syscalls: vec![0, 1, 59, 260, 231],
        denials: vec![(
            DenyKey {
                cgroup_id: 42,
                syscall_nr: 268,
                errno: 1,
            },
            3,
        )],
        counters: std::sync::Arc::new(BTreeMap::from([("ringbuf_full", 0), ("stack_failed", 0)])),
        ..Default::default()
    };
    std::sync::Arc::make_mut(&mut o.stacks).insert(
        1,
        std::sync::Arc::new(
            [
                "bpf_trace_run5",
                "cap_capable",
                "security_capable",
                "capable_wrt_inode_uidgid",
                "chown_ok",
            ]
            .map(String::from)
            .to_vec(),
        ),
    );
    std::sync::Arc::make_mut(&mut o.stacks).insert(
        2,
        std::sync::Arc::new(
            [
                "cap_capable",
                "cap_vm_enough_memory",
                "security_vm_enough_memory_mm",
                "do_mmap",
            ]
            .map(String::from)
            .to_vec(),
        ),
    );
    std::sync::Arc::make_mut(&mut o.stacks).insert(
        3,
        std::sync::Arc::new(
            [
                "cap_capable",
                "security_capable",
                "ns_capable",
                "inet_create",
            ]
            .map(String::from)
            .to_vec(),
        ),
    );
    std::sync::Arc::make_mut(&mut o.cap_events).insert(
        chown,
        CapEvent {
            kind: 1,
            pid: 7,
            tgid: 7,
            syscall_nr: 260,
            key: chown,
            comm: *b"chown\0\0\0\0\0\0\0\0\0\0\0",
        },
    );
    o
}

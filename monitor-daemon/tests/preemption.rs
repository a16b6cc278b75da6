//! The per-CPU syscall slot under preemption: a busy task making capability-checked syscalls
//! and a real-time task that wakes up 500 times on the same CPU, each in its own cgroup. Each
//! cgroup must get exactly its own syscalls and checks. On a kernel that preempts kernel code
//! (`PREEMPT_RT`, which the kernel matrix boots) the real-time task preempts the busy one in
//! the middle of its syscalls; on others, at their ends.
//!
//! `#[ignore]`d: needs root and a kernel with BTF (`cargo xtask test` runs it).

mod common;

use std::{fs, process::Command};

use capmon::{
    containers::cgroup::{cgroup_id, find_cgroup2_mount},
    kernel::reader::KernelReader,
};
use capmon_core::{names::Arch, report};

const STRESS: &str = env!("CARGO_BIN_EXE_capmon-stress");
const CHECKS: u64 = 2_000_000;
const WAKEUPS: u64 = 500;

/// `sh -c` that joins the cgroup `dir`, then execs `cmd` on CPU 0.
fn in_cgroup(dir: &std::path::Path, cmd: &str) -> std::process::Child {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && exec {cmd}",
            dir.display()
        ))
        .spawn()
        .expect("sh")
}

/// Waits for `child`: whether it succeeded, and how many times it was preempted
/// (involuntary context switches, from `wait4`'s resource usage).
fn wait_with_preemptions(child: &mut std::process::Child) -> (bool, u64) {
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child with valid out-pointers.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4");
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    (ok, usage.ru_nivcsw as u64)
}

#[test]
#[ignore = "needs root and a kernel with BTF: run by `cargo xtask test`"]
fn a_preempted_task_and_its_preempter_keep_their_own_syscalls_and_checks() {
    common::require_root_and_runc();
    let mut reader = KernelReader::start().expect("start the probes");
    let mount = find_cgroup2_mount().expect("cgroup2 mount");
    let base = mount.join(format!("capmon-preempt-{}", std::process::id()));
    let (busy_dir, rt_dir) = (base.join("busy"), base.join("rt"));
    for d in [&busy_dir, &rt_dir] {
        fs::create_dir_all(d).expect("mkdir cgroup");
    }
    let busy_id = cgroup_id(&busy_dir).expect("id");
    let rt_id = cgroup_id(&rt_dir).expect("id");
    let mut busy = in_cgroup(&busy_dir, &format!("taskset -c 0 {STRESS} acct {CHECKS} 1"));
    let mut rt = in_cgroup(
        &rt_dir,
        &format!("chrt -f 50 taskset -c 0 {STRESS} sleeper {WAKEUPS}"),
    );
    let (busy_ok, preempted) = wait_with_preemptions(&mut busy);
    let rt_ok = rt.wait().expect("wait").success();
    assert!(
        busy_ok && rt_ok,
        "both workloads behaved: busy {busy_ok}, rt {rt_ok}"
    );
    assert!(
        preempted >= WAKEUPS / 5,
        "the real-time task preempted the busy one only {preempted} times"
    );
    let mut all = reader.observe_all().expect("read the maps");
    let arch = Arch::host();
    let (busy_caps, busy_sys, _) = report::facts(arch, &all.remove(&busy_id).expect("busy seen"));
    let (rt_caps, rt_sys, _) = report::facts(arch, &all.remove(&rt_id).expect("rt seen"));
    for d in [&busy_dir, &rt_dir, &base] {
        let _ = fs::remove_dir(d);
    }
    let pacct = |c: &report::Capabilities| -> u64 {
        c.checks
            .iter()
            .filter(|k| k.capability == "CAP_SYS_PACCT" && k.class.as_str() == "used")
            .map(|k| k.count)
            .sum()
    };
    assert_eq!(
        pacct(&busy_caps),
        CHECKS,
        "every check of the busy task, in its cgroup"
    );
    assert_eq!(pacct(&rt_caps), 0, "none in the preempter's cgroup");
    let has = |s: &report::Syscalls, name: &str| s.used.iter().any(|u| u == name);
    assert!(
        has(&busy_sys, "acct") && !has(&rt_sys, "acct"),
        "{busy_sys:?} {rt_sys:?}"
    );
    for name in ["getppid", "clock_nanosleep"] {
        assert!(has(&rt_sys, name), "{name} in {rt_sys:?}");
        assert!(
            !has(&busy_sys, name),
            "{name} leaked into the busy cgroup: {busy_sys:?}"
        );
    }
    assert!(
        busy_sys.denied.is_empty() && rt_sys.denied.is_empty(),
        "no denial invented"
    );
    let model = capmon::kernel::preemption::Preemption::of_running_kernel();
    eprintln!(
        "preemption model {}: {CHECKS} checks and {WAKEUPS} wakeups kept apart; the busy task \
         was preempted {preempted} times",
        model.name()
    );
}

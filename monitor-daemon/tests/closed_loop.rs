//! The closed loop: capmon's least-privilege advice, applied with real runc, must work.
//!
//! Each workload runs first as Docker runs containers by default (Docker's default capability
//! set, Docker's default seccomp profile resolved for it as Docker does, no
//! no-new-privileges) under capmon. Then capmon's recommendation is applied (all capabilities
//! dropped but the recommended ones, the generated seccomp profile, no-new-privileges) and the
//! workload runs again: it must succeed with identical output. Dropping any one recommended
//! capability must make it fail (and capmon must say which is missing); removing one observed
//! syscall from the generated profile must make it fail (and capmon must see seccomp deny it).
//!
//! `#[ignore]`d: needs root and runc (`cargo xtask test` runs it).

use std::{
    collections::BTreeSet,
    process::{Child, Command, Stdio},
};

use capmon::kernel::reader::KernelReader;
use capmon_core::{
    recommend::{Advice, Format, RUNC_AFTER_FILTER},
    report::{self, BuildContext, RecordReport},
    seccomp::{ArchList, KernelVersion, Profile, Target},
};
use serde_json::{Value, json};

mod common;

use common::*;

/// A user other than root, for the workloads that run unprivileged or are killed.
const OTHER_UID: u32 = 1000;

struct Workload {
    name: &'static str,
    /// The command; `{pid}` is replaced by the pid of a process of another user, when
    /// `needs_victim`.
    args: &'static [&'static str],
    /// Expected standard output.
    stdout: &'static str,
    /// The capabilities capmon must recommend, exactly.
    caps: &'static [&'static str],
    /// An observed syscall whose removal from the generated profile must break the workload.
    syscall: &'static str,
    /// Runs as this uid (with its capabilities as ambient ones, so that a non-root user holds
    /// them as Kubernetes and Docker grant them to root).
    uid: u32,
    /// Needs a process of another user to signal (the host's PID namespace is shared).
    needs_victim: bool,
}

/// Syscall names are x86_64's (the machines this suite runs on).
/// Each workload takes the same path every run (the servers get a head start, so that the
/// client's retry loop, with syscalls of its own, is never the only place `sleep` runs): a
/// recommendation covers the paths that were recorded.
const WORKLOADS: &[Workload] = &[
    Workload {
        name: "cat",
        args: &["/bin/cat", "/etc/hostname"],
        stdout: "capmon-test\n",
        caps: &[],
        // Static glibc sets up thread-local storage with it before main; everything else cat
        // calls, runc calls too after installing the filter (or cat falls back from it).
        syscall: "arch_prctl",
        uid: 0,
        needs_victim: false,
    },
    Workload {
        name: "chown",
        args: &[
            "/bin/sh",
            "-c",
            "touch /tmp/f && chown 1000:1000 /tmp/f && stat -c %u:%g /tmp/f",
        ],
        stdout: "1000:1000\n",
        caps: &["CAP_CHOWN"],
        syscall: "chown",
        uid: 0,
        needs_victim: false,
    },
    Workload {
        name: "ping",
        args: &[
            "/bin/sh",
            "-c",
            "ping -c1 127.0.0.1 > /dev/null && echo reachable",
        ],
        stdout: "reachable\n",
        caps: &["CAP_NET_RAW"],
        syscall: "socket",
        uid: 0,
        needs_victim: false,
    },
    // The shell does not `wait` for the listener: whether `wait` finds it exited or has to
    // sleep for SIGCHLD depends on timing, so a recorded run need not make the calls a later
    // run makes (seen once under qemu TCG: the shell spun in `wait` for 120 s beside its
    // exited child, under the profile recorded from a run that did not sleep there).
    Workload {
        name: "bind-low-port",
        args: &[
            "/bin/sh",
            "-c",
            "nc -l -p 999 -e echo pong & sleep 0.2; \
             i=0; until nc 127.0.0.1 999 2>/dev/null; do \
               i=$((i+1)); [ $i -lt 30 ] || exit 1; sleep 0.1; done; \
             echo done",
        ],
        stdout: "pong\ndone\n",
        caps: &["CAP_NET_BIND_SERVICE"],
        syscall: "bind",
        uid: OTHER_UID,
        needs_victim: false,
    },
    Workload {
        name: "mknod",
        args: &[
            "/bin/sh",
            "-c",
            "mknod /tmp/null c 1 3 && ls -l /tmp/null | cut -c1",
        ],
        stdout: "c\n",
        caps: &["CAP_MKNOD"],
        syscall: "mknodat",
        uid: 0,
        needs_victim: false,
    },
    Workload {
        name: "kill-other-user",
        args: &["/bin/sh", "-c", "kill -TERM {pid} && echo killed"],
        stdout: "killed\n",
        caps: &["CAP_KILL"],
        syscall: "kill",
        uid: 0,
        needs_victim: true,
    },
    Workload {
        name: "chroot",
        args: &["/bin/chroot", "/", "/bin/echo", "rooted"],
        stdout: "rooted\n",
        caps: &["CAP_SYS_CHROOT"],
        syscall: "chroot",
        uid: 0,
        needs_victim: false,
    },
    Workload {
        name: "script",
        args: &[
            "/bin/sh",
            "-c",
            "set -e; mkdir -p /tmp/w; echo data > /tmp/w/a; cp /tmp/w/a /tmp/w/b; \
             cat /tmp/w/b; rm /tmp/w/a; \
             trap 'echo got-usr1' USR1; kill -USR1 $$; \
             ( echo from-child ); \
             nc -l -p 47123 -e echo pong & sleep 0.2; \
             i=0; until nc 127.0.0.1 47123 2>/dev/null; do \
               i=$((i+1)); [ $i -lt 30 ] || exit 1; sleep 0.1; done; \
             echo done",
        ],
        stdout: "data\ngot-usr1\nfrom-child\npong\ndone\n",
        caps: &[],
        syscall: "kill",
        uid: 0,
        needs_victim: false,
    },
];

/// A process of another user, for the kill workload.
struct Victim(Child);

impl Victim {
    fn start() -> Victim {
        Victim(
            Command::new("setpriv")
                .args([
                    &format!("--reuid={OTHER_UID}"),
                    &format!("--regid={OTHER_UID}"),
                    "--clear-groups",
                    "sleep",
                    "60",
                ])
                .stdin(Stdio::null())
                .spawn()
                .expect("setpriv (util-linux) starts a process of another user"),
        )
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One run of a workload with `caps`, `seccomp` (OCI form) and no-new-privileges `nnp`.
struct Outcome {
    ok: bool,
    stdout: String,
    report: RecordReport,
}

fn run_workload(
    rec: &mut KernelReader,
    w: &Workload,
    caps: &[String],
    seccomp: &Profile,
    nnp: bool,
) -> Outcome {
    let victim = w.needs_victim.then(Victim::start);
    let pid = victim.as_ref().map(|v| v.0.id().to_string());
    let args: Vec<String> = w
        .args
        .iter()
        .map(|a| match &pid {
            Some(pid) => a.replace("{pid}", pid),
            None => (*a).to_owned(),
        })
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let seccomp: Value = serde_json::from_str(&seccomp.to_json_pretty()).expect("profile json");
    let uid = w.uid;
    let host_pid = w.needs_victim;
    let ambient: Vec<String> = if uid == 0 { Vec::new() } else { caps.to_vec() };
    let r = run_with(
        rec,
        &args,
        caps,
        &format!("/capmon-test/docker/{}", container_id()),
        |spec| {
            spec["linux"]["seccomp"] = seccomp;
            spec["process"]["noNewPrivileges"] = nnp.into();
            spec["process"]["user"] = json!({"uid": uid, "gid": uid});
            spec["process"]["capabilities"]["ambient"] = json!(ambient);
            spec["process"]["capabilities"]["inheritable"] = json!(ambient);
            // A network namespace of its own (the runtime brings its lo up): the listeners
            // of the workloads cannot meet a port of the host or of another test.
            spec["linux"]["namespaces"]
                .as_array_mut()
                .expect("namespaces")
                .push(json!({"type": "network"}));
            if host_pid {
                let namespaces: Vec<Value> = spec["linux"]["namespaces"]
                    .as_array()
                    .expect("namespaces")
                    .iter()
                    .filter(|n| n["type"] != "pid")
                    .cloned()
                    .collect();
                spec["linux"]["namespaces"] = namespaces.into();
            }
        },
    );
    drop(victim);
    let mut ctx = BuildContext::new(caps.to_vec());
    ctx.uid = Some(uid);
    let report = report::build(
        &ctx,
        w.args.iter().map(|s| s.to_string()).collect(),
        r.output.status.code().unwrap_or(-1),
        None,
        &r.observed,
    );
    Outcome {
        ok: r.output.status.success(),
        stdout: String::from_utf8_lossy(&r.output.stdout).into_owned(),
        report,
    }
}

fn assert_runtime_syscalls_known(w: &Workload, r: &RecordReport) {
    let unknown: Vec<&String> = r
        .syscalls
        .runtime
        .iter()
        .filter(|s| !RUNC_AFTER_FILTER.contains(&s.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "{}: runc made {unknown:?} under the filter, missing from RUNC_AFTER_FILTER",
        w.name
    );
}

#[test]
#[ignore = "needs root and runc: run `cargo xtask test`"]
fn recommendations_work_when_applied_and_nothing_in_them_is_superfluous() {
    require_root_and_runc();
    let mut rec = KernelReader::start().expect("probes");
    let docker_caps = docker_caps();
    let kernel = KernelVersion::running().expect("kernel version");
    let docker_profile = Profile::docker_default().resolve(&Target {
        arch: capmon_core::names::Arch::host(),
        caps: docker_caps.iter().cloned().collect(),
        kernel,
    });
    for w in WORKLOADS {
        // 1. As Docker runs it by default.
        let before = run_workload(&mut rec, w, &docker_caps, &docker_profile, false);
        assert!(
            before.ok && before.stdout == w.stdout,
            "{}: does not work under Docker's defaults: {:?} {:#?}",
            w.name,
            before.stdout,
            before.report.capabilities
        );
        assert!(
            before.report.docker_default.replay.would_deny.is_empty(),
            "{}: it ran under Docker's default profile, which capmon says would deny {:?}",
            w.name,
            before.report.docker_default.replay.would_deny
        );
        assert!(
            !before.report.syscalls.runtime.is_empty(),
            "{}: runc's syscalls under the filter were not recorded",
            w.name
        );
        assert_runtime_syscalls_known(w, &before.report);
        let a = &before.report.analysis;
        let expected: Vec<String> = w.caps.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            a.recommended, expected,
            "{}: recommended set; {:#?}",
            w.name, before.report.capabilities
        );
        let unused: BTreeSet<&String> = a.unused.iter().collect();
        let dropped: BTreeSet<&String> = docker_caps
            .iter()
            .filter(|c| !expected.contains(c))
            .collect();
        assert_eq!(unused, dropped, "{}: unused", w.name);
        assert!(
            before.report.syscalls.used.contains(&w.syscall.to_owned()),
            "{}: {} not observed in {:?}",
            w.name,
            w.syscall,
            before.report.syscalls.used
        );

        // 2. capmon's recommendation applied.
        let advice = before.report.advice(w.name);
        let oci = advice.oci().expect("a generated profile");
        assert_apparmor_parses(w.name, &advice.render(Format::Apparmor).expect("apparmor"));
        let docker_flags = advice.render(Format::Docker).expect("docker flags");
        assert!(docker_flags.contains("--cap-drop ALL"), "{docker_flags}");
        let after = run_workload(&mut rec, w, &a.recommended, &oci, true);
        assert!(
            after.ok,
            "{}: fails with the recommendation applied ({docker_flags}): {:?} {:#?} {:#?}",
            w.name, after.stdout, after.report.capabilities, after.report.syscalls
        );
        assert_eq!(after.stdout, w.stdout, "{}: output changed", w.name);
        assert!(
            after.report.syscalls.denied.is_empty() && after.report.capabilities.denied.is_empty(),
            "{}: {:#?} {:#?}",
            w.name,
            after.report.syscalls.denied,
            after.report.capabilities.denied
        );
        assert_runtime_syscalls_known(w, &after.report);
        // The profile for every architecture (`--arch all`: per-architecture names, the
        // union in the OCI form) runs it the same on this one.
        let all: Profile = serde_json::from_str(
            &advice
                .render_for(Format::Oci, &ArchList::all())
                .expect("--arch all"),
        )
        .expect("OCI JSON");
        assert!(
            all.architectures.as_ref().is_some_and(|a| a.len() > 1),
            "{}: {all:?}",
            w.name
        );
        let everywhere = run_workload(&mut rec, w, &a.recommended, &all, true);
        assert!(
            everywhere.ok && everywhere.stdout == w.stdout,
            "{}: fails under the --arch all profile: {:?} {:#?}",
            w.name,
            everywhere.stdout,
            everywhere.report.syscalls.denied
        );

        // 3. Every recommended capability is needed, and capmon names it when it is missing.
        for cap in &a.recommended {
            let fewer: Vec<String> = a
                .recommended
                .iter()
                .filter(|c| *c != cap)
                .cloned()
                .collect();
            let without = run_workload(&mut rec, w, &fewer, &oci, true);
            assert!(
                !without.ok || without.stdout != w.stdout,
                "{}: still works without {cap}",
                w.name
            );
            assert_eq!(
                without.report.analysis.add,
                vec![cap.clone()],
                "{}: capmon must say {cap} is missing; {:#?}",
                w.name,
                without.report.capabilities
            );
        }

        // 4. An observed syscall removed from the generated profile breaks it, and capmon sees
        // seccomp deny it.
        let profile = before.report.seccomp_profile.as_ref().expect("profile");
        let trimmed = Advice {
            profile: Ok(&profile.without(w.syscall)),
            ..advice.clone()
        }
        .oci()
        .expect("profile");
        let broken = run_workload(&mut rec, w, &a.recommended, &trimmed, true);
        assert!(
            !broken.ok || broken.stdout != w.stdout,
            "{}: still works without syscall {}",
            w.name,
            w.syscall
        );
        assert!(
            broken
                .report
                .syscalls
                .denied
                .iter()
                .any(|d| d.name == w.syscall && d.errno == "EPERM"),
            "{}: seccomp's denial of {} not seen: {:?}",
            w.name,
            w.syscall,
            broken.report.syscalls.denied
        );
    }
}

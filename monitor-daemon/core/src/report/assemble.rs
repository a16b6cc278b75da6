//! A report from its facts: the generated least-privilege profile, the analysis (granted
//! against used) and Docker's default profile against what the workload did.

use std::collections::BTreeMap;

use super::{BuildContext, Capabilities, DockerDefault, Observed, RecordReport, Syscalls, facts};
use crate::{
    recommend::{self, Context, RUNC_AFTER_FILTER, Usage},
    seccomp::{Profile, ProfileDiff, Replay, Target},
};

/// Builds the report from what was observed.
pub fn build(
    ctx: &BuildContext,
    command: Vec<String>,
    exit_code: i32,
    signal: Option<i32>,
    observed: &Observed,
) -> RecordReport {
    let (capabilities, syscalls, lost) = facts(ctx.arch, observed);
    assemble(
        ctx,
        command,
        exit_code,
        signal,
        capabilities,
        syscalls,
        lost,
    )
}

/// Completes a report from its facts (capability classes, syscall names): the generated
/// profile, the analysis and Docker's default profile against it. The daemon builds reports
/// of containers from its store with this.
pub fn assemble(
    ctx: &BuildContext,
    command: Vec<String>,
    exit_code: i32,
    signal: Option<i32>,
    capabilities: Capabilities,
    syscalls: Syscalls,
    lost: BTreeMap<String, u64>,
) -> RecordReport {
    let profile = generated_profile(ctx, &syscalls, &lost);
    let analysis = recommend::analyze(
        &Usage {
            used: &capabilities.used,
            denied: &capabilities.denied,
            probe: &capabilities.probe,
            proven: capabilities.needed.as_deref().unwrap_or_default(),
            not_needed: capabilities.not_needed.as_deref().unwrap_or_default(),
        },
        &Context {
            granted: &ctx.granted,
            findings: &ctx.findings,
            uid: ctx.uid,
        },
    );
    let docker_default = docker_default(ctx, &syscalls, profile.as_ref().ok());
    RecordReport {
        command,
        exit_code,
        signal,
        capabilities,
        syscalls,
        granted: ctx.granted.clone(),
        analysis,
        seccomp_profile_error: profile.as_ref().err().cloned(),
        seccomp_profile: profile.ok(),
        docker_default,
        lost,
        verification: None,
        arch: ctx.arch,
        kernel: ctx.kernel,
    }
}

/// The least-privilege profile for the recorded syscalls, or why capmon will not write one.
fn generated_profile(
    ctx: &BuildContext,
    syscalls: &Syscalls,
    lost: &BTreeMap<String, u64>,
) -> Result<Profile, String> {
    if !ctx.complete {
        Err("capmon did not see the workload start, so its syscall history is incomplete".into())
    } else if lost.get("syscall_map_full").is_some_and(|n| *n > 0) {
        Err("the kernel's syscall map was full and syscalls went unrecorded".into())
    } else {
        // What the runtime was seen to make under the filter, and what runc is known to need
        // there: its Go runtime's calls vary from run to run (signals, scheduling), and a
        // command recorded outside a container shows none.
        let mut names: Vec<&str> = syscalls.used.iter().map(String::as_str).collect();
        names.extend(syscalls.runtime.iter().map(String::as_str));
        Profile::generate_from_names(ctx.arch, &names, RUNC_AFTER_FILTER).map_err(|e| e.to_string())
    }
}

/// Docker's default profile, resolved for the workload's grant, against its syscalls and the
/// generated profile.
fn docker_default(
    ctx: &BuildContext,
    syscalls: &Syscalls,
    generated: Option<&Profile>,
) -> DockerDefault {
    let target = Target {
        arch: ctx.arch,
        caps: ctx.granted.iter().cloned().collect(),
        kernel: ctx.kernel,
    };
    let docker = Profile::docker_default();
    let mut all: Vec<&String> = syscalls.used.iter().collect();
    all.extend(&syscalls.runtime);
    all.sort();
    all.dedup();
    DockerDefault {
        replay: Replay::run(&docker, &target, &all),
        diff: generated
            .map(|p| ProfileDiff::between(p, &docker, &target))
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{
        Denial,
        testdata::{ctx, observed},
    };
    use super::*;
    use crate::classify::CapClass;

    #[test]
    fn classes_syscalls_and_denials() {
        let r = build(&ctx(), vec!["chown".into()], 0, None, &observed());
        assert_eq!(r.capabilities.used, vec!["CAP_CHOWN"]);
        assert_eq!(r.capabilities.denied, vec!["CAP_NET_RAW"]);
        assert_eq!(r.capabilities.probe, vec!["CAP_SYS_ADMIN"]);
        assert_eq!(r.capabilities.ignored, vec!["CAP_NET_ADMIN"]);
        let raw = r
            .capabilities
            .checks
            .iter()
            .find(|c| c.capability == "CAP_NET_RAW")
            .expect("raw");
        assert_eq!(raw.reason, "refused, and the syscall failed with EPERM");
        assert_eq!(
            r.syscalls.used,
            vec!["execve", "exit_group", "fchownat", "read", "write"]
        );
        assert_eq!(
            r.syscalls.denied,
            vec![Denial {
                name: "fchmodat".into(),
                number: 268,
                errno: "EPERM".into(),
                count: 3,
                comm: None
            }]
        );
        let chown = &r.capabilities.checks[0];
        assert_eq!(chown.capability, "CAP_CHOWN");
        assert_eq!(chown.comm, "chown");
        assert_eq!(chown.syscall.as_deref(), Some("fchownat"));
        assert_eq!(
            chown.stack,
            vec!["security_capable", "capable_wrt_inode_uidgid", "chown_ok"]
        );
        assert_eq!(chown.site.as_deref(), Some("chown_ok"));
        let probe = r
            .capabilities
            .checks
            .iter()
            .find(|c| c.class == CapClass::Probe)
            .expect("probe");
        assert_eq!(
            probe.noaudit_caller.as_deref(),
            Some("cap_vm_enough_memory")
        );
        let profile = r.seccomp_profile.as_ref().expect("a profile");
        let allowed = &profile.syscalls[0].names;
        assert!(
            r.syscalls.used.iter().all(|s| allowed.contains(s)),
            "{allowed:?}"
        );
        // What runc needs between installing the filter and the exec is allowed.
        assert!(allowed.contains(&"capset".to_owned()), "{allowed:?}");
        // Granted against used.
        let a = &r.analysis;
        assert_eq!(a.granted, vec!["CAP_CHOWN", "CAP_KILL", "CAP_SYS_ADMIN"]);
        assert_eq!(a.used, vec!["CAP_CHOWN"]);
        assert_eq!(a.add, vec!["CAP_NET_RAW"]);
        assert_eq!(a.unused, vec!["CAP_KILL", "CAP_SYS_ADMIN"]);
        assert_eq!(a.recommended, vec!["CAP_CHOWN", "CAP_NET_RAW"]);
        assert_eq!(a.probe_only, vec!["CAP_SYS_ADMIN"]);
        let codes: Vec<(&str, bool)> = a
            .warnings
            .iter()
            .map(|w| (w.code.as_str(), w.needed))
            .collect();
        assert_eq!(
            codes,
            vec![
                ("cap_sys_admin", false),
                ("cap_net_raw", true),
                ("runs_as_root", false)
            ]
        );
        // Docker's default for CHOWN+SYS_ADMIN+KILL allows these five.
        assert!(r.docker_default.replay.would_deny.is_empty());
        assert_eq!(r.docker_default.replay.allowed, 5);
    }

    #[test]
    fn json_shape() {
        let r = build(
            &ctx(),
            vec!["chown".into(), "nobody".into()],
            3,
            None,
            &observed(),
        );
        let v = serde_json::to_value(&r).expect("json");
        assert_eq!(v["command"], serde_json::json!(["chown", "nobody"]));
        assert_eq!(v["exit_code"], 3);
        assert_eq!(v["capabilities"]["used"], serde_json::json!(["CAP_CHOWN"]));
        assert_eq!(v["syscalls"]["denied"][0]["errno"], "EPERM");
        assert_eq!(v["syscalls"]["denied"][0]["name"], "fchmodat");
        assert_eq!(v["seccomp_profile"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(v["lost"]["ringbuf_full"], 0);
    }
}

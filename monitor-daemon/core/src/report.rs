//! What `capmon record` found, as data (JSON) and as text: built from the kernel side's
//! counts and first sightings by pure functions, unit tested on synthetic input.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use monitor_common::{CapEvent, CapKey, DenyEvent, DenyKey};
use serde::Serialize;

use crate::{
    classify::{CapClass, base_symbol, classify},
    names::{Arch, capability_name, comm_str, errno_name},
    recommend::Analysis,
    seccomp::{KernelVersion, Profile, ProfileDiff, Replay, Target},
};

/// Everything the kernel side recorded for one cgroup.
#[derive(Debug, Default)]
pub struct Observed {
    /// (cgroup, cap, result, stack) -> count.
    pub cap_checks: Vec<(CapKey, u64)>,
    /// First sighting of each cap-check key (evidence).
    pub cap_events: HashMap<CapKey, CapEvent>,
    /// Kernel frames (symbol names, innermost first) by stack hash.
    pub stacks: HashMap<u64, std::sync::Arc<Vec<String>>>,
    /// Syscall numbers entered by the workload (from its first exec on).
    pub syscalls: Vec<u32>,
    /// Syscall numbers the container runtime entered after installing the seccomp filter,
    /// before the workload's exec.
    pub runtime_syscalls: Vec<u32>,
    /// (cgroup, syscall, errno) -> count.
    pub denials: Vec<(DenyKey, u64)>,
    /// First sighting of each denial key.
    pub deny_events: HashMap<DenyKey, DenyEvent>,
    /// Kernel-side loss counters.
    pub counters: BTreeMap<&'static str, u64>,
    /// Ring-buffer records that could not be decoded.
    pub undecodable: u64,
}

/// One capability check site, with evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CapCheck {
    /// `CAP_CHOWN`.
    pub capability: String,
    /// `used`, `denied`, `probe` or `ignored`.
    pub class: CapClass,
    /// Why it has that class.
    pub reason: String,
    /// `granted` or `refused`.
    pub result: &'static str,
    /// Number of checks at this site.
    pub count: u64,
    /// The no-audit frame that made it a probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noaudit_caller: Option<String>,
    /// Process name of the first check.
    pub comm: String,
    /// Thread id of the first check.
    pub pid: u32,
    /// Syscall the first check happened in, when known.
    pub syscall: Option<String>,
    /// The kernel function that asked (first frame that is not generic capability plumbing).
    pub site: Option<String>,
    /// Kernel frames below `cap_capable`, innermost first (at most 8).
    pub stack: Vec<String>,
}

/// Capabilities by class.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// Granted, audited checks: what the command needs.
    pub used: Vec<String>,
    /// Refused, audited checks: what the command lacked.
    pub denied: Vec<String>,
    /// Only no-audit checks or refusals that failed no syscall (never a reason to keep or add).
    pub probe: Vec<String>,
    /// Checks that were not the workload's own (borrowed credentials, runtime setup).
    pub ignored: Vec<String>,
    /// Every check site, with evidence.
    pub checks: Vec<CapCheck>,
}

/// A syscall seccomp refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Denial {
    /// Syscall name.
    pub name: String,
    /// Syscall number.
    pub number: u32,
    /// `EPERM`.
    pub errno: String,
    /// Number of denials.
    pub count: u64,
    /// Process name of the first denial.
    pub comm: Option<String>,
}

/// Syscalls.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Syscalls {
    /// Names of the syscalls the workload entered, sorted.
    pub used: Vec<String>,
    /// Syscalls the container runtime made under the workload's seccomp filter before the
    /// workload's exec (empty outside containers or without a filter); the generated profile
    /// allows them.
    pub runtime: Vec<String>,
    /// Syscalls refused by seccomp.
    pub denied: Vec<Denial>,
}

/// The result of `capmon record`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecordReport {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Its exit code (128 + signal when killed by one).
    pub exit_code: i32,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    /// Capabilities by class.
    pub capabilities: Capabilities,
    /// Syscalls used and denied.
    pub syscalls: Syscalls,
    /// Capabilities the workload held.
    pub granted: Vec<String>,
    /// Granted against used: what to drop, keep and add, with warnings.
    pub analysis: Analysis,
    /// Least-privilege profile: the syscalls used plus what the runtime needs after
    /// installing the filter. `None` when it cannot be written without guessing.
    pub seccomp_profile: Option<Profile>,
    /// Why there is no profile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seccomp_profile_error: Option<String>,
    /// Docker's default seccomp profile against this workload.
    pub docker_default: DockerDefault,
    /// What the kernel side could not record (all 0 when nothing was lost).
    pub lost: BTreeMap<String, u64>,
}

/// Docker's default seccomp profile, resolved for the workload's capabilities, this
/// architecture and kernel, against what the workload did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DockerDefault {
    /// The recorded syscalls replayed against it: what would break under it.
    pub replay: Replay,
    /// The generated profile compared with it (empty when there is no generated profile).
    pub diff: ProfileDiff,
}

/// What [`build`] needs beyond the kernel's observations.
#[derive(Clone, Debug)]
pub struct BuildContext {
    /// The architecture syscall numbers belong to.
    pub arch: Arch,
    /// Capabilities the workload held (`CAP_*`).
    pub granted: Vec<String>,
    /// Failed posture checks (`check`, `detail`).
    pub findings: Vec<(String, String)>,
    /// Effective uid of the workload, when known.
    pub uid: Option<u32>,
    /// The kernel, for Docker's `minKernel` conditions.
    pub kernel: KernelVersion,
    /// Whether the syscall history is complete (recorded from the workload's start); a
    /// profile is generated only then.
    pub complete: bool,
}

impl BuildContext {
    /// For a command or container capmon saw start on this machine, holding `granted`.
    pub fn new(granted: Vec<String>) -> Self {
        BuildContext {
            arch: Arch::host(),
            granted,
            findings: Vec::new(),
            uid: None,
            kernel: KernelVersion::running().unwrap_or(KernelVersion(0, 0)),
            complete: true,
        }
    }
}

fn syscall_label(arch: Arch, nr: u32) -> String {
    arch.syscall_name(nr)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("syscall_{nr}"))
}

/// Frames of interest: those below `cap_capable` (the tracepoint and BPF plumbing above it
/// are dropped), clone suffixes removed.
fn interesting_frames(frames: &[String]) -> Vec<String> {
    let start = frames
        .iter()
        .position(|f| base_symbol(f) == "cap_capable")
        .map(|i| i + 1)
        .unwrap_or(0);
    frames[start..].iter().take(8).cloned().collect()
}

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

/// What was observed, classified and named: capability classes with their check sites,
/// syscalls, and the loss counters.
pub fn facts(arch: Arch, observed: &Observed) -> (Capabilities, Syscalls, BTreeMap<String, u64>) {
    let mut classes: BTreeMap<CapClass, BTreeSet<u32>> = BTreeMap::new();
    let mut checks = Vec::new();
    for (key, count) in &observed.cap_checks {
        let frames = observed.stacks.get(&key.stack).cloned().unwrap_or_default();
        let frames: &[String] = &frames;
        let frame_refs: Vec<&str> = frames.iter().map(String::as_str).collect();
        let facts = crate::classify::CheckFacts {
            ret: key.ret,
            context: key.context,
            outcome: key.outcome,
        };
        let (class, reason) = classify(facts, &frame_refs);
        classes.entry(class).or_default().insert(key.cap);
        let event = observed.cap_events.get(key);
        checks.push(CapCheck {
            capability: capability_name(key.cap),
            class,
            reason,
            result: if key.ret == 0 { "granted" } else { "refused" },
            count: *count,
            noaudit_caller: crate::classify::noaudit_frame(&frame_refs)
                .map(|f| base_symbol(f).to_owned()),
            comm: event.map(|e| comm_str(&e.comm)).unwrap_or_default(),
            pid: event.map(|e| e.pid).unwrap_or_default(),
            syscall: event
                .and_then(|e| u32::try_from(e.syscall_nr).ok())
                .map(|nr| syscall_label(arch, nr)),
            site: {
                let below = interesting_frames(frames);
                let refs: Vec<&str> = below.iter().map(String::as_str).collect();
                crate::classify::call_site(&refs).map(str::to_owned)
            },
            stack: interesting_frames(frames),
        });
    }
    checks
        .sort_by(|a, b| (&a.capability, a.class, b.count).cmp(&(&b.capability, b.class, a.count)));
    let names = |class| -> Vec<String> {
        let mut v: Vec<String> = classes
            .get(&class)
            .into_iter()
            .flatten()
            .map(|c| capability_name(*c))
            .collect();
        v.sort();
        v
    };
    let mut used_syscalls: Vec<String> = observed
        .syscalls
        .iter()
        .map(|nr| syscall_label(arch, *nr))
        .collect();
    used_syscalls.sort();
    used_syscalls.dedup();
    let mut denied: Vec<Denial> = observed
        .denials
        .iter()
        .map(|(key, count)| Denial {
            name: syscall_label(arch, key.syscall_nr),
            number: key.syscall_nr,
            errno: errno_name(key.errno),
            count: *count,
            comm: observed.deny_events.get(key).map(|e| comm_str(&e.comm)),
        })
        .collect();
    denied.sort_by(|a, b| (&a.name, &a.errno).cmp(&(&b.name, &b.errno)));
    let mut lost: BTreeMap<String, u64> = observed
        .counters
        .iter()
        .map(|(k, v)| ((*k).to_owned(), *v))
        .collect();
    lost.insert("undecodable_records".into(), observed.undecodable);
    let mut runtime_syscalls: Vec<String> = observed
        .runtime_syscalls
        .iter()
        .map(|nr| syscall_label(arch, *nr))
        .collect();
    runtime_syscalls.sort();
    (
        Capabilities {
            used: names(CapClass::Used),
            denied: names(CapClass::Denied),
            probe: names(CapClass::Probe),
            ignored: names(CapClass::Ignored),
            checks,
        },
        Syscalls {
            used: used_syscalls,
            runtime: runtime_syscalls,
            denied,
        },
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
    let arch = ctx.arch;
    let profile = if !ctx.complete {
        Err("capmon did not see the workload start, so its syscall history is incomplete".into())
    } else if lost.get("syscall_map_full").is_some_and(|n| *n > 0) {
        Err("the kernel's syscall map was full and syscalls went unrecorded".into())
    } else {
        // What the runtime was seen to make under the filter, and what runc is known to need
        // there: its Go runtime's calls vary from run to run (signals, scheduling), and a
        // command recorded outside a container shows none.
        let mut names: Vec<&str> = syscalls.used.iter().map(String::as_str).collect();
        names.extend(syscalls.runtime.iter().map(String::as_str));
        Profile::generate_from_names(arch, &names, crate::recommend::RUNC_AFTER_FILTER)
            .map_err(|e| e.to_string())
    };
    let mut report = RecordReport {
        command,
        exit_code,
        signal,
        capabilities,
        syscalls,
        granted: ctx.granted.clone(),
        analysis: Analysis::default(),
        seccomp_profile_error: profile.as_ref().err().cloned(),
        seccomp_profile: profile.ok(),
        docker_default: DockerDefault::default(),
        lost,
    };
    report.analysis = crate::recommend::analyze(
        &report,
        &crate::recommend::Context {
            granted: &ctx.granted,
            findings: &ctx.findings,
            uid: ctx.uid,
        },
    );
    let target = Target {
        arch,
        caps: ctx.granted.iter().cloned().collect(),
        kernel: ctx.kernel,
    };
    let docker = Profile::docker_default();
    let mut all: Vec<&String> = report.syscalls.used.iter().collect();
    all.extend(&report.syscalls.runtime);
    all.sort();
    all.dedup();
    report.docker_default = DockerDefault {
        replay: Replay::run(&docker, &target, &all),
        diff: report
            .seccomp_profile
            .as_ref()
            .map(|p| ProfileDiff::between(p, &docker, &target))
            .unwrap_or_default(),
    };
    report
}

/// The report as text for a terminal; `name` names the workload in the recommendation.
pub fn render_text(r: &RecordReport, name: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let list = |v: &[String]| {
        if v.is_empty() {
            "(none)".to_owned()
        } else {
            v.join(", ")
        }
    };
    let _ = writeln!(out, "capmon record: {}", r.command.join(" "));
    match r.signal {
        Some(sig) => {
            let _ = writeln!(
                out,
                "exit status: killed by signal {sig} (exit code {})",
                r.exit_code
            );
        }
        None => {
            let _ = writeln!(out, "exit status: {}", r.exit_code);
        }
    }
    let _ = writeln!(out, "\ncapabilities used:   {}", list(&r.capabilities.used));
    let _ = writeln!(out, "capabilities denied: {}", list(&r.capabilities.denied));
    let _ = writeln!(out, "probes (not needed):  {}", list(&r.capabilities.probe));
    let _ = writeln!(
        out,
        "ignored (not the workload's): {}",
        list(&r.capabilities.ignored)
    );
    // One line per capability and class; every site is in the JSON.
    /// Per (capability, class): total count, call sites, process names.
    type Group<'a> = (u64, BTreeSet<String>, BTreeSet<&'a str>);
    let mut groups: BTreeMap<(&str, CapClass), Group> = BTreeMap::new();
    for c in &r.capabilities.checks {
        let g = groups.entry((c.capability.as_str(), c.class)).or_default();
        g.0 += c.count;
        g.1.insert(match (&c.site, &c.syscall) {
            (Some(site), Some(sc)) => format!("{site} ({sc})"),
            (Some(site), None) => site.clone(),
            (None, Some(sc)) => format!("({sc})"),
            (None, None) => "?".to_owned(),
        });
        g.2.insert(c.comm.as_str());
    }
    for ((cap, class), (count, sites, comms)) in &groups {
        let sites: Vec<&str> = sites.iter().map(String::as_str).collect();
        let shown = if sites.len() > 3 {
            format!("{}, +{} more", sites[..3].join(", "), sites.len() - 3)
        } else {
            sites.join(", ")
        };
        let comms: Vec<&str> = comms.iter().copied().collect();
        let _ = writeln!(
            out,
            "  {cap:<22} {:<7} x{count:<6} by {}: {shown}",
            class.as_str(),
            comms.join(",")
        );
    }
    let _ = writeln!(out, "\nsyscalls used ({}):", r.syscalls.used.len());
    let mut line = String::from(" ");
    for name in &r.syscalls.used {
        if line.len() + name.len() + 1 > 90 {
            let _ = writeln!(out, "{line}");
            line = String::from(" ");
        }
        line.push(' ');
        line.push_str(name);
    }
    if line.trim().is_empty() {
        line.push_str(" (none)");
    }
    let _ = writeln!(out, "{line}");
    if r.syscalls.denied.is_empty() {
        let _ = writeln!(out, "\nsyscalls denied by seccomp: (none)");
    } else {
        let _ = writeln!(out, "\nsyscalls denied by seccomp:");
        for d in &r.syscalls.denied {
            let _ = writeln!(out, "  {:<20} {:<8} x{}", d.name, d.errno, d.count);
        }
    }
    let a = &r.analysis;
    let _ = writeln!(out, "\nleast privilege:");
    let _ = writeln!(out, "  granted but unused (drop): {}", list(&a.unused));
    let _ = writeln!(out, "  missing (add):             {}", list(&a.add));
    let _ = writeln!(out, "  recommended set:           {}", list(&a.recommended));
    for w in &a.warnings {
        let _ = writeln!(out, "  warning [{}]: {}", w.code, w.message);
    }
    match crate::recommend::Advice::of(name, r).render(crate::recommend::Format::Docker) {
        Ok(flags) => {
            let _ = writeln!(
                out,
                "  docker run {}",
                flags.lines().last().unwrap_or_default()
            );
        }
        Err(e) => {
            let _ = writeln!(out, "  {e}");
        }
    }
    if let Some(why) = &r.seccomp_profile_error {
        let _ = writeln!(out, "  no seccomp profile: {why}");
    }
    let d = &r.docker_default;
    if d.replay.would_deny.is_empty() {
        let _ = writeln!(
            out,
            "\nDocker's default seccomp profile: allows every recorded syscall"
        );
    } else {
        let denied: Vec<String> = d
            .replay
            .would_deny
            .iter()
            .map(|w| format!("{} ({})", w.name, w.errno.as_deref().unwrap_or(&w.action)))
            .collect();
        let _ = writeln!(
            out,
            "\nDocker's default seccomp profile would deny: {} (the workload would break under it)",
            denied.join(", ")
        );
    }
    if !d.replay.depends_on_arguments.is_empty() {
        let _ = writeln!(
            out,
            "  allowed by it only for some arguments: {}",
            d.replay.depends_on_arguments.join(", ")
        );
    }
    if r.seccomp_profile.is_some() {
        let _ = writeln!(
            out,
            "  generated profile vs Docker's default: {} in both, {} not unconditionally allowed by Docker's{}, {} of Docker's removed",
            d.diff.in_both,
            d.diff.only_in_generated.len(),
            if d.diff.only_in_generated.is_empty() {
                String::new()
            } else {
                format!(" ({})", d.diff.only_in_generated.join(", "))
            },
            d.diff.only_in_base.len()
        );
    }
    let lost: u64 = r.lost.values().sum();
    if lost > 0 {
        let _ = writeln!(out, "\nWARNING: the kernel side lost records: {:?}", r.lost);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn ctx() -> BuildContext {
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

    fn observed() -> Observed {
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
            counters: BTreeMap::from([("ringbuf_full", 0), ("stack_failed", 0)]),
            ..Default::default()
        };
        o.stacks.insert(
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
        o.stacks.insert(
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
        o.stacks.insert(
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
        o.cap_events.insert(
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

    #[test]
    fn text_lists_everything() {
        let r = build(&ctx(), vec!["chown".into()], 0, None, &observed());
        let text = render_text(&r, "chown");
        assert!(text.contains("capabilities used:   CAP_CHOWN\n"), "{text}");
        assert!(
            text.contains("capabilities denied: CAP_NET_RAW\n"),
            "{text}"
        );
        assert!(text.contains("fchmodat             EPERM    x3"), "{text}");
        assert!(text.contains("syscalls used (5):"), "{text}");
        assert!(
            text.contains(
                "  CAP_CHOWN              used    x1      by chown: chown_ok (fchownat)\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("  CAP_SYS_ADMIN          probe   x7      by : do_mmap\n"),
            "{text}"
        );
        assert!(!text.contains("WARNING"), "{text}");
    }
}

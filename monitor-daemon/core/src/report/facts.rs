//! What the kernel side observed, classified and named: each capability check site with its
//! class and evidence, the syscall names, the denials and the loss counters.

use std::collections::{BTreeMap, BTreeSet};

use monitor_common::CapKey;

use super::{CapCheck, Capabilities, Denial, Observed, Syscalls};
use crate::{
    classify::{CapClass, CheckFacts, base_symbol, call_site, classify, noaudit_frame},
    names::{Arch, capability_name, comm_str, errno_name},
};

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

/// What was observed, classified and named: capability classes with their check sites,
/// syscalls, and the loss counters.
pub fn facts(arch: Arch, observed: &Observed) -> (Capabilities, Syscalls, BTreeMap<String, u64>) {
    let mut classes: BTreeMap<CapClass, BTreeSet<u32>> = BTreeMap::new();
    let mut checks = Vec::new();
    for (key, count) in &observed.cap_checks {
        let check = cap_check(arch, observed, key, *count);
        classes.entry(check.class).or_default().insert(key.cap);
        checks.push(check);
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
    let mut used_syscalls = syscall_labels(arch, &observed.syscalls);
    used_syscalls.dedup();
    (
        Capabilities {
            used: names(CapClass::Used),
            denied: names(CapClass::Denied),
            probe: names(CapClass::Probe),
            ignored: names(CapClass::Ignored),
            checks,
            ..Default::default()
        },
        Syscalls {
            used: used_syscalls,
            runtime: syscall_labels(arch, &observed.runtime_syscalls),
            denied: denials(arch, observed),
        },
        lost(observed),
    )
}

/// One check site (`key`, seen `count` times): its class and the evidence for it.
fn cap_check(arch: Arch, observed: &Observed, key: &CapKey, count: u64) -> CapCheck {
    let frames = observed.stacks.get(&key.stack).cloned().unwrap_or_default();
    let frames: &[String] = &frames;
    let frame_refs: Vec<&str> = frames.iter().map(String::as_str).collect();
    let facts = CheckFacts {
        ret: key.ret,
        context: key.context,
        outcome: key.outcome,
    };
    let (class, reason) = classify(facts, &frame_refs);
    let event = observed.cap_events.get(key);
    let below = interesting_frames(frames);
    let below_refs: Vec<&str> = below.iter().map(String::as_str).collect();
    CapCheck {
        capability: capability_name(key.cap),
        class,
        reason,
        result: if key.ret == 0 { "granted" } else { "refused" },
        count,
        noaudit_caller: noaudit_frame(&frame_refs).map(|f| base_symbol(f).to_owned()),
        comm: event.map(|e| comm_str(&e.comm)).unwrap_or_default(),
        pid: event.map(|e| e.pid).unwrap_or_default(),
        syscall: event
            .and_then(|e| u32::try_from(e.syscall_nr).ok())
            .map(|nr| syscall_label(arch, nr)),
        site: call_site(&below_refs).map(str::to_owned),
        stack: below,
    }
}

/// Syscall numbers as names (`syscall_435` when the table has none), sorted.
fn syscall_labels(arch: Arch, numbers: &[u32]) -> Vec<String> {
    let mut names: Vec<String> = numbers.iter().map(|nr| syscall_label(arch, *nr)).collect();
    names.sort();
    names
}

/// The syscalls seccomp refused, by name and errno.
fn denials(arch: Arch, observed: &Observed) -> Vec<Denial> {
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
    denied
}

/// The kernel side's loss counters, and the records that could not be decoded.
fn lost(observed: &Observed) -> BTreeMap<String, u64> {
    let mut lost: BTreeMap<String, u64> = observed
        .counters
        .iter()
        .map(|(k, v)| ((*k).to_owned(), *v))
        .collect();
    lost.insert(
        monitor_common::counter::UNDECODABLE.into(),
        observed.undecodable,
    );
    lost
}

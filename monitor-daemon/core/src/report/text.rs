//! The report as text for a terminal, section by section; every detail is in the JSON.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
};

use super::{Capabilities, RecordReport, Syscalls};
use crate::{classify::CapClass, recommend::Format};

/// The report as text for a terminal; `name` names the workload in the recommendation.
pub fn render_text(r: &RecordReport, name: &str) -> String {
    let mut out = String::new();
    exit_status(&mut out, r);
    capabilities(&mut out, &r.capabilities);
    syscalls(&mut out, &r.syscalls);
    least_privilege(&mut out, r, name);
    if let Some(v) = &r.verification {
        verification(&mut out, v);
    }
    docker_default(&mut out, r);
    let lost: u64 = r.lost.values().sum();
    if lost > 0 {
        let _ = writeln!(out, "\nWARNING: the kernel side lost records: {:?}", r.lost);
    }
    out
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "(none)".to_owned()
    } else {
        v.join(", ")
    }
}

/// The command and how it ended.
fn exit_status(out: &mut String, r: &RecordReport) {
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
}

/// The classes, then one line per capability and class with its sites and process names.
fn capabilities(out: &mut String, c: &Capabilities) {
    let _ = writeln!(out, "\ncapabilities used:   {}", list(&c.used));
    let _ = writeln!(out, "capabilities denied: {}", list(&c.denied));
    let _ = writeln!(out, "probes (not needed):  {}", list(&c.probe));
    let _ = writeln!(out, "ignored (not the workload's): {}", list(&c.ignored));
    // One line per capability and class; every site is in the JSON.
    /// Per (capability, class): total count, call sites, process names.
    type Group<'a> = (u64, BTreeSet<String>, BTreeSet<&'a str>);
    let mut groups: BTreeMap<(&str, CapClass), Group> = BTreeMap::new();
    for c in &c.checks {
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
}

/// The syscalls used, wrapped at 90 columns, and those seccomp denied.
fn syscalls(out: &mut String, s: &Syscalls) {
    let _ = writeln!(out, "\nsyscalls used ({}):", s.used.len());
    let mut line = String::from(" ");
    for name in &s.used {
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
    if s.denied.is_empty() {
        let _ = writeln!(out, "\nsyscalls denied by seccomp: (none)");
    } else {
        let _ = writeln!(out, "\nsyscalls denied by seccomp:");
        for d in &s.denied {
            let _ = writeln!(out, "  {:<20} {:<8} x{}", d.name, d.errno, d.count);
        }
    }
}

/// What `--verify` did: one line per re-run.
fn verification(out: &mut String, v: &super::Verification) {
    let _ = writeln!(
        out,
        "\nverified by running the command again ({} compared):",
        match v.compare {
            super::verify::Compare::Output => "exit status and output",
            super::verify::Compare::Exit => "exit status",
        }
    );
    let _ = writeln!(out, "  needed:     {}", list(&v.needed));
    let _ = writeln!(out, "  not needed: {}", list(&v.not_needed));
    if !v.inconclusive.is_empty() {
        let _ = writeln!(out, "  inconclusive (kept): {}", list(&v.inconclusive));
    }
    match v.seccomp_proven {
        Some(true) => {
            let _ = writeln!(
                out,
                "  seccomp profile: proven (every run was made under it)"
            );
        }
        Some(false) => {
            let _ = writeln!(out, "  seccomp profile: NOT proven (see the warning)");
        }
        None => {}
    }
    if !v.sufficient {
        let _ = writeln!(
            out,
            "  the recommended set did not reproduce the outcome: nothing proven"
        );
    }
    for run in &v.runs {
        let what = match &run.without {
            Some(cap) => format!("without {cap}"),
            None => format!("with {}", list(&run.capabilities)),
        };
        let profile = if run.seccomp { " (profile)" } else { "" };
        let result = match (&run.difference, run.verdict) {
            (Some(d), _) => d.clone(),
            (None, Some(super::verify::Verdict::Inconclusive)) => {
                "same outcome, but the kernel never asked for it: inconclusive".to_owned()
            }
            (None, _) => "same outcome".to_owned(),
        };
        let _ = writeln!(out, "  {what}{profile}: {result}");
        if !run.refused_syscalls.is_empty() {
            let _ = writeln!(
                out,
                "    seccomp refused: {}",
                run.refused_syscalls.join(", ")
            );
        }
    }
    for note in &v.notes {
        let _ = writeln!(out, "  note: {note}");
    }
}

/// The analysis, its warnings and the `docker run` flags that apply it.
fn least_privilege(out: &mut String, r: &RecordReport, name: &str) {
    let a = &r.analysis;
    let _ = writeln!(out, "\nleast privilege:");
    let _ = writeln!(out, "  granted but unused (drop): {}", list(&a.unused));
    let _ = writeln!(out, "  missing (add):             {}", list(&a.add));
    let marked: Vec<String> = a
        .recommended
        .iter()
        .map(|c| match a.basis.get(c) {
            Some(b) => format!("{c} ({})", b.as_str()),
            None => c.clone(),
        })
        .collect();
    let _ = writeln!(out, "  recommended set:           {}", list(&marked));
    if !a.not_needed.is_empty() {
        let _ = writeln!(out, "  proven not needed:         {}", list(&a.not_needed));
    }
    for w in &a.warnings {
        let _ = writeln!(out, "  warning [{}]: {}", w.code, w.message);
    }
    match r.advice(name).render(Format::Docker) {
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
}

/// Docker's default profile against the workload, and the generated profile against it.
fn docker_default(out: &mut String, r: &RecordReport) {
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
}

#[cfg(test)]
mod tests {
    use super::super::{
        build,
        testdata::{ctx, observed},
    };
    use super::*;

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

//! Granted against used: from the capability classes of what a workload did ([`Usage`]) and
//! what it was given ([`Context`]), the capabilities to keep, drop and add, and the warnings a
//! security reviewer wants. Knows nothing of reports or output formats.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

/// One thing a reviewer should look at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// Stable code: `cap_sys_admin`, `cap_net_raw`, `cap_sys_ptrace`, `cap_dac_read_search`,
    /// `privileged`, a posture check name, `no_new_privileges_may_break`.
    pub code: String,
    /// The capability concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
    /// Whether the workload needs it (`true`) or it can simply go (`false`).
    pub needed: bool,
    /// What and why.
    pub message: String,
}

/// Capabilities that deserve a warning whenever they are granted, and why.
const DANGEROUS: &[(&str, &str)] = &[
    (
        "CAP_SYS_ADMIN",
        "nearly root: mount, namespaces, BPF, keyrings and many other kernel interfaces",
    ),
    (
        "CAP_NET_RAW",
        "raw and packet sockets: spoofing and sniffing traffic on the container's network \
         (ping can use ICMP datagram sockets instead: sysctl net.ipv4.ping_group_range)",
    ),
    (
        "CAP_SYS_PTRACE",
        "traces and reads the memory of other processes in the PID namespace (the host's with \
         hostPID)",
    ),
    (
        "CAP_DAC_READ_SEARCH",
        "bypasses read permission checks and allows open_by_handle_at, the 'shocker' container \
         escape",
    ),
];

/// How sure the advice is of a recommended capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Basis {
    /// Proven by experiment (`capmon record --verify`): without it, the workload's outcome
    /// changed.
    Proven,
    /// Observed: a granted, audited check the workload made for itself, which no rule shows to
    /// be without consequence.
    Observed,
    /// Added because the workload was refused it and a syscall failed for that.
    Denied,
}

impl Basis {
    /// The word used in every format.
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Proven => "proven",
            Basis::Observed => "observed",
            Basis::Denied => "denied",
        }
    }
}

/// What a workload was granted against what it used, and what it should get instead.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Analysis {
    /// Capabilities the workload held.
    pub granted: Vec<String>,
    /// Used (granted, audited, its own).
    pub used: Vec<String>,
    /// Refused checks that made a syscall fail.
    pub denied: Vec<String>,
    /// Only ever checked without audit or without consequence: not needed.
    pub probe_only: Vec<String>,
    /// Granted and never used: drop them.
    pub unused: Vec<String>,
    /// Denied and not granted: the workload failed without them; add them (or fix it).
    pub add: Vec<String>,
    /// The least-privilege set: used plus add, less what `--verify` proved not needed.
    pub recommended: Vec<String>,
    /// How sure the advice is of each recommended capability.
    pub basis: BTreeMap<String, Basis>,
    /// Used or refused, but proven not needed by `--verify` (removing it changed nothing).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_needed: Vec<String>,
    /// Whether to set no-new-privileges (`allowPrivilegeEscalation: false`).
    pub no_new_privileges: bool,
    /// Things to look at.
    pub warnings: Vec<Warning>,
}

/// The capability classes [`analyze`] works over (`CAP_*` names, as a report's
/// `capabilities` holds them).
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage<'a> {
    /// Granted, audited checks: what the workload needs.
    pub used: &'a [String],
    /// Refused checks that made a syscall fail.
    pub denied: &'a [String],
    /// Only ever checked without audit or without consequence.
    pub probe: &'a [String],
    /// Proven needed by `--verify`.
    pub proven: &'a [String],
    /// Proven not needed by `--verify` (left out of the recommendation).
    pub not_needed: &'a [String],
}

/// What [`analyze`] needs beyond the capability classes.
#[derive(Clone, Debug, Default)]
pub struct Context<'a> {
    /// Capabilities the workload held (`CAP_*`).
    pub granted: &'a [String],
    /// Failed checklist items of its posture (`posture::Finding::check`, detail).
    pub findings: &'a [(String, String)],
    /// Its effective uid, when known.
    pub uid: Option<u32>,
}

fn sorted(set: BTreeSet<&String>) -> Vec<String> {
    let mut v: Vec<String> = set.into_iter().cloned().collect();
    v.sort_by_key(|c| crate::names::capability_number(c).unwrap_or(u32::MAX));
    v
}

/// Compares granted with used and denied.
pub fn analyze(usage: &Usage<'_>, ctx: &Context<'_>) -> Analysis {
    let granted: BTreeSet<&String> = ctx.granted.iter().collect();
    let used: BTreeSet<&String> = usage.used.iter().collect();
    let denied: BTreeSet<&String> = usage.denied.iter().collect();
    let probe: BTreeSet<&String> = usage.probe.iter().collect();
    let not_needed: BTreeSet<&String> = usage.not_needed.iter().collect();
    let add: BTreeSet<&String> = denied
        .difference(&granted)
        .copied()
        .filter(|c| !not_needed.contains(c))
        .collect();
    let recommended: BTreeSet<&String> = used
        .union(&add)
        .copied()
        .filter(|c| !not_needed.contains(c))
        .collect();
    let basis = recommended
        .iter()
        .map(|c| {
            let basis = if usage.proven.contains(c) {
                Basis::Proven
            } else if add.contains(c) {
                Basis::Denied
            } else {
                Basis::Observed
            };
            ((*c).clone(), basis)
        })
        .collect();
    let mut warnings = dangerous_capabilities(&granted, &recommended);
    warnings.extend(ctx.findings.iter().map(posture_warning));
    let non_root_with_caps = ctx.uid.is_some_and(|u| u != 0) && !recommended.is_empty();
    if non_root_with_caps {
        warnings.push(Warning {
            code: "no_new_privileges_may_break".into(),
            capability: None,
            needed: false,
            message: "the workload runs as a non-root user and uses capabilities: if it gets \
                      them from a setuid or file-capability binary, no-new-privileges stops \
                      that; grant them as ambient capabilities instead"
                .into(),
        });
    }
    Analysis {
        granted: sorted(granted.clone()),
        used: sorted(used),
        denied: sorted(denied),
        probe_only: sorted(
            probe
                .difference(&recommended)
                .copied()
                .collect::<BTreeSet<_>>(),
        ),
        unused: sorted(granted.difference(&recommended).copied().collect()),
        add: sorted(add),
        recommended: sorted(recommended),
        basis,
        not_needed: sorted(not_needed),
        no_new_privileges: true,
        warnings,
    }
}

/// A warning for each [`DANGEROUS`] capability that is needed or granted.
fn dangerous_capabilities(
    granted: &BTreeSet<&String>,
    recommended: &BTreeSet<&String>,
) -> Vec<Warning> {
    let mut warnings = Vec::new();
    for (cap, why) in DANGEROUS {
        let cap = (*cap).to_owned();
        let needed = recommended.contains(&cap);
        if !needed && !granted.contains(&cap) {
            continue;
        }
        let message = if needed {
            format!("{cap} is needed by the workload; it is dangerous: {why}")
        } else {
            format!("{cap} is granted but never used: drop it ({why})")
        };
        warnings.push(Warning {
            code: cap.to_ascii_lowercase(),
            capability: Some(cap),
            needed,
            message,
        });
    }
    warnings
}

/// A failed posture check (`check`, `detail`) with what to do about it.
fn posture_warning((check, detail): &(String, String)) -> Warning {
    Warning {
        code: check.clone(),
        capability: None,
        needed: false,
        message: match check.as_str() {
            "privileged" => format!("privileged ({detail}): run it with the recommended set"),
            "seccomp_disabled" => {
                format!("{detail}: apply the generated seccomp profile")
            }
            "no_new_privileges_off" => {
                format!("{detail}: set no-new-privileges (allowPrivilegeEscalation: false)")
            }
            "runs_as_root" => format!("{detail}: run as a non-root user if it allows"),
            "lsm_unconfined" => {
                format!("{detail}: confine it with an AppArmor or SELinux profile")
            }
            _ => detail.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keeps_used_adds_denied_drops_the_rest() {
        let (used, denied, probe) = (
            caps(&["CAP_NET_BIND_SERVICE", "CAP_CHOWN"]),
            caps(&["CAP_NET_RAW", "CAP_CHOWN"]),
            caps(&["CAP_SYS_ADMIN", "CAP_CHOWN"]),
        );
        let granted = caps(&[
            "CAP_CHOWN",
            "CAP_SYS_ADMIN",
            "CAP_NET_BIND_SERVICE",
            "CAP_KILL",
        ]);
        let findings = vec![
            ("privileged".to_owned(), "all of them".to_owned()),
            ("custom".to_owned(), "as it is".to_owned()),
        ];
        let a = analyze(
            &Usage {
                used: &used,
                denied: &denied,
                probe: &probe,
                ..Usage::default()
            },
            &Context {
                granted: &granted,
                findings: &findings,
                uid: Some(1000),
            },
        );
        // Sorted by capability number.
        assert_eq!(a.used, caps(&["CAP_CHOWN", "CAP_NET_BIND_SERVICE"]));
        assert_eq!(a.add, caps(&["CAP_NET_RAW"]));
        assert_eq!(
            a.recommended,
            caps(&["CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"])
        );
        assert_eq!(a.unused, caps(&["CAP_KILL", "CAP_SYS_ADMIN"]));
        assert_eq!(a.probe_only, caps(&["CAP_SYS_ADMIN"]));
        let messages: Vec<(&str, &str)> = a
            .warnings
            .iter()
            .map(|w| (w.code.as_str(), w.message.as_str()))
            .collect();
        assert_eq!(messages[0].0, "cap_sys_admin");
        assert!(
            messages[0].1.contains("granted but never used"),
            "{messages:?}"
        );
        assert_eq!(messages[1].0, "cap_net_raw");
        assert!(messages[1].1.contains("is needed"), "{messages:?}");
        assert_eq!(
            &messages[2..],
            &[
                (
                    "privileged",
                    "privileged (all of them): run it with the recommended set"
                ),
                ("custom", "as it is"),
                (
                    "no_new_privileges_may_break",
                    a.warnings[4].message.as_str()
                ),
            ]
        );
    }

    #[test]
    fn each_recommended_capability_says_how_sure_it_is() {
        let (used, denied) = (
            caps(&["CAP_CHOWN", "CAP_FOWNER", "CAP_FSETID"]),
            caps(&["CAP_NET_RAW"]),
        );
        let granted = caps(&["CAP_CHOWN", "CAP_FOWNER", "CAP_FSETID"]);
        let plain = analyze(
            &Usage {
                used: &used,
                denied: &denied,
                ..Usage::default()
            },
            &Context {
                granted: &granted,
                ..Context::default()
            },
        );
        assert_eq!(plain.basis["CAP_CHOWN"], Basis::Observed);
        assert_eq!(plain.basis["CAP_NET_RAW"], Basis::Denied);
        assert_eq!(plain.basis.len(), plain.recommended.len());
        // --verify proved CAP_FOWNER and CAP_CHOWN needed and CAP_FSETID not.
        let (proven, not_needed) = (caps(&["CAP_CHOWN", "CAP_FOWNER"]), caps(&["CAP_FSETID"]));
        let verified = analyze(
            &Usage {
                used: &used,
                denied: &denied,
                proven: &proven,
                not_needed: &not_needed,
                ..Usage::default()
            },
            &Context {
                granted: &granted,
                ..Context::default()
            },
        );
        assert_eq!(
            verified.recommended,
            caps(&["CAP_CHOWN", "CAP_FOWNER", "CAP_NET_RAW"])
        );
        assert_eq!(verified.basis["CAP_FOWNER"], Basis::Proven);
        assert_eq!(verified.basis["CAP_NET_RAW"], Basis::Denied);
        assert!(!verified.basis.contains_key("CAP_FSETID"));
        assert_eq!(verified.not_needed, caps(&["CAP_FSETID"]));
        assert_eq!(
            verified.unused,
            caps(&["CAP_FSETID"]),
            "granted, not needed: drop"
        );
    }
}

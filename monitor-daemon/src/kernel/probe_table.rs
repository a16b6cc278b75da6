//! The probe table: every eBPF program capmon attaches, its hook, the kernels it needs, what
//! stands in for it where it cannot attach, and whether capmon runs without it. [`PROBES`]
//! drives attaching ([`super::loader`]), `capmon check`, and the table in docs/architecture.md
//! (a unit test keeps that file equal to [`markdown`]).

use aya::Btf;
use aya_obj::btf::BtfKind;

/// How a program attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// `tp_btf/<name>`.
    TpBtf(&'static str),
    /// kprobe on a kernel function.
    Kprobe(&'static str),
    /// kretprobe on a kernel function.
    Kretprobe(&'static str),
    /// fexit (BPF trampoline) on a kernel function.
    Fexit(&'static str),
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hook::TpBtf(n) => write!(f, "tp_btf/{n}"),
            Hook::Kprobe(n) => write!(f, "kprobe/{n}"),
            Hook::Kretprobe(n) => write!(f, "kretprobe/{n}"),
            Hook::Fexit(n) => write!(f, "fexit/{n}"),
        }
    }
}

/// How capability checks are observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeMode {
    /// The `capability:cap_capable` BTF tracepoint (Linux >= 6.14).
    Tracepoint,
    /// One fexit program on `cap_capable` (older kernels that allow BPF trampolines: the
    /// arguments, with the options telling no-audit checks apart, and the return value).
    Fexit,
    /// kprobe + kretprobe on `cap_capable` (older kernels with CONFIG_KPROBES).
    Kprobe,
}

/// Every mode.
const ALL: &[ProbeMode] = &[ProbeMode::Tracepoint, ProbeMode::Fexit, ProbeMode::Kprobe];

/// One program of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    /// The program's name in the eBPF object.
    pub program: &'static str,
    /// Where it attaches.
    pub hook: Hook,
    /// The oldest kernel it works on, and why.
    pub min_kernel: &'static str,
    /// What stands in for it where it cannot attach.
    pub fallback: &'static str,
    /// Whether capmon runs without it.
    pub optional: &'static str,
    /// Whether its mode fails when it cannot load or attach (else it is skipped, and said).
    pub required: bool,
    /// The probe modes that attach it.
    pub modes: &'static [ProbeMode],
}

/// Every program, in attach order: the scheduler and cgroup hooks before the syscall hooks
/// (the per-CPU syscall slot relies on `sched_switch` seeing every switch while they run), the
/// capability hook last.
pub const PROBES: &[Probe] = &[
    Probe {
        program: "sched_switch",
        hook: Hook::TpBtf("sched_switch"),
        min_kernel: "5.11",
        fallback: "none",
        optional: "no",
        required: true,
        modes: ALL,
    },
    Probe {
        program: "cgroup_attach_task",
        hook: Hook::TpBtf("cgroup_attach_task"),
        min_kernel: "5.5",
        fallback: "none",
        optional: "no",
        required: true,
        modes: ALL,
    },
    Probe {
        program: "cgroup_mkdir",
        hook: Hook::TpBtf("cgroup_mkdir"),
        min_kernel: "5.5",
        fallback: "none (a cgroup is then found by scanning)",
        optional: "no",
        required: true,
        modes: ALL,
    },
    Probe {
        program: "cgroup_rmdir",
        hook: Hook::TpBtf("cgroup_rmdir"),
        min_kernel: "5.5",
        fallback: "none (an exit is then seen by scanning)",
        optional: "no",
        required: true,
        modes: ALL,
    },
    Probe {
        program: "sched_process_exec",
        hook: Hook::TpBtf("sched_process_exec"),
        min_kernel: "5.5",
        fallback: "none",
        optional: "no",
        required: true,
        modes: ALL,
    },
    Probe {
        program: "sys_enter",
        hook: Hook::TpBtf("sys_enter"),
        min_kernel: "5.11 (task storage)",
        fallback: "none",
        optional: "no",
        required: true,
        modes: ALL,
    },
    Probe {
        program: "sys_exit",
        hook: Hook::TpBtf("sys_exit"),
        min_kernel: "5.11",
        fallback: "none",
        optional: "no",
        required: true,
        modes: ALL,
    },
    Probe {
        program: "cap_capable",
        hook: Hook::TpBtf("cap_capable"),
        min_kernel: "6.14 (the tracepoint)",
        fallback: "`cap_capable_fexit`",
        optional: "no",
        required: true,
        modes: &[ProbeMode::Tracepoint],
    },
    Probe {
        program: "cap_capable_fexit",
        hook: Hook::Fexit("cap_capable"),
        min_kernel: "5.5 with BPF trampolines (x86_64; arm64 6.0)",
        fallback: "`cap_capable_entry` + `cap_capable_return`",
        optional: "used only without the tracepoint",
        required: true,
        modes: &[ProbeMode::Fexit],
    },
    Probe {
        program: "cap_capable_entry",
        hook: Hook::Kprobe("cap_capable"),
        min_kernel: "5.11 with `CONFIG_KPROBES`",
        fallback: "none",
        optional: "used only without the tracepoint",
        required: true,
        modes: &[ProbeMode::Kprobe],
    },
    Probe {
        program: "cap_capable_return",
        hook: Hook::Kretprobe("cap_capable"),
        min_kernel: "5.11 with `CONFIG_KPROBES`",
        fallback: "none",
        optional: "used only without the tracepoint",
        required: true,
        modes: &[ProbeMode::Kprobe],
    },
    Probe {
        program: "cap_mmap_addr_fexit",
        hook: Hook::Fexit("cap_mmap_addr"),
        min_kernel: "5.5 with BPF trampolines",
        fallback: "none (low mmaps' `CAP_SYS_RAWIO` checks unseen where `cap_capable` is inlined)",
        optional: "yes; fexit mode only",
        required: false,
        modes: &[ProbeMode::Fexit],
    },
    Probe {
        program: "cap_mmap_addr_entry",
        hook: Hook::Kprobe("cap_mmap_addr"),
        min_kernel: "5.11 with `CONFIG_KPROBES`",
        fallback: "none (as above)",
        optional: "yes; kprobe mode only",
        required: false,
        modes: &[ProbeMode::Kprobe],
    },
    Probe {
        program: "cap_mmap_addr_return",
        hook: Hook::Kretprobe("cap_mmap_addr"),
        min_kernel: "5.11 with `CONFIG_KPROBES`",
        fallback: "none (as above)",
        optional: "yes; kprobe mode only",
        required: false,
        modes: &[ProbeMode::Kprobe],
    },
];

/// Whether the kernel can attach kprobes (CONFIG_KPROBES with kprobe events).
pub fn kprobes_available() -> bool {
    std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists()
}

/// Whether the kernel's BTF has the BTF tracepoint `name`.
pub fn has_tracepoint(btf: &Btf, name: &str) -> bool {
    btf.id_by_type_name_kind(&format!("btf_trace_{name}"), BtfKind::Typedef)
        .is_ok()
}

impl ProbeMode {
    /// The modes worth trying on this kernel, best first: the tracepoint where it exists, else
    /// fexit (whether the kernel allows trampolines is known only by trying), then kprobes
    /// where the kernel has them.
    /// On a kernel that preempts kernel code (`PREEMPT_RT`, full preemption), only kprobes:
    /// fexit programs run with migration disabled only, so another task could use the CPU's
    /// syscall and check slots in the middle of one (see [`super::preemption`]; measured on
    /// Debian's 6.12-rt: checks lost).
    pub fn candidates(btf: &Btf) -> Vec<Self> {
        Self::candidates_for(
            has_tracepoint(btf, "cap_capable"),
            kprobes_available(),
            super::preemption::Preemption::of_running_kernel(),
        )
    }

    /// [`ProbeMode::candidates`] from what the kernel has.
    pub fn candidates_for(
        tracepoint: bool,
        kprobes: bool,
        preemption: super::preemption::Preemption,
    ) -> Vec<Self> {
        if tracepoint {
            return vec![ProbeMode::Tracepoint];
        }
        match (kprobes, preemption.preempts_fexit()) {
            (true, true) => vec![ProbeMode::Kprobe],
            (true, false) => vec![ProbeMode::Fexit, ProbeMode::Kprobe],
            (false, true) => Vec::new(),
            (false, false) => vec![ProbeMode::Fexit],
        }
    }

    /// Why this mode is the one to try first on a kernel where it is a candidate.
    pub fn why(self) -> &'static str {
        match self {
            ProbeMode::Tracepoint => "the capability:cap_capable tracepoint exists (Linux >= 6.14)",
            ProbeMode::Fexit => {
                "no capability:cap_capable tracepoint (Linux < 6.14); fexit on cap_capable (one \
                 BPF trampoline program) attached"
            }
            ProbeMode::Kprobe => {
                "no capability:cap_capable tracepoint (Linux < 6.14); kprobe + kretprobe on \
                 cap_capable"
            }
        }
    }

    /// Parses `tp_btf`, `fexit`, `kprobe` (the names [`ProbeMode::name`] gives).
    pub fn parse(text: &str) -> Option<Self> {
        [ProbeMode::Tracepoint, ProbeMode::Fexit, ProbeMode::Kprobe]
            .into_iter()
            .find(|m| m.name() == text)
    }

    /// The programs of this mode, in attach order.
    pub fn programs(self) -> impl Iterator<Item = &'static Probe> {
        PROBES.iter().filter(move |p| p.modes.contains(&self))
    }

    /// `tp_btf`, `fexit` or `kprobe` (a metric label).
    pub fn name(self) -> &'static str {
        match self {
            ProbeMode::Tracepoint => "tp_btf",
            ProbeMode::Fexit => "fexit",
            ProbeMode::Kprobe => "kprobe",
        }
    }
}

/// The table as Markdown, as docs/architecture.md shows it.
pub fn markdown() -> String {
    let mut out = String::from(
        "| probe | hook | minimum kernel | fallback | optional |\n| --- | --- | --- | --- | --- |\n",
    );
    for p in PROBES {
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} | {} |\n",
            p.program, p.hook, p.min_kernel, p.fallback, p.optional
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_attaches_the_syscall_hooks_and_one_capability_hook() {
        let names = |m: ProbeMode| m.programs().map(|p| p.program).collect::<Vec<_>>();
        assert_eq!(
            names(ProbeMode::Tracepoint),
            [
                "sched_switch",
                "cgroup_attach_task",
                "cgroup_mkdir",
                "cgroup_rmdir",
                "sched_process_exec",
                "sys_enter",
                "sys_exit",
                "cap_capable"
            ]
        );
        assert_eq!(
            names(ProbeMode::Kprobe)[7..],
            [
                "cap_capable_entry",
                "cap_capable_return",
                "cap_mmap_addr_entry",
                "cap_mmap_addr_return"
            ]
        );
        assert_eq!(
            names(ProbeMode::Fexit)[7..],
            ["cap_capable_fexit", "cap_mmap_addr_fexit"]
        );
        // Only the cap_mmap_addr hooks may be missing.
        for p in PROBES.iter().filter(|p| !p.required) {
            assert!(p.program.starts_with("cap_mmap_addr"), "{p:?}");
        }
        for m in [ProbeMode::Tracepoint, ProbeMode::Fexit, ProbeMode::Kprobe] {
            assert_eq!(ProbeMode::parse(m.name()), Some(m));
        }
        assert_eq!(ProbeMode::parse("fentry"), None);
    }

    #[test]
    fn only_kprobes_where_the_kernel_preempts_fexit_programs() {
        use crate::kernel::preemption::Preemption::*;
        use ProbeMode::*;
        assert_eq!(
            ProbeMode::candidates_for(true, true, Realtime),
            [Tracepoint]
        );
        assert_eq!(
            ProbeMode::candidates_for(false, true, Voluntary),
            [Fexit, Kprobe]
        );
        assert_eq!(ProbeMode::candidates_for(false, true, Realtime), [Kprobe]);
        assert_eq!(ProbeMode::candidates_for(false, true, Full), [Kprobe]);
        assert_eq!(ProbeMode::candidates_for(false, false, Realtime), []);
        assert_eq!(ProbeMode::candidates_for(false, false, Voluntary), [Fexit]);
    }

    #[test]
    fn the_architecture_doc_shows_the_table() {
        let doc = include_str!("../../../docs/architecture.md");
        assert!(
            doc.contains(&markdown()),
            "docs/architecture.md's probe table differs from kernel::probe_table::markdown():\n{}",
            markdown()
        );
    }
}

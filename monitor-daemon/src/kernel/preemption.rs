//! How the running kernel preempts kernel code, and what that means for the probe modes.
//!
//! capmon keeps a task's syscall state in a per-CPU slot between `sys_enter`, the capability
//! hook and `sys_exit`, which is sound only while no other task runs on the CPU in the middle
//! of a program. From the kernel sources (6.1 to 6.19): `tp_btf` programs (every tracepoint
//! capmon uses; the syscall tracepoints, faultable since 6.13, get their own
//! `preempt_disable_notrace` in `bpf_probe.h`) and kprobe/kretprobe programs run with
//! preemption disabled, on `PREEMPT_RT` too (`preempt_disable_notrace` has no RT variant).
//! fentry/fexit programs run under `migrate_disable()` only (`__bpf_prog_enter_recur`): on a
//! kernel that preempts kernel code (`PREEMPT_RT`, or full preemption) another task can run
//! between two instructions of one, and the same program re-entered on that CPU is skipped
//! (counted in the program's `recursion_misses`). So there the kprobe mode is preferred.

/// The preemption model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preemption {
    /// No forced preemption of kernel code (`none` or `voluntary`): a BPF program is never
    /// interrupted by another task.
    Voluntary,
    /// Full or lazy preemption (`CONFIG_PREEMPT`, `CONFIG_PREEMPT_LAZY`, or `preempt=full` /
    /// `preempt=lazy` with `PREEMPT_DYNAMIC`): kernel code is preempted (lazily: at the next
    /// tick at the latest), BPF trampolines included.
    Full,
    /// `PREEMPT_RT`.
    Realtime,
}

/// What the running kernel says about its preemption, as read from its files.
#[derive(Debug, Default)]
pub struct Evidence {
    /// `/sys/kernel/realtime`.
    pub realtime: Option<String>,
    /// `/sys/kernel/debug/sched/preempt` (debugfs: e.g. `none (voluntary) full`).
    pub debugfs: Option<String>,
    /// `/proc/cmdline`.
    pub cmdline: Option<String>,
    /// `/boot/config-<release>`.
    pub config: Option<String>,
    /// `uname -v` (e.g. `#1 SMP PREEMPT_DYNAMIC Debian 6.1.158-1`).
    pub version: Option<String>,
}

impl Evidence {
    /// Reads the running kernel's files (each may be missing).
    pub fn read() -> Evidence {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        let uname = nix::sys::utsname::uname().ok();
        let release = uname
            .as_ref()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        Evidence {
            realtime: read("/sys/kernel/realtime"),
            debugfs: read("/sys/kernel/debug/sched/preempt"),
            cmdline: read("/proc/cmdline"),
            config: read(&format!("/boot/config-{release}")),
            version: uname.map(|u| u.version().to_string_lossy().into_owned()),
        }
    }

    /// The model, from the most direct evidence there is; `Voluntary` when nothing says more.
    pub fn model(&self) -> Preemption {
        if self.realtime.as_deref().is_some_and(|v| v.trim() == "1") {
            return Preemption::Realtime;
        }
        // debugfs shows the current dynamic model in parentheses.
        if let Some(d) = &self.debugfs {
            if d.contains("(full)") || d.contains("(lazy)") {
                return Preemption::Full;
            }
            if d.contains("(none)") || d.contains("(voluntary)") {
                return Preemption::Voluntary;
            }
        }
        if let Some(word) = self.cmdline.as_deref().and_then(|c| {
            c.split_whitespace()
                .filter_map(|w| w.strip_prefix("preempt="))
                .next_back()
        }) {
            return match word {
                "full" | "lazy" => Preemption::Full,
                _ => Preemption::Voluntary,
            };
        }
        if let Some(c) = &self.config {
            if c.lines().any(|l| l == "CONFIG_PREEMPT_RT=y") {
                return Preemption::Realtime;
            }
            if c.lines()
                .any(|l| l == "CONFIG_PREEMPT=y" || l == "CONFIG_PREEMPT_LAZY=y")
            {
                return Preemption::Full;
            }
            if c.lines()
                .any(|l| l == "CONFIG_PREEMPT_VOLUNTARY=y" || l == "CONFIG_PREEMPT_NONE=y")
            {
                return Preemption::Voluntary;
            }
        }
        match &self.version {
            Some(v) if v.contains("PREEMPT_RT") => Preemption::Realtime,
            Some(v) if v.split_whitespace().any(|w| w == "PREEMPT") => Preemption::Full,
            _ => Preemption::Voluntary,
        }
    }
}

impl Preemption {
    /// The running kernel's model.
    pub fn of_running_kernel() -> Preemption {
        Evidence::read().model()
    }

    /// Whether a fexit program can be interrupted by another task on its CPU.
    pub fn preempts_fexit(self) -> bool {
        self != Preemption::Voluntary
    }

    /// `voluntary`, `full` or `PREEMPT_RT`.
    pub fn name(self) -> &'static str {
        match self {
            Preemption::Voluntary => "voluntary",
            Preemption::Full => "full",
            Preemption::Realtime => "PREEMPT_RT",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(f: impl FnOnce(&mut Evidence)) -> Preemption {
        let mut e = Evidence::default();
        f(&mut e);
        e.model()
    }

    #[test]
    fn the_most_direct_evidence_wins() {
        assert_eq!(ev(|_| {}), Preemption::Voluntary);
        assert_eq!(
            ev(|e| e.realtime = Some("1\n".into())),
            Preemption::Realtime
        );
        assert_eq!(
            ev(|e| e.realtime = Some("0\n".into())),
            Preemption::Voluntary
        );
        // Debian 6.1: PREEMPT_DYNAMIC, voluntary by default.
        let debian = "#1 SMP PREEMPT_DYNAMIC Debian 6.1.158-1 (2025-11-09)";
        assert_eq!(
            ev(|e| e.version = Some(debian.into())),
            Preemption::Voluntary
        );
        assert_eq!(
            ev(|e| {
                e.version = Some(debian.into());
                e.cmdline = Some("root=/dev/sda1 preempt=full quiet".into());
            }),
            Preemption::Full
        );
        assert_eq!(
            ev(|e| {
                e.cmdline = Some("preempt=full".into());
                e.debugfs = Some("none (voluntary) full lazy\n".into());
            }),
            Preemption::Voluntary,
            "debugfs shows the model in effect"
        );
        assert_eq!(
            ev(|e| e.debugfs = Some("none voluntary (full)\n".into())),
            Preemption::Full
        );
        // Lazy preemption still preempts kernel code, at the next tick at the latest.
        assert_eq!(
            ev(|e| e.debugfs = Some("none voluntary full (lazy)\n".into())),
            Preemption::Full
        );
        assert_eq!(
            ev(|e| e.cmdline = Some("preempt=lazy".into())),
            Preemption::Full
        );
        assert_eq!(
            ev(|e| e.config = Some("CONFIG_PREEMPT_BUILD=y\nCONFIG_PREEMPT=y\n".into())),
            Preemption::Full
        );
        assert_eq!(
            ev(|e| e.version = Some("#1 SMP PREEMPT_RT Debian 6.12.57-1".into())),
            Preemption::Realtime
        );
        assert_eq!(
            ev(|e| e.version = Some("#1 SMP PREEMPT Sat Jan 1".into())),
            Preemption::Full
        );
        assert!(!Preemption::Voluntary.preempts_fexit());
        assert!(Preemption::Realtime.preempts_fexit() && Preemption::Full.preempts_fexit());
    }
}

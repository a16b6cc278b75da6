//! `capmon check`: what this kernel supports, which probe mode capmon will use and why, and
//! whether capmon can run here (exit code 0 only then).

use std::process::ExitCode;

use aya::Btf;

use crate::{
    containers::cgroup,
    kernel::{
        loader::{
            Probes, missing_caps, perf_event_paranoid, perf_events_restricted, requested_mode,
        },
        probe_table::{ProbeMode, has_tracepoint, kprobes_available},
    },
};

/// One line of the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// What was checked.
    pub name: &'static str,
    /// Whether it is fine.
    pub ok: bool,
    /// Whether capmon cannot run without it.
    pub required: bool,
    /// What was found, and what to do when it is not fine.
    pub detail: String,
}

/// The outcome.
#[derive(Debug, Clone)]
pub struct Check {
    /// Each line.
    pub items: Vec<Item>,
    /// The probe mode that will be used, if any.
    pub mode: Option<ProbeMode>,
    /// Why that mode (confirmed by attaching, or only expected when nothing was loaded).
    pub why: String,
}

impl Check {
    /// capmon can run here.
    pub fn can_run(&self) -> bool {
        self.mode.is_some() && self.items.iter().all(|i| i.ok || !i.required)
    }

    /// The check as text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for i in &self.items {
            let mark = if i.ok {
                "ok  "
            } else if i.required {
                "FAIL"
            } else {
                "--  "
            };
            out.push_str(&format!("[{mark}] {:<24} {}\n", i.name, i.detail));
        }
        match self.mode {
            Some(mode) => {
                out.push_str(&format!(
                    "probe mode: {} ({}), attaching:\n",
                    mode.name(),
                    self.why
                ));
                for p in mode.programs() {
                    out.push_str(&format!(
                        "  {:<20} {:<26} minimum kernel {}\n",
                        p.program,
                        p.hook.to_string(),
                        p.min_kernel.replace('`', "")
                    ));
                }
            }
            None => out.push_str(
                "probe mode: none (capmon cannot observe capability checks on this kernel)\n",
            ),
        }
        out.push_str(if self.can_run() {
            "result: capmon can run here\n"
        } else {
            "result: capmon cannot run here\n"
        });
        out
    }
}

fn item(name: &'static str, ok: bool, required: bool, detail: impl Into<String>) -> Item {
    Item {
        name,
        ok,
        required,
        detail: detail.into(),
    }
}

/// `capmon check`: prints the check; exit 0 only when capmon can run here.
pub fn main() -> ExitCode {
    let c = run(true);
    print!("{}", c.render());
    if c.can_run() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Runs every check. With `try_load`, also loads and attaches the probes (needs root).
pub fn run(try_load: bool) -> Check {
    let mut items = vec![kernel_release(), preemption()];
    let btf = Btf::from_sys_fs();
    items.push(match &btf {
        Ok(_) => item("BTF", true, true, "/sys/kernel/btf/vmlinux"),
        Err(e) => item(
            "BTF",
            false,
            true,
            format!("cannot read /sys/kernel/btf/vmlinux: {e}; needs CONFIG_DEBUG_INFO_BTF=y"),
        ),
    });
    items.extend(tracepoints(btf.as_ref().ok()));
    items.push(kprobes());
    if kprobes_available() {
        items.push(perf_events());
    }
    items.push(match cgroup::find_cgroup2_mount() {
        Ok(p) => item("cgroup2 mount", true, true, p.display().to_string()),
        Err(e) => item("cgroup2 mount", false, true, e.to_string()),
    });
    let privileges = privileges();
    let can_load = privileges.ok;
    items.push(privileges);
    let requested = match requested_mode() {
        Ok(r) => r,
        Err(e) => {
            items.push(item("CAPMON_PROBE_MODE", false, true, e.to_string()));
            return Check {
                items,
                mode: None,
                why: String::new(),
            };
        }
    };
    // Without loading, the best candidate is only expected: whether the kernel allows
    // trampolines is known by trying.
    let expected = requested.or_else(|| {
        btf.as_ref()
            .ok()
            .and_then(|b| ProbeMode::candidates(b).first().copied())
    });
    let (mode, why) = if try_load && can_load && btf.is_ok() {
        match Probes::attach_mode(requested) {
            Ok(p) => {
                items.push(item(
                    "load and attach",
                    true,
                    true,
                    "all probes loaded and attached, then detached",
                ));
                let low = crate::kernel::inlined::probe_low_mmap(&p);
                items.push(item(
                    "low mmap checks",
                    low.counted(),
                    false,
                    low.describe(),
                ));
                (Some(p.mode()), p.why().to_owned())
            }
            Err(e) => {
                items.push(item("load and attach", false, true, e.to_string()));
                (None, String::new())
            }
        }
    } else {
        (
            expected,
            match requested {
                Some(_) => "asked for; not loaded".to_owned(),
                None => "expected; not loaded (needs root)".to_owned(),
            },
        )
    };
    Check { items, mode, why }
}

fn kernel_release() -> Item {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|e| format!("unknown ({e})"));
    item("kernel", true, false, release)
}

fn preemption() -> Item {
    use crate::kernel::preemption::Preemption;
    let model = Preemption::of_running_kernel();
    item(
        "preemption",
        true,
        false,
        match model {
            Preemption::Voluntary => {
                "voluntary: no probe program is interrupted by another task".to_owned()
            }
            m => format!(
                "{}: tracepoint and kprobe programs still run with preemption disabled; fexit \
                 programs do not, so capmon uses the tracepoint or kprobe mode here and refuses fexit",
                m.name()
            ),
        },
    )
}

/// The BTF tracepoints capmon hooks: `cap_capable` (optional: kprobes stand in) and the
/// syscall tracepoints (required).
fn tracepoints(btf: Option<&Btf>) -> Vec<Item> {
    let has = |name: &str| btf.is_some_and(|b| has_tracepoint(b, name));
    let cap_tp = has("cap_capable");
    let mut items = vec![item(
        "tracepoint cap_capable",
        cap_tp,
        false,
        if cap_tp {
            "present (Linux >= 6.14)"
        } else {
            "absent (added in Linux 6.14)"
        },
    )];
    for (name, hook) in [
        ("tracepoint sys_enter", "sys_enter"),
        ("tracepoint sys_exit", "sys_exit"),
    ] {
        let ok = has(hook);
        items.push(item(
            name,
            ok,
            true,
            if ok {
                "present"
            } else {
                "absent: syscalls cannot be observed"
            },
        ));
    }
    items
}

fn kprobes() -> Item {
    let kprobes = kprobes_available();
    item(
        "kprobes",
        kprobes,
        false,
        if kprobes {
            "available"
        } else {
            "not available (CONFIG_KPROBES unset); only needed without the cap_capable tracepoint where the kernel allows no BPF trampolines (fexit)"
        },
    )
}

/// Whether `kernel.perf_event_paranoid` lets this process attach kprobes (they attach through
/// perf events; Debian's level 3 asks `CAP_SYS_ADMIN` for them).
fn perf_events() -> Item {
    let level = perf_event_paranoid();
    match perf_events_restricted() {
        None => item(
            "perf events",
            true,
            false,
            match level {
                Some(l) => format!("kernel.perf_event_paranoid {l}: kprobes can attach"),
                None => "kernel.perf_event_paranoid unreadable".to_owned(),
            },
        ),
        Some(l) => item(
            "perf events",
            false,
            false,
            format!(
                "kernel.perf_event_paranoid {l} and no CAP_SYS_ADMIN: where the kernel restricts \
                 level 3 (Debian) the kprobe mode cannot attach; `sysctl \
                 kernel.perf_event_paranoid=2` allows it with CAP_PERFMON (tp_btf and fexit \
                 modes need neither)"
            ),
        ),
    }
}

fn privileges() -> Item {
    let root = nix::unistd::geteuid().is_root();
    let missing = missing_caps();
    if missing.is_empty() {
        item(
            "privileges",
            true,
            true,
            format!(
                "{} with CAP_BPF, CAP_PERFMON, CAP_SYSLOG",
                if root { "root" } else { "not root" }
            ),
        )
    } else {
        item(
            "privileges",
            false,
            true,
            format!("missing {}: run as root", missing.join(", ")),
        )
    }
}

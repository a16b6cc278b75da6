//! `capmon check`: what this kernel supports, which probe mode capmon will use and why, and
//! whether capmon can run here (exit code 0 only then).

use aya::Btf;
use aya_obj::btf::BtfKind;

use crate::{containers::cgroup, probes::Probes};

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
    pub mode: Option<&'static str>,
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
        out.push_str(&format!(
            "probe mode: {}\n",
            self.mode
                .unwrap_or("none (capmon cannot observe capability checks on this kernel)")
        ));
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

/// Runs every check. With `try_load`, also loads and attaches the probes (needs root).
pub fn run(try_load: bool) -> Check {
    let mut items = Vec::new();
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|e| format!("unknown ({e})"));
    items.push(item("kernel", true, false, release));
    let rt = std::fs::read_to_string("/sys/kernel/realtime").is_ok_and(|v| v.trim() == "1");
    items.push(item(
        "preemption",
        !rt,
        false,
        if rt {
            "PREEMPT_RT: tracepoint programs may be preempted, and capmon's per-CPU syscall state \
             can then (rarely) mix two tasks' syscalls"
        } else {
            "not PREEMPT_RT: the probes run with preemption disabled"
        },
    ));

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
    let has_hook = |name: &str| {
        btf.as_ref()
            .map(|b| {
                b.id_by_type_name_kind(&format!("btf_trace_{name}"), BtfKind::Typedef)
                    .is_ok()
            })
            .unwrap_or(false)
    };
    let cap_tp = has_hook("cap_capable");
    items.push(item(
        "tracepoint cap_capable",
        cap_tp,
        false,
        if cap_tp {
            "present (Linux >= 6.14)"
        } else {
            "absent (added in Linux 6.14)"
        },
    ));
    for hook in ["sys_enter", "sys_exit"] {
        let ok = has_hook(hook);
        items.push(item(
            if hook == "sys_enter" {
                "tracepoint sys_enter"
            } else {
                "tracepoint sys_exit"
            },
            ok,
            true,
            if ok {
                "present"
            } else {
                "absent: syscalls cannot be observed"
            },
        ));
    }
    let kprobes = crate::probes::kprobes_available();
    items.push(item(
        "kprobes",
        kprobes,
        false,
        if kprobes {
            "available"
        } else {
            "not available (CONFIG_KPROBES unset); only needed without the cap_capable tracepoint"
        },
    ));
    items.push(match cgroup::find_cgroup2_mount() {
        Ok(p) => item("cgroup2 mount", true, true, p.display().to_string()),
        Err(e) => item("cgroup2 mount", false, true, e.to_string()),
    });
    let root = nix::unistd::geteuid().is_root();
    let missing = crate::probes::missing_caps();
    items.push(if missing.is_empty() {
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
    });
    let mode = btf
        .as_ref()
        .ok()
        .and_then(crate::probes::ProbeMode::detect)
        .map(|m| m.describe());
    if try_load && missing.is_empty() && mode.is_some() {
        items.push(match Probes::attach() {
            Ok(_) => item(
                "load and attach",
                true,
                true,
                "all probes loaded and attached, then detached",
            ),
            Err(e) => item("load and attach", false, true, e.to_string()),
        });
    }
    Check { items, mode }
}

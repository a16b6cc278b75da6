//! The advice for one workload in every format users paste into their deployments: `docker
//! run` flags, compose, a Kubernetes `securityContext`, an AppArmor capability block, and
//! seccomp profiles as Docker JSON, OCI `linux.seccomp` and a Security Profiles Operator
//! resource.

use serde_json::{Value, json};

use super::{Analysis, Format, RecommendError};
use crate::{
    names::Arch,
    seccomp::{ArchList, KernelVersion, Profile, Target},
};

/// `CAP_NET_RAW` -> `NET_RAW` (Docker, compose and Kubernetes spell them so).
fn short(cap: &str) -> &str {
    cap.strip_prefix("CAP_").unwrap_or(cap)
}

/// A name usable as a file name, compose service and Kubernetes object name (DNS-1123 label).
pub fn object_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    let out = out.trim_matches('-');
    let out: String = out.chars().take(63).collect();
    let out = out.trim_end_matches('-').to_owned();
    if out.is_empty() {
        "workload".into()
    } else {
        out
    }
}

/// Everything needed to render advice for one workload.
#[derive(Clone, Debug)]
pub struct Advice<'a> {
    /// Container name, or the recorded command.
    pub name: &'a str,
    /// The analysis.
    pub analysis: &'a Analysis,
    /// The generated profile, or why there is none.
    pub profile: Result<&'a Profile, &'a str>,
    /// The architecture the profile is for (caps are the recommended set).
    pub arch: Arch,
    /// The kernel the profile is resolved for (Docker's `minKernel` conditions).
    pub kernel: KernelVersion,
}

impl<'a> Advice<'a> {
    fn seccomp_file(&self) -> String {
        format!("seccomp-{}.json", object_name(self.name))
    }

    fn profile(&self) -> Result<&'a Profile, RecommendError> {
        self.profile.map_err(|reason| RecommendError::NoProfile {
            name: self.name.to_owned(),
            reason: reason.to_owned(),
        })
    }

    /// The recommended capabilities as Docker, compose and Kubernetes spell them (`NET_RAW`).
    fn adds(&self) -> Vec<&'a str> {
        self.analysis.recommended.iter().map(|c| short(c)).collect()
    }

    /// A comment line saying how sure the advice is of each capability it adds (`# added
    /// capabilities: CHOWN (proven), NET_RAW (denied)`), and which were proven not needed.
    fn basis_comment(&self) -> String {
        let a = self.analysis;
        let marked: Vec<String> = a
            .recommended
            .iter()
            .map(|c| match a.basis.get(c) {
                Some(b) => format!("{} ({})", short(c), b.as_str()),
                None => short(c).to_owned(),
            })
            .collect();
        let mut out = if marked.is_empty() {
            "# added capabilities: none\n".to_owned()
        } else {
            format!("# added capabilities: {}\n", marked.join(", "))
        };
        if !a.not_needed.is_empty() {
            let names: Vec<&str> = a.not_needed.iter().map(|c| short(c)).collect();
            out.push_str(&format!(
                "# proven not needed by capmon record --verify: {}\n",
                names.join(", ")
            ));
        }
        out
    }

    /// The advice in `format`.
    pub fn render(&self, format: Format) -> Result<String, RecommendError> {
        match format {
            Format::Docker => Ok(self.docker()),
            Format::Compose => self.compose(),
            Format::Kubernetes => self.kubernetes(),
            Format::Apparmor => Ok(self.apparmor()),
            Format::Seccomp => Ok(self.profile()?.to_json_pretty() + "\n"),
            Format::Oci => Ok(self.oci()?.to_json_pretty() + "\n"),
            Format::Spo => self.spo(),
        }
    }

    /// `docker run` flags, after a comment saying where the seccomp profile comes from.
    fn docker(&self) -> String {
        let mut flags = vec!["--cap-drop ALL".to_owned()];
        flags.extend(self.adds().iter().map(|c| format!("--cap-add {c}")));
        if self.analysis.no_new_privileges {
            flags.push("--security-opt no-new-privileges".into());
        }
        let note = match self.profile {
            Ok(_) => {
                flags.push(format!("--security-opt seccomp={}", self.seccomp_file()));
                format!(
                    "# seccomp profile: `--format seccomp` output saved as {}",
                    self.seccomp_file()
                )
            }
            Err(why) => format!("# no seccomp profile: {why}"),
        };
        format!(
            "# capmon: least privilege for {}\n{}{note}\n{}\n",
            self.name,
            self.basis_comment(),
            flags.join(" ")
        )
    }

    /// A compose file with one service.
    fn compose(&self) -> Result<String, RecommendError> {
        let adds = self.adds();
        let mut security_opt = Vec::new();
        if self.analysis.no_new_privileges {
            security_opt.push("no-new-privileges:true".to_owned());
        }
        if self.profile.is_ok() {
            security_opt.push(format!("seccomp={}", self.seccomp_file()));
        }
        let mut service = json!({"cap_drop": ["ALL"]});
        if !adds.is_empty() {
            service["cap_add"] = json!(adds);
        }
        if !security_opt.is_empty() {
            service["security_opt"] = json!(security_opt);
        }
        let doc = json!({"services": {object_name(self.name): service}});
        Ok(format!(
            "# capmon: least privilege for {}\n{}{}",
            self.name,
            self.basis_comment(),
            serde_norway::to_string(&doc)?
        ))
    }

    /// A container's `securityContext`.
    fn kubernetes(&self) -> Result<String, RecommendError> {
        let adds = self.adds();
        let mut caps = json!({"drop": ["ALL"]});
        if !adds.is_empty() {
            caps["add"] = json!(adds);
        }
        let mut ctx = json!({"privileged": false, "capabilities": caps});
        // Kubernetes rejects allowPrivilegeEscalation: false with CAP_SYS_ADMIN.
        if self.analysis.no_new_privileges && !adds.contains(&"SYS_ADMIN") {
            ctx["allowPrivilegeEscalation"] = false.into();
        }
        if self.profile.is_ok() {
            ctx["seccompProfile"] = json!({
                "type": "Localhost",
                "localhostProfile": format!("capmon/{}", self.seccomp_file()),
            });
        }
        Ok(format!(
            "# capmon: least privilege for {} (a container's securityContext)\n{}{}",
            self.name,
            self.basis_comment(),
            serde_norway::to_string(&json!({"securityContext": ctx}))?
        ))
    }

    /// Capability rules for the inside of an AppArmor profile: allow the recommended set,
    /// deny the unused.
    fn apparmor(&self) -> String {
        let a = self.analysis;
        let mut out = format!(
            "  # capmon: capability rules for {} (inside the container's AppArmor profile)\n",
            self.name
        );
        for cap in &a.recommended {
            let basis = a.basis.get(cap).map_or("", |b| b.as_str());
            out.push_str(&format!(
                "  capability {},  # {basis}\n",
                short(cap).to_lowercase()
            ));
        }
        for cap in &a.unused {
            out.push_str(&format!(
                "  deny capability {},\n",
                short(cap).to_lowercase()
            ));
        }
        out
    }

    /// A Security Profiles Operator `SeccompProfile` resource holding the OCI form.
    fn spo(&self) -> Result<String, RecommendError> {
        let oci = self.oci()?;
        let mut spec: Value = serde_json::to_value(&oci).unwrap_or_default();
        if let Some(obj) = spec.as_object_mut() {
            // The resource has no defaultErrnoRet: runc's default errno is EPERM.
            obj.remove("defaultErrnoRet");
        }
        let doc = json!({
            "apiVersion": "security-profiles-operator.x-k8s.io/v1beta1",
            "kind": "SeccompProfile",
            "metadata": {"name": format!("capmon-{}", object_name(self.name))},
            "spec": spec,
        });
        Ok(format!(
            "# capmon: seccomp profile for {}\n{}",
            self.name,
            serde_norway::to_string(&doc)?
        ))
    }

    /// The generated profile as the runtime takes it (`linux.seccomp` of the OCI spec), for
    /// the advice's kernel and the recommended capabilities, for every architecture the
    /// profile lists ([`Profile::resolve_every_arch`]; the advice's own architecture alone
    /// unless [`Advice::render_for`] asked for others).
    pub fn oci(&self) -> Result<Profile, RecommendError> {
        let target = Target {
            arch: self.arch,
            caps: self.analysis.recommended.iter().cloned().collect(),
            kernel: self.kernel,
        };
        Ok(self.profile()?.resolve_every_arch(&target))
    }

    /// The advice in `format` with its seccomp profile (the seccomp, OCI and SPO formats) for
    /// `arches`: the recorded syscalls translated for each ([`Profile::for_arches`]).
    /// [`ArchList::native`] of the advice's architecture gives [`Advice::render`]'s text.
    pub fn render_for(&self, format: Format, arches: &ArchList) -> Result<String, RecommendError> {
        let translated = self.profile.map(|p| p.for_arches(self.arch, arches));
        Advice {
            profile: translated.as_ref().map_err(|why| *why),
            ..self.clone()
        }
        .render(format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::{Analysis, Basis};

    fn analysis(recommended: &[&str], unused: &[&str]) -> Analysis {
        Analysis {
            recommended: recommended.iter().map(|s| s.to_string()).collect(),
            basis: recommended
                .iter()
                .map(|s| (s.to_string(), Basis::Observed))
                .collect(),
            unused: unused.iter().map(|s| s.to_string()).collect(),
            no_new_privileges: true,
            ..Default::default()
        }
    }

    fn yaml(text: &str) -> Value {
        serde_norway::from_str(text).unwrap_or_else(|e| panic!("invalid YAML: {e}\n{text}"))
    }

    #[test]
    fn every_format_for_a_ping_workload() {
        let mut a = analysis(
            &["CAP_CHOWN", "CAP_NET_RAW"],
            &["CAP_SYS_ADMIN", "CAP_KILL"],
        );
        a.basis.insert("CAP_CHOWN".into(), Basis::Proven);
        a.basis.insert("CAP_NET_RAW".into(), Basis::Denied);
        a.not_needed = vec!["CAP_FSETID".into()];
        let profile = Profile::allow_only(Arch::X86_64, &["read", "socket", "execve"]);
        let advice = Advice {
            name: "My App_1",
            analysis: &a,
            profile: Ok(&profile),
            arch: Arch::X86_64,
            kernel: KernelVersion(6, 18),
        };
        let docker = advice.render(Format::Docker).expect("docker");
        // Each capability says how sure the advice is of it, in every capability format.
        let marks = "# added capabilities: CHOWN (proven), NET_RAW (denied)\n\
                     # proven not needed by capmon record --verify: FSETID\n";
        for format in [Format::Docker, Format::Compose, Format::Kubernetes] {
            let text = advice.render(format).expect("renders");
            assert!(text.contains(marks), "{format}: {text}");
        }
        assert_eq!(
            docker.lines().last(),
            Some(
                "--cap-drop ALL --cap-add CHOWN --cap-add NET_RAW --security-opt no-new-privileges \
                 --security-opt seccomp=seccomp-my-app-1.json"
            )
        );
        let compose = yaml(&advice.render(Format::Compose).expect("compose"));
        assert_eq!(
            compose,
            json!({"services": {"my-app-1": {
                "cap_drop": ["ALL"],
                "cap_add": ["CHOWN", "NET_RAW"],
                "security_opt": ["no-new-privileges:true", "seccomp=seccomp-my-app-1.json"],
            }}})
        );
        let k8s = yaml(&advice.render(Format::Kubernetes).expect("kubernetes"));
        assert_eq!(
            k8s,
            json!({"securityContext": {
                "privileged": false,
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"], "add": ["CHOWN", "NET_RAW"]},
                "seccompProfile": {"type": "Localhost", "localhostProfile": "capmon/seccomp-my-app-1.json"},
            }})
        );
        let apparmor = advice.render(Format::Apparmor).expect("apparmor");
        let rules: Vec<&str> = apparmor.lines().skip(1).map(str::trim).collect();
        assert_eq!(
            rules,
            vec![
                "capability chown,  # proven",
                "capability net_raw,  # denied",
                "deny capability sys_admin,",
                "deny capability kill,"
            ]
        );
        let seccomp: Value =
            serde_json::from_str(&advice.render(Format::Seccomp).expect("seccomp")).expect("json");
        assert_eq!(
            seccomp["syscalls"][0]["names"],
            json!(["execve", "read", "socket"])
        );
        let oci: Value =
            serde_json::from_str(&advice.render(Format::Oci).expect("oci")).expect("json");
        assert_eq!(oci["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(oci["architectures"], json!(["SCMP_ARCH_X86_64"]));
        assert_eq!(oci["syscalls"][0]["action"], "SCMP_ACT_ALLOW");
        let spo = yaml(&advice.render(Format::Spo).expect("spo"));
        assert_eq!(
            spo["apiVersion"],
            "security-profiles-operator.x-k8s.io/v1beta1"
        );
        assert_eq!(spo["kind"], "SeccompProfile");
        assert_eq!(spo["metadata"]["name"], "capmon-my-app-1");
        assert_eq!(spo["spec"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(
            spo["spec"]["syscalls"][0]["names"],
            json!(["execve", "read", "socket"])
        );
        assert!(spo["spec"].get("defaultErrnoRet").is_none());
    }

    #[test]
    fn no_capabilities_and_no_profile() {
        let a = analysis(&[], &["CAP_CHOWN"]);
        let advice = Advice {
            name: "ls",
            analysis: &a,
            profile: Err("capmon did not see the workload start"),
            arch: Arch::X86_64,
            kernel: KernelVersion(6, 18),
        };
        let docker = advice.render(Format::Docker).expect("docker");
        assert!(
            docker.contains("# no seccomp profile: capmon did not see"),
            "{docker}"
        );
        assert_eq!(
            docker.lines().last(),
            Some("--cap-drop ALL --security-opt no-new-privileges")
        );
        let compose = yaml(&advice.render(Format::Compose).expect("compose"));
        assert_eq!(
            compose,
            json!({"services": {"ls": {"cap_drop": ["ALL"], "security_opt": ["no-new-privileges:true"]}}})
        );
        for format in [Format::Seccomp, Format::Oci, Format::Spo] {
            let err = advice.render(format).expect_err("no profile");
            assert_eq!(
                err.to_string(),
                "no seccomp profile for ls: capmon did not see the workload start"
            );
        }
    }

    #[test]
    fn seccomp_formats_for_every_architecture_carry_the_same_arches_and_names() {
        let a = analysis(&[], &[]);
        let profile = Profile::allow_only(Arch::X86_64, &["open", "read", "fstat"]);
        let advice = Advice {
            name: "app",
            analysis: &a,
            profile: Ok(&profile),
            arch: Arch::X86_64,
            kernel: KernelVersion(6, 18),
        };
        // The native architecture: today's text, byte for byte.
        let native = ArchList::native(Arch::X86_64);
        for format in Format::ALL {
            assert_eq!(
                advice.render_for(format, &native).expect("renders"),
                advice.render(format).expect("renders"),
                "{format}"
            );
        }
        let all = ArchList::all();
        let docker: Value =
            serde_json::from_str(&advice.render_for(Format::Seccomp, &all).expect("seccomp"))
                .expect("json");
        let every: Vec<&str> = crate::abi::Abi::ALL.iter().map(|a| a.scmp_name()).collect();
        let mapped: Vec<&str> = docker["archMap"]
            .as_array()
            .expect("archMap")
            .iter()
            .flat_map(|m| {
                std::iter::once(&m["architecture"])
                    .chain(m["subArchitectures"].as_array().into_iter().flatten())
            })
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(mapped, every);
        let mut names: Vec<&str> = docker["syscalls"]
            .as_array()
            .expect("rules")
            .iter()
            .flat_map(|r| r["names"].as_array().expect("names"))
            .filter_map(Value::as_str)
            .collect();
        names.sort();
        assert_eq!(names, ["fstat", "fstat64", "open", "openat", "read"]);
        let oci: Value = serde_json::from_str(&advice.render_for(Format::Oci, &all).expect("oci"))
            .expect("json");
        assert_eq!(oci["architectures"], json!(every));
        assert_eq!(oci["syscalls"][0]["names"], json!(names));
        let spo = yaml(&advice.render_for(Format::Spo, &all).expect("spo"));
        assert_eq!(spo["spec"]["architectures"], json!(every));
        assert_eq!(spo["spec"]["syscalls"][0]["names"], json!(names));
        // Without a profile, the same refusal for any list.
        let none = Advice {
            profile: Err("capmon did not see the workload start"),
            ..advice
        };
        assert!(none.render_for(Format::Oci, &all).is_err());
    }

    #[test]
    fn sys_admin_keeps_kubernetes_valid() {
        let a = analysis(&["CAP_SYS_ADMIN"], &[]);
        let profile = Profile::allow_only(Arch::X86_64, &["mount"]);
        let advice = Advice {
            name: "fuse",
            analysis: &a,
            profile: Ok(&profile),
            arch: Arch::X86_64,
            kernel: KernelVersion(6, 18),
        };
        let k8s = yaml(&advice.render(Format::Kubernetes).expect("kubernetes"));
        // Kubernetes rejects allowPrivilegeEscalation: false together with CAP_SYS_ADMIN.
        assert!(
            k8s["securityContext"]
                .get("allowPrivilegeEscalation")
                .is_none(),
            "{k8s}"
        );
        assert_eq!(
            k8s["securityContext"]["capabilities"]["add"],
            json!(["SYS_ADMIN"])
        );
    }

    #[test]
    fn object_names() {
        assert_eq!(object_name("/usr/bin/My App"), "usr-bin-my-app");
        assert_eq!(object_name("---"), "workload");
        assert_eq!(object_name(&"a".repeat(80)).len(), 63);
    }
}

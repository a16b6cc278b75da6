//! Reading a profile: [`Profile::from_json`] parses, [`Profile::validate`] checks every value
//! capmon and Docker interpret and names the field that is wrong (`syscalls[3].names[2]`).

use serde_json::Value;

use super::{
    ACTIONS, ArgFilter, Filter, GO_ARCHES, KernelVersion, OPERATORS, Profile, SCMP_ARCHES,
    SeccompError, SyscallRule, invalid,
};

impl Profile {
    /// Parses a profile without checking its values (see [`Profile::parse`]).
    pub fn from_json(text: &str) -> Result<Self, SeccompError> {
        serde_json::from_str(text).map_err(SeccompError::Parse)
    }

    /// Parses and validates a profile: the error names the field (`syscalls[3].names[2]`) or
    /// the line and column.
    pub fn parse(text: &str) -> Result<Self, SeccompError> {
        let profile = Profile::from_json(text)?;
        profile.validate()?;
        Ok(profile)
    }

    /// Checks every value capmon (and Docker) interprets: actions, operators, architectures,
    /// capability and syscall names, argument indexes, kernel versions.
    pub fn validate(&self) -> Result<(), SeccompError> {
        check_one_of(
            "defaultAction".into(),
            &self.default_action,
            ACTIONS,
            "action",
        )?;
        self.validate_architectures()?;
        for (i, rule) in self.syscalls.iter().enumerate() {
            check_rule(&format!("syscalls[{i}]"), rule)?;
        }
        Ok(())
    }

    /// `architectures` or `archMap` (not both), with names libseccomp knows.
    fn validate_architectures(&self) -> Result<(), SeccompError> {
        let has_arches = self.architectures.as_ref().is_some_and(|a| !a.is_empty());
        let has_map = self.arch_map.as_ref().is_some_and(|a| !a.is_empty());
        if has_arches && has_map {
            return Err(invalid(
                "architectures",
                "both \"architectures\" and \"archMap\" are set; use one (Docker refuses both)",
            ));
        }
        for (i, a) in self.architectures.iter().flatten().enumerate() {
            check_one_of(
                format!("architectures[{i}]"),
                a,
                SCMP_ARCHES,
                "architecture",
            )?;
        }
        for (i, m) in self.arch_map.iter().flatten().enumerate() {
            check_one_of(
                format!("archMap[{i}].architecture"),
                &m.architecture,
                SCMP_ARCHES,
                "architecture",
            )?;
            for (j, a) in m.sub_architectures.iter().flatten().enumerate() {
                check_one_of(
                    format!("archMap[{i}].subArchitectures[{j}]"),
                    a,
                    SCMP_ARCHES,
                    "architecture",
                )?;
            }
        }
        Ok(())
    }
}

fn check_one_of(
    field: String,
    value: &str,
    known: &[&str],
    what: &str,
) -> Result<(), SeccompError> {
    if known.contains(&value) {
        Ok(())
    } else {
        Err(invalid(field, format!("unknown {what} {value:?}")))
    }
}

/// One entry of `syscalls` (`at` is its JSON path): its action, its names, its argument
/// conditions, its `includes` and `excludes`.
fn check_rule(at: &str, rule: &SyscallRule) -> Result<(), SeccompError> {
    check_one_of(format!("{at}.action"), &rule.action, ACTIONS, "action")?;
    check_names(at, rule)?;
    for (k, arg) in rule.args.iter().flatten().enumerate() {
        check_arg(&format!("{at}.args[{k}]"), arg)?;
    }
    if let Some(f) = &rule.includes {
        check_filter(&format!("{at}.includes"), f)?;
    }
    if let Some(f) = &rule.excludes {
        check_filter(&format!("{at}.excludes"), f)?;
    }
    Ok(())
}

/// `names`, or the older single `name` (never both), naming at least one known syscall.
fn check_names(at: &str, rule: &SyscallRule) -> Result<(), SeccompError> {
    match rule.extra.get("name") {
        None => {}
        Some(Value::String(_)) if rule.names.is_empty() => {}
        Some(Value::String(_)) => {
            return Err(invalid(
                format!("{at}.name"),
                "both \"name\" and \"names\" are set; use \"names\"",
            ));
        }
        Some(_) => return Err(invalid(format!("{at}.name"), "must be a string")),
    }
    if rule.all_names().is_empty() {
        return Err(invalid(format!("{at}.names"), "the rule names no syscall"));
    }
    for (j, name) in rule.names.iter().enumerate() {
        if !crate::names::syscall_known_anywhere(name) {
            return Err(invalid(
                format!("{at}.names[{j}]"),
                format!("unknown syscall {name:?} (not in the syscall table of any architecture)"),
            ));
        }
    }
    Ok(())
}

/// An argument condition (`at` is its JSON path): index 0 to 5, an operator libseccomp knows.
fn check_arg(at: &str, arg: &ArgFilter) -> Result<(), SeccompError> {
    if arg.index > 5 {
        return Err(invalid(
            format!("{at}.index"),
            format!("{} is not an argument index (0 to 5)", arg.index),
        ));
    }
    check_one_of(format!("{at}.op"), &arg.op, OPERATORS, "operator")
}

/// `includes` or `excludes` (`field` is its JSON path): capability names, Go architecture
/// names, a kernel version.
fn check_filter(field: &str, f: &Filter) -> Result<(), SeccompError> {
    for (i, cap) in f.caps.iter().flatten().enumerate() {
        if crate::names::capability_number(cap).is_none() || !cap.starts_with("CAP_") {
            return Err(invalid(
                format!("{field}.caps[{i}]"),
                format!("unknown capability {cap:?} (expected a name such as \"CAP_SYS_ADMIN\")"),
            ));
        }
    }
    for (i, arch) in f.arches.iter().flatten().enumerate() {
        check_one_of(
            format!("{field}.arches[{i}]"),
            arch,
            GO_ARCHES,
            "architecture",
        )?;
    }
    if let Some(k) = &f.min_kernel
        && KernelVersion::parse(k).is_none()
    {
        return Err(invalid(
            format!("{field}.minKernel"),
            format!("{k:?} is not a kernel version such as \"4.8\""),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{KernelVersion, Profile, Verdict, fixture, target};

    #[test]
    fn docker_default_validates_and_is_the_compiled_in_copy() {
        let p = Profile::parse(&fixture()).expect("Docker's default profile is valid");
        assert_eq!(p, Profile::docker_default());
    }

    #[test]
    fn bad_values_name_the_field() {
        let cases = [
            (
                r#"{"defaultAction": "SCMP_ACT_NOPE"}"#,
                "defaultAction: unknown action \"SCMP_ACT_NOPE\"",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_VAX"]}"#,
                "architectures[1]: unknown architecture \"SCMP_ARCH_VAX\"",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}, {"names": ["write", "frobnicate"], "action": "SCMP_ACT_ALLOW"}]}"#,
                "syscalls[1].names[1]: unknown syscall \"frobnicate\"",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["chroot"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_FLY"]}}]}"#,
                "syscalls[0].includes.caps[0]: unknown capability \"CAP_FLY\"",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["chroot"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["pdp11"]}}]}"#,
                "syscalls[0].excludes.arches[0]: unknown architecture \"pdp11\"",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
                "syscalls[0].args[0].index: 7 is not an argument index",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ALMOST"}]}]}"#,
                "syscalls[0].args[0].op: unknown operator",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": [], "action": "SCMP_ACT_ALLOW"}]}"#,
                "syscalls[0].names: the rule names no syscall",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "four"}}]}"#,
                "syscalls[0].includes.minKernel: \"four\" is not a kernel version",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"], "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": null}]}"#,
                "architectures: both \"architectures\" and \"archMap\"",
            ),
        ];
        for (text, expected) in cases {
            let err = Profile::parse(text).expect_err(text);
            assert!(
                err.to_string().contains(expected),
                "{err} does not contain {expected}"
            );
        }
        // Truncated: the position of the end.
        let text = fixture();
        let err = Profile::parse(&text[..text.len() / 2]).expect_err("truncated");
        assert!(err.to_string().contains("EOF while parsing"), "{err}");
        // The old single `name` is accepted, as Docker does.
        let p = Profile::parse(r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"name": "read", "action": "SCMP_ACT_ALLOW"}]}"#)
            .expect("name");
        assert_eq!(
            p.verdict(&target(&[], KernelVersion(6, 1)), "read"),
            Verdict::Allowed
        );
    }

    #[test]
    fn malformed_profiles_name_the_position() {
        let err = Profile::from_json("{\n  \"defaultAction\": 5\n}").expect_err("must fail");
        let msg = err.to_string();
        assert!(msg.contains("line 2"), "{msg}");
        let err = Profile::from_json("{\"syscalls\": []}").expect_err("must fail");
        assert!(err.to_string().contains("defaultAction"), "{err}");
    }
}

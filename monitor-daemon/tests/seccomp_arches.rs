//! Unit tier (no root): the seccomp profiles capmon writes for several architectures
//! (`--arch all`) name, for each architecture, only syscalls that architecture has, by
//! libseccomp's own tables: `scmp_sys_resolver` of Debian's package `seccomp` (`cargo xtask
//! setup` installs it). Without it the tests fail under CI (`CI` set) and skip elsewhere,
//! saying why.
//!
//! A name resolves on an ABI when `scmp_sys_resolver -t -a ABI NAME` prints a number of at
//! least 0 (`-t`: the number libseccomp puts in the filter; x86's socket and IPC calls go
//! through `socketcall` and `ipc`). -1 is a name libseccomp does not know at all: a syscall
//! newer than this libseccomp is accepted (libseccomp knows neither its name nor its number;
//! the names are printed), anything else fails. Below -1 is a name of another ABI.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    process::Command,
    str::FromStr,
};

use capmon_core::{
    abi::Abi,
    names::Arch,
    recommend::{Advice, Analysis, Format, RUNC_AFTER_FILTER},
    seccomp::{ArchList, KernelVersion, Profile},
};
use serde_json::Value;

mod common;

const RESOLVER: &str = "scmp_sys_resolver";

/// `scmp_sys_resolver` with a cache (each name is asked once per ABI).
#[derive(Default)]
struct Libseccomp {
    cache: HashMap<(Abi, String), String>,
    /// Names accepted because this libseccomp predates them, by ABI.
    newer: BTreeMap<Abi, BTreeSet<String>>,
}

impl Libseccomp {
    /// Whether `scmp_sys_resolver` can run here; when not, the test skips (or fails under CI)
    /// and the caller returns.
    fn available() -> bool {
        match Command::new(RESOLVER)
            .args(["-a", "x86_64", "read"])
            .output()
        {
            Ok(out) if out.status.success() => true,
            other => {
                let why = format!(
                    "{RESOLVER} cannot run ({other:?}): install Debian's package seccomp \
                     (`cargo xtask setup` does)"
                );
                if std::env::var_os("CI").is_some() {
                    panic!("{why}");
                }
                common::skip(&why);
                false
            }
        }
    }

    /// What `scmp_sys_resolver -t -a ABI WORD` prints: a number for a name, a name (or
    /// `UNKNOWN`) for a number.
    fn ask(&mut self, abi: Abi, word: &str) -> String {
        self.cache
            .entry((abi, word.to_owned()))
            .or_insert_with(|| {
                let out = Command::new(RESOLVER)
                    .args(["-t", "-a", abi.as_str(), word])
                    .output()
                    .unwrap_or_else(|e| panic!("{RESOLVER}: {e}"));
                assert!(out.status.success(), "{RESOLVER} -a {abi} {word}: {out:?}");
                String::from_utf8_lossy(&out.stdout).trim().to_owned()
            })
            .clone()
    }

    /// `Ok` when `name` is a syscall of `abi` for libseccomp (or newer than this libseccomp),
    /// else why not.
    fn check(&mut self, abi: Abi, name: &str) -> Result<(), String> {
        let answer = self.ask(abi, name);
        let nr: i64 = answer
            .parse()
            .map_err(|_| format!("{name} on {abi}: {RESOLVER} answered {answer:?}"))?;
        match nr {
            0.. => Ok(()),
            -1 => {
                // Unknown to libseccomp: fine only if its number is too (a newer syscall).
                let kernel = kernel_number(abi, name)
                    .ok_or_else(|| format!("{name} is no syscall of {abi}"))?;
                match self.ask(abi, &kernel.to_string()).as_str() {
                    "UNKNOWN" => {
                        self.newer.entry(abi).or_default().insert(name.to_owned());
                        Ok(())
                    }
                    other => Err(format!(
                        "{name} on {abi}: libseccomp calls number {kernel} {other}"
                    )),
                }
            }
            _ => Err(format!(
                "{name} is not a syscall of {abi} (libseccomp: {nr})"
            )),
        }
    }

    fn report_newer(&self) {
        for (abi, names) in &self.newer {
            println!(
                "newer than this libseccomp, not checked on {abi}: {}",
                names.iter().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
}

/// The kernel's number of `name` on `abi`, from the `syscalls` crate's tables (x32: the
/// x86_64 number with the x32 bit, as for every syscall added since x32 began).
fn kernel_number(abi: Abi, name: &str) -> Option<i64> {
    let nr = match abi {
        Abi::X86_64 => syscalls::x86_64::Sysno::from_str(name).ok()?.id(),
        Abi::X32 => syscalls::x86_64::Sysno::from_str(name).ok()?.id() + 0x4000_0000,
        Abi::X86 => syscalls::x86::Sysno::from_str(name).ok()?.id(),
        Abi::Aarch64 => syscalls::aarch64::Sysno::from_str(name).ok()?.id(),
        Abi::Arm => syscalls::arm::Sysno::from_str(name).ok()?.id(),
    };
    Some(i64::from(nr))
}

/// `SCMP_ARCH_X86` / `x86` -> the ABI.
fn abi(word: &str) -> Abi {
    Abi::parse(word).unwrap_or_else(|| panic!("not an ABI capmon writes: {word}"))
}

/// Per rule of a Docker-format profile: its names and the ABIs they are listed for. A rule
/// without `includes.arches` is listed for every ABI of the profile; a 64-bit architecture
/// named only so that its hosts apply the rule to their 32-bit processes (the rule's comment
/// says `amd64 is listed because ...`) is not a listing of that ABI.
fn listings(profile: &Value) -> Vec<(Vec<String>, Vec<Abi>)> {
    let every: Vec<Abi> = profile["archMap"]
        .as_array()
        .expect("archMap")
        .iter()
        .flat_map(|m| {
            std::iter::once(&m["architecture"])
                .chain(m["subArchitectures"].as_array().into_iter().flatten())
        })
        .map(|a| abi(a.as_str().expect("architecture")))
        .collect();
    profile["syscalls"]
        .as_array()
        .expect("syscalls")
        .iter()
        .map(|rule| {
            let names = rule["names"]
                .as_array()
                .expect("names")
                .iter()
                .map(|n| n.as_str().expect("name").to_owned())
                .collect();
            let comment = rule["comment"].as_str().unwrap_or("");
            let abis = match rule["includes"]["arches"].as_array() {
                None => every.clone(),
                Some(tokens) => tokens
                    .iter()
                    .map(|t| t.as_str().expect("arch"))
                    .filter(|t| !comment.contains(&format!("{t} is listed because")))
                    .map(abi)
                    .collect(),
            };
            (names, abis)
        })
        .collect()
}

/// The profile for `names` recorded on `arch`, in the three seccomp formats for `arches`.
fn formats(arch: Arch, names: &[&str], arches: &ArchList) -> (Value, Value, Value) {
    let profile = Profile::generate_from_names(arch, names, RUNC_AFTER_FILTER)
        .unwrap_or_else(|e| panic!("{e}"));
    let analysis = Analysis::default();
    let advice = Advice {
        name: "every-arch",
        analysis: &analysis,
        profile: Ok(&profile),
        arch,
        kernel: KernelVersion(6, 18),
    };
    let render = |f| advice.render_for(f, arches).expect("renders");
    let docker = serde_json::from_str(&render(Format::Seccomp)).expect("json");
    let oci = serde_json::from_str(&render(Format::Oci)).expect("json");
    let spo: Value = serde_norway::from_str(&render(Format::Spo)).expect("yaml");
    (docker, oci, spo["spec"].clone())
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string").to_owned())
        .collect()
}

/// Checks the three formats of one profile; returns the failures.
fn check_formats(
    lib: &mut Libseccomp,
    what: &str,
    docker: &Value,
    oci: &Value,
    spo: &Value,
) -> Vec<String> {
    let mut failures = Vec::new();
    let mut union = BTreeSet::new();
    let mut every = BTreeSet::new();
    for (names, abis) in listings(docker) {
        assert!(
            !abis.is_empty(),
            "{what}: a rule listed for no ABI: {names:?}"
        );
        for name in names {
            for &abi in &abis {
                every.insert(abi.scmp_name().to_owned());
                if let Err(e) = lib.check(abi, &name) {
                    failures.push(format!("{what} (Docker format): {e}"));
                }
            }
            union.insert(name);
        }
    }
    // The OCI and SPO forms: the same architectures and names (one list for all of them).
    for (form, v) in [("OCI", oci), ("SPO", spo)] {
        assert_eq!(strings(&v["architectures"]), every, "{what} ({form})");
        let names: BTreeSet<String> = v["syscalls"]
            .as_array()
            .expect("syscalls")
            .iter()
            .flat_map(|r| strings(&r["names"]))
            .collect();
        assert_eq!(
            names, union,
            "{what} ({form}): not the Docker format's names"
        );
    }
    failures
}

#[test]
fn every_name_of_every_profile_resolves_on_each_architecture_it_is_listed_for() {
    if !Libseccomp::available() {
        return;
    }
    let mut lib = Libseccomp::default();
    // Realistic: what Docker's default profile allows that x86_64 has.
    let docker_default: BTreeSet<&str> = Profile::docker_default()
        .syscalls
        .iter()
        .flat_map(|r| r.names.iter())
        .filter_map(|n| Abi::X86_64.syscall(n))
        .collect();
    let inputs: [(&str, Arch, Vec<&str>); 3] = [
        (
            "Docker's default profile's x86_64 syscalls",
            Arch::X86_64,
            docker_default.into_iter().collect(),
        ),
        (
            "every x86_64 syscall",
            Arch::X86_64,
            Abi::X86_64.syscall_names(),
        ),
        (
            "every aarch64 syscall",
            Arch::Aarch64,
            Abi::Aarch64.syscall_names(),
        ),
    ];
    let mut failures = Vec::new();
    for (what, arch, names) in &inputs {
        for list in ["all", "aarch64", "x86_64,arm", "x86"] {
            let arches = ArchList::parse(list).expect("list");
            let (docker, oci, spo) = formats(*arch, names, &arches);
            let what = format!("{what} for --arch {list}");
            if arches.abis().len() == 1 {
                // One architecture: `architectures`, every name listed for it.
                let abi = arches.abis()[0];
                assert_eq!(
                    strings(&docker["architectures"]),
                    [abi.scmp_name().to_owned()].into()
                );
                for name in strings(&docker["syscalls"][0]["names"]) {
                    if let Err(e) = lib.check(abi, &name) {
                        failures.push(format!("{what}: {e}"));
                    }
                }
                continue;
            }
            failures.extend(check_formats(&mut lib, &what, &docker, &oci, &spo));
        }
    }
    lib.report_newer();
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn capmon_s_syscall_tables_agree_with_libseccomp() {
    if !Libseccomp::available() {
        return;
    }
    let mut lib = Libseccomp::default();
    let mut failures = Vec::new();
    for abi in Abi::ALL {
        for name in abi.syscall_names() {
            if let Err(e) = lib.check(abi, name) {
                failures.push(e);
            }
        }
    }
    // What capmon leaves out of x32 is not an x32 syscall for libseccomp either.
    for name in Abi::X86_64.syscall_names() {
        if !Abi::X32.has(name) && lib.ask(Abi::X32, name).parse().is_ok_and(|nr: i64| nr >= 0) {
            failures.push(format!("{name} is an x32 syscall for libseccomp"));
        }
    }
    lib.report_newer();
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

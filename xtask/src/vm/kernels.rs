//! The guest kernels: Debian's packages, resolved with `apt-cache`, fetched with
//! `apt-get download` and unpacked with `dpkg-deb -x` under `target/vm/kernels/<name>/`. Nothing
//! is installed on the host. A kernel is downloaded again only when apt resolves a newer package
//! than the one cached.

use std::{
    fs,
    io::IsTerminal as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use super::tools::{output_of, run_quiet};

/// A kernel of the matrix: which Debian packages can provide it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelSpec {
    /// The name used on the command line (`--kernel 6.1`) and in the table.
    pub name: &'static str,
    /// Package names are `PREFIX<number>SUFFIX`; the highest number wins.
    prefix: &'static str,
    suffix: &'static str,
    /// What it stands for, for `--help` and errors.
    pub about: &'static str,
}

/// Every kernel the matrix knows, in the order it boots them. The unsigned packages hold the
/// same kernel and modules as the signed ones, and exist for every ABI (a new 6.12 ABI may not
/// have its signed package yet).
pub const KERNELS: &[KernelSpec] = &[
    KernelSpec {
        name: "6.1",
        prefix: "linux-image-6.1.0-",
        suffix: "-amd64-unsigned",
        about: "Debian 12's own kernel (linux-image-6.1.0-NN-amd64-unsigned)",
    },
    KernelSpec {
        name: "6.12",
        prefix: "linux-image-6.12.",
        suffix: "+deb12-amd64-unsigned",
        about: "Debian 12's 6.12 kernel (linux-image-6.12.NN+deb12-amd64-unsigned)",
    },
    KernelSpec {
        name: "6.12-rt",
        prefix: "linux-image-6.12.",
        suffix: "+deb12-rt-amd64-unsigned",
        about: "Debian 12's 6.12 PREEMPT_RT kernel (linux-image-6.12.NN+deb12-rt-amd64-unsigned)",
    },
];

impl KernelSpec {
    /// The number in `package` when it is one of this kernel's packages.
    pub fn abi_of(&self, package: &str) -> Option<u64> {
        let middle = package
            .strip_prefix(self.prefix)?
            .strip_suffix(self.suffix)?;
        if middle.is_empty() || !middle.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        middle.parse().ok()
    }

    /// The newest of this kernel's packages among `names`.
    pub fn newest<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
        names
            .into_iter()
            .filter_map(|n| Some((self.abi_of(n)?, n)))
            .max_by_key(|(abi, _)| *abi)
            .map(|(_, n)| n)
    }

    /// An apt-cache search pattern for this kernel's packages.
    fn search_pattern(&self) -> String {
        format!(
            "^{}[0-9]+{}$",
            regex_escape(self.prefix),
            regex_escape(self.suffix)
        )
    }
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = ".+*?()[]{}|^$\\".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

/// The specs for the names given on the command line (none: all), or a clear error.
pub fn select(names: &[String]) -> Result<Vec<KernelSpec>> {
    if names.is_empty() {
        return Ok(KERNELS.to_vec());
    }
    let mut out = Vec::new();
    for name in names {
        let spec = KERNELS.iter().find(|k| k.name == name).with_context(|| {
            format!(
                "unknown kernel {name:?}: the matrix knows {}",
                KERNELS
                    .iter()
                    .map(|k| format!("{} ({})", k.name, k.about))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        if !out.contains(spec) {
            out.push(*spec);
        }
    }
    Ok(out)
}

/// A kernel unpacked on disk, ready to boot.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub spec: KernelSpec,
    /// The Debian package it came from.
    pub package: String,
    /// `uname -r` of the guest (the folder under `lib/modules`).
    pub release: String,
    /// The unpacked package (`boot/`, `lib/modules/`).
    pub root: PathBuf,
    /// `target/vm/kernels/<name>`: the cache for this kernel.
    pub dir: PathBuf,
}

impl Kernel {
    pub fn vmlinuz(&self) -> PathBuf {
        self.root.join(format!("boot/vmlinuz-{}", self.release))
    }

    /// Whether the kernel's default preemption model preempts fexit programs (from the
    /// package's `boot/config-<release>`, as capmon reads it: `PREEMPT_RT`, or full or lazy
    /// preemption): capmon refuses fexit there.
    pub fn preempts_fexit(&self) -> bool {
        std::fs::read_to_string(self.root.join(format!("boot/config-{}", self.release))).is_ok_and(
            |c| {
                c.lines().any(|l| {
                    matches!(
                        l,
                        "CONFIG_PREEMPT_RT=y" | "CONFIG_PREEMPT=y" | "CONFIG_PREEMPT_LAZY=y"
                    )
                })
            },
        )
    }
}

/// Searches apt's package lists for this kernel's packages.
fn search(spec: &KernelSpec) -> Result<Vec<String>> {
    let out = output_of(
        Command::new("apt-cache")
            .args(["search", "--names-only"])
            .arg(spec.search_pattern()),
    )?;
    Ok(out
        .lines()
        .filter_map(|l| l.split(" - ").next())
        .map(|s| s.trim().to_owned())
        .collect())
}

/// The newest package for `spec`; refreshes apt's lists once when none is known.
pub fn resolve(spec: &KernelSpec) -> Result<String> {
    let names = search(spec)?;
    if let Some(n) = spec.newest(names.iter().map(String::as_str)) {
        return Ok(n.to_owned());
    }
    eprintln!(
        "vm: no package for kernel {} in apt's lists: apt-get update",
        spec.name
    );
    run_quiet(Command::new("apt-get").args(["update", "-q"]))?;
    let names = search(spec)?;
    match spec.newest(names.iter().map(String::as_str)) {
        Some(n) => Ok(n.to_owned()),
        None => bail!(
            "no Debian package provides kernel {} ({}): `apt-cache search --names-only '{}'` \
             finds nothing; the matrix needs bookworm's and bookworm-security's package lists",
            spec.name,
            spec.about,
            spec.search_pattern()
        ),
    }
}

/// The single folder under `root/lib/modules`.
fn release_of(root: &Path) -> Result<String> {
    let dir = root.join("lib/modules");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| Some(e.ok()?.file_name().to_str()?.to_owned()))
        .collect();
    match names.len() {
        1 => Ok(names.remove(0)),
        n => bail!("{} holds {n} kernel releases, expected one", dir.display()),
    }
}

/// Downloads and unpacks `package` into `dir/root` (replacing an older one), then runs
/// `depmod -b` (the package ships no modules.dep).
fn unpack(dir: &Path, package: &str) -> Result<()> {
    let download = dir.join("download");
    let _ = fs::remove_dir_all(&download);
    fs::create_dir_all(&download).with_context(|| format!("mkdir {}", download.display()))?;
    eprintln!("vm: downloading {package}");
    let mut apt = Command::new("apt-get");
    apt.current_dir(&download)
        .args(crate::apt_verbosity())
        // apt's download user cannot write under target/ when we run as root.
        .args(["-o", "APT::Sandbox::User=root", "download", package]);
    // On a terminal apt shows the download's progress; into a log, only its error.
    if std::io::stderr().is_terminal() {
        crate::run(&mut apt)?;
    } else {
        run_quiet(&mut apt)?;
    }
    let deb = fs::read_dir(&download)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("apt-get download {package} left no .deb"))?;
    let fresh = dir.join("root.new");
    let _ = fs::remove_dir_all(&fresh);
    run_quiet(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&fresh))?;
    let release = release_of(&fresh)?;
    run_quiet(Command::new("depmod").arg("-b").arg(&fresh).arg(&release))?;
    let root = dir.join("root");
    let _ = fs::remove_dir_all(&root);
    fs::rename(&fresh, &root).with_context(|| format!("renaming to {}", root.display()))?;
    fs::remove_dir_all(&download)?;
    Ok(())
}

/// The kernel for `spec`, downloaded and unpacked under `cache/<name>` unless already there.
pub fn fetch(spec: &KernelSpec, cache: &Path) -> Result<Kernel> {
    let package = resolve(spec)?;
    let dir = cache.join(spec.name);
    let stamp = dir.join("package");
    let root = dir.join("root");
    let cached = fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == package);
    if !cached || !root.join("lib/modules").is_dir() {
        fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        let _ = fs::remove_file(&stamp);
        unpack(&dir, &package)?;
        fs::write(&stamp, format!("{package}\n"))?;
    }
    let release = release_of(&root)?;
    let kernel = Kernel {
        spec: *spec,
        package,
        release,
        root,
        dir,
    };
    if !kernel.vmlinuz().is_file() {
        bail!("{} is missing from the package", kernel.vmlinuz().display());
    }
    Ok(kernel)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: &[&str] = &[
        "linux-image-6.1.0-47-amd64-unsigned",
        "linux-image-6.1.0-54-amd64-unsigned",
        "linux-image-6.1.0-9-amd64-unsigned",
        "linux-image-6.1.0-54-rt-amd64-unsigned",
        "linux-image-6.1.0-54-cloud-amd64-unsigned",
        "linux-image-6.1.0-55-amd64",
        "linux-image-6.12.117+deb12-amd64-unsigned",
        "linux-image-6.12.118+deb12-amd64-unsigned",
        "linux-image-6.12.118+deb12-rt-amd64-unsigned",
        "linux-image-6.12.99+deb12-rt-amd64-unsigned",
        "linux-image-6.12.118+deb12-amd64-dbg",
    ];

    #[test]
    fn the_newest_unsigned_package_of_each_flavour_wins() {
        let pick = |name: &str| {
            select(&[name.to_owned()]).expect("known")[0].newest(NAMES.iter().copied())
        };
        assert_eq!(pick("6.1"), Some("linux-image-6.1.0-54-amd64-unsigned"));
        assert_eq!(
            pick("6.12"),
            Some("linux-image-6.12.118+deb12-amd64-unsigned")
        );
        assert_eq!(
            pick("6.12-rt"),
            Some("linux-image-6.12.118+deb12-rt-amd64-unsigned")
        );
    }

    #[test]
    fn no_package_is_none() {
        assert_eq!(KERNELS[0].newest(["linux-image-6.1.0-54-amd64-dbg"]), None);
    }

    #[test]
    fn unknown_kernel_names_are_refused_with_the_known_ones() {
        let err = select(&["5.10".to_owned()])
            .expect_err("unknown")
            .to_string();
        assert!(err.contains("unknown kernel \"5.10\""), "{err}");
        assert!(err.contains("6.12-rt"), "{err}");
        let default: Vec<&str> = select(&[])
            .expect("default")
            .iter()
            .map(|k| k.name)
            .collect();
        assert_eq!(default, ["6.1", "6.12", "6.12-rt"]);
    }

    #[test]
    fn the_search_pattern_escapes_dots_and_plus() {
        assert_eq!(
            KERNELS[1].search_pattern(),
            "^linux-image-6\\.12\\.[0-9]+\\+deb12-amd64-unsigned$"
        );
    }
}

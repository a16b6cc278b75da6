//! Project tasks: `cargo xtask setup | build | run | test | vm`.
//!
//! `setup` installs what a fresh Debian 12 machine lacks for building capmon's eBPF side
//! offline (see docs/developing.md) and is idempotent: a second run only checks.

mod dashboards;
mod setup;
mod vm;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the offline eBPF toolchain and the test dependencies (idempotent).
    Setup,
    /// Set up if needed, then build capmon (release).
    Build,
    /// Set up if needed, build, and run `capmon ARGS` as root (no ARGS: `capmon run`, the
    /// daemon).
    Run {
        /// Arguments for capmon (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Set up if needed, build (release) and run the overhead benchmark as root.
    Bench,
    /// Fuzz every parser of outside input in capmon-core with cargo-fuzz (nightly, for
    /// AddressSanitizer), one target after the other (fuzz/fuzz_targets), growing
    /// fuzz/corpus/<target>.
    Fuzz {
        /// How long each target runs, in seconds.
        #[arg(default_value_t = 60)]
        seconds: u64,
    },
    /// Check the Grafana dashboards: JSON lint, and tsc against npm @grafana/schema's
    /// `Dashboard` type (installs typescript and @grafana/schema under target/).
    Dashboards,
    /// Set up if needed, then run every test tier: unit (no root; then each fuzz target for a
    /// few seconds from its committed corpus), the dashboard check,
    /// privileged (real kernel, as root) on the host and, under qemu TCG, on Debian's 6.1,
    /// 6.12 and 6.12-rt kernels (the kernel matrix, `cargo xtask vm`).
    Test {
        /// Only the unit tier (no root needed).
        #[arg(long)]
        unit_only: bool,
        /// Leave the kernel matrix's guests out: the privileged tier on the host only (also:
        /// environment CAPMON_NO_VM=1).
        #[arg(long, env = "CAPMON_NO_VM")]
        no_vm: bool,
    },
    /// The kernel matrix: the privileged tier on the host and, under qemu TCG, on Debian's
    /// 6.1, 6.12 and 6.12-rt kernels in each probe mode they attach; prints a table per kernel
    /// and mode. Kernels are downloaded once into target/vm/ (never installed).
    Vm(vm::VmArgs),
}

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

/// PATH with `$CARGO_HOME/bin` (where setup puts bpf-linker and cargo-fuzz) first.
fn path_with_cargo_home() -> Option<std::ffi::OsString> {
    let mut paths = vec![setup::cargo_home().join("bin")];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).ok()
}

/// The cargo that runs us, with `$CARGO_HOME/bin` (where setup puts bpf-linker) on PATH.
fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    if let Some(path) = path_with_cargo_home() {
        c.env("PATH", path);
    }
    c
}

pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// apt's verbosity: its progress (download sizes and speeds) on a terminal, `-q` (one line
/// per step) into a log.
pub(crate) fn apt_verbosity() -> &'static [&'static str] {
    use std::io::IsTerminal as _;
    if std::io::stderr().is_terminal() {
        &[]
    } else {
        &["-q"]
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A command running `bin` as root: directly when we are root, else through `sudo -E`.
fn as_root(bin: &Path, why: &str) -> Command {
    if is_root() {
        Command::new(bin)
    } else {
        eprintln!("xtask: {why}; running it with sudo");
        let mut c = Command::new("sudo");
        c.arg("-E").arg(bin);
        c
    }
}

/// Builds capmon (release) with `features` (`bench` adds the benchmark binary).
fn build(features: &[&str]) -> Result<PathBuf> {
    setup::ensure()?;
    let mut cmd = cargo();
    cmd.args(["build", "--release", "-p", "monitor-daemon", "--bins"]);
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    run(&mut cmd)?;
    Ok(root().join("target/release/capmon"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::setup(),
        Task::Build => build(&[]).map(|_| ()),
        Task::Run { args } => build(&[]).and_then(|bin| {
            // No arguments: the daemon with its defaults.
            let args = if args.is_empty() {
                vec!["run".to_owned()]
            } else {
                args
            };
            let status = as_root(&bin, "capmon needs root")
                .args(&args)
                .status()
                .with_context(|| format!("cannot run {}", bin.display()))?;
            std::process::exit(status.code().unwrap_or(1));
        }),
        Task::Test { unit_only, no_vm } => test(unit_only, no_vm),
        Task::Vm(args) => setup::ensure()
            .and_then(|()| write_dashboard_queries())
            .and_then(|()| vm::run(&root(), cargo, &args, true)),
        Task::Dashboards => dashboards::check(&root()).map_err(anyhow::Error::msg),
        Task::Fuzz { seconds } => fuzz(seconds),
        Task::Bench => build(&["bench"]).and_then(|_| {
            let bin = root().join("target/release/capmon-bench");
            run(&mut as_root(&bin, "the benchmark loads eBPF programs"))
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The fuzz targets (fuzz/fuzz_targets/*.rs), sorted.
fn fuzz_targets() -> Result<Vec<String>> {
    let dir = root().join("fuzz/fuzz_targets");
    let mut targets: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".rs")
                .map(str::to_owned)
        })
        .collect();
    targets.sort();
    Ok(targets)
}

/// `cargo fuzz SUBCOMMAND` in fuzz/ (through rustup's cargo, which picks the toolchain): with
/// nightly and AddressSanitizer when there is a nightly, else without a sanitizer
/// ([`setup::fuzz_nightly`]).
fn cargo_fuzz(subcommand: &str) -> Command {
    let nightly = setup::fuzz_nightly();
    let mut c = Command::new("cargo");
    c.current_dir(root().join("fuzz"));
    if let Some(path) = path_with_cargo_home() {
        c.env("PATH", path);
    }
    if nightly {
        c.arg("+nightly");
    }
    c.args(["fuzz", subcommand]);
    if !nightly {
        c.args(["-s", "none"]);
    }
    c
}

/// `cargo xtask fuzz SECONDS`: every target of fuzz/fuzz_targets for SECONDS each, growing
/// its corpus. The pure crate needs no eBPF toolchain: only cargo-fuzz (and nightly for
/// AddressSanitizer).
fn fuzz(seconds: u64) -> Result<()> {
    setup::ensure_cargo_fuzz()?;
    let targets = fuzz_targets()?;
    for target in &targets {
        eprintln!("xtask: fuzzing {target} for {seconds} s");
        run(cargo_fuzz("run")
            .args([target, "--"])
            .arg(format!("-max_total_time={seconds}")))?;
    }
    eprintln!("xtask: {} fuzz targets ran without a crash", targets.len());
    Ok(())
}

/// How long `cargo xtask test` runs each fuzz target.
const FUZZ_SMOKE_SECONDS: u64 = 3;

/// `cargo xtask test`'s fuzz step: every target for [`FUZZ_SMOKE_SECONDS`] from its committed
/// corpus (what it finds goes to fuzz/target/smoke-corpus, never into the corpus); a crash
/// fails the step and leaves its input in fuzz/artifacts/<target>.
fn fuzz_smoke() -> Result<()> {
    let start = std::time::Instant::now();
    let targets = fuzz_targets()?;
    eprintln!(
        "xtask: fuzz targets: {} x {FUZZ_SMOKE_SECONDS} s from fuzz/corpus ({})",
        targets.len(),
        if setup::fuzz_nightly() {
            "nightly, AddressSanitizer"
        } else {
            "no nightly: without a sanitizer"
        }
    );
    // The dev profile: a change to capmon-core rebuilds the targets in seconds instead of more
    // than a minute optimized, and a few seconds of each need no speed.
    run(cargo_fuzz("build").arg("--dev"))?;
    let scratch = root().join("fuzz/target/smoke-corpus");
    for target in &targets {
        let found = scratch.join(target);
        let _ = std::fs::remove_dir_all(&found);
        std::fs::create_dir_all(&found).with_context(|| format!("mkdir {}", found.display()))?;
        let out = cargo_fuzz("run")
            .args(["--dev", target])
            .arg(&found)
            .arg(root().join("fuzz/corpus").join(target))
            .arg("--")
            .arg(format!("-max_total_time={FUZZ_SMOKE_SECONDS}"))
            .arg("-timeout=30")
            .output()
            .with_context(|| format!("cannot run fuzz target {target}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            let lines: Vec<&str> = stderr.lines().collect();
            eprintln!("{}", lines[lines.len().saturating_sub(60)..].join("\n"));
            bail!(
                "fuzz target {target} failed ({}): its input is in fuzz/artifacts/{target}/",
                out.status
            );
        }
        let done = stderr
            .lines()
            .rev()
            .find(|l| l.starts_with("Done "))
            .unwrap_or("done");
        eprintln!("xtask: fuzz {target}: {done}");
    }
    eprintln!(
        "xtask: {} fuzz targets ran without a crash [{:.1?}]",
        targets.len(),
        start.elapsed()
    );
    Ok(())
}

/// Every panel query, for the privileged test that runs them against a real Prometheus.
fn write_dashboard_queries() -> Result<()> {
    let queries = dashboards::panel_queries(&root()).map_err(anyhow::Error::msg)?;
    let queries_file = root().join("target/dashboard-queries.json");
    std::fs::write(
        &queries_file,
        serde_json::to_string_pretty(&queries).context("dashboard queries as JSON")?,
    )
    .with_context(|| format!("writing {}", queries_file.display()))
}

fn test(unit_only: bool, no_vm: bool) -> Result<()> {
    setup::ensure()?;
    eprintln!("xtask: tier 1/2: unit tests (no root needed)");
    run(cargo().args(["test", "--workspace"]))?;
    fuzz_smoke()?;
    if unit_only {
        eprintln!("xtask: dashboard check and privileged tier skipped (--unit-only)");
        return Ok(());
    }
    if !is_root() {
        bail!(
            "the privileged tier loads eBPF programs into the real kernel and needs root: run \
             `cargo xtask test` as root, or `cargo xtask test --unit-only` for the unit tier"
        );
    }
    eprintln!("xtask: dashboards: JSON lint and tsc against @grafana/schema");
    dashboards::check(&root()).map_err(anyhow::Error::msg)?;
    write_dashboard_queries()?;
    if no_vm {
        eprintln!(
            "xtask: tier 2/2: privileged integration tests (real kernel, real probes), the \
             kernel matrix's guests left out (--no-vm)"
        );
    } else {
        eprintln!(
            "xtask: tier 2/2: privileged integration tests on the host, then the kernel matrix \
             (Debian 6.1, 6.12, 6.12-rt under qemu TCG; --no-vm leaves it out)"
        );
    }
    vm::run(&root(), cargo, &vm::VmArgs::default(), !no_vm)?;
    eprintln!("xtask: all test tiers passed");
    Ok(())
}

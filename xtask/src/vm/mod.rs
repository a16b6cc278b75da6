//! `cargo xtask vm`: the kernel matrix (issue 13, part 1). The privileged test tier runs on the
//! host and, under qemu TCG, on Debian's 6.1, 6.12 and 6.12-rt kernels, once per probe mode each
//! kernel attaches; a table per kernel and mode says what passed, failed and was skipped (why).
//!
//! - [`kernels`]: resolving, downloading and unpacking Debian's kernel packages (cached);
//! - [`initramfs`]: busybox, the 9p modules and the guest's `/init` (cached);
//! - [`binaries`]: building the test binaries and copying them into the share;
//! - [`script`]: what a guest runs; [`guest`]: booting it, bounded;
//! - [`host`]: the host's row; [`fleet`]: the host and a guest as two nodes of one
//!   Prometheus; [`libtest`] and [`collect`]: reading results;
//! - [`skips`]: tests the guests cannot run; [`known`]: failures already understood;
//!   [`leftovers`]: what a binary killed at its bound leaves running, cleared;
//!   [`report`]: the table.

mod binaries;
mod collect;
mod fleet;
mod guest;
mod host;
mod initramfs;
mod jobs;
mod kernels;
mod known;
mod leftovers;
mod libtest;
mod report;
mod script;
mod skips;
mod tools;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};

use self::{
    binaries::Built,
    jobs::{Job, Settings},
    kernels::Kernel,
    report::Row,
};

/// Probe modes a guest is tested in, in this order, unless `--mode` says otherwise. Debian's
/// 6.1 and 6.12 have no `capability:cap_capable` tracepoint, so no `tp_btf`.
const GUEST_MODES: &[&str] = &["fexit", "kprobe"];
/// What `--mode` accepts (`CAPMON_PROBE_MODE`'s values).
const MODES: &[&str] = &["auto", "tp_btf", "fexit", "kprobe"];

/// `cargo xtask vm` options.
#[derive(clap::Args, Debug, Clone)]
pub struct VmArgs {
    /// A kernel to boot (repeatable; default: all): 6.1, 6.12, 6.12-rt.
    #[arg(long = "kernel", value_name = "NAME")]
    pub kernels: Vec<String>,
    /// A probe mode to force in the guests (repeatable; default: fexit, then kprobe): auto,
    /// tp_btf, fexit, kprobe.
    #[arg(long = "mode", value_name = "MODE")]
    pub modes: Vec<String>,
    /// Leave out the host's own row (the privileged tier on this machine's kernel).
    #[arg(long)]
    pub no_host: bool,
    /// Bound for one guest (boot, `capmon check` and every test binary), in seconds; a guest
    /// still running then is killed and reported as failed.
    #[arg(long, default_value_t = 900, value_name = "SECONDS")]
    pub timeout: u64,
    /// Bound for one test binary in a guest, in seconds (a `runc run` that never returns, as
    /// seen under TCG, then costs this, not the whole guest's bound).
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub binary_timeout: u64,
    /// qemu's TCG threading: `single` (the guest's vCPUs take turns on one host thread) or
    /// `multi` (one host thread per vCPU). Multi-threaded TCG once left a stale int3 of the
    /// kernel's live code patching in a guest (an Oops in `__alloc_pages`); single is
    /// sequentially consistent, and the guests booted side by side keep the cores busy.
    #[arg(long, default_value = "single", value_parser = ["single", "multi"])]
    pub tcg: String,
    /// libtest's --test-threads in the guests.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub test_threads: u32,
    /// Guests booted at a time. A guest keeps at most one host core busy with single-threaded
    /// TCG, and its tests often wait: three share a two-core machine well.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub jobs: usize,
    /// Run only the tests whose `binary::test` name contains this (repeatable), e.g.
    /// `--test privileged::chown` or `--test containers`.
    #[arg(long = "test", value_name = "FILTER")]
    pub tests: Vec<String>,
    /// Leave out the second pass of the container tests with crun (in each kernel's first
    /// mode).
    #[arg(long)]
    pub no_crun: bool,
    /// Leave out the fleet row (the host and a guest of the first kernel as two nodes of one
    /// Prometheus; it runs when the host's row and a guest kernel do).
    #[arg(long)]
    pub no_fleet: bool,
}

impl Default for VmArgs {
    /// Every kernel, the default modes, the host's row: what `cargo xtask test` runs.
    fn default() -> Self {
        VmArgs {
            kernels: Vec::new(),
            modes: Vec::new(),
            no_host: false,
            timeout: 900,
            binary_timeout: 300,
            tcg: "single".into(),
            test_threads: 1,
            jobs: 3,
            tests: Vec::new(),
            no_crun: false,
            no_fleet: false,
        }
    }
}

/// The modes to test in the guests, checked.
fn modes(args: &VmArgs) -> Result<Vec<String>> {
    if args.modes.is_empty() {
        return Ok(GUEST_MODES.iter().map(|m| m.to_string()).collect());
    }
    for m in &args.modes {
        if !MODES.contains(&m.as_str()) {
            bail!("unknown probe mode {m:?}: use one of {}", MODES.join(", "));
        }
    }
    Ok(args.modes.clone())
}

/// `target/vm`.
fn vm_dir(root: &Path) -> PathBuf {
    root.join("target/vm")
}

/// Runs the matrix: builds the tests with `cargo` (makes a `cargo` command for the workspace),
/// runs the host's row and, with `guests`, every kernel and mode; prints the table. Fails when
/// anything failed.
///
/// The host runs the debug build, as `cargo test` does (debug assertions, overflow checks);
/// the guests run the release build: under TCG the debug build's start-up alone (BTF parsing,
/// loading) takes 6-8 s per `capmon record`, the release build's 2 s.
pub fn run(root: &Path, cargo: impl Fn() -> Command, args: &VmArgs, guests: bool) -> Result<()> {
    let start = Instant::now();
    let specs = if guests {
        kernels::select(&args.kernels)?
    } else {
        Vec::new()
    };
    let modes = modes(args)?;
    if !specs.is_empty() {
        initramfs::check_visible(&root.canonicalize().unwrap_or_else(|_| root.to_owned()))?;
        tools::require_all()?;
    }
    let host_wanted = !args.no_host;
    if host_wanted && !nix::unistd::geteuid().is_root() {
        bail!(
            "the host's row loads eBPF programs and needs root: run as root, or pass --no-host \
             (the guests need no root)"
        );
    }
    let mut rows = Vec::new();
    let mut host_built = None;
    if host_wanted {
        let (row, built) = host_row(root, cargo(), args)?;
        rows.push(row);
        host_built = Some(built);
    }
    if !specs.is_empty() {
        let guests = guest_rows(root, cargo(), args, &specs, &modes)?;
        rows.extend(guests.rows);
        if let (Some(host), Some((kernel, initramfs))) = (&host_built, &guests.first)
            && fleet_selected(host, args)
        {
            let fleet = fleet::Fleet {
                kernel,
                initramfs,
                share: &vm_dir(root).join("share"),
                host,
                guest: &guests.built,
                tcg: &args.tcg,
                bound: Duration::from_secs(args.binary_timeout),
            };
            // A failure to run the row is the row's problem: the other rows are still reported.
            rows.push(fleet::row(&fleet).unwrap_or_else(|e| fleet.failed(format!("{e:#}"))));
        }
    }
    print_report(&rows, start.elapsed());
    let support = vm_dir(root).join("kernel-support.md");
    std::fs::create_dir_all(vm_dir(root))?;
    std::fs::write(&support, report::support(&rows))?;
    println!(
        "\nkernel support table (Markdown, for docs/testing.md): {}",
        support.display()
    );
    let failed: Vec<String> = rows
        .iter()
        .filter(|r| !r.ok())
        .map(|r| format!("{}/{}", r.kernel, r.mode))
        .collect();
    if !failed.is_empty() {
        bail!("the matrix failed on {}", failed.join(", "));
    }
    Ok(())
}

/// The host's row, from the debug build (and the build, for the fleet row).
fn host_row(root: &Path, cargo: Command, args: &VmArgs) -> Result<(Row, Built)> {
    eprintln!("vm: building the privileged tests (debug, for the host)");
    let built = binaries::build(cargo, false)?;
    let skipped: Vec<_> = built
        .tests
        .iter()
        .map(|b| skips::for_binary(b, &[skips::FLEET], &args.tests))
        .collect();
    let row = host::run(
        &built,
        &skipped,
        &vm_dir(root).join("host"),
        Duration::from_secs(args.timeout),
        &[],
    )?;
    Ok((row, built))
}

/// Whether the fleet row runs: not left out, and its test selected by the `--test` filters.
fn fleet_selected(host: &Built, args: &VmArgs) -> bool {
    !args.no_fleet
        && host
            .tests
            .iter()
            .find(|b| b.name == "fleet")
            .is_some_and(|b| skips::for_binary(b, &[], &args.tests).len() < b.tests.len())
}

/// One guest per kernel and mode, and one more per kernel in the first mode with crun for the
/// container tests (unless `no_crun`). With the default modes, a kernel that preempts fexit
/// programs (`PREEMPT_RT`) is tested in the kprobe mode only: capmon refuses fexit there (its
/// per-CPU counting slots are not safe from preemption; the probe-mode tests check the
/// refusal).
fn plan(
    kernel: &Kernel,
    initramfs: &Path,
    modes: &[String],
    default_modes: bool,
    no_crun: bool,
) -> Vec<Job> {
    let job = |mode: &String, runtime| Job {
        kernel: kernel.clone(),
        initramfs: initramfs.to_owned(),
        mode: mode.clone(),
        runtime,
        bench: false,
    };
    let mut ordered = modes.to_vec();
    if default_modes && kernel.preempts_fexit() {
        ordered.retain(|m| m != "fexit");
    }
    let mut jobs: Vec<Job> = ordered.iter().map(|m| job(m, None)).collect();
    if let Some(first) = ordered.first().filter(|_| !no_crun) {
        jobs.push(job(first, Some("crun")));
    }
    // The probe modes' benchmark once per kernel, in its shortest guest (the last).
    if let Some(last) = jobs.last_mut() {
        last.bench = true;
    }
    jobs
}

/// The guests' rows, the release build they ran, and the first kernel with its initramfs.
struct Guests {
    rows: Vec<Row>,
    built: Built,
    first: Option<(Kernel, PathBuf)>,
}

/// Every guest's row, from the release build.
fn guest_rows(
    root: &Path,
    cargo: Command,
    args: &VmArgs,
    specs: &[kernels::KernelSpec],
    modes: &[String],
) -> Result<Guests> {
    eprintln!("vm: building the privileged tests (release, for the guests)");
    let built = binaries::build(cargo, true)?;
    let share = vm_dir(root).join("share");
    binaries::copy_to(&built, &share)?;
    let mut jobs = Vec::new();
    let mut first = None;
    for spec in specs {
        let kernel = kernels::fetch(spec, &vm_dir(root).join("kernels"))?;
        let initramfs = initramfs::ensure(&kernel)?;
        if first.is_none() {
            first = Some((kernel.clone(), initramfs.clone()));
        }
        jobs.extend(plan(
            &kernel,
            &initramfs,
            modes,
            args.modes.is_empty(),
            args.no_crun,
        ));
    }
    let settings = Settings {
        timeout: Duration::from_secs(args.timeout),
        binary_timeout: Duration::from_secs(args.binary_timeout.min(args.timeout)),
        tcg: &args.tcg,
        threads: args.test_threads,
        filters: &args.tests,
        parallel: args.jobs,
    };
    let rows = jobs::run_jobs(&jobs, &built, &share, &settings)?;
    Ok(Guests { rows, built, first })
}

fn print_report(rows: &[Row], took: Duration) {
    println!();
    print!("{}", report::table(rows));
    let skips = report::skips(rows);
    if !skips.is_empty() {
        println!("\n{skips}");
    }
    let slowest = report::slowest(rows, 8);
    if !slowest.is_empty() {
        println!("\nslowest tests:\n{slowest}");
    }
    for r in rows.iter().filter(|r| !r.bench.trim().is_empty()) {
        println!(
            "\nprobe modes side by side on {} (capmon-bench, qemu TCG: ratios only):\n{}",
            r.kernel,
            r.bench.trim_end()
        );
    }
    let failures = report::failures(rows, 25);
    if !failures.is_empty() {
        println!("\n{failures}");
    }
    println!("matrix wall time: {} s", took.as_secs());
}

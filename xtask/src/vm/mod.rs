//! `cargo xtask vm`: the kernel matrix (issue 13, part 1). The privileged test tier runs on the
//! host and, under qemu TCG, on Debian's 6.1, 6.12 and 6.12-rt kernels, once per probe mode each
//! kernel attaches; a table per kernel and mode says what passed, failed and was skipped (why).
//!
//! - [`kernels`]: resolving, downloading and unpacking Debian's kernel packages (cached);
//! - [`initramfs`]: busybox, the 9p modules and the guest's `/init` (cached);
//! - [`binaries`]: building the test binaries and copying them into the share;
//! - [`script`]: what a guest runs; [`guest`]: booting it, bounded;
//! - [`host`]: the host's row; [`libtest`] and [`collect`]: reading results;
//! - [`skips`]: tests the guests cannot run; [`known`]: failures already understood;
//!   [`report`]: the table.

mod binaries;
mod collect;
mod guest;
mod host;
mod initramfs;
mod kernels;
mod known;
mod libtest;
mod report;
mod script;
mod skips;
mod tools;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use self::{
    binaries::Built,
    collect::{BinaryOutput, collect},
    kernels::Kernel,
    report::Row,
    script::GuestScript,
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
    /// libtest's --test-threads in the guests.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub test_threads: u32,
    /// Guests booted at a time. Each has two vCPUs, but the tests mostly keep one busy and
    /// often wait, so two guests share a two-core machine well.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub jobs: usize,
    /// Run only the tests whose `binary::test` name contains this (repeatable), e.g.
    /// `--test privileged::chown` or `--test containers`.
    #[arg(long = "test", value_name = "FILTER")]
    pub tests: Vec<String>,
}

impl Default for VmArgs {
    /// Every kernel, the default modes, the host's row: what `cargo xtask test` runs.
    fn default() -> Self {
        VmArgs {
            kernels: Vec::new(),
            modes: Vec::new(),
            no_host: false,
            timeout: 900,
            test_threads: 1,
            jobs: 2,
            tests: Vec::new(),
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
    if host_wanted {
        eprintln!("vm: building the privileged tests (debug, for the host)");
        let built = binaries::build(cargo(), false)?;
        let logs = vm_dir(root).join("host");
        let skipped: Vec<_> = built
            .tests
            .iter()
            .map(|b| skips::for_binary(b, &[], &args.tests))
            .collect();
        rows.push(host::run(
            &built,
            &skipped,
            &logs,
            Duration::from_secs(args.timeout),
        )?);
    }
    if !specs.is_empty() {
        eprintln!("vm: building the privileged tests (release, for the guests)");
        let built = binaries::build(cargo(), true)?;
        let share = vm_dir(root).join("share");
        binaries::copy_to(&built, &share)?;
        let mut jobs = Vec::new();
        for spec in &specs {
            let kernel = kernels::fetch(spec, &vm_dir(root).join("kernels"))?;
            let initramfs = initramfs::ensure(&kernel)?;
            for mode in &modes {
                jobs.push(Job {
                    kernel: kernel.clone(),
                    initramfs: initramfs.clone(),
                    mode: mode.clone(),
                });
            }
        }
        rows.extend(run_jobs(&jobs, &built, &share, args)?);
    }
    print_report(&rows, start.elapsed());
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
    let failures = report::failures(rows, 25);
    if !failures.is_empty() {
        println!("\n{failures}");
    }
    println!("matrix wall time: {} s", took.as_secs());
}

/// One guest to boot: a kernel and the mode forced in it.
struct Job {
    kernel: Kernel,
    initramfs: PathBuf,
    mode: String,
}

/// Boots every job, `args.jobs` at a time; the rows come in the jobs' order.
fn run_jobs(jobs: &[Job], built: &Built, share: &Path, args: &VmArgs) -> Result<Vec<Row>> {
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<Option<Result<Row>>>> = Mutex::new(jobs.iter().map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..args.jobs.clamp(1, jobs.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let row = guest_row(job, built, share, args);
                    if let Ok(row) = &row {
                        eprintln!(
                            "vm: {}/{}: {} passed, {} failed, {} skipped ({} s)",
                            row.kernel,
                            row.mode,
                            row.passed(),
                            row.failed(),
                            row.skipped(),
                            row.took.as_secs()
                        );
                    }
                    if let Ok(mut d) = done.lock() {
                        d[i] = Some(row);
                    }
                }
            });
        }
    });
    let done = done
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a guest thread panicked"))?;
    done.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(anyhow::anyhow!("a guest was never booted"))))
        .collect()
}

/// Boots the job's kernel once with its mode forced and reads its results.
fn guest_row(job: &Job, built: &Built, share: &Path, args: &VmArgs) -> Result<Row> {
    let (kernel, mode) = (&job.kernel, job.mode.as_str());
    let start = Instant::now();
    let out_name = format!("{}-{mode}", kernel.spec.name);
    let out = share.join(&out_name);
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out).with_context(|| format!("mkdir {}", out.display()))?;
    let skipped: Vec<_> = built
        .tests
        .iter()
        .map(|b| skips::for_binary(b, skips::GUEST_SKIPS, &args.tests))
        .collect();
    let script = GuestScript {
        mode,
        out: &out_name,
        binaries: built
            .tests
            .iter()
            .zip(&skipped)
            .filter(|(b, s)| s.len() < b.tests.len())
            .map(|(b, s)| (b, s.iter().map(|(t, _)| *t).collect()))
            .collect(),
        programs: &built.programs,
        threads: args.test_threads,
        binary_timeout: args.timeout,
    };
    let script_name = format!("{out_name}/run.sh");
    fs::write(share.join(&script_name), script.render())?;
    eprintln!(
        "vm: {}/{mode}: booting {} ({}) under qemu TCG (bound {} s)",
        kernel.spec.name, kernel.release, kernel.package, args.timeout
    );
    let boot = guest::Boot {
        vmlinuz: &kernel.vmlinuz(),
        initramfs: &job.initramfs,
        share,
        script: &script_name,
        console: out.join("console.log"),
        timeout: Duration::from_secs(args.timeout),
    };
    let exit = boot.run()?;
    let mut row = read_guest(&out, built, &skipped);
    row.kernel = kernel.spec.name.to_owned();
    if row.release.is_empty() {
        row.release = kernel.release.clone();
    }
    row.mode = mode.to_owned();
    row.logs = out.clone();
    row.known = row
        .results
        .iter()
        .filter_map(|(b, t)| {
            let why = known::reason(known::KNOWN, &row.kernel, mode, b, &t.name)?;
            Some((format!("{b}::{}", t.name), why))
        })
        .collect();
    match exit {
        guest::Exit::TimedOut(after) => row.problems.push(format!(
            "guest of kernel {} ({mode}) did not finish within {} s and was killed; console {}:\n{}",
            kernel.spec.name,
            after.as_secs(),
            boot.console.display(),
            guest::console_tail(&boot.console, 15)
        )),
        guest::Exit::Stopped if !out.join("done").exists() => row.problems.push(format!(
            "guest of kernel {} ({mode}) stopped before finishing; console {}:\n{}",
            kernel.spec.name,
            boot.console.display(),
            guest::console_tail(&boot.console, 15)
        )),
        guest::Exit::Stopped => {}
    }
    row.took = start.elapsed();
    Ok(row)
}

fn read_trimmed(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

/// A guest's results from its folder in the share.
fn read_guest(out: &Path, built: &Built, skipped: &[Vec<(&str, &'static str)>]) -> Row {
    let mut row = Row {
        release: read_trimmed(&out.join("uname")).unwrap_or_default(),
        ..Row::default()
    };
    let check_status = read_trimmed(&out.join("check.rc"));
    let check = read_trimmed(&out.join("check.txt")).unwrap_or_default();
    let attached = check_status.as_deref() == Some("0");
    if check_status.is_some() && !attached {
        let fails: Vec<&str> = check
            .lines()
            .filter(|l| l.starts_with("[FAIL]") || l.contains("error"))
            .collect();
        row.problems.push(format!(
            "`capmon check` fails in this mode, no test ran: {}",
            fails.join(" / ")
        ));
    }
    for (binary, skipped) in built.tests.iter().zip(skipped) {
        let mut skipped = skipped.clone();
        if check_status.is_some() && !attached {
            skipped = binary
                .tests
                .iter()
                .map(|t| (t.as_str(), "not run: capmon check failed in this mode"))
                .collect();
        }
        // Not trimmed: `test NAME ... ` without its result is the test a binary died in.
        let log = fs::read_to_string(out.join(format!("{}.log", binary.name))).ok();
        let status =
            read_trimmed(&out.join(format!("{}.rc", binary.name))).and_then(|s| s.parse().ok());
        let (results, problems) = collect(&BinaryOutput {
            binary,
            log,
            status,
            skipped,
        });
        row.results
            .extend(results.into_iter().map(|r| (binary.name.clone(), r)));
        row.problems.extend(problems);
    }
    row
}

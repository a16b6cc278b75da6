//! The guests to boot (a kernel, the probe mode forced in it, and optionally another OCI
//! runtime for the container tests), booted a few at a time, and each one's results read back
//! from its folder in the share.

use std::{
    fs,
    io::IsTerminal as _,
    path::{Path, PathBuf},
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use super::{
    binaries::{Built, TestBinary},
    collect::{BinaryOutput, collect},
    guest,
    kernels::Kernel,
    known,
    report::Row,
    script::GuestScript,
    skips::{self, Skip},
};

/// The test binaries that run again under another OCI runtime ([`Job::runtime`]): those whose
/// containers come from the tests' own runtime helpers.
pub const RUNTIME_BINARIES: &[&str] = &["containers", "lifecycle"];

/// `CAPMON_TEST_SCALE` in the guests: the fraction of their repetitions that the tests which
/// start hundreds of containers make there (`common::scaled`).
pub const GUEST_SCALE: &str = "0.1";

/// `CAPMON_TEST_TIME_FACTOR` in the guests: how much longer the tests' few time bounds (a
/// daemon's clean exit) are there (`common::bound`).
pub const GUEST_TIME_FACTOR: &str = "5";

/// What every guest shares.
pub struct Settings<'a> {
    /// Bound per guest.
    pub timeout: Duration,
    /// Bound per test binary in a guest.
    pub binary_timeout: Duration,
    /// qemu's `-accel tcg,thread=`: `single` or `multi`.
    pub tcg: &'a str,
    /// libtest's `--test-threads`.
    pub threads: u32,
    /// `--test` filters.
    pub filters: &'a [String],
    /// Guests at a time.
    pub parallel: usize,
}

/// One guest to boot: a kernel and the mode forced in it.
pub struct Job {
    pub kernel: Kernel,
    pub initramfs: PathBuf,
    pub mode: String,
    /// Another OCI runtime than runc for the [`RUNTIME_BINARIES`] (`CAPMON_TEST_RUNTIME`).
    pub runtime: Option<&'static str>,
    /// Whether the guest also runs the probe modes' benchmark (once per kernel).
    pub bench: bool,
}

impl Job {
    /// `fexit`, or `fexit+crun`.
    fn label(&self) -> String {
        match self.runtime {
            Some(rt) => format!("{}+{rt}", self.mode),
            None => self.mode.clone(),
        }
    }

    /// The binaries this guest runs.
    fn binaries<'b>(&self, built: &'b Built) -> Vec<&'b TestBinary> {
        built
            .tests
            .iter()
            .filter(|b| self.runtime.is_none() || RUNTIME_BINARIES.contains(&b.name.as_str()))
            .collect()
    }

    /// The skips that apply.
    fn skips(&self) -> Vec<Skip> {
        let mut s = skips::GUEST_SKIPS.to_vec();
        if self.runtime.is_some() {
            s.extend_from_slice(skips::OTHER_RUNTIME_SKIPS);
        }
        s
    }
}

/// The order to boot `jobs` in: the longest first, so that the short ones fill the gaps at
/// the end (kprobe guests take longest under TCG, the runtime passes least).
fn longest_first(jobs: &[Job]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| (jobs[i].runtime.is_some(), jobs[i].mode != "kprobe"));
    order
}

/// Boots every job, `settings.parallel` at a time; the rows come in the jobs' order.
pub fn run_jobs(
    jobs: &[Job],
    built: &Built,
    share: &Path,
    settings: &Settings,
) -> Result<Vec<Row>> {
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<Option<Result<Row>>>> = Mutex::new(jobs.iter().map(|_| None).collect());
    let running: Mutex<Vec<(usize, Instant)>> = Mutex::new(Vec::new());
    let order = longest_first(jobs);
    std::thread::scope(|s| {
        if std::io::stderr().is_terminal() {
            s.spawn(|| progress(jobs, &running, &done));
        }
        for _ in 0..settings.parallel.clamp(1, jobs.len().max(1)) {
            s.spawn(|| {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = order.get(n) else { break };
                    let job = &jobs[i];
                    if let Ok(mut r) = running.lock() {
                        r.push((i, Instant::now()));
                    }
                    let row = guest_row(job, built, share, settings);
                    if let Ok(mut r) = running.lock() {
                        r.retain(|(j, _)| *j != i);
                    }
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

/// On a terminal, every 30 s until every row is done: which guests run, for how long.
fn progress(
    jobs: &[Job],
    running: &Mutex<Vec<(usize, Instant)>>,
    done: &Mutex<Vec<Option<Result<Row>>>>,
) {
    let start = Instant::now();
    loop {
        for _ in 0..300 {
            std::thread::sleep(Duration::from_millis(100));
            let finished = done.lock().map_or(0, |d| d.iter().flatten().count());
            if finished == jobs.len() {
                return;
            }
        }
        let finished = done.lock().map_or(0, |d| d.iter().flatten().count());
        let now: Vec<String> = running.lock().map_or_else(
            |_| Vec::new(),
            |r| {
                r.iter()
                    .map(|(i, t)| {
                        let j = &jobs[*i];
                        format!(
                            "{}/{} ({} s)",
                            j.kernel.spec.name,
                            j.label(),
                            t.elapsed().as_secs()
                        )
                    })
                    .collect()
            },
        );
        eprintln!(
            "vm: {} s: {finished} of {} rows done; running: {}",
            start.elapsed().as_secs(),
            jobs.len(),
            if now.is_empty() {
                "-".to_owned()
            } else {
                now.join(", ")
            }
        );
    }
}

/// Boots the job's kernel once with its mode (and runtime) forced and reads its results.
fn guest_row(job: &Job, built: &Built, share: &Path, settings: &Settings) -> Result<Row> {
    let (kernel, mode, label) = (&job.kernel, job.mode.as_str(), job.label());
    let start = Instant::now();
    let out_name = format!("{}-{}", kernel.spec.name, label.replace('+', "-"));
    let out = share.join(&out_name);
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out).with_context(|| format!("mkdir {}", out.display()))?;
    let binaries = job.binaries(built);
    let skip_list = job.skips();
    let skipped: Vec<_> = binaries
        .iter()
        .map(|b| skips::for_binary(b, &skip_list, settings.filters))
        .collect();
    // Under TCG a container starts 20 to 50 times slower than on the host: the tests that
    // repeat one (hundreds of one-shots) make a tenth as many there.
    let mut env: Vec<(&str, &str)> = vec![
        ("CAPMON_TEST_SCALE", GUEST_SCALE),
        ("CAPMON_TEST_TIME_FACTOR", GUEST_TIME_FACTOR),
    ];
    env.extend(job.runtime.map(|rt| ("CAPMON_TEST_RUNTIME", rt)));
    let script = GuestScript {
        mode,
        env: &env,
        out: &out_name,
        binaries: binaries
            .iter()
            .zip(&skipped)
            .filter(|(b, s)| s.len() < b.tests.len())
            .map(|(b, s)| (*b, s.iter().map(|(t, _)| *t).collect()))
            .collect(),
        programs: &built.programs,
        threads: settings.threads,
        binary_timeout: settings.binary_timeout.as_secs(),
        bench: job.bench && settings.filters.is_empty(),
    };
    if script.binaries.is_empty() {
        // Nothing selected (`--test`): no boot.
        let mut row = read_guest(&out, &binaries, &skipped);
        row.kernel = kernel.spec.name.to_owned();
        row.release = kernel.release.clone();
        row.mode = label;
        return Ok(row);
    }
    let script_name = format!("{out_name}/run.sh");
    fs::write(share.join(&script_name), script.render())?;
    eprintln!(
        "vm: {}/{label}: booting {} ({}) under qemu TCG (bound {} s)",
        kernel.spec.name,
        kernel.release,
        kernel.package,
        settings.timeout.as_secs()
    );
    let boot = guest::Boot {
        vmlinuz: &kernel.vmlinuz(),
        initramfs: &job.initramfs,
        share,
        script: &script_name,
        console: out.join("console.log"),
        timeout: settings.timeout,
        tcg: settings.tcg,
        forward: None,
    };
    let exit = boot.run()?;
    let mut row = read_guest(&out, &binaries, &skipped);
    row.kernel = kernel.spec.name.to_owned();
    if row.release.is_empty() {
        row.release = kernel.release.clone();
    }
    row.mode = label.clone();
    row.logs = out.clone();
    row.bench = fs::read_to_string(out.join("bench.txt")).unwrap_or_default();
    row.known = row
        .results
        .iter()
        .filter_map(|(b, t)| {
            let why = known::reason(known::KNOWN, &row.kernel, mode, b, &t.name)?;
            Some((format!("{b}::{}", t.name), why))
        })
        .collect();
    let what = format!("guest of kernel {} ({label})", kernel.spec.name);
    match exit {
        guest::Exit::TimedOut(after) => row.problems.push(format!(
            "{what} did not finish within {} s and was killed; console {}:\n{}",
            after.as_secs(),
            boot.console.display(),
            guest::console_tail(&boot.console, 15)
        )),
        guest::Exit::Stopped if !out.join("done").exists() => row.problems.push(format!(
            "{what} stopped before finishing; console {}:\n{}",
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

/// `capmon check`'s verdict in the guest: `None` when it never ran, else whether it passed,
/// with its failing lines.
fn check_result(out: &Path) -> Option<Result<(), String>> {
    let status = read_trimmed(&out.join("check.rc"))?;
    if status == "0" {
        return Some(Ok(()));
    }
    let check = read_trimmed(&out.join("check.txt")).unwrap_or_default();
    let fails: Vec<&str> = check
        .lines()
        .filter(|l| l.starts_with("[FAIL]") || l.contains("error"))
        .collect();
    Some(Err(fails.join(" / ")))
}

/// A guest's results from its folder in the share.
fn read_guest(out: &Path, binaries: &[&TestBinary], skipped: &[Vec<(&str, &'static str)>]) -> Row {
    let mut row = Row {
        release: read_trimmed(&out.join("uname")).unwrap_or_default(),
        check: fs::read_to_string(out.join("check.txt")).unwrap_or_default(),
        ..Row::default()
    };
    let check = check_result(out);
    if let Some(Err(fails)) = &check {
        row.problems.push(format!(
            "`capmon check` fails in this mode, no test ran: {fails}"
        ));
    }
    for (binary, skipped) in binaries.iter().zip(skipped) {
        let skipped = match &check {
            Some(Err(_)) => binary
                .tests
                .iter()
                .map(|t| (t.as_str(), "not run: capmon check failed in this mode"))
                .collect(),
            _ => skipped.clone(),
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn job(mode: &str, runtime: Option<&'static str>) -> Job {
        Job {
            kernel: Kernel {
                spec: super::super::kernels::KERNELS[0],
                package: "p".into(),
                release: "r".into(),
                root: "/k".into(),
                dir: "/d".into(),
            },
            initramfs: "/i".into(),
            mode: mode.into(),
            runtime,
            bench: false,
        }
    }

    #[test]
    fn kprobe_guests_boot_first_and_runtime_passes_last() {
        let jobs = [
            job("fexit", None),
            job("kprobe", None),
            job("fexit", Some("crun")),
            job("fexit", None),
            job("kprobe", None),
        ];
        assert_eq!(longest_first(&jobs), [1, 4, 0, 3, 2]);
        assert_eq!(jobs[2].label(), "fexit+crun");
    }
}

//! A one-shot storm: containers that live milliseconds, started as fast as this machine can
//! start them with real runc and the real Docker Engine, one at a time and several at once.
//! Per row: containers started per second, how many capmon attributed with their exact
//! granted and used sets, how many it lost, and the daemon's CPU while it lasted.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use capmon::testbed::{engines, rootfs};
use serde_json::Value;

use crate::daemon::{cpu_ticks, get, metric, start};

/// The workload: one `CAP_CHOWN` check, then exit.
const CHOWN: &[&str] = &["/bin/chown", "1:2", "/etc/hostname"];
/// The capabilities the runc containers get.
const RUNC_CAPS: &[&str] = &["CAP_CHOWN", "CAP_KILL"];

#[derive(Clone, Copy)]
enum Engine {
    Runc,
    Docker,
}

struct Row {
    engine: Engine,
    at_once: usize,
    containers: usize,
}

const ROWS: &[Row] = &[
    Row {
        engine: Engine::Runc,
        at_once: 1,
        containers: 100,
    },
    Row {
        engine: Engine::Runc,
        at_once: 8,
        containers: 200,
    },
    Row {
        engine: Engine::Runc,
        at_once: 16,
        containers: 400,
    },
    Row {
        engine: Engine::Docker,
        at_once: 1,
        containers: 20,
    },
    Row {
        engine: Engine::Docker,
        at_once: 8,
        containers: 40,
    },
];

/// What runs one container: the shared root file system and the `runc spec` template.
struct Runc {
    dir: PathBuf,
    template: Value,
}

impl Runc {
    fn new(dir: &Path) -> anyhow::Result<Runc> {
        rootfs::busybox(&dir.join("rootfs"))?;
        let spec = dir.join("spec");
        fs::create_dir_all(&spec)?;
        let out = Command::new("runc")
            .args(["spec", "--bundle"])
            .arg(&spec)
            .output()
            .context("runc spec (Debian package runc: `cargo xtask setup`)")?;
        if !out.status.success() {
            bail!("runc spec failed: {out:?}");
        }
        let mut template: Value =
            serde_json::from_str(&fs::read_to_string(spec.join("config.json"))?)?;
        template["process"]["terminal"] = false.into();
        template["process"]["args"] = serde_json::json!(CHOWN);
        for set in ["bounding", "effective", "permitted"] {
            template["process"]["capabilities"][set] = serde_json::json!(RUNC_CAPS);
        }
        template["root"]["path"] = dir.join("rootfs").to_string_lossy().as_ref().into();
        template["root"]["readonly"] = false.into();
        Ok(Runc {
            dir: dir.to_owned(),
            template,
        })
    }

    /// Runs container `id` (cgroup `/docker/<id>`) to completion and deletes it.
    fn run(&self, id: &str) -> anyhow::Result<()> {
        let bundle = self.dir.join(id);
        fs::create_dir_all(&bundle)?;
        let mut spec = self.template.clone();
        spec["linux"]["cgroupsPath"] = format!("/docker/{id}").into();
        fs::write(bundle.join("config.json"), spec.to_string())?;
        let out = Command::new("runc")
            .arg("run")
            .arg("--bundle")
            .arg(&bundle)
            .arg(id)
            .stdin(Stdio::null())
            .output()
            .context("runc run")?;
        let _ = Command::new("runc")
            .args(["delete", "--force", id])
            .output();
        let _ = fs::remove_dir_all(&bundle);
        if !out.status.success() {
            bail!("runc run {id}: {out:?}");
        }
        Ok(())
    }
}

/// Starts `n` containers through `start_one`, `at_once` at a time.
fn storm(
    n: usize,
    at_once: usize,
    start_one: &(dyn Fn(usize) -> anyhow::Result<()> + Sync),
) -> anyhow::Result<()> {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..at_once)
            .map(|_| {
                s.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return Ok(());
                        }
                        start_one(i)?;
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().map_err(|_| anyhow::anyhow!("a worker panicked"))?)
    })
}

fn names(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// Why container `c` (as `/v1/containers` lists it) is not attributed exactly, if it is not.
fn inexact(c: &Value, granted: &BTreeSet<String>) -> Option<String> {
    let used: BTreeSet<String> = ["CAP_CHOWN".to_owned()].into();
    if c["running"] != false {
        return Some("still running".into());
    }
    let (g, u) = (names(&c["granted"]), names(&c["used"]));
    (g != *granted || u != used).then(|| format!("granted {g:?}, used {u:?}"))
}

/// How many of `keys` (ids or names, by `field`) capmon lists as exited with exactly
/// `granted` and `CAP_CHOWN` used, and why the others are not; waits up to 30 s.
fn attributed(
    port: u16,
    field: &str,
    keys: &BTreeSet<String>,
    granted: &BTreeSet<String>,
) -> (usize, Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list: Value = get(port, "/v1/containers")
            .and_then(|b| serde_json::from_str(&b).ok())
            .unwrap_or_default();
        let mut why: Vec<String> = Vec::new();
        let mut seen = BTreeSet::new();
        for c in list["containers"].as_array().into_iter().flatten() {
            let Some(k) = c[field].as_str().filter(|k| keys.contains(*k)) else {
                continue;
            };
            seen.insert(k.to_owned());
            if let Some(w) = inexact(c, granted) {
                why.push(format!("{k}: {w}"));
            }
        }
        why.extend(keys.difference(&seen).map(|k| format!("{k}: not listed")));
        if why.is_empty() || Instant::now() > deadline {
            return (keys.len() - why.len(), why);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn unattributed(port: u16) -> f64 {
    metric(
        &get(port, "/metrics").unwrap_or_default(),
        "capmon_pipeline_dropped_total{stage=\"unattributed\"}",
    )
}

pub fn bench() -> anyhow::Result<()> {
    let capmon = std::env::current_exe()?.with_file_name("capmon");
    let dir = std::env::temp_dir().join(format!("capmon-storm-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let runc = Runc::new(&dir)?;
    let engines = engines::Engines::start();
    if let Err(e) = &engines {
        println!("(no Docker rows: {e:#})");
    }
    let state = dir.join("state");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut daemon = start(&capmon, port, &state, engines::DOCKER_SOCK)?;
    let pid = daemon.id();
    let result = (|| -> anyhow::Result<()> {
        let t = Instant::now();
        while get(port, "/healthz").is_none() {
            if t.elapsed() > Duration::from_secs(30) {
                bail!("the daemon did not answer within 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // SAFETY: sysconf takes no pointers.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        println!(
            "\none-shot storm: each container runs `chown 1:2 /etc/hostname` and exits; capmon run with its defaults\n"
        );
        println!(
            "| engine | at once | containers | started per second | attributed with exact sets | lost | cgroups dropped unattributed | daemon CPU (% of a core, storm until all attributed) |\n| --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        let docker_caps: BTreeSet<String> = capmon_core::seccomp::DOCKER_DEFAULT_CAPS
            .iter()
            .map(|s| s.to_string())
            .collect();
        let runc_caps: BTreeSet<String> = RUNC_CAPS.iter().map(|s| s.to_string()).collect();
        let mut notes: Vec<String> = Vec::new();
        for (r, row) in ROWS.iter().enumerate() {
            let (label, field, granted) = match row.engine {
                Engine::Runc => ("runc", "id", &runc_caps),
                Engine::Docker if engines.is_err() => continue,
                Engine::Docker => ("Docker Engine", "name", &docker_caps),
            };
            let key = |i: usize| match row.engine {
                Engine::Runc => format!("{:016x}{:048x}", 0x5701_0000_0000_0000u64 | r as u64, i),
                Engine::Docker => format!("capmon-storm-{}-{r}-{i}", std::process::id()),
            };
            let lost0 = unattributed(port);
            let (c0, t0) = (cpu_ticks(pid), Instant::now());
            storm(row.containers, row.at_once, &|i| match row.engine {
                Engine::Runc => runc.run(&key(i)),
                Engine::Docker => {
                    let out = engines::docker_run(&["--name", &key(i)], CHOWN)?;
                    if !out.status.success() {
                        bail!("docker run {}: {out:?}", key(i));
                    }
                    Ok(())
                }
            })?;
            let rate = row.containers as f64 / t0.elapsed().as_secs_f64();
            let keys: BTreeSet<String> = (0..row.containers).map(key).collect();
            let (exact, why) = attributed(port, field, &keys, granted);
            notes.extend(
                why.into_iter()
                    .take(3)
                    .map(|w| format!("{label}, {} at once: {w}", row.at_once)),
            );
            let cpu = (cpu_ticks(pid) - c0) as f64 / hz / t0.elapsed().as_secs_f64() * 100.0;
            println!(
                "| {label} | {} | {} | {rate:.1} | {exact} | {} | {:.0} | {cpu:.1} |",
                row.at_once,
                row.containers,
                row.containers - exact,
                unattributed(port) - lost0
            );
        }
        for note in notes {
            println!("- not attributed exactly: {note}");
        }
        Ok(())
    })();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = daemon.wait();
    drop(engines);
    let _ = fs::remove_dir_all(&dir);
    result
}

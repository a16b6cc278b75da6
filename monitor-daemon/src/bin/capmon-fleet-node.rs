//! capmon-fleet-node DIR: the guest's side of the fleet test (`capmon::testbed::fleet`), run by
//! `cargo xtask vm`'s fleet guest. Starts `capmon run` on every address (the host reaches it
//! through qemu's port forward), starts the guest's replicas, writes `DIR/ready` once the
//! daemon lists them as one workload, waits for `DIR/stop` (or 15 minutes), then stops them
//! and the daemon and writes `DIR/done` (`ok`, or what went wrong; the daemon's log is
//! `DIR/daemon.log`).

use std::{
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use capmon::testbed::fleet;

fn main() {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: capmon-fleet-node DIR");
        std::process::exit(2);
    };
    let result = run(&dir);
    let text = match &result {
        Ok(()) => "ok\n".to_owned(),
        Err(e) => format!("error: {e:#}\n"),
    };
    let _ = fs::write(dir.join("done"), &text);
    eprint!("capmon-fleet-node: {text}");
    std::process::exit(i32::from(result.is_err()));
}

fn run(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
    let capmon = std::env::current_exe()?
        .parent()
        .context("the binary's folder")?
        .join("capmon");
    let state = std::env::temp_dir().join("capmon-fleet-node-state");
    let _ = fs::remove_dir_all(&state);
    let listen = format!("0.0.0.0:{}", fleet::GUEST_PORT);
    let mut daemon = fleet::start_daemon(&capmon, &listen, &state, &dir.join("daemon.log"))?;
    let local = format!("127.0.0.1:{}", fleet::GUEST_PORT);
    let up = wait_until(Duration::from_secs(180), || {
        fleet::http_get(&local, "/healthz").is_ok_and(|(s, _)| s == 200)
    });
    if !up {
        let _ = daemon.kill();
        bail!("the daemon did not answer /healthz within 180 s (see daemon.log)");
    }
    let replicas = fleet::start_replicas("runc", &fleet::GUEST_PODS, fleet::GUEST_WORK)?;
    let workload = fleet::wait_for_workload(&local, 2, Duration::from_secs(180))?;
    fs::write(dir.join("ready"), serde_json::to_string_pretty(&workload)?)?;
    wait_until(Duration::from_secs(900), || dir.join("stop").exists());
    drop(replicas);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    let status = daemon.wait()?;
    if !status.success() {
        bail!("the daemon ended with {status}");
    }
    Ok(())
}

/// Polls `ok` every 200 ms until it holds (true) or `bound` passes (false).
fn wait_until(bound: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

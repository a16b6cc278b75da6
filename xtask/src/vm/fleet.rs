//! The fleet row (issue 14, part 5): two capmon nodes on two kernels under one real Prometheus.
//! A guest of the matrix's first kernel boots with qemu's restricted user network and one port
//! forwarded from the host's loopback to its daemon; in it `capmon-fleet-node` runs the daemon
//! and the guest's replicas (`capmon::testbed::fleet`). Once it says it is ready, the host runs
//! the `fleet` test binary with `CAPMON_FLEET_NODE=127.0.0.1:PORT`: its own daemon and
//! replicas, Prometheus scraping both, `capmon fleet` and the closed loop. Then the node is
//! told to stop and the guest powers off.

use std::{
    fs,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::{
    binaries::Built,
    guest::{self, Boot},
    host,
    kernels::Kernel,
    report::Row,
    script::{GuestScript, quote},
};

/// The daemon's port in the guest (`capmon::testbed::fleet::GUEST_PORT`).
const GUEST_PORT: u16 = 9477;
/// How long the node may take to boot, start its daemon and replicas (TCG: about a minute).
const READY_BOUND: Duration = Duration::from_secs(420);

/// What the fleet row needs.
pub struct Fleet<'a> {
    pub kernel: &'a Kernel,
    pub initramfs: &'a Path,
    /// The guests' share, with the release build in `bin/`.
    pub share: &'a Path,
    /// The host's debug build (its `fleet` test binary).
    pub host: &'a Built,
    /// The release build the guest runs (`capmon`, `capmon-fleet-node`).
    pub guest: &'a Built,
    pub tcg: &'a str,
    /// Bound for the host's test binary.
    pub bound: Duration,
}

impl Fleet<'_> {
    /// The row of a fleet that could not run, with why.
    pub fn failed(&self, why: String) -> Row {
        Row {
            kernel: format!("host+{}", self.kernel.spec.name),
            release: self.kernel.release.clone(),
            mode: "fleet".into(),
            logs: self.share.join("fleet"),
            problems: vec![format!("the fleet row could not run: {why}")],
            ..Row::default()
        }
    }
}

/// A free port on the host's loopback.
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The guest's script: the usual set-up, the network card up at [`guest::GUEST_ADDR`], then
/// the node until it is told to stop.
fn script(guest: &Built) -> Result<String> {
    let node = guest
        .programs
        .iter()
        .find(|(n, _)| n == "capmon-fleet-node")
        .map(|(_, p)| p.to_string_lossy().into_owned())
        .context("the release build has no capmon-fleet-node (feature test-support)")?;
    let base = GuestScript {
        mode: "auto",
        env: &[],
        out: "fleet",
        binaries: Vec::new(),
        programs: &guest.programs,
        threads: 1,
        binary_timeout: 0,
        bench: false,
    };
    Ok(format!(
        "{}{}ip link set lo up\nip link set eth0 up\nip addr add {}/24 dev eth0\n\
         ip addr show eth0 > $O/net.txt 2>&1\n{} $O > $O/node.log 2>&1\necho finished > $O/finished\n",
        base.header(),
        base.bind_programs(),
        guest::GUEST_ADDR,
        quote(&node)
    ))
}

/// Boots the node, runs the host's side against it, and stops it: the row.
pub fn row(f: &Fleet<'_>) -> Result<Row> {
    let start = Instant::now();
    let out = f.share.join("fleet");
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out).with_context(|| format!("mkdir {}", out.display()))?;
    fs::write(out.join("run.sh"), script(f.guest)?)?;
    let port = free_port()?;
    let boot = Boot {
        vmlinuz: &f.kernel.vmlinuz(),
        initramfs: f.initramfs,
        share: f.share,
        script: "fleet/run.sh",
        console: out.join("console.log"),
        timeout: READY_BOUND + f.bound + Duration::from_secs(120),
        tcg: f.tcg,
        forward: Some((port, GUEST_PORT)),
    };
    let Some(fleet_test) = f.host.tests.iter().find(|t| t.name == "fleet") else {
        bail!("the host's build has no fleet test binary");
    };
    let host_build = Built {
        tests: vec![fleet_test.clone()],
        programs: f.host.programs.clone(),
    };
    eprintln!(
        "vm: fleet: booting {} as the second node (127.0.0.1:{port} -> its daemon)",
        f.kernel.release
    );
    let mut row = std::thread::scope(|s| -> Result<Row> {
        let guest = s.spawn(|| boot.run());
        let ready = loop {
            if out.join("ready").exists() {
                break true;
            }
            if out.join("finished").exists() || guest.is_finished() {
                break false;
            }
            if start.elapsed() > READY_BOUND {
                let _ = fs::write(out.join("timed-out"), "");
                break false;
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        let row = if ready {
            eprintln!("vm: fleet: the guest node is ready; the host's side runs");
            host::run(
                &host_build,
                &[Vec::new()],
                &out.join("host"),
                f.bound,
                &[("CAPMON_FLEET_NODE", format!("127.0.0.1:{port}"))],
            )
        } else {
            Ok(Row::default())
        };
        // The node waits for this (else 15 minutes, past the guest's bound).
        let stopped = fs::write(out.join("stop"), "");
        let exit = guest.join();
        let mut row = row?;
        if let Err(e) = stopped {
            row.problems
                .push(format!("cannot tell the node to stop: {e}"));
        }
        let exit = match exit {
            Ok(Ok(exit)) => Some(exit),
            Ok(Err(e)) => {
                row.problems.push(format!("the fleet guest: {e:#}"));
                None
            }
            Err(_) => {
                row.problems
                    .push("the fleet guest's thread panicked".into());
                None
            }
        };
        if !ready {
            let when = if out.join("timed-out").exists() {
                format!("within {} s", READY_BOUND.as_secs())
            } else {
                "before it ended".to_owned()
            };
            row.problems.push(format!(
                "the guest node was not ready {when}: {}; node log:\n{}\nconsole:\n{}",
                fs::read_to_string(out.join("done")).unwrap_or_else(|_| "no result".into()),
                tail(&out.join("node.log"), 10),
                guest::console_tail(&boot.console, 10)
            ));
        }
        match fs::read_to_string(out.join("done")) {
            Ok(done) if done.trim() == "ok" => {}
            Ok(done) if ready => row
                .problems
                .push(format!("the guest node: {}", done.trim())),
            _ if ready => row.problems.push(format!(
                "the guest node did not stop cleanly ({exit:?}); console:\n{}",
                guest::console_tail(&boot.console, 10)
            )),
            _ => {}
        }
        Ok(row)
    })?;
    row.kernel = format!("host+{}", f.kernel.spec.name);
    row.release = f.kernel.release.clone();
    row.mode = "fleet".into();
    row.logs = out;
    row.took = start.elapsed();
    Ok(row)
}

/// The last `n` lines of a file.
fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_brings_the_network_up_and_runs_the_node() {
        let guest = Built {
            tests: Vec::new(),
            programs: vec![
                ("capmon".into(), "/w/target/release/capmon".into()),
                (
                    "capmon-fleet-node".into(),
                    "/w/target/release/capmon-fleet-node".into(),
                ),
            ],
        };
        let s = script(&guest).expect("script");
        assert!(s.contains("O=$S/fleet\n"), "{s}");
        assert!(
            s.contains("ip link set eth0 up\nip addr add 10.0.2.15/24 dev eth0\n"),
            "{s}"
        );
        assert!(
            s.contains("'/w/target/release/capmon-fleet-node' $O > $O/node.log"),
            "{s}"
        );
        assert!(script(&Built::default()).is_err());
    }
}

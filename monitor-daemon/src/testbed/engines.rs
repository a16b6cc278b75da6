//! Debian's containerd 1.6 and Docker Engine 20.10 (`cargo xtask setup` installs both),
//! started on demand and stopped when the [`Engines`] value is dropped, and a busybox image
//! made without a registry (`docker import` of a busybox-static root file system, then
//! `docker save | ctr import` for containerd's `k8s.io` namespace).
//!
//! An engine that already answers (a developer's own dockerd) is used as it is and left
//! running.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

/// Debian's Docker client: `/usr/local/bin/docker` on some images is a newer client alone.
pub const DOCKER: &str = "/usr/bin/docker";
pub const CTR: &str = "/usr/bin/ctr";
pub const DOCKERD: &str = "/usr/sbin/dockerd";
pub const CONTAINERD: &str = "/usr/bin/containerd";
pub const DOCKER_SOCK: &str = "/var/run/docker.sock";
const CONTAINERD_SOCK: &str = "/run/containerd/containerd.sock";
/// The image the tests and the benchmark run.
pub const IMAGE: &str = "capmon-test-busybox:latest";
/// The same image as containerd names it after `ctr images import`.
pub const CTR_IMAGE: &str = "docker.io/library/capmon-test-busybox:latest";

/// containerd and dockerd, running until this is dropped (the ones this started).
pub struct Engines {
    started: Vec<(String, Child)>,
    logs: PathBuf,
}

fn quiet(cmd: &mut Command) -> Option<Output> {
    cmd.stdin(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
}

fn answers(bin: &str, args: &[&str]) -> bool {
    quiet(Command::new(bin).args(args)).is_some()
}

fn wait_until(what: &str, timeout: Duration, ok: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !ok() {
        if Instant::now() > deadline {
            bail!("{what}: not within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Runs `producer`, piping its output into `consumer`; fails naming the step that failed.
fn pipe(mut producer: Command, mut consumer: Command) -> anyhow::Result<()> {
    let mut p = producer
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("run {producer:?}"))?;
    let out = consumer
        .stdin(p.stdout.take().context("pipe")?)
        .output()
        .with_context(|| format!("run {consumer:?}"))?;
    let status = p.wait()?;
    if !status.success() || !out.status.success() {
        bail!("{producer:?} | {consumer:?} failed: {status}, {out:?}");
    }
    Ok(())
}

impl Engines {
    /// Starts containerd and dockerd unless they already answer, and makes the image.
    pub fn start() -> anyhow::Result<Engines> {
        for bin in [DOCKERD, CONTAINERD, DOCKER, CTR] {
            if !Path::new(bin).exists() {
                bail!(
                    "{bin} is missing: `cargo xtask setup` installs Debian's docker.io and containerd"
                );
            }
        }
        let logs = std::env::temp_dir().join(format!("capmon-engines-{}", std::process::id()));
        fs::create_dir_all(&logs).with_context(|| format!("mkdir {}", logs.display()))?;
        let mut engines = Engines {
            started: Vec::new(),
            logs,
        };
        if !answers(CTR, &["version"]) {
            engines.spawn("containerd", &[CONTAINERD])?;
            wait_until("containerd answers", Duration::from_secs(30), || {
                Path::new(CONTAINERD_SOCK).exists() && answers(CTR, &["version"])
            })
            .with_context(|| engines.logs())?;
        }
        if !answers(DOCKER, &["version"]) {
            engines.spawn(
                "dockerd",
                &[
                    DOCKERD,
                    "--containerd",
                    CONTAINERD_SOCK,
                    "--iptables=false",
                    "--ip-masq=false",
                    "--bridge=none",
                ],
            )?;
            wait_until("dockerd answers", Duration::from_secs(60), || {
                answers(DOCKER, &["version"])
            })
            .with_context(|| engines.logs())?;
        }
        engines.make_images()?;
        Ok(engines)
    }

    fn spawn(&mut self, name: &str, argv: &[&str]) -> anyhow::Result<()> {
        let path = self.logs.join(format!("{name}.log"));
        let log = fs::File::create(&path).with_context(|| format!("create {}", path.display()))?;
        let child = Command::new(argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {name}"))?;
        self.started.push((name.to_owned(), child));
        Ok(())
    }

    /// The busybox image in Docker and in containerd's `k8s.io` namespace (made once; the
    /// engines' own stores keep it between runs).
    fn make_images(&self) -> anyhow::Result<()> {
        if !answers(DOCKER, &["image", "inspect", IMAGE]) {
            let root = std::env::temp_dir().join(format!("capmon-image-{}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            super::rootfs::busybox(&root)?;
            let mut tar = Command::new("tar");
            tar.arg("-C").arg(&root).args(["-c", "."]);
            let mut import = Command::new(DOCKER);
            import.args(["import", "-", IMAGE]);
            pipe(tar, import)?;
            let _ = fs::remove_dir_all(&root);
        }
        let listed = quiet(Command::new(CTR).args(["-n", "k8s.io", "images", "ls", "-q"]))
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if !listed.lines().any(|l| l == CTR_IMAGE) {
            let mut save = Command::new(DOCKER);
            save.args(["save", IMAGE]);
            let mut import = Command::new(CTR);
            import.args(["-n", "k8s.io", "images", "import", "-"]);
            pipe(save, import)?;
        }
        Ok(())
    }

    /// The last lines of the logs of the engines this started, for an error message.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for (name, _) in &self.started {
            let text =
                fs::read_to_string(self.logs.join(format!("{name}.log"))).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            all.push_str(&format!("--- {name} (last lines)\n"));
            for l in &lines[lines.len().saturating_sub(20)..] {
                all.push_str(l);
                all.push('\n');
            }
        }
        all
    }
}

impl Drop for Engines {
    /// Stops what this started, dockerd before containerd.
    fn drop(&mut self) {
        while let Some((_, mut child)) = self.started.pop() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.logs);
    }
}

/// `docker run --rm --network none ARGS... IMAGE CMD...`: its output.
pub fn docker_run(args: &[&str], cmd: &[&str]) -> anyhow::Result<Output> {
    Command::new(DOCKER)
        .args(["run", "--rm", "--network", "none"])
        .args(args)
        .arg(IMAGE)
        .args(cmd)
        .stdin(Stdio::null())
        .output()
        .context("run docker")
}

//! A real `capmon run` for the tests, its HTTP API and metrics, and a real Prometheus
//! scraping it.

#[allow(unused_imports)]
use super::*;

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `GET path` over plain HTTP/1.0: (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

pub fn get_json(port: u16, path: &str) -> (u16, Value) {
    let (status, body) = http_get(port, path).unwrap_or_else(|| panic!("GET {path}: no answer"));
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"));
    (status, v)
}

/// The `capmon_pipeline_dropped_total` sample of `stage` in the daemon's `/metrics`.
pub fn dropped(port: u16, stage: &str) -> Option<f64> {
    let (_, text) = http_get(port, "/metrics")?;
    let prefix = format!("capmon_pipeline_dropped_total{{stage=\"{stage}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

/// Every panel query of the Grafana dashboards, as (file, panel title, PromQL), from
/// `target/dashboard-queries.json` (`cargo xtask test` writes it from `dashboards/*.json`).
pub fn dashboard_queries() -> Vec<(String, String, String)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-queries.json");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: `cargo xtask test` writes it from dashboards/*.json before this tier",
            path.display()
        )
    });
    serde_json::from_str(&text).expect("queries JSON")
}

/// A real Prometheus (Debian package) scraping capmon daemons on loopback every second.
pub struct Prometheus {
    child: Child,
    pub port: u16,
}

impl Prometheus {
    /// Starts it with its config and data under `dir`, scraping `127.0.0.1:<target>`.
    pub fn start(dir: &Path, targets: &[u16]) -> Prometheus {
        let port = free_port();
        let config = dir.join("prometheus.yml");
        let targets: Vec<String> = targets.iter().map(|t| format!("'127.0.0.1:{t}'")).collect();
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: capmon\n    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            ),
        )
        .expect("prometheus.yml");
        let check = Command::new("promtool")
            .args(["check", "config"])
            .arg(&config)
            .output()
            .expect("promtool (Debian package prometheus; `cargo xtask setup` installs it)");
        assert!(check.status.success(), "{check:?}");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package prometheus)");
        Prometheus { child, port }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `capmon run`.
pub struct Daemon {
    pub child: Child,
    pub port: u16,
    pub state: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(capmon: &str, state: &Path, port: u16, extra: &[&str]) -> Daemon {
        Daemon::start_wrapped(&[], capmon, state, port, extra)
    }

    /// Like [`Daemon::start`], under a wrapper command (`setpriv ...`).
    pub fn start_wrapped(
        wrapper: &[&str],
        capmon: &str,
        state: &Path,
        port: u16,
        extra: &[&str],
    ) -> Daemon {
        let log = state.with_extension(format!("log-{}", container_id()));
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(capmon);
                c
            }
            None => Command::new(capmon),
        };
        cmd.args(["run", "--state-dir"])
            .arg(state)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--batch-interval-ms", "200"]);
        // Quick polls unless the test sets its own interval.
        if !extra.contains(&"--poll-interval-ms") {
            cmd.args(["--poll-interval-ms", "200"]);
        }
        // No Docker Engine unless the test says where it is (the engine tests do).
        if !extra.contains(&"--docker-socket") {
            cmd.args(["--docker-socket", "/nonexistent/docker.sock"]);
        }
        let child = cmd
            .args(extra)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start capmon run");
        let d = Daemon {
            child,
            port,
            state: state.to_owned(),
            log,
        };
        // 20 s; the matrix's time factor under TCG, where loading the kprobe mode's programs
        // alone took 21 s on a busy machine.
        let bound = super::bound(Duration::from_secs(20));
        let deadline = Instant::now() + bound;
        while Instant::now() < deadline {
            if http_get(port, "/healthz").is_some_and(|(s, _)| s == 200) {
                return d;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "capmon run did not answer /healthz within {bound:?}: {}",
            fs::read_to_string(&d.log).unwrap_or_default()
        );
    }

    /// Polls `GET path` until `ok` holds (10 s).
    pub fn wait_for(&self, path: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        self.poll_for(path, Duration::from_secs(10), ok)
            .unwrap_or_else(|last| panic!("{what}: not seen within 10 s at {path}: {last:#}"))
    }

    /// Polls `GET path` every 100 ms for at most `within` until `ok` holds: the answer that
    /// did, or the last one seen.
    pub fn poll_for(
        &self,
        path: &str,
        within: Duration,
        ok: impl Fn(&Value) -> bool,
    ) -> Result<Value, Value> {
        let deadline = Instant::now() + within;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            if let Some((200, body)) = http_get(self.port, path) {
                last = serde_json::from_str(&body).unwrap_or_default();
                if ok(&last) {
                    return Ok(last);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(last)
    }

    /// Whether the daemon still runs.
    pub fn child_alive(&self) -> bool {
        // No signal: only checks that the pid exists.
        let exists = kill(Pid::from_raw(self.child.id() as i32), None).is_ok();
        exists
            && fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
                .is_ok_and(|s| !s.contains(") Z "))
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait: (exit status, time it took).
    pub fn terminate(mut self) -> (std::process::ExitStatus, Duration) {
        let t = Instant::now();
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let status = self.child.wait().expect("wait capmon");
        (status, t.elapsed())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

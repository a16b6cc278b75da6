//! `capmon run` configuration: defaults that work with no configuration, overridden by a TOML
//! file, then environment variables, then flags (the last two through clap).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown key or a bad value.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, with line and column.
        message: String,
    },
    /// A value out of range.
    #[error("bad config value {key} = {value}: {problem}")]
    Value {
        /// The key.
        key: &'static str,
        /// The value.
        value: String,
        /// What is wrong.
        problem: &'static str,
    },
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The daemon's settings. Every field has a default; the TOML file uses these names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the HTTP API and `/metrics`. Binding anything but loopback exposes what
    /// every container on the host does to whoever can reach it: put it behind a firewall or
    /// an authenticating proxy.
    pub listen: SocketAddr,
    /// Directory of the SQLite store.
    pub state_dir: PathBuf,
    /// How often the kernel maps are read, in milliseconds.
    pub poll_interval_ms: u64,
    /// How often changes are written to the store, in milliseconds: a crash loses at most
    /// this much.
    pub batch_interval_ms: u64,
    /// How long exited containers are kept, in hours (then pruned from the store and metrics).
    pub retention_hours: u64,
    /// How long an exited container's series stay in `/metrics`, in seconds (a workload's
    /// while any of its containers runs or exited within it). The API and the store keep
    /// exited containers for `retention_hours`; without this window a node that churns
    /// containers would export every one of the week's containers on every scrape.
    pub metrics_exited_secs: u64,
    /// No longer used: the probe thread hands the model only its newest snapshot (one not
    /// taken yet is superseded by the next, which carries the same cumulative counts). Still
    /// read and checked, so that configuration files that set it keep loading.
    pub queue_capacity: usize,
    /// Docker-compatible API socket for container names and images (missing is fine).
    pub docker_socket: PathBuf,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter (`info`, `capmon=debug`, ...).
    pub log_level: String,
    /// How capability checks are hooked: `auto` (the best this kernel attaches), `tp_btf`,
    /// `fexit` or `kprobe` (forced: no other is tried).
    pub probe_mode: String,
    /// Whether `/metrics` carries `capmon_workload_syscall_observed` (one series per
    /// workload and syscall it made: the largest family; off for very large nodes).
    pub workload_syscall_series: bool,
    /// A file holding the API's bearer token: when set, every request but `GET /healthz`
    /// needs `Authorization: Bearer <token>` (`/metrics` too). The file must not be
    /// accessible by group or others (mode 0600 or 0400); re-read on SIGHUP.
    pub api_token_file: Option<PathBuf>,
    /// Connections the API serves at once; beyond, new ones are closed at once (also lowered
    /// to what the open-file limit allows).
    pub api_max_connections: u64,
    /// Seconds a client has to send a request's headers, counted from the connection's
    /// start or the end of the previous response (so also how long an idle keep-alive
    /// connection stays open).
    pub api_header_timeout_secs: u64,
    /// Seconds without a byte moving either way after which a connection is closed (a
    /// client that stops sending its body or stops reading its answer).
    pub api_idle_timeout_secs: u64,
    /// Largest request head (request line and headers), in bytes; beyond: 431.
    pub api_max_header_bytes: u64,
    /// Largest request body, in bytes (the API only has GETs); beyond: 413.
    pub api_max_body_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 9477)),
            state_dir: PathBuf::from("/var/lib/capmon"),
            poll_interval_ms: 2000,
            batch_interval_ms: 5000,
            retention_hours: 24 * 7,
            metrics_exited_secs: 120,
            queue_capacity: 1024,
            docker_socket: PathBuf::from("/var/run/docker.sock"),
            log_format: LogFormat::Text,
            log_level: "info".into(),
            probe_mode: "auto".into(),
            workload_syscall_series: true,
            api_token_file: None,
            api_max_connections: 4096,
            api_header_timeout_secs: 10,
            api_idle_timeout_secs: 30,
            api_max_header_bytes: 16 * 1024,
            api_max_body_bytes: 4096,
        }
    }
}

/// Overrides from the environment and flags (`None`: keep the file's or the default value).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Overrides {
    /// Address of the HTTP API and /metrics [default: 127.0.0.1:9477]. Anything but loopback
    /// exposes every container's activity to whoever reaches it.
    #[arg(long, env = "CAPMON_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory of the SQLite store [default: /var/lib/capmon].
    #[arg(long, env = "CAPMON_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// How often the kernel maps are read, in ms [default: 2000].
    #[arg(long, env = "CAPMON_POLL_INTERVAL_MS")]
    pub poll_interval_ms: Option<u64>,
    /// How often changes are written to the store, in ms; a crash loses at most this much
    /// [default: 5000].
    #[arg(long, env = "CAPMON_BATCH_INTERVAL_MS")]
    pub batch_interval_ms: Option<u64>,
    /// Hours exited containers are kept [default: 168].
    #[arg(long, env = "CAPMON_RETENTION_HOURS")]
    pub retention_hours: Option<u64>,
    /// Seconds an exited container stays in /metrics (the API keeps it for the retention)
    /// [default: 120].
    #[arg(long, env = "CAPMON_METRICS_EXITED_SECS")]
    pub metrics_exited_secs: Option<u64>,
    /// Docker-compatible API socket for names and images [default: /var/run/docker.sock].
    #[arg(long, env = "CAPMON_DOCKER_SOCKET")]
    pub docker_socket: Option<PathBuf>,
    /// Log filter, e.g. info or capmon=debug [default: info].
    #[arg(long, env = "CAPMON_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// How capability checks are hooked: auto, tp_btf, fexit or kprobe [default: auto].
    #[arg(long, env = "CAPMON_PROBE_MODE")]
    pub probe_mode: Option<String>,
    /// Whether /metrics has one series per workload and syscall
    /// (capmon_workload_syscall_observed) [default: true].
    #[arg(long, env = "CAPMON_WORKLOAD_SYSCALL_SERIES")]
    pub workload_syscall_series: Option<bool>,
    /// File holding the API's bearer token: every request but GET /healthz then needs
    /// `Authorization: Bearer <token>`. Mode 0600 or 0400 (group and others: no access);
    /// re-read on SIGHUP [default: none, no token].
    #[arg(long, env = "CAPMON_API_TOKEN_FILE", value_name = "FILE")]
    pub api_token_file: Option<PathBuf>,
    /// Connections the API serves at once; beyond, new ones are closed [default: 4096].
    #[arg(long, env = "CAPMON_API_MAX_CONNECTIONS")]
    pub api_max_connections: Option<u64>,
    /// Seconds to send a request's headers (from the connection's start or the previous
    /// answer: idle keep-alive connections close then too) [default: 10].
    #[arg(long, env = "CAPMON_API_HEADER_TIMEOUT_SECS")]
    pub api_header_timeout_secs: Option<u64>,
    /// Seconds without a byte moving after which a connection is closed [default: 30].
    #[arg(long, env = "CAPMON_API_IDLE_TIMEOUT_SECS")]
    pub api_idle_timeout_secs: Option<u64>,
    /// Largest request line and headers, in bytes; beyond: 431 [default: 16384].
    #[arg(long, env = "CAPMON_API_MAX_HEADER_BYTES")]
    pub api_max_header_bytes: Option<u64>,
    /// Largest request body, in bytes; beyond: 413 [default: 4096].
    #[arg(long, env = "CAPMON_API_MAX_BODY_BYTES")]
    pub api_max_body_bytes: Option<u64>,
}

impl Config {
    /// Defaults, then `file` (when given, or `/etc/capmon/capmon.toml` when it exists), then
    /// `overrides`; validated.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let default_file = Path::new("/etc/capmon/capmon.toml");
        let path = match file {
            Some(p) => Some(p),
            None if default_file.exists() => Some(default_file),
            None => None,
        };
        let mut cfg = match path {
            Some(p) => Config::from_toml(
                p,
                &std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_owned(),
                    source,
                })?,
            )?,
            None => Config::default(),
        };
        let o = overrides.clone();
        if let Some(v) = o.listen {
            cfg.listen = v;
        }
        if let Some(v) = o.state_dir {
            cfg.state_dir = v;
        }
        if let Some(v) = o.poll_interval_ms {
            cfg.poll_interval_ms = v;
        }
        if let Some(v) = o.batch_interval_ms {
            cfg.batch_interval_ms = v;
        }
        if let Some(v) = o.retention_hours {
            cfg.retention_hours = v;
        }
        if let Some(v) = o.metrics_exited_secs {
            cfg.metrics_exited_secs = v;
        }
        if let Some(v) = o.docker_socket {
            cfg.docker_socket = v;
        }
        if let Some(v) = o.log_level {
            cfg.log_level = v;
        }
        if let Some(v) = o.probe_mode {
            cfg.probe_mode = v;
        }
        if let Some(v) = o.workload_syscall_series {
            cfg.workload_syscall_series = v;
        }
        if let Some(v) = o.api_token_file {
            cfg.api_token_file = Some(v);
        }
        if let Some(v) = o.api_max_connections {
            cfg.api_max_connections = v;
        }
        if let Some(v) = o.api_header_timeout_secs {
            cfg.api_header_timeout_secs = v;
        }
        if let Some(v) = o.api_idle_timeout_secs {
            cfg.api_idle_timeout_secs = v;
        }
        if let Some(v) = o.api_max_header_bytes {
            cfg.api_max_header_bytes = v;
        }
        if let Some(v) = o.api_max_body_bytes {
            cfg.api_max_body_bytes = v;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses a TOML text (`path` names it in errors).
    pub fn from_toml(path: &Path, text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = |key, value: u64, min: u64, max: u64, problem| {
            if value < min || value > max {
                Err(ConfigError::Value {
                    key,
                    value: value.to_string(),
                    problem,
                })
            } else {
                Ok(())
            }
        };
        check(
            "poll_interval_ms",
            self.poll_interval_ms,
            50,
            60_000,
            "must be between 50 and 60000",
        )?;
        check(
            "batch_interval_ms",
            self.batch_interval_ms,
            50,
            60_000,
            "must be between 50 and 60000",
        )?;
        check(
            "queue_capacity",
            self.queue_capacity as u64,
            1,
            1 << 20,
            "must be between 1 and 1048576",
        )?;
        check(
            "retention_hours",
            self.retention_hours,
            0,
            24 * 366 * 10,
            "must be at most ten years",
        )?;
        check(
            "metrics_exited_secs",
            self.metrics_exited_secs,
            0,
            24 * 3600,
            "must be at most a day (86400)",
        )?;
        check(
            "api_max_connections",
            self.api_max_connections,
            1,
            1 << 20,
            "must be between 1 and 1048576",
        )?;
        check(
            "api_header_timeout_secs",
            self.api_header_timeout_secs,
            1,
            3600,
            "must be between 1 and 3600",
        )?;
        check(
            "api_idle_timeout_secs",
            self.api_idle_timeout_secs,
            1,
            3600,
            "must be between 1 and 3600",
        )?;
        check(
            "api_max_header_bytes",
            self.api_max_header_bytes,
            1024,
            1 << 20,
            "must be between 1024 and 1048576",
        )?;
        check(
            "api_max_body_bytes",
            self.api_max_body_bytes,
            0,
            1 << 20,
            "must be at most 1048576",
        )?;
        if self
            .api_token_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(ConfigError::Value {
                key: "api_token_file",
                value: String::new(),
                problem: "must name a file",
            });
        }
        if !matches!(
            self.probe_mode.as_str(),
            "auto" | "tp_btf" | "fexit" | "kprobe"
        ) {
            return Err(ConfigError::Value {
                key: "probe_mode",
                value: self.probe_mode.clone(),
                problem: "must be auto, tp_btf, fexit or kprobe",
            });
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            return Err(ConfigError::Value {
                key: "log_level",
                value: self.log_level.clone(),
                problem: "not a log filter (try info, debug, or capmon=debug)",
            });
        }
        Ok(())
    }

    /// The poll interval.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    /// The batch interval.
    pub fn batch_interval(&self) -> Duration {
        Duration::from_millis(self.batch_interval_ms)
    }

    /// How long a client has to send a request's headers.
    pub fn api_header_timeout(&self) -> Duration {
        Duration::from_secs(self.api_header_timeout_secs)
    }

    /// How long a connection may go without a byte moving.
    pub fn api_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.api_idle_timeout_secs)
    }

    /// The retention, in seconds.
    pub fn retention_secs(&self) -> i64 {
        i64::try_from(self.retention_hours.saturating_mul(3600)).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_work_without_a_file() {
        let c = Config::load(None, &Overrides::default()).expect("defaults");
        assert_eq!(c.listen.to_string(), "127.0.0.1:9477");
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/capmon"));
    }

    #[test]
    fn file_then_overrides() {
        let dir = std::env::temp_dir().join(format!("capmon-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("capmon.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9999\"\nstate_dir = \"/tmp/x\"\nretention_hours = 1\n",
        )
        .expect("write");
        let c = Config::load(Some(&path), &Overrides::default()).expect("file");
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.retention_hours, 1);
        let o = Overrides {
            state_dir: Some("/tmp/y".into()),
            ..Default::default()
        };
        let c = Config::load(Some(&path), &o).expect("file");
        assert_eq!(c.state_dir, PathBuf::from("/tmp/y"));
        assert_eq!(c.listen.port(), 9999);
    }

    #[test]
    fn api_limits_and_token_file() {
        let c = Config::default();
        assert_eq!(c.api_token_file, None);
        assert_eq!(
            (
                c.api_max_connections,
                c.api_header_timeout_secs,
                c.api_idle_timeout_secs
            ),
            (4096, 10, 30)
        );
        assert_eq!(
            (c.api_max_header_bytes, c.api_max_body_bytes),
            (16384, 4096)
        );
        let p = Path::new("capmon.toml");
        let c = Config::from_toml(
            p,
            "api_token_file = \"/etc/capmon/token\"\napi_max_connections = 10\n\
             api_header_timeout_secs = 5\napi_idle_timeout_secs = 7\n\
             api_max_header_bytes = 8192\napi_max_body_bytes = 0\n",
        )
        .expect("parses");
        assert!(c.validate().is_ok());
        assert_eq!(c.api_token_file, Some(PathBuf::from("/etc/capmon/token")));
        assert_eq!(c.api_header_timeout(), Duration::from_secs(5));
        assert_eq!(c.api_idle_timeout(), Duration::from_secs(7));
        for (text, message) in [
            (
                "api_max_connections = 0",
                "bad config value api_max_connections = 0: must be between 1 and 1048576",
            ),
            (
                "api_header_timeout_secs = 0",
                "bad config value api_header_timeout_secs = 0: must be between 1 and 3600",
            ),
            (
                "api_idle_timeout_secs = 86400",
                "bad config value api_idle_timeout_secs = 86400: must be between 1 and 3600",
            ),
            (
                "api_max_header_bytes = 100",
                "bad config value api_max_header_bytes = 100: must be between 1024 and 1048576",
            ),
            (
                "api_max_body_bytes = 2000000",
                "bad config value api_max_body_bytes = 2000000: must be at most 1048576",
            ),
            (
                "metrics_exited_secs = 100000",
                "bad config value metrics_exited_secs = 100000: must be at most a day (86400)",
            ),
            (
                "api_token_file = \"\"",
                "bad config value api_token_file = : must name a file",
            ),
        ] {
            let c = Config::from_toml(p, text).expect("parses");
            assert_eq!(c.validate().expect_err(text).to_string(), message);
        }
        let err = Config::from_toml(p, "api_max_connections = -1").expect_err("negative");
        assert!(err.to_string().contains("api_max_connections"), "{err}");
        let o = Overrides {
            api_token_file: Some("/run/token".into()),
            api_max_connections: Some(2),
            api_idle_timeout_secs: Some(0),
            ..Default::default()
        };
        let err = Config::load(None, &o).expect_err("idle 0");
        assert!(
            err.to_string().contains("api_idle_timeout_secs = 0"),
            "{err}"
        );
    }

    #[test]
    fn bad_files_and_values_are_named() {
        let p = Path::new("/etc/capmon/capmon.toml");
        let err = Config::from_toml(p, "listen = \"nowhere\"\n").expect_err("bad address");
        let msg = err.to_string();
        assert!(
            msg.contains("/etc/capmon/capmon.toml") && msg.contains("line 1"),
            "{msg}"
        );
        let err = Config::from_toml(p, "poll_interval = 5\n").expect_err("unknown key");
        assert!(
            err.to_string().contains("unknown field `poll_interval`"),
            "{err}"
        );
        let err = Config::from_toml(p, "poll_interval_ms = \"fast\"\n").expect_err("type");
        assert!(err.to_string().contains("poll_interval_ms"), "{err}");
        let c = Config {
            poll_interval_ms: 0,
            ..Default::default()
        };
        assert_eq!(
            c.validate().expect_err("range").to_string(),
            "bad config value poll_interval_ms = 0: must be between 50 and 60000"
        );
        let c = Config::from_toml(p, "probe_mode = \"fentry\"\n").expect("parses");
        assert_eq!(
            c.validate().expect_err("mode").to_string(),
            "bad config value probe_mode = fentry: must be auto, tp_btf, fexit or kprobe"
        );
        let c = Config::from_toml(p, "probe_mode = \"kprobe\"\n").expect("parses");
        assert!(c.validate().is_ok());
        let err = Config::load(
            Some(Path::new("/nonexistent/capmon.toml")),
            &Overrides::default(),
        )
        .expect_err("missing");
        assert!(
            err.to_string()
                .starts_with("cannot read config file /nonexistent/capmon.toml")
        );
    }
}

//! The command line's definitions (clap): global flags and one variant per subcommand.

use std::path::PathBuf;

use capmon_core::{recommend::Format, report::verify::Compare, seccomp::ArchList};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "capmon",
    version,
    about = "Runtime capability and syscall monitor for Linux containers"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "CAPMON_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// The node daemon: watch every container, keep what they do in a store, serve the HTTP
    /// API and /metrics (default 127.0.0.1:9477), until SIGTERM or SIGINT (SIGHUP reloads
    /// the config file).
    ///
    /// Settings: defaults, then the TOML file (--config, or /etc/capmon/capmon.toml when it
    /// exists), then environment variables, then flags. Keys of the file: listen, state_dir,
    /// poll_interval_ms, batch_interval_ms, retention_hours, metrics_exited_secs,
    /// queue_capacity, docker_socket, log_format, log_level, probe_mode,
    /// workload_syscall_series, api_token_file, api_max_connections, api_header_timeout_secs,
    /// api_idle_timeout_secs, api_max_header_bytes, api_max_body_bytes.
    Run {
        /// TOML config file.
        #[arg(long, env = "CAPMON_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        overrides: Box<capmon_core::config::Overrides>,
    },
    /// Containers the daemon knows (a table), or one of them (by id, short id or name).
    Report {
        /// Address of the daemon's API.
        #[arg(long, env = "CAPMON_ADDR", default_value = "127.0.0.1:9477")]
        addr: String,
        /// The daemon's token file (its api_token_file), sent as a bearer token.
        #[arg(long, env = "CAPMON_API_TOKEN_FILE", value_name = "FILE")]
        api_token_file: Option<PathBuf>,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
        /// Workloads (containers merged: replicas, restarts) instead of containers; with a
        /// NAME, that workload with each capability's and syscall's coverage.
        #[arg(long)]
        workloads: bool,
        /// A container (full id, short id or name); with --workloads, a workload's name.
        container: Option<String>,
    },
    /// Workloads merged across every node Prometheus scraped (or Thanos, Mimir,
    /// VictoriaMetrics): a table; one workload's coverage (--workload); its merged
    /// recommendation (--workload --format); every workload's, as files (--output-dir).
    Fleet {
        /// The query API: http://HOST:PORT[/PATH].
        #[arg(long, env = "CAPMON_PROMETHEUS")]
        prometheus: String,
        /// One workload (as `capmon fleet` lists them).
        #[arg(long)]
        workload: Option<String>,
        /// How far back to look, as a PromQL duration.
        #[arg(long, default_value = "24h")]
        since: String,
        /// docker, compose, kubernetes, apparmor, seccomp, oci or spo.
        #[arg(long, value_parser = parse_format)]
        format: Option<Format>,
        /// Write every workload's recommendation (--format, default spo) here.
        #[arg(long, value_name = "DIR")]
        output_dir: Option<PathBuf>,
    },
    /// A container's least-privilege recommendation, from the daemon.
    Profile {
        /// Address of the daemon's API.
        #[arg(long, env = "CAPMON_ADDR", default_value = "127.0.0.1:9477")]
        addr: String,
        /// The daemon's token file (its api_token_file), sent as a bearer token.
        #[arg(long, env = "CAPMON_API_TOKEN_FILE", value_name = "FILE")]
        api_token_file: Option<PathBuf>,
        /// docker, compose, kubernetes, apparmor, seccomp, oci or spo.
        #[arg(long, value_parser = parse_format)]
        format: Format,
        /// Architectures the seccomp profile (seccomp, oci, spo) is written for: see
        /// `capmon record --help`. Default: the architecture the daemon recorded on.
        #[arg(long, value_name = "LIST", value_parser = parse_arches)]
        arch: Option<ArchList>,
        /// A workload's merged recommendation (`capmon report --workloads` lists them)
        /// instead of a container's; written only when every container of it was seen from
        /// its start.
        #[arg(
            long,
            conflicts_with = "container",
            required_unless_present = "container"
        )]
        workload: Option<String>,
        /// A container: full id, short id or name.
        container: Option<String>,
    },
    /// What this kernel supports and which probe mode will be used; exit 0 only when capmon can run.
    Check,
    /// Run one command in a fresh cgroup with the probes attached and report what it used.
    ///
    /// The report goes to stderr (text) or stdout (--json, one line, after the command's own
    /// output). capmon exits with the command's exit code; 127 when it cannot be started.
    Record {
        /// Print the report as one JSON object on stdout.
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// Print the least-privilege recommendation in this format on stdout (the text report
        /// still goes to stderr): docker, compose, kubernetes, apparmor, seccomp, oci, spo.
        #[arg(long, value_name = "FORMAT", value_parser = parse_format)]
        format: Option<Format>,
        /// Name used in the recommendation (compose service, file and resource names);
        /// default: the program's file name.
        #[arg(long)]
        name: Option<String>,
        /// Also write report.json and the recommendation in every format into this
        /// directory (seccomp.json, oci-seccomp.json, seccompprofile.yaml, compose.yaml,
        /// kubernetes-securitycontext.yaml, apparmor-capabilities.txt, docker-run-flags.txt).
        #[arg(long, value_name = "DIR")]
        output_dir: Option<PathBuf>,
        /// Architectures the seccomp profile (seccomp, oci, spo) is written for,
        /// comma-separated: x86_64 (amd64), aarch64 (arm64), x86 (i386), x32, arm, or all
        /// (x86_64 with its x86 and x32 compat ABIs, aarch64 with arm). Each recorded syscall
        /// becomes what it corresponds to there (open -> openat, stat -> newfstatat on
        /// aarch64; fstat -> fstat64 on x86 and arm) and is left out where it has no
        /// counterpart. Default: the architecture it was recorded on.
        #[arg(long, value_name = "LIST", value_parser = parse_arches)]
        arch: Option<ArchList>,
        /// Prove the recommendation by running the command again: once per recommended
        /// capability, without it (and without those already proven unneeded), then once with
        /// the proven set under the generated seccomp profile; each run's exit status and
        /// output are compared with the recorded run's (`--verify=exit`: the exit status
        /// only, for commands whose output varies). The recommendation then holds only what
        /// was proven needed. The command runs again, side effects and all; every run reads
        /// no input.
        #[arg(
            long,
            value_name = "WHAT",
            num_args = 0..=1,
            require_equals = true,
            default_missing_value = "output",
            value_parser = parse_compare
        )]
        verify: Option<Compare>,
        /// Bound for one --verify re-run, in seconds; a run still going then is killed and
        /// counts as a changed outcome.
        #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
        verify_timeout: u64,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Shell completions on stdout, e.g. `capmon completions bash >
    /// /etc/bash_completion.d/capmon`, or `capmon completions zsh > "${fpath[1]}/_capmon"`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// The manual page (roff) on stdout: `capmon man | man -l -`; with --dir, capmon.1 and a
    /// page per subcommand (capmon-report.1, ...) written into DIR.
    Man {
        /// Write every page into this directory (created when missing) instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Replay a recorded workload against a seccomp profile: which of its syscalls the
    /// profile would deny ("dry run before you enforce").
    ///
    /// Exit code 0 when the profile allows everything recorded, 3 when it would deny some, 1
    /// on bad input.
    Replay {
        /// A Docker-format seccomp profile, or `docker-default` for Docker's default.
        #[arg(long, value_name = "FILE")]
        profile: String,
        /// Evaluate the profile's capability conditions for these capabilities
        /// (comma-separated, e.g. CAP_CHOWN,CAP_NET_RAW); default: those the workload held.
        #[arg(long, value_delimiter = ',', value_name = "CAPS")]
        caps: Option<Vec<String>>,
        /// The architecture the recorded syscall names belong to (x86_64 or aarch64);
        /// default: this machine's.
        #[arg(long)]
        arch: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// A report.json written by `capmon record --output-dir`.
        report: PathBuf,
    },
}

/// `--verify`'s value.
pub fn parse_compare(s: &str) -> Result<Compare, String> {
    s.parse()
}

/// `--arch`'s value.
pub fn parse_arches(s: &str) -> Result<ArchList, String> {
    s.parse()
        .map_err(|e: capmon_core::seccomp::ArchListError| e.to_string())
}

pub fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
        .map_err(|e: capmon_core::recommend::RecommendError| e.to_string())
}

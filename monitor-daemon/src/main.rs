//! The `capmon` command line.

use std::{path::PathBuf, process::ExitCode};

use capmon::{check, record};
use capmon_core::{recommend::Format, replay, report};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "capmon",
    version,
    about = "Runtime capability and syscall monitor for Linux containers"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "CAPMON_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// The node daemon: watch every container, keep what they do in a store, serve the HTTP
    /// API and /metrics (default 127.0.0.1:9477), until SIGTERM or SIGINT (SIGHUP reloads
    /// the config file).
    ///
    /// Settings: defaults, then the TOML file (--config, or /etc/capmon/capmon.toml when it
    /// exists), then environment variables, then flags. Keys of the file: listen, state_dir,
    /// poll_interval_ms, batch_interval_ms, retention_hours, queue_capacity, docker_socket,
    /// log_format, log_level.
    Run {
        /// TOML config file.
        #[arg(long, env = "CAPMON_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        overrides: capmon_core::config::Overrides,
    },
    /// Containers the daemon knows (a table), or one of them (by id, short id or name).
    Report {
        /// Address of the daemon's API.
        #[arg(long, env = "CAPMON_ADDR", default_value = "127.0.0.1:9477")]
        addr: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
        /// A container: full id, short id or name.
        container: Option<String>,
    },
    /// A container's least-privilege recommendation, from the daemon.
    Profile {
        /// Address of the daemon's API.
        #[arg(long, env = "CAPMON_ADDR", default_value = "127.0.0.1:9477")]
        addr: String,
        /// docker, compose, kubernetes, apparmor, seccomp, oci or spo.
        #[arg(long, value_parser = parse_format)]
        format: Format,
        /// A container: full id, short id or name.
        container: String,
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
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
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

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
        .map_err(|e: capmon_core::recommend::RecommendError| e.to_string())
}

fn init_logging(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAPMON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("capmon: error: cannot start the async runtime: {e}");
            None
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Run { config, overrides } = &cli.command {
        let cfg = match capmon_core::config::Config::load(config.as_deref(), overrides) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("capmon: error: {e}");
                return ExitCode::from(1);
            }
        };
        // The file's log_format applies unless --log-format/CAPMON_LOG_FORMAT chose one.
        let format = if std::env::args().any(|a| a.starts_with("--log-format"))
            || std::env::var_os("CAPMON_LOG_FORMAT").is_some()
        {
            cli.log_format
        } else {
            match cfg.log_format {
                capmon_core::config::LogFormat::Text => LogFormat::Text,
                capmon_core::config::LogFormat::Json => LogFormat::Json,
            }
        };
        init_logging(format, &cfg.log_level);
        let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        else {
            eprintln!("capmon: error: cannot start the async runtime");
            return ExitCode::from(1);
        };
        return match rt.block_on(capmon::daemon::run(cfg, config.clone(), overrides.clone())) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("capmon: error: {e}");
                ExitCode::from(1)
            }
        };
    }
    init_logging(cli.log_format, "warn");
    match cli.command {
        Command::Run { .. } => ExitCode::SUCCESS,
        Command::Report {
            addr,
            json,
            container,
        } => {
            let Some(rt) = runtime() else {
                return ExitCode::from(1);
            };
            let path = match &container {
                Some(c) => format!("/v1/containers/{}", capmon::cli::client::segment(c)),
                None => "/v1/containers".to_owned(),
            };
            match rt.block_on(capmon::cli::client::get(&addr, &path)) {
                Ok(body) => {
                    if json {
                        println!("{body}");
                    } else {
                        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                        match container {
                            Some(_) => print!("{}", capmon::cli::client::render_one(&v)),
                            None => print!("{}", capmon::cli::client::render_list(&v)),
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("capmon: error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Profile {
            addr,
            format,
            container,
        } => {
            let Some(rt) = runtime() else {
                return ExitCode::from(1);
            };
            let path = format!(
                "/v1/containers/{}/recommendation?format={}",
                capmon::cli::client::segment(&container),
                format.name()
            );
            match rt.block_on(capmon::cli::client::get(&addr, &path)) {
                Ok(body) => {
                    print!("{body}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("capmon: error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Check => {
            let c = check::run(true);
            print!("{}", c.render());
            if c.can_run() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Command::Replay {
            profile,
            caps,
            arch,
            json,
            report,
        } => match replay::run(&profile, caps, arch.as_deref(), &report) {
            Ok(result) => {
                if json {
                    println!("{}", serde_json::to_string(&result).unwrap_or_default());
                } else {
                    print!("{}", replay::render_text(&result));
                }
                if result.replay.would_deny.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(3)
                }
            }
            Err(e) => {
                eprintln!("capmon: error: {e}");
                ExitCode::from(1)
            }
        },
        Command::Record {
            json,
            format,
            name,
            output_dir,
            command,
        } => {
            let Some(runtime) = runtime() else {
                return ExitCode::from(1);
            };
            let name = name.unwrap_or_else(|| record::command_name(&command));
            let opts = record::RecordOptions {
                command,
                output_dir,
                name: name.clone(),
            };
            match runtime.block_on(record::record(&opts)) {
                Ok(out) => {
                    let r = &out.report;
                    if json {
                        println!("{}", serde_json::to_string(r).unwrap_or_default());
                    } else {
                        eprint!("{}", report::render_text(r, &name));
                        if let Some(dir) = &opts.output_dir {
                            eprintln!("\nwrote into {}: {}", dir.display(), out.written.join(", "));
                        }
                    }
                    if let Some(format) = format {
                        match r.advice(&name).render(format) {
                            Ok(text) => print!("{text}"),
                            Err(e) => {
                                eprintln!("capmon: error: {e}");
                                return ExitCode::from(1);
                            }
                        }
                    }
                    exit(r.exit_code)
                }
                Err(e) => {
                    eprintln!("capmon: error: {e}");
                    exit(e.exit_code())
                }
            }
        }
    }
}

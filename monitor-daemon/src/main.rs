//! The `capmon` command line.

use std::{path::PathBuf, process::ExitCode};

use capmon::{
    check,
    recommend::{Advice, Format},
    record, replay, report,
};
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
        .map_err(|e: capmon::recommend::RecommendError| e.to_string())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAPMON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
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
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("capmon: error: cannot start the async runtime: {e}");
                    return ExitCode::from(1);
                }
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
                        match Advice::of(&name, r).render(format) {
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

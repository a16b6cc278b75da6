//! The `capmon` command line.

use std::{path::PathBuf, process::ExitCode};

use capmon::{check, record, report};
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
        #[arg(long)]
        json: bool,
        /// Also write seccomp.json (Docker format) and report.json into this directory.
        #[arg(long, value_name = "DIR")]
        output_dir: Option<PathBuf>,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
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
        Command::Record {
            json,
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
            let opts = record::RecordOptions {
                command,
                output_dir,
            };
            match runtime.block_on(record::record(&opts)) {
                Ok(r) => {
                    if json {
                        println!("{}", serde_json::to_string(&r).unwrap_or_default());
                    } else {
                        eprint!("{}", report::render_text(&r));
                        if let Some(dir) = &opts.output_dir {
                            eprintln!(
                                "\nwrote {0}/seccomp.json and {0}/report.json",
                                dir.display()
                            );
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

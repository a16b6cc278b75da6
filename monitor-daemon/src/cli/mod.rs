//! The `capmon` command line: the clap definitions in [`args`], one module per subcommand,
//! each returning its exit code or a [`Failure`]; errors are printed in one place, here.

pub mod args;
pub mod check;
pub mod client;
pub mod fleet;
pub mod manual;
pub mod record;
pub mod replay;
pub mod report;
pub mod run;
pub mod table;
pub mod workloads;

use std::{process::ExitCode, time::Duration};

use clap::Parser as _;
use nix::sys::signal::SigHandler;

use self::args::{Cli, Command, LogFormat};
use crate::record::VerifyOptions;

/// A subcommand that failed: the error to print and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// The process exit code.
    pub code: u8,
    /// What went wrong.
    pub error: anyhow::Error,
}

impl Failure {
    /// A failure with its own exit code.
    pub fn with_code(code: i32, error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: u8::try_from(code).unwrap_or(1),
            error: error.into(),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure {
            code: 1,
            error: error.into(),
        }
    }
}

/// What a subcommand returns.
pub type Outcome = Result<ExitCode, Failure>;

/// Parses the command line and runs the subcommand.
pub fn main() -> ExitCode {
    // Like coreutils, capmon ends quietly when its reader goes away (`capmon report | head
    // -1`), `--help` included; but the daemon never does, and `record` only once the
    // recording is cleaned up (see record::main).
    sigpipe(SigHandler::SigDfl);
    report_panics_as_bugs();
    let cli = Cli::parse();
    if matches!(cli.command, Command::Run { .. } | Command::Record { .. }) {
        sigpipe(SigHandler::SigIgn);
    }
    // `capmon run` sets up logging from its configuration; the others log warnings.
    if !matches!(cli.command, Command::Run { .. }) {
        init_logging(cli.log_format, "warn");
    }
    let outcome = dispatch(cli.log_format, cli.command);
    match outcome {
        Ok(code) => code,
        Err(f) => {
            eprintln!("capmon: error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

fn dispatch(log_format: LogFormat, command: Command) -> Outcome {
    match command {
        Command::Run { config, overrides } => run::main(log_format, config, *overrides),
        Command::Report {
            addr,
            api_token_file,
            json,
            workloads,
            container,
        } => {
            let api = client::Daemon::new(addr, api_token_file.as_deref())?;
            if workloads {
                workloads::report(&api, json, container.as_deref())
            } else {
                report::report(&api, json, container.as_deref())
            }
        }
        Command::Profile {
            addr,
            api_token_file,
            format,
            arch,
            workload,
            container,
        } => {
            let api = client::Daemon::new(addr, api_token_file.as_deref())?;
            match workload {
                Some(w) => workloads::profile(&api, format, arch.as_ref(), &w),
                None => report::profile(
                    &api,
                    format,
                    arch.as_ref(),
                    container.as_deref().unwrap_or_default(),
                ),
            }
        }
        Command::Check => Ok(check::main()),
        Command::Completions { shell } => manual::completions(shell),
        Command::Man { dir } => manual::man(dir.as_deref()),
        Command::Fleet {
            prometheus,
            workload,
            since,
            format,
            output_dir,
        } => fleet::main(
            &prometheus,
            workload.as_deref(),
            &since,
            format,
            output_dir.as_deref(),
        ),
        Command::Record {
            json,
            format,
            name,
            output_dir,
            arch,
            verify,
            verify_timeout,
            command,
        } => {
            let verify = verify.map(|compare| VerifyOptions {
                compare,
                timeout: Duration::from_secs(verify_timeout),
            });
            record::main(json, format, name, output_dir, verify, arch, command)
        }
        Command::Replay {
            profile,
            caps,
            arch,
            json,
            report,
        } => replay::main(&profile, caps, arch.as_deref(), json, &report),
    }
}

/// A panic is a bug in capmon: said in one line as such (with where, for the report), not as
/// Rust's `thread 'main' panicked at ...` with a note about backtraces.
fn report_panics_as_bugs() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::env::var_os("RUST_BACKTRACE").is_some() {
            return default(info);
        }
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let thread = std::thread::current();
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "capmon: internal error in thread {}{place}: {what} (a bug: please report it; \
             RUST_BACKTRACE=1 shows where it came from)",
            thread.name().unwrap_or("unnamed")
        );
    }));
}

/// Restores the default action of `SIGPIPE` (Rust ignores it), so that a write to a closed
/// pipe ends the process the way it ends `cat` or `ls`: silently, killed by the signal (a shell
/// shows status 141), rather than with an error or a panic from `println!`.
pub fn end_on_broken_pipe() {
    sigpipe(SigHandler::SigDfl);
}

/// Sets what `SIGPIPE` does: the default (end the process) or ignored (writes fail with
/// `EPIPE` instead, for the daemon and a recording under way).
fn sigpipe(action: SigHandler) {
    // SAFETY: SIG_DFL and SIG_IGN install no handler code; nothing else in capmon handles
    // SIGPIPE.
    if let Err(e) = unsafe { nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, action) } {
        eprintln!("capmon: cannot set SIGPIPE's action: {e}");
    }
}

/// Logs on stderr: `CAPMON_LOG` (an env-filter directive) or `default_filter`.
pub fn init_logging(format: LogFormat, default_filter: &str) {
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

/// A single-threaded async runtime for the client subcommands.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}").into())
}

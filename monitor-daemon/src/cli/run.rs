//! `capmon run`: loads the configuration, sets up logging, runs the daemon until a signal.

use std::{path::PathBuf, process::ExitCode};

use capmon_core::config::{self, Config, Overrides};

use super::{Outcome, args::LogFormat, init_logging};

/// Runs the daemon with the configuration from `file`, the environment and the flags.
pub fn main(cli_format: LogFormat, file: Option<PathBuf>, overrides: Overrides) -> Outcome {
    let cfg = Config::load(file.as_deref(), &overrides)?;
    init_logging(log_format(cli_format, cfg.log_format), &cfg.log_level);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    if let Err(e) = rt.block_on(crate::daemon::run(cfg, file, overrides)) {
        tracing::error!("{e}");
        return Err(e.into());
    }
    Ok(ExitCode::SUCCESS)
}

/// The file's `log_format` applies unless `--log-format` or `CAPMON_LOG_FORMAT` chose one.
fn log_format(cli: LogFormat, file: config::LogFormat) -> LogFormat {
    let chosen = std::env::args().any(|a| a.starts_with("--log-format"))
        || std::env::var_os("CAPMON_LOG_FORMAT").is_some();
    match (chosen, file) {
        (true, _) => cli,
        (false, config::LogFormat::Text) => LogFormat::Text,
        (false, config::LogFormat::Json) => LogFormat::Json,
    }
}

//! `capmon replay`: a recorded workload's syscalls against a seccomp profile; exit 0 when the
//! profile allows everything recorded, 3 when it would deny some.

use std::{path::Path, process::ExitCode};

use capmon_core::replay;

use super::Outcome;

/// Replays `report` against `profile` and prints the result.
pub fn main(
    profile: &str,
    caps: Option<Vec<String>>,
    arch: Option<&str>,
    json: bool,
    report: &Path,
) -> Outcome {
    let result = replay::run(profile, caps, arch, report)?;
    if json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        print!("{}", replay::render_text(&result));
    }
    Ok(if result.replay.would_deny.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

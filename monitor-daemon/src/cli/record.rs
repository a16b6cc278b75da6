//! `capmon record -- CMD`: records the command, prints the report (text on stderr, or JSON on
//! stdout) and, with `--format`, the recommendation on stdout; exits with the command's code.

use std::{path::PathBuf, process::ExitCode};

use capmon_core::{recommend::Format, report, seccomp::ArchList};

use super::{Failure, Outcome, runtime};
use crate::record::{self, RecordOptions, VerifyOptions};

/// Records `command` and reports.
pub fn main(
    json: bool,
    format: Option<Format>,
    name: Option<String>,
    output_dir: Option<PathBuf>,
    verify: Option<VerifyOptions>,
    arch: Option<ArchList>,
    command: Vec<String>,
) -> Outcome {
    let rt = runtime()?;
    let name = name.unwrap_or_else(|| record::command_name(&command));
    let opts = RecordOptions {
        command,
        output_dir,
        name,
        verify,
        arch,
    };
    let out = rt
        .block_on(record::record(&opts))
        .map_err(|e| Failure::with_code(e.exit_code(), e))?;
    // The recording is cleaned up (cgroup removed, probes detached): from here a closed
    // stdout may end capmon as it ends any command in a pipe.
    super::end_on_broken_pipe();
    let r = &out.report;
    if json {
        println!("{}", serde_json::to_string(r)?);
    } else {
        eprint!("{}", report::render_text(r, &opts.name));
        if let Some(dir) = &opts.output_dir {
            eprintln!("\nwrote into {}: {}", dir.display(), out.written.join(", "));
        }
    }
    if let Some(format) = format {
        let arches = opts.arch.clone().unwrap_or(ArchList::native(r.arch));
        print!("{}", r.advice(&opts.name).render_for(format, &arches)?);
    }
    Ok(ExitCode::from(u8::try_from(r.exit_code).unwrap_or(1)))
}

//! The files `capmon record --output-dir DIR` writes: `report.json` and the recommendation in
//! every format.

use std::{fs, path::Path};

use capmon_core::{recommend::Format, report::RecordReport, seccomp::ArchList};

use super::error::RecordError;

/// Makes sure `dir` exists and a file can be created in it.
pub(super) fn check_output_dir(dir: &Path) -> Result<(), RecordError> {
    let err = |source| RecordError::OutputDir {
        path: dir.to_owned(),
        source,
    };
    fs::create_dir_all(dir).map_err(err)?;
    let probe = dir.join(format!(".capmon-write-test-{}", std::process::id()));
    fs::write(&probe, b"").map_err(err)?;
    let _ = fs::remove_file(probe);
    Ok(())
}

/// Writes the result files into `dir`: `report.json` and the recommendation in every format
/// ([`Format::file_name`]), the seccomp formats for `arches` and only when a profile could be
/// generated. Returns the names written.
pub fn write_outputs(
    dir: &Path,
    name: &str,
    report: &RecordReport,
    arches: &ArchList,
) -> Result<Vec<&'static str>, RecordError> {
    let write = |file: &str, text: String| {
        let path = dir.join(file);
        fs::write(&path, text).map_err(|source| RecordError::Write { path, source })
    };
    write(
        "report.json",
        serde_json::to_string_pretty(report).unwrap_or_default() + "\n",
    )?;
    let mut written = vec!["report.json"];
    let advice = report.advice(name);
    for format in Format::ALL {
        match advice.render_for(format, arches) {
            Ok(text) => {
                write(format.file_name(), text)?;
                written.push(format.file_name());
            }
            Err(e) => tracing::debug!("{format}: {e}"),
        }
    }
    Ok(written)
}

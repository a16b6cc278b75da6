//! `capmon completions SHELL` and `capmon man`: generated from the clap definitions in
//! [`super::args`], so they never drift from the flags capmon has.

use std::{io::Write as _, path::Path, process::ExitCode};

use anyhow::Context as _;
use clap::CommandFactory as _;

use super::{Outcome, args::Cli};

/// Prints the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> Outcome {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "capmon", &mut out);
    std::io::stdout()
        .write_all(&out)
        .context("cannot write the completion script to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// Prints capmon(1), or writes it and one page per subcommand into `dir`.
pub fn man(dir: Option<&Path>) -> Outcome {
    let cmd = Cli::command();
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("cannot write the manual pages into {}", dir.display()))?;
            eprintln!("capmon: wrote the manual pages into {}", dir.display());
        }
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .context("cannot render the manual page")?;
            std::io::stdout()
                .write_all(&out)
                .context("cannot write the manual page to stdout")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subcommand_has_its_page_and_completions() {
        let dir = std::env::temp_dir().join(format!("capmon-man-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        man(Some(&dir)).expect("pages written");
        let mut pages: Vec<String> = std::fs::read_dir(&dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        pages.sort();
        let _ = std::fs::remove_dir_all(&dir);
        let mut expected: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|s| format!("capmon-{}.1", s.get_name()))
            .chain(["capmon.1".to_owned()])
            .collect();
        expected.sort();
        assert_eq!(pages, expected);

        let mut cmd = Cli::command();
        let mut bash = Vec::new();
        clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, "capmon", &mut bash);
        let bash = String::from_utf8(bash).expect("utf-8");
        for word in ["report", "record", "--verify-timeout", "completions"] {
            assert!(bash.contains(word), "bash completion lacks {word}");
        }
    }
}

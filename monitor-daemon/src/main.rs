//! The `capmon` binary: the command line lives in [`capmon::cli`].

fn main() -> std::process::ExitCode {
    capmon::cli::main()
}

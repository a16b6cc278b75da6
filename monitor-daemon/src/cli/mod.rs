//! The `capmon` command line: one module per subcommand.

pub mod client;

//! The `tradecast-node` command line: thin, it hands over to [`tradecast_node::cli::main_from`].

#![warn(clippy::unwrap_used, clippy::expect_used)]

fn main() -> std::process::ExitCode {
    tradecast_node::cli::main_from(std::env::args_os())
}

//! The `tradecast-node` command line: thin, it hands over to [`tradecast_node::cli::main_from`].

fn main() -> std::process::ExitCode {
    tradecast_node::cli::main_from(std::env::args_os())
}

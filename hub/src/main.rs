//! The `tradecast-hub` command line: thin, it hands over to [`tradecast_hub::cli::main`].

fn main() -> std::process::ExitCode {
    tradecast_hub::cli::main()
}

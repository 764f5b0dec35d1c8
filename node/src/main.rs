//! The `tradecast-node` command line: thin, it parses arguments and calls the library.

use clap::Parser;
use tradecast_node::cli::{self, Cli};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut err = std::io::stderr();
    let result = cli::run(cli, &mut out, &mut err);
    let flushed = std::io::Write::flush(&mut out);
    match result.map_err(anyhow::Error::from).and(flushed.map_err(anyhow::Error::from)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tradecast-node: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

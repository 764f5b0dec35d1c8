//! The `tradecast-desktop` binary: parses the command line, sets up logging and runs the app.
// No console window behind the app on Windows release builds.
#![cfg_attr(all(windows, not(debug_assertions)), windows_subsystem = "windows")]

use std::path::PathBuf;

use clap::Parser;

/// Tradecast desktop: your node, its web UI in a window, and a tray icon.
#[derive(Debug, Parser)]
#[command(name = "tradecast-desktop", version, about)]
struct Cli {
    /// The node's data dir (shared with `tradecast-node --data`). Default:
    /// `%LOCALAPPDATA%\Tradecast` on Windows, `~/.local/share/tradecast` on Linux.
    #[arg(long, env = "TRADECAST_DATA", value_name = "DIR")]
    data: Option<PathBuf>,
    /// Start in the tray with the window hidden (used by "Start at login").
    #[arg(long)]
    minimized: bool,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let Some(data) = cli.data.or_else(tradecast_desktop::backend::default_data_dir) else {
        anyhow::bail!("no data dir: pass --data DIR (this system has no local data folder)");
    };
    tradecast_desktop::app::run(tradecast_desktop::app::Options { data, minimized: cli.minimized })
}

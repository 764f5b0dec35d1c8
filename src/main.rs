//! `tradecast`: the one-command local demo (hub + provider node + subscriber nodes + simulated
//! terminals on loopback).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tradecast::demo::{self, Options};
use tradecast::procs;
use tradecast_sim::replay::Speed;

/// Tradecast: provider-signed trade signals, verified and executed on the trader's own machine.
#[derive(Debug, Parser)]
#[command(name = "tradecast", version, about)]
struct Cli {
    /// Die with process PID, the demo that started this one (its hub and node processes):
    /// SIGKILL when it ends, however it ends (`tradecast::procs`).
    #[arg(long = "die-with-parent", value_name = "PID", hide = true)]
    die_with_parent: Option<u32>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole system locally: a hub on SQLite, a provider node running Fib-RSI and two
    /// subscriber nodes (auto-copy at 1 % risk; manual approvals), each beside a simulated MT5
    /// terminal, all on one simulated broker replaying the bundled EURUSD H1 bars. The hub and
    /// each node run in a process of their own.
    Demo {
        /// Bar pace: `max` (as fast as every party takes each bar in), or bar-seconds per wall
        /// second. The default shows the whole sample (20 signals) in about a minute. Every
        /// pace gives the same signals, decisions and fills: the replay waits for every party
        /// after each bar.
        #[arg(long, default_value_t = demo::DEFAULT_SPEED.to_string())]
        speed: String,
        /// Replay only the first N bars of the sample (5,000 bars).
        #[arg(long)]
        bars: Option<usize>,
        /// Exit when the replay ends (otherwise the hub and the nodes keep serving their pages
        /// until Ctrl-C, SIGTERM or SIGHUP).
        #[arg(long)]
        exit_when_done: bool,
        /// Keep the hub's and the nodes' data dirs in DIR instead of a temporary folder.
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        /// Route every node's QUIC traffic to the hub through a local proxy that drops 5 %,
        /// duplicates 3 % and delays up to 20 ms of the datagrams: the results stay the same.
        #[arg(long)]
        lossy: bool,
        /// Make the simulated broker and terminals behave like real MT5 ones: tickets that
        /// change on reversal and swap roll-over, filling and expiration modes checked, a dealer
        /// that requotes closes, a server DST change mid-replay, terminals that start
        /// disconnected, a netting account, 400 Market Watch symbols. The same decisions and
        /// fills come out.
        #[arg(long)]
        realistic_terminal: bool,
    },
    /// The hub's command line (`tradecast-hub`), as the demo runs its hub process.
    #[command(hide = true, disable_help_flag = true, disable_version_flag = true)]
    Hub {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// The node's command line (`tradecast-node`), as the demo runs each node process.
    #[command(hide = true, disable_help_flag = true, disable_version_flag = true)]
    Node {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// The seeded node + terminal simulation: runs each seed of the range (the node's core, the
    /// simulated broker and terminal, simulated time, faults picked by the seed) and checks the
    /// properties after every step. Prints `RESULT node_sim_seeds_per_s <v> seeds/s`; a
    /// failure prints its seed and exits 1.
    #[command(name = "node-sim")]
    NodeSim {
        /// Seeds `A..B` (B excluded).
        #[arg(long, default_value = "0..100")]
        seeds: String,
        /// Simulation steps per seed.
        #[arg(long, default_value_t = tradecast::node_sim::Options::default().steps)]
        steps: u32,
        /// Break one property on purpose (its checker must fire): send-twice, foreign-fill,
        /// drop-closes, drop-close-all, skew-equity.
        #[arg(long)]
        sabotage: Option<String>,
    },
    /// The demo's cleaner: removes DIR once its standard input ends (the demo ended, however)
    /// and no process uses DIR any more.
    #[command(name = "clean-up", hide = true)]
    CleanUp { dir: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(pid) = cli.die_with_parent {
        procs::die_with_parent(pid);
    }
    let (speed, bars, exit_when_done, data, lossy, realistic) = match cli.command {
        // The hub and the node install their own logging.
        Command::Hub { args } => {
            return tradecast_hub::cli::main_from(
                std::iter::once(OsString::from("tradecast-hub")).chain(args),
            );
        }
        Command::Node { args } => {
            return tradecast_node::cli::main_from(
                std::iter::once(OsString::from("tradecast-node")).chain(args),
            );
        }
        Command::CleanUp { dir } => {
            return match procs::clean_up_when_closed(&dir) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tradecast clean-up: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::NodeSim { seeds, steps, sabotage } => {
            return node_sim_main(&seeds, steps, sabotage.as_deref());
        }
        Command::Demo { speed, bars, exit_when_done, data, lossy, realistic_terminal } => {
            (speed, bars, exit_when_done, data, lossy, realistic_terminal)
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(
            |_| tracing_subscriber::EnvFilter::new("warn,tradecast_hub::secrets=error"),
        ))
        .with_writer(std::io::stderr)
        .init();
    match demo_main(speed, bars, exit_when_done, data, lossy, realistic) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tradecast: {e:#}");
            // Stopped by a signal mid-replay: that signal's status, as a shell reports it.
            match e.downcast_ref::<demo::Interrupted>() {
                Some(stopped) => ExitCode::from(stopped.0.exit_code()),
                None => ExitCode::FAILURE,
            }
        }
    }
}

fn node_sim_main(seeds: &str, steps: u32, sabotage: Option<&str>) -> ExitCode {
    use tradecast::node_sim::{self, Options, Sabotage};
    let Some((a, b)) = seeds.split_once("..") else {
        eprintln!("tradecast node-sim: --seeds takes A..B");
        return ExitCode::from(2);
    };
    let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>()) else {
        eprintln!("tradecast node-sim: --seeds takes A..B, two whole numbers");
        return ExitCode::from(2);
    };
    let sabotage = match sabotage.map(|s| (s, Sabotage::parse(s))) {
        None => None,
        Some((_, Some(s))) => Some(s),
        Some((s, None)) => {
            eprintln!("tradecast node-sim: no sabotage switch {s:?}");
            return ExitCode::from(2);
        }
    };
    let opts = Options { steps, sabotage };
    let started = std::time::Instant::now();
    let mut totals = node_sim::Report::default();
    let mut failed = 0u64;
    for seed in a..b {
        match node_sim::run_seed(seed, &opts) {
            Ok(r) => totals.add(&r),
            Err(v) => {
                failed += 1;
                println!("FAILED {v}");
                println!(
                    "  rerun: tradecast node-sim --seeds {seed}..{} --steps {steps}",
                    seed + 1
                );
            }
        }
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let n = b.saturating_sub(a);
    println!("seeds {a}..{b}: {n} run, {failed} failed, {steps} steps each, {:.1} s", secs);
    println!("{totals}");
    println!("RESULT node_sim_seeds_per_s {:.1} seeds/s", n as f64 / secs);
    if failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

fn demo_main(
    speed: String,
    bars: Option<usize>,
    exit_when_done: bool,
    data: Option<PathBuf>,
    lossy: bool,
    realistic_terminal: bool,
) -> anyhow::Result<()> {
    let speed: Speed = speed.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let faults = demo::FaultPlan {
        lossy: lossy.then(tradecast::lossy::Faults::default),
        ..Default::default()
    };
    let opts = Options {
        speed,
        bars,
        exit_when_done,
        data,
        faults,
        realistic_terminal,
        ..Options::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        // Before anything is started: from here on SIGINT, SIGTERM and SIGHUP stop the demo
        // the same way (`tradecast::procs`).
        let shutdown = procs::Shutdown::listen()?;
        let mut print = |line: &str| println!("{line}");
        demo::run(&opts, shutdown.first(), &mut print).await.map(|_| ())
    })
}

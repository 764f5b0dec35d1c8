//! `tradecast-syncsim`: runs the sync-session simulator over a range of seeds.
//!
//! ```text
//! cargo run --release -p tradecast-protocol --bin tradecast-syncsim -- --seeds 0..100000 [--jobs 2]
//!     [--sabotage NAME] [--trace] [--calm]
//! ```
//!
//! Prints seeds per second; on the first failing seed prints it, its trace (with `--trace`) and
//! the command that replays it, and exits with status 1. This binary is a driver: it may read
//! the clock (to report seeds/s) and spawn threads; the simulator itself stays pure.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tradecast_protocol::sim::{self, Sabotage, SimFailure, SimOptions};

struct Args {
    start: u64,
    end: u64,
    jobs: u64,
    sabotage: Option<Sabotage>,
    trace: bool,
    calm: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { start: 0, end: 1000, jobs: 1, sabotage: None, trace: false, calm: false };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seeds" => {
                let range = it.next().ok_or("--seeds needs A..B")?;
                let (a, b) = range.split_once("..").ok_or("--seeds needs A..B")?;
                args.start = a.parse().map_err(|_| "bad seed range start")?;
                args.end = b.parse().map_err(|_| "bad seed range end")?;
                if args.end < args.start {
                    return Err("empty seed range".into());
                }
            }
            "--jobs" => {
                args.jobs = it.next().and_then(|j| j.parse().ok()).ok_or("--jobs needs N")?;
                args.jobs = args.jobs.max(1);
            }
            "--sabotage" => {
                let name = it.next().ok_or("--sabotage needs a name")?;
                let names: Vec<&str> = Sabotage::ALL.iter().map(|s| s.name()).collect();
                args.sabotage = Some(
                    Sabotage::parse(&name)
                        .ok_or_else(|| format!("unknown sabotage; one of {}", names.join(", ")))?,
                );
            }
            "--trace" => args.trace = true,
            "--calm" => args.calm = true,
            "-h" | "--help" => {
                return Err("usage: tradecast-syncsim --seeds A..B [--jobs N] [--sabotage NAME] \
                            [--trace] [--calm]"
                    .into());
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(args.start));
    let stop = Arc::new(AtomicBool::new(false));
    let failure: Arc<Mutex<Option<SimFailure>>> = Arc::new(Mutex::new(None));
    let totals = Arc::new(Mutex::new((0u64, 0u64, 0u64, 0u64)));
    let done = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..args.jobs)
        .map(|_| {
            let (next, stop, failure, totals, done) =
                (next.clone(), stop.clone(), failure.clone(), totals.clone(), done.clone());
            let (end, sabotage, trace, calm) = (args.end, args.sabotage, args.trace, args.calm);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        break;
                    }
                    let opt = SimOptions { seed, sabotage, calm, trace };
                    match sim::run_catching(opt) {
                        Ok(report) => {
                            let mut t = totals.lock().unwrap_or_else(|p| p.into_inner());
                            t.0 += report.records_committed + report.feed_committed;
                            t.1 += report.crashes;
                            t.2 += report.equivocations_injected;
                            t.3 += report.violations_caught;
                        }
                        Err(f) => {
                            stop.store(true, Ordering::Relaxed);
                            let mut slot = failure.lock().unwrap_or_else(|p| p.into_inner());
                            if slot.as_ref().is_none_or(|old| f.seed < old.seed) {
                                *slot = Some(f);
                            }
                        }
                    }
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if n % 10_000 == 0 {
                        let secs = started.elapsed().as_secs_f64();
                        println!("{n} seeds, {:.0} seeds/s", n as f64 / secs);
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        let _ = handle.join();
    }
    let secs = started.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    let totals = *totals.lock().unwrap_or_else(|p| p.into_inner());
    let failure = failure.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(f) = failure {
        for line in &f.trace {
            println!("{line}");
        }
        println!("FAILED {f}");
        println!("replay: {}", sim::replay_command(f.seed, args.sabotage));
        return ExitCode::from(1);
    }
    println!(
        "ok: seeds {}..{} ({n} seeds) in {secs:.1} s, {:.0} seeds/s; {} records committed, \
         {} crashes, {} equivocations caught, {} tampered frames caught",
        args.start,
        args.end,
        n as f64 / secs.max(1e-9),
        totals.0,
        totals.1,
        totals.2,
        totals.3
    );
    ExitCode::SUCCESS
}

//! End-to-end throughput of the strategy on one million generated bars (`harness = false`):
//! the streaming engine alone, the whole backtest (engine + orders + trade simulation +
//! summary), and the bar-file reader on the same bars written as CSV. Prints a table in bars per
//! second, best of several runs; compare figures only between runs on the same machine.
//!
//! `cargo bench -p tradecast-node --bench backtest` (release profile).

use std::hint::black_box;
use std::time::{Duration, Instant};

use tradecast_node::backtest::{self, Config};
use tradecast_node::strategy::{Engine, Params};
use tradecast_node::synthetic;
use tradecast_protocol::bars::{Bar, BarF64, format_rfc3339, parse_bars};

const N_BARS: usize = 1_000_000;
const RUNS: usize = 5;

fn best_of(runs: usize, mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut out = 0;
    for _ in 0..runs {
        let start = Instant::now();
        out = black_box(f());
        best = best.min(start.elapsed());
    }
    (best, out)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores available, {} {}", std::env::consts::OS, std::env::consts::ARCH)
}

fn csv(bars: &[Bar]) -> Vec<u8> {
    let mut s = String::with_capacity(bars.len() * 60);
    s.push_str("time,open,high,low,close\n");
    for b in bars {
        let t = format_rfc3339(b.time_unix_ms);
        let t = t.trim_end_matches('Z').replace('T', " ");
        s.push_str(&format!("{t},{},{},{},{}\n", b.open, b.high, b.low, b.close));
    }
    s.into_bytes()
}

fn row(what: &str, d: Duration, n: usize, note: String) {
    let secs = d.as_secs_f64();
    println!("{what:<50} {:>8.1} ms {:>14.0} bars/s   {note}", secs * 1e3, n as f64 / secs);
}

fn main() {
    println!("machine: {}", machine());
    println!("{N_BARS} generated H1 bars (seed 42, 5 digits), best of {RUNS} runs\n");
    let bars = synthetic::bars(N_BARS, 42, 5);
    let bars_f64: Vec<BarF64> = bars.iter().map(Bar::to_f64).collect();
    let params = Params::default();

    let (d, n) = best_of(RUNS, || {
        let mut engine = Engine::new(params).expect("default params");
        bars_f64.iter().filter_map(|b| engine.push(b)).count()
    });
    row("streaming engine (f64 bars)", d, N_BARS, format!("{n} signals"));

    let (d, n) = best_of(RUNS, || {
        let mut engine = Engine::new(params).expect("default params");
        bars.iter().filter_map(|b| engine.push(&b.to_f64())).count()
    });
    row("streaming engine (decimal bars, converted)", d, N_BARS, format!("{n} signals"));

    let config = Config::fx_defaults();
    let (d, n) = best_of(RUNS, || {
        let result = backtest::run(&bars, &config).expect("backtest");
        result.summary.n_trades
    });
    row("whole backtest (engine, orders, trades, summary)", d, N_BARS, format!("{n} trades"));

    let text = csv(&bars);
    let (d, n) = best_of(RUNS, || parse_bars(&text).expect("valid CSV").len());
    row("bar-file reader (CSV bytes to bars)", d, n, format!("{:.1} MB", text.len() as f64 / 1e6));
}

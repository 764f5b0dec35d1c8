//! The `tradecast-node backtest` binary as a trader runs it: JSON lines, the table and summary,
//! the report, and a malformed file.

use std::collections::BTreeSet;
use std::process::{Command, Output};

use tradecast_node::strategy::{self, Params};

use crate::{eurusd, testdata, to_f64};

fn node(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tradecast-node")).args(args).output().expect("the binary runs")
}

fn eurusd_path() -> String {
    testdata("EURUSD-H1.csv").to_string_lossy().into_owned()
}

/// The number after `"key":` in a JSON line, parsed from its text.
fn raw_number(line: &str, key: &str) -> f64 {
    let start = line.find(&format!("\"{key}\":")).expect("key present") + key.len() + 3;
    let rest = &line[start..];
    let end = rest.find([',', '}']).expect("number ends");
    rest[..end].parse().expect("a number")
}

#[test]
fn json_prints_one_object_per_signal_and_nothing_else() {
    let out = node(&["backtest", "--csv", &eurusd_path(), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 20);
    let want_keys: BTreeSet<&str> = [
        "bar",
        "time",
        "side",
        "entry",
        "stop",
        "tp1",
        "tp2",
        "swing_low",
        "swing_high",
        "rsi",
        "rr",
    ]
    .into();
    let signals = strategy::run(&to_f64(&eurusd()), &Params::default()).expect("valid params");
    for (line, s) in lines.iter().zip(&signals) {
        let v: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
        let obj = v.as_object().expect("an object");
        let keys: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
        assert_eq!(keys, want_keys);
        assert_eq!(obj["bar"].as_u64(), Some(s.bar as u64));
        assert_eq!(obj["swing_low"].as_u64(), Some(s.swing_low as u64));
        assert_eq!(obj["swing_high"].as_u64(), Some(s.swing_high as u64));
        assert_eq!(obj["side"].as_str(), Some(s.side.as_str()));
        // The f64 values themselves, bit for bit (read from the text with Rust's correctly
        // rounded parser: serde_json's default float parser may be one ulp off).
        for (k, x) in [
            ("entry", s.entry),
            ("stop", s.stop),
            ("tp1", s.tp1),
            ("tp2", s.tp2),
            ("rsi", s.rsi),
            ("rr", s.rr),
        ] {
            assert_eq!(raw_number(line, k).to_bits(), x.to_bits(), "{k} in {line}");
        }
    }
    let first: serde_json::Value = serde_json::from_str(lines[0]).expect("JSON");
    assert_eq!(first["bar"], 211);
    assert_eq!(first["time"], "2017-05-02T04:00:00Z");
    assert_eq!(first["side"], "sell");
    assert!((first["entry"].as_f64().expect("number") - 1.09128).abs() <= 1e-9);
    assert!((first["stop"].as_f64().expect("number") - 1.09179364).abs() <= 1e-9);
}

#[test]
fn table_and_summary() {
    let out = node(&["backtest", "--csv", &eurusd_path(), "--symbol", "EURUSD", "--risk-pct", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    assert!(
        stdout.starts_with(
            "fib-rsi/1 backtest: EURUSD H1, 5000 bars, 2017-04-19 09:00 to 2018-02-07 15:00 UTC"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("risk 2 % a trade"), "{stdout}");
    assert!(
        stdout.contains("  1    211  2017-05-02 04:00  sell     1.09128 1.09179364"),
        "{stdout}"
    );
    for label in [
        "signals                20 (",
        "win rate",
        "profit factor",
        "expectancy",
        "net result",
        "max drawdown",
        "longest losing streak",
        "average holding time",
    ] {
        assert!(stdout.contains(label), "missing `{label}` in\n{stdout}");
    }
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn report_is_a_self_contained_page_with_charts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let report = dir.path().join("report");
    let out = node(&[
        "backtest",
        "--csv",
        &eurusd_path(),
        "--report",
        report.to_str().expect("UTF-8 path"),
        "--split",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let page = std::fs::read_to_string(report.join("index.html")).expect("index.html");
    assert!(
        page.matches("<svg").count() >= 3 + 18,
        "equity, drawdown, price and a close-up per signal"
    );
    for forbidden in ["<script", "src=", "href=", "@import", "url("] {
        assert!(!page.contains(forbidden), "the page must not load anything: found `{forbidden}`");
    }
    assert!(page.contains("Max drawdown") && page.contains("Longest losing streak"));
    for svg in ["equity.svg", "drawdown.svg", "price.svg"] {
        let text = std::fs::read_to_string(report.join(svg)).expect("svg file");
        assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"), "{svg}");
    }
    assert!(String::from_utf8_lossy(&out.stderr).contains("report written to"));
}

#[test]
fn a_malformed_file_names_line_and_column() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.csv");
    std::fs::write(
        &path,
        "time,open,high,low,close\n2017-05-02 04:00,1,2,0.5,1.5\n2017-05-02 05:00,1,2,x,1.5\n",
    )
    .expect("write");
    let out = node(&["backtest", "--csv", path.to_str().expect("UTF-8 path"), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).expect("UTF-8");
    assert!(
        stderr.ends_with("bad.csv: line 3, column 4 (low): `x` is not a decimal number\n"),
        "{stderr}"
    );
}

#[test]
fn strategy_flags_change_the_signals() {
    let out = node(&["backtest", "--csv", &eurusd_path(), "--json", "--min-rr", "2"]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    let rrs: Vec<f64> = stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("JSON")["rr"].as_f64().expect("rr")
        })
        .collect();
    assert!(!rrs.is_empty() && rrs.len() < 20, "{} signals", rrs.len());
    assert!(rrs.iter().all(|rr| *rr >= 2.0));
}

#[test]
fn a_file_without_signals_still_gives_a_summary_and_a_report() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("XAUUSD_D1.csv");
    std::fs::write(
        &path,
        "<DATE>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\n2024.01.02\t2062.5\t2070.25\t2055\t2064\n",
    )
    .expect("write");
    let report = dir.path().join("r");
    let out = node(&[
        "backtest",
        "--csv",
        path.to_str().expect("UTF-8 path"),
        "--timeframe",
        "D1",
        "--report",
        report.to_str().expect("UTF-8 path"),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    assert!(
        stdout.starts_with("fib-rsi/1 backtest: XAUUSD D1, 1 bars, 2024-01-02 00:00"),
        "{stdout}"
    );
    assert!(stdout.contains("tick 0.01 worth 1"), "the tick is inferred from the prices: {stdout}");
    assert!(stdout.contains("signals                0 (0 traded, 0 skipped)"), "{stdout}");
    assert!(stdout.contains("profit factor          no trades"), "{stdout}");
    assert!(report.join("index.html").exists());
}

//! Fib-RSI v1 on the EURUSD sample (fib-rsi.md, Check) and streaming = batch on real and
//! generated series.

use tradecast_node::strategy::{self, Params, Side, Signal, batch};
use tradecast_node::synthetic;
use tradecast_protocol::bars::format_rfc3339;

use crate::{eurusd, to_f64};

const TOL: f64 = 1e-9;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= TOL
}

/// Every field of every signal, prices within 1e-9 (they are in fact bit-identical: the two
/// forms do the same f64 operations in the same order, which the second assertion checks).
fn assert_same(streamed: &[Signal], batched: &[Signal], what: &str) {
    assert_eq!(streamed.len(), batched.len(), "{what}: signal counts differ");
    for (s, b) in streamed.iter().zip(batched) {
        assert_eq!(
            (s.bar, s.time_unix_ms, s.side, s.swing_low, s.swing_high),
            (b.bar, b.time_unix_ms, b.side, b.swing_low, b.swing_high),
            "{what}"
        );
        for (x, y) in [
            (s.entry, b.entry),
            (s.stop, b.stop),
            (s.tp1, b.tp1),
            (s.tp2, b.tp2),
            (s.rsi, b.rsi),
            (s.rr, b.rr),
            (s.swing_low_price, b.swing_low_price),
            (s.swing_high_price, b.swing_high_price),
        ] {
            assert!(close(x, y), "{what}: bar {}: {x} vs {y}", s.bar);
        }
    }
    assert_eq!(streamed, batched, "{what}: not bit-identical");
}

#[test]
fn eurusd_sample_gives_the_checked_signals() {
    let bars = to_f64(&eurusd());
    assert_eq!(bars.len(), 5000);
    let signals = strategy::run(&bars, &Params::default()).expect("default params are valid");
    assert_eq!(signals.len(), 20, "fib-rsi.md: 20 signals on the sample");
    let first = &signals[0];
    assert_eq!(first.bar, 211);
    assert_eq!(format_rfc3339(first.time_unix_ms), "2017-05-02T04:00:00Z");
    assert_eq!(first.side, Side::Sell);
    assert!(close(first.entry, 1.09128), "entry {}", first.entry);
    assert!(close(first.stop, 1.09179364), "stop {}", first.stop);
    // The leg's geometry holds for every signal.
    for s in &signals {
        match s.side {
            Side::Buy => assert!(s.stop < s.entry && s.entry < s.tp1 && s.tp1 < s.tp2, "{s:?}"),
            Side::Sell => assert!(s.stop > s.entry && s.entry > s.tp1 && s.tp1 > s.tp2, "{s:?}"),
        }
        assert!(s.rr >= 1.0, "{s:?}");
    }
}

#[test]
fn streaming_equals_batch_on_the_sample() {
    let bars = to_f64(&eurusd());
    let p = Params::default();
    let streamed = strategy::run(&bars, &p).expect("valid params");
    let batched = batch::signals(&bars, &p).expect("valid params");
    assert_same(&streamed, &batched, "EURUSD-H1");
}

#[test]
fn streaming_equals_batch_on_generated_series() {
    for (seed, digits) in [(1, 5), (2, 2), (3, 5)] {
        let bars = to_f64(&synthetic::bars(60_000, seed, digits));
        let p = Params::default();
        let streamed = strategy::run(&bars, &p).expect("valid params");
        let batched = batch::signals(&bars, &p).expect("valid params");
        assert!(streamed.len() > 50, "seed {seed}: only {} signals", streamed.len());
        assert_same(&streamed, &batched, &format!("seed {seed}, {digits} digits"));
    }
}

#[test]
fn streaming_equals_batch_with_other_parameters() {
    let bars = to_f64(&synthetic::bars(20_000, 7, 2));
    for p in [
        Params { swing_strength: 1, swing_lookback: 10, ..Params::default() },
        Params { swing_strength: 3, rsi_period: 2, atr_period: 1, ..Params::default() },
        Params {
            min_range_atr: 0.0,
            min_rr: 0.0,
            zone_shallow: 0.0,
            zone_deep: 1.0,
            ..Params::default()
        },
    ] {
        let streamed = strategy::run(&bars, &p).expect("valid params");
        let batched = batch::signals(&bars, &p).expect("valid params");
        assert!(!streamed.is_empty(), "{p:?}: no signals");
        assert_same(&streamed, &batched, &format!("{p:?}"));
    }
}

#[test]
fn invalid_parameters_are_refused() {
    let p = Params { swing_strength: 0, ..Params::default() };
    let err = strategy::Engine::new(p).expect_err("k = 0");
    assert_eq!(err.to_string(), "swing_strength must be at least 1, got 0");
    let p = Params { min_rr: f64::NAN, ..Params::default() };
    let err = batch::signals(&[], &p).expect_err("NaN");
    assert_eq!(err.to_string(), "min_rr must be a finite number, got NaN");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Streaming = batch for any series and any valid parameters, not only the defaults.
    #[test]
    fn streaming_equals_batch_for_random_series_and_parameters(
        seed in proptest::prelude::any::<u64>(),
        two_digits in proptest::prelude::any::<bool>(),
        n in 20usize..3000,
        k in 1usize..8,
        lookback in 1usize..200,
        rsi_period in 1usize..30,
        atr_period in 1usize..30,
        min_range_atr in 0.0f64..3.0,
        min_rr in 0.0f64..2.0,
        zone in (0.0f64..0.6, 0.6f64..1.0),
    ) {
        let bars = to_f64(&synthetic::bars(n, seed, if two_digits { 2 } else { 5 }));
        let p = Params {
            swing_strength: k,
            swing_lookback: lookback,
            rsi_period,
            atr_period,
            min_range_atr,
            min_rr,
            zone_shallow: zone.0,
            zone_deep: zone.1,
            ..Params::default()
        };
        let streamed = strategy::run(&bars, &p).expect("valid params");
        let batched = batch::signals(&bars, &p).expect("valid params");
        proptest::prop_assert_eq!(streamed, batched);
    }
}

#[test]
fn try_push_refuses_a_repeated_or_earlier_bar_and_keeps_its_state() {
    let bars = to_f64(&eurusd());
    let mut engine = strategy::Engine::new(Params::default()).expect("valid params");
    let mut signals = Vec::new();
    for (i, b) in bars.iter().enumerate() {
        signals.extend(engine.try_push(b).expect("in order"));
        if i > 0 && i % 97 == 0 {
            let err = engine.try_push(b).expect_err("the same bar again");
            assert_eq!(
                err.to_string(),
                format!(
                    "bar at {} ms is not after the previous bar at {} ms",
                    b.time_unix_ms, b.time_unix_ms
                )
            );
            assert!(engine.try_push(&bars[i - 1]).is_err(), "an earlier bar");
        }
    }
    assert_eq!(engine.n_bars(), bars.len());
    assert_eq!(signals, strategy::run(&bars, &Params::default()).expect("valid params"));
}

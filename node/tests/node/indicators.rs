//! RSI and ATR against TA-Lib: the committed fixture (fixtures/talib, generated once with the
//! real TA-Lib) must match every value to 1e-9, from the streaming and the series forms alike.

use tradecast_node::strategy::indicators::{Atr, Rsi, atr_series, rsi_series};

use crate::{eurusd, to_f64};

const FIXTURE: &str = include_str!("../fixtures/talib/talib-eurusd-h1.csv");

/// The fixture's column `name`, one `Option<f64>` per bar.
fn column(name: &str) -> Vec<Option<f64>> {
    let mut lines = FIXTURE.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let col = header.iter().position(|h| *h == name).expect("column in fixture");
    lines
        .map(|l| {
            let cell = l.split(',').nth(col).expect("cell");
            (!cell.is_empty()).then(|| cell.parse::<f64>().expect("number"))
        })
        .collect()
}

fn assert_matches(ours: &[Option<f64>], talib: &[Option<f64>], what: &str) {
    assert_eq!(ours.len(), talib.len(), "{what}: lengths");
    let mut compared = 0;
    for (t, (a, b)) in ours.iter().zip(talib).enumerate() {
        match (a, b) {
            (Some(a), Some(b)) => {
                assert!((a - b).abs() <= 1e-9, "{what} at bar {t}: ours {a}, TA-Lib {b}");
                compared += 1;
            }
            (None, None) => {}
            _ => panic!("{what} at bar {t}: ours {a:?}, TA-Lib {b:?}"),
        }
    }
    assert!(compared > 4900, "{what}: only {compared} values compared");
}

#[test]
fn match_talib() {
    let bars = to_f64(&eurusd());
    let high: Vec<f64> = bars.iter().map(|b| b.high).collect();
    let low: Vec<f64> = bars.iter().map(|b| b.low).collect();
    let close: Vec<f64> = bars.iter().map(|b| b.close).collect();
    for n in [14, 5] {
        let talib_rsi = column(&format!("rsi_{n}"));
        let talib_atr = column(&format!("atr_{n}"));
        assert_matches(&rsi_series(&close, n), &talib_rsi, &format!("rsi_series({n})"));
        assert_matches(
            &atr_series(&high, &low, &close, n),
            &talib_atr,
            &format!("atr_series({n})"),
        );
        let mut rsi = Rsi::new(n);
        let mut atr = Atr::new(n);
        let streamed_rsi: Vec<_> = close.iter().map(|&c| rsi.push(c)).collect();
        let streamed_atr: Vec<_> = bars.iter().map(|b| atr.push(b.high, b.low, b.close)).collect();
        assert_matches(&streamed_rsi, &talib_rsi, &format!("Rsi({n})"));
        assert_matches(&streamed_atr, &talib_atr, &format!("Atr({n})"));
    }
}

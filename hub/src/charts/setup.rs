//! One signal's setup as a picture: side and symbol in the title; entry, stop, target 1 and
//! target 2 as lines labelled with their exact prices (a `Modify` that moved one draws it as a
//! step at that instant); the risk zone (entry ↔ stop) and the reward zone (entry ↔ target 1)
//! over the signal's life, from its bar's open time to its expiry; the Fibonacci levels when
//! its indicators carry them; and each `Close` known, at its time and price.
//!
//! **Bars are not available at the hub** (nodes keep them; the hub stores signed records
//! only), so no candles are drawn: the time axis spans the signal's bar time → expiry (and any
//! later close). Drawing the bars under the setup is left for when a node publishes them.
//!
//! Fibonacci levels come from the signal's `indicators`: every `fib_<ratio>` value is drawn as
//! it is (`fib_0.618` = 1.0899); without those, a `swing_high` and `swing_low` pair (the leg,
//! fib-rsi.md) gives the v1 levels 0, 0.5, 0.618, 0.786 and 1 — `H − x·(H − L)` for a buy,
//! `L + x·(H − L)` for a sell — computed in `Decimal`. A signal with neither has none drawn.

use plotters::element::DashedPathElement;
use plotters::prelude::*;
use rust_decimal::Decimal;
use tradecast_protocol::{Close, Modify, Side, Signal};

use super::{
    Align, Canvas, ChartError, HEIGHT, Scale, Theme, WIDTH, f, fit, footer, header, ticks,
};

const LEFT: i32 = 74;
const RIGHT: i32 = WIDTH as i32 - 196;
const TOP: i32 = 74;
const BOTTOM: i32 = HEIGHT as i32 - 64;
/// Labels closer than this (px) are pushed apart.
const LABEL_GAP: i32 = 17;

/// What the setup chart draws: the signal and what followed it on the provider's chain.
#[derive(Debug, Clone, Copy)]
pub struct Setup<'a> {
    /// The signal as signed.
    pub signal: &'a Signal,
    /// Its `Modify` records, in chain order.
    pub modifies: &'a [Modify],
    /// Its `Close` records, in chain order.
    pub closes: &'a [Close],
}

/// A Fibonacci level: its ratio as text and its price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FibLevel {
    /// `0.618`.
    pub ratio: String,
    /// The price.
    pub price: Decimal,
}

/// The Fibonacci levels the signal's indicators give (see the module docs).
pub fn fib_levels(signal: &Signal) -> Vec<FibLevel> {
    let explicit: Vec<FibLevel> = signal
        .indicators
        .iter()
        .filter_map(|i| {
            let ratio = i.name.strip_prefix("fib_")?;
            Some(FibLevel { ratio: ratio.to_string(), price: i.value })
        })
        .collect();
    if !explicit.is_empty() {
        return explicit;
    }
    let get = |n: &str| signal.indicators.iter().find(|i| i.name == n).map(|i| i.value);
    let (Some(h), Some(l)) = (get("swing_high"), get("swing_low")) else { return Vec::new() };
    let Some(range) = h.checked_sub(l).filter(|r| *r > Decimal::ZERO) else { return Vec::new() };
    ["0", "0.5", "0.618", "0.786", "1"]
        .iter()
        .filter_map(|x| {
            let ratio: Decimal = x.parse().ok()?;
            let off = ratio.checked_mul(range)?;
            let price = match signal.side {
                Side::Buy => h.checked_sub(off)?,
                Side::Sell => l.checked_add(off)?,
            };
            Some(FibLevel { ratio: (*x).to_string(), price: price.normalize() })
        })
        .collect()
}

/// One level's value over time: (from ms, value), the first from the signal's bar time.
type Steps = Vec<(i64, Decimal)>;

fn steps(first: Decimal, t0: i64, changes: impl Iterator<Item = (i64, Decimal)>) -> Steps {
    let mut out = vec![(t0, first)];
    for (at, v) in changes {
        if out.last().is_some_and(|(_, last)| *last != v) {
            out.push((at.max(t0), v));
        }
    }
    out
}

/// A label at the right of the plot: text, colour, the y of its line.
struct Label {
    text: String,
    color: RGBColor,
    y: i32,
}

/// Spreads labels so that none overlaps the next (keeping their order by y).
fn spread(labels: &mut [Label]) {
    labels.sort_by_key(|l| l.y);
    for i in 1..labels.len() {
        let min = labels[i - 1].y + LABEL_GAP;
        if labels[i].y < min {
            labels[i].y = min;
        }
    }
    let over = labels.last().map_or(0, |l| l.y - (HEIGHT as i32 - 30));
    if over > 0 {
        for l in labels.iter_mut() {
            l.y -= over;
        }
        for i in (0..labels.len().saturating_sub(1)).rev() {
            let max = labels[i + 1].y - LABEL_GAP;
            if labels[i].y > max {
                labels[i].y = max;
            }
        }
    }
}

/// The setup's PNG.
pub fn setup_png(s: &Setup<'_>, theme: Theme) -> Result<Vec<u8>, ChartError> {
    let sig = s.signal;
    let side = match sig.side {
        Side::Buy => "BUY",
        Side::Sell => "SELL",
    };
    let title = format!("{side} {} · {}", sig.symbol, sig.timeframe.as_str());
    let t0 = sig.bar_time_ms;
    let stop = steps(sig.stop, t0, s.modifies.iter().filter_map(|m| Some((m.at_ms, m.stop?))));
    let tp1 = steps(sig.tp1, t0, s.modifies.iter().filter_map(|m| Some((m.at_ms, m.tp1?))));
    let tp2 = match sig.tp2 {
        Some(v) => steps(v, t0, s.modifies.iter().filter_map(|m| Some((m.at_ms, m.tp2?)))),
        None => Vec::new(),
    };
    let fibs = fib_levels(sig);
    let priced: Vec<&Close> = s.closes.iter().filter(|c| c.price.is_some()).collect();
    let prices: Vec<Decimal> = std::iter::once(sig.entry)
        .chain(stop.iter().chain(&tp1).chain(&tp2).map(|(_, v)| *v))
        .chain(fibs.iter().map(|l| l.price))
        .chain(priced.iter().filter_map(|c| c.price))
        .collect();
    let lo = prices.iter().copied().min().unwrap_or_default();
    let hi = prices.iter().copied().max().unwrap_or_default();
    if hi <= lo {
        return super::no_data(
            &title,
            "Entry, stop and targets are equal: no setup to draw.",
            theme,
        );
    }
    let Some(pad) = hi.checked_sub(lo).and_then(|r| r.checked_div(Decimal::from(12))) else {
        return super::no_data(&title, "The levels are out of range.", theme);
    };
    let (v0, v1) = (lo.checked_sub(pad).unwrap_or(lo), hi.checked_add(pad).unwrap_or(hi));
    let y = Scale { v0: f(v0), v1: f(v1), p0: f64::from(BOTTOM), p1: f64::from(TOP) };
    let last_event = s
        .closes
        .iter()
        .map(|c| c.at_ms)
        .chain(s.modifies.iter().map(|m| m.at_ms))
        .max()
        .unwrap_or(t0);
    let t_exp = sig.expires_at_ms.max(t0);
    let t_end = t_exp.max(last_event);
    let span = (i128::from(t_end) - i128::from(t0)).max(1);
    // 6% of room after the last instant, so markers there are not on the edge.
    let x = Scale {
        v0: t0 as f64,
        v1: t0 as f64 + span as f64 * 1.06,
        p0: f64::from(LEFT),
        p1: f64::from(RIGHT),
    };
    let xp = |t: i64| x.px(t as f64);
    let yp = |v: Decimal| y.px(f(v));

    let mut c = Canvas::new(WIDTH, HEIGHT, theme)?;
    let pal = c.pal;
    let mut sub = format!(
        "{} · leg {} · rr {} · {} entry · levels and times only: the hub holds no bars",
        sig.strategy_id,
        sig.leg,
        sig.rr.normalize(),
        match sig.entry_kind {
            tradecast_protocol::EntryKind::Market => "market",
            tradecast_protocol::EntryKind::Limit => "limit",
            tradecast_protocol::EntryKind::Stop => "stop",
        }
    );
    sub = fit(&c, &sub, 14.0, c.w as f32 - 40.0);
    header(&mut c, &title, Some(&sub));

    let price_ticks: Vec<(Decimal, i32)> =
        ticks(v0, v1, 6).into_iter().map(|t| (t, yp(t))).collect();
    let entry_y = yp(sig.entry);
    let stop_y0 = yp(sig.stop);
    let tp1_y0 = yp(sig.tp1);
    let (bar_x, exp_x, end_x) = (xp(t0), xp(t_exp), RIGHT);
    let step_path = |st: &Steps| -> Vec<(i32, i32)> {
        let mut pts = Vec::new();
        for (i, (at, v)) in st.iter().enumerate() {
            let py = yp(*v);
            if i > 0 {
                pts.push((xp(*at), pts.last().map_or(py, |p: &(i32, i32)| p.1)));
            }
            pts.push((xp(*at), py));
        }
        pts.push((end_x, pts.last().map_or(0, |p| p.1)));
        pts
    };
    let stop_path = step_path(&stop);
    let tp1_path = step_path(&tp1);
    let tp2_path = if tp2.is_empty() { Vec::new() } else { step_path(&tp2) };
    let fib_ys: Vec<i32> = fibs.iter().map(|l| yp(l.price)).collect();
    let close_pts: Vec<(i32, i32)> =
        priced.iter().filter_map(|cl| Some((xp(cl.at_ms), yp(cl.price?)))).collect();
    let unpriced: Vec<i32> =
        s.closes.iter().filter(|cl| cl.price.is_none()).map(|cl| xp(cl.at_ms)).collect();

    c.plot(|a| {
        let e = |e: DrawingAreaErrorKind<_>| e.to_string();
        for (_, py) in &price_ticks {
            a.draw(&PathElement::new(vec![(LEFT, *py), (RIGHT, *py)], pal.grid)).map_err(e)?;
        }
        // The zones over the signal's life (bar time → expiry).
        let zone_end = exp_x.max(bar_x + 2);
        a.draw(&Rectangle::new(
            [(bar_x, entry_y), (zone_end, stop_y0)],
            pal.bad.mix(0.16).filled(),
        ))
        .map_err(e)?;
        a.draw(&Rectangle::new(
            [(bar_x, entry_y), (zone_end, tp1_y0)],
            pal.good.mix(0.16).filled(),
        ))
        .map_err(e)?;
        for fy in &fib_ys {
            a.draw(&DashedPathElement::new(
                vec![(LEFT, *fy), (RIGHT, *fy)],
                6,
                5,
                pal.fib.stroke_width(1),
            ))
            .map_err(e)?;
        }
        for vx in [bar_x, exp_x] {
            a.draw(&DashedPathElement::new(
                vec![(vx, TOP), (vx, BOTTOM)],
                4,
                4,
                pal.muted.stroke_width(1),
            ))
            .map_err(e)?;
        }
        if !tp2_path.is_empty() {
            a.draw(&DashedPathElement::new(tp2_path.clone(), 10, 5, pal.good.stroke_width(2)))
                .map_err(e)?;
        }
        a.draw(&PathElement::new(tp1_path.clone(), pal.good.stroke_width(3))).map_err(e)?;
        a.draw(&PathElement::new(stop_path.clone(), pal.bad.stroke_width(3))).map_err(e)?;
        a.draw(&PathElement::new(
            vec![(bar_x, entry_y), (end_x, entry_y)],
            pal.line.stroke_width(3),
        ))
        .map_err(e)?;
        a.draw(&Circle::new((bar_x, entry_y), 6, pal.line.filled())).map_err(e)?;
        for p in &close_pts {
            a.draw(&Circle::new(*p, 7, pal.fg.filled())).map_err(e)?;
            a.draw(&Circle::new(*p, 4, pal.bg.filled())).map_err(e)?;
        }
        for ux in &unpriced {
            let tri = vec![(*ux, BOTTOM - 10), (*ux - 6, BOTTOM), (*ux + 6, BOTTOM)];
            a.draw(&Polygon::new(tri, pal.fg.filled())).map_err(e)?;
        }
        a.draw(&PathElement::new(vec![(LEFT, BOTTOM), (RIGHT, BOTTOM)], pal.muted)).map_err(e)?;
        Ok(())
    })?;

    for (t, py) in &price_ticks {
        c.text(LEFT as f32 - 8.0, *py as f32 + 5.0, 13.0, pal.muted, Align::Right, &t.to_string());
    }
    let last = |st: &Steps| st.last().map(|(_, v)| v.normalize());
    let moved = |st: &Steps| if st.len() > 1 { " (moved)" } else { "" };
    let mut labels = vec![Label {
        text: format!("Entry {}", sig.entry.normalize()),
        color: pal.line,
        y: entry_y,
    }];
    if let Some(v) = last(&stop) {
        labels.push(Label { text: format!("Stop {v}{}", moved(&stop)), color: pal.bad, y: yp(v) });
    }
    if let Some(v) = last(&tp1) {
        let text = format!("Target 1 {v}{}", moved(&tp1));
        labels.push(Label { text, color: pal.good, y: yp(v) });
    }
    if let Some(v) = last(&tp2) {
        let text = format!("Target 2 {v}{}", moved(&tp2));
        labels.push(Label { text, color: pal.good, y: yp(v) });
    }
    for (l, fy) in fibs.iter().zip(&fib_ys) {
        labels.push(Label {
            text: format!("Fib {} {}", l.ratio, l.price.normalize()),
            color: pal.fib,
            y: *fy,
        });
    }
    spread(&mut labels);
    for l in &labels {
        let text = fit(&c, &l.text, 15.0, (WIDTH as i32 - RIGHT - 16) as f32);
        c.text(RIGHT as f32 + 10.0, l.y as f32 + 5.0, 15.0, l.color, Align::Left, &text);
    }
    for (i, cl) in s.closes.iter().enumerate() {
        let (Some(p), px) = (cl.price, xp(cl.at_ms)) else { continue };
        // A close of fraction f takes f of what remains: 1 after a partial close is "the rest".
        let text = if cl.fraction == Decimal::ONE {
            let what = if i == 0 { "closed" } else { "closed the rest" };
            format!("{what} at {}", p.normalize())
        } else {
            let pct = cl.fraction.checked_mul(Decimal::ONE_HUNDRED).unwrap_or_default();
            format!("closed {}% at {}", pct.round_dp(1).normalize(), p.normalize())
        };
        let (tx, align) = if px > (LEFT + RIGHT) / 2 {
            (px as f32 - 10.0, Align::Right)
        } else {
            (px as f32 + 10.0, Align::Left)
        };
        c.text(tx, yp(p) as f32 - 10.0, 13.0, pal.fg, align, &text);
    }
    for ux in &unpriced {
        c.text(*ux as f32, BOTTOM as f32 - 14.0, 12.0, pal.fg, Align::Center, "closed, no price");
    }
    let yb = BOTTOM as f32 + 18.0;
    c.text(
        bar_x as f32,
        yb,
        13.0,
        pal.muted,
        Align::Left,
        &format!("bar {} UTC", super::when(t0, false)),
    );
    c.text(
        exp_x as f32,
        yb + 17.0,
        13.0,
        pal.muted,
        Align::Center,
        &format!("expires {}", super::when(t_exp, false)),
    );
    footer(&mut c);
    c.png()
}

#[cfg(test)]
pub(crate) mod tests {
    use tradecast_protocol::{DeviceId, EntryKind, IndicatorValue, SignalId, Timeframe};

    use super::super::testing::{count_near, decode, ink};
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    const T0: i64 = 1_493_697_600_000; // 2017-05-02 04:00 UTC

    pub(crate) fn signal(
        side: Side,
        entry: &str,
        stop: &str,
        tp1: &str,
        tp2: Option<&str>,
    ) -> Signal {
        Signal {
            id: SignalId([7; 16]),
            provider: DeviceId([1; 20]),
            strategy_id: "fib-rsi/1".into(),
            strategy_version: 1,
            symbol: "EURUSD".into(),
            timeframe: Timeframe::H1,
            side,
            entry_kind: EntryKind::Market,
            entry: d(entry),
            stop: d(stop),
            tp1: d(tp1),
            tp2: tp2.map(d),
            bar_time_ms: T0,
            expires_at_ms: T0 + 2 * 3_600_000,
            leg: 1,
            indicators: vec![IndicatorValue { name: "rsi".into(), value: d("58.2") }],
            rr: d("1.5"),
        }
    }

    #[test]
    fn fib_levels_from_the_leg_or_as_given() {
        let mut s = signal(Side::Sell, "1.09128", "1.09179364", "1.0890", None);
        assert!(fib_levels(&s).is_empty());
        s.indicators.push(IndicatorValue { name: "swing_high".into(), value: d("1.0920") });
        s.indicators.push(IndicatorValue { name: "swing_low".into(), value: d("1.0880") });
        let got: Vec<(String, Decimal)> =
            fib_levels(&s).into_iter().map(|l| (l.ratio, l.price)).collect();
        // A sell: L + x·R with L = 1.0880, R = 0.0040.
        assert_eq!(
            got,
            vec![
                ("0".into(), d("1.088")),
                ("0.5".into(), d("1.09")),
                ("0.618".into(), d("1.090472")),
                ("0.786".into(), d("1.091144")),
                ("1".into(), d("1.092")),
            ]
        );
        s.side = Side::Buy;
        assert_eq!(fib_levels(&s)[1].price, d("1.09"));
        assert_eq!(fib_levels(&s)[2].price, d("1.089528"));
        s.indicators.push(IndicatorValue { name: "fib_0.382".into(), value: d("1.0905") });
        assert_eq!(fib_levels(&s), vec![FibLevel { ratio: "0.382".into(), price: d("1.0905") }]);
    }

    #[test]
    fn a_setup_draws_its_levels_and_closes_deterministically() {
        let mut sig = signal(Side::Sell, "1.09128", "1.09179364", "1.0890", Some("1.08791"));
        sig.indicators.push(IndicatorValue { name: "swing_high".into(), value: d("1.0920") });
        sig.indicators.push(IndicatorValue { name: "swing_low".into(), value: d("1.0890") });
        let modifies = vec![Modify {
            signal_id: sig.id,
            stop: Some(d("1.0913")),
            tp1: None,
            tp2: None,
            reason: "breakeven".into(),
            at_ms: T0 + 3_600_000,
        }];
        let closes = vec![
            Close {
                signal_id: sig.id,
                fraction: d("0.5"),
                price: Some(d("1.0890")),
                reason: "tp1".into(),
                at_ms: T0 + 5_400_000,
            },
            Close {
                signal_id: sig.id,
                fraction: d("1"),
                price: Some(d("1.0913")),
                reason: "stop".into(),
                at_ms: T0 + 9_000_000,
            },
        ];
        let setup = Setup { signal: &sig, modifies: &modifies, closes: &closes };
        for theme in [Theme::Light, Theme::Dark] {
            let png = setup_png(&setup, theme).unwrap();
            super::super::testing::dump(&format!("tc-setup-{theme:?}.png"), &png);
            let (w, h, rgb) = decode(&png);
            assert_eq!((w, h), (WIDTH, HEIGHT));
            let pal = theme.palette();
            let plot = (LEFT as u32, TOP as u32, RIGHT as u32, BOTTOM as u32);
            for (what, col) in [("entry", pal.line), ("stop", pal.bad), ("target", pal.good)] {
                assert!(count_near(&rgb, w, plot, (col.0, col.1, col.2)) > 300, "{what}");
            }
            let labels = (RIGHT as u32, TOP as u32, WIDTH, BOTTOM as u32);
            assert!(ink(&rgb, w, labels, (pal.bg.0, pal.bg.1, pal.bg.2)) > 1_000, "labels");
            assert_eq!(png, setup_png(&setup, theme).unwrap(), "same input, same bytes");
        }
        let bare = Setup { signal: &sig, modifies: &[], closes: &[] };
        assert_ne!(
            setup_png(&bare, Theme::Light).unwrap(),
            setup_png(&setup, Theme::Light).unwrap()
        );
    }

    #[test]
    fn degenerate_setups_say_so_and_never_panic() {
        let flat = signal(Side::Buy, "1.1", "1.1", "1.1", Some("1.1"));
        let png =
            setup_png(&Setup { signal: &flat, modifies: &[], closes: &[] }, Theme::Light).unwrap();
        let no = super::super::no_data(
            "BUY EURUSD · H1",
            "Entry, stop and targets are equal: no setup to draw.",
            Theme::Light,
        )
        .unwrap();
        assert_eq!(png, no);
        // Expiry before the bar, a close without a price, extreme prices: pictures, no panic.
        let mut odd = signal(
            Side::Buy,
            "0",
            "-79228162514264337593543950335",
            "79228162514264337593543950335",
            None,
        );
        odd.expires_at_ms = i64::MIN;
        odd.bar_time_ms = i64::MAX;
        let closes = vec![Close {
            signal_id: odd.id,
            fraction: d("1"),
            price: None,
            reason: "manual".into(),
            at_ms: i64::MIN,
        }];
        let png = setup_png(&Setup { signal: &odd, modifies: &[], closes: &closes }, Theme::Dark);
        assert_eq!(decode(&png.unwrap()).0, WIDTH);
    }
}

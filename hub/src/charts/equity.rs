//! An equity curve with its drawdown underneath, from a `(unix ms, value)` series: the
//! cumulative-R curve of a provider's public record today ([`cumulative_r_png`]), money equity
//! curves later through the same [`equity_png`].
//!
//! Top panel: the curve by time (by point number when every point has the same time), filled
//! to the panel's floor, with the zero line and exact decimal ticks. Bottom panel: the
//! drawdown, each point's fall below the running peak of the series (the peak starts at the
//! first point), with its largest value printed. The subtitle states the last value and the
//! max drawdown, computed in `Decimal` from the series itself.

use plotters::prelude::*;
use rust_decimal::Decimal;
use tradecast_protocol::track::{TrackFigures, cumulative_r};

use super::{Align, Canvas, ChartError, HEIGHT, Scale, Theme, WIDTH, f, footer, header, ticks};

const LEFT: i32 = 78;
const RIGHT: i32 = WIDTH as i32 - 24;
const EQ_TOP: i32 = 74;
const EQ_BOTTOM: i32 = 286;
const DD_TOP: i32 = 320;
const DD_BOTTOM: i32 = 392;

/// Each point's fall below the running peak (≤ 0), and the largest fall (≥ 0).
pub fn drawdowns(values: &[Decimal]) -> (Vec<Decimal>, Decimal) {
    let mut peak = None::<Decimal>;
    let mut worst = Decimal::ZERO;
    let dd = values
        .iter()
        .map(|v| {
            let p = peak.map_or(*v, |p| p.max(*v));
            peak = Some(p);
            let fall = v.checked_sub(p).unwrap_or(Decimal::ZERO);
            worst = worst.max(-fall);
            fall
        })
        .collect();
    (dd, worst.normalize())
}

/// The cumulative-R curve of a provider's published figures: 0 at the first trade's opening,
/// then Σ R after each closed trade.
pub fn cumulative_r_png(
    name: &str,
    figures: &TrackFigures,
    theme: Theme,
) -> Result<Vec<u8>, ChartError> {
    let mut points = Vec::with_capacity(figures.trades.len() + 1);
    if let Some(start) = figures.trades.iter().map(|t| t.opened_at_ms).min() {
        points.push((start, Decimal::ZERO));
    }
    points.extend(cumulative_r(&figures.trades));
    equity_png(&format!("{name} — cumulative R"), "R", &points, theme)
}

/// The curve of `points` (in time order) titled `title`, values in `unit`.
pub fn equity_png(
    title: &str,
    unit: &str,
    points: &[(i64, Decimal)],
    theme: Theme,
) -> Result<Vec<u8>, ChartError> {
    if points.len() < 2 {
        return super::no_data(title, "No closed trades to draw yet.", theme);
    }
    let values: Vec<Decimal> = points.iter().map(|(_, v)| *v).collect();
    let (dd, max_dd) = drawdowns(&values);
    let lo = values.iter().copied().min().unwrap_or_default().min(Decimal::ZERO);
    let hi = values.iter().copied().max().unwrap_or_default().max(Decimal::ZERO);
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        (lo.checked_sub(Decimal::ONE).unwrap_or(lo), hi.checked_add(Decimal::ONE).unwrap_or(hi))
    };
    let y_ticks = ticks(lo, hi, 5);
    let v0 = y_ticks.first().copied().unwrap_or(lo).min(lo);
    let v1 = y_ticks.last().copied().unwrap_or(hi).max(hi);
    let y = Scale { v0: f(v0), v1: f(v1), p0: f64::from(EQ_BOTTOM), p1: f64::from(EQ_TOP) };
    let dd_floor = if max_dd.is_zero() { -Decimal::ONE } else { -max_dd };
    let ydd = Scale { v0: f(dd_floor), v1: 0.0, p0: f64::from(DD_BOTTOM), p1: f64::from(DD_TOP) };
    let (t_first, t_last) = (points[0].0, points[points.len() - 1].0);
    let by_time = t_last > t_first;
    let x = if by_time {
        Scale { v0: t_first as f64, v1: t_last as f64, p0: f64::from(LEFT), p1: f64::from(RIGHT) }
    } else {
        let n = (points.len() - 1) as f64;
        Scale { v0: 0.0, v1: n, p0: f64::from(LEFT), p1: f64::from(RIGHT) }
    };
    let px: Vec<i32> = points
        .iter()
        .enumerate()
        .map(|(i, (t, _))| if by_time { x.px(*t as f64) } else { x.px(i as f64) })
        .collect();
    let curve: Vec<(i32, i32)> = px.iter().zip(&values).map(|(x, v)| (*x, y.px(f(*v)))).collect();
    let dd_line: Vec<(i32, i32)> = px.iter().zip(&dd).map(|(x, v)| (*x, ydd.px(f(*v)))).collect();

    let mut c = Canvas::new(WIDTH, HEIGHT, theme)?;
    let pal = c.pal;
    let last = values[values.len() - 1].normalize();
    let subtitle =
        format!("{n} points · last {last} {unit} · max drawdown {max_dd} {unit}", n = points.len());
    header(&mut c, title, Some(&subtitle));
    let tick_px: Vec<(Decimal, i32)> = y_ticks.iter().map(|t| (*t, y.px(f(*t)))).collect();
    let zero = y.px(0.0);
    c.plot(|a| {
        let e = |e: DrawingAreaErrorKind<_>| e.to_string();
        for (_, py) in &tick_px {
            a.draw(&PathElement::new(vec![(LEFT, *py), (RIGHT, *py)], pal.grid)).map_err(e)?;
        }
        a.draw(&PathElement::new(vec![(LEFT, zero), (RIGHT, zero)], pal.muted)).map_err(e)?;
        let mut area = curve.clone();
        area.push((curve[curve.len() - 1].0, EQ_BOTTOM));
        area.push((curve[0].0, EQ_BOTTOM));
        a.draw(&Polygon::new(area, pal.line.mix(0.15).filled())).map_err(e)?;
        a.draw(&PathElement::new(curve.clone(), pal.line.stroke_width(3))).map_err(e)?;
        // Drawdown: the fall below the peak, filled down from zero.
        a.draw(&PathElement::new(vec![(LEFT, DD_TOP), (RIGHT, DD_TOP)], pal.muted)).map_err(e)?;
        let mut fill = dd_line.clone();
        fill.push((dd_line[dd_line.len() - 1].0, DD_TOP));
        fill.push((dd_line[0].0, DD_TOP));
        a.draw(&Polygon::new(fill, pal.bad.mix(0.35).filled())).map_err(e)?;
        a.draw(&PathElement::new(dd_line.clone(), pal.bad.stroke_width(2))).map_err(e)?;
        a.draw(&PathElement::new(vec![(LEFT, DD_BOTTOM), (RIGHT, DD_BOTTOM)], pal.grid))
            .map_err(e)?;
        Ok(())
    })?;
    for (t, py) in &tick_px {
        c.text(LEFT as f32 - 8.0, *py as f32 + 5.0, 14.0, pal.muted, Align::Right, &t.to_string());
    }
    c.text(LEFT as f32 + 6.0, DD_TOP as f32 + 16.0, 14.0, pal.bad, Align::Left, "Drawdown");
    c.text(LEFT as f32 - 8.0, DD_TOP as f32 + 5.0, 14.0, pal.muted, Align::Right, "0");
    // The panel's floor: the max drawdown, or −1 when there was none (the scale's floor).
    let floor = format!("-{}", if max_dd.is_zero() { Decimal::ONE } else { max_dd });
    c.text(LEFT as f32 - 8.0, DD_BOTTOM as f32 + 5.0, 14.0, pal.muted, Align::Right, &floor);
    // Time labels under the drawdown: first, middle, last.
    let span = i128::from(t_last) - i128::from(t_first);
    let days = span >= 2 * 86_400_000;
    if by_time {
        let mid = i64::try_from(i128::from(t_first) + span / 2).unwrap_or(t_first);
        let yb = DD_BOTTOM as f32 + 22.0;
        c.text(LEFT as f32, yb, 14.0, pal.muted, Align::Left, &super::when(t_first, days));
        c.text(
            x.px(mid as f64) as f32,
            yb,
            14.0,
            pal.muted,
            Align::Center,
            &super::when(mid, days),
        );
        c.text(RIGHT as f32, yb, 14.0, pal.muted, Align::Right, &super::when(t_last, days));
    }
    footer(&mut c);
    c.png()
}

#[cfg(test)]
mod tests {
    use super::super::testing::{count_near, decode, ink};
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    const DAY: i64 = 86_400_000;

    fn series(vals: &[&str]) -> Vec<(i64, Decimal)> {
        vals.iter().enumerate().map(|(i, v)| (1_780_000_000_000 + i as i64 * DAY, d(v))).collect()
    }

    #[test]
    fn drawdown_is_the_fall_below_the_running_peak() {
        let (dd, worst) = drawdowns(&[d("0"), d("2"), d("1"), d("-2"), d("3")]);
        assert_eq!(dd, vec![d("0"), d("0"), d("-1"), d("-4"), d("0")]);
        assert_eq!(worst, d("4"));
        assert_eq!(drawdowns(&[]).1, Decimal::ZERO);
    }

    #[test]
    fn a_curve_draws_line_and_drawdown_and_is_deterministic() {
        let pts = series(&["0", "1.5", "0.5", "-1", "2", "3.25", "2.25", "4"]);
        for theme in [Theme::Light, Theme::Dark] {
            let png = equity_png("Provider — cumulative R", "R", &pts, theme).unwrap();
            super::super::testing::dump(&format!("tc-equity-{theme:?}.png"), &png);
            let (w, h, rgb) = decode(&png);
            assert_eq!((w, h), (WIDTH, HEIGHT));
            let pal = theme.palette();
            let line = (pal.line.0, pal.line.1, pal.line.2);
            let bad = (pal.bad.0, pal.bad.1, pal.bad.2);
            let plot = (LEFT as u32, EQ_TOP as u32, RIGHT as u32, EQ_BOTTOM as u32);
            assert!(count_near(&rgb, w, plot, line) > 500, "the curve");
            let dd = (LEFT as u32, DD_TOP as u32 + 1, RIGHT as u32, DD_BOTTOM as u32);
            assert!(count_near(&rgb, w, dd, bad) > 100, "the drawdown");
            assert!(ink(&rgb, w, (0, 0, 400, 60), (pal.bg.0, pal.bg.1, pal.bg.2)) > 300, "title");
            assert_eq!(png, equity_png("Provider — cumulative R", "R", &pts, theme).unwrap());
        }
        let other = equity_png("Provider — cumulative R", "R", &series(&["0", "1"]), Theme::Light);
        assert_ne!(
            other.unwrap(),
            equity_png("Provider — cumulative R", "R", &pts, Theme::Light).unwrap()
        );
    }

    #[test]
    fn degenerate_series_draw_without_panicking() {
        let no = super::super::no_data("t", "No closed trades to draw yet.", Theme::Light).unwrap();
        assert_eq!(equity_png("t", "R", &[], Theme::Light).unwrap(), no);
        assert_eq!(equity_png("t", "R", &series(&["1"]), Theme::Light).unwrap(), no);
        // Flat, same instant, extremes: a picture each.
        let flat = equity_png("t", "R", &series(&["0", "0", "0"]), Theme::Light).unwrap();
        assert_eq!(decode(&flat).0, WIDTH);
        let same_time = vec![(5, d("1")), (5, d("-1")), (5, d("2"))];
        assert_eq!(decode(&equity_png("t", "R", &same_time, Theme::Dark).unwrap()).1, HEIGHT);
        let huge = vec![(i64::MIN, Decimal::MIN), (i64::MAX, Decimal::MAX)];
        assert_eq!(decode(&equity_png("t", "R", &huge, Theme::Light).unwrap()).0, WIDTH);
    }
}

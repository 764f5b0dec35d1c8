//! The backtest report: one self-contained HTML page (inline SVG, inline CSS, no script, no
//! network) with the summary, the equity and drawdown curves, the price chart with every entry and
//! exit, a close-up of each trade (candles, the leg, the 0.5–0.786 zone, stop and targets) and the
//! signal table; the main charts are also written as separate SVG files. Drawn with plotters'
//! SVG backend, so no browser and no font files are needed.
//!
//! Public API: [`write()`]`(dir, title, &bars, &config, &backtest) -> Result<PathBuf, ReportError>`
//! returns the page's path.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use rust_decimal::prelude::ToPrimitive;
use tradecast_protocol::bars::Bar;

use crate::backtest::{Backtest, Config, Outcome, Split, Trade};
use crate::display::{price, short_time};
use crate::strategy::Side;

/// Why the report could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// Creating the folder or writing a file failed.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// Plotters refused to draw (a degenerate range).
    #[error("drawing the {chart} chart: {message}")]
    Chart { chart: &'static str, message: String },
}

const WIDTH: u32 = 1100;
const GREEN: RGBColor = RGBColor(0, 140, 70);
const RED_: RGBColor = RGBColor(200, 30, 30);
const GREY: RGBColor = RGBColor(120, 120, 120);
const PRICE: RGBColor = RGBColor(40, 70, 140);
const MESH: RGBColor = RGBColor(242, 242, 242);
const LIGHT_GREEN: RGBColor = RGBColor(110, 200, 150);

/// An entry marker in pixels around its point: a triangle pointing up for a buy, down for a sell.
fn entry_shape(side: Side, size: i32, colour: RGBColor) -> Polygon<(i32, i32)> {
    let tip = if side == Side::Buy { -size } else { size };
    Polygon::new(vec![(0, tip), (-size, -tip), (size, -tip)], colour.filled())
}

fn chart_err<E: std::fmt::Display>(chart: &'static str) -> impl Fn(E) -> ReportError {
    move |e| ReportError::Chart { chart, message: e.to_string() }
}

fn f(d: rust_decimal::Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

/// A value range padded by 5 % (and never empty).
fn padded(lo: f64, hi: f64) -> std::ops::Range<f64> {
    let span = (hi - lo).abs().max(hi.abs() * 1e-6).max(1e-9);
    (lo - span * 0.05)..(hi + span * 0.05)
}

fn date_label(ms: &i64) -> String {
    short_time(*ms).get(..10).unwrap_or_default().to_owned()
}

/// Equity after each fill, as a step line over time.
fn equity_svg(b: &Backtest) -> Result<String, ReportError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 320)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_err("equity"))?;
        let pts: Vec<(i64, f64)> = b.equity.iter().map(|p| (p.time_unix_ms, p.equity)).collect();
        let (t0, t1) = time_span(&pts);
        let lo = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let hi = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        let mut chart = ChartBuilder::on(&root)
            .caption("Equity (realised, account currency)", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(t0..t1, padded(lo, hi))
            .map_err(chart_err("equity"))?;
        chart
            .configure_mesh()
            .x_labels(8)
            .x_label_formatter(&date_label)
            .light_line_style(MESH)
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(chart_err("equity"))?;
        chart
            .draw_series(LineSeries::new(steps(&pts), PRICE.stroke_width(2)))
            .map_err(chart_err("equity"))?;
        chart
            .draw_series(pts.iter().skip(1).map(|&(t, e)| Circle::new((t, e), 2, PRICE.filled())))
            .map_err(chart_err("equity"))?;
        root.present().map_err(chart_err("equity"))?;
    }
    Ok(svg)
}

/// Drawdown from the running peak of realised equity, percent, as a filled curve.
fn drawdown_svg(b: &Backtest) -> Result<String, ReportError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 240)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_err("drawdown"))?;
        let mut peak = f64::NEG_INFINITY;
        let pts: Vec<(i64, f64)> = b
            .equity
            .iter()
            .map(|p| {
                peak = peak.max(p.equity);
                let dd = if peak > 0.0 { (p.equity - peak) / peak * 100.0 } else { 0.0 };
                (p.time_unix_ms, dd)
            })
            .collect();
        let (t0, t1) = time_span(&pts);
        let worst = pts.iter().map(|p| p.1).fold(0.0, f64::min);
        let mut chart = ChartBuilder::on(&root)
            .caption("Drawdown from the peak (%)", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(t0..t1, padded(worst, 0.0))
            .map_err(chart_err("drawdown"))?;
        chart
            .configure_mesh()
            .x_labels(8)
            .x_label_formatter(&date_label)
            .light_line_style(MESH)
            .y_label_formatter(&|v| format!("{v:.1} %"))
            .draw()
            .map_err(chart_err("drawdown"))?;
        let line = steps(&pts);
        let mut area = line.clone();
        area.push((t1, line.last().map_or(0.0, |p| p.1)));
        area.push((t1, 0.0));
        area.push((t0, 0.0));
        chart
            .draw_series(std::iter::once(Polygon::new(area, RED_.mix(0.25).filled())))
            .map_err(chart_err("drawdown"))?;
        chart
            .draw_series(LineSeries::new(line, RED_.stroke_width(1)))
            .map_err(chart_err("drawdown"))?;
        root.present().map_err(chart_err("drawdown"))?;
    }
    Ok(svg)
}

fn time_span(pts: &[(i64, f64)]) -> (i64, i64) {
    let t0 = pts.first().map_or(0, |p| p.0);
    let t1 = pts.last().map_or(1, |p| p.0).max(t0 + 1);
    (t0, t1)
}

/// A step line: each value holds until the next point.
fn steps(pts: &[(i64, f64)]) -> Vec<(i64, f64)> {
    let mut out = Vec::with_capacity(pts.len() * 2);
    for (i, &(t, v)) in pts.iter().enumerate() {
        if i > 0 {
            out.push((t, pts[i - 1].1));
        }
        out.push((t, v));
    }
    out
}

/// The whole series with every trade: the close as a line (at most one low and one high per
/// pixel column, so a million bars still make a small file), entries as triangles, exits as
/// dots, each trade joined entry to exit in green (won) or red (lost).
fn price_svg(bars: &[Bar], b: &Backtest) -> Result<String, ReportError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 460)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_err("price"))?;
        let t0 = bars.first().map_or(0, |b| b.time_unix_ms);
        let t1 = bars.last().map_or(1, |b| b.time_unix_ms).max(t0 + 1);
        let lo = bars.iter().map(|b| f(b.low)).fold(f64::INFINITY, f64::min);
        let hi = bars.iter().map(|b| f(b.high)).fold(f64::NEG_INFINITY, f64::max);
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Price (close) with entries (▲ buy, ▼ sell) and exits (●: green won, red lost)",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(80)
            .build_cartesian_2d(t0..t1, padded(lo, hi))
            .map_err(chart_err("price"))?;
        chart
            .configure_mesh()
            .x_labels(8)
            .x_label_formatter(&date_label)
            .light_line_style(MESH)
            .y_label_formatter(&|v| price((v * 1e5).round() / 1e5))
            .draw()
            .map_err(chart_err("price"))?;
        let columns = 2 * WIDTH as usize;
        let per = bars.len().div_ceil(columns).max(1);
        let mut line = Vec::with_capacity(2 * columns);
        for chunk in bars.chunks(per) {
            if per == 1 {
                line.extend(chunk.iter().map(|b| (b.time_unix_ms, f(b.close))));
                continue;
            }
            let (mut lo_i, mut hi_i) = (0, 0);
            for (i, b) in chunk.iter().enumerate() {
                if b.close < chunk[lo_i].close {
                    lo_i = i;
                }
                if b.close > chunk[hi_i].close {
                    hi_i = i;
                }
            }
            let (a, z) = (lo_i.min(hi_i), lo_i.max(hi_i));
            line.push((chunk[a].time_unix_ms, f(chunk[a].close)));
            line.push((chunk[z].time_unix_ms, f(chunk[z].close)));
        }
        chart
            .draw_series(LineSeries::new(line, PRICE.stroke_width(1)))
            .map_err(chart_err("price"))?;
        for t in b.trades() {
            let won = t.pnl_money.is_sign_positive() && !t.pnl_money.is_zero();
            let colour = if won { GREEN } else { RED_ };
            let entry = (t.open_time_unix_ms, f(t.order.fill_ref));
            for fill in &t.fills {
                let exit = (fill.time_unix_ms, f(fill.price));
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![entry, exit],
                        colour.stroke_width(2),
                    )))
                    .map_err(chart_err("price"))?;
                chart
                    .draw_series(std::iter::once(Circle::new(exit, 4, colour.filled())))
                    .map_err(chart_err("price"))?;
            }
            let side_colour = if t.order.side == Side::Buy { GREEN } else { RED_ };
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at(entry) + entry_shape(t.order.side, 7, side_colour),
                ))
                .map_err(chart_err("price"))?;
        }
        root.present().map_err(chart_err("price"))?;
    }
    Ok(svg)
}

/// One trade up close: candles from before the leg to after the exit, the swing high and low,
/// the 0.5–0.786 zone, the stop, tp1, tp2, the entry and the fills.
fn trade_svg(
    bars: &[Bar],
    row_no: usize,
    s: &crate::strategy::Signal,
    t: Option<&Trade>,
    c: &Config,
) -> Result<String, ReportError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (540, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_err("trade"))?;
        let start = s.swing_low.min(s.swing_high).saturating_sub(5);
        let end_bar = t.map_or(s.bar + 10, |t| t.close_bar + 5).min(bars.len().saturating_sub(1));
        let window = bars.get(start..=end_bar).unwrap_or(&[]);
        let mut lo = window.iter().map(|b| f(b.low)).fold(f64::INFINITY, f64::min);
        let mut hi = window.iter().map(|b| f(b.high)).fold(f64::NEG_INFINITY, f64::max);
        for v in [s.stop, s.tp1, s.tp2] {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        let side = s.side.as_str();
        let outcome = match t {
            Some(t) => format!("{}, {:+.2} R", t.close_reason().as_str(), t.r),
            None => "skipped".to_owned(),
        };
        let caption =
            format!("#{row_no} {side} bar {} {}: {outcome}", s.bar, short_time(s.time_unix_ms));
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 14))
            .margin(6)
            .x_label_area_size(20)
            .y_label_area_size(64)
            .build_cartesian_2d(start as f64 - 0.5..end_bar as f64 + 0.5, padded(lo, hi))
            .map_err(chart_err("trade"))?;
        chart
            .configure_mesh()
            .x_labels(6)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|v| price((v * 1e5).round() / 1e5))
            .light_line_style(WHITE)
            .draw()
            .map_err(chart_err("trade"))?;
        // The zone between the 0.5 and 0.786 levels of the leg, from the later swing on.
        let r = s.swing_high_price - s.swing_low_price;
        let (z1, z2) = match s.side {
            Side::Buy => (
                s.swing_high_price - c.params.zone_shallow * r,
                s.swing_high_price - c.params.zone_deep * r,
            ),
            Side::Sell => (
                s.swing_low_price + c.params.zone_shallow * r,
                s.swing_low_price + c.params.zone_deep * r,
            ),
        };
        let leg_end = s.swing_low.max(s.swing_high) as f64;
        let x1 = end_bar as f64 + 0.5;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(leg_end, z1), (x1, z2)],
                RGBColor(240, 200, 60).mix(0.25).filled(),
            )))
            .map_err(chart_err("trade"))?;
        chart
            .draw_series(window.iter().enumerate().map(|(i, b)| {
                let x = (start + i) as f64;
                CandleStick::new(
                    x,
                    f(b.open),
                    f(b.high),
                    f(b.low),
                    f(b.close),
                    GREEN.filled(),
                    RED_.filled(),
                    4,
                )
            }))
            .map_err(chart_err("trade"))?;
        let leg = vec![
            (s.swing_low as f64, s.swing_low_price),
            (s.swing_high as f64, s.swing_high_price),
        ];
        chart
            .draw_series(std::iter::once(PathElement::new(leg, GREY.stroke_width(1))))
            .map_err(chart_err("trade"))?;
        let (stop, tp1, tp2) = match t {
            Some(t) => (f(t.order.stop), f(t.order.tp1), f(t.order.tp2)),
            None => (s.stop, s.tp1, s.tp2),
        };
        let from = s.bar as f64;
        for (level, colour) in [(stop, RED_), (tp1, GREEN), (tp2, LIGHT_GREEN)] {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(from, level), (x1, level)],
                    colour.stroke_width(1),
                )))
                .map_err(chart_err("trade"))?;
        }
        chart
            .draw_series(std::iter::once(
                EmptyElement::at((from, s.entry)) + entry_shape(s.side, 6, PRICE),
            ))
            .map_err(chart_err("trade"))?;
        if let Some(t) = t {
            for fill in &t.fills {
                let won = fill.pnl_money.is_sign_positive() && !fill.pnl_money.is_zero();
                let colour = if won { GREEN } else { RED_ };
                chart
                    .draw_series(std::iter::once(Circle::new(
                        (fill.bar as f64, f(fill.price)),
                        5,
                        colour.filled(),
                    )))
                    .map_err(chart_err("trade"))?;
            }
        }
        root.present().map_err(chart_err("trade"))?;
    }
    Ok(svg)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn write_file(path: &Path, text: &str) -> Result<(), ReportError> {
    std::fs::write(path, text).map_err(|source| ReportError::Io { path: path.to_owned(), source })
}

/// How many trade close-ups the page shows (the first ones): enough to judge the strategy by
/// eye, not so many that a long backtest makes a page no browser opens.
const MAX_TRADE_CHARTS: usize = 60;

/// Writes `index.html`, `equity.svg`, `drawdown.svg` and `price.svg` into `dir` (created if
/// missing) and returns the page's path.
pub fn write(
    dir: &Path,
    title: &str,
    bars: &[Bar],
    c: &Config,
    b: &Backtest,
) -> Result<PathBuf, ReportError> {
    std::fs::create_dir_all(dir)
        .map_err(|source| ReportError::Io { path: dir.to_owned(), source })?;
    let equity = equity_svg(b)?;
    let drawdown = drawdown_svg(b)?;
    let price_chart = price_svg(bars, b)?;
    write_file(&dir.join("equity.svg"), &equity)?;
    write_file(&dir.join("drawdown.svg"), &drawdown)?;
    write_file(&dir.join("price.svg"), &price_chart)?;

    let s = &b.summary;
    let mut h = String::new();
    let pf = |x: Option<f64>| x.map_or_else(|| "no losses".to_owned(), |v| format!("{v:.2}"));
    // Writing to a String cannot fail.
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>\
body{{font-family:system-ui,sans-serif;margin:24px auto;max-width:1140px;color:#222}}\
table{{border-collapse:collapse;font-size:13px}}td,th{{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}}\
th{{background:#f3f3f3}}td.l,th.l{{text-align:left}}.win{{color:#008c46}}.loss{{color:#c81e1e}}\
.grid{{display:flex;flex-wrap:wrap;gap:8px}}.kv td{{text-align:left}}svg{{max-width:100%;height:auto}}\
</style></head><body>\n<h1>{t}</h1>\n",
        t = esc(title)
    );
    let first = bars.first().map(|b| short_time(b.time_unix_ms)).unwrap_or_default();
    let last = bars.last().map(|b| short_time(b.time_unix_ms)).unwrap_or_default();
    let p = &c.params;
    let _ = write!(
        h,
        "<p>{} bars, {first} to {last} UTC. Fib-RSI v1: RSI {} / ATR {}, swing strength {}, lookback {}, \
zone {}–{}, RSI cross {} / {}, min range {} ATR, extension {}, min rr {}.<br>\
Account: equity {}, risk {} % a trade, {}, spread {}, commission {} a lot round turn, tick {} worth {} a lot, \
volume {}–{} step {}; {}.</p>",
        b.n_bars,
        p.rsi_period,
        p.atr_period,
        p.swing_strength,
        p.swing_lookback,
        p.zone_shallow,
        p.zone_deep,
        p.long_cross,
        p.short_cross,
        p.min_range_atr,
        p.extension,
        p.min_rr,
        c.equity,
        c.risk_pct,
        if c.split == Split::Halves {
            "two halves (tp1, tp2; break-even after tp1)"
        } else {
            "one position to tp1"
        },
        c.spread,
        c.commission_per_lot,
        c.spec.tick_size,
        c.spec.tick_value_loss,
        c.spec.volume_min,
        c.spec.volume_max,
        c.spec.volume_step,
        if c.one_position { "one position at a time" } else { "overlapping trades allowed" },
    );
    h.push('\n');
    let rows: [(&str, String); 9] = [
        ("Signals", format!("{} ({} traded, {} skipped)", s.n_signals, s.n_trades, s.n_skipped)),
        (
            "Win rate",
            format!("{:.1} % ({} wins, {} losses)", s.win_rate * 100.0, s.n_wins, s.n_losses),
        ),
        (
            "Profit factor",
            if s.n_trades == 0 {
                "no trades".to_owned()
            } else {
                format!("{} (in R: {})", pf(s.profit_factor_money), pf(s.profit_factor_r))
            },
        ),
        ("Expectancy", format!("{:+.3} R, {:+.2} a trade", s.expectancy_r, s.expectancy_money)),
        (
            "Net result",
            format!(
                "{:+.2} R, {:+.2} (equity {:.2} → {:.2})",
                s.total_r, s.net_profit_money, s.initial_equity, s.final_equity
            ),
        ),
        (
            "Max drawdown",
            format!(
                "{:.2} R, {:.2} ({:.2} % of the peak)",
                s.max_drawdown_r, s.max_drawdown_money, s.max_drawdown_pct
            ),
        ),
        ("Longest losing streak", format!("{} trades", s.longest_losing_streak)),
        ("Average holding time", format!("{:.1} h", s.avg_holding_hours)),
        ("Commission", format!("{:.2}", s.commission_money)),
    ];
    h.push_str("<h2>Summary</h2>\n<table class=\"kv\">\n");
    for (k, v) in rows {
        let _ = writeln!(h, "<tr><th class=\"l\">{k}</th><td>{}</td></tr>", esc(&v));
    }
    h.push_str("</table>\n<h2>Equity and drawdown</h2>\n");
    h.push_str(&equity);
    h.push_str(&drawdown);
    h.push_str("\n<h2>Price and trades</h2>\n");
    h.push_str(&price_chart);

    h.push_str("\n<h2>Signals</h2>\n<table>\n<tr><th>#</th><th>bar</th><th class=\"l\">time (UTC)</th><th class=\"l\">side</th><th>entry</th><th>stop</th><th>tp1</th><th>tp2</th><th>rsi</th><th>rr</th><th>lots</th><th class=\"l\">outcome</th><th>R</th><th>P&amp;L</th></tr>\n");
    for (n, row) in b.rows.iter().enumerate() {
        let sg = &row.signal;
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.2}</td>",
            n + 1,
            sg.bar,
            short_time(sg.time_unix_ms),
            sg.side.as_str(),
            price(sg.entry),
            price(sg.stop),
            price(sg.tp1),
            price(sg.tp2),
            sg.rsi,
            sg.rr
        );
        match &row.outcome {
            Outcome::Traded(t) => {
                let class = if t.r > 0.0 {
                    "win"
                } else if t.r < 0.0 {
                    "loss"
                } else {
                    ""
                };
                let _ = writeln!(
                    h,
                    "<td>{}</td><td class=\"l\">{} {} after {} h</td><td class=\"{class}\">{:+.2}</td><td class=\"{class}\">{:+.2}</td></tr>",
                    t.order.volume.normalize(),
                    t.close_reason().as_str(),
                    t.exit_price().normalize(),
                    (t.close_time_unix_ms - t.open_time_unix_ms) / 3_600_000,
                    t.r,
                    f(t.pnl_money)
                );
            }
            Outcome::Skipped(why) => {
                let _ = writeln!(
                    h,
                    "<td>–</td><td class=\"l\" colspan=\"3\">skipped: {}</td></tr>",
                    esc(&why.to_string())
                );
            }
        }
    }
    h.push_str("</table>\n");

    let _ = writeln!(
        h,
        "<h2>Trades up close</h2>\n<p>Candles from before the leg to five bars after the exit; grey: the leg; yellow: the \
{}–{} zone; red: stop; green: tp1 and (lighter) tp2; ▲ the entry at the signal bar's close; ● the fills.{}</p>\n<div class=\"grid\">",
        p.zone_shallow,
        p.zone_deep,
        if b.rows.len() > MAX_TRADE_CHARTS {
            format!(" The first {MAX_TRADE_CHARTS} signals are shown.")
        } else {
            String::new()
        }
    );
    for (n, row) in b.rows.iter().enumerate().take(MAX_TRADE_CHARTS) {
        let trade = match &row.outcome {
            Outcome::Traded(t) => Some(t),
            Outcome::Skipped(_) => None,
        };
        h.push_str(&trade_svg(bars, n + 1, &row.signal, trade, c)?);
    }
    h.push_str("</div>\n<p>Generated by tradecast-node backtest. Fills inside a bar follow the one intrabar rule: a bar touching both the stop and the target hits the stop first.</p>\n</body></html>\n");
    let page = dir.join("index.html");
    write_file(&page, &h)?;
    Ok(page)
}

//! Closed bars from the EA: deduplicated, cursors moved, gaps inside trading sessions asked
//! for again, quotes taken from the closes; in provider mode each new bar goes to the engine.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tradecast_protocol::ea::{self, Bars, BarsAnswer};

use crate::policy;

use super::mt5::{gap_in_session, sessions_of};
use super::{Node, NodeError};

/// A stored bar.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct BarRow {
    pub(super) open: Decimal,
    pub(super) high: Decimal,
    pub(super) low: Decimal,
    pub(super) close: Decimal,
}

pub(super) fn bar_f64(time_ms: i64, b: &BarRow) -> tradecast_protocol::bars::BarF64 {
    let f =
        |d: Decimal| -> f64 { rust_decimal::prelude::ToPrimitive::to_f64(&d).unwrap_or(f64::NAN) };
    tradecast_protocol::bars::BarF64 {
        time_unix_ms: time_ms,
        open: f(b.open),
        high: f(b.high),
        low: f(b.low),
        close: f(b.close),
    }
}

pub(super) fn series_name(symbol: &str, tf: ea::Timeframe) -> String {
    format!("{symbol}:{}", tf.name())
}

impl Node {
    /// Closed bars: deduplicated, cursors moved, gaps asked for, and in provider mode fed to
    /// the engine (its signals committed with the bars).
    pub fn bars(&self, b: Bars, now_ms: i64) -> Result<BarsAnswer, NodeError> {
        let mut inner = self.lock();
        let account = self.session_account(&inner, &b.session_id)?;
        let mut bars = b.bars.clone();
        bars.sort_by_key(|x| (x.symbol.clone(), x.timeframe, x.time_ms));
        let subs: Vec<(String, ea::Timeframe)> = self.settings.subscriptions.clone();
        let mut new_cmds = Vec::new();
        let mut fresh: BTreeMap<String, Vec<ea::LinkBar>> = BTreeMap::new();
        let cursors = self.store.write(|tx| {
            // The specs of the bars' symbols only (sessions, the point of a quote).
            let mut symbols: Vec<ea::SymbolSpec> = Vec::new();
            for bar in &bars {
                if !symbols.iter().any(|s| s.symbol == bar.symbol)
                    && let Some(spec) = tx.symbol_spec(&account, &bar.symbol)?
                {
                    symbols.push(spec);
                }
            }
            let mem = inner.accounts.entry(account.clone()).or_default();
            for bar in &bars {
                let Some(tf_ms) = bar.timeframe.seconds().map(|s| s * 1_000) else { continue };
                let series = series_name(&bar.symbol, bar.timeframe);
                if tx.has_bar(&account, &series, bar.time_ms)? {
                    continue;
                }
                let cname = format!("bars:{series}");
                let cursor = tx.cursor(&account, &cname)?;
                if let Some(c) = cursor
                    && bar.time_ms > c
                    && gap_in_session(&sessions_of(&symbols, &bar.symbol), c, bar.time_ms, tf_ms)
                    && mem.asked.insert((series.clone(), c))
                {
                    new_cmds.push(ea::Command::Backfill {
                        symbol: bar.symbol.clone(),
                        timeframe: bar.timeframe,
                        from_ms: c,
                        to_ms: bar.time_ms - tf_ms,
                    });
                }
                let row = BarRow { open: bar.open, high: bar.high, low: bar.low, close: bar.close };
                tx.put_bar(&account, &series, bar.time_ms, &row)?;
                let next = bar.time_ms.saturating_add(tf_ms);
                if cursor.is_none_or(|c| next > c) {
                    tx.set_cursor(&account, &cname, next)?;
                }
                fresh.entry(series).or_default().push(bar.clone());
            }
            for (series, list) in &fresh {
                for bar in list {
                    // The bar's close is the quote a signal made on it is evaluated against.
                    let tf_ms = bar.timeframe.seconds().unwrap_or(0) * 1_000;
                    let close_ms = bar.time_ms.saturating_add(tf_ms);
                    if let Some(spec) = symbols.iter().find(|s| s.symbol == bar.symbol)
                        && mem.quotes.get(&bar.symbol).is_none_or(|(t, _)| close_ms >= *t)
                    {
                        let q = policy::quote_from_bar(bar.close, bar.spread_points, spec.point);
                        mem.quotes.insert(bar.symbol.clone(), (close_ms, q));
                    }
                    if self.settings.provider {
                        self.feed_engine(tx, mem, &account, series, bar, now_ms)?;
                    }
                }
            }
            // The market clock moved: signals waiting past their expiry are recorded expired.
            let market = self.account_market_in(tx, &account, Some(&*mem))?;
            self.expire_in(tx, &account, market, now_ms)?;
            let mut out = Vec::new();
            for (symbol, tf) in &subs {
                let name = format!("bars:{}", series_name(symbol, *tf));
                if let Some(c) = tx.cursor(&account, &name)? {
                    out.push(ea::BarCursor { symbol: symbol.clone(), timeframe: *tf, from_ms: c });
                }
            }
            Ok(out)
        })?;
        if !new_cmds.is_empty() {
            inner.accounts.entry(account.clone()).or_default().commands.extend(new_cmds);
        }
        drop(inner);
        self.wake();
        Ok(BarsAnswer { ok: true, bars_from: cursors })
    }
}

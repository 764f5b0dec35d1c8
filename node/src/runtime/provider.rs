//! Provider mode: the streaming Fib-RSI engine per series (rebuilt from the stored bars after a
//! restart) and the signals it makes, signed into the outbox with the bars that made them.

use tradecast_protocol::ea;
use tradecast_protocol::{EntryKind, SignalId};

use crate::store::{self, StoreError};
use crate::strategy::{Engine, Params};

use super::bars::{BarRow, bar_f64};
use super::{AccountMem, Node};

fn to_domain_tf(tf: ea::Timeframe) -> tradecast_protocol::Timeframe {
    use tradecast_protocol::Timeframe as T;
    match tf {
        ea::Timeframe::M1 => T::M1,
        ea::Timeframe::M5 => T::M5,
        ea::Timeframe::M15 => T::M15,
        ea::Timeframe::M30 => T::M30,
        ea::Timeframe::H1 => T::H1,
        ea::Timeframe::H4 => T::H4,
        ea::Timeframe::D1 => T::D1,
        ea::Timeframe::W1 => T::W1,
        ea::Timeframe::MN1 => T::MN1,
    }
}

impl Node {
    pub(super) fn feed_engine(
        &self,
        tx: &mut store::Tx<'_>,
        mem: &mut AccountMem,
        account: &str,
        series: &str,
        bar: &ea::LinkBar,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let entry = match mem.engines.entry(series.to_owned()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                // After a restart the engine is rebuilt from the stored bars, silently: the
                // signals of those bars were committed with them.
                let mut engine = Engine::new(Params::default())
                    .map_err(|e| StoreError::Row { table: "bars", message: e.to_string() })?;
                let mut last = i64::MIN;
                for (time_ms, row) in tx.bars::<BarRow>(account, series)? {
                    if time_ms >= bar.time_ms {
                        break;
                    }
                    let _ = engine.try_push(&bar_f64(time_ms, &row));
                    last = time_ms;
                }
                v.insert((engine, last))
            }
        };
        if bar.time_ms <= entry.1 {
            return Ok(());
        }
        let row = BarRow { open: bar.open, high: bar.high, low: bar.low, close: bar.close };
        let b64 = bar_f64(bar.time_ms, &row);

        entry.1 = bar.time_ms;
        let Ok(Some(sig)) = entry.0.try_push(&b64) else { return Ok(()) };
        let tf_ms = bar.timeframe.seconds().unwrap_or(3_600) * 1_000;
        let expires = sig.time_unix_ms + 2 * tf_ms;
        let levels = match crate::orders::SignalLevels::from_signal(&sig, expires) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(target: "tradecast::strategy", error = %e, "signal without decimals skipped");
                return Ok(());
            }
        };
        let mut id_bytes = [0u8; 16];
        self.random(&mut id_bytes)
            .map_err(|e| StoreError::Row { table: "signals", message: e.to_string() })?;
        let signal = tradecast_protocol::Signal {
            id: SignalId(id_bytes),
            provider: self.identity.device_id(),
            strategy_id: crate::strategy::STRATEGY_ID.to_owned(),
            strategy_version: 1,
            symbol: bar.symbol.clone(),
            timeframe: to_domain_tf(bar.timeframe),
            side: match sig.side {
                crate::strategy::Side::Buy => tradecast_protocol::Side::Buy,
                crate::strategy::Side::Sell => tradecast_protocol::Side::Sell,
            },
            entry_kind: EntryKind::Market,
            entry: levels.entry,
            stop: levels.stop,
            tp1: levels.tp1,
            tp2: Some(levels.tp2),
            bar_time_ms: sig.time_unix_ms,
            expires_at_ms: expires,
            leg: 1,
            // RSI at the signal bar, and the leg's swing high and low: the Fib levels anyone
            // can redraw from the signed record (the hub's setup chart does).
            indicators: [
                ("rsi", sig.rsi),
                ("swing_high", sig.swing_high_price),
                ("swing_low", sig.swing_low_price),
            ]
            .into_iter()
            .filter_map(|(name, v)| {
                let value = crate::orders::decimal_8(name, v).ok()?;
                Some(tradecast_protocol::IndicatorValue { name: name.into(), value })
            })
            .collect(),
            rr: crate::orders::decimal_8("rr", sig.rr).unwrap_or_default(),
        };
        tracing::info!(target: "tradecast::strategy", %account, series, bar_time_ms = sig.time_unix_ms, side = ?sig.side, "signal");
        self.publish_in(
            tx,
            account,
            signal,
            "strategy",
            self.settings.self_trade,
            None,
            Some(&*mem),
            now_ms,
        )?;
        Ok(())
    }
}

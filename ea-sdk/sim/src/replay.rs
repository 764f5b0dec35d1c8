//! The replay driver: feeds bars into the shared broker and runs the terminals against their
//! nodes. Its replay time is the market clock every node sees (system.md, Time).
//!
//! At [`Speed::Max`] the replay moves to the next bar only when every terminal is caught up
//! (its node has taken in the last bar and has nothing in flight), so a run gives the same result
//! every time; at [`Speed::Factor`] one bar of `bar_seconds` passes in `bar_seconds / factor` of
//! wall time while the terminals poll on their own.

use std::time::Duration;

use tokio::sync::watch;

use crate::broker::BrokerError;
use crate::feed::Feed;
use crate::terminal::{SharedBroker, Terminal, lock};

/// How fast the replay runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// As fast as the nodes take it in, deterministically.
    Max,
    /// This many bar-seconds per wall second.
    Factor(f64),
}

impl std::str::FromStr for Speed {
    type Err = String;

    fn from_str(s: &str) -> Result<Speed, String> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(Speed::Max);
        }
        match s.parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 => Ok(Speed::Factor(f)),
            _ => Err(format!("speed must be a positive number or `max`, not {s:?}")),
        }
    }
}

/// Why a replay stopped early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The broker refused a bar.
    #[error("broker: {0}")]
    Broker(#[from] BrokerError),
}

/// What a replay did.
#[derive(Debug, Clone, Default)]
pub struct ReplaySummary {
    /// Bars fed to the broker.
    pub bars: usize,
    /// Steps that failed to reach the node.
    pub link_errors: usize,
}

/// Bars from several feeds, merged by time, into one broker.
#[derive(Debug)]
pub struct Replay {
    broker: SharedBroker,
    feeds: Vec<Feed>,
    pending: Vec<Option<(tradecast_protocol::bars::Bar, u32)>>,
}

/// Most steps a terminal gets to catch up on one bar at `--speed max`.
const MAX_STEPS_PER_BAR: usize = 50;

impl Replay {
    /// A replay of `feeds` into `broker` (every feed's symbol must exist there).
    pub fn new(broker: SharedBroker, feeds: Vec<Feed>) -> Replay {
        let pending = vec![None; feeds.len()];
        Replay { broker, feeds, pending }
    }

    /// Feeds the earliest next bar of all feeds into the broker; `false` when all are done.
    pub fn advance(&mut self) -> Result<bool, ReplayError> {
        let offset = lock(&self.broker).config().server_utc_offset_s;
        for (slot, feed) in self.pending.iter_mut().zip(self.feeds.iter_mut()) {
            if slot.is_none() {
                *slot = feed.next_bar(offset);
            }
        }
        let Some(i) = self
            .pending
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.map(|(b, _)| (i, b.time_unix_ms)))
            .min_by_key(|(_, t)| *t)
            .map(|(i, _)| i)
        else {
            return Ok(false);
        };
        let Some((bar, spread)) = self.pending[i].take() else { return Ok(false) };
        let feed = &self.feeds[i];
        lock(&self.broker).on_bar(&feed.symbol, &bar, spread, feed.bar_seconds())?;
        Ok(true)
    }

    /// Runs the replay to its end (or until `shutdown` turns true) with `terminals`, and hands
    /// them back.
    pub async fn run(
        mut self,
        mut terminals: Vec<Terminal>,
        speed: Speed,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(Vec<Terminal>, ReplaySummary), ReplayError> {
        let mut summary = ReplaySummary::default();
        match speed {
            Speed::Max => {
                loop {
                    if *shutdown.borrow() {
                        break;
                    }
                    for t in terminals.iter_mut() {
                        summary.link_errors += catch_up(t).await;
                    }
                    if !self.advance()? {
                        break;
                    }
                    summary.bars += 1;
                }
                for t in terminals.iter_mut() {
                    summary.link_errors += catch_up(t).await;
                }
                Ok((terminals, summary))
            }
            Speed::Factor(f) => {
                let bar_s = self.feeds.iter().map(Feed::bar_seconds).min().unwrap_or(60);
                let period = Duration::from_secs_f64((bar_s as f64 / f).max(0.001));
                let (stop_tx, stop_rx) = watch::channel(false);
                let mut handles = Vec::new();
                for mut t in terminals.drain(..) {
                    let mut stop = stop_rx.clone();
                    handles.push(tokio::spawn(async move {
                        let mut errors = 0usize;
                        while !*stop.borrow() {
                            let pause = match t.step().await {
                                Ok(()) if t.faults().is_silent() => Duration::from_millis(100),
                                Ok(()) => Duration::from_millis(10),
                                Err(e) => {
                                    errors += 1;
                                    tracing::warn!(target: "tradecast_sim::link", error = %e, "step failed");
                                    Duration::from_millis(500)
                                }
                            };
                            tokio::select! {
                                _ = tokio::time::sleep(pause) => {}
                                _ = stop.changed() => {}
                            }
                        }
                        (t, errors)
                    }));
                }
                let mut tick = tokio::time::interval(period);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = shutdown.changed() => {}
                    }
                    if *shutdown.borrow() || !self.advance()? {
                        break;
                    }
                    summary.bars += 1;
                }
                let _ = stop_tx.send(true);
                for h in handles {
                    if let Ok((t, errors)) = h.await {
                        summary.link_errors += errors;
                        terminals.push(t);
                    }
                }
                Ok((terminals, summary))
            }
        }
    }
}

/// Steps a terminal until it is caught up (bounded); returns the failed steps.
async fn catch_up(t: &mut Terminal) -> usize {
    let mut errors = 0;
    for _ in 0..MAX_STEPS_PER_BAR {
        match t.step().await {
            Ok(()) if t.caught_up() || t.faults().is_silent() => break,
            Ok(()) => {}
            Err(e) => {
                errors += 1;
                tracing::warn!(target: "tradecast_sim::link", error = %e, "step failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                if errors >= 5 {
                    break;
                }
            }
        }
    }
    errors
}

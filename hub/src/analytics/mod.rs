//! Analytics of a provider's public track record: pure functions, no I/O, no clock.
//!
//! The figures themselves are `tradecast_protocol::track` ([`outcomes`], [`figures`]) and, for
//! a published stream, `tradecast_protocol::track_money` ([`money_figures`]): the offline
//! verifier (`tradecast-verify`, protocol crate only) recomputes them with the same
//! code, so the page and the verifier cannot disagree by implementation. This module holds what
//! only the hub needs around them: which stored records are published ([`published_chain`]: the
//! contiguous prefix of a chain received before the delay's cutoff), the cutoff itself
//! ([`cutoff_ms`]), the rows of the page's signal list ([`signal_rows`]) and the cumulative-R
//! curve as SVG points ([`curve_points`]).

pub mod fidelity;
pub mod revenue;

use std::collections::{BTreeMap, HashMap};

use rust_decimal::Decimal;
use tradecast_protocol::track::TradeOutcome;
pub use tradecast_protocol::track::{TrackFigures, figures, outcomes};
pub use tradecast_protocol::track_money::{MoneyFigures, money_figures};
use tradecast_protocol::{Body, DeviceId, IdentityKey, Receipt, Record, Side, SignalId};

/// The cutoff moves in steps of this many ms, so a page, its JSON and its export stay the same
/// (and cacheable, by `ETag`) for a minute.
pub const CUTOFF_STEP_MS: i64 = 60_000;

/// The instant before which records are published: `now − delay`, rounded down to a whole
/// [`CUTOFF_STEP_MS`] (never later than `now − delay`).
pub fn cutoff_ms(now_ms: i64, delay_ms: i64) -> i64 {
    now_ms.saturating_sub(delay_ms).div_euclid(CUTOFF_STEP_MS) * CUTOFF_STEP_MS
}

/// One record of a provider's signals chain as the hub holds it, with its receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredItem {
    /// The record's `seq`.
    pub seq: u64,
    /// The record.
    pub record: Record,
    /// When the hub committed it.
    pub received_at_ms: i64,
    /// The hub's receipt.
    pub receipt: Receipt,
}

/// The published part of one author's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedChain {
    /// The author device's identity key.
    pub author_key: IdentityKey,
    /// Records `seq` 1..=n, each received at or before the cutoff.
    pub items: Vec<StoredItem>,
    /// The first missing `seq`, when the hub holds records after it (a hole the chain cannot be
    /// verified across: nothing after it is published).
    pub gap_at_seq: Option<u64>,
    /// Records held but not yet published (received after the cutoff, or after a gap).
    pub n_withheld: u64,
}

impl PublishedChain {
    /// The author.
    pub fn author(&self) -> DeviceId {
        self.author_key.device_id()
    }
}

/// Merges the records of one author's chain (its signals chain; or its published stream, with
/// `posted` empty) from the sync store (`committed`, which
/// wins on a conflicting `seq`) and from the signals API (`posted`), and keeps the contiguous
/// prefix from `seq` 1 of records received at or before `cutoff_ms`.
pub fn published_chain(
    author_key: IdentityKey,
    committed: Vec<StoredItem>,
    posted: Vec<StoredItem>,
    cutoff_ms: i64,
) -> PublishedChain {
    let mut by_seq: BTreeMap<u64, StoredItem> = BTreeMap::new();
    for item in committed {
        by_seq.entry(item.seq).or_insert(item);
    }
    for item in posted {
        by_seq.entry(item.seq).or_insert(item);
    }
    let total = by_seq.len() as u64;
    let mut items = Vec::new();
    let mut gap_at_seq = None;
    for (next, (seq, item)) in (1u64..).zip(by_seq) {
        if seq != next {
            gap_at_seq = Some(next);
            break;
        }
        if item.received_at_ms > cutoff_ms {
            break;
        }
        items.push(item);
    }
    let n_withheld = total - items.len() as u64;
    PublishedChain { author_key, items, gap_at_seq, n_withheld }
}

/// One signal of the page's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalRow {
    /// The signal.
    pub signal_id: SignalId,
    /// Its record's header hash (hex): the link to the signed record.
    pub record_hash: String,
    /// The author device.
    pub author: DeviceId,
    /// `seq` in the author's chain.
    pub seq: u64,
    /// Symbol.
    pub symbol: String,
    /// Direction.
    pub side: Side,
    /// Entry, stop and first target.
    pub entry: Decimal,
    /// Stop.
    pub stop: Decimal,
    /// First target.
    pub tp1: Decimal,
    /// The record's `created_at_ms`.
    pub created_at_ms: i64,
    /// When the hub committed it.
    pub received_at_ms: i64,
    /// The result in R, once closed and priced.
    pub r: Option<Decimal>,
}

/// The published signals, newest first (at most `limit`), each with its result if scored.
pub fn signal_rows(
    chains: &[PublishedChain],
    trades: &[TradeOutcome],
    limit: usize,
) -> Vec<SignalRow> {
    let results: HashMap<(DeviceId, SignalId), Decimal> =
        trades.iter().map(|t| ((t.author, t.signal_id), t.r)).collect();
    let mut rows: Vec<SignalRow> = chains
        .iter()
        .flat_map(|c| c.items.iter())
        .filter_map(|item| {
            let Ok(Body::Signal(s)) = item.record.body() else { return None };
            let author = item.record.header().author;
            Some(SignalRow {
                r: results.get(&(author, s.id)).copied(),
                signal_id: s.id,
                record_hash: item.record.header_hash().to_hex(),
                author,
                seq: item.seq,
                symbol: s.symbol,
                side: s.side,
                entry: s.entry,
                stop: s.stop,
                tp1: s.tp1,
                created_at_ms: item.record.header().created_at_ms,
                received_at_ms: item.received_at_ms,
            })
        })
        .collect();
    rows.sort_by(|a, b| {
        (b.received_at_ms, b.author, b.seq).cmp(&(a.received_at_ms, a.author, a.seq))
    });
    rows.truncate(limit);
    rows
}

/// The cumulative-R curve (starting at 0 before the first trade) as SVG `points` in a
/// `width` × `height` box: x by trade number, y scaled between the curve's lowest and highest
/// values (0 included), one decimal place.
pub fn curve_points(trades: &[TradeOutcome], width: u32, height: u32) -> String {
    let mut values = vec![Decimal::ZERO];
    let mut cum = Decimal::ZERO;
    for t in trades {
        cum = cum.checked_add(t.r).unwrap_or(cum);
        values.push(cum);
    }
    series_points(&values, width, height)
}

/// `values` as SVG `points` in a `width` × `height` box: x by index, y scaled between their
/// lowest and highest values, one decimal place (the equity and drawdown curves of the money
/// section; the cumulative-R curve).
pub fn series_points(values: &[Decimal], width: u32, height: u32) -> String {
    let lo = values.iter().copied().min().unwrap_or_default();
    let hi = values.iter().copied().max().unwrap_or_default();
    series_points_in(values, (lo, hi), width, height)
}

/// [`series_points`] scaled between `lo` and `hi` (so two series share one scale).
pub fn series_points_in(
    values: &[Decimal],
    (lo, hi): (Decimal, Decimal),
    width: u32,
    height: u32,
) -> String {
    let span = if hi > lo { hi - lo } else { Decimal::ONE };
    let (w, h) = (Decimal::from(width), Decimal::from(height));
    let steps = Decimal::from(values.len().saturating_sub(1).max(1) as u64);
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let x = Decimal::from(i as u64).checked_mul(w).and_then(|x| x.checked_div(steps));
            let y = (*v - lo).checked_mul(h).and_then(|y| y.checked_div(span)).map(|y| h - y);
            let show = |d: Option<Decimal>| d.unwrap_or_default().round_dp(1).normalize();
            format!("{},{}", show(x), show(y))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use tradecast_protocol::{
        ChainHash, Close, EntryKind, HeaderFields, Identity, StreamId, Timeframe,
    };

    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn signal(who: &Identity, id: u8, seq: u64, prev: ChainHash, at: i64) -> Record {
        let body = Body::Signal(tradecast_protocol::Signal {
            id: SignalId([id; 16]),
            provider: who.device_id(),
            strategy_id: "s".into(),
            strategy_version: 1,
            symbol: "EURUSD".into(),
            timeframe: Timeframe::H1,
            side: Side::Buy,
            entry_kind: EntryKind::Market,
            entry: d("1.1"),
            stop: d("1.09"),
            tp1: d("1.11"),
            tp2: None,
            bar_time_ms: at - 1,
            expires_at_ms: at + 1,
            leg: 1,
            indicators: vec![],
            rr: Decimal::ONE,
        });
        let fields =
            HeaderFields { stream: StreamId::SIGNALS, seq, prev_hash: prev, created_at_ms: at };
        Record::sign(who, fields, &body)
    }

    fn close(who: &Identity, id: u8, seq: u64, prev: ChainHash, at: i64) -> Record {
        let body = Body::Close(Close {
            signal_id: SignalId([id; 16]),
            fraction: Decimal::ONE,
            price: Some(d("1.12")),
            reason: "tp".into(),
            at_ms: at,
        });
        let fields =
            HeaderFields { stream: StreamId::SIGNALS, seq, prev_hash: prev, created_at_ms: at };
        Record::sign(who, fields, &body)
    }

    fn item(hub: &Identity, record: Record, received: i64) -> StoredItem {
        StoredItem {
            seq: record.header().seq,
            receipt: Receipt::sign(hub, &record, received),
            record,
            received_at_ms: received,
        }
    }

    #[test]
    fn the_cutoff_is_the_delay_rounded_down_to_a_minute() {
        for (now, delay, cut) in [
            (3_600_000, 3_600_000, 0),
            (3_659_999, 3_600_000, 0),
            (3_660_000, 3_600_000, 60_000),
            (10_000, 60_000, -60_000),
        ] {
            assert_eq!(cutoff_ms(now, delay), cut, "{now} {delay}");
            assert!(cutoff_ms(now, delay) <= now - delay);
        }
    }

    #[test]
    fn the_published_chain_is_the_prefix_before_the_cutoff() {
        let who = Identity::from_secret_bytes(&[1; 32], &[2; 32]);
        let hub = Identity::from_secret_bytes(&[3; 32], &[4; 32]);
        let s1 = signal(&who, 1, 1, ChainHash::GENESIS, 100);
        let c2 = close(&who, 1, 2, s1.header_hash(), 200);
        let s3 = signal(&who, 3, 3, c2.header_hash(), 300);
        let s5 = signal(&who, 5, 5, ChainHash::GENESIS, 500);
        let key = who.identity_key();
        // Two doors: seq 1 and 3 posted, 2 committed by sync; 3 received after the cutoff.
        let chain = published_chain(
            key,
            vec![item(&hub, c2.clone(), 250)],
            vec![item(&hub, s1.clone(), 150), item(&hub, s3.clone(), 1_000)],
            400,
        );
        let seqs: Vec<u64> = chain.items.iter().map(|i| i.seq).collect();
        assert_eq!((seqs, chain.gap_at_seq, chain.n_withheld), (vec![1, 2], None, 1));
        // Past the cutoff, seq 4 is missing: nothing after the hole is published.
        let chain = published_chain(
            key,
            vec![item(&hub, s1.clone(), 150), item(&hub, c2.clone(), 250)],
            vec![item(&hub, s3.clone(), 350), item(&hub, s5, 360)],
            10_000,
        );
        assert_eq!(chain.items.len(), 3);
        assert_eq!((chain.gap_at_seq, chain.n_withheld), (Some(4), 1));
        // A conflicting seq: the committed chain wins.
        let other = signal(&who, 9, 1, ChainHash::GENESIS, 101);
        let chain = published_chain(
            key,
            vec![item(&hub, s1.clone(), 150)],
            vec![item(&hub, other, 151)],
            10_000,
        );
        assert_eq!(chain.items[0].record, s1);
        // The rows: newest first, the closed one with its R (+2: 1.12 on 1.10 with a 0.01 risk).
        let chain = published_chain(
            key,
            vec![item(&hub, s1, 150), item(&hub, c2, 250), item(&hub, s3, 350)],
            vec![],
            10_000,
        );
        let records: Vec<Record> = chain.items.iter().map(|i| i.record.clone()).collect();
        let figs = figures(outcomes([records.as_slice()])).unwrap();
        let rows = signal_rows(std::slice::from_ref(&chain), &figs.trades, 10);
        let got: Vec<(u64, Option<Decimal>)> = rows.iter().map(|r| (r.seq, r.r)).collect();
        assert_eq!(got, vec![(3, None), (1, Some(d("2")))]);
        assert_eq!(signal_rows(&[chain], &figs.trades, 1).len(), 1);
    }

    #[test]
    fn the_curve_spans_its_box() {
        let who = Identity::from_secret_bytes(&[1; 32], &[2; 32]);
        let t = |r: &str| TradeOutcome {
            signal_id: SignalId([0; 16]),
            author: who.device_id(),
            signal_seq: 1,
            close_seq: 2,
            symbol: "EURUSD".into(),
            side: Side::Buy,
            entry: d("1"),
            stop: d("0.9"),
            opened_at_ms: 0,
            closed_at_ms: 1,
            r: d(r),
            move_price: d("0"),
            pips: None,
        };
        assert_eq!(curve_points(&[], 100, 50), "0,50");
        // 0 → 2 → 1 → -2: from the top (2) to the bottom (-2) of a 50-high box.
        assert_eq!(curve_points(&[t("2"), t("-1"), t("-3")], 300, 40), "0,20 100,0 200,10 300,40");
        // A money series: 1000 → 1100 → 1045 between its own lowest and highest values.
        assert_eq!(
            series_points(&[d("1000"), d("1100"), d("1045")], 100, 100),
            "0,100 50,0 100,55"
        );
        assert_eq!(series_points(&[], 100, 100), "");
    }
}

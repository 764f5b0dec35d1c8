//! The money engine and the verifier at the scale: a published stream of 100,000 closed
//! trades (one ticket in a hundred sent twice), 20,000 equity points and 200 balance
//! operations, timed through `track_money::money_figures` alone and through `verify_export`
//! (every signature, `seq`, previous hash and receipt checked, every figure recomputed and
//! compared). The issue asks for a verifier of at least 10,000 records/s.
//!
//! `cargo bench -p tradecast-protocol --bench track_money` (a `harness = false` binary). It ends
//! with `RESULT <name> <value> <unit>` lines; compare only runs on the same machine.

use std::time::Instant;

use rust_decimal::Decimal;
use tradecast_protocol::track::{
    EXPORT_FORMAT, ExportedChain, ExportedRecord, TrackExport, figures, outcomes, verify_export,
};
use tradecast_protocol::track_money::money_figures;
use tradecast_protocol::{
    BalanceKind, BalanceOperation, Body, ChainHash, EquityPoint, HeaderFields, Identity, Receipt,
    Record, Side, StreamId, TradeClosed,
};

const T0: i64 = 1_767_225_600_000;
const TRADES: u64 = 100_000;
const MINUTE: i64 = 60_000;

fn main() {
    let who = Identity::from_secret_bytes(&[31; 32], &[32; 32]);
    let hub = Identity::from_secret_bytes(&[33; 32], &[34; 32]);
    let device = who.device_id();
    let mut records: Vec<Record> = Vec::new();
    let mut push = |body: Body, at: i64| {
        let fields = HeaderFields {
            stream: StreamId::PUBLISHED,
            seq: records.len() as u64 + 1,
            prev_hash: records.last().map_or(ChainHash::GENESIS, Record::header_hash),
            created_at_ms: at,
        };
        records.push(Record::sign(&who, fields, &body));
    };
    let started = Instant::now();
    let mut equity = Decimal::from(10_000);
    for i in 0..TRADES {
        let at = T0 + i as i64 * 5 * MINUTE;
        // A deterministic mix of wins and losses, in cents.
        let profit = Decimal::new(((i * 7_919) % 2_001) as i64 - 950, 2);
        let trade = TradeClosed {
            signal_id: None,
            device,
            ticket: i,
            symbol: ["EURUSD", "GBPUSD", "USDJPY", "XAUUSD"][(i % 4) as usize].into(),
            side: if i % 2 == 0 { Side::Buy } else { Side::Sell },
            volume: Decimal::new(10, 2),
            open_price: Decimal::new(11_000, 4),
            close_price: Decimal::new(11_010, 4),
            opened_at_ms: at - 47 * MINUTE,
            closed_at_ms: at,
            profit,
            commission: Decimal::new(-70, 2),
            swap: Decimal::ZERO,
        };
        if i % 100 == 0 {
            push(Body::TradeClosed(trade.clone()), at);
        }
        push(Body::TradeClosed(trade), at);
        equity += profit - Decimal::new(70, 2);
        if i % 5 == 0 {
            let point = EquityPoint { device, at_ms: at, balance: equity, equity };
            push(Body::EquityPoint(point), at);
        }
        if i % 500 == 0 {
            let (kind, amount) = if i % 1_000 == 0 {
                (BalanceKind::Deposit, Decimal::from(500))
            } else {
                (BalanceKind::Withdrawal, Decimal::from(-300))
            };
            equity += amount;
            let op = BalanceOperation {
                device,
                deal: 1_000_000 + i,
                kind,
                amount,
                currency: "USD".into(),
                at_ms: at,
                comment: String::new(),
            };
            push(Body::BalanceOperation(op), at);
        }
    }
    let n = records.len();
    println!("built and signed {n} published records in {:.1} s", started.elapsed().as_secs_f64());

    let t = Instant::now();
    let money = money_figures(device, &records).expect("figures");
    let engine_s = t.elapsed().as_secs_f64();
    println!(
        "money_figures: {} trades, {} equity points, TWR {} %, max drawdown {} ({} %), Sharpe {}",
        money.n_trades,
        money.curve.len(),
        tradecast_protocol::track::show(money.twr_pct),
        money.max_drawdown,
        tradecast_protocol::track::show(money.max_drawdown_pct),
        tradecast_protocol::track::show(money.sharpe),
    );

    let chain = ExportedChain {
        author_key: who.identity_key(),
        records: records
            .iter()
            .map(|r| ExportedRecord {
                record: data_encoding::BASE64.encode(&r.encode()),
                receipt: Receipt::sign(&hub, r, r.header().created_at_ms + 5),
            })
            .collect(),
        gap_at_seq: None,
    };
    let cutoff = T0 + TRADES as i64 * 5 * MINUTE + 3_600_000;
    let export = TrackExport {
        format: EXPORT_FORMAT.into(),
        provider: "bench".into(),
        hub_key: hub.identity_key(),
        generated_at_ms: cutoff + 3_600_000,
        delay_ms: 3_600_000,
        cutoff_ms: cutoff,
        chains: vec![],
        figures: figures(outcomes(std::iter::empty::<&[Record]>())).expect("figures"),
        published: vec![chain],
        money: vec![money],
        trust: None,
    };
    let bytes = serde_json::to_vec(&export).expect("json");
    let t = Instant::now();
    let verified = verify_export(&bytes, Some(&hub.identity_key())).expect("the export verifies");
    let verify_s = t.elapsed().as_secs_f64();
    assert_eq!(verified.n_records, n);
    println!("export: {:.1} MB", bytes.len() as f64 / 1e6);
    println!("RESULT money_figures_records_per_s {:.0} records/s", n as f64 / engine_s);
    println!("RESULT money_figures_ms {:.1} ms", engine_s * 1e3);
    println!("RESULT verify_export_money_records_per_s {:.0} records/s", n as f64 / verify_s);
    println!("RESULT verify_export_money_s {verify_s:.2} s");
}

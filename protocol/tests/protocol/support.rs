//! Shared builders for the tests: seeded identities, a typical signal, chains.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rust_decimal::Decimal;
use tradecast_protocol::{
    Body, ChainHash, EntryKind, HeaderFields, Identity, IndicatorValue, Record, Side, Signal,
    SignalId, StreamId, Timeframe,
};

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

pub fn identity(seed: u64) -> Identity {
    Identity::generate(&mut rng(seed))
}

pub fn dec(text: &str) -> Decimal {
    text.parse().expect("test decimal")
}

/// A typical EURUSD signal of `provider`.
pub fn signal(provider: &Identity, n: u8) -> Signal {
    Signal {
        id: SignalId([n; 16]),
        provider: provider.device_id(),
        strategy_id: "fib-rsi".into(),
        strategy_version: 3,
        symbol: "EURUSD".into(),
        timeframe: Timeframe::H1,
        side: Side::Buy,
        entry_kind: EntryKind::Limit,
        entry: dec("1.08250"),
        stop: dec("1.08010"),
        tp1: dec("1.08610"),
        tp2: Some(dec("1.08970")),
        bar_time_ms: 1_764_000_000_000,
        expires_at_ms: 1_764_003_600_000,
        leg: 1,
        indicators: vec![
            IndicatorValue { name: "rsi".into(), value: dec("27.43") },
            IndicatorValue { name: "fib_618".into(), value: dec("1.08243") },
        ],
        rr: dec("1.5"),
    }
}

/// `n` signed signal records of `author` in the signals stream, chained from seq 1.
pub fn chain(author: &Identity, n: usize) -> Vec<Record> {
    let mut records: Vec<Record> = Vec::with_capacity(n);
    let mut prev = ChainHash::GENESIS;
    for i in 0..n {
        let fields = HeaderFields {
            stream: StreamId::SIGNALS,
            seq: i as u64 + 1,
            prev_hash: prev,
            created_at_ms: 1_764_000_000_000 + i as i64,
        };
        let record = Record::sign(author, fields, &Body::Signal(signal(author, i as u8)));
        prev = record.header_hash();
        records.push(record);
    }
    records
}

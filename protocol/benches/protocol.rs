//! Figures for the README: sign, verify, seal, open, encode, decode per second for a typical
//! `Signal` record, and the simulator's sync throughput with no faults.
//!
//! `cargo bench -p tradecast-protocol --bench protocol` (a `harness = false` binary: it prints a
//! table; compare only runs on the same machine).

use std::hint::black_box;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rust_decimal::Decimal;
use tradecast_protocol::seal::{self, StreamKey};
use tradecast_protocol::sim::{self, SimOptions};
use tradecast_protocol::{
    Body, ChainHash, EntryKind, HeaderFields, Identity, IndicatorValue, Record, Side, Signal,
    SignalId, StreamId, Timeframe,
};

/// Runs `f` repeatedly for about `budget` and returns operations per second and µs per op.
fn measure(budget: Duration, mut f: impl FnMut()) -> (f64, f64) {
    for _ in 0..10 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..32 {
            f();
        }
        n += 32;
    }
    let secs = start.elapsed().as_secs_f64();
    (n as f64 / secs, secs * 1e6 / n as f64)
}

fn main() {
    let mut rng = StdRng::seed_from_u64(1);
    let identity = Identity::generate(&mut rng);
    let signal = Signal {
        id: SignalId([7; 16]),
        provider: identity.device_id(),
        strategy_id: "fib-rsi".into(),
        strategy_version: 3,
        symbol: "EURUSD".into(),
        timeframe: Timeframe::H1,
        side: Side::Buy,
        entry_kind: EntryKind::Limit,
        entry: Decimal::new(108_250, 5),
        stop: Decimal::new(108_010, 5),
        tp1: Decimal::new(108_610, 5),
        tp2: Some(Decimal::new(108_970, 5)),
        bar_time_ms: 1_764_000_000_000,
        expires_at_ms: 1_764_003_600_000,
        leg: 1,
        indicators: vec![
            IndicatorValue { name: "rsi".into(), value: Decimal::new(2743, 2) },
            IndicatorValue { name: "fib_618".into(), value: Decimal::new(108_243, 5) },
        ],
        rr: Decimal::new(15, 1),
    };
    let body = Body::Signal(signal);
    let fields = HeaderFields {
        stream: StreamId::SIGNALS,
        seq: 42,
        prev_hash: ChainHash::of(b"prev"),
        created_at_ms: 1_764_000_000_123,
    };
    let record = Record::sign(&identity, fields, &body);
    let bytes = record.encode();
    let key = identity.identity_key();
    let stream_key = StreamKey::derive(&identity, &identity.device_id(), StreamId::PRIVATE);
    let plain = body.encode();
    let sealed =
        seal::seal(&stream_key, &identity.device_id(), StreamId::PRIVATE, 42, &plain, &mut rng);
    let budget = Duration::from_millis(700);

    println!("typical Signal record: {} bytes encoded, body {} bytes", bytes.len(), plain.len());
    println!("{:<34} {:>14} {:>12}", "operation", "ops/s", "µs/op");
    let row = |name: &str, (ops, us): (f64, f64)| {
        println!("{name:<34} {ops:>14.0} {us:>12.2}");
    };
    row(
        "sign (Record::sign)",
        measure(budget, || {
            black_box(Record::sign(&identity, fields, black_box(&body)));
        }),
    );
    row(
        "verify (Record::verify)",
        measure(budget, || {
            black_box(record.verify(black_box(&key))).unwrap();
        }),
    );
    row(
        "seal (XChaCha20-Poly1305)",
        measure(budget, || {
            black_box(seal::seal(
                &stream_key,
                &identity.device_id(),
                StreamId::PRIVATE,
                42,
                black_box(&plain),
                &mut rng,
            ));
        }),
    );
    row(
        "open",
        measure(budget, || {
            black_box(seal::open(
                &stream_key,
                &identity.device_id(),
                StreamId::PRIVATE,
                42,
                black_box(&sealed),
            ))
            .unwrap();
        }),
    );
    row(
        "sign + seal (Record::sign_sealed)",
        measure(budget, || {
            black_box(Record::sign_sealed(
                &identity,
                fields,
                black_box(&body),
                &stream_key,
                &mut rng,
            ));
        }),
    );
    row(
        "encode (Record::encode)",
        measure(budget, || {
            black_box(black_box(&record).encode());
        }),
    );
    row(
        "decode (Record::decode)",
        measure(budget, || {
            black_box(Record::decode(black_box(&bytes))).unwrap();
        }),
    );
    row(
        "decode + verify + body",
        measure(budget, || {
            let r = Record::decode(black_box(&bytes)).unwrap();
            r.verify(&key).unwrap();
            black_box(r.body().unwrap());
        }),
    );

    // The simulator with no faults: a node appends 150 records (100 signals, 50 sealed), the hub
    // feeds 100; every frame is encoded, checked and decoded, every record verified.
    let per_run = 250.0;
    let start = Instant::now();
    let first = sim::run(SimOptions { calm: true, ..SimOptions::for_seed(1) }).unwrap();
    let cold = start.elapsed().as_secs_f64();
    assert_eq!(first.records_committed + first.feed_committed, 250);
    let runs = 200;
    let start = Instant::now();
    for seed in 0..runs {
        let report =
            sim::run(SimOptions { calm: true, ..SimOptions::for_seed(seed % 2 + 1) }).unwrap();
        black_box(report);
    }
    let warm = start.elapsed().as_secs_f64();
    println!(
        "{:<34} {:>14.0} records/s (cold: every record signed and verified for real)",
        "sim sync, no faults, cold",
        per_run / cold
    );
    println!(
        "{:<34} {:>14.0} records/s (warm: session, codec and hashing; signatures memoized)",
        "sim sync, no faults, warm",
        per_run * runs as f64 / warm
    );
    let start = Instant::now();
    let seeds = 2000u64;
    for seed in 0..seeds {
        sim::run(SimOptions::for_seed(seed)).unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{:<34} {:>14.0} seeds/s (faults on, one thread)",
        "sim seeds 0..2000",
        seeds as f64 / secs
    );
}

//! The `tradecast-verify` binary on an export file: exit 0 and the figures side by side for an
//! honest export, 1 naming the difference for a changed figure or a dropped record, 2 for a
//! usage error.

use rust_decimal::Decimal;
use tradecast_protocol::track::{
    EXPORT_FORMAT, ExportedChain, ExportedRecord, TrackExport, figures, outcomes,
};
use tradecast_protocol::{
    Body, ChainHash, Close, EntryKind, HeaderFields, Identity, Receipt, Record, Side, Signal,
    SignalId, StreamId, Timeframe,
};

const T0: i64 = 1_767_225_600_000;

fn chain(who: &Identity) -> Vec<Record> {
    let d = |s: &str| s.parse::<Decimal>().unwrap();
    let mut out: Vec<Record> = Vec::new();
    let mut push = |body: Body, at: i64| {
        let prev = out.last().map_or(ChainHash::GENESIS, Record::header_hash);
        let fields = HeaderFields {
            stream: StreamId::SIGNALS,
            seq: out.len() as u64 + 1,
            prev_hash: prev,
            created_at_ms: at,
        };
        out.push(Record::sign(who, fields, &body));
    };
    for (i, price) in ["1.1100", "1.0950"].iter().enumerate() {
        let at = T0 + i as i64 * 86_400_000;
        let id = SignalId([i as u8 + 1; 16]);
        push(
            Body::Signal(Signal {
                id,
                provider: who.device_id(),
                strategy_id: "fib-rsi".into(),
                strategy_version: 1,
                symbol: "EURUSD".into(),
                timeframe: Timeframe::H1,
                side: Side::Buy,
                entry_kind: EntryKind::Market,
                entry: d("1.1000"),
                stop: d("1.0950"),
                tp1: d("1.1100"),
                tp2: None,
                bar_time_ms: at - 1,
                expires_at_ms: at + 1,
                leg: 1,
                indicators: vec![],
                rr: d("2"),
            }),
            at,
        );
        let close = Close {
            signal_id: id,
            fraction: Decimal::ONE,
            price: Some(d(price)),
            reason: "t".into(),
            at_ms: at + 1000,
        };
        push(Body::Close(close), at + 1000);
    }
    out
}

fn export() -> TrackExport {
    let who = Identity::from_secret_bytes(&[21; 32], &[22; 32]);
    let hub = Identity::from_secret_bytes(&[23; 32], &[24; 32]);
    let records = chain(&who);
    TrackExport {
        format: EXPORT_FORMAT.into(),
        provider: "p".into(),
        hub_key: hub.identity_key(),
        generated_at_ms: T0 + 10 * 86_400_000,
        delay_ms: 3_600_000,
        cutoff_ms: T0 + 10 * 86_400_000 - 3_600_000,
        chains: vec![ExportedChain {
            author_key: who.identity_key(),
            records: records
                .iter()
                .map(|r| ExportedRecord {
                    record: data_encoding::BASE64.encode(&r.encode()),
                    receipt: Receipt::sign(&hub, r, r.header().created_at_ms + 1),
                })
                .collect(),
            gap_at_seq: None,
        }],
        figures: figures(outcomes([records.as_slice()])).unwrap(),
        published: vec![],
        money: vec![],
        trust: None,
    }
}

fn run(export: Option<&TrackExport>, extra: &[&str]) -> (i32, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tradecast-verify"));
    let path = std::env::temp_dir().join(format!(
        "tradecast-verify-{}-{}.json",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    ));
    if let Some(e) = export {
        std::fs::write(&path, serde_json::to_vec(e).unwrap()).unwrap();
        cmd.arg(&path);
    }
    let out = cmd.args(extra).output().unwrap();
    let _ = std::fs::remove_file(&path);
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn tradecast_verify_passes_an_honest_export_and_names_a_difference() {
    let honest = export();
    let (code, out) = run(Some(&honest), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("4 records: every signature"), "{out}");
    // +2 R and -1 R: one win in two, printed for the export and for the records.
    assert!(
        out.lines().any(|l| l.starts_with("win rate") && l.matches("0.5").count() == 2),
        "{out}"
    );
    assert!(out.contains("OK: 2 trades"), "{out}");
    let key = hex::encode(honest.hub_key.to_bytes());
    assert_eq!(run(Some(&honest), &["--hub-key", &key]).0, 0);
    let other = hex::encode(honest.chains[0].author_key.to_bytes());
    let (code, out) = run(Some(&honest), &["--hub-key", &other]);
    assert_eq!((code, out.contains("FAILED: the export's hub key")), (1, true), "{out}");

    let mut changed = honest.clone();
    changed.figures.total_r = "3".parse().unwrap();
    let (code, out) = run(Some(&changed), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("<- differs"), "{out}");
    assert!(
        out.contains("FAILED: figures.total_r: the export says 3, the records give 1"),
        "{out}"
    );

    let mut dropped = honest;
    dropped.chains[0].records.remove(1);
    let (code, out) = run(Some(&dropped), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("expected seq 2, got 3"), "{out}");

    assert_eq!(run(None, &[]).0, 2, "no file: usage");
    assert_eq!(run(None, &["/nonexistent/track.json"]).0, 2);
}

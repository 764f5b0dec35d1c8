//! Property tests: codec round trips and exact lengths, no panic on any bytes, chain
//! verification refuses every mutation of a valid chain.

use proptest::prelude::*;
use rust_decimal::Decimal;
use tradecast_protocol::{
    Body, ChainHash, EntryKind, HeaderFields, IndicatorValue, Record, Side, Signal, SignalId,
    StreamId, Timeframe, verify_chain,
};

use crate::support::{chain, identity};

fn decimal() -> impl Strategy<Value = Decimal> {
    (any::<i64>(), 0u32..=28).prop_map(|(mantissa, scale)| Decimal::new(mantissa, scale))
}

fn signal() -> impl Strategy<Value = Signal> {
    (
        any::<[u8; 16]>(),
        "[A-Za-z0-9._-]{0,24}",
        any::<u32>(),
        "[A-Z]{3,12}",
        prop::sample::select(vec![Timeframe::M1, Timeframe::H1, Timeframe::D1, Timeframe::MN1]),
        prop::sample::select(vec![Side::Buy, Side::Sell]),
        prop::sample::select(vec![EntryKind::Market, EntryKind::Limit, EntryKind::Stop]),
        (decimal(), decimal(), decimal(), prop::option::of(decimal())),
        (any::<i64>(), any::<i64>(), any::<u8>()),
        prop::collection::vec(("[a-z_0-9]{1,12}", decimal()), 0..6),
        decimal(),
    )
        .prop_map(
            |(
                id,
                strategy_id,
                version,
                symbol,
                timeframe,
                side,
                entry_kind,
                prices,
                times,
                ind,
                rr,
            )| {
                Signal {
                    id: SignalId(id),
                    provider: identity(1).device_id(),
                    strategy_id,
                    strategy_version: version,
                    symbol,
                    timeframe,
                    side,
                    entry_kind,
                    entry: prices.0,
                    stop: prices.1,
                    tp1: prices.2,
                    tp2: prices.3,
                    bar_time_ms: times.0,
                    expires_at_ms: times.1,
                    leg: times.2,
                    indicators: ind
                        .into_iter()
                        .map(|(name, value)| IndicatorValue { name, value })
                        .collect(),
                    rr,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn signal_records_round_trip_with_exact_length(
        signal in signal(),
        seq in 1u64..,
        created_at_ms in any::<i64>(),
        prev in any::<[u8; 32]>(),
        stream in any::<u32>(),
    ) {
        let author = identity(1);
        let body = Body::Signal(signal.clone());
        let record = Record::sign(
            &author,
            HeaderFields { stream: StreamId(stream), seq, prev_hash: ChainHash(prev), created_at_ms },
            &body,
        );
        let bytes = record.encode();
        prop_assert_eq!(bytes.len(), record.encoded_len());
        let decoded = Record::decode(&bytes).unwrap();
        prop_assert!(decoded.verify(&author.identity_key()).is_ok());
        prop_assert_eq!(decoded.body().unwrap(), body);
        // JSON too, as the HTTP APIs carry it.
        let json = serde_json::to_string(&signal).unwrap();
        prop_assert_eq!(serde_json::from_str::<Signal>(&json).unwrap(), signal);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Record::decode(&bytes);
        for kind in tradecast_protocol::Kind::ALL {
            let _ = Body::decode(kind, &bytes);
        }
        let _ = tradecast_protocol::Header::decode(&bytes);
    }

    #[test]
    fn mutated_records_never_panic_and_never_verify(
        seed in 0u8..=255,
        edits in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let author = identity(2);
        let record = &chain(&author, 1)[0];
        let _ = seed;
        let mut bytes = record.encode();
        for (at, xor) in edits {
            let i = at.index(bytes.len());
            bytes[i] ^= xor;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        if let Ok(decoded) = Record::decode(&bytes) {
            prop_assert!(decoded.verify(&author.identity_key()).is_err());
        }
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn chain_verification_refuses_any_drop_swap_or_duplicate(
        len in 2usize..8,
        op in 0u8..3,
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
    ) {
        let author = identity(3);
        let key = author.identity_key();
        let mut records = chain(&author, len);
        prop_assert!(verify_chain(&records, &key, StreamId::SIGNALS).is_ok());
        let i = a.index(len);
        match op {
            0 => {
                // Dropping the last one leaves a valid shorter chain: drop any other.
                let i = i.min(len - 2);
                records.remove(i);
            }
            1 => {
                let j = b.index(len);
                if i == j {
                    records.swap(0, len - 1);
                } else {
                    records.swap(i, j);
                }
            }
            _ => {
                let copy = records[i].clone();
                records.insert(i, copy);
            }
        }
        prop_assert!(verify_chain(&records, &key, StreamId::SIGNALS).is_err());
    }
}

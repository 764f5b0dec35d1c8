//! Records: sign, verify, encode, decode, every typed error, receipts, every body kind.

use tradecast_protocol::record::{MAX_BODY_LEN, MAX_HEADER_LEN, RECORD_DOMAIN, VERSION};
use tradecast_protocol::{
    Approval, Body, ChainHash, Close, Command, DecidedBy, Decision, DecodeError, DeviceKeys,
    EquityPoint, Execution, HeaderFields, Heartbeat, Kind, Modify, Position, PositionSnapshot,
    Receipt, Record, Side, SignalId, StreamId, TradeClosed, VerifyError,
};

use crate::support::{chain, dec, identity, signal};

fn fields(seq: u64) -> HeaderFields {
    HeaderFields {
        stream: StreamId::SIGNALS,
        seq,
        prev_hash: ChainHash::GENESIS,
        created_at_ms: 1_764_000_000_123,
    }
}

#[test]
fn a_signed_record_verifies_and_round_trips() {
    let author = identity(1);
    let body = Body::Signal(signal(&author, 1));
    let record = Record::sign(&author, fields(1), &body);
    record.verify(&author.identity_key()).unwrap();
    let bytes = record.encode();
    assert_eq!(bytes.len(), record.encoded_len());
    assert_eq!(bytes[0], VERSION);
    assert_eq!(bytes[1], Kind::Signal as u8);
    let decoded = Record::decode(&bytes).unwrap();
    assert_eq!(decoded, record);
    decoded.verify(&author.identity_key()).unwrap();
    assert_eq!(decoded.body().unwrap(), body);
    assert_eq!(decoded.header_hash(), ChainHash::of(record.header_bytes()));
    assert_eq!(decoded.header().body_hash, ChainHash::of(record.body_bytes()));
    let mut signed = RECORD_DOMAIN.to_vec();
    signed.extend_from_slice(record.header_bytes());
    assert_eq!(record.signed_bytes(), signed);
}

#[test]
fn another_key_or_a_forged_author_does_not_verify() {
    let author = identity(1);
    let other = identity(2);
    let record = Record::sign(&author, fields(1), &Body::Signal(signal(&author, 1)));
    assert!(matches!(
        record.verify(&other.identity_key()),
        Err(VerifyError::AuthorMismatch { .. })
    ));
}

/// Every single-byte change of an encoded record is refused: by decode, or by verify.
#[test]
fn every_flipped_bit_is_caught() {
    let author = identity(3);
    let record = Record::sign(&author, fields(4), &Body::Signal(signal(&author, 2)));
    let bytes = record.encode();
    for i in 0..bytes.len() {
        // Low, middle and high bit of every byte (all 8 bits cost minutes of debug-build
        // verification without finding more).
        for bit in [0, 3, 7] {
            let mut tampered = bytes.clone();
            tampered[i] ^= 1 << bit;
            match Record::decode(&tampered) {
                Err(_) => {}
                Ok(decoded) => assert!(
                    decoded.verify(&author.identity_key()).is_err(),
                    "byte {i} bit {bit} accepted"
                ),
            }
        }
    }
}

#[test]
fn every_truncation_is_a_typed_error() {
    let author = identity(4);
    let bytes = Record::sign(&author, fields(1), &Body::Signal(signal(&author, 3))).encode();
    for len in 0..bytes.len() {
        let err = Record::decode(&bytes[..len]).unwrap_err();
        assert!(
            matches!(err, DecodeError::Truncated | DecodeError::Oversized { .. }),
            "len {len}: {err:?}"
        );
    }
}

#[test]
fn decode_errors_are_typed() {
    let author = identity(5);
    let record = Record::sign(&author, fields(1), &Body::Signal(signal(&author, 4)));
    let bytes = record.encode();
    let check = |bytes: &[u8], expect: DecodeError| {
        assert_eq!(Record::decode(bytes).unwrap_err(), expect);
    };
    let with = |i: usize, b: u8| {
        let mut v = bytes.clone();
        v[i] = b;
        v
    };
    check(&with(0, 3), DecodeError::UnknownVersion(3));
    check(&with(0, 0), DecodeError::UnknownVersion(0));
    // A version-2 header behind a version-1 frame byte.
    check(&with(0, 1), DecodeError::FrameMismatch);
    check(&with(1, 0), DecodeError::UnknownKind(0));
    check(&with(1, 99), DecodeError::UnknownKind(99));
    check(&with(1, Kind::Modify as u8), DecodeError::FrameMismatch);
    check(&[], DecodeError::Truncated);
    let mut trailing = bytes.clone();
    trailing.push(0);
    check(&trailing, DecodeError::TrailingBytes(1));
    // A header length beyond the bound is refused before reading it.
    check(
        &[VERSION, 1, 0xff, 0x01],
        DecodeError::Oversized { what: "header", len: 255, max: MAX_HEADER_LEN },
    );
    // A huge body length is refused before allocating.
    let mut huge = bytes[..2 + 1 + record.header_bytes().len() + 64].to_vec();
    huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    check(
        &huge,
        DecodeError::Oversized { what: "body", len: u32::MAX as usize, max: MAX_BODY_LEN },
    );
    // Overlong varint for the header length.
    let mut overlong = vec![bytes[0], bytes[1], 0x80 | bytes[2], 0x00];
    overlong.extend_from_slice(&bytes[3..]);
    check(&overlong, DecodeError::NonCanonical);
    // A body byte changed: the header's body_hash no longer matches.
    let last = bytes.len() - 1;
    check(&with(last, bytes[last] ^ 1), DecodeError::BodyHashMismatch);
    // A signature byte changed: decodes, but does not verify.
    let sig_at = 2 + 1 + record.header_bytes().len();
    let forged = Record::decode(&with(sig_at, bytes[sig_at] ^ 1)).unwrap();
    assert_eq!(forged.verify(&author.identity_key()), Err(VerifyError::BadSignature));
}

#[test]
fn body_decode_refuses_trailing_and_truncated_bytes() {
    let author = identity(6);
    let body = Body::Signal(signal(&author, 5)).encode();
    let mut trailing = body.clone();
    trailing.push(0);
    assert_eq!(Body::decode(Kind::Signal, &trailing), Err(DecodeError::TrailingBytes(1)));
    assert_eq!(Body::decode(Kind::Signal, &body[..body.len() - 1]), Err(DecodeError::Truncated));
    assert!(Body::decode(Kind::Signal, &vec![0; MAX_BODY_LEN + 1]).is_err());
}

pub fn every_body(author: &tradecast_protocol::Identity) -> Vec<Body> {
    let device = author.device_id();
    let sid = SignalId([9; 16]);
    let modify = Modify {
        signal_id: sid,
        stop: Some(dec("1.0805")),
        tp1: None,
        tp2: None,
        reason: "trail".into(),
        at_ms: 1,
    };
    let close = Close {
        signal_id: sid,
        fraction: dec("0.5"),
        price: Some(dec("1.0850")),
        reason: "tp1".into(),
        at_ms: 2,
    };
    let hub = identity(99);
    let first = Record::sign(author, fields(1), &Body::Signal(signal(author, 1)));
    vec![
        Body::Signal(signal(author, 1)),
        Body::Modify(modify.clone()),
        Body::Close(close.clone()),
        Body::Approval(Approval {
            signal_id: sid,
            device,
            decision: Decision::Approved,
            decided_by: DecidedBy::Trader("user-17".into()),
            consent_version: 2,
            reason: String::new(),
            decided_at_ms: 3,
            lots: None,
        }),
        Body::Execution(Execution {
            order_id: 42,
            signal_id: sid,
            device,
            retcode: 10009,
            ticket: Some(123456),
            fill_price: Some(dec("1.08251")),
            volume: dec("0.10"),
            at_ms: 4,
        }),
        Body::PositionSnapshot(PositionSnapshot {
            device,
            at_ms: 5,
            balance: dec("10000.00"),
            equity: dec("10012.50"),
            margin: dec("108.25"),
            positions: vec![Position {
                ticket: 123456,
                signal_id: Some(sid),
                symbol: "EURUSD".into(),
                side: Side::Buy,
                volume: dec("0.10"),
                open_price: dec("1.08251"),
                stop: Some(dec("1.0801")),
                tp: None,
                profit: dec("12.50"),
                opened_at_ms: 4,
            }],
        }),
        Body::TradeClosed(TradeClosed {
            signal_id: Some(sid),
            device,
            ticket: 123456,
            symbol: "EURUSD".into(),
            side: Side::Sell,
            volume: dec("0.10"),
            open_price: dec("1.08251"),
            close_price: dec("1.08610"),
            opened_at_ms: 4,
            closed_at_ms: 6,
            profit: dec("-35.90"),
            commission: dec("-0.70"),
            swap: dec("0"),
        }),
        Body::EquityPoint(EquityPoint {
            device,
            at_ms: 7,
            balance: dec("10000"),
            equity: dec("9990.1"),
        }),
        Body::Heartbeat(Heartbeat {
            device,
            at_ms: 8,
            ea_connected: true,
            terminal_time_ms: Some(9),
        }),
        Body::DeviceKeys(DeviceKeys {
            identity: author.identity_key(),
            sealing: author.sealing_public_key(),
            label: "office".into(),
            at_ms: 10,
            account_fingerprint: None,
        }),
        Body::Receipt(Receipt::sign(&hub, &first, 11)),
        Body::Command(Command::CloseAll {
            symbol: Some("XAUUSD".into()),
            reason: "panic button".into(),
            at_ms: 12,
        }),
        Body::Command(Command::Modify(modify)),
        Body::Command(Command::Close(close)),
        // Record version 2.
        Body::ApprovalRequest(tradecast_protocol::ApprovalRequest {
            request_id: tradecast_protocol::RequestId([4; 16]),
            signal_id: sid,
            device,
            decision: tradecast_protocol::RemoteDecision::Rejected,
            lots: None,
            expires_at_ms: 13,
            channel: tradecast_protocol::Channel::Telegram,
            telegram_user_id: Some(-5),
            requested_at_ms: 12,
        }),
        Body::RequestAnswer(tradecast_protocol::RequestAnswer {
            request_id: tradecast_protocol::RequestId([4; 16]),
            signal_id: sid,
            device,
            outcome: tradecast_protocol::AnswerOutcome::Refused(
                tradecast_protocol::RefusalReason::MarketClosed,
            ),
            at_ms: 14,
        }),
        Body::Pending(tradecast_protocol::Pending {
            signal_id: sid,
            device,
            expires_at_ms: 20,
            min_lots: dec("0.01"),
            max_lots: dec("1.5"),
            risk_preview: None,
            blocking: vec!["daily_loss".into()],
            at_ms: 15,
        }),
        Body::FeatureGrant(tradecast_protocol::FeatureGrant {
            grant_id: tradecast_protocol::GrantId([5; 16]),
            device,
            plan_id: "free".into(),
            features: vec![tradecast_protocol::Feature::Signals],
            valid_from_ms: 0,
            valid_until_ms: None,
            issued_at_ms: 16,
        }),
        Body::BalanceOperation(tradecast_protocol::BalanceOperation {
            device,
            deal: 7,
            kind: tradecast_protocol::BalanceKind::Withdrawal,
            amount: dec("-250.00"),
            currency: "EUR".into(),
            at_ms: 17,
            comment: "payout".into(),
        }),
        Body::Summary(tradecast_protocol::Summary {
            device,
            day: "2025-11-24".into(),
            at_ms: 18,
            balance: dec("9750.00"),
            equity: dec("9801.10"),
            open_positions: 2,
            floating_pnl: dec("51.10"),
            day_pnl: dec("-12.40"),
            currency: None,
        }),
    ]
}

#[test]
fn every_body_kind_round_trips_through_a_record() {
    let author = identity(7);
    let bodies = every_body(&author);
    let mut kinds: Vec<Kind> = bodies.iter().map(Body::kind).collect();
    kinds.dedup();
    assert_eq!(kinds, Kind::ALL.to_vec(), "every kind is exercised");
    for (i, body) in bodies.into_iter().enumerate() {
        let record = Record::sign(&author, fields(i as u64 + 1), &body);
        let decoded = Record::decode(&record.encode()).unwrap();
        decoded.verify(&author.identity_key()).unwrap();
        assert_eq!(decoded.body().unwrap(), body, "{:?}", body.kind());
    }
}

#[test]
fn receipts_verify_under_their_own_domain_only() {
    let hub = identity(10);
    let author = identity(11);
    let records = chain(&author, 2);
    let receipt = Receipt::sign(&hub, &records[0], 1_764_000_000_999);
    receipt.verify(&hub.identity_key()).unwrap();
    assert!(receipt.covers(&records[0]));
    assert!(!receipt.covers(&records[1]));
    assert!(matches!(
        receipt.verify(&author.identity_key()),
        Err(VerifyError::AuthorMismatch { .. })
    ));
    let mut backdated = receipt;
    backdated.fields.received_at_ms -= 1;
    assert_eq!(backdated.verify(&hub.identity_key()), Err(VerifyError::BadSignature));
    // A receipt signature is not a record signature of the same bytes.
    assert!(!hub.identity_key().verify(
        tradecast_protocol::record::RECORD_DOMAIN,
        &receipt.fields.encode(),
        &receipt.signature
    ));
}

#[test]
fn a_sealed_body_is_not_readable_as_public() {
    let author = identity(12);
    let key =
        tradecast_protocol::StreamKey::derive(&author, &author.device_id(), StreamId::PRIVATE);
    let mut rng = crate::support::rng(1);
    let body = Body::EquityPoint(EquityPoint {
        device: author.device_id(),
        at_ms: 1,
        balance: dec("1"),
        equity: dec("2"),
    });
    let record = Record::sign_sealed(&author, fields(1), &body, &key, &mut rng);
    assert!(record.header().sealed);
    assert_eq!(record.body(), Err(DecodeError::Sealed));
    assert_eq!(record.open(&key).unwrap(), body);
}

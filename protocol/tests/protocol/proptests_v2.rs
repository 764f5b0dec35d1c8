//! Property tests of the record kinds of version 2 and the changed ones: every value round
//! trips through a signed record (postcard, exact length, verified) and through JSON; a
//! version-1 `Approval`/`DeviceKeys` written by the old layout reads back as today's type.

use proptest::prelude::*;
use rust_decimal::Decimal;
use tradecast_protocol::{
    AccountFingerprint, AnswerOutcome, Approval, ApprovalRequest, BalanceKind, BalanceOperation,
    Body, ChainHash, Channel, DecidedBy, Decision, DeviceKeys, Feature, FeatureGrant, GrantId,
    HeaderFields, Pending, Record, RefusalReason, RemoteDecision, RequestAnswer, RequestId,
    RiskPreview, SignalId, StreamId, Summary,
};

use crate::support::identity;

fn decimal() -> impl Strategy<Value = Decimal> {
    (any::<i64>(), 0u32..=28).prop_map(|(mantissa, scale)| Decimal::new(mantissa, scale))
}

fn device() -> impl Strategy<Value = tradecast_protocol::DeviceId> {
    any::<[u8; 20]>().prop_map(tradecast_protocol::DeviceId)
}

fn approval_request() -> impl Strategy<Value = ApprovalRequest> {
    (
        (any::<[u8; 16]>(), any::<[u8; 16]>(), device()),
        prop::sample::select(RemoteDecision::ALL.to_vec()),
        prop::option::of(decimal()),
        (any::<i64>(), any::<i64>()),
        prop::sample::select(Channel::ALL.to_vec()),
        prop::option::of(any::<i64>()),
    )
        .prop_map(|(ids, decision, lots, times, channel, tg)| ApprovalRequest {
            request_id: RequestId(ids.0),
            signal_id: SignalId(ids.1),
            device: ids.2,
            decision,
            lots,
            expires_at_ms: times.0,
            channel,
            telegram_user_id: tg,
            requested_at_ms: times.1,
        })
}

fn outcome() -> impl Strategy<Value = AnswerOutcome> {
    prop_oneof![
        Just(AnswerOutcome::Applied),
        prop::sample::select(RefusalReason::ALL.to_vec()).prop_map(AnswerOutcome::Refused),
    ]
}

fn request_answer() -> impl Strategy<Value = RequestAnswer> {
    (any::<[u8; 16]>(), any::<[u8; 16]>(), device(), outcome(), any::<i64>()).prop_map(
        |(r, s, device, outcome, at_ms)| RequestAnswer {
            request_id: RequestId(r),
            signal_id: SignalId(s),
            device,
            outcome,
            at_ms,
        },
    )
}

fn pending() -> impl Strategy<Value = Pending> {
    (
        (any::<[u8; 16]>(), device(), any::<i64>(), any::<i64>()),
        (decimal(), decimal()),
        prop::option::of((decimal(), decimal(), decimal(), "[A-Z]{3}")),
        prop::collection::vec("[a-z_]{1,16}", 0..4),
    )
        .prop_map(|(head, range, preview, blocking)| Pending {
            signal_id: SignalId(head.0),
            device: head.1,
            expires_at_ms: head.2,
            min_lots: range.0,
            max_lots: range.1,
            risk_preview: preview.map(|(lots, risk_money, risk_percent, currency)| RiskPreview {
                lots,
                risk_money,
                risk_percent,
                currency,
            }),
            blocking,
            at_ms: head.3,
        })
}

fn feature_grant() -> impl Strategy<Value = FeatureGrant> {
    (
        any::<[u8; 16]>(),
        device(),
        "[a-z0-9-]{0,20}",
        prop::collection::vec(prop::sample::select(Feature::ALL.to_vec()), 0..6),
        (any::<i64>(), prop::option::of(any::<i64>()), any::<i64>()),
    )
        .prop_map(|(id, device, plan_id, features, times)| FeatureGrant {
            grant_id: GrantId(id),
            device,
            plan_id,
            features,
            valid_from_ms: times.0,
            valid_until_ms: times.1,
            issued_at_ms: times.2,
        })
}

fn balance_operation() -> impl Strategy<Value = BalanceOperation> {
    (
        device(),
        any::<u64>(),
        prop::sample::select(BalanceKind::ALL.to_vec()),
        decimal(),
        "[A-Z]{3}",
        any::<i64>(),
        ".{0,24}",
    )
        .prop_map(|(device, deal, kind, amount, currency, at_ms, comment)| BalanceOperation {
            device,
            deal,
            kind,
            amount,
            currency,
            at_ms,
            comment,
        })
}

fn summary() -> impl Strategy<Value = Summary> {
    (
        device(),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}",
        any::<i64>(),
        (decimal(), decimal(), decimal(), decimal()),
        any::<u32>(),
        prop::option::of("[A-Z]{3}"),
    )
        .prop_map(|(device, day, at_ms, money, open_positions, currency)| Summary {
            device,
            day,
            at_ms,
            balance: money.0,
            equity: money.1,
            open_positions,
            floating_pnl: money.2,
            day_pnl: money.3,
            currency,
        })
}

fn decided_by() -> impl Strategy<Value = DecidedBy> {
    prop_oneof![
        Just(DecidedBy::Policy),
        ".{0,12}".prop_map(DecidedBy::Trader),
        any::<[u8; 16]>().prop_map(|r| DecidedBy::Remote { request_id: RequestId(r) }),
    ]
}

fn approval() -> impl Strategy<Value = Approval> {
    (
        (any::<[u8; 16]>(), device()),
        prop::sample::select(vec![Decision::Approved, Decision::Rejected, Decision::Expired]),
        decided_by(),
        (any::<u32>(), ".{0,16}", any::<i64>()),
        prop::option::of(decimal()),
    )
        .prop_map(|(head, decision, decided_by, rest, lots)| Approval {
            signal_id: SignalId(head.0),
            device: head.1,
            decision,
            decided_by,
            consent_version: rest.0,
            reason: rest.1,
            decided_at_ms: rest.2,
            lots,
        })
}

fn device_keys() -> impl Strategy<Value = DeviceKeys> {
    (any::<u64>(), ".{0,16}", any::<i64>(), prop::option::of(any::<[u8; 32]>())).prop_map(
        |(seed, label, at_ms, fp)| {
            let id = identity(seed);
            DeviceKeys {
                identity: id.identity_key(),
                sealing: id.sealing_public_key(),
                label,
                at_ms,
                account_fingerprint: fp.map(AccountFingerprint),
            }
        },
    )
}

/// Signs `body` on `stream`, decodes it, checks length, signature and body; and the JSON.
fn round_trip<T>(value: &T, body: Body, stream: StreamId) -> Result<(), TestCaseError>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + core::fmt::Debug,
{
    let author = identity(9);
    let fields = HeaderFields { stream, seq: 3, prev_hash: ChainHash([4; 32]), created_at_ms: 5 };
    let record = Record::sign(&author, fields, &body);
    let bytes = record.encode();
    prop_assert_eq!(bytes.len(), record.encoded_len());
    let decoded = Record::decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(decoded.header().version, 2);
    prop_assert!(decoded.verify(&author.identity_key()).is_ok());
    prop_assert_eq!(decoded.body().map_err(|e| TestCaseError::fail(e.to_string()))?, body);
    let json = serde_json::to_string(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back: T = serde_json::from_str(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, value);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn approval_requests_round_trip(v in approval_request()) {
        round_trip(&v, Body::ApprovalRequest(v.clone()), StreamId::HUB_REQUESTS)?;
    }

    #[test]
    fn request_answers_round_trip(v in request_answer()) {
        round_trip(&v, Body::RequestAnswer(v.clone()), StreamId::SHARED)?;
    }

    #[test]
    fn pendings_round_trip(v in pending()) {
        round_trip(&v, Body::Pending(v.clone()), StreamId::SHARED)?;
    }

    #[test]
    fn feature_grants_round_trip(v in feature_grant()) {
        round_trip(&v, Body::FeatureGrant(v.clone()), StreamId::HUB_REQUESTS)?;
    }

    #[test]
    fn balance_operations_round_trip(v in balance_operation()) {
        round_trip(&v, Body::BalanceOperation(v.clone()), StreamId::PUBLISHED)?;
    }

    #[test]
    fn summaries_round_trip(v in summary()) {
        round_trip(&v, Body::Summary(v.clone()), StreamId::PUBLISHED)?;
    }

    #[test]
    fn approvals_round_trip_in_both_versions(v in approval()) {
        round_trip(&v, Body::Approval(v.clone()), StreamId::SHARED)?;
        // Version 1 carries it exactly when it has no lots and no remote decider.
        let v1_fits = v.lots.is_none() && !matches!(v.decided_by, DecidedBy::Remote { .. });
        let author = identity(9);
        let fields = HeaderFields { stream: StreamId::SHARED, seq: 1, prev_hash: ChainHash::GENESIS, created_at_ms: 0 };
        match Record::sign_versioned(&author, 1, fields, &Body::Approval(v.clone())) {
            Ok(record) => {
                prop_assert!(v1_fits);
                let decoded = Record::decode(&record.encode()).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(decoded.header().version, 1);
                prop_assert!(decoded.verify(&author.identity_key()).is_ok());
                prop_assert_eq!(decoded.body().map_err(|e| TestCaseError::fail(e.to_string()))?, Body::Approval(v));
            }
            Err(_) => prop_assert!(!v1_fits),
        }
    }

    #[test]
    fn device_keys_round_trip_in_both_versions(v in device_keys()) {
        round_trip(&v, Body::DeviceKeys(v.clone()), StreamId::DEVICE)?;
        let author = identity(9);
        let fields = HeaderFields { stream: StreamId::DEVICE, seq: 1, prev_hash: ChainHash::GENESIS, created_at_ms: 0 };
        match Record::sign_versioned(&author, 1, fields, &Body::DeviceKeys(v.clone())) {
            Ok(record) => {
                prop_assert!(v.account_fingerprint.is_none());
                let decoded = Record::decode(&record.encode()).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(decoded.body().map_err(|e| TestCaseError::fail(e.to_string()))?, Body::DeviceKeys(v));
            }
            Err(_) => prop_assert!(v.account_fingerprint.is_some()),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_in_any_version(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        for kind in tradecast_protocol::Kind::ALL {
            for version in 0u8..=3 {
                let _ = Body::decode_versioned(version, kind, &bytes);
            }
        }
    }
}

//! `tradecast-protocol`: the contract between every node, the hub, the EA link and any future
//! implementation.
//!
//! It is pure: no sockets, no clocks, no randomness it was not handed, no tokio, no `std::fs`.
//! Drivers in the node and the hub feed it bytes, time and random numbers; tests feed it a
//! seeded simulator.
//!
//! # The API other crates call
//!
//! - Identities ([`identity`]): [`Identity::generate(&mut rng)`](Identity::generate),
//!   [`Identity::from_secret_bytes`], `identity.device_id()`, `identity.identity_key()`,
//!   `identity.sealing_public_key()`; [`DeviceId`] (20 bytes of SHA-256 of the Ed25519 key) with
//!   its checksummed text form ([`DeviceId::to_text`], [`DeviceId::parse`]); [`IdentityKey`]
//!   (public Ed25519, [`IdentityKey::from_bytes`]).
//! - Domain types ([`domain`]): [`Signal`], [`Modify`], [`Close`], [`Approval`], [`Execution`],
//!   [`PositionSnapshot`], [`TradeClosed`], [`EquityPoint`], [`Heartbeat`], [`DeviceKeys`],
//!   [`Command`] (`CloseAll`, `Modify`, `Close`); since record version 2 [`ApprovalRequest`],
//!   [`RequestAnswer`], [`Pending`], [`FeatureGrant`] (hub requests and the node's answers),
//!   [`BalanceOperation`], [`Summary`] (published history) and [`account_fingerprint`]; all
//!   serde (JSON: snake_case, decimal strings, unix ms) and postcard.
//! - Hub requests ([`hub_request`]): [`verify_hub_request(&record, &hub_key, me, now_ms)`](verify_hub_request)
//!   checks a hub-signed `ApprovalRequest` / `FeatureGrant` for one device.
//! - Records ([`record`]):
//!   [`Record::sign(&identity, HeaderFields { stream, seq, prev_hash, created_at_ms }, &Body::Signal(signal))`](Record::sign),
//!   [`Record::sign_sealed`] for private streams (with a [`StreamKey`] and an RNG),
//!   `record.verify(&author_key) -> Result<(), VerifyError>`, `record.encode() -> Vec<u8>`,
//!   [`Record::decode(&bytes)`](Record::decode) `-> Result<Record, DecodeError>`,
//!   `record.header_hash()`, `record.body()` / `record.open(&stream_key)`.
//! - Chains ([`chain`]): [`ChainTip::genesis`], `tip.extend(&record, &key)`, [`verify_chain`].
//!   The chain hash is **BLAKE3** ([`ChainHash`]).
//! - Receipts ([`receipt`]): [`Receipt::sign(&hub_identity, &record, received_at_ms)`](Receipt::sign),
//!   `receipt.verify(&hub_key)`, signed under `tradecast/receipt/v1`.
//! - Sealing ([`seal`]): [`StreamKey::derive(&identity, &author, stream)`](StreamKey::derive),
//!   XChaCha20-Poly1305 with AAD = encoded (author, stream, seq).
//!
//! - The sync session ([`session`]), sans-IO: [`session::NodeSession`] (outbox → hub, feed ←
//!   hub) and [`session::HubSession`] take events (`handle(now_ms, event)`) and hand out actions
//!   (`poll_action()`): bytes to send, a timer, records to commit, tips to adopt, alarms,
//!   quarantine, close. [`session::Backoff`] spaces reconnects with jitter from a handed RNG.
//! - The simulator ([`sim`]): `sim::run(SimOptions::for_seed(n))` checks the properties of
//!   protocol.md for one seed; the `tradecast-syncsim` binary runs ranges (`--seeds A..B`).
//! - The public track record ([`track`]): [`track::outcomes`] of a provider's signals chain in
//!   R multiples, [`track::figures`] (win rate, expectancy, profit factor, drawdown, streaks, per
//!   symbol and month), the export file ([`track::TrackExport`]) and [`track::verify_export`],
//!   which the `tradecast-verify` binary and `tradecast-hub verify` run.
//! - Test vectors ([`vectors`], `tests/vectors/v1.json` and `v2.json`) and the fuzz targets' bodies
//!   ([`fuzzing`]).
//!
//! ```
//! use rand::SeedableRng;
//! use tradecast_protocol::{Body, ChainHash, ChainTip, HeaderFields, Identity, Modify, Record,
//!                          SignalId, StreamId};
//!
//! let mut rng = rand::rngs::StdRng::seed_from_u64(7); // drivers hand in the OS CSPRNG
//! let provider = Identity::generate(&mut rng);
//! let body = Body::Modify(Modify {
//!     signal_id: SignalId([1; 16]),
//!     stop: Some("1.08250".parse().unwrap()),
//!     tp1: None,
//!     tp2: None,
//!     reason: "break-even".into(),
//!     at_ms: 1_764_000_000_000,
//! });
//! let fields = HeaderFields {
//!     stream: StreamId::SIGNALS,
//!     seq: 1,
//!     prev_hash: ChainHash::GENESIS,
//!     created_at_ms: 1_764_000_000_000,
//! };
//! let bytes = Record::sign(&provider, fields, &body).encode();
//!
//! // Anyone holding the provider's key, the hub included, checks it without trusting the carrier.
//! let record = Record::decode(&bytes)?;
//! record.verify(&provider.identity_key())?;
//! let tip = ChainTip::genesis(provider.device_id(), StreamId::SIGNALS)
//!     .extend(&record, &provider.identity_key())?;
//! assert_eq!(tip.header_hash, record.header_hash());
//! assert_eq!(record.body()?, body);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Every error is a typed `thiserror` enum ([`DecodeError`], [`VerifyError`], [`ChainError`],
//! [`OpenError`], [`DeviceIdParseError`]); no input bytes make this crate panic.

pub mod bars;
pub mod chain;
pub mod device_link;
pub mod domain;
pub mod ea;
pub mod fuzzing;
pub mod hash;
pub mod hub_request;
pub mod identity;
pub mod link_auth;
pub mod receipt;
pub mod record;
pub mod seal;
pub mod session;
pub mod sim;
pub mod track;
pub mod track_money;
pub mod trade;
pub mod trust;
pub mod vectors;

pub use chain::{ChainError, ChainTip, verify_chain};
pub use domain::{
    AccountFingerprint, AnswerOutcome, Approval, ApprovalRequest, BalanceKind, BalanceOperation,
    Channel, Close, Command, DecidedBy, Decision, DeviceKeys, EntryKind, EquityPoint, Execution,
    Feature, FeatureGrant, GrantId, Heartbeat, IndicatorValue, Modify, Pending, Position,
    PositionSnapshot, RefusalReason, RemoteDecision, RequestAnswer, RequestId, RiskPreview, Side,
    Signal, SignalId, Summary, Timeframe, TradeClosed, account_fingerprint,
};
pub use hash::ChainHash;
pub use hub_request::{HubRequest, HubRequestError, verify_hub_request};
pub use identity::{
    DeviceId, DeviceIdParseError, Identity, IdentityKey, KeyError, SealingPublicKey, Signature,
};
pub use receipt::{Receipt, ReceiptFields};
pub use record::{
    Body, BodyError, DecodeError, EncodeError, Header, HeaderFields, Kind, Record, Signer,
    StreamId, VerifyError,
};
pub use seal::{OpenError, StreamKey};

//! Signal ingest (board PR-021): a provider posts its own signed `Signal` record over HTTP, the
//! request authenticated by HMAC-SHA256 with a per-provider API key (the EA link's scheme,
//! `tradecast_protocol::link_auth`). The hub never signs for a provider: it checks, in order,
//! the request's HMAC and nonce, the record (decodes, is an unsealed `Signal` on the signals
//! stream, signed by an active device of the key's provider account), the signal's schema, the
//! provider's active plan, and that it was received within `signals.max_age_ms` of its
//! `created_at_ms`; then deduplicates by signal id (same record → 200 with the stored one,
//! different → 409), stores it, queues it for every entitled device, and audits it — one
//! transaction. The answer carries the hub's signed `Receipt`.
//!
//! [`client`] builds such a request for scripts and tests.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use tradecast_protocol::link_auth::{self, AuthError, ParsedHeaders};
use tradecast_protocol::{
    Body, Close, Identity, Kind, Modify, Receipt, Record, Side, Signal, StreamId,
};

use crate::accounts::{self, Role};
use crate::audit::{self, Entry};
use crate::db::{Db, DbError, is_unique_violation};
use crate::devices;
use crate::error::ApiError;
use crate::{entitlements, plans};
use crate::{feed, relay};

/// The JSON body of `POST /api/v1/signals` (and of approvals): one encoded record.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordBody {
    /// The record's bytes (`Record::encode`), standard base64 with padding.
    pub record: String,
}

/// A stored signal as answered.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredSignal {
    /// Signal id, 32 hex digits.
    pub signal_id: String,
    /// The provider's account.
    pub provider_user_id: String,
    /// The signing device (text form).
    pub author: String,
    /// Position in the author's signals stream.
    pub seq: i64,
    /// The signal as JSON (decimal strings, unix ms).
    #[schema(value_type = Object)]
    pub signal: serde_json::Value,
    /// `created_at_ms` of the record header.
    pub created_at_ms: i64,
    /// When the hub committed it.
    pub received_at_ms: i64,
    /// The record exactly as posted (base64).
    pub record: String,
    /// The hub's signed receipt for the record.
    #[schema(value_type = Object)]
    pub receipt: serde_json::Value,
    /// Devices the signal was queued for.
    pub n_devices_queued: i64,
}

/// Outcome of an ingest.
#[derive(Debug)]
pub enum Ingested {
    /// Stored now (201).
    Created(StoredSignal),
    /// Already stored with the identical record (200).
    Duplicate(StoredSignal),
}

/// Maps an HMAC refusal to its problem.
pub fn auth_error(e: AuthError) -> ApiError {
    ApiError::LinkAuth(e)
}

/// Checks the request's HMAC and burns its nonce; returns the provider account of the key.
pub async fn authenticate(
    db: &Db,
    wrapping: &[u8; 32],
    headers: &ParsedHeaders<'_>,
    method: &str,
    path: &str,
    body: &[u8],
    now_ms: i64,
) -> Result<String, ApiError> {
    let (user_id, secret) = crate::apikeys::secret_of(db, wrapping, headers.key_id)
        .await?
        .ok_or(ApiError::LinkAuth(AuthError::UnknownKey))?;
    // The nonce table is durable and shared by every instance, so no start-time rule is needed.
    link_auth::verify_request(&secret, headers, method, path, body, now_ms, 0)
        .map_err(auth_error)?;
    // Only after the signature verified, so an unsigned request cannot burn a nonce.
    let inserted =
        sqlx::query("INSERT INTO hmac_nonces (key_id, nonce, seen_at_ms) VALUES ($1, $2, $3)")
            .bind(headers.key_id)
            .bind(headers.nonce)
            .bind(headers.timestamp_ms)
            .execute(db.pool())
            .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => return Err(ApiError::LinkAuth(AuthError::Replayed)),
        other => other.map_err(DbError::from)?,
    };
    Ok(user_id)
}

/// Forgets nonces whose timestamps are outside the freshness window (they are refused as stale
/// anyway). Returns how many were dropped.
pub async fn prune_nonces(db: &Db, now_ms: i64) -> Result<u64, DbError> {
    let horizon = now_ms - 2 * link_auth::FRESHNESS_MS;
    Ok(sqlx::query("DELETE FROM hmac_nonces WHERE seen_at_ms < $1")
        .bind(horizon)
        .execute(db.pool())
        .await?
        .rows_affected())
}

/// Decodes the base64 record of a [`RecordBody`].
pub fn decode_record(body: &RecordBody) -> Result<(Vec<u8>, Record), ApiError> {
    if body.record.len() > 4 * (tradecast_protocol::record::MAX_RECORD_LEN / 3 + 1) {
        return Err(ApiError::InvalidRecord("record too long".into()));
    }
    let bytes = data_encoding::BASE64
        .decode(body.record.as_bytes())
        .map_err(|_| ApiError::InvalidRecord("`record` is not standard base64".into()))?;
    let record = Record::decode(&bytes).map_err(|e| ApiError::InvalidRecord(e.to_string()))?;
    Ok((bytes, record))
}

fn check_signal(signal: &Signal, record: &Record) -> Result<(), ApiError> {
    let bad = |m: &str| Err(ApiError::InvalidRecord(m.to_string()));
    let header = record.header();
    if signal.provider != header.author {
        return bad("signal.provider is not the record's author");
    }
    let symbol_ok = (1..=32).contains(&signal.symbol.len())
        && signal.symbol.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-#".contains(&b));
    if !symbol_ok {
        return bad("signal.symbol must be 1-32 characters of [A-Za-z0-9._-#]");
    }
    let printable = |s: &str| !s.chars().any(char::is_control);
    if signal.strategy_id.is_empty()
        || signal.strategy_id.len() > 64
        || !printable(&signal.strategy_id)
    {
        return bad("signal.strategy_id must be 1-64 bytes of printable text");
    }
    if signal.indicators.len() > 32
        || signal
            .indicators
            .iter()
            .any(|i| i.name.is_empty() || i.name.len() > 32 || !printable(&i.name))
    {
        return bad("signal.indicators: at most 32, names 1-32 bytes of printable text");
    }
    if signal.leg == 0 {
        return bad("signal.leg starts at 1");
    }
    let z = Decimal::ZERO;
    if signal.entry <= z
        || signal.stop <= z
        || signal.tp1 <= z
        || signal.tp2.is_some_and(|t| t <= z)
    {
        return bad("signal prices must be positive");
    }
    let ordered = match signal.side {
        Side::Buy => {
            signal.stop < signal.entry
                && signal.entry < signal.tp1
                && signal.tp2.is_none_or(|t| t > signal.tp1)
        }
        Side::Sell => {
            signal.stop > signal.entry
                && signal.entry > signal.tp1
                && signal.tp2.is_none_or(|t| t < signal.tp1)
        }
    };
    if !ordered {
        return bad("signal prices out of order for its side (buy: stop < entry < tp1 < tp2)");
    }
    // Both on the market clock (system.md, Time): a replay of old data signs today's wall
    // time into the header but the market's time into the signal.
    if signal.expires_at_ms <= signal.bar_time_ms {
        return bad("signal.expires_at_ms must be after its bar_time_ms (both market time)");
    }
    if signal.rr < z {
        return bad("signal.rr must not be negative");
    }
    Ok(())
}

fn answer(
    hub: &Identity,
    record: &Record,
    bytes: &[u8],
    signal: &Signal,
    provider_user_id: &str,
    received_at_ms: i64,
    n_devices_queued: i64,
) -> StoredSignal {
    let receipt = Receipt::sign(hub, record, received_at_ms);
    StoredSignal {
        signal_id: signal.id.to_hex(),
        provider_user_id: provider_user_id.to_string(),
        author: record.header().author.to_text(),
        seq: i64::try_from(record.header().seq).unwrap_or(i64::MAX),
        signal: serde_json::to_value(signal).unwrap_or_default(),
        created_at_ms: record.header().created_at_ms,
        received_at_ms,
        record: data_encoding::BASE64.encode(bytes),
        receipt: serde_json::to_value(receipt).unwrap_or_default(),
        n_devices_queued,
    }
}

/// Everything [`ingest`] needs besides the record.
#[derive(Debug, Clone, Copy)]
pub struct IngestRules {
    /// `signals.max_age_ms`.
    pub max_age_ms: i64,
}

/// Where and when an ingest happens.
#[derive(Debug)]
pub struct Ingest<'a> {
    /// The store.
    pub db: &'a Db,
    /// The hub's identity (signs receipts).
    pub hub: &'a Identity,
    /// Limits.
    pub rules: IngestRules,
    /// Reception time, unix ms.
    pub now_ms: i64,
    /// For the audit entry.
    pub request_id: &'a str,
    /// The instance (its relay registry and cluster bus: the accepted signal is broadcast).
    pub state: &'a crate::state::AppState,
}

/// Checks, deduplicates, stores, queues and audits one signal posted by `provider_user_id`.
pub async fn ingest(
    ctx: &Ingest<'_>,
    provider_user_id: &str,
    bytes: Vec<u8>,
    record: Record,
) -> Result<Ingested, ApiError> {
    let Ingest { db, hub, rules, now_ms, request_id, .. } = *ctx;
    let header = *record.header();
    if header.kind != Kind::Signal || header.sealed || header.stream != StreamId::SIGNALS {
        return Err(ApiError::InvalidRecord(
            "expected an unsealed Signal record on the signals stream".into(),
        ));
    }
    let provider = accounts::user_by_id(db, provider_user_id)
        .await?
        .filter(|u| u.disabled_at_ms.is_none())
        .ok_or_else(|| ApiError::Forbidden("the API key's account is disabled".into()))?;
    if provider.role != Role::Provider {
        return Err(ApiError::Forbidden("only provider accounts publish signals".into()));
    }
    let (device, key) = devices::active_device(db, &header.author).await?;
    if device.user_id != provider.id {
        return Err(ApiError::DeviceRefused(
            "the record's author is not a device of this provider".into(),
        ));
    }
    record.verify(&key).map_err(|e| ApiError::InvalidRecord(e.to_string()))?;
    let Body::Signal(signal) = record.body().map_err(|e| ApiError::InvalidRecord(e.to_string()))?
    else {
        return Err(ApiError::InvalidRecord("expected a Signal body".into()));
    };
    check_signal(&signal, &record)?;
    if !plans::has_active_plan(db, &provider.id).await? {
        return Err(ApiError::NoActivePlan);
    }
    let signal_id = signal.id.to_hex();
    let record_hash = record.header_hash().to_hex();

    // Dedupe before the age check: a retry of a stored signal gets its stored answer.
    if let Some(stored) = stored_by_id(db, hub, &signal_id).await? {
        return if stored.1 == record_hash {
            Ok(Ingested::Duplicate(stored.0))
        } else {
            Err(ApiError::SignalConflict(signal_id))
        };
    }
    let age_ms = now_ms - header.created_at_ms;
    if age_ms.abs() > rules.max_age_ms {
        return Err(ApiError::StaleSignal { age_ms, limit_ms: rules.max_age_ms });
    }

    let mut tx = db.begin_write().await?;
    i64::try_from(header.seq).map_err(|_| ApiError::InvalidRecord("seq out of range".into()))?;
    if !insert_signal(&mut tx, &provider.id, &record, &signal, now_ms).await? {
        drop(tx);
        // A concurrent post of the same id, or a second record at the same (author, seq).
        if let Some(stored) = stored_by_id(db, hub, &signal_id).await? {
            return if stored.1 == record_hash {
                Ok(Ingested::Duplicate(stored.0))
            } else {
                Err(ApiError::SignalConflict(signal_id))
            };
        }
        return Err(ApiError::Conflict(format!(
            "seq {} of this author's signals stream already holds another record",
            header.seq
        )));
    }
    let appended =
        queue_in(&mut tx, db.backend(), &provider.id, &record, &signal, now_ms, request_id).await?;
    tx.commit().await.map_err(DbError::from)?;
    metrics::counter!(crate::telemetry::SIGNALS_INGESTED).increment(1);
    // The live broadcast first; then the provider's outcome rows (off the fan-out's path).
    let mut n_queued = 0;
    for expected in relay::after_commit(ctx.state, &appended) {
        match expected.write(db, now_ms).await {
            Ok(n) => n_queued = n,
            Err(e) => tracing::warn!(error = %e, signal = %signal_id,
                "writing the signal's outcome rows failed (the next start writes them)"),
        }
    }
    Ok(Ingested::Created(answer(hub, &record, &bytes, &signal, &provider.id, now_ms, n_queued)))
}

/// Stores an accepted signal in `signals`; `false` when its id, or its (author, stream, seq),
/// is already there (nothing written: the transaction stays usable on both backends).
async fn insert_signal(
    tx: &mut feed::Tx,
    provider_user_id: &str,
    record: &Record,
    signal: &Signal,
    now_ms: i64,
) -> Result<bool, DbError> {
    let header = record.header();
    let inserted = sqlx::query(
        "INSERT INTO signals (id, provider_user_id, author, stream, seq, record, record_hash, symbol, side, \
         entry, stop, tp1, created_at_ms, expires_at_ms, received_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) ON CONFLICT DO NOTHING",
    )
    .bind(signal.id.to_hex())
    .bind(provider_user_id)
    .bind(header.author.to_text())
    .bind(i64::from(header.stream.0))
    .bind(i64::try_from(header.seq).unwrap_or(i64::MAX))
    .bind(record.encode())
    .bind(record.header_hash().to_hex())
    .bind(&signal.symbol)
    .bind(signal.side.as_str())
    .bind(signal.entry.to_string())
    .bind(signal.stop.to_string())
    .bind(signal.tp1.to_string())
    .bind(header.created_at_ms)
    .bind(signal.expires_at_ms)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(inserted > 0)
}

/// Appends a stored signal to its provider device's relay log and audits it, inside `tx` (no
/// row per subscriber). Returns what was appended (broadcast it after the commit).
async fn queue_in(
    tx: &mut feed::Tx,
    backend: crate::db::Backend,
    provider_user_id: &str,
    record: &Record,
    signal: &Signal,
    now_ms: i64,
    request_id: &str,
) -> Result<Vec<relay::Appended>, DbError> {
    let header = record.header();
    let signal_id = signal.id.to_hex();
    let appended = relay::append_in(
        tx,
        provider_user_id,
        record,
        Some(&signal_id),
        relay::View::EntitledAt(now_ms),
        now_ms,
    )
    .await?;
    let relay_seq = appended.last().map_or(0, |a| a.entry.seq);
    let detail = serde_json::json!({
        "author": header.author.to_text(), "seq": header.seq, "symbol": signal.symbol,
        "side": signal.side.as_str(), "record_hash": record.header_hash().to_hex(),
        "relay_seq": relay_seq,
    });
    let entry = Entry {
        actor: provider_user_id,
        action: "signal.ingest",
        subject: &signal_id,
        detail,
        request_id,
    };
    audit::append(tx, backend, now_ms, &entry).await?;
    Ok(appended)
}

/// What became of a provider's record that arrived over sync (it is in the author's chain
/// either way: the chain is the track record).
#[derive(Debug, Clone)]
pub enum Relay {
    /// Appended to its provider device's relay log (broadcast after the commit with
    /// [`relay::after_commit`]).
    Relayed(Vec<relay::Appended>),
    /// Appended to these devices' inboxes (a modification or close of a signal accepted
    /// before the relay log existed, which travels where its signal did; ring them).
    Inboxes(Vec<String>),
    /// Not relayed, and why (logged and counted).
    NotRelayed(String),
}

/// Decides, inside the sync commit's transaction, whether a record of a node's signals stream
/// is relayed: a `Signal` passes the same checks as the signals API (author an active device of
/// an enabled provider with a plan, schema, freshness, unique id) and is stored, queued, fed and
/// audited; a `Modify` or `Close` of a signal by the same author goes to every device that
/// signal reached. Everything else stays in the chain only.
pub async fn accept_synced(
    tx: &mut feed::Tx,
    backend: crate::db::Backend,
    rules: IngestRules,
    record: &Record,
    now_ms: i64,
) -> Result<Relay, DbError> {
    let header = *record.header();
    let no = |why: &str| Ok(Relay::NotRelayed(why.to_string()));
    if header.stream != StreamId::SIGNALS || header.sealed {
        return no("not on the signals stream");
    }
    let body = match record.body() {
        Ok(b) => b,
        Err(e) => return Ok(Relay::NotRelayed(format!("body does not decode: {e}"))),
    };
    let author = header.author.to_text();
    match body {
        Body::Signal(signal) => {
            let row = sqlx::query(
                "SELECT d.user_id, u.role, u.disabled_at_ms, d.revoked_at_ms FROM devices d \
                 JOIN users u ON u.id = d.user_id WHERE d.id = $1",
            )
            .bind(&author)
            .fetch_optional(&mut **tx)
            .await?;
            let Some(row) = row else { return no("the author is not an enrolled device") };
            let user_id: String = row.try_get(0)?;
            let role: String = row.try_get(1)?;
            let disabled: Option<i64> = row.try_get(2)?;
            let revoked: Option<i64> = row.try_get(3)?;
            if revoked.is_some() || disabled.is_some() {
                return no("the author's device or account is disabled");
            }
            if role != Role::Provider.as_str() {
                return no("only provider accounts publish signals");
            }
            if let Err(e) = check_signal(&signal, record) {
                return Ok(Relay::NotRelayed(e.to_string()));
            }
            let plans: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM plans WHERE provider_user_id = $1 AND archived_at_ms IS NULL",
            )
            .bind(&user_id)
            .fetch_one(&mut **tx)
            .await?;
            if plans == 0 {
                return no("the provider has no active plan");
            }
            let age_ms = now_ms - header.created_at_ms;
            if age_ms.abs() > rules.max_age_ms {
                return Ok(Relay::NotRelayed(format!(
                    "received {age_ms} ms after it was created (limit {} ms)",
                    rules.max_age_ms
                )));
            }
            if !insert_signal(tx, &user_id, record, &signal, now_ms).await? {
                return no("a signal with this id (or at this seq) is already stored");
            }
            let request_id = format!("sync:{author}:{}", header.seq);
            let appended =
                queue_in(tx, backend, &user_id, record, &signal, now_ms, &request_id).await?;
            metrics::counter!(crate::telemetry::SIGNALS_INGESTED).increment(1);
            Ok(Relay::Relayed(appended))
        }
        Body::Modify(Modify { signal_id, .. }) | Body::Close(Close { signal_id, .. }) => {
            let signal_id = signal_id.to_hex();
            let row = sqlx::query(
                "SELECT author, provider_user_id, received_at_ms FROM signals WHERE id = $1",
            )
            .bind(&signal_id)
            .fetch_optional(&mut **tx)
            .await?;
            let Some(row) = row else { return no("no such signal (it was never relayed)") };
            let signal_author: String = row.try_get(0)?;
            if signal_author != author {
                return no("the signal belongs to another author");
            }
            if !relay::carries_signal(tx, &signal_id).await? {
                return Ok(Relay::Inboxes(
                    feed::append_for_signal(tx, &signal_id, record, now_ms).await?,
                ));
            }
            let provider: String = row.try_get(1)?;
            let accepted_at_ms: i64 = row.try_get(2)?;
            // Seen by exactly the devices that saw the signal, entitled then or not now.
            let view = relay::View::EntitledAt(accepted_at_ms);
            Ok(Relay::Relayed(
                relay::append_in(tx, &provider, record, Some(&signal_id), view, now_ms).await?,
            ))
        }
        _ => no("not a signal, modification or close"),
    }
}

/// The stored signal `signal_id` with its record hash.
pub async fn stored_by_id(
    db: &Db,
    hub: &Identity,
    signal_id: &str,
) -> Result<Option<(StoredSignal, String)>, ApiError> {
    let row = sqlx::query(
        "SELECT s.provider_user_id, s.record, s.record_hash, s.received_at_ms, \
         (SELECT COUNT(*) FROM fanout_queue f WHERE f.signal_id = s.id) FROM signals s WHERE s.id = $1",
    )
    .bind(signal_id)
    .fetch_optional(db.pool())
    .await
    .map_err(DbError::from)?;
    let Some(row) = row else { return Ok(None) };
    let provider: String = row.try_get(0).map_err(DbError::from)?;
    let bytes: Vec<u8> = row.try_get(1).map_err(DbError::from)?;
    let hash: String = row.try_get(2).map_err(DbError::from)?;
    let received: i64 = row.try_get(3).map_err(DbError::from)?;
    let n: i64 = row.try_get(4).map_err(DbError::from)?;
    let record =
        Record::decode(&bytes).map_err(|e| DbError::Corrupt(format!("signal {signal_id}: {e}")))?;
    let Ok(Body::Signal(signal)) = record.body() else {
        return Err(DbError::Corrupt(format!("signal {signal_id}: body is not a signal")).into());
    };
    Ok(Some((answer(hub, &record, &bytes, &signal, &provider, received, n), hash)))
}

/// Signal ids visible to a caller: a provider its own, an admin all, a subscriber those of the
/// providers it is entitled to.
pub async fn list_ids(
    db: &Db,
    user_id: &str,
    role: Role,
    now_ms: i64,
    limit: i64,
) -> Result<Vec<String>, DbError> {
    let sql = match role {
        Role::Owner | Role::Admin => "SELECT id FROM signals WHERE $1 <> '' OR $2 = $2 ORDER BY received_at_ms DESC, id LIMIT $3".to_string(),
        Role::Provider => "SELECT id FROM signals WHERE provider_user_id = $1 AND $2 = $2 ORDER BY received_at_ms DESC, id LIMIT $3".to_string(),
        Role::Subscriber => format!(
            "SELECT s.id FROM signals s WHERE s.provider_user_id IN (SELECT p.provider_user_id \
             FROM plans p JOIN entitlements e ON e.plan_id = p.id WHERE e.user_id = $1 AND {}) \
             ORDER BY s.received_at_ms DESC, s.id LIMIT $3",
            entitlements::active_sql(2)
        ),
    };
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(user_id)
        .bind(now_ms)
        .bind(limit)
        .fetch_all(db.pool())
        .await?)
}

/// Signals the hub accepted at or after `since_ms` (by reception time, from either door).
pub async fn count_received_since(db: &Db, since_ms: i64) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM signals WHERE received_at_ms >= $1")
        .bind(since_ms)
        .fetch_one(db.pool())
        .await?)
}

/// Whether `user_id` (with `role`) may see signal `signal_id`: admins all, a provider its own, a
/// subscriber those of providers it is currently entitled to.
pub async fn visible_to(
    db: &Db,
    user_id: &str,
    role: Role,
    now_ms: i64,
    signal_id: &str,
) -> Result<bool, DbError> {
    let provider: Option<String> =
        sqlx::query_scalar("SELECT provider_user_id FROM signals WHERE id = $1")
            .bind(signal_id)
            .fetch_optional(db.pool())
            .await?;
    let Some(provider) = provider else { return Ok(false) };
    Ok(match role {
        Role::Owner | Role::Admin => true,
        Role::Provider => provider == user_id,
        Role::Subscriber => entitlements::is_entitled(db, user_id, &provider, now_ms).await?,
    })
}

/// Building signed requests for the signals API, for scripts, tools and tests.
pub mod client {
    use tradecast_protocol::link_auth;
    use tradecast_protocol::{Body, HeaderFields, Identity, Record, Signal};

    use super::RecordBody;

    /// The path of the signals API.
    pub const SIGNALS_PATH: &str = "/api/v1/signals";

    /// Signs `signal` as a record of `identity` with `fields` (stream, seq, prev_hash,
    /// created_at_ms) and returns the record and the JSON body to POST.
    pub fn signal_body(
        identity: &Identity,
        fields: HeaderFields,
        signal: &Signal,
    ) -> (Record, Vec<u8>) {
        let record = Record::sign(identity, fields, &Body::Signal(signal.clone()));
        let body = RecordBody { record: data_encoding::BASE64.encode(&record.encode()) };
        // A struct of one string always serializes.
        (record, serde_json::to_vec(&body).unwrap_or_default())
    }

    /// The four authentication headers for `POST path` with `body`.
    pub fn auth_headers(
        key_id: &str,
        secret: &str,
        path: &str,
        body: &[u8],
        timestamp_ms: i64,
        nonce: &str,
    ) -> [(&'static str, String); 4] {
        let ts = timestamp_ms.to_string();
        let sig = link_auth::sign_request(secret.as_bytes(), "POST", path, &ts, nonce, body);
        [
            (link_auth::HEADER_KEY, key_id.to_string()),
            (link_auth::HEADER_TIMESTAMP, ts),
            (link_auth::HEADER_NONCE, nonce.to_string()),
            (link_auth::HEADER_SIGNATURE, sig),
        ]
    }
}

//! Approvals (board PR-022): the hub stores the node-signed `Approval` records it receives,
//! unique per (signal, device), audited, and shows them; it never decides.
//!
//! Remote approvals (issues 17 part 5, 19 part 2): a node with remote approval on signs a
//! `Pending` for each signal waiting for the trader (lot range, risk preview, blocking rules);
//! the hub stores it ([`on_synced`], called from the sync commit) and offers it in Telegram
//! ([`crate::telegram::approve`]) and the Mini App. A trader's decision from either (or the
//! API) becomes an `ApprovalRequest` record signed with the hub's identity and appended to the
//! device's inbox in the same transaction ([`request`]). The node honours it only within its
//! own policy and answers with its signed `RequestAnswer` (and `Approval`), which consumes the
//! request and is shown where the decision was made.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use tradecast_protocol::{
    AnswerOutcome, Approval, ApprovalRequest as SignedRequest, Body, Channel, DecidedBy, DeviceId,
    Identity, Kind, Pending, Record, RefusalReason, RemoteDecision, RequestAnswer, RequestId,
    RiskPreview, SignalId, StreamId,
};

use crate::accounts::Role;
use crate::audit::{self, Entry};
use crate::db::{Backend, Db, DbError, is_unique_violation};
use crate::devices;
use crate::error::ApiError;
use crate::feed::Tx;
use crate::ids;
use crate::state::AppState;

/// A stored approval.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredApproval {
    /// Signal id.
    pub signal_id: String,
    /// Deciding device (text form).
    pub device_id: String,
    /// The device's account.
    pub user_id: String,
    /// `approved`, `rejected` or `expired`.
    pub decision: String,
    /// Terms version the trader consented to.
    pub consent_version: i64,
    /// When the node decided, unix ms.
    pub decided_at_ms: i64,
    /// When the hub stored it, unix ms.
    pub received_at_ms: i64,
    /// The signed record (base64).
    pub record: String,
}

/// Outcome of storing an approval.
#[derive(Debug)]
pub enum Stored {
    /// New (201).
    Created(StoredApproval),
    /// Identical record already stored (200).
    Duplicate(StoredApproval),
}

const COLUMNS: &str = "signal_id, device_id, user_id, decision, consent_version, decided_at_ms, received_at_ms, record, record_hash";

fn from_row(r: &sqlx::any::AnyRow) -> Result<(StoredApproval, String), DbError> {
    let bytes: Vec<u8> = r.try_get(7)?;
    Ok((
        StoredApproval {
            signal_id: r.try_get(0)?,
            device_id: r.try_get(1)?,
            user_id: r.try_get(2)?,
            decision: r.try_get(3)?,
            consent_version: r.try_get(4)?,
            decided_at_ms: r.try_get(5)?,
            received_at_ms: r.try_get(6)?,
            record: data_encoding::BASE64.encode(&bytes),
        },
        r.try_get(8)?,
    ))
}

async fn by_key(
    db: &Db,
    signal_id: &str,
    device_id: &str,
) -> Result<Option<(StoredApproval, String)>, DbError> {
    let row = sqlx::query(crate::sql!(
        "SELECT {COLUMNS} FROM approvals WHERE signal_id = $1 AND device_id = $2"
    ))
    .bind(signal_id)
    .bind(device_id)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Stores an `Approval` record posted by `user_id` (the owner of the deciding device).
pub async fn store(
    db: &Db,
    now_ms: i64,
    user_id: &str,
    bytes: Vec<u8>,
    record: Record,
    request_id: &str,
) -> Result<Stored, ApiError> {
    let header = *record.header();
    if header.kind != Kind::Approval || header.sealed {
        return Err(ApiError::InvalidRecord("expected an unsealed Approval record".into()));
    }
    let (device, key) = devices::active_device(db, &header.author).await?;
    if device.user_id != user_id {
        return Err(ApiError::DeviceRefused(
            "the record's author is not a device of this account".into(),
        ));
    }
    record.verify(&key).map_err(|e| ApiError::InvalidRecord(e.to_string()))?;
    let Body::Approval(approval) =
        record.body().map_err(|e| ApiError::InvalidRecord(e.to_string()))?
    else {
        return Err(ApiError::InvalidRecord("expected an Approval body".into()));
    };
    if approval.device != header.author {
        return Err(ApiError::InvalidRecord("approval.device is not the record's author".into()));
    }
    if approval.reason.len() > 1024 {
        return Err(ApiError::InvalidRecord("approval.reason is longer than 1024 bytes".into()));
    }
    let signal_id = approval.signal_id.to_hex();
    let exists: Option<String> = sqlx::query_scalar("SELECT id FROM signals WHERE id = $1")
        .bind(&signal_id)
        .fetch_optional(db.pool())
        .await
        .map_err(DbError::from)?;
    if exists.is_none() {
        return Err(ApiError::NotFound(format!("no signal {signal_id}")));
    }
    let record_hash = record.header_hash().to_hex();
    let check_existing = |existing: Option<(StoredApproval, String)>| match existing {
        Some((a, h)) if h == record_hash => Some(Ok(Stored::Duplicate(a))),
        Some(_) => Some(Err(ApiError::ApprovalConflict)),
        None => None,
    };
    if let Some(r) = check_existing(by_key(db, &signal_id, &device.id).await?) {
        return r;
    }
    let stored = StoredApproval {
        signal_id: signal_id.clone(),
        device_id: device.id.clone(),
        user_id: user_id.to_string(),
        decision: approval.decision.as_str().to_string(),
        consent_version: i64::from(approval.consent_version),
        decided_at_ms: approval.decided_at_ms,
        received_at_ms: now_ms,
        record: data_encoding::BASE64.encode(&bytes),
    };
    let mut tx = db.begin_write().await?;
    let inserted = sqlx::query(crate::sql!(
        "INSERT INTO approvals ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    ))
    .bind(&stored.signal_id)
    .bind(&stored.device_id)
    .bind(&stored.user_id)
    .bind(&stored.decision)
    .bind(stored.consent_version)
    .bind(stored.decided_at_ms)
    .bind(now_ms)
    .bind(bytes)
    .bind(&record_hash)
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => {
            drop(tx);
            return check_existing(by_key(db, &signal_id, &device.id).await?)
                .unwrap_or(Err(ApiError::ApprovalConflict));
        }
        other => other.map_err(DbError::from)?,
    };
    // A remote request this approval answers is consumed.
    sqlx::query("UPDATE approval_requests SET consumed_at_ms = $1 WHERE signal_id = $2 AND device_id = $3 AND consumed_at_ms IS NULL")
        .bind(now_ms)
        .bind(&signal_id)
        .bind(&device.id)
        .execute(&mut *tx)
        .await
        .map_err(DbError::from)?;
    // Shown where the request came from (Telegram, Mini App), as when it arrives by sync.
    on_synced(&mut tx, &record, now_ms).await?;
    let detail = serde_json::json!({
        "device": device.id, "decision": stored.decision, "consent_version": stored.consent_version,
        "record_hash": record_hash,
    });
    audit::append(
        &mut tx,
        db.backend(),
        now_ms,
        &Entry {
            actor: user_id,
            action: "approval.store",
            subject: &signal_id,
            detail,
            request_id,
        },
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(Stored::Created(stored))
}

/// Approvals visible to the caller: its own devices', approvals of its signals (provider), or
/// all (admin); optionally for one signal.
pub async fn list(
    db: &Db,
    user_id: &str,
    role: Role,
    signal_id: Option<&str>,
) -> Result<Vec<StoredApproval>, DbError> {
    let scope = match role {
        Role::Owner | Role::Admin => "($1 = $1)",
        Role::Provider => {
            "(a.signal_id IN (SELECT id FROM signals WHERE provider_user_id = $1) OR a.user_id = $1)"
        }
        Role::Subscriber => "(a.user_id = $1)",
    };
    let cols: String = COLUMNS.split(", ").map(|c| format!("a.{c}")).collect::<Vec<_>>().join(", ");
    let rows = sqlx::query(crate::sql!(
        "SELECT {cols} FROM approvals a WHERE {scope} AND ($2 = '' OR a.signal_id = $2) \
         ORDER BY a.received_at_ms DESC, a.device_id LIMIT 1000"
    ))
    .bind(user_id)
    .bind(signal_id.unwrap_or(""))
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(|r| from_row(r).map(|(a, _)| a)).collect()
}

/// A remote decision sent to a node as a hub-signed `ApprovalRequest` record.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApprovalRequest {
    /// Request id (the signed record's `request_id`, 32 hex digits).
    pub id: String,
    /// Signal.
    pub signal_id: String,
    /// Device that is asked.
    pub device_id: String,
    /// `approved` or `rejected`.
    pub decision: String,
    /// Where it came from (`telegram`, `mini_app`, `web`).
    pub channel: String,
    /// Account that asked.
    pub requested_by: String,
    /// When, unix ms.
    pub created_at_ms: i64,
    /// The lots the trader chose (exact decimal text); `None`: the node's own sizing.
    pub lots: Option<String>,
    /// After this instant (unix ms) the node ignores the request.
    pub expires_at_ms: Option<i64>,
    /// The Telegram user who pressed (Telegram, Mini App).
    pub telegram_user_id: Option<i64>,
    /// Set once the node answered (its signed `RequestAnswer`, or its `Approval`).
    pub consumed_at_ms: Option<i64>,
    /// The node's answer: `applied` or a refusal reason (`price_moved`, `expired`, …).
    pub outcome: Option<String>,
}

/// A new remote decision.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApprovalRequest {
    /// Signal id (32 hex digits).
    pub signal_id: String,
    /// Device (text form).
    pub device_id: String,
    /// `approved` or `rejected`.
    pub decision: String,
    /// `telegram`, `mini_app` or `web`.
    pub channel: String,
    /// The lot size to approve at (exact decimal text, e.g. `"0.25"`), within the lot range of
    /// the node's `Pending` for this signal; absent: the node sizes it by its own rules.
    #[serde(default)]
    pub lots: Option<String>,
    /// When the request lapses (unix ms): at most the `Pending`'s expiry; absent: that expiry,
    /// or [`DEFAULT_TTL_MS`] from now without a `Pending`.
    #[serde(default)]
    pub expires_at_ms: Option<i64>,
}

/// A request's lifetime without a `Pending` to take the expiry from.
pub const DEFAULT_TTL_MS: i64 = 5 * 60_000;
/// The longest a request may live.
pub const MAX_TTL_MS: i64 = 24 * 3_600_000;

/// Who asks: the account, and the Telegram user who pressed (Telegram, Mini App).
#[derive(Debug, Clone, Copy)]
pub struct Asker<'a> {
    /// The account (owner of the device).
    pub user_id: &'a str,
    /// The Telegram user, if the press came from Telegram or the Mini App.
    pub telegram_user_id: Option<i64>,
}

/// Signs a remote decision as an `ApprovalRequest` record (hub identity, `HUB_REQUESTS`
/// chain), appends it to the device's inbox and stores it, all in one transaction, then rings
/// the device's sync session.
pub async fn request(
    state: &AppState,
    asker: &Asker<'_>,
    new: &NewApprovalRequest,
    request_id: &str,
) -> Result<ApprovalRequest, ApiError> {
    let now_ms = state.now_ms();
    let mut tx = state.db.begin_write().await?;
    let (req, seq) = request_in(
        &mut tx,
        state.db.backend(),
        &state.hub_identity,
        now_ms,
        asker,
        new,
        request_id,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    after_commit(state, &req.device_id, seq);
    Ok(req)
}

/// Once a request's transaction committed: the device's session (on this instance) sends it
/// now, and the other instances hear of the hub chain's new entry (`seq`) and wake theirs.
pub fn after_commit(state: &AppState, device_id: &str, seq: u64) {
    state.feed_bell.ring(&[device_id.to_owned()]);
    let source = state.hub_identity.device_id().to_text();
    state.cluster.publish(crate::cluster::Event::Feed { source, seq });
}

/// [`request`] inside the caller's write transaction (a Telegram press records its update in
/// the same one): the request and the signed record's `seq` in the hub's chain; the caller calls
/// [`after_commit`] once it committed.
pub async fn request_in(
    tx: &mut Tx,
    backend: Backend,
    hub: &Identity,
    now_ms: i64,
    asker: &Asker<'_>,
    new: &NewApprovalRequest,
    request_id: &str,
) -> Result<(ApprovalRequest, u64), ApiError> {
    let decision = RemoteDecision::ALL
        .into_iter()
        .find(|d| d.as_str() == new.decision)
        .ok_or_else(|| ApiError::Validation("`decision` must be approved or rejected".into()))?;
    let channel =
        Channel::ALL.into_iter().find(|c| c.as_str() == new.channel).ok_or_else(|| {
            ApiError::Validation("`channel` must be telegram, mini_app or web".into())
        })?;
    let device = DeviceId::parse(&new.device_id)
        .map_err(|e| ApiError::Validation(format!("`device_id`: {e}")))?;
    let device_id = device.to_text();
    let row = sqlx::query("SELECT user_id, revoked_at_ms FROM devices WHERE id = $1")
        .bind(&device_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(DbError::from)?;
    let owner: String = match &row {
        None => {
            return Err(ApiError::DeviceRefused(format!(
                "device {} is not enrolled",
                device.fmt_short()
            )));
        }
        Some(r) => {
            if r.try_get::<Option<i64>, _>(1).map_err(DbError::from)?.is_some() {
                return Err(ApiError::DeviceRefused("the device is revoked".into()));
            }
            r.try_get(0).map_err(DbError::from)?
        }
    };
    if owner != asker.user_id {
        return Err(ApiError::DeviceRefused("the device is not one of this account's".into()));
    }
    let signal_id = SignalId::from_hex(&new.signal_id)
        .ok_or_else(|| ApiError::Validation("`signal_id` is 32 hex digits".into()))?;
    let signal_hex = signal_id.to_hex();
    let exists: Option<String> = sqlx::query_scalar("SELECT id FROM signals WHERE id = $1")
        .bind(&signal_hex)
        .fetch_optional(&mut **tx)
        .await
        .map_err(DbError::from)?;
    if exists.is_none() {
        return Err(ApiError::NotFound(format!("no signal {}", new.signal_id)));
    }
    let pending = pending_row_in(tx, &signal_hex, &device_id).await?;
    let lots = match new.lots.as_deref() {
        None => None,
        Some(text) => {
            let lots = Decimal::from_str_exact(text.trim()).map_err(|_| {
                ApiError::Validation(format!("`lots` {text:?} is not a decimal number"))
            })?;
            if lots <= Decimal::ZERO {
                return Err(ApiError::Validation("`lots` must be above zero".into()));
            }
            let Some(p) = &pending else {
                return Err(ApiError::Validation(
                    "`lots` needs the lot range of the node's pending signal, and this device sent none for it"
                        .into(),
                ));
            };
            if lots < p.min_lots || lots > p.max_lots {
                return Err(ApiError::Validation(format!(
                    "`lots` {lots} is outside the range your rules allow ({} – {})",
                    p.min_lots, p.max_lots
                )));
            }
            Some(lots)
        }
    };
    let deadline = pending.as_ref().map(|p| p.expires_at_ms);
    let expires_at_ms = match new.expires_at_ms {
        Some(t) if t <= now_ms => {
            return Err(ApiError::Validation("`expires_at_ms` is in the past".into()));
        }
        Some(t) => deadline.map_or(t, |d| t.min(d)),
        None => deadline.unwrap_or(now_ms + DEFAULT_TTL_MS),
    }
    .min(now_ms + MAX_TTL_MS);
    if expires_at_ms <= now_ms {
        return Err(ApiError::Conflict(format!(
            "the signal stopped waiting for a decision at {}",
            crate::telegram::fmt_minute(expires_at_ms)
        )));
    }
    let mut raw = [0u8; 16];
    raw.copy_from_slice(&ids::random_bytes(16));
    let request = RequestId(raw);
    let signed = SignedRequest {
        request_id: request,
        signal_id,
        device,
        decision,
        lots,
        expires_at_ms,
        channel,
        telegram_user_id: asker.telegram_user_id,
        requested_at_ms: now_ms,
    };
    let record = crate::quic::store::hub_record(
        tx,
        hub,
        StreamId::HUB_REQUESTS,
        &Body::ApprovalRequest(signed),
        now_ms,
    )
    .await
    .map_err(|e| match e {
        crate::quic::store::StoreError::Db(d) => ApiError::from(d),
        other => ApiError::from(DbError::Corrupt(other.to_string())),
    })?;
    crate::feed::append_to_device(tx, &device_id, &record, now_ms).await?;
    let req = ApprovalRequest {
        id: request.to_hex(),
        signal_id: signal_hex,
        device_id,
        decision: decision.as_str().to_owned(),
        channel: channel.as_str().to_owned(),
        requested_by: asker.user_id.to_owned(),
        created_at_ms: now_ms,
        lots: lots.map(|l| l.to_string()),
        expires_at_ms: Some(expires_at_ms),
        telegram_user_id: asker.telegram_user_id,
        consumed_at_ms: None,
        outcome: None,
    };
    sqlx::query(
        "INSERT INTO approval_requests (id, signal_id, device_id, decision, channel, requested_by, \
         created_at_ms, lots, expires_at_ms, telegram_user_id, record_hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&req.id)
    .bind(&req.signal_id)
    .bind(&req.device_id)
    .bind(&req.decision)
    .bind(&req.channel)
    .bind(&req.requested_by)
    .bind(now_ms)
    .bind(&req.lots)
    .bind(expires_at_ms)
    .bind(asker.telegram_user_id)
    .bind(record.header_hash().to_hex())
    .execute(&mut **tx)
    .await
    .map_err(DbError::from)?;
    let detail = serde_json::json!({
        "signal_id": req.signal_id, "device": req.device_id, "decision": req.decision,
        "channel": req.channel, "lots": req.lots, "expires_at_ms": expires_at_ms,
        "telegram_user_id": asker.telegram_user_id, "seq": record.header().seq,
    });
    audit::append(
        tx,
        backend,
        now_ms,
        &Entry {
            actor: asker.user_id,
            action: "approval.request",
            subject: &req.id,
            detail,
            request_id,
        },
    )
    .await?;
    Ok((req, record.header().seq))
}

const REQUEST_COLUMNS: &str = "id, signal_id, device_id, decision, channel, requested_by, \
     created_at_ms, lots, expires_at_ms, telegram_user_id, consumed_at_ms, outcome";

fn request_of(r: &sqlx::any::AnyRow) -> Result<ApprovalRequest, sqlx::Error> {
    Ok(ApprovalRequest {
        id: r.try_get(0)?,
        signal_id: r.try_get(1)?,
        device_id: r.try_get(2)?,
        decision: r.try_get(3)?,
        channel: r.try_get(4)?,
        requested_by: r.try_get(5)?,
        created_at_ms: r.try_get(6)?,
        lots: r.try_get(7)?,
        expires_at_ms: r.try_get(8)?,
        telegram_user_id: r.try_get(9)?,
        consumed_at_ms: r.try_get(10)?,
        outcome: r.try_get(11)?,
    })
}

/// Pending remote decisions (not answered yet) for a device of `user_id`.
pub async fn pending_requests(
    db: &Db,
    user_id: &str,
    device_id: &str,
) -> Result<Vec<ApprovalRequest>, ApiError> {
    let device = devices::by_id(db, device_id).await?;
    if device.is_none_or(|d| d.user_id != user_id) {
        return Err(ApiError::NotFound(format!("no device {device_id}")));
    }
    let rows = sqlx::query(crate::sql!(
        "SELECT {REQUEST_COLUMNS} FROM approval_requests WHERE device_id = $1 \
         AND consumed_at_ms IS NULL ORDER BY created_at_ms, id"
    ))
    .bind(device_id)
    .fetch_all(db.pool())
    .await
    .map_err(DbError::from)?;
    rows.iter()
        .map(request_of)
        .collect::<Result<_, sqlx::Error>>()
        .map_err(|e| DbError::from(e).into())
}

/// One request by id (tests, the Mini App's outcome).
pub async fn request_by_id(db: &Db, id: &str) -> Result<Option<ApprovalRequest>, DbError> {
    let row =
        sqlx::query(crate::sql!("SELECT {REQUEST_COLUMNS} FROM approval_requests WHERE id = $1"))
            .bind(id)
            .fetch_optional(db.pool())
            .await?;
    Ok(row.as_ref().map(request_of).transpose()?)
}

/// What a node's `Pending` said, as stored.
#[derive(Debug, Clone)]
pub struct PendingRow {
    /// Signal id (hex).
    pub signal_id: String,
    /// Device (text form).
    pub device_id: String,
    /// The device's account.
    pub user_id: String,
    /// The decision deadline, unix ms.
    pub expires_at_ms: i64,
    /// The lot range the trader's rules allow.
    pub min_lots: Decimal,
    /// Upper end (inclusive).
    pub max_lots: Decimal,
    /// The risk at the lots the policy would choose.
    pub preview: Option<RiskPreview>,
    /// Stable codes of the rules that would refuse an approval now.
    pub blocking: Vec<String>,
    /// When the node signed it.
    pub at_ms: i64,
    /// The node's answer to the last request (`applied`, a refusal reason).
    pub outcome: Option<String>,
    /// When the node decided the signal (no longer waiting).
    pub decided_at_ms: Option<i64>,
}

const PENDING_COLUMNS: &str = "signal_id, device_id, user_id, expires_at_ms, min_lots, max_lots, \
     preview, blocking, at_ms, outcome, decided_at_ms";

fn pending_of(r: &sqlx::any::AnyRow) -> Result<PendingRow, DbError> {
    let dec = |i: usize| -> Result<Decimal, DbError> {
        let text: String = r.try_get(i)?;
        Decimal::from_str_exact(&text).map_err(|e| DbError::Corrupt(format!("lots {text:?}: {e}")))
    };
    let preview: Option<String> = r.try_get(6)?;
    let blocking: String = r.try_get(7)?;
    Ok(PendingRow {
        signal_id: r.try_get(0)?,
        device_id: r.try_get(1)?,
        user_id: r.try_get(2)?,
        expires_at_ms: r.try_get(3)?,
        min_lots: dec(4)?,
        max_lots: dec(5)?,
        preview: preview
            .map(|p| serde_json::from_str(&p))
            .transpose()
            .map_err(|e| DbError::Corrupt(format!("pending preview: {e}")))?,
        blocking: serde_json::from_str(&blocking)
            .map_err(|e| DbError::Corrupt(format!("pending blocking: {e}")))?,
        at_ms: r.try_get(8)?,
        outcome: r.try_get(9)?,
        decided_at_ms: r.try_get(10)?,
    })
}

async fn pending_row_in(
    tx: &mut Tx,
    signal_id: &str,
    device_id: &str,
) -> Result<Option<PendingRow>, DbError> {
    let row = sqlx::query(crate::sql!(
        "SELECT {PENDING_COLUMNS} FROM approval_pending WHERE signal_id = $1 AND device_id = $2"
    ))
    .bind(signal_id)
    .bind(device_id)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(pending_of).transpose()
}

/// The pending signals of `user_id`'s devices the nodes told the hub about, newest first
/// (waiting ones and decided ones alike; the caller filters by `decided_at_ms`/expiry).
pub async fn pending_of_user(
    db: &Db,
    user_id: &str,
    limit: i64,
) -> Result<Vec<PendingRow>, DbError> {
    let rows = sqlx::query(crate::sql!(
        "SELECT {PENDING_COLUMNS} FROM approval_pending WHERE user_id = $1 \
         ORDER BY at_ms DESC, signal_id, device_id LIMIT $2"
    ))
    .bind(user_id)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(pending_of).collect()
}

/// The latest request for (signal, device), if any.
pub async fn last_request(
    db: &Db,
    signal_id: &str,
    device_id: &str,
) -> Result<Option<ApprovalRequest>, DbError> {
    let row = sqlx::query(crate::sql!(
        "SELECT {REQUEST_COLUMNS} FROM approval_requests WHERE signal_id = $1 AND device_id = $2 \
         ORDER BY created_at_ms DESC, id DESC LIMIT 1"
    ))
    .bind(signal_id)
    .bind(device_id)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.as_ref().map(request_of).transpose()?)
}

/// Reads a node's `Pending`, `RequestAnswer` and `Approval` records as they are committed
/// (sync, or `POST /api/v1/approvals`), inside the committing transaction: a `Pending` is
/// stored per (signal, device) and offered to the trader's Telegram chat; an answer or an
/// approval consumes the request it names and is shown where the request came from. Records
/// of an unknown device or signal, or whose `device` is not their author, are left alone.
pub async fn on_synced(tx: &mut Tx, record: &Record, now_ms: i64) -> Result<(), DbError> {
    let h = record.header();
    if !matches!(h.kind, Kind::Pending | Kind::RequestAnswer | Kind::Approval) || h.sealed {
        return Ok(());
    }
    let author = h.author.to_text();
    let user: Option<String> = sqlx::query_scalar("SELECT user_id FROM devices WHERE id = $1")
        .bind(&author)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(user_id) = user else { return Ok(()) };
    match record.body() {
        Ok(Body::Pending(p)) if p.device == h.author => {
            pending_in(tx, record, &p, &user_id, now_ms).await
        }
        Ok(Body::RequestAnswer(a)) if a.device == h.author => answer_in(tx, &a, now_ms).await,
        Ok(Body::Approval(a)) if a.device == h.author => decided_in(tx, &a, now_ms).await,
        _ => Ok(()),
    }
}

async fn pending_in(
    tx: &mut Tx,
    record: &Record,
    p: &Pending,
    user_id: &str,
    now_ms: i64,
) -> Result<(), DbError> {
    let signal_id = p.signal_id.to_hex();
    let device_id = p.device.to_text();
    let known: Option<String> = sqlx::query_scalar("SELECT id FROM signals WHERE id = $1")
        .bind(&signal_id)
        .fetch_optional(&mut **tx)
        .await?;
    if known.is_none() || p.min_lots > p.max_lots || p.blocking.len() > 32 {
        return Ok(());
    }
    let preview = p.risk_preview.as_ref().map(|r| serde_json::json!(r).to_string());
    let blocking = serde_json::json!(p.blocking).to_string();
    let hash = record.header_hash().to_hex();
    let held: Option<i64> = sqlx::query_scalar(
        "SELECT at_ms FROM approval_pending WHERE signal_id = $1 AND device_id = $2",
    )
    .bind(&signal_id)
    .bind(&device_id)
    .fetch_optional(&mut **tx)
    .await?;
    match held {
        Some(at) if at >= p.at_ms => Ok(()),
        Some(_) => {
            // A newer word on a signal still waiting (a refusal left it pending, a rule changed).
            sqlx::query(
                "UPDATE approval_pending SET expires_at_ms = $3, min_lots = $4, max_lots = $5, \
                 preview = $6, blocking = $7, at_ms = $8, record_hash = $9, received_at_ms = $10, \
                 decided_at_ms = NULL WHERE signal_id = $1 AND device_id = $2",
            )
            .bind(&signal_id)
            .bind(&device_id)
            .bind(p.expires_at_ms)
            .bind(p.min_lots.to_string())
            .bind(p.max_lots.to_string())
            .bind(preview)
            .bind(blocking)
            .bind(p.at_ms)
            .bind(hash)
            .bind(now_ms)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }
        None => {
            sqlx::query(
                "INSERT INTO approval_pending (signal_id, device_id, user_id, expires_at_ms, \
                 min_lots, max_lots, preview, blocking, at_ms, record_hash, received_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(&signal_id)
            .bind(&device_id)
            .bind(user_id)
            .bind(p.expires_at_ms)
            .bind(p.min_lots.to_string())
            .bind(p.max_lots.to_string())
            .bind(preview)
            .bind(blocking)
            .bind(p.at_ms)
            .bind(hash)
            .bind(now_ms)
            .execute(&mut **tx)
            .await?;
            let row = pending_row_in(tx, &signal_id, &device_id)
                .await?
                .ok_or_else(|| DbError::Corrupt("approval_pending row vanished".into()))?;
            crate::telegram::approve::post_in(tx, &row, now_ms).await
        }
    }
}

/// Whether an answer leaves the signal decided (no longer waiting for the trader).
fn settles(outcome: AnswerOutcome) -> bool {
    matches!(
        outcome,
        AnswerOutcome::Applied
            | AnswerOutcome::Refused(RefusalReason::Expired | RefusalReason::NotPending)
    )
}

async fn answer_in(tx: &mut Tx, a: &RequestAnswer, now_ms: i64) -> Result<(), DbError> {
    let request = a.request_id.to_hex();
    let device_id = a.device.to_text();
    let n = sqlx::query(
        "UPDATE approval_requests SET consumed_at_ms = COALESCE(consumed_at_ms, $1), outcome = $2 \
         WHERE id = $3 AND device_id = $4 AND signal_id = $5",
    )
    .bind(now_ms)
    .bind(a.outcome.as_str())
    .bind(&request)
    .bind(&device_id)
    .bind(a.signal_id.to_hex())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if n == 0 {
        // Not a request of this hub for this device (or another signal): nothing to show.
        return Ok(());
    }
    let decided = if settles(a.outcome) { Some(now_ms) } else { None };
    sqlx::query(
        "UPDATE approval_pending SET outcome = $1, decided_at_ms = COALESCE(decided_at_ms, $2) \
         WHERE signal_id = $3 AND device_id = $4",
    )
    .bind(a.outcome.as_str())
    .bind(decided)
    .bind(a.signal_id.to_hex())
    .bind(&device_id)
    .execute(&mut **tx)
    .await?;
    crate::telegram::approve::answered_in(tx, &request, a.outcome, now_ms).await
}

async fn decided_in(tx: &mut Tx, a: &Approval, now_ms: i64) -> Result<(), DbError> {
    let signal_id = a.signal_id.to_hex();
    let device_id = a.device.to_text();
    if let DecidedBy::Remote { request_id } = &a.decided_by {
        sqlx::query(
            "UPDATE approval_requests SET consumed_at_ms = COALESCE(consumed_at_ms, $1) \
             WHERE id = $2 AND device_id = $3",
        )
        .bind(now_ms)
        .bind(request_id.to_hex())
        .bind(&device_id)
        .execute(&mut **tx)
        .await?;
    }
    sqlx::query(
        "UPDATE approval_pending SET decided_at_ms = COALESCE(decided_at_ms, $1) \
         WHERE signal_id = $2 AND device_id = $3",
    )
    .bind(now_ms)
    .bind(&signal_id)
    .bind(&device_id)
    .execute(&mut **tx)
    .await?;
    if !matches!(a.decided_by, DecidedBy::Remote { .. }) {
        crate::telegram::approve::decided_elsewhere_in(
            tx,
            &signal_id,
            &device_id,
            a.decision.as_str(),
            now_ms,
        )
        .await?;
    }
    Ok(())
}

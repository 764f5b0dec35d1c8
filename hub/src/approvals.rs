//! Approvals (board PR-022): the hub stores the node-signed `Approval` records it receives,
//! unique per (signal, device), audited, and shows them; it never decides. A remote decision
//! (Telegram, Mini App, later) is stored as an [`ApprovalRequest`] for the node, which honours
//! it only within its own policy and answers with its own signed `Approval`.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use tradecast_protocol::{Body, Kind, Record};

use crate::accounts::Role;
use crate::audit::{self, Entry};
use crate::db::{Db, DbError, is_unique_violation};
use crate::devices;
use crate::error::ApiError;
use crate::ids;

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

/// A remote decision waiting for the node.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApprovalRequest {
    /// Request id.
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
    /// Set once the node answered with an approval record.
    pub consumed_at_ms: Option<i64>,
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
}

/// Stores a remote decision for a device of `user_id`.
pub async fn request(
    db: &Db,
    now_ms: i64,
    user_id: &str,
    new: &NewApprovalRequest,
    request_id: &str,
) -> Result<ApprovalRequest, ApiError> {
    if !matches!(new.decision.as_str(), "approved" | "rejected") {
        return Err(ApiError::Validation("`decision` must be approved or rejected".into()));
    }
    if !matches!(new.channel.as_str(), "telegram" | "mini_app" | "web") {
        return Err(ApiError::Validation("`channel` must be telegram, mini_app or web".into()));
    }
    let device_id = tradecast_protocol::DeviceId::parse(&new.device_id)
        .map_err(|e| ApiError::Validation(format!("`device_id`: {e}")))?;
    let (device, _) = devices::active_device(db, &device_id).await?;
    if device.user_id != user_id {
        return Err(ApiError::DeviceRefused("the device is not one of this account's".into()));
    }
    let exists: Option<String> = sqlx::query_scalar("SELECT id FROM signals WHERE id = $1")
        .bind(&new.signal_id)
        .fetch_optional(db.pool())
        .await
        .map_err(DbError::from)?;
    if exists.is_none() {
        return Err(ApiError::NotFound(format!("no signal {}", new.signal_id)));
    }
    let req = ApprovalRequest {
        id: ids::new_id(),
        signal_id: new.signal_id.clone(),
        device_id: device.id.clone(),
        decision: new.decision.clone(),
        channel: new.channel.clone(),
        requested_by: user_id.to_string(),
        created_at_ms: now_ms,
        consumed_at_ms: None,
    };
    let mut tx = db.begin_write().await?;
    sqlx::query(
        "INSERT INTO approval_requests (id, signal_id, device_id, decision, channel, requested_by, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&req.id)
    .bind(&req.signal_id)
    .bind(&req.device_id)
    .bind(&req.decision)
    .bind(&req.channel)
    .bind(&req.requested_by)
    .bind(now_ms)
    .execute(&mut *tx)
    .await
    .map_err(DbError::from)?;
    let detail = serde_json::json!({ "signal_id": req.signal_id, "device": req.device_id, "decision": req.decision, "channel": req.channel });
    audit::append(
        &mut tx,
        db.backend(),
        now_ms,
        &Entry { actor: user_id, action: "approval.request", subject: &req.id, detail, request_id },
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(req)
}

/// Pending remote decisions for a device of `user_id`.
pub async fn pending_requests(
    db: &Db,
    user_id: &str,
    device_id: &str,
) -> Result<Vec<ApprovalRequest>, ApiError> {
    let device = devices::by_id(db, device_id).await?;
    if device.is_none_or(|d| d.user_id != user_id) {
        return Err(ApiError::NotFound(format!("no device {device_id}")));
    }
    let rows = sqlx::query(
        "SELECT id, signal_id, device_id, decision, channel, requested_by, created_at_ms, consumed_at_ms \
         FROM approval_requests WHERE device_id = $1 AND consumed_at_ms IS NULL ORDER BY created_at_ms, id",
    )
    .bind(device_id)
    .fetch_all(db.pool())
    .await
    .map_err(DbError::from)?;
    rows.iter()
        .map(|r| {
            Ok(ApprovalRequest {
                id: r.try_get(0)?,
                signal_id: r.try_get(1)?,
                device_id: r.try_get(2)?,
                decision: r.try_get(3)?,
                channel: r.try_get(4)?,
                requested_by: r.try_get(5)?,
                created_at_ms: r.try_get(6)?,
                consumed_at_ms: r.try_get(7)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(|e| DbError::from(e).into())
}

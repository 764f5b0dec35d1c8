//! The device registry: enrolment codes (short, single-use, expiring, stored hashed) created by
//! an account; enrolment of a node with its self-signed `DeviceKeys` record, answered with the
//! hub's identity key for the node to pin and the deployment's account-fingerprint key; list,
//! rename, revoke. A revoked device is refused by every later check ([`active_device`]).
//!
//! Account fingerprints: a node signs the keyed hash of its EA's broker server and login into a
//! later `DeviceKeys` record of its DEVICE stream; the sync commit keeps the latest one whose keys
//! are the device's enrolled ones on the device's row ([`record_account_fingerprint`]), and
//! [`accounts_share_trading_account`] tells whether two hub accounts trade one MT5 account. The
//! `DeviceKeys` relayed to followers stays the enrolment record (`feed::keys_record`).

use serde::Serialize;
use sqlx::Row;
use tradecast_protocol::{Body, DeviceId, DeviceKeys, IdentityKey, Kind, Record};

use crate::audit::{self, Entry};
use crate::db::{Db, DbError, is_unique_violation};
use crate::error::ApiError;
use crate::ids;

/// Enrolment code alphabet: Crockford base32 without I, L, O, U (no look-alikes).
const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters in a code (50 bits), shown as `XXXXX-XXXXX`.
const CODE_LEN: usize = 10;

/// A device as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Device {
    /// Checksummed text form of the device id.
    pub id: String,
    /// Owning account.
    pub user_id: String,
    /// Human label.
    pub name: String,
    /// Ed25519 identity key, hex.
    pub identity_key: String,
    /// X25519 sealing key, hex.
    pub sealing_key: String,
    /// Enrolment time, unix ms.
    pub enrolled_at_ms: i64,
    /// Set once revoked.
    pub revoked_at_ms: Option<i64>,
}

/// A fresh enrolment code.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct EnrolmentCode {
    /// `XXXXX-XXXXX`, shown once.
    pub code: String,
    /// Unusable after this instant, unix ms.
    pub expires_at_ms: i64,
}

/// Normalises a typed code: uppercase, separators dropped, look-alikes mapped (O→0, I/L→1).
fn normalise_code(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(CODE_LEN);
    for c in raw.chars() {
        let c = match c.to_ascii_uppercase() {
            '-' | ' ' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        if !c.is_ascii() || !CODE_ALPHABET.contains(&(c as u8)) || out.len() >= CODE_LEN {
            return None;
        }
        out.push(c);
    }
    (out.len() == CODE_LEN).then_some(out)
}

fn code_hash(normalised: &str) -> String {
    ids::sha256_hex(format!("tradecast/enrolment-code/v1:{normalised}").as_bytes())
}

/// Creates an enrolment code for `user_id`, valid `ttl_s` seconds.
pub async fn create_code(
    db: &Db,
    now_ms: i64,
    ttl_s: u64,
    user_id: &str,
    request_id: &str,
) -> Result<EnrolmentCode, ApiError> {
    let random = ids::random_bytes(CODE_LEN);
    let plain: String = random.iter().map(|b| CODE_ALPHABET[usize::from(b % 32)] as char).collect();
    let expires_at_ms = now_ms + i64::try_from(ttl_s).unwrap_or(600) * 1000;
    let mut tx = db.begin_write().await?;
    sqlx::query(
        "INSERT INTO enrolment_codes (code_hash, user_id, created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4)",
    )
    .bind(code_hash(&plain))
    .bind(user_id)
    .bind(now_ms)
    .bind(expires_at_ms)
    .execute(&mut *tx)
    .await
    .map_err(DbError::from)?;
    let entry = Entry {
        actor: user_id,
        action: "device.code_create",
        subject: user_id,
        detail: serde_json::json!({ "expires_at_ms": expires_at_ms }),
        request_id,
    };
    audit::append(&mut tx, db.backend(), now_ms, &entry).await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(EnrolmentCode { code: format!("{}-{}", &plain[..5], &plain[5..]), expires_at_ms })
}

/// What enrolment returns: the new device and the hub key to pin.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Enrolled {
    /// The device.
    pub device: Device,
    /// The hub's Ed25519 identity key, hex: pin it.
    pub hub_identity_key: String,
    /// The hub's device id (text form).
    pub hub_device_id: String,
    /// Present when the hub's QUIC endpoint has a WebPKI certificate: the DNS name the node
    /// must verify it for (instead of pinning the identity certificate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quic_tls_name: Option<String>,
    /// The deployment's account-fingerprint key, 64 hex digits: the node hashes its EA's
    /// broker server and login under it into its `DeviceKeys` (one key per hub, so two devices
    /// on one trading account sign the same fingerprint).
    pub account_fingerprint_key: String,
}

/// The plan's device limit: an account whose plans in force all cap their devices may hold up to
/// the largest cap of them active; a plan without a cap, or no plan yet, sets none. Refused
/// before the code is used, so the trader revokes a device and enrols with the same code.
async fn device_limit_ok(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    user_id: &str,
    now_ms: i64,
) -> Result<(), ApiError> {
    let limits: Vec<Option<i64>> = sqlx::query_scalar(crate::sql!(
        "SELECT p.device_limit FROM entitlements e JOIN plans p ON p.id = e.plan_id \
         WHERE e.user_id = $1 AND {}",
        crate::entitlements::active_sql(2)
    ))
    .bind(user_id)
    .bind(now_ms)
    .fetch_all(&mut **tx)
    .await
    .map_err(DbError::from)?;
    let Some(cap) =
        limits.iter().copied().collect::<Option<Vec<i64>>>().and_then(|l| l.into_iter().max())
    else {
        return Ok(());
    };
    let active: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM devices WHERE user_id = $1 AND revoked_at_ms IS NULL",
    )
    .bind(user_id)
    .fetch_one(&mut **tx)
    .await
    .map_err(DbError::from)?;
    if active >= cap {
        return Err(ApiError::Conflict(format!(
            "your plan allows {cap} device(s) and {active} are enrolled: revoke one on your account page, then enrol with the same code"
        )));
    }
    Ok(())
}

/// Enrols the node whose self-signed `DeviceKeys` record is `keys_record`, consuming `code`;
/// the answer carries `fingerprint_key` (the deployment's account-fingerprint key).
pub async fn enrol(
    db: &Db,
    now_ms: i64,
    code: &str,
    keys_record: &[u8],
    hub: &tradecast_protocol::Identity,
    fingerprint_key: &[u8; 32],
    request_id: &str,
) -> Result<Enrolled, ApiError> {
    let hub_key = hub.identity_key();
    let code = normalise_code(code).ok_or(ApiError::InvalidEnrolmentCode)?;
    let record = Record::decode(keys_record).map_err(|e| ApiError::InvalidRecord(e.to_string()))?;
    let header = *record.header();
    if header.kind != Kind::DeviceKeys || header.sealed {
        return Err(ApiError::InvalidRecord("expected an unsealed DeviceKeys record".into()));
    }
    let Body::DeviceKeys(keys) =
        record.body().map_err(|e| ApiError::InvalidRecord(e.to_string()))?
    else {
        return Err(ApiError::InvalidRecord("expected a DeviceKeys body".into()));
    };
    // Self-signed: the record's author is the device of the identity key it announces.
    record.verify(&keys.identity).map_err(|e| ApiError::InvalidRecord(e.to_string()))?;
    let device_id = DeviceId::of(&keys.identity);
    let name = keys.label.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(ApiError::Validation("the device label must be 1-64 characters".into()));
    }

    let mut tx = db.begin_write().await?;
    let row = sqlx::query(
        "SELECT user_id, expires_at_ms, used_at_ms FROM enrolment_codes WHERE code_hash = $1",
    )
    .bind(code_hash(&code))
    .fetch_optional(&mut *tx)
    .await
    .map_err(DbError::from)?
    .ok_or(ApiError::InvalidEnrolmentCode)?;
    let user_id: String = row.try_get(0).map_err(DbError::from)?;
    let expires: i64 = row.try_get(1).map_err(DbError::from)?;
    let used: Option<i64> = row.try_get(2).map_err(DbError::from)?;
    if used.is_some() || expires <= now_ms {
        return Err(ApiError::InvalidEnrolmentCode);
    }
    device_limit_ok(&mut tx, &user_id, now_ms).await?;
    let device = Device {
        id: device_id.to_text(),
        user_id: user_id.clone(),
        name: name.to_string(),
        identity_key: hex::encode(keys.identity.to_bytes()),
        sealing_key: hex::encode(keys.sealing.0),
        enrolled_at_ms: now_ms,
        revoked_at_ms: None,
    };
    let inserted = sqlx::query(
        "INSERT INTO devices (id, user_id, name, identity_key, sealing_key, enrolled_at_ms, keys_record, account_fingerprint, account_fingerprint_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&device.id)
    .bind(&device.user_id)
    .bind(&device.name)
    .bind(&device.identity_key)
    .bind(&device.sealing_key)
    .bind(now_ms)
    // Relayed to subscribers before this device's first record in their feeds.
    .bind(record.encode())
    // A node signs its first record before it knows the fingerprint key: normally `None`.
    .bind(keys.account_fingerprint.map(|f| f.to_hex()))
    .bind(keys.account_fingerprint.map(|_| keys.at_ms))
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => {
            return Err(ApiError::Conflict("this device is already enrolled".into()));
        }
        other => other.map_err(DbError::from)?,
    };
    sqlx::query("UPDATE enrolment_codes SET used_at_ms = $1, device_id = $2 WHERE code_hash = $3")
        .bind(now_ms)
        .bind(&device.id)
        .bind(code_hash(&code))
        .execute(&mut *tx)
        .await
        .map_err(DbError::from)?;
    let entry = Entry {
        actor: &user_id,
        action: "device.enrol",
        subject: &device.id,
        detail: serde_json::json!({ "name": device.name }),
        request_id,
    };
    audit::append(&mut tx, db.backend(), now_ms, &entry).await?;
    // The plans the account holds, signed for this device: its feed starts with them.
    crate::features::issue_for_device(&mut tx, hub, &user_id, &device.id, now_ms).await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(Enrolled {
        device,
        hub_identity_key: hex::encode(hub_key.to_bytes()),
        hub_device_id: hub_key.device_id().to_text(),
        quic_tls_name: None,
        account_fingerprint_key: hex::encode(fingerprint_key),
    })
}

const COLUMNS: &str = "id, user_id, name, identity_key, sealing_key, enrolled_at_ms, revoked_at_ms";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Device, DbError> {
    Ok(Device {
        id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        name: row.try_get(2)?,
        identity_key: row.try_get(3)?,
        sealing_key: row.try_get(4)?,
        enrolled_at_ms: row.try_get(5)?,
        revoked_at_ms: row.try_get(6)?,
    })
}

/// Devices of `user_id` (or every device when `None`), newest first.
pub async fn list(db: &Db, user_id: Option<&str>) -> Result<Vec<Device>, DbError> {
    let rows = sqlx::query(crate::sql!(
        "SELECT {COLUMNS} FROM devices WHERE ($1 = '' OR user_id = $1) ORDER BY enrolled_at_ms DESC, id"
    ))
    .bind(user_id.unwrap_or(""))
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// The device with this id.
pub async fn by_id(db: &Db, id: &str) -> Result<Option<Device>, DbError> {
    let row = sqlx::query(crate::sql!("SELECT {COLUMNS} FROM devices WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// The device `id` if it is enrolled and not revoked, with its identity key; otherwise
/// `device-refused`.
pub async fn active_device(db: &Db, id: &DeviceId) -> Result<(Device, IdentityKey), ApiError> {
    let device = by_id(db, &id.to_text()).await?.ok_or_else(|| {
        ApiError::DeviceRefused(format!("device {} is not enrolled", id.fmt_short()))
    })?;
    if device.revoked_at_ms.is_some() {
        return Err(ApiError::DeviceRefused(format!("device {} is revoked", id.fmt_short())));
    }
    let key = IdentityKey::from_hex(&device.identity_key)
        .map_err(|e| DbError::Corrupt(format!("device {} key: {e}", device.id)))?;
    Ok((device, key))
}

/// Loads `id` for a change by `actor` (its owner, or an admin when `is_admin`).
async fn owned(db: &Db, id: &str, actor: &str, is_admin: bool) -> Result<Device, ApiError> {
    let device =
        by_id(db, id).await?.ok_or_else(|| ApiError::NotFound(format!("no device {id}")))?;
    if device.user_id != actor && !is_admin {
        // Not revealing other accounts' devices: same answer as a missing one.
        return Err(ApiError::NotFound(format!("no device {id}")));
    }
    Ok(device)
}

/// Renames a device.
pub async fn rename(
    db: &Db,
    now_ms: i64,
    id: &str,
    name: &str,
    actor: &str,
    is_admin: bool,
    request_id: &str,
) -> Result<Device, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(ApiError::Validation("`name` must be 1-64 characters".into()));
    }
    let device = owned(db, id, actor, is_admin).await?;
    let mut tx = db.begin_write().await?;
    sqlx::query("UPDATE devices SET name = $1 WHERE id = $2")
        .bind(name)
        .bind(&device.id)
        .execute(&mut *tx)
        .await
        .map_err(DbError::from)?;
    let entry = Entry {
        actor,
        action: "device.rename",
        subject: &device.id,
        detail: serde_json::json!({ "from": device.name, "to": name }),
        request_id,
    };
    audit::append(&mut tx, db.backend(), now_ms, &entry).await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(Device { name: name.to_string(), ..device })
}

/// Revokes a device (idempotent: revoking again keeps the first time).
pub async fn revoke(
    db: &Db,
    now_ms: i64,
    id: &str,
    actor: &str,
    is_admin: bool,
    request_id: &str,
) -> Result<Device, ApiError> {
    let device = owned(db, id, actor, is_admin).await?;
    if device.revoked_at_ms.is_some() {
        return Ok(device);
    }
    let mut tx = db.begin_write().await?;
    sqlx::query("UPDATE devices SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL")
        .bind(now_ms)
        .bind(&device.id)
        .execute(&mut *tx)
        .await
        .map_err(DbError::from)?;
    // Nothing more is delivered to a revoked device.
    sqlx::query("DELETE FROM fanout_queue WHERE device_id = $1 AND delivered_at_ms IS NULL")
        .bind(&device.id)
        .execute(&mut *tx)
        .await
        .map_err(DbError::from)?;
    let entry = Entry {
        actor,
        action: "device.revoke",
        subject: &device.id,
        detail: serde_json::json!({}),
        request_id,
    };
    audit::append(&mut tx, db.backend(), now_ms, &entry).await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(Device { revoked_at_ms: Some(now_ms), ..device })
}

/// What the sync commit did with a `DeviceKeys` record of a device's own DEVICE stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FingerprintUpdate {
    /// Its keys are the enrolled ones and it carries a fingerprint: now on the device's row.
    Stored,
    /// Its keys are the enrolled ones, without a fingerprint (the enrolment record itself, or
    /// a node that knows no fingerprint key yet): nothing changes.
    NoFingerprint,
    /// Its identity or sealing key is not the device's enrolled one (or the device is not
    /// enrolled): kept in the chain, never used.
    ForeignKeys,
}

/// Keeps the account fingerprint of `keys`, a `DeviceKeys` record that `author` signed on its
/// DEVICE stream, on the device's row, when its identity and sealing keys are the ones the
/// device enrolled with; called by the sync commit in its transaction, in chain order, so the
/// row holds the fingerprint of the latest such record. `account_fingerprint_at_ms` is the
/// record's `at_ms`: when the node saw that account (its clock).
pub async fn record_account_fingerprint(
    tx: &mut crate::feed::Tx,
    author: &DeviceId,
    keys: &DeviceKeys,
) -> Result<FingerprintUpdate, DbError> {
    let enrolled = sqlx::query("SELECT identity_key, sealing_key FROM devices WHERE id = $1")
        .bind(author.to_text())
        .fetch_optional(&mut **tx)
        .await?;
    let Some(row) = enrolled else { return Ok(FingerprintUpdate::ForeignKeys) };
    let identity: String = row.try_get(0)?;
    let sealing: String = row.try_get(1)?;
    if identity != hex::encode(keys.identity.to_bytes()) || sealing != hex::encode(keys.sealing.0) {
        return Ok(FingerprintUpdate::ForeignKeys);
    }
    let Some(fingerprint) = keys.account_fingerprint else {
        return Ok(FingerprintUpdate::NoFingerprint);
    };
    sqlx::query(
        "UPDATE devices SET account_fingerprint = $1, account_fingerprint_at_ms = $2 WHERE id = $3",
    )
    .bind(fingerprint.to_hex())
    .bind(keys.at_ms)
    .bind(author.to_text())
    .execute(&mut **tx)
    .await?;
    Ok(FingerprintUpdate::Stored)
}

/// The account fingerprint (64 hex digits) on device `id`'s row and when its node signed it,
/// if it has one.
pub async fn account_fingerprint(db: &Db, id: &str) -> Result<Option<(String, i64)>, DbError> {
    let row = sqlx::query(
        "SELECT account_fingerprint, account_fingerprint_at_ms FROM devices WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let fingerprint: Option<String> = row.try_get(0)?;
    let at_ms: Option<i64> = row.try_get(1)?;
    Ok(fingerprint.map(|f| (f, at_ms.unwrap_or(0))))
}

/// Whether hub accounts (user ids) `account_a` and `account_b` trade one MT5 account: some
/// unrevoked device of each carries the same account fingerprint (the latest its node signed).
/// For `account_a == account_b` it says whether the account has a fingerprinted device.
pub async fn accounts_share_trading_account(
    tx: &mut crate::feed::Tx,
    account_a: &str,
    account_b: &str,
) -> Result<bool, DbError> {
    let shared: Option<String> = sqlx::query_scalar(
        "SELECT a.id FROM devices a JOIN devices b ON b.account_fingerprint = a.account_fingerprint \
         WHERE a.user_id = $1 AND b.user_id = $2 AND a.account_fingerprint IS NOT NULL \
         AND a.revoked_at_ms IS NULL AND b.revoked_at_ms IS NULL LIMIT 1",
    )
    .bind(account_a)
    .bind(account_b)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(shared.is_some())
}

/// Figures for `/metrics`.
#[derive(Debug, Clone, Copy)]
pub struct Gauges {
    /// Enrolled, unrevoked devices.
    pub devices_active: i64,
    /// Undelivered fan-out entries.
    pub fanout_queued: i64,
    /// Age of the oldest undelivered entry, ms.
    pub fanout_lag_ms: i64,
}

/// Reads the gauges.
pub async fn gauges(db: &Db, now_ms: i64) -> Result<Gauges, DbError> {
    let devices_active: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE revoked_at_ms IS NULL")
            .fetch_one(db.pool())
            .await?;
    let row = sqlx::query(
        "SELECT COUNT(*), MIN(enqueued_at_ms) FROM fanout_queue WHERE delivered_at_ms IS NULL",
    )
    .fetch_one(db.pool())
    .await?;
    let fanout_queued: i64 = row.try_get(0)?;
    let oldest: Option<i64> = row.try_get(1)?;
    Ok(Gauges {
        devices_active,
        fanout_queued,
        fanout_lag_ms: oldest.map(|o| (now_ms - o).max(0)).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_normalise() {
        let check = |raw: &str, expect: Option<&str>| {
            assert_eq!(normalise_code(raw).as_deref(), expect, "{raw}")
        };
        check("ABCDE-12345", Some("ABCDE12345"));
        check("abcde 12345", Some("ABCDE12345"));
        check("oooooiiiii", Some("0000011111"));
        check("ABCDE-1234", None);
        check("ABCDE-123456", None);
        check("ABCDU-12345", None);
        check("ABCDÉ-12345", None);
        check("", None);
    }
}

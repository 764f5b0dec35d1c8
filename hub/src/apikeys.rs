//! Provider API keys for the signals API: a key id and a secret shown once. The hub must keep
//! the secret to verify HMACs, so it is sealed at rest with XChaCha20-Poly1305 under the
//! `api_key_wrapping_key` secret (AAD = the key id, so a sealed value cannot be moved to
//! another key). A database dump alone does not reveal any secret.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::Serialize;
use sqlx::Row;
use zeroize::Zeroizing;

use crate::audit::{self, Entry};
use crate::db::{Db, DbError};
use crate::error::ApiError;
use crate::ids;

/// An API key as listed (never with its secret).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiKey {
    /// Key id (`X-Tradecast-Key`).
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// Label.
    pub label: String,
    /// Creation, unix ms.
    pub created_at_ms: i64,
    /// Set once revoked.
    pub revoked_at_ms: Option<i64>,
    /// Last successful use, unix ms.
    pub last_used_at_ms: Option<i64>,
}

/// A new key with its secret, returned once.
#[derive(Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct CreatedKey {
    /// Key id.
    pub id: String,
    /// The HMAC secret: the ASCII bytes of this string are the key. Shown once.
    pub secret: String,
    /// Label.
    pub label: String,
}

impl std::fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKey").field("id", &self.id).field("secret", &"[redacted]").finish()
    }
}

fn seal(wrapping: &[u8; 32], key_id: &str, secret: &str) -> Result<String, ApiError> {
    let cipher = XChaCha20Poly1305::new(&(*wrapping).into());
    let nonce_bytes = ids::random_bytes(24);
    let nonce = XNonce::try_from(nonce_bytes.as_slice())
        .map_err(|_| ApiError::Internal("nonce length".into()))?;
    let ct = cipher
        .encrypt(&nonce, Payload { msg: secret.as_bytes(), aad: key_id.as_bytes() })
        .map_err(|_| ApiError::Internal("sealing failed".into()))?;
    Ok(format!("v1:{}:{}", hex::encode(&nonce_bytes), hex::encode(ct)))
}

fn unseal(wrapping: &[u8; 32], key_id: &str, sealed: &str) -> Result<Zeroizing<Vec<u8>>, DbError> {
    let corrupt = || DbError::Corrupt(format!("api key {key_id}: sealed secret does not open"));
    let mut parts = sealed.splitn(3, ':');
    let (Some("v1"), Some(n), Some(c)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(corrupt());
    };
    let nonce_bytes = hex::decode(n).map_err(|_| corrupt())?;
    let nonce = XNonce::try_from(nonce_bytes.as_slice()).map_err(|_| corrupt())?;
    let ct = hex::decode(c).map_err(|_| corrupt())?;
    let cipher = XChaCha20Poly1305::new(&(*wrapping).into());
    cipher
        .decrypt(&nonce, Payload { msg: &ct, aad: key_id.as_bytes() })
        .map(Zeroizing::new)
        .map_err(|_| corrupt())
}

/// Creates a key for `user_id`.
pub async fn create(
    db: &Db,
    wrapping: &[u8; 32],
    now_ms: i64,
    user_id: &str,
    label: &str,
    request_id: &str,
) -> Result<CreatedKey, ApiError> {
    let label = label.trim();
    if label.chars().count() > 64 {
        return Err(ApiError::Validation("`label` must be at most 64 characters".into()));
    }
    let id = format!("tck_{}", ids::random_hex(12));
    let secret = ids::random_hex(32);
    let sealed = seal(wrapping, &id, &secret)?;
    let mut tx = db.begin_write().await?;
    sqlx::query("INSERT INTO api_keys (id, user_id, label, secret_sealed, created_at_ms) VALUES ($1, $2, $3, $4, $5)")
        .bind(&id)
        .bind(user_id)
        .bind(label)
        .bind(sealed)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(DbError::from)?;
    audit::append(
        &mut tx,
        db.backend(),
        now_ms,
        &Entry {
            actor: user_id,
            action: "apikey.create",
            subject: &id,
            detail: serde_json::json!({ "label": label }),
            request_id,
        },
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(CreatedKey { id, secret, label: label.to_string() })
}

/// Keys of `user_id`.
pub async fn list(db: &Db, user_id: &str) -> Result<Vec<ApiKey>, DbError> {
    let rows = sqlx::query(
        "SELECT id, user_id, label, created_at_ms, revoked_at_ms, last_used_at_ms FROM api_keys \
         WHERE user_id = $1 ORDER BY created_at_ms, id",
    )
    .bind(user_id)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ApiKey {
                id: r.try_get(0)?,
                user_id: r.try_get(1)?,
                label: r.try_get(2)?,
                created_at_ms: r.try_get(3)?,
                revoked_at_ms: r.try_get(4)?,
                last_used_at_ms: r.try_get(5)?,
            })
        })
        .collect()
}

/// Revokes a key of `user_id`.
pub async fn revoke(
    db: &Db,
    now_ms: i64,
    user_id: &str,
    id: &str,
    request_id: &str,
) -> Result<(), ApiError> {
    let mut tx = db.begin_write().await?;
    let n = sqlx::query("UPDATE api_keys SET revoked_at_ms = $1 WHERE id = $2 AND user_id = $3 AND revoked_at_ms IS NULL")
        .bind(now_ms)
        .bind(id)
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(DbError::from)?
        .rows_affected();
    if n == 0 {
        return Err(ApiError::NotFound(format!("no active key {id}")));
    }
    audit::append(
        &mut tx,
        db.backend(),
        now_ms,
        &Entry {
            actor: user_id,
            action: "apikey.revoke",
            subject: id,
            detail: serde_json::json!({}),
            request_id,
        },
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(())
}

/// An active key's owner and secret, for HMAC verification; `None` when unknown or revoked.
pub async fn secret_of(
    db: &Db,
    wrapping: &[u8; 32],
    id: &str,
) -> Result<Option<(String, Zeroizing<Vec<u8>>)>, DbError> {
    if id.len() > 64 {
        return Ok(None);
    }
    let row = sqlx::query(
        "SELECT user_id, secret_sealed FROM api_keys WHERE id = $1 AND revoked_at_ms IS NULL",
    )
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let user: String = row.try_get(0)?;
    let sealed: String = row.try_get(1)?;
    Ok(Some((user, unseal(wrapping, id, &sealed)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_binds_the_key_id() {
        let k = [7u8; 32];
        let sealed = seal(&k, "tck_a", "s3cret").unwrap();
        assert!(!sealed.contains("s3cret"));
        assert_eq!(&unseal(&k, "tck_a", &sealed).unwrap()[..], b"s3cret");
        assert!(unseal(&k, "tck_b", &sealed).is_err());
        assert!(unseal(&[8u8; 32], "tck_a", &sealed).is_err());
        assert!(unseal(&k, "tck_a", "v1:zz:zz").is_err());
    }
}

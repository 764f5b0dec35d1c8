//! Accounts and roles: users with Argon2id password hashes, the login rule with its brute-force
//! throttle (growing delays, then a lock, per email whether or not it exists), and refresh
//! tokens (stored as SHA-256 hashes, rotated on every use, a reused one revokes its family).
//!
//! Access tokens are in `tokens`; HTTP handlers in `api::auth` and `api::users`.

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use subtle::ConstantTimeEq;

use crate::audit::{self, Entry};
use crate::config::AuthConfig;
use crate::db::{Db, DbError, is_unique_violation};
use crate::error::ApiError;
use crate::ids;

/// What an account may do. Owners and admins administer; providers publish signals;
/// subscribers receive them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs the hub; the only role that can make admins and owners.
    Owner,
    /// Manages users, plans and entitlements.
    Admin,
    /// Publishes signals.
    Provider,
    /// Receives signals on enrolled devices.
    Subscriber,
}

impl Role {
    /// The name stored in SQL and carried in tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Provider => "provider",
            Role::Subscriber => "subscriber",
        }
    }

    /// Owner or admin.
    pub fn is_admin(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }
}

impl FromStr for Role {
    type Err = ApiError;
    fn from_str(s: &str) -> Result<Self, ApiError> {
        match s {
            "owner" => Ok(Role::Owner),
            "admin" => Ok(Role::Admin),
            "provider" => Ok(Role::Provider),
            "subscriber" => Ok(Role::Subscriber),
            other => Err(ApiError::Validation(format!("unknown role `{other}`"))),
        }
    }
}

/// A stored account (never with its hash).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct User {
    /// Account id.
    pub id: String,
    /// Login email, lowercase.
    pub email: String,
    /// Role.
    pub role: Role,
    /// Name shown to people.
    pub display_name: String,
    /// Creation time, unix ms.
    pub created_at_ms: i64,
    /// Set when the account is disabled.
    pub disabled_at_ms: Option<i64>,
}

/// Shortest accepted password, in characters.
pub const PASSWORD_MIN_CHARS: usize = 12;
/// Longest accepted password, in bytes (bounds the hashing work an attacker can cause).
pub const PASSWORD_MAX_BYTES: usize = 1024;

/// Normalises and checks an email address.
pub fn parse_email(raw: &str) -> Result<String, ApiError> {
    let email = raw.trim().to_lowercase();
    let ok = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.matches('@').count() == 1;
    if ok { Ok(email) } else { Err(ApiError::Validation("`email` is not a valid address".into())) }
}

/// Checks a new password's length.
pub fn check_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < PASSWORD_MIN_CHARS {
        return Err(ApiError::Validation(format!(
            "`password` must have at least {PASSWORD_MIN_CHARS} characters"
        )));
    }
    if password.len() > PASSWORD_MAX_BYTES {
        return Err(ApiError::Validation(format!(
            "`password` must be at most {PASSWORD_MAX_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Concurrent Argon2 computations are bounded (one per CPU) and their memory (19 MiB each at
/// the default cost) is reused: without this, glibc keeps every freed 19 MiB area and a busy
/// hub's RSS grows by that much per concurrent login.
struct HashPool {
    permits: tokio::sync::Semaphore,
    buffers: std::sync::Mutex<Vec<Vec<argon2::Block>>>,
}

fn pool() -> &'static HashPool {
    static POOL: std::sync::OnceLock<HashPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| HashPool {
        permits: tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        ),
        buffers: std::sync::Mutex::new(Vec::new()),
    })
}

/// Runs Argon2id (`params`) over `password` and `salt` on a blocking thread with pooled memory.
async fn argon2id(
    params: argon2::Params,
    password: &str,
    salt: Vec<u8>,
    out_len: usize,
) -> Result<Vec<u8>, ApiError> {
    let pool = pool();
    let _permit = pool.permits.acquire().await.map_err(ApiError::internal)?;
    // A poisoned lock only means a thread panicked while pushing or popping a buffer.
    let mut blocks =
        pool.buffers.lock().unwrap_or_else(|p| p.into_inner()).pop().unwrap_or_default();
    let password = zeroize::Zeroizing::new(password.to_owned());
    let (blocks, result) = tokio::task::spawn_blocking(move || {
        let n = params.block_count();
        if blocks.len() < n {
            blocks.resize(n, argon2::Block::new());
        }
        let hasher =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = vec![0u8; out_len];
        let r = hasher.hash_password_into_with_memory(
            password.as_bytes(),
            &salt,
            &mut out,
            &mut blocks[..n],
        );
        (blocks, r.map(|()| out))
    })
    .await
    .map_err(ApiError::internal)?;
    pool.buffers.lock().unwrap_or_else(|p| p.into_inner()).push(blocks);
    result.map_err(|e| ApiError::Internal(e.to_string().into()))
}

/// PHC's base64: standard alphabet, no padding.
const PHC_B64: data_encoding::Encoding = data_encoding::BASE64_NOPAD;

/// Argon2id PHC string of `password` (`$argon2id$v=19$m=…,t=…,p=1$salt$hash`).
pub async fn hash_password(cfg: &AuthConfig, password: &str) -> Result<String, ApiError> {
    let params = argon2::Params::new(cfg.argon2_memory_kib, cfg.argon2_iterations, 1, Some(32))
        .map_err(|e| ApiError::Internal(e.to_string().into()))?;
    let salt = ids::random_bytes(16);
    let hash = argon2id(params, password, salt.clone(), 32).await?;
    Ok(format!(
        "$argon2id$v=19$m={},t={},p=1${}${}",
        cfg.argon2_memory_kib,
        cfg.argon2_iterations,
        PHC_B64.encode(&salt),
        PHC_B64.encode(&hash)
    ))
}

/// Parses an Argon2id v19 PHC string into (params, salt, hash).
fn parse_phc(phc: &str) -> Option<(argon2::Params, Vec<u8>, Vec<u8>)> {
    let mut parts = phc.split('$');
    let ("", "argon2id", "v=19", Some(params), Some(salt), Some(hash), None) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let (mut m, mut t, mut p) = (None, None, None);
    for kv in params.split(',') {
        let (k, v) = kv.split_once('=')?;
        let v: u32 = v.parse().ok()?;
        match k {
            "m" => m = Some(v),
            "t" => t = Some(v),
            "p" => p = Some(v),
            _ => return None,
        }
    }
    let salt = PHC_B64.decode(salt.as_bytes()).ok()?;
    let hash = PHC_B64.decode(hash.as_bytes()).ok()?;
    let params = argon2::Params::new(m?, t?, p?, Some(hash.len())).ok()?;
    Some((params, salt, hash))
}

/// Checks `password` against a PHC string (its parameters come from the string itself).
pub async fn verify_password(phc: String, password: &str) -> Result<bool, ApiError> {
    let Some((params, salt, expected)) = parse_phc(&phc) else { return Ok(false) };
    let len = expected.len();
    let got = argon2id(params, password, salt, len).await?;
    Ok(bool::from(got.ct_eq(&expected)))
}

const USER_COLUMNS: &str = "id, email, role, display_name, created_at_ms, disabled_at_ms";

fn user_from_row(row: &sqlx::any::AnyRow) -> Result<User, DbError> {
    let role: String = row.try_get(2)?;
    Ok(User {
        id: row.try_get(0)?,
        email: row.try_get(1)?,
        role: role.parse().map_err(|_| DbError::Corrupt(format!("unknown role {role}")))?,
        display_name: row.try_get(3)?,
        created_at_ms: row.try_get(4)?,
        disabled_at_ms: row.try_get(5)?,
    })
}

/// A new account to create.
#[derive(Debug)]
pub struct NewUser<'a> {
    /// Login email (normalised here).
    pub email: &'a str,
    /// Plain password (checked and hashed here).
    pub password: &'a str,
    /// Role.
    pub role: Role,
    /// Display name.
    pub display_name: &'a str,
}

/// Creates an account and audits it. A duplicate email is a conflict.
pub async fn create_user(
    db: &Db,
    cfg: &AuthConfig,
    now_ms: i64,
    new: &NewUser<'_>,
    actor: &str,
    request_id: &str,
) -> Result<User, ApiError> {
    let email = parse_email(new.email)?;
    check_password(new.password)?;
    let name = new.display_name.trim();
    if name.chars().count() > 100 {
        return Err(ApiError::Validation("`display_name` must be at most 100 characters".into()));
    }
    let hash = hash_password(cfg, new.password).await?;
    let user = User {
        id: ids::new_id(),
        email,
        role: new.role,
        display_name: name.to_string(),
        created_at_ms: now_ms,
        disabled_at_ms: None,
    };
    let mut tx = db.begin_write().await?;
    let inserted = sqlx::query(
        "INSERT INTO users (id, email, password_hash, role, display_name, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&user.id)
    .bind(&user.email)
    .bind(&hash)
    .bind(user.role.as_str())
    .bind(&user.display_name)
    .bind(now_ms)
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => {
            return Err(ApiError::Conflict("an account with this email exists".into()));
        }
        other => other.map_err(DbError::from)?,
    };
    let detail = serde_json::json!({ "email": user.email, "role": user.role.as_str() });
    let entry = Entry { actor, action: "user.create", subject: &user.id, detail, request_id };
    audit::append(&mut tx, db.backend(), now_ms, &entry).await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(user)
}

/// The account with this id.
pub async fn user_by_id(db: &Db, id: &str) -> Result<Option<User>, DbError> {
    let row = sqlx::query(crate::sql!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(user_from_row).transpose()
}

/// Every account, oldest first.
pub async fn list_users(db: &Db, limit: i64, offset: i64) -> Result<Vec<User>, DbError> {
    search_users(db, "", limit, offset).await
}

/// Accounts whose e-mail contains `email_part` (case-insensitive; empty: every account),
/// oldest first: the API's list and the console's search.
pub async fn search_users(
    db: &Db,
    email_part: &str,
    limit: i64,
    offset: i64,
) -> Result<Vec<User>, DbError> {
    // Stored e-mails are lowercase; `\` escapes LIKE's wildcards in what was typed.
    let escaped = email_part
        .trim()
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    let rows = sqlx::query(crate::sql!(
        "SELECT {USER_COLUMNS} FROM users WHERE email LIKE $1 ESCAPE '\\' \
         ORDER BY created_at_ms, id LIMIT $2 OFFSET $3"
    ))
    .bind(format!("%{escaped}%"))
    .bind(limit)
    .bind(offset)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(user_from_row).collect()
}

/// Number of accounts with `role` (the last owner may not be demoted).
pub async fn count_role(db: &Db, role: Role) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = $1 AND disabled_at_ms IS NULL")
        .bind(role.as_str())
        .fetch_one(db.pool())
        .await?)
}

/// Changes a role, enforcing who may grant what, and audits it.
pub async fn change_role(
    db: &Db,
    now_ms: i64,
    actor: &User,
    target_id: &str,
    new_role: Role,
    request_id: &str,
) -> Result<User, ApiError> {
    let target = user_by_id(db, target_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no account {target_id}")))?;
    let touches_admins = target.role.is_admin() || new_role.is_admin();
    if touches_admins && actor.role != Role::Owner {
        return Err(ApiError::Forbidden(
            "only an owner can grant or remove owner and admin roles".into(),
        ));
    }
    if target.role == Role::Owner
        && new_role != Role::Owner
        && count_role(db, Role::Owner).await? <= 1
    {
        return Err(ApiError::Conflict("the last owner cannot be demoted".into()));
    }
    let mut tx = db.begin_write().await?;
    sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
        .bind(new_role.as_str())
        .bind(&target.id)
        .execute(&mut *tx)
        .await
        .map_err(DbError::from)?;
    let detail = serde_json::json!({ "from": target.role.as_str(), "to": new_role.as_str() });
    let entry = Entry {
        actor: &actor.id,
        action: "user.role_change",
        subject: &target.id,
        detail,
        request_id,
    };
    audit::append(&mut tx, db.backend(), now_ms, &entry).await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(User { role: new_role, ..target })
}

/// Disables or re-enables an account (owners and admins; only an owner touches owner and admin
/// accounts, and nobody disables the last owner). Disabling revokes every refresh token.
pub async fn set_disabled(
    db: &Db,
    now_ms: i64,
    actor: &User,
    target_id: &str,
    disabled: bool,
    request_id: &str,
) -> Result<User, ApiError> {
    let target = user_by_id(db, target_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no account {target_id}")))?;
    if target.role.is_admin() && actor.role != Role::Owner {
        return Err(ApiError::Forbidden(
            "only an owner can disable owner and admin accounts".into(),
        ));
    }
    if disabled && target.role == Role::Owner && count_role(db, Role::Owner).await? <= 1 {
        return Err(ApiError::Conflict("the last owner cannot be disabled".into()));
    }
    let at = disabled.then_some(now_ms);
    let mut tx = db.begin_write().await?;
    sqlx::query("UPDATE users SET disabled_at_ms = $1 WHERE id = $2")
        .bind(at)
        .bind(&target.id)
        .execute(&mut *tx)
        .await
        .map_err(DbError::from)?;
    if disabled {
        sqlx::query("UPDATE refresh_tokens SET revoked_at_ms = $1 WHERE user_id = $2 AND revoked_at_ms IS NULL")
            .bind(now_ms)
            .bind(&target.id)
            .execute(&mut *tx)
            .await
            .map_err(DbError::from)?;
    }
    let action = if disabled { "user.disable" } else { "user.enable" };
    let entry = Entry {
        actor: &actor.id,
        action,
        subject: &target.id,
        detail: serde_json::json!({}),
        request_id,
    };
    audit::append(&mut tx, db.backend(), now_ms, &entry).await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(User { disabled_at_ms: at, ..target })
}

/// The hash of a random password under the configured parameters, verified when the email is
/// unknown so that both paths cost the same.
static DUMMY_HASH: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();

async fn dummy_hash(cfg: &AuthConfig) -> Result<String, ApiError> {
    DUMMY_HASH
        .get_or_try_init(|| async { hash_password(cfg, &ids::random_hex(16)).await })
        .await
        .cloned()
}

/// Checks email and password under the brute-force throttle, audits the outcome, and returns
/// the account.
pub async fn login(
    db: &Db,
    cfg: &AuthConfig,
    now_ms: i64,
    email_raw: &str,
    password: &str,
    client: &str,
    request_id: &str,
) -> Result<User, ApiError> {
    // An unparseable email is simply a failed login (no user enumeration through formats).
    let email = email_raw.trim().to_lowercase();
    if email.is_empty() || email.len() > 254 || password.len() > PASSWORD_MAX_BYTES {
        return Err(ApiError::InvalidCredentials);
    }
    let window_ms = i64::try_from(cfg.login_failure_window_s).unwrap_or(i64::MAX / 2) * 1000;
    let failure = sqlx::query(
        "SELECT failures, last_failure_at_ms, locked_until_ms FROM login_failures WHERE email = $1",
    )
    .bind(&email)
    .fetch_optional(db.pool())
    .await
    .map_err(DbError::from)?;
    let (failures, last_ms, locked_until) = match &failure {
        Some(r) => (
            r.try_get::<i64, _>(0).map_err(DbError::from)?,
            r.try_get::<i64, _>(1).map_err(DbError::from)?,
            r.try_get::<Option<i64>, _>(2).map_err(DbError::from)?,
        ),
        None => (0, 0, None),
    };
    if let Some(until) = locked_until.filter(|u| *u > now_ms) {
        return Err(ApiError::AccountLocked { retry_after_s: ceil_s(until - now_ms) });
    }
    let failures =
        if now_ms - last_ms > window_ms || locked_until.is_some() { 0 } else { failures };
    let free = i64::from(cfg.login_free_failures);
    if failures >= free {
        let exp = u32::try_from(failures - free).unwrap_or(u32::MAX).min(20);
        let delay_ms = (i64::try_from(cfg.login_delay_base_s).unwrap_or(1) * 1000)
            .saturating_mul(1i64 << exp)
            .min(i64::try_from(cfg.login_lock_s).unwrap_or(900) * 1000);
        let next = last_ms + delay_ms;
        if now_ms < next {
            return Err(ApiError::LoginThrottled { retry_after_s: ceil_s(next - now_ms) });
        }
    }

    let row = sqlx::query(crate::sql!(
        "SELECT {USER_COLUMNS}, password_hash FROM users WHERE email = $1"
    ))
    .bind(&email)
    .fetch_optional(db.pool())
    .await
    .map_err(DbError::from)?;
    let (user, phc) = match &row {
        Some(r) => (Some(user_from_row(r)?), r.try_get::<String, _>(6).map_err(DbError::from)?),
        None => (None, dummy_hash(cfg).await?),
    };
    let password_ok = verify_password(phc, password).await?;

    let mut tx = db.begin_write().await?;
    let outcome = match user {
        Some(user) if password_ok => {
            sqlx::query("DELETE FROM login_failures WHERE email = $1")
                .bind(&email)
                .execute(&mut *tx)
                .await
                .map_err(DbError::from)?;
            if user.disabled_at_ms.is_some() { Err(ApiError::AccountDisabled) } else { Ok(user) }
        }
        _ => {
            // Counted in SQL, inside the write transaction, so concurrent failures are never
            // lost: a fresh count after the window or after an expired lock, else one more.
            sqlx::query(
                "INSERT INTO login_failures (email, failures, last_failure_at_ms, locked_until_ms) \
                 VALUES ($1, 1, $2, NULL) ON CONFLICT (email) DO UPDATE SET \
                 failures = CASE WHEN login_failures.last_failure_at_ms < $3 \
                   OR (login_failures.locked_until_ms IS NOT NULL AND login_failures.locked_until_ms <= $2) \
                   THEN 1 ELSE login_failures.failures + 1 END, \
                 locked_until_ms = CASE WHEN login_failures.locked_until_ms <= $2 THEN NULL \
                   ELSE login_failures.locked_until_ms END, \
                 last_failure_at_ms = $2",
            )
            .bind(&email)
            .bind(now_ms)
            .bind(now_ms - window_ms)
            .execute(&mut *tx)
            .await
            .map_err(DbError::from)?;
            let until = now_ms + i64::try_from(cfg.login_lock_s).unwrap_or(900) * 1000;
            let locked = sqlx::query(
                "UPDATE login_failures SET locked_until_ms = $1 \
                 WHERE email = $2 AND failures >= $3 AND locked_until_ms IS NULL",
            )
            .bind(until)
            .bind(&email)
            .bind(i64::from(cfg.login_lock_failures))
            .execute(&mut *tx)
            .await
            .map_err(DbError::from)?
            .rows_affected();
            if locked > 0 {
                tracing::warn!(target: "tradecast_hub::lockout", "login locked after repeated failures");
            }
            Err(ApiError::InvalidCredentials)
        }
    };
    let hashed_email = ids::sha256_hex(email.as_bytes())[..16].to_string();
    let (actor, action, subject) = match &outcome {
        Ok(u) => (u.id.clone(), "auth.login", u.id.clone()),
        Err(ApiError::AccountDisabled) => {
            ("anonymous".to_string(), "auth.login_disabled", hashed_email)
        }
        Err(_) => ("anonymous".to_string(), "auth.login_failed", hashed_email),
    };
    let detail = serde_json::json!({ "client": client });
    let entry = Entry { actor: &actor, action, subject: &subject, detail, request_id };
    audit::append(&mut tx, db.backend(), now_ms, &entry).await?;
    tx.commit().await.map_err(DbError::from)?;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> AuthConfig {
        AuthConfig { argon2_memory_kib: 64, argon2_iterations: 1, ..AuthConfig::default() }
    }

    #[tokio::test]
    async fn password_hashes_verify_and_interoperate() {
        let phc = hash_password(&cfg(), "a long password!").await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        assert!(verify_password(phc.clone(), "a long password!").await.unwrap());
        assert!(!verify_password(phc.clone(), "a long password?").await.unwrap());
        // A hash made by the argon2 crate's own PHC hasher verifies here, and ours there.
        use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
        let params = argon2::Params::new(64, 1, 1, None).unwrap();
        let theirs =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let other = theirs.hash_password(b"a long password!").unwrap().to_string();
        assert!(verify_password(other, "a long password!").await.unwrap());
        let parsed = PasswordHash::new(&phc).unwrap();
        assert!(argon2::Argon2::default().verify_password(b"a long password!", &parsed).is_ok());
        for bad in [
            "",
            "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
            "$argon2id$v=19$m=64$x$y",
            "$argon2id$v=19$m=64,t=1,p=1,q=2$c2FsdHNhbHQ$aGFzaA",
        ] {
            assert!(!verify_password(bad.into(), "x").await.unwrap(), "{bad}");
        }
    }
}

fn ceil_s(ms: i64) -> u64 {
    u64::try_from((ms + 999) / 1000).unwrap_or(1).max(1)
}

/// A refresh token as handed to the client once: `<id>.<secret>`.
#[derive(Debug)]
pub struct IssuedRefresh {
    /// The token string.
    pub token: String,
    /// When it expires, unix ms.
    pub expires_at_ms: i64,
}

/// Creates a refresh token in `family` (a new family at login).
pub async fn issue_refresh(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    cfg: &AuthConfig,
    now_ms: i64,
    user_id: &str,
    family_id: &str,
) -> Result<IssuedRefresh, DbError> {
    let id = ids::new_id();
    let secret = ids::random_hex(32);
    let expires_at_ms =
        now_ms + i64::try_from(cfg.refresh_token_ttl_s).unwrap_or(i64::MAX / 4000) * 1000;
    sqlx::query(
        "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, created_at_ms, expires_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(user_id)
    .bind(family_id)
    .bind(ids::sha256_hex(secret.as_bytes()))
    .bind(now_ms)
    .bind(expires_at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(IssuedRefresh { token: format!("{id}.{secret}"), expires_at_ms })
}

/// Consumes a refresh token and issues its successor in the same family. A token presented a
/// second time revokes its whole family (it was stolen or replayed) and is refused.
pub async fn rotate_refresh(
    db: &Db,
    cfg: &AuthConfig,
    now_ms: i64,
    token: &str,
    request_id: &str,
) -> Result<(User, IssuedRefresh), ApiError> {
    let (id, secret) = token.split_once('.').ok_or(ApiError::InvalidRefreshToken)?;
    if id.len() > 64 || secret.len() > 128 {
        return Err(ApiError::InvalidRefreshToken);
    }
    let mut tx = db.begin_write().await?;
    let row = sqlx::query(
        "SELECT user_id, family_id, token_hash, expires_at_ms, used_at_ms, revoked_at_ms \
         FROM refresh_tokens WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(DbError::from)?
    .ok_or(ApiError::InvalidRefreshToken)?;
    let get_s = |i| row.try_get::<String, _>(i).map_err(DbError::from);
    let get_o = |i| row.try_get::<Option<i64>, _>(i).map_err(DbError::from);
    let (user_id, family_id, hash) = (get_s(0)?, get_s(1)?, get_s(2)?);
    let expires: i64 = row.try_get(3).map_err(DbError::from)?;
    let (used, revoked) = (get_o(4)?, get_o(5)?);
    let presented = ids::sha256_hex(secret.as_bytes());
    if !bool::from(presented.as_bytes().ct_eq(hash.as_bytes())) {
        return Err(ApiError::InvalidRefreshToken);
    }
    if revoked.is_some() || expires <= now_ms {
        return Err(ApiError::InvalidRefreshToken);
    }
    if used.is_some() {
        revoke_family(&mut tx, now_ms, &family_id).await?;
        let entry = Entry {
            actor: &user_id,
            action: "auth.refresh_reuse",
            subject: &family_id,
            detail: serde_json::json!({ "token_id": id }),
            request_id,
        };
        audit::append(&mut tx, db.backend(), now_ms, &entry).await?;
        tx.commit().await.map_err(DbError::from)?;
        tracing::warn!(target: "tradecast_hub::security", "refresh token reused: family revoked");
        return Err(ApiError::InvalidRefreshToken);
    }
    let user = {
        let r = sqlx::query(crate::sql!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(&user_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(DbError::from)?;
        user_from_row(&r)?
    };
    if user.disabled_at_ms.is_some() {
        return Err(ApiError::AccountDisabled);
    }
    sqlx::query("UPDATE refresh_tokens SET used_at_ms = $1 WHERE id = $2")
        .bind(now_ms)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(DbError::from)?;
    let next = issue_refresh(&mut tx, cfg, now_ms, &user.id, &family_id).await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok((user, next))
}

async fn revoke_family(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    now_ms: i64,
    family_id: &str,
) -> Result<(), DbError> {
    sqlx::query("UPDATE refresh_tokens SET revoked_at_ms = $1 WHERE family_id = $2 AND revoked_at_ms IS NULL")
        .bind(now_ms)
        .bind(family_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Revokes the family of `token` (logout). Unknown tokens are ignored: logout is idempotent.
pub async fn revoke_refresh(
    db: &Db,
    now_ms: i64,
    user_id: &str,
    token: &str,
    request_id: &str,
) -> Result<(), ApiError> {
    let Some((id, secret)) = token.split_once('.') else { return Ok(()) };
    let mut tx = db.begin_write().await?;
    let row = sqlx::query(
        "SELECT family_id, token_hash FROM refresh_tokens WHERE id = $1 AND user_id = $2",
    )
    .bind(id)
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(DbError::from)?;
    if let Some(row) = row {
        let family: String = row.try_get(0).map_err(DbError::from)?;
        let hash: String = row.try_get(1).map_err(DbError::from)?;
        if bool::from(ids::sha256_hex(secret.as_bytes()).as_bytes().ct_eq(hash.as_bytes())) {
            revoke_family(&mut tx, now_ms, &family).await?;
            let entry = Entry {
                actor: user_id,
                action: "auth.logout",
                subject: &family,
                detail: serde_json::json!({}),
                request_id,
            };
            audit::append(&mut tx, db.backend(), now_ms, &entry).await?;
        }
    }
    tx.commit().await.map_err(DbError::from)?;
    Ok(())
}

//! Entitlements: which accounts may receive a provider's signals, and the plan features they
//! hold, as **append-only intervals**.
//!
//! An entitlement is the interval `[starts_at_ms, end)`, `end` being the earlier of
//! `expires_at_ms` (its scheduled end, open when absent) and `revoked_at_ms` (when it was ended
//! early). Rows are never deleted and an end is only ever set to a moment at or after *now*
//! ([`end`] clamps it): "was this account entitled at instant T?" keeps one answer forever, so
//! fan-out, billing and a refund agree on which signals a device had the right to receive — and a
//! refund can never withhold the `Close` of a signal a device already holds. A renewal is a new
//! interval ([`grant`] with `starts_at_ms` at the old end), never an edit of an old one.
//!
//! Every grant and every end is also a change event in `entitlement_events` (written in the
//! same transaction) and, after the commit, on an in-process broadcast ([`Changes`]): what the
//! in-memory entitlement registry, the FeatureGrant issuer and the other hub instances follow.
//!
//! Billing calls [`grant`] and [`end`] with its own [`Source`] and the payment system's id
//! (`external_ref`); the admin API and the console call them with [`Source::Admin`].

use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc};

use crate::audit::{self, Entry};
use crate::db::{Db, DbError};
use crate::error::ApiError;
use crate::ids;
use crate::state::AppState;

/// Who granted an entitlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// An admin, through the API or the console.
    Admin,
    /// A Stripe subscription (`external_ref` = the subscription id).
    Stripe,
    /// A Telegram Stars payment (`external_ref` = the charge id).
    TelegramStars,
    /// A free trial.
    Trial,
}

impl Source {
    /// Stable text for SQL and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Admin => "admin",
            Source::Stripe => "stripe",
            Source::TelegramStars => "telegram_stars",
            Source::Trial => "trial",
        }
    }

    /// Parses [`Source::as_str`]'s text.
    pub fn parse(text: &str) -> Option<Source> {
        [Source::Admin, Source::Stripe, Source::TelegramStars, Source::Trial]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// Why an entitlement ended before its scheduled end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// An admin revoked it.
    Revoked,
    /// The subscriber cancelled.
    Cancelled,
    /// The payment was refunded.
    Refunded,
    /// Renewal failed and the grace period ran out.
    PaymentFailed,
    /// The payment was disputed.
    Chargeback,
}

impl EndReason {
    /// Stable text for SQL and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Revoked => "revoked",
            EndReason::Cancelled => "cancelled",
            EndReason::Refunded => "refunded",
            EndReason::PaymentFailed => "payment_failed",
            EndReason::Chargeback => "chargeback",
        }
    }

    /// Parses [`EndReason::as_str`]'s text.
    pub fn parse(text: &str) -> Option<EndReason> {
        [
            EndReason::Revoked,
            EndReason::Cancelled,
            EndReason::Refunded,
            EndReason::PaymentFailed,
            EndReason::Chargeback,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// An account's entitlement to a plan: the interval `[starts_at_ms, end)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Entitlement {
    /// Entitlement id.
    pub id: String,
    /// Entitled account.
    pub user_id: String,
    /// Plan.
    pub plan_id: String,
    /// The account (admin) or system that granted it.
    pub granted_by: String,
    /// Valid from, unix ms.
    pub starts_at_ms: i64,
    /// Scheduled end (open-ended when absent), unix ms.
    pub expires_at_ms: Option<i64>,
    /// When it was ended early (set once, never earlier than the moment it was set), unix ms.
    pub revoked_at_ms: Option<i64>,
    /// Who granted it.
    pub source: Source,
    /// The payment system's id for it (Stripe subscription, Stars charge), if any.
    pub external_ref: Option<String>,
    /// Why it ended early, if it did.
    pub end_reason: Option<EndReason>,
}

impl Entitlement {
    /// The end of the interval (exclusive), `None` while open-ended.
    pub fn ends_at_ms(&self) -> Option<i64> {
        interval_end(self.expires_at_ms, self.revoked_at_ms)
    }

    /// Whether it is in force at `at_ms`.
    pub fn active_at(&self, at_ms: i64) -> bool {
        self.starts_at_ms <= at_ms && self.ends_at_ms().is_none_or(|end| end > at_ms)
    }
}

/// An interval's end (exclusive) from its scheduled end and its early end, `None` while
/// open-ended: the earlier of the two.
pub fn interval_end(expires_at_ms: Option<i64>, revoked_at_ms: Option<i64>) -> Option<i64> {
    match (expires_at_ms, revoked_at_ms) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A grant request from the admin API or the console.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Account to entitle.
    pub user_id: String,
    /// Plan.
    pub plan_id: String,
    /// Until when (open-ended when absent), unix ms.
    #[serde(default)]
    pub expires_at_ms: Option<i64>,
}

/// Everything [`grant`] needs (billing fills `source`, `external_ref` and `starts_at_ms`).
#[derive(Debug, Clone)]
pub struct NewEntitlement<'a> {
    /// Account to entitle.
    pub user_id: &'a str,
    /// Plan (not archived).
    pub plan_id: &'a str,
    /// Who grants it.
    pub source: Source,
    /// The payment system's id, if any.
    pub external_ref: Option<&'a str>,
    /// Start; `None` or a past instant means now (an interval never starts in the past).
    pub starts_at_ms: Option<i64>,
    /// Scheduled end; must be after the start.
    pub expires_at_ms: Option<i64>,
}

/// What changed, as broadcast after the commit and stored in `entitlement_events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Position in `entitlement_events`.
    pub seq: i64,
    /// The entitlement.
    pub entitlement_id: String,
    /// Its account.
    pub user_id: String,
    /// Its plan.
    pub plan_id: String,
    /// The provider whose signals the plan gives.
    pub provider_user_id: String,
    /// Granted or ended.
    pub kind: ChangeKind,
    /// The interval's start.
    pub starts_at_ms: i64,
    /// The interval's end after this change (`None`: open-ended).
    pub ends_at_ms: Option<i64>,
    /// When the change was committed.
    pub at_ms: i64,
}

/// The kind of a [`Change`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// A new interval.
    Granted,
    /// An interval's end moved to now (or a later instant).
    Ended,
}

impl ChangeKind {
    fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Granted => "granted",
            ChangeKind::Ended => "ended",
        }
    }
}

/// The in-process stream of committed [`Change`]s. A receiver that lags re-reads
/// [`events_since`] from the last `seq` it saw: the table is the source of truth.
///
/// Changes committed by this instance are also queued (by `seq`) for the cluster bus, which
/// tells the other instances; they re-read the table and re-broadcast ([`Changes::publish_remote`]).
#[derive(Debug, Clone)]
pub struct Changes {
    all: broadcast::Sender<Change>,
    local: mpsc::UnboundedSender<i64>,
    local_rx: Arc<Mutex<Option<mpsc::UnboundedReceiver<i64>>>>,
}

impl Default for Changes {
    fn default() -> Self {
        let (local, rx) = mpsc::unbounded_channel();
        Changes { all: broadcast::channel(1024).0, local, local_rx: Arc::new(Mutex::new(Some(rx))) }
    }
}

impl Changes {
    /// A receiver of the changes committed from now on (by any instance).
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.all.subscribe()
    }

    /// A change committed here.
    pub(crate) fn publish(&self, change: Change) {
        // No receiver is not an error: the events table keeps every change.
        let _ = self.local.send(change.seq);
        let _ = self.all.send(change);
    }

    /// A change another instance committed (read back from the events table).
    pub fn publish_remote(&self, change: Change) {
        let _ = self.all.send(change);
    }

    /// The `seq`s of the changes committed here, for the cluster bus (once).
    pub fn take_local(&self) -> Option<mpsc::UnboundedReceiver<i64>> {
        self.local_rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }
}

const ENT_COLUMNS: &str = "id, user_id, plan_id, granted_by, starts_at_ms, expires_at_ms, \
     revoked_at_ms, source, external_ref, end_reason";

fn ent_from_row(r: &sqlx::any::AnyRow) -> Result<Entitlement, DbError> {
    let source: String = r.try_get(7)?;
    let end_reason: Option<String> = r.try_get(9)?;
    Ok(Entitlement {
        id: r.try_get(0)?,
        user_id: r.try_get(1)?,
        plan_id: r.try_get(2)?,
        granted_by: r.try_get(3)?,
        starts_at_ms: r.try_get(4)?,
        expires_at_ms: r.try_get(5)?,
        revoked_at_ms: r.try_get(6)?,
        source: Source::parse(&source)
            .ok_or_else(|| DbError::Corrupt(format!("entitlement source {source:?}")))?,
        external_ref: r.try_get(8)?,
        end_reason: end_reason
            .map(|t| {
                EndReason::parse(&t)
                    .ok_or_else(|| DbError::Corrupt(format!("entitlement end reason {t:?}")))
            })
            .transpose()?,
    })
}

/// The SQL condition that entitlement alias `e` is in force at the instant bound as `$n`.
pub fn active_sql(n: u8) -> String {
    format!(
        "e.starts_at_ms <= ${n} AND (e.expires_at_ms IS NULL OR e.expires_at_ms > ${n}) \
         AND (e.revoked_at_ms IS NULL OR e.revoked_at_ms > ${n})"
    )
}

/// The SQL condition (on aliases `d` devices, `u` users, `e` entitlements, `p` plans) that a
/// device may receive a provider's signals at the instant bound as `$2`: device active, account
/// enabled, entitlement in force. Shared by fan-out and the entitlement checks.
pub fn entitled_sql() -> String {
    format!("d.revoked_at_ms IS NULL AND u.disabled_at_ms IS NULL AND {}", active_sql(2))
}

/// Grants a plan to an account from the admin API or the console ([`Source::Admin`], now).
pub async fn grant_by_admin(
    state: &AppState,
    now_ms: i64,
    actor: &str,
    g: &Grant,
    request_id: &str,
) -> Result<Entitlement, ApiError> {
    let new = NewEntitlement {
        user_id: &g.user_id,
        plan_id: &g.plan_id,
        source: Source::Admin,
        external_ref: None,
        starts_at_ms: None,
        expires_at_ms: g.expires_at_ms,
    };
    grant(state, now_ms, actor, &new, request_id).await
}

/// Opens a new interval: validates the account and the plan; writes the entitlement, its change
/// event, the FeatureGrant of each of the account's devices ([`crate::features`]) and an audit
/// entry in one transaction; then rings those devices' sessions, broadcasts the change and tells
/// the other instances.
pub async fn grant(
    state: &AppState,
    now_ms: i64,
    actor: &str,
    new: &NewEntitlement<'_>,
    request_id: &str,
) -> Result<Entitlement, ApiError> {
    let mut tx = state.db.begin_write().await?;
    let (e, applied) = grant_in(&mut tx, state, now_ms, actor, new, request_id).await?;
    tx.commit().await.map_err(DbError::from)?;
    applied.after_commit(state);
    Ok(e)
}

/// What a committed grant or end still has to announce: call [`Applied::after_commit`] once the
/// transaction that [`grant_in`] or [`end_in`] wrote into has committed.
#[derive(Debug)]
#[must_use = "call after_commit once the transaction has committed"]
pub struct Applied {
    change: Change,
    issued: crate::features::Issued,
}

impl Applied {
    /// The devices' sessions send the new FeatureGrant now, the change is broadcast, the other
    /// instances hear of both.
    pub fn after_commit(self, state: &AppState) {
        let Applied { change, issued } = self;
        state.feed_bell.ring(&issued.devices);
        if !issued.devices.is_empty() {
            let source = state.hub_identity.device_id().to_text();
            let seq = issued.last_seq;
            state.cluster.publish(crate::cluster::Event::Feed { source, seq });
        }
        state.entitlement_changes.publish(change);
    }
}

/// [`grant`] inside the caller's write transaction (billing applies a payment, its event id and
/// the entitlements it grants in one): the caller commits, then calls [`Applied::after_commit`].
pub async fn grant_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    state: &AppState,
    now_ms: i64,
    actor: &str,
    new: &NewEntitlement<'_>,
    request_id: &str,
) -> Result<(Entitlement, Applied), ApiError> {
    let db = &state.db;
    let account: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE id = $1")
        .bind(new.user_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(DbError::from)?;
    if account.is_none() {
        return Err(ApiError::Validation("`user_id` is not an account".into()));
    }
    let plan = sqlx::query("SELECT archived_at_ms, provider_user_id FROM plans WHERE id = $1")
        .bind(new.plan_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(DbError::from)?;
    let Some(plan) = plan else {
        return Err(ApiError::Validation("`plan_id` is not a plan".into()));
    };
    let archived: Option<i64> = plan.try_get(0).map_err(DbError::from)?;
    let provider_user_id: String = plan.try_get(1).map_err(DbError::from)?;
    // A plan archived after it was sold still renews for those who pay for it: only new
    // hand-made grants are refused.
    if archived.is_some() && new.source == Source::Admin {
        return Err(ApiError::Validation("`plan_id` is archived".into()));
    }
    let starts_at_ms = new.starts_at_ms.unwrap_or(now_ms).max(now_ms);
    if new.expires_at_ms.is_some_and(|e| e <= starts_at_ms) {
        return Err(ApiError::Validation("`expires_at_ms` is not after the start".into()));
    }
    if new.external_ref.is_some_and(|r| r.is_empty() || r.len() > 200) {
        return Err(ApiError::Validation("`external_ref` must be 1-200 characters".into()));
    }
    let e = Entitlement {
        id: ids::new_id(),
        user_id: new.user_id.to_string(),
        plan_id: new.plan_id.to_string(),
        granted_by: actor.to_string(),
        starts_at_ms,
        expires_at_ms: new.expires_at_ms,
        revoked_at_ms: None,
        source: new.source,
        external_ref: new.external_ref.map(str::to_string),
        end_reason: None,
    };
    sqlx::query(crate::sql!(
        "INSERT INTO entitlements ({ENT_COLUMNS}, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8, NULL, $9)"
    ))
    .bind(&e.id)
    .bind(&e.user_id)
    .bind(&e.plan_id)
    .bind(&e.granted_by)
    .bind(e.starts_at_ms)
    .bind(e.expires_at_ms)
    .bind(e.source.as_str())
    .bind(e.external_ref.as_deref())
    .bind(now_ms)
    .execute(&mut **tx)
    .await
    .map_err(DbError::from)?;
    let change =
        record_event(tx, &e, &provider_user_id, ChangeKind::Granted, e.expires_at_ms, now_ms)
            .await?;
    let issued =
        crate::features::issue_for_entitlement(tx, &state.hub_identity, &e, now_ms).await?;
    let detail = serde_json::json!({
        "user_id": e.user_id, "plan_id": e.plan_id, "source": e.source.as_str(),
        "external_ref": e.external_ref, "starts_at_ms": e.starts_at_ms,
        "expires_at_ms": e.expires_at_ms,
    });
    audit::append(
        tx,
        db.backend(),
        now_ms,
        &Entry { actor, action: "entitlement.grant", subject: &e.id, detail, request_id },
    )
    .await?;
    Ok((e, Applied { change, issued }))
}

/// Which entitlement [`end`] ends, when and why.
#[derive(Debug, Clone, Copy)]
pub struct Ending<'a> {
    /// The entitlement.
    pub id: &'a str,
    /// When (`None`: now).
    pub at_ms: Option<i64>,
    /// Why.
    pub reason: EndReason,
}

/// Ends an entitlement at `at_ms` (now when `None`; an instant in the past means now: an end is
/// never earlier than the moment it is written). An entitlement whose end is already at or
/// before that instant is not changed (`NotFound` "no active entitlement" when it has ended
/// already). Returns the entitlement as it is afterwards.
pub async fn end(
    state: &AppState,
    now_ms: i64,
    actor: &str,
    ending: &Ending<'_>,
    request_id: &str,
) -> Result<Entitlement, ApiError> {
    let mut tx = state.db.begin_write().await?;
    let (after, applied) = end_in(&mut tx, state, now_ms, actor, ending, request_id).await?;
    tx.commit().await.map_err(DbError::from)?;
    if let Some(applied) = applied {
        applied.after_commit(state);
    }
    Ok(after)
}

/// [`end`] inside the caller's write transaction; `None` when nothing moved (the entitlement
/// already ends by then). The caller commits, then calls [`Applied::after_commit`].
pub async fn end_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    state: &AppState,
    now_ms: i64,
    actor: &str,
    ending: &Ending<'_>,
    request_id: &str,
) -> Result<(Entitlement, Option<Applied>), ApiError> {
    let db = &state.db;
    let Ending { id, at_ms, reason } = *ending;
    let end_at = at_ms.unwrap_or(now_ms).max(now_ms);
    let row = sqlx::query(crate::sql!(
        "SELECT {ENT_COLUMNS} FROM entitlements WHERE id = $1{}",
        if db.backend() == crate::db::Backend::Postgres { " FOR UPDATE" } else { "" }
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::from)?;
    let Some(row) = row else {
        return Err(ApiError::NotFound(format!("no active entitlement {id}")));
    };
    let before = ent_from_row(&row)?;
    if before.ends_at_ms().is_some_and(|end| end <= now_ms) {
        return Err(ApiError::NotFound(format!("no active entitlement {id}")));
    }
    if before.ends_at_ms().is_some_and(|end| end <= end_at) {
        // Already ends by then: nothing moves (an end never moves later).
        return Ok((before, None));
    }
    sqlx::query("UPDATE entitlements SET revoked_at_ms = $1, end_reason = $2 WHERE id = $3")
        .bind(end_at)
        .bind(reason.as_str())
        .bind(id)
        .execute(&mut **tx)
        .await
        .map_err(DbError::from)?;
    let after =
        Entitlement { revoked_at_ms: Some(end_at), end_reason: Some(reason), ..before.clone() };
    let provider_user_id: String =
        sqlx::query_scalar("SELECT provider_user_id FROM plans WHERE id = $1")
            .bind(&after.plan_id)
            .fetch_one(&mut **tx)
            .await
            .map_err(DbError::from)?;
    let change =
        record_event(tx, &after, &provider_user_id, ChangeKind::Ended, after.ends_at_ms(), now_ms)
            .await?;
    let issued =
        crate::features::issue_for_entitlement(tx, &state.hub_identity, &after, now_ms).await?;
    let action =
        if reason == EndReason::Revoked { "entitlement.revoke" } else { "entitlement.end" };
    let detail = serde_json::json!({ "reason": reason.as_str(), "ends_at_ms": end_at });
    audit::append(
        tx,
        db.backend(),
        now_ms,
        &Entry { actor, action, subject: id, detail, request_id },
    )
    .await?;
    Ok((after, Some(Applied { change, issued })))
}

async fn record_event(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    e: &Entitlement,
    provider_user_id: &str,
    kind: ChangeKind,
    ends_at_ms: Option<i64>,
    now_ms: i64,
) -> Result<Change, DbError> {
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO entitlement_events (entitlement_id, user_id, plan_id, provider_user_id, \
         kind, starts_at_ms, ends_at_ms, at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         RETURNING seq",
    )
    .bind(&e.id)
    .bind(&e.user_id)
    .bind(&e.plan_id)
    .bind(provider_user_id)
    .bind(kind.as_str())
    .bind(e.starts_at_ms)
    .bind(ends_at_ms)
    .bind(now_ms)
    .fetch_one(&mut **tx)
    .await?;
    Ok(Change {
        seq,
        entitlement_id: e.id.clone(),
        user_id: e.user_id.clone(),
        plan_id: e.plan_id.clone(),
        provider_user_id: provider_user_id.to_string(),
        kind,
        starts_at_ms: e.starts_at_ms,
        ends_at_ms,
        at_ms: now_ms,
    })
}

/// The account's intervals that are not over at `now_ms` (in force, or starting later), inside
/// `tx`: what a newly enrolled device is granted.
pub async fn not_over_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    user_id: &str,
    now_ms: i64,
) -> Result<Vec<Entitlement>, DbError> {
    let rows = sqlx::query(crate::sql!(
        "SELECT {ENT_COLUMNS} FROM entitlements WHERE user_id = $1 \
         AND (expires_at_ms IS NULL OR expires_at_ms > $2) \
         AND (revoked_at_ms IS NULL OR revoked_at_ms > $2) ORDER BY starts_at_ms, id"
    ))
    .bind(user_id)
    .bind(now_ms)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(ent_from_row).collect()
}

/// One entitlement by id.
pub async fn get(db: &Db, id: &str) -> Result<Option<Entitlement>, DbError> {
    let row = sqlx::query(crate::sql!("SELECT {ENT_COLUMNS} FROM entitlements WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(ent_from_row).transpose()
}

/// Every interval of one account, or of all, ended ones included, oldest first.
pub async fn history(db: &Db, user_id: Option<&str>) -> Result<Vec<Entitlement>, DbError> {
    let rows = sqlx::query(crate::sql!(
        "SELECT {ENT_COLUMNS} FROM entitlements WHERE ($1 = '' OR user_id = $1) \
         ORDER BY created_at_ms, starts_at_ms, id"
    ))
    .bind(user_id.unwrap_or(""))
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(ent_from_row).collect()
}

/// The entitlements found by the payment system's id (billing's look-up on a webhook).
pub async fn by_external_ref(
    db: &Db,
    source: Source,
    external_ref: &str,
) -> Result<Vec<Entitlement>, DbError> {
    let rows = sqlx::query(crate::sql!(
        "SELECT {ENT_COLUMNS} FROM entitlements WHERE source = $1 AND external_ref = $2 \
         ORDER BY starts_at_ms, id"
    ))
    .bind(source.as_str())
    .bind(external_ref)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(ent_from_row).collect()
}

/// The account's entitlements in force at `at_ms` (as of any instant, past or future).
pub async fn active_at(db: &Db, user_id: &str, at_ms: i64) -> Result<Vec<Entitlement>, DbError> {
    let rows = sqlx::query(crate::sql!(
        "SELECT {ENT_COLUMNS} FROM entitlements e WHERE e.user_id = $1 AND {} \
         ORDER BY e.starts_at_ms, e.id",
        active_sql(2)
    ))
    .bind(user_id)
    .bind(at_ms)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(ent_from_row).collect()
}

/// Whether `user_id` was entitled to `provider_user_id`'s signals at `at_ms`.
pub async fn is_entitled(
    db: &Db,
    user_id: &str,
    provider_user_id: &str,
    at_ms: i64,
) -> Result<bool, DbError> {
    let n: i64 = sqlx::query_scalar(crate::sql!(
        "SELECT COUNT(*) FROM entitlements e JOIN plans p ON p.id = e.plan_id \
         WHERE e.user_id = $1 AND {} AND p.provider_user_id = $3",
        active_sql(2)
    ))
    .bind(user_id)
    .bind(at_ms)
    .bind(provider_user_id)
    .fetch_one(db.pool())
    .await?;
    Ok(n > 0)
}

/// The plan features `user_id` holds at `at_ms` (the union over its entitlements in force),
/// sorted and without duplicates.
pub async fn features_at(db: &Db, user_id: &str, at_ms: i64) -> Result<Vec<String>, DbError> {
    let lists: Vec<String> = sqlx::query_scalar(crate::sql!(
        "SELECT p.features FROM entitlements e JOIN plans p ON p.id = e.plan_id \
         WHERE e.user_id = $1 AND {}",
        active_sql(2)
    ))
    .bind(user_id)
    .bind(at_ms)
    .fetch_all(db.pool())
    .await?;
    let mut features: Vec<String> =
        lists.iter().flat_map(|l| crate::plans::features_from_sql(l)).collect();
    features.sort();
    features.dedup();
    Ok(features)
}

/// Refuses with 402 `plan-required` unless `user_id` holds `feature` at `at_ms` through a plan
/// in force; the refusal names the plans on offer (not archived) that include it.
pub async fn require_feature(
    db: &Db,
    user_id: &str,
    feature: &str,
    at_ms: i64,
) -> Result<(), crate::error::ApiError> {
    if features_at(db, user_id, at_ms).await?.iter().any(|f| f == feature) {
        return Ok(());
    }
    let plans = crate::plans::list(db, None, false)
        .await?
        .into_iter()
        .filter(|p| p.features.iter().any(|f| f == feature))
        .map(|p| p.id)
        .collect();
    Err(crate::error::ApiError::PlanRequired { feature: feature.to_string(), plans })
}

/// Devices entitled to `provider_user_id`'s signals at `at_ms`.
pub async fn entitled_devices(
    db: &Db,
    provider_user_id: &str,
    at_ms: i64,
) -> Result<Vec<String>, DbError> {
    Ok(sqlx::query_scalar(crate::sql!(
        "SELECT DISTINCT d.id FROM devices d JOIN users u ON u.id = d.user_id \
         JOIN entitlements e ON e.user_id = d.user_id JOIN plans p ON p.id = e.plan_id \
         WHERE p.provider_user_id = $1 AND {} ORDER BY d.id",
        entitled_sql()
    ))
    .bind(provider_user_id)
    .bind(at_ms)
    .fetch_all(db.pool())
    .await?)
}

/// The change events after `after_seq`, oldest first, at most `limit` (a follower's catch-up).
pub async fn events_since(db: &Db, after_seq: i64, limit: i64) -> Result<Vec<Change>, DbError> {
    let rows = sqlx::query(
        "SELECT seq, entitlement_id, user_id, plan_id, provider_user_id, kind, starts_at_ms, \
         ends_at_ms, at_ms FROM entitlement_events WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(after_seq)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            let kind: String = r.try_get(5)?;
            Ok(Change {
                seq: r.try_get(0)?,
                entitlement_id: r.try_get(1)?,
                user_id: r.try_get(2)?,
                plan_id: r.try_get(3)?,
                provider_user_id: r.try_get(4)?,
                kind: match kind.as_str() {
                    "granted" => ChangeKind::Granted,
                    "ended" => ChangeKind::Ended,
                    other => return Err(DbError::Corrupt(format!("entitlement event {other:?}"))),
                },
                starts_at_ms: r.try_get(6)?,
                ends_at_ms: r.try_get(7)?,
                at_ms: r.try_get(8)?,
            })
        })
        .collect()
}

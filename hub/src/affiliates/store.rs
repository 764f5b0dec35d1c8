//! The affiliates' SQL (both backends, migration 0040): settings, affiliates and codes, clicks
//! and touches, referrals, commission entries, holds and payouts.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::AffiliateError;
use super::money::{self, PaidInvoice, Scheme};
use crate::feed::Tx;
use crate::state::AppState;

type Result<T> = std::result::Result<T, AffiliateError>;

const DAY_MS: i64 = 86_400_000;

// ---------------------------------------------------------------------------------------------
// Settings

/// A commission scheme for one plan (`*`: every plan without its own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemeRow {
    /// A plan id, or `*`.
    pub plan_id: String,
    /// `percent` (of each paid invoice) or `fixed` (once, on the first payment).
    pub kind: String,
    /// Percent schemes: basis points (2000 = 20 %).
    #[serde(default)]
    pub percent_bp: i64,
    /// Percent schemes: calendar months (UTC) from the first payment; absent: for life.
    #[serde(default)]
    pub months: Option<i64>,
    /// Fixed schemes: minor units.
    #[serde(default)]
    pub fixed_minor: i64,
    /// Fixed schemes: ISO 4217.
    #[serde(default)]
    pub fixed_currency: Option<String>,
}

impl SchemeRow {
    fn scheme(&self) -> Scheme {
        if self.kind == "fixed" {
            Scheme::Fixed {
                minor: self.fixed_minor,
                currency: self.fixed_currency.clone().unwrap_or_default(),
            }
        } else {
            Scheme::Percent { bp: self.percent_bp, months: self.months }
        }
    }
}

/// A tier: from `min_paying` paying referrals on, `percent_bp` for percent schemes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Paying referrals (accounts with a paid invoice) needed.
    pub min_paying: i64,
    /// The rate from then on.
    pub percent_bp: i64,
}

/// A payout threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// ISO 4217.
    pub currency: String,
    /// A balance below this is carried to the next run.
    pub min_minor: i64,
}

/// The programme, as the owner sets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// New affiliates wait for the owner's approval.
    pub approval_required: bool,
    /// A first touch older than this (days) is not attributed.
    pub window_days: i64,
    /// Days a commission stays pending before it is payable (the refund window).
    pub holding_days: i64,
    /// Hold an affiliate's new commissions when their refund rate is above this (basis points)…
    pub refund_rate_bp: i64,
    /// …over at least this many commissions.
    pub refund_min_invoices: i64,
    /// Hold when this many sign-ups come from one address…
    pub burst_signups: i64,
    /// …within this many minutes.
    pub burst_minutes: i64,
    /// Schemes by plan.
    pub schemes: Vec<SchemeRow>,
    /// Tiers.
    pub tiers: Vec<Tier>,
    /// Payout thresholds by currency.
    pub thresholds: Vec<Threshold>,
    /// When payout runs start by themselves: `manual` (never), `weekly`, `monthly`.
    #[serde(default = "manual")]
    pub payout_schedule: String,
    /// The day of a scheduled run: ISO weekday 1 (Monday)–7 for `weekly`, day of month 1–28
    /// for `monthly` (00:00 UTC).
    #[serde(default = "first_day")]
    pub payout_day: i64,
}

fn manual() -> String {
    "manual".into()
}

fn first_day() -> i64 {
    1
}

fn valid_currency(c: &str) -> bool {
    c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase())
}

impl Settings {
    /// Refuses values the programme cannot run with.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(AffiliateError::Validation(m.to_string()));
        if !(1..=3650).contains(&self.window_days) {
            return bad("window_days must be 1-3650");
        }
        if !(0..=3650).contains(&self.holding_days) {
            return bad("holding_days must be 0-3650");
        }
        if !(0..=10_000).contains(&self.refund_rate_bp) || self.refund_min_invoices < 1 {
            return bad("refund_rate_bp must be 0-10000 and refund_min_invoices at least 1");
        }
        if self.burst_signups < 2 || self.burst_minutes < 1 {
            return bad("burst_signups must be at least 2 and burst_minutes at least 1");
        }
        for s in &self.schemes {
            if s.plan_id.is_empty() || s.plan_id.len() > 64 {
                return bad("a scheme needs a plan id or `*`");
            }
            match s.kind.as_str() {
                "percent" => {
                    if !(0..=10_000).contains(&s.percent_bp) {
                        return bad("percent_bp must be 0-10000");
                    }
                    if s.months.is_some_and(|m| !(1..=1200).contains(&m)) {
                        return bad("months must be 1-1200, or absent for life");
                    }
                }
                "fixed" => {
                    if s.fixed_minor < 0 || !s.fixed_currency.as_deref().is_some_and(valid_currency)
                    {
                        return bad("a fixed scheme needs fixed_minor ≥ 0 and a fixed_currency");
                    }
                }
                _ => return bad("a scheme's kind is `percent` or `fixed`"),
            }
        }
        let mut plans: Vec<&str> = self.schemes.iter().map(|s| s.plan_id.as_str()).collect();
        plans.sort_unstable();
        if plans.windows(2).any(|w| w[0] == w[1]) {
            return bad("one scheme per plan");
        }
        for t in &self.tiers {
            if t.min_paying < 1 || !(0..=10_000).contains(&t.percent_bp) {
                return bad("a tier needs min_paying ≥ 1 and percent_bp 0-10000");
            }
        }
        for t in &self.thresholds {
            if !valid_currency(&t.currency) || t.min_minor < 0 {
                return bad("a threshold needs an ISO 4217 currency and min_minor ≥ 0");
            }
        }
        match self.payout_schedule.as_str() {
            "manual" => {}
            "weekly" if (1..=7).contains(&self.payout_day) => {}
            "monthly" if (1..=28).contains(&self.payout_day) => {}
            "weekly" => return bad("a weekly payout day is 1 (Monday) to 7 (Sunday)"),
            "monthly" => return bad("a monthly payout day is 1 to 28"),
            _ => return bad("payout_schedule is `manual`, `weekly` or `monthly`"),
        }
        Ok(())
    }
}

/// The programme's settings.
pub async fn settings_in(c: &mut AnyConnection) -> Result<Settings> {
    let r = sqlx::query(
        "SELECT approval_required, window_days, holding_days, refund_rate_bp, \
         refund_min_invoices, burst_signups, burst_minutes, payout_schedule, payout_day \
         FROM affiliate_settings WHERE id = 1",
    )
    .fetch_one(&mut *c)
    .await?;
    let schemes = sqlx::query(
        "SELECT plan_id, kind, percent_bp, months, fixed_minor, fixed_currency \
         FROM affiliate_schemes ORDER BY plan_id",
    )
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(|r| {
        Ok(SchemeRow {
            plan_id: r.try_get(0)?,
            kind: r.try_get(1)?,
            percent_bp: r.try_get(2)?,
            months: r.try_get(3)?,
            fixed_minor: r.try_get(4)?,
            fixed_currency: r.try_get(5)?,
        })
    })
    .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?;
    let tiers =
        sqlx::query("SELECT min_paying, percent_bp FROM affiliate_tiers ORDER BY min_paying")
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(|r| Ok(Tier { min_paying: r.try_get(0)?, percent_bp: r.try_get(1)? }))
            .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?;
    let thresholds =
        sqlx::query("SELECT currency, min_minor FROM affiliate_thresholds ORDER BY currency")
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(|r| Ok(Threshold { currency: r.try_get(0)?, min_minor: r.try_get(1)? }))
            .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?;
    Ok(Settings {
        approval_required: r.try_get::<i64, _>(0)? != 0,
        window_days: r.try_get(1)?,
        holding_days: r.try_get(2)?,
        refund_rate_bp: r.try_get(3)?,
        refund_min_invoices: r.try_get(4)?,
        burst_signups: r.try_get(5)?,
        burst_minutes: r.try_get(6)?,
        schemes,
        tiers,
        thresholds,
        payout_schedule: r.try_get(7)?,
        payout_day: r.try_get(8)?,
    })
}

/// The programme's settings (from the pool).
pub async fn settings(state: &AppState) -> Result<Settings> {
    let mut c = state.db.pool().acquire().await?;
    settings_in(&mut c).await
}

async fn audit(
    tx: &mut Tx,
    state: &AppState,
    now: i64,
    (actor, action, subject): (&str, &str, &str),
    detail: serde_json::Value,
    request_id: &str,
) -> Result<()> {
    let entry = crate::audit::Entry { actor, action, subject, detail, request_id };
    crate::audit::append(tx, state.db.backend(), now, &entry).await?;
    Ok(())
}

/// Replaces the programme's settings (schemes, tiers and thresholds as given), audited.
pub async fn save_settings(
    state: &AppState,
    actor: &str,
    s: &Settings,
    request_id: &str,
) -> Result<()> {
    s.validate()?;
    let now = state.now_ms();
    let mut tx = state.db.begin_write().await?;
    // A changed schedule counts from now: no run for a day before it was set.
    sqlx::query(
        "UPDATE affiliate_settings SET payout_schedule_set_at_ms = $1 WHERE id = 1 \
         AND (payout_schedule <> $2 OR payout_day <> $3)",
    )
    .bind(now)
    .bind(&s.payout_schedule)
    .bind(s.payout_day)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE affiliate_settings SET approval_required = $1, window_days = $2, \
         holding_days = $3, refund_rate_bp = $4, refund_min_invoices = $5, burst_signups = $6, \
         burst_minutes = $7, updated_at_ms = $8, payout_schedule = $9, payout_day = $10 \
         WHERE id = 1",
    )
    .bind(i64::from(s.approval_required))
    .bind(s.window_days)
    .bind(s.holding_days)
    .bind(s.refund_rate_bp)
    .bind(s.refund_min_invoices)
    .bind(s.burst_signups)
    .bind(s.burst_minutes)
    .bind(now)
    .bind(&s.payout_schedule)
    .bind(s.payout_day)
    .execute(&mut *tx)
    .await?;
    for table in ["affiliate_schemes", "affiliate_tiers", "affiliate_thresholds"] {
        sqlx::query(crate::sql!("DELETE FROM {table}")).execute(&mut *tx).await?;
    }
    for r in &s.schemes {
        sqlx::query(
            "INSERT INTO affiliate_schemes (plan_id, kind, percent_bp, months, fixed_minor, \
             fixed_currency) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&r.plan_id)
        .bind(&r.kind)
        .bind(r.percent_bp)
        .bind(r.months)
        .bind(r.fixed_minor)
        .bind(r.fixed_currency.as_deref())
        .execute(&mut *tx)
        .await?;
    }
    for t in &s.tiers {
        sqlx::query("INSERT INTO affiliate_tiers (min_paying, percent_bp) VALUES ($1, $2)")
            .bind(t.min_paying)
            .bind(t.percent_bp)
            .execute(&mut *tx)
            .await?;
    }
    for t in &s.thresholds {
        sqlx::query("INSERT INTO affiliate_thresholds (currency, min_minor) VALUES ($1, $2)")
            .bind(&t.currency)
            .bind(t.min_minor)
            .execute(&mut *tx)
            .await?;
    }
    let detail = serde_json::to_value(s).unwrap_or_default();
    audit(&mut tx, state, now, (actor, "affiliate.settings", "programme"), detail, request_id)
        .await?;
    tx.commit().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Affiliates and codes

/// An affiliate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Affiliate {
    /// Its id.
    pub id: String,
    /// The account.
    pub account_id: String,
    /// `pending`, `approved` or `rejected`.
    pub status: String,
    /// Its codes (`?ref=<code>`, `/start ref_<code>`).
    pub codes: Vec<String>,
    /// Applied.
    pub created_at_ms: i64,
    /// Approved or rejected.
    pub decided_at_ms: Option<i64>,
}

async fn affiliate_where(
    c: &mut AnyConnection,
    column: &str,
    value: &str,
) -> Result<Option<Affiliate>> {
    let sql = crate::sql!(
        "SELECT id, account_id, status, created_at_ms, decided_at_ms FROM affiliates WHERE {column} = $1"
    );
    let Some(r) = sqlx::query(sql).bind(value).fetch_optional(&mut *c).await? else {
        return Ok(None);
    };
    let id: String = r.try_get(0)?;
    let codes: Vec<String> = sqlx::query_scalar(
        "SELECT code FROM affiliate_codes WHERE affiliate_id = $1 ORDER BY created_at_ms, code",
    )
    .bind(&id)
    .fetch_all(&mut *c)
    .await?;
    Ok(Some(Affiliate {
        id,
        account_id: r.try_get(1)?,
        status: r.try_get(2)?,
        codes,
        created_at_ms: r.try_get(3)?,
        decided_at_ms: r.try_get(4)?,
    }))
}

/// The affiliate of `account_id`, if it is one.
pub async fn affiliate_of(state: &AppState, account_id: &str) -> Result<Option<Affiliate>> {
    let mut c = state.db.pool().acquire().await?;
    affiliate_where(&mut c, "account_id", account_id).await
}

/// An affiliate by id.
pub async fn affiliate(state: &AppState, id: &str) -> Result<Option<Affiliate>> {
    let mut c = state.db.pool().acquire().await?;
    affiliate_where(&mut c, "id", id).await
}

async fn new_code(tx: &mut Tx, affiliate_id: &str, code: Option<&str>, now: i64) -> Result<String> {
    let code = match code {
        Some(c) => {
            if !crate::billing::api::valid_referral(c) || c.len() < 3 {
                return Err(AffiliateError::Validation(
                    "a code is 3-64 letters, digits, `_` or `-`".into(),
                ));
            }
            c.to_string()
        }
        None => crate::ids::random_hex(5),
    };
    let inserted = sqlx::query(
        "INSERT INTO affiliate_codes (code, affiliate_id, created_at_ms) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&code)
    .bind(affiliate_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(AffiliateError::Conflict(format!("the code {code} is taken")));
    }
    Ok(code)
}

/// `account_id` applies to become an affiliate (from `ip_hash`): approved at once with a code
/// when the programme needs no approval, else pending. Applying twice is a conflict.
pub async fn join(
    state: &AppState,
    account_id: &str,
    ip_hash: Option<&str>,
    request_id: &str,
) -> Result<Affiliate> {
    let now = state.now_ms();
    let mut tx = state.db.begin_write().await?;
    let s = settings_in(&mut tx).await?;
    if affiliate_where(&mut tx, "account_id", account_id).await?.is_some() {
        return Err(AffiliateError::Conflict("you are already an affiliate".into()));
    }
    let id = crate::ids::new_id();
    let status = if s.approval_required { "pending" } else { "approved" };
    sqlx::query(
        "INSERT INTO affiliates (id, account_id, status, ip_hash, created_at_ms, decided_at_ms, \
         decided_by) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(account_id)
    .bind(status)
    .bind(ip_hash)
    .bind(now)
    .bind((!s.approval_required).then_some(now))
    .bind((!s.approval_required).then_some("programme"))
    .execute(&mut *tx)
    .await?;
    if !s.approval_required {
        new_code(&mut tx, &id, None, now).await?;
    }
    let detail = serde_json::json!({ "status": status });
    audit(&mut tx, state, now, (account_id, "affiliate.join", &id), detail, request_id).await?;
    let out = affiliate_where(&mut tx, "id", &id).await?;
    tx.commit().await?;
    out.ok_or_else(|| AffiliateError::NotFound("affiliate".into()))
}

/// The owner approves (a first code is made) or rejects a pending affiliate.
pub async fn decide_affiliate(
    state: &AppState,
    actor: &str,
    id: &str,
    approve: bool,
    request_id: &str,
) -> Result<Affiliate> {
    let now = state.now_ms();
    let mut tx = state.db.begin_write().await?;
    let Some(a) = affiliate_where(&mut tx, "id", id).await? else {
        return Err(AffiliateError::NotFound("no such affiliate".into()));
    };
    let status = if approve { "approved" } else { "rejected" };
    if a.status == status {
        return Ok(a);
    }
    sqlx::query(
        "UPDATE affiliates SET status = $1, decided_at_ms = $2, decided_by = $3 WHERE id = $4",
    )
    .bind(status)
    .bind(now)
    .bind(actor)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if approve && a.codes.is_empty() {
        new_code(&mut tx, id, None, now).await?;
    }
    let detail = serde_json::json!({ "status": status, "before": a.status });
    audit(&mut tx, state, now, (actor, "affiliate.decide", id), detail, request_id).await?;
    let out = affiliate_where(&mut tx, "id", id).await?;
    tx.commit().await?;
    out.ok_or_else(|| AffiliateError::NotFound("affiliate".into()))
}

/// An approved affiliate adds a code of its choosing (or a random one).
pub async fn add_code(
    state: &AppState,
    account_id: &str,
    code: Option<&str>,
    request_id: &str,
) -> Result<String> {
    let now = state.now_ms();
    let mut tx = state.db.begin_write().await?;
    let Some(a) = affiliate_where(&mut tx, "account_id", account_id).await? else {
        return Err(AffiliateError::NotFound("you are not an affiliate".into()));
    };
    if a.status != "approved" {
        return Err(AffiliateError::Forbidden("your affiliate account is not approved".into()));
    }
    if a.codes.len() >= 20 {
        return Err(AffiliateError::Conflict("20 codes at most".into()));
    }
    let code = new_code(&mut tx, &a.id, code, now).await?;
    let detail = serde_json::json!({ "code": code });
    audit(&mut tx, state, now, (account_id, "affiliate.code", &a.id), detail, request_id).await?;
    tx.commit().await?;
    Ok(code)
}

/// The approved affiliate a code belongs to.
async fn live_code(c: &mut AnyConnection, code: &str) -> Result<Option<(String, String)>> {
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT a.id, a.account_id FROM affiliate_codes c JOIN affiliates a ON a.id = c.affiliate_id \
         WHERE c.code = $1 AND a.status = 'approved'",
    )
    .bind(code)
    .fetch_optional(&mut *c)
    .await?;
    Ok(row)
}

/// Counts a visit of `code` (a live one; else `false`) from `ip_hash`.
pub async fn click(
    state: &AppState,
    code: &str,
    channel: &str,
    ip_hash: Option<&str>,
) -> Result<bool> {
    let mut c = state.db.pool().acquire().await?;
    if live_code(&mut c, code).await?.is_none() {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO affiliate_clicks (id, code, channel, ip_hash, at_ms) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(crate::ids::new_id())
    .bind(code)
    .bind(channel)
    .bind(ip_hash)
    .bind(state.now_ms())
    .execute(&mut *c)
    .await?;
    metrics::counter!("tradecast_affiliate_clicks_total", "channel" => channel.to_string())
        .increment(1);
    Ok(true)
}

/// A Telegram user's `/start ref_<code>`: counted, and kept as that user's first touch (a later
/// code does not replace it). `false`: not a live code.
pub async fn telegram_touch(state: &AppState, telegram_user_id: i64, code: &str) -> Result<bool> {
    if !click(state, code, "telegram", None).await? {
        return Ok(false);
    }
    let linked: Option<String> =
        sqlx::query_scalar("SELECT user_id FROM telegram_links WHERE telegram_user_id = $1")
            .bind(telegram_user_id)
            .fetch_optional(state.db.pool())
            .await?;
    sqlx::query(
        "INSERT INTO affiliate_telegram_touches (telegram_user_id, code, touched_at_ms, \
         linked_account_id) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(telegram_user_id)
    .bind(code)
    .bind(state.now_ms())
    .bind(linked)
    .execute(state.db.pool())
    .await?;
    Ok(true)
}

// ---------------------------------------------------------------------------------------------
// Attribution

/// How a referral came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// A `?ref=` link (the cookie).
    Web,
    /// `/start ref_<code>`.
    Telegram,
    /// `POST /api/v1/signup`'s `ref`.
    Signup,
    /// A processor's payment carrying the code (Stripe metadata `ref`).
    Checkout,
}

impl Channel {
    /// Stable text.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Web => "web",
            Channel::Telegram => "telegram",
            Channel::Signup => "signup",
            Channel::Checkout => "checkout",
        }
    }
}

/// Why a touch was not attributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAttributed {
    /// The account already has its referral (first touch wins).
    Already,
    /// Not a live code.
    UnknownCode,
    /// The touch is older than the window.
    WindowExpired,
}

async fn attribute_in(
    tx: &mut Tx,
    now: i64,
    account_id: &str,
    code: &str,
    touched_at_ms: i64,
    channel: Channel,
    ip_hash: Option<&str>,
) -> Result<std::result::Result<String, NotAttributed>> {
    let s = settings_in(tx).await?;
    let exists: Option<String> =
        sqlx::query_scalar("SELECT affiliate_id FROM affiliate_referrals WHERE account_id = $1")
            .bind(account_id)
            .fetch_optional(&mut **tx)
            .await?;
    if exists.is_some() {
        return Ok(Err(NotAttributed::Already));
    }
    let Some((affiliate_id, _)) = live_code(tx, code).await? else {
        return Ok(Err(NotAttributed::UnknownCode));
    };
    let touched = touched_at_ms.min(now);
    if now - touched > s.window_days.saturating_mul(DAY_MS) {
        return Ok(Err(NotAttributed::WindowExpired));
    }
    sqlx::query(
        "INSERT INTO affiliate_referrals (account_id, affiliate_id, code, channel, touched_at_ms, \
         attributed_at_ms, signup_ip_hash) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT DO NOTHING",
    )
    .bind(account_id)
    .bind(&affiliate_id)
    .bind(code)
    .bind(channel.as_str())
    .bind(touched)
    .bind(now)
    .bind(ip_hash)
    .execute(&mut **tx)
    .await?;
    metrics::counter!("tradecast_affiliate_referrals_total", "channel" => channel.as_str())
        .increment(1);
    Ok(Ok(affiliate_id))
}

/// Attributes `account_id` (new) to `code`'s affiliate: once, if the touch is inside the window.
/// `Ok(Err(_))` says why not (nothing is wrong: the sign-up goes on).
pub async fn attribute(
    state: &AppState,
    account_id: &str,
    code: &str,
    touched_at_ms: i64,
    channel: Channel,
    ip_hash: Option<&str>,
) -> Result<std::result::Result<String, NotAttributed>> {
    let now = state.now_ms();
    let mut tx = state.db.begin_write().await?;
    let out = attribute_in(&mut tx, now, account_id, code, touched_at_ms, channel, ip_hash).await?;
    tx.commit().await?;
    Ok(out)
}

/// At sign-up: the web cookie's touch (the first touch), else — no cookie, or its touch out of
/// the window or its code not live — the request's `ref` (touched now). Failures are logged,
/// never fail the sign-up.
pub async fn attribute_signup(
    state: &AppState,
    account_id: &str,
    cookie: Option<(String, i64)>,
    code: Option<&str>,
    ip: std::net::IpAddr,
) {
    let ip_hash = super::ip_hash(state, ip);
    let now = state.now_ms();
    let touches = cookie
        .map(|(c, at)| (c, at, Channel::Web))
        .into_iter()
        .chain(code.map(|c| (c.to_string(), now, Channel::Signup)));
    for (code, at, channel) in touches {
        match attribute(state, account_id, &code, at, channel, Some(&ip_hash)).await {
            Ok(Ok(_)) | Ok(Err(NotAttributed::Already)) => return,
            Ok(Err(why)) => tracing::info!(?why, "sign-up referral not attributed"),
            Err(e) => {
                tracing::warn!(error = %e, "sign-up referral not stored");
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Commissions

/// One commission entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Entry {
    /// Its id.
    pub id: String,
    /// The affiliate.
    pub affiliate_id: String,
    /// The referred account.
    pub account_id: String,
    /// The ledger's invoice.
    pub invoice_id: String,
    /// `commission` or `reversal`.
    pub kind: String,
    /// The commission a reversal reverses.
    pub parent_id: Option<String>,
    /// `invoice paid`, `refund`, `chargeback`.
    pub reason: String,
    /// `pending`, `payable`, `paid`, `held`, `rejected`, `cancelled`.
    pub status: String,
    /// Minor units (negative: a reversal).
    pub amount_minor: i64,
    /// ISO 4217.
    pub currency: String,
    /// What the invoice paid, in `basis_currency`.
    pub basis_minor: i64,
    /// ISO 4217 or `XTR`.
    pub basis_currency: String,
    /// The rate applied.
    pub rate_bp: Option<i64>,
    /// The Stars rate used (decimal text).
    pub xtr_rate: Option<String>,
    /// When it becomes payable.
    pub available_at_ms: i64,
    /// The payout run that pays it.
    pub payout_run_id: Option<String>,
    /// Booked.
    pub created_at_ms: i64,
}

const ENTRY_COLUMNS: &str = "id, affiliate_id, account_id, invoice_id, kind, parent_id, reason, \
     status, amount_minor, currency, basis_minor, basis_currency, rate_bp, xtr_rate, \
     available_at_ms, payout_run_id, created_at_ms";

fn entry_from(r: &sqlx::any::AnyRow) -> std::result::Result<Entry, sqlx::Error> {
    Ok(Entry {
        id: r.try_get(0)?,
        affiliate_id: r.try_get(1)?,
        account_id: r.try_get(2)?,
        invoice_id: r.try_get(3)?,
        kind: r.try_get(4)?,
        parent_id: r.try_get(5)?,
        reason: r.try_get(6)?,
        status: r.try_get(7)?,
        amount_minor: r.try_get(8)?,
        currency: r.try_get(9)?,
        basis_minor: r.try_get(10)?,
        basis_currency: r.try_get(11)?,
        rate_bp: r.try_get(12)?,
        xtr_rate: r.try_get(13)?,
        available_at_ms: r.try_get(14)?,
        payout_run_id: r.try_get(15)?,
        created_at_ms: r.try_get(16)?,
    })
}

async fn insert_entry(tx: &mut Tx, e: &Entry, now: i64) -> Result<()> {
    sqlx::query(crate::sql!(
        "INSERT INTO affiliate_commissions ({ENTRY_COLUMNS}, updated_at_ms) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
    ))
    .bind(&e.id)
    .bind(&e.affiliate_id)
    .bind(&e.account_id)
    .bind(&e.invoice_id)
    .bind(&e.kind)
    .bind(e.parent_id.as_deref())
    .bind(&e.reason)
    .bind(&e.status)
    .bind(e.amount_minor)
    .bind(&e.currency)
    .bind(e.basis_minor)
    .bind(&e.basis_currency)
    .bind(e.rate_bp)
    .bind(e.xtr_rate.as_deref())
    .bind(e.available_at_ms)
    .bind(e.payout_run_id.as_deref())
    .bind(e.created_at_ms)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

struct InvoiceFacts {
    account_id: String,
    status: String,
    paid: i64,
    currency: String,
    paid_at_ms: i64,
    plan_id: Option<String>,
    sub_referral: Option<String>,
    sub_created_ms: Option<i64>,
}

async fn invoice_facts(tx: &mut Tx, invoice_id: &str) -> Result<Option<InvoiceFacts>> {
    let Some(r) = sqlx::query(
        "SELECT i.account_id, i.status, i.amount_paid_minor, i.amount_refunded_minor, i.currency, \
         COALESCE(i.paid_at_ms, i.created_at_ms), s.plan_id, s.referral, s.created_at_ms \
         FROM invoices i LEFT JOIN subscriptions s ON s.id = i.subscription_id WHERE i.id = $1",
    )
    .bind(invoice_id)
    .fetch_optional(&mut **tx)
    .await?
    else {
        return Ok(None);
    };
    Ok(Some(InvoiceFacts {
        account_id: r.try_get(0)?,
        status: r.try_get(1)?,
        paid: r.try_get(2)?,
        currency: r.try_get(4)?,
        paid_at_ms: r.try_get(5)?,
        plan_id: r.try_get(6)?,
        sub_referral: r.try_get(7)?,
        sub_created_ms: r.try_get(8)?,
    }))
}

/// The referral of an account paying its first invoice, attributed now if it came through
/// Telegram (`/start ref_…` by the account's linked Telegram user) or a checkout carrying a code.
async fn referral_for(
    tx: &mut Tx,
    now: i64,
    f: &InvoiceFacts,
) -> Result<Option<(String, String, Option<String>, i64)>> {
    let q = "SELECT affiliate_id, code, signup_ip_hash, attributed_at_ms FROM affiliate_referrals \
             WHERE account_id = $1";
    let read = |r: sqlx::any::AnyRow| -> std::result::Result<_, sqlx::Error> {
        Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?))
    };
    if let Some(r) = sqlx::query(q).bind(&f.account_id).fetch_optional(&mut **tx).await? {
        return Ok(Some(read(r)?));
    }
    let tg: Option<(String, i64)> = sqlx::query_as(
        "SELECT t.code, t.touched_at_ms FROM affiliate_telegram_touches t \
         JOIN telegram_links l ON l.telegram_user_id = t.telegram_user_id WHERE l.user_id = $1",
    )
    .bind(&f.account_id)
    .fetch_optional(&mut **tx)
    .await?;
    let candidate = match (tg, &f.sub_referral) {
        (Some((code, at)), _) => Some((code, at, Channel::Telegram)),
        (None, Some(code)) if crate::billing::api::valid_referral(code) => {
            Some((code.clone(), f.sub_created_ms.unwrap_or(now), Channel::Checkout))
        }
        _ => None,
    };
    let Some((code, at, channel)) = candidate else { return Ok(None) };
    if attribute_in(tx, now, &f.account_id, &code, at, channel, None).await?.is_err() {
        return Ok(None);
    }
    let r = sqlx::query(q).bind(&f.account_id).fetch_optional(&mut **tx).await?;
    Ok(r.map(read).transpose()?)
}

/// The fraud signals for a commission of `affiliate_id` on `account_id` (each one a reason to
/// hold it).
async fn fraud_reasons(
    tx: &mut Tx,
    s: &Settings,
    affiliate_id: &str,
    account_id: &str,
    signup_ip_hash: Option<&str>,
    attributed_at_ms: i64,
) -> Result<Vec<String>> {
    let mut reasons = Vec::new();
    let (aff_account, aff_ip): (String, Option<String>) =
        sqlx::query_as("SELECT account_id, ip_hash FROM affiliates WHERE id = $1")
            .bind(affiliate_id)
            .fetch_one(&mut **tx)
            .await?;
    if aff_account == account_id {
        reasons.push("self-referral: the affiliate's own account".to_string());
    }
    let tg = |who: String| {
        sqlx::query_scalar::<_, i64>(
            "SELECT telegram_user_id FROM telegram_links WHERE user_id = $1",
        )
        .bind(who)
    };
    let a = tg(aff_account.clone()).fetch_optional(&mut **tx).await?;
    let b = tg(account_id.to_string()).fetch_optional(&mut **tx).await?;
    // The referred account's Telegram user is the affiliate's, or touched the link while it
    // was linked to the affiliate's account.
    let touched_as_affiliate: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM affiliate_telegram_touches t JOIN telegram_links l \
         ON l.telegram_user_id = t.telegram_user_id WHERE l.user_id = $1 \
         AND t.linked_account_id = $2",
    )
    .bind(account_id)
    .bind(&aff_account)
    .fetch_one(&mut **tx)
    .await?;
    if aff_account != account_id && ((a.is_some() && a == b) || touched_as_affiliate > 0) {
        reasons.push("self-referral: the same Telegram user".to_string());
    }
    // The same card paid for the referred account and for the affiliate's own (the processor's
    // card fingerprint: the same card number gives the same value on every customer).
    let same_card: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM invoices r JOIN invoices a \
         ON a.payment_fingerprint = r.payment_fingerprint \
         WHERE r.account_id = $1 AND a.account_id = $2 AND r.payment_fingerprint IS NOT NULL",
    )
    .bind(account_id)
    .bind(&aff_account)
    .fetch_one(&mut **tx)
    .await?;
    if aff_account != account_id && same_card > 0 {
        reasons.push("self-referral: paid with the affiliate's card".to_string());
    }
    // A device of the referred account trades the MT5 account a device of the affiliate's
    // trades (the account fingerprint the nodes sign in their `DeviceKeys`).
    if aff_account != account_id
        && crate::devices::accounts_share_trading_account(tx, &aff_account, account_id).await?
    {
        reasons.push("self-referral: the same trading account as the affiliate".to_string());
    }
    if let Some(ip) = signup_ip_hash {
        if aff_ip.as_deref() == Some(ip) {
            reasons.push("self-referral: signed up from the affiliate's address".to_string());
        }
        let window = s.burst_minutes.saturating_mul(60_000);
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM affiliate_referrals WHERE affiliate_id = $1 \
             AND signup_ip_hash = $2 AND attributed_at_ms >= $3 AND attributed_at_ms <= $4",
        )
        .bind(affiliate_id)
        .bind(ip)
        .bind(attributed_at_ms - window)
        .bind(attributed_at_ms + window)
        .fetch_one(&mut **tx)
        .await?;
        if n >= s.burst_signups {
            reasons.push(format!(
                "burst: {n} sign-ups from one address within {} minutes",
                s.burst_minutes
            ));
        }
    }
    let (total, refunded): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), CAST(COALESCE(SUM(CASE WHEN c.status = 'cancelled' OR EXISTS \
         (SELECT 1 FROM affiliate_commissions r WHERE r.parent_id = c.id) THEN 1 ELSE 0 END), 0) \
         AS BIGINT) FROM affiliate_commissions c WHERE c.affiliate_id = $1 AND c.kind = 'commission'",
    )
    .bind(affiliate_id)
    .fetch_one(&mut **tx)
    .await?;
    if total >= s.refund_min_invoices && refunded * 10_000 > s.refund_rate_bp * total {
        reasons.push(format!(
            "refund rate: {refunded} of {total} commissions refunded, above {}",
            rate_text(s.refund_rate_bp)
        ));
    }
    Ok(reasons)
}

/// Basis points as a percent: `2000` → `20%`, `1250` → `12.5%`.
pub fn rate_text(bp: i64) -> String {
    let d = Decimal::new(bp, 2).normalize();
    format!("{d}%")
}

/// Books the commission of a newly paid invoice of a referred account (the ledger calls this in
/// its transaction): pending through the holding period, or held with its reasons. Nothing for
/// an account nobody referred, an affiliate not approved, a plan without scheme, or an invoice
/// outside the scheme. A second call for the same invoice changes nothing.
pub async fn on_invoice_paid(
    tx: &mut Tx,
    state: &AppState,
    now: i64,
    invoice_id: &str,
    request_id: &str,
) -> Result<()> {
    let Some(f) = invoice_facts(tx, invoice_id).await? else { return Ok(()) };
    if f.status != "paid" || f.paid <= 0 {
        return Ok(());
    }
    let booked: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM affiliate_commissions WHERE invoice_id = $1 AND kind = 'commission'",
    )
    .bind(invoice_id)
    .fetch_one(&mut **tx)
    .await?;
    if booked > 0 {
        return Ok(());
    }
    let Some((affiliate_id, _code, ip_hash, attributed_at)) = referral_for(tx, now, &f).await?
    else {
        return Ok(());
    };
    let approved: Option<String> =
        sqlx::query_scalar("SELECT status FROM affiliates WHERE id = $1 AND status = 'approved'")
            .bind(&affiliate_id)
            .fetch_optional(&mut **tx)
            .await?;
    if approved.is_none() {
        return Ok(());
    }
    let s = settings_in(tx).await?;
    let plan = f.plan_id.clone().unwrap_or_default();
    let Some(row) = s
        .schemes
        .iter()
        .find(|r| r.plan_id == plan)
        .or_else(|| s.schemes.iter().find(|r| r.plan_id == "*"))
    else {
        return Ok(());
    };
    let scheme = row.scheme();
    let (others, first_paid): (i64, Option<i64>) = sqlx::query_as(
        "SELECT COUNT(*), MIN(COALESCE(paid_at_ms, created_at_ms)) FROM invoices \
         WHERE account_id = $1 AND status = 'paid' AND id <> $2",
    )
    .bind(&f.account_id)
    .bind(invoice_id)
    .fetch_one(&mut **tx)
    .await?;
    let paying: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM affiliate_referrals r WHERE r.affiliate_id = $1 AND EXISTS \
         (SELECT 1 FROM invoices i WHERE i.account_id = r.account_id AND i.status = 'paid' \
         AND i.amount_paid_minor > 0)",
    )
    .bind(&affiliate_id)
    .fetch_one(&mut **tx)
    .await?;
    let tiers: Vec<(i64, i64)> = s.tiers.iter().map(|t| (t.min_paying, t.percent_bp)).collect();
    let base = match scheme {
        Scheme::Percent { bp, .. } => bp,
        Scheme::Fixed { .. } => 0,
    };
    let rate = money::tier_rate(base, &tiers, paying);
    let inv = PaidInvoice {
        paid_minor: f.paid,
        currency: &f.currency,
        paid_at_ms: f.paid_at_ms,
        first_paid_at_ms: first_paid.map_or(f.paid_at_ms, |p| p.min(f.paid_at_ms)),
        first: others == 0,
    };
    let account_currency = state.config.billing.currency.as_str();
    let xtr_rate = state.config.billing.xtr_rate;
    let Some(c) = money::commission(&scheme, rate, &inv, account_currency, xtr_rate) else {
        return Ok(());
    };
    let reasons =
        fraud_reasons(tx, &s, &affiliate_id, &f.account_id, ip_hash.as_deref(), attributed_at)
            .await?;
    let entry = Entry {
        id: crate::ids::new_id(),
        affiliate_id: affiliate_id.clone(),
        account_id: f.account_id.clone(),
        invoice_id: invoice_id.to_string(),
        kind: "commission".into(),
        parent_id: None,
        reason: "invoice paid".into(),
        status: if reasons.is_empty() { "pending" } else { "held" }.into(),
        amount_minor: c.amount_minor,
        currency: c.currency,
        basis_minor: f.paid,
        basis_currency: f.currency.clone(),
        rate_bp: c.rate_bp,
        xtr_rate: c.xtr_rate.map(|r| r.to_string()),
        available_at_ms: f.paid_at_ms.saturating_add(s.holding_days.saturating_mul(DAY_MS)),
        payout_run_id: None,
        created_at_ms: now,
    };
    insert_entry(tx, &entry, now).await?;
    for reason in &reasons {
        sqlx::query(
            "INSERT INTO affiliate_holds (id, commission_id, reason, created_at_ms) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(crate::ids::new_id())
        .bind(&entry.id)
        .bind(reason)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    metrics::counter!("tradecast_affiliate_commissions_total", "status" => entry.status.clone())
        .increment(1);
    let detail = serde_json::json!({
        "invoice_id": invoice_id, "amount_minor": entry.amount_minor, "currency": entry.currency,
        "rate_bp": entry.rate_bp, "xtr_rate": entry.xtr_rate, "status": entry.status,
        "holds": reasons,
    });
    audit(tx, state, now, ("affiliates", "affiliate.commission", &entry.id), detail, request_id)
        .await
}

/// A refund or chargeback of an invoice (`refunded_minor`: the invoice's total refunded so
/// far): the commission's share of it is reversed — cancelled when it was not paid out and the
/// refund is full, else a negative entry (payable at once when the commission was already paid
/// or is in a payout run: deducted from the next payout). A second call with the same total
/// changes nothing.
pub async fn on_refund(
    tx: &mut Tx,
    state: &AppState,
    now: i64,
    invoice_id: &str,
    refunded_minor: i64,
    reason: &str,
    request_id: &str,
) -> Result<()> {
    let Some(f) = invoice_facts(tx, invoice_id).await? else { return Ok(()) };
    let Some(r) = sqlx::query(crate::sql!(
        "SELECT {ENTRY_COLUMNS} FROM affiliate_commissions WHERE invoice_id = $1 AND kind = 'commission'"
    ))
    .bind(invoice_id)
    .fetch_optional(&mut **tx)
    .await?
    else {
        return Ok(());
    };
    let c = entry_from(&r)?;
    if matches!(c.status.as_str(), "cancelled" | "rejected") {
        return Ok(());
    }
    let target = money::reversed(c.amount_minor, refunded_minor, f.paid);
    let already: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(-amount_minor), 0) AS BIGINT) FROM affiliate_commissions \
         WHERE parent_id = $1",
    )
    .bind(&c.id)
    .fetch_one(&mut **tx)
    .await?;
    let delta = target - already;
    if delta <= 0 {
        return Ok(());
    }
    let paid_out = c.status == "paid" || c.payout_run_id.is_some();
    if !paid_out && already == 0 && target == c.amount_minor {
        sqlx::query("UPDATE affiliate_commissions SET status = 'cancelled', updated_at_ms = $1 WHERE id = $2")
            .bind(now)
            .bind(&c.id)
            .execute(&mut **tx)
            .await?;
        let detail = serde_json::json!({ "invoice_id": invoice_id, "reason": reason });
        return audit(
            tx,
            state,
            now,
            ("affiliates", "affiliate.cancel", &c.id),
            detail,
            request_id,
        )
        .await;
    }
    let (status, available) =
        if paid_out { ("payable", now) } else { (c.status.as_str(), c.available_at_ms) };
    let entry = Entry {
        id: crate::ids::new_id(),
        kind: "reversal".into(),
        parent_id: Some(c.id.clone()),
        reason: reason.to_string(),
        status: status.to_string(),
        amount_minor: -delta,
        // A reversal's basis: the invoice's refunded total when it was booked, negative.
        basis_minor: -refunded_minor.min(f.paid),
        available_at_ms: available,
        payout_run_id: None,
        created_at_ms: now,
        ..c.clone()
    };
    insert_entry(tx, &entry, now).await?;
    let detail = serde_json::json!({
        "invoice_id": invoice_id, "reason": reason, "amount_minor": entry.amount_minor,
        "currency": entry.currency, "parent_id": c.id,
    });
    audit(tx, state, now, ("affiliates", "affiliate.reversal", &entry.id), detail, request_id).await
}

/// A chargeback (a disputed payment lost) of `disputed_minor` on an invoice: reversed like a
/// refund, in its own transaction.
pub async fn on_chargeback(
    state: &AppState,
    invoice_id: &str,
    disputed_minor: i64,
    request_id: &str,
) -> Result<()> {
    let now = state.now_ms();
    let mut tx = state.db.begin_write().await?;
    on_refund(&mut tx, state, now, invoice_id, disputed_minor, "chargeback", request_id).await?;
    tx.commit().await?;
    Ok(())
}

/// Pending entries past their holding period become payable; how many. A commission whose
/// invoice has an undecided dispute waits for the decision (lost: reversed; won: it matures).
pub async fn mature(state: &AppState) -> Result<u64> {
    let r = sqlx::query(
        "UPDATE affiliate_commissions SET status = 'payable', updated_at_ms = $1 \
         WHERE status = 'pending' AND available_at_ms <= $1 AND NOT EXISTS \
         (SELECT 1 FROM invoices i WHERE i.id = affiliate_commissions.invoice_id \
         AND i.dispute_open <> 0)",
    )
    .bind(state.now_ms())
    .execute(state.db.pool())
    .await?;
    Ok(r.rows_affected())
}

/// The job that runs [`mature`].
#[derive(Debug, Default)]
pub struct MatureJob;

impl crate::jobs::Job for MatureJob {
    fn run<'a>(
        &'a self,
        state: &'a AppState,
    ) -> futures::future::BoxFuture<'a, std::result::Result<String, String>> {
        Box::pin(async move {
            let n = mature(state).await.map_err(|e| e.to_string())?;
            Ok(format!("{n} commission entries became payable"))
        })
    }
}

/// The latest scheduled payout day at or before `now_ms` (UTC), for a `weekly` (ISO weekday
/// `day`) or `monthly` (day of month `day`) schedule; `None` for `manual` or a bad day.
pub fn scheduled_day(schedule: &str, day: i64, now_ms: i64) -> Option<jiff::civil::Date> {
    let now = jiff::Timestamp::from_millisecond(now_ms).ok()?;
    let today = jiff::tz::Offset::UTC.to_datetime(now).date();
    match schedule {
        "weekly" if (1..=7).contains(&day) => {
            let back = (i64::from(today.weekday().to_monday_one_offset()) - day).rem_euclid(7);
            today.checked_sub(jiff::Span::new().days(back)).ok()
        }
        "monthly" if (1..=28).contains(&day) => {
            let d = i8::try_from(day).ok()?;
            let this_month = today.with().day(d).build().ok()?;
            if this_month <= today {
                Some(this_month)
            } else {
                this_month.checked_sub(jiff::Span::new().months(1)).ok()
            }
        }
        _ => None,
    }
}

/// Starts the scheduled payout run that is due, if any: the latest scheduled day (00:00 UTC)
/// not before the schedule was set, when something is payable; its id `scheduled-YYYY-MM-DD`
/// makes it once (another instance, a restart, the next hour answer the same run).
pub async fn run_scheduled(state: &AppState, request_id: &str) -> Result<Option<PayoutRun>> {
    let (schedule, day, set_at): (String, i64, i64) = sqlx::query_as(
        "SELECT payout_schedule, payout_day, payout_schedule_set_at_ms FROM affiliate_settings \
         WHERE id = 1",
    )
    .fetch_one(state.db.pool())
    .await?;
    let Some(due) = scheduled_day(&schedule, day, state.now_ms()) else { return Ok(None) };
    let due_ms = jiff::tz::Offset::UTC
        .to_timestamp(due.to_datetime(jiff::civil::Time::midnight()))
        .map_err(|e| AffiliateError::Validation(e.to_string()))?
        .as_millisecond();
    if due_ms < set_at {
        return Ok(None);
    }
    let run_id = format!("scheduled-{due}");
    let mut c = state.db.pool().acquire().await?;
    if run_in(&mut c, &run_id).await?.is_some() {
        return Ok(None);
    }
    let payable: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM affiliate_commissions WHERE status = 'payable' \
         AND payout_run_id IS NULL",
    )
    .fetch_one(&mut *c)
    .await?;
    drop(c);
    if payable == 0 {
        return Ok(None);
    }
    run_payout(state, "schedule", &run_id, request_id).await.map(Some)
}

/// The job that runs [`run_scheduled`].
#[derive(Debug, Default)]
pub struct PayoutScheduleJob;

impl crate::jobs::Job for PayoutScheduleJob {
    fn run<'a>(
        &'a self,
        state: &'a AppState,
    ) -> futures::future::BoxFuture<'a, std::result::Result<String, String>> {
        Box::pin(async move {
            let request_id = format!("job-payout-{}", crate::ids::new_id());
            match run_scheduled(state, &request_id).await.map_err(|e| e.to_string())? {
                Some(r) => Ok(format!("payout run {} started: {} payouts", r.id, r.payouts.len())),
                None => Ok("no scheduled payout run due".into()),
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Holds

/// A commission held for review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Hold {
    /// Its id.
    pub id: String,
    /// The commission.
    pub commission_id: String,
    /// The affiliate.
    pub affiliate_id: String,
    /// The referred account.
    pub account_id: String,
    /// Minor units.
    pub amount_minor: i64,
    /// ISO 4217.
    pub currency: String,
    /// Why.
    pub reason: String,
    /// When.
    pub created_at_ms: i64,
    /// `released`, `rejected`, or none yet.
    pub decision: Option<String>,
}

/// Holds (open ones only, or all), newest first.
pub async fn holds(state: &AppState, open_only: bool) -> Result<Vec<Hold>> {
    let rows = sqlx::query(crate::sql!(
        "SELECT h.id, h.commission_id, c.affiliate_id, c.account_id, c.amount_minor, c.currency, \
         h.reason, h.created_at_ms, h.decision FROM affiliate_holds h \
         JOIN affiliate_commissions c ON c.id = h.commission_id {} \
         ORDER BY h.created_at_ms DESC, h.id LIMIT 500",
        if open_only { "WHERE h.decision IS NULL AND c.status = 'held'" } else { "" }
    ))
    .fetch_all(state.db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Hold {
                id: r.try_get(0)?,
                commission_id: r.try_get(1)?,
                affiliate_id: r.try_get(2)?,
                account_id: r.try_get(3)?,
                amount_minor: r.try_get(4)?,
                currency: r.try_get(5)?,
                reason: r.try_get(6)?,
                created_at_ms: r.try_get(7)?,
                decision: r.try_get(8)?,
            })
        })
        .collect::<std::result::Result<_, sqlx::Error>>()
        .map_err(AffiliateError::from)
}

/// The owner releases a hold (the commission goes on to pending once no hold of it is open) or
/// rejects it (the commission is kept, never paid).
pub async fn decide_hold(
    state: &AppState,
    actor: &str,
    hold_id: &str,
    release: bool,
    request_id: &str,
) -> Result<()> {
    let now = state.now_ms();
    let mut tx = state.db.begin_write().await?;
    let row: Option<(String, Option<String>)> =
        sqlx::query_as("SELECT commission_id, decision FROM affiliate_holds WHERE id = $1")
            .bind(hold_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((commission_id, decision)) = row else {
        return Err(AffiliateError::NotFound("no such hold".into()));
    };
    let verdict = if release { "released" } else { "rejected" };
    if let Some(d) = decision {
        return if d == verdict {
            Ok(())
        } else {
            Err(AffiliateError::Conflict(format!("this hold was already {d}")))
        };
    }
    sqlx::query(
        "UPDATE affiliate_holds SET decision = $1, decided_at_ms = $2, decided_by = $3 WHERE id = $4",
    )
    .bind(verdict)
    .bind(now)
    .bind(actor)
    .bind(hold_id)
    .execute(&mut *tx)
    .await?;
    let open: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM affiliate_holds WHERE commission_id = $1 AND decision IS NULL",
    )
    .bind(&commission_id)
    .fetch_one(&mut *tx)
    .await?;
    let next = if !release {
        Some("rejected")
    } else if open == 0 {
        Some("pending")
    } else {
        None
    };
    if let Some(next) = next {
        sqlx::query(
            "UPDATE affiliate_commissions SET status = $1, updated_at_ms = $2 \
             WHERE (id = $3 OR parent_id = $3) AND status = 'held'",
        )
        .bind(next)
        .bind(now)
        .bind(&commission_id)
        .execute(&mut *tx)
        .await?;
    }
    let detail = serde_json::json!({ "commission_id": commission_id, "decision": verdict });
    audit(&mut tx, state, now, (actor, "affiliate.hold", hold_id), detail, request_id).await?;
    tx.commit().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Payouts

/// One affiliate's payout in a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Payout {
    /// The run.
    pub run_id: String,
    /// The affiliate.
    pub affiliate_id: String,
    /// The affiliate's e-mail (the PayPal mass-pay recipient).
    pub email: String,
    /// ISO 4217.
    pub currency: String,
    /// Minor units (payable commissions minus reversals).
    pub amount_minor: i64,
    /// The bank's or PayPal's reference, once paid.
    pub reference: Option<String>,
    /// When marked paid.
    pub paid_at_ms: Option<i64>,
}

/// A payout run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PayoutRun {
    /// The run id.
    pub id: String,
    /// When.
    pub created_at_ms: i64,
    /// Who.
    pub created_by: String,
    /// Its payouts.
    pub payouts: Vec<Payout>,
}

async fn run_in(c: &mut AnyConnection, run_id: &str) -> Result<Option<PayoutRun>> {
    let Some((created_at_ms, created_by)) = sqlx::query_as::<_, (i64, String)>(
        "SELECT created_at_ms, created_by FROM affiliate_payout_runs WHERE id = $1",
    )
    .bind(run_id)
    .fetch_optional(&mut *c)
    .await?
    else {
        return Ok(None);
    };
    let rows = sqlx::query(
        "SELECT p.affiliate_id, u.email, p.currency, p.amount_minor, p.reference, p.paid_at_ms \
         FROM affiliate_payouts p JOIN affiliates a ON a.id = p.affiliate_id \
         JOIN users u ON u.id = a.account_id WHERE p.run_id = $1 ORDER BY u.email, p.currency",
    )
    .bind(run_id)
    .fetch_all(&mut *c)
    .await?;
    let payouts = rows
        .iter()
        .map(|r| {
            Ok(Payout {
                run_id: run_id.to_string(),
                affiliate_id: r.try_get(0)?,
                email: r.try_get(1)?,
                currency: r.try_get(2)?,
                amount_minor: r.try_get(3)?,
                reference: r.try_get(4)?,
                paid_at_ms: r.try_get(5)?,
            })
        })
        .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?;
    Ok(Some(PayoutRun { id: run_id.to_string(), created_at_ms, created_by, payouts }))
}

/// A payout run by id.
pub async fn payout_run(state: &AppState, run_id: &str) -> Result<Option<PayoutRun>> {
    let mut c = state.db.pool().acquire().await?;
    run_in(&mut c, run_id).await
}

/// The payout runs, newest first.
pub async fn payout_runs(state: &AppState) -> Result<Vec<PayoutRun>> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM affiliate_payout_runs ORDER BY created_at_ms DESC, id LIMIT 100",
    )
    .fetch_all(state.db.pool())
    .await?;
    let mut c = state.db.pool().acquire().await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(r) = run_in(&mut c, &id).await? {
            out.push(r);
        }
    }
    Ok(out)
}

/// Runs payout `run_id`: each approved affiliate's payable entries not in a run, per currency,
/// summed (reversals deducted); a sum at or above the currency's threshold (and above zero) is a
/// payout of this run, the rest waits for the next. The same run id again answers the same run.
pub async fn run_payout(
    state: &AppState,
    actor: &str,
    run_id: &str,
    request_id: &str,
) -> Result<PayoutRun> {
    if !crate::billing::api::valid_referral(run_id) {
        return Err(AffiliateError::Validation(
            "a run id is 1-64 letters, digits, `_` or `-`".into(),
        ));
    }
    let now = state.now_ms();
    let mut tx = state.db.begin_write().await?;
    if let Some(r) = run_in(&mut tx, run_id).await? {
        return Ok(r);
    }
    let s = settings_in(&mut tx).await?;
    sqlx::query(
        "INSERT INTO affiliate_payout_runs (id, created_at_ms, created_by) VALUES ($1, $2, $3)",
    )
    .bind(run_id)
    .bind(now)
    .bind(actor)
    .execute(&mut *tx)
    .await?;
    let groups: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT c.affiliate_id, c.currency, CAST(SUM(c.amount_minor) AS BIGINT) \
         FROM affiliate_commissions c JOIN affiliates a ON a.id = c.affiliate_id \
         WHERE c.status = 'payable' AND c.payout_run_id IS NULL AND a.status = 'approved' \
         GROUP BY c.affiliate_id, c.currency ORDER BY c.affiliate_id, c.currency",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut total = 0usize;
    for (affiliate_id, currency, sum) in groups {
        let threshold =
            s.thresholds.iter().find(|t| t.currency == currency).map_or(0, |t| t.min_minor);
        if sum <= 0 || sum < threshold {
            continue;
        }
        let moved = sqlx::query(
            "UPDATE affiliate_commissions SET payout_run_id = $1, updated_at_ms = $2 \
             WHERE affiliate_id = $3 AND currency = $4 AND status = 'payable' \
             AND payout_run_id IS NULL",
        )
        .bind(run_id)
        .bind(now)
        .bind(&affiliate_id)
        .bind(&currency)
        .execute(&mut *tx)
        .await?;
        let in_run: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM affiliate_commissions \
             WHERE payout_run_id = $1 AND affiliate_id = $2 AND currency = $3",
        )
        .bind(run_id)
        .bind(&affiliate_id)
        .bind(&currency)
        .fetch_one(&mut *tx)
        .await?;
        if moved.rows_affected() == 0 || in_run != sum {
            return Err(AffiliateError::Conflict(
                "the balances changed while the run was made: run it again".into(),
            ));
        }
        sqlx::query(
            "INSERT INTO affiliate_payouts (run_id, affiliate_id, currency, amount_minor) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(run_id)
        .bind(&affiliate_id)
        .bind(&currency)
        .bind(sum)
        .execute(&mut *tx)
        .await?;
        total += 1;
    }
    let detail = serde_json::json!({ "payouts": total });
    audit(&mut tx, state, now, (actor, "affiliate.payout_run", run_id), detail, request_id).await?;
    let run = run_in(&mut tx, run_id).await?;
    tx.commit().await?;
    run.ok_or_else(|| AffiliateError::NotFound("payout run".into()))
}

/// Marks an affiliate's payout of a run paid with the bank's or PayPal's reference: its entries
/// become `paid`. The same reference again is a no-op; another is a conflict.
pub async fn mark_paid(
    state: &AppState,
    actor: &str,
    run_id: &str,
    affiliate_id: &str,
    currency: &str,
    reference: &str,
    request_id: &str,
) -> Result<Payout> {
    let reference = reference.trim();
    if reference.is_empty() || reference.len() > 200 || reference.chars().any(char::is_control) {
        return Err(AffiliateError::Validation("a reference is 1-200 printable characters".into()));
    }
    let now = state.now_ms();
    let mut tx = state.db.begin_write().await?;
    let row: Option<Option<String>> = sqlx::query_scalar(
        "SELECT reference FROM affiliate_payouts WHERE run_id = $1 AND affiliate_id = $2 \
         AND currency = $3",
    )
    .bind(run_id)
    .bind(affiliate_id)
    .bind(currency)
    .fetch_optional(&mut *tx)
    .await?;
    match row {
        None => return Err(AffiliateError::NotFound("no such payout".into())),
        Some(Some(r)) if r != reference => {
            return Err(AffiliateError::Conflict(format!("this payout was paid as {r}")));
        }
        Some(Some(_)) => {}
        Some(None) => {
            sqlx::query(
                "UPDATE affiliate_payouts SET reference = $1, paid_at_ms = $2 WHERE run_id = $3 \
                 AND affiliate_id = $4 AND currency = $5",
            )
            .bind(reference)
            .bind(now)
            .bind(run_id)
            .bind(affiliate_id)
            .bind(currency)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE affiliate_commissions SET status = 'paid', updated_at_ms = $1 \
                 WHERE payout_run_id = $2 AND affiliate_id = $3 AND currency = $4",
            )
            .bind(now)
            .bind(run_id)
            .bind(affiliate_id)
            .bind(currency)
            .execute(&mut *tx)
            .await?;
            let detail = serde_json::json!({
                "run_id": run_id, "currency": currency, "reference": reference,
            });
            audit(
                &mut tx,
                state,
                now,
                (actor, "affiliate.payout_paid", affiliate_id),
                detail,
                request_id,
            )
            .await?;
        }
    }
    let run = run_in(&mut tx, run_id).await?;
    tx.commit().await?;
    run.and_then(|r| {
        r.payouts.into_iter().find(|p| p.affiliate_id == affiliate_id && p.currency == currency)
    })
    .ok_or_else(|| AffiliateError::NotFound("no such payout".into()))
}

fn csv_field(s: &str) -> String {
    // A spreadsheet must not read a value as a formula.
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_string() };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

/// A minor amount as a decimal number of major units (`4900 USD` → `49.00`).
pub fn major(minor: i64, currency: &str) -> String {
    let text = crate::ui::fmt::money(minor, currency);
    text.split(' ').next().unwrap_or_default().to_string()
}

/// A run's CSV, one payout per line, for a bank transfer list or PayPal mass pay: `email,amount,
/// currency,unique_id,note` (PayPal's columns, in its order) then `affiliate_id,amount_minor,
/// reference,paid_at`.
pub fn csv(run: &PayoutRun) -> String {
    let mut out = String::from(
        "email,amount,currency,unique_id,note,affiliate_id,amount_minor,reference,paid_at\r\n",
    );
    for p in &run.payouts {
        let unique = format!(
            "{}-{}-{}",
            run.id,
            &p.affiliate_id[..p.affiliate_id.len().min(12)],
            p.currency
        );
        let fields = [
            csv_field(&p.email),
            major(p.amount_minor, &p.currency),
            csv_field(&p.currency),
            csv_field(&unique),
            csv_field(&format!("Tradecast affiliate commissions, run {}", run.id)),
            csv_field(&p.affiliate_id),
            p.amount_minor.to_string(),
            csv_field(p.reference.as_deref().unwrap_or("")),
            p.paid_at_ms.map(|t| crate::ui::fmt::when(Some(t))).unwrap_or_default(),
        ];
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Statements and lists

/// A balance by currency and status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Balance {
    /// ISO 4217.
    pub currency: String,
    /// Pending (holding period), minor units.
    pub pending_minor: i64,
    /// Payable (not yet in a paid payout), minor units; reversals deducted.
    pub payable_minor: i64,
    /// Paid out, minor units.
    pub paid_minor: i64,
    /// Held for review, minor units.
    pub held_minor: i64,
}

/// An affiliate's statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Statement {
    /// The affiliate.
    pub affiliate: Affiliate,
    /// Visits of its links (and Telegram starts).
    pub clicks: i64,
    /// Accounts attributed to it.
    pub signups: i64,
    /// Of them, accounts that paid.
    pub conversions: i64,
    /// Balances by currency.
    pub balances: Vec<Balance>,
    /// Entries, newest first (500 at most).
    pub entries: Vec<Entry>,
    /// The Stars rate in force (`billing.xtr_rate`, account currency per Star).
    pub xtr_rate: String,
    /// The account currency Stars convert to.
    pub account_currency: String,
}

/// The statement of affiliate `id`.
pub async fn statement(state: &AppState, id: &str) -> Result<Statement> {
    let Some(affiliate) = affiliate(state, id).await? else {
        return Err(AffiliateError::NotFound("no such affiliate".into()));
    };
    let pool = state.db.pool();
    let clicks: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM affiliate_clicks k JOIN affiliate_codes c ON c.code = k.code \
         WHERE c.affiliate_id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await?;
    let signups: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM affiliate_referrals WHERE affiliate_id = $1")
            .bind(id)
            .fetch_one(pool)
            .await?;
    let conversions: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM affiliate_referrals r WHERE r.affiliate_id = $1 AND EXISTS \
         (SELECT 1 FROM invoices i WHERE i.account_id = r.account_id AND i.status = 'paid' \
         AND i.amount_paid_minor > 0)",
    )
    .bind(id)
    .fetch_one(pool)
    .await?;
    let sums: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT currency, status, CAST(SUM(amount_minor) AS BIGINT) FROM affiliate_commissions \
         WHERE affiliate_id = $1 GROUP BY currency, status ORDER BY currency",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    let mut balances: Vec<Balance> = Vec::new();
    for (currency, status, sum) in sums {
        let i = match balances.iter().position(|b| b.currency == currency) {
            Some(i) => i,
            None => {
                balances.push(Balance {
                    currency: currency.clone(),
                    pending_minor: 0,
                    payable_minor: 0,
                    paid_minor: 0,
                    held_minor: 0,
                });
                balances.len() - 1
            }
        };
        let b = &mut balances[i];
        match status.as_str() {
            "pending" => b.pending_minor += sum,
            "payable" => b.payable_minor += sum,
            "paid" => b.paid_minor += sum,
            "held" => b.held_minor += sum,
            _ => {}
        }
    }
    let entries = sqlx::query(crate::sql!(
        "SELECT {ENTRY_COLUMNS} FROM affiliate_commissions WHERE affiliate_id = $1 \
         ORDER BY created_at_ms DESC, id LIMIT 500"
    ))
    .bind(id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(entry_from)
    .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?;
    Ok(Statement {
        affiliate,
        clicks,
        signups,
        conversions,
        balances,
        entries,
        xtr_rate: state.config.billing.xtr_rate.to_string(),
        account_currency: state.config.billing.currency.clone(),
    })
}

/// An affiliate in the owner's list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Listed {
    /// The affiliate.
    pub affiliate: Affiliate,
    /// The account's e-mail.
    pub email: String,
    /// Accounts attributed.
    pub signups: i64,
    /// Commissions booked (not cancelled or rejected), by currency, minor units.
    pub earned: Vec<(String, i64)>,
}

/// Every affiliate, the top earners first.
pub async fn list(state: &AppState) -> Result<Vec<Listed>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT a.id, u.email FROM affiliates a JOIN users u ON u.id = a.account_id \
         ORDER BY a.created_at_ms, a.id LIMIT 1000",
    )
    .fetch_all(state.db.pool())
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, email) in rows {
        let Some(affiliate) = affiliate(state, &id).await? else { continue };
        let signups: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM affiliate_referrals WHERE affiliate_id = $1")
                .bind(&id)
                .fetch_one(state.db.pool())
                .await?;
        let earned: Vec<(String, i64)> = sqlx::query_as(
            "SELECT currency, CAST(SUM(amount_minor) AS BIGINT) FROM affiliate_commissions \
             WHERE affiliate_id = $1 AND status IN ('pending', 'payable', 'paid') \
             GROUP BY currency ORDER BY currency",
        )
        .bind(&id)
        .fetch_all(state.db.pool())
        .await?;
        out.push(Listed { affiliate, email, signups, earned });
    }
    out.sort_by_key(|l| std::cmp::Reverse(l.earned.iter().map(|(_, v)| *v).sum::<i64>()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("a@b.c"), "a@b.c");
        assert_eq!(csv_field("x,y"), "\"x,y\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(major(4900, "USD"), "49.00");
        assert_eq!(major(-65, "USD"), "-0.65");
        assert_eq!(rate_text(2000), "20%");
        assert_eq!(rate_text(1250), "12.5%");
    }

    #[test]
    fn settings_are_checked() {
        let ok = Settings {
            approval_required: true,
            window_days: 60,
            holding_days: 30,
            refund_rate_bp: 3000,
            refund_min_invoices: 5,
            burst_signups: 5,
            burst_minutes: 60,
            schemes: vec![SchemeRow {
                plan_id: "*".into(),
                kind: "percent".into(),
                percent_bp: 2000,
                months: Some(12),
                fixed_minor: 0,
                fixed_currency: None,
            }],
            tiers: vec![Tier { min_paying: 3, percent_bp: 2500 }],
            thresholds: vec![Threshold { currency: "USD".into(), min_minor: 5000 }],
            payout_schedule: "monthly".into(),
            payout_day: 28,
        };
        assert!(ok.validate().is_ok());
        for (schedule, day) in [("monthly", 29), ("weekly", 8), ("weekly", 0), ("daily", 1)] {
            let mut bad = ok.clone();
            (bad.payout_schedule, bad.payout_day) = (schedule.into(), day);
            assert!(bad.validate().is_err(), "{schedule} {day}");
        }
        let mut bad = ok.clone();
        bad.schemes.push(bad.schemes[0].clone());
        assert!(bad.validate().is_err(), "two schemes for one plan");
        let mut bad = ok.clone();
        bad.schemes[0].kind = "fixed".into();
        assert!(bad.validate().is_err(), "fixed without a currency");
        let mut bad = ok.clone();
        bad.window_days = 0;
        assert!(bad.validate().is_err());
        let mut bad = ok;
        bad.thresholds[0].currency = "usd".into();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn scheduled_days_are_the_latest_on_or_before_now() {
        let ms = |s: &str| s.parse::<jiff::Timestamp>().unwrap().as_millisecond();
        let day = |s: &str, d: i64, now: &str| scheduled_day(s, d, ms(now)).map(|x| x.to_string());
        // 2026-12-07 is a Monday.
        assert_eq!(day("weekly", 1, "2026-12-07T00:00:00Z").as_deref(), Some("2026-12-07"));
        assert_eq!(day("weekly", 5, "2026-12-07T09:00:00Z").as_deref(), Some("2026-12-04"));
        assert_eq!(day("weekly", 7, "2026-12-07T09:00:00Z").as_deref(), Some("2026-12-06"));
        assert_eq!(day("monthly", 7, "2026-12-07T09:00:00Z").as_deref(), Some("2026-12-07"));
        assert_eq!(day("monthly", 8, "2026-12-07T09:00:00Z").as_deref(), Some("2026-11-08"));
        assert_eq!(day("monthly", 28, "2027-01-03T00:00:00Z").as_deref(), Some("2026-12-28"));
        assert_eq!(day("manual", 1, "2026-12-07T09:00:00Z"), None);
        assert_eq!(day("monthly", 29, "2026-12-07T09:00:00Z"), None);
    }
}

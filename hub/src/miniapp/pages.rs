//! The Mini App's pages.
//!
//! | route | |
//! | --- | --- |
//! | `GET /miniapp` | the entry page: Telegram's script, htmx, `miniapp.js` (no session needed) |
//! | `GET /miniapp/app/{plan,approvals,analytics}` | a view (HTML fragment), bearer session |
//! | `POST /miniapp/app/stars` (`plan_id`) | `{kind: "invoice", url}`: a Stars invoice link for `Telegram.WebApp.openInvoice` |
//! | `POST /miniapp/app/checkout` (`plan_id`) | `{kind: "link", url}`: Stripe Checkout, opened outside with `openLink` |
//! | `POST /miniapp/app/portal` | `{kind: "link", url}`: the Stripe Customer Portal |
//! | `POST /miniapp/app/decide` (`signal_id`, `device_id`, `decision`, `lots`?) | 201 `{kind: "decided", request}`: a remote decision sent to the node, as the bot's buttons do |
//! | `POST /miniapp/app/share` | 201 `{kind: "share", url}`: a new redacted share link ([`crate::share`]), for Telegram's share sheet |
//! | `GET /miniapp/app/approvals?signal=<id>` | the Approvals view on one signal (`startapp=approve_<id>`) |
//!
//! The actions need the session's CSRF token in `X-CSRF-Token` (the views carry it in
//! `data-csrf`); a missing or wrong one is 403 `forbidden`. The views reuse the account page's
//! billing functions ([`crate::billing`], [`crate::ui::account`]) and the bot's recent signals
//! ([`crate::telegram::commands::recent_signals`]). The Approvals view lists the pending signals
//! the trader's nodes signed (`Pending`: lot range, risk preview, blocking rules, expiry) and
//! sends a decision through [`crate::approvals::request`]; nothing here decides a signal: the
//! node does, within its own rules, and its signed answer is shown when it arrives (the view
//! refreshes itself while an answer is awaited). Each waiting signal shows its setup picture
//! ([`crate::charts::setup`]), inline as a `data:` PNG rendered for this user's pending signals
//! only (no public delay applies to a signal the user's own device waits on).

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::session::{Mini, Session, csrf_ok};
use crate::accounts::Role;
use crate::api::extract::RequestId;
use crate::approvals;
use crate::billing::{ledger, stripe_door};
use crate::db::DbError;
use crate::error::ApiError;
use crate::state::AppState;
use crate::telegram::commands::{DeviceOutcome, recent_signals};
use crate::telegram::link::Linked;
use crate::ui::{account, assets, fmt, layout};

/// `GET /miniapp`: the entry page. Its script reads `Telegram.WebApp.initData`, exchanges it at
/// `POST /api/v1/miniapp/session`, then loads the first view.
pub async fn entry(State(state): State<AppState>) -> Result<Response, ApiError> {
    if !state.telegram.is_on() {
        return Err(super::off());
    }
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover";
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false,"historyEnabled":false}"#;
                meta name="color-scheme" content="light dark";
                title { "Tradecast" }
                link rel="stylesheet" href=(assets::url("miniapp.css"));
                // Telegram's script first (it reads the launch parameters), then htmx and ours.
                script src=(assets::url("vendor/telegram-web-app.js")) {}
                script src=(assets::url("vendor/htmx.min.js")) defer {}
                script src=(assets::url("miniapp.js")) defer {}
            }
            body data-session-url=(super::api::SESSION_PATH) {
                nav #tabs hidden {
                    button.tab type="button" data-view="plan" { "Plan" }
                    button.tab type="button" data-view="approvals" { "Approvals" }
                    button.tab type="button" data-view="analytics" { "Analytics" }
                }
                main #view aria-live="polite" {
                    p #status.hint { "Opening…" }
                    noscript { p { "The Tradecast Mini App needs JavaScript." } }
                }
                footer.hint {
                    "Tradecast hub " (env!("CARGO_PKG_VERSION")) " · includes Telegram's WebApp script ("
                    a href=(assets::url("vendor/telegram-web-app.LICENSE")) { "licence" } ") and htmx ("
                    a href=(assets::url("vendor/htmx.LICENSE")) { "licence" } ")"
                }
            }
        }
    };
    Ok(layout::html(markup))
}

/// The views' query: `?signal=<id>` opens one pending signal (`startapp=approve_<id>`).
#[derive(Debug, Default, Deserialize)]
pub struct ViewQuery {
    #[serde(default)]
    signal: Option<String>,
}

/// `GET /miniapp/app/{view}`: one view as an HTML fragment for `#view`.
pub async fn view(
    State(state): State<AppState>,
    Session(mini): Session,
    Path(view): Path<String>,
    Query(query): Query<ViewQuery>,
) -> Result<Response, ApiError> {
    let only = query.signal.filter(|s| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()));
    // What each view needs of the trader's plan: the plan view is open to every linked account
    // (it is where a plan is bought).
    let needs: &[&str] = match view.as_str() {
        "approvals" => &["mini_app"],
        "analytics" => &["mini_app", "analytics"],
        _ => &[],
    };
    if let Some(l) = &mini.linked {
        for feature in needs {
            let refused = crate::entitlements::require_feature(
                &state.db,
                &l.user_id,
                feature,
                state.now_ms(),
            )
            .await;
            if let Err(ApiError::PlanRequired { feature, plans }) = refused {
                let body = plan_required(&state, &feature, &plans).await?;
                let fragment = html! {
                    section.view data-view=(view) data-csrf=(mini.csrf) data-plan-required=(feature) { (body) }
                };
                return Ok((StatusCode::PAYMENT_REQUIRED, layout::html(fragment)).into_response());
            }
            refused?;
        }
    }
    let body = match (view.as_str(), &mini.linked) {
        ("plan" | "approvals" | "analytics", None) => unlinked(&state),
        ("plan", Some(l)) => plan(&state, l).await?,
        ("approvals", Some(l)) => approvals(&state, l, only.as_deref()).await?,
        ("analytics", Some(l)) => analytics(&state, l).await?,
        _ => return Err(ApiError::NotFound(format!("no Mini App view `{view}`"))),
    };
    let fragment = html! {
        section.view data-view=(view) data-csrf=(mini.csrf) { (body) }
    };
    Ok(layout::html(fragment))
}

/// What a view shows when the trader's plan lacks `feature` (answered 402 `plan-required`):
/// in words, with the plans on offer that include it and a button to the plan view.
async fn plan_required(
    state: &AppState,
    feature: &str,
    plans: &[String],
) -> Result<Markup, ApiError> {
    let offers = crate::plans::list(&state.db, None, false).await?;
    let names: Vec<String> = offers
        .iter()
        .filter(|p| plans.contains(&p.id))
        .map(|p| format!("{} ({})", p.name, fmt::money(p.price_minor, &p.currency)))
        .collect();
    Ok(html! {
        h1 { "Not in your plan" }
        p { "Your plan does not include " b { (account::feature_words(feature)) } "." }
        @if names.is_empty() {
            p.hint { "No plan on offer includes it yet." }
        } @else {
            p { "Plans that include it: " (names.join(", ")) "." }
            button.primary type="button" data-view-link="plan" { "See the plans" }
        }
    })
}

fn unlinked(state: &AppState) -> Markup {
    let url = super::api::link_url(state);
    html! {
        h1 { "Link your account" }
        p { "This Telegram account is not linked to a Tradecast account yet." }
        p.hint { "Sign in on the hub's account page and press " b { "Link Telegram" } ", then press Start in this bot's chat. Come back here afterwards." }
        button.primary type="button" data-action="open-link" data-url=(url) data-main="Link my account" { "Open the account page" }
    }
}

fn status_tag(s: ledger::Status) -> Markup {
    html! { span class=(format!("tag {}", account::tag_of(s))) { (s.describe()) } }
}

async fn plan(state: &AppState, l: &Linked) -> Result<Markup, ApiError> {
    let now = state.now_ms();
    let account::PlanData { subs, invoices, held, offers, has_customer, stripe_on } =
        account::PlanData::load(state, &l.user_id, now).await?;
    let plan_name = |id: &str| account::plan_name(&offers, id);
    let held_plans = account::held_plans(&subs, &held, now);
    // The main button pays for the first plan on offer the trader does not hold.
    let mut main_given = false;
    let mut main = |label: String| -> Option<String> {
        if main_given {
            None
        } else {
            main_given = true;
            Some(label)
        }
    };
    let by_hand: Vec<_> =
        held.iter().filter(|e| e.source == crate::entitlements::Source::Admin).collect();
    Ok(html! {
        h1 { "Plan & payment" }
        section.card #plan {
            h2 { "Your plan" }
            @if subs.is_empty() && held.is_empty() {
                p { "You have no plan yet: choose one below." }
            }
            @for s in &subs {
                div.row {
                    div {
                        b { (plan_name(&s.plan_id)) }
                        div.hint { (match s.door { ledger::Door::Stripe => "card (Stripe)", ledger::Door::TelegramStars => "Telegram Stars" }) " · " (account::renewal(s)) " UTC" }
                    }
                    (status_tag(s.status))
                }
            }
            @if !by_hand.is_empty() {
                p.hint { "Granted by the hub: "
                    @for (i, e) in by_hand.iter().enumerate() {
                        @if i > 0 { ", " }
                        (plan_name(&e.plan_id)) " (until " (e.ends_at_ms().map_or("no end".to_string(), |t| fmt::when(Some(t)))) ")"
                    }
                }
            }
            @if stripe_on && has_customer {
                button type="button" data-action="portal" { "Manage card, plan or cancellation" }
                p.hint { "Opens Stripe's page in your browser." }
            }
        }
        section.card #offers {
            h2 { "Plans on offer" }
            @if offers.is_empty() { p.hint { "No plan is on offer yet." } }
            @for o in &offers {
                article.offer {
                    div.row {
                        b { (o.plan.name) }
                        span { (fmt::money(o.plan.price_minor, &o.plan.currency)) " / " (o.plan.period_days) " days" }
                    }
                    div.hint { "by " (o.provider_name)
                        @if o.plan.trial_days > 0 { " · " (o.plan.trial_days) " days free" } }
                    div.hint { "Includes: " (o.plan.features.iter().map(|f| account::feature_words(f)).collect::<Vec<_>>().join(", ")) }
                    @if held_plans.contains(&o.plan.id.as_str()) {
                        p { span.tag.ok { "your plan" } }
                    } @else if o.door == ledger::Door::TelegramStars {
                        button.primary type="button" data-action="stars" data-plan=(o.plan.id)
                            data-main=[main(format!("Pay {} with Stars", o.plan.name))] { "Pay with Telegram Stars" }
                    } @else if o.plan.price_minor == 0 {
                        p.hint { "Free: ask the hub's owner to grant it." }
                    } @else if stripe_on {
                        button.primary type="button" data-action="checkout" data-plan=(o.plan.id)
                            data-main=[main(format!("Subscribe to {} by card", o.plan.name))] { "Subscribe by card" }
                        p.hint { "Card payment opens in your browser." }
                    } @else {
                        p.hint { "Card payments are not set up on this hub yet." }
                    }
                }
            }
        }
        section.card #invoices {
            h2 { "Invoices" }
            @if invoices.is_empty() { p.hint { "No invoice yet." } }
            @for i in &invoices {
                div.row {
                    div {
                        (fmt::money(i.amount_due_minor, &i.currency))
                        div.hint { (fmt::when(Some(i.created_at_ms))) " UTC"
                            @if i.amount_refunded_minor > 0 { " · refunded " (fmt::money(i.amount_refunded_minor, &i.currency)) } }
                    }
                    span.tag { (i.status) }
                }
            }
        }
    })
}

/// A pending signal as the Approvals view shows it.
struct PendingCard {
    row: approvals::PendingRow,
    symbol: String,
    side: String,
    entry: String,
    stop: String,
    tp1: String,
    device_name: String,
    /// The latest request for it, if any.
    request: Option<approvals::ApprovalRequest>,
    /// What the device decided (its signed approval), if it did.
    decision: Option<String>,
}

/// How often the approvals stream looks for a change.
pub const LIVE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// What the Approvals view shows, as a short hash: a change of it is a change of the view (a
/// new pending signal, a request sent, the node's answer, a decision, an expiry). The view
/// carries the hash it was rendered from (`data-live-state`) and the stream sends the new one, so
/// the app reloads the view only when it is out of date.
async fn approvals_state(state: &AppState, l: &Linked) -> Result<String, ApiError> {
    Ok(state_of_cards(&pending_cards(state, l).await?, state.now_ms()))
}

fn state_of_cards(cards: &[PendingCard], now: i64) -> String {
    use sha2::Digest;
    let mut key = String::new();
    for c in cards {
        let r = &c.row;
        let q = c.request.as_ref();
        key.push_str(&format!(
            "{} {} {:?} {:?} {} {:?} {:?} {:?} {:?}\n",
            r.signal_id,
            r.device_id,
            r.outcome,
            r.decided_at_ms,
            r.expires_at_ms > now,
            q.map(|q| &q.id),
            q.and_then(|q| q.outcome.as_ref()),
            q.and_then(|q| q.consumed_at_ms),
            c.decision,
        ));
    }
    hex::encode(&sha2::Sha256::digest(key.as_bytes())[..12])
}

/// `GET /miniapp/app/approvals/events` (bearer, like the views): a stream of server-sent events,
/// `change` whenever what the Approvals view shows changes (checked every [`LIVE_EVERY`]), so the
/// app reloads the view at once instead of polling it. The stream ends when the session does
/// (24 h after Telegram's `auth_date`). The app reads it with `fetch` (an `EventSource` cannot
/// carry the bearer token).
pub async fn approval_events(
    State(state): State<AppState>,
    Session(mini): Session,
) -> Result<Response, ApiError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let Some(linked) = mini.linked.clone() else {
        return Err(ApiError::Validation("link your account first".into()));
    };
    crate::entitlements::require_feature(&state.db, &linked.user_id, "mini_app", state.now_ms())
        .await?;
    let first = approvals_state(&state, &linked).await?;
    let ends_at_ms = mini.expires_at_ms;
    let stream = futures::stream::unfold(
        (state, linked, first, ends_at_ms),
        |(state, linked, mut last, ends_at_ms)| async move {
            loop {
                tokio::time::sleep(LIVE_EVERY).await;
                if state.now_ms() >= ends_at_ms {
                    return None;
                }
                let now = match approvals_state(&state, &linked).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "mini app approvals stream: state unavailable");
                        continue;
                    }
                };
                if now != last {
                    last = now.clone();
                    let event = Event::default().event("change").data(now);
                    return Some((
                        Ok::<_, std::convert::Infallible>(event),
                        (state, linked, last, ends_at_ms),
                    ));
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

async fn pending_cards(state: &AppState, l: &Linked) -> Result<Vec<PendingCard>, ApiError> {
    let rows = approvals::pending_of_user(&state.db, &l.user_id, 50).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let r = sqlx::query(
            "SELECT s.symbol, s.side, s.entry, s.stop, s.tp1, d.name, o.decision FROM signals s \
             JOIN devices d ON d.id = $2 LEFT JOIN signal_outcomes o \
             ON o.signal_id = s.id AND o.device_id = d.id WHERE s.id = $1",
        )
        .bind(&row.signal_id)
        .bind(&row.device_id)
        .fetch_optional(state.db.pool())
        .await
        .map_err(DbError::from)?;
        let Some(r) = r else { continue };
        let request = approvals::last_request(&state.db, &row.signal_id, &row.device_id).await?;
        let get = |i: usize| r.try_get::<String, _>(i).map_err(DbError::from);
        out.push(PendingCard {
            symbol: get(0)?,
            side: get(1)?,
            entry: get(2)?,
            stop: get(3)?,
            tp1: get(4)?,
            device_name: get(5)?,
            decision: r.try_get(6).map_err(DbError::from)?,
            request,
            row,
        });
    }
    Ok(out)
}

/// "in 4 min 10 s" / "passed".
fn countdown(ms: i64) -> String {
    if ms <= 0 {
        return "time is up".into();
    }
    let s = ms / 1000;
    match s {
        0..60 => format!("{s} s left"),
        60..3600 => format!("{} min {} s left", s / 60, s % 60),
        _ => format!("{} h {} min left", s / 3600, (s % 3600) / 60),
    }
}

fn answer_words(req: &approvals::ApprovalRequest) -> String {
    let asked = crate::telegram::approve::ask_words(&req.decision, req.lots.as_deref());
    match req.outcome.as_deref() {
        None => format!("Sent to your app: {asked}. Waiting for its answer…"),
        Some("applied") => format!("Applied: your app did it ({asked})."),
        Some(reason) => {
            let words = tradecast_protocol::RefusalReason::parse(reason)
                .map(crate::telegram::approve::refusal_words)
                .unwrap_or(reason);
            format!("Refused by your app ({asked}): {words}.")
        }
    }
}

fn pending_card(c: &PendingCard, now: i64, main: bool, setup: Option<&str>) -> Markup {
    let r = &c.row;
    let key = format!("{}-{}", r.signal_id, r.device_id);
    let open_request =
        c.request.as_ref().filter(|q| q.outcome.is_none() && q.consumed_at_ms.is_none());
    let waiting = r.decided_at_ms.is_none() && r.expires_at_ms > now;
    let lots_id = format!("lots-{key}");
    html! {
        article.pending id=(format!("p-{key}")) data-signal=(r.signal_id) {
            div.row {
                div {
                    b { (c.side.to_uppercase()) " " (c.symbol) } " at " code { (crate::telegram::price(&c.entry)) }
                    div.hint { "SL " (crate::telegram::price(&c.stop)) " · TP " (crate::telegram::price(&c.tp1)) " · " (c.device_name) }
                }
                @if waiting {
                    span.tag.warn data-expires=(r.expires_at_ms) { (countdown(r.expires_at_ms - now)) }
                } @else if let Some(d) = &c.decision {
                    span.tag.ok { (d) }
                } @else if r.outcome.as_deref() == Some("applied") {
                    span.tag.ok { "applied" }
                } @else if r.outcome.is_some() {
                    span.tag.bad { "refused" }
                } @else if r.expires_at_ms <= now {
                    span.tag { "expired" }
                } @else {
                    span.tag { "decided" }
                }
            }
            @if let Some(uri) = setup {
                img.setup src=(uri) width=(crate::charts::WIDTH) height=(crate::charts::HEIGHT)
                    alt=(format!("The setup of {} {}: entry, stop and targets", c.side.to_uppercase(), c.symbol));
            }
            div { "Lots your rules allow: " b { (r.min_lots.normalize()) " – " (r.max_lots.normalize()) } }
            @if let Some(p) = &r.preview {
                div.hint { "Risk at " (p.lots.normalize()) " lots: " (format!("{:.2}", p.risk_money.round_dp(2))) " " (p.currency) " (" (p.risk_percent.round_dp(2).normalize()) " % of equity)" }
            }
            @if !r.blocking.is_empty() {
                p.notice { "Your app would refuse it now: "
                    (r.blocking.iter().map(|b| crate::telegram::approve::blocking_words(b)).collect::<Vec<_>>().join(", ")) }
            }
            @if let Some(q) = &c.request {
                p.answer { (answer_words(q)) }
            }
            @if waiting && open_request.is_none() {
                button.primary type="button" data-action="decide" data-signal=(r.signal_id) data-device=(r.device_id)
                    data-decision="approved" data-main=[main.then(|| format!("Approve {} {}", c.side.to_uppercase(), c.symbol))] {
                    @if let Some(p) = &r.preview { "Approve " (p.lots.normalize()) " lots" } @else { "Approve" }
                }
                div.actions {
                    label for=(lots_id) { "Another size" }
                    input id=(lots_id) type="number" inputmode="decimal" step="any"
                        min=(r.min_lots.normalize()) max=(r.max_lots.normalize()) value=(r.min_lots.normalize());
                    button type="button" data-action="decide" data-signal=(r.signal_id) data-device=(r.device_id)
                        data-decision="approved" data-lots-from=(lots_id) { "Approve this size" }
                }
                div.actions {
                    button type="button" data-action="decide" data-signal=(r.signal_id) data-device=(r.device_id)
                        data-decision="rejected" { "Reject" }
                }
            }
        }
    }
}

/// Waiting signals shown with their setup picture (the first ones).
const SETUPS_SHOWN: usize = 10;

async fn approvals(
    state: &AppState,
    l: &Linked,
    only_signal: Option<&str>,
) -> Result<Markup, ApiError> {
    let now = state.now_ms();
    let mut cards = pending_cards(state, l).await?;
    let live_state = state_of_cards(&cards, now);
    if let Some(s) = only_signal {
        cards.retain(|c| c.row.signal_id == s);
    }
    let (waiting, done): (Vec<&PendingCard>, Vec<&PendingCard>) =
        cards.iter().partition(|c| c.row.decided_at_ms.is_none() && c.row.expires_at_ms > now);
    // Each waiting signal's setup, inline (`data:`: the view is fetched with the bearer session,
    // which an `<img>` request could not carry), rendered now: these are signals this user's
    // devices wait on, so no public delay applies.
    let mut setups = std::collections::HashMap::new();
    for c in waiting.iter().take(SETUPS_SHOWN) {
        let id = &c.row.signal_id;
        let theme = crate::charts::Theme::Light;
        match crate::public::media::signal_setup_png(&state.db, &state.hub_identity, id, theme)
            .await
        {
            Ok(Some(png)) => {
                let uri = format!("data:image/png;base64,{}", data_encoding::BASE64.encode(&png));
                setups.insert(id.clone(), uri);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "rendering a pending signal's setup failed"),
        }
    }
    let devices = crate::devices::list(&state.db, Some(&l.user_id)).await?;
    Ok(html! {
        h1 data-live-state=(live_state) { "Approvals" }
        section.card #pending {
            h2 { "Waiting for you" }
            @if waiting.is_empty() {
                p.hint { "Nothing is waiting. With remote approval on in your Tradecast app (Settings → Approval), \
                          each signal your rules do not approve by themselves appears here and in the bot's chat." }
            }
            @for (i, c) in waiting.iter().enumerate() {
                (pending_card(c, now, i == 0, setups.get(&c.row.signal_id).map(String::as_str)))
            }
            @if only_signal.is_some() {
                button type="button" data-action="view" data-view="approvals" { "All pending signals" }
            }
        }
        @if !done.is_empty() {
            section.card #decided {
                h2 { "Decided" }
                @for c in done.iter().take(10) {
                    (pending_card(c, now, false, None))
                }
            }
        }
        p.hint { "Your Tradecast app decides every signal within its own rules: a decision from here is a request it may refuse (and says why)." }
        @if devices.iter().all(|d| d.revoked_at_ms.is_some()) {
            p.hint { "No device yet: enrol the Tradecast app from your account page." }
        }
    })
}

/// The providers whose public record the account can follow: its own (a provider), or those of
/// the plans it holds now.
async fn providers_of(state: &AppState, l: &Linked) -> Result<Vec<(String, String)>, DbError> {
    if l.role == Role::Provider {
        return Ok(vec![(l.user_id.clone(), l.name.clone())]);
    }
    let sql = crate::sql!(
        "SELECT DISTINCT u.id, COALESCE(NULLIF(u.display_name, ''), u.id) FROM entitlements e \
         JOIN plans p ON p.id = e.plan_id JOIN users u ON u.id = p.provider_user_id \
         WHERE e.user_id = $1 AND u.role = 'provider' AND {} ORDER BY 2",
        crate::entitlements::active_sql(2)
    );
    let rows =
        sqlx::query(sql).bind(&l.user_id).bind(state.now_ms()).fetch_all(state.db.pool()).await?;
    rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
}

async fn analytics(state: &AppState, l: &Linked) -> Result<Markup, ApiError> {
    let recent = recent_signals(state, &l.user_id, l.role, 50).await?;
    let filled = recent
        .iter()
        .filter(|s| s.outcomes.iter().any(|o| matches!(o, DeviceOutcome::Filled { .. })))
        .count();
    let decided = recent
        .iter()
        .filter(|s| {
            !s.outcomes.is_empty()
                && s.outcomes.iter().all(|o| !matches!(o, DeviceOutcome::Filled { .. }))
        })
        .count();
    let absent = recent.iter().filter(|s| s.outcomes.is_empty()).count();
    let providers = providers_of(state, l).await?;
    let base = state.config.public_url.as_ref().map(|u| u.as_str().to_string()).unwrap_or_default();
    let own = own_money(state, &l.user_id).await?;
    let copied = crate::analytics::fidelity::copy_fidelity(
        &crate::public::store::deliveries_to(
            &state.db,
            &l.user_id,
            state.now_ms().saturating_add(1),
        )
        .await?,
    );
    Ok(html! {
        h1 { "Analytics" }
        section.card #outcomes {
            h2 { "Your recent signals" }
            @if recent.is_empty() {
                p.hint { "No signals yet." }
            } @else {
                div.figures {
                    div { b { (filled) } span.hint { "filled" } }
                    div { b { (decided) } span.hint { "not taken" } }
                    div { b { (absent) } span.hint { "not on your devices" } }
                }
                p.hint { "The last " (recent.len()) ", from the outcomes your devices signed and sent to the hub." }
            }
        }
        section.card #records {
            h2 { "Provider's public record" }
            @if providers.is_empty() { p.hint { "Hold a plan to follow its provider's record here." } }
            @for (id, name) in &providers {
                div.row {
                    b { (name) }
                    button type="button" data-action="open-link" data-url=(format!("{base}/p/{id}")) { "Open record" }
                }
            }
        }
        @if copied.deliveries > 0 {
            section.card #copied {
                h2 { "How your devices copied" }
                div.figures {
                    div { b { (copied.filled) "/" (copied.deliveries) } span.hint { "filled" } }
                    div { b { (copied.latency_ms_p50.map_or_else(|| "n/a".to_string(), |v| format!("{v} ms"))) } span.hint { "median to fill" } }
                    div { b { (copied.slippage_pips_p50.map_or_else(|| "n/a".to_string(), |v| format!("{v}"))) } span.hint { "median slippage, pips" } }
                }
                p.hint { "From what your devices signed: each decision and each fill, against the signal's entry and the hub's receipt of it (slippage: positive is worse for you)." }
            }
        }
        section.card #own {
            h2 { "Your account" }
            @if own.is_empty() {
                p.hint #own-none {
                    "Your equity, drawdown and profit and loss stay on your own computer unless you \
                     publish them: tick what to publish under Settings → Publishing in the Tradecast \
                     app (it becomes part of your public track record), and your figures appear here."
                }
            }
            @for (i, (m, periods)) in own.iter().enumerate() {
                (crate::public::page::money_section(i, m, "Your node"))
                @if !periods.days.is_empty() {
                    h4 { "By day (UTC, latest " (PERIODS_SHOWN) ")" }
                    (period_table("days", "Day", &periods.days))
                    h4 { "By week (ISO)" }
                    (period_table("weeks", "Week", &periods.weeks))
                }
            }
            @if !own.is_empty() {
                div.actions {
                    button type="button" data-action="export" data-kind="csv" { "Download trades (CSV)" }
                    button type="button" data-action="export" data-kind="png" { "Download equity (PNG)" }
                    button type="button" data-action="share" { "Share a redacted link" }
                }
            }
        }
    })
}

/// The trader's own money figures: each of their devices' published stream (what they chose to
/// publish, signed by their node), through the track-record engine the public page uses; no
/// publication delay (it is their own account). Devices that publish nothing are left out.
/// Days (and weeks) listed in the trader's P&L by period.
const PERIODS_SHOWN: usize = 14;

/// One period's closed trades: its key, how many, their net (profit + commission + swap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodPnl {
    /// `2026-12-07` or `2026-W49`.
    pub key: String,
    /// Trades closed in it.
    pub n_trades: u64,
    /// Their net.
    pub net: rust_decimal::Decimal,
}

/// A device's closed trades by UTC day and by ISO week, latest first ([`PERIODS_SHOWN`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Periods {
    /// By UTC day.
    pub days: Vec<PeriodPnl>,
    /// By ISO week.
    pub weeks: Vec<PeriodPnl>,
}

/// [`Periods`] of the closed trades in `records` (a ticket published twice counts once, as in
/// the track record).
pub fn periods(records: &[tradecast_protocol::Record]) -> Periods {
    let mut days: std::collections::BTreeMap<String, PeriodPnl> = Default::default();
    let mut weeks: std::collections::BTreeMap<String, PeriodPnl> = Default::default();
    for t in super::export::closed_trades(records) {
        let Ok(at) = jiff::Timestamp::from_millisecond(t.closed_at_ms) else { continue };
        let date = jiff::tz::Offset::UTC.to_datetime(at).date();
        let week = date.iso_week_date();
        // A trade whose figures overflow a decimal (signed, but not trusted) is left out.
        let Some(net) = t.profit.checked_add(t.commission).and_then(|n| n.checked_add(t.swap))
        else {
            continue;
        };
        for (map, key) in [
            (&mut days, date.to_string()),
            (&mut weeks, format!("{}-W{:02}", week.year(), week.week())),
        ] {
            let p = map.entry(key.clone()).or_insert(PeriodPnl {
                key,
                n_trades: 0,
                net: Default::default(),
            });
            if let Some(sum) = p.net.checked_add(net) {
                p.n_trades += 1;
                p.net = sum;
            }
        }
    }
    let latest = |m: std::collections::BTreeMap<String, PeriodPnl>| {
        m.into_values().rev().take(PERIODS_SHOWN).collect()
    };
    Periods { days: latest(days), weeks: latest(weeks) }
}

fn period_table(id: &str, what: &str, rows: &[PeriodPnl]) -> Markup {
    html! {
        table id=(format!("pnl-{id}")) {
            thead { tr { th { (what) } th.num { "Trades" } th.num { "Net" } } }
            tbody { @for p in rows { tr { td { (p.key) } td.num { (p.n_trades) } td.num { (p.net) } } } }
        }
    }
}

async fn own_money(
    state: &AppState,
    user_id: &str,
) -> Result<Vec<(crate::analytics::MoneyFigures, Periods)>, ApiError> {
    let mut out = Vec::new();
    for (author, records) in super::export::published_by_device(state, user_id).await? {
        let figures =
            crate::analytics::money_figures(author, &records).map_err(ApiError::internal)?;
        out.push((figures, periods(&records)));
    }
    Ok(out)
}

/// The form of an action.
#[derive(Debug, Default, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    plan_id: String,
}

/// Where an action leads: a Stars invoice for `openInvoice`, or a page for `openLink`.
#[derive(Debug, Serialize)]
pub struct Opened {
    /// `invoice` or `link`.
    pub kind: &'static str,
    /// The URL.
    pub url: String,
}

/// The linked account of a POST that carries the session's CSRF token.
pub(crate) fn checked<'a>(mini: &'a Mini, headers: &HeaderMap) -> Result<&'a Linked, ApiError> {
    if !csrf_ok(mini, headers) {
        return Err(ApiError::Forbidden(
            "the action's security token (X-CSRF-Token) is missing or wrong; reopen the app".into(),
        ));
    }
    mini.linked.as_ref().ok_or_else(|| {
        ApiError::Forbidden("link this Telegram account to a Tradecast account first".into())
    })
}

fn opened(kind: &'static str, url: String) -> Response {
    (StatusCode::OK, axum::Json(Opened { kind, url })).into_response()
}

/// `POST /miniapp/app/stars`: a Telegram Stars invoice link for the plan.
pub async fn stars(
    State(state): State<AppState>,
    Session(mini): Session,
    headers: HeaderMap,
    form: Result<Form<ActionForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, ApiError> {
    let l = checked(&mini, &headers)?;
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let url = crate::billing::stars_door::invoice_link(&state, &l.user_id, &form.plan_id).await?;
    Ok(opened("invoice", url))
}

/// `POST /miniapp/app/checkout`: Stripe Checkout for the plan (opened outside Telegram).
pub async fn checkout(
    State(state): State<AppState>,
    Session(mini): Session,
    headers: HeaderMap,
    form: Result<Form<ActionForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, ApiError> {
    let l = checked(&mini, &headers)?;
    let form = form.map(|Form(f)| f).unwrap_or_default();
    Ok(opened("link", stripe_door::checkout(&state, &l.user_id, &form.plan_id).await?))
}

/// `POST /miniapp/app/portal`: the Stripe Customer Portal (opened outside Telegram).
pub async fn portal(
    State(state): State<AppState>,
    Session(mini): Session,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let l = checked(&mini, &headers)?;
    Ok(opened("link", stripe_door::portal(&state, &l.user_id).await?))
}

/// The form of a decision.
#[derive(Debug, Default, Deserialize)]
pub struct DecideForm {
    #[serde(default)]
    signal_id: String,
    #[serde(default)]
    device_id: String,
    #[serde(default)]
    decision: String,
    /// Empty: the node's own size.
    #[serde(default)]
    lots: String,
}

/// What a decision sent.
#[derive(Debug, Serialize)]
pub struct Decided {
    /// `decided`.
    pub kind: &'static str,
    /// The request sent to the node.
    pub request: approvals::ApprovalRequest,
}

/// `POST /miniapp/app/decide` (`signal_id`, `device_id`, `decision`, optional `lots`): sends the
/// decision to the device as a hub-signed request (channel `mini_app`), exactly like the bot's
/// button. 201 with the request; the view shows the node's answer when it arrives.
pub async fn decide(
    State(state): State<AppState>,
    Session(mini): Session,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    form: Result<Form<DecideForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, ApiError> {
    let l = checked(&mini, &headers)?;
    crate::entitlements::require_feature(&state.db, &l.user_id, "mini_app", state.now_ms()).await?;
    let form = form.map(|Form(f)| f).map_err(|e| ApiError::InvalidBody(e.body_text()))?;
    let lots = Some(form.lots.trim().to_owned()).filter(|s| !s.is_empty());
    let new = approvals::NewApprovalRequest {
        signal_id: form.signal_id,
        device_id: form.device_id,
        decision: form.decision,
        channel: "mini_app".into(),
        lots,
        expires_at_ms: None,
    };
    let asker =
        approvals::Asker { user_id: &l.user_id, telegram_user_id: Some(mini.telegram_user_id) };
    let request = approvals::request(&state, &asker, &new, &request_id).await?;
    Ok((StatusCode::CREATED, axum::Json(Decided { kind: "decided", request })).into_response())
}

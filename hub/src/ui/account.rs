//! The subscriber's own pages: sign-up, the account page (plan and its state, invoices, plans on
//! offer, devices and enrolment codes), the way back from Stripe, and the device link a node
//! opens to reach them without a hub password.
//!
//! | route | |
//! | --- | --- |
//! | `GET /signup` (`ref`), `POST /signup` | a subscriber account, signed in at once |
//! | `GET /account` | the account page of any signed-in account |
//! | `POST /account/checkout` (`plan_id`) | 303 to Stripe Checkout |
//! | `POST /account/portal` | 303 to the Stripe Customer Portal |
//! | `POST /account/enrolment-code` | a new single-use device enrolment code, shown once |
//! | `POST /account/telegram-link` | 303 to a one-time `t.me/<bot>?start=<code>` link |
//! | `POST /account/stars` (`plan_id`) | 303 to a Telegram Stars invoice link (a 30-day subscription) |
//! | `POST /account/telegram-unlink` | ends the account's Telegram link |
//! | `POST /account/share-links` (`label`), `POST /account/share-links/{id}/revoke` | redacted share links ([`crate::share`]) |
//! | `GET /billing/return` (`session_id`) | back from Checkout: the customer re-read from Stripe, 303 to `/account` |
//! | `GET /device-link` (`device`, `action`, `ts`, `sig`) | a node's signed link: signs its account in and opens checkout, portal or the Telegram link |

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use tradecast_protocol::device_link::{self, Action};

use super::PageError;
use super::fmt;
use super::layout::{self, Frame, Notice};
use super::session::{self, Member, Signed, csrf_ok};
use crate::api::extract::{ClientIp, RequestId, enforce};
use crate::billing::{api as billing_api, ledger, stripe_door};
use crate::db::DbError;
use crate::error::ApiError;
use crate::state::AppState;

/// `?checkout=`, `?done=` notices.
#[derive(Debug, Default, Deserialize)]
pub struct AccountQuery {
    checkout: Option<String>,
}

/// `GET /account`.
pub async fn show(
    State(state): State<AppState>,
    Member(signed): Member,
    Query(q): Query<AccountQuery>,
) -> Result<Response, PageError> {
    let notice = match q.checkout.as_deref() {
        Some("done") => Some(Notice::Ok("Thank you: your payment went through.".into())),
        Some("cancelled") => {
            Some(Notice::Err("Checkout was cancelled: nothing was charged.".into()))
        }
        Some("refused") => Some(Notice::Err(
            "That plan cannot be bought from here now: you may hold it already, or card payments \
             are off."
                .into(),
        )),
        _ => None,
    };
    Ok(layout::html(render(&state, &signed, notice.as_ref()).await?))
}

/// What the trader's plan pages show (the account page here and the Mini App's plan view): their
/// subscriptions, invoices, the entitlements in force, the plans on offer, whether Stripe is on
/// and knows them as a customer.
pub(crate) struct PlanData {
    pub subs: Vec<ledger::Subscription>,
    pub invoices: Vec<ledger::Invoice>,
    pub held: Vec<crate::entitlements::Entitlement>,
    pub offers: Vec<billing_api::Offer>,
    pub has_customer: bool,
    pub stripe_on: bool,
}

impl PlanData {
    /// `user_id`'s plan data at `now`.
    pub async fn load(state: &AppState, user_id: &str, now: i64) -> Result<PlanData, ApiError> {
        Ok(PlanData {
            subs: ledger::subscriptions_of(&state.db, user_id).await?,
            invoices: ledger::invoices_of(&state.db, user_id).await?,
            held: crate::entitlements::active_at(&state.db, user_id, now).await?,
            offers: billing_api::offers(state).await?,
            has_customer: stripe_door::known_customer(&state.db, user_id).await?.is_some(),
            stripe_on: state.billing.stripe.is_on(),
        })
    }
}

/// The plans on offer grouped by the product they sell, in the order products first appear.
pub(crate) struct ProductOffers<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub description: &'a str,
    pub provider_name: &'a str,
    pub offers: Vec<&'a billing_api::Offer>,
}

/// [`ProductOffers`] of `offers`.
pub(crate) fn by_product(offers: &[billing_api::Offer]) -> Vec<ProductOffers<'_>> {
    let mut out: Vec<ProductOffers<'_>> = Vec::new();
    for o in offers {
        match out.iter_mut().find(|g| g.id == o.plan.product_id) {
            Some(g) => g.offers.push(o),
            None => out.push(ProductOffers {
                id: &o.plan.product_id,
                name: &o.product_name,
                description: &o.product_description,
                provider_name: &o.provider_name,
                offers: vec![o],
            }),
        }
    }
    out
}

/// A plan's name from the offers (its id when it is no longer on offer).
pub(crate) fn plan_name(offers: &[billing_api::Offer], id: &str) -> String {
    offers.iter().find(|o| o.plan.id == id).map_or_else(|| id.to_string(), |o| o.plan.name.clone())
}

/// The plans the trader holds at `now`: paid and covered, or granted.
pub(crate) fn held_plans<'a>(
    subs: &'a [ledger::Subscription],
    held: &'a [crate::entitlements::Entitlement],
    now: i64,
) -> Vec<&'a str> {
    subs.iter()
        .filter(|s| s.covered_until_ms > now)
        .map(|s| s.plan_id.as_str())
        .chain(held.iter().map(|e| e.plan_id.as_str()))
        .collect()
}

/// The account page for `signed`, with `notice` on top.
pub(crate) async fn render(
    state: &AppState,
    signed: &Signed,
    notice: Option<&Notice>,
) -> Result<Markup, PageError> {
    let me = &signed.user;
    let now = state.now_ms();
    let PlanData { subs, invoices, held, offers, has_customer, stripe_on } =
        PlanData::load(state, &me.id, now).await?;
    let plan_name = |id: &str| plan_name(&offers, id);
    let products = by_product(&offers);
    let held_plans = held_plans(&subs, &held, now);
    let devices = crate::devices::list(&state.db, Some(&me.id)).await?;
    let telegram = crate::telegram::link::of_user(&state.db, &me.id).await?;
    let telegram_on = state.telegram.is_on();
    let share_links = crate::share::list(state, &me.id).await?;
    let body = html! {
        section #plan {
            h2 { "Your plan" }
            @if subs.is_empty() && held.is_empty() {
                p { "You have no plan yet: choose one below." }
            }
            @if !subs.is_empty() {
                table #subscriptions {
                    thead { tr { th { "Plan" } th { "Paid by" } th { "State" } th { "Renews or ends (UTC)" } } }
                    tbody {
                        @for s in &subs {
                            tr {
                                td { (plan_name(&s.plan_id)) }
                                td { (match s.door { ledger::Door::Stripe => "card (Stripe)", ledger::Door::TelegramStars => "Telegram Stars" }) }
                                td { span class=(format!("tag {}", tag_of(s.status))) { (s.status.describe()) } }
                                td.nowrap { (renewal(s)) }
                            }
                        }
                    }
                }
            }
            @let by_hand: Vec<_> = held.iter().filter(|e| e.source == crate::entitlements::Source::Admin).collect();
            @if !by_hand.is_empty() {
                p.mute { "Granted by the hub: "
                    @for (i, e) in by_hand.iter().enumerate() {
                        @if i > 0 { ", " }
                        (plan_name(&e.plan_id)) " (until " (e.ends_at_ms().map_or("no end".to_string(), |t| fmt::when(Some(t)))) ")"
                    }
                }
            }
            @if stripe_on && has_customer {
                form method="post" action="/account/portal" {
                    input type="hidden" name="csrf" value=(signed.csrf);
                    button type="submit" { "Manage card, plan or cancellation" }
                }
            }
        }
        section #offers {
            h2 { "Plans on offer" }
            @if offers.is_empty() { p.mute { "No plan is on offer yet." } }
            @for g in &products {
                article.offer id=(format!("product-{}", g.id)) {
                    h3 { (g.name) " · " span.mute { "by " (g.provider_name) } }
                    @if !g.description.is_empty() { p { (g.description) } }
                    @for o in &g.offers {
                        div.plan-option id=(format!("plan-{}", o.plan.id)) {
                            @if g.offers.len() > 1 || o.plan.name != g.name { h4 { (o.plan.name) } }
                            p { strong { (fmt::money(o.plan.price_minor, &o.plan.currency)) } " every " (o.plan.period_days) " days"
                                @if o.plan.trial_days > 0 { " · " (o.plan.trial_days) " days free" } }
                            @if !o.plan.description.is_empty() && o.plan.description != g.description { p { (o.plan.description) } }
                            p.mute { "Includes: " (o.plan.features.iter().map(|f| feature_words(f)).collect::<Vec<_>>().join(", ")) }
                            @if held_plans.contains(&o.plan.id.as_str()) {
                                p { span.tag.ok { "your plan" } }
                            } @else if o.door == ledger::Door::TelegramStars && telegram_on {
                                form method="post" action="/account/stars" {
                                    input type="hidden" name="csrf" value=(signed.csrf);
                                    input type="hidden" name="plan_id" value=(o.plan.id);
                                    button.primary type="submit" { "Pay with Telegram Stars" }
                                }
                                p.mute { "Opens the invoice in Telegram; Telegram renews it every 30 days until you cancel there." }
                            } @else if o.door == ledger::Door::TelegramStars {
                                p.mute { "Sold for Telegram Stars: the hub's Telegram bot is not set up yet." }
                            } @else if o.plan.price_minor == 0 {
                                p.mute { "Free: ask the hub's owner to grant it." }
                            } @else if stripe_on {
                                form method="post" action="/account/checkout" {
                                    input type="hidden" name="csrf" value=(signed.csrf);
                                    input type="hidden" name="plan_id" value=(o.plan.id);
                                    button.primary type="submit" { "Subscribe by card" }
                                }
                            } @else {
                                p.mute { "Card payments are not set up on this hub yet." }
                            }
                        }
                    }
                }
            }
        }
        section #invoices {
            h2 { "Invoices" }
            table {
                thead { tr { th { "Issued (UTC)" } th { "Period" } th { "Amount" } th { "Paid" } th { "Refunded" } th { "State" } th {} } }
                tbody {
                    @for i in &invoices {
                        tr {
                            td.nowrap { (fmt::when(Some(i.created_at_ms))) }
                            td.nowrap { (fmt::when(Some(i.period_start_ms))) " – " (fmt::when(Some(i.period_end_ms))) }
                            td { (fmt::money(i.amount_due_minor, &i.currency)) }
                            td { (fmt::money(i.amount_paid_minor, &i.currency)) }
                            td { (fmt::money(i.amount_refunded_minor, &i.currency)) }
                            td { (i.status) }
                            td { @if let Some(u) = &i.hosted_url { a href=(u) rel="noopener noreferrer" { "View" } } }
                        }
                    }
                    @if invoices.is_empty() { (fmt::none_row(7, "No invoice yet.")) }
                }
            }
        }
        section #devices {
            h2 { "Your devices" }
            table {
                thead { tr { th { "Name" } th { "Device" } th { "Enrolled (UTC)" } th { "State" } } }
                tbody {
                    @for d in &devices {
                        tr {
                            td { (d.name) }
                            td { (fmt::short(&d.id)) }
                            td.nowrap { (fmt::when(Some(d.enrolled_at_ms))) }
                            td { @if d.revoked_at_ms.is_some() { span.tag.bad { "revoked" } } @else { span.tag.ok { "active" } } }
                        }
                    }
                    @if devices.is_empty() { (fmt::none_row(4, "No device yet: make an enrolment code and enter it in the Tradecast app.")) }
                }
            }
            form method="post" action="/account/enrolment-code" {
                input type="hidden" name="csrf" value=(signed.csrf);
                button type="submit" { "New enrolment code" }
            }
        }
        section #telegram {
            h2 { "Telegram" }
            @if let Some(t) = &telegram {
                p {
                    "Linked to "
                    b { @if let Some(u) = &t.username { "@" (u) } @else { (t.first_name) } }
                    " since " (fmt::when(Some(t.linked_at_ms))) " (UTC)."
                    @if t.blocked_at_ms.is_some() { " " span.tag.warn { "the bot is blocked in Telegram" } }
                }
                p.mute { "Choose your notifications with /settings in the bot." }
                form method="post" action="/account/telegram-unlink" {
                    input type="hidden" name="csrf" value=(signed.csrf);
                    button type="submit" { "Unlink Telegram" }
                }
            } @else if telegram_on {
                p { "Get your alerts in Telegram and ask the bot for your plan and devices." }
                form method="post" action="/account/telegram-link" {
                    input type="hidden" name="csrf" value=(signed.csrf);
                    button.primary type="submit" { "Link Telegram" }
                }
                p.mute { "Opens the bot in Telegram with a one-time link (valid " (state.config.telegram.link_code_ttl_s / 60) " minutes): press Start there." }
            } @else {
                p.mute { "Telegram is not set up on this hub." }
            }
        }
        (crate::share::account_section(&share_links, &signed.csrf))
    };
    let frame = Frame { signed, title: "Your account", active: "/account", notice };
    Ok(layout::page(&frame, body))
}

/// A plan feature in a subscriber's words.
pub fn feature_words(feature: &str) -> &str {
    match feature {
        "signals" => "the provider's signals",
        "auto_copy" => "automatic copying",
        "telegram" => "Telegram alerts",
        "mini_app" => "the Telegram Mini App",
        "analytics" => "analytics",
        other => other,
    }
}

pub(crate) fn tag_of(s: ledger::Status) -> &'static str {
    match s {
        ledger::Status::Active | ledger::Status::Trialing => "ok",
        ledger::Status::PastDue | ledger::Status::Canceled | ledger::Status::Incomplete => "warn",
        ledger::Status::Expired | ledger::Status::Refunded => "bad",
    }
}

pub(crate) fn renewal(s: &ledger::Subscription) -> String {
    match s.status {
        ledger::Status::Active | ledger::Status::Trialing => {
            format!("renews {}", fmt::when(Some(s.current_period_end_ms)))
        }
        ledger::Status::Canceled => format!("ends {}", fmt::when(Some(s.current_period_end_ms))),
        ledger::Status::PastDue => format!("access until {}", fmt::when(Some(s.covered_until_ms))),
        ledger::Status::Expired | ledger::Status::Refunded => {
            format!("ended {}", fmt::when(s.ended_at_ms.or(Some(s.covered_until_ms))))
        }
        ledger::Status::Incomplete => "—".into(),
    }
}

/// A form with the CSRF token and, for checkout, a plan.
#[derive(Debug, Default, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    plan_id: Option<String>,
    /// A share link's note ([`crate::share`]).
    #[serde(default)]
    pub(crate) label: Option<String>,
}

/// The action form of a signed-in POST, refused (403) without the session's CSRF token.
pub(crate) fn checked(
    signed: &Signed,
    headers: &HeaderMap,
    form: Result<Form<ActionForm>, axum::extract::rejection::FormRejection>,
) -> Result<ActionForm, PageError> {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    if !csrf_ok(signed, headers, form.csrf.as_deref()) {
        return Err(PageError::csrf());
    }
    Ok(form)
}

/// 303 to where an action leads (Checkout, the Portal, Telegram), or the account page saying
/// why it was refused.
async fn go_to(
    state: &AppState,
    signed: &Signed,
    to: Result<String, ApiError>,
) -> Result<Response, PageError> {
    match to {
        Ok(url) => Ok(Redirect::to(&url).into_response()),
        Err(e) => refused(state, signed, e).await,
    }
}

async fn refused(state: &AppState, signed: &Signed, e: ApiError) -> Result<Response, PageError> {
    if e.status().is_server_error()
        && !matches!(e, ApiError::NotConfigured(_) | ApiError::Upstream(_))
    {
        return Err(PageError(e));
    }
    let notice = Notice::Err(e.to_string());
    let page = render(state, signed, Some(&notice)).await?;
    Ok((e.status(), layout::html(page)).into_response())
}

/// `POST /account/checkout`: 303 to Stripe Checkout for the plan.
pub async fn checkout(
    State(state): State<AppState>,
    Member(signed): Member,
    headers: HeaderMap,
    form: Result<Form<ActionForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    let form = checked(&signed, &headers, form)?;
    let plan = form.plan_id.unwrap_or_default();
    go_to(&state, &signed, stripe_door::checkout(&state, &signed.user.id, &plan).await).await
}

/// `POST /account/portal`: 303 to the Stripe Customer Portal.
pub async fn portal(
    State(state): State<AppState>,
    Member(signed): Member,
    headers: HeaderMap,
    form: Result<Form<ActionForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    checked(&signed, &headers, form)?;
    go_to(&state, &signed, stripe_door::portal(&state, &signed.user.id).await).await
}

/// `POST /account/enrolment-code`: the account page with a new code shown once.
pub async fn enrolment_code(
    State(state): State<AppState>,
    Member(signed): Member,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    form: Result<Form<ActionForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    checked(&signed, &headers, form)?;
    let code = crate::devices::create_code(
        &state.db,
        state.now_ms(),
        state.config.devices.enrolment_code_ttl_s,
        &signed.user.id,
        &request_id,
    )
    .await?;
    let notice = Notice::Ok(format!(
        "Enrolment code {} — enter it in the Tradecast app before {} (UTC). It works once.",
        code.code,
        fmt::when(Some(code.expires_at_ms))
    ));
    Ok(layout::html(render(&state, &signed, Some(&notice)).await?))
}

/// A one-time Telegram deep link for `user_id`, when the bot runs and knows its name.
pub async fn telegram_link_url(state: &AppState, user_id: &str) -> Result<String, ApiError> {
    let name = state.telegram.username();
    if !state.telegram.is_on() || name.is_empty() {
        return Err(ApiError::NotConfigured("Telegram (telegram.mode and telegram_bot_token)"));
    }
    let ttl_ms = i64::try_from(state.config.telegram.link_code_ttl_s).unwrap_or(900) * 1000;
    let code =
        crate::telegram::link::new_code(&state.db, user_id, &name, state.now_ms(), ttl_ms).await?;
    Ok(code.url)
}

/// `POST /account/telegram-link`: 303 to a one-time `t.me/<bot>?start=<code>` link.
pub async fn telegram_link(
    State(state): State<AppState>,
    Member(signed): Member,
    headers: HeaderMap,
    form: Result<Form<ActionForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    checked(&signed, &headers, form)?;
    go_to(&state, &signed, telegram_link_url(&state, &signed.user.id).await).await
}

/// `POST /account/stars` (`plan_id`): 303 to a Telegram Stars invoice link for the plan.
pub async fn stars(
    State(state): State<AppState>,
    Member(signed): Member,
    headers: HeaderMap,
    form: Result<Form<ActionForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    let form = checked(&signed, &headers, form)?;
    let plan = form.plan_id.unwrap_or_default();
    go_to(
        &state,
        &signed,
        crate::billing::stars_door::invoice_link(&state, &signed.user.id, &plan).await,
    )
    .await
}

/// `POST /account/telegram-unlink`: the account's Telegram link ended; the bot says so in the
/// chat.
pub async fn telegram_unlink(
    State(state): State<AppState>,
    Member(signed): Member,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    form: Result<Form<ActionForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    checked(&signed, &headers, form)?;
    let notice = match crate::telegram::unlink_account(&state, &signed.user.id, &request_id).await?
    {
        true => Notice::Ok("Telegram unlinked: the bot sends this account nothing more.".into()),
        false => Notice::Err("This account was not linked to Telegram.".into()),
    };
    Ok(layout::html(render(&state, &signed, Some(&notice)).await?))
}

/// `GET /billing/return`: back from Stripe Checkout. The customer is re-read from Stripe now
/// (the webhook may come later), then 303 to the account page.
pub async fn billing_return(
    State(state): State<AppState>,
    Member(signed): Member,
    RequestId(request_id): RequestId,
) -> Result<Response, PageError> {
    if let Some(customer) = stripe_door::known_customer(&state.db, &signed.user.id).await?
        && let Err(e) =
            stripe_door::sync_customer(&state, &signed.user.id, &customer, None, &request_id).await
    {
        // The webhook or the nightly reconciliation will bring it: the page says so.
        tracing::warn!(error = %e, "billing return: customer not re-read");
        let notice = Notice::Err(
            "Your payment is being confirmed; this page will show it within a minute.".into(),
        );
        return Ok(layout::html(render(&state, &signed, Some(&notice)).await?));
    }
    Ok(Redirect::to("/account?checkout=done").into_response())
}

/// `?ref=` of a sign-up link.
#[derive(Debug, Default, Deserialize)]
pub struct SignupQuery {
    #[serde(default, rename = "ref")]
    referral: Option<String>,
}

fn signup_page(
    status: StatusCode,
    notice: Option<&str>,
    email: &str,
    referral: Option<&str>,
) -> Response {
    let notice = notice.map(|n| Notice::Err(n.to_string()));
    let body = html! {
        section.narrow {
            h1 { "Create your account" }
            p.mute { "Subscribe to a provider's signals and copy them to your MetaTrader 5." }
            form method="post" action="/signup" {
                label for="email" { "E-mail" }
                input #email type="email" name="email" value=(email) autocomplete="username" required autofocus;
                label for="password" { "Password (12 characters or more)" }
                input #password type="password" name="password" autocomplete="new-password" minlength="12" required;
                label for="display_name" { "Your name (optional)" }
                input #display_name type="text" name="display_name" maxlength="100";
                @if let Some(r) = referral { input type="hidden" name="ref" value=(r); }
                button.primary type="submit" { "Create account" }
            }
            p { "Have an account? " a href="/login" { "Sign in" } }
        }
    };
    (status, layout::html(layout::bare("Sign up", notice.as_ref(), body))).into_response()
}

/// `GET /signup`.
pub async fn signup_form(Query(q): Query<SignupQuery>) -> Response {
    let referral = q.referral.filter(|r| billing_api::valid_referral(r));
    signup_page(StatusCode::OK, None, "", referral.as_deref())
}

/// The sign-up form's fields.
#[derive(Default, Deserialize)]
pub struct SignupForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    display_name: String,
    #[serde(default, rename = "ref")]
    referral: Option<String>,
}

impl std::fmt::Debug for SignupForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignupForm")
            .field("email", &self.email)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// `POST /signup`: the account, a session, 303 to `/account`.
pub async fn signup(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    RequestId(request_id): RequestId,
    headers: axum::http::HeaderMap,
    form: Result<Form<SignupForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let referral = form.referral.as_deref().filter(|r| billing_api::valid_referral(r));
    let again = |status, words: &str| signup_page(status, Some(words), &form.email, referral);
    if let Err(e) =
        enforce(&state, &format!("login:{ip}"), state.config.rate_limits.login_per_ip).await
    {
        let ApiError::RateLimited { retry_after_s } = e else { return Err(PageError(e)) };
        return Ok(again(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Too many attempts from your address; wait {retry_after_s} s."),
        ));
    }
    let created = billing_api::create_subscriber(
        &state,
        &form.email,
        &form.password,
        &form.display_name,
        referral,
        &request_id,
    )
    .await;
    let user = match created {
        Ok(u) => u,
        Err(ApiError::Conflict(_)) => {
            return Ok(again(
                StatusCode::CONFLICT,
                "An account with this e-mail exists: sign in instead.",
            ));
        }
        Err(ApiError::Validation(words)) => {
            return Ok(again(StatusCode::UNPROCESSABLE_ENTITY, &words));
        }
        Err(e) => return Err(PageError(e)),
    };
    // The affiliate link's cookie (the first touch) before the form's `ref`.
    let touch = crate::affiliates::ref_cookie(&headers);
    crate::affiliates::store::attribute_signup(&state, &user.id, touch, referral, ip).await;
    let cookie = session::open(&state, &user.id).await?;
    let mut resp = Redirect::to("/account").into_response();
    resp.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(resp)
}

/// A device link's query.
#[derive(Debug, Default, Deserialize)]
pub struct LinkQuery {
    #[serde(default)]
    device: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    ts: i64,
    #[serde(default)]
    sig: String,
}

/// `GET /device-link`: a node's signed link (system.md). The device must be enrolled and not
/// revoked, its account enabled, the signature its identity key's, `ts` within 5 minutes, the
/// link not used before. The account is signed in (a session cookie, so the way back from
/// Stripe finds it) and the action opened.
pub async fn device_link(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    query: Result<Query<LinkQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, PageError> {
    let bad = |title: &str, words: &str| layout::error_page(StatusCode::UNAUTHORIZED, title, words);
    let Ok(Query(q)) = query else {
        return Ok(bad("This link is not valid", "Open it again from the Tradecast app."));
    };
    let Ok(device_id) = tradecast_protocol::DeviceId::parse(&q.device) else {
        return Ok(bad("This link is not valid", "Open it again from the Tradecast app."));
    };
    let (device, key) = match crate::devices::active_device(&state.db, &device_id).await {
        Ok(found) => found,
        Err(ApiError::DeviceRefused(_) | ApiError::NotFound(_)) => {
            return Ok(bad("This device is not enrolled", "Enrol the app again, then retry."));
        }
        Err(e) => return Err(PageError(e)),
    };
    let now = state.now_ms();
    let action = match device_link::verify(&key, &q.action, q.ts, &q.sig, now) {
        Ok(a) => a,
        Err(device_link::LinkError::Expired) => {
            return Ok(bad(
                "This link has expired",
                "Links from the app work for 5 minutes: open it again.",
            ));
        }
        Err(_) => {
            return Ok(bad("This link is not valid", "Open it again from the Tradecast app."));
        }
    };
    let used = sqlx::query(
        "INSERT INTO device_links_used (sig_hash, device_id, used_at_ms) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(crate::ids::sha256_hex(q.sig.as_bytes()))
    .bind(&device.id)
    .bind(now)
    .execute(state.db.pool())
    .await
    .map_err(DbError::from)?;
    if used.rows_affected() == 0 {
        return Ok(layout::error_page(
            StatusCode::GONE,
            "This link was used already",
            "Each link from the app opens once: open it again from the app.",
        ));
    }
    let Some(user) = crate::accounts::user_by_id(&state.db, &device.user_id).await? else {
        return Ok(bad("This device is not enrolled", "Enrol the app again, then retry."));
    };
    if user.disabled_at_ms.is_some() {
        return Err(PageError(ApiError::AccountDisabled));
    }
    let entry = crate::audit::Entry {
        actor: &user.id,
        action: "device.link",
        subject: &device.id,
        detail: serde_json::json!({ "action": action.as_text() }),
        request_id: &request_id,
    };
    crate::audit::record(&state.db, now, &entry).await?;
    let cookie = session::open(&state, &user.id).await?;
    let target = match &action {
        Action::Checkout(plan) => match stripe_door::checkout(&state, &user.id, plan).await {
            Ok(url) => url,
            Err(e) => {
                tracing::info!(error = %e, "device link checkout refused");
                format!("/account?{}", fmt::query(&[("checkout", "refused")]))
            }
        },
        Action::Portal => stripe_door::portal(&state, &user.id).await.unwrap_or_else(|e| {
            tracing::info!(error = %e, "device link portal refused");
            "/account".into()
        }),
        Action::TelegramLink => telegram_link_url(&state, &user.id).await.unwrap_or_else(|e| {
            tracing::info!(error = %e, "device link to Telegram refused");
            "/account#telegram".into()
        }),
    };
    let mut resp = Redirect::to(&target).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(resp)
}

/// Drops used device links older than their validity (the janitor calls it).
pub async fn prune_links(db: &crate::db::Db, now_ms: i64) -> Result<u64, DbError> {
    let cutoff = now_ms - 2 * device_link::VALID_MS;
    Ok(sqlx::query("DELETE FROM device_links_used WHERE used_at_ms < $1")
        .bind(cutoff)
        .execute(db.pool())
        .await?
        .rows_affected())
}

//! The first-run setup page (`/setup`), which the desktop app opens on a new data dir and any
//! browser session can reach: (1) the node's identity, made when the data dir was created;
//! (2) enrol with the provider's hub (address and one-time code, [`crate::sync::enrol`]) or stay
//! standalone; (3) create the EA key, its secret shown once in the answer to that POST with a
//! copy button (the store keeps only its sealed copy, nothing logs it); (4) the MT5 step: the
//! exact EA-link URL to allow under *Tools → Options → Expert Advisors*, and the EA link's state
//! live; (5) finish, which records that setup was done and opens the dashboard.
//!
//! `/ui/start` sends a fresh session to `/setup` until setup is done, then to `/`. Progress is
//! kept in the store's settings ([`SETUP_HUB`], [`SETUP_DONE`]); every POST needs the session's
//! CSRF token like the rest of the UI, and the page carries the same CSP (its script and styles
//! are files served here: nothing inline).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use super::pages::PageResult;
use super::{Session, Ui, asset, csrf_ok, html, plain, session_of};
use crate::clock::wall_ms;
use crate::runtime::NodeError;
use crate::store::hub_pin::PinError;

/// Store setting: `standalone` once the trader chose to run without a hub (enrolment pins the
/// hub itself, [`crate::store::hub_pin`]).
pub const SETUP_HUB: &str = "setup.hub";
/// Store setting: set once the trader finished setup (the wall-clock ms of that moment).
pub const SETUP_DONE: &str = "setup.done";

const SETUP_JS: &str = include_str!("../../assets/setup.js");
const SETUP_CSS: &str = include_str!("../../assets/setup.css");

/// Longest hub address and enrolment code accepted from the form.
const MAX_FIELD: usize = 256;

/// The page's routes that need a session (merged behind the UI's session layer).
pub(super) fn pages() -> Router<Ui> {
    Router::new()
        .route("/ui/start", get(start))
        .route("/setup", get(page))
        .route("/setup/ea-status", get(ea_status))
        .route("/setup/enrol", post(enrol))
        .route("/setup/standalone", post(standalone))
        .route("/setup/ea-key", post(ea_key))
        .route("/setup/done", post(done))
}

/// The page's assets (no session needed, like the UI's other assets).
pub(super) fn assets() -> Router<Ui> {
    Router::new()
        .route("/assets/setup.js", get(|| async { asset("text/javascript", SETUP_JS) }))
        .route("/assets/setup.css", get(|| async { asset("text/css", SETUP_CSS) }))
}

/// Where `/login?next=…` may send a new session: only these local paths (no open redirect).
pub(super) fn next_allowed(next: &str) -> bool {
    matches!(next, "/" | "/setup" | "/ui/start")
}

/// A setting; a store that cannot be read is an error (the page says so), never "not set".
fn setting(ui: &Ui, key: &str) -> Result<Option<String>, NodeError> {
    Ok(ui.node.store().read()?.setting(key)?)
}

fn set_setting(ui: &Ui, key: &str, value: &str) -> Result<(), String> {
    ui.node.store().write(|tx| tx.set_setting(key, value)).map_err(|e| {
        tracing::error!(target: "tradecast::ui", error = %e, key, "setup: store write failed");
        "the node could not save this step; see its log".to_owned()
    })
}

async fn start(State(ui): State<Ui>) -> Response {
    match setting(&ui, SETUP_DONE) {
        Ok(done) => Redirect::to(if done.is_some() { "/" } else { "/setup" }).into_response(),
        Err(e) => super::page(StatusCode::OK, Err(e)),
    }
}

/// What the page shows besides the stored state: a notice and, once, a new EA key.
#[derive(Default)]
struct Shown {
    notice: Option<Result<String, String>>,
    new_key: Option<(String, zeroize::Zeroizing<String>)>,
}

async fn page(State(ui): State<Ui>, req: Request) -> Response {
    let s = session_of(req.extensions());
    super::page(StatusCode::OK, render(&ui, &s.csrf, Shown::default()))
}

fn render(ui: &Ui, csrf: &str, shown: Shown) -> PageResult {
    let node = &ui.node;
    let hub = match crate::store::hub_pin::hub_pin(node.store()) {
        Ok(pin) => pin,
        Err(PinError::Store(e)) => return Err(e.into()),
        Err(PinError::Damaged(why)) => {
            // Shown as not enrolled: enrolling again is the way out, and the log says why.
            tracing::warn!(target: "tradecast::ui", %why, "setup: the pinned hub is damaged");
            None
        }
    };
    let standalone = setting(ui, SETUP_HUB)?.as_deref() == Some("standalone");
    let ea_url = setting(ui, crate::store::EA_URL_SETTING)?.unwrap_or_else(|| {
        format!("http://{}", std::net::SocketAddr::from(([127, 0, 0, 1], 7341)))
    });
    let keys = node.ea_key_ids();
    let link_up = node.link_up(wall_ms());
    let hub_done = hub.is_some() || standalone;
    let key_done = !keys.is_empty();
    Ok(html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false}"#;
                title { "Tradecast · Set up" }
                link rel="stylesheet" href="/assets/app.css";
                link rel="stylesheet" href="/assets/setup.css";
                script src="/assets/vendor/htmx.min.js" defer {}
                script src="/assets/setup.js" defer {}
            }
            body {
                header {
                    span.brand { "Tradecast" }
                    span.mute { "Set up this computer" }
                    div.health { a href="/" { "Skip to the dashboard" } }
                }
                main.setup id="main" {
                    @match &shown.notice {
                        Some(Ok(m)) => div.banner.ok { (m) },
                        Some(Err(m)) => div.banner.err { (m) },
                        None => {},
                    }
                    section.step.done id="step-identity" {
                        h2 { span.num { "1" } "Your node's identity" }
                        p { "Tradecast made a signing key for this computer. Every approval and execution it reports is signed with it, and your provider's hub knows this device by it." }
                        p { "Device " code.big { (node.device_id().to_text()) } }
                    }
                    section.step.done[hub_done] id="step-hub" {
                        h2 { span.num { "2" } "Connect to your provider" }
                        @if let Some(pin) = &hub {
                            p { "Enrolled with the hub at " code { (pin.addr) } ", whose key is pinned: " code { (pin.key.device_id().fmt_short()) } ". Signals from your provider arrive through it." }
                        } @else {
                            @if standalone {
                                p.mute { "Standalone: this node trades only what you or a local strategy submit. You can still enrol with a code below." }
                            } @else {
                                p { "Paste the hub address and the one-time enrolment code your provider gave you. Without one, stay standalone: you can enrol later." }
                            }
                            form.enrol method="post" action="/setup/enrol" {
                                input type="hidden" name="csrf" value=(csrf);
                                label { "Hub address" input name="hub" placeholder="hub.example.com:7480" required maxlength="256"; }
                                label { "Enrolment code" input name="code" placeholder="ABCD-EFGH-JKLM" required maxlength="256" autocomplete="off"; }
                                button.primary type="submit" { "Enrol" }
                            }
                            @if !standalone {
                                form method="post" action="/setup/standalone" {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button id="stay-standalone" type="submit" { "Stay standalone" }
                                }
                            }
                        }
                    }
                    section.step.done[key_done] id="step-ea-key" {
                        h2 { span.num { "3" } "Create the EA key" }
                        @if let Some((key_id, secret)) = &shown.new_key {
                            p { "The Tradecast EA signs every request with this key. Copy both values into the EA's inputs now: " strong { "the secret is shown only once" } " (Tradecast keeps it sealed and never shows it again)." }
                            div.copyrow {
                                label { "Key id" input id="ea-key-id" readonly value=(key_id); }
                                button.copy type="button" data-copy="ea-key-id" { "Copy" }
                            }
                            div.copyrow {
                                label { "Secret" input id="ea-secret" readonly value=(secret.as_str()); }
                                button.copy type="button" data-copy="ea-secret" { "Copy" }
                            }
                        } @else if key_done {
                            p { "EA key " @for (i, k) in keys.iter().enumerate() { @if i > 0 { ", " } code { (k) } } " exists. Lost its secret? Make a new key and paste it into the EA." }
                        } @else {
                            p { "The EA and this node prove every message to each other with a shared key. Make it here, then paste it into the EA's inputs." }
                        }
                        @if shown.new_key.is_none() {
                            form method="post" action="/setup/ea-key" {
                                input type="hidden" name="csrf" value=(csrf);
                                button.primary[!key_done] id="create-ea-key" type="submit" { @if key_done { "Create another key" } @else { "Create the EA key" } }
                            }
                        }
                    }
                    section.step.done[link_up] id="step-mt5" {
                        h2 { (mt5_number(link_up, false)) "Allow Tradecast in MetaTrader 5" }
                        ol.howto {
                            li { "In MetaTrader 5 open " strong { "Tools → Options → Expert Advisors" } " and tick " strong { "Allow WebRequest for listed URL" } "." }
                            li {
                                "Add exactly this URL:"
                                div.copyrow {
                                    input id="ea-url" readonly value=(ea_url);
                                    button.copy type="button" data-copy="ea-url" { "Copy" }
                                }
                            }
                            li { "Attach the Tradecast EA to one chart and paste the key id and the secret into its inputs." }
                        }
                        div id="ea-status" hx-get="/setup/ea-status" hx-trigger="every 2s" hx-swap="outerHTML" {
                            (ea_status_markup(link_up))
                        }
                    }
                    section.step id="step-finish" {
                        h2 { span.num { "5" } "Finish" }
                        p.mute { "Approvals stay manual until you switch on auto-copy in Settings. You can come back to this page from the address " code { "/setup" } "." }
                        form method="post" action="/setup/done" {
                            input type="hidden" name="csrf" value=(csrf);
                            button.primary id="finish-setup" type="submit" { "Open the dashboard" }
                        }
                    }
                }
            }
        }
    })
}

/// Step 4's number, ticked once the EA is connected; `oob` when it rides along the status
/// poll's answer (htmx swaps it in place by id).
fn mt5_number(link_up: bool, oob: bool) -> Markup {
    html! { span.num.ok[link_up] id="mt5-num" hx-swap-oob=[oob.then_some("true")] { "4" } }
}

fn ea_status_markup(link_up: bool) -> Markup {
    html! {
        p.linkstate {
            span.dot.ok[link_up] {}
            @if link_up { "The EA is connected." } @else { "Waiting for the EA to say hello…" }
        }
    }
}

async fn ea_status(State(ui): State<Ui>) -> Response {
    let up = ui.node.link_up(wall_ms());
    html(html! {
        div id="ea-status" hx-get="/setup/ea-status" hx-trigger="every 2s" hx-swap="outerHTML" { (ea_status_markup(up)) }
        (mt5_number(up, true))
    })
}

#[derive(Debug, Default, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: Option<String>,
}

#[derive(Default, Deserialize)]
struct EnrolForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    hub: String,
    #[serde(default)]
    code: String,
}

fn forbidden() -> Response {
    plain(StatusCode::FORBIDDEN, "refused: missing or wrong CSRF token; reload the page")
}

fn answer(ui: &Ui, csrf: &str, status: StatusCode, shown: Shown) -> Response {
    super::page(status, render(ui, csrf, shown))
}

async fn enrol(
    State(ui): State<Ui>,
    axum::Extension(session): axum::Extension<Session>,
    headers: HeaderMap,
    form: Result<Form<EnrolForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = form.map(|f| f.0).unwrap_or_default();
    if !csrf_ok(&session, &headers, form.csrf.as_deref()) {
        return forbidden();
    }
    let (hub, code) = (form.hub.trim(), form.code.trim());
    let refused = |m: &str| Shown { notice: Some(Err(m.to_owned())), new_key: None };
    if hub.is_empty() || code.is_empty() || hub.len() > MAX_FIELD || code.len() > MAX_FIELD {
        let shown = refused("Give the hub address (HOST:PORT) and the enrolment code.");
        return answer(&ui, &session.csrf, StatusCode::UNPROCESSABLE_ENTITY, shown);
    }
    let label = format!("Tradecast desktop {}", ui.node.device_id().fmt_short());
    let attempt = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        crate::sync::enrol::enrol(ui.node.store(), hub, code, &label, wall_ms()),
    )
    .await;
    let shown = match attempt {
        Ok(Ok(e)) => Shown {
            notice: Some(Ok(format!(
                "Enrolled. The hub's key {} is pinned: compare it with the one your provider shows.",
                e.hub_device_id.fmt_short()
            ))),
            new_key: None,
        },
        Ok(Err(e)) => refused(&e.to_string()),
        Err(_) => refused("The hub did not answer within 20 s; check the address and try again."),
    };
    let status = if matches!(shown.notice, Some(Ok(_))) {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    answer(&ui, &session.csrf, status, shown)
}

async fn standalone(
    State(ui): State<Ui>,
    axum::Extension(session): axum::Extension<Session>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = form.map(|f| f.0).unwrap_or_default();
    if !csrf_ok(&session, &headers, form.csrf.as_deref()) {
        return forbidden();
    }
    let notice = set_setting(&ui, SETUP_HUB, "standalone")
        .map(|()| "Standalone: no hub. Enrol later with a code from your provider.".to_owned());
    let status = if notice.is_ok() { StatusCode::OK } else { StatusCode::INTERNAL_SERVER_ERROR };
    answer(&ui, &session.csrf, status, Shown { notice: Some(notice), new_key: None })
}

async fn ea_key(
    State(ui): State<Ui>,
    axum::Extension(session): axum::Extension<Session>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = form.map(|f| f.0).unwrap_or_default();
    if !csrf_ok(&session, &headers, form.csrf.as_deref()) {
        return forbidden();
    }
    match ui.node.new_ea_key() {
        Ok(k) => {
            let shown = Shown {
                notice: Some(Ok(format!("EA key {} created.", k.key_id))),
                new_key: Some((k.key_id.clone(), zeroize::Zeroizing::new(k.secret.to_string()))),
            };
            answer(&ui, &session.csrf, StatusCode::OK, shown)
        }
        Err(e) => {
            tracing::error!(target: "tradecast::ui", error = %e, "setup: EA key not created");
            let shown = Shown {
                notice: Some(Err("The node could not create the key; see its log.".into())),
                new_key: None,
            };
            answer(&ui, &session.csrf, StatusCode::INTERNAL_SERVER_ERROR, shown)
        }
    }
}

async fn done(
    State(ui): State<Ui>,
    axum::Extension(session): axum::Extension<Session>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = form.map(|f| f.0).unwrap_or_default();
    if !csrf_ok(&session, &headers, form.csrf.as_deref()) {
        return forbidden();
    }
    match set_setting(&ui, SETUP_DONE, &wall_ms().to_string()) {
        Ok(()) => (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response(),
        Err(m) => answer(
            &ui,
            &session.csrf,
            StatusCode::INTERNAL_SERVER_ERROR,
            Shown { notice: Some(Err(m)), new_key: None },
        ),
    }
}

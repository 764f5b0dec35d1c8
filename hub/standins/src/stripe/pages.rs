//! The pages a browser sees: the hosted Checkout form, the Customer Portal, a hosted invoice.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::Shared;
use super::model::{Account, CardDetails, SessionStatus};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn money(minor: i64, currency: &str) -> String {
    format!("{}.{:02} {}", minor / 100, (minor % 100).abs(), currency.to_ascii_uppercase())
}

fn page(title: &str, body: String) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>body{{font-family:sans-serif;max-width:40rem;margin:2rem auto}}\
         .error{{color:#b00020}} form{{margin:.5rem 0}} label{{display:block;margin:.4rem 0}}</style>\
         </head><body><p><small>Stripe stand-in (test mode)</small></p>{}</body></html>",
        esc(title),
        body
    ))
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, page("Not found", format!("<h1>{}</h1>", esc(what)))).into_response()
}

fn see_other(url: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, url.to_owned())]).into_response()
}

fn interval_text(a: &Account, price: &str) -> String {
    a.price(price)
        .map(|p| {
            let amount = money(p.unit_amount, &p.currency);
            if p.interval_count == 1 {
                format!("{amount} per {}", p.interval)
            } else {
                format!("{amount} every {} {}s", p.interval_count, p.interval)
            }
        })
        .unwrap_or_default()
}

fn checkout_form(a: &Account, id: &str, error: Option<&str>) -> Response {
    let Some(s) = a.sessions.iter().find(|s| s.id == id) else {
        return not_found("No such checkout session");
    };
    if s.status != SessionStatus::Open {
        return page("Checkout", "<h1>This Checkout Session is no longer active.</h1>".into())
            .into_response();
    }
    let name = a
        .price(&s.price)
        .and_then(|p| a.product(&p.product))
        .map(|p| p.name.clone())
        .unwrap_or_default();
    let email = s.customer_email.clone().unwrap_or_default();
    let trial = s.trial_days.map(|d| format!("<p>{d} days free, then:</p>")).unwrap_or_default();
    let err = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    let cancel = s
        .cancel_url
        .as_ref()
        .map(|u| format!("<p><a href=\"{}\">Back</a></p>", esc(u)))
        .unwrap_or_default();
    page(
        "Checkout",
        format!(
            "<h1>Subscribe to {}</h1>{trial}<p>{}</p><p>E-mail: <span id=\"email\">{}</span></p>{err}\
             <form method=\"post\" action=\"/checkout/{}\">\
             <label>Card number <input name=\"card_number\" inputmode=\"numeric\" autocomplete=\"cc-number\" required></label>\
             <label>Expiry (MM / YY) <input name=\"exp\" autocomplete=\"cc-exp\" required></label>\
             <label>CVC <input name=\"cvc\" inputmode=\"numeric\" autocomplete=\"cc-csc\" required></label>\
             <button type=\"submit\">{}</button></form>{cancel}",
            esc(&name),
            esc(&interval_text(a, &s.price)),
            esc(&email),
            esc(&s.id),
            if s.trial_days.is_some() { "Start trial" } else { "Subscribe" },
        ),
    )
    .into_response()
}

/// `GET /checkout/{id}`.
pub async fn checkout_page(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    checkout_form(&shared.lock(), &id, None)
}

/// The card form's fields.
#[derive(Debug, Deserialize)]
pub struct CardForm {
    #[serde(default)]
    card_number: String,
    #[serde(default)]
    exp: String,
    #[serde(default)]
    cvc: String,
}

/// Stripe's checks of the expiry and CVC fields, at the clock's `now`.
fn card_fields(f: &CardForm, now_s: i64) -> Result<CardDetails, String> {
    let card = CardDetails::of(&f.card_number)?;
    let exp: String = f.exp.chars().filter(|c| c.is_ascii_digit()).collect();
    if exp.len() != 4 && exp.len() != 6 {
        return Err("Your card's expiration date is incomplete.".into());
    }
    let month: i64 =
        exp[..2].parse().map_err(|_| "Your card's expiration date is incomplete.".to_owned())?;
    let mut year: i64 =
        exp[2..].parse().map_err(|_| "Your card's expiration date is incomplete.".to_owned())?;
    if year < 100 {
        year += 2000;
    }
    if !(1..=12).contains(&month) {
        return Err("Your card's expiration month is invalid.".into());
    }
    let this_year = 1970 + now_s / 31_556_952;
    if year < this_year {
        return Err("Your card's expiration year is in the past.".into());
    }
    let cvc = f.cvc.trim();
    if !(3..=4).contains(&cvc.len()) || !cvc.bytes().all(|b| b.is_ascii_digit()) {
        return Err("Your card's security code is incomplete.".into());
    }
    Ok(card)
}

/// `POST /checkout/{id}`: completes the session and redirects to its success URL, or shows the
/// form again with Stripe's text.
pub async fn checkout_submit(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Form(f): Form<CardForm>,
) -> Response {
    let now = shared.lock().now;
    let result = match card_fields(&f, now) {
        Ok(card) => shared.act(|a| a.complete_checkout(&id, card, None)),
        Err(e) => Err(e),
    };
    match result {
        Ok(url) => see_other(&url),
        Err(e) => checkout_form(&shared.lock(), &id, Some(&e)),
    }
}

fn portal(a: &Account, id: &str, error: Option<&str>) -> Response {
    let Some(ps) = a.portals.iter().find(|p| p.id == id) else {
        return not_found("No such portal session");
    };
    let err = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    let mut body = format!("<h1>Your subscriptions</h1>{err}");
    for s in a.subscriptions.iter().filter(|s| s.customer == ps.customer && s.status != "canceled")
    {
        let name = a
            .price(&s.price)
            .and_then(|p| a.product(&p.product))
            .map(|p| p.name.clone())
            .unwrap_or_default();
        let currency = a.price(&s.price).map(|p| p.currency.clone()).unwrap_or_default();
        body.push_str(&format!(
            "<section data-subscription=\"{sid}\"><h2>{}</h2><p>{} — status <b>{}</b>; current period ends {}{}</p>",
            esc(&name),
            esc(&interval_text(a, &s.price)),
            esc(&s.status),
            s.period_end,
            if s.cancel_at_period_end { " (cancels then)" } else { "" },
            sid = esc(&s.id),
        ));
        let (label, on) = if s.cancel_at_period_end {
            ("Resume", "false")
        } else {
            ("Cancel at period end", "true")
        };
        body.push_str(&format!(
            "<form method=\"post\" action=\"/portal/{}/cancel\"><input type=\"hidden\" name=\"subscription\" value=\"{}\">\
             <input type=\"hidden\" name=\"on\" value=\"{on}\"><button>{label}</button></form>",
            esc(id),
            esc(&s.id)
        ));
        let others: Vec<_> = a
            .prices
            .iter()
            .filter(|p| p.active && p.id != s.price && p.currency == currency)
            .collect();
        if !others.is_empty() {
            body.push_str(&format!(
                "<form method=\"post\" action=\"/portal/{}/switch\"><input type=\"hidden\" name=\"subscription\" value=\"{}\"><select name=\"price\">",
                esc(id),
                esc(&s.id)
            ));
            for p in others {
                let pname = a.product(&p.product).map(|x| x.name.clone()).unwrap_or_default();
                body.push_str(&format!(
                    "<option value=\"{}\">{} — {}</option>",
                    esc(&p.id),
                    esc(&pname),
                    esc(&interval_text(a, &p.id))
                ));
            }
            body.push_str("</select><button>Switch plan (prorated)</button></form>");
        }
        body.push_str("</section>");
    }
    let card = a
        .customer(&ps.customer)
        .and_then(|c| c.card.as_ref().map(|k| format!("Card ending {}", k.details.last4)))
        .unwrap_or_else(|| "No card".into());
    body.push_str(&format!(
        "<h2>Payment method</h2><p>{}</p><form method=\"post\" action=\"/portal/{}/card\">\
         <label>Card number <input name=\"card_number\" required></label>\
         <label>Expiry (MM / YY) <input name=\"exp\" required></label>\
         <label>CVC <input name=\"cvc\" required></label><button>Update card</button></form>",
        esc(&card),
        esc(id)
    ));
    if let Some(r) = &ps.return_url {
        body.push_str(&format!("<p><a id=\"return\" href=\"{}\">Return</a></p>", esc(r)));
    }
    page("Customer portal", body).into_response()
}

/// `GET /portal/{id}`.
pub async fn portal_page(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    portal(&shared.lock(), &id, None)
}

/// The portal forms' fields.
#[derive(Debug, Deserialize)]
pub struct PortalForm {
    #[serde(default)]
    subscription: String,
    #[serde(default)]
    on: String,
    #[serde(default)]
    price: String,
    #[serde(default)]
    card_number: String,
    #[serde(default)]
    exp: String,
    #[serde(default)]
    cvc: String,
}

/// `POST /portal/{id}/{cancel|switch|card}`.
pub async fn portal_action(
    State(shared): State<Arc<Shared>>,
    Path((id, action)): Path<(String, String)>,
    Form(f): Form<PortalForm>,
) -> Response {
    let Some(customer) =
        shared.lock().portals.iter().find(|p| p.id == id).map(|p| p.customer.clone())
    else {
        return not_found("No such portal session");
    };
    let owns = |a: &Account| a.sub(&f.subscription).is_some_and(|s| s.customer == customer);
    let result: Result<(), String> = match action.as_str() {
        "cancel" => shared.act(|a| {
            if owns(a) {
                a.set_cancel_at_period_end(&f.subscription, f.on == "true")
            } else {
                Err("No such subscription".into())
            }
        }),
        "switch" => shared.act(|a| {
            if owns(a) {
                a.switch_price(&f.subscription, &f.price)
            } else {
                Err("No such subscription".into())
            }
        }),
        "card" => {
            let now = shared.lock().now;
            let card = CardForm {
                card_number: f.card_number.clone(),
                exp: f.exp.clone(),
                cvc: f.cvc.clone(),
            };
            match card_fields(&card, now) {
                Ok(card) => shared.act(|a| a.update_card(&customer, card)),
                Err(e) => Err(e),
            }
        }
        _ => return not_found("No such action"),
    };
    match result {
        Ok(()) => see_other(&format!("/portal/{id}")),
        Err(e) => portal(&shared.lock(), &id, Some(&e)),
    }
}

/// `GET /invoice/{id}`: the hosted invoice page.
pub async fn invoice_page(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let a = shared.lock();
    let Some(inv) = a.invoice(&id) else { return not_found("No such invoice") };
    page(
        "Invoice",
        format!(
            "<h1>Invoice {}</h1><p>Status: {}</p><p>Amount due: {}</p><p>Amount paid: {}</p>",
            esc(&inv.number),
            esc(&inv.status),
            money(inv.amount_due, &inv.currency),
            money(inv.amount_paid, &inv.currency)
        ),
    )
    .into_response()
}

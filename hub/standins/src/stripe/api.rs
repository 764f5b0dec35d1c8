//! The API endpoints the hub calls, strict like Stripe: key auth, form parameters checked
//! against what Stripe accepts, idempotency keys, list pagination, Stripe's error shape.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use subtle_eq::eq;

use super::Shared;
use super::form::Params;
use super::model::{
    Account, CheckoutSession, Customer, PortalSession, Price, Product, SessionStatus,
};

mod subtle_eq {
    /// Compares two secrets without an early exit on the first differing byte.
    pub fn eq(a: &[u8], b: &[u8]) -> bool {
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// An error in Stripe's shape: `{"error":{"type","code","message","param"}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: Option<String>,
    pub message: String,
    pub param: Option<String>,
}

impl ApiError {
    pub fn invalid(message: String, param: Option<&str>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code: None,
            message,
            param: param.map(str::to_owned),
        }
    }
    pub fn invalid_code(code: &str, message: String, param: &str) -> ApiError {
        ApiError { code: Some(code.into()), ..ApiError::invalid(message, Some(param)) }
    }
    pub fn unknown_parameter(param: &str) -> ApiError {
        ApiError::invalid_code(
            "parameter_unknown",
            format!("Received unknown parameter: {param}"),
            param,
        )
    }
    pub fn missing(param: &str) -> ApiError {
        ApiError::invalid_code(
            "parameter_missing",
            format!("Missing required param: {param}."),
            param,
        )
    }
    pub fn no_such(object: &str, id: &str, param: &str) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            ..ApiError::invalid_code("resource_missing", format!("No such {object}: '{id}'"), param)
        }
    }
    fn unauthorized(message: String) -> ApiError {
        ApiError { status: StatusCode::UNAUTHORIZED, ..ApiError::invalid(message, None) }
    }
    fn body(&self, request_id: &str) -> Value {
        json!({"error": {
            "type": self.kind, "code": self.code, "message": self.message, "param": self.param,
            "doc_url": self.code.as_ref().map(|c| format!("https://stripe.com/docs/error-codes/{}", c.replace('_', "-"))),
            "request_log_url": format!("https://dashboard.stripe.com/test/logs/{request_id}"),
        }})
    }
}

type ApiResult = Result<Value, ApiError>;

fn respond(status: StatusCode, body: &Value, request_id: &str, replayed: bool) -> Response {
    let mut r = (status, axum::Json(body.clone())).into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("request-id", v);
    }
    h.insert("stripe-version", HeaderValue::from_static(super::model::API_VERSION));
    if replayed {
        h.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    r
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(ApiError::unauthorized(
            "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.".into(),
        ));
    };
    let key = if let Some(k) = auth.strip_prefix("Bearer ") {
        k.trim().to_owned()
    } else if let Some(b) = auth.strip_prefix("Basic ") {
        let raw = data_encoding::BASE64.decode(b.trim().as_bytes()).unwrap_or_default();
        let s = String::from_utf8_lossy(&raw).into_owned();
        s.split_once(':').map(|(u, _)| u.to_owned()).unwrap_or(s)
    } else {
        return Err(ApiError::unauthorized(
            "Invalid API Key provided: the Authorization header must be Bearer or Basic.".into(),
        ));
    };
    if eq(key.as_bytes(), shared.secret_key.as_bytes()) {
        return Ok(());
    }
    let tail: String = key.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    Err(ApiError::unauthorized(format!(
        "Invalid API Key provided: {}****{tail}",
        key.chars().take(8).collect::<String>()
    )))
}

/// Every `/v1/…` request.
pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut acct = shared.lock();
    let request_id = acct.id("req");
    if let Err(e) = authorized(&shared, &headers) {
        return respond(e.status, &e.body(&request_id), &request_id, false);
    }
    let path = uri.path().to_owned();
    let raw: Vec<u8> = match method {
        Method::GET => uri.query().unwrap_or_default().as_bytes().to_vec(),
        _ if body.is_empty() => uri.query().unwrap_or_default().as_bytes().to_vec(),
        _ => body.to_vec(),
    };
    let key = if method == Method::POST || method == Method::DELETE {
        headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned)
    } else {
        None
    };
    let fingerprint = format!("{method} {path} {}", {
        let mut p: Vec<(String, String)> =
            form_urlencoded::parse(&raw).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        p.sort();
        p.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
    });
    if let Some(k) = &key {
        if k.len() > 255 {
            let e = ApiError::invalid(
                "Idempotency-Key must be at most 255 characters long.".into(),
                None,
            );
            return respond(e.status, &e.body(&request_id), &request_id, false);
        }
        if let Some((fp, status, body)) = acct.idempotency.get(k) {
            if *fp == fingerprint {
                let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::OK);
                return respond(status, body, &request_id, true);
            }
            let e = ApiError {
                code: None,
                kind: "idempotency_error",
                ..ApiError::invalid(
                    format!(
                        "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{k}' if you meant to execute a different request."
                    ),
                    None,
                )
            };
            return respond(e.status, &e.body(&request_id), &request_id, false);
        }
    }
    acct.request_id = Some(request_id.clone());
    let result = route(&mut acct, &method, &path, &raw);
    acct.request_id = None;
    let (status, body) = match result {
        Ok(v) => (StatusCode::OK, v),
        Err(e) => (e.status, e.body(&request_id)),
    };
    if let Some(k) = key
        && !status.is_server_error()
    {
        acct.idempotency.insert(k, (fingerprint, status.as_u16(), body.clone()));
    }
    let events = std::mem::take(&mut acct.pending);
    drop(acct);
    shared.deliver(events);
    respond(status, &body, &request_id, false)
}

const LIST: [&str; 5] = ["limit", "starting_after", "ending_before", "expand.#", "created.*"];

fn allowed<'a>(extra: &[&'a str], list: bool) -> Vec<&'a str> {
    let mut v: Vec<&str> = extra.to_vec();
    if list {
        v.extend(LIST);
    } else {
        v.push("expand.#");
    }
    v
}

/// One page of a list, newest first, as Stripe paginates.
fn page(url: &str, items: Vec<(String, Value)>, p: &Params, object: &str) -> ApiResult {
    let limit = p.int("limit")?.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid_code(
            "parameter_invalid_integer",
            "This value must be greater than or equal to 1 and less than or equal to 100.".into(),
            "limit",
        ));
    }
    let mut items = items;
    items.reverse();
    let start = match (p.str("starting_after")?, p.str("ending_before")?) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "You may only specify one of these parameters: ending_before, starting_after."
                    .into(),
                None,
            ));
        }
        (Some(a), None) => items
            .iter()
            .position(|(id, _)| *id == a)
            .map(|i| i + 1)
            .ok_or_else(|| ApiError::no_such(object, &a, "starting_after"))?,
        (None, Some(b)) => {
            let end = items
                .iter()
                .position(|(id, _)| *id == b)
                .ok_or_else(|| ApiError::no_such(object, &b, "ending_before"))?;
            end.saturating_sub(limit as usize)
        }
        (None, None) => 0,
    };
    let data: Vec<Value> =
        items.iter().skip(start).take(limit as usize).map(|(_, v)| v.clone()).collect();
    let has_more = items.len() > start + data.len();
    Ok(json!({"object": "list", "data": data, "has_more": has_more, "url": url}))
}

fn expansions(p: &Params, allowed: &[&str]) -> Result<Vec<String>, ApiError> {
    let e = p.list("expand")?;
    for x in &e {
        if !allowed.contains(&x.as_str()) {
            return Err(ApiError::invalid(
                format!("This property cannot be expanded ({x})."),
                Some("expand"),
            ));
        }
    }
    Ok(e)
}

fn route(a: &mut Account, method: &Method, path: &str, raw: &[u8]) -> ApiResult {
    let segs: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
    match (method.as_str(), segs.as_slice()) {
        ("POST", ["products"]) => create_product(
            a,
            &Params::parse(
                raw,
                &allowed(
                    &[
                        "name",
                        "active",
                        "description",
                        "id",
                        "metadata.*",
                        "images.#",
                        "statement_descriptor",
                        "unit_label",
                        "tax_code",
                        "url",
                    ],
                    false,
                ),
            )?,
        ),
        ("GET", ["products", id]) => {
            let p = Params::parse(raw, &allowed(&[], false))?;
            expansions(&p, &[])?;
            a.product(id)
                .map(|x| a.product_json(x))
                .ok_or_else(|| ApiError::no_such("product", id, "id"))
        }
        ("POST", ["prices"]) => create_price(
            a,
            &Params::parse(
                raw,
                &allowed(
                    &[
                        "currency",
                        "unit_amount",
                        "product",
                        "product_data.name",
                        "product_data.metadata.*",
                        "product_data.active",
                        "product_data.id",
                        "product_data.statement_descriptor",
                        "product_data.unit_label",
                        "product_data.tax_code",
                        "recurring.interval",
                        "recurring.interval_count",
                        "recurring.usage_type",
                        "recurring.trial_period_days",
                        "lookup_key",
                        "transfer_lookup_key",
                        "metadata.*",
                        "nickname",
                        "active",
                        "tax_behavior",
                        "billing_scheme",
                    ],
                    false,
                ),
            )?,
        ),
        ("GET", ["prices"]) => {
            let p = Params::parse(
                raw,
                &allowed(
                    &[
                        "active",
                        "currency",
                        "lookup_keys.#",
                        "product",
                        "type",
                        "recurring.interval",
                        "recurring.usage_type",
                    ],
                    true,
                ),
            )?;
            expansions(&p, &[])?;
            let keys = p.list("lookup_keys")?;
            if keys.len() > 10 {
                return Err(ApiError::invalid(
                    "lookup_keys can contain at most 10 keys.".into(),
                    Some("lookup_keys"),
                ));
            }
            let active = p.bool("active")?;
            let product = p.str("product")?;
            let currency = p.str("currency")?;
            let items = a
                .prices
                .iter()
                .filter(|x| {
                    keys.is_empty() || x.lookup_key.as_ref().is_some_and(|k| keys.contains(k))
                })
                .filter(|x| active.is_none_or(|act| x.active == act))
                .filter(|x| product.as_ref().is_none_or(|pr| x.product == *pr))
                .filter(|x| currency.as_ref().is_none_or(|c| x.currency == *c))
                .map(|x| (x.id.clone(), a.price_json(x)))
                .collect();
            page("/v1/prices", items, &p, "price")
        }
        ("GET", ["prices", id]) => {
            Params::parse(raw, &allowed(&[], false))?;
            a.price(id).map(|x| a.price_json(x)).ok_or_else(|| ApiError::no_such("price", id, "id"))
        }
        ("POST", ["customers"]) => {
            let p = Params::parse(
                raw,
                &allowed(
                    &["email", "name", "description", "phone", "metadata.*", "preferred_locales.#"],
                    false,
                ),
            )?;
            let id = a.id("cus");
            let email = p.str("email")?;
            if let Some(e) = &email
                && (!e.contains('@') || e.len() > 512)
            {
                return Err(ApiError::invalid_code(
                    "email_invalid",
                    format!("Invalid email address: {e}"),
                    "email",
                ));
            }
            let c = Customer {
                id,
                email,
                name: p.str("name")?,
                metadata: p.map("metadata")?,
                created: a.now,
                card: None,
            };
            let v = a.customer_json(&c);
            a.customers.push(c);
            a.emit("customer.created", v.clone(), None);
            Ok(v)
        }
        ("GET", ["customers", id]) => {
            Params::parse(raw, &allowed(&[], false))?;
            a.customer(id)
                .map(|x| a.customer_json(x))
                .ok_or_else(|| ApiError::no_such("customer", id, "id"))
        }
        ("POST", ["checkout", "sessions"]) => create_session(
            a,
            &Params::parse(
                raw,
                &allowed(
                    &[
                        "mode",
                        "customer",
                        "customer_email",
                        "line_items.#.price",
                        "line_items.#.quantity",
                        "success_url",
                        "cancel_url",
                        "metadata.*",
                        "client_reference_id",
                        "subscription_data.metadata.*",
                        "subscription_data.trial_period_days",
                        "subscription_data.description",
                        "allow_promotion_codes",
                        "locale",
                        "payment_method_types.#",
                        "billing_address_collection",
                        "expires_at",
                        "ui_mode",
                    ],
                    false,
                ),
            )?,
        ),
        ("GET", ["checkout", "sessions", id]) => {
            Params::parse(raw, &allowed(&[], false))?;
            a.sessions
                .iter()
                .find(|s| s.id == *id)
                .map(|s| a.session_json(s))
                .ok_or_else(|| ApiError::no_such("checkout.session", id, "session"))
        }
        ("POST", ["billing_portal", "sessions"]) => {
            let p = Params::parse(
                raw,
                &allowed(&["customer", "return_url", "locale", "configuration"], false),
            )?;
            let customer = p.req("customer")?;
            if a.customer(&customer).is_none() {
                return Err(ApiError::no_such("customer", &customer, "customer"));
            }
            if let Some(c) = p.str("configuration")?
                && c != "bpc_standin_default"
            {
                return Err(ApiError::no_such("configuration", &c, "configuration"));
            }
            let s = PortalSession {
                id: a.id("bps"),
                customer,
                return_url: p.str("return_url")?,
                created: a.now,
            };
            let v = a.portal_json(&s);
            a.portals.push(s);
            Ok(v)
        }
        ("GET", ["subscriptions"]) => {
            let p = Params::parse(
                raw,
                &allowed(
                    &[
                        "customer",
                        "price",
                        "status",
                        "current_period_end.*",
                        "current_period_start.*",
                        "collection_method",
                    ],
                    true,
                ),
            )?;
            expansions(&p, &[])?;
            let customer = p.str("customer")?;
            let price = p.str("price")?;
            let status = p.str("status")?;
            const STATUSES: [&str; 10] = [
                "active",
                "all",
                "canceled",
                "ended",
                "incomplete",
                "incomplete_expired",
                "past_due",
                "paused",
                "trialing",
                "unpaid",
            ];
            if let Some(s) = &status
                && !STATUSES.contains(&s.as_str())
            {
                return Err(ApiError::invalid(
                    format!("Invalid status: must be one of {}", STATUSES.join(", ")),
                    Some("status"),
                ));
            }
            let items = a
                .subscriptions
                .iter()
                .filter(|s| customer.as_ref().is_none_or(|c| s.customer == *c))
                .filter(|s| price.as_ref().is_none_or(|pr| s.price == *pr))
                .filter(|s| match status.as_deref() {
                    None => s.status != "canceled" && s.status != "incomplete_expired",
                    Some("all") => true,
                    Some("ended") => s.status == "canceled" || s.status == "incomplete_expired",
                    Some(x) => s.status == x,
                })
                .map(|s| (s.id.clone(), a.subscription_json(s)))
                .collect();
            page("/v1/subscriptions", items, &p, "subscription")
        }
        ("GET", ["subscriptions", id]) => {
            Params::parse(raw, &allowed(&[], false))?;
            a.sub(id)
                .map(|s| a.subscription_json(s))
                .ok_or_else(|| ApiError::no_such("subscription", id, "id"))
        }
        ("DELETE", ["subscriptions", id]) => {
            let p = Params::parse(
                raw,
                &allowed(
                    &[
                        "invoice_now",
                        "prorate",
                        "cancellation_details.comment",
                        "cancellation_details.feedback",
                    ],
                    false,
                ),
            )?;
            p.bool("invoice_now")?;
            p.bool("prorate")?;
            if a.sub(id).is_none() {
                return Err(ApiError::no_such("subscription", id, "id"));
            }
            a.cancel_now(id).map_err(|m| ApiError::invalid(m, None))?;
            a.sub(id)
                .map(|s| a.subscription_json(s))
                .ok_or_else(|| ApiError::no_such("subscription", id, "id"))
        }
        ("GET", ["invoices"]) => {
            let p = Params::parse(
                raw,
                &allowed(
                    &["customer", "subscription", "status", "collection_method", "due_date.*"],
                    true,
                ),
            )?;
            let with_payments =
                expansions(&p, &["data.payments"])?.iter().any(|e| e == "data.payments");
            let customer = p.str("customer")?;
            let sub = p.str("subscription")?;
            let status = p.str("status")?;
            let items = a
                .invoices
                .iter()
                .filter(|i| customer.as_ref().is_none_or(|c| i.customer == *c))
                .filter(|i| sub.as_ref().is_none_or(|s| i.subscription.as_ref() == Some(s)))
                .filter(|i| status.as_ref().is_none_or(|s| i.status == *s))
                .map(|i| (i.id.clone(), a.invoice_json(i, with_payments)))
                .collect();
            page("/v1/invoices", items, &p, "invoice")
        }
        ("GET", ["invoices", id]) => {
            let p = Params::parse(raw, &allowed(&[], false))?;
            let with_payments = expansions(&p, &["payments"])?.iter().any(|e| e == "payments");
            a.invoice(id)
                .map(|i| a.invoice_json(i, with_payments))
                .ok_or_else(|| ApiError::no_such("invoice", id, "invoice"))
        }
        ("POST", ["refunds"]) => {
            let p = Params::parse(
                raw,
                &allowed(
                    &[
                        "charge",
                        "payment_intent",
                        "amount",
                        "metadata.*",
                        "reason",
                        "instructions_email",
                    ],
                    false,
                ),
            )?;
            let charge = match (p.str("charge")?, p.str("payment_intent")?) {
                (Some(c), None) => c,
                (None, Some(pi)) => a.charges.iter().filter(|c| c.payment_intent == pi && c.succeeded).map(|c| c.id.clone()).next()
                    .ok_or_else(|| ApiError::no_such("payment_intent", &pi, "payment_intent"))?,
                (Some(_), Some(_)) => return Err(ApiError::invalid("You cannot specify both a charge and a payment_intent.".into(), None)),
                (None, None) => return Err(ApiError::invalid_code("parameter_missing", "One of the following params should be provided for this request: charge or payment_intent.".into(), "charge")),
            };
            let reason = p.str("reason")?;
            if let Some(r) = &reason
                && !["duplicate", "fraudulent", "requested_by_customer"].contains(&r.as_str())
            {
                return Err(ApiError::invalid(
                    format!(
                        "Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer ({r})"
                    ),
                    Some("reason"),
                ));
            }
            let id = a.refund(&charge, p.int("amount")?, p.map("metadata")?, reason).map_err(
                |(code, m)| match code {
                    Some("resource_missing") => ApiError::no_such("charge", &charge, "charge"),
                    Some(c) => ApiError::invalid_code(c, m, "amount"),
                    None => ApiError::invalid(m, None),
                },
            )?;
            a.refunds
                .iter()
                .find(|r| r.id == id)
                .map(|r| a.refund_json(r))
                .ok_or_else(|| ApiError::no_such("refund", &id, "id"))
        }
        ("GET", ["refunds"]) => {
            let p = Params::parse(raw, &allowed(&["charge", "payment_intent"], true))?;
            expansions(&p, &[])?;
            let charge = p.str("charge")?;
            let pi = p.str("payment_intent")?;
            let items = a
                .refunds
                .iter()
                .filter(|r| charge.as_ref().is_none_or(|c| r.charge == *c))
                .filter(|r| pi.as_ref().is_none_or(|x| r.payment_intent == *x))
                .map(|r| (r.id.clone(), a.refund_json(r)))
                .collect();
            page("/v1/refunds", items, &p, "refund")
        }
        ("GET", ["charges"]) => {
            let p = Params::parse(
                raw,
                &allowed(&["customer", "payment_intent", "transfer_group"], true),
            )?;
            let expand = expansions(&p, &["data.balance_transaction"])?;
            let customer = p.str("customer")?;
            let pi = p.str("payment_intent")?;
            let items = a
                .charges
                .iter()
                .filter(|c| customer.as_ref().is_none_or(|x| c.customer == *x))
                .filter(|c| pi.as_ref().is_none_or(|x| c.payment_intent == *x))
                .map(|c| (c.id.clone(), a.charge_json_expanded(c, !expand.is_empty())))
                .collect();
            page("/v1/charges", items, &p, "charge")
        }
        ("GET", ["charges", id]) => {
            let p = Params::parse(raw, &allowed(&[], false))?;
            let expand = expansions(&p, &["balance_transaction"])?;
            a.charges
                .iter()
                .find(|c| c.id == *id)
                .map(|c| a.charge_json_expanded(c, !expand.is_empty()))
                .ok_or_else(|| ApiError::no_such("charge", id, "id"))
        }
        ("GET", ["disputes"]) => {
            let p = Params::parse(raw, &allowed(&["charge", "payment_intent"], true))?;
            expansions(&p, &[])?;
            let charge = p.str("charge")?;
            let pi = p.str("payment_intent")?;
            let items = a
                .disputes
                .iter()
                .filter(|d| charge.as_ref().is_none_or(|x| d.charge == *x))
                .filter(|d| pi.as_ref().is_none_or(|x| d.payment_intent == *x))
                .map(|d| (d.id.clone(), a.dispute_json(d)))
                .collect();
            page("/v1/disputes", items, &p, "dispute")
        }
        ("GET", ["disputes", id]) => {
            let p = Params::parse(raw, &allowed(&[], false))?;
            expansions(&p, &[])?;
            a.disputes
                .iter()
                .find(|d| d.id == *id)
                .map(|d| a.dispute_json(d))
                .ok_or_else(|| ApiError::no_such("dispute", id, "dispute"))
        }
        ("GET", ["balance_transactions", id]) => {
            let p = Params::parse(raw, &allowed(&[], false))?;
            expansions(&p, &[])?;
            a.balance_transaction(id)
                .map(|t| a.balance_transaction_json(t))
                .ok_or_else(|| ApiError::no_such("balance_transaction", id, "id"))
        }
        _ => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            ..ApiError::invalid(
                format!(
                    "Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/."
                ),
                None,
            )
        }),
    }
}

fn currency_of(p: &Params) -> Result<String, ApiError> {
    let c = p.req("currency")?;
    if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(ApiError::invalid(format!("Invalid currency: {c}"), Some("currency")));
    }
    Ok(c.to_ascii_lowercase())
}

fn create_product(a: &mut Account, p: &Params) -> ApiResult {
    let name = p.req("name")?;
    let id = p.str("id")?.unwrap_or_else(|| a.id("prod"));
    if a.product(&id).is_some() {
        return Err(ApiError::invalid_code(
            "resource_already_exists",
            format!("Product already exists: {id}"),
            "id",
        ));
    }
    let prod = Product {
        id,
        name,
        active: p.bool("active")?.unwrap_or(true),
        metadata: p.map("metadata")?,
        created: a.now,
    };
    let v = a.product_json(&prod);
    a.products.push(prod);
    a.emit("product.created", v.clone(), None);
    Ok(v)
}

fn create_price(a: &mut Account, p: &Params) -> ApiResult {
    let currency = currency_of(p)?;
    let unit_amount = p.int("unit_amount")?.ok_or_else(|| ApiError::missing("unit_amount"))?;
    if unit_amount < 0 {
        return Err(ApiError::invalid_code(
            "parameter_invalid_integer",
            "Invalid non-negative integer".into(),
            "unit_amount",
        ));
    }
    if !p.has("recurring") {
        return Err(ApiError::invalid(
            "The stand-in models recurring prices only: recurring[interval] is required.".into(),
            Some("recurring"),
        ));
    }
    let interval = p.req("recurring.interval")?;
    let count = p.int("recurring.interval_count")?.unwrap_or(1);
    let max = match interval.as_str() {
        "day" => 365,
        "week" => 52,
        "month" => 12,
        "year" => 1,
        _ => {
            return Err(ApiError::invalid(
                format!(
                    "Invalid recurring[interval]: must be one of day, month, week, or year ({interval})"
                ),
                Some("recurring[interval]"),
            ));
        }
    };
    if !(1..=max).contains(&count) {
        return Err(ApiError::invalid(
            "The maximum billing interval is 1 year (1 year, 12 months, 52 weeks, or 365 days)."
                .into(),
            Some("recurring[interval_count]"),
        ));
    }
    let product = match (p.str("product")?, p.has("product_data")) {
        (Some(id), false) => {
            if a.product(&id).is_none() {
                return Err(ApiError::no_such("product", &id, "product"));
            }
            id
        }
        (None, true) => {
            let name = p.req("product_data.name")?;
            let id = p.str("product_data.id")?.unwrap_or_else(|| a.id("prod"));
            let prod = Product {
                id: id.clone(),
                name,
                active: p.bool("product_data.active")?.unwrap_or(true),
                metadata: p.map("product_data.metadata")?,
                created: a.now,
            };
            let v = a.product_json(&prod);
            a.products.push(prod);
            a.emit("product.created", v, None);
            id
        }
        (Some(_), true) => {
            return Err(ApiError::invalid(
                "You may only specify one of these parameters: product, product_data.".into(),
                None,
            ));
        }
        (None, false) => {
            return Err(ApiError::invalid_code(
                "parameter_missing",
                "You must specify either `product` or `product_data` when creating a price.".into(),
                "product",
            ));
        }
    };
    let lookup_key = p.str("lookup_key")?;
    if let Some(k) = &lookup_key {
        let taken = a.prices.iter().position(|x| x.lookup_key.as_ref() == Some(k));
        if let Some(i) = taken {
            if p.bool("transfer_lookup_key")? == Some(true) {
                a.prices[i].lookup_key = None;
            } else {
                return Err(ApiError::invalid(
                    format!("A price (`{}`) already uses that lookup key.", a.prices[i].id),
                    Some("lookup_key"),
                ));
            }
        }
    }
    let price = Price {
        id: a.id("price"),
        product,
        active: p.bool("active")?.unwrap_or(true),
        currency,
        unit_amount,
        interval,
        interval_count: count,
        lookup_key,
        nickname: p.str("nickname")?,
        metadata: p.map("metadata")?,
        created: a.now,
    };
    let v = a.price_json(&price);
    a.prices.push(price);
    a.emit("price.created", v.clone(), None);
    Ok(v)
}

fn create_session(a: &mut Account, p: &Params) -> ApiResult {
    let mode = p.req("mode")?;
    if mode != "subscription" {
        return Err(ApiError::invalid(
            format!("The stand-in models Checkout in subscription mode only (mode={mode})."),
            Some("mode"),
        ));
    }
    if let Some(ui) = p.str("ui_mode")?
        && ui != "hosted"
    {
        return Err(ApiError::invalid(
            "The stand-in models the hosted Checkout page only.".into(),
            Some("ui_mode"),
        ));
    }
    let success_url = p.req("success_url")?;
    for (name, u) in
        [("success_url", Some(&success_url)), ("cancel_url", p.str("cancel_url")?.as_ref())]
    {
        if let Some(u) = u
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err(ApiError::invalid_code("url_invalid", "Not a valid URL".into(), name));
        }
    }
    let customer = p.str("customer")?;
    if let Some(c) = &customer {
        if a.customer(c).is_none() {
            return Err(ApiError::no_such("customer", c, "customer"));
        }
        if p.has("customer_email") {
            return Err(ApiError::invalid(
                "You may only specify one of these parameters: customer, customer_email.".into(),
                None,
            ));
        }
    }
    let items = match p.tree.get("line_items") {
        Some(Value::Array(items)) if !items.is_empty() => items.len(),
        _ => return Err(ApiError::missing("line_items")),
    };
    if items != 1 {
        return Err(ApiError::invalid(
            "The stand-in models one line item per session.".into(),
            Some("line_items"),
        ));
    }
    let price = p.req("line_items.0.price")?;
    let Some(pr) = a.price(&price) else {
        return Err(ApiError::no_such("price", &price, "line_items[0][price]"));
    };
    if !pr.active {
        return Err(ApiError::invalid(
            "The price specified is inactive. This field only accepts active prices.".into(),
            Some("line_items[0][price]"),
        ));
    }
    let quantity = p.int("line_items.0.quantity")?.unwrap_or(1);
    if quantity < 1 {
        return Err(ApiError::invalid_code(
            "parameter_invalid_integer",
            "Invalid positive integer".into(),
            "line_items[0][quantity]",
        ));
    }
    let trial = p.int("subscription_data.trial_period_days")?;
    if let Some(d) = trial
        && !(1..=730).contains(&d)
    {
        return Err(ApiError::invalid(
            "The trial period must be at least 1 day and at most 730 days.".into(),
            Some("subscription_data[trial_period_days]"),
        ));
    }
    let expires_at = p.int("expires_at")?.unwrap_or(a.now + 24 * 3600);
    let s = CheckoutSession {
        id: a.id("cs_test"),
        customer_email: customer
            .as_ref()
            .and_then(|c| a.customer(c))
            .and_then(|c| c.email.clone())
            .or(p.str("customer_email")?),
        customer,
        price,
        quantity,
        trial_days: trial,
        success_url,
        cancel_url: p.str("cancel_url")?,
        client_reference_id: p.str("client_reference_id")?,
        metadata: p.map("metadata")?,
        sub_metadata: p.map("subscription_data.metadata")?,
        status: SessionStatus::Open,
        subscription: None,
        invoice: None,
        created: a.now,
        expires_at,
    };
    let v = a.session_json(&s);
    a.sessions.push(s);
    Ok(v)
}

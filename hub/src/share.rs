//! Redacted share links (issue 18; board PR-057): a trader shows their own record to someone
//! without an account — a friend, a forum, a prop firm — with nothing that names them.
//!
//! A link shows what the account's devices published on their published stream (closed trades,
//! equity, balance operations: the money figures of the track-record engine), cut at the public
//! delay like every public view, so a shared link never hands out a signal early. It shows no
//! name, e-mail, Telegram handle, device id or name, key, ticket or record hash: the accounts are
//! "Account 1", "Account 2", in the order the devices were enrolled.
//!
//! The URL is `/s/<id><tag>`: the link's random id (16 bytes, hex) and an HMAC of it under the
//! hub's secret ([`crate::secrets::HubSecrets::keyed_hash`], 16 bytes, hex), so a guessed or
//! altered token is refused before any query, and the hub can show the link again without
//! keeping it. Revoking a link, or disabling its account, ends it at once (the page is checked
//! against its row on every request, even when its bytes come from the cache); the hub keeps
//! the row for the audit.
//!
//! | route | |
//! | --- | --- |
//! | `POST /api/v1/share-links` `{label?}` | 201 [`ShareLink`] (its `url`) |
//! | `GET /api/v1/share-links` | the account's links, newest first, revoked ones too |
//! | `DELETE /api/v1/share-links/{id}` | 200 the link, revoked (404 for another account's) |
//! | `GET /s/{token}` | the redacted page (404 page for an unknown, altered or revoked link) |
//!
//! The account page (`/account`) and the Mini App's analytics create, list and revoke them too.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use subtle::ConstantTimeEq;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::analytics::MoneyFigures;
use crate::api::extract::{Authed, Json, Path};
use crate::audit::{self, Entry};
use crate::db::DbError;
use crate::error::{ApiError, Problem};
use crate::state::AppState;
use crate::ui::account::{ActionForm, checked};
use crate::ui::{PageError, fmt, layout};

/// The longest label a link may carry (the owner's own note; never shown on the page).
pub const LABEL_MAX: usize = 80;
/// Links an account may hold unrevoked at once.
pub const ACTIVE_MAX: i64 = 20;
/// The HMAC's domain tag.
const TAG_LABEL: &[u8] = b"tradecast share link\0";

/// A share link as its owner sees it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ShareLink {
    /// The link's id.
    pub id: String,
    /// The owner's note ("for the forum"); not shown on the page.
    pub label: String,
    /// The address to share (on the hub's `public_url` when set, else a path).
    pub url: String,
    /// Created, unix ms.
    pub created_at_ms: i64,
    /// Revoked, unix ms (the link no longer opens).
    pub revoked_at_ms: Option<i64>,
}

/// `POST /api/v1/share-links`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewShareLink {
    /// A note for the owner (at most 80 characters).
    #[serde(default)]
    pub label: Option<String>,
}

/// The link's token: its id and the hub's tag of it.
pub fn token_of(state: &AppState, id: &str) -> String {
    format!("{id}{}", hex::encode(&tag_of(state, id)[..16]))
}

fn tag_of(state: &AppState, id: &str) -> [u8; 32] {
    state.secrets.keyed_hash(TAG_LABEL, id.as_bytes())
}

/// The id of a token the hub made (constant-time check of its tag), or `None`.
fn id_of(state: &AppState, token: &str) -> Option<String> {
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return None;
    }
    let (id, tag) = token.split_at(32);
    let given = hex::decode(tag).ok()?;
    let want = tag_of(state, id);
    bool::from(given.as_slice().ct_eq(&want[..16])).then(|| id.to_owned())
}

fn url_of(state: &AppState, id: &str) -> String {
    let base = state
        .config
        .public_url
        .as_ref()
        .map(|u| u.as_str().trim_end_matches('/').to_owned())
        .unwrap_or_default();
    format!("{base}/s/{}", token_of(state, id))
}

fn row_to_link(state: &AppState, r: &sqlx::any::AnyRow) -> Result<ShareLink, sqlx::Error> {
    let id: String = r.try_get(0)?;
    Ok(ShareLink {
        url: url_of(state, &id),
        id,
        label: r.try_get(1)?,
        created_at_ms: r.try_get(2)?,
        revoked_at_ms: r.try_get(3)?,
    })
}

/// Creates a link to `user_id`'s published record (422 for a long label, 409 `conflict` past
/// [`ACTIVE_MAX`] unrevoked links).
pub async fn create(
    state: &AppState,
    user_id: &str,
    new: &NewShareLink,
    request_id: &str,
) -> Result<ShareLink, ApiError> {
    let label = new.label.as_deref().unwrap_or("").trim().to_owned();
    if label.chars().count() > LABEL_MAX || label.chars().any(char::is_control) {
        return Err(ApiError::Validation(format!(
            "label: at most {LABEL_MAX} characters, no control characters"
        )));
    }
    let now = state.now_ms();
    let id = crate::ids::new_id();
    let mut tx = state.db.begin_write().await?;
    let active: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM share_links WHERE user_id = $1 AND revoked_at_ms IS NULL",
    )
    .bind(user_id)
    .fetch_one(&mut *tx)
    .await
    .map_err(DbError::from)?;
    if active >= ACTIVE_MAX {
        return Err(ApiError::Conflict(format!(
            "{ACTIVE_MAX} share links are open already: revoke one first"
        )));
    }
    sqlx::query(
        "INSERT INTO share_links (id, user_id, label, created_at_ms) VALUES ($1, $2, $3, $4)",
    )
    .bind(&id)
    .bind(user_id)
    .bind(&label)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(DbError::from)?;
    let entry = Entry {
        actor: user_id,
        action: "share_link.create",
        subject: &id,
        detail: serde_json::json!({ "label": label }),
        request_id,
    };
    audit::append(&mut tx, state.db.backend(), now, &entry).await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(ShareLink { url: url_of(state, &id), id, label, created_at_ms: now, revoked_at_ms: None })
}

/// `user_id`'s links, newest first.
pub async fn list(state: &AppState, user_id: &str) -> Result<Vec<ShareLink>, DbError> {
    let rows = sqlx::query(
        "SELECT id, label, created_at_ms, revoked_at_ms FROM share_links WHERE user_id = $1 \
         ORDER BY created_at_ms DESC, id",
    )
    .bind(user_id)
    .fetch_all(state.db.pool())
    .await?;
    Ok(rows.iter().map(|r| row_to_link(state, r)).collect::<Result<_, _>>()?)
}

/// Revokes `user_id`'s link `id` (again: unchanged); 404 for a link of another account.
pub async fn revoke(
    state: &AppState,
    user_id: &str,
    id: &str,
    request_id: &str,
) -> Result<ShareLink, ApiError> {
    let now = state.now_ms();
    let mut tx = state.db.begin_write().await?;
    let n = sqlx::query(
        "UPDATE share_links SET revoked_at_ms = $1 WHERE id = $2 AND user_id = $3 \
         AND revoked_at_ms IS NULL",
    )
    .bind(now)
    .bind(id)
    .bind(user_id)
    .execute(&mut *tx)
    .await
    .map_err(DbError::from)?
    .rows_affected();
    let row = sqlx::query(
        "SELECT id, label, created_at_ms, revoked_at_ms FROM share_links WHERE id = $1 AND user_id = $2",
    )
    .bind(id)
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(DbError::from)?
    .ok_or_else(|| ApiError::NotFound(format!("no share link {id}")))?;
    if n > 0 {
        let entry = Entry {
            actor: user_id,
            action: "share_link.revoke",
            subject: id,
            detail: serde_json::json!({}),
            request_id,
        };
        audit::append(&mut tx, state.db.backend(), now, &entry).await?;
    }
    let link = row_to_link(state, &row).map_err(DbError::from)?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(link)
}

/// The account an open link shows, or `None` (unknown, altered, revoked, or its account
/// disabled by the owner of the hub).
async fn owner_of(state: &AppState, token: &str) -> Result<Option<(String, String)>, DbError> {
    let Some(id) = id_of(state, token) else { return Ok(None) };
    let user: Option<String> = sqlx::query_scalar(
        "SELECT s.user_id FROM share_links s JOIN users u ON u.id = s.user_id \
         WHERE s.id = $1 AND s.revoked_at_ms IS NULL AND u.disabled_at_ms IS NULL",
    )
    .bind(&id)
    .fetch_optional(state.db.pool())
    .await?;
    Ok(user.map(|u| (id, u)))
}

/// The account's money figures as published up to `cutoff_ms`: one per device that published
/// something, in enrolment order (the public record's own functions).
async fn figures(
    state: &AppState,
    user_id: &str,
    cutoff_ms: i64,
) -> Result<Vec<MoneyFigures>, ApiError> {
    let mut chains = Vec::new();
    for key in crate::public::store::device_keys(&state.db, user_id).await? {
        let chain =
            crate::public::published_chain(&state.db, &state.hub_identity, key, cutoff_ms).await?;
        chains.extend(chain);
    }
    crate::public::money_of(&chains)
}

/// The page of a link: the money sections with the accounts numbered instead of named.
pub fn render(money: &[MoneyFigures], cutoff_ms: i64, delay_s: u64) -> Markup {
    let body = html! {
        h1 { "A trader's record" }
        p {
            "Shared by a Tradecast trader. Every figure below is computed from what their trading "
            "app signed and published to the hub (closed trades, equity points, balance operations) "
            "— never from numbers anyone typed in. Delayed by " (delay_s / 60) " min: nothing the hub "
            "received after " (fmt::when(Some(cutoff_ms))) " UTC is shown."
        }
        p.mute #redacted {
            "Redacted: this page shows no name, e-mail, Telegram handle, device, key, ticket or "
            "broker account; the trader can revoke the link at any time."
        }
        @if money.is_empty() {
            p #nothing { "Nothing published yet." }
        }
        @for (i, m) in money.iter().enumerate() {
            (crate::public::page::money_section_as(i, m, "This trader", &format!("Account {}", i + 1)))
        }
        h2 { "How each figure is computed" }
        dl #money-formulas {
            @for (name, text) in crate::public::page::MONEY_FORMULAS { dt { (name) } dd { (text) } }
        }
    };
    layout::bare("A trader's record — Tradecast", None, body)
}

/// `GET /s/{token}`.
pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> Result<Response, PageError> {
    let Some((id, user)) = owner_of(&state, &token).await.map_err(ApiError::from)? else {
        return Err(PageError(ApiError::NotFound(
            "This share link does not exist or was revoked by its owner.".into(),
        )));
    };
    let delay_s = state.config.public.delay_s;
    let cutoff = crate::public::cutoff_at(state.now_ms(), delay_s);
    let rendered = state
        .public_cache
        .view(&format!("share {id}"), "page", cutoff, || async {
            let money = figures(&state, &user, cutoff).await?;
            Ok(render(&money, cutoff, delay_s).into_string().into_bytes())
        })
        .await?;
    Ok(crate::public::respond(&headers, "text/html; charset=utf-8", &rendered))
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_link, list_links)).routes(routes!(revoke_link))
}

/// Create a redacted share link to your published record.
#[utoipa::path(post, path = "/api/v1/share-links", tag = "share", request_body = NewShareLink,
    security(("bearer" = [])), responses(
    (status = 201, body = ShareLink),
    (status = 409, description = "conflict: too many open links", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "validation", body = Problem, content_type = "application/problem+json"),
))]
async fn create_link(
    State(state): State<AppState>,
    authed: Authed,
    Json(req): Json<NewShareLink>,
) -> Result<(StatusCode, axum::Json<ShareLink>), ApiError> {
    let link = create(&state, &authed.user_id, &req, &authed.request_id).await?;
    Ok((StatusCode::CREATED, axum::Json(link)))
}

/// Your share links, newest first (revoked ones too).
#[utoipa::path(get, path = "/api/v1/share-links", tag = "share", security(("bearer" = [])),
    responses((status = 200, body = Vec<ShareLink>)))]
async fn list_links(
    State(state): State<AppState>,
    authed: Authed,
) -> Result<axum::Json<Vec<ShareLink>>, ApiError> {
    Ok(axum::Json(list(&state, &authed.user_id).await?))
}

/// Revoke one of your share links: it stops opening at once.
#[utoipa::path(delete, path = "/api/v1/share-links/{id}", tag = "share",
    params(("id" = String, Path, description = "link id")), security(("bearer" = [])), responses(
    (status = 200, body = ShareLink),
    (status = 404, description = "not-found", body = Problem, content_type = "application/problem+json"),
))]
async fn revoke_link(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
) -> Result<axum::Json<ShareLink>, ApiError> {
    Ok(axum::Json(revoke(&state, &authed.user_id, &id, &authed.request_id).await?))
}

/// The account page's section: the open links with their address and a revoke button, the
/// revoked ones, and a form for a new one.
pub(crate) fn account_section(links: &[ShareLink], csrf: &str) -> Markup {
    let (open, revoked): (Vec<&ShareLink>, Vec<&ShareLink>) =
        links.iter().partition(|l| l.revoked_at_ms.is_none());
    html! {
        section #share {
            h2 { "Share your record" }
            p.mute {
                "A link anyone can open without an account: the money figures of what your "
                "devices publish (Settings → Publishing in the app), delayed like every public "
                "page, with no name, e-mail, device or broker account on it. Revoke it any time."
            }
            @if !open.is_empty() {
                table #share-links {
                    thead { tr { th { "Link" } th { "Your note" } th { "Created (UTC)" } th {} } }
                    tbody {
                        @for l in &open {
                            tr {
                                td { a href=(l.url) { code { (l.url) } } }
                                td { (l.label) }
                                td.nowrap { (fmt::when(Some(l.created_at_ms))) }
                                td {
                                    form method="post" action=(format!("/account/share-links/{}/revoke", l.id)) {
                                        input type="hidden" name="csrf" value=(csrf);
                                        button type="submit" { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if !revoked.is_empty() {
                p.mute { (revoked.len()) " revoked link(s) no longer open." }
            }
            form method="post" action="/account/share-links" {
                input type="hidden" name="csrf" value=(csrf);
                label for="share-label" { "Note (only you see it)" }
                input #share-label type="text" name="label" maxlength=(LABEL_MAX) placeholder="e.g. for the forum";
                button.primary type="submit" { "Create a share link" }
            }
        }
    }
}

/// `POST /account/share-links` (`label`): a new link, shown on the account page.
pub async fn create_form(
    State(state): State<AppState>,
    crate::ui::session::Member(signed): crate::ui::session::Member,
    crate::api::extract::RequestId(request_id): crate::api::extract::RequestId,
    headers: HeaderMap,
    form: Result<axum::Form<ActionForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    let form = checked(&signed, &headers, form)?;
    let new = NewShareLink { label: form.label };
    let notice = match create(&state, &signed.user.id, &new, &request_id).await {
        Ok(l) => layout::Notice::Ok(format!("New share link: {}", l.url)),
        Err(e @ (ApiError::Validation(_) | ApiError::Conflict(_))) => {
            layout::Notice::Err(e.to_string())
        }
        Err(e) => return Err(e.into()),
    };
    Ok(layout::html(crate::ui::account::render(&state, &signed, Some(&notice)).await?))
}

/// `POST /account/share-links/{id}/revoke`.
pub async fn revoke_form(
    State(state): State<AppState>,
    crate::ui::session::Member(signed): crate::ui::session::Member,
    crate::api::extract::RequestId(request_id): crate::api::extract::RequestId,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    form: Result<axum::Form<ActionForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    checked(&signed, &headers, form)?;
    let link = revoke(&state, &signed.user.id, &id, &request_id).await?;
    let notice = layout::Notice::Ok(format!("Revoked: {} no longer opens.", link.url));
    Ok(layout::html(crate::ui::account::render(&state, &signed, Some(&notice)).await?))
}

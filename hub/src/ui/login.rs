//! Login and logout: `GET /login` (the form; `/` shows the same form without a session),
//! `POST /login` (e-mail + password through `accounts::login`, the API's own check with its
//! per-email throttle and lock, under the `rate_limits.login_per_ip` bucket the API's login
//! uses), `POST /logout` (CSRF-checked; deletes the session).
//!
//! A wrong e-mail and a wrong password read the same. Every enabled account gets a session: an
//! owner or admin lands on the console, a provider or subscriber on its account page
//! (`/account`); the console's pages still refuse them (403).

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::PageError;
use super::layout::{self, Notice};
use super::session::{self, Lookup, Signed};
use crate::accounts;
use crate::api::extract::{ClientIp, RequestId, enforce};
use crate::error::ApiError;
use crate::state::AppState;

/// The login form, answered with `status` (and `notice` above it).
pub fn page(status: StatusCode, notice: Option<&str>, email: &str, next: Option<&str>) -> Response {
    let notice = notice.map(|n| Notice::Err(n.to_string()));
    let body = html! {
        section.narrow {
            h1 { "Sign in" }
            p.mute { "Subscribers and providers reach their account; owners and admins the console." }
            form method="post" action="/login" {
                label for="email" { "E-mail" }
                input #email type="email" name="email" value=(email) autocomplete="username" required autofocus;
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
                @if let Some(next) = next {
                    input type="hidden" name="next" value=(next);
                }
                button.primary type="submit" { "Sign in" }
            }
            p { "No account yet? " a href="/signup" { "Sign up" } }
        }
    };
    (status, layout::html(layout::bare("Sign in", notice.as_ref(), body))).into_response()
}

/// The 403 page of a signed-in account that is neither owner nor admin (with a sign-out
/// button when it holds a session).
pub fn not_for_you(signed: &Signed) -> Response {
    let body = html! {
        section.narrow {
            h1 { "The console is for owners and admins" }
            p { "You are signed in as " strong { (signed.user.email) } " (" (signed.user.role.as_str()) ")." }
            p.mute { "Ask an owner of this hub if you need access." }
            p { a href="/account" { "Your account" } }
            form method="post" action="/logout" {
                input type="hidden" name="csrf" value=(signed.csrf);
                button type="submit" { "Sign out" }
            }
        }
    };
    (StatusCode::FORBIDDEN, layout::html(layout::bare("Not for this account", None, body)))
        .into_response()
}

/// The path to come back to after login: the request's own path and query when it is a local
/// page other than `/` and `/login`.
pub fn next_of(uri: &Uri) -> Option<String> {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    safe_next(path).map(str::to_owned)
}

/// `next` if it is a path on this hub (not `//host`, no backslash or control character), else
/// `None`.
fn safe_next(next: &str) -> Option<&str> {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains(['\\'])
        && !next.chars().any(|c| c.is_control())
        && next.len() <= 512;
    (local && next != "/" && !next.starts_with("/login") && !next.starts_with("/logout"))
        .then_some(next)
}

/// `GET /login`: the form, or the console when already signed in.
pub async fn form(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    match session::lookup(&state, &headers).await? {
        Lookup::Live(s) if s.user.role.is_admin() => Ok(Redirect::to("/").into_response()),
        Lookup::Live(_) => Ok(Redirect::to("/account").into_response()),
        _ => Ok(page(StatusCode::OK, None, "", None)),
    }
}

/// The login form's fields.
#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: Option<String>,
}

impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginForm")
            .field("email", &self.email)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// `POST /login`.
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    RequestId(request_id): RequestId,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    let Ok(Form(form)) = form else {
        return Ok(page(
            StatusCode::BAD_REQUEST,
            Some("The form was incomplete; try again."),
            "",
            None,
        ));
    };
    let next = form.next.as_deref().and_then(safe_next);
    let refused = |status: StatusCode, words: &str, retry_after_s: Option<u64>| {
        let mut resp = page(status, Some(words), &form.email, next);
        if let Some(s) = retry_after_s {
            resp.headers_mut().insert(header::RETRY_AFTER, s.max(1).into());
        }
        resp
    };
    if let Err(e) =
        enforce(&state, &format!("login:{ip}"), state.config.rate_limits.login_per_ip).await
    {
        let ApiError::RateLimited { retry_after_s } = e else { return Err(PageError(e)) };
        let words = format!("Too many sign-in attempts from your address; wait {retry_after_s} s.");
        return Ok(refused(StatusCode::TOO_MANY_REQUESTS, &words, Some(retry_after_s)));
    }
    let outcome = accounts::login(
        &state.db,
        &state.config.auth,
        state.now_ms(),
        &form.email,
        &form.password,
        &ip.to_string(),
        &request_id,
    )
    .await;
    let user = match outcome {
        Ok(user) => user,
        Err(ApiError::InvalidCredentials) => {
            return Ok(refused(StatusCode::UNAUTHORIZED, "Wrong e-mail or password.", None));
        }
        Err(ApiError::AccountDisabled) => {
            return Ok(refused(StatusCode::FORBIDDEN, "This account is disabled.", None));
        }
        Err(ApiError::LoginThrottled { retry_after_s }) => {
            let words = format!("Too many failed sign-ins; wait {retry_after_s} s and try again.");
            return Ok(refused(StatusCode::TOO_MANY_REQUESTS, &words, Some(retry_after_s)));
        }
        Err(ApiError::AccountLocked { retry_after_s }) => {
            let words = format!(
                "Sign-in is locked after repeated failures; try again in {} min.",
                retry_after_s.div_ceil(60)
            );
            return Ok(refused(StatusCode::LOCKED, &words, Some(retry_after_s)));
        }
        Err(e) => return Err(PageError(e)),
    };
    // A provider or subscriber lands on its account page (or the account page it came from).
    let landing = if user.role.is_admin() {
        next.unwrap_or("/")
    } else {
        next.filter(|n| n.starts_with("/account") || n.starts_with("/billing"))
            .unwrap_or("/account")
    };
    let cookie = session::open(&state, &user.id).await?;
    let mut resp = Redirect::to(landing).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(resp)
}

/// A form that carries only the CSRF token.
#[derive(Debug, Default, Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    csrf: Option<String>,
}

/// `POST /logout`: any signed-in account (a demoted admin too) may end its session.
pub async fn logout(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    let signed = match session::lookup(&state, &headers).await? {
        Lookup::Live(s) => s,
        Lookup::Absent | Lookup::Ended => {
            let mut resp =
                page(StatusCode::UNAUTHORIZED, Some("You were not signed in."), "", None);
            resp.headers_mut().insert(header::SET_COOKIE, session::clear_cookie(&state));
            return Ok(resp);
        }
    };
    let form = form.map(|Form(f)| f).unwrap_or_default();
    if !session::csrf_ok(&signed, &headers, form.csrf.as_deref()) {
        return Err(PageError::csrf());
    }
    session::end(&state, &signed, &request_id).await?;
    let mut resp = page(StatusCode::OK, None, "", None);
    resp.headers_mut().insert(header::SET_COOKIE, session::clear_cookie(&state));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_a_local_page_only() {
        let check = |next: &str, ok: bool| assert_eq!(safe_next(next).is_some(), ok, "{next}");
        check("/billing?plan=1", true);
        check("/a/b", true);
        check("/", false);
        check("/login?next=/x", false);
        check("/logout", false);
        check("//evil.example.com/", false);
        check("/\\evil.example.com", false);
        check("https://evil.example.com/", false);
        check("billing", false);
        check("/a\nb", false);
        check("", false);
    }
}

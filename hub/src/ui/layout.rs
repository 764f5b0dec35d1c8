//! The one page frame of the console: `<head>` (the stylesheet and htmx, from `/assets/` with
//! their version tags; no inline script or style, the CSP forbids them), the header (brand,
//! navigation filtered by the account's role, who is signed in, sign out), the notice area, the
//! page's `<main>`, and the footer (the hub's version, the vendored libraries' licences).
//!
//! Pages of other issues add a [`NavItem`] to [`NAV`] and render through [`page`]. Pages without
//! a session (login, errors) use [`bare`].

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::assets;
use super::session::Signed;
use crate::accounts::Role;

/// A message above the page's content.
#[derive(Debug, Clone)]
pub enum Notice {
    /// Something done.
    Ok(String),
    /// Something refused or failed.
    Err(String),
}

/// One entry of the navigation.
#[derive(Debug)]
pub struct NavItem {
    /// Where it goes.
    pub href: &'static str,
    /// What it says.
    pub label: &'static str,
    /// The roles that see it (the page itself checks the role again).
    pub roles: &'static [Role],
}

const ADMINS: &[Role] = &[Role::Owner, Role::Admin];
/// Providers and subscribers (the console's people see the affiliates from `/affiliates`).
const MEMBERS: &[Role] = &[Role::Provider, Role::Subscriber];
const EVERYONE: &[Role] = &[Role::Owner, Role::Admin, Role::Provider, Role::Subscriber];

/// The navigation, in order.
pub static NAV: &[NavItem] = &[
    NavItem { href: "/", label: "Overview", roles: ADMINS },
    NavItem { href: "/subscribers", label: "Subscribers", roles: ADMINS },
    NavItem { href: "/providers", label: "Providers and plans", roles: ADMINS },
    NavItem { href: "/revenue", label: "Revenue", roles: ADMINS },
    NavItem { href: "/operations", label: "Operations", roles: ADMINS },
    NavItem { href: "/outbox", label: "Outbox", roles: ADMINS },
    NavItem { href: "/broadcasts", label: "Broadcasts", roles: ADMINS },
    NavItem { href: "/affiliates", label: "Affiliates", roles: ADMINS },
    NavItem { href: "/audit", label: "Audit", roles: ADMINS },
    NavItem { href: "/api/v1/docs", label: "API", roles: ADMINS },
    NavItem { href: "/provider", label: "Your signals", roles: &[Role::Provider] },
    NavItem { href: "/account", label: "Your account", roles: EVERYONE },
    NavItem { href: "/affiliate", label: "Refer and earn", roles: MEMBERS },
];

/// A console page: who it is for, its title, the navigation entry it belongs to, a notice.
#[derive(Debug)]
pub struct Frame<'a> {
    /// The signed-in account (role, e-mail, CSRF token).
    pub signed: &'a Signed,
    /// The `<title>` and the page's heading.
    pub title: &'a str,
    /// The `href` of the [`NAV`] entry to mark as current.
    pub active: &'a str,
    /// A notice above the content.
    pub notice: Option<&'a Notice>,
}

fn head(title: &str) -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        // htmx must not evaluate strings or inject its indicator styles (both break the CSP).
        meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false}"#;
        title { "Tradecast hub · " (title) }
        link rel="stylesheet" href=(assets::url("console.css"));
        script src=(assets::url("vendor/htmx.min.js")) defer {}
    }
}

fn notice_area(notice: Option<&Notice>) -> Markup {
    html! {
        div #notice {
            @match notice {
                Some(Notice::Ok(m)) => div.banner.ok role="status" { (m) },
                Some(Notice::Err(m)) => div.banner.err role="alert" { (m) },
                None => {},
            }
        }
    }
}

fn footer() -> Markup {
    html! {
        footer {
            span { "Tradecast hub " (env!("CARGO_PKG_VERSION")) }
            span {
                "Includes htmx (" a href=(assets::url("vendor/htmx.LICENSE")) { "licence" } ") and uPlot ("
                a href=(assets::url("vendor/uPlot.LICENSE")) { "licence" } ")"
            }
        }
    }
}

/// A console page for a signed-in account.
pub fn page(frame: &Frame<'_>, body: Markup) -> Markup {
    let user = &frame.signed.user;
    let csrf_header = serde_json::json!({ "X-CSRF-Token": frame.signed.csrf }).to_string();
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(frame.title)) }
            body hx-headers=(csrf_header) {
                header {
                    span.brand { "Tradecast hub" }
                    nav {
                        @for item in NAV.iter().filter(|i| i.roles.contains(&user.role)) {
                            a href=(item.href) class=[(item.href == frame.active).then_some("on")] { (item.label) }
                        }
                    }
                    div.who {
                        span { (user.email) " · " (user.role.as_str()) }
                        form.inline method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(frame.signed.csrf);
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main #main {
                    (notice_area(frame.notice))
                    h1 { (frame.title) }
                    (body)
                }
                (footer())
            }
        }
    }
}

/// A page without navigation (login, refusals, errors).
pub fn bare(title: &str, notice: Option<&Notice>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(title)) }
            body {
                header { span.brand { "Tradecast hub" } }
                main #main {
                    (notice_area(notice))
                    (body)
                }
                (footer())
            }
        }
    }
}

/// An HTML answer.
pub fn html(markup: Markup) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], markup.into_string()).into_response()
}

/// The error page: `status`, a title and what happened.
pub fn error_page(status: StatusCode, title: &str, detail: &str) -> Response {
    let body = html! {
        section.narrow {
            h1 { (title) }
            p { (detail) }
            p { a href="/" { "Back to the console" } }
        }
    };
    (status, html(bare(title, None, body))).into_response()
}

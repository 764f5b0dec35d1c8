//! The console's page shell (issue 21, part 0): login and logout, the overview with real
//! figures, the session's rules (CSRF, cross-site posts, expiry, roles read on every request),
//! the Host check, the security headers and the embedded assets with their licences.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, Resp, TestHub, post_signal, provider_kit, signal};
use crate::on_both;

on_both!(
    console_login_and_overview,
    console_refuses_forged_and_cross_site_posts,
    console_refuses_other_roles_at_once,
    console_sessions_end,
    console_login_is_rate_limited,
    console_checks_host_and_serves_assets,
    console_store_failure_is_an_error_page,
);

pub(crate) fn form_body(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".into(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    fields.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

/// A browser-like request: no redirects followed, the cookie and headers given.
pub(crate) async fn page(
    hub: &TestHub,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    headers: &[(&str, &str)],
    form: Option<&[(&str, &str)]>,
) -> Resp {
    let client =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut r = client.request(method.parse().unwrap(), hub.url(path));
    if let Some(c) = cookie {
        r = r.header("cookie", c);
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    if let Some(f) = form {
        r = r.header("content-type", "application/x-www-form-urlencoded").body(form_body(f));
    }
    Resp::from(r.send().await.unwrap()).await
}

pub(crate) fn set_cookie(r: &Resp) -> Option<String> {
    r.headers.get("set-cookie").map(|v| v.to_str().unwrap().to_string())
}

/// Signs in through the form; returns the answer and the `Cookie` value it set.
pub(crate) async fn sign_in(hub: &TestHub, email: &str, password: &str) -> (Resp, Option<String>) {
    let r =
        page(hub, "POST", "/login", None, &[], Some(&[("email", email), ("password", password)]))
            .await;
    let cookie = set_cookie(&r).map(|c| c.split(';').next().unwrap().to_string());
    (r, cookie)
}

/// Signs in an owner or admin and returns the cookie.
pub(crate) async fn console_cookie(hub: &TestHub, email: &str, password: &str) -> String {
    let (r, cookie) = sign_in(hub, email, password).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    cookie.expect("a session cookie")
}

pub(crate) fn csrf_of(r: &Resp) -> String {
    let at = r.text.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    r.text[at..at + 64].to_string()
}

fn figure(r: &Resp, id: &str) -> i64 {
    let marker = format!("id=\"fig-{id}\">");
    let at =
        r.text.find(&marker).unwrap_or_else(|| panic!("no figure {id}: {}", r.text)) + marker.len();
    r.text[at..].split('<').next().unwrap().parse().unwrap()
}

pub(crate) fn is_login_page(r: &Resp) -> bool {
    r.text.contains("<h1>Sign in</h1>") && r.text.contains("action=\"/login\"")
}

async fn console_login_and_overview(b: Backend) {
    // Many logins from one address: the bucket is tested on its own below.
    let hub = TestHub::start_with(b, |c| c.rate_limits.login_per_ip.burst = 100).await;
    let owner = hub.owner().await;

    // No session: `/` is the login form, with the security headers.
    let r = page(&hub, "GET", "/", None, &[], None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(is_login_page(&r), "{}", r.text);
    let csp = r.headers["content-security-policy"].to_str().unwrap();
    assert_eq!(csp, tradecast_hub::ui::CSP);
    assert!(csp.contains("default-src 'self'") && !csp.contains("unsafe"), "{csp}");
    assert_eq!(r.headers["x-frame-options"], "DENY");
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
    assert_eq!(r.headers["cache-control"], "no-store");
    assert!(r.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(!r.text.contains("<script>"), "no inline script: {}", r.text);
    assert_eq!(page(&hub, "GET", "/login", None, &[], None).await.status, StatusCode::OK);

    // Wrong password and unknown e-mail read the same; no cookie.
    for (email, password) in
        [(owner.email.as_str(), "wrong password!"), ("nobody@example.com", "x")]
    {
        let (r, cookie) = sign_in(&hub, email, password).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
        assert!(r.text.contains("Wrong e-mail or password."), "{}", r.text);
        assert!(is_login_page(&r));
        assert_eq!(cookie, None);
    }

    // The right password: a session cookie with its attributes, back to `/`.
    let (r, _) = sign_in(&hub, &owner.email, &owner.password).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(r.headers["location"], "/");
    let raw = set_cookie(&r).unwrap();
    for attr in
        ["tc_hub_session=", "; Path=/", "; HttpOnly", "; SameSite=Strict", "; Max-Age=28800"]
    {
        assert!(raw.contains(attr), "{raw} lacks {attr}");
    }
    assert!(!raw.contains("Secure"), "plain-http hub: {raw}");
    let cookie = raw.split(';').next().unwrap().to_string();
    // Only a hash of the token is stored.
    let token = cookie.split_once('=').unwrap().1;
    let stored: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM console_sessions")
        .fetch_all(hub.db.pool())
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], token);

    // Real figures, through the same domain functions the API uses.
    let kit = provider_kit(&hub, &owner).await;
    let _subscriber = hub.user(&owner, "subscriber").await;
    let now = hub.clock.now_ms();
    let (_, posted) = post_signal(&hub, &kit, &signal(&kit.identity, now), 1).await;
    posted.ok(201);
    let r = page(&hub, "GET", "/", Some(&cookie), &[], None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("<h1>Overview</h1>"), "{}", r.text);
    assert!(r.text.contains(&owner.email) && r.text.contains("Sign out"));
    for (id, n) in [
        ("accounts-owner", 1),
        ("accounts-admin", 0),
        ("accounts-provider", 1),
        ("accounts-subscriber", 1),
        ("signals-today", 1),
        ("devices-active", 1),
        ("plans-active", 1),
    ] {
        assert_eq!(figure(&r, id), n, "{id}");
    }
    // A healthy hub raises no alarm; today's signal reached no device (none entitled).
    assert!(r.text.contains("Nothing needs you."), "{}", r.text);
    assert!(r.text.contains("id=\"fig-fanout-delivered\">0 / 0<"), "{}", r.text);
    assert!(r.text.contains("id=\"fig-fanout-p99\">—<"), "{}", r.text);
    assert!(
        r.text.contains("data-live=\"/events/overview\"")
            && r.text.contains("/assets/console.js?v=")
    );
    // A quarantined stream is an alarm, with the page that shows it; the live stream sends the
    // figures at once (then again when they change).
    tradecast_hub::quic::store::quarantine(
        &hub.db,
        &kit.identity.device_id(),
        tradecast_protocol::StreamId::SIGNALS,
        now,
    )
    .await
    .unwrap();
    let r = page(&hub, "GET", "/", Some(&cookie), &[], None).await;
    assert_eq!(figure(&r, "alarm-quarantined"), 1, "{}", r.text);
    assert!(r.text.contains("href=\"/providers#quarantine\""), "{}", r.text);
    let mut live = reqwest::Client::new()
        .get(hub.url("/events/overview"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(live.headers()["content-type"], "text/event-stream");
    let mut first = String::new();
    while !first.contains("\n\n") {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), live.chunk())
            .await
            .expect("the first event at once")
            .unwrap()
            .expect("the stream is open");
        first.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(first.starts_with("event: figures\n"), "{first}");
    assert!(first.contains("id=\"fig-alarm-quarantined\">1<"), "{first}");
    assert!(!first.contains("\ndata: \n") && !first.contains("<script"), "{first}");
    let anonymous = page(&hub, "GET", "/events/overview", None, &[], None).await;
    assert!(is_login_page(&anonymous), "no stream without a session");

    // The navigation and the CSRF token htmx sends.
    assert!(r.text.contains("<a href=\"/\" class=\"on\">Overview</a>"), "{}", r.text);
    let csrf = csrf_of(&r);
    assert!(
        r.text.contains(&format!("hx-headers=\"{{&quot;X-CSRF-Token&quot;:&quot;{csrf}&quot;}}\"")),
        "{}",
        r.text
    );
    // Signed in, `/login` goes to the console.
    let r = page(&hub, "GET", "/login", Some(&cookie), &[], None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);

    // Logout ends the session: the cookie no longer opens the console.
    let r = page(&hub, "POST", "/logout", Some(&cookie), &[], Some(&[("csrf", &csrf)])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(set_cookie(&r).unwrap().contains("Max-Age=0"));
    let r = page(&hub, "GET", "/", Some(&cookie), &[], None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(is_login_page(&r) && r.text.contains("Your session has ended"), "{}", r.text);
    // ... and the live stream it had opened (checked every 5 s).
    let ended = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(_chunk) = live.chunk().await.unwrap() {}
    })
    .await;
    assert!(ended.is_ok(), "the live stream ends with the session");
    // After login, a local `next` is honoured; another site's is not.
    for (next, location) in
        [("/?tab=1", "/?tab=1"), ("//evil.example.com/", "/"), ("https://evil.example.com/", "/")]
    {
        let form = [
            ("email", owner.email.as_str()),
            ("password", owner.password.as_str()),
            ("next", next),
        ];
        let r = page(&hub, "POST", "/login", None, &[], Some(&form)).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert_eq!(r.headers["location"], location, "{next}");
    }
    let audit = hub.get("/api/v1/audit?action=console.logout", Some(&owner.token)).await;
    assert_eq!(audit.ok(200).as_array().map(|a| a.len()), Some(1), "{}", audit.text);
    hub.stop().await;
}

async fn console_refuses_forged_and_cross_site_posts(b: Backend) {
    let hub = TestHub::start(b).await;
    let owner = hub.owner().await;
    let cookie = console_cookie(&hub, &owner.email, &owner.password).await;
    let r = page(&hub, "GET", "/", Some(&cookie), &[], None).await;
    let csrf = csrf_of(&r);
    let origin = format!("http://{}", hub.addr);

    // Without the token, with a wrong one, from another site: refused, and the session lives.
    type Pairs<'a> = &'a [(&'a str, &'a str)];
    let refused: [(Pairs<'_>, Pairs<'_>); 5] = [
        (&[], &[]),
        (&[], &[("csrf", "0000")]),
        (&[("origin", "https://evil.example.com")], &[("csrf", &csrf)]),
        (&[("origin", "null")], &[("csrf", &csrf)]),
        (&[("sec-fetch-site", "cross-site")], &[("csrf", &csrf)]),
    ];
    for (headers, form) in refused {
        let r = page(&hub, "POST", "/logout", Some(&cookie), headers, Some(form)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{headers:?} {form:?}: {}", r.text);
        assert!(r.headers.contains_key("content-security-policy"));
        assert!(set_cookie(&r).is_none());
    }
    // A cross-site login is refused before any password is checked.
    let r = page(
        &hub,
        "POST",
        "/login",
        None,
        &[("origin", "https://evil.example.com")],
        Some(&[("email", &owner.email), ("password", &owner.password)]),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(set_cookie(&r).is_none());
    assert_eq!(page(&hub, "GET", "/", Some(&cookie), &[], None).await.status, StatusCode::OK);

    // The token in the header (htmx), from the hub's own origin: accepted.
    let headers = [
        ("x-csrf-token", csrf.as_str()),
        ("origin", origin.as_str()),
        ("sec-fetch-site", "same-origin"),
    ];
    let r = page(&hub, "POST", "/logout", Some(&cookie), &headers, Some(&[])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    hub.stop().await;
}

async fn console_refuses_other_roles_at_once(b: Backend) {
    let hub = TestHub::start_with(b, |c| c.rate_limits.login_per_ip.burst = 100).await;
    let owner = hub.owner().await;

    // A subscriber and a provider with the right password: signed in to their account page,
    // and told the console is not theirs.
    for role in ["subscriber", "provider"] {
        let who = hub.user(&owner, role).await;
        let (r, cookie) = sign_in(&hub, &who.email, &who.password).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert_eq!(r.headers.get("location").unwrap(), "/account");
        let cookie = cookie.expect("a session for the account page");
        let r = page(&hub, "GET", "/", Some(&cookie), &[], None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        assert!(r.text.contains("The console is for owners and admins"), "{}", r.text);
        assert!(!r.text.contains("fig-"), "no figures for a {role}");
        let r = page(&hub, "GET", "/account", Some(&cookie), &[], None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(r.text.contains("Your account") && r.text.contains(&who.email));
    }

    // An admin is in; demoted in the store, refused on the very next request.
    let admin = hub.user(&owner, "admin").await;
    let cookie = console_cookie(&hub, &admin.email, &admin.password).await;
    let r = page(&hub, "GET", "/", Some(&cookie), &[], None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let path = format!("/api/v1/users/{}/role", admin.user_id);
    hub.send("PUT", &path, Some(&owner.token), Some(json!({ "role": "subscriber" }))).await.ok(200);
    let r = page(&hub, "GET", "/", Some(&cookie), &[], None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(r.text.contains("The console is for owners and admins") && !r.text.contains("fig-"));
    // Promoted again, the same session works; disabled, it ends. (A session refused for its
    // role can still sign out, from the 403 page's own form.)
    let other = hub.user(&owner, "admin").await;
    let other_cookie = console_cookie(&hub, &other.email, &other.password).await;
    let other_path = format!("/api/v1/users/{}/role", other.user_id);
    hub.send("PUT", &other_path, Some(&owner.token), Some(json!({ "role": "provider" })))
        .await
        .ok(200);
    let refused = page(&hub, "GET", "/", Some(&other_cookie), &[], None).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let form = [("csrf", csrf_of(&refused))];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = page(&hub, "POST", "/logout", Some(&other_cookie), &[], Some(&form)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = page(&hub, "GET", "/", Some(&other_cookie), &[], None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    hub.send("PUT", &path, Some(&owner.token), Some(json!({ "role": "admin" }))).await.ok(200);
    assert_eq!(page(&hub, "GET", "/", Some(&cookie), &[], None).await.status, StatusCode::OK);
    hub.post(&format!("/api/v1/users/{}/disable", admin.user_id), Some(&owner.token), json!({}))
        .await
        .ok(200);
    let r = page(&hub, "GET", "/", Some(&cookie), &[], None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert!(is_login_page(&r));
    let (r, _) = sign_in(&hub, &admin.email, &admin.password).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text.contains("This account is disabled."), "{}", r.text);
    hub.stop().await;
}

async fn console_sessions_end(b: Backend) {
    let hub = TestHub::start(b).await;
    let owner = hub.owner().await;
    let cookie = console_cookie(&hub, &owner.email, &owner.password).await;
    assert_eq!(page(&hub, "GET", "/", Some(&cookie), &[], None).await.status, StatusCode::OK);

    // Past the session's lifetime (8 h by default): the login page, the cookie removed and the
    // row deleted.
    hub.clock.advance_ms(8 * 3_600_000 + 1_000);
    let r = page(&hub, "GET", "/", Some(&cookie), &[], None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert!(is_login_page(&r) && r.text.contains("Your session has ended"), "{}", r.text);
    assert!(set_cookie(&r).unwrap().contains("Max-Age=0"));
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM console_sessions")
        .fetch_one(hub.db.pool())
        .await
        .unwrap();
    assert_eq!(n, 0);

    // A made-up cookie is no session either; a post without one is refused.
    let fake = format!("tc_hub_session={}", "ab".repeat(32));
    assert_eq!(
        page(&hub, "GET", "/", Some(&fake), &[], None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = page(&hub, "POST", "/logout", None, &[], Some(&[])).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // The janitor's pruning removes expired rows it has not met.
    let _live = console_cookie(&hub, &owner.email, &owner.password).await;
    let now = hub.clock.now_ms();
    let pruned = tradecast_hub::ui::session::prune(&hub.db, now + 9 * 3_600_000).await.unwrap();
    assert_eq!(pruned, 1);
    hub.stop().await;
}

async fn console_login_is_rate_limited(b: Backend) {
    let hub = TestHub::start_with(b, |c| {
        c.rate_limits.login_per_ip.burst = 2;
        c.rate_limits.login_per_ip.per_minute = 1;
    })
    .await;
    let owner = hub.owner().await; // one token of the bucket
    let (r, _) = sign_in(&hub, &owner.email, "wrong password!").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let (r, cookie) = sign_in(&hub, &owner.email, &owner.password).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert!(r.headers.contains_key("retry-after"));
    assert!(is_login_page(&r) && r.text.contains("Too many sign-in attempts"), "{}", r.text);
    assert_eq!(cookie, None);
    hub.stop().await;
}

async fn console_checks_host_and_serves_assets(b: Backend) {
    let hub = TestHub::start(b).await;
    let port = hub.addr.port();
    for (host, status) in [
        (format!("localhost:{port}"), StatusCode::OK),
        (format!("[::1]:{port}"), StatusCode::OK),
        (format!("evil.example.com:{port}"), StatusCode::MISDIRECTED_REQUEST),
        ("localhost:1".to_string(), StatusCode::MISDIRECTED_REQUEST),
    ] {
        let r = page(&hub, "GET", "/", None, &[("host", &host)], None).await;
        assert_eq!(r.status, status, "{host}: {}", r.text);
        assert!(r.headers.contains_key("content-security-policy"));
    }
    let evil = [("host", "evil.example.com")];
    let r = page(&hub, "GET", "/assets/vendor/htmx.LICENSE", None, &evil, None).await;
    assert_eq!(r.status, StatusCode::MISDIRECTED_REQUEST);
    // The JSON API authenticates by token, not cookie: no Host rule there.
    assert_eq!(page(&hub, "GET", "/health", None, &evil, None).await.status, StatusCode::OK);

    // Assets: linked with their version tag, cacheable for good under it, revalidated without.
    let login = page(&hub, "GET", "/", None, &[], None).await;
    let link = |name: &str| {
        let at = login.text.find(&format!("/assets/{name}?v=")).unwrap_or_else(|| panic!("{name}"));
        login.text[at..].split('"').next().unwrap().to_string()
    };
    let js = link("vendor/htmx.min.js");
    let r = page(&hub, "GET", &js, None, &[], None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers["content-type"].to_str().unwrap().starts_with("text/javascript"));
    assert_eq!(r.headers["cache-control"], "public, max-age=31536000, immutable");
    assert!(r.text.starts_with("var htmx="));
    let etag = r.headers["etag"].to_str().unwrap().to_string();
    assert!(js.ends_with(etag.trim_matches('"')), "{js} {etag}");
    let r = page(&hub, "GET", "/assets/vendor/htmx.min.js", None, &[], None).await;
    assert_eq!(r.headers["cache-control"], "public, max-age=300");
    let r =
        page(&hub, "GET", "/assets/vendor/htmx.min.js", None, &[("if-none-match", &etag)], None)
            .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.text.is_empty());
    for (licence, words) in
        [("vendor/htmx.LICENSE", "Zero-Clause BSD"), ("vendor/uPlot.LICENSE", "The MIT License")]
    {
        let url = link(licence);
        let r = page(&hub, "GET", &url, None, &[], None).await;
        assert_eq!(r.status, StatusCode::OK, "{url}");
        assert!(r.headers["content-type"].to_str().unwrap().starts_with("text/plain"));
        assert!(r.text.contains(words), "{url}: {}", r.text);
    }
    for path in
        ["/assets/vendor/uPlot.iife.min.js", "/assets/vendor/uPlot.min.css", "/assets/console.css"]
    {
        assert_eq!(page(&hub, "GET", path, None, &[], None).await.status, StatusCode::OK, "{path}");
    }
    let r = page(&hub, "GET", "/assets/vendor/nope.js", None, &[], None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(login.text.contains(concat!("Tradecast hub ", env!("CARGO_PKG_VERSION"))));
    hub.stop().await;

    // Behind https: the public host is served and the cookie is Secure.
    let hub = TestHub::start_with(b, |c| {
        c.public_url =
            Some(tradecast_hub::config::PublicUrl::parse("https://hub.example.com").unwrap());
    })
    .await;
    let owner = hub.owner().await;
    let r = page(&hub, "GET", "/", None, &[("host", "hub.example.com")], None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let (r, _) = sign_in(&hub, &owner.email, &owner.password).await;
    assert!(set_cookie(&r).unwrap().contains("; Secure"), "{:?}", set_cookie(&r));
    hub.stop().await;
}

async fn console_store_failure_is_an_error_page(b: Backend) {
    let hub = TestHub::start(b).await;
    let owner = hub.owner().await;
    let cookie = console_cookie(&hub, &owner.email, &owner.password).await;
    // A table the overview reads goes missing: the page says it failed, it never shows zeros.
    let exec = |sql: &'static str| sqlx::query(sql).execute(hub.db.pool());
    exec("ALTER TABLE plans RENAME TO plans_away").await.unwrap();
    let r = page(&hub, "GET", "/", Some(&cookie), &[], None).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text);
    assert!(r.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(r.text.contains("could not answer this page"), "{}", r.text);
    assert!(!r.text.contains("fig-") && !r.text.contains("plans_away"), "{}", r.text);
    assert!(
        r.headers.contains_key("x-request-id") && r.headers.contains_key("content-security-policy")
    );
    exec("ALTER TABLE plans_away RENAME TO plans").await.unwrap();
    assert_eq!(page(&hub, "GET", "/", Some(&cookie), &[], None).await.status, StatusCode::OK);
    hub.stop().await;
}

//! The console's pages of issue 21 (audit, subscribers, operations, providers and plans): each
//! for an owner and an admin, refused to an account demoted to provider or subscriber on its
//! very next request, and their actions refused without the CSRF token or from another site,
//! each action audited.

use reqwest::StatusCode;
use serde_json::json;

use crate::console::{console_cookie, csrf_of, is_login_page, page};
use crate::helpers::{Backend, Resp, Session, TestHub, post_signal, provider_kit, signal};
use crate::on_both;

on_both!(
    console_audit_page,
    console_subscriber_pages_and_actions,
    console_operations_page,
    console_providers_and_plans,
);

/// With `TRADECAST_CONSOLE_SHOTS=DIR`, saves the page's HTML as `DIR/NAME.html` (to render and
/// look at: the screenshots of the README).
fn keep(name: &str, r: &Resp) {
    if let Some(dir) = std::env::var_os("TRADECAST_CONSOLE_SHOTS") {
        std::fs::write(std::path::Path::new(&dir).join(format!("{name}.html")), &r.text).unwrap();
    }
}

/// Rows of the table `id`.
fn rows(r: &Resp, id: &str) -> Vec<String> {
    let start = r
        .text
        .find(&format!("<table id=\"{id}\""))
        .unwrap_or_else(|| panic!("no {id}: {}", r.text));
    let table = &r.text[start..start + r.text[start..].find("</table>").unwrap()];
    let body = &table[table.find("<tbody>").unwrap()..];
    body.split("<tr>").skip(1).map(str::to_owned).collect()
}

/// Every one of `paths` answers an owner and an admin, and refuses the same admin once demoted
/// to provider, then to subscriber; no session is the login form.
async fn pages_by_role(hub: &TestHub, owner: &Session, paths: &[&str]) {
    let owner_cookie = console_cookie(hub, &owner.email, &owner.password).await;
    let admin = hub.user(owner, "admin").await;
    let admin_cookie = console_cookie(hub, &admin.email, &admin.password).await;
    for path in paths {
        for cookie in [&owner_cookie, &admin_cookie] {
            let r = page(hub, "GET", path, Some(cookie), &[], None).await;
            assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
            assert!(r.headers.contains_key("content-security-policy"), "{path}");
        }
        let r = page(hub, "GET", path, None, &[], None).await;
        assert!(is_login_page(&r), "{path} without a session: {}", r.text);
    }
    let role_path = format!("/api/v1/users/{}/role", admin.user_id);
    for role in ["provider", "subscriber"] {
        hub.send("PUT", &role_path, Some(&owner.token), Some(json!({ "role": role })))
            .await
            .ok(200);
        for path in paths {
            let r = page(hub, "GET", path, Some(&admin_cookie), &[], None).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{path} as {role}: {}", r.text);
            assert!(r.text.contains("The console is for owners and admins"), "{}", r.text);
        }
    }
}

async fn console_audit_page(b: Backend) {
    let hub = TestHub::start_with(b, |c| c.rate_limits.login_per_ip.burst = 100).await;
    let owner = hub.owner().await;
    pages_by_role(&hub, &owner, &["/audit", "/audit?action=user.create&from=2020-01-01"]).await;
    let cookie = console_cookie(&hub, &owner.email, &owner.password).await;

    let r = page(&hub, "GET", "/audit", Some(&cookie), &[], None).await;
    assert!(r.text.contains("<a href=\"/audit\" class=\"on\">Audit</a>"), "{}", r.text);
    let report = tradecast_hub::audit::verify(&hub.db).await.unwrap();
    assert!(
        r.text.contains(&format!(
            "Chain verified: {} entries, head {}.",
            report.n_entries, report.head_hash
        )),
        "{}",
        r.text
    );
    assert_eq!(rows(&r, "audit").len() as i64, report.n_entries.min(50));

    // Filters: action, actor, days.
    let r = page(&hub, "GET", "/audit?action=user.role_change", Some(&cookie), &[], None).await;
    let found = rows(&r, "audit");
    assert_eq!(found.len(), 2, "{}", r.text);
    assert!(found.iter().all(|row| row.contains("<td>user.role_change</td>")));
    let path = format!("/audit?actor={}&action=user.create", owner.user_id);
    let found = rows(&page(&hub, "GET", &path, Some(&cookie), &[], None).await, "audit");
    assert_eq!(found.len(), 1);
    let r = page(&hub, "GET", "/audit?to=1970-01-01", Some(&cookie), &[], None).await;
    assert!(r.text.contains("No entries match."), "{}", r.text);
    let today = tradecast_hub::ui::fmt::when(Some(hub.clock.now_ms()))[..10].to_string();
    let path = format!("/audit?from={today}&to={today}&action=user.create");
    assert_eq!(rows(&page(&hub, "GET", &path, Some(&cookie), &[], None).await, "audit").len(), 2);
    let r = page(&hub, "GET", "/audit?from=2026-13-40", Some(&cookie), &[], None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    // The API reads the same filter.
    let api = hub
        .get(
            &format!("/api/v1/audit?actor={}&action=user.create", owner.user_id),
            Some(&owner.token),
        )
        .await;
    assert_eq!(api.ok(200).as_array().unwrap().len(), 1);

    // Pages of 50, older by seq.
    for i in 0..60 {
        let entry = tradecast_hub::audit::Entry {
            actor: "system",
            action: "test.fill",
            subject: &format!("s{i}"),
            detail: json!({}),
            request_id: "test",
        };
        tradecast_hub::audit::record(&hub.db, hub.clock.now_ms(), &entry).await.unwrap();
    }
    keep("audit", &page(&hub, "GET", "/audit", Some(&cookie), &[], None).await);
    let r = page(&hub, "GET", "/audit?action=test.fill", Some(&cookie), &[], None).await;
    assert_eq!(rows(&r, "audit").len(), 50);
    let at = r.text.find("id=\"older\" href=\"").expect("an older page") + 17;
    let older = r.text[at..].split('"').next().unwrap().replace("&amp;", "&");
    let r = page(&hub, "GET", &older, Some(&cookie), &[], None).await;
    let found = rows(&r, "audit");
    assert_eq!(found.len(), 10, "{older}");
    assert!(found.last().unwrap().contains("s0") && !r.text.contains("id=\"older\""));
    hub.stop().await;
}

/// How many audit entries `actor` has for `action`.
async fn audited(hub: &TestHub, actor: &str, action: &str) -> usize {
    let filter = tradecast_hub::audit::Filter {
        actor: Some(actor.into()),
        action: Some(action.into()),
        ..Default::default()
    };
    tradecast_hub::audit::search(&hub.db, &filter, 1000).await.unwrap().len()
}

async fn console_subscriber_pages_and_actions(b: Backend) {
    let hub = TestHub::start_with(b, |c| c.rate_limits.login_per_ip.burst = 100).await;
    let owner = hub.owner().await;
    let kit = provider_kit(&hub, &owner).await;
    let sub = hub.user(&owner, "subscriber").await;
    let (_, device) = hub.enrol(&sub, "trading laptop").await;
    let account = format!("/subscribers/{}", sub.user_id);
    pages_by_role(&hub, &owner, &["/subscribers", "/subscribers?email=subscriber", &account]).await;
    let cookie = console_cookie(&hub, &owner.email, &owner.password).await;
    let origin = format!("http://{}", hub.addr);
    let same = [("origin", origin.as_str()), ("sec-fetch-site", "same-origin")];

    // Search by e-mail.
    keep("subscribers", &page(&hub, "GET", "/subscribers", Some(&cookie), &[], None).await);
    let r = page(&hub, "GET", "/subscribers?email=SUBSCRIBER-", Some(&cookie), &[], None).await;
    let found = rows(&r, "accounts");
    assert_eq!(found.len(), 1, "{}", r.text);
    assert!(found[0].contains(&sub.email) && found[0].contains(&account));
    for q in ["nobody", "%", "_"] {
        let r =
            page(&hub, "GET", &format!("/subscribers?email={q}"), Some(&cookie), &[], None).await;
        assert!(r.text.contains("No account matches."), "{q}: {}", r.text);
    }
    let r = page(&hub, "GET", "/subscribers/nope", Some(&cookie), &[], None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // The account's page.
    let r = page(&hub, "GET", &account, Some(&cookie), &[], None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains(&sub.email) && r.text.contains("enabled"), "{}", r.text);
    assert!(rows(&r, "entitlements")[0].contains("No plan granted."));
    let dev_rows = rows(&r, "devices");
    assert!(dev_rows[0].contains("trading laptop") && dev_rows[0].contains("not connected here"));
    let csrf = csrf_of(&r);

    // Actions without the token or from another site: refused, nothing done.
    let grant = format!("{account}/grant");
    let fields = [("plan_id", kit.plan_id.as_str()), ("days", "30")];
    let with_csrf = [("csrf", csrf.as_str()), ("plan_id", kit.plan_id.as_str()), ("days", "30")];
    let r = page(&hub, "POST", &grant, Some(&cookie), &same, Some(&fields)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    for headers in [[("origin", "https://evil.example.com")], [("sec-fetch-site", "cross-site")]] {
        let r = page(&hub, "POST", &grant, Some(&cookie), &headers, Some(&with_csrf)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{headers:?}: {}", r.text);
    }
    assert_eq!(audited(&hub, &owner.user_id, "entitlement.grant").await, 0);

    // Grant a plan: audited under the owner, shown active; a signal then reaches the device.
    let r = page(&hub, "POST", &grant, Some(&cookie), &same, Some(&with_csrf)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(r.headers["location"], format!("{account}?done=granted"));
    assert_eq!(audited(&hub, &owner.user_id, "entitlement.grant").await, 1);
    let now = hub.clock.now_ms();
    post_signal(&hub, &kit, &signal(&kit.identity, now), 1).await.1.ok(201);
    let r = page(&hub, "GET", &format!("{account}?done=granted"), Some(&cookie), &[], None).await;
    keep("subscriber", &r);
    assert!(r.text.contains("Plan granted."), "{}", r.text);
    let ents = rows(&r, "entitlements");
    assert!(
        ents[0].contains("Gold") && ents[0].contains("49.00 USD") && ents[0].contains("active"),
        "{ents:?}"
    );
    // The device follows the provider's relay log: nothing acked yet of its 2 entries (the
    // provider's keys and the signal).
    let dev_rows = rows(&r, "devices");
    assert!(dev_rows[0].contains("0 / 2") && dev_rows[0].contains("behind"), "{dev_rows:?}");
    let received = rows(&r, "received");
    assert_eq!(received.len(), 1, "{}", r.text);
    assert!(
        received[0].contains("EURUSD") && received[0].contains("trading laptop"),
        "{received:?}"
    );
    let bad_days = [("csrf", csrf.as_str()), ("plan_id", kit.plan_id.as_str()), ("days", "0")];
    let r = page(&hub, "POST", &grant, Some(&cookie), &same, Some(&bad_days)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);

    // Revoke the entitlement, then the device: audited, shown.
    let ent_id = plans_of(&hub, &sub.user_id).await;
    let path = format!("{account}/entitlements/{ent_id}/revoke");
    let token = [("csrf", csrf.as_str())];
    let r = page(&hub, "POST", &path, Some(&cookie), &same, Some(&token)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(audited(&hub, &owner.user_id, "entitlement.revoke").await, 1);
    let path = format!("{account}/devices/{device}/revoke");
    let r = page(&hub, "POST", &path, Some(&cookie), &same, Some(&[])).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "no token: {}", r.text);
    let r = page(&hub, "POST", &path, Some(&cookie), &same, Some(&token)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(audited(&hub, &owner.user_id, "device.revoke").await, 1);
    let r = page(&hub, "GET", &account, Some(&cookie), &[], None).await;
    assert!(rows(&r, "devices")[0].contains("revoked"), "{}", r.text);
    assert!(rows(&r, "entitlements")[0].contains("revoked"));
    // Another account's device through this account's page: not found.
    let path = format!("/subscribers/{}/devices/{device}/revoke", owner.user_id);
    let r = page(&hub, "POST", &path, Some(&cookie), &same, Some(&token)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);

    // Disable: the account's sign-ins are refused at once; enable.
    let r =
        page(&hub, "POST", &format!("{account}/disable"), Some(&cookie), &same, Some(&token)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(audited(&hub, &owner.user_id, "user.disable").await, 1);
    let login = json!({ "email": sub.email, "password": sub.password });
    hub.post("/api/v1/auth/login", None, login.clone()).await.problem(403, "account-disabled");
    let r = page(&hub, "GET", &format!("{account}?done=disabled"), Some(&cookie), &[], None).await;
    assert!(
        r.text.contains("Account disabled") && r.text.contains("Enable the account"),
        "{}",
        r.text
    );
    let r =
        page(&hub, "POST", &format!("{account}/enable"), Some(&cookie), &same, Some(&token)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(audited(&hub, &owner.user_id, "user.enable").await, 1);
    hub.post("/api/v1/auth/login", None, login).await.ok(200);

    // An admin may not disable the owner (the account rules), and once demoted is refused at
    // once, before anything is done.
    let admin = hub.user(&owner, "admin").await;
    let admin_cookie = console_cookie(&hub, &admin.email, &admin.password).await;
    let r = page(&hub, "GET", &account, Some(&admin_cookie), &[], None).await;
    let admin_token = [("csrf", csrf_of(&r))];
    let admin_token: Vec<(&str, &str)> =
        admin_token.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let path = format!("/subscribers/{}/disable", owner.user_id);
    let r = page(&hub, "POST", &path, Some(&admin_cookie), &same, Some(&admin_token)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(r.text.contains("only an owner can disable"), "{}", r.text);
    let role_path = format!("/api/v1/users/{}/role", admin.user_id);
    hub.send("PUT", &role_path, Some(&owner.token), Some(json!({ "role": "subscriber" })))
        .await
        .ok(200);
    let r = page(
        &hub,
        "POST",
        &format!("{account}/disable"),
        Some(&admin_cookie),
        &same,
        Some(&admin_token),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(audited(&hub, &admin.user_id, "user.disable").await, 0);
    hub.stop().await;
}

/// The id of `user_id`'s first entitlement.
async fn plans_of(hub: &TestHub, user_id: &str) -> String {
    tradecast_hub::entitlements::history(&hub.db, Some(user_id)).await.unwrap()[0].id.clone()
}

async fn console_operations_page(b: Backend) {
    let hub = TestHub::start_with(b, |c| c.rate_limits.login_per_ip.burst = 100).await;
    let owner = hub.owner().await;
    pages_by_role(&hub, &owner, &["/operations"]).await;
    let cookie = console_cookie(&hub, &owner.email, &owner.password).await;
    let r = page(&hub, "GET", "/operations", Some(&cookie), &[], None).await;
    assert!(r.text.contains(&format!("<dd id=\"version\">{}</dd>", env!("CARGO_PKG_VERSION"))));
    let backend = if b == Backend::Sqlite { "SQLite" } else { "PostgreSQL" };
    assert!(r.text.contains(&format!("<dd id=\"backend\">{backend}</dd>")), "{}", r.text);
    let (applied, embedded) = hub.db.migration_versions().await.unwrap();
    assert_eq!(applied, Some(embedded));
    assert!(r.text.contains(&format!("applied {embedded:04}, this binary's {embedded:04}")));
    assert!(r.text.contains("up to date") && r.text.contains("href=\"/outbox\""));
    assert!(rows(&r, "sessions")[0].contains("No node is connected"));

    // A subscriber's node connects over QUIC: listed here and on its account's page.
    let sub = hub.user(&owner, "subscriber").await;
    let (node, device) = hub.enrol(&sub, "office PC").await;
    let (_ep, conn) =
        crate::quic::connect(&hub, &node, crate::quic::hub_key(&hub)).await.expect("handshake");
    let (_, _streams) =
        crate::quic::hello_streams(&conn, tradecast_hub::quic::PROTOCOL_VERSION).await.unwrap();
    let peers = hub.state().quic_peers.clone();
    let id = node.device_id();
    crate::quic::wait_until("registration", || peers.is_connected(&id)).await;
    let r = page(&hub, "GET", "/operations", Some(&cookie), &[], None).await;
    keep("operations", &r);
    let sessions = rows(&r, "sessions");
    assert_eq!(sessions.len(), 1, "{}", r.text);
    assert!(sessions[0].contains(&device) && sessions[0].contains("office PC"), "{sessions:?}");
    assert!(sessions[0].contains(&sub.email), "{sessions:?}");
    let r =
        page(&hub, "GET", &format!("/subscribers/{}", sub.user_id), Some(&cookie), &[], None).await;
    assert!(rows(&r, "devices")[0].contains("connected here"), "{}", r.text);
    // The uptime (after the session's checks: a silent node two hours on may be let go).
    hub.clock.advance_ms(2 * 3_600_000);
    let r = page(&hub, "GET", "/operations", Some(&cookie), &[], None).await;
    assert!(r.text.contains("<dd id=\"uptime\">2 h 0 min</dd>"), "{}", r.text);
    conn.close(0u32.into(), b"bye");
    hub.stop().await;
}

async fn console_providers_and_plans(b: Backend) {
    let hub = TestHub::start_with(b, |c| c.rate_limits.login_per_ip.burst = 100).await;
    let owner = hub.owner().await;
    let kit = provider_kit(&hub, &owner).await;
    let sub = hub.user(&owner, "subscriber").await;
    hub.enrol(&sub, "desk").await;
    let grant = json!({ "user_id": sub.user_id, "plan_id": kit.plan_id });
    hub.post("/api/v1/entitlements", Some(&owner.token), grant).await.ok(201);
    let now = hub.clock.now_ms();
    post_signal(&hub, &kit, &signal(&kit.identity, now), 1).await.1.ok(201);
    let provider_page = format!("/providers/{}", kit.session.user_id);
    pages_by_role(&hub, &owner, &["/providers", &provider_page]).await;
    let cookie = console_cookie(&hub, &owner.email, &owner.password).await;

    let r = page(&hub, "GET", "/providers", Some(&cookie), &[], None).await;
    let plans = rows(&r, "plans");
    assert_eq!(plans.len(), 1, "{}", r.text);
    assert!(plans[0].contains("Gold") && plans[0].contains("49.00 USD / 30 d"), "{plans:?}");
    assert!(plans[0].contains("<td class=\"num\">1</td>"), "one account entitled: {plans:?}");
    assert!(rows(&r, "providers")[0].contains(&kit.session.email));
    assert!(rows(&r, "quarantine")[0].contains("Nothing quarantined."));
    let r =
        page(&hub, "GET", &format!("/providers/{}", sub.user_id), Some(&cookie), &[], None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // A provider's signals with their per-device outcomes.
    let r = page(&hub, "GET", &provider_page, Some(&cookie), &[], None).await;
    keep("provider", &r);
    let signals = rows(&r, "signals");
    assert!(signals[0].contains("EURUSD") && signals[0].contains("1.09128"), "{signals:?}");
    assert!(signals[0].contains("<td class=\"num\">1</td>"), "queued for one device: {signals:?}");
    assert!(r.text.contains("Per device") && r.text.contains("desk"), "{}", r.text);

    // The provider's own part: the same figures, subscribers' device names withheld.
    let pc = console_cookie(&hub, &kit.session.email, &kit.session.password).await;
    let r = page(&hub, "GET", "/provider", Some(&pc), &[], None).await;
    keep("provider-own", &r);
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        r.text.contains("Your signals and subscribers") && r.text.contains("href=\"/provider\"")
    );
    assert!(r.text.contains("id=\"fig-entitled\">1<"), "{}", r.text);
    let signals = rows(&r, "signals");
    assert!(signals[0].contains("EURUSD") && signals[0].contains("<td class=\"num\">1</td>"));
    assert!(r.text.contains("Per device") && !r.text.contains("desk"), "{}", r.text);
    assert!(r.text.contains(&format!("/p/{}", kit.session.user_id)));
    let r = page(&hub, "GET", &provider_page, Some(&pc), &[], None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "the console's own page stays the console's");
    let r = page(&hub, "GET", "/provider", Some(&cookie), &[], None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.headers["location"], "/providers");
    let sc = console_cookie(&hub, &sub.email, &sub.password).await;
    let r = page(&hub, "GET", "/provider", Some(&sc), &[], None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);

    // The quarantine list, released by an owner only, with the token, audited.
    let author = kit.identity.device_id();
    tradecast_hub::quic::store::quarantine(
        &hub.db,
        &author,
        tradecast_protocol::StreamId::SIGNALS,
        now,
    )
    .await
    .unwrap();
    let r = page(&hub, "GET", "/providers", Some(&cookie), &[], None).await;
    keep("providers", &r);
    let q = rows(&r, "quarantine");
    assert!(q[0].contains("provider node") && q[0].contains("Release"), "{q:?}");
    let csrf = csrf_of(&r);
    let author_text = author.to_text();
    let origin = format!("http://{}", hub.addr);
    let same = [("origin", origin.as_str())];
    let form = [("author", author_text.as_str()), ("stream", "1")];
    let path = "/providers/quarantine/release";
    let r = page(&hub, "POST", path, Some(&cookie), &same, Some(&form)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let admin = hub.user(&owner, "admin").await;
    let admin_cookie = console_cookie(&hub, &admin.email, &admin.password).await;
    let r = page(&hub, "GET", "/providers", Some(&admin_cookie), &[], None).await;
    assert!(rows(&r, "quarantine")[0].contains("an owner releases"));
    let admin_csrf = csrf_of(&r);
    let admin_form = [("csrf", admin_csrf.as_str()), form[0], form[1]];
    let r = page(&hub, "POST", path, Some(&admin_cookie), &same, Some(&admin_form)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let owner_form = [("csrf", csrf.as_str()), form[0], form[1]];
    let r = page(&hub, "POST", path, Some(&cookie), &same, Some(&owner_form)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(audited(&hub, &owner.user_id, "sync.release").await, 1);
    let r = page(&hub, "GET", "/providers?done=released", Some(&cookie), &[], None).await;
    assert!(
        r.text.contains("Quarantine released.")
            && rows(&r, "quarantine")[0].contains("Nothing quarantined.")
    );
    let r = page(&hub, "POST", path, Some(&cookie), &same, Some(&owner_form)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    hub.stop().await;
}

//! The console's pages of issue 21 (audit, subscribers, operations, providers and plans): each
//! for an owner and an admin, refused to an account demoted to provider or subscriber on its
//! very next request, and their actions refused without the CSRF token or from another site,
//! each action audited.

use reqwest::StatusCode;
use serde_json::json;

use crate::console::{console_cookie, is_login_page, page};
use crate::helpers::{Backend, Resp, Session, TestHub};
use crate::on_both;

on_both!(console_audit_page);

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

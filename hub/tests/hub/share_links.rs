//! Redacted share links (issue 18, board PR-057) on both backends: a trader whose node publishes
//! its account makes a link through the API and the account page; a stranger opens it without
//! an account and sees the money figures the track-record engine computes from the published
//! records, delayed like every public view, and nothing that names the trader (name, e-mail,
//! device id or name, key, ticket); an altered token, another account's revoke, a long label and
//! too many open links are refused with typed errors; a revoked link, or one of an account the
//! hub's owner disabled, stops opening at once, even when its page is in the cache.

use reqwest::StatusCode;
use serde_json::json;
use tradecast_protocol::{BalanceKind, ChainHash};

use crate::console::{csrf_of, page, sign_in};
use crate::helpers::{Backend, TestHub};
use crate::on_both;

on_both!(share_links_show_the_published_record_redacted_and_revoke_at_once);
on_both!(share_link_requests_are_checked);

const DAY: i64 = 86_400_000;

async fn share_links_show_the_published_record_redacted_and_revoke_at_once(b: Backend) {
    let hub = TestHub::start(b).await;
    let owner = hub.owner().await;
    let alice = hub.user(&owner, "subscriber").await;
    let (node, device) = hub.enrol(&alice, "alice-laptop").await;
    let delay_ms = i64::try_from(hub.state().config.public.delay_s).unwrap() * 1000;

    // Nothing published yet: the link opens and says so.
    let r = hub.post("/api/v1/share-links", Some(&alice.token), json!({"label": "forum"})).await;
    let link = r.ok(201).clone();
    let url = link["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("/s/") && url.len() == 3 + 64, "{url}");
    assert_eq!(link["label"], "forum");
    let empty = hub.get(&url, None).await;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.text);
    assert!(empty.text.contains("id=\"nothing\""), "{}", empty.text);

    // Her node publishes a deposit, equity and a trade, then the delay passes.
    let mut published = crate::track_money::Publisher {
        hub: &hub,
        identity: &node,
        seq: 0,
        prev: ChainHash::GENESIS,
        records: vec![],
    };
    published.balance(1, BalanceKind::Deposit, "1000").await;
    published.equity("1000", "1000").await;
    hub.clock.advance_ms(DAY);
    published.trade(4242, "50", "-1").await;
    published.equity("1049", "1049").await;
    let records = published.records.clone();
    hub.clock.advance_ms(delay_ms + 2 * 60_000);
    // A trade inside the delay is not shown yet.
    published.trade(4343, "-500", "0").await;

    let shared = hub.get(&url, None).await;
    assert_eq!(shared.status, StatusCode::OK, "{}", shared.text);
    let text = &shared.text;
    let expected =
        tradecast_protocol::track_money::money_figures(node.device_id(), &records).unwrap();
    assert_eq!(expected.n_trades, 1);
    for (label, value) in tradecast_protocol::track_money::headline(&expected) {
        let row = format!("<th>{label}</th><td class=\"num\">{value}</td>");
        assert!(text.contains(&row), "{row}: {text}");
    }
    assert!(text.contains("Account 1 (USD)"), "{text}");
    assert!(text.contains("id=\"redacted\""), "{text}");
    // Nothing that names her: not her e-mail, her device's id, name or key, a ticket, the
    // trade still inside the delay, or her note.
    let key_hex = hex::encode(node.identity_key().to_bytes());
    for secret in [
        alice.email.as_str(),
        alice.user_id.as_str(),
        device.as_str(),
        &node.device_id().to_text(),
        "alice-laptop",
        &key_hex,
        "4242",
        "4343",
        "forum",
    ] {
        assert!(!text.contains(secret), "the page shows {secret:?}");
    }
    assert!(shared.headers.get("etag").is_some());
    assert_eq!(shared.headers["cache-control"], "public, max-age=60");

    // An altered token: 404, the same page as an unknown one.
    let mut altered = url.clone().into_bytes();
    let last = altered.len() - 1;
    altered[last] = if altered[last] == b'0' { b'1' } else { b'0' };
    let altered = String::from_utf8(altered).unwrap();
    assert_eq!(hub.get(&altered, None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(hub.get("/s/nothing", None).await.status, StatusCode::NOT_FOUND);

    // A day on: her access token expired; she signs in again.
    let alice = hub.login(&alice.email, &alice.password).await;
    // The account page lists it; a second link made there; the list in the API.
    let (signed, cookie) = sign_in(&hub, &alice.email, &alice.password).await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.text);
    let cookie = cookie.unwrap();
    let account = page(&hub, "GET", "/account", Some(&cookie), &[], None).await;
    assert!(account.text.contains("Share your record") && account.text.contains(&url));
    let csrf = csrf_of(&account);
    let form = [("csrf", csrf.as_str()), ("label", "prop firm")];
    let made = page(&hub, "POST", "/account/share-links", Some(&cookie), &[], Some(&form)).await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.text);
    assert!(made.text.contains("New share link: /s/"), "{}", made.text);
    let list = hub.get("/api/v1/share-links", Some(&alice.token)).await.ok(200).clone();
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["label"], "prop firm", "newest first");
    // Without the CSRF token: refused, nothing made.
    let form = [("label", "no token")];
    let r = page(&hub, "POST", "/account/share-links", Some(&cookie), &[], Some(&form)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Revoked (from the account page): it stops opening at once, though its page is cached.
    let id = link["id"].as_str().unwrap();
    let action = format!("/account/share-links/{id}/revoke");
    let form = [("csrf", csrf.as_str())];
    let r = page(&hub, "POST", &action, Some(&cookie), &[], Some(&form)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("no longer opens"), "{}", r.text);
    let gone = hub.get(&url, None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert!(gone.text.contains("revoked"), "{}", gone.text);
    let list = hub.get("/api/v1/share-links", Some(&alice.token)).await.ok(200).clone();
    assert!(list.as_array().unwrap().iter().any(|l| l["id"] == id && l["revoked_at_ms"].is_i64()));
    // Her second link opens until the hub's owner disables her account.
    let second = list.as_array().unwrap().iter().find(|l| l["id"] != id).unwrap().clone();
    let second = second["url"].as_str().unwrap().to_owned();
    assert_eq!(hub.get(&second, None).await.status, StatusCode::OK);
    let owner = hub.login(&owner.email, &owner.password).await;
    let path = format!("/api/v1/users/{}/disable", alice.user_id);
    hub.post(&path, Some(&owner.token), json!({})).await.ok(200);
    assert_eq!(hub.get(&second, None).await.status, StatusCode::NOT_FOUND);
    // Audited, both ways.
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_log WHERE subject = $1 ORDER BY seq")
            .bind(id)
            .fetch_all(hub.db.pool())
            .await
            .unwrap();
    assert_eq!(actions, ["share_link.create", "share_link.revoke"]);
}

async fn share_link_requests_are_checked(b: Backend) {
    let hub = TestHub::start(b).await;
    let owner = hub.owner().await;
    let alice = hub.user(&owner, "subscriber").await;
    let bob = hub.user(&owner, "subscriber").await;
    hub.post("/api/v1/share-links", None, json!({})).await.problem(401, "unauthenticated");
    let long = "x".repeat(81);
    hub.post("/api/v1/share-links", Some(&alice.token), json!({"label": long}))
        .await
        .problem(422, "validation");
    hub.post("/api/v1/share-links", Some(&alice.token), json!({"labels": "typo"}))
        .await
        .problem(422, "invalid-body");
    let link = hub.post("/api/v1/share-links", Some(&alice.token), json!({})).await.ok(201).clone();
    let id = link["id"].as_str().unwrap();
    // Another account cannot revoke it (it does not see it either).
    let path = format!("/api/v1/share-links/{id}");
    hub.send("DELETE", &path, Some(&bob.token), None).await.problem(404, "not-found");
    assert!(hub.get("/api/v1/share-links", Some(&bob.token)).await.ok(200).clone() == json!([]));
    // Twenty open links at most.
    for _ in 1..20 {
        hub.post("/api/v1/share-links", Some(&alice.token), json!({})).await.ok(201);
    }
    hub.post("/api/v1/share-links", Some(&alice.token), json!({})).await.problem(409, "conflict");
    // Revoking one makes room; revoking again changes nothing.
    let first = hub.send("DELETE", &path, Some(&alice.token), None).await.ok(200).clone();
    let again = hub.send("DELETE", &path, Some(&alice.token), None).await.ok(200).clone();
    assert_eq!(first["revoked_at_ms"], again["revoked_at_ms"]);
    hub.post("/api/v1/share-links", Some(&alice.token), json!({})).await.ok(201);
}

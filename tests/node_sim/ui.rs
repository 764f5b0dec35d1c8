//! The node's web UI through real HTTP, beside the simulated terminal: the Host check (DNS
//! rebinding), the login URL that sets a `SameSite=Strict; HttpOnly` cookie, CSRF refusal, the
//! Content-Security-Policy, the pages showing the node's real data (balance, a pending signal,
//! the position it opened once approved in the UI, the copy log, the history, the policy), the
//! settings form saving a lot mode, and the server-sent events.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, COOKIE, HOST, ORIGIN, SET_COOKIE};
use rust_decimal::Decimal;
use tradecast_node::policy::approval::ApprovalMode;
use tradecast_node::policy::sizing::LotMode;
use tradecast_node::ui::CSP;
use tradecast_sim::terminal::lock;

use crate::TestNode;
use crate::rig::Rig;

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

struct Scene {
    node: TestNode,
    rig: Rig,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn scene() -> Scene {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(dir.path(), |c| c.policy.approval.mode = ApprovalMode::Manual).await;
    let mut rig = Rig::new(&node.ea_url(), &node.key_id, &node.secret, 800);
    for _ in 0..30 {
        rig.replay.advance().expect("advance");
        rig.catch_up(20).await;
    }
    Scene { node, rig, http: client(), _dir: dir }
}

impl Scene {
    fn url(&self, path: &str) -> String {
        self.node.api_url(path)
    }

    /// Logs in through the URL the CLI prints; the cookie header to send.
    async fn login(&self) -> String {
        let url = tradecast_node::ui::login_url(self.node.running.api_addr, &self.node.token);
        let r = self.http.get(url).send().await.expect("login");
        assert_eq!(r.status(), 303);
        assert_eq!(r.headers()["location"], "/");
        let set = r.headers()[SET_COOKIE].to_str().expect("cookie").to_owned();
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
        set.split(';').next().expect("pair").to_owned()
    }

    async fn page(&self, cookie: &str, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
        let r = self.http.get(self.url(path)).header(COOKIE, cookie).send().await.expect("page");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, headers, r.text().await.expect("body"))
    }

    /// A buy for execution at the live ask; its signal id.
    async fn buy(&mut self) -> String {
        let ask = lock(&self.rig.broker).quote("EURUSD").expect("quote").ask;
        let (status, v) = self
            .node
            .api(
                reqwest::Method::POST,
                "/api/v1/signals",
                Some(serde_json::json!({
                    "symbol": "EURUSD", "timeframe": "H1", "side": "buy",
                    "entry": ask.to_string(), "stop": (ask - Decimal::new(200, 4)).to_string(),
                    "tp1": (ask + Decimal::new(300, 4)).to_string(), "volume": "0.10", "execute": true
                })),
            )
            .await;
        assert_eq!(status, 201, "{v}");
        v["signal"]["id"].as_str().expect("id").to_owned()
    }
}

/// `application/x-www-form-urlencoded`, as a browser posts a form.
fn form_body(pairs: &[(&str, &str)]) -> String {
    let enc = |v: &str| {
        v.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                    (b as char).to_string()
                }
                b' ' => "+".into(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

trait FormExt {
    fn form_fields(self, pairs: &[(&str, &str)]) -> Self;
}

impl FormExt for reqwest::RequestBuilder {
    fn form_fields(self, pairs: &[(&str, &str)]) -> Self {
        self.header(CONTENT_TYPE, "application/x-www-form-urlencoded").body(form_body(pairs))
    }
}

/// The CSRF token a page carries in its forms.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..].split('"').next().expect("value").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_is_refused_on_the_api_and_the_ui() {
    let s = scene().await;
    let port = s.node.running.api_addr.port();
    for host in
        [format!("evil.example:{port}"), format!("127.0.0.1.nip.io:{port}"), "127.0.0.1:1".into()]
    {
        for path in ["/api/v1/status", "/login", "/"] {
            let r = s
                .http
                .get(s.url(path))
                .header(HOST, host.as_str())
                .bearer_auth(&s.node.token)
                .send()
                .await
                .expect("answer");
            assert_eq!(r.status(), 421, "{host} {path}");
        }
    }
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let r = s
            .http
            .get(s.url("/api/v1/status"))
            .header(HOST, host.as_str())
            .bearer_auth(&s.node.token)
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status(), 200, "{host}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_url_sets_a_strict_cookie_and_pages_need_it() {
    let s = scene().await;
    // No session: no page.
    let (status, _, body) = s.page("", "/").await;
    assert_eq!(status, 401);
    assert!(body.contains("ui-url"), "the sign-in page says how: {body}");
    // A wrong token opens nothing.
    let r = s.http.get(s.url("/login?token=nope")).send().await.expect("login");
    assert_eq!(r.status(), 401);
    assert!(r.headers().get(SET_COOKIE).is_none());
    // A made-up cookie opens nothing.
    let (status, _, _) = s.page("tc_session=00ff", "/").await;
    assert_eq!(status, 401);
    // The URL the CLI prints.
    let cookie = s.login().await;
    let (status, headers, body) = s.page(&cookie, "/").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-security-policy"], CSP);
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(CSP.contains("script-src 'self'") && !CSP.contains("unsafe-inline"));
    assert!(!body.contains("<script>") && !body.contains("style=\""), "nothing inline");
    // The node's real figures: the sim's account has a 10,000 USD balance.
    assert!(body.contains("10,000.00 USD"), "{body}");
    assert!(body.contains("EA link up"), "{body}");
    // Vendored assets and their licences are served (no session needed).
    let r = s.http.get(s.url("/assets/vendor/htmx.min.js")).send().await.expect("asset");
    assert_eq!(r.headers()[CONTENT_TYPE], "text/javascript");
    assert!(r.text().await.expect("js").len() > 10_000);
    let r = s.http.get(s.url("/assets/vendor/uPlot.LICENSE")).send().await.expect("licence");
    assert!(r.text().await.expect("text").contains("MIT"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approving_in_the_ui_needs_the_csrf_token_and_opens_the_position() {
    let mut s = scene().await;
    let id = s.buy().await;
    let cookie = s.login().await;
    let (_, _, body) = s.page(&cookie, "/").await;
    assert!(body.contains(&format!("pending-{id}")), "the pending signal is listed");
    assert!(body.contains("accepted: EURUSD buy 0.10 lots"), "{body}");
    assert!(body.contains("data-remaining-ms"), "with a countdown");
    let csrf = csrf_of(&body);
    let approve = s.url(&format!("/ui/signals/{id}/approve"));

    // No token, a wrong one, a cross-site Origin: refused, nothing decided.
    let r = s.http.post(&approve).header(COOKIE, &cookie).send().await.expect("post");
    assert_eq!(r.status(), 403);
    let r = s
        .http
        .post(&approve)
        .header(COOKIE, &cookie)
        .header("x-csrf-token", "0".repeat(64))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    let r = s
        .http
        .post(&approve)
        .header(COOKIE, &cookie)
        .header("x-csrf-token", &csrf)
        .header(ORIGIN, "http://evil.example")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    // Without the cookie the token alone is nothing.
    let r = s.http.post(&approve).header("x-csrf-token", &csrf).send().await.expect("post");
    assert_eq!(r.status(), 401);
    let node = s.node.running.node.clone();
    let waiting = node.approvals().expect("approvals");
    assert!(waiting.iter().all(|a| a.pending.decided().is_none()), "nothing decided yet");

    // The form as the browser posts it.
    let r = s
        .http
        .post(&approve)
        .header(COOKIE, &cookie)
        .header(ORIGIN, format!("http://{}", s.node.running.api_addr))
        .form_fields(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let body = r.text().await.expect("body");
    assert!(body.contains("approved in the UI"), "{body}");
    for _ in 0..4 {
        let _ = s.rig.terminal.step().await;
    }
    assert_eq!(s.rig.open_positions().len(), 1, "filled");
    // The dashboard shows the position; the copy log the line and the decision.
    let (_, _, body) = s.page(&cookie, "/").await;
    assert!(body.contains("No signal waits for you."), "{body}");
    assert!(body.contains("<td>EURUSD</td><td>buy</td><td>0.10</td>"), "{body}");
    let (_, _, log) = s.page(&cookie, "/copy-log").await;
    assert!(log.contains("accepted: EURUSD buy 0.10 lots"), "{log}");
    assert!(log.contains("approved in the UI"), "{log}");
    assert!(log.contains("acked"), "the order's state: {log}");
    // A second decision in the UI is refused in words.
    let r = s
        .http
        .post(s.url(&format!("/ui/signals/{id}/reject")))
        .header(COOKIE, &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 409);
    assert!(r.text().await.expect("body").contains("already approved"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_settings_form_saves_the_lot_mode_and_history_renders() {
    let s = scene().await;
    let cookie = s.login().await;
    let (status, _, body) = s.page(&cookie, "/settings").await;
    assert_eq!(status, 200);
    assert!(body.contains("value=\"multiplier\" selected"), "the policy in force: {body}");
    let csrf = csrf_of(&body);
    let mut form = vec![
        ("copying", "on"),
        ("approval_mode", "manual"),
        ("lot_mode", "fixed"),
        ("lot_value", "0.25"),
        ("per_balance", ""),
        ("max_open_positions", "5"),
        ("max_open_per_symbol", "2"),
        ("max_signal_age_s", "60"),
        ("min_rr", "0"),
        ("max_risk_pct", "50"),
        ("daily_loss_limit_pct", "5"),
        ("drawdown_lock_pct", "20"),
        ("exclude", "GBPJPY, xauusd"),
        ("copy_sl", "on"),
        ("copy_tp", "on"),
    ];
    // Without the token: refused, nothing saved.
    let r = s.http.post(s.url("/settings")).header(COOKIE, &cookie).form_fields(&form).send().await;
    assert_eq!(r.expect("post").status(), 403);
    form.push(("csrf", csrf.as_str()));
    let r = s.http.post(s.url("/settings")).header(COOKIE, &cookie).form_fields(&form).send().await;
    let r = r.expect("post");
    assert_eq!(r.status(), 200);
    assert!(r.text().await.expect("body").contains("Saved"));
    let p = s.node.running.node.policy().expect("policy");
    assert_eq!(p.lot, LotMode::Fixed { lots: Decimal::new(25, 2) });
    assert_eq!(p.symbols.exclude, vec!["GBPJPY".to_owned(), "XAUUSD".to_owned()]);
    assert_eq!(p.risk.max_open_per_symbol, 2);
    // An invalid value is refused with the policy's words and changes nothing.
    let bad: Vec<_> =
        form.iter().map(|(k, v)| if *k == "lot_value" { (*k, "0") } else { (*k, *v) }).collect();
    let r = s.http.post(s.url("/settings")).header(COOKIE, &cookie).form_fields(&bad).send().await;
    let r = r.expect("post");
    assert_eq!(r.status(), 422);
    assert!(r.text().await.expect("body").contains("must be above 0"));
    assert_eq!(s.node.running.node.policy().expect("policy"), p);
    let (status, _, body) = s.page(&cookie, "/history").await;
    assert_eq!(status, 200);
    assert!(body.contains("Per symbol") && body.contains("Daily P&amp;L"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publishing_form_sets_consent_per_data_kind() {
    let s = scene().await;
    let cookie = s.login().await;
    let (status, _, body) = s.page(&cookie, "/settings").await;
    assert_eq!(status, 200);
    assert!(body.contains("id=\"publishing\"") && body.contains("stays sealed"), "{body}");
    assert!(!body.contains("name=\"equity\" value=\"on\" checked"), "off by default: {body}");
    let csrf = csrf_of(&body);
    // Unticked boxes post their hidden `off` only; ticked ones `off` then `on`.
    let mut form = vec![
        ("closed-trades", "off"),
        ("closed-trades", "on"),
        ("equity", "off"),
        ("equity", "on"),
        ("balance-operations", "off"),
        ("daily-summary", "off"),
    ];
    let r = s.http.post(s.url("/settings/publishing")).header(COOKIE, &cookie).form_fields(&form);
    assert_eq!(r.send().await.expect("post").status(), 403, "no token, nothing saved");
    assert!(!s.node.running.node.publish_consent().expect("consent").any());
    form.push(("csrf", csrf.as_str()));
    let r = s.http.post(s.url("/settings/publishing")).header(COOKIE, &cookie).form_fields(&form);
    let r = r.send().await.expect("post");
    assert_eq!(r.status(), 200);
    let body = r.text().await.expect("body");
    assert!(body.contains("published from now on"), "{body}");
    assert!(body.contains("name=\"equity\" value=\"on\" checked"), "{body}");
    let consent = s.node.running.node.publish_consent().expect("consent");
    assert_eq!(
        consent,
        tradecast_node::store::PublishConsent {
            closed_trades: true,
            equity: true,
            balance_operations: false,
            daily_summary: false
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_sends_refresh() {
    let s = scene().await;
    let cookie = s.login().await;
    let r = s.http.get(s.url("/ui/events")).send().await.expect("events");
    assert_eq!(r.status(), 401, "no session, no stream");
    let mut r =
        s.http.get(s.url("/ui/events")).header(COOKIE, &cookie).send().await.expect("events");
    assert_eq!(r.headers()[CONTENT_TYPE], "text/event-stream");
    let chunk = tokio::time::timeout(Duration::from_secs(8), r.chunk())
        .await
        .expect("an event within 8 s")
        .expect("stream")
        .expect("a chunk");
    assert!(String::from_utf8_lossy(&chunk).contains("event: refresh"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_settings_page_edits_symbols_and_switches_and_leaves_unsent_fields_alone() {
    let mut s = scene().await;
    let _ = s.buy().await; // a signal for EURUSD: the symbol table lists it
    let cookie = s.login().await;
    let (status, _, body) = s.page(&cookie, "/settings").await;
    assert_eq!(status, 200);
    for section in ["Symbols", "EA keys", "Hub connection", "Market and timing", "Lot size", "Risk"]
    {
        assert!(body.contains(section), "{section}");
    }
    assert!(
        body.contains("name=\"sym_listed\" value=\"EURUSD\""),
        "EURUSD in the switches: {body}"
    );
    assert!(body.contains("Not enrolled"), "the hub block says so: {body}");
    // The settings page is not re-rendered under the trader's fingers by live refresh.
    assert!(!body.contains("hx-trigger=\"tc-refresh from:body\""), "{body}");
    let csrf = csrf_of(&body);
    let before = s.node.running.node.policy().expect("policy");
    let form = [
        ("csrf", csrf.as_str()),
        ("symbol_map", "GER40 = DE40.cash\r\nxauusd=GOLD\r\n"),
        ("include", "EURUSD, GBPUSD GER40"),
        ("sym_listed", "EURUSD"),
        ("sym_listed", "GBPUSD"),
        ("sym_on", "EURUSD"),
        ("max_price_move_points", "15"),
        ("lot_max", "2.5"),
        ("split", "halves"),
        ("copy_partial_closes", "off"),
        ("daily_loss_limit_money", "250"),
    ];
    let r = s.http.post(s.url("/settings")).header(COOKIE, &cookie).form_fields(&form).send().await;
    let r = r.expect("post");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let p = s.node.running.node.policy().expect("policy");
    assert_eq!(
        p.symbols.map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>(),
        vec![("GER40", "DE40.cash"), ("XAUUSD", "GOLD")]
    );
    assert_eq!(p.symbols.include, vec!["EURUSD", "GBPUSD", "GER40"]);
    assert!(p.symbols.rule("EURUSD").enabled);
    assert!(!p.symbols.rule("GBPUSD").enabled, "unticked: switched off");
    assert_eq!(p.max_price_move_points, Some(15));
    assert_eq!(p.lot_max, Some(Decimal::new(25, 1)));
    assert_eq!(p.split, tradecast_node::orders::Split::Halves);
    assert!(!p.copy_partial_closes);
    assert_eq!(p.risk.daily_loss_limit_money, Some(Decimal::from(250)));
    // What the form did not send kept its value.
    assert_eq!(
        (p.lot.clone(), p.copy_sl, p.approval.clone()),
        (before.lot, before.copy_sl, before.approval)
    );
    let (_, _, page) = s.page(&cookie, "/settings").await;
    assert!(page.contains("GER40 = DE40.cash"), "the map shows as saved");
    // A malformed map line is refused with its line number, nothing saved.
    let bad = [("csrf", csrf.as_str()), ("symbol_map", "EURUSD EURUSD.m")];
    let r = s.http.post(s.url("/settings")).header(COOKIE, &cookie).form_fields(&bad).send().await;
    let r = r.expect("post");
    assert_eq!(r.status(), 422);
    assert!(r.text().await.expect("body").contains("symbol map, line 1"));
    assert_eq!(s.node.running.node.policy().expect("policy"), p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ea_key_made_in_the_ui_shows_its_secret_once_and_a_revoked_key_is_refused() {
    let s = scene().await;
    let cookie = s.login().await;
    let (_, _, body) = s.page(&cookie, "/settings").await;
    let csrf = csrf_of(&body);
    assert!(body.contains(&s.node.key_id), "the rig's key is listed");
    let r = s
        .http
        .post(s.url("/ui/ea-keys"))
        .header(COOKIE, &cookie)
        .form_fields(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store", "the secret is never cached");
    let page = r.text().await.expect("body");
    let secret = page
        .split("id=\"new-secret\">")
        .nth(1)
        .and_then(|t| t.split('<').next())
        .expect("the secret shown")
        .to_owned();
    assert!(secret.starts_with("tcs_"), "{secret}");
    let keys = s.node.running.node.ea_key_ids();
    assert_eq!(keys.len(), 2);
    // Shown once: the page reloaded does not show it.
    let (_, _, again) = s.page(&cookie, "/settings").await;
    assert!(!again.contains(&secret));
    // Without the CSRF token nothing is made.
    let r = s.http.post(s.url("/ui/ea-keys")).header(COOKIE, &cookie).send().await.expect("post");
    assert_eq!(r.status(), 403);
    assert_eq!(s.node.running.node.ea_key_ids().len(), 2);

    // Revoking the rig's key: the EA's next call is refused.
    let path = format!("/ui/ea-keys/{}/revoke", s.node.key_id);
    let r = s
        .http
        .post(s.url(&path))
        .header(COOKIE, &cookie)
        .form_fields(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    assert!(r.text().await.expect("body").contains("revoked"));
    assert!(!s.node.running.node.ea_key_ids().contains(&s.node.key_id));
    let mut rig = Rig::new(&s.node.ea_url(), &s.node.key_id, &s.node.secret, 50);
    rig.replay.advance().expect("advance");
    assert!(rig.terminal.step().await.is_err(), "a revoked key is refused");
    // Through the API too: an unknown key is 404.
    let (status, p) = s
        .node
        .api(reqwest::Method::DELETE, &format!("/api/v1/ea-keys/{}", s.node.key_id), None)
        .await;
    assert_eq!((status, p["code"].as_str()), (404, Some("no-such-key")), "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ui_session_survives_a_node_restart_and_ends_at_sign_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(dir.path(), |_| {}).await;
    let http = client();
    let login = tradecast_node::ui::login_url(node.running.api_addr, &node.token);
    let r = http.get(login).send().await.expect("login");
    let set = r.headers()[SET_COOKIE].to_str().expect("cookie").to_owned();
    assert!(set.contains("Max-Age="), "{set}");
    let cookie = set.split(';').next().expect("pair").to_owned();
    let id = cookie.split_once('=').expect("id").1.to_owned();
    // The store keeps a hash of the session id, never the id itself.
    let stored = std::fs::read(dir.path().join("node.redb")).expect("store file");
    assert!(
        !stored.windows(id.len()).any(|w| w == id.as_bytes()),
        "the cookie is not in the store"
    );

    let TestNode { running, shutdown, .. } = node;
    shutdown.trigger();
    running.join().await.expect("stopped");
    let config = tradecast_node::config::Config {
        ea_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        api_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        ..tradecast_node::config::Config::default()
    };
    let shutdown = tradecast_node::serve::tokio_util_shutdown::Shutdown::new();
    let running =
        tradecast_node::serve::start(dir.path(), &config, shutdown.clone()).await.expect("restart");
    let url = |p: &str| format!("http://{}{p}", running.api_addr);
    let r = http.get(url("/settings")).header(COOKIE, &cookie).send().await.expect("page");
    assert_eq!(r.status(), 200, "still signed in after the restart");
    let body = r.text().await.expect("body");
    let csrf = csrf_of(&body);
    let r = http
        .post(url("/ui/logout"))
        .header(COOKIE, &cookie)
        .form_fields(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), 200);
    assert!(r.headers()[SET_COOKIE].to_str().expect("cookie").contains("Max-Age=0"));
    let r = http.get(url("/")).header(COOKIE, &cookie).send().await.expect("page");
    assert_eq!(r.status(), 401, "signed out");
    shutdown.trigger();
    running.join().await.expect("stopped");
}

/// The records export: what the node signed, as wire bytes that verify against the identity
/// key `status` shows and chain from genesis; the tip and receipts in `status.sync` match; bad
/// stream numbers and query values are problems, not panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_records_export_verifies_against_the_status_key() {
    let mut s = scene().await;
    s.buy().await;
    s.buy().await;
    let (status, st) = s.node.api(reqwest::Method::GET, "/api/v1/status", None).await;
    assert_eq!(status, 200, "{st}");
    let key = tradecast_protocol::IdentityKey::from_hex(
        st["sync"]["identity_key"].as_str().expect("identity key"),
    )
    .expect("a key");
    assert_eq!(key.device_id().to_text(), st["device_id"].as_str().expect("device id"));
    assert_eq!(st["sync"]["hub_connected"], serde_json::Value::Null, "not enrolled: no client");
    let streams = st["sync"]["streams"].as_array().expect("streams");
    let signals = streams.iter().find(|x| x["stream"] == 1).expect("the signals stream");
    assert_eq!(signals["tip"], 2, "{st}");
    assert_eq!(signals["receipts"], 0);

    let (status, page) = s.node.api(reqwest::Method::GET, "/api/v1/records/1", None).await;
    assert_eq!(status, 200, "{page}");
    let mut prev = tradecast_protocol::ChainHash::GENESIS;
    let rows = page.as_array().expect("a list");
    assert_eq!(rows.len(), 2);
    for (i, row) in rows.iter().enumerate() {
        let bytes = hex::decode(row["record"].as_str().expect("hex")).expect("hex");
        let r = tradecast_protocol::Record::decode(&bytes).expect("a record");
        r.verify(&key).expect("signed by this node");
        assert_eq!(r.header().seq, i as u64 + 1);
        assert_eq!(row["seq"], i as u64 + 1);
        assert_eq!(row["kind"], "signal");
        assert_eq!(r.header().prev_hash, prev);
        prev = r.header_hash();
    }
    // Paging.
    let (_, second) =
        s.node.api(reqwest::Method::GET, "/api/v1/records/1?from=2&limit=5", None).await;
    assert_eq!(second.as_array().map(Vec::len), Some(1));
    assert_eq!(second[0]["seq"], 2);
    for bad in ["/api/v1/records/9", "/api/v1/records/abc", "/api/v1/records/1?from=x"] {
        let (status, v) = s.node.api(reqwest::Method::GET, bad, None).await;
        assert_eq!(status, 400, "{bad}: {v}");
        assert_eq!(v["code"], "bad-request", "{bad}: {v}");
    }
}

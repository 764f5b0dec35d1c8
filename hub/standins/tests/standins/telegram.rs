//! The Telegram stand-in over real HTTP: its strictness (Telegram's error texts), its limits,
//! webhook delivery and getUpdates, the simulated world (buttons, Stars payments), and
//! frankenstein parsing every answer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use tradecast_standins::telegram::{
    Limits, MemberStatus, PayOutcome, TelegramStandin, TelegramStandinConfig, WorldError,
};

const ALICE: i64 = 1001;
const BOB: i64 = 1002;
const GROUP: i64 = -100_200;
const CHANNEL: i64 = -100_300;

async fn standin(config: TelegramStandinConfig) -> TelegramStandin {
    let tg = TelegramStandin::start(TelegramStandinConfig {
        retry_base: Duration::from_millis(20),
        max_attempts: 4,
        ..config
    })
    .await
    .unwrap();
    tg.user(ALICE, "Alice", Some("alice")).unwrap();
    tg.user(BOB, "Bob & Co", None).unwrap();
    tg.group(GROUP, "Signals", &[(ALICE, MemberStatus::Creator), (BOB, MemberStatus::Member)])
        .unwrap();
    tg.channel(CHANNEL, "Gold", Some("gold_signals"), &[]).unwrap();
    tg
}

async fn default_standin() -> TelegramStandin {
    standin(TelegramStandinConfig::default()).await
}

/// A raw Bot API client.
struct Api {
    http: reqwest::Client,
    url: String,
}

impl Api {
    fn new(tg: &TelegramStandin) -> Api {
        Api { http: reqwest::Client::new(), url: format!("{}/bot{}", tg.base_url(), tg.token()) }
    }
    async fn call(&self, method: &str, params: Value) -> (u16, Value) {
        let r =
            self.http.post(format!("{}/{method}", self.url)).json(&params).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }
    async fn ok(&self, method: &str, params: Value) -> Value {
        let (s, v) = self.call(method, params).await;
        assert_eq!(s, 200, "{method}: {v}");
        assert_eq!(v["ok"], true);
        v["result"].clone()
    }
    /// Asserts the call fails with `status` and exactly `description`.
    async fn fails(&self, method: &str, params: Value, status: u16, description: &str) {
        let (s, v) = self.call(method, params).await;
        assert_eq!((s, v["description"].as_str().unwrap_or("")), (status, description), "{v}");
        assert_eq!(v["ok"], false);
        assert_eq!(v["error_code"], status);
    }
}

#[tokio::test]
async fn token_and_method_are_checked() {
    let tg = default_standin().await;
    let http = reqwest::Client::new();
    let r = http.post(format!("{}/bot123:wrong/getMe", tg.base_url())).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"ok":false,"error_code":401,"description":"Unauthorized"})
    );
    let api = Api::new(&tg);
    let (s, v) = api.call("sendMessages", json!({})).await;
    assert_eq!((s, v), (404, json!({"ok":false,"error_code":404,"description":"Not Found"})));
    let r = http.get(format!("{}/nothing/here/at/all", tg.base_url())).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // GET with the query string; method names are case-insensitive.
    let r = http.get(format!("{}/getme", api.url)).send().await.unwrap();
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["result"]["username"], "tradecast_test_bot");
    assert_eq!(me["result"]["is_bot"], true);
    assert_eq!(me["result"]["id"], tg.bot_id());
    assert!(tg.token().starts_with(&format!("{}:", tg.bot_id())));
    assert!(!tg.base_url().ends_with('/'));
    // The log has every call with its outcome, never the token.
    let calls = tg.calls();
    assert_eq!(calls.len(), 2, "the 401 and the path 404 are not method calls");
    assert_eq!((calls[0].method.as_str(), calls[0].status), ("sendMessages", 404));
    assert_eq!((calls[1].method.as_str(), calls[1].status), ("getme", 200));
}

#[tokio::test]
async fn send_message_is_validated_like_telegram() {
    let tg = default_standin().await;
    let api = Api::new(&tg);
    let send = |chat: Value, text: Value| json!({"chat_id": chat, "text": text});
    api.fails("sendMessage", json!({"text": "x"}), 400, "Bad Request: chat_id is empty").await;
    api.fails("sendMessage", send(json!(42), json!("x")), 400, "Bad Request: chat not found").await;
    api.fails(
        "sendMessage",
        send(json!("@nobody"), json!("x")),
        400,
        "Bad Request: chat not found",
    )
    .await;
    // Alice never wrote to the bot.
    api.fails(
        "sendMessage",
        send(json!(ALICE), json!("x")),
        403,
        "Forbidden: bot can't initiate conversation with a user",
    )
    .await;
    tg.user_says(ALICE, "/start").unwrap();
    api.fails("sendMessage", json!({"chat_id": ALICE}), 400, "Bad Request: message text is empty")
        .await;
    api.fails(
        "sendMessage",
        send(json!(ALICE), json!(" \n ")),
        400,
        "Bad Request: message text is empty",
    )
    .await;
    api.fails(
        "sendMessage",
        send(json!(ALICE), json!("a".repeat(4097))),
        400,
        "Bad Request: message is too long",
    )
    .await;
    // 4096 characters after entity parsing: the tags do not count, multi-byte characters once.
    let long = format!("<b>{}</b>", "é".repeat(4096));
    let m =
        api.ok("sendMessage", json!({"chat_id": ALICE, "text": long, "parse_mode": "HTML"})).await;
    assert_eq!(m["entities"], json!([{"type":"bold","offset":0,"length":4096}]));
    // The channel by @username, a user by a numeric string (as a form sends it).
    let m = api.ok("sendMessage", send(json!("@gold_signals"), json!("gold"))).await;
    assert_eq!(m["chat"]["id"], CHANNEL);
    assert_eq!(m["sender_chat"]["id"], CHANNEL);
    api.ok("sendMessage", send(json!(GROUP.to_string()), json!("hi group"))).await;
    api.fails(
        "sendMessage",
        json!({"chat_id": GROUP, "text": "re", "reply_parameters": {"message_id": 99}}),
        400,
        "Bad Request: message to be replied not found",
    )
    .await;
    api.fails(
        "sendMessage",
        json!({"chat_id": ALICE, "text": "x", "parse_mode": "HTML5"}),
        400,
        "Bad Request: unsupported parse_mode",
    )
    .await;
    // Blocked.
    tg.block(ALICE).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    api.fails(
        "sendMessage",
        send(json!(ALICE), json!("x")),
        403,
        "Forbidden: bot was blocked by the user",
    )
    .await;
    tg.user_says(ALICE, "hello again").unwrap();
    api.ok("sendMessage", send(json!(ALICE), json!("welcome back"))).await;
    let texts: Vec<_> = tg.messages_to(ALICE).into_iter().filter_map(|m| m.text).collect();
    assert_eq!(texts, vec!["é".repeat(4096), "welcome back".to_owned()]);
}

#[tokio::test]
async fn parameters_arrive_as_form_query_or_multipart() {
    let tg = default_standin().await;
    tg.user_says(ALICE, "/start").unwrap();
    tg.user_says(BOB, "/start").unwrap();
    let api = Api::new(&tg);
    let markup = json!({"inline_keyboard": [[{"text": "Yes", "callback_data": "y"}]]}).to_string();
    let r = api
        .http
        .post(format!("{}/sendMessage", api.url))
        .form(&[
            ("chat_id", ALICE.to_string()),
            ("text", "<i>form</i>".into()),
            ("parse_mode", "HTML".into()),
            ("reply_markup", markup.clone()),
        ])
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["result"]["text"], "form");
    assert_eq!(v["result"]["reply_markup"]["inline_keyboard"][0][0]["callback_data"], "y");
    let r = api
        .http
        .get(format!("{}/sendMessage?chat_id={BOB}&text=query%20string", api.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["result"]["text"], "query string");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let form = reqwest::multipart::Form::new()
        .text("chat_id", ALICE.to_string())
        .text("text", "multipart")
        .text("reply_markup", markup);
    let r = api.http.post(format!("{}/sendMessage", api.url)).multipart(form).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["result"]["text"], "multipart", "{v}");
    let logged = tg.calls();
    assert_eq!(logged.last().unwrap().params["text"], "multipart");
}

#[tokio::test]
async fn inline_keyboards_are_checked() {
    let tg = default_standin().await;
    tg.user_says(ALICE, "/start").unwrap();
    let api = Api::new(&tg);
    let with = |b: Value| json!({"chat_id": ALICE, "text": "x", "reply_markup": {"inline_keyboard": [[b]]}});
    let cases = [
        (json!({"text": "A", "callback_data": "a".repeat(65)}), "Bad Request: BUTTON_DATA_INVALID"),
        // 33 characters, 66 bytes: the limit is in bytes.
        (json!({"text": "A", "callback_data": "é".repeat(33)}), "Bad Request: BUTTON_DATA_INVALID"),
        (json!({"text": "A", "callback_data": ""}), "Bad Request: BUTTON_DATA_INVALID"),
        (json!({"text": "A"}), "Bad Request: text buttons are unallowed in the inline keyboard"),
        (json!({"text": "A", "url": "not a url"}), "Bad Request: BUTTON_URL_INVALID"),
        (
            json!({"text": "A", "url": "https://x.y", "callback_data": "a"}),
            "Bad Request: can't parse inline keyboard button: exactly one of the optional fields must be used",
        ),
    ];
    for (button, err) in cases {
        api.fails("sendMessage", with(button), 400, err).await;
    }
    api.fails(
        "sendMessage",
        json!({"chat_id": ALICE, "text": "x", "reply_markup": "{not json"}),
        400,
        "Bad Request: can't parse reply keyboard markup JSON object",
    )
    .await;
    let m =
        api.ok("sendMessage", with(json!({"text": "A", "callback_data": "é".repeat(32)}))).await;
    assert_eq!(m["reply_markup"]["inline_keyboard"][0][0]["text"], "A");
    assert_eq!(tg.sends().len(), 1, "only the accepted send is recorded");
}

#[tokio::test]
async fn html_table() {
    let tg = default_standin().await;
    tg.set_limits(Limits { enforce: false, ..Limits::default() });
    tg.user_says(ALICE, "/start").unwrap();
    let api = Api::new(&tg);
    let good: &[(&str, &str, Value)] = &[
        (
            "<b>XAUUSD</b> &lt;buy&gt;",
            "XAUUSD <buy>",
            json!([{"type":"bold","offset":0,"length":6}]),
        ),
        ("Bob &amp; Co &quot;x&quot; &#8364;&#x20AC;", "Bob & Co \"x\" €€", json!(null)),
        (
            "<strong>s</strong><em>e</em><ins>i</ins><strike>k</strike><del>d</del>",
            "seikd",
            json!([
            {"type":"bold","offset":0,"length":1},{"type":"italic","offset":1,"length":1},
            {"type":"underline","offset":2,"length":1},{"type":"strikethrough","offset":3,"length":1},
            {"type":"strikethrough","offset":4,"length":1}]),
        ),
        (
            "<a href=\"https://hub.example/t?a=1&amp;b=2\">record</a>",
            "record",
            json!([
            {"type":"text_link","offset":0,"length":6,"url":"https://hub.example/t?a=1&b=2"}]),
        ),
        (
            "<tg-spoiler>s</tg-spoiler><code>c</code>",
            "sc",
            json!([
            {"type":"spoiler","offset":0,"length":1},{"type":"code","offset":1,"length":1}]),
        ),
        (
            "<pre><code class=\"language-rust\">let x;</code></pre>",
            "let x;",
            json!([
            {"type":"pre","offset":0,"length":6,"language":"rust"}]),
        ),
        (
            "<blockquote expandable>q</blockquote><tg-emoji emoji-id=\"5368324170671202286\">👍</tg-emoji>",
            "q👍",
            json!([
            {"type":"expandable_blockquote","offset":0,"length":1},
            {"type":"custom_emoji","offset":1,"length":2,"custom_emoji_id":"5368324170671202286"}]),
        ),
        ("1 > 0", "1 > 0", json!(null)),
        (
            "<B>x</b >y<b >z</B>",
            "xyz",
            json!([
            {"type":"bold","offset":0,"length":1},{"type":"bold","offset":2,"length":1}]),
        ),
    ];
    for (input, text, entities) in good {
        let m = api
            .ok("sendMessage", json!({"chat_id": ALICE, "text": input, "parse_mode": "HTML"}))
            .await;
        assert_eq!(m["text"], *text, "{input}");
        assert_eq!(m["entities"], *entities, "{input}");
    }
    let bad: &[(&str, &str)] = &[
        ("EURUSD < 1.1", "Unsupported start tag \"\" at byte offset 7"),
        ("AT&T", "Unescaped \"&\" at byte offset 2"),
        ("&nbsp;", "Unsupported HTML entity \"&nbsp;\" at byte offset 0"),
        ("<div>x</div>", "Unsupported start tag \"div\" at byte offset 0"),
        ("<b>open", "Can't find end tag corresponding to start tag \"b\""),
        ("close</b>", "Unexpected end tag at byte offset 5"),
        (
            "<b><i>x</b></i>",
            "Unmatched end tag at byte offset 7, expected \"</i>\", found \"</b>\"",
        ),
        ("<span>x</span>", "Tag \"span\" must have class \"tg-spoiler\" at byte offset 0"),
        ("<a href=\"x", "Unclosed start tag at byte offset 0"),
    ];
    for (input, why) in bad {
        api.fails(
            "sendMessage",
            json!({"chat_id": ALICE, "text": input, "parse_mode": "HTML"}),
            400,
            &format!("Bad Request: can't parse entities: {why}"),
        )
        .await;
    }
    // Without parse_mode the same text is taken literally.
    let m = api.ok("sendMessage", json!({"chat_id": ALICE, "text": "EURUSD < 1.1 & <b>"})).await;
    assert_eq!(m["text"], "EURUSD < 1.1 & <b>");
    // Or with explicit entities, which must lie inside the text (UTF-16 units).
    let bold =
        |offset: u32, length: u32| json!([{"type": "bold", "offset": offset, "length": length}]);
    let m = api
        .ok("sendMessage", json!({"chat_id": ALICE, "text": "😀 up", "entities": bold(3, 2)}))
        .await;
    assert_eq!(m["entities"], bold(3, 2));
    api.fails(
        "sendMessage",
        json!({"chat_id": ALICE, "text": "😀 up", "entities": bold(3, 3)}),
        400,
        "Bad Request: entity beyond the end of the text",
    )
    .await;
    api.fails(
        "sendMessage",
        json!({"chat_id": ALICE, "text": "up", "entities": "[{"}),
        400,
        "Bad Request: can't parse entities JSON object",
    )
    .await;
}

#[tokio::test]
async fn edits_and_deletes() {
    let tg = default_standin().await;
    tg.user_says(ALICE, "/start").unwrap();
    let api = Api::new(&tg);
    let kb = json!({"inline_keyboard": [[{"text": "Approve", "callback_data": "a:1"}]]});
    let m = api
        .ok("sendMessage", json!({"chat_id": ALICE, "text": "Signal", "reply_markup": kb}))
        .await;
    let id = m["message_id"].as_i64().unwrap();
    api.fails(
        "editMessageText",
        json!({"chat_id": ALICE, "message_id": 999, "text": "y"}),
        400,
        "Bad Request: message to edit not found",
    )
    .await;
    api.fails(
        "editMessageText",
        json!({"chat_id": ALICE, "message_id": id, "text": "Signal", "reply_markup": kb}),
        400,
        "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
    )
    .await;
    let e = api.ok("editMessageText", json!({"chat_id": ALICE, "message_id": id, "text": "Signal: <b>approved</b>", "parse_mode": "HTML"})).await;
    assert_eq!(e["text"], "Signal: approved");
    assert!(e["edit_date"].as_u64().is_some());
    assert!(e.get("reply_markup").is_none(), "an edit without markup removes it");
    api.fails("editMessageReplyMarkup", json!({"chat_id": ALICE, "message_id": id}), 400, "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message").await;
    api.ok(
        "editMessageReplyMarkup",
        json!({"chat_id": ALICE, "message_id": id, "reply_markup": kb}),
    )
    .await;
    // The user's own message is not the bot's to edit.
    api.fails(
        "editMessageText",
        json!({"chat_id": ALICE, "message_id": 1, "text": "z"}),
        400,
        "Bad Request: message can't be edited",
    )
    .await;
    assert_eq!(api.ok("deleteMessage", json!({"chat_id": ALICE, "message_id": id})).await, true);
    api.fails(
        "deleteMessage",
        json!({"chat_id": ALICE, "message_id": id}),
        400,
        "Bad Request: message to delete not found",
    )
    .await;
    api.fails(
        "editMessageText",
        json!({"chat_id": ALICE, "message_id": id, "text": "late"}),
        400,
        "Bad Request: message to edit not found",
    )
    .await;
    let logged = &tg.messages_to(ALICE)[0];
    assert!(logged.deleted);
    assert_eq!(logged.edits.len(), 2);
    assert_eq!(logged.edits[0].text.as_deref(), Some("Signal: approved"));
    assert_eq!(logged.edits[1].reply_markup.as_ref(), Some(&kb));
}

#[tokio::test]
async fn a_burst_to_one_chat_gets_429_with_retry_after() {
    let tg = default_standin().await;
    tg.user_says(ALICE, "/start").unwrap();
    let api = Api::new(&tg);
    let msg = json!({"chat_id": ALICE, "text": "one"});
    api.ok("sendMessage", msg.clone()).await;
    let (s, v) = api.call("sendMessage", msg.clone()).await;
    assert_eq!(
        (s, v),
        (
            429,
            json!({"ok":false,"error_code":429,"description":"Too Many Requests: retry after 1","parameters":{"retry_after":1}})
        )
    );
    assert_eq!((tg.n_too_many(), tg.n_too_many_to(ALICE)), (1, 1));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    api.ok("sendMessage", msg).await;
    assert_eq!(tg.max_rate_observed(Some(ALICE), Duration::from_secs(1)), 1);
    // A group: 20 a minute, then a wait of most of the minute.
    for i in 0..20 {
        api.ok("sendMessage", json!({"chat_id": GROUP, "text": format!("g{i}")})).await;
        if i % 10 == 9 {
            // Stay under 30/s overall.
            tokio::time::sleep(Duration::from_millis(1000)).await;
        }
    }
    let (s, v) = api.call("sendMessage", json!({"chat_id": GROUP, "text": "g20"})).await;
    assert_eq!(s, 429);
    let retry = v["parameters"]["retry_after"].as_u64().unwrap();
    assert!((55..=60).contains(&retry), "{v}");
    assert_eq!(v["description"], format!("Too Many Requests: retry after {retry}"));
    assert_eq!(tg.max_rate_observed(Some(GROUP), Duration::from_secs(60)), 20);
}

#[tokio::test]
async fn thirty_per_second_overall() {
    let tg = default_standin().await;
    let users: Vec<i64> = (0..40).map(|i| 5000 + i).collect();
    for u in &users {
        tg.user(*u, "U", None).unwrap();
        tg.user_says(*u, "/start").unwrap();
    }
    let api = Api::new(&tg);
    let started = Instant::now();
    let mut refused = Vec::new();
    for u in &users {
        let (s, v) = api.call("sendMessage", json!({"chat_id": u, "text": "news"})).await;
        if s == 429 {
            assert_eq!(v["parameters"]["retry_after"], 1);
            refused.push(*u);
        } else {
            assert_eq!(s, 200, "{v}");
        }
    }
    if started.elapsed() < Duration::from_millis(900) {
        assert_eq!(refused.len(), 10, "30 of 40 pass within one second");
    }
    // A sender that honours retry_after gets the rest through.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for u in &refused {
        api.ok("sendMessage", json!({"chat_id": u, "text": "news"})).await;
    }
    assert_eq!(tg.sends().len(), 40);
    assert!(tg.max_rate_observed(None, Duration::from_secs(1)) <= 30);
    assert_eq!(tg.n_too_many(), refused.len());
}

/// A webhook endpoint: records the secret header and body of every request; answers 500 to
/// the first `fail` ones.
#[derive(Default)]
struct Receiver {
    got: Mutex<Vec<(Option<String>, Value)>>,
    fail: AtomicUsize,
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let secret = headers
        .get("x-telegram-bot-api-secret-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    r.got.lock().unwrap().push((secret, serde_json::from_slice(&body).unwrap()));
    if r.fail.load(Ordering::SeqCst) > 0 {
        r.fail.fetch_sub(1, Ordering::SeqCst);
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    StatusCode::OK
}

async fn receiver() -> (Arc<Receiver>, String) {
    let r = Arc::new(Receiver::default());
    let app = axum::Router::new().route("/hook", post(receive)).with_state(r.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (r, url)
}

#[tokio::test]
async fn webhook_delivery_with_secret_and_retries() {
    let tg = default_standin().await;
    let api = Api::new(&tg);
    let (rx, url) = receiver().await;
    api.fails(
        "setWebhook",
        json!({"url": url, "secret_token": "bad secret!"}),
        400,
        "Bad Request: secret token contains unallowed characters",
    )
    .await;
    api.fails(
        "setWebhook",
        json!({"url": url, "secret_token": "a".repeat(257)}),
        400,
        "Bad Request: secret token contains unallowed characters",
    )
    .await;
    api.fails(
        "setWebhook",
        json!({"url": "ftp://x"}),
        400,
        "Bad Request: bad webhook: An HTTPS URL must be provided for webhook",
    )
    .await;
    assert_eq!(
        api.ok("setWebhook", json!({"url": url, "secret_token": "s3cr3t_-X", "allowed_updates": ["message", "callback_query"], "drop_pending_updates": true})).await,
        true
    );
    api.fails("getUpdates", json!({}), 409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first").await;
    rx.fail.store(2, Ordering::SeqCst);
    tg.user_says(ALICE, "/start abc").unwrap();
    tg.user_says(ALICE, "second").unwrap();
    assert!(tg.settle(Duration::from_secs(5)).await);
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 4, "two failures, then each update once");
    assert!(got.iter().all(|(s, _)| s.as_deref() == Some("s3cr3t_-X")));
    let first = got[0].1["update_id"].as_u64().unwrap();
    let ids: Vec<u64> = got.iter().map(|(_, u)| u["update_id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![first, first, first, first + 1], "retried in order");
    let m = &got[0].1["message"];
    assert_eq!(m["text"], "/start abc");
    assert_eq!(m["entities"], json!([{"type":"bot_command","offset":0,"length":6}]));
    assert_eq!(
        m["chat"],
        json!({"id": ALICE, "type": "private", "first_name": "Alice", "username": "alice"})
    );
    let d: Vec<(u32, Option<u16>)> =
        tg.deliveries().iter().map(|d| (d.attempt, d.status)).collect();
    assert_eq!(d, vec![(1, Some(500)), (2, Some(500)), (3, Some(200)), (1, Some(200))]);
    let info = api.ok("getWebhookInfo", json!({})).await;
    assert_eq!(info["url"], url);
    assert_eq!(info["pending_update_count"], 0);
    assert_eq!(info["allowed_updates"], json!(["message", "callback_query"]));
    assert_eq!(info["last_error_message"], "Wrong response from the webhook: 500");
    // An endpoint that never answers 2xx: max_attempts, then the update is dropped.
    rx.fail.store(100, Ordering::SeqCst);
    tg.user_says(ALICE, "lost").unwrap();
    assert!(tg.settle(Duration::from_secs(5)).await);
    assert_eq!(tg.deliveries().iter().filter(|d| d.update_id == first + 2).count(), 4);
    // Duplicates on request (same update_id twice).
    rx.fail.store(0, Ordering::SeqCst);
    tg.set_duplicate(true);
    tg.user_says(ALICE, "twice").unwrap();
    assert!(tg.settle(Duration::from_secs(5)).await);
    let got = rx.got.lock().unwrap().clone();
    let twice: Vec<_> = got.iter().filter(|(_, u)| u["message"]["text"] == "twice").collect();
    assert_eq!(twice.len(), 2);
    assert_eq!(twice[0].1["update_id"], twice[1].1["update_id"]);
    assert_eq!(api.ok("deleteWebhook", json!({})).await, true);
    assert_eq!(api.ok("getUpdates", json!({})).await, json!([]));
}

#[tokio::test]
async fn get_updates_long_polls_and_offset_confirms() {
    let tg = Arc::new(default_standin().await);
    let api = Arc::new(Api::new(&tg));
    assert_eq!(api.ok("getUpdates", json!({"timeout": 0})).await, json!([]));
    let poll = {
        let api = api.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            (api.ok("getUpdates", json!({"timeout": 10})).await, t.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    tg.user_says(BOB, "/status").unwrap();
    let (updates, waited) = poll.await.unwrap();
    assert!(waited >= Duration::from_millis(250) && waited < Duration::from_secs(5), "{waited:?}");
    let id = updates[0]["update_id"].as_i64().unwrap();
    assert_eq!(updates[0]["message"]["from"]["first_name"], "Bob & Co");
    // Not confirmed yet: the same update again.
    assert_eq!(api.ok("getUpdates", json!({})).await[0]["update_id"], id);
    tg.user_says(BOB, "/plan").unwrap();
    let next = api.ok("getUpdates", json!({"offset": id + 1})).await;
    assert_eq!(next.as_array().unwrap().len(), 1);
    assert_eq!(next[0]["update_id"], id + 1);
    assert_eq!(api.ok("getUpdates", json!({"offset": id + 2, "timeout": 0})).await, json!([]));
    assert!(tg.pending_updates().is_empty());
    // limit.
    for t in ["a", "b", "c"] {
        tg.user_says(BOB, t).unwrap();
    }
    assert_eq!(api.ok("getUpdates", json!({"limit": 2})).await.as_array().unwrap().len(), 2);
    // A second poller ends the first with 409.
    api.ok("getUpdates", json!({"offset": id + 5})).await;
    let first = {
        let api = api.clone();
        tokio::spawn(async move {
            api.call("getUpdates", json!({"timeout": 10, "offset": id + 5})).await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = api.call("getUpdates", json!({"timeout": 0, "offset": id + 5})).await;
    assert_eq!(second.0, 200);
    let (s, v) = first.await.unwrap();
    assert_eq!(
        (s, v["description"].as_str().unwrap()),
        (
            409,
            "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
        )
    );
}

#[tokio::test]
async fn a_button_press_round_trip() {
    let tg = default_standin().await;
    let api = Api::new(&tg);
    let kb = json!({"inline_keyboard": [[{"text": "Approve", "callback_data": "A:7f3a"}, {"text": "Reject", "callback_data": "R:7f3a"}]]});
    let m = api
        .ok("sendMessage", json!({"chat_id": GROUP, "text": "XAUUSD buy 0.10", "reply_markup": kb}))
        .await;
    let id = i32::try_from(m["message_id"].as_i64().unwrap()).unwrap();
    assert_eq!(
        tg.press(BOB, GROUP, id, "X:nope"),
        Err(WorldError::NoSuchButton(id, "X:nope".into()))
    );
    assert_eq!(
        tg.press(BOB, GROUP, id + 1, "A:7f3a"),
        Err(WorldError::UnknownMessage(GROUP, id + 1))
    );
    tg.user(1003, "Mallory", None).unwrap();
    assert_eq!(tg.press(1003, GROUP, id, "A:7f3a"), Err(WorldError::NotMember(1003, GROUP)));
    let qid = tg.press(BOB, GROUP, id, "A:7f3a").unwrap();
    let updates = api.ok("getUpdates", json!({})).await;
    let q = &updates[0]["callback_query"];
    assert_eq!(q["id"], qid);
    assert_eq!(q["data"], "A:7f3a");
    assert_eq!(q["from"]["id"], BOB);
    assert_eq!(q["message"]["message_id"], id);
    assert_eq!(q["message"]["chat"]["id"], GROUP);
    assert!(q["chat_instance"].is_string());
    api.fails(
        "answerCallbackQuery",
        json!({"callback_query_id": "123"}),
        400,
        "Bad Request: query is too old and response timeout expired or query ID is invalid",
    )
    .await;
    api.ok("answerCallbackQuery", json!({"callback_query_id": qid, "text": "Sent to your node"}))
        .await;
    api.fails(
        "answerCallbackQuery",
        json!({"callback_query_id": qid}),
        400,
        "Bad Request: query is too old and response timeout expired or query ID is invalid",
    )
    .await;
    api.ok("editMessageText", json!({"chat_id": GROUP, "message_id": id, "text": "XAUUSD buy 0.10: approved by Bob &amp; Co", "parse_mode": "HTML"})).await;
    let answered = tg.answered_callbacks();
    assert_eq!(answered.len(), 1);
    assert_eq!(
        (answered[0].user_id, answered[0].data.as_str(), answered[0].text.as_deref()),
        (BOB, "A:7f3a", Some("Sent to your node"))
    );
    let found = tg
        .wait_for_message(
            GROUP,
            |m| m.text.as_deref().is_some_and(|t| t.ends_with("Bob & Co")),
            Duration::from_secs(1),
        )
        .await;
    assert!(found.is_some());
}

async fn invoice(api: &Api, extra: Value) -> (u16, Value) {
    let mut p = json!({"title": "Pro", "description": "Pro plan, 30 days", "payload": "plan:pro:acct-9", "currency": "XTR", "prices": [{"label": "Pro", "amount": 250}]});
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    api.call("createInvoiceLink", p).await
}

#[tokio::test]
async fn stars_payment_round_trip() {
    let tg = Arc::new(
        standin(TelegramStandinConfig {
            pre_checkout_timeout: Duration::from_millis(500),
            ..Default::default()
        })
        .await,
    );
    let api = Arc::new(Api::new(&tg));
    let bad = [
        (json!({"currency": "USD"}), "Bad Request: CURRENCY_INVALID"),
        (json!({"provider_token": "tok"}), "Bad Request: PROVIDER_TOKEN_INVALID"),
        (
            json!({"prices": [{"label": "a", "amount": 1}, {"label": "b", "amount": 2}]}),
            "Bad Request: STARS_INVOICE_INVALID",
        ),
        (json!({"prices": [{"label": "a", "amount": 0}]}), "Bad Request: STARS_INVOICE_INVALID"),
        (json!({"payload": "p".repeat(129)}), "Bad Request: INVOICE_PAYLOAD_INVALID"),
        (json!({"payload": ""}), "Bad Request: INVOICE_PAYLOAD_INVALID"),
        (json!({"subscription_period": 86400}), "Bad Request: SUBSCRIPTION_PERIOD_INVALID"),
    ];
    for (extra, err) in bad {
        let (s, v) = invoice(&api, extra).await;
        assert_eq!((s, v["description"].as_str().unwrap()), (400, err));
    }
    let (s, v) = invoice(&api, json!({"provider_token": "", "subscription_period": 2592000})).await;
    assert_eq!(s, 200, "{v}");
    let link = v["result"].as_str().unwrap().to_owned();
    assert!(link.starts_with("https://t.me/$") && link.len() > 20, "{link}");
    assert_eq!(tg.invoices()[0].subscription_period, Some(2_592_000));

    // The bot: answers each pre-checkout query with `ok` (and a reason when not ok).
    let bot = |ok: bool| {
        let api = api.clone();
        tokio::spawn(async move {
            let u = api
                .ok(
                    "getUpdates",
                    json!({"timeout": 5, "allowed_updates": ["message", "pre_checkout_query"]}),
                )
                .await;
            let q = u[0]["pre_checkout_query"].clone();
            let id = u[0]["update_id"].as_i64().unwrap();
            api.fails(
                "answerPreCheckoutQuery",
                json!({"pre_checkout_query_id": q["id"], "ok": false}),
                400,
                "Bad Request: ERROR_MESSAGE_EMPTY",
            )
            .await;
            let mut answer = json!({"pre_checkout_query_id": q["id"], "ok": ok});
            if !ok {
                answer["error_message"] = json!("This plan is no longer sold");
            }
            api.ok("answerPreCheckoutQuery", answer).await;
            api.ok("getUpdates", json!({"offset": id + 1, "timeout": 0})).await;
            q
        })
    };
    let answering = bot(true);
    let paid = tg.pay(ALICE, &link).await.unwrap();
    let q = answering.await.unwrap();
    assert_eq!(
        (q["currency"].as_str(), q["total_amount"].as_u64(), q["invoice_payload"].as_str()),
        (Some("XTR"), Some(250), Some("plan:pro:acct-9"))
    );
    let PayOutcome::Paid(payment) = paid else { panic!("{paid:?}") };
    let u = api.ok("getUpdates", json!({})).await;
    let sp = &u[0]["message"]["successful_payment"];
    assert_eq!(sp["currency"], "XTR");
    assert_eq!(sp["total_amount"], 250);
    assert_eq!(sp["invoice_payload"], "plan:pro:acct-9");
    assert_eq!(sp["telegram_payment_charge_id"], payment.charge_id);
    assert_eq!(sp["is_recurring"], true);
    let exp = sp["subscription_expiration_date"].as_u64().unwrap();
    assert!(exp >= u[0]["message"]["date"].as_u64().unwrap() + 2_592_000);
    let id = u[0]["update_id"].as_i64().unwrap();
    api.ok("getUpdates", json!({"offset": id + 1})).await;

    // Refund once.
    let refund = json!({"user_id": ALICE, "telegram_payment_charge_id": payment.charge_id});
    api.fails(
        "refundStarPayment",
        json!({"user_id": ALICE, "telegram_payment_charge_id": "nope"}),
        400,
        "Bad Request: CHARGE_ID_INVALID",
    )
    .await;
    assert_eq!(api.ok("refundStarPayment", refund.clone()).await, true);
    api.fails("refundStarPayment", refund, 400, "Bad Request: CHARGE_ALREADY_REFUNDED").await;
    assert!(tg.payments()[0].refunded);

    // Declined by the bot: no payment, no successful_payment.
    let answering = bot(false);
    assert_eq!(
        tg.pay(BOB, &link).await.unwrap(),
        PayOutcome::Declined("This plan is no longer sold".into())
    );
    answering.await.unwrap();
    assert_eq!(api.ok("getUpdates", json!({"timeout": 0})).await, json!([]));

    // Unanswered within the timeout: no payment, a late answer is refused.
    assert_eq!(tg.pay(BOB, &link).await.unwrap(), PayOutcome::Unanswered);
    let u = api.ok("getUpdates", json!({})).await;
    assert_eq!(u.as_array().unwrap().len(), 1, "{u}");
    let qid = u[0]["pre_checkout_query"]["id"].clone();
    api.fails(
        "answerPreCheckoutQuery",
        json!({"pre_checkout_query_id": qid, "ok": true}),
        400,
        "Bad Request: query is too old and response timeout expired or query ID is invalid",
    )
    .await;
    assert_eq!(tg.payments().len(), 1);
    assert_eq!(
        tg.pay(BOB, "https://t.me/$nope").await,
        Err(WorldError::UnknownInvoice("https://t.me/$nope".into()))
    );
}

#[tokio::test]
async fn commands_per_scope() {
    let tg = default_standin().await;
    let api = Api::new(&tg);
    let cmds = json!([{"command": "status", "description": "Plan and devices"}, {"command": "help", "description": "What I can do"}]);
    api.ok("setMyCommands", json!({"commands": cmds})).await;
    api.ok("setMyCommands", json!({"commands": [{"command": "stats", "description": "Owner stats"}], "scope": {"type": "chat", "chat_id": ALICE}})).await;
    api.ok("setMyCommands", json!({"commands": [{"command": "signals", "description": "Recent"}], "scope": {"type": "all_group_chats"}, "language_code": "de"})).await;
    for (cmd, err) in [
        ("Status", "BOT_COMMAND_INVALID"),
        ("", "BOT_COMMAND_INVALID"),
        (&"a".repeat(33), "BOT_COMMAND_INVALID"),
        ("ok", "BOT_COMMAND_DESCRIPTION_INVALID"),
    ] {
        let desc = if cmd == "ok" { "" } else { "d" };
        api.fails(
            "setMyCommands",
            json!({"commands": [{"command": cmd, "description": desc}]}),
            400,
            &format!("Bad Request: {err}"),
        )
        .await;
    }
    api.fails(
        "setMyCommands",
        json!({"commands": cmds, "scope": {"type": "chat", "chat_id": 4242}}),
        400,
        "Bad Request: chat not found",
    )
    .await;
    assert_eq!(api.ok("getMyCommands", json!({})).await, cmds);
    assert_eq!(
        api.ok("getMyCommands", json!({"scope": {"type": "chat", "chat_id": ALICE}})).await[0]["command"],
        "stats"
    );
    assert_eq!(
        api.ok("getMyCommands", json!({"scope": {"type": "all_group_chats"}})).await,
        json!([])
    );
    assert_eq!(tg.commands("all_group_chats|de")[0]["command"], "signals");
    api.ok("deleteMyCommands", json!({"scope": {"type": "chat", "chat_id": ALICE}})).await;
    assert_eq!(
        api.ok("getMyCommands", json!({"scope": {"type": "chat", "chat_id": ALICE}})).await,
        json!([])
    );
    assert_eq!(tg.commands("default|").len(), 2);
}

/// A PNG header of `w`×`h` (the stand-in reads the size from IHDR).
fn png(w: u32, h: u32) -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    b.extend_from_slice(&w.to_be_bytes());
    b.extend_from_slice(&h.to_be_bytes());
    b.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
    b
}

#[tokio::test]
async fn photos_by_upload_url_or_file_id() {
    let tg = default_standin().await;
    tg.set_limits(Limits { enforce: false, ..Limits::default() });
    tg.user_says(ALICE, "/start").unwrap();
    let api = Api::new(&tg);
    let upload = |data: Vec<u8>, caption: String| {
        let form = reqwest::multipart::Form::new()
            .text("chat_id", ALICE.to_string())
            .text("caption", caption)
            .text("parse_mode", "HTML")
            .part("photo", reqwest::multipart::Part::bytes(data).file_name("chart.png"));
        api.http.post(format!("{}/sendPhoto", api.url)).multipart(form).send()
    };
    let r = upload(png(800, 450), "<b>XAUUSD</b> setup".into()).await.unwrap();
    let v: Value = r.json().await.unwrap();
    let m = &v["result"];
    assert_eq!(
        (m["photo"][0]["width"].as_u64(), m["photo"][0]["height"].as_u64()),
        (Some(800), Some(450)),
        "{v}"
    );
    assert_eq!(m["caption"], "XAUUSD setup");
    assert_eq!(m["caption_entities"], json!([{"type":"bold","offset":0,"length":6}]));
    let file_id = m["photo"][0]["file_id"].as_str().unwrap().to_owned();
    let v: Value =
        upload(b"not an image".to_vec(), String::new()).await.unwrap().json().await.unwrap();
    assert_eq!(v["description"], "Bad Request: IMAGE_PROCESS_FAILED");
    let v: Value = upload(png(1, 1), "x".repeat(1025)).await.unwrap().json().await.unwrap();
    assert_eq!(v["description"], "Bad Request: message caption is too long");
    api.ok("sendPhoto", json!({"chat_id": ALICE, "photo": file_id})).await;
    api.ok("sendPhoto", json!({"chat_id": ALICE, "photo": "https://hub.example/chart.png"})).await;
    api.fails(
        "sendPhoto",
        json!({"chat_id": ALICE, "photo": "AgACAgIAAxkunknown"}),
        400,
        "Bad Request: wrong file identifier/HTTP URL specified",
    )
    .await;
    api.fails(
        "sendPhoto",
        json!({"chat_id": ALICE}),
        400,
        "Bad Request: there is no photo in the request",
    )
    .await;
    let photos = tg.messages_to(ALICE);
    assert_eq!(photos.len(), 3);
    assert!(photos.iter().all(|m| m.photo.is_some()));
    assert_eq!(tg.calls()[0].params["photo"], json!({"file": "chart.png", "bytes": 33}));
}

#[tokio::test]
async fn chats_and_members() {
    let tg = default_standin().await;
    let api = Api::new(&tg);
    let c = api.ok("getChat", json!({"chat_id": GROUP})).await;
    assert_eq!((c["type"].as_str(), c["title"].as_str()), (Some("supergroup"), Some("Signals")));
    api.fails("getChat", json!({"chat_id": ALICE}), 400, "Bad Request: chat not found").await;
    let member = |user: i64| api.ok("getChatMember", json!({"chat_id": GROUP, "user_id": user}));
    assert_eq!(member(ALICE).await["status"], "creator");
    assert_eq!(member(BOB).await["status"], "member");
    tg.set_member(GROUP, BOB, MemberStatus::Kicked).unwrap();
    assert_eq!(member(BOB).await["status"], "kicked");
    tg.set_member(GROUP, BOB, MemberStatus::Administrator).unwrap();
    assert_eq!(member(BOB).await["can_delete_messages"], true);
    api.fails(
        "getChatMember",
        json!({"chat_id": GROUP, "user_id": 9}),
        400,
        "Bad Request: user not found",
    )
    .await;
    api.ok("sendChatAction", json!({"chat_id": GROUP, "action": "typing"})).await;
    api.fails(
        "sendChatAction",
        json!({"chat_id": GROUP, "action": "dancing"}),
        400,
        "Bad Request: wrong parameter action in request",
    )
    .await;
    assert_eq!(tg.user_says_in(ALICE, CHANNEL, "hi"), Err(WorldError::NotMember(ALICE, CHANNEL)));
    tg.user_says_in(ALICE, GROUP, "/signals@tradecast_test_bot now").unwrap();
    let u = api.ok("getUpdates", json!({})).await;
    assert_eq!(u[0]["message"]["entities"], json!([{"type":"bot_command","offset":0,"length":27}]));
    assert_eq!(u[0]["message"]["chat"]["type"], "supergroup");
}

/// frankenstein (the hub's client) calls every implemented method and parses every answer.
#[tokio::test]
async fn frankenstein_parses_every_answer() {
    use frankenstein::AsyncTelegramApi;
    use frankenstein::client_reqwest::Bot;
    use frankenstein::methods::*;
    use frankenstein::payments::LabeledPrice;
    use frankenstein::types::{
        BotCommand, BotCommandScope, BotCommandScopeChat, ChatAction, ChatMember,
        InlineKeyboardButton, InlineKeyboardMarkup, ReplyMarkup,
    };
    use frankenstein::updates::UpdateContent;

    let tg = Arc::new(
        standin(TelegramStandinConfig {
            limits: Limits { enforce: false, ..Limits::default() },
            ..Default::default()
        })
        .await,
    );
    tg.user_says(ALICE, "/start").unwrap();
    let bot = Bot::new_url(format!("{}/bot{}", tg.base_url(), tg.token()));
    let me = bot.get_me().await.unwrap().result;
    assert_eq!(me.username.as_deref(), Some("tradecast_test_bot"));

    let kb = ReplyMarkup::InlineKeyboardMarkup(InlineKeyboardMarkup {
        inline_keyboard: vec![vec![
            InlineKeyboardButton::builder().text("Approve").callback_data("A:1").build(),
            InlineKeyboardButton::builder().text("Record").url("https://hub.example/r").build(),
        ]],
        force_reply: None,
    });
    let sent = bot
        .send_message(
            &SendMessageParams::builder()
                .chat_id(ALICE)
                .text("<b>XAUUSD</b> buy")
                .parse_mode(frankenstein::ParseMode::Html)
                .reply_markup(kb.clone())
                .build(),
        )
        .await
        .unwrap()
        .result;
    assert_eq!(sent.text.as_deref(), Some("XAUUSD buy"));
    let id = sent.message_id;
    let edited = bot
        .edit_message_text(
            &EditMessageTextParams::builder()
                .chat_id(ALICE)
                .message_id(id)
                .text("XAUUSD buy: pending")
                .build(),
        )
        .await
        .unwrap();
    assert!(matches!(edited.result, frankenstein::response::MessageOrBool::Message(_)));
    let ReplyMarkup::InlineKeyboardMarkup(ikb) = kb else { unreachable!() };
    bot.edit_message_reply_markup(
        &EditMessageReplyMarkupParams::builder()
            .chat_id(ALICE)
            .message_id(id)
            .reply_markup(ikb)
            .build(),
    )
    .await
    .unwrap();
    tg.press(ALICE, ALICE, id, "A:1").unwrap();
    let link = bot
        .create_invoice_link(
            &CreateInvoiceLinkParams::builder()
                .title("Pro")
                .description("Pro plan")
                .payload("plan:pro")
                .currency("XTR")
                .prices(vec![LabeledPrice { label: "Pro".into(), amount: 100 }])
                .subscription_period(2_592_000)
                .build(),
        )
        .await
        .unwrap()
        .result;
    let payer = {
        let tg = tg.clone();
        let link = link.clone();
        tokio::spawn(async move { tg.pay(ALICE, &link).await })
    };
    let mut callback = None;
    let mut paid = None;
    let mut offset = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while paid.is_none() && Instant::now() < deadline {
        let mut p = GetUpdatesParams::builder().timeout(2).build();
        p.offset = offset;
        for u in bot.get_updates(&p).await.unwrap().result {
            offset = Some(i64::from(u.update_id) + 1);
            match u.content {
                UpdateContent::CallbackQuery(q) => {
                    assert_eq!(q.data.as_deref(), Some("A:1"));
                    bot.answer_callback_query(
                        &AnswerCallbackQueryParams::builder()
                            .callback_query_id(q.id.clone())
                            .text("ok")
                            .build(),
                    )
                    .await
                    .unwrap();
                    callback = Some(q);
                }
                UpdateContent::PreCheckoutQuery(q) => {
                    assert_eq!((q.currency.as_str(), q.total_amount), ("XTR", 100));
                    bot.answer_pre_checkout_query(
                        &AnswerPreCheckoutQueryParams::builder()
                            .pre_checkout_query_id(q.id)
                            .ok(true)
                            .build(),
                    )
                    .await
                    .unwrap();
                }
                UpdateContent::Message(m) if m.successful_payment.is_some() => {
                    paid = m.successful_payment
                }
                UpdateContent::Message(m) => assert_eq!(m.text.as_deref(), Some("/start")),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert!(callback.is_some());
    let paid = paid.expect("successful_payment");
    assert!(paid.subscription_expiration_date.is_some());
    assert!(matches!(payer.await.unwrap(), Ok(PayOutcome::Paid(_))));
    bot.refund_star_payment(
        &RefundStarPaymentParams::builder()
            .user_id(ALICE as u64)
            .telegram_payment_charge_id(paid.telegram_payment_charge_id)
            .build(),
    )
    .await
    .unwrap();

    let cmds = vec![BotCommand {
        command: "status".into(),
        description: "Status".into(),
        is_ephemeral: None,
    }];
    let scope = BotCommandScope::Chat(BotCommandScopeChat { chat_id: ALICE.into() });
    bot.set_my_commands(
        &SetMyCommandsParams::builder().commands(cmds.clone()).scope(scope.clone()).build(),
    )
    .await
    .unwrap();
    let got = bot
        .get_my_commands(&GetMyCommandsParams::builder().scope(scope.clone()).build())
        .await
        .unwrap()
        .result;
    assert_eq!(got, cmds);
    bot.delete_my_commands(&DeleteMyCommandsParams::builder().scope(scope).build()).await.unwrap();

    let path = std::env::temp_dir().join(format!("tgsb-{}.png", std::process::id()));
    std::fs::write(&path, png(640, 480)).unwrap();
    let photo = bot
        .send_photo(
            &SendPhotoParams::builder()
                .chat_id(ALICE)
                .photo(frankenstein::input_file::InputFile { path: path.clone() })
                .caption("chart")
                .build(),
        )
        .await
        .unwrap()
        .result;
    std::fs::remove_file(&path).unwrap();
    assert_eq!(photo.photo.unwrap()[0].width, 640);

    let chat = bot.get_chat(&GetChatParams::builder().chat_id(GROUP).build()).await.unwrap().result;
    assert_eq!(chat.title.as_deref(), Some("Signals"));
    let member = bot
        .get_chat_member(&GetChatMemberParams::builder().chat_id(GROUP).user_id(BOB as u64).build())
        .await
        .unwrap()
        .result;
    assert!(matches!(member, ChatMember::Member(_)));
    for (status, want) in [
        (MemberStatus::Creator, "creator"),
        (MemberStatus::Administrator, "administrator"),
        (MemberStatus::Left, "left"),
        (MemberStatus::Kicked, "kicked"),
    ] {
        tg.set_member(GROUP, BOB, status).unwrap();
        let m = bot
            .get_chat_member(
                &GetChatMemberParams::builder().chat_id(GROUP).user_id(BOB as u64).build(),
            )
            .await
            .unwrap()
            .result;
        let got = match m {
            ChatMember::Creator(_) => "creator",
            ChatMember::Administrator(_) => "administrator",
            ChatMember::Left(_) => "left",
            ChatMember::Kicked(_) => "kicked",
            other => panic!("{other:?}"),
        };
        assert_eq!(got, want);
    }
    let post = bot
        .send_message(
            &SendMessageParams::builder().chat_id("@gold_signals".to_owned()).text("gold").build(),
        )
        .await
        .unwrap()
        .result;
    assert_eq!(post.sender_chat.map(|c| c.id), Some(CHANNEL));
    bot.send_chat_action(
        &SendChatActionParams::builder().chat_id(ALICE).action(ChatAction::Typing).build(),
    )
    .await
    .unwrap();
    bot.delete_message(&DeleteMessageParams::builder().chat_id(ALICE).message_id(id).build())
        .await
        .unwrap();

    let (rx, url) = receiver().await;
    bot.set_webhook(&SetWebhookParams::builder().url(url.clone()).secret_token("abc").build())
        .await
        .unwrap();
    let info = bot.get_webhook_info().await.unwrap().result;
    assert_eq!(info.url, url);
    assert_eq!(info.last_error_message, None);
    tg.user_says(ALICE, "via webhook").unwrap();
    assert!(tg.settle(Duration::from_secs(5)).await);
    let body = rx.got.lock().unwrap()[0].1.clone();
    let update: frankenstein::updates::Update = serde_json::from_value(body).unwrap();
    assert!(matches!(update.content, UpdateContent::Message(_)));
    bot.delete_webhook(&DeleteWebhookParams::builder().build()).await.unwrap();

    // Errors parse too, the 429 with its retry_after.
    tg.set_limits(Limits::default());
    let send = SendMessageParams::builder().chat_id(ALICE).text("a").build();
    let _ = bot.send_message(&send).await;
    match bot.send_message(&send).await {
        Err(frankenstein::Error::Api(e)) => {
            assert_eq!(e.error_code, 429);
            assert_eq!(e.parameters.and_then(|p| p.retry_after), Some(1));
        }
        other => panic!("{other:?}"),
    }
    let bad = SendMessageParams::builder().chat_id(4242).text("a").build();
    match bot.send_message(&bad).await {
        Err(frankenstein::Error::Api(e)) => {
            assert_eq!(e.description, "Bad Request: chat not found")
        }
        other => panic!("{other:?}"),
    }
}

/// A `t.me/<bot>?startapp=` link opens the bot's Main Mini App with the start parameter in the
/// signed launch data, in the fragment as Telegram's clients hand it over; Telegram would not
/// open another bot's link, a bad parameter, or a bot without a Mini App.
#[tokio::test]
async fn mini_app_links_open_the_main_mini_app_with_the_start_parameter() {
    let tg = default_standin().await;
    let link = format!("https://t.me/{}?startapp=approve_0123abcd", tg.bot_username());
    let theme = json!({"bg_color": "#ffffff"});
    assert_eq!(tg.open_mini_app_link(ALICE, &link, &theme), Err(WorldError::NoMiniApp));
    assert!(tg.set_main_mini_app("http://hub.example.com/miniapp").is_err(), "https only");
    tg.set_main_mini_app("http://127.0.0.1:8080/miniapp").unwrap();
    let launch = tg.open_mini_app_link(ALICE, &link, &theme).unwrap();
    let (app, fragment) = launch.split_once('#').unwrap();
    assert_eq!(app, "http://127.0.0.1:8080/miniapp");
    let params: std::collections::BTreeMap<String, String> =
        form_urlencoded::parse(fragment.as_bytes()).into_owned().collect();
    assert_eq!(params["tgWebAppStartParam"], "approve_0123abcd");
    assert_eq!(params["tgWebAppThemeParams"], theme.to_string());
    let init: std::collections::BTreeMap<String, String> =
        form_urlencoded::parse(params["tgWebAppData"].as_bytes()).into_owned().collect();
    assert_eq!(init["start_param"], "approve_0123abcd");
    assert!(init["user"].contains("\"id\":1001"), "{}", init["user"]);
    assert!(init.contains_key("hash") && init.contains_key("signature"));
    for bad in [
        "https://t.me/another_bot?startapp=approve_0123abcd".to_owned(),
        format!("https://t.me/{}?startapp=approve%200123", tg.bot_username()),
        format!("https://t.me/{}?startapp=", tg.bot_username()),
        format!("https://t.me/{}?start=approve_0123abcd", tg.bot_username()),
        format!("http://t.me/{}?startapp=approve_0123abcd", tg.bot_username()),
    ] {
        assert!(
            matches!(tg.open_mini_app_link(ALICE, &bad, &theme), Err(WorldError::BadLink(_))),
            "{bad}"
        );
    }
    assert_eq!(tg.open_mini_app_link(77, &link, &theme), Err(WorldError::UnknownUser(77)));
}

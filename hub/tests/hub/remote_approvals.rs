//! Remote approvals end to end at the hub, against the strict Bot API stand-in: a node's signed
//! `Pending` (committed through the sync store, as a QUIC session commits it) makes the bot post
//! the signal with Approve / Reject buttons and lot presets; a press signs an `ApprovalRequest`
//! with the hub's identity into the device's inbox; the node's signed `RequestAnswer` edits the
//! message. Presses by someone else, after the expiry and twice change nothing. The Mini App
//! sends the same request (channel `mini_app`) and shows the node's answer.
//!
//! The node's records are signed by a real node identity enrolled on the hub (the node side that
//! emits `Pending` and answers requests is the node's own; here its records are made by hand).

use std::str::FromStr;
use std::time::Duration;

use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tradecast_protocol::{
    AnswerOutcome, Approval, Body, ChainHash, DecidedBy, Decision, HeaderFields, Identity, Kind,
    Pending, Record, RefusalReason, RemoteDecision, RequestAnswer, RequestId, RiskPreview,
    SignalId, StreamId,
};
use tradecast_standins::telegram::{ChatMessage, TelegramStandin, TelegramStandinConfig};

use crate::helpers::{Backend, TestHub, post_signal, provider_kit, signal};
use crate::miniapp::{csrf_in, hub_with_miniapp, link, mini, session};
use crate::on_both;

on_both!(telegram_button_approves_through_the_node, miniapp_approves_with_another_size);

const WAIT: Duration = Duration::from_secs(15);
const SECRET: &str = "tg-hook-secret";

/// A node's shared stream, signed record by record.
struct NodeStream<'a> {
    identity: &'a Identity,
    seq: u64,
    prev: ChainHash,
}

impl<'a> NodeStream<'a> {
    fn new(identity: &'a Identity) -> NodeStream<'a> {
        NodeStream { identity, seq: 0, prev: ChainHash::GENESIS }
    }

    fn sign(&mut self, body: &Body, now_ms: i64) -> Record {
        self.seq += 1;
        let fields = HeaderFields {
            stream: StreamId::SHARED,
            seq: self.seq,
            prev_hash: self.prev,
            created_at_ms: now_ms,
        };
        let r = Record::sign(self.identity, fields, body);
        self.prev = r.header_hash();
        r
    }

    /// Signs `body` and commits it as the sync session does.
    async fn commit(&mut self, hub: &TestHub, body: Body) -> Record {
        let now = hub.clock.now_ms();
        let r = self.sign(&body, now);
        tradecast_hub::quic::store::commit(&hub.db, &hub.state().hub_identity, &r, now)
            .await
            .unwrap();
        r
    }
}

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn pending(node: &Identity, signal_id: SignalId, now: i64, expires_in_ms: i64) -> Body {
    Body::Pending(Pending {
        signal_id,
        device: node.device_id(),
        expires_at_ms: now + expires_in_ms,
        min_lots: d("0.01"),
        max_lots: d("0.50"),
        risk_preview: Some(RiskPreview {
            lots: d("0.10"),
            risk_money: d("12.50"),
            risk_percent: d("1.25"),
            currency: "USD".into(),
        }),
        blocking: vec![],
        at_ms: now,
    })
}

/// The hub-signed `ApprovalRequest`s in `device`'s inbox, each verified with the hub's key.
async fn inbox_requests(hub: &TestHub, device: &str) -> Vec<tradecast_protocol::ApprovalRequest> {
    let hub_key = hub.state().hub_identity.identity_key();
    let items = tradecast_hub::feed::items(&hub.db, device, 1, 1000).await.unwrap();
    items
        .into_iter()
        .filter(|i| i.record.header().kind == Kind::ApprovalRequest)
        .map(|i| {
            i.record.verify(&hub_key).expect("signed by the hub's identity");
            assert_eq!(i.record.header().author, hub.state().hub_identity.device_id());
            assert_eq!(i.record.header().stream, StreamId::HUB_REQUESTS);
            match i.record.body().unwrap() {
                Body::ApprovalRequest(r) => r,
                other => panic!("not a request: {other:?}"),
            }
        })
        .collect()
}

async fn message_with(sb: &TelegramStandin, chat: i64, needle: &str) -> ChatMessage {
    let n = needle.to_string();
    sb.wait_for_message(chat, move |m| m.text.as_deref().is_some_and(|t| t.contains(&n)), WAIT)
        .await
        .unwrap_or_else(|| panic!("no message with {needle:?}: {:#?}", sb.messages_to(chat)))
}

/// The `callback_data` of the button whose label contains `label`.
fn button(m: &ChatMessage, label: &str) -> String {
    let rows = m.reply_markup.as_ref().and_then(|k| k["inline_keyboard"].as_array()).unwrap();
    rows.iter()
        .flat_map(|r| r.as_array().unwrap())
        .find(|b| b["text"].as_str().unwrap().contains(label))
        .unwrap_or_else(|| panic!("no button {label:?} in {rows:?}"))["callback_data"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Waits until the bot answered `n` presses; their texts in order.
async fn answers(sb: &TelegramStandin, n: usize) -> Vec<String> {
    for _ in 0..300 {
        let a = sb.answered_callbacks();
        if a.len() >= n {
            return a.iter().map(|c| c.text.clone().unwrap_or_default()).collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{n} answers expected: {:?}", sb.answered_callbacks());
}

/// Delivers a hand-made `callback_query` update to the webhook (a press the stand-in's world
/// cannot make: someone else pressing the trader's private message).
async fn forged_press(hub: &TestHub, update_id: i64, from: i64, chat: i64, mid: i32, data: &str) {
    let update = json!({
        "update_id": update_id,
        "callback_query": {
            "id": format!("forged{update_id}"),
            "from": { "id": from, "is_bot": false, "first_name": "Mallory" },
            "chat_instance": "1",
            "data": data,
            "message": { "message_id": mid, "date": 1, "chat": { "id": chat, "type": "private" }, "text": "x" },
        },
    });
    let r = hub
        .http
        .post(hub.url("/api/v1/telegram/webhook"))
        .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

async fn answer_payloads(hub: &TestHub) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT payload FROM outbox WHERE kind = 'telegram.answerCallbackQuery' ORDER BY seq",
    )
    .fetch_all(hub.db.pool())
    .await
    .unwrap()
}

async fn telegram_button_approves_through_the_node(b: Backend) {
    let sb = TelegramStandin::start(TelegramStandinConfig::default()).await.unwrap();
    let hub = hub_with_miniapp(b, &sb).await;
    let owner = hub.owner().await;
    let kit = provider_kit(&hub, &owner).await;
    let alice = hub.user(&owner, "subscriber").await;
    let bob = hub.user(&owner, "subscriber").await;
    link(&hub, &sb, &alice, 501).await;
    link(&hub, &sb, &bob, 502).await;
    let (node, node_id) = hub.enrol(&alice, "alice-pc").await;
    let mut stream = NodeStream::new(&node);
    let s = signal(&kit.identity, hub.clock.now_ms());
    post_signal(&hub, &kit, &s, 1).await.1.ok(201);

    // The bot learnt its username from getMe (its approval posts link to the Mini App).
    let known = async {
        loop {
            let name =
                tradecast_hub::telegram::state_get(&hub.db, tradecast_hub::telegram::USERNAME_KEY);
            if name.await.unwrap().is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), known).await.expect("getMe");
    // The node's Pending, committed as sync commits it: the bot posts it with buttons.
    let now = hub.clock.now_ms();
    stream.commit(&hub, pending(&node, s.id, now, 10 * 60_000)).await;
    let post = message_with(&sb, 501, "Signal waiting for your decision").await;
    // And a link that opens the bot's Mini App on this signal (`startapp=approve_<signal>`).
    let link = format!("https://t.me/{}?startapp=approve_{}", sb.bot_username(), s.id.to_hex());
    assert_eq!(post.url_buttons(), vec![("📱 Open in the app".to_owned(), link)]);
    let text = post.text.clone().unwrap();
    assert!(text.contains("Lots your rules allow: 0.01 – 0.5"), "{text}");
    assert!(text.contains("Risk at 0.1 lots: 12.50 USD (1.25 % of equity)"), "{text}");
    assert!(text.contains("alice-pc"), "{text}");
    let data = post.callback_data();
    assert_eq!(data.len(), 5, "approve, three presets, reject: {data:?}");
    for d in &data {
        assert_eq!(d.len(), 33, "one action byte and 16 random bytes in hex: {d}");
    }
    let approve_min = button(&post, "0.01 lots");
    let reject = button(&post, "Reject");
    // The same Pending signed again (the node restarted) posts nothing more.
    stream.commit(&hub, pending(&node, s.id, now, 10 * 60_000)).await;

    // Someone else pressing the trader's button: refused, nothing sent.
    forged_press(&hub, 900_001, 502, 501, post.message_id, &approve_min).await;
    assert!(inbox_requests(&hub, &node_id).await.is_empty());
    let refused = answer_payloads(&hub).await;
    assert!(refused.last().unwrap().contains("Only the trader"), "{refused:?}");

    // The trader presses twice at once (0.01 lots, then Reject): one request, one refusal.
    sb.press(501, 501, post.message_id, &approve_min).unwrap();
    sb.press(501, 501, post.message_id, &reject).unwrap();
    let texts = answers(&sb, 2).await;
    assert_eq!(texts.iter().filter(|t| t.starts_with("Sent to your app")).count(), 1, "{texts:?}");
    assert_eq!(texts.iter().filter(|t| t.starts_with("Already decided")).count(), 1, "{texts:?}");
    let requests = inbox_requests(&hub, &node_id).await;
    assert_eq!(requests.len(), 1, "{requests:?}");
    let req = &requests[0];
    assert_eq!(req.signal_id, s.id);
    assert_eq!(req.device, node.device_id());
    assert_eq!(req.channel, tradecast_protocol::Channel::Telegram);
    assert_eq!(req.telegram_user_id, Some(501));
    assert_eq!(req.expires_at_ms, now + 10 * 60_000);
    // Which press won depends on the order Telegram delivered them in.
    let won = sb.answered_callbacks();
    let won = won.iter().find(|c| c.text.as_deref().unwrap_or("").starts_with("Sent")).unwrap();
    let first_won = won.data == approve_min;
    if first_won {
        assert_eq!((req.decision, req.lots), (RemoteDecision::Approved, Some(d("0.01"))));
    } else {
        assert_eq!((req.decision, req.lots), (RemoteDecision::Rejected, None));
    }
    // The message lost its buttons and says what was sent.
    let waiting = message_with(&sb, 501, "waiting for its answer").await;
    assert!(waiting.callback_data().is_empty());
    assert!(waiting.text.as_deref().unwrap().contains("by @alice"));
    // The request is stored, unconsumed, with its lots and who pressed.
    let open =
        hub.get(&format!("/api/v1/devices/{node_id}/approval-requests"), Some(&alice.token)).await;
    let open = open.ok(200).as_array().unwrap().clone();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["telegram_user_id"], 501);
    assert_eq!(open[0]["channel"], "telegram");

    // The node answers (signed RequestAnswer and Approval on its shared stream): the message
    // says what it did, and the request is consumed.
    let at = hub.clock.now_ms();
    stream
        .commit(
            &hub,
            Body::RequestAnswer(RequestAnswer {
                request_id: req.request_id,
                signal_id: s.id,
                device: node.device_id(),
                outcome: AnswerOutcome::Applied,
                at_ms: at,
            }),
        )
        .await;
    stream
        .commit(
            &hub,
            Body::Approval(Approval {
                signal_id: s.id,
                device: node.device_id(),
                decision: if first_won { Decision::Approved } else { Decision::Rejected },
                decided_by: DecidedBy::Remote { request_id: req.request_id },
                consent_version: 3,
                reason: String::new(),
                decided_at_ms: at,
                lots: req.lots,
            }),
        )
        .await;
    let done = message_with(&sb, 501, "Applied").await;
    assert!(done.text.as_deref().unwrap().contains("your app did it"), "{:?}", done.text);
    assert!(done.edits.len() >= 2, "edited on the press and on the answer");
    let open =
        hub.get(&format!("/api/v1/devices/{node_id}/approval-requests"), Some(&alice.token)).await;
    assert!(open.ok(200).as_array().unwrap().is_empty());
    let stored = tradecast_hub::approvals::request_by_id(&hub.db, &req.request_id.to_hex())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.outcome.as_deref(), Some("applied"));
    // An answer naming a request this hub never made changes nothing.
    stream
        .commit(
            &hub,
            Body::RequestAnswer(RequestAnswer {
                request_id: RequestId([3; 16]),
                signal_id: s.id,
                device: node.device_id(),
                outcome: AnswerOutcome::Refused(RefusalReason::Risk),
                at_ms: at,
            }),
        )
        .await;

    // A second signal whose decision time passes before the press: refused, nothing sent.
    let s2 = signal(&kit.identity, hub.clock.now_ms());
    post_signal(&hub, &kit, &s2, 2).await.1.ok(201);
    stream.commit(&hub, pending(&node, s2.id, hub.clock.now_ms(), 30_000)).await;
    let posts = |sb: &TelegramStandin| {
        sb.messages_to(501)
            .into_iter()
            .filter(|m| {
                m.text.as_deref().unwrap_or("").contains("Signal waiting")
                    && !m.callback_data().is_empty()
            })
            .collect::<Vec<_>>()
    };
    for _ in 0..300 {
        if !posts(&sb).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let late = posts(&sb).pop().expect("the second signal's message");
    let all_posts = sb
        .messages_to(501)
        .into_iter()
        .filter(|m| m.text.as_deref().unwrap_or("").contains("Signal waiting"))
        .count();
    assert_eq!(all_posts, 2, "one message per pending signal");
    hub.clock.advance_ms(60_000);
    forged_press(&hub, 900_003, 501, 501, late.message_id, &button(&late, "Approve 0.1")).await;
    let refused = answer_payloads(&hub).await;
    // (The expiry job may have closed the message a moment before the press: refused too.)
    let last = refused.last().unwrap();
    assert!(last.contains("Too late") || last.contains("Already decided"), "{refused:?}");
    assert_eq!(inbox_requests(&hub, &node_id).await.len(), 1);
    // The expiry job closes the message: its buttons go, it says time is up.
    tradecast_hub::telegram::approve::close_expired(hub.state()).await.unwrap();
    let expired = message_with(&sb, 501, "Time is up").await;
    assert_eq!(expired.message_id, late.message_id);
    assert!(expired.callback_data().is_empty());

    // A third signal the trader decides in the app itself: the message is closed (its id was
    // learnt from sendMessage's answer), and a press on it afterwards sends nothing.
    let s3 = signal(&kit.identity, hub.clock.now_ms());
    post_signal(&hub, &kit, &s3, 3).await.1.ok(201);
    stream.commit(&hub, pending(&node, s3.id, hub.clock.now_ms(), 10 * 60_000)).await;
    let mut third = None;
    for _ in 0..300 {
        third = posts(&sb).into_iter().find(|m| m.message_id != late.message_id);
        let known: Option<i64> = sqlx::query_scalar(
            "SELECT message_id FROM telegram_approval_posts WHERE signal_id = $1",
        )
        .bind(s3.id.to_hex())
        .fetch_one(hub.db.pool())
        .await
        .unwrap();
        if third.is_some() && known.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let third = third.expect("the third signal's message");
    let reject3 = button(&third, "Reject");
    stream
        .commit(
            &hub,
            Body::Approval(Approval {
                signal_id: s3.id,
                device: node.device_id(),
                decision: Decision::Rejected,
                decided_by: DecidedBy::Trader("alice".into()),
                consent_version: 3,
                reason: String::new(),
                decided_at_ms: hub.clock.now_ms(),
                lots: None,
            }),
        )
        .await;
    let closed = message_with(&sb, 501, "Decided in your app: rejected").await;
    assert_eq!(closed.message_id, third.message_id);
    assert!(closed.callback_data().is_empty());
    forged_press(&hub, 900_002, 501, 501, third.message_id, &reject3).await;
    let refused = answer_payloads(&hub).await;
    assert!(refused.last().unwrap().contains("Already decided"), "{refused:?}");
    assert_eq!(inbox_requests(&hub, &node_id).await.len(), 1);

    // The stand-in found no bad call (the forged presses' answers aside: their ids are unknown
    // to it).
    let bad: Vec<_> = sb
        .calls()
        .into_iter()
        // (A 429 is Telegram's flood answer, retried by the outbox after `retry_after`.)
        .filter(|c| ![200, 429].contains(&c.status) && c.method != "answerCallbackQuery")
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
    let audit = hub.get("/api/v1/audit?action=approval.request", Some(&owner.token)).await;
    let audit = audit.ok(200).as_array().unwrap().clone();
    assert_eq!(audit.len(), 1);
    let detail: Value = serde_json::from_str(audit[0]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["telegram_user_id"], 501);
    assert_eq!(detail["channel"], "telegram");
    let _ = bob;
}

async fn miniapp_approves_with_another_size(b: Backend) {
    let sb = TelegramStandin::start(TelegramStandinConfig::default()).await.unwrap();
    let hub = hub_with_miniapp(b, &sb).await;
    let owner = hub.owner().await;
    let kit = provider_kit(&hub, &owner).await;
    let alice = hub.user(&owner, "subscriber").await;
    link(&hub, &sb, &alice, 601).await;
    // Her plan includes the Mini App.
    let app = crate::miniapp::features_plan(&hub, &owner, &["signals", "mini_app"]).await;
    crate::miniapp::grant(&hub, &owner, &alice.user_id, &app).await;
    let (node, node_id) = hub.enrol(&alice, "alice-pc").await;
    let mut stream = NodeStream::new(&node);
    let s = signal(&kit.identity, hub.clock.now_ms());
    post_signal(&hub, &kit, &s, 1).await.1.ok(201);
    let now = hub.clock.now_ms();
    stream.commit(&hub, pending(&node, s.id, now, 10 * 60_000)).await;

    let sess = session(&hub, &sb, 601).await;
    let token = sess["token"].as_str().unwrap();
    let path = format!("/miniapp/app/approvals?signal={}", s.id.to_hex());
    let view = mini(&hub, "GET", &path, Some(token), None, None).await;
    assert_eq!(view.status, StatusCode::OK, "{}", view.text);
    for needle in
        ["Waiting for you", "0.01 – 0.5", "12.50 USD", "data-action=\"decide\"", "data-expires="]
    {
        assert!(view.text.contains(needle), "{needle}: {}", view.text);
    }
    // The setup's picture, inline: the signal is not public yet (inside the delay), but this
    // user's device waits on it.
    let img = view.text.split("<img class=\"setup\" src=\"data:image/png;base64,").nth(1);
    let b64 = img.and_then(|t| t.split('"').next()).expect("the setup picture");
    let png = data_encoding::BASE64.decode(b64.as_bytes()).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let public = format!("/public/v1/signals/{}/setup.png", s.id.to_hex());
    hub.get(&public, None).await.problem(404, "not-found");
    let csrf = csrf_in(&view);
    let form = |lots: &str| {
        format!(
            "signal_id={}&device_id={}&decision=approved&lots={lots}",
            s.id.to_hex(),
            node_id.replace(':', "%3A")
        )
    };
    // Without the CSRF token, or outside the node's range: refused, nothing sent.
    mini(&hub, "POST", "/miniapp/app/decide", Some(token), None, Some(&form("0.2")))
        .await
        .problem(403, "forbidden");
    mini(&hub, "POST", "/miniapp/app/decide", Some(token), Some(&csrf), Some(&form("0.75")))
        .await
        .problem(422, "validation");
    assert!(inbox_requests(&hub, &node_id).await.is_empty());
    // Another size within the range.
    let r = mini(&hub, "POST", "/miniapp/app/decide", Some(token), Some(&csrf), Some(&form("0.2")))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["request"]["lots"], "0.2");
    let requests = inbox_requests(&hub, &node_id).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].channel, tradecast_protocol::Channel::MiniApp);
    assert_eq!(requests[0].lots, Some(d("0.2")));
    assert_eq!(requests[0].telegram_user_id, Some(601));
    let view = mini(&hub, "GET", &path, Some(token), None, None).await;
    assert!(view.text.contains("Waiting for its answer"), "{}", view.text);
    // The app follows the view's changes live (server-sent events over the bearer session).
    let mut events = hub
        .http
        .get(hub.url("/miniapp/app/approvals/events"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    assert!(events.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));

    // The node refuses it (the price moved): the stream says the view changed, and it says so.
    stream
        .commit(
            &hub,
            Body::RequestAnswer(RequestAnswer {
                request_id: requests[0].request_id,
                signal_id: s.id,
                device: node.device_id(),
                outcome: AnswerOutcome::Refused(RefusalReason::PriceMoved),
                at_ms: hub.clock.now_ms(),
            }),
        )
        .await;
    let changed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let chunk = events.chunk().await.unwrap().expect("the stream stays open");
            let text = String::from_utf8_lossy(&chunk).to_string();
            if text.contains("event: change") {
                break text;
            }
        }
    })
    .await
    .expect("a change event within 10 s");
    // The event names the view's new state; the view rendered now carries the same.
    let announced =
        changed.lines().find_map(|l| l.strip_prefix("data: ")).expect("the new state").to_string();
    let view = mini(&hub, "GET", &path, Some(token), None, None).await;
    assert!(view.text.contains(&format!("data-live-state=\"{announced}\"")), "{}", view.text);
    assert!(
        view.text.contains("Refused by your app (approve 0.2 lots): the price moved"),
        "{}",
        view.text
    );

    // The API path makes the same signed request; another account's device is refused.
    let bob = hub.user(&owner, "subscriber").await;
    let body: Value = json!({ "signal_id": s.id.to_hex(), "device_id": node_id, "decision": "rejected", "channel": "web" });
    hub.post("/api/v1/approval-requests", Some(&bob.token), body.clone())
        .await
        .problem(403, "device-refused");
    let r = hub.post("/api/v1/approval-requests", Some(&alice.token), body).await;
    assert_eq!(r.ok(201)["expires_at_ms"], now + 10 * 60_000);
    assert_eq!(inbox_requests(&hub, &node_id).await.len(), 2);
}

//! Issue 18, the export half: the trader's closed trades, from deals the EA pushed over the
//! real link, downloaded from the History page (`/history/export.csv|json`, behind the UI's
//! session) and from the local API (`/api/v1/trades?format=csv|json`, the bearer token): the
//! files and their headers, the broker-day filter, typed 400s for a bad query, what the JSON
//! leaves out, and a store that fails answered as a failure, never an empty file.

use rust_decimal::Decimal;
use tradecast_protocol::ea::{self, Call};

use super::{Link, deal, state};

/// Monday 2026-03-02 08:00 UTC.
const T0: i64 = 1_772_438_400_000;
const MIN: i64 = 60_000;

fn d(s: &str) -> Decimal {
    s.parse().expect("decimal literal")
}

/// A EURUSD trade deal at `T0 + minute` minutes: `(lots, price)`, `(commission, profit)`.
fn trade(
    ticket: u64,
    position: u64,
    (kind, entry): (ea::DealKind, ea::DealEntry),
    (lots, price): (&str, &str),
    minute: i64,
    (commission, profit): (&str, &str),
) -> ea::Deal {
    ea::Deal {
        position_id: position,
        symbol: "EURUSD".into(),
        volume: d(lots),
        price: d(price),
        commission: d(commission),
        swap: d("0.00"),
        profit: d(profit),
        fee: d("0.00"),
        ..deal(ticket, kind, entry, T0 + minute * MIN)
    }
}

/// The UTC days a download made now may be named for (the test may cross midnight).
fn today() -> [String; 2] {
    let now = jiff::Timestamp::now();
    let later = now.checked_add(jiff::SignedDuration::from_secs(60)).unwrap_or(now);
    [now.strftime("%Y-%m-%d").to_string(), later.strftime("%Y-%m-%d").to_string()]
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
}

fn assert_attachment(r: &reqwest::Response, ext: &str) {
    let disposition = header(r, "content-disposition");
    assert!(
        today()
            .iter()
            .any(|day| disposition
                == format!("attachment; filename=\"tradecast-trades-{day}.{ext}\"")),
        "{disposition}"
    );
}

async fn assert_problem(r: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(r.status(), status);
    assert_eq!(header(&r, "content-type"), "application/problem+json");
    let p: serde_json::Value = r.json().await.expect("problem json");
    assert_eq!(p["code"], code, "{p}");
    assert_eq!(p["status"], status, "{p}");
    p
}

const ROW_1: &str = "03/02/2026 11:00,03/02/2026 13:30,EURUSD,Buy,0.10,,,1.08500,1.08750,-0.70,\
0.00,25.0,25.00,0.24,00:02:30:00";
const ROW_2: &str = "03/03/2026 10:00,03/03/2026 10:30,EURUSD,Sell,0.20,,,1.09000,1.09100,-1.40,\
0.00,-10.0,-20.00,-0.21,00:00:30:00";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_trades_download_from_the_history_page_and_the_api() {
    let mut link = Link::start().await;
    link.offset_s = 7_200;
    let h = link.hello(T0).await;
    let s = &h.session_id;
    let _: ea::StateAnswer = link.call(Call::State, &state(s, T0, 10_000, 10_000, vec![])).await;
    use ea::DealEntry::{In, Out};
    use ea::DealKind::{Buy, Sell};
    let deals = vec![
        trade(1, 501, (Buy, In), ("0.10", "1.08500"), 60, ("-0.35", "0.00")),
        trade(2, 501, (Sell, Out), ("0.10", "1.08750"), 210, ("-0.35", "25.00")),
        trade(3, 502, (Sell, In), ("0.20", "1.09000"), 1_440, ("-0.70", "0.00")),
        trade(4, 502, (Buy, Out), ("0.20", "1.09100"), 1_470, ("-0.70", "-20.00")),
        // Still open: not a closed trade.
        trade(5, 503, (Buy, In), ("0.10", "1.09100"), 1_480, ("-0.35", "0.00")),
        // A close whose opening the node never saw: left out of the file and of the page.
        trade(6, 499, (Sell, Out), ("0.10", "1.08000"), 30, ("-0.35", "-5.00")),
    ];
    let push = ea::Deals { session_id: s.clone(), from_ms: 0, deals };
    let _: ea::DealsAnswer = link.call(Call::Deals, &push).await;

    let api = link.running.api_addr;
    let token = std::fs::read_to_string(link._dir.path().join("api-token")).expect("token");
    let token = token.trim().to_owned();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let api_get = |query: &str| {
        client.get(format!("http://{api}/api/v1/trades{query}")).bearer_auth(&token).send()
    };

    // The API: the token is required.
    let r = client.get(format!("http://{api}/api/v1/trades")).send().await.expect("api");
    assert_problem(r, 401, "unauthorized").await;

    // The Myfxbook CSV: the header, a row per closed trade in server time, CRLF.
    let r = api_get("?format=csv").await.expect("csv");
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/csv; charset=utf-8");
    assert_attachment(&r, "csv");
    let csv = r.text().await.expect("body");
    let want = format!(
        "Open Date,Close Date,Symbol,Action,Lots,SL,TP,Open Price,Close Price,Commission,Swap,\
         Pips,Profit,Gain,Duration (DD:HH:MM:SS)\r\n{ROW_1}\r\n{ROW_2}\r\n"
    );
    assert_eq!(csv, want);

    // The JSON (the default format): the account is its currency and server, nothing more.
    let r = api_get("").await.expect("json");
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "application/json");
    assert_attachment(&r, "json");
    let text = r.text().await.expect("body");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["format"], "tradecast-trades/v1");
    assert_eq!(v["account"], serde_json::json!({"currency": "USD", "server": "Test-Server"}));
    let trades = v["trades"].as_array().expect("trades");
    assert_eq!(trades.len(), 2, "{text}");
    assert_eq!(trades[0]["open_time"], "2026-03-02T09:00:00Z");
    assert_eq!(trades[0]["commission"], "-0.70");
    assert_eq!(trades[0]["net"], "24.30");
    for secret in ["42@", "\"login\"", link.key_id.as_str(), "Test\""] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }

    // Closes on broker server days (UTC+2 here); a bad day or format is a typed 400.
    let r = api_get("?format=csv&from=2026-03-03&to=2026-03-03").await.expect("csv");
    assert_eq!(r.text().await.expect("body").lines().skip(1).collect::<Vec<_>>(), [ROW_2]);
    let p =
        assert_problem(api_get("?from=2026-02-30").await.expect("api"), 400, "invalid-date").await;
    assert_eq!(p["detail"], "from: `2026-02-30` is not a date (YYYY-MM-DD)");
    assert_problem(
        api_get("?from=2026-03-03&to=2026-03-02").await.expect("api"),
        400,
        "invalid-date",
    )
    .await;
    assert_problem(api_get("?format=xlsx").await.expect("api"), 400, "invalid-format").await;
    assert_problem(api_get("?account=7@Nowhere").await.expect("api"), 422, "refused").await;

    // The UI: behind the session.
    let r = client.get(format!("http://{api}/history/export.csv")).send().await.expect("ui");
    assert_eq!(r.status(), 401);
    let login =
        client.get(format!("http://{api}/login?token={token}")).send().await.expect("login");
    let cookie = header(&login, "set-cookie").split(';').next().expect("cookie").to_owned();
    let ui_get = |path: &str| {
        client.get(format!("http://{api}{path}")).header(reqwest::header::COOKIE, &cookie).send()
    };
    let page = ui_get("/history").await.expect("history").text().await.expect("body");
    let csv_link = r#"<a id="export-csv" href="/history/export.csv" download>"#;
    assert!(page.contains(csv_link), "{page}");
    assert!(page.contains(">Download for Myfxbook &amp; journals (CSV)</a>"), "{page}");
    assert!(page.contains(r#"href="/history/export.json" download>Download (JSON)</a>"#), "{page}");
    // The page's trades are the file's: each close with its opening's costs (24.30 = 25.00 −
    // 0.35 − 0.35; −21.40 = −20.00 − 0.70 − 0.70), the symbol's net 2.90; the close whose
    // opening the node never saw is not counted, and the page says so.
    for want in ["24.30 USD", "-21.40 USD", "2.90 USD", "1.08500 → 1.08750", "id=\"left-out\""] {
        assert!(page.contains(want), "{want}: {page}");
    }
    assert!(!page.contains("-5.35 USD"), "{page}");

    let r = ui_get("/history/export.csv").await.expect("csv");
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/csv; charset=utf-8");
    assert_eq!(header(&r, "cache-control"), "no-store");
    assert_attachment(&r, "csv");
    assert_eq!(r.text().await.expect("body"), want, "the API's file");
    let r = ui_get("/history/export.json?from=2026-03-03").await.expect("json");
    assert_eq!(r.status(), 200);
    assert_attachment(&r, "json");
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["trades"].as_array().map(Vec::len), Some(1));
    let p = assert_problem(
        ui_get("/history/export.json?to=03/03/2026").await.expect("ui"),
        400,
        "invalid-date",
    )
    .await;
    assert_eq!(p["detail"], "to: `03/03/2026` is not a date (YYYY-MM-DD)");

    // A deal row that no longer decodes: a failure, never an empty file.
    let node = link.running.node.clone();
    node.store()
        .write(|tx| tx.put_deal("42@Test-Server", 999, &"not a deal"))
        .expect("write a bad row");
    assert_problem(api_get("?format=csv").await.expect("api"), 500, "internal").await;
    for path in ["/history/export.csv", "/history/export.json"] {
        let r = ui_get(path).await.expect("ui");
        assert_eq!(r.status(), 500, "{path}");
        let body = r.text().await.expect("body");
        assert!(body.contains("The node could not read its store"), "{path}: {body}");
    }
    link.shutdown.trigger();
}

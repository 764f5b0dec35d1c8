//! The public track record (issue 18) on both backends: a provider's chain arrives through both
//! doors (signals posted to the signals API, modifications and closes committed by the sync
//! store the QUIC session calls), and the page, the JSON API and the export show the figures
//! computed here by hand; the export verifies offline (library and `tradecast-hub verify`), and
//! tampering with it fails; nothing newer than `public.delay_s` is public.

use rust_decimal::Decimal;
use serde_json::Value;
use tradecast_hub::quic::store;
use tradecast_protocol::track::{self, ExportError, TrackExport};
use tradecast_protocol::{
    Body, ChainHash, Close, EntryKind, HeaderFields, Identity, Modify, Receipt, Record, Side,
    Signal, SignalId, StreamId, Timeframe,
};

use crate::helpers::{Backend, ProviderKit, TestHub, nonce, post_signal_raw, provider_kit};
use crate::on_both;

on_both!(track_record_page_api_export_and_delay);

const MINUTE: i64 = 60_000;

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// The provider's node: its chain's tip, and how records reach the hub.
pub(crate) struct Node<'a> {
    pub(crate) hub: &'a TestHub,
    pub(crate) kit: &'a ProviderKit,
    pub(crate) seq: u64,
    pub(crate) prev: ChainHash,
}

impl Node<'_> {
    fn sign(&mut self, body: &Body) -> Record {
        self.seq += 1;
        let fields = HeaderFields {
            stream: StreamId::SIGNALS,
            seq: self.seq,
            prev_hash: self.prev,
            created_at_ms: self.hub.clock.now_ms(),
        };
        let record = Record::sign(&self.kit.identity, fields, body);
        self.prev = record.header_hash();
        record
    }

    /// A signal through the signals API (HMAC-signed POST).
    pub(crate) async fn post_signal(&mut self, signal: &Signal) -> Record {
        let record = self.sign(&Body::Signal(signal.clone()));
        let body = serde_json::to_vec(
            &serde_json::json!({ "record": crate::helpers::b64(&record.encode()) }),
        )
        .unwrap();
        let now = self.hub.clock.now_ms();
        let r = post_signal_raw(self.hub, &self.kit.key_id, &self.kit.secret, body, now, &nonce())
            .await;
        r.ok(201);
        record
    }

    /// A modification or close through the sync store (what the QUIC session commits).
    pub(crate) async fn sync(&mut self, body: Body) -> Record {
        let record = self.sign(&body);
        let state = self.hub.state();
        store::commit(&state.db, &state.hub_identity, &record, self.hub.clock.now_ms())
            .await
            .unwrap();
        record
    }

    pub(crate) async fn close(&mut self, id: SignalId, fraction: &str, price: &str) -> Record {
        let body = Body::Close(Close {
            signal_id: id,
            fraction: d(fraction),
            price: Some(d(price)),
            reason: "test".into(),
            at_ms: self.hub.clock.now_ms(),
        });
        self.sync(body).await
    }
}

pub(crate) fn new_signal(
    kit: &ProviderKit,
    now: i64,
    symbol: &str,
    side: Side,
    prices: [&str; 3],
) -> Signal {
    Signal {
        id: SignalId(tradecast_hub::ids::random_bytes(16).try_into().unwrap()),
        provider: kit.identity.device_id(),
        strategy_id: "fib-rsi".into(),
        strategy_version: 1,
        symbol: symbol.into(),
        timeframe: Timeframe::H1,
        side,
        entry_kind: EntryKind::Market,
        entry: d(prices[0]),
        stop: d(prices[1]),
        tp1: d(prices[2]),
        tp2: None,
        bar_time_ms: now - 3_600_000,
        expires_at_ms: now + 600_000,
        leg: 1,
        indicators: vec![],
        rr: d("2"),
    }
}

/// Runs the verifier binary of the hub on `bytes`: (exit code, stdout).
fn hub_verify(bytes: &[u8]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("track.json");
    std::fs::write(&file, bytes).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tradecast-hub"))
        .arg("verify")
        .arg(&file)
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn track_record_page_api_export_and_delay(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let owner = hub.owner().await;
    let kit = provider_kit(&hub, &owner).await;
    let delay_ms = i64::try_from(hub.state().config.public.delay_s).unwrap() * 1000;
    assert_eq!(delay_ms, 3_600_000, "the default delay is an hour");
    let mut node = Node { hub: &hub, kit: &kit, seq: 0, prev: ChainHash::GENESIS };

    // A: buy EURUSD at 1.1000, stop 1.0950 (risk 0.0050), stop moved, closed at 1.1100: +2 R.
    let now = hub.clock.now_ms();
    let a = new_signal(&kit, now, "EURUSD", Side::Buy, ["1.1000", "1.0950", "1.1100"]);
    let a_rec = node.post_signal(&a).await;
    hub.clock.advance_ms(10 * MINUTE);
    let modify = Body::Modify(Modify {
        signal_id: a.id,
        stop: Some(d("1.1000")),
        tp1: None,
        tp2: None,
        reason: "break-even".into(),
        at_ms: hub.clock.now_ms(),
    });
    node.sync(modify).await;
    hub.clock.advance_ms(10 * MINUTE);
    node.close(a.id, "1", "1.1100").await;
    // B: sell USDJPY at 150.00, stop 151.00: half at 149.00 (+1 R × 0.5), the rest at 151.00
    // (−1 R × 0.5): 0 R, a breakeven.
    hub.clock.advance_ms(10 * MINUTE);
    let b =
        new_signal(&kit, hub.clock.now_ms(), "USDJPY", Side::Sell, ["150.00", "151.00", "148.00"]);
    node.post_signal(&b).await;
    hub.clock.advance_ms(10 * MINUTE);
    node.close(b.id, "0.5", "149.00").await;
    hub.clock.advance_ms(10 * MINUTE);
    node.close(b.id, "1", "151.00").await;
    // C: buy EURUSD at 1.1000, stop 1.0950, stopped out: −1 R.
    hub.clock.advance_ms(10 * MINUTE);
    let c =
        new_signal(&kit, hub.clock.now_ms(), "EURUSD", Side::Buy, ["1.1000", "1.0950", "1.1100"]);
    node.post_signal(&c).await;
    hub.clock.advance_ms(10 * MINUTE);
    node.close(c.id, "1", "1.0950").await;
    let c_closed_ms = hub.clock.now_ms();

    // Past the delay: all of it is public. Then D arrives, still inside the delay.
    hub.clock.advance_ms(delay_ms + 2 * MINUTE);
    let dsig =
        new_signal(&kit, hub.clock.now_ms(), "GBPUSD", Side::Buy, ["1.2500", "1.2400", "1.2700"]);
    let d_rec = node.post_signal(&dsig).await;

    // The figures, by hand: R = +2, 0, −1 in closing order.
    let pid = &kit.session.user_id;
    let api = hub.get(&format!("/public/v1/providers/{pid}"), None).await;
    let j = api.ok(200).clone();
    assert_eq!(api.headers["cache-control"], "public, max-age=60");
    let f = &j["figures"];
    let expect: &[(&str, Value)] = &[
        ("n_signals", 3.into()),
        ("n_trades", 3.into()),
        ("n_open", 0.into()),
        ("n_wins", 1.into()),
        ("n_losses", 1.into()),
        ("n_breakevens", 1.into()),
        ("total_r", "1".into()),
        ("win_rate", "0.3333".into()),
        ("expectancy_r", "0.333333".into()),
        ("profit_factor_r", "2".into()),
        ("avg_win_r", "2".into()),
        ("avg_loss_r", "-1".into()),
        ("best_r", "2".into()),
        ("worst_r", "-1".into()),
        ("max_drawdown_r", "1".into()),
        ("longest_win_streak", 1.into()),
        ("longest_loss_streak", 1.into()),
        // 70 minutes of history count as one week.
        ("trades_per_week", "3".into()),
    ];
    for (name, value) in expect {
        assert_eq!(&f[*name], value, "{name}: {f}");
    }
    // Holding: A 20 min, B 20 min, C 10 min (and the few ms the test itself takes).
    let held = f["avg_holding_ms"].as_i64().unwrap();
    assert!((50 * MINUTE / 3..50 * MINUTE / 3 + 5_000).contains(&held), "{held}");
    let rs: Vec<&str> =
        f["trades"].as_array().unwrap().iter().map(|t| t["r"].as_str().unwrap()).collect();
    assert_eq!(rs, ["2", "0", "-1"]);
    let pips: Vec<&Value> = f["trades"].as_array().unwrap().iter().map(|t| &t["pips"]).collect();
    assert_eq!(pips, [&Value::from("100"), &Value::from("0"), &Value::from("-50")]);
    let symbols: Vec<(&str, &str)> = f["by_symbol"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["key"].as_str().unwrap(), g["total_r"].as_str().unwrap()))
        .collect();
    assert_eq!(symbols, [("EURUSD", "1"), ("USDJPY", "0")]);
    // The delay holds: D is held back, everywhere.
    let listed: Vec<&str> =
        j["signals"].as_array().unwrap().iter().map(|s| s["signal_id"].as_str().unwrap()).collect();
    assert_eq!(listed.len(), 3);
    assert!(!listed.contains(&dsig.id.to_hex().as_str()));
    assert_eq!(j["chains"][0]["n_published"], 8);
    assert_eq!(j["chains"][0]["n_withheld"], 1);
    hub.get(&format!("/public/v1/records/{}", d_rec.header_hash().to_hex()), None)
        .await
        .problem(404, "not-found");

    // Each listed signal links to its signed record, with the hub's receipt.
    let hub_key = hub.state().hub_identity.identity_key();
    let a_url = format!("/public/v1/records/{}", a_rec.header_hash().to_hex());
    let rec = hub.get(&a_url, None).await;
    let rec = rec.ok(200);
    assert!(listed.contains(&a.id.to_hex().as_str()));
    assert!(j["signals"].as_array().unwrap().iter().any(|s| s["record_url"] == a_url.as_str()));
    let bytes = data_encoding::BASE64.decode(rec["record"].as_str().unwrap().as_bytes()).unwrap();
    assert_eq!(Record::decode(&bytes).unwrap(), a_rec);
    let receipt: Receipt = serde_json::from_value(rec["receipt"].clone()).unwrap();
    receipt.verify(&hub_key).unwrap();
    assert!(receipt.covers(&a_rec));
    assert_eq!(rec["body"]["symbol"], "EURUSD");

    // The page: the same figures, cacheable.
    let page = hub.get(&format!("/p/{pid}"), None).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(page.headers["cache-control"], "public, max-age=60");
    for (label, value) in [
        ("win rate", "0.3333"),
        ("expectancy R", "0.333333"),
        ("profit factor R", "2"),
        ("max drawdown R", "1"),
        ("wins / losses / breakevens", "1 / 1 / 1"),
    ] {
        let row = format!("<th>{label}</th><td class=\"num\">{value}</td>");
        assert!(page.text.contains(&row), "{row} not on the page");
    }
    let month =
        jiff::Timestamp::from_millisecond(c_closed_ms).unwrap().strftime("%Y-%m").to_string();
    assert!(page.text.contains(&format!("<td>{month}</td>")), "the month of C's close");
    assert!(page.text.contains(&a_url), "the signal links its record");
    assert!(
        !page.text.contains(&dsig.id.to_hex())
            && !page.text.contains(&d_rec.header_hash().to_hex())
    );
    assert!(page.text.contains("tradecast-verify track.json --hub-key"));
    assert!(page.text.contains("<polyline"));
    assert!(page.text.contains("<h1>"), "the provider's name heads the page");
    // `TRACK_SCREENSHOT=DIR`: Chromium saves the page for a person to look at.
    if let Some(dir) = std::env::var_os("TRACK_SCREENSHOT") {
        let file = std::path::Path::new(&dir).join(format!("track-record-{backend:?}.png"));
        let status = std::process::Command::new("chromium")
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,2400"])
            .arg(format!("--screenshot={}", file.display()))
            .arg(hub.url(&format!("/p/{pid}")))
            .status()
            .unwrap();
        assert!(status.success(), "chromium: {status}");
    }
    let etag = page.headers["etag"].to_str().unwrap().to_string();
    let again = hub
        .http
        .get(hub.url(&format!("/p/{pid}")))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    // The JSON routes are in the OpenAPI document.
    let doc = hub.get("/api/v1/openapi.json", None).await;
    for p in [
        "/public/v1/providers/{id}",
        "/public/v1/providers/{id}/export",
        "/public/v1/records/{hash}",
    ] {
        assert!(doc.ok(200)["paths"].get(p).is_some(), "{p} missing from the OpenAPI document");
    }

    // Unknown providers, and accounts that are not providers: 404 problems.
    hub.get("/public/v1/providers/nobody", None).await.problem(404, "not-found");
    hub.get(&format!("/public/v1/providers/{}", owner.user_id), None)
        .await
        .problem(404, "not-found");
    hub.get(&format!("/public/v1/providers/{pid}/export"), None).await.ok(200);
    assert_eq!(hub.get("/p/nobody", None).await.status, 404);

    // The export verifies offline, by the library and by `tradecast-hub verify`.
    let export =
        hub.http.get(hub.url(&format!("/public/v1/providers/{pid}/export"))).send().await.unwrap();
    assert!(export.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));
    let bytes = export.bytes().await.unwrap().to_vec();
    let verified = track::verify_export(&bytes, Some(&hub_key)).unwrap();
    assert_eq!(verified.n_records, 8);
    assert_eq!(serde_json::to_value(&verified.recomputed).unwrap(), *f);
    let (code, out) = hub_verify(&bytes);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK: 3 trades"), "{out}");
    // The trust score travels in the export as the JSON API and the page show it, and the
    // verifier recomputes it from the records.
    let trust = serde_json::to_value(&verified.trust).unwrap();
    assert_eq!(j["trust"], trust, "the API's score is the recomputed one");
    let in_file: TrackExport = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(in_file.trust.as_ref(), Some(&verified.trust));
    let score = verified.trust.score.to_string();
    assert!(
        out.lines().any(|l| l.starts_with("trust score") && l.matches(score.as_str()).count() == 2),
        "{out}"
    );

    // Tampering fails, naming what.
    let parsed: TrackExport = serde_json::from_slice(&bytes).unwrap();
    let fails = |e: TrackExport, expect: &str| {
        let err = track::verify_export(&serde_json::to_vec(&e).unwrap(), None).unwrap_err();
        assert!(err.to_string().contains(expect), "{err} should contain {expect:?}");
        err
    };
    let mut flipped = parsed.clone();
    let mut raw =
        data_encoding::BASE64.decode(flipped.chains[0].records[3].record.as_bytes()).unwrap();
    let at = raw.len() - 2;
    raw[at] ^= 0x01;
    flipped.chains[0].records[3].record = data_encoding::BASE64.encode(&raw);
    fails(flipped.clone(), "record 3");
    let (code, out) = hub_verify(&serde_json::to_vec(&flipped).unwrap());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAILED: chain 0"), "{out}");
    let mut dropped = parsed.clone();
    dropped.chains[0].records.remove(4);
    fails(dropped, "expected seq 5, got 6");
    let mut reordered = parsed.clone();
    reordered.chains[0].records.swap(5, 6);
    fails(reordered, "expected seq 6, got 7");
    let mut foreign = parsed.clone();
    let other_hub = Identity::from_secret_bytes(&[42; 32], &[43; 32]);
    foreign.chains[0].records[2].receipt = Receipt::sign(&other_hub, &a_rec, 1);
    fails(foreign, "seq 3: receipt does not verify with the hub key");
    let mut changed = parsed.clone();
    changed.figures.profit_factor_r = Some(d("2.5"));
    let e =
        fails(changed.clone(), "figures.profit_factor_r: the export says 2.5, the records give 2");
    assert!(matches!(e, ExportError::Figure(_)));
    let (code, out) = hub_verify(&serde_json::to_vec(&changed).unwrap());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("<- differs"), "{out}");

    // Once the delay has passed, D is public too (open).
    hub.clock.advance_ms(delay_ms + MINUTE);
    let j = hub.get(&format!("/public/v1/providers/{pid}"), None).await.ok(200).clone();
    assert_eq!(
        (j["figures"]["n_signals"].clone(), j["figures"]["n_open"].clone()),
        (4.into(), 1.into())
    );
    hub.get(&format!("/public/v1/records/{}", d_rec.header_hash().to_hex()), None).await.ok(200);
    hub.stop().await;
}

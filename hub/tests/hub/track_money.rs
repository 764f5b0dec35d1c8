//! The money figures of the public track record (issue 18) on both backends: a provider device
//! syncs its published stream (deposits, equity points, closed trades, a withdrawal, a ticket
//! sent twice) through the sync store; the JSON API and the page show exactly what
//! `tradecast_protocol::track_money` computes from the published records, the figures computed
//! here by hand; the export carries the published chain and verifies offline (library and
//! `tradecast-hub verify`), a changed money figure or a flipped byte fails; nothing received
//! after the delay's cutoff appears; a provider that publishes nothing is told so.

use rust_decimal::Decimal;
use serde_json::Value;
use tradecast_hub::quic::store;
use tradecast_protocol::track::{self, TrackExport};
use tradecast_protocol::track_money;
use tradecast_protocol::{
    BalanceKind, BalanceOperation, Body, ChainHash, EquityPoint, HeaderFields, Record, Side,
    StreamId, TradeClosed,
};

use crate::helpers::{Backend, TestHub, provider_kit};
use crate::on_both;

on_both!(money_figures_page_api_export_and_delay);

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// A node publishing its account history (a provider's, or a trader's in the Mini App test).
pub(crate) struct Publisher<'a> {
    pub(crate) hub: &'a TestHub,
    pub(crate) identity: &'a tradecast_protocol::Identity,
    pub(crate) seq: u64,
    pub(crate) prev: ChainHash,
    pub(crate) records: Vec<Record>,
}

impl Publisher<'_> {
    /// Signs `body` into the published stream and commits it through the sync store now.
    async fn publish(&mut self, body: Body) {
        self.seq += 1;
        let now = self.hub.clock.now_ms();
        let fields = HeaderFields {
            stream: StreamId::PUBLISHED,
            seq: self.seq,
            prev_hash: self.prev,
            created_at_ms: now,
        };
        let record = Record::sign(self.identity, fields, &body);
        self.prev = record.header_hash();
        let state = self.hub.state();
        store::commit(&state.db, &state.hub_identity, &record, now).await.unwrap();
        self.records.push(record);
    }

    pub(crate) async fn equity(&mut self, balance: &str, equity: &str) {
        let body = Body::EquityPoint(EquityPoint {
            device: self.identity.device_id(),
            at_ms: self.hub.clock.now_ms(),
            balance: d(balance),
            equity: d(equity),
        });
        self.publish(body).await;
    }

    pub(crate) async fn balance(&mut self, deal: u64, kind: BalanceKind, amount: &str) {
        let body = Body::BalanceOperation(BalanceOperation {
            device: self.identity.device_id(),
            deal,
            kind,
            amount: d(amount),
            currency: "USD".into(),
            at_ms: self.hub.clock.now_ms(),
            comment: String::new(),
        });
        self.publish(body).await;
    }

    pub(crate) async fn trade(&mut self, ticket: u64, profit: &str, commission: &str) {
        let now = self.hub.clock.now_ms();
        let body = Body::TradeClosed(TradeClosed {
            signal_id: None,
            device: self.identity.device_id(),
            ticket,
            symbol: "EURUSD".into(),
            side: Side::Buy,
            volume: d("0.1"),
            open_price: d("1.1000"),
            close_price: d("1.1050"),
            opened_at_ms: now - 2 * HOUR,
            closed_at_ms: now,
            profit: d(profit),
            commission: d(commission),
            swap: Decimal::ZERO,
        });
        self.publish(body).await;
    }
}

/// Runs `tradecast-hub verify` on `bytes`: (exit code, stdout).
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

async fn money_figures_page_api_export_and_delay(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let owner = hub.owner().await;
    let kit = provider_kit(&hub, &owner).await;
    let pid = kit.session.user_id.clone();
    let delay_ms = i64::try_from(hub.state().config.public.delay_s).unwrap() * 1000;

    // Nothing published yet: the section says so, and draws no empty chart.
    let j = hub.get(&format!("/public/v1/providers/{pid}"), None).await.ok(200).clone();
    assert_eq!(j["money"], Value::Array(vec![]));
    let page = hub.get(&format!("/p/{pid}"), None).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("Money (published by the provider)"));
    assert!(page.text.contains("id=\"money-none\""), "the page says nothing is published");
    assert!(!page.text.contains("class=\"equity\""), "no empty chart");

    // Day 0: a deposit of 1000, equity 1000. Day 1: a trade of +50 − 1 commission (sent twice:
    // one ticket), equity 1049 (+4.9 %). Day 2: 200 withdrawn, equity 849 (0 %: no loss).
    let mut node = Publisher {
        hub: &hub,
        identity: &kit.identity,
        seq: 0,
        prev: ChainHash::GENESIS,
        records: vec![],
    };
    node.balance(1, BalanceKind::Deposit, "1000").await;
    node.equity("1000", "1000").await;
    hub.clock.advance_ms(DAY);
    node.trade(77, "50", "-1").await;
    node.trade(77, "50", "-1").await;
    node.equity("1049", "1049").await;
    hub.clock.advance_ms(DAY);
    node.balance(2, BalanceKind::Withdrawal, "-200").await;
    node.equity("849", "849").await;
    let published: Vec<Record> = node.records.clone();
    // Past the delay, then one more point that is still inside it.
    hub.clock.advance_ms(delay_ms + 2 * 60_000);
    node.equity("800", "800").await;

    let author = kit.identity.device_id();
    let expected = track_money::money_figures(author, &published).unwrap();
    let j = hub.get(&format!("/public/v1/providers/{pid}"), None).await.ok(200).clone();
    let money = &j["money"];
    assert_eq!(money.as_array().unwrap().len(), 1);
    assert_eq!(
        money[0],
        serde_json::to_value(&expected).unwrap(),
        "the API shows the protocol's figures"
    );
    // By hand.
    let m = &money[0];
    for (name, value) in [
        ("basis", Value::from("published-stream-money")),
        ("currency", "USD".into()),
        ("n_trades", 1.into()),
        ("net_of_trades", "49".into()),
        ("deposits", "1000".into()),
        ("withdrawals", "-200".into()),
        ("net_profit", "49".into()),
        ("absolute_gain_pct", "4.9".into()),
        ("twr_pct", "4.9".into()),
        ("max_drawdown", "0".into()),
        ("current_drawdown", "0".into()),
        ("n_daily_returns", 2.into()),
        ("win_rate", "1".into()),
        ("profit_factor", Value::Null),
        ("sortino", Value::Null),
        ("calmar", Value::Null),
    ] {
        assert_eq!(m[name], value, "{name}: {m}");
    }
    assert_eq!(m["kinds"]["trades_closed"], 2, "both copies were published");
    assert_eq!(m["curve"].as_array().unwrap().len(), 3, "the point after the cutoff is withheld");
    assert_eq!(j["published_chains"][0]["n_published"], 7);
    assert_eq!(j["published_chains"][0]["n_withheld"], 1);
    assert_eq!(j["chains"], Value::Array(vec![]), "no signals chain");

    // The page: the section, its basis, its figures, the curves and the heatmap.
    let page = hub.get(&format!("/p/{pid}"), None).await;
    assert_eq!(page.status, 200, "{}", page.text);
    let html = &page.text;
    assert!(!html.contains("id=\"money-none\""));
    assert!(html.contains("Money figures — basis: the published stream"));
    assert!(html.contains("R figures — basis: the signals chain"));
    assert!(
        html.contains("This provider publishes closed trades, equity points and balance operations; not daily summaries."),
        "the kinds it publishes"
    );
    for (label, value) in track_money::headline(&expected) {
        let row = format!("<th>{label}</th><td class=\"num\">{value}</td>");
        assert!(html.contains(&row), "{row} not on the page");
    }
    assert!(html.contains("<th>time-weighted return %</th><td class=\"num\">4.9</td>"));
    assert!(html.contains("class=\"equity\"") && html.contains("class=\"drawdown\""));
    assert!(html.contains("class=\"heatmap\"") && html.contains("heat-pos-4"));
    assert!(html.contains("withdrawal") && html.contains("id=\"money-formulas\""));
    // `TRACK_SCREENSHOT=DIR`: Chromium saves the page for a person to look at.
    if let Some(dir) = std::env::var_os("TRACK_SCREENSHOT") {
        let file = std::path::Path::new(&dir).join(format!("track-money-{backend:?}.png"));
        let status = std::process::Command::new("chromium")
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,4200"])
            .arg(format!("--screenshot={}", file.display()))
            .arg(hub.url(&format!("/p/{pid}")))
            .status()
            .unwrap();
        assert!(status.success(), "chromium: {status}");
    }

    // The export carries the published chain and verifies offline.
    let hub_key = hub.state().hub_identity.identity_key();
    let bytes = hub
        .http
        .get(hub.url(&format!("/public/v1/providers/{pid}/export")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let verified = track::verify_export(&bytes, Some(&hub_key)).unwrap();
    assert_eq!(verified.n_records, 7);
    assert_eq!(verified.money, vec![expected.clone()]);
    assert_eq!(verified.export.published[0].records.len(), 7);
    let (code, out) = hub_verify(&bytes);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 published account(s)"), "{out}");
    // Each published record is served by its hash with its receipt, like a signal.
    let first = &published[0];
    let one = hub.get(&format!("/public/v1/records/{}", first.header_hash().to_hex()), None).await;
    let one = one.ok(200);
    assert_eq!(one["seq"], 1);
    assert_eq!(one["kind"], first.header().kind.name());
    assert!(!one["body"].is_null(), "{one}");
    assert_eq!(one["provider"], pid.as_str());

    // Tampering fails, naming what.
    let parsed: TrackExport = serde_json::from_slice(&bytes).unwrap();
    let mut changed = parsed.clone();
    changed.money[0].twr_pct = Some(d("12"));
    let (code, out) = hub_verify(&serde_json::to_vec(&changed).unwrap());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAILED: money[0].twr_pct: the export says 12, the records give 4.9"),
        "{out}"
    );
    let mut flipped = parsed;
    let mut raw =
        data_encoding::BASE64.decode(flipped.published[0].records[2].record.as_bytes()).unwrap();
    let at = raw.len() - 2;
    raw[at] ^= 0x01;
    flipped.published[0].records[2].record = data_encoding::BASE64.encode(&raw);
    let err = track::verify_export(&serde_json::to_vec(&flipped).unwrap(), None).unwrap_err();
    assert!(err.to_string().starts_with("published stream: chain 0"), "{err}");

    // Once the delay has passed, the last point is public too: a drawdown of 49 from 849.
    hub.clock.advance_ms(delay_ms + 60_000);
    let j = hub.get(&format!("/public/v1/providers/{pid}"), None).await.ok(200).clone();
    assert_eq!(j["money"][0]["curve"].as_array().unwrap().len(), 4);
    assert_eq!(j["money"][0]["current_drawdown"], "49");
    hub.stop().await;
}

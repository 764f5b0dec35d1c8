//! The public record's pictures and the trust widget (issue 18 parts 3 and 5) on both
//! backends: the setup of a signal is 404 until the delay has passed, then a PNG drawn with its
//! published moves and closes; the equity picture, the badge and the widget are cacheable (ETag,
//! 304); the widget alone may be framed anywhere; the page shows the trust score, its formula
//! and the embed snippet.

use tradecast_protocol::{Body, ChainHash, Modify, Side};

use crate::helpers::{Backend, TestHub, provider_kit};
use crate::on_both;
use crate::track_record::{Node, new_signal};

on_both!(charts_badge_and_widget_are_public_after_the_delay);

const MINUTE: i64 = 60_000;

/// (status, headers, bytes) of a GET, with an optional `If-None-Match`.
async fn fetch(
    hub: &TestHub,
    path: &str,
    etag: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut r = reqwest::Client::new().get(hub.url(path));
    if let Some(t) = etag {
        r = r.header("if-none-match", t);
    }
    let r = r.send().await.unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, headers, r.bytes().await.unwrap().to_vec())
}

/// Width and height from a PNG's IHDR, after checking its signature.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |b: &[u8]| u32::from_be_bytes(b.try_into().unwrap());
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

/// A 200 PNG of Telegram's preview size that answers 304 to its own ETag.
async fn png_with_etag(hub: &TestHub, path: &str) -> Vec<u8> {
    let (status, headers, bytes) = fetch(hub, path, None).await;
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&bytes));
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(headers["cache-control"], "public, max-age=60");
    assert_eq!(png_size(&bytes), (800, 450));
    let etag = headers["etag"].to_str().unwrap().to_string();
    let (again, _, body) = fetch(hub, path, Some(&etag)).await;
    assert_eq!((again, body.len()), (304, 0), "{path}: If-None-Match");
    bytes
}

async fn charts_badge_and_widget_are_public_after_the_delay(backend: Backend) {
    let hub = TestHub::start(backend).await;
    let owner = hub.owner().await;
    let kit = provider_kit(&hub, &owner).await;
    let delay_ms = i64::try_from(hub.state().config.public.delay_s).unwrap() * 1000;
    let mut node = Node { hub: &hub, kit: &kit, seq: 0, prev: ChainHash::GENESIS };
    let pid = kit.session.user_id.clone();

    // A: a buy whose stop is moved to the entry, then closed at the target (+2 R).
    let a =
        new_signal(&kit, hub.clock.now_ms(), "EURUSD", Side::Buy, ["1.1000", "1.0950", "1.1100"]);
    node.post_signal(&a).await;
    hub.clock.advance_ms(10 * MINUTE);
    let m = Modify {
        signal_id: a.id,
        stop: Some("1.1000".parse().unwrap()),
        tp1: None,
        tp2: None,
        reason: "break-even".into(),
        at_ms: hub.clock.now_ms(),
    };
    node.sync(Body::Modify(m)).await;
    hub.clock.advance_ms(10 * MINUTE);
    node.close(a.id, "1", "1.1100").await;

    // Inside the delay: the setup is not public, in any theme.
    let setup = format!("/public/v1/signals/{}/setup.png", a.id.to_hex());
    hub.get(&setup, None).await.problem(404, "not-found");
    hub.get(&format!("{setup}?theme=dark"), None).await.problem(404, "not-found");
    hub.get("/public/v1/signals/not-hex/setup.png", None).await.problem(404, "not-found");
    let unknown = format!("/public/v1/signals/{}/setup.png", "ab".repeat(16));
    hub.get(&unknown, None).await.problem(404, "not-found");
    // The equity picture exists at once: no closed trade published yet, "no data yet".
    let empty = png_with_etag(&hub, &format!("/public/v1/providers/{pid}/equity.png")).await;

    hub.clock.advance_ms(delay_ms + 2 * MINUTE);
    let light = png_with_etag(&hub, &setup).await;
    let dark = png_with_etag(&hub, &format!("{setup}?theme=dark")).await;
    assert_ne!(light, dark, "the theme changes the picture");
    // The same bytes on every request (stable ETag).
    assert_eq!(fetch(&hub, &setup, None).await.2, light);
    // The setup as the hub holds it now, for authorised callers, is the same picture.
    let state = hub.state();
    let direct = tradecast_hub::public::media::signal_setup_png(
        &state.db,
        &state.hub_identity,
        &a.id.to_hex(),
        tradecast_hub::charts::Theme::Light,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(direct, light);

    let equity = png_with_etag(&hub, &format!("/public/v1/providers/{pid}/equity.png")).await;
    assert_ne!(equity, empty, "one closed trade: a curve, not the empty picture");

    // The badge: the verified figures and the trust score, the name escaped.
    sqlx::query("UPDATE users SET display_name = $1 WHERE id = $2")
        .bind("Fib & <Co>")
        .bind(&pid)
        .execute(hub.db.pool())
        .await
        .unwrap();
    // The public views are built once per cutoff (a minute): the new name shows at the next.
    hub.clock.advance_ms(60_000);
    let badge = hub.get(&format!("/public/v1/providers/{pid}/badge.svg"), None).await;
    assert_eq!(badge.status, 200, "{}", badge.text);
    assert_eq!(badge.headers["content-type"], "image/svg+xml");
    assert!(badge.headers.contains_key("etag"));
    for needle in [
        "1 trades · expectancy 2 R",
        "max drawdown 0 R · track 0 days",
        "verified by Tradecast",
        ">Fib &amp; &lt;Co&gt;</text>",
        "trust score",
    ] {
        assert!(badge.text.contains(needle), "{needle} not in {}", badge.text);
    }
    // Set CHARTS_DUMP_DIR to look at what the routes answer.
    if let Some(dir) = std::env::var_os("CHARTS_DUMP_DIR") {
        let dir = std::path::Path::new(&dir);
        std::fs::write(dir.join("route-badge.svg"), &badge.text).unwrap();
        std::fs::write(dir.join("route-setup.png"), &light).unwrap();
        std::fs::write(dir.join("route-setup-dark.png"), &dark).unwrap();
        std::fs::write(dir.join("route-equity.png"), &equity).unwrap();
        std::fs::write(dir.join("route-equity-empty.png"), &empty).unwrap();
    }
    // One trade, no drawdown, one positive month, a chain without a gap, 0 days:
    // (0 + 25 + 25 + 15) / 90 → 72.
    assert!(badge.text.contains(">72</text>"), "{}", badge.text);

    // The widget: framable anywhere (this route only), showing the badge, linking the page.
    let w = hub.get(&format!("/public/v1/providers/{pid}/widget"), None).await;
    assert_eq!(w.status, 200, "{}", w.text);
    let csp = w.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors *") && csp.contains("default-src 'none'"), "{csp}");
    assert!(!w.headers.contains_key("x-frame-options"));
    assert!(
        w.text.contains(&format!("src=\"/public/v1/providers/{pid}/badge.svg\"")),
        "{}",
        w.text
    );
    assert!(w.text.contains(&format!("href=\"/p/{pid}\"")), "{}", w.text);
    let page = hub.get(&format!("/p/{pid}"), None).await;
    assert_eq!(page.status, 200);
    let page_csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(page_csp.contains("frame-ancestors 'none'"), "the page itself is not framable");
    for needle in [
        "Trust score",
        "Embed this badge",
        "<strong>72</strong>",
        "/widget",
        "re-normalised",
        "equity.png",
    ] {
        assert!(page.text.contains(needle), "{needle} not on the page");
    }

    // In the OpenAPI document.
    let doc = hub.get("/api/v1/openapi.json", None).await;
    for p in [
        "/public/v1/providers/{id}/equity.png",
        "/public/v1/signals/{id}/setup.png",
        "/public/v1/providers/{id}/badge.svg",
        "/public/v1/providers/{id}/widget",
    ] {
        assert!(doc.ok(200)["paths"].get(p).is_some(), "{p} missing from the OpenAPI document");
    }

    // Unknown providers: 404 on every route.
    for route in ["equity.png", "badge.svg", "widget"] {
        hub.get(&format!("/public/v1/providers/nobody/{route}"), None)
            .await
            .problem(404, "not-found");
    }
}

//! The demo's own parties in a real browser (the slow suite): one demo run (1,300 bars, every
//! party a process of its own, over real HTTP, QUIC and the EA link) in which Chromium plays the
//! users who meet the hub's pages.
//!
//! - Issue 19: bob (manual approvals, remote approval on) waits on the demo's third signal; he
//!   taps "📱 Open in the app" on the bot's message about it; Chromium at a phone's size opens
//!   what Telegram's client opens for that link (the stand-in's launch address: the Main Mini
//!   App with `startapp=approve_<signal>` in the signed launch data); the app shows that signal
//!   and he presses Telegram's main button (Approve); the hub signs the request into his
//!   device's inbox, his node decides it within its own rules, its EA executes on the simulated
//!   terminal, and the demo's report has the fill.
//! - Issue 18: once the public delay has passed the run, a stranger opens the provider's page,
//!   downloads the export from it, verifies it offline with the hub's key pinned and finds every
//!   headline figure of the page equal to the verifier's; opens the trust widget embedded in a
//!   page of another origin; opens the provider's redacted share link and finds its money
//!   figures equal to the export's.
//!
//! Screenshots: `test-artifacts/ui-miniapp-demo-*.png`, `test-artifacts/ui-public-*.png`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tradecast::demo::{self, HandFuture, MiniAppHand, Options, PublicHand, PublicVisit};

use crate::browser::Driver;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_demo_in_a_browser_miniapp_approval_and_public_record() {
    let launched: Arc<Mutex<Vec<String>>> = Arc::default();
    let miniapp = {
        let launched = launched.clone();
        MiniAppHand(Arc::new(move |launch: String| -> HandFuture {
            launched.lock().unwrap_or_else(|e| e.into_inner()).push(launch.clone());
            Box::pin(approve_in_chromium(launch))
        }))
    };
    let public = PublicHand(Arc::new(|visit: PublicVisit| -> HandFuture {
        Box::pin(visit_in_chromium(visit))
    }));
    let opts = Options {
        speed: tradecast_sim::replay::Speed::Max,
        bars: Some(1_300),
        exit_when_done: true,
        program: env!("CARGO_BIN_EXE_tradecast").into(),
        public_record: true,
        miniapp_hand: Some(miniapp),
        public_hand: Some(public),
        ..Options::default()
    };
    let mut lines = Vec::new();
    let report = demo::run(&opts, std::future::pending(), &mut |l: &str| lines.push(l.to_owned()))
        .await
        .expect("demo");

    // Issue 19: the Mini App opened once, from the bot's link, and the node executed the signal.
    let launched = launched.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(launched.len(), 1, "bob opened the Mini App once: {lines:#?}");
    assert!(launched[0].contains("/miniapp#tgWebAppData="), "{}", launched[0]);
    let line = lines
        .iter()
        .find(|l| l.starts_with("bob tapped \"📱 Open in the app\""))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert!(line.contains("his node approved it (0.1 lots"), "{line}");
    assert!(line.contains("Applied: your app did it"), "{line}");
    let hex = line
        .split("opened the Mini App on signal ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .expect("the signal's id in the line")
        .to_owned();
    let signal = report
        .signals
        .iter()
        .find(|s| s.signal.id.to_hex().starts_with(&hex))
        .unwrap_or_else(|| panic!("signal {hex} in the report"));
    let bob = &signal.subscribers["bob"];
    assert_eq!(bob.decision, Some(tradecast_protocol::Decision::Approved), "{bob:?}");
    assert_eq!(bob.fills.len(), 1, "executed once: {bob:?}");
    assert_eq!(bob.fills[0].1.normalize().to_string(), "0.1", "{bob:?}");
    let bob_totals = report.subscribers.iter().find(|t| t.name == "bob").expect("bob");
    assert!(bob_totals.entries_per_order.values().all(|n| *n == 1), "{bob_totals:?}");

    // Issue 18: the stranger's visit.
    let public = report.public_record.as_ref().expect("the public record was visited");
    assert!(public.verifier.ok, "{}", public.verifier.text);
    let seen = public.visited.as_deref().expect("the browser visited");
    assert!(seen.contains("equal to the verifier's"), "{seen}");
}

/// bob's hand in Chromium: opens the launch address, sees the signal, approves it with
/// Telegram's main button and waits for his node's signed answer in the view.
async fn approve_in_chromium(launch: String) -> anyhow::Result<String> {
    let b = Driver::start().await;
    b.resize(390, 844).await;
    b.go(&launch).await;
    anyhow::ensure!(
        b.until("return !!document.querySelector('#view [data-view=\"approvals\"] [data-main]')")
            .await,
        "the app did not open on the waiting signal: {}",
        b.js("return document.body.innerText").await
    );
    let view = text_of(&b, "#view").await;
    for needle in ["EURUSD", "Lots your rules allow:", " left"] {
        anyhow::ensure!(view.contains(needle), "{needle:?} not in the view: {view}");
    }
    anyhow::ensure!(
        b.until("return !!document.querySelector('#view img.setup')").await,
        "the setup picture"
    );
    b.screenshot_sized("miniapp-demo-waiting", 390, 844).await;
    // Telegram's main button, as the client fires it.
    b.js("window.Telegram.WebView.receiveEvent('main_button_pressed'); return true;").await;
    anyhow::ensure!(
        b.until("return document.querySelector('#view').textContent.indexOf('Applied: your app did it') >= 0")
            .await,
        "the node's answer never showed: {}",
        text_of(&b, "#view").await
    );
    b.screenshot_sized("miniapp-demo-applied", 390, 844).await;
    let answer = text_of(&b, "#view .answer").await;
    b.quit();
    Ok(answer)
}

/// A stranger in Chromium: the provider's page, its export verified offline against the page's
/// figures, the widget embedded elsewhere, the redacted share link against the export's money.
async fn visit_in_chromium(v: PublicVisit) -> anyhow::Result<String> {
    let b = Driver::start().await;
    b.resize(1280, 1000).await;
    b.go(&v.page).await;
    anyhow::ensure!(b.until("return !!document.querySelector('#headline')").await, "no headline");
    let page = rows(&b, "#headline tr").await;
    // The export, from the address the page gives (as `curl` would), verified offline.
    let verify = text_of(&b, "#verify").await;
    anyhow::ensure!(verify.contains(&v.export), "the page's verify command: {verify}");
    anyhow::ensure!(verify.contains(&v.hub_key), "the page names the hub's key: {verify}");
    let bytes = reqwest::get(&v.export).await?.error_for_status()?.bytes().await?;
    let key = tradecast_protocol::IdentityKey::from_hex(&v.hub_key)
        .map_err(|e| anyhow::anyhow!("hub key: {e:?}"))?;
    let verified = tradecast_protocol::track::verify_export(&bytes, Some(&key))
        .map_err(|e| anyhow::anyhow!("the export does not verify: {e}"))?;
    let mine: BTreeMap<String, String> = tradecast_protocol::track::headline(&verified.recomputed)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    anyhow::ensure!(page == mine, "the page's headline {page:?} is not the verifier's {mine:?}");
    anyhow::ensure!(verified.recomputed.n_trades > 0, "a record with trades");
    b.screenshot("public-page").await;

    // The widget, embedded with the page's own snippet ("Embed this badge") in a forum's page
    // of another origin (its CSP allows any frame ancestor): the badge loads inside the frame
    // and links to the page.
    let embed = text_of(&b, "#embed").await;
    let snippet = embed.lines().next().unwrap_or_default().to_owned();
    anyhow::ensure!(
        snippet.starts_with("<iframe ") && snippet.contains(&v.widget),
        "the page's embed snippet: {embed}"
    );
    let forum = forum_page(&snippet).await?;
    b.go(&forum).await;
    anyhow::ensure!(
        b.until("var f = document.getElementById('w'); return !!f && f.offsetWidth > 0").await,
        "the forum's page"
    );
    b.frame(0).await;
    anyhow::ensure!(
        b.until("var i = document.querySelector('a img'); return !!i && i.complete && i.naturalWidth > 0")
            .await,
        "the badge image loads in the embedded widget: {}",
        text_of(&b, "body").await
    );
    let href = b.js("return document.querySelector('a').href").await;
    anyhow::ensure!(href.as_str() == Some(v.page.as_str()), "the widget links to the page: {href}");
    b.top_frame().await;
    b.screenshot_sized("public-widget-embedded", 440, 220).await;

    // The provider's redacted share link: its account's money figures, as in the export.
    b.go(&v.share).await;
    anyhow::ensure!(b.until("return !!document.querySelector('#redacted')").await, "share page");
    let shared = rows(&b, "#money-0 .money-headline tr").await;
    let money = verified.money.first().ok_or_else(|| anyhow::anyhow!("no published money"))?;
    let mine: BTreeMap<String, String> = tradecast_protocol::track_money::headline(money)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    anyhow::ensure!(shared == mine, "the share link's {shared:?} is not the export's {mine:?}");
    let all = text_of(&b, "body").await;
    anyhow::ensure!(all.contains("Account 1"), "numbered, not named");
    anyhow::ensure!(
        !all.contains(&money.author.to_text()),
        "the share link names the device: {all}"
    );
    b.screenshot("public-share-link").await;
    b.quit();
    Ok(format!(
        "opened {}: its {} headline figures are equal to the verifier's on the export it links to ({} records); the trust widget embedded in another site; the redacted share link's {} money figures equal the export's",
        v.page,
        page.len(),
        verified.n_records,
        shared.len()
    ))
}

/// A forum's page holding `snippet` (the widget's `<iframe>`, as the provider's page gives it),
/// served from another origin (`localhost` on a port of its own); its address.
async fn forum_page(snippet: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let snippet = snippet.replacen("<iframe ", "<iframe id=\"w\" ", 1);
    let html = format!(
        "<!doctype html><html><body style=\"margin:16px;font-family:sans-serif\">\
         <p>A forum post about a provider:</p>{snippet}</body></html>"
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = vec![0u8; 8192];
            let _ = conn.read(&mut buf).await;
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
                html.len()
            );
            let _ = conn.write_all(answer.as_bytes()).await;
        }
    });
    Ok(format!("http://localhost:{port}/forum"))
}

/// The `th` → `td` rows matching `css`, as the page shows them.
async fn rows(b: &Driver, css: &str) -> BTreeMap<String, String> {
    let script = format!(
        "return Array.from(document.querySelectorAll('{css}')).map(function (r) {{ \
         var h = r.querySelector('th'), d = r.querySelector('td'); \
         return [h ? h.textContent : '', d ? d.textContent : '']; }});"
    );
    let v = b.js(&script).await;
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let k = r.get(0).and_then(Value::as_str)?;
            let v = r.get(1).and_then(Value::as_str)?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// The text content of the first element matching `css`.
async fn text_of(b: &Driver, css: &str) -> String {
    let v = b
        .js(&format!("var e = document.querySelector('{css}'); return e ? e.textContent : '';"))
        .await;
    v.as_str().unwrap_or_default().to_owned()
}

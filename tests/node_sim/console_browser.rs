//! The hub's console in a real browser (the slow suite): the owner signs in through the login
//! form, the overview's figures arrive, and an alarm raised meanwhile appears by itself (the
//! overview's server-sent events, swapped in by `assets/console.js`, under the console's strict
//! CSP); the console pages render without a script or CSP error. Whole-page screenshots go to
//! `test-artifacts/ui-console-*.png`.

use std::time::Duration;

use crate::browser::Driver;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_console_overview_shows_an_alarm_live() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (started, _http, _token) = crate::hub_ui::hub(dir.path()).await;
    let base = format!("http://{}", started.addr);

    let b = Driver::start().await;
    b.go(&format!("{base}/")).await;
    assert!(b.until("return !!document.querySelector('form[action=\"/login\"]')").await);
    b.js("document.getElementById('email').value = 'owner@example.com';
          document.getElementById('password').value = 'owner password 123';
          document.querySelector('form[action=\"/login\"]').submit(); return true;")
        .await;
    assert!(b.until("return !!document.getElementById('fig-accounts-owner')").await, "signed in");
    assert!(b.until("return !!document.getElementById('alarms-none')").await, "no alarm yet");
    b.screenshot("console-overview").await;

    // A stream quarantined while the page is open: the alarm appears without a reload.
    let author = tradecast_protocol::Identity::from_secret_bytes(&[7; 32], &[9; 32]).device_id();
    let now = started.state.now_ms();
    tradecast_hub::quic::store::quarantine(
        &started.state.db,
        &author,
        tradecast_protocol::StreamId::SIGNALS,
        now,
    )
    .await
    .expect("quarantine");
    let mut live = false;
    for _ in 0..6 {
        if b.until("return !!document.getElementById('fig-alarm-quarantined')").await {
            live = true;
            break;
        }
    }
    assert!(live, "the alarm arrived over the live stream (checked every 5 s)");
    let loads = b.js("return performance.getEntriesByType('navigation').length").await;
    assert_eq!(loads, serde_json::json!(1), "no reload: the same page took the new figures");
    b.screenshot("console-overview-alarm").await;

    for (path, marker) in [
        ("/providers", "quarantine"),
        ("/subscribers", "subscribers"),
        ("/revenue", "revenue"),
        ("/operations", "sessions"),
        ("/outbox", "jobs"),
        ("/audit", "audit"),
    ] {
        b.go(&format!("{base}{path}")).await;
        assert!(
            b.until(&format!("return !!document.querySelector('main table, main #{marker}')"))
                .await,
            "{path} rendered"
        );
        b.screenshot(&format!("console{}", path.replace('/', "-"))).await;
    }
    let console = b.console().await;
    let errors: Vec<_> = console
        .iter()
        .filter(|m| m.contains("Content Security Policy") || m.contains("Uncaught"))
        .collect();
    assert!(errors.is_empty(), "browser console: {console:#?}");
    b.quit();
    tokio::time::timeout(Duration::from_secs(10), started.stop()).await.ok();
}

//! Issue 23's last items against the real node: a second EA on one account (another chart, or
//! another terminal logged in to the same account) is refused while the first polls — both would
//! execute every order the node offers — and let in once the first has stopped; an EA whose key
//! id the node does not know is told so in its journal, although the node cannot sign that 401.

use std::time::{Duration, Instant};

use tradecast_protocol::ea;
use tradecast_sim::link::LinkError;
use tradecast_sim::terminal::{Faults, Terminal};

use crate::TestNode;
use crate::rig::Rig;

/// Steps `t` until its hello is answered (the EA's own backoff paces the tries); how long it took.
async fn until_connected(t: &mut Terminal, within: Duration) -> Duration {
    let start = Instant::now();
    while t.session_id().is_none() {
        assert!(start.elapsed() < within, "no session after {within:?}: {:?}", t.stats().journal);
        let _ = t.step().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ea_on_one_account_waits_until_the_first_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(dir.path(), |c| c.link_down_after_s = 1).await;
    let mut rig = Rig::new(&node.ea_url(), &node.key_id, &node.secret, 400);
    for _ in 0..5 {
        rig.replay.advance().expect("advance");
        rig.catch_up(20).await;
    }
    assert!(rig.terminal.session_id().is_some(), "the first EA is connected");

    // The same account, another chart: another instance.
    let mut cfg = rig.terminal.config().clone();
    cfg.instance = format!("{}-chart-2", cfg.login);
    let mut second = Terminal::new(cfg, rig.broker.clone(), Faults::default()).expect("terminal");
    let refused = second.step().await.expect_err("a second EA is refused");
    assert_eq!(refused.problem_code(), Some(ea::PROBLEM_ANOTHER_EA), "{refused}");
    assert!(second.session_id().is_none());
    let line = second.stats().journal.back().cloned().unwrap_or_default();
    assert!(line.contains("another Tradecast EA") && line.contains("remove one"), "{line}");

    // The trader sees it on the node's status (and the dashboard's banner), named by account.
    let (status, v) = node.api(reqwest::Method::GET, "/api/v1/status", None).await;
    assert_eq!(status, 200, "{v}");
    assert!(v["accounts"][0]["second_ea_refused_at_ms"].as_i64().is_some(), "{v}");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login = tradecast_node::ui::login_url(node.running.api_addr, &node.token);
    let r = http.get(login).send().await.expect("login");
    let cookie = r.headers()[reqwest::header::SET_COOKIE].to_str().expect("cookie");
    let cookie = cookie.split(';').next().expect("pair").to_owned();
    let page = http
        .get(node.api_url("/"))
        .header(reqwest::header::COOKIE, cookie)
        .send()
        .await
        .expect("dashboard")
        .text()
        .await
        .expect("body");
    assert!(page.contains("A second Tradecast EA on this account was refused"), "{page}");
    assert!(page.contains(&format!("{}-chart-2", rig.terminal.config().login)), "{page}");

    // The first keeps working meanwhile; the second keeps being refused (at its backoff's pace,
    // not every cycle) while the first polls.
    let attempts = second.stats().hello_attempts;
    let until = Instant::now() + Duration::from_millis(2_500);
    while Instant::now() < until {
        rig.terminal.step().await.expect("the first EA polls");
        let r = second.step().await;
        assert!(
            r.is_ok()
                || r.as_ref().err().and_then(LinkError::problem_code).is_none()
                || r.as_ref().err().and_then(LinkError::problem_code)
                    == Some(ea::PROBLEM_ANOTHER_EA),
            "{r:?}"
        );
        assert!(second.session_id().is_none(), "let in while the first polls");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tries = second.stats().hello_attempts - attempts;
    assert!((1..=4).contains(&tries), "{tries} hellos in 2.5 s: the refusal backs off");

    // The first stops (removed from its chart): the second is let in once it has been silent
    // for the link's limit (1 s here), within the EA's backoff.
    let took = until_connected(&mut second, Duration::from_secs(15)).await;
    second.step().await.expect("the second EA polls");
    assert!(second.stats().polls > 0);
    eprintln!("the second EA connected {took:?} after the first stopped");

    // And now the first is the second one: refused in turn.
    let err = rig.terminal.hello().await.expect_err("the first is now the other");
    assert_eq!(err.problem_code(), Some(ea::PROBLEM_ANOTHER_EA), "{err}");
    node.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_terminal_keeps_its_instance_and_is_let_in_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(dir.path(), |_| {}).await;
    let mut rig = Rig::new(&node.ea_url(), &node.key_id, &node.secret, 400);
    rig.replay.advance().expect("advance");
    rig.catch_up(20).await;
    assert!(rig.terminal.session_id().is_some());
    // The terminal restarts (the same chart of the same installation: the same instance) while
    // its last poll may still be counted as live: it says hello and goes on at once.
    rig.faults.crash();
    rig.terminal.step().await.expect("the restarted EA says hello at once");
    assert_eq!(rig.terminal.stats().restarts, 1);
    assert!(rig.terminal.session_id().is_some());
    node.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_key_id_is_named_in_the_eas_journal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(dir.path(), |_| {}).await;
    let mut rig = Rig::new(&node.ea_url(), "ea-key-typo", &node.secret, 400);
    let err = rig.terminal.step().await.expect_err("an unknown key is refused");
    assert!(matches!(err, LinkError::UnknownKey(ref k) if k == "ea-key-typo"), "{err}");
    let line = rig.terminal.stats().journal.back().cloned().unwrap_or_default();
    assert!(line.contains("does not know the key id \"ea-key-typo\""), "{line}");
    // Nothing in the unsigned answer was acted on: no session, counted as ignored.
    assert!(rig.terminal.session_id().is_none());
    assert_eq!(rig.terminal.stats().ignored_answers, 1);
    // A wrong secret with a known key id still reads as a signature failure, not this.
    let mut wrong = Rig::new(&node.ea_url(), &node.key_id, "tcs_not_the_secret", 400);
    let err = wrong.terminal.step().await.expect_err("a wrong secret is refused");
    assert!(!matches!(err, LinkError::UnknownKey(_)), "{err}");
    node.shutdown.trigger();
}

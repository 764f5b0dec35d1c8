//! The node's sync module without a hub (the tests with a real hub and real QUIC are the root
//! package's `tests/sync`): `enrol` before `init`, an unreachable hub, no pin before enrolment,
//! and `connect` to an address where no hub answers ends in a bounded time with a typed error.

use std::time::{Duration, Instant};

use clap::Parser;
use tradecast_node::cli::{Cli, CliError, run};
use tradecast_node::store::Store;
use tradecast_node::sync::client::{self, ConnectError};
use tradecast_node::sync::enrol::EnrolError;

fn enrol_cli(data: &std::path::Path, hub: &str) -> Result<String, CliError> {
    let cli = Cli::parse_from([
        "tradecast-node",
        "enrol",
        "--data",
        data.to_str().unwrap(),
        "--hub",
        hub,
        "--code",
        "ABCDE-12345",
    ]);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    run(cli, &mut out, &mut err).map(|()| String::from_utf8(out).unwrap())
}

#[test]
fn sync_enrol_before_init_says_run_init() {
    let dir = tempfile::tempdir().unwrap();
    let r = enrol_cli(dir.path(), "127.0.0.1:9");
    let e = r.expect_err("no identity");
    assert!(matches!(e, CliError::Enrol(EnrolError::NoIdentity)), "{e:?}");
    assert!(e.to_string().contains("tradecast-node init"), "{e}");
}

#[test]
fn sync_enrol_with_no_hub_there_fails_and_pins_nothing() {
    let dir = tempfile::tempdir().unwrap();
    tradecast_node::serve::init(dir.path()).unwrap();
    // Port 9 (discard) on loopback: nothing listens.
    let e = enrol_cli(dir.path(), "127.0.0.1:9").expect_err("unreachable");
    assert!(matches!(e, CliError::Enrol(EnrolError::Unreachable { .. })), "{e:?}");
    let store = Store::open(&dir.path().join(tradecast_node::store::FILE_NAME)).unwrap();
    assert_eq!(tradecast_node::sync::hub_pin(&store).unwrap(), None);
}

#[tokio::test]
async fn sync_connect_to_a_silent_address_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    tradecast_node::serve::init(dir.path()).unwrap();
    let store = Store::open(&dir.path().join(tradecast_node::store::FILE_NAME)).unwrap();
    let me = store.read().unwrap().identity().unwrap().unwrap();
    // A bound UDP socket that never answers: the handshake cannot complete.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let started = Instant::now();
    let r = client::connect(&me, me.identity_key(), silent.local_addr().unwrap()).await;
    let took = started.elapsed();
    assert!(matches!(r, Err(ConnectError::Timeout(_) | ConnectError::Handshake(_))), "{r:?}");
    assert!(took < client::CONNECT_TIMEOUT + Duration::from_secs(2), "{took:?}");
}

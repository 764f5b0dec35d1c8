//! A hub run as two instances on one PostgreSQL database (one hub key, the `postgres` cluster
//! bus): a node enrolled with both addresses syncs with the first; when that instance stops,
//! the node moves to the other and nothing it appended is lost or committed twice.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tradecast_hub::config::{BusKind, Config, RedactedUrl};
use tradecast_node::sync::driver::{self, SyncConfig};
use tradecast_protocol::StreamId;

use super::{
    append_heartbeats, identity, node_dir, now_ms, open_store, owner_token, wait_acked, wait_until,
};

fn pg_admin_url() -> String {
    std::env::var("TRADECAST_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

async fn admin_sql(sql: String) {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(&pg_admin_url()).await.expect("PostgreSQL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut c).await.unwrap();
    c.close().await.unwrap();
}

/// A fresh PostgreSQL database, dropped with this value.
struct PgDb {
    url: String,
    name: String,
}

impl PgDb {
    async fn new() -> PgDb {
        let name = format!("tc_failover_{}", tradecast_hub::ids::random_hex(8));
        admin_sql(format!("CREATE DATABASE {name}")).await;
        let base = pg_admin_url();
        let url = format!("{}/{name}", base.rsplit_once('/').unwrap().0);
        PgDb { url, name }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(admin_sql(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")));
        })
        .join()
        .ok();
    }
}

fn instance_config(db: &PgDb, data: &std::path::Path) -> Config {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: Some(data.to_owned()),
        database_url: Some(RedactedUrl::new(&db.url)),
        ..Default::default()
    };
    config.cluster.bus = Some(BusKind::Postgres);
    config.auth.argon2_memory_kib = 64;
    config.auth.argon2_iterations = 1;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_a_node_moves_to_the_other_hub_instance_and_misses_nothing() {
    let db = PgDb::new().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config_a = instance_config(&db, dir_a.path());
    // One deployment, one hub key: both instances start from the same secrets.
    let secrets = tradecast_hub::load_secrets(&config_a, std::iter::empty()).unwrap();
    let a = tradecast_hub::start(config_a, secrets.clone()).await.unwrap();
    let b = tradecast_hub::start(instance_config(&db, dir_b.path()), secrets).await.unwrap();

    // The owner makes an enrolment code at A.
    let http = reqwest::Client::new();
    let token = owner_token(&a, &http).await;
    let code: Value = http
        .post(format!("http://{}/api/v1/devices/enrolment-codes", a.addr))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let code = code["code"].as_str().expect("a code");

    // The node enrols with both addresses; the first is asked, both are pinned.
    let (dir, _) = node_dir();
    let store = Arc::new(open_store(&dir));
    let both = format!("{}, {}", a.addr, b.addr);
    tradecast_node::sync::enrol::enrol(&store, &both, code, "failover node", now_ms())
        .await
        .expect("enrolled at the first instance");
    let pin = tradecast_node::sync::hub_pin(&store).unwrap().unwrap();
    assert_eq!(pin.addrs(), vec![a.addr.to_string(), b.addr.to_string()]);
    let node = identity(&store);
    let me = node.device_id();

    let config = SyncConfig { backoff_base_ms: 50, backoff_max_ms: 500, ..Default::default() };
    let sync = driver::spawn_failover(
        store.clone(),
        identity(&store),
        pin.key,
        vec![a.quic_addr, b.quic_addr],
        config,
    );
    // The DEVICE stream holds the node's keys record (seq 1), then its heartbeats.
    let tip = |store: &tradecast_node::store::Store| {
        store.read().unwrap().outbox_tip(StreamId::DEVICE).unwrap()
    };
    append_heartbeats(&store, 20);
    sync.appended();
    wait_acked(&sync, StreamId::DEVICE, tip(&store), Duration::from_secs(60)).await;
    assert!(a.state.quic_peers.is_connected(&me), "synced with the first instance");

    // The first instance stops; the node moves to the second and goes on appending.
    a.stop().await.unwrap();
    append_heartbeats(&store, 25);
    sync.appended();
    let last = tip(&store);
    assert_eq!(last, 46);
    wait_acked(&sync, StreamId::DEVICE, last, Duration::from_secs(60)).await;
    wait_until("the node's session at the second instance", || {
        b.state.quic_peers.is_connected(&me)
    })
    .await;
    let rows =
        tradecast_hub::quic::store::records(&b.state.db, &me, StreamId::DEVICE).await.unwrap();
    let seqs: Vec<u64> = rows.iter().map(|r| r.header().seq).collect();
    assert_eq!(seqs, (1..=last).collect::<Vec<u64>>(), "every record once, in order");
    sync.stop().await.unwrap();
    b.stop().await.unwrap();
}

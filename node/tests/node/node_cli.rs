//! `tradecast-node init`, `ea-key new`, `run` and `status` as a trader runs them: the device id
//! printed, the key shown once (`--json`), flags and `TRADECAST_*` over the config file, JSON
//! logs, and no secret (EA secret, API token) ever in a log line.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tradecast_protocol::DeviceId;
use tradecast_protocol::link_auth;

fn node(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tradecast-node")).args(args).output().expect("the binary runs")
}

fn free() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr")
}

fn wait_for(addr: SocketAddr) {
    for _ in 0..400 {
        if TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("nothing listens on {addr}");
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).expect("UTF-8")
}

fn init(dir: &Path) -> String {
    stdout(&node(&["init", "--data", dir.to_str().expect("path")])).trim().to_owned()
}

#[test]
fn init_prints_the_device_id_once_and_ea_key_prints_the_secret_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = init(dir.path());
    DeviceId::parse(&id).expect("a checksummed device id");
    let again = node(&["init", "--data", dir.path().to_str().expect("path")]);
    assert!(!again.status.success(), "a second init must not replace the identity");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already has an identity"));
    let out =
        stdout(&node(&["ea-key", "new", "--data", dir.path().to_str().expect("p"), "--json"]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    let obj = v.as_object().expect("object");
    assert_eq!(obj.len(), 2, "{out}");
    assert!(v["key_id"].as_str().is_some_and(|k| k.starts_with("ea_")));
    assert!(v["secret"].as_str().is_some_and(|s| s.starts_with("tcs_") && s.len() == 52));
    // The secret is stored sealed: its text is nowhere in the data dir's files.
    let secret = v["secret"].as_str().expect("secret");
    for entry in std::fs::read_dir(dir.path()).expect("dir") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("file");
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
    }
    let text = stdout(&node(&["ea-key", "new", "--data", dir.path().to_str().expect("p")]));
    assert!(text.contains("key id: ea_") && text.contains("not shown again"), "{text}");
}

#[test]
fn run_takes_env_over_the_config_logs_json_and_never_a_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("path").to_owned();
    init(dir.path());
    let out = stdout(&node(&["ea-key", "new", "--data", &data, "--json"]));
    let key: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    let (key_id, secret) = (
        key["key_id"].as_str().expect("id").to_owned(),
        key["secret"].as_str().expect("s").to_owned(),
    );
    let token = std::fs::read_to_string(dir.path().join("api-token")).expect("token");
    let (in_file, by_env, ea) = (free(), free(), free());
    let config = std::fs::read_to_string(dir.path().join("config.toml")).expect("config");
    std::fs::write(
        dir.path().join("config.toml"),
        config.replace("127.0.0.1:7342", &in_file.to_string()),
    )
    .expect("write config");
    let log_path = dir.path().join("node.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tradecast-node"))
        .args(["run", "--data", &data, "--ea-listen", &ea.to_string(), "--log-format", "json"])
        .env("TRADECAST_API_LISTEN", by_env.to_string())
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("run");
    wait_for(by_env);
    wait_for(ea);
    assert!(TcpStream::connect(in_file).is_err(), "the environment overrides the file");

    // Traffic that a careless log would leak secrets in: a signed hello, a forged one, an API
    // call with the token, a new key made through the API.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    let api_secret = rt.block_on(async {
        let c = reqwest::Client::new();
        for (i, s) in [secret.as_str(), "forged-secret-xyz"].iter().enumerate() {
            let body = br#"{"login":1}"#.to_vec();
            let ts = tradecast_node::runtime::wall_ms().to_string();
            let nonce = format!("cli-test-nonce-{i:04}");
            let sig =
                link_auth::sign_request(s.as_bytes(), "POST", "/ea/v1/hello", &ts, &nonce, &body);
            let r = c
                .post(format!("http://{ea}/ea/v1/hello"))
                .header(link_auth::HEADER_KEY, &key_id)
                .header(link_auth::HEADER_TIMESTAMP, &ts)
                .header(link_auth::HEADER_NONCE, &nonce)
                .header(link_auth::HEADER_SIGNATURE, sig)
                .body(body)
                .send()
                .await
                .expect("link answers");
            assert_eq!(r.status().as_u16(), if i == 0 { 400 } else { 401 });
        }
        let r = c
            .post(format!("http://{by_env}/api/v1/ea-keys"))
            .bearer_auth(token.trim())
            .send()
            .await
            .expect("api");
        assert_eq!(r.status().as_u16(), 201);
        let v: serde_json::Value = r.json().await.expect("json");
        let r = c.get(format!("http://{by_env}/api/v1/status")).send().await.expect("api");
        assert_eq!(r.status().as_u16(), 401, "the API needs the token");
        v["secret"].as_str().expect("secret").to_owned()
    });
    // `status` finds the node where the environment put it, and shows the link.
    let st = Command::new(env!("CARGO_BIN_EXE_tradecast-node"))
        .args(["status", "--data", &data])
        .env("TRADECAST_API_LISTEN", by_env.to_string())
        .output()
        .expect("status");
    let text = stdout(&st);
    assert!(text.contains("device") && text.contains("EA link"), "{text}");
    // `publish`: everything private until the trader says otherwise, per data kind.
    let publish = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tradecast-node"))
            .args(["publish", "--data", &data])
            .args(args)
            .env("TRADECAST_API_LISTEN", by_env.to_string())
            .output()
            .expect("publish")
    };
    let text = stdout(&publish(&[]));
    assert_eq!(text.matches("private (sealed)").count(), 4, "{text}");
    let text = stdout(&publish(&["--on", "closed-trades,equity", "--off", "daily-summary"]));
    assert!(text.contains("closed-trades       published"), "{text}");
    assert!(text.contains("equity              published"), "{text}");
    assert!(text.contains("balance-operations  private"), "{text}");
    let bad = publish(&["--on", "positions"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("`positions` is not a data kind"));
    let text = stdout(&publish(&[]));
    assert_eq!(text.matches("published").count(), 2, "the refused change changed nothing: {text}");
    let text = stdout(&publish(&["--off", "all"]));
    assert_eq!(text.matches("private (sealed)").count(), 4, "{text}");
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log_path).expect("log");
    assert!(log.lines().count() >= 3, "{log}");
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
    for s in [secret.as_str(), api_secret.as_str(), token.trim()] {
        assert!(!log.contains(s), "a secret reached the log");
    }
    assert!(log.contains("request refused"), "the forged request is logged (without secrets)");
}

#[test]
fn a_quarantined_relay_log_stays_so_across_restarts_until_released_from_the_cli() {
    use tradecast_protocol::session::Source;
    let dir = tempfile::tempdir().expect("tempdir");
    init(dir.path());
    let provider = tradecast_protocol::Identity::from_secret_bytes(&[7; 32], &[8; 32]);
    let source = Source::Relay(provider.device_id());
    let keys = tradecast_protocol::Record::sign(
        &provider,
        tradecast_protocol::HeaderFields {
            stream: tradecast_protocol::StreamId::DEVICE,
            seq: 1,
            prev_hash: tradecast_protocol::ChainHash::GENESIS,
            created_at_ms: 1_000,
        },
        &tradecast_protocol::Body::DeviceKeys(tradecast_protocol::DeviceKeys {
            identity: provider.identity_key(),
            sealing: provider.sealing_public_key(),
            label: "provider".into(),
            at_ms: 1_000,
            account_fingerprint: None,
        }),
    );
    {
        // What the sync driver does on the session's QuarantineSource (the hub equivocated).
        let path = dir.path().join(tradecast_node::store::FILE_NAME);
        let store = tradecast_node::store::Store::open(&path).expect("store");
        store
            .write(|tx| {
                tx.put_source_item(source, 4, &keys)?;
                tx.quarantine_source(source, 1_000)?;
                tx.quarantine_source(source, 2_000) // the first instant stays
            })
            .expect("quarantined");
        let held = store.read().expect("view").held_sources(0).expect("sources");
        let relay = held.iter().find(|h| h.source == source).expect("the relay log is held");
        assert_eq!((relay.committed, relay.quarantined_at_ms), (4, Some(1_000)));
        assert_eq!(held[0].quarantined_at_ms, None, "the inbox is not");
    }
    let data = dir.path().to_str().expect("path");
    let text = stdout(&node(&["providers", "--data", data]));
    assert!(
        text.contains(&format!("source {}  item 4  QUARANTINED since 1000", source.to_text())),
        "{text}"
    );
    let bad = node(&["providers", "--data", data, "--release-source", "relay:nope"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a source"));
    let text = stdout(&node(&["providers", "--data", data, "--release-source", &source.to_text()]));
    assert!(text.contains(&format!("released {}", source.to_text())), "{text}");
    assert!(text.contains(&format!("source {}  item 4  ok", source.to_text())), "{text}");
    let again = node(&["providers", "--data", data, "--release-source", &source.to_text()]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("is not quarantined"));
}

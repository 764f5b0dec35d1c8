//! Sealing: stream keys, AAD binding, tampering, wrong keys.

use tradecast_protocol::seal::{self, NONCE_LEN, TAG_LEN};
use tradecast_protocol::{OpenError, StreamId, StreamKey};

use crate::support::{identity, rng};

#[test]
fn a_sealed_body_opens_only_at_its_place_with_its_key() {
    let owner = identity(1);
    let author = owner.device_id();
    let key = StreamKey::derive(&owner, &author, StreamId::PRIVATE);
    let sealed = seal::seal(&key, &author, StreamId::PRIVATE, 7, b"equity 10012.50", &mut rng(2));
    assert_eq!(sealed.len(), NONCE_LEN + 15 + TAG_LEN);
    let opened = seal::open(&key, &author, StreamId::PRIVATE, 7, &sealed).unwrap();
    assert_eq!(opened.as_slice(), b"equity 10012.50");

    let check = |result: Result<zeroize::Zeroizing<Vec<u8>>, OpenError>, expect: OpenError| {
        assert_eq!(result.map(|v| v.to_vec()), Err(expect));
    };
    // Moved to another seq, stream or author: the AAD differs.
    check(seal::open(&key, &author, StreamId::PRIVATE, 8, &sealed), OpenError::CannotOpen);
    check(seal::open(&key, &author, StreamId::SHARED, 7, &sealed), OpenError::CannotOpen);
    let stranger = identity(3).device_id();
    check(seal::open(&key, &stranger, StreamId::PRIVATE, 7, &sealed), OpenError::CannotOpen);
    // Another device's key.
    let other = StreamKey::derive(&identity(4), &author, StreamId::PRIVATE);
    check(seal::open(&other, &author, StreamId::PRIVATE, 7, &sealed), OpenError::CannotOpen);
    // Every flipped bit.
    for i in 0..sealed.len() {
        let mut tampered = sealed.clone();
        tampered[i] ^= 0x10;
        check(seal::open(&key, &author, StreamId::PRIVATE, 7, &tampered), OpenError::CannotOpen);
    }
    // Too short to hold a nonce and a tag.
    check(
        seal::open(&key, &author, StreamId::PRIVATE, 7, &sealed[..NONCE_LEN + TAG_LEN - 1]),
        OpenError::TooShort,
    );
}

#[test]
fn stream_keys_are_deterministic_distinct_per_stream_and_transferable_by_pairing() {
    let owner = identity(5);
    let author = owner.device_id();
    let a = StreamKey::derive(&owner, &author, StreamId::PRIVATE);
    let b = StreamKey::derive(&owner, &author, StreamId::PRIVATE);
    let c = StreamKey::derive(&owner, &author, StreamId::SHARED);
    assert_eq!(*a.to_bytes(), *b.to_bytes());
    assert_ne!(*a.to_bytes(), *c.to_bytes());
    assert_eq!(format!("{a:?}"), "StreamKey(<redacted>)");
    // A paired device receives the key bytes and opens what the first device sealed.
    let paired = StreamKey::from_bytes(*a.to_bytes());
    let sealed = seal::seal(&a, &author, StreamId::PRIVATE, 1, b"x", &mut rng(6));
    assert_eq!(
        seal::open(&paired, &author, StreamId::PRIVATE, 1, &sealed).unwrap().as_slice(),
        b"x"
    );
}

#[test]
fn nonces_come_from_the_handed_rng() {
    let owner = identity(7);
    let author = owner.device_id();
    let key = StreamKey::derive(&owner, &author, StreamId::PRIVATE);
    let one = seal::seal(&key, &author, StreamId::PRIVATE, 1, b"x", &mut rng(8));
    let same = seal::seal(&key, &author, StreamId::PRIVATE, 1, b"x", &mut rng(8));
    let other = seal::seal(&key, &author, StreamId::PRIVATE, 1, b"x", &mut rng(9));
    assert_eq!(one, same, "deterministic for a seeded rng");
    assert_ne!(one[..NONCE_LEN], other[..NONCE_LEN]);
}

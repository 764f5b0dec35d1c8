//! Identities: generation from a handed RNG, device ids, key parsing.

use tradecast_protocol::{DeviceId, Identity, IdentityKey};

use crate::support::{identity, rng};

#[test]
fn the_same_seed_gives_the_same_identity_and_different_seeds_differ() {
    assert_eq!(identity(1).device_id(), identity(1).device_id());
    assert_ne!(identity(1).device_id(), identity(2).device_id());
    assert_ne!(identity(1).sealing_public_key(), identity(2).sealing_public_key());
}

#[test]
fn device_id_is_the_sha256_prefix_of_the_identity_key_and_survives_text() {
    let id = identity(3);
    let key = id.identity_key();
    assert_eq!(key.device_id(), id.device_id());
    assert_eq!(DeviceId::of(&key), id.device_id());
    let text = id.device_id().to_text();
    assert_eq!(text.parse::<DeviceId>(), Ok(id.device_id()));
    assert_eq!(DeviceId::from_hex(&id.device_id().to_hex()), Ok(id.device_id()));
}

#[test]
fn secrets_restore_the_same_identity() {
    let id = Identity::generate(&mut rng(4));
    let secrets = id.to_secret_bytes();
    let restored = Identity::from_secret_bytes(&secrets.ed25519_seed, &secrets.x25519_secret);
    assert_eq!(restored.device_id(), id.device_id());
    assert_eq!(restored.sealing_public_key(), id.sealing_public_key());
    let sig = restored.sign(b"t/", b"m");
    assert!(id.identity_key().verify(b"t/", b"m", &sig));
}

#[test]
fn identity_keys_parse_from_bytes_and_hex() {
    let key = identity(5).identity_key();
    assert_eq!(IdentityKey::from_bytes(&key.to_bytes()), Ok(key));
    assert_eq!(IdentityKey::from_hex(&hex::encode(key.to_bytes())), Ok(key));
    assert!(IdentityKey::from_hex("00").is_err());
}

//! Access tokens: short-lived EdDSA (Ed25519) JWTs. The first key of `jwt_signing_keys` signs;
//! every listed key verifies, chosen by the token's `kid`, so a key is rotated by putting a new
//! one first and dropping the old one after one access-token lifetime. The public keys are
//! served as a JWK set.
//!
//! Expiry is checked against the hub's [`Clock`](crate::ids::Clock), not inside the JWT
//! library, so tests move time instead of sleeping.

use std::collections::HashMap;

use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::accounts::Role;
use crate::error::ApiError;
use crate::secrets::HubSecrets;

/// `iss` and `aud` of every token.
pub const ISSUER: &str = "tradecast-hub";

/// What an access token asserts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Account id.
    pub sub: String,
    /// Role when the token was issued.
    pub role: Role,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Expires at, unix seconds.
    pub exp: i64,
    /// Token id.
    pub jti: String,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
}

/// One public key of the JWK set.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Jwk {
    /// `OKP`.
    pub kty: &'static str,
    /// `Ed25519`.
    pub crv: &'static str,
    /// `EdDSA`.
    pub alg: &'static str,
    /// `sig`.
    #[serde(rename = "use")]
    pub use_: &'static str,
    /// Key id.
    pub kid: String,
    /// base64url public key.
    pub x: String,
}

/// Signing and verifying keys.
pub struct JwtKeys {
    signing_kid: String,
    signing: EncodingKey,
    verifying: HashMap<String, DecodingKey>,
    jwks: Vec<Jwk>,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys").field("signing_kid", &self.signing_kid).finish_non_exhaustive()
    }
}

/// PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410), followed by the 32-byte seed.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

impl JwtKeys {
    /// Builds the key set from the secrets.
    pub fn new(secrets: &HubSecrets) -> JwtKeys {
        let mut verifying = HashMap::new();
        let mut jwks = Vec::new();
        let mut signing = None;
        for (kid, seed) in &secrets.jwt_keys {
            let public = SigningKey::from_bytes(seed).verifying_key().to_bytes();
            if signing.is_none() {
                let mut der = zeroize::Zeroizing::new(PKCS8_ED25519_PREFIX.to_vec());
                der.extend_from_slice(&seed[..]);
                signing = Some((kid.clone(), EncodingKey::from_ed_der(&der)));
            }
            verifying.insert(kid.clone(), DecodingKey::from_ed_der(&public));
            jwks.push(Jwk {
                kty: "OKP",
                crv: "Ed25519",
                alg: "EdDSA",
                use_: "sig",
                kid: kid.clone(),
                x: data_encoding::BASE64URL_NOPAD.encode(&public),
            });
        }
        // HubSecrets::load refuses an empty key list, so the first key exists.
        let (signing_kid, signing) = signing.expect("at least one JWT key");
        JwtKeys { signing_kid, signing, verifying, jwks }
    }

    /// The public keys, for `/api/v1/auth/jwks.json`.
    pub fn jwks(&self) -> &[Jwk] {
        &self.jwks
    }

    /// Signs an access token for `sub` valid `ttl_s` seconds from `now_ms`.
    pub fn issue(
        &self,
        sub: &str,
        role: Role,
        now_ms: i64,
        ttl_s: u64,
    ) -> Result<(String, i64), ApiError> {
        let iat = now_ms / 1000;
        let exp = iat + i64::try_from(ttl_s).unwrap_or(900);
        let claims = Claims {
            sub: sub.to_string(),
            role,
            iat,
            exp,
            jti: crate::ids::random_hex(12),
            iss: ISSUER.into(),
            aud: ISSUER.into(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.signing_kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.signing)
            .map_err(|e| ApiError::Internal(e.to_string().into()))?;
        Ok((token, exp * 1000))
    }

    /// Verifies signature, algorithm, issuer, audience and expiry.
    pub fn verify(&self, token: &str, now_ms: i64) -> Result<Claims, ApiError> {
        if token.len() > 4096 {
            return Err(ApiError::InvalidToken);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| ApiError::InvalidToken)?;
        if header.alg != Algorithm::EdDSA {
            return Err(ApiError::InvalidToken);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.verifying.get(kid))
            .ok_or(ApiError::InvalidToken)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.validate_exp = false;
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|_| ApiError::InvalidToken)?;
        if data.claims.exp * 1000 <= now_ms {
            return Err(ApiError::TokenExpired);
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_by_kid() {
        let old = HubSecrets::generate_ephemeral();
        let mut new = HubSecrets::generate_ephemeral();
        let old_key = old.jwt_keys[0].1.clone();
        new.jwt_keys.push((old.jwt_keys[0].0.clone(), old_key));
        let old_keys = JwtKeys::new(&old);
        let new_keys = JwtKeys::new(&new);
        let (t_old, _) = old_keys.issue("u1", Role::Admin, 1_000_000, 60).unwrap();
        // The new set (new key first, old second) still accepts tokens of the old key …
        assert_eq!(new_keys.verify(&t_old, 1_000_000).unwrap().sub, "u1");
        // … while tokens it issues are unknown to a hub that has only the old key.
        let (t_new, _) = new_keys.issue("u2", Role::Subscriber, 1_000_000, 60).unwrap();
        assert!(matches!(old_keys.verify(&t_new, 1_000_000), Err(ApiError::InvalidToken)));
        assert!(matches!(new_keys.verify(&t_new, 1_061_000), Err(ApiError::TokenExpired)));
        assert_eq!(new_keys.jwks().len(), 2);
    }

    #[test]
    fn tampered_tokens_are_refused() {
        let keys = JwtKeys::new(&HubSecrets::generate_ephemeral());
        let (t, _) = keys.issue("u1", Role::Subscriber, 5_000, 60).unwrap();
        let mut parts: Vec<String> = t.split('.').map(String::from).collect();
        // Claim a higher role in the payload, keep the signature.
        let payload = data_encoding::BASE64URL_NOPAD.decode(parts[1].as_bytes()).unwrap();
        let forged = String::from_utf8(payload).unwrap().replace("subscriber", "owner");
        parts[1] = data_encoding::BASE64URL_NOPAD.encode(forged.as_bytes());
        for bad in [parts.join("."), "x.y.z".into(), String::new(), "a".repeat(5000)] {
            assert!(matches!(keys.verify(&bad, 5_000), Err(ApiError::InvalidToken)), "{bad}");
        }
    }
}

//! Telegram WebApp `initData`, validated from the raw query string the Mini App was given
//! (`Telegram.WebApp.initData`), never from a parsed and re-serialised object.
//!
//! 1. Split on `&`; each piece is `key=value`, both percent-decoded (form encoding: `+` is a
//!    space). A piece without `=`, a bad escape, text that is not UTF-8 or a key given twice is
//!    [`InitDataError::Malformed`]. No allow-list of keys: fields Telegram adds later are part
//!    of the check like any other.
//! 2. The data-check string: every field but `hash` (`signature` stays in), sorted by key,
//!    `key=value` joined by `\n`. The `user` value is the decoded text as sent: the JSON is
//!    parsed only to read the id, never written back.
//! 3. `hash` (64 hex digits) must equal HMAC-SHA256(secret, data-check string), where secret =
//!    HMAC-SHA256(key `"WebAppData"`, bot token); compared in constant time.
//! 4. When `signature` is present, it must be Telegram's Ed25519 signature (base64url) of
//!    `"{bot_id}:WebAppData\n"` + the data-check string without `hash` and `signature`
//!    (third-party validation), under the configured public key — Telegram's production key by
//!    default. A present but wrong signature is refused even though the hash matched.
//! 5. `auth_date` (unix seconds) no older than 24 h and no more than [`FUTURE_SKEW_MS`] ahead.

use ed25519_dalek::{Signature, VerifyingKey};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Telegram's Ed25519 public key for Mini App data in production (Bot API docs, "Validating
/// data for third-party use").
pub const TELEGRAM_PUBLIC_KEY_HEX: &str =
    "e7bf03a2fa4602af4580703d88dda5bb59f32ed8b02a56c187fe7d34caed242d";

/// How old `auth_date` may be (and how long a session lasts after it): 24 h.
pub const MAX_AGE_MS: i64 = 86_400_000;

/// How far ahead of the hub's clock `auth_date` may be (clocks differ a little).
pub const FUTURE_SKEW_MS: i64 = 60_000;

/// Why an `initData` string was refused. The messages name the check, never the values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitDataError {
    /// Not a query string of `key=value` pieces (bad escape, not UTF-8, repeated key, …).
    #[error("initData is malformed: {0}")]
    Malformed(&'static str),
    /// No `hash` field.
    #[error("initData has no hash")]
    MissingHash,
    /// The `hash` does not match the data and this bot's token.
    #[error("initData hash does not match")]
    HashMismatch,
    /// A `signature` is present but is not Telegram's signature of this data.
    #[error("initData signature is not valid")]
    BadSignature,
    /// No usable `auth_date`.
    #[error("initData has no valid auth_date")]
    MissingAuthDate,
    /// `auth_date` is more than 24 h old.
    #[error("initData is older than 24 hours")]
    Stale,
    /// `auth_date` is ahead of the hub's clock by more than the allowed skew.
    #[error("initData auth_date is in the future")]
    FromTheFuture,
    /// No `user` field with an integer `id`.
    #[error("initData has no user with an id")]
    MissingUser,
}

impl InitDataError {
    /// A stable short name (metrics, tests).
    pub fn code(&self) -> &'static str {
        match self {
            InitDataError::Malformed(_) => "malformed",
            InitDataError::MissingHash => "missing-hash",
            InitDataError::HashMismatch => "hash-mismatch",
            InitDataError::BadSignature => "bad-signature",
            InitDataError::MissingAuthDate => "missing-auth-date",
            InitDataError::Stale => "stale",
            InitDataError::FromTheFuture => "from-the-future",
            InitDataError::MissingUser => "missing-user",
        }
    }
}

/// A bot token that cannot be used to check initData.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The token does not start with the bot's numeric id and `:`.
    #[error("the bot token does not start with the bot id")]
    BadToken,
    /// The configured public key is not 32 bytes of hex or not an Ed25519 point.
    #[error("the Mini App public key is not a 64-hex-digit Ed25519 key")]
    BadPublicKey,
}

/// Checks initData for one bot.
#[derive(Clone)]
pub struct Validator {
    secret: [u8; 32],
    bot_id: i64,
    public_key: VerifyingKey,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator").field("bot_id", &self.bot_id).finish_non_exhaustive()
    }
}

/// What a valid initData says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitData {
    /// `user.id`.
    pub telegram_user_id: i64,
    /// `user.first_name`, if given.
    pub first_name: Option<String>,
    /// `user.username`, if given.
    pub username: Option<String>,
    /// `auth_date`, unix ms.
    pub auth_date_ms: i64,
    /// `start_param` (`startapp=` of the link that opened the app), if any.
    pub start_param: Option<String>,
    /// Whether a `signature` was present (and verified).
    pub signed: bool,
}

/// The public key of `hex` (64 hex digits), or Telegram's production key for `None`.
pub fn public_key(hex: Option<&str>) -> Result<VerifyingKey, KeyError> {
    let hex = hex.unwrap_or(TELEGRAM_PUBLIC_KEY_HEX);
    let bytes: [u8; 32] = hex::decode(hex.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(KeyError::BadPublicKey)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::BadPublicKey)
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length: new_from_slice cannot fail.
    let Ok(mut m) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else { return [0; 32] };
    m.update(data);
    m.finalize().into_bytes().into()
}

impl Validator {
    /// A validator for the bot with `token`, checking signatures under `public_key`.
    pub fn new(token: &str, public_key: VerifyingKey) -> Result<Validator, KeyError> {
        let bot_id = token
            .split_once(':')
            .and_then(|(id, _)| id.parse::<i64>().ok())
            .filter(|id| *id > 0)
            .ok_or(KeyError::BadToken)?;
        Ok(Validator { secret: hmac(b"WebAppData", token.as_bytes()), bot_id, public_key })
    }

    /// Validates `raw` at `now_ms`.
    pub fn validate(&self, raw: &str, now_ms: i64) -> Result<InitData, InitDataError> {
        let mut fields = parse(raw)?;
        let hash_hex = take(&mut fields, "hash").ok_or(InitDataError::MissingHash)?;
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        let given: [u8; 32] = hex::decode(&hash_hex)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(InitDataError::HashMismatch)?;
        let expected = hmac(&self.secret, check_string(&fields, None).as_bytes());
        if !bool::from(given.ct_eq(&expected)) {
            return Err(InitDataError::HashMismatch);
        }
        let signature = fields.iter().find(|(k, _)| k == "signature").map(|(_, v)| v.clone());
        if let Some(sig) = &signature {
            let message =
                format!("{}:WebAppData\n{}", self.bot_id, check_string(&fields, Some("signature")));
            let bytes: [u8; 64] = data_encoding::BASE64URL_NOPAD
                .decode(sig.trim_end_matches('=').as_bytes())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or(InitDataError::BadSignature)?;
            self.public_key
                .verify_strict(message.as_bytes(), &Signature::from_bytes(&bytes))
                .map_err(|_| InitDataError::BadSignature)?;
        }
        let value = |key: &str| fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        let auth_date_ms = value("auth_date")
            .and_then(|v| v.parse::<i64>().ok())
            .and_then(|s| s.checked_mul(1000))
            .filter(|ms| *ms > 0)
            .ok_or(InitDataError::MissingAuthDate)?;
        if auth_date_ms > now_ms.saturating_add(FUTURE_SKEW_MS) {
            return Err(InitDataError::FromTheFuture);
        }
        if now_ms.saturating_sub(auth_date_ms) > MAX_AGE_MS {
            return Err(InitDataError::Stale);
        }
        let user: serde_json::Value = value("user")
            .and_then(|u| serde_json::from_str(u).ok())
            .ok_or(InitDataError::MissingUser)?;
        let telegram_user_id = user
            .get("id")
            .and_then(serde_json::Value::as_i64)
            .filter(|id| *id > 0)
            .ok_or(InitDataError::MissingUser)?;
        let text = |k: &str| user.get(k).and_then(serde_json::Value::as_str).map(str::to_owned);
        Ok(InitData {
            telegram_user_id,
            first_name: text("first_name"),
            username: text("username"),
            auth_date_ms,
            start_param: value("start_param").map(str::to_owned),
            signed: signature.is_some(),
        })
    }
}

/// The decoded `(key, value)` pairs of `raw`, in the order given.
fn parse(raw: &str) -> Result<Vec<(String, String)>, InitDataError> {
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for piece in raw.split('&') {
        let (k, v) = piece.split_once('=').ok_or(InitDataError::Malformed("a field has no `=`"))?;
        let (k, v) = (decode(k)?, decode(v)?);
        if k.is_empty() {
            return Err(InitDataError::Malformed("a field has an empty name"));
        }
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(InitDataError::Malformed("a field is given twice"));
        }
        out.push((k, v));
    }
    Ok(out)
}

fn take(fields: &mut Vec<(String, String)>, key: &str) -> Option<String> {
    let at = fields.iter().position(|(k, _)| k == key)?;
    Some(fields.remove(at).1)
}

/// `key=value` of the sorted `fields` joined by `\n`, leaving out `skip`.
fn check_string(fields: &[(String, String)], skip: Option<&str>) -> String {
    let kept: Vec<String> = fields
        .iter()
        .filter(|(k, _)| Some(k.as_str()) != skip)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    kept.join("\n")
}

/// Form-decodes one key or value: `+` → space, `%XX` → the byte; the result must be UTF-8.
fn decode(s: &str) -> Result<String, InitDataError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let bad = InitDataError::Malformed("a bad escape");
                let hex = bytes.get(i + 1..i + 3).ok_or(bad.clone())?;
                // Two hex digits exactly (`from_str_radix` alone would take a sign).
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return Err(bad);
                }
                let text = std::str::from_utf8(hex).map_err(|_| bad.clone())?;
                out.push(u8::from_str_radix(text, 16).map_err(|_| bad)?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| InitDataError::Malformed("text is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn vectors() -> Value {
        let text = include_str!("../../tests/fixtures/miniapp/vectors.json");
        serde_json::from_str(text).unwrap()
    }

    fn validator_of(v: &Value) -> Validator {
        let key = public_key(v["public_key_hex"].as_str()).unwrap();
        Validator::new(v["bot_token"].as_str().unwrap(), key).unwrap()
    }

    #[test]
    fn vectors_computed_by_the_python_script_agree() {
        let v = vectors();
        let validator = validator_of(&v);
        let now_ms = v["now_s"].as_i64().unwrap() * 1000;
        let all = v["vectors"].as_array().unwrap();
        assert!(all.len() >= 12);
        for case in all {
            let name = case["name"].as_str().unwrap();
            let got = validator.validate(case["init_data"].as_str().unwrap(), now_ms);
            if case["valid"].as_bool().unwrap() {
                let data = got.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(data.telegram_user_id, case["telegram_user_id"].as_i64().unwrap());
                assert_eq!(data.auth_date_ms, now_ms - 60_000, "{name}");
            } else {
                let e = got.expect_err(name);
                assert_eq!(e.code(), case["error"].as_str().unwrap(), "{name}: {e}");
            }
        }
    }

    #[test]
    fn the_data_check_string_is_the_scripts() {
        let v = vectors();
        let case = &v["vectors"][0];
        let mut fields = parse(case["init_data"].as_str().unwrap()).unwrap();
        take(&mut fields, "hash").unwrap();
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(check_string(&fields, None), case["data_check_string"].as_str().unwrap());
        let data = validator_of(&v)
            .validate(case["init_data"].as_str().unwrap(), v["now_s"].as_i64().unwrap() * 1000)
            .unwrap();
        assert!(data.signed);
        assert_eq!(data.start_param.as_deref(), Some("approve_sig 1&2=3"));
        assert_eq!(data.username.as_deref(), Some("vdkfrost"));
        assert_eq!(data.first_name.as_deref(), Some("Vladislav + Ünïcode"));
    }

    #[test]
    fn telegrams_signature_is_checked_under_its_production_key_by_default() {
        // The vectors are signed by the script's key, not Telegram's: with the default key a
        // signed vector fails on its signature, an unsigned one passes.
        let v = vectors();
        let validator =
            Validator::new(v["bot_token"].as_str().unwrap(), public_key(None).unwrap()).unwrap();
        let now_ms = v["now_s"].as_i64().unwrap() * 1000;
        let by_name = |n: &str| {
            v["vectors"].as_array().unwrap().iter().find(|c| c["name"] == n).unwrap()["init_data"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(validator.validate(&by_name("valid"), now_ms), Err(InitDataError::BadSignature));
        assert!(validator.validate(&by_name("valid_without_signature"), now_ms).is_ok());
    }

    #[test]
    fn age_limits_are_exact() {
        let v = vectors();
        let validator = validator_of(&v);
        let raw = v["vectors"][0]["init_data"].as_str().unwrap();
        let auth = (v["now_s"].as_i64().unwrap() - 60) * 1000;
        assert!(validator.validate(raw, auth + MAX_AGE_MS).is_ok());
        assert_eq!(validator.validate(raw, auth + MAX_AGE_MS + 1), Err(InitDataError::Stale));
        assert!(validator.validate(raw, auth - FUTURE_SKEW_MS).is_ok());
        assert_eq!(
            validator.validate(raw, auth - FUTURE_SKEW_MS - 1),
            Err(InitDataError::FromTheFuture)
        );
    }

    #[test]
    fn tokens_and_keys_are_checked() {
        let key = public_key(None).unwrap();
        assert_eq!(Validator::new("no-colon", key).unwrap_err(), KeyError::BadToken);
        assert_eq!(Validator::new("abc:def", key).unwrap_err(), KeyError::BadToken);
        assert!(Validator::new("123:abc", key).is_ok());
        assert_eq!(public_key(Some("zz")).unwrap_err(), KeyError::BadPublicKey);
        assert_eq!(public_key(Some(&"00".repeat(31))).unwrap_err(), KeyError::BadPublicKey);
    }

    #[test]
    fn decoding_refuses_bad_escapes_and_non_utf8() {
        assert_eq!(decode("a%20b+c").unwrap(), "a b c");
        assert!(decode("%").is_err());
        assert!(decode("%2").is_err());
        assert!(decode("%zz").is_err());
        assert!(decode("%ff").is_err());
        assert!(decode("%+1").is_err());
        assert!(parse("a").is_err());
        assert!(parse("a=1&").is_err());
        assert!(parse("=1").is_err());
    }

    /// Builds signed initData from `fields` the way Telegram does (for properties).
    fn sign(token: &str, fields: &[(String, String)]) -> String {
        let mut sorted = fields.to_vec();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let secret = hmac(b"WebAppData", token.as_bytes());
        let hash = hex::encode(hmac(&secret, check_string(&sorted, None).as_bytes()));
        let enc = |s: &str| {
            s.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        };
        let mut pieces: Vec<String> =
            fields.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect();
        pieces.push(format!("hash={hash}"));
        pieces.join("&")
    }

    const TOKEN: &str = "4242:token-for-properties";
    const NOW: i64 = 1_765_000_000_000;

    fn base(user_id: i64, extra: Vec<(String, String)>) -> Vec<(String, String)> {
        let mut f = vec![
            ("auth_date".to_string(), (NOW / 1000 - 5).to_string()),
            ("user".to_string(), format!("{{\"id\":{user_id},\"first_name\":\"A\"}}")),
        ];
        for (k, v) in extra {
            if !f.iter().any(|(seen, _)| *seen == k) && k != "hash" && k != "signature" {
                f.push((k, v));
            }
        }
        f
    }

    fn extra() -> impl Strategy<Value = Vec<(String, String)>> {
        proptest::collection::vec(("[a-z_]{1,12}", "\\PC{0,24}"), 0..5)
    }

    proptest! {
        #[test]
        fn any_signed_data_in_any_order_is_valid(
            id in 1i64..i64::MAX, extra in extra(), seed in any::<u64>()
        ) {
            let validator = Validator::new(TOKEN, public_key(None).unwrap()).unwrap();
            let fields = base(id, extra);
            let raw = sign(TOKEN, &fields);
            let mut pieces: Vec<&str> = raw.split('&').collect();
            // A deterministic shuffle from the seed.
            let n = pieces.len();
            for i in (1..n).rev() {
                let j = (seed.rotate_left(i as u32) % (i as u64 + 1)) as usize;
                pieces.swap(i, j);
            }
            let data = validator.validate(&pieces.join("&"), NOW).unwrap();
            prop_assert_eq!(data.telegram_user_id, id);
        }

        #[test]
        fn any_change_to_a_value_or_an_added_field_is_refused(
            id in 1i64..i64::MAX, extra in extra(), which in any::<prop::sample::Index>(),
            added in "[a-z]{1,8}"
        ) {
            let validator = Validator::new(TOKEN, public_key(None).unwrap()).unwrap();
            let fields = base(id, extra);
            let raw = sign(TOKEN, &fields);
            // Change one field's value.
            let mut changed = fields.clone();
            let i = which.index(changed.len());
            changed[i].1.push('x');
            let mut pieces: Vec<String> = sign(TOKEN, &changed).split('&').map(str::to_owned).collect();
            let original_hash = raw.rsplit_once("hash=").unwrap().1.to_string();
            *pieces.last_mut().unwrap() = format!("hash={original_hash}");
            prop_assert!(validator.validate(&pieces.join("&"), NOW).is_err());
            // Add a field.
            let more = format!("{raw}&zz{added}=1");
            prop_assert_eq!(validator.validate(&more, NOW), Err(InitDataError::HashMismatch));
            // Another bot's token.
            let other = Validator::new("4243:token-for-properties", public_key(None).unwrap()).unwrap();
            prop_assert_eq!(other.validate(&raw, NOW), Err(InitDataError::HashMismatch));
        }

        #[test]
        fn arbitrary_input_never_panics(raw in "\\PC{0,200}") {
            let validator = Validator::new(TOKEN, public_key(None).unwrap()).unwrap();
            let _ = validator.validate(&raw, NOW);
        }
    }
}

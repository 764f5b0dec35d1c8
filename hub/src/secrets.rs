//! Secrets: where they come from ([`SecretProvider`]: environment, a secrets directory, and in
//! development a generated file) and what they are ([`HubSecrets`]).
//!
//! A secret never reaches a log: values are `SecretString`/`Zeroizing`, `Debug` is redacted,
//! and errors name the secret, never its value. A vault is one more [`SecretProvider`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::config::{ENV_PREFIX, Mode};

/// The JWT signing keys: lines `kid:hex(32-byte Ed25519 seed)`; the first signs, all verify.
pub const JWT_SIGNING_KEYS: &str = "jwt_signing_keys";
/// 32 bytes (hex) that seal provider API-key secrets at rest.
pub const API_KEY_WRAPPING_KEY: &str = "api_key_wrapping_key";
/// The hub's Ed25519 identity seed (hex), pinned by nodes at enrolment.
pub const HUB_IDENTITY_KEY: &str = "hub_identity_key";

const ALL: &[&str] = &[JWT_SIGNING_KEYS, API_KEY_WRAPPING_KEY, HUB_IDENTITY_KEY];

/// Stripe's secret API key (`sk_live_…`/`sk_test_…`): Stripe is off without it.
pub const STRIPE_SECRET_KEY: &str = "stripe_secret_key";
/// The Stripe webhook endpoint's signing secret (the whole `whsec_…` string).
pub const STRIPE_WEBHOOK_SECRET: &str = "stripe_webhook_secret";
/// The Telegram bot's token: Telegram is off without it.
pub const TELEGRAM_BOT_TOKEN: &str = "telegram_bot_token";
/// The secret token Telegram sends in `X-Telegram-Bot-Api-Secret-Token` to the webhook.
pub const TELEGRAM_WEBHOOK_SECRET: &str = "telegram_webhook_secret";

/// Integrations' secrets: optional and never generated (absent means that integration is off).
const OPTIONAL: &[&str] =
    &[STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET, TELEGRAM_BOT_TOKEN, TELEGRAM_WEBHOOK_SECRET];

/// Why secrets could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// A provider failed to read a secret.
    #[error("secret `{name}`: cannot read {path}: {source}")]
    Read {
        /// The secret.
        name: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Production mode and no provider has the secret.
    #[error(
        "secret `{0}` is missing: production mode needs it (TRADECAST_HUB_SECRET_{up}, TRADECAST_HUB_SECRET_{up}_FILE or secrets_dir/{0})", up = .0.to_ascii_uppercase()
    )]
    Missing(String),
    /// The secret is not in the expected format.
    #[error("secret `{name}` is malformed: {reason}")]
    Malformed {
        /// The secret.
        name: String,
        /// What is wrong (never the value).
        reason: String,
    },
    /// Production mode and the secret is too weak.
    #[error("secret `{name}` is too weak: {reason}")]
    Weak {
        /// The secret.
        name: String,
        /// Why.
        reason: String,
    },
}

/// A source of named secrets.
pub trait SecretProvider: Send + Sync {
    /// Short name for messages ("env", "dir").
    fn describe(&self) -> String;
    /// The secret, if this provider has it.
    fn get(&self, name: &str) -> Result<Option<SecretString>, SecretError>;
}

/// `TRADECAST_HUB_SECRET_<NAME>` holds the value, or `TRADECAST_HUB_SECRET_<NAME>_FILE` a path.
pub struct EnvSecrets {
    vars: HashMap<String, String>,
}

impl EnvSecrets {
    /// From an environment snapshot (normally `std::env::vars()`).
    pub fn new(env: impl IntoIterator<Item = (String, String)>) -> Self {
        let prefix = format!("{ENV_PREFIX}SECRET_");
        let vars = env.into_iter().filter(|(k, _)| k.starts_with(&prefix)).collect();
        EnvSecrets { vars }
    }
}

impl SecretProvider for EnvSecrets {
    fn describe(&self) -> String {
        "environment".into()
    }
    fn get(&self, name: &str) -> Result<Option<SecretString>, SecretError> {
        let key = format!("{ENV_PREFIX}SECRET_{}", name.to_ascii_uppercase());
        if let Some(v) = self.vars.get(&key) {
            return Ok(Some(SecretString::from(v.clone())));
        }
        match self.vars.get(&format!("{key}_FILE")) {
            Some(path) => read_file(name, Path::new(path)).map(Some),
            None => Ok(None),
        }
    }
}

/// One file per secret in a directory (`/run/secrets/jwt_signing_keys`).
pub struct DirSecrets {
    dir: PathBuf,
}

impl DirSecrets {
    /// Reads from `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirSecrets { dir: dir.into() }
    }
}

impl SecretProvider for DirSecrets {
    fn describe(&self) -> String {
        format!("directory {}", self.dir.display())
    }
    fn get(&self, name: &str) -> Result<Option<SecretString>, SecretError> {
        let path = self.dir.join(name);
        if !path.exists() {
            return Ok(None);
        }
        read_file(name, &path).map(Some)
    }
}

fn read_file(name: &str, path: &Path) -> Result<SecretString, SecretError> {
    std::fs::read_to_string(path)
        .map(|s| SecretString::from(s.trim().to_string()))
        .map_err(|source| SecretError::Read { name: name.into(), path: path.into(), source })
}

/// The parsed secrets the hub runs with. `Debug` shows only key ids.
#[derive(Clone)]
pub struct HubSecrets {
    /// (kid, Ed25519 seed); the first signs new tokens.
    pub jwt_keys: JwtKeyList,
    /// Seals API-key secrets at rest (XChaCha20-Poly1305).
    pub api_key_wrapping_key: Zeroizing<[u8; 32]>,
    /// The hub's Ed25519 identity seed.
    pub hub_identity_key: Zeroizing<[u8; 32]>,
    /// The outside services' secrets, each optional.
    pub integrations: IntegrationSecrets,
}

/// The outside services' secrets. Each is optional and never generated: absent means that
/// integration is off (logged once at start). `Debug` says only which are set.
#[derive(Clone, Default)]
pub struct IntegrationSecrets {
    /// [`STRIPE_SECRET_KEY`].
    pub stripe_secret_key: Option<SecretString>,
    /// [`STRIPE_WEBHOOK_SECRET`].
    pub stripe_webhook_secret: Option<SecretString>,
    /// [`TELEGRAM_BOT_TOKEN`].
    pub telegram_bot_token: Option<SecretString>,
    /// [`TELEGRAM_WEBHOOK_SECRET`].
    pub telegram_webhook_secret: Option<SecretString>,
}

impl std::fmt::Debug for IntegrationSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |s: &Option<SecretString>| if s.is_some() { "set" } else { "absent" };
        f.debug_struct("IntegrationSecrets")
            .field("stripe_secret_key", &set(&self.stripe_secret_key))
            .field("stripe_webhook_secret", &set(&self.stripe_webhook_secret))
            .field("telegram_bot_token", &set(&self.telegram_bot_token))
            .field("telegram_webhook_secret", &set(&self.telegram_webhook_secret))
            .finish()
    }
}

impl IntegrationSecrets {
    /// Reads each optional secret from `providers` (first that has it wins); an empty value
    /// counts as absent. Logs once which integrations are off.
    pub fn load(providers: &[Box<dyn SecretProvider>]) -> Result<IntegrationSecrets, SecretError> {
        let mut found: HashMap<&str, SecretString> = HashMap::new();
        for name in OPTIONAL {
            for p in providers {
                if let Some(v) = p.get(name)?
                    && !v.expose_secret().trim().is_empty()
                {
                    tracing::info!(secret = name, source = %p.describe(), "secret loaded");
                    found.insert(*name, v);
                    break;
                }
            }
        }
        let out = IntegrationSecrets {
            stripe_secret_key: found.remove(STRIPE_SECRET_KEY),
            stripe_webhook_secret: found.remove(STRIPE_WEBHOOK_SECRET),
            telegram_bot_token: found.remove(TELEGRAM_BOT_TOKEN),
            telegram_webhook_secret: found.remove(TELEGRAM_WEBHOOK_SECRET),
        };
        if out.stripe_secret_key.is_none() {
            tracing::info!(
                "stripe is off: no `stripe_secret_key` secret (plans sell by Stars or by hand)"
            );
        }
        if out.telegram_bot_token.is_none() {
            tracing::info!("telegram is off: no `telegram_bot_token` secret");
        }
        Ok(out)
    }
}

impl std::fmt::Debug for HubSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.jwt_keys.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("HubSecrets")
            .field("jwt_kids", &kids)
            .field("api_key_wrapping_key", &"[redacted]")
            .field("hub_identity_key", &"[redacted]")
            .field("integrations", &self.integrations)
            .finish()
    }
}

impl HubSecrets {
    /// Loads every secret from `providers` (first that has it wins). In development a missing
    /// secret is generated into `generated_dir` (mode 0600) and reused on the next start; in
    /// production it is an error, and so is a weak one.
    pub fn load(
        providers: &[Box<dyn SecretProvider>],
        mode: Mode,
        generated_dir: &Path,
    ) -> Result<HubSecrets, SecretError> {
        let mut values = HashMap::new();
        for name in ALL {
            let mut found = None;
            for p in providers {
                if let Some(v) = p.get(name)? {
                    tracing::info!(secret = name, source = %p.describe(), "secret loaded");
                    found = Some(v);
                    break;
                }
            }
            let value = match (found, mode) {
                (Some(v), _) => v,
                (None, Mode::Production) => return Err(SecretError::Missing((*name).into())),
                (None, Mode::Development) => generate(name, generated_dir)?,
            };
            values.insert(*name, value);
        }
        let secrets = HubSecrets {
            jwt_keys: parse_jwt_keys(values[JWT_SIGNING_KEYS].expose_secret())?,
            api_key_wrapping_key: parse_key32(
                API_KEY_WRAPPING_KEY,
                values[API_KEY_WRAPPING_KEY].expose_secret(),
            )?,
            hub_identity_key: parse_key32(
                HUB_IDENTITY_KEY,
                values[HUB_IDENTITY_KEY].expose_secret(),
            )?,
            integrations: IntegrationSecrets::load(providers)?,
        };
        let mut weak = Vec::new();
        for (kid, k) in &secrets.jwt_keys {
            if let Some(r) = weakness(&k[..]) {
                weak.push((JWT_SIGNING_KEYS, format!("key `{kid}`: {r}")));
            }
        }
        if let Some(r) = weakness(&secrets.api_key_wrapping_key[..]) {
            weak.push((API_KEY_WRAPPING_KEY, r));
        }
        if let Some(r) = weakness(&secrets.hub_identity_key[..]) {
            weak.push((HUB_IDENTITY_KEY, r));
        }
        if let Some((name, reason)) = weak.into_iter().next() {
            match mode {
                Mode::Production => return Err(SecretError::Weak { name: name.into(), reason }),
                Mode::Development => {
                    tracing::warn!(secret = name, %reason, "weak secret accepted in development mode")
                }
            }
        }
        Ok(secrets)
    }

    /// HMAC-SHA256 keyed with the API-key wrapping secret over `label` (a domain tag ending in
    /// `\0`) and `data`: the hub's keyed hashes (client addresses, download links) without
    /// storing or revealing what they cover.
    pub fn keyed_hash(&self, label: &[u8], data: &[u8]) -> [u8; 32] {
        use hmac::{KeyInit, Mac};
        let key: &[u8; 32] = &self.api_key_wrapping_key;
        let Ok(mut mac) = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key) else {
            // HMAC takes a key of any length: this cannot happen.
            return [0; 32];
        };
        mac.update(label);
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// The deployment's account-fingerprint key: the 32-byte key every node of this hub hashes
    /// its trading account under (protocol `AccountFingerprint`), handed out at enrolment and on
    /// `GET /api/v1/devices/{id}/account-fingerprint-key`. Derived from the identity seed under
    /// its own domain tag (SHA-256, as the hub's X25519 half is), so every instance of one hub
    /// (they share the seed: nodes pin one key) hands out the same key without storing one, and
    /// the key reveals nothing of the seed. Not a secret to the devices, but kept out of logs
    /// like one: with it, anyone could test guessed logins against a device's fingerprint.
    pub fn account_fingerprint_key(&self) -> Zeroizing<[u8; 32]> {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"tradecast/hub/account-fingerprint-key/v1");
        h.update(&self.hub_identity_key[..]);
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&h.finalize());
        key
    }

    /// Random secrets in memory (tests and tools that need no persistence).
    pub fn generate_ephemeral() -> HubSecrets {
        let k = || {
            let mut a = Zeroizing::new([0u8; 32]);
            a.copy_from_slice(&crate::ids::random_bytes(32));
            a
        };
        HubSecrets {
            jwt_keys: vec![(crate::ids::random_hex(4), k())],
            api_key_wrapping_key: k(),
            hub_identity_key: k(),
            integrations: IntegrationSecrets::default(),
        }
    }
}

fn generate(name: &str, dir: &Path) -> Result<SecretString, SecretError> {
    let path = dir.join(name);
    if path.exists() {
        return read_file(name, &path);
    }
    let value = if name == JWT_SIGNING_KEYS {
        format!("{}:{}", crate::ids::random_hex(4), crate::ids::random_hex(32))
    } else {
        crate::ids::random_hex(32)
    };
    let io = |source| SecretError::Read { name: name.into(), path: path.clone(), source };
    create_private_dir(dir).map_err(io)?;
    write_private(&path, &value).map_err(io)?;
    tracing::warn!(secret = name, path = %path.display(), "development mode: generated a missing secret");
    Ok(SecretString::from(value))
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.exists() {
        return Ok(());
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn write_private(path: &Path, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(value.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, value: &str) -> std::io::Result<()> {
    std::fs::write(path, value)
}

fn parse_key32(name: &str, text: &str) -> Result<Zeroizing<[u8; 32]>, SecretError> {
    let malformed =
        |reason: &str| SecretError::Malformed { name: name.into(), reason: reason.into() };
    let bytes = Zeroizing::new(hex::decode(text.trim()).map_err(|_| malformed("not hex"))?);
    if bytes.len() != 32 {
        return Err(malformed("must be 32 bytes (64 hex characters)"));
    }
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&bytes);
    Ok(out)
}

/// JWT keys by kid, the signing one first.
pub type JwtKeyList = Vec<(String, Zeroizing<[u8; 32]>)>;

fn parse_jwt_keys(text: &str) -> Result<JwtKeyList, SecretError> {
    let mut keys: JwtKeyList = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let malformed =
            |reason: String| SecretError::Malformed { name: JWT_SIGNING_KEYS.into(), reason };
        let (kid, key) =
            line.split_once(':').ok_or_else(|| malformed("each line is kid:hex-seed".into()))?;
        let kid_ok = !kid.is_empty()
            && kid.len() <= 32
            && kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !kid_ok {
            return Err(malformed("a kid is 1-32 characters of [A-Za-z0-9_-]".into()));
        }
        if keys.iter().any(|(k, _)| k == kid) {
            return Err(malformed(format!("kid `{kid}` appears twice")));
        }
        keys.push((kid.to_string(), parse_key32(JWT_SIGNING_KEYS, key)?));
    }
    if keys.is_empty() {
        return Err(SecretError::Malformed {
            name: JWT_SIGNING_KEYS.into(),
            reason: "no key".into(),
        });
    }
    Ok(keys)
}

/// A key with so few distinct bytes was not drawn from a CSPRNG (a 32-byte random key has about
/// 30 distinct values; fewer than 16 happens with probability far below 2^-40).
fn weakness(key: &[u8]) -> Option<String> {
    let mut seen = [false; 256];
    key.iter().for_each(|b| seen[usize::from(*b)] = true);
    let distinct = seen.iter().filter(|s| **s).count();
    (distinct < 16).then(|| format!("only {distinct} distinct byte values; generate it randomly"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<Box<dyn SecretProvider>> {
        vec![Box::new(EnvSecrets::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))))]
    }

    fn strong() -> String {
        crate::ids::random_hex(32)
    }

    #[test]
    fn production_refuses_missing_and_weak_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let err = HubSecrets::load(&env(&[]), Mode::Production, dir.path()).unwrap_err();
        assert!(matches!(err, SecretError::Missing(ref n) if n == JWT_SIGNING_KEYS), "{err}");

        let jwt = format!("k1:{}", strong());
        let weak = "00".repeat(32);
        let wrap = strong();
        let p = env(&[
            ("TRADECAST_HUB_SECRET_JWT_SIGNING_KEYS", &jwt),
            ("TRADECAST_HUB_SECRET_API_KEY_WRAPPING_KEY", &wrap),
            ("TRADECAST_HUB_SECRET_HUB_IDENTITY_KEY", &weak),
        ]);
        let err = HubSecrets::load(&p, Mode::Production, dir.path()).unwrap_err();
        assert!(matches!(err, SecretError::Weak { ref name, .. } if name == HUB_IDENTITY_KEY));
        // Development accepts it with a warning.
        HubSecrets::load(&p, Mode::Development, dir.path()).unwrap();

        let p = env(&[
            ("TRADECAST_HUB_SECRET_JWT_SIGNING_KEYS", "k1:abcd"),
            ("TRADECAST_HUB_SECRET_API_KEY_WRAPPING_KEY", &wrap),
            ("TRADECAST_HUB_SECRET_HUB_IDENTITY_KEY", &wrap),
        ]);
        let err = HubSecrets::load(&p, Mode::Production, dir.path()).unwrap_err();
        assert!(err.to_string().contains("must be 32 bytes"), "{err}");
        assert!(!err.to_string().contains("abcd"), "a message must not echo the value: {err}");
    }

    #[test]
    fn development_generates_once_and_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let a = HubSecrets::load(&env(&[]), Mode::Development, dir.path()).unwrap();
        let b = HubSecrets::load(&env(&[]), Mode::Development, dir.path()).unwrap();
        assert_eq!(a.jwt_keys[0].0, b.jwt_keys[0].0);
        assert_eq!(*a.api_key_wrapping_key, *b.api_key_wrapping_key);
        let debug = format!("{a:?}");
        assert!(!debug.contains(&hex::encode(*a.api_key_wrapping_key)), "{debug}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(HUB_IDENTITY_KEY)).unwrap().permissions();
            assert_eq!(mode.mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn dir_and_file_providers_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let jwt = format!("new:{}\nold:{}\n", strong(), strong());
        std::fs::write(dir.path().join(JWT_SIGNING_KEYS), &jwt).unwrap();
        let wrap_file = dir.path().join("wrap.txt");
        std::fs::write(&wrap_file, strong()).unwrap();
        let id = strong();
        let providers: Vec<Box<dyn SecretProvider>> = vec![
            Box::new(DirSecrets::new(dir.path())),
            Box::new(EnvSecrets::new([
                (
                    "TRADECAST_HUB_SECRET_API_KEY_WRAPPING_KEY_FILE".to_string(),
                    wrap_file.display().to_string(),
                ),
                ("TRADECAST_HUB_SECRET_HUB_IDENTITY_KEY".to_string(), id.clone()),
            ])),
        ];
        let s = HubSecrets::load(&providers, Mode::Production, dir.path()).unwrap();
        let kids: Vec<_> = s.jwt_keys.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(kids, ["new", "old"]);
        assert_eq!(hex::encode(*s.hub_identity_key), id);
    }

    #[test]
    fn the_account_fingerprint_key_follows_the_identity_seed_alone() {
        let a = HubSecrets::generate_ephemeral();
        // Another instance of the same hub: other secrets, the same identity seed.
        let mut b = HubSecrets::generate_ephemeral();
        b.hub_identity_key = a.hub_identity_key.clone();
        assert_eq!(*a.account_fingerprint_key(), *b.account_fingerprint_key());
        assert_ne!(*a.account_fingerprint_key(), *a.hub_identity_key);
        let other = HubSecrets::generate_ephemeral();
        assert_ne!(*a.account_fingerprint_key(), *other.account_fingerprint_key());
    }
}

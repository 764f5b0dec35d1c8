//! `tradecast-quic`: the TLS of Tradecast's QUIC sync, shared by the hub's endpoint and the
//! node's client so both ends run the very same certificate and verifier code: a self-signed
//! certificate for an Ed25519 identity key (rcgen, the key handed over as PKCS#8), and verifiers
//! that check the peer's *key*, not a CA. It depends on `tradecast-protocol` only; the hub and
//! the node depend on it and still never on each other.
//!
//! The peer's certificate is only a carrier for its Ed25519 public key: [`cert_identity_key`]
//! walks the DER to the `subjectPublicKeyInfo` and accepts exactly an Ed25519 key. The TLS 1.3
//! `CertificateVerify` signature is then checked against that very key (rustls'
//! `verify_tls13_signature_with_raw_key`), so a peer proves it holds the key it names. Who may
//! connect is decided elsewhere: the client (node side) compares the key with its pin inside
//! the verifier; the hub accepts any well-formed key here and checks the device against its
//! enrolled, unrevoked devices right after the handshake, before reading a single byte.
//! TLS 1.3 only, Ed25519 only, one crypto provider: aws-lc-rs.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::SubjectPublicKeyInfoDer;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tradecast_protocol::{Identity, IdentityKey};

/// The ALPN protocol of the sync session.
pub const ALPN: &[u8] = b"tradecast/1";

/// PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410): the 32-byte seed follows.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// DER `SubjectPublicKeyInfo` prefix of an Ed25519 public key: the 32-byte key follows.
const SPKI_ED25519_PREFIX: [u8; 12] =
    [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate could not be made.
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    /// quinn refused the rustls configuration.
    #[error("quic tls: {0}")]
    Quic(String),
    /// A PEM file could not be read or holds no usable item.
    #[error("{path}: {message}")]
    Pem { path: String, message: String },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A self-signed certificate for `identity`'s Ed25519 key, and that key as PKCS#8.
pub fn self_signed(
    identity: &Identity,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsError> {
    let secrets = identity.to_secret_bytes();
    let mut pkcs8 = zeroize::Zeroizing::new(Vec::with_capacity(48));
    pkcs8.extend_from_slice(&PKCS8_ED25519_PREFIX);
    pkcs8.extend_from_slice(&secrets.ed25519_seed[..]);
    let der = PrivatePkcs8KeyDer::from(pkcs8.to_vec());
    let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ED25519)?;
    let params = rcgen::CertificateParams::new(vec![identity.device_id().to_hex()])?;
    let cert = params.self_signed(&key_pair)?;
    Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(der)))
}

/// One DER TLV at the start of `input`: (tag, contents, rest). `None` on anything malformed.
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The DER `SubjectPublicKeyInfo` of an X.509 certificate (the 7th field of `tbsCertificate`
/// when a version is present, the 6th otherwise), whole.
fn cert_spki(cert: &[u8]) -> Option<&[u8]> {
    let (0x30, cert_body, _) = der_tlv(cert)? else { return None };
    let (0x30, tbs, _) = der_tlv(cert_body)? else { return None };
    let mut rest = tbs;
    // [0] EXPLICIT version, optional.
    if rest.first() == Some(&0xa0) {
        rest = der_tlv(rest)?.2;
    }
    // serialNumber, signature, issuer, validity, subject.
    for _ in 0..5 {
        rest = der_tlv(rest)?.2;
    }
    let (tag, contents, after) = der_tlv(rest)?;
    if tag != 0x30 {
        return None;
    }
    let _ = contents;
    Some(&rest[..rest.len() - after.len()])
}

/// The Ed25519 identity key a certificate carries, if it is exactly one.
pub fn cert_identity_key(cert: &CertificateDer<'_>) -> Option<IdentityKey> {
    let spki = cert_spki(cert.as_ref())?;
    let key = spki.strip_prefix(&SPKI_ED25519_PREFIX[..])?;
    let key: &[u8; 32] = key.try_into().ok()?;
    IdentityKey::from_bytes(key).ok()
}

fn spki_of(key: &IdentityKey) -> SubjectPublicKeyInfoDer<'static> {
    let mut v = SPKI_ED25519_PREFIX.to_vec();
    v.extend_from_slice(&key.to_bytes());
    SubjectPublicKeyInfoDer::from(v)
}

fn bad_cert() -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
}

/// Checks a TLS 1.3 handshake signature against the key the certificate carries.
fn verify_with_cert_key(
    algs: &WebPkiSupportedAlgorithms,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    let key = cert_identity_key(cert).ok_or_else(bad_cert)?;
    rustls::crypto::verify_tls13_signature_with_raw_key(message, &spki_of(&key), dss, algs)
}

const SCHEMES: [SignatureScheme; 1] = [SignatureScheme::ED25519];

/// Client side: the server must hold the pinned key.
#[derive(Debug)]
pub struct PinnedServer {
    pin: IdentityKey,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match cert_identity_key(end_entity) {
            Some(k) if k == self.pin => Ok(ServerCertVerified::assertion()),
            Some(_) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
            None => Err(bad_cert()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_with_cert_key(&self.algs, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SCHEMES.to_vec()
    }
}

/// Server side: any client holding an Ed25519 key (which one may connect is the hub's check
/// after the handshake).
#[derive(Debug)]
pub struct AnyIdentityClient {
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyIdentityClient {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        cert_identity_key(end_entity).map(|_| ClientCertVerified::assertion()).ok_or_else(bad_cert)
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_with_cert_key(&self.algs, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SCHEMES.to_vec()
    }
}

/// Bytes a peer may have in flight towards us on one stream, and on one connection: a little
/// over one session frame (`wire::MAX_FRAME_LEN`, 1 MiB) — what a slow or hostile peer can make
/// the other side buffer is bounded by this, not by quinn's defaults (1.25 MB per stream, an
/// unbounded connection window, 10 MB of send buffer).
const STREAM_WINDOW: u32 = 1_310_720;
const CONNECTION_WINDOW: u32 = 2 * 1_310_720;

/// Both ends' transport. One heartbeat: the sync session's own ping (`SessionConfig::heartbeat_ms`,
/// 5 s when nothing else was sent, dead after 20 s of silence) keeps a connection busy, so QUIC
/// keep-alives would only double an idle connection's packets; the idle timeout (30 s) is the
/// transport's backstop behind the session's.
fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(quinn::VarInt::from_u32(30_000).into()));
    t.keep_alive_interval(None);
    t.max_concurrent_bidi_streams(4u32.into());
    t.max_concurrent_uni_streams(0u32.into());
    t.stream_receive_window(STREAM_WINDOW.into());
    t.receive_window(CONNECTION_WINDOW.into());
    t.send_window(u64::from(CONNECTION_WINDOW));
    Arc::new(t)
}

/// The hub's server configuration: its identity's certificate, client certificates required.
pub fn server_config(identity: &Identity) -> Result<quinn::ServerConfig, TlsError> {
    let (cert, key) = self_signed(identity)?;
    server_config_with_chain(vec![cert], key)
}

/// The hub's server configuration with the certificate chain of a public CA (WebPKI, e.g. Let's
/// Encrypt) for its DNS name instead of the identity's self-signed certificate: nodes enrolled
/// with such a hub check the chain and the name ([`HubTrust::WebPki`]). Client certificates
/// (the nodes' identity keys) are still required and checked the same way.
pub fn server_config_with_chain(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<quinn::ServerConfig, TlsError> {
    let provider = provider();
    let verifier = Arc::new(AnyIdentityClient { algs: provider.signature_verification_algorithms });
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(transport());
    Ok(config)
}

/// How a node knows its hub at the TLS layer.
#[derive(Debug, Clone)]
pub enum HubTrust {
    /// The hub presents a self-signed certificate for its identity key: that key must be the
    /// one pinned at enrolment.
    Pinned(IdentityKey),
    /// The hub presents a WebPKI certificate: it must chain to one of `roots` and name
    /// `server_name` (the name the hub stated at enrolment).
    WebPki { server_name: String, roots: Arc<rustls::RootCertStore> },
}

impl HubTrust {
    /// The TLS server name to connect with.
    pub fn server_name(&self) -> &str {
        match self {
            HubTrust::Pinned(_) => SERVER_NAME,
            HubTrust::WebPki { server_name, .. } => server_name,
        }
    }
}

/// A client configuration for `identity` that accepts only a server holding `hub_key` (the
/// node's side; the hub's tests use it as the reference client).
pub fn client_config(
    identity: &Identity,
    hub_key: IdentityKey,
) -> Result<quinn::ClientConfig, TlsError> {
    client_config_for(identity, &HubTrust::Pinned(hub_key))
}

/// A client configuration for `identity` that accepts the hub `trust` describes; the node
/// always presents its identity's certificate.
pub fn client_config_for(
    identity: &Identity,
    trust: &HubTrust,
) -> Result<quinn::ClientConfig, TlsError> {
    let provider = provider();
    let (cert, key) = self_signed(identity)?;
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let builder = match trust {
        HubTrust::Pinned(pin) => {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(PinnedServer {
                pin: *pin,
                algs: provider.signature_verification_algorithms,
            }))
        }
        HubTrust::WebPki { roots, .. } => {
            let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
                roots.clone(),
                provider,
            )
            .build()
            .map_err(|e| TlsError::Quic(e.to_string()))?;
            builder.with_webpki_verifier(verifier)
        }
    };
    let mut tls = builder.with_client_auth_cert(vec![cert], key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(transport());
    Ok(config)
}

/// The TLS server name a node uses with a pinned hub (the certificate's name is not checked;
/// the key is).
pub const SERVER_NAME: &str = "tradecast-hub";

/// Whether `name` is a DNS name a WebPKI certificate can be for (not an IP address).
pub fn is_dns_name(name: &str) -> bool {
    matches!(ServerName::try_from(name), Ok(ServerName::DnsName(_)))
}

fn pem_error(path: &std::path::Path, message: impl ToString) -> TlsError {
    TlsError::Pem { path: path.display().to_string(), message: message.to_string() }
}

/// The certificates of a PEM file (a chain, leaf first; or trust anchors), at least one.
pub fn load_pem_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no CERTIFICATE in the file"));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, SEC1 or PKCS#1).
pub fn load_pem_key(path: &std::path::Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error(path, e))
}

/// The operating system's trust anchors (rustls-native-certs), plus the certificates of
/// `extra` (a private CA), as the roots of [`HubTrust::WebPki`]. Unreadable system
/// certificates are skipped, as browsers do.
pub fn webpki_roots(extra: Option<&std::path::Path>) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = extra {
        for cert in load_pem_certs(path)? {
            roots.add(cert).map_err(|e| pem_error(path, e))?;
        }
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_carries_its_identity_key() {
        let id = Identity::from_secret_bytes(&[7; 32], &[9; 32]);
        let (cert, _) = self_signed(&id).unwrap();
        assert_eq!(cert_identity_key(&cert), Some(id.identity_key()));
        // Truncations and garbage never panic and never yield a key.
        for n in 0..cert.as_ref().len() {
            let cut = CertificateDer::from(cert.as_ref()[..n].to_vec());
            assert_eq!(cert_identity_key(&cut), None, "prefix of {n} bytes");
        }
        assert_eq!(cert_identity_key(&CertificateDer::from(vec![0x30, 0x84, 0xff, 0xff])), None);
    }
}

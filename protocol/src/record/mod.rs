//! Records: the signed, hash-chained unit of everything that crosses between node and hub, and
//! their byte encoding.
//!
//! ```text
//! record  = version:u8 ‖ kind:u8 ‖ varint(len) ‖ header ‖ signature:[u8;64] ‖ varint(len) ‖ body
//! header  = postcard(version:u8, kind:u8, author:[u8;20], stream:varint u32, seq:varint u64,
//!                    prev_hash:[u8;32], body_hash:[u8;32], sealed:bool, created_at_ms:zigzag i64)
//! signed  = "tradecast/record/v1" ‖ header
//! body    = postcard(domain type of `kind`)            (public stream)
//!         | nonce:[u8;24] ‖ XChaCha20-Poly1305(body)   (sealed, see seal.rs)
//! ```
//!
//! `varint` is unsigned LEB128 (postcard's), minimal length only. `body_hash` is BLAKE3 of the
//! body bytes as carried, `prev_hash` BLAKE3 of the previous header of the same (author, stream)
//! (all zeros before `seq` 1), `header_hash` BLAKE3 of the header bytes. Because the signature
//! covers the header and the header commits to the body, anyone with the author's public key can
//! verify a record, and the hub can verify and chain a sealed record it cannot read.
//!
//! # Versions
//!
//! The header's `version` says which body layouts the record uses. This crate writes
//! [`VERSION`] 2 and reads 1 and 2: a version-1 `Approval` (no `lots`, no
//! `DecidedBy::Remote`) and `DeviceKeys` (no `account_fingerprint`) decode with their old layout
//! ([`crate::domain::v1`]) into today's types; the kinds added in version 2 are refused under
//! version 1 ([`DecodeError::KindNotInVersion`]). Old records keep verifying because the
//! signature covers the stored header bytes, version byte included. The signature domain tag
//! stays `tradecast/record/v1`: it names the signing scheme (tag ‖ header), which did not
//! change, and the version byte inside the signed header already separates the layouts.
//!
//! # Streams and kinds
//!
//! [`Kind::streams`] is the table of which kind may appear on which well-known stream, and
//! [`Kind::signer`] who signs it (a device, or the hub); [`Kind::allowed_on`] is the check the
//! hub applies to what it accepts and the node to what it receives. Records themselves carry any
//! (kind, stream) pair: the table is policy, not encoding.
//!
//! Decoding never panics: every length is checked against [`MAX_HEADER_LEN`]/[`MAX_BODY_LEN`]
//! before anything is allocated, and every way bytes can be wrong is a [`DecodeError`] variant.
//! A header must be canonical (re-encoding it gives the same bytes), so one record has one
//! header hash. No I/O here.

use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};

use crate::domain::v1::{ApprovalV1, DecidedByV1, DeviceKeysV1};
use crate::domain::{
    Approval, ApprovalRequest, BalanceOperation, Close, Command, DecidedBy, DeviceKeys,
    EquityPoint, Execution, FeatureGrant, Heartbeat, Modify, Pending, PositionSnapshot,
    RequestAnswer, Signal, Summary, TradeClosed,
};
use crate::hash::ChainHash;
use crate::identity::{DeviceId, Identity, IdentityKey, Signature};
use crate::receipt::Receipt;
use crate::seal::{self, OpenError, StreamKey};

/// The encoding version this crate writes.
pub const VERSION: u8 = 2;
/// The oldest encoding version this crate reads (see "Versions" above).
pub const MIN_VERSION: u8 = 1;
/// Domain tag of record signatures.
pub const RECORD_DOMAIN: &[u8] = b"tradecast/record/v1";
/// Upper bound of an encoded header (the largest possible is 112 bytes).
pub const MAX_HEADER_LEN: usize = 128;
/// Upper bound of a body as carried (a position snapshot of a few hundred positions fits).
pub const MAX_BODY_LEN: usize = 64 * 1024;
/// Upper bound of a whole encoded record.
pub const MAX_RECORD_LEN: usize = 2 + 5 + MAX_HEADER_LEN + 64 + 5 + MAX_BODY_LEN;
/// Length of an Ed25519 signature.
const SIGNATURE_LEN: usize = 64;

mod kind;

pub use kind::{Kind, Signer, StreamId};

/// A record header: what the signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub kind: Kind,
    pub author: DeviceId,
    pub stream: StreamId,
    pub seq: u64,
    pub prev_hash: ChainHash,
    pub body_hash: ChainHash,
    pub sealed: bool,
    pub created_at_ms: i64,
}

/// The postcard shape of [`Header`]: `kind` as a raw byte so an unknown kind is a typed error.
#[derive(Serialize, Deserialize)]
struct HeaderWire {
    version: u8,
    kind: u8,
    author: DeviceId,
    stream: StreamId,
    seq: u64,
    prev_hash: ChainHash,
    body_hash: ChainHash,
    sealed: bool,
    created_at_ms: i64,
}

impl Header {
    /// The canonical header bytes (what is signed and hashed).
    pub fn encode(&self) -> Vec<u8> {
        let wire = HeaderWire {
            version: self.version,
            kind: self.kind as u8,
            author: self.author,
            stream: self.stream,
            seq: self.seq,
            prev_hash: self.prev_hash,
            body_hash: self.body_hash,
            sealed: self.sealed,
            created_at_ms: self.created_at_ms,
        };
        // Serializing a struct of integers and arrays into a Vec cannot fail.
        postcard::to_allocvec(&wire).unwrap_or_default()
    }

    /// Decodes a header; refuses unknown versions and kinds, trailing bytes and non-canonical
    /// encodings.
    pub fn decode(bytes: &[u8]) -> Result<Header, DecodeError> {
        if bytes.len() > MAX_HEADER_LEN {
            return Err(DecodeError::Oversized {
                what: "header",
                len: bytes.len(),
                max: MAX_HEADER_LEN,
            });
        }
        let (wire, rest): (HeaderWire, _) =
            postcard::take_from_bytes(bytes).map_err(DecodeError::from_postcard)?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes(rest.len()));
        }
        if !(MIN_VERSION..=VERSION).contains(&wire.version) {
            return Err(DecodeError::UnknownVersion(wire.version));
        }
        let kind = Kind::from_u8(wire.kind).ok_or(DecodeError::UnknownKind(wire.kind))?;
        if kind.since_version() > wire.version {
            return Err(DecodeError::KindNotInVersion { kind: wire.kind, version: wire.version });
        }
        let header = Header {
            version: wire.version,
            kind,
            author: wire.author,
            stream: wire.stream,
            seq: wire.seq,
            prev_hash: wire.prev_hash,
            body_hash: wire.body_hash,
            sealed: wire.sealed,
            created_at_ms: wire.created_at_ms,
        };
        if header.encode() != bytes {
            return Err(DecodeError::NonCanonical);
        }
        Ok(header)
    }

    /// BLAKE3 of the encoded header: the next record's `prev_hash`.
    pub fn hash(&self) -> ChainHash {
        ChainHash::of(&self.encode())
    }
}

/// Where a new record goes in its chain; the rest of the header is derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderFields {
    pub stream: StreamId,
    pub seq: u64,
    pub prev_hash: ChainHash,
    pub created_at_ms: i64,
}

/// The decoded body of a record: one domain type.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Body {
    Signal(Signal),
    Modify(Modify),
    Close(Close),
    Approval(Approval),
    Execution(Execution),
    PositionSnapshot(PositionSnapshot),
    TradeClosed(TradeClosed),
    EquityPoint(EquityPoint),
    Heartbeat(Heartbeat),
    DeviceKeys(DeviceKeys),
    Receipt(Receipt),
    Command(Command),
    ApprovalRequest(ApprovalRequest),
    RequestAnswer(RequestAnswer),
    Pending(Pending),
    FeatureGrant(FeatureGrant),
    BalanceOperation(BalanceOperation),
    Summary(Summary),
}

fn to_vec<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing our domain types into a growable Vec cannot fail: they contain no maps of
    // unknown length and no custom serializers that error.
    postcard::to_allocvec(value).unwrap_or_default()
}

fn from_exact<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, DecodeError> {
    let (value, rest) = postcard::take_from_bytes(bytes).map_err(DecodeError::from_postcard)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok(value)
}

impl Body {
    pub fn kind(&self) -> Kind {
        match self {
            Body::Signal(_) => Kind::Signal,
            Body::Modify(_) => Kind::Modify,
            Body::Close(_) => Kind::Close,
            Body::Approval(_) => Kind::Approval,
            Body::Execution(_) => Kind::Execution,
            Body::PositionSnapshot(_) => Kind::PositionSnapshot,
            Body::TradeClosed(_) => Kind::TradeClosed,
            Body::EquityPoint(_) => Kind::EquityPoint,
            Body::Heartbeat(_) => Kind::Heartbeat,
            Body::DeviceKeys(_) => Kind::DeviceKeys,
            Body::Receipt(_) => Kind::Receipt,
            Body::Command(_) => Kind::Command,
            Body::ApprovalRequest(_) => Kind::ApprovalRequest,
            Body::RequestAnswer(_) => Kind::RequestAnswer,
            Body::Pending(_) => Kind::Pending,
            Body::FeatureGrant(_) => Kind::FeatureGrant,
            Body::BalanceOperation(_) => Kind::BalanceOperation,
            Body::Summary(_) => Kind::Summary,
        }
    }

    /// The postcard bytes in the layout of record `version`; refuses what that version cannot
    /// carry (a kind added later, a field or variant a version-1 layout lacks) rather than
    /// dropping it.
    pub fn encode_for(&self, version: u8) -> Result<Vec<u8>, EncodeError> {
        if !(MIN_VERSION..=VERSION).contains(&version) {
            return Err(EncodeError::UnknownVersion(version));
        }
        let kind = self.kind();
        if kind.since_version() > version {
            return Err(EncodeError::NotInVersion { what: "this record kind", version });
        }
        if version >= 2 {
            return Ok(self.encode());
        }
        match self {
            Body::Approval(a) => {
                if a.lots.is_some() {
                    return Err(EncodeError::NotInVersion { what: "an approval's lots", version });
                }
                let decided_by = match &a.decided_by {
                    DecidedBy::Policy => DecidedByV1::Policy,
                    DecidedBy::Trader(user) => DecidedByV1::Trader(user.clone()),
                    DecidedBy::Remote { .. } => {
                        return Err(EncodeError::NotInVersion {
                            what: "a remote decision",
                            version,
                        });
                    }
                };
                Ok(to_vec(&ApprovalV1 {
                    signal_id: a.signal_id,
                    device: a.device,
                    decision: a.decision,
                    decided_by,
                    consent_version: a.consent_version,
                    reason: a.reason.clone(),
                    decided_at_ms: a.decided_at_ms,
                }))
            }
            Body::DeviceKeys(k) => {
                if k.account_fingerprint.is_some() {
                    return Err(EncodeError::NotInVersion {
                        what: "an account fingerprint",
                        version,
                    });
                }
                Ok(to_vec(&DeviceKeysV1 {
                    identity: k.identity,
                    sealing: k.sealing,
                    label: k.label.clone(),
                    at_ms: k.at_ms,
                }))
            }
            _ => Ok(self.encode()),
        }
    }

    /// The postcard bytes of the domain value in the current layout ([`VERSION`]; no kind tag:
    /// the header carries it).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Body::Signal(v) => to_vec(v),
            Body::Modify(v) => to_vec(v),
            Body::Close(v) => to_vec(v),
            Body::Approval(v) => to_vec(v),
            Body::Execution(v) => to_vec(v),
            Body::PositionSnapshot(v) => to_vec(v),
            Body::TradeClosed(v) => to_vec(v),
            Body::EquityPoint(v) => to_vec(v),
            Body::Heartbeat(v) => to_vec(v),
            Body::DeviceKeys(v) => to_vec(v),
            Body::Receipt(v) => to_vec(v),
            Body::Command(v) => to_vec(v),
            Body::ApprovalRequest(v) => to_vec(v),
            Body::RequestAnswer(v) => to_vec(v),
            Body::Pending(v) => to_vec(v),
            Body::FeatureGrant(v) => to_vec(v),
            Body::BalanceOperation(v) => to_vec(v),
            Body::Summary(v) => to_vec(v),
        }
    }

    /// Decodes the body bytes of a record of `kind` in the current layout ([`VERSION`]).
    pub fn decode(kind: Kind, bytes: &[u8]) -> Result<Body, DecodeError> {
        Body::decode_versioned(VERSION, kind, bytes)
    }

    /// Decodes the body bytes of a record of `kind` written under record `version`: a
    /// version-1 `Approval` or `DeviceKeys` in its old layout, a kind newer than `version`
    /// refused.
    pub fn decode_versioned(version: u8, kind: Kind, bytes: &[u8]) -> Result<Body, DecodeError> {
        if !(MIN_VERSION..=VERSION).contains(&version) {
            return Err(DecodeError::UnknownVersion(version));
        }
        if kind.since_version() > version {
            return Err(DecodeError::KindNotInVersion { kind: kind as u8, version });
        }
        if bytes.len() > MAX_BODY_LEN {
            return Err(DecodeError::Oversized {
                what: "body",
                len: bytes.len(),
                max: MAX_BODY_LEN,
            });
        }
        Ok(match kind {
            Kind::Signal => Body::Signal(from_exact(bytes)?),
            Kind::Modify => Body::Modify(from_exact(bytes)?),
            Kind::Close => Body::Close(from_exact(bytes)?),
            Kind::Approval if version == 1 => {
                Body::Approval(from_exact::<ApprovalV1>(bytes)?.into())
            }
            Kind::Approval => Body::Approval(from_exact(bytes)?),
            Kind::Execution => Body::Execution(from_exact(bytes)?),
            Kind::PositionSnapshot => Body::PositionSnapshot(from_exact(bytes)?),
            Kind::TradeClosed => Body::TradeClosed(from_exact(bytes)?),
            Kind::EquityPoint => Body::EquityPoint(from_exact(bytes)?),
            Kind::Heartbeat => Body::Heartbeat(from_exact(bytes)?),
            Kind::DeviceKeys if version == 1 => {
                Body::DeviceKeys(from_exact::<DeviceKeysV1>(bytes)?.into())
            }
            Kind::DeviceKeys => Body::DeviceKeys(from_exact(bytes)?),
            Kind::Receipt => Body::Receipt(from_exact(bytes)?),
            Kind::Command => Body::Command(from_exact(bytes)?),
            Kind::ApprovalRequest => Body::ApprovalRequest(from_exact(bytes)?),
            Kind::RequestAnswer => Body::RequestAnswer(from_exact(bytes)?),
            Kind::Pending => Body::Pending(from_exact(bytes)?),
            Kind::FeatureGrant => Body::FeatureGrant(from_exact(bytes)?),
            Kind::BalanceOperation => Body::BalanceOperation(from_exact(bytes)?),
            Kind::Summary => Body::Summary(from_exact(bytes)?),
        })
    }
}

/// Why a body cannot be written in the layout of a record version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// Not a version this crate knows.
    #[error("unknown encoding version {0}")]
    UnknownVersion(u8),
    /// The version's layout has no place for this value.
    #[error("record version {version} cannot carry {what}")]
    NotInVersion { what: &'static str, version: u8 },
}

/// Every way record bytes can be wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The version byte is not one this crate reads.
    #[error("unknown encoding version {0}")]
    UnknownVersion(u8),
    /// The kind was added after the record's version (e.g. an `ApprovalRequest` under
    /// version 1).
    #[error("record kind {kind} does not exist in record version {version}")]
    KindNotInVersion { kind: u8, version: u8 },
    /// The kind tag is not a known body type.
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    /// The bytes end before the value does.
    #[error("truncated")]
    Truncated,
    /// A length exceeds its bound (checked before allocating).
    #[error("{what} of {len} bytes exceeds the limit of {max}")]
    Oversized { what: &'static str, len: usize, max: usize },
    /// Bytes left over after a complete value.
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
    /// The bytes do not form a value of the expected type (bad varint, bool, UTF-8, enum tag,
    /// decimal…).
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// A varint or a header that is not in its one canonical encoding.
    #[error("not canonically encoded")]
    NonCanonical,
    /// The version or kind in front disagrees with the signed header.
    #[error("the version/kind in front disagrees with the header")]
    FrameMismatch,
    /// The body does not hash to the header's `body_hash`.
    #[error("body does not match the header's body_hash")]
    BodyHashMismatch,
    /// The body is sealed: open it with the stream key.
    #[error("the body is sealed")]
    Sealed,
}

impl DecodeError {
    pub(crate) fn from_postcard(error: postcard::Error) -> DecodeError {
        use postcard::Error as E;
        match error {
            E::DeserializeUnexpectedEnd => DecodeError::Truncated,
            E::DeserializeBadVarint => DecodeError::Malformed("varint"),
            E::DeserializeBadBool => DecodeError::Malformed("bool"),
            E::DeserializeBadChar => DecodeError::Malformed("char"),
            E::DeserializeBadUtf8 => DecodeError::Malformed("utf-8"),
            E::DeserializeBadOption => DecodeError::Malformed("option tag"),
            E::DeserializeBadEnum => DecodeError::Malformed("enum tag"),
            E::DeserializeBadEncoding => DecodeError::Malformed("encoding"),
            _ => DecodeError::Malformed("value"),
        }
    }
}

/// Why a record failed verification against its author's key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The header's author is not the device of the key given.
    #[error("record authored by {author}, key is of {key_device}")]
    AuthorMismatch { author: DeviceId, key_device: DeviceId },
    /// The signature does not verify over the domain tag and header.
    #[error("bad signature")]
    BadSignature,
    /// The body does not hash to the header's `body_hash`.
    #[error("body does not match the header's body_hash")]
    BodyHashMismatch,
}

/// Why a sealed record's body could not be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// A signed record. Constructed only by signing or by decoding, so its body always matches its
/// header's `body_hash` and its header is canonical.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    header: Header,
    header_bytes: Vec<u8>,
    signature: Signature,
    body: Vec<u8>,
}

impl core::fmt::Debug for Record {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Record")
            .field("kind", &self.header.kind)
            .field("author", &self.header.author)
            .field("stream", &self.header.stream.0)
            .field("seq", &self.header.seq)
            .field("sealed", &self.header.sealed)
            .field("header_hash", &self.header_hash().fmt_short())
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl Record {
    /// Signs a public-stream record whose body is `body`.
    pub fn sign(identity: &Identity, fields: HeaderFields, body: &Body) -> Record {
        let bytes = body.encode();
        Record::sign_carried(identity, VERSION, fields, body.kind(), false, bytes)
    }

    /// Signs a public-stream record in the layout of an older record `version` (test vectors,
    /// compatibility tests); refuses a body that version cannot carry.
    pub fn sign_versioned(
        identity: &Identity,
        version: u8,
        fields: HeaderFields,
        body: &Body,
    ) -> Result<Record, EncodeError> {
        let bytes = body.encode_for(version)?;
        Ok(Record::sign_carried(identity, version, fields, body.kind(), false, bytes))
    }

    /// Signs a private-stream record: the body is sealed under `key` with a fresh nonce from
    /// `rng`, AAD = encoded (author, stream, seq).
    pub fn sign_sealed<R: CryptoRng + ?Sized>(
        identity: &Identity,
        fields: HeaderFields,
        body: &Body,
        key: &StreamKey,
        rng: &mut R,
    ) -> Record {
        let plain = zeroize::Zeroizing::new(body.encode());
        let carried =
            seal::seal(key, &identity.device_id(), fields.stream, fields.seq, &plain, rng);
        Record::sign_carried(identity, VERSION, fields, body.kind(), true, carried)
    }

    fn sign_carried(
        identity: &Identity,
        version: u8,
        fields: HeaderFields,
        kind: Kind,
        sealed: bool,
        body: Vec<u8>,
    ) -> Record {
        let header = Header {
            version,
            kind,
            author: identity.device_id(),
            stream: fields.stream,
            seq: fields.seq,
            prev_hash: fields.prev_hash,
            body_hash: ChainHash::of(&body),
            sealed,
            created_at_ms: fields.created_at_ms,
        };
        let header_bytes = header.encode();
        let signature = identity.sign(RECORD_DOMAIN, &header_bytes);
        Record { header, header_bytes, signature, body }
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The canonical encoded header (what the signature covers after the domain tag).
    pub fn header_bytes(&self) -> &[u8] {
        &self.header_bytes
    }

    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The body bytes as carried (sealed or not).
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// The chain hash of the header: what the next record's `prev_hash` must be, what receipts
    /// name and what duplicate detection compares.
    pub fn header_hash(&self) -> ChainHash {
        ChainHash::of(&self.header_bytes)
    }

    /// The exact bytes the signature covers: the domain tag followed by the header.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(RECORD_DOMAIN.len() + self.header_bytes.len());
        out.extend_from_slice(RECORD_DOMAIN);
        out.extend_from_slice(&self.header_bytes);
        out
    }

    /// Checks that `key` is the author's and that the signature is valid.
    pub fn verify(&self, key: &IdentityKey) -> Result<(), VerifyError> {
        let key_device = key.device_id();
        if key_device != self.header.author {
            return Err(VerifyError::AuthorMismatch { author: self.header.author, key_device });
        }
        if ChainHash::of(&self.body) != self.header.body_hash {
            return Err(VerifyError::BodyHashMismatch);
        }
        if !key.verify(RECORD_DOMAIN, &self.header_bytes, &self.signature) {
            return Err(VerifyError::BadSignature);
        }
        Ok(())
    }

    /// The decoded body of a public-stream record.
    pub fn body(&self) -> Result<Body, DecodeError> {
        if self.header.sealed {
            return Err(DecodeError::Sealed);
        }
        Body::decode_versioned(self.header.version, self.header.kind, &self.body)
    }

    /// Opens and decodes the body of a private-stream record (also accepts an unsealed one).
    pub fn open(&self, key: &StreamKey) -> Result<Body, BodyError> {
        if !self.header.sealed {
            return Ok(self.body()?);
        }
        let plain =
            seal::open(key, &self.header.author, self.header.stream, self.header.seq, &self.body)?;
        Ok(Body::decode_versioned(self.header.version, self.header.kind, &plain)?)
    }

    /// The record's bytes (see the module documentation for the layout).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.push(self.header.version);
        out.push(self.header.kind as u8);
        write_varint(&mut out, self.header_bytes.len() as u32);
        out.extend_from_slice(&self.header_bytes);
        out.extend_from_slice(&self.signature.0);
        write_varint(&mut out, self.body.len() as u32);
        out.extend_from_slice(&self.body);
        out
    }

    /// Length of [`Record::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        2 + varint_len(self.header_bytes.len() as u32)
            + self.header_bytes.len()
            + SIGNATURE_LEN
            + varint_len(self.body.len() as u32)
            + self.body.len()
    }

    /// Decodes a whole record. Checks structure, canonical form, bounds and the body hash; the
    /// signature is checked by [`Record::verify`] (it needs the author's key).
    pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
        let (record, used) = Record::decode_prefix(bytes)?;
        if used != bytes.len() {
            return Err(DecodeError::TrailingBytes(bytes.len() - used));
        }
        Ok(record)
    }

    /// Decodes one record from the front of `bytes`; returns it and how many bytes it used.
    pub fn decode_prefix(bytes: &[u8]) -> Result<(Record, usize), DecodeError> {
        let mut reader = Reader { bytes, pos: 0 };
        let version = reader.byte()?;
        if !(MIN_VERSION..=VERSION).contains(&version) {
            return Err(DecodeError::UnknownVersion(version));
        }
        let kind_tag = reader.byte()?;
        let kind = Kind::from_u8(kind_tag).ok_or(DecodeError::UnknownKind(kind_tag))?;
        let header_len = reader.varint()? as usize;
        if header_len > MAX_HEADER_LEN {
            return Err(DecodeError::Oversized {
                what: "header",
                len: header_len,
                max: MAX_HEADER_LEN,
            });
        }
        let header_bytes = reader.take(header_len)?;
        let header = Header::decode(header_bytes)?;
        if header.version != version || header.kind != kind {
            return Err(DecodeError::FrameMismatch);
        }
        let signature_bytes = reader.take(SIGNATURE_LEN)?;
        let mut signature = [0u8; SIGNATURE_LEN];
        signature.copy_from_slice(signature_bytes);
        let body_len = reader.varint()? as usize;
        if body_len > MAX_BODY_LEN {
            return Err(DecodeError::Oversized { what: "body", len: body_len, max: MAX_BODY_LEN });
        }
        let body = reader.take(body_len)?;
        if ChainHash::of(body) != header.body_hash {
            return Err(DecodeError::BodyHashMismatch);
        }
        let record = Record {
            header,
            header_bytes: header_bytes.to_vec(),
            signature: Signature(signature),
            body: body.to_vec(),
        };
        Ok((record, reader.pos))
    }
}

/// A cursor over untrusted bytes: every read is bounds-checked.
pub(crate) struct Reader<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.bytes.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(len).ok_or(DecodeError::Truncated)?;
        let slice = self.bytes.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(slice)
    }

    /// A minimal-length unsigned LEB128 u32.
    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        let mut value: u64 = 0;
        for i in 0..5 {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && b == 0 {
                    return Err(DecodeError::NonCanonical);
                }
                return u32::try_from(value).map_err(|_| DecodeError::Malformed("varint"));
            }
        }
        Err(DecodeError::Malformed("varint"))
    }
}

pub(crate) fn write_varint(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

pub(crate) fn varint_len(value: u32) -> usize {
    match value {
        0..=0x7f => 1,
        0x80..=0x3fff => 2,
        0x4000..=0x1f_ffff => 3,
        0x20_0000..=0xfff_ffff => 4,
        _ => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_minimal_and_bounded() {
        for value in [0u32, 1, 127, 128, 300, 16383, 16384, u32::MAX] {
            let mut out = Vec::new();
            write_varint(&mut out, value);
            assert_eq!(out.len(), varint_len(value));
            let mut reader = Reader { bytes: &out, pos: 0 };
            assert_eq!(reader.varint(), Ok(value));
        }
        let check = |bytes: &[u8], expect: Result<u32, DecodeError>| {
            let mut reader = Reader { bytes, pos: 0 };
            assert_eq!(reader.varint(), expect, "{bytes:?}");
        };
        check(&[0x80, 0x00], Err(DecodeError::NonCanonical));
        check(&[0x80], Err(DecodeError::Truncated));
        check(&[0xff, 0xff, 0xff, 0xff, 0x1f], Err(DecodeError::Malformed("varint")));
        check(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01], Err(DecodeError::Malformed("varint")));
    }
}

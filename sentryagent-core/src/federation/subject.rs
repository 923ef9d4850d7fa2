//! Subject tokens: another identity provider's JWT, parsed strictly and
//! verified against that issuer's keys.
//!
//! The rules:
//! - at most [`MAX_SUBJECT_TOKEN_LEN`] bytes, three base64url segments
//!   without padding;
//! - the header is a JSON object whose `alg` is exactly `RS256`, `ES256` or
//!   `EdDSA`: `none`, every HMAC algorithm and anything else are refused,
//!   as are headers carrying or pointing at a key (`jwk`, `jku`, `x5u`,
//!   `x5c`) and `crit`;
//! - the key comes from the issuer's [`IssuerKeySet`] only: the one named by
//!   `kid` (every key when the token names none), and its type must be the
//!   algorithm's (an RSA key verifies RS256 only, a P-256 key ES256 only, an
//!   Ed25519 key EdDSA only);
//! - the claims are a JSON object without repeated members (at any depth),
//!   with `iss`, `sub` (strings), `aud` (a string or an array of strings),
//!   `exp` and `iat` (integers); `nbf` (an integer) and `jti` (a string) are
//!   optional;
//! - `exp` has passed, `nbf` is ahead or `iat` is ahead by more than
//!   [`LEEWAY`]: refused.
//!
//! Nothing here panics, whatever the bytes.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::Timestamp;
use crate::jose::{Jwk, VerifyingKey, b64_decode};

/// The longest subject token accepted, in bytes (16 KiB).
pub const MAX_SUBJECT_TOKEN_LEN: usize = 16 * 1024;
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY: Duration = Duration::from_secs(60);
/// Most keys read from one JWKS (more is refused).
pub const MAX_JWKS_KEYS: usize = 64;
/// Smallest RSA modulus accepted, in bytes (2048 bits).
const MIN_RSA_BYTES: usize = 256;
/// Largest RSA modulus accepted, in bytes (8192 bits).
const MAX_RSA_BYTES: usize = 1024;

/// The algorithms a subject token may be signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubjectAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (GitHub, GitLab, Kubernetes).
    RS256,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

impl SubjectAlgorithm {
    /// The `alg` value.
    pub const fn as_str(self) -> &'static str {
        match self {
            SubjectAlgorithm::RS256 => "RS256",
            SubjectAlgorithm::ES256 => "ES256",
            SubjectAlgorithm::EdDSA => "EdDSA",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "RS256" => Some(SubjectAlgorithm::RS256),
            "ES256" => Some(SubjectAlgorithm::ES256),
            "EdDSA" => Some(SubjectAlgorithm::EdDSA),
            _ => None,
        }
    }
}

/// Why a subject token was refused (for the audit trail: the caller only
/// ever sees `invalid_grant`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubjectError {
    /// Longer than [`MAX_SUBJECT_TOKEN_LEN`].
    #[error("subject token too large")]
    TooLarge,
    /// Not a well-formed compact JWS or JWT; the text says what.
    #[error("malformed subject token: {0}")]
    Malformed(&'static str),
    /// `alg` is not RS256, ES256 or EdDSA (the text is the `alg`, cut short).
    #[error("algorithm {0:?} is not accepted")]
    UnsupportedAlgorithm(String),
    /// The header carries or points at a key.
    #[error("embedded or referenced keys are not accepted")]
    EmbeddedKey,
    /// The header has `crit`.
    #[error("critical header extensions are not supported")]
    CriticalHeader,
    /// No key of the issuer has the token's `kid`.
    #[error("no key of the issuer has the token's kid")]
    UnknownKey,
    /// The key named by `kid` is of another type than the algorithm.
    #[error("the key's type does not match the token's algorithm")]
    KeyAlgorithmMismatch,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// `exp` has passed (beyond the leeway).
    #[error("subject token expired")]
    Expired,
    /// `nbf` is ahead (beyond the leeway).
    #[error("subject token not yet valid")]
    NotYetValid,
    /// `iat` is ahead (beyond the leeway).
    #[error("subject token issued in the future")]
    IssuedInFuture,
    /// A required claim is missing or mistyped; the text names it.
    #[error("claim {0} missing or invalid")]
    Claim(&'static str),
}

/// Why a JWKS document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// Not a JSON object with a `keys` array (or repeated members).
    #[error("not a JWK Set")]
    NotAKeySet,
    /// More than [`MAX_JWKS_KEYS`] keys.
    #[error("more than {MAX_JWKS_KEYS} keys")]
    TooManyKeys,
    /// No key is usable: none is RSA (2048 to 8192 bits), P-256 or Ed25519
    /// for signatures, with a matching `alg` if it has one.
    #[error("no usable signing key")]
    NoUsableKey,
}

/// A public key of an issuer.
#[derive(Clone, PartialEq, Eq)]
pub enum SubjectKey {
    /// An RSA key (verifies RS256 only): modulus and exponent, big-endian
    /// without leading zeros.
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
    /// A P-256 key (ES256 only) or an Ed25519 key (EdDSA only).
    Jose(VerifyingKey),
}

impl fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubjectKey::Rsa { n, .. } => f
                .debug_struct("Rsa")
                .field("bits", &(n.len() * 8))
                .finish_non_exhaustive(),
            SubjectKey::Jose(k) => k.fmt(f),
        }
    }
}

impl SubjectKey {
    /// The one algorithm this key verifies.
    pub fn alg(&self) -> SubjectAlgorithm {
        match self {
            SubjectKey::Rsa { .. } => SubjectAlgorithm::RS256,
            SubjectKey::Jose(k) => match k.alg() {
                crate::jose::Algorithm::ES256 => SubjectAlgorithm::ES256,
                crate::jose::Algorithm::EdDSA => SubjectAlgorithm::EdDSA,
            },
        }
    }

    /// This key in the form its verification reads.
    fn prepare(&self) -> Prepared {
        match self {
            SubjectKey::Rsa { .. } => Prepared::Rsa,
            SubjectKey::Jose(VerifyingKey::Es256(k)) => {
                let point = k.to_sec1_point(false);
                let mut sec1 = [0u8; 65];
                // An uncompressed SEC1 point of P-256 is `04 || x || y`, 65
                // bytes; anything else cannot verify.
                match <&[u8; 65]>::try_from(point.as_bytes()) {
                    Ok(p) => {
                        sec1.copy_from_slice(p);
                        Prepared::Es256(sec1)
                    }
                    Err(_) => Prepared::Unusable,
                }
            }
            SubjectKey::Jose(VerifyingKey::Ed25519(_)) => Prepared::Ed25519,
        }
    }

    fn verify(&self, prepared: &Prepared, message: &[u8], signature: &[u8]) -> bool {
        match (self, prepared) {
            // ring 0.17 has no pre-parsed RSA public key: each call checks
            // the modulus and sets up its Montgomery constants again (see
            // docs/benchmarks.md, the exchange).
            (SubjectKey::Rsa { n, e }, Prepared::Rsa) => {
                ring::signature::RsaPublicKeyComponents { n, e }
                    .verify(
                        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                        message,
                        signature,
                    )
                    .is_ok()
            }
            // P-256 through ring (its assembly verifies about four times as
            // fast as the `p256` crate: see docs/benchmarks.md, the
            // exchange); the same rules: `r || s` of 64 bytes, each in
            // `1..n`, over SHA-256. The point was encoded when the key set
            // was read.
            (SubjectKey::Jose(_), Prepared::Es256(point)) => {
                signature.len() == 64
                    && ring::signature::UnparsedPublicKey::new(
                        &ring::signature::ECDSA_P256_SHA256_FIXED,
                        &point[..],
                    )
                    .verify(message, signature)
                    .is_ok()
            }
            (SubjectKey::Jose(k @ VerifyingKey::Ed25519(_)), Prepared::Ed25519) => {
                <&[u8; 64]>::try_from(signature).is_ok_and(|sig| k.verify(message, sig).is_ok())
            }
            _ => false,
        }
    }
}

/// A key in the form its verification reads, made once when a key set is
/// built (a JWKS is read once per fetch; its keys verify a token on every
/// exchange).
#[derive(Clone, PartialEq, Eq)]
enum Prepared {
    /// RSA: ring reads `n` and `e` as they are.
    Rsa,
    /// P-256: the uncompressed SEC1 point (`04 || x || y`) ring reads.
    Es256([u8; 65]),
    /// Ed25519: the parsed key itself.
    Ed25519,
    /// A key that verifies nothing (a P-256 point that does not encode in
    /// 65 bytes; not expected from a parsed key).
    Unusable,
}

/// A key of an issuer with its `kid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerKey {
    /// Key id, if the JWKS gives one.
    pub kid: Option<String>,
    /// The key.
    pub key: SubjectKey,
}

/// An issuer's usable public keys, read from its JWKS.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct IssuerKeySet {
    keys: Vec<IssuerKey>,
    /// `keys[i]` as its verification reads it, made once with the set.
    prepared: Vec<Prepared>,
    skipped: usize,
}

impl fmt::Debug for IssuerKeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerKeySet")
            .field("keys", &self.keys)
            .field("skipped", &self.skipped)
            .finish()
    }
}

/// A JWK as read from a JWKS: public members, and the presence of private
/// ones (a key carrying them is skipped).
#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    #[serde(default, deserialize_with = "present")]
    d: bool,
    #[serde(default, deserialize_with = "present")]
    p: bool,
    #[serde(default, deserialize_with = "present")]
    q: bool,
    #[serde(default, deserialize_with = "present")]
    k: bool,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    de::IgnoredAny::deserialize(d).map(|_| true)
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<Value>,
}

/// Big-endian bytes without leading zeros.
fn unsigned(mut b: Vec<u8>) -> Vec<u8> {
    let zeros = b.iter().take_while(|x| **x == 0).count();
    b.drain(..zeros);
    b
}

impl RawJwk {
    fn into_key(self) -> Option<IssuerKey> {
        if self.d || self.p || self.q || self.k {
            return None;
        }
        if self.use_.as_deref().is_some_and(|u| u != "sig") {
            return None;
        }
        let key = match self.kty.as_deref()? {
            "RSA" => {
                if self.alg.as_deref().is_some_and(|a| a != "RS256") {
                    return None;
                }
                let n = unsigned(b64_decode(self.n.as_deref()?).ok()?);
                let e = unsigned(b64_decode(self.e.as_deref()?).ok()?);
                if !(MIN_RSA_BYTES..=MAX_RSA_BYTES).contains(&n.len())
                    || e.is_empty()
                    || e.len() > 8
                {
                    return None;
                }
                SubjectKey::Rsa { n, e }
            }
            kty @ ("EC" | "OKP") => {
                let jwk = Jwk {
                    kty: kty.to_owned(),
                    crv: self.crv,
                    x: self.x,
                    y: self.y,
                    kid: None,
                    alg: self.alg,
                    use_: None,
                };
                SubjectKey::Jose(VerifyingKey::from_jwk(&jwk).ok()?)
            }
            _ => return None,
        };
        Some(IssuerKey { kid: self.kid, key })
    }
}

impl IssuerKeySet {
    /// A set of keys.
    pub fn new(keys: Vec<IssuerKey>) -> Self {
        Self::with_skipped(keys, 0)
    }

    fn with_skipped(keys: Vec<IssuerKey>, skipped: usize) -> Self {
        let prepared = keys.iter().map(|k| k.key.prepare()).collect();
        IssuerKeySet {
            keys,
            prepared,
            skipped,
        }
    }

    /// Reads a JWKS document (RFC 7517 §5). Keys that cannot verify a
    /// subject token are skipped (counted in [`skipped`](Self::skipped)):
    /// other types and curves, encryption keys, RSA keys under 2048 or over
    /// 8192 bits, an `alg` that is not the key type's algorithm, and keys
    /// carrying private members.
    ///
    /// # Errors
    /// [`JwksError`] for a document that is not a key set, holds more than
    /// [`MAX_JWKS_KEYS`] keys, or no usable one.
    pub fn from_jwks(json: &[u8]) -> Result<IssuerKeySet, JwksError> {
        let raw: RawJwks = serde_json::from_slice(json).map_err(|_| JwksError::NotAKeySet)?;
        if raw.keys.len() > MAX_JWKS_KEYS {
            return Err(JwksError::TooManyKeys);
        }
        let total = raw.keys.len();
        let keys: Vec<IssuerKey> = raw
            .keys
            .into_iter()
            .filter_map(|v| serde_json::from_value::<RawJwk>(v).ok()?.into_key())
            .collect();
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        let skipped = total - keys.len();
        Ok(IssuerKeySet::with_skipped(keys, skipped))
    }

    /// The keys.
    pub fn keys(&self) -> &[IssuerKey] {
        &self.keys
    }

    /// How many keys of the document were skipped as unusable.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Whether a key has this `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A subject token parsed but not verified: read its issuer and `kid` to
/// find the keys, then [`verify`](Self::verify).
#[derive(Debug, Clone)]
pub struct UnverifiedSubject<'a> {
    alg: SubjectAlgorithm,
    kid: Option<String>,
    signing_input: &'a str,
    signature: Vec<u8>,
    claims: Map<String, Value>,
    iss: String,
}

/// A verified subject token's claims.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedSubject {
    /// Issuer.
    pub iss: String,
    /// Subject.
    pub sub: String,
    /// Audiences.
    pub aud: Vec<String>,
    /// Expiry (seconds).
    pub exp: i64,
    /// Not before (seconds).
    pub nbf: Option<i64>,
    /// Issued at (seconds).
    pub iat: i64,
    /// Token id.
    pub jti: Option<String>,
    /// The algorithm it was signed with.
    pub alg: SubjectAlgorithm,
    /// Every claim, as signed.
    pub claims: Map<String, Value>,
}

impl VerifiedSubject {
    /// A string claim, if present and a string.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
    #[serde(default, deserialize_with = "present")]
    jwk: bool,
    #[serde(default, deserialize_with = "present")]
    jku: bool,
    #[serde(default, deserialize_with = "present")]
    x5u: bool,
    #[serde(default, deserialize_with = "present")]
    x5c: bool,
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

/// Parses a subject token without verifying it.
///
/// # Errors
/// [`SubjectError::TooLarge`], [`SubjectError::Malformed`],
/// [`SubjectError::UnsupportedAlgorithm`], [`SubjectError::EmbeddedKey`],
/// [`SubjectError::CriticalHeader`], or [`SubjectError::Claim`] for
/// claims that are not an object, repeat a member, or lack `iss`.
pub fn parse_subject_token(token: &str) -> Result<UnverifiedSubject<'_>, SubjectError> {
    if token.len() > MAX_SUBJECT_TOKEN_LEN {
        return Err(SubjectError::TooLarge);
    }
    const SHAPE: SubjectError = SubjectError::Malformed("a compact JWS has three segments");
    let (signing_input, s) = token.rsplit_once('.').ok_or(SHAPE)?;
    let (h, p) = signing_input.split_once('.').ok_or(SHAPE)?;
    if p.contains('.') {
        return Err(SHAPE);
    }
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(SubjectError::Malformed("empty segment"));
    }
    let header = b64_decode(h).map_err(|_| SubjectError::Malformed("header encoding"))?;
    let header = std::str::from_utf8(&header).map_err(|_| SubjectError::Malformed("header"))?;
    let header: RawHeader =
        serde_json::from_str(header).map_err(|_| SubjectError::Malformed("header"))?;
    let alg_name = header
        .alg
        .ok_or(SubjectError::Malformed("header has no alg"))?;
    let alg = SubjectAlgorithm::from_name(&alg_name)
        .ok_or_else(|| SubjectError::UnsupportedAlgorithm(alg_name.chars().take(16).collect()))?;
    if header.jwk || header.jku || header.x5u || header.x5c {
        return Err(SubjectError::EmbeddedKey);
    }
    if header.crit {
        return Err(SubjectError::CriticalHeader);
    }
    let signature = b64_decode(s).map_err(|_| SubjectError::Malformed("signature encoding"))?;
    let payload = b64_decode(p).map_err(|_| SubjectError::Malformed("payload encoding"))?;
    let payload = std::str::from_utf8(&payload)
        .map_err(|_| SubjectError::Malformed("payload is not UTF-8"))?;
    let Strict(Value::Object(claims)) =
        serde_json::from_str::<Strict>(payload).map_err(|_| SubjectError::Claim("set"))?
    else {
        return Err(SubjectError::Claim("set"));
    };
    let iss = match claims.get("iss") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(SubjectError::Claim("iss")),
    };
    Ok(UnverifiedSubject {
        alg,
        kid: header.kid,
        signing_input,
        signature,
        claims,
        iss,
    })
}

fn int_claim(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, SubjectError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or(SubjectError::Claim(name)),
    }
}

fn secs_to_micros(secs: i64) -> i64 {
    secs.saturating_mul(1_000_000)
}

impl UnverifiedSubject<'_> {
    /// The `iss` claim (not yet verified).
    pub fn issuer(&self) -> &str {
        &self.iss
    }

    /// The header's `kid`.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The header's algorithm.
    pub fn alg(&self) -> SubjectAlgorithm {
        self.alg
    }

    /// Verifies the signature with the key of `keys` named by `kid` (every
    /// key of the algorithm's type when the token names none), then the
    /// claims at `now` with [`LEEWAY`].
    ///
    /// # Errors
    /// [`SubjectError::UnknownKey`], [`SubjectError::KeyAlgorithmMismatch`],
    /// [`SubjectError::BadSignature`], [`SubjectError::Expired`],
    /// [`SubjectError::NotYetValid`], [`SubjectError::IssuedInFuture`] or
    /// [`SubjectError::Claim`].
    pub fn verify(
        self,
        keys: &IssuerKeySet,
        now: Timestamp,
    ) -> Result<VerifiedSubject, SubjectError> {
        let kid = self.kid.as_deref();
        // The keys named by `kid` (every key when the token names none),
        // then those of the token's algorithm: no allocation, a set holds
        // at most MAX_JWKS_KEYS keys.
        let named = || {
            keys.keys
                .iter()
                .zip(&keys.prepared)
                .filter(move |(k, _)| kid.is_none() || k.kid.as_deref() == kid)
        };
        let mut usable = named().filter(|(k, _)| k.key.alg() == self.alg).peekable();
        if usable.peek().is_none() {
            return Err(if named().next().is_none() || kid.is_none() {
                SubjectError::UnknownKey
            } else {
                SubjectError::KeyAlgorithmMismatch
            });
        }
        let message = self.signing_input.as_bytes();
        if !usable.any(|(k, p)| k.key.verify(p, message, &self.signature)) {
            return Err(SubjectError::BadSignature);
        }
        let claims = self.claims;
        let sub = match claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(SubjectError::Claim("sub")),
        };
        let aud = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.clone()],
            Some(Value::Array(v)) => v
                .iter()
                .map(|a| a.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or(SubjectError::Claim("aud"))?,
            _ => return Err(SubjectError::Claim("aud")),
        };
        let exp = int_claim(&claims, "exp")?.ok_or(SubjectError::Claim("exp"))?;
        let iat = int_claim(&claims, "iat")?.ok_or(SubjectError::Claim("iat"))?;
        let nbf = int_claim(&claims, "nbf")?;
        let jti = match claims.get("jti") {
            None => None,
            Some(Value::String(j)) => Some(j.clone()),
            Some(_) => return Err(SubjectError::Claim("jti")),
        };
        let now = now.unix_micros();
        let leeway = i64::try_from(LEEWAY.as_micros()).unwrap_or(i64::MAX);
        if now >= secs_to_micros(exp).saturating_add(leeway) {
            return Err(SubjectError::Expired);
        }
        if nbf.is_some_and(|nbf| now.saturating_add(leeway) < secs_to_micros(nbf)) {
            return Err(SubjectError::NotYetValid);
        }
        if secs_to_micros(iat) > now.saturating_add(leeway) {
            return Err(SubjectError::IssuedInFuture);
        }
        Ok(VerifiedSubject {
            iss: self.iss,
            sub,
            aud,
            exp,
            nbf,
            iat,
            jti,
            alg: self.alg,
            claims,
        })
    }
}

/// A JSON value whose objects never repeat a member (at any depth).
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Strict, E> {
        Ok(Strict(
            serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
        ))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Strict, E> {
        Ok(Strict(Value::String(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Strict, E> {
        Ok(Strict(Value::String(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element::<Strict>()? {
            out.push(v);
        }
        Ok(Strict(Value::Array(out)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        // Straight into the claims map (no second map to copy from).
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if out.contains_key(&k) {
                return Err(de::Error::custom("repeated member"));
            }
            let Strict(v) = map.next_value::<Strict>()?;
            out.insert(k, v);
        }
        Ok(Strict(Value::Object(out)))
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    use super::*;
    use crate::conformance::kit::{EPOCH, TestIssuer, github_claims};
    use crate::jose::Algorithm;

    const ISS: &str = "https://token.actions.githubusercontent.com";
    const AUD: &str = "https://idp.example";

    fn issuer() -> TestIssuer {
        TestIssuer::new(ISS)
            .with_rsa("rsa1", 0)
            .with_key("ec1", Algorithm::ES256)
            .with_key("ed1", Algorithm::EdDSA)
    }

    fn claims() -> Value {
        github_claims(ISS, AUD, EPOCH)
    }

    fn verify(token: &str, keys: &IssuerKeySet) -> Result<VerifiedSubject, SubjectError> {
        parse_subject_token(token)?.verify(keys, EPOCH)
    }

    fn enc(v: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(v)
    }

    #[test]
    fn each_algorithm_verifies_with_its_own_key() {
        let i = issuer();
        let keys = i.key_set();
        assert_eq!(keys.len(), 3);
        for (kid, alg) in [
            ("rsa1", SubjectAlgorithm::RS256),
            ("ec1", SubjectAlgorithm::ES256),
            ("ed1", SubjectAlgorithm::EdDSA),
        ] {
            let token = i.sign(kid, &claims());
            let s = verify(&token, &keys).unwrap_or_else(|e| panic!("{kid}: {e}"));
            assert_eq!(s.alg, alg);
            assert_eq!(s.iss, ISS);
            assert_eq!(s.sub, "repo:octo-org/octo-agent:ref:refs/heads/main");
            assert_eq!(s.aud, [AUD]);
            assert_eq!(s.iat, EPOCH.unix_secs());
            assert_eq!(s.text("repository_id"), Some("74"));
        }
        // Without a kid, every key of the algorithm's type is tried.
        let token = i.sign_with_header("rsa1", &json!({"alg": "RS256"}), &claims());
        assert!(verify(&token, &keys).is_ok());
        // An array audience.
        let mut c = claims();
        c["aud"] = json!(["other", AUD]);
        let s = verify(&i.sign("ec1", &c), &keys).unwrap();
        assert_eq!(s.aud, ["other", AUD]);
    }

    #[test]
    fn refused_algorithms_and_headers() {
        let i = issuer();
        let keys = i.key_set();
        for alg in [
            "none", "HS256", "HS384", "HS512", "RS384", "PS256", "ES384", "rs256", "Ed25519", "",
        ] {
            let token = i.sign_with_header("rsa1", &json!({"alg": alg, "kid": "rsa1"}), &claims());
            assert_eq!(
                verify(&token, &keys).unwrap_err(),
                SubjectError::UnsupportedAlgorithm(alg.into()),
                "{alg}"
            );
        }
        // `none` with an empty signature is refused before the signature.
        let none = format!(
            "{}.{}.",
            enc(br#"{"alg":"none"}"#),
            enc(&serde_json::to_vec(&claims()).unwrap())
        );
        assert!(verify(&none, &keys).is_err());
        for member in ["jwk", "jku", "x5u", "x5c"] {
            let token = i.sign_with_header(
                "rsa1",
                &json!({"alg": "RS256", "kid": "rsa1", member: "x"}),
                &claims(),
            );
            assert_eq!(
                verify(&token, &keys).unwrap_err(),
                SubjectError::EmbeddedKey
            );
        }
        let token = i.sign_with_header(
            "rsa1",
            &json!({"alg": "RS256", "kid": "rsa1", "crit": ["exp"]}),
            &claims(),
        );
        assert_eq!(
            verify(&token, &keys).unwrap_err(),
            SubjectError::CriticalHeader
        );
        let token = i.sign_with_header("rsa1", &json!({"kid": "rsa1"}), &claims());
        assert!(matches!(
            verify(&token, &keys).unwrap_err(),
            SubjectError::Malformed(_)
        ));
        // x5t (a thumbprint, as GitHub sends) is fine.
        let token = i.sign_with_header(
            "rsa1",
            &json!({"alg": "RS256", "kid": "rsa1", "typ": "JWT", "x5t": "abc"}),
            &claims(),
        );
        assert!(verify(&token, &keys).is_ok());
    }

    #[test]
    fn hmac_keyed_with_the_public_key_is_refused() {
        use hmac::{KeyInit as _, Mac as _};
        let i = issuer();
        let keys = i.key_set();
        let jwks = serde_json::to_vec(&i.jwks()).unwrap();
        let input = format!(
            "{}.{}",
            enc(br#"{"alg":"HS256","kid":"rsa1"}"#),
            enc(&serde_json::to_vec(&claims()).unwrap())
        );
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&jwks).unwrap();
        mac.update(input.as_bytes());
        let token = format!("{input}.{}", enc(&mac.finalize().into_bytes()));
        assert_eq!(
            verify(&token, &keys).unwrap_err(),
            SubjectError::UnsupportedAlgorithm("HS256".into())
        );
    }

    #[test]
    fn keys_must_be_known_and_of_the_algorithm() {
        let i = issuer();
        let keys = i.key_set();
        let other = TestIssuer::new(ISS).with_rsa("rsa1", 1).with_rsa("rsa9", 2);
        // A kid the issuer does not have.
        assert_eq!(
            verify(&other.sign("rsa9", &claims()), &keys).unwrap_err(),
            SubjectError::UnknownKey
        );
        // The right kid, another key: the signature does not verify.
        assert_eq!(
            verify(&other.sign("rsa1", &claims()), &keys).unwrap_err(),
            SubjectError::BadSignature
        );
        // The kid of an RSA key with ES256 (signed by an EC key under that kid).
        let ec = TestIssuer::new(ISS).with_key("rsa1", Algorithm::ES256);
        assert_eq!(
            verify(&ec.sign("rsa1", &claims()), &keys).unwrap_err(),
            SubjectError::KeyAlgorithmMismatch
        );
        // EdDSA header over an RSA kid.
        let ed = TestIssuer::new(ISS).with_key("rsa1", Algorithm::EdDSA);
        assert_eq!(
            verify(&ed.sign("rsa1", &claims()), &keys).unwrap_err(),
            SubjectError::KeyAlgorithmMismatch
        );
        // No kid and no key of the algorithm's type.
        let rsa_only = TestIssuer::new(ISS).with_rsa("rsa1", 0).key_set();
        let token = ec.sign_with_header("rsa1", &json!({"alg": "ES256"}), &claims());
        assert_eq!(
            verify(&token, &rsa_only).unwrap_err(),
            SubjectError::UnknownKey
        );
        // An empty set.
        assert_eq!(
            verify(&i.sign("rsa1", &claims()), &IssuerKeySet::default()).unwrap_err(),
            SubjectError::UnknownKey
        );
    }

    #[test]
    fn tampering_breaks_the_signature() {
        let i = issuer();
        let keys = i.key_set();
        for kid in ["rsa1", "ec1", "ed1"] {
            let token = i.sign(kid, &claims());
            let (input, sig) = token.rsplit_once('.').unwrap();
            let (h, _) = input.split_once('.').unwrap();
            let mut c = claims();
            c["repository_id"] = "75".into();
            let forged = format!("{h}.{}.{sig}", enc(&serde_json::to_vec(&c).unwrap()));
            assert_eq!(
                verify(&forged, &keys).unwrap_err(),
                SubjectError::BadSignature,
                "{kid}"
            );
            let short = format!("{input}.{}", enc(&[1u8; 10]));
            assert_eq!(
                verify(&short, &keys).unwrap_err(),
                SubjectError::BadSignature,
                "{kid}"
            );
        }
    }

    #[test]
    fn times_with_sixty_seconds_of_leeway() {
        let i = issuer();
        let keys = i.key_set();
        let at = |c: &Value, now: Timestamp| {
            parse_subject_token(&i.sign("rsa1", c))
                .unwrap()
                .verify(&keys, now)
        };
        let exp = EPOCH.unix_secs() + 300;
        let c = claims();
        assert!(at(&c, Timestamp::from_unix_secs(exp + 59)).is_ok());
        assert_eq!(
            at(&c, Timestamp::from_unix_secs(exp + 60)).unwrap_err(),
            SubjectError::Expired
        );
        let mut c = claims();
        c["nbf"] = (EPOCH.unix_secs() + 100).into();
        assert!(at(&c, Timestamp::from_unix_secs(EPOCH.unix_secs() + 40)).is_ok());
        assert_eq!(
            at(&c, Timestamp::from_unix_secs(EPOCH.unix_secs() + 39)).unwrap_err(),
            SubjectError::NotYetValid
        );
        let mut c = claims();
        c["iat"] = (EPOCH.unix_secs() + 61).into();
        assert_eq!(at(&c, EPOCH).unwrap_err(), SubjectError::IssuedInFuture);
        c["iat"] = (EPOCH.unix_secs() + 60).into();
        assert!(at(&c, EPOCH).is_ok());
    }

    #[test]
    fn required_claims() {
        let i = issuer();
        let keys = i.key_set();
        for (name, bad) in [
            ("sub", Value::Null),
            ("sub", json!("")),
            ("sub", json!(1)),
            ("aud", Value::Null),
            ("aud", json!(1)),
            ("aud", json!(["a", 1])),
            ("exp", Value::Null),
            ("exp", json!(1.5)),
            ("exp", json!("1")),
            ("iat", Value::Null),
            ("iat", json!("x")),
            ("nbf", json!("x")),
            ("jti", json!(1)),
        ] {
            let mut c = claims();
            if bad.is_null() {
                c.as_object_mut().unwrap().remove(name);
            } else {
                c[name] = bad.clone();
            }
            let e = verify(&i.sign("rsa1", &c), &keys).unwrap_err();
            assert!(matches!(e, SubjectError::Claim(_)), "{name} = {bad}: {e}");
        }
        for bad in [Value::Null, json!(""), json!(7)] {
            let mut c = claims();
            c["iss"] = bad;
            assert_eq!(
                parse_subject_token(&i.sign("rsa1", &c)).unwrap_err(),
                SubjectError::Claim("iss")
            );
        }
        // Optional ones may be absent.
        let mut c = claims();
        let m = c.as_object_mut().unwrap();
        m.remove("nbf");
        m.remove("jti");
        let s = verify(&i.sign("rsa1", &c), &keys).unwrap();
        assert_eq!((s.nbf, s.jti), (None, None));
    }

    #[test]
    fn malformed_tokens() {
        let i = issuer();
        let good = i.sign("rsa1", &claims());
        let (h, rest) = good.split_once('.').unwrap();
        let (p, s) = rest.split_once('.').unwrap();
        let payload = |raw: &[u8]| format!("{h}.{}.{s}", enc(raw));
        let cases = [
            String::new(),
            "a.b".into(),
            format!("{good}.x"),
            format!(".{p}.{s}"),
            format!("{h}..{s}"),
            format!("{h}.{p}."),
            format!("{h}=.{p}.{s}"),
            format!("{h}.{p}.{s}+"),
            format!("{}.{p}.{s}", enc(b"not json")),
            format!("{}.{p}.{s}", enc(&[0xff, 0xfe])),
            payload(&[0xff]),
            payload(b"[1]"),
            payload(b"\"x\""),
            payload(br#"{"iss":"a","iss":"b"}"#),
            payload(br#"{"iss":"a","x":{"y":1,"y":2}}"#),
            payload(br#"{"iss":"a""#),
            "x".repeat(MAX_SUBJECT_TOKEN_LEN + 1),
        ];
        for t in cases {
            let r = parse_subject_token(&t);
            assert!(r.is_err(), "{t:.60}");
        }
        assert_eq!(
            parse_subject_token(&"x".repeat(MAX_SUBJECT_TOKEN_LEN + 1)).unwrap_err(),
            SubjectError::TooLarge
        );
    }

    #[test]
    fn jwks_documents() {
        let i = issuer();
        let mut doc = i.jwks();
        let keys = doc["keys"].as_array_mut().unwrap();
        keys.push(json!({"kty": "RSA", "kid": "small", "n": enc(&[0xc5; 128]), "e": "AQAB"}));
        keys.push(
            json!({"kty": "RSA", "kid": "enc", "use": "enc", "n": enc(&[0xc5; 256]), "e": "AQAB"}),
        );
        keys.push(
            json!({"kty": "RSA", "kid": "ps", "alg": "PS256", "n": enc(&[0xc5; 256]), "e": "AQAB"}),
        );
        keys.push(
            json!({"kty": "RSA", "kid": "priv", "n": enc(&[0xc5; 256]), "e": "AQAB", "d": "x"}),
        );
        keys.push(json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}));
        keys.push(json!({"kty": "EC", "kid": "p384", "crv": "P-384", "x": "AA", "y": "AA"}));
        keys.push(json!({"kty": "RSA", "kid": "bad-n", "n": "!!", "e": "AQAB"}));
        keys.push(json!("not an object"));
        let set = IssuerKeySet::from_jwks(&serde_json::to_vec(&doc).unwrap()).unwrap();
        assert_eq!((set.len(), set.skipped()), (3, 8));
        assert!(set.has_kid("rsa1") && set.has_kid("ec1") && !set.has_kid("small"));
        // A leading zero byte of the modulus is tolerated.
        let mut doc = TestIssuer::new(ISS).with_rsa("z", 0).jwks();
        let n = URL_SAFE_NO_PAD
            .decode(doc["keys"][0]["n"].as_str().unwrap())
            .unwrap();
        let mut padded = vec![0u8];
        padded.extend_from_slice(&n);
        doc["keys"][0]["n"] = enc(&padded).into();
        let set = IssuerKeySet::from_jwks(&serde_json::to_vec(&doc).unwrap()).unwrap();
        let z = TestIssuer::new(ISS).with_rsa("z", 0);
        assert!(verify(&z.sign("z", &claims()), &set).is_ok());

        for (bad, e) in [
            (&b"not json"[..], JwksError::NotAKeySet),
            (br#"{"keys": {}}"#, JwksError::NotAKeySet),
            (br#"[]"#, JwksError::NotAKeySet),
            (br#"{"keys": []}"#, JwksError::NoUsableKey),
            (
                br#"{"keys": [{"kty": "oct", "k": "AA"}]}"#,
                JwksError::NoUsableKey,
            ),
        ] {
            assert_eq!(IssuerKeySet::from_jwks(bad).unwrap_err(), e);
        }
        let many = json!({"keys": vec![json!({"kty": "oct"}); MAX_JWKS_KEYS + 1]});
        assert_eq!(
            IssuerKeySet::from_jwks(&serde_json::to_vec(&many).unwrap()).unwrap_err(),
            JwksError::TooManyKeys
        );
    }
}

//! Compact JSON Web Signatures (RFC 7515) with `EdDSA` and `ES256`.
//!
//! [`parse_compact`] is strict (see the [module rules](super)): at most
//! [`MAX_TOKEN_LEN`] bytes, three non-empty base64url segments without
//! padding, a JSON-object header without duplicate members whose `alg` is
//! exactly `EdDSA` or `ES256`, no `jwk`/`jku`/`x5u`/`x5c`, no `crit`, no
//! `b64` other than `true`, and a 64-byte signature.
//!
//! [`verify_compact`] then asks a [`KeyResolver`] for the key named by `kid`
//! *for the header's algorithm*, and checks that the key's own algorithm is
//! that algorithm before verifying.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use p256::ecdsa::signature::{Signer as _, Verifier as _};
use rand::TryRng as _;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use zeroize::{Zeroize as _, Zeroizing};

use super::jwk::check_ed25519_point;
use super::{JoseError, Jwk, JwkSet, b64_decode, b64_decode_array, b64_encode, b64_encode_into};

/// The largest compact token accepted, in bytes (8 KiB).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Length of a signature for both algorithms, in bytes.
pub(crate) const SIGNATURE_LEN: usize = 64;

/// A JWS signature algorithm.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Algorithm {
    /// Ed25519 (RFC 8037).
    EdDSA,
    /// ECDSA with P-256 and SHA-256 (RFC 7518 §3.4).
    ES256,
}

impl Algorithm {
    /// The `alg` header value: `"EdDSA"` or `"ES256"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::EdDSA => "EdDSA",
            Algorithm::ES256 => "ES256",
        }
    }

    /// The algorithm named by an `alg` value (exact, case-sensitive match).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "EdDSA" => Some(Algorithm::EdDSA),
            "ES256" => Some(Algorithm::ES256),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The accepted protected header of a compact JWS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Header {
    /// The signature algorithm.
    pub alg: Algorithm,
    /// The media type of the whole token (`at+jwt`, `JWT`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    /// The id of the signing key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
}

// ---------------------------------------------------------------------------
// Header parsing
// ---------------------------------------------------------------------------

/// The header as read, before the rules are applied.
#[derive(Default)]
struct RawHeader {
    alg: Option<Option<Algorithm>>,
    typ: Option<String>,
    kid: Option<String>,
    embedded_key: bool,
    crit: bool,
    b64_not_true: bool,
}

enum HeaderKey {
    Alg,
    Typ,
    Kid,
    Jwk,
    Jku,
    X5u,
    X5c,
    Crit,
    B64,
    Other(String),
}

impl HeaderKey {
    /// A bit per known member, for duplicate detection.
    fn bit(&self) -> u16 {
        match self {
            HeaderKey::Alg => 1,
            HeaderKey::Typ => 1 << 1,
            HeaderKey::Kid => 1 << 2,
            HeaderKey::Jwk => 1 << 3,
            HeaderKey::Jku => 1 << 4,
            HeaderKey::X5u => 1 << 5,
            HeaderKey::X5c => 1 << 6,
            HeaderKey::Crit => 1 << 7,
            HeaderKey::B64 => 1 << 8,
            HeaderKey::Other(_) => 0,
        }
    }
}

impl<'de> Deserialize<'de> for HeaderKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = HeaderKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a header member name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HeaderKey, E> {
                Ok(match v {
                    "alg" => HeaderKey::Alg,
                    "typ" => HeaderKey::Typ,
                    "kid" => HeaderKey::Kid,
                    "jwk" => HeaderKey::Jwk,
                    "jku" => HeaderKey::Jku,
                    "x5u" => HeaderKey::X5u,
                    "x5c" => HeaderKey::X5c,
                    "crit" => HeaderKey::Crit,
                    "b64" => HeaderKey::B64,
                    other => HeaderKey::Other(other.to_owned()),
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

/// An `alg` value: one of ours, or something else (`None`).
struct AlgValue(Option<Algorithm>);

impl<'de> Deserialize<'de> for AlgValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct AlgVisitor;
        impl Visitor<'_> for AlgVisitor {
            type Value = AlgValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an algorithm name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<AlgValue, E> {
                Ok(AlgValue(Algorithm::from_name(v)))
            }
        }
        d.deserialize_str(AlgVisitor)
    }
}

impl<'de> Deserialize<'de> for RawHeader {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct HeaderVisitor;
        impl<'de> Visitor<'de> for HeaderVisitor {
            type Value = RawHeader;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JOSE header object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawHeader, A::Error> {
                let mut h = RawHeader::default();
                let mut seen: u16 = 0;
                let mut others: Vec<String> = Vec::new();
                while let Some(key) = map.next_key::<HeaderKey>()? {
                    let bit = key.bit();
                    if seen & bit != 0 {
                        return Err(de::Error::custom("duplicate header member"));
                    }
                    seen |= bit;
                    match key {
                        HeaderKey::Alg => h.alg = Some(map.next_value::<AlgValue>()?.0),
                        HeaderKey::Typ => h.typ = Some(map.next_value()?),
                        HeaderKey::Kid => h.kid = Some(map.next_value()?),
                        HeaderKey::Jwk | HeaderKey::Jku | HeaderKey::X5u | HeaderKey::X5c => {
                            h.embedded_key = true;
                            map.next_value::<IgnoredAny>()?;
                        }
                        HeaderKey::Crit => {
                            h.crit = true;
                            map.next_value::<IgnoredAny>()?;
                        }
                        HeaderKey::B64 => {
                            // Anything but the literal `true` is refused.
                            let v = map.next_value::<serde_json::Value>()?;
                            h.b64_not_true = v != serde_json::Value::Bool(true);
                        }
                        HeaderKey::Other(name) => {
                            if others.contains(&name) {
                                return Err(de::Error::custom("duplicate header member"));
                            }
                            others.push(name);
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(h)
            }
        }
        d.deserialize_map(HeaderVisitor)
    }
}

pub(crate) fn parse_header(json: &[u8]) -> Result<Header, JoseError> {
    // The header is UTF-8 JSON (RFC 7515 §4); serde_json does not check the
    // UTF-8 of the members it skips, so the whole text is checked first.
    let json =
        std::str::from_utf8(json).map_err(|_| JoseError::Malformed("header is not UTF-8"))?;
    let raw: RawHeader = serde_json::from_str(json)
        .map_err(|_| JoseError::Malformed("header is not a valid JSON object"))?;
    let alg = match raw.alg {
        None => return Err(JoseError::Malformed("header has no alg")),
        Some(None) => return Err(JoseError::UnsupportedAlgorithm),
        Some(Some(alg)) => alg,
    };
    if raw.embedded_key {
        return Err(JoseError::EmbeddedKey);
    }
    if raw.crit {
        return Err(JoseError::CriticalHeader);
    }
    if raw.b64_not_true {
        return Err(JoseError::Malformed(
            "unencoded payloads (b64) are not supported",
        ));
    }
    Ok(Header {
        alg,
        typ: raw.typ,
        kid: raw.kid,
    })
}

// ---------------------------------------------------------------------------
// Compact parsing
// ---------------------------------------------------------------------------

/// A parsed (not yet verified) compact JWS.
#[derive(Debug, Clone)]
pub struct Compact<'a> {
    header: Header,
    payload: Vec<u8>,
    signing_input: &'a str,
    signature: [u8; SIGNATURE_LEN],
}

impl<'a> Compact<'a> {
    /// The accepted protected header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The decoded payload bytes. Not yet authenticated.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The signed bytes: `base64url(header) "." base64url(payload)`.
    pub fn signing_input(&self) -> &'a str {
        self.signing_input
    }

    /// The 64-byte signature (`R || S` for Ed25519, `r || s` for ES256).
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }
}

/// Parses a compact JWS strictly, without verifying it.
///
/// # Errors
/// [`JoseError::TooLarge`] beyond [`MAX_TOKEN_LEN`];
/// [`JoseError::Malformed`] for a bad shape, encoding, header JSON or
/// signature length; [`JoseError::UnsupportedAlgorithm`],
/// [`JoseError::EmbeddedKey`] or [`JoseError::CriticalHeader`] for a refused
/// header.
pub fn parse_compact(token: &str) -> Result<Compact<'_>, JoseError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JoseError::TooLarge);
    }
    const SHAPE: JoseError = JoseError::Malformed("a compact JWS has exactly three segments");
    let (signing_input, s) = token.rsplit_once('.').ok_or(SHAPE)?;
    let (h, p) = signing_input.split_once('.').ok_or(SHAPE)?;
    if p.contains('.') {
        return Err(SHAPE);
    }
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(JoseError::Malformed("empty segment"));
    }
    let header = parse_header(&b64_decode(h)?)?;
    let payload = b64_decode(p)?;
    let signature = b64_decode_array::<SIGNATURE_LEN>(s)
        .map_err(|_| JoseError::Malformed("signature is not 64 base64url-encoded bytes"))?;
    Ok(Compact {
        header,
        payload,
        signing_input,
        signature,
    })
}

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

/// A public key that verifies signatures of exactly one algorithm.
#[derive(Clone, PartialEq, Eq)]
pub enum VerifyingKey {
    /// An Ed25519 key (verifies `EdDSA` only).
    Ed25519(ed25519_dalek::VerifyingKey),
    /// A P-256 key (verifies `ES256` only).
    Es256(p256::ecdsa::VerifyingKey),
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let jwk = self.to_jwk();
        f.debug_struct("VerifyingKey")
            .field("alg", &self.alg())
            .field("x", &jwk.x.unwrap_or_default())
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// An Ed25519 key from its 32 bytes.
    ///
    /// # Errors
    /// [`JoseError::InvalidKey`] if the bytes are not a valid point or are a
    /// small-order point.
    pub fn ed25519(bytes: &[u8; 32]) -> Result<VerifyingKey, JoseError> {
        check_ed25519_point(bytes).map(VerifyingKey::Ed25519)
    }

    /// A key from its JWK: `OKP`/`Ed25519` or `EC`/`P-256`.
    ///
    /// If the JWK has an `alg`, it must be the key's algorithm; if it has a
    /// `use`, it must be `sig`.
    ///
    /// # Errors
    /// [`JoseError::InvalidKey`] for any other key, a bad encoding, or a point
    /// not on the curve.
    pub fn from_jwk(jwk: &Jwk) -> Result<VerifyingKey, JoseError> {
        let key = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("OKP", Some("Ed25519")) => VerifyingKey::ed25519(&jwk.ed25519_public_key()?)?,
            ("EC", Some("P-256")) => {
                let coord = |c: &Option<String>| {
                    c.as_deref()
                        .ok_or(JoseError::InvalidKey("missing coordinate"))
                        .and_then(|s| {
                            b64_decode_array::<32>(s)
                                .map_err(|_| JoseError::InvalidKey("bad coordinate"))
                        })
                };
                let (x, y) = (coord(&jwk.x)?, coord(&jwk.y)?);
                let mut sec1 = [0u8; 65];
                sec1[0] = 0x04;
                sec1[1..33].copy_from_slice(&x);
                sec1[33..].copy_from_slice(&y);
                let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                    .map_err(|_| JoseError::InvalidKey("not a valid P-256 point"))?;
                VerifyingKey::Es256(key)
            }
            _ => return Err(JoseError::InvalidKey("unsupported key type or curve")),
        };
        if let Some(alg) = jwk.alg.as_deref()
            && alg != key.alg().as_str()
        {
            return Err(JoseError::InvalidKey("JWK alg does not match the key"));
        }
        if let Some(u) = jwk.use_.as_deref()
            && u != "sig"
        {
            return Err(JoseError::InvalidKey("JWK is not for signatures"));
        }
        Ok(key)
    }

    /// The one algorithm this key verifies.
    pub fn alg(&self) -> Algorithm {
        match self {
            VerifyingKey::Ed25519(_) => Algorithm::EdDSA,
            VerifyingKey::Es256(_) => Algorithm::ES256,
        }
    }

    /// The key as a JWK with `alg` and `use` (`sig`), without `kid`.
    pub fn to_jwk(&self) -> Jwk {
        let mut jwk = match self {
            VerifyingKey::Ed25519(k) => Jwk::ed25519(k.as_bytes()),
            VerifyingKey::Es256(k) => {
                let point = k.to_sec1_point(false);
                Jwk {
                    kty: "EC".to_owned(),
                    crv: Some("P-256".to_owned()),
                    x: point.x().map(|x| b64_encode(x)),
                    y: point.y().map(|y| b64_encode(y)),
                    kid: None,
                    alg: None,
                    use_: None,
                }
            }
        };
        jwk.alg = Some(self.alg().as_str().to_owned());
        jwk.use_ = Some("sig".to_owned());
        jwk
    }

    /// The Ed25519 key bytes, if this is an Ed25519 key.
    pub fn ed25519_bytes(&self) -> Option<[u8; 32]> {
        match self {
            VerifyingKey::Ed25519(k) => Some(k.to_bytes()),
            VerifyingKey::Es256(_) => None,
        }
    }

    /// Verifies a 64-byte signature over `message` with this key's algorithm
    /// (strict Ed25519 verification; raw `r || s` for ES256).
    ///
    /// # Errors
    /// [`JoseError::BadSignature`].
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> Result<(), JoseError> {
        match self {
            VerifyingKey::Ed25519(k) => {
                let sig = ed25519_dalek::Signature::from_bytes(signature);
                k.verify_strict(message, &sig)
                    .map_err(|_| JoseError::BadSignature)
            }
            VerifyingKey::Es256(k) => {
                let sig = p256::ecdsa::Signature::from_slice(signature)
                    .map_err(|_| JoseError::BadSignature)?;
                k.verify(message, &sig).map_err(|_| JoseError::BadSignature)
            }
        }
    }
}

#[derive(Clone)]
enum SigningInner {
    Ed25519(ed25519_dalek::SigningKey),
    Es256(p256::ecdsa::SigningKey),
}

/// A private signing key (Ed25519 or P-256) with its key id.
///
/// The encoded header is precomputed: for tokens without `typ`, and for the
/// first `typ` value used (the common case of one token type per key), so
/// signing costs one allocation, the payload encoding and the signature.
///
/// If `kid` is empty, headers carry no `kid` member.
#[derive(Clone)]
pub struct SigningKey {
    inner: SigningInner,
    kid: String,
    /// `kid` as a JSON string literal, `None` if `kid` is empty.
    kid_json: Option<String>,
    /// base64url of `{"alg":..,"kid":..}`.
    header_no_typ: String,
    /// (typ, base64url of `{"alg":..,"typ":..,"kid":..}`) for the first typ used.
    header_typ: OnceLock<(String, String)>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg())
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn encode_header(
    alg: Algorithm,
    typ: Option<&str>,
    kid_json: Option<&str>,
) -> Result<String, JoseError> {
    let mut json = String::with_capacity(64);
    json.push_str(r#"{"alg":""#);
    json.push_str(alg.as_str());
    json.push('"');
    if let Some(typ) = typ {
        json.push_str(r#","typ":"#);
        json.push_str(&serde_json::to_string(typ).map_err(|_| JoseError::Malformed("typ"))?);
    }
    if let Some(kid) = kid_json {
        json.push_str(r#","kid":"#);
        json.push_str(kid);
    }
    json.push('}');
    Ok(b64_encode(json.as_bytes()))
}

/// Number of base64url characters (no padding) for `n` bytes, `None` on
/// overflow.
fn b64_len(n: usize) -> Option<usize> {
    let full = (n / 3).checked_mul(4)?;
    full.checked_add(match n % 3 {
        0 => 0,
        1 => 2,
        _ => 3,
    })
}

impl SigningKey {
    /// A new random key from the operating system's generator.
    ///
    /// # Errors
    /// [`JoseError::Randomness`] if the OS generator fails.
    pub fn generate(alg: Algorithm, kid: impl Into<String>) -> Result<SigningKey, JoseError> {
        let kid = kid.into();
        // A random 32-byte string is a valid P-256 scalar except with
        // probability about 2^-32; retry a few times.
        for _ in 0..16 {
            let mut bytes = Zeroizing::new([0u8; 32]);
            rand::rngs::SysRng
                .try_fill_bytes(bytes.as_mut_slice())
                .map_err(|_| JoseError::Randomness)?;
            match SigningKey::from_secret_bytes(alg, kid.clone(), bytes.as_slice()) {
                Ok(key) => return Ok(key),
                Err(JoseError::InvalidKey(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(JoseError::Randomness)
    }

    /// A key from its 32 secret bytes (the Ed25519 seed, or the P-256 scalar
    /// big-endian), as returned by [`SigningKey::secret_bytes`].
    ///
    /// # Errors
    /// [`JoseError::InvalidKey`] unless there are exactly 32 bytes and, for
    /// ES256, they are a scalar in `1..n`.
    pub fn from_secret_bytes(
        alg: Algorithm,
        kid: impl Into<String>,
        bytes: &[u8],
    ) -> Result<SigningKey, JoseError> {
        let inner = match alg {
            Algorithm::EdDSA => {
                let mut seed = Zeroizing::new([0u8; 32]);
                if bytes.len() != 32 {
                    return Err(JoseError::InvalidKey("secret key must be 32 bytes"));
                }
                seed.copy_from_slice(bytes);
                SigningInner::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed))
            }
            Algorithm::ES256 => {
                if bytes.len() != 32 {
                    return Err(JoseError::InvalidKey("secret key must be 32 bytes"));
                }
                SigningInner::Es256(
                    p256::ecdsa::SigningKey::from_slice(bytes)
                        .map_err(|_| JoseError::InvalidKey("not a valid P-256 scalar"))?,
                )
            }
        };
        let kid = kid.into();
        let kid_json = if kid.is_empty() {
            None
        } else {
            Some(serde_json::to_string(&kid).map_err(|_| JoseError::InvalidKey("kid"))?)
        };
        let header_no_typ = encode_header(alg, None, kid_json.as_deref())?;
        Ok(SigningKey {
            inner,
            kid,
            kid_json,
            header_no_typ,
            header_typ: OnceLock::new(),
        })
    }

    /// The 32 secret bytes, for persistence by the host (wiped on drop).
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        match &self.inner {
            SigningInner::Ed25519(k) => Zeroizing::new(k.to_bytes()),
            SigningInner::Es256(k) => {
                let mut repr = k.to_bytes();
                let mut out = Zeroizing::new([0u8; 32]);
                out.copy_from_slice(repr.as_slice());
                repr.as_mut_slice().zeroize();
                out
            }
        }
    }

    /// The algorithm this key signs with.
    pub fn alg(&self) -> Algorithm {
        match self.inner {
            SigningInner::Ed25519(_) => Algorithm::EdDSA,
            SigningInner::Es256(_) => Algorithm::ES256,
        }
    }

    /// The key id (may be empty).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        match &self.inner {
            SigningInner::Ed25519(k) => VerifyingKey::Ed25519(k.verifying_key()),
            SigningInner::Es256(k) => VerifyingKey::Es256(*k.verifying_key()),
        }
    }

    /// The public JWK to publish: with `kid` (unless empty), `alg` and
    /// `use` `sig`.
    pub fn public_jwk(&self) -> Jwk {
        let mut jwk = self.verifying_key().to_jwk();
        if !self.kid.is_empty() {
            jwk.kid = Some(self.kid.clone());
        }
        jwk
    }

    /// The encoded header for `typ`, cached when possible.
    pub(super) fn header(&self, typ: Option<&str>) -> Result<Cow<'_, str>, JoseError> {
        let Some(typ) = typ else {
            return Ok(Cow::Borrowed(&self.header_no_typ));
        };
        if let Some((cached_typ, encoded)) = self.header_typ.get() {
            if cached_typ == typ {
                return Ok(Cow::Borrowed(encoded));
            }
            return encode_header(self.alg(), Some(typ), self.kid_json.as_deref()).map(Cow::Owned);
        }
        let encoded = encode_header(self.alg(), Some(typ), self.kid_json.as_deref())?;
        let (cached_typ, cached) = self
            .header_typ
            .get_or_init(|| (typ.to_owned(), encoded.clone()));
        if cached_typ == typ {
            Ok(Cow::Borrowed(cached))
        } else {
            Ok(Cow::Owned(encoded))
        }
    }

    /// Signs `payload` as a compact JWS:
    /// `base64url(header) "." base64url(payload) "." base64url(signature)`,
    /// with header `{"alg":..,"typ":..,"kid":..}` (`typ` only if given,
    /// `kid` only if not empty).
    ///
    /// The payload is signed as given; for JWTs use
    /// [`encode_claims`](super::encode_claims).
    ///
    /// # Errors
    /// [`JoseError::TooLarge`] if the token would exceed [`MAX_TOKEN_LEN`]
    /// (and so could not be verified here); [`JoseError::Signing`] is
    /// reserved for a failing signature primitive, which neither algorithm
    /// has in practice (RFC 6979 ECDSA retries internally).
    pub fn sign_compact(&self, typ: Option<&str>, payload: &[u8]) -> Result<String, JoseError> {
        let header = self.header(typ)?;
        let len = b64_len(payload.len())
            .and_then(|p| p.checked_add(header.len()))
            .and_then(|n| n.checked_add(2 + 86))
            .ok_or(JoseError::TooLarge)?;
        if len > MAX_TOKEN_LEN {
            return Err(JoseError::TooLarge);
        }
        let mut out = String::with_capacity(len);
        out.push_str(&header);
        out.push('.');
        b64_encode_into(payload, &mut out);
        let signature = self.sign_raw(out.as_bytes())?;
        out.push('.');
        b64_encode_into(&signature, &mut out);
        Ok(out)
    }

    /// The raw 64-byte signature of `message`: Ed25519 (RFC 8032) or, for
    /// ES256, `r || s`. For signatures outside JOSE (Data Integrity
    /// proofs).
    pub fn sign_raw(&self, message: &[u8]) -> Result<[u8; 64], JoseError> {
        match &self.inner {
            SigningInner::Ed25519(k) => k
                .try_sign(message)
                .map(|s| s.to_bytes())
                .map_err(|_| JoseError::Signing),
            SigningInner::Es256(k) => {
                let sig: p256::ecdsa::Signature =
                    k.try_sign(message).map_err(|_| JoseError::Signing)?;
                let bytes = sig.to_bytes();
                <[u8; 64]>::try_from(bytes.as_slice()).map_err(|_| JoseError::Signing)
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Key resolution and verification
// ---------------------------------------------------------------------------

/// Finds the trusted key for a token.
pub trait KeyResolver {
    /// The key for `kid` that verifies `alg`, if any. Implementations should
    /// return only keys whose [`VerifyingKey::alg`] is `alg`;
    /// [`verify_compact`] enforces it anyway.
    fn resolve(&self, kid: Option<&str>, alg: Algorithm) -> Option<&VerifyingKey>;
}

/// A set of trusted keys by key id.
///
/// Resolution: a token with a `kid` needs a key of that id; a token without
/// `kid` is accepted only if the set holds exactly one key. In both cases the
/// key's algorithm must be the token's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: HashMap<String, VerifyingKey>,
}

impl KeySet {
    /// An empty set.
    pub fn new() -> KeySet {
        KeySet::default()
    }

    /// The usable keys of a JWK Set. Keys that are not Ed25519 or P-256
    /// signature keys are skipped; a key without `kid` is filed under its
    /// RFC 7638 thumbprint; of keys sharing a `kid`, the first wins.
    ///
    /// # Errors
    /// None today; the `Result` leaves room for stricter policies.
    pub fn from_jwks(jwks: &JwkSet) -> Result<KeySet, JoseError> {
        let mut set = KeySet::new();
        for jwk in &jwks.keys {
            let Ok(key) = VerifyingKey::from_jwk(jwk) else {
                continue;
            };
            let kid = match &jwk.kid {
                Some(kid) => kid.clone(),
                None => match jwk.thumbprint() {
                    Ok(t) => t,
                    Err(_) => continue,
                },
            };
            set.keys.entry(kid).or_insert(key);
        }
        Ok(set)
    }

    /// Adds or replaces a key; returns the replaced one.
    pub fn insert(&mut self, kid: impl Into<String>, key: VerifyingKey) -> Option<VerifyingKey> {
        self.keys.insert(kid.into(), key)
    }

    /// Removes a key.
    pub fn remove(&mut self, kid: &str) -> Option<VerifyingKey> {
        self.keys.remove(kid)
    }

    /// The key with this id.
    pub fn get(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.get(kid)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys with their ids, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &VerifyingKey)> {
        self.keys.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The set as a JWK Set (each key with `kid`, `alg` and `use`), sorted
    /// by `kid`.
    pub fn to_jwks(&self) -> JwkSet {
        let mut keys: Vec<Jwk> = self
            .keys
            .iter()
            .map(|(kid, key)| {
                let mut jwk = key.to_jwk();
                jwk.kid = Some(kid.clone());
                jwk
            })
            .collect();
        keys.sort_by(|a, b| a.kid.cmp(&b.kid));
        JwkSet { keys }
    }
}

impl KeyResolver for KeySet {
    fn resolve(&self, kid: Option<&str>, alg: Algorithm) -> Option<&VerifyingKey> {
        let key = match kid {
            Some(kid) => self.keys.get(kid)?,
            None if self.keys.len() == 1 => self.keys.values().next()?,
            None => return None,
        };
        (key.alg() == alg).then_some(key)
    }
}

/// Parses and verifies a compact JWS; returns its header and payload.
///
/// # Errors
/// Everything [`parse_compact`] refuses; [`JoseError::UnknownKey`] if the
/// resolver has no key for the `kid` and algorithm;
/// [`JoseError::KeyAlgorithmMismatch`] if it returned a key of another
/// algorithm; [`JoseError::BadSignature`].
pub fn verify_compact<R: KeyResolver + ?Sized>(
    token: &str,
    keys: &R,
) -> Result<(Header, Vec<u8>), JoseError> {
    let c = parse_compact(token)?;
    let key = keys
        .resolve(c.header.kid.as_deref(), c.header.alg)
        .ok_or(JoseError::UnknownKey)?;
    if key.alg() != c.header.alg {
        return Err(JoseError::KeyAlgorithmMismatch);
    }
    key.verify(c.signing_input.as_bytes(), &c.signature)?;
    Ok((c.header, c.payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        b64_encode(s.as_bytes())
    }

    fn token(header: &str) -> String {
        format!("{}.{}.{}", b64(header), b64("{}"), b64_encode(&[7u8; 64]))
    }

    #[test]
    fn header_must_be_utf8_even_in_unknown_members() {
        // Found by the `jws_verify` fuzz target: invalid UTF-8 inside a
        // member that the parser skips was accepted.
        let mut header = br#"{"alg":"EdDSA","x":"a"#.to_vec();
        header.extend_from_slice(&[0xe5, b'b', b'"', b'}']);
        let t = format!(
            "{}.{}.{}",
            b64_encode(&header),
            b64("{}"),
            b64_encode(&[7u8; 64])
        );
        assert_eq!(
            parse_compact(&t).unwrap_err(),
            JoseError::Malformed("header is not UTF-8")
        );
    }

    #[test]
    fn header_rules() {
        assert!(parse_compact(&token(r#"{"alg":"EdDSA"}"#)).is_ok());
        assert!(parse_compact(&token(r#"{"alg":"ES256","b64":true}"#)).is_ok());
        assert_eq!(
            parse_compact(&token(r#"{"alg":"eddsa"}"#)).unwrap_err(),
            JoseError::UnsupportedAlgorithm
        );
        assert_eq!(
            parse_compact(&token(r#"{"alg":"none"}"#)).unwrap_err(),
            JoseError::UnsupportedAlgorithm
        );
        assert!(parse_compact(&token(r#"{"alg":"EdDSA","alg":"EdDSA"}"#)).is_err());
        assert!(parse_compact(&token(r#"{"alg":"EdDSA","x":1,"x":2}"#)).is_err());
        assert!(parse_compact(&token(r#"{"alg":"EdDSA","x":1,"y":2}"#)).is_ok());
        // Escaped member names are compared unescaped.
        assert!(parse_compact(&token(r#"{"alg":"EdDSA","al\u0067":"none"}"#)).is_err());
        assert_eq!(
            parse_compact(&token(r#"{"alg":"EdDSA","jku":"https://x"}"#)).unwrap_err(),
            JoseError::EmbeddedKey
        );
        assert_eq!(
            parse_compact(&token(r#"{"alg":"EdDSA","x5c":[]}"#)).unwrap_err(),
            JoseError::EmbeddedKey
        );
        assert_eq!(
            parse_compact(&token(r#"{"alg":"EdDSA","crit":[]}"#)).unwrap_err(),
            JoseError::CriticalHeader
        );
        assert!(parse_compact(&token(r#"{"alg":"EdDSA","b64":false}"#)).is_err());
        assert!(parse_compact(&token(r#"{"alg":"EdDSA","kid":7}"#)).is_err());
        assert!(parse_compact(&token(r#"{"alg":"EdDSA","typ":null}"#)).is_err());
        assert!(parse_compact(&token(r#"{"kid":"a"}"#)).is_err());
        assert!(parse_compact(&token(r#"{"alg":"EdDSA"} x"#)).is_err());
        assert!(parse_compact(&token(r#""EdDSA""#)).is_err());
    }

    #[test]
    fn shape_rules() {
        let good = token(r#"{"alg":"EdDSA"}"#);
        let c = parse_compact(&good).unwrap();
        assert_eq!(c.payload(), b"{}");
        assert_eq!(c.signature(), &[7u8; 64]);
        assert_eq!(c.header().alg, Algorithm::EdDSA);
        assert_eq!(c.signing_input(), good.rsplit_once('.').unwrap().0);
        assert!(parse_compact(&format!("{good}.")).is_err());
        assert!(parse_compact(&format!(".{good}")).is_err());
        assert!(parse_compact(&format!("{good} ")).is_err());
        let short = format!(
            "{}.{}.{}",
            b64(r#"{"alg":"EdDSA"}"#),
            b64("{}"),
            b64_encode(&[7u8; 63])
        );
        assert!(parse_compact(&short).is_err());
        let long = format!(
            "{}.{}.{}",
            b64(r#"{"alg":"EdDSA"}"#),
            "A".repeat(MAX_TOKEN_LEN),
            b64_encode(&[7u8; 64])
        );
        assert_eq!(parse_compact(&long).unwrap_err(), JoseError::TooLarge);
    }

    #[test]
    fn keys_and_resolution() {
        let ed = SigningKey::generate(Algorithm::EdDSA, "ed").unwrap();
        let es = SigningKey::generate(Algorithm::ES256, "es").unwrap();
        assert!(!format!("{ed:?}").contains(&format!("{:?}", ed.secret_bytes().as_slice())));

        for key in [&ed, &es] {
            let again =
                SigningKey::from_secret_bytes(key.alg(), key.kid(), key.secret_bytes().as_slice())
                    .unwrap();
            assert_eq!(again.verifying_key(), key.verifying_key());
            let jwk = key.public_jwk();
            assert_eq!(jwk.kid.as_deref(), Some(key.kid()));
            assert_eq!(jwk.alg.as_deref(), Some(key.alg().as_str()));
            assert_eq!(VerifyingKey::from_jwk(&jwk).unwrap(), key.verifying_key());
        }

        let mut set = KeySet::new();
        set.insert("ed", ed.verifying_key());
        set.insert("es", es.verifying_key());
        let t_ed = ed.sign_compact(Some("at+jwt"), b"{}").unwrap();
        let t_es = es.sign_compact(Some("at+jwt"), b"{}").unwrap();
        assert!(verify_compact(&t_ed, &set).is_ok());
        assert!(verify_compact(&t_es, &set).is_ok());
        // Other typ values bypass the cache but still work.
        assert!(verify_compact(&ed.sign_compact(Some("JWT"), b"x").unwrap(), &set).is_ok());
        assert!(verify_compact(&ed.sign_compact(None, b"x").unwrap(), &set).is_ok());

        // A key of the other algorithm under the token's kid never verifies.
        let mut swapped = KeySet::new();
        swapped.insert("ed", es.verifying_key());
        swapped.insert("es", ed.verifying_key());
        assert_eq!(
            verify_compact(&t_ed, &swapped).unwrap_err(),
            JoseError::UnknownKey
        );
        assert_eq!(
            verify_compact(&t_es, &swapped).unwrap_err(),
            JoseError::UnknownKey
        );

        // A resolver that ignores the algorithm is overruled.
        struct Careless(VerifyingKey);
        impl KeyResolver for Careless {
            fn resolve(&self, _: Option<&str>, _: Algorithm) -> Option<&VerifyingKey> {
                Some(&self.0)
            }
        }
        assert_eq!(
            verify_compact(&t_ed, &Careless(es.verifying_key())).unwrap_err(),
            JoseError::KeyAlgorithmMismatch
        );

        // No kid: only with exactly one key.
        let anon = SigningKey::from_secret_bytes(Algorithm::EdDSA, "", &[1u8; 32]).unwrap();
        let t_anon = anon.sign_compact(None, b"hi").unwrap();
        assert!(!t_anon.contains('='));
        let mut one = KeySet::new();
        one.insert("only", anon.verifying_key());
        assert_eq!(verify_compact(&t_anon, &one).unwrap().1, b"hi");
        one.insert("other", ed.verifying_key());
        assert_eq!(
            verify_compact(&t_anon, &one).unwrap_err(),
            JoseError::UnknownKey
        );

        // JWKS round trip.
        let jwks = set.to_jwks();
        assert_eq!(jwks.keys.len(), 2);
        let back = KeySet::from_jwks(&jwks).unwrap();
        assert_eq!(back, set);
    }

    #[test]
    fn from_jwks_skips_unusable_keys() {
        let ed = SigningKey::from_secret_bytes(Algorithm::EdDSA, "a", &[2u8; 32]).unwrap();
        let mut no_kid = ed.public_jwk();
        no_kid.kid = None;
        let mut wrong_alg = ed.public_jwk();
        wrong_alg.kid = Some("b".into());
        wrong_alg.alg = Some("ES256".into());
        let mut enc = ed.public_jwk();
        enc.kid = Some("c".into());
        enc.use_ = Some("enc".into());
        let rsa = Jwk {
            kty: "RSA".into(),
            crv: None,
            x: None,
            y: None,
            kid: Some("d".into()),
            alg: Some("RS256".into()),
            use_: None,
        };
        let set = KeySet::from_jwks(&JwkSet {
            keys: vec![ed.public_jwk(), no_kid.clone(), wrong_alg, enc, rsa],
        })
        .unwrap();
        assert_eq!(set.len(), 2);
        assert!(set.get("a").is_some());
        assert!(set.get(&no_kid.thumbprint().unwrap()).is_some());
    }

    #[test]
    fn es256_signature_checks() {
        let es = SigningKey::from_secret_bytes(Algorithm::ES256, "es", &[3u8; 32]).unwrap();
        assert!(SigningKey::from_secret_bytes(Algorithm::ES256, "es", &[0u8; 32]).is_err());
        assert!(SigningKey::from_secret_bytes(Algorithm::ES256, "es", &[0xffu8; 32]).is_err());
        assert!(SigningKey::from_secret_bytes(Algorithm::EdDSA, "ed", &[0u8; 31]).is_err());
        let vk = es.verifying_key();
        assert!(vk.verify(b"m", &[0u8; 64]).is_err());
        assert!(vk.verify(b"m", &[0xffu8; 64]).is_err());
        let t = es.sign_compact(None, b"m").unwrap();
        let c = parse_compact(&t).unwrap();
        assert!(
            vk.verify(c.signing_input().as_bytes(), c.signature())
                .is_ok()
        );
        assert!(vk.verify(b"other", c.signature()).is_err());
    }

    #[test]
    fn refuses_oversized_output() {
        let ed = SigningKey::from_secret_bytes(Algorithm::EdDSA, "a", &[2u8; 32]).unwrap();
        assert_eq!(
            ed.sign_compact(None, &[b'a'; MAX_TOKEN_LEN]).unwrap_err(),
            JoseError::TooLarge
        );
        assert_eq!(b64_len(0), Some(0));
        assert_eq!(b64_len(1), Some(2));
        assert_eq!(b64_len(64), Some(86));
        assert_eq!(b64_len(usize::MAX), None);
    }
}

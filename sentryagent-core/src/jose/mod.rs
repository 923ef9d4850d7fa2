//! JOSE: JSON Web Keys ([`jwk`]), compact JSON Web Signatures ([`jws`]),
//! detached signatures over canonical JSON ([`detached`]) and JSON Web
//! Tokens ([`jwt`]).
//!
//! This is a deliberately small, strict subset of JOSE, sized for an identity
//! provider that issues and verifies its own access tokens:
//!
//! * **Algorithms.** Only `EdDSA` (Ed25519, RFC 8037) and `ES256` (ECDSA
//!   P-256 with SHA-256, RFC 7518 §3.4) exist. The `alg` header value is
//!   matched exactly and case-sensitively; `none`, `NONE`, `HS256` and every
//!   other value are refused before any key is looked at.
//! * **Keys decide the algorithm.** Each [`VerifyingKey`] verifies exactly one
//!   algorithm, its own: an Ed25519 key never verifies an `ES256` token and a
//!   P-256 key never verifies an `EdDSA` token, whatever the header claims.
//!   Symmetric keys do not exist here, so the classic "HS256 keyed with the
//!   public key" confusion cannot happen.
//! * **No keys from the token.** Headers carrying `jwk`, `jku`, `x5u` or `x5c`
//!   are refused; keys come only from a [`KeyResolver`] chosen by the caller.
//! * **No extensions.** A `crit` header is refused (no extension is
//!   understood), as is the unencoded-payload option `b64` unless it is `true`.
//! * **Canonical encoding.** A compact token is at most [`MAX_TOKEN_LEN`]
//!   bytes, has exactly three non-empty segments, and uses only the base64url
//!   alphabet without padding (`=`, `+`, `/`, whitespace and non-ASCII are
//!   refused, as are non-canonical trailing bits). The header must be a JSON
//!   object without duplicate members. Signatures are exactly 64 bytes for
//!   both algorithms (`ES256` uses the raw `r || s` form, never DER).
//! * **Strict Ed25519.** Signatures are checked with
//!   `ed25519_dalek::VerifyingKey::verify_strict`, and small-order public keys
//!   are refused when a key is built.
//! * **Public keys are public.** A [`Jwk`] never holds private material:
//!   deserializing one that carries `d` (or any other private or symmetric
//!   member) fails.
//!
//! JWT claim validation ([`verify_jwt`]) requires `exp`, checks `nbf`, `iat`,
//! `iss`, `aud` and `typ`, and applies one leeway to all time checks.

pub mod detached;
pub mod jwk;
pub mod jws;
pub mod jwt;

pub use detached::{DetachedSignature, sign_jcs, verify_jcs};
pub use jwk::{Jwk, JwkSet};
pub use jws::{
    Algorithm, Compact, Header, KeyResolver, KeySet, MAX_TOKEN_LEN, SigningKey, VerifyingKey,
    parse_compact, verify_compact,
};
pub use jwt::{Audience, RegisteredClaims, Validation, encode_claims, verify_jwt};
pub use zeroize::Zeroizing;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Why a JOSE object (key, signature or token) was refused.
///
/// The variants are for logs and tests; a caller facing a client should
/// collapse them all into "invalid token" (see the conversion into
/// [`crate::Error::InvalidToken`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoseError {
    /// The token is longer than [`MAX_TOKEN_LEN`].
    #[error("token too large")]
    TooLarge,
    /// The token, a header or a key is not well formed; the text says how.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// The `alg` header is not `EdDSA` or `ES256`.
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    /// The header carries or points at a key (`jwk`, `jku`, `x5u`, `x5c`).
    #[error("embedded or referenced keys are not accepted")]
    EmbeddedKey,
    /// The header has a `crit` member; no extension is understood.
    #[error("critical header extensions are not supported")]
    CriticalHeader,
    /// No trusted key matches the token's `kid` and algorithm.
    #[error("unknown key")]
    UnknownKey,
    /// The resolved key is for another algorithm than the token's `alg`.
    #[error("key algorithm does not match the token algorithm")]
    KeyAlgorithmMismatch,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// A key is unusable (wrong type, curve, length, or not a valid point).
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// The token's `exp` has passed (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// The token's `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// A claim is missing, has the wrong type or the wrong value.
    #[error("invalid claims: {0}")]
    Claims(&'static str),
    /// Producing a signature failed (not expected with these algorithms).
    #[error("signing failed")]
    Signing,
    /// The operating system's random number generator failed.
    #[error("random number generator unavailable")]
    Randomness,
}

impl From<JoseError> for crate::Error {
    fn from(e: JoseError) -> Self {
        crate::Error::invalid_token(e)
    }
}

/// base64url without padding.
pub(crate) fn b64_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Appends base64url without padding to `out`.
pub(crate) fn b64_encode_into(bytes: &[u8], out: &mut String) {
    URL_SAFE_NO_PAD.encode_string(bytes, out);
}

/// Whether `s` uses only the base64url alphabet (no padding).
pub(crate) fn is_b64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Strict base64url decoding: URL-safe alphabet, no padding, canonical
/// trailing bits.
pub(crate) fn b64_decode(s: &str) -> Result<Vec<u8>, JoseError> {
    if !is_b64url(s) {
        return Err(JoseError::Malformed("invalid base64url"));
    }
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| JoseError::Malformed("invalid base64url"))
}

/// Strict base64url decoding of exactly `N` bytes.
pub(crate) fn b64_decode_array<const N: usize>(s: &str) -> Result<[u8; N], JoseError> {
    let v = b64_decode(s)?;
    <[u8; N]>::try_from(v.as_slice()).map_err(|_| JoseError::Malformed("wrong decoded length"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_base64url() {
        assert_eq!(b64_decode("AQID").unwrap(), vec![1, 2, 3]);
        assert!(b64_decode("AQI=").is_err());
        assert!(b64_decode("A+/D").is_err());
        assert!(b64_decode("A").is_err());
        // Non-canonical trailing bits ("AQJ" decodes like "AQI").
        assert!(b64_decode("AQI").is_ok());
        assert!(b64_decode("AQJ").is_err());
        assert!(b64_decode("AQ\u{e9}").is_err());
        assert!(b64_decode_array::<3>("AQID").is_ok());
        assert!(b64_decode_array::<4>("AQID").is_err());
        let e: crate::Error = JoseError::BadSignature.into();
        assert!(matches!(e, crate::Error::InvalidToken { reason: Some(_) }));
    }
}

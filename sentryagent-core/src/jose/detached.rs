//! JWS signatures over the canonical form of a JSON document, with the
//! payload detached (RFC 7515 Appendix F): the signature travels inside the
//! document it signs, as A2A agent cards carry theirs in `signatures`.
//!
//! The signed payload is the RFC 8785 (JCS, [`crate::jcs`]) text of the
//! document without its signature member; the signing input is the usual
//! `base64url(protected header) "." base64url(payload)`. A verifier
//! removes the signature member, canonicalizes what is left with any RFC
//! 8785 implementation and checks the signature with the key the header's
//! `kid` names in the signer's JWKS.
//!
//! ```
//! use sentryagent_core::jose::{Algorithm, KeySet, SigningKey, sign_jcs, verify_jcs};
//! use serde_json::json;
//!
//! let key = SigningKey::generate(Algorithm::EdDSA, "k1").unwrap();
//! let card = json!({"name": "Finder", "skills": [], "version": "1.0"});
//! let sig = sign_jcs(&key, "JOSE", &card).unwrap();
//! let mut keys = KeySet::new();
//! keys.insert("k1", key.verifying_key());
//! let header = verify_jcs(&card, &sig, &keys).unwrap();
//! assert_eq!(header.typ.as_deref(), Some("JOSE"));
//! // Member order and white space do not matter; content does.
//! let same: serde_json::Value =
//!     serde_json::from_str(r#"{ "version": "1.0", "skills": [], "name": "Finder" }"#).unwrap();
//! assert!(verify_jcs(&same, &sig, &keys).is_ok());
//! assert!(verify_jcs(&json!({"name": "Other", "skills": [], "version": "1.0"}), &sig, &keys).is_err());
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::jws::{Header, KeyResolver, SIGNATURE_LEN, SigningKey, parse_header};
use super::{JoseError, b64_decode, b64_decode_array, b64_encode, b64_encode_into};
use crate::jcs;

/// A JWS with a detached payload, in the JSON serialization's members
/// (`protected`, `signature`): the shape of an A2A `AgentCardSignature`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DetachedSignature {
    /// base64url of the protected header (`{"alg":..,"typ":..,"kid":..}`).
    pub protected: String,
    /// base64url of the signature over
    /// `protected "." base64url(payload)`.
    pub signature: String,
}

/// Signs the RFC 8785 canonical form of `document` with `key`; the header
/// carries `alg`, `typ` and `kid` (unless the key's kid is empty).
///
/// # Errors
/// [`JoseError::Malformed`] if the document has no canonical form (an
/// integer beyond what a double holds exactly); [`JoseError::Signing`] if
/// the signature primitive fails.
pub fn sign_jcs(
    key: &SigningKey,
    typ: &str,
    document: &Value,
) -> Result<DetachedSignature, JoseError> {
    let payload = jcs::canonicalize(document)
        .map_err(|_| JoseError::Malformed("the document has no canonical form"))?;
    let protected = key.header(Some(typ))?.into_owned();
    let mut input = String::with_capacity(protected.len() + 1 + payload.len() * 4 / 3 + 4);
    input.push_str(&protected);
    input.push('.');
    b64_encode_into(payload.as_bytes(), &mut input);
    let signature = key.sign_raw(input.as_bytes())?;
    Ok(DetachedSignature {
        protected,
        signature: b64_encode(&signature),
    })
}

/// Verifies `signature` over the RFC 8785 canonical form of `document`
/// (which must not contain the signature itself) with the key `keys`
/// resolves for its `kid` and algorithm. Answers the accepted header.
///
/// The header follows the same rules as a compact JWS's
/// ([`parse_compact`](super::parse_compact)): no embedded or referenced
/// keys, no `crit`, `EdDSA` or `ES256` only.
///
/// # Errors
/// [`JoseError::Malformed`] for a bad encoding or a document without a
/// canonical form; the header errors of
/// [`parse_compact`](super::parse_compact); [`JoseError::UnknownKey`];
/// [`JoseError::KeyAlgorithmMismatch`]; [`JoseError::BadSignature`].
pub fn verify_jcs<R: KeyResolver + ?Sized>(
    document: &Value,
    signature: &DetachedSignature,
    keys: &R,
) -> Result<Header, JoseError> {
    let header = parse_header(&b64_decode(&signature.protected)?)?;
    let sig = b64_decode_array::<SIGNATURE_LEN>(&signature.signature)
        .map_err(|_| JoseError::Malformed("signature is not 64 base64url-encoded bytes"))?;
    let key = keys
        .resolve(header.kid.as_deref(), header.alg)
        .ok_or(JoseError::UnknownKey)?;
    if key.alg() != header.alg {
        return Err(JoseError::KeyAlgorithmMismatch);
    }
    let payload = jcs::canonicalize(document)
        .map_err(|_| JoseError::Malformed("the document has no canonical form"))?;
    let mut input =
        String::with_capacity(signature.protected.len() + 1 + payload.len() * 4 / 3 + 4);
    input.push_str(&signature.protected);
    input.push('.');
    b64_encode_into(payload.as_bytes(), &mut input);
    key.verify(input.as_bytes(), &sig)?;
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::{Algorithm, KeySet, verify_compact};
    use serde_json::json;

    fn keys(k: &SigningKey) -> KeySet {
        let mut set = KeySet::new();
        set.insert(k.kid(), k.verifying_key());
        set
    }

    /// The detached signature is the compact JWS of the canonical text with
    /// its payload segment removed: the compact verifier accepts it once
    /// the payload is put back.
    #[test]
    fn same_as_compact_with_payload_put_back() {
        for alg in [Algorithm::EdDSA, Algorithm::ES256] {
            let key = SigningKey::generate(alg, "kid-1").unwrap();
            let doc = json!({"b": [1.50, "\u{20ac}"], "a": {"z": null, "y": true}});
            let sig = sign_jcs(&key, "JOSE", &doc).unwrap();
            // The canonical text writes the euro sign as itself.
            let canonical = jcs::canonicalize(&doc).unwrap();
            assert_eq!(
                canonical,
                "{\"a\":{\"y\":true,\"z\":null},\"b\":[1.5,\"\u{20ac}\"]}"
            );
            let compact_exact = format!(
                "{}.{}.{}",
                sig.protected,
                b64_encode(canonical.as_bytes()),
                sig.signature
            );
            let (header, payload) = verify_compact(&compact_exact, &keys(&key)).unwrap();
            assert_eq!(payload, canonical.as_bytes());
            assert_eq!(header.typ.as_deref(), Some("JOSE"));
            assert_eq!(header.kid.as_deref(), Some("kid-1"));
            assert_eq!(header.alg, alg);
            assert_eq!(verify_jcs(&doc, &sig, &keys(&key)).unwrap(), header);
        }
    }

    #[test]
    fn refuses_changes_other_keys_and_bad_encodings() {
        let key = SigningKey::generate(Algorithm::EdDSA, "k").unwrap();
        let doc = json!({"name": "a", "n": 1});
        let sig = sign_jcs(&key, "JOSE", &doc).unwrap();
        assert_eq!(
            verify_jcs(&json!({"name": "b", "n": 1}), &sig, &keys(&key)).unwrap_err(),
            JoseError::BadSignature
        );
        assert_eq!(
            verify_jcs(&json!({"name": "a", "n": 1.5}), &sig, &keys(&key)).unwrap_err(),
            JoseError::BadSignature
        );
        let other = SigningKey::generate(Algorithm::EdDSA, "k").unwrap();
        assert_eq!(
            verify_jcs(&doc, &sig, &keys(&other)).unwrap_err(),
            JoseError::BadSignature
        );
        let elsewhere = SigningKey::generate(Algorithm::EdDSA, "k2").unwrap();
        assert_eq!(
            verify_jcs(&doc, &sig, &keys(&elsewhere)).unwrap_err(),
            JoseError::UnknownKey
        );
        let mut bad = sig.clone();
        bad.signature.push('A');
        assert!(matches!(
            verify_jcs(&doc, &bad, &keys(&key)).unwrap_err(),
            JoseError::Malformed(_)
        ));
        let mut bad = sig.clone();
        bad.protected = b64_encode(br#"{"alg":"none","kid":"k"}"#);
        assert_eq!(
            verify_jcs(&doc, &bad, &keys(&key)).unwrap_err(),
            JoseError::UnsupportedAlgorithm
        );
        let mut bad = sig;
        bad.protected = b64_encode(br#"{"alg":"EdDSA","kid":"k","jku":"https://x"}"#);
        assert_eq!(
            verify_jcs(&doc, &bad, &keys(&key)).unwrap_err(),
            JoseError::EmbeddedKey
        );
        assert!(sign_jcs(&key, "JOSE", &json!({"n": u64::MAX})).is_err());
    }
}

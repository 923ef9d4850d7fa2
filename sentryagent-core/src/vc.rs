//! W3C Data Integrity proofs with the `eddsa-jcs-2022` cryptosuite (Data
//! Integrity EdDSA Cryptosuites v1.0, §3.3): an Ed25519 signature over the
//! SHA-256 hashes of the proof configuration and of the document, both in
//! their JCS form ([`crate::jcs`]). Verifiable credentials issued by the IdP
//! (agent badges) carry such proofs, and anyone can check them with the
//! key named by the proof's `verificationMethod`.
//!
//! ```
//! use sentryagent_core::jose::{Algorithm, SigningKey};
//! use sentryagent_core::vc::{self, ProofOptions};
//! use sentryagent_core::Timestamp;
//!
//! let key = SigningKey::generate(Algorithm::EdDSA, "").unwrap();
//! let did = sentryagent_core::did::did_key_from_ed25519(&key.verifying_key().ed25519_bytes().unwrap());
//! let credential = serde_json::json!({
//!     "@context": ["https://www.w3.org/ns/credentials/v2"],
//!     "type": ["VerifiableCredential"],
//!     "issuer": did,
//!     "credentialSubject": {"id": "did:example:agent"}
//! });
//! let options = ProofOptions::assertion(format!("{did}#{}", &did["did:key:".len()..]), Timestamp::from_unix_secs(1_700_000_000));
//! let signed = vc::sign(&credential, &options, &key).unwrap();
//! vc::verify_did_key(&signed).unwrap();
//! ```

use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::Timestamp;
use crate::jcs::{self, JcsError};
use crate::jose::{Algorithm, SigningKey, VerifyingKey};

/// The proof `type`.
pub const PROOF_TYPE: &str = "DataIntegrityProof";
/// The cryptosuite name.
pub const CRYPTOSUITE: &str = "eddsa-jcs-2022";

/// Why a proof could not be made or does not verify. Verification failures
/// say which check failed: a verifier's own diagnostics, not an answer to
/// an attacker (the IdP's verification endpoint answers only valid or not).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VcError {
    /// The document is not a JSON object.
    #[error("the document is not a JSON object")]
    NotAnObject,
    /// The document has no `proof`, or one that is not an object.
    #[error("the document has no Data Integrity proof")]
    NoProof,
    /// The proof is not a `DataIntegrityProof` with `eddsa-jcs-2022`, or a
    /// member is missing or malformed.
    #[error("unsupported or malformed proof: {0}")]
    Malformed(&'static str),
    /// The proof's `@context` is not a prefix of the document's.
    #[error("the proof's @context does not match the document's")]
    ContextMismatch,
    /// The verification method is not one this verifier resolves.
    #[error("unknown verification method")]
    UnknownVerificationMethod,
    /// The signature does not verify.
    #[error("the signature does not verify")]
    BadSignature,
    /// No canonical form (RFC 8785).
    #[error(transparent)]
    Canonical(#[from] JcsError),
    /// The key cannot sign (not Ed25519).
    #[error("an eddsa-jcs-2022 proof needs an Ed25519 key")]
    WrongKey,
}

/// The options of a new proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofOptions {
    /// The key that verifies the proof: a DID URL (`did:key:z…#z…`,
    /// `did:web:…#key-1`).
    pub verification_method: String,
    /// When the proof was made.
    pub created: Timestamp,
    /// `assertionMethod` for credentials.
    pub proof_purpose: String,
}

impl ProofOptions {
    /// Options of an `assertionMethod` proof (what credentials carry).
    pub fn assertion(verification_method: impl Into<String>, created: Timestamp) -> Self {
        ProofOptions {
            verification_method: verification_method.into(),
            created,
            proof_purpose: "assertionMethod".into(),
        }
    }
}

/// Adds an `eddsa-jcs-2022` proof to `document` (which must not already
/// hold one: it is replaced), signed by `key`.
pub fn sign(document: &Value, options: &ProofOptions, key: &SigningKey) -> Result<Value, VcError> {
    if key.alg() != Algorithm::EdDSA {
        return Err(VcError::WrongKey);
    }
    let mut unsecured = document.as_object().ok_or(VcError::NotAnObject)?.clone();
    unsecured.remove("proof");
    let mut proof = Map::new();
    proof.insert("type".into(), PROOF_TYPE.into());
    proof.insert("cryptosuite".into(), CRYPTOSUITE.into());
    proof.insert("created".into(), options.created.to_rfc3339().into());
    proof.insert(
        "verificationMethod".into(),
        options.verification_method.clone().into(),
    );
    proof.insert("proofPurpose".into(), options.proof_purpose.clone().into());
    if let Some(ctx) = unsecured.get("@context") {
        proof.insert("@context".into(), ctx.clone());
    }
    let hash = hash_data(&proof, &unsecured)?;
    let signature = key.sign_raw(&hash).map_err(|_| VcError::WrongKey)?;
    proof.insert(
        "proofValue".into(),
        format!("z{}", bs58::encode(signature).into_string()).into(),
    );
    unsecured.insert("proof".into(), Value::Object(proof));
    Ok(Value::Object(unsecured))
}

/// Verifies the `eddsa-jcs-2022` proof of `secured` with the Ed25519 key
/// `resolve` returns for its `verificationMethod` (`None`: unknown).
/// Answers the proof's members (without `proofValue`) when it verifies.
pub fn verify(
    secured: &Value,
    resolve: impl FnOnce(&str) -> Option<[u8; 32]>,
) -> Result<Map<String, Value>, VcError> {
    let mut unsecured = secured.as_object().ok_or(VcError::NotAnObject)?.clone();
    let Some(Value::Object(mut proof)) = unsecured.remove("proof") else {
        return Err(VcError::NoProof);
    };
    if proof.get("type").and_then(Value::as_str) != Some(PROOF_TYPE) {
        return Err(VcError::Malformed("type is not DataIntegrityProof"));
    }
    if proof.get("cryptosuite").and_then(Value::as_str) != Some(CRYPTOSUITE) {
        return Err(VcError::Malformed("cryptosuite is not eddsa-jcs-2022"));
    }
    let created = proof.get("created").and_then(Value::as_str);
    if created.is_some_and(|c| Timestamp::parse_rfc3339(c).is_none()) {
        return Err(VcError::Malformed("created is not a date-time"));
    }
    let Some(Value::String(value)) = proof.remove("proofValue") else {
        return Err(VcError::Malformed("proofValue is missing"));
    };
    let signature: [u8; 64] = value
        .strip_prefix('z')
        .and_then(|b58| bs58::decode(b58).into_vec().ok())
        .and_then(|v| v.try_into().ok())
        .ok_or(VcError::Malformed(
            "proofValue is not a base58-btc Ed25519 signature",
        ))?;
    if let Some(ctx) = proof.get("@context") {
        // The document's @context starts with the proof's, in order.
        let prefix_of = |doc: Option<&Value>| match (ctx, doc) {
            (Value::Array(p), Some(Value::Array(d))) => d.starts_with(p),
            (p, Some(Value::Array(d))) => d.first() == Some(p),
            (p, Some(d)) => p == d,
            _ => false,
        };
        if !prefix_of(unsecured.get("@context")) {
            return Err(VcError::ContextMismatch);
        }
        unsecured.insert("@context".into(), ctx.clone());
    }
    let method = proof
        .get("verificationMethod")
        .and_then(Value::as_str)
        .ok_or(VcError::Malformed("verificationMethod is missing"))?;
    let public = resolve(method).ok_or(VcError::UnknownVerificationMethod)?;
    let key = VerifyingKey::ed25519(&public).map_err(|_| VcError::UnknownVerificationMethod)?;
    let hash = hash_data(&proof, &unsecured)?;
    key.verify(&hash, &signature)
        .map_err(|_| VcError::BadSignature)?;
    Ok(proof)
}

/// [`verify`] for proofs whose verification method is a `did:key`
/// (`did:key:z…#z…`): the key is the DID's own.
pub fn verify_did_key(secured: &Value) -> Result<Map<String, Value>, VcError> {
    verify(secured, |method| {
        let (did, fragment) = method.split_once('#')?;
        // The fragment of a did:key verification method is its key.
        if fragment != did.strip_prefix("did:key:")? {
            return None;
        }
        crate::did::ed25519_from_did_key(did).ok()
    })
}

/// SHA-256 of the canonical proof configuration, then SHA-256 of the
/// canonical document (§3.3.4).
fn hash_data(
    proof_config: &Map<String, Value>,
    document: &Map<String, Value>,
) -> Result<[u8; 64], VcError> {
    let config = jcs::canonicalize(&Value::Object(proof_config.clone()))?;
    let doc = jcs::canonicalize(&Value::Object(document.clone()))?;
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(&Sha256::digest(config.as_bytes()));
    out[32..].copy_from_slice(&Sha256::digest(doc.as_bytes()));
    Ok(out)
}

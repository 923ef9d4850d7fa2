//! `did:key` identifiers for Ed25519 keys, and their DID documents.
//!
//! A `did:key` is `did:key:z` followed by the base58btc encoding of the
//! multicodec `ed25519-pub` prefix (`0xed 0x01`) and the 32-byte public key,
//! e.g. `did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp`.
//!
//! Parsing ([`ed25519_from_did_key`]) is strict: only a bare `did:key` of at
//! most [`MAX_DID_LEN`] bytes (no path, query or fragment), multibase `z`
//! (base58btc) only, the multicodec exactly `0xed 0x01`, exactly 32 key
//! bytes, a canonical encoding, and a valid Ed25519 point that is not of
//! small order. Everything else is refused with a [`DidError`].
//!
//! The [`DidDocument`] of a `did:key` is fully determined by the key; it lists
//! the key twice, as an `Ed25519VerificationKey2020` (multibase) and as a
//! `JsonWebKey2020` (JWK) verification method.

use serde::{Deserialize, Serialize};

use crate::jose::Jwk;
use crate::jose::jwk::check_ed25519_point;

/// Longest DID accepted by [`ed25519_from_did_key`], in bytes.
pub const MAX_DID_LEN: usize = 128;

/// The `did:key` prefix of an Ed25519 key, before the base58btc part.
const DID_KEY_PREFIX: &str = "did:key:";

/// Multicodec `ed25519-pub` as an unsigned varint.
const ED25519_MULTICODEC: [u8; 2] = [0xed, 0x01];

/// The `@context` of a DID document.
pub const DID_CONTEXT: [&str; 3] = [
    "https://www.w3.org/ns/did/v1",
    "https://w3id.org/security/suites/ed25519-2020/v1",
    "https://w3id.org/security/suites/jws-2020/v1",
];

/// Why a DID or DID document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DidError {
    /// Longer than [`MAX_DID_LEN`].
    #[error("DID too long")]
    TooLong,
    /// Not of the form `did:<method>:<id>`.
    #[error("not a DID")]
    NotADid,
    /// A method other than `key`.
    #[error("unsupported DID method (only did:key)")]
    UnsupportedMethod,
    /// A multibase encoding other than base58btc (`z`).
    #[error("unsupported multibase encoding (only base58btc 'z')")]
    UnsupportedMultibase,
    /// Not valid base58btc.
    #[error("invalid base58btc")]
    InvalidBase58,
    /// The base58btc text is not the canonical encoding of its bytes.
    #[error("non-canonical encoding")]
    NonCanonical,
    /// A multicodec other than `ed25519-pub` (`0xed 0x01`).
    #[error("unsupported key type (only Ed25519)")]
    UnsupportedKeyType,
    /// The key is not exactly 32 bytes.
    #[error("Ed25519 public key must be 32 bytes")]
    InvalidKeyLength,
    /// The bytes are not a valid Ed25519 point, or a small-order point.
    #[error("invalid Ed25519 public key")]
    InvalidKey,
    /// A DID document that is not the document of its `did:key`.
    #[error("invalid DID document: {0}")]
    InvalidDocument(&'static str),
}

impl From<DidError> for crate::Error {
    fn from(e: DidError) -> Self {
        crate::Error::invalid("did", e.to_string())
    }
}

/// The multibase (`z` + base58btc) of the multicodec-prefixed key: the part
/// of the DID after `did:key:`.
fn multibase_ed25519(public: &[u8; 32]) -> String {
    let mut bytes = [0u8; 34];
    bytes[..2].copy_from_slice(&ED25519_MULTICODEC);
    bytes[2..].copy_from_slice(public);
    let mut out = String::with_capacity(49);
    out.push('z');
    out.push_str(&bs58::encode(bytes).into_string());
    out
}

/// The `did:key` of an Ed25519 public key.
pub fn did_key_from_ed25519(public: &[u8; 32]) -> String {
    let mut did = String::with_capacity(DID_KEY_PREFIX.len() + 49);
    did.push_str(DID_KEY_PREFIX);
    did.push_str(&multibase_ed25519(public));
    did
}

/// The Ed25519 public key of a `did:key` (strict; see the module docs).
///
/// # Errors
/// A [`DidError`] saying what is wrong.
pub fn ed25519_from_did_key(did: &str) -> Result<[u8; 32], DidError> {
    if did.len() > MAX_DID_LEN {
        return Err(DidError::TooLong);
    }
    let rest = did.strip_prefix("did:").ok_or(DidError::NotADid)?;
    let (method, id) = rest.split_once(':').ok_or(DidError::NotADid)?;
    if method.is_empty() || id.is_empty() {
        return Err(DidError::NotADid);
    }
    if method != "key" {
        return Err(DidError::UnsupportedMethod);
    }
    let encoded = id.strip_prefix('z').ok_or(DidError::UnsupportedMultibase)?;
    let bytes = bs58::decode(encoded)
        .into_vec()
        .map_err(|_| DidError::InvalidBase58)?;
    let key = bytes
        .strip_prefix(&ED25519_MULTICODEC)
        .ok_or(DidError::UnsupportedKeyType)?;
    let key: [u8; 32] = key.try_into().map_err(|_| DidError::InvalidKeyLength)?;
    if bs58::encode(&bytes).into_string() != encoded {
        return Err(DidError::NonCanonical);
    }
    check_ed25519_point(&key).map_err(|_| DidError::InvalidKey)?;
    Ok(key)
}

/// A verification method of a [`DidDocument`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct VerificationMethod {
    /// DID URL of the method (`did#fragment`).
    pub id: String,
    /// `Ed25519VerificationKey2020`, `Multikey` or `JsonWebKey2020`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The DID that controls the key.
    pub controller: String,
    /// The multicodec-prefixed key in multibase (`z6Mk...`), for
    /// `Ed25519VerificationKey2020` and `Multikey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_multibase: Option<String>,
    /// The key as a JWK, for `JsonWebKey2020`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_jwk: Option<Jwk>,
}

/// A W3C DID document (DID Core, JSON-LD form): an Ed25519 `did:key`'s
/// ([`DidDocument::for_ed25519`]) or the IdP's own `did:web`
/// ([`DidDocument::for_did_web`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DidDocument {
    /// [`DID_CONTEXT`].
    #[serde(rename = "@context")]
    pub context: Vec<String>,
    /// The DID.
    pub id: String,
    /// The key as `Ed25519VerificationKey2020` (id `did#z6Mk...`), then as
    /// `JsonWebKey2020` (id `did#jwk-<RFC 7638 thumbprint>`).
    pub verification_method: Vec<VerificationMethod>,
    /// Ids of the verification methods usable for authentication (both).
    pub authentication: Vec<String>,
    /// Ids of the verification methods usable for assertions (both).
    pub assertion_method: Vec<String>,
}

impl DidDocument {
    /// The DID document of an Ed25519 public key.
    pub fn for_ed25519(public: &[u8; 32]) -> DidDocument {
        let multibase = multibase_ed25519(public);
        let did = format!("{DID_KEY_PREFIX}{multibase}");
        let multibase_id = format!("{did}#{multibase}");
        let jwk_id = format!("{did}#jwk-{}", Jwk::ed25519_thumbprint(public));
        let ids = vec![multibase_id.clone(), jwk_id.clone()];
        DidDocument {
            context: DID_CONTEXT.iter().map(|s| (*s).to_owned()).collect(),
            verification_method: vec![
                VerificationMethod {
                    id: multibase_id,
                    type_: "Ed25519VerificationKey2020".to_owned(),
                    controller: did.clone(),
                    public_key_multibase: Some(multibase),
                    public_key_jwk: None,
                },
                VerificationMethod {
                    id: jwk_id,
                    type_: "JsonWebKey2020".to_owned(),
                    controller: did.clone(),
                    public_key_multibase: None,
                    public_key_jwk: Some(Jwk::ed25519(public)),
                },
            ],
            id: did,
            authentication: ids.clone(),
            assertion_method: ids,
        }
    }

    /// The DID document of a `did:key`.
    ///
    /// # Errors
    /// As [`ed25519_from_did_key`].
    pub fn from_did_key(did: &str) -> Result<DidDocument, DidError> {
        ed25519_from_did_key(did).map(|key| DidDocument::for_ed25519(&key))
    }

    /// The Ed25519 public key of this document.
    ///
    /// The document must be exactly the one [`DidDocument::for_ed25519`]
    /// produces for the key of its `id`: a `did:key` document carries no
    /// information beyond its DID, so anything else is forged or corrupt.
    ///
    /// # Errors
    /// As [`ed25519_from_did_key`] for the `id`;
    /// [`DidError::InvalidDocument`] if any other member differs.
    pub fn ed25519_public_key(&self) -> Result<[u8; 32], DidError> {
        let key = ed25519_from_did_key(&self.id)?;
        if *self != DidDocument::for_ed25519(&key) {
            return Err(DidError::InvalidDocument(
                "document does not match its did:key",
            ));
        }
        Ok(key)
    }
}

/// The `@context` of the IdP's own `did:web` document: DID Core, Multikey
/// (its Ed25519 keys) and JWS 2020 (its P-256 keys).
pub const DID_WEB_CONTEXT: [&str; 3] = [
    "https://www.w3.org/ns/did/v1",
    "https://w3id.org/security/multikey/v1",
    "https://w3id.org/security/suites/jws-2020/v1",
];

/// The `did:web` of an http(s) URL (did:web method, "Create"): the host in
/// lower case, a port as `%3A<port>`, then each path segment after a `:`.
/// `https://idp.example.com` is `did:web:idp.example.com`,
/// `https://example.com:8443/idp` is `did:web:example.com%3A8443:idp`. A
/// DID without path resolves to `https://<host>/.well-known/did.json`, one
/// with a path to `https://<host>/<path>/did.json`.
///
/// # Errors
/// [`DidError::NotADid`] for a URL that is not `http(s)://host[:port][/path]`
/// (user info, query, fragment, IP literals in brackets, percent signs,
/// colons in the path and empty hosts are refused).
pub fn did_web_from_url(url: &str) -> Result<String, DidError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or(DidError::NotADid)?;
    if rest.contains(['@', '?', '#', '%', '[', ']'])
        || rest.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(DidError::NotADid);
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
        Some(_) => return Err(DidError::NotADid),
        None => (authority, None),
    };
    if host.is_empty() || path.contains(':') {
        return Err(DidError::NotADid);
    }
    let mut did = format!("did:web:{}", host.to_ascii_lowercase());
    if let Some(port) = port {
        did.push_str("%3A");
        did.push_str(port);
    }
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        did.push(':');
        did.push_str(segment);
    }
    if did.len() > MAX_DID_LEN * 8 {
        return Err(DidError::TooLong);
    }
    Ok(did)
}

/// The multibase `publicKeyMultibase` of an Ed25519 key as a Multikey
/// (`z6Mk…`, the same text as the key's `did:key` suffix).
pub fn ed25519_multikey(public: &[u8; 32]) -> String {
    multibase_ed25519(public)
}

impl DidDocument {
    /// The `did:web` document of `did` listing `keys` (a JWKS): each
    /// Ed25519 key as a `Multikey`, each other key as a `JsonWebKey2020`,
    /// with id `<did>#<kid>`, usable for authentication and assertions.
    /// Keys without `kid` are left out.
    pub fn for_did_web(did: &str, keys: &crate::jose::JwkSet) -> DidDocument {
        let mut methods = Vec::new();
        for jwk in &keys.keys {
            let Some(kid) = jwk.kid.as_deref() else {
                continue;
            };
            let id = format!("{did}#{kid}");
            let method = match jwk.ed25519_public_key() {
                Ok(public) => VerificationMethod {
                    id,
                    type_: "Multikey".to_owned(),
                    controller: did.to_owned(),
                    public_key_multibase: Some(multibase_ed25519(&public)),
                    public_key_jwk: None,
                },
                Err(_) => VerificationMethod {
                    id,
                    type_: "JsonWebKey2020".to_owned(),
                    controller: did.to_owned(),
                    public_key_multibase: None,
                    public_key_jwk: Some(jwk.clone()),
                },
            };
            methods.push(method);
        }
        let ids: Vec<String> = methods.iter().map(|m| m.id.clone()).collect();
        DidDocument {
            context: DID_WEB_CONTEXT.iter().map(|s| (*s).to_owned()).collect(),
            id: did.to_owned(),
            verification_method: methods,
            authentication: ids.clone(),
            assertion_method: ids,
        }
    }

    /// The Ed25519 key of the verification method `method` (a DID URL
    /// `<id>#<fragment>` of this document) if it is a `Multikey` or an
    /// Ed25519 `JsonWebKey2020`/`Ed25519VerificationKey2020` listed under
    /// `assertionMethod`.
    pub fn assertion_ed25519_key(&self, method: &str) -> Option<[u8; 32]> {
        if !self.assertion_method.iter().any(|m| m == method) {
            return None;
        }
        let vm = self.verification_method.iter().find(|m| m.id == method)?;
        if vm.controller != self.id {
            return None;
        }
        if let Some(mb) = &vm.public_key_multibase {
            return ed25519_from_did_key(&format!("{DID_KEY_PREFIX}{mb}")).ok();
        }
        vm.public_key_jwk.as_ref()?.ed25519_public_key().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DID0: &str = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp";

    #[test]
    fn errors() {
        assert_eq!(ed25519_from_did_key(""), Err(DidError::NotADid));
        assert_eq!(ed25519_from_did_key("did:key:"), Err(DidError::NotADid));
        assert_eq!(ed25519_from_did_key("did::z6Mk"), Err(DidError::NotADid));
        assert_eq!(
            ed25519_from_did_key("did:web:example.com"),
            Err(DidError::UnsupportedMethod)
        );
        assert_eq!(
            ed25519_from_did_key("did:key:u7QE"),
            Err(DidError::UnsupportedMultibase)
        );
        assert_eq!(
            ed25519_from_did_key(&format!("{DID0}#{}", &DID0[8..])),
            Err(DidError::InvalidBase58)
        );
        assert_eq!(
            ed25519_from_did_key(&format!("DID:KEY:{}", &DID0[8..])),
            Err(DidError::NotADid)
        );
        assert_eq!(
            ed25519_from_did_key(&"z".repeat(200)),
            Err(DidError::TooLong)
        );
        // Multicodec right, but the all-zero key is a small-order point.
        let weak = format!(
            "did:key:z{}",
            bs58::encode([[0xed, 0x01].as_slice(), &[0u8; 32]].concat()).into_string()
        );
        assert_eq!(ed25519_from_did_key(&weak), Err(DidError::InvalidKey));
        // A leading '1' adds a zero byte in front: wrong multicodec.
        assert_eq!(
            ed25519_from_did_key(&format!("did:key:z1{}", &DID0[9..])),
            Err(DidError::UnsupportedKeyType)
        );
        // 33 key bytes.
        let long = format!(
            "did:key:z{}",
            bs58::encode([[0xed, 0x01].as_slice(), &[1u8; 33]].concat()).into_string()
        );
        assert_eq!(ed25519_from_did_key(&long), Err(DidError::InvalidKeyLength));
        let e: crate::Error = DidError::InvalidKey.into();
        assert!(matches!(e, crate::Error::Invalid { field: "did", .. }));
    }

    #[test]
    fn document_round_trip_and_tamper() {
        let doc = DidDocument::from_did_key(DID0).unwrap();
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["@context"][0], "https://www.w3.org/ns/did/v1");
        assert_eq!(
            json["verificationMethod"][0]["publicKeyMultibase"],
            &DID0[8..]
        );
        assert_eq!(json["verificationMethod"][1]["publicKeyJwk"]["kty"], "OKP");
        assert_eq!(json["assertionMethod"].as_array().unwrap().len(), 2);
        let back: DidDocument = serde_json::from_value(json).unwrap();
        let key = back.ed25519_public_key().unwrap();
        assert_eq!(did_key_from_ed25519(&key), DID0);

        let mut forged = doc.clone();
        forged.verification_method[1].public_key_jwk = Some(Jwk::ed25519(&[9u8; 32]));
        assert!(forged.ed25519_public_key().is_err());
        let mut forged = doc.clone();
        forged.authentication.push("did:key:other#x".into());
        assert!(forged.ed25519_public_key().is_err());
        let mut forged = doc;
        forged.id = "did:web:example.com".into();
        assert!(forged.ed25519_public_key().is_err());
    }

    #[test]
    fn did_web_of_urls() {
        for (url, did) in [
            ("https://idp.example.com", "did:web:idp.example.com"),
            ("https://IDP.Example.com/", "did:web:idp.example.com"),
            ("http://127.0.0.1:8080", "did:web:127.0.0.1%3A8080"),
            (
                "https://example.com:8443/idp",
                "did:web:example.com%3A8443:idp",
            ),
            ("https://example.com/a/b", "did:web:example.com:a:b"),
        ] {
            assert_eq!(did_web_from_url(url).unwrap(), did, "{url}");
        }
        for bad in [
            "ftp://example.com",
            "https://",
            "https://user@example.com",
            "https://example.com?x=1",
            "https://example.com#f",
            "https://example.com:port",
            "https://example.com:",
            "https://[::1]:80",
            "https://example.com/a:b",
            "https://example.com/%41",
            "https://exa mple.com",
        ] {
            assert_eq!(did_web_from_url(bad), Err(DidError::NotADid), "{bad}");
        }
    }

    #[test]
    fn did_web_document_lists_keys_as_multikey_and_jwk() {
        use crate::jose::{Algorithm, JwkSet, SigningKey};
        let ed = SigningKey::generate(Algorithm::EdDSA, "ed-1").unwrap();
        let ec = SigningKey::generate(Algorithm::ES256, "ec-1").unwrap();
        let mut anonymous = ed.public_jwk();
        anonymous.kid = None;
        let jwks = JwkSet {
            keys: vec![ed.public_jwk(), ec.public_jwk(), anonymous],
        };
        let did = "did:web:idp.example.com";
        let doc = DidDocument::for_did_web(did, &jwks);
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["id"], did);
        assert_eq!(json["@context"][1], "https://w3id.org/security/multikey/v1");
        let vm = json["verificationMethod"].as_array().unwrap();
        assert_eq!(vm.len(), 2);
        assert_eq!(vm[0]["id"], "did:web:idp.example.com#ed-1");
        assert_eq!(vm[0]["type"], "Multikey");
        assert_eq!(vm[0]["controller"], did);
        let public = ed.verifying_key().ed25519_bytes().unwrap();
        // The Multikey text is the did:key suffix of the same key.
        assert_eq!(
            format!("did:key:{}", vm[0]["publicKeyMultibase"].as_str().unwrap()),
            did_key_from_ed25519(&public)
        );
        assert_eq!(vm[1]["type"], "JsonWebKey2020");
        assert_eq!(vm[1]["publicKeyJwk"]["crv"], "P-256");
        assert_eq!(json["assertionMethod"], json["authentication"]);
        assert_eq!(
            doc.assertion_ed25519_key("did:web:idp.example.com#ed-1"),
            Some(public)
        );
        assert_eq!(
            doc.assertion_ed25519_key("did:web:idp.example.com#ec-1"),
            None
        );
        assert_eq!(doc.assertion_ed25519_key("did:web:other#ed-1"), None);
        let back: DidDocument = serde_json::from_value(json).unwrap();
        assert_eq!(back, doc);
    }
}

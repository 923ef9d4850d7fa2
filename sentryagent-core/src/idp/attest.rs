//! What the IdP attests with its own signing keys: its `did:web`, and
//! detached JWS signatures over canonical JSON (the signatures of A2A agent
//! cards), verifiable from the JWKS.

use serde_json::Value;

use crate::did::{DidDocument, did_web_from_url};
use crate::jose::{self, Algorithm, DetachedSignature, Header};
use crate::{Error, Idp, Result};

/// The `typ` of the IdP's detached signatures (as A2A recommends).
pub const ATTESTATION_TYP: &str = "JOSE";

impl Idp {
    /// The IdP's own DID: the `did:web` of its issuer URL
    /// ([`did_web_from_url`]), e.g. `did:web:idp.example.com`.
    ///
    /// # Errors
    /// [`Error::NotConfigured`] if the issuer URL has no `did:web` form (user
    /// info, query, fragment, IP literal in brackets).
    pub fn issuer_did(&self) -> Result<String> {
        did_web_from_url(&self.config().issuer).map_err(|_| Error::NotConfigured {
            message: "the issuer URL has no did:web form".into(),
        })
    }

    /// The DID document of [`Idp::issuer_did`]: every key of the JWKS, the
    /// Ed25519 ones as `Multikey` verification methods `<did>#<kid>`.
    ///
    /// # Errors
    /// As [`Idp::issuer_did`].
    pub fn issuer_did_document(&self) -> Result<DidDocument> {
        Ok(DidDocument::for_did_web(&self.issuer_did()?, &self.jwks()))
    }

    /// Signs the RFC 8785 canonical form of `document` with the current
    /// signing key (the EdDSA key when EdDSA is enabled, otherwise the
    /// first configured algorithm's): a JWS with detached payload whose
    /// protected header is `{"alg":..,"typ":"JOSE","kid":..}`, the `kid`
    /// being one of the JWKS.
    ///
    /// # Errors
    /// [`Error::Invalid`] if the document has no canonical form (an integer
    /// a double cannot hold exactly).
    pub fn sign_jcs(&self, document: &Value) -> Result<DetachedSignature> {
        let ring = self.ring();
        let alg = if self.config().algorithms.contains(&Algorithm::EdDSA) {
            Algorithm::EdDSA
        } else {
            self.config().algorithms[0]
        };
        jose::sign_jcs(ring.signer(alg)?, ATTESTATION_TYP, document)
            .map_err(|e| Error::invalid("document", e.to_string()))
    }

    /// When the key [`Idp::sign_jcs`] and the IdP's credentials use was
    /// created: what the IdP signs changes then, for `Last-Modified`.
    pub fn attestation_key_since(&self) -> crate::Timestamp {
        let ring = self.ring();
        let alg = if self.config().algorithms.contains(&Algorithm::EdDSA) {
            Algorithm::EdDSA
        } else {
            self.config().algorithms[0]
        };
        ring.signer_since
            .get(&alg)
            .copied()
            .unwrap_or(crate::Timestamp::EPOCH)
    }

    /// Verifies a signature made by [`Idp::sign_jcs`] against the keys
    /// currently in the JWKS; answers its header.
    ///
    /// # Errors
    /// [`Error::InvalidToken`] if it does not verify.
    pub fn verify_jcs(&self, document: &Value, signature: &DetachedSignature) -> Result<Header> {
        Ok(jose::verify_jcs(document, signature, &self.ring().verify)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::KeySet;
    use serde_json::json;

    #[tokio::test]
    async fn signs_with_a_jwks_key_and_has_a_did_web() {
        let idp = Idp::builder("http://127.0.0.1:8443/idp")
            .build()
            .await
            .unwrap();
        assert_eq!(idp.issuer_did().unwrap(), "did:web:127.0.0.1%3A8443:idp");
        let doc = json!({"name": "x", "skills": [{"id": "a"}]});
        let sig = idp.sign_jcs(&doc).unwrap();
        let header = idp.verify_jcs(&doc, &sig).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(header.typ.as_deref(), Some("JOSE"));
        // Anyone holding the published JWKS verifies it.
        let published = KeySet::from_jwks(&idp.jwks()).unwrap();
        assert_eq!(jose::verify_jcs(&doc, &sig, &published).unwrap(), header);
        let kid = header.kid.unwrap();
        let did_doc = idp.issuer_did_document().unwrap();
        let method = format!("{}#{kid}", did_doc.id);
        assert!(did_doc.assertion_ed25519_key(&method).is_some());
        assert!(
            idp.verify_jcs(&json!({"name": "y", "skills": [{"id": "a"}]}), &sig)
                .is_err()
        );
        // After a rotation the old key still verifies until it expires.
        idp.rotate_signing_keys().await.unwrap();
        assert!(idp.verify_jcs(&doc, &sig).is_ok());
        let newer = idp.sign_jcs(&doc).unwrap();
        assert_ne!(newer.protected, sig.protected);

        let es = Idp::builder("https://idp.example.com")
            .configure(|c| c.algorithms = vec![Algorithm::ES256])
            .build()
            .await
            .unwrap();
        let sig = es.sign_jcs(&doc).unwrap();
        assert_eq!(es.verify_jcs(&doc, &sig).unwrap().alg, Algorithm::ES256);
        assert_eq!(es.issuer_did().unwrap(), "did:web:idp.example.com");
    }
}

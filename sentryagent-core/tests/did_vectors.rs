//! did:key against the project's Ed25519 vectors, plus property tests.

use proptest::prelude::*;
use sentryagent_core::did::{
    DidDocument, DidError, MAX_DID_LEN, did_key_from_ed25519, ed25519_from_did_key,
};
use sentryagent_core::jose::{Algorithm, Jwk, SigningKey};
use serde_json::Value;

const VECTORS: &str = include_str!("data/did-key-ed25519.json");

/// Numbers of valid and invalid vectors in `did-key-ed25519.json`.
const VALID_COUNT: usize = 5;
const INVALID_COUNT: usize = 6;

fn hex32(s: &str) -> [u8; 32] {
    assert_eq!(s.len(), 64, "{s}");
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

fn public_from_seed(seed: &[u8; 32]) -> [u8; 32] {
    SigningKey::from_secret_bytes(Algorithm::EdDSA, "", seed)
        .unwrap()
        .verifying_key()
        .ed25519_bytes()
        .unwrap()
}

fn vectors() -> Value {
    serde_json::from_str(VECTORS).unwrap()
}

#[test]
fn every_valid_vector() {
    let v = vectors();
    let valid = v["valid"].as_array().unwrap();
    assert_eq!(valid.len(), VALID_COUNT);
    for case in valid {
        let s = |k: &str| case[k].as_str().unwrap().to_owned();
        let seed = hex32(&s("seed_hex"));
        let public = public_from_seed(&seed);
        assert_eq!(public, hex32(&s("public_key_hex")));
        assert_eq!(bs58::encode(public).into_string(), s("public_key_base58"));

        let did = s("did");
        assert_eq!(did_key_from_ed25519(&public), did);
        assert_eq!(ed25519_from_did_key(&did), Ok(public));

        let jwk = Jwk::ed25519(&public);
        assert_eq!(serde_json::to_value(&jwk).unwrap(), case["public_key_jwk"]);
        let parsed: Jwk = serde_json::from_value(case["public_key_jwk"].clone()).unwrap();
        assert_eq!(parsed.ed25519_public_key(), Ok(public));

        let doc = DidDocument::from_did_key(&did).unwrap();
        assert_eq!(doc, DidDocument::for_ed25519(&public));
        assert_eq!(doc.id, did);
        let vm = &doc.verification_method[0];
        assert_eq!(vm.id, s("verification_method_id"));
        assert_eq!(vm.type_, "Ed25519VerificationKey2020");
        assert_eq!(vm.controller, did);
        assert_eq!(
            vm.public_key_multibase.as_deref(),
            did.strip_prefix("did:key:")
        );
        let jwk_vm = &doc.verification_method[1];
        assert_eq!(jwk_vm.type_, "JsonWebKey2020");
        assert_ne!(jwk_vm.id, vm.id);
        assert!(jwk_vm.id.starts_with(&format!("{did}#")));
        assert_eq!(jwk_vm.public_key_jwk.as_ref(), Some(&jwk));
        assert_eq!(doc.authentication, [vm.id.clone(), jwk_vm.id.clone()]);
        assert_eq!(doc.assertion_method, doc.authentication);

        // The JSON document decodes back to the key.
        let json = serde_json::to_string(&doc).unwrap();
        let back: DidDocument = serde_json::from_str(&json).unwrap();
        assert_eq!(back.ed25519_public_key(), Ok(public));
    }
}

#[test]
fn every_invalid_vector_is_refused() {
    let v = vectors();
    let invalid = v["invalid"].as_array().unwrap();
    assert_eq!(invalid.len(), INVALID_COUNT);
    for case in invalid {
        let did = case["did"].as_str().unwrap();
        let why = case["why"].as_str().unwrap();
        let err = ed25519_from_did_key(did);
        assert!(err.is_err(), "{why}: {did}");
        assert!(DidDocument::from_did_key(did).is_err(), "{why}");
        let expected = match why {
            // Dropping the last base58 character divides the whole number by
            // 58, so the decoded bytes no longer start with 0xed 0x01 (they
            // are 0x04 0x16 ...): refused as another key type. A real 31-byte
            // key is tested in `length_limit_and_suffixes`.
            w if w.starts_with("truncated") => Some(DidError::UnsupportedKeyType),
            w if w.starts_with("missing multibase") => Some(DidError::UnsupportedMultibase),
            w if w.starts_with("secp256k1") => Some(DidError::UnsupportedKeyType),
            w if w.starts_with("not the did:key") => Some(DidError::UnsupportedMethod),
            w if w.starts_with("characters outside") => Some(DidError::InvalidBase58),
            "empty" => Some(DidError::NotADid),
            _ => None,
        };
        assert_eq!(err.err(), expected, "{why}");
    }
}

#[test]
fn length_limit_and_suffixes() {
    let did = did_key_from_ed25519(&public_from_seed(&[7u8; 32]));
    assert!(did.len() <= MAX_DID_LEN);
    for bad in [
        format!("{did}#{}", &did[8..]),
        format!("{did}/path"),
        format!("{did}?q"),
        format!(" {did}"),
        format!("{did}\n"),
        format!("{did}{}", "1".repeat(MAX_DID_LEN)),
    ] {
        assert!(ed25519_from_did_key(&bad).is_err(), "{bad:?}");
    }
    // Right multicodec, 31 or 33 key bytes.
    for len in [0usize, 31, 33] {
        let mut bytes = vec![0xed, 0x01];
        bytes.extend(std::iter::repeat_n(0x42, len));
        let did = format!("did:key:z{}", bs58::encode(&bytes).into_string());
        assert_eq!(
            ed25519_from_did_key(&did),
            Err(DidError::InvalidKeyLength),
            "{len}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn did_key_round_trip(seed in any::<[u8; 32]>()) {
        let public = public_from_seed(&seed);
        let did = did_key_from_ed25519(&public);
        prop_assert!(did.starts_with("did:key:z6Mk"));
        prop_assert!(did.len() <= MAX_DID_LEN);
        prop_assert_eq!(ed25519_from_did_key(&did), Ok(public));
        let doc = DidDocument::from_did_key(&did).unwrap();
        let back: DidDocument = serde_json::from_str(&serde_json::to_string(&doc).unwrap()).unwrap();
        prop_assert_eq!(back.ed25519_public_key(), Ok(public));
    }

    #[test]
    fn parse_never_panics(s in any::<String>()) {
        let _ = ed25519_from_did_key(&s);
    }

    #[test]
    fn parse_never_panics_on_base58(s in "(did:key:)?z?[1-9A-HJ-NP-Za-km-z]{0,80}") {
        if let Ok(key) = ed25519_from_did_key(&s) {
            // Whatever is accepted is canonical.
            prop_assert_eq!(did_key_from_ed25519(&key), s);
        }
    }

    #[test]
    fn document_decoding_never_panics(doc in any::<String>(), id in "did:key:z[1-9A-HJ-NP-Za-km-z]{0,60}") {
        if let Ok(d) = serde_json::from_str::<DidDocument>(&doc) {
            let _ = d.ed25519_public_key();
        }
        let json = format!(r#"{{"@context":[],"id":"{id}","verificationMethod":[],"authentication":[],"assertionMethod":[]}}"#);
        let d: DidDocument = serde_json::from_str(&json).unwrap();
        prop_assert!(d.ed25519_public_key().is_err());
    }
}

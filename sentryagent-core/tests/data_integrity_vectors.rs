//! The `eddsa-jcs-2022` test vectors of the W3C Data Integrity EdDSA
//! Cryptosuites specification (`tests/data/vc-di-eddsa-jcs-2022/`), step
//! by step: canonical forms, hashes, the signature, the signed credential,
//! and verification (with tampering refused).

use sentryagent_core::Timestamp;
use sentryagent_core::jcs::canonicalize;
use sentryagent_core::jose::{Algorithm, SigningKey};
use sentryagent_core::vc::{self, ProofOptions, VcError};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

fn data(name: &str) -> String {
    let path = format!(
        "{}/tests/data/vc-di-eddsa-jcs-2022/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json(name: &str) -> Value {
    serde_json::from_str(&data(name)).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The vector's key: `privateKeyMultibase` is base58-btc of the multicodec
/// `ed25519-priv` (0x1300, varint `80 26`) and the 32-byte seed.
fn vector_key() -> SigningKey {
    let pair = json("keyPair.json");
    let private = pair["privateKeyMultibase"].as_str().unwrap();
    let bytes = bs58::decode(&private[1..]).into_vec().unwrap();
    assert_eq!(&bytes[..2], &[0x80, 0x26]);
    let seed: [u8; 32] = bytes[2..].try_into().unwrap();
    let key = SigningKey::from_secret_bytes(Algorithm::EdDSA, String::new(), &seed).unwrap();
    let did =
        sentryagent_core::did::did_key_from_ed25519(&key.verifying_key().ed25519_bytes().unwrap());
    assert_eq!(
        did,
        format!("did:key:{}", pair["publicKeyMultibase"].as_str().unwrap())
    );
    key
}

fn unsigned() -> Value {
    let mut doc = json("signedJCS.json");
    doc.as_object_mut().unwrap().remove("proof");
    doc
}

#[test]
fn canonical_forms_and_hashes_match_the_vectors() {
    let doc = canonicalize(&unsigned()).unwrap();
    assert_eq!(doc, data("canonDocJCS.txt").trim());
    assert_eq!(
        hex(&Sha256::digest(doc.as_bytes())),
        data("docHashJCS.txt").trim()
    );
    let config = canonicalize(&json("proofConfigJCS.json")).unwrap();
    assert_eq!(config, data("proofCanonJCS.txt").trim());
    assert_eq!(
        hex(&Sha256::digest(config.as_bytes())),
        data("proofHashJCS.txt").trim()
    );
    assert_eq!(
        format!(
            "{}{}",
            data("proofHashJCS.txt").trim(),
            data("docHashJCS.txt").trim()
        ),
        data("combinedHashJCS.txt").trim()
    );
}

#[test]
fn signing_gives_the_vector_signature_and_credential() {
    let config = json("proofConfigJCS.json");
    let created = Timestamp::parse_rfc3339(config["created"].as_str().unwrap()).unwrap();
    let options = ProofOptions::assertion(config["verificationMethod"].as_str().unwrap(), created);
    let signed = vc::sign(&unsigned(), &options, &vector_key()).unwrap();
    let value = signed["proof"]["proofValue"].as_str().unwrap();
    assert_eq!(value, data("sigBTC58JCS.txt").trim());
    let raw = bs58::decode(&value[1..]).into_vec().unwrap();
    assert_eq!(hex(&raw), data("sigHexJCS.txt").trim());
    assert_eq!(signed, json("signedJCS.json"));
}

#[test]
fn the_vector_credential_verifies_and_tampering_does_not() {
    let signed = json("signedJCS.json");
    let proof = vc::verify_did_key(&signed).unwrap();
    assert_eq!(proof["cryptosuite"], "eddsa-jcs-2022");
    assert!(!proof.contains_key("proofValue"));

    // Member order and white space do not matter (JCS).
    let reordered: Value = serde_json::from_str(&serde_json::to_string(&signed).unwrap()).unwrap();
    vc::verify_did_key(&reordered).unwrap();

    let mut changed = signed.clone();
    changed["credentialSubject"]["alumniOf"] = "Another School".into();
    assert_eq!(vc::verify_did_key(&changed), Err(VcError::BadSignature));

    let mut changed = signed.clone();
    changed["proof"]["created"] = "2024-02-24T23:36:38Z".into();
    assert_eq!(vc::verify_did_key(&changed), Err(VcError::BadSignature));

    let mut changed = signed.clone();
    changed["@context"] = serde_json::json!(["https://www.w3.org/ns/credentials/v2"]);
    assert_eq!(vc::verify_did_key(&changed), Err(VcError::ContextMismatch));

    let mut changed = signed.clone();
    changed["proof"]["cryptosuite"] = "eddsa-rdfc-2022".into();
    assert!(matches!(
        vc::verify_did_key(&changed),
        Err(VcError::Malformed(_))
    ));

    let mut changed = signed.clone();
    changed["proof"]["verificationMethod"] =
        "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK#z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK".into();
    assert_eq!(vc::verify_did_key(&changed), Err(VcError::BadSignature));

    let mut changed = signed.clone();
    changed.as_object_mut().unwrap().remove("proof");
    assert_eq!(vc::verify_did_key(&changed), Err(VcError::NoProof));

    // A method that is not the DID's own key is not resolved.
    let mut changed = signed;
    changed["proof"]["verificationMethod"] = "did:example:issuer#key-1".into();
    assert_eq!(
        vc::verify_did_key(&changed),
        Err(VcError::UnknownVerificationMethod)
    );
}

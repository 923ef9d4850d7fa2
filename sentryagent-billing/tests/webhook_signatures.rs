//! `Stripe-Signature` verification against vectors made with Stripe's own
//! library, and a property test that it never panics.

use std::time::Duration;

use proptest::prelude::*;
use sentryagent_billing::webhook::{
    DEFAULT_TOLERANCE, MAX_HEADER_LEN, SignatureError, sign, verify_signature,
};
use sentryagent_core::Timestamp;
use serde_json::Value;

const VECTORS: &str = include_str!("data/stripe-webhook-signatures.json");

#[test]
fn every_vector_behaves_as_stated() {
    let v: Value = serde_json::from_str(VECTORS).unwrap();
    let secret = v["secret"].as_str().unwrap();
    let tolerance = Duration::from_secs(v["tolerance_s"].as_u64().unwrap());
    assert_eq!(tolerance, DEFAULT_TOLERANCE);
    let shared_payload = v["payload"].as_str().unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(
        cases.len(),
        13,
        "the vector file changed: review the new cases"
    );
    let mut valid = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let header = case["header"].as_str().unwrap();
        let now = Timestamp::from_unix_secs(case["now"].as_i64().unwrap());
        let payload = case["payload"].as_str().unwrap_or(shared_payload);
        let want = case["valid"].as_bool().unwrap();
        let got = verify_signature(header, payload.as_bytes(), &[secret], now, tolerance);
        assert_eq!(got.is_ok(), want, "{name}: {got:?}");
        // With the right secret among others (rotation), the result is the same.
        let rotated = verify_signature(
            header,
            payload.as_bytes(),
            &["whsec_some_other_secret", secret],
            now,
            tolerance,
        );
        assert_eq!(rotated.is_ok(), want, "{name} (two secrets): {rotated:?}");
        valid += usize::from(want);
    }
    assert_eq!(valid, 4);
}

#[test]
fn vectors_fail_for_the_stated_reason() {
    let v: Value = serde_json::from_str(VECTORS).unwrap();
    let secret = v["secret"].as_str().unwrap();
    let payload = v["payload"].as_str().unwrap();
    let reason = |name: &str| {
        let case = v["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap();
        verify_signature(
            case["header"].as_str().unwrap(),
            case["payload"].as_str().unwrap_or(payload).as_bytes(),
            &[secret],
            Timestamp::from_unix_secs(case["now"].as_i64().unwrap()),
            DEFAULT_TOLERANCE,
        )
        .unwrap_err()
    };
    assert_eq!(reason("v0_only_is_rejected"), SignatureError::NoSignature);
    assert_eq!(reason("wrong_secret"), SignatureError::Mismatch);
    assert_eq!(
        reason("timestamp_too_old"),
        SignatureError::OutsideTolerance
    );
    assert_eq!(reason("tampered_timestamp"), SignatureError::Mismatch);
    assert_eq!(reason("no_timestamp"), SignatureError::NoTimestamp);
    assert_eq!(reason("garbage_header"), SignatureError::NoTimestamp);
    assert_eq!(reason("empty_header"), SignatureError::NoTimestamp);
    assert_eq!(reason("non_hex_signature"), SignatureError::Mismatch);
    assert_eq!(reason("tampered_body"), SignatureError::Mismatch);
}

#[test]
fn our_signer_matches_the_vectors() {
    let v: Value = serde_json::from_str(VECTORS).unwrap();
    let valid = &v["cases"][0];
    assert_eq!(valid["name"], "valid");
    let header = valid["header"].as_str().unwrap();
    let expected = header.split_once("v1=").unwrap().1;
    assert_eq!(
        sign(
            v["secret"].as_str().unwrap(),
            1_763_700_000,
            v["payload"].as_str().unwrap().as_bytes()
        ),
        expected
    );
}

#[test]
fn future_timestamps_beyond_the_tolerance_are_refused() {
    let body = b"{}";
    let header = format!("t=1000000,v1={}", sign("whsec_x", 1_000_000, body));
    let at = |s| Timestamp::from_unix_secs(s);
    assert!(
        verify_signature(
            &header,
            body,
            &["whsec_x"],
            at(1_000_000 - 300),
            DEFAULT_TOLERANCE
        )
        .is_ok()
    );
    assert_eq!(
        verify_signature(
            &header,
            body,
            &["whsec_x"],
            at(1_000_000 - 301),
            DEFAULT_TOLERANCE
        ),
        Err(SignatureError::OutsideTolerance)
    );
}

fn header_strategy() -> impl Strategy<Value = String> {
    let item = prop_oneof![
        "[ -~]{0,80}",
        "t=[0-9+-]{0,22}",
        "v1=[0-9a-fA-Fz]{0,70}",
        "v0=[0-9a-f]{0,64}",
        "[a-z0-9]{0,3}=[ -~]{0,10}",
    ];
    prop::collection::vec(item, 0..12).prop_map(|items| items.join(","))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics(
        header in header_strategy(),
        body in prop::collection::vec(any::<u8>(), 0..256),
        now in any::<i64>(),
        tolerance in any::<u64>(),
        secrets in prop::collection::vec("[ -~]{0,40}", 0..3),
    ) {
        let _ = verify_signature(
            &header,
            &body,
            &secrets,
            Timestamp::from_unix_micros(now),
            Duration::from_secs(tolerance),
        );
    }

    #[test]
    fn arbitrary_unicode_headers_never_panic(header in "\\PC{0,200}", body in ".{0,64}") {
        let _ = verify_signature(&header, body.as_bytes(), &["whsec_x"], Timestamp::EPOCH, DEFAULT_TOLERANCE);
    }

    #[test]
    fn a_signature_verifies_exactly_its_body(
        body in prop::collection::vec(any::<u8>(), 0..256),
        other in prop::collection::vec(any::<u8>(), 0..256),
        t in 0i64..4_000_000_000,
    ) {
        let header = format!("t={t},v1={}", sign("whsec_p", t, &body));
        let now = Timestamp::from_unix_secs(t);
        prop_assert!(verify_signature(&header, &body, &["whsec_p"], now, DEFAULT_TOLERANCE).is_ok());
        prop_assert_eq!(
            verify_signature(&header, &other, &["whsec_p"], now, DEFAULT_TOLERANCE).is_ok(),
            other == body
        );
    }
}

#[test]
fn huge_headers_are_refused_before_any_work() {
    let header = "v1=00,".repeat(MAX_HEADER_LEN);
    assert_eq!(
        verify_signature(
            &header,
            b"",
            &["whsec_x"],
            Timestamp::EPOCH,
            DEFAULT_TOLERANCE
        ),
        Err(SignatureError::HeaderTooLong)
    );
}

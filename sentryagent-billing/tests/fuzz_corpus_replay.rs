//! Replays the committed fuzz inputs of `stripe_signature` through its fuzz
//! harness, on the stable toolchain, so that `cargo test` catches a
//! regression that the fuzzer once found or covered.
//!
//! The harness is the fuzz crate's own `src/billing_targets.rs` (compiled
//! here as a module, so both run exactly the same code), and the replay loop
//! is its `src/replay.rs`, shared with the replay tests of the other crates.
//! See `docs/fuzzing.md`.

#[path = "../../fuzz/src/billing_targets.rs"]
#[allow(unreachable_pub, dead_code)]
mod harness;
#[path = "../../fuzz/src/replay.rs"]
#[allow(unreachable_pub, dead_code)]
mod replay;

use replay::{replay, seed};
use sentryagent_billing::webhook::{DEFAULT_TOLERANCE, verify_signature};
use sentryagent_core::Timestamp;
use serde_json::Value;

#[test]
fn stripe_signature_corpus() {
    // The 13 shared Stripe-Signature vectors, and the vectors themselves.
    replay("stripe_signature", 14, harness::stripe_signature);
}

/// Every shared vector has its seed (`now`, header and body on lines), which
/// the harness accepts exactly when the vector is valid, as does
/// `verify_signature` itself (a harness that refused everything would pass
/// the replay above vacuously).
#[test]
fn seeds_are_the_vectors_and_the_harness_agrees_with_them() {
    let vectors: Value =
        serde_json::from_slice(&seed("stripe_signature", "vectors.json")).expect("vectors.json");
    assert_eq!(vectors["secret"], harness::SECRET);
    assert_eq!(
        vectors["tolerance_s"].as_u64(),
        Some(DEFAULT_TOLERANCE.as_secs())
    );
    let cases = vectors["cases"].as_array().expect("cases");
    assert!(cases.len() >= 13);
    let (mut valid, mut invalid) = (0, 0);
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let header = case["header"].as_str().expect("header");
        let now = case["now"].as_i64().expect("now");
        let payload = case
            .get("payload")
            .unwrap_or(&vectors["payload"])
            .as_str()
            .expect("payload");
        let expected = case["valid"].as_bool().expect("valid");
        let input = seed("stripe_signature", name);
        assert_eq!(
            input,
            format!("{now}\n{header}\n{payload}").into_bytes(),
            "seed {name} is not its vector"
        );
        assert_eq!(harness::stripe_signature(&input), expected, "{name}");
        let direct = verify_signature(
            header,
            payload.as_bytes(),
            &[harness::SECRET],
            Timestamp::from_unix_secs(now),
            DEFAULT_TOLERANCE,
        );
        assert_eq!(direct.is_ok(), expected, "{name}: {direct:?}");
        if expected {
            valid += 1;
        } else {
            invalid += 1;
        }
    }
    assert!(
        valid >= 4 && invalid >= 8,
        "{valid} valid, {invalid} invalid"
    );
    // Not a vector: the first line is not a time, so the default one is used.
    assert!(!harness::stripe_signature(b"not a time\nt=1,v1=00\n{}"));
}

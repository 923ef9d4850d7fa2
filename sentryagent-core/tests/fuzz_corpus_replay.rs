//! Replays the committed fuzz inputs of the core's targets (`jws_verify`,
//! `did_parse`, `client_assertion`) through their fuzz harnesses, on the
//! stable toolchain, so that `cargo test` catches a regression that the
//! fuzzers once found or covered.
//!
//! The harnesses are the fuzz crate's own `src/core_targets.rs` (compiled
//! here as a module, so both run exactly the same code), and the replay loop
//! is its `src/replay.rs`, shared with the replay tests of the other crates.
//! See `docs/fuzzing.md`.

#[path = "../../fuzz/src/core_targets.rs"]
#[allow(unreachable_pub, dead_code)]
mod harness;
#[path = "../../fuzz/src/replay.rs"]
#[allow(unreachable_pub, dead_code)]
mod replay;

use replay::{replay, seed};

#[test]
fn jws_verify_corpus() {
    // 19 JWT verification cases and RFC 8037 A.4.
    replay("jws_verify", 20, harness::jws_verify);
}

#[test]
fn did_parse_corpus() {
    // 5 valid and 6 invalid did:key vectors, 5 DID documents.
    replay("did_parse", 16, harness::did_parse);
}

#[test]
fn client_assertion_corpus() {
    replay("client_assertion", 15, harness::client_assertion);
}

/// The fixtures are right: the harnesses accept what is valid and refuse
/// what is not, so the fuzzers reach the acceptance paths too (a harness
/// that refused everything would pass the replays above vacuously).
#[test]
fn harnesses_accept_valid_inputs_and_refuse_others() {
    assert!(harness::jws_verify(&seed("jws_verify", "valid")));
    assert!(harness::jws_verify(&seed("jws_verify", "rfc8037_a4")));
    for refused in [
        "alg_none",
        "unknown_kid",
        "signature_of_other_payload",
        "empty",
    ] {
        assert!(
            !harness::jws_verify(&seed("jws_verify", refused)),
            "{refused}"
        );
    }

    for i in 0..5 {
        assert!(harness::did_parse(&seed(
            "did_parse",
            &format!("valid-{i}")
        )));
        assert!(harness::did_parse(&seed(
            "did_parse",
            &format!("document-{i}.json")
        )));
    }
    for i in 0..6 {
        assert!(!harness::did_parse(&seed(
            "did_parse",
            &format!("invalid-{i}")
        )));
    }

    // Claims signed by the harness with the agent's key: a token is issued
    // once, and the replayed jti is refused.
    let claims = serde_json::json!({
        "iss": harness::AGENT_ID, "sub": harness::AGENT_ID,
        "aud": harness::ISSUER, "jti": "replay-sanity", "exp": harness::NOW + 60,
    });
    let mut input = vec![1u8];
    input.extend_from_slice(&serde_json::to_vec(&claims).expect("claims"));
    assert!(harness::client_assertion(&input));
    assert!(!harness::client_assertion(&input));
    // An assertion as sent, signed here, with client_id and scope.
    let claims = serde_json::json!({
        "iss": harness::AGENT_ID, "sub": harness::AGENT_ID,
        "aud": format!("{}/oauth2/token", harness::ISSUER), "jti": "replay-sanity-2",
        "exp": harness::NOW + 60,
    });
    let token = harness::agent_signing_key()
        .sign_compact(None, &serde_json::to_vec(&claims).expect("claims"))
        .expect("sign");
    let mut input = vec![2u8 | 4];
    input.extend_from_slice(token.as_bytes());
    assert!(harness::client_assertion(&input));
    for refused in [
        "claims-expired",
        "claims-wrong_audience",
        "assertion-garbage",
    ] {
        assert!(
            !harness::client_assertion(&seed("client_assertion", refused)),
            "{refused}"
        );
    }
}

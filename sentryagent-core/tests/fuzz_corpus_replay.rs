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

#[test]
fn subject_token_corpus() {
    replay("subject_token", 40, harness::subject_token);
}

/// The `subject_token` fixture is right: valid claims signed by each key
/// verify and select exactly one policy, and what the rules refuse is
/// refused (so the replay above is not vacuous).
#[test]
fn subject_token_harness_accepts_valid_inputs_and_refuses_others() {
    for valid in [
        "claims-valid-rsa1",
        "claims-valid-ec1",
        "claims-valid-ed1",
        "claims-valid-rsa1-without-kid",
        "claims-environment-policy",
        "claims-pointer-policy",
        "claims-audience-array",
        "claims-other-audience-policy",
        // (The fixture's one key set stands for every issuer's.)
        "claims-gitlab-issuer",
        "claims-expired-within-leeway",
        // Without kid, every key of the algorithm is tried.
        "header-es256-no-kid",
        "claims-repository-id-number",
        "conditions-globs",
        "conditions-pointer",
        "conditions-number-and-bool",
        "conditions-unicode",
    ] {
        assert!(
            harness::subject_token(&seed("subject_token", valid)),
            "{valid}"
        );
    }
    for refused in [
        "claims-ambiguous-two-policies",
        "claims-pointer-policy-too-old",
        "claims-expired",
        "claims-not-yet-valid",
        "claims-issued-in-future",
        "claims-without-sub",
        "claims-without-exp",
        "claims-exp-float",
        "claims-wrong-audience",
        "claims-repeated-member",
        "claims-invalid-utf8",
        "header-alg-none",
        "header-alg-hs256",
        "header-unknown-kid",
        "header-kid-of-other-type",
        "header-embedded-jwk",
        "header-crit",
        "token-valid-claims-bad-signature",
        "token-alg-none",
        "conditions-missing-claim",
        "conditions-null-and-object",
    ] {
        assert!(
            !harness::subject_token(&seed("subject_token", refused)),
            "{refused}"
        );
    }
}

mod subject_token_prop {
    //! A proptest mirror of the `subject_token` target: claims built from
    //! the values the fixed policies look at, signed by each key (mode 1),
    //! and conditions over generated claims (mode 3), through the same
    //! harness and its models.

    use super::harness;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("refs/heads/main".to_owned()),
            Just("repo:octo-org/octo-agent:environment:prod".to_owned()),
            Just("octo-org/octo-agent/.github/workflows/r.yml@refs/tags/v1".to_owned()),
            Just("74".to_owned()),
            Just("65".to_owned()),
            "[a-z*/:~0-9é]{0,12}",
        ]
    }

    fn claims() -> impl Strategy<Value = Value> {
        let now = harness::SUBJECT_NOW;
        (
            prop_oneof![
                Just(json!(harness::SUBJECT_AUDIENCE)),
                Just(json!(["x", harness::SUBJECT_AUDIENCE])),
                Just(json!("https://other.example")),
            ],
            (
                now - 200..now + 200,
                now - 200..now + 200,
                now - 200..now + 200,
            ),
            (text(), text(), text(), text(), text()),
            any::<bool>(),
        )
            .prop_map(
                move |(aud, (iat, nbf, exp), (sub, r, rid, oid, jwr), flag)| {
                    json!({
                        "iss": harness::SUBJECT_ISSUER, "aud": aud, "sub": sub,
                        "iat": iat, "nbf": nbf, "exp": exp, "ref": r,
                        "repository_id": rid, "repository_owner_id": oid,
                        "environment": "prod", "job_workflow_ref": jwr,
                        "ci": [{"run/id": 402}, flag],
                    })
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn signed_claims_follow_the_model(key in 0u8..4, c in claims()) {
            let mut input = vec![1 | (key << 2)];
            input.extend_from_slice(&serde_json::to_vec(&c).expect("claims"));
            harness::subject_token(&input);
        }

        #[test]
        fn conditions_follow_the_model(
            conditions in proptest::collection::btree_map(
                prop_oneof![
                    "[a-c]{1,2}".prop_map(|s| s),
                    "/[a-c~01]{1,3}(/[0-9+a-c~]{1,2}){0,2}".prop_map(|s| s),
                ],
                text(),
                0..4,
            ),
            claims in proptest::collection::btree_map(
                "[a-c~/]{1,3}",
                prop_oneof![
                    text().prop_map(Value::from),
                    any::<i32>().prop_map(Value::from),
                    any::<bool>().prop_map(Value::from),
                    proptest::collection::vec(text().prop_map(Value::from), 0..3).prop_map(Value::from),
                    proptest::collection::btree_map("[a-c]{1,2}", text(), 0..3)
                        .prop_map(|m| json!(m)),
                ],
                0..5,
            ),
        ) {
            let mut input = vec![3u8];
            input.extend_from_slice(
                &serde_json::to_vec(&json!({"conditions": conditions, "claims": claims}))
                    .expect("case"),
            );
            harness::subject_token(&input);
        }
    }
}

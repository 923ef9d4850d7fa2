//! Replays the committed fuzz inputs of `token_form` through its fuzz
//! harness, on the stable toolchain, so that `cargo test` catches a
//! regression that the fuzzer once found or covered.
//!
//! The harness is the fuzz crate's own `src/http_targets.rs` (compiled here
//! as a module, so both run exactly the same code), and the replay loop is
//! its `src/replay.rs`, shared with the replay tests of the other crates.
//! See `docs/fuzzing.md`.

#[path = "../../fuzz/src/http_targets.rs"]
#[allow(unreachable_pub, dead_code)]
mod harness;
#[path = "../../fuzz/src/replay.rs"]
#[allow(unreachable_pub, dead_code)]
mod replay;

use replay::{replay, seed};

#[test]
fn token_form_corpus() {
    replay("token_form", 25, harness::token_form);
}

/// The harness reads the seeds as the token endpoint would: the valid token
/// requests are read, the others refused (a harness that refused everything
/// would pass the replay above vacuously).
#[test]
fn harness_accepts_valid_requests_and_refuses_others() {
    for valid in [
        "client_secret_post",
        "client_secret_post-percent_escapes",
        "client_secret_basic",
        "client_secret_basic-form_encoded",
        "client_secret_basic-and_client_id",
        "private_key_jwt",
        "private_key_jwt-client_id",
        "resource_repeated",
        "audience_and_resource",
        "empty_values_are_absent",
        "small_limit-fits",
        "max_parameters",
    ] {
        assert!(harness::token_form(&seed("token_form", valid)), "{valid}");
    }
    for refused in [
        "empty",
        "mode_only",
        "no_client_authentication",
        "bad_escape",
        "truncated_escape",
        "escaped_invalid_utf8",
        "raw_invalid_utf8",
        "repeated_grant_type",
        "unsupported_grant_type",
        "missing_grant_type",
        "two_authentication_methods",
        "basic_client_id_differs",
        "bearer_scheme",
        "basic_not_base64",
        "half_an_assertion",
        "secret_without_client_id",
        "small_limit-too_large",
        "introspection_request",
        "too_many_parameters",
    ] {
        assert!(
            !harness::token_form(&seed("token_form", refused)),
            "{refused}"
        );
    }
}

//! Replays the committed fuzz inputs through the fuzz harnesses, on the
//! stable toolchain, so that `cargo test` catches a regression that the
//! fuzzers once found or covered.
//!
//! The harnesses are the fuzz crate's own `src/lib.rs` (compiled here as a
//! module, so both run exactly the same code). The inputs are every file
//! under the workspace's `fuzz/seeds/<target>/` (from the shared test
//! vectors), `fuzz/corpus/<target>/` (the minimized corpus of the fuzz runs)
//! and `fuzz/regressions/<target>/` (inputs that once crashed). See
//! `docs/fuzzing.md`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

#[path = "../../fuzz/src/lib.rs"]
#[allow(unreachable_pub, dead_code)]
mod harness;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Every input file of `target`, sorted, with the number of seeds among
/// them.
fn inputs(target: &str) -> (Vec<PathBuf>, usize) {
    let mut all = Vec::new();
    let mut seeds = 0;
    for kind in ["seeds", "corpus", "regressions"] {
        let dir = fuzz_dir().join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .map(|e| {
                e.unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                    .path()
            })
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        if kind == "seeds" {
            seeds = files.len();
        }
        all.extend(files);
    }
    (all, seeds)
}

/// Runs `harness` on every input of `target`; fails with the list of inputs
/// that panicked.
fn replay(target: &str, min_seeds: usize, harness: fn(&[u8]) -> bool) {
    let (files, seeds) = inputs(target);
    assert!(
        seeds >= min_seeds,
        "{target}: expected at least {min_seeds} seed files under fuzz/seeds/{target}, found {seeds}"
    );
    let mut failures = Vec::new();
    for path in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if catch_unwind(AssertUnwindSafe(|| harness(&data))).is_err() {
            failures.push(path.display().to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "{target}: {} of {} inputs panicked: {failures:#?}",
        failures.len(),
        files.len()
    );
    eprintln!("{target}: replayed {} inputs", files.len());
}

fn seed(target: &str, name: &str) -> Vec<u8> {
    let path = fuzz_dir().join("seeds").join(target).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

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

//! Fuzz harnesses of `sentryagent-core`: `jws_verify`, `did_parse`,
//! `client_assertion` and `subject_token`.
//!
//! Each `fuzz_targets/<name>.rs` calls the function of the same name here
//! (re-exported by the fuzz crate's `lib.rs`), and
//! `sentryagent-core/tests/fuzz_corpus_replay.rs` compiles this file as a
//! module to run every committed corpus input through the same functions on
//! the stable toolchain. A harness returns normally for any input; it panics
//! only when the code under test panics or breaks one of the invariants
//! asserted here (which is what the fuzzer reports as a crash).
//!
//! These harnesses use nothing but `sentryagent-core` and crates it already
//! depends on (`base64`, `ed25519-dalek`, `serde_json`, `tokio`), since the
//! core's tests compile them; `subject_token` uses the core's test issuer
//! (feature `conformance`, which the core's tests have).

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer as _;
use sentryagent_core::ClientSecret;
use sentryagent_core::SecretHash;
use sentryagent_core::did::{DidDocument, did_key_from_ed25519, ed25519_from_did_key};
use sentryagent_core::jose::{
    Algorithm, JoseError, Jwk, KeySet, RegisteredClaims, SigningKey, Validation, VerifyingKey,
    parse_compact, verify_compact, verify_jwt,
};
use sentryagent_core::{Agent, LifecycleState, Visibility};
use sentryagent_core::{
    AgentId, Idp, ManualClock, MemoryStore, SecretId, TenantId, Tier, Timestamp,
};
use sentryagent_core::{AgentStore, TenantStore};
use sentryagent_core::{BillingInfo, Publisher, Tenant, TenantStatus};
use sentryagent_core::{ClientCredentials, JWT_BEARER_ASSERTION_TYPE, TokenRequest};

/// The issuer of the JWT verification cases and of the fuzzed `Idp`.
pub const ISSUER: &str = "https://idp.example";
/// The audience of the JWT verification cases.
pub const AUDIENCE: &str = "https://api.example";
/// The time of the JWT verification cases, and the fuzzed `Idp`'s clock.
pub const NOW: i64 = 1_763_701_000;
/// Leeway of the strict validation.
const LEEWAY: Duration = Duration::from_secs(60);

/// RFC 8037 Appendix A.1: the Ed25519 key of the JWS vectors (`d`, then `x`).
const RFC8037_D: [u8; 32] = [
    157, 97, 177, 157, 239, 253, 90, 96, 186, 132, 74, 244, 146, 236, 44, 196, 68, 73, 197, 105,
    123, 50, 105, 25, 112, 59, 172, 3, 28, 174, 127, 96,
];
const RFC8037_X: [u8; 32] = [
    215, 90, 152, 1, 130, 177, 10, 183, 213, 75, 254, 211, 201, 100, 7, 58, 14, 225, 114, 243, 218,
    166, 35, 37, 175, 2, 26, 104, 247, 7, 81, 26,
];
/// The key id the JWT verification cases use.
pub const RFC8037_KID: &str = "rfc8037";

/// The fuzzed `Idp`'s agent: its id, tenant and Ed25519 seed.
pub const AGENT_ID: &str = "agt_0193a1c2d3e47f00a1b2c3d4e5f60718";
const TENANT_ID: &str = "tnt_0193a1c2d3e47f00a1b2c3d4e5f60719";
/// Seed of the agent's Ed25519 key (any 32 bytes are a valid seed).
pub const AGENT_SEED: [u8; 32] = [0x5a; 32];
/// The `Idp` is rebuilt after this many requests, so the failure audit trail
/// and the replay markers it accumulates stay small during long runs.
const REQUESTS_PER_IDP: u32 = 20_000;

/// Text from fuzz input: the core's parsers take `&str`, so invalid UTF-8 is
/// replaced rather than thrown away (the result is still arbitrary text).
fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

struct JwsFixture {
    keys: KeySet,
    signer: ed25519_dalek::SigningKey,
    strict: Validation,
    loose: Validation,
}

fn jws_fixture() -> &'static JwsFixture {
    static F: OnceLock<JwsFixture> = OnceLock::new();
    F.get_or_init(|| {
        let public = VerifyingKey::from_jwk(&Jwk::ed25519(&RFC8037_X))
            .unwrap_or_else(|e| panic!("RFC 8037 key: {e}"));
        let mut keys = KeySet::new();
        keys.insert(RFC8037_KID, public);
        let now = Timestamp::from_unix_secs(NOW);
        JwsFixture {
            keys,
            signer: ed25519_dalek::SigningKey::from_bytes(&RFC8037_D),
            strict: Validation {
                issuer: ISSUER.to_owned(),
                audience: Some(AUDIENCE.to_owned()),
                leeway: LEEWAY,
                now,
                required_typ: Some("at+jwt".to_owned()),
            },
            loose: Validation {
                leeway: LEEWAY,
                ..Validation::new(ISSUER, now)
            },
        }
    })
}

/// Runs both validations on `token` and checks that they agree with each
/// other and with [`verify_compact`]; returns whether the signature verified.
fn check_jwt(f: &JwsFixture, token: &str) -> bool {
    let verified = verify_compact(token, &f.keys);
    if let Ok((header, payload)) = &verified {
        let c = parse_compact(token).expect("verify_compact accepted what parse_compact refuses");
        assert_eq!(
            c.header(),
            header,
            "header differs between parse and verify"
        );
        assert_eq!(c.payload(), payload.as_slice(), "payload differs");
        assert_eq!(
            c.header().alg,
            Algorithm::EdDSA,
            "accepted a non-EdDSA token"
        );
    }
    let strict = verify_jwt::<RegisteredClaims, _>(token, &f.keys, &f.strict);
    let loose = verify_jwt::<serde_json::Value, _>(token, &f.keys, &f.loose);
    if let Ok((_, claims)) = &strict {
        assert!(verified.is_ok(), "claims accepted without a signature");
        assert!(
            loose.is_ok(),
            "strict validation passed, the looser one failed"
        );
        // The documented rules, checked again independently.
        assert_eq!(claims.iss.as_deref(), Some(ISSUER), "wrong issuer accepted");
        assert!(claims.aud.contains(AUDIENCE), "wrong audience accepted");
        let now = i128::from(NOW) * 1_000_000;
        let leeway = LEEWAY.as_micros() as i128;
        let exp = claims.exp.expect("accepted without exp");
        assert!(
            now < i128::from(exp) * 1_000_000 + leeway,
            "expired token accepted"
        );
        if let Some(nbf) = claims.nbf {
            assert!(
                now + leeway >= i128::from(nbf) * 1_000_000,
                "early token accepted"
            );
        }
        if let Some(iat) = claims.iat {
            assert!(
                i128::from(iat) * 1_000_000 <= now + leeway,
                "future iat accepted"
            );
        }
    }
    if let Ok((_, claims)) = &loose {
        assert!(verified.is_ok(), "claims accepted without a signature");
        assert!(claims.is_object(), "accepted claims that are not an object");
    }
    verified.is_ok()
}

/// `jws_verify`: a compact JWS/JWT parsed and verified against the RFC 8037
/// key (kid `rfc8037`), with a strict access-token validation and a loose
/// one. When the input parses and names the trusted key but its signature is
/// wrong (as nearly every mutation makes it), its signing input is signed
/// again with the RFC 8037 private key and checked once more, so that the
/// claim checks are fuzzed too. Returns whether the input's signature
/// verified.
pub fn jws_verify(data: &[u8]) -> bool {
    let f = jws_fixture();
    let token = text(data);
    let verified = check_jwt(f, &token);
    if let Err(JoseError::BadSignature) = verify_compact(&token, &f.keys) {
        let Ok(c) = parse_compact(&token) else {
            panic!("verify_compact got to the signature of what parse_compact refuses");
        };
        let signature = f.signer.sign(c.signing_input().as_bytes()).to_bytes();
        let resigned = format!(
            "{}.{}",
            c.signing_input(),
            URL_SAFE_NO_PAD.encode(signature)
        );
        assert!(
            check_jwt(f, &resigned),
            "a correctly signed token does not verify"
        );
    }
    verified
}

/// `did_parse`: the input as a `did:key` and as a DID document (JSON).
/// Returns whether it was accepted as either.
pub fn did_parse(data: &[u8]) -> bool {
    let did = text(data);
    let mut accepted = false;
    if let Ok(key) = ed25519_from_did_key(&did) {
        accepted = true;
        assert_eq!(
            did_key_from_ed25519(&key),
            did,
            "accepted a non-canonical did:key"
        );
        let doc = DidDocument::from_did_key(&did).expect("did:key parses but has no document");
        assert_eq!(doc.ed25519_public_key(), Ok(key), "own document refused");
        let json = serde_json::to_vec(&doc).expect("document serializes");
        let back: DidDocument = serde_json::from_slice(&json).expect("document round-trips");
        assert_eq!(back, doc, "document changed in a JSON round trip");
    } else {
        assert!(
            DidDocument::from_did_key(&did).is_err(),
            "document of a refused DID"
        );
    }
    if let Ok(doc) = serde_json::from_slice::<DidDocument>(data)
        && let Ok(key) = doc.ed25519_public_key()
    {
        assert_eq!(
            doc,
            DidDocument::for_ed25519(&key),
            "accepted a forged document"
        );
        assert_eq!(
            did_key_from_ed25519(&key),
            doc.id,
            "document id is not its key's DID"
        );
        accepted = true;
    }
    accepted
}

struct IdpFixture {
    runtime: tokio::runtime::Runtime,
    idp: Idp,
    requests: u32,
}

thread_local! {
    static IDP: RefCell<Option<IdpFixture>> = const { RefCell::new(None) };
}

/// The agent's signing key, with its DID as `kid` (as agents sign).
pub fn agent_signing_key() -> SigningKey {
    let did = agent_did();
    SigningKey::from_secret_bytes(Algorithm::EdDSA, did, &AGENT_SEED)
        .unwrap_or_else(|e| panic!("agent key: {e}"))
}

/// The agent's `did:key`.
pub fn agent_did() -> String {
    let public = ed25519_dalek::SigningKey::from_bytes(&AGENT_SEED)
        .verifying_key()
        .to_bytes();
    did_key_from_ed25519(&public)
}

/// An `Idp` on a manual clock at [`NOW`], with one enterprise tenant and one
/// active agent of known id and key, created in the store directly so that
/// every run sees the same ids.
async fn build_idp() -> Idp {
    let at = Timestamp::from_unix_secs(NOW - 3600);
    let tenant = Tenant {
        id: TenantId::parse(TENANT_ID).expect("tenant id"),
        name: "Fuzz".into(),
        slug: "fuzz".into(),
        tier: Tier::Enterprise,
        status: TenantStatus::Active,
        billing: BillingInfo::default(),
        publisher: Publisher {
            display_name: "Fuzz".into(),
            website: None,
            verified: false,
            verification: None,
        },
        allowed_audiences: vec![AUDIENCE.into()],
        settings: Default::default(),
        suspended_at: None,
        suspension_reason: None,
        created_at: at,
        updated_at: at,
        revision: 0,
    };
    let agent = Agent {
        id: AgentId::parse(AGENT_ID).expect("agent id"),
        tenant_id: tenant.id.clone(),
        name: "fuzz-agent".into(),
        description: String::new(),
        version: "1.0.0".into(),
        capabilities: vec![],
        tags: vec![],
        category: None,
        visibility: Visibility::Private,
        state: LifecycleState::Active,
        did: agent_did(),
        allowed_scopes: vec!["read".into(), "write".into()],
        custom_claims: Default::default(),
        token_algorithm: None,
        tokens_not_before: None,
        state_changed_at: Some(at),
        created_at: at,
        updated_at: at,
        revision: 0,
    };
    let secret = ClientSecret {
        id: SecretId::parse("sec_0193a1c2d3e47f00a1b2c3d4e5f6071a").expect("secret id"),
        agent_id: agent.id.clone(),
        hash: SecretHash([0; 32]),
        created_at: at,
        expires_at: None,
        revoked_at: None,
    };
    let store = Arc::new(MemoryStore::new());
    store.create_tenant(&tenant).await.expect("tenant");
    store
        .create_agent(&agent, Some(&secret), None)
        .await
        .expect("agent");
    Idp::builder(ISSUER)
        .store(store)
        .clock(Arc::new(ManualClock::new(Timestamp::from_unix_secs(NOW))))
        .secret_hash_key([7; 32])
        .build()
        .await
        .expect("idp")
}

/// `client_assertion`: a `private_key_jwt` token request through an
/// in-memory `Idp`.
///
/// The first byte picks the mode: bit 0 clear, the rest is the
/// `client_assertion` as sent; bit 0 set, the rest is the assertion's claims
/// (JSON), signed here with the agent's key (header `alg` EdDSA, `kid` its
/// DID) so that the claim checks are reached. Bit 1 sends the agent's id as
/// `client_id`; bit 2 asks for scope `read`. A token the `Idp` issues must
/// verify and name the agent. Returns whether a token was issued.
pub fn client_assertion(data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else {
        return false;
    };
    let assertion = if mode & 1 == 0 {
        text(rest).into_owned()
    } else {
        match agent_signing_key().sign_compact(None, rest) {
            Ok(token) => token,
            Err(JoseError::TooLarge) => return false,
            Err(e) => panic!("signing failed: {e}"),
        }
    };
    let request = TokenRequest {
        grant_type: "client_credentials".into(),
        client: ClientCredentials::Assertion {
            client_id: (mode & 2 != 0).then(|| AGENT_ID.to_owned()),
            assertion_type: JWT_BEARER_ASSERTION_TYPE.into(),
            assertion,
        },
        scope: (mode & 4 != 0).then(|| "read".to_owned()),
        resources: vec![],
    };
    IDP.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.as_ref().is_none_or(|f| f.requests >= REQUESTS_PER_IDP) {
            let runtime = match cell.take() {
                Some(f) => f.runtime,
                None => tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("tokio runtime"),
            };
            let idp = runtime.block_on(build_idp());
            *cell = Some(IdpFixture {
                runtime,
                idp,
                requests: 0,
            });
        }
        let f = cell.as_mut().expect("fixture");
        f.requests += 1;
        let idp = &f.idp;
        let issued = f
            .runtime
            .block_on(idp.issue_token(&request, &Default::default()));
        match issued {
            Ok(token) => {
                let claims = idp
                    .verify_access_token(&token.access_token, Some(ISSUER))
                    .expect("an issued token does not verify");
                assert_eq!(claims.sub, AGENT_ID, "token for another subject");
                assert_eq!(claims.client_id, AGENT_ID, "token for another client");
                true
            }
            Err(sentryagent_core::Error::Unauthenticated) => false,
            Err(e) => panic!("a bad assertion gave something else than Unauthenticated: {e:?}"),
        }
    })
}

// ---------------------------------------------------------------------------
// subject_token: the token exchange's verifier and policy matcher
// ---------------------------------------------------------------------------

/// The issuer of the fuzzed subject tokens (GitHub Actions').
pub const SUBJECT_ISSUER: &str = "https://token.actions.githubusercontent.com";
/// The audience the matching trust policies ask for.
pub const SUBJECT_AUDIENCE: &str = "https://idp.example";
/// The fixed clock of `subject_token` (Unix seconds): the shared claim
/// vector's `iat` plus 30 s.
pub const SUBJECT_NOW: i64 = 1_763_700_030;
/// The kids of the issuer's keys: RSA 2048 (RS256), P-256 (ES256), Ed25519
/// (EdDSA).
pub const SUBJECT_KIDS: [&str; 3] = ["rsa1", "ec1", "ed1"];
/// Longest string compared by the independent glob model (quadratic).
const GLOB_MODEL_MAX: usize = 256;

struct SubjectFixture {
    issuer: sentryagent_core::conformance::kit::TestIssuer,
    keys: sentryagent_core::federation::IssuerKeySet,
    policies: Vec<sentryagent_core::federation::TrustPolicy>,
}

fn policy(
    n: u32,
    issuer: &str,
    audience: &str,
    conditions: &[(&str, &str)],
    max_age: u64,
) -> sentryagent_core::federation::TrustPolicy {
    let t = Timestamp::from_unix_secs(SUBJECT_NOW - 86_400);
    sentryagent_core::federation::TrustPolicy {
        id: sentryagent_core::TrustPolicyId::parse(&format!("tp_fuzz{n}")).expect("policy id"),
        tenant_id: TenantId::parse(TENANT_ID).expect("tenant id"),
        name: format!("policy {n}"),
        issuer: issuer.to_owned(),
        audience: audience.to_owned(),
        conditions: conditions
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        grant: sentryagent_core::federation::TrustGrant::AgentId(
            AgentId::parse(AGENT_ID).expect("agent id"),
        ),
        max_token_ttl_seconds: 900,
        max_subject_token_age_seconds: max_age,
        single_use: false,
        created_at: t,
        updated_at: t,
        revision: 1,
    }
}

fn subject_fixture() -> &'static SubjectFixture {
    static F: OnceLock<SubjectFixture> = OnceLock::new();
    F.get_or_init(|| {
        let issuer = sentryagent_core::conformance::kit::TestIssuer::new(SUBJECT_ISSUER)
            .with_rsa(SUBJECT_KIDS[0], 0)
            .with_secret(SUBJECT_KIDS[1], Algorithm::ES256, &[0x11; 32])
            .with_secret(SUBJECT_KIDS[2], Algorithm::EdDSA, &[0x22; 32]);
        let keys = issuer.key_set();
        let policies = vec![
            // The documented GitHub policy: one repository, one branch.
            policy(
                1,
                SUBJECT_ISSUER,
                SUBJECT_AUDIENCE,
                &[
                    ("repository_id", "74"),
                    ("repository_owner_id", "65"),
                    ("ref", "refs/heads/main"),
                ],
                600,
            ),
            // Globs on `sub`: overlaps with the first for the production
            // environment (several matching is refused).
            policy(
                2,
                SUBJECT_ISSUER,
                SUBJECT_AUDIENCE,
                &[
                    ("sub", "repo:octo-org/*:environment:prod*"),
                    ("environment", "prod"),
                ],
                600,
            ),
            // Another audience.
            policy(
                3,
                SUBJECT_ISSUER,
                "https://other.example",
                &[("repository_owner", "octo-org")],
                600,
            ),
            // JSON pointers, numbers and booleans as text, a short age.
            policy(
                4,
                SUBJECT_ISSUER,
                SUBJECT_AUDIENCE,
                &[
                    ("/job_workflow_ref", "*/.github/workflows/*@refs/tags/v*"),
                    ("/ci/0/run~1id", "4*2"),
                    ("/ci/1", "true"),
                ],
                60,
            ),
            // Another issuer: never matches a token of this one.
            policy(
                5,
                "https://gitlab.com",
                SUBJECT_AUDIENCE,
                &[("project_path", "*")],
                600,
            ),
        ];
        SubjectFixture {
            issuer,
            keys,
            policies,
        }
    })
}

/// An independent model of a condition's glob: `*` matches any run of
/// characters, everything else itself (dynamic programming over chars).
fn glob_model(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    // m[j]: the pattern's first i chars match the value's first j.
    let mut m = vec![false; v.len() + 1];
    m[0] = true;
    for &pc in &p {
        let mut next = vec![false; v.len() + 1];
        if pc == '*' {
            let mut any = false;
            for j in 0..=v.len() {
                any |= m[j];
                next[j] = any;
            }
        } else {
            for j in 1..=v.len() {
                next[j] = m[j - 1] && v[j - 1] == pc;
            }
        }
        m = next;
    }
    m[v.len()]
}

/// An independent model of RFC 6901: `~1` is `/`, `~0` is `~`, any other
/// `~` is an error, and an array index is `0` or digits without a leading
/// zero.
fn pointer_model<'a>(
    claims: &'a serde_json::Map<String, serde_json::Value>,
    pointer: &str,
) -> Option<&'a serde_json::Value> {
    fn unescape(t: &str) -> Option<String> {
        let mut out = String::new();
        let mut chars = t.chars();
        while let Some(c) = chars.next() {
            if c == '~' {
                match chars.next() {
                    Some('0') => out.push('~'),
                    Some('1') => out.push('/'),
                    _ => return None,
                }
            } else {
                out.push(c);
            }
        }
        Some(out)
    }
    let mut tokens = pointer.strip_prefix('/')?.split('/');
    let mut v = claims.get(unescape(tokens.next()?)?.as_str())?;
    for t in tokens {
        let t = unescape(t)?;
        v = match v {
            serde_json::Value::Object(m) => m.get(t.as_str())?,
            serde_json::Value::Array(a) => {
                let index_ok = t == "0"
                    || (!t.is_empty()
                        && !t.starts_with('0')
                        && t.bytes().all(|b| b.is_ascii_digit()));
                if !index_ok {
                    return None;
                }
                a.get(t.parse::<usize>().ok()?)?
            }
            _ => return None,
        };
    }
    Some(v)
}

/// An independent model of the claim text a condition compares.
fn claim_text_model(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// An independent model of a policy's conditions.
fn conditions_model(
    conditions: &std::collections::BTreeMap<String, String>,
    claims: &serde_json::Map<String, serde_json::Value>,
) -> bool {
    conditions.iter().all(|(name, pattern)| {
        let value = if name.starts_with('/') {
            pointer_model(claims, name)
        } else {
            claims.get(name)
        };
        value
            .and_then(claim_text_model)
            .is_some_and(|text| glob_model(pattern, &text))
    })
}

/// Checks `conditions_match` and `glob_match` against the models on
/// arbitrary conditions and claims.
fn check_conditions(
    conditions: &std::collections::BTreeMap<String, String>,
    claims: &serde_json::Map<String, serde_json::Value>,
) -> bool {
    use sentryagent_core::federation::{conditions_match, glob_match};
    for (name, pattern) in conditions {
        if pattern.len() > GLOB_MODEL_MAX {
            return false;
        }
        // Each pattern against every short string claim.
        for v in claims.values().filter_map(claim_text_model) {
            if v.len() <= GLOB_MODEL_MAX {
                assert_eq!(
                    glob_match(pattern, &v),
                    glob_model(pattern, &v),
                    "glob {pattern:?} on {v:?} (condition {name:?})"
                );
            }
        }
    }
    let got = conditions_match(conditions, claims);
    let values_short = conditions.keys().all(|name| {
        let v = if name.starts_with('/') {
            pointer_model(claims, name)
        } else {
            claims.get(name)
        };
        v.and_then(claim_text_model)
            .is_none_or(|t| t.len() <= GLOB_MODEL_MAX)
    });
    if values_short {
        assert_eq!(
            got,
            conditions_model(conditions, claims),
            "conditions {conditions:?} on {claims:?}"
        );
    }
    got
}

/// The time rules of a subject token, modelled independently (in i128):
/// the error it must get for its times, if any, in the verifier's order.
fn time_model(
    claims: &serde_json::Map<String, serde_json::Value>,
) -> Option<sentryagent_core::federation::SubjectError> {
    use sentryagent_core::federation::SubjectError;
    let now = i128::from(SUBJECT_NOW) * 1_000_000;
    let leeway = 60_000_000i128;
    let secs = |n: &str| claims.get(n).and_then(serde_json::Value::as_i64);
    let us = |s: i64| (i128::from(s) * 1_000_000).clamp(i128::from(i64::MIN), i128::from(i64::MAX));
    let exp = secs("exp")?;
    let iat = secs("iat")?;
    if now >= us(exp) + leeway {
        return Some(SubjectError::Expired);
    }
    if secs("nbf").is_some_and(|nbf| now + leeway < us(nbf)) {
        return Some(SubjectError::NotYetValid);
    }
    if us(iat) > now + leeway {
        return Some(SubjectError::IssuedInFuture);
    }
    None
}

/// Verifies `token` against the fixture's keys at the fixed clock, checks
/// what is accepted against the documented rules and the policy matching
/// against its model; returns `Some(matched)` when the token verified, and
/// whether its signature was bad (so the caller can sign it again).
fn check_subject(f: &SubjectFixture, token: &str) -> (Option<bool>, bool) {
    use sentryagent_core::federation::{Refusal, SubjectError, parse_subject_token, select_policy};
    let now = Timestamp::from_unix_secs(SUBJECT_NOW);
    let Ok(parsed) = parse_subject_token(token) else {
        return (None, false);
    };
    let kid = parsed.kid().map(str::to_owned);
    let alg = parsed.alg();
    let again = parsed.clone().verify(&f.keys, now);
    let result = parsed.verify(&f.keys, now);
    assert_eq!(result, again, "verification is not deterministic");
    // Claims as signed (the verifier refuses repeated members, so these are
    // the same when it accepts).
    let payload = token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|p| serde_json::from_slice::<serde_json::Value>(&p).ok());
    let subject = match result {
        Ok(s) => s,
        Err(SubjectError::BadSignature) => return (None, true),
        Err(
            e @ (SubjectError::Expired | SubjectError::NotYetValid | SubjectError::IssuedInFuture),
        ) => {
            let claims = payload
                .as_ref()
                .and_then(|p| p.as_object())
                .expect("claims");
            assert_eq!(time_model(claims), Some(e), "time refusal");
            return (None, false);
        }
        Err(_) => return (None, false),
    };
    // The key: the one named by kid, of the token's algorithm.
    let key_alg = |k: &sentryagent_core::federation::IssuerKey| k.key.alg();
    let named: Vec<_> = f
        .keys
        .keys()
        .iter()
        .filter(|k| kid.is_none() || k.kid == kid)
        .collect();
    assert!(
        named.iter().any(|k| key_alg(k) == alg),
        "verified without a key of its kid and algorithm"
    );
    assert_eq!(subject.alg, alg, "algorithm changed");
    let claims = payload
        .as_ref()
        .and_then(|p| p.as_object())
        .expect("verified claims are an object");
    assert_eq!(&subject.claims, claims, "claims differ from the payload");
    assert_eq!(time_model(claims), None, "time rules broken");
    assert!(
        !subject.iss.is_empty() && !subject.sub.is_empty(),
        "empty iss or sub"
    );
    assert_eq!(
        claims.get("iss").and_then(|v| v.as_str()),
        Some(subject.iss.as_str())
    );
    assert_eq!(
        claims.get("sub").and_then(|v| v.as_str()),
        Some(subject.sub.as_str())
    );
    assert_eq!(
        claims.get("exp").and_then(serde_json::Value::as_i64),
        Some(subject.exp)
    );
    assert_eq!(
        claims.get("iat").and_then(serde_json::Value::as_i64),
        Some(subject.iat)
    );
    match claims.get("aud") {
        Some(serde_json::Value::String(a)) => assert_eq!(subject.aud, std::slice::from_ref(a)),
        Some(serde_json::Value::Array(a)) => {
            let a: Vec<String> = a
                .iter()
                .map(|v| v.as_str().expect("aud").to_owned())
                .collect();
            assert_eq!(subject.aud, a);
        }
        other => panic!("verified with aud {other:?}"),
    }
    // Policy matching against the model.
    let age = (i128::from(SUBJECT_NOW) - i128::from(subject.iat)).max(0);
    let model: Vec<&sentryagent_core::federation::TrustPolicy> = f
        .policies
        .iter()
        .filter(|p| {
            p.issuer == subject.iss
                && subject.aud.contains(&p.audience)
                && age <= i128::from(p.max_subject_token_age_seconds)
                && check_conditions(&p.conditions, &subject.claims)
        })
        .collect();
    let selected = select_policy(&f.policies, &subject, now);
    match (&selected, model.as_slice()) {
        (Ok(p), [one]) => assert_eq!(p.id, one.id, "another policy selected"),
        (Err(Refusal::Ambiguous(ids)), many) if many.len() > 1 => {
            let want: Vec<_> = many.iter().map(|p| p.id.clone()).collect();
            assert_eq!(ids, &want, "ambiguous policies");
        }
        (Err(r), []) => assert!(
            !matches!(r, Refusal::Ambiguous(_)),
            "ambiguous without matches"
        ),
        (got, want) => panic!(
            "select_policy gave {got:?}, the model {:?}",
            want.iter().map(|p| &p.id).collect::<Vec<_>>()
        ),
    }
    (Some(selected.is_ok()), false)
}

/// `subject_token`: the token exchange's subject-token verifier
/// (`parse_subject_token`, `UnverifiedSubject::verify`) and policy matcher
/// (`select_policy`, `conditions_match`, `glob_match`) against a fixed JWKS
/// (RSA, P-256 and Ed25519 keys), five fixed policies and a fixed clock.
///
/// The low two bits of the first byte are the mode; the rest is:
/// - 0: the subject token as text. When it parses, names a key and its
///   signature is wrong (as nearly every mutation makes it), its signing
///   input is signed again with that key and checked once more;
/// - 1: the claims (raw bytes, JSON or not), signed by the key that bits
///   2-3 pick (`rsa1`, `ec1`, `ed1`, or `rsa1` without `kid` in the header)
///   under its own algorithm;
/// - 2: a header, a newline, then the claims: both raw, signed as in mode 1;
/// - 3: a JSON object `{"conditions": {...}, "claims": {...}}`: the
///   conditions matched against the claims, compared with the model.
///
/// Returns whether a token verified and exactly one policy matched (in mode
/// 3, whether the conditions held).
pub fn subject_token(data: &[u8]) -> bool {
    let f = subject_fixture();
    let Some((&mode, rest)) = data.split_first() else {
        return false;
    };
    let enc = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let signed = |kid_index: u8, header: Option<&[u8]>, claims: &[u8]| {
        let i = usize::from(kid_index & 3);
        let kid = SUBJECT_KIDS[i % 3];
        let header = match header {
            Some(h) => h.to_vec(),
            None => {
                let alg = ["RS256", "ES256", "EdDSA", "RS256"][i];
                let h = if i == 3 {
                    serde_json::json!({"alg": alg, "typ": "JWT"})
                } else {
                    serde_json::json!({"alg": alg, "typ": "JWT", "kid": kid})
                };
                serde_json::to_vec(&h).expect("header")
            }
        };
        let input = format!("{}.{}", enc(&header), enc(claims));
        let sig = f.issuer.sign_raw(kid, input.as_bytes());
        format!("{input}.{}", enc(&sig))
    };
    match mode & 3 {
        0 => {
            let token = text(rest);
            let (matched, bad_signature) = check_subject(f, &token);
            if bad_signature {
                let parsed = sentryagent_core::federation::parse_subject_token(&token)
                    .expect("a bad signature of a token that does not parse");
                // The key the verifier tried: the one named by kid, or
                // (without kid) every key of the token's algorithm.
                let key = f.keys.keys().iter().find(|k| match parsed.kid() {
                    Some(kid) => k.kid.as_deref() == Some(kid),
                    None => k.key.alg() == parsed.alg(),
                });
                let key = key.expect("a bad signature without a key to check it");
                assert_eq!(
                    key.key.alg(),
                    parsed.alg(),
                    "checked with a key of another type"
                );
                let kid = key.kid.as_deref().expect("the fixture's keys have kids");
                let input = token.rsplit_once('.').expect("three segments").0;
                let sig = f.issuer.sign_raw(kid, input.as_bytes());
                let resigned = format!("{input}.{}", enc(&sig));
                let (_, still_bad) = check_subject(f, &resigned);
                assert!(!still_bad, "a token signed by its key does not verify");
            }
            matched == Some(true)
        }
        1 => check_subject(f, &signed(mode >> 2, None, rest)).0 == Some(true),
        2 => {
            let (header, claims) = match rest.iter().position(|b| *b == b'\n') {
                Some(at) => (&rest[..at], &rest[at + 1..]),
                None => (rest, &[][..]),
            };
            check_subject(f, &signed(mode >> 2, Some(header), claims)).0 == Some(true)
        }
        _ => {
            let Ok(serde_json::Value::Object(mut case)) = serde_json::from_slice(rest) else {
                return false;
            };
            let (
                Some(serde_json::Value::Object(conditions)),
                Some(serde_json::Value::Object(claims)),
            ) = (case.remove("conditions"), case.remove("claims"))
            else {
                return false;
            };
            let Some(conditions) = conditions
                .into_iter()
                .map(|(k, v)| Some((k, v.as_str()?.to_owned())))
                .collect::<Option<std::collections::BTreeMap<String, String>>>()
            else {
                return false;
            };
            check_conditions(&conditions, &claims)
        }
    }
}

//! Fuzz harnesses of `sentryagent-core`: `jws_verify`, `did_parse` and
//! `client_assertion`.
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
//! core's tests compile them.

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

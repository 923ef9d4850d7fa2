//! The test kit: fixtures every crate's tests, the benches and the fuzz
//! targets share, so they do not drift apart.
//!
//! - [`EPOCH`]: the fixed instant test clocks start at.
//! - [`services_required`] and [`skip_or_fail`]: the rule for tests that
//!   need a live Postgres, Redis or browser (skip with a printed line, or
//!   fail when `SENTRYAGENT_REQUIRE_SERVICES=1`).
//! - [`secret_request`], [`agent_key`], [`client_assertion`],
//!   [`assertion_request`]: token requests of a registered agent.
//! - [`totp_code`]: what an authenticator app shows for a second factor.
//! - [`Rng`]: a small deterministic generator for reproducible cases.
//! - [`TestIssuer`]: another identity provider's keys (RSA, P-256, Ed25519)
//!   that signs subject tokens for token exchange, its JWKS, and the claim
//!   shapes of GitHub Actions ([`github_claims`]), GitLab CI
//!   ([`gitlab_claims`]) and Kubernetes ([`kubernetes_claims`]) tokens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::jose::{Algorithm, SigningKey};
use crate::token::JWT_BEARER_ASSERTION_TYPE;
use crate::{ClientCredentials, RegisteredAgent, Timestamp, TokenRequest};

/// The instant test clocks start at (2025-11-21T04:40:00Z).
pub const EPOCH: Timestamp = Timestamp::from_unix_secs(1_763_700_000);

/// The variable that makes tests needing live services fail instead of
/// skipping when a service is absent (CI sets it to `1`).
pub const REQUIRE_SERVICES: &str = "SENTRYAGENT_REQUIRE_SERVICES";

/// Whether `SENTRYAGENT_REQUIRE_SERVICES=1`.
pub fn services_required() -> bool {
    std::env::var(REQUIRE_SERVICES).is_ok_and(|v| v == "1")
}

/// A test that needs `service` at `url` found it unreachable: prints
/// `SKIPPED <test>: <service> unreachable at <url>` to stderr, or panics
/// when [`services_required`]. The caller returns right after.
pub fn skip_or_fail(test: &str, service: &str, url: &str, why: &str) {
    if services_required() {
        panic!("{test}: {service} unreachable at {url} ({REQUIRE_SERVICES}=1): {why}");
    }
    eprintln!("SKIPPED {test}: {service} unreachable at {url}");
}

/// A `client_credentials` request authenticated with the agent's client
/// secret (`client_secret_basic` or `_post`, the core does not tell).
pub fn secret_request(agent: &RegisteredAgent, scope: Option<&str>) -> TokenRequest {
    TokenRequest {
        grant_type: "client_credentials".into(),
        client: ClientCredentials::Secret {
            client_id: agent.agent.id.to_string(),
            client_secret: agent
                .client_secret
                .clone()
                .unwrap_or_else(|| panic!("agent {} has no client secret", agent.agent.id)),
        },
        scope: scope.map(str::to_owned),
        resources: vec![],
    }
}

/// The agent's generated private key, as the agent holds it (its DID as
/// `kid`). Panics for an agent that brought its own key.
pub fn agent_key(agent: &RegisteredAgent) -> SigningKey {
    let jwk = agent
        .private_jwk
        .as_ref()
        .unwrap_or_else(|| panic!("agent {} brought its own key", agent.agent.id));
    let d = URL_SAFE_NO_PAD
        .decode(&jwk.d)
        .unwrap_or_else(|e| panic!("private JWK `d`: {e}"));
    SigningKey::from_secret_bytes(Algorithm::EdDSA, jwk.kid.clone(), &d)
        .unwrap_or_else(|e| panic!("agent key: {e}"))
}

/// A client assertion (RFC 7523) signed with `key`: `iss` and `sub` are
/// `client_id`, valid from `now` for `lifetime_secs`.
pub fn client_assertion(
    key: &SigningKey,
    client_id: &str,
    aud: &str,
    now: Timestamp,
    lifetime_secs: i64,
    jti: &str,
) -> String {
    let claims = serde_json::json!({
        "iss": client_id, "sub": client_id, "aud": aud, "jti": jti,
        "iat": now.unix_secs(), "exp": now.unix_secs() + lifetime_secs,
    });
    let payload = serde_json::to_vec(&claims).unwrap_or_else(|e| panic!("claims: {e}"));
    key.sign_compact(None, &payload)
        .unwrap_or_else(|e| panic!("sign: {e}"))
}

/// A `client_credentials` request authenticated by `private_key_jwt`.
pub fn assertion_request(agent: &RegisteredAgent, assertion: String) -> TokenRequest {
    TokenRequest {
        grant_type: "client_credentials".into(),
        client: ClientCredentials::Assertion {
            client_id: Some(agent.agent.id.to_string()),
            assertion_type: JWT_BEARER_ASSERTION_TYPE.into(),
            assertion,
        },
        scope: None,
        resources: vec![],
    }
}

/// The TOTP code (RFC 6238, SHA-1, 6 digits, 30 s) at `at` of a second
/// factor's base32 secret, as an authenticator app shows it. Panics on a
/// secret that is not base32 of 20 bytes.
pub fn totp_code(secret_base32: &str, at: Timestamp) -> String {
    crate::people::Seed::from_base32(secret_base32)
        .unwrap_or_else(|| panic!("not a TOTP secret: {secret_base32}"))
        .code_at(at)
        .unwrap_or_else(|e| panic!("TOTP: {e}"))
}

/// xorshift64*: a small deterministic generator, so that generated test
/// cases reproduce from their seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is replaced by a fixed odd constant).
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// One of `items` (which must not be empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let n = u64::try_from(items.len()).unwrap_or(u64::MAX);
        &items[usize::try_from(self.below(n)).unwrap_or(0)]
    }
}

// ---------------------------------------------------------------------------
// Federation: a test issuer of subject tokens
// ---------------------------------------------------------------------------

/// Fixed RSA test keys (PKCS#8 DER, 2048 bits), made once with `openssl
/// genpkey`: `ring` signs RS256 but does not generate RSA keys.
const RSA_TEST_KEYS: [&[u8]; 3] = [
    include_bytes!("../../tests/data/rsa-2048-test-1.pk8"),
    include_bytes!("../../tests/data/rsa-2048-test-2.pk8"),
    include_bytes!("../../tests/data/rsa-2048-test-3.pk8"),
];

/// The claim shape of a GitHub Actions ID token (`claims` of the test
/// vector), as GitHub documents it.
const GITHUB_CLAIMS_VECTOR: &str = include_str!("../../tests/data/github-actions-oidc-claims.json");

/// A signing key of a [`TestIssuer`].
enum TestKey {
    Rsa(Box<ring::rsa::KeyPair>),
    Jose(Box<SigningKey>),
}

impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TestKey::Rsa(_) => f.write_str("Rsa"),
            TestKey::Jose(k) => k.fmt(f),
        }
    }
}

/// Another identity provider, for tests of token exchange: an issuer URL
/// and signing keys by `kid`, which sign subject tokens and publish a JWKS.
#[derive(Debug)]
pub struct TestIssuer {
    /// The issuer (`iss`).
    pub issuer: String,
    keys: Vec<(String, TestKey)>,
}

impl TestIssuer {
    /// An issuer with no key yet.
    pub fn new(issuer: impl Into<String>) -> Self {
        TestIssuer {
            issuer: issuer.into(),
            keys: Vec::new(),
        }
    }

    /// Adds RSA test key `n` (0, 1 or 2: fixed keys) as `kid`.
    pub fn with_rsa(mut self, kid: &str, n: usize) -> Self {
        let key = ring::rsa::KeyPair::from_pkcs8(RSA_TEST_KEYS[n % RSA_TEST_KEYS.len()])
            .unwrap_or_else(|e| panic!("RSA test key {n}: {e}"));
        self.keys
            .push((kid.to_owned(), TestKey::Rsa(Box::new(key))));
        self
    }

    /// Adds a fresh P-256 (`ES256`) or Ed25519 (`EdDSA`) key as `kid`.
    pub fn with_key(mut self, kid: &str, alg: Algorithm) -> Self {
        let key = SigningKey::generate(alg, kid).unwrap_or_else(|e| panic!("test key: {e}"));
        self.keys
            .push((kid.to_owned(), TestKey::Jose(Box::new(key))));
        self
    }

    /// Adds a fixed P-256 (`ES256`) or Ed25519 (`EdDSA`) key as `kid`, from
    /// its 32 secret bytes (see [`SigningKey::from_secret_bytes`]): for
    /// tests and fuzz inputs whose signatures must verify on every run.
    pub fn with_secret(mut self, kid: &str, alg: Algorithm, secret: &[u8; 32]) -> Self {
        let key = SigningKey::from_secret_bytes(alg, kid, secret)
            .unwrap_or_else(|e| panic!("test key: {e}"));
        self.keys
            .push((kid.to_owned(), TestKey::Jose(Box::new(key))));
        self
    }

    /// Drops key `kid` (a rotation: sign with the others, publish the rest).
    pub fn without(mut self, kid: &str) -> Self {
        self.keys.retain(|(k, _)| k != kid);
        self
    }

    /// The public JWKS document (each key with `kid`, `alg` and `use`).
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .keys
            .iter()
            .map(|(kid, key)| match key {
                TestKey::Rsa(k) => {
                    let c = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(k.public());
                    serde_json::json!({
                        "kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
                        "n": URL_SAFE_NO_PAD.encode(&c.n), "e": URL_SAFE_NO_PAD.encode(&c.e),
                    })
                }
                TestKey::Jose(k) => {
                    let mut jwk = k.verifying_key().to_jwk();
                    jwk.kid = Some(kid.clone());
                    serde_json::to_value(jwk).unwrap_or_else(|e| panic!("JWK: {e}"))
                }
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// The JWKS as read by the verifier.
    pub fn key_set(&self) -> crate::federation::IssuerKeySet {
        let json = serde_json::to_vec(&self.jwks()).unwrap_or_else(|e| panic!("JWKS: {e}"));
        crate::federation::IssuerKeySet::from_jwks(&json).unwrap_or_else(|e| panic!("JWKS: {e}"))
    }

    /// Signs `claims` with key `kid` under its own algorithm, header
    /// `{"alg", "typ": "JWT", "kid"}`.
    pub fn sign(&self, kid: &str, claims: &serde_json::Value) -> String {
        let alg = match self.key(kid) {
            TestKey::Rsa(_) => "RS256",
            TestKey::Jose(k) => k.alg().as_str(),
        };
        self.sign_with_header(
            kid,
            &serde_json::json!({"alg": alg, "typ": "JWT", "kid": kid}),
            claims,
        )
    }

    /// Signs `claims` with key `kid` under any `header` (to forge tokens
    /// the verifier must refuse: another `alg`, no `kid`, ...). An RSA key
    /// signs RS256 and the others their own algorithm, whatever the header
    /// says.
    pub fn sign_with_header(
        &self,
        kid: &str,
        header: &serde_json::Value,
        claims: &serde_json::Value,
    ) -> String {
        let enc = |v: &serde_json::Value| {
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap_or_else(|e| panic!("json: {e}")))
        };
        let input = format!("{}.{}", enc(header), enc(claims));
        let sig = self.sign_raw(kid, input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// The signature of key `kid` over any `message` (a JWS signing input,
    /// however malformed): RS256 for an RSA key, the key's own algorithm
    /// otherwise.
    pub fn sign_raw(&self, kid: &str, message: &[u8]) -> Vec<u8> {
        match self.key(kid) {
            TestKey::Rsa(k) => {
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(
                    &ring::signature::RSA_PKCS1_SHA256,
                    &ring::rand::SystemRandom::new(),
                    message,
                    &mut sig,
                )
                .unwrap_or_else(|e| panic!("RSA sign: {e}"));
                sig
            }
            TestKey::Jose(k) => k
                .sign_raw(message)
                .unwrap_or_else(|e| panic!("sign: {e}"))
                .to_vec(),
        }
    }

    fn key(&self, kid: &str) -> &TestKey {
        self.keys
            .iter()
            .find(|(k, _)| k == kid)
            .map(|(_, k)| k)
            .unwrap_or_else(|| panic!("test issuer has no key {kid}"))
    }
}

/// A GitHub Actions ID token's claims (the shape of the test vector),
/// issued by `issuer` for `aud` at `now`, valid 5 minutes.
pub fn github_claims(issuer: &str, aud: &str, now: Timestamp) -> serde_json::Value {
    let vector: serde_json::Value =
        serde_json::from_str(GITHUB_CLAIMS_VECTOR).unwrap_or_else(|e| panic!("vector: {e}"));
    let mut claims = vector["claims"].clone();
    let t = now.unix_secs();
    claims["iss"] = issuer.into();
    claims["aud"] = aud.into();
    claims["iat"] = t.into();
    claims["nbf"] = (t - 300).into();
    claims["exp"] = (t + 300).into();
    claims["jti"] = format!("jti-{}", uuid::Uuid::new_v4().simple()).into();
    claims
}

/// A GitLab CI ID token's claims (`id_tokens:` in `.gitlab-ci.yml`) for
/// project `group/project` (id 42), issued by `issuer` for `aud` at `now`.
pub fn gitlab_claims(issuer: &str, aud: &str, now: Timestamp) -> serde_json::Value {
    let t = now.unix_secs();
    serde_json::json!({
        "iss": issuer, "aud": aud, "iat": t, "nbf": t - 5, "exp": t + 300,
        "jti": format!("jti-{}", uuid::Uuid::new_v4().simple()),
        "sub": "project_path:group/project:ref_type:branch:ref:main",
        "namespace_id": "7", "namespace_path": "group",
        "project_id": "42", "project_path": "group/project",
        "user_id": "3", "user_login": "alice", "user_email": "alice@example.com",
        "pipeline_id": "1001", "pipeline_source": "push",
        "job_id": "2002", "ref": "main", "ref_type": "branch", "ref_path": "refs/heads/main",
        "ref_protected": "true", "environment": "production", "environment_protected": "true",
        "runner_id": 9, "runner_environment": "gitlab-hosted",
        "ci_config_ref_uri": "gitlab.com/group/project//.gitlab-ci.yml@refs/heads/main",
        "ci_config_sha": "0123456789abcdef"
    })
}

/// A Kubernetes projected service-account token's claims for service
/// account `ci/deployer`, issued by `issuer` for `aud` at `now`.
pub fn kubernetes_claims(issuer: &str, aud: &str, now: Timestamp) -> serde_json::Value {
    let t = now.unix_secs();
    serde_json::json!({
        "aud": [aud], "exp": t + 3600, "iat": t, "nbf": t, "iss": issuer,
        "jti": format!("{}", uuid::Uuid::new_v4()),
        "kubernetes.io": {
            "namespace": "ci",
            "node": {"name": "node-1", "uid": "5b2c3a1e-0000-4000-8000-000000000001"},
            "pod": {"name": "deployer-7d9f", "uid": "5b2c3a1e-0000-4000-8000-000000000002"},
            "serviceaccount": {"name": "deployer", "uid": "5b2c3a1e-0000-4000-8000-000000000003"}
        },
        "sub": "system:serviceaccount:ci:deployer"
    })
}

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
            client_secret: agent.client_secret.clone(),
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

//! Token issuance and verification against the physical limit: one Ed25519
//! signature or verification (ed25519-dalek alone) over the same bytes.
//!
//! `cargo bench --bench token`; ids under the group `token` (see
//! docs/benchmarks.md for figures and ratios).
//!
//! `token/exchange_warm_jwks_rs256` and `token/exchange_warm_jwks_es256` are
//! token exchanges (RFC 8693) of a GitHub-shaped subject token signed by a
//! fake OIDC issuer on loopback (RS256 with a 2048-bit RSA key, ES256), whose
//! JWKS the HTTP adapter's `JwksFetcher` has already fetched: discovery and
//! the JWKS are read once before the measurement, then every exchange takes
//! the keys from the fetcher's cache and verifies the subject token for
//! real, matches the trust policy and signs the agent's token.
//! `token/rsa_verify_raw` and `token/es256_verify_raw` are ring's
//! verification of those subject tokens alone (the floor of the foreign
//! signature), and `token/subject_verify_rs256` the subject-token verifier
//! on the RS256 one (parse, key, signature, claims).
//!
//! Async calls are driven by criterion's `to_async` on a current-thread Tokio
//! runtime (one `block_on` per sample, as a server polls them inside its
//! runtime). The `Idp` is the in-memory one on the system clock, with an enterprise
//! tenant. Its requests-per-minute limit is raised to `u32::MAX` so that the
//! run is never refused; the limiter still runs on every request.

use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ed25519_dalek::Signer as _;
use sentryagent::JWT_BEARER_ASSERTION_TYPE;
use sentryagent::federation::{
    ExchangeRequest, ExchangeTarget, ID_TOKEN_TYPE, NewTrustPolicy, TrustGrant, parse_subject_token,
};
use sentryagent::http::{JwksFetcher, JwksFetcherConfig};
use sentryagent::jose::Algorithm;
use sentryagent::{
    Caller, ClientCredentials, Idp, NewAgent, NewTenant, RegisteredAgent, RequestMeta, SystemClock,
    Tier, TokenRequest,
};
use sentryagent_core::conformance::kit::{TestIssuer, agent_key, github_claims, secret_request};
use support::{ThreadCpuTime, cpu_time_criterion};
use tokio::runtime::Runtime;

mod support;

const ISSUER: &str = "https://idp.example";

struct Setup {
    rt: Runtime,
    idp: Idp,
    agent: RegisteredAgent,
    /// The fake OIDC issuer on loopback (`http://127.0.0.1:<port>`).
    subject_issuer: TestIssuer,
}

fn setup() -> Setup {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // The fake OIDC issuer: discovery and JWKS on a loopback port, served
    // by a task of `rt` (it runs while the runtime is driven).
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let issuer_url = format!("http://{}", listener.local_addr().expect("addr"));
    let subject_issuer = TestIssuer::new(issuer_url.clone())
        .with_rsa("rsa1", 0)
        .with_key("ec1", Algorithm::ES256);
    let discovery = serde_json::json!({
        "issuer": issuer_url,
        "jwks_uri": format!("{issuer_url}/jwks"),
    });
    let jwks = subject_issuer.jwks();
    let app = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            axum::routing::get(move || async move { axum::Json(discovery) }),
        )
        .route(
            "/jwks",
            axum::routing::get(move || async move {
                ([("cache-control", "max-age=86400")], axum::Json(jwks))
            }),
        );
    rt.spawn(async move { axum::serve(listener, app).await });
    let fetcher = JwksFetcher::new(
        JwksFetcherConfig::default().allow_http_loopback(true),
        std::sync::Arc::new(SystemClock),
    )
    .expect("fetcher");
    let (idp, agent) = rt.block_on(async {
        let idp = Idp::builder(ISSUER)
            .configure(|c| c.tiers.enterprise.requests_per_minute = u32::MAX)
            .issuer_keys(std::sync::Arc::new(fetcher))
            .build()
            .await
            .expect("idp");
        let op = Caller::system();
        let tenant = idp
            .create_tenant(
                &op,
                NewTenant {
                    name: "Acme".into(),
                    tier: Some(Tier::Enterprise),
                    ..Default::default()
                },
            )
            .await
            .expect("tenant");
        let agent = idp
            .register_agent(
                &op,
                &tenant.id,
                NewAgent {
                    name: "billing-bot".into(),
                    allowed_scopes: vec!["invoices:read".into(), "invoices:write".into()],
                    ..Default::default()
                },
            )
            .await
            .expect("agent");
        idp.create_trust_policy(
            &op,
            &tenant.id,
            NewTrustPolicy {
                name: "deploy from main".into(),
                issuer: issuer_url.clone(),
                audience: ISSUER.into(),
                conditions: [
                    ("repository_id".to_owned(), "74".to_owned()),
                    ("ref".to_owned(), "refs/heads/*".to_owned()),
                ]
                .into(),
                grant: TrustGrant::AgentId(agent.agent.id.clone()),
                max_token_ttl_seconds: None,
                max_subject_token_age_seconds: Some(3600),
                single_use: false,
            },
        )
        .await
        .expect("trust policy");
        (idp, agent)
    });
    Setup {
        rt,
        idp,
        agent,
        subject_issuer,
    }
}

fn bench(c: &mut Criterion<ThreadCpuTime>) {
    let s = setup();
    let meta = RequestMeta::default();
    let req = secret_request(&s.agent, Some("invoices:read"));
    let token =
        s.rt.block_on(s.idp.issue_token(&req, &meta))
            .expect("issue")
            .access_token;
    // The physical limit works on the same bytes an issued token signs.
    let (signing_input, _) = token.rsplit_once('.').expect("compact JWS");
    let signing_input = signing_input.as_bytes().to_vec();
    let raw_key = ed25519_dalek::SigningKey::from_bytes(&[0x42; 32]);
    let raw_public = raw_key.verifying_key();
    let raw_signature = raw_key.sign(&signing_input);
    eprintln!(
        "token: signing input {} bytes, access token {} bytes",
        signing_input.len(),
        token.len()
    );

    let mut g = c.benchmark_group("token");
    g.bench_function("ed25519_sign_raw", |b| {
        b.iter(|| raw_key.sign(std::hint::black_box(&signing_input)))
    });
    g.bench_function("ed25519_verify_raw", |b| {
        b.iter(|| {
            // `verify_strict`, as the core verifies.
            raw_public
                .verify_strict(std::hint::black_box(&signing_input), &raw_signature)
                .expect("verifies")
        })
    });
    g.bench_function("issue", |b| {
        b.to_async(&s.rt).iter(|| async {
            s.idp
                .issue_token(std::hint::black_box(&req), &meta)
                .await
                .expect("issue")
        })
    });
    g.bench_function("verify", |b| {
        b.iter(|| {
            s.idp
                .verify_access_token(std::hint::black_box(&token), Some(ISSUER))
                .expect("verify")
        })
    });

    // private_key_jwt: each request needs an assertion with a fresh `jti`
    // (a replay is refused). The agent signs it outside the measurement
    // (`iter_batched`); the measured part is the IdP's work: parse, load the
    // agent, verify the assertion's signature and claims, record the `jti`,
    // then issue as above.
    let key = agent_key(&s.agent);
    let sub = s.agent.agent.id.to_string();
    let aud = s.idp.config().token_endpoint.clone();
    let jti = AtomicU64::new(0);
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs()
    };
    let make_request = || {
        let n = jti.fetch_add(1, Ordering::Relaxed);
        let iat = now();
        let claims = serde_json::json!({
            "iss": sub, "sub": sub, "aud": aud, "jti": format!("bench-{n}"),
            "iat": iat, "exp": iat + 120,
        });
        let assertion = key
            .sign_compact(None, &serde_json::to_vec(&claims).expect("claims"))
            .expect("sign");
        TokenRequest {
            grant_type: "client_credentials".into(),
            client: ClientCredentials::Assertion {
                client_id: Some(sub.clone()),
                assertion_type: JWT_BEARER_ASSERTION_TYPE.into(),
                assertion,
            },
            scope: Some("invoices:read".into()),
            resources: vec![],
        }
    };
    g.bench_function("issue_private_key_jwt", |b| {
        b.to_async(&s.rt).iter_batched(
            make_request,
            |r| {
                let (idp, meta) = (&s.idp, &meta);
                async move { idp.issue_token(&r, meta).await.expect("issue") }
            },
            BatchSize::SmallInput,
        )
    });

    // Token exchange with a warm JWKS cache: one subject token per
    // algorithm, valid for the whole run (the policy is not single-use), so
    // the measured part is the IdP's work on each request: load the agent
    // and its tenant, the rate limit, the tenant's policies, parse the
    // subject token, the issuer's keys from the fetcher's cache, the
    // signature and claims, the policy's conditions, sign the agent's token
    // with `act`, count and audit it.
    let mut claims = github_claims(
        &s.subject_issuer.issuer,
        ISSUER,
        sentryagent::Timestamp::from_unix_secs(i64::try_from(now()).expect("time")),
    );
    claims["exp"] = (now() + 3000).into();
    let subject_tokens = [
        s.subject_issuer.sign("rsa1", &claims),
        s.subject_issuer.sign("ec1", &claims),
    ];

    // The floors of an exchange's foreign signature: ring's RS256 and ES256
    // verification alone, over the subject tokens' own signing inputs with
    // the issuer's keys (what the verifier hands ring), and the verifier
    // itself on the RS256 token (parse, key lookup, signature, claims).
    let jwks = s.subject_issuer.jwks();
    let b64 = |v: &serde_json::Value| {
        URL_SAFE_NO_PAD
            .decode(v.as_str().expect("JWK member"))
            .expect("base64url")
    };
    let (rsa_jwk, ec_jwk) = (&jwks["keys"][0], &jwks["keys"][1]);
    let (rsa_n, rsa_e) = (b64(&rsa_jwk["n"]), b64(&rsa_jwk["e"]));
    let mut ec_point = vec![4u8];
    ec_point.extend(b64(&ec_jwk["x"]));
    ec_point.extend(b64(&ec_jwk["y"]));
    let split = |t: &str| {
        let (input, sig) = t.rsplit_once('.').expect("compact JWS");
        (
            input.as_bytes().to_vec(),
            URL_SAFE_NO_PAD.decode(sig).expect("sig"),
        )
    };
    let (rsa_input, rsa_sig) = split(&subject_tokens[0]);
    let (ec_input, ec_sig) = split(&subject_tokens[1]);
    g.bench_function("rsa_verify_raw", |b| {
        b.iter(|| {
            ring::signature::RsaPublicKeyComponents {
                n: &rsa_n,
                e: &rsa_e,
            }
            .verify(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                std::hint::black_box(&rsa_input),
                &rsa_sig,
            )
            .expect("verifies")
        })
    });
    g.bench_function("es256_verify_raw", |b| {
        b.iter(|| {
            ring::signature::UnparsedPublicKey::new(
                &ring::signature::ECDSA_P256_SHA256_FIXED,
                &ec_point,
            )
            .verify(std::hint::black_box(&ec_input), &ec_sig)
            .expect("verifies")
        })
    });
    let key_set = s.subject_issuer.key_set();
    let verify_at = sentryagent::Timestamp::from_unix_secs(i64::try_from(now()).expect("time"));
    g.bench_function("subject_verify_rs256", |b| {
        b.iter(|| {
            parse_subject_token(std::hint::black_box(&subject_tokens[0]))
                .expect("parses")
                .verify(&key_set, verify_at)
                .expect("verifies")
        })
    });

    for (id, subject_token) in [
        ("exchange_warm_jwks_rs256", &subject_tokens[0]),
        ("exchange_warm_jwks_es256", &subject_tokens[1]),
    ] {
        let exchange = ExchangeRequest {
            subject_token: subject_token.clone(),
            subject_token_type: ID_TOKEN_TYPE.into(),
            target: ExchangeTarget::Agent(s.agent.agent.id.to_string()),
            scope: Some("invoices:read".into()),
            resources: vec![],
        };
        // The first exchange fetches discovery and the JWKS (cold); the
        // measured ones find the keys in the cache.
        s.rt.block_on(s.idp.exchange_token(&exchange, &meta))
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        g.bench_function(id, |b| {
            b.to_async(&s.rt).iter(|| async {
                s.idp
                    .exchange_token(std::hint::black_box(&exchange), &meta)
                    .await
                    .expect("exchange")
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = cpu_time_criterion();
    targets = bench
}
criterion_main!(benches);

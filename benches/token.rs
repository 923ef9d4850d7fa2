//! Token issuance and verification against the physical limit: one Ed25519
//! signature or verification (ed25519-dalek alone) over the same bytes.
//!
//! `cargo bench --bench token`; ids under the group `token` (see
//! docs/benchmarks.md for figures and ratios).
//!
//! Async calls are driven by criterion's `to_async` on a current-thread Tokio
//! runtime (one `block_on` per sample, as a server polls them inside its
//! runtime). The `Idp` is the in-memory one on the system clock, with an enterprise
//! tenant. Its requests-per-minute limit is raised to `u32::MAX` so that the
//! run is never refused; the limiter still runs on every request.

use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ed25519_dalek::Signer as _;
use sentryagent::JWT_BEARER_ASSERTION_TYPE;
use sentryagent::{
    Caller, ClientCredentials, Idp, NewAgent, NewTenant, RegisteredAgent, RequestMeta, Tier,
    TokenRequest,
};
use sentryagent_core::conformance::kit::{agent_key, secret_request};
use support::{ThreadCpuTime, cpu_time_criterion};
use tokio::runtime::Runtime;

mod support;

const ISSUER: &str = "https://idp.example";

struct Setup {
    rt: Runtime,
    idp: Idp,
    agent: RegisteredAgent,
}

fn setup() -> Setup {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let (idp, agent) = rt.block_on(async {
        let idp = Idp::builder(ISSUER)
            .configure(|c| c.tiers.enterprise.requests_per_minute = u32::MAX)
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
        (idp, agent)
    });
    Setup { rt, idp, agent }
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
    g.finish();
}

criterion_group! {
    name = benches;
    config = cpu_time_criterion();
    targets = bench
}
criterion_main!(benches);

//! Two `Idp` nodes on one Postgres (store) and one Redis (rate limiter and
//! usage meter), each opened by URL exactly as two processes would: what one
//! node writes the other sees at once, and together they admit no more than
//! one tenant rate limit.
#![cfg(all(feature = "postgres", feature = "redis"))]

use sentryagent_storage::testing as services;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sentryagent_core::{Bucket, UsageKind};
use sentryagent_core::{
    Caller, ClientCredentials, Error, Idp, LifecycleState, NewAgent, NewTenant, SystemClock,
    TierLimits, TierTable, TokenRequest,
};
use sentryagent_storage::{BackendUrls, open};

const ISSUER: &str = "https://idp.example";
/// The tenant's tier: 200 requests per minute, burst 200.
const RPM: u32 = 200;

fn tiers() -> TierTable {
    let limits = TierLimits {
        max_agents: Some(10),
        api_calls_per_day: None,
        token_issuances_per_month: None,
        requests_per_minute: RPM,
        client_requests_per_minute: None,
    };
    TierTable {
        free: limits,
        ..TierTable::default()
    }
}

async fn node(urls: &BackendUrls) -> Idp {
    let backends = open(urls, Arc::new(SystemClock)).await.unwrap();
    backends
        .apply(Idp::builder(ISSUER))
        .configure(|c| c.tiers = tiers())
        .build()
        .await
        .unwrap()
}

fn token_request(id: &str, secret: &str) -> TokenRequest {
    TokenRequest {
        grant_type: "client_credentials".into(),
        client: ClientCredentials::Secret {
            client_id: id.to_owned(),
            client_secret: secret.to_owned(),
        },
        scope: None,
        resources: vec![],
    }
}

/// Tasks on both nodes issue tokens for one tenant as fast as they can.
///
/// GCRA's bound: the requests admitted at instants within any closed window
/// of length `W` number at most `burst + floor(W / T)`, here `200 + floor(W
/// / 300 ms)`. The load cannot be relied on to finish within one `T`
/// (300 ms) on a busy machine, so the test measures `W` around every
/// request (from before the first is sent to after the last answer; the
/// Redis server, which decides, runs on the same clock) and allows exactly
/// the refills of that window: nothing more. The nodes share one Lua script
/// that decides atomically, so no over-admission is expected at all (the 1 %
/// tolerance a distributed limiter might need is not used). 600 attempts
/// exceed the bound unless the window grows past two minutes, so refusals are
/// seen, and at least the whole burst must be admitted (no false refusals).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multi_node_idps_share_store_limiter_and_meter() {
    services::with_schema("multi_node_idps_share_store_limiter_and_meter", |pg, _| async move {
        services::with_prefix(
            "multi_node_idps_share_store_limiter_and_meter",
            |redis, prefix| async move {
                let sep = if redis.contains('?') { '&' } else { '?' };
                let redis = format!("{redis}{sep}prefix={prefix}");
                let urls = BackendUrls {
                    store: pg,
                    limiter: Some(redis.clone()),
                    meter: Some(redis),
                };
                // Built one after the other, as nodes usually start: the
                // second loads the signing key the first created.
                let a = node(&urls).await;
                let b = node(&urls).await;
                let op = Caller::system();

                // Registered through A, a token through B at once; either
                // node verifies it.
                let t = a
                    .create_tenant(&op, NewTenant { name: "Multi".into(), ..Default::default() })
                    .await
                    .unwrap();
                let reg = a
                    .register_agent(&op, &t.id, NewAgent { name: "bot".into(), ..Default::default() })
                    .await
                    .unwrap();
                let req = token_request(reg.agent.id.as_str(), reg.client_secret.as_deref().unwrap());
                let tok = b.issue_token(&req, &Default::default()).await.unwrap();
                let claims = a.verify_access_token(&tok.access_token, Some(ISSUER)).unwrap();
                assert_eq!(claims.sub, reg.agent.id.to_string());
                // Revoked through A, inactive through B at once.
                a.revoke(&req.client, &tok.access_token, &Default::default())
                    .await
                    .unwrap();
                let seen = b.introspect(&req.client, &tok.access_token, &Default::default()).await;
                assert!(!seen.unwrap().active, "revocation seen by the other node");
                // Agents by state come from the store: B counts A's agent.
                let counts = b.agents_by_state().await.unwrap();
                assert_eq!(counts.get(LifecycleState::Active), 1, "{counts:?}");
                assert_eq!(counts.total(), 1, "{counts:?}");

                // The load, on a fresh tenant (a fresh rate-limit key).
                let t = b
                    .create_tenant(&op, NewTenant { name: "Load".into(), ..Default::default() })
                    .await
                    .unwrap();
                let reg = b
                    .register_agent(&op, &t.id, NewAgent { name: "busy".into(), ..Default::default() })
                    .await
                    .unwrap();
                let req = token_request(reg.agent.id.as_str(), reg.client_secret.as_deref().unwrap());
                const TASKS_PER_NODE: usize = 4;
                const ATTEMPTS: usize = 75;
                let start = Instant::now();
                let mut tasks = Vec::new();
                for idp in [&a, &b] {
                    for _ in 0..TASKS_PER_NODE {
                        let idp = idp.clone();
                        let req = req.clone();
                        tasks.push(tokio::spawn(async move {
                            let (mut ok, mut limited) = (0usize, 0usize);
                            for _ in 0..ATTEMPTS {
                                match idp.issue_token(&req, &Default::default()).await {
                                    Ok(_) => ok += 1,
                                    Err(Error::RateLimited { limit, .. }) => {
                                        assert_eq!(limit, u64::from(RPM));
                                        limited += 1;
                                    }
                                    Err(e) => panic!("unexpected error under load: {e:?}"),
                                }
                            }
                            (ok, limited)
                        }));
                    }
                }
                let (mut ok, mut limited) = (0usize, 0usize);
                for task in tasks {
                    let (o, l) = task.await.unwrap();
                    ok += o;
                    limited += l;
                }
                let window = start.elapsed();
                let attempts = 2 * TASKS_PER_NODE * ATTEMPTS;
                assert_eq!(ok + limited, attempts);
                let t_interval = Duration::from_secs(60) / RPM;
                let refills = (window.as_micros() / t_interval.as_micros()) as usize;
                let bound = RPM as usize + refills;
                eprintln!(
                    "multi_node: {ok} admitted, {limited} rate limited, window {window:?}, bound {bound}"
                );
                assert!(
                    ok <= bound,
                    "over-admission: {ok} admitted in {window:?}, at most {bound} allowed"
                );
                assert!(ok >= RPM as usize, "the whole burst is usable: {ok}");
                if bound < attempts {
                    assert!(limited > 0, "the limit was reached");
                }

                // Usage: every admitted token counted once, across nodes.
                a.flush_usage().await.unwrap();
                b.flush_usage().await.unwrap();
                let month = Bucket::month_of(a.clock().now());
                let counted = a
                    .meter()
                    .get(&t.id, UsageKind::TokenIssued, &month)
                    .await
                    .unwrap();
                assert_eq!(counted, ok as u64, "usage counted once per token");
                let active = b.meter().active_agents(&t.id, &a.clock().now().utc_month()).await.unwrap();
                assert_eq!(active, 1);
                // And A counts the agent B registered.
                let counts = a.agents_by_state().await.unwrap();
                assert_eq!(counts.get(LifecycleState::Active), 2, "{counts:?}");
            },
        )
        .await;
    })
    .await;
}

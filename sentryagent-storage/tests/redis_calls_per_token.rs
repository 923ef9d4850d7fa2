//! Redis calls per admitted token: 64 concurrent token requests through the
//! `Idp`, with the rate limiter and the usage meter on Redis behind a proxy
//! that counts every command the backend sends (the usage flush included).
//!
//! Each request checks two limits (the client's and its tenant's), which
//! `RateLimiter::check_all` decides in one script call, and the limiter
//! coalesces concurrent requests into shared calls: the test asserts at
//! most one Redis command per admitted token on average, and prints the
//! figure and the commands seen, with coalescing (the default) and without
//! (then one call per token plus the usage flush).
#![cfg(feature = "redis")]

#[path = "support/resp_proxy.rs"]
mod resp_proxy;

use sentryagent_storage::testing as services;

use std::sync::Arc;

use sentryagent_core::{
    Caller, ClientCredentials, Error, Idp, NewAgent, NewTenant, SystemClock, TierLimits, TierTable,
    TokenRequest,
};
use sentryagent_storage::redis::{RedisBackend, RedisOptions};
use sentryagent_storage::{BackendUrls, open};

const TASKS: usize = 64;
const TOKENS_PER_TASK: usize = 20;
const AGENTS: usize = 16;

fn tiers() -> TierTable {
    let limits = TierLimits {
        max_agents: None,
        api_calls_per_day: None,
        token_issuances_per_month: None,
        requests_per_minute: 1_000_000,
        client_requests_per_minute: Some(1_000_000),
    };
    TierTable {
        free: limits,
        ..TierTable::default()
    }
}

/// Issues `TASKS x TOKENS_PER_TASK` tokens from 64 concurrent tasks and
/// returns the tokens admitted and the Redis commands sent meanwhile
/// (usage flush included), by name.
async fn measure(
    redis_url: &str,
    counts: &resp_proxy::Counts,
    coalesce: bool,
) -> (usize, u64, std::collections::BTreeMap<String, u64>) {
    let urls = BackendUrls {
        store: "memory://".into(),
        limiter: Some(redis_url.to_owned()),
        meter: Some(redis_url.to_owned()),
    };
    let backends = open(&urls, Arc::new(SystemClock)).await.unwrap();
    let redis = RedisBackend::open(RedisOptions::from_url(redis_url).unwrap())
        .await
        .unwrap();
    let idp = backends
        .apply(Idp::builder("https://idp.example"))
        .limiter(Arc::new(redis.rate_limiter().with_coalescing(coalesce)))
        .configure(|c| c.tiers = tiers())
        .build()
        .await
        .unwrap();
    let op = Caller::system();
    let t = idp
        .create_tenant(
            &op,
            NewTenant {
                name: "Calls".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut requests = Vec::new();
    for i in 0..AGENTS {
        let reg = idp
            .register_agent(
                &op,
                &t.id,
                NewAgent {
                    name: format!("bot{i}"),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        requests.push(TokenRequest {
            grant_type: "client_credentials".into(),
            client: ClientCredentials::Secret {
                client_id: reg.agent.id.to_string(),
                client_secret: reg.client_secret.clone().unwrap(),
            },
            scope: None,
            resources: vec![],
        });
    }
    idp.flush_usage().await.unwrap();

    let before = counts.snapshot();
    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let idp = idp.clone();
            let req = requests[i % AGENTS].clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let mut ok = 0usize;
                for _ in 0..TOKENS_PER_TASK {
                    match idp.issue_token(&req, &Default::default()).await {
                        Ok(_) => ok += 1,
                        Err(Error::RateLimited { .. }) => {}
                        Err(e) => panic!("unexpected error: {e:?}"),
                    }
                }
                ok
            })
        })
        .collect();
    let mut admitted = 0usize;
    for task in tasks {
        admitted += task.await.unwrap();
    }
    // Usage is buffered: its writes count too.
    idp.flush_usage().await.unwrap();
    let after = counts.snapshot();
    let (by_command, total) = resp_proxy::delta(&before, &after);
    (admitted, total, by_command)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_calls_per_admitted_token() {
    services::with_prefix("redis_calls_per_admitted_token", |url, prefix| async move {
        let upstream = url
            .trim_start_matches("redis://")
            .split(['/', '?'])
            .next()
            .unwrap()
            .rsplit('@')
            .next()
            .unwrap()
            .to_owned();
        let (proxy, counts) = resp_proxy::start(upstream).await;
        let redis = format!("redis://{proxy}?prefix={prefix}");
        for coalesce in [true, false] {
            let (admitted, total, by_command) = measure(&redis, &counts, coalesce).await;
            let per_token = total as f64 / admitted as f64;
            eprintln!(
                "redis_calls_per_admitted_token (coalescing {coalesce}): {admitted} tokens admitted \
                 by {TASKS} concurrent tasks, {total} Redis commands ({per_token:.3} per token): \
                 {by_command:?}"
            );
            assert_eq!(admitted, TASKS * TOKENS_PER_TASK, "every request admitted");
            if coalesce {
                assert!(
                    per_token <= 1.0,
                    "{per_token:.3} Redis commands per admitted token (at most 1): {by_command:?}"
                );
            } else {
                // One script call per token for both limits, plus the
                // usage flush: never two calls per token.
                assert!(
                    per_token < 1.05,
                    "{per_token:.3} Redis commands per admitted token without coalescing: {by_command:?}"
                );
            }
        }
    })
    .await;
}

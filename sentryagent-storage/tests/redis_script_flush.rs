//! `NOSCRIPT` recovery: after `SCRIPT FLUSH` the rate limiter and the usage
//! meter load their script again, retry once, and count exactly once.
//! One test, alone in its binary: nothing else of this process flushes or
//! reloads scripts meanwhile.
#![cfg(feature = "redis")]

use sentryagent_storage::testing as services;

use std::time::Duration;

use sentryagent_core::TenantId;
use sentryagent_core::conformance::kit::EPOCH;
use sentryagent_core::{Bucket, UsageBatch, UsageIncrement, UsageKind, UsageMeter};
use sentryagent_core::{Quota, RateLimiter};
use sentryagent_storage::redis::{RedisBackend, RedisOptions};

async fn flush(url: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .arg("SYNC")
        .query_async(&mut conn)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_scripts_recover_after_script_flush() {
    services::with_prefix(
        "redis_scripts_recover_after_script_flush",
        |url, prefix| async move {
            let redis = RedisBackend::open(RedisOptions::new(url.as_str()).with_prefix(&prefix))
                .await
                .unwrap();
            let limiter = redis.rate_limiter();
            let q = Quota::new(1, Duration::from_secs(3600)).with_burst(3);
            let loads = limiter.stats().script_loads;

            let d = limiter.check("k", &q, 1).await.unwrap();
            assert!(d.allowed && d.remaining == 2, "{d:?}");

            flush(&url).await;
            let d = limiter.check("k", &q, 1).await.unwrap();
            assert!(d.allowed, "works after the flush: {d:?}");
            assert_eq!(
                d.remaining, 1,
                "the request after the flush counts once: {d:?}"
            );
            let stats = limiter.stats();
            assert_eq!(stats.script_loads, loads + 1, "reloaded once: {stats:?}");
            assert_eq!(stats.failures, 0, "NOSCRIPT is not a failure: {stats:?}");

            let d = limiter.check("k", &q, 1).await.unwrap();
            assert!(d.allowed && d.remaining == 0, "{d:?}");
            assert!(!limiter.check("k", &q, 1).await.unwrap().allowed);
            assert_eq!(
                limiter.stats().script_loads,
                loads + 1,
                "no reload while cached"
            );

            // The usage meter, on the same connection.
            let meter = redis.usage_meter();
            let (a, b) = (TenantId::generate(), TenantId::generate());
            let at = EPOCH;
            let batch = UsageBatch {
                idempotency_key: "flushed".into(),
                increments: [&a, &b]
                    .iter()
                    .map(|t| UsageIncrement {
                        tenant_id: (*t).clone(),
                        agent_id: None,
                        kind: UsageKind::ApiCall,
                        at,
                        count: 3,
                    })
                    .collect(),
            };
            flush(&url).await;
            assert!(
                meter.record(&batch).await.unwrap(),
                "applied after the flush"
            );
            assert!(!meter.record(&batch).await.unwrap(), "and only once");
            for t in [&a, &b] {
                let n = meter
                    .get(t, UsageKind::ApiCall, &Bucket::day_of(at))
                    .await
                    .unwrap();
                assert_eq!(n, 3, "each tenant's part counted once");
            }
        },
    )
    .await;
}

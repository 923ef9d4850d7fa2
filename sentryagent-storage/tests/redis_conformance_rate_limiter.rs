//! The core's RateLimiter conformance suite on Redis.
//!
//! The whole suite runs on a `ManualClock` passed to the script instead of
//! the server's `TIME` (`RedisRateLimiter::with_clock`), so every duration
//! is checked exactly whatever the machine's load. The checks that do not
//! depend on time passing also run on the server's clock, the production
//! path (the multi-node test exercises it under load too); checks that
//! compare durations stay on the manual clock, since a loaded machine can
//! delay a request past any fixed allowance.
#![cfg(feature = "redis")]

use sentryagent_storage::testing as services;

use std::sync::Arc;
use std::time::Duration;

use sentryagent_core::ManualClock;
use sentryagent_core::RateLimiter;
use sentryagent_core::conformance::kit::EPOCH;
use sentryagent_core::conformance::rate_limiter::{self, MAX_DRIFT, TimeControl};
use sentryagent_storage::redis::{RedisBackend, RedisOptions};

/// Real time: advancing sleeps.
struct Sleeping;

#[async_trait::async_trait]
impl TimeControl for Sleeping {
    async fn advance(&self, by: Duration) {
        tokio::time::sleep(by).await;
    }

    fn drift(&self) -> Duration {
        MAX_DRIFT
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_conformance_rate_limiter() {
    services::with_prefix("redis_conformance_rate_limiter", |url, prefix| async move {
        let redis = RedisBackend::open(RedisOptions::new(url).with_prefix(&prefix))
            .await
            .unwrap();
        let clock = ManualClock::new(EPOCH);
        let limiter = Arc::new(redis.rate_limiter().with_clock(Arc::new(clock.clone())));
        let shared: Arc<dyn RateLimiter> = limiter.clone();
        rate_limiter::run_all(&shared, &clock, "conformance:").await;
        let stats = limiter.stats();
        assert_eq!(stats.failures, 0, "{stats:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_conformance_rate_limiter_on_server_time() {
    services::with_prefix(
        "redis_conformance_rate_limiter_on_server_time",
        |url, prefix| async move {
            let redis = RedisBackend::open(RedisOptions::new(url).with_prefix(&prefix))
                .await
                .unwrap();
            let limiter = Arc::new(redis.rate_limiter());
            let shared: Arc<dyn RateLimiter> = limiter.clone();
            let p = "server-time:";
            rate_limiter::invalid_input_is_refused(shared.as_ref(), &Sleeping, p).await;
            rate_limiter::concurrent_checks_admit_exactly_burst(&shared, &Sleeping, p).await;
            let stats = limiter.stats();
            assert_eq!(stats.failures, 0, "{stats:?}");
        },
    )
    .await;
}

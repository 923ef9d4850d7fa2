//! The core's RateLimiter conformance suite on Redis. Redis reads its own
//! clock (`TIME`), so the suite's time moves by sleeping, and durations are
//! checked within the suite's largest drift allowance (50 ms).
#![cfg(feature = "redis")]

mod services;

use std::sync::Arc;
use std::time::Duration;

use sentryagent_core::conformance::rate_limiter::{self, MAX_DRIFT, TimeControl};
use sentryagent_core::ratelimit::RateLimiter;
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
        let limiter = redis.rate_limiter();
        let shared: Arc<dyn RateLimiter> = Arc::new(redis.rate_limiter());
        rate_limiter::run_all(&shared, &Sleeping, "conformance:").await;
        let stats = limiter.stats();
        assert_eq!(stats.failures, 0, "{stats:?}");
    })
    .await;
}

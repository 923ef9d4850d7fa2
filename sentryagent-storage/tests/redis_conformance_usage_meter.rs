//! The core's UsageMeter conformance suite on Redis, under a random key
//! prefix.
#![cfg(feature = "redis")]

use sentryagent_storage::testing as services;

use std::sync::Arc;

use sentryagent_storage::redis::{RedisBackend, RedisOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_conformance_usage_meter() {
    services::with_prefix("redis_conformance_usage_meter", |url, prefix| async move {
        let redis = RedisBackend::open(RedisOptions::new(url).with_prefix(&prefix))
            .await
            .unwrap();
        sentryagent_core::conformance::usage_meter::run_all(Arc::new(redis.usage_meter())).await;
    })
    .await;
}

//! The core's `Idp` flow tests on a mixed store: every part on Postgres (a
//! fresh schema per test) except the one-time markers, which live in Redis
//! (a fresh key prefix per test). Parts of two backends behind one `Idp`.
#![cfg(all(feature = "postgres", feature = "redis"))]

#[path = "../../sentryagent-core/tests/flow/mod.rs"]
mod flow;

use std::sync::Arc;

use sentryagent_core::StoreParts;
use sentryagent_storage::postgres::{PostgresOptions, PostgresStore};
use sentryagent_storage::redis::{RedisBackend, RedisOptions};
use sentryagent_storage::testing::{self, PrefixGuard, SchemaGuard};

/// Postgres parts and Redis markers for the current test; `None` (after a
/// `SKIPPED` line) when a service is absent. The schema and the keys are
/// removed when the test's thread ends.
async fn store_parts() -> Option<StoreParts> {
    let current = std::thread::current();
    let test = current.name().unwrap_or("mixed_store_flow");
    let postgres = testing::postgres(test).await?;
    let redis = testing::redis(test).await?;
    let (schema_url, schema) = SchemaGuard::fresh(&postgres);
    let (prefix, keys) = PrefixGuard::fresh(&redis);
    let store = PostgresStore::connect(&PostgresOptions::from_url(&schema_url).unwrap())
        .await
        .unwrap();
    let markers = RedisBackend::open(RedisOptions::new(redis).with_prefix(&prefix))
        .await
        .unwrap()
        .markers();
    testing::drop_at_thread_exit((schema, keys));
    Some(StoreParts::from(Arc::new(store)).with_markers(Arc::new(markers)))
}

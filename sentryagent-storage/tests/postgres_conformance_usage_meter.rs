//! The core's UsageMeter conformance suite on Postgres, in a fresh schema.
#![cfg(feature = "postgres")]

use sentryagent_storage::testing as services;

use std::sync::Arc;

use sentryagent_storage::postgres::{PostgresOptions, PostgresUsageMeter};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_conformance_usage_meter() {
    services::with_schema("postgres_conformance_usage_meter", |url, _| async move {
        let options = PostgresOptions::from_url(&url).unwrap();
        let meter = PostgresUsageMeter::connect(&options).await.unwrap();
        sentryagent_core::conformance::usage_meter::run_all(Arc::new(meter)).await;
    })
    .await;
}

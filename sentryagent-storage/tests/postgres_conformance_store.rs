//! Every store suite of the core on Postgres, in a fresh schema.
#![cfg(feature = "postgres")]

use sentryagent_storage::testing as services;

use std::sync::Arc;

use sentryagent_storage::postgres::{PostgresOptions, PostgresStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_conformance_store() {
    services::with_schema("postgres_conformance_store", |url, _| async move {
        let options = PostgresOptions::from_url(&url).unwrap();
        let store = PostgresStore::connect(&options).await.unwrap();
        sentryagent_core::conformance::store::run_all(Arc::new(store.clone())).await;
        store.close().await;
    })
    .await;
}

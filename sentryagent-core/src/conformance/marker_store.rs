//! The [`MarkerStore`] conformance suite.

use std::sync::Arc;

use super::{t, unique};
use crate::store::MarkerStore;

/// Runs every check of the suite.
pub async fn run_all(store: Arc<dyn MarkerStore>) {
    markers(store.as_ref()).await;
    race_markers(store.clone()).await;
}

/// One-time markers.
pub async fn markers(store: &dyn MarkerStore) {
    let ns = format!("ns{}", unique());
    check!(
        store,
        store.put_marker(&ns, "k", t(10), t(0)).await.unwrap(),
        "first put"
    );
    check!(
        store,
        !store.put_marker(&ns, "k", t(10), t(5)).await.unwrap(),
        "second put while live"
    );
    check!(
        store,
        store.has_marker(&ns, "k", t(9)).await.unwrap(),
        "present before expiry"
    );
    check!(
        store,
        !store.has_marker(&ns, "k", t(10)).await.unwrap(),
        "absent at expiry"
    );
    check!(
        store,
        !store.has_marker("other", "k", t(0)).await.unwrap(),
        "namespaces are separate"
    );
    check!(
        store,
        store.put_marker(&ns, "k", t(30), t(10)).await.unwrap(),
        "expired marker can be put again"
    );
    store.put_marker(&ns, "short", t(1), t(0)).await.unwrap();
    let purged = store.purge_markers(t(20)).await.unwrap();
    check!(store, purged >= 1, "purge removes expired markers");
    check!(
        store,
        store.has_marker(&ns, "k", t(20)).await.unwrap(),
        "purge keeps live markers"
    );
}

/// Concurrent puts of one marker: exactly one is first.
pub async fn race_markers(store: Arc<dyn MarkerStore>) {
    let ns = format!("race{}", unique());
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        let ns = ns.clone();
        tasks.push(tokio::spawn(async move {
            store.put_marker(&ns, "jti", t(100), t(0)).await
        }));
    }
    let mut firsts = 0;
    for t in tasks {
        if t.await.unwrap().unwrap() {
            firsts += 1;
        }
    }
    check!(
        store,
        firsts == 1,
        "exactly one of 16 concurrent put_marker calls is first, got {firsts}"
    );
}

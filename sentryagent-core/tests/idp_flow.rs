//! The `Idp` flow tests (module `flow`) on the in-memory store.

mod flow;

use std::sync::Arc;

use sentryagent_core::{MemoryStore, StoreParts};

/// A fresh in-memory store for each test.
async fn store_parts() -> Option<StoreParts> {
    Some(StoreParts::from(Arc::new(MemoryStore::new())))
}

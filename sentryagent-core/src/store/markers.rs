//! [`MarkerStore`]: one-time markers.

use async_trait::async_trait;

use super::Backend;
use crate::{Result, Timestamp};

/// Keys that exist until they expire: seen client-assertion `jti`s, revoked
/// tokens, processed webhook events. Times come from the caller's clock.
#[async_trait]
pub trait MarkerStore: Backend {
    /// Stores `(namespace, key)` until `expires_at` if it is absent or expired
    /// at `now`; returns whether it was stored (false: already present).
    /// Atomic: of concurrent callers with one key, exactly one gets true.
    async fn put_marker(
        &self,
        namespace: &str,
        key: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool>;
    /// Whether `(namespace, key)` is present and unexpired at `now`.
    async fn has_marker(&self, namespace: &str, key: &str, now: Timestamp) -> Result<bool>;
    /// Removes markers expired at `now`; returns how many.
    async fn purge_markers(&self, now: Timestamp) -> Result<u64>;
}

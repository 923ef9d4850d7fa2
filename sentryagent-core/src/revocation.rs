//! [`RevocationCache`]: a shared, fast list of revoked token ids.
//!
//! The store's markers are the durable record of revocations. A deployment
//! whose nodes share a cache (Redis) also writes each revocation there, so
//! that every node refuses a revoked token at once even when nodes do not
//! share a store. Checks consult the cache and then the store: a token is
//! revoked if either says so.

use async_trait::async_trait;

use crate::{Result, Timestamp};

/// A shared set of revoked `jti`s, each kept until the token's expiry.
#[async_trait]
pub trait RevocationCache: Send + Sync + std::fmt::Debug {
    /// Backend name.
    fn name(&self) -> &'static str;
    /// Records `jti` as revoked until `until`.
    async fn revoke(&self, jti: &str, until: Timestamp) -> Result<()>;
    /// Whether `jti` is revoked.
    async fn is_revoked(&self, jti: &str) -> Result<bool>;
}

//! [`RedisRevocationCache`]: revoked token ids, shared by every node.

use std::sync::Arc;

use sentryagent_core::BackendHealth;
use sentryagent_core::{Clock, Error, Result, Timestamp};

use super::conn::{Conn, tagged, unavailable};

/// Longest token id accepted, in bytes.
pub const MAX_JTI_LEN: usize = 512;

/// Revoked access-token ids (`jti`) in Redis, each kept until the token
/// would have expired anyway.
///
/// Every node sharing the Redis sees a revocation as soon as
/// [`revoke`](Self::revoke) returns, with one `EXISTS` per check
/// ([`is_revoked`](Self::is_revoked)): a token revoked through one node is
/// refused by all of them at once, without waiting for any cache or
/// database replica. Entries expire by themselves (`SET NX PX`), so the
/// set holds only tokens that could still be presented.
///
/// Keys are `{<prefix>rv:<jti>}`. A failing Redis is [`Error::Unavailable`]
/// for both calls: the caller chooses whether an unknown revocation state
/// refuses the token.
#[derive(Debug, Clone)]
pub struct RedisRevocationCache {
    conn: Conn,
    clock: Arc<dyn Clock>,
}

fn check_jti(jti: &str) -> Result<()> {
    if jti.is_empty() || jti.len() > MAX_JTI_LEN {
        return Err(Error::invalid("jti", format!("1 to {MAX_JTI_LEN} bytes")));
    }
    Ok(())
}

impl RedisRevocationCache {
    pub(crate) fn new(conn: Conn, clock: Arc<dyn Clock>) -> Self {
        RedisRevocationCache { conn, clock }
    }

    fn key(&self, jti: &str) -> String {
        tagged(self.conn.prefix(), "rv", jti)
    }

    /// Records `jti` as revoked until `until` (the token's expiry, plus any
    /// leeway its verifiers allow). Returns whether this call recorded it:
    /// `false` if it was already revoked, or if `until` has passed (an
    /// expired token needs no revocation).
    pub async fn revoke(&self, jti: &str, until: Timestamp) -> Result<bool> {
        check_jti(jti)?;
        let now = self.clock.now();
        if until <= now {
            return Ok(false);
        }
        let millis = until.since(now).as_micros().div_ceil(1000).max(1);
        let set: Option<String> = redis::cmd("SET")
            .arg(self.key(jti))
            .arg(until.unix_micros())
            .arg("NX")
            .arg("PX")
            .arg(u64::try_from(millis).unwrap_or(u64::MAX))
            .query_async(&mut self.conn.manager())
            .await
            .map_err(|e| unavailable("revoke", e))?;
        Ok(set.is_some())
    }

    /// Whether `jti` is revoked (and its revocation not yet expired).
    pub async fn is_revoked(&self, jti: &str) -> Result<bool> {
        check_jti(jti)?;
        let n: i64 = redis::cmd("EXISTS")
            .arg(self.key(jti))
            .query_async(&mut self.conn.manager())
            .await
            .map_err(|e| unavailable("is_revoked", e))?;
        Ok(n == 1)
    }

    /// `PING` latency.
    pub async fn health(&self) -> BackendHealth {
        match self.conn.ping().await {
            Ok(latency) => BackendHealth::up("redis", latency),
            Err(e) => BackendHealth::down("redis", format!("redis unreachable: {e}")),
        }
        .with_detail("part", "revocation_cache")
    }
}

#[async_trait::async_trait]
impl sentryagent_core::RevocationCache for RedisRevocationCache {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn revoke(&self, jti: &str, until: Timestamp) -> Result<()> {
        RedisRevocationCache::revoke(self, jti, until)
            .await
            .map(|_| ())
    }

    async fn is_revoked(&self, jti: &str) -> Result<bool> {
        RedisRevocationCache::is_revoked(self, jti).await
    }
}

//! The Redis backend (feature `redis`): [`RedisRateLimiter`] (a
//! [`RateLimiter`](sentryagent_core::RateLimiter)), [`RedisUsageMeter`] (a
//! [`UsageMeter`](sentryagent_core::UsageMeter)), [`RedisMarkerStore`] (a
//! [`MarkerStore`](sentryagent_core::MarkerStore)) and
//! [`RedisRevocationCache`], for several nodes sharing one Redis.
//!
//! ```no_run
//! use std::sync::Arc;
//! use sentryagent_storage::redis::{RedisBackend, RedisOptions};
//!
//! # async fn f() -> sentryagent_core::Result<()> {
//! let redis = RedisBackend::open(RedisOptions::from_url("redis://cache:6379?prefix=idp:")?).await?;
//! let idp = sentryagent_core::Idp::builder("https://idp.example")
//!     .limiter(Arc::new(redis.rate_limiter()))
//!     .meter(Arc::new(redis.usage_meter()))
//!     .build()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # Connection
//!
//! One [`RedisBackend`] holds one connection manager (a multiplexed
//! connection that reconnects by itself), shared by every part made from
//! it. Opening does not wait for Redis: a Redis that is down at start is
//! treated like one that fails later (the rate limiter follows its
//! [`FailurePolicy`], the other parts return [`Unavailable`](sentryagent_core::Error::Unavailable)).
//!
//! # Keys
//!
//! Every key starts with the configured prefix (default `sa:`) inside a
//! Redis Cluster hash tag, so each script touches one slot: `{<prefix>rl:<key>}`
//! for rate limits, `{<prefix>u:<tenant>}:...` for a tenant's usage,
//! `{<prefix>rv:<jti>}` for revocations, `{<prefix>mk}:...` for one-time
//! markers. This build connects to one Redis
//! server (or a proxy in front of a cluster); the key layout is ready for a
//! cluster-aware client.
//!
//! # Scripts
//!
//! The rate limiter and the usage meter each run one Lua script, loaded
//! with `SCRIPT LOAD` when the backend opens and called by `EVALSHA`. Only a
//! `NOSCRIPT` reply (the server restarted, failed over or flushed its
//! scripts) loads it again, and the call is retried once; other errors are
//! never retried, so nothing counts twice.

mod conn;
mod limiter;
mod markers;
mod meter;
mod options;
mod revocation;

use std::sync::Arc;

use sentryagent_core::BackendHealth;
use sentryagent_core::{Clock, Result};

pub use limiter::{MAX_BURST_OFFSET, RateLimiterStats, RedisRateLimiter};
pub use markers::RedisMarkerStore;
pub use meter::{MAX_HOURLY_HOURS, RedisUsageMeter};
pub use options::{FailurePolicy, RedisOptions, UsageRetention};
pub use revocation::{MAX_JTI_LEN, RedisRevocationCache};

/// A Redis connection and the parts built on it.
#[derive(Debug, Clone)]
pub struct RedisBackend {
    conn: conn::Conn,
}

impl RedisBackend {
    /// Validates the options and prepares the connection; then tries, once
    /// and briefly, to connect and load the scripts. Fails only on bad
    /// options: an unreachable Redis is handled when the parts are used.
    pub async fn open(options: RedisOptions) -> Result<Self> {
        let conn = conn::Conn::open(options)?;
        for lua in [limiter::gcra_script(), meter::usage_script()] {
            if conn.load(lua).await.is_err() {
                break;
            }
        }
        Ok(RedisBackend { conn })
    }

    /// The options.
    pub fn options(&self) -> &RedisOptions {
        &self.conn.options
    }

    /// A rate limiter on this connection (with its own failure counters).
    pub fn rate_limiter(&self) -> RedisRateLimiter {
        RedisRateLimiter::new(self.conn.clone())
    }

    /// A usage meter on this connection.
    pub fn usage_meter(&self) -> RedisUsageMeter {
        RedisUsageMeter::new(self.conn.clone())
    }

    /// A marker store on this connection.
    pub fn markers(&self) -> RedisMarkerStore {
        RedisMarkerStore::new(self.conn.clone())
    }

    /// A revocation cache on this connection; `clock` turns expiry times
    /// into lifetimes.
    pub fn revocation_cache(&self, clock: Arc<dyn Clock>) -> RedisRevocationCache {
        RedisRevocationCache::new(self.conn.clone(), clock)
    }

    /// `PING` latency.
    pub async fn health(&self) -> BackendHealth {
        match self.conn.ping().await {
            Ok(latency) => BackendHealth::up("redis", latency),
            Err(e) => BackendHealth::down("redis", format!("redis unreachable: {e}")),
        }
    }
}

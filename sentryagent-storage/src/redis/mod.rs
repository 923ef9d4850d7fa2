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
//! Redis Cluster hash tag, so each script touches one slot:
//! `{<prefix>rl:<first segment>}/<rest>` for rate limits (the tag is the
//! limit key up to its first `/`, so a tenant's limit `tenant:<id>` and its
//! clients' limits `tenant:<id>/client:<agent>` share a slot),
//! `{<prefix>u:<tenant>}:...` for a tenant's usage, `{<prefix>rv:<jti>}`
//! for revocations, `{<prefix>mk}:...` for one-time markers.
//!
//! # Redis Cluster
//!
//! A `redis+cluster://host:port,host:port` URL (see
//! [`RedisOptions::cluster_nodes`]) connects to a Redis Cluster: the
//! backend learns the slot map from the seed nodes (`CLUSTER SLOTS`), keeps
//! one multiplexed connection per primary, sends each command or script to
//! the primary of its key's slot, follows `MOVED` (updating its map) and
//! `ASK` (with `ASKING` in the same pipeline as the command, so concurrent
//! requests cannot separate them), and retries `TRYAGAIN` and `CLUSTERDOWN`
//! every few milliseconds for up to five response timeouts, so callers see
//! no error while a slot moves (resharding, fail-over). During a slot's
//! migration, a script whose keys are split between the two nodes (or
//! partly absent: an expired limit is an absent key) waits for the move to
//! finish. Redirections are replies that mean the command did not run, so
//! nothing counts twice; a broken connection is returned as an error, as on
//! one server. The usage meter writes each tenant's part of a batch as its
//! own script call (a pipeline must stay in one slot). `SCRIPT LOAD` goes
//! to every primary.
//!
//! # Scripts
//!
//! The rate limiter (one script per check, one for all the checks of a
//! request) and the usage meter run Lua scripts, loaded
//! with `SCRIPT LOAD` when the backend opens and called by `EVALSHA`. Only a
//! `NOSCRIPT` reply (the server restarted, failed over or flushed its
//! scripts) loads it again, and the call is retried once; other errors are
//! never retried, so nothing counts twice.

mod cluster;
mod conn;
mod limiter;
mod markers;
mod meter;
mod options;
mod revocation;

use std::sync::Arc;

use sentryagent_core::BackendHealth;
use sentryagent_core::{Clock, Result};

pub use limiter::{MAX_BURST_OFFSET, MAX_COALESCED, RateLimiterStats, RedisRateLimiter};
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
        for lua in [
            limiter::gcra_script(),
            limiter::gcra_all_script(),
            meter::usage_script(),
        ] {
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

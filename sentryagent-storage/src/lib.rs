//! Storage backends of the SentryAgent core traits, chosen by URL.
//!
//! | URL | store | rate limiter | usage meter | cargo feature |
//! |---|---|---|---|---|
//! | `memory://` | yes | yes (per node) | yes | always |
//! | `sled://PATH` | yes | yes (per node) | yes | `sled` (default) |
//! | `postgres://...`, `postgresql://...` | yes | no | yes | `postgres` |
//! | `redis://...` | no | yes (shared) | yes | `redis` |
//! | `redis+cluster://host:port,host:port` | no | yes (shared) | yes | `redis` |
//!
//! [`open`] turns URLs into [`Backends`], the parts an
//! [`Idp`](sentryagent_core::Idp) is built from. The limiter and the meter
//! default to the store's URL; parts on the same URL share one connection
//! pool (Postgres) or connection manager (Redis). A Postgres store has no
//! rate limiter, so it needs an explicit limiter URL: `redis://...` to share
//! limits between nodes, or `memory://` for limits per node.
//!
//! A multi-node deployment:
//!
//! ```text
//! SENTRYAGENT_STORE=postgres://app@db/sentryagent?schema=idp&max_connections=20
//! SENTRYAGENT_LIMITER=redis://cache:6379?prefix=idp:&failure_policy=open
//! SENTRYAGENT_METER=redis://cache:6379?prefix=idp:
//! ```
//!
//! `redis+cluster://` names seed nodes of a Redis Cluster, separated by
//! commas; the client discovers the rest of the cluster and follows slot
//! moves (see [`redis::RedisOptions::cluster_nodes`]).
//!
//! Query parameters of each URL are documented by
//! [`postgres::PostgresOptions`] and [`redis::RedisOptions`] (when the
//! features are on). Cargo features keep unused drivers out of a build.
//!
//! `sled://PATH` names a database directory, created if missing: relative
//! (`sled://./sentryagent-data`, `sled://data`, from the working directory)
//! or absolute (`sled:///var/lib/sentryagent`). The text between `sled://`
//! and the first `?` is the path as is (no percent-decoding). Parts naming
//! the same directory share one database (see the `sled` module). One
//! parameter: `cache_mb`, sled's page cache in MiB (default 1024), the bulk
//! of the server's resident memory once the database outgrows it
//! (`sled:///var/lib/sentryagent?cache_mb=128`; see
//! `sled::SledOptions`).

use std::sync::Arc;

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
#[cfg(any(feature = "postgres", feature = "redis", feature = "sled"))]
#[cfg_attr(not(all(feature = "postgres", feature = "redis")), allow(dead_code))]
mod url_params;

use sentryagent_core::BackendHealth;
use sentryagent_core::{Clock, Error, IdpStore, RateLimiter, Result, StoreParts, UsageMeter};
use sentryagent_core::{MemoryRateLimiter, MemoryStore, MemoryUsageMeter};

#[cfg(feature = "sled")]
#[cfg_attr(docsrs, doc(cfg(feature = "sled")))]
pub mod sled;

/// Where each part lives. `limiter` and `meter` default to the store's URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendUrls {
    /// The store (`SENTRYAGENT_STORE`).
    pub store: String,
    /// The rate limiter (`SENTRYAGENT_LIMITER`).
    pub limiter: Option<String>,
    /// The usage meter (`SENTRYAGENT_METER`).
    pub meter: Option<String>,
}

/// A part that reports its health outside the core traits (the
/// [`RateLimiter`] trait has no `health()`).
#[async_trait::async_trait]
pub trait HealthCheck: Send + Sync + std::fmt::Debug {
    /// The part's health.
    async fn health(&self) -> BackendHealth;
}

/// The opened parts.
#[derive(Debug, Clone)]
pub struct Backends {
    /// The store: every store part, on the store URL's backend.
    pub store: Arc<dyn IdpStore>,
    /// The rate limiter.
    pub limiter: Arc<dyn RateLimiter>,
    /// The usage meter.
    pub meter: Arc<dyn UsageMeter>,
    /// The rate limiter's health, when its backend has one (Redis: ping,
    /// failure policy and failure counters).
    pub limiter_health: Option<Arc<dyn HealthCheck>>,
    /// A revocation cache shared by the nodes: Redis, when the limiter or
    /// the meter is on Redis.
    pub revocations: Option<Arc<dyn sentryagent_core::RevocationCache>>,
}

impl Backends {
    /// Health of every distinct backend.
    pub async fn health(&self) -> Vec<BackendHealth> {
        let mut out = vec![self.store.health().await, self.meter.health().await];
        if let Some(l) = &self.limiter_health {
            out.push(l.health().await);
        }
        out
    }

    /// The store parts an [`Idp`](sentryagent_core::Idp) is built from.
    pub fn store_parts(&self) -> StoreParts {
        StoreParts::from(self.store.clone())
    }

    /// Applies the parts to an [`IdpBuilder`](sentryagent_core::IdpBuilder).
    pub fn apply(&self, b: sentryagent_core::IdpBuilder) -> sentryagent_core::IdpBuilder {
        let b = b
            .store_parts(self.store_parts())
            .limiter(self.limiter.clone())
            .meter(self.meter.clone());
        match &self.revocations {
            Some(r) => b.revocations(r.clone()),
            None => b,
        }
    }
}

fn scheme(url: &str) -> &str {
    url.split_once("://").map_or(url, |(s, _)| s)
}

/// Connections opened so far, so parts on one URL share them.
#[derive(Default)]
struct Opened {
    #[cfg(feature = "postgres")]
    postgres: Vec<(String, postgres::PostgresStore)>,
    #[cfg(feature = "redis")]
    redis: Vec<(String, redis::RedisBackend)>,
}

impl Opened {
    #[cfg(feature = "postgres")]
    async fn postgres(&mut self, url: &str) -> Result<postgres::PostgresStore> {
        if let Some((_, s)) = self.postgres.iter().find(|(u, _)| u == url) {
            return Ok(s.clone());
        }
        let options = postgres::PostgresOptions::from_url(url)?;
        let store = postgres::PostgresStore::connect(&options).await?;
        self.postgres.push((url.to_owned(), store.clone()));
        Ok(store)
    }

    #[cfg(feature = "redis")]
    async fn redis(&mut self, url: &str) -> Result<redis::RedisBackend> {
        if let Some((_, r)) = self.redis.iter().find(|(u, _)| u == url) {
            return Ok(r.clone());
        }
        let backend = redis::RedisBackend::open(redis::RedisOptions::from_url(url)?).await?;
        self.redis.push((url.to_owned(), backend.clone()));
        Ok(backend)
    }
}

/// Opens the backends the URLs name. Parts on the same URL share one
/// connection (or database handle).
pub async fn open(urls: &BackendUrls, clock: Arc<dyn Clock>) -> Result<Backends> {
    let store_url = urls.store.as_str();
    let limiter_url = urls.limiter.as_deref().unwrap_or(store_url);
    let meter_url = urls.meter.as_deref().unwrap_or(store_url);
    #[cfg_attr(
        not(any(feature = "postgres", feature = "redis")),
        allow(unused_mut, unused_variables)
    )]
    let mut opened = Opened::default();
    let store: Arc<dyn IdpStore> = match scheme(store_url) {
        "memory" => Arc::new(MemoryStore::new()),
        #[cfg(feature = "sled")]
        "sled" => Arc::new(open_sled("store", store_url)?.store()),
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => Arc::new(opened.postgres(store_url).await?),
        "redis" | "redis+cluster" => {
            return Err(Error::invalid(
                "store",
                "Redis holds no store: use postgres:// (or memory://) for the store, and redis:// \
                 for the rate limiter and usage meter",
            ));
        }
        other => return Err(unsupported("store", other)),
    };
    #[cfg_attr(not(feature = "redis"), allow(unused_mut))]
    let mut limiter_health: Option<Arc<dyn HealthCheck>> = None;
    let limiter: Arc<dyn RateLimiter> = match scheme(limiter_url) {
        "memory" => Arc::new(MemoryRateLimiter::new(clock.clone())),
        #[cfg(feature = "sled")]
        "sled" => Arc::new(open_sled("limiter", limiter_url)?.rate_limiter(clock.clone())),
        #[cfg(feature = "redis")]
        "redis" | "redis+cluster" => {
            let l = Arc::new(opened.redis(limiter_url).await?.rate_limiter());
            limiter_health = Some(l.clone());
            l
        }
        "postgres" | "postgresql" => {
            return Err(Error::invalid(
                "limiter",
                "Postgres holds no rate limiter (the limiter defaults to the store URL): set the \
                 limiter URL to redis://... (limits shared by every node) or memory:// (per node)",
            ));
        }
        other => return Err(unsupported("limiter", other)),
    };
    let meter: Arc<dyn UsageMeter> = match scheme(meter_url) {
        "memory" => Arc::new(MemoryUsageMeter::new()),
        #[cfg(feature = "sled")]
        "sled" => Arc::new(open_sled("meter", meter_url)?.usage_meter(clock.clone())),
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => Arc::new(opened.postgres(meter_url).await?.usage_meter()),
        #[cfg(feature = "redis")]
        "redis" | "redis+cluster" => Arc::new(opened.redis(meter_url).await?.usage_meter()),
        other => return Err(unsupported("meter", other)),
    };
    #[cfg(feature = "redis")]
    let revocations = opened.redis.first().map(|(_, r)| {
        Arc::new(r.revocation_cache(clock.clone())) as Arc<dyn sentryagent_core::RevocationCache>
    });
    #[cfg(not(feature = "redis"))]
    let revocations = None;
    Ok(Backends {
        store,
        limiter,
        meter,
        limiter_health,
        revocations,
    })
}

/// The schemes this build opens (by cargo feature).
fn known() -> String {
    let mut known = vec!["memory"];
    if cfg!(feature = "sled") {
        known.push("sled");
    }
    if cfg!(feature = "postgres") {
        known.push("postgres");
        known.push("postgresql");
    }
    if cfg!(feature = "redis") {
        known.push("redis");
        known.push("redis+cluster");
    }
    known.join(", ")
}

fn unsupported(part: &'static str, scheme: &str) -> Error {
    let hint = match scheme {
        "postgres" | "postgresql" if !cfg!(feature = "postgres") => {
            " (build with the cargo feature `postgres`)"
        }
        "redis" if !cfg!(feature = "redis") => " (build with the cargo feature `redis`)",
        _ => "",
    };
    Error::invalid(
        part,
        format!(
            "unsupported backend URL scheme `{scheme}`{hint} (this build knows: {})",
            known()
        ),
    )
}

/// Opens the sled database of a `sled://PATH` URL (shared by every part
/// naming the same directory).
#[cfg(feature = "sled")]
fn open_sled(part: &'static str, url: &str) -> Result<crate::sled::SledBackend> {
    let (path, options) = crate::sled::SledOptions::from_url(url)?;
    if path.is_empty() {
        return Err(Error::invalid(
            part,
            "a sled URL needs a directory: sled://PATH, e.g. sled://./sentryagent-data",
        ));
    }
    crate::sled::SledBackend::open_with(path, &options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(store: &str, limiter: Option<&str>, meter: Option<&str>) -> BackendUrls {
        BackendUrls {
            store: store.into(),
            limiter: limiter.map(str::to_owned),
            meter: meter.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn memory_urls_open_and_unknown_schemes_are_refused() {
        let clock = Arc::new(sentryagent_core::SystemClock);
        let b = open(&urls("memory://", None, None), clock.clone())
            .await
            .unwrap();
        assert_eq!(b.store.name(), "memory");
        assert!(b.limiter_health.is_none());
        let r = open(&urls("ftp://x", None, None), clock).await;
        assert!(matches!(r, Err(Error::Invalid { .. })));
    }

    #[tokio::test]
    async fn redis_is_no_store_and_postgres_no_limiter() {
        let clock = Arc::new(sentryagent_core::SystemClock);
        let r = open(&urls("redis://127.0.0.1:1", None, None), clock.clone()).await;
        assert!(
            matches!(&r, Err(Error::Invalid { field: "store", message }) if message.contains("Redis holds no store")),
            "{r:?}"
        );
        let r = open(
            &urls("memory://", Some("postgres://h/db"), None),
            clock.clone(),
        )
        .await;
        assert!(
            matches!(&r, Err(Error::Invalid { field: "limiter", message }) if message.contains("no rate limiter")),
            "{r:?}"
        );
    }

    #[cfg(feature = "redis")]
    #[tokio::test]
    async fn redis_limiter_and_meter_open_without_a_server() {
        let clock = Arc::new(sentryagent_core::SystemClock);
        let b = open(
            &urls(
                "memory://",
                Some("redis://127.0.0.1:1?prefix=t:&failure_policy=open"),
                Some("redis://127.0.0.1:1?prefix=t:&failure_policy=open"),
            ),
            clock,
        )
        .await
        .unwrap();
        assert_eq!((b.limiter.name(), b.meter.name()), ("redis", "redis"));
        let h = b.health().await;
        assert_eq!(h.len(), 3, "{h:?}");
        assert_eq!(h[2].status, sentryagent_core::HealthStatus::Degraded);
    }

    #[cfg(not(feature = "postgres"))]
    #[tokio::test]
    async fn a_build_without_postgres_says_which_feature() {
        let clock = Arc::new(sentryagent_core::SystemClock);
        let r = open(&urls("postgres://h/db", None, None), clock).await;
        assert!(
            matches!(&r, Err(Error::Invalid { message, .. }) if message.contains("feature `postgres`")),
            "{r:?}"
        );
    }
}

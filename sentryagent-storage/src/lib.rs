//! Storage backends of the SentryAgent core traits, chosen by URL.
//!
//! | URL | store | rate limiter | usage meter | cargo feature |
//! |---|---|---|---|---|
//! | `memory://` | yes | yes | yes | always |
//! | `sled://PATH` | yes | yes | yes | `sled` (default) |
//!
//! [`open`] turns URLs into [`Backends`], the parts an
//! [`Idp`](sentryagent_core::Idp) is built from.
//!
//! `sled://PATH` names a database directory, created if missing: relative
//! (`sled://./sentryagent-data`, `sled://data`, from the working directory)
//! or absolute (`sled:///var/lib/sentryagent`). The text after `sled://` is
//! the path as is (no percent-decoding). Parts naming the same directory
//! share one database (see the `sled` module).

use std::sync::Arc;

use sentryagent_core::health::BackendHealth;
use sentryagent_core::memory::{MemoryRateLimiter, MemoryStore, MemoryUsageMeter};
use sentryagent_core::{AgentStore, Clock, Error, RateLimiter, Result, UsageMeter};

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

/// The opened parts.
#[derive(Debug, Clone)]
pub struct Backends {
    /// The store.
    pub store: Arc<dyn AgentStore>,
    /// The rate limiter.
    pub limiter: Arc<dyn RateLimiter>,
    /// The usage meter.
    pub meter: Arc<dyn UsageMeter>,
}

impl Backends {
    /// Health of every distinct backend.
    pub async fn health(&self) -> Vec<BackendHealth> {
        vec![self.store.health().await, self.meter.health().await]
    }

    /// Applies the parts to an [`IdpBuilder`](sentryagent_core::IdpBuilder).
    pub fn apply(&self, b: sentryagent_core::IdpBuilder) -> sentryagent_core::IdpBuilder {
        b.store(self.store.clone())
            .limiter(self.limiter.clone())
            .meter(self.meter.clone())
    }
}

fn scheme(url: &str) -> &str {
    url.split_once("://").map_or(url, |(s, _)| s)
}

/// Opens the backends the URLs name. Parts on the same URL share one
/// connection (or database handle).
pub async fn open(urls: &BackendUrls, clock: Arc<dyn Clock>) -> Result<Backends> {
    let store_url = urls.store.as_str();
    let limiter_url = urls.limiter.as_deref().unwrap_or(store_url);
    let meter_url = urls.meter.as_deref().unwrap_or(store_url);
    let store: Arc<dyn AgentStore> = match scheme(store_url) {
        "memory" => Arc::new(MemoryStore::new()),
        #[cfg(feature = "sled")]
        "sled" => Arc::new(open_sled("store", store_url)?.store()),
        other => return Err(unsupported("store", other)),
    };
    let limiter: Arc<dyn RateLimiter> = match scheme(limiter_url) {
        "memory" => Arc::new(MemoryRateLimiter::new(clock.clone())),
        #[cfg(feature = "sled")]
        "sled" => Arc::new(open_sled("limiter", limiter_url)?.rate_limiter(clock.clone())),
        other => return Err(unsupported("limiter", other)),
    };
    let meter: Arc<dyn UsageMeter> = match scheme(meter_url) {
        "memory" => Arc::new(MemoryUsageMeter::new()),
        #[cfg(feature = "sled")]
        "sled" => Arc::new(open_sled("meter", meter_url)?.usage_meter(clock.clone())),
        other => return Err(unsupported("meter", other)),
    };
    Ok(Backends {
        store,
        limiter,
        meter,
    })
}

/// Schemes this build supports, for error messages.
const KNOWN_SCHEMES: &str = if cfg!(feature = "sled") {
    "memory, sled"
} else {
    "memory"
};

fn unsupported(part: &'static str, scheme: &str) -> Error {
    Error::invalid(
        part,
        format!("unsupported backend URL scheme `{scheme}` (this build knows: {KNOWN_SCHEMES})"),
    )
}

/// Opens the sled database of a `sled://PATH` URL (shared by every part
/// naming the same directory).
#[cfg(feature = "sled")]
fn open_sled(part: &'static str, url: &str) -> Result<crate::sled::SledBackend> {
    let path = url.strip_prefix("sled://").unwrap_or_default();
    if path.is_empty() {
        return Err(Error::invalid(
            part,
            "a sled URL needs a directory: sled://PATH, e.g. sled://./sentryagent-data",
        ));
    }
    crate::sled::SledBackend::open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_urls_open_and_unknown_schemes_are_refused() {
        let clock = Arc::new(sentryagent_core::SystemClock);
        let b = open(
            &BackendUrls {
                store: "memory://".into(),
                ..Default::default()
            },
            clock.clone(),
        )
        .await
        .unwrap();
        assert_eq!(b.store.name(), "memory");
        let r = open(
            &BackendUrls {
                store: "ftp://x".into(),
                ..Default::default()
            },
            clock,
        )
        .await;
        assert!(matches!(r, Err(Error::Invalid { .. })));
    }
}

//! Issuer keys over HTTP, for token exchange: OpenID Connect discovery
//! (`<issuer>/.well-known/openid-configuration`), then its `jwks_uri`,
//! cached per issuer and fetched defensively, since an issuer URL is
//! written by a tenant.
//!
//! The rules are on [`JwksFetcher`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Url;
use sentryagent_core::federation::{IssuerKeySet, IssuerKeys};
use sentryagent_core::{Backend, BackendHealth, Clock, Error, HealthStatus, Result, Timestamp};
use serde::Deserialize;

use crate::guarded::{
    GuardPolicy, address_allowed, guarded_client, guarded_get, host_ip, loopback_host,
};

/// The variable that allows plain HTTP to loopback issuers (`1`).
pub const ALLOW_HTTP_LOOPBACK_ENV: &str = "SENTRYAGENT_FEDERATION_ALLOW_HTTP_LOOPBACK";
/// The variable of the least time between two fetches of an issuer's keys.
pub const MIN_REFETCH_ENV: &str = "SENTRYAGENT_FEDERATION_JWKS_MIN_REFETCH_SECONDS";

/// Shortest time a JWKS is cached.
const MIN_CACHE: Duration = Duration::from_secs(60);
/// Longest time a JWKS is cached.
const MAX_CACHE: Duration = Duration::from_secs(24 * 3600);
/// Cache time of a JWKS answered without `Cache-Control: max-age`.
const DEFAULT_CACHE: Duration = Duration::from_secs(300);
/// Most issuers kept.
const MAX_ISSUERS: usize = 1024;

/// Settings of a [`JwksFetcher`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JwksFetcherConfig {
    /// Allow plain HTTP (and loopback addresses) for loopback issuers.
    /// Development and tests only. Default false.
    pub allow_http_loopback: bool,
    /// Least time between two fetches of one issuer's keys (an unknown
    /// `kid`, or after a failure). Default 60 s.
    pub min_refetch: Duration,
    /// Timeout of each request. Default 5 s.
    pub timeout: Duration,
    /// Largest response body. Default 256 KiB.
    pub max_response_bytes: usize,
    /// How long past their expiry the last good keys of an issuer are used
    /// when refreshing them fails. Default 1 hour.
    pub max_stale: Duration,
}

impl Default for JwksFetcherConfig {
    fn default() -> Self {
        JwksFetcherConfig {
            allow_http_loopback: false,
            min_refetch: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
            max_response_bytes: 256 * 1024,
            max_stale: Duration::from_secs(3600),
        }
    }
}

impl JwksFetcherConfig {
    /// Sets [`allow_http_loopback`](Self::allow_http_loopback).
    pub fn allow_http_loopback(mut self, on: bool) -> Self {
        self.allow_http_loopback = on;
        self
    }

    /// Sets [`min_refetch`](Self::min_refetch).
    pub fn min_refetch(mut self, d: Duration) -> Self {
        self.min_refetch = d;
        self
    }

    /// Sets [`timeout`](Self::timeout).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Sets [`max_response_bytes`](Self::max_response_bytes).
    pub fn max_response_bytes(mut self, n: usize) -> Self {
        self.max_response_bytes = n;
        self
    }

    /// Sets [`max_stale`](Self::max_stale).
    pub fn max_stale(mut self, d: Duration) -> Self {
        self.max_stale = d;
        self
    }
}

/// The cache time a `Cache-Control` value asks for, clamped.
fn cache_time(cache_control: Option<&str>) -> Duration {
    let Some(v) = cache_control else {
        return DEFAULT_CACHE;
    };
    let mut max_age = None;
    for d in v.split(',').map(str::trim) {
        let lower = d.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return MIN_CACHE;
        }
        if let Some(n) = lower.strip_prefix("max-age=") {
            max_age = n.trim_matches('"').parse::<u64>().ok();
        }
    }
    max_age
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_CACHE)
        .clamp(MIN_CACHE, MAX_CACHE)
}

/// The discovery document's members that matter here.
#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// What is known of one issuer.
#[derive(Default)]
struct EntryState {
    /// The last good keys.
    keys: Option<Arc<IssuerKeySet>>,
    /// When they were fetched.
    fetched_at: Option<Timestamp>,
    /// Until when they are fresh.
    fresh_until: Option<Timestamp>,
    /// The last fetch attempt (success or not).
    last_attempt: Option<Timestamp>,
    /// The last failure, if the last attempt failed.
    last_error: Option<String>,
    /// Fetches so far (to tell whether another task fetched meanwhile).
    generation: u64,
}

struct Entry {
    state: Mutex<EntryState>,
    /// Held while fetching: one fetch per issuer at a time.
    fetching: tokio::sync::Mutex<()>,
}

/// What to do with the state of an entry.
enum Plan {
    Use(Arc<IssuerKeySet>),
    Fetch,
    Fail(String),
}

/// An [`IssuerKeys`] over HTTP: OpenID Connect discovery and JWKS, cached.
///
/// - **HTTPS only.** Plain HTTP only to a loopback issuer (`localhost`,
///   `127.0.0.1`, `[::1]`) when [`JwksFetcherConfig::allow_http_loopback`]
///   is on (`SENTRYAGENT_FEDERATION_ALLOW_HTTP_LOOPBACK=1`): for development
///   and tests, never in production.
/// - **No server-side request forgery.** Every address a host name resolves
///   to (a resolver of our own, so the connection goes to an address that
///   was checked) and every IP literal is refused when it is private,
///   loopback (unless allowed as above), link-local (`169.254.169.254`
///   included), unique-local, unspecified, shared (CGNAT), multicast,
///   documentation or otherwise reserved; IPv4 inside IPv6 (mapped, NAT64,
///   6to4) is checked as IPv4. `jwks_uri` must be on the issuer's host, and
///   the discovery document must name the issuer exactly.
/// - **Bounded.** No redirects, no proxy, a 5 s timeout per request and
///   256 KiB per response.
/// - **Cached.** A JWKS is kept for its `Cache-Control` `max-age`, clamped to
///   [60 s, 24 h] (5 minutes without one). A token naming a `kid` the cached
///   set lacks (the issuer rotated its keys) fetches again, at most once per
///   issuer per [`JwksFetcherConfig::min_refetch`]
///   (`SENTRYAGENT_FEDERATION_JWKS_MIN_REFETCH_SECONDS`, default 60); so
///   does a failed fetch, so an unreachable issuer is not asked on every
///   request. Concurrent requests for an issuer share one fetch.
/// - **Degrading, not failing.** When a refresh fails, the last good keys
///   are used for up to [`JwksFetcherConfig::max_stale`] past their expiry,
///   and `/health/detailed` says so (status `degraded`, the issuer and the
///   error).
#[derive(Clone)]
pub struct JwksFetcher {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    config: JwksFetcherConfig,
    clock: Arc<dyn Clock>,
    issuers: Mutex<HashMap<String, Arc<Entry>>>,
}

impl std::fmt::Debug for JwksFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksFetcher")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl JwksFetcher {
    /// A fetcher reading time from `clock` (cache expiry, refetch spacing).
    ///
    /// # Errors
    /// `Internal` if the HTTP client cannot be built.
    pub fn new(config: JwksFetcherConfig, clock: Arc<dyn Clock>) -> Result<JwksFetcher> {
        let http = guarded_client(&GuardPolicy {
            allow_http_loopback: config.allow_http_loopback,
            timeout: config.timeout,
            hosts: Default::default(),
        })?;
        Ok(JwksFetcher {
            inner: Arc::new(Inner {
                http,
                config,
                clock,
                issuers: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The settings.
    pub fn config(&self) -> &JwksFetcherConfig {
        &self.inner.config
    }

    fn entry(&self, issuer: &str) -> Arc<Entry> {
        let mut map = self
            .inner
            .issuers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(e) = map.get(issuer) {
            return e.clone();
        }
        if map.len() >= MAX_ISSUERS {
            // Issuers without keys go first; then any.
            map.retain(|_, e| {
                e.state
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .keys
                    .is_some()
            });
            if map.len() >= MAX_ISSUERS
                && let Some(k) = map.keys().next().cloned()
            {
                map.remove(&k);
            }
        }
        let e = Arc::new(Entry {
            state: Mutex::new(EntryState::default()),
            fetching: tokio::sync::Mutex::new(()),
        });
        map.insert(issuer.to_owned(), e.clone());
        e
    }

    /// What to do for a token naming `kid`, given what is known.
    fn plan(&self, s: &EntryState, kid: Option<&str>, now: Timestamp) -> Plan {
        let c = &self.inner.config;
        let may_fetch = s.last_attempt.is_none_or(|t| now.since(t) >= c.min_refetch);
        let fresh = s.fresh_until.is_some_and(|t| now < t);
        match &s.keys {
            Some(keys) if fresh => {
                if kid.is_none_or(|k| keys.has_kid(k)) || !may_fetch {
                    Plan::Use(keys.clone())
                } else {
                    Plan::Fetch
                }
            }
            _ if may_fetch => Plan::Fetch,
            Some(keys) if self.within_stale(s, now) => Plan::Use(keys.clone()),
            _ => Plan::Fail(
                s.last_error
                    .clone()
                    .unwrap_or_else(|| "the issuer's keys expired".into()),
            ),
        }
    }

    /// Whether stale keys may still be used.
    fn within_stale(&self, s: &EntryState, now: Timestamp) -> bool {
        s.fresh_until
            .is_some_and(|t| now < t.plus(self.inner.config.max_stale))
    }

    /// Checks a URL: `https`, or `http` to a loopback host when allowed; no
    /// user info; an IP literal must be an allowed address.
    fn check_url(&self, raw: &str) -> std::result::Result<Url, String> {
        let allow = self.inner.config.allow_http_loopback;
        let url = Url::parse(raw).map_err(|e| format!("{raw:.200}: not a URL ({e})"))?;
        match url.scheme() {
            "https" => {}
            "http" if allow && loopback_host(&url) => {}
            "http" => {
                return Err(format!(
                    "{url}: plain http is refused (https only; http only to a loopback issuer \
                     with {ALLOW_HTTP_LOOPBACK_ENV}=1)"
                ));
            }
            other => return Err(format!("{url}: scheme {other} is refused")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{url}: user info is refused"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("{url}: no host"));
        }
        if host_ip(&url).is_some_and(|ip| !address_allowed(ip, allow)) {
            return Err(format!("{url}: the address may not be fetched"));
        }
        Ok(url)
    }

    /// GET `url` (see [`guarded_get`]): the body and the `Cache-Control`
    /// value.
    async fn get(&self, url: Url) -> std::result::Result<(Vec<u8>, Option<String>), String> {
        let max = self.inner.config.max_response_bytes;
        guarded_get(&self.inner.http, url, max, "application/json")
            .await
            .map_err(|f| f.detail)
    }

    /// Discovery, then the JWKS; the keys and how long to keep them.
    async fn fetch(&self, issuer: &str) -> std::result::Result<(IssuerKeySet, Duration), String> {
        let issuer_url = self.check_url(issuer)?;
        let discovery = self.check_url(&format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        ))?;
        let (body, _) = self.get(discovery).await?;
        let doc: Discovery = serde_json::from_slice(&body)
            .map_err(|e| format!("the discovery document of {issuer} is not valid: {e}"))?;
        if doc.issuer != issuer {
            return Err(format!(
                "the discovery document of {issuer} names another issuer ({:.200})",
                doc.issuer
            ));
        }
        let jwks_url = self.check_url(&doc.jwks_uri)?;
        let same_host = jwks_url
            .host_str()
            .zip(issuer_url.host_str())
            .is_some_and(|(a, b)| a.eq_ignore_ascii_case(b));
        if !same_host {
            return Err(format!(
                "jwks_uri {jwks_url} is not on the issuer's host; refused"
            ));
        }
        let (body, cache_control) = self.get(jwks_url).await?;
        let keys =
            IssuerKeySet::from_jwks(&body).map_err(|e| format!("the JWKS of {issuer}: {e}"))?;
        Ok((keys, cache_time(cache_control.as_deref())))
    }
}

#[async_trait]
impl Backend for JwksFetcher {
    fn name(&self) -> &'static str {
        "issuer-jwks"
    }

    /// Up while every known issuer has fresh keys; degraded when one is
    /// served from its last good keys past their expiry, or has none after
    /// a failed fetch. Details per issuer: key count, fetch and expiry
    /// times, the last error.
    async fn health(&self) -> BackendHealth {
        let now = self.inner.clock.now();
        let entries: Vec<(String, Arc<Entry>)> = self
            .inner
            .issuers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut h =
            BackendHealth::up(self.name(), Duration::ZERO).with_detail("issuers", entries.len());
        let mut problems: Vec<String> = Vec::new();
        for (issuer, e) in entries {
            let s = e
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let stale = s.fresh_until.is_none_or(|t| now >= t);
            let state = match (&s.keys, stale, &s.last_error) {
                (Some(_), false, _) => "fresh",
                (Some(_), true, _) if self.within_stale(&s, now) => {
                    problems.push(format!(
                        "{issuer}: using the last good keys (fetched {}) after: {}",
                        s.fetched_at.map(Timestamp::to_rfc3339).unwrap_or_default(),
                        s.last_error.as_deref().unwrap_or("no refresh yet")
                    ));
                    "stale"
                }
                (Some(_), true, None) => "expired",
                (_, _, Some(err)) => {
                    problems.push(format!("{issuer}: {err}"));
                    "failing"
                }
                (None, _, None) => "unfetched",
            };
            h.details.insert(
                format!("issuer:{issuer}"),
                serde_json::json!({
                    "state": state,
                    "keys": s.keys.as_ref().map_or(0, |k| k.len()),
                    "fetched_at": s.fetched_at.map(Timestamp::to_rfc3339),
                    "fresh_until": s.fresh_until.map(Timestamp::to_rfc3339),
                    "last_error": s.last_error,
                }),
            );
        }
        if !problems.is_empty() {
            h.status = HealthStatus::Degraded;
            h.error = Some(problems.join("; "));
        }
        h
    }
}

#[async_trait]
impl IssuerKeys for JwksFetcher {
    async fn issuer_keys(&self, issuer: &str, kid: Option<&str>) -> Result<Arc<IssuerKeySet>> {
        let entry = self.entry(issuer);
        let clock = &self.inner.clock;
        let (plan, generation) = {
            let s = entry
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (self.plan(&s, kid, clock.now()), s.generation)
        };
        match plan {
            Plan::Use(keys) => return Ok(keys),
            Plan::Fail(e) => return Err(unavailable(issuer, e)),
            Plan::Fetch => {}
        }
        let _fetching = entry.fetching.lock().await;
        {
            // Another task fetched while this one waited: use its result.
            let s = entry
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if s.generation != generation {
                let now = clock.now();
                return match (&s.keys, &s.last_error) {
                    (Some(k), None) => Ok(k.clone()),
                    (Some(k), Some(_)) if self.within_stale(&s, now) => Ok(k.clone()),
                    (_, e) => Err(unavailable(
                        issuer,
                        e.clone().unwrap_or_else(|| "no keys".into()),
                    )),
                };
            }
        }
        let fetched = self.fetch(issuer).await;
        let now = clock.now();
        let mut s = entry
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.generation += 1;
        s.last_attempt = Some(now);
        match fetched {
            Ok((keys, ttl)) => {
                let keys = Arc::new(keys);
                s.keys = Some(keys.clone());
                s.fetched_at = Some(now);
                s.fresh_until = Some(now.plus(ttl));
                s.last_error = None;
                Ok(keys)
            }
            Err(e) => {
                tracing::warn!(%issuer, error = %e, "fetching an issuer's keys failed");
                s.last_error = Some(e.clone());
                match &s.keys {
                    // Fresh keys that lack a new kid, or stale ones within
                    // the bound: the last good set.
                    Some(k)
                        if s.fresh_until.is_some_and(|t| now < t) || self.within_stale(&s, now) =>
                    {
                        Ok(k.clone())
                    }
                    _ => Err(unavailable(issuer, e)),
                }
            }
        }
    }
}

fn unavailable(issuer: &str, why: String) -> Error {
    Error::Unavailable {
        message: format!("keys of issuer {issuer:.200}: {why}"),
        source: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_times_are_clamped() {
        assert_eq!(cache_time(None), DEFAULT_CACHE);
        assert_eq!(
            cache_time(Some("public, max-age=3600")),
            Duration::from_secs(3600)
        );
        assert_eq!(cache_time(Some("max-age=5")), MIN_CACHE);
        assert_eq!(cache_time(Some("max-age=999999")), MAX_CACHE);
        assert_eq!(cache_time(Some("no-store")), MIN_CACHE);
        assert_eq!(
            cache_time(Some("Max-Age=120, must-revalidate")),
            Duration::from_secs(120)
        );
        assert_eq!(cache_time(Some("max-age=x")), DEFAULT_CACHE);
    }

    #[test]
    fn urls_are_checked() {
        let strict = JwksFetcher::new(
            JwksFetcherConfig::default(),
            Arc::new(sentryagent_core::SystemClock),
        )
        .unwrap();
        let dev = JwksFetcher::new(
            JwksFetcherConfig::default().allow_http_loopback(true),
            Arc::new(sentryagent_core::SystemClock),
        )
        .unwrap();
        assert!(
            strict
                .check_url("https://token.actions.githubusercontent.com")
                .is_ok()
        );
        for bad in [
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://issuer.example",
            "ftp://issuer.example",
            "https://user:pw@issuer.example",
            "https://169.254.169.254/latest",
            "https://[::1]/",
            "https://10.0.0.1/",
            "https://127.0.0.1/",
            "not a url",
        ] {
            assert!(strict.check_url(bad).is_err(), "{bad}");
        }
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:1/x",
            "http://[::1]:9",
            "https://127.0.0.1/",
        ] {
            assert!(dev.check_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://issuer.example",
            "http://10.0.0.1",
            "https://169.254.169.254/",
        ] {
            assert!(dev.check_url(bad).is_err(), "{bad}");
        }
    }
}

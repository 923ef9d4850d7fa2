//! Issuer keys over HTTP, for token exchange: OpenID Connect discovery
//! (`<issuer>/.well-known/openid-configuration`), then its `jwks_uri`,
//! cached per issuer and fetched defensively, since an issuer URL is
//! written by a tenant.
//!
//! The rules are on [`JwksFetcher`].

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Url;
use sentryagent_core::federation::{IssuerKeySet, IssuerKeys};
use sentryagent_core::{Backend, BackendHealth, Clock, Error, HealthStatus, Result, Timestamp};
use serde::Deserialize;

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

/// Whether an address may be fetched from: a public unicast address, or a
/// loopback one when `allow_loopback`.
pub fn address_allowed(ip: IpAddr, allow_loopback: bool) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_allowed(v4, allow_loopback),
        IpAddr::V6(v6) => v6_allowed(v6, allow_loopback),
    }
}

fn v4_allowed(ip: Ipv4Addr, allow_loopback: bool) -> bool {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        return allow_loopback;
    }
    !(a == 0 // "this network", 0.0.0.0 included
        || a == 10
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 169 && b == 254) // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // documentation
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 192 && b == 168)
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // documentation
        || (a == 203 && b == 0 && c == 113) // documentation
        || a >= 224) // multicast, reserved, broadcast
}

fn v6_allowed(ip: Ipv6Addr, allow_loopback: bool) -> bool {
    if ip.is_loopback() {
        return allow_loopback;
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_allowed(v4, allow_loopback);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96): the IPv4 address in the last 32 bits.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        let [.., hi, lo] = s;
        return v4_allowed(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)), false);
    }
    // 6to4 (2002::/16): the IPv4 address in bits 16..48.
    if s[0] == 0x2002 {
        return v4_allowed(
            Ipv4Addr::from((u32::from(s[1]) << 16) | u32::from(s[2])),
            false,
        );
    }
    !(ip.is_unspecified()
        || s[0..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible (deprecated)
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] & 0xff00) == 0xff00 // multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] == 0) // Teredo
        || s[0] == 0x0100) // discard-only
}

/// The address of a URL whose host is an IP literal.
fn host_ip(url: &Url) -> Option<IpAddr> {
    let h = url.host_str()?;
    let h = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h);
    h.parse().ok()
}

/// Whether a URL host is a loopback host name or address.
fn loopback_host(url: &Url) -> bool {
    match host_ip(url) {
        Some(ip) => ip.is_loopback(),
        None => url
            .host_str()
            .is_some_and(|h| h.eq_ignore_ascii_case("localhost")),
    }
}

/// The resolver of the fetcher's client: the system's, keeping only the
/// addresses [`address_allowed`] accepts.
struct GuardedResolver {
    allow_loopback: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_loopback = self.allow_loopback;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| address_allowed(a.ip(), allow_loopback))
                .collect();
            if found.is_empty() {
                return Err(format!("{host} resolves to no address that may be fetched").into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
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
        // reqwest is built without a bundled TLS provider: ring, as the
        // process default (a provider the host installed stays).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .dns_resolver(GuardedResolver {
                allow_loopback: config.allow_http_loopback,
            })
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("sentryagent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::internal("build the JWKS HTTP client", e))?;
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

    /// GET `url`: 200 only (no redirect), at most the configured bytes.
    /// Returns the body and the `Cache-Control` value.
    async fn get(&self, url: Url) -> std::result::Result<(Vec<u8>, Option<String>), String> {
        let max = self.inner.config.max_response_bytes;
        let shown = url.to_string();
        let mut res = self
            .inner
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| {
                let kind = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "connection failed"
                } else {
                    "request failed"
                };
                format!("{shown}: {kind}: {}", error_chain(&e))
            })?;
        let status = res.status();
        if status.is_redirection() {
            return Err(format!(
                "{shown}: answered a redirect ({status}); redirects are not followed"
            ));
        }
        if status != reqwest::StatusCode::OK {
            return Err(format!("{shown}: answered {status}"));
        }
        if res.content_length().is_some_and(|n| n > max as u64) {
            return Err(format!("{shown}: the answer is larger than {max} bytes"));
        }
        let cache_control = res
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        while let Some(chunk) = res
            .chunk()
            .await
            .map_err(|e| format!("{shown}: reading the answer failed: {}", error_chain(&e)))?
        {
            if body.len() + chunk.len() > max {
                return Err(format!("{shown}: the answer is larger than {max} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, cache_control))
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

/// An error with its causes, for logs and health.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
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
    fn refused_addresses() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "2001:db8::1",
            "2001:0:4136:e378::1",
            "::10.0.0.1",
            "100::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(!address_allowed(ip, false), "{ip}");
            assert!(
                !address_allowed(ip, true) || ip.to_string().contains("127"),
                "{ip}"
            );
        }
        for ip in ["127.0.0.1", "127.8.9.1", "::1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(!address_allowed(ip, false), "{ip}");
            assert!(address_allowed(ip, true), "{ip}");
        }
        for ip in [
            "140.82.112.3",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:50c0:8000::154",
            "::ffff:140.82.112.3",
            "64:ff9b::808:808",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(address_allowed(ip, false), "{ip}");
        }
    }

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

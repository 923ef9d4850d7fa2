//! Publisher domain proof files over HTTP, fetched with the same guarded
//! client as issuer discovery.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Url;
use sentryagent_core::Result;
use sentryagent_core::domain_proof::{
    DomainProofFetcher, FetchFailure, FetchFailureKind, WELL_KNOWN_PATH,
};

use crate::guarded::{GuardPolicy, guarded_client, guarded_get};

/// Settings of an [`HttpDomainProofFetcher`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DomainProofFetcherConfig {
    /// Allow loopback addresses, and plain HTTP to names under
    /// `localhost` (RFC 6761: always loopback). Development and tests
    /// only; the same flag as token exchange's
    /// (`SENTRYAGENT_FEDERATION_ALLOW_HTTP_LOOPBACK`). Default false.
    pub allow_http_loopback: bool,
    /// Timeout of the request. Default 5 s.
    pub timeout: Duration,
    /// Largest proof file. Default 64 KiB.
    pub max_response_bytes: usize,
    /// Addresses of names given instead of the system's resolver
    /// (development and tests): the address policy still applies, and a
    /// port other than 0 replaces the default one. Default none.
    pub hosts: HashMap<String, Vec<SocketAddr>>,
}

impl Default for DomainProofFetcherConfig {
    fn default() -> Self {
        DomainProofFetcherConfig {
            allow_http_loopback: false,
            timeout: Duration::from_secs(5),
            max_response_bytes: 64 * 1024,
            hosts: HashMap::new(),
        }
    }
}

impl DomainProofFetcherConfig {
    /// Sets [`allow_http_loopback`](Self::allow_http_loopback).
    pub fn allow_http_loopback(mut self, on: bool) -> Self {
        self.allow_http_loopback = on;
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

    /// Adds an entry to [`hosts`](Self::hosts).
    pub fn host(mut self, name: impl Into<String>, addr: SocketAddr) -> Self {
        self.hosts
            .entry(name.into().to_ascii_lowercase())
            .or_default()
            .push(addr);
        self
    }
}

/// A [`DomainProofFetcher`] over HTTP: GET
/// `https://<domain>/.well-known/sentryagent-publisher.txt` with the
/// guarded client of issuer discovery ([`JwksFetcher`](crate::JwksFetcher)):
///
/// - **HTTPS only.** Plain HTTP only to a name under `localhost`
///   (`acme.localhost`) when [`DomainProofFetcherConfig::allow_http_loopback`]
///   is on, for development and tests.
/// - **No server-side request forgery.** Every address the domain resolves
///   to must be public: private, loopback (unless allowed as above),
///   link-local, unique-local, unspecified, shared, multicast and reserved
///   addresses are refused ([`address_allowed`](crate::address_allowed)).
/// - **Bounded.** No redirects, no proxy, a 5 s timeout and 64 KiB by
///   default.
#[derive(Debug, Clone)]
pub struct HttpDomainProofFetcher {
    http: reqwest::Client,
    config: DomainProofFetcherConfig,
}

impl HttpDomainProofFetcher {
    /// A fetcher with `config`.
    ///
    /// # Errors
    /// `Internal` if the HTTP client cannot be built.
    pub fn new(config: DomainProofFetcherConfig) -> Result<Self> {
        let http = guarded_client(&GuardPolicy {
            allow_http_loopback: config.allow_http_loopback,
            timeout: config.timeout,
            hosts: config.hosts.clone(),
        })?;
        Ok(HttpDomainProofFetcher { http, config })
    }

    /// The settings.
    pub fn config(&self) -> &DomainProofFetcherConfig {
        &self.config
    }

    /// The URL fetched for `domain`.
    fn url(&self, domain: &str) -> std::result::Result<Url, FetchFailure> {
        let local = domain == "localhost" || domain.ends_with(".localhost");
        let scheme = if local && self.config.allow_http_loopback {
            "http"
        } else {
            "https"
        };
        Url::parse(&format!("{scheme}://{domain}{WELL_KNOWN_PATH}")).map_err(|e| {
            FetchFailure::new(
                FetchFailureKind::Refused,
                format!("{domain:.260}: not a URL host ({e})"),
            )
        })
    }
}

#[async_trait]
impl DomainProofFetcher for HttpDomainProofFetcher {
    async fn fetch_proof_file(&self, domain: &str) -> std::result::Result<Vec<u8>, FetchFailure> {
        let url = self.url(domain)?;
        let (body, _) = guarded_get(
            &self.http,
            url,
            self.config.max_response_bytes,
            "text/plain",
        )
        .await?;
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_localhost_names_in_development() {
        let strict = HttpDomainProofFetcher::new(DomainProofFetcherConfig::default()).unwrap();
        let dev = HttpDomainProofFetcher::new(
            DomainProofFetcherConfig::default().allow_http_loopback(true),
        )
        .unwrap();
        assert_eq!(
            strict.url("acme.example").unwrap().as_str(),
            "https://acme.example/.well-known/sentryagent-publisher.txt"
        );
        assert_eq!(strict.url("acme.localhost").unwrap().scheme(), "https");
        assert_eq!(dev.url("acme.example").unwrap().scheme(), "https");
        assert_eq!(dev.url("acme.localhost").unwrap().scheme(), "http");
        assert_eq!(dev.url("notlocalhost.example").unwrap().scheme(), "https");
    }
}

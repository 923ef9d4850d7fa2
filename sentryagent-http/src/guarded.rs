//! The guarded HTTP client of every fetch whose target a tenant names
//! (issuer discovery and JWKS for token exchange, publisher domain proofs):
//! the address policy ([`address_allowed`]), a resolver that applies it to
//! every address a name resolves to (so the connection goes to an address
//! that was checked), no redirects, no proxy, a timeout and a body cap.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use sentryagent_core::domain_proof::{FetchFailure, FetchFailureKind};
use sentryagent_core::{Error, Result};

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
pub(crate) fn host_ip(url: &Url) -> Option<IpAddr> {
    let h = url.host_str()?;
    let h = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h);
    h.parse().ok()
}

/// Whether a URL host is a loopback host name or address.
pub(crate) fn loopback_host(url: &Url) -> bool {
    match host_ip(url) {
        Some(ip) => ip.is_loopback(),
        None => url
            .host_str()
            .is_some_and(|h| h.eq_ignore_ascii_case("localhost")),
    }
}

/// What a guarded client allows.
#[derive(Debug, Clone, Default)]
pub(crate) struct GuardPolicy {
    /// Allow loopback addresses (development and tests).
    pub(crate) allow_http_loopback: bool,
    /// Timeout of each request (and of connecting).
    pub(crate) timeout: Duration,
    /// Addresses of names given by the host instead of the system's
    /// resolver (development and tests); the address policy still applies.
    /// A port other than 0 replaces the URL's default port.
    pub(crate) hosts: HashMap<String, Vec<SocketAddr>>,
}

/// The error of a name whose addresses the policy refuses all.
#[derive(Debug)]
pub(crate) struct AddressRefused(String);

impl std::fmt::Display for AddressRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} resolves to no address that may be fetched", self.0)
    }
}

impl std::error::Error for AddressRefused {}

/// The resolver of a guarded client: the host's entries or the system's
/// resolver, keeping only the addresses [`address_allowed`] accepts.
struct GuardedResolver {
    allow_loopback: bool,
    hosts: Arc<HashMap<String, Vec<SocketAddr>>>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_loopback = self.allow_loopback;
        let host = name.as_str().to_ascii_lowercase();
        let given = self.hosts.get(&host).cloned();
        Box::pin(async move {
            let all: Vec<SocketAddr> = match given {
                Some(addrs) => addrs,
                None => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            let found: Vec<SocketAddr> = all
                .into_iter()
                .filter(|a| address_allowed(a.ip(), allow_loopback))
                .collect();
            if found.is_empty() {
                return Err(Box::new(AddressRefused(host)) as Box<_>);
            }
            let addrs: reqwest::dns::Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

/// A client under `policy`: the guarded resolver, no redirects, no proxy,
/// the timeout for connecting and for each request.
///
/// # Errors
/// `Internal` if the client cannot be built.
pub(crate) fn guarded_client(policy: &GuardPolicy) -> Result<reqwest::Client> {
    // reqwest is built without a bundled TLS provider: ring, as the
    // process default (a provider the host installed stays).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .dns_resolver(GuardedResolver {
            allow_loopback: policy.allow_http_loopback,
            hosts: Arc::new(
                policy
                    .hosts
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                    .collect(),
            ),
        })
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(policy.timeout)
        .connect_timeout(policy.timeout)
        .user_agent(concat!("sentryagent/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::internal("build the guarded HTTP client", e))
}

/// GET `url` with a guarded client: status 200 only (a redirect is not
/// followed), at most `max` bytes. Returns the body and the
/// `Cache-Control` value; a failure says what kind it is, and its detail
/// (for logs and audit) says more.
pub(crate) async fn guarded_get(
    http: &reqwest::Client,
    url: Url,
    max: usize,
    accept: &str,
) -> std::result::Result<(Vec<u8>, Option<String>), FetchFailure> {
    let shown = url.to_string();
    let mut res = http
        .get(url)
        .header(reqwest::header::ACCEPT, accept)
        .send()
        .await
        .map_err(|e| {
            let (kind, what) = if refused(&e) {
                (FetchFailureKind::Refused, "refused by the address policy")
            } else if e.is_timeout() {
                (FetchFailureKind::Timeout, "timed out")
            } else if e.is_connect() {
                (FetchFailureKind::Unreachable, "connection failed")
            } else {
                (FetchFailureKind::Unreachable, "request failed")
            };
            FetchFailure::new(kind, format!("{shown}: {what}: {}", error_chain(&e)))
        })?;
    let status = res.status();
    if status.is_redirection() {
        return Err(FetchFailure::new(
            FetchFailureKind::Redirect,
            format!("{shown}: answered a redirect ({status}); redirects are not followed"),
        ));
    }
    if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::GONE {
        return Err(FetchFailure::new(
            FetchFailureKind::NotFound,
            format!("{shown}: answered {status}"),
        ));
    }
    if status != reqwest::StatusCode::OK {
        return Err(FetchFailure::new(
            FetchFailureKind::Status(status.as_u16()),
            format!("{shown}: answered {status}"),
        ));
    }
    let too_large = || {
        FetchFailure::new(
            FetchFailureKind::TooLarge,
            format!("{shown}: the answer is larger than {max} bytes"),
        )
    };
    if res.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let cache_control = res
        .headers()
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = Vec::new();
    loop {
        let chunk = res.chunk().await.map_err(|e| {
            let kind = if e.is_timeout() {
                FetchFailureKind::Timeout
            } else {
                FetchFailureKind::Unreachable
            };
            FetchFailure::new(
                kind,
                format!("{shown}: reading the answer failed: {}", error_chain(&e)),
            )
        })?;
        let Some(chunk) = chunk else { break };
        if body.len() + chunk.len() > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, cache_control))
}

/// Whether a request failed because the address policy refused every
/// address of the name.
fn refused(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<AddressRefused>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// An error with its causes, for logs and health.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
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
}

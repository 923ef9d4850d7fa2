//! Publisher domain proofs: a publisher shows it controls a domain by
//! serving a token the IdP gave it at
//! `https://<domain>/.well-known/sentryagent-publisher.txt`.
//!
//! The steps are [`Idp::start_publisher_domain_proof`](crate::Idp::start_publisher_domain_proof)
//! (the token and instructions) and
//! [`Idp::verify_publisher_domain`](crate::Idp::verify_publisher_domain)
//! (fetch the file, look for the token, mark the publisher verified).
//!
//! The core holds no HTTP client: the file is fetched by a
//! [`DomainProofFetcher`] the host passes to
//! [`IdpBuilder::domain_proofs`](crate::IdpBuilder::domain_proofs), such as
//! the HTTP adapter's, which applies the same address policy as issuer
//! discovery (HTTPS only, no private, loopback or link-local addresses, no
//! redirects, bounded time and size).
//!
//! # Tokens
//!
//! A token is `sa_dp_` and the base64url form of its issue time (8 bytes)
//! and an HMAC-SHA256 (truncated to 192 bits) under the deployment's secret
//! hashing key over the tenant id, the domain and that time. Nothing is
//! stored when a proof starts: the MAC binds the token to the tenant and
//! the domain, so a token served for one tenant proves nothing for
//! another, and its issue time gives its expiry ([`PROOF_TTL`]). The MAC
//! makes it unguessable without the key (more than 128 bits), and it is
//! compared in constant time. It is not a secret: it is meant to be
//! published. The price of storing nothing is that a token cannot be
//! withdrawn before it expires; since it proves only the control of the
//! very domain it names, for the very tenant it was issued to, a leaked
//! token gives nothing to anyone else.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Error, Result, Timestamp};

/// Where the token is served on the domain.
pub const WELL_KNOWN_PATH: &str = "/.well-known/sentryagent-publisher.txt";

/// How long a token may be used to verify.
pub const PROOF_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The prefix of tokens.
pub const TOKEN_PREFIX: &str = "sa_dp_";

/// The longest domain name (RFC 1035).
pub const MAX_DOMAIN_LEN: usize = 253;

/// The URL of the proof file of `domain`.
pub fn proof_url(domain: &str) -> String {
    format!("https://{domain}{WELL_KNOWN_PATH}")
}

/// Checks and normalizes a domain name: ASCII (an internationalized name in
/// its `xn--` form), lowercase, at least two labels of 1 to 63 letters,
/// digits and inner hyphens, at most [`MAX_DOMAIN_LEN`] characters, a
/// top-level label that is not all digits; no IP literal, port, path, user
/// or scheme. One trailing dot is dropped.
///
/// # Errors
/// [`Error::Invalid`] (field `domain`) saying which rule was broken.
pub fn validate_domain(raw: &str) -> Result<String> {
    let bad = |why: &str| Error::invalid("domain", why.to_owned());
    if raw.is_empty() {
        return Err(bad("must not be empty"));
    }
    if raw.len() > MAX_DOMAIN_LEN + 1 {
        return Err(bad("at most 253 characters"));
    }
    if !raw.is_ascii() {
        return Err(bad(
            "must be ASCII: give an internationalized name in its xn-- (punycode) form",
        ));
    }
    if raw.contains("://") || raw.contains('/') {
        return Err(bad("a host name only, without scheme or path"));
    }
    if raw.contains('@') {
        return Err(bad("a host name only, without user"));
    }
    if raw.starts_with('[') || raw.contains(':') {
        return Err(bad("a host name without port; IP addresses are refused"));
    }
    let d = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
    if d.len() > MAX_DOMAIN_LEN {
        return Err(bad("at most 253 characters"));
    }
    let labels: Vec<&str> = d.split('.').collect();
    if labels.len() < 2 {
        return Err(bad("a fully qualified name of at least two labels"));
    }
    for l in &labels {
        let ok = (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-');
        if !ok {
            return Err(bad(
                "labels of 1 to 63 letters, digits and inner hyphens, separated by dots",
            ));
        }
    }
    if labels
        .last()
        .is_some_and(|t| t.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad("IP addresses are refused; give a domain name"));
    }
    Ok(d)
}

/// The host of a website URL, lowercase, without port, user or trailing
/// dot (`None` if it has none).
pub fn website_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        host_port.split_inclusive(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// What a publisher does to prove control of a domain, returned by
/// [`Idp::start_publisher_domain_proof`](crate::Idp::start_publisher_domain_proof).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "domain": "acme.example",
    "token": "sa_dp_AAAAAGlQ1pBQ5y1N3m9HnE6dWl2S3k0qvH2o6Xg0b9Q",
    "url": "https://acme.example/.well-known/sentryagent-publisher.txt",
    "expires_at": "2026-12-10T08:00:00Z",
    "instructions": "Serve the token on a line of its own at https://acme.example/.well-known/sentryagent-publisher.txt ..."
})))]
pub struct DomainProofChallenge {
    /// The domain (normalized).
    pub domain: String,
    /// The token to serve.
    pub token: String,
    /// Where to serve it.
    pub url: String,
    /// Until when it can be verified.
    pub expires_at: Timestamp,
    /// What to do, in words.
    pub instructions: String,
}

/// Why fetching a proof file failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchFailureKind {
    /// The server answered 404 or 410.
    NotFound,
    /// The server answered another status than 200.
    Status(u16),
    /// The server answered a redirect (redirects are not followed).
    Redirect,
    /// The answer is larger than the fetcher accepts.
    TooLarge,
    /// The address policy refused the domain (it resolves to no public
    /// address, or plain HTTP was needed and is not allowed).
    Refused,
    /// The server did not answer in time.
    Timeout,
    /// The domain could not be resolved or connected to.
    Unreachable,
}

/// A failed fetch of a proof file: its kind, and details for the audit
/// trail only (addresses, library errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchFailure {
    /// What went wrong.
    pub kind: FetchFailureKind,
    /// Details for the audit trail, never shown to the caller.
    pub detail: String,
}

impl FetchFailure {
    /// A failure of `kind` with `detail`.
    pub fn new(kind: FetchFailureKind, detail: impl Into<String>) -> Self {
        FetchFailure {
            kind,
            detail: detail.into(),
        }
    }
}

/// Fetches `https://<domain>/.well-known/sentryagent-publisher.txt` for
/// domain proofs. Implementations must refuse addresses a tenant must not
/// make the IdP reach (private, loopback, link-local, unique-local,
/// unspecified), must not follow redirects, and must bound time and size.
#[async_trait]
pub trait DomainProofFetcher: Send + Sync + std::fmt::Debug {
    /// The body of the proof file of `domain` (a name
    /// [`validate_domain`] accepted), answered with status 200.
    async fn fetch_proof_file(&self, domain: &str) -> std::result::Result<Vec<u8>, FetchFailure>;
}

/// Why a domain proof failed, as the caller is told (a stable code and a
/// sentence that reveals nothing about the network).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProofFailure {
    /// The file is not there (404, 410).
    NotFound,
    /// The file answered another status or a redirect.
    BadAnswer,
    /// The file is larger than accepted.
    TooLarge,
    /// The file holds no valid token of this tenant for this domain.
    TokenAbsent,
    /// The file holds this tenant's token for this domain, but it expired.
    TokenExpired,
    /// The address policy refused to fetch from the domain.
    Refused,
    /// The domain did not answer in time.
    Timeout,
    /// The domain could not be reached.
    Unreachable,
}

impl ProofFailure {
    /// The stable code (`not_found`, `bad_answer`, `too_large`,
    /// `token_absent`, `token_expired`, `refused`, `timeout`,
    /// `unreachable`).
    pub fn code(self) -> &'static str {
        match self {
            ProofFailure::NotFound => "not_found",
            ProofFailure::BadAnswer => "bad_answer",
            ProofFailure::TooLarge => "too_large",
            ProofFailure::TokenAbsent => "token_absent",
            ProofFailure::TokenExpired => "token_expired",
            ProofFailure::Refused => "refused",
            ProofFailure::Timeout => "timeout",
            ProofFailure::Unreachable => "unreachable",
        }
    }

    /// What the caller is told about `url`.
    pub fn message(self, url: &str) -> String {
        let what = match self {
            ProofFailure::NotFound => format!("{url} was not found"),
            ProofFailure::BadAnswer => {
                format!("{url} did not answer 200 with the file (redirects are not followed)")
            }
            ProofFailure::TooLarge => format!("{url} is too large"),
            ProofFailure::TokenAbsent => format!(
                "{url} holds no valid token of this tenant for this domain; start a proof and \
                 serve its token on a line of its own"
            ),
            ProofFailure::TokenExpired => {
                format!("the token at {url} expired; start a new proof")
            }
            ProofFailure::Refused => format!(
                "fetching {url} is refused by policy (only public addresses over HTTPS are \
                 fetched)"
            ),
            ProofFailure::Timeout => format!("{url} did not answer in time"),
            ProofFailure::Unreachable => format!("{url} could not be reached"),
        };
        format!("domain proof failed ({}): {what}", self.code())
    }
}

impl From<FetchFailureKind> for ProofFailure {
    fn from(k: FetchFailureKind) -> Self {
        match k {
            FetchFailureKind::NotFound => ProofFailure::NotFound,
            FetchFailureKind::Status(_) | FetchFailureKind::Redirect => ProofFailure::BadAnswer,
            FetchFailureKind::TooLarge => ProofFailure::TooLarge,
            FetchFailureKind::Refused => ProofFailure::Refused,
            FetchFailureKind::Timeout => ProofFailure::Timeout,
            FetchFailureKind::Unreachable => ProofFailure::Unreachable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_validated_and_normalized() {
        for (raw, want) in [
            ("acme.example", "acme.example"),
            ("Acme.Example.", "acme.example"),
            ("a-b.c-d.example", "a-b.c-d.example"),
            ("xn--zrich-kva.example", "xn--zrich-kva.example"),
            ("www.acme.co.uk", "www.acme.co.uk"),
            ("1.example", "1.example"),
        ] {
            assert_eq!(validate_domain(raw).unwrap(), want, "{raw}");
        }
        let long_label = format!("{}.example", "a".repeat(64));
        let long_name = format!("{}example", "abcdefghi.".repeat(25));
        for raw in [
            "",
            "localhost",
            "acme",
            "acme.example:443",
            "https://acme.example",
            "acme.example/x",
            "user@acme.example",
            "127.0.0.1",
            "10.0.0.1",
            "[::1]",
            "::1",
            "zürich.example",
            "-acme.example",
            "acme-.example",
            "acme..example",
            ".acme.example",
            "acme.example..",
            "ac me.example",
            "acme_x.example",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            let e = validate_domain(raw).unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::Invalid {
                        field: "domain",
                        ..
                    }
                ),
                "{raw}: {e}"
            );
        }
    }

    #[test]
    fn website_hosts() {
        for (url, want) in [
            ("https://acme.example", Some("acme.example")),
            ("https://Acme.Example./about?x#y", Some("acme.example")),
            ("http://u:p@acme.example:8443/", Some("acme.example")),
            ("https://[::1]:8/", Some("[::1]")),
            ("https://", None),
        ] {
            assert_eq!(website_host(url).as_deref(), want, "{url}");
        }
    }

    #[test]
    fn failure_messages_name_the_code_and_not_the_network() {
        let url = proof_url("acme.example");
        assert_eq!(
            url,
            "https://acme.example/.well-known/sentryagent-publisher.txt"
        );
        let m = ProofFailure::from(FetchFailureKind::Refused).message(&url);
        assert!(m.contains("(refused)"), "{m}");
        assert_eq!(
            ProofFailure::from(FetchFailureKind::Status(500)),
            ProofFailure::BadAnswer
        );
        assert_eq!(
            ProofFailure::from(FetchFailureKind::Redirect).code(),
            "bad_answer"
        );
    }
}

//! Publisher domain proofs (the rules are in [`crate::domain_proof`]).
//!
//! A proof is kept only while the publisher's website is on the proven
//! domain: [`Idp::update_publisher`] drops it (and the verified flag) when
//! the website moves to another host. The display name may change freely.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq as _;

use super::{Caller, Idp};
use crate::audit::Outcome;
use crate::credentials::AdminScope;
use crate::domain_proof::{
    DomainProofChallenge, PROOF_TTL, ProofFailure, TOKEN_PREFIX, proof_url, validate_domain,
    website_host,
};
use crate::ratelimit::Quota;
use crate::tenant::PublisherVerification;
use crate::{Error, Result, Tenant, TenantId, Timestamp};

/// Verification attempts per tenant: 10 an hour (each one makes the IdP
/// fetch from the network).
pub const DOMAIN_PROOF_ATTEMPTS: Quota = Quota::new(10, std::time::Duration::from_secs(3600));

/// Bytes of the MAC in a token (192 bits).
const MAC_BYTES: usize = 24;
/// Token lines of a proof file looked at, at most.
const MAX_TOKEN_LINES: usize = 64;

/// What a proof file says for a tenant and domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenCheck {
    /// A current token of this tenant for this domain.
    Valid,
    /// Only expired ones.
    Expired,
    /// None.
    Absent,
}

/// Refuses a domain that is not the host of the publisher's website (when
/// it has one).
fn check_website(tenant: &Tenant, domain: &str) -> Result<()> {
    match tenant.publisher.website.as_deref().map(website_host) {
        None => Ok(()),
        Some(Some(h)) if h == domain => Ok(()),
        Some(_) => Err(Error::invalid(
            "domain",
            "not the host of the publisher's website; change the website to this domain first",
        )),
    }
}

impl Idp {
    /// The MAC of a token of `tenant` for `domain` issued at `issued_at`.
    fn domain_proof_mac(&self, tenant: &TenantId, domain: &str, issued_at: i64) -> [u8; MAC_BYTES] {
        let full = self
            .inner
            .hasher
            .hash(&format!(
                "publisher-domain-proof\0{tenant}\0{domain}\0{issued_at}"
            ))
            .0;
        let mut out = [0u8; MAC_BYTES];
        out.copy_from_slice(&full[..MAC_BYTES]);
        out
    }

    /// A token of `tenant` for `domain` issued at `issued_at` (seconds).
    pub(crate) fn domain_proof_token(
        &self,
        tenant: &TenantId,
        domain: &str,
        issued_at: i64,
    ) -> String {
        let mut raw = Vec::with_capacity(8 + MAC_BYTES);
        raw.extend_from_slice(&issued_at.to_be_bytes());
        raw.extend_from_slice(&self.domain_proof_mac(tenant, domain, issued_at));
        format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw))
    }

    /// Looks for a token of `tenant` for `domain` on the lines of `body`
    /// (each trimmed; other lines ignored), valid at now.
    pub(crate) fn check_domain_proof(
        &self,
        tenant: &TenantId,
        domain: &str,
        body: &[u8],
    ) -> TokenCheck {
        let now = self.now();
        let text = String::from_utf8_lossy(body);
        let mut found = TokenCheck::Absent;
        let candidates = text
            .lines()
            .map(str::trim)
            .filter_map(|l| l.strip_prefix(TOKEN_PREFIX))
            .take(MAX_TOKEN_LINES);
        for encoded in candidates {
            let Ok(raw) = URL_SAFE_NO_PAD.decode(encoded) else {
                continue;
            };
            if raw.len() != 8 + MAC_BYTES {
                continue;
            }
            let (time, mac) = raw.split_at(8);
            let issued_at = i64::from_be_bytes(time.try_into().unwrap_or_default());
            let expected = self.domain_proof_mac(tenant, domain, issued_at);
            if !bool::from(expected.ct_eq(mac)) {
                continue;
            }
            let issued = Timestamp::from_unix_secs(issued_at);
            if issued > now.plus(self.config().leeway) {
                continue;
            }
            if now >= issued.plus(PROOF_TTL) {
                found = TokenCheck::Expired;
                continue;
            }
            return TokenCheck::Valid;
        }
        found
    }

    /// Starts a proof that the tenant's publisher controls `domain`: a
    /// token to serve at `https://<domain>/.well-known/sentryagent-publisher.txt`
    /// for [`PROOF_TTL`], then [`verify_publisher_domain`](Self::verify_publisher_domain).
    /// Nothing is stored (see [`crate::domain_proof`]); audited as
    /// `tenant.publisher_domain_proof_started`.
    ///
    /// # Errors
    /// [`Error::Invalid`] (field `domain`) for a malformed domain or one
    /// that is not the host of the publisher's website (when it has one);
    /// `Forbidden`/`NotFound` outside the caller's reach or without
    /// [`AdminScope::Admin`].
    pub async fn start_publisher_domain_proof(
        &self,
        caller: &Caller,
        id: &TenantId,
        domain: &str,
    ) -> Result<DomainProofChallenge> {
        caller.reach(id, "tenant")?;
        caller.require(AdminScope::Admin)?;
        let domain = validate_domain(domain)?;
        let tenant = self.inner.store.tenants.get_tenant(id).await?;
        check_website(&tenant, &domain)?;
        let issued_at = self.now().unix_secs();
        let token = self.domain_proof_token(id, &domain, issued_at);
        let expires_at = Timestamp::from_unix_secs(issued_at).plus(PROOF_TTL);
        let url = proof_url(&domain);
        let mut ev = self.event(
            Some(id),
            &caller.actor,
            "tenant.publisher_domain_proof_started",
            Some(id.as_str()),
            Outcome::Success,
            &caller.request,
        );
        ev.details.insert("domain".into(), domain.clone());
        ev.details
            .insert("expires_at".into(), expires_at.to_rfc3339());
        self.audit(ev).await?;
        let instructions = format!(
            "Serve the token on a line of its own at {url} (HTTPS, status 200, no redirect; \
             other lines are ignored), then ask for verification \
             (POST /v1/tenants/{id}/publisher/domain-proofs/verify with {{\"domain\": \
             \"{domain}\"}}) before {}. The proof holds while the publisher's website is on \
             {domain}.",
            expires_at.to_rfc3339()
        );
        Ok(DomainProofChallenge {
            domain,
            token,
            url,
            expires_at,
            instructions,
        })
    }

    /// Verifies a domain proof: fetches the proof file of `domain` with
    /// the configured [`DomainProofFetcher`](crate::domain_proof::DomainProofFetcher)
    /// and looks for a current token of this tenant for this domain. On
    /// success the publisher is verified (`verification`: method `domain`,
    /// the domain, the time), its website set to `https://<domain>` if it
    /// had none, audited as `tenant.publisher_domain_proof_verified`; on
    /// failure nothing changes (an earlier verification stays) and
    /// `tenant.publisher_domain_proof_failed` records the reason with its
    /// details. Attempts are limited per tenant ([`DOMAIN_PROOF_ATTEMPTS`]).
    ///
    /// # Errors
    /// [`Error::Invalid`] (field `domain`) for a malformed domain, one that
    /// is not the website's host, or a failed proof (the reason says which,
    /// with a stable code: see [`ProofFailure`]); `RateLimited`;
    /// [`Error::NotConfigured`] without a fetcher; as
    /// [`start_publisher_domain_proof`](Self::start_publisher_domain_proof)
    /// for reach and scope.
    pub async fn verify_publisher_domain(
        &self,
        caller: &Caller,
        id: &TenantId,
        domain: &str,
    ) -> Result<Tenant> {
        caller.reach(id, "tenant")?;
        caller.require(AdminScope::Admin)?;
        let domain = validate_domain(domain)?;
        let tenant = self.inner.store.tenants.get_tenant(id).await?;
        check_website(&tenant, &domain)?;
        let fetcher = self
            .inner
            .domain_proofs
            .clone()
            .ok_or_else(|| Error::NotConfigured {
                message: "no domain proof fetcher is configured".into(),
            })?;
        self.throttle(
            &format!("publisher-domain-proof:{id}"),
            &DOMAIN_PROOF_ATTEMPTS,
            1,
        )
        .await?;
        let url = proof_url(&domain);
        let outcome = match fetcher.fetch_proof_file(&domain).await {
            Err(f) => Err((ProofFailure::from(f.kind), f.detail)),
            Ok(body) => match self.check_domain_proof(id, &domain, &body) {
                TokenCheck::Valid => Ok(()),
                TokenCheck::Expired => Err((
                    ProofFailure::TokenExpired,
                    "only expired tokens of this tenant".to_owned(),
                )),
                TokenCheck::Absent => Err((
                    ProofFailure::TokenAbsent,
                    format!("{} bytes without a token of this tenant", body.len()),
                )),
            },
        };
        if let Err((failure, detail)) = outcome {
            let mut ev = self.event(
                Some(id),
                &caller.actor,
                "tenant.publisher_domain_proof_failed",
                Some(id.as_str()),
                Outcome::Failure,
                &caller.request,
            );
            ev.details.insert("domain".into(), domain.clone());
            ev.details.insert("reason".into(), failure.code().into());
            ev.details
                .insert("detail".into(), detail.chars().take(500).collect());
            self.audit(ev).await?;
            return Err(Error::invalid("domain", failure.message(&url)));
        }
        let at = Timestamp::from_unix_secs(self.now().unix_secs());
        self.change_tenant_with(
            id,
            &caller.actor,
            "tenant.publisher_domain_proof_verified",
            &caller.request,
            &[("domain", domain.as_str())],
            |t| {
                // The website may have moved meanwhile.
                check_website(t, &domain)?;
                if t.publisher.website.is_none() {
                    t.publisher.website = Some(format!("https://{domain}"));
                }
                t.publisher.verified = true;
                t.publisher.verification = Some(PublisherVerification::domain(&domain, at));
                Ok(true)
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain_proof::{FetchFailure, FetchFailureKind};
    use crate::tenant::PublisherVerificationMethod;
    use crate::{ManualClock, NewTenant, SystemClock};
    use std::sync::Arc;

    async fn idp() -> (Idp, ManualClock, Tenant) {
        let clock = ManualClock::new(crate::Clock::now(&SystemClock));
        let idp = Idp::builder("https://idp.example")
            .clock(Arc::new(clock.clone()))
            .build()
            .await
            .unwrap();
        let t = idp
            .create_tenant(
                &Caller::system(),
                NewTenant {
                    name: "Acme".into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        (idp, clock, t)
    }

    #[tokio::test]
    async fn tokens_are_bound_to_tenant_domain_and_time() {
        let (idp, clock, t) = idp().await;
        let other = TenantId::generate();
        let now = idp.now().unix_secs();
        let token = idp.domain_proof_token(&t.id, "acme.example", now);
        assert!(token.starts_with(TOKEN_PREFIX));
        assert!(token.len() >= TOKEN_PREFIX.len() + 43, "{token}");
        let file = format!("# other lines are ignored\n  {token}  \r\nsa_dp_garbage\n");
        let check = |tenant: &TenantId, domain: &str, body: &str| {
            idp.check_domain_proof(tenant, domain, body.as_bytes())
        };
        assert_eq!(check(&t.id, "acme.example", &file), TokenCheck::Valid);
        assert_eq!(check(&other, "acme.example", &file), TokenCheck::Absent);
        assert_eq!(check(&t.id, "other.example", &file), TokenCheck::Absent);
        assert_eq!(check(&t.id, "acme.example", ""), TokenCheck::Absent);
        // One character changed.
        let mut bad = token.clone().into_bytes();
        let last = bad.len() - 2;
        bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bad).unwrap();
        assert_eq!(check(&t.id, "acme.example", &bad), TokenCheck::Absent);
        // Another issue time with the same MAC.
        let forged = idp.domain_proof_token(&t.id, "acme.example", now - 1);
        let mac = &token[TOKEN_PREFIX.len() + 11..];
        let forged = format!("{}{mac}", &forged[..TOKEN_PREFIX.len() + 11]);
        assert_eq!(check(&t.id, "acme.example", &forged), TokenCheck::Absent);
        // A different deployment key.
        let elsewhere = Idp::builder("https://idp.example").build().await.unwrap();
        assert_eq!(
            elsewhere.check_domain_proof(&t.id, "acme.example", file.as_bytes()),
            TokenCheck::Absent
        );
        // Expiry.
        clock.advance(PROOF_TTL - std::time::Duration::from_secs(2));
        assert_eq!(check(&t.id, "acme.example", &file), TokenCheck::Valid);
        clock.advance(std::time::Duration::from_secs(2));
        assert_eq!(check(&t.id, "acme.example", &file), TokenCheck::Expired);
        let fresh = idp.domain_proof_token(&t.id, "acme.example", idp.now().unix_secs());
        let both = format!("{token}\n{fresh}\n");
        assert_eq!(check(&t.id, "acme.example", &both), TokenCheck::Valid);
    }

    /// Serves one body for every domain, or fails as told.
    #[derive(Debug)]
    struct Served(std::sync::Mutex<std::result::Result<String, FetchFailure>>);

    #[async_trait::async_trait]
    impl crate::domain_proof::DomainProofFetcher for Served {
        async fn fetch_proof_file(
            &self,
            _domain: &str,
        ) -> std::result::Result<Vec<u8>, FetchFailure> {
            self.0.lock().unwrap().clone().map(String::into_bytes)
        }
    }

    fn publisher_update(website: Option<&str>, verified: Option<bool>) -> crate::PublisherUpdate {
        crate::PublisherUpdate {
            display_name: "Acme".into(),
            website: website.map(str::to_owned),
            verified,
        }
    }

    #[tokio::test]
    async fn verification_follows_the_proof_and_the_website() {
        let served = Arc::new(Served(std::sync::Mutex::new(Err(FetchFailure::new(
            FetchFailureKind::Refused,
            "10.0.0.1",
        )))));
        let idp = Idp::builder("https://idp.example")
            .domain_proofs(served.clone())
            .build()
            .await
            .unwrap();
        let op = Caller::system();
        let t = idp
            .create_tenant(
                &op,
                NewTenant {
                    name: "Acme".into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let c = idp
            .start_publisher_domain_proof(&op, &t.id, "acme.example")
            .await
            .unwrap();
        let e = idp
            .verify_publisher_domain(&op, &t.id, "acme.example")
            .await
            .unwrap_err();
        let Error::Invalid { message, .. } = e else {
            panic!("{e}")
        };
        assert!(message.contains("(refused)"), "{message}");
        assert!(!message.contains("10.0.0.1"), "{message}");
        *served.0.lock().unwrap() = Ok(format!("{}\n", c.token));
        let v = idp
            .verify_publisher_domain(&op, &t.id, "acme.example")
            .await
            .unwrap();
        assert!(v.publisher.verified);
        assert_eq!(v.publisher.website.as_deref(), Some("https://acme.example"));
        let proof = v.publisher.verification.clone().unwrap();
        assert_eq!(proof.method, PublisherVerificationMethod::Domain);
        assert_eq!(proof.domain.as_deref(), Some("acme.example"));

        // Another path on the same host keeps it; the operator setting
        // `verified: true` again keeps the domain proof.
        let same = idp
            .update_publisher(
                &op,
                &t.id,
                publisher_update(Some("https://acme.example/about"), Some(true)),
            )
            .await
            .unwrap();
        assert_eq!(same.publisher.verification, Some(proof));
        // Another host drops it.
        let moved = idp
            .update_publisher(
                &op,
                &t.id,
                publisher_update(Some("https://x.example"), None),
            )
            .await
            .unwrap();
        assert!(!moved.publisher.verified);
        assert_eq!(moved.publisher.verification, None);
        // The operator verifies; turning the flag off clears it.
        let by_op = idp
            .update_publisher(&op, &t.id, publisher_update(None, Some(true)))
            .await
            .unwrap();
        assert_eq!(
            by_op.publisher.verification.map(|v| v.method),
            Some(PublisherVerificationMethod::Operator)
        );
        let off = idp
            .update_publisher(&op, &t.id, publisher_update(None, Some(false)))
            .await
            .unwrap();
        assert!(!off.publisher.verified);
        assert_eq!(off.publisher.verification, None);
    }

    #[tokio::test]
    async fn a_proof_needs_the_websites_host() {
        let (idp, _, t) = idp().await;
        let op = Caller::system();
        let c = idp
            .start_publisher_domain_proof(&op, &t.id, "Acme.Example")
            .await
            .unwrap();
        assert_eq!(c.domain, "acme.example");
        assert_eq!(
            c.url,
            "https://acme.example/.well-known/sentryagent-publisher.txt"
        );
        assert_eq!(
            c.expires_at.unix_secs() - idp.now().unix_secs(),
            PROOF_TTL.as_secs() as i64
        );
        idp.update_publisher(
            &op,
            &t.id,
            crate::PublisherUpdate {
                display_name: "Acme".into(),
                website: Some("https://www.acme.example/".into()),
                verified: None,
            },
        )
        .await
        .unwrap();
        let e = idp
            .start_publisher_domain_proof(&op, &t.id, "acme.example")
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::Invalid {
                    field: "domain",
                    ..
                }
            ),
            "{e}"
        );
        idp.start_publisher_domain_proof(&op, &t.id, "www.acme.example")
            .await
            .unwrap();
        // Without a fetcher, verification is not configured.
        let e = idp
            .verify_publisher_domain(&op, &t.id, "www.acme.example")
            .await
            .unwrap_err();
        assert!(matches!(e, Error::NotConfigured { .. }), "{e}");
    }
}

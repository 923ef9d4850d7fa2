//! Agent badges: a W3C Verifiable Credential 2.0 the IdP issues for each
//! marketplace agent, secured with a Data Integrity `eddsa-jcs-2022` proof
//! by the IdP's `did:web` key, and a W3C Bitstring Status List that revokes
//! it.
//!
//! A badge attests the listing's claims (name, publisher, publisher
//! verified and how: `verification` with `method` `domain` or `operator`,
//! the proven `domain` and `verifiedAt`, capabilities, listing time). Its *fingerprint* is a hash of
//! those claims and of the agent's revision (any stored change): while it holds, the IdP
//! serves the same badge (renewed each [`BADGE_RENEWAL`] period, its
//! status index unchanged); when the listing changes, a new badge with a
//! new status index replaces it, and the old one is revoked for good.
//!
//! Status indexes are random-looking positions in a list of
//! [`STATUS_LIST_BITS`] bits, derived from the badge (agent id and
//! fingerprint) and claimed atomically through the
//! [`SettingStore`](crate::store::SettingStore) (`badge-index:<n>` holds its
//! owner; the first writer wins, the next candidate is tried on a
//! collision). The status list is served with every bit set except those of
//! the current badges of marketplace agents: a badge whose agent is
//! unlisted, paused, retired, hidden or suspended, or whose listing
//! changed, is revoked from the next fetch of the list on.

use std::io::Write as _;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::jose::Algorithm;
use crate::vc::{self, ProofOptions};
use crate::{
    Agent, AgentId, Error, Idp, MarketplaceQuery, PageRequest, Result, Tenant, Timestamp, jcs,
};

/// Bits in the status list (2^20; the Bitstring Status List minimum is
/// 2^17). Each badge issued takes one for good.
pub const STATUS_LIST_BITS: u32 = 1 << 20;

/// How often a badge whose listing did not change is renewed: a badge is
/// valid from the start of a period (or its listing's last change) until
/// the end of the next period.
pub const BADGE_RENEWAL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The path of the status list credential below the issuer.
pub const STATUS_LIST_PATH: &str = "/v1/credentials/status/revocation";

/// The badge's credential type (besides `VerifiableCredential`).
pub const BADGE_TYPE: &str = "AgentBadge";

const VC_CONTEXT: &str = "https://www.w3.org/ns/credentials/v2";
const INDEX_SETTING: &str = "badge-index:";
const MAX_PROBES: u32 = 64;

/// The outcome of [`Idp::verify_credential`]: each check passed or not,
/// without saying more than which.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CredentialVerification {
    /// All checks passed.
    pub verified: bool,
    /// `valid`: the proof verifies with an assertion key of the IdP's
    /// `did:web`; `invalid` otherwise (not issued here, altered, unknown
    /// key).
    pub signature: CheckOutcome,
    /// `valid` or `revoked` (its status list bit is set); `unchecked` when
    /// the signature is not valid.
    pub status: CheckOutcome,
    /// `valid`, `expired` (after `validUntil`) or `not_yet_valid` (before
    /// `validFrom`); `unchecked` when the signature is not valid.
    pub expiry: CheckOutcome,
}

/// The outcome of one check of [`CredentialVerification`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    /// Passed.
    Valid,
    /// The signature does not verify.
    Invalid,
    /// The status list says revoked.
    Revoked,
    /// Past `validUntil`.
    Expired,
    /// Before `validFrom`.
    NotYetValid,
    /// Not checked (an earlier check failed).
    Unchecked,
}

/// The claims of a badge and what identifies them.
struct BadgeClaims {
    subject: Value,
    fingerprint: String,
    changed_at: Timestamp,
}

fn claims(idp: &Idp, agent: &Agent, tenant: &Tenant) -> Result<BadgeClaims> {
    let issuer = &idp.config().issuer;
    let listed_at = agent.state_changed_at.unwrap_or(agent.created_at);
    let mut subject = json!({
        "id": agent.did,
        "type": "ListedAgent",
        "agentId": agent.id.to_string(),
        "name": agent.name,
        "publisher": {
            "id": format!("{issuer}/v1/publishers/{}", tenant.slug),
            "name": tenant.publisher.display_name,
            "verified": tenant.publisher.verified,
        },
        "capabilities": agent.capabilities,
        "listedAt": listed_at.to_rfc3339(),
        "listing": format!("{issuer}/v1/marketplace/agents/{}", agent.id),
    });
    // How the publisher was verified, when recorded: a new verification
    // changes the claims, so the badge is re-issued.
    if let Some(v) = &tenant.publisher.verification {
        let mut how = json!({
            "method": v.method.as_str(),
            "verifiedAt": v.verified_at.to_rfc3339(),
        });
        if let Some(d) = &v.domain {
            how["domain"] = json!(d);
        }
        subject["publisher"]["verification"] = how;
    }
    let canonical =
        jcs::canonicalize(&subject).map_err(|e| Error::internal("canonicalize badge claims", e))?;
    let mut h = Sha256::new();
    h.update(canonical.as_bytes());
    h.update(agent.revision.to_be_bytes());
    let digest = h.finalize();
    let fingerprint = crate::hex::encode(&digest[..16]);
    Ok(BadgeClaims {
        subject,
        fingerprint,
        changed_at: agent.updated_at.max(tenant.updated_at),
    })
}

/// The `k`-th candidate status index of a badge.
fn candidate(agent: &AgentId, fingerprint: &str, k: u32) -> u32 {
    let mut h = Sha256::new();
    h.update(agent.as_str().as_bytes());
    h.update(b":");
    h.update(fingerprint.as_bytes());
    h.update(k.to_be_bytes());
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]]) % STATUS_LIST_BITS
}

impl Idp {
    /// The status index of the badge `(agent, fingerprint)`, claimed on
    /// first use.
    async fn badge_index(&self, agent: &AgentId, fingerprint: &str) -> Result<u32> {
        let owner = format!("{agent}:{fingerprint}");
        for k in 0..MAX_PROBES {
            let index = candidate(agent, fingerprint, k);
            let stored = self
                .inner
                .store
                .settings
                .setting_get_or_insert(&format!("{INDEX_SETTING}{index}"), owner.as_bytes())
                .await?;
            if stored == owner.as_bytes() {
                return Ok(index);
            }
        }
        Err(Error::Unavailable {
            message: "no free badge status index (status list full)".into(),
            source: None,
        })
    }

    /// The URL of the IdP's badge status list credential.
    pub fn status_list_url(&self) -> String {
        format!("{}{STATUS_LIST_PATH}", self.config().issuer)
    }

    /// The verification method the IdP's credentials are signed with:
    /// `<did:web>#<kid>` of its current EdDSA key.
    fn assertion_method(&self) -> Result<(String, std::sync::Arc<crate::jose::SigningKey>)> {
        let did = self.issuer_did()?;
        let key = self.ring().signer(Algorithm::EdDSA)?.clone();
        Ok((format!("{did}#{}", key.kid()), key))
    }

    /// The badge of a marketplace agent: a Verifiable Credential 2.0 by the
    /// IdP's `did:web` with an `eddsa-jcs-2022` proof and a
    /// `BitstringStatusListEntry` (see the module docs).
    ///
    /// # Errors
    /// `NotFound` unless the agent is in the marketplace;
    /// [`Error::NotConfigured`] without an EdDSA signing key or a `did:web`
    /// form of the issuer.
    pub async fn agent_badge(&self, id: &AgentId) -> Result<Value> {
        let (agent, tenant) = self.marketplace_agent(id).await?;
        let claims = claims(self, &agent, &tenant)?;
        let index = self.badge_index(&agent.id, &claims.fingerprint).await?;
        let (method, key) = self.assertion_method()?;
        let now = self.now();
        let period = i64::try_from(BADGE_RENEWAL.as_secs()).unwrap_or(i64::MAX);
        let window = Timestamp::from_unix_secs(now.unix_secs().div_euclid(period) * period);
        let valid_from = Timestamp::from_unix_secs(window.max(claims.changed_at).unix_secs());
        let valid_until = window.plus(BADGE_RENEWAL * 2);
        let list = self.status_list_url();
        let credential = json!({
            "@context": [VC_CONTEXT],
            "id": format!("{}/v1/marketplace/agents/{}/badge#{}", self.config().issuer, agent.id, claims.fingerprint),
            "type": ["VerifiableCredential", BADGE_TYPE],
            "issuer": self.issuer_did()?,
            "name": "SentryAgent marketplace listing",
            "validFrom": valid_from.to_rfc3339(),
            "validUntil": valid_until.to_rfc3339(),
            "credentialSubject": claims.subject,
            "credentialStatus": {
                "id": format!("{list}#{index}"),
                "type": "BitstringStatusListEntry",
                "statusPurpose": "revocation",
                "statusListIndex": index.to_string(),
                "statusListCredential": list,
            },
        });
        vc::sign(
            &credential,
            &ProofOptions::assertion(method, valid_from),
            &key,
        )
        .map_err(|e| Error::internal("sign badge", e))
    }

    /// The status indexes of the current badges of every marketplace agent
    /// (the bits left clear).
    async fn valid_badge_indexes(&self) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        let mut page = PageRequest::first(crate::MAX_PAGE_SIZE);
        loop {
            let found = self
                .inner
                .store
                .agents
                .search_marketplace(&MarketplaceQuery::default(), &page)
                .await?;
            let publishers = self.listing_publishers(&found.items).await?;
            for agent in &found.items {
                if !agent.is_in_marketplace() {
                    continue;
                }
                let Some(tenant) = publishers.get(&agent.tenant_id) else {
                    continue;
                };
                let c = claims(self, agent, tenant)?;
                out.push(self.badge_index(&agent.id, &c.fingerprint).await?);
            }
            match found.next_cursor {
                Some(cursor) => page.cursor = Some(cursor),
                None => break,
            }
        }
        Ok(out)
    }

    /// The IdP's badge status list: a `BitstringStatusListCredential`
    /// (purpose `revocation`) with an `eddsa-jcs-2022` proof, whose
    /// `encodedList` (multibase base64url of the GZIP-compressed bits, the
    /// first bit the most significant of the first byte) has every bit set
    /// except those of the current badges of marketplace agents.
    ///
    /// # Errors
    /// As [`Idp::agent_badge`]; store errors.
    pub async fn badge_status_list(&self) -> Result<Value> {
        let mut bits = vec![0xffu8; (STATUS_LIST_BITS / 8) as usize];
        for i in self.valid_badge_indexes().await? {
            bits[(i / 8) as usize] &= !(0x80u8 >> (i % 8));
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&bits)
            .map_err(|e| Error::internal("compress status list", e))?;
        let compressed = gz
            .finish()
            .map_err(|e| Error::internal("compress status list", e))?;
        use base64::Engine as _;
        let encoded = format!(
            "u{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(compressed)
        );
        let (method, key) = self.assertion_method()?;
        let now = Timestamp::from_unix_secs(self.now().unix_secs());
        let url = self.status_list_url();
        let credential = json!({
            "@context": [VC_CONTEXT],
            "id": url,
            "type": ["VerifiableCredential", "BitstringStatusListCredential"],
            "issuer": self.issuer_did()?,
            "validFrom": now.to_rfc3339(),
            "credentialSubject": {
                "id": format!("{url}#list"),
                "type": "BitstringStatusList",
                "statusPurpose": "revocation",
                "encodedList": encoded,
            },
        });
        vc::sign(&credential, &ProofOptions::assertion(method, now), &key)
            .map_err(|e| Error::internal("sign status list", e))
    }

    /// Verifies a credential the IdP issued (a badge): its proof by an
    /// assertion key of the IdP's `did:web`, then its status and validity
    /// period at the IdP's clock. Anything not issued here, altered or
    /// malformed has an `invalid` signature.
    ///
    /// # Errors
    /// [`Error::Invalid`] if `credential` is not a JSON object; store
    /// errors.
    pub async fn verify_credential(&self, credential: &Value) -> Result<CredentialVerification> {
        if !credential.is_object() {
            return Err(Error::invalid("credential", "a JSON object"));
        }
        let did_doc = self.issuer_did_document()?;
        let issued_here = credential.get("issuer").and_then(Value::as_str) == Some(&did_doc.id);
        let signature_ok =
            issued_here && vc::verify(credential, |m| did_doc.assertion_ed25519_key(m)).is_ok();
        if !signature_ok {
            return Ok(CredentialVerification {
                verified: false,
                signature: CheckOutcome::Invalid,
                status: CheckOutcome::Unchecked,
                expiry: CheckOutcome::Unchecked,
            });
        }
        let now = self.now();
        let time = |name: &str| {
            credential
                .get(name)
                .and_then(Value::as_str)
                .and_then(Timestamp::parse_rfc3339)
        };
        let leeway = self.config().leeway;
        let expiry = match (time("validFrom"), time("validUntil")) {
            (Some(from), _) if from > now.plus(leeway) => CheckOutcome::NotYetValid,
            (_, Some(until)) if until.plus(leeway) < now => CheckOutcome::Expired,
            _ => CheckOutcome::Valid,
        };
        let status = if self.badge_is_current(credential).await? {
            CheckOutcome::Valid
        } else {
            CheckOutcome::Revoked
        };
        Ok(CredentialVerification {
            verified: expiry == CheckOutcome::Valid && status == CheckOutcome::Valid,
            signature: CheckOutcome::Valid,
            status,
            expiry,
        })
    }

    /// Whether a signed credential's status entry is clear in the status
    /// list: it names this IdP's list and the index of the current badge of
    /// an agent in the marketplace.
    async fn badge_is_current(&self, credential: &Value) -> Result<bool> {
        let status = &credential["credentialStatus"];
        if status["statusListCredential"].as_str() != Some(&self.status_list_url())
            || status["statusPurpose"] != "revocation"
        {
            return Ok(false);
        }
        let Some(index) = status["statusListIndex"]
            .as_str()
            .and_then(|i| i.parse::<u32>().ok())
        else {
            return Ok(false);
        };
        let Some(agent) = credential["credentialSubject"]["agentId"]
            .as_str()
            .and_then(|a| AgentId::parse(a).ok())
        else {
            return Ok(false);
        };
        let (agent, tenant) = match self.marketplace_agent(&agent).await {
            Ok(found) => found,
            Err(Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        let c = claims(self, &agent, &tenant)?;
        Ok(self.badge_index(&agent.id, &c.fingerprint).await? == index)
    }
}

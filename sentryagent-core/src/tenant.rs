//! Tenants (organisations): tier, status, billing references, public profile.

use serde::{Deserialize, Serialize};

use crate::{Error, Result, TenantId, Tier, Timestamp};

/// Whether a tenant may use the service.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    /// Normal operation.
    Active,
    /// No tokens are issued for the tenant's agents.
    Suspended,
}

/// Subscription state as reported by the billing provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SubscriptionStatus {
    /// Paid and current.
    Active,
    /// In a trial period.
    Trialing,
    /// A payment failed; the provider is retrying.
    PastDue,
    /// Ended.
    Canceled,
    /// Not paid and no longer retried.
    Unpaid,
    /// Checkout begun, first payment pending.
    Incomplete,
}

/// References into the billing provider; never secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BillingInfo {
    /// The provider's customer id (Stripe `cus_...`).
    pub customer_id: Option<String>,
    /// The provider's subscription id (Stripe `sub_...`).
    pub subscription_id: Option<String>,
    /// Current subscription status.
    pub subscription_status: Option<SubscriptionStatus>,
    /// End of the current paid period (renewal date).
    pub current_period_end: Option<Timestamp>,
    /// Creation time of the newest billing event applied, so that an older
    /// event delivered late does not roll state back.
    pub last_event_at: Option<Timestamp>,
}

/// A tenant's public profile, shown as the publisher of its listed agents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Publisher {
    /// Display name (defaults to the tenant name).
    pub display_name: String,
    /// Website URL.
    pub website: Option<String>,
    /// Whether the publisher is verified: by the operator, or by a proof
    /// of control of its website's domain
    /// ([`Idp::verify_publisher_domain`](crate::Idp::verify_publisher_domain)).
    pub verified: bool,
    /// How and when it was verified (absent while unverified, and for
    /// publishers verified before this was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<PublisherVerification>,
}

/// How a publisher was verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum PublisherVerificationMethod {
    /// The operator set the verified flag.
    Operator,
    /// The publisher proved control of a domain (a token at
    /// `https://<domain>/.well-known/sentryagent-publisher.txt`).
    Domain,
}

impl PublisherVerificationMethod {
    /// The wire name (`operator`, `domain`).
    pub fn as_str(self) -> &'static str {
        match self {
            PublisherVerificationMethod::Operator => "operator",
            PublisherVerificationMethod::Domain => "domain",
        }
    }
}

/// How and when a publisher was verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"method": "domain", "domain": "acme.example", "verified_at": "2026-12-03T08:00:00Z"})))]
pub struct PublisherVerification {
    /// How.
    pub method: PublisherVerificationMethod,
    /// The proven domain (method `domain` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// When.
    pub verified_at: Timestamp,
}

impl PublisherVerification {
    /// A verification by the operator at `at`.
    pub fn operator(at: Timestamp) -> Self {
        PublisherVerification {
            method: PublisherVerificationMethod::Operator,
            domain: None,
            verified_at: at,
        }
    }

    /// A proof of control of `domain` at `at`.
    pub fn domain(domain: impl Into<String>, at: Timestamp) -> Self {
        PublisherVerification {
            method: PublisherVerificationMethod::Domain,
            domain: Some(domain.into()),
            verified_at: at,
        }
    }
}

/// Rules a tenant's owners set for its members.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct TenantSettings {
    /// Members with the owner or admin role act (sessions with a caller)
    /// only once their account has a second factor (TOTP).
    pub require_totp_for_admins: bool,
}

/// A change of a tenant's rules for its members
/// ([`Idp::update_tenant_settings`](crate::Idp::update_tenant_settings));
/// fields left out keep their value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"require_totp_for_admins": true})))]
#[serde(deny_unknown_fields)]
pub struct TenantSettingsPatch {
    /// See [`TenantSettings::require_totp_for_admins`].
    #[serde(default)]
    pub require_totp_for_admins: Option<bool>,
}

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tenant {
    /// Id.
    pub id: TenantId,
    /// Name.
    pub name: String,
    /// URL-safe unique handle, derived from the name.
    pub slug: String,
    /// Tier.
    pub tier: Tier,
    /// Status.
    pub status: TenantStatus,
    /// Billing references.
    pub billing: BillingInfo,
    /// Public profile.
    pub publisher: Publisher,
    /// Audiences (RFC 8707 resources) this tenant's tokens may carry besides
    /// the issuer itself.
    pub allowed_audiences: Vec<String>,
    /// Rules for the tenant's members.
    #[serde(default)]
    pub settings: TenantSettings,
    /// When the tenant was suspended (while it is), shown to its members.
    #[serde(default)]
    pub suspended_at: Option<Timestamp>,
    /// Why, as the operator said when suspending it (while it is).
    #[serde(default)]
    pub suspension_reason: Option<String>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Incremented by every stored change; updates compare it (optimistic
    /// concurrency).
    pub revision: u64,
}

/// Input for creating a tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// Name, 1 to 100 characters.
    pub name: String,
    /// Tier (default free).
    #[serde(default)]
    pub tier: Option<Tier>,
    /// Slug; derived from the name when absent.
    #[serde(default)]
    pub slug: Option<String>,
    /// Publisher website.
    #[serde(default)]
    pub website: Option<String>,
    /// Extra allowed audiences.
    #[serde(default)]
    pub allowed_audiences: Vec<String>,
}

/// Turns a name into a slug: lowercase ASCII letters and digits joined by `-`.
pub fn slugify(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut dash = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
        } else {
            dash = true;
        }
        if out.len() >= 48 {
            break;
        }
    }
    if out.is_empty() {
        "tenant".to_owned()
    } else {
        out
    }
}

pub(crate) fn validate_slug(slug: &str) -> Result<()> {
    let ok = (1..=48).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid("slug", "1 to 48 of a-z 0-9 and inner '-'"))
    }
}

pub(crate) fn validate_url(field: &'static str, url: &str) -> Result<()> {
    let ok = url.len() <= 2048
        && (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() > 8
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            "must be an http(s) URL of at most 2048 characters",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishers_stored_before_verification_records_still_load() {
        let old: Publisher =
            serde_json::from_str(r#"{"display_name":"Acme","website":null,"verified":true}"#)
                .unwrap();
        assert!(old.verified);
        assert_eq!(old.verification, None);
        let json = serde_json::to_value(&old).unwrap();
        assert!(json.get("verification").is_none(), "{json}");
        let proven = Publisher {
            verification: Some(PublisherVerification::domain(
                "acme.example",
                Timestamp::from_unix_secs(1_764_748_800),
            )),
            ..old
        };
        let json = serde_json::to_value(&proven).unwrap();
        assert_eq!(
            json["verification"],
            serde_json::json!({"method": "domain", "domain": "acme.example", "verified_at": "2025-12-03T08:00:00Z"})
        );
        assert_eq!(serde_json::from_value::<Publisher>(json).unwrap(), proven);
    }

    #[test]
    fn slugs() {
        assert_eq!(slugify("Acme Robotics, Inc."), "acme-robotics-inc");
        assert_eq!(slugify("  !!"), "tenant");
        assert!(validate_slug(&slugify("Zürich AI")).is_ok());
        assert!(validate_slug("-x").is_err());
    }
}

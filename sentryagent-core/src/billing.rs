//! [`BillingProvider`]: checkout, customer portal, webhooks and usage
//! reports, normalized so that the core applies billing events the same way
//! whatever the provider. [`NoBilling`] is the provider of a deployment
//! without billing: every call says billing is not configured.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::tenant::SubscriptionStatus;
use crate::{Error, Result, Tenant, TenantId, Tier, Timestamp};

/// A started checkout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutSession {
    /// Provider id of the session.
    pub id: String,
    /// Where to send the user.
    pub url: String,
}

/// What a billing event means for a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum BillingEventKind {
    /// A checkout finished: the tenant subscribed to `tier`.
    CheckoutCompleted {
        /// The tier bought.
        tier: Tier,
    },
    /// A subscription was created or changed.
    SubscriptionUpdated {
        /// Its status.
        status: SubscriptionStatus,
        /// The tier its price maps to, when known.
        tier: Option<Tier>,
        /// End of the current period.
        current_period_end: Option<Timestamp>,
    },
    /// The subscription ended: back to free.
    SubscriptionDeleted,
    /// An invoice was paid.
    PaymentSucceeded {
        /// End of the period paid for.
        current_period_end: Option<Timestamp>,
    },
    /// An invoice payment failed.
    PaymentFailed,
}

/// A verified, normalized billing event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingEvent {
    /// Provider event id (deduplication key).
    pub id: String,
    /// Provider creation time (ordering).
    pub created: Timestamp,
    /// Tenant named by the event's metadata, when present.
    pub tenant_id: Option<TenantId>,
    /// Provider customer id.
    pub customer_id: Option<String>,
    /// Provider subscription id.
    pub subscription_id: Option<String>,
    /// Meaning.
    pub kind: BillingEventKind,
}

/// A usage report for a paid tenant (metered billing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReport {
    /// Unique id; the provider deduplicates on it.
    pub identifier: String,
    /// The provider's customer.
    pub customer_id: String,
    /// Meter name (for example `api_calls`, `token_issuances`).
    pub event_name: String,
    /// Amount.
    pub value: u64,
    /// When.
    pub timestamp: Timestamp,
}

/// A billing provider.
#[async_trait]
pub trait BillingProvider: Send + Sync + std::fmt::Debug {
    /// Provider name (`none`, `stripe`).
    fn name(&self) -> &'static str;

    /// Whether billing is configured.
    fn enabled(&self) -> bool {
        true
    }

    /// Starts a subscription checkout of `tier` for `tenant`.
    async fn checkout(&self, tenant: &Tenant, tier: Tier) -> Result<CheckoutSession>;

    /// A customer-portal link for a paying tenant.
    async fn portal(&self, tenant: &Tenant) -> Result<String>;

    /// Verifies a webhook's signature against its raw body and normalizes it.
    /// `Ok(None)` for a verified event of a type that does not concern
    /// billing state (acknowledge and ignore it).
    fn parse_webhook(
        &self,
        signature_header: &str,
        body: &[u8],
        now: Timestamp,
    ) -> Result<Option<BillingEvent>>;

    /// Reports usage of paid tenants.
    async fn report_usage(&self, reports: &[UsageReport]) -> Result<()>;
}

/// Billing switched off.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBilling;

fn off() -> Error {
    Error::NotConfigured {
        message: "billing is not configured on this deployment".into(),
    }
}

#[async_trait]
impl BillingProvider for NoBilling {
    fn name(&self) -> &'static str {
        "none"
    }

    fn enabled(&self) -> bool {
        false
    }

    async fn checkout(&self, _tenant: &Tenant, _tier: Tier) -> Result<CheckoutSession> {
        Err(off())
    }

    async fn portal(&self, _tenant: &Tenant) -> Result<String> {
        Err(off())
    }

    fn parse_webhook(&self, _: &str, _: &[u8], _: Timestamp) -> Result<Option<BillingEvent>> {
        Err(off())
    }

    async fn report_usage(&self, _reports: &[UsageReport]) -> Result<()> {
        Ok(())
    }
}

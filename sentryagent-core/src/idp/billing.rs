//! Billing: checkout, portal, and applying verified billing events to
//! tenants, idempotently and in order.

use super::{Caller, Idp};
use crate::audit::{Outcome, RequestMeta};
use crate::billing::{BillingEvent, BillingEventKind, CheckoutSession};
use crate::credentials::AdminScope;
use crate::tenant::SubscriptionStatus;
use crate::{Error, Result, TenantId, TenantStatus, Tier, Timestamp};

/// Marker namespace of billing events already applied.
const NS_BILLING_EVENT: &str = "billing_event";

/// What applying a billing event did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BillingOutcome {
    /// The tenant changed (or was confirmed) as the event says.
    Applied,
    /// The event was seen before: nothing changed.
    Duplicate,
    /// An older event than one already applied: nothing changed (but a
    /// later renewal date it carries for the tenant's current subscription
    /// is kept).
    Stale,
    /// An event about a subscription other than the tenant's current one:
    /// nothing changed.
    OtherSubscription,
    /// The event names no known tenant: recorded, nothing changed.
    UnknownTenant,
    /// A verified event of a type that does not concern billing state.
    Ignored,
}

impl Idp {
    /// Starts a checkout moving `tenant` to a paid `tier`.
    pub async fn start_checkout(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        tier: Tier,
    ) -> Result<CheckoutSession> {
        caller.reach(tenant, "tenant")?;
        caller.require(AdminScope::BillingWrite)?;
        if tier == Tier::Free {
            return Err(Error::invalid(
                "tier",
                "checkout is for a paid tier (pro or enterprise)",
            ));
        }
        let t = self.inner.store.tenants.get_tenant(tenant).await?;
        if t.tier == tier
            && matches!(
                t.billing.subscription_status,
                Some(SubscriptionStatus::Active | SubscriptionStatus::Trialing)
            )
        {
            return Err(Error::conflict(format!(
                "the tenant is already on the {tier} tier"
            )));
        }
        let session = self.inner.billing.checkout(&t, tier).await?;
        let mut ev = self.event(
            Some(tenant),
            &caller.actor,
            "billing.checkout_started",
            Some(&session.id),
            Outcome::Success,
            &caller.request,
        );
        ev.details.insert("tier".into(), tier.to_string());
        self.audit(ev).await?;
        Ok(session)
    }

    /// A tenant's tier and subscription (scope `billing.read`).
    pub async fn subscription(&self, caller: &Caller, tenant: &TenantId) -> Result<Subscription> {
        caller.reach(tenant, "tenant")?;
        caller.require(AdminScope::BillingRead)?;
        let t = self.inner.store.tenants.get_tenant(tenant).await?;
        Ok(Subscription {
            tenant_id: t.id,
            tier: t.tier,
            status: t.status,
            billing_enabled: self.inner.billing.enabled(),
            subscription_status: t.billing.subscription_status,
            current_period_end: t.billing.current_period_end,
            customer_id: t.billing.customer_id,
        })
    }

    /// A billing-portal link for a tenant with a billing customer.
    pub async fn billing_portal(&self, caller: &Caller, tenant: &TenantId) -> Result<String> {
        caller.reach(tenant, "tenant")?;
        caller.require(AdminScope::BillingWrite)?;
        let t = self.inner.store.tenants.get_tenant(tenant).await?;
        if t.billing.customer_id.is_none() {
            return Err(Error::conflict(
                "the tenant has no billing account yet; upgrade first",
            ));
        }
        self.inner.billing.portal(&t).await
    }

    /// Verifies and applies a webhook delivery. Signature failures are
    /// `Unauthenticated`.
    pub async fn handle_billing_webhook(
        &self,
        signature_header: &str,
        body: &[u8],
        request: &RequestMeta,
    ) -> Result<BillingOutcome> {
        let event = match self
            .inner
            .billing
            .parse_webhook(signature_header, body, self.now())
        {
            Ok(Some(e)) => e,
            Ok(None) => return Ok(BillingOutcome::Ignored),
            Err(Error::Unauthenticated) => {
                self.audit(self.event(
                    None,
                    "billing",
                    "billing.webhook_rejected",
                    None,
                    Outcome::Failure,
                    request,
                ))
                .await?;
                return Err(Error::Unauthenticated);
            }
            Err(e) => return Err(e),
        };
        self.apply_billing_event(&event, request).await
    }

    /// Applies a verified billing event: once per event id; an event older
    /// than the last applied one for the tenant changes nothing.
    pub async fn apply_billing_event(
        &self,
        event: &BillingEvent,
        request: &RequestMeta,
    ) -> Result<BillingOutcome> {
        let now = self.now();
        let tenant = match &event.tenant_id {
            Some(id) => match self.inner.store.tenants.get_tenant(id).await {
                Ok(t) => Some(t),
                Err(Error::NotFound { .. }) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        let Some(tenant) = tenant else {
            let first = self
                .inner
                .store
                .markers
                .put_marker(
                    NS_BILLING_EVENT,
                    &event.id,
                    Timestamp::from_unix_secs(i64::MAX / 2_000_000),
                    now,
                )
                .await?;
            if first {
                let mut ev = self.event(
                    None,
                    "billing",
                    "billing.event_unknown_tenant",
                    Some(&event.id),
                    Outcome::Failure,
                    request,
                );
                if let Some(t) = &event.tenant_id {
                    ev.details.insert("tenant_id".into(), t.to_string());
                }
                self.audit(ev).await?;
            }
            return Ok(BillingOutcome::UnknownTenant);
        };
        if self
            .inner
            .store
            .markers
            .has_marker(NS_BILLING_EVENT, &event.id, now)
            .await?
        {
            return Ok(BillingOutcome::Duplicate);
        }
        let mut skipped: Option<BillingOutcome> = None;
        let e = event.clone();
        let action = format!("billing.{}", kind_name(&e.kind));
        self.change_tenant(&tenant.id, "billing", &action, request, |t| {
            skipped = None;
            let b = &mut t.billing;
            // The renewal date is the current subscription's: it only moves
            // forward, whatever order that subscription's events arrive in.
            // Events of another subscription, or late events of one already
            // deleted (the tenant has none now), leave it alone.
            let current = b.subscription_id.is_some()
                && e.subscription_id
                    .as_ref()
                    .is_none_or(|theirs| b.subscription_id.as_ref() == Some(theirs));
            let mut changed = false;
            if current
                && let Some(end) = period_end(&e.kind)
                && b.current_period_end.is_none_or(|cur| end > cur)
            {
                b.current_period_end = Some(end);
                changed = true;
            }
            // An event about a subscription other than the current one (say,
            // the old one's deletion after a new checkout) changes no state.
            let checkout = matches!(e.kind, BillingEventKind::CheckoutCompleted { .. });
            if !checkout
                && let (Some(current), Some(theirs)) = (&b.subscription_id, &e.subscription_id)
                && current != theirs
            {
                skipped = Some(BillingOutcome::OtherSubscription);
                return Ok(changed);
            }
            if b.last_event_at.is_some_and(|last| e.created < last) {
                skipped = Some(BillingOutcome::Stale);
                return Ok(changed);
            }
            b.last_event_at = Some(e.created);
            if e.customer_id.is_some() {
                b.customer_id = e.customer_id.clone();
            }
            if e.subscription_id.is_some() {
                b.subscription_id = e.subscription_id.clone();
            }
            match &e.kind {
                BillingEventKind::CheckoutCompleted { tier } => {
                    t.tier = *tier;
                    b.subscription_status = Some(SubscriptionStatus::Active);
                }
                BillingEventKind::SubscriptionUpdated { status, tier, .. } => {
                    b.subscription_status = Some(*status);
                    match status {
                        SubscriptionStatus::Active
                        | SubscriptionStatus::Trialing
                        | SubscriptionStatus::PastDue => {
                            if let Some(tier) = tier {
                                t.tier = *tier;
                            }
                        }
                        SubscriptionStatus::Canceled | SubscriptionStatus::Unpaid => {
                            t.tier = Tier::Free
                        }
                        SubscriptionStatus::Incomplete => {}
                    }
                }
                BillingEventKind::SubscriptionDeleted => {
                    t.tier = Tier::Free;
                    b.subscription_status = Some(SubscriptionStatus::Canceled);
                    b.subscription_id = None;
                    b.current_period_end = None;
                }
                BillingEventKind::PaymentSucceeded { .. } => {
                    if b.subscription_status == Some(SubscriptionStatus::PastDue) {
                        b.subscription_status = Some(SubscriptionStatus::Active);
                    }
                }
                BillingEventKind::PaymentFailed => {
                    b.subscription_status = Some(SubscriptionStatus::PastDue);
                }
            }
            // The first event of a new subscription sets its renewal date.
            if !current
                && let Some(end) = period_end(&e.kind)
                && b.current_period_end.is_none_or(|cur| end > cur)
            {
                b.current_period_end = Some(end);
            }
            Ok(true)
        })
        .await?;
        self.inner
            .store
            .markers
            .put_marker(
                NS_BILLING_EVENT,
                &event.id,
                Timestamp::from_unix_secs(i64::MAX / 2_000_000),
                now,
            )
            .await?;
        Ok(skipped.unwrap_or(BillingOutcome::Applied))
    }
}

fn period_end(k: &BillingEventKind) -> Option<Timestamp> {
    match k {
        BillingEventKind::SubscriptionUpdated {
            current_period_end, ..
        }
        | BillingEventKind::PaymentSucceeded { current_period_end } => *current_period_end,
        _ => None,
    }
}

fn kind_name(k: &BillingEventKind) -> &'static str {
    match k {
        BillingEventKind::CheckoutCompleted { .. } => "checkout_completed",
        BillingEventKind::SubscriptionUpdated { .. } => "subscription_updated",
        BillingEventKind::SubscriptionDeleted => "subscription_deleted",
        BillingEventKind::PaymentSucceeded { .. } => "payment_succeeded",
        BillingEventKind::PaymentFailed => "payment_failed",
    }
}

/// A tenant's tier and subscription ([`Idp::subscription`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Subscription {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Its tier.
    pub tier: Tier,
    /// Active or suspended.
    pub status: TenantStatus,
    /// Whether this deployment bills (a provider other than `NoBilling`).
    pub billing_enabled: bool,
    /// The provider's subscription status, once there is one.
    pub subscription_status: Option<SubscriptionStatus>,
    /// End of the current paid period (renewal date).
    pub current_period_end: Option<Timestamp>,
    /// The provider's customer id.
    pub customer_id: Option<String>,
}

//! The billing panel (`/settings/billing`): the tier as Free or Paid with
//! its name, the subscription's status; for a free tenant an "Upgrade to
//! Paid" button that starts Stripe Checkout (`POST
//! /settings/billing/checkout`, answered with a redirect to the checkout),
//! for a paying one the renewal date; "Manage billing" opens the customer
//! portal (`POST /settings/billing/portal`). Without billing configured, a
//! plain note and no button.

use maud::{Markup, html};
use sentryagent_core::{Subscription, Tier};

use super::fmt::{date, status_name, tier_name};

/// The note shown instead of any billing button when the server has no
/// billing provider.
pub(crate) fn not_configured() -> Markup {
    html! {
        p .note #billing-not-configured {
            "Billing is not set up on this server: tiers are assigned by its operator."
        }
    }
}

/// A form that posts to `action` with the CSRF token: a button that works
/// without JavaScript.
pub(crate) fn post_button(
    action: &str,
    csrf: &str,
    id: &str,
    label: &str,
    primary: bool,
) -> Markup {
    html! {
        form .inline method="post" action=(action) {
            input type="hidden" name="csrf_token" value=(csrf);
            button #(id) .secondary[!primary] type="submit" { (label) }
        }
    }
}

/// The links between the settings pages.
pub(crate) fn settings_nav(prefix: &str, current: &str) -> Markup {
    html! {
        nav .subnav aria-label="Settings" {
            @for (key, path, label) in [("billing", "/settings/billing", "Billing"), ("tier", "/settings/tier", "Tier and limits")] {
                a href={ (prefix) (path) } aria-current=[(key == current).then_some("page")] { (label) }
            }
        }
    }
}

/// The page's main content.
pub(crate) fn content(prefix: &str, csrf: &str, s: &Subscription) -> Markup {
    let paid = s.tier != Tier::Free;
    html! {
        (settings_nav(prefix, "billing"))
        section .billing {
            dl .facts {
                dt { "Tier" }
                dd #billing-tier {
                    @if paid { "Paid — " (tier_name(s.tier)) } @else { "Free" }
                }
                dt { "Subscription" }
                dd #billing-status {
                    @match s.subscription_status {
                        Some(st) => (status_name(st)),
                        None => @if paid { "Assigned by the operator" } @else { "None" },
                    }
                }
                @if paid {
                    @if let Some(end) = s.current_period_end {
                        dt { "Next renewal" }
                        dd #billing-renewal { time datetime=(end.to_rfc3339()) { (date(end)) } }
                    }
                }
            }
            @if !s.billing_enabled {
                (not_configured())
            } @else {
                div .actions {
                    @if !paid {
                        p { "The Pro tier raises every limit. Payment is handled by Stripe." }
                        (post_button(&format!("{prefix}/settings/billing/checkout"), csrf, "billing-upgrade", "Upgrade to Paid", true))
                    }
                    @if s.customer_id.is_some() {
                        (post_button(&format!("{prefix}/settings/billing/portal"), csrf, "billing-portal", "Manage billing", false))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use sentryagent_core::{SubscriptionStatus, TenantId, TenantStatus, Timestamp};

    use super::*;

    fn sub(tier: Tier, enabled: bool) -> Subscription {
        Subscription {
            tenant_id: TenantId::generate(),
            tier,
            status: TenantStatus::Active,
            billing_enabled: enabled,
            subscription_status: None,
            current_period_end: None,
            customer_id: None,
        }
    }

    #[test]
    fn a_free_tenant_gets_the_upgrade_button_and_no_renewal() {
        let page = content("/c", "tok<en", &sub(Tier::Free, true)).into_string();
        assert!(
            page.contains(
                r#"<form class="inline" method="post" action="/c/settings/billing/checkout">"#
            ),
            "{page}"
        );
        assert!(page.contains(r#"value="tok&lt;en""#));
        assert!(page.contains(">Upgrade to Paid</button>"));
        assert!(!page.contains("billing-renewal"));
        assert!(!page.contains("billing-portal"));
        assert!(page.contains(r#"<dd id="billing-tier">Free</dd>"#));
    }

    #[test]
    fn a_paying_tenant_sees_status_renewal_and_the_portal_but_no_upgrade() {
        let mut s = sub(Tier::Pro, true);
        s.subscription_status = Some(SubscriptionStatus::PastDue);
        s.current_period_end = Some(Timestamp::from_unix_secs(1_767_225_600));
        s.customer_id = Some("cus_1".into());
        let page = content("", "t", &s).into_string();
        assert!(page.contains("Paid — Pro"));
        assert!(page.contains(r#"<dd id="billing-status">Past due</dd>"#));
        assert!(page.contains(">2026-01-01</time>"), "{page}");
        assert!(!page.contains("Upgrade to Paid"));
        assert!(page.contains(r#"action="/settings/billing/portal""#));
    }

    #[test]
    fn without_billing_there_is_a_note_and_no_button() {
        for tier in Tier::ALL {
            let page = content("", "t", &sub(tier, false)).into_string();
            assert!(page.contains("Billing is not set up on this server"));
            assert!(!page.contains("<button"), "{page}");
        }
    }
}

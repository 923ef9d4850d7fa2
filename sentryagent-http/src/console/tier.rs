//! The tier page (`/settings/tier`): the tier's name, each limit and the
//! use against it. A free tenant gets "Upgrade to Pro", which posts to
//! `/settings/tier/upgrade` (the core's checkout, as `POST
//! /api/tiers/upgrade`) and follows the checkout URL; an enterprise tenant
//! sees "Enterprise — Unlimited" and no button.

use maud::{Markup, html};
use sentryagent_core::{Tier, UsageSummary};

use super::billing::{not_configured, post_button, settings_nav};
use super::fmt::{number, tier_name};

fn limit_row(key: &str, label: &str, limit: Option<u64>, used: Option<u64>) -> Markup {
    html! {
        tr data-limit=(key) {
            th scope="row" { (label) }
            td .limit-value {
                @match limit { Some(l) => (number(l)), None => "Unlimited" }
            }
            td .limit-used {
                @match used { Some(u) => (number(u)), None => "—" }
            }
        }
    }
}

/// The page's main content.
pub(crate) fn content(prefix: &str, csrf: &str, u: &UsageSummary, billing: bool) -> Markup {
    let l = &u.limits;
    html! {
        (settings_nav(prefix, "tier"))
        section .tier {
            @if u.tier == Tier::Enterprise {
                p #tier-name .tier-name { "Enterprise — Unlimited" }
            } @else {
                p #tier-name .tier-name { (tier_name(u.tier)) " tier" }
            }
            table .limits {
                caption { "Limits and current use" }
                thead { tr { th scope="col" { "Limit" } th scope="col" { "Allowed" } th scope="col" { "Used" } } }
                tbody {
                    (limit_row("max_agents", "Agents", l.max_agents, Some(u.agents.used)))
                    (limit_row("api_calls_per_day", "API calls per day (UTC)", l.api_calls_per_day, Some(u.api_calls_today.used)))
                    (limit_row("token_issuances_per_month", "Token issuances per month (UTC)", l.token_issuances_per_month, Some(u.token_issuances_this_month.used)))
                    (limit_row("requests_per_minute", "Requests per minute", Some(u64::from(l.requests_per_minute)), None))
                }
            }
            @if u.tier == Tier::Free {
                @if billing {
                    (post_button(&format!("{prefix}/settings/tier/upgrade"), csrf, "tier-upgrade", "Upgrade to Pro", true))
                } @else {
                    (not_configured())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use sentryagent_core::{LimitUsage, TenantId, TierTable};

    use super::*;

    fn summary(tier: Tier) -> UsageSummary {
        let lu = |used| LimitUsage {
            used,
            limit: None,
            percent: 0,
            approaching_limit: false,
        };
        UsageSummary {
            tenant_id: TenantId::generate(),
            tier,
            limits: *TierTable::default().limits(tier),
            agents: lu(1),
            api_calls_today: lu(20),
            token_issuances_this_month: lu(300),
            active_agents_this_month: 1,
            approaching_limit: false,
            subscription_status: None,
            current_period_end: None,
        }
    }

    #[test]
    fn free_shows_each_limit_with_its_use_and_the_upgrade() {
        let page = content("", "t", &summary(Tier::Free), true).into_string();
        assert!(page.contains(r#"<tr data-limit="api_calls_per_day"><th scope="row">API calls per day (UTC)</th><td class="limit-value">1,000</td><td class="limit-used">20</td></tr>"#), "{page}");
        assert!(page.contains(r#"action="/settings/tier/upgrade""#));
        assert!(page.contains(">Upgrade to Pro</button>"));
        let page = content("", "t", &summary(Tier::Free), false).into_string();
        assert!(!page.contains("<button"));
        assert!(page.contains("Billing is not set up"));
    }

    #[test]
    fn enterprise_is_unlimited_without_a_button() {
        let page = content("", "t", &summary(Tier::Enterprise), true).into_string();
        assert!(page.contains("Enterprise — Unlimited"));
        assert!(!page.contains("<button"));
        assert!(page.contains(r#"<td class="limit-value">Unlimited</td>"#));
        let page = content("", "t", &summary(Tier::Pro), true).into_string();
        assert!(!page.contains("Upgrade to Pro"));
    }
}

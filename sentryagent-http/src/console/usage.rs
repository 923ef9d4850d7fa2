//! The Usage tab (`/usage`): API calls today, agents and token issuances
//! this month against the tier's limits, each with a bar; the same figures
//! as `GET /billing/usage` (the same core call), refreshed in place from
//! `/usage.json` every [`ConsoleOptions::usage_refresh`] seconds, with a
//! warning banner (`role="alert"`) from 80 % of the daily API calls.
//!
//! [`ConsoleOptions::usage_refresh`]: super::ConsoleOptions

use maud::{Markup, html};
use sentryagent_core::{LimitUsage, UsageSummary};

use super::fmt::{number, tier_name};

/// The share of the daily API calls from which the banner shows.
pub(crate) const WARN_PERCENT: u64 = 80;

/// Whether the daily API calls are at or above [`WARN_PERCENT`].
pub(crate) fn warns(u: &UsageSummary) -> bool {
    u.api_calls_today.limit.is_some() && u.api_calls_today.percent >= WARN_PERCENT
}

fn meter(metric: &str, label: &str, m: &LimitUsage) -> Markup {
    let max = m.limit.unwrap_or(1).max(1);
    let value = if m.limit.is_some() {
        m.used.min(max)
    } else {
        0
    };
    let id = format!("meter-{metric}");
    html! {
        div .meter .meter-warn[m.approaching_limit] data-metric=(metric) {
            h2 id=(id) { (label) }
            p .meter-figures {
                span .meter-used { (number(m.used)) }
                " / "
                span .meter-limit {
                    @match m.limit { Some(l) => (number(l)), None => "unlimited" }
                }
                " "
                span .meter-percent {
                    @if m.limit.is_some() { (m.percent) "%" }
                }
            }
            progress aria-labelledby=(id) max=(max) value=(value) {
                (m.percent) "%"
            }
        }
    }
}

/// The banner, or nothing below [`WARN_PERCENT`].
fn banner(u: &UsageSummary, upgrade_href: &str) -> Markup {
    let m = &u.api_calls_today;
    html! {
        @if warns(u) {
            div .banner .banner-warn role="alert" {
                "You have used " (m.percent) "% of today's API calls ("
                (number(m.used)) " of " (number(m.limit.unwrap_or(0))) "). "
                a href=(upgrade_href) { "Upgrade your tier" }
            }
        }
    }
}

/// The page's main content. `prefix` is where the console is nested.
pub(crate) fn content(prefix: &str, u: &UsageSummary, refresh_secs: u64) -> Markup {
    let upgrade_href = format!("{prefix}/settings/tier");
    html! {
        section .usage
            data-usage-src={ (prefix) "/usage.json" }
            data-refresh-seconds=(refresh_secs)
        {
            p .lede {
                "Tier " strong { (tier_name(u.tier)) } ". "
                "API calls count per UTC day, token issuances per UTC month. "
                span data-usage-updated aria-live="polite" {}
            }
            div data-usage-banner data-upgrade-href=(upgrade_href) {
                (banner(u, &upgrade_href))
            }
            div .meters {
                (meter("api_calls_today", "API calls today", &u.api_calls_today))
                (meter("agents", "Agents", &u.agents))
                (meter("token_issuances_this_month", "Token issuances this month", &u.token_issuances_this_month))
            }
            p {
                a href={ (prefix) "/analytics" } { "See analytics" }
                " · "
                a href=(upgrade_href) { "Tier and limits" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use sentryagent_core::{TenantId, Tier, TierTable};

    use super::*;

    fn summary(calls: u64) -> UsageSummary {
        let lu = |used, limit: Option<u64>| {
            let percent = limit.map_or(0, |l| used * 100 / l);
            LimitUsage {
                used,
                limit,
                percent,
                approaching_limit: percent >= 80,
            }
        };
        UsageSummary {
            tenant_id: TenantId::generate(),
            tier: Tier::Free,
            limits: TierTable::default().free,
            agents: lu(2, Some(3)),
            api_calls_today: lu(calls, Some(100)),
            token_issuances_this_month: lu(1234, None),
            active_agents_this_month: 1,
            approaching_limit: false,
            subscription_status: None,
            current_period_end: None,
        }
    }

    #[test]
    fn the_banner_shows_from_80_percent_of_the_daily_calls() {
        let page = content("", &summary(79), 60).into_string();
        assert!(!page.contains("role=\"alert\""), "{page}");
        let page = content("/console", &summary(80), 60).into_string();
        assert!(page.contains("role=\"alert\""), "{page}");
        assert!(page.contains("80% of today's API calls"));
        assert!(page.contains(r#"<a href="/console/settings/tier">Upgrade your tier</a>"#));
    }

    #[test]
    fn the_meters_show_use_limit_and_a_bar() {
        let page = content("/c", &summary(12), 5).into_string();
        assert!(
            page.contains(r#"data-usage-src="/c/usage.json" data-refresh-seconds="5""#),
            "{page}"
        );
        assert!(
            page.contains(
                r#"<span class="meter-used">12</span> / <span class="meter-limit">100</span>"#
            ),
            "{page}"
        );
        assert!(page.contains(r#"max="100" value="12""#));
        assert!(page.contains(r#"<span class="meter-used">1,234</span> / <span class="meter-limit">unlimited</span>"#), "{page}");
        // Two of three agents is 66 %: no warning class; the limits never
        // break the bar.
        assert_eq!(page.matches("meter-warn").count(), 0);
        assert_eq!(page.matches("<progress").count(), 3);
    }
}

//! Tiers and their limits.
//!
//! Every tenant is on a [`Tier`]. A [`TierTable`] maps each tier to its
//! [`TierLimits`]; the host may replace the table. The defaults:
//!
//! | limit                        | free   | pro        | enterprise |
//! |------------------------------|--------|------------|------------|
//! | agents                       | 3      | 100        | unlimited  |
//! | API calls per UTC day        | 1 000  | 100 000    | unlimited  |
//! | token issuances per UTC month| 10 000 | 1 000 000  | unlimited  |
//! | requests per minute          | 60     | 1 200      | 600 000    |
//! | token requests per minute, per client | 60 | 600 | (tenant's) |
//!
//! The free tier is small on purpose: a test reaches its agent limit with four
//! registrations.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A pricing tier.
///
/// Closed on purpose: the tier table ([`TierTable`](crate::TierTable)) has one
/// field per tier, so a new tier is a change of that table too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// The default tier: small limits, no billing.
    Free,
    /// Paid tier.
    Pro,
    /// Paid tier with the largest limits.
    Enterprise,
}

impl Tier {
    /// All tiers, smallest first.
    pub const ALL: [Tier; 3] = [Tier::Free, Tier::Pro, Tier::Enterprise];

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Pro => "pro",
            Tier::Enterprise => "enterprise",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tier {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "free" => Ok(Tier::Free),
            "pro" => Ok(Tier::Pro),
            "enterprise" => Ok(Tier::Enterprise),
            _ => Err(Error::invalid("tier", "expected free, pro or enterprise")),
        }
    }
}

/// The limits of one tier. `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TierLimits {
    /// Agents a tenant may hold (retired agents do not count).
    pub max_agents: Option<u64>,
    /// API calls per UTC day.
    pub api_calls_per_day: Option<u64>,
    /// Token issuances per UTC month.
    pub token_issuances_per_month: Option<u64>,
    /// Requests per minute (rate limit, per tenant), burst included: calls
    /// of the management API and the token, introspection and revocation
    /// requests of the tenant's clients.
    pub requests_per_minute: u32,
    /// Token, introspection and revocation requests per minute of any one
    /// client (agent) of the tenant, burst included; `None`: only the
    /// tenant's limit applies.
    #[serde(default)]
    pub client_requests_per_minute: Option<u32>,
}

/// Limits for each tier; configurable by the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierTable {
    /// Free tier limits.
    pub free: TierLimits,
    /// Pro tier limits.
    pub pro: TierLimits,
    /// Enterprise tier limits.
    pub enterprise: TierLimits,
}

impl Default for TierTable {
    fn default() -> Self {
        TierTable {
            free: TierLimits {
                max_agents: Some(3),
                api_calls_per_day: Some(1_000),
                token_issuances_per_month: Some(10_000),
                requests_per_minute: 60,
                client_requests_per_minute: Some(60),
            },
            pro: TierLimits {
                max_agents: Some(100),
                api_calls_per_day: Some(100_000),
                token_issuances_per_month: Some(1_000_000),
                requests_per_minute: 1_200,
                client_requests_per_minute: Some(600),
            },
            enterprise: TierLimits {
                max_agents: None,
                api_calls_per_day: None,
                token_issuances_per_month: None,
                requests_per_minute: 600_000,
                client_requests_per_minute: None,
            },
        }
    }
}

impl TierTable {
    /// The limits of `tier`.
    pub fn limits(&self, tier: Tier) -> &TierLimits {
        match tier {
            Tier::Free => &self.free,
            Tier::Pro => &self.pro,
            Tier::Enterprise => &self.enterprise,
        }
    }

    /// Checks that every tier allows at least one request per minute.
    pub fn validate(&self) -> Result<()> {
        for t in Tier::ALL {
            if self.limits(t).client_requests_per_minute == Some(0) {
                return Err(Error::invalid(
                    "tier_table",
                    format!("{t}: client_requests_per_minute must be at least 1"),
                ));
            }
            if self.limits(t).requests_per_minute == 0 {
                return Err(Error::invalid(
                    "tier_table",
                    format!("{t}: requests_per_minute must be at least 1"),
                ));
            }
        }
        Ok(())
    }
}

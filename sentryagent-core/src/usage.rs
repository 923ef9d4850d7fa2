//! Usage metering: what each tenant and agent used, in UTC buckets.
//!
//! A [`UsageMeter`] stores counts per tenant (and per agent) in hour, day and
//! month buckets, plus the exact set of agents active in a month. Increments
//! arrive in batches that carry an idempotency key: a batch applied twice
//! (a retried flush) counts once. The [`Idp`](crate::Idp) buffers increments
//! in memory and flushes them, so the token path never writes per token.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::health::BackendHealth;
use crate::{AgentId, Result, TenantId, Timestamp};

/// What is counted.
///
/// Closed on purpose: every meter backend encodes the kind in its keys,
/// so a new kind is a change of their layouts too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageKind {
    /// A management API call.
    ApiCall,
    /// An access token issued.
    TokenIssued,
}

impl UsageKind {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            UsageKind::ApiCall => "api_call",
            UsageKind::TokenIssued => "token_issued",
        }
    }
}

/// A bucket of time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Bucket {
    /// A UTC hour, as its start.
    Hour(Timestamp),
    /// A UTC day, `YYYY-MM-DD`.
    Day(String),
    /// A UTC month, `YYYY-MM`.
    Month(String),
}

impl Bucket {
    /// The hour bucket holding `t`.
    pub fn hour_of(t: Timestamp) -> Bucket {
        Bucket::Hour(hour_start(t))
    }

    /// The day bucket holding `t`.
    pub fn day_of(t: Timestamp) -> Bucket {
        Bucket::Day(t.utc_day())
    }

    /// The month bucket holding `t`.
    pub fn month_of(t: Timestamp) -> Bucket {
        Bucket::Month(t.utc_month())
    }

    /// A string key, for backends that store buckets as text:
    /// `h:<unix hour>`, `d:YYYY-MM-DD`, `m:YYYY-MM`.
    pub fn key(&self) -> String {
        match self {
            Bucket::Hour(t) => format!("h:{}", t.unix_secs().div_euclid(3600)),
            Bucket::Day(d) => format!("d:{d}"),
            Bucket::Month(m) => format!("m:{m}"),
        }
    }
}

/// The start of the UTC hour holding `t`.
pub fn hour_start(t: Timestamp) -> Timestamp {
    Timestamp::from_unix_secs(t.unix_secs().div_euclid(3600) * 3600)
}

/// One increment: `count` of `kind` at `at`, for a tenant and maybe an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageIncrement {
    /// Tenant.
    pub tenant_id: TenantId,
    /// Agent, when the use is an agent's (token issuance).
    pub agent_id: Option<AgentId>,
    /// What.
    pub kind: UsageKind,
    /// When (picks the buckets).
    pub at: Timestamp,
    /// How many.
    pub count: u64,
}

/// Increments applied together, at most once per `idempotency_key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageBatch {
    /// Unique per batch; a batch seen before is ignored.
    pub idempotency_key: String,
    /// The increments.
    pub increments: Vec<UsageIncrement>,
}

/// Stores usage counts. Backends implement only this; totals, series and
/// heatmaps are derived in the core.
#[async_trait]
pub trait UsageMeter: Send + Sync + std::fmt::Debug {
    /// Backend name.
    fn name(&self) -> &'static str;

    /// Applies a batch once: each increment adds `count` to the tenant's hour,
    /// day and month buckets of its kind, and, with an agent, to the agent's
    /// month bucket and the month's set of active agents. Returns `false` (and
    /// changes nothing) when the idempotency key was applied before.
    async fn record(&self, batch: &UsageBatch) -> Result<bool>;

    /// The tenant's count in a bucket (0 when none).
    async fn get(&self, tenant: &TenantId, kind: UsageKind, bucket: &Bucket) -> Result<u64>;

    /// The tenant's non-zero hour buckets in `[from, to)`, oldest first.
    async fn hourly(
        &self,
        tenant: &TenantId,
        kind: UsageKind,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<(Timestamp, u64)>>;

    /// Per-agent counts for a month (`YYYY-MM`).
    async fn per_agent(
        &self,
        tenant: &TenantId,
        kind: UsageKind,
        month: &str,
    ) -> Result<BTreeMap<AgentId, u64>>;

    /// Number of distinct agents with any use in the month (`YYYY-MM`).
    async fn active_agents(&self, tenant: &TenantId, month: &str) -> Result<u64>;

    /// Health of the backend.
    async fn health(&self) -> BackendHealth {
        BackendHealth::up(self.name(), std::time::Duration::ZERO)
    }
}

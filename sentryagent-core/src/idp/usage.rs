//! Usage: buffered counting, quota checks, summaries and analytics.
//!
//! Counting never writes per request: increments gather in memory and are
//! flushed as one idempotent batch when the flush interval has passed (by a
//! task that the next counted request spawns), on [`Idp::flush_usage`] and on
//! [`Idp::maintenance`]. A failed flush keeps its batch, with the same
//! idempotency key, and retries it first, so nothing is lost or counted twice.
//! Quota checks add this node's unflushed counts to the stored total, which is
//! read at most once per flush interval per tenant; several nodes may
//! therefore overshoot a quota by what they count within one interval.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{Caller, Idp};
use crate::credentials::AdminScope;
use crate::ratelimit::Decision;
use crate::usage::{Bucket, UsageBatch, UsageIncrement, UsageKind, hour_start};
use crate::{
    AgentId, Error, IdpEvent, LimitKind, Result, TenantId, TenantStatus, Tier, TierLimits,
    Timestamp,
};

#[derive(Debug, Default)]
struct BufferState {
    /// Unflushed increments by (tenant, agent, kind, hour).
    pending: HashMap<(TenantId, Option<AgentId>, UsageKind, Timestamp), u64>,
    /// Unflushed totals by (tenant, kind).
    pending_totals: HashMap<(TenantId, UsageKind), u64>,
    /// Oldest unflushed increment.
    since: Option<Timestamp>,
    /// Batches whose flush failed, retried first with the same key.
    failed: Vec<UsageBatch>,
    /// Stored totals: (tenant, kind) -> (bucket, value, read at).
    stored: HashMap<(TenantId, UsageKind), (Bucket, u64, Timestamp)>,
    /// The last stored total read, kept across flushes: what quota checks
    /// count on while the meter is unavailable.
    last_read: HashMap<(TenantId, UsageKind), (Bucket, u64)>,
}

#[derive(Debug, Default)]
pub(crate) struct UsageBuffer {
    state: Mutex<BufferState>,
    flushing: tokio::sync::Mutex<()>,
    /// A flush task is on its way (spawned by a counted request).
    flush_spawned: std::sync::atomic::AtomicBool,
}

impl UsageBuffer {
    fn lock(&self) -> std::sync::MutexGuard<'_, BufferState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The quota period of a kind: API calls per day, tokens per month.
fn period(kind: UsageKind, at: Timestamp) -> Bucket {
    match kind {
        UsageKind::ApiCall => Bucket::day_of(at),
        UsageKind::TokenIssued => Bucket::month_of(at),
    }
}

/// One limit's use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LimitUsage {
    /// Current use.
    pub used: u64,
    /// The limit; `None` = unlimited.
    pub limit: Option<u64>,
    /// Use / limit in percent (0 when unlimited).
    pub percent: u64,
    /// Whether use is at or above 80 % of the limit.
    pub approaching_limit: bool,
}

impl LimitUsage {
    fn new(used: u64, limit: Option<u64>) -> Self {
        let percent = match limit {
            Some(0) => 100,
            Some(l) => used.saturating_mul(100) / l,
            None => 0,
        };
        LimitUsage {
            used,
            limit,
            percent,
            approaching_limit: percent >= 80,
        }
    }
}

/// A tenant's tier, limits and current use (`GET /billing/usage`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageSummary {
    /// Tenant.
    pub tenant_id: TenantId,
    /// Tier.
    pub tier: Tier,
    /// Its limits.
    pub limits: TierLimits,
    /// Agents (not retired).
    pub agents: LimitUsage,
    /// API calls today (UTC).
    pub api_calls_today: LimitUsage,
    /// Token issuances this month (UTC).
    pub token_issuances_this_month: LimitUsage,
    /// Distinct agents that got a token this month.
    pub active_agents_this_month: u64,
    /// Whether any limit is at or above 80 %.
    pub approaching_limit: bool,
    /// Subscription status from billing.
    pub subscription_status: Option<crate::tenant::SubscriptionStatus>,
    /// Renewal date from billing.
    pub current_period_end: Option<Timestamp>,
}

/// A day's count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DailyCount {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Count.
    pub count: u64,
}

/// One agent's use in a month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentUsageRow {
    /// Agent.
    pub agent_id: AgentId,
    /// Its name (when it still exists).
    pub name: Option<String>,
    /// Tokens issued to it in the month.
    pub token_issuances: u64,
}

impl Idp {
    /// Counts usage in the buffer; flushes when the interval has passed.
    /// Flush errors are kept for retry, never surfaced to the request.
    pub(crate) async fn count_usage(
        &self,
        tenant: &TenantId,
        agent: Option<&AgentId>,
        kind: UsageKind,
        now: Timestamp,
    ) {
        let due = {
            let mut s = self.inner.usage.lock();
            *s.pending
                .entry((tenant.clone(), agent.cloned(), kind, hour_start(now)))
                .or_default() += 1;
            *s.pending_totals.entry((tenant.clone(), kind)).or_default() += 1;
            let since = *s.since.get_or_insert(now);
            now.since(since) >= self.inner.config.usage_flush_interval
        };
        if due {
            self.flush_due_usage().await;
        }
    }

    /// The flush a counted request found due: on a Tokio runtime, a task
    /// of its own (one at a time), so that no request waits for the meter;
    /// elsewhere, right away.
    async fn flush_due_usage(&self) {
        use std::sync::atomic::Ordering;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            let _ = self.flush_usage().await;
            return;
        };
        let spawned = &self.inner.usage.flush_spawned;
        if spawned.swap(true, Ordering::AcqRel) {
            return;
        }
        let idp = self.clone();
        runtime.spawn(async move {
            // Errors keep the batch for the next flush (see flush_usage).
            let _ = idp.flush_usage().await;
            idp.inner
                .usage
                .flush_spawned
                .store(false, Ordering::Release);
        });
    }

    /// Writes buffered usage to the meter now. Returns the number of
    /// increments written.
    pub async fn flush_usage(&self) -> Result<usize> {
        let _one_at_a_time = self.inner.usage.flushing.lock().await;
        let (mut batches, pending_totals) = {
            let mut s = self.inner.usage.lock();
            let mut batches = std::mem::take(&mut s.failed);
            let pending = std::mem::take(&mut s.pending);
            let totals = std::mem::take(&mut s.pending_totals);
            s.since = None;
            if !pending.is_empty() {
                batches.push(UsageBatch {
                    idempotency_key: uuid::Uuid::new_v4().simple().to_string(),
                    increments: pending
                        .into_iter()
                        .map(|((tenant_id, agent_id, kind, at), count)| UsageIncrement {
                            tenant_id,
                            agent_id,
                            kind,
                            at,
                            count,
                        })
                        .collect(),
                });
            }
            (batches, totals)
        };
        let mut written = 0;
        let mut first_error = None;
        let mut failed = Vec::new();
        for b in batches.drain(..) {
            match self.inner.meter.record(&b).await {
                Ok(_) => written += b.increments.len(),
                Err(e) => {
                    first_error.get_or_insert(e);
                    failed.push(b);
                }
            }
        }
        {
            let mut s = self.inner.usage.lock();
            // Flushed counts are now in the meter: drop the cached stored
            // totals so the next check reads them.
            for key in pending_totals.keys() {
                s.stored.remove(key);
            }
            if !failed.is_empty() {
                // Keep counting the unflushed ones against quotas.
                for (k, v) in pending_totals {
                    *s.pending_totals.entry(k).or_default() += v;
                }
                s.failed.extend(failed);
                s.since.get_or_insert(self.now());
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(written),
        }
    }

    /// Use of `kind` in its quota period (today / this month): stored total
    /// (cached for the flush interval) plus this node's unflushed count.
    pub(crate) async fn usage_in_period(
        &self,
        tenant: &TenantId,
        kind: UsageKind,
        now: Timestamp,
    ) -> Result<u64> {
        let bucket = period(kind, now);
        let key = (tenant.clone(), kind);
        let interval = self.inner.config.usage_flush_interval;
        let cached = {
            let s = self.inner.usage.lock();
            let pending = s.pending_totals.get(&key).copied().unwrap_or(0);
            match s.stored.get(&key) {
                Some((b, v, read)) if *b == bucket && now.since(*read) < interval => {
                    Some(v + pending)
                }
                _ => None,
            }
        };
        if let Some(v) = cached {
            return Ok(v);
        }
        let stored = match self.inner.meter.get(tenant, kind, &bucket).await {
            Ok(v) => v,
            Err(Error::Unavailable { .. }) => {
                // The meter is down (a Redis or database outage): count on
                // the last total this node read in the period (none: 0) and
                // its own unflushed use, rather than refusing every call.
                // Whether to serve at all during an outage is the rate
                // limiter's failure policy, checked before this.
                let s = self.inner.usage.lock();
                let last = match s.last_read.get(&key) {
                    Some((b, v)) if *b == bucket => *v,
                    _ => 0,
                };
                return Ok(last + s.pending_totals.get(&key).copied().unwrap_or(0));
            }
            Err(e) => return Err(e),
        };
        let mut s = self.inner.usage.lock();
        s.stored.insert(key.clone(), (bucket.clone(), stored, now));
        s.last_read.insert(key.clone(), (bucket, stored));
        Ok(stored + s.pending_totals.get(&key).copied().unwrap_or(0))
    }

    /// Admits one management API call of `tenant`: the tenant's rate limit
    /// (`RateLimited`, with the decision's figures) and daily API-call quota
    /// (`QuotaExceeded`), then counts it. Returns the rate-limit decision for
    /// response headers and the tenant's tier, read once for both.
    /// Suspended tenants get `TenantSuspended`.
    pub async fn admit_api_call(&self, tenant: &TenantId) -> Result<Admission> {
        let t = self.inner.store.tenants.get_tenant(tenant).await?;
        if t.status == TenantStatus::Suspended {
            return Err(Error::TenantSuspended);
        }
        let decision = self
            .inner
            .limiter
            .check(
                &super::tokens::tenant_limit_key(&t),
                &super::tokens::tenant_quota(self, &t),
                1,
            )
            .await?;
        if !decision.allowed {
            return Err(Error::RateLimited {
                retry_after: decision.retry_after,
                limit: u64::from(decision.limit),
            });
        }
        let now = self.now();
        if let Some(limit) = self.inner.config.tiers.limits(t.tier).api_calls_per_day {
            let used = self
                .usage_in_period(tenant, UsageKind::ApiCall, now)
                .await?;
            self.emit(IdpEvent::QuotaChecked {
                tier: t.tier,
                kind: LimitKind::ApiCallsPerDay,
                used,
                limit,
                admitted: used < limit,
            });
            if used >= limit {
                return Err(Error::QuotaExceeded {
                    limit_kind: LimitKind::ApiCallsPerDay,
                    tier: t.tier.to_string(),
                    used,
                    limit,
                });
            }
        }
        self.count_usage(tenant, None, UsageKind::ApiCall, now)
            .await;
        Ok(Admission {
            decision,
            tier: t.tier,
        })
    }

    /// A tenant's tier, limits and use.
    pub async fn usage_summary(&self, caller: &Caller, tenant: &TenantId) -> Result<UsageSummary> {
        caller.reach(tenant, "tenant")?;
        caller.require(AdminScope::BillingRead)?;
        let t = self.inner.store.tenants.get_tenant(tenant).await?;
        let limits = *self.inner.config.tiers.limits(t.tier);
        let now = self.now();
        let agents = LimitUsage::new(self.agent_count(tenant).await?, limits.max_agents);
        let api = LimitUsage::new(
            self.usage_in_period(tenant, UsageKind::ApiCall, now)
                .await?,
            limits.api_calls_per_day,
        );
        let tokens = LimitUsage::new(
            self.usage_in_period(tenant, UsageKind::TokenIssued, now)
                .await?,
            limits.token_issuances_per_month,
        );
        let active = self
            .inner
            .meter
            .active_agents(tenant, &now.utc_month())
            .await?;
        Ok(UsageSummary {
            tenant_id: tenant.clone(),
            tier: t.tier,
            limits,
            approaching_limit: agents.approaching_limit
                || api.approaching_limit
                || tokens.approaching_limit,
            agents,
            api_calls_today: api,
            token_issuances_this_month: tokens,
            active_agents_this_month: active,
            subscription_status: t.billing.subscription_status,
            current_period_end: t.billing.current_period_end,
        })
    }

    /// Token issuances per UTC day for the last `days` days (today last),
    /// zeros included.
    pub async fn daily_token_issuances(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        days: u32,
    ) -> Result<Vec<DailyCount>> {
        caller.reach(tenant, "tenant")?;
        caller.require(AdminScope::BillingRead)?;
        let days = days.clamp(1, 366);
        let now = self.now();
        let today_start = Timestamp::from_unix_secs(now.unix_secs().div_euclid(86_400) * 86_400);
        let from = today_start.minus(std::time::Duration::from_secs(86_400 * u64::from(days - 1)));
        let hours = self
            .inner
            .meter
            .hourly(
                tenant,
                UsageKind::TokenIssued,
                from,
                now.plus(std::time::Duration::from_secs(3600)),
            )
            .await?;
        let mut out: Vec<DailyCount> = (0..days)
            .map(|i| DailyCount {
                day: from
                    .plus(std::time::Duration::from_secs(86_400 * u64::from(i)))
                    .utc_day(),
                count: 0,
            })
            .collect();
        for (h, n) in hours {
            let idx = (h.unix_secs() - from.unix_secs()).div_euclid(86_400);
            if let Some(d) = usize::try_from(idx).ok().and_then(|i| out.get_mut(i)) {
                d.count += n;
            }
        }
        Ok(out)
    }

    /// Token issuances of the last 28 days by UTC weekday (0 = Monday) and
    /// hour: `heatmap[weekday][hour]`.
    pub async fn activity_heatmap(
        &self,
        caller: &Caller,
        tenant: &TenantId,
    ) -> Result<[[u64; 24]; 7]> {
        caller.reach(tenant, "tenant")?;
        caller.require(AdminScope::BillingRead)?;
        let now = self.now();
        let from = hour_start(now).minus(std::time::Duration::from_secs(28 * 86_400));
        let hours = self
            .inner
            .meter
            .hourly(
                tenant,
                UsageKind::TokenIssued,
                from,
                now.plus(std::time::Duration::from_secs(3600)),
            )
            .await?;
        let mut map = [[0u64; 24]; 7];
        for (h, n) in hours {
            let secs = h.unix_secs();
            // 1970-01-01 was a Thursday (weekday 3 with Monday = 0).
            let weekday = (secs.div_euclid(86_400) + 3).rem_euclid(7) as usize;
            let hour = secs.rem_euclid(86_400).div_euclid(3600) as usize;
            map[weekday][hour] += n;
        }
        Ok(map)
    }

    /// Per-agent token issuances in a month (`YYYY-MM`, default this month),
    /// largest first.
    pub async fn agent_usage_table(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        month: Option<&str>,
    ) -> Result<Vec<AgentUsageRow>> {
        caller.reach(tenant, "tenant")?;
        caller.require(AdminScope::BillingRead)?;
        let month = match month {
            Some(m) => {
                let ok = m.len() == 7
                    && m.as_bytes()[4] == b'-'
                    && m.bytes()
                        .enumerate()
                        .all(|(i, b)| i == 4 || b.is_ascii_digit());
                if !ok {
                    return Err(Error::invalid("month", "expected YYYY-MM"));
                }
                m.to_owned()
            }
            None => self.now().utc_month(),
        };
        let counts = self
            .inner
            .meter
            .per_agent(tenant, UsageKind::TokenIssued, &month)
            .await?;
        let mut rows = Vec::with_capacity(counts.len());
        for (agent_id, n) in counts {
            let name = self
                .inner
                .store
                .agents
                .get_agent(&agent_id)
                .await
                .ok()
                .map(|a| a.name);
            rows.push(AgentUsageRow {
                agent_id,
                name,
                token_issuances: n,
            });
        }
        rows.sort_by(|a, b| {
            b.token_issuances
                .cmp(&a.token_issuances)
                .then(a.agent_id.cmp(&b.agent_id))
        });
        Ok(rows)
    }
}

/// An admitted management API call ([`Idp::admit_api_call`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// The tenant rate limit's decision, for `RateLimit-*` headers.
    pub decision: Decision,
    /// The tenant's tier when admitted.
    pub tier: crate::Tier,
}

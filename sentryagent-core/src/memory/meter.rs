//! In-memory [`UsageMeter`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::usage::{Bucket, UsageBatch, UsageKind, UsageMeter, hour_start};
use crate::{AgentId, Result, TenantId, Timestamp};

#[derive(Debug, Default)]
struct State {
    applied: HashSet<String>,
    tenant: HashMap<(TenantId, UsageKind, Bucket), u64>,
    hourly: BTreeMap<(TenantId, UsageKind, Timestamp), u64>,
    agent_month: HashMap<(TenantId, UsageKind, String), BTreeMap<AgentId, u64>>,
    active: HashMap<(TenantId, String), BTreeSet<AgentId>>,
}

/// The in-memory usage meter.
#[derive(Debug, Default)]
pub struct MemoryUsageMeter {
    state: Mutex<State>,
}

impl MemoryUsageMeter {
    /// An empty meter.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl UsageMeter for MemoryUsageMeter {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn record(&self, batch: &UsageBatch) -> Result<bool> {
        let mut s = self.lock();
        if !s.applied.insert(batch.idempotency_key.clone()) {
            return Ok(false);
        }
        for inc in &batch.increments {
            for bucket in [Bucket::day_of(inc.at), Bucket::month_of(inc.at)] {
                *s.tenant
                    .entry((inc.tenant_id.clone(), inc.kind, bucket))
                    .or_default() += inc.count;
            }
            *s.hourly
                .entry((inc.tenant_id.clone(), inc.kind, hour_start(inc.at)))
                .or_default() += inc.count;
            if let Some(agent) = &inc.agent_id {
                let month = inc.at.utc_month();
                *s.agent_month
                    .entry((inc.tenant_id.clone(), inc.kind, month.clone()))
                    .or_default()
                    .entry(agent.clone())
                    .or_default() += inc.count;
                s.active
                    .entry((inc.tenant_id.clone(), month))
                    .or_default()
                    .insert(agent.clone());
            }
        }
        Ok(true)
    }

    async fn get(&self, tenant: &TenantId, kind: UsageKind, bucket: &Bucket) -> Result<u64> {
        let s = self.lock();
        Ok(match bucket {
            Bucket::Hour(h) => s
                .hourly
                .get(&(tenant.clone(), kind, *h))
                .copied()
                .unwrap_or(0),
            _ => s
                .tenant
                .get(&(tenant.clone(), kind, bucket.clone()))
                .copied()
                .unwrap_or(0),
        })
    }

    async fn hourly(
        &self,
        tenant: &TenantId,
        kind: UsageKind,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<(Timestamp, u64)>> {
        if from >= to {
            return Ok(vec![]);
        }
        let s = self.lock();
        Ok(s.hourly
            .range((tenant.clone(), kind, from)..(tenant.clone(), kind, to))
            .filter(|(_, v)| **v > 0)
            .map(|((_, _, t), v)| (*t, *v))
            .collect())
    }

    async fn per_agent(
        &self,
        tenant: &TenantId,
        kind: UsageKind,
        month: &str,
    ) -> Result<BTreeMap<AgentId, u64>> {
        Ok(self
            .lock()
            .agent_month
            .get(&(tenant.clone(), kind, month.to_owned()))
            .cloned()
            .unwrap_or_default())
    }

    async fn active_agents(&self, tenant: &TenantId, month: &str) -> Result<u64> {
        Ok(self
            .lock()
            .active
            .get(&(tenant.clone(), month.to_owned()))
            .map_or(0, |s| s.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn memory_conformance_usage_meter() {
        crate::conformance::usage_meter::run_all(Arc::new(super::MemoryUsageMeter::new())).await;
    }
}

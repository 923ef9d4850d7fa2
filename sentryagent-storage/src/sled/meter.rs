//! [`SledUsageMeter`]: usage counters in sled, one transaction per batch.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use ::sled::transaction::Transactional;
use async_trait::async_trait;

use sentryagent_core::BackendHealth;
use sentryagent_core::{AgentId, Clock, Error, Result, TenantId, Timestamp};
use sentryagent_core::{Bucket, UsageBatch, UsageKind, UsageMeter};

use super::Shared;
use super::codec::{
    OrAbort, SEP, TxResult, counter, i64_from_key, i64_key, key, prefix, sled_error, tx_error,
};

const EMPTY: &[u8] = &[];

/// Batch keys removed per transaction by the purge.
const PURGE_CHUNK: usize = 256;

/// How often `record` purges old batch keys, at most.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// A [`UsageMeter`] on the shared sled database.
///
/// A batch is applied in one transaction that first looks up its
/// idempotency key, then adds every increment to the tenant's hour, day and
/// month counters, the agent's month counter and the month's active-agent
/// set (with its count), and records the key. The transaction is flushed to
/// disk before `record` returns. Idempotency keys are kept for
/// [`BATCH_KEY_RETENTION`](Self::BATCH_KEY_RETENTION) after the batch was
/// applied (by the injected clock), then purged lazily by `record` (at most
/// once an hour) or by [`purge_batch_keys`](Self::purge_batch_keys).
pub struct SledUsageMeter {
    shared: Arc<Shared>,
    clock: Arc<dyn Clock>,
    /// Unix µs of the last purge of old batch keys (`i64::MIN`: never).
    last_purge: AtomicI64,
}

impl fmt::Debug for SledUsageMeter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledUsageMeter")
            .field("path", &self.shared.path)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

fn kind_byte(kind: UsageKind) -> u8 {
    match kind {
        UsageKind::ApiCall => b'a',
        UsageKind::TokenIssued => b't',
    }
}

/// `tenant, 0, kind, tag`: the start of a tenant's counter keys of a kind.
fn counter_prefix(tenant: &TenantId, kind: UsageKind, tag: u8) -> Vec<u8> {
    let mut k = prefix(tenant.as_str().as_bytes());
    k.push(kind_byte(kind));
    k.push(tag);
    k
}

fn bucket_key(tenant: &TenantId, kind: UsageKind, bucket: &Bucket) -> Vec<u8> {
    match bucket {
        Bucket::Hour(h) => {
            let mut k = counter_prefix(tenant, kind, b'h');
            k.extend_from_slice(&i64_key(h.unix_micros()));
            k
        }
        Bucket::Day(d) => {
            let mut k = counter_prefix(tenant, kind, b'd');
            k.extend_from_slice(d.as_bytes());
            k
        }
        Bucket::Month(m) => {
            let mut k = counter_prefix(tenant, kind, b'm');
            k.extend_from_slice(m.as_bytes());
            k
        }
    }
}

/// `tenant, 0, kind, month, 0`: the start of the per-agent keys of a month.
fn agent_month_prefix(tenant: &TenantId, kind: UsageKind, month: &str) -> Vec<u8> {
    let mut k = prefix(tenant.as_str().as_bytes());
    k.push(kind_byte(kind));
    k.extend_from_slice(month.as_bytes());
    k.push(SEP);
    k
}

fn active_count_key(tenant: &TenantId, month: &str) -> Vec<u8> {
    key(&[tenant.as_str().as_bytes(), month.as_bytes()])
}

/// The keys one increment touches.
struct Touch {
    count: u64,
    /// Tenant counters: hour, day, month.
    buckets: [Vec<u8>; 3],
    /// With an agent: its month counter, its active-set entry and the key of
    /// the month's active count.
    agent: Option<[Vec<u8>; 3]>,
}

fn add(tree: &::sled::transaction::TransactionalTree, k: &[u8], n: u64) -> TxResult<()> {
    let current = counter("usage", tree.get(k)?.as_deref()).or_abort()?;
    tree.insert(k, &current.saturating_add(n).to_be_bytes())?;
    Ok(())
}

impl SledUsageMeter {
    /// How long the idempotency key of an applied batch is kept: a batch
    /// delivered again within this time counts once.
    pub const BATCH_KEY_RETENTION: Duration = Duration::from_secs(7 * 86_400);

    pub(crate) fn new(shared: Arc<Shared>, clock: Arc<dyn Clock>) -> Self {
        SledUsageMeter {
            shared,
            clock,
            last_purge: AtomicI64::new(i64::MIN),
        }
    }

    /// Removes the idempotency keys of batches applied more than
    /// [`BATCH_KEY_RETENTION`](Self::BATCH_KEY_RETENTION) ago; returns how
    /// many.
    pub fn purge_batch_keys(&self) -> Result<u64> {
        let t = &self.shared.open()?.t;
        let now = self.clock.now();
        let cutoff = i64_key(now.minus(Self::BATCH_KEY_RETENTION).unix_micros());
        let mut purged = 0;
        loop {
            let mut chunk = Vec::with_capacity(PURGE_CHUNK);
            for k in t.usage_batches_by_time.iter().keys() {
                let k = k.map_err(|e| sled_error("scan of usage batch keys", e))?;
                if k.len() < 8 || k[..8] >= cutoff[..] || chunk.len() == PURGE_CHUNK {
                    break;
                }
                chunk.push(k);
            }
            if chunk.is_empty() {
                break;
            }
            purged += (&t.usage_batches, &t.usage_batches_by_time)
                .transaction(|(batches, by_time)| -> TxResult<u64> {
                    let mut n = 0;
                    for k in &chunk {
                        let (at, batch_key) = k.split_at(8);
                        if batches.get(batch_key)?.as_deref() == Some(at) {
                            batches.remove(batch_key)?;
                            n += 1;
                        }
                        by_time.remove(k)?;
                    }
                    Ok(n)
                })
                .map_err(|e| tx_error("purge of usage batch keys", e))?;
        }
        Ok(purged)
    }

    /// Purges old batch keys if the last purge is an hour old.
    fn maybe_purge(&self, now: Timestamp) {
        let now = now.unix_micros();
        let last = self.last_purge.load(Ordering::Relaxed);
        let every = i64::try_from(PURGE_EVERY.as_micros()).unwrap_or(i64::MAX);
        if now.saturating_sub(last) >= every
            && self
                .last_purge
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            // Best effort: old keys only cost space, the next purge retries.
            let _ = self.purge_batch_keys();
        }
    }
}

#[async_trait]
impl UsageMeter for SledUsageMeter {
    fn name(&self) -> &'static str {
        "sled"
    }

    async fn record(&self, batch: &UsageBatch) -> Result<bool> {
        let now = self.clock.now();
        self.maybe_purge(now);
        let t = &self.shared.open()?.t;
        let touches: Vec<Touch> = batch
            .increments
            .iter()
            .map(|inc| {
                let month = inc.at.utc_month();
                Touch {
                    count: inc.count,
                    buckets: [
                        bucket_key(&inc.tenant_id, inc.kind, &Bucket::hour_of(inc.at)),
                        bucket_key(&inc.tenant_id, inc.kind, &Bucket::Day(inc.at.utc_day())),
                        bucket_key(&inc.tenant_id, inc.kind, &Bucket::Month(month.clone())),
                    ],
                    agent: inc.agent_id.as_ref().map(|agent| {
                        let mut per_agent = agent_month_prefix(&inc.tenant_id, inc.kind, &month);
                        per_agent.extend_from_slice(agent.as_str().as_bytes());
                        let count_key = active_count_key(&inc.tenant_id, &month);
                        let mut member = prefix(&count_key);
                        member.extend_from_slice(agent.as_str().as_bytes());
                        [per_agent, member, count_key]
                    }),
                }
            })
            .collect();
        let batch_key = batch.idempotency_key.as_bytes();
        let at = i64_key(now.unix_micros());
        let mut at_key = at.to_vec();
        at_key.extend_from_slice(batch_key);
        let applied = (
            &t.usage,
            &t.usage_by_agent,
            &t.active_agents,
            &t.active_agent_counts,
            &t.usage_batches,
            &t.usage_batches_by_time,
        )
            .transaction(
                |(usage, by_agent, active, active_counts, batches, by_time)| -> TxResult<bool> {
                    if batches.get(batch_key)?.is_some() {
                        return Ok(false);
                    }
                    for touch in &touches {
                        for k in &touch.buckets {
                            add(usage, k, touch.count)?;
                        }
                        if let Some([per_agent, member, count_key]) = &touch.agent {
                            add(by_agent, per_agent, touch.count)?;
                            if active.get(member.as_slice())?.is_none() {
                                active.insert(member.as_slice(), EMPTY)?;
                                add(active_counts, count_key, 1)?;
                            }
                        }
                    }
                    batches.insert(batch_key, &at)?;
                    by_time.insert(at_key.as_slice(), EMPTY)?;
                    Ok(true)
                },
            )
            .map_err(|e| tx_error("record of a usage batch", e))?;
        if applied {
            self.shared.flush().await?;
        }
        Ok(applied)
    }

    async fn get(&self, tenant: &TenantId, kind: UsageKind, bucket: &Bucket) -> Result<u64> {
        let v = self
            .shared
            .open()?
            .t
            .usage
            .get(bucket_key(tenant, kind, bucket))
            .map_err(|e| sled_error("read of a usage counter", e))?;
        counter("usage", v.as_deref())
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
        let lo = bucket_key(tenant, kind, &Bucket::Hour(from));
        let hi = bucket_key(tenant, kind, &Bucket::Hour(to));
        let mut out = Vec::new();
        for item in self
            .shared
            .open()?
            .t
            .usage
            .range((Bound::Included(lo), Bound::Excluded(hi)))
        {
            let (k, v) = item.map_err(|e| sled_error("scan of hourly usage", e))?;
            let n = counter("usage", Some(&v))?;
            let hour = k
                .len()
                .checked_sub(8)
                .and_then(|i| i64_from_key(&k[i..]))
                .ok_or_else(|| Error::Internal {
                    message: "sled: corrupt hourly usage key".into(),
                    source: None,
                })?;
            if n > 0 {
                out.push((Timestamp::from_unix_micros(hour), n));
            }
        }
        Ok(out)
    }

    async fn per_agent(
        &self,
        tenant: &TenantId,
        kind: UsageKind,
        month: &str,
    ) -> Result<BTreeMap<AgentId, u64>> {
        let mut out = BTreeMap::new();
        if month.as_bytes().contains(&SEP) {
            // No month bucket has such a name.
            return Ok(out);
        }
        let p = agent_month_prefix(tenant, kind, month);
        for item in self.shared.open()?.t.usage_by_agent.scan_prefix(&p) {
            let (k, v) = item.map_err(|e| sled_error("scan of per-agent usage", e))?;
            let id = std::str::from_utf8(&k[p.len()..])
                .ok()
                .and_then(|s| AgentId::parse(s).ok())
                .ok_or_else(|| Error::Internal {
                    message: "sled: corrupt per-agent usage key".into(),
                    source: None,
                })?;
            out.insert(id, counter("usage", Some(&v))?);
        }
        Ok(out)
    }

    async fn active_agents(&self, tenant: &TenantId, month: &str) -> Result<u64> {
        if month.as_bytes().contains(&SEP) {
            return Ok(0);
        }
        let v = self
            .shared
            .open()?
            .t
            .active_agent_counts
            .get(active_count_key(tenant, month))
            .map_err(|e| sled_error("read of an active-agent count", e))?;
        counter("active agents", v.as_deref())
    }

    async fn health(&self) -> BackendHealth {
        self.shared.health("meter")
    }
}

#[cfg(test)]
mod tests {
    use sentryagent_core::conformance::kit::EPOCH;
    use sentryagent_core::{ManualClock, Timestamp};
    use sentryagent_core::{UsageIncrement, usage::hour_start};

    use super::super::SledBackend;
    use super::*;

    fn hour_key(tenant: &TenantId, kind: UsageKind, t: Timestamp) -> Vec<u8> {
        bucket_key(tenant, kind, &Bucket::Hour(hour_start(t)))
    }

    fn batch(key: &str, tenant: &TenantId) -> UsageBatch {
        UsageBatch {
            idempotency_key: key.into(),
            increments: vec![UsageIncrement {
                tenant_id: tenant.clone(),
                agent_id: None,
                kind: UsageKind::ApiCall,
                at: EPOCH,
                count: 1,
            }],
        }
    }

    #[tokio::test]
    async fn batch_keys_are_kept_for_the_retention_then_purged() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(EPOCH);
        let m = SledBackend::open(dir.path())
            .unwrap()
            .usage_meter(Arc::new(clock.clone()));
        let ten = TenantId::generate();
        assert!(m.record(&batch("b1", &ten)).await.unwrap());
        clock.advance(Duration::from_secs(86_400));
        assert!(m.record(&batch("b2", &ten)).await.unwrap());
        // Six days and a second after b2, b1 is over 7 days old: a redelivery of b2 still
        // counts once, b1's key is gone after the purge.
        clock.advance(Duration::from_secs(6 * 86_400 + 1));
        assert_eq!(m.purge_batch_keys().unwrap(), 1);
        assert_eq!(m.purge_batch_keys().unwrap(), 0);
        assert!(!m.record(&batch("b2", &ten)).await.unwrap());
        assert_eq!(m.shared.open().unwrap().t.usage_batches.len(), 1);
        assert_eq!(m.shared.open().unwrap().t.usage_batches_by_time.len(), 1);
        let day = Bucket::day_of(EPOCH);
        assert_eq!(m.get(&ten, UsageKind::ApiCall, &day).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn record_purges_lazily() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(EPOCH);
        let m = SledBackend::open(dir.path())
            .unwrap()
            .usage_meter(Arc::new(clock.clone()));
        let ten = TenantId::generate();
        for i in 0..5 {
            assert!(m.record(&batch(&format!("old{i}"), &ten)).await.unwrap());
        }
        clock.advance(SledUsageMeter::BATCH_KEY_RETENTION + Duration::from_secs(3600));
        assert!(m.record(&batch("new", &ten)).await.unwrap());
        assert_eq!(m.shared.open().unwrap().t.usage_batches.len(), 1);
    }

    #[test]
    fn hour_keys_order_by_time_within_a_tenant_and_kind() {
        let ten = TenantId::generate();
        let a = hour_key(&ten, UsageKind::ApiCall, Timestamp::from_unix_secs(3600));
        let b = hour_key(&ten, UsageKind::ApiCall, Timestamp::from_unix_secs(7200));
        let c = hour_key(&ten, UsageKind::TokenIssued, Timestamp::from_unix_secs(0));
        assert!(a < b);
        assert!(!c.starts_with(&counter_prefix(&ten, UsageKind::ApiCall, b'h')));
    }

    #[tokio::test]
    async fn months_with_separator_bytes_match_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let m = SledBackend::open(dir.path())
            .unwrap()
            .usage_meter(Arc::new(sentryagent_core::SystemClock));
        let ten = TenantId::generate();
        assert!(
            m.per_agent(&ten, UsageKind::TokenIssued, "2025-11\0x")
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(m.active_agents(&ten, "\0").await.unwrap(), 0);
    }
}

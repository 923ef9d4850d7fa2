//! [`PostgresUsageMeter`]: the [`UsageMeter`] on Postgres.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;

use sentryagent_core::BackendHealth;
use sentryagent_core::{AgentId, Error, Result, TenantId, Timestamp};
use sentryagent_core::{Bucket, UsageBatch, UsageKind, UsageMeter, usage::hour_start};

use super::db::{Db, to_i64, to_u64};
use super::options::PostgresOptions;

/// The [`UsageMeter`] on Postgres.
///
/// A batch is one transaction: its idempotency key goes into
/// `usage_batches` (`ON CONFLICT DO NOTHING`; a key already there rolls the
/// transaction back and [`record`](UsageMeter::record) returns `false`), then
/// the increments, merged per row in the batch, are added with `INSERT ...
/// ON CONFLICT DO UPDATE SET count = count + EXCLUDED.count` to the day and
/// month buckets (`usage_counts`), the hour buckets (`usage_hours`), the
/// per-agent months (`usage_agent_months`) and the month's active agents
/// (`usage_active_agents`). Rows are written in key order, so concurrent
/// batches do not deadlock. A concurrent delivery of the same key waits for
/// the first one's transaction and then finds the key.
///
/// Nothing expires here: idempotency keys are kept until
/// [`purge_batch_keys`](Self::purge_batch_keys) removes old ones (a batch
/// redelivered after its key was purged would count again), and counts are
/// kept until removed by the operator.
#[derive(Debug, Clone)]
pub struct PostgresUsageMeter {
    db: Db,
}

impl PostgresUsageMeter {
    /// Connects (creating the schema and applying migrations like
    /// [`PostgresStore::connect`](super::PostgresStore::connect)).
    pub async fn connect(options: &PostgresOptions) -> Result<Self> {
        Ok(Self::from_db(Db::connect(options).await?))
    }

    pub(crate) fn from_db(db: Db) -> Self {
        PostgresUsageMeter { db }
    }

    /// Deletes the idempotency keys of batches applied more than `age` ago;
    /// returns how many. Keep `age` well above the longest time a batch may
    /// be retried (the core retries a failed flush on its next flush).
    pub async fn purge_batch_keys(&self, age: Duration) -> Result<u64> {
        let micros = i64::try_from(age.as_micros()).unwrap_or(i64::MAX);
        self.db
            .run(|| async {
                let done = sqlx::query(
                    "DELETE FROM usage_batches \
                     WHERE applied_at < now() - make_interval(secs => $1::double precision / 1e6)",
                )
                .bind(micros)
                .execute(&self.db.pool)
                .await?;
                Ok(done.rows_affected())
            })
            .await
    }
}

/// A batch merged per row, in key order.
#[derive(Default)]
struct Merged {
    /// (tenant, kind, bucket key) -> count, day and month buckets.
    counts: BTreeMap<(String, &'static str, String), u64>,
    /// (tenant, kind, hour start µs) -> count.
    hours: BTreeMap<(String, &'static str, i64), u64>,
    /// (tenant, kind, month, agent) -> count.
    agent_months: BTreeMap<(String, &'static str, String, String), u64>,
    /// (tenant, month, agent).
    active: BTreeSet<(String, String, String)>,
}

fn add<K: Ord>(map: &mut BTreeMap<K, u64>, key: K, n: u64) -> Result<()> {
    let slot = map.entry(key).or_default();
    *slot = slot
        .checked_add(n)
        .ok_or_else(|| Error::invalid("count", "too large"))?;
    Ok(())
}

impl Merged {
    fn of(batch: &UsageBatch) -> Result<Merged> {
        let mut m = Merged::default();
        for inc in &batch.increments {
            let tenant = inc.tenant_id.to_string();
            let kind = inc.kind.as_str();
            for bucket in [Bucket::day_of(inc.at), Bucket::month_of(inc.at)] {
                add(
                    &mut m.counts,
                    (tenant.clone(), kind, bucket.key()),
                    inc.count,
                )?;
            }
            add(
                &mut m.hours,
                (tenant.clone(), kind, hour_start(inc.at).unix_micros()),
                inc.count,
            )?;
            if let Some(agent) = &inc.agent_id {
                let month = inc.at.utc_month();
                add(
                    &mut m.agent_months,
                    (tenant.clone(), kind, month.clone(), agent.to_string()),
                    inc.count,
                )?;
                m.active.insert((tenant, month, agent.to_string()));
            }
        }
        Ok(m)
    }
}

/// Column arrays for `UNNEST`.
fn columns<K, const N: usize>(
    map: &BTreeMap<K, u64>,
    split: impl Fn(&K) -> [String; N],
) -> Result<([Vec<String>; N], Vec<i64>)> {
    let mut cols: [Vec<String>; N] = std::array::from_fn(|_| Vec::with_capacity(map.len()));
    let mut counts = Vec::with_capacity(map.len());
    for (k, v) in map {
        for (col, value) in cols.iter_mut().zip(split(k)) {
            col.push(value);
        }
        counts.push(to_i64(*v, "count")?);
    }
    Ok((cols, counts))
}

#[async_trait]
impl UsageMeter for PostgresUsageMeter {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn record(&self, batch: &UsageBatch) -> Result<bool> {
        let merged = Merged::of(batch)?;
        let ([c_tenant, c_kind, c_bucket], c_count) = columns(&merged.counts, |(t, k, b)| {
            [t.clone(), (*k).to_owned(), b.clone()]
        })?;
        let ([h_tenant, h_kind], h_count) =
            columns(&merged.hours, |(t, k, _)| [t.clone(), (*k).to_owned()])?;
        let h_hour: Vec<i64> = merged.hours.keys().map(|(_, _, h)| *h).collect();
        let ([a_tenant, a_kind, a_month, a_agent], a_count) =
            columns(&merged.agent_months, |(t, k, m, a)| {
                [t.clone(), (*k).to_owned(), m.clone(), a.clone()]
            })?;
        let mut s_tenant = Vec::new();
        let mut s_month = Vec::new();
        let mut s_agent = Vec::new();
        for (t, m, a) in &merged.active {
            s_tenant.push(t.clone());
            s_month.push(m.clone());
            s_agent.push(a.clone());
        }
        self.db
            .run(|| async {
                let mut tx = self.db.pool.begin().await?;
                let fresh = sqlx::query(
                    "INSERT INTO usage_batches (idempotency_key) VALUES ($1) \
                     ON CONFLICT DO NOTHING RETURNING 1",
                )
                .bind(&batch.idempotency_key)
                .fetch_optional(&mut *tx)
                .await?;
                if fresh.is_none() {
                    tx.rollback().await?;
                    return Ok(false);
                }
                if !c_count.is_empty() {
                    sqlx::query(
                        "INSERT INTO usage_counts (tenant_id, kind, bucket, count) \
                         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[]) \
                         ON CONFLICT (tenant_id, kind, bucket) \
                         DO UPDATE SET count = usage_counts.count + EXCLUDED.count",
                    )
                    .bind(&c_tenant)
                    .bind(&c_kind)
                    .bind(&c_bucket)
                    .bind(&c_count)
                    .execute(&mut *tx)
                    .await?;
                }
                if !h_count.is_empty() {
                    sqlx::query(
                        "INSERT INTO usage_hours (tenant_id, kind, hour, count) \
                         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[]) \
                         ON CONFLICT (tenant_id, kind, hour) \
                         DO UPDATE SET count = usage_hours.count + EXCLUDED.count",
                    )
                    .bind(&h_tenant)
                    .bind(&h_kind)
                    .bind(&h_hour)
                    .bind(&h_count)
                    .execute(&mut *tx)
                    .await?;
                }
                if !a_count.is_empty() {
                    sqlx::query(
                        "INSERT INTO usage_agent_months (tenant_id, kind, month, agent_id, count) \
                         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[]) \
                         ON CONFLICT (tenant_id, kind, month, agent_id) \
                         DO UPDATE SET count = usage_agent_months.count + EXCLUDED.count",
                    )
                    .bind(&a_tenant)
                    .bind(&a_kind)
                    .bind(&a_month)
                    .bind(&a_agent)
                    .bind(&a_count)
                    .execute(&mut *tx)
                    .await?;
                }
                if !s_agent.is_empty() {
                    sqlx::query(
                        "INSERT INTO usage_active_agents (tenant_id, month, agent_id) \
                         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[]) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(&s_tenant)
                    .bind(&s_month)
                    .bind(&s_agent)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(true)
            })
            .await
    }

    async fn get(&self, tenant: &TenantId, kind: UsageKind, bucket: &Bucket) -> Result<u64> {
        self.db
            .run(|| async {
                let n: Option<i64> = match bucket {
                    Bucket::Hour(h) => {
                        sqlx::query_scalar(
                            "SELECT count FROM usage_hours \
                             WHERE tenant_id = $1 AND kind = $2 AND hour = $3",
                        )
                        .bind(tenant.as_str())
                        .bind(kind.as_str())
                        .bind(h.unix_micros())
                        .fetch_optional(&self.db.pool)
                        .await?
                    }
                    _ => {
                        sqlx::query_scalar(
                            "SELECT count FROM usage_counts \
                             WHERE tenant_id = $1 AND kind = $2 AND bucket = $3",
                        )
                        .bind(tenant.as_str())
                        .bind(kind.as_str())
                        .bind(bucket.key())
                        .fetch_optional(&self.db.pool)
                        .await?
                    }
                };
                Ok(to_u64(n.unwrap_or(0))?)
            })
            .await
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
        self.db
            .run(|| async {
                let rows = sqlx::query(
                    "SELECT hour, count FROM usage_hours \
                     WHERE tenant_id = $1 AND kind = $2 AND hour >= $3 AND hour < $4 AND count > 0 \
                     ORDER BY hour",
                )
                .bind(tenant.as_str())
                .bind(kind.as_str())
                .bind(from.unix_micros())
                .bind(to.unix_micros())
                .fetch_all(&self.db.pool)
                .await?;
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    let hour: i64 = r.try_get("hour")?;
                    let count: i64 = r.try_get("count")?;
                    out.push((Timestamp::from_unix_micros(hour), to_u64(count)?));
                }
                Ok(out)
            })
            .await
    }

    async fn per_agent(
        &self,
        tenant: &TenantId,
        kind: UsageKind,
        month: &str,
    ) -> Result<BTreeMap<AgentId, u64>> {
        self.db
            .run(|| async {
                let rows = sqlx::query(
                    "SELECT agent_id, count FROM usage_agent_months \
                     WHERE tenant_id = $1 AND kind = $2 AND month = $3",
                )
                .bind(tenant.as_str())
                .bind(kind.as_str())
                .bind(month)
                .fetch_all(&self.db.pool)
                .await?;
                let mut out = BTreeMap::new();
                for r in &rows {
                    let id: String = r.try_get("agent_id")?;
                    let count: i64 = r.try_get("count")?;
                    let id = AgentId::parse(&id).map_err(|e| {
                        Error::internal("postgres: a stored agent id is not valid", e)
                    })?;
                    out.insert(id, to_u64(count)?);
                }
                Ok(out)
            })
            .await
    }

    async fn active_agents(&self, tenant: &TenantId, month: &str) -> Result<u64> {
        self.db
            .run(|| async {
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM usage_active_agents WHERE tenant_id = $1 AND month = $2",
                )
                .bind(tenant.as_str())
                .bind(month)
                .fetch_one(&self.db.pool)
                .await?;
                Ok(to_u64(n)?)
            })
            .await
    }

    async fn health(&self) -> BackendHealth {
        self.db.health().await
    }
}

//! [`RedisUsageMeter`]: usage counters in Redis.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;
use redis::{RedisResult, Value};

use sentryagent_core::{AgentId, Error, Result, TenantId, Timestamp};
use sentryagent_core::{BackendHealth, HealthStatus};
use sentryagent_core::{Bucket, UsageBatch, UsageKind, UsageMeter, usage::hour_start};

use super::conn::{Conn, Lua, bad_reply, is_noscript, unavailable};
use super::options::FailurePolicy;

/// The longest range [`hourly`](UsageMeter::hourly) reads, in hours: 400
/// days (the core asks for up to 367 days of hours).
pub const MAX_HOURLY_HOURS: i64 = 400 * 24;

const HOUR_MICROS: i64 = 3_600_000_000;
/// Keys per `MGET`.
const MGET_CHUNK: usize = 500;

static USAGE: std::sync::LazyLock<Lua> =
    std::sync::LazyLock::new(|| Lua::new(include_str!("usage.lua")));

pub(crate) fn usage_script() -> &'static Lua {
    &USAGE
}

/// A [`UsageMeter`] on Redis.
///
/// Keys of a tenant share the hash tag `{<prefix>u:<tenant>}` (one Redis
/// Cluster slot per tenant):
///
/// | key | type | holds | kept (from its last write) |
/// |---|---|---|---|
/// | `{..}:c:<kind>:h:<unix hour>` | string | hour count (`INCRBY`) | [`UsageRetention::hours`](super::UsageRetention::hours), 35 days |
/// | `{..}:c:<kind>:d:<YYYY-MM-DD>` | string | day count | [`days`](super::UsageRetention::days), 400 days |
/// | `{..}:c:<kind>:m:<YYYY-MM>` | string | month count | [`months`](super::UsageRetention::months), 3 years |
/// | `{..}:a:<kind>:<YYYY-MM>` | hash | agent -> month count (`HINCRBY`) | months |
/// | `{..}:s:<YYYY-MM>` | set | the month's active agents (`SADD`, `SCARD`) | months |
/// | `{..}:b:<idempotency key>` | string | a batch applied (`SET NX EX`) | [`batch_keys`](super::UsageRetention::batch_keys), 7 days |
///
/// A batch is applied per tenant, each part by one Lua script that sets the
/// part's idempotency key with `SET NX` and, only if it was not set before,
/// applies the part's increments: each part counts exactly once, however
/// often (or concurrently) the batch is delivered. The parts of one batch
/// travel in one pipeline (on Redis Cluster, one call per part, each in its
/// tenant's slot). [`record`](UsageMeter::record) returns `true` when
/// it applied any part; a delivery that fails half-way returns the error and
/// the retry applies the parts still missing.
///
/// The hourly series reads the hour counters of the range (at most
/// [`MAX_HOURLY_HOURS`]; longer ranges are [`Error::Invalid`]); hours older
/// than the retention read as zero.
#[derive(Debug, Clone)]
pub struct RedisUsageMeter {
    conn: Conn,
}

/// One tenant's part of a batch: script keys and arguments.
struct Part {
    keys: Vec<String>,
    args: Vec<String>,
}

fn tenant_tag(prefix: &str, tenant: &TenantId) -> String {
    format!("{{{prefix}u:{tenant}}}")
}

fn secs(d: Duration) -> String {
    d.as_secs().max(1).to_string()
}

fn add<K: Ord>(map: &mut BTreeMap<K, u64>, key: K, n: u64) -> Result<()> {
    let slot = map.entry(key).or_default();
    *slot = slot
        .checked_add(n)
        .filter(|v| i64::try_from(*v).is_ok())
        .ok_or_else(|| Error::invalid("count", "too large (at most 2^63 - 1)"))?;
    Ok(())
}

fn parse_count(what: &str, v: Option<String>) -> Result<u64> {
    match v {
        None => Ok(0),
        Some(s) => s.parse().map_err(|_| Error::Internal {
            message: format!("redis: {what} holds {s:?}, not a count"),
            source: None,
        }),
    }
}

impl RedisUsageMeter {
    pub(crate) fn new(conn: Conn) -> Self {
        RedisUsageMeter { conn }
    }

    fn counter_key(&self, tenant: &TenantId, kind: UsageKind, bucket: &Bucket) -> String {
        format!(
            "{}:c:{}:{}",
            tenant_tag(self.conn.prefix(), tenant),
            kind.as_str(),
            bucket.key()
        )
    }

    fn parts(&self, batch: &UsageBatch) -> Result<Vec<Part>> {
        let retention = &self.conn.options.retention;
        let prefix = self.conn.prefix();
        // Per tenant: counters, per-agent hashes, active sets, merged.
        type Merged = (
            BTreeMap<(String, Duration), u64>,
            BTreeMap<(String, String), u64>,
            BTreeSet<(String, String)>,
        );
        let mut tenants: BTreeMap<&TenantId, Merged> = BTreeMap::new();
        for inc in &batch.increments {
            let tag = tenant_tag(prefix, &inc.tenant_id);
            let kind = inc.kind.as_str();
            let (counters, hashes, sets) = tenants.entry(&inc.tenant_id).or_default();
            for (bucket, ttl) in [
                (Bucket::hour_of(inc.at), retention.hours),
                (Bucket::day_of(inc.at), retention.days),
                (Bucket::month_of(inc.at), retention.months),
            ] {
                add(
                    counters,
                    (format!("{tag}:c:{kind}:{}", bucket.key()), ttl),
                    inc.count,
                )?;
            }
            if let Some(agent) = &inc.agent_id {
                let month = inc.at.utc_month();
                add(
                    hashes,
                    (format!("{tag}:a:{kind}:{month}"), agent.to_string()),
                    inc.count,
                )?;
                sets.insert((format!("{tag}:s:{month}"), agent.to_string()));
            }
        }
        let mut parts = Vec::with_capacity(tenants.len());
        for (tenant, (counters, hashes, sets)) in tenants {
            let tag = tenant_tag(prefix, tenant);
            let mut keys = vec![format!("{tag}:b:{}", batch.idempotency_key)];
            let mut args = vec![secs(retention.batch_keys)];
            for ((key, ttl), n) in counters {
                keys.push(key);
                args.extend(["c".to_owned(), n.to_string(), secs(ttl)]);
            }
            for ((key, field), n) in hashes {
                keys.push(key);
                args.extend(["h".to_owned(), field, n.to_string(), secs(retention.months)]);
            }
            for (key, member) in sets {
                keys.push(key);
                args.extend(["s".to_owned(), member, secs(retention.months)]);
            }
            parts.push(Part { keys, args });
        }
        Ok(parts)
    }

    /// `PING` latency.
    /// `Up` when Redis answers a ping. Otherwise `Down`, or `Degraded`
    /// under [`FailurePolicy::Open`]: each node keeps counting in memory
    /// and writes its batches (idempotently) once Redis is back, and quota
    /// checks count on the last totals read, so the node still serves.
    async fn ping_health(&self, part: &str) -> BackendHealth {
        let policy = self.conn.options.failure_policy;
        match self.conn.ping().await {
            Ok(latency) => BackendHealth::up("redis", latency),
            Err(e) => {
                let mut h = BackendHealth::down("redis", format!("redis unreachable: {e}"));
                if policy == FailurePolicy::Open {
                    h.status = HealthStatus::Degraded;
                }
                h
            }
        }
        .with_detail("part", part)
        .with_detail("failure_policy", policy.as_str())
    }
}

#[async_trait]
impl UsageMeter for RedisUsageMeter {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn record(&self, batch: &UsageBatch) -> Result<bool> {
        let parts = self.parts(batch)?;
        if parts.is_empty() {
            // Nothing to count; the key still makes a repeat return false.
            let key = format!("{{{}u}}:b:{}", self.conn.prefix(), batch.idempotency_key);
            let set: Option<String> = redis::cmd("SET")
                .arg(key)
                .arg("1")
                .arg("NX")
                .arg("EX")
                .arg(secs(self.conn.options.retention.batch_keys))
                .query_async(&mut self.conn.manager())
                .await
                .map_err(|e| unavailable("record", e))?;
            return Ok(set.is_some());
        }
        let replies: Vec<RedisResult<i64>> = if self.conn.is_cluster() {
            // Each tenant's part is in its own slot: one call each.
            let mut replies = Vec::with_capacity(parts.len());
            for p in &parts {
                replies.push(self.conn.eval(usage_script(), &p.keys, &p.args).await);
            }
            replies
        } else {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for p in &parts {
                pipe.add_command(Conn::evalsha(usage_script(), &p.keys, &p.args));
            }
            pipe.query_async(&mut self.conn.manager())
                .await
                .map_err(|e| unavailable("record", e))?
        };
        if replies.len() != parts.len() {
            return Err(Error::Internal {
                message: "redis: the usage pipeline returned fewer replies than parts".into(),
                source: None,
            });
        }
        let mut applied = false;
        let mut failure = None;
        for (reply, part) in replies.into_iter().zip(&parts) {
            let reply = match reply {
                // The script cache was lost: that part did not run.
                Err(e) if is_noscript(&e) => {
                    self.conn
                        .eval::<i64>(usage_script(), &part.keys, &part.args)
                        .await
                }
                other => other,
            };
            match reply {
                Ok(1) => applied = true,
                Ok(0) => {}
                Ok(other) => {
                    return Err(bad_reply("the usage script", &Value::Int(other)));
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        match failure {
            Some(e) => Err(unavailable("record", e)),
            None => Ok(applied),
        }
    }

    async fn get(&self, tenant: &TenantId, kind: UsageKind, bucket: &Bucket) -> Result<u64> {
        if let Bucket::Hour(h) = bucket
            && h.unix_micros().rem_euclid(HOUR_MICROS) != 0
        {
            // Hour buckets are named by their start; nothing else holds counts.
            return Ok(0);
        }
        let v: Option<String> = redis::cmd("GET")
            .arg(self.counter_key(tenant, kind, bucket))
            .query_async(&mut self.conn.manager())
            .await
            .map_err(|e| unavailable("get", e))?;
        parse_count("a usage counter", v)
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
        // The first hour start at or after `from`, up to `to` (excluded).
        let first = i128::from(from.unix_micros()).div_euclid(i128::from(HOUR_MICROS))
            + i128::from(from.unix_micros().rem_euclid(HOUR_MICROS) != 0);
        let end = i128::from(to.unix_micros() - 1).div_euclid(i128::from(HOUR_MICROS));
        if end < first {
            return Ok(vec![]);
        }
        if end - first + 1 > i128::from(MAX_HOURLY_HOURS) {
            return Err(Error::invalid(
                "to",
                format!("the Redis usage meter reads at most {MAX_HOURLY_HOURS} hours at once"),
            ));
        }
        let hours: Vec<i64> = (first..=end)
            .filter_map(|h| i64::try_from(h).ok())
            .collect();
        let mut out = Vec::new();
        for chunk in hours.chunks(MGET_CHUNK) {
            let keys: Vec<String> = chunk
                .iter()
                .map(|h| {
                    let start = Timestamp::from_unix_micros(h.saturating_mul(HOUR_MICROS));
                    self.counter_key(tenant, kind, &Bucket::Hour(start))
                })
                .collect();
            let values: Vec<Option<String>> = redis::cmd("MGET")
                .arg(&keys)
                .query_async(&mut self.conn.manager())
                .await
                .map_err(|e| unavailable("hourly", e))?;
            for (h, v) in chunk.iter().zip(values) {
                let n = parse_count("an hour counter", v)?;
                if n > 0 {
                    out.push((hour_start(Timestamp::from_unix_micros(h * HOUR_MICROS)), n));
                }
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
        let key = format!(
            "{}:a:{}:{month}",
            tenant_tag(self.conn.prefix(), tenant),
            kind.as_str()
        );
        let all: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(key)
            .query_async(&mut self.conn.manager())
            .await
            .map_err(|e| unavailable("per_agent", e))?;
        let mut out = BTreeMap::new();
        for (agent, n) in all {
            let id = AgentId::parse(&agent)
                .map_err(|e| Error::internal("redis: a stored agent id is not valid", e))?;
            out.insert(id, parse_count("a per-agent count", Some(n))?);
        }
        Ok(out)
    }

    async fn active_agents(&self, tenant: &TenantId, month: &str) -> Result<u64> {
        let key = format!("{}:s:{month}", tenant_tag(self.conn.prefix(), tenant));
        redis::cmd("SCARD")
            .arg(key)
            .query_async(&mut self.conn.manager())
            .await
            .map_err(|e| unavailable("active_agents", e))
    }

    async fn health(&self) -> BackendHealth {
        self.ping_health("usage_meter").await
    }
}

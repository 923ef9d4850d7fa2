//! [`RedisRateLimiter`]: GCRA in one Lua script, shared by every node.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::RedisError;

use sentryagent_core::ratelimit::{Check, check_all_sequentially, validate_checks};
use sentryagent_core::{BackendHealth, HealthStatus};
use sentryagent_core::{
    Decision, Decisions, Quota, RateLimiter, ratelimit::gcra, ratelimit::validate_key,
};
use sentryagent_core::{Error, Result};

use super::conn::{Conn, Lua, hash_tag, tagged_by_first_segment, unavailable};
use super::options::FailurePolicy;

/// The largest `burst × T` the Redis script computes exactly: 2^51 µs,
/// about 71 years. Larger quotas are refused with [`Error::Invalid`].
pub const MAX_BURST_OFFSET: Duration = Duration::from_micros(1 << 51);

/// Counters of a [`RedisRateLimiter`] since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimiterStats {
    /// Checks whose call to Redis failed (each then followed the policy).
    pub failures: u64,
    /// Checks admitted by [`FailurePolicy::Open`] without asking Redis
    /// (after a failure, or during the cool-down after one).
    pub fail_open: u64,
    /// Checks refused by [`FailurePolicy::Closed`].
    pub fail_closed: u64,
    /// `SCRIPT LOAD`s sent on the connection this limiter shares with the
    /// backend's other parts (its scripts when the backend opened, then one
    /// after each `NOSCRIPT`).
    pub script_loads: u64,
}

#[derive(Debug, Default)]
struct Failing {
    /// No call to Redis before this instant (the cool-down).
    until: Option<Instant>,
    /// The last failure, for `health()`.
    last_error: Option<String>,
}

/// A [`RateLimiter`] on Redis: every node sharing the Redis shares each
/// key's limit.
///
/// Each check is one `EVALSHA` of a Lua script that runs the core's GCRA
/// step ([`gcra`]) on integers, reading the time from the Redis server's
/// `TIME`, so decisions do not depend on the nodes' clocks. The key holds
/// the theoretical arrival time, and expires at it (a key past it is a key
/// with a full burst). The script is loaded when the backend opens and
/// again only when Redis answers `NOSCRIPT`, after which the call is retried
/// once; no other error is ever retried (a script that ran but whose reply
/// was lost must not count twice).
///
/// [`check_all`](RateLimiter::check_all) decides every key of a request in
/// one `EVALSHA` of a second script (`gcra_all.lua`), atomically: one round
/// trip per request, whatever the number of limits. On one server,
/// concurrent `check_all` calls of a limiter are also **coalesced**: while a
/// call is in flight, the requests that arrive wait, and the next call
/// carries all of them (up to [`MAX_COALESCED`]), each still decided
/// all-or-nothing and in arrival order. Nothing waits for a timer: a lone
/// request is sent at once. Under load this makes fewer script calls than
/// requests ([`with_coalescing`](Self::with_coalescing) turns it off). A
/// failed call fails every request it carried (each then follows the
/// [`FailurePolicy`]). Redis Cluster calls are not coalesced (requests of
/// different tenants live in different slots).
///
/// Keys are `{<prefix>rl:<first segment>}/<rest>`: the part of the key
/// before its first `/` is the Redis Cluster hash tag (a key without `/` is
/// all tag, `{<prefix>rl:<key>}`), so keys that share their first segment
/// share a slot. The core names its keys so: `tenant:<tenant id>` and
/// `tenant:<tenant id>/client:<agent id>` share the tenant's slot, and a
/// request's limits are checked by one script even on a cluster. On a
/// cluster, a `check_all` over keys of different tags cannot be one script:
/// it falls back to
/// [`check_all_sequentially`](sentryagent_core::ratelimit::check_all_sequentially).
/// Inputs are checked before Redis is called
/// ([`Quota::validate_request`], [`validate_key`]), and quotas whose
/// `burst × T` exceeds [`MAX_BURST_OFFSET`] are refused (the script's
/// arithmetic is exact below it).
///
/// When Redis fails, the [`FailurePolicy`] decides; the failure is counted
/// ([`stats`](Self::stats)), and for
/// [`failure_cooldown`](super::RedisOptions::failure_cooldown) the policy
/// applies without calling Redis. [`health`](Self::health) is `Degraded`
/// while failing open and `Down` while failing closed.
#[derive(Debug)]
pub struct RedisRateLimiter {
    conn: Conn,
    failures: AtomicU64,
    fail_open: AtomicU64,
    fail_closed: AtomicU64,
    failing: Mutex<Failing>,
    clock: Option<Arc<dyn sentryagent_core::Clock>>,
    coalesce: bool,
    queue: Arc<Mutex<Queue>>,
}

static GCRA: std::sync::LazyLock<Lua> =
    std::sync::LazyLock::new(|| Lua::new(include_str!("gcra.lua")));

static GCRA_ALL: std::sync::LazyLock<Lua> =
    std::sync::LazyLock::new(|| Lua::new(include_str!("gcra_all.lua")));

pub(crate) fn gcra_script() -> &'static Lua {
    &GCRA
}

pub(crate) fn gcra_all_script() -> &'static Lua {
    &GCRA_ALL
}

impl RedisRateLimiter {
    pub(crate) fn new(conn: Conn) -> Self {
        RedisRateLimiter {
            conn,
            failures: AtomicU64::new(0),
            fail_open: AtomicU64::new(0),
            fail_closed: AtomicU64::new(0),
            clock: None,
            failing: Mutex::new(Failing::default()),
            coalesce: true,
            queue: Arc::new(Mutex::new(Queue::default())),
        }
    }

    /// The failure policy.
    pub fn failure_policy(&self) -> FailurePolicy {
        self.conn.options.failure_policy
    }

    /// Counters since opening.
    pub fn stats(&self) -> RateLimiterStats {
        RateLimiterStats {
            failures: self.failures.load(Ordering::Relaxed),
            fail_open: self.fail_open.load(Ordering::Relaxed),
            fail_closed: self.fail_closed.load(Ordering::Relaxed),
            script_loads: self.conn.script_loads(),
        }
    }

    fn redis_key(&self, key: &str) -> String {
        tagged_by_first_segment(self.conn.prefix(), "rl", key)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Failing> {
        self.failing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ping latency, and the failure policy's state: `Up` when Redis
    /// answers; otherwise `Degraded` (failing open: requests are admitted
    /// unchecked) or `Down` (failing closed: requests are refused). A
    /// successful ping ends a cool-down early.
    pub async fn health(&self) -> BackendHealth {
        let stats = self.stats();
        let policy = self.failure_policy();
        let h = match self.conn.ping().await {
            Ok(latency) => {
                self.lock().until = None;
                BackendHealth::up("redis", latency)
            }
            Err(e) => {
                let mut h = BackendHealth::down("redis", format!("redis unreachable: {e}"));
                if policy == FailurePolicy::Open {
                    h.status = HealthStatus::Degraded;
                }
                h
            }
        };
        let last = self.lock().last_error.clone();
        let h = match last {
            Some(e) => h.with_detail("last_failure", e),
            None => h,
        };
        h.with_detail("part", "rate_limiter")
            .with_detail("failure_policy", policy.as_str())
            .with_detail("failures", stats.failures)
            .with_detail("fail_open", stats.fail_open)
            .with_detail("fail_closed", stats.fail_closed)
            .with_detail("script_loads", stats.script_loads)
    }

    /// Takes the time from `clock` instead of the Redis server's `TIME`.
    ///
    /// For tests that drive time with a
    /// [`ManualClock`](sentryagent_core::ManualClock) (the conformance suite
    /// runs exactly, whatever the machine's load), and for a single node that
    /// wants its injected clock. Nodes sharing limits should keep the
    /// server's clock: with their own clocks, their skew becomes error in
    /// the limits.
    pub fn with_clock(mut self, clock: Arc<dyn sentryagent_core::Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The check with an explicit `now` (µs) instead of the server's clock,
    /// for tests of the script's arithmetic.
    #[cfg(test)]
    pub(crate) async fn check_at(
        &self,
        key: &str,
        quota: &Quota,
        cost: u32,
        now: i64,
    ) -> std::result::Result<Decision, RedisError> {
        let (t, d) = offsets(quota).map_err(|e| {
            RedisError::from((redis::ErrorKind::Client, "bad quota", e.to_string()))
        })?;
        self.call(key, quota, t, d, cost, Some(now)).await
    }

    async fn call(
        &self,
        key: &str,
        quota: &Quota,
        t: u64,
        d: u64,
        cost: u32,
        now: Option<i64>,
    ) -> std::result::Result<Decision, RedisError> {
        let mut args = vec![t.to_string(), d.to_string(), cost.to_string()];
        if let Some(now) = now {
            args.push(now.to_string());
        }
        let reply: Vec<i64> = self
            .conn
            .eval(gcra_script(), &[self.redis_key(key)], &args)
            .await?;
        let [allowed, remaining, retry_after, reset_after] = reply[..] else {
            return Err(RedisError::from((
                redis::ErrorKind::Parse,
                "the rate limit script returned an unexpected reply",
            )));
        };
        let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
        Ok(Decision {
            allowed: allowed == 1,
            limit: quota.limit,
            remaining: u32::try_from(remaining).unwrap_or(0),
            retry_after: micros(retry_after),
            reset_after: micros(reset_after),
        })
    }

    /// Queues `request` for the next coalesced call, starting the task
    /// that sends them if none runs, and waits for its reply.
    async fn coalesced(&self, request: Request) -> Reply {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let start = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.waiting.push((request, tx));
            !std::mem::replace(&mut q.running, true)
        };
        if start {
            tokio::spawn(drain(
                self.conn.clone(),
                self.queue.clone(),
                self.clock.clone(),
            ));
        }
        rx.await.unwrap_or_else(|_| {
            Err(RedisError::from((
                redis::ErrorKind::Io,
                "the coalesced rate limit call was dropped",
            )))
        })
    }

    /// Whether concurrent [`check_all`](RateLimiter::check_all) calls are
    /// coalesced (on by default; see the type docs). Off, each call is one
    /// script call of its own.
    #[must_use]
    pub fn with_coalescing(mut self, on: bool) -> Self {
        self.coalesce = on;
        self
    }

    /// A call to Redis answered: the cool-down (if any) ends.
    fn succeeded(&self) {
        self.lock().until = None;
    }

    /// A call to Redis failed: counted, remembered, and the cool-down starts.
    fn failed(&self, e: &RedisError) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut f = self.lock();
        f.last_error = Some(e.to_string());
        let cooldown = self.conn.options.failure_cooldown;
        f.until = (!cooldown.is_zero()).then(|| Instant::now() + cooldown);
    }

    /// What the policy answers instead of Redis, for a whole request.
    fn policy_all(&self, checks: &[Check<'_>], cause: Option<RedisError>) -> Result<Decisions> {
        match self.failure_policy() {
            FailurePolicy::Open => {
                self.fail_open.fetch_add(1, Ordering::Relaxed);
                Ok(Decisions {
                    decisions: checks
                        .iter()
                        .map(|(_, q, c)| gcra(None, 0, q, *c).0)
                        .collect(),
                    refused: None,
                })
            }
            FailurePolicy::Closed => Err(self.closed(cause)),
        }
    }

    /// The error of [`FailurePolicy::Closed`], counted.
    fn closed(&self, cause: Option<RedisError>) -> Error {
        self.fail_closed.fetch_add(1, Ordering::Relaxed);
        let message = "redis rate limiter unavailable (failure policy: closed)";
        match cause {
            Some(e) => unavailable(message, e),
            None => Error::Unavailable {
                message: format!("{message}; cooling down after a failure"),
                source: None,
            },
        }
    }

    /// What the policy answers instead of Redis.
    fn policy(&self, quota: &Quota, cost: u32, cause: Option<RedisError>) -> Result<Decision> {
        match self.failure_policy() {
            FailurePolicy::Open => {
                self.fail_open.fetch_add(1, Ordering::Relaxed);
                // What a fresh key gets: admitted (cost <= burst), the time
                // plays no part.
                Ok(gcra(None, 0, quota, cost).0)
            }
            FailurePolicy::Closed => Err(self.closed(cause)),
        }
    }
}

/// Most requests one coalesced script call carries.
pub const MAX_COALESCED: usize = 64;

/// One request's part of a `gcra_all.lua` call.
#[derive(Debug)]
struct Request {
    keys: Vec<String>,
    /// `n`, then `T`, `D`, cost per check.
    args: Vec<String>,
    /// Each check's quota limit (for the decisions).
    limits: Vec<u32>,
}

impl Request {
    fn new(limiter: &RedisRateLimiter, checks: &[Check<'_>]) -> Result<Request> {
        let mut r = Request {
            keys: Vec::with_capacity(checks.len()),
            args: Vec::with_capacity(1 + 3 * checks.len()),
            limits: Vec::with_capacity(checks.len()),
        };
        r.args.push(checks.len().to_string());
        for (key, quota, cost) in checks {
            let (t, d) = offsets(quota)?;
            r.keys.push(limiter.redis_key(key));
            r.args
                .extend([t.to_string(), d.to_string(), cost.to_string()]);
            r.limits.push(quota.limit);
        }
        Ok(r)
    }
}

/// One `EVALSHA` of `gcra_all.lua` for `requests`, in order; `now` replaces
/// the server's `TIME` when given.
async fn call_all(
    conn: &Conn,
    requests: &[&Request],
    now: Option<i64>,
) -> std::result::Result<Vec<Decisions>, RedisError> {
    let mut keys = Vec::new();
    let mut args = vec![requests.len().to_string()];
    for r in requests {
        keys.extend(r.keys.iter().cloned());
        args.extend(r.args.iter().cloned());
    }
    if let Some(now) = now {
        args.push(now.to_string());
    }
    let reply: Vec<i64> = conn.eval(gcra_all_script(), &keys, &args).await?;
    let bad = || {
        RedisError::from((
            redis::ErrorKind::Parse,
            "the rate limit script returned an unexpected reply",
        ))
    };
    let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
    let mut rest = &reply[..];
    let mut out = Vec::with_capacity(requests.len());
    for r in requests {
        let n = r.limits.len();
        let (&refused, tail) = rest.split_first().ok_or_else(bad)?;
        if tail.len() < 4 * n {
            return Err(bad());
        }
        let (values, tail) = tail.split_at(4 * n);
        rest = tail;
        let refused = match usize::try_from(refused) {
            Ok(0) => None,
            Ok(i) if i <= n => Some(i - 1),
            _ => return Err(bad()),
        };
        let decisions = values
            .chunks_exact(4)
            .zip(&r.limits)
            .map(|(v, &limit)| Decision {
                allowed: v[0] == 1,
                limit,
                remaining: u32::try_from(v[1]).unwrap_or(0),
                retry_after: micros(v[2]),
                reset_after: micros(v[3]),
            })
            .collect();
        out.push(Decisions { decisions, refused });
    }
    if !rest.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

type Reply = std::result::Result<Decisions, RedisError>;

/// Requests waiting for the next coalesced call.
#[derive(Debug, Default)]
struct Queue {
    waiting: Vec<(Request, tokio::sync::oneshot::Sender<Reply>)>,
    /// Whether a task is sending calls (it drains `waiting`).
    running: bool,
}

/// The task that sends the queued requests, up to [`MAX_COALESCED`] per
/// call, until the queue is empty.
async fn drain(
    conn: Conn,
    queue: Arc<Mutex<Queue>>,
    clock: Option<Arc<dyn sentryagent_core::Clock>>,
) {
    let lock = || queue.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let batch: Vec<_> = {
            let mut q = lock();
            if q.waiting.is_empty() {
                q.running = false;
                return;
            }
            let n = q.waiting.len().min(MAX_COALESCED);
            q.waiting.drain(..n).collect()
        };
        let requests: Vec<&Request> = batch.iter().map(|(r, _)| r).collect();
        let now = clock.as_ref().map(|c| c.now().unix_micros());
        match call_all(&conn, &requests, now).await {
            Ok(replies) => {
                for ((_, tx), reply) in batch.into_iter().zip(replies) {
                    let _ = tx.send(Ok(reply));
                }
            }
            Err(e) => {
                for (_, tx) in batch {
                    let _ = tx.send(Err(RedisError::from((
                        e.kind(),
                        "coalesced rate limit call failed",
                        e.to_string(),
                    ))));
                }
            }
        }
    }
}

#[async_trait]
impl crate::HealthCheck for RedisRateLimiter {
    async fn health(&self) -> BackendHealth {
        RedisRateLimiter::health(self).await
    }
}

/// `T` and `D = burst × T` in µs; `Invalid` when `D` is over
/// [`MAX_BURST_OFFSET`].
fn offsets(quota: &Quota) -> Result<(u64, u64)> {
    let t = u64::try_from(quota.emission_interval().as_micros()).unwrap_or(u64::MAX);
    let d = u128::from(t) * u128::from(quota.burst);
    if d > MAX_BURST_OFFSET.as_micros() {
        return Err(Error::invalid(
            "quota",
            "burst x emission interval exceeds about 71 years, the most the Redis rate limiter computes",
        ));
    }
    Ok((t, u64::try_from(d).unwrap_or(u64::MAX)))
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, key: &str, quota: &Quota, cost: u32) -> Result<Decision> {
        quota.validate_request(cost)?;
        validate_key(key)?;
        let (t, d) = offsets(quota)?;
        let cooling = self.lock().until.is_some_and(|u| Instant::now() < u);
        if cooling {
            return self.policy(quota, cost, None);
        }
        let now = self.clock.as_ref().map(|c| c.now().unix_micros());
        match self.call(key, quota, t, d, cost, now).await {
            Ok(decision) => {
                self.succeeded();
                Ok(decision)
            }
            Err(e) => {
                self.failed(&e);
                self.policy(quota, cost, Some(e))
            }
        }
    }

    async fn check_all(&self, checks: &[Check<'_>]) -> Result<Decisions> {
        validate_checks(checks)?;
        let request = Request::new(self, checks)?;
        let Some(first) = request.keys.first() else {
            return Ok(Decisions {
                decisions: Vec::new(),
                refused: None,
            });
        };
        let cluster = self.conn.is_cluster();
        if cluster && request.keys.iter().any(|k| hash_tag(k) != hash_tag(first)) {
            // Several slots: no single script can see every key.
            return check_all_sequentially(self, checks).await;
        }
        let cooling = self.lock().until.is_some_and(|u| Instant::now() < u);
        if cooling {
            return self.policy_all(checks, None);
        }
        let reply = if self.coalesce && !cluster {
            self.coalesced(request).await
        } else {
            let now = self.clock.as_ref().map(|c| c.now().unix_micros());
            call_all(&self.conn, &[&request], now)
                .await
                .and_then(|mut all| {
                    all.pop().ok_or_else(|| {
                        RedisError::from((redis::ErrorKind::Parse, "no reply to the request"))
                    })
                })
        };
        match reply {
            Ok(decisions) => {
                self.succeeded();
                Ok(decisions)
            }
            Err(e) => {
                self.failed(&e);
                self.policy_all(checks, Some(e))
            }
        }
    }

    async fn reset(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        redis::cmd("DEL")
            .arg(self.redis_key(key))
            .query_async::<i64>(&mut self.conn.manager())
            .await
            .map_err(|e| unavailable("reset", e))?;
        Ok(())
    }

    fn name(&self) -> &'static str {
        "redis"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::{RedisBackend, RedisOptions};
    use sentryagent_core::conformance::kit;

    #[test]
    fn offsets_refuse_what_the_script_cannot_compute() {
        let (t, d) = offsets(&Quota::per_second(2).with_burst(3)).unwrap();
        assert_eq!((t, d), (500_000, 1_500_000));
        assert!(offsets(&Quota::per_day(1).with_burst(26_000)).is_ok());
        assert!(matches!(
            offsets(&Quota::per_day(1).with_burst(30_000)),
            Err(Error::Invalid { field: "quota", .. })
        ));
    }

    #[test]
    fn keys_take_their_first_segment_as_hash_tag() {
        use crate::redis::conn::{hash_tag, tagged_by_first_segment};
        let tenant = tagged_by_first_segment("sa:", "rl", "tenant:T1");
        let client = tagged_by_first_segment("sa:", "rl", "tenant:T1/client:A/x");
        assert_eq!(tenant, "{sa:rl:tenant:T1}");
        assert_eq!(client, "{sa:rl:tenant:T1}/client:A/x");
        assert_eq!(hash_tag(&tenant), hash_tag(&client));
        assert_eq!(hash_tag(&client), "sa:rl:tenant:T1");
    }

    /// `gcra_all.lua` against the core's `gcra_all()` on random requests
    /// of two to four keys (some repeated) at random times: the same
    /// decisions, the same refusing check and the same stored TATs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn script_all_matches_core_gcra_all() {
        use sentryagent_core::ratelimit::gcra_all;
        let url = std::env::var("SENTRYAGENT_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let prefix = format!("sa-unit-all-{}:", std::process::id());
        let backend = RedisBackend::open(RedisOptions::new(url.as_str()).with_prefix(&prefix))
            .await
            .unwrap();
        if let Err(e) = backend.conn.ping().await {
            kit::skip_or_fail(
                "script_all_matches_core_gcra_all",
                "redis",
                &url,
                &e.to_string(),
            );
            return;
        }
        let limiter = backend.rate_limiter();
        let mut rng = kit::Rng::new(0x5851_f42d_4c95_7f2d);
        let t0: i64 = kit::EPOCH.unix_micros();
        let names = ["t", "t/c1", "t/c2", "u"];
        for case in 0..60 {
            let quotas: Vec<Quota> = (0..names.len())
                .map(|_| {
                    Quota::new(
                        1 + rng.below(10) as u32,
                        Duration::from_secs(100 + rng.below(3600)),
                    )
                    .with_burst(1 + rng.below(6) as u32)
                })
                .collect();
            let keys: Vec<String> = names.iter().map(|n| format!("case{case}:{n}")).collect();
            for k in &keys {
                limiter.reset(k).await.unwrap();
            }
            let mut tats: Vec<Option<i64>> = vec![None; names.len()];
            let mut now = t0 + rng.below(1 << 40) as i64;
            for step in 0..30 {
                now += rng.below(2 * quotas[0].emission_interval().as_micros() as u64) as i64;
                let n = 2 + rng.below(3) as usize;
                let picks: Vec<usize> = (0..n)
                    .map(|_| rng.below(names.len() as u64) as usize)
                    .collect();
                let costs: Vec<u32> = picks
                    .iter()
                    .map(|&i| match rng.below(8) {
                        0 => 0,
                        _ => 1 + rng.below(u64::from(quotas[i].burst)) as u32,
                    })
                    .collect();
                let checks: Vec<(&str, &Quota, u32)> = picks
                    .iter()
                    .zip(&costs)
                    .map(|(&i, &c)| (keys[i].as_str(), &quotas[i], c))
                    .collect();
                let request = Request::new(&limiter, &checks).unwrap();
                // Sent twice in one call at even steps: the second sees the first.
                let twice = step % 2 == 0;
                let requests: Vec<&Request> = if twice {
                    vec![&request, &request]
                } else {
                    vec![&request]
                };
                let replies = call_all(&limiter.conn, &requests, Some(now)).await.unwrap();
                assert_eq!(replies.len(), requests.len());
                for (r, got) in replies.iter().enumerate() {
                    let stored: Vec<Option<i64>> = picks.iter().map(|&i| tats[i]).collect();
                    let (want, writes) = gcra_all(&checks, now, &stored);
                    assert_eq!(
                        *got, want,
                        "case {case} step {step} request {r}: {checks:?} now {now} tats {stored:?}"
                    );
                    for (&i, w) in picks.iter().zip(&writes) {
                        if let Some(w) = w {
                            tats[i] = Some(*w);
                        }
                    }
                }
                for (i, k) in keys.iter().enumerate() {
                    let v: Option<i64> = redis::cmd("GET")
                        .arg(limiter.redis_key(k))
                        .query_async(&mut limiter.conn.manager())
                        .await
                        .unwrap();
                    assert_eq!(v, tats[i], "case {case} step {step}: stored TAT of {k}");
                }
            }
            for k in &keys {
                limiter.reset(k).await.unwrap();
            }
        }
    }

    /// The script against the core's `gcra()` on random sequences of
    /// quotas, times (including steps back) and costs: the same decisions
    /// and the same stored TAT, bit for bit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn script_matches_core_gcra() {
        let url = std::env::var("SENTRYAGENT_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let prefix = format!("sa-unit-{}:", std::process::id());
        let backend = RedisBackend::open(RedisOptions::new(url.as_str()).with_prefix(&prefix))
            .await
            .unwrap();
        if let Err(e) = backend.conn.ping().await {
            kit::skip_or_fail("script_matches_core_gcra", "redis", &url, &e.to_string());
            return;
        }
        let limiter = backend.rate_limiter();
        let mut rng = kit::Rng::new(0x9e37_79b9_7f4a_7c15);
        let t0: i64 = sentryagent_core::conformance::kit::EPOCH.unix_micros();
        for case in 0..200 {
            // Keys expire in real time (PX) while this test moves `now`
            // freely, so T stays at a second or more (no key expires between
            // two steps); the extremes cover the exactness of large values.
            let quota = match case % 10 {
                // D just under 2^51 µs
                0 => Quota::per_day(1).with_burst(26_000),
                // T just under 2^51 µs
                1 => Quota::new(1, Duration::from_secs(70 * 365 * 86_400)).with_burst(1),
                _ => Quota::new(
                    1 + rng.below(100) as u32,
                    Duration::from_micros(100_000_000 + rng.below(86_300_000_000)),
                )
                .with_burst(1 + rng.below(100) as u32),
            };
            let key = format!("case{case}");
            limiter.reset(&key).await.unwrap();
            let mut tat: Option<i64> = None;
            let mut now = t0 + rng.below(1 << 40) as i64;
            let t = i64::try_from(quota.emission_interval().as_micros()).unwrap();
            for step in 0..40 {
                now += (match rng.below(6) {
                    0 => 0,
                    1 => rng.below(t as u64) as i64,
                    2 => t * rng.below(4) as i64 + rng.below(3) as i64 - 1,
                    3 => rng.below(8 * t as u64) as i64,
                    // the clock steps back
                    4 => -(rng.below(2 * t as u64) as i64),
                    _ => 1,
                })
                .clamp(-(1 << 44), 1 << 44);
                let cost = match rng.below(10) {
                    0 => 0,
                    1..=6 => 1,
                    _ => rng.below(u64::from(quota.burst) + 1) as u32,
                };
                let (want, new) = gcra(tat, now, &quota, cost);
                let got = limiter.check_at(&key, &quota, cost, now).await.unwrap();
                assert_eq!(
                    got, want,
                    "case {case} step {step}: {quota:?} cost {cost} now {now} tat {tat:?}"
                );
                tat = new.or(tat);
                let stored: Option<i64> = redis::cmd("GET")
                    .arg(limiter.redis_key(&key))
                    .query_async(&mut limiter.conn.manager())
                    .await
                    .unwrap();
                assert_eq!(stored, tat, "case {case} step {step}: stored TAT");
            }
            limiter.reset(&key).await.unwrap();
        }
    }
}

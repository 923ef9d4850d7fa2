//! Rate limiting: quotas, the GCRA step every backend shares, and the
//! [`RateLimiter`] trait.
//!
//! # Algorithm
//!
//! Every backend runs the *generic cell rate algorithm* (GCRA), the
//! "virtual scheduling" form, through the one pure function [`gcra`]. The
//! state of a key is a single integer: its *theoretical arrival time* (TAT),
//! in Unix microseconds. A key without state behaves exactly like a key whose
//! TAT is in the past.
//!
//! For a [`Quota`] of `limit` requests per `period` with a given `burst`:
//!
//! * the **emission interval** is `T = ceil(period / limit)`, in whole
//!   microseconds and at least 1 µs ([`Quota::emission_interval`]). Rounding
//!   *up* means a key is never admitted faster than `limit` per `period`;
//!   when `period` is not a whole multiple of `limit` µs the real rate is
//!   lower by less than 1 µs per request;
//! * the **delay tolerance** is `τ = T × (burst − 1)`, and the **burst
//!   offset** `D = τ + T = burst × T`;
//! * the **backlog** of a key at time `now` is `clamp(tat − now, 0, D)`
//!   (`0` for a key without state);
//! * a request of `cost` `n ≥ 1` is `n` cells at once. It is **admitted** if
//!   and only if `backlog + n × T ≤ D`; the key's TAT then becomes
//!   `now + backlog + n × T`. A refused request changes nothing.
//!
//! All arithmetic is on integers (128-bit inside, no floating point, no
//! overflow), so a sled tree under per-key locks or a Redis script computing the
//! same steps gets bit-identical decisions.
//!
//! # The burst convention
//!
//! This is the one definition of `burst` in SentryAgent:
//!
//! * a fresh key (or one idle for at least `burst × T`) admits **exactly
//!   `burst`** unit requests at the same instant, and the next one is refused
//!   with `retry_after = T`;
//! * afterwards one more unit request is admitted per elapsed `T`;
//! * **bound:** for any instants `a ≤ b`, the cells (sum of costs) admitted
//!   at times in the closed window `[a, b]` are at most
//!   `burst + floor((b − a) / T)`. In particular any window of one `period`
//!   admits at most `burst + limit` cells, and the long-run rate is at most
//!   `limit / period`;
//! * **liveness:** a refused request of cost `n` is admitted if retried
//!   `retry_after` later (and nothing else consumed the key meanwhile), and
//!   `reset_after` later the key admits a full `burst` again.
//!
//! # Costs
//!
//! * `cost = 0` is a **peek**: it consumes nothing and stores nothing. Its
//!   [`Decision`] says whether a unit request would be admitted now
//!   (`allowed` is `remaining > 0`), and `retry_after` is the wait until one
//!   would be.
//! * `cost > burst` can never be admitted. Backends refuse it with
//!   [`Error::Invalid`] (field `"cost"`) instead of
//!   answering "retry after forever": a decision's `retry_after` is always a
//!   wait that works. The pure [`gcra`] step, which cannot fail, returns a
//!   refused decision with `retry_after == `[`NEVER`] for it (and for an
//!   invalid quota) and stores nothing.
//!
//! # Clock steps
//!
//! The backlog is clamped to `D`: a stored TAT further than `D` ahead of
//! `now` (after the wall clock stepped back, or when a key is checked with a
//! smaller quota than before) counts as `now + D`, and [`gcra`] returns
//! `now + D` to store, even for a refusal or a peek. Such a key is exhausted,
//! and full again after `burst × T`, however far the clock stepped back. The
//! clamp never raises what is admitted: the bound above still holds for a
//! monotonic clock.
//!
//! # Example
//!
//! Two requests per second, burst 2: `T` = 500 ms, `D` = 1 s.
//!
//! ```
//! use std::time::Duration;
//! use sentryagent_core::{ratelimit::gcra, Quota};
//!
//! let quota = Quota::per_second(2).with_burst(2);
//! let t0 = 1_700_000_000_000_000; // unix micros
//!
//! let (first, tat) = gcra(None, t0, &quota, 1);
//! assert!(first.allowed);
//! assert_eq!(first.remaining, 1);
//!
//! let (second, tat) = gcra(tat, t0, &quota, 1);
//! assert!(second.allowed);
//! assert_eq!(second.remaining, 0);
//! assert_eq!(second.reset_after, Duration::from_secs(1));
//!
//! let (third, unchanged) = gcra(tat, t0, &quota, 1);
//! assert!(!third.allowed);
//! assert_eq!(third.retry_after, Duration::from_millis(500));
//! assert_eq!(unchanged, None); // a refusal stores nothing
//!
//! // 500 ms later exactly one more request passes.
//! let (fourth, _) = gcra(tat, t0 + 500_000, &quota, 1);
//! assert!(fourth.allowed);
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// `retry_after` of a request that can never be admitted (cost above the
/// burst, or an invalid quota), as returned by [`gcra`]. Backends refuse such
/// requests with [`Error::Invalid`] instead.
pub const NEVER: Duration = Duration::MAX;

/// Longest key, in bytes, that every [`RateLimiter`] accepts; longer keys are
/// refused with [`Error::Invalid`] (field `"key"`). This bounds the memory of
/// a key-bounded backend; hash long identifiers before using them as keys.
pub const MAX_KEY_LEN: usize = 256;

/// A rate: `limit` requests per `period`, with bursts of up to `burst`
/// requests. See the [module docs](self) for the exact meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Quota {
    /// Requests per `period` (at least 1).
    pub limit: u32,
    /// The period over which `limit` applies (more than zero).
    pub period: Duration,
    /// Requests a fresh key admits at the same instant (at least 1).
    pub burst: u32,
}

impl Quota {
    /// `limit` requests per `period`, with `burst = limit`.
    pub const fn new(limit: u32, period: Duration) -> Self {
        Quota {
            limit,
            period,
            burst: limit,
        }
    }

    /// `n` requests per second, with `burst = n`.
    pub const fn per_second(n: u32) -> Self {
        Quota::new(n, Duration::from_secs(1))
    }

    /// `n` requests per minute, with `burst = n`.
    pub const fn per_minute(n: u32) -> Self {
        Quota::new(n, Duration::from_secs(60))
    }

    /// `n` requests per day (86 400 s), with `burst = n`.
    pub const fn per_day(n: u32) -> Self {
        Quota::new(n, Duration::from_secs(86_400))
    }

    /// The same rate with another burst.
    #[must_use]
    pub const fn with_burst(self, burst: u32) -> Self {
        Quota { burst, ..self }
    }

    /// The emission interval `T = ceil(period / limit)`, in whole
    /// microseconds, at least 1 µs (and at most `i64::MAX` µs). For an
    /// invalid quota the value is meaningless, but it is still computed
    /// without panicking (a `limit` of 0 counts as 1).
    pub fn emission_interval(&self) -> Duration {
        Duration::from_micros(self.emission_micros().unsigned_abs())
    }

    /// `T` in microseconds, in `1..=i64::MAX`.
    pub(crate) fn emission_micros(&self) -> i64 {
        let per = u64::from(self.limit.max(1)) * 1000;
        let nanos = self
            .period
            .as_secs()
            .checked_mul(1_000_000_000)
            .and_then(|n| n.checked_add(u64::from(self.period.subsec_nanos())));
        let micros = match nanos {
            Some(n) => u128::from(n.div_ceil(per)),
            None => self.period.as_nanos().div_ceil(u128::from(per)),
        };
        i64::try_from(micros).unwrap_or(i64::MAX).max(1)
    }

    /// Whether `limit`, `burst` and `period` are all non-zero.
    pub const fn is_valid(&self) -> bool {
        self.limit >= 1 && self.burst >= 1 && !self.period.is_zero()
    }

    /// Checks that `limit >= 1`, `burst >= 1` and `period > 0`; otherwise
    /// [`Error::Invalid`] with field `"quota"`.
    pub fn validate(&self) -> Result<()> {
        if self.limit == 0 {
            return Err(Error::invalid("quota", "limit must be at least 1"));
        }
        if self.burst == 0 {
            return Err(Error::invalid("quota", "burst must be at least 1"));
        }
        if self.period.is_zero() {
            return Err(Error::invalid("quota", "period must be more than zero"));
        }
        Ok(())
    }

    /// What every backend checks before a request: the quota is valid
    /// ([`validate`](Self::validate)) and `cost <= burst` (otherwise
    /// [`Error::Invalid`] with field `"cost"`: such a request could never be
    /// admitted).
    pub fn validate_request(&self, cost: u32) -> Result<()> {
        self.validate()?;
        if cost > self.burst {
            return Err(Error::invalid(
                "cost",
                format!(
                    "cost {cost} exceeds the burst of {} and could never be admitted",
                    self.burst
                ),
            ));
        }
        Ok(())
    }
}

/// Checks that `key` is at most [`MAX_KEY_LEN`] bytes; otherwise
/// [`Error::Invalid`] with field `"key"`.
pub fn validate_key(key: &str) -> Result<()> {
    if key.len() > MAX_KEY_LEN {
        return Err(Error::invalid(
            "key",
            format!("rate limit keys are at most {MAX_KEY_LEN} bytes"),
        ));
    }
    Ok(())
}

/// The answer to one rate-limit check; its fields feed the HTTP
/// `Retry-After`, `RateLimit-Limit`, `RateLimit-Remaining` and
/// `RateLimit-Reset` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Whether the request is admitted (for a peek: whether a unit request
    /// would be).
    pub allowed: bool,
    /// The quota's `limit` (requests per period).
    pub limit: u32,
    /// How many more unit requests would be admitted right now, after this
    /// one if it was admitted. Never more than the burst.
    pub remaining: u32,
    /// Zero when `allowed`; otherwise how long until this request (same
    /// cost) would be admitted, or [`NEVER`] if it never can.
    pub retry_after: Duration,
    /// How long until the key is back to a full burst (zero if it is).
    pub reset_after: Duration,
}

/// One GCRA step: the decision for a request of `cost` cells at `now`, for a
/// key whose stored theoretical arrival time is `tat` (`None` if the key has
/// no state), and the TAT to store (`None` = leave the state unchanged).
///
/// A TAT is returned after an admitted request and, whatever the request,
/// when the stored TAT is more than `burst × T` ahead of `now`: then it is
/// `now + burst × T` (see *Clock steps* in the [module docs](self)). With a
/// monotonic clock and one quota per key that never happens, so refusals and
/// peeks store nothing.
///
/// Times are Unix microseconds. This function is total: it never panics or
/// overflows, whatever the input. A request that can never be admitted
/// (invalid quota, or `cost > burst`) gets a refused decision with
/// `retry_after == `[`NEVER`]; backends reject those inputs with
/// [`Quota::validate_request`] first. See the [module docs](self) for the
/// algorithm and its guarantees.
pub fn gcra(tat: Option<i64>, now: i64, quota: &Quota, cost: u32) -> (Decision, Option<i64>) {
    if !quota.is_valid() {
        let never = Decision {
            allowed: false,
            limit: quota.limit,
            remaining: 0,
            retry_after: NEVER,
            reset_after: Duration::ZERO,
        };
        return (never, None);
    }
    let t = i128::from(quota.emission_micros());
    // D = τ + T = burst × T; at most 2^32 × 2^63, no overflow in i128.
    let d = i128::from(quota.burst) * t;
    let now_w = i128::from(now);
    let ahead = tat.map_or(0, |tat| i128::from(tat) - now_w);
    let backlog = ahead.clamp(0, d);
    // A TAT more than D ahead is stored back clamped, even by a refusal.
    let unchanged = if ahead > d {
        Some(sat_i64(now_w + d))
    } else {
        None
    };
    // Unit requests admissible now, before this one.
    let available = div(d - backlog, t);
    let limit = quota.limit;
    if cost == 0 {
        // Peek: would a unit request pass?
        let allowed = available > 0;
        let decision = Decision {
            allowed,
            limit,
            remaining: to_u32(available),
            retry_after: if allowed {
                Duration::ZERO
            } else {
                micros(backlog + t - d)
            },
            reset_after: micros(backlog),
        };
        return (decision, unchanged);
    }
    let after = backlog + i128::from(cost) * t;
    // Admitted iff `after <= D`, that is iff `cost <= available`.
    if i128::from(cost) > available {
        let decision = Decision {
            allowed: false,
            limit,
            remaining: to_u32(available),
            retry_after: if cost > quota.burst {
                NEVER
            } else {
                micros(after - d)
            },
            reset_after: micros(backlog),
        };
        return (decision, unchanged);
    }
    let decision = Decision {
        allowed: true,
        limit,
        remaining: to_u32(available - i128::from(cost)),
        retry_after: Duration::ZERO,
        reset_after: micros(after),
    };
    (decision, Some(sat_i64(now_w + after)))
}

fn sat_i64(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// `a / b` for `a >= 0`, `b >= 1`, on 64 bits when the values fit.
fn div(a: i128, b: i128) -> i128 {
    match (u64::try_from(a), u64::try_from(b)) {
        (Ok(a), Ok(b)) if b != 0 => i128::from(a / b),
        _ => a / b.max(1),
    }
}

fn to_u32(v: i128) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

fn micros(v: i128) -> Duration {
    Duration::from_micros(u64::try_from(v.max(0)).unwrap_or(u64::MAX))
}

/// Most checks one [`RateLimiter::check_all`] call takes; more are refused
/// with [`Error::Invalid`] (field `"checks"`).
pub const MAX_CHECKS: usize = 16;

/// One check of a [`RateLimiter::check_all`] call: the key, its quota and
/// the request's cost, as the arguments of [`RateLimiter::check`].
pub type Check<'a> = (&'a str, &'a Quota, u32);

/// The answer to [`RateLimiter::check_all`]: one decision per check, in
/// the order of the checks, and which check refused the request, if any.
///
/// When the request is admitted (`refused` is `None`), every check with a
/// cost above zero was admitted and charged, and each decision is what
/// [`RateLimiter::check`] would have answered for it.
///
/// When it is refused, **no key was charged**: `decisions[i]` for the
/// refusing check `i` is its refusal (its `retry_after` is the wait until it
/// would pass), and every other decision is a peek (cost 0) of its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decisions {
    /// One decision per check, in order.
    pub decisions: Vec<Decision>,
    /// The index of the check that refused the request (the first one, in
    /// order), or `None` if it was admitted.
    pub refused: Option<usize>,
}

impl Decisions {
    /// Whether the request was admitted by every check.
    pub fn allowed(&self) -> bool {
        self.refused.is_none()
    }

    /// The refusing check's decision, if any.
    pub fn refusal(&self) -> Option<&Decision> {
        self.refused.and_then(|i| self.decisions.get(i))
    }
}

/// Checks the input of a [`RateLimiter::check_all`] call: at most
/// [`MAX_CHECKS`] checks, each valid for [`RateLimiter::check`]
/// ([`Quota::validate_request`], [`validate_key`]).
pub fn validate_checks(checks: &[Check<'_>]) -> Result<()> {
    if checks.len() > MAX_CHECKS {
        return Err(Error::invalid(
            "checks",
            format!("at most {MAX_CHECKS} checks in one call"),
        ));
    }
    for (key, quota, cost) in checks {
        quota.validate_request(*cost)?;
        validate_key(key)?;
    }
    Ok(())
}

/// The [`gcra`] step of a whole [`RateLimiter::check_all`] call: the
/// decisions for `checks` at `now`, given each check's stored TAT (`tats[i]`
/// for `checks[i]`, as read before the call), and the TAT to store per
/// check (`None` = leave it). When the request is refused, nothing is to be
/// stored.
///
/// Checks run in order and a key checked twice sees its first charge. Writes
/// are to be applied in order (for a repeated key, the last one wins). Like
/// [`gcra`], this function is total.
pub fn gcra_all(
    checks: &[Check<'_>],
    now: i64,
    tats: &[Option<i64>],
) -> (Decisions, Vec<Option<i64>>) {
    let mut decisions = Vec::with_capacity(checks.len());
    let mut writes: Vec<Option<i64>> = Vec::with_capacity(checks.len());
    // The TAT each check leaves its key with.
    let mut current: Vec<Option<i64>> = Vec::with_capacity(checks.len());
    for (i, (key, quota, cost)) in checks.iter().enumerate() {
        let stored = tats.get(i).copied().flatten();
        let tat = (0..i)
            .rev()
            .find(|&j| checks[j].0 == *key)
            .map_or(stored, |j| current[j]);
        let (d, new) = gcra(tat, now, quota, *cost);
        if *cost > 0 && !d.allowed {
            // Refused: nothing is charged; the others are peeks.
            let decisions = checks
                .iter()
                .enumerate()
                .map(|(j, (_, q, _))| {
                    if j == i {
                        d
                    } else {
                        gcra(tats.get(j).copied().flatten(), now, q, 0).0
                    }
                })
                .collect();
            let refused = Decisions {
                decisions,
                refused: Some(i),
            };
            return (refused, vec![None; checks.len()]);
        }
        decisions.push(d);
        writes.push(new);
        current.push(new.or(tat));
    }
    let admitted = Decisions {
        decisions,
        refused: None,
    };
    (admitted, writes)
}

/// [`RateLimiter::check_all`] for any backend, from its single-key
/// [`check`](RateLimiter::check): the default implementation.
///
/// With more than one charged check it first peeks every charged key
/// (cost 0) and refuses, charging nothing, if one of them lacks the cells;
/// only then does it charge the keys one after the other. A refusal found
/// while charging (another request took the last cells between the peek
/// and the charge) leaves the keys charged before it charged: the
/// default is all-or-nothing except under such a race, which native
/// implementations close by deciding every key in one step.
pub async fn check_all_sequentially<L: RateLimiter + ?Sized>(
    limiter: &L,
    checks: &[Check<'_>],
) -> Result<Decisions> {
    validate_checks(checks)?;
    let charged = checks.iter().filter(|c| c.2 > 0).count();
    let mut peeks = Vec::new();
    if charged > 1 {
        for (key, quota, _) in checks {
            peeks.push(limiter.check(key, quota, 0).await?);
        }
        for (i, ((_, quota, cost), peek)) in checks.iter().zip(&peeks).enumerate() {
            if *cost > peek.remaining {
                let mut decisions = peeks.clone();
                decisions[i] = refusal_from_peek(peek, quota, *cost);
                return Ok(Decisions {
                    decisions,
                    refused: Some(i),
                });
            }
        }
    }
    let mut decisions = Vec::with_capacity(checks.len());
    for (i, (key, quota, cost)) in checks.iter().enumerate() {
        let d = limiter.check(key, quota, *cost).await?;
        if *cost > 0 && !d.allowed {
            decisions.push(d);
            for (key, quota, _) in &checks[i + 1..] {
                decisions.push(limiter.check(key, quota, 0).await?);
            }
            return Ok(Decisions {
                decisions,
                refused: Some(i),
            });
        }
        decisions.push(d);
    }
    Ok(Decisions {
        decisions,
        refused: None,
    })
}

/// The refusal of a request of `cost` cells, from a peek at the same key
/// and time that shows fewer than `cost` cells left: what [`gcra`] answers.
fn refusal_from_peek(peek: &Decision, quota: &Quota, cost: u32) -> Decision {
    let t = i128::from(quota.emission_micros());
    let d = i128::from(quota.burst) * t;
    let backlog = i128::from(u64::try_from(peek.reset_after.as_micros()).unwrap_or(u64::MAX));
    Decision {
        allowed: false,
        limit: quota.limit,
        remaining: peek.remaining,
        retry_after: micros(backlog + i128::from(cost) * t - d),
        reset_after: peek.reset_after,
    }
}

/// A rate limiter: GCRA state per key, in some backend.
///
/// Every backend computes its decisions with [`gcra`], so all backends agree
/// for the same sequence of requests and times. Backends read the time from
/// a [`Clock`](crate::Clock) they are built with, except a Redis backend,
/// which uses the Redis server's `TIME` so that every node sharing it agrees.
///
/// Every implementation refuses, with [`Error::Invalid`], an invalid quota
/// (field `"quota"`), a `cost` above the burst (field `"cost"`) and a key
/// longer than [`MAX_KEY_LEN`] bytes (field `"key"`); see
/// [`Quota::validate_request`] and [`validate_key`]. Each backend runs the
/// conformance suite `conformance::rate_limiter` (behind the `conformance`
/// feature).
#[async_trait::async_trait]
pub trait RateLimiter: Send + Sync + std::fmt::Debug {
    /// Checks a request of `cost` cells against `quota` for `key`,
    /// consuming the cells if it is admitted. `cost = 0` is a peek that
    /// consumes nothing.
    ///
    /// A refusal is an `Ok` decision with `allowed == false`; `Err` means
    /// the input is invalid or the backend failed
    /// ([`Error::Unavailable`]).
    async fn check(&self, key: &str, quota: &Quota, cost: u32) -> Result<Decision>;

    /// Checks every limit of one request at once: all-or-nothing. The
    /// request is admitted only if every check with a cost above zero
    /// admits it; then each is charged. If any refuses, **none is charged**
    /// and the answer names the (first) refusing check; see [`Decisions`].
    /// A key may appear more than once (checks run in order).
    ///
    /// Inputs are refused with [`Error::Invalid`] as by
    /// [`check`](Self::check), and more than [`MAX_CHECKS`] checks with
    /// field `"checks"`.
    ///
    /// The default implementation ([`check_all_sequentially`]) peeks and
    /// then charges key by key, which is all-or-nothing except under a race
    /// (see there); backends override it to decide every key in one atomic
    /// step (memory: under the keys' locks; sled: under per-key locks; Redis:
    /// one script call).
    async fn check_all(&self, checks: &[Check<'_>]) -> Result<Decisions> {
        check_all_sequentially(self, checks).await
    }

    /// Forgets `key`: its next request finds a full burst.
    async fn reset(&self, key: &str) -> Result<()>;

    /// Short backend name for logs and metrics (`"memory"`, `"redis"`, ...).
    fn name(&self) -> &'static str;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: i64 = 1_700_000_000_000_000;

    #[test]
    fn emission_interval_rounds_up_and_is_never_zero() {
        assert_eq!(Quota::per_second(2).emission_micros(), 500_000);
        assert_eq!(Quota::per_second(3).emission_micros(), 333_334);
        assert_eq!(Quota::per_second(999_999).emission_micros(), 2);
        assert_eq!(Quota::per_second(u32::MAX).emission_micros(), 1);
        assert_eq!(Quota::new(1, Duration::from_nanos(1)).emission_micros(), 1);
        assert_eq!(
            Quota::per_minute(60).emission_interval(),
            Duration::from_secs(1)
        );
        assert_eq!(
            Quota::per_day(1).emission_interval(),
            Duration::from_secs(86_400)
        );
        assert_eq!(Quota::new(1, Duration::MAX).emission_micros(), i64::MAX);
        assert_eq!(Quota::new(0, Duration::ZERO).emission_micros(), 1);
    }

    #[test]
    fn constructors_and_validation() {
        let q = Quota::per_minute(10).with_burst(3);
        assert_eq!(
            (q.limit, q.period, q.burst),
            (10, Duration::from_secs(60), 3)
        );
        assert_eq!(Quota::per_day(7).burst, 7);
        assert!(q.validate().is_ok());
        for bad in [
            Quota::per_second(0),
            Quota::per_second(1).with_burst(0),
            Quota::new(1, Duration::ZERO),
        ] {
            assert!(!bad.is_valid());
            assert!(matches!(
                bad.validate(),
                Err(Error::Invalid { field: "quota", .. })
            ));
            assert!(matches!(
                bad.validate_request(1),
                Err(Error::Invalid { field: "quota", .. })
            ));
        }
        assert!(q.validate_request(0).is_ok());
        assert!(q.validate_request(3).is_ok());
        assert!(matches!(
            q.validate_request(4),
            Err(Error::Invalid { field: "cost", .. })
        ));
        assert!(validate_key(&"k".repeat(MAX_KEY_LEN)).is_ok());
        assert!(matches!(
            validate_key(&"k".repeat(MAX_KEY_LEN + 1)),
            Err(Error::Invalid { field: "key", .. })
        ));
        let json = serde_json::to_string(&q).unwrap();
        assert_eq!(serde_json::from_str::<Quota>(&json).unwrap(), q);
    }

    #[test]
    fn worked_example() {
        let q = Quota::per_second(2).with_burst(2);
        let (a, tat) = gcra(None, T0, &q, 1);
        assert_eq!(
            a,
            Decision {
                allowed: true,
                limit: 2,
                remaining: 1,
                retry_after: Duration::ZERO,
                reset_after: Duration::from_millis(500),
            }
        );
        assert_eq!(tat, Some(T0 + 500_000));
        let (b, tat) = gcra(tat, T0, &q, 1);
        assert!(b.allowed);
        assert_eq!(b.remaining, 0);
        assert_eq!(tat, Some(T0 + 1_000_000));
        let (c, none) = gcra(tat, T0, &q, 1);
        assert_eq!(
            c,
            Decision {
                allowed: false,
                limit: 2,
                remaining: 0,
                retry_after: Duration::from_millis(500),
                reset_after: Duration::from_secs(1),
            }
        );
        assert_eq!(none, None);
        // 499 999 µs later: still refused, 1 µs to go.
        let (d, _) = gcra(tat, T0 + 499_999, &q, 1);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Duration::from_micros(1));
    }

    #[test]
    fn peek_reports_without_consuming() {
        let q = Quota::per_second(1).with_burst(2);
        let (p, none) = gcra(None, T0, &q, 0);
        assert_eq!(
            (p.allowed, p.remaining, p.retry_after, p.reset_after, none),
            (true, 2, Duration::ZERO, Duration::ZERO, None)
        );
        let (_, tat) = gcra(None, T0, &q, 2);
        let (p, none) = gcra(tat, T0, &q, 0);
        assert!(!p.allowed);
        assert_eq!(none, None);
        assert_eq!(p.remaining, 0);
        assert_eq!(p.retry_after, Duration::from_secs(1));
        assert_eq!(p.reset_after, Duration::from_secs(2));
    }

    #[test]
    fn cost_above_burst_and_invalid_quota_are_never_admitted() {
        let q = Quota::per_second(5).with_burst(3);
        let (d, none) = gcra(None, T0, &q, 4);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, NEVER);
        assert_eq!(d.remaining, 3);
        assert_eq!(none, None);
        let (d, none) = gcra(Some(T0), T0, &Quota::per_second(0), 1);
        assert_eq!((d.allowed, d.retry_after, none), (false, NEVER, None));
    }

    #[test]
    fn clock_step_back_is_clamped_to_one_burst() {
        let q = Quota::per_second(1).with_burst(2);
        // TAT an hour ahead (clock stepped back an hour).
        let (d, tat) = gcra(Some(T0 + 3_600_000_000), T0, &q, 1);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Duration::from_secs(1));
        assert_eq!(d.reset_after, Duration::from_secs(2));
        assert_eq!(tat, Some(T0 + 2_000_000), "the clamp is stored");
        let (d, _) = gcra(tat, T0 + 2_000_000, &q, 2);
        assert!(d.allowed);
        // A peek clamps too; a TAT just D ahead is not rewritten.
        let (p, tat) = gcra(Some(T0 + 3_600_000_000), T0, &q, 0);
        assert_eq!((p.allowed, tat), (false, Some(T0 + 2_000_000)));
        assert_eq!(gcra(tat, T0, &q, 0).1, None);
        assert_eq!(gcra(tat, T0, &q, 1).1, None);
    }

    #[test]
    fn extremes_never_panic() {
        let quotas = [
            Quota::new(u32::MAX, Duration::MAX).with_burst(u32::MAX),
            Quota::new(1, Duration::MAX).with_burst(u32::MAX),
            Quota::new(u32::MAX, Duration::from_nanos(1)).with_burst(1),
            Quota::new(1, Duration::from_nanos(1)).with_burst(u32::MAX),
            Quota::new(0, Duration::ZERO).with_burst(0),
        ];
        let times = [i64::MIN, -1, 0, 1, T0, i64::MAX];
        for q in &quotas {
            for &now in &times {
                for tat in [None, Some(i64::MIN), Some(0), Some(i64::MAX)] {
                    for cost in [0, 1, 2, u32::MAX] {
                        let (d, new) = gcra(tat, now, q, cost);
                        assert!(!d.allowed || d.retry_after.is_zero());
                        assert!(d.remaining <= q.burst);
                        if let Some(new) = new {
                            assert!(new >= now);
                        }
                    }
                }
            }
        }
        // At the end of time the TAT saturates.
        let (d, tat) = gcra(None, i64::MAX, &Quota::per_second(1), 1);
        assert!(d.allowed);
        assert_eq!(tat, Some(i64::MAX));
    }

    fn quota_strategy() -> impl Strategy<Value = Quota> {
        (1u32..1000, 1_000u64..=3_600_000_000, 1u32..100).prop_map(|(limit, period_us, burst)| {
            Quota::new(limit, Duration::from_micros(period_us)).with_burst(burst)
        })
    }

    /// Requests as (time step selector, cost selector).
    fn requests_strategy() -> impl Strategy<Value = Vec<((u8, u32, u32), u32)>> {
        prop::collection::vec(((0u8..4, 0u32..4, 0u32..1000), any::<u32>()), 1..80)
    }

    /// A time step in µs: none, a fraction of `T`, a multiple of `T` give or
    /// take 1 µs (the edges), or up to 8 `T`.
    fn step_micros(t: i64, (kind, k, frac): (u8, u32, u32)) -> i64 {
        match kind {
            0 => 0,
            1 => t * i64::from(frac) / 1000,
            2 => (t * i64::from(k) + i64::from(frac % 3) - 1).max(0),
            _ => t * i64::from(frac) * 8 / 1000,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn gcra_respects_the_burst_bound_and_stays_live(
            quota in quota_strategy(),
            requests in requests_strategy(),
            start in -1_000_000_000_000i64..4_000_000_000_000_000,
        ) {
            let t = quota.emission_micros();
            let burst = quota.burst;
            // T is rounded up: no faster than `limit` per `period`.
            prop_assert!(
                u128::from(t.unsigned_abs()) * 1000 * u128::from(quota.limit) >= quota.period.as_nanos()
            );
            let period_us = i64::try_from(quota.period.as_micros()).unwrap();
            let mut now = start;
            let mut tat: Option<i64> = None;
            // (time, cost) of admitted requests.
            let mut admitted: Vec<(i64, u64)> = Vec::new();
            for &(step, sel) in &requests {
                now += step_micros(t, step);
                // Mostly unit costs, sometimes up to the burst, rarely above it.
                let cost = match sel % 10 {
                    0 => 0,
                    1..=6 => 1,
                    7 | 8 => 1 + (sel / 10) % burst,
                    _ => (sel / 10) % (burst + 2),
                };
                let (d, new) = gcra(tat, now, &quota, cost);

                // Field consistency.
                prop_assert_eq!(d.limit, quota.limit);
                prop_assert!(d.remaining <= burst);
                if cost == 0 {
                    prop_assert_eq!(new, None);
                } else {
                    prop_assert_eq!(d.allowed, new.is_some());
                }
                if d.allowed {
                    prop_assert_eq!(d.retry_after, Duration::ZERO);
                } else {
                    prop_assert!(d.retry_after > Duration::ZERO);
                }
                prop_assert!(d.reset_after <= Duration::from_micros(u64::from(burst) * t.unsigned_abs()));
                if cost > burst {
                    prop_assert!(!d.allowed);
                    prop_assert_eq!(d.retry_after, NEVER);
                }

                // `remaining` is exact: that many unit requests pass now, not one more.
                let mut probe = new.or(tat);
                for i in 0..=d.remaining {
                    let (p, np) = gcra(probe, now, &quota, 1);
                    prop_assert_eq!(p.allowed, i < d.remaining, "remaining {} wrong", d.remaining);
                    probe = np.or(probe);
                }

                // Liveness: a refused (admissible) request passes after retry_after.
                if !d.allowed && cost <= burst {
                    let later = now + i64::try_from(d.retry_after.as_micros()).unwrap();
                    let (p, _) = gcra(tat, later, &quota, cost.max(1));
                    prop_assert!(p.allowed, "not admitted after retry_after");
                    if d.retry_after > Duration::from_micros(1) {
                        let (p, _) = gcra(tat, later - 1, &quota, cost.max(1));
                        prop_assert!(!p.allowed, "retry_after is not the shortest wait");
                    }
                }

                if d.allowed && cost > 0 {
                    admitted.push((now, u64::from(cost)));
                    tat = new;
                }
            }

            // The bound, in every window [a, b] between admitted requests.
            for i in 0..admitted.len() {
                let mut cells = 0u64;
                for j in i..admitted.len() {
                    cells += admitted[j].1;
                    let span = admitted[j].0 - admitted[i].0;
                    let bound = u64::from(burst) + (span / t).unsigned_abs();
                    prop_assert!(
                        cells <= bound,
                        "{} cells admitted in a window of {} µs, bound {}", cells, span, bound
                    );
                    if span <= period_us {
                        prop_assert!(cells <= u64::from(burst) + u64::from(quota.limit));
                    }
                }
            }

            // Liveness: after reset_after, exactly a full burst passes.
            let (peek, _) = gcra(tat, now, &quota, 0);
            let now = now + i64::try_from(peek.reset_after.as_micros()).unwrap();
            for i in 0..=burst {
                let (d, new) = gcra(tat, now, &quota, 1);
                prop_assert_eq!(d.allowed, i < burst);
                tat = new.or(tat);
            }
        }
    }
}

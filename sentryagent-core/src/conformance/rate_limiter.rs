//! Conformance suite for [`RateLimiter`] backends.
//!
//! Every backend (memory, sled, Redis) runs [`run_all`]; the individual
//! checks are public too. Each takes the limiter under test, a
//! [`TimeControl`] that moves the backend's clock, and a key prefix: every
//! key a check uses starts with it, so runs sharing one Redis do not collide.
//! Each check resets its keys before and after it runs.
//!
//! Backends with an injected clock pass their [`ManualClock`] (time is then
//! frozen and every duration is checked exactly). A backend on real time (the
//! Redis server's `TIME`) implements [`TimeControl`] by sleeping and declares
//! its [`drift`](TimeControl::drift); durations are then checked within that
//! allowance. The whole suite advances time by less than two seconds.
//!
//! Checks fail by panicking with the backend's [`name`](RateLimiter::name),
//! the check and what went wrong. They must run inside a Tokio runtime; the
//! concurrency check spawns tasks, so use the multi-thread flavor to make it
//! a real race.
//!
//! ```
//! use std::sync::Arc;
//! use sentryagent_core::{ManualClock, MemoryRateLimiter, Timestamp};
//! use sentryagent_core::conformance::rate_limiter;
//! use sentryagent_core::RateLimiter;
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! let clock = ManualClock::new(Timestamp::from_unix_secs(1_700_000_000));
//! let limiter: Arc<dyn RateLimiter> = Arc::new(MemoryRateLimiter::new(Arc::new(clock.clone())));
//! rate_limiter::run_all(&limiter, &clock, "test:").await;
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use crate::clock::ManualClock;
use crate::error::{Error, Result};
use crate::ratelimit::{Decision, Decisions, MAX_CHECKS, MAX_KEY_LEN, NEVER, Quota, RateLimiter};

/// The largest [`TimeControl::drift`] the suite supports.
pub const MAX_DRIFT: Duration = Duration::from_millis(50);

/// Longest key prefix the suite accepts (it builds keys up to
/// [`MAX_KEY_LEN`] bytes).
pub const MAX_PREFIX_LEN: usize = 128;

const HOUR: Duration = Duration::from_secs(3600);

/// Moves the clock of the backend under test.
#[async_trait::async_trait]
pub trait TimeControl: Send + Sync {
    /// Moves the backend's clock forward by at least `by` (a manual clock
    /// exactly; a real-time backend by sleeping).
    async fn advance(&self, by: Duration);

    /// How far the backend's clock may move on its own during one check of
    /// the suite, beyond what [`advance`](Self::advance) asked for: zero for
    /// a manual clock (the default), the suite's running time for a backend
    /// on real time. At most [`MAX_DRIFT`].
    fn drift(&self) -> Duration {
        Duration::ZERO
    }
}

#[async_trait::async_trait]
impl TimeControl for ManualClock {
    async fn advance(&self, by: Duration) {
        ManualClock::advance(self, by);
    }
}

/// Any `Fn(Duration)` that advances the backend's clock (no drift).
#[async_trait::async_trait]
impl<F: Fn(Duration) + Send + Sync> TimeControl for F {
    async fn advance(&self, by: Duration) {
        self(by);
    }
}

/// Runs every check of the suite, one after the other.
///
/// # Panics
///
/// If the backend fails a check (the message names the backend and check),
/// if `time.drift()` exceeds [`MAX_DRIFT`], or if `key_prefix` is longer
/// than [`MAX_PREFIX_LEN`].
pub async fn run_all(limiter: &Arc<dyn RateLimiter>, time: &dyn TimeControl, key_prefix: &str) {
    let l = &**limiter;
    fresh_key_admits_exactly_burst(l, time, key_prefix).await;
    refill_after_emission_interval(l, time, key_prefix).await;
    remaining_counts_down(l, time, key_prefix).await;
    reset_after_reports_time_to_full_burst(l, time, key_prefix).await;
    cost_above_one(l, time, key_prefix).await;
    peek_does_not_consume(l, time, key_prefix).await;
    keys_are_independent(l, time, key_prefix).await;
    reset_restores_full_burst(l, time, key_prefix).await;
    distinct_quotas(l, time, key_prefix).await;
    decision_fields_are_consistent(l, time, key_prefix).await;
    invalid_input_is_refused(l, time, key_prefix).await;
    concurrent_checks_admit_exactly_burst(limiter, time, key_prefix).await;
    check_all_is_all_or_nothing(l, time, key_prefix).await;
    concurrent_check_all_charges_nothing_when_refused(limiter, time, key_prefix).await;
}

/// Assertion context: which backend, which check, what time allowance.
struct Ctx<'a> {
    limiter: &'a dyn RateLimiter,
    check: &'static str,
    drift: Duration,
    prefix: &'a str,
    keys: Vec<String>,
}

impl<'a> Ctx<'a> {
    async fn new(
        limiter: &'a dyn RateLimiter,
        time: &dyn TimeControl,
        prefix: &'a str,
        check: &'static str,
        names: &[&str],
    ) -> Ctx<'a> {
        let drift = time.drift();
        assert!(
            drift <= MAX_DRIFT,
            "[{}] {check}: drift {drift:?} exceeds {MAX_DRIFT:?}",
            limiter.name()
        );
        assert!(
            prefix.len() <= MAX_PREFIX_LEN,
            "[{}] {check}: key prefix longer than {MAX_PREFIX_LEN} bytes",
            limiter.name()
        );
        let mut ctx = Ctx {
            limiter,
            check,
            drift,
            prefix,
            keys: Vec::new(),
        };
        for name in names {
            let key = ctx.key(name);
            ctx.reset(&key, "reset before the check").await;
            ctx.keys.push(key);
        }
        ctx
    }

    fn key(&self, name: &str) -> String {
        format!("{}rl:{}:{name}", self.prefix, self.check)
    }

    /// The key for `names[i]` given to [`Ctx::new`].
    fn k(&self, i: usize) -> &str {
        self.keys.get(i).map_or("", String::as_str)
    }

    fn fail(&self, what: &str, detail: std::fmt::Arguments<'_>) -> ! {
        panic!("[{}] {}: {what}: {detail}", self.limiter.name(), self.check)
    }

    async fn try_check(&self, key: &str, quota: &Quota, cost: u32) -> Result<Decision> {
        self.limiter.check(key, quota, cost).await
    }

    async fn check(&self, key: &str, quota: &Quota, cost: u32, what: &str) -> Decision {
        match self.try_check(key, quota, cost).await {
            Ok(d) => {
                self.consistent(&d, quota, what);
                d
            }
            Err(e) => self.fail(
                what,
                format_args!("check({key:?}, cost {cost}) failed: {e}"),
            ),
        }
    }

    /// `check_all`, with the invariants of every decision and of the
    /// answer's shape.
    async fn check_all(&self, checks: &[(&str, &Quota, u32)], what: &str) -> Decisions {
        match self.limiter.check_all(checks).await {
            Ok(all) => {
                if all.decisions.len() != checks.len()
                    || all.refused.is_some_and(|i| i >= checks.len())
                {
                    self.fail(what, format_args!("malformed answer {all:?}"));
                }
                for (d, (_, q, _)) in all.decisions.iter().zip(checks) {
                    self.consistent(d, q, what);
                }
                all
            }
            Err(e) => self.fail(what, format_args!("check_all failed: {e}")),
        }
    }

    /// Expects `check_all` to refuse at check `index`, with a `retry_after`
    /// of about `retry_after`.
    async fn expect_all_refused(
        &self,
        checks: &[(&str, &Quota, u32)],
        index: usize,
        retry_after: Duration,
        what: &str,
    ) -> Decisions {
        let all = self.check_all(checks, what).await;
        match all.refusal() {
            Some(d) if all.refused == Some(index) && !d.allowed => {
                self.about("retry_after", d.retry_after, retry_after, what);
            }
            _ => self.fail(
                what,
                format_args!("expected a refusal by check {index}, got {all:?}"),
            ),
        }
        all
    }

    /// Expects a peek at `key` to show `remaining`.
    async fn expect_remaining(&self, key: &str, quota: &Quota, remaining: u32, what: &str) {
        let d = self.check(key, quota, 0, what).await;
        if d.remaining != remaining {
            self.fail(
                what,
                format_args!("expected remaining {remaining} (nothing charged), got {d:?}"),
            );
        }
    }

    async fn reset(&self, key: &str, what: &str) {
        if let Err(e) = self.limiter.reset(key).await {
            self.fail(what, format_args!("reset({key:?}) failed: {e}"));
        }
    }

    /// Resets every key the check used.
    async fn done(self) {
        for key in &self.keys {
            self.reset(key, "reset after the check").await;
        }
    }

    /// Invariants of every decision.
    fn consistent(&self, d: &Decision, quota: &Quota, what: &str) {
        let max_reset = quota.emission_interval().saturating_mul(quota.burst);
        let ok = d.limit == quota.limit
            && d.remaining <= quota.burst
            && (d.allowed == d.retry_after.is_zero())
            && d.retry_after != NEVER
            && d.reset_after <= max_reset;
        if !ok {
            self.fail(
                what,
                format_args!(
                    "inconsistent decision {d:?} for {quota:?} (want limit == quota.limit, remaining <= burst, \
                     allowed <=> retry_after == 0, reset_after <= burst x T = {max_reset:?})"
                ),
            );
        }
    }

    async fn expect_allowed(
        &self,
        key: &str,
        quota: &Quota,
        cost: u32,
        remaining: u32,
        what: &str,
    ) -> Decision {
        let d = self.check(key, quota, cost, what).await;
        if !d.allowed || d.remaining != remaining {
            self.fail(
                what,
                format_args!("expected allowed with remaining {remaining}, got {d:?}"),
            );
        }
        d
    }

    /// Expects a refusal whose `retry_after` is about `retry_after`.
    async fn expect_refused(
        &self,
        key: &str,
        quota: &Quota,
        cost: u32,
        retry_after: Duration,
        what: &str,
    ) -> Decision {
        let d = self.check(key, quota, cost, what).await;
        if d.allowed {
            self.fail(what, format_args!("expected a refusal, got {d:?}"));
        }
        self.about("retry_after", d.retry_after, retry_after, what);
        d
    }

    /// `actual` is `expected`, or up to the drift less (time only moves on).
    fn about(&self, field: &str, actual: Duration, expected: Duration, what: &str) {
        if actual > expected || actual < expected.saturating_sub(self.drift) {
            self.fail(
                what,
                format_args!(
                    "{field} is {actual:?}, expected {expected:?} (allowance {:?})",
                    self.drift
                ),
            );
        }
    }
}

/// A fresh key admits exactly `burst` unit requests at one instant, then
/// refuses with `retry_after = T`.
pub async fn fresh_key_admits_exactly_burst(
    limiter: &dyn RateLimiter,
    time: &dyn TimeControl,
    key_prefix: &str,
) {
    let c = Ctx::new(
        limiter,
        time,
        key_prefix,
        "fresh_key_admits_exactly_burst",
        &["k"],
    )
    .await;
    let q = Quota::new(1, HOUR).with_burst(5);
    for i in 0..5 {
        let d = c
            .expect_allowed(
                c.k(0),
                &q,
                1,
                4 - i,
                &format!("request {} of the burst", i + 1),
            )
            .await;
        c.about(
            "reset_after",
            d.reset_after,
            HOUR * (i + 1),
            "reset_after during the burst",
        );
    }
    for attempt in [
        "first request over the burst",
        "second request over the burst",
    ] {
        let d = c.expect_refused(c.k(0), &q, 1, HOUR, attempt).await;
        if d.remaining != 0 {
            c.fail(attempt, format_args!("remaining should be 0, got {d:?}"));
        }
        c.about("reset_after", d.reset_after, HOUR * 5, attempt);
    }
    c.done().await;
}

/// After a refusal, waiting `retry_after` (one `T`) admits exactly one more
/// request.
pub async fn refill_after_emission_interval(
    limiter: &dyn RateLimiter,
    time: &dyn TimeControl,
    key_prefix: &str,
) {
    let c = Ctx::new(
        limiter,
        time,
        key_prefix,
        "refill_after_emission_interval",
        &["k"],
    )
    .await;
    let t = Duration::from_millis(100);
    let q = Quota::per_second(10).with_burst(2);
    c.expect_allowed(c.k(0), &q, 1, 1, "first request").await;
    c.expect_allowed(c.k(0), &q, 1, 0, "second request").await;
    let refused = c
        .expect_refused(c.k(0), &q, 1, t, "request over the burst")
        .await;
    time.advance(refused.retry_after).await;
    c.expect_allowed(c.k(0), &q, 1, 0, "request after retry_after")
        .await;
    c.expect_refused(c.k(0), &q, 1, t, "second request after one T")
        .await;
    c.done().await;
}

/// `remaining` counts down one per unit request, and a peek agrees.
pub async fn remaining_counts_down(
    limiter: &dyn RateLimiter,
    time: &dyn TimeControl,
    key_prefix: &str,
) {
    let c = Ctx::new(limiter, time, key_prefix, "remaining_counts_down", &["k"]).await;
    let q = Quota::new(3, HOUR).with_burst(10);
    for expected in (0..10).rev() {
        c.expect_allowed(c.k(0), &q, 1, expected, "unit request")
            .await;
        let peek = c.check(c.k(0), &q, 0, "peek after a unit request").await;
        if peek.remaining != expected || peek.allowed != (expected > 0) {
            c.fail(
                "peek after a unit request",
                format_args!("expected remaining {expected}, got {peek:?}"),
            );
        }
    }
    let d = c
        .expect_refused(c.k(0), &q, 1, HOUR / 3, "request over the burst")
        .await;
    if d.remaining != 0 {
        c.fail(
            "request over the burst",
            format_args!("remaining should be 0, got {d:?}"),
        );
    }
    c.done().await;
}

/// `reset_after` is the time until the key is back to a full burst; after
/// waiting it, a full burst passes.
pub async fn reset_after_reports_time_to_full_burst(
    limiter: &dyn RateLimiter,
    time: &dyn TimeControl,
    key_prefix: &str,
) {
    let c = Ctx::new(
        limiter,
        time,
        key_prefix,
        "reset_after_reports_time_to_full_burst",
        &["k"],
    )
    .await;
    let t = Duration::from_millis(100);
    let q = Quota::per_second(10).with_burst(3);
    let fresh = c.check(c.k(0), &q, 0, "peek at a fresh key").await;
    if fresh.reset_after != Duration::ZERO || fresh.remaining != 3 {
        c.fail(
            "peek at a fresh key",
            format_args!("expected a full key, got {fresh:?}"),
        );
    }
    let d = c.expect_allowed(c.k(0), &q, 1, 2, "first request").await;
    c.about("reset_after", d.reset_after, t, "after one request");
    let d = c.expect_allowed(c.k(0), &q, 1, 1, "second request").await;
    c.about("reset_after", d.reset_after, 2 * t, "after two requests");
    let peek = c.check(c.k(0), &q, 0, "peek after two requests").await;
    c.about(
        "reset_after",
        peek.reset_after,
        2 * t,
        "peek after two requests",
    );
    time.advance(peek.reset_after).await;
    let full = c.check(c.k(0), &q, 0, "peek after reset_after").await;
    if full.reset_after != Duration::ZERO || full.remaining != 3 {
        c.fail(
            "peek after reset_after",
            format_args!("expected a full key, got {full:?}"),
        );
    }
    for i in 0..3 {
        c.expect_allowed(c.k(0), &q, 1, 2 - i, "full burst after reset_after")
            .await;
    }
    c.expect_refused(c.k(0), &q, 1, t, "request over the burst after reset_after")
        .await;
    c.done().await;
}

/// A request of cost `n` takes `n` cells at once, all or nothing.
pub async fn cost_above_one(limiter: &dyn RateLimiter, time: &dyn TimeControl, key_prefix: &str) {
    let c = Ctx::new(
        limiter,
        time,
        key_prefix,
        "cost_above_one",
        &["a", "b", "c"],
    )
    .await;
    let q = Quota::new(1, HOUR).with_burst(5);
    let d = c
        .expect_allowed(c.k(0), &q, 3, 2, "cost 3 on a fresh key")
        .await;
    c.about(
        "reset_after",
        d.reset_after,
        3 * HOUR,
        "cost 3 on a fresh key",
    );
    let d = c
        .expect_refused(c.k(0), &q, 3, HOUR, "cost 3 with 2 cells left")
        .await;
    if d.remaining != 2 {
        c.fail(
            "cost 3 with 2 cells left",
            format_args!("a refusal must not consume: {d:?}"),
        );
    }
    c.expect_allowed(c.k(0), &q, 2, 0, "cost 2 with 2 cells left")
        .await;
    c.expect_refused(c.k(0), &q, 1, HOUR, "cost 1 with no cell left")
        .await;
    c.expect_allowed(c.k(1), &q, 5, 0, "cost = burst on a fresh key")
        .await;
    c.expect_refused(c.k(1), &q, 1, HOUR, "cost 1 after cost = burst")
        .await;

    let t = Duration::from_millis(100);
    let fast = Quota::per_second(10).with_burst(4);
    c.expect_allowed(c.k(2), &fast, 4, 0, "cost 4 on a fresh key")
        .await;
    let d = c
        .expect_refused(c.k(2), &fast, 2, 2 * t, "cost 2 on an exhausted key")
        .await;
    time.advance(d.retry_after).await;
    c.expect_allowed(c.k(2), &fast, 2, 0, "cost 2 after retry_after")
        .await;
    c.done().await;
}

/// `cost = 0` reports the state without consuming anything.
pub async fn peek_does_not_consume(
    limiter: &dyn RateLimiter,
    time: &dyn TimeControl,
    key_prefix: &str,
) {
    let c = Ctx::new(limiter, time, key_prefix, "peek_does_not_consume", &["k"]).await;
    let q = Quota::new(1, HOUR).with_burst(2);
    for _ in 0..3 {
        let p = c.check(c.k(0), &q, 0, "peek at a fresh key").await;
        if !p.allowed || p.remaining != 2 || p.reset_after != Duration::ZERO {
            c.fail(
                "peek at a fresh key",
                format_args!("expected allowed, remaining 2, reset_after 0; got {p:?}"),
            );
        }
    }
    c.expect_allowed(c.k(0), &q, 1, 1, "first request after peeks")
        .await;
    for _ in 0..3 {
        let p = c.check(c.k(0), &q, 0, "peek after one request").await;
        if !p.allowed || p.remaining != 1 {
            c.fail(
                "peek after one request",
                format_args!("expected allowed, remaining 1; got {p:?}"),
            );
        }
        c.about("reset_after", p.reset_after, HOUR, "peek after one request");
    }
    c.expect_allowed(c.k(0), &q, 1, 0, "second request after peeks")
        .await;
    for _ in 0..3 {
        let p = c
            .expect_refused(c.k(0), &q, 0, HOUR, "peek at an exhausted key")
            .await;
        if p.remaining != 0 {
            c.fail(
                "peek at an exhausted key",
                format_args!("remaining should be 0, got {p:?}"),
            );
        }
        c.about(
            "reset_after",
            p.reset_after,
            2 * HOUR,
            "peek at an exhausted key",
        );
    }
    c.expect_refused(
        c.k(0),
        &q,
        1,
        HOUR,
        "request after peeks at an exhausted key",
    )
    .await;
    c.done().await;
}

/// Keys do not share state, even when one is a prefix of another.
pub async fn keys_are_independent(
    limiter: &dyn RateLimiter,
    time: &dyn TimeControl,
    key_prefix: &str,
) {
    let names = ["a", "a:b", "ä", "A", ""];
    let c = Ctx::new(limiter, time, key_prefix, "keys_are_independent", &names).await;
    let q = Quota::new(1, HOUR).with_burst(2);
    for (i, name) in names.iter().enumerate() {
        let what = format!("key {name:?} after exhausting the keys before it");
        c.expect_allowed(c.k(i), &q, 1, 1, &what).await;
        c.expect_allowed(c.k(i), &q, 1, 0, &what).await;
        c.expect_refused(c.k(i), &q, 1, HOUR, &what).await;
    }
    for (i, name) in names.iter().enumerate() {
        c.expect_refused(
            c.k(i),
            &q,
            1,
            HOUR,
            &format!("key {name:?} stays exhausted"),
        )
        .await;
    }
    c.done().await;
}

/// `reset` brings a key back to a full burst; resetting an unknown key is
/// not an error.
pub async fn reset_restores_full_burst(
    limiter: &dyn RateLimiter,
    time: &dyn TimeControl,
    key_prefix: &str,
) {
    let c = Ctx::new(
        limiter,
        time,
        key_prefix,
        "reset_restores_full_burst",
        &["k", "other", "never"],
    )
    .await;
    let q = Quota::new(1, HOUR).with_burst(3);
    c.expect_allowed(c.k(1), &q, 3, 0, "exhaust another key")
        .await;
    c.expect_allowed(c.k(0), &q, 3, 0, "exhaust the key").await;
    c.expect_refused(c.k(0), &q, 1, HOUR, "exhausted key").await;
    c.reset(c.k(0), "reset the key").await;
    let p = c.check(c.k(0), &q, 0, "peek after reset").await;
    if !p.allowed || p.remaining != 3 || p.reset_after != Duration::ZERO {
        c.fail(
            "peek after reset",
            format_args!("expected a full key, got {p:?}"),
        );
    }
    for i in 0..3 {
        c.expect_allowed(c.k(0), &q, 1, 2 - i, "full burst after reset")
            .await;
    }
    c.expect_refused(c.k(0), &q, 1, HOUR, "request over the burst after reset")
        .await;
    c.expect_refused(c.k(1), &q, 1, HOUR, "the other key is not reset")
        .await;
    c.reset(c.k(2), "reset a key never used").await;
    c.reset(c.k(2), "reset a key twice").await;
    c.done().await;
}

/// Quotas are per request: different keys with different quotas follow
/// their own; a key checked with a smaller quota than before has its
/// backlog clamped to that quota's `burst × T`, and keeps the clamp.
pub async fn distinct_quotas(limiter: &dyn RateLimiter, time: &dyn TimeControl, key_prefix: &str) {
    let c = Ctx::new(
        limiter,
        time,
        key_prefix,
        "distinct_quotas",
        &["one", "three", "minute", "shrunk"],
    )
    .await;
    let one = Quota::new(1, HOUR).with_burst(1);
    let three = Quota::new(2, HOUR).with_burst(3);
    let minute = Quota::per_minute(6);
    c.expect_allowed(c.k(0), &one, 1, 0, "burst 1").await;
    c.expect_refused(c.k(0), &one, 1, HOUR, "burst 1 exhausted")
        .await;
    for i in 0..3 {
        c.expect_allowed(c.k(1), &three, 1, 2 - i, "burst 3").await;
    }
    c.expect_refused(c.k(1), &three, 1, HOUR / 2, "burst 3 exhausted")
        .await;
    for i in 0..6 {
        c.expect_allowed(c.k(2), &minute, 1, 5 - i, "6 per minute")
            .await;
    }
    c.expect_refused(
        c.k(2),
        &minute,
        1,
        Duration::from_secs(10),
        "6 per minute exhausted",
    )
    .await;

    // A backlog of 3 × 30 min under `three`; under `one` (burst × T = 1 h)
    // it counts as 1 hour, and is stored so.
    let t = Duration::from_secs(1800);
    c.expect_allowed(c.k(3), &three, 3, 0, "exhaust with the larger quota")
        .await;
    let d = c
        .expect_refused(c.k(3), &one, 1, HOUR, "check with the smaller quota")
        .await;
    c.about(
        "reset_after",
        d.reset_after,
        HOUR,
        "check with the smaller quota",
    );
    let d = c
        .expect_allowed(
            c.k(3),
            &three,
            1,
            0,
            "back to the larger quota, backlog clamped",
        )
        .await;
    c.about(
        "reset_after",
        d.reset_after,
        3 * t,
        "back to the larger quota, backlog clamped",
    );
    c.expect_refused(c.k(3), &three, 1, t, "back to the larger quota, exhausted")
        .await;
    c.done().await;
}

/// Every decision is self-consistent: `allowed` exactly when `retry_after`
/// is zero, `limit` is the quota's, `remaining <= burst`, `reset_after <=
/// burst × T`.
pub async fn decision_fields_are_consistent(
    limiter: &dyn RateLimiter,
    time: &dyn TimeControl,
    key_prefix: &str,
) {
    let c = Ctx::new(
        limiter,
        time,
        key_prefix,
        "decision_fields_are_consistent",
        &["a", "b", "c"],
    )
    .await;
    let quotas = [
        Quota::per_second(1_000_000).with_burst(1),
        Quota::new(7, Duration::from_millis(333)).with_burst(4),
        Quota::per_day(100).with_burst(3),
    ];
    for (i, q) in quotas.iter().enumerate() {
        for cost in [0, 1, 2, 0, 1, 3, 1, 1, 0] {
            if cost <= q.burst {
                // `check` asserts the invariants of every decision.
                c.check(c.k(i), q, cost, &format!("cost {cost} under {q:?}"))
                    .await;
            }
        }
    }
    c.done().await;
}

/// Invalid quotas, costs above the burst and over-long keys are refused
/// with [`Error::Invalid`], and consume nothing.
pub async fn invalid_input_is_refused(
    limiter: &dyn RateLimiter,
    time: &dyn TimeControl,
    key_prefix: &str,
) {
    let c = Ctx::new(
        limiter,
        time,
        key_prefix,
        "invalid_input_is_refused",
        &["k"],
    )
    .await;
    let valid = Quota::new(1, HOUR).with_burst(2);
    let invalid = [
        ("limit 0", Quota::new(0, HOUR).with_burst(2)),
        ("burst 0", Quota::new(1, HOUR).with_burst(0)),
        ("period 0", Quota::new(1, Duration::ZERO).with_burst(2)),
    ];
    let expect_invalid = |what: &str, field: &str, r: Result<Decision>| match r {
        Err(Error::Invalid { field: f, .. }) if f == field => {}
        other => c.fail(
            what,
            format_args!("expected Error::Invalid for {field:?}, got {other:?}"),
        ),
    };
    for (what, q) in &invalid {
        for cost in [0, 1] {
            expect_invalid(what, "quota", c.try_check(c.k(0), q, cost).await);
        }
    }
    expect_invalid(
        "cost above the burst",
        "cost",
        c.try_check(c.k(0), &valid, 3).await,
    );
    expect_invalid(
        "cost u32::MAX",
        "cost",
        c.try_check(c.k(0), &valid, u32::MAX).await,
    );

    let long = format!("{}{}", c.key("long:"), "x".repeat(MAX_KEY_LEN));
    let longest = long.get(..MAX_KEY_LEN).unwrap_or_default().to_owned();
    let too_long = long.get(..=MAX_KEY_LEN).unwrap_or_default();
    expect_invalid(
        "key over MAX_KEY_LEN",
        "key",
        c.try_check(too_long, &valid, 1).await,
    );
    match c.limiter.reset(too_long).await {
        Err(Error::Invalid { field: "key", .. }) => {}
        other => c.fail(
            "reset of a key over MAX_KEY_LEN",
            format_args!("expected Error::Invalid, got {other:?}"),
        ),
    }
    c.reset(&longest, "reset the longest key").await;
    c.expect_allowed(&longest, &valid, 1, 1, "key of MAX_KEY_LEN bytes")
        .await;
    c.reset(&longest, "reset the longest key").await;

    c.expect_allowed(c.k(0), &valid, 2, 0, "full burst after invalid requests")
        .await;
    c.done().await;
}

/// Many concurrent unit requests on one key (time frozen, or a long `T`):
/// exactly `burst` pass, each with a distinct `remaining`.
pub async fn concurrent_checks_admit_exactly_burst(
    limiter: &Arc<dyn RateLimiter>,
    time: &dyn TimeControl,
    key_prefix: &str,
) {
    const TASKS: usize = 32;
    let c = Ctx::new(
        &**limiter,
        time,
        key_prefix,
        "concurrent_checks_admit_exactly_burst",
        &["k"],
    )
    .await;
    let q = Quota::new(1, HOUR).with_burst(10);
    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
    let handles: Vec<_> = (0..TASKS)
        .map(|_| {
            let limiter = Arc::clone(limiter);
            let barrier = Arc::clone(&barrier);
            let key = c.k(0).to_owned();
            tokio::spawn(async move {
                barrier.wait().await;
                limiter.check(&key, &q, 1).await
            })
        })
        .collect();
    let mut remaining = Vec::new();
    for handle in handles {
        match handle.await {
            Ok(Ok(d)) => {
                c.consistent(&d, &q, "concurrent request");
                if d.allowed {
                    remaining.push(d.remaining);
                }
            }
            Ok(Err(e)) => c.fail("concurrent request", format_args!("check failed: {e}")),
            Err(e) => c.fail("concurrent request", format_args!("task failed: {e}")),
        }
    }
    remaining.sort_unstable();
    let expected: Vec<u32> = (0..q.burst).collect();
    if remaining != expected {
        c.fail(
            "concurrent requests",
            format_args!(
                "{} of {TASKS} admitted with remaining {remaining:?}; expected exactly {} with remaining 0..{}",
                remaining.len(),
                q.burst,
                q.burst
            ),
        );
    }
    c.done().await;
}

/// `check_all` decides a request's keys together: admitted only if every
/// charged check admits it, and then each is charged as `check` would; if
/// one refuses, nothing is charged, the answer names it, and the other
/// decisions are peeks. Keys share their first `/` segment (as a tenant's
/// and its clients' keys do), a key may repeat, peeks never refuse, and
/// invalid input is refused with [`Error::Invalid`], charging nothing.
pub async fn check_all_is_all_or_nothing(
    limiter: &dyn RateLimiter,
    time: &dyn TimeControl,
    key_prefix: &str,
) {
    let c = Ctx::new(
        limiter,
        time,
        key_prefix,
        "check_all_is_all_or_nothing",
        &["t", "t/client:a", "t/client:b", "t/dup"],
    )
    .await;
    let (tenant, client_a, client_b, dup) = (c.k(0), c.k(1), c.k(2), c.k(3));
    let tq = Quota::new(1, HOUR).with_burst(2);
    let cq = Quota::new(1, HOUR).with_burst(3);

    let empty = c.check_all(&[], "no checks").await;
    if !empty.allowed() || !empty.decisions.is_empty() {
        c.fail(
            "no checks",
            format_args!("expected an empty admission, got {empty:?}"),
        );
    }

    let all = c
        .check_all(&[(client_a, &cq, 1), (tenant, &tq, 1)], "first request")
        .await;
    let remaining: Vec<u32> = all.decisions.iter().map(|d| d.remaining).collect();
    if !all.allowed() || remaining != [2, 1] || all.decisions.iter().any(|d| !d.allowed) {
        c.fail(
            "first request",
            format_args!("expected admitted with remaining [2, 1], got {all:?}"),
        );
    }
    c.about(
        "reset_after",
        all.decisions[1].reset_after,
        HOUR,
        "first request",
    );

    // The second client takes the tenant's last request.
    c.check_all(&[(client_b, &cq, 1), (tenant, &tq, 1)], "second client")
        .await;
    // Refused by the tenant: the client is not charged.
    let refused = c
        .expect_all_refused(
            &[(client_a, &cq, 1), (tenant, &tq, 1)],
            1,
            HOUR,
            "request over the tenant's limit",
        )
        .await;
    let peek = refused.decisions[0];
    if !peek.allowed || peek.remaining != 2 {
        c.fail(
            "request over the tenant's limit",
            format_args!("the client's decision should be a peek with remaining 2, got {peek:?}"),
        );
    }
    c.expect_remaining(client_a, &cq, 2, "client after the tenant's refusal")
        .await;

    // Refused by the first check (cost above what is left): the second key
    // is not charged either.
    c.expect_all_refused(
        &[(client_a, &cq, 3), (dup, &tq, 1)],
        0,
        HOUR,
        "refused by the first check",
    )
    .await;
    c.expect_remaining(dup, &tq, 2, "second key after the first one refused")
        .await;
    c.expect_remaining(client_a, &cq, 2, "first key after its refusal")
        .await;

    // Peeks never refuse, even of an exhausted key.
    let all = c
        .check_all(
            &[(tenant, &tq, 0), (client_a, &cq, 1)],
            "peek of an exhausted key",
        )
        .await;
    if !all.allowed() || all.decisions[0].allowed || all.decisions[1].remaining != 1 {
        c.fail(
            "peek of an exhausted key",
            format_args!("expected admitted, got {all:?}"),
        );
    }

    // A repeated key sees its first charge.
    let all = c
        .check_all(&[(dup, &tq, 1), (dup, &tq, 1)], "a key twice")
        .await;
    let remaining: Vec<u32> = all.decisions.iter().map(|d| d.remaining).collect();
    if !all.allowed() || remaining != [1, 0] {
        c.fail(
            "a key twice",
            format_args!("expected remaining [1, 0], got {all:?}"),
        );
    }
    c.expect_all_refused(&[(dup, &tq, 1)], 0, HOUR, "the repeated key is exhausted")
        .await;

    // Invalid input: refused, nothing charged.
    let expect_invalid = |what: &str, field: &str, r: Result<Decisions>| match r {
        Err(Error::Invalid { field: f, .. }) if f == field => {}
        other => c.fail(
            what,
            format_args!("expected Error::Invalid for {field:?}, got {other:?}"),
        ),
    };
    let too_many = vec![(client_b, &cq, 0); MAX_CHECKS + 1];
    expect_invalid(
        "more than MAX_CHECKS",
        "checks",
        limiter.check_all(&too_many).await,
    );
    expect_invalid(
        "cost above the burst",
        "cost",
        limiter
            .check_all(&[(client_b, &cq, 1), (dup, &tq, 3)])
            .await,
    );
    let long = format!("{}{}", c.key("long:"), "x".repeat(MAX_KEY_LEN));
    expect_invalid(
        "key over MAX_KEY_LEN",
        "key",
        limiter
            .check_all(&[(client_b, &cq, 1), (&long, &tq, 1)])
            .await,
    );
    c.expect_remaining(client_b, &cq, 2, "after invalid calls")
        .await;
    c.done().await;
}

/// Many concurrent `check_all` calls of clients sharing one tenant limit:
/// exactly the tenant's burst is admitted, and each client is charged
/// exactly for its admitted requests (a refusal charges no key).
pub async fn concurrent_check_all_charges_nothing_when_refused(
    limiter: &Arc<dyn RateLimiter>,
    time: &dyn TimeControl,
    key_prefix: &str,
) {
    const TASKS: usize = 48;
    const CLIENTS: usize = 4;
    let c = Ctx::new(
        &**limiter,
        time,
        key_prefix,
        "concurrent_check_all_charges_nothing_when_refused",
        &["t", "t/c0", "t/c1", "t/c2", "t/c3"],
    )
    .await;
    let tq = Quota::new(1, HOUR).with_burst(10);
    let cq = Quota::new(1, HOUR).with_burst(40);
    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
    let handles: Vec<_> = (0..TASKS)
        .map(|i| {
            let limiter = Arc::clone(limiter);
            let barrier = Arc::clone(&barrier);
            let tenant = c.k(0).to_owned();
            let client = c.k(1 + i % CLIENTS).to_owned();
            tokio::spawn(async move {
                barrier.wait().await;
                let all = limiter
                    .check_all(&[(&client, &cq, 1), (&tenant, &tq, 1)])
                    .await;
                (i % CLIENTS, all)
            })
        })
        .collect();
    let mut admitted = [0u32; CLIENTS];
    for handle in handles {
        match handle.await {
            Ok((client, Ok(all))) => {
                if all.allowed() {
                    admitted[client] += 1;
                } else if all.refused != Some(1) {
                    c.fail(
                        "concurrent request",
                        format_args!("only the tenant can refuse, got {all:?}"),
                    );
                }
            }
            Ok((_, Err(e))) => c.fail("concurrent request", format_args!("check_all failed: {e}")),
            Err(e) => c.fail("concurrent request", format_args!("task failed: {e}")),
        }
    }
    let total: u32 = admitted.iter().sum();
    if total != tq.burst {
        c.fail(
            "concurrent requests",
            format_args!("{total} of {TASKS} admitted, expected exactly {}", tq.burst),
        );
    }
    for (i, n) in admitted.iter().enumerate() {
        c.expect_remaining(
            c.k(1 + i),
            &cq,
            cq.burst - n,
            "a client is charged only for its admitted requests",
        )
        .await;
    }
    c.done().await;
}

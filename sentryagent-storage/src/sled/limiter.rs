//! [`SledRateLimiter`]: GCRA state in the `rate_limits` tree, each key
//! read and written under its lock stripe.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use sentryagent_core::ratelimit::{Check, gcra_all, validate_checks};
use sentryagent_core::{Clock, Error, Result};
use sentryagent_core::{
    Decision, Decisions, Quota, RateLimiter, ratelimit::gcra, ratelimit::validate_key,
};

use super::Shared;
use super::codec::{i64_from_key, i64_key, sled_error};

/// Lock stripes of [`KeyLocks`].
const LOCK_STRIPES: usize = 256;

/// Stored keys examined for expiry per new key stored.
const SWEEP_PER_NEW_KEY: usize = 2;

/// A [`RateLimiter`] keeping each key's theoretical arrival time (TAT) in
/// the shared sled database, so limits survive a restart.
///
/// Decisions come from the core's pure [`gcra`] step, exactly as in
/// [`MemoryRateLimiter`](sentryagent_core::MemoryRateLimiter): a check takes
/// the lock stripe of its key (of each key, in stripe order, for
/// [`check_all`](RateLimiter::check_all)), reads the TATs, computes the
/// decisions at the injected clock's `now` and stores the new TATs before
/// letting go. So concurrent checks of one key never admit more than the
/// quota allows, `check_all` is all-or-nothing, and a TAT further than
/// `burst × T` ahead of `now` is stored back clamped (see *Clock steps* in
/// [`ratelimit`](sentryagent_core::ratelimit)).
///
/// The locks are the process's: sled opens a database for one process
/// only, and every limiter of a [`SledBackend`](super::SledBackend) shares
/// them. They replace a sled transaction, which gave the same atomicity
/// but made sled seal and write its log buffer on every commit, so that a
/// token request cost a disk write on sled's I/O threads (see
/// docs/load-test.md). The one writer that takes no lock, the expiry
/// sweep, removes a key only if it still holds the expired value it read,
/// and an expired key decides exactly like an absent one.
/// Invalid quotas, costs above the burst and keys longer than
/// [`MAX_KEY_LEN`](sentryagent_core::MAX_KEY_LEN) are refused
/// with [`Error::Invalid`]; peeks and refusals store nothing.
///
/// # Durability and size
///
/// Checks are never flushed explicitly (a flush per request would cost an
/// fsync); sled's background flush writes them within about half a second.
/// After a crash each key restarts from at most what was last written (the
/// keys of one `check_all` are separate writes, so a crash may keep one of
/// them and not the other: at most one request's charge on one key).
///
/// A key whose TAT is at or before `now` is back to a full burst and
/// behaves exactly like an absent key, so removing it changes no decision.
/// Each new key stored examines the next two stored keys
/// (a cursor going round the tree) and removes the expired ones, so dead
/// keys are collected while the tree grows; [`remove_expired`](Self::remove_expired)
/// removes every expired key at once.
pub struct SledRateLimiter {
    shared: Arc<Shared>,
    clock: Arc<dyn Clock>,
    /// Where the incremental sweep continues (`None`: at the start).
    sweep: Mutex<Option<Vec<u8>>>,
}

impl fmt::Debug for SledRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledRateLimiter")
            .field("path", &self.shared.path)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

fn corrupt_tat() -> Error {
    Error::Internal {
        message: "sled: corrupt rate-limit state (reset the key)".into(),
        source: None,
    }
}

/// The stored TAT of `key`, if any.
fn read_tat(tree: &::sled::Tree, key: &str) -> Result<Option<i64>> {
    match tree
        .get(key)
        .map_err(|e| sled_error("read of a rate-limit key", e))?
    {
        None => Ok(None),
        Some(v) => i64_from_key(&v).map(Some).ok_or_else(corrupt_tat),
    }
}

/// Striped locks over rate-limit keys: a key's stripe is a keyed hash of
/// the key, fixed for the life of the process.
pub(crate) struct KeyLocks {
    stripes: Box<[Mutex<()>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl KeyLocks {
    pub(crate) fn new() -> Self {
        KeyLocks {
            stripes: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn stripe(&self, key: &str) -> usize {
        let mut h = self.hasher.build_hasher();
        h.write(key.as_bytes());
        // The remainder is below LOCK_STRIPES, so it fits.
        usize::try_from(h.finish() % LOCK_STRIPES as u64).unwrap_or(0)
    }

    /// Locks the stripe of `key`. A poisoned stripe is taken as is: it
    /// guards no data, the tree holds the state.
    fn lock(&self, key: &str) -> MutexGuard<'_, ()> {
        self.stripes[self.stripe(key)]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Locks the stripes of all `keys`, each once, in ascending stripe
    /// order (so two calls never wait on each other in a cycle).
    fn lock_all<'a>(&self, keys: impl Iterator<Item = &'a str>) -> Vec<MutexGuard<'_, ()>> {
        let mut stripes: Vec<usize> = keys.map(|k| self.stripe(k)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        stripes
            .into_iter()
            .map(|i| {
                self.stripes[i]
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
            })
            .collect()
    }
}

impl SledRateLimiter {
    pub(crate) fn new(shared: Arc<Shared>, clock: Arc<dyn Clock>) -> Self {
        SledRateLimiter {
            shared,
            clock,
            sweep: Mutex::new(None),
        }
    }

    /// [`RateLimiter::check`], synchronously (the async method calls this;
    /// it does no blocking I/O beyond sled's in-memory tree operations).
    pub fn check_sync(&self, key: &str, quota: &Quota, cost: u32) -> Result<Decision> {
        quota.validate_request(cost)?;
        validate_key(key)?;
        let now = self.clock.now().unix_micros();
        let open = self.shared.open()?;
        let tree = &open.t.rate_limits;
        let _guard = self.shared.limiter_locks.lock(key);
        let tat = read_tat(tree, key)?;
        let (decision, new_tat) = gcra(tat, now, quota, cost);
        if let Some(new_tat) = new_tat {
            tree.insert(key, &i64_key(new_tat)[..])
                .map_err(|e| sled_error("write of a rate-limit key", e))?;
            if tat.is_none() {
                self.sweep_some(now);
            }
        }
        Ok(decision)
    }

    /// [`RateLimiter::check_all`], synchronously: every key is read,
    /// decided and (if the request is admitted) written under the keys'
    /// locks, so the call is atomic with respect to every other check.
    pub fn check_all_sync(&self, checks: &[Check<'_>]) -> Result<Decisions> {
        validate_checks(checks)?;
        let now = self.clock.now().unix_micros();
        let open = self.shared.open()?;
        let tree = &open.t.rate_limits;
        let _guards = self
            .shared
            .limiter_locks
            .lock_all(checks.iter().map(|(key, _, _)| *key));
        let mut tats = Vec::with_capacity(checks.len());
        for (key, _, _) in checks {
            tats.push(read_tat(tree, key)?);
        }
        let (decisions, writes) = gcra_all(checks, now, &tats);
        let mut new_key = false;
        for (i, write) in writes.iter().enumerate() {
            if let Some(tat) = write {
                new_key |= tats[i].is_none();
                tree.insert(checks[i].0, &i64_key(*tat)[..])
                    .map_err(|e| sled_error("write of a rate-limit key", e))?;
            }
        }
        if new_key {
            self.sweep_some(now);
        }
        Ok(decisions)
    }

    /// [`RateLimiter::reset`], synchronously.
    pub fn reset_sync(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        let open = self.shared.open()?;
        let _guard = self.shared.limiter_locks.lock(key);
        open.t
            .rate_limits
            .remove(key)
            .map_err(|e| sled_error("removal of a rate-limit key", e))?;
        Ok(())
    }

    /// Removes every key back to a full burst (which changes no decision);
    /// returns how many. Optional maintenance: new keys already sweep
    /// incrementally.
    pub fn remove_expired(&self) -> Result<u64> {
        let now = self.clock.now().unix_micros();
        let tree = &self.shared.open()?.t.rate_limits;
        let mut removed = 0;
        for item in tree.iter() {
            let (k, v) = item.map_err(|e| sled_error("scan of rate-limit keys", e))?;
            if self.remove_if_expired(&k, &v, now)? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes `k` if its stored TAT `v` is at or before `now` and still
    /// stored (a concurrent check keeps its key).
    fn remove_if_expired(&self, k: &[u8], v: &[u8], now: i64) -> Result<bool> {
        if i64_from_key(v).is_some_and(|tat| tat <= now) {
            let r = self
                .shared
                .open()?
                .t
                .rate_limits
                .compare_and_swap(k, Some(v), None::<&[u8]>)
                .map_err(|e| sled_error("removal of a rate-limit key", e))?;
            return Ok(r.is_ok());
        }
        Ok(false)
    }

    /// Examines the next few stored keys and removes the expired ones. Best
    /// effort: skipped while another check sweeps, errors ignored.
    fn sweep_some(&self, now: i64) {
        let Ok(mut cursor) = self.sweep.try_lock() else {
            return;
        };
        let start = match cursor.take() {
            Some(c) => Bound::Excluded(c),
            None => Bound::Unbounded,
        };
        let Ok(open) = self.shared.open() else {
            return;
        };
        let mut it = open
            .t
            .rate_limits
            .range::<Vec<u8>, _>((start, Bound::Unbounded));
        for _ in 0..SWEEP_PER_NEW_KEY {
            match it.next() {
                Some(Ok((k, v))) => {
                    let _ = self.remove_if_expired(&k, &v, now);
                    *cursor = Some(k.to_vec());
                }
                // The end of the tree (next sweep starts over), or an error.
                _ => {
                    *cursor = None;
                    break;
                }
            }
        }
    }
}

#[async_trait]
impl RateLimiter for SledRateLimiter {
    async fn check(&self, key: &str, quota: &Quota, cost: u32) -> Result<Decision> {
        self.check_sync(key, quota, cost)
    }

    async fn check_all(&self, checks: &[Check<'_>]) -> Result<Decisions> {
        self.check_all_sync(checks)
    }

    async fn reset(&self, key: &str) -> Result<()> {
        self.reset_sync(key)
    }

    fn name(&self) -> &'static str {
        "sled"
    }
}

impl SledRateLimiter {
    /// Health of the database (the limiter's view: its key count).
    pub fn health(&self) -> sentryagent_core::BackendHealth {
        self.shared.health("limiter")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sentryagent_core::{Clock as _, ManualClock, Timestamp};

    use super::super::SledBackend;
    use super::*;

    fn limiter() -> (tempfile::TempDir, SledRateLimiter, ManualClock) {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(Timestamp::from_unix_secs(1_700_000_000));
        let l = SledBackend::open(dir.path())
            .unwrap()
            .rate_limiter(Arc::new(clock.clone()));
        (dir, l, clock)
    }

    #[test]
    fn expired_keys_are_swept_exactly() {
        let (_dir, l, clock) = limiter();
        let short = Quota::per_second(1);
        let long = Quota::per_day(1).with_burst(2);
        for i in 0..20 {
            assert!(
                l.check_sync(&format!("short{i}"), &short, 1)
                    .unwrap()
                    .allowed
            );
            assert!(l.check_sync(&format!("long{i}"), &long, 2).unwrap().allowed);
        }
        clock.advance(Duration::from_secs(1));
        assert_eq!(l.remove_expired().unwrap(), 20);
        assert_eq!(l.shared.open().unwrap().t.rate_limits.len(), 20);
        for i in 0..20 {
            // Swept keys are full again; live keys kept their state.
            let d = l.check_sync(&format!("short{i}"), &short, 0).unwrap();
            assert_eq!((d.allowed, d.remaining), (true, 1));
            assert!(!l.check_sync(&format!("long{i}"), &long, 1).unwrap().allowed);
        }
    }

    #[test]
    fn new_keys_sweep_old_expired_ones() {
        let (_dir, l, clock) = limiter();
        let q = Quota::per_second(1);
        for i in 0..50 {
            l.check_sync(&format!("old{i:02}"), &q, 1).unwrap();
        }
        clock.advance(Duration::from_secs(2));
        for i in 0..100 {
            l.check_sync(&format!("new{i:03}"), &q, 1).unwrap();
        }
        let old_left = l
            .shared
            .open()
            .unwrap()
            .t
            .rate_limits
            .scan_prefix("old")
            .count();
        assert!(old_left < 50, "the sweep removed nothing");
    }

    #[test]
    fn a_tat_far_ahead_is_stored_back_clamped_even_by_a_peek() {
        let (_dir, l, clock) = limiter();
        let q = Quota::per_second(2).with_burst(2); // T = 500 ms, D = 1 s
        assert!(l.check_sync("k", &q, 2).unwrap().allowed);
        // The clock steps back an hour: the stored TAT is far ahead.
        clock.set(Timestamp::from_unix_secs(1_700_000_000 - 3600));
        let now = clock.now().unix_micros();
        let d = l.check_sync("k", &q, 0).unwrap();
        assert!(!d.allowed);
        assert_eq!(d.reset_after, Duration::from_secs(1));
        let stored = l
            .shared
            .open()
            .unwrap()
            .t
            .rate_limits
            .get("k")
            .unwrap()
            .unwrap();
        assert_eq!(i64_from_key(&stored), Some(now + 1_000_000));
        // Full again one burst later, however far the clock stepped back.
        clock.advance(Duration::from_secs(1));
        assert_eq!(l.check_sync("k", &q, 0).unwrap().remaining, 2);
    }

    #[test]
    fn corrupt_state_is_an_error_until_reset() {
        let (_dir, l, _clock) = limiter();
        l.shared
            .open()
            .unwrap()
            .t
            .rate_limits
            .insert("bad", &b"xyz"[..])
            .unwrap();
        let q = Quota::per_second(1);
        assert!(matches!(
            l.check_sync("bad", &q, 1),
            Err(Error::Internal { .. })
        ));
        l.reset_sync("bad").unwrap();
        assert!(l.check_sync("bad", &q, 1).unwrap().allowed);
    }
}

//! [`MemoryRateLimiter`]: GCRA state in process memory, bounded in keys.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::ratelimit::{
    Check, Decision, Decisions, Quota, RateLimiter, gcra, gcra_all, validate_checks, validate_key,
};

/// Most shards a limiter uses.
const MAX_SHARDS: usize = 64;
/// Fewest keys a shard should hold before the limiter uses more shards.
const MIN_KEYS_PER_SHARD: usize = 64;

/// A [`RateLimiter`] that keeps each key's GCRA state (one `i64`) in process
/// memory, for a single node or for tests.
///
/// # Memory bound and eviction
///
/// The limiter holds at most `max_keys` keys
/// ([`DEFAULT_MAX_KEYS`](Self::DEFAULT_MAX_KEYS) unless built
/// [`with_capacity`](Self::with_capacity)); keys are at most
/// [`MAX_KEY_LEN`](crate::ratelimit::MAX_KEY_LEN) bytes, so memory is bounded
/// whatever keys callers send: per key, 40 to 80 bytes of table plus the
/// key's text and its allocation overhead. A million 40-byte keys take
/// roughly 100 to 150 MB, a million keys of the maximum length about 350 MB.
/// Keys live in shards chosen by hash, each with its share of `max_keys`, so
/// a new key may be refused a little before the total reaches `max_keys`.
///
/// A key is stored only when a request is admitted (peeks, refusals and
/// invalid requests store nothing). When a new key finds its shard full:
///
/// 1. every key of the shard whose TAT is at or before `now` is dropped.
///    **This is exact:** such a key is back to a full burst, and GCRA treats
///    it exactly like an absent key, so dropping it changes no decision;
/// 2. if the shard is still full, **the new key is refused** with
///    [`Error::Unavailable`], and no live key is ever evicted.
///
/// Why fail closed: evicting a live key (even the one closest to expiry)
/// would silently hand that key a fresh burst, and a client able to mint
/// keys could use that to erase the limits of the keys it cares about. A
/// refusal is visible (an error the caller logs and counts, and may choose
/// to fail open on), affects only keys not seen yet, and ends as soon as a
/// key of the shard is back to full burst, at most `burst × T` after its last
/// admitted request. Size `max_keys` for the expected number of keys active
/// within that time.
///
/// A fruitless sweep is not repeated before the earliest stored TAT, so a
/// full shard refuses new keys in O(1); one that does free keys costs O(keys
/// in the shard). Expired keys are otherwise kept until their shard fills
/// (they are harmless), or until [`remove_expired`](Self::remove_expired).
///
/// # Speed
///
/// A check of an existing key takes one keyed hash of the key, one
/// uncontended mutex and no allocation; only inserting a new key allocates
/// (its text). The hash is a keyed folded-multiply hash (in the style of
/// foldhash and aHash's fallback) seeded per limiter from the standard
/// library's randomly keyed SipHash: clients cannot predict which keys
/// collide, which defeats hash flooding in practice, though it is not a
/// cryptographic PRF. Within a shard, two keys with the same 64-bit hash are
/// both kept exactly (the second in a SipHash map), so a collision never
/// merges two keys' limits.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use sentryagent_core::{ManualClock, MemoryRateLimiter, Timestamp};
/// use sentryagent_core::Quota;
///
/// let clock = ManualClock::new(Timestamp::from_unix_secs(1_700_000_000));
/// let limiter = MemoryRateLimiter::new(Arc::new(clock.clone()));
/// let quota = Quota::per_second(2);
/// assert!(limiter.check_sync("client-1", &quota, 1)?.allowed);
/// assert!(limiter.check_sync("client-1", &quota, 1)?.allowed);
/// let refused = limiter.check_sync("client-1", &quota, 1)?;
/// assert!(!refused.allowed);
/// assert_eq!(refused.retry_after, Duration::from_millis(500));
/// clock.advance(refused.retry_after);
/// assert!(limiter.check_sync("client-1", &quota, 1)?.allowed);
/// # Ok::<(), sentryagent_core::Error>(())
/// ```
pub struct MemoryRateLimiter {
    clock: Arc<dyn Clock>,
    hasher: KeyHasher,
    shards: Box<[Padded]>,
    /// `shards.len() - 1`; the length is a power of two.
    mask: usize,
    max_keys: usize,
}

impl MemoryRateLimiter {
    /// Keys held at most by [`new`](Self::new): one million.
    pub const DEFAULT_MAX_KEYS: usize = 1_000_000;

    /// A limiter reading time from `clock`, holding at most
    /// [`DEFAULT_MAX_KEYS`](Self::DEFAULT_MAX_KEYS) keys.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self::with_capacity(clock, Self::DEFAULT_MAX_KEYS)
    }

    /// A limiter reading time from `clock`, holding at most `max_keys` keys
    /// (a `max_keys` of 0 counts as 1). See the type docs for what happens
    /// when it is full.
    pub fn with_capacity(clock: Arc<dyn Clock>, max_keys: usize) -> Self {
        let max_keys = max_keys.max(1);
        let wanted = (max_keys / MIN_KEYS_PER_SHARD).clamp(1, MAX_SHARDS);
        let count = 1usize << wanted.ilog2();
        let shards = (0..count)
            .map(|i| {
                let cap = max_keys / count + usize::from(i < max_keys % count);
                Padded(Mutex::new(Shard::new(cap)))
            })
            .collect();
        MemoryRateLimiter {
            clock,
            hasher: KeyHasher::random(),
            shards,
            mask: count - 1,
            max_keys,
        }
    }

    /// The most keys this limiter holds.
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// Keys currently stored, including expired ones not yet dropped.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(&s.0).len()).sum()
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| lock(&s.0).len() == 0)
    }

    /// [`RateLimiter::check`], synchronously (the async method calls this).
    pub fn check_sync(&self, key: &str, quota: &Quota, cost: u32) -> Result<Decision> {
        quota.validate_request(cost)?;
        validate_key(key)?;
        let now = self.clock.now().unix_micros();
        let hash = self.hasher.hash(key.as_bytes());
        let mut shard = self.shard(hash);
        if let Some(tat) = shard.get_mut(hash, key) {
            let (decision, new_tat) = gcra(Some(*tat), now, quota, cost);
            if let Some(new_tat) = new_tat {
                *tat = new_tat;
            }
            return Ok(decision);
        }
        let (decision, new_tat) = gcra(None, now, quota, cost);
        if let Some(new_tat) = new_tat
            && !shard.insert(hash, key, new_tat, now)
        {
            drop(shard);
            return Err(self.full());
        }
        Ok(decision)
    }

    /// [`RateLimiter::check_all`], synchronously (the async method calls
    /// this): every key's shard is locked (in shard order, so concurrent
    /// calls cannot deadlock) while all the keys are decided and charged,
    /// so the call is atomic. A new key that finds its shard full undoes
    /// the call's other writes and fails with [`Error::Unavailable`].
    pub fn check_all_sync(&self, checks: &[Check<'_>]) -> Result<Decisions> {
        validate_checks(checks)?;
        let now = self.clock.now().unix_micros();
        let hashes: Vec<u64> = checks
            .iter()
            .map(|(key, _, _)| self.hasher.hash(key.as_bytes()))
            .collect();
        let index = |hash: u64| (hash >> 32) as usize & self.mask;
        let mut order: Vec<usize> = hashes.iter().map(|&h| index(h)).collect();
        order.sort_unstable();
        order.dedup();
        let mut guards: Vec<(usize, MutexGuard<'_, Shard>)> = order
            .into_iter()
            .map(|i| (i, lock(&self.shards[i].0)))
            .collect();
        let tats: Vec<Option<i64>> = checks
            .iter()
            .zip(&hashes)
            .map(|((key, _, _), &h)| pick(&mut guards, index(h)).get_mut(h, key).map(|t| *t))
            .collect();
        let (decisions, writes) = gcra_all(checks, now, &tats);
        // (key index, the TAT before) of each write, to undo them.
        let mut done: Vec<(usize, Option<i64>)> = Vec::new();
        for (i, write) in writes.iter().enumerate() {
            let Some(new_tat) = *write else { continue };
            let (key, h) = (checks[i].0, hashes[i]);
            let shard = pick(&mut guards, index(h));
            if let Some(tat) = shard.get_mut(h, key) {
                done.push((i, Some(*tat)));
                *tat = new_tat;
            } else if shard.insert(h, key, new_tat, now) {
                done.push((i, None));
            } else {
                for (j, before) in done.into_iter().rev() {
                    let (key, h) = (checks[j].0, hashes[j]);
                    let shard = pick(&mut guards, index(h));
                    match before {
                        Some(tat) => {
                            if let Some(slot) = shard.get_mut(h, key) {
                                *slot = tat;
                            }
                        }
                        None => {
                            shard.remove(h, key);
                        }
                    }
                }
                drop(guards);
                return Err(self.full());
            }
        }
        Ok(decisions)
    }

    /// [`RateLimiter::reset`], synchronously (the async method calls this).
    pub fn reset_sync(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        let hash = self.hasher.hash(key.as_bytes());
        self.shard(hash).remove(hash, key);
        Ok(())
    }

    /// Drops every key that is back to a full burst (which changes no
    /// decision) and returns how many were dropped. Optional maintenance, for
    /// example from a periodic task: full shards do this by themselves.
    pub fn remove_expired(&self) -> usize {
        let now = self.clock.now().unix_micros();
        self.shards
            .iter()
            .map(|s| {
                let mut shard = lock(&s.0);
                let removed = shard.sweep(now);
                shard.shrink();
                removed
            })
            .sum()
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard> {
        // Bits 32.. pick the shard: the tables use the low bits (bucket) and
        // the top 7 bits (tag), which stay independent of the shard.
        lock(&self.shards[(hash >> 32) as usize & self.mask].0)
    }

    #[cold]
    fn full(&self) -> Error {
        Error::Unavailable {
            message: format!(
                "memory rate limiter is full of live keys (max_keys = {}); new keys are refused until some are back to a full burst",
                self.max_keys
            ),
            source: None,
        }
    }
}

impl fmt::Debug for MemoryRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRateLimiter")
            .field("clock", &self.clock)
            .field("max_keys", &self.max_keys)
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl RateLimiter for MemoryRateLimiter {
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
        "memory"
    }
}

/// The locked shard `index` among `guards` (which hold every shard a
/// `check_all` call touches).
fn pick<'g>(guards: &'g mut [(usize, MutexGuard<'_, Shard>)], index: usize) -> &'g mut Shard {
    let at = guards.iter().position(|(i, _)| *i == index).unwrap_or(0);
    &mut guards[at].1
}

/// Nothing panics while a shard is locked, and every shard operation leaves
/// it consistent, so a poisoned lock is simply taken over.
fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A shard on its own cache lines.
#[repr(align(128))]
struct Padded(Mutex<Shard>);

/// One shard: key → TAT, at most `cap` keys.
struct Shard {
    /// Keyed by the key's 64-bit hash (already mixed, so not hashed again).
    primary: HashMap<u64, Slot, BuildHasherDefault<PassThrough>>,
    /// Keys whose hash was taken in `primary` by another key when they were
    /// inserted. Almost always empty.
    overflow: HashMap<Box<str>, i64, RandomState>,
    cap: usize,
    /// A lower bound of every stored TAT: no sweep can drop anything before.
    next_sweep_at: i64,
}

struct Slot {
    key: Box<str>,
    tat: i64,
}

impl Shard {
    fn new(cap: usize) -> Self {
        Shard {
            primary: HashMap::default(),
            overflow: HashMap::default(),
            cap,
            next_sweep_at: i64::MAX,
        }
    }

    fn len(&self) -> usize {
        self.primary.len() + self.overflow.len()
    }

    #[inline]
    fn get_mut(&mut self, hash: u64, key: &str) -> Option<&mut i64> {
        if let Some(slot) = self.primary.get_mut(&hash)
            && *slot.key == *key
        {
            return Some(&mut slot.tat);
        }
        if self.overflow.is_empty() {
            None
        } else {
            self.overflow.get_mut(key)
        }
    }

    /// Stores a key known to be absent; `false` if the shard is full of live
    /// keys.
    fn insert(&mut self, hash: u64, key: &str, tat: i64, now: i64) -> bool {
        if self.len() >= self.cap {
            if now < self.next_sweep_at {
                return false;
            }
            self.sweep(now);
            if self.len() >= self.cap {
                return false;
            }
        }
        match self.primary.entry(hash) {
            Entry::Vacant(v) => {
                v.insert(Slot {
                    key: key.into(),
                    tat,
                });
            }
            Entry::Occupied(_) => {
                self.overflow.insert(key.into(), tat);
            }
        }
        self.next_sweep_at = self.next_sweep_at.min(tat);
        true
    }

    fn remove(&mut self, hash: u64, key: &str) -> bool {
        if let Entry::Occupied(e) = self.primary.entry(hash)
            && *e.get().key == *key
        {
            e.remove();
            return true;
        }
        self.overflow.remove(key).is_some()
    }

    /// Drops the keys whose TAT is at or before `now`; returns how many.
    fn sweep(&mut self, now: i64) -> usize {
        let before = self.len();
        let mut min = i64::MAX;
        self.primary.retain(|_, slot| {
            let keep = slot.tat > now;
            if keep {
                min = min.min(slot.tat);
            }
            keep
        });
        self.overflow.retain(|_, tat| {
            let keep = *tat > now;
            if keep {
                min = min.min(*tat);
            }
            keep
        });
        self.next_sweep_at = min;
        before - self.len()
    }

    /// Returns memory when a table is far larger than its content.
    fn shrink(&mut self) {
        if self.primary.capacity() > 4 * self.primary.len() + 64 {
            self.primary.shrink_to(2 * self.primary.len());
        }
        if self.overflow.capacity() > 4 * self.overflow.len() + 64 {
            self.overflow.shrink_to(2 * self.overflow.len());
        }
    }
}

/// Hasher for keys that are already well-mixed 64-bit hashes.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// Keyed folded-multiply hash of key bytes (see [`MemoryRateLimiter`]).
#[derive(Clone, Copy)]
struct KeyHasher {
    seeds: [u64; 4],
}

fn le64(bytes: Option<&[u8; 8]>) -> u64 {
    bytes.map_or(0, |b| u64::from_le_bytes(*b))
}

fn le32(bytes: Option<&[u8; 4]>) -> u64 {
    bytes.map_or(0, |b| u64::from(u32::from_le_bytes(*b)))
}

const fn folded_multiply(a: u64, b: u64) -> u64 {
    let p = (a as u128) * (b as u128);
    (p as u64) ^ ((p >> 64) as u64)
}

impl KeyHasher {
    /// Seeds drawn from std's randomly keyed SipHash (fresh per instance).
    fn random() -> Self {
        let state = RandomState::new();
        KeyHasher {
            seeds: [0u64, 1, 2, 3].map(|i| state.hash_one(i)),
        }
    }

    #[inline]
    fn hash(&self, bytes: &[u8]) -> u64 {
        let [s0, s1, s2, s3] = self.seeds;
        let mut h = s0 ^ (bytes.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let (blocks, rest) = bytes.as_chunks::<16>();
        for block in blocks {
            let v = u128::from_le_bytes(*block);
            h = folded_multiply(h ^ s1 ^ v as u64, s2 ^ (v >> 64) as u64);
        }
        // The tail (under 16 bytes) as two overlapping reads; the length is
        // already in `h`, so this stays unambiguous.
        let r = rest.len();
        let (a, b) = if r >= 8 {
            (le64(rest.first_chunk()), le64(rest.last_chunk()))
        } else if r >= 4 {
            (le32(rest.first_chunk()), le32(rest.last_chunk()))
        } else if let Some(&first) = rest.first() {
            let mid = rest.get(r / 2).copied().unwrap_or(0);
            let last = rest.last().copied().unwrap_or(0);
            (
                u64::from(first) | u64::from(mid) << 8 | u64::from(last) << 16,
                0,
            )
        } else {
            (0, 0)
        };
        if r > 0 {
            h = folded_multiply(h ^ s1 ^ a, s2 ^ b);
        }
        folded_multiply(h ^ s3, s0 ^ 0x2d35_8dcc_aa6c_78a5)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Duration;

    use super::*;
    use crate::clock::{ManualClock, Timestamp};
    use crate::conformance::rate_limiter as suite;

    fn clock() -> ManualClock {
        ManualClock::new(Timestamp::from_unix_secs(1_700_000_000))
    }

    fn limiter(clock: &ManualClock, max_keys: usize) -> MemoryRateLimiter {
        MemoryRateLimiter::with_capacity(Arc::new(clock.clone()), max_keys)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_conformance_rate_limiter() {
        let clock = clock();
        let limiter: Arc<dyn RateLimiter> =
            Arc::new(MemoryRateLimiter::new(Arc::new(clock.clone())));
        suite::run_all(&limiter, &clock, "conformance:").await;
    }

    #[tokio::test]
    async fn memory_conformance_with_a_closure_and_a_tiny_capacity() {
        let clock = clock();
        let limiter: Arc<dyn RateLimiter> = Arc::new(limiter(&clock, 40));
        let c = clock.clone();
        let advance = move |d: Duration| c.advance(d);
        suite::run_all(&limiter, &advance, "").await;
    }

    /// A limiter with only `check`: the trait's default `check_all`.
    #[derive(Debug)]
    struct SingleKeyOnly(MemoryRateLimiter);

    #[async_trait::async_trait]
    impl RateLimiter for SingleKeyOnly {
        async fn check(&self, key: &str, quota: &Quota, cost: u32) -> Result<Decision> {
            self.0.check_sync(key, quota, cost)
        }

        async fn reset(&self, key: &str) -> Result<()> {
            self.0.reset_sync(key)
        }

        fn name(&self) -> &'static str {
            "default check_all"
        }
    }

    #[tokio::test]
    async fn default_check_all_is_all_or_nothing_without_races() {
        let clock = clock();
        let limiter = SingleKeyOnly(MemoryRateLimiter::new(Arc::new(clock.clone())));
        suite::check_all_is_all_or_nothing(&limiter, &clock, "default:").await;
    }

    #[test]
    fn check_all_undoes_its_writes_when_a_new_key_finds_no_room() {
        let c = clock();
        let l = limiter(&c, 2);
        let q = Quota::per_second(1).with_burst(3);
        assert!(l.check_sync("old", &q, 1).unwrap().allowed);
        // One shard of two keys: "old" and "new1" fit, "new2" does not.
        let r = l.check_all_sync(&[("old", &q, 1), ("new1", &q, 1), ("new2", &q, 1)]);
        assert!(matches!(r, Err(Error::Unavailable { .. })), "{r:?}");
        assert_eq!(l.len(), 1, "the new key was removed");
        assert_eq!(
            l.check_sync("old", &q, 0).unwrap().remaining,
            2,
            "old restored"
        );
        let all = l
            .check_all_sync(&[("old", &q, 1), ("new1", &q, 1)])
            .unwrap();
        assert!(all.allowed());
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn shard_layout() {
        let c = clock();
        for (max, shards) in [
            (0, 1),
            (1, 1),
            (100, 1),
            (128, 2),
            (10_000, 64),
            (1_000_000, 64),
        ] {
            let l = limiter(&c, max);
            assert_eq!(l.shards.len(), shards, "max_keys {max}");
            let caps: usize = l.shards.iter().map(|s| lock(&s.0).cap).sum();
            assert_eq!(caps, max.max(1));
        }
        assert_eq!(
            MemoryRateLimiter::new(Arc::new(c)).max_keys(),
            MemoryRateLimiter::DEFAULT_MAX_KEYS
        );
    }

    #[test]
    fn full_of_live_keys_refuses_new_keys_and_keeps_live_ones() {
        let c = clock();
        let l = limiter(&c, 100);
        let day = Quota::per_day(1);
        for i in 0..100 {
            assert!(l.check_sync(&format!("k{i}"), &day, 1).unwrap().allowed);
        }
        assert_eq!(l.len(), 100);
        for i in 0..50 {
            let err = l.check_sync(&format!("new{i}"), &day, 1).unwrap_err();
            assert!(matches!(err, Error::Unavailable { .. }), "{err}");
        }
        // A peek at a new key needs no room and stores nothing.
        assert!(l.check_sync("new0", &day, 0).unwrap().allowed);
        assert_eq!(l.len(), 100);
        // Every live key kept its state: still exhausted.
        for i in 0..100 {
            let d = l.check_sync(&format!("k{i}"), &day, 1).unwrap();
            assert!(!d.allowed, "k{i} was reset");
        }
        // A reset frees room for one new key.
        l.reset_sync("k7").unwrap();
        assert!(l.check_sync("new0", &day, 1).unwrap().allowed);
        assert!(l.check_sync("new1", &day, 1).is_err());
        // Once keys are back to full burst, new keys get in.
        c.advance(Duration::from_secs(86_400));
        assert!(l.check_sync("new1", &day, 1).unwrap().allowed);
        assert!(l.len() <= 100);
    }

    #[test]
    fn expired_keys_are_dropped_first_and_exactly() {
        let c = clock();
        let l = limiter(&c, 100);
        let short = Quota::per_second(1);
        let long = Quota::per_day(1).with_burst(2);
        for i in 0..50 {
            assert!(l.check_sync(&format!("live{i}"), &long, 2).unwrap().allowed);
            assert!(
                l.check_sync(&format!("short{i}"), &short, 1)
                    .unwrap()
                    .allowed
            );
        }
        assert_eq!(l.len(), 100);
        c.advance(Duration::from_secs(1));
        // The 50 expired keys make room; the 51st new key does not fit.
        for i in 0..50 {
            assert!(l.check_sync(&format!("new{i}"), &short, 1).unwrap().allowed);
        }
        assert!(l.check_sync("one-too-many", &short, 1).is_err());
        assert_eq!(l.len(), 100);
        for i in 0..50 {
            let d = l.check_sync(&format!("live{i}"), &long, 1).unwrap();
            assert!(!d.allowed, "live{i} lost its state");
            // A dropped key behaves exactly as before it was dropped: full.
            let d = l.check_sync(&format!("short{i}"), &short, 0).unwrap();
            assert_eq!((d.allowed, d.remaining), (true, 1));
        }
    }

    #[test]
    fn many_distinct_keys_stay_within_max_keys() {
        let c = clock();
        let l = limiter(&c, 10_000);
        let day = Quota::per_day(5);
        let mut admitted = 0usize;
        for i in 0..40_000 {
            match l.check_sync(&format!("agent-{i}"), &day, 1) {
                Ok(d) => {
                    assert!(d.allowed);
                    admitted += 1;
                }
                Err(Error::Unavailable { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        // With this many keys every shard fills up to its share.
        assert_eq!(admitted, 10_000);
        assert_eq!(l.len(), 10_000);
        c.advance(Duration::from_secs(86_400));
        assert_eq!(l.remove_expired(), 10_000);
        assert!(l.is_empty());
    }

    #[test]
    fn refusals_and_invalid_requests_store_nothing() {
        let c = clock();
        let l = limiter(&c, 10);
        let q = Quota::per_second(1);
        assert!(l.check_sync("a", &q, 0).unwrap().allowed);
        assert!(l.check_sync("a", &q, 2).is_err());
        assert!(l.check_sync("a", &Quota::per_second(0), 1).is_err());
        assert!(l.check_sync(&"a".repeat(300), &q, 1).is_err());
        assert!(l.is_empty());
        assert!(l.check_sync("a", &q, 1).unwrap().allowed);
        assert_eq!(l.len(), 1);
        l.reset_sync("a").unwrap();
        l.reset_sync("never-seen").unwrap();
        assert!(l.is_empty());
    }

    #[test]
    fn shard_keeps_colliding_keys_apart() {
        let mut s = Shard::new(10);
        let now = 0;
        assert!(s.insert(7, "a", 10, now));
        assert!(s.insert(7, "b", 20, now));
        assert!(s.insert(7, "c", 30, now));
        assert!(s.insert(8, "d", 40, now));
        assert_eq!(s.len(), 4);
        assert_eq!(s.get_mut(7, "a").copied(), Some(10));
        assert_eq!(s.get_mut(7, "b").copied(), Some(20));
        assert_eq!(s.get_mut(7, "c").copied(), Some(30));
        assert_eq!(s.get_mut(7, "d"), None);
        assert!(s.remove(7, "a"));
        assert!(!s.remove(7, "a"));
        assert_eq!(s.get_mut(7, "b").copied(), Some(20));
        assert!(s.insert(7, "e", 50, now));
        assert_eq!(s.get_mut(7, "e").copied(), Some(50));
        assert_eq!(s.get_mut(7, "c").copied(), Some(30));
        assert_eq!(s.next_sweep_at, 10);
        assert_eq!(s.sweep(30), 2);
        assert_eq!(s.next_sweep_at, 40);
        assert_eq!(s.get_mut(7, "b"), None);
        assert_eq!(s.get_mut(7, "e").copied(), Some(50));
        assert!(s.remove(7, "e"));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn full_shard_skips_fruitless_sweeps() {
        let mut s = Shard::new(2);
        assert!(s.insert(1, "a", 100, 0));
        assert!(s.insert(2, "b", 200, 0));
        assert!(!s.insert(3, "c", 150, 50));
        assert_eq!(s.next_sweep_at, 100);
        // Key "a" gets used again: its TAT moves on; the bound stays valid.
        *s.get_mut(1, "a").unwrap() = 300;
        assert!(!s.insert(3, "c", 150, 99));
        assert!(!s.insert(3, "c", 150, 100)); // fruitless sweep...
        assert_eq!(s.next_sweep_at, 200); // ...recomputes the bound
        assert!(s.insert(3, "c", 250, 200));
        assert_eq!(s.len(), 2);
        assert_eq!(s.get_mut(2, "b"), None);
    }

    #[test]
    fn key_hash_is_keyed_and_sensitive() {
        let h = KeyHasher::random();
        let other = KeyHasher::random();
        let keys = [
            "",
            "a",
            "a\0",
            "\0",
            "ab",
            &"x".repeat(15),
            &"x".repeat(16),
            &"x".repeat(17),
            &"y".repeat(256),
        ];
        let hashes: HashSet<u64> = keys.iter().map(|k| h.hash(k.as_bytes())).collect();
        assert_eq!(hashes.len(), keys.len());
        assert_ne!(h.hash(b"client"), other.hash(b"client"));
        assert_eq!(h.hash(b"client"), h.hash(b"client"));
        // Shards get used evenly enough.
        let mut counts = [0usize; 64];
        for i in 0..64_000 {
            counts[(h.hash(format!("tenant:{i}").as_bytes()) >> 32) as usize & 63] += 1;
        }
        assert!(
            counts.iter().all(|&n| (700..1300).contains(&n)),
            "{counts:?}"
        );
    }

    #[test]
    fn debug_does_not_dump_keys() {
        let l = limiter(&clock(), 10);
        l.check_sync("secret-key", &Quota::per_second(1), 1)
            .unwrap();
        let s = format!("{l:?}");
        assert!(
            s.contains("MemoryRateLimiter") && !s.contains("secret-key"),
            "{s}"
        );
    }
}

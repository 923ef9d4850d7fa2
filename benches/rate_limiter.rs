//! Rate limiter checks: SentryAgent's `MemoryRateLimiter` against the
//! `governor` crate, the peer.
//!
//! `cargo bench --bench rate_limiter`; ids under the group `rate_limiter`
//! (see docs/benchmarks.md for figures and what each id measures).
//!
//! Every id checks an admitted request: quotas are large enough that no check
//! in the run is refused, so both limiters do the same work (read the state,
//! run their GCRA step, store the new state).

use std::num::NonZeroU32;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use sentryagent::ratelimit::Quota;
use sentryagent::{Clock, ManualClock, MemoryRateLimiter, SystemClock, Timestamp};
use support::{ThreadCpuTime, cpu_time_criterion};

mod support;

/// A key of the shape the `Idp` uses (`tenant:<id>`).
const KEY: &str = "tenant:tnt_0193a1c2d3e47f00a1b2c3d4e5f60718";
/// Distinct keys of `memory_many_keys`.
const MANY_KEYS: usize = 1_000_000;
/// A quota no single-key run exhausts: 10^9 per second (T = 1 µs), burst 10^9.
const HUGE: u32 = 1_000_000_000;

fn huge_quota() -> Quota {
    Quota::per_second(HUGE)
}

fn governor_keyed() -> governor::DefaultKeyedRateLimiter<String> {
    let q = governor::Quota::per_second(NonZeroU32::new(HUGE).expect("non-zero"));
    governor::RateLimiter::keyed(q)
}

/// Resident set size of this process, in bytes (Linux), if readable.
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn single_key(c: &mut Criterion<ThreadCpuTime>) {
    let mut g = c.benchmark_group("rate_limiter");

    // The peer: governor's keyed limiter on its default DashMap store and its
    // default clock (quanta, a TSC read), as a user gets it.
    let gov = governor_keyed();
    let key = KEY.to_owned();
    g.bench_function("governor_single_key", |b| {
        b.iter(|| {
            assert!(gov.check_key(std::hint::black_box(&key)).is_ok());
        })
    });

    // SentryAgent on the system clock (a `SystemTime::now()` per check), as a
    // user gets it.
    let system: Arc<dyn Clock> = Arc::new(SystemClock);
    let mem = MemoryRateLimiter::new(system);
    let q = huge_quota();
    g.bench_function("memory_single_key", |b| {
        b.iter(|| {
            let d = mem
                .check_sync(std::hint::black_box(KEY), &q, 1)
                .expect("check");
            assert!(d.allowed);
        })
    });

    // The same on a manual clock (an atomic load): the limiter without the
    // cost of reading the time.
    let manual = ManualClock::new(Timestamp::from_unix_secs(1_763_700_000));
    let mem = MemoryRateLimiter::new(Arc::new(manual));
    g.bench_function("memory_single_key_manual_clock", |b| {
        b.iter(|| {
            let d = mem
                .check_sync(std::hint::black_box(KEY), &q, 1)
                .expect("check");
            assert!(d.allowed);
        })
    });

    // The clocks alone, to split the figures above: what reading the time
    // costs each limiter.
    let system = SystemClock;
    g.bench_function("clock_system_now", |b| {
        b.iter(|| std::hint::black_box(&system).now())
    });
    let gov_clock = governor::clock::DefaultClock::default();
    g.bench_function("clock_governor_default_now", |b| {
        b.iter(|| governor::clock::Clock::now(std::hint::black_box(&gov_clock)))
    });

    // Slots for the other backends, to add with them (same key and quota,
    // through `RateLimiter::check` on a current-thread Tokio runtime):
    //
    // * `sled_single_key`: the sled limiter (compare-and-swap on one tree)
    //   on a temporary directory.
    // * `redis_single_key`: one `check` per round trip to the Redis of
    //   `SENTRYAGENT_TEST_REDIS_URL`; prints
    //   `SKIPPED redis_single_key: redis unreachable at <url>` and registers
    //   nothing when Redis is absent.
    // * `redis_pipelined`: checks pipelined at the depth used for the
    //   `redis-benchmark -t set -P <depth>` comparison of docs/benchmarks.md,
    //   skipped the same way.
    g.finish();
}

fn many_keys(c: &mut Criterion<ThreadCpuTime>) {
    let mut g = c.benchmark_group("rate_limiter");
    // 100 per second per key: T = 10 ms and a burst of 100, while a pass
    // over the million keys takes far longer than 10 ms, so no check of the
    // run is refused and every key is still stored when it comes round again.
    let q = Quota::per_second(100);
    // Built on first use only, when this id is selected (a few seconds and a
    // few hundred MB).
    let mut state: Option<(Vec<String>, MemoryRateLimiter)> = None;
    let mut i = 0usize;
    g.bench_function("memory_many_keys", |b| {
        let (keys, l) = state.get_or_insert_with(|| {
            let keys = many_distinct_keys();
            report_default_bound(&keys);
            let l = filled_limiter(&keys, &q);
            (keys, l)
        });
        b.iter(|| {
            i += 1;
            if i == keys.len() {
                i = 0;
            }
            let d = l.check_sync(&keys[i], &q, 1).expect("check");
            assert!(d.allowed);
        })
    });
    g.finish();
}

fn many_distinct_keys() -> Vec<String> {
    (0..MANY_KEYS)
        .map(|i| format!("tenant:tnt_0193a1c2d3e47f00a1b2c3d4{i:08}"))
        .collect()
}

/// The memory bound with the default capacity: a million new keys whose
/// state stays live for a day (one request per day each), so that nothing
/// can be dropped. Prints how many are stored, how many are refused once
/// their shard is full, and the resident memory they take.
fn report_default_bound(keys: &[String]) {
    let day = Quota::per_day(1);
    let before = rss_bytes();
    let l = MemoryRateLimiter::new(Arc::new(SystemClock));
    let refused = keys
        .iter()
        .filter(|k| l.check_sync(k, &day, 1).is_err())
        .count();
    let after = rss_bytes();
    eprintln!(
        "memory_many_keys: new() (max_keys = DEFAULT_MAX_KEYS = {}), {} new live keys of {} bytes: {} stored, {refused} refused (shard full); RSS growth {}",
        MemoryRateLimiter::DEFAULT_MAX_KEYS,
        keys.len(),
        keys[0].len(),
        l.len(),
        describe_growth(before, after, l.len()),
    );
}

/// A limiter sized so that all the keys fit (its shards have room for 20 %
/// more than their share), with every key stored.
fn filled_limiter(keys: &[String], q: &Quota) -> MemoryRateLimiter {
    let l = MemoryRateLimiter::with_capacity(Arc::new(SystemClock), keys.len() * 6 / 5);
    for k in keys {
        assert!(l.check_sync(k, q, 1).expect("room for every key").allowed);
    }
    assert_eq!(l.len(), keys.len());
    l
}

fn describe_growth(before: Option<u64>, after: Option<u64>, keys: usize) -> String {
    match (before, after) {
        (Some(b), Some(a)) if keys > 0 => {
            let grown = a.saturating_sub(b);
            format!(
                "{:.1} MiB ({} bytes per key)",
                grown as f64 / (1024.0 * 1024.0),
                grown / keys as u64
            )
        }
        _ => "unknown (no /proc/self/statm)".to_owned(),
    }
}

/// Runs `check` on two threads at once, `iters` checks in all, and returns
/// the wall-clock time: the time per iteration is then the inverse of the
/// pair's combined throughput.
fn two_threads(iters: u64, check: &(dyn Fn() + Sync)) -> Duration {
    let per_thread = iters.div_ceil(2);
    let start_line = Barrier::new(3);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                start_line.wait();
                for _ in 0..per_thread {
                    check();
                }
            });
        }
        start_line.wait();
        let start = Instant::now();
        // The scope joins both threads before returning.
        start
    })
    .elapsed()
}

fn contended(c: &mut Criterion) {
    let mut g = c.benchmark_group("rate_limiter");
    let q = huge_quota();
    let mem = MemoryRateLimiter::new(Arc::new(SystemClock));
    g.bench_function("memory_contended_2_threads", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, &|| {
                let d = mem
                    .check_sync(std::hint::black_box(KEY), &q, 1)
                    .expect("check");
                assert!(d.allowed);
            })
        })
    });
    let gov = governor_keyed();
    let key = KEY.to_owned();
    g.bench_function("governor_contended_2_threads", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, &|| {
                assert!(gov.check_key(std::hint::black_box(&key)).is_ok());
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = cpu_time;
    config = cpu_time_criterion();
    targets = single_key, many_keys
}
criterion_group!(wall_time, contended);
criterion_main!(cpu_time, wall_time);

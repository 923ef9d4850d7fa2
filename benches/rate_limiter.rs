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
use sentryagent::Quota;
use sentryagent::{Clock, ManualClock, MemoryRateLimiter, SystemClock};
use sentryagent_core::conformance::kit;
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
    let manual = ManualClock::new(kit::EPOCH);
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
    let drift = std::sync::Once::new();
    g.bench_function("clock_system_now", |b| {
        // Once, and only when this id is selected.
        drift.call_once(report_clock_drift);
        b.iter(|| std::hint::black_box(&system).now())
    });
    g.bench_function("clock_std_system_time_now", |b| {
        b.iter(SystemClock::precise_now)
    });
    let gov_clock = governor::clock::DefaultClock::default();
    g.bench_function("clock_governor_default_now", |b| {
        b.iter(|| governor::clock::Clock::now(std::hint::black_box(&gov_clock)))
    });

    // The sled limiter: the key's TAT read and written in a sled tree under
    // its lock stripe, on a temporary directory (sled writes to disk in the
    // background; the check itself does no I/O).
    #[cfg(feature = "sled")]
    {
        let dir = tempfile::tempdir().expect("temporary directory");
        let backend = sentryagent::storage::sled::SledBackend::open(dir.path()).expect("sled");
        let sled = backend.rate_limiter(Arc::new(SystemClock));
        g.bench_function("sled_single_key", |b| {
            b.iter(|| {
                let d = sled
                    .check_sync(std::hint::black_box(KEY), &q, 1)
                    .expect("check");
                assert!(d.allowed);
            })
        });
    }
    #[cfg(not(feature = "sled"))]
    eprintln!("SKIPPED sled_single_key: built without the `sled` feature");
    g.finish();
}

/// How far `SystemClock::now()` (the wall clock extrapolated from the CPU's
/// counter) strays from `SystemTime::now()`: one second of reads, each
/// between two direct reads, so ten anchors' worth.
fn report_clock_drift() {
    let start = Instant::now();
    let (mut reads, mut worst) = (0u64, 0i64);
    while start.elapsed() < Duration::from_secs(1) {
        let before = SystemClock::precise_now().unix_micros();
        let now = SystemClock.now().unix_micros();
        let after = SystemClock::precise_now().unix_micros();
        // Outside [before, after] by this much (0 when inside).
        worst = worst.max(before - now).max(now - after);
        reads += 1;
    }
    eprintln!(
        "clock_system_now: {reads} reads over 1 s; the largest distance outside the bracketing SystemTime::now() reads: {worst} µs"
    );
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
/// Pipelining depth of `redis_pipelined`, and of the `redis-benchmark`
/// run it is compared with (docs/benchmarks.md).
#[cfg(feature = "redis")]
const REDIS_DEPTH: usize = 16;

/// The Redis limiter, one connection (the multiplexed connection every
/// part of a `RedisBackend` shares), wall time: the work happens in the
/// Redis server. Skipped, with a line saying so, when Redis is unreachable.
#[cfg(feature = "redis")]
fn redis(c: &mut Criterion) {
    use sentryagent::RateLimiter;
    use sentryagent::storage::redis::{FailurePolicy, RedisBackend, RedisOptions};

    let url = std::env::var("SENTRYAGENT_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // A random prefix per run; keys expire at their TAT (microseconds
    // ahead with this quota), so a run leaves nothing behind.
    let prefix = format!("sa-bench-{}:", std::process::id());
    // Failing closed: a Redis error fails the bench instead of being
    // admitted without asking Redis.
    let options = RedisOptions::new(url.as_str())
        .with_prefix(prefix)
        .with_failure_policy(FailurePolicy::Closed);
    let limiter = rt.block_on(async {
        let backend = RedisBackend::open(options).await.ok()?;
        let limiter = backend.rate_limiter();
        limiter.check(KEY, &huge_quota(), 1).await.ok()?;
        Some(Arc::new(limiter))
    });
    let Some(limiter) = limiter else {
        for id in REDIS_IDS {
            eprintln!("SKIPPED {id}: redis unreachable at {url}");
        }
        return;
    };
    let q = huge_quota();
    let mut g = c.benchmark_group("rate_limiter");
    g.throughput(criterion::Throughput::Elements(1));
    // One check per round trip.
    g.bench_function("redis_single_key", |b| {
        b.to_async(&rt).iter(|| async {
            let d = limiter
                .check(std::hint::black_box(KEY), &q, 1)
                .await
                .expect("check");
            assert!(d.allowed);
        })
    });
    // REDIS_DEPTH checks always in flight on the one connection (so up to
    // REDIS_DEPTH commands pipelined in each write), on REDIS_DEPTH keys;
    // the time per iteration is the time per check.
    g.bench_function("redis_pipelined", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let limiter = Arc::clone(&limiter);
            async move {
                let per_task = iters.div_ceil(REDIS_DEPTH as u64);
                let start = Instant::now();
                let tasks: Vec<_> = (0..REDIS_DEPTH)
                    .map(|i| {
                        let limiter = Arc::clone(&limiter);
                        let q = huge_quota();
                        tokio::spawn(async move {
                            let key = format!("{KEY}:{i}");
                            for _ in 0..per_task {
                                let d = limiter.check(&key, &q, 1).await.expect("check");
                                assert!(d.allowed);
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.expect("no task panicked");
                }
                // Scaled to the `iters` criterion asked for.
                start
                    .elapsed()
                    .mul_f64(iters as f64 / (per_task * REDIS_DEPTH as u64) as f64)
            }
        })
    });
    // A token request's admission: the client's and the tenant's limits
    // (keys sharing the tenant's slot), one `check_all` script call...
    let tenant = KEY.to_owned();
    let client = format!("{tenant}/client:bench");
    g.bench_function("redis_token_admission", |b| {
        b.to_async(&rt).iter(|| async {
            let all = limiter
                .check_all(&[(&client, &q, 1), (&tenant, &q, 1)])
                .await
                .expect("check_all");
            assert!(all.allowed());
        })
    });
    // ... against two checks one after the other, as before `check_all`.
    g.bench_function("redis_token_admission_two_checks", |b| {
        b.to_async(&rt).iter(|| async {
            let c = limiter.check(&client, &q, 1).await.expect("check");
            let t = limiter.check(&tenant, &q, 1).await.expect("check");
            assert!(c.allowed && t.allowed);
        })
    });
    // 64 admissions in flight (64 clients of one tenant), with the
    // limiter's coalescing of concurrent calls and without; the time per
    // iteration is the time per admission.
    let uncoalesced = rt.block_on(async {
        let options = RedisOptions::new(url.as_str())
            .with_prefix(format!("sa-bench-{}:", std::process::id()))
            .with_failure_policy(FailurePolicy::Closed);
        let backend = RedisBackend::open(options).await.expect("open");
        Arc::new(backend.rate_limiter().with_coalescing(false))
    });
    for (id, limiter) in [
        ("redis_token_admission_64_concurrent", Arc::clone(&limiter)),
        (
            "redis_token_admission_64_concurrent_uncoalesced",
            uncoalesced,
        ),
    ] {
        g.bench_function(id, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let limiter = Arc::clone(&limiter);
                let tenant = tenant.clone();
                async move {
                    const TASKS: usize = 64;
                    let per_task = iters.div_ceil(TASKS as u64);
                    let start = Instant::now();
                    let tasks: Vec<_> = (0..TASKS)
                        .map(|i| {
                            let limiter = Arc::clone(&limiter);
                            let tenant = tenant.clone();
                            let q = huge_quota();
                            tokio::spawn(async move {
                                let client = format!("{tenant}/client:{i}");
                                for _ in 0..per_task {
                                    let all = limiter
                                        .check_all(&[(&client, &q, 1), (&tenant, &q, 1)])
                                        .await
                                        .expect("check_all");
                                    assert!(all.allowed());
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.expect("no task panicked");
                    }
                    start
                        .elapsed()
                        .mul_f64(iters as f64 / (per_task * TASKS as u64) as f64)
                }
            })
        });
    }
    g.finish();
}

/// Bench ids of the Redis group, for the skip lines.
const REDIS_IDS: [&str; 6] = [
    "redis_single_key",
    "redis_pipelined",
    "redis_token_admission",
    "redis_token_admission_two_checks",
    "redis_token_admission_64_concurrent",
    "redis_token_admission_64_concurrent_uncoalesced",
];

#[cfg(not(feature = "redis"))]
fn redis(_: &mut Criterion) {
    for id in REDIS_IDS {
        eprintln!("SKIPPED {id}: built without the `redis` feature (cargo bench --features redis)");
    }
}

criterion_group!(wall_time, contended, redis);
criterion_main!(cpu_time, wall_time);

//! The Redis backend on a local three-master Redis Cluster, started by the
//! test itself (`redis-server --cluster-enabled yes` on free loopback
//! ports, joined by `redis-cli --cluster create`, killed at the end): the
//! rate limiter and usage meter conformance suites through a
//! `redis+cluster://` URL, and a slot moved under load.
//!
//! Skipped when `redis-server` or `redis-cli` is missing, failed instead
//! when `SENTRYAGENT_REQUIRE_SERVICES=1`.
#![cfg(feature = "redis")]

#[path = "support/redis_cluster.rs"]
mod redis_cluster;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis_cluster::{LocalCluster, tools_available};
use sentryagent_core::conformance::kit::EPOCH;
use sentryagent_core::conformance::rate_limiter::{self, MAX_DRIFT, TimeControl};
use sentryagent_core::{ManualClock, Quota, RateLimiter};
use sentryagent_storage::redis::{FailurePolicy, RedisBackend, RedisOptions};

async fn cluster(test: &str) -> Option<LocalCluster> {
    if !tools_available(test) {
        return None;
    }
    Some(
        tokio::task::spawn_blocking(LocalCluster::start)
            .await
            .unwrap(),
    )
}

/// Real time: advancing sleeps.
struct Sleeping;

#[async_trait::async_trait]
impl TimeControl for Sleeping {
    async fn advance(&self, by: Duration) {
        tokio::time::sleep(by).await;
    }

    fn drift(&self) -> Duration {
        MAX_DRIFT
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_conformance() {
    let Some(cluster) = cluster("redis_cluster_conformance").await else {
        return;
    };
    let options = RedisOptions::from_url(&cluster.url("conf:")).unwrap();
    assert_eq!(options.cluster_nodes().unwrap().len(), 3);
    let redis = RedisBackend::open(options).await.unwrap();

    let clock = ManualClock::new(EPOCH);
    let limiter = Arc::new(redis.rate_limiter().with_clock(Arc::new(clock.clone())));
    let shared: Arc<dyn RateLimiter> = limiter.clone();
    rate_limiter::run_all(&shared, &clock, "conformance:").await;
    assert_eq!(limiter.stats().failures, 0, "{:?}", limiter.stats());

    // On the servers' clocks, the production path.
    let server: Arc<dyn RateLimiter> = Arc::new(redis.rate_limiter());
    let p = "server-time:";
    rate_limiter::check_all_is_all_or_nothing(server.as_ref(), &Sleeping, p).await;
    rate_limiter::concurrent_check_all_charges_nothing_when_refused(&server, &Sleeping, p).await;

    // Keys of two tenants live in two slots: still one answer, all or nothing.
    let q = Quota::per_minute(1).with_burst(1);
    let all = server
        .check_all(&[("tenant:x/client:a", &q, 1), ("tenant:y", &q, 1)])
        .await
        .unwrap();
    assert!(all.allowed(), "{all:?}");
    let all = server
        .check_all(&[("tenant:x/client:b", &q, 1), ("tenant:y", &q, 1)])
        .await
        .unwrap();
    assert_eq!(all.refused, Some(1), "{all:?}");
    assert_eq!(
        server
            .check("tenant:x/client:b", &q, 0)
            .await
            .unwrap()
            .remaining,
        1
    );

    sentryagent_core::conformance::usage_meter::run_all(Arc::new(redis.usage_meter())).await;
}

/// A tenant's slot moves from one master to another (`CLUSTER SETSLOT
/// IMPORTING/MIGRATING`, `MIGRATE` of its keys in small batches, `SETSLOT
/// NODE`) while 64 tasks check its limits: no caller sees an error (the
/// client follows `MOVED` and `ASK` and retries `TRYAGAIN`), and the
/// admissions stay within GCRA's bound (+1 %).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_slot_move_under_load() {
    let Some(cluster) = cluster("redis_cluster_slot_move_under_load").await else {
        return;
    };
    let prefix = "mv:";
    let redis = RedisBackend::open(
        RedisOptions::from_url(&cluster.url(prefix))
            .unwrap()
            .with_failure_policy(FailurePolicy::Closed),
    )
    .await
    .unwrap();
    let limiter = Arc::new(redis.rate_limiter());
    let tenant = "tenant:T-move";
    let slot = cluster.slot(&format!("{{{prefix}rl:{tenant}}}"));
    let src = cluster.owner(cluster.ports[0], slot);
    let dst = *cluster.ports.iter().find(|&&p| p != src).unwrap();
    let third = *cluster
        .ports
        .iter()
        .find(|&&p| p != src && p != dst)
        .unwrap();

    // Keys in the slot to move along with the tenant's.
    let filler = Quota::per_day(1);
    for i in 0..120 {
        let d = limiter
            .check(&format!("{tenant}/filler:{i}"), &filler, 1)
            .await
            .unwrap();
        assert!(d.allowed);
    }
    let keys_in_slot = cluster.cli(src, &["cluster", "countkeysinslot", &slot.to_string()]);
    assert_eq!(
        keys_in_slot.trim(),
        "120",
        "the filler keys share the tenant's slot"
    );

    // 500 per second, burst 50: T = 2 ms.
    let tq = Quota::per_second(500).with_burst(50);
    let cq = Quota::per_second(100_000);
    const TASKS: usize = 64;
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let limiter = limiter.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let client = format!("{tenant}/client:{}", i % 8);
                let (mut ok, mut refused, mut errors) = (0u64, 0u64, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let at = start.elapsed();
                    match limiter
                        .check_all(&[(&client, &cq, 1), (tenant, &tq, 1)])
                        .await
                    {
                        Ok(all) if all.allowed() => ok += 1,
                        Ok(_) => refused += 1,
                        Err(e) => errors.push(format!("at {at:?}: {e}")),
                    }
                }
                (ok, refused, errors)
            })
        })
        .collect();

    let moved = {
        let (src_id, dst_id) = (cluster.id(src), cluster.id(dst));
        let slot = slot.to_string();
        let cli = move |port: u16, args: &[&str]| {
            let out = std::process::Command::new("redis-cli")
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .args(args)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_millis(300));
            assert_eq!(
                cli(dst, &["cluster", "setslot", &slot, "importing", &src_id]).trim(),
                "OK"
            );
            assert_eq!(
                cli(src, &["cluster", "setslot", &slot, "migrating", &dst_id]).trim(),
                "OK"
            );
            let mut batches = 0;
            loop {
                let keys = cli(src, &["cluster", "getkeysinslot", &slot, "10"]);
                let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
                if keys.is_empty() {
                    break;
                }
                let port = dst.to_string();
                let mut args = vec!["migrate", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
                args.extend(keys.iter().copied());
                let out = cli(src, &args);
                assert!(
                    out.contains("OK") || out.contains("NOKEY"),
                    "MIGRATE: {out}"
                );
                batches += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            for port in [dst, src, third] {
                assert_eq!(
                    cli(port, &["cluster", "setslot", &slot, "node", &dst_id]).trim(),
                    "OK"
                );
            }
            std::thread::sleep(Duration::from_millis(300));
            batches
        })
        .await
        .unwrap()
    };
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut refused, mut errors) = (0u64, 0u64, Vec::new());
    for t in tasks {
        let (o, r, e) = t.await.unwrap();
        ok += o;
        refused += r;
        errors.extend(e);
    }
    let window = start.elapsed();
    let t = tq.emission_interval();
    let bound = u64::from(tq.burst) + (window.as_micros() / t.as_micros()) as u64;
    eprintln!(
        "redis_cluster_slot_move_under_load: slot {slot} moved {src} -> {dst} in {moved} MIGRATE batches; \
         {ok} admitted, {refused} refused, {} errors in {window:?}; GCRA bound {bound}",
        errors.len()
    );
    assert!(
        errors.is_empty(),
        "errors surfaced to callers: {:?}",
        &errors[..errors.len().min(5)]
    );
    assert_eq!(limiter.stats().failures, 0, "{:?}", limiter.stats());
    assert!(moved > 0);
    for port in cluster.ports.clone() {
        assert_eq!(
            cluster.owner(port, slot),
            dst,
            "node {port} sees the slot moved"
        );
    }
    assert!(
        ok <= bound + bound / 100,
        "over-admission: {ok} admitted, bound {bound} (+1 %)"
    );
    assert!(refused > 0, "the load exceeded the limit");
    assert!(ok >= u64::from(tq.burst), "the burst is usable: {ok}");
}

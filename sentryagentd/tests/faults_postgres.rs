//! Fault suite: a Postgres outage under load. The server reaches Postgres
//! through a TCP proxy of the test that cuts every connection and refuses
//! new ones for a few seconds (as a restarting database does), then lets
//! them through again; the shared Postgres itself is never touched.
//!
//! Promises: during the outage requests fail fast with 503 and
//! `Retry-After` (the p99 of the refusals well under the pool's acquire
//! timeout: the backend marks the database down instead of waiting for a
//! connection; no hang, no other error); service comes back by itself
//! within a few seconds of the restore; no acknowledged write (201) is
//! missing afterwards; the audit chain verifies.
#![cfg(feature = "postgres")]

mod daemon;
mod faults;

use std::net::SocketAddr;
use std::time::Duration;

use daemon::key;
use faults::{
    CutProxy, Tenant, TokenLoad, WriteLoad, between, check_nothing_lost, get, spawn, tiers_file,
    token_status, within,
};
use sentryagent_storage::testing;

const TEST: &str = "postgres_outage_fails_fast_recovers_and_loses_no_acknowledged_write";
/// The pool's default acquire timeout.
const ACQUIRE: Duration = Duration::from_secs(5);
/// Time the server has to be back to normal after Postgres returns.
const RECOVERY: Duration = Duration::from_secs(3);
/// The bound on the p99 of refusal latency during the outage: well under
/// the acquire timeout (a promise of failing fast, not a speed figure).
const FAST_REFUSAL: Duration = Duration::from_secs(1);

/// `url` with its `host:port` replaced by `addr`; and the replaced
/// address.
fn through(url: &str, addr: SocketAddr) -> (String, SocketAddr) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, path) = rest.split_once('/').unwrap();
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    let hostport = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:5432")
    };
    let target = std::net::ToSocketAddrs::to_socket_addrs(&hostport)
        .unwrap()
        .next()
        .unwrap();
    (format!("{scheme}://{user}{addr}/{path}"), target)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_outage_fails_fast_recovers_and_loses_no_acknowledged_write() {
    testing::with_schema(TEST, |store, _| async move {
        let (_, target) = through(&store, "127.0.0.1:1".parse().unwrap());
        let proxy = CutProxy::start(target).await;
        let (proxied, _) = through(&store, proxy.addr);
        let dir = tempfile::tempdir().unwrap();
        let tiers = tiers_file(dir.path());
        let op = key();
        let mut d = spawn(
            &[
                "--store",
                &proxied,
                "--limiter",
                "memory://",
                "--tiers",
                &tiers,
            ],
            &[("SENTRYAGENT_BOOTSTRAP_KEY", &op)],
        )
        .await;
        let b = d.base.clone();
        let t = Tenant::create(&d, &op, "pg-outage").await;
        let writes = WriteLoad::start(&b, &t.key, 2, false);
        let tokens = TokenLoad::start(&b, &t.client_id, &t.secret, 2);
        tokio::time::sleep(Duration::from_millis(1500)).await;

        let cut_at = tokens.now();
        proxy.cut();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let (st, _, ready) = get(&format!("{b}/health/ready"), None).await;
        assert_eq!(
            (st, ready["status"].as_str()),
            (503, Some("down")),
            "{ready}"
        );
        let (st, _, health) = get(&format!("{b}/health"), None).await;
        assert_eq!(st, 200, "liveness during the outage: {health}");
        let (st, _, jwks) = get(&format!("{b}/.well-known/jwks.json"), None).await;
        assert_eq!(st, 200, "the JWKS (in memory) during the outage: {jwks}");
        tokio::time::sleep(Duration::from_millis(5000)).await;

        let restore_at = tokens.now();
        proxy.restore().await;
        let recovered = within(RECOVERY, || async {
            token_status(&b, &t.client_id, &t.secret).await == 200
        })
        .await;
        assert!(recovered.is_some(), "tokens again within {RECOVERY:?}");
        eprintln!(
            "postgres outage: tokens again {:?} after the restore",
            recovered.unwrap()
        );
        let back = within(RECOVERY, || async {
            get(&format!("{b}/health/ready"), None).await.0 == 200
        })
        .await;
        assert!(back.is_some(), "ready again within {RECOVERY:?}");
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let token_samples = tokens.finish().await;
        let (acked, write_samples) = writes.finish().await;

        // During the outage: 503 with Retry-After, each within the acquire
        // timeout and a margin; never another error, never a hang.
        let all: Vec<_> = token_samples.iter().chain(write_samples.iter()).collect();
        for s in &all {
            assert!(
                matches!(s.status, 200 | 201 | 503),
                "only successes and 503: {s:?}"
            );
            if s.status == 503 {
                assert!(s.retry_after, "503 without Retry-After: {s:?}");
            }
            assert!(
                s.took < ACQUIRE + Duration::from_secs(2),
                "an answer within the acquire timeout: {s:?}"
            );
        }
        let during = between(
            &token_samples,
            cut_at + Duration::from_millis(200),
            restore_at,
        );
        assert!(
            during.iter().filter(|s| s.status == 503).count() >= 2,
            "token requests refused during the outage: {during:?}"
        );
        let mut refusals: Vec<Duration> = all
            .iter()
            .filter(|s| s.status == 503)
            .map(|s| s.took)
            .collect();
        refusals.sort();
        let slowest = refusals.last().copied().unwrap_or_default();
        let p99 = percentile(&refusals, 99);
        eprintln!(
            "postgres outage: {} requests, {} refused with 503, refusal p50 {:?} p99 {p99:?}, slowest refusal {slowest:?}",
            all.len(),
            refusals.len(),
            percentile(&refusals, 50),
        );
        assert!(
            p99 < FAST_REFUSAL,
            "refusals during the outage are fast: p99 {p99:?} (acquire timeout {ACQUIRE:?})"
        );
        let refused_writes = write_samples.iter().filter(|s| s.status == 503).count();
        assert!(
            refused_writes >= 1,
            "registrations refused during the outage"
        );
        assert!(
            acked.len() >= 5,
            "registrations acknowledged: {}",
            acked.len()
        );

        // Nothing acknowledged is missing, on this node and after a
        // restart.
        check_nothing_lost(&b, &t.key, &acked).await;
        d.stop();
        let d2 = spawn(
            &[
                "--store",
                &proxied,
                "--limiter",
                "memory://",
                "--tiers",
                &tiers,
            ],
            &[],
        )
        .await;
        check_nothing_lost(&d2.base, &t.key, &acked).await;
    })
    .await;
}

/// The `q`th percentile (nearest rank) of sorted durations.
fn percentile(sorted: &[Duration], q: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (sorted.len() * q).div_ceil(100).max(1);
    sorted[rank - 1]
}

#[test]
fn percentiles_by_nearest_rank() {
    let ms = |v: &[u64]| -> Vec<Duration> { v.iter().map(|&m| Duration::from_millis(m)).collect() };
    assert_eq!(percentile(&[], 99), Duration::ZERO);
    assert_eq!(percentile(&ms(&[5]), 99), Duration::from_millis(5));
    let hundred: Vec<u64> = (1..=100).collect();
    assert_eq!(percentile(&ms(&hundred), 99), Duration::from_millis(99));
    assert_eq!(percentile(&ms(&hundred), 50), Duration::from_millis(50));
    assert_eq!(
        percentile(&ms(&[1, 2, 3000]), 99),
        Duration::from_millis(3000)
    );
}

#[test]
fn urls_go_through_the_proxy() {
    let (u, t) = through(
        "postgres://postgres@127.0.0.1:5432/test?schema=s",
        "127.0.0.1:9".parse().unwrap(),
    );
    assert_eq!(u, "postgres://postgres@127.0.0.1:9/test?schema=s");
    assert_eq!(t, "127.0.0.1:5432".parse().unwrap());
}

//! Fault suite: Redis (the shared rate limiter and usage meter) stopped
//! under token load, then started again, on a private `redis-server` (never
//! the shared one).
//!
//! - `failure_policy=open`: tokens keep flowing while Redis is down;
//!   `/health/ready` stays 200 and says `degraded`; the usage counted while
//!   Redis was down is kept (buffered on the node) and written once Redis is
//!   back: no loss.
//! - `failure_policy=closed`: the token endpoint answers 503 with
//!   `Retry-After`, quickly (no hang); discovery, the JWKS and `/health`
//!   keep answering 200; `/health/ready` answers 503 `down`.
//! - Either way: back to normal within a few seconds of Redis returning,
//!   without a restart of the server.

mod daemon;
mod faults;

use std::time::Duration;

use daemon::key;
use faults::{
    PrivateRedis, Tenant, TokenLoad, between, get, spawn, tiers_file, token_status, within,
};

/// Time the server has to be back to normal after Redis returns.
const RECOVERY: Duration = Duration::from_secs(5);
/// Longest answer while Redis is down: the connect timeout of the Redis
/// URL below is 200 ms, the response timeout 500 ms.
const FAST: Duration = Duration::from_secs(2);

struct Setup {
    _dir: tempfile::TempDir,
    redis: PrivateRedis,
    d: daemon::Daemon,
    op: String,
    t: Tenant,
}

async fn setup(test: &str, policy: &str) -> Option<Setup> {
    let dir = tempfile::tempdir().unwrap();
    let redis_dir = dir.path().join("redis");
    std::fs::create_dir(&redis_dir).unwrap();
    let redis = PrivateRedis::start(test, &redis_dir)?;
    let url = format!(
        "{}?prefix=faults:&failure_policy={policy}&connect_timeout=200ms&response_timeout=500ms",
        redis.url()
    );
    let store = format!("sled://{}", dir.path().join("data").display());
    let tiers = tiers_file(dir.path());
    let op = key();
    let d = spawn(
        &[
            "--store",
            &store,
            "--limiter",
            &url,
            "--meter",
            &url,
            "--tiers",
            &tiers,
            "--maintenance-secs",
            "1",
        ],
        &[("SENTRYAGENT_BOOTSTRAP_KEY", &op)],
    )
    .await;
    let t = Tenant::create(&d, &op, "redis-fault").await;
    Some(Setup {
        _dir: dir,
        redis,
        d,
        op,
        t,
    })
}

async fn ready(base: &str) -> (u16, String) {
    let (st, _, body) = get(&format!("{base}/health/ready"), None).await;
    (st, body["status"].as_str().unwrap_or_default().to_owned())
}

async fn token_issuances(s: &Setup) -> u64 {
    let (st, _, body) = get(
        &format!("{}/billing/usage?tenant_id={}", s.d.base, s.t.id),
        Some(&s.op),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    body["token_issuances_this_month"]["used"]
        .as_u64()
        .unwrap_or_else(|| panic!("{body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_fail_open_keeps_tokens_flowing_and_usage() {
    let Some(mut s) = setup(
        "redis_down_fail_open_keeps_tokens_flowing_and_usage",
        "open",
    )
    .await
    else {
        return;
    };
    let b = s.d.base.clone();
    assert_eq!(ready(&b).await, (200, "up".to_owned()));
    let load = TokenLoad::start(&b, &s.t.client_id, &s.t.secret, 4);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let down_at = load.now();
    s.redis.down();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (st, status) = ready(&b).await;
    assert_eq!(
        (st, status.as_str()),
        (200, "degraded"),
        "readiness while failing open"
    );
    let (st, _, detailed) = get(&format!("{b}/health/detailed"), Some(&s.op)).await;
    assert_eq!(st, 200, "{detailed}");
    assert_eq!(detailed["status"], "degraded", "{detailed}");
    let redis_parts: Vec<_> = detailed["backends"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["backend"] == "redis")
        .collect();
    assert!(
        !redis_parts.is_empty() && redis_parts.iter().all(|h| h["status"] == "degraded"),
        "{detailed}"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let up_at = load.now();
    s.redis.up();
    let recovered = within(RECOVERY, || async {
        ready(&b).await == (200, "up".to_owned())
    })
    .await;
    assert!(
        recovered.is_some(),
        "readiness back to up within {RECOVERY:?}"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let samples = load.finish().await;

    let outage = between(&samples, down_at, up_at);
    assert!(
        outage.len() >= 20,
        "load during the outage: {}",
        outage.len()
    );
    let bad: Vec<_> = samples.iter().filter(|s| s.status != 200).collect();
    assert!(bad.is_empty(), "every token request answered 200: {bad:?}");
    assert!(
        samples.iter().all(|x| x.took < FAST),
        "no token request took {FAST:?} or more"
    );

    // Usage counted while Redis was down is written once it is back: the
    // meter holds every token issued (the node flushes every second and
    // at the read below the buffer is included).
    let issued = samples.len() as u64;
    let flushed = within(Duration::from_secs(10), || async {
        token_issuances(&s).await == issued
    })
    .await;
    assert!(
        flushed.is_some(),
        "usage after the outage: {} of {issued} tokens",
        token_issuances(&s).await
    );
    // And it is in Redis, not only in the node's buffer: a fresh node on
    // the same Redis (and store) reads the same figure.
    s.d.stop();
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &s.redis.port.to_string(), "--scan", "--pattern", "*"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("faults:u:"),
        "usage keys in Redis"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_fail_closed_refuses_fast_and_recovers() {
    let Some(mut s) = setup("redis_down_fail_closed_refuses_fast_and_recovers", "closed").await
    else {
        return;
    };
    let b = s.d.base.clone();
    let load = TokenLoad::start(&b, &s.t.client_id, &s.t.secret, 4);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let down_at = load.now();
    s.redis.down();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (st, status) = ready(&b).await;
    assert_eq!(
        (st, status.as_str()),
        (503, "down"),
        "readiness failing closed"
    );
    let (st, _, detailed) = get(&format!("{b}/health/detailed"), None).await;
    assert_eq!(st, 503, "{detailed}");
    assert_eq!(detailed["status"], "down", "{detailed}");
    // Endpoints without a limit keep answering.
    for path in [
        "/health",
        "/.well-known/jwks.json",
        "/.well-known/openid-configuration",
    ] {
        let (st, _, body) = get(&format!("{b}{path}"), None).await;
        assert_eq!(st, 200, "{path} while Redis is down: {body}");
    }
    // A limited management call: 503 with Retry-After, a problem.
    let (st, retry, body) = get(&format!("{b}/v1/agents"), Some(&s.t.key)).await;
    assert_eq!((st, retry), (503, true), "{body}");
    assert_eq!(body["status"], 503, "{body}");
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let up_at = load.now();
    s.redis.up();
    let recovered = within(RECOVERY, || async {
        token_status(&b, &s.t.client_id, &s.t.secret).await == 200
    })
    .await;
    assert!(recovered.is_some(), "tokens again within {RECOVERY:?}");
    let back_at = load.now();
    assert!(
        within(RECOVERY, || async {
            ready(&b).await == (200, "up".to_owned())
        })
        .await
        .is_some()
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let samples = load.finish().await;

    assert!(
        between(&samples, Duration::ZERO, down_at)
            .iter()
            .all(|x| x.status == 200),
        "before the outage"
    );
    // After the first refusal, and until Redis is back, every token
    // request is refused with 503 and Retry-After, fast.
    let outage = between(&samples, down_at + Duration::from_millis(500), up_at);
    assert!(
        outage.len() >= 20,
        "load during the outage: {}",
        outage.len()
    );
    for x in &outage {
        assert_eq!(x.status, 503, "{x:?}");
        assert!(x.retry_after, "503 without Retry-After: {x:?}");
    }
    assert!(
        samples.iter().all(|x| x.took < FAST),
        "no token request took {FAST:?} or more"
    );
    // Neither hangs nor other errors at any time: 200 or 503 only.
    assert!(
        samples.iter().all(|x| x.status == 200 || x.status == 503),
        "only 200 and 503"
    );
    let after = between(&samples, back_at, load_end(&samples));
    assert!(
        !after.is_empty() && after.iter().all(|x| x.status == 200),
        "after recovery: {after:?}"
    );
}

/// Just past the last sample.
fn load_end(samples: &[faults::Sample]) -> Duration {
    samples.iter().map(|s| s.at).max().unwrap_or_default() + Duration::from_millis(1)
}

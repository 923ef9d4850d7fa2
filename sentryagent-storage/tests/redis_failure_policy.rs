//! The rate limiter's failure policy with an unreachable Redis
//! (127.0.0.1:1, where nothing listens): open admits, closed refuses with
//! `Unavailable`; both are counted and reported by `health()`, and an `Idp`
//! keeps serving. Needs no Redis.
#![cfg(feature = "redis")]

use std::sync::Arc;
use std::time::Duration;

use sentryagent_core::HealthStatus;
use sentryagent_core::{
    Caller, ClientCredentials, Error, Idp, NewAgent, NewTenant, SystemClock, TokenRequest,
};
use sentryagent_core::{Quota, RateLimiter};
use sentryagent_core::{UsageBatch, UsageMeter};
use sentryagent_storage::redis::{FailurePolicy, RedisBackend, RedisOptions};

const DOWN: &str = "redis://127.0.0.1:1?connect_timeout=500ms&response_timeout=500ms";

async fn down(policy: FailurePolicy) -> RedisBackend {
    let options = RedisOptions::from_url(DOWN)
        .unwrap()
        .with_failure_policy(policy);
    RedisBackend::open(options)
        .await
        .expect("opening does not need Redis")
}

async fn token(idp: &Idp) -> sentryagent_core::Result<sentryagent_core::TokenResponse> {
    let op = Caller::system();
    let t = idp
        .create_tenant(
            &op,
            NewTenant {
                name: "Outage".into(),
                ..Default::default()
            },
        )
        .await?;
    let a = idp
        .register_agent(
            &op,
            &t.id,
            NewAgent {
                name: "bot".into(),
                ..Default::default()
            },
        )
        .await?;
    let req = TokenRequest {
        grant_type: "client_credentials".into(),
        client: ClientCredentials::Secret {
            client_id: a.agent.id.to_string(),
            client_secret: a.client_secret.clone().unwrap(),
        },
        scope: None,
        resources: vec![],
    };
    idp.issue_token(&req, &Default::default()).await
}

#[tokio::test]
async fn redis_rate_limiter_fails_open_when_unreachable() {
    let redis = down(FailurePolicy::Open).await;
    let limiter = redis.rate_limiter();
    let q = Quota::per_minute(10).with_burst(4);

    let d = limiter.check("k", &q, 3).await.unwrap();
    assert!(d.allowed, "admitted while Redis is down: {d:?}");
    assert_eq!((d.limit, d.remaining), (10, 1), "as a fresh key: {d:?}");
    assert!(d.retry_after.is_zero());
    let s = limiter.stats();
    assert_eq!((s.failures, s.fail_open, s.fail_closed), (1, 1, 0), "{s:?}");

    // Within the cool-down the policy answers without calling Redis.
    assert!(limiter.check("k", &q, 1).await.unwrap().allowed);
    let s = limiter.stats();
    assert_eq!((s.failures, s.fail_open), (1, 2), "{s:?}");

    // Bad input is still refused as such.
    assert!(matches!(
        limiter.check("k", &q, 5).await,
        Err(Error::Invalid { field: "cost", .. })
    ));
    assert!(matches!(
        limiter.check(&"k".repeat(300), &q, 1).await,
        Err(Error::Invalid { field: "key", .. })
    ));
    // Reset is not a decision: it fails.
    assert!(matches!(
        limiter.reset("k").await,
        Err(Error::Unavailable { .. })
    ));

    let h = limiter.health().await;
    assert_eq!(h.status, HealthStatus::Degraded, "{h:?}");
    assert_eq!(h.details["failure_policy"], "open");
    assert_eq!(h.details["failures"], 1);
    assert_eq!(h.details["fail_open"], 2);
    assert!(
        h.error.is_some() && h.details.contains_key("last_failure"),
        "{h:?}"
    );

    // After the cool-down Redis is tried again (and fails again).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(limiter.check("k", &q, 1).await.unwrap().allowed);
    assert_eq!(limiter.stats().failures, 2);

    // The server keeps serving: tokens are issued.
    let idp = Idp::builder("https://idp.example")
        .limiter(Arc::new(redis.rate_limiter()))
        .build()
        .await
        .unwrap();
    let t = token(&idp)
        .await
        .expect("a token while the limiter fails open");
    assert!(idp.verify_access_token(&t.access_token, None).is_ok());
}

#[tokio::test]
async fn redis_rate_limiter_fails_closed_when_unreachable() {
    let redis = down(FailurePolicy::Closed).await;
    let limiter = redis.rate_limiter();
    let q = Quota::per_minute(10);
    for _ in 0..2 {
        let r = limiter.check("k", &q, 1).await;
        assert!(matches!(r, Err(Error::Unavailable { .. })), "{r:?}");
    }
    let s = limiter.stats();
    assert_eq!((s.failures, s.fail_open, s.fail_closed), (1, 0, 2), "{s:?}");
    let h = limiter.health().await;
    assert_eq!(h.status, HealthStatus::Down, "{h:?}");
    assert_eq!(h.details["failure_policy"], "closed");
    assert_eq!(h.details["fail_closed"], 2);

    // Other parts on the same connection report the outage as errors.
    let meter = redis.usage_meter();
    let batch = UsageBatch {
        idempotency_key: "x".into(),
        increments: vec![],
    };
    assert!(matches!(
        meter.record(&batch).await,
        Err(Error::Unavailable { .. })
    ));
    assert_eq!(meter.health().await.status, HealthStatus::Down);
    let cache = redis.revocation_cache(Arc::new(SystemClock));
    assert!(matches!(
        cache.is_revoked("j").await,
        Err(Error::Unavailable { .. })
    ));

    // The server keeps serving: token requests get Unavailable (503), the
    // rest works.
    let idp = Idp::builder("https://idp.example")
        .limiter(Arc::new(redis.rate_limiter()))
        .build()
        .await
        .unwrap();
    let r = token(&idp).await;
    assert!(matches!(r, Err(Error::Unavailable { .. })), "{r:?}");
    assert!(!idp.jwks().keys.is_empty());
}

#[tokio::test]
async fn redis_meter_down_under_fail_open_is_degraded_and_tokens_flow() {
    let redis = down(FailurePolicy::Open).await;
    let meter = redis.usage_meter();
    let h = meter.health().await;
    assert_eq!(h.status, HealthStatus::Degraded, "{h:?}");
    assert_eq!(h.details["failure_policy"], "open");

    // The meter on the unreachable Redis (and the limiter failing open):
    // the token quota check counts on the last total read (none: 0) and
    // the node's own buffer instead of refusing.
    let idp = Idp::builder("https://idp.example")
        .limiter(Arc::new(redis.rate_limiter()))
        .meter(Arc::new(redis.usage_meter()))
        .build()
        .await
        .unwrap();
    let t = token(&idp)
        .await
        .expect("a token while the meter is unreachable");
    assert!(idp.verify_access_token(&t.access_token, None).is_ok());
    // The use is kept in the node's buffer, and the flush says it failed.
    assert!(matches!(
        idp.flush_usage().await,
        Err(Error::Unavailable { .. })
    ));
}

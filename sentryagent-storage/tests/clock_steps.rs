//! Fault suite, in process: clock steps driven by a manual clock.
//!
//! `sentryagentd` reads the system clock through [`MonotonicClock`], and
//! hands that clock to the limiters and the `Idp`: a backward step reads as
//! time standing still.
//!
//! - A backward step grants no extra rate-limit capacity, with the memory,
//!   sled and Redis limiters on the (wrapped) stepped clock. The Redis
//!   limiter by default reads the Redis server's `TIME`, which a node's
//!   clock step does not touch; here it is given the stepped clock to hold
//!   it to the same promise.
//! - A backward step does not make an expired token valid again, neither
//!   at verification nor at introspection.
//!
//! The controls show what the wrapper prevents, so the cases cannot pass
//! without it: on a bare stepped clock GCRA clamps a key that is more than
//! a burst ahead (as after a quota change), and the key's burst comes back
//! once the clock returns (at most one burst per key and step: the bound
//! for a Redis server whose own clock steps back); and the expired token
//! verifies again.

use std::sync::Arc;
use std::time::Duration;

use sentryagent_core::{
    Caller, ClientCredentials, Clock, Idp, ManualClock, MonotonicClock, NewAgent, NewTenant, Quota,
    RateLimiter, Timestamp, TokenRequest,
};

const START: Timestamp = Timestamp::from_unix_secs(1_800_000_000);

/// Uses up a burst of 5 per minute, then steps the clock back by 10
/// minutes and by 1 second: each check is still refused; the limit comes
/// back only as the clock moves forward past the refill.
async fn no_capacity_from_a_backward_step(limiter: &dyn RateLimiter, clock: &ManualClock) {
    let q = Quota::per_minute(5).with_burst(5);
    let key = "clock-step";
    for i in 0..5 {
        let d = limiter.check(key, &q, 1).await.unwrap();
        assert!(d.allowed, "{i}: {d:?}");
    }
    assert!(!limiter.check(key, &q, 1).await.unwrap().allowed);
    for back in [Duration::from_secs(600), Duration::from_secs(1)] {
        clock.set(START.minus(back));
        let d = limiter.check(key, &q, 1).await.unwrap();
        assert!(!d.allowed, "a step back of {back:?} refills nothing: {d:?}");
        assert!(
            d.retry_after >= Duration::from_secs(12),
            "the wait only grows: {d:?}"
        );
    }
    // Forward again past one emission interval (12 s): one more.
    clock.set(START.plus(Duration::from_secs(13)));
    assert!(limiter.check(key, &q, 1).await.unwrap().allowed);
    assert!(!limiter.check(key, &q, 1).await.unwrap().allowed);
}

/// The stepped clock as the server reads it.
fn wrapped(manual: &ManualClock) -> Arc<dyn Clock> {
    Arc::new(MonotonicClock::new(manual.clone()))
}

#[tokio::test]
async fn memory_limiter_backward_step_grants_nothing() {
    let clock = ManualClock::new(START);
    let l = sentryagent_core::MemoryRateLimiter::new(wrapped(&clock));
    no_capacity_from_a_backward_step(&l, &clock).await;
}

#[tokio::test]
async fn control_a_bare_stepped_limiter_refills_one_burst() {
    let clock = ManualClock::new(START);
    let l = sentryagent_core::MemoryRateLimiter::new(Arc::new(clock.clone()));
    let q = Quota::per_minute(5).with_burst(5);
    for _ in 0..5 {
        assert!(l.check("k", &q, 1).await.unwrap().allowed);
    }
    clock.set(START.minus(Duration::from_secs(600)));
    assert!(!l.check("k", &q, 1).await.unwrap().allowed);
    clock.set(START);
    let mut again = 0;
    while l.check("k", &q, 1).await.unwrap().allowed {
        again += 1;
        assert!(again <= 5, "at most one burst");
    }
    assert_eq!(again, 5, "the bare clock's step back refilled the burst");
}

#[cfg(feature = "sled")]
#[tokio::test]
async fn sled_limiter_backward_step_grants_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let b = sentryagent_storage::sled::SledBackend::open(dir.path()).unwrap();
    let l = b.rate_limiter(wrapped(&clock));
    no_capacity_from_a_backward_step(&l, &clock).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_limiter_backward_step_grants_nothing() {
    use sentryagent_storage::redis::{RedisBackend, RedisOptions};
    sentryagent_storage::testing::with_prefix(
        "redis_limiter_backward_step_grants_nothing",
        |url, prefix| async move {
            let clock = ManualClock::new(START);
            let b = RedisBackend::open(RedisOptions::new(url.as_str()).with_prefix(&prefix))
                .await
                .unwrap();
            let l = b.rate_limiter().with_clock(wrapped(&clock));
            no_capacity_from_a_backward_step(&l, &clock).await;
        },
    )
    .await;
}

/// An `Idp` on `clock`, a tenant, an agent and a token issued at `START`.
async fn token_at_start(clock: Arc<dyn Clock>) -> (Idp, ClientCredentials, String) {
    let idp = Idp::builder("https://idp.example")
        .clock(clock)
        .build()
        .await
        .unwrap();
    let op = Caller::system();
    let t = idp
        .create_tenant(
            &op,
            NewTenant {
                name: "Clock".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let a = idp
        .register_agent(
            &op,
            &t.id,
            NewAgent {
                name: "bot".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let creds = ClientCredentials::Secret {
        client_id: a.agent.id.to_string(),
        client_secret: a.client_secret.clone().unwrap(),
    };
    let req = TokenRequest {
        grant_type: "client_credentials".into(),
        client: creds.clone(),
        scope: None,
        resources: vec![],
    };
    let tok = idp.issue_token(&req, &Default::default()).await.unwrap();
    (idp, creds, tok.access_token)
}

async fn active(idp: &Idp, creds: &ClientCredentials, token: &str) -> bool {
    let verified = idp.verify_access_token(token, None).is_ok();
    let i = idp
        .introspect(creds, token, &Default::default())
        .await
        .unwrap();
    assert_eq!(verified, i.active, "verification and introspection agree");
    verified
}

#[tokio::test]
async fn expired_tokens_stay_expired_through_a_backward_step() {
    let manual = ManualClock::new(START);
    let (idp, creds, token) = token_at_start(wrapped(&manual)).await;
    assert!(active(&idp, &creds, &token).await);
    // Past the 15-minute lifetime (and any leeway): expired.
    manual.set(START.plus(Duration::from_secs(3600)));
    assert!(!active(&idp, &creds, &token).await);
    // The system clock steps back to the token's issuance: still expired.
    manual.set(START.plus(Duration::from_secs(60)));
    assert!(
        !active(&idp, &creds, &token).await,
        "a backward step revived an expired token"
    );
}

#[tokio::test]
async fn control_a_bare_stepped_clock_revives_the_token() {
    let manual = ManualClock::new(START);
    let (idp, _, token) = token_at_start(Arc::new(manual.clone())).await;
    manual.set(START.plus(Duration::from_secs(3600)));
    assert!(idp.verify_access_token(&token, None).is_err());
    manual.set(START.plus(Duration::from_secs(60)));
    assert!(idp.verify_access_token(&token, None).is_ok());
}

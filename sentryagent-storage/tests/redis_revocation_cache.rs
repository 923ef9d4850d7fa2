//! The revocation cache: a token revoked through one node is refused by
//! every node at once, until it would have expired anyway.
#![cfg(feature = "redis")]

use sentryagent_storage::testing as services;

use std::sync::Arc;
use std::time::Duration;

use sentryagent_core::{Clock, Error, SystemClock};
use sentryagent_storage::redis::{RedisBackend, RedisOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_revocation_is_seen_by_every_node_until_expiry() {
    services::with_prefix(
        "redis_revocation_is_seen_by_every_node_until_expiry",
        |url, prefix| async move {
            let clock: Arc<dyn Clock> = Arc::new(SystemClock);
            let node = |url: String, prefix: String| async move {
                RedisBackend::open(RedisOptions::new(url).with_prefix(prefix))
                    .await
                    .unwrap()
            };
            let a = node(url.clone(), prefix.clone())
                .await
                .revocation_cache(clock.clone());
            let b = node(url.clone(), prefix.clone())
                .await
                .revocation_cache(clock.clone());

            let until = clock.now().plus(Duration::from_millis(1500));
            assert!(!b.is_revoked("jti-1").await.unwrap());
            assert!(a.revoke("jti-1", until).await.unwrap(), "first revocation");
            assert!(!a.revoke("jti-1", until).await.unwrap(), "already revoked");
            assert!(
                b.is_revoked("jti-1").await.unwrap(),
                "the other node sees it at once"
            );
            assert!(!b.is_revoked("jti-2").await.unwrap());

            // An expired token needs no entry.
            let past = clock.now().minus(Duration::from_secs(1));
            assert!(!a.revoke("jti-old", past).await.unwrap());
            assert!(!b.is_revoked("jti-old").await.unwrap());

            // Bad ids are refused.
            for bad in [String::new(), "j".repeat(513)] {
                assert!(matches!(
                    a.revoke(&bad, until).await,
                    Err(Error::Invalid { .. })
                ));
                assert!(matches!(
                    b.is_revoked(&bad).await,
                    Err(Error::Invalid { .. })
                ));
            }

            // The entry ends with the token.
            tokio::time::sleep(Duration::from_millis(1700)).await;
            assert!(
                !b.is_revoked("jti-1").await.unwrap(),
                "expired with the token"
            );
            assert_eq!(a.health().await.status, sentryagent_core::HealthStatus::Up);
        },
    )
    .await;
}

/// Through the `Idp`: a revocation lands in the shared cache, and a node
/// whose own store never heard of it still refuses the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_revocation_reaches_idps_that_do_not_share_a_store() {
    services::with_prefix(
        "redis_revocation_reaches_idps_that_do_not_share_a_store",
        |url, prefix| async move {
            use sentryagent_core::{
                Caller, ClientCredentials, Idp, NewAgent, NewTenant, TokenRequest,
            };
            let clock: Arc<dyn Clock> = Arc::new(SystemClock);
            let redis = RedisBackend::open(RedisOptions::new(url).with_prefix(prefix))
                .await
                .unwrap();
            let cache = Arc::new(redis.revocation_cache(clock.clone()));
            let a = Idp::builder("https://idp.example")
                .revocations(cache.clone())
                .build()
                .await
                .unwrap();
            let b = Idp::builder("https://idp.example")
                .revocations(cache.clone())
                .build()
                .await
                .unwrap();
            let sys = Caller::system();
            let t = a
                .create_tenant(
                    &sys,
                    NewTenant {
                        name: "Acme".into(),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            let bot = a
                .register_agent(
                    &sys,
                    &t.id,
                    NewAgent {
                        name: "bot".into(),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            let creds = ClientCredentials::Secret {
                client_id: bot.agent.id.to_string(),
                client_secret: bot.client_secret.clone().unwrap(),
            };
            let token = a
                .issue_token(
                    &TokenRequest {
                        grant_type: "client_credentials".into(),
                        client: creds.clone(),
                        scope: None,
                        resources: vec![],
                    },
                    &Default::default(),
                )
                .await
                .unwrap();
            let jti = a
                .verify_access_token(&token.access_token, None)
                .unwrap()
                .jti;
            assert!(!b.is_revoked(&jti).await.unwrap());
            a.revoke(&creds, &token.access_token, &Default::default())
                .await
                .unwrap();
            assert!(
                cache.is_revoked(&jti).await.unwrap(),
                "written to the cache"
            );
            assert!(
                b.is_revoked(&jti).await.unwrap(),
                "seen by a node with its own store"
            );
        },
    )
    .await;
}

//! The Postgres client cache across nodes: two or more stores ("nodes") on
//! one schema, each with its own cache. A rotation, revocation, pause or
//! tenant suspension made through one node is refused by another within a
//! second, by notification (the other node's revalidation interval is set
//! to a minute, so only the notification can do it); a change whose
//! notification is lost (made with triggers off, after the listener's
//! connection was killed) is refused within the revalidation interval; the
//! cache holds at most its capacity.
#![cfg(feature = "postgres")]

use sentryagent_storage::testing as services;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sentryagent_core::conformance::{sample_agent, sample_secret, sample_tenant};
use sentryagent_core::{
    AgentStore, Backend, Caller, ClientCredentials, Error, Idp, LifecycleState, NewAgent,
    NewTenant, TenantStatus, TenantStore, TenantUpdate, TierLimits, TierTable, TokenRequest,
};
use sentryagent_storage::postgres::{PostgresOptions, PostgresStore};
use sqlx::Connection;

const ISSUER: &str = "https://idp.example";
/// How soon another node must refuse a changed client.
const WITHIN: Duration = Duration::from_secs(1);

/// Tiers whose limits the polling below never reaches.
fn tiers() -> TierTable {
    let limits = TierLimits {
        max_agents: Some(1000),
        api_calls_per_day: None,
        token_issuances_per_month: None,
        requests_per_minute: 1_000_000,
        client_requests_per_minute: None,
    };
    TierTable {
        free: limits,
        ..TierTable::default()
    }
}

async fn store(url: &str, params: &str) -> Arc<PostgresStore> {
    let options = PostgresOptions::from_url(&format!("{url}{params}")).unwrap();
    Arc::new(PostgresStore::connect(&options).await.unwrap())
}

async fn node(store: &Arc<PostgresStore>) -> Idp {
    Idp::builder(ISSUER)
        .store(store.clone())
        .configure(|c| c.tiers = tiers())
        .build()
        .await
        .unwrap()
}

fn request(id: &str, secret: &str) -> TokenRequest {
    TokenRequest {
        grant_type: "client_credentials".into(),
        client: ClientCredentials::Secret {
            client_id: id.to_owned(),
            client_secret: secret.to_owned(),
        },
        scope: None,
        resources: vec![],
    }
}

/// Issues tokens on `idp` until one is refused, for at most `bound`;
/// returns how long it took.
async fn refused_within(idp: &Idp, req: &TokenRequest, bound: Duration, what: &str) -> Duration {
    let start = Instant::now();
    loop {
        match idp.issue_token(req, &Default::default()).await {
            Ok(_) => {}
            Err(Error::RateLimited { .. }) => panic!("{what}: rate limited while polling"),
            Err(Error::Unavailable { message, .. }) => panic!("{what}: {message}"),
            Err(_) => {
                let took = start.elapsed();
                eprintln!("client cache: {what}: refused after {took:?}");
                return took;
            }
        }
        assert!(
            start.elapsed() < bound,
            "{what}: still accepted {bound:?} after the change"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn accepted(idp: &Idp, req: &TokenRequest, what: &str) {
    if let Err(e) = idp.issue_token(req, &Default::default()).await {
        panic!("{what}: refused: {e:?}");
    }
}

fn detail(h: &sentryagent_core::BackendHealth, key: &str) -> u64 {
    h.details
        .get(key)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("no {key} in {h:?}"))
}

/// A registered client: (request with its first secret, tenant id, agent id).
async fn client(
    idp: &Idp,
    name: &str,
) -> (
    TokenRequest,
    sentryagent_core::TenantId,
    sentryagent_core::AgentId,
) {
    let op = Caller::system();
    let t = idp
        .create_tenant(
            &op,
            NewTenant {
                name: format!("Tenant {name}"),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let reg = idp
        .register_agent(
            &op,
            &t.id,
            NewAgent {
                name: name.into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let req = request(reg.agent.id.as_str(), reg.client_secret.as_deref().unwrap());
    (req, t.id, reg.agent.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_on_one_node_are_refused_on_another_within_a_second() {
    services::with_schema(
        "changes_on_one_node_are_refused_on_another_within_a_second",
        |url, _| async move {
            let store_a = store(&url, "").await;
            // B would keep a record a minute without notifications.
            let store_b = store(&url, "&client_cache_revalidate_ms=60000").await;
            let a = node(&store_a).await;
            let b = node(&store_b).await;
            let op = Caller::system();

            // Rotation with no grace: the old secret is refused on B, the
            // new one accepted at once (B had cached the old record).
            let (req, _, id) = client(&a, "rotated").await;
            accepted(&b, &req, "before rotation").await;
            accepted(&b, &req, "cached").await;
            let (new_secret, _) = a
                .rotate_client_secret(&op, &id, Some(Duration::ZERO))
                .await
                .unwrap();
            refused_within(&b, &req, WITHIN, "old secret after rotation").await;
            let new_req = request(id.as_str(), &new_secret);
            accepted(&b, &new_req, "new secret after rotation").await;

            // Revocation of every secret.
            accepted(&b, &new_req, "before revocation").await;
            a.revoke_client_secrets(&op, &id).await.unwrap();
            refused_within(&b, &new_req, WITHIN, "revoked secret").await;

            // Pause of the agent.
            let (req, _, id) = client(&a, "paused").await;
            accepted(&b, &req, "before pause").await;
            a.transition_agent(&op, &id, LifecycleState::Paused)
                .await
                .unwrap();
            refused_within(&b, &req, WITHIN, "paused agent").await;

            // Suspension of the tenant.
            let (req, tenant, _) = client(&a, "suspended").await;
            accepted(&b, &req, "before suspension").await;
            a.update_tenant(
                &op,
                &tenant,
                TenantUpdate {
                    status: Some(TenantStatus::Suspended),
                    reason: Some("unpaid".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            refused_within(&b, &req, WITHIN, "suspended tenant").await;

            // B served from its cache and learned by notification.
            let h = store_b.health().await;
            assert!(detail(&h, "client_cache_hits") > 0, "{h:?}");
            assert!(detail(&h, "client_cache_invalidations") >= 4, "{h:?}");
            assert_eq!(detail(&h, "client_cache_revalidations"), 0, "{h:?}");

            // A's own changes are seen by A at once (no waiting for its
            // notification).
            let (req, _, id) = client(&a, "local").await;
            accepted(&a, &req, "before local revocation").await;
            a.revoke_client_secrets(&op, &id).await.unwrap();
            assert!(matches!(
                a.issue_token(&req, &Default::default()).await,
                Err(Error::Unauthenticated)
            ));
            store_a.close().await;
            store_b.close().await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_notification_is_caught_by_the_version_check() {
    services::with_schema(
        "a_lost_notification_is_caught_by_the_version_check",
        |url, schema| async move {
            let base = services::postgres_url();
            let store_a = store(&url, "").await;
            // C revalidates every 250 ms (the default); D only every minute.
            let store_c = store(&url, "&client_cache_revalidate_ms=250").await;
            let store_d = store(&url, "&client_cache_revalidate_ms=60000").await;
            let a = node(&store_a).await;
            let c = node(&store_c).await;
            let d = node(&store_d).await;
            let (req, _, id) = client(&a, "silent").await;

            // Kill every listener of this schema; each node reconnects.
            let mut admin = sqlx::postgres::PgConnection::connect(&base).await.unwrap();
            let killed: Vec<bool> = sqlx::query_scalar(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = $1",
            )
            .bind(format!("sentryagent-listen:{schema}"))
            .fetch_all(&mut admin)
            .await
            .unwrap();
            assert_eq!(killed, vec![true; 3], "one listener per node");
            let start = Instant::now();
            for s in [&store_a, &store_c, &store_d] {
                while detail(&s.health().await, "client_cache_listener_connects") < 2 {
                    assert!(
                        start.elapsed() < Duration::from_secs(10),
                        "the listener reconnects"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }

            // Cached on C and D, then revoked with triggers off: no
            // notification is sent.
            accepted(&c, &req, "before the silent revocation").await;
            accepted(&d, &req, "before the silent revocation").await;
            sqlx::raw_sql("SET session_replication_role = replica")
                .execute(&mut admin)
                .await
                .unwrap();
            let sql = format!(
                "UPDATE \"{schema}\".client_secrets SET revoked = true, \
                 doc = jsonb_set(doc, '{{revoked_at}}', \
                     to_jsonb((extract(epoch FROM clock_timestamp()) * 1000000)::bigint)) \
                 WHERE agent_id = $1"
            );
            let changed = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id.as_str())
                .execute(&mut admin)
                .await
                .unwrap();
            assert_eq!(changed.rows_affected(), 1);
            let _ = admin.close().await;

            // C refuses within its revalidation interval (plus the time of
            // one check).
            refused_within(&c, &req, WITHIN, "silently revoked secret").await;
            assert!(detail(&store_c.health().await, "client_cache_revalidations") > 0);
            // D, told nothing and checking only every minute, still serves
            // its copy: the version check is what bounded C.
            accepted(&d, &req, "no notification, no revalidation yet").await;

            // Notifications flow again on the new listener connections.
            let op = Caller::system();
            let (req, _, id) = client(&a, "after reconnect").await;
            accepted(&d, &req, "after reconnect").await;
            a.transition_agent(&op, &id, LifecycleState::Paused)
                .await
                .unwrap();
            refused_within(&d, &req, WITHIN, "paused after reconnect").await;
            for s in [&store_a, &store_c, &store_d] {
                s.close().await;
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_holds_at_most_its_capacity() {
    services::with_schema(
        "the_cache_holds_at_most_its_capacity",
        |url, _| async move {
            let s = store(&url, "&client_cache_capacity=8").await;
            let t = sample_tenant("Many");
            s.create_tenant(&t).await.unwrap();
            let mut ids = Vec::new();
            for i in 0..20 {
                let agent = sample_agent(&t.id, &format!("a{i}"));
                s.create_agent(&agent, Some(&sample_secret(&agent.id, 1)), None)
                    .await
                    .unwrap();
                ids.push(agent.id);
            }
            // Each secret's insert sends a notification: let them all
            // arrive before caching, so that none drops a record later.
            let start = Instant::now();
            while detail(&s.health().await, "client_cache_invalidations") < 20 {
                assert!(start.elapsed() < Duration::from_secs(5), "notified");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            for id in &ids {
                assert_eq!(&s.get_client(id).await.unwrap().agent.id, id);
                let h = s.health().await;
                assert!(detail(&h, "client_cache_entries") <= 8, "{h:?}");
            }
            let h = s.health().await;
            assert_eq!(detail(&h, "client_cache_entries"), 8, "{h:?}");
            assert_eq!(detail(&h, "client_cache_capacity"), 8, "{h:?}");
            // The last one read is served from the cache.
            let hits = detail(&h, "client_cache_hits");
            s.get_client(ids.last().unwrap()).await.unwrap();
            assert_eq!(detail(&s.health().await, "client_cache_hits"), hits + 1);
            // Unknown clients are not kept.
            let unknown = sample_agent(&t.id, "never stored").id;
            assert!(matches!(
                s.get_client(&unknown).await,
                Err(Error::NotFound { .. })
            ));
            assert_eq!(detail(&s.health().await, "client_cache_entries"), 8);
            s.close().await;
        },
    )
    .await;
}

/// Requests that find the same record due for its version check wait for
/// one check rather than each making one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_share_one_revalidation() {
    services::with_schema(
        "concurrent_requests_share_one_revalidation",
        |url, _| async move {
            let s = store(&url, "&client_cache_revalidate_ms=1000").await;
            let t = sample_tenant("Busy");
            s.create_tenant(&t).await.unwrap();
            let agent = sample_agent(&t.id, "busy");
            s.create_agent(&agent, Some(&sample_secret(&agent.id, 1)), None)
                .await
                .unwrap();
            // The secret's insert sends a notification: let it arrive
            // before caching, so that it does not drop the record later.
            let start = Instant::now();
            while detail(&s.health().await, "client_cache_invalidations") == 0 {
                assert!(start.elapsed() < Duration::from_secs(5), "notified");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            s.get_client(&agent.id).await.unwrap();
            let before = detail(&s.health().await, "client_cache_revalidations");
            assert_eq!(before, 0);
            // Let the record come due for its check.
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let mut tasks = Vec::new();
            for _ in 0..32 {
                let (s, id) = (s.clone(), agent.id.clone());
                tasks.push(tokio::spawn(async move { s.get_client(&id).await }));
            }
            for task in tasks {
                assert_eq!(task.await.unwrap().unwrap().agent.id, agent.id);
            }
            let h = s.health().await;
            assert_eq!(detail(&h, "client_cache_revalidations"), 1, "{h:?}");
            s.close().await;
        },
    )
    .await;
}

/// The store suite passes with the cache off too (it runs with the cache on
/// in `postgres_conformance_store`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_conformance_store_without_client_cache() {
    services::with_schema(
        "postgres_conformance_store_without_client_cache",
        |url, _| async move {
            let s = store(&url, "&client_cache=off").await;
            let h = s.health().await;
            assert_eq!(h.details.get("client_cache_live"), Some(&false.into()));
            sentryagent_core::conformance::store::run_all(s.clone()).await;
            s.close().await;
        },
    )
    .await;
}

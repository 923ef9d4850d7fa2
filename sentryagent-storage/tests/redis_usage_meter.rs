//! Redis usage meter specifics: key expiry per bucket, per-tenant parts of
//! a batch, the hourly range bound.
#![cfg(feature = "redis")]

use sentryagent_storage::testing as services;

use std::time::Duration;

use sentryagent_core::conformance::kit::EPOCH;
use sentryagent_core::{AgentId, Error, TenantId, Timestamp};
use sentryagent_core::{
    Bucket, UsageBatch, UsageIncrement, UsageKind, UsageMeter, usage::hour_start,
};
use sentryagent_storage::redis::{RedisBackend, RedisOptions, UsageRetention};

async fn ttl(url: &str, key: &str) -> i64 {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("TTL")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

fn inc(tenant: &TenantId, agent: Option<&AgentId>, at: Timestamp, count: u64) -> UsageIncrement {
    UsageIncrement {
        tenant_id: tenant.clone(),
        agent_id: agent.cloned(),
        kind: UsageKind::TokenIssued,
        at,
        count,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_usage_keys_expire_per_bucket() {
    services::with_prefix(
        "redis_usage_keys_expire_per_bucket",
        |url, prefix| async move {
            let redis = RedisBackend::open(RedisOptions::new(url.as_str()).with_prefix(&prefix))
                .await
                .unwrap();
            let meter = redis.usage_meter();
            let t = TenantId::generate();
            let agent = AgentId::generate();
            let at = EPOCH;
            let batch = UsageBatch {
                idempotency_key: "ttl".into(),
                increments: vec![inc(&t, Some(&agent), at, 2)],
            };
            assert!(meter.record(&batch).await.unwrap());
            let r = UsageRetention::default();
            let tag = format!("{{{prefix}u:{t}}}");
            let expect = [
                (
                    format!("{tag}:c:token_issued:{}", Bucket::hour_of(at).key()),
                    r.hours,
                ),
                (
                    format!("{tag}:c:token_issued:{}", Bucket::day_of(at).key()),
                    r.days,
                ),
                (
                    format!("{tag}:c:token_issued:{}", Bucket::month_of(at).key()),
                    r.months,
                ),
                (format!("{tag}:a:token_issued:{}", at.utc_month()), r.months),
                (format!("{tag}:s:{}", at.utc_month()), r.months),
                (format!("{tag}:b:ttl"), r.batch_keys),
            ];
            for (key, want) in expect {
                let got = ttl(&url, &key).await;
                let want = i64::try_from(want.as_secs()).unwrap();
                assert!(
                    (want - 5..=want).contains(&got),
                    "{key}: ttl {got}, want about {want}"
                );
            }
            // Hour buckets are named by their start.
            let h = hour_start(at);
            assert_eq!(
                meter
                    .get(&t, UsageKind::TokenIssued, &Bucket::Hour(h))
                    .await
                    .unwrap(),
                2
            );
            let off = Bucket::Hour(h.plus(Duration::from_secs(1)));
            assert_eq!(
                meter.get(&t, UsageKind::TokenIssued, &off).await.unwrap(),
                0
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_usage_batch_parts_apply_once_each() {
    services::with_prefix(
        "redis_usage_batch_parts_apply_once_each",
        |url, prefix| async move {
            let redis = RedisBackend::open(RedisOptions::new(url.as_str()).with_prefix(&prefix))
                .await
                .unwrap();
            let meter = redis.usage_meter();
            let (a, b) = (TenantId::generate(), TenantId::generate());
            let at = EPOCH;
            let batch = UsageBatch {
                idempotency_key: "half".into(),
                increments: vec![
                    inc(&a, None, at, 5),
                    inc(&b, None, at, 7),
                    inc(&a, None, at, 1),
                ],
            };
            // As if an earlier delivery had applied tenant a's part and then
            // failed: a's idempotency key is there.
            let client = redis::Client::open(url.as_str()).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let _: () = redis::cmd("SET")
                .arg(format!("{{{prefix}u:{a}}}:b:half"))
                .arg("1")
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(meter.record(&batch).await.unwrap(), "b's part is applied");
            assert!(!meter.record(&batch).await.unwrap(), "then nothing is left");
            let month = Bucket::month_of(at);
            assert_eq!(
                meter.get(&a, UsageKind::TokenIssued, &month).await.unwrap(),
                0
            );
            assert_eq!(
                meter.get(&b, UsageKind::TokenIssued, &month).await.unwrap(),
                7
            );

            // An empty batch is recorded once too.
            let empty = UsageBatch {
                idempotency_key: "empty".into(),
                increments: vec![],
            };
            assert!(meter.record(&empty).await.unwrap());
            assert!(!meter.record(&empty).await.unwrap());

            // Counts beyond what Redis holds are refused before anything is sent.
            let huge = UsageBatch {
                idempotency_key: "huge".into(),
                increments: vec![inc(&a, None, at, u64::MAX)],
            };
            assert!(matches!(
                meter.record(&huge).await,
                Err(Error::Invalid { .. })
            ));
            assert!(
                meter
                    .record(&UsageBatch {
                        increments: vec![inc(&a, None, at, 1)],
                        ..huge
                    })
                    .await
                    .unwrap()
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_usage_hourly_range_is_bounded() {
    services::with_prefix(
        "redis_usage_hourly_range_is_bounded",
        |url, prefix| async move {
            let redis = RedisBackend::open(RedisOptions::new(url.as_str()).with_prefix(&prefix))
                .await
                .unwrap();
            let meter = redis.usage_meter();
            let t = TenantId::generate();
            let at = EPOCH;
            let batch = UsageBatch {
                idempotency_key: "h".into(),
                increments: vec![inc(&t, None, at, 4)],
            };
            meter.record(&batch).await.unwrap();
            let year = Duration::from_secs(366 * 86_400);
            let got = meter
                .hourly(
                    &t,
                    UsageKind::TokenIssued,
                    at.minus(year),
                    at.plus(Duration::from_secs(1)),
                )
                .await
                .unwrap();
            assert_eq!(got, vec![(hour_start(at), 4)], "a year of hours");
            // An unaligned `from` excludes the hour it falls in, like the core.
            let got = meter
                .hourly(
                    &t,
                    UsageKind::TokenIssued,
                    hour_start(at).plus(Duration::from_secs(1)),
                    at.plus(year),
                )
                .await
                .unwrap();
            assert!(got.is_empty(), "{got:?}");
            let r = meter
                .hourly(&t, UsageKind::TokenIssued, Timestamp::EPOCH, at)
                .await;
            assert!(matches!(r, Err(Error::Invalid { .. })), "{r:?}");
        },
    )
    .await;
}

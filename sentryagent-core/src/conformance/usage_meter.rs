//! The [`UsageMeter`] conformance suite.

use std::sync::Arc;

use crate::usage::{Bucket, UsageBatch, UsageIncrement, UsageKind, UsageMeter, hour_start};
use crate::{AgentId, TenantId, Timestamp};

use super::unique;

fn t(secs: i64) -> Timestamp {
    // 2025-11-21T04:40:00Z, a Friday.
    Timestamp::from_unix_secs(super::kit::EPOCH.unix_secs() + secs)
}

fn inc(
    tenant: &TenantId,
    agent: Option<&AgentId>,
    kind: UsageKind,
    at: Timestamp,
    count: u64,
) -> UsageIncrement {
    UsageIncrement {
        tenant_id: tenant.clone(),
        agent_id: agent.cloned(),
        kind,
        at,
        count,
    }
}

fn batch(increments: Vec<UsageIncrement>) -> UsageBatch {
    UsageBatch {
        idempotency_key: format!("batch-{}", unique()),
        increments,
    }
}

macro_rules! check {
    ($m:expr, $cond:expr, $($msg:tt)+) => {
        assert!($cond, "[{}] {}", $m.name(), format!($($msg)+))
    };
}

/// Runs every test of the suite.
pub async fn run_all(meter: Arc<dyn UsageMeter>) {
    buckets(meter.as_ref()).await;
    idempotency(meter.as_ref()).await;
    agents(meter.as_ref()).await;
    hourly_series(meter.as_ref()).await;
    race_same_batch(meter.clone()).await;
}

/// Counts land in the hour, day and month buckets of their kind and tenant.
pub async fn buckets(m: &dyn UsageMeter) {
    let a = TenantId::generate();
    let b = TenantId::generate();
    let day2 = t(86_400);
    let next_month = t(40 * 86_400);
    let applied = m
        .record(&batch(vec![
            inc(&a, None, UsageKind::ApiCall, t(0), 3),
            inc(&a, None, UsageKind::ApiCall, t(10), 2),
            inc(&a, None, UsageKind::ApiCall, day2, 7),
            inc(&a, None, UsageKind::TokenIssued, t(0), 11),
            inc(&a, None, UsageKind::ApiCall, next_month, 1),
            inc(&b, None, UsageKind::ApiCall, t(0), 100),
        ]))
        .await
        .unwrap();
    check!(m, applied, "a new batch is applied");
    let get = |tenant: &TenantId, kind, bucket: Bucket| {
        let tenant = tenant.clone();
        async move { m.get(&tenant, kind, &bucket).await.unwrap() }
    };
    check!(
        m,
        get(&a, UsageKind::ApiCall, Bucket::day_of(t(0))).await == 5,
        "day bucket"
    );
    check!(
        m,
        get(&a, UsageKind::ApiCall, Bucket::day_of(day2)).await == 7,
        "next day bucket"
    );
    check!(
        m,
        get(&a, UsageKind::ApiCall, Bucket::month_of(t(0))).await == 12,
        "month bucket"
    );
    check!(
        m,
        get(&a, UsageKind::ApiCall, Bucket::month_of(next_month)).await == 1,
        "next month bucket"
    );
    check!(
        m,
        get(&a, UsageKind::ApiCall, Bucket::hour_of(t(0))).await == 5,
        "hour bucket"
    );
    check!(
        m,
        get(&a, UsageKind::TokenIssued, Bucket::month_of(t(0))).await == 11,
        "kinds are separate"
    );
    check!(
        m,
        get(&b, UsageKind::ApiCall, Bucket::day_of(t(0))).await == 100,
        "tenants are separate"
    );
    check!(
        m,
        get(
            &TenantId::generate(),
            UsageKind::ApiCall,
            Bucket::day_of(t(0))
        )
        .await
            == 0,
        "unknown tenant counts zero"
    );
}

/// A batch applied twice counts once.
pub async fn idempotency(m: &dyn UsageMeter) {
    let a = TenantId::generate();
    let b = batch(vec![inc(&a, None, UsageKind::TokenIssued, t(0), 4)]);
    check!(m, m.record(&b).await.unwrap(), "first apply");
    check!(m, !m.record(&b).await.unwrap(), "second apply is refused");
    let n = m
        .get(&a, UsageKind::TokenIssued, &Bucket::month_of(t(0)))
        .await
        .unwrap();
    check!(m, n == 4, "counted once, got {n}");
}

/// Per-agent monthly counts and the exact set of active agents.
pub async fn agents(m: &dyn UsageMeter) {
    let ten = TenantId::generate();
    let (x, y, z) = (
        AgentId::generate(),
        AgentId::generate(),
        AgentId::generate(),
    );
    m.record(&batch(vec![
        inc(&ten, Some(&x), UsageKind::TokenIssued, t(0), 5),
        inc(&ten, Some(&y), UsageKind::TokenIssued, t(100), 2),
        inc(&ten, Some(&x), UsageKind::TokenIssued, t(3600), 1),
        inc(&ten, Some(&z), UsageKind::TokenIssued, t(40 * 86_400), 9),
    ]))
    .await
    .unwrap();
    let month = t(0).utc_month();
    let table = m
        .per_agent(&ten, UsageKind::TokenIssued, &month)
        .await
        .unwrap();
    check!(
        m,
        table.len() == 2 && table[&x] == 6 && table[&y] == 2,
        "per-agent month table: {table:?}"
    );
    check!(
        m,
        m.active_agents(&ten, &month).await.unwrap() == 2,
        "two active agents this month"
    );
    check!(
        m,
        m.active_agents(&ten, &t(40 * 86_400).utc_month())
            .await
            .unwrap()
            == 1,
        "one next month"
    );
    check!(
        m,
        m.get(&ten, UsageKind::TokenIssued, &Bucket::month_of(t(0)))
            .await
            .unwrap()
            == 8,
        "tenant total includes agents"
    );
}

/// Hourly series: non-zero hours in range, oldest first.
pub async fn hourly_series(m: &dyn UsageMeter) {
    let ten = TenantId::generate();
    m.record(&batch(vec![
        inc(&ten, None, UsageKind::TokenIssued, t(0), 1),
        inc(&ten, None, UsageKind::TokenIssued, t(60), 1),
        inc(&ten, None, UsageKind::TokenIssued, t(2 * 3600), 4),
        inc(&ten, None, UsageKind::TokenIssued, t(30 * 3600), 8),
        inc(&ten, None, UsageKind::ApiCall, t(0), 99),
    ]))
    .await
    .unwrap();
    let h0 = hour_start(t(0));
    let series = m
        .hourly(&ten, UsageKind::TokenIssued, h0, t(24 * 3600))
        .await
        .unwrap();
    let want = vec![(h0, 2), (hour_start(t(2 * 3600)), 4)];
    check!(m, series == want, "hourly series {series:?}");
    let empty = m
        .hourly(&ten, UsageKind::TokenIssued, t(10), t(5))
        .await
        .unwrap();
    check!(m, empty.is_empty(), "an empty range");
}

/// Concurrent deliveries of one batch count once.
pub async fn race_same_batch(m: Arc<dyn UsageMeter>) {
    let ten = TenantId::generate();
    let b = batch(vec![inc(&ten, None, UsageKind::ApiCall, t(0), 1)]);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let m = m.clone();
        let b = b.clone();
        tasks.push(tokio::spawn(async move { m.record(&b).await }));
    }
    let mut applied = 0;
    for task in tasks {
        if task.await.unwrap().unwrap() {
            applied += 1;
        }
    }
    check!(
        m,
        applied == 1,
        "one of 16 concurrent deliveries applies, got {applied}"
    );
    let n = m
        .get(&ten, UsageKind::ApiCall, &Bucket::day_of(t(0)))
        .await
        .unwrap();
    check!(m, n == 1, "counted once, got {n}");
}

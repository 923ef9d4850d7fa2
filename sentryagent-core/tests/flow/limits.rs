//! Limits: issuance refusals, lifecycle, rate limits per tenant and per
//! client, tier quotas, usage flushes off the request path.

use super::*;

#[tokio::test]
async fn issuance_refusals_are_distinct() {
    let c = clock();
    let Some(idp) = idp_with(&c, |_| {}).await else {
        return;
    };
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "bot").await;
    let sys = Caller::system();

    let r = issue(&idp, &secret_request(&a, Some("read admin"))).await;
    assert!(matches!(r, Err(Error::InvalidScope { .. })), "{r:?}");
    let mut req = secret_request(&a, None);
    req.resources = vec!["https://evil.example".into()];
    assert!(matches!(
        issue(&idp, &req).await,
        Err(Error::InvalidTarget { .. })
    ));
    req.resources = vec!["https://api.example".into()];
    let tok = issue(&idp, &req).await.unwrap();
    assert!(
        idp.verify_access_token(&tok, Some("https://api.example"))
            .is_ok()
    );
    assert!(
        idp.verify_access_token(&tok, Some(ISSUER)).is_err(),
        "audience is what was asked"
    );
    req.grant_type = "password".into();
    assert!(matches!(
        issue(&idp, &req).await,
        Err(Error::UnsupportedGrantType)
    ));

    idp.transition_agent(&sys, &a.agent.id, LifecycleState::Paused)
        .await
        .unwrap();
    let r = issue(&idp, &secret_request(&a, None)).await;
    assert!(
        matches!(
            r,
            Err(Error::AgentNotActive {
                state: LifecycleState::Paused
            })
        ),
        "{r:?}"
    );
    idp.transition_agent(&sys, &a.agent.id, LifecycleState::Listed)
        .await
        .unwrap();
    issue(&idp, &secret_request(&a, None)).await.unwrap();

    idp.set_tenant_status(&sys, &t.id, TenantStatus::Suspended)
        .await
        .unwrap();
    assert!(matches!(
        issue(&idp, &secret_request(&a, None)).await,
        Err(Error::TenantSuspended)
    ));
    idp.set_tenant_status(&sys, &t.id, TenantStatus::Active)
        .await
        .unwrap();

    let r = idp
        .transition_agent(&sys, &a.agent.id, LifecycleState::Draft)
        .await;
    assert!(
        matches!(r, Err(Error::Conflict { .. })),
        "listed -> draft is illegal: {r:?}"
    );
    idp.transition_agent(&sys, &a.agent.id, LifecycleState::Retired)
        .await
        .unwrap();
    let r = idp
        .transition_agent(&sys, &a.agent.id, LifecycleState::Active)
        .await;
    assert!(
        matches!(r, Err(Error::Conflict { .. })),
        "retired is final: {r:?}"
    );
}

#[tokio::test]
async fn draft_agents_get_no_tokens() {
    let c = clock();
    let Some(idp) = idp_with(&c, |_| {}).await else {
        return;
    };
    let t = tenant(&idp, Tier::Pro).await;
    let a = register(
        &idp,
        &t,
        NewAgent {
            name: "d".into(),
            state: Some(LifecycleState::Draft),
            ..Default::default()
        },
    )
    .await;
    assert!(matches!(
        issue(&idp, &secret_request(&a, None)).await,
        Err(Error::AgentNotActive { .. })
    ));
    let r = idp
        .register_agent(
            &Caller::system(),
            &t.id,
            NewAgent {
                name: "l".into(),
                state: Some(LifecycleState::Listed),
                ..Default::default()
            },
        )
        .await;
    assert!(
        matches!(r, Err(Error::Invalid { .. })),
        "registration starts as draft or active"
    );
}

#[tokio::test]
async fn the_rate_limit_refuses_with_a_retry_time() {
    let c = clock();
    let Some(idp) = idp_with(&c, |_| {}).await else {
        return;
    };
    let t = tenant(&idp, Tier::Free).await;
    let a = agent(&idp, &t, "bot").await;
    let req = secret_request(&a, None);
    for i in 0..60 {
        issue(&idp, &req)
            .await
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
    }
    match issue(&idp, &req).await {
        Err(Error::RateLimited { retry_after, limit }) => {
            assert_eq!(limit, 60);
            assert_eq!(retry_after, Duration::from_secs(1));
        }
        other => panic!("61st request in a minute on free: {other:?}"),
    }
    c.advance(Duration::from_secs(1));
    issue(&idp, &req).await.unwrap();
}

#[tokio::test]
async fn tier_quotas_hold_and_say_which_limit() {
    let c = clock();
    let mut tiers = TierTable::default();
    tiers.free.token_issuances_per_month = Some(5);
    tiers.free.api_calls_per_day = Some(3);
    let Some(idp) = idp_with(&c, move |cfg| cfg.tiers = tiers).await else {
        return;
    };
    let t = tenant(&idp, Tier::Free).await;
    let sys = Caller::system();
    let mut agents = vec![];
    for i in 0..3 {
        agents.push(agent(&idp, &t, &format!("a{i}")).await);
    }
    let r = idp
        .register_agent(
            &sys,
            &t.id,
            NewAgent {
                name: "a3".into(),
                ..Default::default()
            },
        )
        .await;
    assert!(
        matches!(&r, Err(Error::QuotaExceeded { limit_kind: LimitKind::Agents, used: 3, limit: 3, tier }) if tier == "free"),
        "{r:?}"
    );
    for _ in 0..5 {
        issue(&idp, &secret_request(&agents[0], None))
            .await
            .unwrap();
    }
    let r = issue(&idp, &secret_request(&agents[1], None)).await;
    assert!(
        matches!(
            r,
            Err(Error::QuotaExceeded {
                limit_kind: LimitKind::TokenIssuancesPerMonth,
                used: 5,
                limit: 5,
                ..
            })
        ),
        "{r:?}"
    );
    // Buffered counts reach the meter and still count.
    idp.flush_usage().await.unwrap();
    assert!(matches!(
        issue(&idp, &secret_request(&agents[1], None)).await,
        Err(Error::QuotaExceeded { .. })
    ));

    for _ in 0..3 {
        idp.admit_api_call(&t.id).await.unwrap();
    }
    let r = idp.admit_api_call(&t.id).await;
    assert!(
        matches!(
            r,
            Err(Error::QuotaExceeded {
                limit_kind: LimitKind::ApiCallsPerDay,
                ..
            })
        ),
        "{r:?}"
    );

    let summary = idp.usage_summary(&sys, &t.id).await.unwrap();
    assert_eq!(summary.agents.used, 3);
    assert_eq!(summary.token_issuances_this_month.used, 5);
    assert_eq!(summary.api_calls_today.used, 3);
    assert!(summary.approaching_limit);
    assert_eq!(summary.active_agents_this_month, 1);

    // Upgrading lifts the limits; downgrading keeps agents but refuses more.
    idp.set_tenant_tier(&sys, &t.id, Tier::Pro).await.unwrap();
    issue(&idp, &secret_request(&agents[1], None))
        .await
        .unwrap();
    agent(&idp, &t, "a3").await;
    idp.set_tenant_tier(&sys, &t.id, Tier::Free).await.unwrap();
    assert_eq!(
        idp.list_agents(&sys, &t.id, &Default::default())
            .await
            .unwrap()
            .items
            .len(),
        4
    );
    let r = idp
        .register_agent(
            &sys,
            &t.id,
            NewAgent {
                name: "a4".into(),
                ..Default::default()
            },
        )
        .await;
    assert!(
        matches!(
            r,
            Err(Error::QuotaExceeded {
                limit_kind: LimitKind::Agents,
                used: 4,
                ..
            })
        ),
        "{r:?}"
    );
}

#[tokio::test]
async fn one_client_cannot_take_the_whole_tenant_budget() {
    let c = clock();
    let Some(idp) = idp_with(&c, |cfg| cfg.tiers.pro.client_requests_per_minute = Some(2)).await
    else {
        return;
    };
    let t = tenant(&idp, Tier::Pro).await;
    let greedy = agent(&idp, &t, "greedy").await;
    let other = agent(&idp, &t, "other").await;
    issue(&idp, &secret_request(&greedy, None)).await.unwrap();
    issue(&idp, &secret_request(&greedy, None)).await.unwrap();
    let r = issue(&idp, &secret_request(&greedy, None)).await;
    assert!(
        matches!(r, Err(Error::RateLimited { limit: 2, retry_after }) if retry_after == Duration::from_secs(30)),
        "{r:?}"
    );
    issue(&idp, &secret_request(&other, None))
        .await
        .expect("another client of the tenant");
    c.advance(Duration::from_secs(30));
    issue(&idp, &secret_request(&greedy, None)).await.unwrap();
}

#[tokio::test]
async fn introspection_and_revocation_share_the_rate_limits() {
    let c = clock();
    let Some(idp) = idp_with(&c, |cfg| cfg.tiers.pro.client_requests_per_minute = Some(3)).await
    else {
        return;
    };
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "bot").await;
    let rs = agent(&idp, &t, "api").await;
    let rs_creds = secret_request(&rs, None).client;
    let a_creds = secret_request(&a, None).client;
    let meta = Default::default();
    let token = issue(&idp, &secret_request(&a, None)).await.unwrap();

    // The resource server's own per-client budget: 3 a minute.
    for i in 0..3 {
        let r = idp.introspect(&rs_creds, &token, &meta).await;
        assert!(r.unwrap_or_else(|e| panic!("call {i}: {e}")).active);
    }
    let r = idp.introspect(&rs_creds, &token, &meta).await;
    assert!(
        matches!(r, Err(Error::RateLimited { limit: 3, retry_after }) if retry_after == Duration::from_secs(20)),
        "{r:?}"
    );
    // Revocation counts too: the agent used 1 of its 3 on the token.
    idp.revoke(&a_creds, "not-a-token", &meta).await.unwrap();
    idp.revoke(&a_creds, "not-a-token", &meta).await.unwrap();
    let r = idp.revoke(&a_creds, &token, &meta).await;
    assert!(matches!(r, Err(Error::RateLimited { .. })), "{r:?}");
    // Refused, so the token was not revoked.
    c.advance(Duration::from_secs(20));
    assert!(
        idp.introspect(&rs_creds, &token, &meta)
            .await
            .unwrap()
            .active
    );

    // The tenant's budget (1,200 a minute on pro) counts every client's
    // introspections: once spent, other clients are refused as well.
    let Some(idp) = idp_with(&c, |cfg| cfg.tiers.pro.requests_per_minute = 2).await else {
        return;
    };
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "bot").await;
    let rs = agent(&idp, &t, "api").await;
    let token = issue(&idp, &secret_request(&a, None)).await.unwrap();
    let rs_creds = secret_request(&rs, None).client;
    assert!(
        idp.introspect(&rs_creds, &token, &meta)
            .await
            .unwrap()
            .active
    );
    let r = idp.introspect(&rs_creds, &token, &meta).await;
    assert!(
        matches!(r, Err(Error::RateLimited { limit: 2, .. })),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_client_past_its_own_limit_does_not_spend_the_tenant_budget() {
    let c = clock();
    let Some(idp) = idp_with(&c, |cfg| {
        cfg.tiers.pro.client_requests_per_minute = Some(2);
        cfg.tiers.pro.requests_per_minute = 5;
    })
    .await
    else {
        return;
    };
    let t = tenant(&idp, Tier::Pro).await;
    let greedy = agent(&idp, &t, "greedy").await;
    let other = agent(&idp, &t, "other").await;
    let mut admitted = 0;
    for _ in 0..20 {
        match issue(&idp, &secret_request(&greedy, None)).await {
            Ok(_) => admitted += 1,
            Err(Error::RateLimited { limit: 2, .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(admitted, 2, "the client's own limit");
    // 18 refused requests later, the tenant still has 5 - 2 = 3.
    for i in 0..2 {
        issue(&idp, &secret_request(&other, None))
            .await
            .unwrap_or_else(|e| panic!("other client, request {i}: {e}"));
    }
    let third = agent(&idp, &t, "third").await;
    issue(&idp, &secret_request(&third, None))
        .await
        .expect("the tenant's fifth request");
    let r = issue(&idp, &secret_request(&third, None)).await;
    assert!(
        matches!(r, Err(Error::RateLimited { limit: 5, .. })),
        "the tenant's sixth request: {r:?}"
    );
}

#[tokio::test]
async fn a_request_the_tenant_refuses_costs_the_client_nothing() {
    let c = clock();
    let Some(idp) = idp_with(&c, |cfg| {
        cfg.tiers.pro.client_requests_per_minute = Some(4);
        cfg.tiers.pro.requests_per_minute = 3;
    })
    .await
    else {
        return;
    };
    let t = tenant(&idp, Tier::Pro).await;
    let busy = agent(&idp, &t, "busy").await;
    let idle = agent(&idp, &t, "idle").await;
    for i in 0..3 {
        issue(&idp, &secret_request(&busy, None))
            .await
            .unwrap_or_else(|e| panic!("request {i} of the tenant's budget: {e}"));
    }
    // Refused by the tenant every time, never by its own limit of 4: the
    // refusals did not charge it (before both limits were checked at once,
    // the fifth came from its own, exhausted limit).
    for i in 0..6 {
        let r = issue(&idp, &secret_request(&idle, None)).await;
        assert!(
            matches!(r, Err(Error::RateLimited { limit: 3, .. })),
            "refusal {i}: {r:?}"
        );
    }
    // A minute later the tenant is full again, and the client has its 4.
    c.advance(std::time::Duration::from_secs(60));
    for i in 0..3 {
        issue(&idp, &secret_request(&idle, None))
            .await
            .unwrap_or_else(|e| panic!("request {i} after a minute: {e}"));
    }
}

/// A usage meter whose writes wait until the test opens the gate.
#[derive(Debug)]
struct GatedMeter {
    inner: sentryagent_core::MemoryUsageMeter,
    gate: tokio::sync::Semaphore,
}

#[async_trait::async_trait]
impl sentryagent_core::UsageMeter for GatedMeter {
    fn name(&self) -> &'static str {
        "gated"
    }
    async fn record(&self, batch: &sentryagent_core::UsageBatch) -> sentryagent_core::Result<bool> {
        let _permit = self.gate.acquire().await.expect("gate open");
        self.inner.record(batch).await
    }
    async fn get(
        &self,
        tenant: &TenantId,
        kind: sentryagent_core::UsageKind,
        bucket: &sentryagent_core::Bucket,
    ) -> sentryagent_core::Result<u64> {
        self.inner.get(tenant, kind, bucket).await
    }
    async fn hourly(
        &self,
        tenant: &TenantId,
        kind: sentryagent_core::UsageKind,
        from: Timestamp,
        to: Timestamp,
    ) -> sentryagent_core::Result<Vec<(Timestamp, u64)>> {
        self.inner.hourly(tenant, kind, from, to).await
    }
    async fn per_agent(
        &self,
        tenant: &TenantId,
        kind: sentryagent_core::UsageKind,
        month: &str,
    ) -> sentryagent_core::Result<std::collections::BTreeMap<sentryagent_core::AgentId, u64>> {
        self.inner.per_agent(tenant, kind, month).await
    }
    async fn active_agents(&self, tenant: &TenantId, month: &str) -> sentryagent_core::Result<u64> {
        self.inner.active_agents(tenant, month).await
    }
}

#[tokio::test]
async fn a_due_usage_flush_does_not_hold_up_the_request() {
    use sentryagent_core::{Clock, UsageMeter};
    let c = clock();
    let meter = Arc::new(GatedMeter {
        inner: sentryagent_core::MemoryUsageMeter::new(),
        gate: tokio::sync::Semaphore::new(0),
    });
    let idp = Idp::builder(ISSUER)
        .clock(Arc::new(c.clone()))
        .meter(meter.clone())
        .build()
        .await
        .unwrap();
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "bot").await;
    issue(&idp, &secret_request(&a, None)).await.unwrap();
    c.advance(Duration::from_secs(2));
    // The flush is due: the request returns while the meter's write waits.
    tokio::time::timeout(
        Duration::from_secs(10),
        issue(&idp, &secret_request(&a, None)),
    )
    .await
    .expect("the token request does not wait for the usage flush")
    .unwrap();
    let month = sentryagent_core::Bucket::month_of(c.now());
    let stored = || async {
        meter
            .inner
            .get(&t.id, sentryagent_core::UsageKind::TokenIssued, &month)
            .await
            .unwrap()
    };
    assert_eq!(stored().await, 0, "nothing written while the gate is shut");
    // Open the gate: the flush task writes both tokens.
    meter.gate.add_permits(1_000);
    for _ in 0..1_000 {
        if stored().await == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(stored().await, 2, "the flush task wrote the counts");
}

#[tokio::test]
async fn answers_report_the_limit_with_the_fewest_requests_left() {
    let c = clock();
    let Some(idp) = idp_with(&c, |cfg| {
        cfg.tiers.pro.client_requests_per_minute = Some(3);
        cfg.tiers.pro.requests_per_minute = 5;
    })
    .await
    else {
        return;
    };
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "bot").await;
    let b = agent(&idp, &t, "other").await;
    let meta = Default::default();
    let limit_left = |d: Option<Decision>| {
        let d = d.expect("an admitted answer carries its decision");
        assert!(d.allowed);
        (d.limit, d.remaining)
    };

    // The client's 3 a minute is tighter than the tenant's 5.
    let tok = idp
        .issue_token(&secret_request(&a, None), &meta)
        .await
        .unwrap();
    assert_eq!(limit_left(tok.rate_limit), (3, 2));
    let seen = idp
        .introspect(&secret_request(&a, None).client, &tok.access_token, &meta)
        .await
        .unwrap();
    assert!(seen.active);
    assert_eq!(limit_left(seen.rate_limit), (3, 1));
    // The other client's first request: the tenant has 2 of 5 left, its
    // own limit 2 of 3: the tenant's is reported.
    let d = idp
        .revoke(&secret_request(&b, None).client, "not-a-token", &meta)
        .await
        .unwrap();
    assert_eq!((d.limit, d.remaining), (5, 2));
    let d = idp
        .revoke(&secret_request(&b, None).client, "not-a-token", &meta)
        .await
        .unwrap();
    assert_eq!((d.limit, d.remaining), (5, 1));
    // The decision is not part of the JSON answer.
    let json = serde_json::to_value(&tok).unwrap();
    assert!(json.get("rate_limit").is_none(), "{json}");
}

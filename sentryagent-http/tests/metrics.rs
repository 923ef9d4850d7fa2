//! `/metrics` after a flow: agents by lifecycle state (read from the store
//! at scrape, cached), lifecycle transitions, the quota use ratio by tier and
//! kind, and billing webhook outcomes, with their exact values.

mod http_helpers;

use std::sync::Arc;
use std::time::Duration;

use http_helpers::{Server, Setup, start, start_with};
use reqwest::StatusCode;
use sentryagent_billing::StripeBilling;
use sentryagent_billing::testing::{FakeStripe, SignedWebhook};
use sentryagent_core::{Clock, TenantId};
use serde_json::json;

/// The value of the series written exactly as `series` (name and labels),
/// `None` when the scrape does not have it.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split(' ').next())
        .and_then(|v| v.parse().ok())
}

/// [`sample`], which must be there.
#[track_caller]
fn value(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

/// A free tier of three agents, 1000 API calls a day and two tokens a
/// month; agent counts read at every scrape.
fn setup() -> Setup {
    Setup {
        configure: Box::new(|c| {
            c.tiers.free.token_issuances_per_month = Some(2);
            c.agent_counts_max_age = Duration::ZERO;
        }),
        ..Default::default()
    }
}

async fn lifecycle(s: &Server, key: &str, id: &str, state: &str) -> StatusCode {
    s.post(
        &format!("/v1/agents/{id}/lifecycle"),
        Some(key),
        &json!({ "state": state }),
    )
    .await
    .0
}

#[tokio::test]
async fn agents_transitions_and_quota_use_after_a_flow() {
    let s = start_with(setup()).await;
    let m = s.metrics().await;
    for state in ["draft", "deployed", "listed", "active", "paused", "retired"] {
        assert_eq!(
            value(&m, &format!(r#"sentryagent_agents{{state="{state}"}}"#)),
            0.0
        );
    }
    // Event families appear with their first event.
    assert!(
        !m.contains("sentryagent_agent_lifecycle_transitions"),
        "{m}"
    );

    // A free tenant: three agents, the fourth refused by the agent limit.
    let (_, key) = s.tenant("Acme", "free").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let a = s.agent(&key, json!({ "name": format!("bot-{i}") })).await;
        ids.push((
            a["id"].as_str().unwrap().to_owned(),
            a["client_secret"].as_str().unwrap().to_owned(),
        ));
    }
    let (st, _) = s
        .post("/v1/agents", Some(&key), &json!({"name": "bot-3"}))
        .await;
    assert_eq!(st, StatusCode::PAYMENT_REQUIRED);
    // Lifecycle: pause and resume one, retire another; an illegal move.
    assert_eq!(
        lifecycle(&s, &key, &ids[0].0, "paused").await,
        StatusCode::OK
    );
    assert_eq!(
        lifecycle(&s, &key, &ids[0].0, "active").await,
        StatusCode::OK
    );
    assert_eq!(
        lifecycle(&s, &key, &ids[1].0, "retired").await,
        StatusCode::OK
    );
    assert_eq!(
        lifecycle(&s, &key, &ids[1].0, "active").await,
        StatusCode::CONFLICT
    );
    assert_eq!(
        lifecycle(&s, &key, &ids[2].0, "paused").await,
        StatusCode::OK
    );
    // Tokens: two this month, the third refused by the quota.
    for want in [200, 200, 402] {
        let (st, body) = s.token_post(&ids[0].0, &ids[0].1, &[]).await;
        assert_eq!(st.as_u16(), want, "{body}");
    }
    // Management calls with the tenant key so far: 4 registrations and 5
    // lifecycle requests, each one API call checked against the daily limit.
    let api_calls = 9.0;

    let m = s.metrics().await;
    assert!(m.contains("# TYPE sentryagent_agent_lifecycle_transitions counter"));
    assert!(m.contains("# TYPE sentryagent_quota_use_ratio histogram"));
    let agents = |state: &str| value(&m, &format!(r#"sentryagent_agents{{state="{state}"}}"#));
    assert_eq!(agents("active"), 1.0);
    assert_eq!(agents("paused"), 1.0);
    assert_eq!(agents("retired"), 1.0);
    assert_eq!(agents("draft") + agents("deployed") + agents("listed"), 0.0);

    let moved = |from: &str, to: &str| {
        sample(
            &m,
            &format!(r#"sentryagent_agent_lifecycle_transitions_total{{from="{from}",to="{to}"}}"#),
        )
    };
    assert_eq!(moved("active", "paused"), Some(2.0));
    assert_eq!(moved("paused", "active"), Some(1.0));
    assert_eq!(moved("active", "retired"), Some(1.0));
    assert_eq!(moved("retired", "active"), None, "a refused move is none");

    let ratio = |kind: &str, suffix: &str| {
        value(
            &m,
            &format!(r#"sentryagent_quota_use_ratio_{suffix}{{tier="free",kind="{kind}"}}"#),
        )
    };
    let bucket = |kind: &str, le: &str| {
        value(
            &m,
            &format!(
                r#"sentryagent_quota_use_ratio_bucket{{le="{le}",tier="free",kind="{kind}"}}"#
            ),
        )
    };
    // Agents: 1/3, 2/3 and 3/3 admitted, 4/3 refused.
    assert_eq!(ratio("agents", "count"), 4.0);
    assert!((ratio("agents", "sum") - 10.0 / 3.0).abs() < 1e-9);
    assert_eq!(bucket("agents", "0.5"), 1.0);
    assert_eq!(bucket("agents", "0.75"), 2.0);
    assert_eq!(bucket("agents", "1.0"), 3.0);
    assert_eq!(bucket("agents", "+Inf"), 4.0);
    // Tokens: 1/2 and 2/2 admitted, 3/2 refused.
    let tokens = "token_issuances_per_month";
    assert_eq!(ratio(tokens, "count"), 3.0);
    assert_eq!(ratio(tokens, "sum"), 3.0);
    assert_eq!(bucket(tokens, "0.5"), 1.0);
    assert_eq!(bucket(tokens, "0.95"), 1.0);
    assert_eq!(bucket(tokens, "1.0"), 2.0);
    assert_eq!(bucket(tokens, "+Inf"), 3.0);
    // API calls: every tenant-key call, far from the limit.
    assert_eq!(ratio("api_calls_per_day", "count"), api_calls);
    assert_eq!(bucket("api_calls_per_day", "0.25"), api_calls);
    // Operators have no tier: no pro or enterprise series.
    assert!(!m.contains(r#"tier="pro""#), "{m}");
}

#[tokio::test]
async fn agents_by_state_are_read_at_most_once_per_max_age() {
    let s = start().await;
    let (_, key) = s.tenant("Acme", "pro").await;
    let active = r#"sentryagent_agents{state="active"}"#;
    assert_eq!(value(&s.metrics().await, active), 0.0);
    s.agent(&key, json!({"name": "bot"})).await;
    // Within the default 15 s: the figures of the last read.
    s.clock.advance(Duration::from_secs(14));
    assert_eq!(value(&s.metrics().await, active), 0.0);
    s.clock.advance(Duration::from_secs(1));
    assert_eq!(value(&s.metrics().await, active), 1.0);
}

/// A server billing through a fresh fake Stripe.
async fn start_billing() -> (Server, FakeStripe) {
    let fake = FakeStripe::start().await.unwrap();
    let stripe = Arc::new(StripeBilling::new(fake.config()).unwrap());
    let s = start_with(Setup {
        build: Box::new(move |b| b.billing(stripe)),
        ..Default::default()
    })
    .await;
    (s, fake)
}

async fn deliver(s: &Server, fake: &FakeStripe, w: &SignedWebhook) -> u16 {
    fake.deliver(&s.url("/billing/webhook"), w).await.unwrap().0
}

#[tokio::test]
async fn webhook_outcomes_are_counted() {
    let (s, fake) = start_billing().await;
    let (tid, key) = s.tenant("Acme", "free").await;
    let (st, _) = s
        .post("/api/tiers/upgrade", Some(&key), &json!({"tier": "pro"}))
        .await;
    assert_eq!(st, 200);
    let session = fake.checkout_sessions()[0].clone();
    s.clock.advance(Duration::from_secs(5));
    let completed = fake.complete_checkout(&session.id, s.clock.now()).unwrap();
    assert_eq!(deliver(&s, &fake, &completed).await, 200);
    assert_eq!(deliver(&s, &fake, &completed).await, 200);
    let refund = fake.event(
        "charge.refunded",
        json!({"id": "ch_1", "object": "charge"}),
        s.clock.now(),
    );
    assert_eq!(deliver(&s, &fake, &refund).await, 200);
    let stranger = fake.event(
        "customer.subscription.deleted",
        json!({"id": "sub_x", "object": "subscription", "customer": "cus_x",
               "status": "canceled", "metadata": {"tenant_id": TenantId::generate().to_string()}}),
        s.clock.now(),
    );
    assert_eq!(deliver(&s, &fake, &stranger).await, 200);
    let forged = SignedWebhook {
        header: "t=1,v1=00".into(),
        ..refund.clone()
    };
    assert_eq!(deliver(&s, &fake, &forged).await, 400);
    let not_an_event = SignedWebhook {
        header: fake.sign(b"[]", s.clock.now()),
        body: b"[]".to_vec(),
        ..refund.clone()
    };
    assert_eq!(deliver(&s, &fake, &not_an_event).await, 422);
    let unsigned = s
        .http
        .post(s.url("/billing/webhook"))
        .body(refund.body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 400);

    let m = s.metrics().await;
    let outcome = |o: &str| {
        sample(
            &m,
            &format!(r#"sentryagent_billing_webhooks_total{{outcome="{o}"}}"#),
        )
    };
    assert_eq!(outcome("applied"), Some(1.0));
    assert_eq!(outcome("duplicate"), Some(1.0));
    assert_eq!(outcome("ignored"), Some(1.0));
    assert_eq!(outcome("unknown_tenant"), Some(1.0));
    assert_eq!(outcome("bad_signature"), Some(2.0));
    assert_eq!(outcome("invalid"), Some(1.0));
    assert_eq!(outcome("error"), None);
    assert!(!m.contains(&tid), "no tenant id in /metrics");

    // Without billing, a delivery is counted as not configured.
    let plain = start().await;
    let r = plain
        .http
        .post(plain.url("/billing/webhook"))
        .header("stripe-signature", "t=1,v1=00")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 501);
    let m = plain.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"sentryagent_billing_webhooks_total{outcome="not_configured"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_metrics_token_closes_metrics_to_callers_without_it() {
    // Default: open.
    let open = start().await;
    let r = open.http.get(open.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    let token = "scrape-0123456789-abcdef";
    let s = start_with(Setup {
        router: sentryagent_http::RouterConfig::default().metrics_token(token),
        ..Default::default()
    })
    .await;
    let get = |auth: Option<String>| {
        let mut r = s.http.get(s.url("/metrics"));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send()
    };
    for wrong in [
        None,
        Some(format!("Bearer {token}x")),
        Some("Bearer scrape-0123456789-abcde".to_owned()),
        Some("Bearer ".to_owned()),
        Some(format!("Basic {token}")),
        Some(format!("Bearer {}", s.op)),
    ] {
        let r = get(wrong.clone()).await.unwrap();
        assert_eq!(r.status(), 401, "{wrong:?}");
        assert_eq!(
            r.headers()["www-authenticate"],
            "Bearer realm=\"sentryagent\""
        );
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let body = r.text().await.unwrap();
        assert!(!body.contains("sentryagent_"), "no metric leaks: {body}");
    }
    for right in [format!("Bearer {token}"), format!("bearer {token}")] {
        let r = get(Some(right)).await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("sentryagent_http_requests_total")
        );
    }
    // The health checks stay open.
    let r = s.http.get(s.url("/health/ready")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // The configuration never shows the token.
    let shown = format!(
        "{:?}",
        sentryagent_http::RouterConfig::default().metrics_token(token)
    );
    assert!(!shown.contains(token), "{shown}");
}

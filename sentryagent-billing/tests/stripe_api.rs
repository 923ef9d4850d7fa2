//! `StripeBilling` against the fake Stripe server: request parameters and
//! headers, idempotency, retries and error mapping.

use std::sync::Arc;
use std::time::Duration;

use sentryagent_billing::StripeBilling;
use sentryagent_billing::testing::{FAKE_PRICE_ENTERPRISE, FAKE_PRICE_PRO, FakeStripe};
use sentryagent_core::{BillingInfo, Publisher};
use sentryagent_core::{BillingProvider, UsageReport};
use sentryagent_core::{Error, ManualClock, Tenant, TenantId, TenantStatus, Tier, Timestamp};

const T0: i64 = sentryagent_core::conformance::kit::EPOCH.unix_secs();

fn tenant(customer: Option<&str>) -> Tenant {
    Tenant {
        id: TenantId::generate(),
        name: "Acme".into(),
        slug: "acme".into(),
        tier: Tier::Free,
        status: TenantStatus::Active,
        billing: BillingInfo {
            customer_id: customer.map(str::to_owned),
            ..Default::default()
        },
        publisher: Publisher::default(),
        allowed_audiences: vec![],
        settings: Default::default(),
        suspended_at: None,
        suspension_reason: None,
        created_at: Timestamp::from_unix_secs(T0),
        updated_at: Timestamp::from_unix_secs(T0),
        revision: 0,
    }
}

async fn setup() -> (FakeStripe, StripeBilling, ManualClock) {
    let fake = FakeStripe::start().await.unwrap();
    let clock = ManualClock::new(Timestamp::from_unix_secs(T0));
    let stripe = StripeBilling::with_clock(fake.config(), Arc::new(clock.clone())).unwrap();
    (fake, stripe, clock)
}

#[tokio::test]
async fn checkout_sends_the_documented_parameters_and_headers() {
    let (fake, stripe, _) = setup().await;
    let t = tenant(None);
    let session = stripe.checkout(&t, Tier::Pro).await.unwrap();
    assert!(session.id.starts_with("cs_test_"), "{session:?}");
    assert_eq!(
        session.url,
        format!("{}/checkout/{}", fake.base_url(), session.id)
    );

    let reqs = fake.requests_to("/v1/checkout/sessions");
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.status, 200);
    assert!(r.authorized);
    assert_eq!(
        r.stripe_version.as_deref(),
        Some(sentryagent_billing::config::DEFAULT_API_VERSION)
    );
    assert!(
        r.idempotency_key
            .as_deref()
            .is_some_and(|k| k.starts_with("sa-checkout-"))
    );
    let id = t.id.as_str();
    for (k, v) in [
        ("mode", "subscription"),
        ("line_items[0][price]", FAKE_PRICE_PRO),
        ("line_items[0][quantity]", "1"),
        ("client_reference_id", id),
        ("metadata[tenant_id]", id),
        ("metadata[target_tier]", "pro"),
        ("subscription_data[metadata][tenant_id]", id),
        ("subscription_data[metadata][target_tier]", "pro"),
        (
            "success_url",
            "https://app.example/billing/success?session={CHECKOUT_SESSION_ID}",
        ),
        ("cancel_url", "https://app.example/billing/cancel"),
    ] {
        assert_eq!(r.param(k), Some(v), "{k}");
    }
    assert_eq!(r.param("customer"), None);
    assert_eq!(r.form.len(), 10);

    let sessions = fake.checkout_sessions();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].client_reference_id, id);
    assert_eq!(sessions[0].price, FAKE_PRICE_PRO);
}

#[tokio::test]
async fn checkout_names_an_existing_customer_and_the_enterprise_price() {
    let (fake, stripe, _) = setup().await;
    let customer = fake.create_customer();
    let t = tenant(Some(&customer));
    stripe.checkout(&t, Tier::Enterprise).await.unwrap();
    let r = &fake.requests_to("/v1/checkout/sessions")[0];
    assert_eq!(r.param("customer"), Some(customer.as_str()));
    assert_eq!(r.param("line_items[0][price]"), Some(FAKE_PRICE_ENTERPRISE));
    assert_eq!(r.param("metadata[target_tier]"), Some("enterprise"));
}

#[tokio::test]
async fn checkout_is_idempotent_within_the_hour_then_new() {
    let (fake, stripe, clock) = setup().await;
    let t = tenant(None);
    let a = stripe.checkout(&t, Tier::Pro).await.unwrap();
    let b = stripe.checkout(&t, Tier::Pro).await.unwrap();
    assert_eq!(a, b, "a repeated checkout returns the same session");
    assert_eq!(fake.checkout_sessions().len(), 1);
    let reqs = fake.requests_to("/v1/checkout/sessions");
    assert_eq!(reqs.len(), 2);
    assert!(reqs[1].replayed);
    assert_eq!(reqs[0].idempotency_key, reqs[1].idempotency_key);

    // Another tier is another request.
    let e = stripe.checkout(&t, Tier::Enterprise).await.unwrap();
    assert_ne!(e.id, a.id);
    // The next hour opens a new session.
    clock.advance(Duration::from_secs(3600));
    let c = stripe.checkout(&t, Tier::Pro).await.unwrap();
    assert_ne!(c.id, a.id);
    assert_eq!(fake.checkout_sessions().len(), 3);
}

#[tokio::test]
async fn checkout_of_free_or_an_unpriced_tier_is_refused_without_a_request() {
    let fake = FakeStripe::start().await.unwrap();
    let mut config = fake.config();
    config.price_ids.enterprise = None;
    let stripe = StripeBilling::new(config).unwrap();
    assert!(matches!(
        stripe.checkout(&tenant(None), Tier::Free).await,
        Err(Error::Invalid { field: "tier", .. })
    ));
    let err = stripe
        .checkout(&tenant(None), Tier::Enterprise)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotConfigured { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("SENTRYAGENT_STRIPE_PRICE_ENTERPRISE")
    );
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn checkout_retries_server_errors_with_the_same_key() {
    let (fake, stripe, _) = setup().await;
    fake.fail_next(2, 500);
    let s = stripe.checkout(&tenant(None), Tier::Pro).await.unwrap();
    let reqs = fake.requests_to("/v1/checkout/sessions");
    assert_eq!(
        reqs.iter().map(|r| r.status).collect::<Vec<_>>(),
        [500, 500, 200]
    );
    assert!(
        reqs.iter()
            .all(|r| r.idempotency_key == reqs[0].idempotency_key)
    );
    assert_eq!(fake.checkout_sessions().len(), 1);
    assert_eq!(fake.checkout_sessions()[0].id, s.id);
}

#[tokio::test]
async fn a_lost_checkout_response_does_not_open_a_second_session() {
    let (fake, stripe, _) = setup().await;
    fake.lose_next_responses(1);
    let s = stripe.checkout(&tenant(None), Tier::Pro).await.unwrap();
    let reqs = fake.requests_to("/v1/checkout/sessions");
    assert_eq!(reqs.len(), 2);
    assert!(reqs[1].replayed);
    assert_eq!(fake.checkout_sessions().len(), 1);
    assert_eq!(fake.checkout_sessions()[0].id, s.id);
}

#[tokio::test]
async fn portal_sends_customer_and_return_url() {
    let (fake, stripe, _) = setup().await;
    let customer = fake.create_customer();
    let url = stripe.portal(&tenant(Some(&customer))).await.unwrap();
    assert!(
        url.starts_with(&format!("{}/portal/bps_test_", fake.base_url())),
        "{url}"
    );
    let r = &fake.requests_to("/v1/billing_portal/sessions")[0];
    assert!(r.authorized);
    assert_eq!(r.param("customer"), Some(customer.as_str()));
    assert_eq!(r.param("return_url"), Some("https://app.example/billing"));
    assert!(
        r.idempotency_key
            .as_deref()
            .is_some_and(|k| k.starts_with("sa-portal-"))
    );

    // Two portal links are two requests with two keys.
    stripe.portal(&tenant(Some(&customer))).await.unwrap();
    let reqs = fake.requests_to("/v1/billing_portal/sessions");
    assert_ne!(reqs[0].idempotency_key, reqs[1].idempotency_key);

    // Without a customer there is nothing to manage.
    assert!(matches!(
        stripe.portal(&tenant(None)).await,
        Err(Error::Conflict { .. })
    ));
    assert_eq!(fake.requests_to("/v1/billing_portal/sessions").len(), 2);
}

#[tokio::test]
async fn stripe_errors_map_to_core_errors() {
    let (fake, stripe, _) = setup().await;
    // Unknown customer: Stripe's 400 with its message.
    let err = stripe
        .portal(&tenant(Some("cus_nobody")))
        .await
        .unwrap_err();
    match &err {
        Error::Invalid { field, message } => {
            assert_eq!(*field, "stripe");
            assert!(
                message.contains("No such customer: 'cus_nobody'"),
                "{message}"
            );
            assert!(message.contains("resource_missing"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // 4xx are not retried.
    assert_eq!(fake.requests_to("/v1/billing_portal/sessions").len(), 1);

    // A wrong key: Unavailable, the key is never shown.
    let mut config = fake.config();
    config.secret_key = "sk_test_wrongwrongwrong".into();
    let bad = StripeBilling::new(config).unwrap();
    let err = bad.checkout(&tenant(None), Tier::Pro).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(text.contains("SENTRYAGENT_STRIPE_SECRET_KEY"), "{text}");
    assert!(!text.contains("wrongwrongwrong"), "{text}");
    assert!(!format!("{bad:?}").contains("wrongwrongwrong"));

    // Rate limited past the retry budget: Unavailable after max_attempts.
    fake.fail_next(10, 429);
    let before = fake.requests().len();
    let err = stripe.checkout(&tenant(None), Tier::Pro).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("rate limiting"), "{err}");
    assert_eq!(fake.requests().len() - before, 4);
}

#[tokio::test]
async fn an_unreachable_api_is_unavailable_after_bounded_attempts() {
    let fake = FakeStripe::start().await.unwrap();
    let mut config = fake.config();
    // A port that was free a moment ago and is closed now.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    config.api_base = format!("http://127.0.0.1:{port}");
    let stripe = StripeBilling::new(config).unwrap();
    let err = stripe.checkout(&tenant(None), Tier::Pro).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("unreachable"), "{err}");
}

fn report(i: usize, customer: &str) -> UsageReport {
    UsageReport {
        identifier: format!("tnt_x:api_call:{}", T0 + 3600 * i as i64),
        customer_id: customer.to_owned(),
        event_name: "sentryagent_api_calls".into(),
        value: 10 + i as u64,
        timestamp: Timestamp::from_unix_secs(T0 + 3600 * i as i64),
    }
}

#[tokio::test]
async fn meter_events_are_sent_with_the_documented_parameters() {
    let (fake, stripe, _) = setup().await;
    let reports: Vec<_> = (0..10).map(|i| report(i, "cus_a")).collect();
    stripe.report_usage(&reports).await.unwrap();
    let events = fake.meter_events();
    assert_eq!(events.len(), 10);
    assert_eq!(
        fake.meter_total("sentryagent_api_calls", "cus_a"),
        (10..20).sum::<u64>()
    );
    let reqs = fake.requests_to("/v1/billing/meter_events");
    let r = reqs
        .iter()
        .find(|r| r.param("identifier") == Some(&reports[3].identifier))
        .unwrap();
    assert_eq!(r.param("event_name"), Some("sentryagent_api_calls"));
    assert_eq!(r.param("payload[stripe_customer_id]"), Some("cus_a"));
    assert_eq!(r.param("payload[value]"), Some("13"));
    assert_eq!(
        r.param("timestamp"),
        Some((T0 + 3 * 3600).to_string().as_str())
    );
    assert!(
        r.idempotency_key
            .as_deref()
            .is_some_and(|k| k.starts_with("sa-meter-"))
    );
}

#[tokio::test]
async fn meter_events_are_retried_and_never_double_counted() {
    let fake = FakeStripe::start().await.unwrap();
    let mut config = fake.config();
    // More attempts than injected failures: no report can run out of them,
    // whatever the interleaving.
    config.retry.max_attempts = 8;
    let stripe = StripeBilling::new(config).unwrap();
    let reports: Vec<_> = (0..12).map(|i| report(i, "cus_b")).collect();
    let want: u64 = reports.iter().map(|r| r.value).sum();
    // Refused outright, then done-but-lost: both retried with the same key.
    fake.fail_next(3, 500);
    fake.lose_next_responses(3);
    stripe.report_usage(&reports).await.unwrap();
    assert_eq!(fake.meter_events().len(), 12);
    assert_eq!(fake.meter_total("sentryagent_api_calls", "cus_b"), want);
    let reqs = fake.requests_to("/v1/billing/meter_events");
    assert_eq!(reqs.len(), 12 + 3 + 3);
    assert_eq!(reqs.iter().filter(|r| r.replayed).count(), 3);

    // Sending everything again (a reporter that lost its markers) counts
    // nothing new.
    stripe.report_usage(&reports).await.unwrap();
    assert_eq!(fake.meter_total("sentryagent_api_calls", "cus_b"), want);
    assert_eq!(fake.meter_events().len(), 12);

    // The same identifier under another key (another client) is deduplicated
    // by Stripe too.
    let mut again = reports[0].clone();
    again.value = 999;
    stripe.report_usage(&[again]).await.unwrap();
    assert_eq!(fake.meter_total("sentryagent_api_calls", "cus_b"), want);
    assert_eq!(fake.meter_duplicates(), 1);
}

#[tokio::test]
async fn meter_event_failures_are_reported_and_bad_reports_refused_up_front() {
    let (fake, stripe, _) = setup().await;
    fake.fail_next(100, 503);
    let reports: Vec<_> = (0..3).map(|i| report(i, "cus_c")).collect();
    let err = stripe.report_usage(&reports).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("3 of 3 meter events"), "{err}");
    assert!(fake.meter_events().is_empty());

    let (fake, stripe, _) = setup().await;
    let mut bad = report(0, "cus_c");
    bad.identifier = "x".repeat(101);
    let err = stripe
        .report_usage(&[report(1, "cus_c"), bad])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Invalid {
                field: "identifier",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        fake.requests().is_empty(),
        "nothing is sent when a report is invalid"
    );

    // Zero values are not sent.
    let mut zero = report(2, "cus_c");
    zero.value = 0;
    stripe.report_usage(&[zero]).await.unwrap();
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn the_fake_checks_what_a_client_sends() {
    let fake = FakeStripe::start().await.unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let post = |path: &str, key: Option<&str>, auth: &str, body: &str| {
        let mut r = client
            .post(format!("{}{path}", fake.base_url()))
            .header("authorization", auth.to_owned())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned());
        if let Some(k) = key {
            r = r.header("idempotency-key", k.to_owned());
        }
        r.send()
    };
    let auth = format!("Bearer {}", sentryagent_billing::testing::FAKE_SECRET_KEY);
    let ok_body = "event_name=e&payload%5Bstripe_customer_id%5D=cus_1&payload%5Bvalue%5D=1&identifier=i1&timestamp=1";
    // Wrong key.
    let r = post(
        "/v1/billing/meter_events",
        Some("k1"),
        "Bearer sk_test_nope",
        ok_body,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
    // No idempotency key.
    let r = post("/v1/billing/meter_events", None, &auth, ok_body)
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Unknown parameter.
    let r = post(
        "/v1/billing/meter_events",
        Some("k2"),
        &auth,
        &format!("{ok_body}&extra=1"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Received unknown parameter: extra")
    );
    // Accepted, then the same key with other parameters is refused.
    let r = post("/v1/billing/meter_events", Some("k3"), &auth, ok_body)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = post(
        "/v1/billing/meter_events",
        Some("k3"),
        &auth,
        "event_name=other",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("idempotency_error"));
    // Checkout with a mismatched target tier.
    let body = format!(
        "mode=subscription&line_items%5B0%5D%5Bprice%5D={FAKE_PRICE_PRO}&line_items%5B0%5D%5Bquantity%5D=1\
         &client_reference_id=t1&metadata%5Btenant_id%5D=t1&metadata%5Btarget_tier%5D=enterprise\
         &subscription_data%5Bmetadata%5D%5Btenant_id%5D=t1&subscription_data%5Bmetadata%5D%5Btarget_tier%5D=enterprise\
         &success_url=https%3A%2F%2Fa.example&cancel_url=https%3A%2F%2Fa.example"
    );
    let r = post("/v1/checkout/sessions", Some("k4"), &auth, &body)
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Unknown path.
    let r = post("/v1/customers", Some("k5"), &auth, "").await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(fake.meter_events().len(), 1);
    assert!(fake.checkout_sessions().is_empty());
}

#[tokio::test]
async fn parse_webhook_verifies_then_normalizes_the_vector_event() {
    use sentryagent_core::BillingEventKind;
    let vectors: serde_json::Value =
        serde_json::from_str(include_str!("data/stripe-webhook-signatures.json")).unwrap();
    let fake = FakeStripe::start().await.unwrap();
    let mut config = fake.config();
    config.webhook_secrets = vec![
        "whsec_previous".into(),
        vectors["secret"].as_str().unwrap().into(),
    ];
    let stripe = StripeBilling::new(config).unwrap();
    let body = vectors["payload"].as_str().unwrap().as_bytes();
    let header = vectors["cases"][0]["header"].as_str().unwrap();
    let now = Timestamp::from_unix_secs(vectors["cases"][0]["now"].as_i64().unwrap());

    let event = stripe.parse_webhook(header, body, now).unwrap().unwrap();
    assert_eq!(event.id, "evt_1TestCheckoutCompleted");
    assert_eq!(event.created, Timestamp::from_unix_secs(T0));
    assert_eq!(
        event.tenant_id.as_ref().map(TenantId::as_str),
        Some("tenant_42")
    );
    assert_eq!(event.customer_id.as_deref(), Some("cus_test_42"));
    assert_eq!(event.subscription_id.as_deref(), Some("sub_test_42"));
    assert_eq!(
        event.kind,
        BillingEventKind::CheckoutCompleted { tier: Tier::Pro }
    );

    // Any signature failure is Unauthenticated, whatever the cause.
    for (h, b, at) in [
        (header, &b"{}"[..], now),
        ("t=1,v1=00", body, now),
        (header, body, now.plus(Duration::from_secs(301))),
    ] {
        assert!(matches!(
            stripe.parse_webhook(h, b, at),
            Err(Error::Unauthenticated)
        ));
    }
}

#[tokio::test]
async fn providers_from_configuration() {
    let fake = FakeStripe::start().await.unwrap();
    let none = sentryagent_billing::provider_from_config(None).unwrap();
    assert_eq!(none.name(), "none");
    assert!(!none.enabled());
    let stripe = sentryagent_billing::provider_from_config(Some(fake.config())).unwrap();
    assert_eq!(stripe.name(), "stripe");
    assert!(stripe.enabled());
    let mut bad = fake.config();
    bad.webhook_secrets.clear();
    assert!(matches!(
        sentryagent_billing::provider_from_config(Some(bad)),
        Err(Error::NotConfigured { .. })
    ));
}

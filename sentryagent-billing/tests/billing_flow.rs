//! The whole billing flow through the core `Idp` with `StripeBilling` and the
//! fake Stripe: free tenant at its limit -> checkout -> signed webhooks ->
//! pro -> downgrade; replays, out-of-order delivery, bad signatures, unknown
//! event types and unknown tenants.

use std::sync::Arc;
use std::time::Duration;

use sentryagent_billing::StripeBilling;
use sentryagent_billing::testing::{FakeStripe, SignedWebhook};
use sentryagent_core::SubscriptionStatus;
use sentryagent_core::{
    AuditQuery, BillingOutcome, Caller, Clock, Error, Idp, LimitKind, ManualClock, NewAgent,
    NewTenant, RequestMeta, Tenant, TenantId, Tier, Timestamp,
};
use serde_json::json;

const T0: i64 = sentryagent_core::conformance::kit::EPOCH.unix_secs();

struct World {
    fake: FakeStripe,
    idp: Idp,
    clock: ManualClock,
    op: Caller,
}

impl World {
    async fn new() -> World {
        let fake = FakeStripe::start().await.unwrap();
        let clock = ManualClock::new(Timestamp::from_unix_secs(T0));
        let stripe = StripeBilling::with_clock(fake.config(), Arc::new(clock.clone())).unwrap();
        let idp = Idp::builder("https://idp.example")
            .clock(Arc::new(clock.clone()))
            .billing(Arc::new(stripe))
            .build()
            .await
            .unwrap();
        World {
            fake,
            idp,
            clock,
            op: Caller::system(),
        }
    }

    /// Moves the clock and returns the new time (webhooks are signed "now").
    fn later(&self, secs: u64) -> Timestamp {
        self.clock.advance(Duration::from_secs(secs));
        self.clock.now()
    }

    async fn deliver(&self, w: &SignedWebhook) -> sentryagent_core::Result<BillingOutcome> {
        self.idp
            .handle_billing_webhook(&w.header, &w.body, &RequestMeta::default())
            .await
    }

    async fn tenant(&self, id: &TenantId) -> Tenant {
        self.idp.get_tenant(&self.op, id).await.unwrap()
    }

    async fn register(&self, tenant: &TenantId, name: &str) -> sentryagent_core::Result<()> {
        self.idp
            .register_agent(
                &self.op,
                tenant,
                NewAgent {
                    name: name.into(),
                    ..Default::default()
                },
            )
            .await
            .map(|_| ())
    }

    async fn agents(&self, tenant: &TenantId) -> usize {
        self.idp
            .list_agents(&self.op, tenant, &Default::default())
            .await
            .unwrap()
            .items
            .len()
    }

    async fn new_tenant(&self, name: &str) -> Tenant {
        self.idp
            .create_tenant(
                &self.op,
                NewTenant {
                    name: name.into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
    }
}

fn is_agent_limit(r: sentryagent_core::Result<()>) -> bool {
    matches!(
        r,
        Err(Error::QuotaExceeded {
            limit_kind: LimitKind::Agents,
            ..
        })
    )
}

#[tokio::test]
async fn upgrade_then_downgrade_through_stripe() {
    let w = World::new().await;
    let t = w.new_tenant("Acme").await;

    // Free: three agents, the fourth is refused.
    for i in 0..3 {
        w.register(&t.id, &format!("bot-{i}")).await.unwrap();
    }
    assert!(is_agent_limit(w.register(&t.id, "bot-3").await));

    // Upgrade: a Checkout Session at the fake, for this tenant and tier.
    let session = w.idp.start_checkout(&w.op, &t.id, Tier::Pro).await.unwrap();
    assert!(session.url.starts_with(&w.fake.base_url()));
    let fake_session = &w.fake.checkout_sessions()[0];
    assert_eq!(fake_session.id, session.id);
    assert_eq!(fake_session.client_reference_id, t.id.as_str());
    assert_eq!(fake_session.metadata["tenant_id"], t.id.as_str());
    assert_eq!(
        fake_session.subscription_metadata["tenant_id"],
        t.id.as_str()
    );

    // The customer pays: Stripe sends checkout.session.completed.
    let completed = w.fake.complete_checkout(&session.id, w.later(30)).unwrap();
    assert_eq!(
        w.deliver(&completed).await.unwrap(),
        BillingOutcome::Applied
    );
    let pro = w.tenant(&t.id).await;
    assert_eq!(pro.tier, Tier::Pro);
    assert_eq!(
        pro.billing.subscription_status,
        Some(SubscriptionStatus::Active)
    );
    let sub = w.fake.subscriptions()[0].clone();
    assert_eq!(
        pro.billing.customer_id.as_deref(),
        Some(sub.customer.as_str())
    );
    assert_eq!(
        pro.billing.subscription_id.as_deref(),
        Some(sub.id.as_str())
    );

    // The limit is lifted.
    w.register(&t.id, "bot-3").await.unwrap();
    w.register(&t.id, "bot-4").await.unwrap();

    // Paying again for the same tier is refused by the core.
    assert!(matches!(
        w.idp.start_checkout(&w.op, &t.id, Tier::Pro).await,
        Err(Error::Conflict { .. })
    ));

    // A renewal sets the renewal date; a failed payment marks past due and a
    // later payment recovers.
    let paid = w.fake.pay_invoice(&sub.id, w.later(60)).unwrap();
    assert_eq!(w.deliver(&paid).await.unwrap(), BillingOutcome::Applied);
    let renewed = w.fake.subscription(&sub.id).unwrap().current_period_end;
    assert_eq!(
        w.tenant(&t.id).await.billing.current_period_end,
        Some(Timestamp::from_unix_secs(renewed))
    );
    let failed = w.fake.fail_invoice(&sub.id, w.later(60)).unwrap();
    assert_eq!(w.deliver(&failed).await.unwrap(), BillingOutcome::Applied);
    let t_now = w.tenant(&t.id).await;
    assert_eq!(
        t_now.billing.subscription_status,
        Some(SubscriptionStatus::PastDue)
    );
    assert_eq!(
        t_now.tier,
        Tier::Pro,
        "past due keeps the tier while Stripe retries"
    );
    let recovered = w.fake.pay_invoice(&sub.id, w.later(60)).unwrap();
    assert_eq!(
        w.deliver(&recovered).await.unwrap(),
        BillingOutcome::Applied
    );
    assert_eq!(
        w.tenant(&t.id).await.billing.subscription_status,
        Some(SubscriptionStatus::Active)
    );

    // The customer portal is for this customer.
    let url = w.idp.billing_portal(&w.op, &t.id).await.unwrap();
    assert!(url.starts_with(&w.fake.base_url()));
    let portal = &w.fake.requests_to("/v1/billing_portal/sessions")[0];
    assert_eq!(portal.param("customer"), Some(sub.customer.as_str()));

    // Cancellation: back to free, agents kept, new ones refused.
    let deleted = w.fake.delete_subscription(&sub.id, w.later(60)).unwrap();
    assert_eq!(w.deliver(&deleted).await.unwrap(), BillingOutcome::Applied);
    let free = w.tenant(&t.id).await;
    assert_eq!(free.tier, Tier::Free);
    assert_eq!(
        free.billing.subscription_status,
        Some(SubscriptionStatus::Canceled)
    );
    assert_eq!(free.billing.subscription_id, None);
    assert_eq!(w.agents(&t.id).await, 5);
    assert!(is_agent_limit(w.register(&t.id, "bot-5").await));

    // Upgrading again names the existing customer.
    w.idp
        .start_checkout(&w.op, &t.id, Tier::Enterprise)
        .await
        .unwrap();
    let again = w.fake.requests_to("/v1/checkout/sessions");
    assert_eq!(
        again.last().unwrap().param("customer"),
        Some(sub.customer.as_str())
    );
}

#[tokio::test]
async fn replays_change_nothing() {
    let w = World::new().await;
    let t = w.new_tenant("Replay").await;
    let s = w.idp.start_checkout(&w.op, &t.id, Tier::Pro).await.unwrap();
    let completed = w.fake.complete_checkout(&s.id, w.later(10)).unwrap();
    assert_eq!(
        w.deliver(&completed).await.unwrap(),
        BillingOutcome::Applied
    );
    let after_first = w.tenant(&t.id).await;
    w.later(10);
    assert_eq!(
        w.deliver(&completed).await.unwrap(),
        BillingOutcome::Duplicate
    );
    assert_eq!(w.tenant(&t.id).await, after_first);

    // A replayed deletion does not undo a later re-subscription either.
    let sub = w.fake.subscriptions()[0].id.clone();
    let deleted = w.fake.delete_subscription(&sub, w.later(10)).unwrap();
    assert_eq!(w.deliver(&deleted).await.unwrap(), BillingOutcome::Applied);
    let s2 = w.idp.start_checkout(&w.op, &t.id, Tier::Pro).await.unwrap();
    let completed2 = w.fake.complete_checkout(&s2.id, w.later(10)).unwrap();
    assert_eq!(
        w.deliver(&completed2).await.unwrap(),
        BillingOutcome::Applied
    );
    assert_eq!(
        w.deliver(&deleted).await.unwrap(),
        BillingOutcome::Duplicate
    );
    assert_eq!(w.tenant(&t.id).await.tier, Tier::Pro);
}

#[tokio::test]
async fn an_older_event_delivered_late_does_not_roll_state_back() {
    let w = World::new().await;
    let t = w.new_tenant("Order").await;
    let s = w.idp.start_checkout(&w.op, &t.id, Tier::Pro).await.unwrap();
    let completed = w.fake.complete_checkout(&s.id, w.later(10)).unwrap();
    w.deliver(&completed).await.unwrap();
    let sub = w.fake.subscriptions()[0].id.clone();

    // Stripe creates an update, then a deletion; they arrive the other way.
    let update = w
        .fake
        .update_subscription(&sub, "active", Some(Tier::Enterprise), w.later(10))
        .unwrap();
    let delete = w.fake.delete_subscription(&sub, w.later(10)).unwrap();
    assert_eq!(w.deliver(&delete).await.unwrap(), BillingOutcome::Applied);
    // The late update is still within the signature tolerance.
    assert_eq!(w.deliver(&update).await.unwrap(), BillingOutcome::Stale);
    let after = w.tenant(&t.id).await;
    assert_eq!(after.tier, Tier::Free);
    assert_eq!(
        after.billing.subscription_status,
        Some(SubscriptionStatus::Canceled)
    );
    // Delivered again, it is a duplicate now.
    assert_eq!(w.deliver(&update).await.unwrap(), BillingOutcome::Duplicate);
}

#[tokio::test]
async fn subscription_updates_move_tier_and_status() {
    let w = World::new().await;
    let t = w.new_tenant("Moves").await;
    let s = w.idp.start_checkout(&w.op, &t.id, Tier::Pro).await.unwrap();
    w.deliver(&w.fake.complete_checkout(&s.id, w.later(10)).unwrap())
        .await
        .unwrap();
    let sub = w.fake.subscriptions()[0].id.clone();

    // A plan change in the portal: the price maps to enterprise.
    let up = w
        .fake
        .update_subscription(&sub, "active", Some(Tier::Enterprise), w.later(10))
        .unwrap();
    assert_eq!(w.deliver(&up).await.unwrap(), BillingOutcome::Applied);
    let t1 = w.tenant(&t.id).await;
    assert_eq!(t1.tier, Tier::Enterprise);
    let end = w.fake.subscription(&sub).unwrap().current_period_end;
    assert_eq!(
        t1.billing.current_period_end,
        Some(Timestamp::from_unix_secs(end))
    );

    // Unpaid after the retries: back to free while the subscription stays.
    let unpaid = w
        .fake
        .update_subscription(&sub, "unpaid", None, w.later(10))
        .unwrap();
    assert_eq!(w.deliver(&unpaid).await.unwrap(), BillingOutcome::Applied);
    let t2 = w.tenant(&t.id).await;
    assert_eq!(t2.tier, Tier::Free);
    assert_eq!(
        t2.billing.subscription_status,
        Some(SubscriptionStatus::Unpaid)
    );
}

#[tokio::test]
async fn bad_signatures_are_rejected_and_audited() {
    let w = World::new().await;
    let t = w.new_tenant("Sig").await;
    let s = w.idp.start_checkout(&w.op, &t.id, Tier::Pro).await.unwrap();
    let good = w.fake.complete_checkout(&s.id, w.later(10)).unwrap();

    let mut tampered = good.clone();
    let text = String::from_utf8(tampered.body.clone()).unwrap();
    tampered.body = text.replace("\"pro\"", "\"enterprise\"").into_bytes();
    assert_ne!(tampered.body, good.body);
    let mut wrong_secret = good.clone();
    wrong_secret.header = sentryagent_billing::webhook::signature_header(
        "whsec_not_the_secret",
        w.clock.now().unix_secs(),
        &good.body,
    );
    let mut no_signature = good.clone();
    no_signature.header = String::new();
    for bad in [&tampered, &wrong_secret, &no_signature] {
        assert!(matches!(w.deliver(bad).await, Err(Error::Unauthenticated)));
    }
    // Too old: beyond the 300 s tolerance.
    w.later(301);
    assert!(matches!(
        w.deliver(&good).await,
        Err(Error::Unauthenticated)
    ));
    assert_eq!(w.tenant(&t.id).await.tier, Tier::Free);

    let rejected = w
        .idp
        .query_audit(
            &w.op,
            &AuditQuery {
                action: Some("billing.webhook_rejected".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(rejected.items.len(), 4);

    // Re-signed now, the genuine event applies.
    let fresh = SignedWebhook {
        header: w.fake.sign(&good.body, w.clock.now()),
        ..good
    };
    assert_eq!(w.deliver(&fresh).await.unwrap(), BillingOutcome::Applied);
    assert_eq!(w.tenant(&t.id).await.tier, Tier::Pro);
}

#[tokio::test]
async fn unknown_event_types_and_unknown_tenants_are_acknowledged() {
    let w = World::new().await;
    let t = w.new_tenant("Other").await;

    let refund = w.fake.event(
        "charge.refunded",
        json!({"id": "ch_1", "object": "charge"}),
        w.later(1),
    );
    assert_eq!(w.deliver(&refund).await.unwrap(), BillingOutcome::Ignored);

    let ghost = w.fake.event(
        "customer.subscription.deleted",
        json!({"id": "sub_ghost", "object": "subscription", "customer": "cus_ghost",
               "status": "canceled", "metadata": {"tenant_id": "tnt_does_not_exist"}}),
        w.later(1),
    );
    assert_eq!(
        w.deliver(&ghost).await.unwrap(),
        BillingOutcome::UnknownTenant
    );
    assert_eq!(
        w.deliver(&ghost).await.unwrap(),
        BillingOutcome::UnknownTenant
    );
    let recorded = w
        .idp
        .query_audit(
            &w.op,
            &AuditQuery {
                action: Some("billing.event_unknown_tenant".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(recorded.items.len(), 1, "recorded once");

    // No tenant metadata at all (a subscription made in the dashboard).
    let bare = w.fake.event(
        "customer.subscription.updated",
        json!({"id": "sub_x", "object": "subscription", "status": "active"}),
        w.later(1),
    );
    assert_eq!(
        w.deliver(&bare).await.unwrap(),
        BillingOutcome::UnknownTenant
    );

    // A verified body that is not a Stripe event is invalid, not a 5xx.
    let garbage = w
        .fake
        .event("invoice.paid", json!("not an object"), w.later(1));
    assert!(matches!(
        w.deliver(&garbage).await,
        Err(Error::Invalid { .. })
    ));
    let not_json = SignedWebhook {
        header: w.fake.sign(b"{not json", w.clock.now()),
        body: b"{not json".to_vec(),
        event_id: String::new(),
    };
    assert!(matches!(
        w.deliver(&not_json).await,
        Err(Error::Invalid { .. })
    ));

    assert_eq!(w.tenant(&t.id).await.tier, Tier::Free);
}

#[tokio::test]
async fn webhooks_can_be_delivered_over_http() {
    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    let w = World::new().await;
    let t = w.new_tenant("Http").await;
    let s = w.idp.start_checkout(&w.op, &t.id, Tier::Pro).await.unwrap();
    let completed = w.fake.complete_checkout(&s.id, w.later(10)).unwrap();

    // A minimal receiver standing in for the host's webhook route.
    async fn receive(State(idp): State<Idp>, headers: HeaderMap, body: Bytes) -> StatusCode {
        let sig = headers
            .get("stripe-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        match idp
            .handle_billing_webhook(sig, &body, &RequestMeta::default())
            .await
        {
            Ok(_) => StatusCode::OK,
            Err(Error::Unauthenticated) => StatusCode::BAD_REQUEST,
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
    let app = Router::new()
        .route("/billing/webhook", post(receive))
        .with_state(w.idp.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/billing/webhook", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let (status, _) = w.fake.deliver(&url, &completed).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(w.tenant(&t.id).await.tier, Tier::Pro);
    let mut bad = completed.clone();
    bad.header = "t=1,v1=00".into();
    let (status, _) = w.fake.deliver(&url, &bad).await.unwrap();
    assert_eq!(status, 400);
    server.abort();
}

//! The whole billing flow over HTTP, with `StripeBilling` talking to the
//! fake Stripe of `sentryagent-billing` (feature `testing`), on sled and on
//! Postgres + Redis: a free tenant at its agent limit (402) -> upgrade ->
//! checkout URL -> signed `checkout.session.completed` delivered to
//! `POST /billing/webhook` -> pro, the limit lifted -> portal ->
//! `customer.subscription.deleted` -> free again, agents kept, new ones
//! refused. Then replays, out-of-order delivery, bad signatures, unknown
//! event types and unknown tenants, all over HTTP.

mod http_helpers;

use std::sync::Arc;
use std::time::Duration;

use http_helpers::{Backend, Server, Setup, assert_problem, json_of, start_with};
use reqwest::{Method, StatusCode};
use sentryagent_billing::StripeBilling;
use sentryagent_billing::testing::{
    FAKE_PRICE_ENTERPRISE, FAKE_PRICE_PRO, FakeStripe, SignedWebhook,
};
use sentryagent_billing::webhook::signature_header;
use sentryagent_core::{Clock, TenantId, Tier, Timestamp};
use serde_json::{Value, json};

const CHECKOUT: &str = "/v1/checkout/sessions";
const PORTAL: &str = "/v1/billing_portal/sessions";

/// A test server whose billing is `StripeBilling` on a fresh fake Stripe.
async fn start_billing(backend: Backend) -> (Server, FakeStripe) {
    let fake = FakeStripe::start().await.unwrap();
    let stripe = Arc::new(StripeBilling::new(fake.config()).unwrap());
    let s = start_with(Setup {
        backend,
        build: Box::new(move |b| b.billing(stripe)),
        ..Default::default()
    })
    .await;
    (s, fake)
}

/// Moves the server's clock on and returns the new time: the fake signs its
/// webhooks "now", and each event is created later than the one before.
fn later(s: &Server, secs: u64) -> Timestamp {
    s.clock.advance(Duration::from_secs(secs));
    s.clock.now()
}

/// Delivers a webhook as Stripe does, over HTTP; the status and JSON answer.
async fn deliver(s: &Server, fake: &FakeStripe, w: &SignedWebhook) -> (u16, Value) {
    let (status, body) = fake
        .deliver(&s.url("/billing/webhook"), w)
        .await
        .expect("the webhook route answers");
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Delivers a webhook that must be acknowledged with `outcome`.
async fn acknowledged(s: &Server, fake: &FakeStripe, w: &SignedWebhook, outcome: &str) {
    let (status, body) = deliver(s, fake, w).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"received": true, "outcome": outcome}));
}

/// Delivers a webhook whose signature must be refused with a 400 problem.
async fn refused(s: &Server, w: &SignedWebhook) {
    let r = s
        .http
        .post(s.url("/billing/webhook"))
        .header("stripe-signature", &w.header)
        .header("content-type", "application/json; charset=utf-8")
        .body(w.body.clone())
        .send()
        .await
        .unwrap();
    let p = assert_problem(r, 400).await;
    assert_eq!(p["type"], "urn:sentryagent:problem:bad-signature", "{p}");
}

/// The tenant as stored (revision included), read with its own key.
async fn tenant_doc(s: &Server, key: &str, id: &str) -> Value {
    let (st, t) = s.get(&format!("/v1/tenants/{id}"), Some(key)).await;
    assert_eq!(st, 200, "{t}");
    t
}

/// `POST path {"tier": tier}` with `key`; the `{url, id}` answer.
async fn checkout_url(s: &Server, path: &str, key: &str, tier: &str) -> Value {
    let (st, body) = s.post(path, Some(key), &json!({ "tier": tier })).await;
    assert_eq!(st, 200, "{path}: {body}");
    assert!(body["url"].is_string(), "{body}");
    body
}

/// Registering one more agent is refused with a 402 naming the agents limit.
async fn agent_refused(s: &Server, key: &str, name: &str, used: u64) {
    let r = s
        .req(Method::POST, "/v1/agents", Some(key))
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap();
    let p = assert_problem(r, 402).await;
    assert_eq!(p["type"], "urn:sentryagent:problem:quota-exceeded");
    assert_eq!(p["limit_kind"], "agents", "{p}");
    assert_eq!(p["tier"], "free");
    assert_eq!(p["used"], used);
    assert_eq!(p["limit"], 3);
    let upgrade = s.url("/api/tiers/upgrade");
    assert_eq!(
        p["upgrade"],
        json!({"method": "POST", "href": upgrade, "body": {"tier": "pro"}})
    );
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("agents limit of the free tier")
            && detail.contains(&format!("{used} used of 3"))
            && detail.contains(&upgrade),
        "{detail}"
    );
}

async fn agent_count(s: &Server, key: &str) -> usize {
    let (st, list) = s.get("/v1/agents?limit=100", Some(key)).await;
    assert_eq!(st, 200, "{list}");
    list["items"].as_array().unwrap().len()
}

/// The fake saw a well-formed, authenticated, idempotent checkout request
/// for `tenant` and `tier`.
fn assert_checkout_request(fake: &FakeStripe, index: usize, tenant: &str, tier: &str) {
    let reqs = fake.requests_to(CHECKOUT);
    let r = &reqs[index];
    assert!(r.authorized, "Authorization: Bearer <secret key>");
    assert_eq!(r.status, 200, "{r:?}");
    let key = r.idempotency_key.as_deref().expect("an Idempotency-Key");
    assert!(!key.is_empty() && key.len() <= 255, "{key}");
    assert!(r.stripe_version.is_some(), "a pinned Stripe-Version");
    let price = if tier == "pro" {
        FAKE_PRICE_PRO
    } else {
        FAKE_PRICE_ENTERPRISE
    };
    for (name, want) in [
        ("mode", "subscription"),
        ("line_items[0][price]", price),
        ("line_items[0][quantity]", "1"),
        ("client_reference_id", tenant),
        ("metadata[tenant_id]", tenant),
        ("metadata[target_tier]", tier),
        ("subscription_data[metadata][tenant_id]", tenant),
        ("subscription_data[metadata][target_tier]", tier),
    ] {
        assert_eq!(r.param(name), Some(want), "{name} in {:?}", r.form);
    }
    let config = fake.config();
    assert_eq!(r.param("success_url"), Some(config.success_url.as_str()));
    assert_eq!(r.param("cancel_url"), Some(config.cancel_url.as_str()));
}

async fn billing_flow(backend: Backend) {
    let (s, fake) = start_billing(backend).await;
    let (tid, key) = s.tenant("Acme", "free").await;

    // Free: three agents, the fourth refused with 402 naming the limit.
    for i in 0..3 {
        s.agent(&key, json!({ "name": format!("bot-{i}") })).await;
    }
    agent_refused(&s, &key, "bot-3", 3).await;
    let (st, usage) = s.get("/billing/usage", Some(&key)).await;
    assert_eq!(st, 200, "{usage}");
    assert_eq!(usage["tier"], "free");
    assert_eq!(usage["agents"]["used"], 3);
    assert_eq!(usage["agents"]["limit"], 3);
    assert_eq!(usage["approaching_limit"], true);

    // Upgrade: a Checkout Session at the fake, for this tenant and tier.
    let up = checkout_url(&s, "/api/tiers/upgrade", &key, "pro").await;
    let url = up["url"].as_str().unwrap().to_owned();
    let sessions = fake.checkout_sessions();
    assert_eq!(sessions.len(), 1);
    let session = sessions[0].clone();
    assert_eq!(url, session.url);
    assert_eq!(up["id"], session.id.as_str());
    assert!(url.starts_with(&fake.base_url()), "{url}");
    assert_checkout_request(&fake, 0, &tid, "pro");
    assert_eq!(
        fake.requests_to(CHECKOUT)[0].param("customer"),
        None,
        "no customer before the first payment"
    );

    // `POST /billing/checkout` is the same request: within the hour the same
    // Idempotency-Key, so Stripe answers the same session.
    let again = checkout_url(&s, "/billing/checkout", &key, "pro").await;
    assert_checkout_request(&fake, 1, &tid, "pro");
    let reqs = fake.requests_to(CHECKOUT);
    assert_eq!(reqs[0].form, reqs[1].form);
    if reqs[0].idempotency_key == reqs[1].idempotency_key {
        assert!(reqs[1].replayed);
        assert_eq!(again["url"], url.as_str());
        assert_eq!(fake.checkout_sessions().len(), 1);
    } else {
        // The two calls fell on both sides of a UTC hour.
        assert_eq!(fake.checkout_sessions().len(), 2);
    }

    // Upgrading needs the tenant's key; free is not a checkout.
    let r = s
        .req(Method::POST, "/api/tiers/upgrade", None)
        .json(&json!({"tier": "pro"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = s
        .req(Method::POST, "/api/tiers/upgrade", Some(&key))
        .json(&json!({"tier": "free"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 422).await;
    let before_payment = tenant_doc(&s, &key, &tid).await;
    assert_eq!(before_payment["tier"], "free", "the redirect moves nothing");

    // The customer pays; Stripe sends checkout.session.completed.
    let completed = fake.complete_checkout(&session.id, later(&s, 30)).unwrap();
    acknowledged(&s, &fake, &completed, "applied").await;
    let sub = fake.subscriptions()[0].clone();
    let (st, subscription) = s.get("/billing/subscription", Some(&key)).await;
    assert_eq!(st, 200, "{subscription}");
    assert_eq!(subscription["tenant_id"], tid.as_str());
    assert_eq!(subscription["tier"], "pro");
    assert_eq!(subscription["subscription_status"], "active");
    assert_eq!(subscription["billing_enabled"], true);
    assert_eq!(subscription["customer_id"], sub.customer.as_str());
    let (st, usage) = s.get("/billing/usage", Some(&key)).await;
    assert_eq!(st, 200, "{usage}");
    assert_eq!(usage["tier"], "pro");
    assert_eq!(
        usage["limits"],
        serde_json::to_value(s.idp.config().tiers.pro).unwrap()
    );
    assert_eq!(usage["agents"]["used"], 3);
    assert_eq!(usage["agents"]["limit"], 100);
    assert_eq!(usage["approaching_limit"], false);
    assert_eq!(usage["subscription_status"], "active");

    // The limit is lifted.
    let (st, fourth) = s
        .post("/v1/agents", Some(&key), &json!({"name": "bot-3"}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{fourth}");

    // The same event delivered again changes nothing.
    let paid = tenant_doc(&s, &key, &tid).await;
    later(&s, 5);
    acknowledged(&s, &fake, &completed, "duplicate").await;
    assert_eq!(tenant_doc(&s, &key, &tid).await, paid);

    // The customer portal, for this customer.
    let r = s
        .req(Method::POST, "/billing/portal", Some(&key))
        .send()
        .await
        .unwrap();
    let (st, portal) = json_of(r).await;
    assert_eq!(st, 200, "{portal}");
    let portal_url = portal["url"].as_str().unwrap();
    assert!(
        portal_url.starts_with(&format!("{}/portal/", fake.base_url())),
        "{portal_url}"
    );
    let portal_reqs = fake.requests_to(PORTAL);
    assert_eq!(portal_reqs.len(), 1);
    let p = &portal_reqs[0];
    assert!(p.authorized);
    assert_eq!(p.status, 200);
    assert!(p.idempotency_key.as_deref().is_some_and(|k| !k.is_empty()));
    assert_eq!(p.param("customer"), Some(sub.customer.as_str()));
    assert_eq!(
        p.param("return_url"),
        fake.config().portal_return_url.as_deref()
    );

    // Stripe makes a plan change, then the cancellation; the cancellation
    // arrives first.
    let update = fake
        .update_subscription(&sub.id, "active", Some(Tier::Enterprise), later(&s, 10))
        .unwrap();
    let deleted = fake.delete_subscription(&sub.id, later(&s, 10)).unwrap();
    acknowledged(&s, &fake, &deleted, "applied").await;
    let (_, subscription) = s.get("/billing/subscription", Some(&key)).await;
    assert_eq!(subscription["tier"], "free");
    assert_eq!(subscription["subscription_status"], "canceled");
    assert_eq!(subscription["current_period_end"], Value::Null);
    // Existing agents are kept; a fifth is refused.
    assert_eq!(agent_count(&s, &key).await, 4);
    agent_refused(&s, &key, "bot-4", 4).await;
    let (_, usage) = s.get("/billing/usage", Some(&key)).await;
    assert_eq!(usage["tier"], "free");
    assert_eq!(usage["agents"]["used"], 4);
    assert_eq!(usage["agents"]["limit"], 3);
    assert_eq!(usage["subscription_status"], "canceled");

    // The older plan change, delivered late, rolls nothing back.
    let canceled = tenant_doc(&s, &key, &tid).await;
    acknowledged(&s, &fake, &update, "stale").await;
    assert_eq!(tenant_doc(&s, &key, &tid).await, canceled);
    acknowledged(&s, &fake, &update, "duplicate").await;
    acknowledged(&s, &fake, &deleted, "duplicate").await;
    assert_eq!(tenant_doc(&s, &key, &tid).await, canceled);
    agent_refused(&s, &key, "bot-4", 4).await;

    // A new upgrade names the existing customer. Its completion, tampered
    // with or badly signed, is refused with 400 and changes nothing.
    checkout_url(&s, "/api/tiers/upgrade", &key, "enterprise").await;
    let n = fake.requests_to(CHECKOUT).len();
    assert_checkout_request(&fake, n - 1, &tid, "enterprise");
    assert_eq!(
        fake.requests_to(CHECKOUT)[n - 1].param("customer"),
        Some(sub.customer.as_str())
    );
    let session2 = fake
        .checkout_sessions()
        .into_iter()
        .find(|c| c.price == FAKE_PRICE_ENTERPRISE)
        .unwrap();
    let good = fake.complete_checkout(&session2.id, later(&s, 10)).unwrap();
    let now = s.clock.now().unix_secs();
    let text = String::from_utf8(good.body.clone()).unwrap();
    let tampered = SignedWebhook {
        body: text
            .replace("\"enterprise\"", "\"pro\"")
            .replace(&tid, TenantId::generate().as_str())
            .into_bytes(),
        ..good.clone()
    };
    assert_ne!(tampered.body, good.body);
    let wrong_secret = SignedWebhook {
        header: signature_header("whsec_not_the_secret", now, &good.body),
        ..good.clone()
    };
    let only_v0 = SignedWebhook {
        header: good.header.replace("v1=", "v0="),
        ..good.clone()
    };
    let too_old = SignedWebhook {
        header: fake.sign(&good.body, Timestamp::from_unix_secs(now - 301)),
        ..good.clone()
    };
    let too_new = SignedWebhook {
        header: fake.sign(&good.body, Timestamp::from_unix_secs(now + 301)),
        ..good.clone()
    };
    let garbage = SignedWebhook {
        header: "t=abc,v1=zz".into(),
        ..good.clone()
    };
    for bad in [
        &tampered,
        &wrong_secret,
        &only_v0,
        &too_old,
        &too_new,
        &garbage,
    ] {
        refused(&s, bad).await;
    }
    assert_eq!(tenant_doc(&s, &key, &tid).await, canceled);

    // An event type that does not concern billing: acknowledged, ignored.
    let refund = fake.event(
        "charge.refunded",
        json!({"id": "ch_1", "object": "charge", "customer": sub.customer}),
        later(&s, 1),
    );
    acknowledged(&s, &fake, &refund, "ignored").await;
    // An event for a tenant this IdP does not know: acknowledged, recorded.
    let ghost = TenantId::generate().to_string();
    let stranger = fake.event(
        "customer.subscription.deleted",
        json!({"id": "sub_ghost", "object": "subscription", "customer": "cus_ghost",
               "status": "canceled", "metadata": {"tenant_id": ghost}}),
        later(&s, 1),
    );
    acknowledged(&s, &fake, &stranger, "unknown_tenant").await;
    acknowledged(&s, &fake, &stranger, "unknown_tenant").await;
    assert_eq!(tenant_doc(&s, &key, &tid).await, canceled);
    let (st, audit) = s
        .get(
            "/v1/audit?action=billing.event_unknown_tenant&limit=100",
            Some(&s.op),
        )
        .await;
    assert_eq!(st, 200, "{audit}");
    let recorded: Vec<&Value> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"] == stranger.event_id.as_str())
        .collect();
    assert_eq!(recorded.len(), 1, "recorded once: {audit}");

    // The genuine delivery, on time, applies.
    let fresh = SignedWebhook {
        header: fake.sign(&good.body, s.clock.now()),
        ..good
    };
    acknowledged(&s, &fake, &fresh, "applied").await;
    let (_, subscription) = s.get("/billing/subscription", Some(&key)).await;
    assert_eq!(subscription["tier"], "enterprise");
    assert_eq!(subscription["subscription_status"], "active");
    assert_eq!(subscription["customer_id"], sub.customer.as_str());
    s.agent(&key, json!({"name": "bot-4"})).await;
    assert_eq!(agent_count(&s, &key).await, 5);

    // A late event of the old, replaced subscription says so and changes
    // nothing.
    let enterprise = tenant_doc(&s, &key, &tid).await;
    let old = fake.delete_subscription(&sub.id, later(&s, 5)).unwrap();
    acknowledged(&s, &fake, &old, "other_subscription").await;
    assert_eq!(tenant_doc(&s, &key, &tid).await, enterprise);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_billing_flow_over_http() {
    billing_flow(Backend::Sled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_billing_flow_over_http() {
    if !http_helpers::services_available("postgres_billing_flow_over_http").await {
        return;
    }
    billing_flow(Backend::PostgresRedis).await;
}

/// The webhook route takes no admin key (Stripe sends none, and a stray
/// `Authorization` header changes nothing) but requires `Stripe-Signature`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_needs_no_admin_key_but_a_signature() {
    let (s, fake) = start_billing(Backend::FromEnv).await;
    let (tid, key) = s.tenant("Hooks", "free").await;
    let up = checkout_url(&s, "/api/tiers/upgrade", &key, "pro").await;
    let completed = fake
        .complete_checkout(up["id"].as_str().unwrap(), later(&s, 1))
        .unwrap();
    let post = |sig: Option<&str>, auth: Option<&str>| {
        let mut r = s
            .http
            .post(s.url("/billing/webhook"))
            .header("content-type", "application/json")
            .body(completed.body.clone());
        if let Some(sig) = sig {
            r = r.header("stripe-signature", sig);
        }
        if let Some(auth) = auth {
            r = r.header("authorization", auth);
        }
        r.send()
    };

    // No signature: 400, whatever admin key comes along.
    for auth in [
        None,
        Some(format!("Bearer {}", s.op)),
        Some(format!("Bearer {key}")),
    ] {
        let r = post(None, auth.as_deref()).await.unwrap();
        let p = assert_problem(r, 400).await;
        assert!(
            p["detail"].as_str().unwrap().contains("Stripe-Signature"),
            "{p}"
        );
        let r = post(Some(""), auth.as_deref()).await.unwrap();
        assert_problem(r, 400).await;
    }
    let free = tenant_doc(&s, &key, &tid).await;
    assert_eq!(free["tier"], "free");

    // Signed, with no Authorization at all: applied.
    let r = post(Some(&completed.header), None).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "applied");
    assert_eq!(tenant_doc(&s, &key, &tid).await["tier"], "pro");
    // An invalid admin key is not looked at either.
    let r = post(Some(&completed.header), Some("Bearer sa_ak_not_a_key"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "duplicate");
}

//! Public endpoints (marketplace, A2A card, DID documents, publishers),
//! billing routes, and operations (health, metrics, OpenAPI, explorer,
//! request ids) over real HTTP.

mod http_helpers;

use std::sync::Arc;

use async_trait::async_trait;
use http_helpers::{Setup, assert_problem, start, start_with};
use reqwest::Method;
use sentryagent_core::BackendHealth;
use sentryagent_core::{BillingEvent, BillingEventKind, CheckoutSession, UsageReport};
use sentryagent_core::{BillingProvider, Error, Tenant, TenantId, Tier, Timestamp};
use sentryagent_http::RouterConfig;
use serde_json::{Value, json};

#[tokio::test]
async fn marketplace_lists_public_agents_with_card_and_did_and_no_secret() {
    let s = start().await;
    let (tid, key) = s.tenant("Acme Labs", "pro").await;
    let public = s
        .agent(
            &key,
            json!({"name": "Invoice Finder", "description": "finds invoices", "version": "2.1.0",
                   "capabilities": ["invoices.search", "invoices.read"], "tags": ["finance"],
                   "category": "accounting", "visibility": "public", "allowed_scopes": ["secret-scope"]}),
        )
        .await;
    let private = s.agent(&key, json!({"name": "Hidden"})).await;
    s.agent(
        &key,
        json!({"name": "Draft", "visibility": "public", "state": "draft", "capabilities": ["invoices.search"]}),
    )
    .await;
    let pid = public["id"].as_str().unwrap();

    for q in [
        "",
        "?q=invoice",
        "?capability=invoices.search",
        "?tag=finance",
        "?category=accounting",
        &format!("?publisher={tid}"),
    ] {
        let (st, page) = s.get(&format!("/v1/marketplace/agents{q}"), None).await;
        assert_eq!(st, 200, "{q}");
        let items = page["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{q}: {page}");
        assert_eq!(items[0]["id"], pid);
    }
    let (_, none) = s.get("/v1/marketplace/agents?q=nothingmatches", None).await;
    assert!(none["items"].as_array().unwrap().is_empty());

    let r = s
        .http
        .get(s.url(&format!("/v1/marketplace/agents/{pid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(!text.contains("sa_cs_"));
    assert!(!text.contains("secret-scope"));
    assert!(!text.contains(r#""d":"#));
    let d: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(d["agent"]["name"], "Invoice Finder");
    assert_eq!(d["publisher"]["display_name"], "Acme Labs");
    assert_eq!(d["did_document"]["id"], public["did"]);
    let card = &d["agent_card"];
    assert_eq!(card["name"], "Invoice Finder");
    assert_eq!(card["description"], "finds invoices");
    assert_eq!(card["version"], "2.1.0");
    assert_eq!(card["provider"]["organization"], "Acme Labs");
    assert!(card["provider"]["url"].is_string());
    assert!(card["capabilities"].is_object());
    let skills: Vec<&str> = card["skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(skills, ["invoices.search", "invoices.read"]);
    assert_eq!(
        card["securitySchemes"]["oauth2"]["oauth2SecurityScheme"]["flows"]["clientCredentials"]["tokenUrl"],
        s.url("/oauth2/token")
    );
    assert!(card["supportedInterfaces"][0]["url"].is_string());
    assert_eq!(card["supportedInterfaces"][0]["protocolVersion"], "1.0");
    assert_eq!(
        card["capabilities"]["extensions"][0]["params"]["did"],
        public["did"]
    );
    assert_eq!(card["signatures"].as_array().unwrap().len(), 1);
    // The signed card on its own, cacheable and readable from any origin.
    let r = s
        .http
        .get(s.url(&format!("/v1/marketplace/agents/{pid}/agent-card.json")))
        .header("origin", "https://directory.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "public, max-age=60");
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(&r.json::<Value>().await.unwrap(), card);
    assert_eq!(
        d["agent_card_url"],
        s.url(&format!("/v1/marketplace/agents/{pid}/agent-card.json"))
    );

    // Private and draft agents are not in the marketplace.
    let r = s
        .req(
            Method::GET,
            &format!("/v1/marketplace/agents/{}", private["id"].as_str().unwrap()),
            None,
        )
        .send()
        .await
        .unwrap();
    assert_problem(r, 404).await;

    // did.json: public for marketplace agents; private ones only for their tenant.
    let r = s
        .req(Method::GET, &format!("/v1/agents/{pid}/did.json"), None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/did+ld+json");
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["id"], public["did"]);
    assert_eq!(
        doc["verificationMethod"][0]["type"],
        "Ed25519VerificationKey2020"
    );
    let priv_path = format!("/v1/agents/{}/did.json", private["id"].as_str().unwrap());
    let r = s.req(Method::GET, &priv_path, None).send().await.unwrap();
    assert_problem(r, 404).await;
    let (st, doc) = s.get(&priv_path, Some(&key)).await;
    assert_eq!(st, 200);
    assert_eq!(doc["id"], private["did"]);
    let r = s
        .req(Method::GET, "/v1/agents/not%20an%20id/did.json", None)
        .send()
        .await
        .unwrap();
    assert_problem(r, 404).await;

    // Publisher profile by slug.
    let (st, p) = s.get("/v1/publishers/acme-labs", None).await;
    assert_eq!(st, 200);
    assert_eq!(p["publisher"]["id"], tid);
    assert_eq!(p["publisher"]["verified"], false);
    assert_eq!(p["agents"]["items"][0]["id"], pid);
    assert!(p["publisher"].get("billing").is_none());
    let r = s
        .req(Method::GET, "/v1/publishers/nobody", None)
        .send()
        .await
        .unwrap();
    assert_problem(r, 404).await;
}

#[tokio::test]
async fn health_endpoints_report_backends_and_503_when_one_is_down() {
    let s = start().await;
    let (st, h) = s.get("/health", None).await;
    assert_eq!((st.as_u16(), h["status"].as_str()), (200, Some("up")));
    let (st, _) = s.get("/health/ready", None).await;
    assert_eq!(st, 200);
    let (st, d) = s.get("/health/detailed", None).await;
    assert_eq!(st, 200);
    assert_eq!(d["status"], "up");
    assert_eq!(d["backends"][0]["backend"], "memory");
    assert!(d["backends"][0]["latency_us"].is_u64());

    let down = start_with(Setup {
        router: RouterConfig::default().health_probe(|| async {
            vec![BackendHealth::down("redis", "connection refused").with_detail("pool_size", 8)]
        }),
        ..Default::default()
    })
    .await;
    let (st, d) = down.get("/health/detailed", None).await;
    assert_eq!(st, 503);
    assert_eq!(d["status"], "down");
    let redis = |d: &Value| {
        d["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["backend"] == "redis")
            .cloned()
            .expect("the redis probe is listed")
    };
    // The public sees the status, not the figures nor the error's text.
    let public = redis(&d);
    assert_eq!(public["status"], "down");
    assert_eq!(public["details"], json!({}));
    assert_eq!(
        public["error"], "unavailable (details for operator keys)",
        "{public}"
    );
    assert!(!d.to_string().contains("connection refused"), "{d}");
    // An operator key sees everything.
    let (st, d) = down.get("/health/detailed", Some(&down.op)).await;
    assert_eq!(st, 503);
    let full = redis(&d);
    assert_eq!(full["details"]["pool_size"], 8, "{full}");
    assert_eq!(full["error"], "connection refused");
    // A tenant's key is not an operator's.
    let (_, tenant_key) = down.tenant("Acme", "pro").await;
    let (_, d) = down.get("/health/detailed", Some(&tenant_key)).await;
    assert_eq!(redis(&d)["details"], json!({}));
    // A bad key is refused, as on every route that takes one.
    let (st, _) = down.get("/health/detailed", Some("sa_ak_nope")).await;
    assert_eq!(st, 401);
    let (st, _) = down.get("/health/ready", None).await;
    assert_eq!(st, 503);
    let (st, _) = down.get("/health", None).await;
    assert_eq!(st, 200);
    let m = down.metrics().await;
    assert!(
        m.contains(r#"sentryagent_backend_up{backend="redis"} 0"#),
        "{m}"
    );
    assert!(
        m.contains(r#"sentryagent_backend_pool{backend="redis",stat="pool_size"} 8"#),
        "{m}"
    );
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_tokens_and_requests_by_route_and_never_show_tenant_ids() {
    let s = start().await;
    let (tid, key) = s.tenant("Acme", "pro").await;
    let a = s.agent(&key, json!({"name": "bot"})).await;
    let aid = a["id"].as_str().unwrap();
    let before = s.metrics().await;
    assert_eq!(metric(&before, "sentryagent_tokens_issued_total"), 0.0);
    let (st, _) = s
        .token_post(aid, a["client_secret"].as_str().unwrap(), &[])
        .await;
    assert_eq!(st, 200);
    let (st, _) = s.token_post(aid, "wrong", &[]).await;
    assert_eq!(st, 401);
    s.get(&format!("/v1/agents/{aid}"), Some(&key)).await;
    let after = s.metrics().await;
    assert_eq!(metric(&after, "sentryagent_tokens_issued_total"), 1.0);
    assert_eq!(
        metric(
            &after,
            r#"sentryagent_token_errors_total{error="invalid_client"}"#
        ),
        1.0
    );
    assert!(after.contains(
        r#"sentryagent_http_requests_total{route="/oauth2/token",method="POST",status="200"} 1"#
    ));
    assert!(after.contains(r#"route="/v1/agents/{id}",method="GET",status="200""#));
    assert!(after.contains(r#"sentryagent_api_calls_total{tier="pro"}"#));
    assert!(
        after.contains(
            r#"sentryagent_rate_limit_decisions_total{scope="token",outcome="allowed"} 1"#
        )
    );
    assert!(after.contains("sentryagent_http_request_duration_seconds_bucket"));
    assert!(!after.contains(&tid), "a tenant id leaked into /metrics");
    assert!(!after.contains(aid), "an agent id leaked into /metrics");
    let r = s.http.get(s.url("/metrics")).send().await.unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
}

#[tokio::test]
async fn openapi_lists_the_routes_and_the_explorer_is_served_offline() {
    let s = start_with(Setup {
        prefix: "/idp",
        ..Default::default()
    })
    .await;
    let (st, doc) = s.get("/openapi.json", None).await;
    assert_eq!(st, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(doc["servers"][0]["url"], s.base);
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
        "/.well-known/jwks.json",
        "/oauth2/token",
        "/oauth2/introspect",
        "/oauth2/revoke",
        "/v1/tenants",
        "/v1/tenants/{id}/api-keys",
        "/v1/agents",
        "/v1/agents/{id}",
        "/v1/agents/{id}/lifecycle",
        "/v1/agents/{id}/credentials/rotate",
        "/v1/agents/{id}/credentials/revoke",
        "/v1/agents/{id}/did.json",
        "/v1/audit",
        "/v1/audit/stream",
        "/v1/analytics/tokens/daily",
        "/v1/analytics/heatmap",
        "/v1/analytics/agents",
        "/v1/marketplace/agents",
        "/v1/marketplace/agents/{id}",
        "/v1/marketplace/agents/{id}/agent-card.json",
        "/v1/marketplace/agents/{id}/oasf.json",
        "/v1/marketplace/agents/{id}/badge",
        "/v1/marketplace/categories",
        "/v1/credentials/status/revocation",
        "/v1/credentials/verify",
        "/.well-known/did.json",
        "/did.json",
        "/v1/publishers/{slug}",
        "/billing/usage",
        "/billing/checkout",
        "/api/tiers/upgrade",
        "/billing/webhook",
        "/billing/subscription",
        "/billing/portal",
        "/health",
        "/health/ready",
        "/health/detailed",
        "/metrics",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    assert!(paths["/v1/agents"].get("get").is_some() && paths["/v1/agents"].get("post").is_some());

    // The explorer: a relative redirect, HTML, and its assets, all local.
    let r = s.http.get(s.url("/explorer")).send().await.unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], "explorer/");
    let r = s.http.get(s.url("/explorer/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = r.text().await.unwrap();
    assert!(html.contains("swagger-ui"));
    assert!(
        !html.contains("https://"),
        "the page must load nothing from the network"
    );
    let init = s
        .http
        .get(s.url("/explorer/swagger-initializer.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(init.contains("../openapi.json"));
    let r = s
        .http
        .get(s.url("/explorer/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s.http.get(s.url("/explorer/nope.js")).send().await.unwrap();
    assert_problem(r, 404).await;
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let s = start().await;
    let r = s
        .http
        .get(s.url("/health"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let r = s.http.get(s.url("/health")).send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"].len(), 32);
    let r = s
        .http
        .get(s.url("/health"))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    assert_ne!(r.headers()["x-request-id"], "bad id with spaces");
}

#[tokio::test]
async fn billing_off_says_so_clearly() {
    let s = start().await;
    let (_, key) = s.tenant("Acme", "free").await;
    for path in ["/api/tiers/upgrade", "/billing/checkout"] {
        let r = s
            .req(Method::POST, path, Some(&key))
            .json(&json!({"tier": "pro"}))
            .send()
            .await
            .unwrap();
        let p = assert_problem(r, 501).await;
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains("billing is not configured")
        );
    }
    let (st, sub) = s.get("/billing/subscription", Some(&key)).await;
    assert_eq!(st, 200);
    assert_eq!(sub["billing_enabled"], false);
    assert_eq!(sub["tier"], "free");
    let r = s
        .req(Method::POST, "/billing/portal", Some(&key))
        .send()
        .await
        .unwrap();
    assert_problem(r, 409).await;
    let r = s
        .http
        .post(s.url("/billing/webhook"))
        .header("stripe-signature", "t=1,v1=00")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_problem(r, 501).await;
    // Webhook bodies may be larger than management bodies, up to 1 MiB.
    for (size, status) in [(200 * 1024, 501), (1024 * 1024 + 1, 413)] {
        let r = s
            .http
            .post(s.url("/billing/webhook"))
            .header("stripe-signature", "t=1,v1=00")
            .body(vec![b' '; size])
            .send()
            .await
            .unwrap();
        assert_problem(r, status).await;
    }
    let r = s
        .req(Method::POST, "/api/tiers/upgrade", Some(&key))
        .json(&json!({"tier": "platinum"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 422).await;
}

/// A billing provider for the routes: signature `good` verifies; the body is
/// `{"id", "tenant_id", "tier"}`.
#[derive(Debug)]
struct FakeBilling;

#[async_trait]
impl BillingProvider for FakeBilling {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn checkout(
        &self,
        tenant: &Tenant,
        tier: Tier,
    ) -> sentryagent_core::Result<CheckoutSession> {
        Ok(CheckoutSession {
            id: format!("cs_{}", tenant.slug),
            url: format!("https://pay.example/{tier}"),
        })
    }

    async fn portal(&self, _tenant: &Tenant) -> sentryagent_core::Result<String> {
        Ok("https://pay.example/portal".into())
    }

    fn parse_webhook(
        &self,
        signature: &str,
        body: &[u8],
        now: Timestamp,
    ) -> sentryagent_core::Result<Option<BillingEvent>> {
        if signature != "good" {
            return Err(Error::Unauthenticated);
        }
        let v: Value =
            serde_json::from_slice(body).map_err(|e| Error::invalid("body", e.to_string()))?;
        Ok(Some(BillingEvent {
            id: v["id"].as_str().unwrap_or_default().to_owned(),
            created: now,
            tenant_id: v["tenant_id"]
                .as_str()
                .and_then(|t| TenantId::parse(t).ok()),
            customer_id: Some("cus_1".into()),
            subscription_id: Some("sub_1".into()),
            kind: BillingEventKind::CheckoutCompleted { tier: Tier::Pro },
        }))
    }

    async fn report_usage(&self, _reports: &[UsageReport]) -> sentryagent_core::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn billing_routes_with_a_provider_and_the_webhook_signature_check() {
    let s = start_with(Setup {
        build: Box::new(|b| b.billing(Arc::new(FakeBilling))),
        ..Default::default()
    })
    .await;
    let (tid, key) = s.tenant("Acme", "free").await;
    let (st, u) = s
        .post("/api/tiers/upgrade", Some(&key), &json!({"tier": "pro"}))
        .await;
    assert_eq!(st, 200, "{u}");
    assert_eq!(u["url"], "https://pay.example/pro");
    let (st, _) = s
        .post(
            "/billing/checkout",
            Some(&key),
            &json!({"tier": "enterprise"}),
        )
        .await;
    assert_eq!(st, 200);

    let hook = |sig: Option<&'static str>, body: String| {
        let mut r = s.http.post(s.url("/billing/webhook")).body(body);
        if let Some(sig) = sig {
            r = r.header("stripe-signature", sig);
        }
        r.send()
    };
    let event = json!({"id": "evt_1", "tenant_id": tid}).to_string();
    let r = hook(Some("bad"), event.clone()).await.unwrap();
    let p = assert_problem(r, 400).await;
    assert!(p["detail"].as_str().unwrap().contains("signature"));
    let r = hook(None, event.clone()).await.unwrap();
    assert_problem(r, 400).await;
    let (_, t) = s.get(&format!("/v1/tenants/{tid}"), Some(&key)).await;
    assert_eq!(t["tier"], "free", "a rejected delivery changes nothing");

    let r = hook(Some("good"), event.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"received": true, "outcome": "applied"})
    );
    let r = hook(Some("good"), event).await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "duplicate");
    let r = hook(
        Some("good"),
        json!({"id": "evt_2", "tenant_id": "tnt_unknown"}).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["outcome"],
        "unknown_tenant"
    );

    let (_, sub) = s.get("/billing/subscription", Some(&key)).await;
    assert_eq!(sub["tier"], "pro");
    assert_eq!(sub["subscription_status"], "active");
    assert_eq!(sub["billing_enabled"], true);
    let (st, p) = s.post("/billing/portal", Some(&key), &json!({})).await;
    assert_eq!(
        (st.as_u16(), p["url"].as_str()),
        (200, Some("https://pay.example/portal"))
    );
}

//! The management API contract over real HTTP: tenants, keys, agents,
//! lifecycle, credentials, tenant isolation, audit (query and live tail),
//! usage, analytics, tier limits and rate limits.

mod http_helpers;

use std::time::Duration;

use futures_util::StreamExt;
use http_helpers::{Setup, assert_problem, start, start_with};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test]
async fn tenants_keys_and_agents_follow_the_contract() {
    let s = start().await;
    // Tenant (operator key) -> 201 with an id.
    let (st, t) = s
        .post(
            "/v1/tenants",
            Some(&s.op),
            &json!({"name": "Acme Robotics", "tier": "free"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let tid = t["id"].as_str().unwrap();
    assert_eq!(t["tier"], "free");
    assert_eq!(t["slug"], "acme-robotics");

    // API key -> 201, shown once, listed without it.
    let (st, k) = s
        .post(
            &format!("/v1/tenants/{tid}/api-keys"),
            Some(&s.op),
            &json!({"name": "ci"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let key = k["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with(k["prefix"].as_str().unwrap()));
    let (st, list) = s
        .get(&format!("/v1/tenants/{tid}/api-keys"), Some(&key))
        .await;
    assert_eq!(st, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(list[0].get("key").is_none() && list[0].get("hash").is_none());

    // Agent with a generated key: id, client_id, client_secret, did, private_jwk.
    let a = s
        .agent(
            &key,
            json!({"name": "bot", "description": "finds things", "capabilities": ["search"], "visibility": "public"}),
        )
        .await;
    let aid = a["id"].as_str().unwrap();
    assert_eq!(a["client_id"], a["id"]);
    assert!(a["client_secret"].as_str().unwrap().starts_with("sa_cs_"));
    assert!(a["did"].as_str().unwrap().starts_with("did:key:z6Mk"));
    assert_eq!(a["private_jwk"]["kty"], "OKP");
    assert_eq!(a["private_jwk"]["kid"], a["did"]);

    // Agent with its own did: no private key comes back.
    let own = s
        .agent(
            &key,
            json!({"name": "own", "did": "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK", "state": "draft"}),
        )
        .await;
    assert!(own.get("private_jwk").is_none());
    assert_eq!(own["state"], "draft");

    // List, get, patch.
    let (st, page) = s.get("/v1/agents", Some(&key)).await;
    assert_eq!(st, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let (st, got) = s.get(&format!("/v1/agents/{aid}"), Some(&key)).await;
    assert_eq!(st, 200);
    assert!(got.get("client_secret").is_none());
    let (st, patched) = s
        .send(
            Method::PATCH,
            &format!("/v1/agents/{aid}"),
            Some(&key),
            &json!({"description": "finds more", "tags": ["fast"]}),
        )
        .await;
    assert_eq!(st, 200, "{patched}");
    assert_eq!(patched["description"], "finds more");

    // Lifecycle: legal and illegal transitions.
    let (st, l) = s
        .post(
            &format!("/v1/agents/{aid}/lifecycle"),
            Some(&key),
            &json!({"state": "listed"}),
        )
        .await;
    assert_eq!((st, l["state"].as_str()), (StatusCode::OK, Some("listed")));
    let r = s
        .req(
            Method::POST,
            &format!("/v1/agents/{}/lifecycle", own["id"].as_str().unwrap()),
            Some(&key),
        )
        .json(&json!({"state": "listed"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 409).await;

    // Rotate: a new secret and the end of the grace period; both work.
    let old = a["client_secret"].as_str().unwrap();
    let (st, rot) = s
        .post(
            &format!("/v1/agents/{aid}/credentials/rotate"),
            Some(&key),
            &json!({}),
        )
        .await;
    assert_eq!(st, 200);
    let new = rot["client_secret"].as_str().unwrap();
    assert!(rot["previous_valid_until"].is_string());
    assert_eq!(s.token_post(aid, old, &[]).await.0, 200);
    assert_eq!(s.token_post(aid, new, &[]).await.0, 200);

    // Revoke: nothing works any more.
    let (st, rev) = s
        .post(
            &format!("/v1/agents/{aid}/credentials/revoke"),
            Some(&key),
            &json!({}),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(rev["revoked"], 2);
    assert_eq!(s.token_post(aid, new, &[]).await.0, 401);

    // Tenant changes (operator), publisher profile (tenant key).
    let (st, t2) = s
        .send(
            Method::PATCH,
            &format!("/v1/tenants/{tid}"),
            Some(&s.op),
            &json!({"tier": "pro"}),
        )
        .await;
    assert_eq!((st, t2["tier"].as_str()), (StatusCode::OK, Some("pro")));
    let (st, p) = s
        .send(
            Method::PUT,
            &format!("/v1/tenants/{tid}/publisher"),
            Some(&key),
            &json!({"display_name": "Acme", "website": "https://acme.example"}),
        )
        .await;
    assert_eq!(st, 200, "{p}");
    assert_eq!(p["publisher"]["website"], "https://acme.example");

    // Key revocation: the key stops working.
    let kid = k["id"].as_str().unwrap();
    let r = s
        .req(
            Method::DELETE,
            &format!("/v1/tenants/{tid}/api-keys/{kid}"),
            Some(&key),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = s
        .req(Method::GET, "/v1/agents", Some(&key))
        .send()
        .await
        .unwrap();
    assert_problem(r, 401).await;
}

#[tokio::test]
async fn a_tenant_key_never_reaches_another_tenant_and_anonymous_calls_get_401() {
    let s = start().await;
    let (ta, ka) = s.tenant("A", "free").await;
    let (tb, kb) = s.tenant("B", "free").await;
    let b_agent = s.agent(&kb, json!({"name": "b-bot"})).await;
    let bid = b_agent["id"].as_str().unwrap();

    for (method, path) in [
        (Method::GET, format!("/v1/agents/{bid}")),
        (Method::PATCH, format!("/v1/agents/{bid}")),
        (Method::POST, format!("/v1/agents/{bid}/lifecycle")),
        (Method::POST, format!("/v1/agents/{bid}/credentials/rotate")),
        (Method::POST, format!("/v1/agents/{bid}/credentials/revoke")),
        (Method::GET, format!("/v1/agents/{bid}/did.json")),
        (Method::GET, format!("/v1/tenants/{tb}")),
        (Method::GET, format!("/v1/tenants/{tb}/api-keys")),
        (Method::GET, format!("/v1/agents?tenant_id={tb}")),
        (Method::GET, format!("/v1/audit?tenant_id={tb}")),
        (Method::GET, format!("/billing/usage?tenant_id={tb}")),
        (Method::GET, format!("/v1/analytics/heatmap?tenant_id={tb}")),
    ] {
        let body = match path.as_str() {
            p if p.ends_with("lifecycle") => json!({"state": "paused"}),
            _ => json!({}),
        };
        let mut r = s.req(method.clone(), &path, Some(&ka));
        if method != Method::GET {
            r = r.json(&body);
        }
        let r = r.send().await.unwrap();
        assert_problem(r, 404).await;
    }
    // B's agent is untouched.
    let (_, still) = s.get(&format!("/v1/agents/{bid}"), Some(&kb)).await;
    assert_eq!(still["state"], "active");
    assert_eq!(
        s.token_post(bid, b_agent["client_secret"].as_str().unwrap(), &[])
            .await
            .0,
        200
    );

    // Operator-only routes are 403 for tenant keys.
    let r = s
        .req(Method::GET, "/v1/tenants", Some(&ka))
        .send()
        .await
        .unwrap();
    assert_problem(r, 403).await;
    let _ = ta;

    // Unauthenticated: 401 problem with a Bearer challenge.
    for path in [
        "/v1/agents",
        "/v1/tenants",
        "/v1/audit",
        "/billing/usage",
        "/v1/analytics/agents",
    ] {
        let r = s.req(Method::GET, path, None).send().await.unwrap();
        assert_eq!(
            r.headers()["www-authenticate"],
            "Bearer realm=\"sentryagent\""
        );
        assert_problem(r, 401).await;
        let r = s
            .req(
                Method::GET,
                path,
                Some("sa_ak_not-a-real-key-at-all-0000000000000"),
            )
            .send()
            .await
            .unwrap();
        assert_problem(r, 401).await;
        let r = s
            .http
            .get(s.url(path))
            .header("authorization", "Basic YTpi")
            .send()
            .await
            .unwrap();
        assert_problem(r, 401).await;
    }
}

#[tokio::test]
async fn audit_query_filters_pages_and_the_live_tail_streams() {
    let s = start().await;
    let (_, key) = s.tenant("Acme", "pro").await;
    for i in 0..3 {
        s.agent(&key, json!({"name": format!("bot-{i}")})).await;
    }
    let (st, page) = s
        .get("/v1/audit?action=agent.registered&limit=2", Some(&key))
        .await;
    assert_eq!(st, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, next) = s
        .get(
            &format!("/v1/audit?action=agent.registered&limit=2&cursor={cursor}"),
            Some(&key),
        )
        .await;
    assert_eq!(next["items"].as_array().unwrap().len(), 1);
    assert!(next["items"][0]["hash"].is_string());
    let (st, v) = s.get("/v1/audit/verify", Some(&key)).await;
    assert_eq!(st, 200);
    assert!(v["head"]["seq"].as_u64().unwrap() >= 4);
    let r = s
        .req(Method::GET, "/v1/audit?cursor=nope", Some(&key))
        .send()
        .await
        .unwrap();
    assert_problem(r, 422).await;

    // Live tail: events of the key's tenant only.
    let (_, other) = s.tenant("Other", "free").await;
    let res = s
        .req(Method::GET, "/v1/audit/stream", Some(&key))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    s.agent(&other, json!({"name": "not-mine"})).await;
    s.agent(&key, json!({"name": "live-1"})).await;
    s.agent(&key, json!({"name": "live-2"})).await;
    let mut stream = res.bytes_stream();
    let mut text = String::new();
    let events = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let chunk = stream.next().await.unwrap().unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
            let events: Vec<Value> = text
                .split("\n\n")
                .filter(|e| e.contains("event: audit"))
                .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
                .filter_map(|d| serde_json::from_str(d).ok())
                .collect();
            if events.len() >= 2 {
                return events;
            }
        }
    })
    .await
    .expect("two events within 10 s");
    drop(stream);
    for e in &events {
        assert_eq!(e["action"], "agent.registered");
        assert_ne!(e["target"], Value::Null);
    }
    assert!(!text.contains("not-mine"));
    assert!(!text.contains("client_secret"));
}

#[tokio::test]
async fn usage_approaching_limit_then_402_on_the_fourth_free_agent() {
    let s = start().await;
    let (_, key) = s.tenant("Small", "free").await;
    s.agent(&key, json!({"name": "a1"})).await;
    s.agent(&key, json!({"name": "a2"})).await;
    let (st, u) = s.get("/billing/usage", Some(&key)).await;
    assert_eq!(st, 200);
    assert_eq!(u["tier"], "free");
    assert_eq!(u["agents"]["used"], 2);
    assert_eq!(u["approaching_limit"], false);
    s.agent(&key, json!({"name": "a3"})).await;
    let (_, u) = s.get("/billing/usage", Some(&key)).await;
    assert_eq!(u["agents"]["used"], 3);
    assert_eq!(u["agents"]["limit"], 3);
    assert_eq!(u["agents"]["approaching_limit"], true);
    assert_eq!(u["approaching_limit"], true);
    assert!(u["api_calls_today"]["used"].as_u64().unwrap() >= 5);
    assert!(u["token_issuances_this_month"].is_object());

    let r = s
        .req(Method::POST, "/v1/agents", Some(&key))
        .json(&json!({"name": "a4"}))
        .send()
        .await
        .unwrap();
    let p = assert_problem(r, 402).await;
    assert_eq!(p["limit_kind"], "agents");
    assert_eq!(p["used"], 3);
    assert_eq!(p["limit"], 3);
    assert_eq!(p["tier"], "free");
    assert_eq!(p["upgrade"]["href"], s.url("/api/tiers/upgrade"));
    assert!(p["detail"].as_str().unwrap().contains("/api/tiers/upgrade"));
}

#[tokio::test]
async fn the_management_api_rate_limit_answers_429_with_headers() {
    let s = start_with(Setup {
        configure: Box::new(|c| c.tiers.free.requests_per_minute = 5),
        ..Default::default()
    })
    .await;
    let (_, key) = s.tenant("Busy", "free").await;
    let first = s
        .req(Method::GET, "/v1/agents", Some(&key))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["ratelimit-limit"], "5");
    assert_eq!(first.headers()["ratelimit-remaining"], "4");
    assert!(first.headers().contains_key("ratelimit-reset"));
    let mut refused = None;
    for _ in 0..10 {
        let r = s
            .req(Method::GET, "/v1/agents", Some(&key))
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("refused within the burst");
    let h = r.headers().clone();
    assert!(h["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(h["ratelimit-limit"], "5");
    assert_eq!(h["ratelimit-remaining"], "0");
    assert!(h.contains_key("ratelimit-reset"));
    assert_problem(r, 429).await;

    // Time passes (the injected clock): admitted again.
    s.clock.advance(Duration::from_secs(60));
    let r = s
        .req(Method::GET, "/v1/agents", Some(&key))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Operator keys are not limited.
    for _ in 0..8 {
        let r = s
            .req(Method::GET, "/v1/tenants", Some(&s.op))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(!r.headers().contains_key("ratelimit-limit"));
    }
}

#[tokio::test]
async fn analytics_count_token_issuances() {
    let s = start().await;
    let (tid, key) = s.tenant("Acme", "pro").await;
    let a = s.agent(&key, json!({"name": "bot"})).await;
    for _ in 0..3 {
        let (st, _) = s
            .token_post(
                a["id"].as_str().unwrap(),
                a["client_secret"].as_str().unwrap(),
                &[],
            )
            .await;
        assert_eq!(st, 200);
    }
    s.idp.flush_usage().await.unwrap();
    let (st, d) = s.get("/v1/analytics/tokens/daily?days=7", Some(&key)).await;
    assert_eq!(st, 200);
    let days = d["days"].as_array().unwrap();
    assert_eq!(days.len(), 7);
    assert_eq!(days[6]["count"], 3);
    let (_, h) = s.get("/v1/analytics/heatmap", Some(&key)).await;
    let total: u64 = h["heatmap"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|n| n.as_u64().unwrap()))
        .sum();
    assert_eq!(total, 3);
    let (_, t) = s.get("/v1/analytics/agents", Some(&key)).await;
    assert_eq!(t["rows"][0]["agent_id"], a["id"]);
    assert_eq!(t["rows"][0]["token_issuances"], 3);
    // An operator names the tenant.
    let (st, t2) = s
        .get(
            &format!("/v1/analytics/agents?tenant_id={tid}"),
            Some(&s.op),
        )
        .await;
    assert_eq!((st, &t2), (StatusCode::OK, &t));
    let r = s
        .req(
            Method::GET,
            "/v1/analytics/agents?month=2026-13x",
            Some(&key),
        )
        .send()
        .await
        .unwrap();
    assert_problem(r, 422).await;
}

#[tokio::test]
async fn rotation_takes_an_optional_grace_in_seconds() {
    let s = start().await;
    let (_, key) = s.tenant("Acme", "pro").await;
    let a = s.agent(&key, json!({"name": "bot"})).await;
    let aid = a["id"].as_str().unwrap();
    let path = format!("/v1/agents/{aid}/credentials/rotate");

    // No body at all: the configured grace period; the old secret works.
    let r = s.req(Method::POST, &path, Some(&key)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let rot: Value = r.json().await.unwrap();
    let second = rot["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(
        s.token_post(aid, a["client_secret"].as_str().unwrap(), &[])
            .await
            .0,
        200
    );

    // Zero: the previous secrets stop at once.
    let (st, rot) = s
        .post(&path, Some(&key), &json!({"grace_seconds": 0}))
        .await;
    assert_eq!(st, 200, "{rot}");
    let third = rot["client_secret"].as_str().unwrap();
    assert_eq!(s.token_post(aid, &second, &[]).await.0, 401);
    assert_eq!(
        s.token_post(aid, a["client_secret"].as_str().unwrap(), &[])
            .await
            .0,
        401
    );
    assert_eq!(s.token_post(aid, third, &[]).await.0, 200);

    // Beyond 30 days, negative, or an unknown field: a problem, no rotation.
    for body in [
        json!({"grace_seconds": 2_592_001}),
        json!({"grace_seconds": -1}),
        json!({"grace": 60}),
    ] {
        let r = s
            .req(Method::POST, &path, Some(&key))
            .json(&body)
            .send()
            .await
            .unwrap();
        let p = assert_problem(r, 422).await;
        assert!(p["detail"].is_string(), "{p}");
    }
    assert_eq!(s.token_post(aid, third, &[]).await.0, 200);
    let (st, rot) = s
        .post(&path, Some(&key), &json!({"grace_seconds": 2_592_000}))
        .await;
    assert_eq!(st, 200, "{rot}");

    // The grace is in the audit trail.
    let (_, page) = s
        .get("/v1/audit?action=credential.rotated", Some(&key))
        .await;
    let graces: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["details"]["grace_seconds"].as_str().unwrap())
        .collect();
    assert_eq!(graces, ["86400", "0", "2592000"]);
}

#[tokio::test]
async fn operator_keys_are_revoked_by_an_operator_only() {
    let s = start().await;
    let (_, tenant_key) = s.tenant("Acme", "pro").await;
    let (st, k) = s
        .post("/v1/api-keys", Some(&s.op), &json!({"name": "ci"}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{k}");
    let (kid, key) = (k["id"].as_str().unwrap(), k["key"].as_str().unwrap());
    let path = format!("/v1/api-keys/{kid}");
    assert_eq!(s.get("/v1/tenants", Some(key)).await.0, 200);

    // A tenant key cannot; an unknown id is not found.
    let r = s
        .req(Method::DELETE, &path, Some(&tenant_key))
        .send()
        .await
        .unwrap();
    assert_problem(r, 403).await;
    let r = s
        .req(Method::DELETE, "/v1/api-keys/nope", Some(&s.op))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404).await;

    let r = s
        .req(Method::DELETE, &path, Some(&s.op))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = s
        .req(Method::GET, "/v1/tenants", Some(key))
        .send()
        .await
        .unwrap();
    assert_problem(r, 401).await;
    let (_, page) = s.get("/v1/audit?action=api_key.revoked", Some(&s.op)).await;
    assert_eq!(page["items"][0]["target"], kid);
}

/// Reads `n` SSE audit events (with their ids) from a stream, within 10 s.
async fn read_sse(res: reqwest::Response, n: usize) -> Vec<(String, Value)> {
    let mut stream = res.bytes_stream();
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let chunk = stream.next().await.unwrap().unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
            let events: Vec<(String, Value)> = text
                .split("\n\n")
                .filter(|e| e.contains("event: audit"))
                .filter_map(|e| {
                    let id = e.lines().find_map(|l| l.strip_prefix("id: "))?;
                    let data = e.lines().find_map(|l| l.strip_prefix("data: "))?;
                    Some((id.to_owned(), serde_json::from_str(data).ok()?))
                })
                .collect();
            if events.len() >= n {
                return events;
            }
        }
    })
    .await
    .expect("events within 10 s")
}

#[tokio::test]
async fn the_audit_stream_resumes_after_last_event_id_without_loss_or_repeats() {
    let s = start().await;
    let (tid, key) = s.tenant("Acme", "pro").await;
    let res = s
        .req(Method::GET, "/v1/audit/stream", Some(&key))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    s.agent(&key, json!({"name": "before-drop"})).await;
    let first = read_sse(res, 1).await;
    let (last_id, e) = &first[0];
    assert_eq!(*last_id, format!("{tid}:{}", e["seq"]));

    // Disconnected: three events happen.
    for i in 0..3 {
        s.agent(&key, json!({"name": format!("while-away-{i}")}))
            .await;
    }
    let res = s
        .req(Method::GET, "/v1/audit/stream", Some(&key))
        .header("last-event-id", last_id.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    s.agent(&key, json!({"name": "after-reconnect"})).await;
    let got = read_sse(res, 4).await;
    let seqs: Vec<u64> = got
        .iter()
        .map(|(_, e)| e["seq"].as_u64().unwrap())
        .collect();
    let first_seq = e["seq"].as_u64().unwrap();
    assert_eq!(
        seqs,
        (first_seq + 1..=first_seq + 4).collect::<Vec<_>>(),
        "in order, none lost, none twice"
    );
    for (id, e) in &got {
        assert_eq!(*id, format!("{tid}:{}", e["seq"]));
    }

    // A malformed id, or another tenant's chain, is refused.
    let (other, _) = s.tenant("Other", "free").await;
    for bad in ["nope", "system:x", &format!("{other}:1"), "system:1"] {
        let r = s
            .req(Method::GET, "/v1/audit/stream", Some(&key))
            .header("last-event-id", bad)
            .send()
            .await
            .unwrap();
        assert_problem(r, 422).await;
    }

    // The operator's stream of every chain resumes a tenant's chain.
    let res = s
        .req(Method::GET, "/v1/audit/stream", Some(&s.op))
        .header("last-event-id", format!("{tid}:0"))
        .send()
        .await
        .unwrap();
    let got = read_sse(res, 2).await;
    assert_eq!(got[0].0, format!("{tid}:1"));
    assert_eq!(got[1].0, format!("{tid}:2"));
}

#[tokio::test]
async fn api_keys_show_their_expiry_request_count_and_revocation_reason() {
    let s = start().await;
    let (tid, key) = s.tenant("Counted", "pro").await;
    let (st, k) = s
        .post(
            &format!("/v1/tenants/{tid}/api-keys"),
            Some(&key),
            &json!({"name": "expiring", "expires_at": "2099-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(st, 201, "{k}");
    assert_eq!(k["expires_at"], "2099-01-01T00:00:00Z");
    let (st, p) = s
        .post(
            &format!("/v1/tenants/{tid}/api-keys"),
            Some(&key),
            &json!({"name": "past", "expires_at": "2001-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!((st.as_u16(), &p["field"]), (422, &json!("expires_at")));
    for _ in 0..3 {
        assert_eq!(s.get("/v1/agents", Some(&key)).await.0, 200);
    }
    s.idp.maintenance().await.unwrap();
    let (_, list) = s
        .get(&format!("/v1/tenants/{tid}/api-keys"), Some(&key))
        .await;
    let mine = list
        .as_array()
        .unwrap()
        .iter()
        .find(|x| key.starts_with(x["prefix"].as_str().unwrap()))
        .unwrap();
    assert!(mine["request_count"].as_u64().unwrap() >= 4, "{mine}");
    let r = s
        .req(
            Method::DELETE,
            &format!("/v1/tenants/{tid}/api-keys/{}", k["id"].as_str().unwrap()),
            Some(&key),
        )
        .json(&json!({"reason": "rotated out"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (_, list) = s
        .get(&format!("/v1/tenants/{tid}/api-keys"), Some(&key))
        .await;
    let gone = list
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == k["id"])
        .unwrap();
    assert_eq!(gone["revocation_reason"], "rotated out");
    assert!(gone["revoked_at"].is_string());
}

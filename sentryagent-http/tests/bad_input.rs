//! Bad input gets a 4xx with an error body, never a 5xx: malformed JSON and
//! forms, wrong content types, repeated parameters, oversized bodies, deep
//! nesting, invalid DIDs, unknown fields, bad ids and query strings.

mod http_helpers;

use http_helpers::{Server, assert_oauth_error, assert_problem, start};
use reqwest::Method;
use serde_json::json;

async fn raw(
    s: &Server,
    method: Method,
    path: &str,
    key: Option<&str>,
    ct: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut r = s.req(method, path, key).body(body);
    if let Some(ct) = ct {
        r = r.header("content-type", ct);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn json_bodies_are_checked_before_anything_happens() {
    let s = start().await;
    let (_, key) = s.tenant("Acme", "pro").await;
    let k = Some(key.as_str());
    let json_ct = Some("application/json");

    // Malformed, truncated, empty, not UTF-8.
    for body in [
        &b"{\"name\":"[..],
        b"{name: 'x'}",
        b"",
        b"\xff\xfe{}",
        b"{\"name\":\"x\"",
    ] {
        let r = raw(&s, Method::POST, "/v1/agents", k, json_ct, body.to_vec()).await;
        assert_problem(r, 400).await;
    }
    // Wrong or missing content type.
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let r = raw(
            &s,
            Method::POST,
            "/v1/agents",
            k,
            ct,
            br#"{"name":"x"}"#.to_vec(),
        )
        .await;
        assert_problem(r, 415).await;
    }
    // Unknown fields, wrong types, null.
    for body in [
        json!({"name": "x", "is_admin": true}),
        json!({"name": 5}),
        json!(null),
        json!(["name"]),
        json!({"name": "x", "visibility": "everyone"}),
        json!({"name": "x", "state": "retired"}),
    ] {
        let r = raw(
            &s,
            Method::POST,
            "/v1/agents",
            k,
            json_ct,
            body.to_string().into_bytes(),
        )
        .await;
        assert_problem(r, 422).await;
    }
    let r = raw(
        &s,
        Method::POST,
        "/v1/tenants",
        Some(&s.op),
        json_ct,
        br#"{"name":"x","owner":"me"}"#.to_vec(),
    )
    .await;
    assert_problem(r, 422).await;

    // Deep nesting: refused before parsing (MAX_JSON_DEPTH), no crash.
    let deep = format!(
        r#"{{"name":"deep","custom_claims":{{"x":{}{}}}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let r = raw(
        &s,
        Method::POST,
        "/v1/agents",
        k,
        json_ct,
        deep.into_bytes(),
    )
    .await;
    let p = assert_problem(r, 400).await;
    assert!(p["detail"].as_str().unwrap().contains("32 levels"), "{p}");
    // Nesting within the limit is read (custom claims may be structured).
    let nested = format!(
        r#"{{"name":"nested","custom_claims":{{"x":{}1{}}}}}"#,
        "[".repeat(29),
        "]".repeat(29)
    );
    let r = raw(
        &s,
        Method::POST,
        "/v1/agents",
        k,
        json_ct,
        nested.into_bytes(),
    )
    .await;
    assert_eq!(r.status(), 201);

    // Oversized.
    let big = format!(
        r#"{{"name":"big","description":"{}"}}"#,
        "a".repeat(70 * 1024)
    );
    let r = raw(&s, Method::POST, "/v1/agents", k, json_ct, big.into_bytes()).await;
    assert_problem(r, 413).await;

    // Invalid DIDs and keys.
    for did in [
        "did:key:zBAD",
        "did:web:example.com",
        "did:key:z6LSbysY2xFMRpGMhb7tFTLMpeuPRaqaWM1yECx2AtzE3KCc",
        "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2do",
        "",
        "did:key:",
    ] {
        let body = json!({"name": "d", "did": did}).to_string();
        let r = raw(
            &s,
            Method::POST,
            "/v1/agents",
            k,
            json_ct,
            body.into_bytes(),
        )
        .await;
        let p = assert_problem(r, 422).await;
        assert_eq!(p["field"], "did", "{did}: {p}");
    }
    let r = raw(
        &s,
        Method::POST,
        "/v1/agents",
        k,
        json_ct,
        json!({"name": "j", "public_jwk": {"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "d": "AAAA"}})
            .to_string()
            .into_bytes(),
    )
    .await;
    let p = assert_problem(r, 422).await;
    assert!(p["detail"].as_str().unwrap().contains("private"), "{p}");

    // Nothing was created by any of it (but the one nested within the limit).
    let (_, page) = s.get("/v1/agents", k).await;
    let names: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["nested"]);
}

#[tokio::test]
async fn forms_at_the_oauth_endpoints_are_strict() {
    let s = start().await;
    let (_, key) = s.tenant("Acme", "pro").await;
    let a = s.agent(&key, json!({"name": "bot"})).await;
    let id = a["id"].as_str().unwrap();
    let secret = a["client_secret"].as_str().unwrap();
    let creds = format!("client_id={id}&client_secret={secret}");
    for path in ["/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"] {
        // Wrong content types.
        for ct in [Some("application/json"), Some("text/plain"), None] {
            let r = raw(&s, Method::POST, path, None, ct, creds.clone().into_bytes()).await;
            assert_oauth_error(r, 400, "invalid_request").await;
        }
        // Repeated parameters, bad escapes, invalid UTF-8.
        for body in [
            format!("{creds}&client_id={id}"),
            format!("{creds}&token=a&token=b"),
            format!("{creds}&token=%E0%A4"),
            format!("{creds}&token=%"),
        ] {
            let r = s.form(path, &body, &[]).await;
            assert_oauth_error(r, 400, "invalid_request").await;
        }
        // Oversized.
        let big = format!("{creds}&token={}", "a".repeat(70 * 1024));
        let r = s.form(path, &big, &[]).await;
        assert_oauth_error(r, 413, "invalid_request").await;
        // Binary garbage.
        let r = raw(
            &s,
            Method::POST,
            path,
            None,
            Some("application/x-www-form-urlencoded"),
            vec![0, 159, 146, 150, b'&', b'=', b'='],
        )
        .await;
        assert!(r.status().is_client_error(), "{path}: {}", r.status());
    }
    // Garbage assertions are an authentication failure, nothing more.
    for assertion in ["x", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", &"A".repeat(5000)] {
        let body = http_helpers::serde_urlencoded(&[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
        ]);
        let r = s.form("/oauth2/token", &body, &[]).await;
        assert_oauth_error(r, 401, "invalid_client").await;
    }
    // Garbage tokens are simply inactive.
    for token in ["x", "a.b.c", "eyJhbGciOiJFZERTQSJ9.e30.AAAA"] {
        let r = s
            .form("/oauth2/introspect", &format!("{creds}&token={token}"), &[])
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.json::<serde_json::Value>().await.unwrap(),
            json!({"active": false})
        );
    }
}

#[tokio::test]
async fn query_strings_paths_and_methods() {
    let s = start().await;
    let (_, key) = s.tenant("Acme", "pro").await;
    let k = Some(key.as_str());
    for path in [
        "/v1/agents?limit=abc",
        "/v1/agents?unknown=1",
        "/v1/marketplace/agents?q=a&q=b",
        "/v1/marketplace/agents?limit=-1",
        "/v1/audit?from=yesterday",
        "/v1/analytics/tokens/daily?days=many",
        "/v1/marketplace/agents?publisher=has%20space",
    ] {
        let r = s.req(Method::GET, path, k).send().await.unwrap();
        assert_problem(r, 400).await;
    }
    let long_q = format!("/v1/marketplace/agents?q={}", "a".repeat(300));
    let r = s.req(Method::GET, &long_q, None).send().await.unwrap();
    assert_problem(r, 422).await;
    for path in [
        "/v1/agents/..%2F..%2Fetc",
        "/v1/agents/agt_doesnotexist",
        "/v1/agents/%00",
        "/v1/tenants/x%20y",
        "/v1/marketplace/agents/%F0%9F%92%A9",
        "/nowhere",
        "/v1/agents/a/b/c/d",
    ] {
        let r = s.req(Method::GET, path, k).send().await.unwrap();
        assert_problem(r, 404).await;
    }
    let r = s
        .req(Method::DELETE, "/oauth2/token", None)
        .send()
        .await
        .unwrap();
    assert_problem(r, 405).await;
    let r = s.req(Method::PUT, "/v1/agents", k).send().await.unwrap();
    assert_problem(r, 405).await;
    // A bad lifecycle state, a bad tier.
    let a = s.agent(&key, json!({"name": "bot"})).await;
    let r = s
        .req(
            Method::POST,
            &format!("/v1/agents/{}/lifecycle", a["id"].as_str().unwrap()),
            k,
        )
        .json(&json!({"state": "flying"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 422).await;
    let (st, _) = s
        .send(
            Method::PATCH,
            "/v1/tenants/tnt_x",
            Some(&s.op),
            &json!({"tier": "gold"}),
        )
        .await;
    assert_eq!(st, 422);
}

#[tokio::test]
async fn garbage_to_every_json_route_is_a_4xx() {
    let s = start().await;
    let (tid, key) = s.tenant("Acme", "pro").await;
    let a = s.agent(&key, json!({"name": "bot"})).await;
    let aid = a["id"].as_str().unwrap();
    let routes = [
        (Method::POST, "/v1/tenants".to_owned()),
        (Method::PATCH, format!("/v1/tenants/{tid}")),
        (Method::PUT, format!("/v1/tenants/{tid}/publisher")),
        (Method::POST, format!("/v1/tenants/{tid}/api-keys")),
        (Method::POST, "/v1/api-keys".to_owned()),
        (Method::POST, "/v1/agents".to_owned()),
        (Method::PATCH, format!("/v1/agents/{aid}")),
        (Method::POST, format!("/v1/agents/{aid}/lifecycle")),
        (Method::POST, "/billing/checkout".to_owned()),
        (Method::POST, "/api/tiers/upgrade".to_owned()),
    ];
    let bodies: Vec<Vec<u8>> = vec![
        b"{}".to_vec(),
        b"{\"\":\"\"}".to_vec(),
        b"\"string\"".to_vec(),
        b"12345678901234567890123456789".to_vec(),
        b"{\"name\":\"\\ud800\"}".to_vec(),
        b"{\"name\":\"a\",\"name\":\"b\"}".to_vec(),
        vec![0xc3, 0x28],
        (0..=255u8).collect(),
    ];
    for (m, path) in &routes {
        for key_choice in [Some(s.op.as_str()), Some(key.as_str())] {
            for b in &bodies {
                let r = raw(
                    &s,
                    m.clone(),
                    path,
                    key_choice,
                    Some("application/json"),
                    b.clone(),
                )
                .await;
                let st = r.status();
                assert!(
                    st.is_client_error() || st.is_success(),
                    "{m} {path} with {:?}: {st}",
                    String::from_utf8_lossy(b)
                );
                if st.is_client_error() {
                    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
                    assert_eq!(ct, "application/problem+json", "{m} {path}");
                }
            }
        }
    }
}

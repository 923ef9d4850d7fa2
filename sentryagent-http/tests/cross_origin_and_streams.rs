//! Cross-origin requests (CORS) and the caps on live audit streams, over
//! real HTTP.

mod http_helpers;

use std::time::Duration;

use http_helpers::{Setup, assert_problem, start, start_with};
use reqwest::{Method, Response};
use sentryagent_http::{CorsOrigin, RouterConfig};

const CONSOLE: &str = "https://console.example.com";

fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

async fn with_console_origin() -> http_helpers::Server {
    let origin: CorsOrigin = CONSOLE.parse().unwrap();
    start_with(Setup {
        router: RouterConfig::default().cors_origins([origin]),
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn public_documents_are_readable_from_any_origin() {
    // CORS is off for the API by default, but not for the public documents.
    let s = start().await;
    let (_, key) = s.tenant("Acme", "pro").await;
    let agent = s
        .agent(
            &key,
            serde_json::json!({"name": "Listed", "visibility": "public"}),
        )
        .await;
    let id = agent["id"].as_str().unwrap();
    for path in [
        "/.well-known/jwks.json".to_owned(),
        "/.well-known/openid-configuration".to_owned(),
        "/.well-known/oauth-authorization-server".to_owned(),
        "/v1/marketplace/agents".to_owned(),
        format!("/v1/marketplace/agents/{id}"),
        format!("/v1/agents/{id}/did.json"),
    ] {
        let r = s
            .http
            .get(s.url(&path))
            .header("origin", "https://anyone.example")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(
            header(&r, "access-control-allow-origin"),
            Some("*"),
            "{path}"
        );
        // A preflight for a read is answered for any origin too.
        let r = s
            .http
            .request(Method::OPTIONS, s.url(&path))
            .header("origin", "https://anyone.example")
            .header("access-control-request-method", "GET")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "{path}");
        assert_eq!(header(&r, "access-control-allow-origin"), Some("*"));
        assert_eq!(
            header(&r, "access-control-allow-methods"),
            Some("GET, HEAD")
        );
    }
    // Writing is not offered to any origin.
    let r = s
        .http
        .request(Method::OPTIONS, s.url("/v1/marketplace/agents"))
        .header("origin", "https://anyone.example")
        .header("access-control-request-method", "DELETE")
        .send()
        .await
        .unwrap();
    let p = assert_problem(r, 403).await;
    assert!(p["detail"].as_str().unwrap().contains("only read"), "{p}");

    // The API answers no CORS header to an origin it was not told about.
    let r = s
        .req(Method::GET, "/v1/agents", Some(&key))
        .header("origin", "https://anyone.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    assert_eq!(header(&r, "vary"), Some("origin"));
    let r = s
        .http
        .request(Method::OPTIONS, s.url("/v1/agents"))
        .header("origin", "https://anyone.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    let p = assert_problem(r, 403).await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("SENTRYAGENT_CORS_ORIGINS"),
        "{p}"
    );
    // Same-origin requests (no Origin header) are untouched.
    let r = s
        .req(Method::GET, "/v1/agents", Some(&key))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "access-control-allow-origin"), None);
}

#[tokio::test]
async fn listed_origins_may_call_the_api_and_read_its_headers() {
    let s = with_console_origin().await;
    let (_, key) = s.tenant("Acme", "pro").await;

    let r = s
        .http
        .request(Method::OPTIONS, s.url("/v1/agents"))
        .header("origin", CONSOLE)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(CONSOLE));
    let methods = header(&r, "access-control-allow-methods").unwrap();
    assert!(methods.contains("POST") && methods.contains("DELETE"));
    let allowed = header(&r, "access-control-allow-headers").unwrap();
    for h in ["authorization", "content-type", "x-csrf-token"] {
        assert!(allowed.contains(h), "{h} in {allowed}");
    }
    assert_eq!(header(&r, "access-control-allow-credentials"), None);
    assert!(header(&r, "access-control-max-age").is_some());

    // The call itself, and an error (401), both carry the headers, so the
    // page can read the answer and the rate-limit fields.
    let r = s
        .req(Method::POST, "/v1/agents", Some(&key))
        .header("origin", CONSOLE)
        .json(&serde_json::json!({"name": "From the console"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(CONSOLE));
    assert!(
        header(&r, "access-control-expose-headers")
            .unwrap()
            .contains("ratelimit-remaining")
    );
    let r = s
        .req(Method::GET, "/v1/agents", Some("sa_ak_not-a-real-key"))
        .header("origin", CONSOLE)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(CONSOLE));

    // Another origin still gets nothing; the match is exact.
    for other in [
        "https://console.example.com.evil.example",
        "http://console.example.com",
    ] {
        let r = s
            .req(Method::GET, "/v1/agents", Some(&key))
            .header("origin", other)
            .send()
            .await
            .unwrap();
        assert_eq!(header(&r, "access-control-allow-origin"), None, "{other}");
    }
}

#[tokio::test]
async fn a_tenant_holds_a_bounded_number_of_live_audit_streams() {
    let s = start_with(Setup {
        // Keep-alives show the server at once when a client has left.
        router: RouterConfig::default()
            .audit_streams(2, 3)
            .sse_keep_alive(Duration::from_millis(20)),
        ..Default::default()
    })
    .await;
    let (_, a) = s.tenant("A", "pro").await;
    let (_, b) = s.tenant("B", "pro").await;
    let open = |key: String| {
        let req = s.req(Method::GET, "/v1/audit/stream", Some(&key));
        async move { req.send().await.unwrap() }
    };
    let a1 = open(a.clone()).await;
    let a2 = open(a.clone()).await;
    assert_eq!((a1.status().as_u16(), a2.status().as_u16()), (200, 200));
    let refused = open(a.clone()).await;
    let p = assert_problem(refused, 429).await;
    assert!(p["detail"].as_str().unwrap().contains("close one"), "{p}");

    // The server's total: B's first fits, then even the operator waits.
    let b1 = open(b.clone()).await;
    assert_eq!(b1.status(), 200);
    let full = open(s.op.clone()).await;
    assert_eq!(header(&full, "retry-after"), Some("5"));
    assert_problem(full, 503).await;

    // A client that leaves gives its place back.
    drop(a1);
    let mut reopened = None;
    for _ in 0..50 {
        let r = open(a.clone()).await;
        if r.status() == 200 {
            reopened = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        reopened.is_some(),
        "the place of a closed stream comes back"
    );
    drop((a2, b1));
}

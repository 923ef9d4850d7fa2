//! The built server serves the web console at its root, next to the API:
//! no path of one hides a path of the other, and both sit behind the same
//! layers (request id, request log, timeout, drain).

mod daemon;

use daemon::{key, spawn};

#[tokio::test(flavor = "multi_thread")]
async fn the_console_is_at_the_root_and_the_api_keeps_its_paths() {
    let op = key();
    let mut d = spawn(
        &["--store", "memory://"],
        &[("SENTRYAGENT_BOOTSTRAP_KEY", &op)],
    )
    .await;
    // The workspace's reqwest has no default TLS provider; loopback only.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap();
    let b = &d.base;
    for path in [
        "/",
        "/pricing",
        "/docs",
        "/sdks",
        "/marketplace",
        "/login",
        "/signup",
    ] {
        let r = http.get(format!("{b}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
        // The console is behind the API's layers: request id, log, timeout.
        assert!(r.headers().contains_key("x-request-id"), "{path}");
        assert!(
            r.text().await.unwrap().contains("<main id=\"main\""),
            "{path}"
        );
    }
    // A signed-in page sends a signed-out visitor to sign in.
    for (path, next) in [("/agents", "%2Fagents"), ("/members", "%2Fmembers")] {
        let r = http.get(format!("{b}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(r.headers()["location"], format!("/login?next={next}"));
    }
    // The links of invitations open the console's page.
    let signup = http
        .post(format!("{b}/v1/signup"))
        .json(&serde_json::json!({"email": "ada@example.com", "password": "correct horse battery staple", "tenant_name": "Acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), 201);
    let cookie = signup.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let me: serde_json::Value = signup.json().await.unwrap();
    let tenant = me["session"]["tenant_id"].as_str().unwrap();
    let inv: serde_json::Value = http
        .post(format!("{b}/v1/tenants/{tenant}/invitations"))
        .header("cookie", &cookie)
        .header("x-csrf-token", me["csrf_token"].as_str().unwrap())
        .json(&serde_json::json!({"email": "grace@example.com", "role": "viewer"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = inv["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{b}/invitations/accept#token=")),
        "{url}"
    );
    // The API is where it was.
    for (path, status) in [
        ("/health", 200),
        ("/.well-known/jwks.json", 200),
        ("/.well-known/openid-configuration", 200),
        ("/openapi.json", 200),
        ("/explorer/", 200),
        ("/v1/agents", 401),
        ("/billing/usage", 401),
        ("/v1/no-such-route", 404),
    ] {
        let r = http.get(format!("{b}{path}")).send().await.unwrap();
        assert_eq!(r.status(), status, "{path}");
        if path.starts_with("/v1") || path.starts_with("/billing") {
            assert_eq!(
                r.headers()["content-type"],
                "application/problem+json",
                "{path}"
            );
        }
    }
    d.stop();
}

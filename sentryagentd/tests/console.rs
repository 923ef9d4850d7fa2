//! The built server serves the web console at its root, next to the API:
//! no path of one hides a path of the other.

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
        assert!(
            r.text().await.unwrap().contains("<main id=\"main\""),
            "{path}"
        );
    }
    // A signed-in page sends a signed-out visitor to sign in.
    let r = http.post(format!("{b}/logout")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login?next=%2Flogout");
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

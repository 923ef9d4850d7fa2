//! The console's dashboard pages over HTTP, nested under a prefix: every
//! link, form and redirect keeps the prefix; the forms need the CSRF token;
//! the JSON and the charts need a session; the billing forms hand the
//! browser to the provider's page.

mod console_support;

use axum::http::StatusCode;
use console_support::{Console, unique_email};
use sentryagent_http::console::ConsoleConfig;

#[tokio::test]
async fn under_a_prefix_every_link_form_and_redirect_keeps_it() {
    let (c, fake) = Console::with_stripe(ConsoleConfig::new("/console")).await;
    // Signed out: the pages redirect to sign in, the data answers 401.
    for page in [
        "/usage",
        "/settings/billing",
        "/settings/tier",
        "/analytics",
    ] {
        let a = c.get(page, None).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{page}");
        assert!(
            a.location().starts_with("/console/login?next="),
            "{}",
            a.location()
        );
        assert!(a.location().contains("console"), "{}", a.location());
    }
    for data in [
        "/usage.json",
        "/analytics/heatmap.svg",
        "/analytics/token-trend.svg",
    ] {
        assert_eq!(
            c.get(data, None).await.status,
            StatusCode::UNAUTHORIZED,
            "{data}"
        );
    }

    let b = c.sign_up(&unique_email("ida"), "Acme").await;
    let usage = c.get("/usage", b.cookie()).await;
    assert_eq!(usage.status, StatusCode::OK);
    assert!(
        usage
            .body
            .contains(r#"data-usage-src="/console/usage.json""#),
        "{}",
        usage.body
    );
    assert!(usage.body.contains(r#"data-refresh-seconds="60""#));
    assert!(usage.body.contains(r#"href="/console/settings/tier""#));
    let analytics = c.get("/analytics", b.cookie()).await;
    assert!(
        analytics
            .body
            .contains(r#"data-src="/console/analytics/heatmap.svg""#)
    );
    let svg = c.get("/analytics/heatmap.svg", b.cookie()).await;
    assert_eq!(svg.header("content-type"), "image/svg+xml");
    assert_eq!(svg.body.matches("data-cell=").count(), 168);
    let json = c.get("/usage.json", b.cookie()).await;
    assert_eq!(json.status, StatusCode::OK);
    assert_eq!(json.header("cache-control"), "no-store");

    let billing = c.get("/settings/billing", b.cookie()).await;
    assert!(
        billing
            .body
            .contains(r#"action="/console/settings/billing/checkout""#),
        "{}",
        billing.body
    );
    assert!(billing.body.contains(r#"href="/console/settings/tier""#));
    // Without the CSRF token the form is refused before any checkout.
    let refused = c.post("/settings/billing/checkout", b.cookie(), &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(fake.checkout_sessions().is_empty());
    // With it, a page of the console that moves on to the checkout.
    for form in ["/settings/billing/checkout", "/settings/tier/upgrade"] {
        let a = c.post(form, b.cookie(), &[("csrf_token", &b.csrf)]).await;
        assert_eq!(a.status, StatusCode::OK, "{form}: {}", a.body);
        let url = &fake.checkout_sessions()[0].url;
        assert!(
            a.body.contains(&format!(r#"content="0;url={url}""#)),
            "{}",
            a.body
        );
        assert!(a.body.contains(&format!(r#"href="{url}""#)));
        assert_eq!(a.header("cache-control"), "no-store");
        assert!(
            a.header("content-security-policy")
                .contains("default-src 'self'")
        );
    }
    // No billing account yet: the portal is a clear page, not a 5xx.
    let a = c
        .post(
            "/settings/billing/portal",
            b.cookie(),
            &[("csrf_token", &b.csrf)],
        )
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);
}

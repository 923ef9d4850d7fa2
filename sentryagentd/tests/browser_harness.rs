//! The browser test harness itself (`tests/browser`): it tells loopback
//! from elsewhere, and it reports what the console's browser tests rely on
//! it to report. Without Chromium and chromedriver the browser test prints
//! a `SKIPPED` line; under `SENTRYAGENT_REQUIRE_SERVICES=1` it fails
//! instead.

mod browser;
mod daemon;

use std::time::Duration;

use browser::Browser;
use serde_json::json;

#[test]
fn loopback_addresses_are_told_apart() {
    for u in [
        "http://127.0.0.1:8080/usage",
        "http://localhost/x",
        "http://[::1]:3000/",
        "ws://127.9.9.9/",
        "data:image/png;base64,AA",
        "about:blank",
    ] {
        assert!(browser::is_loopback(u), "{u}");
    }
    for u in [
        "https://cdn.example/htmx.js",
        "http://10.0.0.1/",
        "http://127.0.0.1.example/",
        "http://user@example.com/",
        "https://[2001:db8::1]/",
    ] {
        assert!(!browser::is_loopback(u), "{u}");
    }
}

/// The harness sees what the tests rely on it to see: a CSP violation, a
/// script error and a request to another host count as problems.
#[tokio::test(flavor = "multi_thread")]
async fn the_harness_reports_console_errors_csp_violations_and_outside_requests() {
    let Some(mut b) = Browser::start("console_browser::harness").await else {
        return;
    };
    let d = daemon::spawn(&["--store", "memory://"], &[]).await;
    // A console page (it has the console's Content-Security-Policy):
    // nothing to report.
    b.goto(&format!("{}/pricing", d.base)).await;
    assert_eq!(b.problems().await, Vec::<String>::new());
    // An inline script is refused by the policy; a script that throws is
    // an error; an image from elsewhere leaves loopback (and resolves to
    // nothing: only loopback names resolve).
    b.js(
        "const s = document.createElement('script'); s.textContent = 'window.inlineRan = true'; \
         document.body.appendChild(s); \
         const i = new Image(); i.src = 'http://images.example/pixel.png'; \
         document.body.appendChild(i); \
         setTimeout(() => { throw new Error('thrown on purpose'); }, 0); return null",
        json!([]),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        b.js("return window.inlineRan === true", json!([])).await,
        json!(false)
    );
    let problems = b.problems().await.join("\n");
    assert!(problems.contains("Content Security Policy"), "{problems}");
    assert!(problems.contains("thrown on purpose"), "{problems}");
    assert!(
        problems.contains("request outside loopback: http://images.example/pixel.png"),
        "{problems}"
    );
    b.screenshot("harness", browser::PHONE).await;
    assert!(browser::screenshot_dir().join("harness-375.png").exists());
    b.quit().await;
}

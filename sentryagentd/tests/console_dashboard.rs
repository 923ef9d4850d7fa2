//! The console's dashboard pages in headless Chromium, as a person sees
//! them: the Usage tab, the billing panel, the tier page and analytics,
//! against the built server (sled store) and the loopback fake Stripe.
//!
//! Every page visit fails the test on a console error (a refused resource
//! or a Content-Security-Policy violation) or a request leaving loopback,
//! and leaves screenshots at 1280 and 375 px in
//! `target/console-screenshots/`. Without Chromium and chromedriver each
//! test prints a `SKIPPED` line; under `SENTRYAGENT_REQUIRE_SERVICES=1` it
//! fails instead.

mod browser;
mod daemon;

use std::time::Duration;

use browser::Browser;
use daemon::{Daemon, client, key, spawn};
use sentryagent_billing::testing::{FAKE_PRICE_ENTERPRISE, FAKE_PRICE_PRO, FakeStripe};
use serde_json::{Value, json};

/// One browser at a time: the machines that run this suite are small.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const PASSWORD: &str = "correct horse battery staple 42";
const WAIT: Duration = Duration::from_secs(10);

/// The server and what the tests need of it.
struct Server {
    daemon: Daemon,
    op: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    _schema: Option<sentryagent_storage::testing::SchemaGuard>,
    stripe: Option<FakeStripe>,
}

/// Free: 100 API calls a day (so 79 and 80 % are 79 and 80 calls), 5
/// agents, 1,000 tokens a month; rate limits out of the way.
const TIERS: &str = r#"{
  "free": {"max_agents": 5, "api_calls_per_day": 100, "token_issuances_per_month": 1000,
           "requests_per_minute": 100000, "client_requests_per_minute": 100000},
  "pro": {"requests_per_minute": 100000},
  "enterprise": {"requests_per_minute": 100000}
}"#;

async fn server(with_stripe: bool) -> Server {
    server_on(with_stripe, None).await
}

/// The server on sled, or on the Postgres at `postgres` (store and meter,
/// in a schema of its own dropped at the end).
async fn server_on(with_stripe: bool, postgres: Option<&str>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let tiers = dir.path().join("tiers.json");
    std::fs::write(&tiers, TIERS).unwrap();
    let (store, schema) = match postgres {
        Some(url) => {
            let (url, guard) = sentryagent_storage::testing::SchemaGuard::fresh(url);
            (url, Some(guard))
        }
        None => (format!("sled://{}", dir.path().join("db").display()), None),
    };
    let op = key();
    let stripe = if with_stripe {
        Some(FakeStripe::start().await.unwrap())
    } else {
        None
    };
    let mut args: Vec<String> = [
        "--store",
        &store,
        "--tiers",
        &tiers.display().to_string(),
        // The test hook: the Usage tab refreshes every second.
        "--console-usage-refresh-seconds",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(f) = &stripe {
        let c = f.config();
        args.extend(
            [
                "--stripe-secret-key",
                &c.secret_key,
                "--stripe-webhook-secret",
                f.webhook_secret(),
                "--stripe-price-pro",
                FAKE_PRICE_PRO,
                "--stripe-price-enterprise",
                FAKE_PRICE_ENTERPRISE,
                "--stripe-success-url",
                "http://127.0.0.1:9/billing/success",
                "--stripe-cancel-url",
                "http://127.0.0.1:9/billing/cancel",
                "--stripe-api-base",
                &f.base_url(),
            ]
            .iter()
            .map(|s| s.to_string()),
        );
    }
    if postgres.is_some() {
        args.extend(["--limiter".to_owned(), "memory://".to_owned()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let daemon = spawn(&args, &[("SENTRYAGENT_BOOTSTRAP_KEY", &op)]).await;
    Server {
        daemon,
        op,
        http: client(),
        _dir: dir,
        _schema: schema,
        stripe,
    }
}

/// A person who signed up through the API: their tenant, a key of that
/// tenant for API calls, and the session cookie.
struct Person {
    tenant: String,
    key: String,
    cookie: (String, String),
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.daemon.base)
    }

    async fn sign_up(&self, email: &str) -> Person {
        let r = self
            .http
            .post(self.url("/v1/signup"))
            .json(&json!({"email": email, "password": PASSWORD, "tenant_name": "Acme Robotics"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let set = r
            .headers()
            .get("set-cookie")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let me: Value = r.json().await.unwrap();
        let (name, rest) = set.split_once('=').unwrap();
        let value = rest.split(';').next().unwrap().to_owned();
        let tenant = me
            .pointer("/memberships/0/tenant_id")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no tenant in {me}"))
            .to_owned();
        let k = daemon::post(
            &self.http,
            self.url(&format!("/v1/tenants/{tenant}/api-keys")),
            &self.op,
            json!({"name": "console test"}),
        )
        .await;
        Person {
            tenant,
            key: k["key"].as_str().unwrap().to_owned(),
            cookie: (name.to_owned(), value),
        }
    }

    /// `GET /billing/usage` as the tenant (this call counts itself).
    async fn usage(&self, p: &Person) -> Value {
        let r = self
            .http
            .get(self.url("/billing/usage"))
            .bearer_auth(&p.key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// Waits for the usage counted so far to reach the store: counts are
    /// flushed by the first counted request after the flush interval (1 s).
    async fn flush(&self, p: &Person) {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        self.usage(p).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    /// Registers an agent and issues `tokens` tokens to it.
    async fn agent_with_tokens(&self, p: &Person, name: &str, tokens: usize) -> String {
        let a = daemon::post(
            &self.http,
            self.url("/v1/agents"),
            &p.key,
            json!({"name": name}),
        )
        .await;
        let id = a["client_id"].as_str().unwrap().to_owned();
        let secret = a["client_secret"].as_str().unwrap().to_owned();
        for _ in 0..tokens {
            let r = daemon::form(
                self.http.post(self.url("/oauth2/token")),
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", &id),
                    ("client_secret", &secret),
                ],
            )
            .send()
            .await
            .unwrap();
            assert_eq!(r.status(), 200);
        }
        id
    }
}

/// Opens the console signed in as `p` (the session cookie set on the
/// server's origin).
async fn sign_in(b: &mut Browser, s: &Server, p: &Person) {
    b.goto(&s.url("/health")).await;
    b.add_cookie(&p.cookie.0, &p.cookie.1).await;
    // `/health` is only where the cookie is set; what the browser says
    // about that JSON document (it has no favicon) is not the console's.
    let _ = b.problems().await;
}

/// Whether the browser's address `landed` is the checkout `url`.
fn b_url_is(url: &str, landed: &str) -> bool {
    landed.trim_end_matches('/') == url.trim_end_matches('/')
}

/// A number shown on the page (digits only, separators dropped).
async fn number(b: &Browser, css: &str) -> u64 {
    let t = b
        .text_of(css)
        .await
        .unwrap_or_else(|| panic!("no {css} on the page"));
    let digits: String = t.chars().filter(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("{css} is not a number: {t:?}"))
}

fn used(v: &Value, field: &str) -> u64 {
    v[field]["used"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_usage_tab_shows_billing_usage_refreshes_and_warns_at_80_percent() {
    let _one = ONE_BROWSER.lock().await;
    let Some(mut b) = Browser::start("console_browser::usage").await else {
        return;
    };
    let s = server(true).await;
    let p = s.sign_up("ada@example.com").await;
    s.agent_with_tokens(&p, "inventory-bot", 3).await;
    sign_in(&mut b, &s, &p).await;

    // The page's numbers are those of GET /billing/usage (a page view is
    // not an API call).
    let api = s.usage(&p).await;
    b.goto(&s.url("/usage")).await;
    b.check().await;
    for field in ["api_calls_today", "agents", "token_issuances_this_month"] {
        let m = format!("[data-metric=\"{field}\"]");
        assert_eq!(
            number(&b, &format!("{m} .meter-used")).await,
            used(&api, field)
        );
        assert_eq!(
            number(&b, &format!("{m} .meter-limit")).await,
            api[field]["limit"].as_u64().unwrap(),
            "{field}"
        );
        assert_eq!(
            b.count(&format!("{m} progress")).await,
            1,
            "{field} has a bar"
        );
    }
    assert_eq!(used(&api, "agents"), 1);
    assert_eq!(used(&api, "token_issuances_this_month"), 3);
    assert_eq!(b.count("[role=alert]").await, 0, "no alert below 80 %");
    assert_eq!(
        b.js(
            "return document.querySelector('[data-refresh-seconds]').dataset.refreshSeconds",
            json!([])
        )
        .await,
        json!("1")
    );
    b.screenshots("usage").await;

    // API calls and tokens while the page is open: the numbers follow
    // within one refresh, without a reload.
    b.js("window.__sameDocument = true; return null", json!([]))
        .await;
    s.agent_with_tokens(&p, "billing-bot", 2).await;
    let api = s.usage(&p).await;
    let calls = used(&api, "api_calls_today");
    b.wait_for(
        "the refreshed numbers",
        "const t = s => document.querySelector(s).textContent.replace(/\\D/g, ''); \
         return t('[data-metric=\"api_calls_today\"] .meter-used') === arguments[0] \
             && t('[data-metric=\"token_issuances_this_month\"] .meter-used') === '5' \
             && t('[data-metric=\"agents\"] .meter-used') === '2'",
        json!([calls.to_string()]),
        WAIT,
    )
    .await;
    assert_eq!(
        b.js("return window.__sameDocument === true", json!([]))
            .await,
        json!(true)
    );

    // 79 calls of 100: no alert; the 80th: the alert appears on the open
    // page within a refresh, and on a fresh load, linking to the upgrade.
    let mut calls = calls;
    while calls < 79 {
        calls = used(&s.usage(&p).await, "api_calls_today");
    }
    assert_eq!(calls, 79);
    b.goto(&s.url("/usage")).await;
    assert_eq!(
        number(&b, "[data-metric=\"api_calls_today\"] .meter-used").await,
        79
    );
    assert_eq!(b.count("[role=alert]").await, 0, "no alert at 79 %");
    b.js("window.__sameDocument = true; return null", json!([]))
        .await;
    assert_eq!(used(&s.usage(&p).await, "api_calls_today"), 80);
    b.wait_css("[role=alert]", WAIT).await;
    assert_eq!(
        b.js("return window.__sameDocument === true", json!([]))
            .await,
        json!(true)
    );
    assert_eq!(
        number(&b, "[data-metric=\"api_calls_today\"] .meter-used").await,
        80
    );
    b.goto(&s.url("/usage")).await;
    assert_eq!(b.count("[role=alert]").await, 1);
    let href = b
        .js(
            "return document.querySelector('[role=alert] a').getAttribute('href')",
            json!([]),
        )
        .await;
    assert_eq!(href, json!("/settings/tier"));
    assert!(b.text_of("[role=alert]").await.unwrap().contains("80%"));
    b.check().await;
    b.screenshots("usage-warning").await;

    // The JSON the page polls needs the session.
    let r = s.http.get(s.url("/usage.json")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_free_tenant_upgrades_through_checkout_and_a_paid_one_manages_billing() {
    let _one = ONE_BROWSER.lock().await;
    let Some(mut b) = Browser::start("console_browser::billing").await else {
        return;
    };
    let s = server(true).await;
    let stripe = s.stripe.as_ref().unwrap();
    let p = s.sign_up("grace@example.com").await;
    sign_in(&mut b, &s, &p).await;

    // Free: the tier and an "Upgrade to Paid" button that lands on the
    // (fake) Stripe Checkout.
    b.goto(&s.url("/settings/billing")).await;
    b.check().await;
    let text = b.text().await;
    assert!(text.contains("Free"), "{text}");
    assert_eq!(b.count("#billing-upgrade").await, 1);
    assert_eq!(
        b.text_of("#billing-upgrade").await.unwrap(),
        "Upgrade to Paid"
    );
    assert_eq!(b.count("#billing-renewal").await, 0);
    b.screenshots("billing-free").await;
    b.click("#billing-upgrade").await;
    b.wait_url(&format!("{}/checkout/", stripe.base_url()), WAIT)
        .await;
    let sessions = stripe.checkout_sessions();
    assert_eq!(sessions.len(), 1);
    assert!(b.url().await.ends_with(&sessions[0].id));
    b.check().await;

    // The tier page: each limit and its use, and "Upgrade to Pro" going
    // the same way.
    b.goto(&s.url("/settings/tier")).await;
    b.check().await;
    assert!(b.text_of("#tier-name").await.unwrap().contains("Free"));
    for limit in [
        "max_agents",
        "api_calls_per_day",
        "token_issuances_per_month",
    ] {
        assert_eq!(
            b.count(&format!("[data-limit=\"{limit}\"]")).await,
            1,
            "{limit}"
        );
    }
    assert_eq!(
        number(&b, "[data-limit=\"api_calls_per_day\"] .limit-value").await,
        100
    );
    b.screenshots("tier-free").await;
    b.click("#tier-upgrade").await;
    b.wait_url(&format!("{}/checkout/", stripe.base_url()), WAIT)
        .await;
    let landed = b.url().await;
    // The upgrade reached Stripe a second time (the core may hand out the
    // open checkout again).
    assert_eq!(stripe.requests_to("/v1/checkout/sessions").len(), 2);
    let sessions = stripe.checkout_sessions();
    assert!(
        sessions.iter().any(|c| b_url_is(&c.url, &landed)),
        "{landed}"
    );
    b.check().await;

    // Paid: the checkout completes (the provider's signed webhook), then
    // the panel shows the status and renewal date and no upgrade button.
    let id = stripe.checkout_sessions().last().unwrap().id.clone();
    let now = sentryagent_core::SystemClock::precise_now();
    let hook = stripe.complete_checkout(&id, now).unwrap();
    let r = stripe
        .deliver(&s.url("/billing/webhook"), &hook)
        .await
        .unwrap();
    assert_eq!(r.0, 200, "{}", r.1);
    // ...and, as Stripe does, the subscription with its period.
    let sub = stripe.subscriptions()[0].id.clone();
    let hook = stripe
        .update_subscription(&sub, "active", Some(sentryagent_core::Tier::Pro), now)
        .unwrap();
    let r = stripe
        .deliver(&s.url("/billing/webhook"), &hook)
        .await
        .unwrap();
    assert_eq!(r.0, 200, "{}", r.1);
    b.goto(&s.url("/settings/billing")).await;
    b.check().await;
    let text = b.text().await;
    assert!(text.contains("Paid"), "{text}");
    assert!(text.contains("Pro"), "{text}");
    assert_eq!(b.text_of("#billing-status").await.unwrap(), "Active");
    let renewal = b.text_of("#billing-renewal").await.unwrap();
    let expected =
        sentryagent_core::Timestamp::from_unix_secs(stripe.subscriptions()[0].current_period_end)
            .to_rfc3339();
    assert!(renewal.contains(&expected[..10]), "{renewal} vs {expected}");
    assert_eq!(b.count("#billing-upgrade").await, 0);
    b.screenshots("billing-paid").await;
    b.click("#billing-portal").await;
    b.wait_url(&format!("{}/portal/", stripe.base_url()), WAIT)
        .await;
    b.check().await;

    // Enterprise: "Enterprise — Unlimited", no button.
    let r = s
        .http
        .patch(s.url(&format!("/v1/tenants/{}", p.tenant)))
        .bearer_auth(&s.op)
        .json(&json!({"tier": "enterprise"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    b.goto(&s.url("/settings/tier")).await;
    b.check().await;
    assert!(b.text().await.contains("Enterprise — Unlimited"));
    assert_eq!(b.count("#tier-upgrade").await, 0);
    b.screenshots("tier-enterprise").await;
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_stripe_the_billing_pages_say_so_and_offer_no_button() {
    let _one = ONE_BROWSER.lock().await;
    let Some(mut b) = Browser::start("console_browser::no_billing").await else {
        return;
    };
    let s = server(false).await;
    let p = s.sign_up("edsger@example.com").await;
    sign_in(&mut b, &s, &p).await;
    for page in ["/settings/billing", "/settings/tier"] {
        b.goto(&s.url(page)).await;
        b.check().await;
        let text = b.text().await;
        assert!(
            text.contains("Billing is not set up on this server"),
            "{page}: {text}"
        );
        assert_eq!(
            b.count("#billing-upgrade, #tier-upgrade, #billing-portal")
                .await,
            0,
            "{page}"
        );
    }
    b.screenshots("billing-not-configured").await;
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn analytics_draws_the_trend_and_the_heatmap_and_sorts_the_agent_table() {
    let _one = ONE_BROWSER.lock().await;
    let Some(mut b) = Browser::start("console_browser::analytics").await else {
        return;
    };
    let s = server(false).await;
    let p = s.sign_up("barbara@example.com").await;
    s.agent_with_tokens(&p, "alpha-bot", 4).await;
    s.agent_with_tokens(&p, "zeta-bot", 7).await;
    s.flush(&p).await;
    sign_in(&mut b, &s, &p).await;

    b.goto(&s.url("/analytics")).await;
    // The table is in the page itself.
    assert_eq!(b.count("#agent-usage tbody tr").await, 2);
    b.wait_css("[data-chart=\"token-trend\"] svg circle", WAIT)
        .await;
    b.wait_css("[data-chart=\"heatmap\"] svg [data-cell]", WAIT)
        .await;
    b.check().await;
    // 30 days, today's point holding the 11 tokens.
    assert_eq!(b.count("[data-chart=\"token-trend\"] svg circle").await, 30);
    let last = b
        .js("const c = document.querySelectorAll('[data-chart=\"token-trend\"] circle'); return c[c.length - 1].dataset.count", json!([]))
        .await;
    assert_eq!(last, json!("11"));
    // 7 x 24 cells, and the 11 tokens in this hour's cell.
    assert_eq!(b.count("[data-chart=\"heatmap\"] [data-cell]").await, 168);
    let total = b
        .js("let n = 0; document.querySelectorAll('[data-chart=\"heatmap\"] [data-cell]').forEach(c => n += Number(c.dataset.count)); return n", json!([]))
        .await;
    assert_eq!(total, json!(11));
    let busy = b
        .js("const d = new Date(); const w = (d.getUTCDay() + 6) % 7; return document.querySelector(`[data-chart=\"heatmap\"] [data-cell=\"${w}-${d.getUTCHours()}\"]`).dataset.count", json!([]))
        .await;
    // The hour may have turned since the tokens were issued.
    assert!(busy == json!("11") || busy == json!("0"), "{busy}");

    // The table sorts: largest first, then by name.
    let names = "return [...document.querySelectorAll('#agent-usage tbody tr td:first-child')].map(td => td.textContent.trim())";
    assert_eq!(
        b.js(names, json!([])).await,
        json!(["zeta-bot", "alpha-bot"])
    );
    b.click("#agent-usage th[data-sort=\"name\"] button").await;
    assert_eq!(
        b.js(names, json!([])).await,
        json!(["alpha-bot", "zeta-bot"])
    );
    b.click("#agent-usage th[data-sort=\"name\"] button").await;
    assert_eq!(
        b.js(names, json!([])).await,
        json!(["zeta-bot", "alpha-bot"])
    );
    b.check().await;
    b.screenshots("analytics").await;
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_out_the_dashboard_pages_send_to_login_with_next() {
    let _one = ONE_BROWSER.lock().await;
    let Some(mut b) = Browser::start("console_browser::signed_out").await else {
        return;
    };
    let s = server(false).await;
    for page in [
        "/usage",
        "/settings/billing",
        "/settings/tier",
        "/analytics",
    ] {
        b.goto(&s.url(page)).await;
        b.wait_url(&s.url("/login"), WAIT).await;
        let url = b.url().await;
        let next = url.split_once("next=").map(|(_, n)| n.to_owned());
        assert_eq!(
            next.as_deref().map(|n| n.replace("%2F", "/")),
            Some(page.to_owned()),
            "{url}"
        );
        b.check().await;
    }
    b.quit().await;
}

/// The JavaScript and CSS a page references, as the browser would fetch
/// them.
fn assets_of(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (tag, attr) in [("<link", "href=\""), ("<script", "src=\"")] {
        for part in html.split(tag).skip(1) {
            let el = part.split('>').next().unwrap_or_default();
            if tag == "<link" && !el.contains("rel=\"stylesheet\"") {
                continue;
            }
            if let Some(rest) = el.split(attr).nth(1) {
                out.push(rest.split('"').next().unwrap_or_default().to_owned());
            }
        }
    }
    out
}

/// JavaScript + CSS shipped to each dashboard page stays under 150 KB.
#[tokio::test(flavor = "multi_thread")]
async fn each_dashboard_page_ships_under_150_kb_of_javascript_and_css() {
    let s = server(false).await;
    let p = s.sign_up("frances@example.com").await;
    let cookie = format!("{}={}", p.cookie.0, p.cookie.1);
    for page in [
        "/usage",
        "/settings/billing",
        "/settings/tier",
        "/analytics",
    ] {
        let r = s
            .http
            .get(s.url(page))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{page}");
        let html = r.text().await.unwrap();
        let assets = assets_of(&html);
        assert!(
            assets.iter().any(|a| a.ends_with(".css")),
            "{page}: {assets:?}"
        );
        assert!(
            assets.iter().any(|a| a.ends_with(".js")),
            "{page}: {assets:?}"
        );
        let mut total = 0;
        for a in &assets {
            assert!(
                a.starts_with('/'),
                "{page}: {a} is not served by the console"
            );
            let body = s.http.get(s.url(a)).send().await.unwrap();
            assert_eq!(body.status(), 200, "{a}");
            total += body.bytes().await.unwrap().len();
        }
        eprintln!("{page}: {total} bytes of JavaScript and CSS in {assets:?}");
        assert!(total < 150 * 1024, "{page}: {total} bytes");
    }
}

/// Sign-up to a first token through the wizard, then signing in again with
/// `next` lands on the page asked for.
#[tokio::test(flavor = "multi_thread")]
async fn sign_up_lands_in_the_wizard_which_gives_a_first_token_and_sign_in_follows_next() {
    let _one = ONE_BROWSER.lock().await;
    let Some(mut b) = Browser::start("console_browser::wizard").await else {
        return;
    };
    let s = server(false).await;
    b.goto(&s.url("/signup")).await;
    b.check().await;
    b.screenshots("signup").await;
    b.fill("form.stack input[name=email]", "hedy@example.com")
        .await;
    b.fill("form.stack input[name=display_name]", "Hedy").await;
    b.fill("form.stack input[name=tenant_name]", "Frequency Hopping")
        .await;
    b.fill("form.stack input[name=password]", PASSWORD).await;
    b.click("form.stack button[type=submit]").await;
    b.wait_url(&s.url("/agents/new"), WAIT).await;
    b.check().await;
    b.screenshots("wizard").await;

    // Register an agent with a generated key: the credentials, once.
    b.fill("input[name=name]", "first-bot").await;
    b.fill("textarea[name=description]", "Reads invoices").await;
    b.click("form[action$=\"/agents/new\"] button[type=submit]")
        .await;
    b.wait_css("#client-secret", WAIT).await;
    b.check().await;
    let client_id = b.text_of("#client-id").await.unwrap();
    assert!(client_id.starts_with("agt_"), "{client_id}");
    assert!(b.text_of("#private-jwk").await.unwrap().contains("\"d\""));
    assert!(b.text_of("#snippet-cli").await.is_some());
    b.screenshots("wizard-credentials").await;

    // "Get a token now": the decoded claims name the agent.
    b.click("form[action$=\"/token\"] button[type=submit]")
        .await;
    b.wait_css("#token-claims", WAIT).await;
    b.check().await;
    let claims: Value = serde_json::from_str(&b.text_of("#token-claims").await.unwrap()).unwrap();
    assert_eq!(claims["sub"], json!(client_id), "{claims}");
    b.screenshots("wizard-first-token").await;

    // Signed out, the Usage tab asks to sign in and then opens.
    b.click("header form[action$=\"/logout\"] button").await;
    b.wait_for(
        "the signed-out home page",
        "return !document.querySelector('header form[action$=\"/logout\"]')",
        json!([]),
        WAIT,
    )
    .await;
    b.goto(&s.url("/usage")).await;
    b.wait_url(&s.url("/login"), WAIT).await;
    b.check().await;
    b.fill("input[name=email]", "hedy@example.com").await;
    b.fill("input[name=password]", PASSWORD).await;
    b.click("form[action*=\"/login\"] button[type=submit]")
        .await;
    b.wait_url(&s.url("/usage"), WAIT).await;
    b.wait_css("[data-metric=\"agents\"]", WAIT).await;
    assert_eq!(number(&b, "[data-metric=\"agents\"] .meter-used").await, 1);
    b.check().await;
    b.quit().await;
}

/// The dashboard pages on Postgres (store and usage meter): each page, the
/// JSON and the charts answer, with the figures of `GET /billing/usage`.
#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_pages_work_on_postgres() {
    let Some(url) = sentryagent_storage::testing::postgres("console_dashboard::postgres").await
    else {
        return;
    };
    let s = server_on(false, Some(&url)).await;
    let p = s.sign_up("radia@example.com").await;
    s.agent_with_tokens(&p, "pg-bot", 6).await;
    s.flush(&p).await;
    let cookie = format!("{}={}", p.cookie.0, p.cookie.1);
    let get = |path: &str| s.http.get(s.url(path)).header("cookie", &cookie).send();
    let api = s.usage(&p).await;
    let page: Value = get("/usage.json").await.unwrap().json().await.unwrap();
    for field in ["api_calls_today", "agents", "token_issuances_this_month"] {
        assert_eq!(page[field], api[field], "{field}");
    }
    assert_eq!(used(&api, "token_issuances_this_month"), 6);
    for path in [
        "/usage",
        "/settings/billing",
        "/settings/tier",
        "/analytics",
    ] {
        let r = get(path).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let html = r.text().await.unwrap();
        assert!(html.contains("pg-bot") || path != "/analytics", "{html}");
    }
    let heat = get("/analytics/heatmap.svg")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(heat.matches("data-cell=").count(), 168);
    assert!(heat.contains("6 in all"), "{heat}");
    let trend = get("/analytics/token-trend.svg")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(trend.matches("<circle").count(), 30);
}

/// Every page of the console, public and signed in, for a tenant with a
/// public agent that has issued a token: the paths a person visits.
async fn every_page(s: &Server, p: &Person) -> (Vec<(&'static str, String)>, Vec<String>) {
    let a = daemon::post(
        &s.http,
        s.url("/v1/agents"),
        &p.key,
        json!({"name": "atlas-bot", "description": "Looks things up", "capabilities": ["search"], "visibility": "public"}),
    )
    .await;
    let id = a["client_id"].as_str().unwrap().to_owned();
    let r = daemon::form(
        s.http.post(s.url("/oauth2/token")),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", a["client_secret"].as_str().unwrap()),
        ],
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let listing = s
        .http
        .get(s.url(&format!("/marketplace/agents/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let slug = listing
        .split("href=\"/publishers/")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no publisher link on the listing: {listing}"))
        .to_owned();
    let public = vec![
        ("home", "/".to_owned()),
        ("pricing", "/pricing".to_owned()),
        ("docs", "/docs".to_owned()),
        ("sdks", "/sdks".to_owned()),
        ("marketplace", "/marketplace?q=atlas".to_owned()),
        ("marketplace-agent", format!("/marketplace/agents/{id}")),
        ("publisher", format!("/publishers/{slug}")),
        ("login", "/login".to_owned()),
        ("signup", "/signup".to_owned()),
    ];
    let signed_in = [
        "/agents".to_owned(),
        "/agents/new".to_owned(),
        format!("/agents/{id}"),
        "/api-keys".to_owned(),
        "/members".to_owned(),
        "/audit".to_owned(),
        "/settings/profile".to_owned(),
        "/usage".to_owned(),
        "/settings/billing".to_owned(),
        "/settings/tier".to_owned(),
        "/analytics".to_owned(),
    ];
    (public, signed_in.to_vec())
}

/// The name of a signed-in page's screenshots.
fn shot_name(path: &str) -> String {
    let name = path.trim_start_matches('/').replace('/', "-");
    if name.starts_with("agents-agt_") {
        "agent".to_owned()
    } else {
        name
    }
}

/// Every page in the browser: no console error, no CSP violation, no
/// request leaving loopback, a heading, and screenshots at both widths.
#[tokio::test(flavor = "multi_thread")]
async fn every_page_renders_in_the_browser_without_a_console_error() {
    let _one = ONE_BROWSER.lock().await;
    let Some(mut b) = Browser::start("console_browser::every_page").await else {
        return;
    };
    let s = server(false).await;
    let p = s.sign_up("grace@example.com").await;
    let (public, signed_in) = every_page(&s, &p).await;
    for (name, path) in &public {
        b.goto(&s.url(path)).await;
        b.check().await;
        assert_eq!(b.count("main h1").await, 1, "{path} has one heading");
        b.screenshots(name).await;
    }
    sign_in(&mut b, &s, &p).await;
    for path in &signed_in {
        b.goto(&s.url(path)).await;
        b.check().await;
        assert!(
            b.url().await.ends_with(path.as_str()),
            "{path} opened signed in"
        );
        assert_eq!(b.count("main h1").await, 1, "{path} has one heading");
        b.screenshots(&shot_name(path)).await;
    }

    // The keyboard: the first Tab reaches the skip link, which leads to the
    // main content.
    b.goto(&s.url("/usage")).await;
    b.cdp(
        "Input.dispatchKeyEvent",
        json!({"type": "keyDown", "key": "Tab", "code": "Tab", "windowsVirtualKeyCode": 9}),
    )
    .await;
    b.cdp(
        "Input.dispatchKeyEvent",
        json!({"type": "keyUp", "key": "Tab", "code": "Tab", "windowsVirtualKeyCode": 9}),
    )
    .await;
    assert_eq!(
        b.js(
            "const a = document.activeElement; return [a.className, a.getAttribute('href')]",
            json!([])
        )
        .await,
        json!(["skip", "#main"])
    );

    // Dark: with `prefers-color-scheme: dark` the page is light text on a
    // dark background.
    b.cdp(
        "Emulation.setEmulatedMedia",
        json!({"features": [{"name": "prefers-color-scheme", "value": "dark"}]}),
    )
    .await;
    b.goto(&s.url("/usage")).await;
    b.check().await;
    let luminance = "const l = c => { const [r, g, b] = c.match(/\\d+/g).map(Number); \
                     return 0.2126 * r + 0.7152 * g + 0.0722 * b; }; \
                     const st = getComputedStyle(document.body); \
                     return [l(st.backgroundColor), l(st.color)]";
    let lum = b.js(luminance, json!([])).await;
    let (bg, fg) = (lum[0].as_f64().unwrap(), lum[1].as_f64().unwrap());
    assert!(bg < 60.0 && fg > 180.0, "dark: background {bg}, text {fg}");
    b.screenshots("usage-dark").await;
    b.quit().await;
}

/// Every page on Postgres (store and meter), over HTTP: each answers 200
/// with the page, signed out or signed in as it needs.
#[tokio::test(flavor = "multi_thread")]
async fn every_page_works_on_postgres() {
    let Some(url) = sentryagent_storage::testing::postgres("console_dashboard::every_page").await
    else {
        return;
    };
    let s = server_on(false, Some(&url)).await;
    let p = s.sign_up("hedy@example.com").await;
    let (public, signed_in) = every_page(&s, &p).await;
    let cookie = format!("{}={}", p.cookie.0, p.cookie.1);
    for (_, path) in &public {
        let r = s.http.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(r.text().await.unwrap().contains("<main"), "{path}");
    }
    for path in &signed_in {
        let r = s
            .http
            .get(s.url(path))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let html = r.text().await.unwrap();
        assert!(html.contains("<main"), "{path}");
        if path == "/agents" {
            assert!(html.contains("atlas-bot"), "{html}");
        }
    }
}

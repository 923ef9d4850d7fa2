//! The web console over HTTP: security headers, assets, sign-up, sign-in
//! (with `next` and the second factor), sign-out, the CSRF token of every
//! form, the signed-out redirect and the prefix.

mod console_support;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use console_support::{Console, PW, Store, attr_after, unique_email};
use sentryagent_core::Clock as _;

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let c = Console::new().await;
    for path in ["/", "/pricing", "/docs", "/sdks", "/login", "/signup"] {
        let a = c.get(path, None).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        let csp = a.header("content-security-policy");
        assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(a.header("x-content-type-options"), "nosniff");
        assert_eq!(a.header("referrer-policy"), "same-origin");
        assert!(a.header("content-type").starts_with("text/html"));
        // No inline script or style: scripts and styles come from files.
        assert!(!a.body.contains("<script>"), "{path}");
        assert!(!a.body.contains("style="), "{path}");
        assert!(!a.body.contains("<style"), "{path}");
        assert!(a.body.contains("class=\"skip\" href=\"#main\""), "{path}");
        assert!(a.body.contains("id=\"main\""), "{path}");
    }
    // Errors too.
    let a = c.post("/logout", None, &[]).await;
    assert!(
        a.header("content-security-policy")
            .contains("default-src 'self'")
    );
}

#[tokio::test]
async fn assets_are_versioned_embedded_and_cached_for_long() {
    let c = Console::new().await;
    let home = c.get("/", None).await;
    let css = attr_after(&home.body, "rel=\"stylesheet\" href=\"").unwrap();
    let js = attr_after(&home.body, "<script src=\"").unwrap();
    assert!(
        css.starts_with("/assets/") && css.ends_with("/console.css"),
        "{css}"
    );
    assert!(
        js.starts_with("/assets/") && js.ends_with("/console.js"),
        "{js}"
    );
    for (path, kind) in [(&css, "text/css"), (&js, "text/javascript")] {
        let a = c.get(path, None).await;
        assert_eq!(a.status, StatusCode::OK);
        assert!(a.header("content-type").starts_with(kind));
        assert!(a.header("cache-control").contains("immutable"));
        assert!(a.header("cache-control").contains("max-age=31536000"));
        assert!(!a.body.is_empty());
    }
    // Another version, or another file, is not served.
    let a = c.get("/assets/0000000000000000/console.css", None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.body.contains("Not found"));
    let other = css.replace("console.css", "secret.txt");
    assert_eq!(c.get(&other, None).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_layout_has_the_usage_tab_when_signed_in() {
    let c = Console::new().await;
    let signed_out = c.get("/", None).await;
    assert!(signed_out.body.contains("href=\"/login\""));
    assert!(!signed_out.body.contains("href=\"/usage\">Usage<"));
    let b = c.sign_up(&unique_email("nav"), "Nav Co").await;
    let page = c.get("/docs", b.cookie()).await;
    assert!(
        page.body.contains("href=\"/usage\">Usage</a>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("aria-current=\"page\">Docs<"));
    // Sign-out is a form that posts with the token.
    assert!(page.body.contains("action=\"/logout\""));
    assert!(page.body.contains(&format!("value=\"{}\"", b.csrf)));
}

#[tokio::test]
async fn sign_up_signs_in_and_opens_the_wizard() {
    let c = Console::new().await;
    let email = unique_email("ada");
    let a = c
        .post(
            "/signup",
            None,
            &[("email", &email), ("password", PW), ("tenant_name", "Acme")],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(a.location(), "/agents/new");
    assert_eq!(a.header("cache-control"), "no-store");
    let cookie = a.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));
    // The same email again: a clear error, the form kept, no password echoed.
    let again = c
        .post(
            "/signup",
            None,
            &[("email", &email), ("password", PW), ("tenant_name", "Acme")],
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.body.contains("role=\"alert\""));
    assert!(again.body.contains(&email));
    assert!(!again.body.contains(PW));
    // A weak password: 422 with the reason.
    let weak = c
        .post(
            "/signup",
            None,
            &[
                ("email", &unique_email("weak")),
                ("password", "short"),
                ("tenant_name", "Acme"),
            ],
        )
        .await;
    assert_eq!(weak.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(weak.body.contains("Password:"), "{}", weak.body);
    // A form that is not one: a clear 400 page.
    let bad = c
        .send(
            Request::post("/signup")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("could not be read"));
}

#[tokio::test]
async fn sign_up_closed_shows_a_note_not_a_form() {
    let c = Console::with(Store::Memory, "", |cfg| {
        cfg.people.signup = sentryagent_core::SignupMode::Closed;
    })
    .await;
    let a = c.get("/signup", None).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.body.contains("Sign-up is closed"));
    assert!(!a.body.contains("name=\"password\""));
    let p = c
        .post(
            "/signup",
            None,
            &[
                ("email", "x@example.com"),
                ("password", PW),
                ("tenant_name", "X"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(p.session_cookie().is_none());
}

#[tokio::test]
async fn sign_in_follows_only_safe_next_paths_and_fails_alike() {
    let c = Console::new().await;
    let email = unique_email("grace");
    c.sign_up(&email, "Grace Co").await;

    let page = c.get("/login?next=%2Fagents%3Fstate%3Dactive", None).await;
    assert!(
        page.body
            .contains("name=\"next\" value=\"/agents?state=active\"")
    );
    let evil = c
        .get("/login?next=https%3A%2F%2Fevil.example%2F", None)
        .await;
    assert!(!evil.body.contains("evil.example"));

    for (next, to) in [
        ("/agents?state=active", "/agents?state=active"),
        ("https://evil.example/", "/agents"),
        ("//evil.example/x", "/agents"),
        ("/\\evil.example", "/agents"),
    ] {
        let a = c
            .post(
                "/login",
                None,
                &[("email", &email), ("password", PW), ("next", next)],
            )
            .await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{next}: {}", a.body);
        assert_eq!(a.location(), to, "{next}");
        assert!(a.session_cookie().is_some());
    }

    let wrong_pw = c
        .post(
            "/login",
            None,
            &[("email", &email), ("password", "nope nope nope")],
        )
        .await;
    let no_user = c
        .post(
            "/login",
            None,
            &[("email", &unique_email("nobody")), ("password", PW)],
        )
        .await;
    assert_eq!(wrong_pw.status, StatusCode::UNAUTHORIZED);
    assert_eq!(no_user.status, StatusCode::UNAUTHORIZED);
    let msg = "The email, password or code is not right.";
    assert!(wrong_pw.body.contains(msg) && no_user.body.contains(msg));
    assert!(wrong_pw.session_cookie().is_none());
}

#[tokio::test]
async fn sign_in_asks_for_the_second_factor_when_the_account_has_one() {
    let c = Console::new().await;
    let email = unique_email("totp");
    c.sign_up(&email, "Totp Co").await;
    // Turn the second factor on with the core, as the profile page does.
    let meta = sentryagent_core::RequestMeta::default();
    let signed = c
        .idp
        .sign_in(
            &sentryagent_core::SignIn {
                email: email.clone(),
                password: PW.into(),
                totp: None,
                tenant_id: None,
            },
            &meta,
            None,
        )
        .await
        .unwrap();
    let auth = c
        .idp
        .authenticate_session(
            &sentryagent_core::SessionCredentials {
                secret: signed.secret.expose(),
                csrf_token: None,
                method: "GET",
            },
            &meta,
        )
        .await
        .unwrap();
    let enrolment = c.idp.begin_totp(&auth).await.unwrap();
    let code = sentryagent_core::conformance::kit::totp_code(&enrolment.secret, c.clock.now());
    c.idp.confirm_totp(&auth, &code, &meta).await.unwrap();

    let first = c
        .post("/login", None, &[("email", &email), ("password", PW)])
        .await;
    assert_eq!(first.status, StatusCode::UNAUTHORIZED);
    assert!(first.body.contains("name=\"totp\""), "{}", first.body);
    assert!(first.session_cookie().is_none());
    c.clock.advance(std::time::Duration::from_secs(60));
    let code = sentryagent_core::conformance::kit::totp_code(&enrolment.secret, c.clock.now());
    let second = c
        .post(
            "/login",
            None,
            &[("email", &email), ("password", PW), ("totp", &code)],
        )
        .await;
    assert_eq!(second.status, StatusCode::SEE_OTHER, "{}", second.body);
    assert!(second.session_cookie().is_some());
}

#[tokio::test]
async fn sign_out_needs_the_csrf_token_and_ends_the_session() {
    let c = Console::new().await;
    let b = c.sign_up(&unique_email("out"), "Out Co").await;
    // Without the token, or with another one: refused, still signed in.
    for form in [vec![], vec![("csrf_token", "forged")]] {
        let a = c.post("/logout", b.cookie(), &form).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{form:?}");
        assert!(a.body.contains("reload the page"));
    }
    assert!(c.get("/", b.cookie()).await.csrf().is_some());
    // With it: signed out, cookie cleared, the session is gone.
    let a = c
        .post("/logout", b.cookie(), &[("csrf_token", &b.csrf)])
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.location(), "/?notice=signed-out");
    assert!(a.header("set-cookie").contains("Max-Age=0"));
    let after = c.get("/", b.cookie()).await;
    assert!(after.csrf().is_none());
    assert!(after.header("set-cookie").contains("Max-Age=0"));
}

#[tokio::test]
async fn posts_from_another_site_are_refused() {
    let c = Console::new().await;
    let email = unique_email("xsite");
    c.sign_up(&email, "X Co").await;
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("email", email.as_str()), ("password", PW)])
        .finish();
    for (name, value) in [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let a = c
            .send(
                Request::post("/login")
                    .header(header::HOST, "127.0.0.1:8080")
                    .header(name, value)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from(body.clone()))
                    .unwrap(),
            )
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{name}");
        assert!(a.session_cookie().is_none());
    }
    let same = c
        .send(
            Request::post("/login")
                .header(header::HOST, "127.0.0.1:8080")
                .header("origin", "http://127.0.0.1:8080")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
    assert_eq!(same.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn signed_out_visitors_of_signed_in_pages_go_to_sign_in_with_next() {
    let c = Console::new().await;
    let a = c.post("/logout", None, &[]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.location(), "/login?next=%2Flogout");
}

#[tokio::test]
async fn under_a_prefix_every_link_and_redirect_keeps_it() {
    let c = Console::with(Store::Memory, "/console", |_| {}).await;
    let home = c.get("", None).await;
    assert_eq!(home.status, StatusCode::OK);
    for href in [
        "href=\"/console/login\"",
        "href=\"/console/pricing\"",
        "href=\"/console/assets/",
    ] {
        assert!(home.body.contains(href), "{href}");
    }
    assert!(!home.body.contains("href=\"/login\""));
    let email = unique_email("pre");
    let a = c
        .post(
            "/signup",
            None,
            &[("email", &email), ("password", PW), ("tenant_name", "Pre")],
        )
        .await;
    assert_eq!(a.location(), "/console/agents/new");
    let cookie = a.session_cookie().unwrap();
    let b = c.browser(cookie).await;
    let out = c
        .post("/logout", b.cookie(), &[("csrf_token", &b.csrf)])
        .await;
    assert_eq!(out.location(), "/console?notice=signed-out");
    // `next` outside the prefix is not followed.
    let l = c
        .post(
            "/login",
            None,
            &[("email", &email), ("password", PW), ("next", "/elsewhere")],
        )
        .await;
    assert_eq!(l.location(), "/console/agents");
    let l = c
        .post(
            "/login",
            None,
            &[
                ("email", &email),
                ("password", PW),
                ("next", "/console/members"),
            ],
        )
        .await;
    assert_eq!(l.location(), "/console/members");
    let r = c.post("/logout", None, &[]).await;
    assert_eq!(r.location(), "/console/login?next=%2Fconsole%2Flogout");
}

#[tokio::test]
async fn pricing_shows_the_configured_limits_and_no_prices_without_billing() {
    let c = Console::with(Store::Memory, "", |cfg| {
        cfg.tiers.free.max_agents = Some(7);
        cfg.tiers.free.api_calls_per_day = Some(12_345);
    })
    .await;
    let a = c.get("/pricing", None).await;
    assert!(a.body.contains("<td>7</td>"), "{}", a.body);
    assert!(a.body.contains("12,345"));
    assert!(a.body.contains("Unlimited"));
    assert!(!a.body.contains(">Price<"));
    assert!(a.body.contains("Billing is not set up on this server"));
}

#[tokio::test]
async fn the_marketplace_searches_filters_pages_and_escapes() {
    let c = Console::new().await;
    let b = c.sign_up(&unique_email("pub"), "Pub Co").await;
    c.raise_tier(&b).await;
    let shown = c
        .agent(&b, "<script>alert(1)</script>", true, &["invoices"])
        .await;
    let hidden = c.agent(&b, "private-bot", false, &["invoices"]).await;
    for i in 0..2 {
        c.agent(&b, &format!("filler-{i}"), true, &["weather"])
            .await;
    }

    let all = c.get("/marketplace", None).await;
    assert_eq!(all.status, StatusCode::OK);
    assert!(all.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!all.body.contains("<script>alert(1)"));
    assert!(!all.body.contains("private-bot"));
    let by_cap = c.get("/marketplace?capability=weather", None).await;
    assert!(by_cap.body.contains("filler-0") && by_cap.body.contains("filler-1"));
    assert!(!by_cap.body.contains("alert(1)"));
    let by_text = c.get("/marketplace?q=filler-1", None).await;
    assert!(by_text.body.contains("filler-1") && !by_text.body.contains("filler-0"));
    let none = c.get("/marketplace?publisher=no-such-slug", None).await;
    assert!(none.body.contains("No agent matches."));
    // A query it cannot read is a clear 400 page, a too-long one too.
    let long = "a".repeat(300);
    let bad = c.get(&format!("/marketplace?q={long}"), None).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("at most 200 characters"));

    // The agent's page: capabilities, DID document, agent card, publisher.
    let a = c
        .get(&format!("/marketplace/agents/{}", shown.agent.id), None)
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.contains(&shown.agent.did));
    assert!(a.body.contains("id=\"did-document\""));
    assert!(a.body.contains("id=\"agent-card\""));
    assert!(a.body.contains("?capability=invoices"));
    assert!(!a.body.contains("<script>alert(1)"));
    let slug = attr_after(&a.body, "href=\"/publishers/").unwrap();
    // A private agent, or no agent at all: the same 404 page.
    for id in [hidden.agent.id.to_string(), "not-an-id".into()] {
        let n = c.get(&format!("/marketplace/agents/{id}"), None).await;
        assert_eq!(n.status, StatusCode::NOT_FOUND);
        assert!(n.body.contains("There is no such agent"));
    }
    // The publisher's page lists its public agents.
    let p = c.get(&format!("/publishers/{slug}"), None).await;
    assert_eq!(p.status, StatusCode::OK, "{slug}");
    assert!(p.body.contains("filler-0"));
    assert!(!p.body.contains("private-bot"));
    assert_eq!(
        c.get("/publishers/nobody-here", None).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_marketplace_pages_with_a_cursor_that_keeps_the_filters() {
    let c = Console::new().await;
    let b = c.sign_up(&unique_email("many"), "Many Co").await;
    c.raise_tier(&b).await;
    for i in 0..25 {
        c.agent(&b, &format!("pager-{i:02}"), true, &["paging"])
            .await;
    }
    let first = c.get("/marketplace?capability=paging", None).await;
    let next = attr_after(&first.body, "<a href=\"/marketplace?").expect("a next link");
    let next = next.replace("&amp;", "&");
    assert!(
        next.contains("capability=paging") && next.contains("cursor="),
        "{next}"
    );
    let second = c.get(&format!("/marketplace?{next}"), None).await;
    assert_eq!(second.status, StatusCode::OK);
    let count = |body: &str| body.matches("class=\"card\"").count();
    assert_eq!(count(&first.body) + count(&second.body), 25);
}

#[tokio::test]
async fn pricing_shows_prices_when_billing_is_configured() {
    let config = sentryagent_http::console::ConsoleConfig::new("")
        .price(sentryagent_core::Tier::Pro, "$49 a month");
    let (c, _fake) = Console::with_stripe(config).await;
    let a = c.get("/pricing", None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.contains(">Price<"));
    assert!(a.body.contains("$49 a month"));
    assert!(a.body.contains("See the billing page"));
    assert!(!a.body.contains("Billing is not set up"));
}

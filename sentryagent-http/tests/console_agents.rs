//! The console's agent pages over HTTP: the onboarding wizard from sign-up
//! to a first token, the list with filters and escaping, an agent's page
//! with lifecycle and credentials behind a confirmation, roles, tenant
//! isolation, on the memory, sled and Postgres stores.

mod console_support;

use axum::http::StatusCode;
use console_support::{Browser, Console, Store, attr_after, unique_email};
use sentryagent_core::Role;

/// Registers an agent through the wizard; returns the page and the id.
async fn register(
    c: &Console,
    b: &Browser,
    form: &[(&str, &str)],
) -> (console_support::Answer, String) {
    let mut fields = vec![("csrf_token", b.csrf.as_str())];
    fields.extend_from_slice(form);
    let a = c.post("/agents/new", b.cookie(), &fields).await;
    let id =
        attr_after(&a.body, "id=\"client-id\">").map(|s| s.split('<').next().unwrap().to_owned());
    let id = id.or_else(|| {
        let at = a.body.find("<code id=\"client-id\">")? + "<code id=\"client-id\">".len();
        Some(a.body[at..].split('<').next()?.to_owned())
    });
    (a, id.unwrap_or_default())
}

/// The wizard from sign-up to a first token, on one store.
async fn wizard_to_first_token(c: &Console) {
    let b = c.sign_up(&unique_email("wiz"), "Wizard Co").await;
    let page = c.get("/agents/new", b.cookie()).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("name=\"capabilities\""));
    let (a, id) = register(
        c,
        &b,
        &[
            ("name", "billing-bot"),
            ("description", "Pays invoices"),
            ("capabilities", "invoices, refunds"),
            ("scopes", "invoices:read"),
            ("key", "generate"),
        ],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.header("cache-control"), "no-store");
    assert!(id.starts_with("agt_"), "{id}");
    let secret = a
        .body
        .split("<code id=\"client-secret\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .expect("the secret, shown once")
        .to_owned();
    assert!(a.body.contains("id=\"private-jwk\""));
    assert!(
        a.body.contains("&quot;kty&quot;: &quot;OKP&quot;"),
        "{}",
        a.body
    );
    for s in ["snippet-curl", "snippet-cli", "snippet-python"] {
        assert!(a.body.contains(s), "{s}");
    }
    assert!(a.body.contains("data-download=\"#private-jwk\""));
    // The secret is never shown again.
    let detail = c.get(&format!("/agents/{id}"), b.cookie()).await;
    assert_eq!(detail.status, StatusCode::OK);
    assert!(!detail.body.contains(&secret));
    assert!(detail.body.contains("id=\"did-document\""));
    assert!(
        detail
            .body
            .contains("Token issuances this month: <strong>0</strong>")
    );
    // The first token, with its decoded claims.
    let t = c
        .post(
            &format!("/agents/{id}/token"),
            b.cookie(),
            &[("csrf_token", &b.csrf), ("client_secret", &secret)],
        )
        .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    assert_eq!(t.header("cache-control"), "no-store");
    assert!(t.body.contains("id=\"token-claims\""));
    assert!(
        t.body
            .contains(&format!("&quot;sub&quot;: &quot;{id}&quot;"))
            || t.body.contains(&format!("\"sub\": \"{id}\"")),
        "{}",
        t.body
    );
    assert!(t.body.contains("invoices:read"));
    // The usage counts it.
    c.idp.flush_usage().await.unwrap();
    let detail = c.get(&format!("/agents/{id}"), b.cookie()).await;
    assert!(
        detail
            .body
            .contains("Token issuances this month: <strong>1</strong>"),
        "{}",
        detail.body
    );
    // A wrong secret: a clear 401 page, no token.
    let wrong = c
        .post(
            &format!("/agents/{id}/token"),
            b.cookie(),
            &[("csrf_token", &b.csrf), ("client_secret", "sa_cs_wrong")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("was not accepted"));
}

#[tokio::test]
async fn the_wizard_goes_from_sign_up_to_a_first_token_on_memory() {
    wizard_to_first_token(&Console::new().await).await;
}

#[tokio::test]
async fn the_wizard_goes_from_sign_up_to_a_first_token_on_sled() {
    wizard_to_first_token(&Console::with(Store::Sled, "", |_| {}).await).await;
}

#[tokio::test]
async fn the_wizard_goes_from_sign_up_to_a_first_token_on_postgres() {
    sentryagent_storage::testing::with_schema("console_wizard_postgres", |url, _| async move {
        let c = Console::on(Store::Postgres, Some(url), "", |_| {}).await;
        wizard_to_first_token(&c).await;
        tenant_isolation(&c).await;
    })
    .await;
}

#[tokio::test]
async fn a_pasted_did_key_registers_without_a_private_key() {
    let c = Console::new().await;
    let b = c.sign_up(&unique_email("did"), "Did Co").await;
    let did = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK";
    let (a, id) = register(&c, &b, &[("name", "own-key"), ("key", "did"), ("did", did)]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(!a.body.contains("id=\"private-jwk\""));
    assert!(
        c.get(&format!("/agents/{id}"), b.cookie())
            .await
            .body
            .contains(did)
    );
    // No did:key pasted, a bad one, or a taken name: the form again, with why.
    let (none, _) = register(&c, &b, &[("name", "x"), ("key", "did"), ("did", "")]).await;
    assert_eq!(none.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(none.body.contains("role=\"alert\""));
    let (bad, _) = register(
        &c,
        &b,
        &[("name", "y"), ("key", "did"), ("did", "did:key:nope")],
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    let (taken, _) = register(&c, &b, &[("name", "own-key"), ("key", "generate")]).await;
    assert_eq!(taken.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(taken.body.contains("An agent of this name exists"));
    assert!(taken.body.contains("value=\"own-key\""));
}

#[tokio::test]
async fn the_free_tier_limit_reads_clearly_in_the_wizard() {
    let c = Console::new().await;
    let b = c.sign_up(&unique_email("lim"), "Lim Co").await;
    for i in 0..3 {
        c.agent(&b, &format!("a{i}"), false, &[]).await;
    }
    let (a, _) = register(&c, &b, &[("name", "fourth"), ("key", "generate")]).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        a.body.contains("limit of the free tier reached"),
        "{}",
        a.body
    );
}

#[tokio::test]
async fn the_list_filters_shows_badges_and_escapes_names() {
    let c = Console::new().await;
    let b = c.sign_up(&unique_email("list"), "List Co").await;
    let x = c
        .agent(&b, "<script>alert('x')</script>", false, &["invoices"])
        .await;
    c.agent(&b, "weather-bot", false, &["weather"]).await;
    let (_, caller) = c.member(&b).await;
    c.idp
        .transition_agent(
            &caller,
            &x.agent.id,
            sentryagent_core::LifecycleState::Paused,
        )
        .await
        .unwrap();
    let all = c.get("/agents", b.cookie()).await;
    assert_eq!(all.status, StatusCode::OK);
    assert!(all.body.contains("&lt;script&gt;alert('x')&lt;/script&gt;"));
    assert!(!all.body.contains("<script>alert"));
    assert!(all.body.contains("data-state=\"paused\""));
    assert!(all.body.contains("data-state=\"active\""));
    let paused = c.get("/agents?state=paused", b.cookie()).await;
    assert!(paused.body.contains("alert(") && !paused.body.contains("weather-bot"));
    let q = c.get("/agents?q=weather", b.cookie()).await;
    assert!(q.body.contains("weather-bot") && !q.body.contains("alert("));
    let bad = c.get("/agents?state=flying", b.cookie()).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let detail = c.get(&format!("/agents/{}", x.agent.id), b.cookie()).await;
    assert!(detail.body.contains("<title>&lt;script&gt;"));
    assert!(!detail.body.contains("<script>alert"));
}

#[tokio::test]
async fn signed_out_agent_pages_redirect_to_sign_in_with_next() {
    let c = Console::new().await;
    for (path, next) in [
        ("/agents", "%2Fagents"),
        ("/agents/new", "%2Fagents%2Fnew"),
        ("/agents?state=active", "%2Fagents%3Fstate%3Dactive"),
    ] {
        let a = c.get(path, None).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(a.location(), format!("/login?next={next}"));
    }
}

#[tokio::test]
async fn lifecycle_and_credentials_ask_for_confirmation_and_need_the_token() {
    let c = Console::new().await;
    let b = c.sign_up(&unique_email("life"), "Life Co").await;
    let r = c.agent(&b, "lifer", false, &[]).await;
    let id = r.agent.id.to_string();
    let detail = c.get(&format!("/agents/{id}"), b.cookie()).await;
    // An active agent may go to deployed, listed, paused, retired.
    for to in ["deployed", "listed", "paused", "retired"] {
        assert!(detail.body.contains(&format!("value=\"{to}\"")), "{to}");
    }
    assert!(!detail.body.contains("name=\"to\" value=\"active\""));
    // Without the CSRF token: refused.
    let forged = c
        .post(
            &format!("/agents/{id}/lifecycle"),
            b.cookie(),
            &[("to", "paused")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let ok = c
        .post(
            &format!("/agents/{id}/lifecycle"),
            b.cookie(),
            &[("csrf_token", &b.csrf), ("to", "paused")],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(ok.location(), format!("/agents/{id}?notice=agent-updated"));
    let after = c.get(ok.location(), b.cookie()).await;
    assert!(
        after.body.contains("The agent&#39;s state changed.")
            || after.body.contains("The agent's state changed.")
    );
    assert!(after.body.contains("data-state=\"paused\""));
    // Retiring asks first.
    let ask = c
        .post(
            &format!("/agents/{id}/lifecycle"),
            b.cookie(),
            &[("csrf_token", &b.csrf), ("to", "retired")],
        )
        .await;
    assert_eq!(ask.status, StatusCode::OK);
    assert!(ask.body.contains("name=\"confirm\" value=\"yes\""));
    assert!(
        c.get(&format!("/agents/{id}"), b.cookie())
            .await
            .body
            .contains("data-state=\"paused\"")
    );
    // Rotation asks, then shows the new secret once; it works.
    let ask = c
        .post(
            &format!("/agents/{id}/credentials"),
            b.cookie(),
            &[("csrf_token", &b.csrf), ("action", "rotate")],
        )
        .await;
    assert!(ask.body.contains("name=\"confirm\" value=\"yes\""));
    let rotated = c
        .post(
            &format!("/agents/{id}/credentials"),
            b.cookie(),
            &[
                ("csrf_token", &b.csrf),
                ("action", "rotate"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    assert_eq!(rotated.header("cache-control"), "no-store");
    assert!(rotated.body.contains("id=\"client-secret\""));
    // Revocation asks, then revokes.
    let revoked = c
        .post(
            &format!("/agents/{id}/credentials"),
            b.cookie(),
            &[
                ("csrf_token", &b.csrf),
                ("action", "revoke"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER);
    assert_eq!(
        revoked.location(),
        format!("/agents/{id}?notice=secrets-revoked")
    );
    // Then retire, confirmed: no more transitions are offered.
    let retired = c
        .post(
            &format!("/agents/{id}/lifecycle"),
            b.cookie(),
            &[
                ("csrf_token", &b.csrf),
                ("to", "retired"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(retired.status, StatusCode::SEE_OTHER);
    let gone = c.get(&format!("/agents/{id}"), b.cookie()).await;
    assert!(gone.body.contains("A retired agent stays retired."));
    // An illegal transition is a clear 409 page.
    let illegal = c
        .post(
            &format!("/agents/{id}/lifecycle"),
            b.cookie(),
            &[("csrf_token", &b.csrf), ("to", "active")],
        )
        .await;
    assert_eq!(illegal.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_viewer_is_offered_no_change_and_is_refused_one() {
    let c = Console::new().await;
    let owner = c.sign_up(&unique_email("own"), "Roles Co").await;
    let r = c.agent(&owner, "watched", false, &[]).await;
    let id = r.agent.id.to_string();
    let viewer = c.join(&owner, Role::Viewer).await;
    let list = c.get("/agents", viewer.cookie()).await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains("watched"));
    assert!(!list.body.contains("Register an agent"));
    let detail = c.get(&format!("/agents/{id}"), viewer.cookie()).await;
    assert!(detail.body.contains("Your role may not change agents."));
    assert!(!detail.body.contains("/lifecycle\""));
    assert_eq!(
        c.get("/agents/new", viewer.cookie()).await.status,
        StatusCode::FORBIDDEN
    );
    let refused = c
        .post(
            &format!("/agents/{id}/lifecycle"),
            viewer.cookie(),
            &[("csrf_token", &viewer.csrf), ("to", "paused")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let (created, _) = register(&c, &viewer, &[("name", "sneaky"), ("key", "generate")]).await;
    assert_eq!(created.status, StatusCode::FORBIDDEN);
    // A developer may.
    let dev = c.join(&owner, Role::Developer).await;
    let ok = c
        .post(
            &format!("/agents/{id}/lifecycle"),
            dev.cookie(),
            &[("csrf_token", &dev.csrf), ("to", "paused")],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
}

/// A member of one tenant never sees nor changes another's agents.
async fn tenant_isolation(c: &Console) {
    let a = c.sign_up(&unique_email("a"), "Tenant A").await;
    let b = c.sign_up(&unique_email("b"), "Tenant B").await;
    let theirs = c.agent(&a, "a-secret-project", false, &[]).await;
    let id = theirs.agent.id.to_string();
    let list = c.get("/agents", b.cookie()).await;
    assert!(!list.body.contains("a-secret-project"));
    let page = c.get(&format!("/agents/{id}"), b.cookie()).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(!page.body.contains("a-secret-project"));
    for (path, form) in [
        ("lifecycle", vec![("to", "paused")]),
        (
            "credentials",
            vec![("action", "revoke"), ("confirm", "yes")],
        ),
        ("token", vec![("client_secret", "x")]),
    ] {
        let mut f = vec![("csrf_token", b.csrf.as_str())];
        f.extend(form);
        let r = c
            .post(&format!("/agents/{id}/{path}"), b.cookie(), &f)
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
    }
    let still = c.get(&format!("/agents/{id}"), a.cookie()).await;
    assert!(still.body.contains("data-state=\"active\""));
}

#[tokio::test]
async fn a_member_never_sees_another_tenants_agents() {
    tenant_isolation(&Console::new().await).await;
}

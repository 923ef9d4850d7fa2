//! The console's tenant pages over HTTP: API keys (shown once, revoked
//! with a reason), members and invitations by role, the audit trail with
//! its filters and chain status, and the profile (password, second factor,
//! sessions); roles, CSRF, escaping and tenant isolation; sled and
//! Postgres for the pages that read the store.

mod console_support;

use axum::http::StatusCode;
use console_support::{Browser, Console, PW, Store, attr_after, unique_email};
use sentryagent_core::{Clock as _, Role};

/// The text of the element with `id`, up to the next tag.
fn text_of(body: &str, id: &str) -> Option<String> {
    let marker = format!("id=\"{id}\">");
    let at = body.find(&marker)? + marker.len();
    Some(body[at..].split('<').next()?.to_owned())
}

async fn keys_flow(c: &Console) {
    let b = c.sign_up(&unique_email("keys"), "Keys Co").await;
    let page = c.get("/api-keys", b.cookie()).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("No key yet."));
    let made = c
        .post(
            "/api-keys",
            b.cookie(),
            &[
                ("csrf_token", &b.csrf),
                ("name", "<b>ci</b>"),
                ("scope", "agents_read"),
                ("scope", "audit_read"),
            ],
        )
        .await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.body);
    assert_eq!(made.header("cache-control"), "no-store");
    let key = text_of(&made.body, "api-key").expect("the key, shown once");
    assert!(made.body.contains("&lt;b&gt;ci&lt;/b&gt;"));
    assert!(!made.body.contains("<b>ci</b>"));
    assert!(made.body.contains("agents_read audit_read"));
    // The key works against the core, and is not shown again.
    let again = c.get("/api-keys", b.cookie()).await;
    assert!(!again.body.contains(&key));
    let caller = c
        .idp
        .authenticate_admin(&key, &sentryagent_core::RequestMeta::default())
        .await
        .unwrap();
    assert_eq!(caller.scopes.len(), 2);
    // Revocation needs a reason and the CSRF token.
    let id = attr_after(&again.body, "action=\"/api-keys/").unwrap();
    let id = id.trim_end_matches("/revoke");
    let forged = c
        .post(
            &format!("/api-keys/{id}/revoke"),
            b.cookie(),
            &[("reason", "x")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let no_reason = c
        .post(
            &format!("/api-keys/{id}/revoke"),
            b.cookie(),
            &[("csrf_token", &b.csrf), ("reason", " ")],
        )
        .await;
    assert_eq!(no_reason.status, StatusCode::BAD_REQUEST);
    let revoked = c
        .post(
            &format!("/api-keys/{id}/revoke"),
            b.cookie(),
            &[("csrf_token", &b.csrf), ("reason", "leaked in a <log>")],
        )
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER);
    let after = c.get(revoked.location(), b.cookie()).await;
    assert!(after.body.contains("The API key is revoked."));
    assert!(after.body.contains("leaked in a &lt;log&gt;"));
    assert!(
        c.idp
            .authenticate_admin(&key, &sentryagent_core::RequestMeta::default())
            .await
            .is_err()
    );
    // Another tenant cannot revoke it, nor see it.
    let other = c.sign_up(&unique_email("other"), "Other Co").await;
    assert!(
        !c.get("/api-keys", other.cookie())
            .await
            .body
            .contains("&lt;b&gt;ci")
    );
    let theirs = c
        .post(
            &format!("/api-keys/{id}/revoke"),
            other.cookie(),
            &[("csrf_token", &other.csrf), ("reason", "mine now")],
        )
        .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn api_keys_are_shown_once_and_revoked_with_a_reason() {
    keys_flow(&Console::new().await).await;
}

#[tokio::test]
async fn api_keys_on_sled() {
    keys_flow(&Console::with(Store::Sled, "", |_| {}).await).await;
}

#[tokio::test]
async fn the_tenant_pages_on_postgres() {
    sentryagent_storage::testing::with_schema("console_tenant_postgres", |url, _| async move {
        let c = Console::on(Store::Postgres, Some(url), "", |_| {}).await;
        keys_flow(&c).await;
        members_flow(&c).await;
        audit_flow(&c).await;
    })
    .await;
}

#[tokio::test]
async fn developers_and_viewers_get_no_key_page() {
    let c = Console::new().await;
    let owner = c.sign_up(&unique_email("own"), "Keyless Co").await;
    for role in [Role::Developer, Role::Viewer] {
        let b = c.join(&owner, role).await;
        let page = c.get("/api-keys", b.cookie()).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{role}");
        assert!(page.body.contains("may not manage API keys"));
        let post = c
            .post(
                "/api-keys",
                b.cookie(),
                &[("csrf_token", &b.csrf), ("name", "x")],
            )
            .await;
        assert_eq!(post.status, StatusCode::FORBIDDEN);
    }
}

async fn members_flow(c: &Console) {
    let owner = c.sign_up(&unique_email("boss"), "Team Co").await;
    let page = c.get("/members", owner.cookie()).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("(you)"));
    // An owner may give every role.
    for r in ["owner", "admin", "developer", "viewer"] {
        assert!(page.body.contains(&format!("<option value=\"{r}\"")), "{r}");
    }
    let invited = unique_email("new");
    let made = c
        .post(
            "/members/invitations",
            owner.cookie(),
            &[
                ("csrf_token", &owner.csrf),
                ("email", &invited),
                ("role", "viewer"),
            ],
        )
        .await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.body);
    assert_eq!(made.header("cache-control"), "no-store");
    let link = text_of(&made.body, "invitation-link").unwrap();
    assert!(link.contains("#token="), "{link}");
    assert!(made.body.contains(&invited));
    let listed = c.get("/members", owner.cookie()).await;
    assert!(!listed.body.contains("#token="));
    assert!(listed.body.contains(&invited));
    // Revoke it.
    let rev = attr_after(&listed.body, "action=\"/members/invitations/").unwrap();
    let r = c
        .post(
            &format!("/members/invitations/{rev}"),
            owner.cookie(),
            &[("csrf_token", &owner.csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{rev}");
    assert!(
        !c.get("/members", owner.cookie())
            .await
            .body
            .contains(&invited)
    );
    // Roles: an admin joins, is offered no owner role, cannot touch the owner.
    let admin = c.join(&owner, Role::Admin).await;
    let seen = c.get("/members", admin.cookie()).await;
    assert!(!seen.body.contains("<option value=\"owner\""));
    let owner_id = c.session(&owner).await.user.id.to_string();
    assert!(!seen.body.contains(&format!("/members/{owner_id}/remove")));
    let refused = c
        .post(
            &format!("/members/{owner_id}/remove"),
            admin.cookie(),
            &[("csrf_token", &admin.csrf)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    // The owner makes the admin a viewer; the viewer sees no form.
    let admin_id = c.session(&admin).await.user.id.to_string();
    let changed = c
        .post(
            &format!("/members/{admin_id}/role"),
            owner.cookie(),
            &[("csrf_token", &owner.csrf), ("role", "viewer")],
        )
        .await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER);
    assert_eq!(changed.location(), "/members?notice=role-changed");
    // The session rotates with the role: the page still opens, read only.
    let as_viewer = c.get("/members", admin.cookie()).await;
    assert_eq!(as_viewer.status, StatusCode::OK);
    assert!(!as_viewer.body.contains("Invite someone"));
    let fresh = as_viewer
        .session_cookie()
        .expect("the rotated session's cookie");
    let viewer = c.browser(fresh).await;
    let no = c
        .post(
            "/members/invitations",
            viewer.cookie(),
            &[
                ("csrf_token", &viewer.csrf),
                ("email", &unique_email("x")),
                ("role", "viewer"),
            ],
        )
        .await;
    assert_eq!(no.status, StatusCode::FORBIDDEN);
    // Removal; a bad role is a clear 400.
    let bad = c
        .post(
            &format!("/members/{admin_id}/role"),
            owner.cookie(),
            &[("csrf_token", &owner.csrf), ("role", "king")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let gone = c
        .post(
            &format!("/members/{admin_id}/remove"),
            owner.cookie(),
            &[("csrf_token", &owner.csrf)],
        )
        .await;
    assert_eq!(gone.status, StatusCode::SEE_OTHER);
    assert!(
        !c.get("/members", owner.cookie())
            .await
            .body
            .contains(&admin_id)
    );
    // Another tenant sees none of it and cannot act on it.
    let stranger = c.sign_up(&unique_email("str"), "Stranger Co").await;
    let theirs = c.get("/members", stranger.cookie()).await;
    assert!(!theirs.body.contains(&owner_id));
    let r = c
        .post(
            &format!("/members/{owner_id}/role"),
            stranger.cookie(),
            &[("csrf_token", &stranger.csrf), ("role", "viewer")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn members_invitations_and_roles() {
    members_flow(&Console::new().await).await;
}

#[tokio::test]
async fn members_on_sled() {
    members_flow(&Console::with(Store::Sled, "", |_| {}).await).await;
}

async fn audit_flow(c: &Console) {
    let b = c.sign_up(&unique_email("aud"), "Audit Co").await;
    c.agent(&b, "<i>audited</i>", false, &[]).await;
    let page = c.get("/audit", b.cookie()).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("data-chain=\"verified\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("user.signed_up"));
    assert!(page.body.contains("agent.created") || page.body.contains("agent.registered"));
    // The count the chain status gives is the number of rows listed.
    let rows = page.body.matches("<tr").count() - 1;
    assert!(
        page.body.contains(&format!(" {rows} events, head ")),
        "{rows} rows: {}",
        page.body
    );
    assert!(page.body.contains("data-audit-stream=\"/v1/audit/stream\""));
    let only = c.get("/audit?action=user.signed_up", b.cookie()).await;
    assert!(only.body.contains("user.signed_up"));
    assert!(!only.body.contains("<code>agent."));
    let today = c.clock.now().to_rfc3339()[..10].to_owned();
    let dated = c
        .get(&format!("/audit?from={today}&to={today}"), b.cookie())
        .await;
    assert!(dated.body.contains("user.signed_up"));
    let bad = c.get("/audit?from=yesterday", b.cookie()).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    // Another tenant's trail is not there.
    let other = c.sign_up(&unique_email("aud2"), "Other Audit").await;
    let theirs = c.get("/audit", other.cookie()).await;
    assert!(!theirs.body.contains("<code>agent."));
    let own_id = c.session(&b).await.user.id.to_string();
    assert!(!theirs.body.contains(&own_id));
}

#[tokio::test]
async fn the_audit_trail_filters_and_verifies_its_chain() {
    audit_flow(&Console::new().await).await;
}

#[tokio::test]
async fn the_audit_trail_on_sled() {
    audit_flow(&Console::with(Store::Sled, "", |_| {}).await).await;
}

#[tokio::test]
async fn signed_out_tenant_pages_redirect_with_next() {
    let c = Console::new().await;
    for (path, next) in [
        ("/api-keys", "%2Fapi-keys"),
        ("/members", "%2Fmembers"),
        ("/audit?action=x", "%2Faudit%3Faction%3Dx"),
        ("/settings/profile", "%2Fsettings%2Fprofile"),
    ] {
        let a = c.get(path, None).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(a.location(), format!("/login?next={next}"));
    }
}

async fn signed_in_again(c: &Console, email: &str, pw: &str) -> Browser {
    let a = c
        .post("/login", None, &[("email", email), ("password", pw)])
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    c.browser(a.session_cookie().unwrap()).await
}

#[tokio::test]
async fn the_profile_changes_the_password_the_second_factor_and_sessions() {
    let c = Console::new().await;
    let email = unique_email("me");
    let b = c.sign_up(&email, "Me Co").await;
    let other = signed_in_again(&c, &email, PW).await;
    let page = c.get("/settings/profile", b.cookie()).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(&email));
    assert_eq!(
        page.body.matches("/end\"").count(),
        2,
        "two sessions listed"
    );
    // A wrong current password: a clear error.
    let wrong = c
        .post(
            "/settings/profile/password",
            b.cookie(),
            &[
                ("csrf_token", &b.csrf),
                ("current_password", "nope nope nope"),
                ("new_password", "orbit plum kettle seventeen"),
            ],
        )
        .await;
    assert_eq!(
        wrong.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        wrong.body
    );
    assert!(wrong.body.contains("role=\"alert\""));
    // The change: this browser gets a new session; the other one ends.
    let new_pw = "orbit plum kettle seventeen";
    let changed = c
        .post(
            "/settings/profile/password",
            b.cookie(),
            &[
                ("csrf_token", &b.csrf),
                ("current_password", PW),
                ("new_password", new_pw),
            ],
        )
        .await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER, "{}", changed.body);
    let b = c.browser(changed.session_cookie().unwrap()).await;
    assert!(c.get("/docs", other.cookie()).await.csrf().is_none());
    // The second factor: set up, confirmed with a code, recovery codes once.
    let begun = c
        .post(
            "/settings/profile/totp",
            b.cookie(),
            &[("csrf_token", &b.csrf)],
        )
        .await;
    assert_eq!(begun.status, StatusCode::OK, "{}", begun.body);
    assert_eq!(begun.header("cache-control"), "no-store");
    let secret = text_of(&begun.body, "totp-secret").unwrap();
    let bad = c
        .post(
            "/settings/profile/totp/confirm",
            b.cookie(),
            &[("csrf_token", &b.csrf), ("code", "000000")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    let code = sentryagent_core::conformance::kit::totp_code(&secret, c.clock.now());
    let on = c
        .post(
            "/settings/profile/totp/confirm",
            b.cookie(),
            &[("csrf_token", &b.csrf), ("code", &code)],
        )
        .await;
    assert_eq!(on.status, StatusCode::OK, "{}", on.body);
    assert_eq!(on.header("cache-control"), "no-store");
    assert!(text_of(&on.body, "recovery-codes").is_some());
    let b = c.browser(on.session_cookie().unwrap()).await;
    // Sign-in now asks for the code.
    let ask = c
        .post("/login", None, &[("email", &email), ("password", new_pw)])
        .await;
    assert!(ask.body.contains("name=\"totp\""));
    // Other sessions end; then this one, which signs out.
    let third = {
        c.clock.advance(std::time::Duration::from_secs(60));
        let code = sentryagent_core::conformance::kit::totp_code(&secret, c.clock.now());
        let a = c
            .post(
                "/login",
                None,
                &[("email", &email), ("password", new_pw), ("totp", &code)],
            )
            .await;
        c.browser(a.session_cookie().unwrap()).await
    };
    let ended = c
        .post(
            "/settings/profile/sessions/end-others",
            b.cookie(),
            &[("csrf_token", &b.csrf)],
        )
        .await;
    assert_eq!(ended.status, StatusCode::SEE_OTHER);
    assert!(c.get("/docs", third.cookie()).await.csrf().is_none());
    let page = c.get("/settings/profile", b.cookie()).await;
    let own = attr_after(&page.body, "action=\"/settings/profile/sessions/").unwrap();
    let out = c
        .post(
            &format!("/settings/profile/sessions/{own}"),
            b.cookie(),
            &[("csrf_token", &b.csrf)],
        )
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.header("set-cookie").contains("Max-Age=0"));
    // Turning the factor off needs the password.
    let back = {
        c.clock.advance(std::time::Duration::from_secs(60));
        let code = sentryagent_core::conformance::kit::totp_code(&secret, c.clock.now());
        let a = c
            .post(
                "/login",
                None,
                &[("email", &email), ("password", new_pw), ("totp", &code)],
            )
            .await;
        c.browser(a.session_cookie().unwrap()).await
    };
    let refused = c
        .post(
            "/settings/profile/totp/disable",
            back.cookie(),
            &[
                ("csrf_token", &back.csrf),
                ("password", "wrong wrong wrong"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let off = c
        .post(
            "/settings/profile/totp/disable",
            back.cookie(),
            &[("csrf_token", &back.csrf), ("password", new_pw)],
        )
        .await;
    assert_eq!(off.status, StatusCode::SEE_OTHER);
    assert!(
        c.get("/settings/profile", back.cookie())
            .await
            .body
            .contains("Set up an authenticator app")
    );
}

#[tokio::test]
async fn an_invitation_link_opens_a_page_that_joins_and_signs_in() {
    let c = Console::new().await;
    let owner = c.sign_up(&unique_email("inv"), "Invite Co").await;
    let email = unique_email("joiner");
    let made = c
        .post(
            "/members/invitations",
            owner.cookie(),
            &[
                ("csrf_token", &owner.csrf),
                ("email", &email),
                ("role", "developer"),
            ],
        )
        .await;
    let link = text_of(&made.body, "invitation-link").unwrap();
    let token = link.split("#token=").nth(1).unwrap().to_owned();
    let page = c.get("/invitations/accept", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.header("cache-control"), "no-store");
    assert!(page.body.contains("data-fragment-token"));
    // A wrong code: a clear 404 page, no session.
    let wrong = c
        .post(
            "/invitations/accept",
            None,
            &[("token", "sa_iv_nope"), ("password", PW)],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::NOT_FOUND, "{}", wrong.body);
    assert!(wrong.session_cookie().is_none());
    let joined = c
        .post(
            "/invitations/accept",
            None,
            &[("token", &token), ("password", PW)],
        )
        .await;
    assert_eq!(joined.status, StatusCode::SEE_OTHER, "{}", joined.body);
    assert_eq!(joined.location(), "/agents");
    let b = c.browser(joined.session_cookie().unwrap()).await;
    assert_eq!(c.session(&b).await.session.role, Some(Role::Developer));
    // Used once only.
    let again = c
        .post(
            "/invitations/accept",
            None,
            &[("token", &token), ("password", PW)],
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_password_reset_link_opens_a_page_that_sets_the_password() {
    let c = Console::new().await;
    let email = unique_email("forgot");
    let owner = c.sign_up(&email, "Reset Co").await;
    let user = c.session(&owner).await.user.id;
    let link = c
        .idp
        .issue_password_reset(&sentryagent_core::Caller::system(), None, &user)
        .await
        .unwrap();
    let token = link.token.expose().to_owned();
    let page = c.get("/password-reset", None).await;
    assert_eq!(page.status, StatusCode::OK);
    let bad = c
        .post(
            "/password-reset",
            None,
            &[
                ("token", "sa_pr_nope"),
                ("password", "orbit plum kettle seventeen"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("not valid"));
    let weak = c
        .post(
            "/password-reset",
            None,
            &[("token", &token), ("password", "short")],
        )
        .await;
    assert_eq!(
        weak.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        weak.body
    );
    let done = c
        .post(
            "/password-reset",
            None,
            &[
                ("token", &token),
                ("password", "orbit plum kettle seventeen"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), "/login?notice=password-reset");
    assert!(
        c.get(done.location(), None)
            .await
            .body
            .contains("Your new password is set")
    );
    signed_in_again(&c, &email, "orbit plum kettle seventeen").await;
}

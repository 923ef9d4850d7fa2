//! People over HTTP: sign-up, sign-in and the session cookie, the CSRF
//! token on state-changing requests, the management API with a session,
//! each role's scopes on every management route, throttling, invitations
//! and the account's own routes.

mod http_helpers;

use std::collections::BTreeSet;
use std::time::Duration;

use http_helpers::{Server, Setup, assert_problem, json_of, start, start_with};
use reqwest::{Method, Response, StatusCode};
use sentryagent_core::Clock as _;
use serde_json::{Value, json};

const PW: &str = "correct horse battery staple";

fn unique_email(name: &str) -> String {
    format!(
        "{name}-{}@example.com",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// A signed-in browser: the session cookie and the CSRF token.
#[derive(Clone, Debug)]
struct Browser {
    cookie: String,
    csrf: String,
    me: Value,
}

/// The `name=value` of the session cookie a response sets.
fn session_cookie(r: &Response) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.contains("sentryagent_session="))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

async fn signed_in(r: Response) -> Browser {
    let status = r.status();
    let cookie = session_cookie(&r).expect("a session cookie");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let me: Value = r.json().await.unwrap();
    assert!(status.is_success(), "{status}: {me}");
    Browser {
        cookie,
        csrf: me["csrf_token"].as_str().unwrap().to_owned(),
        me,
    }
}

impl Browser {
    fn tenant(&self) -> String {
        self.me["session"]["tenant_id"].as_str().unwrap().to_owned()
    }

    fn user(&self) -> String {
        self.me["user"]["id"].as_str().unwrap().to_owned()
    }
}

/// A request with the browser's cookie and, when `csrf`, its token.
fn with(
    s: &Server,
    b: &Browser,
    method: Method,
    path: &str,
    csrf: bool,
) -> reqwest::RequestBuilder {
    let r = s
        .http
        .request(method, s.url(path))
        .header("cookie", &b.cookie);
    if csrf {
        r.header("x-csrf-token", &b.csrf)
    } else {
        r
    }
}

async fn sign_up(s: &Server, email: &str, tenant: &str) -> Browser {
    let r = s
        .http
        .post(s.url("/v1/signup"))
        .json(&json!({"email": email, "password": PW, "tenant_name": tenant}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    signed_in(r).await
}

async fn sign_in(s: &Server, email: &str, password: &str) -> Response {
    s.http
        .post(s.url("/v1/sessions"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn invite(s: &Server, by: &Browser, email: &str, role: &str) -> Value {
    let (st, v) = json_of(
        with(
            s,
            by,
            Method::POST,
            &format!("/v1/tenants/{}/invitations", by.tenant()),
            true,
        )
        .json(&json!({"email": email, "role": role}))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    v
}

async fn accept(s: &Server, token: &str) -> Response {
    s.http
        .post(s.url("/v1/invitations/accept"))
        .json(&json!({"token": token, "password": PW}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn sign_up_then_sign_in_then_a_management_call_with_the_session() {
    let s = start().await;
    let email = unique_email("ada");
    let r = s
        .http
        .post(s.url("/v1/signup"))
        .json(&json!({"email": email, "password": PW, "tenant_name": "Acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    // http issuer: no `__Host-` prefix and no `Secure`.
    assert!(set.starts_with("sentryagent_session=sa_ss_"), "{set}");
    for attr in [
        "; Path=/",
        "; HttpOnly",
        "; SameSite=Lax",
        "; Max-Age=604800",
    ] {
        assert!(set.contains(attr), "{attr} in {set}");
    }
    assert!(!set.contains("Secure"), "{set}");
    let first = signed_in(r).await;
    assert_eq!(first.me["user"]["email"], email);
    assert_eq!(first.me["memberships"][0]["role"], "owner");
    assert_eq!(first.me["memberships"][0]["tenant_name"], "Acme");

    // Sign in again: a new session; the old cookie no longer works.
    let b = signed_in(
        s.http
            .post(s.url("/v1/sessions"))
            .header("cookie", &first.cookie)
            .json(&json!({"email": email.to_uppercase(), "password": PW}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_ne!(b.cookie, first.cookie);
    assert_problem(
        with(&s, &first, Method::GET, "/v1/me", false)
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;

    // A management call with the session and the CSRF token.
    let r = with(&s, &b, Method::POST, "/v1/agents", true)
        .json(&json!({"name": "bot"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(
        r.headers().contains_key("ratelimit-limit"),
        "admitted as an API call"
    );
    // The same call without the token, or with another session's, is refused.
    let r = with(&s, &b, Method::POST, "/v1/agents", false)
        .json(&json!({"name": "bot2"}))
        .send()
        .await
        .unwrap();
    let p = assert_problem(r, 403).await;
    assert!(p["detail"].as_str().unwrap().contains("CSRF"), "{p}");
    let mut wrong = b.clone();
    wrong.csrf = first.csrf.clone();
    let r = with(&s, &wrong, Method::POST, "/v1/agents", true)
        .json(&json!({"name": "bot3"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 403).await;
    // Reads need no token.
    let (st, page) = json_of(
        with(&s, &b, Method::GET, "/v1/agents", false)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let (st, members) = json_of(
        with(
            &s,
            &b,
            Method::GET,
            &format!("/v1/tenants/{}/members", b.tenant()),
            false,
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(members[0]["email"], email);
    // The session never reaches another tenant or operator routes.
    let (other, _) = s.tenant("Other", "free").await;
    let r = with(&s, &b, Method::GET, &format!("/v1/tenants/{other}"), false)
        .send()
        .await
        .unwrap();
    assert_problem(r, 404).await;
    let r = with(&s, &b, Method::GET, "/v1/tenants", false)
        .send()
        .await
        .unwrap();
    assert_problem(r, 403).await;

    // /v1/me answers the same CSRF token.
    let (st, me) = json_of(
        with(&s, &b, Method::GET, "/v1/me", false)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(me["csrf_token"], b.csrf.as_str());
    assert_eq!(me["session"]["current"], true);

    // Sign out clears the cookie; the session is gone.
    let r = with(&s, &b, Method::DELETE, "/v1/sessions/current", true)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let cleared = r.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cleared.starts_with("sentryagent_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    let r = with(&s, &b, Method::GET, "/v1/agents", false)
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0"),
        "a stale cookie is cleared"
    );
    assert_problem(r, 401).await;
}

#[tokio::test]
async fn the_cookie_is_host_prefixed_and_secure_on_an_https_issuer() {
    let s = start_with(Setup {
        configure: Box::new(|c| {
            c.issuer = "https://idp.example".into();
            c.token_endpoint = "https://idp.example/oauth2/token".into();
            c.people.signup = sentryagent_core::SignupMode::Open;
        }),
        ..Default::default()
    })
    .await;
    let r = s
        .http
        .post(s.url("/v1/signup"))
        .json(&json!({"email": unique_email("sec"), "password": PW, "tenant_name": "T"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set.starts_with("__Host-sentryagent_session=sa_ss_"),
        "{set}"
    );
    assert!(
        set.contains("; Secure") && set.contains("; Path=/") && set.contains("; HttpOnly"),
        "{set}"
    );
    assert!(!set.contains("Domain"), "{set}");
    let b = signed_in(r).await;
    let (st, _) = json_of(
        with(&s, &b, Method::GET, "/v1/me", false)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn sign_up_follows_the_mode_and_sign_in_is_throttled() {
    let s = start_with(Setup {
        configure: Box::new(|c| c.people.signup = sentryagent_core::SignupMode::Invite),
        ..Default::default()
    })
    .await;
    let r = s
        .http
        .post(s.url("/v1/signup"))
        .json(&json!({"email": unique_email("x"), "password": PW, "tenant_name": "T"}))
        .send()
        .await
        .unwrap();
    let p = assert_problem(r, 403).await;
    assert!(p["detail"].as_str().unwrap().contains("invitation"), "{p}");

    // Failures are one generic 401; the eleventh attempt on an account is
    // 429 with Retry-After, even with the right password.
    let (tenant, key) = s.tenant("Throttle", "free").await;
    let email = unique_email("locked");
    let (st, inv) = s
        .post(
            &format!("/v1/tenants/{tenant}/invitations"),
            Some(&key),
            &json!({"email": email, "role": "viewer"}),
        )
        .await;
    assert_eq!(st, 201, "{inv}");
    signed_in(accept(&s, inv["token"].as_str().unwrap()).await).await;
    let mut details = BTreeSet::new();
    for password in std::iter::repeat_n("wrong password here", 10) {
        let r = sign_in(&s, &email, password).await;
        let p = assert_problem(r, 401).await;
        details.insert(p["detail"].to_string());
    }
    let r = sign_in(&s, "nobody@example.com", PW).await;
    details.insert(assert_problem(r, 401).await["detail"].to_string());
    assert_eq!(
        details.len(),
        1,
        "one message for every failure: {details:?}"
    );
    let r = sign_in(&s, &email, PW).await;
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=90).contains(&retry), "{retry}");
    assert_problem(r, 429).await;
    s.clock.advance(Duration::from_secs(retry));
    assert_eq!(sign_in(&s, &email, PW).await.status(), 201);
}

#[tokio::test]
async fn invitations_are_accepted_once_over_http() {
    let s = start().await;
    let owner = sign_up(&s, &unique_email("boss"), "Inviting").await;
    let email = unique_email("guest");
    let inv = invite(&s, &owner, &email, "developer").await;
    let token = inv["token"].as_str().unwrap();
    assert!(token.starts_with("sa_iv_"));
    assert_eq!(inv["status"], "pending");
    assert!(
        inv["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("#token={token}"))
    );
    let (st, listed) = json_of(
        with(
            &s,
            &owner,
            Method::GET,
            &format!("/v1/tenants/{}/invitations", owner.tenant()),
            false,
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(st, 200);
    assert!(
        listed[0].get("token").is_none() && listed[0].get("token_hash").is_none(),
        "{listed}"
    );
    let guest = signed_in(accept(&s, token).await).await;
    assert_eq!(guest.me["memberships"][0]["role"], "developer");
    assert_eq!(guest.tenant(), owner.tenant());
    assert_problem(accept(&s, token).await, 409).await;
    assert_problem(accept(&s, "sa_iv_nope").await, 404).await;

    // Members: change the role, then remove.
    let path = format!("/v1/tenants/{}/members/{}", owner.tenant(), guest.user());
    let (st, m) = json_of(
        with(&s, &owner, Method::PATCH, &path, true)
            .json(&json!({"role": "viewer"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((st.as_u16(), m["role"].as_str()), (200, Some("viewer")));
    // The guest's next request rotates its session: new cookie and token.
    let r = with(&s, &guest, Method::GET, "/v1/me", false)
        .send()
        .await
        .unwrap();
    let fresh = session_cookie(&r).expect("the rotated cookie");
    assert_ne!(fresh, guest.cookie);
    let csrf = r.headers()["x-csrf-token"].to_str().unwrap().to_owned();
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["csrf_token"], csrf.as_str());
    assert_eq!(me["memberships"][0]["role"], "viewer");
    let owner_path = format!("/v1/tenants/{}/members/{}", owner.tenant(), owner.user());
    let r = with(&s, &owner, Method::DELETE, &owner_path, true)
        .send()
        .await
        .unwrap();
    assert_problem(r, 409).await;
    let r = with(&s, &owner, Method::DELETE, &path, true)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let rotated = Browser {
        cookie: fresh,
        csrf,
        me,
    };
    let (st, me) = json_of(
        with(&s, &rotated, Method::GET, "/v1/me", false)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 401, "removal ended the member's sessions: {me}");
}

#[tokio::test]
async fn the_account_routes_manage_sessions_password_and_second_factor() {
    let s = start().await;
    let email = unique_email("self");
    let a = sign_up(&s, &email, "Self").await;
    let b = signed_in(sign_in(&s, &email, PW).await).await;
    let (st, list) = json_of(
        with(&s, &a, Method::GET, "/v1/me/sessions", false)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(list.as_array().unwrap().len(), 2);
    // Ending b by id from a.
    let b_id = b.me["session"]["id"].as_str().unwrap();
    let r = with(
        &s,
        &a,
        Method::DELETE,
        &format!("/v1/me/sessions/{b_id}"),
        true,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        with(&s, &b, Method::GET, "/v1/me", false)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let c = signed_in(sign_in(&s, &email, PW).await).await;
    let (st, ended) = json_of(
        with(&s, &a, Method::DELETE, "/v1/me/sessions", true)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((st.as_u16(), ended["ended"].as_u64()), (200, Some(1)));
    assert_eq!(
        with(&s, &c, Method::GET, "/v1/me", false)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // Password change: a new session comes back, every other one ends.
    let d = signed_in(sign_in(&s, &email, PW).await).await;
    let new_pw = "orbit plum kettle seventeen";
    let r = with(&s, &a, Method::POST, "/v1/me/password", true)
        .json(&json!({"current_password": PW, "new_password": new_pw}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let a2 = signed_in(r).await;
    for old in [&a, &d] {
        assert_eq!(
            with(&s, old, Method::GET, "/v1/me", false)
                .send()
                .await
                .unwrap()
                .status(),
            401
        );
    }
    assert_eq!(
        with(&s, &a2, Method::GET, "/v1/me", false)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Second factor: begin, confirm, then sign-in needs a code.
    let (st, enrol) = json_of(
        with(&s, &a2, Method::POST, "/v1/me/totp", true)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 201, "{enrol}");
    let secret = enrol["secret"].as_str().unwrap();
    let code = sentryagent_core::conformance::kit::totp_code(secret, s.clock.now());
    let r = with(&s, &a2, Method::POST, "/v1/me/totp/confirm", true)
        .json(&json!({"code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = session_cookie(&r).unwrap();
    let confirmed: Value = r.json().await.unwrap();
    assert_eq!(confirmed["recovery_codes"].as_array().unwrap().len(), 10);
    assert_eq!(confirmed["user"]["totp_enabled"], true);
    let a3 = Browser {
        cookie,
        csrf: confirmed["csrf_token"].as_str().unwrap().to_owned(),
        me: confirmed.clone(),
    };
    let r = sign_in(&s, &email, new_pw).await;
    let p = assert_problem(r, 422).await;
    assert_eq!(p["field"], "totp");
    let r = s
        .http
        .post(s.url("/v1/sessions"))
        .json(&json!({"email": email, "password": new_pw, "totp": confirmed["recovery_codes"][0]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = with(&s, &a3, Method::DELETE, "/v1/me/totp", true)
        .json(&json!({"password": new_pw}))
        .send()
        .await
        .unwrap();
    let (st, acct) = json_of(r).await;
    assert_eq!((st.as_u16(), &acct["totp_enabled"]), (200, &json!(false)));
}

/// What a management route needs of its caller.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Needs {
    /// A scope (covered by the role's scopes).
    Scope(&'static str),
    /// An operator key: no member may.
    Operator,
    /// Any caller of the tenant.
    Anyone,
}

/// The scopes of each role: the core's table, read from one place.
fn role_covers(role: &str, needed: &str) -> bool {
    let role: sentryagent_core::Role = role.parse().unwrap();
    let needed: sentryagent_core::AdminScope =
        serde_json::from_value(Value::String(needed.into())).unwrap();
    role.scopes().iter().any(|s| s.covers(needed))
}

/// Each role, signed in, calls every management route (the table below
/// must name every operation of the OpenAPI document that needs an admin
/// key): a route is refused with 403 exactly when the role's scopes do not
/// cover it.
#[tokio::test]
async fn each_role_is_allowed_exactly_its_scopes_on_every_management_route() {
    use Method as M;
    use Needs::*;
    let s = start().await;
    let table: Vec<(Method, &str, Needs)> = vec![
        (M::POST, "/v1/tenants", Operator),
        (M::GET, "/v1/tenants", Operator),
        (M::GET, "/v1/tenants/{id}", Anyone),
        (M::PATCH, "/v1/tenants/{id}", Operator),
        (M::PUT, "/v1/tenants/{id}/publisher", Scope("admin")),
        (
            M::POST,
            "/v1/tenants/{id}/publisher/domain-proofs",
            Scope("admin"),
        ),
        (
            M::POST,
            "/v1/tenants/{id}/publisher/domain-proofs/verify",
            Scope("admin"),
        ),
        (M::PATCH, "/v1/tenants/{id}/settings", Scope("admin")),
        (
            M::POST,
            "/v1/tenants/{id}/api-keys",
            Scope("api_keys_write"),
        ),
        (M::GET, "/v1/tenants/{id}/api-keys", Scope("api_keys_write")),
        (
            M::DELETE,
            "/v1/tenants/{id}/api-keys/{key_id}",
            Scope("api_keys_write"),
        ),
        (M::POST, "/v1/api-keys", Operator),
        (M::GET, "/v1/api-keys", Operator),
        (M::DELETE, "/v1/api-keys/{key_id}", Operator),
        (M::POST, "/v1/agents", Scope("agents_write")),
        (M::GET, "/v1/agents", Scope("agents_read")),
        (M::GET, "/v1/agents/{id}", Scope("agents_read")),
        (M::PATCH, "/v1/agents/{id}", Scope("agents_write")),
        (M::POST, "/v1/agents/{id}/lifecycle", Scope("agents_write")),
        (
            M::POST,
            "/v1/agents/{id}/credentials/rotate",
            Scope("agents_write"),
        ),
        (
            M::POST,
            "/v1/agents/{id}/credentials/revoke",
            Scope("agents_write"),
        ),
        (M::GET, "/v1/audit", Scope("audit_read")),
        (M::GET, "/v1/audit/verify", Scope("audit_read")),
        (M::GET, "/v1/audit/stream", Scope("audit_read")),
        (M::GET, "/v1/analytics/tokens/daily", Scope("billing_read")),
        (M::GET, "/v1/analytics/heatmap", Scope("billing_read")),
        (M::GET, "/v1/analytics/agents", Scope("billing_read")),
        (M::GET, "/billing/usage", Scope("billing_read")),
        (M::GET, "/billing/subscription", Scope("billing_read")),
        (M::POST, "/billing/checkout", Scope("billing_write")),
        (M::POST, "/api/tiers/upgrade", Scope("billing_write")),
        (M::POST, "/billing/portal", Scope("billing_write")),
        (M::GET, "/v1/tenants/{id}/members", Scope("members_read")),
        (
            M::PATCH,
            "/v1/tenants/{id}/members/{user_id}",
            Scope("members_write"),
        ),
        (
            M::POST,
            "/v1/tenants/{id}/members/{user_id}/password-reset",
            Scope("members_write"),
        ),
        (
            M::DELETE,
            "/v1/tenants/{id}/members/{user_id}",
            Scope("members_write"),
        ),
        (
            M::POST,
            "/v1/tenants/{id}/invitations",
            Scope("members_write"),
        ),
        (
            M::GET,
            "/v1/tenants/{id}/invitations",
            Scope("members_read"),
        ),
        (
            M::DELETE,
            "/v1/tenants/{id}/invitations/{invitation_id}",
            Scope("members_write"),
        ),
        (M::POST, "/v1/users/{user_id}/password-reset", Operator),
        (M::GET, "/v1/users", Operator),
        (M::POST, "/v1/trust-policies", Scope("admin")),
        (M::GET, "/v1/trust-policies", Scope("agents_read")),
        (M::GET, "/v1/trust-policies/{id}", Scope("agents_read")),
        (M::PATCH, "/v1/trust-policies/{id}", Scope("admin")),
        (M::DELETE, "/v1/trust-policies/{id}", Scope("admin")),
    ];

    // The table names every operation that needs an admin key.
    let (_, doc) = s.get("/openapi.json", None).await;
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let security = op["security"].as_array().cloned().unwrap_or_default();
            let needs_key = security.iter().any(|r| r.get("admin_key").is_some())
                && !security
                    .iter()
                    .any(|r| r.as_object().is_some_and(|o| o.is_empty()));
            if needs_key {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let listed: BTreeSet<(String, String)> = table
        .iter()
        .map(|(m, p, _)| (m.to_string(), (*p).to_owned()))
        .collect();
    assert_eq!(
        listed, documented,
        "the table and the management routes differ"
    );

    for role in ["viewer", "developer", "admin", "owner"] {
        // A tenant of its own: its owner, the member under test, and what
        // the routes act on.
        let owner = sign_up(&s, &unique_email("owner"), &format!("Roles {role}")).await;
        let tenant = owner.tenant();
        let member = if role == "owner" {
            owner.clone()
        } else {
            let inv = invite(&s, &owner, &unique_email(role), role).await;
            signed_in(accept(&s, inv["token"].as_str().unwrap()).await).await
        };
        let target = {
            let inv = invite(&s, &owner, &unique_email("target"), "viewer").await;
            signed_in(accept(&s, inv["token"].as_str().unwrap()).await).await
        };
        let (st, agent) = json_of(
            with(&s, &owner, M::POST, "/v1/agents", true)
                .json(&json!({"name": "fixture"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(st, 201, "{agent}");
        let agent = agent["id"].as_str().unwrap().to_owned();
        let (st, key) = json_of(
            with(
                &s,
                &owner,
                M::POST,
                &format!("/v1/tenants/{tenant}/api-keys"),
                true,
            )
            .json(&json!({"name": "fixture", "scopes": ["agents_read"]}))
            .send()
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(st, 201, "{key}");
        let key = key["id"].as_str().unwrap().to_owned();
        let invitation = invite(&s, &owner, &unique_email("pending"), "viewer").await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (_, op_key) = s
            .post("/v1/api-keys", Some(&s.op), &json!({"name": "victim"}))
            .await;
        let op_key = op_key["id"].as_str().unwrap().to_owned();

        for (method, template, needs) in &table {
            let id = if template.starts_with("/v1/agents/") {
                &agent
            } else {
                &tenant
            };
            let path = template
                .replace("{id}", id)
                .replace(
                    "{key_id}",
                    if template.starts_with("/v1/api-keys") {
                        &op_key
                    } else {
                        &key
                    },
                )
                .replace("{user_id}", &target.user())
                .replace("{invitation_id}", &invitation);
            let path = if path == "/v1/users" {
                format!(
                    "/v1/users?email={}",
                    target.me["user"]["email"].as_str().unwrap()
                )
            } else {
                path
            };
            let body = match *template {
                "/v1/tenants" => json!({"name": "Nope"}),
                "/v1/tenants/{id}" => json!({"tier": "pro"}),
                "/v1/tenants/{id}/publisher" => json!({"display_name": "Roles"}),
                "/v1/tenants/{id}/publisher/domain-proofs"
                | "/v1/tenants/{id}/publisher/domain-proofs/verify" => {
                    json!({"domain": "roles.example"})
                }
                "/v1/tenants/{id}/settings" => json!({"require_totp_for_admins": false}),
                "/v1/tenants/{id}/api-keys" | "/v1/api-keys" => {
                    json!({"name": "k", "scopes": ["agents_read"]})
                }
                "/v1/agents" => json!({"name": format!("by-{role}")}),
                "/v1/agents/{id}" => json!({"description": "changed"}),
                "/v1/agents/{id}/lifecycle" => json!({"state": "paused"}),
                "/billing/checkout" | "/api/tiers/upgrade" => json!({"tier": "pro"}),
                "/v1/tenants/{id}/members/{user_id}" => json!({"role": "viewer"}),
                "/v1/tenants/{id}/invitations" => {
                    json!({"email": unique_email("invitee"), "role": "viewer"})
                }
                "/v1/trust-policies" if *method == M::POST => json!({
                    "name": format!("by-{role}"),
                    "issuer": "https://issuer.example",
                    "audience": "sentryagent",
                    "conditions": {"sub": "ci"},
                    "grant": {"admin_scopes": ["agents_read"]}
                }),
                "/v1/trust-policies/{id}" if *method == M::PATCH => {
                    json!({"name": "renamed"})
                }
                _ => Value::Null,
            };
            let mut r = with(&s, &member, method.clone(), &path, true);
            if !body.is_null() {
                r = r.json(&body);
            }
            let status = r.send().await.unwrap().status();
            let allowed = match needs {
                Scope(scope) => role_covers(role, scope),
                Operator => false,
                Anyone => true,
            };
            if allowed {
                assert!(
                    status != StatusCode::FORBIDDEN
                        && status != StatusCode::UNAUTHORIZED
                        && status.as_u16() < 500
                        || status == StatusCode::NOT_IMPLEMENTED,
                    "{role} {method} {template}: allowed, got {status}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{role} {method} {template}: refused"
                );
            }
        }
    }
}

#[tokio::test]
async fn members_see_why_their_tenant_is_suspended() {
    let s = start().await;
    let owner = sign_up(&s, &unique_email("suspended"), "Paused Co").await;
    let tenant = owner.tenant();
    let (st, t) = s
        .send(
            Method::PATCH,
            &format!("/v1/tenants/{tenant}"),
            Some(&s.op),
            &json!({"status": "suspended", "reason": "payment overdue"}),
        )
        .await;
    assert_eq!(st, 200, "{t}");
    assert!(t["suspended_at"].is_string());
    // The tenant's calls are refused, and /v1/me says why.
    let r = with(
        &s,
        &owner,
        Method::GET,
        &format!("/v1/tenants/{tenant}"),
        false,
    )
    .send()
    .await
    .unwrap();
    assert_problem(r, 403).await;
    let (st, me) = json_of(
        with(&s, &owner, Method::GET, "/v1/me", false)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 200);
    let m = &me["memberships"][0];
    assert_eq!(m["tenant_status"], "suspended");
    assert_eq!(m["suspension_reason"], "payment overdue");
    assert!(m["suspended_at"].is_string());
    let (st, p) = s
        .send(
            Method::PATCH,
            &format!("/v1/tenants/{tenant}"),
            Some(&s.op),
            &json!({"tier": "pro", "reason": "no"}),
        )
        .await;
    assert_eq!((st.as_u16(), &p["field"]), (422, &json!("reason")));
}

//! Token exchange over HTTP against a fake OpenID Connect issuer on
//! loopback: the RFC 8693 answer and errors at `/oauth2/token`, the JWKS
//! fetcher's cache, key rotation, single flight, a failing issuer, the
//! transport guards, and GitLab and Kubernetes claim shapes.

mod fake_issuer;
mod http_helpers;

use std::time::Duration;

use base64::Engine as _;
use fake_issuer::{FakeIssuer, Mode};
use http_helpers::*;
use reqwest::Response;
use sentryagent_core::conformance::kit::{github_claims, gitlab_claims, kubernetes_claims};
use sentryagent_core::federation::{
    ACCESS_TOKEN_TYPE, ID_TOKEN_TYPE, NewTrustPolicy, TOKEN_EXCHANGE, TrustGrant,
};
use sentryagent_core::jose::Algorithm;
use sentryagent_core::{AdminScope, AgentId, AuditQuery, Caller, Clock, TenantId};
use sentryagent_http::JwksFetcherConfig;
use serde_json::{Value, json};

/// A server whose issuer keys come over HTTP (loopback allowed), with
/// `min_refetch`.
async fn server(min_refetch: u64) -> Server {
    server_with(
        JwksFetcherConfig::default()
            .allow_http_loopback(true)
            .min_refetch(Duration::from_secs(min_refetch)),
    )
    .await
}

async fn server_with(fetcher: JwksFetcherConfig) -> Server {
    start_with(Setup {
        fetcher: Some(fetcher),
        ..Default::default()
    })
    .await
}

/// A tenant and an agent (`(tenant, agent)` ids).
async fn tenant_and_agent(s: &Server) -> (String, String) {
    let (tenant, key) = s.tenant("Acme", "pro").await;
    let a = s
        .agent(
            &key,
            json!({"name": "deployer", "allowed_scopes": ["deploy", "read"]}),
        )
        .await;
    (tenant, a["id"].as_str().unwrap().to_owned())
}

/// A policy of `tenant` for tokens of `issuer` with audience the server's
/// issuer, granting `agent`.
async fn policy(s: &Server, tenant: &str, issuer: &str, agent: &str, conditions: &[(&str, &str)]) {
    s.idp
        .create_trust_policy(
            &Caller::system(),
            &TenantId::parse(tenant).unwrap(),
            NewTrustPolicy {
                name: "ci".into(),
                issuer: issuer.into(),
                audience: s.base.clone(),
                conditions: conditions
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                grant: TrustGrant::AgentId(AgentId::parse(agent).unwrap()),
                max_token_ttl_seconds: None,
                max_subject_token_age_seconds: None,
                single_use: false,
            },
        )
        .await
        .unwrap();
}

/// POST /oauth2/token with the exchange grant and `extra`.
async fn exchange(s: &Server, extra: &[(&str, &str)]) -> Response {
    let mut form = vec![
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token_type", ID_TOKEN_TYPE),
    ];
    form.extend_from_slice(extra);
    s.form("/oauth2/token", &serde_urlencoded(&form), &[]).await
}

/// The exchanged access token for `agent`, or the failing answer.
async fn agent_token(s: &Server, agent: &str, subject: &str) -> Result<Value, Response> {
    let r = exchange(s, &[("subject_token", subject), ("client_id", agent)]).await;
    if r.status() != 200 {
        return Err(r);
    }
    Ok(r.json().await.unwrap())
}

fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// The reasons of the tenant's failed exchanges, oldest first.
async fn failure_reasons(s: &Server, tenant: &str) -> Vec<String> {
    let q = AuditQuery {
        tenant_id: Some(TenantId::parse(tenant).unwrap()),
        action: Some("token.exchange_failed".into()),
        limit: Some(1000),
        ..Default::default()
    };
    s.idp
        .query_audit(&Caller::system(), &q)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| {
            format!(
                "{} {}",
                e.event.details["reason"],
                e.event.details.get("error").cloned().unwrap_or_default()
            )
        })
        .collect()
}

#[tokio::test]
async fn a_github_token_from_the_fake_issuer_becomes_an_agent_token() {
    let s = server(60).await;
    let gh = FakeIssuer::start(|i| i.with_rsa("k1", 0)).await;
    let (tenant, agent) = tenant_and_agent(&s).await;
    policy(
        &s,
        &tenant,
        &gh.url,
        &agent,
        &[("repository_id", "74"), ("ref", "refs/heads/main")],
    )
    .await;
    let subject = gh.sign("k1", &github_claims(&gh.url, &s.base, s.clock.now()));
    let r = exchange(
        &s,
        &[
            ("subject_token", &subject),
            ("client_id", &agent),
            ("scope", "deploy"),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["issued_token_type"], ACCESS_TOKEN_TYPE);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["scope"], "deploy");
    let token = body["access_token"].as_str().unwrap();
    let c = s.idp.verify_access_token(token, None).unwrap();
    assert_eq!(c.sub, agent);
    assert_eq!(
        claims_of(token)["act"],
        json!({"iss": gh.url, "sub": "repo:octo-org/octo-agent:ref:refs/heads/main"})
    );
    assert_eq!((gh.discovery_hits(), gh.jwks_hits()), (1, 1));
    // Discovery lists the grant.
    let (_, m) = s.get("/.well-known/oauth-authorization-server", None).await;
    assert!(
        m["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!(TOKEN_EXCHANGE))
    );
}

#[tokio::test]
async fn refusals_are_a_bare_invalid_grant_and_bad_requests_invalid_request() {
    let s = server(60).await;
    let gh = FakeIssuer::start(|i| i.with_rsa("k1", 0)).await;
    let (tenant, agent) = tenant_and_agent(&s).await;
    policy(&s, &tenant, &gh.url, &agent, &[("repository_id", "74")]).await;
    let now = s.clock.now();
    let wrong_aud = github_claims(&gh.url, "https://elsewhere.example", now);
    let mut other_repo = github_claims(&gh.url, &s.base, now);
    other_repo["repository_id"] = "75".into();
    let mut expired = github_claims(&gh.url, &s.base, now);
    expired["exp"] = (now.unix_secs() - 3600).into();
    let mut descriptions = Vec::new();
    for subject in [
        gh.sign("k1", &wrong_aud),
        gh.sign("k1", &other_repo),
        gh.sign("k1", &expired),
        "not-a-jwt".to_owned(),
    ] {
        let r = agent_token(&s, &agent, &subject).await.unwrap_err();
        assert_eq!(r.status(), 400);
        assert_eq!(r.headers()["cache-control"], "no-store");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "invalid_grant", "{v}");
        descriptions.push(v["error_description"].clone());
    }
    // Nothing tells the failures apart.
    assert!(
        descriptions.windows(2).all(|w| w[0] == w[1]),
        "{descriptions:?}"
    );
    let reasons = failure_reasons(&s, &tenant).await;
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(reasons[0].contains("audience"), "{reasons:?}");
    assert!(reasons[1].contains("conditions"), "{reasons:?}");
    assert!(reasons[2].contains("expired"), "{reasons:?}");
    assert!(reasons[3].contains("malformed"), "{reasons:?}");

    let subject = gh.sign("k1", &github_claims(&gh.url, &s.base, now));
    for extra in [
        vec![("client_id", agent.as_str())],
        vec![("subject_token", subject.as_str())],
        vec![
            ("subject_token", subject.as_str()),
            ("client_id", agent.as_str()),
            ("tenant", tenant.as_str()),
        ],
        vec![
            ("subject_token", subject.as_str()),
            ("client_id", agent.as_str()),
            ("client_secret", "x"),
        ],
        vec![
            ("subject_token", subject.as_str()),
            ("client_id", agent.as_str()),
            ("requested_token_type", ID_TOKEN_TYPE),
        ],
        vec![
            ("subject_token", subject.as_str()),
            ("client_id", agent.as_str()),
            ("actor_token", "x"),
        ],
    ] {
        assert_oauth_error(exchange(&s, &extra).await, 400, "invalid_request").await;
    }
    let body = serde_urlencoded(&[
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", &subject),
        (
            "subject_token_type",
            "urn:ietf:params:oauth:token-type:saml2",
        ),
        ("client_id", &agent),
    ]);
    assert_oauth_error(
        s.form("/oauth2/token", &body, &[]).await,
        400,
        "invalid_request",
    )
    .await;
    // No client authentication with a token exchange.
    let body = serde_urlencoded(&[
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", &subject),
        ("subject_token_type", ID_TOKEN_TYPE),
        ("client_id", &agent),
    ]);
    let r = s
        .form("/oauth2/token", &body, &[("authorization", "Basic YTpi")])
        .await;
    assert_oauth_error(r, 400, "invalid_request").await;
    // A scope the agent does not have.
    let r = exchange(
        &s,
        &[
            ("subject_token", &subject),
            ("client_id", &agent),
            ("scope", "admin"),
        ],
    )
    .await;
    assert_oauth_error(r, 400, "invalid_scope").await;
}

#[tokio::test]
async fn key_rotation_refetches_at_most_once_per_interval() {
    let s = server(60).await;
    let gh = FakeIssuer::start(|i| i.with_rsa("k1", 0)).await;
    gh.set_cache_control(Some("public, max-age=3600"));
    let (tenant, agent) = tenant_and_agent(&s).await;
    policy(&s, &tenant, &gh.url, &agent, &[("repository_id", "74")]).await;
    let token = |kid: &str| gh.sign(kid, &github_claims(&gh.url, &s.base, s.clock.now()));
    agent_token(&s, &agent, &token("k1")).await.unwrap();
    // Cached: more exchanges, no more fetches.
    for _ in 0..3 {
        agent_token(&s, &agent, &token("k1")).await.unwrap();
    }
    assert_eq!(gh.jwks_hits(), 1);
    // The issuer rotates: a new key signs, the old one goes.
    gh.set_keys(|i| i.without("k1").with_rsa("k2", 1));
    // A token with an unknown kid refetches... but not within 60 s of the
    // last fetch.
    assert!(agent_token(&s, &agent, &token("k2")).await.is_err());
    assert_eq!(gh.jwks_hits(), 1);
    s.clock.advance(Duration::from_secs(61));
    agent_token(&s, &agent, &token("k2")).await.unwrap();
    assert_eq!(gh.jwks_hits(), 2);
    // Kids the cache lacks cost at most one fetch per interval.
    gh.set_keys(|i| i.with_rsa("k9", 2));
    for _ in 0..5 {
        assert!(agent_token(&s, &agent, &token("k9")).await.is_err());
    }
    assert_eq!(gh.jwks_hits(), 2);
    // Past the cache time, the keys are fetched again.
    s.clock.advance(Duration::from_secs(3600));
    agent_token(&s, &agent, &token("k9")).await.unwrap();
    assert_eq!(gh.jwks_hits(), 3);
    let reasons = failure_reasons(&s, &tenant).await;
    assert!(
        reasons.iter().all(|r| r.contains("no key of the issuer")),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn a_cold_issuer_is_fetched_once_for_concurrent_requests() {
    let s = server(0).await;
    let gh = FakeIssuer::start(|i| i.with_rsa("k1", 0)).await;
    let (tenant, agent) = tenant_and_agent(&s).await;
    policy(&s, &tenant, &gh.url, &agent, &[("repository_id", "74")]).await;
    let subject = gh.sign("k1", &github_claims(&gh.url, &s.base, s.clock.now()));
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (http, url, subject, agent) = (
            s.http.clone(),
            s.url("/oauth2/token"),
            subject.clone(),
            agent.clone(),
        );
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(serde_urlencoded(&[
                    ("grant_type", TOKEN_EXCHANGE),
                    ("subject_token_type", ID_TOKEN_TYPE),
                    ("subject_token", &subject),
                    ("client_id", &agent),
                ]))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!((gh.discovery_hits(), gh.jwks_hits()), (1, 1));
}

#[tokio::test]
async fn a_failing_issuer_keeps_its_last_good_keys_for_a_while_and_health_says_so() {
    let s = server_with(
        JwksFetcherConfig::default()
            .allow_http_loopback(true)
            .min_refetch(Duration::from_secs(60))
            .max_stale(Duration::from_secs(1800)),
    )
    .await;
    let gh = FakeIssuer::start(|i| i.with_rsa("k1", 0)).await;
    gh.set_cache_control(Some("max-age=600"));
    let (tenant, agent) = tenant_and_agent(&s).await;
    policy(&s, &tenant, &gh.url, &agent, &[("repository_id", "74")]).await;
    let token = || gh.sign("k1", &github_claims(&gh.url, &s.base, s.clock.now()));
    agent_token(&s, &agent, &token()).await.unwrap();
    let (_, h) = s.get("/health/detailed", Some(&s.op)).await;
    let jwks = |h: &Value| {
        h["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["backend"] == "issuer-jwks")
            .cloned()
            .unwrap()
    };
    assert_eq!(jwks(&h)["status"], "up");
    assert_eq!(
        jwks(&h)["details"][format!("issuer:{}", gh.url)]["state"],
        "fresh"
    );

    gh.set_mode(Mode::Fail);
    s.clock.advance(Duration::from_secs(601));
    // The refresh fails; the last good keys still verify.
    agent_token(&s, &agent, &token()).await.unwrap();
    assert_eq!(gh.jwks_hits(), 2);
    let (st, h) = s.get("/health/detailed", Some(&s.op)).await;
    assert_eq!(st, 200);
    assert_eq!(h["status"], "degraded");
    let b = jwks(&h);
    assert_eq!(b["status"], "degraded");
    assert!(
        b["error"].as_str().unwrap().contains("last good keys"),
        "{b}"
    );
    assert!(b["error"].as_str().unwrap().contains("500"), "{b}");
    assert_eq!(b["details"][format!("issuer:{}", gh.url)]["state"], "stale");
    // The public sees the status only.
    let (_, public) = s.get("/health/detailed", None).await;
    assert_eq!(jwks(&public)["details"], json!({}));
    assert!(!public.to_string().contains(&gh.url));
    // Beyond the bound, exchanges fail.
    s.clock.advance(Duration::from_secs(1800));
    assert!(agent_token(&s, &agent, &token()).await.is_err());
    // The issuer comes back: the next fetch (after the refetch interval)
    // restores it.
    gh.set_mode(Mode::Normal);
    s.clock.advance(Duration::from_secs(61));
    agent_token(&s, &agent, &token()).await.unwrap();
    let (_, h) = s.get("/health/detailed", Some(&s.op)).await;
    assert_eq!(jwks(&h)["status"], "up");
}

#[tokio::test]
async fn the_fetcher_refuses_what_could_reach_where_it_should_not() {
    let s = server_with(
        JwksFetcherConfig::default()
            .allow_http_loopback(true)
            .min_refetch(Duration::ZERO)
            .timeout(Duration::from_millis(500)),
    )
    .await;
    let gh = FakeIssuer::start(|i| i.with_rsa("k1", 0)).await;
    let (tenant, agent) = tenant_and_agent(&s).await;
    policy(&s, &tenant, &gh.url, &agent, &[("repository_id", "74")]).await;
    let token = || gh.sign("k1", &github_claims(&gh.url, &s.base, s.clock.now()));
    let port = gh.url.rsplit(':').next().unwrap().to_owned();
    type Case<'a> = (Box<dyn Fn() + 'a>, &'static str);
    let cases: Vec<Case<'_>> = vec![
        (Box::new(|| gh.set_mode(Mode::Redirect)), "redirect"),
        (Box::new(|| gh.set_mode(Mode::Huge)), "larger than"),
        (Box::new(|| gh.set_mode(Mode::Slow)), "timed out"),
        (
            Box::new(|| {
                gh.set_mode(Mode::Normal);
                gh.set_discovery(json!({"issuer": gh.url, "jwks_uri": format!("http://localhost:{port}/.well-known/jwks")}));
            }),
            "not on the issuer's host",
        ),
        (
            Box::new(|| {
                gh.set_discovery(json!({"issuer": gh.url, "jwks_uri": "http://169.254.169.254/latest/meta-data"}))
            }),
            "refused",
        ),
        (
            Box::new(|| {
                gh.set_discovery(json!({"issuer": "https://token.actions.githubusercontent.com", "jwks_uri": format!("{}/.well-known/jwks", gh.url)}))
            }),
            "names another issuer",
        ),
        (
            Box::new(|| gh.set_discovery(json!({"issuer": gh.url}))),
            "not valid",
        ),
    ];
    for (i, (setup, expected)) in cases.iter().enumerate() {
        setup();
        let r = agent_token(&s, &agent, &token()).await.unwrap_err();
        assert_oauth_error(r, 400, "invalid_grant").await;
        let reasons = failure_reasons(&s, &tenant).await;
        assert_eq!(reasons.len(), i + 1);
        let last = reasons.last().unwrap();
        assert!(
            last.contains("unavailable") && last.contains(expected),
            "{expected}: {last}"
        );
    }

    // Without the development flag, a loopback issuer is refused outright.
    let strict = server_with(JwksFetcherConfig::default().min_refetch(Duration::ZERO)).await;
    let gh2 = FakeIssuer::start(|i| i.with_rsa("k1", 0)).await;
    let (tenant, agent) = tenant_and_agent(&strict).await;
    policy(
        &strict,
        &tenant,
        &gh2.url,
        &agent,
        &[("repository_id", "74")],
    )
    .await;
    let subject = gh2.sign(
        "k1",
        &github_claims(&gh2.url, &strict.base, strict.clock.now()),
    );
    assert!(agent_token(&strict, &agent, &subject).await.is_err());
    assert_eq!(gh2.discovery_hits(), 0, "nothing was fetched");
    let reasons = failure_reasons(&strict, &tenant).await;
    assert!(reasons[0].contains("plain http is refused"), "{reasons:?}");
}

#[tokio::test]
async fn gitlab_and_kubernetes_tokens_exchange_through_discovery() {
    let s = server(60).await;
    let gitlab = FakeIssuer::start(|i| i.with_rsa("gl", 1)).await;
    let k8s = FakeIssuer::start(|i| i.with_key("sa-es256", Algorithm::ES256)).await;
    let (tenant, agent) = tenant_and_agent(&s).await;
    policy(
        &s,
        &tenant,
        &gitlab.url,
        &agent,
        &[("project_path", "group/project"), ("ref_protected", "true")],
    )
    .await;
    policy(
        &s,
        &tenant,
        &k8s.url,
        &agent,
        &[
            ("sub", "system:serviceaccount:ci:*"),
            ("/kubernetes.io/serviceaccount/name", "deployer"),
        ],
    )
    .await;
    let now = s.clock.now();
    let t = agent_token(
        &s,
        &agent,
        &gitlab.sign("gl", &gitlab_claims(&gitlab.url, &s.base, now)),
    )
    .await
    .unwrap();
    assert_eq!(
        claims_of(t["access_token"].as_str().unwrap())["act"]["iss"],
        gitlab.url
    );
    let t = agent_token(
        &s,
        &agent,
        &k8s.sign("sa-es256", &kubernetes_claims(&k8s.url, &s.base, now)),
    )
    .await
    .unwrap();
    assert_eq!(
        claims_of(t["access_token"].as_str().unwrap())["act"]["sub"],
        "system:serviceaccount:ci:deployer"
    );
    // A token of one issuer does not pass another's policy.
    let mut forged = kubernetes_claims(&gitlab.url, &s.base, now);
    forged["project_path"] = "group/project".into();
    assert!(
        agent_token(&s, &agent, &k8s.sign("sa-es256", &forged))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn management_tokens_work_on_the_management_api_within_their_scopes_until_they_expire() {
    let s = server(60).await;
    let gh = FakeIssuer::start(|i| i.with_rsa("k1", 0)).await;
    let (tenant, _) = tenant_and_agent(&s).await;
    let (other, other_key) = s.tenant("Other", "pro").await;
    let other_agent = s.agent(&other_key, json!({"name": "theirs"})).await;
    s.idp
        .create_trust_policy(
            &Caller::system(),
            &TenantId::parse(&tenant).unwrap(),
            NewTrustPolicy {
                name: "registrar".into(),
                issuer: gh.url.clone(),
                audience: s.base.clone(),
                conditions: [("repository_owner_id".to_owned(), "65".to_owned())].into(),
                grant: TrustGrant::AdminScopes(vec![AdminScope::AgentsWrite]),
                max_token_ttl_seconds: Some(120),
                max_subject_token_age_seconds: None,
                single_use: false,
            },
        )
        .await
        .unwrap();
    let subject = gh.sign("k1", &github_claims(&gh.url, &s.base, s.clock.now()));
    // Both targets at once, or an agent's policy for the tenant: refused.
    let r = exchange(&s, &[("subject_token", &subject), ("tenant", &other)]).await;
    assert_oauth_error(r, 400, "invalid_grant").await;
    let r = exchange(&s, &[("subject_token", &subject), ("tenant", &tenant)]).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["scope"], "agents_write");
    assert_eq!(body["expires_in"], 120);
    let mgmt = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims_of(&mgmt)["tenant_id"], tenant);

    // Its tenant, its scope.
    let r = s
        .req(reqwest::Method::POST, "/v1/agents", Some(&mgmt))
        .json(&json!({"name": "from-ci"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(r.headers().contains_key("ratelimit-remaining"));
    let (st, page) = s.get("/v1/agents", Some(&mgmt)).await;
    assert_eq!(st, 200);
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "from-ci")
    );
    let r = s
        .req(
            reqwest::Method::GET,
            &format!("/v1/tenants/{tenant}/api-keys"),
            Some(&mgmt),
        )
        .send()
        .await
        .unwrap();
    assert_problem(r, 403).await;
    let r = s
        .req(
            reqwest::Method::GET,
            &format!("/v1/agents/{}", other_agent["id"].as_str().unwrap()),
            Some(&mgmt),
        )
        .send()
        .await
        .unwrap();
    assert_problem(r, 404).await;
    // The audit trail names the policy as the actor.
    let (_, events) = s
        .get(
            &format!("/v1/audit?tenant_id={tenant}&action=agent.registered"),
            Some(&s.op),
        )
        .await;
    let actor = events["items"].as_array().unwrap().last().unwrap()["actor"].clone();
    assert!(
        actor.as_str().unwrap().starts_with("trust_policy:tp_"),
        "{actor}"
    );
    // Expired: refused.
    s.clock.advance(Duration::from_secs(120 + 31));
    let r = s
        .req(reqwest::Method::GET, "/v1/agents", Some(&mgmt))
        .send()
        .await
        .unwrap();
    assert_problem(r, 401).await;
    // A tampered token is refused the same way.
    let mut parts: Vec<String> = mgmt.split('.').map(str::to_owned).collect();
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&json!({"tenant_id": other, "scope": "admin"})).unwrap());
    let r = s
        .req(reqwest::Method::GET, "/v1/agents", Some(&parts.join(".")))
        .send()
        .await
        .unwrap();
    assert_problem(r, 401).await;
}

#[tokio::test]
async fn trust_policies_are_managed_over_http_per_tenant_with_scopes_and_audit() {
    use reqwest::Method as M;
    let s = server(60).await;
    let (tenant, admin) = s.tenant("Acme", "pro").await;
    let agent = s.agent(&admin, json!({"name": "deployer"})).await;
    let agent = agent["id"].as_str().unwrap().to_owned();
    let (_, other_admin) = s.tenant("Other", "pro").await;
    let (st, reader) = s
        .post(
            &format!("/v1/tenants/{tenant}/api-keys"),
            Some(&admin),
            &json!({"name": "reader", "scopes": ["agents_read"]}),
        )
        .await;
    assert_eq!(st, 201);
    let reader = reader["key"].as_str().unwrap().to_owned();
    let new = json!({
        "name": "deploy",
        "issuer": "https://token.actions.githubusercontent.com",
        "audience": s.base,
        "conditions": {"repository_id": "74"},
        "grant": {"agent_id": agent}
    });
    // Admin scope to create.
    let r = s
        .req(M::POST, "/v1/trust-policies", Some(&reader))
        .json(&new)
        .send()
        .await
        .unwrap();
    assert_problem(r, 403).await;
    let (st, p) = s.post("/v1/trust-policies", Some(&admin), &new).await;
    assert_eq!(st, 201, "{p}");
    assert_eq!(p["tenant_id"], tenant);
    assert_eq!(p["max_token_ttl_seconds"], 900);
    assert_eq!(p["max_subject_token_age_seconds"], 600);
    assert_eq!(p["single_use"], false);
    let id = p["id"].as_str().unwrap().to_owned();
    // Read with agents_read; another tenant sees nothing.
    let (st, got) = s
        .get(&format!("/v1/trust-policies/{id}"), Some(&reader))
        .await;
    assert_eq!((st.as_u16(), &got), (200, &p));
    let r = s
        .req(
            M::GET,
            &format!("/v1/trust-policies/{id}"),
            Some(&other_admin),
        )
        .send()
        .await
        .unwrap();
    assert_problem(r, 404).await;
    let (_, list) = s.get("/v1/trust-policies", Some(&other_admin)).await;
    assert_eq!(list["items"], json!([]));
    // Another tenant cannot grant this tenant's agent.
    let r = s
        .req(M::POST, "/v1/trust-policies", Some(&other_admin))
        .json(&new)
        .send()
        .await
        .unwrap();
    let e = assert_problem(r, 422).await;
    assert_eq!(e["field"], "grant");
    // Bad input: unknown fields, both grants, an unpinned GitHub policy.
    for bad in [
        json!({"name": "x", "issuer": "https://i.example", "audience": "a", "grant": {"agent_id": agent}, "bogus": 1}),
        json!({"name": "x", "issuer": "https://i.example", "audience": "a", "grant": {"agent_id": agent, "admin_scopes": ["admin"]}}),
        json!({"name": "x", "issuer": "https://token.actions.githubusercontent.com", "audience": "a", "conditions": {"repository": "*"}, "grant": {"agent_id": agent}}),
        json!({"name": "x", "issuer": "http://issuer.example", "audience": "a", "grant": {"agent_id": agent}}),
    ] {
        let r = s
            .req(M::POST, "/v1/trust-policies", Some(&admin))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_problem(r, 422).await;
    }
    let (st, changed) = s
        .send(
            M::PATCH,
            &format!("/v1/trust-policies/{id}"),
            Some(&admin),
            &json!({"single_use": true}),
        )
        .await;
    assert_eq!((st.as_u16(), &changed["single_use"]), (200, &json!(true)));
    let r = s
        .req(
            M::DELETE,
            &format!("/v1/trust-policies/{id}"),
            Some(&reader),
        )
        .send()
        .await
        .unwrap();
    assert_problem(r, 403).await;
    let r = s
        .req(M::DELETE, &format!("/v1/trust-policies/{id}"), Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // Audited: created, updated, deleted.
    let (_, events) = s
        .get(&format!("/v1/audit?tenant_id={tenant}"), Some(&s.op))
        .await;
    let actions: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"] == id.as_str())
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "trust_policy.created",
            "trust_policy.updated",
            "trust_policy.deleted"
        ]
    );
}

#[tokio::test]
async fn agents_are_found_by_name_and_may_be_registered_without_a_secret() {
    let s = server(60).await;
    let (_, key) = s.tenant("Acme", "pro").await;
    let pk = sentryagent_core::jose::SigningKey::generate(Algorithm::EdDSA, "")
        .unwrap()
        .verifying_key()
        .to_jwk();
    let a = s
        .agent(
            &key,
            json!({"name": "ci-agent", "public_jwk": pk, "issue_client_secret": false}),
        )
        .await;
    assert!(a.get("client_secret").is_none(), "{a}");
    assert!(a.get("private_jwk").is_none(), "{a}");
    let (st, page) = s.get("/v1/agents?name=ci-agent", Some(&key)).await;
    assert_eq!(st, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["id"], a["id"]);
    let (_, page) = s.get("/v1/agents?name=ci-agent-2", Some(&key)).await;
    assert_eq!(page["items"], json!([]));
    // Another tenant's name space is its own.
    let (_, other) = s.tenant("Other", "pro").await;
    let (_, page) = s.get("/v1/agents?name=ci-agent", Some(&other)).await;
    assert_eq!(page["items"], json!([]));
    // No secret works for it.
    let (st, _) = s
        .token_post(a["id"].as_str().unwrap(), "sa_cs_guess", &[])
        .await;
    assert_eq!(st, 401);
    // By default a secret is issued, as before.
    let b = s.agent(&key, json!({"name": "classic"})).await;
    assert!(b["client_secret"].as_str().unwrap().starts_with("sa_cs_"));
}

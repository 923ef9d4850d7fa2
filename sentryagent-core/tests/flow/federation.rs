//! Token exchange (RFC 8693) under trust policies: the agent's token with
//! `act`, every refusal (one `invalid_grant`, the reason in the tenant's
//! audit trail), tenant isolation, management tokens, the policies'
//! management, rate limits and metering. GitHub Actions, GitLab CI and
//! Kubernetes claim shapes, signed by a test issuer.

use sentryagent_core::federation::{
    ACCESS_TOKEN_TYPE, ExchangeRequest, ExchangeTarget, GITHUB_ACTIONS_ISSUER, ID_TOKEN_TYPE,
    JWT_TOKEN_TYPE, NewTrustPolicy, StaticIssuerKeys, TrustGrant, TrustPolicy, TrustPolicyPatch,
};
use sentryagent_core::{PageRequest, TrustPolicyId};
use serde_json::{Value, json};

use super::*;
use kit::{TestIssuer, github_claims, gitlab_claims, kubernetes_claims};

const GH: &str = GITHUB_ACTIONS_ISSUER;
const GITLAB: &str = "https://gitlab.example.com";
const K8S: &str = "https://kubernetes.default.svc.cluster.local";

struct Fed {
    idp: Idp,
    keys: Arc<StaticIssuerKeys>,
    clock: ManualClock,
    github: TestIssuer,
}

/// An `Idp` with a static key source holding a GitHub test issuer (two
/// RSA keys); `None` when the test crate's store is unavailable.
async fn fed(f: impl FnOnce(&mut sentryagent_core::IdpConfig)) -> Option<Fed> {
    let clock = clock();
    let keys = Arc::new(StaticIssuerKeys::new());
    let github = TestIssuer::new(GH).with_rsa("gh1", 0).with_rsa("gh2", 1);
    keys.insert(GH, github.key_set());
    let idp = Idp::builder(ISSUER)
        .store_parts(crate::store_parts().await?)
        .clock(Arc::new(clock.clone()))
        .issuer_keys(keys.clone())
        .configure(f)
        .build()
        .await
        .unwrap();
    Some(Fed {
        idp,
        keys,
        clock,
        github,
    })
}

fn new_policy(issuer: &str, grant: TrustGrant, conditions: &[(&str, &str)]) -> NewTrustPolicy {
    NewTrustPolicy {
        name: "ci".into(),
        issuer: issuer.into(),
        audience: ISSUER.into(),
        conditions: conditions
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        grant,
        max_token_ttl_seconds: None,
        max_subject_token_age_seconds: None,
        single_use: false,
    }
}

/// The policy of the GitHub issue's example: repository 74, branch main.
fn main_branch(agent: &RegisteredAgent) -> NewTrustPolicy {
    new_policy(
        GH,
        TrustGrant::AgentId(agent.agent.id.clone()),
        &[("repository_id", "74"), ("ref", "refs/heads/main")],
    )
}

fn for_agent(agent: &RegisteredAgent, token: String) -> ExchangeRequest {
    ExchangeRequest {
        subject_token: token,
        subject_token_type: ID_TOKEN_TYPE.into(),
        target: ExchangeTarget::Agent(agent.agent.id.to_string()),
        scope: None,
        resources: vec![],
    }
}

fn for_tenant(t: &Tenant, token: String) -> ExchangeRequest {
    ExchangeRequest {
        subject_token: token,
        subject_token_type: JWT_TOKEN_TYPE.into(),
        target: ExchangeTarget::Tenant(t.id.to_string()),
        scope: None,
        resources: vec![],
    }
}

impl Fed {
    fn gh_token(&self, edit: impl FnOnce(&mut Value)) -> String {
        let mut c = github_claims(GH, ISSUER, self.clock.now());
        edit(&mut c);
        self.github.sign("gh1", &c)
    }

    async fn policy(&self, t: &Tenant, new: NewTrustPolicy) -> TrustPolicy {
        self.idp
            .create_trust_policy(&Caller::system(), &t.id, new)
            .await
            .unwrap()
    }

    /// The last audit event of a chain with `action`.
    async fn last_event(&self, t: Option<&TenantId>, action: &str) -> sentryagent_core::AuditEvent {
        let q = AuditQuery {
            tenant_id: t.cloned(),
            action: Some(action.into()),
            limit: Some(1000),
            ..Default::default()
        };
        let page = self.idp.query_audit(&Caller::system(), &q).await.unwrap();
        page.items
            .into_iter()
            .last()
            .unwrap_or_else(|| panic!("no {action} event"))
    }
}

#[tokio::test]
async fn a_github_actions_token_becomes_the_agents_token_with_act() {
    let Some(f) = fed(|_| {}).await else {
        return;
    };
    let t = tenant(&f.idp, Tier::Pro).await;
    let a = agent(&f.idp, &t, "deployer").await;
    let mut new = main_branch(&a);
    new.max_token_ttl_seconds = Some(600);
    let p = f.policy(&t, new).await;

    let mut req = for_agent(&a, f.gh_token(|_| {}));
    req.scope = Some("read".into());
    req.resources = vec!["https://api.example".into()];
    let r = f
        .idp
        .exchange_token(&req, &Default::default())
        .await
        .unwrap();
    assert_eq!(r.issued_token_type, ACCESS_TOKEN_TYPE);
    assert_eq!(r.token_type, "Bearer");
    assert_eq!(r.expires_in, 600);
    assert_eq!(r.scope.as_deref(), Some("read"));
    let claims = f
        .idp
        .verify_access_token(&r.access_token, Some("https://api.example"))
        .unwrap();
    assert_eq!(claims.sub, a.agent.id.as_str());
    assert_eq!(claims.tenant_id, t.id.as_str());
    assert_eq!(claims.exp - claims.iat, 600);
    assert_eq!(
        claims.extra.get("act"),
        Some(&json!({"iss": GH, "sub": "repo:octo-org/octo-agent:ref:refs/heads/main"}))
    );

    let ev = f.last_event(Some(&t.id), "token.exchanged").await;
    let d = &ev.event.details;
    assert_eq!(ev.event.outcome, Outcome::Success);
    assert_eq!(ev.event.actor, format!("trust_policy:{}", p.id));
    assert_eq!(ev.event.target.as_deref(), Some(a.agent.id.as_str()));
    assert_eq!(d["policy"], p.id.as_str());
    assert_eq!(d["issuer"], GH);
    assert_eq!(d["sub"], "repo:octo-org/octo-agent:ref:refs/heads/main");
    assert_eq!(d["repository"], "octo-org/octo-agent");
    assert_eq!(d["repository_id"], "74");
    assert_eq!(
        d["workflow_ref"],
        "octo-org/octo-agent/.github/workflows/deploy.yml@refs/heads/main"
    );
    assert_eq!(d["run_id"], "example-run-id");
    assert_eq!(d["jti"], claims.jti);
    // No token in the trail.
    let dump = serde_json::to_string(&ev).unwrap();
    assert!(!dump.contains(&r.access_token) && !dump.contains(&req.subject_token));

    // The second key of the issuer verifies too; no kid tries both.
    let c = github_claims(GH, ISSUER, f.clock.now());
    let by_second = f.github.sign("gh2", &c);
    assert!(
        f.idp
            .exchange_token(&for_agent(&a, by_second), &Default::default())
            .await
            .is_ok()
    );
    let no_kid = f
        .github
        .sign_with_header("gh2", &json!({"alg": "RS256"}), &c);
    assert!(
        f.idp
            .exchange_token(&for_agent(&a, no_kid), &Default::default())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn every_refusal_is_one_invalid_grant_with_the_reason_in_the_audit_trail() {
    let Some(f) = fed(|_| {}).await else {
        return;
    };
    let t = tenant(&f.idp, Tier::Pro).await;
    let a = agent(&f.idp, &t, "deployer").await;
    let unpoliced = agent(&f.idp, &t, "unpoliced").await;
    let mut strict = main_branch(&a);
    strict.max_subject_token_age_seconds = Some(120);
    f.policy(&t, strict).await;
    let stranger = TestIssuer::new(GH).with_rsa("gh1", 2);
    let other_issuer = TestIssuer::new("https://other.example").with_rsa("o1", 0);
    f.keys
        .insert("https://other.example", other_issuer.key_set());
    let now = f.clock.now();
    let cases: Vec<(&str, String, &RegisteredAgent)> = vec![
        (
            "audience",
            f.gh_token(|c| c["aud"] = "https://elsewhere.example".into()),
            &a,
        ),
        (
            "conditions",
            f.gh_token(|c| c["ref"] = "refs/heads/dev".into()),
            &a,
        ),
        (
            "conditions",
            f.gh_token(|c| c["repository_id"] = "75".into()),
            &a,
        ),
        (
            "conditions",
            f.gh_token(|c| {
                c.as_object_mut().unwrap().remove("ref");
            }),
            &a,
        ),
        (
            "older than",
            f.gh_token(|c| c["iat"] = (now.unix_secs() - 121).into()),
            &a,
        ),
        (
            "does not verify",
            f.gh_token(|c| c["exp"] = (now.unix_secs() - 61).into()),
            &a,
        ),
        (
            "does not verify",
            f.gh_token(|c| c["nbf"] = (now.unix_secs() + 61).into()),
            &a,
        ),
        (
            "does not verify",
            stranger.sign("gh1", &github_claims(GH, ISSUER, now)),
            &a,
        ),
        (
            "does not verify",
            f.github.sign_with_header(
                "gh1",
                &json!({"alg": "RS256", "kid": "gh9"}),
                &github_claims(GH, ISSUER, now),
            ),
            &a,
        ),
        ("malformed", "not.a.token".into(), &a),
        (
            "malformed",
            f.github.sign_with_header(
                "gh1",
                &json!({"alg": "none"}),
                &github_claims(GH, ISSUER, now),
            ),
            &a,
        ),
        (
            "malformed",
            f.github.sign_with_header(
                "gh1",
                &json!({"alg": "HS256"}),
                &github_claims(GH, ISSUER, now),
            ),
            &a,
        ),
        (
            "names the token's issuer",
            other_issuer.sign("o1", &github_claims("https://other.example", ISSUER, now)),
            &a,
        ),
        ("no trust policy grants", f.gh_token(|_| {}), &unpoliced),
    ];
    for (reason, token, who) in cases {
        let r = f
            .idp
            .exchange_token(&for_agent(who, token), &Default::default())
            .await;
        assert!(
            matches!(r, Err(Error::InvalidToken { reason: None })),
            "{reason}: {r:?}"
        );
        let ev = f.last_event(Some(&t.id), "token.exchange_failed").await;
        assert_eq!(ev.event.outcome, Outcome::Failure);
        assert!(
            ev.event.details["reason"].contains(reason),
            "{reason}: {:?}",
            ev.event.details
        );
    }
    // An agent no tenant has: the system chain.
    let mut ghost = for_agent(&a, f.gh_token(|_| {}));
    ghost.target = ExchangeTarget::Agent("agt_nobody".into());
    let r = f.idp.exchange_token(&ghost, &Default::default()).await;
    assert!(
        matches!(r, Err(Error::InvalidToken { reason: None })),
        "{r:?}"
    );
    let ev = f.last_event(None, "token.exchange_failed").await;
    assert_eq!(ev.event.details["reason"], "no such agent");
    // A paused agent and a suspended tenant.
    f.idp
        .transition_agent(&Caller::system(), &a.agent.id, LifecycleState::Paused)
        .await
        .unwrap();
    let r = f
        .idp
        .exchange_token(&for_agent(&a, f.gh_token(|_| {})), &Default::default())
        .await;
    assert!(
        matches!(r, Err(Error::InvalidToken { reason: None })),
        "{r:?}"
    );
    let ev = f.last_event(Some(&t.id), "token.exchange_failed").await;
    assert!(ev.event.details["reason"].contains("token-bearing"));
    f.idp
        .transition_agent(&Caller::system(), &a.agent.id, LifecycleState::Active)
        .await
        .unwrap();
    f.idp
        .set_tenant_status(&Caller::system(), &t.id, TenantStatus::Suspended)
        .await
        .unwrap();
    let r = f
        .idp
        .exchange_token(&for_agent(&a, f.gh_token(|_| {})), &Default::default())
        .await;
    assert!(
        matches!(r, Err(Error::InvalidToken { reason: None })),
        "{r:?}"
    );
    let ev = f.last_event(Some(&t.id), "token.exchange_failed").await;
    assert!(ev.event.details["reason"].contains("suspended"));

    // Malformed requests are not refusals of the token.
    let mut bad = for_agent(&a, f.gh_token(|_| {}));
    bad.subject_token_type = ACCESS_TOKEN_TYPE.into();
    assert!(matches!(
        f.idp.exchange_token(&bad, &Default::default()).await,
        Err(Error::Invalid {
            field: "subject_token_type",
            ..
        })
    ));
}

#[tokio::test]
async fn several_matching_policies_are_a_configuration_error() {
    let Some(f) = fed(|_| {}).await else {
        return;
    };
    let t = tenant(&f.idp, Tier::Pro).await;
    let a = agent(&f.idp, &t, "deployer").await;
    let p1 = f.policy(&t, main_branch(&a)).await;
    let p2 = f
        .policy(
            &t,
            new_policy(
                GH,
                TrustGrant::AgentId(a.agent.id.clone()),
                &[("repository_id", "74")],
            ),
        )
        .await;
    let r = f
        .idp
        .exchange_token(&for_agent(&a, f.gh_token(|_| {})), &Default::default())
        .await;
    assert!(
        matches!(r, Err(Error::InvalidToken { reason: None })),
        "{r:?}"
    );
    let ev = f.last_event(Some(&t.id), "token.exchange_failed").await;
    assert!(ev.event.details["reason"].contains("configuration error"));
    let named = &ev.event.details["policies"];
    assert!(named.contains(p1.id.as_str()) && named.contains(p2.id.as_str()));
    // Narrowing one policy resolves it.
    f.idp
        .update_trust_policy(
            &Caller::system(),
            &p2.id,
            TrustPolicyPatch {
                conditions: Some(
                    [("repository_id", "74"), ("ref", "refs/tags/*")]
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                ),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        f.idp
            .exchange_token(&for_agent(&a, f.gh_token(|_| {})), &Default::default())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn another_tenants_policy_never_comes_into_play() {
    let Some(f) = fed(|_| {}).await else {
        return;
    };
    let victim = tenant(&f.idp, Tier::Pro).await;
    let v_agent = agent(&f.idp, &victim, "deployer").await;
    f.policy(&victim, main_branch(&v_agent)).await;
    // Another tenant writes a policy for the same repository, granting its
    // own agent, and one that would collide with the victim's.
    let attacker = tenant(&f.idp, Tier::Pro).await;
    let x_agent = agent(&f.idp, &attacker, "capture").await;
    f.policy(&attacker, main_branch(&x_agent)).await;
    f.policy(
        &attacker,
        new_policy(
            GH,
            TrustGrant::AgentId(x_agent.agent.id.clone()),
            &[("repository_id", "74")],
        ),
    )
    .await;
    // The victim's exchange is untouched by them (no ambiguity).
    let r = f
        .idp
        .exchange_token(
            &for_agent(&v_agent, f.gh_token(|_| {})),
            &Default::default(),
        )
        .await
        .unwrap();
    let claims = f.idp.verify_access_token(&r.access_token, None).unwrap();
    assert_eq!(claims.sub, v_agent.agent.id.as_str());
    // A policy cannot grant another tenant's agent.
    let r = f
        .idp
        .create_trust_policy(&Caller::system(), &attacker.id, main_branch(&v_agent))
        .await;
    assert!(
        matches!(r, Err(Error::Invalid { field: "grant", .. })),
        "{r:?}"
    );
    // Management tokens of the victim come from the victim's policies only.
    f.policy(
        &attacker,
        new_policy(
            GH,
            TrustGrant::AdminScopes(vec![AdminScope::Admin]),
            &[("repository_id", "74")],
        ),
    )
    .await;
    let r = f
        .idp
        .exchange_token(
            &for_tenant(&victim, f.gh_token(|_| {})),
            &Default::default(),
        )
        .await;
    assert!(
        matches!(r, Err(Error::InvalidToken { reason: None })),
        "{r:?}"
    );
}

#[tokio::test]
async fn management_tokens_reach_their_tenant_with_their_scopes_until_they_expire() {
    let Some(f) = fed(|_| {}).await else {
        return;
    };
    let t = tenant(&f.idp, Tier::Pro).await;
    let other = tenant(&f.idp, Tier::Pro).await;
    let mut new = new_policy(
        GH,
        TrustGrant::AdminScopes(vec![AdminScope::AgentsWrite, AdminScope::AuditRead]),
        &[("repository_owner_id", "65")],
    );
    new.max_token_ttl_seconds = Some(300);
    let p = f.policy(&t, new).await;
    let r = f
        .idp
        .exchange_token(&for_tenant(&t, f.gh_token(|_| {})), &Default::default())
        .await
        .unwrap();
    assert_eq!(r.expires_in, 300);
    assert_eq!(r.scope.as_deref(), Some("agents_write audit_read"));
    let caller = f
        .idp
        .authenticate_bearer(&r.access_token, &Default::default())
        .await
        .unwrap();
    assert_eq!(caller.tenant.as_ref(), Some(&t.id));
    assert_eq!(
        caller.scopes,
        [AdminScope::AgentsWrite, AdminScope::AuditRead]
    );
    assert_eq!(caller.actor, format!("trust_policy:{}", p.id));
    // Its scopes, its tenant.
    let made = f
        .idp
        .register_agent(
            &caller,
            &t.id,
            NewAgent {
                name: "from-ci".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(made.agent.tenant_id, t.id);
    assert!(matches!(
        f.idp
            .create_admin_key(&caller, Some(&t.id), "k", None)
            .await,
        Err(Error::Forbidden { .. })
    ));
    assert!(matches!(
        f.idp
            .register_agent(
                &caller,
                &other.id,
                NewAgent {
                    name: "x".into(),
                    ..Default::default()
                }
            )
            .await,
        Err(Error::NotFound { .. })
    ));
    // A narrower scope on request; one the policy does not grant is refused.
    let mut narrow = for_tenant(&t, f.gh_token(|_| {}));
    narrow.scope = Some("agents.read".into());
    let r2 = f
        .idp
        .exchange_token(&narrow, &Default::default())
        .await
        .unwrap();
    let c2 = f
        .idp
        .authenticate_bearer(&r2.access_token, &Default::default())
        .await
        .unwrap();
    assert_eq!(c2.scopes, [AdminScope::AgentsRead]);
    narrow.scope = Some("admin".into());
    assert!(matches!(
        f.idp.exchange_token(&narrow, &Default::default()).await,
        Err(Error::InvalidScope { .. })
    ));
    narrow.scope = None;
    narrow.resources = vec!["https://api.example".into()];
    assert!(matches!(
        f.idp.exchange_token(&narrow, &Default::default()).await,
        Err(Error::InvalidTarget { .. })
    ));
    // Neither an access token nor garbage is a management token.
    let a = agent(&f.idp, &t, "bot").await;
    let access = issue(&f.idp, &secret_request(&a, None)).await.unwrap();
    for bad in [access.as_str(), "a.b.c", "sa_ak_nothing", ""] {
        assert!(matches!(
            f.idp.authenticate_bearer(bad, &Default::default()).await,
            Err(Error::Unauthenticated)
        ));
    }
    // Refused after expiry (beyond the configured 30 s leeway).
    f.clock.advance(Duration::from_secs(300 + 29));
    assert!(
        f.idp
            .authenticate_bearer(&r.access_token, &Default::default())
            .await
            .is_ok()
    );
    f.clock.advance(Duration::from_secs(2));
    assert!(matches!(
        f.idp
            .authenticate_bearer(&r.access_token, &Default::default())
            .await,
        Err(Error::Unauthenticated)
    ));
    let ev = f
        .last_event(None, "management_token.authentication_failed")
        .await;
    assert_eq!(ev.event.outcome, Outcome::Failure);
    // Deleting the policy ends its tokens at once.
    let fresh = f
        .idp
        .exchange_token(&for_tenant(&t, f.gh_token(|_| {})), &Default::default())
        .await
        .unwrap();
    assert!(
        f.idp
            .authenticate_bearer(&fresh.access_token, &Default::default())
            .await
            .is_ok()
    );
    f.idp
        .delete_trust_policy(&Caller::system(), &p.id)
        .await
        .unwrap();
    assert!(matches!(
        f.idp
            .authenticate_bearer(&fresh.access_token, &Default::default())
            .await,
        Err(Error::Unauthenticated)
    ));
    // Admin keys still authenticate as before.
    let (_, key) = f
        .idp
        .create_admin_key(&Caller::system(), Some(&t.id), "ci", None)
        .await
        .unwrap();
    let by_key = f
        .idp
        .authenticate_bearer(&key, &Default::default())
        .await
        .unwrap();
    assert_eq!(by_key.tenant.as_ref(), Some(&t.id));
}

#[tokio::test]
async fn single_use_policies_refuse_a_replayed_token() {
    let Some(f) = fed(|_| {}).await else {
        return;
    };
    let t = tenant(&f.idp, Tier::Pro).await;
    let a = agent(&f.idp, &t, "deployer").await;
    let mut new = main_branch(&a);
    new.single_use = true;
    f.policy(&t, new).await;
    let token = f.gh_token(|_| {});
    f.idp
        .exchange_token(&for_agent(&a, token.clone()), &Default::default())
        .await
        .unwrap();
    let r = f
        .idp
        .exchange_token(&for_agent(&a, token), &Default::default())
        .await;
    assert!(
        matches!(r, Err(Error::InvalidToken { reason: None })),
        "{r:?}"
    );
    let ev = f.last_event(Some(&t.id), "token.exchange_failed").await;
    assert!(ev.event.details["reason"].contains("used before"));
    let no_jti = f.gh_token(|c| {
        c.as_object_mut().unwrap().remove("jti");
    });
    let r = f
        .idp
        .exchange_token(&for_agent(&a, no_jti), &Default::default())
        .await;
    assert!(
        matches!(r, Err(Error::InvalidToken { reason: None })),
        "{r:?}"
    );
    // Without single use, a token may be exchanged again while valid.
    let b = agent(&f.idp, &t, "reader").await;
    let mut new = main_branch(&b);
    new.name = "reader".into();
    f.policy(&t, new).await;
    let token = f.gh_token(|_| {});
    for _ in 0..2 {
        f.idp
            .exchange_token(&for_agent(&b, token.clone()), &Default::default())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn gitlab_ci_and_kubernetes_tokens_exchange_too() {
    let Some(f) = fed(|_| {}).await else {
        return;
    };
    let t = tenant(&f.idp, Tier::Pro).await;
    let a = agent(&f.idp, &t, "deployer").await;
    let gitlab = TestIssuer::new(GITLAB).with_rsa("gl", 2);
    let k8s = TestIssuer::new(K8S).with_key("k8s-es", Algorithm::ES256);
    f.keys.insert(GITLAB, gitlab.key_set());
    f.keys.insert(K8S, k8s.key_set());
    f.policy(
        &t,
        new_policy(
            GITLAB,
            TrustGrant::AgentId(a.agent.id.clone()),
            &[
                ("project_id", "42"),
                ("ref_protected", "true"),
                ("environment", "production"),
            ],
        ),
    )
    .await;
    f.policy(
        &t,
        new_policy(
            K8S,
            TrustGrant::AgentId(a.agent.id.clone()),
            &[
                ("sub", "system:serviceaccount:ci:deployer"),
                ("/kubernetes.io/namespace", "ci"),
            ],
        ),
    )
    .await;
    let now = f.clock.now();
    let token = gitlab.sign("gl", &gitlab_claims(GITLAB, ISSUER, now));
    let r = f
        .idp
        .exchange_token(&for_agent(&a, token), &Default::default())
        .await
        .unwrap();
    let c = f.idp.verify_access_token(&r.access_token, None).unwrap();
    assert_eq!(c.extra["act"]["iss"], GITLAB);
    assert_eq!(
        c.extra["act"]["sub"],
        "project_path:group/project:ref_type:branch:ref:main"
    );

    let token = k8s.sign("k8s-es", &kubernetes_claims(K8S, ISSUER, now));
    let r = f
        .idp
        .exchange_token(&for_agent(&a, token), &Default::default())
        .await
        .unwrap();
    let c = f.idp.verify_access_token(&r.access_token, None).unwrap();
    assert_eq!(c.extra["act"]["sub"], "system:serviceaccount:ci:deployer");

    let mut other_ns = kubernetes_claims(K8S, ISSUER, now);
    other_ns["kubernetes.io"]["namespace"] = "default".into();
    let r = f
        .idp
        .exchange_token(
            &for_agent(&a, k8s.sign("k8s-es", &other_ns)),
            &Default::default(),
        )
        .await;
    assert!(
        matches!(r, Err(Error::InvalidToken { reason: None })),
        "{r:?}"
    );
}

#[tokio::test]
async fn exchanges_are_rate_limited_and_metered_like_token_requests() {
    let mut tiers = TierTable::default();
    tiers.pro.client_requests_per_minute = Some(3);
    tiers.pro.token_issuances_per_month = Some(4);
    let Some(f) = fed(move |cfg| cfg.tiers = tiers).await else {
        return;
    };
    let t = tenant(&f.idp, Tier::Pro).await;
    let a = agent(&f.idp, &t, "deployer").await;
    f.policy(&t, main_branch(&a)).await;
    // The client's limit counts exchanges and secret requests together.
    issue(&f.idp, &secret_request(&a, None)).await.unwrap();
    for _ in 0..2 {
        f.idp
            .exchange_token(&for_agent(&a, f.gh_token(|_| {})), &Default::default())
            .await
            .unwrap();
    }
    let r = f
        .idp
        .exchange_token(&for_agent(&a, f.gh_token(|_| {})), &Default::default())
        .await;
    assert!(matches!(r, Err(Error::RateLimited { .. })), "{r:?}");
    // A minute later: one more issuance fits the month's quota of 4, then
    // the quota refuses.
    f.clock.advance(Duration::from_secs(60));
    f.idp
        .exchange_token(&for_agent(&a, f.gh_token(|_| {})), &Default::default())
        .await
        .unwrap();
    let r = f
        .idp
        .exchange_token(&for_agent(&a, f.gh_token(|_| {})), &Default::default())
        .await;
    assert!(
        matches!(
            r,
            Err(Error::QuotaExceeded {
                limit_kind: LimitKind::TokenIssuancesPerMonth,
                used: 4,
                ..
            })
        ),
        "{r:?}"
    );
}

#[tokio::test]
async fn trust_policies_are_managed_per_tenant_and_audited() {
    let Some(f) = fed(|_| {}).await else {
        return;
    };
    let t = tenant(&f.idp, Tier::Pro).await;
    let other = tenant(&f.idp, Tier::Pro).await;
    let a = agent(&f.idp, &t, "deployer").await;
    let (_, admin) = f
        .idp
        .create_admin_key(&Caller::system(), Some(&t.id), "admin", None)
        .await
        .unwrap();
    let admin = f
        .idp
        .authenticate_bearer(&admin, &Default::default())
        .await
        .unwrap();
    let (_, reader) = f
        .idp
        .create_admin_key(
            &Caller::system(),
            Some(&t.id),
            "reader",
            Some(vec![AdminScope::AgentsRead]),
        )
        .await
        .unwrap();
    let reader = f
        .idp
        .authenticate_bearer(&reader, &Default::default())
        .await
        .unwrap();
    let (_, outsider) = f
        .idp
        .create_admin_key(&Caller::system(), Some(&other.id), "o", None)
        .await
        .unwrap();
    let outsider = f
        .idp
        .authenticate_bearer(&outsider, &Default::default())
        .await
        .unwrap();

    // The GitHub rule, with a message that says why.
    let r = f
        .idp
        .create_trust_policy(
            &admin,
            &t.id,
            new_policy(
                GH,
                TrustGrant::AgentId(a.agent.id.clone()),
                &[("ref", "refs/heads/main")],
            ),
        )
        .await;
    match r {
        Err(Error::Invalid {
            field: "conditions",
            message,
        }) => {
            assert!(message.contains("any repository on GitHub"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        f.idp
            .create_trust_policy(&reader, &t.id, main_branch(&a))
            .await,
        Err(Error::Forbidden { .. })
    ));
    assert!(matches!(
        f.idp
            .create_trust_policy(&outsider, &t.id, main_branch(&a))
            .await,
        Err(Error::NotFound { .. })
    ));
    let p = f
        .idp
        .create_trust_policy(&admin, &t.id, main_branch(&a))
        .await
        .unwrap();
    assert_eq!(
        (p.max_token_ttl_seconds, p.max_subject_token_age_seconds),
        (900, 600)
    );
    let ev = f.last_event(Some(&t.id), "trust_policy.created").await;
    assert_eq!(ev.event.target.as_deref(), Some(p.id.as_str()));
    assert_eq!(ev.event.details["grant"], format!("agent:{}", a.agent.id));
    assert_eq!(ev.event.details["issuer"], GH);

    assert_eq!(f.idp.get_trust_policy(&reader, &p.id).await.unwrap(), p);
    assert!(matches!(
        f.idp.get_trust_policy(&outsider, &p.id).await,
        Err(Error::NotFound { .. })
    ));
    let page = f
        .idp
        .list_trust_policies(&reader, &t.id, &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(page.items, vec![p.clone()]);
    assert!(
        f.idp
            .list_trust_policies(&Caller::system(), &other.id, &PageRequest::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );

    let changed = f
        .idp
        .update_trust_policy(
            &admin,
            &p.id,
            TrustPolicyPatch {
                max_token_ttl_seconds: Some(60),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (changed.max_token_ttl_seconds, changed.revision),
        (60, p.revision + 1)
    );
    assert!(matches!(
        f.idp
            .update_trust_policy(
                &admin,
                &p.id,
                TrustPolicyPatch {
                    max_token_ttl_seconds: Some(3601),
                    ..Default::default()
                },
            )
            .await,
        Err(Error::Invalid {
            field: "max_token_ttl_seconds",
            ..
        })
    ));
    assert!(matches!(
        f.idp
            .update_trust_policy(
                &admin,
                &p.id,
                TrustPolicyPatch {
                    conditions: Some(Default::default()),
                    ..Default::default()
                },
            )
            .await,
        Err(Error::Invalid {
            field: "conditions",
            ..
        })
    ));
    let ev = f.last_event(Some(&t.id), "trust_policy.updated").await;
    assert_eq!(ev.event.details["max_token_ttl_seconds"], "60");
    assert!(matches!(
        f.idp.delete_trust_policy(&outsider, &p.id).await,
        Err(Error::NotFound { .. })
    ));
    f.idp.delete_trust_policy(&admin, &p.id).await.unwrap();
    assert!(matches!(
        f.idp.get_trust_policy(&admin, &p.id).await,
        Err(Error::NotFound { .. })
    ));
    let ev = f.last_event(Some(&t.id), "trust_policy.deleted").await;
    assert_eq!(ev.event.target.as_deref(), Some(p.id.as_str()));
    assert!(matches!(
        f.idp
            .get_trust_policy(&admin, &TrustPolicyId::generate())
            .await,
        Err(Error::NotFound { .. })
    ));
    // A tenant holds at most MAX_TRUST_POLICIES.
    for i in 0..sentryagent_core::MAX_TRUST_POLICIES {
        let mut new = main_branch(&a);
        new.name = format!("p{i}");
        f.idp.create_trust_policy(&admin, &t.id, new).await.unwrap();
    }
    assert!(matches!(
        f.idp
            .create_trust_policy(&admin, &t.id, main_branch(&a))
            .await,
        Err(Error::Invalid {
            field: "trust_policy",
            ..
        })
    ));
}

#[tokio::test]
async fn an_agent_registered_without_a_secret_gets_tokens_by_exchange_and_is_found_by_name() {
    let Some(f) = fed(|_| {}).await else {
        return;
    };
    let t = tenant(&f.idp, Tier::Pro).await;
    let key = SigningKey::generate(Algorithm::EdDSA, "").unwrap();
    let r = f
        .idp
        .register_agent(
            &Caller::system(),
            &t.id,
            NewAgent {
                name: "ci-agent".into(),
                public_jwk: Some(key.verifying_key().to_jwk()),
                issue_client_secret: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(r.client_secret, None);
    assert!(r.private_jwk.is_none());
    let ev = f.last_event(Some(&t.id), "agent.registered").await;
    assert_eq!(ev.event.details["secret_issued"], "false");
    // No secret authenticates it.
    for guess in ["", "sa_cs_x"] {
        let req = TokenRequest {
            grant_type: "client_credentials".into(),
            client: ClientCredentials::Secret {
                client_id: r.agent.id.to_string(),
                client_secret: guess.into(),
            },
            scope: None,
            resources: vec![],
        };
        assert!(matches!(
            issue(&f.idp, &req).await,
            Err(Error::Unauthenticated)
        ));
    }
    // Found by name (none or one), and given tokens by exchange.
    let page = f
        .idp
        .list_agents_named(
            &Caller::system(),
            &t.id,
            Some("ci-agent"),
            &PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(page.items, vec![r.agent.clone()]);
    let none = f
        .idp
        .list_agents_named(
            &Caller::system(),
            &t.id,
            Some("nobody"),
            &PageRequest::default(),
        )
        .await
        .unwrap();
    assert!(none.items.is_empty() && none.next_cursor.is_none());
    f.policy(&t, main_branch(&r)).await;
    let token = f
        .idp
        .exchange_token(&for_agent(&r, f.gh_token(|_| {})), &Default::default())
        .await
        .unwrap();
    assert_eq!(
        f.idp
            .verify_access_token(&token.access_token, None)
            .unwrap()
            .sub,
        r.agent.id.as_str()
    );
}

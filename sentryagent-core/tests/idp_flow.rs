//! End-to-end behaviour of the `Idp` on its in-memory parts, with a manual
//! clock: registration, every client authentication method, issuance
//! refusals, verification, introspection, revocation, rotation, keys.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sentryagent_core::audit::{AuditQuery, Outcome};
use sentryagent_core::jose::jwt::{Validation, verify_jwt};
use sentryagent_core::jose::{Algorithm, Jwk, JwkSet, KeySet, SigningKey};
use sentryagent_core::token::{AccessTokenClaims, JWT_BEARER_ASSERTION_TYPE};
use sentryagent_core::{
    AdminScope, Caller, ClientCredentials, Error, Idp, LifecycleState, LimitKind, ManualClock,
    NewAgent, NewTenant, RegisteredAgent, Tenant, TenantId, TenantStatus, Tier, TierTable,
    Timestamp, TokenRequest,
};

const ISSUER: &str = "https://idp.example";

async fn idp_with(clock: &ManualClock, f: impl FnOnce(&mut sentryagent_core::IdpConfig)) -> Idp {
    Idp::builder(ISSUER)
        .clock(Arc::new(clock.clone()))
        .configure(f)
        .build()
        .await
        .unwrap()
}

fn clock() -> ManualClock {
    ManualClock::new(Timestamp::from_unix_secs(1_763_700_000))
}

async fn tenant(idp: &Idp, tier: Tier) -> Tenant {
    idp.create_tenant(
        &Caller::system(),
        NewTenant {
            name: "Acme".into(),
            tier: Some(tier),
            allowed_audiences: vec!["https://api.example".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

async fn agent(idp: &Idp, t: &Tenant, name: &str) -> RegisteredAgent {
    idp.register_agent(
        &Caller::system(),
        &t.id,
        NewAgent {
            name: name.into(),
            allowed_scopes: vec!["read".into(), "write".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

fn secret_request(a: &RegisteredAgent, scope: Option<&str>) -> TokenRequest {
    TokenRequest {
        grant_type: "client_credentials".into(),
        client: ClientCredentials::Secret {
            client_id: a.agent.id.to_string(),
            client_secret: a.client_secret.clone(),
        },
        scope: scope.map(str::to_owned),
        resources: vec![],
    }
}

fn with_secret(a: &RegisteredAgent, secret: &str) -> TokenRequest {
    let mut r = secret_request(a, None);
    r.client = ClientCredentials::Secret {
        client_id: a.agent.id.to_string(),
        client_secret: secret.to_owned(),
    };
    r
}

async fn issue(idp: &Idp, req: &TokenRequest) -> sentryagent_core::Result<String> {
    idp.issue_token(req, &Default::default())
        .await
        .map(|t| t.access_token)
}

fn agent_key(a: &RegisteredAgent) -> SigningKey {
    let d = URL_SAFE_NO_PAD
        .decode(&a.private_jwk.as_ref().unwrap().d)
        .unwrap();
    SigningKey::from_secret_bytes(Algorithm::EdDSA, a.agent.did.clone(), &d).unwrap()
}

fn assertion(
    key: &SigningKey,
    sub: &str,
    aud: &str,
    now: Timestamp,
    exp_in: i64,
    jti: &str,
) -> String {
    let claims = serde_json::json!({
        "iss": sub, "sub": sub, "aud": aud, "jti": jti,
        "iat": now.unix_secs(), "exp": now.unix_secs() + exp_in,
    });
    key.sign_compact(None, &serde_json::to_vec(&claims).unwrap())
        .unwrap()
}

fn jwt_request(a: &RegisteredAgent, assertion: String) -> TokenRequest {
    TokenRequest {
        grant_type: "client_credentials".into(),
        client: ClientCredentials::Assertion {
            client_id: Some(a.agent.id.to_string()),
            assertion_type: JWT_BEARER_ASSERTION_TYPE.into(),
            assertion,
        },
        scope: None,
        resources: vec![],
    }
}

#[tokio::test]
async fn token_round_trip_verifies_from_the_jwks_alone() {
    let c = clock();
    let idp = idp_with(&c, |_| {}).await;
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "bot").await;
    let resp = idp
        .issue_token(&secret_request(&a, Some("read")), &Default::default())
        .await
        .unwrap();
    assert_eq!(resp.token_type, "Bearer");
    assert_eq!(resp.expires_in, 900);
    assert_eq!(resp.scope.as_deref(), Some("read"));

    // A relying party with only the published JWKS.
    let jwks: JwkSet = serde_json::from_value(serde_json::to_value(idp.jwks()).unwrap()).unwrap();
    let keys = KeySet::from_jwks(&jwks).unwrap();
    let v = Validation {
        issuer: ISSUER.into(),
        audience: Some(ISSUER.into()),
        leeway: Duration::ZERO,
        now: c.now_for_test(),
        required_typ: Some("at+jwt".into()),
    };
    let (header, claims) =
        verify_jwt::<AccessTokenClaims, _>(&resp.access_token, &keys, &v).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(claims.sub, a.agent.id.as_str());
    assert_eq!(claims.client_id, a.agent.id.as_str());
    assert_eq!(claims.tenant_id, t.id.as_str());
    assert_eq!(claims.did, a.agent.did);
    assert_eq!(claims.exp - claims.iat, 900);
    assert_eq!(claims.nbf, claims.iat);
    assert!(claims.jti.len() >= 22);

    // Expiry is enforced (with the default 30 s leeway).
    c.advance(Duration::from_secs(900 + 31));
    assert!(matches!(
        idp.verify_access_token(&resp.access_token, None),
        Err(Error::InvalidToken { .. })
    ));
}

trait NowForTest {
    fn now_for_test(&self) -> Timestamp;
}
impl NowForTest for ManualClock {
    fn now_for_test(&self) -> Timestamp {
        use sentryagent_core::Clock;
        self.now()
    }
}

#[tokio::test]
async fn every_client_authentication_failure_is_the_same_error_and_is_audited() {
    let c = clock();
    let idp = idp_with(&c, |_| {}).await;
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "bot").await;
    let unknown = TokenRequest {
        client: ClientCredentials::Secret {
            client_id: "agt_doesnotexist".into(),
            client_secret: a.client_secret.clone(),
        },
        ..secret_request(&a, None)
    };
    let wrong = with_secret(&a, "sa_cs_wrongwrongwrongwrongwrongwrongwrongwrong");
    let empty = with_secret(&a, "");
    let mut errors = vec![];
    for r in [&unknown, &wrong, &empty] {
        errors.push(issue(&idp, r).await.unwrap_err().to_string());
    }
    idp.revoke_client_secrets(&Caller::system(), &a.agent.id)
        .await
        .unwrap();
    errors.push(
        issue(&idp, &secret_request(&a, None))
            .await
            .unwrap_err()
            .to_string(),
    );
    assert!(
        errors.iter().all(|e| e == "authentication failed"),
        "{errors:?}"
    );

    let failures = idp
        .query_audit(
            &Caller::system(),
            &AuditQuery {
                tenant_id: Some(t.id.clone()),
                action: Some("client.authentication_failed".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        failures.items.len(),
        3,
        "wrong, empty and revoked secret are audited in the tenant"
    );
    assert!(
        failures
            .items
            .iter()
            .all(|e| e.event.outcome == Outcome::Failure)
    );
    let secret_leaked = serde_json::to_string(&failures.items)
        .unwrap()
        .contains(&a.client_secret);
    assert!(!secret_leaked, "an audit event never holds a secret");
    let system = idp
        .query_audit(
            &Caller::system(),
            &AuditQuery {
                tenant_id: None,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        system
            .items
            .iter()
            .any(|e| e.event.actor == "client:agt_doesnotexist"),
        "unknown client in the system chain"
    );
}

#[tokio::test]
async fn rotation_keeps_the_old_secret_for_the_grace_period_and_revocation_is_immediate() {
    let c = clock();
    let idp = idp_with(&c, |cfg| {
        cfg.secret_grace_period = Duration::from_secs(3600)
    })
    .await;
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "bot").await;
    let (new_secret, until) = idp
        .rotate_client_secret(&Caller::system(), &a.agent.id)
        .await
        .unwrap();
    assert_ne!(new_secret, a.client_secret);
    assert_eq!(until, c.now_for_test().plus(Duration::from_secs(3600)));
    issue(&idp, &secret_request(&a, None))
        .await
        .expect("old secret within grace");
    issue(&idp, &with_secret(&a, &new_secret))
        .await
        .expect("new secret");
    c.advance(Duration::from_secs(3600));
    assert!(
        matches!(
            issue(&idp, &secret_request(&a, None)).await,
            Err(Error::Unauthenticated)
        ),
        "old secret after grace"
    );
    issue(&idp, &with_secret(&a, &new_secret))
        .await
        .expect("new secret still works");
    idp.revoke_client_secrets(&Caller::system(), &a.agent.id)
        .await
        .unwrap();
    assert!(
        matches!(
            issue(&idp, &with_secret(&a, &new_secret)).await,
            Err(Error::Unauthenticated)
        ),
        "revoked at once"
    );
}

#[tokio::test]
async fn private_key_jwt_accepts_issuer_or_token_endpoint_and_refuses_replays() {
    let c = clock();
    let idp = idp_with(&c, |_| {}).await;
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "bot").await;
    let key = agent_key(&a);
    let sub = a.agent.id.as_str();
    let now = c.now_for_test();
    let token_endpoint = format!("{ISSUER}/oauth2/token");

    let first = assertion(&key, sub, &token_endpoint, now, 60, "j1");
    let token = issue(&idp, &jwt_request(&a, first.clone())).await.unwrap();
    assert_eq!(idp.verify_access_token(&token, None).unwrap().sub, sub);
    // The same jti again is a replay.
    assert!(matches!(
        issue(&idp, &jwt_request(&a, first)).await,
        Err(Error::Unauthenticated)
    ));
    // The issuer as audience also works.
    issue(
        &idp,
        &jwt_request(&a, assertion(&key, sub, ISSUER, now, 60, "j2")),
    )
    .await
    .unwrap();

    let refused = [
        (
            "other audience",
            assertion(&key, sub, "https://elsewhere.example", now, 60, "j3"),
        ),
        (
            "too long-lived",
            assertion(&key, sub, ISSUER, now, 3600, "j4"),
        ),
        ("expired", assertion(&key, sub, ISSUER, now, -120, "j5")),
        (
            "another key",
            assertion(
                &SigningKey::generate(Algorithm::EdDSA, "x").unwrap(),
                sub,
                ISSUER,
                now,
                60,
                "j6",
            ),
        ),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    for (why, a_jwt) in refused {
        let r = issue(&idp, &jwt_request(&a, a_jwt)).await;
        assert!(matches!(r, Err(Error::Unauthenticated)), "{why}: {r:?}");
    }
    // No exp at all.
    let no_exp = key
        .sign_compact(
            None,
            &serde_json::to_vec(
                &serde_json::json!({"iss": sub, "sub": sub, "aud": ISSUER, "jti": "j7"}),
            )
            .unwrap(),
        )
        .unwrap();
    assert!(matches!(
        issue(&idp, &jwt_request(&a, no_exp)).await,
        Err(Error::Unauthenticated)
    ));
    // client_id must match the assertion's subject.
    let other = agent(&idp, &t, "other").await;
    let mut req = jwt_request(&a, assertion(&key, sub, ISSUER, now, 60, "j8"));
    req.client = ClientCredentials::Assertion {
        client_id: Some(other.agent.id.to_string()),
        assertion_type: JWT_BEARER_ASSERTION_TYPE.into(),
        assertion: assertion(&key, sub, ISSUER, now, 60, "j8"),
    };
    assert!(matches!(
        issue(&idp, &req).await,
        Err(Error::Unauthenticated)
    ));
    // A jti may be reused once the first assertion has expired.
    c.advance(Duration::from_secs(200));
    issue(
        &idp,
        &jwt_request(&a, assertion(&key, sub, ISSUER, c.now_for_test(), 60, "j1")),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn an_agent_that_brings_its_key_authenticates_with_it() {
    let c = clock();
    let idp = idp_with(&c, |_| {}).await;
    let t = tenant(&idp, Tier::Pro).await;
    let own = SigningKey::generate(Algorithm::EdDSA, "mine").unwrap();
    let jwk: Jwk = own.public_jwk();
    let by_jwk = idp
        .register_agent(
            &Caller::system(),
            &t.id,
            NewAgent {
                name: "jwk".into(),
                public_jwk: Some(jwk.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        by_jwk.private_jwk.is_none(),
        "the IdP never had the private key"
    );
    let did = by_jwk.agent.did.clone();
    let by_did = idp
        .register_agent(
            &Caller::system(),
            &t.id,
            NewAgent {
                name: "did".into(),
                did: Some(did.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(by_did.agent.did, did);
    let sub = by_did.agent.id.as_str();
    let a = assertion(&own, sub, ISSUER, c.now_for_test(), 60, "x1");
    issue(&idp, &jwt_request(&by_did, a)).await.unwrap();

    for bad in [
        "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme",
        "did:web:example.com",
        "",
    ] {
        let r = idp
            .register_agent(
                &Caller::system(),
                &t.id,
                NewAgent {
                    name: "bad".into(),
                    did: Some(bad.into()),
                    ..Default::default()
                },
            )
            .await;
        assert!(matches!(r, Err(Error::Invalid { .. })), "{bad}: {r:?}");
    }
}

#[tokio::test]
async fn issuance_refusals_are_distinct() {
    let c = clock();
    let idp = idp_with(&c, |_| {}).await;
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "bot").await;
    let sys = Caller::system();

    let r = issue(&idp, &secret_request(&a, Some("read admin"))).await;
    assert!(matches!(r, Err(Error::InvalidScope { .. })), "{r:?}");
    let mut req = secret_request(&a, None);
    req.resources = vec!["https://evil.example".into()];
    assert!(matches!(
        issue(&idp, &req).await,
        Err(Error::InvalidTarget { .. })
    ));
    req.resources = vec!["https://api.example".into()];
    let tok = issue(&idp, &req).await.unwrap();
    assert!(
        idp.verify_access_token(&tok, Some("https://api.example"))
            .is_ok()
    );
    assert!(
        idp.verify_access_token(&tok, Some(ISSUER)).is_err(),
        "audience is what was asked"
    );
    req.grant_type = "password".into();
    assert!(matches!(
        issue(&idp, &req).await,
        Err(Error::UnsupportedGrantType)
    ));

    idp.transition_agent(&sys, &a.agent.id, LifecycleState::Paused)
        .await
        .unwrap();
    let r = issue(&idp, &secret_request(&a, None)).await;
    assert!(
        matches!(
            r,
            Err(Error::AgentNotActive {
                state: LifecycleState::Paused
            })
        ),
        "{r:?}"
    );
    idp.transition_agent(&sys, &a.agent.id, LifecycleState::Listed)
        .await
        .unwrap();
    issue(&idp, &secret_request(&a, None)).await.unwrap();

    idp.set_tenant_status(&sys, &t.id, TenantStatus::Suspended)
        .await
        .unwrap();
    assert!(matches!(
        issue(&idp, &secret_request(&a, None)).await,
        Err(Error::TenantSuspended)
    ));
    idp.set_tenant_status(&sys, &t.id, TenantStatus::Active)
        .await
        .unwrap();

    let r = idp
        .transition_agent(&sys, &a.agent.id, LifecycleState::Draft)
        .await;
    assert!(
        matches!(r, Err(Error::Conflict { .. })),
        "listed -> draft is illegal: {r:?}"
    );
    idp.transition_agent(&sys, &a.agent.id, LifecycleState::Retired)
        .await
        .unwrap();
    let r = idp
        .transition_agent(&sys, &a.agent.id, LifecycleState::Active)
        .await;
    assert!(
        matches!(r, Err(Error::Conflict { .. })),
        "retired is final: {r:?}"
    );
}

#[tokio::test]
async fn draft_agents_get_no_tokens() {
    let c = clock();
    let idp = idp_with(&c, |_| {}).await;
    let t = tenant(&idp, Tier::Pro).await;
    let a = idp
        .register_agent(
            &Caller::system(),
            &t.id,
            NewAgent {
                name: "d".into(),
                state: Some(LifecycleState::Draft),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(matches!(
        issue(&idp, &secret_request(&a, None)).await,
        Err(Error::AgentNotActive { .. })
    ));
    let r = idp
        .register_agent(
            &Caller::system(),
            &t.id,
            NewAgent {
                name: "l".into(),
                state: Some(LifecycleState::Listed),
                ..Default::default()
            },
        )
        .await;
    assert!(
        matches!(r, Err(Error::Invalid { .. })),
        "registration starts as draft or active"
    );
}

#[tokio::test]
async fn the_rate_limit_refuses_with_a_retry_time() {
    let c = clock();
    let idp = idp_with(&c, |_| {}).await;
    let t = tenant(&idp, Tier::Free).await;
    let a = agent(&idp, &t, "bot").await;
    let req = secret_request(&a, None);
    for i in 0..60 {
        issue(&idp, &req)
            .await
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
    }
    match issue(&idp, &req).await {
        Err(Error::RateLimited { retry_after, limit }) => {
            assert_eq!(limit, 60);
            assert_eq!(retry_after, Duration::from_secs(1));
        }
        other => panic!("61st request in a minute on free: {other:?}"),
    }
    c.advance(Duration::from_secs(1));
    issue(&idp, &req).await.unwrap();
}

#[tokio::test]
async fn tier_quotas_hold_and_say_which_limit() {
    let c = clock();
    let mut tiers = TierTable::default();
    tiers.free.token_issuances_per_month = Some(5);
    tiers.free.api_calls_per_day = Some(3);
    let idp = idp_with(&c, move |cfg| cfg.tiers = tiers).await;
    let t = tenant(&idp, Tier::Free).await;
    let sys = Caller::system();
    let mut agents = vec![];
    for i in 0..3 {
        agents.push(agent(&idp, &t, &format!("a{i}")).await);
    }
    let r = idp
        .register_agent(
            &sys,
            &t.id,
            NewAgent {
                name: "a3".into(),
                ..Default::default()
            },
        )
        .await;
    assert!(
        matches!(&r, Err(Error::QuotaExceeded { limit_kind: LimitKind::Agents, used: 3, limit: 3, tier }) if tier == "free"),
        "{r:?}"
    );
    for _ in 0..5 {
        issue(&idp, &secret_request(&agents[0], None))
            .await
            .unwrap();
    }
    let r = issue(&idp, &secret_request(&agents[1], None)).await;
    assert!(
        matches!(
            r,
            Err(Error::QuotaExceeded {
                limit_kind: LimitKind::TokenIssuancesPerMonth,
                used: 5,
                limit: 5,
                ..
            })
        ),
        "{r:?}"
    );
    // Buffered counts reach the meter and still count.
    idp.flush_usage().await.unwrap();
    assert!(matches!(
        issue(&idp, &secret_request(&agents[1], None)).await,
        Err(Error::QuotaExceeded { .. })
    ));

    for _ in 0..3 {
        idp.admit_api_call(&t.id).await.unwrap();
    }
    let r = idp.admit_api_call(&t.id).await;
    assert!(
        matches!(
            r,
            Err(Error::QuotaExceeded {
                limit_kind: LimitKind::ApiCallsPerDay,
                ..
            })
        ),
        "{r:?}"
    );

    let summary = idp.usage_summary(&sys, &t.id).await.unwrap();
    assert_eq!(summary.agents.used, 3);
    assert_eq!(summary.token_issuances_this_month.used, 5);
    assert_eq!(summary.api_calls_today.used, 3);
    assert!(summary.approaching_limit);
    assert_eq!(summary.active_agents_this_month, 1);

    // Upgrading lifts the limits; downgrading keeps agents but refuses more.
    idp.set_tenant_tier(&sys, &t.id, Tier::Pro).await.unwrap();
    issue(&idp, &secret_request(&agents[1], None))
        .await
        .unwrap();
    agent(&idp, &t, "a3").await;
    idp.set_tenant_tier(&sys, &t.id, Tier::Free).await.unwrap();
    assert_eq!(
        idp.list_agents(&sys, &t.id, &Default::default())
            .await
            .unwrap()
            .items
            .len(),
        4
    );
    let r = idp
        .register_agent(
            &sys,
            &t.id,
            NewAgent {
                name: "a4".into(),
                ..Default::default()
            },
        )
        .await;
    assert!(
        matches!(
            r,
            Err(Error::QuotaExceeded {
                limit_kind: LimitKind::Agents,
                used: 4,
                ..
            })
        ),
        "{r:?}"
    );
}

#[tokio::test]
async fn introspection_and_revocation_follow_rfc_7662_and_7009() {
    let c = clock();
    let idp = idp_with(&c, |_| {}).await;
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "bot").await;
    let rs = agent(&idp, &t, "resource-server").await;
    let rs_creds = secret_request(&rs, None).client;
    let a_creds = secret_request(&a, None).client;
    let meta = Default::default();
    let token = issue(&idp, &secret_request(&a, Some("read")))
        .await
        .unwrap();

    let i = idp.introspect(&rs_creds, &token, &meta).await.unwrap();
    assert!(i.active);
    let claims = i.claims.unwrap();
    assert_eq!(claims.client_id, a.agent.id.as_str());
    assert_eq!(claims.scope.as_deref(), Some("read"));
    let inactive =
        serde_json::to_value(idp.introspect(&rs_creds, "garbage", &meta).await.unwrap()).unwrap();
    assert_eq!(inactive, serde_json::json!({"active": false}));

    // Another tenant's client learns nothing.
    let t2 = tenant(&idp, Tier::Pro).await;
    let foreign = agent(&idp, &t2, "foreign").await;
    assert!(
        !idp.introspect(&secret_request(&foreign, None).client, &token, &meta)
            .await
            .unwrap()
            .active
    );
    // A bad caller is refused outright.
    let bad = with_secret(&rs, "nope").client;
    assert!(matches!(
        idp.introspect(&bad, &token, &meta).await,
        Err(Error::Unauthenticated)
    ));

    // Only the owning client revokes; unknown tokens are fine.
    idp.revoke(&rs_creds, &token, &meta).await.unwrap();
    assert!(
        idp.introspect(&rs_creds, &token, &meta)
            .await
            .unwrap()
            .active,
        "someone else's revocation does nothing"
    );
    idp.revoke(&a_creds, "not-a-token", &meta).await.unwrap();
    idp.revoke(&a_creds, &token, &meta).await.unwrap();
    assert!(
        !idp.introspect(&rs_creds, &token, &meta)
            .await
            .unwrap()
            .active
    );
    let jti = idp.verify_access_token(&token, None).unwrap().jti;
    assert!(idp.is_revoked(&jti).await.unwrap());

    // A paused agent's tokens are inactive.
    let other = issue(&idp, &secret_request(&a, None)).await.unwrap();
    idp.transition_agent(&Caller::system(), &a.agent.id, LifecycleState::Paused)
        .await
        .unwrap();
    assert!(
        !idp.introspect(&rs_creds, &other, &meta)
            .await
            .unwrap()
            .active
    );
}

#[tokio::test]
async fn rotated_signing_keys_stay_in_the_jwks_until_their_tokens_expire() {
    let c = clock();
    let idp = idp_with(&c, |cfg| {
        cfg.algorithms = vec![Algorithm::EdDSA, Algorithm::ES256]
    })
    .await;
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "bot").await;
    let jwks = idp.jwks();
    assert_eq!(jwks.keys.len(), 2, "one EdDSA and one ES256 key");
    let algs: Vec<_> = jwks.keys.iter().filter_map(|k| k.alg.clone()).collect();
    assert!(
        algs.contains(&"EdDSA".to_owned()) && algs.contains(&"ES256".to_owned()),
        "{algs:?}"
    );

    let old = issue(&idp, &secret_request(&a, None)).await.unwrap();
    idp.rotate_signing_keys().await.unwrap();
    assert_eq!(idp.jwks().keys.len(), 4, "old keys stay published");
    let new = issue(&idp, &secret_request(&a, None)).await.unwrap();
    let kid = |tok: &str| {
        sentryagent_core::jose::parse_compact(tok)
            .unwrap()
            .header()
            .kid
            .clone()
    };
    assert_ne!(kid(&old), kid(&new), "the new key signs");
    idp.verify_access_token(&old, None)
        .expect("old token still verifies");

    // A second node on the same store sees the same ring.
    let other = Idp::builder(ISSUER)
        .store_parts(idp.store().clone())
        .clock(Arc::new(c.clone()))
        .configure(|cfg| cfg.algorithms = vec![Algorithm::EdDSA, Algorithm::ES256])
        .build()
        .await
        .unwrap();
    other.verify_access_token(&new, None).unwrap();
    other.verify_access_token(&old, None).unwrap();

    c.advance(Duration::from_secs(900 + 30 + 61));
    idp.maintenance().await.unwrap();
    assert_eq!(
        idp.jwks().keys.len(),
        2,
        "retired keys leave after their tokens expired"
    );
    issue(&idp, &secret_request(&a, None)).await.unwrap();
}

#[tokio::test]
async fn keys_rotate_on_schedule() {
    let c = clock();
    let idp = idp_with(&c, |cfg| {
        cfg.key_rotation_period = Duration::from_secs(3600)
    })
    .await;
    let before = idp.jwks().keys[0].kid.clone();
    c.advance(Duration::from_secs(3599));
    idp.maintenance().await.unwrap();
    assert_eq!(idp.jwks().keys.len(), 1);
    c.advance(Duration::from_secs(1));
    idp.maintenance().await.unwrap();
    let keys = idp.jwks().keys;
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().any(|k| k.kid == before));
}

#[tokio::test]
async fn custom_claims_appear_and_reserved_names_are_refused() {
    let c = clock();
    let idp = idp_with(&c, |_| {}).await;
    let t = tenant(&idp, Tier::Pro).await;
    let mut claims = serde_json::Map::new();
    claims.insert("team".into(), serde_json::json!("payments"));
    let a = idp
        .register_agent(
            &Caller::system(),
            &t.id,
            NewAgent {
                name: "c".into(),
                custom_claims: claims,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let tok = issue(&idp, &secret_request(&a, None)).await.unwrap();
    let claims = idp.verify_access_token(&tok, None).unwrap();
    assert_eq!(
        claims.extra.get("team"),
        Some(&serde_json::json!("payments"))
    );

    let mut reserved = serde_json::Map::new();
    reserved.insert("sub".into(), serde_json::json!("someone-else"));
    let r = idp
        .register_agent(
            &Caller::system(),
            &t.id,
            NewAgent {
                name: "r".into(),
                custom_claims: reserved,
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(r, Err(Error::Invalid { .. })));
    let mut big = serde_json::Map::new();
    big.insert("blob".into(), serde_json::json!("x".repeat(5000)));
    let r = idp
        .register_agent(
            &Caller::system(),
            &t.id,
            NewAgent {
                name: "b".into(),
                custom_claims: big,
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(r, Err(Error::Invalid { .. })));
}

#[tokio::test]
async fn tenant_keys_reach_only_their_tenant() {
    let c = clock();
    let idp = idp_with(&c, |_| {}).await;
    let sys = Caller::system();
    let t1 = tenant(&idp, Tier::Pro).await;
    let t2 = tenant(&idp, Tier::Pro).await;
    let a2 = agent(&idp, &t2, "theirs").await;
    let (_, secret) = idp
        .create_admin_key(&sys, Some(&t1.id), "ci", Some(vec![AdminScope::Admin]))
        .await
        .unwrap();
    let key = idp
        .authenticate_admin(&secret, &Default::default())
        .await
        .unwrap();
    let caller = Caller::from_key(&key, Default::default());
    assert!(matches!(
        idp.get_agent(&caller, &a2.agent.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        idp.list_agents(&caller, &t2.id, &Default::default()).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        idp.rotate_client_secret(&caller, &a2.agent.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        idp.usage_summary(&caller, &t2.id).await,
        Err(Error::NotFound { .. })
    ));
    let r = idp
        .register_agent(
            &caller,
            &t2.id,
            NewAgent {
                name: "x".into(),
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(r, Err(Error::NotFound { .. })));
    let r = idp
        .create_tenant(
            &caller,
            NewTenant {
                name: "x".into(),
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(r, Err(Error::Forbidden { .. })));
    // Its own tenant works.
    idp.register_agent(
        &caller,
        &t1.id,
        NewAgent {
            name: "mine".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    // A read-only key cannot write.
    let (_, ro) = idp
        .create_admin_key(&sys, Some(&t1.id), "ro", Some(vec![AdminScope::AgentsRead]))
        .await
        .unwrap();
    let ro = Caller::from_key(
        &idp.authenticate_admin(&ro, &Default::default())
            .await
            .unwrap(),
        Default::default(),
    );
    assert!(
        idp.list_agents(&ro, &t1.id, &Default::default())
            .await
            .is_ok()
    );
    let r = idp
        .register_agent(
            &ro,
            &t1.id,
            NewAgent {
                name: "nope".into(),
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(r, Err(Error::Forbidden { .. })));

    // Admin key failures are one error.
    for bad in [
        "",
        "sa_ak_",
        &secret[..secret.len() - 1],
        "sa_ak_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
    ] {
        assert!(
            matches!(
                idp.authenticate_admin(bad, &Default::default()).await,
                Err(Error::Unauthenticated)
            ),
            "{bad}"
        );
    }
    idp.revoke_admin_key(&caller, Some(&t1.id), &key.id)
        .await
        .unwrap();
    assert!(matches!(
        idp.authenticate_admin(&secret, &Default::default()).await,
        Err(Error::Unauthenticated)
    ));
}

#[tokio::test]
async fn bootstrap_operator_key_is_idempotent() {
    let c = clock();
    let idp = idp_with(&c, |_| {}).await;
    let boot = "sa_ak_bootstrapbootstrapbootstrapbootstrap12";
    let k1 = idp.ensure_operator_key(boot).await.unwrap();
    let k2 = idp.ensure_operator_key(boot).await.unwrap();
    assert_eq!(k1.id, k2.id);
    let key = idp
        .authenticate_admin(boot, &Default::default())
        .await
        .unwrap();
    assert!(key.is_operator());
    assert!(matches!(
        idp.ensure_operator_key("short").await,
        Err(Error::Invalid { .. })
    ));
}

#[tokio::test]
async fn the_audit_trail_records_changes_and_verifies() {
    let c = clock();
    let idp = idp_with(&c, |_| {}).await;
    let sys = Caller::system();
    let mut tail = idp.subscribe_audit();
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "bot").await;
    idp.rotate_client_secret(&sys, &a.agent.id).await.unwrap();
    idp.transition_agent(&sys, &a.agent.id, LifecycleState::Paused)
        .await
        .unwrap();
    let page = idp
        .query_audit(
            &sys,
            &AuditQuery {
                tenant_id: Some(t.id.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let actions: Vec<_> = page.items.iter().map(|e| e.event.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "tenant.created",
            "agent.registered",
            "credential.rotated",
            "agent.state_changed"
        ]
    );
    let head = idp.verify_audit(&sys, Some(&t.id)).await.unwrap().unwrap();
    assert_eq!(head.seq, 4);
    assert_eq!(tail.recv().await.unwrap().event.action, "tenant.created");
    assert_eq!(tail.recv().await.unwrap().event.action, "agent.registered");
    let dump = serde_json::to_string(&page.items).unwrap();
    assert!(!dump.contains(&a.client_secret) && !dump.contains(&a.private_jwk.as_ref().unwrap().d));
}

#[tokio::test]
async fn analytics_series_cover_days_hours_and_agents() {
    let c = clock();
    let idp = idp_with(&c, |_| {}).await;
    let sys = Caller::system();
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "a").await;
    let b = agent(&idp, &t, "b").await;
    for _ in 0..3 {
        issue(&idp, &secret_request(&a, None)).await.unwrap();
    }
    c.advance(Duration::from_secs(86_400));
    issue(&idp, &secret_request(&b, None)).await.unwrap();
    idp.flush_usage().await.unwrap();
    let daily = idp.daily_token_issuances(&sys, &t.id, 30).await.unwrap();
    assert_eq!(daily.len(), 30);
    assert_eq!(daily[29].count, 1);
    assert_eq!(daily[28].count, 3);
    assert_eq!(daily.iter().map(|d| d.count).sum::<u64>(), 4);
    let heat = idp.activity_heatmap(&sys, &t.id).await.unwrap();
    // 2025-11-21 04:40 UTC is a Friday (4), the next day a Saturday (5).
    assert_eq!(heat[4][4], 3);
    assert_eq!(heat[5][4], 1);
    let table = idp.agent_usage_table(&sys, &t.id, None).await.unwrap();
    assert_eq!(table.len(), 2);
    assert_eq!(
        (table[0].agent_id.clone(), table[0].token_issuances),
        (a.agent.id.clone(), 3)
    );
    assert_eq!(table[0].name.as_deref(), Some("a"));
}

#[tokio::test]
async fn marketplace_and_did_documents_show_only_public_listed_agents() {
    let c = clock();
    let idp = idp_with(&c, |_| {}).await;
    let sys = Caller::system();
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "public-bot").await;
    let hidden = agent(&idp, &t, "hidden-bot").await;
    idp.update_agent(
        &sys,
        &a.agent.id,
        sentryagent_core::AgentPatch {
            visibility: Some(sentryagent_core::Visibility::Public),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let found = idp
        .search_marketplace(&Default::default(), &Default::default())
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);
    let (agent, publisher) = idp.marketplace_agent(&a.agent.id).await.unwrap();
    assert_eq!(agent.id, a.agent.id);
    assert_eq!(publisher.id, t.id);
    assert!(matches!(
        idp.marketplace_agent(&hidden.agent.id).await,
        Err(Error::NotFound { .. })
    ));
    let doc = idp.did_document(None, &a.agent.id).await.unwrap();
    assert_eq!(doc.id, a.agent.did);
    assert!(matches!(
        idp.did_document(None, &hidden.agent.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(idp.did_document(Some(&sys), &hidden.agent.id).await.is_ok());
}

#[tokio::test]
async fn an_agent_may_take_es256_tokens_when_the_deployment_enables_it() {
    let c = clock();
    let idp = idp_with(&c, |cfg| {
        cfg.algorithms = vec![Algorithm::EdDSA, Algorithm::ES256]
    })
    .await;
    let t = tenant(&idp, Tier::Pro).await;
    let a = idp
        .register_agent(
            &Caller::system(),
            &t.id,
            NewAgent {
                name: "spiffe-facing".into(),
                token_algorithm: Some(Algorithm::ES256),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let tok = issue(&idp, &secret_request(&a, None)).await.unwrap();
    let header = sentryagent_core::jose::parse_compact(&tok)
        .unwrap()
        .header()
        .clone();
    assert_eq!(header.alg, Algorithm::ES256);
    idp.verify_access_token(&tok, None).unwrap();
    let plain = agent(&idp, &t, "default").await;
    let tok = issue(&idp, &secret_request(&plain, None)).await.unwrap();
    assert_eq!(
        sentryagent_core::jose::parse_compact(&tok)
            .unwrap()
            .header()
            .alg,
        Algorithm::EdDSA
    );

    let eddsa_only = idp_with(&c, |_| {}).await;
    let t2 = tenant(&eddsa_only, Tier::Pro).await;
    let r = eddsa_only
        .register_agent(
            &Caller::system(),
            &t2.id,
            NewAgent {
                name: "x".into(),
                token_algorithm: Some(Algorithm::ES256),
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(r, Err(Error::Invalid { .. })), "{r:?}");
}

#[tokio::test]
async fn audit_tail_shows_a_tenant_key_only_its_own_events() {
    let c = clock();
    let idp = idp_with(&c, |_| {}).await;
    let a = tenant(&idp, Tier::Free).await;
    let b = tenant(&idp, Tier::Free).await;
    let (key, _) = idp
        .create_admin_key(
            &Caller::system(),
            Some(&a.id),
            "k",
            Some(vec![AdminScope::Admin]),
        )
        .await
        .unwrap();
    let caller = Caller::from_key(&key, Default::default());
    assert!(matches!(
        idp.audit_tail(&caller, Some(&b.id)),
        Err(Error::NotFound { .. })
    ));
    let mut tail = idp.audit_tail(&caller, None).unwrap();
    let mut all = idp.audit_tail(&Caller::system(), None).unwrap();
    agent(&idp, &b, "other").await;
    agent(&idp, &a, "mine").await;
    let seen = tail.next().await.unwrap().unwrap();
    assert_eq!(seen.event.tenant_id.as_ref(), Some(&a.id));
    assert_eq!(seen.event.action, "agent.registered");
    let first = all.next().await.unwrap().unwrap();
    assert_eq!(first.event.tenant_id.as_ref(), Some(&b.id));
}

#[tokio::test]
async fn publishers_are_found_by_slug_unless_suspended() {
    let c = clock();
    let idp = idp_with(&c, |_| {}).await;
    let t = tenant(&idp, Tier::Free).await;
    assert_eq!(idp.publisher(&t.slug).await.unwrap().id, t.id);
    assert!(matches!(
        idp.publisher("no-such-publisher").await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        idp.publisher("Not A Slug!").await,
        Err(Error::NotFound { .. })
    ));
    idp.set_tenant_status(&Caller::system(), &t.id, TenantStatus::Suspended)
        .await
        .unwrap();
    assert!(matches!(
        idp.publisher(&t.slug).await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn one_client_cannot_take_the_whole_tenant_budget() {
    let c = clock();
    let idp = idp_with(&c, |cfg| cfg.tiers.pro.client_requests_per_minute = Some(2)).await;
    let t = tenant(&idp, Tier::Pro).await;
    let greedy = agent(&idp, &t, "greedy").await;
    let other = agent(&idp, &t, "other").await;
    issue(&idp, &secret_request(&greedy, None)).await.unwrap();
    issue(&idp, &secret_request(&greedy, None)).await.unwrap();
    let r = issue(&idp, &secret_request(&greedy, None)).await;
    assert!(
        matches!(r, Err(Error::RateLimited { limit: 2, retry_after }) if retry_after == Duration::from_secs(30)),
        "{r:?}"
    );
    issue(&idp, &secret_request(&other, None))
        .await
        .expect("another client of the tenant");
    c.advance(Duration::from_secs(30));
    issue(&idp, &secret_request(&greedy, None)).await.unwrap();
}

#[tokio::test]
async fn introspection_and_revocation_share_the_rate_limits() {
    let c = clock();
    let idp = idp_with(&c, |cfg| cfg.tiers.pro.client_requests_per_minute = Some(3)).await;
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "bot").await;
    let rs = agent(&idp, &t, "api").await;
    let rs_creds = secret_request(&rs, None).client;
    let a_creds = secret_request(&a, None).client;
    let meta = Default::default();
    let token = issue(&idp, &secret_request(&a, None)).await.unwrap();

    // The resource server's own per-client budget: 3 a minute.
    for i in 0..3 {
        let r = idp.introspect(&rs_creds, &token, &meta).await;
        assert!(r.unwrap_or_else(|e| panic!("call {i}: {e}")).active);
    }
    let r = idp.introspect(&rs_creds, &token, &meta).await;
    assert!(
        matches!(r, Err(Error::RateLimited { limit: 3, retry_after }) if retry_after == Duration::from_secs(20)),
        "{r:?}"
    );
    // Revocation counts too: the agent used 1 of its 3 on the token.
    idp.revoke(&a_creds, "not-a-token", &meta).await.unwrap();
    idp.revoke(&a_creds, "not-a-token", &meta).await.unwrap();
    let r = idp.revoke(&a_creds, &token, &meta).await;
    assert!(matches!(r, Err(Error::RateLimited { .. })), "{r:?}");
    // Refused, so the token was not revoked.
    c.advance(Duration::from_secs(20));
    assert!(
        idp.introspect(&rs_creds, &token, &meta)
            .await
            .unwrap()
            .active
    );

    // The tenant's budget (1,200 a minute on pro) counts every client's
    // introspections: once spent, other clients are refused as well.
    let idp = idp_with(&c, |cfg| cfg.tiers.pro.requests_per_minute = 2).await;
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "bot").await;
    let rs = agent(&idp, &t, "api").await;
    let token = issue(&idp, &secret_request(&a, None)).await.unwrap();
    let rs_creds = secret_request(&rs, None).client;
    assert!(
        idp.introspect(&rs_creds, &token, &meta)
            .await
            .unwrap()
            .active
    );
    let r = idp.introspect(&rs_creds, &token, &meta).await;
    assert!(
        matches!(r, Err(Error::RateLimited { limit: 2, .. })),
        "{r:?}"
    );
}

#[tokio::test]
async fn failed_authentications_are_recorded_at_a_bounded_rate() {
    let c = clock();
    let idp = idp_with(&c, |cfg| cfg.auth_failure_audits_per_minute = 3).await;
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "bot").await;
    let failures = |tenant: Option<TenantId>| {
        let idp = idp.clone();
        async move {
            idp.query_audit(
                &Caller::system(),
                &AuditQuery {
                    tenant_id: tenant,
                    action: Some("client.authentication_failed".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .items
        }
    };
    let unknown = TokenRequest {
        grant_type: "client_credentials".into(),
        client: ClientCredentials::Secret {
            client_id: "agt_doesnotexist".into(),
            client_secret: "guess".into(),
        },
        scope: None,
        resources: vec![],
    };
    // Ten failures of an unknown client: every one refused the same way,
    // three recorded (the system chain's burst).
    for _ in 0..10 {
        assert!(matches!(
            issue(&idp, &unknown).await,
            Err(Error::Unauthenticated)
        ));
    }
    let system = failures(None).await;
    assert_eq!(system.len(), 3, "{system:?}");
    assert!(
        system
            .iter()
            .all(|e| !e.event.details.contains_key("unrecorded_before"))
    );
    // The tenant's chain has its own budget.
    for _ in 0..4 {
        assert!(matches!(
            issue(&idp, &with_secret(&a, "wrong")).await,
            Err(Error::Unauthenticated)
        ));
    }
    assert_eq!(failures(Some(t.id.clone())).await.len(), 3);
    // A minute later the next failure is recorded, with the count of those
    // that were not.
    c.advance(Duration::from_secs(20));
    assert!(issue(&idp, &unknown).await.is_err());
    let system = failures(None).await;
    assert_eq!(system.len(), 4);
    let last = system
        .iter()
        .max_by_key(|e| e.event.at)
        .expect("four events");
    assert_eq!(
        last.event
            .details
            .get("unrecorded_before")
            .map(String::as_str),
        Some("7"),
        "{last:?}"
    );
    assert!(issue(&idp, &with_secret(&a, "wrong")).await.is_err());
    let tenant_chain = failures(Some(t.id.clone())).await;
    assert_eq!(tenant_chain.len(), 4);
    assert!(
        tenant_chain
            .iter()
            .any(|e| e.event.details.get("unrecorded_before").map(String::as_str) == Some("1"))
    );
    // Successful requests are not affected.
    issue(&idp, &secret_request(&a, None)).await.unwrap();
}

#[tokio::test]
async fn a_client_past_its_own_limit_does_not_spend_the_tenant_budget() {
    let c = clock();
    let idp = idp_with(&c, |cfg| {
        cfg.tiers.pro.client_requests_per_minute = Some(2);
        cfg.tiers.pro.requests_per_minute = 5;
    })
    .await;
    let t = tenant(&idp, Tier::Pro).await;
    let greedy = agent(&idp, &t, "greedy").await;
    let other = agent(&idp, &t, "other").await;
    let mut admitted = 0;
    for _ in 0..20 {
        match issue(&idp, &secret_request(&greedy, None)).await {
            Ok(_) => admitted += 1,
            Err(Error::RateLimited { limit: 2, .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(admitted, 2, "the client's own limit");
    // 18 refused requests later, the tenant still has 5 - 2 = 3.
    for i in 0..2 {
        issue(&idp, &secret_request(&other, None))
            .await
            .unwrap_or_else(|e| panic!("other client, request {i}: {e}"));
    }
    let third = agent(&idp, &t, "third").await;
    issue(&idp, &secret_request(&third, None))
        .await
        .expect("the tenant's fifth request");
    let r = issue(&idp, &secret_request(&third, None)).await;
    assert!(
        matches!(r, Err(Error::RateLimited { limit: 5, .. })),
        "the tenant's sixth request: {r:?}"
    );
}

/// A usage meter whose writes wait until the test opens the gate.
#[derive(Debug)]
struct GatedMeter {
    inner: sentryagent_core::memory::MemoryUsageMeter,
    gate: tokio::sync::Semaphore,
}

#[async_trait::async_trait]
impl sentryagent_core::UsageMeter for GatedMeter {
    fn name(&self) -> &'static str {
        "gated"
    }
    async fn record(
        &self,
        batch: &sentryagent_core::usage::UsageBatch,
    ) -> sentryagent_core::Result<bool> {
        let _permit = self.gate.acquire().await.expect("gate open");
        self.inner.record(batch).await
    }
    async fn get(
        &self,
        tenant: &TenantId,
        kind: sentryagent_core::usage::UsageKind,
        bucket: &sentryagent_core::usage::Bucket,
    ) -> sentryagent_core::Result<u64> {
        self.inner.get(tenant, kind, bucket).await
    }
    async fn hourly(
        &self,
        tenant: &TenantId,
        kind: sentryagent_core::usage::UsageKind,
        from: Timestamp,
        to: Timestamp,
    ) -> sentryagent_core::Result<Vec<(Timestamp, u64)>> {
        self.inner.hourly(tenant, kind, from, to).await
    }
    async fn per_agent(
        &self,
        tenant: &TenantId,
        kind: sentryagent_core::usage::UsageKind,
        month: &str,
    ) -> sentryagent_core::Result<std::collections::BTreeMap<sentryagent_core::AgentId, u64>> {
        self.inner.per_agent(tenant, kind, month).await
    }
    async fn active_agents(&self, tenant: &TenantId, month: &str) -> sentryagent_core::Result<u64> {
        self.inner.active_agents(tenant, month).await
    }
}

#[tokio::test]
async fn a_due_usage_flush_does_not_hold_up_the_request() {
    use sentryagent_core::{Clock, UsageMeter};
    let c = clock();
    let meter = Arc::new(GatedMeter {
        inner: sentryagent_core::memory::MemoryUsageMeter::new(),
        gate: tokio::sync::Semaphore::new(0),
    });
    let idp = Idp::builder(ISSUER)
        .clock(Arc::new(c.clone()))
        .meter(meter.clone())
        .build()
        .await
        .unwrap();
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "bot").await;
    issue(&idp, &secret_request(&a, None)).await.unwrap();
    c.advance(Duration::from_secs(2));
    // The flush is due: the request returns while the meter's write waits.
    tokio::time::timeout(
        Duration::from_secs(10),
        issue(&idp, &secret_request(&a, None)),
    )
    .await
    .expect("the token request does not wait for the usage flush")
    .unwrap();
    let month = sentryagent_core::usage::Bucket::month_of(c.now());
    let stored = || async {
        meter
            .inner
            .get(
                &t.id,
                sentryagent_core::usage::UsageKind::TokenIssued,
                &month,
            )
            .await
            .unwrap()
    };
    assert_eq!(stored().await, 0, "nothing written while the gate is shut");
    // Open the gate: the flush task writes both tokens.
    meter.gate.add_permits(1_000);
    for _ in 0..1_000 {
        if stored().await == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(stored().await, 2, "the flush task wrote the counts");
}

//! Client authentication: one error for every failure, secret rotation and
//! revocation, `private_key_jwt`, brought keys, bounded failure audit.

use super::*;

#[tokio::test]
async fn every_client_authentication_failure_is_the_same_error_and_is_audited() {
    let c = clock();
    let Some(idp) = idp_with(&c, |_| {}).await else {
        return;
    };
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "bot").await;
    let unknown = TokenRequest {
        client: ClientCredentials::Secret {
            client_id: "agt_doesnotexist".into(),
            client_secret: a.client_secret.clone().unwrap(),
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
        .contains(a.client_secret.as_deref().unwrap());
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
    let Some(idp) = idp_with(&c, |cfg| {
        cfg.secret_grace_period = Duration::from_secs(3600)
    })
    .await
    else {
        return;
    };
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "bot").await;
    let (new_secret, until) = idp
        .rotate_client_secret(&Caller::system(), &a.agent.id, None)
        .await
        .unwrap();
    assert_ne!(Some(&new_secret), a.client_secret.as_ref());
    assert_eq!(until, c.now().plus(Duration::from_secs(3600)));
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
async fn rotation_with_an_explicit_grace_keeps_the_old_secret_that_long_and_is_audited() {
    let c = clock();
    let Some(idp) = idp_with(&c, |_| {}).await else {
        return;
    };
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "bot").await;
    let (new_secret, until) = idp
        .rotate_client_secret(
            &Caller::system(),
            &a.agent.id,
            Some(Duration::from_secs(600)),
        )
        .await
        .unwrap();
    assert_eq!(until, c.now().plus(Duration::from_secs(600)));
    c.advance(Duration::from_secs(599));
    issue(&idp, &secret_request(&a, None))
        .await
        .expect("old secret within the given grace");
    c.advance(Duration::from_secs(1));
    assert!(
        matches!(
            issue(&idp, &secret_request(&a, None)).await,
            Err(Error::Unauthenticated)
        ),
        "old secret once the given grace ended"
    );
    issue(&idp, &with_secret(&a, &new_secret))
        .await
        .expect("new secret");
    let events = idp
        .query_audit(
            &Caller::system(),
            &sentryagent_core::AuditQuery {
                tenant_id: Some(t.id.clone()),
                action: Some("credential.rotated".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .items;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.details["grace_seconds"], "600");
}

#[tokio::test]
async fn rotation_with_zero_grace_ends_the_old_secret_at_once_and_longer_than_30_days_is_refused() {
    let c = clock();
    let Some(idp) = idp_with(&c, |_| {}).await else {
        return;
    };
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "bot").await;
    let too_long = Idp::MAX_SECRET_GRACE + Duration::from_secs(1);
    assert!(matches!(
        idp.rotate_client_secret(&Caller::system(), &a.agent.id, Some(too_long))
            .await,
        Err(Error::Invalid {
            field: "grace_seconds",
            ..
        })
    ));
    issue(&idp, &secret_request(&a, None))
        .await
        .expect("a refused rotation changes nothing");
    let (new_secret, until) = idp
        .rotate_client_secret(&Caller::system(), &a.agent.id, Some(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(until, c.now());
    assert!(
        matches!(
            issue(&idp, &secret_request(&a, None)).await,
            Err(Error::Unauthenticated)
        ),
        "old secret right after a rotation without grace"
    );
    issue(&idp, &with_secret(&a, &new_secret))
        .await
        .expect("new secret");
    idp.rotate_client_secret(&Caller::system(), &a.agent.id, Some(Idp::MAX_SECRET_GRACE))
        .await
        .expect("30 days is allowed");
}

#[tokio::test]
async fn private_key_jwt_accepts_issuer_or_token_endpoint_and_refuses_replays() {
    let c = clock();
    let Some(idp) = idp_with(&c, |_| {}).await else {
        return;
    };
    let t = tenant(&idp, Tier::Pro).await;
    let a = agent(&idp, &t, "bot").await;
    let key = agent_key(&a);
    let sub = a.agent.id.as_str();
    let now = c.now();
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
        &jwt_request(&a, assertion(&key, sub, ISSUER, c.now(), 60, "j1")),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn an_agent_that_brings_its_key_authenticates_with_it() {
    let c = clock();
    let Some(idp) = idp_with(&c, |_| {}).await else {
        return;
    };
    let t = tenant(&idp, Tier::Pro).await;
    let own = SigningKey::generate(Algorithm::EdDSA, "mine").unwrap();
    let jwk: Jwk = own.public_jwk();
    let by_jwk = register(
        &idp,
        &t,
        NewAgent {
            name: "jwk".into(),
            public_jwk: Some(jwk.clone()),
            ..Default::default()
        },
    )
    .await;
    assert!(
        by_jwk.private_jwk.is_none(),
        "the IdP never had the private key"
    );
    let did = by_jwk.agent.did.clone();
    let by_did = register(
        &idp,
        &t,
        NewAgent {
            name: "did".into(),
            did: Some(did.clone()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_did.agent.did, did);
    let sub = by_did.agent.id.as_str();
    let a = assertion(&own, sub, ISSUER, c.now(), 60, "x1");
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
async fn failed_authentications_are_recorded_at_a_bounded_rate() {
    let c = clock();
    let Some(idp) = idp_with(&c, |cfg| cfg.auth_failure_audits_per_minute = 3).await else {
        return;
    };
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
